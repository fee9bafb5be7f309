"""The :class:`MixtureModel` (and :class:`SplitModels`) that every fit returns, the starts, and the
per-pixel Gaussian mixture fitted on a compressed image (:func:`fit_hist`); the public entry points
are in :mod:`napari_gmm.segmentation`.

The pipeline is *compress -> weighted EM -> lookup*: the image becomes weighted samples (its exact
histogram or unique colours, :mod:`napari_gmm.compress`), EM runs on those samples in a parallel Numba
kernel, and a per-sample label table is mapped back onto the pixels. EM therefore costs the same for a
256 x 256 and a 4096 x 4096 uint8 image, and gives exactly the result EM on all pixels would give.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from numba import get_num_threads as _nt

from . import censored as _cz
from . import em as _drv
from . import pipeline as _pl
from . import selection as _sel
from ._kernels import _config
from ._kernels import em as _em
from ._kernels import kmeans as _km
from ._validate import (
    InputError,
    check_finite_pixels,
    check_fit_range,
    check_image,
    check_k,
    check_progress,
    is_dask,
    user_stacklevel,
)

__all__ = ["MixtureModel", "SplitModels", "fit_hist"]

INITS = ("auto", "ranges", "quantiles", "kmeans++", "random")
CovType = _drv.CovType


# ============================================================================================
# the model


def _as_2d_means(means):
    m = np.asarray(means, dtype=np.float64)
    return m[:, None] if m.ndim == 1 else m


#: ``[predict_spatial]``: the spatial model's labels / posteriors, set by :mod:`napari_gmm.spatial`
#: when it is imported (it builds on this module, which therefore cannot import it; importing
#: ``napari_gmm`` imports both)
SPATIAL_PREDICT: list = [None]


def is_spatial(model):
    """Whether ``model`` was fitted with the spatial prior (beta > 0 or a bias field)."""
    p = getattr(model, "params", None) or {}
    return "spacing" in p and (float(p.get("beta") or 0.0) > 0 or int(p.get("bias_field") or 0) > 0)


class MixtureModel:
    """A fitted (or given) Gaussian mixture over pixel intensities or colours.

    Parameters
    ----------
    weights : array_like, shape (K,)
        Mixing weights, summing to 1.
    means : array_like, shape (K, D) or (K,)
        Component means (D = 1 for grey images, the number of channels for colour).
    covariances : array_like
        In scikit-learn's shapes: (K,) for ``"spherical"``, (K, D) for ``"diag"``, (K, D, D) for
        ``"full"``.
    covariance_type : {"spherical", "diag", "full"}
    n_iter, converged, history, lower_bound, params :
        Set by :func:`fit_mixture`; see Attributes.

    Attributes
    ----------
    n_components, n_features : int
        K and D.
    n_iter : int
        EM iterations run (M-steps).
    converged : bool
        Whether the mean log-likelihood changed by less than ``tol`` before ``max_iter``.
    lower_bound : float
        Mean log-likelihood per pixel of the final parameters.
    history : dict of ndarray
        ``"weights"`` (n_iter + 1, K), ``"means"`` (n_iter + 1, K, D), ``"covariances"``
        (n_iter + 1, ...), ``"log_likelihood"`` (n_iter + 1,): entry i holds the parameters after i
        iterations (0 = the start) and their mean log-likelihood per pixel.
    params : dict
        The fit's parameters (JSON-able), for provenance.
    selection : Selection or None
        With ``n_components="auto"``: the chosen K and the criterion of every K tried
        (:class:`napari_gmm.selection.Selection`).
    censoring : Censoring or None
        The censored (clipped) extreme grey levels of the fit, if any
        (:class:`napari_gmm.censored.Censoring`); pixels at or beyond them are labelled by the
        component most probable given the tail.

    Notes
    -----
    Components are ordered by mean (by mean brightness, the average over channels, for colour), so
    component k carries label k + 1.
    """

    def __init__(
        self,
        weights,
        means,
        covariances,
        covariance_type="spherical",
        *,
        n_iter=0,
        converged=False,
        history=None,
        lower_bound=float("nan"),
        params=None,
    ):
        cov_type = CovType.parse(covariance_type)
        w = _float_array(weights, "weights").reshape(-1)
        m = _as_2d_means(_float_array(means, "means"))
        c = _float_array(covariances, "covariances")
        if m.ndim != 2 or m.shape[0] < 1 or m.shape[1] < 1:
            raise InputError(f"means must have shape (K, D) or (K,) with K >= 1, got shape {m.shape}")
        K, D = m.shape
        want = {0: (K,), 1: (K, D), 2: (K, D, D)}[cov_type]
        if c.shape != want and cov_type == 0 and c.shape == (K, 1):
            c = c[:, 0]
        if w.shape != (K,) or c.shape != want:
            raise InputError(
                f"inconsistent shapes: weights {w.shape}, means {m.shape}, covariances {c.shape}; "
                f"covariance_type={covariance_type!r} needs weights ({K},), means ({K}, {D}), "
                f"covariances {want}"
            )
        if np.any(w < 0) or not np.isclose(w.sum(), 1.0, atol=1e-6):
            raise InputError(f"weights must be non-negative and sum to 1 (they sum to {w.sum():g})")
        _check_model_params(m, c, cov_type)
        self.weights = w
        self.means = m
        self.covariances = c
        self.covariance_type = cov_type.label
        self.n_iter = int(n_iter)
        self.converged = bool(converged)
        self.lower_bound = float(lower_bound)
        self.params = dict(params or {})
        if history is None:
            history = {
                "weights": w[None].copy(),
                "means": m[None].copy(),
                "covariances": c[None].copy(),
                "log_likelihood": np.array([self.lower_bound]),
            }
        self.history = _check_history(history, w.shape, m.shape, c.shape)

    # ---- basic properties ------------------------------------------------------------------
    @property
    def selection(self):
        from .selection import Selection

        return Selection.from_dict(self.params.get("selection"))

    @property
    def censoring(self):
        from .censored import Censoring

        return Censoring.from_dict(self.params.get("censoring")) if self.n_features == 1 else None

    @property
    def n_components(self) -> int:
        return self.means.shape[0]

    @property
    def n_features(self) -> int:
        return self.means.shape[1]

    @property
    def variances(self) -> np.ndarray:
        """Per-component, per-feature variances (K, D), whatever the covariance type."""
        c = self.covariances
        if self.covariance_type == "spherical":
            return np.repeat(c[:, None], self.n_features, axis=1)
        if self.covariance_type == "diag":
            return c.copy()
        return np.diagonal(c, axis1=1, axis2=2).copy()

    def _kernel_args(self, iteration=None):
        if iteration is None:
            w, m, c = self.weights, self.means, self.covariances
        else:
            w = self.history["weights"][iteration]
            m = self.history["means"][iteration]
            c = self.history["covariances"][iteration]
        ct = CovType.parse(self.covariance_type)
        K, D = m.shape
        full = _drv.to_full(c, ct, K, D)
        inv_sd, prec_chol, log_det, log_w = np.zeros((K, D)), np.zeros((K, D, D)), np.zeros(K), np.zeros(K)
        bad = _em.precisions(full, int(ct), inv_sd, prec_chol, log_det)
        if bad >= 0:
            raise _drv.collapse_error(_drv.Params(np.asarray(w, float), m, full, ct), bad)
        _em.log_weights(np.ascontiguousarray(w, dtype=np.float64), log_w)
        return (np.ascontiguousarray(m, dtype=np.float64), inv_sd, prec_chol, log_det, log_w, int(ct))

    # ---- on samples -----------------------------------------------------------------------
    def _sample_labels(self, X):
        """0-based most probable component of every row of X (M, D)."""
        X = np.ascontiguousarray(X, dtype=np.float64)
        out = np.empty(X.shape[0], np.int64)
        if X.shape[0]:
            f = _em.map_labels if X.shape[0] * self.n_components >= _config.PARALLEL_WORK else _em.map_labels_serial
            f(X, *self._kernel_args(), out, _nt())
            self._censored_rows(X, lut=out)
        return out

    def _censored_rows(self, X, lut=None, proba=None):
        """Grey values at or beyond a censored level take the tail's answer (see napari_gmm.censored)."""
        c = self.censoring
        if c is not None and c.active:
            from .censored import censored_grid_fix

            censored_grid_fix(X[:, 0], self.weights, self.means[:, 0], self.variances[:, 0], c, lut=lut, proba=proba)

    def _sample_posteriors(self, X):
        X = np.ascontiguousarray(X, dtype=np.float64)
        out = np.empty((X.shape[0], self.n_components))
        if X.shape[0]:
            _em.posteriors(X, *self._kernel_args(), out, _nt())
            self._censored_rows(X, proba=out)
        return out

    def interval_cuts(self):
        """Grey levels cutting the intensity axis into K contiguous intervals, one per component
        (``labels="intervals"``): the decision points between neighbouring components (K - 1,),
        ascending. See :func:`napari_gmm.selection.interval_cuts`."""
        if self.n_features != 1:
            raise InputError(
                "interval labels are for grey models: a colour model has no intensity order to cut; use labels='map'"
            )
        from .selection import interval_cuts

        return interval_cuts(self.weights, self.means[:, 0], self.variances[:, 0])

    def _fns_for(self, labels="map") -> _pl.SampleFns:
        """The look-up functions for ``labels="map"`` (most probable component) or ``"intervals"``."""
        if labels == "map":
            return _pl.SampleFns(self.n_components, self._sample_labels, self._sample_posteriors)
        if labels != "intervals":
            raise InputError(
                f"labels={labels!r} is not an option: use 'map' (each pixel's most probable "
                "component) or 'intervals' (contiguous intensity ranges, grey images only)"
            )
        cuts = self.interval_cuts()
        return _pl.SampleFns(
            self.n_components,
            lambda X: np.searchsorted(cuts, np.asarray(X)[:, 0], side="right").astype(np.int64),
            self._sample_posteriors,
        )

    def _check_features(self, channel_axis, image):
        D = 1 if channel_axis is None else image.shape[channel_axis]
        if D != self.n_features:
            raise InputError(
                f"the model has {self.n_features} feature(s) per pixel but the image gives {D} "
                f"(channel_axis={channel_axis}): use the channel_axis the model was fitted with "
                f"({self.params.get('channel_axis')!r})"
            )

    def _fns(self) -> _pl.SampleFns:
        # a model fitted with labels="intervals" labels (predict, quantize) as it was used
        return self._fns_for("intervals" if self.params.get("labels") == "intervals" else "map")

    def _prepare(self, image, channel_axis, mask, bins):
        image = check_image(image, channel_axis=channel_axis)
        self._check_features(channel_axis, image)
        return image, _pl.lookup_histogram(image, channel_axis=channel_axis, mask=mask, bins=bins)

    # ---- on images ------------------------------------------------------------------------
    def _spatial(self, spatial):
        """Whether predict / predict_proba apply the model's spatial prior (None: when it has one)."""
        has = is_spatial(self)
        if spatial is None:
            return has
        if spatial and not has:
            raise InputError(
                "spatial=True: this model has no spatial prior (it was fitted with beta=0 and no bias "
                "field); fit it with beta='auto' or a number > 0, or leave spatial=None"
            )
        return bool(spatial)

    def predict(self, image, *, channel_axis=None, mask=None, bins=None, progress=None, spatial=None):
        """Most probable component of every pixel, as labels 1..K (0 = masked, NaN or inf).

        Parameters
        ----------
        image : array_like or dask array
            Grey image (any shape) or multichannel image with ``channel_axis``.
        channel_axis : int or None
        mask : array_like of bool, optional
            Same shape as the pixels; False pixels get label 0.
        bins : int, optional
            Float images: number of bins of the look-up (default as :func:`napari_gmm.histogram`).
        progress : callable, optional
            ``progress(done, total)`` between slices of the look-up; an exception it raises (e.g.
            :class:`napari_gmm.Cancelled`) stops it.
        spatial : bool or None
            For a model fitted with the spatial prior (``beta`` > 0 or ``bias_field``): None or True
            applies it (the label field of the model's mean-field E-step with its parameters, beta
            and bias field fixed: :func:`napari_gmm.spatial.predict_spatial`); False gives the
            per-pixel labels of its components. Per-pixel models ignore None/False.

        Returns
        -------
        labels : ndarray (dask array for dask input, computed lazily)
            Shape of the image without the channel axis, uint8 (uint16 for K > 255). A model fitted
            by ``segment(..., labels="intervals")`` (``params["labels"]``) gives interval labels.
        """
        image = check_image(image, channel_axis=channel_axis)
        self._check_features(channel_axis, image)
        if self._spatial(spatial):
            return SPATIAL_PREDICT[0](self, image, channel_axis=channel_axis, mask=mask, progress=progress)
        return self._labels(image, channel_axis, mask, bins, progress)

    def _labels(self, image, channel_axis, mask, bins, progress):
        """Labels of an image :meth:`predict` or :meth:`quantize` has validated."""
        hist = _pl.lookup_histogram(image, channel_axis=channel_axis, mask=mask, bins=bins)
        return _pl.label_image(self._fns(), image, hist, channel_axis=channel_axis, mask=mask, progress=progress)

    def predict_proba(self, image, *, channel_axis=None, mask=None, bins=None, progress=None, spatial=None):
        """Posterior probability maps, one per component (``spatial``: see :meth:`predict`; a
        spatial model's maps are its mean-field posteriors).

        Returns
        -------
        proba : ndarray of float32, shape (K, *pixels) (dask array for dask input)
            ``proba[k]`` is the probability that each pixel belongs to component k (label k + 1);
            0 for masked, NaN or inf pixels. Memory: K float32 copies of the pixels.
        """
        if self._spatial(spatial):
            image = check_image(image, channel_axis=channel_axis)
            self._check_features(channel_axis, image)
            return SPATIAL_PREDICT[0](self, image, channel_axis=channel_axis, mask=mask, progress=progress, proba=True)
        image, hist = self._prepare(image, channel_axis, mask, bins)
        return _pl.proba_image(self._fns(), image, hist, channel_axis=channel_axis, mask=mask, progress=progress)

    def quantize(self, image, labels=None, *, channel_axis=None, mask=None, bins=None, progress=None):
        """The image with every pixel replaced by the mean of its most probable component.

        Parameters
        ----------
        image : array_like or dask array
        labels : array_like, optional
            The image's labels from :meth:`predict` (or :func:`napari_gmm.segment`), to save their
            computation; pixels labelled 0 (masked, NaN, inf) keep their value.
        channel_axis, mask, bins, progress
            As :meth:`predict`.

        Returns
        -------
        ndarray (dask array for dask input)
            Same shape and dtype as ``image`` (means rounded and clipped into integer dtypes).
            Memory: the output only (painted in place, in slices).
        """
        image = check_image(image, channel_axis=channel_axis)
        self._check_features(channel_axis, image)
        phases = _pl.Progress(progress, [1, 1])
        if labels is None:
            labels = self._labels(image, channel_axis, mask, bins, phases.phase(0))
        else:
            spatial = tuple(
                n for i, n in enumerate(image.shape) if channel_axis is None or i != channel_axis % image.ndim
            )
            if tuple(np.shape(labels)) != spatial:
                raise InputError(
                    f"labels have shape {tuple(np.shape(labels))} but the image's pixels have "
                    f"shape {spatial}: pass the labels of this image, or labels=None"
                )
            if not is_dask(labels):
                labels = np.asarray(labels)
        return _pl.paint_image(image, labels, self.means, channel_axis=channel_axis, progress=phases.phase(1))

    def score(self, image, *, channel_axis=None, mask=None, bins=None):
        """Mean log-likelihood per pixel of the image under the model (finite, unmasked pixels).

        For integer data this is exact; for float data it is evaluated on the bin means.
        """
        _, hist = self._prepare(image, channel_axis, mask, bins)
        return self._score_hist(hist)

    def _score_hist(self, hist):
        if hist.counts.sum() == 0:
            raise InputError("no pixels to score: the image is empty, masked out or all NaN")
        X = np.ascontiguousarray(hist.values)
        c = self.censoring
        if c is not None and c.active:  # pixels at or beyond a censored level count by their tail mass
            return _cz.censored_score(X, hist.counts, self.weights, self.means[:, 0], self.variances[:, 0], c)
        return float(_em.log_likelihood(X, hist.counts, *self._kernel_args(), _nt()) / hist.counts.sum())

    # ---- for plots --------------------------------------------------------------------------
    def pdf(self, x, iteration=None):
        """Weighted component densities ``w_k N(x | mu_k, var_k)`` of a grey model.

        Parameters
        ----------
        x : array_like, shape (n,)
            Intensities.
        iteration : int, optional
            Use the parameters of ``history`` entry ``iteration`` (0 = the start) instead of the
            final ones.

        Returns
        -------
        ndarray, shape (n, K)
            Sum over axis 1 for the mixture density.
        """
        if self.n_features != 1:
            raise InputError("pdf(x) is for grey models; for colour use predict_proba or the marginals")
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        if iteration is None:
            w, m, c = self.weights, self.means[:, 0], self.covariances
        else:
            iteration = self._check_iteration(iteration)
            w = self.history["weights"][iteration]
            m = self.history["means"][iteration][:, 0]
            c = self.history["covariances"][iteration]
        var = np.asarray(c, dtype=np.float64).reshape(self.n_components, -1)[:, 0]
        with np.errstate(over="ignore", invalid="ignore"):
            z = (x[:, None] - m[None, :]) ** 2 / var[None, :]
            # inf x gives density 0 (not NaN); NaN x stays NaN
            return w[None, :] * np.exp(-0.5 * z) / np.sqrt(2 * np.pi * var)[None, :]

    def _check_iteration(self, iteration):
        """``iteration`` as an index into ``history`` (negative counts from the end), or InputError."""
        n = len(self.history["weights"])
        if isinstance(iteration, bool) or not isinstance(iteration, (int, np.integer)) or not -n <= iteration < n:
            raise InputError(
                f"iteration={iteration!r} is not in the history: it holds iterations 0 (the start) to "
                f"{n - 1} (the end); use one of those, or iteration=None for the final parameters"
            )
        return int(iteration)

    def thresholds(self, lo, hi, n=4097):
        """Grey levels in [lo, hi] where the most probable component changes (sorted).

        Found on a grid of ``n`` points and refined by bisection to 1e-9 of the range (in NumPy: a
        few hundred evaluations, no kernel launch).
        """
        if self.n_features != 1:
            raise InputError("thresholds() is for grey models")
        var = self.variances[:, 0]
        mu = self.means[:, 0]
        with np.errstate(divide="ignore"):
            c = np.log(self.weights) - 0.5 * np.log(2 * np.pi * var)
        lo, hi = self._threshold_range(lo, hi, c, mu, var)
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
            raise InputError(f"n must be a whole number of grid points >= 2, got {n!r}")
        if lo == hi:
            return np.array([])

        def label(x):
            x = np.atleast_1d(np.asarray(x, dtype=np.float64))
            return np.argmax(c[None, :] - 0.5 * (x[:, None] - mu[None, :]) ** 2 / var[None, :], axis=1)

        x = np.linspace(float(lo), float(hi), int(n))
        lab = label(x)
        out = []
        for i in np.flatnonzero(np.diff(lab)):
            a, b = x[i], x[i + 1]
            la = lab[i]
            for _ in range(80):
                mid = 0.5 * (a + b)
                if label(mid)[0] == la:
                    a = mid
                else:
                    b = mid
                if b - a <= 1e-9 * max(1.0, abs(hi - lo)):
                    break
            out.append(0.5 * (a + b))
        return np.array(out)

    @staticmethod
    def _threshold_range(lo, hi, c, mu, var):
        """Finite [lo, hi] for :meth:`thresholds`: an infinite bound is replaced by one beyond every
        point where two components' weighted densities cross (the roots of their quadratic) and
        every mean, so that no change of the most probable component is lost."""
        try:
            lo, hi = float(lo), float(hi)
        except (TypeError, ValueError):
            raise InputError(f"lo and hi must be numbers, got lo={lo!r}, hi={hi!r}") from None
        if np.isnan(lo) or np.isnan(hi) or lo > hi:
            raise InputError(f"thresholds(lo, hi) needs lo <= hi (not NaN), got lo={lo!r}, hi={hi!r}")
        if np.isfinite(lo) and np.isfinite(hi):
            return lo, hi
        pts = list(mu)
        K = len(mu)
        for i in range(K):
            for j in range(i + 1, K):
                # c_i - (x - mu_i)^2 / (2 v_i) = c_j - (x - mu_j)^2 / (2 v_j)
                a = 0.5 / var[j] - 0.5 / var[i]
                b = mu[i] / var[i] - mu[j] / var[j]
                d = c[i] - c[j] - 0.5 * mu[i] ** 2 / var[i] + 0.5 * mu[j] ** 2 / var[j]
                roots = np.roots([a, b, d]) if np.isfinite([a, b, d]).all() and (a or b) else []
                pts.extend(float(r.real) for r in np.atleast_1d(roots) if abs(r.imag) < 1e-12)
        pts = np.asarray([p for p in pts if np.isfinite(p)])
        margin = 10 * float(np.sqrt(var.max())) + 1.0
        if not np.isfinite(lo):
            lo = max(min(float(pts.min()) - margin, hi), -np.finfo(np.float64).max / 4)
        if not np.isfinite(hi):
            hi = min(max(float(pts.max()) + margin, lo), np.finfo(np.float64).max / 4)
        return lo, hi

    # ---- (de)serialisation -------------------------------------------------------------------
    def to_dict(self):
        """Plain JSON-able dict (lists, floats, str, bool) with everything, history included."""
        return {
            "weights": self.weights.tolist(),
            "means": self.means.tolist(),
            "covariances": self.covariances.tolist(),
            "covariance_type": self.covariance_type,
            "n_iter": self.n_iter,
            "converged": self.converged,
            "lower_bound": _json_float(self.lower_bound),
            "history": {k: np.asarray(v).tolist() for k, v in self.history.items()},
            "params": _jsonable(self.params),
        }

    @classmethod
    def from_dict(cls, d):
        """Inverse of :meth:`to_dict`.

        Raises InputError (naming the key) for a dict without ``weights``, ``means`` or
        ``covariances``, values of the wrong shape, non-finite means, non-positive variances or a
        history that does not match the parameters."""
        from collections.abc import Mapping

        if not isinstance(d, Mapping):
            raise InputError(f"from_dict needs a dict as written by MixtureModel.to_dict(), got {type(d).__name__}")
        missing = [k for k in ("weights", "means", "covariances") if d.get(k) is None]
        if missing:
            raise InputError(
                f"the model dict has no {', '.join(repr(k) for k in missing)}: a MixtureModel needs 'weights', "
                "'means' and 'covariances' (as written by MixtureModel.to_dict())"
            )
        hist = d.get("history")
        if hist is not None:
            if not isinstance(hist, Mapping):
                raise InputError(
                    f"the model dict's 'history' must be a dict of arrays or None, got {type(hist).__name__}"
                )
            hist = {k: _float_array(v, f"history[{k!r}]") for k, v in hist.items()}
            if "means" in hist:
                K = _float_array(d["weights"], "weights").size
                hm = hist["means"]
                if hm.ndim < 2 or hm.shape[1] != K or K == 0 or hm.size % (hm.shape[0] * K):
                    raise InputError(
                        f"history['means'] has shape {hm.shape}, which does not fit {K} components: give "
                        "(n_iter + 1, K, D) (or drop 'history')"
                    )
                hist["means"] = hm.reshape(hm.shape[0], K, -1)
        lb = d.get("lower_bound")
        try:
            lb = float("nan") if lb is None else float(lb)
            n_iter = int(d.get("n_iter") or 0)
        except (TypeError, ValueError):
            raise InputError(
                f"the model dict's 'lower_bound' and 'n_iter' must be numbers, got "
                f"{d.get('lower_bound')!r} and {d.get('n_iter')!r}"
            ) from None
        params = d.get("params")
        if params is not None and not isinstance(params, Mapping):
            raise InputError(f"the model dict's 'params' must be a dict or None, got {type(params).__name__}")
        return cls(
            d["weights"],
            d["means"],
            d["covariances"],
            d.get("covariance_type") or "spherical",
            n_iter=n_iter,
            converged=bool(d.get("converged", False)),
            history=hist,
            lower_bound=lb,
            params=params,
        )

    def summary(self):
        """Short human-readable description of the fit."""
        lines = [
            f"{self.n_components} components, {self.covariance_type} covariance, "
            f"{self.n_iter} iterations ({'converged' if self.converged else 'NOT converged'}), "
            f"mean log-likelihood {self.lower_bound:.6g}"
        ]
        sd = np.sqrt(self.variances)
        for k in range(self.n_components):
            mu = ", ".join(f"{v:.4g}" for v in self.means[k])
            s = ", ".join(f"{v:.3g}" for v in sd[k])
            lines.append(f"  label {k + 1}: weight {self.weights[k]:.3f}  mean {mu}  sd {s}")
        return "\n".join(lines)

    def __repr__(self):
        return (
            f"MixtureModel(n_components={self.n_components}, n_features={self.n_features}, "
            f"covariance_type={self.covariance_type!r}, n_iter={self.n_iter}, "
            f"converged={self.converged}, lower_bound={self.lower_bound:.6g})"
        )


