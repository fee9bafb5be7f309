"""Choosing K (n_components="auto"), censored clipped levels and interval labels.

Small images only (at most 256 x 256): the whole file runs in seconds.
"""

import json

import numpy as np
import pytest
from scipy import optimize, special, stats

import napari_gmm as ng
from napari_gmm import censored as cz
from napari_gmm import em
from napari_gmm import selection as sl
from napari_gmm.datasets import cameraman, phantom


def _classes(means, sd, fractions, n=256 * 256, seed=0, dtype=np.uint8, top=255):
    """Pixels of known Gaussian classes, rounded and clipped into ``dtype`` (floats: [0, top])."""
    rng = np.random.default_rng(seed)
    z = rng.choice(len(means), n, p=np.asarray(fractions) / np.sum(fractions))
    y = rng.normal(np.asarray(means, float)[z], np.broadcast_to(np.asarray(sd, float), (len(means),))[z])
    if np.dtype(dtype).kind == "f":
        return np.clip(y, 0, top).astype(dtype).reshape(-1, 256)
    return np.clip(np.rint(y), 0, top).astype(dtype).reshape(-1, 256)


# ---- censored EM against a direct maximisation ------------------------------------------------


def test_censored_em_reaches_the_direct_maximum_of_the_censored_likelihood():
    """EM with the tail terms (reg_covar=0) and Nelder-Mead on the censored log-likelihood itself
    (density for measured levels, tail mass for the clipped ones) agree."""
    img = _classes([80, 232], [15, 12], [0.6, 0.4], n=256 * 20, seed=1)
    h = ng.histogram(img)
    c = cz.detect_censoring(h)
    assert c is not None and c.upper == 254.5 and c.lower is None
    P = cz.CensoredSamples(h.values, h.counts, c, 0.0)
    start = em.Params.from_sklearn([0.5, 0.5], [70.0, 220.0], [100.0, 100.0], "spherical")
    res = em.run_em(P, start, max_iter=3000, tol=1e-13)
    x, n = P.X[:, 0], P.w
    ((cu, nu, _),) = P.groups

    def nll(t):
        w1 = special.expit(t[0])
        wts, mu, sd = np.array([w1, 1 - w1]), t[1:3], np.exp(t[3:5])
        ll = n @ np.log(stats.norm.pdf(x[:, None], mu, sd) @ wts) + nu * np.log(stats.norm.sf(cu, mu, sd) @ wts)
        return -ll / P.total_weight

    o = optimize.minimize(
        nll,
        [0.0, 70, 220, np.log(10), np.log(10)],
        method="Nelder-Mead",
        options=dict(xatol=1e-9, fatol=1e-14, maxiter=40000, maxfev=40000),
    )
    assert -o.fun == pytest.approx(res.objective, abs=1e-9)
    np.testing.assert_allclose(res.params.means[:, 0], o.x[1:3], rtol=1e-5)
    np.testing.assert_allclose(np.sqrt(res.params.cov[:, 0, 0]), np.exp(o.x[3:5]), rtol=1e-4)
    assert res.params.weights[0] == pytest.approx(special.expit(o.x[0]), abs=1e-6)
    # the objective is the same function: P.objective at the optimum equals -nll
    assert P.objective(res.params) == pytest.approx(-o.fun, abs=1e-9)


def test_censored_fit_recovers_a_clipped_class_and_the_plain_fit_does_not():
    """8 % of the bright class saturated at 255: censored means and sd within 2 % of the truth."""
    img = _classes([70, 220], [18, 24], [0.5, 0.5], seed=2)
    true_sd = np.array([18.0, 24.0])
    m = ng.fit_mixture(img, 2)  # censoring="auto"
    assert m.censoring is not None and m.censoring.upper == 254.5 and m.censoring.how == "detected"
    plain = ng.fit_mixture(img, 2, censoring=False)
    assert plain.censoring is None
    err_c = np.abs(np.sqrt(m.variances[:, 0]) - true_sd) / true_sd
    err_p = np.abs(np.sqrt(plain.variances[:, 0]) - true_sd) / true_sd
    assert err_c.max() < 0.02 and err_p[1] > 0.05
    assert abs(m.means[1, 0] - 220) / 24 < 0.01 < abs(plain.means[1, 0] - 220) / 24


