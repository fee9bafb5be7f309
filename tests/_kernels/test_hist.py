"""Compression and look-up kernels against NumPy."""

import numpy as np
from numba import get_num_threads

from napari_gmm._kernels import hist as k


def test_bincount_offset_with_and_without_mask():
    rng = np.random.default_rng(0)
    a = rng.integers(-300, 900, 200_003).astype(np.int32)
    m = (rng.random(a.size) > 0.3).astype(np.uint8)
    none = np.zeros(0, np.uint8)
    np.testing.assert_array_equal(
        k.bincount_offset(a, none, -300, 1200, get_num_threads()), np.bincount(a + 300, minlength=1200)
    )
    np.testing.assert_array_equal(
        k.bincount_offset(a, m, -300, 1200, get_num_threads()), np.bincount(a[m == 1] + 300, minlength=1200)
    )
    assert k.int_range(a, m, get_num_threads())[:2] == (a[m == 1].min(), a[m == 1].max())


def test_float_range_and_bins():
    a = np.array([np.nan, 1.0, np.inf, -2.0, 3.0, -np.inf, 0.5], np.float32)
    lo, hi, nf, nn, ni = k.float_range(a, np.zeros(0, np.uint8), get_num_threads())
    assert (lo, hi, nf, nn, ni) == (-2.0, 3.0, 4, 1, 2)
    counts, sums = k.bincount_float(a, np.zeros(0, np.uint8), -2.0, 2 / 5.0, 2, get_num_threads())
    np.testing.assert_array_equal(counts, [1, 3])  # [-2, 0.5) and [0.5, 3] (top edge folded in)
    np.testing.assert_allclose(sums, [-2.0, 4.5])


def test_luts():
    a = np.array([5, 6, 7, 9], np.uint16)
    out = np.empty(4, np.uint8)
    k.lut_offset(a, np.array([1, 1, 0, 1], np.uint8), 5, np.array([1, 2, 3, 4, 5], np.uint8), out)
    np.testing.assert_array_equal(out, [1, 2, 0, 5])
    f = np.array([0.0, 0.49, 0.5, 1.0, np.nan])
    k.lut_float(f, np.zeros(0, np.uint8), 0.0, 2.0, np.array([7, 8], np.uint8), out := np.empty(5, np.uint8))
    np.testing.assert_array_equal(out, [7, 7, 8, 8, 0])


def test_int_range_counts_masked_pixels_in_every_chunk():
    rng = np.random.default_rng(3)
    a = rng.integers(0, 60000, 1_000_003).astype(np.uint16)
    m = (rng.random(a.size) > 0.5).astype(np.uint8)
    lo, hi, n = k.int_range(a, m, get_num_threads())
    assert (lo, hi, n) == (a[m == 1].min(), a[m == 1].max(), int(m.sum()))
    assert k.int_range(a, np.zeros(0, np.uint8), get_num_threads()) == (a.min(), a.max(), a.size)


def test_grey_lookup_and_counts_through_whole_dtype_tables():
    """8/16-bit images are counted and looked up through tables over the whole dtype (signed ones
    by their bit pattern): same as the offset tables, masked pixels 0 and not counted."""
    from napari_gmm import compress as h

    rng = np.random.default_rng(4)
    for dt, lo, hi in ((np.uint8, 3, 250), (np.int8, -100, 90), (np.uint16, 700, 56000), (np.int16, -3000, 2000)):
        a = rng.integers(lo, hi + 1, 1_100_001).astype(dt)  # above SERIAL_BELOW: the parallel kernels
        m = (rng.random(a.size) > 0.2).astype(np.uint8)
        spec = h.Binning(h.Kind.INTEGER, vmin=lo, nbins=hi - lo + 1)
        lut = rng.integers(1, 200, hi - lo + 1).astype(np.uint8)
        for mask in (np.zeros(0, np.uint8), m):
            got = h.grey_lookup(a, mask, spec, lut, np.empty(a.size, np.uint8))
            want = lut[a.astype(np.int64) - lo]
            if mask.size:
                want = np.where(mask == 1, want, 0)
            np.testing.assert_array_equal(got, want, err_msg=str(dt))
            # counting goes through a whole-dtype histogram too
            counted = a if not mask.size else a[mask == 1]
            np.testing.assert_array_equal(
                h.grey_counts(a, mask, spec),
                np.bincount(counted.astype(np.int64) - lo, minlength=hi - lo + 1),
                err_msg=str(dt),
            )


def test_packed_keys_dense_and_sorted_agree():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (5000, 3)).astype(np.uint8)
    mins = np.zeros(3, np.int64)
    shifts = np.array([0, 8, 16], np.int64)
    keys = np.empty(5000, np.int64)
    k.pack_keys(a, np.zeros(0, np.uint8), mins, shifts, keys)
    np.testing.assert_array_equal(keys, a[:, 0] + (a[:, 1].astype(np.int64) << 8) + (a[:, 2].astype(np.int64) << 16))
    dense = k.count_packed_dense(a, np.zeros(0, np.uint8), mins, shifts, 1 << 24)
    u, c = np.unique(keys, return_counts=True)
    np.testing.assert_array_equal(dense[u], c)
    lut = np.arange(1, u.size + 1).astype(np.uint16)
    o1, o2 = np.empty(5000, np.uint16), np.empty(5000, np.uint16)
    k.lookup_sorted(keys, u, lut, True, o1)
    big = np.zeros(1 << 24, np.uint16)
    big[u] = lut
    k.lut_packed_dense(a, np.zeros(0, np.uint8), mins, shifts, big, o2)
    np.testing.assert_array_equal(o1, o2)
    np.testing.assert_array_equal(u[o1 - 1], keys)


def test_search_left_is_numpys_searchsorted():
    rng = np.random.default_rng(7)
    for a, v in (
        (np.sort(rng.integers(-5, 5, 40)), np.arange(-7, 8)),  # duplicates, values outside both ends
        (np.cumsum(rng.random(33)), np.concatenate([[0.0], rng.random(50) * 17, [np.inf]])),
        (np.zeros(0, np.int64), np.array([3])),
    ):
        got = [k.search_left(a, x) for x in v]
        np.testing.assert_array_equal(got, np.searchsorted(a, v))
