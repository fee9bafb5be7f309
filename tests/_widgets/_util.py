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
