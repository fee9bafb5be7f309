"""Hidden-Markov-random-field kernels: mean-field / ICM sweeps of a Potts label field, the
pseudo-likelihood of the interaction strength, and the pieces of a multiplicative bias field.

Layout (the caller prepares it, these kernels trust it):

* pixels are flat, C order over spatial ``dims = (Z, Y, X)`` (a 2-D image has Z = 1);
  ``X`` (N, D) float32 holds the intensities (D channels), ``valid`` (N,) uint8 is 0 for masked or
  non-finite pixels; ``q`` (N, K) float32 the per-pixel posteriors (masked pixels: all 0, so they
  neither vote nor count);
* the neighbourhood is a list of offsets ``offs`` (n, 3) with weights ``wts`` (n,) (inverse
  physical distance, 1 for the nearest neighbours), symmetric;
* pixels are visited colour by colour: ``scheme`` 0 is the red-black checkerboard,
  colour (z + y + x) mod 2, for face neighbours (connectivity 1); ``scheme`` 1 colours by the parity
  of every coordinate, (z mod 2, y mod 2, x mod 2), for which no two pixels of one colour are
  neighbours even with diagonals. Pixels of one colour are therefore updated from neighbours that
  do not change during the pass: the result does not depend on the order, and so not on the
  number of threads;
* statistics are summed per image row (z, y) into ``acc`` (Z*Y, K, W) and ``obj`` (Z*Y,): fixed
  partial sums whatever the threads, reduced by the caller in a fixed order.

Component parameters use the conventions of :mod:`.em`: ``c0[k] = log w_k + log det(U_k) - D/2
log(2 pi)``, ``inv_sd`` (K, D) for spherical/diag, ``prec_chol`` (K, D, D) for full.
"""

import numpy as np
from numba import njit, prange

from ._config import JIT, PJIT, serial_copy

#: exp(-20) = 2e-9: below the resolution of the float32 posteriors next to the best class's share
EXP_CUT = -20.0


#: 2**-n for n = 0..63 (the exponent part of :func:`_exp_nonpos`)
_POW2_NEG = np.array([2.0**-n for n in range(64)])


@njit(inline="always", **JIT)
def _exp_nonpos(t):
    """exp(t) for EXP_CUT <= t <= 0 to 1e-8 relative (below the float32 posteriors' resolution),
    inlined: t = n ln 2 + r with |r| <= ln(2) / 2, exp(r) by its degree-7 Taylor polynomial
    (truncation 6e-9), 2**n from a table. libm's exp() was most of a sweep's cost."""
    n = np.floor(t * 1.4426950408889634 + 0.5)
    r = t - n * 0.6931471805599453
    p = 1.0 + r * (
        1.0
        + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0))))))
    )
    return p * _POW2_NEG[int(-n)]


@njit(inline="always", **JIT)
def _unary(X, i, ib, means, inv_sd, prec_chol, c0, cov_type, lp, xv):
    """lp[k] = log w_k + log N(x_i / b_i | k) for k < K (the bias Jacobian is left out)."""
    K, D = means.shape
    for j in range(D):
        xv[j] = X[i, j] * ib
    for k in range(K):
        m = 0.0
        if cov_type == 2:
            for j in range(D):
                y = 0.0
                for a in range(j + 1):
                    y += (xv[a] - means[k, a]) * prec_chol[k, a, j]
                m += y * y
        else:
            for j in range(D):
                t = (xv[j] - means[k, j]) * inv_sd[k, j]
                m += t * t
        lp[k] = c0[k] - 0.5 * m


@njit(**JIT)
def _inside(offs, o, z, y, x, Z, Y, Xn):
    """Whether the neighbour at offset ``offs[o]`` of pixel (z, y, x) lies inside the image."""
    zz = z + offs[o, 0]
    yy = y + offs[o, 1]
    xx = x + offs[o, 2]
    return 0 <= zz < Z and 0 <= yy < Y and 0 <= xx < Xn


@njit(**JIT)
def _first_x(c, z, y, scheme):
    """The first x of colour ``c`` in row (z, y) (its pixels are x0, x0 + 2, ...), or -1 when the
    row holds no pixel of that colour (the 4/8-colour scheme)."""
    if scheme == 0:
        return (c + z + y) & 1
    if (z & 1) * 4 + (y & 1) * 2 != (c & 6):
        return -1
    return c & 1


@njit(**JIT)
def _later_colours(offs, scheme, ncol):
    """later[c, o] = 1 where the neighbour at offset ``offs[o]`` of a pixel of colour ``c`` has a
    colour swept after ``c`` (so its posterior is still the previous sweep's): the two-colour
    scheme (0) or the 4/8-colour parity scheme."""
    nof = offs.shape[0]
    later = np.zeros((ncol, nof), np.uint8)
    for o in range(nof):
        for c in range(ncol):
            if scheme == 0:
                later[c, o] = c == 0
            else:
                cz = ((c >> 2) + offs[o, 0]) & 1
                cy = (((c >> 1) & 1) + offs[o, 1]) & 1
                cx = ((c & 1) + offs[o, 2]) & 1
                later[c, o] = cz * 4 + cy * 2 + cx > c
    return later


