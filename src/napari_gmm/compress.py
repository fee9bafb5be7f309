"""Exact compression of NumPy images into weighted samples, and the look-up back onto the pixels.

EM never sees pixels: it sees the distinct values (or colours, or bins) with their counts. This module
turns an image into those weighted samples (a :class:`Histogram`) and maps per-sample results (labels,
posteriors) back onto the pixels.

=====================  ==========================================  ==============================
data                   compression                                 exact?
=====================  ==========================================  ==============================
integer grey           histogram over [min, max] (``kind="integer"``) exact
                       (unique values when the range exceeds 2**22)
float grey             ``bins`` equal bins over the finite range,  binned; each bin's sample is
                       default 4096 (``kind="binned"``)             the mean of its pixels
integer multichannel   unique colours with counts (``"colour"``)    exact
                       (over 24 packed bits, e.g. 16-bit channels,
                       and over 2**20 pixels: as float)
float multichannel     every pixel when N <= 2**20 (``"pixels"``),  exact / binned (labels are
                       else a ``bins``-per-channel grid, default 64 then computed per pixel)
                       (``"grid"``), each cell's mean colour
=====================  ==========================================  ==============================
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np
from numba import get_num_threads as _nt

from ._kernels import _config
from ._kernels import hist as _k
from ._validate import (
    MAX_GRID_BINS,
    InputError,
    as_flat,
    check_bins,
    kernel_to_values,
    label_dtype,
    move_channels,
    to_int_dtype,
)

__all__ = ["Histogram", "Kind", "Binning", "compress_numpy"]


class Kind(enum.StrEnum):
    """How an image was compressed (a str: ``hist.kind == "integer"`` works)."""

    INTEGER = "integer"
    INTEGER_SPARSE = "integer-sparse"
    BINNED = "binned"
    COLOUR = "colour"
    PIXELS = "pixels"
    GRID = "grid"


@dataclass
class Binning:
    """How pixels map to samples (and so how a per-sample table maps back onto pixels).

    Grey: ``INTEGER`` levels vmin .. vmin + nbins - 1 (in the kernels' integers: a uint64's
    ``v - 2**63``, see :func:`napari_gmm._validate.as_flat`); ``INTEGER_SPARSE`` the sorted ``keys``;
    ``BINNED`` nbins bins of ``width`` from ``lo``. Colour: packed keys (``mins``, ``shifts``,
    ``bits``) of the unique colours in ``keys``. ``GRID``: nbins cells per channel.
    """

    kind: Kind
    vmin: int = 0
    nbins: int = 0
    lo: float = 0.0
    width: float = 1.0
    keys: np.ndarray | None = None
    mins: np.ndarray | None = None
    shifts: np.ndarray | None = None
    bits: int = 0

    @property
    def inv_width(self) -> float:
        return 1.0 / self.width


@dataclass
class Histogram:
    """Weighted samples that stand for the pixels of an image exactly (or binned, for floats).

    Attributes
    ----------
    values : ndarray, shape (M, D), float64
        The sample values: grey levels, unique colours, or bin means. Only non-empty entries.
    counts : ndarray, shape (M,), float64
        Number of pixels of each sample.
    kind : Kind (a str)
        ``"integer"``, ``"integer-sparse"``, ``"binned"``, ``"colour"``, ``"pixels"`` or ``"grid"``.
    bin_width : ndarray, shape (D,)
        Quantisation step per feature: 1 for integer data, the bin width for binned data, 0 for
        ``"pixels"``.
    low, high : ndarray, shape (D,)
        Smallest and largest counted value per feature.
    n_pixels : int
        Pixels counted (inside the mask, finite).
    n_nan, n_inf : int
        Pixels left out because they were NaN or infinite.
    dtype : numpy.dtype
        Data type of the image.
    """

    values: np.ndarray
    counts: np.ndarray
    kind: Kind
    bin_width: np.ndarray
    low: np.ndarray
    high: np.ndarray
    n_pixels: int
    n_nan: int = 0
    n_inf: int = 0
    dtype: np.dtype = np.dtype(np.float64)
    spec: Binning = field(default_factory=lambda: Binning(Kind.PIXELS), repr=False)

    @property
    def n_features(self) -> int:
        return self.values.shape[1]

    @property
    def n_distinct(self) -> int:
        """Number of distinct (non-empty) samples."""
        return self.values.shape[0]

    @property
    def value_step(self) -> float:
        """The data's own quantisation step of a grey histogram (:func:`value_step`); multichannel
        data: the largest ``bin_width``."""
        if self.n_features != 1:
            return float(np.max(self.bin_width))
        return value_step(self.values[:, 0], self.counts, float(self.bin_width[0]))

    def density(self):
        """Grey histograms as a density on a regular grid, for plots.

        Returns
        -------
        centers, density, width : ndarray, ndarray, float
            Bin centres, counts / (n_pixels * width) and the bin width. Integer data use one bin per
            grey level (coarsened to at most 1024 bins for wide ranges).
        """
        if self.n_features != 1:
            raise InputError("density() is for grey (one-feature) histograms; use values/counts")
        lo, hi = float(self.low[0]), float(self.high[0])
        if self.kind == "binned":
            w = float(self.bin_width[0])
            nb = int(self.spec.nbins)
            centers = self.spec.lo + (np.arange(nb) + 0.5) * w
            dens = np.zeros(nb)
            idx = np.minimum(((self.values[:, 0] - self.spec.lo) / w).astype(np.int64), nb - 1)
            np.add.at(dens, idx, self.counts)
        else:
            span = hi - lo + 1
            step = max(1, int(np.ceil(span / 1024)))
            nb = int(np.ceil(span / step))
            idx = ((self.values[:, 0] - lo) // step).astype(np.int64)
            dens = np.bincount(idx, weights=self.counts, minlength=nb).astype(np.float64)
            w = float(step)
            centers = lo + (np.arange(nb) + 0.5) * step - 0.5
        return centers, dens / (self.n_pixels * w), w


def value_step(values, counts, bin_width=0.0) -> float:
    """The step between the grey values an image actually takes, at least ``bin_width``.

    Integer images often use only a lattice of their dtype's values: an 8-bit image saved as 16-bit
    (multiples of 256 or 257), a contrast stretch (levels 655 or 656 apart), a 12-bit camera shifted
    into the high bits (multiples of 16), an 8-bit image divided by 255 into floats. Every pixel then
    stands for a whole step, not for one grey level, and a mixture measured in grey levels would fit
    the empty gaps between the occupied levels as structure (narrow components on single levels).

    The step is the smallest gap between neighbouring occupied levels once the least populated
    levels that together hold at most :data:`_config.VALUE_STEP_IGNORE` of the pixels are left out
    (a few stray off-lattice values, e.g. hot pixels, do not decide it), and never below
    ``bin_width`` (1 for integer data, the bin width for binned floats). On ordinary data the
    occupied levels are dense and the answer is ``bin_width``; so it is for data with fewer than
    :data:`_config.VALUE_STEP_MIN_LEVELS` distinct levels (a few exact values, such as a label-like
    or synthetic image, whose components are the values themselves).

    Parameters
    ----------
    values : ndarray, shape (M,)
        Occupied grey levels (sample values), ascending.
    counts : ndarray, shape (M,)
        Pixels per level.
    bin_width : float
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    c = np.asarray(counts, dtype=np.float64).reshape(-1)
    if v.size < 3:
        return float(bin_width) if bin_width > 0 else 1.0
    if bin_width > 0:  # ordinary data, without a sort: levels one bin apart hold more than strays
        close = np.diff(v) <= 1.5 * bin_width
        paired = np.zeros(v.size, bool)
        paired[:-1] |= close
        paired[1:] |= close
        if c[paired].sum() > _config.VALUE_STEP_IGNORE * c.sum():
            return float(bin_width)
    order = np.argsort(c, kind="stable")
    drop = np.cumsum(c[order]) <= _config.VALUE_STEP_IGNORE * c.sum()
    keep = np.ones(v.size, bool)
    keep[order[drop]] = False
    kv = v[keep]
    if kv.size < _config.VALUE_STEP_MIN_LEVELS:  # a few distinct values (labels, a synthetic image): no lattice
        return float(bin_width) if bin_width > 0 else 1.0
    gap = float(np.min(np.diff(kv)))
    return max(gap, float(bin_width)) if bin_width > 0 else max(gap, 0.0) or 1.0


