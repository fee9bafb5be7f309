"""Numba settings shared by every kernel (one place, as stumpy's config module).

``fastmath`` allows re-association and contraction (vectorised reductions) but keeps
IEEE NaN/inf semantics, so ``np.isnan`` and ``np.isfinite`` inside kernels stay reliable.
``cache=True`` writes compiled kernels next to the sources (or to ``NUMBA_CACHE_DIR``) so that
the second import of the package does not compile again.
"""

import ctypes
import os
import site
import sys
import types

import numba
from numba.np.ufunc import parallel as _numba_parallel

#: Numba threading layers in the order the library prefers them, applied through
#: ``numba.config.THREADING_LAYER_PRIORITY`` (see :func:`choose_threading_layer`): TBB (a
#: dependency of the package where wheels exist), then OpenMP, then workqueue. TBB is thread-safe
#: (dask's threaded scheduler and the napari workers may launch kernels from several threads at
#: once; the workqueue layer aborts the process then) and its idle workers sleep instead of
#: spinning: on the loaded 2-core machine it ran segmentation as fast as workqueue and about 1.7x
#: faster than OpenMP with its default (spinning) wait policy, and the background benchmark
#: 1.1-1.4x faster than OpenMP (numbers in the README). OpenMP's passive wait would need
#: OMP_WAIT_POLICY in the environment before it loads: nothing is written into ``os.environ``.
THREADING_LAYER_PRIORITY = ("tbb", "omp", "workqueue")


def choose_threading_layer() -> bool:
    """Apply :data:`THREADING_LAYER_PRIORITY` unless the user or another library chose.

    Leaves Numba alone when ``NUMBA_THREADING_LAYER`` or ``NUMBA_THREADING_LAYER_PRIORITY`` is
    set, when ``numba.config.THREADING_LAYER`` is not ``"default"``, or when a parallel kernel
    already ran (the layer is fixed then). Reads the environment, never writes it. Returns
    whether the preference was applied.
    """
    if _numba_parallel._is_initialized:
        return False
    if "NUMBA_THREADING_LAYER" in os.environ or "NUMBA_THREADING_LAYER_PRIORITY" in os.environ:
        return False
    if numba.config.THREADING_LAYER != "default":
        return False
    numba.config.THREADING_LAYER_PRIORITY = list(THREADING_LAYER_PRIORITY)
    if THREADING_LAYER_PRIORITY[0] == "tbb":
        load_pip_tbb()
    return True


