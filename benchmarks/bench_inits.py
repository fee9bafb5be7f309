"""Which start should ``init="auto"`` use for colour data? Every start on several colour images.

For each image (scikit-image's astronaut, coffee, chelsea, rocket, immunohistochemistry and hubble
deep field, plus the seed's image from ../shared/data where present) and K in (8, 32): the mean
log-likelihood per pixel reached by each start at the library's defaults (tol, max_iter), averaged
over 3 seeds for the random starts, and the mean rank of each start over all images (1 = best).
``init="auto"`` uses the start with the best mean rank for multichannel data, and the seed's
``"ranges"`` (the reference method) for grey data.

    python benchmarks/bench_inits.py
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

import napari_gmm as ng

SEED_IMAGE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "seed-em-img-seg" / "img.jpg"
STARTS = ("ranges", "quantiles", "kmeans++", "random", "auto")


def images():
    from skimage import data, io

    out = {
        n: getattr(data, n)()[..., :3]
        for n in ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field")
    }
    if SEED_IMAGE.exists():
        out["seed"] = io.imread(SEED_IMAGE)[..., :3]
    return out


def main():
    warnings.simplefilter("ignore", ng.ConvergenceWarning)
    ranks = {s: [] for s in STARTS}
    print("| K | image | " + " | ".join(STARTS) + " |")
    print("|---|---|" + "---|" * len(STARTS))
    for K in (8, 32):
        for name, im in images().items():
            lls = []
            for init in STARTS:
                seeds = (0, 1, 2) if init in ("kmeans++", "random") else (0,)
                lls.append(
                    np.mean(
                        [ng.fit_mixture(im, K, channel_axis=-1, init=init, random_state=s).lower_bound for s in seeds]
                    )
                )
            order = np.argsort(-np.array(lls))
            for r, i in enumerate(order):
                ranks[STARTS[i]].append(r + 1)
            print(f"| {K} | {name} | " + " | ".join(f"{v:.4f}" for v in lls) + " |", flush=True)
    print("\nmean rank (1 = highest log-likelihood): " + ", ".join(f"{s} {np.mean(r):.2f}" for s, r in ranks.items()))
    best = min(ranks, key=lambda s: np.mean(ranks[s]))
    print(
        f"best start: {best}; the library init=auto runs {ng.mixture.AUTO_COLOUR_INITS} for colour and keeps the better"
    )


if __name__ == "__main__":
    main()
