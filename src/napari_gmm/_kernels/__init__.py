"""Private Numba kernels (numpy + numba only). Kernels trust their input: contiguous, typed.

The public wrappers in :mod:`napari_gmm` validate, cast and explain.
"""
