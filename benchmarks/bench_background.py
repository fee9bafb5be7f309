"""Benchmark: ``napari_gmm.subtract_background`` against OpenCV's background subtractors.

CDnet 2014 sequences (highway, fall, traffic) from ``../shared/data/bgs`` (relative to the project
root; override with ``NAPARI_GMM_DATA=/path/to/data``), scored with the official metrics:
only frames inside ``temporalROI.txt``, only pixels inside ``ROI.bmp`` (cropped to the frame: the
traffic ROI is 352 wide for 320-wide frames); ground truth 255 is foreground, 0 and 50 (hard
shadow) background, 85 and 170 are not evaluated; TP, FP, FN are summed over all evaluated frames,
then recall = TP / (TP + FN), precision = TP / (TP + FP), F = 2 P R / (P + R). Shadows (127 in
OpenCV's masks, 2 in ours) count as background for every method.

Every method gets the same preloaded BGR uint8 frames, in the same run; OpenCV runs with
``cv2.setNumThreads(2)``, ours with the library's own defaults: no environment variable and no
option is set here (Numba's threads and threading layer are what a user gets; the table's title
says which). Our call is ``subtract_background(frames)``: the offline burn-in pass, the majority
post-filter and the background of every frame (``background="all"``) are included; a second
timing with ``background=None`` gives the cost of that output. OpenCV's MOG2, KNN and the
contrib MOG and GSOC use their default parameters. Frames per second = frames of the sequence /
wall time of the whole run; ours and MOG2 run ``--repeat`` (3) times each, alternating, and
the fastest run counts (the machine is shared, single timings vary by up to 2x).

Also: F and fps on synthetic 640x480 grey and colour stacks of 500 frames
(:func:`napari_gmm.datasets.moving_objects`, exact ground truth).

Run::

    python benchmarks/bench_background.py                                # everything
    python benchmarks/bench_background.py --quick                        # MOG2 only, 200 synthetic frames
    python benchmarks/bench_background.py --param var_threshold=20 --param burn_in=100
    python benchmarks/bench_background.py --variant median_size=5      # the extra column

The extra column is a second run of ours with other (sequence-independent) parameters, by
default ``median_size=7 burn_in=all``: the stronger post-filter and the full offline pass.

Prints one markdown table. Skips cleanly (exit 0, with a message) where the data is absent.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from napari_gmm.background import subtract_background  # noqa: E402
from napari_gmm.datasets import moving_objects  # noqa: E402

SEQUENCES = ("highway", "fall", "traffic")


def data_dir() -> Path:
    env = os.environ.get("NAPARI_GMM_DATA")
    if env:
        return Path(env) / "bgs"
    # beside the main checkout (ROOT.parent) or beside a worktree's parent folder
    for base in (ROOT.parent, ROOT.parent.parent):
        if (base / "shared" / "data" / "bgs").is_dir():
            return base / "shared" / "data" / "bgs"
    return ROOT.parent / "shared" / "data" / "bgs"


def load_sequence(path: Path):
    """Frames (T, H, W, 3) BGR uint8 of the whole sequence, its first frame number, the
    evaluated range and the ROI (H, W) bool."""
    import cv2

    files = sorted((path / "input").glob("in*.jpg"))
    first = int(files[0].stem[2:])
    frames = np.stack([cv2.imread(str(f), cv2.IMREAD_COLOR) for f in files])
    lo, hi = (int(v) for v in (path / "temporalROI.txt").read_text().split()[:2])
    roi = cv2.imread(str(path / "ROI.bmp"), cv2.IMREAD_GRAYSCALE)
    h, w = frames.shape[1:3]
    roi = roi[:h, :w] > 0
    return frames, first, (lo, hi), roi


def load_truth(path: Path, lo: int, hi: int):
    import cv2

    return np.stack(
        [cv2.imread(str(path / "groundtruth" / f"gt{n:06d}.png"), cv2.IMREAD_GRAYSCALE) for n in range(lo, hi + 1)]
    )


def cdnet_scores(pred_fg: np.ndarray, truth: np.ndarray, roi: np.ndarray):
    """(recall, precision, F) summed over frames; pred_fg (T, H, W) bool for evaluated frames."""
    valid = roi[None] & (truth != 85) & (truth != 170)
    gt = truth == 255
    tp = np.count_nonzero(pred_fg & gt & valid)
    fp = np.count_nonzero(pred_fg & ~gt & valid)
    fn = np.count_nonzero(~pred_fg & gt & valid)
    r = tp / max(tp + fn, 1)
    p = tp / max(tp + fp, 1)
    f = 2 * p * r / max(p + r, 1e-12)
    return r, p, f


def opencv_subtractors(quick: bool):
    import cv2

    subs = {"MOG2": cv2.createBackgroundSubtractorMOG2}
    if quick:
        return subs
    subs["KNN"] = cv2.createBackgroundSubtractorKNN
    if hasattr(cv2, "bgsegm"):
        subs["MOG"] = cv2.bgsegm.createBackgroundSubtractorMOG
        subs["GSOC"] = cv2.bgsegm.createBackgroundSubtractorGSOC
    return subs


def run_opencv(make, frames):
    sub = make()
    masks = np.empty(frames.shape[:3], np.uint8)
    t0 = time.perf_counter()
    for i, f in enumerate(frames):
        masks[i] = sub.apply(f)
    dt = time.perf_counter() - t0
    return masks == 255, dt


def run_ours(frames, params):
    t0 = time.perf_counter()
    res = subtract_background(frames, **params)
    dt = time.perf_counter() - t0
    return res.foreground == 1, dt


def _numba_layer():
    import numba

    try:
        return numba.threading_layer()
    except ValueError:
        return os.environ.get("NUMBA_THREADING_LAYER", "?")


def timed_pair(frames, params, make_mog2, repeat):
    """Ours (defaults, and with background=None) and MOG2 ``repeat`` times each, alternating;
    masks and the fastest times (ours, MOG2, ours without the background output)."""
    best, best2, best3 = np.inf, np.inf, np.inf
    fg = fg2 = None
    no_bg = dict(params, background=None)
    for _ in range(max(1, repeat)):
        fg, dt = run_ours(frames, params)
        fg2, dt2 = run_opencv(make_mog2, frames)
        _, dt3 = run_ours(frames, no_bg)
        best, best2, best3 = min(best, dt), min(best2, dt2), min(best3, dt3)
    return fg, best, fg2, best2, best3


def parse_params(items):
    out = {}
    for item in items or ():
        k, v = item.split("=", 1)
        for conv in (int, float):
            try:
                v = conv(v)
                break
            except ValueError:
                pass
        else:
            v = {"None": None, "True": True, "False": False}.get(v, v)
        out[k] = v
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="MOG2 only; 200 synthetic frames")
    ap.add_argument("--sequences", nargs="*", default=list(SEQUENCES))
    ap.add_argument(
        "--repeat", type=int, default=3, help="timed runs of ours and MOG2, alternating; fps from the fastest"
    )
    ap.add_argument("--no-synthetic", action="store_true")
    ap.add_argument("--param", action="append", help="our parameter, e.g. var_threshold=20")
    ap.add_argument(
        "--variant",
        action="append",
        help="parameters of a second run of ours shown as an extra column "
        "(default: median_size=7 burn_in=all; 'none' for no extra run)",
    )
    args = ap.parse_args(argv)

    try:
        import cv2
    except ImportError:
        print("bench_background: OpenCV (opencv-contrib-python-headless, the 'bench' extra) is not installed; skipping")
        return 0
    cv2.setNumThreads(2)
    params = parse_params(args.param)
    variant_items = args.variant or ["median_size=7", "burn_in=all"]
    variant = None if variant_items == ["none"] else dict(params, **parse_params(variant_items))
    vname = " ".join(variant_items)
    subs = opencv_subtractors(args.quick)
    names = list(subs)
    rows = []

    root = data_dir()
    if not root.is_dir():
        print(
            f"bench_background: CDnet data not found at {root}; skipping the CDnet sequences "
            "(set NAPARI_GMM_DATA to the folder holding bgs/)"
        )
        seqs = []
    else:
        seqs = [s for s in args.sequences if (root / s).is_dir()]
    # warm up the kernels (compilation is not timed)
    subtract_background(np.zeros((3, 16, 16, 3), np.uint8), **params)
    subtract_background(np.zeros((3, 16, 16), np.uint8), **params)

    for name in seqs:
        frames, first, (lo, hi), roi = load_sequence(root / name)
        truth = load_truth(root / name, lo, hi)
        sel = slice(lo - first, hi - first + 1)
        row = dict(name=f"{name} ({frames.shape[2]}x{frames.shape[1]}, {len(frames)} fr)")
        fg, dt, fg2, dt2, dt3 = timed_pair(frames, params, subs["MOG2"], args.repeat)
        row["ours"] = cdnet_scores(fg[sel], truth, roi)
        row["ours_fps"] = len(frames) / dt
        row["bg_cost"] = dt / dt3 - 1
        row["MOG2"] = cdnet_scores(fg2[sel], truth, roi)
        row["MOG2_fps"] = len(frames) / dt2
        if variant is not None:
            fg, _ = run_ours(frames, variant)
            row["variant"] = cdnet_scores(fg[sel], truth, roi)
        for sub_name in names[1:]:
            fg, dt = run_opencv(subs[sub_name], frames)
            row[sub_name] = cdnet_scores(fg[sel], truth, roi)
            row[sub_name + "_fps"] = len(frames) / dt
        rows.append(row)
        print(f"  done {name}", file=sys.stderr, flush=True)
        del frames, truth

    if not args.no_synthetic:
        n = 200 if args.quick else 500
        for rgb in (False, True):
            stack, truth = moving_objects((n, 480, 640), n_objects=12, rgb=rgb, seed=1)
            frames = stack
            if rgb:
                frames = np.ascontiguousarray(stack[..., ::-1])
            row = dict(name=f"synthetic {'colour' if rgb else 'grey'} (640x480, {n} fr)")
            all_roi = np.ones(truth.shape[1:], bool)
            gt = np.where(truth, 255, 0).astype(np.uint8)
            fg, dt, fg2, dt2, dt3 = timed_pair(frames, params, subs["MOG2"], args.repeat)
            row["ours"] = cdnet_scores(fg, gt, all_roi)
            row["ours_fps"] = n / dt
            row["bg_cost"] = dt / dt3 - 1
            row["MOG2"] = cdnet_scores(fg2, gt, all_roi)
            row["MOG2_fps"] = n / dt2
            if variant is not None:
                fg, _ = run_ours(frames, variant)
                row["variant"] = cdnet_scores(fg, gt, all_roi)
            for sub_name in names[1:]:
                if sub_name == "GSOC":
                    continue  # minutes per run at this size; not the reference here
                fg, dt = run_opencv(subs[sub_name], frames)
                row[sub_name] = cdnet_scores(fg, gt, all_roi)
                row[sub_name + "_fps"] = n / dt
            rows.append(row)
            print(f"  done synthetic rgb={rgb}", file=sys.stderr, flush=True)
            del stack, truth, frames

    print()
    import numba

    print(
        f"napari-gmm subtract_background (defaults{', ' + str(params) if params else ''}) vs "
        f"OpenCV {cv2.__version__}; F-measure (CDnet metrics) and frames per second; Numba "
        f"{numba.get_num_threads()} threads, threading layer {_numba_layer()} (library "
        f"defaults, no environment variable set), cv2 threads 2; 'bg cost': time with the "
        f"background of every frame over time without it, minus 1; load average at the end "
        f"{', '.join(f'{v:.1f}' for v in os.getloadavg())} on {os.cpu_count()} cores"
    )
    print()
    extra = [f"ours F ({vname})"] if variant is not None else []
    head = (
        ["sequence", "ours F (P / R)"]
        + extra
        + [f"{n} F" for n in names]
        + ["ours fps", "MOG2 fps", "F ours - MOG2", "fps ours / MOG2", "bg cost"]
    )
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in rows:
        r, p, f = row["ours"]
        cells = [row["name"], f"{f:.3f} ({p:.2f} / {r:.2f})"]
        if variant is not None:
            cells.append(f"{row['variant'][2]:.3f}")
        cells += [f"{row[n][2]:.3f}" if n in row else "-" for n in names]
        cells += [
            f"{row['ours_fps']:.0f}",
            f"{row['MOG2_fps']:.0f}",
            f"{f - row['MOG2'][2]:+.3f}",
            f"{row['ours_fps'] / row['MOG2_fps']:.2f}",
            f"{100 * row['bg_cost']:+.0f} %",
        ]
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