@njit(**PJIT)
def sweep(
    X,
    inv_b,
    valid,
    q,
    dims,
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
    accumulate,
    ref,
    acc,
    obj,
):
    """One sweep: every valid pixel's posterior recomputed once from its neighbours, colour by colour.

    Mean field (``hard`` False): q_i = softmax(lp_i + beta * sum_j w_ij q_j). ICM (``hard`` True): q_i
    the one-hot of the argmax of the same (ties to the lower index).

    With ``accumulate``, the M-step statistics of the new posteriors go to ``acc[row, k]`` =
    [sum q, sum q (x - ref_k) (D), sum q (x - ref_k)^2 (D, diagonal types) or the D*D outer
    products (full)]. ``obj[row]`` gets the rows' share of the objective: the mean-field free
    energy sum_i sum_k q_ik (lp_ik - log q_ik) + beta sum_{i~j} w_ij q_i.q_j (each pair counted
    once, when its later-coloured end is updated: the other end is final by then); for ICM the
    log-posterior energy sum_i lp_i(z_i) + beta sum_{i~j} w_ij [z_i = z_j]. ``acc`` and ``obj`` are
    added to (the caller zeroes them). ``inv_b`` (N,) divides the intensities (bias correction), or
    has size 0.

    Pixels whose neighbours are all inside the image take a path without bounds checks, through
    flat offsets.
    """
    Z, Y, Xn = dims[0], dims[1], dims[2]
    N, K = q.shape
    D = X.shape[1]
    R = Z * Y
    nof = offs.shape[0]
    full = cov_type == 2
    use_b = inv_b.shape[0] > 0
    ncol = 2 if scheme == 0 else (8 if Z > 1 else 4)
    W = acc.shape[2]
    loff = np.empty(nof, np.int64)
    for o in range(nof):
        loff[o] = (offs[o, 0] * Y + offs[o, 1]) * Xn + offs[o, 2]
    later = _later_colours(offs, scheme, ncol)
    for c in range(ncol):
        for r in prange(R):
            z = r // Y
            y = r - z * Y
            x0 = _first_x(c, z, y, scheme)
            if x0 < 0:
                continue
            # is every neighbour of this row's pixels inside along z and y?
            row_in = True
            for o in range(nof):
                zz = z + offs[o, 0]
                yy = y + offs[o, 1]
                if zz < 0 or zz >= Z or yy < 0 or yy >= Y:
                    row_in = False
            nb = np.empty(K)
            nbl = np.empty(K)
            lp = np.empty(K)
            xv = np.empty(D)
            d = np.empty(D)
            ra = np.zeros((K, W))
            o_row = 0.0
            # product of the rows' normalisers s (each in [1, K]): one log() per ~400 pixels
            # instead of one per pixel
            s_prod = 1.0
            base = r * Xn
            for x in range(x0, Xn, 2):
                i = base + x
                if valid[i] == 0:
                    continue
                for k in range(K):
                    nb[k] = 0.0
                    nbl[k] = 0.0
                if row_in and x > 0 and x < Xn - 1:
                    for o in range(nof):
                        j = i + loff[o]
                        w = wts[o]
                        if later[c, o]:
                            for k in range(K):
                                v = w * q[j, k]
                                nbl[k] += v
                                nb[k] += v
                        else:
                            for k in range(K):
                                nb[k] += w * q[j, k]
                else:
                    for o in range(nof):
                        if not _inside(offs, o, z, y, x, Z, Y, Xn):
                            continue
                        j = i + loff[o]
                        w = wts[o]
                        if later[c, o]:
                            for k in range(K):
                                v = w * q[j, k]
                                nbl[k] += v
                                nb[k] += v
                        else:
                            for k in range(K):
                                nb[k] += w * q[j, k]
                ib = inv_b[i] if use_b else 1.0
                _unary(X, i, ib, means, inv_sd, prec_chol, c0, cov_type, lp, xv)
                best = -np.inf
                arg = 0
                for k in range(K):
                    e = lp[k] + beta * nb[k]
                    if e > best:
                        best = e
                        arg = k
                if hard:
                    for k in range(K):
                        q[i, k] = 0.0
                    q[i, arg] = 1.0
                    o_row += lp[arg] + beta * (nb[arg] - nbl[arg])
                    if accumulate:
                        ra[arg, 0] += 1.0
                        for a in range(D):
                            d[a] = xv[a] - ref[arg, a]
                            ra[arg, 1 + a] += d[a]
                        for a in range(D):
                            if full:
                                for b in range(D):
                                    ra[arg, 1 + D + a * D + b] += d[a] * d[b]
                            else:
                                ra[arg, 1 + D + a] += d[a] * d[a]
                    continue
                s = 0.0
                for k in range(K):
                    # exp() is skipped for the best class (1) and for classes more than EXP_CUT
                    # nats below it (their share is below float32 resolution)
                    # (branch-free: which class is best changes from pixel to pixel)
                    t = lp[k] + beta * nb[k] - best
                    e = _exp_nonpos(max(t, EXP_CUT))  # exactly 1 for the best class
                    e = e if t >= EXP_CUT else 0.0
                    lp[k] = e
                    s += e
                inv_s = 1.0 / s
                later_term = 0.0
                for k in range(K):
                    p = lp[k] * inv_s
                    lp[k] = p
                    q[i, k] = p
                    later_term += p * nbl[k]
                # sum_k q (lp - log q) = best + log s - beta q.nb; plus beta q.(nb - nbl)
                o_row += best - beta * later_term
                s_prod *= s
                if s_prod > 1e250:
                    o_row += np.log(s_prod)
                    s_prod = 1.0
                if accumulate:
                    for k in range(K):
                        p = lp[k]
                        if p == 0.0:  # below EXP_CUT: most classes of most pixels
                            continue
                        ra[k, 0] += p
                        if full:
                            for a in range(D):
                                d[a] = xv[a] - ref[k, a]
                                ra[k, 1 + a] += p * d[a]
                            for a in range(D):
                                for b in range(D):
                                    ra[k, 1 + D + a * D + b] += p * d[a] * d[b]
                        else:
                            for a in range(D):
                                da = xv[a] - ref[k, a]
                                pd = p * da
                                ra[k, 1 + a] += pd
                                ra[k, 1 + D + a] += pd * da
            obj[r] += o_row + np.log(s_prod)
            if accumulate:
                for k in range(K):
                    for t in range(W):
                        acc[r, k, t] += ra[k, t]


