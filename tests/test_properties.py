"""Property tests (hypothesis) of the mixture fits and the background model (issue 10).

Images are drawn as a few noisy classes (sizes, means, spreads, dtypes and K drawn by hypothesis)
and built with NumPy from a drawn seed: small, so that the examples are fast. Every test runs a
fixed number of examples, derandomised (the same examples on every run: CI is reproducible), with
no deadline (the machine is shared; timings are not a property). Sized so that this module and
tests/test_inputs.py together take well under 20 s once the kernels are compiled.
"""

import warnings

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import napari_gmm as ng  # noqa: E402
from napari_gmm import ConvergenceWarning  # noqa: E402

FAST = settings(
    max_examples=12, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow]
)

INT_DTYPES = [np.uint8, np.uint16, np.int16, np.int32, np.int64, np.uint64]


@st.composite
def images(draw, kinds="iuf"):
    """(image, K): 2 to 3 noisy classes in a (h, w) image with at least K distinct values."""
    seed = draw(st.integers(0, 2**32 - 1))
    h, w = draw(st.integers(3, 12)), draw(st.integers(3, 12))
    n_cls = draw(st.integers(2, 3))
    dtype = np.dtype(
        draw(st.sampled_from([d for d in INT_DTYPES + [np.float32, np.float64] if np.dtype(d).kind in kinds]))
    )
    rng = np.random.default_rng(seed)
    means = np.sort(rng.uniform(20, 230, n_cls))
    sd = rng.uniform(1, 15, n_cls)
    cls = rng.integers(0, n_cls, (h, w))
    img = means[cls] + sd[cls] * rng.normal(size=(h, w))
    img = np.clip(img, 0, 255)
    img = np.rint(img).astype(dtype) if dtype.kind in "ui" else img.astype(dtype)
    k = draw(st.integers(1, min(4, len(np.unique(img)))))
    if len(np.unique(img)) < 2:
        img.flat[0] = img.flat[0] + 1 if img.flat[0] < 200 else img.flat[0] - 1
    return img, k


def fit(img, k, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.simplefilter("ignore", ConvergenceWarning)  # a property holds converged or not
        warnings.filterwarnings("ignore", "component", UserWarning)  # may end empty: still a model
        return ng.segment(img, k, return_model=True, **kw)


@FAST
@given(images())
def test_labels_within_k_and_weights_sum_to_one(case):
    img, k = case
    labels, model = fit(img, k)
    assert labels.shape == img.shape and labels.dtype == np.uint8
    assert labels.min() >= 1 and labels.max() <= k  # no pixel is masked, NaN or inf here
    assert model.weights.shape == (k,) and abs(model.weights.sum() - 1) < 1e-9
    assert np.all(model.weights >= 0)
    assert np.all(np.diff(model.means[:, 0]) >= 0)  # labels ordered by mean
    assert np.all(np.isfinite(model.history["log_likelihood"]))


@FAST
@given(images(kinds="f"), st.sampled_from(["ranges", "quantiles", "kmeans++"]))
def test_log_likelihood_never_decreases(case, init):
    """Plain EM (tol=0: no acceleration) never lowers the log-likelihood. Tested without
    regularisation's effect (reg_covar tiny against the data's spread): adding reg_covar to the
    variances makes the M-step no longer the likelihood's maximiser, and hypothesis found
    decreases of 0.009 nats per pixel with the default reg_covar (1/12) on a 3x3 integer image
    with K=3 whose components sit on one or two grey levels each."""
    img, k = case
    try:
        _, model = fit(img, k, init=init, random_state=0, tol=0, max_iter=30, reg_covar=1e-9)
    except ng.FitError:  # a component collapsed onto one value: no regularisation to stop it
        hypothesis.reject()
    ll = model.history["log_likelihood"]
    assert np.all(np.isfinite(ll))
    assert np.all(np.diff(ll) >= -1e-9 * np.maximum(1, np.abs(ll[1:]))), ll


@FAST
@given(images(), st.integers(0, 2**31 - 1), st.sampled_from(["random", "kmeans++"]))
def test_same_random_state_same_output(case, seed, init):
    img, k = case
    a, ma = fit(img, k, init=init, n_init=2, random_state=seed)
    b, mb = fit(img, k, init=init, n_init=2, random_state=seed)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ma.means, mb.means)
    np.testing.assert_array_equal(ma.history["log_likelihood"], mb.history["log_likelihood"])


@FAST
@given(images(kinds="iu"), st.integers(0, 2**32 - 1))
def test_pixel_permutation_invariance(case, seed):
    """Integer data: the histogram of a permuted image is the same, so is everything else."""
    img, k = case
    perm = np.random.default_rng(seed).permutation(img.size)
    a, ma = fit(img, k)
    b, mb = fit(img.ravel()[perm].reshape(img.shape), k)
    np.testing.assert_array_equal(b.ravel(), a.ravel()[perm])
    np.testing.assert_array_equal(ma.means, mb.means)
    np.testing.assert_array_equal(ma.covariances, mb.covariances)


