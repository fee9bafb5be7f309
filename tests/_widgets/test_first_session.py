"""Issue 14's first-session problems, each checked the way a user met it (headless napari, Xvfb).

1 an error must not squeeze the canvas; 2 five docked widgets fit a 1080 px screen; 3 the quantised
image's memory is bounded and cancel stops it; 4 manual label edits survive a re-run; 5 outputs do not
hide the labels; 6 progress in every phase; 7 the mixture plot picks the newest model; 8 tooltips, no
bool images in the picker, the picker follows the selection, kernels warmed up before the first run.
"""

from __future__ import annotations

import threading
import tracemalloc

import numpy as np
import pytest

napari = pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_gmm._widgets import _common, _segment  # noqa: E402
from napari_gmm._widgets._segment import SegmentWidget  # noqa: E402
from tests._widgets._util import WAIT_MS, run_and_wait  # noqa: E402


def bands(shape=(48, 64), dtype=np.uint16, seed=0):
    """Three bands (classes 1..3 by mean) with noise."""
    rng = np.random.default_rng(seed)
    truth = np.ones(shape, np.uint8)
    truth[..., shape[-2] // 3 :, :] = 2
    truth[..., 2 * shape[-2] // 3 :, :] = 3
    img = np.array([400.0, 1200.0, 2500.0])[truth - 1] + rng.normal(0, 60, shape)
    return img.astype(dtype), truth


def shown(viewer, qtbot):
    win = viewer.window._qt_window
    win.resize(1600, 1000)
    win.show()
    qtbot.waitExposed(win)
    return win


def settle(qtbot):
    qtbot.wait(30)


# ------------------------------------------------------------------------------------------ 1 and 2
def test_errors_and_long_names_leave_the_canvas_its_width(viewer, qtbot, notes):
    """A constant uint16 image once made the dock 1,333 px wide and the canvas 0 px, for good."""
    win = shown(viewer, qtbot)
    flat = viewer.add_image(np.full((32, 32), 7, np.uint16), name="flat")
    w = SegmentWidget(viewer)
    viewer.window.add_dock_widget(w, name="Gaussian mixture segmentation")
    canvas = viewer.window._qt_viewer.canvas.native
    settle(qtbot)
    assert canvas.width() >= 800, canvas.width()

    run_and_wait(qtbot, w, image=flat)  # constant image: refused by the core, message in the summary
    assert notes["error"] and "constant" in notes["error"][-1]
    assert len(w.summary.value) > 150  # the long message is shown...
    settle(qtbot)
    assert canvas.width() >= 800, f"canvas squeezed to {canvas.width()} px by the error message"
    assert w.native.minimumSizeHint().width() <= 450

    few = viewer.add_image(np.repeat(np.array([1, 5, 9], np.uint8), 30).reshape(9, 10), name="few")
    w.n_components.value = 7  # K above the number of distinct values
    run_and_wait(qtbot, w, image=few)
    settle(qtbot)
    assert canvas.width() >= 800

    # a layer with a very long name must not widen the pickers either
    viewer.add_image(np.zeros((8, 8), np.uint8) + np.arange(8, dtype=np.uint8), name="x" * 300)
    settle(qtbot)
    assert canvas.width() >= 800
    assert win.width() <= 1600


def test_five_docked_widgets_fit_a_1080_px_screen(viewer, qtbot):
    """Segmentation + Mixture plot + EM evolution once needed 1,642 px; all five 2,723 px."""
    from napari_gmm._widgets._background import BackgroundWidget
    from napari_gmm._widgets._plots import EMEvolutionWidget, MixturePlotWidget, PixelTraceWidget

    win = shown(viewer, qtbot)
    img, _ = bands()
    viewer.add_image(img, name="bands")
    for cls, name in [
        (SegmentWidget, "seg"),
        (MixturePlotWidget, "mix"),
        (EMEvolutionWidget, "em"),
        (PixelTraceWidget, "trace"),
        (BackgroundWidget, "background"),
    ]:
        viewer.window.add_dock_widget(cls(viewer), name=name)
    settle(qtbot)
    min_h = win.minimumSizeHint().height()
    assert min_h < 1080, f"window minimum height {min_h} px"
    assert win.height() <= 1080


# ------------------------------------------------------------------------------------------ 3
def _job(data, model, labels, split_axis=None):
    return _segment._Job(
        layer=None,
        data=data,
        colour=False,
        channel_axis=None,
        split_axis=split_axis,
        mask=None,
        kwargs={},
        params={},
        want_quantised=True,
        want_posteriors=False,
    )


def test_quantised_image_memory_is_the_output():
    """The widget's quantised output (the core's model.quantize) once peaked at 15x the input."""
    import napari_gmm as ng

    img = (np.arange(16 * 256 * 256, dtype=np.uint32) % 4000).astype(np.uint16).reshape(16, 256, 256)
    labels, model = ng.segment(img, 3, return_model=True)
    job = _job(img, model, labels)
    # kernels compiled or loaded first, at the measured size (parallel and serial twins differ):
    # with a cold Numba cache, compiling inside the measurement counted the compiler's memory
    _segment._quantise(job, labels, model)
    for thread in threading.enumerate():  # tracemalloc counts every thread: no warm-up running
        if thread.name.startswith("napari-gmm warm-up"):
            thread.join()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        out = _segment._quantise(job, labels, model)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert out.shape == img.shape and out.dtype == img.dtype
    # whole-image temporaries (intp indices, boolean masks, gathered means) cost 7x the output
    assert peak < 1.25 * out.nbytes, (peak, out.nbytes)
    table = np.clip(np.rint(np.asarray(model.means, float).ravel()), 0, 65535).astype(np.uint16)
    np.testing.assert_array_equal(out, table[labels.astype(np.intp) - 1])


def test_cancel_stops_every_phase_at_its_next_report(viewer, qtbot, notes, monkeypatch):
    """Cancel acts through the phase's progress callback (raising napari_gmm.Cancelled): the job
    stops at the first report after the click, in whichever phase it is."""
    import time

    img, _ = bands()
    viewer.add_image(img, name="bands")
    w = SegmentWidget(viewer)
    w.smoothing.value = "off"  # the per-pixel model's phases (the spatial ones: test_spatial_controls)
    w.out_quantised.value = w.out_posteriors.value = True
    phases = []
    w._relay.phase.connect(phases.append)
    state = [(id(lyr), lyr.name) for lyr in viewer.layers]
    for phase, owner, target in [
        ("fitting", _segment.ng, "segment"),
        ("posterior maps", _segment, "_posteriors"),
        ("quantised image", _segment, "_quantise"),
    ]:
        after_cancel = []
        real = getattr(owner, target)

        def slow(*args, progress=None, real=real, after_cancel=after_cancel, **kwargs):
            if progress is None:  # the widget's helpers take (job, model, progress)
                *args, progress = args
            for i in range(2000):
                if w._job is not None and w._job.cancel.is_set():
                    after_cancel.append(i)
                progress(i, 2000)  # raises Cancelled once Cancel was pressed
                time.sleep(0.005)
            return real(*args, progress=progress, **kwargs)

        monkeypatch.setattr(owner, target, slow)
        phases.clear()
        n_info = len(notes["info"])
        w.run()
        qtbot.waitUntil(
            lambda phase=phase: bool(phases) and phases[-1] == phase and w.progress.native.value() > 0, timeout=WAIT_MS
        )
        w.run_button.native.click()  # Cancel
        qtbot.waitUntil(lambda: not w.is_running, timeout=WAIT_MS)
        assert len(after_cancel) <= 1, (phase, after_cancel)  # stopped at its first report after the click
        assert [(id(lyr), lyr.name) for lyr in viewer.layers] == state, phase
        assert notes["error"] == [] and any("cancelled" in m for m in notes["info"][n_info:]), phase
        monkeypatch.setattr(owner, target, real)


# ------------------------------------------------------------------------------------------ 4, 5, 6
def test_outputs_order_progress_phases_and_kept_edits(viewer, qtbot, notes):
    img, truth = bands()
    src = viewer.add_image(img, name="bands")
    w = SegmentWidget(viewer)
    w.smoothing.value = "off"  # the per-pixel model's phases (the spatial ones: test_spatial_controls)
    viewer.window.add_dock_widget(w, name="seg")
    w.out_quantised.value = True
    w.out_posteriors.value = True
    phases, reports = [], []
    w._relay.phase.connect(phases.append)
    w._relay.progressed.connect(lambda d, t: reports.append((phases[-1] if phases else None, d, t)))
    run_and_wait(qtbot, w)
    assert notes["error"] == []
    # 6: every phase named on the bar, and the outputs' phases report progress too
    assert phases == ["fitting", "posterior maps", "quantised image", "adding layers"], phases
    assert any(p == "quantised image" for p, _, _ in reports)
    # 5: labels on top, the opaque outputs below them, the source at the bottom
    names = [lyr.name for lyr in viewer.layers]
    assert names == ["bands", "bands GMM posteriors", "bands GMM quantised", "bands GMM labels"], names
    labels = viewer.layers["bands GMM labels"]
    np.testing.assert_array_equal(labels.data, truth)

    # 4: the user paints corrections, then runs again with another K: the edits are kept
    labels.selected_label = 3
    labels.paint((5, 5), 3)  # a brush stroke through napari's painting API (undoable)
    painted = labels.data.copy()
    assert (painted != truth).any()
    w.n_components.value = 2
    run_and_wait(qtbot, w, image=src)
    assert notes["warning"] and "manual edits" in notes["warning"][-1]
    np.testing.assert_array_equal(viewer.layers["bands GMM labels"].data, painted)  # untouched
    new = viewer.layers["bands GMM labels [1]"]
    assert new.data.max() == 2
    # the new result is still on top; a further run replaces the new (unedited) layer in place
    assert viewer.layers[-1] is new
    n_layers = len(viewer.layers)
    w.n_components.value = 3
    run_and_wait(qtbot, w, image=src)
    assert len(viewer.layers) == n_layers and viewer.layers["bands GMM labels [1]"] is new
    assert new.data.max() == 3


# ------------------------------------------------------------------------------------------ 8
def controls(container):
    """Every magicgui control in a container, nested containers walked."""
    from magicgui.widgets import Container

    for x in container:
        if isinstance(x, Container):
            yield from controls(x)
        else:
            yield x


def test_tooltips_pickers_and_selection(viewer, qtbot):
    img, _ = bands()
    a = viewer.add_image(img, name="a")
    viewer.add_image(img > 1000, name="binary")
    b = viewer.add_image(img[::-1].copy(), name="b")
    w = SegmentWidget(viewer)
    viewer.window.add_dock_widget(w, name="seg")
    missing = [
        getattr(x, "label", None) or getattr(x, "text", None) or type(x).__name__
        for x in controls(w.body)
        if not x.tooltip
    ]
    assert missing == [], f"controls without a tooltip: {missing}"
    # bool layers are masks, not images to segment
    assert [c.name for c in w.image.choices] == ["a", "b"]
    assert "binary" in [c.name for c in w.mask.choices if c is not None]
    # the picker follows the layer selected in the layer list
    assert w.image.value is b
    viewer.layers.selection.active = a
    assert w.image.value is a
    viewer.layers.selection.active = viewer.layers["binary"]  # not an image to segment: no change
    assert w.image.value is a


def test_channels_from_separate_layers(viewer, qtbot, notes):
    """napari opens a multichannel file as one layer per channel: pick them together."""
    rng = np.random.default_rng(3)
    truth = np.ones((45, 60), np.uint8)
    truth[15:] = 2
    truth[30:] = 3
    means = np.array([[50.0, 50.0], [150.0, 50.0], [150.0, 150.0]])  # 3 classes need both channels
    ch = means[truth - 1] + rng.normal(0, 8, (*truth.shape, 2))
    a = viewer.add_image(ch[..., 0].astype(np.float32), name="ch0")
    b = viewer.add_image(ch[..., 1].astype(np.float32), name="ch1")
    viewer.add_image(np.zeros((10, 10), np.float32), name="other shape")
    w = SegmentWidget(viewer)
    viewer.window.add_dock_widget(w, name="seg")
    w.image.value = a
    assert list(w.more_channels.choices) == [b]  # same shape only
    w.more_channels.value = [b]
    assert w.mode.value == "colour (2 layers as channels)" and not w.channel_axis.enabled
    run_and_wait(qtbot, w)
    assert notes["error"] == []
    out = viewer.layers["ch0 GMM labels"]
    np.testing.assert_array_equal(out.data, truth)
    assert out.metadata["napari_gmm"]["params"]["channels_from_layers"] == ["ch0", "ch1"]
    w.out_quantised.value = True  # one multichannel array would not fit either layer: refused
    assert w.run() is None and "separate layers" in notes["error"][-1]


def test_kernels_are_loaded_before_the_first_run(monkeypatch):
    monkeypatch.setattr(_common, "_WARM", set())
    monkeypatch.setattr(_common, "_WARMING", set())
    thread = _common.start_warm_up("segment")
    assert thread is not None
    thread.join(timeout=WAIT_MS / 1000)
    assert "segment" in _common._WARM
    assert _common.start_warm_up("segment") is None  # once per session
    assert "first run" not in _common.running_message("segment", "img")


# ------------------------------------------------------------------------------------------ settings
def test_settings_are_remembered_and_reset(viewer, qtbot, notes):
    img, _ = bands()
    viewer.add_image(img, name="bands")
    w = SegmentWidget(viewer)
    w.n_components.value = 2
    w.out_quantised.value = True
    w.tol.value = "1e-4"
    run_and_wait(qtbot, w)
    w.native.close()
    again = SegmentWidget(viewer)  # a later session: the options of the last run
    assert (again.n_components.value, again.out_quantised.value, again.tol.value) == (2, True, "1e-4")
    again.reset_to_defaults()
    assert (again.n_components.value, again.out_quantised.value, again.tol.value) == (3, False, "1e-6")
    assert SegmentWidget(viewer).n_components.value == 3  # forgotten, not only reset on screen


# ------------------------------------------------------------------------------------------ model files
def test_save_a_model_and_apply_it_to_another_layer_and_every_time_point(viewer, qtbot, notes, tmp_path):
    import json

    import napari_gmm as ng

    img, truth = bands()
    viewer.add_image(img, name="day 1")
    w = SegmentWidget(viewer)
    run_and_wait(qtbot, w)
    path = w.save_model(tmp_path / "bands.gmm.json")
    saved = json.loads(path.read_text())
    assert saved["format"] == "napari-gmm model" and saved["params"]["n_components"] == 3
    model = ng.MixtureModel.from_dict(saved["model"])

    later, _ = bands((4, 48, 64), seed=1)  # new data: a time series of the same kind
    stack = viewer.add_image(later, name="day 2")
    assert w.load_model(path) is not None and w.apply_model_button.enabled
    n_before = len(viewer.layers)
    worker = w.apply_model(image=stack)
    assert worker is not None
    qtbot.waitUntil(lambda: not w.is_running, timeout=WAIT_MS)
    assert notes["error"] == []
    out = viewer.layers["day 2 GMM labels"]
    assert len(viewer.layers) == n_before + 1 and out.data.shape == later.shape
    np.testing.assert_array_equal(out.data, model.predict(later))  # every time point, no refit
    assert out.metadata["napari_gmm"]["model"] == saved["model"]
    assert "applied from bands.gmm.json" in w.summary.value

    # a folder of image files, as `napari-gmm apply` (OME-Zarr labels with the model beside)
    pytest.importorskip("zarr")
    from napari_gmm import io

    (tmp_path / "in").mkdir()
    for seed in (2, 3):
        np.save(tmp_path / "in" / f"day{seed}.npy", bands(seed=seed)[0])
    assert w.apply_files_button.enabled
    assert w.apply_model_to_files([tmp_path / "in"], tmp_path / "out") is not None
    qtbot.waitUntil(lambda: w._files_worker is None, timeout=WAIT_MS)
    assert any("2 of 2 files labelled" in m for m in notes["info"]), notes
    for seed in (2, 3):
        data, attrs = io.read_result(tmp_path / "out" / f"day{seed}_labels.zarr")
        np.testing.assert_array_equal(np.asarray(data), model.predict(bands(seed=seed)[0]))

    # a model for colour images does not apply to a grey one; a broken file is refused
    (tmp_path / "bad.json").write_text("{not json")
    assert w.load_model(tmp_path / "bad.json") is None and "cannot read" in notes["error"][-1]


# ------------------------------------------------------------------------------------------ channels
# ------------------------------------------------------------------------------------------ 7
def test_plots_pick_the_newest_model_and_stay_readable_docked(viewer, qtbot, notes):
    from napari_gmm._widgets._plots import EMEvolutionWidget, MixturePlotWidget

    shown(viewer, qtbot)
    img, _ = bands()
    first = viewer.add_image(img, name="first")
    second = viewer.add_image((img // 2 + 100).astype(np.uint16), name="second with a long name" * 3)
    w = SegmentWidget(viewer)
    viewer.window.add_dock_widget(w, name="seg")
    run_and_wait(qtbot, w, image=first)
    run_and_wait(qtbot, w, image=second)
    newest = viewer.layers[second.name + " GMM labels"]
    viewer.layers.selection.active = second
    mix = MixturePlotWidget(viewer)
    em = EMEvolutionWidget(viewer)
    viewer.window.add_dock_widget(mix, name="Mixture plot")
    viewer.window.add_dock_widget(em, name="EM evolution")
    assert mix.model_layer.value is newest and em.model_layer.value is newest
    from napari_gmm._widgets._plots import PixelTraceWidget

    trace = PixelTraceWidget(viewer)
    missing = [
        (type(p).__name__, getattr(x, "label", None) or getattr(x, "text", None))
        for p in (mix, em, trace)
        for x in controls(p.form)
        if not x.tooltip
    ]
    assert missing == [], f"plot controls without a tooltip: {missing}"
    trace.close()
    trace.deleteLater()
    em.iteration.value = 0
    settle(qtbot)
    for plot in (mix, em):
        plot.refresh()
        plot.canvas.draw()
        renderer = plot.canvas.get_renderer()
        fig_box = plot.figure.bbox
        for ax in plot.figure.axes:  # titles inside the figure (one was cut off)
            box = ax.title.get_window_extent(renderer)
            assert box.x0 >= fig_box.x0 - 1 and box.x1 <= fig_box.x1 + 1, (ax.get_title(), box, fig_box)
    ax = mix.figure.axes[0]
    leg = mix.artists["legend"]  # below the axes, not over the histogram's peaks
    assert leg.get_window_extent(renderer).y1 <= ax.get_window_extent(renderer).y0 + 1
    ll_ax = em.figure.axes[0]
    marker_y = em.artists["loglik"]["marker"].get_ydata()[0]
    assert ll_ax.get_ylim()[0] <= marker_y <= ll_ax.get_ylim()[1]  # iteration 0 in view
    viewer.layers.selection.active = viewer.layers["first GMM labels"]  # the plots follow
    assert mix.model_layer.value is viewer.layers["first GMM labels"]
