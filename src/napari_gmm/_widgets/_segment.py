"""Dock widget "Gaussian mixture segmentation" (grey and colour images).

A thin shell around :func:`napari_gmm.segment`: it reads the chosen layer and options, validates what
the core cannot know about (layer types, masks from other layers), runs the fit in a napari
``thread_worker`` so the viewer stays responsive, and writes the results back as layers:

- ``"<image> GMM labels"`` (Labels, 1..K ordered by component mean, 0 = masked / not finite), on top
  of the layer list, updated in place on re-runs (same layer object, data replaced) unless the user
  edited it: then it is kept and the new labels go into a new layer, with a warning;
- optionally ``"<image> GMM quantised"`` (every pixel replaced by its component mean, input dtype,
  ``model.quantize``) and ``"<image> GMM posteriors"`` (float32, ``(K, *spatial)``,
  ``model.predict_proba``), both below the labels.

The options of the last run are remembered across sessions (:mod:`._settings`; "Reset to defaults"
forgets them); "Save model..." / "Load model..." / "Apply model" write and read JSON model files
(:mod:`._model_file`) and label an image with a loaded model without fitting; "more channels" takes
other same-shape image layers as channels. Every phase (fit, posterior maps, quantised image) names
itself on the progress bar and can be cancelled.

Each output layer carries ``metadata["napari_gmm"] = {"model": ..., "params": ..., "source": ...,
"output": "labels" | "quantised" | "posteriors"}`` as plain JSON-able data (``model`` is
``MixtureModel.to_dict()``, or a list of them when each index of an axis is fitted separately). Errors
never touch the viewer: they are shown as napari notifications. Warnings of the core (e.g.
``ConvergenceWarning``) are shown as warning notifications. Cancel discards the result; the computation
itself stops at the core's next progress report (every 5 EM iterations).

Why a magicgui ``Container`` rather than a hand-made ``QWidget``: napari keeps the layer pickers of a
docked magicgui widget in sync with the layer list (``reset_choices``), the values are plain Python
attributes (easy to script and test: ``w.n_components.value = 3; w.run()``), and the widget looks like
napari's own. The few Qt-only touches (busy progress bar, fixed-width summary font, the cross-thread
progress signal) use ``widget.native``.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FloatSpinBox,
    Label,
    LineEdit,
    ProgressBar,
    PushButton,
    Select,
    SpinBox,
)
from napari.layers import Image, Labels
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import Qt, QTimer
from qtpy.QtGui import QFontDatabase

import napari_gmm as ng

from . import _model_file, _settings
from ._common import (
    COMPUTE_LOCK,
    ProgressRelay,
    RunCancelMixin,
    bound_combo_widths,
    bound_text_width,
    fit_scroll_width,
    put_output_layer,
    running_message,
    scroll_area,
    start_warm_up,
)

if TYPE_CHECKING:
    import napari

__all__ = ["COMPUTE_LOCK", "SegmentWidget", "segment_widget"]

_log = logging.getLogger(__name__)

INITS = ("auto", "ranges", "quantiles", "kmeans++", "random")
#: the options remembered across sessions (section "segment" of the settings file, see _settings)
SETTINGS = (
    "n_components",
    "auto_k",
    "criterion",
    "censoring",
    "labels",
    "init",
    "covariance_type",
    "n_init",
    "max_iter",
    "tol",
    "reg_covar",
    "bins",
    "random_state",
    "out_quantised",
    "out_posteriors",
    "show_advanced",
    "smoothing",
    "beta",
    "bias_field",
)
SETTINGS_SECTION = "segment"
COVARIANCE_TYPES = ("spherical", "diag", "full")
LABELS_SUFFIX = " GMM labels"
QUANTISED_SUFFIX = " GMM quantised"
POSTERIORS_SUFFIX = " GMM posteriors"
BIAS_SUFFIX = " GMM bias field"
#: the "spatial smoothing" choices: off = per-pixel model (beta=0), auto = beta estimated from the
#: image (the default offered: issue 11), value = the beta spin box
SMOOTHING = ("off", "auto", "value")
#: the "criterion" choices of 'choose K automatically' (napari_gmm.segment(criterion=...))
CRITERIA = (
    ("BIC (the default)", "bic"),
    ("ICL: well separated classes", "icl"),
    ("AIC: more classes", "aic"),
)
#: the "clipped pixels" choices -> napari_gmm.segment(censoring=...)
CENSORING = {"auto": "auto", "on": True, "off": False}
#: the "labels" choices -> napari_gmm.segment(labels=...)
LABELS = (("most probable", "map"), ("intensity intervals", "intervals"))
#: the core models 2..8 channels (colour / multichannel)
MAX_CHANNELS = 8
#: posterior maps larger than this (bytes) are refused with a message instead of exhausting memory
MAX_POSTERIOR_BYTES = 2 * 1024**3


class _InputError(ValueError):
    """A problem with the widget's inputs, shown to the user as is."""


@dataclass
class _Job:
    layer: Any  # the source napari Image layer
    data: Any  # array handed to the core (RGBA: a view without alpha); never modified
    colour: bool
    channel_axis: int | None  # axis of ``data`` holding the channels (non-negative) or None
    split_axis: int | None  # axis of ``data`` fitted index by index, or None
    mask: Any  # bool array of the spatial shape, or None
    kwargs: dict  # keywords for ng.segment
    params: dict  # JSON-able record of the parameters (metadata / summary)
    want_quantised: bool
    want_posteriors: bool
    spatial: bool = False  # the hidden-Markov-random-field model (beta != 0 or a bias field)
    apply: Any = None  # a MixtureModel (or list, one per index of split_axis) to apply instead of fitting
    cancel: threading.Event = field(default_factory=threading.Event)


@dataclass
class _Result:
    labels: Any
    model: Any  # MixtureModel or list of them (split_axis)
    quantised: Any = None
    posteriors: Any = None
    bias: Any = None  # float32 multiplicative bias field (pixel shape), when estimated
    seconds: float = 0.0
    error: BaseException | None = None
    error_tb: str = ""


# --------------------------------------------------------------------------------------------------
# pure helpers (no GUI), run in the worker thread
# --------------------------------------------------------------------------------------------------
def _models(model) -> list:
    return list(model) if isinstance(model, (list, tuple)) else [model]


def _means_by_label(model) -> np.ndarray:
    """Component means (K, D) in label order: the core orders components by mean (colour: mean
    brightness), so row k-1 is label k."""
    means = np.asarray(model.means, dtype=np.float64)
    return means[:, None] if means.ndim == 1 else means


def _quantise(job: _Job, labels, model, progress=None):
    """The image with every pixel replaced by its component's mean: the core's ``model.quantize``
    (MixtureModel, or the SplitModels of a per-index fit; same shape and dtype as the data given to
    the core, label-0 pixels keep their value, memory = the output, lazy for dask input)."""
    return model.quantize(
        job.data, labels, channel_axis=job.channel_axis, mask=job.mask, bins=job.kwargs.get("bins"), progress=progress
    )


def _posteriors(job: _Job, model, progress=None):
    """(K, *pixels) float32 posterior maps: the core's ``model.predict_proba``."""
    return np.asarray(
        model.predict_proba(
            job.data, channel_axis=job.channel_axis, mask=job.mask, bins=job.kwargs.get("bins"), progress=progress
        ),
        dtype=np.float32,
    )


def _predict(job: _Job, model, progress=None):
    """Labels of ``job.data`` under a given (loaded) model: the core's ``model.predict``."""
    return model.predict(
        job.data, channel_axis=job.channel_axis, mask=job.mask, bins=job.kwargs.get("bins"), progress=progress
    )


