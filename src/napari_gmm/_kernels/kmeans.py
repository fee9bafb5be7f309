"""k-means kernels for EM starts: nearest centre, weighted k-means++ seeding and the per-group
statistics of a hard assignment.

Samples are X (M, D) float64 with weights w (M,). Distances are squared Euclidean. Blocks of
:data:`BLOCK` samples are copied transposed (D, BLOCK) so that the loops over samples are the
inner, contiguous ones (SIMD) and the loops over centres the outer ones.
"""

import numpy as np
from numba import njit, prange

from ._config import JIT, PJIT, serial_copy
from .hist import search_left

#: samples per block of the assignment loops
BLOCK = 256
#: samples per block of k-means++'s candidate scoring (a block's samples stay in cache while all
#: candidates are scored; longer loops than BLOCK, fewer loop set-ups)
KPP_BLOCK = 1024


def _nearest_impl(X, C, out, dist):
    """Index of the nearest centre of every sample (ties to the lower index) and that distance,
    parallel over chunks of samples."""
    M, D = X.shape
    nchunks = max(1, min(64, M // 2048))
    step = (M + nchunks - 1) // nchunks
    for c in prange(nchunks):
        XT = np.empty((D, BLOCK))
        best = np.empty(BLOCK)
        arg = np.empty(BLOCK, np.int64)
        sc = np.empty(BLOCK)
        stop = min(M, (c + 1) * step)
        for b0 in range(c * step, stop, BLOCK):
            nb = min(stop, b0 + BLOCK) - b0
            _assign_block(X, b0, nb, C, XT, best, arg, sc)
            for i in range(nb):
                out[b0 + i] = arg[i]
                dist[b0 + i] = best[i]


@njit(inline="always", **JIT)
def _sq_dists(xb, nb, P, k, out):
    """out[i] = |xb[:, i] - P[k]|**2 for the first ``nb`` columns of a transposed block ``xb``
    (D, n); samples innermost, so the loops vectorise."""
    for i in range(nb):
        out[i] = 0.0
    for j in range(xb.shape[0]):
        pj = P[k, j]
        for i in range(nb):
            t = xb[j, i] - pj
            out[i] += t * t


@njit(inline="always", **JIT)
def _assign_block(X, b0, nb, C, XT, best, arg, s):
    """Nearest centre of samples b0 .. b0 + nb into ``arg``/``best`` (the block is copied to XT;
    ``s`` is scratch). Samples are the innermost loop everywhere: LLVM vectorises innermost loops."""
    K, D = C.shape
    for i in range(nb):
        best[i] = np.inf
        arg[i] = 0
        for j in range(D):
            XT[j, i] = X[b0 + i, j]
    for k in range(K):
        _sq_dists(XT, nb, C, k, s)
        for i in range(nb):
            if s[i] < best[i]:
                best[i] = s[i]
                arg[i] = k


nearest_center = njit(**PJIT)(_nearest_impl)
#: serial twin (no thread start-up for small sample sets)
nearest_center_serial = njit(**JIT)(serial_copy(_nearest_impl))


@njit(**JIT)
def kmeanspp(X, w, first, u, out):
    """Greedy weighted k-means++ (Arthur & Vassilvitskii 2007; scikit-learn's ``_kmeans_plusplus``):
    the first centre is sample ``first``; each next one is the best, by the weighted potential
    sum w min(d2, |x - c|**2), of ``u.shape[1]`` candidates drawn with probability w * d2 by the
    uniforms ``u`` (K - 1, n_trials) in [0, 1). Writes the K chosen sample indices to ``out``.

    Two passes per centre: one scores all candidates block by block (the block stays in L1 while
    the candidates are scored), one updates the distances to the winner and their running sum.
    If every sample already sits on a centre (potential 0), the next centre is the sample at u * M.

    Serial: in a version parallel over the blocks, the blocks' array views share reference counts,
    whose atomic updates the threads fight over (it ran slower than this one; README, Development).
    """
    M, D = X.shape
    K = out.shape[0]
    n_trials = u.shape[1]
    XT = np.empty((D, M))
    for i in range(M):
        for j in range(D):
            XT[j, i] = X[i, j]
    d2 = np.empty(M)
    cum = np.empty(M)
    e2 = np.empty(KPP_BLOCK)
    cand = np.empty(n_trials, np.int64)
    pots = np.empty(n_trials)
    out[0] = first
    pot = _kpp_update(X, XT, w, first, d2, cum, True)
    for c in range(1, K):
        if not pot > 0.0:
            jc = min(np.int64(u[c - 1, 0] * M), M - 1)
        else:
            for t in range(n_trials):
                cand[t] = min(search_left(cum, u[c - 1, t] * pot), M - 1)
                pots[t] = 0.0
            for b0 in range(0, M, KPP_BLOCK):
                b1 = min(M, b0 + KPP_BLOCK)
                nb = b1 - b0
                # views, indexed from 0: LLVM cannot see that b0 + i is non-negative, and Numba's
                # negative-index wrap-around on it kept these loops from vectorising
                xb = XT[:, b0:b1]
                db = d2[b0:b1]
                wb = w[b0:b1]
                for t in range(n_trials):
                    _sq_dists(xb, nb, X, cand[t], e2)
                    p = 0.0
                    for i in range(nb):
                        p += wb[i] * min(db[i], e2[i])
                    pots[t] += p
            bt = 0
            for t in range(1, n_trials):
                if pots[t] < pots[bt]:
                    bt = t
            jc = cand[bt]
        out[c] = jc
        pot = _kpp_update(X, XT, w, jc, d2, cum, False)
    return out


@njit(inline="always", **JIT)
def _kpp_update(X, XT, w, jc, d2, cum, first):
    """d2 = min(d2, |x - x_jc|**2) (or the distance itself when ``first``; X is given with its
    transpose XT), cum = running sum of w d2; returns the total."""
    D, M = XT.shape
    if first:
        d2[:] = np.inf
    for b0 in range(0, M, KPP_BLOCK):
        b1 = min(M, b0 + KPP_BLOCK)
        nb = b1 - b0
        xb = XT[:, b0:b1]
        db = d2[b0:b1]
        e2 = cum[b0:b1]
        _sq_dists(xb, nb, X, jc, e2)
        for i in range(nb):
            db[i] = min(db[i], e2[i])
    s = 0.0
    for i in range(M):
        s += w[i] * d2[i]
        cum[i] = s
    return s


@njit(**JIT)
def group_stats(X, w, assign, Nk, means, cov):
    """Weight ``Nk`` (K,), weighted mean ``means`` (K, D) and weighted covariance ``cov`` (K, D, D,
    divided by the weight) of each group of a hard assignment; empty groups get zeros. Two passes:
    the scatter is accumulated around the means (no cancellation on data with a large offset)."""
    M, D = X.shape
    K = Nk.shape[0]
    Nk[:] = 0.0
    means[:] = 0.0
    cov[:] = 0.0
    for i in range(M):
        k = assign[i]
        Nk[k] += w[i]
        for j in range(D):
            means[k, j] += w[i] * X[i, j]
    for k in range(K):
        if Nk[k] > 0.0:
            for j in range(D):
                means[k, j] /= Nk[k]
    for i in range(M):
        k = assign[i]
        for a in range(D):
            da = X[i, a] - means[k, a]
            for b in range(a + 1):
                cov[k, a, b] += w[i] * da * (X[i, b] - means[k, b])
    for k in range(K):
        for a in range(D):
            for b in range(a + 1):
                v = cov[k, a, b] / Nk[k] if Nk[k] > 0.0 else 0.0
                cov[k, a, b] = v
                cov[k, b, a] = v
