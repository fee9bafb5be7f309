"""Make the README screenshots of the dock widgets and of the Layers menu.

Needs a display; headless, run it under Xvfb with the xcb Qt platform (offscreen Qt cannot render
napari's canvas)::

    xvfb-run -a -s "-screen 0 1600x1000x24" env QT_QPA_PLATFORM=xcb python docs/make_screenshots.py

Writes ``docs/segment_widget.png`` (cameraman, K=3, grey mode), ``docs/segment_colour.png``
(astronaut, K=8, colour mode with the quantised image shown), ``docs/layers_menu.png`` (Layers >
Segment > Gaussian mixture (EM) open on the selected image) and ``docs/background_widget.png`` (the
background model of the synthetic moving-objects stack). Pass ``--out DIR`` to write elsewhere,
``--only NAME`` (grey, colour, menu, background) for one of them. The window is 1600x1000, the
screen size the issue's walkthrough used.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import napari
import numpy as np
from qtpy.QtWidgets import QApplication
from skimage import data

from napari_gmm._widgets._segment import SegmentWidget

WINDOW = (1600, 1000)
MAX_BYTES = 300_000


def _wait(widget: SegmentWidget, timeout: float = 300.0) -> None:
    app = QApplication.instance()
    t0 = time.perf_counter()
    while widget.is_running:
        app.processEvents()
        time.sleep(0.01)
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError("the segmentation did not finish")
    for _ in range(20):  # let the canvas and the dock repaint
        app.processEvents()
        time.sleep(0.02)


def _viewer(title: str) -> napari.Viewer:
    viewer = napari.Viewer(title=title, show=True)
    viewer.window.resize(*WINDOW)
    return viewer


def _dock(viewer: napari.Viewer) -> SegmentWidget:
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Gaussian mixture segmentation", area="right")
    return widget


def _close_toasts() -> None:
    """Close napari's notification pop-ups so they do not cover the canvas in the picture."""
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    app = QApplication.instance()
    for widget in app.allWidgets():
        if isinstance(widget, NapariQtNotification):
            widget.close()
    for _ in range(20):
        app.processEvents()
        time.sleep(0.02)


def _save(viewer: napari.Viewer, path: Path) -> None:
    """Window grab (canvas, layer list and dock widgets), saved as a compact palette PNG."""
    from PIL import Image as PILImage

    _close_toasts()
    shot = viewer.screenshot(canvas_only=False, flash=False)  # (H, W, 4) uint8 RGBA
    img = PILImage.fromarray(np.ascontiguousarray(shot[..., :3]))
    img.save(path, optimize=True)
    if path.stat().st_size > MAX_BYTES:  # photos in the canvas: fall back to an adaptive palette
        img.quantize(colors=256, method=PILImage.Quantize.MEDIANCUT, dither=PILImage.Dither.NONE).save(
            path, optimize=True
        )
    print(f"wrote {path} ({img.width}x{img.height}, {path.stat().st_size / 1e3:.0f} kB)")


def grey(out: Path) -> None:
    viewer = _viewer("napari-gmm: cameraman, K = 3")
    viewer.add_image(data.camera(), name="camera")
    widget = _dock(viewer)
    widget.n_components.value = 3
    widget.run()
    _wait(widget)
    viewer.layers["camera GMM labels"].opacity = 0.6
    viewer.layers.selection.active = viewer.layers["camera GMM labels"]
    viewer.reset_view()
    _wait(widget)
    _save(viewer, out / "segment_widget.png")
    viewer.close()


def colour(out: Path) -> None:
    viewer = _viewer("napari-gmm: astronaut, K = 8, colour mode")
    viewer.add_image(data.astronaut(), name="astronaut")
    widget = _dock(viewer)
    widget.n_components.value = 8
    widget.out_quantised.value = True
    widget.run()
    _wait(widget)
    viewer.layers["astronaut GMM labels"].visible = False  # show the quantised image itself
    viewer.layers.selection.active = viewer.layers["astronaut GMM quantised"]
    viewer.reset_view()
    _wait(widget)
    _save(viewer, out / "segment_colour.png")
    viewer.close()