def _float_array(v, name):
    """``v`` as a float64 array, or InputError naming it (None, strings, ragged lists)."""
    try:
        a = np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be an array of numbers, got {v!r}"[:300]) from None
    return a


def _check_model_params(m, c, cov_type):
    """InputError for non-finite means or covariances, non-positive variances, or a full covariance
    that is not positive definite."""
    if not np.isfinite(m).all():
        raise InputError("the model's means must be finite numbers; they contain NaN or inf")
    if not np.isfinite(c).all():
        raise InputError("the model's covariances must be finite numbers; they contain NaN or inf")
    K, D = m.shape
    var = np.diagonal(c, axis1=1, axis2=2) if cov_type == CovType.FULL else c
    if np.any(var <= 0):
        raise InputError(
            f"the model's variances must be > 0; got {np.asarray(var).ravel()[:8].tolist()} "
            "(a component with zero or negative variance is not a Gaussian)"
        )
    if cov_type == CovType.FULL:
        for k in range(K):
            if not np.allclose(c[k], c[k].T, rtol=1e-10, atol=0) or np.linalg.eigvalsh(c[k]).min() <= 0:
                raise InputError(f"the covariance of component {k + 1} is not symmetric positive definite")


def _check_history(history, w_shape, m_shape, c_shape):
    """The history dict with float arrays of matching shapes, or InputError saying which."""
    from collections.abc import Mapping

    if not isinstance(history, Mapping):
        raise InputError(f"history must be a dict of arrays or None, got {type(history).__name__}")
    want = {"weights": w_shape, "means": m_shape, "covariances": c_shape, "log_likelihood": ()}
    out = {}
    n = None
    for key, shape in want.items():
        if key not in history:
            raise InputError(
                f"history has no {key!r}: give 'weights', 'means', 'covariances' and "
                "'log_likelihood' (one entry per iteration), or history=None"
            )
        a = _float_array(history[key], f"history[{key!r}]")
        if n is not None and a.ndim > 0 and a.shape[0] != n:
            raise InputError(
                f"history[{key!r}] has {a.shape[0]} entries but history['weights'] has {n}: every history "
                "array needs one entry per iteration (or pass history=None)"
            )
        if a.ndim == 0 or a.shape[1:] != tuple(shape):
            raise InputError(
                f"history[{key!r}] has shape {a.shape}; with these parameters it must be "
                f"({'n' if n is None else n}, {', '.join(map(str, shape))})".replace(", )", ")")
                + ": one entry per iteration (or pass history=None)"
            )
        n = a.shape[0]
        out[key] = a
    if n == 0:
        raise InputError("history has no entries: it needs at least the start (or pass history=None)")
    out.update({k: v for k, v in history.items() if k not in out})
    return out


