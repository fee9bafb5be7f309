"""HMRF kernels against naive NumPy references: sweeps, thread-count independence, ICM energy,
pseudo-likelihood of beta on Potts samples, bias-field pieces."""

import numba
import numpy as np
import pytest

from napari_gmm import spatial as S
from napari_gmm._kernels import mrf

LOG2PI = np.log(2 * np.pi)


def _coords(i, dims):
    Z, Y, X = dims
    return i // (X * Y), (i // X) % Y, i % X


def _colour(z, y, x, scheme):
    return (z + y + x) % 2 if scheme == 0 else (z % 2) * 4 + (y % 2) * 2 + x % 2


def _unary(x, means, cov):
    """log w_k + log N(x | k) without the weights (added by the caller), full covariances."""
    K, D = means.shape
    out = np.empty(K)
    for k in range(K):
        d = x - means[k]
        out[k] = -0.5 * d @ np.linalg.solve(cov[k], d) - 0.5 * np.linalg.slogdet(cov[k])[1] - 0.5 * D * LOG2PI
    return out


def ref_sweep(X, valid, q, dims, offs, wts, scheme, log_w, means, cov, beta, hard):
    """One sweep, pixel by pixel, colour by colour, straight from the definitions."""
    Z, Y, Xn = dims
    q = q.astype(np.float64).copy()
    K = q.shape[1]
    ncol = 2 if scheme == 0 else (8 if Z > 1 else 4)
    for c in range(ncol):
        new = {}
        for i in range(X.shape[0]):
            z, y, x = _coords(i, dims)
            if _colour(z, y, x, scheme) != c or not valid[i]:
                continue
            nb = np.zeros(K)
            for (dz, dy, dx), w in zip(offs, wts):
                zz, yy, xx = z + dz, y + dy, x + dx
                if 0 <= zz < Z and 0 <= yy < Y and 0 <= xx < Xn:
                    nb += w * q[(zz * Y + yy) * Xn + xx]
            e = log_w + _unary(X[i].astype(np.float64), means, cov) + beta * nb
            if hard:
                p = np.zeros(K)
                p[np.argmax(e)] = 1.0
            else:
                p = np.exp(e - e.max())
                p /= p.sum()
            new[i] = p
        for i, v in new.items():  # one colour's pixels are never neighbours: order-free
            q[i] = v
    return q


def icm_energy(X, valid, z, dims, offs, wts, log_w, means, cov, beta):
    """sum_i (log w + log N)(z_i) + beta sum_{i~j} w_ij [z_i = z_j] (each pair once)."""
    Z, Y, Xn = dims
    e = 0.0
    for i in range(X.shape[0]):
        if not valid[i]:
            continue
        e += log_w[z[i]] + _unary(X[i].astype(np.float64), means, cov)[z[i]]
        a, b, c = _coords(i, dims)
        for (dz, dy, dx), w in zip(offs, wts):
            zz, yy, xx = a + dz, b + dy, c + dx
            if 0 <= zz < Z and 0 <= yy < Y and 0 <= xx < Xn:
                j = (zz * Y + yy) * Xn + xx
                if valid[j] and j > i and z[j] == z[i]:
                    e += beta * w
    return e


def _setup(dims, D, K, cov_type, seed=0, masked=True):
    rng = np.random.default_rng(seed)
    N = int(np.prod(dims))
    X = (rng.normal(0, 1, (N, D)) + rng.integers(0, K, N)[:, None] * 1.2).astype(np.float32)
    valid = np.ones(N, np.uint8)
    if masked:
        valid[rng.random(N) < 0.15] = 0
    q = rng.dirichlet(np.ones(K), size=N).astype(np.float32)
    q[valid == 0] = 0
    means = np.arange(K)[:, None] * 1.2 + rng.normal(0, 0.1, (K, D))
    if cov_type == 2:
        A = rng.normal(0, 0.3, (K, D, D))
        cov = A @ A.transpose(0, 2, 1) + np.eye(D)
    elif cov_type == 1:
        cov = np.stack([np.diag(rng.uniform(0.7, 1.5, D)) for _ in range(K)])
    else:
        cov = np.stack([np.eye(D) * rng.uniform(0.7, 1.5) for _ in range(K)])
    w = rng.dirichlet(np.ones(K) * 5)
    return X, valid, q, means, cov, w


