"""The plot dock widgets (Mixture plot, EM evolution, Pixel trace) under a real headless napari viewer.

Run with:  xvfb-run -a -s "-screen 0 1600x1000x24" env QT_QPA_PLATFORM=xcb python -m pytest tests/_widgets
"""

from __future__ import annotations

import numpy as np
import pytest

napari = pytest.importorskip("napari")
pytest.importorskip("pytestqt")
pytest.importorskip("matplotlib")

from matplotlib.colors import to_rgba  # noqa: E402

import napari_gmm as ng  # noqa: E402
from napari_gmm._widgets import _plots  # noqa: E402
from napari_gmm._widgets._plots import EMEvolutionWidget, MixturePlotWidget, PixelTraceWidget  # noqa: E402

WAIT_MS = 20_000


def dock(viewer, cls):
    widget = cls(viewer)
    viewer.window.add_dock_widget(widget, name=cls.__name__)
    return widget


def redrawn(qtbot, widget, before):
    qtbot.waitUntil(lambda: widget.n_draws > before, timeout=WAIT_MS)


def three_class(seed=0, shape=(48, 64), means=(50, 120, 200)):
    rng = np.random.default_rng(seed)
    n = shape[0] * shape[1]
    parts = [rng.normal(m, 8, n // len(means) + 1) for m in means]
    return np.clip(np.concatenate(parts)[:n], 0, 255).astype(np.uint8).reshape(shape)


def add_model(viewer, image_layer, k, *, split_axis=None, channel_axis=None, name=None, **kw):
    """Labels layer with metadata["napari_gmm"] as the segmentation widget writes it."""
    labels, model = ng.segment(
        image_layer.data, k, split_axis=split_axis, channel_axis=channel_axis, return_model=True, **kw
    )
    md = [m.to_dict() for m in model] if isinstance(model, list) else model.to_dict()
    meta = {
        "model": md,
        "source": image_layer.name,
        "output": "labels",
        "params": {
            "n_components": k,
            "channel_axis": channel_axis,
            "split_axis": split_axis,
            "bins": None,
            "mask": None,
            "rgb": bool(image_layer.rgb),
        },
    }
    layer = viewer.add_labels(labels, name=name or image_layer.name + " GMM labels", metadata={"napari_gmm": meta})
    return layer, model


def layer_colors(layer, k):
    return np.asarray(layer.colormap.map(np.arange(1, k + 1)), float)


def assert_grey_curves(artists, model, hist, layer):
    centers, _, _ = hist.density()
    lines = artists["components"]
    assert len(lines) == model.n_components
    pdf = model.pdf(centers)
    cols = layer_colors(layer, model.n_components)
    for k, line in enumerate(lines):
        np.testing.assert_array_equal(line.get_xdata(), centers)
        np.testing.assert_allclose(line.get_ydata(), pdf[:, k], rtol=1e-12)
        np.testing.assert_allclose(to_rgba(line.get_color())[:3], cols[k, :3], atol=1e-6)


# ------------------------------------------------------------------------------------------ mixture
def test_mixture_curves_are_the_pdf_in_the_label_colours(viewer):
    img = viewer.add_image(three_class(), name="img")
    labels, model = add_model(viewer, img, 3)
    w = dock(viewer, MixturePlotWidget)
    assert w.model_layer.value is labels and w.image_layer.value is img
    w.refresh()
    assert_grey_curves(w.artists, model, ng.histogram(img.data), labels)
    th = model.thresholds(img.data.min(), img.data.max())
    np.testing.assert_allclose(w.artists["threshold_values"], th)
    assert len(w.artists["thresholds"]) == 2
    # the docked canvas has a usable size and the theme's (opaque) background
    assert w.canvas.minimumHeight() >= 300
    assert to_rgba(w.figure.get_facecolor())[:3] == pytest.approx(
        to_rgba(napari.utils.theme.get_theme(viewer.theme).background.as_hex())[:3]
    )


def test_mixture_options_log_bins_thresholds(viewer):
    img = viewer.add_image(three_class(1), name="img")
    add_model(viewer, img, 3)
    w = dock(viewer, MixturePlotWidget)
    w.log_y.value = True
    w.bins.value = 16
    w.show_thresholds.value = False
    w.refresh()
    ax = w.figure.axes[0]
    assert ax.get_yscale() == "log"
    assert w.artists["hist"].get_data().values.size <= 16
    assert w.artists["thresholds"] == []


def test_mixture_follows_model_changes_and_colours(viewer, qtbot):
    img = viewer.add_image(three_class(2), name="img")
    labels, _ = add_model(viewer, img, 3)
    w = dock(viewer, MixturePlotWidget)
    w.refresh()
    assert len(w.artists["components"]) == 3
    # a re-run: new metadata first, then the data (as the segmentation widget does)
    new_labels, new_model = ng.segment(img.data, 2, return_model=True)
    n = w.n_draws
    labels.metadata["napari_gmm"] = dict(labels.metadata["napari_gmm"], model=new_model.to_dict())
    labels.data = new_labels
    redrawn(qtbot, w, n)
    assert_grey_curves(w.artists, new_model, ng.histogram(img.data), labels)
    # the user recolours the labels: the curves follow
    n = w.n_draws
    labels.new_colormap()
    redrawn(qtbot, w, n)
    assert_grey_curves(w.artists, new_model, ng.histogram(img.data), labels)


def test_follows_the_segmentation_widget(viewer, qtbot):
    """Docked before any model exists: picks up the widget's labels layer, then its in-place re-runs."""
    from napari_gmm._widgets._segment import SegmentWidget

    img = viewer.add_image(three_class(6), name="img")
    plot = dock(viewer, MixturePlotWidget)
    em = dock(viewer, EMEvolutionWidget)
    seg = dock(viewer, SegmentWidget)
    seg.n_components.value = 3
    n = plot.n_draws
    assert seg.run() is not None
    qtbot.waitUntil(lambda: not seg.is_running, timeout=60_000)
    labels = viewer.layers["img GMM labels"]
    redrawn(qtbot, plot, n)
    assert plot.model_layer.value is labels and em.model_layer.value is labels
    model = ng.MixtureModel.from_dict(labels.metadata["napari_gmm"]["model"])
    qtbot.waitUntil(lambda: len(plot.artists.get("components", [])) == 3, timeout=WAIT_MS)
    assert_grey_curves(plot.artists, model, ng.histogram(img.data), labels)
    seg.n_components.value = 2  # re-run: same layer, new model
    n, n_em = plot.n_draws, em.n_draws
    assert seg.run() is not None
    qtbot.waitUntil(lambda: not seg.is_running, timeout=60_000)
    redrawn(qtbot, plot, n)
    redrawn(qtbot, em, n_em)
    model = ng.MixtureModel.from_dict(labels.metadata["napari_gmm"]["model"])
    assert model.n_components == 2
    assert_grey_curves(plot.artists, model, ng.histogram(img.data), labels)
    assert em.iteration.max == model.n_iter and len(em.artists["mixture"]["components"]) == 2


def test_per_frame_models_follow_the_dims_slider(viewer, qtbot):
    frames = np.stack([three_class(s, means=(40 + 20 * s, 120, 200 - 10 * s)) for s in range(3)])
    img = viewer.add_image(frames, name="stack")
    labels, models = add_model(viewer, img, 3, split_axis=0)
    assert isinstance(models, list) and len(models) == 3
    viewer.dims.set_current_step(0, 0)
    w = dock(viewer, MixturePlotWidget)
    w.refresh()
    assert_grey_curves(w.artists, models[0], ng.histogram(frames[0]), labels)
    for t in (2, 1):
        n = w.n_draws
        viewer.dims.set_current_step(0, t)
        redrawn(qtbot, w, n)
        assert_grey_curves(w.artists, models[t], ng.histogram(frames[t]), labels)
        assert f"index {t} of 3" in w.figure.axes[0].get_title()


def test_single_model_on_a_stack_uses_the_whole_stack(viewer):
    frames = np.stack([three_class(s) for s in range(2)])
    img = viewer.add_image(frames, name="stack")
    labels, model = add_model(viewer, img, 3)
    w = dock(viewer, MixturePlotWidget)
    w.refresh()
    assert_grey_curves(w.artists, model, ng.histogram(frames), labels)


def test_colour_model_views(viewer):
    rng = np.random.default_rng(0)
    centres = np.array([[40, 60, 200], [200, 40, 60], [90, 200, 90]], float)
    rgb = np.clip(centres[rng.integers(0, 3, 3000)] + rng.normal(0, 10, (3000, 3)), 0, 255)
    img = viewer.add_image(rgb.astype(np.uint8).reshape(30, 100, 3), name="rgb", rgb=True)
    assert img.rgb
    labels, model = add_model(viewer, img, 3, channel_axis=-1, init="kmeans++", random_state=0, covariance_type="full")
    w = dock(viewer, MixturePlotWidget)
    assert not w.view.native.isHidden() and w.show_thresholds.native.isHidden()
    w.refresh()
    marg, dens = w.artists["marginals"], w.artists["density"]
    assert len(marg["components"]) == 3 and all(len(c) == 3 for c in marg["components"])
    assert len(dens["ellipses"]) == 3
    cols = layer_colors(labels, 3)
    for k in range(3):
        np.testing.assert_allclose(to_rgba(marg["components"][0][k].get_color())[:3], cols[k, :3], atol=1e-6)
        np.testing.assert_allclose(to_rgba(dens["ellipses"][k][0].get_color())[:3], cols[k, :3], atol=1e-6)
    w.channel_x.value, w.channel_y.value = 2, 0
    w.view.value = "2-channel density"
    w.refresh()
    ax = w.figure.axes[0]
    assert ax.get_xlabel() == "blue" and ax.get_ylabel() == "red"
    w.view.value = "marginals"
    w.refresh()
    assert len(w.figure.axes) == 3


def test_no_model_shows_what_to_do(viewer):
    viewer.add_image(three_class(), name="img")
    w = dock(viewer, MixturePlotWidget)
    w.refresh()
    texts = [t.get_text() for ax in w.figure.axes for t in ax.texts]
    assert any("segmentation" in t for t in texts)


def test_large_images_are_histogrammed_in_a_thread(viewer, qtbot, monkeypatch):
    monkeypatch.setattr(_plots, "THREAD_PIXELS", 0)
    img = viewer.add_image(three_class(5), name="img")
    labels, model = add_model(viewer, img, 3)
    w = dock(viewer, MixturePlotWidget)
    w._hist_cache.clear()
    n = w.n_draws
    w.request_redraw()
    redrawn(qtbot, w, n)
    assert_grey_curves(w.artists, model, ng.histogram(img.data), labels)


def test_theme_and_save(viewer, tmp_path):
    img = viewer.add_image(three_class(), name="img")
    add_model(viewer, img, 2)
    w = dock(viewer, MixturePlotWidget)
    viewer.theme = "light"
    w.refresh()
    light = napari.utils.theme.get_theme("light")
    assert to_rgba(w.figure.get_facecolor())[:3] == pytest.approx(to_rgba(light.background.as_hex())[:3])
    ax = w.figure.axes[0]
    assert to_rgba(ax.xaxis.label.get_color())[:3] == pytest.approx(to_rgba(light.text.as_hex())[:3])
    for ext in ("png", "svg"):
        path = tmp_path / f"plot.{ext}"
        w.save(path)
        assert path.stat().st_size > 1000
    assert (tmp_path / "plot.svg").read_text().lstrip().startswith("<?xml")
    assert any(a.text() == "Save" for a in w.toolbar.actions())  # the toolbar's save button


# ------------------------------------------------------------------------------------------ EM
def test_em_evolution_slider(viewer, qtbot):
    img = viewer.add_image(three_class(3), name="img")
    labels, model = add_model(viewer, img, 3)
    w = dock(viewer, EMEvolutionWidget)
    w.refresh()
    assert w.iteration.max == model.n_iter and w.iteration.value == model.n_iter
    np.testing.assert_array_equal(w.artists["loglik"]["line"].get_ydata(), model.history["log_likelihood"])
    hist = ng.histogram(img.data)
    centers, _, _ = hist.density()
    for it in (0, 1, model.n_iter):
        n = w.n_draws
        w.iteration.value = it
        redrawn(qtbot, w, n)
        lines = w.artists["mixture"]["components"]
        assert len(lines) == 3
        np.testing.assert_allclose(
            np.column_stack([ln.get_ydata() for ln in lines]), model.pdf(centers, iteration=it), rtol=1e-12
        )
        assert w.artists["loglik"]["marker"].get_xdata()[0] == it
    cols = layer_colors(labels, 3)
    for k, ln in enumerate(lines):
        np.testing.assert_allclose(to_rgba(ln.get_color())[:3], cols[k, :3], atol=1e-6)


def test_em_play_steps_through_the_history(viewer, qtbot):
    img = viewer.add_image(three_class(4), name="img")
    _, model = add_model(viewer, img, 3)
    w = dock(viewer, EMEvolutionWidget)
    w._play_timer.setInterval(5)
    w.play.clicked.emit()  # at the end: restarts from 0
    assert w._play_timer.isActive() and w.iteration.value == 0
    qtbot.waitUntil(lambda: not w._play_timer.isActive(), timeout=WAIT_MS)
    assert w.iteration.value == model.n_iter and w.play.text == "Play"


def test_em_colour_model(viewer):
    rng = np.random.default_rng(1)
    centres = np.array([[40, 60, 200], [200, 40, 60]], float)
    rgb = np.clip(centres[rng.integers(0, 2, 2000)] + rng.normal(0, 10, (2000, 3)), 0, 255).astype(np.uint8)
    img = viewer.add_image(rgb.reshape(20, 100, 3), name="rgb", rgb=True)
    _, model = add_model(viewer, img, 2, channel_axis=-1, init="kmeans++", random_state=0)
    w = dock(viewer, EMEvolutionWidget)
    w.iteration.value = 0
    w.refresh()
    ell = w.artists["mixture"]["density"]["ellipses"]
    assert len(ell) == 2
    mu0 = model.history["means"][0]
    centre = np.array([ell[0][0].get_xdata().mean(), ell[0][0].get_ydata().mean()])
    np.testing.assert_allclose(centre, mu0[0, [0, 1]], atol=0.5)


# ------------------------------------------------------------------------------------------ pixel trace
class _MouseEvent:
    def __init__(self, position, type_="mouse_press"):
        self.position = tuple(position)
        self.type = type_
        self.button = 1


def _click(widget, viewer, world):
    """Drive the widget's mouse-drag callback as napari does for a click without drag."""
    event = _MouseEvent(world)
    gen = widget._on_mouse(viewer, event)
    next(gen)
    event.type = "mouse_release"
    with pytest.raises(StopIteration):
        next(gen)


def moving_bar(T=60, size=48):
    """A bright 6 x 4 block sweeping right over noise: each pixel on its path is covered in 4 of 60
    frames (under background_ratio's 10 %, so it stays foreground)."""
    rng = np.random.default_rng(0)
    stack = rng.normal(90, 3, (T, size, size)).clip(0, 255).astype(np.uint8)
    for t in range(T):
        x = t % (size - 4)
        stack[t, 8:14, x : x + 4] = 220
    return stack


def test_pixel_trace_click(viewer):
    stack = moving_bar()
    img = viewer.add_image(stack, name="movie", scale=(1, 2, 2))
    res = ng.subtract_background(stack)
    fg = viewer.add_labels(
        res.foreground,
        name="movie foreground",
        scale=(1, 2, 2),
        metadata={"napari_gmm": {"params": res.params, "output": "foreground", "source": "movie"}},
    )
    w = dock(viewer, PixelTraceWidget)
    assert w.stack_layer.value is img and w.foreground_layer.value is fg
    assert mouse_callback_registered(viewer, w)
    y, x = 10, 12
    viewer.dims.set_current_step(0, 4)
    _click(w, viewer, img.data_to_world((4, y, x)))
    assert w.pixel == (y, x)
    art = w.artists
    np.testing.assert_array_equal(art["traces"][0].get_ydata(), stack[:, y, x])
    shaded = np.zeros(stack.shape[0], bool)
    for a, b in art["foreground_spans"]:
        shaded[a:b] = True
    np.testing.assert_array_equal(shaded, res.foreground[:, y, x] == 1)
    assert shaded.any()
    final = res.model.mixture_at(y, x)
    np.testing.assert_allclose(w._trace["mixture"]["means"], final["means"], rtol=1e-6)
    assert len(art["mixture"]["modes"]) == final["weights"].size
    assert art["current"].get_xdata()[0] == 4
    marker = viewer.layers[_plots.MARKER_NAME]  # the traced pixel is marked, in world coordinates
    np.testing.assert_allclose(marker.data, [[2 * y, 2 * x]])
    assert viewer.layers.selection.active is not marker
    _click(w, viewer, img.data_to_world((4, 3, 5)))
    np.testing.assert_allclose(viewer.layers[_plots.MARKER_NAME].data, [[6, 10]])
    w.mark.value = False
    assert not marker.visible


def test_pixel_trace_time_on_the_last_axis(viewer):
    """As the Background model widget writes it: foreground in the stack's axis order."""
    stack = moving_bar()
    yxt = np.ascontiguousarray(np.moveaxis(stack, 0, -1))
    img = viewer.add_image(yxt, name="yxt")
    res = ng.subtract_background(yxt, time_axis=2)
    fg = np.moveaxis(res.foreground, 0, 2)
    viewer.add_labels(
        fg,
        name="yxt foreground",
        metadata={"napari_gmm": {"params": res.params, "output": "foreground", "source": "yxt"}},
    )
    w = dock(viewer, PixelTraceWidget)
    y, x = 10, 12
    _click(w, viewer, img.data_to_world((y, x, 3)))
    assert w.pixel == (y, x)
    np.testing.assert_array_equal(w.artists["traces"][0].get_ydata(), stack[:, y, x])
    np.testing.assert_array_equal(w._fg_trace, res.foreground[:, y, x])
    assert (w._fg_trace == 1).any()


def test_pixel_trace_drag_does_not_pick(viewer):
    stack = moving_bar()
    img = viewer.add_image(stack, name="movie")
    w = dock(viewer, PixelTraceWidget)
    event = _MouseEvent(img.data_to_world((0, 5, 5)))
    gen = w._on_mouse(viewer, event)
    next(gen)
    event.type = "mouse_move"
    event.position = tuple(img.data_to_world((0, 20, 20)))
    next(gen)
    event.type = "mouse_release"
    with pytest.raises(StopIteration):
        next(gen)
    assert w.pixel is None


def test_pixel_trace_without_result_layer_replays_defaults(viewer):
    stack = moving_bar()
    viewer.add_image(stack, name="movie")
    w = dock(viewer, PixelTraceWidget)
    w.show_pixel(10, 12)
    res = ng.subtract_background(stack, median_size=0)
    tr = w._trace
    np.testing.assert_array_equal(tr["foreground"], res.foreground[:, 10, 12])
    np.testing.assert_array_equal(w.artists["traces"][0].get_ydata(), stack[:, 10, 12])


def mouse_callback_registered(viewer, widget):
    return any(getattr(cb, "__func__", None) is PixelTraceWidget._on_mouse for cb in viewer.mouse_drag_callbacks)


# ------------------------------------------------------------------------------------------ manifest
def test_contributions_are_the_widget_classes():
    import inspect

    for cls in (MixturePlotWidget, EMEvolutionWidget, PixelTraceWidget):
        params = list(inspect.signature(cls).parameters)
        assert params == ["viewer"]


def test_pixel_trace_with_the_background_widget(viewer, qtbot):
    """The Background model widget's foreground layer and parameters drive the trace."""
    bgw = pytest.importorskip("napari_gmm._widgets._background")
    stack = moving_bar()
    img = viewer.add_image(stack, name="movie")
    w = dock(viewer, PixelTraceWidget)
    seg = dock(viewer, bgw.BackgroundWidget)
    seg.var_threshold.value = 25.0
    assert seg.run() is not None
    qtbot.waitUntil(lambda: not seg.is_running, timeout=60_000)
    fg = next(lyr for lyr in viewer.layers if (lyr.metadata.get("napari_gmm") or {}).get("output") == "foreground")
    assert w.foreground_layer.value is fg
    y, x = 10, 12
    _click(w, viewer, img.data_to_world((0, y, x)))
    params = fg.metadata["napari_gmm"]["params"]
    assert w._trace["var_threshold"] == params["var_threshold"] == 25.0
    np.testing.assert_array_equal(w._fg_trace, np.asarray(fg.data)[:, y, x])
    res = ng.subtract_background(
        stack, **{k: params[k] for k in _plots._BG_KEYS if k in params and k != "frame_factors"}
    )
    for key in ("weights", "means", "variances"):
        np.testing.assert_allclose(w._trace["mixture"][key], res.model.mixture_at(y, x)[key], rtol=1e-6)


def test_multichannel_channel_axis_0_and_float(viewer):
    rng = np.random.default_rng(3)
    lab = rng.integers(0, 2, (40, 50))
    cyx = np.stack([np.where(lab, 0.8, 0.2), np.where(lab, 0.3, 0.6)]) + rng.normal(0, 0.05, (2, 40, 50))
    img = viewer.add_image(cyx.astype(np.float32), name="cyx")
    labels, model = add_model(viewer, img, 2, channel_axis=0, init="kmeans++", random_state=0)
    w = dock(viewer, MixturePlotWidget)
    w.refresh()
    assert len(w.artists["marginals"]["components"]) == 2
    assert len(w.artists["density"]["ellipses"]) == 2
    assert w.figure.axes[-1].get_xlabel() == "channel 0"

    grey = viewer.add_image(cyx[0].astype(np.float32), name="grey float")
    glabels, gmodel = add_model(viewer, grey, 2)
    w.model_layer.value = glabels
    w.refresh()
    hist = ng.histogram(grey.data)
    assert_grey_curves(w.artists, gmodel, hist, glabels)


def test_direct_label_colours(viewer):
    from napari.utils.colormaps import DirectLabelColormap

    img = viewer.add_image(three_class(7), name="img")
    labels, model = add_model(viewer, img, 3)
    labels.colormap = DirectLabelColormap(color_dict={None: "black", 1: "red", 2: "lime", 3: "blue"})
    w = dock(viewer, MixturePlotWidget)
    w.refresh()
    got = [to_rgba(ln.get_color())[:3] for ln in w.artists["components"]]
    assert got == [(1, 0, 0), (0, 1, 0), (0, 0, 1)]


def test_pixel_trace_rgb_stack(viewer):
    from napari_gmm.datasets import moving_objects

    stack, _ = moving_objects((24, 32, 40), n_objects=2, rgb=True, seed=1)
    img = viewer.add_image(stack, name="rgb movie", rgb=True)
    res = ng.subtract_background(stack)
    viewer.add_labels(
        res.foreground,
        name="rgb movie foreground",
        metadata={"napari_gmm": {"params": res.params, "output": "foreground", "source": img.name}},
    )
    w = dock(viewer, PixelTraceWidget)
    _click(w, viewer, img.data_to_world((0, 20, 25)))
    traces = w.artists["traces"]
    assert len(traces) == 3
    for c in range(3):
        np.testing.assert_array_equal(traces[c].get_ydata(), stack[:, 20, 25, c])
    np.testing.assert_allclose(w._trace["mixture"]["means"], res.model.mixture_at(20, 25)["means"], rtol=1e-6)


@pytest.mark.parametrize(
    "name, cls",
    [("Mixture plot", MixturePlotWidget), ("EM evolution", EMEvolutionWidget), ("Pixel trace", PixelTraceWidget)],
)
def test_opened_from_the_plugin_menu(viewer, name, cls):
    """napari builds the widget from napari.yaml, handing in the viewer (as a PublicOnlyProxy)."""
    img = viewer.add_image(three_class(), name="img")
    labels, _ = add_model(viewer, img, 2)
    try:
        _, w = viewer.window.add_plugin_dock_widget("napari-gmm", name)
    except KeyError:
        pytest.skip("napari-gmm is not installed (pip install -e .), so napari cannot discover it")
    assert isinstance(w, cls)
    w.refresh()
    if cls is PixelTraceWidget:
        assert mouse_callback_registered(viewer, w)
        stack = viewer.add_image(moving_bar(T=12), name="movie")
        w.stack_layer.value = stack
        _click(w, viewer, stack.data_to_world((0, 10, 12)))
        assert w.pixel == (10, 12) and len(w.artists["traces"]) == 1
    else:
        assert w.model_layer.value is labels or w.model_layer.value.name == labels.name
        arts = w.artists if cls is MixturePlotWidget else w.artists["mixture"]
        assert len(arts["components"]) == 2


def test_dask_image_is_histogrammed_in_a_thread(viewer, qtbot):
    da = pytest.importorskip("dask.array")
    data = three_class(8)
    viewer.add_image(da.from_array(data, chunks=(16, 32)), name="lazy")
    labels, model = ng.segment(data, 3, return_model=True)
    meta = {"model": model.to_dict(), "source": "lazy", "output": "labels", "params": {"n_components": 3}}
    labels_layer = viewer.add_labels(labels, name="lazy GMM labels", metadata={"napari_gmm": meta})
    w = dock(viewer, MixturePlotWidget)
    qtbot.waitUntil(
        lambda: len(w.artists.get("components", [])) == 3 and w.artists.get("hist") is not None, timeout=WAIT_MS
    )
    assert_grey_curves(w.artists, model, ng.histogram(data), labels_layer)


def test_plots_opened_together_share_one_tabbed_dock(make_napari_viewer, qtbot):
    """Opened from the Plugins menu one after another, the plots become tabs of the first plot's
    dock (stacked, each would show its toolbar only); the segmentation widget keeps its own dock."""
    viewer = make_napari_viewer(show=True)
    win = viewer.window._qt_window
    seg_dock, _ = viewer.window.add_plugin_dock_widget("napari-gmm", "Gaussian mixture segmentation")
    docks = [
        viewer.window.add_plugin_dock_widget("napari-gmm", n)[0]
        for n in ("Mixture plot", "EM evolution", "Pixel trace")
    ]
    qtbot.waitUntil(lambda: set(win.tabifiedDockWidgets(docks[0])) == set(docks[1:]), timeout=WAIT_MS)
    assert seg_dock not in win.tabifiedDockWidgets(docks[0])
    assert not win.tabifiedDockWidgets(seg_dock)