def _json_float(v):
    v = float(v)
    return v if math.isfinite(v) else None


def _jsonable(o):
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, float):
        return _json_float(o)
    return o


# ============================================================================================
# starts


def _brightness(X):
    return X.mean(axis=1)


def _slices_from_assignment(X, w, assign, K, cov_type, reg, fallback_means) -> _drv.Params:
    """Initial parameters from a hard assignment of samples to K groups (empty groups first get
    half of a populated group, see :func:`_fill_empty_groups`)."""
    D = X.shape[1]
    assign = _fill_empty_groups(X, w, assign, K)
    Nk, means, cov = np.empty(K), np.empty((K, D)), np.empty((K, D, D))
    _km.group_stats(
        np.ascontiguousarray(X, dtype=np.float64),
        np.ascontiguousarray(w, dtype=np.float64),
        np.ascontiguousarray(assign, dtype=np.int64),
        Nk,
        means,
        cov,
    )
    filled = Nk > 0
    means[~filled] = np.asarray(fallback_means)[~filled]
    spread = cov[filled].mean(axis=0) if filled.any() else np.zeros((D, D))
    cov[~filled] = spread
    idx = np.arange(D)
    cov[:, idx, idx] += reg
    # an empty start group gets a small but living weight instead of 0 (the seed's 0/0)
    if (~filled).any():
        Nk[~filled] = max(0.1 * Nk[filled].min(), 1e-3 * Nk.sum() / K) if filled.any() else 1.0
    weights = Nk / Nk.sum()
    if cov_type != CovType.FULL:
        var = np.diagonal(cov, axis1=1, axis2=2).copy()
        if cov_type == CovType.SPHERICAL:
            var[:] = var.mean(axis=1, keepdims=True)
        cov = np.zeros((K, D, D))
        cov[:, idx, idx] = var
    return _drv.Params(weights, means, cov, cov_type)


