"""The "Background model" dock widget under a real (headless, Xvfb) napari viewer.

Run with:  xvfb-run -a -s "-screen 0 1600x1000x24" env QT_QPA_PLATFORM=xcb python -m pytest tests/_widgets
"""

from __future__ import annotations

import json

import numpy as np
import pytest

napari = pytest.importorskip("napari")
pytest.importorskip("pytestqt")

import napari_gmm as ng  # noqa: E402
from napari_gmm._widgets import _background  # noqa: E402
from napari_gmm._widgets._background import BackgroundWidget, background_widget  # noqa: E402
from napari_gmm.datasets import moving_objects  # noqa: E402
from tests._widgets._util import WAIT_MS, record_notifications, run_and_wait  # noqa: E402


@pytest.fixture
def notes(monkeypatch):
    """Record the widget's notifications instead of showing them."""
    return record_notifications(monkeypatch, _background, ("error", "info"))


def dock(viewer) -> BackgroundWidget:
    widget = BackgroundWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Background model")
    return widget


def layer_state(viewer):
    return [(id(lyr), lyr.name, id(lyr.data)) for lyr in viewer.layers]


def test_contribution_is_the_widget_class():
    import inspect

    assert background_widget is BackgroundWidget
    ann = inspect.signature(BackgroundWidget.__init__).parameters["viewer"].annotation
    assert "Viewer" in str(ann)


def test_run_writes_layers_and_rerun_updates_in_place(viewer, qtbot, notes):
    stack, truth = moving_objects((40, 48, 64), n_objects=2, seed=1)
    src = viewer.add_image(stack, name="video")
    widget = dock(viewer)
    assert widget.image.value is src
    run_and_wait(qtbot, widget)
    assert notes["error"] == []
    fg = viewer.layers["video foreground"]
    bg = viewer.layers["video background"]
    assert isinstance(fg, napari.layers.Labels) and isinstance(bg, napari.layers.Image)
    np.testing.assert_array_equal(fg.data, ng.subtract_background(stack).foreground)
    assert bg.data.shape == stack.shape
    # the opaque background image goes below the foreground labels (it used to hide them)
    assert viewer.layers.index(bg) < viewer.layers.index(fg)
    meta = fg.metadata["napari_gmm"]
    assert meta["output"] == "foreground" and meta["source"] == "video"
    json.dumps(meta)
    assert meta["params"]["var_threshold"] == 16.0
    assert "40 frames" in widget.summary.value

    # re-run with other parameters: the same layer objects, new data
    ids = (id(fg), id(bg))
    widget.var_threshold.value = 36.0
    widget.background_out.value = "last frame only"
    run_and_wait(qtbot, widget)
    fg2 = viewer.layers["video foreground"]
    bg2 = viewer.layers["video background"]
    assert id(fg2) == ids[0]  # updated in place
    assert bg2.data.shape == stack.shape[1:]  # replaced: dimensionality changed
    assert fg2.metadata["napari_gmm"]["params"]["var_threshold"] == 36.0
    np.testing.assert_array_equal(
        fg2.data, ng.subtract_background(stack, var_threshold=36.0, background="last").foreground
    )
    assert len(viewer.layers) == 3


def test_rgb_with_time_on_another_axis(viewer, qtbot, notes):
    stack, _ = moving_objects((24, 32, 40), n_objects=1, rgb=True, seed=2)
    moved = np.ascontiguousarray(np.moveaxis(stack, 0, 1))  # (Y, T, X, 3)
    viewer.add_image(moved, name="rgbvid", rgb=True)
    widget = dock(viewer)
    widget.time_axis.value = 1
    widget.fg_image_out.value = "input masked"
    run_and_wait(qtbot, widget)
    assert notes["error"] == []
    ref = ng.subtract_background(stack, foreground_image="masked")
    np.testing.assert_array_equal(viewer.layers["rgbvid foreground"].data, np.moveaxis(ref.foreground, 0, 1))
    np.testing.assert_array_equal(viewer.layers["rgbvid background"].data, np.moveaxis(ref.background, 0, 1))
    assert viewer.layers["rgbvid background"].rgb
    np.testing.assert_array_equal(
        viewer.layers["rgbvid foreground image"].data, np.moveaxis(ref.foreground_image, 0, 1)
    )


