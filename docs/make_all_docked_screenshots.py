"""Headless screenshots (Xvfb, QT_QPA_PLATFORM=xcb, 1600x1000): the five plugin widgets docked at once after a
run on the phantom (docs/all_docked.png), then after an error on a constant image (docs/after_error.png)."""

import time

import napari
import numpy as np
from qtpy.QtWidgets import QApplication

from napari_gmm._widgets._background import background_widget
from napari_gmm._widgets._plots import EMEvolutionWidget, MixturePlotWidget, PixelTraceWidget
from napari_gmm._widgets._segment import SegmentWidget
from napari_gmm.datasets import phantom

v = napari.Viewer(show=True)
v.window._qt_window.resize(1600, 1000)
img, truth = phantom((256, 256), seed=0)
v.add_image(img, name="phantom")
seg = SegmentWidget(v)
v.window.add_dock_widget(seg, name="Gaussian mixture segmentation")
bg = background_widget(v)
v.window.add_dock_widget(bg, name="Background model")
for cls, n in (
    (MixturePlotWidget, "Mixture plot"),
    (EMEvolutionWidget, "EM evolution"),
    (PixelTraceWidget, "Pixel trace"),
):
    v.window.add_dock_widget(cls(v), name=n, area="right")
seg.n_components.value = 3
seg.smoothing.value = "off"
seg.run()

for _ in range(200):
    QApplication.processEvents()
    time.sleep(0.05)
    if any(layer.name.endswith("labels") for layer in v.layers):
        break
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