def _factors(means, cov, w, cov_type):
    from napari_gmm._kernels import em as kem

    K, D = means.shape
    inv_sd, prec_chol, log_det = np.zeros((K, D)), np.zeros((K, D, D)), np.zeros(K)
    assert kem.precisions(cov, cov_type, inv_sd, prec_chol, log_det) < 0
    c0 = np.log(w) + log_det - 0.5 * D * LOG2PI
    return c0, inv_sd, prec_chol


def _kernel_sweep(X, valid, q, dims, offs, wts, scheme, means, cov, w, cov_type, beta, hard, inv_b=None):
    K, D = means.shape
    c0, inv_sd, prec_chol = _factors(means, cov, w, cov_type)
    R = dims[0] * dims[1]
    acc = np.zeros((R, K, 1 + D + (D * D if cov_type == 2 else D)))
    obj = np.zeros(R)
    qk = q.copy()
    ib = np.zeros(0, np.float32) if inv_b is None else inv_b
    mrf.sweep(
        X,
        ib,
        valid,
        qk,
        np.array(dims),
        offs,
        wts,
        scheme,
        c0,
        means,
        inv_sd,
        prec_chol,
        cov_type,
        beta,
        hard,
        True,
        means.copy(),
        acc,
        obj,
    )
    return qk, acc, obj


CASES = [  # dims, connectivity, spacing, D, cov_type
    ((1, 9, 11), 1, (1.0, 1.0), 1, 0),
    ((1, 8, 7), 2, (1.0, 2.5), 2, 1),
    ((4, 5, 6), 1, (2.0, 1.0, 1.0), 1, 0),
    ((4, 5, 6), 3, (1.5, 1.0, 0.7), 3, 2),
    ((3, 6, 5), 2, None, 2, 2),
]


@pytest.mark.parametrize("dims, conn, spacing, D, cov_type", CASES)
@pytest.mark.parametrize("hard", [False, True])
def test_sweep_equals_numpy_reference(dims, conn, spacing, D, cov_type, hard):
    K = 3
    nd = 2 if dims[0] == 1 else 3
    offs, wts = S.neighbourhood(nd, conn, spacing)
    scheme = 0 if conn == 1 else 1
    X, valid, q, means, cov, w = _setup(dims, D, K, cov_type)
    if hard:
        q = np.eye(K, dtype=np.float32)[np.argmax(q, axis=1)] * valid[:, None]
    qk, acc, obj = _kernel_sweep(X, valid, q, dims, offs, wts, scheme, means, cov, w, cov_type, 0.9, hard)
    qr = ref_sweep(X, valid, q, dims, offs, wts, scheme, np.log(w), means, cov, 0.9, hard)
    np.testing.assert_allclose(qk, qr, atol=2e-6)
    # the statistics are those of the new posteriors
    v = valid.astype(bool)
    np.testing.assert_allclose(acc.sum(0)[:, 0], qr[v].sum(0), rtol=1e-5)
    d = X[v][:, None, :].astype(np.float64) - means[None]
    np.testing.assert_allclose(acc.sum(0)[:, 1 : 1 + D], (qr[v][:, :, None] * d).sum(0), rtol=1e-4, atol=1e-4)
    if hard:  # the objective of ICM is the log-posterior energy of the new labelling
        e = icm_energy(X, valid, np.argmax(qr, 1), dims, offs, wts, np.log(w), means, cov, 0.9)
        assert obj.sum() == pytest.approx(e, rel=1e-6)
    else:  # mean-field free energy: sum q (lp - log q) + beta sum_pairs w q_i.q_j
        lp = np.array([np.log(w) + _unary(X[i].astype(np.float64), means, cov) for i in range(X.shape[0])])
        with np.errstate(divide="ignore", invalid="ignore"):
            ent = np.where(qr > 0, qr * (lp - np.log(qr)), 0.0)
        F = ent[v].sum()
        Z, Y, Xn = dims
        for i in np.flatnonzero(v):
            a, b, c = _coords(i, dims)
            for (dz, dy, dx), wt in zip(offs, wts):
                zz, yy, xx = a + dz, b + dy, c + dx
                if 0 <= zz < Z and 0 <= yy < Y and 0 <= xx < Xn:
                    j = (zz * Y + yy) * Xn + xx
                    if j > i:
                        F += 0.9 * wt * qr[i] @ qr[j]
        assert obj.sum() == pytest.approx(F, rel=1e-6)


