"""Pieces shared by the computing dock widgets (segmentation, background model)."""

from __future__ import annotations

import threading

from qtpy.QtCore import QObject, Signal

#: Serialises the widgets' computations. Numba's workqueue threading layer (the one left where no
#: OpenMP or TBB is available, e.g. pip wheels on macOS) aborts the process when two threads launch
#: parallel kernels at once; OpenMP is safe, but a second heavy job would only compete for the cores.
COMPUTE_LOCK = threading.Lock()


class ProgressRelay(QObject):
    """Carries ``progress(done, total)`` calls from the computing thread to the GUI thread.

    The signal is emitted in the worker thread; Qt queues it to this object's (GUI) thread.
    """

    progressed = Signal(int, int)


class RunCancelMixin:
    """The Run / Cancel button of a computing widget.

    Expects ``self._worker`` (None when idle), ``self._job`` (with a ``cancel`` threading.Event),
    ``self.run_button`` and ``self.run()``.
    """

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
