"""EM kernels against NumPy: exp, precisions, serial == parallel E-step, sufficient statistics."""

import numpy as np
import pytest
from numba import get_num_threads

from napari_gmm._kernels import em


def test_exp_neg_is_exact_to_float64():
    t = np.linspace(em.SKIP, 0.0, 20001)
    v = np.array([em._exp_neg(x) for x in t])
    np.testing.assert_allclose(v, np.exp(t), rtol=1e-15)
    assert em._exp_neg(0.0) == 1.0


def test_precisions_match_numpy_cholesky():
    rng = np.random.default_rng(0)
    K, D = 4, 3
    A = rng.normal(size=(K, D, D))
    cov = A @ A.transpose(0, 2, 1) + 0.5 * np.eye(D)
    inv_sd, pc, ld = np.zeros((K, D)), np.zeros((K, D, D)), np.zeros(K)
    assert em.precisions(cov, 2, inv_sd, pc, ld) == -1
    for k in range(K):
        U = np.linalg.inv(np.linalg.cholesky(cov[k])).T
        np.testing.assert_allclose(pc[k], U, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(pc[k] @ pc[k].T, np.linalg.inv(cov[k]), rtol=1e-10)
        assert ld[k] == pytest.approx(np.log(np.diag(U)).sum(), rel=1e-12)
    bad = cov.copy()
    bad[2] = np.ones((D, D))  # rank one: collapsed
    assert em.precisions(bad, 2, inv_sd, pc, ld) == 2
    diag = np.zeros((K, D, D))
    diag[:, np.arange(D), np.arange(D)] = [1.0, 4.0, 9.0]
    assert em.precisions(diag, 1, inv_sd, pc, ld) == -1
    np.testing.assert_allclose(inv_sd[0], [1.0, 0.5, 1 / 3])


def _stats(parallel, cov_type):
    rng = np.random.default_rng(1)
    M, K, D = 5000, 5, 3
    X = rng.normal(size=(M, D)) * 20 + 100
    w = rng.integers(1, 5, M).astype(float)
    means = X[rng.choice(M, K, replace=False)]
    inv_sd = np.full((K, D), 1 / 15.0)
    pc = np.stack([np.eye(D) / 15.0] * K)
    ld = np.log(inv_sd).sum(1)
    lw = np.log(np.full(K, 1 / K))
    Nk, Sx, Sxx = np.zeros(K), np.zeros((K, D)), np.zeros((K, D, D))
    f = em.estep_accumulate if parallel else em.estep_accumulate_serial
    ll = f(X, w, means, means, inv_sd, pc, ld, lw, cov_type, Nk, Sx, Sxx, get_num_threads())
    return ll, Nk, Sx, Sxx, (X, w, means)


def test_estep_serial_equals_parallel_and_numpy():
    for ct in (0, 2):
        a = _stats(False, ct)
        b = _stats(True, ct)
        for u, v in zip(a[:4], b[:4]):
            np.testing.assert_allclose(u, v, rtol=1e-10)
        X, w, means = a[4]
        # NumPy reference: responsibilities from log-probabilities minus logsumexp
        lp = -0.5 * ((X[:, None, :] - means[None]) ** 2).sum(2) / 225.0 - 1.5 * np.log(2 * np.pi * 225.0) + np.log(0.2)
        mx = lp.max(1, keepdims=True)
        lse = mx[:, 0] + np.log(np.exp(lp - mx).sum(1))
        r = np.exp(lp - lse[:, None]) * w[:, None]
        np.testing.assert_allclose(a[0], (w * lse).sum(), rtol=1e-12)
        np.testing.assert_allclose(a[1], r.sum(0), rtol=1e-9, atol=1e-12)
        d = X[:, None, :] - means[None]
        np.testing.assert_allclose(a[2], (r[:, :, None] * d).sum(0), rtol=1e-9, atol=1e-9)
        full = np.einsum("mk,mka,mkb->kab", r, d, d)
        if ct == 2:
            np.testing.assert_allclose(a[3], full, rtol=1e-9, atol=1e-7)
        else:
            np.testing.assert_allclose(
                np.diagonal(a[3], axis1=1, axis2=2), np.diagonal(full, axis1=1, axis2=2), rtol=1e-9
            )


def _morton_numpy(X, lo, scale, bits):
    q = np.clip(((X - lo) * scale).astype(np.int64), 0, 2**bits - 1)
    code = np.zeros(len(X), np.int64)
    for b in range(bits - 1, -1, -1):
        for d in range(X.shape[1]):
            code = (code << 1) | ((q[:, d] >> b) & 1)
    return code


def test_morton_codes_interleave_the_high_bits_of_every_feature():
    rng = np.random.default_rng(6)
    for D, bits in ((3, 10), (5, 12), (8, 7)):
        X = rng.normal(size=(3000, D)) * 50 + 1000
        lo = X.min(0)
        scale = 2.0**bits / (X.max(0) - lo)
        out = np.empty(len(X), np.int64)
        em.morton_codes(X, lo, scale, bits, out)
        np.testing.assert_array_equal(out, _morton_numpy(X, lo, scale, bits))
        assert out.min() >= 0
    # neighbours in Z-order share their high bits: 8 corners of a cube are one run of 8 codes
    corners = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], float)
    out = np.empty(8, np.int64)
    em.morton_codes(corners, np.zeros(3), np.ones(3), 10, out)
    assert sorted(out.tolist()) == list(range(8))
