"""Lazy readers and the chunk-by-chunk zarr writer (napari_gmm.io)."""

import json
import os
import pickle

import numpy as np
import pytest

pytest.importorskip("zarr")
tifffile = pytest.importorskip("tifffile")
da = pytest.importorskip("dask.array")

import napari_gmm as ng  # noqa: E402
from napari_gmm import io  # noqa: E402
from napari_gmm.datasets import phantom  # noqa: E402


def test_tiff_ome_tiff_npy_read_lazily(tmp_path):
    a = (np.arange(3 * 40 * 50) % 251).astype(np.uint8).reshape(3, 40, 50)
    tifffile.imwrite(tmp_path / "a.tif", a, photometric="minisblack")
    tifffile.imwrite(tmp_path / "b.ome.tif", a, ome=True, metadata={"axes": "TYX"})
    np.save(tmp_path / "c.npy", a)
    for name, axes in (("a.tif", None), ("b.ome.tif", "tyx"), ("c.npy", None)):
        src = io.open_image(tmp_path / name)
        assert isinstance(src.data, da.Array) and src.axes == axes
        np.testing.assert_array_equal(src.data.compute(), a)


def test_rgb_ome_tiff_channel_axis(tmp_path):
    rgb = np.zeros((30, 40, 3), np.uint8)
    tifffile.imwrite(tmp_path / "rgb.ome.tif", rgb, ome=True, photometric="rgb")
    src = io.open_image(tmp_path / "rgb.ome.tif")
    assert src.channel_axis == 2


def test_zarr_round_trip_with_model(tmp_path):
    img, _ = phantom((64, 64), seed=1)
    labels, model = ng.segment(img, 3, return_model=True)
    out = io.write_zarr(
        tmp_path / "lab.zarr", da.from_array(labels, chunks=(32, 32)), attrs={"model": model.to_dict()}, axes="yx"
    )
    data, meta = io.read_result(out)
    np.testing.assert_array_equal(data.compute(), labels)
    assert meta["complete"] is True
    again = ng.MixtureModel.from_dict(meta["model"])
    np.testing.assert_array_equal(again.predict(img), labels)
    src = io.open_image(out)  # OME-NGFF group: axes from the metadata
    assert src.axes == "yx"
    with pytest.raises(ng.InputError, match="exists"):
        io.write_zarr(out, labels)
    io.write_zarr(out, labels + 1, overwrite=True)
    np.testing.assert_array_equal(io.read_result(out)[0].compute(), labels + 1)
    assert [p.name for p in tmp_path.iterdir()] == ["lab.zarr"]  # no temporary left behind


