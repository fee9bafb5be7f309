"""Numba settings: serial twins of parallel kernels keep their own on-disk cache entries."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from numba.core.registry import CPUDispatcher

from napari_gmm._kernels import em, hist, kmeans

SRC = str(Path(__file__).resolve().parents[2] / "src")


def test_every_serial_twin_has_its_own_qualified_name():
    """Numba's cache keys code by qualified name, line and signature, not by options: a serial
    twin compiled from the same Python function as its parallel kernel would load its code."""
    pairs = 0
    for mod in (em, hist, kmeans):
        for name in dir(mod):
            twin = getattr(mod, name + "_serial", None)
            par = getattr(mod, name)
            if isinstance(par, CPUDispatcher) and isinstance(twin, CPUDispatcher):
                pairs += 1
                assert par.targetoptions.get("parallel") and not twin.targetoptions.get("parallel"), name
                assert par.py_func.__qualname__ != twin.py_func.__qualname__, name
                assert par.py_func.__code__ is twin.py_func.__code__, name  # same source
    assert pairs >= 12


def test_parallel_kernel_does_not_load_the_serial_twins_cached_code(tmp_path):
    code = textwrap.dedent("""
        import sys
        import numpy as np
        from napari_gmm._kernels import hist as k
        a = np.arange(100, dtype=np.uint16)
        f = k.int_range_serial if sys.argv[1] == "serial" else k.int_range
        f(a, np.zeros(0, np.uint8), 2)
        print(sum(f.stats.cache_hits.values()), sum(f.stats.cache_misses.values()))
    """)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), PYTHONPATH=SRC)

    def run(which):
        out = subprocess.run([sys.executable, "-c", code, which], env=env, capture_output=True, text=True, check=True)
        return tuple(int(v) for v in out.stdout.split())

    assert run("serial") == (0, 1)  # compiled and written to the cache
    assert run("parallel") == (0, 1)  # not a hit on the serial code: compiled itself
    assert run("serial") == (1, 0)  # each finds its own entry
    assert run("parallel") == (1, 0)
