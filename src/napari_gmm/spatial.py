"""Noise-robust segmentation: a Gaussian mixture with a Potts (hidden-Markov-random-field) prior on
the labels, fitted by mean-field EM on the pixels, with an automatic interaction strength and an
optional smooth multiplicative bias field.

Model
-----
Each pixel i has a hidden class z_i in 1..K and intensity x_i ~ N(mu_k, Sigma_k) given z_i = k
(divided by the bias field b_i when one is estimated). The labels follow a Potts model

    p(z) ~ prod_i w_{z_i} exp(beta sum_{j ~ i, j > i} w_ij [z_i = z_j]),

with neighbour weights w_ij = (smallest spacing) / (physical distance), so that anisotropic voxels
(``spacing``) are smoothed correctly. ``beta = 0`` is the per-pixel mixture of
:func:`napari_gmm.fit_mixture`.

Fit
---
EM under the package's one driver (:mod:`napari_gmm.em`): the E-step is a mean-field sweep (Zhang
1992; Celeux, Forbes & Peyrard 2003) visiting pixels in a red-black checkerboard (all colours of
the parity lattice with diagonal neighbours), so that pixels updated together are never neighbours:
the result is independent of the number of threads. The M-step re-estimates weights, means and
covariances from the soft posteriors (their sufficient statistics are summed during the sweep, so
the M-step costs nothing extra). The objective is the mean-field free energy per pixel, which both
steps increase at fixed beta. ``beta="auto"`` re-estimates beta after every E-step by maximising
the pseudo-likelihood of a field sampled from the current posteriors (Besag 1975; Celeux et al.
2003): a concave one-dimensional problem solved by Newton's method on a subsample of at most 2**16
pixels, grouped by their (integer-coded) sampled neighbour field, so a few hundred terms.

Bias field: log b is a polynomial (products of Legendre polynomials, total degree ``bias_field``,
default 3) in the normalised coordinates, fitted first on a smoothed copy of the image
(:meth:`SpatialProblem.start_field`), then by one Gauss-Newton step between EM iterations until it
settles (Wells et al. 1996; Van Leemput et al. 1999; FAST, Zhang, Brady & Smith 2001). It needs
positive intensities.

A fitted model's prior is applied to any image by :func:`predict_spatial` (``model.predict``),
chunk by chunk for dask images; ``segment`` of a dask image fits once in memory and labels lazily.

Cost: one sweep per EM iteration, about (neighbours + channels) x K multiply-adds and K exp per
pixel; memory 4 K bytes per pixel for the posteriors (float32) plus a float32 copy of the image,
and for grey images another 4 K bytes per pixel: the vectorised grey sweep (``_mrf.sweep_grey``)
keeps its own copy of the posteriors per class and per parity of x, synced with the (N, K) one
only when the other kernels need it.
"""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np

from . import em as _driver
from . import pipeline as _pl
from ._kernels import em as _kem
from ._kernels import mrf as _mrf
from ._validate import InputError, check_finite_pixels, check_image, is_dask, label_dtype, move_channels
from .mixture import SPATIAL_PREDICT, MixtureModel, SplitModels, fit_image

__all__ = ["fit_spatial", "segment_spatial", "SpatialResult", "neighbourhood"]

#: default polynomial degree of ``bias_field=True``
DEFAULT_BIAS_DEGREE = 3
#: largest polynomial degree accepted for the bias field
MAX_BIAS_DEGREE = 8
#: pixels the pseudo-likelihood of beta is evaluated on (a regular subsample above it)
BETA_SAMPLES = 2**16
#: Newton iterations per beta update (each on the stored subsample; the problem is concave)
BETA_NEWTON = 8
#: largest beta the automatic estimate may reach (per unit neighbour weight)
BETA_MAX = 10.0
#: pixels (at most, a regular grid) the start's bias field is fitted on (:meth:`SpatialProblem.start_field`)
START_FIELD_SAMPLES = 2**14
#: largest number of (mixture, field) rounds of the start's bias field
START_FIELD_ROUNDS = 50
#: stride of the pixel grid the bias field is fitted on (per axis)
BIAS_STRIDE = 2
#: largest change of log b (anywhere) of an update below which the bias field is kept from then on
BIAS_SETTLED = 2e-3
#: extra (sweep, bias update) rounds per EM iteration while the bias field moves: the field and the
#: labels adapt to each other slowly, one round per iteration took 100 iterations on the benchmark
BIAS_INNER = 0
LOG_2PI = math.log(2.0 * math.pi)
UNIFORM_WEIGHTS = True
BETA_SIMULATED = True
#: relative change of the beta estimate below which it is kept fixed for the rest of the fit
BETA_SETTLED = 0.01
#: over-relaxation of the beta updates (1 = plain fixed-point iteration; 1.6 and 2.2 were measured
#: on the benchmark phantoms: fewer iterations at some noise levels, but the beta reached moved)
BETA_RELAX = 1.0


# ============================================================================================
# argument checks


def check_beta(beta):
    """Float beta >= 0, or None for "auto"; InputError otherwise."""
    if isinstance(beta, str):
        if beta == "auto":
            return None
        raise InputError(
            f"beta={beta!r} is not understood: use 'auto' (estimated from the image), 0 (no "
            "smoothing) or a number > 0 (the Potts interaction strength, e.g. 0.5 to 2)"
        )
    if isinstance(beta, bool) or not isinstance(beta, (int, float, np.integer, np.floating)):
        raise InputError(f"beta must be 'auto' or a number >= 0, got {beta!r}")
    b = float(beta)
    if not math.isfinite(b) or b < 0:
        raise InputError(f"beta must be 'auto' or a finite number >= 0 (0 = no smoothing), got {beta!r}")
    return b


def check_spacing(spacing, ndim):
    """Spacing as a float tuple of length ndim (None: all 1)."""
    if spacing is None:
        return (1.0,) * ndim
    try:
        s = tuple(float(v) for v in np.atleast_1d(np.asarray(spacing, dtype=np.float64)))
    except (TypeError, ValueError):
        raise InputError(
            f"spacing must be a sequence of {ndim} positive numbers (the pixel size per "
            f"spatial axis, e.g. a layer's scale), got {spacing!r}"
        ) from None
    if len(s) != ndim:
        raise InputError(
            f"spacing has {len(s)} entries but the image has {ndim} spatial axes: give one "
            f"positive size per axis (e.g. (z, y, x) = (2.0, 0.5, 0.5)), got {spacing!r}"
        )
    if not all(math.isfinite(v) and v > 0 for v in s):
        raise InputError(f"spacing must be finite and > 0 along every axis, got {spacing!r}")
    return s


def check_connectivity(connectivity, ndim):
    """Connectivity 1..ndim; None is the default: 2 in 2-D (all 8 neighbours: boundary lengths
    closer to Euclidean than with face neighbours, measured more accurate on every 2-D phantom),
    1 in 3-D (18 neighbours were 0.06 points better on the 3-D phantom for 1.65x the time)."""
    if connectivity is None:
        return 2 if ndim == 2 else 1
    if (
        isinstance(connectivity, bool)
        or not isinstance(connectivity, (int, np.integer))
        or not (1 <= connectivity <= ndim)
    ):
        raise InputError(
            f"connectivity must be 1 (face neighbours) up to {ndim} (all {3**ndim - 1} "
            f"neighbours) for a {ndim}-D image, got {connectivity!r}"
        )
    return int(connectivity)


