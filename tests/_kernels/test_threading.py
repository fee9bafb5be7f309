"""The threading policy: chosen through numba.config, nothing written into os.environ."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[2] / "src")

CODE = textwrap.dedent("""
    import json, os
    before = dict(os.environ)
    import napari_gmm, numba, numpy as np
    from napari_gmm._kernels import _config, hist
    hist.int_range(np.arange(100, dtype=np.uint16), np.zeros(0, np.uint8), 2)  # launches the threads
    print(json.dumps({"same_env": dict(os.environ) == before,
                      "priority": list(numba.config.THREADING_LAYER_PRIORITY),
                      "preferred": list(_config.THREADING_LAYER_PRIORITY),
                      "layer": numba.threading_layer()}))
""")


def _run(extra_env):
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("NUMBA_THREADING_LAYER", "NUMBA_THREADING_LAYER_PRIORITY", "OMP_WAIT_POLICY", "LD_LIBRARY_PATH")
    }
    env.update(extra_env, PYTHONPATH=SRC)
    out = subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True, text=True, check=True)
    import json

    return json.loads(out.stdout.strip().splitlines()[-1])


def _tbb_wheel_installed():
    from importlib import metadata

    try:
        metadata.distribution("tbb")
    except metadata.PackageNotFoundError:
        return False
    return sys.platform.startswith("linux")


def test_import_writes_nothing_into_the_environment_and_sets_the_preference():
    got = _run({})
    assert got["same_env"]
    assert got["priority"] == got["preferred"]
    if _tbb_wheel_installed():
        # the wheel's libtbb is not on the loader's path in a venv (numba issue 6108): without
        # the library loading it, a clean install got OpenMP
        assert got["layer"] == "tbb"


def test_the_users_choice_wins():
    got = _run({"NUMBA_THREADING_LAYER_PRIORITY": "workqueue omp tbb"})
    assert got["same_env"] and got["priority"] == ["workqueue", "omp", "tbb"]
