"""napari-gmm: Gaussian-mixture (EM) segmentation, colour quantisation and background modelling.

The public API works on plain NumPy (and dask) arrays; importing this package never imports napari,
Qt or magicgui. The napari widgets live in :mod:`napari_gmm._widgets`.

>>> import numpy as np, napari_gmm
>>> labels = napari_gmm.segment(np.array([[1, 2, 200, 201]], np.uint8), 2)
>>> labels.tolist()
[[1, 1, 2, 2]]
"""

from ._validate import Cancelled, ConvergenceWarning, FitError, InputError
from .background import BackgroundModel, BackgroundResult, subtract_background
from .compress import Histogram
from .mixture import MixtureModel, SplitModels
from .pipeline import histogram
from .segmentation import fit_mixture, quantize, segment

__version__ = "0.1.0"

__all__ = [
    "BackgroundModel",
    "BackgroundResult",
    "subtract_background",
    "Cancelled",
    "ConvergenceWarning",
    "FitError",
    "Histogram",
    "InputError",
    "MixtureModel",
    "SplitModels",
    "fit_mixture",
    "histogram",
    "quantize",
    "segment",
]
