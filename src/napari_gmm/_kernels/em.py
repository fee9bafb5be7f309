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

import math

import numpy as np
from numba import njit, prange

from ._config import JIT, JIT_NO_REASSOC, PJIT, serial_copy

LOG_2PI = np.log(2.0 * np.pi)
#: components whose log-probability is this far below a sample's best one get exp() == 0:
#: exp(-34.6) < 1e-15 relative to the best term, at the resolution of a float64 sum.
SKIP = -34.6
#: samples per block of the E-step (diagonal types): the components that cannot come within SKIP of
#: any sample of the block are pruned (unique colours come sorted by their packed key, grey levels
#: sorted, so a block is compact), and the rest are evaluated densely, samples in the inner loop
#: (SIMD). Larger blocks prune less but vectorise longer runs; 128 was the fastest of 32/64/128
#: (README, Development).
BLOCK = 128
#: ln 2 split for Cody-Waite range reduction: n * LN2_HI is exact for |n| < 2**11
LN2_HI = 0.693145751953125
LN2_LO = 1.4286068203094173e-06
#: Taylor coefficients of exp(g) for |g| <= ln(2) / 2 up to g**13 (truncation error < 2e-17 relative)
_C = 1.0 / np.array([math.factorial(n) for n in range(14)], dtype=np.float64)


@njit(**JIT_NO_REASSOC)
def _exp_neg(t):
    """exp(t) for SKIP <= t <= 0 to float64 precision (6.7e-16 relative, tests/_kernels) without a table
    and without branches, so that the E-step's loop over it vectorises.

    exp(t) = 2**n exp(g), n = floor(t / ln 2), g = t - n ln 2 in [0, ln 2) (Cody-Waite: exact),
    exp(g) = sqrt(2) exp(g - ln(2)/2) by a degree-13 polynomial in Estrin's scheme, and 2**n as a
    product of exact powers of two chosen by selects. A table look-up (a gather) can keep LLVM
    from vectorising the loop (CPUs where gathers are costed as slow). Compiled without
    re-association, which would undo the range reduction.
    """
    n = np.floor(t * 1.4426950408889634)  # -50 <= n <= 0
    g = (t - n * LN2_HI) - n * LN2_LO
    g = g - 0.34657359027997264
    m = -n
    c = m >= 32.0
    m = m - 32.0 if c else m
    s1 = 2.0**-32 if c else 1.0
    c = m >= 16.0
    m = m - 16.0 if c else m
    s2 = 2.0**-16 if c else 1.0
    c = m >= 8.0
    m = m - 8.0 if c else m
    s3 = 2.0**-8 if c else 1.0
    c = m >= 4.0
    m = m - 4.0 if c else m
    s4 = 2.0**-4 if c else 1.0
    c = m >= 2.0
    m = m - 2.0 if c else m
    s5 = 0.25 if c else 1.0
    s6 = 0.5 if m >= 1.0 else 1.0
    scale = ((s1 * s2) * (s3 * s4)) * ((s5 * s6) * 1.4142135623730951)  # exact: powers of two
    g2 = g * g
    g4 = g2 * g2
    q0 = (_C[0] + _C[1] * g) + g2 * (_C[2] + _C[3] * g)
    q1 = (_C[4] + _C[5] * g) + g2 * (_C[6] + _C[7] * g)
    q2 = (_C[8] + _C[9] * g) + g2 * (_C[10] + _C[11] * g)
    p = (q0 + g4 * q1) + (g4 * g4) * (q2 + g4 * (_C[12] + _C[13] * g))
    return p * scale


@njit(**JIT)
def _log_prob(X, i, k, means, inv_sd, prec_chol, cov_type, tmp):
    """Minus half the squared Mahalanobis distance of sample X[i] to component ``k``.

    Takes (X, i) rather than the row X[i]: a row view's reference count is an atomic shared by all
    threads of a parallel loop, and updating it per sample serialises them.
    """
    D = X.shape[1]
    maha = 0.0
    if cov_type == 2:
        for j in range(D):
            tmp[j] = X[i, j] - means[k, j]
        for j in range(D):
            y = 0.0
            for q in range(j + 1):
                y += tmp[q] * prec_chol[k, q, j]
            maha += y * y
    else:
        for j in range(D):
            y = (X[i, j] - means[k, j]) * inv_sd[k, j]
            maha += y * y
    return -0.5 * maha