def _fit_spatial(job: _Job, progress=None):
    """(labels, model, posteriors or None, bias or None) of the spatial model
    (:func:`napari_gmm.spatial.fit_spatial`), whole image or index by index of ``job.split_axis``.

    The widget calls ``fit_spatial`` rather than ``segment`` because only it returns the bias field on
    the pixel grid and the spatial model's own (mean-field) posteriors; K "auto" is chosen first by
    the per-pixel search on the whole image, as ``segment(..., beta=...)`` does.
    """
    from napari_gmm import pipeline as _pl
    from napari_gmm import spatial as _sp

    kw = dict(job.kwargs)
    mask = kw.pop("mask", None)
    k = kw.pop("n_components")
    max_components = kw.pop("max_components", 8)
    criterion = kw.pop("criterion", "bic")
    censoring = kw.pop("censoring", "auto")  # the spatial model has no censoring: it guides the K search
    kw.pop("labels", None)  # always "map" here (intervals are refused with smoothing)
    channel_axis = kw.pop("channel_axis")
    if isinstance(k, str):  # "auto": the K of the per-pixel search (bounded by max_components)
        k = ng.fit_mixture(
            job.data,
            "auto",
            channel_axis=channel_axis,
            mask=mask,
            bins=kw.get("bins"),
            max_components=max_components,
            criterion=criterion,
            censoring=censoring,
            covariance_type=kw["covariance_type"],
            init=kw["init"],
            reg_covar=kw["reg_covar"],
        ).n_components
    kw["tol"] = _sp.default_tol(kw["tol"])
    posts = bool(job.want_posteriors)
    if job.split_axis is None:
        r = _sp.fit_spatial(
            job.data, k, channel_axis=channel_axis, mask=mask, progress=progress, return_posteriors=posts, **kw
        )
        return r.labels, r.model, r.posteriors, r.bias
    image = job.data
    if type(image).__module__.split(".")[0] == "dask":
        image = image.compute()
    axes = _pl.split_axes(image, channel_axis, job.split_axis)
    phases = _pl.Progress(progress, [kw["max_iter"]] * axes.length)
    extras = {}

    def one(sub, m, i):
        r = _sp.fit_spatial(
            sub, k, channel_axis=axes.channel_slice, mask=m, progress=phases.phase(i), return_posteriors=posts, **kw
        )
        r.model.params.update(split_axis=axes.axis, index=i)
        extras[i] = (r.posteriors, r.bias)
        return r.labels, r.model

    labels, models = _pl.split(image, None if mask is None else np.asarray(mask), axes, one)
    pax = axes.pixel_axis
    post = np.stack([extras[i][0] for i in range(axes.length)], axis=pax + 1) if posts else None
    bias = None
    if extras[0][1] is not None:
        bias = np.stack([extras[i][1] for i in range(axes.length)], axis=pax)
    return labels, ng.SplitModels(models, axes.axis, channel_axis), post, bias


def _compute(job: _Job, relay: ProgressRelay | None) -> _Result:
    """Worker-thread body: never raises, errors are returned in the result.

    Every phase (fit and labels in the core, then the posterior maps and the quantised image) gets
    a progress callback that raises :class:`napari_gmm.Cancelled` once Cancel was pressed (the one
    cancellation mechanism of the core), and names itself on the progress bar.
    """

    def phase(name):
        if job.cancel.is_set():
            raise ng.Cancelled("cancelled by the user")
        if relay is not None:
            relay.phase.emit(name)

        def progress(done, total):
            if job.cancel.is_set():
                raise ng.Cancelled("cancelled by the user")
            if relay is not None:
                relay.progressed.emit(int(done), int(total))

        return progress

    try:
        with COMPUTE_LOCK:
            t0 = time.perf_counter()  # the time of the fit, not of waiting for another widget
            if job.apply is not None:
                model = job.apply
                labels = _predict(job, model, phase("labelling with the loaded model"))
            elif job.spatial and (job.want_posteriors or job.kwargs.get("bias_field")):
                # only fit_spatial returns the bias field and the spatial model's own posteriors
                labels, model, post, bias = _fit_spatial(job, phase("fitting (spatial model)"))
            else:  # per-pixel, or spatial through the public segment(beta=..., spacing=...)
                labels, model = ng.segment(
                    job.data,
                    split_axis=job.split_axis,
                    return_model=True,
                    progress=phase("fitting"),
                    **job.kwargs,
                )
            result = _Result(labels=labels, model=model)
            if job.spatial and job.apply is None and job.want_posteriors:
                result.posteriors, result.bias = post, bias  # the spatial model's own posteriors
            elif job.spatial and job.apply is None and job.kwargs.get("bias_field"):
                result.bias = bias
            elif job.want_posteriors:
                result.posteriors = _posteriors(job, model, phase("posterior maps"))
            if job.want_quantised:
                result.quantised = _quantise(job, labels, model, phase("quantised image"))
            phase("adding layers")
            result.seconds = time.perf_counter() - t0
        return result
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the GUI thread
        return _Result(labels=None, model=None, error=exc, error_tb=traceback.format_exc())


def _fmt_vec(v, scale: float | None = None) -> str:
    """Compact numbers for the summary table. Grey: 4 significant digits. Colour: decimals chosen by
    ``scale`` (the table's largest magnitude): integers for 8-bit-like ranges, 3 digits for [0, 1]."""
    v = np.atleast_1d(np.asarray(v, dtype=float))
    if v.size == 1:
        return f"{v[0]:.4g}"
    if scale is None:
        scale = float(np.max(np.abs(v)))
    v = np.where(np.abs(v) < 1e-9 * max(scale, 1.0), 0.0, v)  # no 3e-212 noise in the table
    if scale >= 100:
        parts = [f"{x:.0f}" for x in v]
    elif scale >= 10:
        parts = [f"{x:.1f}" for x in v]
    else:
        parts = [f"{x:.3f}" for x in v]
    return "(" + ", ".join(parts) + ")"


def _fmt_seconds(seconds: float) -> str:
    return f"{seconds * 1e3:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _objective_name(model) -> str:
    """What ``model.lower_bound`` is: the spatial model's is its mean-field free energy (the
    log-likelihood's lower bound under the Potts prior), not a log-likelihood."""
    from napari_gmm.mixture import is_spatial

    return "mean-field free energy" if is_spatial(model) else "log-likelihood"


def _summary_text(model, seconds: float, params: dict) -> str:
    """Short human summary of a fit: K, means, weights, n_iter, converged, log-likelihood, time."""
    models = _models(model)
    k = models[0].n_components
    if params.get("n_components") == "auto":
        k = f"{k} (chosen by {params.get('criterion', 'BIC').upper()}, K <= {params.get('max_components')})"
    mode = "colour" if params.get("channel_axis") is not None else "grey"
    if params.get("applied_from"):
        lines = [
            f"K = {k} ({mode}) applied from {params['applied_from']} (no fit) in {_fmt_seconds(seconds)}",
            "as fitted originally:",
        ]
    else:
        lines = [f"K = {k} ({mode}, init {params['init']}) in {_fmt_seconds(seconds)}"]
    cens = [m.censoring for m in models if getattr(m, "censoring", None) is not None]
    if cens:
        lines.append(cens[0].describe() if len(models) == 1 else f"clipped levels censored in {len(cens)} fits")
    if params.get("labels") == "intervals":
        lines.append("labels: intensity intervals (label k+1 brighter than label k)")
    betas = [m.params.get("beta") for m in models if m.params.get("beta") is not None]
    if betas and max(betas) > 0 or params.get("bias_field"):
        how = "estimated" if params.get("beta") == "auto" else "set"
        b = (f"{betas[0]:.3g}" if len(set(betas)) == 1 else f"{min(betas):.3g} .. {max(betas):.3g}") if betas else "0"
        lines.append(f"spatial smoothing: beta = {b} ({how})")
        if params.get("bias_field"):
            lines.append("uneven illumination corrected (bias field layer)")
    if len(models) == 1:
        m = models[0]
        if m.converged:
            lines.append(f"converged after {m.n_iter} iterations")
        else:
            lines.append(f"NOT converged after {m.n_iter} iterations")
            lines.append("  (raise max_iter, or tol)")
        lines.append(f"{_objective_name(m)} / pixel: {float(m.lower_bound):.5g}")
        lines.append("label  weight   mean")
        means = _means_by_label(m)
        scale = float(np.max(np.abs(means)))
        weights = np.asarray(m.weights, float)
        k_all = len(means)
        shown = range(k_all) if k_all <= 12 else [*range(6), None, *range(k_all - 5, k_all)]
        for i in shown:
            if i is None:
                lines.append("  ...")
                continue
            lines.append(f"{i + 1:>5}  {weights[i]:.4f}   {_fmt_vec(means[i], scale)}")
    else:
        n_conv = sum(bool(m.converged) for m in models)
        iters = [int(m.n_iter) for m in models]
        ll = [float(m.lower_bound) for m in models]
        lines.append(
            f"{len(models)} fits along axis {params['split_axis']}: "
            f"{n_conv}/{len(models)} converged, {min(iters)}-{max(iters)} iterations"
        )
        lines.append(f"{_objective_name(models[0])} / pixel: {min(ll):.5g} .. {max(ll):.5g}")
        first, last = _means_by_label(models[0]), _means_by_label(models[-1])
        scale = float(max(np.max(np.abs(first)), np.max(np.abs(last))))
        lines.append("label  mean (first index -> last)")
        for i in range(min(len(first), 12)):
            lines.append(f"{i + 1:>5}  {_fmt_vec(first[i], scale)} -> {_fmt_vec(last[i], scale)}")
        if len(first) > 12:
            lines.append("  ...")
    return "\n".join(lines)


