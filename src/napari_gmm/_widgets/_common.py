"""Pieces shared by the computing dock widgets (segmentation, background model)."""

from __future__ import annotations

import re
import threading
import zlib

import numpy as np
from napari.layers import Image, Labels
from qtpy.QtCore import QObject, Qt, Signal
from qtpy.QtWidgets import QComboBox, QFrame, QLabel, QScrollArea, QSizePolicy, QWidget

#: Serialises the widgets' computations. Numba's workqueue threading layer (the one left where no
#: OpenMP or TBB is available, e.g. pip wheels on macOS) aborts the process when two threads launch
#: parallel kernels at once; OpenMP is safe, but a second heavy job would only compete for the cores.
COMPUTE_LOCK = threading.Lock()


#: the kinds of job ("segment", "background") that have finished once in this process
_WARM: set[str] = set()


def running_message(kind: str, layer_name: str) -> str:
    """The status line while a job runs; the first job of its kind in a session also says why it
    may take a while (Numba loads its compiled kernels, or compiles them once after installing)."""
    msg = f"running on '{layer_name}'..."
    if kind not in _WARM:
        # short lines: the status label sizes the dock widget, and one long line widened it
        # until the viewer's canvas was squeezed out (seen in a headless screenshot)
        msg += (
            "\nfirst run of this session: Numba loads\nits kernels (the first run after installing\n"
            "compiles them: up to a minute, once;\n"
            "python -m napari_gmm.precompile does\nit ahead)"
        )
    return msg


def mark_warm(kind: str) -> None:
    """Record that a job of this kind has run: its kernels are loaded."""
    _WARM.add(kind)


#: the kinds whose warm-up thread was started
_WARMING: set[str] = set()


def _warm_up_segment() -> None:
    # napari imports pandas lazily when the session's first Labels layer is made (its features
    # table): 0.5 s of the first result's display, in the GUI thread, unless done here
    try:
        import pandas  # noqa: F401
    except ImportError:
        pass
    import napari_gmm as ng

    ramp = np.arange(64, dtype=np.uint8).reshape(8, 8)
    for img, kw in (
        (ramp, {}),
        (ramp.astype(np.uint16) * 500, {}),
        (ramp.astype(np.float32), {}),
        (np.stack([ramp, ramp[::-1], ramp.T], axis=-1), {"channel_axis": -1}),
    ):
        ng.segment(img, 2, **kw)


def start_warm_up(kind: str) -> threading.Thread | None:
    """Load the Numba kernels of ``kind`` ("segment"), and pandas (napari's first Labels layer
    imports it in the GUI thread), in a background thread once per session, so that the first Run
    does not pay for them: the first run of a session froze the viewer for 0.5-1.2 s. Returns the
    thread (None if already started)."""
    if kind in _WARM or kind in _WARMING or kind != "segment":
        return None
    _WARMING.add(kind)

    def work():
        try:
            with COMPUTE_LOCK:
                _warm_up_segment()
            mark_warm(kind)
        except Exception:  # noqa: BLE001 - a failed warm-up only means a slower first run
            pass

    thread = threading.Thread(target=work, name=f"napari-gmm warm-up ({kind})", daemon=True)
    thread.start()
    return thread


class ProgressRelay(QObject):
    """Carries ``progress(done, total)`` calls from the computing thread to the GUI thread.

    The signal is emitted in the worker thread; Qt queues it to this object's (GUI) thread.
    """

    progressed = Signal(int, int)
    #: the name of the phase now running ("fitting", "quantised image" ...), shown on the bar
    phase = Signal(str)


# --------------------------------------------------------------------------------------------------
# geometry: a dock widget must never squeeze the viewer's canvas or push the window off the screen
# --------------------------------------------------------------------------------------------------
#: a combo box shows at least this many characters of an item; longer layer names are elided
COMBO_MIN_CHARS = 12


def bound_text_width(*labels: QLabel) -> None:
    """Let ``labels`` (status lines, summaries, error messages) wrap at the dock's width instead of
    widening it: word wrap on and their width hint ignored by the layout. An unwrapped label as wide
    as a long error message once widened the dock until the viewer's canvas was 0 px wide."""
    for lbl in labels:
        lbl.setWordWrap(True)
        lbl.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        lbl.setMinimumWidth(0)


def bound_combo_widths(root: QWidget) -> None:
    """Combo boxes under ``root`` take the width of :data:`COMBO_MIN_CHARS` characters, not of their
    longest item (a long layer name would otherwise widen the dock)."""
    for combo in root.findChildren(QComboBox):
        combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        combo.setMinimumContentsLength(COMBO_MIN_CHARS)


def scroll_area(body: QWidget) -> QScrollArea:
    """``body`` in a vertical scroll area without frame: the dock's minimum height is then a few
    lines, not the height of the whole form (five docked widgets stacked their minimum heights
    into a 2,700 px window that no screen shows). Horizontally the area keeps the body's minimum
    width (no horizontal scroll bar)."""
    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    area.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
    area.setWidget(body)
    area.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Expanding)
    fit_scroll_width(area)
    return area


def fit_scroll_width(area: QScrollArea) -> None:
    """Keep the scroll area at least as wide as its body's minimum (plus the scroll bar)."""
    body = area.widget()
    bar = area.verticalScrollBar().sizeHint().width()
    area.setMinimumWidth(body.minimumSizeHint().width() + bar)


