"""Command line of napari-gmm: ``python -m napari_gmm demo`` (or the ``napari-gmm`` script).

``demo`` runs headless (matplotlib's Agg canvas only; napari and Qt are never imported): it
segments the cameraman with the seed's method and the synthetic phantom (known ground truth) and
writes, into ``./napari-gmm-demo/`` by default::

    cameraman_k2_labels.png / .npy   labels (colour PNG for viewing, .npy with the exact values)
    cameraman_k2_plot.png            histogram (density), weighted component curves, mixture sum,
                                     decision thresholds; log-likelihood per EM iteration
    phantom_labels.png / .npy, phantom_plot.png, phantom_truth.npy
    summary.json / summary.txt       fitted models (MixtureModel.to_dict()), timings, accuracy

The demo is a list of steps (:data:`DEMO_STEPS`); ``--steps`` selects some of them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_OUT = "napari-gmm-demo"


# ---------------------------------------------------------------------------------------------
# helpers


@dataclasses.dataclass
class DemoContext:
    """What every demo step receives.

    Attributes
    ----------
    out : pathlib.Path
        Output directory (exists).
    ks : list of int
        Numbers of components asked for with ``--k`` (used by the cameraman step).
    args : argparse.Namespace
        All command-line arguments.
    files : list of str
        Names (relative to ``out``) of the files written so far; steps append with :meth:`path`.
    """

    out: Path
    ks: list[int]
    args: argparse.Namespace
    files: list[str] = dataclasses.field(default_factory=list)

    def path(self, name: str) -> Path:
        """Path of output file ``name`` in :attr:`out`, recorded in :attr:`files`."""
        self.files.append(name)
        return self.out / name


def _palette(k: int) -> np.ndarray:
    """(k + 1, 3) uint8 colours: row 0 (unassigned) black, rows 1..k distinct colours.

    Label colours of the PNGs and component colours of the plots come from here, so label ``j``
    and curve ``j`` have the same colour.
    """
    from matplotlib import colormaps

    cmap = colormaps["tab10"] if k <= 10 else colormaps["turbo"]
    xs = np.arange(k) if k <= 10 else np.linspace(0.05, 0.95, k)
    rgb = np.zeros((k + 1, 3), dtype=np.uint8)
    rgb[1:] = np.round(np.asarray(cmap(xs))[:, :3] * 255).astype(np.uint8)
    return rgb


def save_labels_png(path, labels: np.ndarray, k: int) -> None:
    """Write a 2D label image as an RGB PNG with the demo palette (0 = black)."""
    from matplotlib import image as mimage

    pal = _palette(k)
    mimage.imsave(path, pal[np.minimum(labels, k)])


def _timed(fn: Callable, *args, **kwargs):
    t0 = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - t0


def plot_grey_model(path, image: np.ndarray, model, *, title: str = "") -> list[float]:
    """Plot a grey-level mixture fit: histogram + components (left), log-likelihood (right).

    Parameters
    ----------
    path : str or pathlib.Path
        PNG to write.
    image : ndarray
        The image the model was fitted on (its exact histogram is drawn as a density).
    model : napari_gmm.MixtureModel
        Grey model (``n_features == 1``).
    title : str
        Figure title.

    Returns
    -------
    thresholds : list of float
        The decision thresholds drawn (intensities where the most probable component changes).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    import napari_gmm as ng
    from napari_gmm.plotting import plot_log_likelihood

    hist = ng.histogram(image)
    values = np.asarray(hist.values, dtype=np.float64)[:, 0]
    counts = np.asarray(hist.counts, dtype=np.float64)
    bw = float(np.asarray(hist.bin_width, dtype=np.float64).ravel()[0])
    lo, hi = float(values.min()) - bw / 2, float(values.max()) + bw / 2
    # display bins: the exact histogram re-binned to at most 256 bars, as a density per intensity
    n_bins = int(min(256, max(1, round((hi - lo) / bw))))
    edges = np.linspace(lo, hi, n_bins + 1)
    density, _ = np.histogram(values, bins=edges, weights=counts, density=True)

    x = np.linspace(lo, hi, 1000)
    comps = np.asarray(model.pdf(x))  # (n, K) weighted component densities
    k = comps.shape[1]
    pal = _palette(k)[1:] / 255.0
    thresholds = [float(t) for t in np.atleast_1d(model.thresholds(lo, hi))]

    fig = Figure(figsize=(11, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    ax, ax2 = fig.subplots(1, 2, width_ratios=[2.2, 1])
    ax.stairs(density, edges, fill=True, color="0.75", label="histogram (density)")
    # the mixture underneath (broad, translucent), so that the components drawn on top stay visible
    ax.plot(x, comps.sum(axis=1), color="k", lw=3.5, alpha=0.35, label="mixture (sum)")
    for j in range(k):
        mu = float(np.asarray(model.means)[j, 0])
        sd = float(np.sqrt(np.asarray(model.covariances, dtype=np.float64).reshape(k, -1)[j, 0]))
        ax.plot(
            x,
            comps[:, j],
            color=pal[j],
            lw=1.8,
            label=f"component {j + 1}: w={float(model.weights[j]):.3f}, \u03bc={mu:.1f}, \u03c3={sd:.1f}",
        )
    for i, t in enumerate(thresholds):
        ax.axvline(t, color="crimson", lw=1, ls=":", label="thresholds" if i == 0 else None)
    ax.set_xlim(lo, hi)
    ax.set_xlabel("intensity")
    ax.set_ylabel("density")
    ax.legend(fontsize=8, loc="upper right")

    plot_log_likelihood(ax2, model)  # one drawing of EM's evolution (flat when nothing changed)
    ax2.set_xlabel("EM iteration (0 = initialisation)")
    ax2.set_ylabel("mean log-likelihood per pixel")
    state = "converged" if model.converged else "not converged"
    ax2.set_title(f"{model.n_iter} iterations, {state}", fontsize=10)
    ax2.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=100)
    return thresholds


# ---------------------------------------------------------------------------------------------
# demo steps: each takes the DemoContext, writes files, returns its JSON-able summary section


def demo_cameraman(ctx: DemoContext) -> dict[str, Any]:
    """Segment the cameraman with the seed's method ("ranges" init) for every K of ``--k``."""
    import napari_gmm as ng
    from napari_gmm.datasets import cameraman

    image = cameraman()
    runs = []
    for k in ctx.ks:
        fit_kw = dict(max_iter=ctx.args.max_iter, tol=ctx.args.tol)
        (labels, model), first = _timed(ng.segment, image, k, return_model=True, **fit_kw)
        _, warm = _timed(ng.segment, image, k, **fit_kw)
        stem = f"cameraman_k{k}"
        np.save(ctx.path(f"{stem}_labels.npy"), labels)
        save_labels_png(ctx.path(f"{stem}_labels.png"), labels, k)
        thresholds = plot_grey_model(
            ctx.path(f"{stem}_plot.png"),
            image,
            model,
            title=f"cameraman, K={k}: Gaussian mixture fitted by EM",
        )
        fractions = np.bincount(labels.ravel(), minlength=k + 1)[1:] / labels.size
        runs.append(
            {
                "n_components": k,
                "first_call_s": first,
                "warm_call_s": warm,
                "n_iter": int(model.n_iter),
                "converged": bool(model.converged),
                "lower_bound": float(model.lower_bound),
                "thresholds": thresholds,
                "label_fractions": fractions.tolist(),
                "files": [f"{stem}_labels.npy", f"{stem}_labels.png", f"{stem}_plot.png"],
                "model": model.to_dict(),
                "summary": model.summary(),
            }
        )
    return {"image": {"shape": list(image.shape), "dtype": str(image.dtype)}, "runs": runs}


def demo_phantom(ctx: DemoContext) -> dict[str, Any]:
    """Segment the synthetic 3-class phantom and compare with its ground truth."""
    import napari_gmm as ng
    from napari_gmm.datasets import phantom

    n_classes = 3
    image, truth = phantom((256, 256), n_classes=n_classes, noise=0.25, seed=0)
    fit_kw = dict(max_iter=ctx.args.max_iter, tol=ctx.args.tol)
    (labels, model), first = _timed(ng.segment, image, n_classes, return_model=True, **fit_kw)
    _, warm = _timed(ng.segment, image, n_classes, **fit_kw)

    # rows: truth 1..K; columns: label 0 (unassigned: none expected, no mask or NaN) then 1..K
    confusion = np.zeros((n_classes, n_classes + 1), dtype=np.int64)
    np.add.at(confusion, (truth.ravel().astype(np.intp) - 1, labels.ravel().astype(np.intp)), 1)
    accuracy = float(np.mean(labels == truth))

    # reference: the Bayes classifier with the true class parameters (measured on the truth)
    x = image.astype(np.float64).ravel()
    t = truth.ravel()
    logp = np.empty((n_classes, x.size))
    true_params = []
    for j in range(n_classes):
        xj = x[t == j + 1]
        w, mu, var = xj.size / x.size, xj.mean(), xj.var()
        true_params.append({"weight": w, "mean": mu, "variance": var})
        logp[j] = np.log(w) - 0.5 * np.log(2 * np.pi * var) - (x - mu) ** 2 / (2 * var)
    oracle_accuracy = float(np.mean(np.argmax(logp, axis=0) + 1 == t))

    np.save(ctx.path("phantom_image.npy"), image)
    np.save(ctx.path("phantom_truth.npy"), truth)
    np.save(ctx.path("phantom_labels.npy"), labels)
    save_labels_png(ctx.path("phantom_labels.png"), labels, n_classes)
    thresholds = plot_grey_model(
        ctx.path("phantom_plot.png"),
        image,
        model,
        title=f"phantom (3 classes, noise 0.25): accuracy {accuracy:.4f} "
        f"(Bayes classifier with true parameters: {oracle_accuracy:.4f})",
    )
    return {
        "image": {
            "shape": list(image.shape),
            "dtype": str(image.dtype),
            "n_classes": n_classes,
            "noise": 0.25,
            "seed": 0,
        },
        "n_components": n_classes,
        "first_call_s": first,
        "warm_call_s": warm,
        "accuracy": accuracy,
        "oracle_accuracy": oracle_accuracy,
        "unassigned": int(confusion[:, 0].sum()),
        "confusion_truth_by_label": confusion[:, 1:].tolist(),
        "true_params": true_params,
        "thresholds": thresholds,
        "n_iter": int(model.n_iter),
        "converged": bool(model.converged),
        "model": model.to_dict(),
        "summary": model.summary(),
    }


from ._demo_colour import demo_colour  # noqa: E402  (the colour step lives in its own module)


#: The demo, in order: ``(name, step)``. A step gets the :class:`DemoContext`, writes its files
#: with ``ctx.path(name)`` and returns its JSON-able summary section (stored under ``name`` in
#: summary.json; a ``"text"`` entry in it, if any, is copied into summary.txt). Append new steps
#: here (e.g. colour quantisation: ``("colour", demo_colour)``); ``--steps`` picks them by name.
def demo_choosing_k(ctx: DemoContext) -> dict[str, Any]:
    """Choose K automatically (BIC, ICL, AIC) on the cameraman and on the noisy phantom, and plot
    each criterion against K (``choosing_k.png``)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    import napari_gmm as ng
    from napari_gmm.datasets import cameraman, phantom
    from napari_gmm.plotting import plot_selection

    images = {"cameraman": cameraman(), "phantom (3 classes)": phantom((256, 256), n_classes=3, noise=0.25, seed=0)[0]}
    fig = Figure(figsize=(10, 4), layout="constrained")
    axes = fig.subplots(1, 2)
    chosen = {}
    for ax, (name, img) in zip(axes, images.items()):
        chosen[name] = {}
        for crit, mk in (("bic", "o-"), ("icl", "s--"), ("aic", "^:")):
            m = ng.fit_mixture(img, "auto", criterion=crit)
            plot_selection(ax, m, marker=mk)
            chosen[name][crit] = int(m.n_components)
        ax.set_title(f"{name}: criterion against K (* = chosen)")
        ax.legend(fontsize=8)
    fig.savefig(ctx.path("choosing_k.png"), dpi=110)
    lines = [
        "choosing K (n_components='auto'): "
        + "; ".join(f"{n}: " + ", ".join(f"{c.upper()} {k}" for c, k in v.items()) for n, v in chosen.items())
    ]
    return {"chosen": chosen, "files": ["choosing_k.png"], "text": "\n".join(lines)}


DEMO_STEPS: list[tuple[str, Callable[[DemoContext], dict]]] = [
    ("cameraman", demo_cameraman),
    ("phantom", demo_phantom),
    ("choosing_k", demo_choosing_k),
    ("colour", demo_colour),
]


# ---------------------------------------------------------------------------------------------
# summary writing


def _environment() -> dict[str, Any]:
    import numba

    import napari_gmm as ng

    return {
        "napari_gmm": getattr(ng, "__version__", "unknown"),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "numba_threads": int(numba.config.NUMBA_NUM_THREADS),
        "platform": platform.platform(),
    }


def _summary_text(summary: dict[str, Any]) -> str:
    lines = ["napari-gmm demo", "=" * 15, ""]
    env = summary["environment"]
    lines.append("environment: " + ", ".join(f"{k} {v}" for k, v in env.items()))
    lines.append("")
    cam = summary["steps"].get("cameraman")
    if cam:
        for run in cam["runs"]:
            lines.append(f"cameraman {tuple(cam['image']['shape'])} {cam['image']['dtype']}, K={run['n_components']}")
            lines.append(
                f"  time: first call {run['first_call_s'] * 1e3:.1f} ms "
                f"(includes Numba compilation unless cached), "
                f"warm call {run['warm_call_s'] * 1e3:.2f} ms"
            )
            lines.append("  thresholds: " + ", ".join(f"{t:.2f}" for t in run["thresholds"]))
            lines.append("  label fractions: " + ", ".join(f"{f:.3f}" for f in run["label_fractions"]))
            lines.extend("  " + s for s in run["summary"].splitlines())
            lines.append("")
    ph = summary["steps"].get("phantom")
    if ph:
        lines.append(
            f"phantom {tuple(ph['image']['shape'])} {ph['image']['dtype']}, "
            f"{ph['image']['n_classes']} classes, noise {ph['image']['noise']}"
        )
        lines.append(
            f"  accuracy vs ground truth: {ph['accuracy']:.4f} "
            f"(Bayes classifier with the true parameters: {ph['oracle_accuracy']:.4f})"
        )
        lines.append(
            f"  time: first call {ph['first_call_s'] * 1e3:.1f} ms, warm call {ph['warm_call_s'] * 1e3:.2f} ms"
        )
        lines.append("  confusion (rows: truth 1..3, columns: labels 1..3):")
        lines.extend("    " + " ".join(f"{c:7d}" for c in row) for row in ph["confusion_truth_by_label"])
        lines.extend("  " + s for s in ph["summary"].splitlines())
        lines.append("")
    for name, section in summary["steps"].items():
        if name not in ("cameraman", "phantom") and isinstance(section, dict):
            text = section.get("text")
            if text:
                lines.append(f"{name}:")
                lines.extend("  " + s for s in str(text).splitlines())
                lines.append("")
    lines.append(f"total time: {summary['total_s']:.2f} s")
    lines.append("files: " + ", ".join(summary["files"]))
    return "\n".join(lines) + "\n"


def run_demo(args: argparse.Namespace) -> dict[str, Any]:
    """Run the selected demo steps and write summary.json / summary.txt; return the summary."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ctx = DemoContext(out=out, ks=list(args.k), args=args)
    t0 = time.perf_counter()
    steps = {}
    for name, step in DEMO_STEPS:
        if args.steps and name not in args.steps:
            continue
        print(f"napari-gmm demo: {name} ...", flush=True)
        ts = time.perf_counter()
        steps[name] = step(ctx)
        steps[name]["step_s"] = time.perf_counter() - ts
    summary = {
        "environment": _environment(),
        "out": str(out.resolve()),
        "steps": steps,
        "total_s": time.perf_counter() - t0,
        "files": ctx.files + ["summary.json", "summary.txt"],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    text = _summary_text(summary)
    (out / "summary.txt").write_text(text)
    print(text, end="")
    print(f"napari-gmm demo: wrote {len(summary['files'])} files into {out.resolve()}")
    return summary


# ---------------------------------------------------------------------------------------------
# command line


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="napari-gmm",
        description="napari-gmm: Gaussian-mixture (EM) segmentation of images. "
        "Run `napari-gmm demo` (or `python -m napari_gmm demo`) for a headless demo.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser(
        "demo",
        help="segment the bundled sample images headless and write labels, plots and a summary",
        description="Segment the cameraman (the seed method's example) and a synthetic 3-class "
        "phantom with known ground truth; write labels (PNG, .npy), plots (PNG) and "
        "summary.json / summary.txt. Never opens a window.",
    )
    demo.add_argument("--out", default=DEFAULT_OUT, metavar="DIR", help=f"output directory (default: ./{DEFAULT_OUT})")
    demo.add_argument(
        "--k",
        nargs="+",
        type=_positive_int,
        default=[2, 3],
        metavar="K",
        help="numbers of components for the cameraman (default: 2 3)",
    )
    demo.add_argument("--max-iter", type=_positive_int, default=100, help="maximum EM iterations (default: 100)")
    demo.add_argument(
        "--tol", type=float, default=1e-6, help="stop when the mean log-likelihood changes by less (default: 1e-6)"
    )
    demo.add_argument(
        "--steps",
        nargs="+",
        choices=[name for name, _ in DEMO_STEPS],
        metavar="STEP",
        help="run only these steps (default: all: " + ", ".join(name for name, _ in DEMO_STEPS) + ")",
    )
    _add_batch_commands(sub)
    pre = sub.add_parser(
        "precompile",
        help="compile the Numba kernels into their on-disk cache (once after installing)",
        description="Compile every kernel into Numba's on-disk cache, so that the first segmentation "
        "or background run does not wait for the compiler (python -m napari_gmm.precompile).",
    )
    pre.add_argument("--jobs", "-j", type=_positive_int, default=None, help="worker processes (default: all CPUs)")
    return parser


def _axis_or_auto(text: str):
    if text in ("auto", "none", "None"):
        return None if text.lower() == "none" else "auto"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an axis (integer), 'none' or 'auto', got {text!r}") from None


def _add_batch_commands(sub) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--out", metavar="OUT", help="output folder, or one OUT.zarr for a single input")
    common.add_argument(
        "--channel-axis",
        type=_axis_or_auto,
        default="auto",
        metavar="AXIS",
        help="channel axis: an integer, 'none' (grey) or 'auto' (the axis an OME file calls c; default)",
    )
    common.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    common.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run on this dask.distributed scheduler (e.g. tcp://10.0.0.5:8786) instead of local threads",
    )
    common.add_argument(
        "--summary",
        metavar="FILE",
        help="write the JSON summary here (default: OUT/summary.json for a folder, OUT.summary.json beside a .zarr, "
        "./napari-gmm-summary.json without --out)",
    )
    common.add_argument("--no-progress", action="store_true", help="no progress bars")
    seg = sub.add_parser(
        "segment",
        parents=[common],
        help="segment image files (TIFF/OME-TIFF, zarr/OME-Zarr, .npy) into labels written as zarr",
        description="Segment every INPUT (files, globs or folders) with a Gaussian mixture; write each "
        "file's labels to zarr chunk by chunk, with the model as the 'napari_gmm' attribute.",
    )
    seg.add_argument("inputs", nargs="+", metavar="INPUT")
    _add_into_input(seg)
    seg.add_argument(
        "--n-components", "-k", type=_positive_int, default=3, metavar="K", help="number of Gaussians (default 3)"
    )
    seg.add_argument(
        "--pooled",
        action="store_true",
        help="one model for all files (their histograms merged) instead of one per file",
    )
    seg.add_argument(
        "--split-axis",
        type=int,
        default=None,
        metavar="AXIS",
        help="one model per index of this axis within each file (e.g. 0 for time)",
    )
    seg.add_argument("--covariance-type", choices=["spherical", "diag", "full"], default="spherical")
    seg.add_argument("--max-iter", type=_positive_int, default=100)
    seg.add_argument("--tol", type=float, default=1e-6)
    app = sub.add_parser(
        "apply",
        parents=[common],
        help="label image files with a saved model (JSON from MixtureModel.to_dict, or a result .zarr)",
    )
    app.add_argument("model", metavar="MODEL")
    app.add_argument("inputs", nargs="+", metavar="INPUT")
    _add_into_input(app)
    bg = sub.add_parser(
        "background",
        parents=[common],
        help="background modelling of a stack file (per-pixel adaptive mixtures), written as zarr",
        description="Model the background of STACK (T, Y, X[, C]) tile by tile, a tile being a column of "
        "the input's chunks streamed over time (memory: the tiles' models and a few chunks, not the stack), "
        "and write OUT.zarr with the arrays 'foreground' (0/1/2) and 'background'.",
    )
    bg.add_argument("inputs", nargs=1, metavar="STACK")
    bg.add_argument(
        "--preset",
        default="camera video",
        choices=["camera video", "fluorescence time-lapse"],
        help="'camera video' (OpenCV MOG2's behaviour) or 'fluorescence time-lapse' (shot-noise "
        "model, bleaching correction, objects that pause); default camera video",
    )
    bg.add_argument("--time-axis", type=int, default=0, metavar="AXIS")
    bg.add_argument(
        "--background",
        choices=["all", "last", "none"],
        default="all",
        help="write the background of every frame (default), only the last, or none",
    )


def _add_into_input(parser) -> None:
    parser.add_argument(
        "--labels-into-input",
        nargs="?",
        const="napari-gmm",
        default=None,
        metavar="NAME",
        help="OME-Zarr inputs: write the labels into each input as its label image INPUT/labels/NAME "
        "(default NAME napari-gmm; the image itself is not modified), which OME-Zarr viewers show "
        "over the image; then --out is not needed",
    )


def _run_batch(args) -> int:
    from . import batch
    from ._validate import InputError

    client = None
    try:
        inputs = batch.expand_inputs(args.inputs)
        client = batch.connect(args.scheduler)
        bars = not args.no_progress
        if args.command == "segment":
            summary = batch.segment_files(
                inputs,
                args.out,
                args.n_components,
                pooled=args.pooled,
                channel_axis=args.channel_axis,
                split_axis=args.split_axis,
                overwrite=args.overwrite,
                client=client,
                bars=bars,
                covariance_type=args.covariance_type,
                max_iter=args.max_iter,
                tol=args.tol,
                labels_into_input=args.labels_into_input,
            )
        elif args.command == "apply":
            summary = batch.apply_files(
                args.model,
                inputs,
                args.out,
                channel_axis=args.channel_axis,
                overwrite=args.overwrite,
                client=client,
                bars=bars,
                labels_into_input=args.labels_into_input,
            )
        else:
            if len(inputs) != 1:
                raise InputError(f"background models one stack at a time; {args.inputs[0]} matches {len(inputs)}")
            if args.out is None:
                raise InputError("give the output: --out OUT.zarr")
            summary = batch.background_file(
                inputs[0],
                args.out,
                preset=args.preset,
                time_axis=args.time_axis,
                channel_axis=args.channel_axis,
                overwrite=args.overwrite,
                client=client,
                bars=bars,
                background=None if args.background == "none" else args.background,
            )
    except ValueError as exc:  # InputError: bad inputs, paths, scheduler; the message says what to do
        print(f"napari-gmm {args.command}: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if client is not None:
            client.close()
    out = None if args.out is None else Path(args.out)
    if args.summary:
        where = Path(args.summary)
    elif out is None:
        where = Path("napari-gmm-summary.json")
    else:
        where = out.with_name(out.name + ".summary.json") if out.suffix.lower() == ".zarr" else out / "summary.json"
    where.write_text(json.dumps(summary, indent=2))
    for f in summary["files"]:
        if f["status"] != "ok":
            msg = f["error"] if f["error"].startswith(f["input"]) else f"{f['input']}: {f['error']}"
            print(f"napari-gmm {args.command}: {msg}", file=sys.stderr)
    print(
        f"napari-gmm {args.command}: {summary['n_ok']} of {len(summary['files'])} file(s) done in "
        f"{summary['seconds']:.1f} s; summary: {where}",
        file=sys.stderr,
    )
    return 0 if summary["n_failed"] == 0 else 1


def _limit_malloc_arenas(n: int | None = None) -> bool:
    """glibc's ``mallopt(M_ARENA_MAX, n)`` in this process (``n``: :data:`CLI_MALLOC_ARENAS
    <napari_gmm._kernels._config.CLI_MALLOC_ARENAS>`), before any worker thread exists: the batch
    jobs' threads then share ``n`` arenas instead of keeping freed chunk buffers in one each (peak
    memory about 20 % lower, measured). Only where the user did not choose (``MALLOC_ARENA_MAX`` in
    the environment); does nothing where there is no glibc. Returns whether it was applied."""
    if n is None:
        from ._kernels._config import CLI_MALLOC_ARENAS as n
    if "MALLOC_ARENA_MAX" in os.environ or not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    m_arena_max = -8  # glibc's M_ARENA_MAX
    return bool(mallopt(ctypes.c_int(m_arena_max), ctypes.c_int(int(n))))


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m napari_gmm`` and of the ``napari-gmm`` console script."""
    # plots are drawn on matplotlib's Agg canvas explicitly; this also keeps any pyplot import
    # (by a library) away from an interactive backend
    os.environ.setdefault("MPLBACKEND", "Agg")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    if args.command == "demo":
        try:
            run_demo(args)
        except ValueError as exc:  # bad parameters: the core's messages say what to do
            print(f"napari-gmm demo: error: {exc}", file=sys.stderr)
            return 2
        return 0
    if args.command == "precompile":
        from .precompile import main as precompile_main

        return precompile_main([] if args.jobs is None else ["--jobs", str(args.jobs)])
    if args.command in ("segment", "apply", "background"):
        _limit_malloc_arenas()
        return _run_batch(args)
    parser.error(f"unknown command {args.command!r}")  # pragma: no cover
    return 2


if __name__ == "__main__":
    sys.exit(main())