def test_cancel_leaves_nothing(viewer, qtbot, notes):
    stack, _ = moving_objects((300, 64, 64), n_objects=2, seed=3)
    viewer.add_image(stack, name="long")
    widget = dock(viewer)
    before = layer_state(viewer)
    worker = widget.run()
    assert worker is not None and widget.is_running
    widget.cancel()
    qtbot.waitUntil(lambda: not widget.is_running, timeout=WAIT_MS)
    assert layer_state(viewer) == before
    assert any("cancelled" in m for m in notes["info"])
    assert notes["error"] == []
    assert widget.run_button.text == "Run"


@pytest.mark.parametrize(
    "data,match",
    [
        (np.zeros((48, 64), np.uint8), "T >= 2"),
        (np.zeros((1, 48, 64), np.uint8), "T >= 2"),
    ],
)
def test_bad_input_is_a_notification_and_viewer_unchanged(viewer, qtbot, notes, data, match):
    viewer.add_image(data, name="img")
    widget = dock(viewer)
    before = layer_state(viewer)
    assert widget.run() is None
    assert len(notes["error"]) == 1 and match in notes["error"][0]
    assert layer_state(viewer) == before


def test_nan_frame_reported_after_run(viewer, qtbot, notes):
    stack = np.random.default_rng(0).normal(0.5, 0.01, (12, 32, 32)).astype(np.float32)
    stack[7, 3, 3] = np.nan
    viewer.add_image(stack, name="nan")
    widget = dock(viewer)
    before = layer_state(viewer)
    run_and_wait(qtbot, widget)
    assert len(notes["error"]) == 1 and "frame 7" in notes["error"][0]
    assert layer_state(viewer) == before
    # a long error in the summary wraps: the dock keeps a usable width (it once took 1,937 px)
    widget.summary.value = "x" * 600
    assert widget.native.minimumSizeHint().width() < 500
    assert np.isnan(viewer.layers["nan"].data[7, 3, 3])  # input untouched


def test_no_layer_and_same_axes(viewer, qtbot, notes):
    widget = dock(viewer)
    assert widget.run() is None
    assert "no image layer" in notes["error"][-1]
    viewer.add_image(np.zeros((5, 3, 16, 16), np.uint8), name="tc")
    widget.reset_choices()
    widget.image.value = viewer.layers["tc"]
    widget.channel_axis.value = 0
    assert widget.run() is None
    assert "same" in notes["error"][-1]
    widget.channel_axis.value = None
    assert widget.run() is None
    assert "channel_axis=1" in notes["error"][-1]
    assert len(viewer.layers) == 1


def _small_fluorescence():
    """A tiny Poisson stack (offset 100, gain 2, 30 % bleaching) with a particle that pauses."""
    rng = np.random.default_rng(4)
    t_len, h, w = 60, 32, 40
    scene = 40.0 + 30.0 * (np.arange(w) / w)[None, :].repeat(h, 0)
    yy, xx = np.mgrid[0:h, 0:w]
    stack = np.empty((t_len, h, w), np.uint16)
    x = 5.0
    for t in range(t_len):
        x += 0.0 if 20 <= t < 35 else 0.7
        disc = (yy - 16) ** 2 + (xx - x) ** 2 <= 9
        photons = scene * (1 - 0.3 * t / t_len) + np.where(disc, 80.0, 0.0)
        stack[t] = np.rint(100 + 2 * rng.poisson(photons) + rng.normal(0, 2, (h, w)))
    return stack


