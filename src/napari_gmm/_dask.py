"""Dask arrays through the pipeline: histograms chunk by chunk, merged; look-ups lazily.

Grey data never materialise: one pass computes the per-chunk ranges, a second the per-chunk
histograms (merged exactly, since the binning is fixed by the global range), and labels, posterior
maps and quantised images are lazy ``map_blocks`` of look-up tables. Multichannel dask arrays are
compressed in memory (their unique colours need the whole array) and looked up lazily.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import weakref
from contextlib import contextmanager
from functools import partial

import numpy as np

from ._validate import InputError, as_flat, label_dtype, move_channels
from .compress import (
    Kind,
    colour_lookup,
    compress_numpy,
    empty_grey,
    grey_counts,
    grey_grid,
    grey_histogram,
    grey_index,
    grey_label_table,
    grey_lookup,
    grey_range,
    grey_spec,
    histogram_from_whole_dtype,
    merge_counts,
    merge_ranges,
    paint_numpy,
    valid_rows,
    whole_dtype_counts,
)

__all__ = ["histogram", "labels", "proba", "paint"]


def _threads(n_tasks):
    """Numba threads per dask task: dask runs the tasks in parallel (threads or cluster workers),
    so each task's kernels get the machine's threads divided by the tasks (at least 1). Parallel
    kernels in every task of a threaded scheduler, or of several worker processes, would
    oversubscribe the cores."""
    from numba import get_num_threads

    return max(1, get_num_threads() // max(1, n_tasks))


def _in_threads(f, n, *args, **kw):
    """``f(*args, **kw)`` with ``n`` Numba threads in the calling thread (restored after)."""
    import numba

    old = numba.get_num_threads()
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    try:
        return f(*args, **kw)
    finally:
        numba.set_num_threads(old)


@contextmanager
def off_worker_slots():
    """Inside a task of a dask.distributed worker, run the enclosed code outside the worker's task
    slots (``distributed.secede``, then ``rejoin`` when done, which waits for a free slot); elsewhere
    do nothing. For reads, which wait on the disk: a worker of one thread otherwise idles its core
    while a read waits, where the threaded scheduler runs a thread more than the cores."""
    worker = None
    if "distributed" in sys.modules:
        from distributed import get_worker

        try:
            worker = get_worker()
        except ValueError:  # not in a worker's task
            worker = None
    if worker is None:
        yield
        return
    from distributed import rejoin, secede

    secede()
    try:
        yield
    finally:
        rejoin()


def task(f, n_tasks):
    """``f`` to run as one of ``n_tasks`` dask tasks (see :func:`_threads`)."""
    return partial(_in_threads, f, _threads(n_tasks))


def _mask_array(image, mask, spatial_chunks):
    import dask.array as da

    if mask is None:
        return None
    return da.asarray(mask).rechunk(spatial_chunks)


def _check_mask(mask, spatial):
    if mask is not None and tuple(np.shape(mask)) != tuple(spatial):
        raise InputError(
            f"mask has shape {tuple(np.shape(mask))} but the image's pixels have shape {tuple(spatial)}: "
            "give a mask with one entry per pixel"
        )


def _flat_mask(m):
    if m is None:
        return np.zeros(0, np.uint8)
    return np.ascontiguousarray(np.asarray(m) != 0).reshape(-1).view(np.uint8)


def _block_range(b, m):
    return grey_range(as_flat(b), _flat_mask(m))


def _block_whole(b, m):
    return whole_dtype_counts(as_flat(b), _flat_mask(m))


def _block_counts(b, m, spec):
    return grey_counts(as_flat(b), _flat_mask(m), spec)


def histogram(image, *, channel_axis=None, mask=None, bins=None):
    """The exact histogram of a dask image (grey: chunk by chunk; colour: in memory)."""
    if channel_axis is not None:
        return compress_numpy(
            np.asarray(image), channel_axis=channel_axis, mask=None if mask is None else np.asarray(mask), bins=bins
        )
    return pooled_histogram([image], [mask], bins=bins)


def pooled_histogram(images, masks=None, *, bins=None):
    """One exact grey histogram of several dask images together (a pooled fit): each chunk is
    counted on the binning fixed by the images' common range, and the counts merge exactly."""
    import dask.array as da

    masks = masks or [None] * len(images)
    dtypes = {np.dtype(im.dtype) for im in images}
    if len(dtypes) > 1:
        raise InputError(
            f"images of different dtypes ({', '.join(sorted(map(str, dtypes)))}) cannot share one "
            "histogram: convert them to one dtype, or fit each on its own"
        )
    for im, mask in zip(images, masks):
        _check_mask(mask, im.shape)
    marrays = [_mask_array(im, mask, im.chunks) for im, mask in zip(images, masks)]
    n_blocks = sum(im.npartitions for im in images)

    def per_block(f, *args):
        """``f(block, mask block, *args)`` of every block of every image, as delayed results:
        one task per block that reads it and computes ``f`` (dask fuses the read into it), so
        that no block is kept between two tasks (on a cluster: stored, counted and looked up)."""
        f = task(f, n_blocks)
        out = []
        for im, m in zip(images, marrays):
            one = (1,) * im.ndim
            cell = partial(_in_cell, f, args=args)
            # ``meta`` given: dask does not call the count on an empty block to learn its type
            # (which loaded its compiled kernel in the client: 0.26 s of the command line's time)
            meta = np.empty((0,) * im.ndim, object)
            blocks = da.map_blocks(cell, im, *(() if m is None else (m,)), chunks=one, dtype=object, meta=meta)
            out += list(blocks.to_delayed().ravel())
        return out

    dtype = dtypes.pop()
    if dtype.kind in "ui" and dtype.itemsize <= 2:  # one pass: whole-dtype counts add up exactly
        if bins is not None:
            grey_spec(dtype, 0, 0, bins)  # the InputError for bins on integer data
        return histogram_from_whole_dtype(_tree_merge(per_block(_block_whole), _sum_counts), dtype)
    rng = _tree_merge(per_block(_block_range), merge_ranges)
    if rng[2] == 0:
        return empty_grey(rng, dtype)
    spec = grey_spec(dtype, rng[0], rng[1], bins)
    parts = per_block(_block_counts, spec)
    return grey_histogram(_tree_merge(parts, partial(merge_counts, spec=spec)), spec, rng, dtype)