@FAST
@given(images(kinds="iu"), st.integers(-(10**6), 10**6))
def test_integer_offset_invariance(case, offset):
    """img + c (int64, exact): the same labels, means shifted by c (float64 rounding aside)."""
    img, k = case
    base = img.astype(np.int64)
    kw = dict(tol=0, max_iter=40)  # a fixed number of iterations, see test_positive_scale_invariance
    a, ma = fit(base, k, **kw)
    b, mb = fit(base + offset, k, **kw)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(mb.means - offset, ma.means, atol=1e-6 * (1 + abs(offset)))
    np.testing.assert_allclose(mb.covariances, ma.covariances, rtol=1e-6, atol=1e-9)


@FAST
@given(images(kinds="f"), st.integers(-20, 20))
def test_positive_scale_invariance(case, e):
    """img * 2**e (exact in binary floating point, so the binning is the same): the same labels and
    the same fit up to the change of units."""
    img, k = case
    s = 2.0**e
    # a fixed number of plain EM iterations (tol=0): with a tolerance, two runs whose objectives
    # differ by rounding (log(variance) does not scale exactly) may stop an iteration apart, which
    # on a flat likelihood (K near the number of pixels) moves parameters by a percent
    kw = dict(tol=0, max_iter=40)
    a, ma = fit(img, k, **kw)
    b, mb = fit(img * img.dtype.type(s), k, **kw)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(mb.means, ma.means * s, rtol=1e-9)
    np.testing.assert_allclose(mb.covariances, ma.covariances * s * s, rtol=1e-8)
    # the mean log-likelihood per pixel shifts by -log(s) (a density in data units)
    assert abs(mb.lower_bound - (ma.lower_bound - np.log(s))) < 1e-9


@FAST
@given(images(kinds="f"), st.floats(0.01, 100))
def test_any_positive_scale_well_separated(case, s):
    """Any positive scale of float data with two well separated classes: the same labels."""
    img, _ = case
    img = np.where(img > np.median(img), img.dtype.type(1000), img.dtype.type(0)) + img / 100
    lab_a, _ = fit(img, 2)
    lab_b, _ = fit(img * img.dtype.type(s), 2)
    np.testing.assert_array_equal(lab_a, lab_b)


@FAST
@given(
    st.sampled_from(
        [
            (np.uint64, 0, 2**64 - 1),
            (np.int64, -(2**63), 2**63 - 1),
            (np.uint32, 0, 2**32 - 1),
            (np.int32, -(2**31), 2**31 - 1),
        ]
    ),
    st.data(),
)
def test_histogram_exact_over_the_whole_integer_range(dt, data):
    """The histogram of 32- and 64-bit integers anywhere in their range against Python ints: the
    distinct values (each float64 correctly rounded from its int) and their exact counts."""
    dtype, lo, hi = dt
    near = data.draw(st.sampled_from([lo, hi, (lo + hi) // 2]))
    ints = st.integers(max(lo, near - 2**40), min(hi, near + 2**40)) | st.integers(lo, hi)
    vals = data.draw(st.lists(ints, min_size=1, max_size=40))
    h = ng.histogram(np.array(vals, dtype=dtype))
    ref = sorted(set(vals))
    np.testing.assert_array_equal(h.values[:, 0], [float(v) for v in ref])
    np.testing.assert_array_equal(h.counts, [vals.count(v) for v in ref])
    assert h.low[0] == float(min(vals)) and h.high[0] == float(max(vals)) and h.n_pixels == len(vals)


# --------------------------------------------------------------------------------------------
# background model


@st.composite
def stacks(draw):
    seed = draw(st.integers(0, 2**32 - 1))
    t, h, w = draw(st.integers(2, 10)), draw(st.integers(4, 10)), draw(st.integers(4, 10))
    # dtypes whose MOG2 kernels the suite compiles anyway (a new dtype costs a minute of compiling
    # on a cold cache): int64 also stands for the wide integers
    dtype = draw(st.sampled_from([np.uint8, np.uint16, np.int64]))
    rng = np.random.default_rng(seed)
    s = rng.normal(draw(st.integers(10, 200)), draw(st.floats(0.5, 8)), (t, h, w))
    y, x = rng.integers(0, h - 2), rng.integers(0, w - 2)
    s[t // 2 :, y : y + 2, x : x + 2] += 50  # an object appears
    return np.clip(np.rint(s), 0, 255).astype(dtype)


@FAST
@given(stacks(), st.sampled_from([None, "all", 3]))
def test_background_state_finite_weights_sum_to_one(stack, burn_in):
    res = ng.subtract_background(stack, burn_in=burn_in, data_range=255)
    m = res.model
    assert set(np.unique(res.foreground)) <= {0, 1, 2}
    assert np.all(np.isfinite(m.background))
    h, w = stack.shape[1:]
    for y in range(h):
        for x in range(w):
            mix = m.mixture_at(y, x)
            assert np.all(np.isfinite(mix["means"])) and np.all(np.asarray(mix["variances"]) > 0)
            assert abs(float(np.sum(mix["weights"])) - 1) < 1e-5


@FAST
@given(stacks(), st.integers(1, 10**4))
def test_background_foreground_offset_invariance(stack, offset):
    """A constant offset of an integer stack (with the same data_range) gives the same foreground."""
    base = stack.astype(np.int64)
    a = ng.subtract_background(base, data_range=255)
    b = ng.subtract_background(base + offset, data_range=255)
    np.testing.assert_array_equal(a.foreground, b.foreground)
