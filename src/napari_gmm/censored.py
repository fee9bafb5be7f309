"""Clipped (saturated) grey levels as censored observations of a Gaussian mixture.

Pixels at a clipping limit (the camera's full well, 0 and 255 of an 8-bit export, 1.0 of a
normalised float image) are not measurements of their true value: they only say that it lies at or
beyond the limit. Fitted as ordinary values they form a spike that a plain mixture explains with an
extra narrow component (and the information criterion then asks for one more class), while the
class they were cut from comes out with too small a variance and a mean pulled inwards.

Here the extreme level of the histogram, when it is such a pile, enters the likelihood as a
*censored* observation: its pixels contribute each component's tail mass beyond the limit,
``P_k(y >= c)`` at the top and ``P_k(y <= c)`` at the bottom, in the E-step (with the moments of the
truncated component) and in the M-step (Lee & Scott 2012). Every other level is an ordinary
weighted sample.

The censoring threshold ``c`` is the edge of the extreme level's quantisation bin: for integer data
a pixel reads 255 when its true value is at least 254.5, so ``c = 254.5`` (and ``0.5`` at the
bottom); for binned float data it is the inner edge of the extreme bin.

Detection (``censoring="auto"``)
--------------------------------
A level is censored when it is the extreme counted level of the image and a *pile*: its count
exceeds what the neighbouring levels' density allows,

    n_extreme > _config.SPIKE_RATIO * e + _config.SPIKE_SIGMAS * sqrt(e) + _config.SPIKE_MIN,

``e`` the mean count of the :data:`_config.SPIKE_NEIGHBOURS` levels (bins) next to it, which must not all be
empty (a pile beside an empty gap is a separate object, e.g. zero padding, not a clipped tail). An
unclipped image's extreme level is part of a tail that thins out towards it, so its count stays
near ``e``; clipping stacks a whole tail's mass on it. Detection needs no particular limit (a
12-bit camera clips at 4095 inside uint16 data, an export may clip at 250).

References
----------
.. [1] Lee, G. & Scott, C. (2012). EM algorithms for multivariate Gaussian mixture models with
       truncated and censored data. Computational Statistics & Data Analysis 56(9), 2816-2829.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import get_num_threads

from ._kernels import _config
from ._kernels import censored as _kc
from ._kernels import em as _k
from ._validate import InputError
from .em import CovType, Params, Problem, collapse_error

__all__ = ["Censoring", "CensoredSamples", "detect_censoring", "CENSORING_OPTIONS"]

#: accepted values of the ``censoring`` parameter
CENSORING_OPTIONS = ("auto", True, False, "lower", "upper")


@dataclass
class Censoring:
    """Which extreme levels of a grey histogram are censored, and at which thresholds.

    Attributes
    ----------
    lower, upper : float or None
        Thresholds: the lowest level's pixels are known to be <= ``lower``, the highest level's
        >= ``upper``; None where that side is not censored.
    lower_level, upper_level : float or None
        The grey value (the histogram sample) of the censored level; pixels at or beyond it are
        labelled by the component most probable given the tail.
    n_lower, n_upper : float
        Pixels in each censored level.
    step : float
        The data's quantisation step (1 for integer data, the bin width for binned data, the
        lattice step for values on a coarser lattice: :func:`napari_gmm.compress.value_step`).
    how : str
        ``"detected"`` (``censoring="auto"``) or ``"forced"``.
    """

    lower: float | None = None
    upper: float | None = None
    lower_level: float | None = None
    upper_level: float | None = None
    n_lower: float = 0.0
    n_upper: float = 0.0
    step: float = 1.0
    how: str = "detected"

    @property
    def active(self) -> bool:
        return self.lower is not None or self.upper is not None

    def to_dict(self) -> dict:
        return {
            "lower": self.lower,
            "upper": self.upper,
            "lower_level": self.lower_level,
            "upper_level": self.upper_level,
            "n_lower": float(self.n_lower),
            "n_upper": float(self.n_upper),
            "step": float(self.step),
            "how": self.how,
        }

    @classmethod
    def from_dict(cls, d) -> Censoring | None:
        if not d:
            return None
        return cls(
            **{k: d.get(k) for k in ("lower", "upper", "lower_level", "upper_level")},
            n_lower=float(d.get("n_lower", 0.0)),
            n_upper=float(d.get("n_upper", 0.0)),
            step=float(d.get("step", 1.0)),
            how=str(d.get("how", "detected")),
        )

    def describe(self) -> str:
        parts = []
        if self.lower is not None:
            parts.append(f"{self.n_lower:.0f} pixels at {self.lower_level:g} (true value <= {self.lower:g})")
        if self.upper is not None:
            parts.append(f"{self.n_upper:.0f} pixels at {self.upper_level:g} (true value >= {self.upper:g})")
        return f"censored ({self.how}): " + "; ".join(parts) if parts else "no censoring"


def check_censoring(censoring):
    """The validated ``censoring`` option, or InputError."""
    if isinstance(censoring, (bool, np.bool_)):
        return bool(censoring)
    if isinstance(censoring, str) and censoring in ("auto", "lower", "upper"):
        return censoring
    raise InputError(
        f"censoring={censoring!r} is not an option: use 'auto' (censor an extreme grey level that is a "
        "pile of clipped pixels), True (censor both extreme levels), 'lower' or 'upper' (one of them) "
        "or False (fit every level as a measured value)"
    )


def _lattice(hist):
    """Whether the image's values sit on a lattice coarser than its histogram's bins (an 8-bit
    image saved as 16-bit: levels 256 apart; :func:`napari_gmm.compress.value_step`)."""
    return hist.value_step > float(hist.bin_width[0])


def _bin_index(hist):
    """Index of every sample's bin on the histogram's regular grid (integer: level - low)."""
    v = hist.values[:, 0]
    spec = hist.spec
    if hist.kind == "binned":
        return np.minimum(((v - spec.lo) * spec.inv_width).astype(np.int64), spec.nbins - 1)
    return np.rint(v - hist.low[0]).astype(np.int64)


def _thresholds(hist):
    """(lower threshold, upper threshold) of the extreme levels: their bins' (their lattice
    steps') inner edges."""
    spec = hist.spec
    if hist.kind == "binned" and not _lattice(hist):
        w = spec.width
        return spec.lo + w, spec.lo + (spec.nbins - 1) * w
    h = hist.value_step
    return float(hist.values[0, 0]) + 0.5 * h, float(hist.values[-1, 0]) - 0.5 * h


