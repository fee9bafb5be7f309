"""Matplotlib plots of fitted mixtures, of EM's evolution and of a pixel's background model.

Pure plotting on :class:`matplotlib.axes.Axes` / :class:`matplotlib.figure.Figure` objects: this module
never imports napari or Qt, so the napari dock widgets (:mod:`napari_gmm._widgets._plots`), scripts and
the demo command share it. Colours are passed in (the widgets pass the colours the labels have in the
napari Labels layer); without them :func:`default_colors` is used.

Every ``plot_*`` function draws into the axes it is given and returns a dict of the artists it made,
so callers (and tests) can check what was drawn.

Examples
--------
>>> import numpy as np, matplotlib
>>> matplotlib.use("Agg")
>>> import matplotlib.pyplot as plt
>>> import napari_gmm as ng
>>> from napari_gmm import plotting
>>> rng = np.random.default_rng(0)
>>> img = np.concatenate([rng.normal(60, 8, 5000), rng.normal(180, 12, 5000)]).clip(0, 255)
>>> img = img.astype(np.uint8).reshape(100, 100)
>>> model = ng.fit_mixture(img, 2)
>>> fig, ax = plt.subplots()
>>> art = plotting.plot_mixture(ax, model, ng.histogram(img))
>>> len(art["components"]), len(art["thresholds"])
(2, 1)
>>> plt.close(fig)
"""

from __future__ import annotations

import math

import numpy as np

from ._validate import InputError

__all__ = [
    "default_colors",
    "model_at",
    "grey_density",
    "channel_density",
    "plot_mixture",
    "plot_marginals",
    "plot_density_2d",
    "plot_log_likelihood",
    "plot_selection",
    "pixel_history",
    "plot_pixel_trace",
    "plot_pixel_mixture",
]

#: the grid on which component curves are drawn never has more points than this
MAX_CURVE_POINTS = 4096
#: default number of histogram bars shown (finer native grids are merged for display)
DEFAULT_DISPLAY_BINS = 256


def default_colors(n):
    """``n`` distinct RGBA colours (matplotlib's tab10/tab20 cycle), for plots without a Labels layer.

    Returns
    -------
    ndarray, shape (n, 4)
    """
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return np.array([cmap(i % cmap.N) for i in range(n)])


def _colors(colors, k):
    if colors is None:
        return default_colors(k)
    c = np.asarray(colors, dtype=float)
    if c.shape[0] < k:
        raise InputError(f"{c.shape[0]} colours given for {k} components")
    return c[:k]


def model_at(model, iteration=None):
    """The model with the parameters of ``model.history`` entry ``iteration`` (None: the final model).

    Parameters
    ----------
    model : MixtureModel
    iteration : int, optional
        0 = the start, ``model.n_iter`` = the end; negative values count from the end.

    Returns
    -------
    MixtureModel
    """
    if iteration is None:
        return model
    from .mixture import MixtureModel

    n = len(model.history["weights"])
    i = int(iteration)
    if not -n <= i < n:
        raise IndexError(f"iteration {iteration} is outside the stored history (0..{n - 1})")
    w = np.asarray(model.history["weights"][i], dtype=float)
    return MixtureModel(
        w / w.sum(),
        model.history["means"][i],
        model.history["covariances"][i],
        model.covariance_type,
        lower_bound=float(model.history["log_likelihood"][i]),
        params=model.params,
    )


# -------------------------------------------------------------------------------------------------
# histograms as densities


