"""The one EM driver: every mixture model of the package is fitted by :func:`fit_em`.

A model is a :class:`Problem`: its data, an E-step and an M-step (:meth:`Problem.step`) and the
objective of a parameter set (:meth:`Problem.objective`). The driver alone owns what every EM fit
shares, as scikit-learn's ``BaseMixture.fit_predict`` does: the convergence rule, the per-iteration
history, ``n_init`` restarts keeping the best objective, the :class:`ConvergenceWarning`, the final
E-step (so that fit and predict agree), progress reports and cancellation.

Problems in the package:

* :class:`WeightedSamples`: a Gaussian mixture on weighted samples (a histogram, unique colours,
  grid cells). One iteration is one compiled call on small sample sets, a parallel E-step and a
  compiled M-step on large ones.
* the spatial (hidden Markov random field) and censored models plug in the same way.

Convergence
-----------
EM stops when the objective (mean log-likelihood per pixel) changed by less than ``tol`` from one
iteration to the next (scikit-learn's rule). Iterations are accelerated by SQUAREM (Varadhan &
Roland 2008) unless ``tol=0``: plain EM converges linearly, slowly where components overlap (a
noisy 16-bit image with K = 3 on two regions ran out of its 100 iterations), SQUAREM reaches the
same fixed points in a fraction of the iterations while keeping the objective monotone.
"""

from __future__ import annotations

import enum
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from numba import get_num_threads

from ._kernels import _config
from ._kernels import em as _k
from ._validate import ConvergenceWarning, FitError, InputError, check_random_state, user_stacklevel

__all__ = ["CovType", "Params", "Problem", "WeightedSamples", "EMResult", "run_em", "fit_em", "collapse_error"]


class CovType(enum.IntEnum):
    """Covariance structure of the components (scikit-learn's ``covariance_type``)."""

    SPHERICAL = 0
    DIAG = 1
    FULL = 2

    @classmethod
    def parse(cls, value) -> CovType:
        """``"spherical"``, ``"diag"`` or ``"full"`` (or a CovType) -> CovType, else InputError."""
        if isinstance(value, CovType):
            return value
        if isinstance(value, str) and value in _COV_NAMES:
            return cls(_COV_NAMES.index(value))
        raise InputError(
            f"covariance_type={value!r} is not supported: use 'spherical' (one variance per "
            "component), 'diag' (one per component and channel) or 'full'"
        )

    @property
    def label(self) -> str:
        """The scikit-learn name: ``"spherical"``, ``"diag"`` or ``"full"``."""
        return _COV_NAMES[self.value]


_COV_NAMES = ("spherical", "diag", "full")


@dataclass
class Params:
    """The parameters of one mixture, in the layout the kernels use.

    ``cov`` is always (K, D, D); for the spherical and diagonal types only its diagonal is used.
    """

    weights: np.ndarray
    means: np.ndarray
    cov: np.ndarray
    cov_type: CovType

    @property
    def n_components(self) -> int:
        """K (the rows of ``means``)."""
        return self.means.shape[0]

    def copy(self) -> Params:
        return Params(self.weights.copy(), self.means.copy(), self.cov.copy(), self.cov_type)

    @classmethod
    def from_sklearn(cls, weights, means, covariances, cov_type) -> Params:
        """From scikit-learn's shapes: covariances (K,) spherical, (K, D) diag, (K, D, D) full."""
        cov_type = CovType.parse(cov_type)
        w = np.array(weights, dtype=np.float64, copy=True).reshape(-1)
        m = np.array(means, dtype=np.float64, copy=True)
        m = m[:, None] if m.ndim == 1 else m
        return cls(w, m, to_full(covariances, cov_type, *m.shape), cov_type)

    def sklearn_covariances(self) -> np.ndarray:
        """Covariances in scikit-learn's shape for the type."""
        return from_full(self.cov, self.cov_type)


