"""Background modelling of frame stacks with per-pixel adaptive Gaussian mixtures.

Stauffer & Grimson's adaptive mixture of Gaussians per pixel, with Zivkovic's improvements
(OpenCV's ``BackgroundSubtractorMOG2``): a fast start with learning rate ``1 / min(2 n, history)``,
an adaptive number of modes per pixel through a complexity reduction prior, variance clamps and
shadow detection. Parameter names are OpenCV's in snake_case.

Additions for stacks that are entirely known in advance (as in napari) and for microscopy:

- an *offline burn-in*: the model first learns from ``burn_in`` frames spread evenly over the
  stack (or from all of them), then classifies every frame from the start, so early frames are
  not all foreground and passing objects never become background;
- a *post-filter*: a majority (median) vote of the foreground mask over a small window, as the
  post-filtering step of Zivkovic's reference implementation;
- a *noise model* (:class:`NoiseModel`, :func:`estimate_noise`): Poisson shot noise plus camera
  read noise, ``var = gain * (I - offset) + read_noise**2``; the match and background tests use
  this modelled variance instead of a learned one, so dim and bright regions get the same
  false-positive rate;
- *bleaching / global drift correction* (:func:`estimate_bleaching`): a per-frame factor divided
  out of ``frame - offset`` before the per-pixel model, returned as a curve;
- *presets* (:data:`PRESETS`): ``"camera video"`` (OpenCV's model, the default) and
  ``"fluorescence time-lapse"`` (noise model, bleaching correction, whole-stack burn-in and a
  background that is the dominant mode, so objects pausing for up to half of the stack stay
  foreground).

Public API: :func:`subtract_background`, :class:`BackgroundModel` (frame or block at a time),
:class:`BackgroundResult`, :class:`NoiseModel`, :func:`estimate_noise`,
:func:`estimate_bleaching`, :func:`pixel_history`, :data:`PRESETS`. Importing this module never
imports napari or Qt.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

import numpy as np
from numba import get_num_threads

from ._kernels import mog as _mog
from ._validate import (
    Cancelled,
    InputError,
    check_param_names,
    float32_int_range,
    native_array,
    native_stack,
    to_int_dtype,
)

__all__ = [
    "subtract_background",
    "BackgroundModel",
    "BackgroundResult",
    "NoiseModel",
    "estimate_noise",
    "estimate_bleaching",
    "pixel_history",
    "burn_in_indices",
    "default_data_range",
    "preset_params",
    "check_background_args",
    "PRESETS",
    "DEFAULT_PRESET",
    "REPLAY_KEYS",
]

#: mask values in :attr:`BackgroundResult.foreground`
BACKGROUND, FOREGROUND, SHADOW = _mog.BACKGROUND, _mog.FOREGROUND, _mog.SHADOW

#: model parameters and their defaults (OpenCV MOG2 names in snake_case, plus our additions)
MODEL_DEFAULTS: dict[str, Any] = dict(
    history=500,
    var_threshold=16.0,
    n_mixtures=5,
    background_ratio=0.9,
    var_threshold_gen=9.0,
    var_init=15.0,
    var_min=4.0,
    var_max=75.0,
    complexity_reduction_threshold=0.05,
    detect_shadows="auto",
    shadow_threshold=0.5,
    median_size=3,
    fill_holes=1024,
)

#: largest number of modes per pixel accepted
MAX_MIXTURES = 16

#: frame dtypes the kernels are compiled for (every other dtype is converted to float32 first)
_KERNEL_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))

#: a dask block along time is computed in one go when it is at most this many bytes
_DASK_BLOCK_BYTES = 256 * 2**20


def _libc_madvise():
    """libc's ``madvise`` through ctypes (Linux), or None."""
    import sys

    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        f = ctypes.CDLL(None, use_errno=True).madvise
        f.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
        f.restype = ctypes.c_int
        return f
    except (OSError, AttributeError):
        return None


_MADVISE = _libc_madvise()
_MADV_NOHUGEPAGE = 15
#: Linux 5.14's MADV_POPULATE_WRITE: fault a range's pages in now, in one call
_MADV_POPULATE_WRITE = 23