def grey_density(hist, bins=None):
    """The density of a grey :class:`~napari_gmm.Histogram`, optionally merged into fewer bins.

    Parameters
    ----------
    hist : Histogram
        One-feature histogram (``napari_gmm.histogram(image)``).
    bins : int, optional
        Number of bars wanted; the native grid (one bin per grey level, or the float bins) is merged
        by groups of equal size. None keeps at most :data:`DEFAULT_DISPLAY_BINS`; 0 keeps the native
        grid.

    Returns
    -------
    edges : ndarray, shape (B + 1,)
        Bar edges.
    density : ndarray, shape (B,)
        Pixel fraction per unit of intensity (integrates to 1).
    native : tuple (centers, density, width)
        The native grid of :meth:`Histogram.density`, on which component curves are evaluated.
    """
    centers, dens, width = hist.density()
    native = (centers, dens, width)
    n = centers.size
    want = DEFAULT_DISPLAY_BINS if bins is None else int(bins)
    group = 1 if want <= 0 or want >= n else int(math.ceil(n / want))
    if group > 1:
        m = int(math.ceil(n / group))
        pad = m * group - n
        d = np.concatenate([dens, np.zeros(pad)]).reshape(m, group)
        members = np.concatenate([np.ones(n), np.zeros(pad)]).reshape(m, group).sum(axis=1)
        dens = d.sum(axis=1) / members
        left = centers[0] - width / 2 + np.arange(m) * group * width
        right = np.minimum(left + group * width, centers[-1] + width / 2)
        edges = np.append(left, right[-1])
    else:
        edges = np.append(centers - width / 2, centers[-1] + width / 2)
    return edges, dens, native


