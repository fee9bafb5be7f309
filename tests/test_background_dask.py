"""subtract_background on dask stacks: lazy outputs per spatial tile, equal to the NumPy path."""

import numpy as np
import pytest

da = pytest.importorskip("dask.array")

import napari_gmm as ng  # noqa: E402
from napari_gmm._kernels import _config  # noqa: E402
from napari_gmm.background import estimate_bleaching  # noqa: E402
from napari_gmm.datasets import fluorescence_timelapse, moving_objects  # noqa: E402


@pytest.fixture
def small_tiles(monkeypatch):
    monkeypatch.setattr(_config, "TILE_BYTES", 60 * 32 * 32 * 2)  # several tiles on small stacks
    monkeypatch.setattr(_config, "TIME_BLOCK_MIN_BYTES", 0)  # the chains over the input's time chunks


@pytest.fixture
def two_by_two_tiles(monkeypatch):
    """Tiles of 64 x 64 pixels (2 x 2 on 128 x 128 frames), a step per time chunk of 8 frames."""
    monkeypatch.setattr(_config, "TILE_BYTES", 400_000)
    monkeypatch.setattr(_config, "TIME_BLOCK_MIN_BYTES", 0)


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


@pytest.mark.parametrize("frames_per_fill", [5, 10])
def test_tiles_equal_numpy_with_holes_across_tiles(small_tiles, monkeypatch, frames_per_fill):
    """The ring's inside spans the tiles' borders (y 24, x every 40): hole filling runs on whole
    frames, in blocks of at most FILL_BLOCK_BYTES: the time chunks (a task per time block takes its
    tiles' masks whole, and the tiles' parts are cut from it), or, where a time chunk holds more
    than that, shorter blocks (the masks rechunked to whole frames and back)."""
    from tests.test_background import _ring_video

    stack = _ring_video()[0]
    monkeypatch.setattr(_config, "FILL_BLOCK_BYTES", frames_per_fill * stack.shape[1] * stack.shape[2])
    refs = []
    for kw in (dict(), dict(median_size=0), dict(median_size=5, fill_holes=20)):
        ref, lazy = _check(stack, (10, 24, 40), background=None, **kw)
        layers = lazy.foreground.__dask_graph__().layers
        assert any(k.endswith("-fill") for k in layers) == (frames_per_fill == 10)
        assert lazy.params["tiles"][0] == 2 and lazy.params["tiles"][1] >= 4
        refs.append(ref.foreground)
    unfilled = ng.subtract_background(stack, background=None, fill_holes=0).foreground
    assert (refs[0] == 1).sum() > (unfilled == 1).sum() + 30 * 100  # the insides were filled


def test_burn_in_reads_only_the_frames_it_needs_from_a_zarr_stack(tmp_path, monkeypatch):
    """A zarr stack opened with io.open_image (time first): the burn-in asks the reader for the
    first frames of a chunk up to the one it needs, not for whole chunks (an identity transpose of
    the stack stopped dask from passing such reads on: every chunk was decoded whole). Same result."""
    pytest.importorskip("zstandard")
    zarr = pytest.importorskip("zarr")
    from zarr.codecs import ZstdCodec

    from napari_gmm import io

    stack = moving_objects((64, 32, 48))[0]
    path = tmp_path / "s.zarr"
    z = zarr.create_array(str(path), shape=stack.shape, chunks=(8, 32, 48), dtype=stack.dtype, compressors=ZstdCodec())
    z[:] = stack
    keys = []
    get = io._ZarrChunks.__getitem__
    monkeypatch.setattr(io._ZarrChunks, "__getitem__", lambda self, key: keys.append(key) or get(self, key))
    lazy = ng.subtract_background(io.open_image(path).data, burn_in=8, background=None)
    np.testing.assert_array_equal(lazy.foreground.compute(), ng.subtract_background(stack, burn_in=8).foreground)
    # the reader decodes a chunk from its start up to the last frame asked for (io._ZarrChunks)
    parts = sorted(k[0].stop - 1 for k in keys if 0 < k[0].stop - k[0].start < 8)
    assert parts == [int(t) for t in ng.background.burn_in_indices(64, 8)]


