"""Colour step of ``python -m napari_gmm demo``: the seed's figure, original beside K = 32 and K = 64.

Uses the seed project's own image when the shared data folder is beside the project (or the path in
``NAPARI_GMM_SEED_IMAGE``), else scikit-image's astronaut, and says which. Where the seed's own
quantised outputs are there too, their colour error is reported beside ours.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np


def seed_image_path() -> Path | None:
    env = os.environ.get("NAPARI_GMM_SEED_IMAGE")
    candidates = [Path(env)] if env else []
    here = Path(__file__).resolve()
    for root in [Path.cwd(), *here.parents]:
        candidates.append(root.parent / "shared" / "data" / "seed-em-img-seg" / "img.jpg")
        candidates.append(root / "shared" / "data" / "seed-em-img-seg" / "img.jpg")
    for c in candidates:
        if c.is_file():
            return c
    return None


def _rmse(a, b):
    return float(np.sqrt(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


def demo_colour(ctx) -> dict[str, Any]:
    """Quantise a colour image to K = 32 and 64 colours (k-means++ start, 30 iterations, spherical,
    as the seed) and draw the seed's side-by-side figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    import napari_gmm as ng

    path = seed_image_path()
    if path is not None:
        image = np.asarray(Image.open(path).convert("RGB"))
        source = f"seed image {path.name} ({path.parent.name})"
    else:
        from skimage import data

        image = data.astronaut()
        source = "skimage.data.astronaut() (the seed image was not found beside the project)"
    runs = []
    quantised = {}
    for k in (32, 64):
        t = time.perf_counter()
        q, model = ng.quantize(image, k, max_iter=30, tol=0, random_state=0, return_model=True)
        dt = time.perf_counter() - t
        quantised[k] = q
        Image.fromarray(q).save(ctx.path(f"colour_k{k}.png"))
        run = {
            "n_components": k,
            "seconds": dt,
            "n_iter": model.n_iter,
            "mean_log_likelihood_0_1_units": model.lower_bound + 3 * np.log(255.0),
            "rmse_vs_original": _rmse(q, image),
            "file": f"colour_k{k}.png",
        }
        if path is not None:
            seed_out = path.parent / f"output_k{k}.jpg"
            if seed_out.is_file():
                s = np.asarray(Image.open(seed_out).convert("RGB"))
                if s.shape == image.shape:
                    run["seed_rmse_vs_original"] = _rmse(s, image)
        runs.append(run)
    fig, axes = plt.subplots(1, 3, figsize=(13.5, 3.9), dpi=100)
    for ax, (title, im) in zip(axes, [("original", image), ("K = 32", quantised[32]), ("K = 64", quantised[64])]):
        ax.imshow(im)
        ax.set_title(title)
        ax.axis("off")
    fig.suptitle(f"Gaussian-mixture colour quantisation (EM, 30 iterations): {source.split(' (')[0]}")
    fig.tight_layout()
    fig.savefig(ctx.path("colour_quantised.png"))
    plt.close(fig)
    lines = [f"colour: {source}"]
    for r in runs:
        extra = f", seed's RMSE {r['seed_rmse_vs_original']:.2f}" if "seed_rmse_vs_original" in r else ""
        lines.append(
            f"  K={r['n_components']}: {r['seconds'] * 1e3:.0f} ms, colour RMSE vs original "
            f"{r['rmse_vs_original']:.2f}{extra}"
        )
    return {"source": source, "image_shape": list(image.shape), "runs": runs, "text": "\n".join(lines)}
