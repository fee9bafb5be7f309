"""Input checks shared by the public functions: one place for the messages users read."""

from __future__ import annotations

import numpy as np

MAX_CHANNELS = 8


class InputError(ValueError):
    """Raised for input the functions cannot use; the message says what to do instead."""


class FitError(RuntimeError):
    """Raised when EM cannot continue (a component collapsed); the message says what to change."""


class Cancelled(InterruptedError):
    """A long job was cancelled: its ``progress`` callback raised this (the napari widgets' Cancel
    button does), or ``should_stop()`` returned True. Nothing partial is returned.

    A subclass of :class:`InterruptedError`, which ``subtract_background`` raised before."""


class ConvergenceWarning(UserWarning):
    """EM stopped at ``max_iter`` before the log-likelihood change fell below ``tol``."""


def user_stacklevel() -> int:
    """The ``stacklevel`` for ``warnings.warn`` that points at the first caller outside napari_gmm
    (the user's line), however deep inside the package the warning is raised."""
    import sys

    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_globals.get("__name__", "").startswith("napari_gmm"):
        frame, level = frame.f_back, level + 1
    return level


def is_dask(a) -> bool:
    return type(a).__module__.split(".")[0] == "dask"


def as_kernel_dtype(a) -> np.ndarray:
    """``a`` in a dtype the kernels compute with: native byte order (Numba types only native-endian
    arrays: a big-endian ``>f4`` or ``>u2`` image, e.g. from a FITS file or a raw big-endian TIFF,
    is converted once), float16 (which Numba cannot compute with) as float32. Native arrays of every
    other dtype are returned as they are (no copy)."""
    a = np.asarray(a)
    dt = a.dtype
    if dt == np.float16 or (dt.kind == "f" and dt.itemsize == 2):
        return a.astype(np.float32)
    if not dt.isnative:
        return a.astype(dt.newbyteorder("="))
    return a


#: added to every uint64 value to get the int64 the grey kernels see (see :func:`as_flat`)
UINT64_SHIFT = 2**63


def as_flat(a) -> np.ndarray:
    """A flat C-contiguous array of ``a`` for the grey kernels (a copy only when ``a`` is not
    contiguous, not native-endian, float16 or uint64).

    uint64 pixels are given as int64 ``v - 2**63`` (the top bit flipped): the grey kernels count in
    int64, where values at or above 2**63 would wrap to negative, and this map keeps the order over
    the whole uint64 range. :func:`kernel_to_values` maps kernel values back.
    """
    a = np.ascontiguousarray(as_kernel_dtype(a)).reshape(-1)
    if a.dtype == np.uint64:
        return (a ^ np.uint64(UINT64_SHIFT)).view(np.int64)
    return a


def kernel_to_values(k, dtype) -> np.ndarray:
    """Kernel-space integers (int64, from :func:`as_flat`) of an image of ``dtype`` as float64
    values, each correctly rounded from its exact integer (a uint64's ``k + 2**63``)."""
    k = np.asarray(k, dtype=np.int64)
    if np.dtype(dtype) == np.uint64:
        return (k.view(np.uint64) ^ np.uint64(UINT64_SHIFT)).astype(np.float64)
    return k.astype(np.float64)


def kernel_to_int(k: int, dtype) -> int:
    """One kernel-space integer of an image of ``dtype`` as the exact Python int it stands for."""
    return int(k) + UINT64_SHIFT if np.dtype(dtype) == np.uint64 else int(k)


def to_int_dtype(values, dtype) -> np.ndarray:
    """Float ``values`` rounded and clipped into the integer ``dtype`` without wrapping and without
    warnings (NaN gives 0).

    ``np.clip(x, info.min, info.max).astype(dtype)`` is not enough: the float nearest to the top
    of a 32- or 64-bit dtype (4294967295 in float32, 2**63 - 1 in float64) rounds up past it, and
    the cast then wraps (a uint32 scene near 4.29e9 became 0, an int64 one at its maximum became
    int64's minimum). Values at or beyond the float nearest to an end give that end exactly.
    """
    dt = np.dtype(dtype)
    info = np.iinfo(dt)
    x = np.rint(np.asarray(values, dtype=np.float64))
    hi, lo = float(info.max), float(info.min)
    top = x >= hi
    bottom = x <= lo
    safe = np.where(np.isnan(x) | top | bottom, 0.0, x)
    out = safe.astype(dt)
    out[top] = info.max
    out[bottom] = info.min
    return out