def mask_flat(mask, spatial_shape):
    """The mask as a flat uint8 view (empty for no mask), or InputError for a wrong shape."""
    if mask is None:
        return np.zeros(0, np.uint8)
    mask = np.asarray(mask)
    if mask.shape != tuple(spatial_shape):
        raise InputError(
            f"mask has shape {mask.shape} but the image's pixels have shape {tuple(spatial_shape)}: "
            "give a mask with one entry per pixel (True/nonzero = use the pixel)"
        )
    if mask.dtype == bool:
        return np.ascontiguousarray(mask).reshape(-1).view(np.uint8)
    if mask.dtype.kind not in "uif":
        raise InputError(
            f"mask has dtype {mask.dtype}: give a boolean mask (True/nonzero = use the pixel), e.g. "
            "labels > 0 or np.asarray(mask, bool)"
        )
    return np.ascontiguousarray(mask != 0).reshape(-1).view(np.uint8)


def _kern(name, n):
    """The parallel kernel ``name``, or its serial twin for fewer than _config.SERIAL_BELOW pixels."""
    return getattr(_k, name if n >= _config.SERIAL_BELOW else name + "_serial")


# --------------------------------------------------------------------------------------------
# grey: range -> counts -> lookup, block-wise so that dask chunks can be merged


def grey_range(a, m):
    """(low, high, n_counted, n_nan, n_inf) of one flat block."""
    if a.dtype.kind == "f":
        lo, hi, nf, nn, ni = _kern("float_range", a.size)(a, m, _nt())
        return float(lo), float(hi), int(nf), int(nn), int(ni)
    lo, hi, n = _kern("int_range", a.size)(a, m, _nt())
    return int(lo), int(hi), int(n), 0, 0