def _in_cell(f, b, m=None, *, args):
    """``f(b, m, *args)`` in a 1-element object array of ``b``'s dimensions (a block of
    ``map_blocks``)."""
    out = np.empty((1,) * b.ndim, object)
    out.flat[0] = f(b, m, *args)
    return out


def _merge_cells(merge, cells):
    """``merge`` of the results in the 1-element blocks ``cells`` (see :func:`_in_cell`)."""
    return merge([c.flat[0] for c in cells])


def _sum_counts(parts):
    return sum(parts[1:], parts[0].copy())


def cluster_threads(get) -> int:
    """The worker threads of the dask.distributed cluster whose client's ``get`` (a bound method)
    ``get`` is, or 0 for any other scheduler."""
    client = getattr(get, "__self__", None)
    if type(client).__module__.split(".")[0] != "distributed":
        return 0
    try:
        return max(1, sum(client.nthreads().values()))
    except Exception:  # the scheduler's answer is only a hint
        return 1


def group_size(n_tasks, threads) -> int:
    """How many of ``n_tasks`` like tasks (a chunk each) one task runs on a cluster of ``threads``
    worker threads (0: not a cluster; see ``_config.CLUSTER_GROUP``): every task costs the
    worker's event loop and the scheduler a few ms of CPU, taken from the cores the tasks run on,
    while enough tasks stay to keep every thread busy to the end."""
    from ._kernels._config import CLUSTER_GROUP, CLUSTER_TASKS_PER_THREAD

    if threads <= 0:
        return 1
    return max(1, min(CLUSTER_GROUP, n_tasks // (CLUSTER_TASKS_PER_THREAD * threads)))


def alias_target(g, key):
    """The key an alias ``key`` in the graph ``g`` (of ``dask._task_spec`` nodes) stands for,
    through a chain of aliases; ``key`` itself when it is no alias."""
    from dask._task_spec import Alias

    while isinstance(g.get(key), Alias):
        (key,) = g[key].dependencies
    return key


def grouped_graph(dsk, keys, size, name, combine, *args):
    """``(graph, group keys)``: the graph ``dsk`` (materialised) in which the tasks of ``keys``,
    taken ``size`` at a time in order, run inside tasks of their own, keyed ``(name, i)``, that
    return ``combine(*args, *their results)``; the tasks of ``keys`` (and the aliases on the way
    to them) leave the graph. A key that another task also takes keeps its task (the group then
    runs it again). For tasks whose only user is the caller: a chunk's count, a chunk's store."""
    from dask._task_spec import Task, convert_legacy_graph

    g = convert_legacy_graph(dict(dsk))
    targets = [alias_target(g, k) for k in keys]
    groups = []
    for i in range(0, len(targets), size):
        key = (name, i // size)
        g[key] = Task(key, combine, *args, *(g[t] for t in targets[i : i + size]))
        groups.append(key)
    taken = set().union(*(t.dependencies for t in g.values()))
    for k in dict.fromkeys([*keys, *targets]):
        if k not in taken:
            del g[k]
    return g, groups


def _merge_cells_of(merge, *cells):
    """:func:`_merge_cells` of the cells given one by one (the blocks a task of a cluster's
    histogram pass counts inside it, see :func:`_tree_merge`)."""
    return _merge_cells(merge, cells)


def _merge_parts(merge, *parts):
    return merge(list(parts))


def _tree_merge(cells, merge, fan_in=8):
    """The per-block results in ``cells`` (delayed 1-element blocks, see :func:`_in_cell`) merged
    by ``merge(list)`` in a tree of tasks of ``fan_in`` inputs, computed: the merges run where the
    parts are (threads or cluster workers), so neither the memory of all parts at once (476
    chunks x 512 KiB of 16-bit counts) nor their transfer to the client is paid, only one merged
    result. On a dask.distributed cluster the blocks are counted several to a task, inside the
    tree's first merges (see :func:`grouped_graph`)."""
    import dask
    from dask.base import get_scheduler

    get = get_scheduler(collections=cells[:1])
    size = group_size(len(cells), cluster_threads(get))
    if size > 1:
        from dask._task_spec import Task, TaskRef
        from dask.base import tokenize

        graphs = {id(c.dask): c.dask for c in cells}
        dsk = {k: v for g in graphs.values() for k, v in g.items()}
        keys = [c.key for c in cells]
        token = tokenize(keys, merge)
        g, parts = grouped_graph(dsk, keys, size, "napari-gmm-cells-" + token, _merge_cells_of, merge)
        name = "napari-gmm-merge-" + token
        level = 0
        while len(parts) > 1:
            level += 1
            new = []
            for i in range(0, len(parts), fan_in):
                key = (name, level, i // fan_in)
                g[key] = Task(key, _merge_parts, merge, *map(TaskRef, parts[i : i + fan_in]))
                new.append(key)
            parts = new
        return get(g, parts[0])

    first = partial(_merge_cells, merge)
    parts = [dask.delayed(first)(cells[i : i + fan_in]) for i in range(0, len(cells), fan_in)]
    while len(parts) > 1:
        parts = [dask.delayed(merge)(parts[i : i + fan_in]) for i in range(0, len(parts), fan_in)]
    return dask.compute(parts[0])[0]


# --------------------------------------------------------------------------------------------
# look-ups per block


def _grey_labels_block(b, m=None, *, spec, lut):
    out = chunk_buffer(b.size, lut.dtype)
    grey_lookup(as_flat(b), _flat_mask(m), spec, lut, out)
    return out.reshape(b.shape)


def _grey_proba_block(b, m=None, *, spec, table):
    idx = grey_index(as_flat(b), _flat_mask(m), spec)
    K = table.shape[1]
    out = np.empty((K, b.size), np.float32)
    for k in range(K):
        np.take(table[:, k], idx, out=out[k])
    return out.reshape((K,) + b.shape)


def _colour_block(b, m=None, *, hist, fns, what, ch):
    a, spatial = move_channels(b, ch)
    mf = _flat_mask(m)
    K = fns.n_components
    if what == "labels":
        out = np.zeros(a.shape[0], label_dtype(K))
        if hist.kind == Kind.COLOUR:
            lut = (fns.labels(hist.values) + 1).astype(out.dtype)
            colour_lookup(a, mf, hist, lut, out)
        else:
            valid = valid_rows(a, mf)
            out[valid] = fns.labels(a[valid]) + 1
        return out.reshape(spatial)
    valid = valid_rows(a, mf)
    out = np.zeros((K, a.shape[0]), np.float32)
    out[:, valid] = fns.proba(a[valid]).T
    return out.reshape((K,) + tuple(spatial))


def _colour_lazy(fns, image, hist, channel_axis, mask, what):
    import dask.array as da

    ch = channel_axis % image.ndim
    image = image.rechunk({ch: -1})
    spatial_chunks = tuple(c for i, c in enumerate(image.chunks) if i != ch)
    spatial = tuple(s for i, s in enumerate(image.shape) if i != ch)
    _check_mask(mask, spatial)
    K = fns.n_components
    # blocks keep their channel axis; outputs drop it (labels) or replace it by K in front (proba)
    kw = dict(hist=hist, fns=fns, what=what, ch=ch)
    args = [image] if mask is None else [image, _spatial_mask_with_channel(mask, image, ch)]
    if what == "labels":
        return da.map_blocks(
            task(_colour_block, image.npartitions),
            *args,
            drop_axis=ch,
            chunks=spatial_chunks,
            dtype=label_dtype(K),
            **kw,
        )
    return da.map_blocks(
        task(_colour_block, image.npartitions),
        *args,
        drop_axis=ch,
        new_axis=0,
        chunks=((K,),) + spatial_chunks,
        dtype=np.float32,
        **kw,
    )


def _spatial_mask_with_channel(mask, image, ch):
    """The mask with a length-1 channel axis, chunked like the image, for map_blocks alignment."""
    import dask.array as da

    m = da.asarray(mask)
    m = da.expand_dims(m, ch)
    return m.rechunk(tuple(c if i != ch else (1,) for i, c in enumerate(image.chunks)))


def labels(fns, image, hist, *, channel_axis=None, mask=None):
    """Lazy labels 1..K of a dask image."""
    if channel_axis is not None:
        return _colour_lazy(fns, image, hist, channel_axis, mask, "labels")
    import dask.array as da

    _check_mask(mask, image.shape)
    lut = grey_label_table(fns, hist)
    if mask is None:
        return image.map_blocks(task(_grey_labels_block, image.npartitions), spec=hist.spec, lut=lut, dtype=lut.dtype)
    return da.map_blocks(
        task(_grey_labels_block, image.npartitions),
        image,
        da.asarray(mask).rechunk(image.chunks),
        spec=hist.spec,
        lut=lut,
        dtype=lut.dtype,
    )


def proba(fns, image, hist, *, channel_axis=None, mask=None):
    """Lazy posterior maps (K, *pixels) float32 of a dask image."""
    if channel_axis is not None:
        return _colour_lazy(fns, image, hist, channel_axis, mask, "proba")
    import dask.array as da

    _check_mask(mask, image.shape)
    grid = grey_grid(hist)
    K = fns.n_components
    table = np.zeros((grid.shape[0] + 1, K), np.float32)
    table[:-1] = fns.proba(grid)
    args = [image] if mask is None else [image, da.asarray(mask).rechunk(image.chunks)]
    return da.map_blocks(
        task(_grey_proba_block, image.npartitions),
        *args,
        new_axis=0,
        chunks=((K,),) + image.chunks,
        dtype=np.float32,
        spec=hist.spec,
        table=table,
    )


def _paint_block(b, lab, *, table, ch):
    return paint_numpy(b, lab, table, ch)


def paint(image, labels, table, *, channel_axis=None):
    """Lazy quantised image: labelled pixels replaced by ``table[label - 1]``."""
    import dask.array as da

    image = da.asarray(image)
    labels = da.asarray(labels)
    if channel_axis is None:
        labels = labels.rechunk(image.chunks)
        return da.map_blocks(
            task(_paint_block, image.npartitions), image, labels, table=table, ch=None, dtype=image.dtype
        )
    ch = channel_axis % image.ndim
    image = image.rechunk({ch: -1})
    lab = da.expand_dims(labels, ch).rechunk(tuple(c if i != ch else (1,) for i, c in enumerate(image.chunks)))
    return da.map_blocks(
        task(_paint_colour_block, image.npartitions), image, lab, table=table, ch=ch, dtype=image.dtype
    )


def _paint_colour_block(b, lab, *, table, ch):
    return paint_numpy(b, np.take(lab, 0, axis=ch), table, ch)


def aligned_empty(size):
    """An uninitialised uint8 array of ``size`` bytes rounded up to whole ``DIRECT_IO_ALIGN``
    blocks, starting at such a boundary."""
    from ._kernels._config import DIRECT_IO_ALIGN as a

    return _aligned_part(np.empty(-(-size // a) * a + a, np.uint8), size)


def _aligned_part(raw, size):
    """The part of uint8 array ``raw`` (at least ``DIRECT_IO_ALIGN`` bytes more than ``size``) that
    starts at a ``DIRECT_IO_ALIGN`` boundary and holds ``size`` bytes rounded up to whole blocks."""
    from ._kernels._config import DIRECT_IO_ALIGN as a

    start = -raw.ctypes.data % a
    return raw[start : start + -(-size // a) * a]


def pooling():
    """Whether :func:`chunk_buffer` hands out reused buffers (glibc's thresholds fixed by the
    environment: a dask.distributed worker)."""
    return _POOL.on()


def chunk_buffer(shape, dtype=np.uint8, aligned=False):
    """``np.empty(shape, dtype)`` (C order; ``aligned``: a 1-D uint8 array starting at a
    ``DIRECT_IO_ALIGN`` boundary, see :func:`aligned_empty`) for a chunk read or written, from
    :data:`_POOL` where glibc's thresholds are fixed (see ``_config.CHUNK_BUFFER_POOL_BYTES``):
    there every new chunk-sized buffer is a fresh mapping whose pages the system zeroes (on a
    cluster worker, 12 % of the samples of a segmentation's profile). Only for arrays a task
    makes (a block read, labels, a compressed chunk, a background step's outputs, a block of
    whole frames of masks): the buffer is reused once the array and every view of it are gone."""
    if not _POOL.on():
        return aligned_empty(shape) if aligned else np.empty(shape, dtype)
    return _POOL.empty(shape, dtype, aligned)


class _BufferPool:
    """Freed chunk buffers kept for reuse, up to ``_config.CHUNK_BUFFER_POOL_BYTES`` in all.

    A buffer is handed out as a view of a fresh array that does not own its memory (a
    ``np.frombuffer`` of the kept buffer): numpy makes every view of a view refer to that array
    (its ``base``), so the buffer goes back to the pool when the array and every view of it are
    gone (``weakref.finalize``), never while a view is alive."""

    def __init__(self):
        self._free = []  # uint8 arrays
        # reentrant: a garbage collection inside _take may free a pooled array in the same thread
        self._lock = threading.RLock()
        self._on = None

    def on(self):
        if self._on is None:
            fixed = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")
            tunables = os.environ.get("GLIBC_TUNABLES", "")
            self._on = any(k in os.environ for k in fixed) or any(
                f"glibc.malloc.{t}=" in tunables for t in ("trim_threshold", "mmap_threshold", "top_pad", "mmap_max")
            )
        return self._on

    def empty(self, shape, dtype, aligned):
        from ._kernels._config import DIRECT_IO_ALIGN as a

        dtype = np.dtype(dtype)
        shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
        nbytes = math.prod(shape) * dtype.itemsize
        need = nbytes + a if aligned else nbytes
        buf = self._take(need)
        # through a memoryview: numpy would make an array of an array a view of it, and views of
        # views would then refer to ``buf``, not to ``root``
        root = np.frombuffer(memoryview(buf), np.uint8)
        weakref.finalize(root, self._give_back, buf)
        if aligned:
            return _aligned_part(root, nbytes)
        return root[:nbytes].view(dtype).reshape(shape)

    def _take(self, need):
        """The smallest kept buffer of ``need`` to 1.5 x ``need`` bytes, else a new one of ``need``
        rounded up to a multiple of a 16th of the power of 2 below it (compressed chunks differ in
        size: they then share buffers)."""
        with self._lock:
            fits = [i for i, b in enumerate(self._free) if need <= b.size <= need * 3 // 2]
            if fits:
                return self._free.pop(min(fits, key=lambda i: self._free[i].size))
        step = max(4096, 2 ** max(need.bit_length() - 5, 0))
        return np.empty(-(-need // step) * step, np.uint8)

    def _give_back(self, buf):
        from ._kernels._config import CHUNK_BUFFER_POOL_BYTES

        with self._lock:
            if sum(b.size for b in self._free) + buf.size <= CHUNK_BUFFER_POOL_BYTES:
                self._free.append(buf)


_POOL = _BufferPool()