# ---- detection ------------------------------------------------------------------------------------


def test_no_censoring_detected_on_unclipped_images_and_results_identical():
    imgs = [
        cameraman()[::2, ::2],  # 256 x 256: the same unclipped histogram shape, a quarter of the pixels
        _classes([60, 130, 190], 12, [3, 2, 1], seed=3),
        phantom((128, 128), dtype=np.uint16, seed=2)[0],
        _classes([0.3, 0.6], 0.05, [1, 1], dtype=np.float32, top=1.0),
    ]
    for img in imgs:
        assert cz.detect_censoring(ng.histogram(img), "auto") is None
        a = ng.fit_mixture(img, 3)
        b = ng.fit_mixture(img, 3, censoring=False)
        assert a.censoring is None
        np.testing.assert_array_equal(a.means, b.means)
        np.testing.assert_array_equal(a.covariances, b.covariances)
        np.testing.assert_array_equal(a.weights, b.weights)
        assert a.lower_bound == b.lower_bound and a.n_iter == b.n_iter
        np.testing.assert_array_equal(ng.segment(img, 3), ng.segment(img, 3, censoring=False))


def test_detection_on_clipped_images_of_every_kind():
    u8 = _classes([60, 235], 15, [1, 1])
    c = cz.detect_censoring(ng.histogram(u8))
    assert c.upper == 254.5 and c.lower is None and c.n_upper == np.sum(u8 == 255)
    # a 12-bit camera inside uint16 data: clipped at 4095, not at the dtype limit
    cam12 = _classes([300, 3900], 150, [1, 1], dtype=np.uint16, top=4095)
    c = cz.detect_censoring(ng.histogram(cam12))
    assert c.upper == 4094.5 and c.upper_level == 4095
    # float data clipped at 0 and 1: the extreme bins' inner edges
    f = _classes([0.05, 0.9], 0.08, [1, 1], dtype=np.float32, top=1.0)
    h = ng.histogram(f)
    c = cz.detect_censoring(h)
    assert c.lower == pytest.approx(h.spec.lo + h.spec.width) and c.upper == pytest.approx(1.0 - h.spec.width)
    # a pile beside an empty gap (zero padding) is not clipping
    pad = _classes([120, 160], 10, [1, 1])
    pad[:40] = 0
    assert cz.detect_censoring(ng.histogram(pad)) is None
    # forced on and off
    assert cz.detect_censoring(ng.histogram(pad), True).lower == 0.5
    assert cz.detect_censoring(ng.histogram(u8), "lower").upper is None
    assert cz.detect_censoring(ng.histogram(u8), False) is None


def test_censored_pixels_are_labelled_by_the_tail():
    """The saturated pixels belong to the bright class; posteriors agree with the labels."""
    img = _classes([60, 140, 238], 14, [1, 1, 1], seed=4)
    labels, model = ng.segment(img, 3, return_model=True)
    assert model.censoring.upper is not None
    assert np.all(labels[img == 255] == 3)
    proba = model.predict_proba(img)
    np.testing.assert_array_equal(np.argmax(proba, axis=0) + 1, labels)
    np.testing.assert_allclose(proba.sum(axis=0), 1.0, rtol=1e-5)
    assert model.score(img) == pytest.approx(model.lower_bound, rel=1e-12)  # scored as it was fitted


# ---- criteria against NumPy -------------------------------------------------------------------------


def _numpy_loglik(pixels, model):
    """Total log-likelihood over the pixels, censored levels by their tail (NumPy/SciPy only)."""
    x = pixels.reshape(-1).astype(np.float64)
    w, mu, sd = model.weights, model.means[:, 0], np.sqrt(model.variances[:, 0])
    f = stats.norm.pdf(x[:, None], mu, sd) @ w
    c = model.censoring
    if c is not None and c.upper is not None:
        f[x >= c.upper_level] = stats.norm.sf(c.upper, mu, sd) @ w
    if c is not None and c.lower is not None:
        f[x <= c.lower_level] = stats.norm.cdf(c.lower, mu, sd) @ w
    return np.log(f).sum(), x, f