def merge_ranges(parts):
    lo = min(p[0] for p in parts)
    hi = max(p[1] for p in parts)
    return lo, hi, sum(p[2] for p in parts), sum(p[3] for p in parts), sum(p[4] for p in parts)


def empty_grey(rng, dtype):
    """The histogram of an image with no counted pixel (all masked, NaN or inf)."""
    return Histogram(
        np.zeros((0, 1)),
        np.zeros(0),
        Kind.INTEGER,
        np.ones(1),
        np.full(1, np.nan),
        np.full(1, np.nan),
        n_pixels=0,
        n_nan=int(rng[3]),
        n_inf=int(rng[4]),
        dtype=np.dtype(dtype),
        spec=Binning(Kind.INTEGER),
    )


def grey_spec(dtype, lo, hi, bins):
    """How to bin grey data of this dtype and range."""
    if dtype.kind in "ui":
        span = int(hi) - int(lo) + 1
        if bins is not None:
            raise InputError(
                "bins is for float images; integer images are histogrammed exactly, one bin per "
                "grey level: leave bins=None"
            )
        if span <= _config.MAX_DENSE_RANGE:
            return Binning(Kind.INTEGER, vmin=int(lo), nbins=span)
        return Binning(Kind.INTEGER_SPARSE, vmin=int(lo), nbins=span)
    nb = _config.DEFAULT_FLOAT_BINS if bins is None else check_bins(bins)
    lo, hi = float(lo), float(hi)
    if hi == lo:
        return Binning(Kind.BINNED, lo=lo, nbins=nb, width=1.0)
    check_float_span(lo, hi, nb)
    return Binning(Kind.BINNED, lo=lo, nbins=nb, width=(hi - lo) / nb)


