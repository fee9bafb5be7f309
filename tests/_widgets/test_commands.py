"""Layers > Segment > Gaussian mixture (EM): the one-click commands on the selected layer, clicked
through napari's real Qt menu; and the labels writer that keeps the model beside the TIFF."""

from __future__ import annotations

import json

import numpy as np
import pytest

napari = pytest.importorskip("napari")
pytest.importorskip("pytestqt")
npe2 = pytest.importorskip("npe2")

from napari_gmm._widgets import _commands, _segment, _settings  # noqa: E402
from tests._widgets._util import WAIT_MS, record_notifications  # noqa: E402

SUBMENU = "Gaussian mixture (EM)"


@pytest.fixture
def notes(monkeypatch):
    got = record_notifications(monkeypatch, _segment)
    monkeypatch.setattr(_commands, "show_error", lambda msg: got["error"].append(str(msg)))
    return got


def _installed():
    pm = npe2.PluginManager.instance()
    pm.discover()
    try:
        pm.get_manifest("napari-gmm")
    except KeyError:
        pytest.skip("napari-gmm is not installed (pip install -e .) so napari cannot discover it")


def _menu_action(viewer, title_start):
    """The QAction under Layers > Segment > Gaussian mixture (EM) whose text starts so."""
    bar = viewer.window._qt_window.menuBar()
    layers = next(a.menu() for a in bar.actions() if a.text().replace("&", "") == "Layers")
    layers.aboutToShow.emit()
    segment = next(a.menu() for a in layers.actions() if a.text().replace("&", "") == "Segment")
    segment.aboutToShow.emit()
    gmm = next(a.menu() for a in segment.actions() if a.text().replace("&&", "&") == SUBMENU)
    gmm.aboutToShow.emit()  # app-model menus update their actions (and enablement) on show
    titles = [a.text().replace("&&", "&") for a in gmm.actions()]
    return next((a for a in gmm.actions() if a.text().replace("&&", "&").startswith(title_start)), None), titles


def _wait_commands(qtbot):
    qtbot.waitUntil(lambda: not _commands._RUNNING, timeout=WAIT_MS)