@pytest.mark.parametrize("criterion", ["bic", "aic", "icl"])
def test_criterion_of_the_chosen_k_matches_numpy_on_the_pixels(criterion):
    img = _classes([50, 110, 225], [10, 15, 20], [2, 1, 1], n=256 * 64, seed=5)  # 7 % of class 3 at 255
    m = ng.fit_mixture(img, "auto", criterion=criterion)
    sel = m.selection
    assert sel.criterion == criterion and sel.n_components == m.n_components == 3
    assert m.censoring is not None
    K = m.n_components
    ll, x, _ = _numpy_loglik(img, m)
    N = x.size
    p = 3 * K - 1
    ref = {"bic": -2 * ll + p * np.log(N), "aic": -2 * ll + 2 * p}.get(criterion)
    if criterion == "icl":
        logp = stats.norm.logpdf(x[:, None], m.means[:, 0], np.sqrt(m.variances[:, 0])) + np.log(m.weights)
        c = m.censoring
        logp[x >= c.upper_level] = np.log(m.weights) + stats.norm.logsf(
            c.upper, m.means[:, 0], np.sqrt(m.variances[:, 0])
        )
        t = np.exp(logp - special.logsumexp(logp, axis=1, keepdims=True))
        ent = -np.sum(np.where(t > 0, t * np.log(np.where(t > 0, t, 1)), 0))
        ref = -2 * ll + p * np.log(N) + 2 * ent
    i = sel.candidates.index(K)
    assert sel.values[i] == pytest.approx(ref, rel=1e-9)
    assert sel.log_likelihood[i] == pytest.approx(ll, rel=1e-9)
    assert sel.n_pixels == N and sel.n_parameters[i] == p
    assert sel.values[i] == min(sel.values)


def test_parameter_count_and_formula_match_scikit_learn():
    from sklearn.mixture import GaussianMixture

    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 1, (300, 3)), rng.normal(4, 1, (200, 3))])
    for ct in ("spherical", "diag", "full"):
        gm = GaussianMixture(3, covariance_type=ct, random_state=0).fit(X)
        ll = gm.score(X) * X.shape[0]
        p = sl.n_parameters(3, 3, ct)
        assert p == gm._n_parameters()
        assert sl.criterion_value("bic", ll, X.shape[0], p) == pytest.approx(gm.bic(X), rel=1e-12)
        assert sl.criterion_value("aic", ll, X.shape[0], p) == pytest.approx(gm.aic(X), rel=1e-12)


# ---- the search -----------------------------------------------------------------------------------


@pytest.mark.parametrize("K", [1, 2, 3, 4])
def test_auto_finds_the_true_number_of_classes(K):
    means = [40, 100, 160, 220][:K] if K > 1 else [128]
    img = _classes(means, 12, [1.5, 1, 1.25, 0.8][:K], seed=10 + K)
    m = ng.fit_mixture(img, "auto")
    assert m.n_components == K
    assert m.selection.candidates[0] == 1 and m.params["n_components"] == "auto"
    assert m.params["n_components_chosen"] == K


def test_clipping_no_longer_adds_components():
    """The issue's phantom: 3 classes 60/120/180 (sd 35, uint8) clipped at 0 and 255."""
    img, truth = phantom((256, 256), n_classes=3, noise=35 / 63.75, dtype=np.uint8, seed=0)
    m = ng.fit_mixture(img, "auto")
    plain = ng.fit_mixture(img, "auto", censoring=False)
    assert m.censoring.lower is not None and m.censoring.upper is not None
    assert m.n_components == 3 and plain.n_components > 4


def test_values_on_a_lattice_are_fitted_as_the_8_bit_image():
    """An 8-bit image (3 classes, clipped at 255) stored as multiples of 256 in uint16, stretched
    unevenly (levels 327/328 apart) or divided by 255 into floats: the same K and censoring as the
    8-bit image (the empty levels between the occupied ones are not structure); a sparse natural
    uint16 histogram keeps step 1."""
    img8 = _classes([60, 130, 215], 18, [1, 1, 1], n=256 * 64, seed=3)
    stretched = np.rint(np.clip((img8.astype(float) - 20) * 65535 / 200, 0, 65535)).astype(np.uint16)
    assert ng.histogram(stretched).value_step == 327 and ng.histogram(img8).value_step == 1
    m8 = ng.fit_mixture(img8, "auto")
    assert m8.n_components == 3 and m8.censoring.upper == 254.5
    for x in (img8.astype(np.uint16) * 256, stretched, (img8 / 255).astype(np.float32)):
        m = ng.fit_mixture(x, "auto")
        assert m.n_components == 3 and m.censoring is not None and m.censoring.upper is not None
    m = ng.fit_mixture(img8.astype(np.uint16) * 256, "auto")
    assert m.censoring.upper == 255 * 256 - 128 and m.params["reg_covar"] == pytest.approx(256**2 / 12)
    assert ng.histogram(_classes([20000, 40000], 4000, [1, 1], n=256 * 16, dtype=np.uint16, top=65535)).value_step == 1