def to_full(cov, cov_type: CovType, K: int, D: int) -> np.ndarray:
    """scikit-learn covariance shapes -> (K, D, D)."""
    if cov_type == CovType.FULL:
        return np.array(cov, dtype=np.float64, copy=True).reshape(K, D, D)
    var = np.asarray(cov, dtype=np.float64)
    var = np.repeat(var.reshape(K, 1), D, axis=1) if cov_type == CovType.SPHERICAL else var.reshape(K, D)
    full = np.zeros((K, D, D))
    idx = np.arange(D)
    full[:, idx, idx] = var
    return full


def from_full(full, cov_type: CovType) -> np.ndarray:
    """(..., K, D, D) -> scikit-learn's shape for the covariance type."""
    if cov_type == CovType.FULL:
        return np.array(full, copy=True)
    diag = np.diagonal(full, axis1=-2, axis2=-1)
    return diag.copy() if cov_type == CovType.DIAG else diag[..., 0].copy()


def collapse_error(params: Params, k: int, iteration: int | None = None) -> FitError:
    """The one FitError for a component whose covariance is no longer positive definite."""
    where = "" if iteration is None else f" at EM iteration {iteration}"
    v = np.diagonal(params.cov[k])
    if not np.all(np.isfinite(params.cov[k])):
        what = "its covariance became non-finite"
    elif params.cov_type == CovType.FULL and np.all(v > 0):
        what = "its covariance is not positive definite (its pixels lie on a line or a single colour)"
    else:
        what = f"its variance is {float(v.min()):g} (all its pixels have one value)"
    return FitError(
        f"component {k + 1} collapsed{where}: {what}. Reduce n_components, increase reg_covar "
        "(None picks one quantisation step's variance), or try another init (e.g. 'kmeans++')"
    )


class Problem:
    """Base class of a model fitted by EM: data, E-step and M-step.

    Subclasses set :attr:`n_features` and :attr:`total_weight` and implement :meth:`step` and
    :meth:`objective`. They compute; the driver decides when to stop, records, restarts and reports.
    """

    n_features: int = 1
    total_weight: float = 1.0
    #: whether :func:`run_em` may accelerate this problem's iterations (SQUAREM extrapolates the
    #: parameters alone: a problem with state carried between steps, e.g. a label field, opts out)
    accelerate: bool = True

    def step(self, params: Params, iteration: int) -> float:
        """E-step at ``params``, then M-step updating ``params`` in place.

        Returns the objective of the parameters it was called with (mean log-likelihood per pixel
        for a plain mixture). Raises :func:`collapse_error` when a component collapses.
        """
        raise NotImplementedError

    def objective(self, params: Params) -> float:
        """The objective of ``params`` (the final E-step)."""
        raise NotImplementedError

    def valid(self, params: Params) -> bool:
        """Whether every covariance of ``params`` is positive definite (an accelerated step must
        stay inside the parameter space)."""
        K, D = params.means.shape
        return _k.precisions(params.cov, int(params.cov_type), np.zeros((K, D)), np.zeros((K, D, D)), np.zeros(K)) < 0


