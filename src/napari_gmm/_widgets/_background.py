"""Dock widget "Background model": MOG2 background subtraction of a time-stack layer.

A thin shell around :func:`napari_gmm.subtract_background`: it reads the chosen Image layer and
options, runs the model in a napari worker thread with a per-frame progress bar and a working
Cancel, and writes (or updates in place, on re-runs) the output layers:

- ``"<image> foreground"`` (Labels, same axes as the image without channels: 1 foreground,
  2 shadow, 0 background);
- ``"<image> background"`` (Image: the background of every frame, or only the last frame);
- optionally ``"<image> foreground image"`` (input minus background, or input masked by the
  foreground).

Each output carries ``metadata["napari_gmm"] = {"params": ..., "source": ..., "output": ...}``
(JSON-able). Errors are napari notifications and leave the viewer untouched; a cancelled run
adds or changes nothing (layers are only written once the whole stack is done).
"""

from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FloatSpinBox,
    Label,
    ProgressBar,
    PushButton,
    SpinBox,
)
from napari.layers import Image, Labels
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QTimer

import napari_gmm as ng

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
)

if TYPE_CHECKING:
    import napari

__all__ = ["BackgroundWidget", "background_widget"]

FOREGROUND_SUFFIX = " foreground"
BACKGROUND_SUFFIX = " background"
FG_IMAGE_SUFFIX = " foreground image"
BURN_IN = {
    "frames spread over the stack": "frames",
    "whole stack (one extra pass)": "all",
    "none (online, as OpenCV)": None,
}
NOISE = {
    "estimate from the stack": "auto",
    "off (learned variances)": None,
    "given (gain, offset, read noise)": "given",
}
BACKGROUND_OUT = {"every frame": "all", "last frame only": "last", "none": None}
FG_IMAGE_OUT = {"none": None, "input - background": "difference", "input masked": "masked"}
SHADOWS = {"auto (colour only)": "auto", "on": True, "off": False}


@dataclass
class _Job:
    layer: Any
    data: Any
    time_axis: int
    channel_axis: int | None
    kwargs: dict
    n_frames: int = 0
    cancel: threading.Event = field(default_factory=threading.Event)


@dataclass
class _Result:
    result: Any = None
    seconds: float = 0.0
    error: BaseException | None = None
    error_tb: str = ""


def _compute(job: _Job, relay: ProgressRelay | None) -> _Result:
    """Worker-thread body: never raises; errors (and cancellation) go back in the result."""
    t0 = time.perf_counter()

    def progress(done, total):
        if job.cancel.is_set():
            raise ng.Cancelled("background model cancelled")
        if relay is not None:
            relay.progressed.emit(int(done), int(total))

    try:
        # tiles=False: a dask layer is streamed frame by frame, with progress and Cancel, into
        # in-memory layers (lazy tiles would recompute a tile's whole time axis per viewed frame)
        with COMPUTE_LOCK:  # one heavy Numba job at a time (see _common)
            res = ng.subtract_background(
                job.data,
                time_axis=job.time_axis,
                channel_axis=job.channel_axis,
                progress=progress,
                tiles=False,
                **job.kwargs,
            )
        return _Result(result=res, seconds=time.perf_counter() - t0)
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the GUI thread
        return _Result(error=exc, error_tb=traceback.format_exc())


