"""The bad-input matrix (issue 10): every case gives a valid result, checked against a reference
computed another way (the native-endian or contiguous copy, an offset copy, Python ints, known
labels), or the exact exception type with a message naming the parameter or value and saying what
to do. Run with warnings as errors: no numpy RuntimeWarning (or any other warning) escapes unless a
case expects it.
"""

import warnings

import numpy as np
import pytest

import napari_gmm as ng
from napari_gmm import Cancelled, InputError, MixtureModel


@pytest.fixture(autouse=True)
def warnings_are_errors():
    """Every warning raised by a case is an error (pytest.warns inside a case still records the
    one it expects); napari's pytest plugin's own deprecation warnings are outside this block."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


RNG = np.random.default_rng(10)
#: two well separated grey populations with known labels (1 dark, 2 bright)
TRUTH = np.repeat([1, 2], 200).reshape(20, 20)
BI = np.where(TRUTH == 1, RNG.normal(60, 5, TRUTH.shape), RNG.normal(180, 5, TRUTH.shape))
BI8 = np.clip(np.rint(BI), 0, 255).astype(np.uint8)
RGB = np.stack([BI8, 255 - BI8, BI8 // 2], axis=-1)  # (20, 20, 3), two colours
STACK = np.clip(RNG.normal(100, 2, (12, 16, 16)), 0, 255).astype(np.uint8)
STACK[:, 4:8, 4:8] = 200  # a static bright square: background
STACK[6:, 10:14, 10:14] = 30  # something that appears: foreground in the late frames


def seg(img, k=2, **kw):
    return ng.segment(img, k, **kw)


def raises(exc, *words, call):
    """``call()`` raises exactly ``exc`` (not a subclass standing in for it) with every word of
    ``words`` (case-insensitive regex-escaped) in its message."""
    with pytest.raises(exc) as info:
        call()
    assert type(info.value) is exc, f"{type(info.value).__name__}: {info.value}"
    msg = str(info.value).lower()
    for w in words:
        assert w.lower() in msg, f"{w!r} not in message: {info.value}"


def same_labels(a, b):
    np.testing.assert_array_equal(a, b)


def model2():
    return ng.fit_mixture(BI8, 2)


# --------------------------------------------------------------------------------------------
# dtypes and byte order: the same result as the native copy


def c_big_endian_f4():
    same_labels(seg(BI.astype(">f4")), seg(BI.astype("<f4")))


def c_big_endian_i4():
    same_labels(seg(BI8.astype(">i4")), seg(BI8.astype("<i4")))


def c_big_endian_u2():
    img = (BI8.astype(np.uint16) * 200).astype(">u2")
    same_labels(seg(img), seg(img.astype("=u2")))
    assert (seg(img) == TRUTH).all()


def c_big_endian_f8_rgb():
    img = RGB.astype(">f8")
    same_labels(seg(img, channel_axis=-1), seg(img.astype("=f8"), channel_axis=-1))


def c_big_endian_quantize_keeps_dtype():
    img = BI.astype(">f4")
    q = ng.quantize(img, 2, channel_axis=None)
    assert q.dtype == img.dtype and q.shape == img.shape
    np.testing.assert_array_equal(q, ng.quantize(BI.astype("<f4"), 2, channel_axis=None))


def c_big_endian_predict_proba():
    m = model2()
    p = m.predict_proba(BI8.astype(">u2"))
    np.testing.assert_array_equal(p, m.predict_proba(BI8.astype("<u2")))


def c_float16_like_float32():
    img = BI.astype(np.float16)
    same_labels(seg(img), seg(img.astype(np.float32)))
    assert (seg(img) == TRUTH).all()


def c_float16_quantize_dtype():
    img = BI.astype(np.float16)
    q = ng.quantize(img, 2, channel_axis=None)
    assert q.dtype == np.float16
    ref = ng.quantize(img.astype(np.float32), 2, channel_axis=None)
    np.testing.assert_allclose(q.astype(np.float32), ref, rtol=1e-3)


def c_int8_signed():
    img = (BI8.astype(np.int16) - 128).astype(np.int8)
    same_labels(seg(img), TRUTH)


def c_python_list():
    same_labels(seg(BI8.tolist()), seg(BI8))


def c_ragged_list():
    raises(InputError, "not an array", call=lambda: seg([[1, 2, 3], [4, 5]]))


def c_bool():
    raises(InputError, "boolean", "astype", call=lambda: seg(BI8 > 100))


def c_complex():
    raises(InputError, "complex", "np.abs", call=lambda: seg(BI + 1j))


def c_object():
    raises(InputError, "object", call=lambda: seg(BI8.astype(object)))


def c_strings():
    raises(InputError, "dtype", call=lambda: seg(np.array([["a", "b"], ["c", "d"]])))


# --------------------------------------------------------------------------------------------
# 64-bit integers over their whole range, against Python ints or an offset copy


def c_uint64_across_2_63():
    # values on both sides of 2**63 (where int64 wraps): same labels as the offset int64 copy
    offs = BI8.astype(np.int64) * 10**16 - 5 * 10**17
    img = np.uint64(2**63) + offs.astype(np.uint64)  # two's complement: exact for offs < 0 too
    assert img.min() < 2**63 <= img.max()
    same_labels(seg(img), seg(offs))
    assert (seg(img) == TRUTH).all()


def c_histogram_near_2_64():
    vals = [2**64 - 1, 2**64 - 1, 2**64 - 2, 2**64 - 3, 5]
    h = ng.histogram(np.array(vals, np.uint64))
    ref = sorted(set(vals))
    np.testing.assert_array_equal(h.values[:, 0], [float(v) for v in ref])  # correctly rounded
    np.testing.assert_array_equal(h.counts, [vals.count(v) for v in ref])
    assert h.low[0] == 5.0 and h.high[0] == float(2**64 - 1) and h.n_pixels == 5


def c_histogram_int64_extremes():
    info = np.iinfo(np.int64)
    vals = [info.min, info.min, -1, 0, info.max]
    h = ng.histogram(np.array(vals, np.int64))
    ref = sorted(set(vals))
    np.testing.assert_array_equal(h.values[:, 0], [float(v) for v in ref])
    np.testing.assert_array_equal(h.counts, [vals.count(v) for v in ref])


def c_segment_int64_extremes():
    info = np.iinfo(np.int64)
    img = np.array([info.min, 0, info.max] * 20, np.int64).reshape(6, 10)
    lab = seg(img, 3)
    same_labels(lab, (np.array([1, 2, 3] * 20)).reshape(6, 10))


def c_uint64_rgb_across_2_63():
    offs = RGB.astype(np.int64) * 10**15 - 10**17
    img = np.uint64(2**63) + offs.astype(np.uint64)
    same_labels(seg(img, channel_axis=-1), seg(offs, channel_axis=-1))


def c_uint64_too_close_for_float64():
    img = np.array([2**64 - 1, 2**64 - 2, 2**64 - 3] * 4, np.uint64)
    raises(InputError, "offset", "image.min()", call=lambda: seg(img))


def c_uint64_rgb_shared_channel_values():
    # colours near 2**64 that share their first channel's value are still distinct colours
    top = np.uint64(2**64 - 2**20)
    img = np.zeros((8, 8, 2), np.uint64) + top
    img[4:, :, 1] += np.uint64(2**19)
    same_labels(seg(img, channel_axis=-1), np.repeat([1, 2], 32).reshape(8, 8))


def c_quantize_uint64_top():
    img = np.array([[2**64 - 1] * 3 + [0] * 3], np.uint64)
    q = ng.quantize(img, 2, channel_axis=None)
    assert q.dtype == np.uint64
    assert [int(v) for v in q.ravel()] == [2**64 - 1] * 3 + [0] * 3  # no wrap to 0


def c_quantize_int64_max():
    info = np.iinfo(np.int64)
    img = np.array([[info.max] * 3 + [info.min] * 3], np.int64)
    q = ng.quantize(img, 2, channel_axis=None)
    assert [int(v) for v in q.ravel()] == [info.max] * 3 + [info.min] * 3


def c_quantize_uint32_top():
    img = np.array([[2**32 - 1] * 3 + [2**32 - 3001] * 3], np.uint32)
    q = ng.quantize(img, 2, channel_axis=None)
    np.testing.assert_array_equal(q, img)


def c_to_int_dtype_reference():
    from napari_gmm._validate import to_int_dtype

    x = np.array([-1e30, -0.4, 0.6, 4294967295.0, 4294967296.0, 1e30, np.nan])
    assert to_int_dtype(x, np.uint32).tolist() == [0, 0, 1, 2**32 - 1, 2**32 - 1, 2**32 - 1, 0]
    y = np.array([9.3e18, -9.3e18, 2.0**63, -(2.0**63)])
    i = np.iinfo(np.int64)
    assert to_int_dtype(y, np.int64).tolist() == [i.max, i.min, i.max, i.min]


# --------------------------------------------------------------------------------------------
# ranges: constant vs too wide / too narrow to represent


def c_span_overflows():
    img = np.array([-1.7e308, 1.7e308] * 50)
    raises(InputError, "too wide", "rescale", call=lambda: seg(img))


def c_denormal_clusters():
    img = np.r_[np.full(50, 1e-310), np.full(50, 2e-310)]
    raises(InputError, "rescale", call=lambda: seg(img))


def c_span_1e200():
    img = np.r_[np.zeros(50), np.full(50, 1e200)] + np.arange(100)
    raises(InputError, "too wide", "rescale", call=lambda: seg(img))


def c_constant():
    raises(InputError, "constant", call=lambda: seg(np.full((8, 8), 7, np.uint8)))


def c_one_pixel():
    raises(InputError, "constant", call=lambda: seg(np.array([[3.0]])))


def c_all_nan():
    raises(InputError, "no finite pixels", "nan", call=lambda: seg(np.full((5, 5), np.nan)))


def c_inf_pixels():
    img = BI.copy()
    img[0, :3] = np.inf
    with pytest.warns(UserWarning, match="infinite"):
        lab = seg(img)
    assert (lab[0, :3] == 0).all() and (lab.ravel()[3:] == TRUTH.ravel()[3:]).all()


def c_nan_pixels():
    img = BI.copy()
    img[5, 5] = np.nan
    lab = seg(img)
    assert lab[5, 5] == 0
    ref = TRUTH.copy()
    ref[5, 5] = 0
    same_labels(lab, ref)


def c_empty():
    raises(InputError, "empty", call=lambda: seg(np.zeros((0, 5))))


def c_zero_size_axis_3d():
    raises(InputError, "empty", call=lambda: seg(np.zeros((4, 0, 5), np.uint8)))


# --------------------------------------------------------------------------------------------
# arguments: names and accepted values up front


@pytest.mark.parametrize(
    "kw, words",
    [
        (dict(covariance_type=["full"]), ["covariance_type", "spherical", "diag", "full"]),
        (dict(covariance_type="tied"), ["covariance_type='tied'", "spherical"]),
        (dict(random_state=-1), ["random_state=-1", ">= 0"]),
        (dict(random_state="abc"), ["random_state", "'abc'", "generator"]),
        (dict(random_state=1.5), ["random_state", "1.5"]),
        (dict(progress="yes"), ["progress", "callable", "'yes'"]),
        (dict(reg_covar=np.inf), ["reg_covar", "inf"]),
        (dict(reg_covar=-1.0), ["reg_covar", "-1.0"]),
        (dict(reg_covar="big"), ["reg_covar", "'big'"]),
        (dict(max_iter=0), ["max_iter", ">= 1"]),
        (dict(tol=float("nan")), ["tol", "nan"]),
        (dict(n_init=0), ["n_init", ">= 1"]),
        (dict(init="foo"), ["init='foo'", "ranges", "kmeans++"]),
        (dict(channel_axis=5), ["channel_axis=5", "none"]),
        (dict(channel_axis=True), ["channel_axis=true"]),
    ],
)
def test_bad_argument(kw, words):
    raises(InputError, *words, call=lambda: seg(BI8, **kw))


@pytest.mark.parametrize(
    "k, words",
    [
        (0, ["at least 1"]),
        (2.5, ["n_components", "2.5"]),
        (True, ["n_components", "true"]),
        (300, ["n_components=300", "distinct"]),
    ],
)
def test_bad_n_components(k, words):
    raises(InputError, *words, call=lambda: seg(BI8, k))


@pytest.mark.parametrize(
    "bins, words",
    [
        (2**40, ["bins=1099511627776", "out of range"]),
        ("many", ["bins", "'many'", "whole number"]),
        (1, ["bins=1", "2 to"]),
        (None, None),
    ],
)
def test_bins_float(bins, words):
    if words is None:
        same_labels(seg(BI, bins=bins), TRUTH)
    else:
        raises(InputError, *words, call=lambda: seg(BI, bins=bins))


def c_bins_on_integers():
    raises(InputError, "bins", "bins=None", call=lambda: seg(BI8, bins=64))


def c_bins_colour_grid():
    raises(InputError, "bins", call=lambda: seg(RGB.astype(float), channel_axis=-1, bins=2**20))


def c_quantize_grey_default_channel_axis():
    raises(InputError, "channel_axis=None", call=lambda: ng.quantize(BI8, 2))


def c_single_channel_axis():
    raises(InputError, "single channel", "channel_axis=None", call=lambda: seg(BI8[..., None], channel_axis=-1))


def c_two_channels():
    img = np.stack([BI8, BI8 // 2], axis=0)  # (C, Y, X)
    same_labels(seg(img, channel_axis=0), TRUTH)


def c_seven_channels():
    img = np.stack([BI8 // (c + 1) for c in range(7)], axis=-1)
    same_labels(seg(img, channel_axis=-1), TRUTH)


def c_nine_channels():
    img = np.stack([BI8] * 9, axis=-1)
    raises(InputError, "9 entries", "2 to 8", call=lambda: seg(img, channel_axis=-1))


def c_rgba_warns():
    img = np.concatenate([RGB, np.full(RGB.shape[:2] + (1,), 255, np.uint8)], axis=-1)
    with pytest.warns(UserWarning, match="alpha"):
        lab = seg(img, channel_axis=-1)
    same_labels(lab, seg(RGB, channel_axis=-1))


def c_rgb_without_channel_axis():
    img = np.zeros((32, 32, 3), np.uint8)
    raises(InputError, "channel_axis=-1", call=lambda: seg(img))


def c_init_model_other_k():
    m3 = ng.fit_mixture(BI8, 3, max_iter=300)
    raises(InputError, "init model", "3 components", call=lambda: seg(BI8, 2, init=m3))


def c_init_model_other_d():
    mc = ng.fit_mixture(RGB, 2, channel_axis=-1)
    raises(InputError, "3 features", call=lambda: seg(BI8, 2, init=mc))


def c_init_model_same_kd():
    m = model2()
    same_labels(seg(BI8, 2, init=m), TRUTH)


def c_predict_other_d():
    raises(InputError, "feature", "channel_axis", call=lambda: model2().predict(RGB, channel_axis=-1))


# --------------------------------------------------------------------------------------------
# views and memory layouts: the contiguous copy's result, input never modified


def c_non_contiguous():
    big = np.repeat(BI8, 2, axis=1)
    view = big[:, ::2]
    assert not view.flags.c_contiguous
    same_labels(seg(view), seg(np.ascontiguousarray(view)))


def c_negative_stride():
    view = BI[::-1, ::-1]
    same_labels(seg(view), seg(view.copy()))


def c_fortran_order():
    same_labels(seg(np.asfortranarray(BI8)), TRUTH)


def c_read_only_unmodified():
    img = BI.copy()
    img[0, 0] = np.nan
    img.flags.writeable = False
    before = img.copy()
    lab = seg(img)
    np.testing.assert_array_equal(img, before)
    assert lab[0, 0] == 0
    q = ng.quantize(img, 2, channel_axis=None)
    assert np.isnan(q[0, 0]) and q.flags.writeable


def c_quantize_non_contiguous_colour():
    view = RGB[:, ::-1]
    np.testing.assert_array_equal(ng.quantize(view, 2), ng.quantize(view.copy(), 2))


# --------------------------------------------------------------------------------------------
# masks


def c_mask_wrong_shape():
    raises(InputError, "mask has shape", call=lambda: seg(BI8, mask=np.ones((5, 5), bool)))


def c_mask_all_false():
    raises(InputError, "mask excludes every pixel", call=lambda: seg(BI8, mask=np.zeros(BI8.shape, bool)))


def c_mask_int_dtype():
    m = np.ones(BI8.shape, np.int32)
    m[0] = 0
    same_labels(seg(BI8, mask=m), seg(BI8, mask=m.astype(bool)))
    assert (seg(BI8, mask=m)[0] == 0).all()


def c_mask_string_dtype():
    m = np.full(BI8.shape, "yes")
    raises(InputError, "mask has dtype", "boolean", call=lambda: seg(BI8, mask=m))


def c_mask_float_dtype():
    m = np.ones(BI8.shape) * 0.5
    same_labels(seg(BI8, mask=m), TRUTH)


# --------------------------------------------------------------------------------------------
# MixtureModel given by hand / from a dict


def c_from_dict_none():
    raises(InputError, "from_dict", "dict", call=lambda: MixtureModel.from_dict(None))


def c_from_dict_missing():
    raises(InputError, "'means'", "'covariances'", call=lambda: MixtureModel.from_dict({"weights": [1.0]}))


def c_from_dict_bad_history():
    d = dict(model2().to_dict(), history={"means": [1, 2, 3]})
    raises(InputError, "history['means']", call=lambda: MixtureModel.from_dict(d))


def c_from_dict_history_wrong_length():
    d = model2().to_dict()
    d["history"]["weights"] = d["history"]["weights"][:1]
    n = len(d["history"]["means"])  # the fit's iterations + 1
    words = (f"history['means'] has {n} entries", "history['weights'] has 1")
    raises(InputError, *words, call=lambda: MixtureModel.from_dict(d))


def c_from_dict_nan_mean():
    d = dict(model2().to_dict(), means=[[np.nan], [1.0]], history=None)
    raises(InputError, "means", "nan", call=lambda: MixtureModel.from_dict(d))


def c_from_dict_negative_variance():
    d = dict(model2().to_dict(), covariances=[-1.0, 1.0], history=None)
    raises(InputError, "variances", "> 0", call=lambda: MixtureModel.from_dict(d))


def c_from_dict_round_trip():
    m = model2()
    m2 = MixtureModel.from_dict(m.to_dict())
    same_labels(m2.predict(BI8), m.predict(BI8))
    np.testing.assert_array_equal(m2.history["means"], m.history["means"])


def c_model_weights_string():
    raises(InputError, "weights", call=lambda: MixtureModel("ab", [1.0, 2.0], [1.0, 1.0]))


def c_model_full_not_pd():
    raises(
        InputError,
        "positive definite",
        call=lambda: MixtureModel([1.0], [[0.0, 0.0]], [[[1.0, 2.0], [2.0, 1.0]]], "full"),
    )


def c_pdf_iteration_out_of_range():
    m = model2()
    raises(InputError, "iteration=1000000", "iteration=none", call=lambda: m.pdf([1.0], iteration=10**6))
    np.testing.assert_array_equal(m.pdf([50.0], iteration=-1), m.pdf([50.0], iteration=m.n_iter))


def c_thresholds_infinite_bound():
    m = model2()
    t = m.thresholds(0, np.inf)
    # reference: where the most probable component changes on a dense grid
    x = np.linspace(0, 4000, 400_001)
    v = m.variances[:, 0]
    lp = np.log(m.weights) - 0.5 * np.log(2 * np.pi * v) - 0.5 * (x[:, None] - m.means[:, 0]) ** 2 / v
    ref = x[np.flatnonzero(np.diff(np.argmax(lp, axis=1))) + 1]
    assert len(t) == len(ref) and np.allclose(t, ref, atol=0.02)
    assert 110 < t[0] < 130
    np.testing.assert_allclose(m.thresholds(0, 255), t[:1])


def c_thresholds_nan_or_reversed():
    m = model2()
    raises(InputError, "lo <= hi", call=lambda: m.thresholds(np.nan, 1))
    raises(InputError, "lo <= hi", call=lambda: m.thresholds(5, 1))


# --------------------------------------------------------------------------------------------
# K against the data: no empty components where the data allow K non-empty ones


def c_k_equals_distinct_values():
    img = np.repeat(np.array([1, 2, 3, 4, 50], np.uint8), 20).reshape(10, 10)
    lab = seg(img, 5)
    same_labels(lab, np.repeat(np.arange(1, 6), 20).reshape(10, 10))


def c_k3_on_bimodal():
    lab, m = seg(BI8, 3, max_iter=500, return_model=True)
    assert set(np.unique(lab)) == {1, 2, 3}
    assert (m.weights * lab.size >= 0.5).all()


def c_k_more_than_distinct():
    img = np.repeat(np.array([1, 2, 3], np.uint8), 4)
    raises(InputError, "n_components=4", "3 distinct", call=lambda: seg(img, 4))


# --------------------------------------------------------------------------------------------
# callbacks that raise


def c_progress_cancelled():
    def cancel(done, total):
        raise Cancelled

    with pytest.raises(Cancelled):
        seg(BI8, progress=cancel)


def c_progress_not_callable_spatial():
    raises(InputError, "progress", "'yes'", call=lambda: seg(BI8, beta=1.0, progress="yes"))


def c_progress_raises_other():
    def boom(done, total):
        raise KeyError("from the callback")

    with pytest.raises(KeyError, match="from the callback"):
        seg(BI8, progress=boom)


def c_quantize_method_progress_cancelled():
    def cancel(done, total):
        raise Cancelled

    with pytest.raises(Cancelled):
        model2().quantize(BI8, progress=cancel)


def c_background_progress_raises():
    def cancel(done, total):
        raise Cancelled

    with pytest.raises(Cancelled):
        ng.subtract_background(STACK, progress=cancel)


def c_background_should_stop():
    with pytest.raises(InterruptedError):
        ng.subtract_background(STACK, should_stop=lambda: True)


# --------------------------------------------------------------------------------------------
# background stacks


def _fg(stack, **kw):
    return ng.subtract_background(stack, **kw).foreground


def c_bg_big_endian_u2():
    s = STACK.astype(np.uint16) * 100
    np.testing.assert_array_equal(_fg(s.astype(">u2")), _fg(s.astype("=u2")))


def c_bg_big_endian_f4():
    s = STACK.astype(np.float32) / 255
    np.testing.assert_array_equal(_fg(s.astype(">f4")), _fg(s))


def c_bg_float16():
    s = (STACK.astype(np.float32) / 255).astype(np.float16)
    np.testing.assert_array_equal(_fg(s), _fg(s.astype(np.float32)))


def c_bg_model_apply_big_endian():
    a, b = ng.BackgroundModel(STACK.shape[1:]), ng.BackgroundModel(STACK.shape[1:])
    for f in STACK.astype(np.float32):
        np.testing.assert_array_equal(a.apply(f.astype(">f4")), b.apply(f))


@pytest.mark.parametrize("background", ["all", "last"])
def test_bg_uint32_near_top(background):
    s = (STACK.astype(np.int64) + (2**32 - 300)).astype(np.uint32)
    bg = ng.subtract_background(s, background=background).background
    truth = np.median(s.astype(np.float64), axis=0)
    # float32 model state: within a few float32 steps (256 at 4.29e9) of the truth, never wrapped to 0
    assert bg.dtype == np.uint32 and np.abs(bg.astype(np.float64) - truth).max() <= 1024


@pytest.mark.parametrize("background", ["all", "last"])
def test_bg_int64_at_max(background):
    top = np.iinfo(np.int64).max
    s = np.full((6, 8, 8), top, np.int64)
    bg = ng.subtract_background(s, background=background).background
    # never wrapped to int64's minimum; at most one float32 step (2**39 at 2**63) below the top
    assert bg.dtype == np.int64 and (bg <= top).all() and (bg >= top - 2**40).all()


def c_bg_uint64_above_2_63():
    offs = STACK.astype(np.int64) * 10**15
    s = np.uint64(2**63) + offs.astype(np.uint64)
    res = ng.subtract_background(s, background="last")
    bg = res.background
    # reference: the offset int64 copy (MOG2 is translation invariant up to float32 rounding; same
    # data_range, so the same scale), its background shifted back with Python ints
    ref = ng.subtract_background(offs, background="last", data_range=res.params["data_range"])
    assert bg.dtype == np.uint64 and (bg >= np.uint64(2**63)).all()  # never wrapped
    want = np.array([int(v) + 2**63 for v in ref.background.ravel()], dtype=object)
    err = np.abs(np.array([int(v) for v in bg.ravel()], dtype=object) - want).max()
    assert err <= 1e-6 * 2**63, err  # float32 model state: a few float32 steps at 9.3e18, not a wrap
    np.testing.assert_array_equal(res.foreground, ref.foreground)


def c_bg_camel_case():
    raises(TypeError, "varThreshold", "'var_threshold'", call=lambda: ng.subtract_background(STACK, varThreshold=20))


def c_bg_model_camel_case():
    raises(TypeError, "nMixtures", "'n_mixtures'", call=lambda: ng.BackgroundModel((8, 8), nMixtures=3))


@pytest.mark.parametrize(
    "kw, name",
    [
        (dict(n_mixtures=0), "n_mixtures"),
        (dict(n_mixtures=17), "n_mixtures"),
        (dict(var_min=80.0), "var_min"),
        (dict(background_ratio=1.5), "background_ratio"),
        (dict(history=0), "history"),
        (dict(median_size=4), "median_size"),
    ],
)
def test_bg_parameter_out_of_range(kw, name):
    raises(InputError, name, call=lambda: ng.subtract_background(STACK, **kw))


def c_bg_one_frame():
    raises(InputError, "t >= 2", call=lambda: ng.subtract_background(STACK[:1]))


def c_bg_two_frames():
    res = ng.subtract_background(STACK[:2])
    assert res.foreground.shape == (2, 16, 16) and set(np.unique(res.foreground)) <= {0, 1, 2}


def c_bg_3x3_pixels():
    raises(InputError, "4 pixels", call=lambda: ng.subtract_background(STACK[:, :3, :3]))


def c_bg_nan_frame():
    s = STACK.astype(np.float32)
    s[4, 2, 2] = np.nan
    raises(InputError, "frame 4", "nan", call=lambda: ng.subtract_background(s))


def c_bg_input_unmodified():
    s = STACK.astype(">u2")
    before = s.copy()
    ng.subtract_background(s)
    np.testing.assert_array_equal(s, before)
    assert s.dtype == np.dtype(">u2")


# --------------------------------------------------------------------------------------------
# dask: the same answers, chunk by chunk


@pytest.mark.parametrize("kind", ["uint64-across-2**63", ">f4", "float16", ">i2"])
def test_dask_same_as_numpy(kind):
    da = pytest.importorskip("dask.array")
    img = {
        "uint64-across-2**63": np.uint64(2**63) + (BI8.astype(np.int64) * 10**16 - 5 * 10**17).astype(np.uint64),
        ">f4": BI.astype(">f4"),
        "float16": BI.astype(np.float16),
        ">i2": BI8.astype(">i2"),
    }[kind]
    d = da.from_array(img, chunks=(7, 9))
    same_labels(seg(d).compute(), seg(img))
    same_labels(seg(img), TRUTH)
    h, hn = ng.histogram(d), ng.histogram(img)
    np.testing.assert_array_equal(h.values, hn.values)
    np.testing.assert_array_equal(h.counts, hn.counts)
    q = ng.quantize(d, 2, channel_axis=None)
    assert q.dtype == img.dtype
    np.testing.assert_array_equal(q.compute(), ng.quantize(img, 2, channel_axis=None))


# --------------------------------------------------------------------------------------------

CASES = {name[2:]: f for name, f in list(globals().items()) if name.startswith("c_") and callable(f)}


@pytest.mark.parametrize("case", sorted(CASES))
def test_case(case):
    CASES[case]()