def native_array(a) -> np.ndarray:
    """A NumPy array in native byte order, float16 as float32 (see :func:`as_kernel_dtype`); for
    the MOG2 kernels of :mod:`napari_gmm.background`. dask arrays stay lazy (converted per block)."""
    if is_dask(a):
        dt = np.dtype(a.dtype)
        if dt == np.float16:
            return a.astype(np.float32)
        return a.astype(dt.newbyteorder("=")) if not dt.isnative else a
    return as_kernel_dtype(a)


def _describe(a) -> str:
    return f"shape {tuple(a.shape)}, dtype {a.dtype}"


def check_image(image, *, channel_axis=None):
    """Validate dtype, size and channel axis; return the array (numpy or dask) unmodified.

    NaN/inf content is checked later, by the compression pass, which counts them for free.
    """
    if not (hasattr(image, "dtype") and hasattr(image, "shape")):
        try:
            image = np.asarray(image)
        except (ValueError, TypeError) as e:
            raise InputError(
                f"the image is not an array ({type(image).__name__}: {e}): give a NumPy (or dask) array "
                "of intensities, e.g. np.asarray(rows) with rows of equal length"
            ) from None
    dt = np.dtype(image.dtype)
    if dt.kind == "b":
        raise InputError(
            f"the image is boolean ({_describe(image)}): it is already a segmentation. Gaussian "
            "mixtures need intensities: pass the original grey or colour image (or image.astype(np.uint8) "
            "if you really want to model 0/1 values)"
        )
    if dt.kind not in "uif":
        raise InputError(
            f"unsupported image dtype {dt}: give integer or float intensities (for complex data take "
            "np.abs(image) first)"
        )
    if image.size == 0:
        raise InputError(f"the image is empty ({_describe(image)}): there are no pixels to model")
    if channel_axis is None:
        if image.ndim == 3 and image.shape[-1] in (3, 4) and dt == np.uint8 and min(image.shape[:2]) >= 16:
            raise InputError(
                f"the image ({_describe(image)}) looks like RGB(A): colour images are segmented in "
                "the colour mode, channel_axis=-1 (the widget does this for RGB layers). If it really "
                "is a grey volume with 3 or 4 planes in the last axis, move that axis first: "
                "np.moveaxis(image, -1, 0)"
            )
        return image
    ndim = image.ndim
    if (
        isinstance(channel_axis, bool)
        or not isinstance(channel_axis, (int, np.integer))
        or not -ndim <= channel_axis < ndim
    ):
        raise InputError(
            f"channel_axis={channel_axis!r} is not an axis of the image ({_describe(image)}): "
            f"use an integer in [{-ndim}, {ndim - 1}], e.g. -1 for RGB or 0 for (C, Y, X), or None for a "
            "grey image"
        )
    if ndim < 2:
        raise InputError(
            f"a colour image needs pixels and a channel axis; got {_describe(image)}: for a "
            "grey image pass channel_axis=None"
        )
    nc = image.shape[channel_axis]
    if nc == 1:
        raise InputError(
            f"the channel axis {channel_axis} has a single channel ({_describe(image)}): that is a grey "
            "image. Use channel_axis=None (grey mode), or np.squeeze the axis"
        )
    if nc > MAX_CHANNELS:
        raise InputError(
            f"the channel axis {channel_axis} has {nc} entries ({_describe(image)}): colour and "
            f"multichannel mode supports 2 to {MAX_CHANNELS} channels. For a grey image pass "
            "channel_axis=None (quantize's default, channel_axis=-1, is for RGB images); for RGB use -1, "
            "for (C, Y, X) stacks 0"
        )
    if nc == 4 and dt == np.uint8 and channel_axis % ndim == ndim - 1:
        import warnings

        warnings.warn(
            "the image has 4 channels on its last axis (RGBA?): all 4 are modelled. If the 4th is "
            "alpha, pass image[..., :3] (the napari widget drops alpha itself)",
            UserWarning,
            stacklevel=user_stacklevel(),
        )
    return image