def is_pile(hist, side) -> bool:
    """Whether the extreme level on ``side`` ("lower"/"upper") is a pile of clipped pixels (see the
    module notes: more than _config.SPIKE_RATIO times its neighbours' density, with a Poisson margin)."""
    if hist.n_distinct < 3 or hist.kind not in ("integer", "binned"):
        return False
    if _lattice(hist):  # neighbours counted in steps of the lattice from the extreme value
        v = hist.values[:, 0]
        ext = hist.counts[0] if side == "lower" else hist.counts[-1]
        d = np.abs(v - (v[0] if side == "lower" else v[-1])) / hist.value_step
        near = (d > 0.5) & (d < _config.SPIKE_NEIGHBOURS + 0.5)
    else:
        idx = _bin_index(hist)
        top = int(idx[-1])
        if side == "lower":
            ext, near = hist.counts[0], (idx >= 1) & (idx <= _config.SPIKE_NEIGHBOURS)
        else:
            ext, near = hist.counts[-1], (idx >= top - _config.SPIKE_NEIGHBOURS) & (idx <= top - 1)
    e = hist.counts[near].sum() / _config.SPIKE_NEIGHBOURS
    if e <= 0:
        return False
    return bool(ext > _config.SPIKE_RATIO * e + _config.SPIKE_SIGMAS * np.sqrt(e) + _config.SPIKE_MIN)


def detect_censoring(hist, censoring="auto") -> Censoring | None:
    """The :class:`Censoring` of a histogram for the ``censoring`` option, or None (none).

    Parameters
    ----------
    hist : Histogram
        The image's compressed form (:func:`napari_gmm.histogram`).
    censoring : {"auto", True, False, "lower", "upper"}
        ``"auto"``: each extreme level that is a pile of clipped pixels (grey data only; colour data
        are never censored). True: both extreme levels. ``"lower"``/``"upper"``: that one.

    Raises
    ------
    InputError
        For an unknown option, or forced censoring on colour data or on an image with fewer than
        three grey levels (nothing would be left between the limits).
    """
    censoring = check_censoring(censoring)
    if censoring is False:
        return None
    if hist.n_features != 1:
        if censoring == "auto":
            return None
        raise InputError(
            f"censoring={censoring!r} is for grey images: colour and multichannel data are fitted "
            "uncensored. Use censoring='auto' or False, or fit each channel as a grey image"
        )
    if censoring == "auto":
        sides = [s for s in ("lower", "upper") if is_pile(hist, s)]
        how = "detected"
    else:
        if hist.n_distinct < 3:
            raise InputError(
                f"censoring={censoring!r} needs at least three grey levels (the censored extremes and "
                f"measured values between them); the image has {hist.n_distinct}. Use censoring=False"
            )
        sides = ["lower", "upper"] if censoring is True else [censoring]
        how = "forced"
    if not sides:
        return None
    lo_t, hi_t = _thresholds(hist)
    h = hist.value_step
    c = Censoring(step=h, how=how)
    if "lower" in sides:
        c.lower, c.lower_level, c.n_lower = float(lo_t), float(hist.values[0, 0]), float(hist.counts[0])
    if "upper" in sides:
        c.upper, c.upper_level, c.n_upper = float(hi_t), float(hist.values[-1, 0]), float(hist.counts[-1])
    return c