def check_bias(bias_field):
    """Polynomial degree (0 = no bias field)."""
    if bias_field is None or bias_field is False:
        return 0
    if bias_field is True:
        return DEFAULT_BIAS_DEGREE
    if isinstance(bias_field, (int, np.integer)) and 1 <= bias_field <= MAX_BIAS_DEGREE:
        return int(bias_field)
    raise InputError(
        f"bias_field must be False, True (degree {DEFAULT_BIAS_DEGREE}) or a polynomial "
        f"degree 1..{MAX_BIAS_DEGREE} (higher degrees follow the objects, not the "
        f"illumination), got {bias_field!r}"
    )


# ============================================================================================
# geometry


def neighbourhood(ndim, connectivity=1, spacing=None):
    """Neighbour offsets (n, 3) as (dz, dy, dx) and weights (n,) of a 2-D or 3-D pixel grid.

    Neighbours are the pixels at offsets in {-1, 0, 1}**ndim with at most ``connectivity`` nonzero
    entries; their weight is min(spacing) / (physical distance), so 1 for the nearest ones.
    """
    sp = check_spacing(spacing, ndim)
    conn = check_connectivity(connectivity, ndim)
    offs, wts = [], []
    for o in itertools.product((-1, 0, 1), repeat=ndim):
        nz = sum(v != 0 for v in o)
        if nz == 0 or nz > conn:
            continue
        dist = math.sqrt(sum((v * s) ** 2 for v, s in zip(o, sp)))
        offs.append((0,) * (3 - ndim) + tuple(o))
        wts.append(min(sp) / dist)
    return np.array(offs, np.int64), np.array(wts, np.float64)


def _weight_groups(wts):
    """(group of every neighbour offset (n,), weight of each group (G,), offsets per group (G,)):
    the offsets grouped by equal weight (the simulated neighbour field is a count per group)."""
    w = np.asarray(wts, np.float64)
    _, first, group, ng = np.unique(np.round(w, 12), return_index=True, return_inverse=True, return_counts=True)
    return group.astype(np.int64).ravel(), w[first], ng.astype(np.int64)


def _legendre_table(n, degree):
    """(n, degree + 1) Legendre polynomials P_0..P_degree at n points spread over [-1, 1]."""
    u = np.linspace(-1.0, 1.0, n) if n > 1 else np.zeros(1)
    L = np.empty((n, degree + 1))
    L[:, 0] = 1.0
    if degree >= 1:
        L[:, 1] = u
    for d in range(2, degree + 1):
        L[:, d] = ((2 * d - 1) * u * L[:, d - 1] - (d - 1) * L[:, d - 2]) / d
    return L


def _bias_terms(ndim, degree):
    """(P, 3) Legendre orders (z, y, x) of the products of total degree 1..degree."""
    terms = []
    for t in itertools.product(range(degree + 1), repeat=3):
        if sum(t) == 0 or sum(t) > degree or (ndim == 2 and t[0] != 0):
            continue
        terms.append(t)
    return np.array(terms, np.int64)


# ============================================================================================
# the EM problem


