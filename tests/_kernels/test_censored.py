"""Censored-observation kernels against SciPy: log Phi, tail likelihood and truncated moments."""

import numpy as np
import pytest
from scipy import special, stats

from napari_gmm._kernels import censored as kc


def test_log_ndtr_matches_scipy_over_the_whole_line():
    x = np.concatenate(
        [np.linspace(-80, 40, 6001), [kc.ASYMPTOTIC_BELOW - 1e-9, kc.ASYMPTOTIC_BELOW + 1e-9, 3.0 - 1e-12, 3.0 + 1e-12]]
    )
    ours = np.array([kc.log_ndtr(t) for t in x])
    ref = special.log_ndtr(x)
    np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("upper", [True, False])
def test_censored_accumulate_gives_truncated_moments_and_tail_likelihood(upper):
    w = np.array([0.3, 0.5, 0.2])
    mu = np.array([40.0, 120.0, 230.0])
    var = np.array([100.0, 400.0, 225.0])
    c, n, h = (240.5 if upper else 30.5), 17.0, 1.0
    Nk, Sx, Sxx = np.zeros(3), np.zeros((3, 1)), np.zeros((3, 1, 1))
    ll = kc.censored_accumulate(c, n, upper, h, mu, var, np.log(w), Nk, Sx, Sxx)
    sd = np.sqrt(var)
    tail = stats.norm.sf(c, mu, sd) if upper else stats.norm.cdf(c, mu, sd)
    assert ll == pytest.approx(n * np.log((w * tail).sum()), rel=1e-12)
    r = w * tail / (w * tail).sum()
    np.testing.assert_allclose(Nk, n * r, rtol=1e-12)
    z = (c - mu) / sd
    a, b = (z, np.full(3, np.inf)) if upper else (np.full(3, -np.inf), z)
    for k in range(3):
        t = stats.truncnorm(a[k], b[k], loc=mu[k], scale=sd[k])
        m1 = t.mean() - mu[k]
        m2 = t.var() + m1**2
        assert Sx[k, 0] == pytest.approx(n * r[k] * m1, rel=1e-9, abs=1e-12)
        assert Sxx[k, 0, 0] == pytest.approx(n * r[k] * m2, rel=1e-9, abs=1e-12)


def test_far_tails_stay_finite():
    """A component 60 sd away from the limit still gets a finite log tail mass and finite moments."""
    Nk, Sx, Sxx = np.zeros(2), np.zeros((2, 1)), np.zeros((2, 1, 1))
    ll = kc.censored_accumulate(
        254.5, 5.0, True, 1.0, np.array([10.0, 200.0]), np.array([16.0, 25.0]), np.log([0.5, 0.5]), Nk, Sx, Sxx
    )
    assert np.isfinite(ll) and np.isfinite(Sx).all() and np.isfinite(Sxx).all()
    assert Nk[0] == 0.0 and Nk[1] == pytest.approx(5.0)
    out = np.empty(2)
    kc.censored_log_probs(254.5, True, 1.0, np.array([10.0, 200.0]), np.array([16.0, 25.0]), np.log([0.5, 0.5]), out)
    assert out[0] == pytest.approx(np.log(0.5) + special.log_ndtr(-(254.5 - 10.0) / 4.0), rel=1e-12)