def _to_mask(layer) -> np.ndarray:
    data = layer.data
    if getattr(layer, "multiscale", False):
        data = data[0]
    data = np.asarray(data)
    if isinstance(layer, Labels):
        return data != 0
    return data.astype(bool, copy=False)


# --------------------------------------------------------------------------------------------------
# the widget
# --------------------------------------------------------------------------------------------------
class SegmentWidget(RunCancelMixin, Container):
    """Gaussian mixture segmentation of an image layer (grey or colour) into K classes.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        The viewer whose layers are read and written.

    Notes
    -----
    Scripting from the napari console::

        w = SegmentWidget(viewer)
        viewer.window.add_dock_widget(w)
        w.image.value = viewer.layers["camera"]
        w.n_components.value = 3
        worker = w.run()          # returns the napari worker (or None if the inputs were refused)
    """

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__(labels=False)
        self._viewer = viewer
        self._init_run_state()
        self._colour_mode: bool | None = None

        self.image = ComboBox(
            label="image",
            choices=self._image_choices,
            nullable=False,
            tooltip="Image layer to segment (Labels and binary layers cannot be fitted).",
        )
        self.mode = Label(
            label="mode", value="", tooltip="How the image is modelled: grey intensities, or colour / channels."
        )
        self.channel_axis = ComboBox(
            label="channels",
            choices=self._channel_choices,
            tooltip="Axis holding the colour channels (RGB layers: automatic).",
        )
        self.n_components = SpinBox(
            label="K (classes)",
            value=3,
            min=1,
            max=65535,
            tooltip="Number of Gaussian components = number of labels (with "
            "'choose K automatically': the largest K tried).",
        )
        self.auto_k = CheckBox(
            text="choose K automatically (K = 1 .. K)",
            value=False,
            tooltip="Fit K = 1 up to the K above and keep the one with the best criterion "
            "(napari_gmm.segment(n_components='auto', max_components=K, criterion=...)); "
            "the plot widget shows the criterion against K.",
        )
        self.criterion = ComboBox(
            label="criterion",
            choices=list(CRITERIA),
            value="bic",
            tooltip="How K is chosen (lower is better). BIC: the number of Gaussian classes "
            "(on large photographs it keeps adding classes up to K); ICL: BIC plus the "
            "classes' overlap, the number of well separated classes; AIC: more classes.",
        )
        self.censoring = ComboBox(
            label="clipped pixels",
            choices=list(CENSORING),
            value="auto",
            tooltip="Saturated pixels (camera full well, 0 / 255 of an 8-bit export) only say that "
            "the true value lies beyond the limit: censored, they count by each class's tail "
            "instead of forming a spike that needs a class of its own "
            "(napari_gmm.segment(censoring=...)). auto: censor an extreme grey level that is a "
            "pile of clipped pixels; on: censor both extreme levels; off: every level is a "
            "measured value. Grey images only; with spatial smoothing it guides the choice of K.",
        )
        self.labels = ComboBox(
            label="labels",
            choices=list(LABELS),
            value="map",
            tooltip="most probable: each pixel's most probable class (a broad class can win in "
            "both tails); intensity intervals: K contiguous intensity ranges, label k+1 always "
            "brighter than label k (napari_gmm.segment(labels='intervals')). Grey images, "
            "without spatial smoothing.",
        )
        self.init = ComboBox(
            label="init",
            choices=list(INITS),
            value="auto",
            tooltip="auto: the best measured start (ranges for grey, quantiles/ranges for "
            "colour); ranges: K equal slices of the intensity range; quantiles: K "
            "equal-count slices; kmeans++ / random: seeded by random state.",
        )
        self.mask = ComboBox(
            label="mask",
            choices=self._mask_choices,
            nullable=True,
            value=None,
            tooltip="Optional Labels or binary layer: only its non-zero pixels are fitted "
            "and labelled (others get 0). Same shape as the image.",
        )
        self.more_channels = Select(
            label="more channels",
            choices=self._more_channel_choices,
            value=[],
            allow_multiple=True,
            tooltip="Other image layers of the same shape, taken as further channels "
            "of 'image' (napari opens a multichannel file as one layer per "
            "channel). Ctrl/Shift-click to pick several; none = one layer.",
        )
        self.split_axis = ComboBox(
            label="fit each index of",
            choices=self._split_choices,
            tooltip="Fit a separate model for each index of this axis (e.g. each "
            "time point of a bleaching time-lapse).",
        )
        self.smoothing = ComboBox(
            label="spatial smoothing",
            choices=list(SMOOTHING),
            value="auto",
            tooltip="Neighbouring pixels tend to share a class (a Potts prior, "
            "napari_gmm.segment(beta=...)): removes salt-and-pepper labels on "
            "noisy images. auto: the strength (beta) is estimated from the "
            "image; value: your beta; off: every pixel on its own (beta=0). "
            "2-D or 3-D images (each time point with 'fit each index of'); "
            "the layer's scale is the voxel size.",
        )
        self.beta = FloatSpinBox(
            label="beta",
            value=1.0,
            min=0.0,
            max=10.0,
            step=0.1,
            tooltip="Potts interaction strength for 'spatial smoothing: value' (0 = off; "
            "about 0.5-1.5 for noisy images; larger = smoother, fewer details).",
        )
        self.bias_field = CheckBox(
            text="correct uneven illumination",
            value=False,
            tooltip="Estimate a smooth multiplicative illumination (bias) field inside "
            "the fit (vignetting, uneven excitation) and add it as the layer "
            "'<image> GMM bias field' (napari_gmm.segment(bias_field=True)). "
            "Needs a mostly positive image.",
        )
        self.out_quantised = CheckBox(
            text="quantised image (component means)",
            value=False,
            tooltip="Also add the image with every pixel replaced by its class "
            "mean (same dtype as the image; computed slice by slice).",
        )
        self.out_posteriors = CheckBox(
            text="posterior maps (float32, K x image)",
            value=False,
            tooltip="Also add each class's probability per pixel: K float32 maps (refused above 2 GB).",
        )
        self.show_advanced = CheckBox(
            text="advanced options", value=False, tooltip="Show the EM options (iterations, tolerance, covariance ...)."
        )

        self.max_iter = SpinBox(
            label="max_iter",
            value=100,
            min=1,
            max=1_000_000,
            tooltip="Most EM iterations; a warning says when EM stopped before tol.",
        )
        self.tol = LineEdit(
            label="tol",
            value="1e-6",
            tooltip="Stop when the mean log-likelihood per pixel changes by less than this; "
            "0 runs exactly max_iter iterations.",
        )
        self.reg_covar = LineEdit(
            label="reg_covar",
            value="auto",
            tooltip="Variance floor added to the covariances; 'auto' lets the core "
            "choose from the data type / bin width.",
        )
        self.bins = SpinBox(
            label="bins",
            value=0,
            min=0,
            max=1 << 24,
            tooltip="Histogram bins for float data (0 = auto). Integer data are always counted exactly.",
        )
        self.covariance_type = ComboBox(
            label="covariance",
            choices=list(COVARIANCE_TYPES),
            value="spherical",
            tooltip="Colour mode: one variance per component (spherical), one "
            "per channel (diag) or a full covariance matrix (full).",
        )
        self.n_init = SpinBox(
            label="n_init",
            value=1,
            min=1,
            max=1000,
            tooltip="Restarts (kmeans++/random inits); the best log-likelihood wins.",
        )
        self.random_state = SpinBox(
            label="random state",
            value=0,
            min=0,
            max=2**31 - 1,
            tooltip="Seed of the kmeans++ / random starts: same seed, same result.",
        )
        self._advanced = [
            self.max_iter,
            self.tol,
            self.reg_covar,
            self.bins,
            self.covariance_type,
            self.n_init,
            self.random_state,
        ]

        self.run_button = PushButton(
            text="Run",
            tooltip="Fit and label the image (press again to cancel). "
            "A labels layer you edited is kept: the new result goes beside it.",
        )
        self.progress = ProgressBar(value=0, min=0, max=100, tooltip="Progress of the running phase.")
        self.summary = Label(
            value="", tooltip="The last fit: classes, means, weights, convergence; or why the last run failed."
        )

        # one labelled form (label column shared by all fields), then full-width progress and summary
        self.form = Container(labels=True)
        self.reset_button = PushButton(
            text="Reset to defaults",
            tooltip="Put every option back to its default (the widget otherwise "
            "remembers the options of the last run across sessions).",
        )
        self.save_model_button = PushButton(
            text="Save model...",
            tooltip="Save the model and options of the last result (or of the selected labels layer) as a JSON file.",
        )
        self.load_model_button = PushButton(
            text="Load model...",
            tooltip="Load a model saved as JSON; 'Apply model' then labels the "
            "chosen image with it (every time point) without fitting.",
        )
        self.apply_model_button = PushButton(
            text="Apply model", enabled=False, tooltip="Label the chosen image with the loaded model (no fit)."
        )
        self.apply_files_button = PushButton(
            text="Apply to files...",
            enabled=False,
            tooltip="Label every image file of a folder with the loaded model "
            "(no fit; napari_gmm.batch.apply_files): OME-Zarr labels "
            "with the model as an attribute, in an output folder.",
        )
        self.model_file = Label(value="", tooltip="The model file loaded for 'Apply model'.")
        self.model_row = Container(
            layout="horizontal", labels=False, widgets=[self.save_model_button, self.load_model_button]
        )
        self.model_row.margins = (0, 0, 0, 0)
        self.apply_row = Container(
            layout="horizontal", labels=False, widgets=[self.apply_model_button, self.apply_files_button]
        )
        self.apply_row.margins = (0, 0, 0, 0)
        self.form.extend(
            [  # extend after construction: magicgui then aligns the label column
                self.image,
                self.mode,
                self.channel_axis,
                self.more_channels,
                self.n_components,
                self.auto_k,
                self.criterion,
                self.censoring,
                self.labels,
                self.init,
                self.mask,
                self.split_axis,
                self.smoothing,
                self.beta,
                self.bias_field,
                self.out_quantised,
                self.out_posteriors,
                self.show_advanced,
                *self._advanced,
                self.run_button,
                self.model_row,
                self.apply_row,
                self.model_file,
                self.reset_button,
            ]
        )
        self.form.margins = (0, 0, 0, 0)
        self._on_show_advanced()
        self.progress.visible = False
        self.model_file.visible = False  # shown once a model file is loaded
        # the form, bar and summary scroll inside the dock (its minimum height stays a few lines)
        self.body = Container(labels=False)
        self.body.extend([self.form, self.progress, self.summary])
        self.body.native.layout().addStretch(1)  # extra height below the summary, not between rows
        self.margins = (0, 0, 0, 0)
        self._scroll = scroll_area(self.body.native)
        self.native.layout().addWidget(self._scroll)

        # Qt touches: monospace, selectable, wrapping summary; busy bar hidden text until running
        self.bins.native.setSpecialValueText("auto")
        font = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        self.summary.native.setFont(font)
        self.summary.native.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # the summary and the mode line wrap at the dock's width: a long error message in an
        # unwrapped label once widened the dock until the viewer's canvas was 0 px wide
        bound_text_width(self.summary.native, self.mode.native, self.model_file.native)
        self.progress.native.setTextVisible(True)
        self.mode.native.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        self._relay.phase.connect(self._on_phase)

        # magicgui sizes the label column with the default font; napari's stylesheet font is larger,
        # so re-align once the dock is styled (next event-loop turn)
        QTimer.singleShot(0, self._align_labels)

        self.image.changed.connect(self._on_image_changed)
        self.more_channels.changed.connect(self._on_channel_axis_changed)
        self.more_channels.native.setMaximumHeight(80)  # a few rows; the list scrolls
        # the image picker follows the layer selected in the layer list
        viewer.layers.selection.events.active.connect(self._on_active_layer)
        self.native.destroyed.connect(
            lambda *_, sel=viewer.layers.selection, cb=self._on_active_layer: _disconnect(sel.events.active, cb)
        )
        self.channel_axis.changed.connect(self._on_channel_axis_changed)
        self.show_advanced.changed.connect(self._on_show_advanced)
        self.auto_k.changed.connect(self._on_auto_k_changed)
        self._on_auto_k_changed()
        self.smoothing.changed.connect(self._on_smoothing_changed)
        self._on_smoothing_changed()
        self.run_button.changed.connect(self._on_run_clicked)
        self.reset_button.changed.connect(self.reset_to_defaults)
        self.save_model_button.changed.connect(lambda *_: self.save_model())
        self.load_model_button.changed.connect(lambda *_: self.load_model())
        self.apply_model_button.changed.connect(lambda *_: self.apply_model())
        self.apply_files_button.changed.connect(lambda *_: self.apply_model_to_files())
        self._files_worker = None
        self.loaded = None  # the record of the loaded model file (see _model_file.read)
        self.remember_settings = True  # False: a run does not change the remembered options

        # napari keeps the pickers in sync with the layer list once the widget is docked
        # (layers.events.inserted/removed/reordered/renamed -> reset_choices)
        self.reset_choices()
        active = self._viewer.layers.selection.active
        problem = _layer_problem(active) if active is not None else None
        if active is not None and problem is None and active in self.image.choices:
            self.image.value = active
        elif active is not None and problem is not None and not self._is_own_output(active):
            # e.g. opened from Layers > Segment with a Labels layer selected: say why it is not used
            chosen = self.image.value
            then = f" Segmenting '{chosen.name}' instead; change 'image' if needed." if chosen is not None else ""
            show_info(problem + then)
        self._defaults = {key: getattr(self, key).value for key in SETTINGS}
        self._defaults.update(init_grey="auto", init_colour="auto")
        self._restore_settings()
        self._on_image_changed()
        bound_combo_widths(self.native)
        fit_scroll_width(self._scroll)
        # load the Numba kernels now, while the user sets the options, not when Run is pressed
        QTimer.singleShot(0, lambda alive=self._alive: alive["alive"] and start_warm_up("segment"))

    # ---------------------------------------------------------------- settings (remembered)
    def _remembered_init(self, colour: bool) -> str:
        key = "init_colour" if colour else "init_grey"
        value = _settings.load(SETTINGS_SECTION).get(key, self._defaults[key] if hasattr(self, "_defaults") else "auto")
        return value if value in INITS else "auto"

    def _restore_settings(self):
        for key, value in _settings.load(SETTINGS_SECTION).items():
            if key in SETTINGS:
                try:
                    getattr(self, key).value = value
                except (ValueError, TypeError):  # a value this version does not accept: keep default
                    pass

    def current_settings(self) -> dict:
        """The options as remembered for the next session (and used by the Layers-menu command)."""
        values = {key: getattr(self, key).value for key in SETTINGS}
        values["init_colour" if self._colour_mode else "init_grey"] = values.pop("init")
        return values

    def _remember(self):
        _settings.save(SETTINGS_SECTION, {**_settings.load(SETTINGS_SECTION), **self.current_settings()})

    def reset_to_defaults(self, *_):
        """Every option back to its default, and the remembered settings forgotten."""
        _settings.reset(SETTINGS_SECTION)
        for key in SETTINGS:
            if key != "init":
                getattr(self, key).value = self._defaults[key]
        self.init.value = self._defaults["init_colour" if self._colour_mode else "init_grey"]

    # ---------------------------------------------------------------- model files
    def _model_source(self):
        """The labels layer whose model "Save model..." writes: the active layer if it holds one,
        else the last result of this widget."""
        active = self._viewer.layers.selection.active
        for layer in (active, getattr(self, "labels_layer", None)):
            if (
                layer is not None
                and layer in self._viewer.layers
                and isinstance(layer.metadata.get("napari_gmm"), dict)
                and "model" in layer.metadata["napari_gmm"]
            ):
                return layer
        return None

    def save_model(self, path=None):
        """Write the model of the last result (or of the selected labels layer) to ``path`` (JSON);
        without ``path`` a file dialog asks. Returns the path written, or None."""
        layer = self._model_source()
        if layer is None:
            show_error(
                "napari-gmm: no fitted model to save: run the segmentation first (or select a labels layer it made)."
            )
            return None
        if path is None:
            from qtpy.QtWidgets import QFileDialog

            path, _ = QFileDialog.getSaveFileName(
                self.native, "Save the model", f"{layer.name}.gmm.json", "napari-gmm model (*.json)"
            )
            if not path:
                return None
        try:
            written = _model_file.write(path, layer.metadata["napari_gmm"])
        except (OSError, TypeError, ValueError) as exc:
            show_error(f"napari-gmm: could not save the model to '{path}': {exc}")
            return None
        show_info(f"napari-gmm: model of '{layer.name}' saved to {written}")
        return written

    def load_model(self, path=None):
        """Read a model file for "Apply model"; without ``path`` a file dialog asks. Returns the
        record (see :mod:`._model_file`) or None."""
        if path is None:
            from qtpy.QtWidgets import QFileDialog

            path, _ = QFileDialog.getOpenFileName(
                self.native, "Load a model", "", "napari-gmm model (*.json);;All files (*)"
            )
            if not path:
                return None
        try:
            rec = _model_file.read(path)
        except ValueError as exc:
            show_error(f"napari-gmm: {exc}")
            return None
        rec["path"] = str(path)
        self.loaded = rec
        models = rec["models"]
        what = (
            f"{len(models)} models (one per index of axis {rec['params'].get('split_axis')})"
            if rec["split"]
            else f"K = {models[0].n_components}, {models[0].n_features} channel(s)"
        )
        self.model_file.value = f"loaded: {Path(path).name} ({what})"
        self.model_file.visible = True
        self.apply_model_button.enabled = True
        self.apply_files_button.enabled = True
        return rec

    def apply_model(self, image=None):
        """Label ``image`` (default: the picked image) with the loaded model, without fitting: every
        pixel of every time point gets its most probable component (a per-index model list is
        applied index by index). Runs in a worker like Run; returns the worker or None."""
        if self.loaded is None:
            show_error("napari-gmm: no model loaded: press 'Load model...' first.")
            return None
        return self.run(image=image, model=self.loaded)

    def apply_model_to_files(self, inputs=None, out=None):
        """Label image files with the loaded model, without fitting, in a worker thread:
        ``inputs`` (paths, globs or folders; default: a folder chosen in a dialog) into ``out`` (a
        folder; default: chosen in a dialog), as ``napari-gmm apply`` does. A notification gives the
        summary. Returns the worker or None."""
        if self.loaded is None:
            show_error("napari-gmm: no model loaded: press 'Load model...' first.")
            return None
        if self._files_worker is not None:
            show_error("napari-gmm: files are being labelled already; wait for the summary.")
            return None
        from qtpy.QtWidgets import QFileDialog

        if inputs is None:
            folder = QFileDialog.getExistingDirectory(self.native, "Folder of images to label")
            if not folder:
                return None
            inputs = [folder]
        if out is None:
            out = QFileDialog.getExistingDirectory(self.native, "Folder for the labels (OME-Zarr)")
            if not out:
                return None
        from napari_gmm import batch

        try:
            files = batch.expand_inputs([str(p) for p in inputs])
        except ng.InputError as exc:
            show_error(f"napari-gmm: {exc}")
            return None
        rec = self.loaded
        if rec["path"].lower().endswith(".zarr"):
            show_error("napari-gmm: to apply a model to files, load it from a JSON file ('Save model...').")
            return None

        def done(summary):
            self._files_worker = None
            failed = [f for f in summary["files"] if f["status"] != "ok"]
            msg = (
                f"napari-gmm: {summary['n_ok']} of {len(summary['files'])} files labelled into {out} "
                f"in {summary['seconds']:.1f} s"
            )
            if failed:
                show_warning(msg + "; failed: " + "; ".join(f"{f['input']}: {f.get('error')}" for f in failed[:3]))
            else:
                show_info(msg)
            self.files_summary = summary

        def failed(exc):
            self._files_worker = None
            show_error(f"napari-gmm: labelling files failed: {exc}")

        self._files_worker = create_worker(
            batch.apply_files,
            rec["path"],
            files,
            str(out),
            _connect={"returned": done, "errored": failed},
            _start_thread=True,
        )
        return self._files_worker

    def reset_choices(self, *_):
        """Refresh the layer pickers (napari calls this when layers are added, removed, renamed)."""
        body = getattr(self, "body", None)
        if body is not None:
            body.reset_choices()
            self.more_channels.visible = bool(self.more_channels.choices)

    def _on_active_layer(self, event=None):
        if not self._alive["alive"]:
            return
        active = self._viewer.layers.selection.active
        if active is None or self.is_running or _layer_problem(active) is not None:
            return
        if active in self.image.choices and active is not self.image.value:
            self.image.value = active

    def _on_phase(self, name: str):
        if not self._alive["alive"] or self._job is None:
            return
        self.progress.native.setRange(0, 0)  # busy until the phase reports progress
        self.progress.native.setFormat(f"{name} %p%")
        self._phase = name

    def _align_labels(self):
        try:
            labels = [w._labeled_widget()._label_widget.native for w in self.form if w._labeled_widget() is not None]
        except (AttributeError, RuntimeError):  # magicgui internals changed / widget deleted
            return
        if labels:
            width = max(lbl.sizeHint().width() for lbl in labels)
            for lbl in labels:
                lbl.setMinimumWidth(width)

    # ---------------------------------------------------------------- choices
    def _image_choices(self, _widget=None):
        # binary (bool) images hold no intensities: offered as masks, not here
        return [
            (layer.name, layer)
            for layer in self._viewer.layers
            if isinstance(layer, Image) and not _is_bool_layer(layer)
        ]

    def _mask_choices(self, _widget=None):
        out = []
        for layer in self._viewer.layers:
            if isinstance(layer, Labels) or (isinstance(layer, Image) and _is_bool_layer(layer)):
                out.append((layer.name, layer))
        return out

    @staticmethod
    def _is_own_output(layer) -> bool:
        return any(layer.name.endswith(s) for s in (LABELS_SUFFIX, QUANTISED_SUFFIX, POSTERIORS_SUFFIX, BIAS_SUFFIX))

    # ---------------------------------------------------------------- reactions
    def _on_smoothing_changed(self, value=None):
        self.beta.visible = self.smoothing.value == "value"

    def _on_auto_k_changed(self, value=None):
        self.criterion.visible = bool(self.auto_k.value)

    def _on_show_advanced(self, value=None):
        for w in self._advanced:
            w.visible = bool(self.show_advanced.value)

    def _channel_choices(self, _widget=None):
        layer = self.image.value
        if layer is None:
            return [("none: grey intensities", None)]
        shape = _data_shape(layer)
        if layer.rgb:
            return [(f"RGB{'A' if shape[-1] == 4 else ''} (last axis)", len(shape) - 1)]
        choices = [("none: grey intensities", None)]
        if len(shape) >= 3:
            choices += [
                (f"axis {a} ({shape[a]} channels)", a) for a in range(len(shape)) if 2 <= shape[a] <= MAX_CHANNELS
            ]
        return choices

    def _more_channel_choices(self, _widget=None):
        layer = self.image.value if hasattr(self, "image") else None
        if layer is None or layer.rgb or getattr(layer, "multiscale", False):
            return []
        shape = _data_shape(layer)
        return [
            (lyr.name, lyr)
            for lyr in self._viewer.layers
            if isinstance(lyr, Image)
            and lyr is not layer
            and not lyr.rgb
            and not _is_bool_layer(lyr)
            and not getattr(lyr, "multiscale", False)
            and not self._is_own_output(lyr)
            and _data_shape(lyr) == shape
        ]

    def _layer_channels(self) -> list:
        """The image layers picked as further channels (those still in the viewer)."""
        if not hasattr(self, "more_channels"):
            return []
        return [lyr for lyr in (self.more_channels.value or []) if lyr in self._viewer.layers]

    def _split_choices(self, _widget=None):
        layer = self.image.value
        choices = [("none: one model", None)]
        if layer is None:
            return choices
        shape = _data_shape(layer)
        ca = self.channel_axis.value
        if self._layer_channels():  # channels from layers: a new last axis
            shape, ca = (*shape, 1 + len(self._layer_channels())), len(shape)
        spatial = [a for a in range(len(shape)) if a != ca]
        if len(spatial) >= 3:
            choices += [(f"axis {a} ({shape[a]} indices)", a) for a in spatial[:-2]]
        return choices

    def _on_image_changed(self, value=None):
        layer = self.image.value
        self.channel_axis.reset_choices()
        if hasattr(self, "more_channels"):
            self.more_channels.reset_choices()
            self.more_channels.visible = bool(self.more_channels.choices)  # shown when there is a choice
        if layer is None:
            self.channel_axis.enabled = False
            self.split_axis.reset_choices()
            self.split_axis.enabled = False
            self.mode.value = "no image layer: open or add one"
            return
        self.channel_axis.value = self.channel_axis.choices[0]  # RGB: last axis; else grey
        self.channel_axis.enabled = not layer.rgb and len(self.channel_axis.choices) > 1
        self._on_channel_axis_changed()

    def _on_channel_axis_changed(self, value=None):
        layer = self.image.value
        if layer is None:
            return
        ca = self.channel_axis.value
        shape = _data_shape(layer)
        extra = self._layer_channels()
        self.channel_axis.enabled = not layer.rgb and not extra and len(self.channel_axis.choices) > 1
        if extra:
            ca = len(shape)
        self.split_axis.reset_choices()
        self.split_axis.enabled = len(self.split_axis.choices) > 1
        colour = ca is not None
        if layer.rgb:
            alpha = "A, alpha ignored" if shape[-1] == 4 else ""
            self.mode.value = f"colour (RGB{alpha})"
        elif extra:
            self.mode.value = f"colour ({1 + len(extra)} layers as channels)"
        elif colour:
            self.mode.value = f"colour ({shape[ca]} channels, axis {ca})"
        else:
            self.mode.value = "grey intensities"
        self.covariance_type.enabled = colour
        self.censoring.enabled = not colour  # grey only: colour is never censored
        self.labels.enabled = not colour  # colour has no intensity order to cut
        if colour != self._colour_mode:
            if colour:
                self.init.value = self._remembered_init(True)
                if layer.rgb:
                    show_info(
                        f"napari-gmm: '{layer.name}' is an RGB layer: colour mode (channel_axis=-1, "
                        f"init {self.init.value}); labels are ordered by mean brightness."
                    )
                elif self._colour_mode is not None:
                    show_info(f"napari-gmm: colour mode on axis {ca} of '{layer.name}' (init {self.init.value}).")
            else:
                self.init.value = self._remembered_init(False)
            self._colour_mode = colour

    # ---------------------------------------------------------------- public API
    def run(self, image=None, model=None):
        """Validate the inputs and start the segmentation in a worker thread.

        Parameters
        ----------
        image : napari.layers.Layer, optional
            Layer to segment instead of the picker's value (scripting).
        model : dict, optional
            A loaded model file's record (:func:`._model_file.read`): label the image with it
            instead of fitting (see :meth:`apply_model`).

        Returns
        -------
        worker : napari.qt.threading.FunctionWorker or None
            The started worker, or None when the inputs were refused (a notification says why).
        """
        if self.is_running:
            show_error("napari-gmm: a segmentation is already running; wait for it or press Cancel.")
            return None
        try:
            if image is not None and image is not self.image.value:
                problem = _layer_problem(image)
                if problem:
                    raise _InputError(problem)
                if image not in self.image.choices:
                    self.reset_choices()  # an undocked widget is not told of new layers
                if image not in self.image.choices:
                    raise _InputError(f"napari-gmm: layer '{image.name}' is not in this viewer.")
                self.image.value = image  # the form then shows (and uses) its channel/axis options
            job = self._make_job(self.image.value, model)
        except _InputError as exc:
            show_error(str(exc))
            return None
        if model is None and self.remember_settings:
            self._remember()  # the options of this run are the ones the next session starts with
        self._job = self._alive["job"] = job
        self.run_button.text = "Cancel"
        self.progress.native.setRange(0, 0)  # busy until the core reports progress
        self.progress.native.setFormat("starting %p%")
        self.progress.visible = True
        self.summary.value = running_message("segment", job.layer.name)
        self._worker = create_worker(
            _compute,
            job,
            self._relay,
            _connect={
                "returned": self._on_returned,
                "errored": self._on_errored,
                "warned": self._on_warned,
                "finished": self._on_finished,
            },
            _start_thread=True,
        )
        return self._worker

    # ---------------------------------------------------------------- job building
    def _make_job(self, layer, record=None) -> _Job:
        if layer is None:
            raise _InputError(
                "napari-gmm: no image layer to segment. Open an image (File > Open, or "
                "File > Open Sample > napari GMM) and pick it in 'image'."
            )
        problem = _layer_problem(layer)
        if problem:
            raise _InputError(problem)
        if layer not in self._viewer.layers:
            raise _InputError(f"napari-gmm: layer '{layer.name}' is not in this viewer.")
        data = layer.data
        if getattr(layer, "multiscale", False):
            raise _InputError(
                f"napari-gmm: '{layer.name}' is a multiscale (pyramid) layer; the widget does not segment "
                "pyramids yet. From the console: labels = napari_gmm.segment(layer.data[0], ...), or add "
                "the full-resolution level as its own layer."
            )
        shape = tuple(data.shape)
        if layer.rgb:
            channel_axis = len(shape) - 1
            if shape[-1] == 4:
                data = data[..., :3]  # a view: alpha is ignored, the layer is not modified
        else:
            channel_axis = self.channel_axis.value
        extra = self._layer_channels()
        if extra:
            data, channel_axis, shape = self._stack_layers(layer, extra)
        colour = channel_axis is not None
        spatial_shape = tuple(s for a, s in enumerate(data.shape) if a != channel_axis)

        split_axis = self.split_axis.value
        if split_axis is not None and (split_axis == channel_axis or split_axis >= len(shape)):
            split_axis = None

        mask = None
        mask_layer = self.mask.value
        if mask_layer is not None:
            if mask_layer is layer:
                raise _InputError(
                    "napari-gmm: the mask layer is the image itself; pick a Labels or binary layer as mask, or 'None'."
                )
            if mask_layer not in self._viewer.layers:
                raise _InputError(f"napari-gmm: mask layer '{mask_layer.name}' was removed; pick another.")
            mshape = _data_shape(mask_layer)
            if mshape != spatial_shape:
                what = "its shape without the channel axis" if colour else "its shape"
                raise _InputError(
                    f"napari-gmm: mask '{mask_layer.name}' has shape {mshape} but image '{layer.name}' "
                    f"has {what} {spatial_shape}. Pick a mask of the same shape (e.g. draw a Labels "
                    f"layer on the image: Layers > New Labels layer) or set mask to None."
                )
            mask = _to_mask(mask_layer)

        tol = _parse_float(self.tol.value, "tol", allow_auto=False)
        reg_covar = _parse_float(self.reg_covar.value, "reg_covar", allow_auto=True)
        k = int(self.n_components.value)
        bins = int(self.bins.value) or None
        covariance_type = self.covariance_type.value if colour else "spherical"
        auto_k = (
            {"n_components": "auto", "max_components": max(k, 1), "criterion": self.criterion.value}
            if self.auto_k.value
            else {"n_components": k}
        )
        labels_how = "map" if colour else self.labels.value
        kwargs = dict(
            **auto_k,
            censoring="auto" if colour else CENSORING[self.censoring.value],
            labels=labels_how,
            channel_axis=channel_axis,
            covariance_type=covariance_type,
            init=self.init.value,
            n_init=int(self.n_init.value),
            max_iter=int(self.max_iter.value),
            tol=tol,
            reg_covar=reg_covar,
            mask=mask,
            bins=bins,
            random_state=int(self.random_state.value),
        )
        spatial = False
        if record is None:
            beta = {"off": 0.0, "auto": "auto"}.get(self.smoothing.value, float(self.beta.value))
            spatial = beta != 0.0 or bool(self.bias_field.value)
        if (
            spatial
            and beta == "auto"
            and not self.bias_field.value
            and not self._spatial_fits(data, channel_axis, split_axis)
        ):
            # the default ("auto") falls back to the per-pixel model where the spatial one cannot run
            # (not 2-D/3-D per fit, or a lazy image too large to load); an explicit choice is refused
            spatial = False
            show_info(
                f"napari-gmm: '{layer.name}' is segmented per pixel: spatial smoothing needs 2-D or 3-D "
                "fits held in memory (choose 'fit each index of', or a crop, to smooth it)"
            )
        if spatial and labels_how == "intervals":
            if beta == "auto" and not self.bias_field.value:
                # interval labels are intensity cuts of the per-pixel model: the default smoothing
                # gives way, with a note; an explicit choice of both is refused
                spatial = False
                show_info(
                    f"napari-gmm: '{layer.name}' is segmented per pixel: intensity-interval labels cut the "
                    "per-pixel model's intensities (spatial smoothing is for 'most probable' labels)"
                )
            else:
                raise _InputError(
                    "napari-gmm: 'intensity intervals' labels cut the per-pixel model's intensities; the "
                    "spatial model's labels come from its neighbourhood prior. Set 'labels' to 'most probable', "
                    "or 'spatial smoothing' to off and untick 'correct uneven illumination'."
                )
        if spatial:
            kwargs.update(self._spatial_kwargs(layer, data, channel_axis, split_axis, beta))
        if self.out_posteriors.value:
            n_pix = math.prod(spatial_shape)
            need = 4 * k * n_pix
            if need > MAX_POSTERIOR_BYTES:
                raise _InputError(
                    f"napari-gmm: posterior maps for K={k} on {n_pix:,} pixels need {need / 1024**3:.1f} GB. "
                    "Untick 'posterior maps', lower K, or compute them for a crop from the console "
                    "with model.predict_proba."
                )
        apply = None
        if record is not None:
            apply, split_axis, kwargs = self._check_model_fits(record, layer, data, channel_axis, kwargs)
            kwargs["labels"] = "map"  # a loaded model labels through model.predict (most probable)
        params = {key: val for key, val in kwargs.items() if key != "mask"}
        params.update(
            split_axis=split_axis,
            channels_from_layers=[lyr.name for lyr in [layer, *extra]] if extra else None,
            mask=None if mask_layer is None else mask_layer.name,
            colour=colour,
            rgb=bool(layer.rgb),
        )
        if record is not None:
            params["applied_from"] = self.model_file.value.removeprefix("loaded: ") or "a model file"
        return _Job(
            layer=layer,
            data=data,
            colour=colour,
            channel_axis=channel_axis,
            split_axis=split_axis,
            mask=mask,
            kwargs=kwargs,
            params=params,
            want_quantised=bool(self.out_quantised.value),
            want_posteriors=bool(self.out_posteriors.value),
            apply=apply,
            spatial=spatial,
        )

    @staticmethod
    def _spatial_fits(data, channel_axis, split_axis) -> bool:
        """Whether the spatial model can run: 2-D or 3-D per fit, and in memory (lazy images up to
        MAX_POSTERIOR_BYTES of working memory)."""
        axes = [a for a in range(data.ndim) if a != channel_axis and a != split_axis]
        if len(axes) not in (2, 3):
            return False
        lazy = type(data).__module__.split(".")[0] == "dask"
        return not lazy or 4 * math.prod(int(n) for n in data.shape) * 8 <= MAX_POSTERIOR_BYTES

    def _spatial_kwargs(self, layer, data, channel_axis, split_axis, beta) -> dict:
        """beta, spacing (the layer's scale on the spatial axes), connectivity and bias_field for the
        spatial model, or an _InputError when the image is not 2-D / 3-D per fit."""
        axes = [a for a in range(data.ndim) if a != channel_axis and a != split_axis]
        if len(axes) not in (2, 3):
            what = (
                ("'spatial smoothing'" if beta != 0.0 else "")
                + (" and " if beta != 0.0 and self.bias_field.value else "")
                + ("'correct uneven illumination'" if self.bias_field.value else "")
            )
            hint = (
                "pick a time/z axis in 'fit each index of' (one fit per index)"
                if len(axes) > 3
                else "use a 2-D or 3-D image"
            )
            raise _InputError(
                f"napari-gmm: {what} works on 2-D or 3-D images, but each fit of '{layer.name}' would have "
                f"{len(axes)} spatial axes (shape {tuple(data.shape)}). Either {hint}, or set 'spatial "
                "smoothing' to off and untick 'correct uneven illumination'."
            )
        if type(data).__module__.split(".")[0] == "dask":
            # the spatial model runs on the pixels in memory (float32 image + label field + posteriors)
            need = 4 * math.prod(int(n) for n in data.shape) * 8
            if need > MAX_POSTERIOR_BYTES:
                raise _InputError(
                    f"napari-gmm: spatial smoothing loads '{layer.name}' into memory (about "
                    f"{need / 1024**3:.1f} GB for this lazy image). Set 'spatial smoothing' to off and untick "
                    "'correct uneven illumination' (the per-pixel model stays lazy), or segment a crop."
                )
        scale = tuple(float(v) for v in layer.scale)
        spacing = [scale[a] if a < len(scale) else 1.0 for a in axes]
        return {"beta": beta, "spacing": spacing, "connectivity": None, "bias_field": bool(self.bias_field.value)}

    def _stack_layers(self, layer, extra):
        """(data, channel_axis, shape): ``layer`` and the ``extra`` layers stacked on a new last axis
        (a copy; dask layers stay lazy)."""
        if len(extra) + 1 > MAX_CHANNELS:
            raise _InputError(
                f"napari-gmm: at most {MAX_CHANNELS} channels; {1 + len(extra)} layers are picked "
                "(image + more channels)."
            )
        if self.out_quantised.value:
            raise _InputError(
                "napari-gmm: the quantised image is not made for channels from separate layers "
                "(it would be one multichannel array); untick it, or segment one layer."
            )
        shape = _data_shape(layer)
        for lyr in extra:
            if _data_shape(lyr) != shape:
                raise _InputError(
                    f"napari-gmm: '{lyr.name}' has shape {_data_shape(lyr)} but '{layer.name}' has "
                    f"{shape}; channels from layers need the same shape."
                )
        arrays = [layer.data, *(lyr.data for lyr in extra)]
        if any(type(a).__module__.split(".")[0] == "dask" for a in arrays):
            import dask.array as da

            data = da.stack([da.asarray(a) for a in arrays], axis=-1)
        else:
            data = np.empty((*shape, len(arrays)), np.result_type(*[a.dtype for a in arrays]))
            for i, a in enumerate(arrays):
                data[..., i] = np.asarray(a)
        return data, len(shape), tuple(data.shape)

    @staticmethod
    def _check_model_fits(record, layer, data, channel_axis, kwargs):
        """(models to apply, split axis, kwargs) for applying a loaded model to ``data``, or an
        _InputError saying why the model does not fit this image."""
        models = record["models"]
        d = 1 if channel_axis is None else int(data.shape[channel_axis])
        if models[0].n_features != d:
            have = "grey" if d == 1 else f"{d} channels"
            want = "grey" if models[0].n_features == 1 else f"{models[0].n_features} channels"
            raise _InputError(
                f"napari-gmm: the loaded model is for {want} images but '{layer.name}' is read "
                f"as {have}. Pick an image like the one it was fitted on (or set 'channels')."
            )
        split_axis = None
        if record["split"] and len(models) > 1:
            split_axis = record["params"].get("split_axis")
            if (
                split_axis is None
                or split_axis >= data.ndim
                or data.shape[split_axis] != len(models)
                or split_axis == channel_axis
            ):
                raise _InputError(
                    f"napari-gmm: the loaded file holds {len(models)} models, one per index of axis "
                    f"{split_axis}, but '{layer.name}' has shape {tuple(data.shape)}. Apply it to an image "
                    f"with {len(models)} indices on that axis."
                )
        kwargs = dict(kwargs, n_components=models[0].n_components, bins=record["params"].get("bins"))
        if split_axis is None:
            return models[0], None, kwargs
        return ng.SplitModels(models, split_axis, channel_axis), split_axis, kwargs

    # ---------------------------------------------------------------- worker callbacks (GUI thread)
    def _on_progress(self, done: int, total: int):
        if not self._alive["alive"]:
            return
        if self._job is None or total <= 0:
            return
        self.progress.native.setRange(0, 1000)
        self.progress.native.setValue(int(1000 * min(max(done / total, 0.0), 1.0)))

    def _on_returned(self, result: _Result):
        if not self._alive["alive"]:
            return
        job = self._job
        if result.error is not None:
            if isinstance(result.error, InterruptedError):
                show_info("napari-gmm: segmentation cancelled; nothing was changed.")
                self.summary.value = "cancelled"
                return
            exc = result.error
            if isinstance(exc, (ValueError, TypeError, ng.FitError)):
                msg = f"napari-gmm: {exc}"
            else:
                msg = f"napari-gmm failed ({type(exc).__name__}): {exc}"
                _log.error("napari-gmm segmentation failed:\n%s", result.error_tb)
            self.summary.value = msg
            show_error(msg)
            return
        if job.cancel.is_set():
            show_info("napari-gmm: segmentation cancelled; nothing was changed.")
            self.summary.value = "cancelled"
            return
        if job.layer not in self._viewer.layers:
            show_info(f"napari-gmm: layer '{job.layer.name}' was removed during the fit; result discarded.")
            self.summary.value = "source layer removed; result discarded"
            return
        if job.spatial:  # the beta used (estimated with "auto"), also in each model's params
            used = [float(m.params.get("beta", 0.0)) for m in _models(result.model)]
            job.params["beta_used"] = used[0] if job.split_axis is None else used
        try:
            _, kept = self._write_layers(job, result)
        except Exception as exc:  # noqa: BLE001
            _log.exception("napari-gmm could not write the result layers")
            show_error(f"napari-gmm could not write the result layers ({type(exc).__name__}): {exc}")
            return
        self.summary.value = _summary_text(result.model, result.seconds, job.params)
        if kept:
            show_warning(kept_message(kept, self.labels_layer))

    def _on_warned(self, show_warning_args: tuple):
        if not self._alive["alive"]:
            return
        # the worker records warnings raised in its thread (e.g. ng.ConvergenceWarning, inf pixels
        # excluded) and hands over warnings.showwarning's arguments: message, category, file, line
        message = show_warning_args[0]
        show_warning(f"napari-gmm: {message}")

    def _on_errored(self, exc: BaseException):  # only for failures outside _compute's own try
        if not self._alive["alive"]:
            return
        show_error(f"napari-gmm failed ({type(exc).__name__}): {exc}")

    def _on_finished(self):
        if self._end_run("segment"):
            self.progress.native.setRange(0, 100)  # out of the busy mode of a run's start
            self.progress.native.setValue(0)

    # ---------------------------------------------------------------- output layers
    def _write_layers(self, job: _Job, result: _Result):
        labels_layer, kept = write_result_layers(
            self._viewer,
            job.layer,
            job.channel_axis,
            job.params,
            result.model,
            result.labels,
            quantised=result.quantised,
            posteriors=result.posteriors,
            bias=result.bias,
        )
        self.labels_layer = labels_layer
        return labels_layer, kept


