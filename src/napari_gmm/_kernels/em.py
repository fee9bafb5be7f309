"""EM kernels on weighted samples (values, counts).

Parallel kernels take ``nthreads`` (numba.get_num_threads() of the caller) and split the samples
into a few chunks per thread, each chunk with its own partial sums (no atomics, cacheable).

Covariance types are coded as integers: 0 spherical, 1 diag, 2 full. The precision of every
component is passed in one of two forms, whichever the type uses:

* ``inv_sd`` (K, D): 1 / standard deviation per feature (spherical: all D equal; diag),
* ``prec_chol`` (K, D, D): upper-triangular Cholesky factor U of the precision matrix (full), so that
  the squared Mahalanobis distance is ``|(x - mu) @ U|**2`` (scikit-learn's ``precisions_cholesky_``).

``log_det`` (K,) is ``log det(U)`` (= sum log inv_sd for the diagonal types), ``log_w`` (K,) the log
mixing weights. All accumulations are float64. Sufficient statistics are accumulated around a
reference point per component (the previous means) so that the variance update does not lose digits
to cancellation on data with a large offset (uint16, float microscopy).
"""

import numpy as np
from numba import njit, prange

from ._config import JIT, PJIT

LOG_2PI = np.log(2.0 * np.pi)
#: components whose log-probability is this far below a sample's best one get exp() == 0:
#: exp(-40) = 4e-18 relative to the best term, below float64 resolution of the sum.
SKIP = -40.0


@njit(**JIT)
def _log_prob(x, k, means, inv_sd, prec_chol, cov_type, tmp):
    """Minus half the squared Mahalanobis distance of sample ``x`` to component ``k``."""
    D = x.shape[0]
    maha = 0.0
    if cov_type == 2:
        for j in range(D):
            tmp[j] = x[j] - means[k, j]
        for j in range(D):
            y = 0.0
            for i in range(j + 1):
                y += tmp[i] * prec_chol[k, i, j]
            maha += y * y
    else:
        for j in range(D):
            y = (x[j] - means[k, j]) * inv_sd[k, j]
            maha += y * y
    return -0.5 * maha


@njit(**JIT)
def _row_log_probs(x, means, inv_sd, prec_chol, log_det, log_w, cov_type, tmp, lp):
    """Fill ``lp`` (K,) with log w_k + log N(x | k); return the maximum."""
    K = means.shape[0]
    D = x.shape[0]
    const = -0.5 * D * LOG_2PI
    best = -np.inf
    for k in range(K):
        v = _log_prob(x, k, means, inv_sd, prec_chol, cov_type, tmp) + log_det[k] + log_w[k] + const
        lp[k] = v
        if v > best:
            best = v
    return best