#: exp(-5/16): the centre of the reduced argument of :func:`_exp_arith`
_EXP_C = 0.7316156289466418


@njit(inline="always", **JIT)
def _exp_arith(t):
    """exp(t) for EXP_CUT <= t <= 0 to 1e-8 relative, in arithmetic only (no table, no branch), so
    that a loop of them vectorises: exp(t) = (exp(-5/16) exp(v))**32 with v = t/32 + 5/16 in
    [-5/16, 5/16] (for t >= -20), exp(v) by its degree-8 Taylor polynomial (truncation 1.1e-10,
    times 32 through the five squarings)."""
    v = t * 0.03125 + 0.3125
    p = 1.0 + v * (
        1.0
        + v
        * (
            0.5
            + v
            * (
                1.0 / 6.0
                + v * (1.0 / 24.0 + v * (1.0 / 120.0 + v * (1.0 / 720.0 + v * (1.0 / 5040.0 + v * (1.0 / 40320.0)))))
            )
        )
    )
    y = p * _EXP_C
    y = y * y
    y = y * y
    y = y * y
    y = y * y
    return y * y


#: rows per chunk of :func:`sweep_grey` (fixed, so the chunks and their sums do not depend on the
#: thread count)
GREY_CHUNKS = 64
#: pixels whose normalisers are multiplied before one log() in :func:`sweep_grey` (each is in
#: [1, K]: K**64 stays far below the float64 range for any K < 6e4)
LOG_BLOCK = 64


@njit(**PJIT)
def pack_planar(q, dims, qp):
    """qp[k, 2 r + h, 1 + m] = q[r * X + 2 m + h, k]: the posteriors of every image row r split by
    the parity h of x, per class, contiguous, with a zero slot at each end of every half-row (and
    after the last pixel of an odd row's second half): the layout of :func:`sweep_grey`."""
    Z, Y, Xn = dims[0], dims[1], dims[2]
    K = q.shape[1]
    W2 = qp.shape[2]
    for r in prange(Z * Y):
        for h in range(2):
            for k in range(K):
                qp[k, 2 * r + h, 0] = 0.0
                for m in range(1, W2):
                    qp[k, 2 * r + h, m] = 0.0
            for x in range(h, Xn, 2):
                for k in range(K):
                    qp[k, 2 * r + h, 1 + (x >> 1)] = q[r * Xn + x, k]


@njit(**PJIT)
def unpack_planar(qp, dims, q):
    """The inverse of :func:`pack_planar`."""
    Z, Y, Xn = dims[0], dims[1], dims[2]
    K = q.shape[1]
    for r in prange(Z * Y):
        for x in range(Xn):
            h = x & 1
            for k in range(K):
                q[r * Xn + x, k] = qp[k, 2 * r + h, 1 + (x >> 1)]


