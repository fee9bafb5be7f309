"""Sample-data contributions (napari ``File > Open Sample > napari GMM``).

Each function returns a list of napari layer-data tuples ``(data, layer_kwargs, layer_type)``;
they are thin wrappers of :mod:`napari_gmm.datasets` and import nothing from napari.
"""

from __future__ import annotations

from ..datasets import cameraman as _cameraman
from ..datasets import phantom as _phantom


def cameraman():
    """The cameraman photograph (scikit-image), the example image of the seed method.

    Returns
    -------
    list of tuple
        One image layer: (512, 512) uint8.
    """
    return [(_cameraman(), {"name": "cameraman", "colormap": "gray"}, "image")]


def phantom():
    """A synthetic noisy 3-class phantom and its ground truth.

    Returns
    -------
    list of tuple
        An image layer (256, 256) uint16 (class means about 1024, 2048 and 3071, Gaussian noise of
        standard deviation 256) and a Labels layer ``phantom truth`` (1..3, darkest class first,
        the label order of :func:`napari_gmm.segment`), hidden so that the image is visible.
    """
    image, truth = _phantom((256, 256), n_classes=3, noise=0.25, seed=0)
    return [
        (
            image,
            {"name": "phantom", "colormap": "gray", "contrast_limits": (0, 4095)},
            "image",
        ),
        (
            truth,
            {"name": "phantom truth", "opacity": 0.5, "visible": False,
             # not "napari_gmm": that key holds fitted models (results of the segment widget)
             "metadata": {"napari_gmm_sample": {"ground_truth": True, "n_classes": 3,
                                                "noise": 0.25, "seed": 0}}},
            "labels",
        ),
    ]