def _fill_empty_groups(X, w, assign, K):
    """The assignment with every empty group given the upper half of the group with the largest
    spread (weighted sum of squared deviations) among those with at least two distinct samples,
    split at its weighted median along its first principal axis, until no group is empty or none
    can be split.

    Equal slices of the range leave groups empty where the histogram has gaps (K = 3 on a bimodal
    image, or K equal to the number of distinct values): such a component starts with no data and
    ends empty, its label unused. Splitting the widest group instead starts every component on data
    whenever the data allow K non-empty groups. An assignment without empty groups is returned
    unchanged (the same array), so the classic starts stay identical there.
    """
    assign = np.asarray(assign)
    Nk = np.bincount(assign, weights=w, minlength=K)
    empty = np.flatnonzero(Nk <= 0)
    if empty.size == 0:
        return assign
    assign = np.array(assign, dtype=np.int64, copy=True)
    for e in empty:
        best, best_cost = -1, 0.0
        for g in range(K):
            sel = assign == g
            if np.count_nonzero(sel) < 2:
                continue
            Xg, wg = X[sel], w[sel]
            mu = (wg[:, None] * Xg).sum(axis=0) / wg.sum()
            cost = float((wg[:, None] * (Xg - mu) ** 2).sum())
            if cost > best_cost:
                best, best_cost = g, cost
        if best < 0:
            break  # no group has two distinct samples: the fallback means are used
        idx = np.flatnonzero(assign == best)
        p = _principal_projection(X[idx], w[idx])
        order = np.argsort(p, kind="stable")
        ps, cw = p[order], np.cumsum(w[idx][order])
        cuts = np.flatnonzero(ps[1:] > ps[:-1]) + 1  # boundaries between distinct projections
        if cuts.size == 0:
            break
        j = cuts[np.argmin(np.abs(cw[cuts - 1] - 0.5 * cw[-1]))]
        assign[idx[order[j:]]] = e
    return assign