@njit(**PJIT)
def sweep_grey(X1, inv_b, valid, qp, dims, offs, wts, scheme, c0, mu, inv, beta, accumulate, ref, acc, obj):
    """:func:`sweep` for mean field on grey images (one channel; ``mu``, ``inv`` (K,): the means and
    the inverse standard deviations, ``X1`` (N,)), the same update, statistics and objective, with
    its arithmetic vectorised. The posteriors are kept per class and per parity of x
    (:func:`pack_planar`, ``qp`` (K, 2 R, (X + 1) // 2 + 2)): one colour's pixels of a row are
    then a contiguous run, so are their neighbours of each offset (zero slots stand for the
    image's border), and the neighbour sums, the unary terms, exp(), the normalisation and the
    M-step sums run as SIMD loops over runs instead of pixel by pixel with branches. ``acc``
    (R, K, 3). Rows are processed in :data:`GREY_CHUNKS` fixed chunks, sums kept per row: the
    result does not depend on the number of threads."""
    Z, Y, Xn = dims[0], dims[1], dims[2]
    K = qp.shape[0]
    R = Z * Y
    nof = offs.shape[0]
    use_b = inv_b.shape[0] > 0
    ncol = 2 if scheme == 0 else (8 if Z > 1 else 4)
    H = (Xn + 1) // 2
    later = _later_colours(offs, scheme, ncol)
    nch = min(R, GREY_CHUNKS)
    step = (R + nch - 1) // nch
    for c in range(ncol):
        for ch in prange(nch):
            nb = np.empty((K, H))
            nbl = np.empty((K, H))
            e = np.empty((K, H))
            xs = np.empty(H)
            vm = np.empty(H)
            best = np.empty(H)
            s = np.empty(H)
            lt = np.empty(H)
            for r in range(ch * step, min(R, (ch + 1) * step)):
                z = r // Y
                y = r - z * Y
                x0 = _first_x(c, z, y, scheme)
                if x0 < 0:
                    continue
                n = (Xn - x0 + 1) // 2
                if n <= 0:
                    continue
                for k in range(K):
                    for m in range(n):
                        nb[k, m] = 0.0
                        nbl[k, m] = 0.0
                for o in range(nof):
                    zz = z + offs[o, 0]
                    yy = y + offs[o, 1]
                    if zz < 0 or zz >= Z or yy < 0 or yy >= Y:
                        continue
                    dx = offs[o, 2]
                    # pixel x = 2 m + x0 has its neighbour at x + dx: half (x0 + dx) & 1, index
                    # m + floor((x0 + dx) / 2) (slot 1 + that; the zero slots are outside)
                    row = 2 * (zz * Y + yy) + ((x0 + dx) & 1)
                    sl = 1 + ((x0 + dx) >> 1)
                    w = wts[o]
                    # (slices, so that the loops index from 0: no negative-index test per element,
                    # which kept them from vectorising)
                    if later[c, o]:
                        for k in range(K):
                            src = qp[k, row, sl : sl + n]
                            nbk = nb[k]
                            nblk = nbl[k]
                            for m in range(n):
                                v = w * src[m]
                                nbk[m] += v
                                nblk[m] += v
                    else:
                        for k in range(K):
                            src = qp[k, row, sl : sl + n]
                            nbk = nb[k]
                            for m in range(n):
                                nbk[m] += w * src[m]
                ib0 = r * Xn + x0
                xr = X1[ib0 : ib0 + 2 * n - 1 : 2]
                vr = valid[ib0 : ib0 + 2 * n - 1 : 2]
                if use_b:
                    br = inv_b[ib0 : ib0 + 2 * n - 1 : 2]
                    for m in range(n):
                        xs[m] = xr[m] * br[m]
                else:
                    for m in range(n):
                        xs[m] = xr[m]
                for m in range(n):
                    vm[m] = 1.0 if vr[m] != 0 else 0.0
                    best[m] = -np.inf
                for k in range(K):
                    ck, mk, ik = c0[k], mu[k], inv[k]
                    for m in range(n):
                        t = (xs[m] - mk) * ik
                        v = ck - 0.5 * t * t + beta * nb[k, m]
                        e[k, m] = v
                        best[m] = max(best[m], v)
                for m in range(n):
                    s[m] = 0.0
                    lt[m] = 0.0
                for k in range(K):
                    for m in range(n):
                        t = e[k, m] - best[m]
                        v = _exp_arith(max(t, EXP_CUT))
                        v = v if t >= EXP_CUT else 0.0
                        e[k, m] = v
                        s[m] += v
                # the free energy's log(s) terms: one log per LOG_BLOCK pixels (masked: s = 1)
                o_row = 0.0
                for m0 in range(0, n, LOG_BLOCK):
                    pr = 1.0
                    for m in range(m0, min(n, m0 + LOG_BLOCK)):
                        pr *= s[m] if vm[m] != 0.0 else 1.0
                    o_row += np.log(pr)
                for m in range(n):
                    s[m] = vm[m] / s[m]  # 0 for masked pixels: their q stays 0
                own = 2 * r + x0
                for k in range(K):
                    dst = qp[k, own, 1 : 1 + n]
                    for m in range(n):
                        p = e[k, m] * s[m]
                        e[k, m] = p
                        lt[m] += p * nbl[k, m]
                        dst[m] = p
                for m in range(n):
                    o_row += vm[m] * best[m] - beta * lt[m]
                obj[r] += o_row
                if accumulate:
                    for k in range(K):
                        rk = ref[k]
                        a0 = 0.0
                        a1 = 0.0
                        a2 = 0.0
                        for m in range(n):
                            p = e[k, m]
                            d = xs[m] - rk
                            pd = p * d
                            a0 += p
                            a1 += pd
                            a2 += pd * d
                        acc[r, k, 0] += a0
                        acc[r, k, 1] += a1
                        acc[r, k, 2] += a2


