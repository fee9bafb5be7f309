"""Dask support: histograms chunk by chunk, merged; labels lazily with ``map_blocks``.

Nothing here materialises the whole array: a pass computes the per-chunk ranges, a second pass the
per-chunk histograms (merged exactly, since the binning is fixed by the global range), and the labels
are a lazy ``map_blocks`` of the look-up table. Only grey data (``channel_axis=None``) is chunked;
multichannel dask arrays are brought into memory (with a message in the docs).
"""

from __future__ import annotations

import importlib

import numpy as np

from ._validate import InputError, as_flat, label_dtype

_h = importlib.import_module(".histogram", __package__)


def _mask_blocks(image, mask):
    import dask.array as da

    if mask is None:
        return [None] * image.npartitions
    if tuple(np.shape(mask)) != tuple(image.shape):
        raise InputError(
            f"mask has shape {tuple(np.shape(mask))} but the image's pixels have shape {tuple(image.shape)}: "
            "give a mask with one entry per pixel"
        )
    m = da.asarray(mask).rechunk(image.chunks)
    return list(m.to_delayed().ravel())


def _flat_mask(m):
    if m is None:
        return np.zeros(0, np.uint8)
    return np.ascontiguousarray(np.asarray(m) != 0).reshape(-1).view(np.uint8)


def _block_range(b, m):
    return _h.grey_range(as_flat(b), _flat_mask(m))


def _block_counts(b, m, spec):
    return _h.grey_counts(as_flat(b), _flat_mask(m), spec)


def _block_labels(b, m=None, *, spec, lut):
    out = np.empty(b.size, lut.dtype)
    _h.grey_lookup(as_flat(b), _flat_mask(m), spec, lut, out)
    return out.reshape(b.shape)


def dask_histogram(image, *, mask=None, bins=None, channel_axis=None):
    import dask

    if channel_axis is not None:
        return _h.compress(image.compute(), channel_axis=channel_axis,
                            mask=None if mask is None else np.asarray(mask), bins=bins)
    blocks = list(image.to_delayed().ravel())
    mblocks = _mask_blocks(image, mask)
    rngs = dask.compute(*[dask.delayed(_block_range)(b, m) for b, m in zip(blocks, mblocks)])
    rng = _h.merge_ranges(rngs)
    if rng[2] == 0:
        return _h.empty_grey(rng, image.dtype)
    spec = _h.grey_spec(np.dtype(image.dtype), rng[0], rng[1], bins)
    parts = dask.compute(*[dask.delayed(_block_counts)(b, m, spec) for b, m in zip(blocks, mblocks)])
    return _h.grey_histogram(_h.merge_counts(list(parts), spec), spec, rng, image.dtype)


def _lazy_labels(model, image, hist, mask):
    import dask.array as da

    dt = label_dtype(model.n_components)
    lut = (model._sample_labels(_h.grey_grid(hist)) + 1).astype(dt)
    if mask is None:
        return image.map_blocks(_block_labels, spec=hist.spec, lut=lut, dtype=dt)
    m = da.asarray(mask).rechunk(image.chunks)
    return da.map_blocks(_block_labels, image, m, spec=hist.spec, lut=lut, dtype=dt)


def dask_predict(model, image, *, channel_axis=None, mask=None, bins=None):
    if channel_axis is not None:
        return model.predict(image.compute(), channel_axis=channel_axis, mask=mask, bins=bins)
    hist = dask_histogram(image, mask=mask, bins=bins)
    return _lazy_labels(model, image, hist, mask)


def dask_segment(image, n_components, channel_axis, mask, fit_kw, split_axis, progress):
    from .mixture import _slice_progress, _split_axis, fit_hist, segment

    if channel_axis is not None:
        return segment(image.compute(), n_components, channel_axis=channel_axis,
                       mask=None if mask is None else np.asarray(mask), split_axis=split_axis,
                       return_model=True, progress=progress, **fit_kw)
    kw = {k: v for k, v in fit_kw.items() if k != "bins"}
    bins = fit_kw.get("bins")
    if split_axis is None:
        hist = dask_histogram(image, mask=mask, bins=bins)
        model = fit_hist(hist, n_components, extra_params={"bins": bins}, callback=progress, **kw)
        return _lazy_labels(model, image, hist, mask), model
    import dask.array as da

    ax = _split_axis(image, None, split_axis)
    if mask is not None and tuple(np.shape(mask)) != tuple(image.shape):
        raise InputError(
            f"mask has shape {tuple(np.shape(mask))} but the image has shape {tuple(image.shape)}"
        )
    n = image.shape[ax]
    models, parts = [], []
    for i in range(n):
        sub = image[(slice(None),) * ax + (i,)]
        msub = None if mask is None else da.asarray(mask)[(slice(None),) * ax + (i,)]
        hist = dask_histogram(sub, mask=msub, bins=bins)
        try:
            model = fit_hist(hist, n_components, extra_params={"bins": bins, "split_axis": ax, "index": i},
                             callback=_slice_progress(progress, i, n), **kw)
        except ValueError as e:
            raise type(e)(f"index {i} of axis {ax}: {e}") from None
        models.append(model)
        parts.append(_lazy_labels(model, sub, hist, msub))
    return da.stack(parts, axis=ax), models
