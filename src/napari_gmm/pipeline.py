"""The one pipeline of every mixture job: validate -> compress -> fit -> look up.

Compression and look-ups run on NumPy arrays here (through :mod:`napari_gmm.compress`) and on dask
arrays through :mod:`napari_gmm._dask`, chosen in one place (:func:`compress_image`,
:func:`label_image`, :func:`proba_image`, :func:`paint_image`); :func:`split` runs any of them once
per index of an axis, for NumPy and dask alike. The model enters only as per-sample functions
(:class:`SampleFns`), so this module does not depend on :mod:`napari_gmm.mixture`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import _dask
from ._kernels import _config
from ._validate import FitError, InputError, as_flat, check_image, is_dask, label_dtype, move_channels
from .compress import (
    Histogram,
    Kind,
    colour_lookup,
    compress_numpy,
    grey_grid,
    grey_index,
    grey_label_table,
    grey_lookup,
    histogram_from_whole_dtype,
    mask_flat,
    mean_table,
    paint_numpy,
    report,
    slices,
    valid_rows,
)

__all__ = ["histogram", "compress_image", "SampleFns", "label_image", "proba_image", "paint_image", "split", "Progress"]


# --------------------------------------------------------------------------------------------
# progress over the phases of a job


class Progress:
    """One ``progress(done, total)`` callback shared by the phases of a job.

    ``units`` lists each phase's size; :meth:`phase` returns the callback for phase i, which takes
    that phase's own (done, total) and reports the whole job's. A callback that raises stops the job
    (:class:`napari_gmm.Cancelled` is the documented way). ``Progress(None, ...)`` reports nothing.
    """

    def __init__(self, callback: Callable[[int, int], None] | None, units):
        if callback is not None and not callable(callback):
            raise InputError(f"progress must be a callable progress(done, total) or None, got {callback!r}")
        self.callback = callback
        self.units = [max(1, int(u)) for u in units]
        self.total = sum(self.units)

    def phase(self, i: int) -> Callable[[int, int], None] | None:
        if self.callback is None:
            return None
        start, size = sum(self.units[:i]), self.units[i]

        def report(done, total):
            frac = 1.0 if total <= 0 else min(1.0, done / total)
            self.callback(start + int(round(frac * size)), self.total)

        return report

    def done(self, i: int) -> None:
        """Phase i complete (also the cancellation point between phases)."""
        if self.callback is not None:
            self.callback(sum(self.units[: i + 1]), self.total)


# --------------------------------------------------------------------------------------------
# compression


def compress_image(image, *, channel_axis=None, mask=None, bins=None, progress=None) -> Histogram:
    """The :class:`~napari_gmm.compress.Histogram` of a validated NumPy or dask image
    (``progress(done, total)`` between slices of a big NumPy image)."""
    if is_dask(image):
        return _dask.histogram(image, channel_axis=channel_axis, mask=mask, bins=bins)
    return compress_numpy(image, channel_axis=channel_axis, mask=mask, bins=bins, progress=progress)


def lookup_histogram(image, *, channel_axis=None, mask=None, bins=None) -> Histogram:
    """The histogram a fitted model's look-ups (labels, posteriors, quantised image) of ``image``
    use. For a lazy (dask) grey image of an 8- or 16-bit integer dtype, a look-up table over the
    dtype's every value (at most 65,536 entries): no pass over the data, so labelling a large stack
    with a saved model reads it once; the labels are those of the image's own histogram, whose
    values are among the dtype's. Otherwise the image's histogram (:func:`compress_image`)."""
    dt = np.dtype(image.dtype)
    if is_dask(image) and channel_axis is None and bins is None and dt.kind in "ui" and dt.itemsize <= 2:
        return histogram_from_whole_dtype(np.ones(2 ** (8 * dt.itemsize), np.int64), dt)
    return compress_image(image, channel_axis=channel_axis, mask=mask, bins=bins)


def histogram(image, *, channel_axis=None, mask=None, bins=None) -> Histogram:
    """Compress an image into exact weighted samples (its histogram or unique colours).

    Parameters
    ----------
    image : array_like or dask array, shape (..., ) or with a channel axis
        Grey image of any dimensionality and dtype, or a multichannel image.
    channel_axis : int or None
        Axis holding colour channels (``-1`` for RGB); ``None`` for grey data.
    mask : array_like of bool, optional
        Same shape as the image's pixels (the image shape without the channel axis); only pixels
        where it is True are counted.
    bins : int, optional
        Float data only: number of bins over the finite range (grey, default 4096) or per channel
        (multichannel, default 64, used when the image has more than 2**20 pixels).

    Returns
    -------
    Histogram

    Examples
    --------
    >>> import numpy as np
    >>> from napari_gmm import histogram
    >>> h = histogram(np.array([[0, 0, 1], [5, 5, 5]], dtype=np.uint8))
    >>> h.values[:, 0], h.counts
    (array([0., 1., 5.]), array([2., 1., 3.]))
    """
    image = check_image(image, channel_axis=channel_axis)
    return compress_image(image, channel_axis=channel_axis, mask=mask, bins=bins)


# --------------------------------------------------------------------------------------------
# look-ups: per-sample results back onto the pixels


@dataclass
class SampleFns:
    """What the look-ups need of a model: per-sample labels and posteriors, and K.

    ``labels(X)`` gives the 0-based most probable component of every row of X (M, D);
    ``proba(X)`` the (M, K) posterior probabilities.
    """

    n_components: int
    labels: Callable[[np.ndarray], np.ndarray]
    proba: Callable[[np.ndarray], np.ndarray]


def label_image(fns: SampleFns, image, hist: Histogram, *, channel_axis=None, mask=None, progress=None):
    """Labels 1..K of every pixel (0 where masked, NaN or inf); lazy for dask input.

    NumPy images are labelled :data:`_config.LOOKUP_SLICE` pixels at a time, with ``progress(done,
    total)`` (and so a chance to cancel) between slices.
    """
    if is_dask(image):
        return _dask.labels(fns, image, hist, channel_axis=channel_axis, mask=mask)
    dt = label_dtype(fns.n_components)
    if channel_axis is None:
        a = as_flat(image)
        m = mask_flat(mask, image.shape)
        lut = grey_label_table(fns, hist)
        out = np.empty(a.size, dt)
        parts = slices(a.size, _config.LOOKUP_SLICE)
        for i, (s, e) in enumerate(parts):
            grey_lookup(a[s:e], m[s:e] if m.size else m, hist.spec, lut, out[s:e])
            report(progress, i + 1, len(parts))
        return out.reshape(image.shape)
    a, spatial = move_channels(image, channel_axis)
    m = mask_flat(mask, spatial)
    out = np.zeros(a.shape[0], dt)
    if hist.kind == Kind.COLOUR:
        lut = (fns.labels(hist.values) + 1).astype(dt)
        colour_lookup(a, m, hist, lut, out)
        report(progress, 1, 1)
        return out.reshape(spatial)
    # float or wide-integer colours: every pixel through the model, a slice at a time (bounded memory)
    parts = slices(a.shape[0], _config.LABEL_SLICE)
    for i, (s, e) in enumerate(parts):
        sub = a[s:e]
        valid = valid_rows(sub, m[s:e] if m.size else m)
        part = out[s:e]
        if valid.all():
            part[:] = fns.labels(sub) + 1
        else:
            part[valid] = fns.labels(sub[valid]) + 1
        report(progress, i + 1, len(parts))
    return out.reshape(spatial)


def proba_image(fns: SampleFns, image, hist: Histogram, *, channel_axis=None, mask=None, progress=None):
    """Posterior maps, float32 (K, *pixels), 0 where masked, NaN or inf; lazy for dask input."""
    if is_dask(image):
        return _dask.proba(fns, image, hist, channel_axis=channel_axis, mask=mask)
    K = fns.n_components
    if channel_axis is None:
        a = as_flat(image)
        m = mask_flat(mask, image.shape)
        table = np.zeros((grey_grid(hist).shape[0] + 1, K), np.float32)
        table[:-1] = fns.proba(grey_grid(hist))
        out = np.empty((K, a.size), np.float32)
        parts = slices(a.size, _config.LOOKUP_SLICE // max(1, K))
        for i, (s, e) in enumerate(parts):
            idx = grey_index(a[s:e], m[s:e] if m.size else m, hist.spec)
            for k in range(K):
                np.take(table[:, k], idx, out=out[k, s:e])
            report(progress, i + 1, len(parts))
        return out.reshape((K,) + image.shape)
    a, spatial = move_channels(image, channel_axis)
    valid = valid_rows(a, mask_flat(mask, spatial))
    out = np.zeros((K, a.shape[0]), np.float32)
    parts = slices(a.shape[0], _config.LABEL_SLICE)
    for i, (s, e) in enumerate(parts):
        v = valid[s:e]
        out[:, s:e][:, v] = fns.proba(a[s:e][v]).T
        report(progress, i + 1, len(parts))
    return out.reshape((K,) + tuple(spatial))


def paint_image(image, labels, means, *, channel_axis=None, progress=None):
    """The quantised image: each labelled pixel replaced by its component's mean (input dtype);
    lazy for dask input."""
    table = mean_table(means, image.dtype)
    if is_dask(image) or is_dask(labels):
        return _dask.paint(image, labels, table, channel_axis=channel_axis)
    return paint_numpy(image, labels, table, channel_axis, progress)


# --------------------------------------------------------------------------------------------
# one model per index of an axis


@dataclass
class SplitAxes:
    """Where the split axis and the channel axis sit: in the image, in one slice, among the pixels."""

    axis: int  # in the image
    channel_slice: int | None  # the channel axis inside one slice
    pixel_axis: int  # the split axis among the pixel axes (image axes without the channel axis)
    length: int


def split_axes(image, channel_axis, split_axis) -> SplitAxes:
    nd = image.ndim
    if isinstance(split_axis, bool) or not isinstance(split_axis, (int, np.integer)) or not -nd <= split_axis < nd:
        raise InputError(
            f"split_axis={split_axis!r} is not an axis of the image (ndim {nd}): use an integer "
            f"in [{-nd}, {nd - 1}], e.g. 0 for each time point of a (T, Y, X) stack"
        )
    ax = int(split_axis) % nd
    ch = None if channel_axis is None else channel_axis % nd
    if ch is not None and ax == ch:
        raise InputError("split_axis and channel_axis are the same axis: split over time/z, not channels")
    if image.shape[ax] < 1:
        raise InputError("split_axis has length 0")
    ch_slice = None if ch is None else (ch - 1 if ch > ax else ch)
    pix_ax = ax if ch is None or ax < ch else ax - 1
    return SplitAxes(ax, ch_slice, pix_ax, image.shape[ax])


def split(image, mask, axes: SplitAxes, fn: Callable, progress: Progress | None = None, *, stack_axis=None):
    """``fn(sub_image, sub_mask, i)`` for every index i of the split axis, outputs stacked back.

    ``fn`` returns (array, extra); arrays are stacked along the split axis among the pixel axes
    (or ``stack_axis``), NumPy into one preallocated array, dask with ``da.stack``; the extras are
    returned as a list. An InputError or FitError names the index it happened at.
    """
    ax = axes.axis
    pax = axes.pixel_axis if stack_axis is None else stack_axis
    if mask is not None:
        spatial = tuple(s for i, s in enumerate(image.shape) if axes.channel_slice is None or i != _full_channel(axes))
        if tuple(np.shape(mask)) != spatial:
            raise InputError(
                f"mask has shape {tuple(np.shape(mask))} but the image's pixels have shape {spatial}: give a "
                "mask with one entry per pixel"
            )
    outs, extras = [], []
    out = None
    for i in range(axes.length):
        sub = image[(slice(None),) * ax + (i,)]
        msub = None if mask is None else mask[(slice(None),) * axes.pixel_axis + (i,)]
        try:
            arr, extra = fn(sub, msub, i)
        except (InputError, FitError) as e:
            raise type(e)(f"index {i} of axis {ax}: {e}") from None
        extras.append(extra)
        if is_dask(arr):
            outs.append(arr)
            continue
        if out is None:
            shape = list(arr.shape)
            shape.insert(pax, axes.length)
            out = np.empty(shape, arr.dtype)
        out[(slice(None),) * pax + (i,)] = arr
        if progress is not None:
            progress.done(i)
    if outs:
        import dask.array as da

        return da.stack(outs, axis=pax), extras
    return out, extras


def _full_channel(axes: SplitAxes) -> int:
    """The channel axis in the full image, from its position inside a slice."""
    c = axes.channel_slice
    return c + 1 if c >= axes.axis else c