def check_float_span(lo, hi, nbins):
    """InputError when float values from ``lo`` to ``hi`` cannot be binned in float64: their
    difference overflows (e.g. -1.7e308 .. 1.7e308) or a bin's width is not a normal number
    (values all within ~1e-300, e.g. denormals), so that the binning cannot tell them apart. A
    constant image (lo == hi) is not an error here (its fit says it is constant)."""
    span = hi - lo
    if not np.isfinite(span):
        raise InputError(
            f"the values span {lo:.4g} .. {hi:.4g}, a range too wide to represent in float64 (it "
            "overflows): rescale the image first, e.g. image / np.abs(image).max(), or clip outliers"
        )
    width = span / nbins
    if not width >= np.finfo(np.float64).tiny or not np.isfinite(1.0 / width):
        raise InputError(
            f"the values span only {span:.3g} ({lo:.4g} .. {hi:.4g}): too little to bin in float64 (not "
            "constant, but denormal-sized differences). Rescale the image first, e.g. "
            "(image - image.min()) / (image.max() - image.min())"
        )


def _small_int(a):
    """8- or 16-bit integer pixels: their unsigned view (signed ones by bit pattern), else None.
    These are counted and looked up in tables over the whole dtype (at most 65536 entries)."""
    if a.dtype.kind in "ui" and a.dtype.itemsize <= 2:
        return a.view(np.dtype(f"u{a.dtype.itemsize}"))
    return None


def _patterns(spec, dtype):
    """Unsigned bit patterns of the grey levels vmin .. vmin + nbins - 1 of an 8/16-bit dtype."""
    return (np.arange(spec.nbins) + spec.vmin).astype(dtype).view(np.dtype(f"u{dtype.itemsize}"))


def grey_counts(a, m, spec):
    """Per-block histogram: dense counts (and sums for binned), or (values, counts) when sparse."""
    if spec.kind == "integer":
        u = _small_int(a)
        if u is not None:  # no offset and no range check in the counting loop
            full = _kern("bincount_direct", a.size)(u, m, 1 << (8 * a.dtype.itemsize), _nt())
            return full[_patterns(spec, a.dtype)]
        return _kern("bincount_offset", a.size)(a, m, np.int64(spec.vmin), spec.nbins, _nt())
    if spec.kind == "binned":
        return _kern("bincount_float", a.size)(a, m, spec.lo, spec.inv_width, spec.nbins, _nt())
    v = a if m.size == 0 else a[m.view(bool)]
    return np.unique(v.astype(np.int64), return_counts=True)


def merge_counts(parts, spec):
    if spec.kind == "integer":
        return sum(parts[1:], parts[0].copy())
    if spec.kind == "binned":
        return (sum((p[0] for p in parts[1:]), parts[0][0].copy()), sum((p[1] for p in parts[1:]), parts[0][1].copy()))
    vals = np.concatenate([p[0] for p in parts])
    cnts = np.concatenate([p[1] for p in parts])
    u, inv = np.unique(vals, return_inverse=True)
    return u, np.bincount(inv, weights=cnts).astype(np.int64)


def grey_histogram(merged, spec, rng, dtype):
    lo, hi, n, nn, ni = rng
    if spec.kind == "integer":
        nz = np.flatnonzero(merged)
        values = kernel_to_values(nz + np.int64(spec.vmin), dtype)
        counts = merged[nz].astype(np.float64)
        width = 1.0
    elif spec.kind == "binned":
        c, s = merged
        nz = np.flatnonzero(c)
        counts = c[nz].astype(np.float64)
        values = s[nz] / counts
        width = spec.width
    else:
        u, c = merged
        values, counts = kernel_to_values(u, dtype), c.astype(np.float64)
        spec.keys = u
        width = 1.0
    return Histogram(
        values=values[:, None],
        counts=counts,
        kind=Kind(spec.kind),
        bin_width=np.array([width]),
        low=_grey_bound(lo, dtype),
        high=_grey_bound(hi, dtype),
        n_pixels=int(n),
        n_nan=int(nn),
        n_inf=int(ni),
        dtype=np.dtype(dtype),
        spec=spec,
    )


