"""Compression and lookup kernels: exact histograms, binned float histograms, label look-up tables.

Every kernel takes a flat contiguous image ``a`` and a flat ``uint8`` mask ``m``; a mask of length 0
means "no mask". Parallel kernels split the pixels into chunks and give every chunk its own partial
result (no atomics), merged serially at the end.
"""

import numpy as np
from numba import njit, prange

from ._config import JIT, PJIT, serial_copy


@njit(**JIT)
def _nchunks(n, nthreads):
    return max(1, min(nthreads * 4, n // 65536))


@njit(**JIT)
def _sum_rows(part):
    """The column sums of a 2-D table of per-chunk partial results (a histogram per thread), added
    row after row from zero: what ``part.sum(axis=0)`` gives, without compiling Numba's general
    axis reduction into every kernel that merges its partial results (about 3.5 s of CPU in each
    fresh process that compiled one: ``array_sum_impl`` and its ``check_axis_bounds``)."""
    n, k = part.shape
    out = np.zeros(k, part.dtype)
    for c in range(n):
        for j in range(k):
            out[j] += part[c, j]
    return out


@njit(**JIT)
def search_left(a, v):
    """``np.searchsorted(a, v)`` (side "left": the first ``i`` with ``a[i] >= v``) for a sorted
    array ``a`` without NaN and a value ``v`` that is not NaN, by bisection: Numba's
    ``np.searchsorted`` compiled about 1.7 s into each kernel calling it (CPU, per fresh process)."""
    lo = 0
    hi = a.size
    while lo < hi:
        mid = (lo + hi) >> 1
        if a[mid] < v:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(**JIT)
def _min_max(lo, hi):
    """(min of ``lo``, max of ``hi``): the per-chunk ranges (1-D arrays) merged by a loop;
    ``lo.min()`` and ``hi.max()`` compile Numba's reductions into every range kernel (about 1 s of
    each one's cold compile)."""
    mn = lo[0]
    mx = hi[0]
    for c in range(1, lo.size):
        mn = min(mn, lo[c])
        mx = max(mx, hi[c])
    return mn, mx


def _int_range(a, m, nthreads):
    """(min, max, n_counted) of the masked integer pixels; min > max when none is counted."""
    n = a.size
    has_mask = m.size > 0
    nc = _nchunks(n, nthreads)
    step = (n + nc - 1) // nc
    lo = np.empty(nc, np.int64)
    hi = np.empty(nc, np.int64)
    cnt = np.zeros(nc, np.int64)
    for c in prange(nc):
        # a view indexed from 0: Numba's wrap-around of an index like c * step + i, which LLVM
        # cannot prove non-negative, kept these loops from vectorising
        stop = min(n, (c + 1) * step)
        ac = a[c * step : stop]
        mn = np.iinfo(np.int64).max
        mx = np.iinfo(np.int64).min
        if has_mask:
            mc = m[c * step : stop]
            k = 0
            for i in range(ac.size):
                v = np.int64(ac[i])
                use = mc[i] != 0
                mn = min(mn, v) if use else mn
                mx = max(mx, v) if use else mx
                k += 1 if use else 0
        else:
            for i in range(ac.size):
                v = np.int64(ac[i])
                mn = min(mn, v)
                mx = max(mx, v)
            k = ac.size
        lo[c] = mn
        hi[c] = mx
        cnt[c] = k
    mn, mx = _min_max(lo, hi)
    return mn, mx, _sum_rows(cnt.reshape((nc, 1)))[0]


def _float_range(a, m, nthreads):
    """(min, max, n_finite, n_nan, n_inf) of the masked float pixels (min/max over finite values)."""
    n = a.size
    has_mask = m.size > 0
    nc = _nchunks(n, nthreads)
    step = (n + nc - 1) // nc
    lo = np.empty(nc)
    hi = np.empty(nc)
    cnt = np.zeros((nc, 3), np.int64)
    for c in prange(nc):
        mn = np.inf
        mx = -np.inf
        kf = 0
        kn = 0
        ki = 0
        for i in range(c * step, min(n, (c + 1) * step)):
            if has_mask and m[i] == 0:
                continue
            v = np.float64(a[i])
            if np.isnan(v):
                kn += 1
            elif np.isinf(v):
                ki += 1
            else:
                kf += 1
                if v < mn:
                    mn = v
                if v > mx:
                    mx = v
        lo[c] = mn
        hi[c] = mx
        cnt[c, 0] = kf
        cnt[c, 1] = kn
        cnt[c, 2] = ki
    s = _sum_rows(cnt)
    mn, mx = _min_max(lo, hi)
    return mn, mx, s[0], s[1], s[2]


def _bincount_offset(a, m, vmin, nbins, nthreads):
    """Exact histogram of integer pixels: counts[v - vmin] (int64, length nbins)."""
    n = a.size
    has_mask = m.size > 0
    nc = min(nthreads, max(1, n // 65536))
    step = (n + nc - 1) // nc
    part = np.zeros((nc, nbins), np.int64)
    for c in prange(nc):
        for i in range(c * step, min(n, (c + 1) * step)):
            if has_mask and m[i] == 0:
                continue
            part[c, np.int64(a[i]) - vmin] += 1
    return _sum_rows(part)  # the per-thread partial histograms


def _bincount_direct(a, m, size, nthreads):
    """Histogram of unsigned 8- or 16-bit pixels over the whole dtype (``size`` = 256 or 65536
    bins, int64): no offset, no range check, one partial histogram per thread over a per-chunk
    view (indexed from 0, see :func:`_int_range`); masked-out pixels add 0."""
    n = a.size
    has_mask = m.size > 0
    nc = min(nthreads, max(1, n // 65536))
    step = (n + nc - 1) // nc
    part = np.zeros((nc, size), np.int64)
    for c in prange(nc):
        stop = min(n, (c + 1) * step)
        ac = a[c * step : stop]
        pc = part[c]
        if has_mask:
            mc = m[c * step : stop]
            for i in range(ac.size):
                pc[np.uint32(ac[i])] += np.int64(mc[i] != 0)
        else:
            for i in range(ac.size):
                pc[np.uint32(ac[i])] += 1
    return _sum_rows(part)  # the per-thread partial histograms


def _bincount_float(a, m, lo, inv_width, nbins, nthreads):
    """Binned histogram of finite float pixels: (counts int64, sums float64) per bin.

    Bin of value v: floor((v - lo) * inv_width), the top edge folded into the last bin.
    """
    n = a.size
    has_mask = m.size > 0
    nc = min(nthreads, max(1, n // 65536))
    step = (n + nc - 1) // nc
    pc = np.zeros((nc, nbins), np.int64)
    ps = np.zeros((nc, nbins))
    for c in prange(nc):
        for i in range(c * step, min(n, (c + 1) * step)):
            if has_mask and m[i] == 0:
                continue
            v = np.float64(a[i])
            if not np.isfinite(v):
                continue
            b = np.int64((v - lo) * inv_width)
            if b >= nbins:
                b = nbins - 1
            elif b < 0:
                b = 0
            pc[c, b] += 1
            ps[c, b] += v
    return _sum_rows(pc), _sum_rows(ps)


def _lut_offset(a, m, vmin, lut, out):
    """out[i] = lut[a[i] - vmin] (0 where masked out or outside the table)."""
    n = a.size
    has_mask = m.size > 0
    G = lut.size
    for i in prange(n):
        if has_mask and m[i] == 0:
            out[i] = 0
            continue
        j = np.int64(a[i]) - vmin
        if j < 0 or j >= G:
            out[i] = 0
        else:
            out[i] = lut[j]


def _lut_direct(a, m, lut, out):
    """out[i] = lut[a[i]] for unsigned 8- or 16-bit pixels and a table over the whole dtype
    (0 where masked out): no offset, no range check, over per-chunk views (see :func:`_int_range`),
    so that the loop vectorises (gathers)."""
    n = a.size
    has_mask = m.size > 0
    nc = max(1, min(64, n // 65536))
    step = (n + nc - 1) // nc
    for c in prange(nc):
        stop = min(n, (c + 1) * step)
        ac = a[c * step : stop]
        oc = out[c * step : stop]
        if has_mask:
            mc = m[c * step : stop]
            for i in range(ac.size):
                v = lut[np.uint32(ac[i])]
                oc[i] = v if mc[i] != 0 else 0
        else:
            for i in range(ac.size):
                oc[i] = lut[np.uint32(ac[i])]


def _lut_float(a, m, lo, inv_width, lut, out):
    """out[i] = lut[bin(a[i])] with the bins of :func:`bincount_float`; 0 for masked, NaN or inf."""
    n = a.size
    has_mask = m.size > 0
    nbins = lut.size
    for i in prange(n):
        if has_mask and m[i] == 0:
            out[i] = 0
            continue
        v = np.float64(a[i])
        if not np.isfinite(v):
            out[i] = 0
            continue
        b = np.int64((v - lo) * inv_width)
        if b >= nbins:
            b = nbins - 1
        elif b < 0:
            b = 0
        out[i] = lut[b]


@njit(**PJIT)
def index_offset(a, m, vmin, G, out):
    """Row index into a table over [vmin, vmin + G): a[i] - vmin, or G (a zero row) where excluded."""
    n = a.size
    has_mask = m.size > 0
    for i in prange(n):
        j = np.int64(a[i]) - vmin
        if (has_mask and m[i] == 0) or j < 0 or j >= G:
            out[i] = G
        else:
            out[i] = j


@njit(**PJIT)
def index_float(a, m, lo, inv_width, nbins, out):
    """Bin index of every pixel, or nbins (a zero row) where masked, NaN or inf."""
    n = a.size
    has_mask = m.size > 0
    for i in prange(n):
        v = np.float64(a[i])
        if (has_mask and m[i] == 0) or not np.isfinite(v):
            out[i] = nbins
            continue
        b = np.int64((v - lo) * inv_width)
        if b >= nbins:
            b = nbins - 1
        elif b < 0:
            b = 0
        out[i] = b


# --- multichannel ---------------------------------------------------------------------------


@njit(**PJIT)
def pack_keys(a, m, mins, shifts, out):
    """Pack every pixel's integer channels (a: (N, D)) into one int64 key; -1 where masked out.

    key = sum_d (a[i, d] - mins[d]) << shifts[d].
    """
    N, D = a.shape
    has_mask = m.size > 0
    for i in prange(N):
        if has_mask and m[i] == 0:
            out[i] = -1
            continue
        key = np.int64(0)
        for d in range(D):
            key |= (np.int64(a[i, d]) - mins[d]) << shifts[d]
        out[i] = key


@njit(**PJIT)
def channel_ranges(a, m, nthreads):
    """Per-channel (min, max) of the masked pixels of a (N, D) array, finite values only;
    also the count of pixels with any NaN or inf channel (which are excluded)."""
    N, D = a.shape
    has_mask = m.size > 0
    nc = _nchunks(N, nthreads)
    step = (N + nc - 1) // nc
    lo = np.full((nc, D), np.inf)
    hi = np.full((nc, D), -np.inf)
    bad = np.zeros(nc, np.int64)
    for c in prange(nc):
        for i in range(c * step, min(N, (c + 1) * step)):
            if has_mask and m[i] == 0:
                continue
            ok = True
            for d in range(D):
                if not np.isfinite(np.float64(a[i, d])):
                    ok = False
            if not ok:
                bad[c] += 1
                continue
            for d in range(D):
                v = np.float64(a[i, d])
                if v < lo[c, d]:
                    lo[c, d] = v
                if v > hi[c, d]:
                    hi[c, d] = v
    outlo = np.empty(D)
    outhi = np.empty(D)
    for d in range(D):
        outlo[d], outhi[d] = _min_max(lo[:, d], hi[:, d])
    return outlo, outhi, _sum_rows(bad.reshape((nc, 1)))[0]


@njit(inline="always", **JIT)
def _cell_key(a, i, lo, inv_width, nbins):
    """Cell of pixel ``i`` on a per-channel grid of ``nbins`` cells (the edges folded in), or -1
    when one of its channels is not finite."""
    key = np.int64(0)
    for d in range(a.shape[1]):
        v = np.float64(a[i, d])
        if not np.isfinite(v):
            return np.int64(-1)
        b = np.int64((v - lo[d]) * inv_width[d])
        if b >= nbins:
            b = nbins - 1
        elif b < 0:
            b = 0
        key = key * nbins + b
    return key


@njit(**PJIT)
def grid_keys(a, m, lo, inv_width, nbins, out):
    """Cell key of every pixel on a per-channel grid of ``nbins`` cells; -1 where masked or non-finite."""
    N = a.shape[0]
    has_mask = m.size > 0
    for i in prange(N):
        if has_mask and m[i] == 0:
            out[i] = -1
        else:
            out[i] = _cell_key(a, i, lo, inv_width, nbins)


@njit(**PJIT)
def grid_accumulate(a, m, lo, inv_width, nbins, ncells, nthreads):
    """Pixel counts (int64) and channel sums (float64, (ncells, D)) of every cell of a per-channel
    grid of ``nbins`` cells (the cells of :func:`grid_keys`), in dense tables: one pass, no key
    array and no sort. One pair of tables per thread, merged at the end; masked and non-finite
    pixels are left out."""
    N, D = a.shape
    has_mask = m.size > 0
    nc = min(nthreads, max(1, N // 65536))
    step = (N + nc - 1) // nc
    counts = np.zeros((nc, ncells), np.int64)
    sums = np.zeros((nc, ncells, D))
    for c in prange(nc):
        for i in range(c * step, min(N, (c + 1) * step)):
            if has_mask and m[i] == 0:
                continue
            key = _cell_key(a, i, lo, inv_width, nbins)
            if key < 0:
                continue
            counts[c, key] += 1
            for d in range(D):
                sums[c, key, d] += np.float64(a[i, d])
    return _sum_rows(counts), _sum_rows(sums.reshape((nc, ncells * D))).reshape((ncells, D))


@njit(**JIT)
def count_packed_dense(a, m, mins, shifts, size):
    """Counts of every packed key in a dense table of ``size`` (uint32); serial, one pass, no key array."""
    N, D = a.shape
    has_mask = m.size > 0
    counts = np.zeros(size, np.uint32)
    for i in range(N):
        if has_mask and m[i] == 0:
            continue
        key = np.int64(0)
        for d in range(D):
            key |= (np.int64(a[i, d]) - mins[d]) << shifts[d]
        counts[key] += 1
    return counts


@njit(**PJIT)
def lut_packed_dense(a, m, mins, shifts, lut, out):
    """out[i] = lut[key(a[i])] with a dense table over all packed keys; 0 where masked out."""
    N, D = a.shape
    has_mask = m.size > 0
    for i in prange(N):
        if has_mask and m[i] == 0:
            out[i] = 0
            continue
        key = np.int64(0)
        for d in range(D):
            key |= (np.int64(a[i, d]) - mins[d]) << shifts[d]
        out[i] = lut[key]


@njit(**PJIT)
def lookup_sorted(keys, table_keys, lut, negative_is_masked, out):
    """out[i] = lut[j] where table_keys[j] == keys[i] (binary search); 0 where absent, and where
    key < 0 if ``negative_is_masked`` (packed colour keys are never negative)."""
    n = keys.size
    G = table_keys.size
    for i in prange(n):
        k = keys[i]
        if negative_is_masked and k < 0:
            out[i] = 0
            continue
        j = search_left(table_keys, k)
        if j < G and table_keys[j] == k:
            out[i] = lut[j]
        else:
            out[i] = 0


# --- parallel kernels and their serial twins -------------------------------------------------
# A parallel region costs a thread wake-up (tens of microseconds with passive waiting): images
# below a megapixel are faster on the calling thread alone. The wrappers pick by size.
int_range, int_range_serial = njit(**PJIT)(_int_range), njit(**JIT)(serial_copy(_int_range))
float_range, float_range_serial = njit(**PJIT)(_float_range), njit(**JIT)(serial_copy(_float_range))
bincount_offset, bincount_offset_serial = njit(**PJIT)(_bincount_offset), njit(**JIT)(serial_copy(_bincount_offset))
bincount_float, bincount_float_serial = njit(**PJIT)(_bincount_float), njit(**JIT)(serial_copy(_bincount_float))
lut_offset, lut_offset_serial = njit(**PJIT)(_lut_offset), njit(**JIT)(serial_copy(_lut_offset))
lut_direct, lut_direct_serial = njit(**PJIT)(_lut_direct), njit(**JIT)(serial_copy(_lut_direct))
bincount_direct, bincount_direct_serial = njit(**PJIT)(_bincount_direct), njit(**JIT)(serial_copy(_bincount_direct))
lut_float, lut_float_serial = njit(**PJIT)(_lut_float), njit(**JIT)(serial_copy(_lut_float))


def _paint_table(labels, table, out):
    """out[i, :] = table[labels[i] - 1, :] where labels[i] > 0 (others keep their value)."""
    n = labels.size
    D = table.shape[1]
    for i in prange(n):
        lab = labels[i]
        if lab > 0:
            for d in range(D):
                out[i, d] = table[lab - 1, d]


paint_table, paint_table_serial = njit(**PJIT)(_paint_table), njit(**JIT)(serial_copy(_paint_table))
