"""k-means kernels against NumPy: nearest centre, k-means++ seeding, group statistics."""

import numpy as np

from napari_gmm._kernels import kmeans as km


def test_nearest_center_serial_equals_parallel_and_numpy():
    rng = np.random.default_rng(2)
    X, C = rng.normal(size=(3000, 3)), rng.normal(size=(7, 3))
    C[5] = C[2]  # a tie: the lower index wins
    a1, d1 = np.empty(3000, np.int64), np.empty(3000)
    a2, d2 = np.empty(3000, np.int64), np.empty(3000)
    km.nearest_center(X, C, a1, d1)
    km.nearest_center_serial(X, C, a2, d2)
    ref = ((X[:, None] - C[None]) ** 2).sum(2)
    np.testing.assert_array_equal(a1, ref.argmin(1))
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_allclose(d1, ref.min(1), rtol=1e-12)
    assert not (a1 == 5).any()


def _kmeanspp_numpy(X, w, first, u):
    """The greedy weighted k-means++ written plainly (scikit-learn's _kmeans_plusplus with weights)."""
    K = u.shape[0] + 1
    idx = [first]
    d2 = ((X - X[first]) ** 2).sum(1)
    pot = (w * d2).sum()
    for c in range(1, K):
        cand = np.minimum(np.searchsorted(np.cumsum(w * d2), u[c - 1] * pot), len(X) - 1)
        nd = np.minimum(d2[None], ((X[None] - X[cand][:, None]) ** 2).sum(2))
        pots = (w * nd).sum(1)
        b = int(np.argmin(pots))
        idx.append(int(cand[b]))
        d2, pot = nd[b], pots[b]
    return np.array(idx)


def test_kmeanspp_equals_numpy_reference():
    rng = np.random.default_rng(3)
    X = np.concatenate([rng.normal(m, 1.0, size=(400, 3)) for m in (0, 10, 20, 40, 80)])
    w = rng.integers(1, 20, len(X)).astype(float)
    K, n_trials = 8, 4
    u = rng.random((K - 1, n_trials))
    out = np.empty(K, np.int64)
    km.kmeanspp(X, w, 17, u, out)
    np.testing.assert_array_equal(out, _kmeanspp_numpy(X, w, 17, u))
    assert len(set(out.tolist())) == K
    # the five well separated clusters each get a centre
    assert len(set(np.round(X[out].mean(1) / 10).astype(int).tolist()) & {0, 1, 2, 4, 8}) == 5


def test_kmeanspp_with_fewer_distinct_points_than_centres_stays_in_range():
    X = np.repeat(np.array([[0.0, 0.0], [5.0, 5.0]]), 10, axis=0)
    w = np.ones(20)
    out = np.empty(4, np.int64)
    km.kmeanspp(X, w, 0, np.random.default_rng(0).random((3, 3)), out)
    assert out.min() >= 0 and out.max() < 20
    assert {tuple(X[i]) for i in out} == {(0.0, 0.0), (5.0, 5.0)}


def test_group_stats_equals_numpy():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(500, 3)) * 3 + 60000.0  # a large offset: no cancellation
    w = rng.integers(1, 5, 500).astype(float)
    assign = rng.integers(0, 4, 500)
    assign[assign == 2] = 1  # group 2 empty
    K, D = 4, 3
    Nk, means, cov = np.empty(K), np.empty((K, D)), np.empty((K, D, D))
    km.group_stats(X, w, assign, Nk, means, cov)
    for k in range(K):
        sel = assign == k
        assert Nk[k] == w[sel].sum()
        if not sel.any():
            assert (means[k] == 0).all() and (cov[k] == 0).all()
            continue
        np.testing.assert_allclose(means[k], np.average(X[sel], axis=0, weights=w[sel]), rtol=1e-14)
        np.testing.assert_allclose(cov[k], np.cov(X[sel].T, aweights=w[sel], bias=True), rtol=1e-9)
