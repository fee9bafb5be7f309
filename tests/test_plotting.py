"""napari_gmm.plotting: what is drawn equals the model (matplotlib Agg, no Qt, no napari)."""

from __future__ import annotations

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402

import napari_gmm as ng  # noqa: E402
from napari_gmm import plotting  # noqa: E402


@pytest.fixture
def ax():
    fig, ax = plt.subplots()
    yield ax
    plt.close(fig)


def three_class(seed=0, shape=(60, 80)):
    rng = np.random.default_rng(seed)
    n = shape[0] * shape[1]
    v = np.concatenate([rng.normal(50, 6, n // 3), rng.normal(120, 10, n // 3), rng.normal(200, 8, n - 2 * (n // 3))])
    return np.clip(v, 0, 255).astype(np.uint8).reshape(shape)


def test_grey_curves_are_the_model_pdf_on_the_histogram_grid(ax):
    img = three_class()
    model = ng.fit_mixture(img, 3)
    hist = ng.histogram(img)
    colors = np.array([[1, 0, 0, 1], [0, 1, 0, 1], [0, 0, 1, 1]], float)
    art = plotting.plot_mixture(ax, model, hist, colors)
    centers, _, _ = hist.density()
    assert len(art["components"]) == 3
    pdf = model.pdf(centers)
    for k, line in enumerate(art["components"]):
        np.testing.assert_array_equal(line.get_xdata(), centers)
        np.testing.assert_allclose(line.get_ydata(), pdf[:, k], rtol=1e-12)
        assert to_rgba(line.get_color()) == tuple(colors[k])
    np.testing.assert_allclose(art["sum"].get_ydata(), pdf.sum(axis=1), rtol=1e-12)
    # thresholds: those of the model over the data range, one vertical line each
    th = model.thresholds(hist.low[0], hist.high[0])
    np.testing.assert_allclose(art["threshold_values"], th)
    assert len(art["thresholds"]) == th.size == 2
    assert [ln.get_xdata()[0] for ln in art["thresholds"]] == pytest.approx(list(th))
    # the bars are the histogram as a density: area 1
    heights = art["hist"].get_data().values
    edges = art["hist"].get_data().edges
    assert np.sum(heights * np.diff(edges)) == pytest.approx(1.0)


@pytest.mark.parametrize("bins", [0, 7, 32, None])
def test_grey_density_rebinning_keeps_the_mass(bins):
    img = three_class(1)
    hist = ng.histogram(img)
    edges, dens, (centers, native, width) = plotting.grey_density(hist, bins)
    assert np.sum(dens * np.diff(edges)) == pytest.approx(1.0)
    assert edges[0] == pytest.approx(centers[0] - width / 2)
    assert edges[-1] == pytest.approx(centers[-1] + width / 2)
    if bins:
        assert dens.size <= bins


def test_float_image_and_log_axis(ax):
    rng = np.random.default_rng(2)
    img = np.concatenate([rng.normal(0.2, 0.03, 3000), rng.normal(0.7, 0.05, 3000)]).reshape(60, 100)
    model = ng.fit_mixture(img, 2)
    hist = ng.histogram(img)
    art = plotting.plot_mixture(ax, model, hist, log=True)
    assert ax.get_yscale() == "log"
    lo, hi = ax.get_xlim()
    assert lo >= img.min() - 0.01 and hi <= img.max() + 0.01  # no integer half-step padding on floats
    x = art["x"]
    np.testing.assert_allclose(art["components"][1].get_ydata(), model.pdf(x)[:, 1])


def test_iteration_draws_the_history_entry(ax):
    img = three_class(3)
    model = ng.fit_mixture(img, 3)
    assert model.n_iter >= 2
    art = plotting.plot_mixture(ax, model, ng.histogram(img), iteration=1)
    x = art["x"]
    np.testing.assert_allclose(np.column_stack([ln.get_ydata() for ln in art["components"]]), model.pdf(x, iteration=1))
    m1 = plotting.model_at(model, 1)
    np.testing.assert_allclose(m1.means, model.history["means"][1])
    np.testing.assert_allclose(m1.pdf(x), model.pdf(x, iteration=1))
    with pytest.raises(IndexError):
        plotting.model_at(model, model.n_iter + 5)


def test_log_likelihood_line(ax):
    img = three_class(4)
    model = ng.fit_mixture(img, 3)
    art = plotting.plot_log_likelihood(ax, model, iteration=2)
    np.testing.assert_array_equal(art["line"].get_ydata(), model.history["log_likelihood"])
    assert art["marker"].get_xdata()[0] == 2


def test_log_likelihood_that_changed_by_rounding_only_is_drawn_flat(ax):
    """The cameraman's K=3 demo plot: EM from a converged start, log-likelihood values 1e-10
    apart drew a steep falling curve under matplotlib's offset notation."""
    from types import SimpleNamespace

    ll = -5.154750304 - np.array([0.0, 1e-10, 1.7e-10])
    art = plotting.plot_log_likelihood(ax, SimpleNamespace(history={"log_likelihood": ll}))
    np.testing.assert_array_equal(art["line"].get_ydata(), ll)  # the values, not adjusted
    lo, hi = ax.get_ylim()
    assert lo < ll.min() and ll.max() < hi and hi - lo > 1e-3  # flat within the axis
    ax.figure.canvas.draw()
    assert ax.yaxis.get_major_formatter().get_offset() == ""  # no "1e-11 - 5.15475" offset
    assert any("rounding" in t.get_text() for t in ax.texts)
    # a real climb is not flattened
    ax.clear()
    plotting.plot_log_likelihood(ax, SimpleNamespace(history={"log_likelihood": np.array([-6.0, -5.5, -5.2, -5.15])}))
    assert not ax.texts and ax.get_ylim()[1] - ax.get_ylim()[0] < 1.0


def colour_image(seed=0):
    rng = np.random.default_rng(seed)
    centres = np.array([[40, 60, 200], [200, 40, 60], [90, 200, 90]], float)
    lab = rng.integers(0, 3, 4000)
    return np.clip(centres[lab] + rng.normal(0, 12, (4000, 3)), 0, 255).astype(np.uint8).reshape(40, 100, 3)


@pytest.mark.parametrize("cov", ["spherical", "diag", "full"])
def test_colour_marginals_and_ellipses(cov):
    img = colour_image()
    model = ng.fit_mixture(img, 3, channel_axis=-1, covariance_type=cov, init="kmeans++", random_state=0)
    hist = ng.histogram(img, channel_axis=-1)
    fig, axes = plt.subplots(1, 4)
    try:
        art = plotting.plot_marginals(list(axes[:3]), model, hist)
        assert len(art["components"]) == 3 and all(len(c) == 3 for c in art["components"])
        var = model.variances
        for d in range(3):
            x = art["x"][d]
            for k in range(3):
                want = (
                    model.weights[k]
                    * np.exp(-0.5 * (x - model.means[k, d]) ** 2 / var[k, d])
                    / np.sqrt(2 * np.pi * var[k, d])
                )
                np.testing.assert_allclose(art["components"][d][k].get_ydata(), want, rtol=1e-10)
        # marginal histogram bars: a density of area 1
        st = art["hists"][0].get_data()
        assert np.sum(st.values * np.diff(st.edges)) == pytest.approx(1.0)

        dens = plotting.plot_density_2d(axes[3], model, hist, channels=(0, 2))
        assert len(dens["ellipses"]) == 3 and dens["image"] is not None
        for k in range(3):
            c2 = plotting.covariance_2d(model, k, (0, 2))
            mu = model.means[k, [0, 2]]
            one_sd = dens["ellipses"][k][0]
            pts = np.column_stack([one_sd.get_xdata(), one_sd.get_ydata()]) - mu
            maha = np.einsum("ni,ij,nj->n", pts, np.linalg.inv(c2), pts)
            np.testing.assert_allclose(maha, 1.0, rtol=1e-6)
    finally:
        plt.close(fig)


def stack_with_objects(T=40, size=48, seed=0):
    """Noisy background with a bright bar sweeping right (each pixel of its rows covered 3 frames)."""
    rng = np.random.default_rng(seed)
    stack = rng.normal(90, 3, (T, size, size)).clip(0, 255).astype(np.uint8)
    for t in range(T):
        stack[t, 8:14, t : t + 3] = 220
    return stack


@pytest.mark.parametrize("burn_in", ["all", 10, None, "default"])
def test_pixel_history_replays_the_stack_model(burn_in):
    stack = stack_with_objects()
    y, x = 10, 20
    kw = {} if burn_in == "default" else {"burn_in": burn_in}
    res = ng.subtract_background(stack, median_size=0, background="all", **kw)
    h = plotting.pixel_history(stack[:, y, x], data_range=res.params["data_range"], **kw)
    np.testing.assert_array_equal(h["foreground"], res.foreground[:, y, x])
    np.testing.assert_allclose(h["values"], stack[:, y, x])
    # the stack's background (uint8, rounded) is the mean of the pixel's most probable mode
    np.testing.assert_allclose(h["bg_mean"], res.background[:, y, x], atol=0.5 + 1e-4)
    final = res.model.mixture_at(y, x)
    for key in ("weights", "means", "variances"):
        np.testing.assert_allclose(h["mixture"][key], final[key], rtol=1e-6)
    assert h["var_threshold"] == 16.0
    assert np.all(h["bg_sigma"] > 0)


def test_pixel_trace_plot(ax):
    stack = stack_with_objects()
    h = plotting.pixel_history(stack[:, 10, 20])
    art = plotting.plot_pixel_trace(ax, h, current=5)
    np.testing.assert_array_equal(art["traces"][0].get_ydata(), stack[:, 10, 20])
    np.testing.assert_allclose(art["means"][0].get_ydata(), h["bg_mean"])
    spans = art["foreground_spans"]
    shaded = np.zeros(stack.shape[0], bool)
    for a, b in spans:
        shaded[a:b] = True
    np.testing.assert_array_equal(shaded, h["foreground"] == 1)
    assert shaded.any()
    assert art["current"].get_xdata()[0] == 5
    fig2, ax2 = plt.subplots()
    mix = plotting.plot_pixel_mixture(ax2, h["mixture"])
    assert len(mix["modes"]) == h["mixture"]["weights"].size
    plt.close(fig2)


def test_pixel_history_rejects_a_single_frame():
    with pytest.raises(ValueError, match="T >= 2"):
        plotting.pixel_history(np.zeros(1))


def test_plotting_does_not_import_qt_or_napari():
    import subprocess
    import sys

    code = (
        "import sys, napari_gmm.plotting; bad = [m for m in ('napari', 'qtpy', 'PyQt6', 'magicgui') "
        "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_plot_selection_marks_the_chosen_k():
    from matplotlib.figure import Figure

    from napari_gmm.plotting import plot_selection

    img = np.concatenate([np.full(500, 40), np.full(500, 200)]).astype(np.uint8)
    img = (img + np.random.default_rng(0).normal(0, 8, img.size)).clip(0, 255).astype(np.uint8).reshape(25, 40)
    m = ng.fit_mixture(img, "auto")
    ax = Figure().subplots()
    out = plot_selection(ax, m)
    k, v = out["chosen"].get_data()
    assert list(k) == [m.n_components] and list(v) == [0.0]
    np.testing.assert_allclose(out["line"].get_ydata(), np.asarray(m.selection.values) - min(m.selection.values))
    with pytest.raises(ng.InputError, match="fixed K"):
        plot_selection(ax, ng.fit_mixture(img, 2))