class WeightedSamples(Problem):
    """A Gaussian mixture on weighted samples X (M, D) with weights w (M,) (pixel counts).

    Small sample sets (fewer than :data:`_config.PARALLEL_WORK` samples x components) run one
    compiled call per iteration (precisions, E-step, M-step); large ones the parallel E-step.
    """

    def __init__(self, X, w, reg_covar: float):
        self.X = np.ascontiguousarray(X, dtype=np.float64)
        self.w = np.ascontiguousarray(w, dtype=np.float64)
        self.reg = float(reg_covar)
        self.n_features = self.X.shape[1]
        self.total_weight = float(self.w.sum())
        self._scratch = None

    def _buffers(self, K, D):
        if self._scratch is None or self._scratch[0].shape != (K, D):
            self._scratch = (
                np.zeros((K, D)),
                np.zeros((K, D, D)),
                np.zeros(K),
                np.zeros(K),
                np.zeros(K),
                np.zeros((K, D)),
                np.zeros((K, D, D)),
            )
        return self._scratch

    def _parallel(self, K) -> bool:
        return self.X.shape[0] * K >= _config.PARALLEL_WORK

    def step(self, params: Params, iteration: int) -> float:
        K, D = params.means.shape
        inv_sd, prec_chol, log_det, log_w, Nk, Sx, Sxx = self._buffers(K, D)
        ct = int(params.cov_type)
        if not self._parallel(K):
            ll, bad = _k.em_step(
                self.X,
                self.w,
                params.weights,
                params.means,
                params.cov,
                ct,
                self.reg,
                inv_sd,
                prec_chol,
                log_det,
                log_w,
                Nk,
                Sx,
                Sxx,
            )
            if bad >= 0:
                raise collapse_error(params, bad, iteration)
            return ll / self.total_weight
        ll = self._estep(params, iteration)
        _k.m_step(Nk, Sx, Sxx, ct, self.reg, params.weights, params.means, params.cov)
        return ll / self.total_weight

    def _estep(self, params: Params, iteration=None) -> float:
        """Precisions, log weights and one E-step with the M-step statistics into the scratch
        buffers (parallel or serial by the work); returns sum_i w_i log p(x_i)."""
        K, D = params.means.shape
        inv_sd, prec_chol, log_det, log_w, Nk, Sx, Sxx = self._buffers(K, D)
        ct = int(params.cov_type)
        bad = _k.precisions(params.cov, ct, inv_sd, prec_chol, log_det)
        if bad >= 0:
            raise collapse_error(params, bad, iteration)
        _k.log_weights(params.weights, log_w)
        args = (params.means, params.means, inv_sd, prec_chol, log_det, log_w, ct, Nk, Sx, Sxx)
        if self._parallel(K):
            return _k.estep_accumulate(self.X, self.w, *args, get_num_threads())
        return _k.estep_accumulate_serial(self.X, self.w, *args, 1)

    def objective(self, params: Params) -> float:
        """The final E-step: the block-dense E-step kernel (its statistics discarded), several
        times faster than a sample-by-sample log-likelihood on tens of thousands of levels."""
        return self._estep(params) / self.total_weight


@dataclass
class EMResult:
    """What :func:`run_em` returns: the final parameters, their objective and the history."""

    params: Params
    n_iter: int
    converged: bool
    objective: float
    history: dict = field(repr=False)
    run: int = 0  # which of fit_em's runs this is


#: SQUAREM's largest step length (Varadhan & Roland 2008, S3 scheme); a step is halved towards
#: the plain EM step while it leaves the parameter space
MAX_STEP = 64.0
#: plain EM switches to SQUAREM once the objective's gain shrinks by less than this factor per
#: iteration (slow linear convergence), over two iterations in a row
SLOW_RATE = 0.5


def _assign(dst: Params, src: Params):
    dst.weights[:], dst.means[:], dst.cov[:] = src.weights, src.means, src.cov