class CensoredSamples(Problem):
    """A grey Gaussian mixture on a histogram whose extreme level(s) are censored (EM driver problem).

    Parameters
    ----------
    X : ndarray, shape (M, 1)
        Grey levels, sorted ascending (a :class:`~napari_gmm.histogram.Histogram`'s ``values``).
    w : ndarray, shape (M,)
        Pixel counts.
    censoring : Censoring
        Which of the extreme samples (X[0], X[-1]) are censored; they are taken out of the plain
        samples and enter through their tail masses.
    reg_covar : float
        Added to every variance in the M-step.

    Notes
    -----
    The objective is the mean log-likelihood per pixel, with a censored level's pixels contributing
    ``log(sum_k w_k P_k(tail) / step)``: the tail probability spread over one quantisation step, in
    the same density units as the measured levels (``step = 1`` for integer data), so that censored
    and uncensored objectives of one image are on the same scale.
    """

    def __init__(self, X, w, censoring: Censoring, reg_covar: float):
        X = np.ascontiguousarray(X, dtype=np.float64)
        w = np.ascontiguousarray(w, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != 1:
            raise InputError("censored fits are for grey data (one feature)")
        a = 1 if censoring.lower is not None else 0
        b = X.shape[0] - (1 if censoring.upper is not None else 0)
        self.X = np.ascontiguousarray(X[a:b])
        self.w = np.ascontiguousarray(w[a:b])
        self.censoring = censoring
        self.groups = []  # (threshold, pixels, upper?)
        if censoring.lower is not None:
            self.groups.append((float(censoring.lower), float(w[0]), False))
        if censoring.upper is not None:
            self.groups.append((float(censoring.upper), float(w[-1]), True))
        self.step_h = float(censoring.step)
        self.reg = float(reg_covar)
        self.n_features = 1
        self.total_weight = float(w.sum())
        self._scratch = None

    def _buffers(self, K):
        if self._scratch is None or self._scratch[0].shape[0] != K:
            self._scratch = (
                np.zeros((K, 1)),
                np.zeros((K, 1, 1)),
                np.zeros(K),
                np.zeros(K),
                np.zeros(K),
                np.zeros((K, 1)),
                np.zeros((K, 1, 1)),
            )
        return self._scratch

    def _prepare(self, params, iteration):
        K = params.means.shape[0]
        bufs = self._buffers(K)
        inv_sd, prec_chol, log_det, log_w = bufs[:4]
        bad = _k.precisions(params.cov, int(params.cov_type), inv_sd, prec_chol, log_det)
        if bad >= 0:
            raise collapse_error(params, bad, iteration)
        _k.log_weights(params.weights, log_w)
        return bufs

    def _plain_estep(self, params, bufs):
        inv_sd, prec_chol, log_det, log_w, Nk, Sx, Sxx = bufs
        K = params.means.shape[0]
        ct = int(params.cov_type)
        if self.X.shape[0] == 0:
            Nk[:] = 0.0
            Sx[:] = 0.0
            Sxx[:] = 0.0
            return 0.0
        if self.X.shape[0] * K >= _config.PARALLEL_WORK:
            return _k.estep_accumulate(
                self.X,
                self.w,
                params.means,
                params.means,
                inv_sd,
                prec_chol,
                log_det,
                log_w,
                ct,
                Nk,
                Sx,
                Sxx,
                get_num_threads(),
            )
        return _k.estep_accumulate_serial(
            self.X, self.w, params.means, params.means, inv_sd, prec_chol, log_det, log_w, ct, Nk, Sx, Sxx, 1
        )

    def step(self, params: Params, iteration: int) -> float:
        bufs = self._prepare(params, iteration)
        ll = self._plain_estep(params, bufs)
        _, _, _, log_w, Nk, Sx, Sxx = bufs
        mu = params.means[:, 0].copy()
        var = params.cov[:, 0, 0].copy()
        for c, n, upper in self.groups:
            ll += _kc.censored_accumulate(c, n, upper, self.step_h, mu, var, log_w, Nk, Sx, Sxx)
        _k.m_step(Nk, Sx, Sxx, int(params.cov_type), self.reg, params.weights, params.means, params.cov)
        return ll / self.total_weight

    def objective(self, params: Params) -> float:
        # the E-step kernel (block-pruned, vectorised) gives the log-likelihood 10x faster than
        # the sample-by-sample log_likelihood kernel (49,466 levels: 0.65 against 8 ms); its
        # statistics go to scratch buffers and are discarded
        bufs = self._prepare(params, None)
        ll = self._plain_estep(params, bufs)
        for c, n, upper in self.groups:
            ll += n * _logsumexp(self.group_log_probs(params, c, upper))
        return ll / self.total_weight

    def group_log_probs(self, params, c, upper):
        """(K,) log(w_k P_k(tail) / step) of one censored group."""
        out = np.empty(params.means.shape[0])
        with np.errstate(divide="ignore"):
            log_w = np.log(params.weights)
        _kc.censored_log_probs(
            float(c), bool(upper), self.step_h, params.means[:, 0].copy(), params.cov[:, 0, 0].copy(), log_w, out
        )
        return out

    def default_reg(self) -> float:
        return self.step_h**2 / 12.0


def _logsumexp(a):
    m = np.max(a)
    if not np.isfinite(m):
        return m
    return float(m + np.log(np.exp(a - m).sum()))


def tail_log_probs(weights, means, variances, censoring: Censoring):
    """{"lower": (K,), "upper": (K,)} log(w_k P_k(tail)) of the censored sides of a grey model."""
    out = {}
    K = len(weights)
    with np.errstate(divide="ignore"):
        log_w = np.log(np.asarray(weights, dtype=np.float64))
    mu = np.ascontiguousarray(means, dtype=np.float64).reshape(K)
    var = np.ascontiguousarray(variances, dtype=np.float64).reshape(K)
    for side, c in (("lower", censoring.lower), ("upper", censoring.upper)):
        if c is not None:
            lp = np.empty(K)
            _kc.censored_log_probs(float(c), side == "upper", 1.0, mu, var, log_w, lp)
            out[side] = lp
    return out


def censored_grid_fix(grid, weights, means, variances, censoring: Censoring, lut=None, proba=None):
    """Overwrite the look-up rows of grey levels at or beyond a censored level with the tail's answer.

    ``lut`` (G,) holds 0-based components (the most probable one given the tail);
    ``proba`` (G, K) the posteriors given the tail. ``grid`` (G,) are the grey values of the rows.
    Both are modified in place; returns nothing.
    """
    g = np.asarray(grid, dtype=np.float64).reshape(-1)
    lps = tail_log_probs(weights, means, variances, censoring)
    for side, lp in lps.items():
        rows = g <= censoring.lower_level if side == "lower" else g >= censoring.upper_level
        if not rows.any():
            continue
        if lut is not None:
            lut[rows] = int(np.argmax(lp))
        if proba is not None:
            p = np.exp(lp - _logsumexp(lp))
            proba[rows] = p.astype(proba.dtype)


def censored_score(X, w, weights, means, variances, censoring: Censoring) -> float:
    """Mean log-likelihood per pixel of grey samples ``X`` (M, 1) with counts ``w`` under a censored
    model: samples at or beyond a censored level (``lower_level``/``upper_level``) count by the tail
    mass, the others by the density (the objective the fit maximised)."""
    x = np.asarray(X, dtype=np.float64).reshape(-1)
    w = np.asarray(w, dtype=np.float64)
    lo = x <= censoring.lower_level if censoring.lower is not None else np.zeros(x.size, bool)
    hi = x >= censoring.upper_level if censoring.upper is not None else np.zeros(x.size, bool)
    mid = ~(lo | hi)
    K = len(weights)
    params = Params(
        np.asarray(weights, dtype=np.float64),
        np.asarray(means, dtype=np.float64).reshape(K, 1),
        np.asarray(variances, dtype=np.float64).reshape(K, 1, 1),
        CovType.SPHERICAL,
    )
    c = Censoring(
        lower=censoring.lower if lo.any() else None,
        upper=censoring.upper if hi.any() else None,
        lower_level=float(x[lo].max()) if lo.any() else None,
        upper_level=float(x[hi].min()) if hi.any() else None,
        n_lower=float(w[lo].sum()),
        n_upper=float(w[hi].sum()),
        step=censoring.step,
        how=censoring.how,
    )
    Xs = np.concatenate([[0.0]] * bool(lo.any()) + [x[mid]] + [[0.0]] * bool(hi.any()))[:, None]
    ws = np.concatenate([[c.n_lower]] * bool(lo.any()) + [w[mid]] + [[c.n_upper]] * bool(hi.any()))
    return float(CensoredSamples(Xs, ws, c, 0.0).objective(params))
