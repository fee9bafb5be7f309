"""Numba settings shared by every kernel (one place, as stumpy's config module).

``fastmath`` allows re-association and contraction (vectorised reductions) but keeps
IEEE NaN/inf semantics, so ``np.isnan`` and ``np.isfinite`` inside kernels stay reliable.
``cache=True`` writes compiled kernels next to the sources (or to ``NUMBA_CACHE_DIR``) so that
the second import of the package does not compile again.
"""

import os
import types

import numba
from numba.np.ufunc import parallel as _numba_parallel

#: Numba threading layers in the order the library prefers them, applied through
#: ``numba.config.THREADING_LAYER_PRIORITY`` (see :func:`choose_threading_layer`): TBB (a
#: dependency of the package where wheels exist), then OpenMP, then workqueue. TBB is thread-safe
#: (dask's threaded scheduler and the napari workers may launch kernels from several threads at
#: once; the workqueue layer aborts the process then) and its idle workers sleep instead of
#: spinning: on the loaded 2-core machine it ran segmentation as fast as workqueue and about 1.7x
#: faster than OpenMP with its default (spinning) wait policy, and the background benchmark
#: 1.1-1.4x faster than OpenMP (numbers in the README). OpenMP's passive wait would need
#: OMP_WAIT_POLICY in the environment before it loads: nothing is written into ``os.environ``.
THREADING_LAYER_PRIORITY = ("tbb", "omp", "workqueue")


def choose_threading_layer() -> bool:
    """Apply :data:`THREADING_LAYER_PRIORITY` unless the user or another library chose.

    Leaves Numba alone when ``NUMBA_THREADING_LAYER`` or ``NUMBA_THREADING_LAYER_PRIORITY`` is
    set, when ``numba.config.THREADING_LAYER`` is not ``"default"``, or when a parallel kernel
    already ran (the layer is fixed then). Reads the environment, never writes it. Returns
    whether the preference was applied.
    """
    if _numba_parallel._is_initialized:
        return False
    if "NUMBA_THREADING_LAYER" in os.environ or "NUMBA_THREADING_LAYER_PRIORITY" in os.environ:
        return False
    if numba.config.THREADING_LAYER != "default":
        return False
    numba.config.THREADING_LAYER_PRIORITY = list(THREADING_LAYER_PRIORITY)
    return True


choose_threading_layer()

FASTMATH = {"nsz", "arcp", "contract", "reassoc"}

#: keyword arguments for serial kernels
JIT = dict(nogil=True, cache=True, fastmath=FASTMATH)

#: keyword arguments for kernels parallel over their outer ``prange`` loop
PJIT = dict(JIT, parallel=True)

#: for code whose rounding is arranged by hand (the E-step's exp(): Cody-Waite range reduction):
#: re-association would undo it (measured: 1.2e-15 relative error instead of 4.4e-16)
JIT_NO_REASSOC = dict(JIT, fastmath=FASTMATH - {"reassoc"})


def serial_copy(f):
    """The Python function ``f`` under another qualified name (``f.__qualname__ + "_serial"``), to
    compile a serial twin of a parallel kernel from.

    Numba's on-disk cache keys compiled code by the function's qualified name, first line and
    signature, not by its options: ``njit(parallel=True)(f)`` and ``njit(f)`` would share one cache
    entry, and the next process would load, for both, whichever was compiled first (measured:
    the parallel k-means++ got a cache hit on the serial twin's code, and the serial twins ran
    parallel code, 11 ms instead of 6 ms on the seed image).
    """
    g = types.FunctionType(f.__code__, f.__globals__, f.__name__ + "_serial", f.__defaults__, f.__closure__)
    g.__qualname__ = f.__qualname__ + "_serial"
    g.__doc__ = f.__doc__
    g.__module__ = f.__module__
    return g