class _Stepper:
    """The iterations of one EM run: plain EM, switched to SQUAREM once convergence is slow.

    SQUAREM (Varadhan & Roland 2008) accelerates the EM map F. A cycle from theta0 runs
    theta1 = F(theta0), theta2 = F(theta1), extrapolates theta' = theta0 - 2 a r + a**2 v
    (r = theta1 - theta0, v = theta2 - theta1 - r, a = -|r| / |v|, at most MAX_STEP, halved towards
    -1, i.e. theta2, while theta' leaves the parameter space) and continues from theta' when its
    objective is at least theta1's, else from theta2. Every F counts as one iteration and the
    history holds only evaluated parameter sets, so it stays monotone; the fixed points are EM's.

    ``plain_gain`` is the gain of the last plain EM step F(theta) - theta, the quantity the
    convergence rule compares with ``tol`` (a gain across an extrapolation says nothing about it).
    """

    def __init__(self, problem: Problem, accelerate: bool):
        self.problem = problem
        self.accelerate = accelerate
        self.squarem = False
        self.phase = 0
        self.gains = []
        self.plain_gain = np.inf
        self.revised = None  # parameters that replace the last recorded ones (a rejected jump)
        self.pending = None  # theta', not yet evaluated
        self.ll_prev = None

    def step(self, params: Params, it: int) -> float:
        pb = self.problem
        if not self.squarem:
            ll = pb.step(params, it)
            if self.ll_prev is not None:
                self.plain_gain = ll - self.ll_prev
                self.gains.append(self.plain_gain)
                g = self.gains
                if (
                    self.accelerate
                    and len(g) >= 3
                    and g[-1] > 0
                    and g[-2] > 0
                    and g[-3] > 0
                    and g[-1] > SLOW_RATE * g[-2]
                    and g[-2] > SLOW_RATE * g[-3]
                ):
                    self.squarem = True
            self.ll_prev = ll
            return ll
        if self.phase == 0:
            self.theta0 = params.copy()
            ll0 = pb.step(params, it)
            self.ll0, self.phase = ll0, 1
            return ll0
        if self.phase == 1:
            self.theta1 = params.copy()
            self.ll1 = pb.step(params, it)
            self.plain_gain = self.ll1 - self.ll0
            self.theta2 = params.copy()
            self.phase = 2
            self.pending = self._extrapolate()
            if self.pending is not None:
                _assign(params, self.pending)
            return self.ll1
        # phase 2: params hold theta' (or theta2)
        self.phase = 0
        if self.pending is None:
            return self.step(params, it)
        self.pending = None
        ll = pb.step(params, it)
        if ll >= self.ll1:
            return ll
        _assign(params, self.theta2)  # the jump lowered the objective: plain EM from theta2
        self.revised = self.theta2
        return self.step(params, it)

    def settle(self, params: Params):
        """At the end of a run: never leave an unevaluated jump as the result."""
        if self.pending is not None:
            self.pending = None
            if self.problem.objective(params) < self.ll1:
                _assign(params, self.theta2)
                return True
        return False

    def _extrapolate(self):
        t0, t1, t2 = self.theta0, self.theta1, self.theta2
        K, D = t0.means.shape
        out = Params(np.empty(K), np.empty((K, D)), np.empty((K, D, D)), t0.cov_type)
        ok = _k.squarem_extrapolate(
            t0.weights,
            t0.means,
            t0.cov,
            t1.weights,
            t1.means,
            t1.cov,
            t2.weights,
            t2.means,
            t2.cov,
            int(t0.cov_type),
            MAX_STEP,
            out.weights,
            out.means,
            out.cov,
            np.empty((K, D)),
            np.empty((K, D, D)),
            np.empty(K),
        )
        return out if ok else None