class SpatialProblem(_driver.Problem):
    """Potts-prior Gaussian mixture on the pixels of a 2-D or 3-D image (see the module notes).

    Parameters
    ----------
    X : ndarray (N, D) float32
        Pixels (flat, C order over ``dims``).
    valid : ndarray (N,) uint8
        1 for pixels that take part (unmasked, finite).
    dims : (Z, Y, X)
        Spatial shape (Z = 1 for 2-D).
    beta : float or None
        Interaction strength; None estimates it after every E-step (pseudo-likelihood).
    offs, wts, scheme :
        Neighbourhood (:func:`neighbourhood`) and colouring (0 checkerboard, 1 parity lattice).
    reg : float
        Added to the variances in the M-step.
    bias_degree : int
        0, or the polynomial degree of the log bias field.
    hard : bool
        ICM (one-hot posteriors) instead of mean field.
    beta0 : float
        Starting beta of the automatic estimate.
    """

    #: the label field (posteriors), beta and the bias field carry over between steps: no SQUAREM
    accelerate = False

    def __init__(self, X, valid, dims, *, beta, offs, wts, scheme, reg, bias_degree=0, hard=False, ndim=2):
        self.X = X
        self.valid = valid
        self.dims = np.asarray(dims, np.int64)
        self.auto = beta is None
        self.beta_fixed = 0.0 if beta is None else float(beta)
        self.beta = self.beta_fixed
        self.offs, self.wts, self.scheme = offs, wts, int(scheme)
        self.reg = float(reg)
        self.hard = bool(hard)
        self.uniform_weights = UNIFORM_WEIGHTS
        self.start_labels = None
        self.n_features = X.shape[1]
        self.total_weight = float(valid.sum())
        self.bias_degree = int(bias_degree)
        self.ndim = ndim
        N = X.shape[0]
        R = int(self.dims[0] * self.dims[1])
        self._R = R
        self._qn = None  # the posteriors (N, K) float32
        self._qp = None  # ... in the planar layout of the grey kernel (see the q property)
        self._planar_fresh = False  # _qp is newer than _qn
        self._natural_dirty = True  # _qn may have been written since _qp was packed
        self._obj = np.zeros(R)
        self.inv_b = np.zeros(0, np.float32)
        self.log_b = None
        self.bias_coef = None
        self._jac = 0.0
        self.beta_history = []
        self._start_coef = self._start_log_b = self._start_inv_b = None
        # a regular subsample of the valid pixels for the pseudo-likelihood of beta
        vidx = np.flatnonzero(valid)
        stride = max(1, int(math.ceil(vidx.size / BETA_SAMPLES)))
        self._pl_idx = np.ascontiguousarray(vidx[::stride])
        Z_, Y_, X_ = (int(v) for v in self.dims)
        self._pl_coords = np.ascontiguousarray(
            np.stack(np.unravel_index(self._pl_idx, (Z_, Y_, X_)), axis=1).astype(np.int64)
        )
        self._pl_groups = _weight_groups(wts)
        if self.bias_degree:
            Z, Y, Xn = (int(v) for v in self.dims)
            deg = self.bias_degree
            self._Lz = _legendre_table(Z, deg if Z > 1 else 0)
            if Z == 1:
                self._Lz = np.ones((1, deg + 1))
            self._Ly = _legendre_table(Y, deg)
            self._Lx = _legendre_table(Xn, deg)
            self._terms = _bias_terms(3 if Z > 1 else 2, deg)
            self._xbar = np.ascontiguousarray(X.mean(axis=1, dtype=np.float64))
        del N

    # ---- the posteriors ---------------------------------------------------------------------
    # The grey kernel (``_mrf.sweep_grey``) keeps them per class and per parity of x
    # (``_mrf.pack_planar``); the other kernels and the outputs use (N, K). Each copy is synced
    # only when the other one was changed: reading q unpacks once after sweeps, and getting q
    # (which may be written through) makes the next grey sweep pack again.
    @property
    def q(self):
        """The posteriors (N, K) float32 (to write through; :meth:`_q_read` to only read)."""
        q = self._q_read()
        self._natural_dirty = True
        return q

    @q.setter
    def q(self, value):
        self._qn = value
        self._planar_fresh = False
        self._natural_dirty = True

    def _q_read(self):
        if self._planar_fresh:
            _mrf.unpack_planar(self._qp, self.dims, self._qn)
            self._planar_fresh = False
        return self._qn

    def _planar(self):
        """The planar posteriors for a grey sweep, packed from q if it may have changed."""
        K = self._qn.shape[1]
        shape = (K, 2 * self._R, (int(self.dims[2]) + 1) // 2 + 2)
        if self._qp is None or self._qp.shape != shape:
            self._qp = np.empty(shape, np.float32)
            self._natural_dirty = True
        if self._natural_dirty and not self._planar_fresh:
            _mrf.pack_planar(self._qn, self.dims, self._qp)
            self._natural_dirty = False
        return self._qp

    # ---- pieces ---------------------------------------------------------------------------
    def _factors(self, params, iteration=None):
        K, D = params.means.shape
        inv_sd, prec_chol, log_det = np.zeros((K, D)), np.zeros((K, D, D)), np.zeros(K)
        bad = _kem.precisions(params.cov, int(params.cov_type), inv_sd, prec_chol, log_det)
        if bad >= 0:
            raise _driver.collapse_error(params, bad, iteration)
        with np.errstate(divide="ignore"):
            log_w = np.log(params.weights)
        c0 = log_w + log_det - 0.5 * D * LOG_2PI
        return np.ascontiguousarray(c0), inv_sd, prec_chol

    def reset(self, params):
        """Posteriors of the per-pixel model at ``params`` (no neighbours), bias field off, beta at
        its start (auto: estimated from those posteriors)."""
        K = params.n_components
        self.inv_b = np.zeros(0, np.float32)
        self.log_b = None
        self.bias_coef = None
        if self._start_coef is not None:
            self.bias_coef = self._start_coef.copy()
            self.log_b = self._start_log_b.copy()
            self.inv_b = self._start_inv_b.copy()
        self._jac = 0.0
        c0, inv_sd, prec_chol = self._factors(params, 0)
        if self._qn is None or self._qn.shape[1] != K:
            self.q = np.empty((self.X.shape[0], K), np.float32)
        if self.start_labels is not None:  # one-hot of a start labelling (0 = none)
            _mrf.onehot(self.start_labels, self.q)
        else:
            _mrf.init_posteriors(
                self.X, self.inv_b, self.valid, self.q, params.means, inv_sd, prec_chol, c0, int(params.cov_type)
            )
        self.beta_history = []
        self._seed = 0
        self._frozen = False
        self._bias_frozen = False
        if self.auto:
            self.beta = self.estimate_beta(params.weights)
        else:
            self.beta = self.beta_fixed

    def sweep(self, params, accumulate, iteration=None):
        """One sweep at ``params``; returns (objective per pixel, acc or None)."""
        K, D = params.means.shape
        c0, inv_sd, prec_chol = self._factors(params, iteration)
        width = 1 + D + (D * D if int(params.cov_type) == 2 else D)
        acc = np.zeros((self._R, K, width)) if accumulate else np.zeros((1, 1, 1))
        self._obj[:] = 0.0
        if D == 1 and not self.hard:  # grey mean field: the vectorised kernel
            inv = inv_sd[:, 0] if int(params.cov_type) != 2 else prec_chol[:, 0, 0]
            qp = self._planar()
            _mrf.sweep_grey(
                self.X.reshape(-1),
                self.inv_b,
                self.valid,
                qp,
                self.dims,
                self.offs,
                self.wts,
                self.scheme,
                c0,
                np.ascontiguousarray(params.means[:, 0]),
                np.ascontiguousarray(inv),
                float(self.beta),
                accumulate,
                params.means[:, 0].copy(),
                acc,
                self._obj,
            )
            self._planar_fresh = True
            return float(self._obj.sum()) / self.total_weight + self._jac, (acc if accumulate else None)
        _mrf.sweep(
            self.X,
            self.inv_b,
            self.valid,
            self.q,
            self.dims,
            self.offs,
            self.wts,
            self.scheme,
            c0,
            params.means,
            inv_sd,
            prec_chol,
            int(params.cov_type),
            float(self.beta),
            self.hard,
            accumulate,
            params.means.copy(),
            acc,
            self._obj,
        )
        return float(self._obj.sum()) / self.total_weight + self._jac, (acc if accumulate else None)

    def _simulated_pattern_table(self):
        """(distinct simulated neighbour fields (G, K), their pixel counts (G,), sum_s q_s . nbar_s)
        of the sampled pixels, or None where the codes would not fit an int64 (many classes and
        neighbours: then the per-pixel kernel)."""
        K = self._q_read().shape[1]
        group, wg, ng = self._pl_groups
        radix = np.repeat(ng + 1, K).reshape(len(ng), K)
        if float(np.prod(radix.astype(np.float64))) >= 2.0**62:
            return None
        mult = np.cumprod(np.concatenate([[1], radix.ravel()[:-1]])).reshape(radix.shape).astype(np.int64)
        idx = self._pl_idx
        codes = np.empty(idx.size, np.int64)
        lin = np.zeros(64)
        _mrf.simulated_patterns(
            self._q_read(),
            self.dims,
            self.offs,
            self.wts,
            group,
            mult,
            idx,
            self._pl_coords,
            np.uint64(self._seed),
            codes,
            lin,
        )
        codes = codes[codes >= 0]
        span = int(np.prod(radix))
        if span <= 4 * codes.size + 4096:
            cnt = np.bincount(codes, minlength=span)
            u = np.flatnonzero(cnt)
            cnt = cnt[u]
        else:
            u, cnt = np.unique(codes, return_counts=True)
        digits = (u[:, None, None] // mult[None]) % radix[None]  # (G, groups, K)
        nbar = np.einsum("gjk,j->gk", digits.astype(np.float64), wg)
        return nbar, cnt.astype(np.float64), float(lin.sum())

    def estimate_beta(self, weights):
        """The beta maximising the mean-field pseudo-likelihood of the current posteriors."""
        with np.errstate(divide="ignore"):
            log_w = np.log(np.maximum(weights, 1e-300))
        table = self._simulated_pattern_table() if BETA_SIMULATED else None
        if table is not None:
            # the sampled pixels share a few hundred distinct fields at most: Newton on those
            nbar, cnt, lin = table
            b = max(self.beta, 0.05)
            for _ in range(BETA_NEWTON):
                e = log_w[None, :] + b * nbar
                e -= e.max(axis=1, keepdims=True)
                p = np.exp(e)
                p /= p.sum(axis=1, keepdims=True)
                m1 = (p * nbar).sum(axis=1)
                m2 = (p * nbar * nbar).sum(axis=1)
                g = lin - float(cnt @ m1)
                h = -float(cnt @ (m2 - m1 * m1))
                if h >= 0:
                    break
                nb = b - g / h
                nb = min(max(nb, 0.5 * b, 0.0), 2.0 * b + 0.5, BETA_MAX)
                done = abs(nb - b) < 1e-4 * max(1.0, b)
                b = nb
                if done:
                    break
            return float(b)
        idx = self._pl_idx
        K = self._q_read().shape[1]
        nbar = np.empty((idx.size, K))
        _mrf.neighbour_fields(
            self._q_read(), self.valid, self.dims, self.offs, self.wts, idx, nbar, BETA_SIMULATED, np.uint64(self._seed)
        )
        qs = self._q_read()[idx]
        b = max(self.beta, 0.05)
        for _ in range(BETA_NEWTON):
            _, g, h = _mrf.pseudo_likelihood(qs, nbar, log_w, b)
            if h >= 0:
                break
            nb = b - g / h
            nb = min(max(nb, 0.5 * b, 0.0), 2.0 * b + 0.5, BETA_MAX)
            done = abs(nb - b) < 1e-4 * max(1.0, b)
            b = nb
            if done:
                break
        return float(b)

    def _update_bias(self, params):
        """One Gauss-Newton step of the log bias field's coefficients (see bias_normal_equations)."""
        K, D = params.means.shape
        mu = params.means.mean(axis=1)
        var = np.maximum(np.diagonal(params.cov, axis1=1, axis2=2).mean(axis=1) / D, 1e-300)
        P = self._terms.shape[0]
        AtA, Atb = np.zeros((P, P)), np.zeros(P)
        log_b = self.log_b if self.log_b is not None else np.zeros(self.X.shape[0])
        _mrf.bias_normal_equations(
            self._xbar,
            self.valid,
            self._q_read(),
            mu,
            var,
            log_b,
            self.dims,
            self._Lz,
            self._Ly,
            self._Lx,
            self._terms,
            BIAS_STRIDE,
            AtA,
            Atb,
        )
        ridge = 1e-9 * max(np.trace(AtA), 1e-300)
        try:
            delta = np.linalg.solve(AtA + ridge * np.eye(P), Atb)
        except np.linalg.LinAlgError:
            return
        if not np.all(np.isfinite(delta)):
            return
        # |Legendre products| <= 1: sum |delta| bounds the change of log b anywhere
        self._bias_frozen = float(np.abs(delta).sum()) < BIAS_SETTLED
        coef = delta if self.bias_coef is None else self.bias_coef + delta
        self.bias_coef = coef
        if self.log_b is None:
            self.log_b = np.empty(self.X.shape[0])
        if self.inv_b.shape[0] != self.X.shape[0]:
            self.inv_b = np.empty(self.X.shape[0], np.float32)
        # geometric mean 1 over the pixels: the field's overall scale belongs to the class means
        # (left free, the means and the field's mean drifted against each other for 100 iterations)
        _mrf.bias_field(coef, self._terms, self._Lz, self._Ly, self._Lx, self.dims, self.valid, self.log_b, self.inv_b)
        self._jac = 0.0

    def start_field(self, sm, labels):
        """The bias field of the start: fitted on ``sm`` (N, D), a smoothed copy of the image, by
        alternating a mixture of its grey level (uniform weights, soft posteriors from the
        ``labels`` 1..K, 0 = none, to begin with) and a Gauss-Newton step of the field until the
        field settles (:data:`BIAS_SETTLED`) or :data:`START_FIELD_ROUNDS`. Smoothing divides the
        noise, so the field and the classes separate there; on the raw pixels the field was
        fitted to a labelling that the spatial prior then held in place (measured: 81 % right at
        noise 0.58 with a +-30 % field, 256 x 256, where the true field gives 99.5 %). Runs on a
        regular grid of at most :data:`START_FIELD_SAMPLES` pixels (the field is smooth); the
        result is evaluated on every pixel and kept as the start of :meth:`reset`."""
        K = int(labels.max()) if labels.size else 0
        Z, Y, Xn = (int(v) for v in self.dims)
        nd = 3 if Z > 1 else 2
        st = max(1, int(math.ceil((self.total_weight / START_FIELD_SAMPLES) ** (1.0 / nd))))
        zsl = slice(None, None, st) if Z > 1 else slice(None)
        sub = lambda a: np.ascontiguousarray(a.reshape(Z, Y, Xn)[zsl, ::st, ::st])  # noqa: E731
        xs = sub(np.asarray(sm, np.float64).mean(axis=1)).ravel()
        lab = sub(labels).ravel().astype(np.int64)
        ok = sub(self.valid.view(bool)).ravel() & (lab > 0) & np.isfinite(xs)
        dims_s = np.array(sub(labels).shape, np.int64).reshape(-1)
        dims_s = np.concatenate([[1] * (3 - dims_s.size), dims_s]).astype(np.int64)
        Lz, Ly, Lx = (np.ascontiguousarray(a) for a in (self._Lz[zsl], self._Ly[::st], self._Lx[::st]))
        xs = np.where(ok, xs, 1.0)
        q = np.zeros((xs.size, max(K, 1)), np.float32)
        q[np.flatnonzero(ok), lab[ok] - 1] = 1.0
        valid_s = np.ascontiguousarray(ok.view(np.uint8))
        P = self._terms.shape[0]
        coef = np.zeros(P)
        log_b = np.zeros(xs.size)
        mom = np.zeros((q.shape[1], 3))
        for _ in range(START_FIELD_ROUNDS):
            _mrf.grey_class_moments(xs, log_b, q, mom)
            Nk = mom[:, 0]
            if K < 2 or np.any(Nk < 2):
                break
            mu = mom[:, 1] / Nk
            var = np.maximum(mom[:, 2] / Nk - mu * mu, 1e-6 * mu.var() + 1e-12)
            AtA, Atb = np.zeros((P, P)), np.zeros(P)
            _mrf.bias_normal_equations_serial(
                xs, valid_s, q, mu, var, log_b, dims_s, Lz, Ly, Lx, self._terms, 1, AtA, Atb
            )
            try:
                delta = np.linalg.solve(AtA + 1e-9 * max(np.trace(AtA), 1e-300) * np.eye(P), Atb)
            except np.linalg.LinAlgError:
                break
            if not np.all(np.isfinite(delta)):
                break
            coef = coef + delta
            _mrf.bias_evaluate_serial(coef, self._terms, Lz, Ly, Lx, dims_s, log_b)
            log_b -= float(log_b[ok].mean())
            _mrf.grey_posteriors(xs, log_b, ok, mu, var, q)
            if float(np.abs(delta).sum()) < BIAS_SETTLED:
                break
        full = np.empty(self.X.shape[0])
        inv = np.empty(self.X.shape[0], np.float32)
        _mrf.bias_field(coef, self._terms, self._Lz, self._Ly, self._Lx, self.dims, self.valid, full, inv)
        self._start_coef = coef
        self._start_log_b = full
        self._start_inv_b = inv

    # ---- the driver's interface ------------------------------------------------------------
    def step(self, params, iteration):
        if iteration == 0 or self._qn is None:
            self.reset(params)
        value, acc = self.sweep(params, True, iteration)
        self.beta_history.append(self.beta)
        if self.auto and not self._frozen:
            b = self.estimate_beta(params.weights)
            # the estimate settles within a few iterations; fixed from then on, EM converges at it
            self._frozen = abs(b - self.beta) <= BETA_SETTLED * max(self.beta, 1e-3)
            if not self._frozen:  # over-relaxed: the fixed point beta = PL(q(beta)) is approached slowly
                b = max(0.0, self.beta + BETA_RELAX * (b - self.beta))
            self.beta = b
        K, D = params.means.shape
        tot = acc.sum(axis=0)
        Nk = np.ascontiguousarray(tot[:, 0])
        Sx = np.ascontiguousarray(tot[:, 1 : 1 + D])
        Sxx = np.zeros((K, D, D))
        if int(params.cov_type) == 2:
            Sxx[:] = tot[:, 1 + D :].reshape(K, D, D)
        else:
            idx = np.arange(D)
            Sxx[:, idx, idx] = tot[:, 1 + D :]
        _kem.m_step(Nk, Sx, Sxx, int(params.cov_type), self.reg, params.weights, params.means, params.cov)
        if self.uniform_weights:
            params.weights[:] = 1.0 / K
        if self.bias_degree and not self._bias_frozen:
            self._update_bias(params)
            for _ in range(BIAS_INNER):  # the field and the labels it corrects, to agreement
                if self._bias_frozen:
                    break
                self.sweep(params, False, iteration)
                self._update_bias(params)
        return value

    def objective(self, params):
        return self.sweep(params, False)[0]


# ============================================================================================
# public function


class SpatialResult:
    """What :func:`fit_spatial` returns.

    Attributes
    ----------
    model : MixtureModel
        Components ordered by mean; ``model.params`` records ``beta`` (the value used, also when
        estimated), ``beta_auto``, ``spacing``, ``connectivity``, ``bias_field`` (degree) and
        ``bias_coef``.
    labels : ndarray
        1..K by component mean, 0 for masked / non-finite pixels; shape of the pixels.
    posteriors : ndarray of float32, shape (K, *pixels) or None
        Mean-field posterior of every class (0 where masked), with ``return_posteriors=True``.
    bias : ndarray of float32 or None
        The multiplicative bias field on the pixel grid (mean of its log over the pixels ~ 0), when
        estimated; ``image / bias`` is the corrected image.
    beta : float
        The interaction strength used.
    """

    def __init__(self, model, labels, posteriors, bias, beta):
        self.model, self.labels, self.posteriors, self.bias, self.beta = model, labels, posteriors, bias, beta


def _prepare(image, channel_axis, mask, check=False):
    """(X (N, D) float32, valid (N,) uint8, spatial shape). With ``check``, the fits' rule for
    non-finite pixels (:func:`napari_gmm._validate.check_finite_pixels`: an error when none is left,
    a warning for inf), as the per-pixel model applies it."""
    if channel_axis is None:
        a = np.asarray(image)
        spatial = a.shape
        X = np.ascontiguousarray(a, dtype=np.float32).reshape(-1, 1)
    else:
        X, spatial = move_channels(np.asarray(image), channel_axis)
        X = np.ascontiguousarray(X, dtype=np.float32)
    valid = np.isfinite(X).all(axis=1)
    if mask is not None:
        m = np.asarray(mask)
        if m.shape != tuple(spatial):
            raise InputError(
                f"mask has shape {m.shape} but the image's pixels have shape {tuple(spatial)}: "
                "give a mask with one entry per pixel (True = use the pixel)"
            )
        valid &= m.reshape(-1) != 0
    if check:
        sel = X if mask is None else X[np.asarray(mask).reshape(-1) != 0]
        n_nan = int(np.isnan(sel).any(axis=1).sum()) if X.dtype.kind == "f" else 0
        n_inf = int((np.isinf(sel).any(axis=1) & ~np.isnan(sel).any(axis=1)).sum()) if X.dtype.kind == "f" else 0
        check_finite_pixels(int(valid.sum()), n_nan, n_inf)
    if not valid.all():
        X = X.copy()
        X[~valid] = 0.0
    return X, np.ascontiguousarray(valid.view(np.uint8)), tuple(spatial)


#: default ``tol`` of the spatial model. Its objective moves by ~1 / (number of pixels) when one
#: pixel changes label, and after the first iterations EM's tail moves it by 1e-5..1e-6 per sweep
#: while the labels no longer change (measured on the 512 x 512 benchmark phantoms: 9-14 iterations
#: and the same accuracy to 0.02 % at 1e-4, 15-26 iterations at 1e-6)
SPATIAL_TOL = 1e-4
#: ... and with a bias field. It was 1e-6 while the field started at 1 and the field and the labels
#: adapted to each other by steps below 1e-4 for up to 100 iterations; the field is now fitted
#: first on the smoothed image (:meth:`SpatialProblem.start_field`) and settles within a few
#: iterations (measured on the biased 512 x 512 phantoms at noise 0.33 / 0.58 / 0.83: 99.95 /
#: 99.76 / 99.50 % right in 14 / 9 / 11 iterations at 1e-4, 99.95 / 99.77 / 99.56 % in 14 / 20 /
#: 38 at 1e-6)
SPATIAL_BIAS_TOL = SPATIAL_TOL


def default_tol(tol):
    """The spatial model's tol for a ``tol`` given to segment / fit_mixture: their default 1e-6
    stands for the spatial model's own default (None: :data:`SPATIAL_TOL`, its objective is per pixel
    of a label field); any other value is used as given."""
    return None if tol == 1e-6 else tol


#: standard deviation (in units of the smallest spacing) of the Gaussian smoothing of the start
START_SIGMA = 1.5


def _smooth(X, valid, spatial, spacing):
    """A Gaussian-smoothed copy (spatial + (D,)) float32 of the valid pixels (normalised
    convolution: masked pixels do not leak in), NaN where invalid."""
    from scipy import ndimage

    D = X.shape[1]
    v = valid.view(bool).reshape(spatial)
    sigma = [START_SIGMA * min(spacing) / s for s in spacing]
    full = bool(v.all())  # no masked pixel: the normaliser is 1
    den = None if full else ndimage.gaussian_filter(v.astype(np.float32), sigma, mode="nearest")
    sm = np.empty(spatial + (D,), np.float32)
    for d in range(D):
        if full:
            ndimage.gaussian_filter(X[:, d].reshape(spatial), sigma, mode="nearest", output=sm[..., d])
            continue
        num = ndimage.gaussian_filter(X[:, d].reshape(spatial), sigma, mode="nearest")
        with np.errstate(invalid="ignore", divide="ignore"):
            sm[..., d] = num / den
    if not full:
        sm[~v] = np.nan
    return sm


def _smoothed_start(X, valid, sm, K, fit_kw):
    """The start of the spatial fit: the per-pixel mixture of a smoothed copy ``sm`` of the image
    (:func:`_smooth`; noise divided by ~2 sigma sqrt(pi) in 2-D), its labels as one-hot
    posteriors, and one M-step on the raw pixels ``X``. On heavily overlapping classes the mixture
    of the raw intensities can be far from the classes (measured: 43 % of the pixels right at noise
    0.58), and EM with a spatial prior keeps a bad start's classes; smoothing separates them first.

    Returns (the smoothed fit's MixtureModel, driver Params without reg_covar, labels (N,))."""
    D = X.shape[1]
    kw = dict(fit_kw)
    kw.pop("mask")
    ch = kw.pop("channel_axis")
    if kw.get("bins") is None and X.dtype.kind == "f":
        kw["bins"] = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        img = sm[..., 0] if ch is None else sm
        model = fit_image(img, K, channel_axis=None if ch is None else -1, **kw)
        lab = model.predict(img, channel_axis=None if ch is None else -1).reshape(-1)
    cov_type = _driver.CovType.parse(fit_kw["covariance_type"])
    ok = lab > 0
    # one M-step on the raw pixels from the labels (two passes: the means, then the centred
    # second moments; a parallel kernel, not bincounts of float64 copies of the image)
    Nk = np.zeros(K)
    means = np.zeros((K, D))
    cov = np.zeros((K, D, D))
    _mrf.label_moments(X, lab, cov_type == _driver.CovType.FULL, Nk, means, cov)
    if cov_type == _driver.CovType.SPHERICAL:
        tr = np.trace(cov, axis1=1, axis2=2) / D
        cov = np.eye(D)[None] * tr[:, None, None]
    for k in range(K):
        if Nk[k] < 2:
            Nk[k] = 0.5
            means[k] = model.means[k]
            cov[k] = np.diag(np.maximum(model.variances[k], 1e-6))
    lab = np.where(ok, lab, 0).astype(label_dtype(K))
    return model, _driver.Params(Nk / Nk.sum(), means, cov, cov_type), lab


def fit_spatial(
    image,
    n_components=2,
    *,
    beta="auto",
    spacing=None,
    connectivity=None,
    bias_field=False,
    channel_axis=None,
    covariance_type="spherical",
    init="ranges",
    n_init=1,
    max_iter=100,
    tol=None,
    reg_covar=None,
    mask=None,
    bins=None,
    random_state=None,
    progress=None,
    return_posteriors=False,
    method="mean-field",
    start=None,
):
    """Gaussian mixture with a Potts prior on the labels of a 2-D or 3-D image (see module notes).

    Parameters as :func:`napari_gmm.segment`, plus ``beta``, ``spacing``, ``connectivity``,
    ``bias_field`` (see there), ``return_posteriors`` and ``method`` ("mean-field" or "icm").
    ``tol``: on the objective (mean-field free energy per pixel); None: :data:`SPATIAL_TOL`
    (:data:`SPATIAL_BIAS_TOL` with a bias field).
    ``start``: None (the mixture of a smoothed copy, see :func:`_smoothed_start`), "pixels" (the
    per-pixel fit of the image) or a MixtureModel.

    Returns
    -------
    SpatialResult
    """
    image = check_image(image, channel_axis=channel_axis)
    if is_dask(image):
        image = image.compute()
    b = check_beta(beta)
    degree = check_bias(bias_field)
    tol = (SPATIAL_BIAS_TOL if degree else SPATIAL_TOL) if tol is None else tol
    if method not in ("mean-field", "icm"):
        raise InputError(f"method must be 'mean-field' or 'icm', got {method!r}")
    nd = image.ndim - (channel_axis is not None)
    if nd not in (2, 3):
        raise InputError(
            f"the spatial prior works on 2-D or 3-D images; this one has {nd} spatial axes. For a "
            "time series or a 4-D stack pass split_axis (one fit per time point), or use beta=0"
        )
    sp = check_spacing(spacing, nd)
    conn = check_connectivity(connectivity, nd)
    X, valid, spatial = _prepare(image, channel_axis, mask, check=True)
    if sum(s >= 2 for s in spatial) < 2:
        raise InputError(
            f"the image's pixels have shape {spatial}: too small for a 2-D neighbourhood "
            "(at least two axes of 2 pixels or more are needed); use beta=0"
        )
    if degree:
        v = valid.view(bool)
        if v.any() and np.mean(X[v].mean(axis=1) > 0) < 0.5:
            raise InputError(
                "bias_field needs mostly positive intensities (the field multiplies them): "
                "offset the image so that its background is above 0, or set bias_field=False"
            )
    fit_kw = dict(
        channel_axis=channel_axis,
        covariance_type=covariance_type,
        init=init,
        n_init=n_init,
        max_iter=max_iter,
        tol=tol,
        reg_covar=reg_covar,
        mask=mask,
        bins=bins,
        random_state=random_state,
    )
    p0 = start_labels = sm = None
    if start is None:
        sm = _smooth(X, valid, spatial, sp)
        start, p0, start_labels = _smoothed_start(X, valid, sm, n_components, fit_kw)
    elif start == "pixels":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            start = fit_image(image, n_components, **fit_kw)
    reg = float(start.params.get("reg_covar", 0.0) if reg_covar is None else reg_covar)
    offs, wts = neighbourhood(nd, conn, sp)
    dims = (1,) * (3 - nd) + spatial
    problem = SpatialProblem(
        X,
        valid,
        dims,
        beta=b,
        offs=offs,
        wts=wts,
        scheme=0 if conn == 1 else 1,
        reg=reg,
        bias_degree=degree,
        hard=method == "icm",
        ndim=nd,
    )
    problem.start_labels = start_labels
    if degree and sm is not None:
        # the field first, on the smoothed image (low noise: the field and the classes separate
        # there), then the start's mixture again on the corrected smoothed image
        problem.start_field(sm.reshape(-1, sm.shape[-1]), start_labels)
        ib = problem._start_inv_b
        start, p0, start_labels = _smoothed_start(
            X * ib[:, None], valid, sm * ib.reshape(spatial)[..., None], n_components, fit_kw
        )
        problem.start_labels = start_labels
    if p0 is None:
        p0 = _driver.Params.from_sklearn(start.weights, start.means, start.covariances, covariance_type)
    if UNIFORM_WEIGHTS:
        p0.weights[:] = 1.0 / p0.n_components
    else:
        p0.cov[:, np.arange(p0.n_features), np.arange(p0.n_features)] += reg
    res = _driver.fit_em(
        problem,
        lambda rng: p0,
        n_init=1,
        random_state=random_state,
        max_iter=max_iter,
        tol=tol,
        progress=progress,
        warn_stacklevel=3,
    )
    par = res.params
    order = np.argsort(par.means.mean(axis=1), kind="stable")
    K = par.n_components
    hist = {k: (v[:, order] if k != "log_likelihood" else v) for k, v in res.history.items()}
    rank = np.zeros(K + 1, np.int64)
    rank[order + 1] = np.arange(1, K + 1)
    labels = np.empty(X.shape[0], label_dtype(K))
    _mrf.ranked_labels(problem._q_read(), valid, rank, labels)
    labels = labels.reshape(spatial)
    post = None
    if return_posteriors:
        post = np.ascontiguousarray(problem.q[:, order].T).reshape((K,) + spatial)
    bias = None
    bias_offset = 0.0
    if degree and problem.log_b is not None:
        v = valid.view(bool)
        lb = problem.log_b - problem.log_b[v].mean()
        bias = np.exp(lb).astype(np.float32).reshape(spatial)
        # the constant taken out of the polynomial (geometric mean 1 over the fitted pixels)
        raw = np.empty(X.shape[0])
        _mrf.bias_evaluate(problem.bias_coef, problem._terms, problem._Lz, problem._Ly, problem._Lx, problem.dims, raw)
        bias_offset = float((raw - lb)[v].mean()) if v.any() else 0.0
    params = dict(start.params)
    params.update(
        {
            "beta": float(problem.beta),  # the final E-step's (what the labels were computed at)
            "beta_auto": b is None,
            "spacing": list(sp),
            "connectivity": conn,
            "bias_field": degree,
            "bias_coef": None if problem.bias_coef is None else problem.bias_coef.tolist(),
            "bias_offset": bias_offset,
            "spatial_method": method,
            "max_iter": int(max_iter),
            "tol": float(tol),
            "reg_covar": reg,
        }
    )
    model = MixtureModel(
        par.weights[order],
        par.means[order],
        _driver.from_full(par.cov[order], par.cov_type),
        covariance_type,
        n_iter=res.n_iter,
        converged=res.converged,
        history=hist,
        lower_bound=res.objective,
        params=params,
    )
    return SpatialResult(model, labels, post, bias, params["beta"])


#: mean-field sweeps of :func:`predict_spatial` (a fixed number: each chunk of a lazy image, with a
#: halo of their reach, then gives exactly the labels of the whole image; the fixed-parameter field
#: settled within 4-9 sweeps at the fits' tol of 1e-4 on the benchmark phantoms)
PREDICT_SWEEPS = 10
#: pixels of a lazy (dask) image the spatial model is fitted on in memory (about 42 bytes each
#: with K = 3 grey, two copies of the posteriors: 0.7 GB); a larger image is fitted on its central
#: block of this many pixels
LAZY_FIT_PIXELS = 2**24


def _halo(nd, conn):
    """Pixels of a chunk's halo for :data:`PREDICT_SWEEPS` sweeps: a pixel's value reaches at most one
    neighbour per colour pass (2 colours, or 4 / 8 with diagonal neighbours), plus the radius of the
    start's smoothing (scipy's gaussian_filter: 4 sigma)."""
    ncol = 2 if conn == 1 else 2**nd
    h = PREDICT_SWEEPS * ncol + int(math.ceil(4.0 * START_SIGMA)) + 1
    return h + (h & 1)  # even: a block's colouring (coordinate parities) is then the image's


def _bias_tables(shape, degree):
    """Legendre tables (Lz, Ly, Lx) of the whole image (as SpatialProblem builds them)."""
    Z, Y, Xn = shape
    Lz = _legendre_table(Z, degree if Z > 1 else 0) if Z > 1 else np.ones((1, degree + 1))
    return Lz, _legendre_table(Y, degree), _legendre_table(Xn, degree)


def _predict_block(model, image, channel_axis, mask, origin, full, proba):
    """Labels or posteriors of one block of an image at global offset ``origin`` (spatial) of an
    image of spatial shape ``full``: the model's start and PREDICT_SWEEPS sweeps."""
    p = model.params
    nd = len(full)
    sp = check_spacing(p.get("spacing"), nd) if len(p.get("spacing") or ()) == nd else check_spacing(None, nd)
    conn = check_connectivity(p.get("connectivity"), nd)
    X, valid, spatial = _prepare(image, channel_axis, mask)
    K = model.n_components
    cov_type = _driver.CovType.parse(model.covariance_type)
    par = _driver.Params.from_sklearn(model.weights, model.means, model.covariances, cov_type)
    degree = int(p.get("bias_field") or 0)
    offs, wts = neighbourhood(nd, conn, sp)
    dims = (1,) * (3 - nd) + tuple(spatial)
    problem = SpatialProblem(
        X,
        valid,
        dims,
        beta=float(p.get("beta") or 0.0),
        offs=offs,
        wts=wts,
        scheme=0 if conn == 1 else 1,
        reg=0.0,
        bias_degree=0,
        hard=p.get("spatial_method") == "icm",
        ndim=nd,
    )
    ib = None
    if degree and p.get("bias_coef") is not None:
        coef = np.asarray(p["bias_coef"], np.float64)
        f3 = (1,) * (3 - nd) + tuple(full)
        o3 = (0,) * (3 - nd) + tuple(origin)
        tabs = _bias_tables(f3, degree)
        Lz, Ly, Lx = (np.ascontiguousarray(t[o : o + n]) for t, o, n in zip(tabs, o3, dims))
        log_b = np.empty(X.shape[0])
        terms = _bias_terms(3 if f3[0] > 1 else 2, degree)
        _mrf.bias_evaluate(coef, terms, Lz, Ly, Lx, np.array(dims, np.int64), log_b)
        if "bias_offset" in p:
            log_b -= float(p["bias_offset"])
        elif valid.any():  # a model saved before the offset was recorded: centred on this image
            log_b -= float(log_b[valid.view(bool)].mean())
        ib = np.exp(-log_b).astype(np.float32)
        problem.inv_b = ib
    sm = _smooth(X if ib is None else X * ib[:, None], valid, spatial, sp).reshape(-1, X.shape[1])
    c0, inv_sd, prec_chol = problem._factors(par)
    q = np.empty((X.shape[0], K), np.float32)
    smv = np.ascontiguousarray(np.where(valid.view(bool)[:, None], sm, 0.0), dtype=np.float32)
    _mrf.init_posteriors(smv, np.zeros(0, np.float32), valid, q, par.means, inv_sd, prec_chol, c0, int(cov_type))
    lab = np.empty(X.shape[0], np.int64)
    _argmax_labels(q, valid, lab)
    q[:] = 0.0
    sel = lab > 0
    q[np.flatnonzero(sel), lab[sel] - 1] = 1.0
    problem.q = q
    problem.beta = problem.beta_fixed
    for it in range(PREDICT_SWEEPS):
        problem.sweep(par, False, it)
    if proba:
        return np.ascontiguousarray(problem.q.T).reshape((K,) + tuple(spatial))
    _argmax_labels(problem.q, valid, lab)
    return lab.astype(label_dtype(K)).reshape(spatial)


def _argmax_labels(q, valid, out):
    """out[i] = 1 + argmax_k q[i, k] (ties to the lower index), 0 for invalid pixels: the ranked
    labels' kernel with the identity rank."""
    _mrf.ranked_labels(q, valid, np.arange(q.shape[1] + 1, dtype=out.dtype), out)


def predict_spatial(model, image, *, channel_axis=None, mask=None, progress=None, proba=False):
    """Labels 1..K (or posteriors (K, *pixels) float32 with ``proba``) of ``image`` under a fitted
    spatial model with its parameters, beta and bias field fixed: what ``model.predict(image)`` and
    ``model.predict_proba(image)`` run for such a model.

    The label field is the model's own mean-field E-step from the start the fit uses (the smoothed
    image, divided by the model's bias field, labelled by the model), :data:`PREDICT_SWEEPS` sweeps.
    On the image it was fitted to it agrees with the fit's labels but for pixels where the mean
    field has two fixed points (the fit's come from its EM path); on another image (a time point, a
    crop) it is the same model's segmentation without refitting. The bias field is evaluated on
    ``image``'s grid (normalised coordinates). A dask image gives a lazy result computed chunk by
    chunk with a halo of the sweeps' reach (``dask.array.overlap``): exactly the labels of the
    whole image, in the memory of a few chunks."""
    image = check_image(image, channel_axis=channel_axis)
    nd = image.ndim - (channel_axis is not None)
    if nd not in (2, 3):
        raise InputError(
            f"this model has a spatial prior for 2-D or 3-D images; the image has {nd} spatial axes: "
            "predict one 2-D/3-D image at a time, or use spatial=False for per-pixel labels"
        )
    full = tuple(s for a, s in enumerate(image.shape) if channel_axis is None or a != channel_axis % image.ndim)
    if sum(s >= 2 for s in full) < 2:
        raise InputError(f"the image's pixels have shape {full}: too small for a 2-D neighbourhood")
    if not is_dask(image):
        out = _predict_block(model, np.asarray(image), channel_axis, mask, (0,) * nd, full, proba)
        if progress is not None:
            progress(1, 1)
        return out
    return _predict_lazy(model, image, channel_axis, mask, full, proba)


SPATIAL_PREDICT[0] = predict_spatial  # MixtureModel.predict / predict_proba of spatial models


def _predict_lazy(model, image, channel_axis, mask, full, proba):
    """predict_spatial of a dask image: each chunk with a halo of :func:`_halo` pixels (none at the
    image's edges, as the whole image has none), its labels / posteriors computed by
    :func:`_predict_block` at its global origin, trimmed back to the chunk."""
    import dask.array as da

    nd = len(full)
    conn = check_connectivity(model.params.get("connectivity"), nd)
    halo = _halo(nd, conn)
    K = model.n_components
    if channel_axis is not None:
        image = da.moveaxis(image, channel_axis % image.ndim, -1)
        image = image.rechunk({nd: -1})
    # chunks at least as large as the halo along every axis (the halo comes from the neighbours), of
    # even sizes: every block then starts at even coordinates, and the red-black (parity) colouring
    # of a block is the whole image's (else the order of the updates, and so the result, differ)
    # (an axis not much longer than the halo is one chunk, without halo)
    depth = {a: 0 if full[a] <= 2 * halo else halo for a in range(nd)}
    size = [full[a] if depth[a] == 0 else max(halo, max(image.chunks[a])) for a in range(nd)]
    image = image.rechunk({a: size[a] + (size[a] & 1) for a in range(nd)})
    chunks = image.chunks[:nd]
    if mask is None:
        m = da.ones(full, dtype=bool, chunks=chunks)
    else:
        m = da.asarray(mask)
        if tuple(m.shape) != tuple(full):
            raise InputError(
                f"mask has shape {tuple(m.shape)} but the image's pixels have shape {full}: give a mask "
                "with one entry per pixel (True = use the pixel)"
            )
        m = (m != 0).rechunk(chunks)
    g = da.overlap.overlap(image, depth={**depth, **({nd: 0} if channel_axis is not None else {})}, boundary="none")
    gm = da.overlap.overlap(m, depth=depth, boundary="none")
    if channel_axis is not None:  # a channel axis of 1 so that the blocks pair with the image's
        gm = gm[..., None]
    starts = [np.concatenate([[0], np.cumsum(c)[:-1]]) for c in chunks]
    ch = None if channel_axis is None else -1

    def block(a, b, block_info=None):
        idx = block_info[1]["chunk-location"][:nd]
        lo = [depth[ax] if i > 0 else 0 for ax, i in enumerate(idx)]
        origin = tuple(int(starts[ax][i]) - lo[ax] for ax, i in enumerate(idx))
        out = _predict_block(model, a, ch, b if ch is None else b[..., 0], origin, full, proba)
        sl = tuple(slice(lo[ax], lo[ax] + chunks[ax][i]) for ax, i in enumerate(idx))
        return out[(slice(None),) + sl] if proba else out[sl]

    if proba:
        kw = {"drop_axis": nd} if channel_axis is not None else {}
        return da.map_blocks(block, g, gm, dtype=np.float32, chunks=((K,),) + tuple(chunks), new_axis=0, **kw)
    return da.map_blocks(
        block,
        g,
        gm,
        dtype=label_dtype(K),
        chunks=tuple(chunks),
        drop_axis=nd if channel_axis is not None else None,
    )


def _segment_lazy(image, n_components, spacing, channel_axis, mask, progress, return_model, kw):
    """segment_spatial of a dask image in bounded memory: the model (class parameters, beta, bias
    field) fitted once in memory, on the whole image when it has at most :data:`LAZY_FIT_PIXELS`
    pixels, else on its central block of that size (contiguous, so that the neighbourhood prior and
    beta are those of the image); then the labels chunk by chunk (:func:`predict_spatial`, lazy)."""
    nd = image.ndim - (channel_axis is not None)
    full = tuple(s for a, s in enumerate(image.shape) if channel_axis is None or a != channel_axis % image.ndim)
    n = int(np.prod(full))
    sub, sub_mask = image, mask
    if n > LAZY_FIT_PIXELS:
        if check_bias(kw.get("bias_field")):
            raise InputError(
                f"bias_field on a lazy image of {n:,} pixels: the field is fitted on the whole image, "
                f"which must have at most {LAZY_FIT_PIXELS:,} pixels; segment a crop, or set bias_field=False"
            )
        f = (LAZY_FIT_PIXELS / n) ** (1.0 / nd)
        box = tuple(
            slice((s - max(2, int(s * f))) // 2, (s - max(2, int(s * f))) // 2 + max(2, int(s * f))) for s in full
        )
        if channel_axis is None:
            sub = image[box]
        else:
            ca = channel_axis % image.ndim
            sub = image[box[:ca] + (slice(None),) + box[ca:]]
        sub_mask = None if mask is None else mask[box]
    sub = sub.compute()
    if sub_mask is not None and is_dask(sub_mask):
        sub_mask = sub_mask.compute()
    r = fit_spatial(
        sub, n_components, spacing=spacing, channel_axis=channel_axis, mask=sub_mask, progress=progress, **kw
    )
    if n > LAZY_FIT_PIXELS:
        r.model.params["fitted_on"] = [[b.start, b.stop] for b in box]
    labels = predict_spatial(r.model, image, channel_axis=channel_axis, mask=mask)
    return (labels, r.model) if return_model else labels


def segment_spatial(
    image,
    n_components=2,
    *,
    beta="auto",
    spacing=None,
    connectivity=None,
    bias_field=False,
    channel_axis=None,
    covariance_type="spherical",
    init="ranges",
    n_init=1,
    max_iter=100,
    tol=None,
    reg_covar=None,
    mask=None,
    bins=None,
    random_state=None,
    split_axis=None,
    return_model=False,
    progress=None,
):
    """Labels 1..K of every pixel under the spatial model (what ``segment(..., beta=...)`` runs).

    With ``split_axis``, one fit per index of that axis (each a 2-D or 3-D image); ``spacing`` then
    lists the remaining spatial axes. Returns labels, or (labels, model or list of models).
    """
    kw = dict(
        beta=beta,
        connectivity=connectivity,
        bias_field=bias_field,
        covariance_type=covariance_type,
        init=init,
        n_init=n_init,
        max_iter=max_iter,
        tol=tol,
        reg_covar=reg_covar,
        bins=bins,
        random_state=random_state,
    )
    image = check_image(image, channel_axis=channel_axis)
    if is_dask(image) and split_axis is None:
        return _segment_lazy(image, n_components, spacing, channel_axis, mask, progress, return_model, kw)
    if is_dask(image):
        image = image.compute()
    if split_axis is None:
        r = fit_spatial(
            image, n_components, spacing=spacing, channel_axis=channel_axis, mask=mask, progress=progress, **kw
        )
        return (r.labels, r.model) if return_model else r.labels
    axes = _pl.split_axes(image, channel_axis, split_axis)
    phases = _pl.Progress(progress, [max_iter] * axes.length)

    def one(sub, m, i):
        r = fit_spatial(
            sub, n_components, spacing=spacing, channel_axis=axes.channel_slice, mask=m, progress=phases.phase(i), **kw
        )
        r.model.params.update(split_axis=axes.axis, index=i)
        return r.labels, r.model

    labels, models = _pl.split(image, None if mask is None else np.asarray(mask), axes, one)
    return (labels, SplitModels(models, axes.axis, channel_axis)) if return_model else labels