def _grey_bound(v, dtype):
    """A grey range bound (kernel space for integers, see :func:`as_flat`) as a (1,) float64 value."""
    if np.dtype(dtype).kind in "ui":
        return kernel_to_values(np.array([int(v)], np.int64), dtype)
    return np.array([float(v)])


def grey_grid(hist: Histogram):
    """Values at which the look-up table is evaluated, shape (G, 1)."""
    spec = hist.spec
    if spec.kind == "integer":
        return kernel_to_values(np.int64(spec.vmin) + np.arange(spec.nbins, dtype=np.int64), hist.dtype)[:, None]
    if spec.kind == "binned":
        g = spec.lo + (np.arange(spec.nbins) + 0.5) * spec.width
        # non-empty bins are represented by the mean of their pixels, as in the fit
        idx = np.minimum(((hist.values[:, 0] - spec.lo) * spec.inv_width).astype(np.int64), spec.nbins - 1)
        g[idx] = hist.values[:, 0]
        return g[:, None]
    return hist.values


def grey_lookup(a, m, spec, lut, out):
    """Write lut[bin(pixel)] (0 where excluded) into ``out`` for one flat block."""
    u = _small_int(a)
    if spec.kind == "integer" and u is not None:
        # a table over the whole 8/16-bit dtype (at most 64 KiB): no offset, no range check
        full = np.zeros(1 << (8 * a.dtype.itemsize), lut.dtype)
        full[_patterns(spec, a.dtype)] = lut
        _kern("lut_direct", a.size)(u, m, full, out)
    elif spec.kind == "integer":
        _kern("lut_offset", a.size)(a, m, np.int64(spec.vmin), lut, out)
    elif spec.kind == "binned":
        _kern("lut_float", a.size)(a, m, spec.lo, spec.inv_width, lut, out)
    else:
        _k.lookup_sorted(np.ascontiguousarray(a, dtype=np.int64), spec.keys, lut, False, out)
        if m.size:
            out[~m.view(bool)] = 0
    return out


def grey_index(a, m, spec):
    """Row of every pixel in the grid table, or G (one past the end) where excluded."""
    out = np.empty(a.size, np.int64)
    if spec.kind == "integer":
        _k.index_offset(a, m, np.int64(spec.vmin), spec.nbins, out)
    elif spec.kind == "binned":
        _k.index_float(a, m, spec.lo, spec.inv_width, spec.nbins, out)
    else:
        G = spec.keys.size
        lut = np.arange(1, G + 1, dtype=np.int64)
        _k.lookup_sorted(np.ascontiguousarray(a, dtype=np.int64), spec.keys, lut, False, out)
        out -= 1
        out[out < 0] = G
        if m.size:
            out[~m.view(bool)] = G
    return out


# --------------------------------------------------------------------------------------------
# multichannel


