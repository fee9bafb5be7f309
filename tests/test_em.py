"""The EM driver (napari_gmm.em): convergence, SQUAREM acceleration, history, restarts, progress."""

import warnings

import numpy as np
import pytest

from napari_gmm import ConvergenceWarning, FitError, InputError, em


def _samples(seed=0):
    """A grey histogram of three heavily overlapping classes (slow plain-EM convergence)."""
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal(100, 20, 30000), rng.normal(150, 25, 20000), rng.normal(175, 15, 10000)])
    v, c = np.unique(np.rint(x), return_counts=True)
    return v[:, None], c.astype(np.float64)


def _start(X, K=3):
    lo, hi = X.min(), X.max()
    means = (lo + (np.arange(K) + 0.5) * (hi - lo) / K)[:, None]
    return em.Params.from_sklearn(np.full(K, 1 / K), means, np.full(K, ((hi - lo) / K) ** 2), "spherical")


def test_squarem_reaches_plain_em_fixed_point_in_fewer_iterations():
    X, w = _samples()
    pb = em.WeightedSamples(X, w, 1 / 12)
    plain = em.run_em(pb, _start(X), max_iter=5000, tol=1e-11, accelerate=False)
    fast = em.run_em(pb, _start(X), max_iter=5000, tol=1e-11)
    assert plain.converged and fast.converged
    assert fast.n_iter < plain.n_iter / 2
    np.testing.assert_allclose(fast.params.means, plain.params.means, rtol=1e-4)
    np.testing.assert_allclose(fast.objective, plain.objective, rtol=1e-9)


def test_history_is_monotone_and_consistent_with_acceleration():
    X, w = _samples(1)
    pb = em.WeightedSamples(X, w, 1 / 12)
    res = em.run_em(pb, _start(X), max_iter=300, tol=1e-9)
    ll = res.history["log_likelihood"]
    assert np.all(np.diff(ll) >= -1e-12)
    # every history entry's objective is the objective of the parameters recorded with it
    for i in range(0, res.n_iter + 1, 7):
        p = em.Params.from_sklearn(
            res.history["weights"][i], res.history["means"][i], res.history["covariances"][i], "spherical"
        )
        assert pb.objective(p) == pytest.approx(ll[i], rel=1e-12, abs=1e-12)


def test_tol_zero_is_plain_em_for_exactly_max_iter():
    X, w = _samples()
    pb = em.WeightedSamples(X, w, 1 / 12)
    a = em.run_em(pb, _start(X), max_iter=40, tol=0)
    b = em.run_em(pb, _start(X), max_iter=40, tol=0, accelerate=False)
    assert a.n_iter == b.n_iter == 40 and not a.converged
    np.testing.assert_array_equal(a.params.means, b.params.means)


def test_fit_em_keeps_best_restart_and_warns_once():
    X, w = _samples()
    pb = em.WeightedSamples(X, w, 1 / 12)
    seen = []

    def starts(rng):
        p = _start(X)
        p.means[:, 0] += rng.normal(0, 5, 3)
        return p

    with pytest.warns(ConvergenceWarning, match="max_iter=3"):
        res = em.fit_em(
            pb, starts, n_init=3, random_state=0, max_iter=3, tol=1e-9, progress=lambda d, t: seen.append((d, t))
        )
    assert seen[-1] == (9, 9) and all(t == 9 for _, t in seen)
    singles = [em.run_em(pb, starts(np.random.default_rng(0)), max_iter=3, tol=1e-9).objective]
    assert res.objective >= max(singles) - 1e-12


def test_progress_exception_cancels():
    X, w = _samples()
    pb = em.WeightedSamples(X, w, 1 / 12)

    class Stop(Exception):
        pass

    def progress(n):
        raise Stop

    with pytest.raises(Stop):
        em.run_em(pb, _start(X), max_iter=100, tol=0, progress=progress)


def test_collapse_is_one_fit_error():
    X = np.array([[0.0], [1.0], [50.0]])
    pb = em.WeightedSamples(X, np.array([10.0, 10.0, 1.0]), 0.0)
    start = em.Params.from_sklearn([0.5, 0.5], [[0.5], [50.0]], [0.25, 1.0], "spherical")
    with pytest.raises(FitError, match="component 2 collapsed at EM iteration 1"):
        em.run_em(pb, start, max_iter=10, tol=0)


def test_cov_type_parse():
    assert em.CovType.parse("diag") is em.CovType.DIAG and em.CovType.FULL.label == "full"
    with pytest.raises(InputError, match="covariance_type=\\['full'\\]"):
        em.CovType.parse(["full"])


@pytest.mark.parametrize("kw", [dict(max_iter=0), dict(tol=-1), dict(tol=float("nan")), dict(n_init=True)])
def test_em_args_checked(kw):
    args = dict(max_iter=10, tol=1e-6, n_init=1) | kw
    with pytest.raises(InputError, match=next(iter(kw))):
        em.check_em_args(**args)


def test_no_warning_on_ordinary_images():
    """8- and 16-bit images converge at the defaults (K=3 on two overlapping regions used to
    run out of its 100 iterations)."""
    import napari_gmm as ng

    rng = np.random.default_rng(0)
    yy = np.arange(256)[:, None] * np.ones((1, 256))
    img16 = np.clip(np.where(yy < 128, 1200, 1000) + rng.normal(0, 100, yy.shape), 0, None).astype(np.uint16)
    img8 = np.clip(np.where(yy < 77, 150, 100) + rng.normal(0, 15, yy.shape), 0, 255).astype(np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        for img in (img16, img8):
            for K in (2, 3):
                assert ng.fit_mixture(img, K).converged
