"""napari_gmm._dask: the chunk buffer pool (used where glibc's malloc thresholds are fixed)."""

import numpy as np
import pytest

from napari_gmm import _dask
from napari_gmm._kernels import _config


@pytest.fixture
def pool():
    p = _dask._BufferPool()
    p._on = True
    return p


def test_a_chunk_buffer_is_reused_only_once_every_view_of_it_is_gone(pool):
    a = pool.empty((8, 1024), np.uint16, False)
    assert a.shape == (8, 1024) and a.dtype == np.uint16 and a.flags.c_contiguous
    first = a.ctypes.data
    a[...] = 7
    view = a[2:5].reshape(-1).view(np.uint8)[1:][::3]  # a view of a view of a view...
    assert np.shares_memory(view, a)
    expect = view.copy()
    del a
    b = pool.empty((8, 1024), np.uint16, False)  # the first buffer is still in use: a new one
    b[...] = 9
    second = b.ctypes.data
    assert second != first and not np.shares_memory(b, view)
    np.testing.assert_array_equal(view, expect)
    del view
    c = pool.empty((8, 1024), np.uint16, False)  # now free: the same memory again
    assert c.ctypes.data == first
    del b, c
    # a smaller request takes a kept buffer of up to 1.5 x its size; a much smaller one a new one
    kept = {first, second}
    assert pool.empty(12000, np.uint8, False).ctypes.data in kept
    small = pool.empty(4000, np.uint8, False)
    assert small.size == 4000 and small.ctypes.data not in kept


def test_aligned_chunk_buffers_start_and_end_on_whole_blocks(pool):
    a = _config.DIRECT_IO_ALIGN
    for size in (1, a, 3 * a + 17, 2**20 + 16):
        buf = pool.empty(size, np.uint8, True)
        assert buf.ctypes.data % a == 0 and buf.size % a == 0 and buf.size >= size
        buf[:] = 1  # all of it is writable memory of its own
    plain = _dask.chunk_buffer(3 * a + 17, aligned=True)  # the pool is off in the tests' process
    assert plain.ctypes.data % a == 0 and plain.size == 4 * a


def test_the_pool_keeps_at_most_its_bytes(pool, monkeypatch):
    monkeypatch.setattr(_config, "CHUNK_BUFFER_POOL_BYTES", 3 * 2**20)
    bufs = [pool.empty(2**20, np.uint8, False) for _ in range(5)]
    del bufs
    assert sum(b.size for b in pool._free) <= 3 * 2**20 and len(pool._free) == 3