def colour_histogram(a, m, dtype, bins):
    """Compress (N, D) pixels into unique colours (integers) or an exact/grid sample set (floats)."""
    N, D = a.shape
    if bins is not None:
        bins = check_bins(bins, MAX_GRID_BINS)
    lo, hi, nbad = _k.channel_ranges(a, m, _nt())
    n = (N if m.size == 0 else int(m.sum())) - int(nbad)
    common = dict(low=lo.copy(), high=hi.copy(), n_pixels=int(n), dtype=np.dtype(dtype))
    if n <= 0:
        return Histogram(
            np.zeros((0, D)), np.zeros(0), Kind.COLOUR, np.ones(D), n_nan=int(nbad), spec=Binning(Kind.COLOUR), **common
        )
    if dtype.kind in "ui":
        lo_int, hi_int = _exact_channel_range(a, m, lo, hi)
        # kernel-space minimum: its int64 bit pattern (a uint64 at or above 2**63 wraps, and so does
        # np.int64(pixel) in pack_keys: the difference is exact in two's complement)
        mins = np.array([(v - 2**64 if v >= 2**63 else v) for v in lo_int], np.int64)
        bits = np.array([max(1, (hi_int[d] - lo_int[d]).bit_length()) for d in range(D)], np.int64)
        shifts = np.concatenate([[0], np.cumsum(bits)[:-1]]).astype(np.int64)
        total = int(bits.sum())
        # Wide integers (over 24 packed bits: 16-bit multichannel microscopy) are nearly all
        # distinct when noisy (2048 x 2048 x 3 uint16 with noise: 4.19M distinct colours for 4.19M
        # pixels), so above 2**20 pixels they take the float path's grid, as ``bins`` asks too.
        wide = total > _config.MAX_DENSE_BITS
        if total <= 62 and not (wide and (n > _config.MAX_EXACT_PIXELS or bins is not None)):
            spec = Binning(Kind.COLOUR, mins=mins, shifts=shifts, bits=total)
            if total <= _config.MAX_DENSE_BITS and N >= 2**21:
                counts = _k.count_packed_dense(a, m, mins, shifts, 1 << total)
                keys = np.flatnonzero(counts).astype(np.int64)
                cnt = counts[keys].astype(np.float64)
            else:
                keys_all = np.empty(N, np.int64)
                _k.pack_keys(a, m, mins, shifts, keys_all)
                keys_all = keys_all[keys_all >= 0] if m.size else keys_all
                keys, c = np.unique(keys_all, return_counts=True)
                del keys_all
                cnt = c.astype(np.float64)
            vals = np.empty((keys.size, D))
            for d in range(D):
                vals[:, d] = _offset_values((keys >> shifts[d]) & ((1 << bits[d]) - 1), lo_int[d])
            spec.keys = keys
            return Histogram(vals, cnt, Kind.COLOUR, np.ones(D), spec=spec, **common)
    # float (or integers too wide to pack): every pixel, or a grid of cell means
    finite = np.isfinite(a).all(axis=1) if a.dtype.kind == "f" else np.ones(N, bool)
    use = finite if m.size == 0 else (finite & m.view(bool))
    if n <= _config.MAX_EXACT_PIXELS and bins is None:
        vals = np.ascontiguousarray(a[use], dtype=np.float64)
        return Histogram(
            vals, np.ones(vals.shape[0]), Kind.PIXELS, np.zeros(D), n_nan=int(nbad), spec=Binning(Kind.PIXELS), **common
        )
    nb = _config.DEFAULT_GRID_BINS if bins is None else bins
    for d in range(D):
        if hi[d] > lo[d]:
            check_float_span(float(lo[d]), float(hi[d]), nb)
    if D * np.log2(nb) > 62:
        nb = int(2 ** (62 // D))
    width = np.where(hi > lo, (hi - lo) / nb, 1.0)
    if nb**D <= _config.MAX_DENSE_CELLS:  # dense cell tables: one pass, no sort
        cnt_all, sums = _k.grid_accumulate(a, m, lo, 1.0 / width, nb, nb**D, _nt())
        u = np.flatnonzero(cnt_all)
        c = cnt_all[u]
        vals = sums[u] / c[:, None]
    else:
        keys = np.empty(N, np.int64)
        _k.grid_keys(a, m, lo, 1.0 / width, nb, keys)
        sel = keys >= 0
        u, inv, c = np.unique(keys[sel], return_inverse=True, return_counts=True)
        vals = np.empty((u.size, D))
        for d in range(D):
            vals[:, d] = np.bincount(inv, weights=a[sel, d].astype(np.float64), minlength=u.size) / c
    return Histogram(
        vals, c.astype(np.float64), Kind.GRID, width, n_nan=int(nbad), spec=Binning(Kind.GRID, nbins=nb), **common
    )


def _exact_channel_range(a, m, lo, hi):
    """Per-channel (min, max) of the counted pixels as exact Python ints. The kernel's float64
    range is exact up to 2**53; 64-bit integer channels take an exact NumPy pass (the masked
    pixels left out)."""
    if a.dtype.itemsize < 8:
        return [int(v) for v in lo], [int(v) for v in hi]
    sel = a if m.size == 0 else a[m.view(bool)]
    return [int(v) for v in sel.min(axis=0)], [int(v) for v in sel.max(axis=0)]


def _offset_values(offsets, base: int):
    """float64 of ``base + offsets`` (non-negative int64 offsets, exact Python int base) without
    overflow or double rounding: in uint64 for a non-negative base, int64 otherwise."""
    if base >= 0:
        return (offsets.astype(np.uint64) + np.uint64(base)).astype(np.float64)
    return (offsets + np.int64(base)).astype(np.float64)


def colour_lookup(a, m, hist: Histogram, lut, out):
    """Labels of (N, D) integer pixels from the per-colour table ``lut`` (aligned with hist.values)."""
    spec = hist.spec
    if (spec.bits or 99) <= _config.MAX_DENSE_BITS and a.shape[0] >= 2**16:
        dense = np.zeros(1 << spec.bits, lut.dtype)
        dense[spec.keys] = lut
        _k.lut_packed_dense(a, m, spec.mins, spec.shifts, dense, out)
    else:
        keys = np.empty(a.shape[0], np.int64)
        _k.pack_keys(a, m, spec.mins, spec.shifts, keys)
        _k.lookup_sorted(keys, spec.keys, lut, True, out)
    return out


def whole_dtype_counts(a, m):
    """Counts of 8- or 16-bit integer pixels over the whole dtype (index 0 = the dtype's minimum):
    one pass, no range needed first; the counts of several blocks add up."""
    info = np.iinfo(a.dtype)
    return grey_counts(a, m, Binning(Kind.INTEGER, vmin=int(info.min), nbins=int(info.max) - int(info.min) + 1))


def histogram_from_whole_dtype(full, dtype, bins=None) -> Histogram:
    """The :class:`Histogram` of merged :func:`whole_dtype_counts`."""
    info = np.iinfo(dtype)
    nz = np.flatnonzero(full)
    if nz.size == 0:
        return empty_grey((0, 0, 0, 0, 0), dtype)
    lo, hi = int(nz[0]) + int(info.min), int(nz[-1]) + int(info.min)
    spec = grey_spec(np.dtype(dtype), lo, hi, bins)
    counts = full[nz[0] : nz[-1] + 1]
    return grey_histogram(counts, spec, (lo, hi, int(full.sum()), 0, 0), dtype)


def _small_int_histogram(a, m, bins):
    """8- and 16-bit integers: one pass over the whole dtype range, no separate min/max pass."""
    return histogram_from_whole_dtype(whole_dtype_counts(a, m), a.dtype, bins)


# --------------------------------------------------------------------------------------------


def compress_numpy(image, *, channel_axis=None, mask=None, bins=None, progress=None) -> Histogram:
    """The :class:`Histogram` of a validated NumPy image (see :func:`napari_gmm.histogram`).

    Grey images are counted :data:`_config.LOOKUP_SLICE` pixels at a time (the slices' counts add
    up exactly), with ``progress(done, total)`` between slices: a chance to cancel on big stacks.
    """
    if channel_axis is None:
        a = as_flat(image)
        m = mask_flat(mask, image.shape)
        parts = slices(a.size, _config.LOOKUP_SLICE)
        if len(parts) == 1:
            progress = None  # one slice: nothing to report between
        ms = [m[s:e] if m.size else m for s, e in parts]
        if a.dtype.kind in "ui" and a.dtype.itemsize <= 2:
            full = None
            for i, ((s, e), mm) in enumerate(zip(parts, ms)):
                c = whole_dtype_counts(a[s:e], mm)
                full = c if full is None else full + c
                report(progress, i + 1, len(parts))
            return histogram_from_whole_dtype(full, a.dtype, bins)
        rngs = []
        for i, ((s, e), mm) in enumerate(zip(parts, ms)):
            rngs.append(grey_range(a[s:e], mm))
            report(progress, i + 1, 2 * len(parts))
        rng = merge_ranges(rngs)
        if rng[2] == 0:
            return empty_grey(rng, image.dtype)
        spec = grey_spec(image.dtype, rng[0], rng[1], bins)
        counts = []
        for i, ((s, e), mm) in enumerate(zip(parts, ms)):
            counts.append(grey_counts(a[s:e], mm, spec))
            report(progress, len(parts) + i + 1, 2 * len(parts))
        return grey_histogram(merge_counts(counts, spec), spec, rng, image.dtype)
    a, spatial = move_channels(image, channel_axis)
    m = mask_flat(mask, spatial)
    return colour_histogram(a, m, image.dtype, bins)


# --------------------------------------------------------------------------------------------
# look-up helpers shared by the NumPy and dask paths


def valid_rows(a, m):
    """Rows of (N, D) pixels that are finite and inside the flat mask ``m``."""
    ok = np.isfinite(a).all(axis=1) if a.dtype.kind == "f" else np.ones(a.shape[0], bool)
    if m.size:
        ok &= m.view(bool)
    return ok


def slices(n, step):
    """(start, stop) pairs covering range(n) in steps (one empty pair for n = 0)."""
    return [(s, min(n, s + step)) for s in range(0, n, step)] or [(0, 0)]


def report(progress, done, total):
    """progress(done, total) if a callback was given."""
    if progress is not None:
        progress(done, total)


def grey_label_table(fns, hist: Histogram) -> np.ndarray:
    """Labels 1..K of every entry of the grey look-up grid of ``hist`` (``fns``: a pipeline.SampleFns)."""
    return (fns.labels(grey_grid(hist)) + 1).astype(label_dtype(fns.n_components))


def mean_table(means, dtype) -> np.ndarray:
    """Component means (K, D) as values of ``dtype`` (rounded and clipped for integers)."""
    dt = np.dtype(dtype)
    table = np.asarray(means, dtype=np.float64).copy()
    if dt.kind in "ui":
        return np.ascontiguousarray(to_int_dtype(table, dt))
    if dt.kind == "f":
        info = np.finfo(dt)
        table = np.clip(table, info.min, info.max)
    return np.ascontiguousarray(table.astype(dt))


def paint_numpy(image, labels, table, channel_axis=None, progress=None) -> np.ndarray:
    """A copy of ``image`` with every labelled pixel (label > 0) replaced by ``table[label - 1]``.

    Memory: the output plus nothing of the image's size (painted in place, in slices).
    """
    image = np.asarray(image)
    out = np.array(image, copy=True, order="C")
    view = out[..., None] if channel_axis is None else np.moveaxis(out, channel_axis, -1)
    if out.dtype == np.float16 or not out.dtype.isnative or not view.flags.c_contiguous:
        sel = labels > 0
        view[sel] = table[labels[sel].astype(np.intp) - 1]
        report(progress, 1, 1)
        return out
    flat = view.reshape(-1, view.shape[-1])
    lab = np.ascontiguousarray(labels).reshape(-1)
    parts = slices(lab.size, _config.LOOKUP_SLICE)
    for i, (s, e) in enumerate(parts):
        paint = _k.paint_table if e - s >= _config.SERIAL_BELOW else _k.paint_table_serial
        paint(lab[s:e], table, flat[s:e])
        report(progress, i + 1, len(parts))
    return out
