"""Choosing the number of components: information criteria on the compressed data, the search over
K with warm starts, and interval labels.

``n_components="auto"`` fits K = 1 .. ``max_components`` and keeps the K with the smallest
criterion (scikit-learn's sign convention: lower is better):

=========  ==========================================  ==============================================
criterion  value                                       tends to
=========  ==========================================  ==============================================
``bic``    ``-2 log L + p log N``                       the true K when the classes are Gaussian
``icl``    ``BIC + 2 EN``, EN = classification entropy  fewer, well separated classes (Biernacki 2000)
``aic``    ``-2 log L + 2 p``                           more components (no log N: grows with N)
=========  ==========================================  ==============================================

``log L`` is the log-likelihood summed over the N counted pixels (from the weighted samples: a
histogram costs what its distinct levels cost, not its pixels), ``p`` the number of free parameters
(scikit-learn's count: ``K D`` means, the covariances, ``K - 1`` weights). Clipped levels enter
``log L`` as censored observations (:mod:`napari_gmm.censored`), so a pile of saturated pixels is
not a reason for one more component.

The search
----------
Most of the work runs on a coarse copy of the histogram (at most :data:`_config.COARSE_BINS` bins; a
uint8 image is its own copy; colour: the occupied cells of a :data:`_config.COARSE_COLOUR_BINS`-per-
channel grid, whose fit then takes :data:`_config.COLOUR_POLISH_ITER` EM iterations on all
colours). For K = 1, 2, ... the starts are the K - 1 fit with one component split
in two (the widest, and the one holding the most spread ``w sd``; a moment-preserving split) and K
equal slices of the grey range (plus the user's ``init`` when it is another start); each runs
:data:`_config.SCREEN_ITER` EM iterations and the best continues to the optimum
(:data:`_config.SEARCH_TOL_NATS` of log-likelihood over all pixels, the driver switching to SQUAREM
when EM creeps). The full histogram's log-likelihood at that fit gives the criterion. The search
stops after :data:`_config.SEARCH_PATIENCE` consecutive K worse than the best (or at
``max_components``).

A second pass fits the best K and its neighbours again (those whose criterion is within
:data:`_config.REFINE_MARGIN` of the best): the starts are every component of the (refined) K - 1
fit split in two, the range slices and the first pass's fit, the best :data:`_config.REFINE_FINISH`
screened starts and the range slices (within :data:`_config.REFINE_GAP` nats per pixel of the best
after screening) go to the optimum
within :data:`_config.REFINE_TOL_NATS`, and the pass repeats while the best K moves. Classes 1.7 to
2.5 sd apart give likelihoods so flat that EM from different starts stops at optima tens of nats
apart (on 4 classes 1.7 sd apart in a 2048 x 2048 image the first pass alone ended 36 nats below the
fit started from the true parameters, and BIC chose 6), enough to change the criterion's choice.
EM on the coarse samples is deterministic, so a start the second pass meets again (the range slices of
K, a split of an unchanged K - 1 fit) is not run again. The chosen K then runs to convergence on the
full histogram from its fit. The search's cost against
one fit at a fixed K on a 4096 x 4096 uint16 image is measured by ``benchmarks/bench_selection.py``.

Why each K goes to its optimum: the criterion compares log-likelihoods summed over all pixels,
and EM stopped by the usual ``tol`` (per pixel) on overlapping classes leaves a fit hundreds of nats
short; a K + 2 fit that happens to converge faster then looks better, and BIC overestimates K.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numba import get_num_threads

from ._kernels import _config
from ._kernels import em as _k
from ._validate import FitError, InputError
from .em import CovType, Params, Problem, WeightedSamples, fit_em, run_em

__all__ = [
    "CRITERIA",
    "Selection",
    "n_parameters",
    "criterion_value",
    "search_n_components",
    "interval_cuts",
    "check_selection_args",
    "polished_fit",
    "spatial_log_likelihood",
]

CRITERIA = ("bic", "icl", "aic")


# ============================================================================================
# criteria


def n_parameters(n_components, n_features, covariance_type) -> int:
    """Free parameters of a Gaussian mixture (scikit-learn's ``GaussianMixture._n_parameters``)."""
    K, D = int(n_components), int(n_features)
    ct = CovType.parse(covariance_type)
    cov = {CovType.SPHERICAL: K, CovType.DIAG: K * D, CovType.FULL: K * D * (D + 1) // 2}[ct]
    return K * D + cov + K - 1


def criterion_value(criterion, log_likelihood, n_pixels, n_params, entropy=0.0) -> float:
    """The information criterion (lower is better) of a fit.

    Parameters
    ----------
    criterion : {"bic", "icl", "aic"}
    log_likelihood : float
        Total log-likelihood over the ``n_pixels`` pixels (not the mean).
    n_pixels : float
    n_params : int
    entropy : float
        Classification entropy ``-sum_i sum_k t_ik log t_ik`` over the pixels (ICL only).
    """
    if criterion == "bic":
        return -2.0 * log_likelihood + n_params * math.log(n_pixels)
    if criterion == "aic":
        return -2.0 * log_likelihood + 2.0 * n_params
    if criterion == "icl":
        return -2.0 * log_likelihood + n_params * math.log(n_pixels) + 2.0 * entropy
    raise InputError(_criterion_message(criterion))


def _criterion_message(criterion):
    return (
        f"criterion={criterion!r} is not supported: use 'bic' (the default), 'icl' (BIC plus the "
        "classification entropy: prefers well separated classes) or 'aic'"
    )


def check_selection_args(max_components, criterion, n_distinct=None):
    """InputError for a bad ``max_components`` or ``criterion``; returns max_components as int."""
    if criterion not in CRITERIA:
        raise InputError(_criterion_message(criterion))
    if isinstance(max_components, bool) or not isinstance(max_components, (int, np.integer)):
        raise InputError(f"max_components must be a whole number >= 1, got {max_components!r}")
    if max_components < 1:
        raise InputError(
            f"max_components must be at least 1 (the search tries K = 1 .. max_components), got {max_components}"
        )
    if n_distinct is not None and max_components > n_distinct:
        raise InputError(
            f"max_components={max_components} is more than the {n_distinct} distinct values in the image: "
            f"choose max_components <= {n_distinct} (a component needs distinct values to fit)"
        )
    return int(max_components)


@dataclass
class Selection:
    """The record of a search over K (``model.selection``).

    Attributes
    ----------
    criterion : str
        ``"bic"``, ``"icl"`` or ``"aic"``.
    n_components : int
        The chosen K (smallest criterion).
    candidates : list of int
        The K tried, ascending.
    values : list of float
        The criterion of each K tried (lower is better).
    log_likelihood : list of float
        Total log-likelihood (over the pixels) of each K's fit.
    n_parameters : list of int
    n_pixels : float
    entropy : list of float or None
        Classification entropy of each K's fit (ICL only).
    censoring : dict or None
        :meth:`napari_gmm.censored.Censoring.to_dict` of the censored levels, if any.
    """

    criterion: str
    n_components: int
    candidates: list = field(default_factory=list)
    values: list = field(default_factory=list)
    log_likelihood: list = field(default_factory=list)
    n_parameters: list = field(default_factory=list)
    n_pixels: float = 0.0
    entropy: list | None = None
    censoring: dict | None = None

    def to_dict(self) -> dict:
        return {
            "criterion": self.criterion,
            "n_components": int(self.n_components),
            "candidates": [int(k) for k in self.candidates],
            "values": [float(v) for v in self.values],
            "log_likelihood": [float(v) for v in self.log_likelihood],
            "n_parameters": [int(p) for p in self.n_parameters],
            "n_pixels": float(self.n_pixels),
            "entropy": None if self.entropy is None else [float(v) for v in self.entropy],
            "censoring": self.censoring,
        }

    @classmethod
    def from_dict(cls, d) -> Selection | None:
        if not d:
            return None
        return cls(
            **{
                k: d.get(k)
                for k in (
                    "criterion",
                    "n_components",
                    "candidates",
                    "values",
                    "log_likelihood",
                    "n_parameters",
                    "n_pixels",
                    "entropy",
                    "censoring",
                )
            }
        )

    def table(self) -> str:
        """The criterion against K as plain text (the chosen K marked)."""
        lines = [f"{'K':>3}  {self.criterion.upper():>14}  {'log L':>14}  {'params':>6}"]
        for k, v, ll, p in zip(self.candidates, self.values, self.log_likelihood, self.n_parameters):
            mark = "  <- chosen" if k == self.n_components else ""
            lines.append(f"{k:>3}  {v:>14.1f}  {ll:>14.1f}  {p:>6}{mark}")
        return "\n".join(lines)


# ============================================================================================
# the search


def _coarse_colours(X, w, bins):
    """Multichannel samples merged into the cells of a ``bins``-per-channel grid (weighted mean
    colour per occupied cell, summed counts), and the largest cell width (0 when nothing merged)."""
    M, D = X.shape
    if M <= bins ** min(D, 3):
        return X, w, 0.0
    lo = X.min(axis=0)
    span = X.max(axis=0) - lo
    width = np.where(span > 0, span / bins, 1.0)
    idx = np.minimum(((X - lo) / width).astype(np.int64), bins - 1)
    keys = np.zeros(M, np.int64)
    for d in range(D):
        keys = keys * bins + idx[:, d]
    _, inv = np.unique(keys, return_inverse=True)
    cnt = np.bincount(inv, weights=w)
    means = np.stack([np.bincount(inv, weights=w * (X[:, d] - lo[d])) for d in range(D)], axis=1)
    return np.ascontiguousarray(means / cnt[:, None] + lo), np.ascontiguousarray(cnt), float(width.max())


def _coarse_samples(X, w, bins):
    """Grey samples re-binned into at most ``bins`` equal bins (weighted means, summed counts), and
    the width whose variance is the coarse fit's floor (0 when nothing was merged). Multichannel:
    :func:`_coarse_colours` on a grid of :data:`_config.COARSE_COLOUR_BINS` per channel.

    A bin holding more than :data:`_config.COARSE_BIN_SHARE` of the pixels (a narrow class in a
    range that a few bright pixels stretch) is cut into equal sub-bins holding about that share
    each, again while one holds more and has more than one level; the floor is then the widest
    sub-bin's width^2 / 12 (the wide bins are where the pixels are sparse). Gaussian classes spread over
    the range never get there (a class holding a share w of the pixels puts that share into one equal
    bin only when its sd is under about 20 w bins)."""
    if X.shape[1] != 1:
        return _coarse_colours(X, w, _config.COARSE_COLOUR_BINS)
    if X.shape[0] <= bins:
        return X, w, 0.0
    v = X[:, 0]
    lo, hi = float(v[0]), float(v[-1])
    width = (hi - lo) / bins
    step = float(np.min(np.diff(v)))  # values on a lattice (e.g. multiples of 16): whole steps per bin,
    if step > 0 and width > step:  # else bins alternately holding 3 and 4 levels make a comb
        width = math.ceil(width / step * (1 - 1e-12)) * step
    idx = np.minimum(((v - lo) / width).astype(np.int64), bins - 1)
    cnt = np.bincount(idx, weights=w, minlength=bins)
    cap = _config.COARSE_BIN_SHARE * float(cnt.sum())
    if cnt.max() > cap:
        idx, width = _split_full_bins(v, w, idx, width, step, cap)
        cnt = np.bincount(idx, weights=w)
    s = np.bincount(idx, weights=w * (v - lo), minlength=cnt.size)
    nz = cnt > 0
    return np.ascontiguousarray((s[nz] / cnt[nz] + lo)[:, None]), np.ascontiguousarray(cnt[nz]), width


def _split_full_bins(v, w, idx, width, step, cap):
    """Bin indices (still ordered with ``v``) after cutting every bin holding more than ``cap``
    pixels into equal sub-bins (whole lattice steps) holding about ``cap`` each, repeated while a
    bin holds more and spans more than one level; and the widest sub-bin's width."""
    fine = 0.0
    for _ in range(_config.COARSE_SPLIT_ROUNDS):
        n_bins = int(idx[-1]) + 1
        cnt = np.bincount(idx, weights=w, minlength=n_bins)
        first = np.searchsorted(idx, np.arange(n_bins), side="left")
        last = np.searchsorted(idx, np.arange(n_bins), side="right") - 1
        full = np.flatnonzero((cnt > cap) & (last > first))
        if full.size == 0:
            break
        # sub-bins per bin: 1 for the others, ceil(count / cap) for the full ones
        parts = np.ones(n_bins, np.int64)
        parts[full] = np.ceil(cnt[full] / cap).astype(np.int64)
        offset = np.concatenate([[0], np.cumsum(parts)[:-1]])
        sub = np.zeros(v.size, np.int64)
        for b in full:
            a, z = first[b], last[b] + 1
            lo_b, span = float(v[a]), float(v[z - 1] - v[a])
            sw = span / parts[b] * (1 + 1e-12)
            if step > 0 and sw > step:
                sw = math.ceil(sw / step * (1 - 1e-12)) * step
            sw = max(sw, step if step > 0 else span)
            sub[a:z] = np.minimum(((v[a:z] - lo_b) / sw).astype(np.int64), parts[b] - 1)
            fine = max(fine, sw)
        idx = offset[idx] + sub
        _, idx = np.unique(idx, return_inverse=True)  # drop empty sub-bins, keep the order
    return idx, (min(width, fine) if fine > 0 else width)


def coarse_problem(problem: Problem):
    """A copy of ``problem`` on at most :data:`_config.COARSE_BINS` grey bins (the problem itself when it is
    that small or not grey). Censored groups stay as they are."""
    from .censored import CensoredSamples

    Xc, wc, width = _coarse_samples(problem.X, problem.w, _config.COARSE_BINS)
    if width == 0.0:
        return problem
    reg = max(problem.reg, width**2 / 12.0)
    if isinstance(problem, CensoredSamples):
        c = problem.censoring
        pre = [np.array([[c.lower_level]])] if c.lower is not None else []
        post = [np.array([[c.upper_level]])] if c.upper is not None else []
        wpre = [np.array([c.n_lower])] if c.lower is not None else []
        wpost = [np.array([c.n_upper])] if c.upper is not None else []
        return CensoredSamples(np.concatenate(pre + [Xc] + post), np.concatenate(wpre + [wc] + wpost), c, reg)
    return WeightedSamples(Xc, wc, reg)


def _all_samples(problem):
    """(X, w) of every pixel group of a problem, censored levels at their grey value."""
    from .censored import CensoredSamples

    if not isinstance(problem, CensoredSamples):
        return problem.X, problem.w
    c = problem.censoring
    X, w = [problem.X], [problem.w]
    if c.lower is not None:
        X.insert(0, np.array([[c.lower_level]]))
        w.insert(0, np.array([c.n_lower]))
    if c.upper is not None:
        X.append(np.array([[c.upper_level]]))
        w.append(np.array([c.n_upper]))
    return np.concatenate(X), np.concatenate(w)


def range_start(X, w, K, cov_type, reg) -> Params:
    """K equal slices of the brightness range, each slice's weight, mean and (co)variance (empty
    slices: the mean of their range and the average covariance, a small weight)."""
    b = X.mean(axis=1)
    lo, hi = float(b.min()), float(b.max())
    span = hi - lo if hi > lo else 1.0
    assign = np.clip(((b - lo) * K / span).astype(np.int64), 0, K - 1)
    D = X.shape[1]
    Nk = np.bincount(assign, weights=w, minlength=K)
    means = np.empty((K, D))
    cov = np.zeros((K, D, D))
    for k in range(K):
        sel = assign == k
        if Nk[k] > 0:
            means[k] = (w[sel, None] * X[sel]).sum(0) / Nk[k]
            d = X[sel] - means[k]
            cov[k] = (w[sel, None, None] * d[:, :, None] * d[:, None, :]).sum(0) / Nk[k]
        else:
            means[k] = lo + (k + 0.5) * span / K
    filled = Nk > 0
    if (~filled).any():
        cov[~filled] = cov[filled].mean(axis=0) if filled.any() else np.eye(D) * (span / K) ** 2
        Nk[~filled] = max(1e-3 * Nk.sum() / K, 0.1 * Nk[filled].min() if filled.any() else 1.0)
    return _finish(Nk / Nk.sum(), means, cov, cov_type, reg)


def _finish(weights, means, cov, cov_type, reg):
    D = means.shape[1]
    idx = np.arange(D)
    cov = cov.copy()
    cov[:, idx, idx] += reg
    if cov_type == CovType.SPHERICAL:
        v = np.diagonal(cov, axis1=1, axis2=2).mean(axis=1)
        cov = np.zeros_like(cov)
        cov[:, idx, idx] = v[:, None]
    elif cov_type == CovType.DIAG:
        v = np.diagonal(cov, axis1=1, axis2=2).copy()
        cov = np.zeros_like(cov)
        cov[:, idx, idx] = v
    return Params(
        np.asarray(weights, dtype=np.float64),
        np.ascontiguousarray(means, dtype=np.float64),
        np.ascontiguousarray(cov),
        CovType(cov_type),
    )


def split_start(params: Params, j: int) -> Params:
    """``params`` with component j split in two along its widest axis: means at +-_config.SPLIT_OFFSET
    standard deviations, half the weight each, the variance along that axis reduced so that the
    pair keeps the component's mean and covariance (moment-preserving split)."""
    K, D = params.means.shape
    cov = params.cov[j]
    if params.cov_type == CovType.FULL:
        vals, vecs = np.linalg.eigh(cov)
        lam, u = float(vals[-1]), vecs[:, -1]
    else:
        d = np.diagonal(cov)
        a = int(np.argmax(d))
        lam, u = float(d[a]), np.eye(D)[a]
    s = math.sqrt(max(lam, 0.0))
    shift = _config.SPLIT_OFFSET * s * u
    new_cov = cov - (_config.SPLIT_OFFSET**2) * lam * np.outer(u, u)
    if params.cov_type == CovType.SPHERICAL:
        v = float(np.trace(new_cov)) / D
        new_cov = np.eye(D) * v
    elif params.cov_type == CovType.DIAG:
        new_cov = np.diag(np.diagonal(new_cov))
    weights = np.concatenate([params.weights[:j], [params.weights[j] / 2] * 2, params.weights[j + 1 :]])
    means = np.concatenate(
        [params.means[:j], [params.means[j] - shift, params.means[j] + shift], params.means[j + 1 :]]
    )
    covs = np.concatenate([params.cov[:j], [new_cov, new_cov], params.cov[j + 1 :]])
    return Params(weights, np.ascontiguousarray(means), np.ascontiguousarray(covs), params.cov_type)


def _split_candidates(params: Params):
    """Components worth splitting: the widest, and the one with the most spread (w * sd)."""
    sd = np.sqrt(np.diagonal(params.cov, axis1=1, axis2=2).max(axis=1))
    out = [int(np.argmax(sd)), int(np.argmax(params.weights * sd))]
    return sorted(set(out))


def _objective(problem: Problem, params: Params) -> float:
    """The objective of ``params``, through ``problem.step`` on a copy (the contract: step returns
    the objective of the parameters it is called with). For :class:`WeightedSamples` that is the
    E-step kernel, 10x faster than its ``objective`` (the sample-by-sample log-likelihood kernel:
    0.65 against 8 ms on 49,466 levels)."""
    return problem.step(params.copy(), 0)


def _params_key(params: Params):
    """The bytes of a parameter set (the search's memo of EM runs on the coarse samples)."""
    return params.weights.tobytes(), params.means.tobytes(), params.cov.tobytes()


@dataclass
class _Fit:
    params: Params
    objective: float
    converged: bool = True

    @classmethod
    def of(cls, result):
        """An EMResult without its history (the search keeps many runs)."""
        return cls(result.params, result.objective, result.converged)


def classification_entropy(problem, params: Params) -> float:
    """``-sum_i n_i sum_k t_ik log t_ik`` over the pixels of a problem (ICL's entropy term)."""
    from .censored import CensoredSamples

    K, D = params.means.shape
    inv_sd, prec_chol, log_det = np.zeros((K, D)), np.zeros((K, D, D)), np.zeros(K)
    _k.precisions(params.cov, int(params.cov_type), inv_sd, prec_chol, log_det)
    with np.errstate(divide="ignore"):
        log_w = np.log(params.weights)
    ent = 0.0
    if problem.X.shape[0]:
        post = np.empty((problem.X.shape[0], K))
        _k.posteriors(
            problem.X, params.means, inv_sd, prec_chol, log_det, log_w, int(params.cov_type), post, get_num_threads()
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(post > 0, post * np.log(post), 0.0)
        ent -= float(problem.w @ t.sum(axis=1))
    if isinstance(problem, CensoredSamples):
        for c, n, upper in problem.groups:
            lp = problem.group_log_probs(params, c, upper)
            p = np.exp(lp - lp.max())
            p /= p.sum()
            with np.errstate(divide="ignore", invalid="ignore"):
                ent -= n * float(np.where(p > 0, p * np.log(p), 0.0).sum())
    return ent


def search_n_components(
    problem: Problem,
    *,
    max_components,
    criterion="bic",
    cov_type=CovType.SPHERICAL,
    max_iter=100,
    tol=1e-6,
    progress=None,
    extra_start=None,
    warn_stacklevel=5,
):
    """Fit K = 1 .. max_components to ``problem`` and keep the K with the smallest criterion.

    Parameters
    ----------
    problem : Problem
        The full data (:class:`~napari_gmm.em.WeightedSamples` or
        :class:`~napari_gmm.censored.CensoredSamples`).
    max_components : int
    criterion : {"bic", "icl", "aic"}
    cov_type : CovType
    max_iter, tol : as fit_mixture, for the final fit of the chosen K (and the screening runs).
    progress : callable, optional
        ``progress(done, total)``; an exception it raises stops the search.
    extra_start : callable, optional
        ``extra_start(X, w, K) -> Params``: one more start for every K (the user's ``init``), run on
        the coarse samples ``X, w``.
    warn_stacklevel : int
        Of the :class:`ConvergenceWarning` of the final fit (the driver's, as every fit's).

    Returns
    -------
    result : EMResult
        The final fit of the chosen K (its ``history`` starts from the search's parameters).
    selection : Selection
    """
    cov_type = CovType(cov_type)
    coarse = coarse_problem(problem)
    Xc, wc = _all_samples(coarse)
    D = Xc.shape[1]
    N = problem.total_weight
    # progress: 100 units per K tried and 100 for the final fit; the driver calls back at least every
    # PROGRESS_SECONDS inside each run, so a Cancel is seen within a run too
    total = 100 * (max_components + 2)
    last = [0]

    def report(done):  # never backwards: the runs of one K share its 100 units
        last[0] = max(last[0], min(done, total))
        progress(last[0], total)

    if progress is None:
        report = None

    def within(K, steps):
        if report is None:
            return None
        return lambda it: report(100 * (K - 1) + min(99, int(100 * it / steps)))

    sel = Selection(
        criterion=criterion,
        n_components=1,
        n_pixels=N,
        entropy=[] if criterion == "icl" else None,
        censoring=getattr(getattr(problem, "censoring", None), "to_dict", lambda: None)(),
    )
    coarse_fits, fits = {}, {}
    # EM on the coarse samples is deterministic: a start run before (the range slices of K, a split
    # of an unchanged K - 1 fit, which the second pass meets again) is not run again, and a run
    # finished before to a looser tolerance continues from where it stopped
    screened_runs, finished_runs, range_starts = {}, {}, {}

    def fit_k(K, thorough, unit):
        """K's fit on the coarse samples: the starts, SCREEN_ITER EM steps each, the best one (the
        best REFINE_FINISH, ``thorough``) to the optimum; None when every start collapsed."""
        prev = coarse_fits.get(K - 1)
        if K not in range_starts:
            range_starts[K] = range_start(Xc, wc, K, cov_type, coarse.reg)
        starts = [range_starts[K]]
        if prev is not None:
            js = range(K - 1) if thorough else _split_candidates(prev)
            starts += [split_start(prev, j) for j in js]
        if extra_start is not None and K > 1:
            starts.append(extra_start(Xc, wc, K))
        screened = []
        for i, s in enumerate(starts):
            key = _params_key(s)
            if key not in screened_runs:
                try:
                    screened_runs[key] = _Fit.of(
                        run_em(
                            coarse, s, max_iter=min(_config.SCREEN_ITER, max_iter), tol=tol, progress=within(unit, 100)
                        )
                    )
                except FitError:  # a collapsed start is only a worse start
                    screened_runs[key] = None
            if screened_runs[key] is not None:
                screened.append((i, screened_runs[key]))
        screened.sort(key=lambda ir: -ir[1].objective)
        n_finish = _config.REFINE_FINISH if thorough else 1
        if screened:  # a start far behind after screening sits in a worse basin: not worth finishing
            lead = screened[0][1].objective
            # thorough: the range slices (start 0) are finished too, wherever they rank after screening
            keep = [ir for j, ir in enumerate(screened) if j < n_finish or (thorough and ir[0] == 0)]
            screened = [r for _, r in keep if r.objective >= lead - _config.REFINE_GAP]
        if thorough and K in coarse_fits:  # the first pass's fit too: never worse than it
            screened.append(_Fit(coarse_fits[K], -np.inf))
        if not screened:
            return None
        nats = _config.REFINE_TOL_NATS if thorough else _config.SEARCH_TOL_NATS
        best, ran = None, set()
        # to the optimum (the driver switches to SQUAREM when EM creeps): see _config.SEARCH_TOL_NATS
        for r in screened:
            key = _params_key(r.params)
            done = finished_runs.get(key)
            if done is not None and (done[1] is None or done[0] <= nats):
                f = done[1]
            else:
                origin = r.params if done is None else done[1].params
                if _params_key(origin) in ran:  # the first pass's fit, continued above already
                    continue
                ran.add(_params_key(origin))
                try:
                    f = _Fit.of(
                        run_em(
                            coarse,
                            origin,
                            max_iter=_config.SEARCH_MAX_STEPS,
                            tol=nats / N,
                            progress=within(unit, _config.SEARCH_MAX_STEPS),
                        )
                    )
                except FitError:
                    f = None
                finished_runs[key] = (nats, f)
                if f is not None and f.converged:
                    finished_runs[_params_key(f.params)] = (nats, f)
            if f is not None and (best is None or f.objective > best.objective):
                best = f
        return best

    coarse_objective = {}  # K -> the coarse objective of its recorded fit

    def score_k(K, fit, unit):
        """The criterion of K's coarse fit on all samples, recorded in ``sel``."""
        if K in fits and (fit.objective - coarse_objective[K]) * N <= _config.SEARCH_TOL_NATS:
            return  # the refinement found nothing better on the coarse samples (or the same fit)
        if coarse is problem:
            polished = _Fit(fit.params, fit.objective)
        elif D > 1:  # a colour grid is cruder than a grey re-binning: a few EM steps on all samples
            r = run_em(
                problem,
                fit.params,
                max_iter=_config.COLOUR_POLISH_ITER,
                tol=_config.SEARCH_TOL_NATS / N,
                progress=within(unit, _config.SEARCH_MAX_STEPS),
            )
            polished = _Fit(r.params, r.objective)
        else:
            polished = _Fit(fit.params, _objective(problem, fit.params))
        ll = polished.objective * N
        p = n_parameters(K, D, cov_type)
        ent = classification_entropy(problem, polished.params) if criterion == "icl" else 0.0
        value = criterion_value(criterion, ll, N, p, ent)
        if K in fits:
            i = sel.candidates.index(K)
            if ll <= sel.log_likelihood[i]:  # the refinement found nothing better
                return
            sel.log_likelihood[i], sel.values[i] = ll, value
            if sel.entropy is not None:
                sel.entropy[i] = ent
        else:
            sel.candidates.append(K)
            sel.log_likelihood.append(ll)
            sel.n_parameters.append(p)
            sel.values.append(value)
            if sel.entropy is not None:
                sel.entropy.append(ent)
        coarse_fits[K] = fit.params
        coarse_objective[K] = fit.objective
        fits[K] = polished

    # first pass: K = 1, 2, ... with the cheap starts, until SEARCH_PATIENCE K in a row are worse
    for K in range(1, max_components + 1):
        fit = fit_k(K, False, K)
        if fit is None:  # every start collapsed: no larger K can be fitted either
            break
        score_k(K, fit, K)
        if report is not None:
            report(100 * K)
        if K - sel.candidates[int(np.argmin(sel.values))] >= _config.SEARCH_PATIENCE:
            break

    def contenders(fitted, margin, lowest):
        """The best K so far and those of its neighbours (K - 1, K + 1), at least ``lowest`` and
        fitted in ``fitted``, whose criterion is within ``margin`` of the best's."""
        ib = int(np.argmin(sel.values))
        Kb = sel.candidates[ib]
        near = [
            k
            for k in (Kb - 1, Kb + 1)
            if k in fitted and k >= lowest and sel.values[sel.candidates.index(k)] - sel.values[ib] < margin
        ]
        return Kb, near

    # second pass: the K that compete with the best (its neighbours) again from every split of the
    # refined K - 1 fit, the best few starts to a tighter optimum; repeated while the best K moves
    refined = set()
    for _ in range(_config.REFINE_ROUNDS):
        if not sel.candidates:
            break
        Kb, near = contenders(fits, _config.REFINE_MARGIN, 2)
        todo = [k for k in sorted(near + [Kb] * bool(near and Kb > 1)) if k not in refined]
        if not todo:
            break
        for K in todo:
            fit = fit_k(K, True, max_components + 1)
            refined.add(K)
            if fit is not None:
                score_k(K, fit, max_components + 1)
    # a close call: the best K and its neighbours within FINAL_MARGIN of its criterion each continue
    # from their best fits to FINAL_TOL_NATS, so that the comparison that decides is between optima;
    # again while the best K moves
    polished_k = set()
    for _ in range(_config.REFINE_ROUNDS):
        if not sel.candidates:
            break
        Kb, close = contenders(coarse_fits, _config.FINAL_MARGIN, 1)
        todo = [k for k in sorted(close + [Kb] * bool(close)) if k not in polished_k]
        if not todo:
            break
        for K in todo:
            polished_k.add(K)
            try:
                f = run_em(
                    coarse,
                    coarse_fits[K],
                    max_iter=_config.SEARCH_MAX_STEPS,
                    tol=_config.FINAL_TOL_NATS / N,
                    progress=within(max_components + 1, _config.SEARCH_MAX_STEPS),
                )
            except FitError:
                continue
            score_k(K, _Fit.of(f), max_components + 1)
    if not sel.candidates:
        raise InputError("no number of components could be fitted: every start collapsed")
    i = int(np.argmin(sel.values))
    Kbest = sel.candidates[i]
    start = fits[Kbest].params
    final_progress = None if report is None else (lambda d, t: report(100 * (max_components + 1) + int(100 * d / t)))
    final = fit_em(
        problem,
        lambda rng: start,
        n_init=1,
        max_iter=max_iter,
        tol=tol,
        progress=final_progress,
        warn_stacklevel=warn_stacklevel,
    )
    if final.objective * N > sel.log_likelihood[i]:
        ll = final.objective * N
        ent = classification_entropy(problem, final.params) if criterion == "icl" else 0.0
        sel.log_likelihood[i] = ll
        sel.values[i] = criterion_value(criterion, ll, N, sel.n_parameters[i], ent)
        if sel.entropy is not None:
            sel.entropy[i] = ent
    sel.n_components = Kbest
    if report is not None:
        report(total)
    return final, sel


# ============================================================================================
# K for the spatial model (Potts prior): a mean-field-like criterion


def _neighbour_sum(qk, offsets, weights):
    """sum_j w_j q(i + o_j) over the neighbour offsets (dz, dy, dx), zero outside the grid (qk: 3-D)."""
    p = np.pad(qk, 1)
    Z, Y, X = qk.shape
    out = np.zeros(qk.shape)
    for (dz, dy, dx), w in zip(offsets, weights):
        out += w * p[1 + dz : 1 + dz + Z, 1 + dy : 1 + dy + Y, 1 + dx : 1 + dx + X]
    return out


def spatial_log_likelihood(image, valid, posteriors, weights, means, variances, beta, offsets, nweights):
    """Mean-field-like log-likelihood of a grey spatial (Potts) fit and its posteriors' entropy.

    Forbes & Peyrard (2003): the Potts model's likelihood, intractable, is approximated by fixing
    each pixel's neighbours at their mean-field posteriors ``q``: pixel i then follows the mixture
    whose weights are the prior given its neighbours, ``pi_ik ~ w_k exp(beta sum_j w_ij q_jk)``, and

        log L_MF = sum_i log sum_k pi_ik N(x_i | mu_k, var_k).

    Parameters
    ----------
    image : ndarray, 2-D or 3-D, grey
    valid : bool ndarray of the image's shape or None (masked / non-finite pixels excluded)
    posteriors : ndarray (K, *image.shape)
        ``SpatialResult.posteriors`` (0 where masked).
    weights, means, variances : (K,) arrays
    beta : float
    offsets, nweights : the neighbourhood (:func:`napari_gmm.spatial.neighbourhood`)

    Returns
    -------
    (log L_MF, entropy) : float, float
        Summed over the valid pixels; entropy ``-sum_i sum_k q_ik log q_ik`` (ICL's term).

    Notes
    -----
    Not used by the library's K search yet: ``benchmarks/bench_selection.py --parts 5`` measures a
    search with it (BIC / ICL with one more parameter, beta) against the per-pixel BIC on
    spatially coherent phantoms of K = 3..6 classes 1.7 sd apart: the true K on 8/8 (BIC and ICL)
    against 2/8 at 256 x 256, but 4/8 (BIC) and 6/8 (ICL) against 2/8 at 512 x 512, where it
    over-estimates K = 3 (5 and 4), for 20-50 times the per-pixel search's time.
    """
    x = np.asarray(image, dtype=np.float64)
    x = x.reshape((1,) * (3 - x.ndim) + x.shape)
    v = np.ones(x.shape, bool) if valid is None else np.asarray(valid, bool).reshape(x.shape)
    K = len(weights)
    xs = np.where(v, x, 0.0)
    mA = mB = None
    sA = sB = None
    ent = 0.0
    for k in range(K):
        qk = np.asarray(posteriors[k], dtype=np.float64).reshape(x.shape)
        with np.errstate(divide="ignore", invalid="ignore"):
            ent -= float(np.where(v & (qk > 0), qk * np.log(qk), 0.0).sum())
        a = math.log(max(float(weights[k]), 1e-300)) + beta * _neighbour_sum(qk, offsets, nweights)
        b = a - 0.5 * (math.log(2 * math.pi * variances[k]) + (xs - means[k]) ** 2 / variances[k])
        if mA is None:
            mA, sA, mB, sB = a, np.ones(x.shape), b, np.ones(x.shape)
            continue
        for m, sv, new in ((mA, sA, a), (mB, sB, b)):  # streaming log-sum-exp, in place
            top = np.maximum(m, new)
            sv *= np.exp(m - top)
            sv += np.exp(new - top)
            m[...] = top
    ll = (mB + np.log(sB)) - (mA + np.log(sA))
    return float(ll[v].sum()), ent


# ============================================================================================
# the default start of a fixed-K grey fit (init="auto")


def polished_fit(problem, classic: Params, *, max_iter, tol, progress=None, others=()):
    """The fixed-K grey fit of ``init="auto"``: the classic start (K equal slices of the range) taken
    to its optimum on the coarse histogram (:func:`coarse_problem`; a uint8 image is its own), then
    fitted on ``problem`` with the user's ``max_iter`` and ``tol``.

    Returns the driver's EMResult, or None when there is nothing to polish (``tol=0``, which asks for
    exactly ``max_iter`` plain EM iterations from the classic start, or fewer than 4 coarse samples
    per component). The polishing is the start, as scikit-learn's k-means start is: its iterations
    (at most :data:`_config.START_MAX_STEPS`) are not in ``n_iter`` nor in the history, which begin
    where it ended, and ``max_iter``, ``tol`` and the ConvergenceWarning are the fit's.

    Why: on overlapping classes the likelihood is a long, flat ridge, and EM stopped by the per-pixel
    ``tol`` (1e-6 by default, even 1e-10) ends far from the optimum along it. On 4 classes 2.5 sd apart in
    a 2048 x 2048 uint8 image clipped at both ends (bench_selection.py part 2), EM from the classic
    start stopped 1.2 nats below the optimum at 3.1 % parameter error with tol=1e-10 (6.5 % with the
    default tol), where the optimum is 0.6 % off; EM from the true parameters reaches the same
    optimum as from the classic start once both run long enough, so the start was not the problem,
    the stopping was. Here the start runs until an EM step gains less than
    :data:`_config.START_TOL_NATS` summed over all pixels (at most :data:`_config.START_MAX_STEPS`
    iterations, SQUAREM), microseconds per iteration on at most :data:`_config.COARSE_BINS` bins.

    ``others``: more deterministic starts, callables ``start(X, w) -> Params`` on the coarse samples
    (``init="auto"`` passes the equal-count slices). Each runs :data:`_config.SCREEN_ITER` EM steps
    and is polished as the classic one only where it is then already above the classic start's
    optimum on the coarse histogram (by :data:`_config.START_OTHER_MARGIN` nats); the fit starts
    from the one whose log-likelihood on the full ``problem`` is the highest, the classic one unless
    another beats it by more than
    :data:`_config.START_OTHER_MARGIN` nats summed over all pixels (so the fit is the classic one
    wherever the classic start is as good) and also in the classification likelihood (log L minus
    the classification entropy, ICL's at a fixed K: two components on one heavy-tailed peak raise
    log L without separating anything). Why: where a few bright pixels stretch the range, the
    range slices put two starts in the bright class and one on all the dim ones, and EM keeps that
    (background at 100, cells at 130 and bright structures at 30,000: the classic start split the
    bright class), while equal-count slices start in the dense dim classes.
    """
    if tol == 0:
        return None
    coarse = coarse_problem(problem)
    K = classic.means.shape[0]
    if coarse.X.shape[0] < 4 * K:
        return None
    cb = None if progress is None else (lambda it: progress(0, max_iter))
    try:
        start = run_em(
            coarse,
            classic,
            max_iter=_config.START_MAX_STEPS,
            tol=_config.START_TOL_NATS / problem.total_weight,
            progress=cb,
        )
    except FitError:  # the classic fit fails the same way on the full data and says why there
        return None
    best = start.params
    if others:
        N = problem.total_weight
        Xc, wc = _all_samples(coarse)
        best_ll = None
        for other in others:
            # screened first: only a start already above the classic one's optimum after SCREEN_ITER
            # EM steps (another basin, clearly) is worth its polishing and the full histogram's E-steps
            tol_n = _config.START_TOL_NATS / N
            try:
                r = run_em(coarse, other(Xc, wc), max_iter=_config.SCREEN_ITER, tol=tol_n, progress=cb)
                if (r.objective - start.objective) * N <= _config.START_OTHER_MARGIN:
                    continue
                if not r.converged:
                    r = run_em(coarse, r.params, max_iter=_config.START_MAX_STEPS, tol=tol_n, progress=cb)
            except FitError:  # a collapsed start is only a worse start
                continue
            if best_ll is None:
                best_ll = _objective(problem, best) * N
            ll = _objective(problem, r.params) * N
            if ll <= best_ll + _config.START_OTHER_MARGIN:
                continue
            # and the classification likelihood (ICL's at a fixed K: log L - classification entropy):
            # a higher log L from two components on one peak (a heavy-tailed class: the cell image
            # with K = 2 gains 0.37 nats per pixel by splitting its background that way) is not a
            # better segmentation
            if ll - classification_entropy(problem, r.params) > best_ll - classification_entropy(problem, best):
                best, best_ll = r.params, ll
    return fit_em(problem, lambda rng: best, n_init=1, max_iter=max_iter, tol=tol, progress=progress)


# ============================================================================================
# interval labels


def interval_cuts(weights, means, variances) -> np.ndarray:
    """Decision points between neighbouring components of a grey mixture, ascending (K - 1,).

    Components are taken in the order of their means. Between neighbours a < b the cut is the point
    of [mu_a, mu_b] where ``w_a N(x | a) = w_b N(x | b)``, found where the log ratio (a quadratic)
    changes sign from a to b. When one of the two wins over the whole of [mu_a, mu_b] (a weak
    component inside a strong, wide one) there is no such point and the cut is the point of equal
    standardised distance, ``(sd_b mu_a + sd_a mu_b) / (sd_a + sd_b)``. Every cut lies between its
    two means, so the cuts are sorted and every component keeps a non-empty interval.
    """
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    m = np.asarray(means, dtype=np.float64).reshape(-1)
    v = np.asarray(variances, dtype=np.float64).reshape(-1)
    order = np.argsort(m, kind="stable")
    w, m, v = w[order], m[order], v[order]
    cuts = np.empty(max(len(m) - 1, 0))
    for i in range(len(m) - 1):
        cuts[i] = _cut(w[i], m[i], v[i], w[i + 1], m[i + 1], v[i + 1])
    return cuts


def _log_ratio(x, wa, ma, va, wb, mb, vb):
    with np.errstate(divide="ignore"):
        la = np.log(wa) - 0.5 * np.log(va) - 0.5 * (x - ma) ** 2 / va
        lb = np.log(wb) - 0.5 * np.log(vb) - 0.5 * (x - mb) ** 2 / vb
    return la - lb


def _cut(wa, ma, va, wb, mb, vb):
    sa, sb = math.sqrt(va), math.sqrt(vb)
    fallback = (sb * ma + sa * mb) / (sa + sb) if sa + sb > 0 else 0.5 * (ma + mb)
    if mb <= ma:
        return ma
    ga = _log_ratio(ma, wa, ma, va, wb, mb, vb)
    gb = _log_ratio(mb, wa, ma, va, wb, mb, vb)
    if not (ga > 0 and gb < 0):
        return fallback
    a, b = ma, mb
    for _ in range(200):  # bisection to the float resolution of the interval
        mid = 0.5 * (a + b)
        if mid <= a or mid >= b:
            break
        if _log_ratio(mid, wa, ma, va, wb, mb, vb) > 0:
            a = mid
        else:
            b = mid
    return 0.5 * (a + b)


def interval_labels_for(values, cuts):
    """Labels 1..K of grey ``values`` (any shape) for the sorted ``cuts``: 1 + number of cuts <= v."""
    return np.searchsorted(cuts, np.asarray(values, dtype=np.float64), side="right") + 1
