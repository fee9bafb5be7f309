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
        import numpy as np
        from napari_gmm._kernels import hist as k
        # the look-up pair: the cheapest of the pairs to compile (about 1 s of CPU for both
        # instead of 4 for int_range's); every pair is made by the same serial_copy
        a = np.arange(100, dtype=np.uint16)
        for f in (k.lut_offset_serial, k.lut_offset):  # the serial twin first, then its kernel
            f(a, np.zeros(0, np.uint8), 0, np.arange(100, dtype=np.uint8), np.empty(100, np.uint8))
            print(sum(f.stats.cache_hits.values()), sum(f.stats.cache_misses.values()))
    """)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), PYTHONPATH=SRC)

    def run():
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        v = [int(x) for x in out.stdout.split()]
        return (v[0], v[1]), (v[2], v[3])

    # a fresh cache: the serial twin is compiled and written; the parallel kernel is not a hit on
    # the serial code (one shared entry would make it one) but compiled itself
    assert run() == ((0, 1), (0, 1))
    assert run() == ((1, 0), (1, 0))  # the next process: each finds its own entry