# --------------------------------------------------------------------------------------------------
# output layers (shared with the Layers-menu commands)
# --------------------------------------------------------------------------------------------------
def write_result_layers(
    viewer, layer, channel_axis, params, model, labels, *, quantised=None, posteriors=None, bias=None
):
    """Write a segmentation of image ``layer`` into the viewer; return (labels layer, kept layers).

    The labels go on top (a new layer is added above everything), the posterior maps, bias field and
    quantised image below the labels, so the result stays visible. Our previous output is updated in place,
    except a labels layer the user edited: it is kept as is (listed in ``kept``) and the new labels
    go into a new layer beside it.
    """
    src = layer.name
    model_dict = [m.to_dict() for m in model] if isinstance(model, (list, tuple)) else model.to_dict()
    meta = {"model": model_dict, "params": dict(params), "source": src}
    kept: list = []

    def put(kind, name, data, out_meta, geom, image_kwargs=None, below=None):
        return put_output_layer(
            viewer, kind, name, data, out_meta, geom, image_kwargs, by_name=True, below=below, kept=kept
        )

    spatial = _spatial_geometry(layer, channel_axis)
    labels_layer = put(Labels, src + LABELS_SUFFIX, labels, dict(meta, output="labels"), spatial)
    if posteriors is not None:
        post_geom = _with_leading_axis(spatial, "component")
        put(
            Image,
            src + POSTERIORS_SUFFIX,
            posteriors,
            dict(meta, output="posteriors"),
            post_geom,
            image_kwargs={"colormap": "magma", "contrast_limits": (0.0, 1.0)},
            below=labels_layer,
        )
    if bias is not None:  # the spatial model's multiplicative illumination field (geometric mean 1)
        hi = float(np.nanmax(bias)) if bias.size else 1.0
        lo = float(np.nanmin(bias)) if bias.size else 1.0
        put(
            Image,
            src + BIAS_SUFFIX,
            np.asarray(bias, np.float32),
            dict(meta, output="bias"),
            spatial,
            image_kwargs={"colormap": "viridis", "contrast_limits": (lo, hi if hi > lo else lo + 1e-6)},
            below=labels_layer,
        )
    if quantised is not None:
        geom = _geometry(layer)
        kw = {"rgb": bool(layer.rgb)}
        if not layer.rgb and channel_axis is None:
            kw.update(colormap=layer.colormap, contrast_limits=tuple(layer.contrast_limits))
        elif layer.rgb:
            kw.update(contrast_limits=tuple(layer.contrast_limits))
        put(
            Image,
            src + QUANTISED_SUFFIX,
            quantised,
            dict(meta, output="quantised"),
            geom,
            image_kwargs=kw,
            below=labels_layer,
        )
    return labels_layer, kept