def load_pip_tbb() -> bool:
    """Make the TBB library of the ``tbb`` wheel loadable by Numba's TBB layer; return whether
    the layer's extension module can now load.

    Numba's ``tbbpool`` extension links ``libtbb.so.12`` by name, without a search path, and the
    ``tbb`` wheel installs it into ``<prefix>/lib``, where the dynamic loader does not look in a
    virtual environment or a ``--user`` install (numba issue 6108): a clean ``pip install``
    silently got OpenMP instead (GNU libgomp, whose idle threads spin: measured 1.6x slower on
    the background kernel than TBB on the loaded 2-core machine). Loading the wheel's file by its
    path first (``RTLD_GLOBAL``) lets the loader resolve the name to it. Linux only; nothing is
    done when the module already loads (a system TBB) or no wheel's file is found. Writes no
    environment variable.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        from numba.np.ufunc import tbbpool  # noqa: F401

        return True
    except ImportError:
        pass
    for base in dict.fromkeys((sys.prefix, sys.base_prefix, site.USER_BASE or "")):
        path = os.path.join(base, "lib", "libtbb.so.12")
        if base and os.path.isfile(path):
            try:
                ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
                from numba.np.ufunc import tbbpool  # noqa: F401, F811
            except (OSError, ImportError):
                continue
            return True
    return False


choose_threading_layer()

FASTMATH = {"nsz", "arcp", "contract", "reassoc"}

#: keyword arguments for serial kernels
JIT = dict(nogil=True, cache=True, fastmath=FASTMATH)

#: keyword arguments for kernels parallel over their outer ``prange`` loop
PJIT = dict(JIT, parallel=True)

#: for code whose rounding is arranged by hand (the E-step's exp(): Cody-Waite range reduction):
#: re-association would undo it (about 3x the relative error)
JIT_NO_REASSOC = dict(JIT, fastmath=FASTMATH - {"reassoc"})


def serial_copy(f):
    """The Python function ``f`` under another qualified name (``f.__qualname__ + "_serial"``), to
    compile a serial twin of a parallel kernel from.

    Numba's on-disk cache keys compiled code by the function's qualified name, first line and
    signature, not by its options: ``njit(parallel=True)(f)`` and ``njit(f)`` would share one cache
    entry, and the next process would load, for both, whichever was compiled first (a serial twin
    then runs parallel code, or the reverse; tests/_kernels/test_config.py checks it).
    """
    g = types.FunctionType(f.__code__, f.__globals__, f.__name__ + "_serial", f.__defaults__, f.__closure__)
    g.__qualname__ = f.__qualname__ + "_serial"
    g.__doc__ = f.__doc__
    g.__module__ = f.__module__
    return g


# ---- thresholds and slice sizes of the core (one place for every tunable) -------------------------

#: samples x components above which the EM E-step (and labels, posteriors) run on all threads
PARALLEL_WORK = 100_000
#: the EM driver reports progress (and so can be cancelled) at least every this many iterations ...
PROGRESS_EVERY = 5
#: ... and at least every this many seconds
PROGRESS_SECONDS = 0.1

# compression (napari_gmm.compress)

#: largest integer range kept as a dense histogram (32 MB of int64 per thread)
MAX_DENSE_RANGE = 2**22
#: default number of bins for float grey data
DEFAULT_FLOAT_BINS = 4096
#: default number of bins per channel for large float multichannel data
DEFAULT_GRID_BINS = 64
#: float multichannel images (and integer ones over 24 packed bits) up to this many pixels are
#: fitted on every pixel (every distinct colour) exactly
MAX_EXACT_PIXELS = 2**20
#: grids of up to this many cells are counted in dense per-thread tables (64**3 = 2**18)
MAX_DENSE_CELLS = 2**18
#: dense colour tables are used up to this many packed bits (uint8 RGB = 24 bits)
MAX_DENSE_BITS = 24
#: below this many pixels the histogram, look-up and paint kernels run on the calling thread
SERIAL_BELOW = 2**20
#: pixels per slice of a NumPy look-up or paint pass (progress and cancellation between slices)
LOOKUP_SLICE = 2**24
#: pixels labelled per slice where every pixel goes through the model (float or wide-integer
#: multichannel data): the float64 copy of a slice is 8 * D MiB
LABEL_SLICE = 2**20

# choosing K and censoring (napari_gmm.selection, napari_gmm.censored)

#: largest number of bins of the coarse histogram the search over K fits each K on (uint16 data:
#: 65,536 levels -> 1,024 bins; a uint8 image is its own coarse copy). The criterion is then taken on
#: the full histogram: measured on 4096 x 4096 uint16 images, EM on the full histogram from the coarse
#: optimum gained under 0.4 nats of log-likelihood in total, against criterion steps of 20-40
COARSE_BINS = 1024
#: ... where a bin holds more than this share of the pixels, it is cut into sub-bins holding about
#: that share (at most COARSE_SPLIT_ROUNDS rounds): a narrow dim class beside a few bright pixels that
#: stretch the range (background at 100 sd 4, cells at 130 sd 5, bright structures at 30,000 sd
#: 3,000 in uint16: equal bins 44 levels wide put background and cells in one or two bins). A
#: Gaussian class holding a share w of the pixels fills 2 % of one equal bin only when its sd is under
#: about 20 w bins (w h / (sd sqrt(2 pi)) > 0.02 for bins h wide)
COARSE_BIN_SHARE = 0.02
COARSE_SPLIT_ROUNDS = 3
#: multichannel data: the search fits each K on the occupied cells of a grid of this many bins per
#: channel (each cell's mean colour) ...
COARSE_COLOUR_BINS = 32
#: ... and its fit then takes this many EM iterations on all samples before the criterion. Measured on
#: the astronaut (512 x 512 RGB, 113,382 colours, K = 1..8): on every colour 25 s; 16 bins, no EM on all
#: samples 4.5 s but K = 8 ended 1 % below a fixed K = 8 fit (-13.278 against -13.153 per pixel); 32 bins
#: and 5 iterations 6-7 s against 4.6-7.5 s for one fixed K = 8 fit, ending at -13.152
COLOUR_POLISH_ITER = 5
#: EM iterations every start of a K gets on the coarse histogram before the best continues
SCREEN_ITER = 15
#: the search fits each K until an EM step gains less than this many nats summed over all pixels.
#: The criterion compares log-likelihoods summed over millions of pixels: a fit short of its optimum
#: by 1e-5 per pixel looks 40 nats worse on a 2048 x 2048 image, enough to choose a component too
#: many (measured with the fit's default tol=1e-6 per pixel: 4 classes 2.5 sd apart in a 512 x 512
#: uint8 image came out 195 nats below their optimum and BIC chose 6)
SEARCH_TOL_NATS = 0.01
#: second pass of the search: the best K and its two neighbours are fitted again from every split
#: of the (refined) K - 1 fit, the best REFINE_FINISH screened starts each to the optimum within
#: REFINE_TOL_NATS (nats summed over all pixels), repeated at most REFINE_ROUNDS times while the best
#: K moves. Measured on bench_selection.py's synthetic images, K = 2..6, 1.7 and 2.5 sd, 512 x 512 and
#: 2048 x 2048: the first pass alone ended up to 3,000 nats below the fit started from the true
#: parameters at the true K (36 nats with the 3 best starts finished, until the range slices were
#: always finished too: ranked last after screening, they reached the best optimum of 5 classes
#: 1.7 sd apart in 2048 x 2048); likelihoods that flat have several optima and EM creeps along them
REFINE_FINISH = 3
#: ... of those, the ones within this many nats per pixel of the best after screening (a split that
#: put two components on one class was 0.33 nats per pixel behind on a 3-class 4096 x 4096 image and
#: took 474 iterations to finish; a start 0.0034 behind ended at the best optimum, 30 nats above the
#: others, on 3 classes 2.5 sd apart)
REFINE_GAP = 0.02
#: ... each finished until an EM step gains less than this (nats summed over all pixels). 0.001 until
#: session 4; 0.01 (the first pass's) chose the same K on all 192 images of bench_selection.py part 1
#: at 512 x 512 and 2048 x 2048 (with seed 1: 3 more right of 96 at 512, 96 at 1024 unchanged; with
#: the close-call continuation below, the same K as 0.001 on all of them),
#: for 47-66 % of the coarse EM iterations (4096 x 4096 uint16 image: 773 -> 511 with the memo of EM
#: runs). The refined fits end lower (512 x 512, all three dtypes): at the true K by up to 11.5 nats
#: (K = 4, 5 at 2.5 sd, where the neighbours' criterion is over 800 worse); at a neighbour by up to
#: 12.4 (K = 3 beside 4 clipped classes 1.7 sd apart: its BIC margin 41.4 instead of 16.5) and once by
#: 73 (K = 5 beside 6 clipped classes 2.5 sd apart, 400 worse); the margins between the chosen K and
#: its neighbours moved by at most 25 (BIC), in either direction
REFINE_TOL_NATS = 0.01
REFINE_ROUNDS = 3
#: ... then, where a neighbour's criterion is within FINAL_MARGIN of the best one's (a close call: the
#: 0.01-nat fits moved the margins by up to 25), the best K and those neighbours continue from their
#: best fits until an EM step gains less than FINAL_TOL_NATS (the second pass's tolerance until
#: session 4), so that the comparison that decides is between optima. Measured: 6 classes 1.7 sd apart,
#: 2048 x 2048 uint16: K = 5 and 6 at 0.01 nats were 8.2 and 3.0 nats below their 0.001-nat fits (the
#: margin 28 instead of 39); continued, 0.2 nats. Not on every neighbour: on bench_segment's 4096 x 4096
#: image (BIC of K = 4 49 above K = 3's) that cost 108 EM iterations, +25 % of the search's
FINAL_MARGIN = 30.0
FINAL_TOL_NATS = 0.001
#: ... a neighbour of the best K is refined (with the best K) only when its criterion is within this
#: much of the best one's (a refinement gained at most 75 nats, 150 in BIC, on those images)
REFINE_MARGIN = 400.0
#: init="auto" on grey data (selection.polished_fit): the classic start runs on the coarse histogram
#: until an EM step gains less than START_TOL_NATS summed over all pixels, at most START_MAX_STEPS
#: steps, before the fit. Measured on bench_selection.py part 2's clipped 2048 x 2048 images (the fit
#: with tol=1e-10; 300 steps): 4 classes 2.5 sd apart, uint8, 3.1 % parameter error without, 1.6 % at
#: 1e-4 nats, 1.0 % at 1e-5 (0.6 % at the optimum); 6 classes 2.5 sd apart 7.0 / 7.5 / 3.6 %. Steps
#: (1e-5 nats): 100 -> 3.4 %, 200 -> 1.8 %, 300 -> 1.2 %, 600 -> 1.0 % on the 4 classes. Cost on the
#: 512 x 512 cameraman, K = 3: +0.35 ms per call (0.79 ms before); where EM creeps (the cameraman
#: with K = 8, the issue's clipped phantom) the 300 steps cost about 4-5 ms
START_TOL_NATS = 1e-5
START_MAX_STEPS = 300
#: ... and so does a second start, the equal-count slices (``init="quantiles"``); the fit starts from
#: it only where its log-likelihood on the full histogram beats the classic one's by more than this
#: many nats (summed over all pixels), so that near-ties keep the classic fit
START_OTHER_MARGIN = 1.0
#: EM iterations a K gets at most in the search
SEARCH_MAX_STEPS = 2000
#: the search stops once this many consecutive K have been worse than the best one. 3 until session 4;
#: 2 chose the same K as 3 on the 384 images of bench_selection.py part 1 (512 x 512 and 2048 x 2048;
#: 512 x 512 and 1024 x 1024 with seed 1) and on the cameraman, coins, cell and the issue's phantom
#: with each criterion, and saves the last K's fit and its scoring on the full histogram (about 3 ms of
#: CPU, 10 %, of the 4096 x 4096 uint16 image's search)
SEARCH_PATIENCE = 2
#: compress.value_step: the least populated grey levels holding together at most this fraction of
#: the pixels do not decide the data's value step (stray off-lattice values, hot pixels)
VALUE_STEP_IGNORE = 1e-3
#: fewest occupied levels (after those ignored) that make a lattice of values: below it the data
#: are a few exact values (three grey levels 100 apart are three classes, not a lattice of step 100
#: whose 100**2 / 12 variance floor would pull the means together) and keep one grey level's floor
VALUE_STEP_MIN_LEVELS = 16
#: a split puts the two halves of a component this many standard deviations from its mean
SPLIT_OFFSET = 0.5
#: censoring="auto": levels (bins) beside the extreme one whose mean count ``e`` is the local density
SPIKE_NEIGHBOURS = 3
#: ... the extreme level is a pile of clipped pixels when its count exceeds
#: SPIKE_RATIO * e + SPIKE_SIGMAS * sqrt(e) + SPIKE_MIN
SPIKE_RATIO = 2.0
SPIKE_SIGMAS = 4.0
SPIKE_MIN = 8.0

# background modelling of dask stacks (napari_gmm.background): a spatial tile is a whole number of
# the input's chunks along y and x (merged while under TILE_MIN_PIXELS) whose model state stays within
# TILE_BYTES (a larger chunk is split); its chain of tasks takes the input's time chunks in order,
# merged while a task's input is under TIME_BLOCK_MIN_BYTES (and split over TILE_BYTES)
TILE_BYTES = 256 * 2**20
TILE_MIN_PIXELS = 2**18
TIME_BLOCK_MIN_BYTES = 8 * 2**20
#: a tiled run's hole filling (``fill_holes``) needs whole frames: its blocks of masks are whole
#: frames (as many as fit in this, at least one), cut back into the tiles afterwards. 32 MiB (8
#: frames of 2048 x 2048, as many as a time chunk of the benchmark's stack): the background
#: command's peak on a 1.6 GB stack 854-893 MiB, against 885-934 MiB with 64 MiB (3 runs each), same time
FILL_BLOCK_BYTES = 32 * 2**20

#: On a dask.distributed cluster, a task of the segmentation's passes (a chunk's count, a chunk's
#: labels written) costs the worker's event loop and the scheduler a few ms of CPU, taken from the
#: cores the tasks run on: there a task counts, or labels and writes, up to CLUSTER_GROUP chunks
#: one after the other, as long as every worker thread still gets CLUSTER_TASKS_PER_THREAD tasks
#: (see ``napari_gmm._dask.group_size``). The 8 GB stack's histogram pass (476 chunks) on the
#: benchmark's LocalCluster (2 workers x 1 thread), cold cache, alternating: 1 chunk a task 5.97 -
#: 6.39 s, 2 5.34 - 6.29 s, 4 5.30 - 5.74 s, 8 5.45 s; on dask's threaded scheduler 4.83 - 4.92 s
#: either way (so there nothing is grouped)
CLUSTER_GROUP = 4
CLUSTER_TASKS_PER_THREAD = 8

#: napari_gmm.io reads the first frames of a zarr chunk stored in a local file (the background
#: job's burn-in: one frame of most chunks) in blocks of this many bytes from the file's start,
#: only as far as the Zstd decoder needs them (see ``napari_gmm.io._PrefixFile``)
PREFIX_READ_BYTES = 2**20

#: ... and decodes a whole Zstd chunk stored in a local file while reading it, this many bytes at
#: a time (the kernel's read-ahead fetches the rest of the file meanwhile; see
#: ``napari_gmm.io._read_streamed``). The 8 GB stack's 476 chunks read, decoded and counted
#: (histogram) on 2 threads, cold page cache: 4.6-4.7 s against 6.9 s for the whole file read,
#: then decoded; from the page cache 3.8 against 3.9 s. Less than 128 KiB, glibc's default
#: threshold for giving a buffer its own fresh mapping, which is fixed when dask.distributed's
#: workers set MALLOC_TRIM_THRESHOLD_: there, 128 KiB reads took 7.8 s (system CPU 6.9 s) and 64
#: KiB reads 5.2 s, against 6.5 s for the whole file (and 4.2 against 4.2 s from the page cache)
STREAM_READ_BYTES = 2**16

#: napari_gmm.io writes the chunks of its outputs (a local zarr, bytes + Blosc) with ``O_DIRECT``
#: where the system allows it (Linux; elsewhere, and where a file system refuses it, ordinary
#: writes): from the compressed chunk to the disk without a copy into the page cache, where a
#: result that is not read again would only evict the input still being read. The 8 GB background
#: job: CPU 73.8-77.6 -> 63.7-68.3 s, wall 41.9-44.5 -> 36.9-41.4 s (3 alternating pairs, cold
#: cache; see ``napari_gmm.io._ZarrChunkWriter``)
DIRECT_WRITES = True
#: ... and reads with ``O_DIRECT`` the chunk files (of at least ``DIRECT_READ_MIN_BYTES``) that a job
#: reads once (the background job's tiles: ``napari_gmm.io.reading_once``) and that are not in the
#: page cache (their last block, asked without waiting: ``RWF_NOWAIT``): from the disk into the
#: array without the page cache's copy. The 8 GB stack, cold cache, alternating: all its chunks
#: read 5.6 / 5.6 s (6.6 s CPU) against 9.0 / 8.2 s (11.5 s CPU); the background job 32.8 / 33.2 /
#: 32.2 s against 37.0 / 35.4 / 35.5 s (system CPU 6.2-7.6 s against 13.5-14.8 s). Not for
#: segmentation, which reads the stack twice: its second pass found the first's chunks in the
#: page cache (on a LocalCluster 24.8 / 24.7 s with direct reads against 23.1 / 24.3 s)
DIRECT_READS = True
DIRECT_READ_MIN_BYTES = 2**20
#: the buffer, file offset and length alignment of those writes and reads (the usual logical block
#: size of disks and file systems is 512 or 4096 bytes)
DIRECT_IO_ALIGN = 4096

#: glibc malloc arenas of the command line's batch jobs (``napari-gmm segment / apply /
#: background``), set with ``mallopt(M_ARENA_MAX)`` when it starts (see
#: ``napari_gmm.__main__._limit_malloc_arenas``; glibc only, the command's own process only, never
#: a napari session's). By default glibc gives each thread that allocates its own arena (up to 8
#: per core), and each keeps the chunk-sized buffers freed into it for reuse: on a 1.6 GB uint16
#: stack the background job peaked at 1.00-1.05 GiB that way, 0.82 GiB with 2 arenas and 0.77-0.78
#: GiB with 1, for the same CPU with 2 (19.7 / 19.7 s against 19.8 / 19.6 s, cold cache, under
#: load) and 3-5 % more with 1 (measured with ``MALLOC_ARENA_MAX``).
CLI_MALLOC_ARENAS = 2

#: Where glibc's malloc thresholds are fixed by the environment (``MALLOC_TRIM_THRESHOLD_``,
#: ``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TOP_PAD_`` or ``MALLOC_MMAP_MAX_``, or their
#: ``GLIBC_TUNABLES``: dask's nanny starts every worker with ``MALLOC_TRIM_THRESHOLD_=65536``),
#: every chunk-sized buffer is a fresh mapping whose pages the system zeroes when they are first
#: touched; napari-gmm then reads chunks into, looks labels up into and compresses chunks from
#: buffers it reuses (see ``napari_gmm._dask.chunk_buffer``), keeping at most this many bytes of
#: freed ones per process.
#: Elsewhere glibc reuses freed chunk buffers itself, and nothing is pooled. 256 MiB: the
#: background job's tile steps (masks and background of each step) and hole filling (blocks of
#: whole frames, 32 MiB) take their buffers from the pool too, and the 8 GB background on the
#: benchmark's LocalCluster (2 workers x 2 GB) took 33.4 / 33.8 / 34.1 s with 256 MiB against
#: 35.3 / 36.1 s with 128 MiB, 36.8 s with 64 MiB and 37.5 / 38.5 s without those buffers
#: pooled (the workers' CPU 51-52 s against 59-60 s; 33.7 / 34.5 s with dask's setting removed)
CHUNK_BUFFER_POOL_BYTES = 256 * 2**20
