"""Core EM: correctness against independent references, invariants, dtypes, nD, masks, bad input."""

import json
import warnings

import numpy as np
import pytest

import napari_gmm as ng
from napari_gmm import ConvergenceWarning, FitError, InputError, MixtureModel

skimage_data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def camera():
    return skimage_data.camera()


@pytest.fixture(scope="module")
def rgb_crop():
    return np.ascontiguousarray(skimage_data.astronaut()[100:164, 180:244])


def three_class(shape=(120, 160), seed=0, dtype=np.uint8, means=(40, 120, 200), sd=(8, 12, 10)):
    rng = np.random.default_rng(seed)
    truth = np.zeros(shape, np.uint8)
    truth[:, shape[1] // 3 :] = 1
    truth[:, 2 * shape[1] // 3 :] = 2
    img = np.asarray(means, float)[truth] + rng.normal(size=shape) * np.asarray(sd, float)[truth]
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "ui" else None
    if info is not None:
        img = np.clip(np.rint(img), info.min, info.max)
    return img.astype(dtype), truth + 1


# --------------------------------------------------------------------------------------------
# independent references


def naive_em(x, w, m, v, n_iter, reg):
    """Textbook EM on every pixel (no compression, no Numba), in NumPy."""
    x = x.astype(np.float64).ravel()
    for _ in range(n_iter):
        logp = -0.5 * (np.log(2 * np.pi * v)[None] + (x[:, None] - m[None]) ** 2 / v[None]) + np.log(w)[None]
        mx = logp.max(1, keepdims=True)
        r = np.exp(logp - mx)
        r /= r.sum(1, keepdims=True)
        nk = r.sum(0) + 10 * np.finfo(float).eps
        m_new = (r * x[:, None]).sum(0) / nk
        v = (r * (x[:, None] - m_new[None]) ** 2).sum(0) / nk + reg
        m = m_new
        w = nk / nk.sum()
    return w, m, v


def test_matches_naive_numpy_em(camera):
    K, n_iter, reg = 3, 25, 0.5
    model0 = ng.fit_mixture(camera, K, max_iter=1, tol=0)  # just for the ranges start
    w0 = model0.history["weights"][0]
    m0 = model0.history["means"][0][:, 0]
    v0 = model0.history["covariances"][0]
    start = MixtureModel(w0, m0, v0)
    model = ng.fit_mixture(camera, K, init=start, max_iter=n_iter, tol=0, reg_covar=reg)
    w, m, v = naive_em(camera, w0, m0, v0, n_iter, reg)
    np.testing.assert_allclose(model.weights, w, rtol=1e-6)
    np.testing.assert_allclose(model.means[:, 0], m, rtol=1e-6)
    np.testing.assert_allclose(model.covariances, v, rtol=1e-6)
    assert model.n_iter == n_iter and not model.converged


@pytest.mark.parametrize("cov_type", ["spherical", "diag", "full"])
def test_matches_sklearn_grey(camera, cov_type):
    sk = pytest.importorskip("sklearn.mixture")
    K, n_iter, reg = 3, 15, 1e-3
    x = camera.reshape(-1, 1).astype(np.float64)
    w0 = np.array([0.3, 0.4, 0.3])
    m0 = np.array([[30.0], [140.0], [210.0]])
    var0 = np.array([200.0, 900.0, 100.0])
    cov0 = {"spherical": var0, "diag": var0[:, None], "full": var0[:, None, None]}[cov_type]
    prec0 = 1.0 / cov0
    g = sk.GaussianMixture(
        K,
        covariance_type=cov_type,
        max_iter=n_iter,
        tol=0,
        reg_covar=reg,
        weights_init=w0,
        means_init=m0,
        precisions_init=prec0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g.fit(x)
    ours = ng.fit_mixture(
        camera,
        K,
        covariance_type=cov_type,
        init=MixtureModel(w0, m0, cov0, cov_type),
        max_iter=n_iter,
        tol=0,
        reg_covar=reg,
    )
    assert g.n_iter_ == ours.n_iter == n_iter
    np.testing.assert_allclose(ours.weights, g.weights_, rtol=1e-6)
    np.testing.assert_allclose(ours.means, g.means_, rtol=1e-6)
    np.testing.assert_allclose(ours.covariances, g.covariances_, rtol=1e-6)
    # and fit and predict agree with sklearn's predict on every pixel
    np.testing.assert_array_equal(ours.predict(camera).ravel() - 1, g.predict(x))


@pytest.mark.parametrize("cov_type", ["spherical", "diag", "full"])
def test_matches_sklearn_colour(rgb_crop, cov_type):
    sk = pytest.importorskip("sklearn.mixture")
    K, n_iter, reg = 4, 12, 1e-2
    x = rgb_crop.reshape(-1, 3).astype(np.float64)
    rng = np.random.default_rng(1)
    m0 = x[rng.choice(len(x), K, replace=False)] + rng.normal(size=(K, 3))
    w0 = np.full(K, 1 / K)
    var0 = np.array([[300.0, 250.0, 200.0], [400.0, 350.0, 300.0], [500.0, 450.0, 300.0], [200.0, 200.0, 260.0]])
    if cov_type == "spherical":
        cov0, prec0 = var0.mean(1), 1 / var0.mean(1)
    elif cov_type == "diag":
        cov0, prec0 = var0, 1 / var0
    else:
        cov0 = np.stack([np.diag(v) + 20.0 * (1 - np.eye(3)) for v in var0])
        prec0 = np.linalg.inv(cov0)
    g = sk.GaussianMixture(
        K,
        covariance_type=cov_type,
        max_iter=n_iter,
        tol=0,
        reg_covar=reg,
        weights_init=w0,
        means_init=m0,
        precisions_init=prec0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g.fit(x)
    ours = ng.fit_mixture(
        rgb_crop,
        K,
        channel_axis=-1,
        covariance_type=cov_type,
        init=MixtureModel(w0, m0, cov0, cov_type),
        max_iter=n_iter,
        tol=0,
        reg_covar=reg,
    )
    order = np.argsort(g.means_.mean(1), kind="stable")  # ours are sorted by brightness
    np.testing.assert_allclose(ours.weights, g.weights_[order], rtol=1e-6)
    np.testing.assert_allclose(ours.means, g.means_[order], rtol=1e-6)
    np.testing.assert_allclose(ours.covariances, g.covariances_[order], rtol=1e-6)
    labels = ours.predict(rgb_crop, channel_axis=-1)
    np.testing.assert_array_equal(np.argsort(order)[g.predict(x)] + 1, labels.ravel())


def test_recovers_known_colour_mixture():
    rng = np.random.default_rng(3)
    means = np.array([[40, 60, 200], [120, 200, 40], [220, 90, 90]], float)
    sds = np.array([6.0, 9.0, 12.0])
    n = np.array([6000, 9000, 5000])
    x = np.concatenate([rng.normal(means[k], sds[k], size=(n[k], 3)) for k in range(3)])
    img = np.clip(np.rint(x), 0, 255).astype(np.uint8).reshape(100, 200, 3)
    for cov in ("spherical", "diag", "full"):
        m = ng.fit_mixture(img, 3, channel_axis=-1, covariance_type=cov, init="kmeans++", random_state=0)
        order = np.argsort(means.mean(1))
        np.testing.assert_allclose(m.means, means[order], atol=0.6)
        np.testing.assert_allclose(np.sqrt(m.variances.mean(1)), sds[order], rtol=0.05)
        np.testing.assert_allclose(m.weights, (n / n.sum())[order], atol=0.01)


# --------------------------------------------------------------------------------------------
# the reference start and invariants


def test_ranges_start_is_the_classic_one(camera):
    m = ng.fit_mixture(camera, 2, max_iter=1, tol=0)
    v = camera.ravel().astype(float)
    lo, hi = v <= 127, v >= 128
    np.testing.assert_allclose(m.history["weights"][0], [lo.mean(), hi.mean()])
    np.testing.assert_allclose(m.history["means"][0][:, 0], [v[lo].mean(), v[hi].mean()])
    np.testing.assert_allclose(m.history["covariances"][0], [v[lo].var() + 1 / 12, v[hi].var() + 1 / 12])


def test_log_likelihood_is_monotone_and_history_consistent(camera):
    m = ng.fit_mixture(camera, 4, max_iter=200, tol=1e-9)
    ll = m.history["log_likelihood"]
    assert len(ll) == m.n_iter + 1 == len(m.history["weights"])
    assert np.all(np.diff(ll) >= -1e-9), np.diff(ll).min()
    assert ll[-1] == pytest.approx(m.lower_bound)
    assert m.lower_bound == pytest.approx(m.score(camera), rel=1e-12)
    np.testing.assert_allclose(m.history["weights"][-1], m.weights)
    np.testing.assert_allclose(m.history["weights"].sum(1), 1.0)


def test_better_than_the_reference_start(camera):
    """EM only improves on the classic start: the fitted likelihood beats the start's; the default
    start (the classic one polished on the histogram) ends no lower than the classic fit (3e-8 per
    pixel: the variance floor moves EM's fixed point off the likelihood's maximum by that much)."""
    m = ng.fit_mixture(camera, 3, init="ranges")
    assert m.converged
    assert m.lower_bound > m.history["log_likelihood"][0] + 0.01
    assert ng.fit_mixture(camera, 3).lower_bound > m.lower_bound - 1e-7


def test_labels_ordered_and_fit_predict_agree(camera):
    labels, m = ng.segment(camera, 3, return_model=True)
    assert labels.dtype == np.uint8 and labels.shape == camera.shape
    assert set(np.unique(labels)) == {1, 2, 3}
    assert np.all(np.diff(m.means[:, 0]) > 0)
    # darkest label has the darkest pixels
    assert camera[labels == 1].mean() < camera[labels == 2].mean() < camera[labels == 3].mean()
    np.testing.assert_array_equal(m.predict(camera), labels)
    # MAP: every pixel's label has the highest posterior
    p = m.predict_proba(camera)
    assert p.shape == (3,) + camera.shape and p.dtype == np.float32
    np.testing.assert_array_equal(np.argmax(p, axis=0) + 1, labels)
    np.testing.assert_allclose(p.sum(0), 1.0, atol=1e-5)


def test_deterministic_and_input_untouched(camera):
    img = camera.copy()
    a = ng.segment(img, 3, init="kmeans++", random_state=5)
    b = ng.segment(img, 3, init="kmeans++", random_state=5)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(img, camera)


def test_tol_zero_runs_max_iter_and_convergence_warning(camera):
    m = ng.fit_mixture(camera, 3, max_iter=7, tol=0)
    assert m.n_iter == 7 and not m.converged
    with pytest.warns(ConvergenceWarning, match="max_iter"):
        ng.fit_mixture(camera, 3, max_iter=2, tol=1e-12)


def test_warm_start_and_transfer(camera):
    m = ng.fit_mixture(camera, 3)
    again = ng.fit_mixture(camera, 3, init=m, max_iter=5)
    np.testing.assert_allclose(again.means, m.means, rtol=1e-4)
    darker = (camera * 0.9).astype(np.uint8)
    moved = ng.fit_mixture(darker, 3, init=m)
    assert moved.means[2, 0] < m.means[2, 0] - 10
    # a start far from all data leaves an empty component: said, not silently kept
    with pytest.warns(UserWarning, match="empty"):
        ng.fit_mixture((camera // 2).astype(np.uint8), 3, init=m)


@pytest.mark.parametrize("init", ["ranges", "quantiles", "kmeans++", "random"])
def test_every_start_separates_three_classes(init):
    img, truth = three_class()
    labels = ng.segment(img, 3, init=init, random_state=0, n_init=2)
    assert (labels == truth).mean() > 0.99


def test_json_round_trip(camera):
    m = ng.fit_mixture(camera, 3)
    d = json.loads(json.dumps(m.to_dict()))
    m2 = MixtureModel.from_dict(d)
    np.testing.assert_allclose(m2.means, m.means)
    np.testing.assert_allclose(m2.history["means"], m.history["means"])
    assert m2.n_iter == m.n_iter and m2.converged == m.converged
    np.testing.assert_array_equal(m2.predict(camera), m.predict(camera))
    assert "label 3" in m.summary()


def test_pdf_and_thresholds(camera):
    m = ng.fit_mixture(camera, 2)
    x = np.arange(256.0)
    pdf = m.pdf(x)
    assert pdf.shape == (256, 2)
    assert pdf.sum() == pytest.approx(1.0, abs=0.02)
    t = m.thresholds(0, 255)
    assert t.size == 1
    assert m.predict(np.array([np.floor(t[0])], np.uint8))[0] == 1
    assert m.predict(np.array([np.ceil(t[0])], np.uint8))[0] == 2
    np.testing.assert_allclose(m.pdf(x, iteration=0).sum(1) > 0, True)


# --------------------------------------------------------------------------------------------
# dtypes, nD, per-axis, masks, floats


@pytest.mark.parametrize(
    "dtype", [np.uint8, np.uint16, np.int8, np.int16, np.int32, np.int64, np.uint32, np.float16, np.float32, np.float64]
)
def test_every_dtype(dtype):
    if np.dtype(dtype).kind == "i" and np.iinfo(dtype).min < 0:
        img, truth = three_class(
            dtype=dtype,
            means=(-60, 0, 60) if dtype == np.int8 else (-500, 200, 900),
            sd=(6, 8, 7) if dtype == np.int8 else (60, 80, 70),
        )
    elif dtype == np.uint16 or dtype == np.uint32:
        img, truth = three_class(dtype=dtype, means=(1000, 5000, 9000), sd=(300, 400, 350))
    else:
        img, truth = three_class(dtype=dtype)
    labels = ng.segment(img, 3)
    assert labels.dtype == np.uint8
    assert (labels == truth).mean() > 0.99


def test_wide_integer_range_is_exact():
    img, truth = three_class(dtype=np.int64, means=(-(10**9), 0, 10**9), sd=(10**6, 10**6, 10**6))
    h = ng.histogram(img)
    assert h.kind == "integer-sparse" and h.counts.sum() == img.size
    assert (ng.segment(img, 3) == truth).mean() > 0.999


def test_integer_histogram_is_exact(camera):
    h = ng.histogram(camera)
    np.testing.assert_array_equal(h.counts, np.bincount(camera.ravel())[np.unique(camera)])
    assert h.kind == "integer" and h.n_pixels == camera.size


def test_nd_and_split_axis():
    img, truth = three_class((40, 50))
    stack = np.stack([img, (img * 0.7).astype(np.uint8), (img * 0.4).astype(np.uint8)])
    lab3d = ng.segment(stack, 3)
    assert lab3d.shape == stack.shape
    labs, models = ng.segment(stack, 3, split_axis=0, return_model=True)
    assert len(models) == 3
    for t in range(3):
        np.testing.assert_array_equal(labs[t], ng.segment(stack[t], 3))
        assert (labs[t] == truth).mean() > 0.98
    assert models[2].means[2, 0] < models[0].means[2, 0]
    # 4D with split over axis 1
    four = np.stack([stack, stack])
    l4 = ng.segment(four, 3, split_axis=1)
    np.testing.assert_array_equal(l4[1, 2], ng.segment(four[:, 2], 3)[1])
    calls = []
    ng.segment(stack, 3, split_axis=0, max_iter=50, progress=lambda d, n: calls.append((d, n)))
    done = [d for d, _ in calls]
    # 3 fits of 50 EM iterations, each with a compression and a look-up counted as a tenth of its fit
    assert {n for _, n in calls} == {180} and calls[-1] == (180, 180)
    assert done == sorted(done) and (55, 180) in calls and (115, 180) in calls and len(calls) >= 6


def test_progress_can_cancel_a_fit(rgb_crop):
    seen = []

    def progress(done, total):
        seen.append(done)
        if done >= 30:
            raise KeyboardInterrupt("cancelled")

    with pytest.raises(KeyboardInterrupt):
        ng.segment(rgb_crop, 8, channel_axis=-1, init="kmeans++", max_iter=200, tol=0, progress=progress)
    assert seen == [20, 25, 30]  # compression (20 units), then stopped after 10 of 200 EM iterations


def test_mask(camera):
    mask = np.zeros(camera.shape, bool)
    mask[100:400, 100:400] = True
    labels, m = ng.segment(camera, 2, mask=mask, return_model=True)
    assert np.all(labels[~mask] == 0) and np.all(labels[mask] > 0)
    ref = ng.fit_mixture(camera[100:400, 100:400], 2)
    np.testing.assert_allclose(m.means, ref.means)
    # an integer (Labels-like) mask counts nonzero as True
    np.testing.assert_array_equal(ng.segment(camera, 2, mask=mask.astype(np.uint8) * 7), labels)


def test_float_nan_inf():
    img, truth = three_class(dtype=np.float32)
    img = img / 255.0
    img[0, :5] = np.nan
    img[1, :3] = np.inf
    before = img.copy()
    with pytest.warns(UserWarning, match="infinite"):
        labels = ng.segment(img, 3)
    assert np.all(labels[0, :5] == 0) and np.all(labels[1, :3] == 0)
    ok = labels > 0
    assert (labels[ok] == truth[ok]).mean() > 0.99
    np.testing.assert_array_equal(np.isnan(before), np.isnan(img))


def test_float_bins_option():
    img, truth = three_class(dtype=np.float64)
    h = ng.histogram(img, bins=64)
    assert h.kind == "binned" and h.n_distinct <= 64 and h.counts.sum() == img.size
    assert (ng.segment(img, 3, bins=64) == truth).mean() > 0.99


def test_many_components_use_uint16():
    img = np.arange(300 * 4, dtype=np.uint16).reshape(30, 40) % 300
    labels = ng.segment(img, 256, max_iter=3, tol=0)
    assert labels.dtype == np.uint16 and labels.max() <= 256


def test_quantize_grey_and_colour(rgb_crop):
    img, truth = three_class()
    q = ng.quantize(img, 3, channel_axis=None)
    assert q.dtype == img.dtype and len(np.unique(q)) == 3
    qc, m = ng.quantize(rgb_crop, 5, return_model=True)
    assert qc.shape == rgb_crop.shape and qc.dtype == np.uint8
    assert len(np.unique(qc.reshape(-1, 3), axis=0)) == 5
    np.testing.assert_array_equal(
        np.unique(qc.reshape(-1, 3), axis=0), np.unique(np.clip(np.rint(m.means), 0, 255).astype(np.uint8), axis=0)
    )


def test_colour_channel_first_and_float():
    rng = np.random.default_rng(0)
    truth = (rng.random((40, 60)) > 0.5).astype(np.uint8)
    cols = np.array([[0.2, 0.7, 0.1], [0.8, 0.2, 0.6]])
    img = cols[truth] + rng.normal(0, 0.03, (40, 60, 3))
    chw = np.moveaxis(img, -1, 0).astype(np.float32)
    labels = ng.segment(chw, 2, channel_axis=0)
    assert labels.shape == (40, 60)
    assert (labels == truth + 1).mean() > 0.99
    assert ng.histogram(chw, channel_axis=0).kind == "pixels"
    np.testing.assert_array_equal(ng.segment(img, 2, channel_axis=-1), labels)


def test_large_float_colour_uses_grid():
    rng = np.random.default_rng(0)
    truth = (rng.random((1100, 1000)) > 0.5).astype(np.uint8)
    img = np.array([[0.2, 0.7, 0.1], [0.8, 0.2, 0.6]], np.float32)[truth]
    img += rng.normal(0, 0.03, img.shape).astype(np.float32)
    labels, m = ng.segment(img, 2, channel_axis=-1, return_model=True)
    assert m.params["compression"] == "grid"
    assert (labels == truth + 1).mean() > 0.999


def test_wide_integer_multichannel_uses_grid_above_2_20_pixels(monkeypatch):
    """16-bit multichannel data (over 24 packed bits) are nearly all distinct when noisy: unique
    colours up to 2**20 pixels, the grid above (and whenever ``bins`` is given)."""
    from napari_gmm._kernels import _config

    rng = np.random.default_rng(1)
    truth = rng.integers(0, 3, (1030, 1030))
    means = np.array([[500, 8000, 3000], [6000, 1000, 2000], [3000, 3000, 12000]])
    img = (means[truth] + rng.normal(0, 300, truth.shape + (3,))).clip(0, 65535).astype(np.uint16)
    mask = np.ones(truth.shape, bool)
    mask[:5] = False
    before = img.copy()
    assert ng.histogram(img, channel_axis=-1).kind == "grid"
    assert ng.histogram(img[:500], channel_axis=-1).kind == "colour"
    assert ng.histogram(img[:500], channel_axis=-1, bins=32).kind == "grid"
    # labels are computed per pixel in slices; a small slice gives the same labels
    labels, m = ng.segment(img, 3, channel_axis=-1, mask=mask, return_model=True)
    assert m.params["compression"] == "grid"
    by_brightness = np.array([2, 1, 3])[truth]  # labels are ordered by mean brightness
    assert (labels[5:] == by_brightness[5:]).mean() > 0.999 and (labels[:5] == 0).all()
    monkeypatch.setattr(_config, "LABEL_SLICE", 4099)
    np.testing.assert_array_equal(m.predict(img, channel_axis=-1, mask=mask), labels)
    np.testing.assert_array_equal(img, before)


def test_grid_dense_tables_equal_the_sorted_keys():
    from napari_gmm._kernels import _config as h

    rng = np.random.default_rng(2)
    img = rng.normal(size=(1200, 1000, 3)).astype(np.float32)
    img[3, 4, 1] = np.nan
    dense = ng.histogram(img, channel_axis=-1)
    assert dense.kind == "grid" and 64**3 <= h.MAX_DENSE_CELLS
    old = h.MAX_DENSE_CELLS
    try:
        h.MAX_DENSE_CELLS = 0  # force the sort-based path
        ref = ng.histogram(img, channel_axis=-1)
    finally:
        h.MAX_DENSE_CELLS = old
    np.testing.assert_array_equal(dense.counts, ref.counts)
    np.testing.assert_allclose(dense.values, ref.values, rtol=1e-9)
    assert dense.counts.sum() == img.shape[0] * img.shape[1] - 1 and dense.n_nan == 1


# --------------------------------------------------------------------------------------------
# dask


def test_dask_equals_numpy(camera):
    da = pytest.importorskip("dask.array")
    d = da.from_array(camera, chunks=(100, 130))
    mask = np.ones(camera.shape, bool)
    mask[:50] = False
    lab, m = ng.segment(d, 3, mask=mask, return_model=True)
    assert isinstance(lab, da.Array)
    ref, mref = ng.segment(camera, 3, mask=mask, return_model=True)
    np.testing.assert_array_equal(lab.compute(), ref)
    np.testing.assert_allclose(m.means, mref.means)
    f = da.from_array(camera.astype(np.float32), chunks=100)
    np.testing.assert_array_equal(ng.segment(f, 3).compute(), ng.segment(camera.astype(np.float32), 3))
    np.testing.assert_array_equal(m.predict(d, mask=mask).compute(), ref)


# --------------------------------------------------------------------------------------------
# bad input: clear messages, nothing modified


@pytest.mark.parametrize(
    "image, kwargs, match",
    [
        (np.zeros((0, 5), np.uint8), {}, "empty"),
        (np.full((8, 8), np.nan), {}, "no finite pixels"),
        (np.full((8, 8), 7, np.uint16), {}, "constant"),
        (np.array([[1, 2], [1, 2]], np.uint8), {"n_components": 3}, "choose n_components <= 2"),
        (np.arange(16, dtype=np.uint8).reshape(4, 4), {"n_components": 0}, "at least 1"),
        (np.ones((8, 8), bool), {}, "boolean"),
        (np.zeros((64, 64, 3), np.uint8), {}, "channel_axis=-1"),
        (np.arange(16, dtype=np.uint8).reshape(4, 4), {"mask": np.ones((3, 3), bool)}, "mask has shape"),
        (np.arange(16, dtype=np.uint8).reshape(4, 4), {"mask": np.zeros((4, 4), bool)}, "excludes every pixel"),
        (np.zeros((16, 16, 1), np.uint8), {"channel_axis": -1}, "single channel"),
        (np.zeros((16, 16, 3), np.uint8), {"channel_axis": 5}, "not an axis"),
        (np.zeros((3, 40, 40), np.uint8), {"channel_axis": 1}, "2 to 8 channels"),
        (np.arange(16, dtype=np.uint8).reshape(4, 4), {"covariance_type": "tied"}, "not supported"),
        (np.arange(16, dtype=np.uint8).reshape(4, 4), {"init": "magic"}, "not a start"),
        (np.arange(16, dtype=np.uint8).reshape(4, 4), {"max_iter": 0}, "max_iter"),
        (np.arange(16, dtype=np.uint8).reshape(4, 4), {"bins": 10}, "bins is for float"),
        (np.arange(16, dtype=np.complex64).reshape(4, 4), {}, "np.abs"),
    ],
)
def test_bad_input_messages(image, kwargs, match):
    before = image.copy()
    kw = dict(kwargs)
    k = kw.pop("n_components", 2)
    with pytest.raises(InputError, match=match):
        ng.segment(image, k, **kw)
    np.testing.assert_array_equal(before, image)


def test_collapse_is_one_clear_error():
    img = np.array([0] * 50 + [100] * 50 + [200] * 50, np.uint8).reshape(10, 15)
    with pytest.raises(FitError, match="collapsed.*reg_covar"):
        ng.fit_mixture(img, 3, reg_covar=0)
    # the default floor (1/12 of a grey level squared) keeps it alive
    m = ng.fit_mixture(img, 3)
    np.testing.assert_allclose(m.means[:, 0], [0, 100, 200])


def test_model_feature_mismatch(camera, rgb_crop):
    m = ng.fit_mixture(camera, 2)
    with pytest.raises(InputError, match="feature"):
        m.predict(rgb_crop, channel_axis=-1)


# --------------------------------------------------------------------------------------------
# colour edge cases (issue 3)


def test_colour_bad_input_messages(rgb_crop):
    before = rgb_crop.copy()
    with pytest.raises(InputError, match="constant"):
        ng.segment(np.full((20, 20, 3), (10, 200, 30), np.uint8), 2, channel_axis=-1)
    two = np.zeros((10, 10, 3), np.uint8)
    two[5:] = (255, 0, 0)
    with pytest.raises(InputError, match="2 distinct colours"):
        ng.segment(two, 3, channel_axis=-1)
    with pytest.raises(InputError, match="single channel"):
        ng.segment(rgb_crop[..., :1], 2, channel_axis=-1)
    with pytest.raises(InputError, match="2 to 8 channels"):
        ng.segment(rgb_crop, 2, channel_axis=0)
    rgba = np.concatenate([rgb_crop, np.full(rgb_crop.shape[:2] + (1,), 255, np.uint8)], axis=-1)
    for f in (ng.segment, ng.quantize):  # one warning per call, not one per internal step
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            f(rgba, 2, channel_axis=-1)
        assert sum("alpha" in str(w.message) for w in seen) == 1
    np.testing.assert_array_equal(before, rgb_crop)


def test_colour_nan_in_one_channel_and_int64():
    rng = np.random.default_rng(0)
    truth = (rng.random((30, 40)) > 0.5).astype(np.uint8)
    img = np.array([[0.2, 0.7, 0.1], [0.8, 0.2, 0.6]])[truth] + rng.normal(0, 0.02, (30, 40, 3))
    img[0, 0, 1] = np.nan
    labels = ng.segment(img, 2, channel_axis=-1)
    assert labels[0, 0] == 0
    assert (labels.ravel()[1:] == truth.ravel()[1:] + 1).all()
    big = (np.nan_to_num(img, nan=0.5) * 1e12).astype(np.int64)  # 40 bits a channel: too wide to pack
    lab64, m = ng.segment(big, 2, channel_axis=-1, return_model=True)
    assert m.params["compression"] == "pixels"
    assert (lab64 == truth + 1).mean() > 0.99


def test_colour_unique_compression_is_exact(rgb_crop):
    h = ng.histogram(rgb_crop, channel_axis=-1)
    u, c = np.unique(rgb_crop.reshape(-1, 3), axis=0, return_counts=True)
    assert h.kind == "colour"
    order = np.lexsort(h.values.T[::-1])
    np.testing.assert_array_equal(h.values[order], u)
    np.testing.assert_array_equal(h.counts[order], c)


def test_colour_n_init_keeps_best(rgb_crop):
    one = ng.fit_mixture(rgb_crop, 6, channel_axis=-1, init="random", random_state=3)
    many = ng.fit_mixture(rgb_crop, 6, channel_axis=-1, init="random", random_state=3, n_init=4)
    assert many.lower_bound >= one.lower_bound - 1e-12