def _init_ranges(X, w, K, integer, cov_type, reg):
    b = _brightness(X)
    lo, hi = b.min(), b.max()
    if integer and X.shape[1] == 1:
        assign = np.floor((b - lo) * K / (hi - lo + 1)).astype(np.int64)
        edges = lo + np.arange(K + 1) * (hi - lo + 1) / K
        centres = 0.5 * (edges[:-1] + edges[1:]) - 0.5
    else:
        assign = np.floor((b - lo) * K / max(hi - lo, 1e-300)).astype(np.int64)
        edges = lo + np.arange(K + 1) * (hi - lo) / K
        centres = 0.5 * (edges[:-1] + edges[1:])
    assign = np.clip(assign, 0, K - 1)
    fb = np.repeat(centres[:, None], X.shape[1], axis=1)
    return _slices_from_assignment(X, w, assign, K, cov_type, reg, fb)


def _principal_projection(X, w):
    """Samples projected on their (weighted) first principal axis, oriented so that it increases
    with brightness; the values themselves for one feature."""
    if X.shape[1] == 1:
        return X[:, 0]
    mean = (w[:, None] * X).sum(axis=0) / w.sum()
    Xc = X - mean
    cov = (w[:, None] * Xc).T @ Xc / w.sum()
    axis = np.linalg.eigh(cov)[1][:, -1]
    if axis.sum() < 0:
        axis = -axis
    return Xc @ axis


def _init_quantiles(X, w, K, cov_type, reg):
    b = _principal_projection(X, w)
    order = np.argsort(b, kind="stable")
    cw = np.cumsum(w[order])
    mid = (cw - 0.5 * w[order]) / cw[-1]
    assign = np.empty(X.shape[0], np.int64)
    assign[order] = np.minimum((mid * K).astype(np.int64), K - 1)
    qs = np.interp((np.arange(K) + 0.5) / K, mid, b[order])
    fb = np.repeat(qs[:, None], X.shape[1], axis=1)
    return _slices_from_assignment(X, w, assign, K, cov_type, reg, fb)