class RunCancelMixin:
    """The Run / Cancel button of a computing widget.

    :meth:`_init_run_state` sets ``self._worker`` (None when idle), ``self._job`` (with a ``cancel``
    threading.Event), the progress relay and the lifetime guard; the widget provides
    ``self.run_button``, ``self.run()`` and ``self._on_progress(done, total)``.
    """

    def _init_run_state(self) -> None:
        self._worker = None
        self._job = None
        self._relay = ProgressRelay()
        self._relay.progressed.connect(self._on_progress)
        # If the widget is closed (or the viewer quits) while a job runs, the worker must neither
        # touch deleted Qt widgets nor keep computing: the handler holds no reference to the widget.
        self._alive = alive = {"alive": True, "job": None}

        def _on_destroyed(*_):
            alive["alive"] = False
            if alive["job"] is not None:
                alive["job"].cancel.set()

        self.native.destroyed.connect(_on_destroyed)

    def _end_run(self, kind: str) -> bool:
        """Back to idle after a job of ``kind`` ("segment", "background") finished, whatever its
        outcome; False when the widget is gone (nothing to reset)."""
        mark_warm(kind)  # its kernels are loaded now
        hook = getattr(self, "on_idle", None)  # e.g. a Layers-menu command's clean-up
        if hook is not None:
            hook()
        if not self._alive["alive"]:
            return False
        self._worker = None
        self._job = self._alive["job"] = None
        self.run_button.text = "Run"
        self.run_button.enabled = True
        self.progress.visible = False
        return True

    def _on_run_clicked(self, value=None):
        if self.is_running:
            self.cancel()
        else:
            self.run()

    @property
    def is_running(self) -> bool:
        return self._worker is not None

    def cancel(self) -> None:
        """Ask the running computation to stop; the viewer is left untouched."""
        if self._job is not None:
            self._job.cancel.set()
            self.run_button.text = "Cancelling..."
            self.run_button.enabled = False


def labels_fingerprint(data) -> int | None:
    """A checksum of labels data as written (numpy only; lazy/dask data cannot be painted)."""
    if not isinstance(data, np.ndarray):
        return None
    return zlib.crc32(memoryview(np.ascontiguousarray(data)).cast("B"))


def was_edited(layer) -> bool:
    """Whether the user changed a Labels layer we wrote (painted, filled, erased, or changed its
    data from the console) since we wrote it: its data no longer has the recorded checksum."""
    info = layer.metadata.get("napari_gmm")
    if not isinstance(layer, Labels) or not isinstance(info, dict):
        return False
    if info.get("edited"):
        return True
    written = info.get("fingerprint")
    if written is None:
        return False
    edited = labels_fingerprint(layer.data) != written
    if edited:
        info["edited"] = True  # stays edited even if the user paints the old values back
    return edited


def put_output_layer(viewer, kind, name, data, meta, geom, image_kwargs=None, *, by_name=True, below=None, kept=None):
    """Update our output layer in place (same object), or add it as ``name``; return the layer.

    Only a layer the plugin made for this source and output (``metadata["napari_gmm"]``) is reused;
    a user's layer that happens to carry the name is left alone (napari then numbers the new one).
    With ``by_name`` (segmentation) our layer is looked up as ``name`` or napari's "``name`` [n]",
    so a layer the user renamed to keep a result is not overwritten; without it (background model)
    any of our layers for this source and output is reused. The metadata is set before the data,
    so listeners of the data event (plots) see the new model.

    A Labels layer of ours that the user edited since it was written (:func:`was_edited`) is never
    replaced: the result goes into a new layer and the edited one is appended to ``kept`` (a list) so
    the caller can say so. A new layer is inserted directly below ``below`` (a layer) when given,
    else on top (so labels stay visible above opaque image outputs). A Labels result records the
    checksum of its data in ``metadata["napari_gmm"]["fingerprint"]``.
    """
    if kind is Labels:
        meta = dict(meta, fingerprint=labels_fingerprint(data))
    kw = dict(image_kwargs or {})
    layers = viewer.layers

    def ours(lyr):
        info = lyr.metadata.get("napari_gmm")
        return (
            isinstance(lyr, kind)
            and isinstance(info, dict)
            and info.get("output") == meta["output"]
            and info.get("source") == meta["source"]
            and (kind is not Image or bool(lyr.rgb) == bool(kw.get("rgb")))
        )

    def reusable(lyr):
        if not ours(lyr):
            return False
        if was_edited(lyr):
            if kept is not None and lyr not in kept:
                kept.append(lyr)
            return False
        return True

    if by_name:
        numbered = re.compile(re.escape(name) + r" \[\d+\]")
        old = layers[name] if name in layers and reusable(layers[name]) else None
        if old is None:
            old = next((lyr for lyr in layers if numbered.fullmatch(lyr.name) and reusable(lyr)), None)
    else:
        old = next((lyr for lyr in layers if reusable(lyr)), None)
    if old is not None:
        n_channel = 1 if kind is Image and kw.get("rgb") else 0
        if old.ndim == np.ndim(data) - n_channel:
            old.metadata["napari_gmm"] = meta
            for key, val in geom.items():  # the source may have been rescaled meanwhile
                setattr(old, key, val)
            old.data = data
            if "contrast_limits" in kw:
                old.contrast_limits = kw["contrast_limits"]
            return old
    new = kind(data, name=name, metadata={"napari_gmm": meta}, **geom, **kw)
    if old is not None:  # dimensionality changed: replace our layer at the same place
        index = layers.index(old)
        layers.remove(old)
        layers.insert(index, new)
    elif below is not None and below in layers:
        layers.insert(layers.index(below), new)
    else:
        viewer.add_layer(new)
    return new