def test_preset_round_trips_through_the_widget_and_the_layer_metadata(viewer, qtbot, notes):
    stack = _small_fluorescence()
    viewer.add_image(stack, name="cells")
    widget = dock(viewer)
    assert widget.preset.value == "camera video" and widget.var_threshold.value == 16.0
    assert widget.fill_holes.value == 1024
    widget.preset.value = "fluorescence time-lapse"
    # the preset fills the fields
    assert widget.background_ratio.value == 0.5 and widget.noise.value == "estimate from the stack"
    assert widget.bleach.value and widget.burn_in.value == "whole stack (one extra pass)"
    assert widget.var_threshold.value == 6.25 and widget.detect_shadows.value == "off"
    assert widget.fill_holes.value == 0
    progress = []
    widget._relay.progressed.connect(lambda d, t: progress.append(widget.summary.value))
    run_and_wait(qtbot, widget)
    assert notes["error"] == []
    ref = ng.subtract_background(stack, preset="fluorescence time-lapse")
    fg = viewer.layers["cells foreground"]
    np.testing.assert_array_equal(fg.data, ref.foreground)
    params = fg.metadata["napari_gmm"]["params"]
    json.dumps(params)
    assert params["preset"] == "fluorescence time-lapse" and params["noise"]["gain"] > 0
    assert len(params["frame_factors"]) == len(stack)
    assert "noise: gain" in widget.summary.value and "bleaching" in widget.summary.value
    # progress counts the stack's real frames in the classifying pass (never "frame 200 / 320")
    frames = [m for m in progress if m.startswith("frame ")]
    assert frames and all(int(m.split()[3]) == len(stack) for m in frames)
    assert max(int(m.split()[1]) for m in frames) <= len(stack)

    # a fresh widget loads the parameters from the layer's metadata and gives the same result
    other = dock(viewer)
    other.load_params(params)
    assert other.preset.value == "fluorescence time-lapse"
    assert other.noise.value == "given (gain, offset, read noise)"
    assert other.gain.value == pytest.approx(params["noise"]["gain"], rel=1e-5)
    assert other.background_ratio.value == 0.5 and other.bleach.value
    job = other._make_job(viewer.layers["cells"])
    assert job.kwargs["preset"] == "fluorescence time-lapse" and job.kwargs["fill_holes"] == 0
    # back to the video preset: its values again
    other.preset.value = "camera video"
    assert other.var_threshold.value == 16.0 and other.noise.value == "off (learned variances)"
    assert other.fill_holes.value == 1024 and other._make_job(viewer.layers["cells"]).kwargs["fill_holes"] == 1024
    assert not other.bleach.value


def test_bad_noise_model_is_a_notification(viewer, qtbot, notes):
    viewer.add_image(_small_fluorescence(), name="cells")
    widget = dock(viewer)
    before = layer_state(viewer)
    widget.noise.value = "given (gain, offset, read noise)"
    widget.gain.value = 2.0
    widget.offset.value = 60000.0  # above the data: refused in the thread
    run_and_wait(qtbot, widget)
    assert len(notes["error"]) == 1 and "offset" in notes["error"][0]
    assert layer_state(viewer) == before


def test_form_scrolls_in_the_dock_and_every_control_has_a_tooltip(viewer, qtbot):
    """Issue 14: with all five plugin widgets docked the form was cramped (no scroll area)."""
    from magicgui.widgets import Container
    from qtpy.QtWidgets import QScrollArea

    widget = dock(viewer)

    def controls(c):
        for x in c:
            yield from controls(x) if isinstance(x, Container) else (x,)

    missing = [getattr(x, "label", None) or getattr(x, "text", None) for x in controls(widget.body) if not x.tooltip]
    assert missing == [], f"controls without a tooltip: {missing}"
    assert isinstance(widget._scroll, QScrollArea) and widget._scroll.widget() is widget.body.native
    # the dock's minimum height is a few lines, not the whole form's
    assert widget.native.minimumSizeHint().height() < widget.body.native.minimumSizeHint().height() / 3