def check_finite_pixels(n_pixels, n_nan, n_inf):
    """The one rule for non-finite pixels of a fit (per-pixel and spatial models): InputError when
    no finite, unmasked pixel is left; a UserWarning when infinite values were left out (they get
    label 0). NaN is the usual "no data" marker and is left out silently."""
    if n_pixels == 0:
        if n_nan or n_inf:
            raise InputError(
                f"the image has no finite pixels to model ({n_nan} NaN, {n_inf} inf): "
                "check the data, or replace non-finite values (np.nan_to_num)"
            )
        raise InputError("the mask excludes every pixel: nothing is left to model; check the mask")
    if n_inf:
        import warnings

        warnings.warn(
            f"{n_inf} infinite pixel value(s) were left out of the fit and get label 0; replace "
            "them (np.nan_to_num) if they are real data",
            UserWarning,
            stacklevel=user_stacklevel(),
        )


def move_channels(image, channel_axis):
    """(N, D) C-contiguous pixels of a multichannel image, and the spatial shape."""
    a = np.moveaxis(as_kernel_dtype(image), channel_axis, -1)
    spatial = a.shape[:-1]
    return np.ascontiguousarray(a).reshape(-1, a.shape[-1]), spatial


def check_k(n_components, n_distinct, hist=None):
    if isinstance(n_components, bool) or not isinstance(n_components, (int, np.integer)):
        raise InputError(f"n_components must be a whole number >= 1, got {n_components!r}")
    if n_components < 1:
        raise InputError(f"n_components must be at least 1, got {n_components}")
    if n_components > 65535:
        raise InputError(f"n_components={n_components} is more than the 65535 labels supported")
    if n_components > n_distinct:
        what = "distinct values" if hist is None or hist.n_features == 1 else "distinct colours"
        if hist is not None and hist.kind in ("binned", "grid"):
            what = "non-empty bins"
        raise InputError(
            f"n_components={n_components} is more than the {n_distinct} {what} in the image: choose "
            f"n_components <= {n_distinct}" + (" (or more bins)" if what == "non-empty bins" else "")
        )


def label_dtype(n_components):
    return np.uint8 if n_components < 256 else np.uint16


#: most bins of a float grey histogram (two int64/float64 tables of this size per thread)
MAX_GREY_BINS = 2**24
#: most bins per channel of a float multichannel grid
MAX_GRID_BINS = 2**16


def check_bins(bins, largest=MAX_GREY_BINS):
    """``bins`` as an int in [2, largest], or InputError naming it and the accepted values."""
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)):
        raise InputError(
            f"bins must be a whole number of bins (2 to {largest}) or None (the default: 4096 for float grey "
            f"data, 64 per channel for large float colour images), got {bins!r}"
        )
    if not 2 <= bins <= largest:
        raise InputError(
            f"bins={bins} is out of range: use 2 to {largest} bins (more bins than that cost "
            f"memory without resolving anything more), or None for the default"
        )
    return int(bins)


def check_random_state(random_state):
    """None, a non-negative int or a numpy Generator; else InputError naming it."""
    if random_state is None or isinstance(random_state, np.random.Generator):
        return
    if isinstance(random_state, bool) or not isinstance(random_state, (int, np.integer)):
        raise InputError(
            f"random_state must be None, a whole number >= 0 (a seed) or a numpy Generator "
            f"(np.random.default_rng(seed)), got {random_state!r}"
        )
    if random_state < 0:
        raise InputError(f"random_state={random_state} is negative: seeds are whole numbers >= 0 (e.g. random_state=0)")


def check_progress(progress):
    """None or a callable ``progress(done, total)``; else InputError naming it."""
    if progress is not None and not callable(progress):
        raise InputError(
            f"progress must be a callable progress(done, total) or None (e.g. a function, or a "
            f"lambda calling a progress bar's update), got {progress!r}"
        )


#: largest spread of the values EM can handle: variances (squares of differences, summed over
#: the pixels) stay far from float64's overflow at 1.8e308
MAX_FIT_SPAN = 1e150
#: smallest spread of the values EM can handle: variances stay normal float64 numbers
MIN_FIT_SPAN = 1e-150


