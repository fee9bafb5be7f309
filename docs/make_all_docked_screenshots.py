"""Headless screenshots (Xvfb, QT_QPA_PLATFORM=xcb, 1600x1000): the five plugin widgets docked at once after a
run on the phantom (docs/all_docked.png), then after an error on a constant image (docs/after_error.png)."""

import os
import tempfile
import time

# a fresh user's settings (the widgets remember their last values in the user's config folder)
os.environ["NAPARI_GMM_SETTINGS"] = os.path.join(tempfile.mkdtemp(), "settings.json")

import napari  # noqa: E402
import numpy as np
from qtpy.QtWidgets import QApplication  # noqa: E402

from napari_gmm.datasets import phantom  # noqa: E402

v = napari.Viewer(show=True)
v.window._qt_window.resize(1600, 1000)
img, truth = phantom((256, 256), seed=0)
v.add_image(img, name="phantom")
# as a user opens them: Plugins > napari GMM > each widget (napari docks them on the right)
docked = {}
for name in ("Gaussian mixture segmentation", "Background model", "Mixture plot", "EM evolution", "Pixel trace"):
    docked[name] = v.window.add_plugin_dock_widget("napari-gmm", name)
seg = docked["Gaussian mixture segmentation"][1]
seg.n_components.value = 3  # the widget's other defaults (spatial smoothing: auto)
seg.run()

for _ in range(200):
    QApplication.processEvents()
    time.sleep(0.05)
    if any(layer.name.endswith("labels") for layer in v.layers):
        break
for _ in range(20):
    QApplication.processEvents()
    time.sleep(0.05)
docked["Mixture plot"][0].raise_()  # the plots are tabs of one dock: show the fitted histogram
for _ in range(20):
    QApplication.processEvents()
    time.sleep(0.05)
v.screenshot("docs/all_docked.png", canvas_only=False)
# an error: a constant image
v.add_image(np.zeros((64, 64), np.uint8), name="constant")
seg.image.value = v.layers["constant"]
seg.run()
for _ in range(60):
    QApplication.processEvents()
    time.sleep(0.05)
v.screenshot("docs/after_error.png", canvas_only=False)
print([layer.name for layer in v.layers])
v.close()
