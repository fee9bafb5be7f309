"""`import napari_gmm` and the core API never import napari, Qt, magicgui or a Qt canvas.

Checked in a fresh interpreter (this test process has napari loaded by pytest plugins).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")

FORBIDDEN = (
    "napari",
    "qtpy",
    "magicgui",
    "PyQt5",
    "PyQt6",
    "PySide2",
    "PySide6",
    "superqt",
    "vispy",
    "matplotlib.backends.backend_qt",
    "matplotlib.backends.backend_qtagg",
    "matplotlib.pyplot",
)


def _run(code: str) -> dict:
    env = dict(
        os.environ,
        PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
        NUMBA_NUM_THREADS=os.environ.get("NUMBA_NUM_THREADS", "2"),
    )
    env.pop("MPLBACKEND", None)
    probe = textwrap.dedent(code) + textwrap.dedent(f"""
        import json, sys
        forbidden = {FORBIDDEN!r}
        loaded = sorted(m for m in sys.modules
                        if any(m == f or m.startswith(f + ".") for f in forbidden))
        print("RESULT" + json.dumps({{"loaded": loaded,
                                     "napari_gmm": sys.modules["napari_gmm"].__file__}}))
    """)
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT"))
    return json.loads(line[len("RESULT") :])


def test_import_is_gui_free():
    res = _run("import napari_gmm\n")
    assert res["loaded"] == [], f"import napari_gmm imported {res['loaded']}"
    assert res["napari_gmm"].startswith(SRC)


def test_core_api_calls_are_gui_free():
    """Fitting, segmenting, predicting, the histogram, the datasets: no GUI module loaded."""
    res = _run("""
        import numpy as np
        import napari_gmm as ng
        from napari_gmm.datasets import phantom
        image, truth = phantom((64, 64), seed=0)
        labels, model = ng.segment(image, 3, return_model=True)
        assert labels.shape == image.shape and labels.dtype == np.uint8
        assert float(np.mean(labels == truth)) > 0.9
        model.predict_proba(image)
        model.score(image)
        ng.fit_mixture(image.astype(np.float32), 2)
        ng.histogram(image)
        ng.MixtureModel.from_dict(model.to_dict()).summary()
    """)
    assert res["loaded"] == [], f"the core API imported {res['loaded']}"


def test_public_names():
    import napari_gmm as ng

    for name in ("fit_mixture", "segment", "MixtureModel", "histogram"):
        assert name in ng.__all__, name
        assert callable(getattr(ng, name)), name