class BackgroundWidget(RunCancelMixin, Container):
    """Background model (MOG2) of a time-stack Image layer.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        The viewer whose layers are read and written.

    Notes
    -----
    Scripting from the napari console::

        w = BackgroundWidget(viewer)
        viewer.window.add_dock_widget(w)
        w.image.value = viewer.layers["video"]
        w.var_threshold.value = 20
        worker = w.run()        # the napari worker, or None when the inputs were refused
    """

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__(labels=False)
        self._viewer = viewer
        self._init_run_state()

        d = ng.background.preset_params(ng.background.DEFAULT_PRESET)
        self.preset = ComboBox(
            label="preset",
            choices=list(ng.background.PRESETS),
            value=ng.background.DEFAULT_PRESET,
            tooltip="camera video: OpenCV's MOG2 (video, shadows, waving trees).\n"
            "fluorescence time-lapse: microscopy photon counts: noise model,\n"
            "bleaching correction, objects may pause up to half the stack.\n"
            "Choosing one sets the fields below.",
        )
        self.image = ComboBox(
            label="image",
            choices=self._image_choices,
            nullable=False,
            tooltip="Time-stack Image layer (T, Y, X) or (T, Y, X, C).",
        )
        self.time_axis = ComboBox(
            label="time axis", choices=self._axis_choices, tooltip="Axis along which frames follow each other."
        )
        self.channel_axis = ComboBox(
            label="channels", choices=self._channel_choices, tooltip="Axis holding channels (RGB layers: automatic)."
        )
        self.history = SpinBox(
            label="history",
            value=d["history"],
            min=1,
            max=1_000_000,
            tooltip="Learning rate settles at 1 / history (frames).",
        )
        self.var_threshold = FloatSpinBox(
            label="var_threshold",
            value=d["var_threshold"],
            min=0.1,
            max=1000.0,
            step=1.0,
            tooltip="Squared Mahalanobis distance to a background mode under which a pixel is "
            "background (16 = 4 sigma).",
        )
        self.n_mixtures = SpinBox(
            label="n_mixtures",
            value=d["n_mixtures"],
            min=1,
            max=ng.background.MAX_MIXTURES,
            tooltip="Maximum number of Gaussian modes per pixel.",
        )
        self.background_ratio = FloatSpinBox(
            label="background_ratio",
            value=d["background_ratio"],
            min=0.01,
            max=1.0,
            step=0.05,
            tooltip="Modes whose cumulative weight passes this make the background.",
        )
        self.detect_shadows = ComboBox(
            label="shadows",
            choices=list(SHADOWS),
            value="auto (colour only)",
            tooltip="Label darker versions of the background 2.",
        )
        self.median_size = SpinBox(
            label="median filter",
            value=d["median_size"],
            min=0,
            max=15,
            step=1,
            tooltip=(
                "Majority filter window of the mask (odd; 0 or 1: off). A window of n erases objects "
                "narrower than about n/2 + 1 pixels (and shaves the corners of larger ones) and removes "
                "specks of that size: 3 keeps objects from 3 pixels wide; 5 or 7 suit video of large "
                "objects in clutter (leaves, camera jitter)."
            ),
        )
        self.fill_holes = SpinBox(
            label="fill holes (px)",
            value=d["fill_holes"],
            min=0,
            max=10_000_000,
            step=64,
            tooltip=(
                "Background or shadow regions enclosed by foreground, of at most this many pixels,\n"
                "become foreground (a car's window of road colour); 0: off. Never removes foreground.\n"
                "Off in the fluorescence preset: gaps enclosed by touching cells stay background."
            ),
        )
        self.burn_in = ComboBox(
            label="burn-in",
            choices=list(BURN_IN),
            value="frames spread over the stack",
            tooltip="Learn the scene before classifying, so the first frames are not all foreground.",
        )
        self.burn_in_frames = SpinBox(
            label="burn-in frames", value=100, min=1, max=1_000_000, tooltip="With 'frames spread over the stack'."
        )
        self.noise = ComboBox(
            label="noise model",
            choices=list(NOISE),
            value="off (learned variances)",
            tooltip="Shot + read noise var = gain (I - offset) + read_noise^2: the\n"
            "tests use it instead of learned variances (microscopy).",
        )
        # small steps: the spin boxes keep as many decimals (gains of float data are tiny)
        self.gain = FloatSpinBox(
            label="gain", value=1.0, min=1e-6, max=1e6, step=1e-6, tooltip="Data units per photo-electron (ADU / e-)."
        )
        self.offset = FloatSpinBox(
            label="offset", value=0.0, min=-1e9, max=1e9, step=1e-4, tooltip="Camera dark level (data units)."
        )
        self.read_noise = FloatSpinBox(
            label="read noise",
            value=0.0,
            min=0.0,
            max=1e6,
            step=1e-4,
            tooltip="Read noise standard deviation (data units).",
        )
        self.bleach = CheckBox(
            text="correct bleaching / global drift",
            value=False,
            tooltip="Divide a per-frame factor (estimated from the stack) out before the model.",
        )
        self.background_out = ComboBox(
            label="background",
            choices=list(BACKGROUND_OUT),
            value="every frame",
            tooltip="Background layer: every frame (memory: like the input), only the last frame, or none.",
        )
        self.fg_image_out = ComboBox(
            label="foreground image",
            choices=list(FG_IMAGE_OUT),
            value="none",
            tooltip="Also write the input minus the background (float32), or the input where it is\n"
            "foreground and 0 elsewhere (input dtype); memory: like the input.",
        )
        self.run_button = PushButton(
            text="Run", tooltip="Model the chosen stack in the background; click again to cancel (nothing is changed)."
        )
        self.progress = ProgressBar(
            value=0,
            min=0,
            max=1000,
            label="progress",
            tooltip="Frames done in every phase (estimates, burn-in, frames).",
        )
        self.progress.visible = False
        self.summary = Label(value="", tooltip="What the last run did, or why it was refused.")
        self.form = Container(labels=True)
        self.form.extend(
            [
                self.preset,
                self.image,
                self.time_axis,
                self.channel_axis,
                self.history,
                self.var_threshold,
                self.n_mixtures,
                self.background_ratio,
                self.detect_shadows,
                self.median_size,
                self.fill_holes,
                self.burn_in,
                self.burn_in_frames,
                self.noise,
                self.gain,
                self.offset,
                self.read_noise,
                self.bleach,
                self.background_out,
                self.fg_image_out,
            ]
        )
        self.form.margins = (0, 0, 0, 0)
        # the form, button, bar and summary scroll inside the dock, as in the segmentation widget:
        # the dock's minimum height is then a few lines, not the whole form's (cramped, or taller
        # than the screen, with all five plugin widgets docked)
        self.body = Container(labels=False)
        self.body.extend([self.form, self.run_button, self.progress, self.summary])
        self.body.native.layout().addStretch(1)  # extra height below the summary, not between rows
        self.margins = (0, 0, 0, 0)
        self._scroll = scroll_area(self.body.native)
        self.native.layout().addWidget(self._scroll)
        # the summary wraps at the dock's width: a long error message (a NaN frame) in an unwrapped
        # label widened the dock until the viewer's canvas was squeezed out
        bound_text_width(self.summary.native)
        self.run_button.changed.connect(self._on_run_clicked)
        self.image.changed.connect(self._on_image_changed)
        self.preset.changed.connect(self._on_preset_changed)
        self.noise.changed.connect(self._on_noise_changed)
        self._on_noise_changed()
        self.reset_choices()
        # combo boxes as wide as a few words, not as their longest item, and the scroll area as
        # wide as the form; again once napari's stylesheet (a larger font) is applied, with the
        # label column aligned: the fields were cut at the dock's right edge
        bound_combo_widths(self.native)
        fit_scroll_width(self._scroll)
        QTimer.singleShot(0, lambda alive=self._alive: alive["alive"] and self._fit_form())

    def _fit_form(self):
        try:
            labels = [w._labeled_widget()._label_widget.native for w in self.form if w._labeled_widget() is not None]
        except (AttributeError, RuntimeError):  # magicgui internals changed / widget deleted
            labels = []
        if labels:
            width = max(lbl.sizeHint().width() for lbl in labels)
            for lbl in labels:
                lbl.setMinimumWidth(width)
        fit_scroll_width(self._scroll)

    # ---------------------------------------------------------------- choices
    def reset_choices(self, *_):
        """Refresh the layer and axis pickers (napari calls this when layers change); the form
        sits in the scroll area, not among this container's own widgets."""
        body = getattr(self, "body", None)
        if body is not None:
            body.reset_choices()

    def _image_choices(self, _widget=None):
        return [
            (lyr.name, lyr) for lyr in self._viewer.layers if isinstance(lyr, Image) and not self._is_own_output(lyr)
        ]

    @staticmethod
    def _is_own_output(layer) -> bool:
        info = layer.metadata.get("napari_gmm") if hasattr(layer, "metadata") else None
        return isinstance(info, dict) and info.get("output") in ("background", "foreground_image")

    def _current_layer(self):
        combo = self.__dict__.get("image")
        if combo is None:
            try:
                combo = self.image
            except AttributeError:
                return None
        return combo.value

    def _layer_ndim(self):
        layer = self._current_layer()
        return 0 if layer is None else len(layer.data.shape)

    def _axis_choices(self, _widget=None):
        n = self._layer_ndim()
        layer = self._current_layer()
        rgb = bool(layer is not None and layer.rgb)
        return [(f"axis {a}", a) for a in range(n - (1 if rgb else 0))] or [("axis 0", 0)]

    def _channel_choices(self, _widget=None):
        layer = self._current_layer()
        if layer is not None and layer.rgb:
            return [("RGB (last axis)", -1)]
        return [("none (grey)", None)] + [(f"axis {a}", a) for a in range(self._layer_ndim())]

    def _on_image_changed(self, value=None):
        self.time_axis.reset_choices()
        self.channel_axis.reset_choices()

    def _on_noise_changed(self, value=None):
        given = NOISE[self.noise.value] == "given"
        for w in (self.gain, self.offset, self.read_noise):
            w.visible = given

    def _on_preset_changed(self, value=None):
        """Set every field to the preset's value (the user may then change any of them)."""
        self.load_params(dict(ng.background.preset_params(self.preset.value), preset=self.preset.value))

    def load_params(self, params: dict) -> None:
        """Set the fields from a parameter dict: ``BackgroundResult.params`` as stored in a result
        layer's ``metadata["napari_gmm"]["params"]``, or :func:`napari_gmm.background.preset_params`.
        Keys it does not know are ignored; missing keys keep their field."""
        p = dict(params)
        if p.get("preset") in ng.background.PRESETS and self.preset.value != p["preset"]:
            with self.preset.changed.blocked():
                self.preset.value = p["preset"]
        for name in ("history", "n_mixtures", "median_size", "fill_holes"):
            if name in p:
                getattr(self, name).value = int(p[name])
        for name in ("var_threshold", "background_ratio"):
            if name in p:
                getattr(self, name).value = float(p[name])
        if "detect_shadows" in p:
            self.detect_shadows.value = {v: k for k, v in SHADOWS.items()}[p["detect_shadows"]]
        if "burn_in" in p:
            b = p["burn_in"]
            if b in ("all", None):
                self.burn_in.value = {v: k for k, v in BURN_IN.items()}[b]
            else:
                self.burn_in.value = "frames spread over the stack"
                self.burn_in_frames.value = int(b)
        if "noise" in p:
            nz = p["noise"]
            if isinstance(nz, dict):
                self.noise.value = "given (gain, offset, read noise)"
                self.gain.value = float(nz["gain"])
                self.offset.value = float(nz.get("offset", 0.0))
                self.read_noise.value = float(nz.get("read_noise", 0.0))
            else:
                self.noise.value = {v: k for k, v in NOISE.items()}[nz]
        if "bleach_correction" in p:
            self.bleach.value = bool(p["bleach_correction"])
        for name, table, widget in (
            ("background", BACKGROUND_OUT, self.background_out),
            ("foreground_image", FG_IMAGE_OUT, self.fg_image_out),
        ):
            if name in p:
                widget.value = {v: k for k, v in table.items()}[p[name]]

    # ---------------------------------------------------------------- public API
    def run(self, image=None):
        """Validate the inputs and start the background model in a worker thread.

        Returns the started worker, or None when the inputs were refused (a notification says
        why).
        """
        if self.is_running:
            show_error("napari-gmm: a background model is already running; wait for it or press Cancel.")
            return None
        try:
            if image is not None:
                if image not in self._viewer.layers:
                    raise ng.InputError(f"layer '{image.name}' is not in this viewer.")
                self.image.value = image
            job = self._make_job(self.image.value)
        except (ng.InputError, ValueError, TypeError) as exc:
            show_error(f"napari-gmm: {exc}")
            return None
        self._job = self._alive["job"] = job
        self.run_button.text = "Cancel"
        self.progress.value = 0
        self.progress.visible = True
        self.summary.value = running_message("background", job.layer.name)
        self._worker = create_worker(
            _compute,
            job,
            self._relay,
            _connect={"returned": self._on_returned, "errored": self._on_errored, "finished": self._on_finished},
            _start_thread=True,
        )
        return self._worker

    def _make_job(self, layer) -> _Job:
        if layer is None:
            raise ng.InputError("no image layer: open a time stack (T, Y, X) or (T, Y, X, C) and pick it in 'image'.")
        if not isinstance(layer, Image):
            raise ng.InputError(f"'{layer.name}' is not an Image layer.")
        if getattr(layer, "multiscale", False):
            raise ng.InputError(
                f"'{layer.name}' is a multiscale (pyramid) layer; run "
                "napari_gmm.subtract_background(layer.data[0]) from the console."
            )
        data = layer.data
        ndim = len(data.shape)
        channel_axis = self.channel_axis.value
        if layer.rgb:
            channel_axis = ndim - 1
            if data.shape[-1] == 4:
                data = data[..., :3]  # a view: alpha is ignored
        time_axis = self.time_axis.value
        if time_axis is None or time_axis >= ndim:
            time_axis = 0
        if channel_axis is not None and channel_axis == time_axis:
            raise ng.InputError("the time axis and the channel axis are the same; pick different axes.")
        burn = BURN_IN[self.burn_in.value]
        if burn == "frames":
            burn = int(self.burn_in_frames.value)
        noise = NOISE[self.noise.value]
        if noise == "given":
            noise = dict(
                gain=float(self.gain.value), offset=float(self.offset.value), read_noise=float(self.read_noise.value)
            )
        kwargs = dict(
            preset=self.preset.value,
            noise=noise,
            bleach_correction=bool(self.bleach.value),
            history=int(self.history.value),
            var_threshold=float(self.var_threshold.value),
            n_mixtures=int(self.n_mixtures.value),
            background_ratio=float(self.background_ratio.value),
            detect_shadows=SHADOWS[self.detect_shadows.value],
            median_size=int(self.median_size.value),
            fill_holes=int(self.fill_holes.value),
            burn_in=burn,
            background=BACKGROUND_OUT[self.background_out.value],
            foreground_image=FG_IMAGE_OUT[self.fg_image_out.value],
        )
        if kwargs["median_size"] > 1 and kwargs["median_size"] % 2 == 0:
            raise ng.InputError("the median filter window must be odd (or 0 / 1 for none).")
        # the core's checks, before any thread starts: shapes, axes, parameters (no data read)
        ng.background.check_background_args(
            data, time_axis=time_axis, channel_axis=channel_axis if not layer.rgb else ndim - 1, **kwargs
        )
        return _Job(
            layer=layer,
            data=data,
            time_axis=time_axis,
            channel_axis=None if layer.rgb else channel_axis,
            kwargs=kwargs,
            n_frames=int(data.shape[time_axis]),
        )

    # ---------------------------------------------------------------- worker callbacks
    def _on_progress(self, done: int, total: int):
        if not self._alive["alive"] or self._job is None or total <= 0:
            return
        self.progress.value = int(1000 * min(max(done / total, 0.0), 1.0))
        # the classified frames are the last n_frames units of the work; before them come
        # the noise and bleaching estimates and the burn-in
        n = self._job.n_frames
        first = total - n
        if done > first:
            self.summary.value = f"frame {done - first} / {n}"
        else:
            self.summary.value = f"learning the stack (noise, bleaching, burn-in): {100 * done / max(first, 1):.0f} %"

    def _on_returned(self, out: _Result):
        if not self._alive["alive"]:
            return
        job = self._job
        if out.error is not None:
            if isinstance(out.error, InterruptedError) or job.cancel.is_set():
                show_info("napari-gmm: background model cancelled; nothing was changed.")
                self.summary.value = "cancelled"
                return
            msg = f"napari-gmm: {out.error}"
            if not isinstance(out.error, (ValueError, TypeError)):
                msg = f"napari-gmm failed ({type(out.error).__name__}): {out.error}"
            self.summary.value = msg
            show_error(msg)
            return
        if job.cancel.is_set():
            show_info("napari-gmm: background model cancelled; nothing was changed.")
            self.summary.value = "cancelled"
            return
        if job.layer not in self._viewer.layers:
            show_info(f"napari-gmm: layer '{job.layer.name}' was removed; result discarded.")
            return
        try:
            self._write_layers(job, out.result)
        except Exception as exc:  # noqa: BLE001
            show_error(f"napari-gmm could not write the result layers ({type(exc).__name__}): {exc}")
            return
        fg = out.result.foreground
        n = fg.shape[0]
        msg = (
            f"{n} frames in {out.seconds:.1f} s ({n / max(out.seconds, 1e-9):.0f}"
            f" fps); foreground {100 * np.mean(fg == 1):.1f} % of pixels"
        )
        res = out.result
        if res.noise is not None:
            msg += (
                f"\nnoise: gain {res.noise.gain:.3g}, offset {res.noise.offset:.4g}, "
                f"read noise {res.noise.read_noise:.3g}"
            )
        if res.frame_factors is not None:
            msg += f"\nbleaching: last frame at {100 * res.frame_factors[-1]:.0f} % of the first"
        self.summary.value = msg

    def _on_errored(self, exc: BaseException):
        if self._alive["alive"]:
            show_error(f"napari-gmm failed ({type(exc).__name__}): {exc}")

    def _on_finished(self):
        self._end_run("background")

    # ---------------------------------------------------------------- output layers
    def _write_layers(self, job: _Job, res):
        layer = job.layer
        src = layer.name
        ndim = len(job.data.shape)
        t_ax = job.time_axis
        c_ax = (ndim - 1) if layer.rgb else job.channel_axis
        meta = {"params": dict(res.params), "source": src}
        # axes of the image without its channel axis; outputs go back to the input's order
        spatial = [a for a in range(ndim) if a != c_ax]
        t_pos = spatial.index(t_ax)
        scale = tuple(layer.scale[a] for a in spatial)
        translate = tuple(layer.translate[a] for a in spatial)
        fg = np.moveaxis(res.foreground, 0, t_pos)
        fg_layer = self._put_layer(
            Labels, src + FOREGROUND_SUFFIX, fg, dict(meta, output="foreground"), dict(scale=scale, translate=translate)
        )
        self._below = fg_layer  # the opaque background and foreground images go under the labels

        def back(a, with_time=True):
            """Time-first, channels-last array -> the input's axis order."""
            if c_ax is None or layer.rgb:
                return np.moveaxis(a, 0, t_pos) if with_time else a
            if with_time:
                return np.moveaxis(a, [0, -1], [t_ax, c_ax])
            return np.moveaxis(a, -1, c_ax - (1 if c_ax > t_ax else 0))

        kw = {"rgb": bool(layer.rgb)}
        if not layer.rgb and c_ax is None:
            kw.update(colormap=layer.colormap.name, contrast_limits=tuple(layer.contrast_limits))
        full_geom = dict(scale=tuple(layer.scale), translate=tuple(layer.translate))
        if res.background is not None:
            if res.params["background"] == "all":
                self._put_layer(
                    Image, src + BACKGROUND_SUFFIX, back(res.background), dict(meta, output="background"), full_geom, kw
                )
            else:
                keep = [a for a in range(ndim) if a != t_ax]
                geom = dict(
                    scale=tuple(layer.scale[a] for a in keep), translate=tuple(layer.translate[a] for a in keep)
                )
                self._put_layer(
                    Image,
                    src + BACKGROUND_SUFFIX,
                    back(res.background, False),
                    dict(meta, output="background"),
                    geom,
                    kw,
                )
        if res.foreground_image is not None:
            kw2 = dict(kw)
            if res.params["foreground_image"] == "difference":
                kw2.pop("contrast_limits", None)
                kw2["rgb"] = False if layer.rgb else kw2["rgb"]
                data = back(res.foreground_image)
                if layer.rgb:  # signed difference: show as channels
                    data = np.moveaxis(data, -1, 0)
                    full = dict(scale=(1.0,) + tuple(layer.scale[:-1]), translate=(0.0,) + tuple(layer.translate[:-1]))
                    self._put_layer(
                        Image, src + FG_IMAGE_SUFFIX, data, dict(meta, output="foreground_image"), full, kw2
                    )
                    return
            else:
                data = back(res.foreground_image)
            self._put_layer(Image, src + FG_IMAGE_SUFFIX, data, dict(meta, output="foreground_image"), full_geom, kw2)

    def _put_layer(self, kind, name, data, meta, geom, image_kwargs=None):
        # background outputs: any of ours for the source (see put_output_layer); images below the
        # foreground labels, so that the result stays visible
        below = getattr(self, "_below", None) if kind is not Labels else None
        return put_output_layer(self._viewer, kind, name, data, meta, geom, image_kwargs, by_name=False, below=below)


#: the npe2 widget contribution (``napari_gmm._widgets._background:background_widget``): napari
#: calls it with the viewer (the constructor's parameter is annotated ``napari.viewer.Viewer``).
background_widget = BackgroundWidget
