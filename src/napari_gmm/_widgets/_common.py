"""Pieces shared by the computing dock widgets (segmentation, background model)."""

from __future__ import annotations

import threading

from qtpy.QtCore import QObject, Signal

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
        msg += (" (first run of this session: Numba loads its kernels from its cache; the very first "
                "run after installing compiles them, up to a minute, once)")
    return msg


def mark_warm(kind: str) -> None:
    """Record that a job of this kind has run: its kernels are loaded."""
    _WARM.add(kind)


class ProgressRelay(QObject):
    """Carries ``progress(done, total)`` calls from the computing thread to the GUI thread.

    The signal is emitted in the worker thread; Qt queues it to this object's (GUI) thread.
    """

    progressed = Signal(int, int)


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