def channel_density(hist, channel, bins=256):
    """Marginal density of one channel of a multichannel :class:`~napari_gmm.Histogram`.

    Integer data get one bin per value (merged into at most ``bins`` bars).

    Returns
    -------
    edges : ndarray, shape (B + 1,)
    density : ndarray, shape (B,)
    """
    v = hist.values[:, channel]
    c = hist.counts
    total = c.sum()
    if v.size == 0 or total <= 0:
        return np.array([0.0, 1.0]), np.zeros(1)
    lo, hi = float(v.min()), float(v.max())
    if np.dtype(hist.dtype).kind in "ui":
        span = int(hi - lo) + 1
        step = max(1, int(math.ceil(span / bins)))
        nb = int(math.ceil(span / step))
        idx = ((v - lo) // step).astype(np.int64)
        counts = np.bincount(idx, weights=c, minlength=nb)
        edges = lo - 0.5 + np.arange(nb + 1) * step
        width = float(step)
    else:
        if hi <= lo:
            hi = lo + 1.0
        counts, edges = np.histogram(v, bins=bins, range=(lo, hi), weights=c)
        width = float(edges[1] - edges[0])
    return edges, counts / (total * width)


# -------------------------------------------------------------------------------------------------
# grey mixture


def _luminance(c):
    from matplotlib.colors import to_rgb

    r, g, b = to_rgb(c)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _curve_kw(color, style, lw):
    """Line keywords; a colour too close to the background (e.g. a dark label colour on napari's dark
    theme) gets a thin halo in the text colour so the curve stays visible."""
    kw = {"color": color, "lw": lw}
    bg = (style or {}).get("background")
    if bg is not None and abs(_luminance(color[:3] if not isinstance(color, str) else color) - _luminance(bg)) < 0.22:
        from matplotlib import patheffects

        halo = (style or {}).get("text", "white")
        kw["path_effects"] = [patheffects.Stroke(linewidth=lw + 1.8, foreground=halo, alpha=0.55), patheffects.Normal()]
    return kw


def _robust_top(dens, curve_top):
    """y limit: the whole mixture, and the histogram unless a few saturated bins (e.g. pixels clipped
    at 0 or 255) would flatten everything else."""
    curve = np.asarray(curve_top, float).ravel()
    c_max = float(curve.max()) if curve.size else 0.0
    c_bulk = float(np.quantile(curve, 0.98)) if curve.size else 0.0
    pos = dens[dens > 0] if dens.size else dens
    d_max = float(pos.max()) if pos.size else 0.0
    d_bulk = float(np.quantile(pos, 0.99)) if pos.size else 0.0
    full = max(c_max, d_max)
    return min(full, max(1.5 * d_bulk, 1.5 * c_bulk, 1e-300)) if full > 0 else 1.0


def _legend(ax, handles, labels, style, **kw):
    if not handles:
        return None
    kw.setdefault("fontsize", "small")
    leg = ax.legend(handles, labels, framealpha=0.85, **kw)
    if style:
        leg.get_frame().set_facecolor(style.get("background", "white"))
        leg.get_frame().set_edgecolor(style.get("edge", "0.5"))
        for t in leg.get_texts():
            t.set_color(style.get("text", "black"))
    return leg


def plot_mixture(
    ax,
    model,
    hist=None,
    colors=None,
    *,
    bins=None,
    log=False,
    thresholds=True,
    iteration=None,
    style=None,
    legend=True,
    x_range=None,
    threshold_values=None,
):
    """Histogram (as a density) with each weighted component, the mixture sum and the thresholds.

    Parameters
    ----------
    ax : matplotlib Axes
    model : MixtureModel
        A grey (one-feature) model.
    hist : Histogram, optional
        The image's histogram (``napari_gmm.histogram(image)``). Without it only the curves are drawn,
        over mean +- 4 sd of the components (or ``x_range``).
    colors : array_like, shape (K, 3 or 4), optional
        Colour of each component (label k + 1 gets ``colors[k]``).
    bins : int, optional
        Bars shown (see :func:`grey_density`).
    log : bool
        Logarithmic density axis.
    thresholds : bool
        Draw the decision thresholds (intensities where the most probable component changes).
    iteration : int, optional
        Draw the components of this EM iteration (``model.history``) instead of the final ones.
    style : dict, optional
        ``{"text", "edge", "background", "hist"}`` colours (theme).
    threshold_values : array_like, optional
        Thresholds already computed (``model.thresholds(lo, hi)`` over the histogram's range), e.g.
        cached by a caller that redraws often.

    Returns
    -------
    dict
        ``"hist"`` (the histogram artist or None), ``"components"`` (K Line2D, in label order),
        ``"sum"`` (Line2D), ``"thresholds"`` (Line2D list), ``"x"`` (the curve grid: the histogram's
        native grid) and ``"threshold_values"``.

    Notes
    -----
    The curves are ``model.pdf(x)`` (``w_k N(x | mu_k, var_k)``) evaluated on the histogram's native
    grid (one point per grey level for integer images), so they compare directly with the bars.
    """
    if model.n_features != 1:
        raise InputError("plot_mixture is for grey models; use plot_marginals / plot_density_2d for colour")
    style = style or {}
    K = model.n_components
    cols = _colors(colors, K)
    out = {"hist": None, "components": [], "sum": None, "thresholds": [], "threshold_values": np.zeros(0)}
    if hist is not None and hist.n_pixels > 0:
        edges, dens, (x, _, _) = grey_density(hist, bins)
        out["hist"] = ax.stairs(
            dens, edges, fill=True, color=style.get("hist", "0.6"), alpha=0.55, label="histogram", zorder=1
        )
        lo, hi = float(hist.low[0]), float(hist.high[0])
        xl = (float(edges[0]), float(edges[-1]))
        if x.size > MAX_CURVE_POINTS:
            x = x[:: int(math.ceil(x.size / MAX_CURVE_POINTS))]
    else:
        dens = np.zeros(0)
        m = model.means[:, 0]
        sd = np.sqrt(model.variances[:, 0])
        lo, hi = x_range if x_range is not None else (float((m - 4 * sd).min()), float((m + 4 * sd).max()))
        x = np.linspace(lo, hi, 1024)
        xl = (lo, hi)
    y = model.pdf(x, iteration=iteration)
    for k in range(K):
        (line,) = ax.plot(x, y[:, k], label=f"label {k + 1}", zorder=3, **_curve_kw(cols[k], style, 1.8))
        out["components"].append(line)
    (out["sum"],) = ax.plot(
        x, y.sum(axis=1), color=style.get("text", "black"), lw=1.0, ls="-", alpha=0.8, label="mixture", zorder=2.5
    )
    if thresholds and K > 1:
        if threshold_values is not None:
            th = np.asarray(threshold_values, float)
        else:
            th = model_at(model, iteration).thresholds(lo, hi) if hi > lo else np.zeros(0)
        out["threshold_values"] = th
        for t in th:
            out["thresholds"].append(
                ax.axvline(t, color=style.get("text", "black"), ls="--", lw=0.9, alpha=0.7, zorder=2)
            )
        if 0 < th.size <= 8:
            tr = ax.get_xaxis_transform()
            for t in th:
                ax.text(
                    t,
                    0.985,
                    f" {t:.4g}",
                    transform=tr,
                    va="top",
                    ha="left",
                    fontsize="x-small",
                    color=style.get("text", "black"),
                    alpha=0.9,
                    zorder=5,
                )
    top = _robust_top(dens, y.sum(axis=1))
    ax.set_xlim(*xl)
    if log:
        ax.set_yscale("log")
        pos = dens[dens > 0] if hist is not None and hist.n_pixels > 0 else np.zeros(0)
        top = max(top, float(dens.max()) if dens.size else 0.0)
        floor = max(float(pos.min()) * 0.5 if pos.size else top * 1e-6, top * 1e-7)
        ax.set_ylim(floor, top * 2.0 if top > 0 else 1.0)
    else:
        ax.set_ylim(0, top * 1.08 if top > 0 else 1.0)
    ax.set_xlabel("intensity")
    ax.set_ylabel("density")
    out["x"] = x
    if legend:
        handles = list(out["components"]) if K <= 8 else []
        handles.append(out["sum"])
        if out["hist"] is not None:
            handles.insert(0, out["hist"])
        _legend(ax, handles, [h.get_label() for h in handles], style, loc="best")
    return out


# -------------------------------------------------------------------------------------------------
# colour / multichannel


def _marginal_var(model, k, d):
    return float(model.variances[k, d])


def plot_marginals(
    axes, model, hist=None, colors=None, *, channel_names=None, log=False, iteration=None, style=None, bins=256
):
    """Per-channel marginal histograms of a multichannel image with each component's marginal.

    Parameters
    ----------
    axes : sequence of Axes, one per channel (D)
    model : MixtureModel with D features
    hist : Histogram, optional
        Multichannel histogram (``napari_gmm.histogram(image, channel_axis=...)``).

    Returns
    -------
    dict
        ``"hists"`` (one artist per channel), ``"components"`` (D lists of K Line2D), ``"sums"``,
        ``"x"`` (the grid of each channel).
    """
    mod = model_at(model, iteration)
    D, K = mod.n_features, mod.n_components
    if len(axes) != D:
        raise InputError(f"{len(axes)} axes for {D} channels")
    style = style or {}
    cols = _colors(colors, K)
    names = channel_names or [f"channel {d}" for d in range(D)]
    out = {"hists": [], "components": [], "sums": [], "x": []}
    for d, ax in enumerate(axes):
        if hist is not None and hist.n_pixels > 0:
            edges, dens = channel_density(hist, d, bins)
            out["hists"].append(ax.stairs(dens, edges, fill=True, color=style.get("hist", "0.6"), alpha=0.55, zorder=1))
            lo, hi = float(edges[0]), float(edges[-1])
        else:
            sd = np.sqrt(mod.variances[:, d])
            lo, hi = float((mod.means[:, d] - 4 * sd).min()), float((mod.means[:, d] + 4 * sd).max())
            dens = np.zeros(0)
        x = np.linspace(lo, hi, 512)
        var = mod.variances[:, d]
        y = (
            mod.weights[None]
            * np.exp(-0.5 * (x[:, None] - mod.means[None, :, d]) ** 2 / var[None])
            / np.sqrt(2 * np.pi * var)[None]
        )
        lines = [ax.plot(x, y[:, k], zorder=3, **_curve_kw(cols[k], style, 1.5))[0] for k in range(K)]
        (s,) = ax.plot(x, y.sum(axis=1), color=style.get("text", "black"), lw=0.9, alpha=0.8, zorder=2.5)
        out["components"].append(lines)
        out["sums"].append(s)
        out["x"].append(x)
        top = _robust_top(dens, y.sum(axis=1))
        ax.set_xlim(lo, hi)
        if log:
            ax.set_yscale("log")
            pos = dens[dens > 0]
            top = max(top, float(dens.max()) if dens.size else 0.0)
            ax.set_ylim(max(pos.min() * 0.5 if pos.size else top * 1e-6, top * 1e-7), top * 2)
        else:
            ax.set_ylim(0, top * 1.08 if top > 0 else 1)
        ax.set_ylabel(names[d], fontsize="small")
        ax.tick_params(labelsize="x-small")
    return out


def covariance_2d(model, k, channels):
    """The 2 x 2 covariance of component ``k`` restricted to two channels."""
    a, b = channels
    c = model.covariances
    if model.covariance_type == "full":
        return np.asarray(c[k])[np.ix_([a, b], [a, b])]
    v = model.variances[k]
    return np.diag([v[a], v[b]])


def _ellipse_xy(mean, cov, r, n=121):
    vals, vecs = np.linalg.eigh(cov)
    vals = np.clip(vals, 0, None)
    t = np.linspace(0, 2 * np.pi, n)
    circle = np.stack([np.cos(t), np.sin(t)])
    pts = vecs @ (np.sqrt(vals)[:, None] * circle) * r
    return mean[0] + pts[0], mean[1] + pts[1]


def plot_density_2d(
    ax,
    model,
    hist=None,
    colors=None,
    *,
    channels=(0, 1),
    channel_names=None,
    iteration=None,
    style=None,
    bins=128,
    sigmas=(1.0, 2.0),
    cmap="gray",
):
    """Two-channel density of a multichannel image with the components' covariance ellipses.

    Parameters
    ----------
    ax : Axes
    model : MixtureModel (D >= 2)
    hist : Histogram, optional
    channels : (int, int)
        Channels on the x and y axes.
    sigmas : sequence of float
        Mahalanobis radii of the ellipses drawn per component (1 and 2 sd).

    Returns
    -------
    dict
        ``"image"`` (the 2D histogram, log-scaled counts), ``"ellipses"`` (K lists of Line2D),
        ``"means"`` (K Line2D markers).
    """
    from matplotlib.colors import LogNorm

    mod = model_at(model, iteration)
    a, b = (int(c) for c in channels)
    D, K = mod.n_features, mod.n_components
    if not (0 <= a < D and 0 <= b < D) or a == b:
        raise InputError(f"channels must be two different channels of 0..{D - 1}, got {channels}")
    style = style or {}
    cols = _colors(colors, K)
    names = channel_names or [f"channel {d}" for d in range(D)]
    out = {"image": None, "ellipses": [], "means": []}
    if hist is not None and hist.n_pixels > 0:
        va, vb = hist.values[:, a], hist.values[:, b]
        ra = (float(va.min()), float(va.max()) if va.max() > va.min() else float(va.min()) + 1)
        rb = (float(vb.min()), float(vb.max()) if vb.max() > vb.min() else float(vb.min()) + 1)
        H, xe, ye = np.histogram2d(va, vb, bins=bins, range=(ra, rb), weights=hist.counts)
        Hm = np.ma.masked_less_equal(H.T, 0)
        if Hm.count():
            out["image"] = ax.imshow(
                Hm,
                origin="lower",
                extent=(xe[0], xe[-1], ye[0], ye[-1]),
                aspect="auto",
                cmap=cmap,
                norm=LogNorm(vmin=max(Hm.min(), 1e-12), vmax=Hm.max()),
                interpolation="nearest",
                zorder=1,
            )
        ax.set_xlim(xe[0], xe[-1])
        ax.set_ylim(ye[0], ye[-1])
    for k in range(K):
        mean = mod.means[k, [a, b]]
        cov = covariance_2d(mod, k, (a, b))
        lines = []
        for i, r in enumerate(sigmas):
            ex, ey = _ellipse_xy(mean, cov, r)
            (ln,) = ax.plot(
                ex, ey, ls="-" if i == 0 else "--", zorder=3, **_curve_kw(cols[k], style, 1.8 if i == 0 else 1.0)
            )
            lines.append(ln)
        out["ellipses"].append(lines)
        (mk,) = ax.plot(
            [mean[0]],
            [mean[1]],
            marker="+",
            ms=9,
            mew=2,
            color=cols[k],
            zorder=4,
            path_effects=_curve_kw(cols[k], style, 1).get("path_effects"),
        )
        out["means"].append(mk)
    ax.set_xlabel(names[a])
    ax.set_ylabel(names[b])
    return out


# -------------------------------------------------------------------------------------------------
# EM evolution


#: a log-likelihood history whose values all lie within this relative span is drawn flat (rounding)
_FLAT_LL = 1e-9


def plot_log_likelihood(ax, model, iteration=None, *, style=None):
    """Mean log-likelihood per pixel after each EM iteration, with a marker at ``iteration``.

    Returns
    -------
    dict
        ``"line"`` (Line2D over iterations 0..n_iter) and ``"marker"`` (Line2D or None).
    """
    style = style or {}
    ll = np.asarray(model.history["log_likelihood"], dtype=float)
    it = np.arange(ll.size)
    (line,) = ax.plot(it, ll, color=style.get("accent", "C0"), lw=1.5, marker="." if ll.size <= 60 else None)
    marker = None
    if iteration is not None and ll.size:
        i = int(iteration) % ll.size
        (marker,) = ax.plot([i], [ll[i]], "o", ms=7, mfc="none", mew=2, color=style.get("text", "black"))
    ax.set_xlabel("EM iteration")
    ax.set_ylabel("log-likelihood / pixel")
    ax.set_xlim(-0.5, max(ll.size - 0.5, 0.5))
    fin = ll[np.isfinite(ll)]
    if fin.size and float(fin.max() - fin.min()) <= _FLAT_LL * max(1.0, float(np.abs(fin).max())):
        # EM started at (or next to) a converged fit (the polished classic start often is): the
        # values differ by rounding only. Without this, matplotlib's offset notation magnifies
        # 1e-10 into a steep, falling curve ("1e-11 - 5.1547"), which reads as EM going wrong.
        hi = float(fin.max())
        pad = 1e-3 * max(1.0, abs(hi))
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.set_ylim(hi - pad, hi + pad)
        ax.text(
            0.5,
            0.3,
            "unchanged beyond rounding:\nthe start was already converged",
            transform=ax.transAxes,
            ha="center",
            fontsize=8,
            color=style.get("text", "black"),
        )
    elif fin.size > 2:
        # start and end differ a lot; show the last 95 % of the climb so late iterations stay visible
        lo, hi = float(np.quantile(fin, 0.02)), float(fin.max())
        pad = 0.06 * (hi - lo) if hi > lo else 1e-3
        ax.set_ylim(min(lo, float(fin[-1])) - pad, hi + pad)
    return {"line": line, "marker": marker}


def plot_selection(ax, selection, *, style=None, label=None, marker="o-"):
    """The criterion of a search over K (``model.selection`` of ``n_components="auto"``) against K,
    relative to its minimum (symlog axis), with a star at the chosen K.

    Parameters
    ----------
    ax : matplotlib Axes
    selection : napari_gmm.selection.Selection or MixtureModel
        A model with a ``selection`` is accepted too.
    label : str, optional
        Legend label (default: the criterion's name and the chosen K).

    Returns
    -------
    dict
        ``"line"`` (Line2D) and ``"chosen"`` (the star's Line2D).

    Raises
    ------
    InputError
        For a model fitted with a fixed K (nothing was searched).
    """
    sel = getattr(selection, "selection", selection)
    if sel is None or not getattr(sel, "candidates", None):
        raise InputError(
            "this model was fitted with a fixed K: fit with n_components='auto' to have a criterion to plot"
        )
    style = style or {}
    v = np.asarray(sel.values, dtype=float)
    rel = v - np.nanmin(v)
    k = np.asarray(sel.candidates)
    (line,) = ax.plot(
        k,
        rel,
        marker,
        color=style.get("accent", None),
        label=label or f"{sel.criterion.upper()} (chose K = {sel.n_components})",
    )
    i = int(np.flatnonzero(k == sel.n_components)[0])
    (star,) = ax.plot([k[i]], [rel[i]], "*", ms=14, color=style.get("text", "black"))
    ax.set_yscale("symlog", linthresh=10)
    ax.set_xticks(k)
    ax.set_xlabel("K (number of components)")
    ax.set_ylabel("criterion - its minimum (lower is better)")
    return {"line": line, "chosen": star}


# -------------------------------------------------------------------------------------------------
# background model: one pixel over time


_DEFAULT = object()


def pixel_history(trace, *, data_range=None, burn_in=_DEFAULT, learning_rate=None, **params):
    """Replay the background model of one pixel frame by frame.

    A thin wrapper of :func:`napari_gmm.background.pixel_history` (where the replay lives, next to
    the model it replays); see there for the parameters (``preset``, ``noise``, ``frame_factors``
    ...) and the returned dict. ``burn_in`` defaults to the preset's.
    """
    from .background import FROM_PRESET
    from .background import pixel_history as _replay

    return _replay(
        trace,
        data_range=data_range,
        burn_in=FROM_PRESET if burn_in is _DEFAULT else burn_in,
        learning_rate=learning_rate,
        **params,
    )


def _spans(mask):
    """(start, stop) index runs where ``mask`` is True."""
    m = np.concatenate([[False], np.asarray(mask, bool), [False]])
    d = np.diff(m.astype(np.int8))
    return list(zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1)))


