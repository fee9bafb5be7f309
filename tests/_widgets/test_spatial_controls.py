"""The segmentation widget's spatial controls: "spatial smoothing" (off / auto / value) and "correct
uneven illumination" (the hidden-Markov-random-field model of napari_gmm.spatial, issue 11)."""

from __future__ import annotations

import json

import numpy as np
import pytest

napari = pytest.importorskip("napari")
pytest.importorskip("pytestqt")

import napari_gmm as ng  # noqa: E402
import napari_gmm.spatial  # noqa: E402,F401
from napari_gmm import datasets  # noqa: E402
from tests._widgets._util import WAIT_MS, run_and_wait  # noqa: E402
from tests._widgets._util import dock_segment as dock


def accuracy(labels, truth):
    return float(np.mean(np.asarray(labels) == truth))


def test_defaults_offer_auto_smoothing(viewer):
    viewer.add_image(np.zeros((32, 32), np.uint8), name="img")
    w = dock(viewer)
    assert w.smoothing.value == "auto"
    assert not w.bias_field.value
    assert w.beta.native.isHidden()  # only for "value"
    w.smoothing.value = "value"
    assert not w.beta.native.isHidden()
    assert (w.beta.min, w.beta.max) == (0.0, 10.0)


def test_auto_smoothing_beats_per_pixel_on_a_noisy_phantom(viewer, qtbot, notes):
    img, truth, _ = datasets.noisy_regions((64, 64), noise=0.58)
    before = img.copy()
    layer = viewer.add_image(img, name="noisy", scale=(0.5, 0.5))
    w = dock(viewer)
    w.n_components.value = 3
    w.smoothing.value = "off"
    run_and_wait(qtbot, w)
    assert notes["error"] == []
    off = viewer.layers["noisy GMM labels"].data.copy()
    # off is the per-pixel path, exactly the scripting API's result
    np.testing.assert_array_equal(off, ng.segment(img, n_components=3, init="auto", random_state=0))
    assert "spatial smoothing" not in w.summary.value and "log-likelihood / pixel" in w.summary.value
    assert "beta" not in viewer.layers["noisy GMM labels"].metadata["napari_gmm"]["params"]

    w.smoothing.value = "auto"
    run_and_wait(qtbot, w)
    assert notes["error"] == []
    labels = viewer.layers["noisy GMM labels"]
    acc_off, acc_auto = accuracy(off, truth), accuracy(labels.data, truth)
    assert acc_auto > acc_off + 0.05, (acc_off, acc_auto)
    assert acc_auto > 0.9
    # the chosen beta: in the model's params, the layer's params and the summary
    meta = labels.metadata["napari_gmm"]
    json.dumps(meta)
    model = ng.MixtureModel.from_dict(meta["model"])
    beta = model.params["beta"]
    assert beta > 0 and model.params["beta_auto"] is True
    assert meta["params"]["beta"] == "auto" and meta["params"]["beta_used"] == pytest.approx(beta)
    assert meta["params"]["spacing"] == [0.5, 0.5]
    assert meta["params"]["bias_field"] is False
    assert f"beta = {beta:.3g} (estimated)" in w.summary.value
    # the spatial model's objective is named for what it is
    assert "mean-field free energy / pixel" in w.summary.value and "log-likelihood" not in w.summary.value
    # same as the core with the same options
    expected = ng.segment(img, 3, init="auto", random_state=0, beta="auto", spacing=(0.5, 0.5))
    np.testing.assert_array_equal(labels.data, expected)
    np.testing.assert_array_equal(layer.data, before)  # input untouched
    assert [lyr.name for lyr in viewer.layers] == ["noisy", "noisy GMM labels"]  # no bias layer


def test_fixed_beta_value(viewer, qtbot, notes):
    img, truth, _ = datasets.noisy_regions((48, 48), noise=0.58, seed=3)
    viewer.add_image(img, name="img")
    w = dock(viewer)
    w.smoothing.value = "value"
    w.beta.value = 1.2
    run_and_wait(qtbot, w)
    assert notes["error"] == []
    meta = viewer.layers["img GMM labels"].metadata["napari_gmm"]
    assert meta["params"]["beta"] == pytest.approx(1.2)
    assert meta["params"]["beta_used"] == pytest.approx(1.2)
    assert "beta = 1.2 (set)" in w.summary.value


