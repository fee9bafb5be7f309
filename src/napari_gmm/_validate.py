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
    """float16 (which Numba cannot compute with) as float32; every other dtype as it is."""
    a = np.asarray(a)
    return a.astype(np.float32) if a.dtype == np.float16 else a


def as_flat(a) -> np.ndarray:
    """A flat C-contiguous view of ``a`` (a copy only when ``a`` is not contiguous or float16)."""
    return np.ascontiguousarray(as_kernel_dtype(a)).reshape(-1)


def _describe(a) -> str:
    return f"shape {tuple(a.shape)}, dtype {a.dtype}"


def check_image(image, *, channel_axis=None):
    """Validate dtype, size and channel axis; return the array (numpy or dask) unmodified.

    NaN/inf content is checked later, by the compression pass, which counts them for free.
    """
    if not (hasattr(image, "dtype") and hasattr(image, "shape")):
        image = np.asarray(image)
    dt = np.dtype(image.dtype)
    if dt == bool:
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
        if (
            image.ndim == 3
            and image.shape[-1] in (3, 4)
            and dt == np.uint8
            and min(image.shape[:2]) >= 16
        ):
            raise InputError(
                f"the image ({_describe(image)}) looks like RGB(A): colour images are segmented in "
                "the colour mode, channel_axis=-1 (the widget does this for RGB layers). If it really "
                "is a grey volume with 3 or 4 planes in the last axis, move that axis first: "
                "np.moveaxis(image, -1, 0)"
            )
        return image
    ndim = image.ndim
    if not isinstance(channel_axis, (int, np.integer)) or not -ndim <= channel_axis < ndim:
        raise InputError(
            f"channel_axis={channel_axis!r} is not an axis of the image ({_describe(image)}): "
            f"use an integer in [{-ndim}, {ndim - 1}], e.g. -1 for RGB or 0 for (C, Y, X)"
        )
    if ndim < 2:
        raise InputError(f"a colour image needs pixels and a channel axis; got {_describe(image)}")
    nc = image.shape[channel_axis]
    if nc == 1:
        raise InputError(
            f"the channel axis {channel_axis} has a single channel ({_describe(image)}): that is a grey "
            "image. Use channel_axis=None (grey mode), or np.squeeze the axis"
        )
    if nc > MAX_CHANNELS:
        raise InputError(
            f"the channel axis {channel_axis} has {nc} entries ({_describe(image)}): colour and "
            f"multichannel mode supports 2 to {MAX_CHANNELS} channels. Is that the right axis? For RGB "
            "use -1, for (C, Y, X) stacks 0"
        )
    if nc == 4 and dt == np.uint8 and channel_axis % ndim == ndim - 1:
        import warnings

        warnings.warn(
            "the image has 4 channels on its last axis (RGBA?): all 4 are modelled. If the 4th is "
            "alpha, pass image[..., :3] (the napari widget drops alpha itself)",
            UserWarning, stacklevel=user_stacklevel(),
        )
    return image


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