@njit(**JIT)
def _normalised_into(lp, best, q, i):
    """q[i] = the posteriors from the log-probabilities lp (K,) whose maximum is ``best``."""
    s = 0.0
    for k in range(lp.shape[0]):
        lp[k] = np.exp(lp[k] - best)
        s += lp[k]
    for k in range(lp.shape[0]):
        q[i, k] = lp[k] / s


@njit(**PJIT)
def init_posteriors(X, inv_b, valid, q, means, inv_sd, prec_chol, c0, cov_type):
    """q = the per-pixel posteriors (no neighbours), 0 for invalid pixels. Parallel over pixels."""
    N, K = q.shape
    D = X.shape[1]
    nch = max(1, min(N // 4096, 256))
    step = (N + nch - 1) // nch
    use_b = inv_b.shape[0] > 0
    for c in prange(nch):
        lp = np.empty(K)
        xv = np.empty(D)
        for i in range(c * step, min(N, (c + 1) * step)):
            if valid[i] == 0:
                for k in range(K):
                    q[i, k] = 0.0
                continue
            _unary(X, i, inv_b[i] if use_b else 1.0, means, inv_sd, prec_chol, c0, cov_type, lp, xv)
            best = -np.inf
            for k in range(K):
                best = max(best, lp[k])
            _normalised_into(lp, best, q, i)


@njit(**PJIT)
def onehot(lab, q):
    """q[i] = the one-hot vector of class lab[i] - 1 (all 0 where lab[i] = 0). Parallel."""
    N, K = q.shape
    nch = max(1, min(N // 8192, 256))
    step = (N + nch - 1) // nch
    for c in prange(nch):
        for i in range(c * step, min(N, (c + 1) * step)):
            for k in range(K):
                q[i, k] = 0.0
            if lab[i] > 0:
                q[i, lab[i] - 1] = 1.0


@njit(**PJIT)
def ranked_labels(q, valid, rank, out):
    """out[i] = rank[1 + argmax_k q[i, k]] (ties to the lower index), 0 for invalid pixels: the
    labels ordered by the caller's ``rank`` (K + 1,), in ``out``'s (label) dtype, in one pass."""
    N, K = q.shape
    nch = max(1, min(N // 8192, 256))
    step = (N + nch - 1) // nch
    for c in prange(nch):
        for i in range(c * step, min(N, (c + 1) * step)):
            if valid[i] == 0:
                out[i] = 0
                continue
            a = 0
            for k in range(1, K):
                if q[i, k] > q[i, a]:
                    a = k
            out[i] = rank[a + 1]


@njit(**PJIT)
def label_moments(X, lab, full, Nk, means, cov):
    """Per class k = lab - 1 (lab 0: left out): the count Nk (K,), the means (K, D) and the centred
    second moments divided by max(Nk, 1) in cov (K, D, D) (the diagonal only unless ``full``), in
    two passes over the pixels (means, then moments), summed in fixed chunks (the same whatever
    the threads)."""
    N, D = X.shape
    K = Nk.shape[0]
    nch = max(1, min(N // 65536, 64))
    step = (N + nch - 1) // nch
    p1 = np.zeros((nch, K, D + 1))
    for c in prange(nch):
        loc = np.zeros((K, D + 1))
        for i in range(c * step, min(N, (c + 1) * step)):
            k = np.int64(lab[i]) - 1
            if k < 0:
                continue
            loc[k, 0] += 1.0
            for a in range(D):
                loc[k, 1 + a] += X[i, a]
        # element by element: a slice assignment (p1[c] = loc) compiles Numba's broadcasting
        # shape check and its error message (string joins): 6-7 s of this kernel's cold compile
        for k in range(K):
            for a in range(D + 1):
                p1[c, k, a] = loc[k, a]
    for c in range(nch):
        for k in range(K):
            Nk[k] += p1[c, k, 0]
            for a in range(D):
                means[k, a] += p1[c, k, 1 + a]
    for k in range(K):
        for a in range(D):
            means[k, a] /= max(Nk[k], 1.0)
    p2 = np.zeros((nch, K, D, D))
    for c in prange(nch):
        loc2 = np.zeros((K, D, D))
        d = np.empty(D)
        for i in range(c * step, min(N, (c + 1) * step)):
            k = np.int64(lab[i]) - 1
            if k < 0:
                continue
            for a in range(D):
                d[a] = X[i, a] - means[k, a]
            for a in range(D):
                if full:
                    for b in range(a + 1):
                        loc2[k, a, b] += d[a] * d[b]
                else:
                    loc2[k, a, a] += d[a] * d[a]
        for k in range(K):
            for a in range(D):
                for b in range(D):
                    p2[c, k, a, b] = loc2[k, a, b]
    for c in range(nch):
        for k in range(K):
            for a in range(D):
                for b in range(a + 1):
                    cov[k, a, b] += p2[c, k, a, b]
    for k in range(K):
        for a in range(D):
            for b in range(a + 1):
                cov[k, a, b] /= max(Nk[k], 1.0)
                cov[k, b, a] = cov[k, a, b]


@njit(inline="always", **JIT)
def _uniform(j, seed):
    """A uniform number in [0, 1) from pixel index j and a seed (splitmix64): the same for a pixel
    whichever thread asks."""
    z = np.uint64(j) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(seed)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return np.float64(z >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@njit(**PJIT)
def neighbour_fields(q, valid, dims, offs, wts, idx, out, sample, seed):
    """out[s, k] = sum_j w_ij q_jk for the sampled pixels i = idx[s] (the mean-field neighbour
    evidence that the pseudo-likelihood of beta is a function of). With ``sample``, each
    neighbour contributes w_ij to one class drawn from its q_j instead (the simulated field of
    Celeux, Forbes & Peyrard 2003), with a counter-based random number per (pixel, seed)."""
    Z, Y, Xn = dims[0], dims[1], dims[2]
    K = q.shape[1]
    nof = offs.shape[0]
    M = idx.shape[0]
    nch = max(1, min(M // 2048, 256))
    step = (M + nch - 1) // nch
    for c in prange(nch):
        for s in range(c * step, min(M, (c + 1) * step)):
            i = idx[s]
            x = i % Xn
            r = i // Xn
            y = r % Y
            z = r // Y
            for k in range(K):
                out[s, k] = 0.0
            for o in range(nof):
                zz = z + offs[o, 0]
                yy = y + offs[o, 1]
                xx = x + offs[o, 2]
                if zz < 0 or zz >= Z or yy < 0 or yy >= Y or xx < 0 or xx >= Xn:
                    continue
                j = (zz * Y + yy) * Xn + xx
                if sample:
                    u = _uniform(j, seed)
                    cum = 0.0
                    for k in range(K):
                        cum += q[j, k]
                        if u < cum:
                            out[s, k] += wts[o]
                            break
                else:
                    for k in range(K):
                        out[s, k] += wts[o] * q[j, k]


@njit(**PJIT)
def simulated_patterns(q, dims, offs, wts, group, mult, idx, coords, seed, codes, lin):
    """The simulated neighbour field of :func:`neighbour_fields` (``sample`` True) as exact integer
    codes: for sampled pixel i = idx[s], the number of neighbours of each weight group g
    (``group[o]``) drawn into each class k, as the mixed-radix number sum_{g,k} count_gk *
    mult[g, k] in ``codes[s]`` (-1 for a pixel with q_i = 0: masked). The field is
    nbar_ik = sum_g w_g count_gk, so pixels with one code share it and the pseudo-likelihood needs
    one term per distinct code. ``lin[c]`` gets chunk c's share of sum_s sum_k q_ik nbar_ik (64
    fixed chunks: the same sum whatever the threads). ``coords`` (M, 3): (z, y, x) of idx."""
    Z, Y, Xn = dims[0], dims[1], dims[2]
    K = q.shape[1]
    nof = offs.shape[0]
    M = idx.shape[0]
    nch = lin.shape[0]
    step = (M + nch - 1) // nch
    loff = np.empty(nof, np.int64)
    mo = np.empty((nof, K), np.int64)
    for o in range(nof):
        loff[o] = (offs[o, 0] * Y + offs[o, 1]) * Xn + offs[o, 2]
        for k in range(K):
            mo[o, k] = mult[group[o], k]
    for c in prange(nch):
        acc = 0.0
        for s in range(c * step, min(M, (c + 1) * step)):
            i = idx[s]
            qsum = 0.0
            for k in range(K):
                qsum += q[i, k]
            if qsum == 0.0:
                codes[s] = -1
                continue
            z = coords[s, 0]
            y = coords[s, 1]
            x = coords[s, 2]
            # all neighbours inside the image (most pixels): no bounds tests, flat offsets
            inner = (Z == 1 or (z > 0 and z < Z - 1)) and y > 0 and y < Y - 1 and x > 0 and x < Xn - 1
            code = np.int64(0)
            a = 0.0
            for o in range(nof):
                if not inner:
                    if not _inside(offs, o, z, y, x, Z, Y, Xn):
                        continue
                j = i + loff[o]
                u = _uniform(j, seed)
                # the first k with u < q_j1 + .. + q_jk, branch-free (the class drawn is
                # unpredictable): the number of partial sums <= u; K when there is none (masked)
                cum = 0.0
                kk = 0
                for k in range(K):
                    cum += q[j, k]
                    kk += u >= cum
                if kk < K:
                    code += mo[o, kk]
                    a += wts[o] * q[i, kk]
            codes[s] = code
            acc += a
        lin[c] = acc


@njit(**PJIT)
def pseudo_likelihood(qs, nbar, log_w, beta):
    """(value, gradient, second derivative) in beta of the mean-field pseudo-log-likelihood

        PL(beta) = sum_s [ sum_k qs_k (log w_k + beta nbar_k) - log sum_k w_k exp(beta nbar_k) ],

    concave in beta (its second derivative is minus a sum of variances). Rows with qs = 0 (masked)
    are skipped. Summed in 64 fixed chunks (the same result whatever the threads)."""
    M, K = nbar.shape
    nch = 64
    step = (M + nch - 1) // nch
    part = np.zeros((nch, 3))
    for c in prange(nch):
        e = np.empty(K)
        v = 0.0
        g = 0.0
        h = 0.0
        for s in range(c * step, min(M, (c + 1) * step)):
            qsum = 0.0
            for k in range(K):
                qsum += qs[s, k]
            if qsum == 0.0:
                continue
            best = -np.inf
            for k in range(K):
                e[k] = log_w[k] + beta * nbar[s, k]
                best = max(best, e[k])
            tot = 0.0
            for k in range(K):
                e[k] = np.exp(e[k] - best)
                tot += e[k]
            m1 = 0.0
            m2 = 0.0
            obs = 0.0
            obsv = 0.0
            for k in range(K):
                p = e[k] / tot
                m1 += p * nbar[s, k]
                m2 += p * nbar[s, k] * nbar[s, k]
                obs += qs[s, k] * nbar[s, k]
                if qs[s, k] > 0:
                    obsv += qs[s, k] * log_w[k]
            v += obsv + beta * obs - best - np.log(tot)
            g += obs - m1
            h -= m2 - m1 * m1
        part[c, 0] = v
        part[c, 1] = g
        part[c, 2] = h
    v = 0.0
    g = 0.0
    h = 0.0
    for c in range(nch):
        v += part[c, 0]
        g += part[c, 1]
        h += part[c, 2]
    return v, g, h


# ---------------------------------------------------------------------------------------------
# bias field: log b(z, y, x) = sum_p c_p Lz[z, tz_p] Ly[y, ty_p] Lx[x, tx_p] (Legendre products)


@njit(**PJIT)
def bias_normal_equations(Xbar, valid, q, mu, var, log_b, dims, Lz, Ly, Lx, terms, stride, AtA, Atb):
    """Gauss-Newton normal equations for the coefficients of the log bias field, on every
    ``stride``-th pixel of every ``stride``-th row (the field is smooth).

    Model: Xbar_i ~ N(b_i mu_k, b_i^2 var_k) given class k, b_i = exp(log_b_i). Linearised around the
    current field, the update d of log b minimises sum_i W_i (r_i - d_i)^2 with
    W_i = sum_k q_ik mu_k^2 / var_k and r_i = sum_k q_ik mu_k (Xbar_i / b_i - mu_k) / var_k / W_i
    (intensities, not their logs: noisy pixels near 0 keep an unbiased weight). Fills AtA (P, P)
    and Atb (P,) with sums of W phi phi^T and W r phi, in fixed chunks of rows (independent of
    the thread count).
    """
    Z, Y, Xn = dims[0], dims[1], dims[2]
    P = terms.shape[0]
    K = q.shape[1]
    zs = (Z + stride - 1) // stride if Z > 1 else 1
    ys = (Y + stride - 1) // stride
    R = zs * ys
    nch = max(1, min(R, 64))
    step = (R + nch - 1) // nch
    nx = Lx.shape[1]
    part = np.zeros((nch, P * P + P))
    for c in prange(nch):
        # separably: per row, the sums over x of W Lx_a Lx_b and W r Lx_a (nx = degree + 1 each),
        # then their products with the row's z/y factors (instead of P*(P+1)/2 products per pixel)
        sxx = np.empty((nx, nx))
        sx = np.empty(nx)
        zy = np.empty(P)
        loc = np.zeros(P * P + P)  # this chunk's sums (not part[c]: threads' rows share cache lines)
        for rr in range(c * step, min(R, (c + 1) * step)):
            zi = rr // ys
            z = zi * stride if Z > 1 else 0
            y = (rr - zi * ys) * stride
            sxx[:] = 0.0
            sx[:] = 0.0
            for x in range(0, Xn, stride):
                i = (z * Y + y) * Xn + x
                if valid[i] == 0:
                    continue
                xc = Xbar[i] * np.exp(-log_b[i])
                W = 0.0
                m = 0.0
                for k in range(K):
                    wk = q[i, k] * mu[k] / var[k]
                    W += wk * mu[k]
                    m += wk * (xc - mu[k])
                if W <= 0.0:
                    continue
                # W r = m
                for a in range(nx):
                    wa = W * Lx[x, a]
                    sx[a] += m * Lx[x, a]
                    for b in range(a + 1):
                        sxx[a, b] += wa * Lx[x, b]
            for p in range(P):
                zy[p] = Lz[z, terms[p, 0]] * Ly[y, terms[p, 1]]
            for a in range(P):
                ta = terms[a, 2]
                loc[P * P + a] += zy[a] * sx[ta]
                for b in range(a + 1):
                    tb = terms[b, 2]
                    loc[a * P + b] += zy[a] * zy[b] * (sxx[ta, tb] if ta >= tb else sxx[tb, ta])
        for t in range(P * P + P):
            part[c, t] = loc[t]
    for c in range(nch):
        for a in range(P):
            Atb[a] += part[c, P * P + a]
            for b in range(a + 1):
                AtA[a, b] += part[c, a * P + b]
    for a in range(P):
        for b in range(a):
            AtA[b, a] = AtA[a, b]


@njit(**PJIT)
def bias_evaluate(coef, terms, Lz, Ly, Lx, dims, out_log):
    """out_log[i] = log b at every pixel (flat, C order over dims), separably: per row, the
    x-polynomial's coefficients, then the x loop."""
    Z, Y, Xn = dims[0], dims[1], dims[2]
    P = terms.shape[0]
    nx = Lx.shape[1]
    for r in prange(Z * Y):
        z = r // Y
        y = r - z * Y
        g = np.zeros(nx)
        for p in range(P):
            g[terms[p, 2]] += coef[p] * Lz[z, terms[p, 0]] * Ly[y, terms[p, 1]]
        for x in range(Xn):
            v = 0.0
            for t in range(nx):
                v += g[t] * Lx[x, t]
            out_log[r * Xn + x] = v


@njit(**PJIT)
def bias_field(coef, terms, Lz, Ly, Lx, dims, valid, out_log, out_inv):
    """:func:`bias_evaluate` centred to a mean log of 0 over the valid pixels (a geometric mean of
    1: the field's overall scale belongs to the class means), and out_inv = 1 / b (float32), in
    two parallel passes over the rows (the mean summed per row, then in row order: independent of
    the thread count). Returns the constant taken out."""
    Z, Y, Xn = dims[0], dims[1], dims[2]
    R = Z * Y
    P = terms.shape[0]
    nx = Lx.shape[1]
    rs = np.zeros(R)
    rn = np.zeros(R)
    for r in prange(R):
        z = r // Y
        y = r - z * Y
        g = np.zeros(nx)
        for p in range(P):
            g[terms[p, 2]] += coef[p] * Lz[z, terms[p, 0]] * Ly[y, terms[p, 1]]
        a = 0.0
        n = 0.0
        for x in range(Xn):
            v = 0.0
            for t in range(nx):
                v += g[t] * Lx[x, t]
            out_log[r * Xn + x] = v
            if valid[r * Xn + x] != 0:
                a += v
                n += 1.0
        rs[r] = a
        rn[r] = n
    tot = 0.0
    cnt = 0.0
    for r in range(R):
        tot += rs[r]
        cnt += rn[r]
    shift = tot / cnt if cnt > 0 else 0.0
    for r in prange(R):
        for i in range(r * Xn, (r + 1) * Xn):
            v = out_log[i] - shift
            out_log[i] = v
            out_inv[i] = np.exp(np.float32(-v))
    return shift


@njit(**JIT)
def grey_class_moments(xs, log_b, q, out):
    """out[k] = (sum q_k, sum q_k x, sum q_k x^2) of the bias-corrected grey levels x = xs / b
    (serial: the start's field runs on a small grid)."""
    n, K = q.shape
    for k in range(K):
        out[k, 0] = 0.0
        out[k, 1] = 0.0
        out[k, 2] = 0.0
    for i in range(n):
        xc = xs[i] * np.exp(-log_b[i])
        for k in range(K):
            p = np.float64(q[i, k])
            out[k, 0] += p
            out[k, 1] += p * xc
            out[k, 2] += p * xc * xc


@njit(**JIT)
def grey_posteriors(xs, log_b, ok, mu, var, q):
    """q = the posteriors of a grey mixture with equal weights of the corrected levels xs / b, 0
    where not ``ok`` (serial: the start's field runs on a small grid)."""
    n, K = q.shape
    lp = np.empty(K)
    half_log_var = 0.5 * np.log(var)
    for i in range(n):
        if not ok[i]:
            for k in range(K):
                q[i, k] = 0.0
            continue
        xc = xs[i] * np.exp(-log_b[i])
        best = -np.inf
        for k in range(K):
            d = xc - mu[k]
            lp[k] = -0.5 * d * d / var[k] - half_log_var[k]
            best = max(best, lp[k])
        _normalised_into(lp, best, q, i)


#: serial twins for the start's field on a small grid (:meth:`napari_gmm.spatial.SpatialProblem.start_field`):
#: a parallel launch costs more than their work there, and milliseconds on a loaded machine
bias_normal_equations_serial = njit(**JIT)(serial_copy(bias_normal_equations.py_func))
bias_evaluate_serial = njit(**JIT)(serial_copy(bias_evaluate.py_func))
