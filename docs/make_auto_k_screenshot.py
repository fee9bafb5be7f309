"""Screenshot of the segmentation widget's automatic-K controls (issue 12): the issue's clipped
3-class phantom (512 x 512 uint8, noise sd 35, clipped at 0 and 255), K chosen by BIC up to 8,
clipped pixels censored ('auto'), intensity-interval labels. Writes ``docs/segment_auto_k.png``
(32-colour palette)::

    xvfb-run -a -s "-screen 0 1600x1000x24" env QT_QPA_PLATFORM=xcb python docs/make_auto_k_screenshot.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
import make_screenshots as ms  # noqa: E402

from napari_gmm.datasets import phantom  # noqa: E402


def main(out=Path(__file__).parent / "segment_auto_k.png"):
    img, _ = phantom((512, 512), n_classes=3, noise=35 / 63.75, dtype=np.uint8, seed=0)
    viewer = ms._viewer("napari-gmm: automatic K with clipped pixels")
    viewer.add_image(img, name="clipped phantom")
    w = ms._dock(viewer)
    w.remember_settings = False
    w.smoothing.value = "off"
    w.auto_k.value = True
    w.n_components.value = 8
    w.censoring.value = "auto"
    w.labels.value = "intervals"
    w.run()
    ms._wait(w)
    viewer.layers["clipped phantom GMM labels"].opacity = 0.5
    ms._save(viewer, out)
    im = Image.open(out).convert("RGB")
    im.quantize(colors=32, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(out, optimize=True)
    viewer.close()


if __name__ == "__main__":
    main()