def test_bias_field_layer(viewer, qtbot, notes):
    img, truth, field = datasets.noisy_regions((64, 64), noise=0.33, bias=0.3, seed=1)
    viewer.add_image(img, name="biased", scale=(2.0, 1.0))
    w = dock(viewer)
    w.bias_field.value = True
    w.out_posteriors.value = True
    run_and_wait(qtbot, w)
    assert notes["error"] == []
    names = [lyr.name for lyr in viewer.layers]
    # the bias field and posteriors sit below the labels, which stay on top
    assert names[-1] == "biased GMM labels"
    assert "biased GMM bias field" in names
    bias = viewer.layers["biased GMM bias field"]
    assert isinstance(bias, napari.layers.Image)
    assert bias.data.shape == img.shape and bias.data.dtype == np.float32
    np.testing.assert_allclose(bias.scale, (2.0, 1.0))
    # geometric mean 1, and it follows the true field (up to its overall scale)
    assert abs(float(np.mean(np.log(bias.data)))) < 1e-3
    true_log = np.log(field) - np.log(field).mean()
    assert np.corrcoef(np.log(bias.data).ravel(), true_log.ravel())[0, 1] > 0.9
    meta = bias.metadata["napari_gmm"]
    assert meta["output"] == "bias" and meta["params"]["bias_field"] is True
    model = ng.MixtureModel.from_dict(viewer.layers["biased GMM labels"].metadata["napari_gmm"]["model"])
    assert model.params["bias_field"] >= 1 and model.params["bias_coef"]
    assert "illumination corrected" in w.summary.value
    # the posteriors are the spatial model's: (K, *pixels), sum 1
    post = viewer.layers["biased GMM posteriors"].data
    assert post.shape == (3, *img.shape)
    np.testing.assert_allclose(post.sum(axis=0), 1.0, atol=1e-4)
    assert accuracy(viewer.layers["biased GMM labels"].data, truth) > 0.9
    # a re-run updates the same bias layer in place
    run_and_wait(qtbot, w)
    assert viewer.layers["biased GMM bias field"] is bias
    assert [lyr.name for lyr in viewer.layers] == names


def test_each_time_point_with_bias(viewer, qtbot, notes):
    frames = [datasets.noisy_regions((32, 32), noise=0.33, bias=0.2, seed=s) for s in (1, 2)]
    stack = np.stack([f[0] for f in frames])
    viewer.add_image(stack, name="tyx")
    w = dock(viewer)
    w.split_axis.value = 0
    w.bias_field.value = True
    run_and_wait(qtbot, w)
    assert notes["error"] == []
    labels = viewer.layers["tyx GMM labels"]
    assert labels.data.shape == stack.shape
    assert viewer.layers["tyx GMM bias field"].data.shape == stack.shape
    meta = labels.metadata["napari_gmm"]
    assert isinstance(meta["model"], list) and len(meta["params"]["beta_used"]) == 2
    bias = viewer.layers["tyx GMM bias field"].data
    for t in range(2):  # each time point is the core's spatial fit of that frame, bias field included
        r = ng.spatial.fit_spatial(
            stack[t], 3, beta="auto", bias_field=True, init="auto", random_state=0, spacing=[1.0, 1.0]
        )
        np.testing.assert_array_equal(labels.data[t], r.labels)
        np.testing.assert_allclose(bias[t], r.bias, rtol=1e-6)
        assert meta["params"]["beta_used"][t] == pytest.approx(r.model.params["beta"])
    assert "2 fits along axis 0" in w.summary.value and "beta = " in w.summary.value


def test_settings_round_trip(viewer):
    viewer.add_image(np.zeros((32, 32), np.uint8), name="img")
    w = dock(viewer)
    w.smoothing.value = "value"
    w.beta.value = 2.5
    w.bias_field.value = True
    w._remember()
    s = w.current_settings()
    assert (s["smoothing"], s["beta"], s["bias_field"]) == ("value", 2.5, True)
    w2 = dock(viewer)
    assert (w2.smoothing.value, w2.beta.value, w2.bias_field.value) == ("value", 2.5, True)
    assert not w2.beta.native.isHidden()
    w2.reset_to_defaults()
    assert (w2.smoothing.value, w2.bias_field.value) == ("auto", False)
    assert w2.beta.native.isHidden()