def plot_pixel_trace(
    ax, hist_data, *, foreground=None, times=None, style=None, channel_colors=None, channel_names=None, current=None
):
    """A pixel's intensity over time, foreground frames shaded, background mean +- sqrt(Tb) sigma.

    Parameters
    ----------
    ax : Axes
    hist_data : dict
        :func:`pixel_history` output.
    foreground : array_like of int, shape (T,), optional
        The classification to shade (e.g. the post-filtered mask of the result layer); default the
        replay's own.
    times : array_like, shape (T,), optional
        x values (frame index by default).
    current : int, optional
        Frame marked with a vertical line (the viewer's current frame).

    Returns
    -------
    dict
        ``"traces"`` (Line2D per channel), ``"bands"``, ``"means"``, ``"foreground_spans"`` (list of
        (start, stop) frame runs shaded), ``"current"`` (Line2D or None).
    """
    style = style or {}
    v = hist_data["values"]
    T = v.shape[0]
    t = np.arange(T) if times is None else np.asarray(times, float)
    fg = np.asarray(hist_data["foreground"] if foreground is None else foreground)
    grey = v.ndim == 1
    vv = v[:, None] if grey else v
    mm = hist_data["bg_mean"][:, None] if grey else hist_data["bg_mean"]
    C = vv.shape[1]
    if channel_colors is None:
        channel_colors = (
            [style.get("accent", "C0")]
            if grey
            else (["#e8413c", "#3cb44b", "#4a7fe0"] + [f"C{i}" for i in range(3, 10)])[:C]
        )
    names = channel_names or ([""] if grey else [f"ch {c}" for c in range(C)])
    half = math.sqrt(hist_data["var_threshold"]) * hist_data["bg_sigma"]
    out = {"traces": [], "bands": [], "means": [], "foreground_spans": [], "current": None}
    fg_col = style.get("foreground", "#ff9f1c")
    for kind, colour, alpha in ((1, fg_col, 0.28), (2, style.get("shadow", "#7f7fff"), 0.22)):
        spans = _spans(fg == kind)
        for a, b in spans:
            ax.axvspan(
                t[a] - 0.5 if times is None else t[a],
                t[b - 1] + 0.5 if times is None else t[b - 1],
                color=colour,
                alpha=alpha,
                lw=0,
                zorder=0,
            )
        if kind == 1:
            out["foreground_spans"] = spans
    for c in range(C):
        band = ax.fill_between(t, mm[:, c] - half, mm[:, c] + half, color=channel_colors[c], alpha=0.18, lw=0, zorder=1)
        (mean_line,) = ax.plot(t, mm[:, c], color=channel_colors[c], lw=1.0, ls="--", zorder=2)
        (tr,) = ax.plot(t, vv[:, c], color=channel_colors[c], lw=1.3, zorder=3, label=f"intensity {names[c]}".strip())
        out["traces"].append(tr)
        out["bands"].append(band)
        out["means"].append(mean_line)
    if current is not None and 0 <= int(current) < T:
        out["current"] = ax.axvline(t[int(current)], color=style.get("text", "black"), lw=0.8, alpha=0.6)
    ax.set_xlim(t[0] - 0.5, t[-1] + 0.5)
    ax.set_xlabel("frame")
    ax.set_ylabel("intensity")
    from matplotlib.patches import Patch

    handles = [out["traces"][0], out["means"][0], out["bands"][0], Patch(color=fg_col, alpha=0.4)]
    labels = ["intensity", "background mean", f"± {math.sqrt(hist_data['var_threshold']):.3g} σ", "foreground"]
    _legend(ax, handles, labels, style, loc="best", ncols=2, fontsize="x-small")
    return out


