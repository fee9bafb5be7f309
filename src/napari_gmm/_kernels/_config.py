"""Numba settings shared by every kernel (one place, as stumpy's config module).

``fastmath`` allows re-association and contraction (vectorised reductions) but keeps
IEEE NaN/inf semantics, so ``np.isnan`` and ``np.isfinite`` inside kernels stay reliable.
``cache=True`` writes compiled kernels next to the sources (or to ``NUMBA_CACHE_DIR``) so that
the second import of the package does not compile again.
"""

FASTMATH = {"nsz", "arcp", "contract", "reassoc"}

#: keyword arguments for serial kernels
JIT = dict(nogil=True, cache=True, fastmath=FASTMATH)

#: keyword arguments for kernels parallel over their outer ``prange`` loop
PJIT = dict(JIT, parallel=True)
