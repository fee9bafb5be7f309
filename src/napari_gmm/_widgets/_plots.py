"""Plot dock widgets: "Mixture plot", "EM evolution" and "Pixel trace".

- :class:`MixturePlotWidget`: the image's histogram as a density with every component's weighted
  Gaussian in the colour its label has in the Labels layer, the mixture sum and the decision thresholds;
  colour / multichannel models get per-channel marginals and a two-channel density with covariance
  ellipses. Models fitted per index of an axis (``split_axis``) follow the dims slider.
- :class:`EMEvolutionWidget`: log-likelihood per EM iteration and the components at the iteration chosen
  with a slider (or played as an animation).
- :class:`PixelTraceWidget`: click a pixel of a frame stack: its intensity over time, the frames
  classified foreground shaded, the background mean +- sqrt(var_threshold) sigma and the pixel's final
  mixture (the background model replayed for that pixel, :func:`napari_gmm.plotting.pixel_history`);
  the traced pixel is marked by a cross in a Points layer ``"traced pixel"``.

The models are read from ``metadata["napari_gmm"]["model"]`` of Labels layers (written by the
"Gaussian mixture segmentation" widget, or by a script: ``{"model": model.to_dict(), "source": image
name, "params": {...}}``). The widgets redraw when that layer's data or metadata is replaced, when its
colours change, on the dims slider (per-frame models) and on napari's theme change.

The canvas and toolbar come from :class:`._canvas.ThemedCanvasWidget` (matplotlib's Qt backend in
napari's theme, in a scrolling dock body; napari-matplotlib is not needed): a bare canvas docked in
napari is white and squashed by the dock layout. The toolbar's Save button saves PNG, SVG, PDF ...
On top of it: an opaque figure background in the theme colour (so that saved files are readable outside napari),
theme-coloured legends, a minimum canvas size, and debounced redraws. Histograms come from
:func:`napari_gmm.histogram` (exact counts, cheap), are cached per layer / frame, and are computed in a
worker thread for large or lazy (dask) images so the viewer never freezes.
"""

from __future__ import annotations

import logging
import weakref
from collections import OrderedDict

import matplotlib.style as mplstyle
import napari
import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, PushButton, Slider, SpinBox
from napari.layers import Image, Labels
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error
from napari.utils.theme import get_theme
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import QDockWidget, QLabel, QMainWindow, QSizePolicy

import napari_gmm as ng
from napari_gmm import plotting

from ._canvas import ThemedCanvasWidget
from ._common import bound_combo_widths, bound_text_width, fit_scroll_width

__all__ = ["MixturePlotWidget", "EMEvolutionWidget", "PixelTraceWidget"]

_log = logging.getLogger(__name__)

#: histograms of images with more pixels than this (or lazy / dask data) are computed in a worker thread
THREAD_PIXELS = 2**22
#: redraw requests arriving within this many milliseconds are merged into one redraw
DEBOUNCE_MS = 40
#: the least share of the window's height the plots' tabbed dock gets when a second plot joins it
PLOT_DOCK_SHARE = 0.45
#: histograms kept per widget (per image, frame, bins and mask)
CACHE_SIZE = 64


# --------------------------------------------------------------------------------------------------
# helpers (no widget state)
# --------------------------------------------------------------------------------------------------
def gmm_meta(layer):
    """``layer.metadata["napari_gmm"]`` when it holds a model, else None."""
    meta = getattr(layer, "metadata", {}).get("napari_gmm")
    return meta if isinstance(meta, dict) and meta.get("model") is not None else None


def label_colors(layer, k):
    """RGBA colours (k, 4) that labels 1..k have in the Labels layer (what the viewer shows)."""
    values = np.arange(1, k + 1)
    try:
        cols = np.asarray(layer.colormap.map(values), dtype=float)
    except Exception:  # noqa: BLE001 - exotic colormaps: fall back to get_color per label
        cols = np.array(
            [layer.get_color(int(v)) if layer.get_color(int(v)) is not None else (0.5, 0.5, 0.5, 1) for v in values],
            dtype=float,
        )
    cols = cols.reshape(k, -1)
    if cols.shape[1] == 3:
        cols = np.hstack([cols, np.ones((k, 1))])
    cols[:, 3] = 1.0  # a hidden label is still drawn (opaque) in the plot
    return cols


def _layer_data(layer):
    data = layer.data
    if getattr(layer, "multiscale", False):
        data = data[0]
    if isinstance(layer, Image) and layer.rgb and data.shape[-1] == 4:
        data = data[..., :3]
    return data


def _first(combo):
    """First non-None choice of a (nullable) ComboBox, or None."""
    return next((c for c in combo.choices if c is not None), None)


def _newest(combo):
    """The top-most (newest, in napari's default order) non-None choice, or None."""
    return next((c for c in reversed(combo.choices) if c is not None), None)


def _is_lazy(a) -> bool:
    return not isinstance(a, np.ndarray)


def _channel_names(meta, d):
    if (meta.get("params") or {}).get("rgb") and d == 3:
        return ["red", "green", "blue"]
    return [f"channel {i}" for i in range(d)]


def _blend(c1, c2, t):
    from matplotlib.colors import to_rgb

    a, b = np.array(to_rgb(c1)), np.array(to_rgb(c2))
    return tuple(a * t + b * (1 - t))