def test_interrupted_write_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    a = da.zeros((64, 64), chunks=(16, 16), dtype=np.uint8)

    def boom(*args, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(da, "store", boom)
    with pytest.raises(KeyboardInterrupt):
        io.write_zarr(tmp_path / "out.zarr", a)
    assert list(tmp_path.iterdir()) == []


def test_unreadable_and_unknown_files(tmp_path):
    (tmp_path / "bad.tif").write_bytes(b"not a tiff at all")
    (tmp_path / "x.png").write_bytes(b"")
    with pytest.raises(ng.InputError, match="bad.tif: cannot be read"):
        io.open_image(tmp_path / "bad.tif")
    with pytest.raises(ng.InputError, match="unknown file type .png"):
        io.open_image(tmp_path / "x.png")
    with pytest.raises(ng.InputError, match="no such file"):
        io.open_image(tmp_path / "missing.tif")
    meta_less = tmp_path / "plain.zarr"
    import zarr

    zarr.open_array(str(meta_less), mode="w", shape=(4, 4), dtype="u1")
    with pytest.raises(ng.InputError, match="not a (complete )?napari-gmm result"):
        io.read_result(meta_less)
    assert json.loads(json.dumps(io._jsonable({"a": np.float32(1.5)}))) == {"a": 1.5}


def _ome_image(path, data, axes, fmt):
    """A minimal OME-Zarr image (one level) written by hand: 0.4 on zarr 2, 0.5 on zarr 3."""
    import zarr

    g = zarr.open_group(str(path), mode="w", zarr_format=fmt)
    g.create_array("0", data=data, chunks=data.shape)
    ms = {
        "axes": [{"name": a, "type": {"c": "channel", "t": "time"}.get(a, "space")} for a in axes],
        "datasets": [
            {
                "path": "0",
                "coordinateTransformations": [{"type": "scale", "scale": [1.0] * (len(axes) - 2) + [0.5, 0.5]}],
            }
        ],
    }
    g.attrs.update(
        {"ome": {"version": "0.5", "multiscales": [ms]}} if fmt == 3 else {"multiscales": [{**ms, "version": "0.4"}]}
    )
    return path


@pytest.mark.parametrize("fmt", [2, 3])
def test_labels_written_into_an_ome_zarr_image(tmp_path, fmt):
    import zarr

    img, _ = phantom((48, 40), seed=2)
    image = _ome_image(tmp_path / "im.zarr", np.stack([img, img[::-1]]), "cyx", fmt)
    before = {p.relative_to(image): p.read_bytes() for p in image.rglob("*") if p.is_file()}
    labels, model = ng.segment(img, 3, return_model=True)
    out = io.write_ome_labels(image, da.from_array(labels, chunks=(24, 20)), attrs={"model": model.to_dict()})
    assert out == image / "labels" / "napari-gmm"
    for rel, content in before.items():  # the image itself is untouched
        assert (image / rel).read_bytes() == content
    group = zarr.open_group(str(out), mode="r")
    attrs = dict(group.attrs)
    ome = attrs["ome"] if fmt == 3 else attrs
    assert group.metadata.zarr_format == fmt
    assert ome["image-label"]["source"] == {"image": "../../"}
    scale = ome["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"]
    assert scale == [1.0, 0.5, 0.5]  # the image's scale: labels overlay it
    np.testing.assert_array_equal(group["0"][:], labels[None])  # a channel axis of length 1
    listed = dict(zarr.open_group(str(image / "labels"), mode="r").attrs)
    assert (listed["ome"] if fmt == 3 else listed)["labels"] == ["napari-gmm"]
    data, meta = io.read_result(out)
    assert ng.MixtureModel.from_dict(meta["model"]).n_components == 3
    with pytest.raises(ng.InputError, match="exists"):
        io.write_ome_labels(image, labels)
    io.write_ome_labels(image, labels, overwrite=True)  # replaced, listed once
    listed = dict(zarr.open_group(str(image / "labels"), mode="r").attrs)
    assert (listed["ome"] if fmt == 3 else listed)["labels"] == ["napari-gmm"]
    with pytest.raises(ng.InputError, match="do not match the image"):
        io.write_ome_labels(image, labels[:10], name="other")
    with pytest.raises(ng.InputError, match="not an OME-Zarr image"):
        io.write_ome_labels(io.write_zarr(tmp_path / "plain.zarr", {"a": labels}), labels)
    assert sorted(p.name for p in (image / "labels").iterdir() if p.name.startswith(".")) in (
        [],
        [".zattrs", ".zgroup"],
    )
    ome_zarr = pytest.importorskip("ome_zarr.reader")
    from ome_zarr.io import parse_url

    nodes = list(ome_zarr.Reader(parse_url(str(image)))())
    assert any(type(s).__name__ == "Label" for n in nodes for s in n.specs)


@pytest.mark.parametrize("fmt", [2, 3])
def test_zarr_whole_chunks_decoded_directly_equal_zarr(tmp_path, fmt, monkeypatch):
    """open_image reads whole stored chunks (and frames of one chunk) by decoding them straight into
    the block (no zarr copy): the same values as zarr for Zstd, Blosc and uncompressed arrays, edge
    chunks, a chunk never written (the fill value), other selections (read through zarr)."""
    import numcodecs
    import zarr
    from zarr.codecs import BloscCodec, ZstdCodec

    part = io._ZarrChunks._chunk_part
    direct = []

    def counted(self, key):
        direct.append(part(self, key))
        return direct[-1]

    monkeypatch.setattr(io._ZarrChunks, "_chunk_part", counted)
    prefixes = []
    read_prefix = io._read_prefix
    monkeypatch.setattr(io, "_read_prefix", lambda *a: prefixes.append(1) or read_prefix(*a))
    streamed = []
    read_streamed = io._read_streamed
    monkeypatch.setattr(io, "_read_streamed", lambda *a: streamed.append(1) or read_streamed(*a))
    try:
        import zstandard
    except ImportError:
        zstandard = None
    rng = np.random.default_rng(3)
    data = rng.integers(0, 4000, (7, 10, 9), dtype=np.uint16)
    want = data.copy()
    want[6] = 7
    if fmt == 3:
        comps = [None, ZstdCodec(), BloscCodec(cname="lz4", shuffle="shuffle")]
    else:
        comps = [None, numcodecs.Zstd(), numcodecs.Blosc("lz4", 5, numcodecs.Blosc.SHUFFLE)]
    for i, comp in enumerate(comps):
        path = str(tmp_path / f"a{i}.zarr")
        z = zarr.create_array(
            path, shape=data.shape, chunks=(3, 4, 4), dtype=data.dtype, zarr_format=fmt, fill_value=7, compressors=comp
        )
        z[:6] = data[:6]  # frame 6's chunks never written: the fill value
        assert io._chunk_decoder(z) is not False
        direct.clear()
        streamed.clear()
        a = io.open_image(path).data
        assert a.chunks == ((3, 3, 1), (4, 4, 2), (4, 4, 1))
        np.testing.assert_array_equal(a.compute(), want)
        assert sum(c is not None for c in direct) == 27
        # whole Zstd chunks in their files decoded while read (zstandard installed): the 18 written
        assert len(streamed) == (18 if zstandard is not None and i == 1 else 0)
        np.testing.assert_array_equal(a[1:5, 2:9, 3].compute(), want[1:5, 2:9, 3])
        np.testing.assert_array_equal(a[[0, 4, 6]].compute(), want[[0, 4, 6]])
        # frames of one chunk, whole along y and x (the burn-in's reads): from the chunk's start
        # only as far as needed (Zstd with zstandard installed), else the whole chunk decoded
        direct.clear()
        prefixes.clear()
        for sl in (np.s_[4:5], np.s_[3:4], np.s_[5:6], np.s_[6:7]):
            np.testing.assert_array_equal(a[sl].compute(), want[sl])
        assert sum(c is not None for c in direct) == 4 * 9
        # frames 4 and 3 of the chunk of frames 3-5 decoded up to them, frame 5 with the whole chunk
        assert len(prefixes) == (18 if zstandard is not None and i == 1 else 0)
    # anything else (a filter) goes through zarr
    f = np.arange(16.0).reshape(4, 4)
    delta = [numcodecs.Delta("<f8")]
    z = zarr.create_array(
        str(tmp_path / "f.zarr"), shape=(4, 4), chunks=(2, 2), dtype="f8", zarr_format=2, filters=delta
    )
    z[:] = f
    assert io._chunk_decoder(z) is False
    np.testing.assert_array_equal(io.open_image(tmp_path / "f.zarr").data.compute(), f)


@pytest.mark.parametrize("damage", ["truncated", "appended", "short", "garbage", "checksum"])
def test_a_damaged_zstd_chunk_file_is_an_error_that_names_it(tmp_path, damage):
    """A whole Zstd chunk decoded while its file is read: a file cut short, with bytes after its
    frame, holding a frame of fewer bytes than the chunk, not Zstd at all, or (stored with Zstd's
    checksum) with a byte changed raises an error that names the chunk's file, never wrong
    values."""
    zstandard = pytest.importorskip("zstandard")
    import zarr
    from zarr.codecs import ZstdCodec

    data = np.arange(2 * 8 * 8, dtype=np.uint16).reshape(2, 8, 8)
    path = tmp_path / "a.zarr"
    codec = ZstdCodec(checksum=damage == "checksum")
    z = zarr.create_array(str(path), shape=data.shape, chunks=(2, 8, 8), dtype=data.dtype, compressors=codec)
    z[:] = data
    chunk = path / "c" / "0" / "0" / "0"
    raw = chunk.read_bytes()
    flipped = bytearray(raw)
    flipped[len(raw) // 2] ^= 0xFF
    damaged = {
        "truncated": raw[: len(raw) // 2],
        "appended": raw + zstandard.ZstdCompressor().compress(b"more"),
        "short": zstandard.ZstdCompressor().compress(data.tobytes()[:100]),
        "garbage": b"not a zstd frame" * 10,
        "checksum": bytes(flipped),
    }[damage]
    chunk.write_bytes(damaged)
    with pytest.raises(ValueError, match="damaged or not this array's") as info:
        io.open_image(path).data.compute(scheduler="synchronous")
    assert str(chunk) in str(info.value)
    # the thread's decoder, reused, is not left broken: the chunk mended reads right in this thread
    chunk.write_bytes(raw)
    np.testing.assert_array_equal(io.open_image(path).data.compute(scheduler="synchronous"), data)


def test_zarr_chunk_prefix_is_read_from_its_file_only_as_far_as_needed(tmp_path, monkeypatch):
    """The first frames of a Zstd chunk in a local file are read from the file's start in blocks,
    only as far as the decoder needs (the burn-in's reads); the same values as zarr. A chunk in
    another store (memory) goes through zarr's store, with the same values."""
    pytest.importorskip("zstandard")
    import zarr
    from zarr.codecs import ZstdCodec

    from napari_gmm._kernels import _config

    monkeypatch.setattr(_config, "PREFIX_READ_BYTES", 16 * 1024)
    data = np.random.default_rng(4).integers(0, 65535, (8, 64, 64), dtype=np.uint16)  # incompressible
    path = tmp_path / "s.zarr"
    z = zarr.create_array(str(path), shape=data.shape, chunks=data.shape, dtype=data.dtype, compressors=ZstdCodec())
    z[:] = data
    size = (path / "c" / "0" / "0" / "0").stat().st_size
    got = []
    read = io._PrefixFile.read
    monkeypatch.setattr(io._PrefixFile, "read", lambda self, n=-1: got.append(read(self, n)) or got[-1])
    r = io._ZarrChunks(zarr.open_array(str(path), mode="r"))
    np.testing.assert_array_equal(r[0:1, 0:64, 0:64], data[:1])
    assert 0 < sum(map(len, got)) < size / 4  # a frame is an eighth of the chunk
    got.clear()
    np.testing.assert_array_equal(r[2:4, 0:64, 0:64], data[2:4])
    assert sum(map(len, got)) < size * 3 / 4
    np.testing.assert_array_equal(r[0:8, 0:64, 0:64], data)  # the whole chunk: its file read whole
    mem = zarr.create_array(zarr.storage.MemoryStore(), shape=data.shape, chunks=data.shape, dtype=data.dtype)
    mem[:] = data
    m = io._ZarrChunks(mem)
    assert m._stored_file((0, 0, 0)) is None and m._codec is not False
    np.testing.assert_array_equal(m[1:3, 0:64, 0:64], data[1:3])
    np.testing.assert_array_equal(m[0:8, 0:64, 0:64], data)


def test_zarr_reader_falls_back_to_zarr_when_its_internals_change(tmp_path):
    """The direct chunk reader uses zarr internals (zarr.core): where they are not as expected, the
    chunks are read through zarr instead, with the same values, and it stops trying."""
    import zarr

    data = np.arange(6 * 4 * 4, dtype=np.uint16).reshape(6, 4, 4)
    z = zarr.create_array(str(tmp_path / "a.zarr"), shape=data.shape, chunks=(3, 4, 4), dtype=data.dtype)
    z[:] = data

    class Changed:  # the array as a zarr without the internal attribute
        def __getattr__(self, name):
            if name == "_async_array":
                raise AttributeError(name)
            return getattr(z, name)

        def __getitem__(self, key):
            return z[key]

    r = io._ZarrChunks(z)
    assert r._codec is not False
    r.z = Changed()
    np.testing.assert_array_equal(r[0:3, 0:4, 0:4], data[:3])
    assert r._codec is False
    np.testing.assert_array_equal(r[3:6, 0:4, 0:4], data[3:])


def test_writes_run_one_thread_more_than_cores_unless_the_user_chose():
    """io.write_zarr's computation on dask's threaded scheduler: one thread more than the cores
    (reads and writes wait on the disk part of the time); the user's choice (a scheduler or
    num_workers in compute_kwargs or in dask's config, another scheduler) is kept as it is."""
    import dask
    from dask.system import CPU_COUNT as cores  # the threaded scheduler's default threads

    assert io._io_threads({}) == {"num_workers": cores + 1}
    assert io._io_threads({"scheduler": "threads"}) == {"scheduler": "threads"}
    assert io._io_threads({"num_workers": 1}) == {"num_workers": 1}
    with dask.config.set(num_workers=5):
        assert io._io_threads({}) == {}
    with dask.config.set(scheduler="synchronous"):
        assert io._io_threads({}) == {}
    with dask.config.set(scheduler="threads"):
        assert io._io_threads({}) == {"num_workers": cores + 1}


def _chunk_files(folder):
    """{relative path: bytes} of the chunk files under ``folder`` (not the metadata)."""
    out = {}
    for f in sorted(folder.rglob("*")):
        if f.is_file() and f.name not in ("zarr.json", ".zarray", ".zattrs", ".zgroup"):
            out[str(f.relative_to(folder))] = f.read_bytes()
    return out


@pytest.mark.parametrize("fmt", [2, 3])
def test_chunk_writer_stores_zarrs_bytes(tmp_path, fmt, monkeypatch):
    """The direct chunk writer (what write_zarr stores with) writes the very bytes zarr writes,
    file for file: every dtype, edge chunks (stored whole, padded with the fill value), an
    incompressible chunk (stored as Blosc's copy), with and without direct I/O, and from dask's
    store on threads; a block that is not one chunk and an array in memory go through zarr."""
    import zarr

    from napari_gmm._kernels import _config

    rng = np.random.default_rng(5)
    cases = [
        (rng.normal(1000, 30, (16, 100, 130)).astype(np.uint16), (8, 64, 64)),
        (rng.normal(1000, 30, (9, 64, 64)).astype(np.float32), (8, 64, 64)),
        (rng.integers(0, 3, (5, 70, 70), dtype=np.uint8), (4, 32, 32)),
        (rng.integers(0, 256, (8, 64, 64), dtype=np.uint8), (8, 64, 64)),  # incompressible
        (rng.normal(0, 1e6, (4, 40, 40)).astype(np.int32), (2, 16, 16)),
    ]
    written = []
    real = io._write_file
    monkeypatch.setattr(io, "_write_file", lambda *a: written.append(a[0]) or real(*a))
    for i, (data, chunks) in enumerate(cases):
        for direct in (True, False):
            monkeypatch.setattr(_config, "DIRECT_WRITES", direct)
            files = []
            for how in ("zarr", "writer"):
                path = tmp_path / f"{i}-{direct}-{how}.zarr"
                z = zarr.create_array(
                    str(path),
                    shape=data.shape,
                    chunks=chunks,
                    dtype=data.dtype,
                    fill_value=3,
                    zarr_format=fmt,
                    compressors=io._compressors(fmt),
                    config={"write_empty_chunks": True},
                )
                if how == "zarr":
                    da.store(da.from_array(data, chunks=chunks), z, lock=False)
                else:
                    w = io._ZarrChunkWriter(z)
                    assert w._dir is not None
                    assert pickle.loads(pickle.dumps(w))._dir == w._dir  # as a cluster worker gets it
                    written.clear()
                    da.store(da.from_array(data, chunks=chunks), w, lock=False, scheduler="threads")
                    assert len(written) == np.prod([-(-n // c) for n, c in zip(data.shape, chunks)])
                np.testing.assert_array_equal(zarr.open_array(str(path))[:], data)
                files.append(_chunk_files(path))
            assert files[0] == files[1] and files[0]
    # not one whole chunk, or not in a local directory: through zarr
    data, chunks = cases[0]
    z = zarr.create_array(
        str(tmp_path / "part.zarr"), shape=data.shape, chunks=chunks, dtype=data.dtype, compressors=io._compressors(3)
    )
    w = io._ZarrChunkWriter(z)
    written.clear()
    w[0:4, 0:64, 0:64] = data[0:4, 0:64, 0:64]
    w[0:8, 64:100, 64:100] = data[0:8, 64:100, 64:100]
    assert written == []
    np.testing.assert_array_equal(z[0:4, 0:64, 0:64], data[0:4, 0:64, 0:64])
    np.testing.assert_array_equal(z[0:8, 64:100, 64:100], data[0:8, 64:100, 64:100])
    mem = zarr.create_array(
        zarr.storage.MemoryStore(), shape=data.shape, chunks=chunks, dtype=data.dtype, compressors=io._compressors(3)
    )
    assert io._ZarrChunkWriter(mem)._dir is None
    # other codecs (zarr's default Zstd): through zarr
    zs = zarr.create_array(str(tmp_path / "zstd.zarr"), shape=data.shape, chunks=chunks, dtype=data.dtype)
    assert io._ZarrChunkWriter(zs)._dir is None


def test_direct_write_falls_back_to_an_ordinary_write(tmp_path, monkeypatch):
    """Where the system refuses direct I/O, at open (a file system without it) or at the write
    (alignment), the chunk is written the ordinary way: the same file."""
    if not hasattr(os, "O_DIRECT"):
        pytest.skip("no O_DIRECT on this system: every write is an ordinary one")
    payload = np.frombuffer(b"napari-gmm" * 1000, np.uint8)
    buf = io._chunk_buffer(payload.size + 16, aligned=True)
    assert buf.ctypes.data % 4096 == 0 and buf.size % 4096 == 0
    buf[: payload.size] = payload
    io._write_file(str(tmp_path / "direct"), buf, payload.size)
    assert (tmp_path / "direct").read_bytes() == payload.tobytes()
    real_open, real_write = os.open, os.write

    def refuse_open(path, flags, *a):
        if flags & os.O_DIRECT:
            raise OSError(22, "Invalid argument")
        return real_open(path, flags, *a)

    monkeypatch.setattr(os, "open", refuse_open)
    io._write_file(str(tmp_path / "no-open"), buf, payload.size)
    monkeypatch.setattr(os, "open", real_open)
    import fcntl

    refused = []

    def refuse_write(fd, data):
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
            refused.append(fd)
            raise OSError(22, "Invalid argument")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", refuse_write)
    io._write_file(str(tmp_path / "no-write"), buf, payload.size)
    assert refused
    for name in ("no-open", "no-write"):
        assert (tmp_path / name).read_bytes() == payload.tobytes()


def test_chunk_files_get_the_permissions_zarr_gives_them(tmp_path):
    """Under a group-writable umask (shared lab folders), the written chunk files are as writable
    by the group as zarr's own."""
    import stat

    import zarr

    data = np.arange(2 * 8 * 8, dtype=np.uint16).reshape(2, 8, 8)
    old = os.umask(0o002)
    try:
        modes = []
        for how in ("zarr", "writer"):
            path = tmp_path / f"{how}.zarr"
            z = zarr.create_array(
                str(path), shape=data.shape, chunks=data.shape, dtype=data.dtype, compressors=io._compressors(3)
            )
            (z if how == "zarr" else io._ZarrChunkWriter(z))[0:2, 0:8, 0:8] = data
            modes.append(stat.S_IMODE((path / "c" / "0" / "0" / "0").stat().st_mode))
    finally:
        os.umask(old)
    assert modes[0] == modes[1] == 0o664


def _resident(path):
    """How many of the file's pages are in the page cache (mincore of a mapping of the file, which
    reads nothing; the test owns the file, so the kernel reports them)."""
    import ctypes
    import mmap

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long)
    libc.mincore.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p)
    libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
    size = os.path.getsize(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        assert addr not in (None, ctypes.c_void_p(-1).value)
        vec = ctypes.create_string_buffer(-(-size // mmap.PAGESIZE))
        assert libc.mincore(addr, size, vec) == 0
        libc.munmap(addr, size)
    finally:
        os.close(fd)
    return sum(b & 1 for b in vec.raw)


def _evict(path):
    """Drop the file's pages from the page cache; whether they are gone (a file system that keeps
    files in memory, e.g. tmpfs, keeps them)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return _resident(path) == 0


@pytest.mark.skipif(not hasattr(os, "RWF_NOWAIT"), reason="direct reads need Linux's RWF_NOWAIT")
@pytest.mark.parametrize("size", [2**20, 2**20 + 1, 3 * 2**20 - 4095])
def test_files_read_once_are_read_past_the_page_cache(tmp_path, size):
    """A chunk file read once (io.reading_once) that is not in the page cache is read with
    O_DIRECT: the same bytes, and the file stays out of the page cache; a file in the page cache,
    a small file, or a read outside reading_once are ordinary reads (which cache the file)."""
    from napari_gmm._kernels import _config

    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8)
    path = str(tmp_path / "c")
    data.tofile(path)
    if not _evict(path):
        pytest.skip("this file system keeps files in memory")
    pages = -(-size // 4096)
    got = io._read_file(path, direct=True)
    np.testing.assert_array_equal(got, data)
    assert got.flags.c_contiguous and got.ctypes.data % _config.DIRECT_IO_ALIGN == 0
    # read past the page cache: only the last page (the check whether it was cached) is there
    assert _resident(path) <= 1
    np.testing.assert_array_equal(io._read_file(path), data)  # an ordinary read caches it
    assert _resident(path) == pages
    np.testing.assert_array_equal(io._read_file(path, direct=True), data)  # cached: from there
    small = str(tmp_path / "small")
    data[: _config.DIRECT_READ_MIN_BYTES - 1].tofile(small)
    assert _evict(small)
    np.testing.assert_array_equal(io._read_file(small, direct=True), data[: _config.DIRECT_READ_MIN_BYTES - 1])
    assert _resident(small) == 256


@pytest.mark.skipif(not hasattr(os, "RWF_NOWAIT"), reason="direct reads need Linux's RWF_NOWAIT")
def test_direct_read_falls_back_to_an_ordinary_read(tmp_path, monkeypatch):
    """Where the system refuses the direct read (the O_DIRECT flag, or the read itself), the file
    is read the ordinary way: same bytes."""
    import fcntl

    data = np.arange(2**21, dtype=np.uint8)
    path = str(tmp_path / "c")
    data.tofile(path)
    if not _evict(path):
        pytest.skip("this file system keeps files in memory")
    real = fcntl.fcntl

    def refuse(fd, cmd, *arg):
        if cmd == fcntl.F_SETFL:
            raise OSError(22, "Invalid argument")
        return real(fd, cmd, *arg)

    monkeypatch.setattr(fcntl, "fcntl", refuse)
    np.testing.assert_array_equal(io._read_file(path, direct=True), data)
    monkeypatch.undo()
    assert _evict(path)
    calls = []
    preadv = os.preadv

    def fail_second(fd, bufs, offset, *flags):
        calls.append(flags)
        if not flags:
            raise OSError(22, "Invalid argument")
        return preadv(fd, bufs, offset, *flags)

    monkeypatch.setattr(os, "preadv", fail_second)
    np.testing.assert_array_equal(io._read_file(path, direct=True), data)
    assert calls == [(os.RWF_NOWAIT,), ()]  # the probe, then the refused direct read
