"""Helpers shared by the dock-widget tests."""

from __future__ import annotations

#: how long a test waits for a worker thread (first runs compile Numba kernels)
WAIT_MS = 120_000


def record_notifications(monkeypatch, module, kinds=("error", "info", "warning")):
    """Replace ``module.show_<kind>`` by recorders; return {kind: [messages]}."""
    got = {kind: [] for kind in kinds}
    for kind in got:
        monkeypatch.setattr(module, f"show_{kind}", lambda msg, kind=kind: got[kind].append(str(msg)))
    return got


def run_and_wait(qtbot, widget, **kwargs):
    """Start the widget's worker and wait until it has finished; return the worker."""
    worker = widget.run(**kwargs)
    assert worker is not None, "the widget refused inputs that should be valid"
    qtbot.waitUntil(lambda: not widget.is_running, timeout=WAIT_MS)
    return worker


def dock_segment(viewer, smoothing=None):
    """A segmentation widget docked in ``viewer`` (``smoothing``: its spatial smoothing control's
    value, e.g. "off" for the per-pixel model; None keeps the default)."""
    from napari_gmm._widgets._segment import SegmentWidget

    widget = SegmentWidget(viewer)
    if smoothing is not None:
        widget.smoothing.value = smoothing
    viewer.window.add_dock_widget(widget, name="Gaussian mixture segmentation")
    return widget