def plot_pixel_mixture(ax, mixture, *, y_range=None, style=None, colors=None, channel=0):
    """The final per-pixel mixture as densities along the intensity axis (drawn sideways).

    Background modes are solid, the others dashed; each is labelled with weight, mean and sigma.

    Returns
    -------
    dict
        ``"modes"`` (Line2D per mode), ``"y"`` (the intensity grid).
    """
    style = style or {}
    w = np.asarray(mixture["weights"], float)
    means = np.asarray(mixture["means"], float)
    means = means if means.ndim == 1 else means[:, channel]
    var = np.asarray(mixture["variances"], float)
    n = w.size
    cols = _colors(colors, n) if n else np.zeros((0, 4))
    sd = np.sqrt(var)
    if y_range is None:
        y_range = (float((means - 4 * sd).min()), float((means + 4 * sd).max())) if n else (0.0, 1.0)
    y = np.linspace(y_range[0], y_range[1], 512)
    out = {"modes": [], "y": y}
    for k in range(n):
        p = w[k] * np.exp(-0.5 * (y - means[k]) ** 2 / var[k]) / math.sqrt(2 * math.pi * var[k])
        bg = bool(mixture["is_background"][k])
        (ln,) = ax.plot(
            p,
            y,
            color=cols[k],
            lw=1.6,
            ls="-" if bg else "--",
            label=f"w {w[k]:.2f}  μ {means[k]:.4g}  σ {sd[k]:.3g}" + (" (bg)" if bg else ""),
        )
        out["modes"].append(ln)
    ax.set_ylim(*y_range)
    ax.set_xlabel("density", fontsize="small")
    ax.tick_params(labelsize="x-small")
    ax.set_title(f"{n} mode{'s' if n != 1 else ''}", fontsize="small")
    for k in range(n):  # weight next to each mode's peak (the legend would not fit a narrow panel)
        peak = w[k] / math.sqrt(2 * math.pi * var[k])
        if y_range[0] <= means[k] <= y_range[1]:
            ax.annotate(
                f"{w[k]:.2f}",
                (peak, means[k]),
                xytext=(2, 0),
                textcoords="offset points",
                fontsize="xx-small",
                color=style.get("text", "black"),
                va="center",
                clip_on=True,
            )
    return out
