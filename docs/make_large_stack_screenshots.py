"""Headless screenshots (Xvfb, QT_QPA_PLATFORM=xcb, 1600x1000) of a large lazy stack: the segmentation
widget with its defaults running on a 200 x 2048 x 2048 uint16 dask stack (1.7 GB, never loaded whole),
its progress bar and Cancel button (docs/large_stack_running.png), then after Cancel
(docs/large_stack_cancelled.png: no layer added, the viewer as it was, a notification)."""

import os
import tempfile
import time

# a fresh user's settings (the widgets remember their last values in the user's config folder)
os.environ["NAPARI_GMM_SETTINGS"] = os.path.join(tempfile.mkdtemp(), "settings.json")

import dask.array as da  # noqa: E402
import napari  # noqa: E402
import numpy as np  # noqa: E402
from qtpy.QtWidgets import QApplication  # noqa: E402


def frames(block_info=None):
    (t0, t1), (y0, y1), (x0, x1) = block_info[None]["array-location"]
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    cls = (np.sin(yy / 97.0) + np.cos(xx / 131.0) > 0.4).astype(np.int8) + (
        np.cos(yy / 41.0) * np.sin(xx / 37.0) > 0.55
    )
    rng = np.random.default_rng([t0, y0, x0])
    base = np.array([1200.0, 3000.0, 5200.0], np.float32)[cls]
    return np.clip(base + rng.standard_normal((t1 - t0, y1 - y0, x1 - x0), np.float32) * 600, 0, 65535).astype(
        np.uint16
    )


def wait(seconds):
    end = time.time() + seconds
    while time.time() < end:
        QApplication.processEvents()
        time.sleep(0.05)


stack = da.map_blocks(frames, chunks=((8,) * 25, (1024, 1024), (1024, 1024)), dtype=np.uint16)
v = napari.Viewer(show=True)
v.window._qt_window.resize(1600, 1000)
v.add_image(stack, name="time-lapse (lazy, 1.7 GB)", contrast_limits=(0, 7000))
seg = v.window.add_plugin_dock_widget("napari-gmm", "Gaussian mixture segmentation")[1]
seg.n_components.value = 3
wait(2)
seg.run()
wait(6)
v.screenshot("docs/large_stack_running.png", canvas_only=False)
seg.cancel()
for _ in range(600):
    wait(0.1)
    if not seg.is_running:
        break
wait(1)
v.screenshot("docs/large_stack_cancelled.png", canvas_only=False)
print("layers:", [layer.name for layer in v.layers], "running:", seg.is_running)
v.close()
