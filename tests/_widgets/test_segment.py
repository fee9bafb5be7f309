"""The "Gaussian mixture segmentation" dock widget under a real (headless, Xvfb) napari viewer.

Run with:  xvfb-run -a -s "-screen 0 1600x1000x24" env QT_QPA_PLATFORM=xcb python -m pytest tests/_widgets
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

napari = pytest.importorskip("napari")
pytest.importorskip("pytestqt")

import napari_gmm as ng  # noqa: E402
from napari_gmm._widgets import _segment  # noqa: E402
from napari_gmm._widgets._segment import SegmentWidget, segment_widget  # noqa: E402
from tests._widgets._util import WAIT_MS, dock_segment, run_and_wait  # noqa: E402


# ------------------------------------------------------------------------------------------ fixtures
def dock(viewer) -> SegmentWidget:
    # these tests check the per-pixel model (spatial: test_spatial_controls)
    return dock_segment(viewer, smoothing="off")


def layer_state(viewer):
    return [(id(layer), layer.name) for layer in viewer.layers]


def camera():
    from skimage import data

    return data.camera()


def small_rgb():
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[::4, ::4])  # (128, 128, 3) uint8


def phantom(rng, shape=(64, 64), means=(40.0, 120.0, 200.0), sd=8.0):
    """Three horizontal bands with known classes 1..3 plus Gaussian noise (float64)."""
    truth = np.ones(shape, np.uint8)
    truth[shape[0] // 3 :] = 2
    truth[2 * shape[0] // 3 :] = 3
    img = np.asarray(means)[truth - 1] + rng.normal(0, sd, shape)
    return img, truth


# ------------------------------------------------------------------------------------------ grey
def test_contribution_is_the_widget_class():
    # napari.yaml points at segment_widget; napari passes the viewer because of this annotation
    import inspect

    assert segment_widget is SegmentWidget
    ann = inspect.signature(SegmentWidget.__init__).parameters["viewer"].annotation
    assert ann in ("napari.viewer.Viewer", napari.viewer.Viewer)


def test_grey_run_adds_labels_matching_the_core(viewer, qtbot, notes):
    img = camera()
    before = img.copy()
    layer = viewer.add_image(img, name="camera", scale=(0.5, 0.25), units=("um", "nm"), axis_labels=("y", "x"))
    w = dock(viewer)
    assert w.image.value is layer  # active layer preselected
    assert w.mode.value.startswith("grey")
    w.n_components.value = 3
    run_and_wait(qtbot, w)

    assert notes["error"] == []
    assert [lyr.name for lyr in viewer.layers] == ["camera", "camera GMM labels"]
    labels = viewer.layers["camera GMM labels"]
    assert isinstance(labels, napari.layers.Labels)
    assert labels.data.dtype == np.uint8
    assert labels.data.shape == img.shape
    assert set(np.unique(labels.data)) == {1, 2, 3}
    # same result as the scripting API with the widget's defaults
    expected = ng.segment(img, n_components=3, init="auto", random_state=0)
    np.testing.assert_array_equal(labels.data, expected)
    # label 1 = darkest class
    means = [img[labels.data == k].mean() for k in (1, 2, 3)]
    assert means == sorted(means)
    # geometry follows the image
    np.testing.assert_allclose(labels.scale, (0.5, 0.25))
    assert labels.units == layer.units and labels.axis_labels == ("y", "x")
    # metadata: JSON-able, model restorable, params and source recorded
    meta = labels.metadata["napari_gmm"]
    json.dumps(meta)
    assert meta["source"] == "camera"
    assert meta["params"]["n_components"] == 3
    assert meta["params"]["init"] == "auto"
    assert meta["params"]["channel_axis"] is None
    model = ng.MixtureModel.from_dict(meta["model"])
    assert np.asarray(model.means).shape == (3, 1)
    np.testing.assert_allclose(np.sum(model.weights), 1.0, rtol=1e-9)
    # summary text shows the fit
    text = w.summary.value
    assert "K = 3" in text and "log-likelihood" in text and "iterations" in text
    assert text.count("\n") >= 5  # one row per component
    # the input is untouched
    np.testing.assert_array_equal(layer.data, before)
    assert layer.data is img


def test_first_run_of_a_session_says_why_it_may_be_slow(viewer, qtbot, notes, monkeypatch):
    from napari_gmm._widgets import _common

    monkeypatch.setattr(_common, "_WARM", set())  # as in a fresh session
    viewer.add_image(camera()[::4, ::4], name="camera")
    w = dock(viewer)
    worker = w.run()
    assert worker is not None
    assert "first run of this session" in w.summary.value and "compiles" in w.summary.value
    # short lines: the status label sizes the dock, and one long line squeezed the canvas out
    assert max(len(line) for line in w.summary.value.splitlines()) <= 45
    qtbot.waitUntil(lambda: not w.is_running, timeout=WAIT_MS)
    assert "segment" in _common._WARM
    assert w.run() is not None  # second run: the plain status line
    assert w.summary.value == "running on 'camera'..."
    qtbot.waitUntil(lambda: not w.is_running, timeout=WAIT_MS)
    assert notes["error"] == []


def test_rerun_updates_the_same_labels_layer(viewer, qtbot, notes):
    img = camera()
    viewer.add_image(img, name="camera")
    w = dock(viewer)
    w.n_components.value = 3
    run_and_wait(qtbot, w)
    first = viewer.layers["camera GMM labels"]
    n_layers = len(viewer.layers)
    seen = []
    first.events.data.connect(lambda e: seen.append(first.metadata["napari_gmm"]["params"]["n_components"]))

    w.n_components.value = 2
    run_and_wait(qtbot, w)
    assert notes["error"] == []
    assert len(viewer.layers) == n_layers
    assert viewer.layers["camera GMM labels"] is first
    assert set(np.unique(first.data)) == {1, 2}
    assert first.metadata["napari_gmm"]["params"]["n_components"] == 2
    np.testing.assert_array_equal(first.data, ng.segment(img, n_components=2, random_state=0))
    # metadata was updated before the data event fired (plots listening to it see the new model)
    assert seen and seen[-1] == 2


def test_a_users_layer_with_the_output_name_is_not_overwritten(viewer, qtbot, notes):
    img = camera()
    viewer.add_image(img, name="camera")
    mine = viewer.add_labels(np.ones(img.shape, np.uint8), name="camera GMM labels")
    w = dock(viewer)
    w.image.value = viewer.layers["camera"]
    run_and_wait(qtbot, w)
    assert notes["error"] == []
    np.testing.assert_array_equal(mine.data, 1)
    assert mine.name == "camera GMM labels" and "napari_gmm" not in mine.metadata
    ours = [lyr for lyr in viewer.layers if "napari_gmm" in lyr.metadata]
    assert len(ours) == 1 and ours[0] is not mine
    assert set(np.unique(ours[0].data)) == {1, 2, 3}
    assert ours[0].metadata["napari_gmm"]["output"] == "labels"
    # a re-run finds our (renamed by napari) layer again: no pile of copies
    w.n_components.value = 2
    run_and_wait(qtbot, w)
    assert [lyr for lyr in viewer.layers if "napari_gmm" in lyr.metadata] == ours
    assert set(np.unique(ours[0].data)) == {1, 2}
    np.testing.assert_array_equal(mine.data, 1)
    # a result the user renamed to keep it is not overwritten either
    ours[0].name = "kept K=2"
    w.n_components.value = 4
    run_and_wait(qtbot, w)
    assert set(np.unique(ours[0].data)) == {1, 2}
    fresh = [lyr for lyr in viewer.layers if "napari_gmm" in lyr.metadata and lyr is not ours[0]]
    assert len(fresh) == 1 and set(np.unique(fresh[0].data)) == {1, 2, 3, 4}


def test_quantised_and_posteriors(viewer, qtbot, notes):
    rng = np.random.default_rng(0)
    img, _ = phantom(rng)
    img = np.clip(img, 0, 255).astype(np.uint8)
    viewer.add_image(img, name="ph")
    w = dock(viewer)
    w.n_components.value = 3
    w.out_quantised.value = True
    w.out_posteriors.value = True
    run_and_wait(qtbot, w)
    assert notes["error"] == []
    labels = viewer.layers["ph GMM labels"].data
    quant = viewer.layers["ph GMM quantised"].data
    post = viewer.layers["ph GMM posteriors"].data
    model = ng.MixtureModel.from_dict(viewer.layers["ph GMM labels"].metadata["napari_gmm"]["model"])

    assert quant.dtype == np.uint8 and quant.shape == img.shape
    lut = np.rint(np.sort(np.asarray(model.means)[:, 0])).astype(np.uint8)
    np.testing.assert_array_equal(quant, lut[labels - 1])

    assert post.dtype == np.float32 and post.shape == (3, *img.shape)
    assert viewer.layers["ph GMM posteriors"].axis_labels[0] == "component"
    np.testing.assert_allclose(post.sum(axis=0), 1.0, atol=1e-5)
    # posterior map k-1 belongs to label k: the MAP of the maps is the labels wherever it is not a tie
    top2 = np.sort(post, axis=0)[-2:]
    clear = (top2[1] - top2[0]) > 1e-4
    assert clear.mean() > 0.9
    np.testing.assert_array_equal((np.argmax(post, axis=0) + 1)[clear], labels[clear])
    assert "napari_gmm" in viewer.layers["ph GMM posteriors"].metadata


def test_more_than_255_classes_give_uint16_labels(viewer, qtbot, notes):
    img = np.arange(32 * 32, dtype=np.uint16).reshape(32, 32) * 3
    viewer.add_image(img, name="ramp")
    w = dock(viewer)
    w.n_components.value = 300
    w.max_iter.value = 3
    w.tol.value = "0"
    run_and_wait(qtbot, w)
    assert notes["error"] == []
    labels = viewer.layers["ramp GMM labels"].data
    assert labels.dtype == np.uint16
    assert labels.min() >= 1 and labels.max() <= 300 and labels.max() > 255
    assert np.all(np.diff(labels.ravel().astype(int)) >= 0)  # a ramp: labels never go down
    assert "label  weight" in w.summary.value and "..." in w.summary.value  # long tables are cut


# ------------------------------------------------------------------------------------------ colour
def test_rgb_layer_switches_to_colour_mode(viewer, qtbot, notes):
    rgb = small_rgb()
    before = rgb.copy()
    viewer.add_image(rgb, name="astro")
    w = dock(viewer)
    assert w.image.value is viewer.layers["astro"]
    assert "colour" in w.mode.value
    assert w.channel_axis.value == 2 and not w.channel_axis.enabled
    assert w.init.value == "auto"
    assert any("colour mode" in m for m in notes["info"])  # the user is told

    w.n_components.value = 4
    w.out_quantised.value = True
    run_and_wait(qtbot, w)
    assert notes["error"] == []
    labels = viewer.layers["astro GMM labels"]
    quant = viewer.layers["astro GMM quantised"]
    assert labels.data.shape == rgb.shape[:2] and labels.data.dtype == np.uint8
    assert set(np.unique(labels.data)) == {1, 2, 3, 4}
    assert quant.rgb and quant.data.shape == rgb.shape and quant.data.dtype == np.uint8
    colours = np.unique(quant.data.reshape(-1, 3), axis=0)
    assert len(colours) == 4
    # each class is painted with its own colour, darker classes first
    brightness = [quant.data[labels.data == k].mean() for k in (1, 2, 3, 4)]
    assert brightness == sorted(brightness)
    meta = labels.metadata["napari_gmm"]
    assert meta["params"]["channel_axis"] == 2 and meta["params"]["init"] == "auto"
    assert np.asarray(ng.MixtureModel.from_dict(meta["model"]).means).shape == (4, 3)
    expected = ng.segment(rgb, n_components=4, channel_axis=2, init="auto", random_state=0)
    np.testing.assert_array_equal(labels.data, expected)
    np.testing.assert_array_equal(rgb, before)


def test_rgba_alpha_is_ignored(viewer, qtbot, notes):
    rgb = small_rgb()
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 7, np.uint8)], axis=-1)
    viewer.add_image(rgba, name="rgba")
    w = dock(viewer)
    assert "alpha ignored" in w.mode.value
    w.n_components.value = 3
    run_and_wait(qtbot, w)
    assert notes["error"] == []
    expected = ng.segment(rgb, n_components=3, channel_axis=-1, init="auto", random_state=0)
    np.testing.assert_array_equal(viewer.layers["rgba GMM labels"].data, expected)
    assert viewer.layers["rgba"].data.shape[-1] == 4


def test_multichannel_stack_channel_axis_choice(viewer, qtbot, notes):
    rng = np.random.default_rng(1)
    a, truth = phantom(rng, shape=(48, 48))
    b = np.where(truth == 2, 180.0, 60.0) + rng.normal(0, 6, truth.shape)
    stack = np.clip(np.stack([a, b]), 0, 255).astype(np.uint8)  # (C=2, Y, X)
    viewer.add_image(stack, name="cyx", scale=(1.0, 0.5, 0.25), axis_labels=("c", "y", "x"))
    w = dock(viewer)
    assert w.channel_axis.value is None and w.mode.value.startswith("grey")
    assert 0 in w.channel_axis.choices
    w.channel_axis.value = 0
    assert "colour" in w.mode.value and w.covariance_type.enabled
    w.n_components.value = 3
    w.covariance_type.value = "diag"
    run_and_wait(qtbot, w)
    assert notes["error"] == []
    labels = viewer.layers["cyx GMM labels"]
    assert labels.data.shape == truth.shape
    assert labels.ndim == 2
    np.testing.assert_allclose(labels.scale, (0.5, 0.25))  # the channel axis is dropped
    assert labels.axis_labels == ("y", "x")
    expected = ng.segment(stack, n_components=3, channel_axis=0, covariance_type="diag", init="auto", random_state=0)
    np.testing.assert_array_equal(labels.data, expected)
    assert labels.metadata["napari_gmm"]["params"]["covariance_type"] == "diag"


# ------------------------------------------------------------------------------------------ nD
def test_fit_each_time_point(viewer, qtbot, notes):
    rng = np.random.default_rng(2)
    frames, truths = [], []
    for t in range(3):  # bleaching: every class gets darker over time
        img, truth = phantom(rng, shape=(40, 40), means=(40 * 0.7**t, 120 * 0.7**t, 200 * 0.7**t), sd=4)
        frames.append(img)
        truths.append(truth)
    stack = np.clip(np.stack(frames), 0, 255).astype(np.uint8)
    truth = np.stack(truths)
    viewer.add_image(stack, name="tyx")
    w = dock(viewer)
    assert 0 in w.split_axis.choices
    w.split_axis.value = 0
    w.n_components.value = 3
    w.out_quantised.value = True
    w.out_posteriors.value = True
    run_and_wait(qtbot, w)
    assert notes["error"] == []
    labels = viewer.layers["tyx GMM labels"]
    quant = viewer.layers["tyx GMM quantised"].data
    post = viewer.layers["tyx GMM posteriors"].data
    assert labels.data.shape == stack.shape
    assert quant.shape == stack.shape and quant.dtype == stack.dtype
    assert post.shape == (3, *stack.shape) and post.dtype == np.float32
    for t in range(3):
        np.testing.assert_array_equal(labels.data[t], ng.segment(stack[t], n_components=3, random_state=0))
        q_t = ng.quantize(stack[t], n_components=3, channel_axis=None, init="ranges", random_state=0)
        np.testing.assert_array_equal(quant[t], q_t)
        m_t = ng.fit_mixture(stack[t], n_components=3, random_state=0)
        np.testing.assert_allclose(post[:, t], m_t.predict_proba(stack[t]), atol=1e-6)
    assert (labels.data == truth).mean() > 0.99  # per-frame models follow the bleaching
    meta = labels.metadata["napari_gmm"]
    assert isinstance(meta["model"], list) and len(meta["model"]) == 3
    assert meta["params"]["split_axis"] == 0
    json.dumps(meta)
    assert "3 fits along axis 0" in w.summary.value


def test_dask_image_stays_lazy(viewer, qtbot, notes):
    da = pytest.importorskip("dask.array")
    img = camera()
    lazy = da.from_array(img, chunks=(128, 256))
    viewer.add_image(lazy, name="lazy", multiscale=False)
    w = dock(viewer)
    w.n_components.value = 3
    w.out_quantised.value = True
    reports = []
    w._relay.progressed.connect(lambda done, total: reports.append((done, total)))
    run_and_wait(qtbot, w)
    assert notes["error"] == []
    assert len(reports) > 1  # the bar moves for dask input too (it showed only a busy indicator)
    labels = viewer.layers["lazy GMM labels"].data
    quant = viewer.layers["lazy GMM quantised"].data
    assert isinstance(labels, da.Array) and isinstance(quant, da.Array)  # not materialised
    np.testing.assert_array_equal(np.asarray(labels), ng.segment(img, n_components=3, random_state=0))
    np.testing.assert_array_equal(
        np.asarray(quant), ng.quantize(img, n_components=3, channel_axis=None, init="ranges", random_state=0)
    )


def test_not_converged_is_reported(viewer, qtbot, notes):
    viewer.add_image(camera(), name="camera")
    w = dock(viewer)
    w.n_components.value = 4
    w.max_iter.value = 2
    w.tol.value = "1e-12"  # the default start is polished to 1e-5 nats: 2 steps at tol 1e-6 converge
    run_and_wait(qtbot, w)
    assert notes["error"] == []
    assert "NOT converged after 2 iterations" in w.summary.value
    # the core's ConvergenceWarning, raised in the worker thread, reaches the user as a notification
    assert any("converge" in m and "max_iter" in m for m in notes["warning"]), notes["warning"]
    assert viewer.layers["camera GMM labels"].metadata["napari_gmm"]["params"]["max_iter"] == 2


def test_float_image_with_nan_and_inf(viewer, qtbot, notes):
    rng = np.random.default_rng(3)
    img, truth = phantom(rng)
    img[0, :5] = np.nan
    img[1, :5] = np.inf
    before = img.copy()
    viewer.add_image(img, name="float")
    w = dock(viewer)
    w.n_components.value = 3
    run_and_wait(qtbot, w)
    assert notes["error"] == []
    labels = viewer.layers["float GMM labels"].data
    assert np.all(labels[:2, :5] == 0)  # not finite -> unassigned
    assert any("inf" in m for m in notes["warning"]), notes["warning"]  # the core says it excluded them
    ok = np.isfinite(img)
    assert (labels[ok] == truth[ok]).mean() > 0.99
    np.testing.assert_array_equal(viewer.layers["float"].data, before)  # NaN-aware equality


def test_multiscale_layer_is_refused(viewer, qtbot, notes):
    img = camera()
    viewer.add_image([img, img[::2, ::2]], name="pyramid", multiscale=True)
    w = dock(viewer)
    msg = assert_refused(viewer, w, notes, qtbot, ["multiscale"])
    assert "layer.data[0]" in msg


# ------------------------------------------------------------------------------------------ mask
def test_mask_restricts_fit_and_labels(viewer, qtbot, notes):
    img = camera()
    viewer.add_image(img, name="camera")
    roi = np.zeros(img.shape, np.uint8)
    roi[100:400, 50:300] = 1
    viewer.add_labels(roi, name="roi")
    w = dock(viewer)
    w.image.value = viewer.layers["camera"]
    w.mask.value = viewer.layers["roi"]
    w.n_components.value = 2
    run_and_wait(qtbot, w)
    assert notes["error"] == []
    labels = viewer.layers["camera GMM labels"].data
    assert np.all(labels[roi == 0] == 0)
    assert set(np.unique(labels[roi == 1])) == {1, 2}
    expected = ng.segment(img, n_components=2, mask=roi.astype(bool), random_state=0)
    np.testing.assert_array_equal(labels, expected)
    assert viewer.layers["camera GMM labels"].metadata["napari_gmm"]["params"]["mask"] == "roi"
    np.testing.assert_array_equal(viewer.layers["roi"].data, (roi != 0).astype(np.uint8))


def test_bool_image_layer_is_offered_as_mask(viewer):
    viewer.add_image(camera(), name="camera")
    viewer.add_image(np.ones((512, 512), bool), name="binary")
    w = dock(viewer)
    assert viewer.layers["binary"] in w.mask.choices


# ------------------------------------------------------------------------------------------ bad input
def _data_copy(layer):
    """A copy of a layer's data: of every level of a multiscale layer (whose data, napari's
    MultiScaleData, is no array)."""
    if getattr(layer, "multiscale", False):
        return [np.array(level, copy=True) for level in layer.data]
    return np.array(layer.data, copy=True)


def assert_refused(viewer, w, notes, qtbot, expect, **run_kwargs):
    state = layer_state(viewer)
    datas = [_data_copy(layer) for layer in viewer.layers]
    worker = w.run(**run_kwargs)
    if worker is not None:  # refused by the core inside the worker
        qtbot.waitUntil(lambda: not w.is_running, timeout=WAIT_MS)
    assert notes["error"], "no error notification"
    msg = notes["error"][-1]
    assert any(e.lower() in msg.lower() for e in expect), msg
    assert layer_state(viewer) == state, "the viewer's layer list changed"
    for layer, before in zip(viewer.layers, datas, strict=True):
        if isinstance(before, list):
            for level, level_before in zip(layer.data, before, strict=True):
                np.testing.assert_array_equal(level, level_before)
        else:
            np.testing.assert_array_equal(layer.data, before)
    return msg


def test_constant_image_is_refused(viewer, qtbot, notes):
    viewer.add_image(np.full((32, 32), 5, np.uint16), name="flat")
    w = dock(viewer)
    assert_refused(viewer, w, notes, qtbot, ["constant", "distinct", "single value"])


def test_too_many_components_is_refused(viewer, qtbot, notes):
    img = np.repeat(np.array([10, 20, 30], np.uint8), 100).reshape(30, 10)
    viewer.add_image(img, name="three")
    w = dock(viewer)
    w.n_components.value = 5
    assert_refused(viewer, w, notes, qtbot, ["distinct", "n_components", "K"])


def test_labels_layer_is_refused(viewer, qtbot, notes):
    viewer.add_image(camera(), name="camera")
    lab = viewer.add_labels(np.zeros((512, 512), np.uint8), name="seg")
    w = dock(viewer)
    assert lab not in w.image.choices  # the picker only lists Image layers
    msg = assert_refused(viewer, w, notes, qtbot, ["labels layer"], image=lab)
    assert "Image layer" in msg


def test_labels_layer_active_when_opened_is_explained(viewer, notes):
    viewer.add_image(camera(), name="camera")
    viewer.add_labels(np.zeros((512, 512), np.uint8), name="seg")  # now the active layer
    w = dock(viewer)
    assert notes["error"] == []  # not an error: the widget just says why it picked another layer
    assert notes["info"] and "Labels layer" in notes["info"][-1] and "'camera'" in notes["info"][-1]
    assert w.image.value is viewer.layers["camera"]


def test_bool_image_is_refused(viewer, qtbot, notes):
    mask = np.zeros((32, 32), bool)
    mask[:16] = True
    layer = viewer.add_image(mask, name="binary")
    w = dock(viewer)
    assert layer not in w.image.choices  # not offered; a script handing it in is told why
    assert_refused(viewer, w, notes, qtbot, ["binary", "bool"], image=layer)


def test_mask_shape_mismatch_is_refused(viewer, qtbot, notes):
    viewer.add_image(camera(), name="camera")
    viewer.add_labels(np.ones((100, 100), np.uint8), name="small roi")
    w = dock(viewer)
    w.image.value = viewer.layers["camera"]
    w.mask.value = viewer.layers["small roi"]
    msg = assert_refused(viewer, w, notes, qtbot, ["shape"])
    assert "(100, 100)" in msg and "(512, 512)" in msg


def test_bad_tol_text_is_refused(viewer, qtbot, notes):
    viewer.add_image(camera(), name="camera")
    w = dock(viewer)
    w.show_advanced.value = True
    w.tol.value = "small"
    assert_refused(viewer, w, notes, qtbot, ["tol"])


def test_no_image_layer(viewer, qtbot, notes):
    w = dock(viewer)
    assert w.image.value is None
    assert_refused(viewer, w, notes, qtbot, ["no image layer"])


# ------------------------------------------------------------------------------------------ cancel
def test_cancel_leaves_viewer_untouched(viewer, qtbot, notes, monkeypatch):
    viewer.add_image(camera(), name="camera")
    w = dock(viewer)
    real = ng.segment

    def slow_segment(image, *args, progress=None, **kwargs):
        # a long computation that reports progress (the widget's cancel acts through the callback)
        for i in range(500):
            if progress is not None:
                progress(i, 500)
            time.sleep(0.01)
        return real(image, *args, progress=progress, **kwargs)

    monkeypatch.setattr(_segment.ng, "segment", slow_segment)
    state = layer_state(viewer)
    worker = w.run()
    assert worker is not None and w.is_running and w.run_button.text == "Cancel"
    # the GUI thread keeps running while the worker computes: progress reports reach the bar
    qtbot.waitUntil(lambda: w.progress.native.value() > 0, timeout=WAIT_MS)
    assert not w.progress.native.isHidden()
    w.run_button.native.click()  # the user presses "Cancel"
    qtbot.waitUntil(lambda: not w.is_running, timeout=WAIT_MS)
    assert layer_state(viewer) == state
    assert notes["error"] == []
    assert any("cancelled" in m for m in notes["info"])
    assert w.run_button.text == "Run"


def test_closing_the_widget_during_a_fit(viewer, qtbot, notes, monkeypatch):
    viewer.add_image(camera(), name="camera")
    w = dock(viewer)
    seen = []

    def slow_segment(image, *args, progress=None, **kwargs):
        for i in range(1000):
            progress(i, 1000)  # raises once the widget is gone: the computation stops
            seen.append(i)
            time.sleep(0.01)
        raise AssertionError("the worker was not stopped")

    monkeypatch.setattr(_segment.ng, "segment", slow_segment)
    state = layer_state(viewer)
    worker = w.run()
    done = []
    worker.finished.connect(lambda: done.append(True))
    qtbot.waitUntil(lambda: len(seen) > 3, timeout=WAIT_MS)
    viewer.window.remove_dock_widget(w.native)  # the user closes the dock mid-fit
    w.native.deleteLater()
    qtbot.waitUntil(lambda: bool(done), timeout=WAIT_MS)
    qtbot.wait(50)  # late queued signals must not touch deleted widgets (pytest-qt would report it)
    assert len(seen) < 1000
    assert layer_state(viewer) == state
    assert notes["error"] == []


# ------------------------------------------------------------------------------------------ plugin
def test_opens_from_the_plugin_manifest(make_napari_viewer, qtbot, notes):
    """Through napari's plugin machinery (viewer handed in as a PublicOnlyProxy)."""
    npe2 = pytest.importorskip("npe2")
    pm = npe2.PluginManager.instance()
    pm.discover()
    try:
        pm.get_manifest("napari-gmm")
    except KeyError:
        pytest.skip("napari-gmm is not installed (pip install -e .) so napari cannot discover it")
    viewer = make_napari_viewer()
    viewer.add_image(camera(), name="camera")
    _, w = viewer.window.add_plugin_dock_widget("napari-gmm", "Gaussian mixture segmentation")
    assert isinstance(w, SegmentWidget)
    w.n_components.value = 2
    run_and_wait(qtbot, w)
    assert notes["error"] == []
    assert set(np.unique(viewer.layers["camera GMM labels"].data)) == {1, 2}