def _page_range(a: np.ndarray):
    start = -(-a.ctypes.data // 4096) * 4096
    end = (a.ctypes.data + a.nbytes) // 4096 * 4096
    return start, end - start


def _new_output(shape, dtype) -> np.ndarray:
    """``np.empty(shape, dtype)`` for an output the kernels fill block by block (see
    :func:`_populate`), advised to use ordinary pages (``MADV_NOHUGEPAGE``).

    NumPy advises transparent huge pages for arrays of 4 MiB and more; with the kernel's
    default ``defrag=madvise`` each fresh huge page may wait for memory compaction. On the
    shared VM of the benchmarks, faulting in a fresh 400 MB array took 0.9-1.0 s with huge pages
    advised and 0.20-0.21 s without. The outputs are written once, in order: huge pages save
    nothing there."""
    a = np.empty(shape, dtype)
    if _MADVISE is not None and a.nbytes >= 2**22:
        start, n = _page_range(a)
        if n > 0:
            _MADVISE(start, n, _MADV_NOHUGEPAGE)
    return a


def _populate(a: np.ndarray, *, serial: bool = False) -> None:
    """Fault in the pages of the C-contiguous block ``a`` of a fresh output in one call
    (``MADV_POPULATE_WRITE``) before a kernel writes it; ``serial``: in one call in the calling
    thread (a pool thread's job, :class:`_PopulateAhead`), else split over the populate pool.

    The kernels write every output once, in parallel, and the first write to each fresh 4 KiB
    page faults: on the shared VM of the benchmarks a 400 MB output faulted page by page inside
    the parallel kernel cost 1.7 s more than writing touched memory, populated 0.10-0.17 s. Called
    per block of frames (progress and cancellation keep their pace; memory is committed as the
    outputs fill). Does nothing where the call is unavailable (other systems, Linux before 5.14) or the block is under
    256 KiB: the result is the same either way."""
    if _MADVISE is None or a.nbytes < 2**18 or not a.flags.c_contiguous:
        return
    start, n = _page_range(a)
    if n <= 0:
        return
    # in parallel, as the kernels would fault: one part per thread (0.10 s instead of 0.165 s for
    # 400 MB on 2 threads, measured on the shared VM)
    import numba

    parts = min(numba.get_num_threads(), 4) if n >= 2**21 and not serial else 1
    step = -(-n // parts // 4096) * 4096
    jobs = [(start + i, min(step, n - i)) for i in range(0, n, step)]
    if len(jobs) > 1:
        pool = _populate_pool(len(jobs) - 1)
        futures = [pool.submit(_MADVISE, s, k, _MADV_POPULATE_WRITE) for s, k in jobs[1:]]
        _MADVISE(jobs[0][0], jobs[0][1], _MADV_POPULATE_WRITE)
        for f in futures:
            f.result()
    else:
        _MADVISE(start, n, _MADV_POPULATE_WRITE)


#: blocks of frames whose outputs are faulted in ahead of the kernel, on a pool thread (see
#: :class:`_PopulateAhead`)
_AHEAD = 1


class _PopulateAhead:
    """Faults in the fresh outputs of a run block by block, ``_AHEAD`` blocks ahead of the
    kernel, on a pool thread while the kernel computes (the first block in the calling thread).

    :meth:`ready` is called with each block's frames ``t0:t1`` in order, before the kernel writes
    them: it waits for the block's own populate (submitted earlier), then submits the next blocks'.
    ``MADV_POPULATE_WRITE`` only faults pages in (their contents are untouched), so it is safe
    beside the kernel's writes to the block before; a job holds views of the outputs, which stay
    alive until it ends (a cancelled run's last job finishes on its own). The page that two blocks
    share is populated by neither and faulted by the kernel. With ``_AHEAD = 0`` (or where
    ``madvise`` is unavailable) each block is populated in the calling thread just before its
    kernel (:func:`_populate`).

    The page faults cost the same CPU time either way (about 0.12 s per 400 MB on the benchmarks'
    VM); ahead of the kernel they use the time the serial parts of the run leave a core idle.
    Measured by the lead on highway (1700 frames of 320 x 240 RGB, a 392 MB background output) on
    the quiet 2-core VM: the whole run 1.19 s with every block populated just before its kernel,
    1.10 s with a thread populating the whole output ahead (4 MiB steps) while the kernel runs,
    1.01 s without fresh pages. This class populates one block ahead instead, so the block's
    pages are still in cache when the kernel writes them."""

    def __init__(self, outputs, n_frames, block):
        self.outputs = [a for a in outputs if a is not None]
        self.n = n_frames
        self.block = block
        self.depth = _AHEAD if _MADVISE is not None else 0
        self.pending = {}

    def _submit(self, t0):
        t1 = min(self.n, t0 + self.block)
        if t0 >= t1 or t0 in self.pending:
            return
        parts = [a[t0:t1] for a in self.outputs]
        self.pending[t0] = _populate_pool(1).submit(lambda: [_populate(p, serial=True) for p in parts])

    def ready(self, t0, t1):
        job = self.pending.pop(t0, None)
        if job is not None:
            job.result()
        else:
            for a in self.outputs:
                _populate(a[t0:t1])
        for i in range(self.depth):
            self._submit(t1 + i * self.block)


_POOL = None


def _populate_pool(n):
    """A small thread pool for :func:`_populate` (created on first use; its threads sleep between
    blocks)."""
    global _POOL
    if _POOL is None or _POOL._max_workers < n:
        from concurrent.futures import ThreadPoolExecutor

        _POOL = ThreadPoolExecutor(max_workers=n, thread_name_prefix="napari_gmm-populate")
    return _POOL


def _is_dask(a) -> bool:
    return hasattr(a, "dask") and hasattr(a, "chunks") and hasattr(a, "compute")


def _check_model_params(params: dict) -> dict:
    """Validate and normalise model parameters; return a JSON-able dict of plain Python values."""
    unknown = set(params) - set(MODEL_DEFAULTS)
    if unknown:
        raise TypeError(
            f"unknown background-model parameter(s) {sorted(unknown)}; valid ones are {sorted(MODEL_DEFAULTS)}"
        )
    p = dict(MODEL_DEFAULTS)
    p.update(params)

    def _num(name, lo=None, hi=None, lo_open=False, hi_open=False, integer=False):
        v = p[name]
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
            raise TypeError(f"{name} must be a number, got {v!r}")
        v = float(v)
        if not math.isfinite(v):
            raise InputError(f"{name} must be finite, got {v}")
        if integer:
            if v != int(v):
                raise InputError(f"{name} must be an integer, got {v}")
            v = int(v)
        bad = (lo is not None and (v <= lo if lo_open else v < lo)) or (
            hi is not None and (v >= hi if hi_open else v > hi)
        )
        if bad:
            lo_s = "" if lo is None else f"{lo} {'<' if lo_open else '<='} "
            hi_s = "" if hi is None else f" {'<' if hi_open else '<='} {hi}"
            raise InputError(f"{name} must satisfy {lo_s}{name}{hi_s}, got {p[name]!r}")
        p[name] = v

    _num("n_mixtures", 1, MAX_MIXTURES, integer=True)
    _num("history", 1, integer=True)
    _num("var_threshold", 0, lo_open=True)
    _num("background_ratio", 0, 1, lo_open=True)
    _num("var_threshold_gen", 0, lo_open=True)
    _num("var_init", 0, lo_open=True)
    _num("var_min", 0, lo_open=True)
    _num("var_max", 0, lo_open=True)
    _num("complexity_reduction_threshold", 0, 0.5, hi_open=True)
    _num("shadow_threshold", 0, 1, lo_open=True)
    _num("median_size", 0, 31, integer=True)
    _num("fill_holes", 0, integer=True)
    if p["var_min"] > p["var_max"]:
        raise InputError(f"var_min ({p['var_min']}) must not exceed var_max ({p['var_max']})")
    if not (p["var_min"] <= p["var_init"] <= p["var_max"]):
        raise InputError(
            f"var_init ({p['var_init']}) must lie within [var_min, var_max] = [{p['var_min']}, {p['var_max']}]"
        )
    if p["median_size"] > 1 and p["median_size"] % 2 == 0:
        raise InputError(f"median_size must be odd (or 0/1 to switch the post-filter off), got {p['median_size']}")
    if p["detect_shadows"] != "auto":
        if not isinstance(p["detect_shadows"], (bool, np.bool_)):
            raise InputError(f'detect_shadows must be True, False or "auto", got {p["detect_shadows"]!r}')
        p["detect_shadows"] = bool(p["detect_shadows"])
    return p


class _FromPreset:
    """Default of the parameters that a preset chooses (``burn_in``, ``noise``,
    ``bleach_correction``): the value of the ``preset`` in use."""

    def __repr__(self):
        return "FROM_PRESET"

    def __reduce__(self):
        return "FROM_PRESET"


#: default of the arguments whose value the preset chooses
FROM_PRESET = _FromPreset()

#: what each preset sets; every other model parameter keeps :data:`MODEL_DEFAULTS`
PRESETS: dict[str, dict[str, Any]] = {
    # OpenCV's MOG2 with our offline burn-in of 100 spread frames: CDnet camera videos
    "camera video": dict(burn_in=100, noise=None, bleach_correction=False),
    # microscopy time-lapses (photon counts): shot + read noise model estimated from the stack,
    # bleaching divided out, the whole stack as burn-in and the dominant mode as background
    # (background_ratio 0.5: an object may sit on a pixel for up to half of the frames);
    # thresholds from benchmarks/bench_fluorescence.py
    "fluorescence time-lapse": dict(
        burn_in="all",
        noise="auto",
        bleach_correction=True,
        background_ratio=0.5,
        var_threshold=6.25,
        var_threshold_gen=6.25,
        detect_shadows=False,
        median_size=3,
        # measured neutral on bench_fluorescence (F the same to 4 digits with 256, 1024 or any
        # size): off, so that background enclosed by touching cells stays background
        fill_holes=0,
    ),
}

#: the preset used when none is given
DEFAULT_PRESET = "camera video"

#: parameters of :func:`subtract_background` that :func:`pixel_history` takes (all of
#: ``BackgroundResult.params`` that matter for one pixel's replay)
REPLAY_KEYS = tuple(MODEL_DEFAULTS) + (
    "preset",
    "data_range",
    "burn_in",
    "learning_rate",
    "noise",
    "bleach_correction",
    "frame_factors",
)


def _check_preset(preset) -> str:
    if not isinstance(preset, str) or preset not in PRESETS:
        raise InputError(
            f"preset must be one of {sorted(PRESETS)}, got {preset!r}: "
            '"camera video" for video cameras (8-bit scenes, OpenCV\'s MOG2), '
            '"fluorescence time-lapse" for microscopy (photon counts, bleaching)'
        )
    return preset


def preset_params(preset: str = DEFAULT_PRESET) -> dict:
    """Every parameter a preset implies: :data:`MODEL_DEFAULTS` updated by :data:`PRESETS`.

    Returns a new dict (model parameters plus ``burn_in``, ``noise``, ``bleach_correction``).

    >>> preset_params("fluorescence time-lapse")["background_ratio"]
    0.5
    >>> preset_params()["burn_in"]
    100
    """
    return dict(MODEL_DEFAULTS, **PRESETS[_check_preset(preset)])


def _resolve(preset, burn_in, noise, bleach_correction, params) -> dict:
    """The preset's values for every argument left at :data:`FROM_PRESET` or not given; the
    model parameters checked. Returns a dict with the model parameters and ``burn_in``,
    ``noise``, ``bleach_correction``."""
    base = preset_params(preset)
    unknown = set(params) - set(MODEL_DEFAULTS)
    if unknown:
        raise TypeError(
            f"unknown background-model parameter(s) {sorted(unknown)}; valid ones are {sorted(MODEL_DEFAULTS)}"
        )
    model = _check_model_params({k: params.get(k, base[k]) for k in MODEL_DEFAULTS})
    out = dict(model)
    out["burn_in"] = base["burn_in"] if burn_in is FROM_PRESET else burn_in
    out["noise"] = base["noise"] if noise is FROM_PRESET else noise
    out["bleach_correction"] = base["bleach_correction"] if bleach_correction is FROM_PRESET else bleach_correction
    return out


def burn_in_indices(n_frames: int, burn_in) -> np.ndarray:
    """The frames the offline burn-in learns from, in order (the one burn-in schedule).

    Parameters
    ----------
    n_frames : int
        Frames in the stack.
    burn_in : int, "all" or None
        As :func:`subtract_background`: ``n`` frames spread evenly over the stack (every frame
        when ``n >= n_frames``), ``"all"`` every frame, None or 0 none.

    Returns
    -------
    (n,) ndarray of int64

    >>> burn_in_indices(10, 4).tolist(), burn_in_indices(3, "all").tolist(), len(burn_in_indices(5, None))
    ([0, 3, 6, 9], [0, 1, 2], 0)
    """
    n_t = int(n_frames)
    if isinstance(burn_in, str):
        if burn_in != "all":
            raise InputError(f'burn_in must be "all", a number of frames or None, got {burn_in!r}')
        return np.arange(n_t, dtype=np.int64)
    if burn_in is None:
        return np.zeros(0, np.int64)
    if isinstance(burn_in, (numbers.Integral, np.integer)) and not isinstance(burn_in, bool) and burn_in >= 0:
        n = min(int(burn_in), n_t)
        if n >= n_t:
            return np.arange(n_t, dtype=np.int64)
        if n == 0:
            return np.zeros(0, np.int64)
        return np.unique(np.linspace(0, n_t - 1, n).round().astype(np.int64))
    raise InputError(f'burn_in must be "all", a number of frames >= 0 or None, got {burn_in!r}')


def default_data_range(stack, *, time_axis=0) -> float:
    """The data range :func:`subtract_background` uses by default (the one place it is decided).

    255 for uint8; otherwise ``max - min(0, min)`` of the finite values of the first, middle
    and last frames along ``time_axis`` (at least 1e-300; 1 when they are constant zero).
    Accepts numpy or dask stacks (only those three frames are read).
    """
    dtype = np.dtype(stack.dtype)
    if dtype == np.uint8:
        return 255.0
    n = stack.shape[time_axis]
    lo, hi = 0.0, 0.0
    for t in sorted({0, n // 2, n - 1}):
        f = np.take(stack, t, axis=time_axis)
        f = np.asarray(f.compute() if _is_dask(f) else f)
        if f.dtype.kind == "f":
            f = f[np.isfinite(f)]
        if f.size:
            lo = min(lo, float(f.min()))
            hi = max(hi, float(f.max()))
    span = hi - lo
    return span if span > 0 else 1.0


# ------------------------------------------------------------------------------ noise model
@dataclass(frozen=True)
class NoiseModel:
    """Camera noise of photon-counting data: ``var(I) = gain * max(I - offset, 0) + read_noise**2``.

    Parameters
    ----------
    gain : float
        Data units per photo-electron (ADU / e-), > 0: the slope of the variance against the
        mean (Poisson shot noise).
    offset : float, default 0
        The camera's dark level (data units) that carries no shot noise.
    read_noise : float, default 0
        Standard deviation of the Gaussian read noise, data units.

    Examples
    --------
    >>> m = NoiseModel(gain=2.0, offset=100.0, read_noise=3.0)
    >>> float(m.variance(300.0))
    409.0
    """

    gain: float
    offset: float = 0.0
    read_noise: float = 0.0

    def __post_init__(self):
        for name in ("gain", "offset", "read_noise"):
            v = getattr(self, name)
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (numbers.Real, np.floating)):
                raise InputError(f"noise model: {name} must be a number, got {v!r}")
            if not math.isfinite(float(v)):
                raise InputError(f"noise model: {name} must be finite, got {v!r}")
            object.__setattr__(self, name, float(v))
        if self.gain <= 0:
            raise InputError(
                f"noise model: gain must be > 0 (data units per photo-electron, the slope of the "
                f"variance against the mean), got {self.gain}; estimate it with "
                "napari_gmm.background.estimate_noise(stack) or pass noise='auto'"
            )
        if self.read_noise < 0:
            raise InputError(f"noise model: read_noise is a standard deviation and must be >= 0, got {self.read_noise}")

    def variance(self, intensity):
        """Modelled variance at ``intensity`` (data units)."""
        i = np.asarray(intensity, float)
        return self.gain * np.maximum(i - self.offset, 0.0) + self.read_noise**2

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def coerce(cls, value) -> NoiseModel:
        """A NoiseModel from a NoiseModel or a dict with ``gain`` (``offset``, ``read_noise``)."""
        if isinstance(value, NoiseModel):
            return value
        if isinstance(value, dict):
            extra = set(value) - {"gain", "offset", "read_noise"}
            if extra or "gain" not in value:
                raise InputError(
                    f"noise must be 'auto', None, a NoiseModel or a dict with keys "
                    f"gain, offset, read_noise; got {value!r}"
                )
            return cls(**value)
        raise InputError(
            f"noise must be 'auto', None, a NoiseModel or a dict with keys gain, offset, read_noise; got {value!r}"
        )


def _pixel_sample(n_pixels: int, n_max: int) -> np.ndarray | slice:
    """Indices of at most ``n_max`` of ``n_pixels`` flat pixels (fixed seed), or all."""
    if n_pixels <= n_max:
        return slice(None)
    rng = np.random.default_rng(0)
    return np.sort(rng.choice(n_pixels, n_max, replace=False))


class _Frames:
    """Frames of a time-first stack by index, for the stack-wide estimates (noise, bleaching).

    A dask stack is read a time block at a time: the frames of the time chunk holding the frame
    asked for (at most ``_DASK_BLOCK_BYTES`` of them), kept until a frame outside the block is
    asked for. zarr decodes whole chunks, so reading the frames of a chunk one by one decoded it
    once per frame (8 times for chunks of 8 frames: the bleaching estimate, which reads every
    frame in order, decoded the stack 8 times over, serially); now once. NumPy stacks: the frame
    itself, as before. The values are the same either way."""

    def __init__(self, view, dask):
        self.view, self.dask = view, dask
        self._lo = self._hi = 0
        self._block = None
        if dask:
            self._bounds = np.cumsum((0,) + tuple(view.chunks[0]))
            frame_bytes = int(np.prod(view.shape[1:])) * view.dtype.itemsize
            self._max = max(1, _DASK_BLOCK_BYTES // max(1, frame_bytes))

    def __call__(self, t) -> np.ndarray:
        t = int(t)
        if not self.dask:
            return np.asarray(self.view[t])
        if not self._lo <= t < self._hi:
            i = int(np.searchsorted(self._bounds, t, side="right")) - 1
            lo, hi = int(self._bounds[i]), int(self._bounds[i + 1])
            if hi - lo > self._max:  # a long time chunk: the part of it holding t
                lo += (t - lo) // self._max * self._max
                hi = min(hi, lo + self._max)
            self._block = None  # (the previous block freed before the next is read)
            self._block = np.asarray(self.view[lo:hi].compute())
            self._lo, self._hi = lo, hi
        return self._block[t - self._lo]


def _saturation_level(dtype) -> float:
    """Integer data at its dtype's maximum is saturated (no noise, no bleaching)."""
    return float(np.iinfo(dtype).max) if dtype.kind in "ui" else math.inf


def _row_nanmedian(a: np.ndarray) -> np.ndarray:
    """``np.nanmedian(a, axis=1)`` of a 2-D float array, bit for bit, through one sort along the
    rows (NaN sorts last; the middle one or two of each row's ``k`` numbers, averaged in the
    array's dtype as NumPy does), without its masked-array path for short rows: 7x faster on the
    noise estimate's (65536, 48) arrays. Rows without a number give NaN, without a warning."""
    s = np.sort(a, axis=1)
    k = a.shape[1] - np.count_nonzero(np.isnan(a), axis=1)
    r = np.arange(a.shape[0])
    lo = s[r, np.maximum(k - 1, 0) // 2]
    hi = s[r, np.minimum(k // 2, a.shape[1] - 1)]
    out = (lo + hi) / a.dtype.type(2)
    out[k == 0] = np.nan
    return out


def _bin_medians(k: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``np.median(v[k == j])`` of every non-empty bin ``j`` (ascending), bit for bit (the mean of
    the middle one or two values), through one sort by (bin, value) instead of a mask and a
    median per bin. ``k`` non-negative integers, ``v`` float64 without NaN."""
    o = np.lexsort((v, k))
    s = v[o]
    n = np.bincount(k)
    n = n[n > 0]
    start = np.cumsum(n) - n
    return (s[start + (n - 1) // 2] + s[start + n // 2]) / 2


def _estimate_noise_steps(view, info, offset=None, read_noise=None, n_pairs=48, n_pixels=2**16) -> Iterator:
    """Generator behind :func:`estimate_noise`: yields after every frame read; returns the model."""
    n_t = info["n_frames"]
    sat = _saturation_level(info["dtype"])
    size = int(np.prod(info["frame_shape"]))
    pick = _pixel_sample(size, n_pixels)
    starts = np.unique(np.linspace(0, n_t - 2, min(n_pairs, n_t - 1)).round().astype(np.int64))
    n_p = len(starts)
    n_pix = size if isinstance(pick, slice) else len(pick)
    ms = np.empty((n_pix, n_p), np.float32)
    ds = np.empty((n_pix, n_p), np.float32)
    raw = np.empty((n_pix, n_p), np.float32)  # the first frame of each pair
    rng = np.random.default_rng(1)
    integer = info["dtype"].kind in "ui"
    frame = _Frames(view, info["dask"])
    for i, t in enumerate(starts):
        a = frame(t).reshape(-1)[pick].astype(np.float64)
        yield
        b = frame(t + 1).reshape(-1)[pick].astype(np.float64)
        yield
        bad = ~(np.isfinite(a) & np.isfinite(b) & (a < sat) & (b < sat))
        raw[:, i] = np.where(bad, np.nan, a)
        m = (a + b) / 2
        d = a - b
        if integer:
            # integer differences: their quantiles would move in whole steps; a uniform dither
            # of one step makes them continuous (its variance, 1/12, is taken off below)
            d += rng.uniform(-0.5, 0.5, d.shape)
        # a global change between the two frames (lamp drift, bleaching) is a line in m: off
        # (medians in 8 level bins of at most 4096 pixels)
        ok = np.flatnonzero(~bad)
        ok = ok[:: max(1, len(ok) // 4096)]
        if len(ok) > 100:
            mo, do = m[ok], d[ok]
            e = np.unique(np.quantile(mo, np.linspace(0, 1, 9)))
            if len(e) > 2:
                k = np.clip(np.searchsorted(e, mo, side="right") - 1, 0, len(e) - 2)
                cx, cy = _bin_medians(k, mo), _bin_medians(k, do)
                if len(cx) > 1 and np.ptp(cx) > 0:
                    beta, gamma = np.polyfit(cx, cy, 1)
                    d = d - (beta * m + gamma)
        m[bad] = np.nan
        d[bad] = np.nan
        ms[:, i] = m
        ds[:, i] = np.abs(d)
    dither = 1.0 / 12.0 if integer else 0.0
    # per pixel, the medians over the pairs: a pixel that an object crosses in fewer than half
    # of the pairs keeps its own scene level and noise
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mp = _row_nanmedian(ms)
            dp = _row_nanmedian(ds)
    keep = np.isfinite(mp) & np.isfinite(dp)
    mp, dp = mp[keep].astype(np.float64), dp[keep].astype(np.float64)
    if mp.size < 1000:
        raise InputError(
            "cannot estimate the noise model: fewer than 1000 unsaturated pixels; give it "
            "(noise=NoiseModel(gain, offset, read_noise)) or use noise=None"
        )
    if not np.any(dp > (0.5 if integer else 0.0)) and not np.any(np.ptp(ms[keep], axis=1) > 0):
        raise InputError(
            "cannot estimate the noise model: the frames are identical (no temporal noise at "
            "all). Give the camera's noise (noise=NoiseModel(gain, offset, read_noise)), or use "
            'noise=None (preset "camera video") for noise-free or synthetic data'
        )
    # the median of n |Normal(0, 1)| values, averaged (calibration of the per-pixel medians)
    cal = float(np.mean(np.median(np.abs(np.random.default_rng(2).standard_normal((4000, n_p))), axis=1)))
    # intensity bins of equal pixel counts (the brightest 5 % left out: there moving objects
    # are the majority); in each, the pixels' median noise against their mean level
    n_bins = 32
    edges = np.unique(np.quantile(mp, np.linspace(0, 0.95, n_bins + 1)))
    idx = np.clip(np.searchsorted(edges, mp, side="right") - 1, 0, len(edges) - 2)
    xs, vs = [], []
    for k in range(len(edges) - 1):
        sel = idx == k
        if np.count_nonzero(sel) < 20:
            continue
        xs.append(float(np.mean(mp[sel])))  # the mean: variance is linear in it
        # the median over the bin's pixels (those that objects crossed are a minority)
        sd2 = (float(np.median(dp[sel])) / cal) ** 2
        vs.append((sd2 - dither) / 2.0)
    xs, vs = np.asarray(xs), np.asarray(vs)
    if len(xs) < 3 or np.ptp(xs) <= 0:
        raise InputError(
            "cannot estimate the noise model: the stack spans too few intensities to fit "
            "variance against intensity; give noise=NoiseModel(gain, offset, read_noise)"
        )
    # Theil-Sen line var = slope * I + c (robust to bins spoiled by objects or saturation)
    i, j = np.triu_indices(len(xs), 1)
    dx = xs[j] - xs[i]
    ok = dx > 0
    slope = float(np.median((vs[j] - vs[i])[ok] / dx[ok]))
    c = float(np.median(vs - slope * xs))
    if not slope > 0:
        raise InputError(
            f"no shot noise found: the temporal variance does not grow with the intensity "
            f"(slope {slope:.3g}). That is not photon-counting data (e.g. 8-bit video): use "
            'preset="camera video" or noise=None, or give noise=NoiseModel(gain, offset, '
            "read_noise) from the camera's data sheet"
        )
    # refine: every sample, clipped at 3 sd of the current line (objects' differences are
    # larger), variance corrected for the clipping (a Gaussian within +-3 sd keeps 97.33 %)
    m_all = ms[keep].ravel().astype(np.float64)
    d_all = ds[keep].ravel().astype(np.float64)
    fin = np.isfinite(m_all) & np.isfinite(d_all)
    m_all, d_all = m_all[fin], d_all[fin]
    edges = np.unique(np.quantile(m_all, np.linspace(0, 0.99, n_bins + 1)))
    idx = np.clip(np.searchsorted(edges, m_all, side="right") - 1, 0, len(edges) - 2)
    n_e = len(edges) - 1
    for _ in range(3):
        sd_d = np.sqrt(2.0 * np.maximum(slope * m_all + c, 1e-12) + dither)
        inl = d_all < 3.0 * sd_d
        ws = np.bincount(idx[inl], minlength=n_e).astype(float)
        sx = np.bincount(idx[inl], m_all[inl], minlength=n_e)
        sd2 = np.bincount(idx[inl], d_all[inl] ** 2, minlength=n_e)
        use = ws >= 100
        if np.count_nonzero(use) < 3:
            break
        ws = ws[use]
        xs = sx[use] / ws
        vs = (sd2[use] / ws / 0.9733369246625415 - dither) / 2.0
        new_slope, new_c = np.polyfit(xs, vs, 1, w=np.sqrt(ws))
        if not new_slope > 0:
            break
        slope, c = float(new_slope), float(new_c)
    gain = slope
    if offset is not None:
        offset = float(offset)
        rv = c + gain * offset
        read = math.sqrt(max(rv, 0.0)) if read_noise is None else float(read_noise)
    elif read_noise is not None:
        read = float(read_noise)
        offset = (read * read - c) / gain
    else:
        # the variance line alone does not split its intercept between offset and read noise;
        # a scene that dims (bleaching) does: every pixel moves towards the offset
        off = _offset_from_frames(raw, lambda v: np.maximum(gain * v + c, 0.0))
        if off is not None and off <= float(np.nanmedian(raw)):
            offset, read = off, math.sqrt(max(c + gain * off, 0.0))
        else:
            # put all of the intercept into the offset (the same variance at every level)
            offset, read = -c / gain, 0.0
    return NoiseModel(gain=gain, offset=offset, read_noise=read)


def _clipped_line(x, y):
    """Least-squares line ``y = a x + b`` through the finite ``y``, refitted twice without the
    points beyond 3 robust sd (moving objects). Returns (a, b, mean x, mean y) of the inliers."""
    keep = np.isfinite(y)
    a = b = np.nan
    for _ in range(3):
        if np.count_nonzero(keep) < 50:
            return np.nan, np.nan, np.nan, np.nan
        a, b = np.polyfit(x[keep], y[keep], 1)
        r = y - (a * x + b)
        sd = 1.482602218505602 * float(np.nanmedian(np.abs(r[keep])))
        if not sd > 0:
            break
        keep = np.isfinite(r) & (np.abs(r) < 3.0 * sd)
    return a, b, float(np.mean(x[keep])), float(np.mean(y[keep]))


def _offset_from_frames(raw, variance):
    """The level every pixel scales towards when the scene dims (bleaching): each frame is a
    line ``frame = off + a (ref - off)`` of a reference, so its intercept is ``off (1 - a)``.

    ``raw`` (P, N): N frames of P pixels (NaN unusable); ``variance(level)``: the noise model's
    variance, used to undo the flattening of the slopes by the reference's own noise
    (errors in variables). The reference of a frame is the median of the other half of the
    frames. Returns None without enough dimming (slopes spread by less than 0.1) or contrast."""
    import warnings

    n = raw.shape[1]
    if n < 6:
        return None
    halves = (np.arange(0, n, 2), np.arange(1, n, 2))
    slopes, icpts = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        sub = raw[:: max(1, raw.shape[0] // 8192)]  # 8192 pixels are plenty for lines
        for own, other in (halves, halves[::-1]):
            ref = _row_nanmedian(sub[:, other])
            ok = np.isfinite(ref)
            x = ref[ok]
            # the variance of a median of k noisy values is about pi / 2 / k of theirs
            noise = float(np.mean(np.pi / 2 / len(other) * variance(x)))
            spread = float(np.var(x))
            lam = 1.0 - noise / spread if spread > 0 else 0.0
            if lam < 0.3:
                return None
            for t in own:
                a, b, mx, my = _clipped_line(x, sub[ok, t].astype(np.float64))
                if not np.isfinite(a):
                    continue
                a = a / lam
                slopes.append(a)
                icpts.append(my - a * mx)
    a, b = np.asarray(slopes), np.asarray(icpts)
    if a.size < 3 or np.ptp(a) < 0.1:
        return None
    u = 1.0 - a
    return float(np.sum(b * u) / np.sum(u * u))


def _check_offset(offset, view, info):
    """Refuse an offset above most of the data (a dark level must lie below the background)."""
    f = _Frames(view, info["dask"])(0)
    f = f[np.isfinite(f)] if f.dtype.kind == "f" else f
    med = float(np.median(f)) if f.size else 0.0
    if offset > med:
        raise InputError(
            f"the noise model's offset {offset:g} is above most of the data (median of the "
            f"first frame {med:g}): the offset is the camera's dark level, below the background. "
            "Check it (a dark frame's mean), or leave it out to estimate it"
        )


def estimate_noise(stack, *, time_axis=0, channel_axis=None, offset=None, read_noise=None):
    """Estimate the camera noise model of a stack from its temporal fluctuations.

    Consecutive frames are differenced (which removes the static scene and any slow change such
    as bleaching); in 32 intensity bins of equal counts the variance is the squared MAD of the
    differences over 2 (robust to moving objects), and a Theil-Sen line through
    ``(intensity, variance)`` gives ``var = gain * I + c`` (the Poisson-Gaussian model of Foi et
    al. 2008). Saturated samples (the integer dtype's maximum) are left out. At most 48 frame
    pairs spread over the stack and 65,536 pixels are read.

    Parameters
    ----------
    stack : (T, Y, X) or (T, Y, X, C) array_like, numpy or dask
    time_axis, channel_axis : int
        As :func:`subtract_background`.
    offset : float, optional
        The camera's dark level if known (then ``read_noise`` is estimated).
    read_noise : float, optional
        The read noise (sd, data units) if known (then ``offset`` is estimated).

    Returns
    -------
    NoiseModel
        From a stack alone only the line is identifiable: without ``offset`` or ``read_noise``
        the offset is the line's zero (``-c / gain``) and ``read_noise`` 0, which gives the same
        variance at every intensity. Give either to split the intercept.

    Raises
    ------
    napari_gmm.InputError
        For identical frames, no variance growing with intensity (not photon counts), or too
        few unsaturated samples; the message says what to give instead.
    """
    view, info = _normalise_stack(stack, time_axis, channel_axis)
    if offset is not None:
        _check_offset(float(offset), view, info)
    return _drain(_estimate_noise_steps(view, info, offset, read_noise))


def _drain(gen):
    """Run a step generator to its end; return its value."""
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


def _estimate_bleaching_steps(view, info, offset=None, n_ref=25, n_pixels=2**16) -> Iterator:
    """Generator behind :func:`estimate_bleaching`: yields after every frame read."""
    n_t = info["n_frames"]
    sat = _saturation_level(info["dtype"])
    size = int(np.prod(info["frame_shape"]))
    pick = _pixel_sample(size, n_pixels)
    frame = _Frames(view, info["dask"])

    def sample(t):
        v = frame(t).reshape(-1)[pick].astype(np.float64)
        v[~np.isfinite(v) | (v >= sat)] = np.nan
        return v

    if offset is not None:
        # known offset: the ratio of the frames' median levels above it (moving objects are a
        # minority of the pixels); it needs no spatial contrast in the scene
        import warnings

        levels = np.empty(n_t)
        for t in range(n_t):
            v = sample(t)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                levels[t] = np.nanmedian(v) - offset
            yield
        if not (np.all(np.isfinite(levels)) and np.all(levels > 0)):
            bad = int(np.flatnonzero(~(np.isfinite(levels) & (levels > 0)))[0])
            raise InputError(
                f"cannot estimate bleaching: frame {bad} has no signal above the offset "
                f"({offset:g}) in most pixels; check the offset, drop empty frames or use "
                "bleach_correction=False"
            )
        return levels / levels[0]

    ref_t = np.unique(np.linspace(0, n_t - 1, min(n_ref, n_t)).round().astype(np.int64))
    ref_frames = []
    for t in ref_t:
        ref_frames.append(sample(t))
        yield
    ref_frames = np.stack(ref_frames)
    import warnings

    # two references from disjoint halves of the reference frames: a frame is compared with
    # a reference it is not part of (its own noise would steepen its slope)
    halves = (np.arange(0, len(ref_t), 2), np.arange(1, len(ref_t), 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        refs = [np.nanmedian(ref_frames[h], axis=0) if len(h) else None for h in halves]
    members = [set(ref_t[h].tolist()) for h in halves]
    good = [r is not None and np.count_nonzero(np.isfinite(r)) >= 100 and np.ptp(r[np.isfinite(r)]) > 0 for r in refs]
    if not any(good):
        raise InputError(
            "cannot estimate bleaching: the frames have fewer than 100 unsaturated pixels or a "
            "single level; use bleach_correction=False or give the factors"
        )
    # each frame's factor is its slope against a reference (a clipped least-squares line
    # through the pixels: moving objects are outliers); the offset, which does not bleach,
    # only moves the intercept
    slopes = np.full((2, n_t), np.nan)
    for t in range(n_t):
        f = sample(t)
        for k in (0, 1):
            if good[k] and t not in members[k]:
                ok = np.isfinite(refs[k])
                slopes[k, t] = _clipped_line(refs[k][ok], f[ok])[0]
        yield
    # the two references flatten slopes a little differently (their own noise): put both on
    # one scale through the frames measured against both
    both = np.isfinite(slopes[0]) & np.isfinite(slopes[1])
    ratio = float(np.median(slopes[1, both] / slopes[0, both])) if both.any() else 1.0
    factors = np.where(np.isfinite(slopes[1]), slopes[1], slopes[0] * ratio)
    if not np.isfinite(factors[0]) or factors[0] <= 0:
        raise InputError(
            "cannot estimate bleaching: the first frame does not scale with the others (no "
            "signal, or saturated); drop empty frames or use bleach_correction=False"
        )
    if not (np.all(np.isfinite(factors)) and np.all(factors > 0)):
        bad = int(np.flatnonzero(~(np.isfinite(factors) & (factors > 0)))[0])
        raise InputError(
            f"cannot estimate bleaching: frame {bad} does not scale with the others (no "
            "signal, or saturated); drop empty frames or use bleach_correction=False"
        )
    return factors / factors[0]


def estimate_bleaching(stack, *, time_axis=0, channel_axis=None, offset=None):
    """Per-frame intensity factor of a stack (bleaching, lamp drift), relative to frame 0.

    The reference is the per-pixel median of 25 frames spread over the stack; each frame's
    factor is the slope of the line ``frame = factor * reference + b`` through the medians of
    the frame in 24 bins of reference level (up to 65,536 pixels, saturated ones left out):
    a global gain that moving objects (a minority in every bin) do not bias, and that the
    camera offset (which does not bleach: it only moves ``b``) does not bias either. Fiji's
    "Bleach Correction, simple ratio" is the ratio of frame means instead.

    Parameters
    ----------
    stack : (T, Y, X) or (T, Y, X, C) array_like, numpy or dask
    time_axis, channel_axis : int
        As :func:`subtract_background`.
    offset : float, optional
        The camera's dark level (e.g. ``estimate_noise(stack).offset``). When given, each
        factor is the ratio of the frame's median level above the offset to frame 0's: robust
        to moving objects and good in dim scenes without spatial contrast (what
        :func:`subtract_background` uses with a noise model).

    Returns
    -------
    (T,) ndarray of float64
        ``factors[0] == 1``; a stack bleached by 40 % ends near 0.6.
    """
    view, info = _normalise_stack(stack, time_axis, channel_axis)
    return _drain(_estimate_bleaching_steps(view, info, offset))


def _postfilter_masks(masks, out, median_size, fill_holes, *, serial):
    """The post-filters of (B, Y, X) uint8 ``masks`` into ``out`` (C-contiguous): the majority
    vote of window ``median_size`` (a copy when it is 0 or 1), then the holes of up to
    ``fill_holes`` pixels filled (none when 0), on all of Numba's threads unless ``serial``."""
    if median_size <= 1:
        out[...] = masks
    else:
        _mog.majority_filter_stack(masks, median_size // 2, out)
    if fill_holes > 0:
        if serial:
            _mog.fill_holes_stack_serial(out, fill_holes, 1)
        else:
            _mog.fill_holes_stack(out, fill_holes, get_num_threads())


class BackgroundModel:
    """Stateful per-pixel adaptive Gaussian mixture background model (MOG2).

    Feed frames one at a time with :meth:`apply`, or blocks of frames with :meth:`apply_block`
    (one kernel launch per block); the model learns and classifies each frame.
    The state is O(Y * X * n_mixtures) float32 whatever the number of frames.

    Parameters
    ----------
    frame_shape : tuple of int
        ``(Y, X)`` for grey frames or ``(Y, X, C)`` for RGB / multichannel frames.
    data_range : float, optional
        Intensity span of the data. The variance parameters (``var_init``, ``var_min``,
        ``var_max``) are in 8-bit units and scaled by ``(data_range / 255) ** 2``; equivalently
        the data is multiplied by ``255 / data_range`` inside the model. Default: 255 for uint8
        frames, otherwise ``max - min(0, min)`` of the first frame applied. Give it explicitly
        when streaming data whose first frame is not representative.
    noise : NoiseModel or dict, optional
        Camera noise model: every mode's variance is then the modelled variance at its mean
        (``var_init``, ``var_min``, ``var_max`` unused), and its ``offset`` is the level that
        per-frame bleaching factors do not scale.
    history : int, default 500
        Length of the history: the learning rate is ``1 / min(2 n, history)`` after ``n`` frames
        (Zivkovic's fast start), so it settles at ``1 / history``.
    var_threshold : float, default 16
        Squared Mahalanobis distance under which a pixel matches a background mode (OpenCV Tb).
    n_mixtures : int, default 5
        Maximum number of Gaussian modes per pixel, 1..16.
    background_ratio : float, default 0.9
        The background is the modes, most probable first, whose cumulative weight passes this
        (OpenCV TB = 1 - cf).
    var_threshold_gen : float, default 9
        Squared Mahalanobis distance under which a sample updates a mode; otherwise a new mode
        is created (OpenCV Tg).
    var_init, var_min, var_max : float, default 15, 4, 75
        Initial variance of a new mode and the clamps of every variance, in 8-bit units squared.
    complexity_reduction_threshold : float, default 0.05
        Complexity reduction prior CT (0 gives the classic Stauffer-Grimson model with a fixed
        number of modes); a mode dies when its weight falls under ``learning_rate * CT``.
    detect_shadows : bool or "auto", default "auto"
        Mark pixels that are a darker version of the background (Prati et al.) as shadow (2).
        ``"auto"`` detects shadows in colour / multichannel frames only: in grey frames the
        test cannot check the colour, so every pixel up to ``1 / shadow_threshold`` times
        darker than the background would be a "shadow" (dark objects included).
    shadow_threshold : float, default 0.5
        OpenCV's tau: a shadow is at most ``1 / shadow_threshold`` times darker than background.
    median_size : int, default 3
        Window of the majority (median) post-filter on the foreground mask; 0 or 1 switches it
        off. It only affects the returned masks, never the model.
    fill_holes : int, default 1024
        After the majority filter, holes in the foreground of each frame become foreground: a
        4-connected region of background or shadow pixels that foreground encloses (it does not
        touch the frame's border), of at most this many pixels (1024: a 32 x 32 square, e.g. a
        car's window of road colour); 0 switches it off. It never removes foreground, so objects
        of any size are kept; it only affects the returned masks, never the model. CDnet F
        with 1024, against 0: highway 0.841 / 0.819, traffic 0.604 / 0.600, fall 0.281 / 0.266
        (``benchmarks/bench_postfilter.py``). The fluorescence preset sets 0. With
        ``median_size=0`` and ``fill_holes=0`` the masks are the kernel's, as OpenCV's MOG2.

    Attributes
    ----------
    n_frames : int
        Number of frames learned so far.
    background : (Y, X) or (Y, X, C) ndarray of float32
        Current background: the mean of the most probable mode of every pixel, in data units.

    See Also
    --------
    subtract_background : the whole stack in one call, with an offline burn-in.

    Notes
    -----
    Each pixel keeps up to ``n_mixtures`` isotropic Gaussian modes (one variance shared by the
    channels) sorted by decreasing weight. A sample matches the first mode within
    ``var_threshold_gen`` (squared Mahalanobis distance); the matched mode's weight, mean and
    variance move towards the sample with rate ``alpha / weight``; all weights decay by
    ``1 - alpha`` and lose ``alpha * CT`` (modes falling below zero are dropped); without a match
    a new mode replaces the weakest one. The pixel is background when one of the first modes
    whose cumulative weight is below ``background_ratio`` is within ``var_threshold``.
    This is the algorithm of OpenCV's ``bgfg_gaussmix2.cpp``, including its sort order; it
    differs only in that all pruned modes are dropped in the same frame and that weights are
    renormalised when the weakest mode is replaced, so they always sum to 1.

    References
    ----------
    .. [1] C. Stauffer and W. E. L. Grimson, "Adaptive background mixture models for real-time
           tracking", CVPR 1999.
    .. [2] Z. Zivkovic, "Improved adaptive Gaussian mixture model for background subtraction",
           ICPR 2004.
    .. [3] Z. Zivkovic and F. van der Heijden, "Efficient adaptive density estimation per image
           pixel for the task of background subtraction", Pattern Recognition Letters 27(7),
           2006.
    .. [4] A. Prati, I. Mikic, M. M. Trivedi and R. Cucchiara, "Detecting moving shadows:
           algorithms and evaluation", IEEE TPAMI 25(7), 2003.

    Examples
    --------
    >>> import numpy as np
    >>> from napari_gmm import BackgroundModel
    >>> rng = np.random.default_rng(0)
    >>> model = BackgroundModel((32, 32), median_size=0)
    >>> for _ in range(50):
    ...     mask = model.apply(rng.normal(100, 2, (32, 32)).astype(np.uint8))
    >>> frame = rng.normal(100, 2, (32, 32)).astype(np.uint8)
    >>> frame[10:20, 10:20] = 250
    >>> mask = model.apply(frame)
    >>> int(mask[15, 15]), int(mask[0, 0])
    (1, 0)
    >>> sorted(model.mixture_at(0, 0))
    ['is_background', 'means', 'variances', 'weights']
    """

    def __init__(self, frame_shape, *, data_range=None, noise=None, **params):
        shape = tuple(int(s) for s in np.atleast_1d(frame_shape))
        if len(shape) not in (2, 3):
            raise InputError(f"frame_shape must be (Y, X) or (Y, X, C), got {tuple(frame_shape)!r}")
        if min(shape) < 1:
            raise InputError(f"frame_shape must be positive, got {shape}")
        check_param_names(params, MODEL_DEFAULTS, "background-model parameter")
        self.params = _check_model_params(params)
        if data_range is not None:
            data_range = float(data_range)
            if not (math.isfinite(data_range) and data_range > 0):
                raise InputError(f"data_range must be a positive finite number, got {data_range}")
        self.data_range = data_range
        self.noise = None if noise is None else NoiseModel.coerce(noise)
        self.frame_shape = shape
        self._grey = len(shape) == 2
        self._hw = shape[:2]
        self._c = 1 if self._grey else shape[2]
        k = self.params["n_mixtures"]
        h, w = self._hw
        # kernel layout: (H, K, W), (H, K, C, W), (H, K, W), (H, W); see _kernels/mog.py
        self._weights, self._means, self._variances, self._n_modes = _mog.new_state(h, w, k, self._c)
        self._masks = np.zeros((1, h, w), np.uint8)
        self._dummy_bg = np.zeros((1, 1, 1, self._c), np.float32)
        self._bg_wide = None  # the float32 background buffer of wide integer dtypes (see _step)
        self.n_frames = 0
        #: the factor of the last frame applied (1 without bleaching correction)
        self.last_factor = 1.0
        self._quantised = None  # integer data: +1/12 of a unit of variance (rounding)
        ds = self.params["detect_shadows"]
        self._shadows = (self._c >= 2) if ds == "auto" else ds

    # ------------------------------------------------------------------ helpers
    @property
    def n_mixtures(self) -> int:
        return self.params["n_mixtures"]

    @property
    def scale(self) -> float:
        """Factor from data units to the model's 8-bit units (``255 / data_range``)."""
        return 255.0 / self.data_range if self.data_range else 1.0

    @property
    def offset(self) -> float:
        """Dark level subtracted before a bleaching factor divides the data (the noise
        model's offset; 0 without a noise model)."""
        return self.noise.offset if self.noise is not None else 0.0

    def reset(self):
        """Forget everything learned (keeps parameters, ``data_range`` and ``noise``)."""
        for a in (self._weights, self._means, self._variances, self._n_modes):
            a[...] = 0
        self.n_frames = 0
        self.last_factor = 1.0

    def learning_rates(self, n, *, learning_rate=None, burn_in=False) -> np.ndarray:
        """Learning rates of the next ``n`` frames (the one schedule, without side effects).

        ``1 / min(2 k, history)`` for the ``k``-th frame learned (Zivkovic's fast start), or
        ``1 / min(k, history)`` with ``burn_in`` (every burn-in frame weighs the same: a mode's
        weight is the fraction of the frames it explains); a fixed ``learning_rate`` replaces
        either after the first frame (which always initialises the model).
        """
        k = self.n_frames + 1 + np.arange(int(n))
        auto = 1.0 / np.minimum(k if burn_in else 2 * k, self.params["history"])
        if learning_rate is None:
            return auto
        return np.where(k == 1, auto, float(learning_rate))

    def _check_block(self, block, ts=None, time_axis=None, where=None):
        """Validate a block (B, Y, X[, C]) of frames; return it C-contiguous as (B, Y, X, C).

        ``ts`` are the frames' indices along ``time_axis`` (for the messages)."""
        if _is_dask(block):
            block = block.compute()
        block = np.asarray(block)
        if block.dtype.kind not in "uif":
            raise InputError(
                f"{where or 'the stack'} has dtype {block.dtype}; background modelling needs "
                "integer or float intensities (convert booleans/complex values first)"
            )
        if block.ndim != len(self.frame_shape) + 1 or block.shape[1:] != self.frame_shape:
            raise InputError(
                f"{where or 'the frames'} have shape {block.shape[1:]} but the model was made "
                f"for frames of shape {self.frame_shape}"
            )
        if block.dtype.kind == "f" and not np.isfinite(block).all():
            bad = int(np.flatnonzero(~np.isfinite(block.reshape(len(block), -1)).all(1))[0])
            what = where or (
                f"frame {int(ts[bad])} (along time_axis={time_axis})" if ts is not None else f"frame {bad} of the block"
            )
            raise InputError(
                f"{what} contains NaN or infinite values; replace them (e.g. with np.nan_to_num "
                "or by interpolating from neighbouring frames) or drop the frame"
            )
        if block.dtype == np.float16:
            block = block.astype(np.float32)
        if self._grey:
            block = block[..., None]
        return np.ascontiguousarray(block)

    def _ensure_buffers(self, n):
        if self._masks.shape[0] < n:
            self._masks = np.zeros((n,) + self._hw, np.uint8)

    def _dummy(self, dtype):
        """A (1, 1, 1, C) stand-in output of ``dtype`` (the kernel is called without output)."""
        if self._dummy_bg.dtype != dtype:
            self._dummy_bg = np.zeros((1, 1, 1, self._c), dtype)
        return self._dummy_bg

    def _buffer(self, shape):
        """The float32 background buffer of wide integer dtypes, at least ``shape`` (B, Y, X, C): the
        specialisation of float32 frames the kernel has anyway (a float64 one compiles for about
        half a minute, for no gain: the model state is float32)."""
        n = int(np.prod(shape))
        if self._bg_wide is None or self._bg_wide.size < n:
            self._bg_wide = np.empty(n, np.float32)
        return self._bg_wide[:n].reshape(shape)

    def _noise_coefficients(self, factors, integer):
        """Per-frame (var_a, var_b) of the kernel's modelled variance, in model units."""
        nm = self.noise
        s_b = self.scale / factors
        q = 1.0 / 12.0 if integer else 0.0
        return nm.gain * s_b, s_b * s_b * (nm.read_noise**2 + q)

    def _step(self, data, alphas, masks, bg=None, shadows=True, factors=None):
        """Run the kernel on a checked block; write raw masks (and ``bg`` (B, Y, X, C), float32
        or integer: rounded and clipped); count the frames.

        ``shadows=False`` skips the shadow test (shadow pixels are marked foreground) where
        the masks are not used, as in the burn-in; the model is the same either way.

        The kernels are compiled for three (frames, background) dtype pairs only, uint8/uint8,
        uint16/uint16 and float32/float32 (each compile takes about half a minute of CPU): every
        other frames dtype, and frames whose background is asked for in another dtype (float32:
        the unrounded background of the difference image, or ``apply(background_out=)``), are
        converted to float32 here, which is exactly the kernels' own first operation on a
        sample, and the integer maximum is passed on as the saturation level (bit for bit the
        same result). The background of other integer dtypes goes through a float32 buffer
        (unrounded), rounded and clipped into the integer dtype here (:func:`to_int_dtype`): a
        mode at the dtype's top is written as the top, whose float32 value rounds up past it and
        is clipped back to it."""
        p = self.params
        src = data.dtype
        integer = src.kind in "ui"
        saturation = float(np.iinfo(src).max) if integer else None
        native = src in _KERNEL_DTYPES and (bg is None or bg.dtype == src)
        if not native:
            data = data.astype(np.float32)
        # the dtype the kernel writes the background in (wide integers: float32, rounded and
        # clipped into their dtype here; the kernel writes a mode at the dtype's top as exactly the
        # top, which float32 rounds up past it and to_int_dtype brings back to it exactly)
        kdt = src if native else np.dtype(np.float32)
        write = bg is not None
        out = None
        if not write:
            # a dummy of the dtype the output would have: the kernel's compiled specialisation
            # (frames dtype, output dtype) is the same with and without the output
            bg = self._dummy(kdt)
        elif bg.dtype != kdt:  # another integer dtype: through the float32 buffer
            out, bg = bg, self._buffer(bg.shape)
        bg_range = None
        if bg.dtype.kind in "ui":
            bg_range = float32_int_range(bg.dtype)  # float32 ends inside the dtype: no wrap at the top
        kw = {}
        if self.noise is not None or factors is not None:
            f = np.ones(len(alphas)) if factors is None else np.asarray(factors, np.float64)
            kw = dict(offset=self.offset, factors=f)
            if self.noise is not None:
                kw["var_a"], kw["var_b"] = self._noise_coefficients(f, integer)
            self.last_factor = float(f[-1])
        _mog.mog2_apply(
            data,
            self.scale,
            self._weights,
            self._means,
            self._variances,
            self._n_modes,
            masks,
            bg,
            write,
            alphas,
            p["var_threshold"],
            p["background_ratio"],
            p["var_threshold_gen"],
            p["var_init"],
            p["var_min"],
            p["var_max"],
            p["complexity_reduction_threshold"],
            p["shadow_threshold"],
            self._shadows and shadows,
            bg_range=bg_range,
            saturation=saturation,
            **kw,
        )
        if out is not None:
            out[...] = to_int_dtype(bg, out.dtype) if out.dtype.kind in "ui" else bg
        self.n_frames += len(alphas)

    def _postfilter(self, masks, out):
        """Post-filters of (B, Y, X) ``masks`` into ``out``: majority vote (or a plain copy),
        then the holes filled."""
        _postfilter_masks(masks, out, self.params["median_size"], self.params["fill_holes"], serial=False)

    # ------------------------------------------------------------------ public
    def apply_block(
        self,
        frames,
        *,
        learning_rate=None,
        burn_in=False,
        frame_factors=None,
        out=None,
        background_out=None,
        _frame_ids=None,
    ):
        """Learn (and classify) a block of consecutive frames in one kernel launch.

        The result is identical to :meth:`apply` frame by frame with the same rates; this is
        what :func:`subtract_background`, :func:`pixel_history` and the napari widget use.

        Parameters
        ----------
        frames : (B, Y, X) or (B, Y, X, C) array_like
            The next frames (any integer or float dtype; NaN is refused).
        learning_rate : float, optional
            Fixed rate in [0, 1) after the model's first frame; default the schedule of
            :meth:`learning_rates`.
        burn_in : bool, default False
            Learn only, with the burn-in schedule (every frame the same weight); no masks are
            computed for use (returns None).
        frame_factors : (B,) array_like of float, optional
            Bleaching / drift factor of each frame: the model sees ``(frame - offset) / factor``
            (``offset`` from the noise model, else 0).
        out : (B, Y, X) ndarray of uint8, optional
            Receives the post-filtered masks.
        background_out : (B, Y, X[, C]) ndarray, optional
            Receives the background after each frame, in data units: float32, or an integer
            dtype (rounded half to even and clipped), C-contiguous.

        Returns
        -------
        masks : (B, Y, X) ndarray of uint8 or None
            0 background, 1 foreground, 2 shadow (``out`` when given); None with ``burn_in``.
        """
        if learning_rate is not None:
            lr = float(learning_rate)
            if not (0.0 <= lr < 1.0):
                raise InputError(f"learning_rate must be within [0, 1) or None, got {learning_rate}")
        if _frame_ids is None:  # (indices along time_axis, time_axis) for the messages
            data = self._check_block(frames, where="the frames")
        else:
            data = self._check_block(frames, ts=_frame_ids[0], time_axis=_frame_ids[1])
        nb = data.shape[0]
        if nb == 0:
            return None if burn_in else np.zeros((0,) + self._hw, np.uint8)
        if frame_factors is not None:
            frame_factors = np.asarray(frame_factors, np.float64).reshape(-1)
            if frame_factors.shape != (nb,) or not (np.all(np.isfinite(frame_factors)) and np.all(frame_factors > 0)):
                raise InputError(
                    f"frame_factors must be {nb} positive finite numbers (one per frame), got {frame_factors!r}"
                )
        if self.data_range is None:
            self.data_range = (
                255.0 if data.dtype == np.uint8 else default_data_range(data[..., 0] if self._grey else data)
            )
        bg = None
        if background_out is not None and not burn_in:
            want = (nb,) + self.frame_shape
            if (
                background_out.shape != want
                or not background_out.flags.c_contiguous
                or not (background_out.dtype == np.float32 or background_out.dtype.kind in "ui")
            ):
                raise InputError(f"background_out must be a C-contiguous float32 or integer array of shape {want}")
            bg = background_out.reshape((nb,) + self._hw + (self._c,))
        self._ensure_buffers(nb)
        rates = self.learning_rates(nb, learning_rate=learning_rate, burn_in=burn_in)
        self._step(data, rates, self._masks[:nb], bg, shadows=not burn_in, factors=frame_factors)
        if burn_in:
            return None
        if out is None:
            out = np.empty((nb,) + self._hw, np.uint8)
        self._postfilter(self._masks[:nb], out)
        return out

    def apply(self, frame, learning_rate=None, *, background_out=None, frame_factor=None):
        """Classify ``frame`` and update the model.

        Parameters
        ----------
        frame : (Y, X) or (Y, X, C) array_like
            The next frame (any integer or float dtype; NaN is refused).
        learning_rate : float, optional
            Rate of this update in [0, 1]; 0 classifies without learning, 1 restarts the model
            from this frame (as OpenCV). Default (None) is ``1 / min(2 n, history)``. The first
            frame always initialises the model.
        background_out : (Y, X) or (Y, X, C) ndarray of float32, optional
            When given, receives the background after this update (saves a second pass).
        frame_factor : float, optional
            This frame's bleaching / drift factor (see :meth:`apply_block`).

        Returns
        -------
        mask : (Y, X) ndarray of uint8
            0 background, 1 foreground, 2 shadow (a new array).
        """
        frame = native_array(frame)
        if learning_rate is not None:
            lr = float(learning_rate)
            if not (0.0 <= lr <= 1.0):
                raise InputError(f"learning_rate must be within [0, 1] or None, got {learning_rate}")
            if lr >= 1.0:
                self.reset()
                learning_rate = None
        frame = frame if _is_dask(frame) else np.asarray(frame)
        bg = None
        if background_out is not None:
            if (
                background_out.dtype != np.float32
                or background_out.shape != self.frame_shape
                or not background_out.flags.c_contiguous
            ):
                raise InputError(f"background_out must be a C-contiguous float32 array of shape {self.frame_shape}")
            bg = background_out[None]
        if frame.shape != self.frame_shape:
            raise InputError(
                f"the frame has shape {frame.shape} but the model was made for frames of shape {self.frame_shape}"
            )
        return self.apply_block(
            frame[None],
            learning_rate=learning_rate,
            background_out=bg,
            frame_factors=None if frame_factor is None else [frame_factor],
        )[0]

    @property
    def background(self) -> np.ndarray:
        """Current background (mean of the most probable mode), float32 in data units (of the
        last frame, its bleaching factor applied)."""
        out = np.empty(self._hw + (self._c,), np.float32)
        _mog.mog2_background(self._means, self._n_modes, self.scale, out)
        if self.noise is not None or self.last_factor != 1.0:
            has = (self._n_modes > 0)[..., None]
            out = np.where(has, self.offset + self.last_factor * out, 0).astype(np.float32)
        return out[..., 0] if self._grey else out

    @property
    def n_modes(self) -> np.ndarray:
        """Number of modes in use per pixel, (Y, X) uint8 (a copy)."""
        return self._n_modes.copy()

    def mixture_at(self, y, x) -> dict:
        """The mixture of pixel ``(y, x)``, modes sorted by decreasing weight.

        Returns
        -------
        dict
            ``weights`` (n,), ``means`` (n,) for grey or (n, C), ``variances`` (n,) (data units
            squared, shared by the channels; with a noise model, the modelled variance at each
            mean), ``is_background`` (n,) bool: the modes that make the background (cumulative
            weight rule). ``n`` is the number of modes in use. Data units are those of the last
            frame (its bleaching factor applied).
        """
        h, w = self._hw
        y, x = int(y), int(x)
        if not (-h <= y < h and -w <= x < w):
            raise IndexError(f"pixel ({y}, {x}) is outside the frame of shape {self._hw}")
        n = int(self._n_modes[y, x])
        s = self.scale
        f = self.last_factor
        weights = self._weights[y, :n, x].astype(np.float64)
        means = self._means[y, :n, :, x].astype(np.float64) / s
        variances = self._variances[y, :n, x].astype(np.float64) / (s * s)
        if self.noise is not None or f != 1.0:
            means = self.offset + f * means
            variances = variances * f * f
        if self.noise is not None:
            variances = self.noise.variance(means.mean(axis=1))
        cum = np.concatenate([[0.0], np.cumsum(weights)[:-1]])
        return dict(
            weights=weights,
            means=means[:, 0] if self._grey else means,
            variances=variances,
            is_background=cum < self.params["background_ratio"],
        )

    def __repr__(self):
        noise = f", noise={self.noise}" if self.noise is not None else ""
        return (
            f"BackgroundModel(frame_shape={self.frame_shape}, n_frames={self.n_frames}, "
            f"data_range={self.data_range}, n_mixtures={self.n_mixtures}{noise})"
        )


@dataclass
class BackgroundResult:
    """Output of :func:`subtract_background` (axes are time-first, channels last).

    Attributes
    ----------
    foreground : (T, Y, X) ndarray of uint8
        0 background, 1 foreground, 2 shadow.
    background : ndarray or None
        (T, Y, X[, C]) background of every frame (``background="all"``), (Y, X[, C]) final
        background (``"last"``) or None; dtype of the input for integer data (rounded and
        clipped), float32 otherwise. In the frames' own units (bleaching included).
    foreground_image : (T, Y, X[, C]) ndarray or None
        ``"difference"``: input minus background (float32); ``"masked"``: input where
        ``foreground == 1``, 0 elsewhere (input dtype).
    model : BackgroundModel
        The model after the last frame (``model.mixture_at(y, x)`` for a pixel plot).
    params : dict
        Every parameter used (JSON-able), including ``preset``, ``data_range``, ``burn_in``,
        ``noise`` (the noise model as a dict, or None) and ``frame_factors`` (list or None).
    frame_factors : (T,) ndarray of float64 or None
        The bleaching / drift factor of every frame (1 at frame 0), when corrected.
    noise : NoiseModel or None
        The noise model used (estimated or given).
    """

    foreground: np.ndarray
    background: np.ndarray | None
    foreground_image: np.ndarray | None
    model: BackgroundModel = field(repr=False)
    params: dict
    frame_factors: np.ndarray | None = None
    noise: NoiseModel | None = None


def _describe_axes(shape):
    return ", ".join(f"axis {i}: {n}" for i, n in enumerate(shape))


def _normalise_stack(stack, time_axis, channel_axis):
    """Check the stack and return (view with time first and channels last, info dict)."""
    dask = _is_dask(stack)
    if not dask:
        if not hasattr(stack, "shape") or not hasattr(stack, "dtype"):
            stack = np.asarray(stack)
    dtype = np.dtype(stack.dtype)
    shape = tuple(int(s) for s in stack.shape)
    ndim = len(shape)
    if dtype.kind not in "uif":
        raise InputError(
            f"the stack has dtype {dtype}; background modelling needs integer or float "
            "intensities (convert booleans, complex or object data first)"
        )
    if ndim < 3:
        raise InputError(
            f"background modelling needs a stack of frames (T, Y, X) or (T, Y, X, C) with "
            f"T >= 2 frames along the time axis (time_axis={time_axis}); got a {ndim}D array "
            f"of shape {shape}. A single image has no background to learn."
        )
    if ndim > 4:
        raise InputError(
            f"the stack has {ndim} dimensions ({_describe_axes(shape)}); expected (T, Y, X) or "
            "(T, Y, X, C). Process each z-plane or position separately."
        )
    if isinstance(time_axis, bool) or not isinstance(time_axis, numbers.Integral):
        raise TypeError(f"time_axis must be an integer axis index, got {time_axis!r}")
    if not -ndim <= time_axis < ndim:
        raise InputError(
            f"time_axis={time_axis} is out of range for a stack of shape {shape}; use an axis in [{-ndim}, {ndim - 1}]"
        )
    t_ax = int(time_axis) % ndim
    c_ax = None
    if channel_axis is not None:
        if isinstance(channel_axis, bool) or not isinstance(channel_axis, numbers.Integral):
            raise TypeError(f"channel_axis must be an integer axis index or None, got {channel_axis!r}")
        if not -ndim <= channel_axis < ndim:
            raise InputError(f"channel_axis={channel_axis} is out of range for a stack of shape {shape}")
        c_ax = int(channel_axis) % ndim
        if c_ax == t_ax:
            raise InputError(
                f"time_axis and channel_axis are the same axis ({t_ax}) of the stack of shape "
                f"{shape}; time and channels must be different axes"
            )
        if ndim == 3:
            raise InputError(
                f"channel_axis={channel_axis} leaves only one spatial axis in the stack of "
                f"shape {shape}; a channel stack needs 4 dimensions (T, Y, X, C)"
            )
    elif ndim == 4:
        # infer the channel axis: RGB(A) on the last axis, as napari's rgb layers
        if shape[-1] in (3, 4) and t_ax != ndim - 1:
            c_ax = ndim - 1
        else:
            small = [i for i, n in enumerate(shape) if n <= 4 and i != t_ax]
            hint = (
                f" Axis {small[0]} has length {shape[small[0]]}: pass channel_axis={small[0]} if it holds the channels."
                if small
                else ""
            )
            if t_ax == ndim - 1 and shape[-1] in (3, 4):
                hint = (
                    f" time_axis={time_axis} has length {shape[-1]}, which looks like "
                    "the colour axis of an RGB stack; time is usually axis 0."
                )
            raise InputError(
                f"cannot tell which axis holds the channels in the 4D stack of shape {shape} "
                f"({_describe_axes(shape)}) with time_axis={time_axis}. RGB stacks have 3 or 4 "
                f"channels on the last axis; otherwise pass channel_axis.{hint}"
            )
    n_t = shape[t_ax]
    if n_t < 2:
        raise InputError(
            f"background modelling needs T >= 2 frames along the time axis (time_axis="
            f"{time_axis}), but the stack of shape {shape} has {n_t} there. If time is another "
            "axis, pass its index as time_axis."
        )
    # move axes: time first, channels last (a stack already so is kept as it is: a dask
    # transpose, even the identity, stops dask from passing a read of a few frames of a chunk on to
    # the reader, which then decodes the whole chunk: the burn-in's reads of zarr stacks)
    if dask:
        import dask.array as da

        move = da.moveaxis
    else:
        move = np.moveaxis
    if t_ax == 0 and c_ax in (None, stack.ndim - 1):
        view = stack
    elif c_ax is None:
        view = move(stack, t_ax, 0)
    else:
        view = move(stack, [t_ax, c_ax], [0, -1])
    frame_shape = tuple(int(s) for s in view.shape[1:])
    if min(frame_shape[:2]) < 4:
        raise InputError(
            f"frames would be {frame_shape[:2]} pixels (stack shape {shape}, time_axis="
            f"{time_axis}, channel_axis={channel_axis}); frames smaller than 4 pixels along a "
            "side mean the time or channel axis is probably wrong: time_axis is the axis "
            "along which frames follow each other"
        )
    info = dict(
        dask=dask, dtype=dtype, shape=shape, time_axis=t_ax, channel_axis=c_ax, n_frames=n_t, frame_shape=frame_shape
    )
    return view, info


def _iter_blocks(view, dask, block, indices=None):
    """Yield (frame indices, block ndarray (B, ...)) from a time-first stack.

    All frames in order when ``indices`` is None, else the frames at ``indices`` (sorted).
    Dask stacks are computed one time-chunk at a time (or ``block`` frames at a time for
    chunks over 256 MiB), so memory stays bounded whatever the chunking.
    """
    n = view.shape[0]
    if indices is not None:
        for i in range(0, len(indices), block):
            idx = np.asarray(indices[i : i + block])
            sub = view[idx]
            yield idx, np.asarray(sub.compute() if dask else sub)
        return
    if not dask:
        for t0 in range(0, n, block):
            t1 = min(n, t0 + block)
            yield np.arange(t0, t1), view[t0:t1]
        return
    bounds = np.cumsum((0,) + tuple(view.chunks[0]))
    frame_bytes = int(np.prod(view.shape[1:])) * view.dtype.itemsize
    for i in range(len(bounds) - 1):
        lo, hi = int(bounds[i]), int(bounds[i + 1])
        if lo >= hi:
            continue
        if (hi - lo) * frame_bytes <= _DASK_BLOCK_BYTES:
            chunk = np.asarray(view[lo:hi].compute())
            for t0 in range(lo, hi, block):
                t1 = min(hi, t0 + block)
                yield np.arange(t0, t1), chunk[t0 - lo : t1 - lo]
        else:
            for t0 in range(lo, hi, block):
                t1 = min(hi, t0 + block)
                yield np.arange(t0, t1), np.asarray(view[t0:t1].compute())


def _to_dtype(a, dtype):
    """Round and clip float32 ``a`` into integer ``dtype``; float dtypes give float32."""
    if dtype.kind in "ui":
        return to_int_dtype(a, dtype)
    return a.astype(np.float32, copy=False)


def _check_run_args(n_t, res, background, foreground_image, learning_rate):
    """Checks of :func:`subtract_background`'s own arguments that need no data."""
    if background not in ("all", "last", None):
        raise InputError(f'background must be "all", "last" or None, got {background!r}')
    if foreground_image not in (None, "difference", "masked"):
        raise InputError(f'foreground_image must be None, "difference" or "masked", got {foreground_image!r}')
    if learning_rate is not None:
        lr = float(learning_rate)
        if not 0.0 <= lr < 1.0:
            raise InputError(f"learning_rate must be within [0, 1) or None, got {learning_rate}")
    burn_in_indices(n_t, res["burn_in"])
    noise = res["noise"]
    if noise is not None and not (isinstance(noise, str) and noise == "auto"):
        NoiseModel.coerce(noise)
    bc = res["bleach_correction"]
    if not isinstance(bc, (bool, np.bool_)):
        f = np.asarray(bc, dtype=np.float64) if not isinstance(bc, str) else None
        if f is None or f.shape != (n_t,) or not (np.all(np.isfinite(f)) and np.all(f > 0)):
            raise InputError(
                f"bleach_correction must be True, False or {n_t} positive per-frame factors "
                f"(one per frame), got {bc!r:.80}"
            )


def check_background_args(
    stack,
    *,
    preset=DEFAULT_PRESET,
    time_axis=0,
    channel_axis=None,
    burn_in=FROM_PRESET,
    background="all",
    foreground_image=None,
    learning_rate=None,
    noise=FROM_PRESET,
    bleach_correction=FROM_PRESET,
    **params,
) -> dict:
    """Every check of :func:`subtract_background` that reads no pixel (for a GUI, before it
    starts a thread): raises as it would; returns the resolved parameters (preset applied)."""
    preset = _check_preset(preset)
    res = _resolve(preset, burn_in, noise, bleach_correction, params)
    view, info = _normalise_stack(stack, time_axis, channel_axis)
    _check_run_args(info["n_frames"], res, background, foreground_image, learning_rate)
    return res


def _prepare_run(
    stack,
    preset,
    time_axis,
    channel_axis,
    burn_in,
    background,
    foreground_image,
    learning_rate,
    noise,
    bleach_correction,
    params,
):
    """The checks and set-up every run shares (streamed or tiled): (preset, model parameters,
    time-first view, info, burn_in, noise, bleach_correction) with the preset's values filled in."""
    preset = _check_preset(preset)
    res = _resolve(preset, burn_in, noise, bleach_correction, params)
    view, info = _normalise_stack(stack, time_axis, channel_axis)
    _check_run_args(info["n_frames"], res, background, foreground_image, learning_rate)
    burn_in, noise, bc = res.pop("burn_in"), res.pop("noise"), res.pop("bleach_correction")
    return preset, res, view, info, burn_in, noise, bc


def _stack_estimates_steps(view, info, noise, bc) -> Iterator:
    """The stack-wide estimates a run needs before the per-pixel model: the noise model ("auto":
    estimated, else given or None) and the bleaching factors (True: estimated with the noise
    model's offset, an array: given). Yields after every frame read; returns (noise, factors)."""
    n_t = info["n_frames"]
    model_noise = None
    if isinstance(noise, str):
        model_noise = yield from _estimate_noise_steps(view, info, n_pairs=min(48, n_t - 1))
    elif noise is not None:
        model_noise = NoiseModel.coerce(noise)
        _check_offset(model_noise.offset, view, info)
    factors = None
    if isinstance(bc, (bool, np.bool_)):
        if bc:
            offset = model_noise.offset if model_noise is not None else None
            factors = yield from _estimate_bleaching_steps(view, info, offset)
    else:
        factors = np.asarray(bc, np.float64).copy()
    return model_noise, factors


def _used_params(
    p, preset, info, burn_in, data_range, background, foreground_image, learning_rate, noise, factors
) -> dict:
    """Every parameter of a run, JSON-able (``BackgroundResult.params``)."""
    return dict(
        p,
        preset=preset,
        time_axis=info["time_axis"],
        channel_axis=info["channel_axis"],
        burn_in=burn_in,
        data_range=float(data_range),
        background=background,
        foreground_image=foreground_image,
        learning_rate=learning_rate,
        noise=None if noise is None else noise.as_dict(),
        bleach_correction=factors is not None,
        frame_factors=None if factors is None else [float(v) for v in factors],
    )


def _classify_block(model, frames, ts, fg, bg_all, diff, bg, learning_rate, factors, time_axis, out_dtype):
    """Classify one block of frames ``ts`` into ``fg``, as every run of subtract_background does:
    the kernel writes the background into ``bg`` (the block of ``bg_all``, or a float32 buffer when
    the difference image ``diff`` needs the unrounded values, then converted into ``bg_all``)."""
    model.apply_block(
        frames,
        learning_rate=learning_rate,
        out=fg,
        background_out=bg,
        frame_factors=None if factors is None else factors[ts],
        _frame_ids=(ts, time_axis),
    )
    if diff is not None:
        if bg_all is not None:
            bg_all[...] = _to_dtype(bg, out_dtype)
        diff[...] = np.asarray(frames, np.float32) - bg


def _subtract_background_steps(
    stack,
    *,
    preset=DEFAULT_PRESET,
    time_axis=0,
    channel_axis=None,
    burn_in=FROM_PRESET,
    background="all",
    foreground_image=None,
    data_range=None,
    learning_rate=None,
    noise=FROM_PRESET,
    bleach_correction=FROM_PRESET,
    **params,
) -> Iterator:
    """Generator behind :func:`subtract_background`: yields (done, total) after each frame of
    every phase and returns the :class:`BackgroundResult` (``StopIteration.value``)."""
    preset, p, view, info, burn_in, noise, bc = _prepare_run(
        stack,
        preset,
        time_axis,
        channel_axis,
        burn_in,
        background,
        foreground_image,
        learning_rate,
        noise,
        bleach_correction,
        params,
    )
    n_t = info["n_frames"]
    burn_idx = burn_in_indices(n_t, burn_in)
    frame_shape = info["frame_shape"]
    dtype = info["dtype"]

    # work units for progress: frames read by each phase
    auto_noise = isinstance(noise, str)
    n_pairs = min(48, n_t - 1)
    auto_bleach = isinstance(bc, (bool, np.bool_)) and bool(bc)
    n_bleach = n_t + (0 if noise is not None else min(25, n_t))  # (offset known: no reference)
    total = (2 * n_pairs if auto_noise else 0) + (n_bleach if auto_bleach else 0) + len(burn_idx) + n_t
    done = 0

    gen = _stack_estimates_steps(view, info, noise, bc)
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            model_noise, factors = stop.value
            break
        done += 1
        yield done, total

    if data_range is None:
        data_range = default_data_range(view)
    model = BackgroundModel(frame_shape, data_range=data_range, noise=model_noise, **p)
    grey = len(frame_shape) == 2
    out_dtype = dtype if dtype.kind in "ui" else np.dtype(np.float32)

    fg = _new_output((n_t,) + frame_shape[:2], np.uint8)
    bg_all = _new_output((n_t,) + frame_shape, out_dtype) if background == "all" else None
    fg_img = None
    if foreground_image == "difference":
        fg_img = _new_output((n_t,) + frame_shape, np.float32)
    elif foreground_image == "masked":
        fg_img = _new_output((n_t,) + frame_shape, out_dtype)
    # the kernel writes the background straight into the output (rounded and clipped into
    # integer dtypes); a float32 buffer only for the difference image
    need_buf = foreground_image == "difference"

    # frames per kernel launch: 16 (fewer launches; a row's state stays in cache through the
    # block), and at most 32 MiB for the float32 background buffer when there is one
    frame_f32 = int(np.prod(frame_shape)) * 4
    block = 16
    if need_buf:
        block = int(max(1, min(16, (32 * 2**20) // max(frame_f32, 1))))
    bg_buf = np.empty((block,) + frame_shape, np.float32) if need_buf else None

    if len(burn_idx):
        every = len(burn_idx) == n_t
        for ts, frames in _iter_blocks(view, info["dask"], block, None if every else burn_idx):
            model.apply_block(
                frames,
                learning_rate=learning_rate,
                burn_in=True,
                frame_factors=None if factors is None else factors[ts],
                _frame_ids=(ts, time_axis),
            )
            done += len(ts)
            yield done, total
    ahead = _PopulateAhead((fg, bg_all, fg_img), n_t, block)
    for ts, frames in _iter_blocks(view, info["dask"], block):
        nb = len(ts)
        t0, t1 = int(ts[0]), int(ts[-1]) + 1
        if need_buf:
            bg = bg_buf[:nb]
        elif bg_all is not None:
            bg = bg_all[t0:t1]
        else:
            bg = None
        ahead.ready(t0, t1)
        _classify_block(
            model,
            frames,
            ts,
            fg[t0:t1],
            None if bg_all is None else bg_all[t0:t1],
            fg_img[t0:t1] if need_buf else None,
            bg,
            learning_rate,
            factors,
            time_axis,
            out_dtype,
        )
        if foreground_image == "masked":
            m = fg[t0:t1] == FOREGROUND
            fg_img[t0:t1] = np.where(m if grey else m[..., None], frames, 0).astype(out_dtype)
        done += nb
        yield done, total

    bg_out = bg_all
    if background == "last":
        bg_out = _to_dtype(model.background, out_dtype)
    used = _used_params(
        p, preset, info, burn_in, data_range, background, foreground_image, learning_rate, model_noise, factors
    )
    return BackgroundResult(
        foreground=fg,
        background=bg_out,
        foreground_image=fg_img,
        model=model,
        params=used,
        frame_factors=factors,
        noise=model_noise,
    )


def subtract_background(
    stack,
    *,
    preset=DEFAULT_PRESET,
    time_axis=0,
    channel_axis=None,
    burn_in=FROM_PRESET,
    background="all",
    foreground_image=None,
    data_range=None,
    learning_rate=None,
    noise=FROM_PRESET,
    bleach_correction=FROM_PRESET,
    progress: Callable | None = None,
    should_stop: Callable | None = None,
    tiles: bool = True,
    **params,
) -> BackgroundResult:
    """Separate moving foreground from background in a stack of frames (MOG2).

    Parameters
    ----------
    stack : (T, Y, X) or (T, Y, X, C) array_like, numpy or dask
        Frames of any integer or float dtype. Streamed frame by frame (dask: one time-chunk at
        a time), so memory is the model plus the outputs. Never modified.
    preset : {"camera video", "fluorescence time-lapse"}, default "camera video"
        The defaults of ``burn_in``, ``noise``, ``bleach_correction`` and the model
        parameters (see :data:`PRESETS`); any of them given explicitly wins.
        ``"camera video"``: OpenCV's MOG2 (learned variances, 8-bit units) with a burn-in of
        100 spread frames; for video cameras, scenes with shadows, waving trees.
        ``"fluorescence time-lapse"``: photon-counting microscopy stacks (uint16 cameras):
        ``noise="auto"``, ``bleach_correction=True``, ``burn_in="all"``,
        ``background_ratio=0.5`` (the background is the pixel's dominant mode over the whole
        stack: an object may sit on a pixel for up to half of the frames and stays foreground),
        ``var_threshold=6.25`` (2.5 sd of the modelled noise, then the 3 x 3 majority
        filter), no shadows.
    time_axis : int, default 0
        Axis along which frames follow each other (it needs T >= 2).
    channel_axis : int, optional
        Axis holding channels. Default: the last axis of a 4D stack when it has 3 or 4 entries
        (RGB(A), as napari's rgb layers), no channels for a 3D stack.
    burn_in : int, "all" or None, default: the preset's (100; "all" for fluorescence)
        Offline burn-in: the model first learns from ``burn_in`` frames spread evenly over the
        stack (``"all"``, or ``burn_in >= T``: every frame, one full extra pass), giving each
        of them the same weight (learning rate ``1 / n``); then it classifies every frame from
        the start, still learning at ``1 / min(2 n, history)``. ``None`` or 0 gives the online
        (OpenCV) behaviour, where the first frames are foreground until the model has learned
        the scene.
    background : {"all", "last", None}, default "all"
        Return the background of every frame, only the final one, or none (saves memory).
    foreground_image : {None, "difference", "masked"}
        Also return the input minus the background (float32) or the input masked by the
        foreground (input dtype).
    data_range : float, optional
        Intensity span used to scale the variance parameters (see :class:`BackgroundModel`).
        Default: :func:`default_data_range` (255 for uint8, otherwise ``max - min(0, min)``
        over the first, middle and last frames).
    learning_rate : float, optional
        Fixed learning rate in [0, 1); default ``1 / min(2 n, history)``.
    noise : "auto", NoiseModel, dict or None, default: the preset's (None; "auto" for fluorescence)
        Camera noise model ``var = gain * (I - offset) + read_noise**2``: ``"auto"`` estimates
        it from the stack (:func:`estimate_noise`); a :class:`NoiseModel` or a dict with
        ``gain``, ``offset``, ``read_noise`` gives it. With a noise model every mode's variance
        is the modelled one at its mean (``var_init``, ``var_min``, ``var_max`` are unused), so
        the tests ``dist2 < var_threshold * var`` are k-sigma tests of the real noise in dim
        and bright regions alike. None: OpenCV's learned variances.
    bleach_correction : bool or (T,) array_like, default: the preset's (False; True for fluorescence)
        Divide a per-frame factor out of ``frame - offset`` before the per-pixel model: True
        estimates it (:func:`estimate_bleaching`), an array gives it. The factors are returned
        in :attr:`BackgroundResult.frame_factors`; the background output includes them.
    progress : callable, optional
        Called as ``progress(done, total)`` from the computing thread after every frame of
        every phase (noise estimation, bleaching estimation, burn-in, classification; ``total``
        counts them all, the last ``T`` units are the classified frames). Raising
        :class:`napari_gmm.Cancelled` in it stops the job (any exception does, and propagates).
    tiles : bool, default True
        Dask stacks only: return lazy outputs computed per spatial tile. A tile is a whole number
        of the input's chunks along Y and X, and a chain of tasks per tile learns the burn-in
        frames, then classifies the input's time chunks in order, carrying the tile's model from
        task to task (the per-pixel models are independent; the post-filter runs on the assembled
        masks, with overlap). Every input chunk is read once, and the chunks holding burn-in frames
        once more; the tiles run in parallel on threads or on a ``distributed`` cluster; memory is
        the tiles' models (about 60 bytes per pixel of a frame with 5 grey modes) and a few
        chunks per thread, not the stack. The stack-wide estimates (data range, noise model,
        bleaching factors) are computed first, from a sample of frames, and shared by every tile,
        so the result equals the NumPy path's exactly. ``model`` is then None (one per tile, not
        kept). False streams the dask stack frame by frame into in-memory outputs, as for NumPy
        input.
    should_stop : callable, optional
        Called before every frame; when it returns True the run stops with
        :class:`napari_gmm.Cancelled` (an ``InterruptedError``) and nothing is returned.
        Kept for compatibility: raising ``Cancelled`` from ``progress`` is the documented way.
    **params
        Model parameters of :class:`BackgroundModel` (``history``, ``var_threshold``,
        ``n_mixtures``, ``background_ratio``, ``var_threshold_gen``, ``var_init``,
        ``var_min``, ``var_max``, ``complexity_reduction_threshold``, ``detect_shadows``,
        ``shadow_threshold``, ``median_size``, ``fill_holes``); defaults from the preset.

    Returns
    -------
    BackgroundResult
        ``foreground`` (T, Y, X) uint8 (0 background, 1 foreground, 2 shadow),
        ``background``, ``foreground_image``, the final ``model``, the ``params`` used, the
        ``frame_factors`` and the ``noise`` model. Axes are time first and channels last,
        whatever the input layout.

    Raises
    ------
    napari_gmm.InputError
        (a ``ValueError``) for a 2D image or a 1-frame stack, an ambiguous or misplaced
        channel axis, frames thinner than 4 pixels (wrong time axis), NaN/inf in a frame,
        parameters out of range (e.g. ``n_mixtures`` outside 1..16), an unknown preset, a
        noise model with gain <= 0 or an offset above the data, or ``noise="auto"`` on a stack
        without shot noise (e.g. identical frames). Nothing is returned and the input is not
        modified.
    TypeError
        For an unknown parameter name (e.g. OpenCV's camelCase ``varThreshold``).
    napari_gmm.Cancelled
        When ``should_stop()`` returned True.

    Notes
    -----
    The variance parameters are in 8-bit units: data of another range (uint16, float) is
    scaled by ``255 / data_range`` inside the model, so the defaults work on 0..1 floats and on
    12- or 16-bit microscopy alike. The Mahalanobis thresholds are unit-free.

    With the offline burn-in every frame is classified by a model that has already seen the
    whole time span: objects that only pass by never gather enough weight to become
    background, while the static scene is known from the first frame on. The default 100 spread
    frames cost little (6 % more work on a 1700-frame video); ``burn_in="all"`` costs a full
    extra pass and helps most with dynamic backgrounds (waving trees, water).

    Objects that pause: after a burn-in over every frame, a mode's weight is the fraction of
    the frames it explains, and the background is the modes whose cumulative weight (strongest
    first) stays under ``background_ratio``. An object sitting on a pixel for a fraction ``d``
    of the frames becomes background only when the true background's weight ``1 - d`` falls
    under ``background_ratio``: the fluorescence preset (0.5) tolerates pauses of up to half
    of the stack at a pixel (as a temporal median does), the video preset (0.9) only 10 %.
    The classification pass keeps learning at ``1 / history`` at most, which moves a weight by
    about 0.1 over a 50-frame pause.

    Examples
    --------
    >>> import numpy as np
    >>> from napari_gmm import subtract_background
    >>> rng = np.random.default_rng(0)
    >>> stack = rng.normal(80, 2, (60, 32, 128)).clip(0, 255).astype(np.uint8)
    >>> for t in range(60):                      # a bright square moving right
    ...     stack[t, 12:18, 2 * t:2 * t + 6] = 200
    >>> res = subtract_background(stack)
    >>> res.foreground.shape, res.foreground.dtype
    ((60, 32, 128), dtype('uint8'))
    >>> int(res.foreground[0, 14, 2]), int(res.foreground[0, 5, 100])   # from the first frame on
    (1, 0)
    >>> res.background.shape, abs(int(res.background[0, 14, 2]) - 80) <= 1   # no square in it
    ((60, 32, 128), True)
    >>> online = subtract_background(stack, burn_in=None)               # as OpenCV: learns first
    >>> int(online.foreground[0, 5, 100])
    1
    """
    check_param_names(params, MODEL_DEFAULTS, "background-model parameter")
    stack = native_stack(stack)
    if _is_dask(stack) and tiles:
        return _subtract_background_tiled(
            stack,
            preset=preset,
            time_axis=time_axis,
            channel_axis=channel_axis,
            burn_in=burn_in,
            background=background,
            foreground_image=foreground_image,
            data_range=data_range,
            learning_rate=learning_rate,
            noise=noise,
            bleach_correction=bleach_correction,
            progress=progress,
            **params,
        )
    gen = _subtract_background_steps(
        stack,
        preset=preset,
        time_axis=time_axis,
        channel_axis=channel_axis,
        burn_in=burn_in,
        background=background,
        foreground_image=foreground_image,
        data_range=data_range,
        learning_rate=learning_rate,
        noise=noise,
        bleach_correction=bleach_correction,
        **params,
    )
    while True:
        if should_stop is not None and should_stop():
            gen.close()
            raise Cancelled("background modelling was cancelled; nothing was returned")
        try:
            done, total = next(gen)
        except StopIteration as stop:
            return stop.value
        if progress is not None:
            progress(done, total)


def _steps(gen, progress):
    """Run a step generator to its end, reporting each step; return its value."""
    done = 0
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value
        done += 1
        if progress is not None:
            progress(done, done + 1)


def _tile_groups(chunks, hi, lo=0, min_len=1):
    """Blocks along one axis made of the input's chunks: consecutive chunks merged while a block is
    under ``lo`` (and stays within ``hi``), a chunk longer than ``hi`` split into parts of one size
    (at most ``hi``, its last part shorter); a block under ``min_len`` is merged into its neighbour.
    Every block boundary is a chunk boundary unless a chunk had to be split."""
    hi = max(1, int(hi))
    out, acc = [], 0
    for c in (int(c) for c in chunks):
        if c == 0:
            continue
        if c > hi:
            if acc:
                out.append(acc)
                acc = 0
            k = -(-c // hi)
            step = -(-c // k)
            out += [step] * (c // step) + ([c % step] if c % step else [])
            continue
        if acc and (acc >= lo or acc + c > hi):
            out.append(acc)
            acc = 0
        acc += c
    if acc:
        out.append(acc)
    merged = []
    for b in out:
        if merged and (b < min_len or merged[-1] < min_len):
            merged[-1] += b
        else:
            merged.append(b)
    return tuple(merged)


def _tile_grid(ych, xch, px_bytes, min_len):
    """Spatial tiles (y blocks, x blocks) on the input's chunk grid: whole chunks, merged (along x
    first) up to ``TILE_MIN_PIXELS`` pixels, within ``TILE_BYTES`` of model state (``px_bytes`` per
    pixel); a chunk holding more state than that is split (along y first)."""
    from ._kernels import _config

    px_max = max(16, _config.TILE_BYTES // max(1, px_bytes))
    px_min = min(_config.TILE_MIN_PIXELS, px_max)
    cy, cx = max(ych), max(xch)
    if cy * cx > px_max:
        y_hi = min(cy, max(min_len, px_max // cx))
        x_hi = min(cx, max(min_len, px_max // y_hi))
        return _tile_groups(ych, y_hi, min_len=min_len), _tile_groups(xch, x_hi, min_len=min_len)
    xs = _tile_groups(xch, max(cx, px_max // cy), lo=-(-px_min // cy), min_len=min_len)
    wx = max(xs)
    ys = _tile_groups(ych, max(cy, px_max // wx), lo=-(-px_min // wx), min_len=min_len)
    return ys, xs


def _time_groups(tch, frame_bytes):
    """Time blocks of one task of a tile's chain: the input's time chunks, merged while a block holds
    under ``TIME_BLOCK_MIN_BYTES`` of the tile's input, split over ``TILE_BYTES``."""
    from ._kernels import _config

    fb = max(1, frame_bytes)
    return _tile_groups(tch, max(1, _config.TILE_BYTES // fb), lo=-(-_config.TIME_BLOCK_MIN_BYTES // fb))


class _TileState:
    """One tile's model between the tasks of its chain (updated in place: a task checks that the
    model has learned exactly the frames before its own, so a task run twice, e.g. a recomputation
    after a lost worker, raises instead of giving a model that learned frames twice)."""

    def __init__(self, model):
        self.model = model

    def __sizeof__(self):
        # the model's arrays, which dask.distributed's scheduler weighs (``dask.sizeof``: otherwise
        # the object's 48 bytes) when it places the next task of the chain: a step then runs where
        # the model is, not where its input block was read (measured on a LocalCluster: the steps
        # followed their 16 MiB reads and the 62 MiB models moved between the workers, 9 s of
        # transfers in a 17 s run of a 1.6 GB stack)
        m = self.model
        return object.__sizeof__(self) + sum(
            a.nbytes for a in (m._weights, m._means, m._variances, m._n_modes, m._masks)
        )

    def expect(self, n_frames):
        if self.model.n_frames != n_frames:
            raise RuntimeError(
                f"a tile's background model has learned {self.model.n_frames} frames where {n_frames} "
                "were expected: a task of its chain ran twice (lost worker?); compute the result again"
            )


def _tile_start(frame_shape, kw):
    return _TileState(BackgroundModel(frame_shape, **kw))


class _BlockReader:
    """Computes one block of a dask array inside the task that uses it, from the block's own small
    graph (culled from the array's optimised graph), in the calling thread.

    A tile's chain reads its input through these, gated on its own progress: as separate tasks of
    dask's graph, the reads (which depend on nothing) would be run ahead by every free thread of the
    scheduler, holding decoded chunks in memory until the chain reaches them (measured: 1 GB for a
    2 GB stack of one tile). Each read decodes its chunks once; nothing is shared between reads, so
    the burn-in's reads never keep chunks for the classification's. The job reads each chunk once
    (the burn-in's chunks twice): chunk files not in the page cache are read past it
    (:func:`napari_gmm.io.reading_once`). On a dask.distributed worker a read leaves the worker's
    task slot while it runs (:func:`napari_gmm._dask.off_worker_slots`)."""

    def __init__(self, graph, key):
        self.graph, self.key = graph, key

    def __call__(self, *gate):
        from dask.local import get_sync

        from ._dask import off_worker_slots
        from .io import reading_once

        with off_worker_slots(), reading_once():
            return np.asarray(get_sync(self.graph, self.key))


def _block_readers(arr):
    """A :class:`_BlockReader` for every block of dask array ``arr`` (an ndarray of objects)."""
    from dask.optimization import cull

    keys = arr.__dask_keys__()
    dsk = arr.__dask_optimize__(arr.__dask_graph__(), keys)
    out = np.empty(arr.numblocks, object)
    for idx in np.ndindex(*arr.numblocks):
        key = (arr.name,) + idx
        out[idx] = _BlockReader(cull(dsk, [key])[0], key)
    return out


def _take_frames(view, idx, edges):
    """``view[idx]`` (sorted frame indices of a dask stack whose time chunks start at ``edges``) as
    one slice of frames per time chunk (the subset taken from it when the chunk holds several): a
    zarr input is then asked for the frames of a chunk up to the last one needed (see
    ``napari_gmm.io._ZarrChunks``, which decodes no further), where ``view[idx]`` asks for the
    whole chunk. The same values."""
    import dask.array as da

    which = np.searchsorted(edges, idx, side="right") - 1
    parts = []
    for c in np.unique(which):
        t = idx[which == c]
        part = view[int(t[0]) : int(t[-1]) + 1]
        if len(t) != t[-1] - t[0] + 1:
            part = part[t - t[0]]
        parts.append(part)
    return parts[0] if len(parts) == 1 else da.concatenate(parts, axis=0)


def _tile_burn(state, frames, ts, n_before, kw):
    """Burn-in of a tile's model on ``frames`` (the frames ``ts`` of the burn-in); the tuple of
    :func:`_tile_step` with no outputs."""
    state.expect(n_before)
    f = kw["factors"]
    for j in range(0, len(ts), _TILE_LAUNCH):
        sl = slice(j, j + _TILE_LAUNCH)
        state.model.apply_block(
            frames[sl],
            learning_rate=kw["learning_rate"],
            burn_in=True,
            frame_factors=None if f is None else f[ts[sl]],
            _frame_ids=(ts[sl], kw["time_axis"]),
        )
    return state, None, None, None, None


def _tile_step(state, frames, t0, n_before, kw):
    """Classify frames ``t0 ...`` of a tile: (state, raw masks, background, difference image,
    frames) as the in-memory path computes them; the masks before the post-filter (which needs the
    neighbouring tiles: a lazy ``map_overlap`` of the assembled masks), the frames for the masked
    image (None otherwise)."""
    state.expect(n_before)
    model = state.model
    nb = len(frames)
    hw = model.frame_shape[:2]
    f = kw["factors"]
    out_dtype = kw["out_dtype"]
    diff = kw["foreground_image"] == "difference"
    raw = _task_output((nb,) + hw, np.uint8)
    bg_all = _task_output((nb,) + model.frame_shape, out_dtype) if kw["background"] == "all" else None
    fg_img = _task_output((nb,) + model.frame_shape, np.float32) if diff else None
    for out in (raw, bg_all, fg_img):
        if out is not None:
            _populate(out)
    bg_buf = np.empty((min(nb, _TILE_LAUNCH),) + model.frame_shape, np.float32) if diff else None
    for j in range(0, nb, _TILE_LAUNCH):
        k = min(nb, j + _TILE_LAUNCH)
        ts = np.arange(t0 + j, t0 + k)
        bg = bg_buf[: k - j] if diff else (None if bg_all is None else bg_all[j:k])
        _classify_block(
            model,
            frames[j:k],
            ts,
            raw[j:k],
            None if bg_all is None else bg_all[j:k],
            fg_img[j:k] if diff else None,
            bg,
            kw["learning_rate"],
            f,
            kw["time_axis"],
            out_dtype,
        )
    return state, raw, bg_all, fg_img, frames if kw["foreground_image"] == "masked" else None


def _task_output(shape, dtype):
    """An output block of a task of the tiled run: :func:`_new_output`, or where a fresh buffer
    would be a fresh mapping (a dask.distributed worker) a reused one
    (:func:`napari_gmm._dask.chunk_buffer`)."""
    from ._dask import chunk_buffer, pooling

    return chunk_buffer(shape, dtype) if pooling() else _new_output(shape, dtype)


def _tile_done(*made):
    """A tiny token that a unit of a chain is done (what the chain's later reads wait for: on a
    cluster, waiting for the state itself would move it), made from the unit's outputs."""
    return 0


class _StoreGate:
    """Ties a tiled run's chains to the writing of its outputs (see
    :func:`napari_gmm.io.write_zarr`): each step's "done" token, which the chain's reads two units
    later wait for, is made to wait for the stores of that step's output blocks too.

    Without it the stores ran late: dask's threaded scheduler takes the ready task that dask's
    static order puts first, and it put the chains' next steps before the stores of the blocks
    already made, so finished blocks waited in memory, more of them the longer the stack (measured:
    the writer's held blocks grew from 112 to 244 MiB over a 640-frame 1024 x 1024 stack of 4 tiles;
    a 952-frame 8 GB stack held up to 47 blocks). ``done`` maps (time block, tile y, tile x) to
    (the done token's key, the keys it is made from); ``cluster`` maps keys of the run to their
    tasks on a cluster (the chains' reads), and ``nested`` is the set of the run's small tasks
    that a cluster's stores take inside their own task (see :meth:`rewire`): there the done
    token is made from the others only, and waits for the stores."""

    def __init__(self, done, cluster=None, nested=()):
        self.done = done
        self.cluster = cluster or {}
        self.nested = set(nested)

    def rewire(self, dsk, stores, cluster=False):
        """In the materialised graph ``dsk`` of the writes, make the done tokens wait for the store
        tasks of the dask arrays ``stores`` (each the store of an array of this run, block for
        block: keys ``(name, b, iy, ix[, 0])``).

        ``cluster`` (the graph runs on dask.distributed): each read of a chain also takes the
        tile's model as the unit before left it (which the read ignores), so that the scheduler,
        which places a task by the sizes of its inputs, reads the block on the worker holding the
        model, where the step using both runs (:class:`_TileState` reports the model's size). A
        read placed by its tiny gates alone went to either worker and its block moved (LocalCluster
        of 2 workers, 1.6 GB stack, cold: 14.5 / 14.7 / 15.1 s against 14.0 / 14.1 / 14.2 s with the
        placement). The model of the unit before, not of two units before (as the gates): the
        worker counts the model once per key holding it, and the older key stayed held longer
        (the same stack on workers of 700 MB: 19.9 s and 263 MiB spilled against 33.9 s and 845
        MiB; the most memory a worker counted with 2 GB: 314 against 468 MiB; the same time). Only
        on a cluster: on the threaded scheduler the extra inputs change dask's order of the tasks
        (peak 887-1052 MiB against 880-922 MiB).

        Also only on a cluster, where every task costs the worker's event loop and the scheduler
        CPU (about 2.5 and 1.2 ms a task measured on the 8 GB stack's 5,300 tasks): a store takes
        its block inside its own task where the block is an item of a step's result (the
        background, the difference image) or the tile of a block of whole frames of masks, and
        no task takes an alias of an output's block (:func:`_nest_into_stores`); on the 8 GB stack
        1,430 tasks fewer (3,873), 35.8 / 37.1 s against 38.0 / 38.1 s on the benchmark's
        LocalCluster. The
        masks stay a task of their own: the hole filling of whole frames takes them from the tiles
        on other workers, and a nested item would make it take (and move) the whole result, model
        included."""
        if cluster:
            for key, t in self.cluster.items():
                if key in dsk:
                    dsk[key] = t
        for (b, iy, ix), (key, made) in self.done.items():
            if cluster:
                made = [k for k in made if k not in self.nested]
            extra = []
            for st in stores:
                k = (st.name, b, iy, ix) + (0,) * (st.ndim - 3)
                if k in dsk:
                    extra.append(k)
            if extra and key in dsk:
                dsk[key] = (_tile_done, *made, *extra)
        if cluster:
            _nest_into_stores(dsk, stores, self.nested)


def _nest_into_stores(dsk, stores, nested):
    """On a cluster (see :meth:`_StoreGate.rewire`): in the graph ``dsk`` (changed in place), the
    store tasks of the dask arrays ``stores`` take their inputs that are keys of ``nested`` or
    aliases (and so on down such a chain) inside their own task, and every other task takes an
    alias's target in place of the alias; then the aliases and keys of ``nested`` that no task
    takes any more leave the graph."""
    from dask._task_spec import Alias, TaskRef, convert_legacy_graph

    from ._dask import alias_target

    g = convert_legacy_graph(dsk)

    def alias(k):
        return isinstance(g.get(k), Alias)

    def target(k):
        return alias_target(g, k)

    def inner(k):
        """The node to take in place of key ``k``: its task, its own such inputs nested."""
        k = target(k)
        if k not in nested:
            return TaskRef(k)
        t = g[k]
        return t.substitute({d: inner(d) for d in t.dependencies if d in nested or alias(d)})

    names = {st.name for st in stores}
    for k, t in g.items():
        if alias(k):
            continue
        if isinstance(k, tuple) and k[0] in names:
            subs = {d: inner(d) for d in t.dependencies if d in nested or alias(d)}
        else:
            subs = {d: TaskRef(target(d)) for d in t.dependencies if alias(d)}
        if subs:
            g[k] = t.substitute(subs)
    while True:  # (a chain's inner keys are free once the keys that took them are gone)
        taken = set().union(*(t.dependencies for t in g.values()))
        gone = [k for k in g if (k in nested or alias(k)) and k not in taken]
        if not gone:
            break
        for k in gone:
            del g[k]
    dsk.clear()
    dsk.update(g)


def _tile_last(state, n_before, out_dtype):
    """The final background of a tile (``background="last"``)."""
    state.expect(n_before)
    return _to_dtype(state.model.background, out_dtype)


def _postfilter_block(masks, median_size, fill_holes):
    """The post-filters of a block of masks (a dask task: serial); hole filling only on whole
    frames."""
    out = _task_output(masks.shape, masks.dtype)
    _postfilter_masks(np.ascontiguousarray(masks), out, median_size, fill_holes, serial=True)
    return out


class _MasksInTransit:
    """A tile's block of masks on a dask.distributed cluster, which the hole filling takes to
    whichever worker assembles the whole frames: pickled (sent to another worker) as LZ4 bytes
    (Blosc), where dask.distributed sends an array's bytes as they are (its transfers are not
    compressed by default). Masks are mostly runs of one value: a block of 8 x 1024 x 1024 of the
    benchmark's stack took 0.3 ms to compress, 1 ms to decompress, into 1/238 of its 8 MiB. The
    8 GB stack's background on the benchmark's LocalCluster: 410 MiB instead of 2,021 MiB between
    the 2 workers, in the same time there (a loopback moves 2 GB in well under a second; a real
    network at 1-10 Gb/s, in 1.5-15 s). Reports the masks' size, so that the scheduler still
    places the tasks that take them by it."""

    __slots__ = ("masks",)

    def __init__(self, masks):
        self.masks = masks

    def __reduce__(self):
        from numcodecs import blosc

        a = np.ascontiguousarray(self.masks)
        return _MasksInTransit._unpack, (blosc.compress(a, b"lz4", 1, blosc.NOSHUFFLE), a.shape, a.dtype.str)

    @staticmethod
    def _unpack(raw, shape, dtype):
        from numcodecs import blosc

        out = _task_output(shape, np.dtype(dtype))
        blosc.decompress(raw, out)
        return _MasksInTransit(out)

    def __sizeof__(self):
        return object.__sizeof__(self) + self.masks.nbytes


def _masks_in_transit(result, i):
    """A step's masks (item ``i`` of its ``result``) as :class:`_MasksInTransit`."""
    return _MasksInTransit(result[i])


def _postfilter_tiles(rows, median_size, fill_holes):
    """The post-filters of whole frames assembled from their tiles' blocks of masks (``rows``: a
    list per tile row of the blocks along x, arrays or :class:`_MasksInTransit`), as one block (a
    dask task: serial)."""
    rows = [[b.masks if isinstance(b, _MasksInTransit) else b for b in r] for r in rows]
    first = rows[0][0]
    ys = np.cumsum([0] + [r[0].shape[1] for r in rows])
    xs = np.cumsum([0] + [b.shape[2] for b in rows[0]])
    block = _task_output((first.shape[0], int(ys[-1]), int(xs[-1])), first.dtype)
    for i, r in enumerate(rows):
        for j, b in enumerate(r):
            block[:, ys[i] : ys[i + 1], xs[j] : xs[j + 1]] = b
    return _postfilter_block(block, median_size, fill_holes)


def _cut(block, y0, y1, x0, x1):
    """A tile's part of a block of whole frames."""
    return block[:, y0:y1, x0:x1]


def _masked_block(fg, frames, out_dtype):
    """``foreground_image="masked"`` of a block: the frames where the (post-filtered) foreground is
    1 (``fg`` with a length-1 channel axis for colour), 0 elsewhere."""
    return np.where(fg == FOREGROUND, frames, 0).astype(out_dtype)


#: frames per kernel launch in a tile's task (as the in-memory path's blocks)
_TILE_LAUNCH = 16


def _subtract_background_tiled(
    stack,
    *,
    preset,
    time_axis,
    channel_axis,
    burn_in,
    background,
    foreground_image,
    data_range,
    learning_rate,
    noise,
    bleach_correction,
    progress,
    **params,
) -> BackgroundResult:
    """Lazy outputs of subtract_background for a dask stack: one chain of tasks per spatial tile.

    The tiles are the input's chunks along y and x (merged when small, split when their model would
    outgrow ``TILE_BYTES``); a tile's chain learns its burn-in frames, then classifies its time blocks
    (the input's time chunks) in order, the model carried from task to task, so that every input
    chunk is read once by the classification (and the chunks holding burn-in frames once more, by
    the burn-in). The post-filter, which needs the neighbouring tiles' masks, is a ``map_overlap`` of
    the assembled masks. Memory: the tiles' models (the whole frame's state when the chains advance
    together) plus a few time blocks per thread."""
    import dask.array as da
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph

    from ._dask import task

    preset, res, view, info, burn_in, noise, bc = _prepare_run(
        stack,
        preset,
        time_axis,
        channel_axis,
        burn_in,
        background,
        foreground_image,
        learning_rate,
        noise,
        bleach_correction,
        params,
    )
    n_t = info["n_frames"]
    # the stack-wide estimates, once, shared by every tile (so that tiles equal the whole)
    model_noise, factors = _steps(_stack_estimates_steps(view, info, noise, bc), progress)
    if data_range is None:
        data_range = default_data_range(view)
    frame_shape = info["frame_shape"]
    grey = len(frame_shape) == 2
    c = 1 if grey else frame_shape[2]
    dtype = info["dtype"]
    out_dtype = dtype if dtype.kind in "ui" else np.dtype(np.float32)
    r = res["median_size"] // 2 if res["median_size"] > 1 else 0
    fill = res["fill_holes"]

    # tiles on the chunk grid; the model state per pixel: weights, means, variances, n_modes, mask
    k = res["n_mixtures"]
    ys, xs = _tile_grid(view.chunks[1], view.chunks[2], k * (8 + 4 * c) + 2, max(4, r + 1))
    ts = _time_groups(view.chunks[0], max(ys) * max(xs) * c * dtype.itemsize)
    tail = () if grey else ((c,),)
    chunks = (ts, ys, xs) + tail
    src = view.rechunk(chunks)
    burn_idx = burn_in_indices(n_t, burn_in)
    units = []  # per tile, in order: (reader index, function, frame indices or first frame, frames)
    if len(burn_idx):
        # burn-in blocks of the frames of whole input chunks, as the classification's blocks
        edges = np.cumsum((0,) + tuple(view.chunks[0]))
        per_chunk = np.bincount(np.searchsorted(edges, burn_idx, side="right") - 1, minlength=len(edges) - 1)
        burn_groups = _time_groups(per_chunk, max(ys) * max(xs) * c * dtype.itemsize)
        b_edges = np.cumsum((0,) + burn_groups)
        if len(burn_idx) == n_t:
            readers = _block_readers(view.rechunk((burn_groups,) + chunks[1:]))
            for g in range(len(burn_groups)):
                units.append((readers, g, "burn", burn_idx[b_edges[g] : b_edges[g + 1]]))
        else:
            # each block of spread frames its own array: a block's reads are then those of its frames'
            # chunks only (blocks cut from one array of all the burn-in frames each read all of them)
            for g in range(len(burn_groups)):
                idx = burn_idx[b_edges[g] : b_edges[g + 1]]
                readers = _block_readers(_take_frames(view, idx, edges).rechunk(((len(idx),),) + chunks[1:]))
                units.append((readers, 0, "burn", idx))
    readers = _block_readers(src)
    t_edges = np.cumsum((0,) + ts)
    for i in range(len(ts)):
        units.append((readers, i, "step", int(t_edges[i])))

    # the tiles' models leave the masks unfiltered (the post-filters only filter the returned masks)
    model_kw = dict(res, median_size=1, fill_holes=0, data_range=float(data_range), noise=model_noise)
    kw = dict(
        learning_rate=learning_rate,
        factors=factors,
        time_axis=info["time_axis"],
        background=background,
        foreground_image=foreground_image,
        out_dtype=out_dtype,
    )
    n_tiles = len(ys) * len(xs)
    name = f"mog2-tiles-{tokenize(src.name, burn_in, model_kw, kw, n_t)}"
    fns = {
        "start": task(_tile_start, n_tiles),
        "burn": partial(task(_tile_burn, n_tiles), kw=kw),
        "step": partial(task(_tile_step, n_tiles), kw=kw),
        "last": task(_tile_last, n_tiles),
    }
    c0 = () if grey else (0,)
    tiles = [(iy, ix) for iy in range(len(ys)) for ix in range(len(xs))]
    # a step's outputs, by position in its tuple (the ones this run makes)
    outs = {"masks": 1}
    if background == "all":
        outs["background"] = 2
    if foreground_image == "difference":
        outs["difference"] = 3
    elif foreground_image == "masked":
        outs["frames"] = 4
    around = {
        (iy, ix): [
            (jy, jx)
            for jy in range(iy - 1, iy + 2)
            for jx in range(ix - 1, ix + 2)
            if (0 <= jy < len(ys) and 0 <= jx < len(xs)) and (r or fill or (jy, jx) == (iy, ix))
        ]
        for iy, ix in tiles
    }
    # on a cluster (_StoreGate.rewire): tasks that replace the graph's, and small tasks nested into
    # the stores that take them
    dsk, last, gate_done, cluster, nested = {}, {}, {}, {}, set()
    for iy, ix in tiles:
        state = (name, "start", iy, ix)
        dsk[state] = (fns["start"], (ys[iy], xs[ix]) + frame_shape[2:], model_kw)
        n = 0
        for u, (rd, b, kind, arg) in enumerate(units):
            # A unit's input is read when the unit two before it is done (one block read ahead), in
            # this tile and, with a post-filter, in the tiles around it (so that the chains advance
            # together and no tile's masks wait long for its neighbours'). "Done" is a token made
            # from the unit's outputs: so placed, dask's order runs their consumers (stores) right
            # after each unit; with the token made from the unit itself, it put every store after
            # the whole chain (measured: 1 GB of outputs waiting on a one-tile 2 GB stack).
            read = (name, "read", u, iy, ix)
            gates = [(name, "done", u - 2, jy, jx) for jy, jx in around[iy, ix]] if u >= 2 else []
            dsk[read] = (rd[(b, iy, ix) + c0], *gates)
            # on a cluster, also on the tile's model as the unit before left it (_StoreGate.rewire)
            cluster[read] = dsk[read] + (state,)
            key = (name, kind, u, iy, ix)
            dsk[key] = (fns[kind], state, read, arg, n)
            # (the model stays a task of its own: with the steps and reads taking it from the unit's
            # result, the scheduler moved chains between the workers in 4 of 6 runs of
            # test_on_a_cluster_each_tiles_chain_stays_on_one_worker; no faster on the 8 GB stack)
            state = (name, "state", u, iy, ix)
            dsk[state] = (_getitem, key, 0)
            n += len(arg) if kind == "burn" else ts[b]
            made = [key]
            if kind == "step":
                made = [(name, what, b, iy, ix) for what in outs]
                for what, j in outs.items():
                    dsk[(name, what, b, iy, ix)] = (_getitem, key, j)
                    if what != "masks":
                        nested.add((name, what, b, iy, ix))
                # (on a cluster, the outputs but the masks go inside their stores: rewire)
                gate_done[b, iy, ix] = ((name, "done", u, iy, ix), made)
            dsk[(name, "done", u, iy, ix)] = (_tile_done, *made)
        last[(name + "-last", iy, ix) + c0] = (fns["last"], state, n, out_dtype)
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=[])

    def output(out_name, layer, chunks_, dtype_):
        layers = dict(graph.layers, **{out_name: layer})
        deps = dict(graph.dependencies, **{out_name: {name}})
        return da.Array(HighLevelGraph(layers, deps), out_name, chunks_, dtype_)

    def per_block(what, dtype_, with_channels=False):
        """The step outputs ``what`` as a dask array (a layer of aliases to them)."""
        out_name = f"{name}-{what}"
        extra = c0 if with_channels else ()
        layer = {(out_name, i, iy, ix) + extra: (name, what, i, iy, ix) for i in range(len(ts)) for iy, ix in tiles}
        return output(out_name, layer, (ts, ys, xs) + (tail if with_channels else ()), dtype_)

    # the post-filter needs the neighbouring tiles' masks: a majority vote over the assembled masks
    # (boundary "none": the stack's own borders are the window's, as in the in-memory path); a
    # hole can span any number of tiles: with hole filling, both filters run on whole frames
    # (blocks of at most FILL_BLOCK_BYTES of masks), cut back into the tiles afterwards
    fg = per_block("masks", np.uint8)
    # given, so that dask does not run the filter on an empty block to learn its output's type
    # (which loaded its compiled kernels from the cache: 0.24 s before the job's first task)
    meta = np.empty((0, 0, 0), np.uint8)
    if fill:
        from ._kernels._config import FILL_BLOCK_BYTES

        h, w = frame_shape[:2]
        per = max(1, FILL_BLOCK_BYTES // (h * w))
        frames_ = _tile_groups(ts, per)
        if frames_ == ts:
            # a task per time block takes its tiles' masks whole and filters the frames; the tiles'
            # parts are cut from it (what the rechunks below do, in 595 instead of 1,666 tasks on
            # the 8 GB stack, which dask.distributed's workers and scheduler spend time on each)
            fill_name = f"{name}-fill"
            cut_name = f"{name}-masks-filled"
            y_edges, x_edges = np.cumsum((0,) + ys), np.cumsum((0,) + xs)
            filled = {
                (fill_name, b): (
                    _postfilter_tiles,
                    [[(name, "masks", b, iy, ix) for ix in range(len(xs))] for iy in range(len(ys))],
                    res["median_size"],
                    fill,
                )
                for b in range(len(ts))
            }
            cuts = {
                (cut_name, b, iy, ix): (
                    _cut,
                    (fill_name, b),
                    int(y_edges[iy]),
                    int(y_edges[iy + 1]),
                    int(x_edges[ix]),
                    int(x_edges[ix + 1]),
                )
                for b in range(len(ts))
                for iy, ix in tiles
            }
            nested.update(cuts)
            # on a cluster, the masks travel to the filling compressed
            for b in range(len(ts)):
                for iy, ix in tiles:
                    k = (name, "masks", b, iy, ix)
                    cluster[k] = (_masks_in_transit, *dsk[k][1:])
            layers = dict(graph.layers, **{fill_name: filled, cut_name: cuts})
            deps = dict(graph.dependencies, **{fill_name: {name}, cut_name: {fill_name}})
            fg = da.Array(HighLevelGraph(layers, deps), cut_name, (ts, ys, xs), np.uint8, meta=meta)
        else:
            fg = fg.rechunk((frames_, (h,), (w,)))
            fg = fg.map_blocks(
                _postfilter_block, dtype=np.uint8, meta=meta, median_size=res["median_size"], fill_holes=fill
            )
            fg = fg.rechunk((ts, ys, xs))
    elif r:
        fg = fg.map_overlap(
            _postfilter_block,
            depth=(0, r, r),
            boundary="none",
            dtype=np.uint8,
            meta=meta,
            median_size=res["median_size"],
            fill_holes=0,
        )
    bg = None
    if background == "all":
        bg = per_block("background", out_dtype, True)
    elif background == "last":
        bg = output(name + "-last", last, (ys, xs) + tail, out_dtype)
    fg_img = None
    if foreground_image == "difference":
        fg_img = per_block("difference", np.float32, True)
    elif foreground_image == "masked":
        frames = per_block("frames", dtype, True)
        fgc = fg if grey else fg[..., None]
        fg_img = da.map_blocks(_masked_block, fgc, frames, out_dtype=out_dtype, dtype=out_dtype)
    # a writer of these arrays (napari_gmm.io.write_zarr) makes each unit's "done" wait for the
    # unit's outputs to be written, so that the chains cannot run ahead of the writes
    gate = _StoreGate(gate_done, cluster, nested)
    for a in (fg, bg if background == "all" else None, fg_img):
        if a is not None:
            a._napari_gmm_store_gate = gate
    used = _used_params(
        res, preset, info, burn_in, data_range, background, foreground_image, learning_rate, model_noise, factors
    )
    used["tiles"] = [len(ys), len(xs)]
    return BackgroundResult(
        foreground=fg,
        background=bg,
        foreground_image=fg_img,
        model=None,
        params=used,
        frame_factors=factors,
        noise=model_noise,
    )


def _getitem(seq, i):
    return seq[i]


def pixel_history(
    trace,
    *,
    preset=DEFAULT_PRESET,
    data_range=None,
    burn_in=FROM_PRESET,
    learning_rate=None,
    noise=FROM_PRESET,
    bleach_correction=FROM_PRESET,
    frame_factors=None,
    **params,
) -> dict:
    """Replay the background model of one pixel frame by frame.

    Every pixel of :func:`subtract_background` evolves independently of the others (only the
    returned masks are post-filtered across neighbours), so a :class:`BackgroundModel` of a
    1 x 1 frame fed the same frames with the same schedule (:func:`burn_in_indices`, then the
    classifying pass, through :meth:`BackgroundModel.apply_block`) gives that pixel's exact
    model after each frame.

    Parameters
    ----------
    trace : array_like, shape (T,) or (T, C)
        The pixel's values over time.
    preset, burn_in, learning_rate, **params
        As :func:`subtract_background` (pass ``BackgroundResult.params``: every key of
        :data:`REPLAY_KEYS` is accepted).
    data_range : float, optional
        As :func:`subtract_background`; give the stack's (``result.params["data_range"]``):
        the default here is the trace's own.
    noise : NoiseModel, dict or None
        The noise model the stack used (``result.params["noise"]``); ``"auto"`` cannot be
        estimated from one pixel and is refused.
    bleach_correction : bool or (T,) array_like
        As :func:`subtract_background`; True needs ``frame_factors``.
    frame_factors : (T,) array_like, optional
        The stack's factors (``result.frame_factors`` or ``result.params["frame_factors"]``).

    Returns
    -------
    dict
        ``"values"`` (T,) or (T, C) float, ``"foreground"`` (T,) uint8 (0 background,
        1 foreground, 2 shadow; not post-filtered), ``"bg_mean"`` (T,) or (T, C): mean of the
        most probable mode after each frame, ``"bg_sigma"`` (T,): its standard deviation,
        ``"var_threshold"``, ``"data_range"`` and ``"mixture"``: the final
        :meth:`BackgroundModel.mixture_at` dict.
    """
    preset = _check_preset(preset)
    params = dict(params)
    params["median_size"] = 0  # a single pixel has no neighbours to vote
    res = _resolve(preset, burn_in, noise, bleach_correction, params)
    burn_in, noise, bc = res.pop("burn_in"), res.pop("noise"), res.pop("bleach_correction")
    v = np.asarray(trace)
    if v.ndim not in (1, 2) or v.shape[0] < 2:
        raise InputError(f"a pixel trace must have shape (T,) or (T, C) with T >= 2, got {v.shape}")
    grey = v.ndim == 1
    n_t = v.shape[0]
    if isinstance(noise, str):
        raise InputError(
            "noise='auto' cannot be estimated from one pixel: pass the stack's "
            "noise model (BackgroundResult.noise or params['noise'])"
        )
    factors = None
    if frame_factors is not None:
        factors = np.asarray(frame_factors, np.float64)
    elif not isinstance(bc, (bool, np.bool_)):
        factors = np.asarray(bc, np.float64)
    elif bc:
        raise InputError(
            "bleach_correction=True needs the stack's frame_factors "
            "(BackgroundResult.frame_factors): one pixel cannot estimate them"
        )
    if factors is not None and factors.shape != (n_t,):
        raise InputError(f"frame_factors must have one value per frame ({n_t}), got shape {factors.shape}")
    frame_shape = (1, 1) if grey else (1, 1, v.shape[1])
    frames = v.reshape((n_t,) + frame_shape)
    if data_range is None:
        data_range = default_data_range(frames)
    model = BackgroundModel(frame_shape, data_range=data_range, noise=noise, **res)
    for t in burn_in_indices(n_t, burn_in):
        model.apply_block(
            frames[t : t + 1],
            learning_rate=learning_rate,
            burn_in=True,
            frame_factors=None if factors is None else factors[t : t + 1],
        )
    fg = np.empty(n_t, np.uint8)
    n_ch = 1 if grey else v.shape[1]
    mean = np.empty((n_t, n_ch))
    sigma = np.empty(n_t)
    for t in range(n_t):
        m = model.apply_block(
            frames[t : t + 1],
            learning_rate=learning_rate,
            frame_factors=None if factors is None else factors[t : t + 1],
        )
        fg[t] = m[0, 0, 0]
        mix = model.mixture_at(0, 0)
        if mix["weights"].size:
            mean[t] = np.atleast_1d(mix["means"][0])
            sigma[t] = math.sqrt(float(mix["variances"][0]))
        else:
            mean[t] = np.nan
            sigma[t] = np.nan
    return {
        "values": v.astype(float),
        "foreground": fg,
        "bg_mean": mean[:, 0] if grey else mean,
        "bg_sigma": sigma,
        "var_threshold": float(model.params["var_threshold"]),
        "mixture": model.mixture_at(0, 0),
        "data_range": float(data_range),
    }