def bands(shape=(40, 50), seed=0):
    rng = np.random.default_rng(seed)
    truth = np.ones(shape, np.uint8)
    truth[..., shape[-2] // 3 :, :] = 2
    truth[..., 2 * shape[-2] // 3 :, :] = 3
    return (np.array([30.0, 110.0, 200.0])[truth - 1] + rng.normal(0, 6, shape)).clip(0, 255).astype(np.uint8), truth


def test_segment_the_selected_layer_from_the_layers_menu(make_napari_viewer, qtbot, notes):
    _installed()
    viewer = make_napari_viewer()
    img, truth = bands()
    viewer.add_labels(np.zeros((4, 4), np.uint8), name="not an image")
    action, titles = _menu_action(viewer, "Segment the selected layer")
    assert titles[:3] == [
        "Segment the selected layer (last-used settings) (napari GMM)",
        "Segment the selected layer, automatic K (BIC, K <= 8) (napari GMM)",
        "Background model of the selected layer (default preset) (napari GMM)",
    ], titles
    assert not action.isEnabled()  # a Labels layer is selected: nothing to segment
    layer = viewer.add_image(img, name="bands")  # now selected
    action, _ = _menu_action(viewer, "Segment the selected layer")
    assert action.isEnabled()
    _settings.save("segment", {"n_components": 3})  # "last-used settings": K = 3
    action.trigger()
    _wait_commands(qtbot)
    assert notes["error"] == []
    out = viewer.layers["bands GMM labels"]
    np.testing.assert_array_equal(out.data, truth)
    assert viewer.layers[-1] is out and out.metadata["napari_gmm"]["params"]["n_components"] == 3

    # the user corrects a pixel; the command again (with K = 2 remembered) keeps the edited layer
    out.paint((2, 2), 3)
    edited = out.data.copy()
    _settings.save("segment", {"n_components": 2})
    viewer.layers.selection.active = layer
    _menu_action(viewer, "Segment the selected layer")[0].trigger()
    _wait_commands(qtbot)
    np.testing.assert_array_equal(viewer.layers["bands GMM labels"].data, edited)
    assert viewer.layers["bands GMM labels [1]"].data.max() == 2
    assert notes["warning"] and "manual edits" in notes["warning"][-1]

    # automatic K finds the 3 classes; the remembered settings (K = 2) are left alone
    viewer.layers.selection.active = layer
    _menu_action(viewer, "Segment the selected layer, automatic K")[0].trigger()
    _wait_commands(qtbot)
    auto = viewer.layers[-1]
    assert auto.metadata["napari_gmm"]["params"]["n_components"] == "auto"
    np.testing.assert_array_equal(auto.data, truth)
    assert _settings.load("segment")["n_components"] == 2


def test_background_model_of_the_selected_stack(make_napari_viewer, qtbot):
    _installed()
    viewer = make_napari_viewer()
    from napari_gmm.datasets import moving_objects

    stack, truth = moving_objects((30, 40, 48), seed=0)
    viewer.add_image(stack, name="movie")
    action, _ = _menu_action(viewer, "Background model of the selected layer")
    action.trigger()
    _wait_commands(qtbot)
    fg = [lyr for lyr in viewer.layers if isinstance(lyr, napari.layers.Labels)]
    assert fg, [lyr.name for lyr in viewer.layers]
    found = np.asarray(fg[0].data) == 1
    assert found.shape == stack.shape
    # the same answer as the API with its defaults: about half the moving pixels, no false alarms
    assert (found & (truth == 1)).sum() > 0.3 * truth.sum()
    assert (found & (truth == 0)).sum() < 1e-3 * (truth == 0).sum()


def test_labels_saved_as_tiff_keep_their_model(make_napari_viewer, qtbot, tmp_path):
    _installed()
    import tifffile

    viewer = make_napari_viewer()
    img, truth = bands()
    viewer.add_image(img, name="bands")
    w = _segment.SegmentWidget(viewer)
    worker = w.run()
    qtbot.waitUntil(lambda: not w.is_running, timeout=WAIT_MS)
    assert worker is not None
    labels = viewer.layers["bands GMM labels"]
    viewer.layers.selection.active = labels
    written = viewer.layers.save(str(tmp_path / "cells.tif"), selected=True, plugin="napari-gmm")
    assert [p.rsplit("/", 1)[-1] for p in written] == ["cells.tif", "cells.tif.gmm.json"]
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "cells.tif"), labels.data)
    side = json.loads((tmp_path / "cells.tif.gmm.json").read_text())
    assert side["model"] == labels.metadata["napari_gmm"]["model"] and side["source"] == "bands"
    assert w.load_model(tmp_path / "cells.tif.gmm.json") is not None  # the widget reads it back

    pytest.importorskip("zarr")
    from napari_gmm import io

    written = viewer.layers.save(str(tmp_path / "cells.zarr"), selected=True, plugin="napari-gmm")
    data, attrs = io.read_result(written[0])
    np.testing.assert_array_equal(np.asarray(data), labels.data)
    assert attrs["model"] == labels.metadata["napari_gmm"]["model"]
    rec = w.load_model(tmp_path / "cells.zarr")
    assert rec is not None and rec["models"][0].n_components == 3
    w.native.close()


def test_walkthrough_of_a_first_session(make_napari_viewer, qtbot, notes, tmp_path):
    """Open a sample -> Layers-menu command -> labels -> mixture plot -> edit labels -> re-run ->
    save the model -> apply it to a second layer (issue 14's user path)."""
    _installed()
    from napari_gmm._widgets._plots import MixturePlotWidget

    viewer = make_napari_viewer()
    viewer.open_sample("napari-gmm", "phantom")
    image, truth = viewer.layers["phantom"], viewer.layers["phantom truth"]
    viewer.layers.selection.active = image
    _menu_action(viewer, "Segment the selected layer")[0].trigger()  # defaults: K = 3
    _wait_commands(qtbot)
    labels = viewer.layers["phantom GMM labels"]
    assert (labels.data == truth.data).mean() > 0.95
    plot = MixturePlotWidget(viewer)
    viewer.window.add_dock_widget(plot, name="Mixture plot")
    assert plot.model_layer.value is labels and plot.artists  # the newest model, drawn
    labels.paint((10, 10), int(labels.data[10, 10]) % 3 + 1)  # a correction with another class
    viewer.layers.selection.active = image
    _menu_action(viewer, "Segment the selected layer")[0].trigger()
    _wait_commands(qtbot)
    assert "phantom GMM labels [1]" in viewer.layers and notes["warning"]
    w = _segment.SegmentWidget(viewer)
    viewer.window.add_dock_widget(w, name="Gaussian mixture segmentation")
    viewer.layers.selection.active = labels
    path = w.save_model(tmp_path / "phantom.gmm.json")
    second = viewer.add_image(np.asarray(image.data)[::-1].copy(), name="phantom flipped")
    w.load_model(path)
    w.apply_model(image=second)
    qtbot.waitUntil(lambda: not w.is_running, timeout=WAIT_MS)
    flipped = viewer.layers["phantom flipped GMM labels"]
    assert (flipped.data == np.asarray(truth.data)[::-1]).mean() > 0.95
    assert notes["error"] == []