def _grey_sweep(X, valid, q, dims, offs, wts, scheme, means, cov, w, cov_type, beta, inv_b=None):
    K = means.shape[0]
    c0, inv_sd, prec_chol = _factors(means, cov, w, cov_type)
    R = dims[0] * dims[1]
    acc, obj, qk = np.zeros((R, K, 3)), np.zeros(R), q.copy()
    inv = inv_sd[:, 0] if cov_type != 2 else prec_chol[:, 0, 0]
    ib = np.zeros(0, np.float32) if inv_b is None else inv_b
    mu = np.ascontiguousarray(means[:, 0])
    qp = np.full((K, 2 * R, (dims[2] + 1) // 2 + 2), np.nan, np.float32)
    mrf.pack_planar(qk, np.array(dims), qp)
    mrf.sweep_grey(
        X.reshape(-1),
        ib,
        valid,
        qp,
        np.array(dims),
        offs,
        wts,
        scheme,
        c0,
        mu,
        inv.copy(),
        beta,
        True,
        mu.copy(),
        acc,
        obj,
    )
    mrf.unpack_planar(qp, np.array(dims), qk)
    return qk, acc, obj


@pytest.mark.parametrize("dims, conn, spacing, _D, cov_type", CASES + [((1, 1, 7), 1, None, 1, 0)])
def test_grey_sweep_equals_the_general_kernel(dims, conn, spacing, _D, cov_type):
    """The vectorised grey mean-field kernel: the same posteriors, statistics and objective."""
    nd = 2 if dims[0] == 1 else 3
    offs, wts = S.neighbourhood(nd, conn, spacing)
    scheme = 0 if conn == 1 else 1
    X, valid, q, means, cov, w = _setup(dims, 1, 3, cov_type)
    ib = np.linspace(0.8, 1.2, X.shape[0]).astype(np.float32)
    qg, accg, objg = _grey_sweep(X, valid, q, dims, offs, wts, scheme, means, cov, w, cov_type, 0.9, inv_b=ib)
    qk, acck, objk = _kernel_sweep(X, valid, q, dims, offs, wts, scheme, means, cov, w, cov_type, 0.9, False, inv_b=ib)
    qr = ref_sweep(X * ib[:, None], valid, q, dims, offs, wts, scheme, np.log(w), means, cov, 0.9, False)
    np.testing.assert_allclose(qg, qr, atol=2e-6)
    assert np.all(qg[valid == 0] == 0)
    np.testing.assert_allclose(accg.sum(0), acck.sum(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(objg, objk, rtol=1e-6, atol=1e-6)


def test_bias_divides_the_intensities():
    dims = (1, 6, 7)
    offs, wts = S.neighbourhood(2, 1, None)
    X, valid, q, means, cov, w = _setup(dims, 1, 2, 0)
    b = np.linspace(0.8, 1.2, X.shape[0]).astype(np.float32)
    qk, _, _ = _kernel_sweep(
        X * b[:, None], valid, q, dims, offs, wts, 0, means, cov, w, 0, 0.5, False, inv_b=(1 / b).astype(np.float32)
    )
    qr = ref_sweep(X, valid, q, dims, offs, wts, 0, np.log(w), means, cov, 0.5, False)
    np.testing.assert_allclose(qk, qr, atol=1e-5)


@pytest.mark.parametrize("conn", [1, 2])
def test_sweep_independent_of_thread_count(conn):
    dims = (3, 40, 37)
    offs, wts = S.neighbourhood(3, conn, (2.0, 1.0, 1.0))
    X, valid, q, means, cov, w = _setup(dims, 1, 4, 0, seed=3)
    n0 = numba.get_num_threads()
    try:
        outs = []
        for nt in sorted({1, n0}):
            numba.set_num_threads(nt)
            qk = q.copy()
            qg = q.copy()
            for _ in range(3):
                qk, acc, obj = _kernel_sweep(
                    X, valid, qk, dims, offs, wts, 0 if conn == 1 else 1, means, cov, w, 0, 1.1, False
                )
                qg, accg, objg = _grey_sweep(
                    X, valid, qg, dims, offs, wts, 0 if conn == 1 else 1, means, cov, w, 0, 1.1
                )
            outs.append((qk, acc, obj, qg, accg, objg))
    finally:
        numba.set_num_threads(n0)
    for o in outs[1:]:
        for a, b in zip(outs[0], o):
            assert np.array_equal(a, b)


@pytest.mark.parametrize("conn", [1, 2])
def test_icm_energy_never_decreases_its_log_posterior(conn):
    """ICM at fixed parameters: the energy (minus log posterior) never increases, sweep after sweep."""
    dims = (1, 20, 22)
    offs, wts = S.neighbourhood(2, conn, None)
    X, valid, q, means, cov, w = _setup(dims, 1, 3, 0, seed=5)
    q = np.eye(3, dtype=np.float32)[np.argmax(q, axis=1)] * valid[:, None]
    energies = [icm_energy(X, valid, np.argmax(q, 1), dims, offs, wts, np.log(w), means, cov, 1.3)]
    for _ in range(6):
        q, _, obj = _kernel_sweep(X, valid, q, dims, offs, wts, 0 if conn == 1 else 1, means, cov, w, 0, 1.3, True)
        energies.append(icm_energy(X, valid, np.argmax(q, 1), dims, offs, wts, np.log(w), means, cov, 1.3))
        assert obj.sum() == pytest.approx(energies[-1], rel=1e-9)
    assert all(b >= a - 1e-9 for a, b in zip(energies, energies[1:]))
    assert energies[-1] > energies[0]


def test_mean_field_free_energy_never_decreases_at_fixed_params():
    dims = (1, 25, 26)
    offs, wts = S.neighbourhood(2, 1, None)
    X, valid, q, means, cov, w = _setup(dims, 1, 3, 0, seed=6)
    vals = []
    for _ in range(6):
        q, _, obj = _kernel_sweep(X, valid, q, dims, offs, wts, 0, means, cov, w, 0, 1.0, False)
        vals.append(obj.sum())
    assert all(b >= a - 1e-7 * abs(a) for a, b in zip(vals, vals[1:]))


def gibbs_potts(shape, K, beta, sweeps, seed):
    """Checkerboard Gibbs sampler of a K-state Potts model p(z) ~ exp(beta sum_<ij> [z_i = z_j])
    on a 4-connected grid (free boundary)."""
    rng = np.random.default_rng(seed)
    z = rng.integers(0, K, shape)
    yy, xx = np.indices(shape)
    colour = (yy + xx) % 2
    for _ in range(sweeps):
        for c in (0, 1):
            onehot = np.eye(K)[z]
            n = np.zeros(shape + (K,))
            n[1:] += onehot[:-1]
            n[:-1] += onehot[1:]
            n[:, 1:] += onehot[:, :-1]
            n[:, :-1] += onehot[:, 1:]
            p = np.exp(beta * n)
            p /= p.sum(-1, keepdims=True)
            u = rng.random(shape)[..., None]
            new = (u > np.cumsum(p, -1)).sum(-1)
            z = np.where(colour == c, np.minimum(new, K - 1), z)
    return z


@pytest.mark.parametrize("beta", [0.4, 0.8])
def test_pseudo_likelihood_recovers_beta_of_potts_samples(beta):
    K, shape = 3, (96, 96)
    z = gibbs_potts(shape, K, beta, 120, seed=int(beta * 10))
    q = np.eye(K, dtype=np.float32)[z.ravel()]
    valid = np.ones(z.size, np.uint8)
    offs, wts = S.neighbourhood(2, 1, None)
    idx = np.arange(z.size)
    nbar = np.empty((z.size, K))
    mrf.neighbour_fields(q, valid, np.array((1,) + shape), offs, wts, idx, nbar, False, np.uint64(0))
    prob = S.SpatialProblem(
        np.zeros((z.size, 1), np.float32), valid, (1,) + shape, beta=None, offs=offs, wts=wts, scheme=0, reg=0.0
    )
    prob.q = q
    prob._seed = 0
    est = prob.estimate_beta(np.ones(K) / K)
    assert est == pytest.approx(beta, rel=0.12)
    # the gradient is the derivative of the value
    lw = np.log(np.ones(K) / K)
    v1, g, h = mrf.pseudo_likelihood(q, nbar, lw, 0.7)
    v2, g2, _ = mrf.pseudo_likelihood(q, nbar, lw, 0.7 + 1e-5)
    assert (v2 - v1) / 1e-5 == pytest.approx(g, rel=1e-3)
    assert (g2 - g) / 1e-5 == pytest.approx(h, rel=1e-3)


def test_bias_evaluate_and_normal_equations():
    dims = (1, 40, 50)
    deg = 2
    Lz = np.ones((1, deg + 1))
    Ly, Lx = S._legendre_table(40, deg), S._legendre_table(50, deg)
    terms = S._bias_terms(2, deg)
    rng = np.random.default_rng(0)
    coef = rng.normal(0, 0.1, terms.shape[0])
    out = np.empty(2000)
    mrf.bias_evaluate(coef, terms, Lz, Ly, Lx, np.array(dims), out)
    ref = sum(c * Ly[:, t[1]][:, None] * Lx[:, t[2]][None, :] for c, t in zip(coef, terms)).ravel()
    np.testing.assert_allclose(out, ref, atol=1e-12)
    # noise-free data of two known classes times the field: Gauss-Newton from 0 converges to it
    lab = rng.integers(0, 2, 2000)
    mu = np.array([50.0, 150.0])
    xbar = mu[lab] * np.exp(ref)
    q = np.eye(2, dtype=np.float32)[lab]
    valid = np.ones(2000, np.uint8)
    c = np.zeros_like(coef)
    log_b = np.zeros(2000)
    for _ in range(6):
        P = terms.shape[0]
        A, b = np.zeros((P, P)), np.zeros(P)
        mrf.bias_normal_equations(
            xbar, valid, q, mu, np.array([25.0, 25.0]), log_b, np.array(dims), Lz, Ly, Lx, terms, 1, A, b
        )
        c = c + np.linalg.solve(A, b)
        mrf.bias_evaluate(c, terms, Lz, Ly, Lx, np.array(dims), log_b)
    np.testing.assert_allclose(c, coef, atol=1e-6)


@pytest.mark.parametrize("full", [False, True])
def test_label_moments_onehot_and_ranked_labels(full):
    """The start's M-step sums, its one-hot posteriors and the ranked labels against NumPy."""
    rng = np.random.default_rng(2)
    X = rng.normal(0, 1, (500, 2)).astype(np.float32) + 3
    lab = rng.integers(0, 4, 500).astype(np.uint8)  # 0 = left out
    Nk, means, cov = np.zeros(3), np.zeros((3, 2)), np.zeros((3, 2, 2))
    mrf.label_moments(X, lab, full, Nk, means, cov)
    for k in range(3):
        sel = X[lab == k + 1].astype(np.float64)
        assert Nk[k] == len(sel)
        np.testing.assert_allclose(means[k], sel.mean(0), rtol=1e-12)
        ref = np.cov(sel.T, bias=True)
        np.testing.assert_allclose(cov[k], ref if full else np.diag(np.diag(ref)), rtol=1e-10, atol=1e-12)
    q = np.empty((500, 3), np.float32)
    mrf.onehot(lab, q)
    np.testing.assert_array_equal(q, np.eye(4, dtype=np.float32)[lab][:, 1:])
    valid = (lab > 0).astype(np.uint8)
    rank = np.array([0, 3, 1, 2])
    out = np.empty(500, np.uint8)
    mrf.ranked_labels(q, valid, rank, out)
    np.testing.assert_array_equal(out, np.where(lab > 0, rank[lab], 0))
