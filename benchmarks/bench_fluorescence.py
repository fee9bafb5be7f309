"""Benchmark: background modelling of fluorescence time-lapses against the anchors users trust.

Simulated uint16 stacks with exact truth (:func:`napari_gmm.datasets.fluorescence_timelapse`:
camera offset and gain, Poisson shot noise plus read noise, static structures, 20-60 %
bleaching, fast, slow and pausing particles, a migrating cell; variants ``standard``, ``dim``,
``crowded``), in the same run:

* ours, ``subtract_background(stack, preset="fluorescence time-lapse")`` (noise model and
  bleaching estimated from the stack), and ours with the default "camera video" preset;
* OpenCV's MOG2 (default parameters) on the stack rescaled to 8 bit (0.1 and 99.9 percentiles of
  the whole stack to 0 and 255), as a video tool would see it;
* the temporal median: per-pixel median over the whole stack, foreground where the frame exceeds
  it by 3 robust sd of all residuals (one-sided: the objects are bright);
* the noise-aware temporal median: the stack first corrected for bleaching by Fiji's "simple
  ratio" (frame means above the camera offset), foreground where the frame exceeds the median by
  3 sd of the TRUE camera noise model at the median's level (the anchor gets the truth we
  estimate).

F-measure over all pixels of the frames after a 10-frame warm-up (TP, FP, FN summed); frames per
second = frames / wall time (ours: the whole call, estimation included; MOG2: its loop over the
preloaded 8-bit frames). No environment variable or option a user would not get is set.

    python benchmarks/bench_fluorescence.py                      # three variants, 200 x 160 x 160
    python benchmarks/bench_fluorescence.py --shape 300 256 256 --seeds 0 1
    python benchmarks/bench_fluorescence.py --figure docs/background_fluorescence.png

Prints one markdown table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from napari_gmm import subtract_background  # noqa: E402
from napari_gmm.datasets import FLUORESCENCE_VARIANTS, fluorescence_timelapse  # noqa: E402

WARM_UP = 10
K_SD = 3.0


def f_measure(pred, truth):
    tp = np.count_nonzero(pred & truth)
    fp = np.count_nonzero(pred & ~truth)
    fn = np.count_nonzero(~pred & truth)
    p = tp / max(tp + fp, 1)
    r = tp / max(tp + fn, 1)
    return 2 * p * r / max(p + r, 1e-12), p, r


def to_8bit(stack):
    lo, hi = np.percentile(stack[:: max(1, len(stack) // 50)], [0.1, 99.9])
    return np.clip((stack.astype(np.float32) - lo) * (255.0 / max(hi - lo, 1e-9)), 0, 255).astype(np.uint8)


def run_mog2(stack8):
    import cv2

    sub = cv2.createBackgroundSubtractorMOG2()
    masks = np.empty(stack8.shape, bool)
    t0 = time.perf_counter()
    for i, f in enumerate(stack8):
        masks[i] = sub.apply(f) == 255
    return masks, time.perf_counter() - t0


def temporal_median(stack):
    s = stack.astype(np.float32)
    med = np.median(s, axis=0)
    res = s - med
    sd = 1.4826 * float(np.median(np.abs(res[:: max(1, len(s) // 20)])))
    return res > K_SD * sd


def noise_aware_median(stack, info):
    off, gain, read = info["offset"], info["gain"], info["read_noise"]
    s = stack.astype(np.float32)
    level = (s - off).reshape(len(s), -1).mean(axis=1)
    ratio = level[0] / level  # Fiji's simple ratio (offset removed)
    corr = off + (s - off) * ratio[:, None, None]
    med = np.median(corr, axis=0)
    f = (1.0 / ratio)[:, None, None]  # the frame's intensity factor
    sd = np.sqrt(gain * f * np.maximum(med - off, 0.0) + read * read) / f
    return (corr - med) > K_SD * sd


def figure(path, stack, truth, ours, mog2, t):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(12, 3.4), constrained_layout=True)
    lo, hi = np.percentile(stack[t], [0.5, 99.8])
    panels = [
        (stack[t], f"frame {t} (uint16)", dict(cmap="gray", vmin=lo, vmax=hi)),
        (truth[t], "truth", dict(cmap="magma")),
        (ours[t], 'ours ("fluorescence time-lapse")', dict(cmap="magma")),
        (mog2[t], "OpenCV MOG2 (8-bit rescaled)", dict(cmap="magma")),
    ]
    for ax, (img, title, kw) in zip(axes, panels):
        ax.imshow(img, interpolation="nearest", **kw)
        ax.set_title(title, fontsize=10)
        ax.set_axis_off()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", nargs=3, type=int, default=[200, 160, 160])
    ap.add_argument("--variants", nargs="*", default=list(FLUORESCENCE_VARIANTS))
    ap.add_argument("--seeds", nargs="*", type=int, default=[0])
    ap.add_argument("--figure", help="save frame / truth / ours / MOG2 of the first stack here")
    args = ap.parse_args(argv)
    try:
        import cv2
    except ImportError:
        print("bench_fluorescence: OpenCV (the 'bench' extra) is not installed; skipping")
        return 0
    cv2.setNumThreads(2)
    # warm up the kernels (compilation is not timed)
    warm, _, _ = fluorescence_timelapse((60, 64, 64), seed=99)
    subtract_background(warm, preset="fluorescence time-lapse")
    subtract_background(warm)

    rows = []
    for seed in args.seeds:
        for variant in args.variants:
            stack, truth, info = fluorescence_timelapse(tuple(args.shape), variant=variant, seed=seed)
            ev = slice(WARM_UP, None)
            t0 = time.perf_counter()
            res = subtract_background(stack, preset="fluorescence time-lapse")
            dt = time.perf_counter() - t0
            ours = res.foreground == 1
            video = subtract_background(stack).foreground == 1
            stack8 = to_8bit(stack)
            mog2, dt2 = run_mog2(stack8)
            med = temporal_median(stack)
            nam = noise_aware_median(stack, info)
            row = dict(
                name=f"{variant} (seed {seed}, bleach {100 * (1 - info['factors'][-1]):.0f} %, "
                f"max dwell {100 * info['max_dwell']:.0f} %)",
                ours=f_measure(ours[ev], truth[ev]),
                video=f_measure(video[ev], truth[ev]),
                mog2=f_measure(mog2[ev], truth[ev]),
                med=f_measure(med[ev], truth[ev]),
                nam=f_measure(nam[ev], truth[ev]),
                fps=len(stack) / dt,
                fps2=len(stack) / dt2,
                gain=(res.noise.gain, info["gain"]),
                offset=(res.noise.offset, info["offset"]),
                bleach=float(np.abs(res.frame_factors - info["factors"]).max()),
            )
            rows.append(row)
            print(f"  done {variant} seed {seed}", file=sys.stderr, flush=True)
            if args.figure and len(rows) == 1:
                figure(args.figure, stack, truth, ours, mog2, int(0.55 * len(stack)))

    import numba

    t, h, w = args.shape
    print()
    print(
        f"Fluorescence time-lapses ({t} frames of {h}x{w} uint16, simulated with exact truth): "
        f"F-measure (P / R) after a {WARM_UP}-frame warm-up; Numba {numba.get_num_threads()} "
        f"threads ({numba.threading_layer()}), cv2 threads 2, library defaults"
    )
    print()
    head = [
        "stack",
        "ours F (P / R), fluorescence preset",
        "ours, video preset",
        "MOG2 8-bit",
        "temporal median",
        "noise-aware median",
        "ours fps",
        "MOG2 fps",
        "gain est / true",
        "offset est / true",
        "bleach factor max err",
    ]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        f, p, rc = r["ours"]
        cells = [
            r["name"],
            f"{f:.3f} ({p:.2f} / {rc:.2f})",
            f"{r['video'][0]:.3f}",
            f"{r['mog2'][0]:.3f}",
            f"{r['med'][0]:.3f}",
            f"{r['nam'][0]:.3f}",
            f"{r['fps']:.0f}",
            f"{r['fps2']:.0f}",
            f"{r['gain'][0]:.2f} / {r['gain'][1]:.2f}",
            f"{r['offset'][0]:.0f} / {r['offset'][1]:.0f}",
            f"{r['bleach']:.3f}",
        ]
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