def test_tiled_reads_of_a_zarr_stack_go_past_the_page_cache(tmp_path, monkeypatch):
    """A zarr stack opened with io.open_image: the tiles' reads (the job reads each chunk once)
    read the chunk files not in the page cache with O_DIRECT (io.reading_once); the same result."""
    import os

    zarr = pytest.importorskip("zarr")
    if not hasattr(os, "RWF_NOWAIT"):
        pytest.skip("direct reads need Linux's RWF_NOWAIT")
    from napari_gmm import io
    from tests.test_io import _evict

    stack = moving_objects((32, 64, 64))[0]
    path = tmp_path / "s.zarr"
    z = zarr.create_array(str(path), shape=stack.shape, chunks=(8, 32, 64), dtype=stack.dtype)
    z[:] = stack
    files = [os.path.join(d, f) for d, _, fs in os.walk(path / "c") for f in fs]
    for f in files:
        _evict(f)  # (a file system that keeps files in memory reads them the ordinary way)
    monkeypatch.setattr(_config, "DIRECT_READ_MIN_BYTES", 0)
    monkeypatch.setattr(_config, "TILE_BYTES", 60 * 32 * 64 * 2)  # 2 tiles
    direct = []
    read = io._read_file_direct
    monkeypatch.setattr(io, "_read_file_direct", lambda p: direct.append(p) or read(p))
    got = ng.subtract_background(io.open_image(path).data, burn_in=0, background=None)
    np.testing.assert_array_equal(got.foreground.compute(), ng.subtract_background(stack, burn_in=0).foreground)
    assert sorted(direct) == sorted(files)  # every chunk once, through the direct read
    assert io._once.on is False


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


def test_tiles_follow_the_input_chunks():
    from napari_gmm.background import _tile_grid, _time_groups

    per_px = 5 * 12 + 2  # the model state of a grey pixel with 5 modes
    # the benchmark's chunks: one tile per chunk, the time chunks as they are
    assert _tile_grid((1024, 1024), (1024, 1024), per_px, 4) == ((1024, 1024), (1024, 1024))
    assert _time_groups((8,) * 4 + (3,), 1024 * 1024 * 2) == (8, 8, 8, 8, 3)
    # small chunks merged (x first) up to TILE_MIN_PIXELS, a last sliver merged into its neighbour
    assert _tile_grid((200,) * 4, (256,) * 4 + (2,), per_px, 4) == ((400, 400), (1026,))
    # a chunk whose model would pass TILE_BYTES is split (along y first), equal parts
    rows = 2 * _config.TILE_BYTES // per_px // 1000
    ys, xs = _tile_grid((rows,), (1000,), per_px, 4)
    assert xs == (1000,) and len(ys) >= 2 and sum(ys) == rows and len(set(ys[:-1])) == 1
    assert max(ys) * 1000 * per_px <= _config.TILE_BYTES


class _CountingArray:
    """An array-like that counts the reads of each of its chunks (dask calls it once per chunk read)."""

    def __init__(self, a, chunks):
        self.a, self.shape, self.dtype, self.ndim, self.reads = a, a.shape, a.dtype, a.ndim, {}
        self.chunks = chunks

    def __getitem__(self, key):
        start = tuple(k.start or 0 for k in key)
        self.reads[start] = self.reads.get(start, 0) + 1
        return self.a[key]


