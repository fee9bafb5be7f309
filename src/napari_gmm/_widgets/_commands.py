"""Layers-menu commands: act on the selected layer at once, no dock widget needed.

Layers > Segment > Gaussian mixture (EM) >

- "Segment the selected layer (last-used settings)": the options of the segmentation widget's last
  run (remembered across sessions, see :mod:`._settings`; the defaults if it never ran);
- "Segment the selected layer, automatic K": K chosen by BIC among 1..8, other options as above;
- "Background model of the selected layer (default preset)": the background widget's defaults.

Each command runs the same job as its dock widget (a widget that is never shown does the validation,
the worker thread, the notifications and the output layers), so the results are identical; progress
shows in napari's activity panel (the status-bar spinner). Re-running replaces our previous result
unless the user edited it (then the new labels go beside it, with a warning). napari hands the
commands the viewer (app-model injection by the annotation).
"""

from __future__ import annotations

import napari
from napari.utils import progress as napari_progress
from napari.utils.notifications import show_error
from qtpy.QtCore import QTimer

__all__ = ["background_selected", "segment_selected", "segment_selected_auto_k"]

#: the largest K the automatic-K command tries (napari_gmm.segment's own default)
AUTO_K_MAX = 8

#: hidden widgets whose job is still running (kept alive until it finishes)
_RUNNING: set = set()


def _selected_layer(viewer):
    layer = viewer.layers.selection.active
    if layer is None:
        show_error(
            "napari-gmm: select an image layer in the layer list first (File > Open Sample > napari GMM has examples)."
        )
    return layer


def _run_hidden(widget, layer, title):
    """Start ``widget``'s job on ``layer``; napari's activity panel shows its progress. Returns the
    worker, or None when the inputs were refused (the widget's notification says why)."""
    bar = napari_progress(total=1000, desc=f"napari-gmm: {title} of '{layer.name}'")

    def on_progress(done, total):
        if total > 0:
            bar.n = int(1000 * min(max(done / total, 0.0), 1.0))
            bar.refresh()

    def on_phase(name):
        bar.set_description(f"napari-gmm: {name} ('{layer.name}')")

    def finished():  # the widget's end of job (whatever the outcome), in the GUI thread
        bar.close()
        widget.on_idle = None  # no reference cycle: the wrapper is not freed by a random GC pass
        try:  # nothing of ours runs while Qt deletes it (the job is over)
            widget.native.destroyed.disconnect()
        except (TypeError, RuntimeError):
            pass
        widget.native.deleteLater()
        # the Python wrapper is released only after Qt has deleted the widget (a parentless
        # widget freed by the garbage collector in the middle of other Qt work crashed napari)
        QTimer.singleShot(0, lambda: _RUNNING.discard(widget))

    widget._relay.progressed.connect(on_progress)
    if hasattr(widget._relay, "phase"):
        widget._relay.phase.connect(on_phase)
    widget.on_idle = finished
    _RUNNING.add(widget)
    worker = widget.run(image=layer)
    if worker is None:
        finished()
    return worker


def segment_selected(viewer: napari.viewer.Viewer) -> None:
    """Segment the selected image layer with the last-used settings of the segmentation widget."""
    from ._segment import SegmentWidget

    layer = _selected_layer(viewer)
    if layer is None:
        return None
    widget = SegmentWidget(viewer)  # restores the remembered settings
    return _run_hidden(widget, layer, "segmentation")


def segment_selected_auto_k(viewer: napari.viewer.Viewer) -> None:
    """Segment the selected image layer choosing K automatically (BIC over K = 1..8); the other
    options are the last-used ones, and the remembered settings are left as they are."""
    from ._segment import SegmentWidget

    layer = _selected_layer(viewer)
    if layer is None:
        return None
    widget = SegmentWidget(viewer)
    widget.remember_settings = False
    widget.auto_k.value = True
    widget.n_components.value = AUTO_K_MAX
    return _run_hidden(widget, layer, "segmentation (automatic K)")


def background_selected(viewer: napari.viewer.Viewer) -> None:
    """Background model of the selected frame stack with the background widget's defaults."""
    from ._background import BackgroundWidget

    layer = _selected_layer(viewer)
    if layer is None:
        return None
    widget = BackgroundWidget(viewer)
    return _run_hidden(widget, layer, "background model")