def menu(out: Path) -> None:
    """Layers > Segment > Gaussian mixture (EM), opened: a screen grab (the menus are pop-up
    windows of their own, outside the main window's picture)."""
    from qtpy.QtCore import QPoint

    viewer = _viewer("napari-gmm: Layers menu")
    viewer.add_image(data.camera(), name="camera")
    viewer.reset_view()
    _wait_idle()
    win = viewer.window._qt_window
    bar = win.menuBar()
    layers_action = next(a for a in bar.actions() if a.text().replace("&", "") == "Layers")
    layers = layers_action.menu()
    layers.popup(win.mapToGlobal(bar.actionGeometry(layers_action).bottomLeft()))
    _wait_idle()
    seg_action = next(a for a in layers.actions() if a.text().replace("&", "") == "Segment")
    layers.setActiveAction(seg_action)
    segment = seg_action.menu()
    segment.popup(
        layers.mapToGlobal(QPoint(layers.actionGeometry(seg_action).right(), layers.actionGeometry(seg_action).top()))
    )
    _wait_idle()
    gmm_action = next(a for a in segment.actions() if a.text().replace("&&", "&") == "Gaussian mixture (EM)")
    segment.setActiveAction(gmm_action)
    gmm = gmm_action.menu()
    gmm.popup(
        segment.mapToGlobal(
            QPoint(segment.actionGeometry(gmm_action).right(), segment.actionGeometry(gmm_action).top())
        )
    )
    gmm.setActiveAction(gmm.actions()[0])
    _wait_idle()
    from PIL import Image as PILImage

    shot = QApplication.primaryScreen().grabWindow(0)
    geo = win.frameGeometry()
    shot = shot.copy(geo.x(), geo.y(), geo.width(), geo.height())
    path = out / "layers_menu.png"
    shot.save(str(path))
    img = PILImage.open(path).convert("RGB")
    img.quantize(colors=256, method=PILImage.Quantize.MEDIANCUT, dither=PILImage.Dither.NONE).save(path, optimize=True)
    print(f"wrote {path} ({img.width}x{img.height}, {path.stat().st_size / 1e3:.0f} kB)")
    for m in (gmm, segment, layers):
        m.close()
    viewer.close()


def background(out: Path) -> None:
    from napari_gmm._widgets._background import BackgroundWidget
    from napari_gmm._widgets._sample_data import moving_objects

    viewer = _viewer("napari-gmm: background model")
    for data_, kw, kind in moving_objects():
        getattr(viewer, f"add_{kind}")(data_, **kw)
    viewer.layers.selection.active = viewer.layers["moving objects"]
    widget = BackgroundWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Background model", area="right")
    widget.run()
    _wait(widget)
    viewer.dims.set_current_step(0, 60)
    viewer.reset_view()
    _wait(widget)
    _save(viewer, out / "background_widget.png")
    viewer.close()


def _wait_idle(n: int = 25) -> None:
    app = QApplication.instance()
    for _ in range(n):
        app.processEvents()
        time.sleep(0.02)


def _warm_up() -> None:
    """Compile (or load from Numba's cache) the kernels first, so the widget shows the run time a user
    sees once the session is warm, not the one-off compilation."""
    import napari_gmm as ng

    ng.segment(data.camera()[::8, ::8], 3, random_state=0)
    ng.segment(data.astronaut()[::8, ::8], 8, channel_axis=-1, init="kmeans++", random_state=0)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--only", choices=["grey", "colour", "menu", "background"])
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    # the widgets' defaults, not the settings remembered from your own sessions (nor written there)
    import os
    import tempfile

    os.environ["NAPARI_GMM_SETTINGS"] = os.path.join(tempfile.mkdtemp(), "settings.json")
    _warm_up()
    for name, make in (("grey", grey), ("colour", colour), ("menu", menu), ("background", background)):
        if args.only in (None, name):
            make(args.out)


if __name__ == "__main__":
    main()
