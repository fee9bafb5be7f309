"""subtract_background on dask stacks: lazy outputs per spatial tile, equal to the NumPy path."""

import numpy as np
import pytest

da = pytest.importorskip("dask.array")

import napari_gmm as ng  # noqa: E402
from napari_gmm._kernels import _config  # noqa: E402
from napari_gmm.datasets import fluorescence_timelapse, moving_objects  # noqa: E402


@pytest.fixture
def small_tiles(monkeypatch):
    monkeypatch.setattr(_config, "TILE_BYTES", 60 * 32 * 32 * 2)  # several tiles on small stacks
    monkeypatch.setattr(_config, "TIME_BLOCK_MIN_BYTES", 0)  # the chains over the input's time chunks


def _check(stack, chunks, **kw):
    ref = ng.subtract_background(stack, **kw)
    lazy = ng.subtract_background(da.from_array(stack, chunks=chunks), **kw)
    assert isinstance(lazy.foreground, da.Array) and lazy.model is None
    assert lazy.params["tiles"][0] * lazy.params["tiles"][1] > 1
    np.testing.assert_array_equal(lazy.foreground.compute(), ref.foreground)
    for a, b in ((lazy.background, ref.background), (lazy.foreground_image, ref.foreground_image)):
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_array_equal(a.compute(), b)
    return ref, lazy


def test_tiles_equal_numpy_video_with_post_filter(small_tiles):
    stack = moving_objects((40, 50, 60))[0]
    _check(stack, (10, 25, 30), median_size=5)
    _check(stack, (40, 50, 60), background="last", foreground_image="difference")


def test_tiles_equal_numpy_fluorescence_preset(small_tiles):
    stack = fluorescence_timelapse(shape=(60, 64, 64), seed=2)[0]
    ref, lazy = _check(stack, (20, 64, 32), preset="fluorescence time-lapse")
    np.testing.assert_array_equal(lazy.frame_factors, ref.frame_factors)


def test_tiles_rgb_and_memory_is_a_tile(small_tiles):
    rgb = np.repeat(moving_objects((30, 40, 50))[0][..., None], 3, axis=-1)
    _check(rgb, (10, 20, 25, 3), foreground_image="masked")
    # streaming instead of tiles on request: in-memory outputs, same result
    streamed = ng.subtract_background(da.from_array(rgb, chunks=(10, 40, 50, 3)), tiles=False)
    np.testing.assert_array_equal(streamed.foreground, ng.subtract_background(rgb).foreground)