@njit(**JIT)
def _row_log_probs(X, i, means, inv_sd, prec_chol, log_det, log_w, cov_type, tmp, lp):
    """Fill ``lp`` (K,) with log w_k + log N(X[i] | k); return the maximum."""
    K = means.shape[0]
    D = X.shape[1]
    const = -0.5 * D * LOG_2PI
    best = -np.inf
    for k in range(K):
        v = _log_prob(X, i, k, means, inv_sd, prec_chol, cov_type, tmp) + log_det[k] + log_w[k] + const
        lp[k] = v
        if v > best:
            best = v
    return best


def _estep_impl(X, w, means, ref, inv_sd, prec_chol, log_det, log_w, cov_type, Nk, Sx, Sxx, nthreads):
    """One E-step with the M-step sufficient statistics, parallel over sample chunks.

    Writes ``Nk`` (K,), ``Sx`` (K, D) = sum r w (x - ref), ``Sxx`` (K, D, D) = sum r w (x - ref)(x - ref)^T
    (only the diagonal for cov_type < 2) and returns sum_i w_i log p(x_i).

    Diagonal types go block by block (:data:`BLOCK` samples): the components that cannot come
    within ``SKIP`` nats of any sample's best one are pruned for the whole block, and the rest are
    evaluated densely with the samples in the inner, contiguous loop (distances, exp, responsibilities
    and the accumulation all vectorise), which is what makes K = 32..64 colour fits cheap. The full
    type goes sample by sample.
    """
    M, D = X.shape
    K = means.shape[0]
    nchunks = max(1, min(nthreads * 4, M // 512))
    diag = cov_type != 2
    # one contiguous row per (chunk, component): [N, Sx (D), Sxx (D diagonal, or D*D full)]
    width = 1 + D + (D if diag else D * D)
    acc = np.zeros((nchunks, K, width))
    pll = np.zeros(nchunks)
    # component-inner layouts for the block bounds
    MT = np.empty((D, K))
    PT = np.empty((D, K))
    c0 = np.empty(K)
    const = -0.5 * D * LOG_2PI
    for k in range(K):
        c0[k] = log_det[k] + log_w[k] + const
        for j in range(D):
            MT[j, k] = means[k, j]
            PT[j, k] = inv_sd[k, j] * inv_sd[k, j]
    step = (M + nchunks - 1) // nchunks
    for c in prange(nchunks):
        stop = min(M, (c + 1) * step)
        if diag:
            pll[c] = _estep_diag_chunk(X, w, c * step, stop, MT, PT, c0, ref, acc, c)
        else:
            pll[c] = _estep_full_chunk(
                X, w, c * step, stop, means, ref, inv_sd, prec_chol, log_det, log_w, cov_type, acc, c
            )
    Nk[:] = 0.0
    Sx[:] = 0.0
    Sxx[:] = 0.0
    total = 0.0
    for c in range(nchunks):
        total += pll[c]
        for k in range(K):
            Nk[k] += acc[c, k, 0]
            for a in range(D):
                Sx[k, a] += acc[c, k, 1 + a]
                if diag:
                    Sxx[k, a, a] += acc[c, k, 1 + D + a]
                else:
                    for b in range(a + 1):
                        Sxx[k, a, b] += acc[c, k, 1 + D + a * D + b]
    if not diag:
        for k in range(K):
            for a in range(D):
                for b in range(a):
                    Sxx[k, b, a] = Sxx[k, a, b]
    return total


@njit(inline="always", **JIT)
def _estep_diag_chunk(X, w, start, stop, MT, PT, c0, ref, acc, c):
    """Samples start..stop of the diagonal-type E-step, block by block, into ``acc[c]``; returns
    their sum of w log p."""
    D, K = MT.shape
    L = np.empty((K, BLOCK))  # log-probabilities, then exp, then responsibilities (candidate rows)
    XT = np.empty((D, BLOCK))
    f = np.empty(BLOCK)
    best = np.empty(BLOCK)
    s = np.empty(BLOCK)
    cand = np.empty(K, np.int64)
    far = np.empty(K)
    near = np.empty(K)
    lo = np.empty(D)
    hi = np.empty(D)
    ll = 0.0
    for b0 in range(start, stop, BLOCK):
        nb = min(stop, b0 + BLOCK) - b0
        for j in range(D):
            lo[j] = np.inf
            hi[j] = -np.inf
        for i in range(nb):
            for j in range(D):
                v = X[b0 + i, j]  # indexed, not a row view: its atomic refcount serialised threads
                XT[j, i] = v
                lo[j] = min(lo[j], v)
                hi[j] = max(hi[j], v)
        # Prune the components that cannot come within SKIP nats of any sample's best one: an
        # upper bound of their log-probability over the block's bounding box against a lower
        # bound of every sample's best. A sample's best component always stays.
        # (components in the inner loops: they vectorise)
        for k in range(K):
            far[k] = 0.0
            near[k] = 0.0
        for j in range(D):
            lj = lo[j]
            hj = hi[j]
            for k in range(K):
                m = MT[j, k]
                u = lj - m
                v = hj - m
                far[k] += max(u * u, v * v) * PT[j, k]
                g = max(u, 0.0) + max(-v, 0.0)  # distance from m to [lo, hi] along j
                near[k] += g * g * PT[j, k]
        lb = -np.inf
        for k in range(K):
            lb = max(lb, c0[k] - 0.5 * far[k])
        nc = 0
        for k in range(K):
            if c0[k] - 0.5 * near[k] - lb > SKIP:
                cand[nc] = k
                nc += 1
        for i in range(nb):
            best[i] = -np.inf
            s[i] = 0.0
        for q in range(nc):
            k = cand[q]
            for i in range(nb):
                L[q, i] = 0.0
            for j in range(D):
                m = MT[j, k]
                p = PT[j, k]
                for i in range(nb):
                    t = XT[j, i] - m
                    L[q, i] += t * t * p
            ck = c0[k]
            for i in range(nb):
                v = ck - 0.5 * L[q, i]
                L[q, i] = v
                best[i] = max(best[i], v)
        for q in range(nc):
            for i in range(nb):
                # exp() of every entry (t is clamped to its domain) and a select after it: no
                # branch in the loop, which vectorises
                t = max(L[q, i] - best[i], SKIP)
                e = _exp_neg(t)
                e = e if t > SKIP else 0.0
                L[q, i] = e
                s[i] += e
        for i in range(nb):  # scalar: np.log is a libm call (a polynomial log with its division
            wi = w[b0 + i]  # did not vectorise either, and ran slower)
            ll += wi * (best[i] + np.log(s[i]))
            f[i] = wi / s[i]
        for q in range(nc):
            k = cand[q]
            n0 = 0.0
            for i in range(nb):
                r = L[q, i] * f[i]
                L[q, i] = r
                n0 += r
            acc[c, k, 0] += n0
            for j in range(D):
                rj = ref[k, j]
                s1 = 0.0
                s2 = 0.0
                for i in range(nb):
                    d = XT[j, i] - rj
                    rd = L[q, i] * d
                    s1 += rd
                    s2 += rd * d
                acc[c, k, 1 + j] += s1
                acc[c, k, 1 + D + j] += s2
    return ll


@njit(**JIT)
def _estep_full_chunk(X, w, start, stop, means, ref, inv_sd, prec_chol, log_det, log_w, cov_type, acc, c):
    """Samples start..stop of the full-covariance E-step, sample by sample, into ``acc[c]``."""
    K, D = means.shape
    lp = np.empty(K)
    tmp = np.empty(D)
    d = np.empty(D)
    ll = 0.0
    for i in range(start, stop):
        wi = w[i]
        if wi == 0.0:
            continue
        best = _row_log_probs(X, i, means, inv_sd, prec_chol, log_det, log_w, cov_type, tmp, lp)
        s = 0.0
        for k in range(K):
            t = max(lp[k] - best, SKIP)
            e = _exp_neg(t) if t > SKIP else 0.0
            lp[k] = e
            s += e
        ll += wi * (best + np.log(s))
        inv_s = wi / s
        for k in range(K):
            if lp[k] == 0.0:
                continue
            rw = lp[k] * inv_s
            acc[c, k, 0] += rw
            for j in range(D):
                d[j] = X[i, j] - ref[k, j]
                acc[c, k, 1 + j] += rw * d[j]
            for a in range(D):
                for b in range(a + 1):
                    acc[c, k, 1 + D + a * D + b] += rw * d[a] * d[b]
    return ll


#: the E-step, parallel over chunks of samples (large sample sets)
estep_accumulate = njit(**PJIT)(_estep_impl)
#: the same E-step compiled serially: no thread start-up for the few hundred samples of a grey histogram
estep_accumulate_serial = njit(**JIT)(serial_copy(_estep_impl))


def _map_labels(X, means, inv_sd, prec_chol, log_det, log_w, cov_type, out, nthreads):
    """Most probable component (0-based) of every sample, parallel. Ties go to the lower index.

    Diagonal types use the E-step's component-inner layout, so the K distances vectorise."""
    M, D = X.shape
    K = means.shape[0]
    nchunks = min(nthreads * 4, max(1, M // 1024))
    step = (M + nchunks - 1) // nchunks
    MT = np.empty((D, K))
    PT = np.empty((D, K))
    c0 = np.empty(K)
    for k in range(K):
        c0[k] = log_det[k] + log_w[k]
        for j in range(D):
            MT[j, k] = means[k, j]
            PT[j, k] = inv_sd[k, j] * inv_sd[k, j]
    for c in prange(nchunks):
        tmp = np.empty(D)
        lp = np.empty(K)
        for i in range(c * step, min(M, (c + 1) * step)):
            if cov_type != 2:
                for k in range(K):
                    lp[k] = 0.0
                for j in range(D):
                    xj = X[i, j]
                    for k in range(K):
                        t = xj - MT[j, k]
                        lp[k] += t * t * PT[j, k]
                for k in range(K):
                    lp[k] = c0[k] - 0.5 * lp[k]
            else:
                _row_log_probs(X, i, means, inv_sd, prec_chol, log_det, log_w, cov_type, tmp, lp)
            arg = 0
            for k in range(1, K):
                if lp[k] > lp[arg]:
                    arg = k
            out[i] = arg


map_labels = njit(**PJIT)(_map_labels)
#: serial twin: the look-up table of a grey histogram has a few hundred entries
map_labels_serial = njit(**JIT)(serial_copy(_map_labels))


@njit(**PJIT)
def posteriors(X, means, inv_sd, prec_chol, log_det, log_w, cov_type, out, nthreads):
    """Posterior probability of every component for every sample: ``out`` (M, K), parallel."""
    M, D = X.shape
    K = means.shape[0]
    nchunks = min(nthreads * 4, max(1, M // 1024))
    step = (M + nchunks - 1) // nchunks
    for c in prange(nchunks):
        tmp = np.empty(D)
        lp = np.empty(K)
        for i in range(c * step, min(M, (c + 1) * step)):
            best = _row_log_probs(X, i, means, inv_sd, prec_chol, log_det, log_w, cov_type, tmp, lp)
            s = 0.0
            for k in range(K):
                lp[k] = np.exp(lp[k] - best)
                s += lp[k]
            for k in range(K):
                out[i, k] = lp[k] / s


def _log_likelihood(X, w, means, inv_sd, prec_chol, log_det, log_w, cov_type, nthreads):
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
            best = _row_log_probs(X, i, means, inv_sd, prec_chol, log_det, log_w, cov_type, tmp, lp)
            s = 0.0
            for k in range(K):
                t = lp[k] - best
                if t > SKIP:
                    s += np.exp(t)
            acc += w[i] * (best + np.log(s))
        part[c] = acc
    return part.sum()


log_likelihood = njit(**PJIT)(_log_likelihood)
#: serial twin (small sample sets: no thread wake-up)
log_likelihood_serial = njit(**JIT)(serial_copy(_log_likelihood))


@njit(**PJIT)
def morton_codes(X, lo, scale, bits, out):
    """Z-order (Morton) code of every sample: the ``bits`` high bits of each feature, quantised
    as (x - lo) * scale in [0, 2**bits), interleaved (bits * D <= 62; bit b of feature d goes to
    position b D + D - 1 - d). Samples sorted by it sit in compact boxes, which is what the
    E-step's per-block pruning needs. Parallel over samples, bits spread by a table."""
    M, D = X.shape
    top = (1 << bits) - 1
    spread = np.zeros(top + 1, np.int64)
    for v in range(top + 1):
        s = np.int64(0)
        for b in range(bits):
            s |= np.int64((v >> b) & 1) << (b * D)
        spread[v] = s
    for i in prange(M):
        code = np.int64(0)
        for d in range(D):
            q = min(top, max(0, np.int64((X[i, d] - lo[d]) * scale[d])))
            code |= spread[q] << (D - 1 - d)
        out[i] = code


@njit(**JIT)
def precisions(cov, cov_type, inv_sd, prec_chol, log_det):
    """Precision factors of covariances held as (K, D, D) (diagonal types: only the diagonal is read).

    Fills ``inv_sd`` (diagonal types) or ``prec_chol`` (full: the upper factor U = inv(L).T of the
    Cholesky factor L of the covariance) and ``log_det`` = log det(U). Returns -1, or the index of
    the first component whose covariance is not positive definite (collapsed).
    """
    K, D, _ = cov.shape
    L = np.zeros((D, D))
    Li = np.zeros((D, D))
    for k in range(K):
        if cov_type != 2:
            ld = 0.0
            for j in range(D):
                v = cov[k, 0, 0] if cov_type == 0 else cov[k, j, j]
                if not (v > 0.0) or not np.isfinite(v):
                    return k
                inv_sd[k, j] = 1.0 / np.sqrt(v)
                ld += np.log(inv_sd[k, j])
            log_det[k] = ld
            continue
        L[:] = 0.0
        for j in range(D):
            s = cov[k, j, j]
            for m in range(j):
                s -= L[j, m] * L[j, m]
            if not (s > 0.0) or not np.isfinite(s):
                return k
            L[j, j] = np.sqrt(s)
            for i in range(j + 1, D):
                t = cov[k, i, j]
                for m in range(j):
                    t -= L[i, m] * L[j, m]
                L[i, j] = t / L[j, j]
        Li[:] = 0.0
        ld = 0.0
        for i in range(D):
            Li[i, i] = 1.0 / L[i, i]
            ld -= np.log(L[i, i])
            for j in range(i):
                t = 0.0
                for m in range(j, i):
                    t += L[i, m] * Li[m, j]
                Li[i, j] = -t / L[i, i]
        for a in range(D):
            for b in range(D):
                prec_chol[k, a, b] = Li[b, a]
        log_det[k] = ld
    return -1


@njit(**JIT)
def m_step(Nk, Sx, Sxx, cov_type, reg, weights, means, cov):
    """scikit-learn's M-step from statistics accumulated around the current means (in place).

    nk + 10 eps, reg on the diagonal, spherical = mean of the diagonal; ``Sx`` is overwritten.
    """
    K, D = means.shape
    eps10 = 10.0 * np.finfo(np.float64).eps
    total = 0.0
    for k in range(K):
        nk = Nk[k] + eps10
        total += nk
        for j in range(D):
            Sx[k, j] /= nk
        for a in range(D):
            for b in range(D):
                if cov_type == 2:
                    cov[k, a, b] = Sxx[k, a, b] / nk - Sx[k, a] * Sx[k, b]
                else:
                    cov[k, a, b] = 0.0
            cov[k, a, a] = Sxx[k, a, a] / nk - Sx[k, a] * Sx[k, a] + reg
        if cov_type == 0:
            v = 0.0
            for j in range(D):
                v += cov[k, j, j]
            v /= D
            for j in range(D):
                cov[k, j, j] = v
        for j in range(D):
            means[k, j] += Sx[k, j]
        weights[k] = nk
    for k in range(K):
        weights[k] /= total


@njit(**JIT)
def log_weights(weights, out):
    for k in range(weights.shape[0]):
        out[k] = np.log(weights[k]) if weights[k] > 0 else -np.inf


@njit(**JIT)
def em_step(X, w, weights, means, cov, cov_type, reg, inv_sd, prec_chol, log_det, log_w, Nk, Sx, Sxx):
    """One EM iteration on a small sample set in one compiled call: precisions, serial E-step,
    M-step (``weights``, ``means``, ``cov`` updated in place; the other arrays are scratch).

    Returns (sum_i w_i log p(x_i) at the parameters it was called with, collapsed), collapsed being
    -1 or the index of a component whose covariance is not positive definite (then nothing is
    updated).
    """
    bad = precisions(cov, cov_type, inv_sd, prec_chol, log_det)
    if bad >= 0:
        return 0.0, bad
    log_weights(weights, log_w)
    ll = estep_accumulate_serial(X, w, means, means, inv_sd, prec_chol, log_det, log_w, cov_type, Nk, Sx, Sxx, 1)
    m_step(Nk, Sx, Sxx, cov_type, reg, weights, means, cov)
    return ll, -1


@njit(**JIT)
def squarem_extrapolate(w0, m0, c0, w1, m1, c1, w2, m2, c2, cov_type, max_step, w, m, c, inv_sd, prec_chol, log_det):
    """SQUAREM's extrapolated parameters theta0 - 2 a r + a**2 v into (w, m, c) (Varadhan &
    Roland 2008, S3 step a = -|r| / |v|, at most ``max_step`` in size), from three consecutive EM
    iterates; a is halved towards -1 while the candidate has a weight <= 0 or a covariance that is
    not positive definite. Returns False when no candidate beyond theta2 (a = -1) is valid."""
    K, D = m0.shape
    r2 = 0.0
    v2 = 0.0
    for k in range(K):
        r = w1[k] - w0[k]
        v = w2[k] - 2.0 * w1[k] + w0[k]
        r2 += r * r
        v2 += v * v
        for j in range(D):
            r = m1[k, j] - m0[k, j]
            v = m2[k, j] - 2.0 * m1[k, j] + m0[k, j]
            r2 += r * r
            v2 += v * v
            for i in range(D):
                r = c1[k, j, i] - c0[k, j, i]
                v = c2[k, j, i] - 2.0 * c1[k, j, i] + c0[k, j, i]
                r2 += r * r
                v2 += v * v
    if not (r2 > 0.0 and v2 > 0.0 and np.isfinite(r2) and np.isfinite(v2)):
        return False
    alpha = max(-max_step, -np.sqrt(r2 / v2))
    while alpha < -1.0:
        a1 = -2.0 * alpha
        a2 = alpha * alpha
        ok = True
        for k in range(K):
            w[k] = w0[k] + a1 * (w1[k] - w0[k]) + a2 * (w2[k] - 2.0 * w1[k] + w0[k])
            if not (w[k] > 0.0):
                ok = False
            for j in range(D):
                m[k, j] = m0[k, j] + a1 * (m1[k, j] - m0[k, j]) + a2 * (m2[k, j] - 2.0 * m1[k, j] + m0[k, j])
                if not np.isfinite(m[k, j]):
                    ok = False
                for i in range(D):
                    c[k, j, i] = (
                        c0[k, j, i]
                        + a1 * (c1[k, j, i] - c0[k, j, i])
                        + a2 * (c2[k, j, i] - 2.0 * c1[k, j, i] + c0[k, j, i])
                    )
        if ok and precisions(c, cov_type, inv_sd, prec_chol, log_det) < 0:
            return True
        alpha = 0.5 * (alpha - 1.0)
    return False