def run_em(
    problem: Problem,
    start: Params,
    *,
    max_iter: int,
    tol: float,
    progress: Callable[[int], None] | None = None,
    accelerate: bool = True,
) -> EMResult:
    """EM from ``start`` (not modified) until convergence or ``max_iter`` iterations.

    Converged: the last plain EM step changed the objective by less than ``tol``. With
    ``accelerate`` (and ``tol > 0``) a run whose convergence turns out slow continues with SQUAREM
    (:class:`_Stepper`): the same fixed points in a fraction of the iterations. ``tol=0`` always
    runs plain EM, exactly ``max_iter`` reference iterations (e.g. against scikit-learn).

    ``progress(n_iter)``, if given, is called at least every :data:`_config.PROGRESS_EVERY`
    iterations and every :data:`_config.PROGRESS_SECONDS`, and at the end; an exception it raises
    stops the fit there.
    """
    params = start.copy()
    K, D = params.means.shape
    hw = np.zeros((max_iter + 1, K))
    hm = np.zeros((max_iter + 1, K, D))
    hc = np.zeros((max_iter + 1, K, D, D))
    hll = np.full(max_iter + 1, np.nan)
    hw[0], hm[0], hc[0] = params.weights, params.means, params.cov
    stepper = _Stepper(problem, accelerate and problem.accelerate and tol > 0)
    n_iter, converged = 0, False
    last_report, since = time.perf_counter(), 0
    while n_iter < max_iter and not converged:
        hll[n_iter] = stepper.step(params, n_iter)
        if stepper.revised is not None:
            r, stepper.revised = stepper.revised, None
            hw[n_iter], hm[n_iter], hc[n_iter] = r.weights, r.means, r.cov
        n_iter += 1
        hw[n_iter], hm[n_iter], hc[n_iter] = params.weights, params.means, params.cov
        converged = tol > 0 and abs(stepper.plain_gain) < tol
        if progress is not None:
            since += 1
            now = time.perf_counter()
            if since >= _config.PROGRESS_EVERY or now - last_report >= _config.PROGRESS_SECONDS:
                progress(n_iter)
                last_report, since = now, 0
    if stepper.settle(params):
        hw[n_iter], hm[n_iter], hc[n_iter] = params.weights, params.means, params.cov
    hll[n_iter] = problem.objective(params)
    if progress is not None:
        progress(n_iter)
    n = n_iter + 1
    history = {
        "weights": hw[:n],
        "means": hm[:n],
        "covariances": from_full(hc[:n], params.cov_type),
        "log_likelihood": hll[:n],
    }
    if not np.isfinite(hll[n_iter]):
        raise FitError(
            f"the log-likelihood became {hll[n_iter]} after {n_iter} EM iterations: the data's range is "
            "too wide for float64 arithmetic. Rescale the image (e.g. divide by its maximum) first"
        )
    return EMResult(params, n_iter, bool(converged), float(hll[n_iter]), history)


def fit_em(
    problem: Problem,
    starts: Callable[[np.random.Generator], Params],
    *,
    n_init: int = 1,
    random_state=None,
    max_iter: int = 100,
    tol: float = 1e-6,
    progress: Callable[[int, int], None] | None = None,
    warn_stacklevel: int | None = None,
) -> EMResult:
    """The best of ``n_init`` EM runs, each from ``starts(rng)``.

    ``progress(done, total)`` counts EM iterations over all runs (total = n_init * max_iter; a
    converged run counts as its max_iter). Warns :class:`ConvergenceWarning` when the best run
    reached ``max_iter`` with ``tol > 0``, pointing at the user's line (``warn_stacklevel`` is
    accepted for compatibility and not needed: the level is found by walking out of the package).
    """
    rng = random_state if isinstance(random_state, np.random.Generator) else np.random.default_rng(random_state)
    total = n_init * max_iter
    best = None
    for r in range(n_init):
        start = starts(rng)
        cb = None if progress is None else (lambda it, r=r: progress(r * max_iter + it, total))
        res = run_em(problem, start, max_iter=max_iter, tol=tol, progress=cb)
        res.run = r
        if best is None or res.objective > best.objective:
            best = res
        if progress is not None:
            progress((r + 1) * max_iter, total)
    if not best.converged and tol > 0:
        warnings.warn(
            f"EM did not converge in max_iter={max_iter} iterations (the mean log-likelihood still "
            f"changed by more than tol={tol:g}): increase max_iter or tol, or check the fit",
            ConvergenceWarning,
            stacklevel=user_stacklevel(),
        )
    return best


def check_em_args(max_iter, tol, n_init, *, random_state=None):
    """InputError for EM control arguments of the wrong type or range (``random_state``: None, a
    seed >= 0 or a numpy Generator)."""
    check_random_state(random_state)
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
        raise InputError(f"max_iter must be a whole number >= 1, got {max_iter!r}")
    if (
        isinstance(tol, bool)
        or not isinstance(tol, (int, float, np.floating, np.integer))
        or not (math.isfinite(tol) and tol >= 0)
    ):
        raise InputError(f"tol must be a finite number >= 0 (0 runs exactly max_iter iterations), got {tol!r}")
    if isinstance(n_init, bool) or not isinstance(n_init, (int, np.integer)) or n_init < 1:
        raise InputError(f"n_init must be a whole number >= 1, got {n_init!r}")
