"""Benchmark: the post-filters of ``subtract_background``: the majority vote's window
(``median_size``) and hole filling (``fill_holes``).

The majority vote trades small objects for clutter: a window of ``n`` erases objects narrower than
about ``n / 2 + 1`` pixels, and removes noise specks, camera-jitter edges and waving leaves of the
same size. Hole filling only adds foreground: background or shadow regions of at most
``fill_holes`` pixels that foreground encloses. This prints both sides in one run, for pairs
``median_size:fill_holes``, with the library's defaults otherwise (the video preset, whose default
pair is 3:1024):

1. **CDnet 2014** (highway, fall, traffic from ``../shared/data/bgs``, as in
   ``bench_background.py``: official metrics, temporal ROI, ROI mask): F, precision and recall of
   ``subtract_background(frames, median_size=n, fill_holes=f)``.
2. **Small objects with exact truth**: grey 8-bit video (300 frames of 120 x 160, a smooth static
   scene, Gaussian noise sd 3), six bright squares of one side (1-10 pixels) moving 1 pixel per
   frame, 70 grey levels above the scene (over 20 noise sd: every method sees them in the raw
   mask); recall and F of the frames after the first 50.
3. **The synthetic scenes of the tests and of** ``bench_background.py``
   (:func:`napari_gmm.datasets.moving_objects`, objects 4-8 % of the frame's side): F at three
   frame sizes.

Run::

    python benchmarks/bench_postfilter.py [--filters 0:0 3:0 3:256 3:1024 5:1024 7:1024] [--no-cdnet]

Prints markdown tables. The CDnet part is skipped (with a message) where the data is absent.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT.parent / "src"))

from bench_background import SEQUENCES, cdnet_scores, data_dir, load_sequence, load_truth  # noqa: E402
from bench_fluorescence import f_measure  # noqa: E402

from napari_gmm.background import subtract_background  # noqa: E402
from napari_gmm.datasets import moving_objects  # noqa: E402


def squares(side, n_frames=300, shape=(120, 160), seed=0):
    """Grey uint8 video of six ``side`` x ``side`` squares moving 1 pixel per frame over a smooth
    static scene with Gaussian noise (sd 3), and its exact foreground."""
    rng = np.random.default_rng(seed)
    h, w = shape
    scene = 100 + 20 * np.sin(np.arange(w) / 9)[None, :] + 10 * np.cos(np.arange(h) / 7)[:, None]
    stack = np.empty((n_frames, h, w), np.uint8)
    truth = np.zeros((n_frames, h, w), bool)
    for t in range(n_frames):
        f = scene + rng.normal(0, 3, (h, w))
        for j in range(6):  # one square per band of rows
            y, x = 10 + 18 * j, (t + 25 * j) % (w - side)
            f[y : y + side, x : x + side] += 70
            truth[t, y : y + side, x : x + side] = True
        stack[t] = np.clip(f, 0, 255)
    return stack, truth


def fg(stack, pair):
    size, fill = pair
    return subtract_background(stack, median_size=size, fill_holes=fill, background=None).foreground == 1


def _pair(text):
    size, _, fill = text.partition(":")
    return int(size), int(fill or 0)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--filters",
        type=_pair,
        nargs="*",
        default=[_pair(p) for p in ("0:0", "3:0", "3:256", "3:1024", "5:1024", "7:1024")],
        help="median_size:fill_holes pairs (0:0: no post-filter)",
    )
    ap.add_argument("--no-cdnet", action="store_true")
    args = ap.parse_args(argv)
    sizes = args.filters
    head = "| " + " | ".join(f"{n}:{f}" for n, f in sizes) + " |"
    rule = "|---|" + "---|" * len(sizes)

    root = data_dir()
    if args.no_cdnet:
        pass
    elif not all((root / s).is_dir() for s in SEQUENCES):
        print(f"bench_postfilter: CDnet sequences not found in {root}; skipping that part\n")
    else:
        print("CDnet 2014, F (precision / recall):\n\n| sequence " + head + "\n" + rule)
        for name in SEQUENCES:
            frames, first, (lo, hi), roi = load_sequence(root / name)
            truth = load_truth(root / name, lo, hi)
            sel = slice(lo - first, hi - first + 1)
            cells = []
            for n in sizes:
                r, p, f = cdnet_scores(fg(frames, n)[sel], truth, roi)
                cells.append(f"{f:.3f} ({p:.2f} / {r:.2f})")
            print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
        print()

    print("Squares moving 1 pixel per frame (exact truth), recall / F:\n\n| square side " + head + "\n" + rule)
    for side in (1, 2, 3, 4, 6, 10):
        stack, truth = squares(side)
        cells = []
        for n in sizes:
            f, _, r = f_measure(fg(stack, n)[50:], truth[50:])
            cells.append(f"{r:.2f} / {f:.2f}")
        print(f"| {side} px | " + " | ".join(cells) + " |", flush=True)
    print()

    print("datasets.moving_objects (exact truth), F:\n\n| scene " + head + "\n" + rule)
    for shape, n_obj, seed in (((100, 64, 96), 3, 3), ((200, 240, 320), 6, 2), ((200, 480, 640), 12, 1)):
        for rgb in (False, True):
            stack, truth = moving_objects(shape, n_objects=n_obj, rgb=rgb, seed=seed)
            cells = [f"{f_measure(fg(stack, n), truth)[0]:.3f}" for n in sizes]
            label = f"{shape[2]}x{shape[1]} {'colour' if rgb else 'grey'}, {shape[0]} fr"
            print(f"| {label} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