# --------------------------------------------------------------------------------------------------
# base widget
# --------------------------------------------------------------------------------------------------
class _PlotWidget(ThemedCanvasWidget):
    """Themed canvas + toolbar with a magicgui form above and a status line below."""

    #: figure size in inches at creation (the canvas' size hint), and minimum canvas size in pixels
    figsize = (4.6, 3.8)
    min_canvas = (320, 300)
    #: the plot widgets alive (weakly held), to dock a new one as a tab of another
    _live: weakref.WeakSet = weakref.WeakSet()
    _serial_next = 0

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__(viewer)
        self.form = Container(labels=True)
        self.form.margins = (0, 0, 0, 0)
        self.body_layout.insertWidget(1, self.form.native)
        self.status = QLabel("")
        bound_text_width(self.status)  # a long message wraps instead of widening the dock
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.body_layout.addWidget(self.status)
        self.figure.set_size_inches(*self.figsize)
        self.canvas.setMinimumSize(*self.min_canvas)
        self.canvas.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.n_draws = 0
        self._tabbed = False
        _PlotWidget._serial_next += 1
        self._serial = _PlotWidget._serial_next
        _PlotWidget._live.add(self)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self._redraw_async)
        self._hist_cache: OrderedDict = OrderedDict()
        self._worker = None
        self._generation = 0
        self._connected: list = []
        self._models_cache = (None, None)
        self._layout_key, self._layout_pos = None, None
        self.canvas.mpl_connect("draw_event", self._on_mpl_draw)
        self.canvas.mpl_connect("resize_event", self._on_mpl_resize)
        viewer.layers.events.inserted.connect(self._on_layers_changed)
        viewer.layers.events.removed.connect(self._on_layers_changed)
        viewer.layers.events.moved.connect(self._on_layers_changed)

    def showEvent(self, event):
        super().showEvent(event)
        if not self._tabbed:
            self._tabbed = True
            QTimer.singleShot(0, self._tabify_with_other_plots)

    def _dock(self):
        """The QDockWidget holding this widget (napari's), or None when not docked."""
        w = self.parentWidget()
        while w is not None and not isinstance(w, QDockWidget):
            w = w.parentWidget()
        return w

    def _tabify_with_other_plots(self):
        """Docked beside another of the plugin's plots, become a tab of it instead of a strip.

        Stacked in one dock area with the segmentation and background widgets, each plot would get a
        sixth of the height and show its toolbar only (seen at 1600 x 1000 with all five docked); as
        tabs of the first plot opened, the plots share one dock, given at least ``PLOT_DOCK_SHARE`` of
        the window's height. A plot dragged elsewhere or floated stays where it is put."""
        dock = self._dock()
        win = None if dock is None else dock.parentWidget()
        if not isinstance(win, QMainWindow) or dock.isFloating():
            return
        area = win.dockWidgetArea(dock)
        for other in sorted(_PlotWidget._live, key=lambda w: w._serial):
            if other._serial >= self._serial:
                break
            try:
                other_dock = other._dock()
            except RuntimeError:  # its Qt object is already deleted
                continue
            if (
                other_dock is None
                or other_dock is dock
                or other_dock.parentWidget() is not win
                or other_dock.isFloating()
                or not other_dock.isVisible()
                or win.dockWidgetArea(other_dock) != area
            ):
                continue
            win.tabifyDockWidget(other_dock, dock)
            dock.show()
            dock.raise_()
            want = int(win.height() * PLOT_DOCK_SHARE)
            if dock.height() < want:
                win.resizeDocks([dock], [want], Qt.Orientation.Vertical)
            return

    def _finish_form(self):
        """Once the form is filled: combo boxes no wider than a few characters, and the scroll
        area as wide as the form."""
        bound_combo_widths(self.form.native)
        fit_scroll_width(self.scroll)

    # ---------------------------------------------------------------- theme
    def theme_style(self) -> dict:
        """Colours of the plot from napari's current theme."""
        th = get_theme(self.viewer.theme)
        text, bg = th.text.as_hex(), th.background.as_hex()
        dark = _dark({"background": bg})
        return {
            "text": text,
            "background": bg,
            "edge": th.secondary.as_hex(),
            "hist": _blend(text, bg, 0.55),
            "accent": "#5ab4ff" if dark else "#1f5fbf",
            "foreground": "#ff9f1c" if dark else "#f08c00",
            "shadow": "#7f7fff",
        }

    def _on_napari_theme_changed(self, event) -> None:
        super()._on_napari_theme_changed(event)
        self.request_redraw()

    def _prepare_figure(self):
        style = self.theme_style()
        self.figure.clear()
        self.figure.set_facecolor(style["background"])
        return style

    def _finish_figure(self, style, layout_key=None):
        """Style the axes and draw.

        Constrained layout costs more than the rest of a draw, so when a redraw has the same structure
        (``layout_key``) and canvas size as the previous one, the axes get the positions constrained
        layout found then (slider and dims redraws), and the layout engine is switched off for it.
        """
        fig = self.figure
        for ax in fig.axes:
            ax.set_facecolor("none")
            ax.title.set_color(style["text"])
        key = (
            None
            if layout_key is None
            else (layout_key, tuple(self.canvas.get_width_height()), len(fig.axes), self.viewer.theme)
        )
        if (
            key is not None
            and key == self._layout_key
            and self._layout_pos is not None
            and len(self._layout_pos) == len(fig.axes)
        ):
            fig.set_layout_engine("none")
            for ax, pos in zip(fig.axes, self._layout_pos):
                ax.set_position(pos)
        else:
            fig.set_layout_engine("constrained")
            self._layout_key, self._layout_pos = key, None
        self.canvas.draw_idle()
        self.n_draws += 1

    def _on_mpl_draw(self, event=None):
        if self.figure.get_layout_engine() is not None and self._layout_key is not None:
            self._layout_pos = [ax.get_position().frozen() for ax in self.figure.axes]

    def _on_mpl_resize(self, event=None):
        self._layout_key, self._layout_pos = None, None
        self.figure.set_layout_engine("constrained")

    def save(self, path, **kwargs):
        """Save the current figure (format from the extension: .png, .svg, .pdf ...)."""
        kwargs.setdefault("dpi", 150)
        kwargs.setdefault("facecolor", self.figure.get_facecolor())
        self.figure.savefig(path, **kwargs)

    # ---------------------------------------------------------------- layer pickers
    def _model_choices(self, _widget=None):
        return [(lyr.name, lyr) for lyr in self.viewer.layers if isinstance(lyr, Labels) and gmm_meta(lyr)]

    def _image_choices(self, _widget=None):
        return [(lyr.name, lyr) for lyr in self.viewer.layers if isinstance(lyr, Image)]

    def _on_layers_changed(self, event=None):
        try:
            self.form.reset_choices()
        except RuntimeError:  # widget deleted
            return
        self._connect_layer()
        self.request_redraw()

    def _connect_layer(self):
        """Listen to the chosen model layer's data / metadata / colormap events."""
        for emitter, cb in self._connected:
            try:
                emitter.disconnect(cb)
            except Exception:  # noqa: BLE001
                pass
        self._connected = []
        layer = getattr(self, "model_layer", None)
        layer = layer.value if layer is not None else None
        if layer is None:
            return
        for name in ("data", "metadata", "colormap"):
            em = getattr(layer.events, name, None)
            if em is not None:
                em.connect(self._on_model_layer_event)
                self._connected.append((em, self._on_model_layer_event))

    def _on_model_layer_event(self, event=None):
        self.request_redraw()

    def request_redraw(self, *args):
        """Redraw soon (several requests in a row give one redraw)."""
        try:
            self._timer.start()
        except RuntimeError:
            pass

    # ---------------------------------------------------------------- models and frames
    def models(self, layer):
        """The MixtureModel(s) of a layer's metadata (parsed once per metadata object)."""
        meta = gmm_meta(layer)
        if meta is None:
            return None
        raw = meta["model"]
        if self._models_cache[0] is raw:
            return self._models_cache[1]
        dicts = raw if isinstance(raw, (list, tuple)) else [raw]
        models = [m if isinstance(m, ng.MixtureModel) else ng.MixtureModel.from_dict(m) for m in dicts]
        self._models_cache = (raw, models)
        return models

    def frame_index(self, layer, models):
        """Index of the model to show: the dims slider's position along the split axis (per-frame)."""
        if len(models) == 1:
            return None
        params = gmm_meta(layer).get("params") or {}
        sa = params.get("split_axis")
        ca = params.get("channel_axis")
        if sa is None:
            return 0
        rgb = bool(params.get("rgb"))
        pix_ax = sa - 1 if (ca is not None and not rgb and sa > ca) else sa
        coords = layer.world_to_data(np.asarray(self.viewer.dims.point))
        i = int(round(float(coords[pix_ax]))) if pix_ax < len(coords) else 0
        return min(max(i, 0), len(models) - 1)

    # ---------------------------------------------------------------- histograms
    def _hist_job(self, layer, image, index):
        """(key, callable computing the histogram, n_pixels, lazy) or None when not possible."""
        if image is None:
            return None
        meta = gmm_meta(layer)
        params = meta.get("params") or {}
        ca = params.get("channel_axis")
        sa = params.get("split_axis") if index is not None else None
        data = _layer_data(image)
        if image.rgb:
            ca = data.ndim - 1
        if ca is not None and (ca >= data.ndim or data.shape[ca] != meta_n_features(meta)):
            raise ValueError(
                f"image '{image.name}' does not have the model's {meta_n_features(meta)} channels "
                f"on axis {ca}; pick the image the model was fitted on"
            )
        if ca is None and meta_n_features(meta) != 1:
            raise ValueError(
                f"the model has {meta_n_features(meta)} channels but '{image.name}' is grey; "
                "pick the image the model was fitted on"
            )
        mask = None
        mask_name = params.get("mask")
        if mask_name and mask_name in self.viewer.layers:
            mask = _layer_data(self.viewer.layers[mask_name])
        if sa is not None:
            if sa >= data.ndim:
                raise ValueError(f"image '{image.name}' has no axis {sa} to follow")
            data = data[(slice(None),) * sa + (index,)]
            pix_ax = sa - 1 if (ca is not None and sa > ca) else sa
            if ca is not None and ca > sa:
                ca -= 1
            if mask is not None and pix_ax < mask.ndim:
                mask = mask[(slice(None),) * pix_ax + (index,)]
        spatial = tuple(s for i, s in enumerate(data.shape) if i != ca)
        if mask is not None and tuple(mask.shape) != spatial:
            mask = None
        bins = params.get("bins")
        key = (id(image), id(image.data), index, ca, bins, None if mask is None else id(mask))
        n_pix = int(np.prod(spatial)) if spatial else 0

        def compute(data=data, ca=ca, mask=mask, bins=bins):
            m = None if mask is None else np.asarray(mask) != 0
            return ng.histogram(data, channel_axis=ca, mask=m, bins=bins)

        return key, compute, n_pix, _is_lazy(data)

    def _cached(self, key):
        if key in self._hist_cache:
            self._hist_cache.move_to_end(key)
            return self._hist_cache[key]
        return None

    def _store(self, key, hist):
        self._hist_cache[key] = hist
        while len(self._hist_cache) > CACHE_SIZE:
            self._hist_cache.popitem(last=False)

    # ---------------------------------------------------------------- drawing
    def refresh(self):
        """Redraw now (histograms computed in this thread if needed)."""
        self._redraw(blocking=True)

    def _redraw_async(self):
        self._redraw(blocking=False)

    def _redraw(self, blocking):
        self._generation += 1
        gen = self._generation
        try:
            state = self._gather()
        except Exception as exc:  # noqa: BLE001 - shown in the plot, never raised into napari
            self._draw_message(f"{exc}")
            return
        job = state.get("hist_job")
        hist = None
        if job is not None:
            key, compute, n_pix, lazy = job
            hist = self._cached(key)
            if hist is None:
                if blocking or (n_pix <= THREAD_PIXELS and not lazy):
                    try:
                        hist = compute()
                    except Exception as exc:  # noqa: BLE001
                        self._draw_message(f"cannot compute the histogram: {exc}")
                        return
                    self._store(key, hist)
                else:
                    self.status.setText("computing the histogram...")

                    def done(h, key=key, gen=gen):
                        self._store(key, h)
                        if gen == self._generation:
                            self._redraw(blocking=True)

                    self._worker = create_worker(
                        compute, _connect={"returned": done, "errored": self._on_worker_error}, _start_thread=True
                    )
                    return
        with mplstyle.context(self.napari_theme_style_sheet):
            style = self._prepare_figure()
            key = None
            try:
                key = self._draw(state, hist, style)
            except Exception as exc:  # noqa: BLE001
                _log.exception("napari-gmm plot failed")
                self.figure.clear()
                self._message_axes(f"plot failed: {exc}", style)
            self._finish_figure(style, key)

    def _on_worker_error(self, exc):
        self._draw_message(f"cannot compute the histogram: {exc}")

    def _message_axes(self, text, style):
        ax = self.figure.add_subplot()
        ax.set_axis_off()
        ax.text(
            0.5,
            0.5,
            text,
            ha="center",
            va="center",
            wrap=True,
            color=style["text"],
            fontsize="small",
            transform=ax.transAxes,
        )
        return ax

    def _draw_message(self, text):
        with mplstyle.context(self.napari_theme_style_sheet):
            style = self._prepare_figure()
            self._message_axes(text, style)
            self._finish_figure(style)
        self.status.setText(text)

    def _gather(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def _draw(self, state, hist, style):  # pragma: no cover - abstract
        raise NotImplementedError


def meta_n_features(meta):
    raw = meta["model"]
    first = raw[0] if isinstance(raw, (list, tuple)) else raw
    if isinstance(first, ng.MixtureModel):
        return first.n_features
    return len(first["means"][0]) if isinstance(first["means"][0], (list, tuple)) else 1


# --------------------------------------------------------------------------------------------------
# mixture plot
# --------------------------------------------------------------------------------------------------
class _ModelPlot(_PlotWidget):
    """Shared by the mixture and EM widgets: model / image pickers, dims following, colour options."""

    VIEWS = ("marginals + 2-channel density", "marginals", "2-channel density")

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__(viewer)
        self.model_layer = ComboBox(
            label="model (labels)",
            choices=self._model_choices,
            nullable=True,
            tooltip="Labels layer written by the segmentation widget: its model and its label colours are plotted.",
        )
        self.image_layer = ComboBox(
            label="histogram of",
            choices=self._image_choices,
            nullable=True,
            tooltip="Image whose histogram is drawn (default: the image the model was fitted on).",
        )
        self.channel_x = ComboBox(
            label="x channel", choices=self._channel_choices, tooltip="Channel on the x axis of the 2-channel density."
        )
        self.channel_y = ComboBox(
            label="y channel", choices=self._channel_choices, tooltip="Channel on the y axis of the 2-channel density."
        )
        self.view = ComboBox(
            label="colour view",
            choices=list(self.VIEWS),
            value=self.VIEWS[0],
            tooltip="Colour models: each channel's histogram with the components' "
            "marginals, and/or two channels' joint density with covariance ellipses.",
        )
        self._colour_widgets = [self.view, self.channel_x, self.channel_y]
        self.model_layer.changed.connect(self._on_model_layer_changed)
        self.image_layer.changed.connect(self.request_redraw)
        for w in self._colour_widgets:
            w.changed.connect(self.request_redraw)
        viewer.dims.events.current_step.connect(self._on_dims)
        viewer.layers.selection.events.active.connect(self._on_active_layer)
        self.destroyed.connect(
            lambda *_, em=viewer.layers.selection.events.active, cb=self._on_active_layer: _disconnect(em, cb)
        )

    def _thresholds(self, model, hist, iteration=None):
        """model.thresholds over the histogram's range, cached (slider and dims redraws)."""
        if hist is None or hist.n_pixels == 0 or model.n_components < 2:
            return None
        lo, hi = float(hist.low[0]), float(hist.high[0])
        if not hi > lo:
            return np.zeros(0)
        cache = self.__dict__.setdefault("_th_cache", {})
        key = (id(model), iteration, lo, hi)
        if key not in cache:
            if len(cache) > 512:
                cache.clear()
            cache[key] = (model, plotting.model_at(model, iteration).thresholds(lo, hi))
        return cache[key][1]

    def _channel_choices(self, _widget=None):
        layer = self.model_layer.value if hasattr(self, "model_layer") else None
        meta = gmm_meta(layer) if layer is not None else None
        if meta is None:
            return [("channel 0", 0), ("channel 1", 1)]
        d = max(meta_n_features(meta), 2)
        names = _channel_names(meta, d)
        return [(names[i], i) for i in range(d)]

    def _pick_defaults(self):
        """Select the active model layer, else the newest (top-most) one, and its source image."""
        active = self.viewer.layers.selection.active
        if active is not None and isinstance(active, Labels) and gmm_meta(active):
            self.model_layer.value = active
        elif self.model_layer.value is None and _newest(self.model_layer) is not None:
            self.model_layer.value = _newest(self.model_layer)
        self._on_model_layer_changed()

    def _on_active_layer(self, event=None):
        """Follow the selection: a model layer selected in the layer list is plotted."""
        try:
            active = self.viewer.layers.selection.active
            if (
                active is not None
                and active is not self.model_layer.value
                and isinstance(active, Labels)
                and gmm_meta(active)
                and active in self.model_layer.choices
            ):
                self.model_layer.value = active
        except RuntimeError:  # widget deleted
            pass

    def _on_model_layer_changed(self, value=None):
        layer = self.model_layer.value
        self._connect_layer()
        meta = gmm_meta(layer) if layer is not None else None
        if meta is not None:
            src = meta.get("source")
            if src in self.viewer.layers and isinstance(self.viewer.layers[src], Image):
                self.image_layer.value = self.viewer.layers[src]
            self.channel_x.reset_choices()
            self.channel_y.reset_choices()
            colour = meta_n_features(meta) > 1
            if colour and self.channel_x.value == self.channel_y.value:
                self.channel_x.value, self.channel_y.value = 0, 1
            for w in self._colour_widgets:
                w.visible = colour
            for w in getattr(self, "_grey_widgets", []):
                w.visible = not colour
        else:
            for w in self._colour_widgets:
                w.visible = False
        self.request_redraw()

    def _on_layers_changed(self, event=None):
        had = self.model_layer.value
        super()._on_layers_changed(event)
        if had is None and self.model_layer.value is None and _newest(self.model_layer) is not None:
            self._pick_defaults()
        elif had is not self.model_layer.value:
            self._on_model_layer_changed()

    def _on_dims(self, event=None):
        layer = self.model_layer.value
        meta = gmm_meta(layer) if layer is not None else None
        if meta is not None and isinstance(meta["model"], (list, tuple)) and len(meta["model"]) > 1:
            self.request_redraw()
        elif getattr(self, "_follow_dims_extra", False):
            self.request_redraw()

    def _base_state(self) -> dict:
        layer = self.model_layer.value
        if layer is None or layer not in self.viewer.layers or gmm_meta(layer) is None:
            raise ValueError(
                "No fitted model to plot.\nRun Plugins > napari GMM > Gaussian mixture "
                "segmentation, then pick its labels layer in 'model (labels)'."
            )
        models = self.models(layer)
        index = self.frame_index(layer, models)
        model = models[0 if index is None else index]
        image = self.image_layer.value
        if image is not None and image not in self.viewer.layers:
            image = None
        job = self._hist_job(layer, image, index)
        colours = label_colors(layer, model.n_components)
        meta = gmm_meta(layer)
        return {
            "layer": layer,
            "model": model,
            "index": index,
            "n_models": len(models),
            "hist_job": job,
            "colors": colours,
            "meta": meta,
            "image": image,
        }

    def _title(self, state):
        m = state["model"]
        where = f", index {state['index']} of {state['n_models']}" if state["index"] is not None else ""
        name = state["layer"].name
        name = name if len(name) <= 32 else name[:29] + "..."  # long layer names cut the title off
        return f"{name} (K = {m.n_components}{where})"

    def _draw_colour(self, state, hist, style, *, iteration=None, axes_area=None):
        """Marginals and/or the 2-channel density of a colour model into the figure (or a subfigure)."""
        fig = axes_area or self.figure
        model = state["model"]
        d = model.n_features
        names = _channel_names(state["meta"], d)
        view = self.view.value
        a = 0 if self.channel_x.value is None else int(self.channel_x.value)
        b = 1 if self.channel_y.value is None else int(self.channel_y.value)
        if a == b:
            b = (a + 1) % d
        out = {}
        if view == self.VIEWS[1]:
            axes = fig.subplots(d, 1, squeeze=False)[:, 0]
            out["marginals"] = plotting.plot_marginals(
                list(axes),
                model,
                hist,
                state["colors"],
                channel_names=names,
                bins=int(getattr(self, "bins", None) and self.bins.value or 256),
                iteration=iteration,
                style=style,
                log=bool(getattr(self, "log_y", None) and self.log_y.value),
            )
        elif view == self.VIEWS[2]:
            ax = fig.add_subplot()
            out["density"] = plotting.plot_density_2d(
                ax,
                model,
                hist,
                state["colors"],
                channels=(a, b),
                channel_names=names,
                iteration=iteration,
                style=style,
                cmap="gray" if _dark(style) else "gray_r",
            )
        else:
            gs = fig.add_gridspec(d, 2, width_ratios=(1, 1.35), wspace=0.05)
            axes = [fig.add_subplot(gs[i, 0]) for i in range(d)]
            out["marginals"] = plotting.plot_marginals(
                axes,
                model,
                hist,
                state["colors"],
                channel_names=names,
                bins=int(getattr(self, "bins", None) and self.bins.value or 256),
                iteration=iteration,
                style=style,
                log=bool(getattr(self, "log_y", None) and self.log_y.value),
            )
            ax = fig.add_subplot(gs[:, 1])
            out["density"] = plotting.plot_density_2d(
                ax,
                model,
                hist,
                state["colors"],
                channels=(a, b),
                channel_names=names,
                iteration=iteration,
                style=style,
                cmap="gray" if _dark(style) else "gray_r",
            )
            ax.yaxis.set_label_position("right")
            ax.yaxis.tick_right()
        return out


def _dark(style):
    from matplotlib.colors import to_rgb

    return sum(to_rgb(style["background"])) < 1.5


class MixturePlotWidget(_ModelPlot):
    """Histogram of the image with the fitted mixture, in the Labels layer's colours.

    Parameters
    ----------
    viewer : napari.viewer.Viewer

    Attributes
    ----------
    artists : dict
        What the last redraw drew (:func:`napari_gmm.plotting.plot_mixture`'s dict for grey models,
        ``{"marginals": ..., "density": ...}`` for colour models).

    Notes
    -----
    From the napari console::

        from napari_gmm._widgets._plots import MixturePlotWidget
        w = MixturePlotWidget(viewer); viewer.window.add_dock_widget(w, name="Mixture plot")
        w.model_layer.value = viewer.layers["camera GMM labels"]; w.bins.value = 64; w.log_y.value = True
        w.save("mixture.svg")
    """

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__(viewer)
        self.bins = SpinBox(
            label="bins (0 = auto)",
            value=0,
            min=0,
            max=1 << 16,
            tooltip="Histogram bars (0 = auto: one per grey level, at most 256).",
        )
        self.log_y = CheckBox(
            text="log density",
            value=False,
            tooltip="Logarithmic density axis (small classes and tails become visible).",
        )
        self.show_thresholds = CheckBox(
            text="decision thresholds",
            value=True,
            tooltip="Dashed lines where the most probable label changes; the values are listed under the plot.",
        )
        self.form.extend(
            [self.model_layer, self.image_layer, self.bins, self.log_y, self.show_thresholds, *self._colour_widgets]
        )
        for w in (self.bins, self.log_y, self.show_thresholds):
            w.changed.connect(self.request_redraw)
        self._grey_widgets = [self.show_thresholds]
        self.artists: dict = {}
        self.form.reset_choices()
        self._pick_defaults()
        self._finish_form()
        self.refresh()

    def _gather(self):
        return self._base_state()

    def _draw(self, state, hist, style):
        model = state["model"]
        self.artists = {}
        sel = getattr(model, "selection", None)  # K chosen automatically: the criterion against K below
        searched = sel is not None and len(getattr(sel, "candidates", None) or ()) > 1
        if model.n_features == 1:
            if searched:
                gs = self.figure.add_gridspec(2, 1, height_ratios=(3, 1.1))
                ax = self.figure.add_subplot(gs[0])
                sax = self.figure.add_subplot(gs[1])
            else:
                ax = self.figure.add_subplot()
            self.artists = plotting.plot_mixture(
                ax,
                model,
                hist,
                state["colors"],
                bins=int(self.bins.value) or None,
                log=bool(self.log_y.value),
                thresholds=bool(self.show_thresholds.value),
                style=style,
                threshold_values=self._thresholds(model, hist),
                legend=False,
            )
            _legend_below(self.figure, ax, self.artists, style)
            _drop_crowded_threshold_labels(ax, self.artists, self.canvas)
            ax.set_title(self._title(state), fontsize="small")
            if searched:
                self.artists["selection"] = plotting.plot_selection(sax, model, style=style)
                sax.set_ylabel(sel.criterion.upper() + " - min", fontsize="x-small")
                sax.set_xlabel("K", fontsize="x-small")
                sax.tick_params(labelsize="x-small")
                sax.set_title(f"{sel.criterion.upper()} chose K = {sel.n_components}", fontsize="x-small")
            th = self.artists["threshold_values"]
            txt = f"thresholds: {', '.join(f'{t:.4g}' for t in th)}" if th.size and th.size <= 12 else ""
        else:
            self.artists = self._draw_colour(state, hist, style)
            self.figure.suptitle(self._title(state), fontsize="small", color=style["text"])
            txt = ""
        src = f"histogram of '{state['image'].name}'" if hist is not None else "no image: curves only"
        self.status.setText(f"{src}. {txt}".strip())
        return ("mixture", model.n_features == 1, self.view.value, bool(self.log_y.value), id(state["layer"]), searched)


# --------------------------------------------------------------------------------------------------
# EM evolution
# --------------------------------------------------------------------------------------------------
class EMEvolutionWidget(_ModelPlot):
    """Log-likelihood per EM iteration, and the components at the iteration chosen with the slider.

    Parameters
    ----------
    viewer : napari.viewer.Viewer

    Attributes
    ----------
    artists : dict
        ``{"loglik": plot_log_likelihood dict, "mixture": plot_mixture dict (grey) or colour views}``.
    """

    figsize = (4.6, 5.2)
    min_canvas = (320, 420)

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__(viewer)
        self.iteration = Slider(
            label="iteration",
            value=0,
            min=0,
            max=1,
            tracking=True,
            tooltip="EM iteration whose components are drawn (0 = the start).",
        )
        self.play = PushButton(text="Play", tooltip="Step through the EM iterations (press again to stop).")
        self.form.extend([self.model_layer, self.image_layer, self.iteration, self.play, *self._colour_widgets])
        self.iteration.changed.connect(self.request_redraw)
        self.play.changed.connect(self._toggle_play)
        self._play_timer = QTimer(self)
        self._play_timer.setInterval(250)
        self._play_timer.timeout.connect(self._step)
        self.artists: dict = {}
        self._n_iter_seen = None
        self.form.reset_choices()
        self._pick_defaults()
        self._finish_form()
        self.refresh()

    def _toggle_play(self, value=None):
        if self._play_timer.isActive():
            self._play_timer.stop()
            self.play.text = "Play"
        else:
            if self.iteration.value >= self.iteration.max:
                self.iteration.value = 0
            self._play_timer.start()
            self.play.text = "Stop"

    def _step(self):
        if self.iteration.value >= self.iteration.max:
            self._toggle_play()
            return
        self.iteration.value = self.iteration.value + 1

    def _gather(self):
        state = self._base_state()
        n = len(state["model"].history["log_likelihood"]) - 1
        if self.iteration.max != max(n, 1) or self._n_iter_seen is not state["model"]:
            # a new model: show its final state; the slider spans its history
            self.iteration.changed.disconnect(self.request_redraw)
            try:
                self.iteration.max = max(n, 1)
                if self._n_iter_seen is not state["model"]:
                    self.iteration.value = n
                self.iteration.value = min(self.iteration.value, n)
            finally:
                self.iteration.changed.connect(self.request_redraw)
            self._n_iter_seen = state["model"]
        state["iteration"] = int(min(self.iteration.value, n))
        return state

    def _draw(self, state, hist, style):
        model, it = state["model"], state["iteration"]
        ll = model.history["log_likelihood"]
        gs = self.figure.add_gridspec(2, 1, height_ratios=(1, 1.7))
        ax_ll = self.figure.add_subplot(gs[0])
        self.artists = {"loglik": plotting.plot_log_likelihood(ax_ll, model, it, style=style)}
        conv = "converged" if model.converged else "not converged"
        # two short lines: one long title was cut off at the default dock width
        ax_ll.set_title(f"{self._title(state)}\niteration {it} of {len(ll) - 1}, {conv}", fontsize="small")
        # iteration 0 lies below the plotted climb: shown when that costs at most 3x the scale
        _keep_in_view(ax_ll, float(ll[0]), max_stretch=3.0)
        _keep_in_view(ax_ll, float(ll[it]))
        if model.n_features == 1:
            ax = self.figure.add_subplot(gs[1])
            self.artists["mixture"] = plotting.plot_mixture(
                ax,
                model,
                hist,
                state["colors"],
                iteration=it,
                style=style,
                thresholds=True,
                threshold_values=self._thresholds(model, hist, it),
                legend=False,
            )
            _legend_below(self.figure, ax, self.artists["mixture"], style)
            _drop_crowded_threshold_labels(ax, self.artists["mixture"], self.canvas)
        else:
            sub = self.figure.add_subfigure(gs[1])
            sub.set_facecolor("none")
            self.artists["mixture"] = self._draw_colour(state, hist, style, iteration=it, axes_area=sub)
        th = self.artists["mixture"].get("threshold_values", np.zeros(0)) if model.n_features == 1 else np.zeros(0)
        th_txt = f"; thresholds {', '.join(f'{t:.4g}' for t in th)}" if 0 < th.size <= 12 else ""
        self.status.setText(
            f"iteration {it}: log-likelihood / pixel {float(ll[it]):.6g} (final {float(ll[-1]):.6g}){th_txt}"
        )
        return ("em", id(state["layer"])) if model.n_features == 1 else None


# --------------------------------------------------------------------------------------------------
# pixel trace
# --------------------------------------------------------------------------------------------------
#: name of the Points layer marking the traced pixel
MARKER_NAME = "traced pixel"

#: parameters of subtract_background that the per-pixel replay takes from a result layer's metadata
#: (the preset, noise model and bleaching factors included, so that a fluorescence trace matches)
_BG_KEYS = ng.background.REPLAY_KEYS


class PixelTraceWidget(_PlotWidget):
    """Click a pixel of a frame stack: intensity over time with its background model.

    Parameters
    ----------
    viewer : napari.viewer.Viewer

    Notes
    -----
    The background model of the clicked pixel is replayed frame by frame
    (:func:`napari_gmm.plotting.pixel_history`) with the parameters stored in the foreground layer's
    ``metadata["napari_gmm"]["params"]`` (``BackgroundResult.params``), or the defaults of
    :func:`napari_gmm.subtract_background`. Shaded frames are those the foreground layer marks 1 (the
    post-filtered result), or the replay's own classification without a foreground layer.

    From the console: ``w.show_pixel(y, x)``.
    """

    figsize = (4.8, 3.6)
    min_canvas = (340, 300)

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__(viewer)
        self.stack_layer = ComboBox(
            label="stack",
            choices=self._stack_choices,
            nullable=True,
            tooltip="Image layer holding the frames (time on axis 0 unless the result's parameters say otherwise).",
        )
        self.foreground_layer = ComboBox(
            label="foreground",
            choices=self._fg_choices,
            nullable=True,
            tooltip="Labels layer with the foreground masks (T, Y, X), whose parameters are used for the replay.",
        )
        self.pick = CheckBox(
            text="pick the pixel on click", value=True, tooltip="A click on the canvas (not a drag) traces that pixel."
        )
        self.mark = CheckBox(
            text="mark the pixel (points layer)",
            value=True,
            tooltip=f"Show the traced pixel as a cross in a Points layer '{MARKER_NAME}'.",
        )
        self.form.extend([self.stack_layer, self.foreground_layer, self.pick, self.mark])
        self.mark.changed.connect(self._update_marker)
        self.stack_layer.changed.connect(self._forget)
        self.foreground_layer.changed.connect(self._forget)
        self.pixel = None  # (y, x) in the stack's data coordinates
        self._world = None  # world position of the picked pixel
        self.artists: dict = {}
        self._trace = None
        self.form.reset_choices()
        self._pick_defaults()
        viewer.mouse_drag_callbacks.append(self._on_mouse)
        viewer.dims.events.current_step.connect(self._on_dims)
        self.destroyed.connect(lambda *_, v=viewer, cb=self._on_mouse: _remove_callback(v, cb))
        self._finish_form()
        self.refresh()

    # ---------------------------------------------------------------- pickers
    def _stack_choices(self, _widget=None):
        return [(lyr.name, lyr) for lyr in self.viewer.layers if isinstance(lyr, Image) and lyr.ndim >= 3]

    def _fg_choices(self, _widget=None):
        return [(lyr.name, lyr) for lyr in self.viewer.layers if isinstance(lyr, Labels) and lyr.ndim >= 3]

    def _pick_defaults(self):
        if self.stack_layer.value is None and _first(self.stack_layer) is not None:
            self.stack_layer.value = _first(self.stack_layer)
        if self.foreground_layer.value is None:
            for lyr in self.viewer.layers:
                meta = lyr.metadata.get("napari_gmm") if isinstance(lyr, Labels) else None
                if isinstance(meta, dict) and meta.get("output") == "foreground":
                    self.foreground_layer.value = lyr
                    break

    def _on_layers_changed(self, event=None):
        super()._on_layers_changed(event)
        self._pick_defaults()

    def _forget(self, value=None):
        self._trace = None
        self.request_redraw()

    def _on_dims(self, event=None):
        if self._trace is not None:
            self.request_redraw()

    # ---------------------------------------------------------------- clicks
    def _on_mouse(self, viewer, event):
        """Mouse-drag callback: a click without drag on the canvas picks the pixel under the cursor."""
        try:
            if not self.pick.value or getattr(event, "button", 1) != 1:
                return
        except RuntimeError:  # widget deleted
            _remove_callback(viewer, self._on_mouse)
            return
        start = np.asarray(event.position, float)
        moved = False
        yield
        while event.type == "mouse_move":
            if np.abs(np.asarray(event.position, float) - start).max() > 1.0:
                moved = True
            yield
        if not moved:
            self.pick_world(start)

    def pick_world(self, position):
        """Trace the pixel of the stack under world ``position`` (as napari's ``event.position``)."""
        stack = self.stack_layer.value
        if stack is None:
            show_error("napari-gmm: no stack layer to trace; pick one in the Pixel trace widget.")
            return
        coords = np.round(np.asarray(stack.world_to_data(np.asarray(position, float)))).astype(int)
        t_ax, c_ax = self._axes(stack)
        shape = _layer_data(stack).shape[: stack.ndim]
        spatial = [a for a in range(stack.ndim) if a not in (t_ax, c_ax)]
        if any(not 0 <= coords[a] < shape[a] for a in spatial):
            return  # clicked outside the stack
        self._world = np.asarray(position, float)
        self.pixel = tuple(int(coords[a]) for a in spatial[-2:])
        self._trace = None
        self._marker_world = np.asarray(stack.data_to_world(coords.astype(float)), float)[-2:]
        extent = [shape[a] * abs(float(stack.scale[a])) for a in spatial[-2:]]
        self._marker_size = float(np.clip(min(extent) / 40.0, 2.0, 50.0))
        self.refresh()
        self._update_marker()

    def _update_marker(self, value=None):
        """Cross at the traced pixel in the Points layer MARKER_NAME (2D: shown on every frame)."""
        layers = self.viewer.layers
        marker = layers[MARKER_NAME] if MARKER_NAME in layers else None
        if not self.mark.value or getattr(self, "_marker_world", None) is None:
            if marker is not None:
                marker.visible = False
            return
        if marker is None:
            active = layers.selection.active
            marker = self.viewer.add_points(
                self._marker_world[None],
                name=MARKER_NAME,
                symbol="cross",
                size=self._marker_size,
                face_color="#ff9f1c",
                border_width=0,
                ndim=2,
            )
            if active is not None and active in layers:
                layers.selection.active = active  # keep the user's layer selected
        else:
            marker.data = self._marker_world[None]
            marker.size = self._marker_size
            marker.visible = True

    def show_pixel(self, y, x):
        """Trace pixel ``(y, x)`` (data coordinates of the stack's two last spatial axes; other axes such
        as z at the viewer's current position)."""
        stack = self.stack_layer.value
        if stack is None:
            show_error("napari-gmm: no stack layer to trace; pick one in the Pixel trace widget.")
            return
        t_ax, c_ax = self._axes(stack)
        coords = np.asarray(stack.world_to_data(np.asarray(self.viewer.dims.point)), float)
        spatial = [a for a in range(stack.ndim) if a not in (t_ax, c_ax)]
        coords[spatial[-2]], coords[spatial[-1]] = y, x
        self.pick_world(stack.data_to_world(coords))

    # ---------------------------------------------------------------- data
    def result_params(self) -> dict:
        """``BackgroundResult.params`` stored on the foreground layer (empty without one)."""
        fg = self.foreground_layer.value
        meta = fg.metadata.get("napari_gmm") if fg is not None else None
        return dict((meta or {}).get("params") or {})

    def replay_params(self) -> dict:
        params = self.result_params()
        return {k: params[k] for k in _BG_KEYS if k in params}

    def _axes(self, stack):
        """(time axis, channel axis or None) among the stack layer's data axes (rgb: no channel axis)."""
        params = self.result_params()
        t_ax = int(params.get("time_axis") or 0)
        c_ax = params.get("channel_axis")
        if stack.rgb or c_ax is None or c_ax >= stack.ndim:
            c_ax = None
        return t_ax, c_ax

    def _gather(self):
        stack = self.stack_layer.value
        if stack is None or stack not in self.viewer.layers:
            raise ValueError("No frame stack: open a (T, Y, X) image stack, run Background model, then click a pixel.")
        if self.pixel is None or getattr(self, "_world", None) is None:
            raise ValueError(
                f"Click a pixel of '{stack.name}' to see its intensity over time and its background model."
            )
        t_ax, c_ax = self._axes(stack)
        if self._trace is None:
            data = _layer_data(stack)
            coords = np.round(np.asarray(stack.world_to_data(self._world))).astype(int)
            idx = [int(c) for c in coords]
            idx[t_ax] = slice(None)
            if c_ax is not None:
                idx[c_ax] = slice(None)
            trace = np.asarray(data[tuple(idx)])
            if c_ax is not None and c_ax < t_ax:
                trace = trace.T
            params = self.replay_params()
            if "data_range" not in params:
                params["data_range"] = _stack_range(data, t_ax)
            self._trace = plotting.pixel_history(trace, **params)
            self._fg_trace = self._foreground_trace(stack, t_ax, c_ax, trace.shape[0])
        current = self._current_frame(stack, t_ax)
        return {"trace": self._trace, "fg": self._fg_trace, "stack": stack, "current": current, "hist_job": None}

    def _foreground_trace(self, stack, t_ax, c_ax, n_t):
        """The foreground layer's values at the picked pixel over time (its axes: the stack's without
        channels), or None when it does not fit the stack."""
        fg = self.foreground_layer.value
        if fg is None or fg not in self.viewer.layers:
            return None
        spatial = [a for a in range(stack.ndim) if a != c_ax]
        if fg.ndim != len(spatial):
            return None
        t_pos = spatial.index(t_ax)
        coords = np.round(np.asarray(fg.world_to_data(self._world))).astype(int)
        data = _layer_data(fg)
        if data.shape[t_pos] != n_t:
            return None
        idx = [int(c) for c in coords]
        if any(not 0 <= idx[a] < data.shape[a] for a in range(fg.ndim) if a != t_pos):
            return None
        idx[t_pos] = slice(None)
        return np.asarray(data[tuple(idx)])

    def _current_frame(self, stack, t_ax):
        point = stack.world_to_data(np.asarray(self.viewer.dims.point))
        return int(round(float(point[t_ax]))) if t_ax < len(point) else None

    def _draw(self, state, hist, style):
        tr = state["trace"]
        gs = self.figure.add_gridspec(1, 2, width_ratios=(3.2, 1), wspace=0.04)
        ax = self.figure.add_subplot(gs[0])
        ax_m = self.figure.add_subplot(gs[1], sharey=ax)
        rgb = tr["values"].ndim == 2 and tr["values"].shape[1] == 3
        self.artists = plotting.plot_pixel_trace(
            ax,
            tr,
            foreground=state["fg"],
            style=style,
            current=state["current"],
            channel_names=["R", "G", "B"] if rgb else None,
        )
        lo, hi = ax.get_ylim()
        mix = plotting.plot_pixel_mixture(ax_m, tr["mixture"], y_range=(lo, hi), style=style)
        self.artists["mixture"] = mix
        ax_m.tick_params(labelleft=False)
        y, x = self.pixel
        ax.set_title(f"{state['stack'].name}: pixel (y={y}, x={x})", fontsize="small")
        n_fg = int(np.sum((state["fg"] if state["fg"] is not None else tr["foreground"]) == 1))
        src = "foreground layer" if state["fg"] is not None else "replayed model"
        mix = tr["mixture"]
        sd = np.sqrt(mix["variances"])
        means = np.asarray(mix["means"], float)
        modes = "; ".join(
            f"w {mix['weights'][k]:.2f} mean {_fmt(means[k])} sd {sd[k]:.3g}"
            f"{' (bg)' if mix['is_background'][k] else ''}"
            for k in range(len(sd))
        )
        self.status.setText(
            f"pixel (y={y}, x={x}): {n_fg} of {tr['values'].shape[0]} frames foreground "
            f"({src}); var_threshold {tr['var_threshold']:g}.\nfinal modes: {modes}"
        )
        return ("trace", id(state["stack"]), self.pixel)


def _fmt(v):
    v = np.atleast_1d(v)
    return f"{v[0]:.4g}" if v.size == 1 else "(" + ", ".join(f"{a:.4g}" for a in v) + ")"


def _stack_range(data, t_ax):
    """subtract_background's default data range (the core decides it: default_data_range)."""
    return float(ng.background.default_data_range(data, time_axis=t_ax))


def _legend_below(fig, ax, artists, style):
    """The legend under the axes, outside the data (inside, it covered the histogram's peaks at
    the default dock size)."""
    handles = list(artists.get("components") or []) if len(artists.get("components") or []) <= 8 else []
    if artists.get("sum") is not None:
        handles.append(artists["sum"])
    if artists.get("hist") is not None:
        handles.insert(0, artists["hist"])
    if not handles:
        return None
    # a figure legend "outside" the axes: constrained layout makes room for it under the plots
    leg = fig.legend(
        handles,
        [h.get_label() for h in handles],
        loc="outside lower center",
        ncols=min(len(handles), 5),
        fontsize="x-small",
        frameon=False,
        handlelength=1.2,
        columnspacing=0.8,
    )
    for t in leg.get_texts():
        t.set_color(style.get("text", "black"))
    artists["legend"] = leg
    return leg


def _drop_crowded_threshold_labels(ax, artists, canvas, min_px=48):
    """Remove the thresholds' value labels when two of them would be closer than ``min_px`` on
    screen (they overlapped at the default dock size); the values stay in the status line."""
    th = np.sort(np.asarray(artists.get("threshold_values", np.zeros(0)), float))
    if th.size < 2:
        return
    lo, hi = ax.get_xlim()
    width_px = max(canvas.width() * ax.get_position().width, 1.0)
    if np.min(np.diff(th)) / max(hi - lo, 1e-12) * width_px >= min_px:
        return
    values = {f" {t:.4g}" for t in th}
    for text in list(ax.texts):
        if text.get_text() in values:
            text.remove()


def _keep_in_view(ax, y, max_stretch=None):
    """Lower the y axis to show ``y`` (unless that would stretch the axis more than
    ``max_stretch`` times)."""
    lo, hi = ax.get_ylim()
    if not np.isfinite(y) or y >= lo:
        return
    if max_stretch is not None and (hi - y) > max_stretch * (hi - lo):
        return
    ax.set_ylim(y - 0.04 * (hi - y), hi)


def _disconnect(emitter, callback):
    try:
        emitter.disconnect(callback)
    except Exception:  # noqa: BLE001 - already gone
        pass


def _remove_callback(viewer, cb):
    try:
        viewer.mouse_drag_callbacks.remove(cb)
    except (ValueError, RuntimeError):
        pass
