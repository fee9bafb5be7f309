"""Pieces shared by the computing dock widgets (segmentation, background model)."""

from __future__ import annotations

import re
import threading

import numpy as np
from napari.layers import Image
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
        # short lines: the status label sizes the dock widget, and one long line widened it
        # until the viewer's canvas was squeezed out (seen in a headless screenshot)
        msg += ("\nfirst run of this session: Numba loads\nits kernels (the first run after installing\n"
                "compiles them: up to a minute, once)")
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

    def _end_run(self, kind: str) -> bool:
        """Back to idle after a job of ``kind`` ("segment", "background") finished, whatever its
        outcome; False when the widget is gone (nothing to reset)."""
        mark_warm(kind)  # its kernels are loaded now
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


def put_output_layer(viewer, kind, name, data, meta, geom, image_kwargs=None, *, by_name=True):
    """Update our output layer in place (same object), or add it as ``name``; return the layer.

    Only a layer the plugin made for this source and output (``metadata["napari_gmm"]``) is reused;
    a user's layer that happens to carry the name is left alone (napari then numbers the new one).
    With ``by_name`` (segmentation) our layer is looked up as ``name`` or napari's "``name`` [n]",
    so a layer the user renamed to keep a result is not overwritten; without it (background model)
    any of our layers for this source and output is reused. The metadata is set before the data,
    so listeners of the data event (plots) see the new model.
    """
    kw = dict(image_kwargs or {})
    layers = viewer.layers

    def ours(lyr):
        info = lyr.metadata.get("napari_gmm")
        return (isinstance(lyr, kind) and isinstance(info, dict)
                and info.get("output") == meta["output"] and info.get("source") == meta["source"]
                and (kind is not Image or bool(lyr.rgb) == bool(kw.get("rgb"))))

    if by_name:
        numbered = re.compile(re.escape(name) + r" \[\d+\]")
        old = layers[name] if name in layers and ours(layers[name]) else None
        if old is None:
            old = next((lyr for lyr in layers if numbered.fullmatch(lyr.name) and ours(lyr)), None)
    else:
        old = next((lyr for lyr in layers if ours(lyr)), None)
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
    else:
        viewer.add_layer(new)
    return new