@njit(**PJIT)
def estep_accumulate(X, w, means, ref, inv_sd, prec_chol, log_det, log_w, cov_type, Nk, Sx, Sxx, nthreads):
    """One E-step with the M-step sufficient statistics, parallel over sample chunks.

    Writes ``Nk`` (K,), ``Sx`` (K, D) = sum r w (x - ref), ``Sxx`` (K, D, D) = sum r w (x - ref)(x - ref)^T
    (only the diagonal for cov_type < 2) and returns sum_i w_i log p(x_i).
    """
    M, D = X.shape
    K = means.shape[0]
    nchunks = min(nthreads * 4, max(1, M // 256))
    pN = np.zeros((nchunks, K))
    pX = np.zeros((nchunks, K, D))
    pXX = np.zeros((nchunks, K, D, D))
    pll = np.zeros(nchunks)
    step = (M + nchunks - 1) // nchunks
    for c in prange(nchunks):
        tmp = np.empty(D)
        lp = np.empty(K)
        d = np.empty(D)
        start = c * step
        stop = min(M, start + step)
        ll = 0.0
        for i in range(start, stop):
            wi = w[i]
            if wi == 0.0:
                continue
            x = X[i]
            best = _row_log_probs(x, means, inv_sd, prec_chol, log_det, log_w, cov_type, tmp, lp)
            s = 0.0
            for k in range(K):
                t = lp[k] - best
                if t > SKIP:
                    e = np.exp(t)
                    lp[k] = e
                    s += e
                else:
                    lp[k] = 0.0
            ll += wi * (best + np.log(s))
            inv_s = wi / s
            for k in range(K):
                if lp[k] == 0.0:
                    continue
                rw = lp[k] * inv_s
                pN[c, k] += rw
                for j in range(D):
                    d[j] = x[j] - ref[k, j]
                    pX[c, k, j] += rw * d[j]
                if cov_type == 2:
                    for a in range(D):
                        for b in range(a + 1):
                            pXX[c, k, a, b] += rw * d[a] * d[b]
                else:
                    for j in range(D):
                        pXX[c, k, j, j] += rw * d[j] * d[j]
        pll[c] = ll
    Nk[:] = 0.0
    Sx[:] = 0.0
    Sxx[:] = 0.0
    total = 0.0
    for c in range(nchunks):
        total += pll[c]
        for k in range(K):
            Nk[k] += pN[c, k]
            for a in range(D):
                Sx[k, a] += pX[c, k, a]
                for b in range(a + 1):
                    Sxx[k, a, b] += pXX[c, k, a, b]
    for k in range(K):
        for a in range(D):
            for b in range(a):
                Sxx[k, b, a] = Sxx[k, a, b]
    return total


@njit(**PJIT)
def map_labels(X, means, inv_sd, prec_chol, log_det, log_w, cov_type, out, nthreads):
    """Most probable component (0-based) of every sample, parallel. Ties go to the lower index."""
    M, D = X.shape
    K = means.shape[0]
    nchunks = min(nthreads * 4, max(1, M // 1024))
    step = (M + nchunks - 1) // nchunks
    for c in prange(nchunks):
        tmp = np.empty(D)
        lp = np.empty(K)
        for i in range(c * step, min(M, (c + 1) * step)):
            _row_log_probs(X[i], means, inv_sd, prec_chol, log_det, log_w, cov_type, tmp, lp)
            arg = 0
            for k in range(1, K):
                if lp[k] > lp[arg]:
                    arg = k
            out[i] = arg


@njit(**PJIT)
def posteriors(X, means, inv_sd, prec_chol, log_det, log_w, cov_type, out, nthreads):
    """Posterior probability of every component for every sample: ``out`` (M, K), parallel.

    """
    M, D = X.shape
    K = means.shape[0]
    nchunks = min(nthreads * 4, max(1, M // 1024))
    step = (M + nchunks - 1) // nchunks
    for c in prange(nchunks):
        tmp = np.empty(D)
        lp = np.empty(K)
        for i in range(c * step, min(M, (c + 1) * step)):
            best = _row_log_probs(X[i], means, inv_sd, prec_chol, log_det, log_w, cov_type, tmp, lp)
            s = 0.0
            for k in range(K):
                lp[k] = np.exp(lp[k] - best)
                s += lp[k]
            for k in range(K):
                out[i, k] = lp[k] / s


@njit(**PJIT)
def log_likelihood(X, w, means, inv_sd, prec_chol, log_det, log_w, cov_type, nthreads):
    """sum_i w_i log p(x_i) under the mixture, parallel."""
    M, D = X.shape
    K = means.shape[0]
    nchunks = min(nthreads * 4, max(1, M // 1024))
    step = (M + nchunks - 1) // nchunks
    part = np.zeros(nchunks)
    for c in prange(nchunks):
        tmp = np.empty(D)
        lp = np.empty(K)
        acc = 0.0
        for i in range(c * step, min(M, (c + 1) * step)):
            if w[i] == 0.0:
                continue
            best = _row_log_probs(X[i], means, inv_sd, prec_chol, log_det, log_w, cov_type, tmp, lp)
            s = 0.0
            for k in range(K):
                t = lp[k] - best
                if t > SKIP:
                    s += np.exp(t)
            acc += w[i] * (best + np.log(s))
        part[c] = acc
    return part.sum()


@njit(**PJIT)
def nearest_center(X, C, out, dist):
    """Index of the nearest centre (squared Euclidean) of every sample and that distance."""
    M, D = X.shape
    K = C.shape[0]
    for i in prange(M):
        best = np.inf
        arg = 0
        for k in range(K):
            s = 0.0
            for j in range(D):
                t = X[i, j] - C[k, j]
                s += t * t
            if s < best:
                best = s
                arg = k
        out[i] = arg
        dist[i] = best