def _nearest(X, C):
    assign = np.empty(X.shape[0], np.int64)
    dist = np.empty(X.shape[0])
    f = _km.nearest_center if X.shape[0] * C.shape[0] >= _config.PARALLEL_WORK else _km.nearest_center_serial
    f(np.ascontiguousarray(X, dtype=np.float64), np.ascontiguousarray(C, dtype=np.float64), assign, dist)
    return assign, dist


def _kmeanspp_centres(X, w, K, rng):
    """Weighted greedy k-means++ seeding (Arthur & Vassilvitskii 2007, as scikit-learn): each new
    centre is the best of 2 + log K candidates drawn with probability w * D**2."""
    M = X.shape[0]
    n_trials = 2 + int(np.log(K))
    first = rng.choice(M, p=w / w.sum())
    u = rng.random((K - 1, n_trials))
    idx = np.empty(K, np.int64)
    X = np.ascontiguousarray(X, dtype=np.float64)
    _km.kmeanspp(X, np.ascontiguousarray(w, dtype=np.float64), int(first), u, idx)
    return X[idx]


def _init_from_centres(X, w, C, cov_type, reg):
    assign, _ = _nearest(X, C)
    return _slices_from_assignment(X, w, assign, C.shape[0], cov_type, reg, C)


def _resolve_init(init, n_features):
    """The starts ``init`` stands for: ``"auto"`` is the seed's ranges for grey data (the reference
    method) and :data:`AUTO_COLOUR_INITS` for multichannel data; any other start itself."""
    if isinstance(init, str) and init == "auto":
        return ("ranges",) if n_features == 1 else AUTO_COLOUR_INITS
    return (init,)


#: the deterministic starts ``init="auto"`` runs for multichannel data, keeping the higher final
#: log-likelihood: quantiles along the principal axis has the best mean rank over the colour images
#: of benchmarks/bench_inits.py (many components), ranges is the better start for a few classes of
#: unequal sizes (equal-count slices can put two starts in one large class)
AUTO_COLOUR_INITS = ("quantiles", "ranges")


def _check_n_components(n_components):
    """True for ``"auto"``; InputError for any other string (integers are checked by check_k)."""
    if isinstance(n_components, str):
        if n_components == "auto":
            return True
        raise InputError(
            f"n_components={n_components!r} is not an option: give a whole number >= 1, or "
            "'auto' to choose it by an information criterion (see max_components, criterion)"
        )
    return False


def _check_init(init, K, D):
    if isinstance(init, MixtureModel):
        if init.n_components != K or (D is not None and init.n_features != D):
            raise InputError(
                f"init model has {init.n_components} components and {init.n_features} features; "
                f"this fit asks for n_components={K} on {D} feature(s): fit with those, or pass "
                "another model"
            )
        return
    if not (isinstance(init, str) and init in INITS):
        raise InputError(
            f"init={init!r} is not a start: use 'auto' (the default), 'ranges' (K equal slices of the "
            "intensity range), 'quantiles', 'kmeans++', 'random' or a fitted MixtureModel (warm start)"
        )


def _start(init, X, w, K, integer, cov_type, reg, rng) -> _drv.Params:
    if isinstance(init, MixtureModel):
        m = init
        if CovType.parse(m.covariance_type) != cov_type:
            v = m.variances
            cov = {CovType.SPHERICAL: v.mean(1), CovType.DIAG: v, CovType.FULL: np.stack([np.diag(r) for r in v])}
            return _drv.Params.from_sklearn(m.weights, m.means, cov[cov_type], cov_type)
        return _drv.Params.from_sklearn(m.weights, m.means, m.covariances, cov_type)
    if init == "ranges":
        return _init_ranges(X, w, K, integer, cov_type, reg)
    if init == "quantiles":
        return _init_quantiles(X, w, K, cov_type, reg)
    if init == "kmeans++":
        # k-means++ seeds, then their nearest-centre groups (as scikit-learn's init_params="k-means++")
        return _init_from_centres(X, w, _kmeanspp_centres(X, w, K, rng), cov_type, reg)
    idx = rng.choice(X.shape[0], size=K, replace=False, p=w / w.sum())  # "random"
    return _init_from_centres(X, w, X[np.sort(idx)], cov_type, reg)


# ============================================================================================
# EM on a compressed image


def _sorted_by_brightness(params: _drv.Params, history):
    order = np.argsort(params.means.mean(axis=1), kind="stable")
    h = {k: (v[:, order] if k != "log_likelihood" else v) for k, v in history.items()}
    return _drv.Params(params.weights[order], params.means[order], params.cov[order], params.cov_type), h


def _default_reg(hist):
    """One quantisation step's variance, h**2 / 12 (Sheppard), in data units. Grey data: the step
    between the values the image actually takes (``hist.value_step``: 256 for an 8-bit image
    saved as multiples of 256), so that no component fits a single occupied level."""
    h = np.asarray(hist.bin_width, dtype=np.float64)
    if hist.n_features == 1 and hist.kind != "pixels" and np.all(h > 0):
        h = np.array([hist.value_step])
    if hist.kind == "pixels" or not np.all(h > 0):
        span = float(np.max(hist.high - hist.low))
        h = np.array([span / _config.DEFAULT_FLOAT_BINS if span > 0 else 1.0])
    return float(np.max(h) ** 2 / 12.0)


def _check_fit_args(n_components, covariance_type, init, max_iter, tol, n_init, reg_covar, random_state, progress=None):
    """Every argument of a fit checked before any work (type and range; n_components against the
    data comes later), so that a wrong one fails at once with its name and the accepted values."""
    auto = _check_n_components(n_components)
    if not auto:
        check_k(n_components, 65535)
    CovType.parse(covariance_type)
    _drv.check_em_args(max_iter, tol, n_init, random_state=random_state)
    _check_reg(reg_covar)
    if not (auto and isinstance(init, MixtureModel)):  # that one has its own message in fit_hist
        _check_init(init, n_components, None)
    check_progress(progress)


def _check_fit_kw(n_components, fit_kw, progress=None):
    """:func:`_check_fit_args` on a dict of fit keyword arguments (absent ones at their defaults)."""
    g = fit_kw.get
    _check_fit_args(
        n_components,
        g("covariance_type", "spherical"),
        g("init", "auto"),
        g("max_iter", 100),
        g("tol", 1e-6),
        g("n_init", 1),
        g("reg_covar"),
        g("random_state"),
        progress,
    )


def _check_reg(reg_covar):
    if reg_covar is None:
        return
    if (
        isinstance(reg_covar, bool)
        or not isinstance(reg_covar, (int, float, np.floating, np.integer))
        or not (math.isfinite(reg_covar) and reg_covar >= 0)
    ):
        raise InputError(
            f"reg_covar must be None (automatic: one quantisation step's variance) or a finite number >= 0 "
            f"well below the data's variance, got {reg_covar!r}"
        )