def test_tiled_run_reads_every_chunk_once_and_the_burn_in_chunks_once_more(monkeypatch):
    monkeypatch.setattr(_config, "TIME_BLOCK_MIN_BYTES", 0)
    monkeypatch.setattr(_config, "TILE_MIN_PIXELS", 1)  # a tile per input chunk
    stack = moving_objects((24, 16, 40))[0]
    arr = _CountingArray(stack, (4, 16, 20))
    res = ng.subtract_background(da.from_array(arr, chunks=arr.chunks, asarray=False), burn_in=3)
    assert res.params["tiles"] == [1, 2]
    arr.reads.clear()  # (stack-wide estimates read their frames before, eagerly: none for uint8)
    fg, bg = da.compute(res.foreground, res.background)
    # burn-in frames 0, 12 and 23: chunks 0, 3 and 5 along time, read once more each (frame 23
    # asked for alone: the reader gets the frames the burn-in needs, not the whole chunk)
    want = {(t, 0, x): 1 + (t in (0, 12)) for t in range(0, 24, 4) for x in (0, 20)}
    want.update({(23, 0, x): 1 for x in (0, 20)})
    assert arr.reads == want
    ref = ng.subtract_background(stack, burn_in=3)
    np.testing.assert_array_equal(fg, ref.foreground)
    np.testing.assert_array_equal(bg, ref.background)
    # every compute runs the chains from their start (the models are made inside the graph)
    np.testing.assert_array_equal(res.foreground.compute(), ref.foreground)
    # chunks holding several burn-in frames (0, 3 of 0-3; 9 of 8-11 ...): each read once more, from
    # its first burn-in frame to its last
    res = ng.subtract_background(da.from_array(arr, chunks=arr.chunks, asarray=False), burn_in=8)
    arr.reads.clear()
    np.testing.assert_array_equal(res.foreground.compute(), ng.subtract_background(stack, burn_in=8).foreground)
    want = {(t, 0, x): 1 for t in range(0, 24, 4) for x in (0, 20)}
    burn = ng.background.burn_in_indices(24, 8)
    assert len(np.unique(burn // 4)) == 6  # every chunk holds burn-in frames
    for first in [int(burn[burn // 4 == c][0]) for c in range(6)]:
        for x in (0, 20):
            want[first, 0, x] = want.get((first, 0, x), 0) + 1
    assert arr.reads == want


def test_stack_estimates_read_each_chunk_once():
    # the bleaching estimate reads every frame: a dask stack is read a time chunk at a time, so each
    # chunk is decoded once (frame by frame, a chunk of 4 frames was read 4 times); same factors
    rng = np.random.default_rng(0)
    decay = np.linspace(1.0, 0.7, 12)[:, None, None]
    stack = (100 + rng.poisson(200, (12, 16, 40)) * decay).astype(np.uint16)
    arr = _CountingArray(stack, (4, 16, 20))
    lazy = da.from_array(arr, chunks=arr.chunks, asarray=False)
    arr.reads.clear()  # (dask's zero-size read for the array's meta)
    lazy = estimate_bleaching(lazy, offset=100)
    assert arr.reads == {(t, 0, x): 1 for t in (0, 4, 8) for x in (0, 20)}
    np.testing.assert_array_equal(lazy, estimate_bleaching(stack, offset=100))


@pytest.mark.parametrize("fill_holes", [0, 1024])
def test_writing_tiled_outputs_keeps_the_chains_at_the_writes(tmp_path, monkeypatch, fill_holes, two_by_two_tiles):
    """io.write_zarr of a tiled run's foreground and background: a block waits in memory from its
    step to its store for a bounded number of steps, whatever the stack's length (the chains wait
    for the writes: background._StoreGate); without the gate, dask's order ran the chains ahead of
    the writes and the finished blocks piled up (measured here: 35 blocks waiting at most on 160
    frames, 119 on 640, against 12 with the gate; counted on dask's synchronous scheduler, whose
    order is the threaded one's without its timing: 46 without the gate, 10 with it). Same values.
    With hole filling (the masks post-filtered as whole frames) the gate keeps the same bound."""
    pytest.importorskip("zarr")
    from dask.callbacks import Callback

    from napari_gmm import background as bgmod
    from napari_gmm import io

    stack = moving_objects((160, 128, 128))[0]

    class Count(Callback):
        waiting = peak = 0

        def _posttask(self, key, result, dsk, state, id):
            name = key[0] if isinstance(key, tuple) else key
            if isinstance(key, tuple) and key[1:2] == ("step",):
                self.waiting += 2  # a block of each output
            elif name.startswith("store-map"):
                self.waiting -= 1
            self.peak = max(self.peak, self.waiting)

    def write(out):
        res = ng.subtract_background(da.from_array(stack, chunks=(8, 64, 64)), fill_holes=fill_holes)
        assert res.params["tiles"] == [2, 2] and len(res.background.chunks[0]) == 20
        count = Count()
        with count:
            arrays = {"foreground": res.foreground, "background": res.background}
            # dask's synchronous scheduler: the threaded one's order of ready tasks (the last made
            # ready first) without its timing, so the counts are the same in every run
            io.write_zarr(out, arrays, compute_kwargs={"scheduler": "synchronous"})
        assert count.waiting == 0
        return count.peak

    gated = write(tmp_path / "gated.zarr")
    assert gated <= 3 * 4  # a few steps per tile
    ref = ng.subtract_background(stack, fill_holes=fill_holes)
    for what in ("foreground", "background"):
        got = io.read_result(tmp_path / "gated.zarr", what)[0].compute()
        np.testing.assert_array_equal(got, getattr(ref, what))
    if fill_holes == 0:
        monkeypatch.setattr(bgmod._StoreGate, "rewire", lambda self, dsk, stores, **kw: None)
        free = write(tmp_path / "free.zarr")
        assert free > 2 * gated  # what the count sees without the gate


def test_a_tiles_model_reports_its_size_to_dask():
    """dask.distributed places a task by the sizes of its inputs (``dask.sizeof``): a tile's state
    reports its model's arrays, not the object's few bytes, so the chain's next step runs where
    the model is instead of the model moving to where the step's input was read."""
    from dask.sizeof import sizeof

    from napari_gmm.background import BackgroundModel, _TileState

    state = _TileState(BackgroundModel((64, 32)))
    m = state.model
    arrays = sum(a.nbytes for a in (m._weights, m._means, m._variances, m._n_modes))
    assert arrays >= 64 * 32 * m.n_mixtures * 12
    assert sizeof(state) >= arrays


def test_on_a_cluster_each_tiles_chain_stays_on_one_worker(tmp_path, monkeypatch, two_by_two_tiles):
    """io.write_zarr of a tiled run on a dask.distributed cluster of two workers: each tile's chain
    (its start, reads, burn-in and steps) runs on one worker, so neither the tile's model nor its
    input blocks move between the workers (before, the steps followed their reads, placed by tiny
    gates, and the models moved: 9 s of transfers in a 17 s run of a 1.6 GB stack). The reads run
    off the workers' task slots (distributed.secede, then rejoin), and only there. Same values."""
    pytest.importorskip("zarr")
    distributed = pytest.importorskip("distributed")
    import dask

    from napari_gmm import background as bgmod
    from napari_gmm import io

    stack = moving_objects((48, 128, 128))[0]
    calls = []
    for what in ("secede", "rejoin"):
        f = getattr(distributed, what)
        monkeypatch.setattr(distributed, what, lambda f=f, what=what: calls.append(what) or f())

    def run(out, **kw):
        res = ng.subtract_background(da.from_array(stack, chunks=(8, 64, 64)))
        assert res.params["tiles"] == [2, 2]
        io.write_zarr(out, {"foreground": res.foreground, "background": res.background}, **kw)
        return res

    run(tmp_path / "threads.zarr")
    assert calls == []  # nothing seceded outside a worker
    # the scheduler weighs moving a task's inputs against waiting for a busy worker: the models
    # here (250 KB) are cheap to move, so the test's models report a real tile's size (62 MiB for
    # 1024 x 1024 pixels; the reads' blocks stay small), and work stealing, which may move a chain
    # once when a worker idles, is off: the placement alone is tested
    size = bgmod._TileState.__sizeof__
    monkeypatch.setattr(bgmod._TileState, "__sizeof__", lambda self: size(self) + 62 * 2**20)
    stealing = dask.config.set({"distributed.scheduler.work-stealing": False})
    with (
        stealing,
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as lc,
    ):
        with distributed.Client(lc) as client, distributed.get_task_stream(client) as ts:
            run(tmp_path / "cluster.zarr")
    where = {}
    for rec in ts.data:
        key = rec["key"]
        if isinstance(key, tuple) and key[1] in ("start", "read", "burn", "step"):
            where.setdefault(key[-2:], set()).add(rec["worker"])
    assert len(where) == 4 and all(len(w) == 1 for w in where.values()), where
    assert len({w for ws in where.values() for w in ws}) == 2  # the tiles on both workers
    n_reads = sum(1 for rec in ts.data if isinstance(rec["key"], tuple) and rec["key"][1] == "read")
    assert n_reads > 0 and calls.count("secede") == calls.count("rejoin") == n_reads
    ref = ng.subtract_background(stack)
    for what in ("foreground", "background"):
        got = io.read_result(tmp_path / "cluster.zarr", what)[0].compute()
        np.testing.assert_array_equal(got, getattr(ref, what))


@pytest.mark.parametrize(
    "kw",
    [
        {},  # the default post-filter: hole filling on whole frames, cut back into the tiles
        {"fill_holes": 0, "median_size": 3, "foreground_image": "difference"},
        {"fill_holes": 0, "median_size": 1, "background": "last", "foreground_image": "masked"},
    ],
    ids=["fill", "median-difference", "last-masked"],
)
def test_on_a_cluster_the_small_tasks_run_inside_the_tasks_that_take_them(tmp_path, monkeypatch, kw, two_by_two_tiles):
    """io.write_zarr of a tiled run on a dask.distributed cluster: the tasks that only pick a store's
    block from a step's result (the background, the difference image) or from a block of whole
    frames (a tile of the filled masks), or rename a block, run inside the tasks that take them
    (every task costs a cluster's worker and scheduler a few milliseconds), not as tasks of their
    own; the masks, which the post-filter takes from tiles on other workers, the models, which
    keep the chains in place, and the frames of the masked image stay tasks. The threaded graph
    keeps them all (its order of the tasks is tuned:
    test_writing_tiled_outputs_keeps_the_chains_at_the_writes). The same values as NumPy's."""
    pytest.importorskip("zarr")
    distributed = pytest.importorskip("distributed")

    from napari_gmm import background as bgmod
    from napari_gmm import io

    stack = moving_objects((32, 128, 128))[0]
    graphs = []
    nest = bgmod._nest_into_stores
    monkeypatch.setattr(bgmod, "_nest_into_stores", lambda dsk, *a: (graphs.append(dsk), nest(dsk, *a)))

    def outputs(res):
        out = {"foreground": res.foreground, "background": res.background}
        if res.foreground_image is not None:
            out["foreground_image"] = res.foreground_image
        return out

    def kind(key):
        name = key[0] if isinstance(key, tuple) else key
        if isinstance(key, tuple) and len(key) > 1 and isinstance(key[1], str):
            return key[1]
        return "alias" if name.split("-")[-1] in ("background", "difference", "frames") else name.split("-")[-1]

    res = ng.subtract_background(da.from_array(stack, chunks=(8, 64, 64)), **kw)
    assert res.params["tiles"] == [2, 2]
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as lc:
        with distributed.Client(lc) as client, distributed.get_task_stream(client) as ts:
            io.write_zarr(tmp_path / "cluster.zarr", outputs(res))
    ran = {}
    for rec in ts.data:
        ran.setdefault(kind(rec["key"]), set()).add(rec["key"])
    assert len(graphs) == 1  # the stores' graph (as it ran) went through the nesting, once
    # the backgrounds, difference images and tiles of filled masks picked inside the stores
    for gone in ("background", "difference", "alias", "filled"):
        assert gone not in ran, (gone, sorted(ran))
    assert len(ran["masks"]) == len(ran["step"]) == 4 * 4  # the masks: tasks of their own
    # the models, a task per unit (the last one's taken only for background="last")
    assert len(ran["state"]) == len(ran["step"]) + len(ran["burn"]) - (kw.get("background") != "last") * 4
    assert ("fill" in ran) == (kw == {})
    # the masks that hole filling takes from the tiles travel compressed (_MasksInTransit)
    wrapped = [t for t in graphs[0].values() if getattr(t, "func", None) is bgmod._masks_in_transit]
    assert len(wrapped) == (4 * 4 if kw == {} else 0)
    if kw.get("foreground_image") == "masked":
        assert len(ran["frames"]) == 4 * 4  # taken by the masked image's tasks, not by a store
    ref = ng.subtract_background(stack, **kw)
    for what, a in outputs(ref).items():
        got = io.read_result(tmp_path / "cluster.zarr", what)[0].compute()
        np.testing.assert_array_equal(got, a)


def test_masks_travel_between_workers_compressed_and_fill_the_same():
    """On a cluster a tile's masks go to the hole filling's worker as :class:`_MasksInTransit`:
    pickled (what a transfer between workers does) as LZ4 bytes, a fraction of the array, back to
    the same values; the hole filling takes them as it takes arrays, and they report their
    array's size to the scheduler."""
    import pickle
    import sys

    from napari_gmm import background as bgmod

    rng = np.random.default_rng(2)
    masks = np.zeros((8, 64, 96), np.uint8)
    masks[:, 10:40, 20:70] = 1  # a blob across the two tiles with a hole, and specks
    masks[:, 20:25, 30:35] = 0
    masks[rng.random(masks.shape) > 0.999] = 1
    wrapped = bgmod._masks_in_transit((None, masks), 1)
    raw = pickle.dumps(wrapped, protocol=5)
    assert len(raw) < masks.nbytes / 10
    back = pickle.loads(raw)
    assert isinstance(back, bgmod._MasksInTransit)
    np.testing.assert_array_equal(back.masks, masks)
    assert sys.getsizeof(wrapped) >= masks.nbytes
    got = bgmod._postfilter_tiles([[bgmod._MasksInTransit(masks[:, :, :48]), masks[:, :, 48:]]], 1, 100)
    ref = bgmod._postfilter_tiles([[masks[:, :, :48], masks[:, :, 48:]]], 1, 100)
    np.testing.assert_array_equal(got, ref)
    assert (ref[:, 20:25, 30:35] == 1).all()  # the hole was filled
