"""Background modelling of frame stacks with per-pixel adaptive Gaussian mixtures.

Stauffer & Grimson's adaptive mixture of Gaussians per pixel, with Zivkovic's improvements
(OpenCV's ``BackgroundSubtractorMOG2``): a fast start with learning rate ``1 / min(2 n, history)``,
an adaptive number of modes per pixel through a complexity reduction prior, variance clamps and
shadow detection. Parameter names are OpenCV's in snake_case.

Two additions for stacks that are entirely known in advance (as in napari):

- an *offline burn-in*: the model first learns from ``burn_in`` frames spread evenly over the
  stack (or from all of them), then classifies every frame from the start, so early frames are
  not all foreground and passing objects never become background;
- a *post-filter*: a majority (median) vote of the foreground mask over a small window, as the
  post-filtering step of Zivkovic's reference implementation.

Public API: :func:`subtract_background`, :class:`BackgroundModel`, :class:`BackgroundResult`.
Importing this module never imports napari or Qt.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

from ._kernels import mog as _mog
from ._validate import InputError, check_param_names, native_array, native_stack, to_int_dtype

__all__ = ["subtract_background", "BackgroundModel", "BackgroundResult"]

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
)

#: largest number of modes per pixel accepted
MAX_MIXTURES = 16

#: a dask block along time is computed in one go when it is at most this many bytes
_DASK_BLOCK_BYTES = 256 * 2**20


def _is_dask(a) -> bool:
    return hasattr(a, "dask") and hasattr(a, "chunks") and hasattr(a, "compute")


def _check_model_params(params: dict) -> dict:
    """Validate and normalise model parameters; return a JSON-able dict of plain Python values."""
    unknown = set(params) - set(MODEL_DEFAULTS)
    if unknown:
        raise TypeError(
            f"unknown background-model parameter(s) {sorted(unknown)}; "
            f"valid ones are {sorted(MODEL_DEFAULTS)}"
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
            hi is not None and (v >= hi if hi_open else v > hi))
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
    if p["var_min"] > p["var_max"]:
        raise InputError(
            f"var_min ({p['var_min']}) must not exceed var_max ({p['var_max']})")
    if not (p["var_min"] <= p["var_init"] <= p["var_max"]):
        raise InputError(
            f"var_init ({p['var_init']}) must lie within [var_min, var_max] = "
            f"[{p['var_min']}, {p['var_max']}]")
    if p["median_size"] > 1 and p["median_size"] % 2 == 0:
        raise InputError(f"median_size must be odd (or 0/1 to switch the post-filter off), "
                         f"got {p['median_size']}")
    if p["detect_shadows"] != "auto":
        if not isinstance(p["detect_shadows"], (bool, np.bool_)):
            raise InputError(f'detect_shadows must be True, False or "auto", '
                             f"got {p['detect_shadows']!r}")
        p["detect_shadows"] = bool(p["detect_shadows"])
    return p


def _default_data_range(frames) -> float:
    """Span from min(0, min) to max over the given frames (finite values), at least tiny."""
    lo, hi = 0.0, 0.0
    for f in frames:
        f = np.asarray(f)
        if f.dtype.kind == "f":
            f = f[np.isfinite(f)]
        if f.size:
            lo = min(lo, float(f.min()))
            hi = max(hi, float(f.max()))
    span = hi - lo
    return span if span > 0 else 1.0


class BackgroundModel:
    """Stateful per-pixel adaptive Gaussian mixture background model (MOG2).

    Feed frames one at a time with :meth:`apply`; the model learns and classifies each frame.
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

    def __init__(self, frame_shape, *, data_range=None, **params):
        shape = tuple(int(s) for s in np.atleast_1d(frame_shape))
        if len(shape) not in (2, 3):
            raise InputError(
                f"frame_shape must be (Y, X) or (Y, X, C), got {tuple(frame_shape)!r}")
        if min(shape) < 1:
            raise InputError(f"frame_shape must be positive, got {shape}")
        check_param_names(params, MODEL_DEFAULTS, "background-model parameter")
        self.params = _check_model_params(params)
        if data_range is not None:
            data_range = float(data_range)
            if not (math.isfinite(data_range) and data_range > 0):
                raise InputError(f"data_range must be a positive finite number, got {data_range}")
        self.data_range = data_range
        self.frame_shape = shape
        self._grey = len(shape) == 2
        self._hw = shape[:2]
        self._c = 1 if self._grey else shape[2]
        k = self.params["n_mixtures"]
        h, w = self._hw
        # kernel layout: (H, K, W), (H, K, C, W), (H, K, W), (H, W); see _kernels/mog.py
        self._weights, self._means, self._variances, self._n_modes = _mog.new_state(
            h, w, k, self._c)
        self._masks = np.zeros((1, h, w), np.uint8)
        self._dummy_bg = np.zeros((1, 1, 1, self._c), np.float32)
        self.n_frames = 0
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

    def reset(self):
        """Forget everything learned (keeps parameters and ``data_range``)."""
        for a in (self._weights, self._means, self._variances, self._n_modes):
            a[...] = 0
        self.n_frames = 0

    def _check_block(self, block, ts=None, time_axis=None, where=None):
        """Validate a block (B, Y, X[, C]) of frames; return it C-contiguous as (B, Y, X, C).

        ``ts`` are the frames' indices along ``time_axis`` (for the messages)."""
        if _is_dask(block):
            block = block.compute()
        block = np.asarray(block)
        if block.dtype.kind not in "uif":
            raise InputError(
                f"{where or 'the stack'} has dtype {block.dtype}; background modelling needs "
                "integer or float intensities (convert booleans/complex values first)")
        if block.shape[1:] != self.frame_shape:
            raise InputError(
                f"{where or 'the frame'} has shape {block.shape[1:]} but the model was made for "
                f"frames of shape {self.frame_shape}")
        if block.dtype.kind == "f" and not np.isfinite(block).all():
            bad = int(np.flatnonzero(~np.isfinite(block.reshape(len(block), -1)).all(1))[0])
            what = where or (f"frame {int(ts[bad])} (along time_axis={time_axis})"
                             if ts is not None else "the frame")
            raise InputError(
                f"{what} contains NaN or infinite values; replace them (e.g. with np.nan_to_num "
                "or by interpolating from neighbouring frames) or drop the frame")
        if self._grey:
            block = block[..., None]
        return np.ascontiguousarray(block)

    def _rates(self, n, learning_rate):
        """Learning rates of the next ``n`` frames: 1 / min(2 k, history) or the fixed rate."""
        k = self.n_frames + 1 + np.arange(n)
        auto = 1.0 / np.minimum(2 * k, self.params["history"])
        if learning_rate is None:
            return auto
        return np.where(k == 1, auto, float(learning_rate))

    def _ensure_buffers(self, n):
        if self._masks.shape[0] < n:
            self._masks = np.zeros((n,) + self._hw, np.uint8)

    def _step(self, data, alphas, masks, background_out=None, shadows=True):
        """Run the kernel on a checked block; write raw masks; count the frames.

        ``shadows=False`` skips the shadow test (shadow pixels are marked foreground) where
        the masks are not used, as in the burn-in; the model is the same either way."""
        p = self.params
        if background_out is not None:
            bg, write = background_out, True
        else:
            bg, write = self._dummy_bg, False
        _mog.mog2_apply(
            data, self.scale, self._weights, self._means, self._variances, self._n_modes,
            masks, bg, write, alphas, p["var_threshold"], p["background_ratio"],
            p["var_threshold_gen"], p["var_init"], p["var_min"], p["var_max"],
            p["complexity_reduction_threshold"], p["shadow_threshold"],
            self._shadows and shadows)
        self.n_frames += len(alphas)

    def _postfilter(self, masks, out):
        """Majority post-filter of (B, Y, X) ``masks`` into ``out`` (or a plain copy)."""
        size = self.params["median_size"]
        if size <= 1:
            out[...] = masks
        else:
            _mog.majority_filter_stack(masks, size // 2, out)

    # ------------------------------------------------------------------ public
    def apply(self, frame, learning_rate=None, *, background_out=None):
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

        Returns
        -------
        mask : (Y, X) ndarray of uint8
            0 background, 1 foreground, 2 shadow (a new array).
        """
        frame = native_array(frame)
        if learning_rate is not None:
            lr = float(learning_rate)
            if not (0.0 <= lr <= 1.0):
                raise InputError(
                    f"learning_rate must be within [0, 1] or None, got {learning_rate}")
        data = self._check_block(np.asarray(frame)[None] if not _is_dask(frame)
                                 else frame[None], where="the frame")
        if learning_rate is not None and float(learning_rate) >= 1.0:
            self.reset()
            learning_rate = None
        if self.data_range is None:
            self.data_range = 255.0 if data.dtype == np.uint8 else _default_data_range([data])
        self._ensure_buffers(1)
        bg = None
        if background_out is not None:
            if (background_out.dtype != np.float32 or background_out.shape != self.frame_shape
                    or not background_out.flags.c_contiguous):
                raise InputError(f"background_out must be a C-contiguous float32 array of shape "
                                 f"{self.frame_shape}")
            bg = background_out.reshape((1,) + self._hw + (self._c,))
        self._step(data, self._rates(1, learning_rate), self._masks[:1], bg)
        out = np.empty((1,) + self._hw, np.uint8)
        self._postfilter(self._masks[:1], out)
        return out[0]

    @property
    def background(self) -> np.ndarray:
        """Current background (mean of the most probable mode), float32 in data units."""
        out = np.empty(self._hw + (self._c,), np.float32)
        _mog.mog2_background(self._means, self._n_modes, self.scale, out)
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
            squared, shared by the channels), ``is_background`` (n,) bool: the modes that make
            the background (cumulative weight rule). ``n`` is the number of modes in use.
        """
        h, w = self._hw
        y, x = int(y), int(x)
        if not (-h <= y < h and -w <= x < w):
            raise IndexError(f"pixel ({y}, {x}) is outside the frame of shape {self._hw}")
        n = int(self._n_modes[y, x])
        s = self.scale
        weights = self._weights[y, :n, x].astype(np.float64)
        means = self._means[y, :n, :, x].astype(np.float64) / s
        variances = self._variances[y, :n, x].astype(np.float64) / (s * s)
        cum = np.concatenate([[0.0], np.cumsum(weights)[:-1]])
        return dict(
            weights=weights,
            means=means[:, 0] if self._grey else means,
            variances=variances,
            is_background=cum < self.params["background_ratio"],
        )

    def __repr__(self):
        return (f"BackgroundModel(frame_shape={self.frame_shape}, n_frames={self.n_frames}, "
                f"data_range={self.data_range}, n_mixtures={self.n_mixtures})")


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
        clipped), float32 otherwise.
    foreground_image : (T, Y, X[, C]) ndarray or None
        ``"difference"``: input minus background (float32); ``"masked"``: input where
        ``foreground == 1``, 0 elsewhere (input dtype).
    model : BackgroundModel
        The model after the last frame (``model.mixture_at(y, x)`` for a pixel plot).
    params : dict
        Every parameter used (JSON-able), including ``data_range`` and ``burn_in``.
    """

    foreground: np.ndarray
    background: np.ndarray | None
    foreground_image: np.ndarray | None
    model: BackgroundModel = field(repr=False)
    params: dict


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
            "intensities (convert booleans, complex or object data first)")
    if ndim < 3:
        raise InputError(
            f"background modelling needs a stack of frames (T, Y, X) or (T, Y, X, C) with "
            f"T >= 2 frames along the time axis (time_axis={time_axis}); got a {ndim}D array "
            f"of shape {shape}. A single image has no background to learn.")
    if ndim > 4:
        raise InputError(
            f"the stack has {ndim} dimensions ({_describe_axes(shape)}); expected (T, Y, X) or "
            "(T, Y, X, C). Process each z-plane or position separately.")
    if isinstance(time_axis, bool) or not isinstance(time_axis, numbers.Integral):
        raise TypeError(f"time_axis must be an integer axis index, got {time_axis!r}")
    if not -ndim <= time_axis < ndim:
        raise InputError(
            f"time_axis={time_axis} is out of range for a stack of shape {shape}; use an axis "
            f"in [{-ndim}, {ndim - 1}]")
    t_ax = int(time_axis) % ndim
    c_ax = None
    if channel_axis is not None:
        if isinstance(channel_axis, bool) or not isinstance(channel_axis, numbers.Integral):
            raise TypeError(f"channel_axis must be an integer axis index or None, "
                            f"got {channel_axis!r}")
        if not -ndim <= channel_axis < ndim:
            raise InputError(
                f"channel_axis={channel_axis} is out of range for a stack of shape {shape}")
        c_ax = int(channel_axis) % ndim
        if c_ax == t_ax:
            raise InputError(
                f"time_axis and channel_axis are the same axis ({t_ax}) of the stack of shape "
                f"{shape}; time and channels must be different axes")
        if ndim == 3:
            raise InputError(
                f"channel_axis={channel_axis} leaves only one spatial axis in the stack of "
                f"shape {shape}; a channel stack needs 4 dimensions (T, Y, X, C)")
    elif ndim == 4:
        # infer the channel axis: RGB(A) on the last axis, as napari's rgb layers
        if shape[-1] in (3, 4) and t_ax != ndim - 1:
            c_ax = ndim - 1
        else:
            small = [i for i, n in enumerate(shape) if n <= 4 and i != t_ax]
            hint = (f" Axis {small[0]} has length {shape[small[0]]}: pass channel_axis="
                    f"{small[0]} if it holds the channels." if small else "")
            if t_ax == ndim - 1 and shape[-1] in (3, 4):
                hint = (f" time_axis={time_axis} has length {shape[-1]}, which looks like "
                        "the colour axis of an RGB stack; time is usually axis 0.")
            raise InputError(
                f"cannot tell which axis holds the channels in the 4D stack of shape {shape} "
                f"({_describe_axes(shape)}) with time_axis={time_axis}. RGB stacks have 3 or 4 "
                f"channels on the last axis; otherwise pass channel_axis.{hint}")
    n_t = shape[t_ax]
    if n_t < 2:
        raise InputError(
            f"background modelling needs T >= 2 frames along the time axis (time_axis="
            f"{time_axis}), but the stack of shape {shape} has {n_t} there. If time is another "
            "axis, pass its index as time_axis.")
    # move axes: time first, channels last
    if dask:
        import dask.array as da
        move = da.moveaxis
    else:
        move = np.moveaxis
    if c_ax is None:
        view = move(stack, t_ax, 0)
    else:
        view = move(stack, [t_ax, c_ax], [0, -1])
    frame_shape = tuple(int(s) for s in view.shape[1:])
    if min(frame_shape[:2]) < 4:
        raise InputError(
            f"frames would be {frame_shape[:2]} pixels (stack shape {shape}, time_axis="
            f"{time_axis}, channel_axis={channel_axis}); frames smaller than 4 pixels along a "
            "side mean the time or channel axis is probably wrong: time_axis is the axis "
            "along which frames follow each other")
    info = dict(dask=dask, dtype=dtype, shape=shape, time_axis=t_ax, channel_axis=c_ax,
                n_frames=n_t, frame_shape=frame_shape)
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
            idx = np.asarray(indices[i:i + block])
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
                yield np.arange(t0, t1), chunk[t0 - lo:t1 - lo]
        else:
            for t0 in range(lo, hi, block):
                t1 = min(hi, t0 + block)
                yield np.arange(t0, t1), np.asarray(view[t0:t1].compute())


def _to_dtype(a, dtype):
    """Round and clip float32 ``a`` into integer ``dtype``; float dtypes give float32."""
    if dtype.kind in "ui":
        return to_int_dtype(a, dtype)
    return a.astype(np.float32, copy=False)


def _subtract_background_steps(stack, *, time_axis=0, channel_axis=None, burn_in=100,
                               background="all", foreground_image=None, data_range=None,
                               learning_rate=None, **params) -> Iterator:
    """Generator behind :func:`subtract_background`: yields (done, total) after each frame and
    returns the :class:`BackgroundResult` (``StopIteration.value``)."""
    p = _check_model_params(params)
    if background not in ("all", "last", None):
        raise InputError(f'background must be "all", "last" or None, got {background!r}')
    if foreground_image not in (None, "difference", "masked"):
        raise InputError(f'foreground_image must be None, "difference" or "masked", '
                         f"got {foreground_image!r}")
    if learning_rate is not None:
        lr = float(learning_rate)
        if not 0.0 <= lr < 1.0:
            raise InputError(f"learning_rate must be within [0, 1) or None, got {learning_rate}")
    view, info = _normalise_stack(stack, time_axis, channel_axis)
    n_t = info["n_frames"]
    if isinstance(burn_in, str):
        if burn_in != "all":
            raise InputError(f'burn_in must be "all", a number of frames or None, got {burn_in!r}')
        n_burn = n_t
    elif burn_in is None:
        n_burn = 0
    elif isinstance(burn_in, numbers.Integral) and not isinstance(burn_in, bool) and burn_in >= 0:
        n_burn = min(int(burn_in), n_t)
    else:
        raise InputError(f'burn_in must be "all", a number of frames >= 0 or None, got {burn_in!r}')

    frame_shape = info["frame_shape"]
    dtype = info["dtype"]
    if data_range is None:
        if dtype == np.uint8:
            data_range = 255.0
        else:
            picks = sorted({0, n_t // 2, n_t - 1})
            frames = [np.asarray(view[t].compute() if info["dask"] else view[t]) for t in picks]
            data_range = _default_data_range(frames)
    model = BackgroundModel(frame_shape, data_range=data_range, **p)
    grey = len(frame_shape) == 2
    out_dtype = dtype if dtype.kind in "ui" else np.dtype(np.float32)

    fg = np.empty((n_t,) + frame_shape[:2], np.uint8)
    bg_all = np.empty((n_t,) + frame_shape, out_dtype) if background == "all" else None
    fg_img = None
    if foreground_image == "difference":
        fg_img = np.empty((n_t,) + frame_shape, np.float32)
    elif foreground_image == "masked":
        fg_img = np.empty((n_t,) + frame_shape, out_dtype)
    need_bg = background == "all" or foreground_image == "difference"

    # frames per kernel launch: 16 (fewer launches; a row's state stays in cache through the
    # block), and at most 32 MiB for the float32 background buffer when there is one
    frame_f32 = int(np.prod(frame_shape)) * 4
    block = 16
    if need_bg:
        block = int(max(1, min(16, (32 * 2**20) // max(frame_f32, 1))))
    model._ensure_buffers(block)
    bg_buf = np.empty((block,) + frame_shape[:2] + (model._c,), np.float32) if need_bg else None

    if n_burn >= n_t:
        burn_idx = None                               # one full pass
    else:
        burn_idx = np.unique(np.linspace(0, n_t - 1, n_burn).round().astype(np.int64))
        n_burn = len(burn_idx)
    total = (n_burn if n_burn else 0) + n_t
    done = 0
    if n_burn:
        for ts, frames in _iter_blocks(view, info["dask"], block, burn_idx):
            data = model._check_block(frames, ts=ts, time_axis=time_axis)
            if learning_rate is None:
                # burn-in: every frame weighs the same (running averages, 1 / n), so a mode's
                # weight is the fraction of burn-in frames it explains
                k = model.n_frames + 1 + np.arange(len(ts))
                rates = 1.0 / np.minimum(k, p["history"])
            else:
                rates = model._rates(len(ts), learning_rate)
            # the burn-in's masks are not used: no shadow test
            model._step(data, rates, model._masks[:len(ts)], shadows=False)
            done += len(ts)
            yield done, total
    for ts, frames in _iter_blocks(view, info["dask"], block):
        nb = len(ts)
        t0, t1 = int(ts[0]), int(ts[-1]) + 1
        data = model._check_block(frames, ts=ts, time_axis=time_axis)
        bg = bg_buf[:nb] if need_bg else None
        model._step(data, model._rates(nb, learning_rate), model._masks[:nb], bg)
        model._postfilter(model._masks[:nb], fg[t0:t1])
        if bg_all is not None:
            bgv = bg[..., 0] if grey else bg
            bg_all[t0:t1] = _to_dtype(bgv, out_dtype)
        if foreground_image == "difference":
            fg_img[t0:t1] = np.asarray(frames, np.float32) - (bg[..., 0] if grey else bg)
        elif foreground_image == "masked":
            m = fg[t0:t1] == FOREGROUND
            fg_img[t0:t1] = np.where(m if grey else m[..., None], frames, 0).astype(out_dtype)
        done += nb
        yield done, total

    bg_out = bg_all
    if background == "last":
        bg_out = _to_dtype(model.background, out_dtype)
    used = dict(p, time_axis=info["time_axis"], channel_axis=info["channel_axis"],
                burn_in=burn_in, data_range=float(data_range), background=background,
                foreground_image=foreground_image, learning_rate=learning_rate)
    return BackgroundResult(foreground=fg, background=bg_out, foreground_image=fg_img,
                            model=model, params=used)


def subtract_background(stack, *, time_axis=0, channel_axis=None, burn_in=100,
                        background="all", foreground_image=None, data_range=None,
                        learning_rate=None, progress: Callable | None = None,
                        should_stop: Callable | None = None, **params) -> BackgroundResult:
    """Separate moving foreground from background in a stack of frames (MOG2).

    Parameters
    ----------
    stack : (T, Y, X) or (T, Y, X, C) array_like, numpy or dask
        Frames of any integer or float dtype. Streamed frame by frame (dask: one time-chunk at
        a time), so memory is the model plus the outputs. Never modified.
    time_axis : int, default 0
        Axis along which frames follow each other (it needs T >= 2).
    channel_axis : int, optional
        Axis holding channels. Default: the last axis of a 4D stack when it has 3 or 4 entries
        (RGB(A), as napari's rgb layers), no channels for a 3D stack.
    burn_in : int, "all" or None, default 100
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
        Default: 255 for uint8, otherwise ``max - min(0, min)`` over the first, middle and
        last frames.
    learning_rate : float, optional
        Fixed learning rate in [0, 1); default ``1 / min(2 n, history)``.
    progress : callable, optional
        Called as ``progress(done, total)`` after every frame (burn-in frames count).
    should_stop : callable, optional
        Called before every frame; when it returns True the run stops with
        :class:`InterruptedError` and nothing is returned.
    **params
        Model parameters of :class:`BackgroundModel` (``history``, ``var_threshold``,
        ``n_mixtures``, ``background_ratio``, ``var_threshold_gen``, ``var_init``,
        ``var_min``, ``var_max``, ``complexity_reduction_threshold``, ``detect_shadows``,
        ``shadow_threshold``, ``median_size``).

    Returns
    -------
    BackgroundResult
        ``foreground`` (T, Y, X) uint8 (0 background, 1 foreground, 2 shadow),
        ``background``, ``foreground_image``, the final ``model`` and the ``params`` used.
        Axes are time first and channels last, whatever the input layout.

    Raises
    ------
    napari_gmm.InputError
        (a ``ValueError``) for a 2D image or a 1-frame stack, an ambiguous or misplaced
        channel axis, frames thinner than 4 pixels (wrong time axis), NaN/inf in a frame, or
        parameters out of range (e.g. ``n_mixtures`` outside 1..16). Nothing is returned and
        the input is not modified.
    TypeError
        For an unknown parameter name (e.g. OpenCV's camelCase ``varThreshold``).
    InterruptedError
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
    gen = _subtract_background_steps(
        stack, time_axis=time_axis, channel_axis=channel_axis, burn_in=burn_in,
        background=background, foreground_image=foreground_image, data_range=data_range,
        learning_rate=learning_rate, **params)
    while True:
        if should_stop is not None and should_stop():
            gen.close()
            raise InterruptedError("background modelling was cancelled; nothing was returned")
        try:
            done, total = next(gen)
        except StopIteration as stop:
            return stop.value
        if progress is not None:
            progress(done, total)