def test_split_start_preserves_the_component_moments():
    p = em.Params.from_sklearn(
        [0.4, 0.6], [[10.0, 0.0], [50.0, 5.0]], [[[4.0, 1.0], [1.0, 9.0]], [[25.0, 0.0], [0.0, 1.0]]], "full"
    )
    q = sl.split_start(p, 1)
    assert q.n_components == 3
    w, m, c = q.weights[1:], q.means[1:], q.cov[1:]
    assert w.sum() == pytest.approx(0.6)
    mean = (w[:, None] * m).sum(0) / w.sum()
    np.testing.assert_allclose(mean, p.means[1])
    d = m - mean
    cov = (w[:, None, None] * (c + d[:, :, None] * d[:, None, :])).sum(0) / w.sum()
    np.testing.assert_allclose(cov, p.cov[1], atol=1e-12)


def test_default_start_is_the_classic_one_taken_to_its_optimum():
    """init="auto" on grey data: the classic start run on to the optimum before the user's tol
    applies: a higher likelihood where 4 classes 2.5 sd apart make the likelihood flat, the history
    starting where that start ended; tol=0 keeps the classic reference run exactly."""
    img = _classes([60, 110, 160, 210], 25, [3, 2, 2, 1], seed=5)
    a = ng.fit_mixture(img, 4)
    b = ng.fit_mixture(img, 4, init="ranges")
    assert (a.lower_bound - b.lower_bound) * img.size > 5.0 and a.converged
    assert (a.history["log_likelihood"][0] - b.history["log_likelihood"][-1]) * img.size > 5.0
    assert a.params["init_used"] == "ranges" and len(a.history["means"]) == a.n_iter + 1 <= 101
    c = ng.fit_mixture(img, 4, max_iter=7, tol=0)
    d = ng.fit_mixture(img, 4, init="ranges", max_iter=7, tol=0)
    assert c.n_iter == 7 and c.lower_bound == d.lower_bound
    np.testing.assert_array_equal(c.means, d.means)


def test_narrow_dim_classes_beside_a_few_bright_pixels():
    """Background at 100 (sd 4, 50 %), cells at 130 (sd 5, 30 %) and bright structures at 30,000
    (sd 3,000, 20 %) in uint16: the range slices put two starts in the bright class, and the search's
    equal coarse bins (44 levels wide at 2048 x 2048) merged the two dim classes. Fixed K = 3 and
    "auto" both separate background and cells now."""
    img = _classes([100, 130, 30000], [4, 5, 3000], [5, 3, 2], seed=3, dtype=np.uint16, top=65535)
    truth = np.where(img < 115, 1, np.where(img < 1000, 2, 3))
    for k in (3, "auto"):
        m = ng.fit_mixture(img, k)
        assert m.n_components == 3
        np.testing.assert_allclose(m.means.ravel()[:2], [100, 130], atol=0.5)
        assert (m.predict(img) == truth).mean() > 0.99
    h = ng.histogram(img)
    Xc = sl.coarse_problem(em.WeightedSamples(h.values, h.counts, 1 / 12)).X[:, 0]
    assert np.sum((Xc > 90) & (Xc < 140)) >= 10  # fine coarse bins where the dim pixels are


