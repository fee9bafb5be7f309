"""Grey segmentation benchmark: napari_gmm.segment against its peers, measured in the same run.

Prints one markdown table:

* cameraman (512 x 512 uint8), K = 2 and 3: ours vs ``skimage.filters.threshold_multiotsu`` (thresholds +
  ``np.digitize``, i.e. labels) and ``sklearn.mixture.GaussianMixture`` fitted on every pixel (fit +
  predict, default k-means start, tol 1e-6 like ours);
* a 4096 x 4096 uint16 image (three smooth classes + noise), K = 3: the same peers, and our time against the
  memory-bandwidth floor, (bytes read + bytes written) / copy bandwidth measured here; and the peak memory
  above input + labels (a fresh subprocess, Linux VmHWM reset just before the call).

Times are the minimum over repeats (the machine is shared; the minimum is the least disturbed run).
Goals (issue 2): faster than multiotsu on the cameraman, >= 1000x faster than sklearn, within 5x of the
bandwidth floor on the big image, peak memory input + labels + a few MB.

    python benchmarks/bench_segment.py            # everything (sklearn on 16.7 Mpixel takes a minute)
    python benchmarks/bench_segment.py --quick    # skip sklearn on the big image
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import best_time as _best  # noqa: E402
from _common import peak_growth


def best_time(f, repeat=7):
    return _best(f, repeat)[0]


def big_image(shape=(4096, 4096), seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    field = np.sin(x / 300.0) + np.cos(y / 230.0) + 0.5 * np.sin((x + y) / 170.0)
    cls = np.digitize(field, [-0.6, 0.7]).astype(np.uint8)
    means = np.array([8000, 20000, 41000], np.float32)
    sds = np.array([1500, 2500, 3000], np.float32)
    img = means[cls] + sds[cls] * rng.standard_normal(shape, dtype=np.float32)
    return np.clip(img, 0, 65535).astype(np.uint16), cls + 1


def copy_bandwidth(nbytes=256 * 2**20):
    a = np.ones(nbytes // 8)
    b = np.empty_like(a)
    t = best_time(lambda: np.copyto(b, a), repeat=5)
    return 2 * nbytes / t  # bytes read + written per second


def memory_child(path):
    """Run in a fresh subprocess: peak RSS growth of segment() on the big image above input + labels.

    The image is loaded from ``path`` (exactly its own bytes, no temporaries), kernels are warmed up on
    a small crop, then ru_maxrss is read before and after one segment() call.
    """
    import napari_gmm as ng

    img = np.load(path)
    ng.segment(img[:64, :64].copy(), 3)  # compile / load kernels first
    growth, out = peak_growth(lambda: ng.segment(img, 3))
    before, peak = 0, growth
    print(json.dumps({"input": img.nbytes, "labels": out.nbytes, "before": before, "peak": peak}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="skip sklearn on the 4096x4096 image")
    ap.add_argument("--memory-child", metavar="NPY", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        memory_child(args.memory_child)
        return

    from skimage import data
    from skimage.filters import threshold_multiotsu
    from sklearn.mixture import GaussianMixture

    import napari_gmm as ng

    def multiotsu_labels(img, k):
        return np.digitize(img, threshold_multiotsu(img, classes=k)).astype(np.uint8) + 1

    def sklearn_labels(img, k):
        x = img.reshape(-1, 1).astype(np.float64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            g = GaussianMixture(k, tol=1e-6, random_state=0).fit(x)
        return g.predict(x)

    rows = []
    cam = data.camera()
    ng.segment(cam, 2)
    ng.segment(cam, 3)
    for k in (2, 3):
        ours = best_time(lambda: ng.segment(cam, k), repeat=21)
        mo = best_time(lambda: multiotsu_labels(cam, k), repeat=21)
        sk = best_time(lambda: sklearn_labels(cam, k), repeat=3)
        rows.append((f"cameraman 512x512 uint8, K={k}", ours, mo, sk, None))

    img, _ = big_image()
    ng.segment(img[:64, :64], 3)
    ours = best_time(lambda: ng.segment(img, 3), repeat=5)
    mo = best_time(lambda: multiotsu_labels(img, 3), repeat=1)  # about a minute on 16-bit data
    sk = None if args.quick else best_time(lambda: sklearn_labels(img, 3), repeat=1)
    bw = copy_bandwidth()
    floor = (img.nbytes + img.size) / bw  # read the input once, write uint8 labels once
    rows.append(("4096x4096 uint16, K=3", ours, mo, sk, floor))

    print("| case | ours | multiotsu | speed-up vs multiotsu | sklearn GMM (all pixels) | speed-up vs sklearn |")
    print("|---|---|---|---|---|---|")
    for name, o, m, s, _ in rows:
        sks = "skipped (--quick)" if s is None else f"{s * 1e3:.0f} ms"
        skr = "" if s is None else f"{s / o:,.0f}x"
        print(f"| {name} | {o * 1e3:.2f} ms | {m * 1e3:.2f} ms | {m / o:.1f}x | {sks} | {skr} |")
    print()
    name, o, _, _, floor = rows[-1]
    print(
        f"Memory-bandwidth floor on the 4096x4096 image: copy bandwidth {bw / 1e9:.1f} GB/s, "
        f"floor {floor * 1e3:.1f} ms (read 32 MiB + write 16 MiB), ours {o * 1e3:.1f} ms = "
        f"{o / floor:.1f}x the floor (goal <= 5x)"
    )
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "big.npy")
        np.save(path, img)
        out = subprocess.run(
            [sys.executable, __file__, "--memory-child", path], capture_output=True, text=True, env=dict(os.environ)
        )
    if out.returncode == 0:
        mem = json.loads(out.stdout.strip().splitlines()[-1])
        extra = mem["peak"] - mem["before"]
        print(
            "Peak memory of segment() on it (fresh process, VmHWM after a reset): "
            f"input {mem['input'] / 2**20:.0f} MiB "
            f"(resident before), growth {extra / 2**20:.1f} MiB, of which labels {mem['labels'] / 2**20:.0f} MiB: "
            f"{(extra - mem['labels']) / 2**20:.1f} MiB above input + labels"
        )
    else:
        print("memory measurement failed:", out.stderr[-500:])
    print(f"\nThreads: numba {__import__('numba').get_num_threads()}, cores {os.cpu_count()}")


if __name__ == "__main__":
    main()
