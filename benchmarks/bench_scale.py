"""Past one machine's memory: segmenting a uint16 zarr stack larger than the memory given to the job.

Generates a (T, 2048, 2048) uint16 stack of ``--gb`` GB (default 8) as zarr (3 classes of blobs,
Gaussian noise, a slow intensity drift), then, in one run:

1. **I/O floor**: reading (and decompressing) the whole zarr with dask's defaults, doing nothing
   else, from disk and from the page cache (read twice). The cold floor is measured fairly and
   repeatedly in the same run: before each cold measurement, of the floor AND of every job, the
   dirty pages are written back (``sync``: no earlier job's outputs are flushed during the next
   measurement) and, as root, the kernel's page, dentry and inode caches are dropped (``echo 3 >
   /proc/sys/vm/drop_caches``; without root, ``posix_fadvise(DONTNEED)`` of the stack's files), so
   the floor and the jobs all read the stack from the disk, as a stack larger than memory is read.
   The disk's speed moves on a shared machine (9.2 to 17.2 s for the 8 GB stack in earlier runs), so
   the cold floor is measured before the first job and again after every job (at least
   ``--floors`` times): every job has a floor just before and just after it. The table gives each
   job's ratio to the median of the run's cold floors and to the floors around it, and prints every
   floor with the load average. Once, the same cold read with napari-gmm's own reader
   (``napari_gmm.io.open_image``, what the command line reads with: a whole chunk decoded straight
   into its block, without zarr's second buffer and copy), as a row of its own.
2. **API, threaded scheduler** (no cluster): ``segment(stack, 3)`` lazily and
   ``napari_gmm.io.write_zarr`` of the labels; time and the process's peak RSS growth. Twice: the
   stack read with ``da.from_zarr`` (as in earlier sessions' tables), then with
   ``napari_gmm.io.open_image``.
2b. **Segmentation's passes** (``--only passes``): each of its two passes alone from a cold page
   cache, between two cold floors: the exact histogram; the labels of the fitted model computed
   and dropped; the labels compressed and written. Which part is above a cold read.
3. **Command line on a cluster**: ``napari-gmm segment STACK.zarr --scheduler ADDRESS`` against a
   ``LocalCluster`` of 2 workers with a 2 GB memory limit each; time and every worker's peak RSS.
   (``cluster-api``) the API job of 2 (``io.open_image``) with a ``Client`` of a fresh such
   LocalCluster in this process: the same work without the command line's start (its imports,
   about 1 s, and connecting), as a script on a cluster runs it.
3b. **Background modelling from the command line**: ``napari-gmm background STACK.zarr`` with its
   defaults (one chain of tasks per input chunk column, carrying the model over the time chunks;
   foreground and every frame's background written), on dask's threaded scheduler, and
   (``cluster-background``) the same with ``--scheduler`` on the LocalCluster of 2 x 2 GB. For
   both cluster jobs, the most bytes any worker held spilled to disk (polled every second). Before
   them, once, the cold read of the zarr with dask's defaults on that LocalCluster (the cluster's
   own I/O floor: one thread per worker, the scheduler's messages), as a row of its own; the cluster
   jobs' ratio to it is given in their rows' names, beside their ratios to the in-process floors.
4. **Equality** with the in-memory path on a crop: the written labels against ``model.predict`` of
   the crop as a NumPy array.
5. **Apply**: ``napari-gmm apply`` of the threaded run's saved model to the stack: labels in one
   pass (no histogram pass), the job of a model fitted once and applied to new acquisitions.
6. **Peer**: OpenCV's MOG2 (defaults, 2 threads) on the stack's first frames in memory, rescaled to
   8 bits, extrapolated to the whole stack: the compute alone a trusted background model spends on
   these pixel-frames, to set the background job's ratio in context. Beside it, our own per-pixel
   kernel alone the same way (frames in memory, every frame's background written as the command
   does, the default burn-in's frames counted): what the background job costs without any I/O.
7. **Compressors** (``--only codecs``, after the jobs have written their outputs): the outputs'
   compressor (Blosc LZ4, byte shuffle) against Blosc LZ4/BloscLZ/Zstd with byte, bit or no
   shuffle and plain Zstd, on chunks of the written background, masks and labels: size and speed.

Before any timed job, each command runs once on a tiny stack (untimed): the Numba kernels are
then in their on-disk cache, as after ``napari-gmm precompile``. A first run with a stale cache
(after installing, or after editing a kernel) compiles them inside the job: measured 24 s of CPU
for the background command, which would otherwise be counted as throughput.

Prints one table (throughput in MB/s of input, ratio to the I/O floor, peak memory, and the CPU
seconds (user + sys, every thread of the job's process) with the cores they kept busy on average:
on a shared machine the wall times move with the others' load, the CPU seconds much less, and a
job that keeps 2 cores busy cannot gain from more overlap, only from less work). Goals (issue
15): segmentation within 2x of the I/O floor, background within 4x, peak memory bounded by
chunks (not by the stack), workers within their limit.

    python benchmarks/bench_scale.py [--gb 8] [--dir /tmp/napari-gmm-scale] [--keep]
        [--only floor,api,passes,cluster,cluster-api,apply,background,cluster-background,peers,codecs]
        [--floors 3]

``--dir`` holds the generated stack (``DIR/stack.zarr``, reused when its shape matches ``--gb``);
``--only`` runs a subset of the jobs (the I/O floors are always measured; ``--only floor --floors 5``
measures the cold floor 5 times).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import peak_growth  # noqa: E402

#: the environment the benchmark was started with, which every command line job gets: starting a
#: LocalCluster writes dask's nanny settings into this process's own environment
#: (``MALLOC_TRIM_THRESHOLD_=65536``, ``OMP_NUM_THREADS=1``...), so that the jobs started after the
#: cluster jobs inherited them, a worker's settings that a user's shell does not have (measured:
#: ``napari-gmm background`` after the cluster jobs 38.0 s and 64 s of CPU, without them 32.9 s
#: and 55.5 s)
USER_ENV = dict(os.environ)

SIDE = 2048
CHUNK = (8, 1024, 1024)  # 16 MiB of uint16 per chunk


def _frames(block_info=None):
    """One chunk of the synthetic stack, from its position (deterministic, no global state)."""
    loc = block_info[None]["array-location"]
    (t0, t1), (y0, y1), (x0, x1) = loc
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    cls = ((np.sin(yy / 97.0) + np.cos(xx / 131.0) + np.sin((xx + yy) / 53.0)) > 0.4).astype(np.int8)
    cls += ((np.cos(yy / 41.0) * np.sin(xx / 37.0)) > 0.55).astype(np.int8)
    means = np.array([1200.0, 3000.0, 5200.0], np.float32)
    rng = np.random.default_rng([t0, y0, x0])
    out = np.empty((t1 - t0, y1 - y0, x1 - x0), np.uint16)
    for i, t in enumerate(range(t0, t1)):
        drift = 1.0 - 0.2 * t / 1000.0
        out[i] = np.clip(means[cls] * drift + rng.standard_normal(cls.shape, np.float32) * 400, 0, 65535)
    return out


def generate(path: Path, gb: float):
    import dask.array as da

    T = max(CHUNK[0], int(round(gb * 1e9 / (SIDE * SIDE * 2) / CHUNK[0])) * CHUNK[0])
    if path.exists():
        import zarr

        if zarr.open_array(str(path), mode="r").shape == (T, SIDE, SIDE):
            return T
        shutil.rmtree(path)
    chunks = ((CHUNK[0],) * (T // CHUNK[0]), (CHUNK[1],) * (SIDE // CHUNK[1]), (CHUNK[2],) * (SIDE // CHUNK[2]))
    stack = da.map_blocks(_frames, chunks=chunks, dtype=np.uint16)
    t = time.perf_counter()
    stack.to_zarr(str(path))
    print(
        f"generated {path} ({T} x {SIDE} x {SIDE} uint16, {T * SIDE * SIDE * 2 / 1e9:.1f} GB) "
        f"in {time.perf_counter() - t:.0f} s",
        flush=True,
    )
    return T


def evict(root):
    """Drop the files under ``root`` from the page cache (posix_fadvise DONTNEED; no root needed for
    clean pages), so that the next job reads them from disk, as a stack larger than memory is."""
    for d, _, files in os.walk(root):
        for f in files:
            fd = os.open(os.path.join(d, f), os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def drop_caches(root):
    """Make the next read of ``root`` come from the disk: ``sync`` (so that no earlier job's dirty
    outputs are written back during the next measurement), then, as root, the kernel's whole page,
    dentry and inode cache dropped (``echo 3 > /proc/sys/vm/drop_caches``: a truly cold read, the
    zarr's directories included); without the right to do that, :func:`evict` of ``root``'s files
    (their data pages only). Returns the method used."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        DROP_METHOD[0] = "echo 3 > /proc/sys/vm/drop_caches"
    except OSError:
        evict(root)
        DROP_METHOD[0] = "posix_fadvise(DONTNEED) of the stack's files (not root)"
    return DROP_METHOD[0]


DROP_METHOD = ["?"]


def _read(path, reader):
    """The stack as a dask array: ``"dask"``, ``da.from_zarr`` (dask's defaults, the floor's
    reader); ``"napari-gmm"``, ``napari_gmm.io.open_image`` (what the command line reads with: whole
    chunks decoded straight into the block, no zarr copy)."""
    import dask.array as da

    if reader == "napari-gmm":
        from napari_gmm import io

        return io.open_image(path).data
    return da.from_zarr(str(path))


def compute_and_drop(a):
    """Compute every block of dask array ``a`` and keep nothing of it (a one-byte block each)."""
    a.map_blocks(lambda b: np.zeros((1,) * b.ndim, np.uint8), chunks=(1,) * a.ndim).sum().compute()


def local_cluster():
    """The cluster jobs' LocalCluster: 2 workers x 1 thread x 2 GB (what ``LocalCluster(n_workers=2)``
    gives on 2 cores, with the issue's memory cap)."""
    from distributed import LocalCluster

    return LocalCluster(n_workers=2, threads_per_worker=1, memory_limit="2GB", dashboard_address=None)


def io_floor(path, cold, reader="dask"):
    """(Seconds, CPU seconds) to read (and decompress) the whole zarr with dask's defaults (or
    ``reader``, see :func:`_read`), doing nothing else: from disk (``cold``: :func:`drop_caches`
    first) or from the page cache (read once before)."""
    stack = _read(path, reader)

    def read():
        compute_and_drop(stack)

    if cold:
        drop_caches(path)
    else:
        read()
    with Timed() as t:
        read()
    return t.seconds, t.cpu


class Timed:
    """Wall seconds and CPU seconds (user + sys of every thread of this process) of a block."""

    def __enter__(self):
        r = resource.getrusage(resource.RUSAGE_SELF)
        self._cpu, self._t = r.ru_utime + r.ru_stime, time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self._t
        r = resource.getrusage(resource.RUSAGE_SELF)
        self.cpu = r.ru_utime + r.ru_stime - self._cpu


def mog2_compute(path, n_frames=48):
    """Seconds per pixel-frame of OpenCV's MOG2 (defaults, 2 threads) on the stack's first frames
    in memory, rescaled to 8 bits as MOG2 needs: the compute a peer spends, without any I/O."""
    import cv2
    import zarr

    cv2.setNumThreads(2)
    frames = np.asarray(zarr.open_array(str(path), mode="r")[:n_frames])
    lo, hi = float(frames.min()), float(frames.max())
    frames8 = np.clip((frames - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)
    sub = cv2.createBackgroundSubtractorMOG2()
    t = time.perf_counter()
    for f in frames8:
        sub.apply(f)
    return (time.perf_counter() - t) / frames8.size


def kernel_compute(path, n_warm=16, n_frames=48):
    """(Seconds, CPU seconds) per pixel-frame of our background kernel alone (``BackgroundModel.apply_block`` with
    the default parameters, the masks and every frame's uint16 background written, the machine's
    threads) on frames in memory, after ``n_warm`` frames: the compute of the background job
    without reading, compressing or writing."""
    import zarr

    import napari_gmm as ng
    from napari_gmm.background import default_data_range

    z = zarr.open_array(str(path), mode="r")
    frames = np.asarray(z[: n_warm + n_frames])
    model = ng.BackgroundModel(frames.shape[1:], data_range=default_data_range(frames))
    masks = np.empty((16,) + frames.shape[1:], np.uint8)
    bg = np.empty((16,) + frames.shape[1:], frames.dtype)
    model.apply_block(frames[:n_warm], out=masks[:n_warm], background_out=bg[:n_warm])
    with Timed() as t:
        for i in range(n_warm, len(frames), 16):  # (fewer frames than asked for on a tiny stack)
            nb = len(frames[i : i + 16])
            model.apply_block(frames[i : i + 16], out=masks[:nb], background_out=bg[:nb])
    n = (len(frames) - n_warm) * frames[0].size
    return t.seconds / n, t.cpu / n


def segment_and_write(path, out, reader):
    """The API job: ``segment`` of the stack read by ``reader`` (:func:`_read`) + ``write_zarr`` of
    the labels with the model; on whatever scheduler is active. Returns the model."""
    import napari_gmm as ng
    from napari_gmm import io

    labels, model = ng.segment(_read(path, reader), 3, return_model=True)
    io.write_zarr(out, labels, attrs={"model": model.to_dict()}, axes="tyx", overwrite=True)
    return model


def api_threaded(path, out, reader="dask"):
    """:func:`segment_and_write` on the threaded scheduler."""
    with Timed() as t:
        grew, model = peak_growth(lambda: segment_and_write(path, out, reader))
    return t.seconds, t.cpu, grew, model


def segment_passes(path, out, model):
    """Segmentation's two passes, each alone from a cold page cache, in the API (threaded
    scheduler): (1) the exact histogram of the whole stack (what the fit needs; the fit itself is
    milliseconds), (2) the labels of the fitted ``model`` computed and dropped (read, decode,
    look-up), (3) the labels computed and written with ``write_zarr`` (2 + compress + write).
    Yields (name, seconds, CPU seconds) after each (the caller measures a floor between them)."""
    import dask.array as da

    from napari_gmm import _dask, io

    def hist():
        _dask.histogram(da.from_zarr(str(path)))

    def labels():
        compute_and_drop(model.predict(da.from_zarr(str(path))))

    def labels_written():
        io.write_zarr(out, model.predict(da.from_zarr(str(path))), axes="tyx", overwrite=True)

    for name, f in (
        ("pass 1 alone: the exact histogram", hist),
        ("pass 2 alone: the labels, computed and dropped", labels),
        ("pass 2 + write_zarr (labels compressed and written)", labels_written),
    ):
        drop_caches(path)
        with Timed() as t:
            f()
        yield name, t.seconds, t.cpu


def codecs(root, n=3):
    """The outputs' compressor against others, on ``n`` chunks of each kind of output the jobs wrote
    (every frame's uint16 background, the uint8 foreground masks, the uint8 labels): (kind, codec,
    compressed size / raw size, encode MB/s, decode MB/s), best of 5 rounds over the codecs, one
    thread per codec call (as zarr calls them from its thread pool). The first codec is the one
    ``napari_gmm.io`` writes."""
    import numcodecs
    import zarr
    from numcodecs import Blosc, Zstd

    numcodecs.blosc.use_threads = False
    kinds = {
        "background uint16": root / "background.zarr" / "background",
        "foreground masks uint8": root / "background.zarr" / "foreground",
        "labels uint8 (K = 3)": root / "labels_api.zarr" / "0",
    }
    cands = {
        "Blosc LZ4 5 shuffle (napari-gmm's)": Blosc("lz4", 5, Blosc.SHUFFLE),
        "Blosc LZ4 1 shuffle": Blosc("lz4", 1, Blosc.SHUFFLE),
        "Blosc LZ4 5 bitshuffle": Blosc("lz4", 5, Blosc.BITSHUFFLE),
        "Blosc LZ4 5 no shuffle": Blosc("lz4", 5, Blosc.NOSHUFFLE),
        "Blosc BloscLZ 5 shuffle": Blosc("blosclz", 5, Blosc.SHUFFLE),
        "Blosc Zstd 1 shuffle": Blosc("zstd", 1, Blosc.SHUFFLE),
        "Blosc Zstd 1 bitshuffle": Blosc("zstd", 1, Blosc.BITSHUFFLE),
        "Zstd 1": Zstd(1),
        "Zstd 3 (zarr's default)": Zstd(0),
    }
    out = []
    for kind, path in kinds.items():
        if not path.exists():
            continue
        z = zarr.open_array(str(path), mode="r")
        starts = np.linspace(0, z.shape[0] - z.chunks[0], n).astype(int) // z.chunks[0] * z.chunks[0]
        arrs = [np.ascontiguousarray(z[t : t + z.chunks[0], : z.chunks[1], : z.chunks[2]]) for t in starts]
        raw = sum(a.nbytes for a in arrs)
        best = {name: [np.inf, np.inf, 0] for name in cands}
        for _ in range(5):  # rounds over every codec in turn (a load spike hits one round, not one codec)
            for name, c in cands.items():
                t = time.perf_counter()
                enc = [c.encode(a) for a in arrs]
                t_enc = time.perf_counter() - t
                t = time.perf_counter()
                for e in enc:
                    c.decode(e)
                t_dec = time.perf_counter() - t
                b = best[name]
                b[:] = min(b[0], t_enc), min(b[1], t_dec), sum(len(e) for e in enc)
        for name, (t_enc, t_dec, size) in best.items():
            out.append((kind, name, size / raw, raw / 1e6 / t_enc, raw / 1e6 / t_dec))
    return out


def _worker_cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _worker_peak():
    """A worker's peak resident memory in bytes: its memory's high-water mark (``VmHWM``, Linux),
    not ``ru_maxrss``: a LocalCluster's worker is started from this process (fork, then exec), and
    ``ru_maxrss`` keeps, across the exec, the size of the process it was forked from (measured: idle
    workers of a benchmark process of 764 MiB gave 763 / 764 MiB, their VmHWM 66 / 66 MiB)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def cluster_floor(path):
    """(Seconds, the workers' CPU seconds) to read (and decompress) the whole zarr from disk with
    dask's defaults (``da.from_zarr``) on the LocalCluster of 2 workers x 2 GB the cluster jobs run
    on, doing nothing else: the I/O floor of that setup (its workers, their one thread each, the
    scheduler's messages), beside the in-process floor."""
    import dask.array as da
    from distributed import Client

    with local_cluster() as lc:
        with Client(lc) as client:
            stack = da.from_zarr(str(path))
            cpu0 = sum(client.run(_worker_cpu).values())
            drop_caches(path)
            t = time.perf_counter()
            compute_and_drop(stack)
            seconds = time.perf_counter() - t
            return seconds, sum(client.run(_worker_cpu).values()) - cpu0


def cli_cluster(job, path, out, *args):
    """``napari-gmm JOB STACK --out OUT ARGS --scheduler`` against a LocalCluster of 2 workers x
    2 GB: (seconds, every worker's peak RSS, the workers' CPU seconds during the job, the most
    bytes any worker held spilled to its disk, polled every second)."""
    import threading

    from distributed import Client

    def spilled(dask_worker):
        total = getattr(dask_worker.data, "spilled_total", None)
        return 0 if total is None else int(getattr(total, "disk", total[1]))

    with local_cluster() as lc:
        with Client(lc) as client:
            cpu0 = sum(client.run(_worker_cpu).values())
            most, done = [0], threading.Event()

            def poll():
                while not done.wait(1.0):
                    try:
                        most[0] = max([most[0], *client.run(spilled).values()])
                    except Exception:  # the poll must not stop the job
                        pass

            poller = threading.Thread(target=poll, daemon=True)
            poller.start()
            t = time.perf_counter()
            cmd = [sys.executable, "-m", "napari_gmm", job, str(path), "--out", str(out), *map(str, args)]
            cmd += ["--scheduler", lc.scheduler_address, "--overwrite", "--no-progress"]
            r = subprocess.run(cmd, capture_output=True, text=True, env=USER_ENV)
            seconds = time.perf_counter() - t
            done.set()
            poller.join()
            cpu = sum(client.run(_worker_cpu).values()) - cpu0
            peaks = client.run(_worker_peak)
    if r.returncode != 0:
        raise RuntimeError(r.stderr)
    return seconds, list(peaks.values()), cpu, most[0]


def api_cluster(path, out):
    """:func:`segment_and_write` (the stack read with ``io.open_image``) with a
    ``distributed.Client`` of a fresh LocalCluster of 2 workers x 2 GB active in this process, as
    a script on a cluster runs it (no command line starting): (seconds, every worker's peak RSS,
    the workers' CPU seconds)."""
    from distributed import Client

    with local_cluster() as lc:
        with Client(lc) as client:
            cpu0 = sum(client.run(_worker_cpu).values())
            drop_caches(path)
            t = time.perf_counter()
            segment_and_write(path, out, "napari-gmm")
            seconds = time.perf_counter() - t
            cpu = sum(client.run(_worker_cpu).values()) - cpu0
            peaks = client.run(_worker_peak)
    return seconds, list(peaks.values()), cpu


def _cli(*args):
    """``python -m napari_gmm ARGS --overwrite --no-progress`` under ``/usr/bin/time``: (seconds,
    peak RSS in bytes, CPU seconds: user + sys of the process). RuntimeError with its stderr on
    failure."""
    cmd = [sys.executable, "-m", "napari_gmm", *map(str, args), "--overwrite", "--no-progress"]
    t = time.perf_counter()
    r = subprocess.run(["/usr/bin/time", "-f", "%M %U %S"] + cmd, capture_output=True, text=True, env=USER_ENV)
    seconds = time.perf_counter() - t
    if r.returncode != 0:
        raise RuntimeError(r.stderr)
    peak, user, sys_ = r.stderr.strip().splitlines()[-1].split()
    return seconds, int(peak) * 1024, float(user) + float(sys_)


def warm_up(root):
    """Each command once on a tiny stack (untimed), so that the timed jobs find the Numba kernels
    in their on-disk cache instead of compiling them (as after ``napari-gmm precompile``)."""
    import zarr

    tiny = root / "warm-up.zarr"
    z = zarr.create_array(str(tiny), shape=(16, 64, 64), chunks=(8, 32, 32), dtype=np.uint16, overwrite=True)
    z[:] = np.random.default_rng(0).normal(2000, 300, (16, 64, 64)).clip(0, 65535).astype(np.uint16)
    try:
        _cli("segment", tiny, "-k", "3", "--out", root / "warm-up-labels.zarr")
        _cli("apply", root / "warm-up-labels.zarr", tiny, "--out", root / "warm-up-apply.zarr")
        _cli("background", tiny, "--out", root / "warm-up-bg.zarr")
    finally:
        for p in root.glob("warm-up*"):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


def cli_apply(path, model_from, out):
    """``napari-gmm apply MODEL STACK --out OUT.zarr``: labels from a saved model (the threaded
    run's), one pass over the stack (no histogram pass); (seconds, peak RSS, CPU seconds)."""
    return _cli("apply", model_from, path, "--out", out)


def cli_background(path, out):
    """``napari-gmm background STACK --out OUT.zarr`` with the defaults (camera-video preset,
    background of every frame), threaded scheduler; (seconds, peak RSS, CPU seconds)."""
    return _cli("background", path, "--out", out)


def check_background_crop(path, out):
    """The tiled result against the NumPy path on a crop: per-pixel models are independent, so a
    crop away from the post-filter's border equals the full run's centre."""
    import dask.array as da

    import napari_gmm as ng
    from napari_gmm import io

    fg, meta = io.read_result(out, "foreground")
    crop = np.asarray(da.from_zarr(str(path))[:, 100:164, 100:164])
    ref = ng.subtract_background(crop, data_range=meta["params"]["data_range"])
    return bool(np.array_equal(fg[:, 101:163, 101:163].compute(), ref.foreground[:, 1:-1, 1:-1]))


def check_crop(path, out):
    import dask.array as da

    import napari_gmm as ng
    from napari_gmm import io

    labels, meta = io.read_result(out)
    model = ng.MixtureModel.from_dict(meta["model"])
    crop = np.asarray(da.from_zarr(str(path))[:4, :512, :512])
    return bool(np.array_equal(labels[:4, :512, :512].compute(), model.predict(crop)))


JOBS = (
    "floor",
    "api",
    "passes",
    "cluster",
    "cluster-api",
    "apply",
    "background",
    "cluster-background",
    "peers",
    "codecs",
)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gb", type=float, default=8.0)
    ap.add_argument("--dir", default="/tmp/napari-gmm-scale")
    ap.add_argument("--keep", action="store_true", help="keep the generated stack and outputs")
    ap.add_argument("--only", default=",".join(JOBS), help=f"comma-separated subset of {','.join(JOBS)}")
    ap.add_argument(
        "--floors", type=int, default=3, help="at least this many cold floors (one before the jobs, one after each)"
    )
    args = ap.parse_args()
    only = set(args.only.split(",")) | {"floor"}
    if not only <= set(JOBS):
        ap.error(f"--only: unknown job(s) {sorted(only - set(JOBS))}; choose among {', '.join(JOBS)}")
    if only & {"apply", "passes"}:
        only.add("api")  # apply and the passes use the model the threaded run saved
    root = Path(args.dir)
    root.mkdir(parents=True, exist_ok=True)
    stack = root / "stack.zarr"
    T = generate(stack, args.gb)
    mb = T * SIDE * SIDE * 2 / 1e6
    warm_up(root)
    colds = []  # (seconds, CPU seconds, load average) of every cold floor, in order

    def cold_floor():
        sec, cpu = io_floor(stack, cold=True)
        colds.append((sec, cpu, os.getloadavg()[0]))

    def job_start():
        # every job starts from a cold page cache: the stack comes from disk, as a new acquisition does
        drop_caches(stack)

    def job_end():
        # the floor again after every job: the disk's speed moves on this machine, so each job has
        # a floor measured just before and just after it
        cold_floor()

    cold_floor()
    # the same cold read with napari-gmm's reader (io.open_image), once: the floor of the jobs that
    # read with it (the command line's)
    ours_cold = io_floor(stack, cold=True, reader="napari-gmm") + (os.getloadavg()[0],)
    for _ in range(max(0, args.floors - 1 - len(only - {"floor", "peers"}))):
        cold_floor()
    floor, cpu_warm = io_floor(stack, cold=False)
    result = {"ours_cold_s": ours_cold[0], "ours_cold_cpu": ours_cold[1]}
    # rows: (job, seconds, CPU seconds or None, peak memory, equal to the in-memory path, load, floors)
    rows = []
    result.update(gb=mb / 1e3, floor_s=floor)

    def row(name, sec, cpu, mem, ok):
        # the index of the floor measured just before the job (the one after it comes next)
        rows.append((name, sec, cpu, mem, ok, os.getloadavg()[0], len(colds) - 1))

    if "api" in only:
        job_start()
        t_api, cpu_api, grew, _ = api_threaded(stack, root / "labels_api.zarr")
        row("API segment + write_zarr, threaded scheduler", t_api, cpu_api, f"+{grew / 2**20:.0f} MiB (process)", None)
        job_end()
        ok = check_crop(stack, root / "labels_api.zarr")
        rows[-1] = rows[-1][:4] + (ok,) + rows[-1][5:]
        result.update(api_s=t_api, api_cpu=cpu_api, api_peak_growth=grew, api_equal=ok)
        # the same job reading the stack with napari-gmm's reader (io.open_image) instead of da.from_zarr
        job_start()
        t_io, cpu_io, grew_io, _ = api_threaded(stack, root / "labels_api_io.zarr", reader="napari-gmm")
        name = "API segment (read with io.open_image) + write_zarr, threaded"
        row(name, t_io, cpu_io, f"+{grew_io / 2**20:.0f} MiB (process)", None)
        job_end()
        ok = check_crop(stack, root / "labels_api_io.zarr")
        rows[-1] = rows[-1][:4] + (ok,) + rows[-1][5:]
        result.update(api_io_s=t_io, api_io_cpu=cpu_io, api_io_equal=ok)
    if "passes" in only:
        import napari_gmm as ng
        from napari_gmm import io

        model = ng.MixtureModel.from_dict(io.read_result(root / "labels_api.zarr")[1]["model"])
        for name, sec, cpu in segment_passes(stack, root / "labels_passes.zarr", model):
            row(f"segmentation {name}, threaded", sec, cpu, "-", "-")
            job_end()
            result.setdefault("passes", []).append([name, sec, cpu])
    cl_floor = None
    if only & {"cluster", "cluster-api", "cluster-background"}:
        # the cold read on the cluster itself, once, before its jobs: their ratio to it is given too
        cl_floor = cluster_floor(stack)
        result.update(cluster_floor_s=cl_floor[0], cluster_floor_cpu=cl_floor[1])

    def on_cluster(name, sec):
        return name if cl_floor is None else f"{name}; {sec / cl_floor[0]:.2f}x the cluster's I/O floor"

    if "cluster" in only:
        job_start()
        t_cli, peaks, cpu_cli, spill = cli_cluster("segment", stack, root / "labels_cli.zarr", "-k", "3")
        mem = " / ".join(f"{p / 2**20:.0f} MiB" for p in peaks) + f" per worker, {spill / 2**20:.0f} MiB spilled"
        row(on_cluster("CLI segment, LocalCluster 2 x 2 GB (CPU: the workers')", t_cli), t_cli, cpu_cli, mem, None)
        job_end()
        ok = check_crop(stack, root / "labels_cli.zarr")
        rows[-1] = rows[-1][:4] + (ok,) + rows[-1][5:]
        result.update(cli_s=t_cli, cli_cpu=cpu_cli, worker_peaks=peaks, cli_spilled=spill, cli_equal=ok)
    if "cluster-api" in only:
        job_start()
        t_ca, peaks, cpu_ca = api_cluster(stack, root / "labels_cluster_api.zarr")
        mem = " / ".join(f"{p / 2**20:.0f} MiB" for p in peaks) + " per worker"
        name = on_cluster("API segment (io.open_image) + write_zarr, Client of a LocalCluster 2 x 2 GB", t_ca)
        row(name, t_ca, cpu_ca, mem, None)
        job_end()
        ok = check_crop(stack, root / "labels_cluster_api.zarr")
        rows[-1] = rows[-1][:4] + (ok,) + rows[-1][5:]
        result.update(cluster_api_s=t_ca, cluster_api_cpu=cpu_ca, cluster_api_peaks=peaks, cluster_api_equal=ok)
    if "cluster-background" in only:
        job_start()
        t_cb, peaks, cpu_cb, spill = cli_cluster("background", stack, root / "background_cli.zarr")
        mem = " / ".join(f"{p / 2**20:.0f} MiB" for p in peaks) + f" per worker, {spill / 2**20:.0f} MiB spilled"
        name = on_cluster("CLI background, LocalCluster 2 x 2 GB (defaults; CPU: the workers')", t_cb)
        row(name, t_cb, cpu_cb, mem, None)
        job_end()
        ok = check_background_crop(stack, root / "background_cli.zarr")
        rows[-1] = rows[-1][:4] + (ok,) + rows[-1][5:]
        result.update(
            cluster_background_s=t_cb,
            cluster_background_cpu=cpu_cb,
            cluster_background_peaks=peaks,
            cluster_background_spilled=spill,
            cluster_background_equal=ok,
        )
    if "apply" in only:
        job_start()
        t_apply, peak, cpu_apply = cli_apply(stack, root / "labels_api.zarr", root / "labels_apply.zarr")
        row(
            "CLI apply a saved model (one pass), threaded",
            t_apply,
            cpu_apply,
            f"{peak / 2**20:.0f} MiB (process)",
            None,
        )
        job_end()
        ok = check_crop(stack, root / "labels_apply.zarr")
        rows[-1] = rows[-1][:4] + (ok,) + rows[-1][5:]
        result.update(apply_s=t_apply, apply_cpu=cpu_apply, apply_peak=peak, apply_equal=ok)
    if "background" in only:
        job_start()
        t_bg, bg_peak, cpu_bg = cli_background(stack, root / "background.zarr")
        row("CLI background, threaded (defaults)", t_bg, cpu_bg, f"{bg_peak / 2**20:.0f} MiB (process)", None)
        job_end()
        ok = check_background_crop(stack, root / "background.zarr")
        rows[-1] = rows[-1][:4] + (ok,) + rows[-1][5:]
        result.update(background_s=t_bg, background_cpu=cpu_bg, background_peak=bg_peak, background_equal=ok)
    cold_s = [c[0] for c in colds]
    floor_cold = float(np.median(cold_s))
    cpu_cold = float(np.median([c[1] for c in colds]))
    result.update(floor_cold_s=floor_cold, floors_cold_s=cold_s, floor_cold_cpu=cpu_cold)
    if "peers" in only:
        from napari_gmm.background import PRESETS, burn_in_indices

        t_mog2 = mog2_compute(stack) * T * SIDE * SIDE
        n_burn = len(burn_in_indices(T, PRESETS["camera video"]["burn_in"]))
        per_s, per_cpu = kernel_compute(stack)
        n_px = (T + n_burn) * SIDE * SIDE
        peer = "peer: OpenCV MOG2 compute alone (8-bit frames in memory, no I/O; extrapolated)"
        ours = "ours: the background kernel alone (frames in memory, no I/O; extrapolated)"
        rows.append((peer, t_mog2, None, "-", "-", os.getloadavg()[0], None))
        rows.append((ours, per_s * n_px, per_cpu * n_px, "-", "-", os.getloadavg()[0], None))
        result.update(mog2_s=t_mog2, kernel_s=per_s * n_px, kernel_cpu=per_cpu * n_px)
    print(f"\nstack: {T} x {SIDE} x {SIDE} uint16 = {mb / 1e3:.1f} GB as zarr ({CHUNK} chunks), 3 classes\n")
    print(
        f"cold I/O floor (sync, then the page cache dropped with {DROP_METHOD[0]}), "
        f"{len(cold_s)} measurements in this run, in order: "
        + ", ".join(f"{s_:.1f} s (load {ld:.1f})" for s_, _, ld in colds)
        + f"; median {floor_cold:.1f} s, spread {min(cold_s):.1f}-{max(cold_s):.1f} s "
        f"({100 * (max(cold_s) - min(cold_s)) / floor_cold:.0f} % of the median)\n"
    )
    print(
        "| job | seconds | MB/s | x cold floor (median) | x the floors before/after it | x warm floor | CPU seconds "
        "| cores busy | load (1 min) | peak memory | equals in-memory crop |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    floor_rows = [
        (
            f"read the zarr from disk (cold I/O floor, median of {len(cold_s)})",
            floor_cold,
            cpu_cold,
            "-",
            "-",
            float(np.median([c[2] for c in colds])),
            None,
        ),
        ("read the zarr from the page cache (warm I/O floor)", floor, cpu_warm, "-", "-", os.getloadavg()[0], None),
        (
            "read the zarr from disk with napari-gmm's reader (io.open_image), once",
            ours_cold[0],
            ours_cold[1],
            "-",
            "-",
            ours_cold[2],
            None,
        ),
    ]
    if cl_floor is not None:
        name = "read the zarr from disk on the LocalCluster 2 x 2 GB (the cluster's I/O floor; CPU: the workers'), once"
        floor_rows.append((name, cl_floor[0], cl_floor[1], "-", "-", os.getloadavg()[0], None))
    for name, sec, cpu, mem, ok, load, around in floor_rows + rows:
        c = "-" if cpu is None else f"{cpu:.1f}"
        busy = "-" if cpu is None else f"{cpu / sec:.2f}"
        near = "-" if around is None else " / ".join(f"{sec / f[0]:.2f}" for f in colds[around : around + 2])
        ratios = f"{sec / floor_cold:.2f} | {near} | {sec / floor:.2f}"
        print(f"| {name} | {sec:.1f} | {mb / sec:.0f} | {ratios} | {c} | {busy} | {load:.1f} | {mem} | {ok} |")
    print(f"load average: {open('/proc/loadavg').read().split()[:3]}, cores: {os.cpu_count()}")
    if "codecs" in only:
        table = codecs(root)
        print(
            "\noutputs' compressors on the jobs' own outputs (3 chunks each, best of 5 alternating rounds, "
            "one thread):\n"
        )
        print("| output | codec | compressed / raw | encode MB/s | decode MB/s |")
        print("|---|---|---|---|---|")
        for kind, name, ratio, enc, dec in table:
            print(f"| {kind} | {name} | {ratio:.3f} | {enc:.0f} | {dec:.0f} |")
        print(f"load average: {open('/proc/loadavg').read().split()[:3]}")
        result["codecs"] = table
    print(json.dumps(result))
    if not args.keep:
        for p in (
            "labels_api.zarr",
            "labels_api_io.zarr",
            "labels_cli.zarr",
            "labels_cli.zarr.summary.json",
            "labels_apply.zarr",
            "labels_apply.zarr.summary.json",
            "labels_passes.zarr",
            "background.zarr",
            "background.zarr.summary.json",
        ):
            q = root / p
            shutil.rmtree(q, ignore_errors=True) if q.is_dir() else q.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
