"""The segmentation widget's automatic-K controls (issue 12): criterion, clipped pixels (censoring)
and labels (most probable / intensity intervals), remembered, in the layer metadata and the summary."""

from __future__ import annotations

import json

import numpy as np
import pytest

napari = pytest.importorskip("napari")
pytest.importorskip("pytestqt")

import napari_gmm as ng  # noqa: E402
from napari_gmm._widgets._segment import SegmentWidget  # noqa: E402
from tests._widgets._util import dock_segment as dock  # noqa: E402
from tests._widgets._util import run_and_wait


def clipped_three_classes():
    """64 x 64 uint8, classes at 60 / 130 / 225 (sd 18): 5 % of the brightest clipped at 255."""
    rng = np.random.default_rng(3)
    z = rng.choice(3, 64 * 64)
    return np.clip(np.rint(rng.normal(np.array([60, 130, 225])[z], 18)), 0, 255).astype(np.uint8).reshape(64, 64)


def test_auto_k_with_censoring_and_interval_labels(viewer, qtbot, notes):
    img = clipped_three_classes()
    viewer.add_image(img, name="clipped")
    w = dock(viewer)
    assert (w.censoring.value, w.labels.value, w.criterion.value) == ("auto", "map", "bic")
    assert w.criterion.native.isHidden()  # only with 'choose K automatically'
    w.auto_k.value = True
    assert not w.criterion.native.isHidden()
    w.n_components.value = 6
    w.labels.value = "intervals"  # smoothing stays at its default 'auto': per pixel, with a note
    run_and_wait(qtbot, w)
    assert notes["error"] == []
    assert any("intensity-interval" in n for n in notes["info"])
    labels = viewer.layers["clipped GMM labels"]
    expected = ng.segment(img, "auto", max_components=6, labels="intervals", init="auto", random_state=0)
    np.testing.assert_array_equal(labels.data, expected)
    meta = labels.metadata["napari_gmm"]
    json.dumps(meta)
    p = meta["params"]
    assert (p["n_components"], p["criterion"], p["censoring"], p["labels"]) == ("auto", "bic", "auto", "intervals")
    model = ng.MixtureModel.from_dict(meta["model"])
    assert model.n_components == 3 and model.censoring.upper == 254.5
    assert "censored" in w.summary.value and "intensity intervals" in w.summary.value
    # remembered for the next session
    w2 = SegmentWidget(viewer)
    assert (w2.auto_k.value, w2.criterion.value, w2.labels.value) == (True, "bic", "intervals")
    w2.close()

    # censoring off: the pile is a measured level; explicit smoothing with intervals is refused
    w.censoring.value = "off"
    w.labels.value = "map"
    w.smoothing.value = "off"
    run_and_wait(qtbot, w)
    meta = viewer.layers["clipped GMM labels"].metadata["napari_gmm"]
    assert meta["params"]["censoring"] is False and meta["params"]["labels"] == "map"
    assert ng.MixtureModel.from_dict(meta["model"]).censoring is None
    w.labels.value = "intervals"
    w.smoothing.value = "value"
    assert w.run() is None
    assert any("most probable" in e for e in notes["error"])

    # colour: no censoring or intervals to choose
    viewer.add_image(np.zeros((8, 8, 3), np.uint8), name="rgb", rgb=True)
    w.image.value = viewer.layers["rgb"]
    assert not w.censoring.enabled and not w.labels.enabled