def test_smoothing_on_4d_without_split_is_refused(viewer, qtbot, notes):
    data = np.random.default_rng(0).integers(0, 255, (2, 3, 16, 16), dtype=np.uint8)
    viewer.add_image(data, name="tzyx")
    w = dock(viewer)
    w.split_axis.value = None
    w.smoothing.value = "value"  # an explicit choice is refused ...
    state = [(id(lyr), lyr.name) for lyr in viewer.layers]
    assert w.run() is None
    assert any("fit each index of" in m and "spatial" in m for m in notes["error"])
    assert [(id(lyr), lyr.name) for lyr in viewer.layers] == state
    assert not w.is_running
    # ... the default ("auto") segments per pixel and says so
    w.smoothing.value = "auto"
    run_and_wait(qtbot, w)
    assert viewer.layers["tzyx GMM labels"].data.shape == data.shape
    assert not any("fit each index of" in m for m in notes["error"][1:])


def test_bias_on_negative_image_gives_a_notification(viewer, qtbot, notes):
    img = np.random.default_rng(1).normal(-100, 10, (32, 32)).astype(np.float32)
    viewer.add_image(img, name="neg")
    w = dock(viewer)
    w.bias_field.value = True
    state = [(id(lyr), lyr.name) for lyr in viewer.layers]
    run_and_wait(qtbot, w)
    assert any("bias_field" in m for m in notes["error"])
    assert [(id(lyr), lyr.name) for lyr in viewer.layers] == state


def test_cancel_during_the_spatial_fit(viewer, qtbot, notes, monkeypatch):
    from napari_gmm import spatial

    img, _, _ = datasets.noisy_regions((32, 32), noise=0.58)
    viewer.add_image(img, name="noisy")
    w = dock(viewer)
    real = spatial.fit_spatial

    def slow_fit(image, *args, progress=None, **kwargs):
        import time

        for i in range(500):
            progress(i, 500)  # raises Cancelled once Cancel is pressed
            time.sleep(0.01)
        return real(image, *args, progress=progress, **kwargs)

    monkeypatch.setattr(spatial, "fit_spatial", slow_fit)
    state = [(id(lyr), lyr.name) for lyr in viewer.layers]
    assert w.run() is not None
    qtbot.waitUntil(lambda: w.progress.native.value() > 0, timeout=WAIT_MS)
    w.run_button.native.click()
    qtbot.waitUntil(lambda: not w.is_running, timeout=WAIT_MS)
    assert [(id(lyr), lyr.name) for lyr in viewer.layers] == state
    assert notes["error"] == [] and any("cancelled" in m for m in notes["info"])


def test_mixture_plot_shows_the_criterion_against_k(viewer):
    from napari_gmm._widgets._plots import MixturePlotWidget

    img, _, _ = datasets.noisy_regions((48, 48), noise=0.33)
    image = viewer.add_image(img, name="img")
    labels, model = ng.segment(img, "auto", max_components=5, return_model=True)
    meta = {
        "model": model.to_dict(),
        "source": "img",
        "output": "labels",
        "params": {
            "n_components": "auto",
            "channel_axis": None,
            "split_axis": None,
            "bins": None,
            "mask": None,
            "rgb": False,
        },
    }
    viewer.add_labels(labels, name="img GMM labels", metadata={"napari_gmm": meta})
    w = MixturePlotWidget(viewer)
    viewer.window.add_dock_widget(w, name="Mixture plot")
    w.model_layer.value = viewer.layers["img GMM labels"]
    w.image_layer.value = image
    w.refresh()
    sel = w.artists["selection"]
    k = np.asarray(model.selection.candidates)
    np.testing.assert_array_equal(sel["line"].get_xdata(), k)
    assert sel["chosen"].get_xdata()[0] == model.n_components
    assert len(w.figure.axes) == 2
    # a fixed-K model: no criterion panel
    labels2, model2 = ng.segment(img, 3, return_model=True)
    meta2 = dict(meta, model=model2.to_dict())
    viewer.layers["img GMM labels"].metadata = {"napari_gmm": meta2}
    w.refresh()
    assert "selection" not in w.artists and len(w.figure.axes) == 1


def test_large_lazy_image_with_smoothing_is_refused(viewer, notes):
    da = pytest.importorskip("dask.array")
    lazy = da.zeros((20_000, 20_000), dtype=np.uint16, chunks=(4096, 4096))  # never computed
    viewer.add_image(lazy, name="big", contrast_limits=(0, 1))
    w = dock(viewer)
    w.smoothing.value = "value"  # explicit: refused (the default falls back to the lazy per-pixel model)
    state = [(id(lyr), lyr.name) for lyr in viewer.layers]
    assert w.run() is None
    assert any("loads 'big' into memory" in m for m in notes["error"]), notes["error"]
    assert [(id(lyr), lyr.name) for lyr in viewer.layers] == state