def test_spatial_log_likelihood_matches_a_pixel_by_pixel_sum():
    """The mean-field-like likelihood of a Potts fit (bench_selection.py part 5) against a direct
    loop: each valid pixel's mixture weighted by the prior given its neighbours' posteriors."""
    from napari_gmm.spatial import neighbourhood

    rng = np.random.default_rng(0)
    x = rng.normal(100, 20, (6, 7))
    q = rng.random((2, 6, 7))
    q /= q.sum(0)
    valid = np.ones((6, 7), bool)
    valid[2, 3] = False
    q[:, 2, 3] = 0
    w, mu, var, beta = np.array([0.4, 0.6]), np.array([90.0, 115.0]), np.array([300.0, 500.0]), 0.8
    offs, wts = neighbourhood(2, 2)
    ll, ent = sl.spatial_log_likelihood(x, valid, q, w, mu, var, beta, offs, wts)
    ref = ref_ent = 0.0
    for i in range(6):
        for j in range(7):
            if not valid[i, j]:
                continue
            nb = np.zeros(2)
            for (_, di, dj), c in zip(offs, wts):
                if 0 <= i + di < 6 and 0 <= j + dj < 7:
                    nb += c * q[:, i + di, j + dj]
            prior = w * np.exp(beta * nb)
            prior /= prior.sum()
            ref += np.log((prior * stats.norm.pdf(x[i, j], mu, np.sqrt(var))).sum())
            ref_ent -= (q[:, i, j] * np.log(q[:, i, j])).sum()
    assert ll == pytest.approx(ref, rel=1e-12) and ent == pytest.approx(ref_ent, rel=1e-12)


def test_search_reports_progress_and_can_be_cancelled():
    img = _classes([40, 120, 200], 12, [1, 1, 1], seed=6)
    calls = []
    ng.segment(img, "auto", progress=lambda d, t: calls.append((d, t)))
    assert calls and calls[-1][0] == calls[-1][1]
    assert all(d <= t for d, t in calls)
    assert all(b[0] >= a[0] for a, b in zip(calls, calls[1:]))  # never backwards

    def stop(done, total):
        if done > 0:
            raise ng.Cancelled("stop")

    with pytest.raises(ng.Cancelled):
        ng.segment(img, "auto", progress=stop)


def test_selection_survives_to_dict_and_json():
    img = _classes([40, 200], 12, [1, 1], seed=7)
    img[0] = 255
    m = ng.fit_mixture(img, "auto", criterion="icl")
    d = json.loads(json.dumps(m.to_dict()))
    m2 = ng.MixtureModel.from_dict(d)
    assert m2.selection == m.selection and m2.selection.entropy is not None
    assert m2.censoring == m.censoring
    np.testing.assert_array_equal(m2.predict(img), m.predict(img))
    assert "chosen" in m.selection.table()


def test_auto_on_colour_and_quantize():
    rng = np.random.default_rng(8)
    rgb = np.zeros((64, 64, 3), np.uint8)
    rgb[:32] = (200, 30, 30)
    rgb[32:] = (20, 40, 190)
    rgb = np.clip(rgb + rng.normal(0, 6, rgb.shape), 0, 255).astype(np.uint8)
    m = ng.fit_mixture(rgb, "auto", channel_axis=-1, max_components=4)
    assert m.n_components == 2 and m.censoring is None
    q, mq = ng.quantize(rgb, "auto", max_components=4, return_model=True)
    assert mq.n_components == 2 and q.shape == rgb.shape and len(np.unique(q.reshape(-1, 3), axis=0)) == 2


def test_auto_per_index_and_on_dask():
    import dask.array as da

    rng = np.random.default_rng(11)
    z = rng.choice(3, (2, 96, 96))
    stack = np.clip(np.rint(rng.normal(np.array([40.0, 120, 200])[z], 12)), 0, 255).astype(np.uint8)
    stack[1] = np.clip(np.rint(rng.normal(np.array([40.0, 200])[z[1] % 2], 12)), 0, 255)
    labels, models = ng.segment(stack, "auto", split_axis=0, return_model=True)
    assert [m.n_components for m in models] == [3, 2]
    assert labels[1].max() == 2 and labels[0].max() == 3
    lazy = ng.segment(da.from_array(stack[0], chunks=48), "auto", labels="intervals")
    np.testing.assert_array_equal(np.asarray(lazy), ng.segment(stack[0], "auto", labels="intervals"))


# ---- interval labels --------------------------------------------------------------------------------