def _data_variance(X, w):
    """The largest per-feature variance of the weighted samples."""
    mean = (w[:, None] * X).sum(axis=0) / w.sum()
    return float(((w[:, None] * (X - mean) ** 2).sum(axis=0) / w.sum()).max())


def _explain_empty(hist):
    if hist.n_pixels == 0:
        check_finite_pixels(0, hist.n_nan, hist.n_inf)


def _compact_order(X):
    """An order of multichannel samples along a Z-order (Morton) curve, or None (one feature: grey
    values come sorted already; or too few samples to matter).

    The E-step prunes components per block of consecutive samples by the block's bounding box;
    unique colours come sorted by their packed key (the last channel slowest), so a block spans a
    long run of one channel. In Z-order a block is a compact box. The fit does not depend on the
    order of its samples (only the rounding of its sums does).
    """
    M, D = X.shape
    if D == 1 or M < 4 * _em.BLOCK:
        return None
    bits = min(10, 62 // D)
    lo = X.min(axis=0)
    span = X.max(axis=0) - lo
    scale = np.where(span > 0, 2.0**bits / np.where(span > 0, span, 1.0), 0.0)
    codes = np.empty(M, np.int64)
    _em.morton_codes(np.ascontiguousarray(X, dtype=np.float64), lo, scale, bits, codes)
    return np.argsort(codes)


def fit_hist(
    hist,
    n_components=2,
    *,
    channel_axis=None,
    covariance_type="spherical",
    init="auto",
    n_init=1,
    max_iter=100,
    tol=1e-6,
    reg_covar=None,
    random_state=None,
    extra_params=None,
    callback=None,
    max_components=8,
    criterion="bic",
    censoring="auto",
):
    """Fit a mixture to an already compressed :class:`~napari_gmm.compress.Histogram`.

    ``callback(done, total)`` reports EM iterations over all starts (total = runs * max_iter; done
    jumps to total at convergence); an exception it raises stops the fit. ``n_components="auto"``
    searches K = 1 .. max_components (:mod:`napari_gmm.selection`); ``censoring`` as
    :func:`fit_mixture`.
    """
    cov_type = CovType.parse(covariance_type)
    _check_fit_args(n_components, covariance_type, init, max_iter, tol, n_init, reg_covar, random_state)
    check_finite_pixels(hist.n_pixels, hist.n_nan, hist.n_inf)
    auto = _check_n_components(n_components)
    if hist.n_distinct == 1:
        v = ", ".join(f"{x:g}" for x in hist.values[0])
        raise InputError(
            f"the image is constant (every counted pixel is {v}): there is nothing to separate. Check "
            "the layer/mask, or use n_components=1 only if you want its statistics"
            if auto or n_components > 1
            else f"the image is constant (every counted pixel is {v}): a Gaussian needs some spread"
        )
    check_fit_range(hist.values, hist.low, hist.high, hist.kind)
    if auto:
        max_components = _sel.check_selection_args(max_components, criterion, hist.n_distinct)
        if isinstance(init, MixtureModel):
            raise InputError(
                "n_components='auto' searches K itself: init cannot be a fitted model (its K "
                "is fixed). Use a start name (init='auto', 'ranges', ...) or an integer K"
            )
    else:
        check_k(n_components, hist.n_distinct, hist)
    _check_init(init, None if auto else n_components, hist.n_features)
    start_names = _resolve_init(init, hist.n_features)
    start_name = start_names[0]
    reg = _default_reg(hist) if reg_covar is None else float(reg_covar)
    cens = _cz.detect_censoring(hist, censoring)
    X, w = hist.values, hist.counts
    spread = _data_variance(X, w)
    if reg_covar is not None and reg > spread:
        raise InputError(
            f"reg_covar={reg_covar:g} is larger than the variance of the data ({spread:.4g}): every component "
            "would be wider than the whole image's spread and the fit would be meaningless. Use "
            f"reg_covar=None (one quantisation step's variance, here {_default_reg(hist):.3g}) or a value "
            "well below the data's variance"
        )
    order = _compact_order(X)
    if order is not None:
        X, w = X[order], w[order]
    deterministic = isinstance(start_name, MixtureModel) or start_name in ("ranges", "quantiles")
    runs = len(start_names) if deterministic else n_init
    run_names = iter(start_names * runs)
    integer = hist.kind.startswith("integer")
    problem = _drv.WeightedSamples(X, w, reg) if cens is None else _cz.CensoredSamples(X, w, cens, reg)
    selection = None
    if auto:
        rng = np.random.default_rng(random_state)
        extra = (
            None
            if start_name == "ranges"
            else (lambda Xc, wc, K: _start(start_name, Xc, wc, K, integer, cov_type, reg, rng))
        )
        res, selection = _sel.search_n_components(
            problem,
            max_components=max_components,
            criterion=criterion,
            cov_type=cov_type,
            max_iter=max_iter,
            tol=tol,
            progress=callback,
            extra_start=extra,
        )
        n_components = selection.n_components
    else:
        res = None
        if isinstance(init, str) and init == "auto" and hist.n_features == 1:
            # grey init="auto": the classic start taken to its optimum on the coarse histogram
            # first (selection.polished_fit; None: tol=0 or too few levels, the classic fit below)
            classic = _init_ranges(X, w, n_components, integer, cov_type, reg)
            # and the equal-count slices, kept where they end clearly higher (narrow dim classes
            # beside a few bright pixels: the range slices put two starts in the bright class)
            others = (lambda Xc, wc: _init_quantiles(Xc, wc, n_components, cov_type, reg),) if n_components > 1 else ()
            res = _sel.polished_fit(problem, classic, max_iter=max_iter, tol=tol, progress=callback, others=others)
    if not auto and res is None:
        res = _drv.fit_em(
            problem,
            lambda rng: _start(next(run_names), X, w, n_components, integer, cov_type, reg, rng),
            n_init=runs,
            random_state=random_state,
            max_iter=max_iter,
            tol=tol,
            progress=callback,
        )
    params, history = _sorted_by_brightness(res.params, res.history)
    empty = np.flatnonzero(params.weights * hist.counts.sum() < 0.5)
    if empty.size:
        warnings.warn(
            f"component(s) {', '.join(str(k + 1) for k in empty)} ended empty (less than half a pixel "
            "of weight): their labels will not appear. Reduce n_components or try another init",
            UserWarning,
            stacklevel=user_stacklevel(),
        )
    params_used = {
        "n_components": int(n_components),
        "channel_axis": channel_axis,
        "covariance_type": cov_type.label,
        "init": "model" if isinstance(init, MixtureModel) else init,
        "init_used": "model"
        if isinstance(start_name, MixtureModel)
        else (start_name if auto else start_names[res.run % len(start_names)]),
        "n_init": int(n_init),
        "max_iter": int(max_iter),
        "tol": float(tol),
        "reg_covar": reg,
        "random_state": random_state if isinstance(random_state, (int, type(None))) else "generator",
        "compression": hist.kind,
        "n_samples": int(hist.n_distinct),
        "n_pixels": int(hist.n_pixels),
        "dtype": str(hist.dtype),
        "bin_width": hist.bin_width.tolist(),
        "n_nan": int(hist.n_nan),
        "n_inf": int(hist.n_inf),
    }
    if auto:
        params_used.update(
            n_components="auto",
            n_components_chosen=int(n_components),
            max_components=int(max_components),
            criterion=criterion,
            selection=selection.to_dict(),
        )
    params_used["censoring_option"] = censoring
    if cens is not None:
        params_used["censoring"] = cens.to_dict()
    params_used.update(extra_params or {})
    return MixtureModel(
        params.weights,
        params.means,
        params.sklearn_covariances(),
        cov_type.label,
        n_iter=res.n_iter,
        converged=res.converged,
        history=history,
        lower_bound=res.objective,
        params=params_used,
    )


# ============================================================================================
# one model per index of an axis


class SplitModels(list):
    """The models of a fit with ``split_axis``: a list (model i for index i of the axis) that
    applies each model to its own index.

    Attributes
    ----------
    split_axis : int
        The axis of the image the models were fitted along (counted with the channel axis).
    channel_axis : int or None
    """

    def __init__(self, models, split_axis, channel_axis=None):
        super().__init__(models)
        self.split_axis = int(split_axis)
        self.channel_axis = channel_axis

    def _axes(self, image, channel_axis):
        image = check_image(image, channel_axis=channel_axis)
        axes = _pl.split_axes(image, channel_axis, self.split_axis)
        if axes.length != len(self):
            raise InputError(
                f"the image has {axes.length} entries along axis {axes.axis} but there are "
                f"{len(self)} models: apply them to an image of the same length along that axis"
            )
        return image, axes

    def _apply(self, one, image, channel_axis, mask, progress, stack_axis=None):
        image, axes = self._axes(image, channel_axis)
        if mask is not None and not is_dask(mask):
            mask = np.asarray(mask)
        return _pl.split(
            image,
            mask,
            axes,
            lambda sub, m, i: (one(self[i], sub, axes, m, i), None),
            _pl.Progress(progress, [1] * axes.length),
            stack_axis=stack_axis(axes) if stack_axis else None,
        )[0]

    def predict(self, image, *, channel_axis=None, mask=None, bins=None, progress=None, spatial=None):
        """Labels of every index of the split axis by its own model (see :meth:`MixtureModel.predict`)."""
        return self._apply(
            lambda mdl, sub, ax, m, i: mdl.predict(
                sub, channel_axis=ax.channel_slice, mask=m, bins=bins, spatial=spatial
            ),
            image,
            channel_axis,
            mask,
            progress,
        )

    def predict_proba(self, image, *, channel_axis=None, mask=None, bins=None, progress=None, spatial=None):
        """Posterior maps (K, *pixels), each index of the split axis by its own model."""
        return self._apply(
            lambda mdl, sub, ax, m, i: mdl.predict_proba(
                sub, channel_axis=ax.channel_slice, mask=m, bins=bins, spatial=spatial
            ),
            image,
            channel_axis,
            mask,
            progress,
            stack_axis=lambda ax: ax.pixel_axis + 1,
        )

    def quantize(self, image, labels=None, *, channel_axis=None, mask=None, bins=None, progress=None):
        """The quantised image, each index of the split axis painted with its own model's means."""

        def one(mdl, sub, ax, m, i):
            lab = None if labels is None else labels[(slice(None),) * ax.pixel_axis + (i,)]
            return mdl.quantize(sub, lab, channel_axis=ax.channel_slice, mask=m, bins=bins)

        return self._apply(one, image, channel_axis, mask, progress, stack_axis=lambda ax: ax.axis)

    def to_dict(self):
        """JSON-able: the split axis, the channel axis and every model's :meth:`MixtureModel.to_dict`."""
        return {"split_axis": self.split_axis, "channel_axis": self.channel_axis, "models": [m.to_dict() for m in self]}

    @classmethod
    def from_dict(cls, d):
        """Inverse of :meth:`to_dict`."""
        return cls([MixtureModel.from_dict(m) for m in d["models"]], d["split_axis"], d.get("channel_axis"))


def fit_image(image, n_components=2, *, channel_axis=None, mask=None, bins=None, **fit_kw):
    """The per-pixel mixture of an image: validate, compress (NumPy or dask), :func:`fit_hist`
    (what :func:`napari_gmm.fit_mixture` runs without a spatial prior)."""
    _check_fit_kw(n_components, fit_kw)
    image = check_image(image, channel_axis=channel_axis)
    hist = _pl.compress_image(image, channel_axis=channel_axis, mask=mask, bins=bins)
    return fit_hist(hist, n_components, channel_axis=channel_axis, extra_params={"bins": bins}, **fit_kw)


def _units(fit_kw):
    """Progress units of one segmentation: the compression and the look-up a tenth each of the
    fit's EM iterations over all starts."""
    init = fit_kw["init"]
    deterministic = isinstance(init, MixtureModel) or init in ("auto", "ranges", "quantiles")
    runs = 1 if deterministic else fit_kw["n_init"]
    tenth = max(1, runs * fit_kw["max_iter"] // 10)
    return [tenth, runs * fit_kw["max_iter"], tenth]


def _check_labels(labels, channel_axis):
    if labels not in ("map", "intervals"):
        raise InputError(
            f"labels={labels!r} is not an option: use 'map' (each pixel's most probable "
            "component) or 'intervals' (contiguous intensity ranges, grey images only)"
        )
    if labels == "intervals" and channel_axis is not None:
        raise InputError(
            "labels='intervals' cuts the intensity axis, so it is for grey images: a colour "
            "image has no intensity order to cut. Use labels='map' (or channel_axis=None on "
            "one channel)"
        )


def _segment_one(image, n_components, channel_axis, mask, bins, fit_kw, phases: _pl.Progress):
    hist = _pl.compress_image(image, channel_axis=channel_axis, mask=mask, bins=bins, progress=phases.phase(0))
    phases.done(0)
    kw = {k: v for k, v in fit_kw.items() if k != "labels"}
    model = fit_hist(
        hist, n_components, channel_axis=channel_axis, extra_params={"bins": bins}, callback=phases.phase(1), **kw
    )
    how = fit_kw.get("labels", "map")
    if how != "map":
        model.params["labels"] = how
    labels = _pl.label_image(
        model._fns_for(how), image, hist, channel_axis=channel_axis, mask=mask, progress=phases.phase(2)
    )
    phases.done(2)
    return labels, model
