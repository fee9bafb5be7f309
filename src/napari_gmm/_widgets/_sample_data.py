"""Sample-data contributions (napari ``File > Open Sample > napari GMM``).

Each function returns a list of napari layer-data tuples ``(data, layer_kwargs, layer_type)``;
they are thin wrappers of :mod:`napari_gmm.datasets` and import nothing from napari.
"""

from __future__ import annotations

from ..datasets import cameraman as _cameraman
from ..datasets import moving_objects as _moving_objects
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
            {
                "name": "phantom truth",
                "opacity": 0.5,
                "visible": False,
                # not "napari_gmm": that key holds fitted models (results of the segment widget)
                "metadata": {"napari_gmm_sample": {"ground_truth": True, "n_classes": 3, "noise": 0.25, "seed": 0}},
            },
            "labels",
        ),
    ]


def moving_objects():
    """A synthetic video for background modelling, with its exact ground truth.

    Returns
    -------
    list of tuple
        An image layer ``moving objects`` (120, 96, 128) uint8 (T, Y, X): a textured background with a
        slowly drifting illumination, a flickering rectangle, noise and 4 moving objects; and a hidden
        Labels layer ``moving objects truth`` (1 = foreground).
    """
    stack, truth = _moving_objects((120, 96, 128), seed=0)
    return [
        (stack, {"name": "moving objects", "colormap": "gray"}, "image"),
        (
            truth.astype("uint8"),
            {
                "name": "moving objects truth",
                "opacity": 0.5,
                "visible": False,
                "metadata": {"napari_gmm_sample": {"ground_truth": True}},
            },
            "labels",
        ),
    ]