def test_interval_labels_are_monotone_where_map_labels_are_not():
    img = cameraman()
    lab = ng.segment(img, 3)
    assert np.any(lab[img > 221] == 2)  # the broad grass class wins in the bright tail
    li, m = ng.segment(img, 3, labels="intervals", return_model=True)
    order = np.argsort(img.reshape(-1), kind="stable")
    assert np.all(np.diff(li.reshape(-1)[order].astype(int)) >= 0)
    assert np.all(li[img > 221] == 3)
    cuts = m.interval_cuts()
    mu = m.means[:, 0]
    assert np.all((cuts > mu[:-1]) & (cuts < mu[1:]))
    np.testing.assert_array_equal(li, np.searchsorted(cuts, img, side="right") + 1)
    # the model labels as it was used: predict after a round trip gives the interval labels again
    again = ng.MixtureModel.from_dict(json.loads(json.dumps(m.to_dict())))
    np.testing.assert_array_equal(again.predict(img), li)
    q = ng.quantize(img, 3, channel_axis=None, init="ranges", labels="intervals")
    assert np.all(np.diff(q.reshape(-1)[order].astype(int)) >= 0)


def test_interval_cuts_at_equal_density_or_the_fallback():
    w, mu, var = np.array([0.5, 0.5]), np.array([0.0, 10.0]), np.array([4.0, 4.0])
    assert sl.interval_cuts(w, mu, var)[0] == pytest.approx(5.0)
    # unequal weights: the cut moves towards the weaker component, where w_a N_a = w_b N_b
    cut = sl.interval_cuts([0.8, 0.2], mu, var)[0]
    assert stats.norm.pdf(cut, 0, 2) * 0.8 == pytest.approx(stats.norm.pdf(cut, 10, 2) * 0.2, rel=1e-9)
    # a weak narrow component inside a strong wide one never wins between the means: fallback
    cut = sl.interval_cuts([0.98, 0.02], [0.0, 3.0], [100.0, 1.0])[0]
    assert cut == pytest.approx((1.0 * 0.0 + 10.0 * 3.0) / 11.0)
    # unsorted input: cuts follow the means' order
    np.testing.assert_allclose(sl.interval_cuts([0.5, 0.5], [10.0, 0.0], [4.0, 4.0]), [5.0])


# ---- bad input --------------------------------------------------------------------------------------


def test_bad_input_messages():
    img = _classes([40, 200], 12, [1, 1], n=256 * 8, seed=9)
    rgb = np.stack([img] * 3, axis=-1)
    with pytest.raises(ng.InputError, match="max_components must be at least 1"):
        ng.fit_mixture(img, "auto", max_components=0)
    with pytest.raises(ng.InputError, match="whole number"):
        ng.fit_mixture(img, "auto", max_components=2.5)
    few = np.repeat(np.array([1, 2, 3, 4], np.uint8), 16).reshape(8, 8)
    with pytest.raises(ng.InputError, match="more than the 4 distinct values"):
        ng.fit_mixture(few, "auto", max_components=5)
    with pytest.raises(ng.InputError, match="criterion='bics' is not supported"):
        ng.fit_mixture(img, "auto", criterion="bics")
    with pytest.raises(ng.InputError, match="grey images"):
        ng.segment(rgb, 2, channel_axis=-1, labels="intervals")
    with pytest.raises(ng.InputError, match="labels='mapp' is not an option"):
        ng.segment(img, 2, labels="mapp")
    with pytest.raises(ng.InputError, match="n_components='Auto' is not an option"):
        ng.fit_mixture(img, "Auto")
    with pytest.raises(ng.InputError, match="censoring='yes' is not an option"):
        ng.fit_mixture(img, 2, censoring="yes")
    with pytest.raises(ng.InputError, match="for grey images"):
        ng.fit_mixture(rgb, 2, channel_axis=-1, censoring=True)
    with pytest.raises(ng.InputError, match="init cannot be a fitted model"):
        ng.fit_mixture(img, "auto", init=ng.fit_mixture(img, 2))
    with pytest.raises(ng.InputError, match="interval labels are for grey models"):
        ng.fit_mixture(rgb, 2, channel_axis=-1).interval_cuts()
    before = img.copy()
    ng.segment(img, "auto", labels="intervals")
    np.testing.assert_array_equal(img, before)  # input never modified
