"""Make the README screenshots of the plot dock widgets (Mixture plot, EM evolution, Pixel trace).

Needs a display; headless, run it under Xvfb with the xcb Qt platform::

    xvfb-run -a -s "-screen 0 1600x1000x24" env QT_QPA_PLATFORM=xcb python docs/make_plot_screenshots.py

Writes ``docs/plot_mixture.png`` (cameraman, K = 3), ``docs/plot_em.png`` (EM evolution of the same
fit, at an early iteration), ``docs/plot_colour.png`` (astronaut, K = 6, colour model: channel marginals
and the red-green density with covariance ellipses) and ``docs/plot_trace.png`` (a pixel of the
synthetic ``moving_objects`` stack after background subtraction). ``--out DIR`` writes elsewhere,
``--only NAME`` makes one of them.

The labels layers carry ``metadata["napari_gmm"]`` exactly as the segmentation widget writes it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import napari
import numpy as np
from qtpy.QtWidgets import QApplication
from skimage import data

import napari_gmm as ng
from napari_gmm._widgets._plots import EMEvolutionWidget, MixturePlotWidget, PixelTraceWidget

WINDOW = (1600, 1000)
MAX_BYTES = 300_000


def _settle(n=30):
    app = QApplication.instance()
    for _ in range(n):
        app.processEvents()
        time.sleep(0.02)


def _close_toasts() -> None:
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    for widget in QApplication.instance().allWidgets():
        if isinstance(widget, NapariQtNotification):
            widget.close()
    _settle(10)


def _save(viewer, path: Path) -> None:
    from PIL import Image as PILImage

    _close_toasts()
    _settle()
    shot = viewer.screenshot(canvas_only=False, flash=False)
    img = PILImage.fromarray(np.ascontiguousarray(shot[..., :3]))
    img.save(path, optimize=True)
    if path.stat().st_size > MAX_BYTES:
        img.quantize(colors=256, method=PILImage.Quantize.MEDIANCUT, dither=PILImage.Dither.NONE).save(
            path, optimize=True
        )
    print(f"wrote {path} ({img.width}x{img.height}, {path.stat().st_size / 1e3:.0f} kB)")


def _labels(viewer, image_layer, labels, model, params):
    """Add the labels layer as the segmentation widget does (metadata["napari_gmm"])."""
    model_dict = [m.to_dict() for m in model] if isinstance(model, list) else model.to_dict()
    meta = {"model": model_dict, "params": params, "source": image_layer.name, "output": "labels"}
    return viewer.add_labels(labels, name=image_layer.name + " GMM labels", metadata={"napari_gmm": meta}, opacity=0.6)


THEME = "dark"


def _viewer(title):
    viewer = napari.Viewer(title=title, show=True)
    viewer.theme = THEME
    viewer.window.resize(*WINDOW)
    return viewer


def mixture(out: Path, em: bool = False) -> None:
    viewer = _viewer("napari-gmm: " + ("EM evolution" if em else "mixture plot") + ", cameraman K = 3")
    img = viewer.add_image(data.camera(), name="camera")
    labels, model = ng.segment(img.data, 3, return_model=True)
    _labels(
        viewer,
        img,
        labels,
        model,
        {
            "n_components": 3,
            "channel_axis": None,
            "split_axis": None,
            "init": "ranges",
            "bins": None,
            "mask": None,
            "colour": False,
        },
    )
    if em:
        widget = EMEvolutionWidget(viewer)
        viewer.window.add_dock_widget(widget, name="EM evolution", area="right")
        widget.iteration.value = 3
    else:
        widget = MixturePlotWidget(viewer)
        viewer.window.add_dock_widget(widget, name="Mixture plot", area="right")
    viewer.reset_view()
    _settle()
    widget.refresh()
    _save(viewer, out / ("plot_em.png" if em else "plot_mixture.png"))
    viewer.close()


def colour(out: Path) -> None:
    viewer = _viewer("napari-gmm: mixture plot, astronaut K = 6 (colour, full covariance)")
    img = viewer.add_image(data.astronaut(), name="astronaut")
    labels, model = ng.segment(
        img.data, 6, channel_axis=-1, init="kmeans++", covariance_type="full", random_state=0, return_model=True
    )
    _labels(
        viewer,
        img,
        labels,
        model,
        {
            "n_components": 6,
            "channel_axis": 2,
            "split_axis": None,
            "covariance_type": "full",
            "init": "kmeans++",
            "bins": None,
            "mask": None,
            "colour": True,
            "rgb": True,
        },
    )
    widget = MixturePlotWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Mixture plot", area="right")
    viewer.reset_view()
    _settle()
    widget.refresh()
    _save(viewer, out / "plot_colour.png")
    viewer.close()


def trace(out: Path) -> None:
    from napari_gmm.datasets import moving_objects

    viewer = _viewer("napari-gmm: pixel trace, synthetic moving objects")
    stack, _ = moving_objects((120, 96, 128), seed=0)
    img = viewer.add_image(stack, name="moving objects")
    res = ng.subtract_background(stack)
    meta = {"params": res.params, "source": img.name, "output": "foreground"}
    viewer.add_labels(res.foreground, name="moving objects foreground", metadata={"napari_gmm": meta}, opacity=0.5)
    widget = PixelTraceWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Pixel trace", area="right")
    # the pixel crossed by most objects (in the central part, outside the flickering quarter)
    fg = res.foreground == 1
    counts = fg.sum(axis=0)
    counts[: 96 // 2, : 128 // 2] = 0
    counts[:, : 128 // 3] = 0
    counts[:, -128 // 6 :] = 0
    y, x = np.unravel_index(int(np.argmax(counts)), counts.shape)
    t = int(np.flatnonzero(fg[:, y, x])[0])
    viewer.dims.set_current_step(0, t)
    widget.pick_world(img.data_to_world((t, y, x)))
    _settle()
    viewer.reset_view()
    _settle()
    widget.refresh()
    _save(viewer, out / "plot_trace.png")
    viewer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--only", choices=["mixture", "em", "colour", "trace"])
    parser.add_argument("--theme", default="dark", help="napari theme (dark, light)")
    args = parser.parse_args()
    global THEME
    THEME = args.theme
    args.out.mkdir(parents=True, exist_ok=True)
    ng.segment(data.camera()[::8, ::8], 3)  # compile / load the kernels first
    jobs = {
        "mixture": lambda: mixture(args.out),
        "em": lambda: mixture(args.out, em=True),
        "colour": lambda: colour(args.out),
        "trace": lambda: trace(args.out),
    }
    for name, job in jobs.items():
        if args.only in (None, name):
            job()


if __name__ == "__main__":
    main()
