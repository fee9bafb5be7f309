"""napari_gmm.datasets: the cameraman and the synthetic phantom with known ground truth."""

from __future__ import annotations

import math

import numpy as np
import pytest

from napari_gmm.datasets import cameraman, phantom


def test_cameraman_is_skimage_camera():
    from skimage import data

    img = cameraman()
    assert img.shape == (512, 512) and img.dtype == np.uint8
    np.testing.assert_array_equal(img, data.camera())
    # the seed's K=2 "ranges" init relies on the full 0..255 range
    assert img.min() == 0 and img.max() == 255


def test_phantom_defaults():
    image, truth = phantom()
    assert image.shape == truth.shape == (256, 256)
    assert image.dtype == np.uint16 and truth.dtype == np.uint8
    assert np.unique(truth).tolist() == [1, 2, 3]


@pytest.mark.parametrize("dtype, top", [(np.uint16, 4095.0), (np.uint8, 255.0)])
def test_phantom_class_statistics_match_the_documented_model(dtype, top):
    """Class k: mean lo + (k-1)*step, sd noise*step, area fraction 2**-(k-1)/sum."""
    n, noise = 3, 0.25
    image, truth = phantom((256, 256), n_classes=n, noise=noise, seed=3, dtype=dtype)
    lo, step = 0.25 * top, 0.5 * top / (n - 1)
    fractions = np.array([4, 2, 1]) / 7
    for k in range(1, n + 1):
        x = image[truth == k].astype(np.float64)
        # fraction: exact up to quantile ties
        assert abs(x.size / image.size - fractions[k - 1]) < 1e-3
        # mean within 5 standard errors (+ rounding), sd within 3 %
        sd = noise * step
        assert abs(x.mean() - (lo + (k - 1) * step)) < 5 * sd / math.sqrt(x.size) + 0.5
        assert abs(x.std() / math.sqrt(sd**2 + 1 / 12) - 1) < 0.03


def test_phantom_labels_are_ordered_by_class_mean():
    for n in (2, 3, 5):
        image, truth = phantom((128, 128), n_classes=n, seed=1)
        assert np.unique(truth).tolist() == list(range(1, n + 1))
        means = [image[truth == k].mean() for k in range(1, n + 1)]
        assert np.all(np.diff(means) > 0), means


def test_phantom_is_deterministic_and_seeded():
    a = phantom((64, 80), seed=7)
    b = phantom((64, 80), seed=7)
    c = phantom((64, 80), seed=8)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def test_phantom_shapes_are_smooth_regions():
    """Regions are blobs, not speckle: few label changes between neighbours, sharp edges."""
    _, truth = phantom((256, 256), seed=0)
    changes = np.mean(truth[:, 1:] != truth[:, :-1]) + np.mean(truth[1:] != truth[:-1])
    assert changes < 0.05
    # with noise=0 the image is exactly piecewise constant on the truth
    image, truth0 = phantom((256, 256), noise=0, seed=0)
    np.testing.assert_array_equal(truth0, truth)
    for k in (1, 2, 3):
        assert np.unique(image[truth == k]).size == 1


def test_phantom_bayes_error_matches_the_noise_parameter():
    """The optimal midpoint classifier errs at ~Phi(-1/(2 noise)) per neighbouring boundary."""
    noise = 0.3
    image, truth = phantom((256, 256), n_classes=2, noise=noise, seed=2)
    top = 4095.0
    lo, step = 0.25 * top, 0.5 * top
    pred = np.where(image >= lo + step / 2, 2, 1)
    err = np.mean(pred != truth)
    expected = 0.5 * (1 + math.erf(-1 / (2 * noise) / math.sqrt(2)))  # Phi(-1/(2 noise))
    assert abs(err - expected) < 0.004, (err, expected)


def test_phantom_nd():
    image, truth = phantom((12, 40, 48), seed=0)
    assert image.shape == truth.shape == (12, 40, 48)
    assert np.unique(truth).tolist() == [1, 2, 3]
    image1, truth1 = phantom(500, n_classes=2, seed=0)
    assert image1.shape == (500,) and np.unique(truth1).tolist() == [1, 2]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(shape=()), "shape"),
        (dict(shape=(0, 5)), "shape"),
        (dict(n_classes=1), "n_classes"),
        (dict(n_classes=17), "n_classes"),
        (dict(n_classes=2.5), "n_classes"),
        (dict(noise=-1), "noise"),
        (dict(noise=float("nan")), "noise"),
        (dict(dtype=np.float32), "dtype"),
    ],
)
def test_phantom_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        phantom(**kwargs)