def kept_message(kept, new_layer) -> str:
    names = ", ".join(f"'{lyr.name}'" for lyr in kept)
    return (
        f"napari-gmm: {names} has manual edits, so it was kept as it is; the new labels are in "
        f"'{new_layer.name}'. Delete the layer you no longer need."
    )


# --------------------------------------------------------------------------------------------------
# layer helpers
# --------------------------------------------------------------------------------------------------
def _is_bool_layer(layer) -> bool:
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    return np.dtype(getattr(data, "dtype", np.float64)) == np.bool_


def _layer_problem(layer) -> str | None:
    """Why ``layer`` cannot be segmented (a message saying what to do), or None."""
    if isinstance(layer, Labels):
        return (
            f"napari-gmm: '{layer.name}' is a Labels layer: it holds classes, not intensities. "
            "Pick an Image layer to segment (a Labels layer can serve as the mask)."
        )
    if not isinstance(layer, Image):
        return f"napari-gmm: '{layer.name}' is a {type(layer).__name__} layer; pick an Image layer to segment."
    if _is_bool_layer(layer):
        return (
            f"napari-gmm: '{layer.name}' is a binary (bool) image: there are no intensities to fit. "
            "Pick an intensity image; a binary layer can serve as the mask."
        )
    return None


def _data_shape(layer) -> tuple:
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    return tuple(data.shape)