@pytest.mark.parametrize(
    "env, on",
    [
        ({}, False),
        ({"MALLOC_TRIM_THRESHOLD_": "65536"}, True),  # what dask's nanny gives every worker
        ({"MALLOC_MMAP_THRESHOLD_": "1048576"}, True),
        ({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=65536"}, True),
        ({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}, False),
        ({"MALLOC_ARENA_MAX": "2"}, False),  # arenas leave glibc's thresholds dynamic
    ],
)
def test_the_pool_is_on_where_glibcs_thresholds_are_fixed(monkeypatch, env, on):
    for k in ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert _dask._BufferPool().on() is on
    got = _dask.chunk_buffer((3, 5), np.float32)
    assert got.shape == (3, 5) and got.dtype == np.float32


def test_pooled_reads_labels_and_writes_equal_numpys(tmp_path, monkeypatch):
    """With the pool on, a zarr stack read, segmented and written on dask's threads (blocks made
    and dropped concurrently, buffers reused) gives numpy's labels and zarr's values."""
    zarr = pytest.importorskip("zarr")
    pytest.importorskip("dask.array")
    import napari_gmm as ng
    from napari_gmm import io

    monkeypatch.setattr(_dask, "_POOL", _dask._BufferPool())
    _dask._POOL._on = True
    rng = np.random.default_rng(3)
    data = (rng.normal(1000, 200, (24, 64, 48)) + 800 * (rng.random((24, 64, 48)) > 0.7)).astype(np.uint16)
    z = zarr.create_array(str(tmp_path / "in.zarr"), shape=data.shape, chunks=(4, 32, 48), dtype=np.uint16)
    z[:] = data
    img = io.open_image(tmp_path / "in.zarr").data
    np.testing.assert_array_equal(img.compute(scheduler="threads"), data)
    labels, model = ng.segment(img, 3, return_model=True)
    io.write_zarr(tmp_path / "labels.zarr", labels)
    got, _ = io.read_result(tmp_path / "labels.zarr")
    np.testing.assert_array_equal(np.asarray(got), model.predict(data))
    assert _dask._POOL._free  # the buffers came back to the pool


@pytest.mark.parametrize("kw", [{}, {"fill_holes": 0, "median_size": 3, "foreground_image": "difference"}])
def test_pooled_tiled_background_equals_numpys(tmp_path, monkeypatch, kw):
    """With the pool on, the tiled background written on dask's threads takes its steps' outputs
    and its blocks of whole frames of masks (hole filling) from the pool, and equals the NumPy
    path: foreground, background and difference image."""
    pytest.importorskip("zarr")
    pytest.importorskip("dask.array")
    import dask.array as da

    import napari_gmm as ng
    from napari_gmm import io
    from napari_gmm.datasets import moving_objects

    monkeypatch.setattr(_dask, "_POOL", _dask._BufferPool())
    _dask._POOL._on = True
    taken = []
    empty = _dask._POOL.empty

    def record(shape, *a):
        taken.append((shape,) if isinstance(shape, int) else tuple(shape))
        return empty(shape, *a)

    monkeypatch.setattr(_dask._POOL, "empty", record)
    monkeypatch.setattr(_config, "TILE_BYTES", 400_000)  # 2 x 2 tiles of 64 x 64
    monkeypatch.setattr(_config, "TIME_BLOCK_MIN_BYTES", 0)  # a step per time chunk of 8 frames
    stack = moving_objects((48, 128, 128))[0]
    res = ng.subtract_background(da.from_array(stack, chunks=(8, 64, 64)), **kw)
    out = {"foreground": res.foreground, "background": res.background}
    if res.foreground_image is not None:
        out["foreground_image"] = res.foreground_image
    io.write_zarr(tmp_path / "bg.zarr", out)
    assert (8, 64, 64) in taken  # a step's masks and background
    assert ((8, 128, 128) in taken) == (kw == {})  # hole filling's blocks of whole frames
    ref = ng.subtract_background(stack, **kw)
    for what in out:
        got = io.read_result(tmp_path / "bg.zarr", what)[0].compute()
        np.testing.assert_array_equal(got, getattr(ref, what))
    assert _dask._POOL._free  # the buffers came back to the pool


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_the_histogram_pass_reads_and_counts_each_block_in_one_task(dtype, monkeypatch):
    """One task per block reads it and counts it (no block is handed from a task to another: on
    a cluster that is a block stored, counted and looked up per chunk), then the merges; the
    counts are numpy's."""
    da = pytest.importorskip("dask.array")
    from dask.callbacks import Callback

    class Source:  # a file's reader (as napari_gmm.io's): dask reads each block from it in a task
        def __init__(self, data):
            self.data, self.shape, self.dtype, self.ndim = data, data.shape, data.dtype, data.ndim

        def __getitem__(self, key):
            return self.data[key]

    rng = np.random.default_rng(0)
    data = (rng.random((6, 40, 30)) * 1000).astype(dtype)
    img = da.from_array(Source(data), chunks=(2, 20, 15))  # 12 blocks
    ran, shapes = [], []
    for name in ("_block_whole", "_block_range", "_block_counts"):  # what each block's task runs
        f = getattr(_dask, name)
        monkeypatch.setattr(_dask, name, lambda b, m, *a, f=f: (shapes.append(b.shape), f(b, m, *a))[1])
    with Callback(pretask=lambda key, dsk, state: ran.append(key[0] if isinstance(key, tuple) else key)):
        got = _dask.histogram(img)
    # only real blocks are counted: not an empty one that dask would use to learn the output's type
    # (which loaded the compiled kernel in the client)
    assert all(0 not in s for s in shapes) and len(shapes) == 12 * (1 if dtype == np.uint16 else 2)
    merges = 2 + 1  # 12 blocks -> 2 merges of up to 8 -> 1
    passes = 1 if dtype == np.uint16 else 2  # floats: the range, then the counts
    assert len(ran) == passes * (12 + merges), sorted(ran)
    ref = _dask.compress_numpy(data)
    np.testing.assert_array_equal(got.counts, ref.counts)


@pytest.mark.parametrize(
    "n_tasks, threads, size",
    [(476, 0, 1), (476, 2, 4), (40, 2, 2), (20, 2, 1), (476, 64, 1), (5000, 64, 4)],
)
def test_a_cluster_task_takes_several_chunks_while_every_thread_keeps_enough_tasks(n_tasks, threads, size):
    # (0 threads: not a cluster)
    assert _config.CLUSTER_GROUP == 4 and _config.CLUSTER_TASKS_PER_THREAD == 8
    assert _dask.group_size(n_tasks, threads) == size


def test_grouped_tasks_run_inside_the_groups_and_a_task_another_one_takes_stays():
    pytest.importorskip("dask")
    from dask.threaded import get

    def inc(x):
        ran.append(x)
        return x + 1

    ran = []
    dsk = {"a": (inc, 1), "b": (inc, 2), "c": (inc, 3), "ab": "a", "d": (str, "a")}
    g, keys = _dask.grouped_graph(dsk, ["ab", "b", "c"], 2, "grp", lambda *r: list(r))
    assert keys == [("grp", 0), ("grp", 1)]
    assert {"b", "c", "ab"}.isdisjoint(g) and "a" in g  # "d" takes a, not through the alias
    assert get(g, keys + ["d"]) == ([2, 3], [4], "2")
    assert sorted(ran) == [1, 1, 2, 3]  # "a" ran in its group and for "d", "b" and "c" once


def test_on_a_cluster_a_task_counts_and_writes_several_chunks(tmp_path):
    """On a dask.distributed cluster the histogram pass counts, and the labels' writes store,
    several chunks per task (``group_size``); the values are numpy's, and a pooled histogram of
    two stacks (their graphs merged) is theirs."""
    distributed = pytest.importorskip("distributed")
    zarr = pytest.importorskip("zarr")
    da = pytest.importorskip("dask.array")
    from collections import Counter

    from distributed.utils import key_split

    import napari_gmm as ng
    from napari_gmm import io

    rng = np.random.default_rng(5)
    data = (rng.normal(1000, 60, (32, 64, 64)) + 500 * (rng.random((32, 64, 64)) > 0.6)).astype(np.uint16)
    for name, d in (("a", data), ("b", data[::-1] // 2)):
        z = zarr.create_array(str(tmp_path / f"{name}.zarr"), shape=d.shape, chunks=(2, 16, 16), dtype=d.dtype)
        z[:] = d  # 256 chunks each
    img, img2 = (io.open_image(tmp_path / f"{n}.zarr").data for n in "ab")
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as lc,
        distributed.Client(lc) as client,
    ):
        with distributed.get_task_stream(client) as ts:
            labels, model = ng.segment(img, 3, return_model=True)
            io.write_zarr(tmp_path / "labels.zarr", labels)
        pooled = _dask.pooled_histogram([img, img2])
        floats = (data / 7).astype(np.float32)  # two passes: the range, then the counts
        float_hist = _dask.histogram(da.from_array(floats, chunks=(2, 16, 16)))
    ran = Counter(key_split(r["key"]) for r in ts.data)
    assert ran["napari-gmm-cells"] == 256 // 4 and ran["napari-gmm-store"] == 256 // 4, ran
    # the counts, 2 levels of merges, the stores, and the reader (a data node) for each pass
    assert sum(ran.values()) == 64 + 8 + 1 + 64 + 2 and ran["original-from-zarr-direct"] == 2, ran
    np.testing.assert_array_equal(model.predict(data), ng.segment(data, 3))
    got, _ = io.read_result(tmp_path / "labels.zarr")
    np.testing.assert_array_equal(np.asarray(got), model.predict(data))
    ref = _dask.compress_numpy(np.concatenate([data, data[::-1] // 2]))
    np.testing.assert_array_equal(pooled.counts, ref.counts)
    np.testing.assert_array_equal(float_hist.counts, _dask.compress_numpy(floats).counts)