def check_fit_range(values, low, high, kind):
    """InputError when float64 EM cannot represent the data: a spread too wide (its variance
    overflows), too narrow (its variance underflows: denormal values), or integers too close
    together for float64 at their magnitude (e.g. near 2**64). ``values`` (M, D) are the samples,
    ``low``/``high`` (D,) the per-feature range; called before a fit with at least 2 samples."""
    lo = np.asarray(low, dtype=np.float64)
    hi = np.asarray(high, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        span = np.max(hi - lo)
    mag = float(np.max(np.maximum(np.abs(lo), np.abs(hi))))
    if not np.isfinite(span) or span > MAX_FIT_SPAN:
        raise InputError(
            f"the values span {float(lo.min()):.4g} .. {float(hi.max()):.4g}: too wide for float64 EM "
            f"(their variance would overflow; the limit is a spread of {MAX_FIT_SPAN:g}). Rescale the "
            "image first, e.g. image / np.abs(image).max(), or clip outliers"
        )
    if 0 < span < MIN_FIT_SPAN:
        raise InputError(
            f"the values differ by only {span:.3g} (around {mag:.4g}): too little for float64 EM to "
            "resolve (their variance underflows or drowns in rounding). Subtract an offset and rescale "
            "first, e.g. (image - image.min()) / (image.max() - image.min())"
        )
    v = np.asarray(values, dtype=np.float64)
    if v.shape[0] >= 2 and str(kind).startswith("integer") and mag >= 2.0**53:
        distinct = (
            np.count_nonzero(np.diff(v[:, 0])) + 1
            if v.shape[1] == 1  # grey values come sorted
            else np.unique(v, axis=0).shape[0]
        )
        if distinct < v.shape[0]:
            raise InputError(
                f"the image's integer values (around {mag:.4g}) lie closer together than float64 "
                "can tell apart at that magnitude: subtract an offset first, e.g. "
                "(image - image.min()).astype(np.int64)"
            )


def snake_case(name: str) -> str:
    """OpenCV's camelCase parameter names in snake_case: ``varThreshold`` -> ``var_threshold``,
    ``nmixtures`` stays, ``detectShadows`` -> ``detect_shadows``."""
    import re

    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def check_param_names(params, valid, what="parameter"):
    """TypeError (Python's error for an unexpected keyword) naming every unknown name in
    ``params``, with the snake_case name meant where one is known (OpenCV's camelCase MOG2 names:
    ``varThreshold`` -> ``var_threshold``, ``nMixtures``/``nmixtures`` -> ``n_mixtures``)."""
    valid = list(valid)
    unknown = [k for k in params if k not in valid]
    if not unknown:
        return
    aliases = {
        "nmixtures": "n_mixtures",
        "backgroundratio": "background_ratio",
        "complexityreductionthreshold": "complexity_reduction_threshold",
    }
    hints = []
    for k in unknown:
        guess = snake_case(k)
        guess = aliases.get(guess.replace("_", ""), guess)
        if guess in valid:
            hints.append(f"{k!r} -> {guess!r}")
    msg = f"unknown {what}(s) {sorted(unknown)}; valid ones are {sorted(valid)}"
    if hints:
        msg += ". Parameter names are OpenCV's in snake_case: " + ", ".join(hints)
    raise TypeError(msg)


def native_stack(stack):
    """A frame stack the MOG2 kernels can read: native byte order, float16 as float32 (numpy: one
    converted copy, only when needed; dask: converted lazily, block by block). Anything else
    (lists, other dtypes) is returned for :func:`napari_gmm.background` to check."""
    if is_dask(stack):
        return native_array(stack)
    if hasattr(stack, "dtype") and hasattr(stack, "shape"):
        dt = np.dtype(stack.dtype)
        if dt.kind in "uif" and (not dt.isnative or dt.itemsize == 2 and dt.kind == "f"):
            return as_kernel_dtype(stack)
    return stack


def float32_int_range(dtype):
    """(lo, hi): the float32 values nearest to the ends of the integer ``dtype`` that lie inside it,
    for kernels that clip a float32 into the dtype before storing (float32(4294967295) and
    float32(2**63 - 1) round up past the dtype's top, and storing them wraps)."""
    info = np.iinfo(np.dtype(dtype))
    lo, hi = np.float32(info.min), np.float32(info.max)
    if int(hi) > info.max:
        hi = np.nextafter(hi, np.float32(0))
    if int(lo) < info.min:
        lo = np.nextafter(lo, np.float32(0))
    return float(lo), float(hi)