def _data_ndim(layer) -> int:
    return len(_data_shape(layer))


def _geometry(layer) -> dict:
    """The layer's world placement per (non-RGB) axis: scale, translate, units, axis labels."""
    geom = {"scale": tuple(layer.scale), "translate": tuple(layer.translate)}
    for key in ("units", "axis_labels"):  # napari >= 0.6
        if hasattr(layer, key):
            geom[key] = tuple(str(v) for v in getattr(layer, key))
    return geom


def _spatial_geometry(layer, channel_axis: int | None) -> dict:
    """Placement of outputs without the channel axis (labels): the channel axis of a non-RGB layer is
    dropped (an RGB layer's colour axis is not a layer axis)."""
    geom = _geometry(layer)
    if channel_axis is not None and not layer.rgb:
        geom = {key: tuple(v for a, v in enumerate(val) if a != channel_axis) for key, val in geom.items()}
    return geom


def _with_leading_axis(geom: dict, label: str) -> dict:
    """Placement of (K, *spatial) posterior maps: a unit-step, unlabelled-units component axis first."""
    lead = {"scale": 1.0, "translate": 0.0, "units": "pixel", "axis_labels": label}
    return {key: (lead[key], *val) for key, val in geom.items()}


def _disconnect(emitter, callback) -> None:
    try:
        emitter.disconnect(callback)
    except Exception:  # noqa: BLE001 - already gone
        pass


def _parse_float(text: str, name: str, *, allow_auto: bool) -> float | None:
    text = (text or "").strip()
    if allow_auto and text.lower() in ("", "auto", "none"):
        return None
    try:
        value = float(text)
    except ValueError:
        hint = "a number like 1e-6" + (" or 'auto'" if allow_auto else "")
        raise _InputError(f"napari-gmm: {name} = {text!r} is not a number; enter {hint}.") from None
    if not math.isfinite(value) or value < 0:
        raise _InputError(f"napari-gmm: {name} must be a finite number >= 0 (got {text!r}).")
    return value


#: the npe2 widget contribution (``napari_gmm._widgets._segment:segment_widget``): napari calls it with
#: the viewer (the constructor's parameter is annotated ``napari.viewer.Viewer``).
segment_widget = SegmentWidget
