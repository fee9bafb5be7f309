"""Reading images lazily and writing results chunk by chunk, with the model beside the data.

Readers return dask arrays, so that nothing larger than a chunk is loaded before it is needed:

* TIFF / OME-TIFF (``.tif``, ``.tiff``, ``.ome.tif``): through tifffile's zarr view of the file;
* zarr and OME-Zarr (``.zarr``): an array, or the first (full-resolution) level of an OME-NGFF
  image group, with its axis names;
* NumPy ``.npy`` files, memory-mapped.

:func:`write_zarr` writes an array (NumPy or dask) chunk by chunk into an OME-NGFF image group
(one resolution level, array ``"0"``) whose attributes hold ``"napari_gmm"``: the model, the
parameters, the input and ``"complete": true``. It writes under a temporary name and renames the
result into place only when every chunk is written, so an interrupted run never leaves an output
that looks complete; an existing output is replaced only with ``overwrite=True``.

Needs the ``io`` extra (``pip install "napari-gmm[io]"``: tifffile, zarr, dask).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import threading
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._dask import chunk_buffer as _chunk_buffer
from ._validate import InputError

__all__ = ["ImageSource", "open_image", "write_zarr", "write_ome_labels", "read_result", "SUFFIXES"]

#: file name endings the readers know (lower case)
SUFFIXES = (".ome.tif", ".ome.tiff", ".tif", ".tiff", ".zarr", ".npy")


@dataclass
class ImageSource:
    """A lazily opened image: its dask array, its axis names where the file says them, and where
    it came from."""

    path: Path
    data: object  # dask.array.Array
    axes: str | None = None  # e.g. "tczyx" (OME), lower case; None when the file does not say
    attrs: dict = field(default_factory=dict)

    @property
    def channel_axis(self) -> int | None:
        """The axis named ``"c"``, if the file names its axes and has one with more than 1 entry."""
        if self.axes and "c" in self.axes and self.data.shape[self.axes.index("c")] > 1:
            return self.axes.index("c")
        return None


def _need(module):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise InputError(
            f'reading and writing files needs the package {module!r}: pip install "napari-gmm[io]"'
        ) from None


def _suffix(path: Path) -> str:
    name = path.name.lower().rstrip("/")
    for s in SUFFIXES:
        if name.endswith(s):
            return s
    return path.suffix.lower()


def open_image(path) -> ImageSource:
    """Open a TIFF/OME-TIFF, zarr/OME-Zarr or .npy image lazily, as a dask array.

    Raises
    ------
    InputError
        For a path that does not exist, an unknown file type, or a file that cannot be read (the
        message names the file and what went wrong).
    """
    da = _need("dask.array")
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    kind = _suffix(path)
    try:
        if kind in (".ome.tif", ".ome.tiff", ".tif", ".tiff"):
            tifffile = _need("tifffile")
            _need("zarr")
            with tifffile.TiffFile(path) as tf:
                axes = tf.series[0].axes.lower() if tf.is_ome else None
            arr = _TiffArray(path)
            return ImageSource(path, da.from_array(arr, chunks=arr.chunks, asarray=False), _known_axes(axes, arr.ndim))
        if kind == ".zarr":
            return _open_zarr(path, da)
        if kind == ".npy":
            return ImageSource(path, da.from_array(np.load(path, mmap_mode="r")))
    except InputError:
        raise
    except Exception as e:  # a corrupt or unreadable file: say which and why
        raise InputError(f"{path}: cannot be read ({type(e).__name__}: {e})") from None
    raise InputError(f"{path}: unknown file type {kind or '(none)'}; napari-gmm reads {', '.join(SUFFIXES)}")


class _TiffArray:
    """A TIFF file's first series as an array-like that reads only the requested region (through
    tifffile's zarr view) and pickles as its path, so that dask can ship it to cluster workers
    (tifffile's store holds an open file and a lock, which do not pickle)."""

    def __init__(self, path):
        self.path = str(path)
        z = self._zarr()
        self.shape, self.dtype, self.ndim = z.shape, z.dtype, z.ndim
        self.chunks = tuple(z.chunks)

    def _zarr(self):
        z = _OPEN.get(self.path)
        if z is None:
            import tifffile
            import zarr

            z = zarr.open(tifffile.imread(self.path, aszarr=True), mode="r")
            if not hasattr(z, "shape"):  # a pyramid: its full-resolution level
                z = z["0"]
            _OPEN[self.path] = z
        return z

    def __getitem__(self, key):
        return self._zarr()[key]


#: TIFF files opened by this process (worker), by path
_OPEN: dict = {}


def _known_axes(axes, ndim):
    if axes and len(axes) == ndim:
        return axes.replace("s", "c")  # tifffile calls RGB samples "S"
    return None


def _plain_compressor(z):
    """The compressor of zarr array ``z`` when its chunks are stored as plain C-ordered bytes in
    native byte order with at most that one compressor (zarr 3: bytes codec + one codec; zarr 2:
    no filters, C order): the codec object (zarr's or numcodecs'), None for no compression, or
    ``False`` for anything else (filters, sharding, transposes, several codecs, non-native byte
    order, Fortran order, dtypes that are not numbers, zarr formats other than 2 and 3)."""
    import sys

    try:
        meta = z.metadata
        dtype = np.dtype(z.dtype)
        if dtype.kind not in "uif" or not dtype.isnative:
            return False
        if meta.zarr_format == 3:
            from zarr.codecs import BytesCodec

            codecs = tuple(meta.codecs)
            if not codecs or not isinstance(codecs[0], BytesCodec):
                return False
            endian = codecs[0].endian
            if dtype.itemsize > 1 and endian is not None and getattr(endian, "value", endian) != sys.byteorder:
                return False
            rest = codecs[1:]
        elif meta.zarr_format == 2:
            if meta.filters or meta.order != "C":
                return False
            rest = () if meta.compressor is None else (meta.compressor,)
        else:
            return False
    except (AttributeError, TypeError, ImportError):
        return False
    if len(rest) > 1:
        return False
    return rest[0] if rest else None


def _chunk_decoder(z):
    """A numcodecs codec that decodes a stored chunk of zarr array ``z`` straight into a C-ordered
    array of the chunk's shape (a ``numcodecs.Zstd()`` or ``numcodecs.Blosc()``, or None for no
    compression), or ``False`` when the array's codecs are anything else (see
    :func:`_plain_compressor`; other compressors): those chunks are read through zarr."""
    codec = _plain_compressor(z)
    if codec is None or codec is False:
        return codec
    try:
        import numcodecs
    except ImportError:
        return False
    name = type(codec).__name__
    if name in ("ZstdCodec", "Zstd"):
        return numcodecs.Zstd()
    if name in ("BloscCodec", "Blosc"):
        return numcodecs.Blosc()
    return False


class _ZarrChunks:
    """A zarr array as dask's source of blocks: a request within one stored chunk that takes the
    chunk whole along every axis but the first (what dask asks for when its chunks are the
    array's, and a time-first stack's frames taken from one chunk) is read as the chunk's bytes and
    decoded straight into the returned array; every other request is zarr's ``z[key]``. The values
    are zarr's.

    zarr 3 decodes a chunk into a new buffer and copies it into a second, fresh array (on a 16 MiB
    chunk of the big-data benchmark, 2.6 of its 18.5 ms of CPU from the page cache: the copy and
    the fresh pages); the background job decodes 888 such chunks of the 8 GB stack. Frames from the
    start of a Zstd chunk are decoded only as far as the last one asked for, when the ``zstandard``
    package is installed (a streamed decode: a frame of an 8-frame chunk of the benchmark's stack
    took 2.4 ms of CPU for the first, 9.7 for the fourth, 17.6 for the last, against 14.8 ms for
    the whole chunk at once): the background job's burn-in takes one frame of each chunk it reads.
    A chunk in a local directory (zarr's ``LocalStore``) is read from its file directly (see
    :func:`_read_file`): a whole Zstd chunk decoded while the file is read (:func:`_read_streamed`;
    not for the background job's tiles, which read the chunks not in the page cache past it,
    :func:`reading_once`: streamed from the page cache, that job took 25.7 / 27.8 s against 25.5 /
    25.3 s on the 8 GB stack), and when only its first frames are asked for, from the file's
    start only as far as the decoder needs (:class:`_PrefixFile`). Arrays whose codecs are
    anything but bytes + Zstd or Blosc (see :func:`_chunk_decoder`), and missing chunks (the fill
    value), are read through zarr. Pickles as the zarr array (for cluster workers)."""

    def __init__(self, z):
        self.z = z
        self.shape, self.dtype, self.ndim = tuple(z.shape), np.dtype(z.dtype), z.ndim
        self.chunks = tuple(z.chunks)
        self._codec = _chunk_decoder(z)
        self._stream = None
        if type(self._codec).__name__ == "Zstd":
            try:
                import zstandard

                self._stream = zstandard.ZstdDecompressor
            except ImportError:
                pass

    def __reduce__(self):
        return _ZarrChunks, (self.z,)

    def _chunk_part(self, key):
        """(chunk coordinates, first, end) when ``key`` selects the entries ``first:end`` along the
        first axis of one stored chunk and the chunk whole along the others, else None."""
        if not isinstance(key, tuple) or len(key) != self.ndim or self.ndim == 0:
            return None
        s, n, c = key[0], self.shape[0], self.chunks[0]
        rest = _whole_chunk(key[1:], self.shape[1:], self.chunks[1:])
        if rest is None or not isinstance(s, slice) or s.step not in (None, 1):
            return None
        start, stop = s.start or 0, n if s.stop is None else s.stop
        c0 = start // c * c
        if not (0 <= start < stop <= min(n, c0 + c)):
            return None
        return (start // c,) + rest, start - c0, stop - c0

    def _stored_bytes(self, coords):
        """The stored bytes of chunk ``coords`` as a uint8 array, or None when it is missing or
        when this zarr's internals (``zarr.core``, not public API) are not the ones this was
        written for: the chunk is then read through zarr, and this reader stops trying."""
        try:
            from zarr.core.buffer import default_buffer_prototype
            from zarr.core.sync import sync

            z = self.z
            stored = z._async_array.store_path / z.metadata.encode_chunk_key(coords)
            raw = sync(stored.get(prototype=default_buffer_prototype()))
            return None if raw is None else raw.as_numpy_array()
        except (ImportError, AttributeError, TypeError):
            self._codec = False
            return None

    def _stored_file(self, coords):
        """The path of chunk ``coords``'s file when the array is in a local directory (zarr's
        ``LocalStore``) and the file exists, else None."""
        folder = _local_array_dir(self.z)
        if folder is None:
            return None
        path = os.path.join(folder, self.z.metadata.encode_chunk_key(coords))
        return path if os.path.isfile(path) else None

    def __getitem__(self, key):
        part = None if self._codec is False else self._chunk_part(key)
        if part is not None:
            coords, first, end = part
            # the stored chunk's shape (the last chunk along an axis is stored whole), or its
            # first ``end`` entries along the first axis
            n = end if self._stream is not None and end < self.chunks[0] else self.chunks[0]
            path = self._stored_file(coords)
            if path is not None and n < self.chunks[0]:
                # frames from the start of a chunk in a local file: read from the file only as far
                # as the decoder needs (the background job's burn-in reads one frame of most chunks)
                out = _chunk_buffer((n,) + self.chunks[1:], self.dtype)
                with _PrefixFile(path) as f:
                    _read_prefix(self._stream, f, out.reshape(-1).view(np.uint8), f.block)
                return out[(slice(first, end),) + self._edge(coords)]
            if path is not None and self._stream is not None and not _once.on:
                # a whole Zstd chunk in a local file: decoded while the file is read
                out = _chunk_buffer(self.chunks, self.dtype)
                _read_streamed(self._stream, path, out.reshape(-1).view(np.uint8))
                return out[(slice(first, end),) + self._edge(coords)]
            raw = _read_file(path, direct=_once.on) if path is not None else self._stored_bytes(coords)
            if raw is not None:
                out = _chunk_buffer((n,) + self.chunks[1:], self.dtype)
                flat = out.reshape(-1).view(np.uint8)
                if self._codec is None:
                    flat[...] = raw[: flat.size]
                elif n < self.chunks[0]:
                    _read_prefix(self._stream, raw, flat)
                else:
                    self._codec.decode(raw, out=out)
                return out[(slice(first, end),) + self._edge(coords)]
        return self.z[key]

    def _edge(self, coords):
        """The part of stored chunk ``coords`` inside the array, along every axis but the first."""
        return tuple(slice(0, min(c, m - k * c)) for k, c, m in zip(coords[1:], self.chunks[1:], self.shape[1:]))


class _ReadingOnce(threading.local):
    on = False


_once = _ReadingOnce()


@contextmanager
def reading_once():
    """Chunk files read in this thread inside the block are read once by the job: those not in the
    page cache are read past it (see :func:`_read_file`)."""
    before, _once.on = _once.on, True
    try:
        yield
    finally:
        _once.on = before


def _read_file(path, direct=False):
    """The bytes of the file ``path`` as a uint8 array, read straight into it (zarr's own read of
    a local chunk goes through its event loop, a bytes object and a copy: on the 8 GB stack's 16
    MiB chunks from the page cache, 3 threads, 6.5 against 5.7 s of CPU per 400 chunks).

    ``direct`` (a file the job reads once, ``_config.DIRECT_READS``): a file of at least
    ``DIRECT_READ_MIN_BYTES`` whose last block is not in the page cache is read with ``O_DIRECT``,
    from the disk into an aligned array without the page cache (see ``_config.DIRECT_READS``);
    where the system refuses any of it (not Linux, a kernel without ``RWF_NOWAIT``, a file system
    without direct I/O), an ordinary read."""
    if direct:
        got = _read_file_direct(path)
        if got is not None:
            return got
    with open(path, "rb", buffering=0) as f:
        size = os.fstat(f.fileno()).st_size
        buf = _chunk_buffer(size)
        view = memoryview(buf)
        got = 0
        while got < size:
            k = f.readinto(view[got:])
            if not k:
                return buf[:got]
            got += k
    return buf


def _read_file_direct(path):
    """:func:`_read_file` with ``O_DIRECT`` when the file is large, not in the page cache, and the
    system allows it; else None."""
    from ._kernels._config import DIRECT_IO_ALIGN, DIRECT_READ_MIN_BYTES, DIRECT_READS

    if not DIRECT_READS or not hasattr(os, "O_DIRECT") or not hasattr(os, "RWF_NOWAIT"):
        return None
    import fcntl

    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        if size < DIRECT_READ_MIN_BYTES:
            return None
        # is the file's last block in the page cache? Asked without waiting, which starts reading
        # that block (only that one: no read-ahead on this descriptor). The last block, not the
        # first: a read of the first frames (the burn-in, _PrefixFile) caches the file's start
        last = (size - 1) // DIRECT_IO_ALIGN * DIRECT_IO_ALIGN
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
            os.preadv(fd, [bytearray(size - last)], last, os.RWF_NOWAIT)
            return None  # in the page cache: read from there
        except BlockingIOError:  # not in the page cache
            pass
        buf = _chunk_buffer(size, aligned=True)
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_DIRECT)
        view = memoryview(buf)  # whole aligned blocks: the last one past the end of the file
        got = 0
        while got < size:
            k = os.preadv(fd, [view[got:]], got)
            if not k:
                return buf[:got]
            got += k
        return buf[:size]
    except OSError:  # RWF_NOWAIT or O_DIRECT refused (or a short read left an unaligned offset)
        return None
    finally:
        os.close(fd)


class _PrefixFile:
    """A chunk's file, read in blocks of ``PREFIX_READ_BYTES`` from its start only as far as a
    reader asks, with the kernel's read-ahead off (``POSIX_FADV_RANDOM``): the read-ahead (8 MiB
    on the benchmark machine) otherwise read most of the file anyway.

    Measured on the 8 GB stack's burn-in reads (400 chunk prefixes, cold page cache, 3 threads):
    the whole file through zarr 5.64 GB from disk, 6.5 s, 9.3-9.6 s of CPU; streamed from the file
    with read-ahead 5.14 GB, 4.2 s, 5.7 s; this, 1 MiB blocks, 3.40 GB, 3.2-3.8 s, 4.6-5.4 s
    (2 MiB blocks 3.57 GB, 3.6-3.7 s; 4 MiB 3.96 GB, 4.5 s)."""

    def __init__(self, path):
        from ._kernels._config import PREFIX_READ_BYTES

        self.block = PREFIX_READ_BYTES
        self.fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        self.pos = 0
        if hasattr(os, "posix_fadvise"):
            try:
                os.posix_fadvise(self.fd, 0, 0, os.POSIX_FADV_RANDOM)
            except OSError:
                pass

    def read(self, n=-1):
        n = self.block if n is None or n < 0 else max(n, self.block)
        data = os.pread(self.fd, n, self.pos) if hasattr(os, "pread") else self._seek_read(n)
        self.pos += len(data)
        return data

    def _seek_read(self, n):
        os.lseek(self.fd, self.pos, os.SEEK_SET)
        return os.read(self.fd, n)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        os.close(self.fd)


#: per thread, the Zstd decompressor that :func:`_read_streamed` reuses
_decoders = threading.local()


def _decoder(decompressor):
    """This thread's Zstd decompressor (``decompressor()`` the first time), reused: a fresh one
    allocates its window (MiBs) every time, fresh pages where glibc's thresholds are fixed."""
    d = getattr(_decoders, "zstd", None)
    if d is None:
        d = _decoders.zstd = decompressor()
    return d


def _read_streamed(decompressor, path, out):
    """Decode the Zstd chunk in the file ``path`` into the uint8 array ``out`` (exactly its size)
    while reading the file, ``STREAM_READ_BYTES`` at a time: the decoder works on the file's start
    while the kernel's read-ahead fetches the rest from the disk, where reading the whole file,
    then decoding it, left the core idle during the read (a dask.distributed worker of one
    thread) or the disk idle during the decode (see ``_config.STREAM_READ_BYTES``); from the page
    cache it saves the copy of the whole file into a buffer. A file that does not decode to
    exactly ``out``'s bytes raises ``ValueError`` naming it."""
    from ._kernels._config import STREAM_READ_BYTES

    d = _decoder(decompressor)
    view = memoryview(out)
    with open(path, "rb", buffering=0) as f:
        try:
            with d.stream_reader(f, read_size=STREAM_READ_BYTES, read_across_frames=True) as r:
                got = _read_into(r, view)
                extra = r.read(1) if got == len(view) else b""
        except Exception as e:  # zstandard.ZstdError: not Zstd, cut short, a bad checksum
            raise ValueError(
                f"the zarr chunk {path} could not be decoded ({e}): the file is damaged or not this array's"
            ) from e
    if got != len(view) or extra:
        raise ValueError(
            f"the zarr chunk {path} decoded to {'more than ' if extra else ''}{got} bytes where "
            f"{len(view)} were expected: the file is damaged or not this array's"
        )


def _read_prefix(decompressor, raw, out, read_size=None):
    """Decode the first ``out.nbytes`` bytes of the Zstd frame ``raw`` (its bytes, or a file
    object read only as far as needed, ``read_size`` bytes at a time) into the uint8 array
    ``out``."""
    view = memoryview(out)
    kw = {} if read_size is None else {"read_size": read_size}
    with decompressor().stream_reader(raw, read_across_frames=False, **kw) as r:
        got = _read_into(r, view)
    if got < len(view):
        raise ValueError(f"a zarr chunk decoded to {got} bytes where {len(view)} were expected")


def _read_into(reader, view):
    """Fill the memoryview ``view`` from the stream ``reader`` (``readinto``) as far as it gives;
    the number of bytes read."""
    got = 0
    while got < len(view):
        k = reader.readinto(view[got:])
        if k == 0:
            break
        got += k
    return got


class _ZarrChunkWriter:
    """A zarr array as the target of dask's store. A block that is one stored chunk of an array in
    a local directory (zarr's ``LocalStore``) stored as bytes + Blosc (what :func:`write_zarr`
    makes) is compressed into a buffer aligned for direct I/O and written to the chunk's file
    directly, past the page cache where the system allows it (:func:`_write_file`); anything
    else goes through zarr (``z[key] = value``). The stored bytes are zarr's, bit for bit (tested).

    Why: through zarr, numcodecs compresses every chunk into a fresh buffer, copies the result
    into a second one, and the file system copies it once more into the page cache, where a
    result that is not read again only evicts the input the job is still reading. On the 8 GB
    background job (4.7 GB of compressed background written), 3 alternating pairs from a cold
    cache: system CPU 23.0-25.8 -> 12.9-15.5 s, all CPU 73.8-77.6 -> 63.7-68.3 s, wall 41.9-44.5
    -> 36.9-41.4 s; the compression into reused buffers alone (ordinary writes) changed neither.
    Pickles as the zarr array (a cluster worker makes its own)."""

    def __init__(self, z):
        self.z = z
        self.shape, self.chunks = tuple(z.shape), tuple(z.chunks)
        self.dtype = np.dtype(z.dtype)
        self._encode = _blosc_encoder(z)
        self._dir = None if self._encode is None else _local_array_dir(z)
        self._token = uuid.uuid4().hex

    def __reduce__(self):
        return _ZarrChunkWriter, (self.z,)

    def __dask_tokenize__(self):
        return ("napari-gmm-chunk-writer", self._token)

    def __setitem__(self, key, value):
        coords = None if self._dir is None else _whole_chunk(key, self.shape, self.chunks)
        if coords is None or getattr(value, "dtype", None) != self.dtype:
            self.z[key] = value
            return
        nbytes = math.prod(self.chunks) * self.dtype.itemsize
        if value.shape != self.chunks:  # a chunk at the array's edge is stored whole, padded
            pad = np.full(self.chunks, self.z.fill_value, self.dtype)
            pad[tuple(slice(0, n) for n in value.shape)] = value
            value = pad
        # a new buffer per chunk (reused only where every new one would be fresh pages: see
        # _chunk_buffer): one kept per thread measured 2-4 s of system CPU less on the 8 GB
        # background job, but raised its peak by 50-100 MiB (memory the heap no longer shares)
        dest = _chunk_buffer(nbytes + _BLOSC_MAX_OVERHEAD, aligned=True)
        n = self._encode(np.ascontiguousarray(value), dest)
        path = os.path.join(self._dir, self.z.metadata.encode_chunk_key(coords))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        _write_file(path, dest, n)


#: c-blosc 1's header: a compressed chunk takes at most its size plus this
_BLOSC_MAX_OVERHEAD = 16


def _write_file(path, buf, n):
    """Write the first ``n`` bytes of ``buf`` (from :func:`_chunk_buffer` with ``aligned``) as the new file
    ``path``: with ``O_DIRECT`` (Linux; ``_config.DIRECT_WRITES``), i.e. from the buffer to the
    disk without a copy into the page cache, as whole aligned blocks, the file then cut to ``n``
    bytes; where the system or the file system refuses that, an ordinary write."""
    from ._kernels._config import DIRECT_IO_ALIGN, DIRECT_WRITES

    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0)
    direct = getattr(os, "O_DIRECT", 0) if DIRECT_WRITES else 0
    if direct:
        try:
            fd = os.open(path, flags | direct, 0o666)  # as open() makes files: the umask decides
        except OSError:  # e.g. a file system without direct I/O (EINVAL)
            fd = None
        if fd is not None:
            try:
                _write_all(fd, memoryview(buf)[: -(-n // DIRECT_IO_ALIGN) * DIRECT_IO_ALIGN])
                os.ftruncate(fd, n)
                return
            except OSError:  # alignment the file system does not accept: write it again below
                pass
            finally:
                os.close(fd)
    fd = os.open(path, flags, 0o666)  # as open() makes files: the umask decides
    try:
        _write_all(fd, memoryview(buf)[:n])
    finally:
        os.close(fd)


def _write_all(fd, view):
    while len(view):
        view = view[os.write(fd, view) :]


def _whole_chunk(key, shape, chunks):
    """The coordinates of the stored chunk that ``key`` (a tuple of slices, one per axis) selects
    whole (its part inside the array at an edge), else None."""
    if not isinstance(key, tuple) or len(key) != len(shape):
        return None
    coords = []
    for s, n, c in zip(key, shape, chunks):
        if not isinstance(s, slice) or s.step not in (None, 1):
            return None
        start, stop = s.start or 0, n if s.stop is None else s.stop
        if start % c or stop != min(n, start + c):
            return None
        coords.append(start // c)
    return tuple(coords)


def _local_array_dir(z):
    """The directory of zarr array ``z`` when it is in a local directory (zarr's ``LocalStore``),
    else None."""
    try:
        from zarr.storage import LocalStore

        store_path = z._async_array.store_path
        if not isinstance(store_path.store, LocalStore):
            return None
        return os.path.join(str(store_path.store.root), store_path.path)
    except (ImportError, AttributeError, TypeError):
        return None


def _blosc_encoder(z):
    """``encode(src, dest) -> n``: compress the C-contiguous chunk ``src`` of zarr array ``z``
    (stored as bytes + Blosc, see :func:`_plain_compressor`) into the uint8 array ``dest``, as
    zarr would, and return the compressed size; through c-blosc's ``blosc_compress_ctx`` in
    numcodecs' extension, the function numcodecs calls outside the main thread. None when the
    codecs are anything else or the function is not there."""
    import ctypes

    codec = _plain_compressor(z)
    try:
        import numcodecs.blosc

        itemsize = np.dtype(z.dtype).itemsize
        if type(codec).__name__ == "BloscCodec":  # zarr 3
            cname, clevel, blocksize = codec.cname.name, codec.clevel, codec.blocksize
            shuffle = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}[codec.shuffle.name]
            typesize = codec.typesize or itemsize
        elif type(codec).__name__ == "Blosc":  # zarr 2: numcodecs' codec
            cname, clevel, shuffle, blocksize = codec.cname, codec.clevel, codec.shuffle, codec.blocksize
            if shuffle == numcodecs.blosc.AUTOSHUFFLE:
                shuffle = numcodecs.blosc.BITSHUFFLE if itemsize == 1 else numcodecs.blosc.SHUFFLE
            typesize = itemsize
        else:
            return None
        fn = ctypes.CDLL(numcodecs.blosc.__file__).blosc_compress_ctx
    except (ImportError, AttributeError, TypeError, KeyError, OSError):
        return None
    fn.restype = ctypes.c_int
    size_t, ptr = ctypes.c_size_t, ctypes.c_void_p
    fn.argtypes = [ctypes.c_int, ctypes.c_int, size_t, size_t, ptr, ptr, size_t, ctypes.c_char_p, size_t, ctypes.c_int]
    name = cname.encode() if isinstance(cname, str) else bytes(cname)
    args = (int(clevel), int(shuffle), int(typesize))

    def encode(src, dest):
        # numcodecs gives Blosc exactly this room: with more, an incompressible chunk is stored
        # as blocks, not copied whole (other bytes than zarr's)
        room = src.nbytes + _BLOSC_MAX_OVERHEAD
        assert dest.size >= room
        n = fn(*args, src.nbytes, src.ctypes.data, dest.ctypes.data, room, name, int(blocksize), 1)
        if n <= 0:
            raise RuntimeError(f"Blosc could not compress a chunk (error {n})")
        return n

    return encode


def _from_zarr(z, da):
    """``da.from_zarr(z)``, its whole chunks read by :class:`_ZarrChunks`."""
    from dask.base import tokenize

    name = "from-zarr-direct-" + tokenize(z, tuple(z.chunks))
    return da.from_array(_ZarrChunks(z), chunks=tuple(z.chunks), name=name, inline_array=False)


def _open_zarr(path, da):
    zarr = _need("zarr")
    node = zarr.open(str(path), mode="r")
    if hasattr(node, "shape"):
        return ImageSource(path, _from_zarr(node, da), None, dict(node.attrs))
    attrs = dict(node.attrs)
    ms = attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")
    if ms:
        first = ms[0]
        arr = node[first["datasets"][0]["path"]]
        axes = "".join(a["name"][0] if isinstance(a, dict) else str(a)[0] for a in first.get("axes", [])).lower()
        return ImageSource(path, _from_zarr(arr, da), _known_axes(axes, arr.ndim), attrs)
    arrays = [k for k in node.array_keys()]
    if len(arrays) == 1:
        return ImageSource(path, _from_zarr(node[arrays[0]], da), None, attrs)
    raise InputError(
        f"{path}: a zarr group without OME-NGFF multiscales metadata and with {len(arrays)} arrays: "
        "open the array you mean (path/to/group.zarr/name)"
    )


def _default_axes(ndim):
    return "tczyx"[-ndim:] if ndim <= 5 else None


def write_zarr(path, data, *, attrs=None, axes=None, chunks=None, overwrite=False, compute_kwargs=None):
    """Write ``data`` (NumPy or dask) into a new OME-Zarr image group at ``path``, chunk by chunk.

    The group is zarr format 3 with OME-Zarr 0.5 metadata (``"ome"``: multiscales with one
    level, array ``"0"``, the axis names also as the array's ``dimension_names``), which napari
    and OME-Zarr readers open.

    Parameters
    ----------
    path : str or Path
        The output, conventionally ending in ``.zarr``.
    data : ndarray or dask array, or dict of them
        One image (stored as the group's array ``"0"`` with OME-Zarr multiscales metadata), or
        several named arrays (e.g. ``{"foreground": ..., "background": ...}``).
    attrs : dict, optional
        Stored as the group's ``"napari_gmm"`` attribute (JSON-able: models as ``to_dict()``),
        together with ``"complete": true`` once every chunk is written.
    axes : str, optional
        Axis names of a single image (``"tyx"``, ``"zyx"``, ...); default the last ``ndim`` of
        ``"tczyx"``.
    chunks : tuple, optional
        Chunk shape on disk (default the dask chunks, or 1 x 1024 x 1024-like for NumPy input).
    overwrite : bool, default False
        Replace an existing output (only after the new one is complete).
    compute_kwargs : dict, optional
        Passed to dask's store (e.g. a ``scheduler``); the default scheduler, or the active
        ``distributed.Client``, otherwise.

    Returns
    -------
    Path
        The written output.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise InputError(f"{path} exists: choose another output, or overwrite=True (--overwrite) to replace it")
    single = not isinstance(data, dict)
    arrays = _as_dask_arrays({"0": data} if single else dict(data), chunks)
    meta = {}
    if single:
        ndim = arrays["0"].ndim
        axes = axes or _default_axes(ndim)
        axes = axes if axes and len(axes) == ndim else None
        scale = [{"type": "scale", "scale": [1.0] * ndim}]
        meta["multiscales"] = [_multiscales(path.stem, [_axis(a) for a in axes] if axes else [], scale)]
    return _write_group(path, arrays, 3, meta, attrs, axes, compute_kwargs)


def write_ome_labels(image, labels, *, name="napari-gmm", attrs=None, overwrite=False, compute_kwargs=None):
    """Add ``labels`` to an OME-Zarr image as a label image, ``image/labels/<name>``, chunk by chunk.

    This is the OME-Zarr way of keeping a segmentation with its image: napari (with the OME-Zarr
    reader) and other OME-Zarr viewers show it over the image. The image's own arrays and
    metadata are not touched: a new group is written under ``labels/`` (under a temporary name,
    renamed into place when complete) and its name added to the ``labels`` group's list. The
    label image takes the image's zarr format and OME-Zarr version (0.4 on zarr 2, 0.5 on
    zarr 3), its axes and its full-resolution scale.

    Parameters
    ----------
    image : str or Path
        An OME-Zarr image group (with multiscales metadata), the one ``labels`` was computed from.
    labels : ndarray or dask array
        The labels, shaped like the image's full-resolution array; for an image with a channel
        axis (``c``), shaped like it without that axis (stored with a channel axis of length 1).
    name : str, default "napari-gmm"
        The label image's name under ``labels/``.
    attrs : dict, optional
        Stored as the label image's ``"napari_gmm"`` attribute (model, parameters).
    overwrite : bool, default False
        Replace an existing label image of that name (only after the new one is complete).
    compute_kwargs : dict, optional
        As :func:`write_zarr`.

    Returns
    -------
    Path
        The written label image, ``image/labels/<name>``.
    """
    zarr = _need("zarr")
    image = Path(image)
    if not name or "/" in name or name.startswith("."):
        raise InputError(f"label image name {name!r}: give a plain name such as 'napari-gmm'")
    root, fmt, ms = ome_image(image)
    level = ms[0]["datasets"][0]
    shape = tuple(root[level["path"]].shape)
    axes = [a if isinstance(a, dict) else {"name": str(a)} for a in ms[0].get("axes", [])]
    names = "".join(a["name"][0].lower() for a in axes)
    (labels,) = _as_dask_arrays({"0": labels}, None).values()
    if labels.ndim == len(shape) - 1 and "c" in names:
        labels = labels[(slice(None),) * names.index("c") + (None,)]
    want = tuple(1 if names[i : i + 1] == "c" else s for i, s in enumerate(shape))
    if tuple(labels.shape) != want:
        raise InputError(
            f"labels of shape {tuple(labels.shape)} do not match the image {image} of shape {shape}: "
            "give the labels of that image's full-resolution level"
        )
    dst = image / "labels" / name
    if dst.exists() and not overwrite:
        raise InputError(f"{dst} exists: choose another name, or overwrite=True (--overwrite) to replace it")
    transforms = level.get("coordinateTransformations") or [{"type": "scale", "scale": [1.0] * len(shape)}]
    meta = {
        "multiscales": [_multiscales(name, axes, transforms)],
        "image-label": {"source": {"image": "../../"}},
    }
    out = _write_group(
        dst, {"0": labels}, fmt, meta, attrs, names if len(names) == len(shape) else None, compute_kwargs
    )
    group = zarr.open_group(str(image / "labels"), mode="a", zarr_format=fmt)
    listed = _ome_fields(group, fmt).get("labels", [])
    if name not in listed:
        group.attrs.update(_ome_attrs(fmt, {"labels": [*listed, name]}))
    return out


def ome_image(image):
    """(group, zarr format, multiscales) of an OME-Zarr image group; InputError if ``image`` is not
    one (it then cannot hold a labels group)."""
    zarr = _need("zarr")
    try:
        root = zarr.open_group(str(image), mode="r")
    except Exception as e:
        raise InputError(f"{image}: not an OME-Zarr image ({type(e).__name__}: {e}); write to --out instead") from None
    fmt = root.metadata.zarr_format
    ms = _ome_fields(root, fmt).get("multiscales")
    if not ms:
        raise InputError(
            f"{image}: not an OME-Zarr image (no multiscales metadata), so it cannot hold a labels group: "
            "write the labels to their own output (--out) instead"
        )
    return root, fmt, ms


def _multiscales(name, axes, transforms):
    """One OME-Zarr multiscales entry: a single level, array ``"0"``, with ``transforms``."""
    return {"name": name, "axes": axes, "datasets": [{"path": "0", "coordinateTransformations": transforms}]}


def _ome_fields(group, fmt):
    """A group's OME-Zarr metadata: under ``"ome"`` on zarr 3 (0.5), at the top level on zarr 2."""
    attrs = dict(group.attrs)
    return attrs.get("ome", {}) if fmt == 3 else attrs


def _ome_attrs(fmt, fields):
    """OME-Zarr metadata as group attributes: 0.5 under ``"ome"`` on zarr 3, 0.4 at the top level
    (with a version in each multiscales and image-label entry) on zarr 2."""
    if fmt == 3:
        return {"ome": {"version": "0.5", **fields}}
    fields = json.loads(json.dumps(fields))
    for ms in fields.get("multiscales", []):
        ms["version"] = "0.4"
    if "image-label" in fields:
        fields["image-label"]["version"] = "0.4"
    return fields


def _as_dask_arrays(arrays, chunks):
    da = _need("dask.array")
    out = {}
    for name, a in arrays.items():
        a = a if hasattr(a, "dask") else da.from_array(np.asarray(a), chunks=chunks or _disk_chunks(a))
        # regular chunks equal to the zarr chunks: two tasks never write into one zarr chunk (unequal
        # dask chunks, e.g. background tiles, would race on the chunk they share)
        out[name] = a.rechunk(chunks if chunks is not None else tuple(max(c) for c in a.chunks))
    return out


def _io_threads(compute_kwargs):
    """``compute_kwargs`` with ``num_workers`` set to one thread more than the usable cores, when
    the writes run on dask's threaded scheduler and nobody chose its threads (no ``scheduler`` or
    ``num_workers`` given, none in dask's config, no distributed client): a job that reads and
    writes files waits on the disk and the page cache part of the time, and a thread per core left
    a core idle then (8 GB benchmark, cold cache, 2 cores: segmentation + write 17.4 / 17.8 s with 2
    threads, 16.4 / 16.7 s with 3; the background job 45.3 / 47.8 s against 42.0 / 44.0 s, the same
    CPU and memory)."""
    import dask
    from dask.base import get_scheduler
    from dask.system import CPU_COUNT  # the threaded scheduler's own default: the usable cores
    from dask.threaded import get as threaded_get

    kw = dict(compute_kwargs)
    if "scheduler" in kw or "num_workers" in kw or dask.config.get("num_workers", None) is not None:
        return kw
    if get_scheduler() not in (None, threaded_get):
        return kw
    kw["num_workers"] = CPU_COUNT + 1
    return kw


def _store(sources, targets, compute_kwargs):
    """``da.store(sources, targets, lock=False)``; where a source carries a writer gate (the tiled
    outputs of :func:`napari_gmm.subtract_background`, whose chains must not run ahead of their
    writes: ``background._StoreGate``), the writes' graph is materialised, the gate ties it, and
    it runs on the scheduler dask would use (the threaded one, or an active distributed client).
    Other writes on a cluster: a task writes several chunks, one after the other
    (:func:`napari_gmm._dask.group_size`)."""
    import dask
    import dask.array as da
    from dask.base import collections_to_expr, get_scheduler, tokenize
    from dask.highlevelgraph import HighLevelGraph

    from ._dask import cluster_threads, group_size, grouped_graph

    compute_kwargs = _io_threads(compute_kwargs)
    targets = [_ZarrChunkWriter(t) if hasattr(t, "metadata") else t for t in targets]
    stores = da.store(sources, targets, lock=False, compute=False, return_stored=False)
    stores = [stores] if isinstance(stores, da.Array) else list(stores)
    gates = {}
    for a, st in zip(sources, stores):
        g = getattr(a, "_napari_gmm_store_gate", None)
        if g is not None:
            gates.setdefault(id(g), (g, []))[1].append(st)
    get = get_scheduler(scheduler=compute_kwargs.pop("scheduler", None), collections=stores)
    threads = cluster_threads(get)
    keys = [k for st in stores for k in dask.core.flatten(st.__dask_keys__())]
    if not gates:
        size = group_size(len(keys), threads)
        if size == 1:
            dask.compute(stores, scheduler=get, **compute_kwargs)
            return
        # on a cluster, several chunks written by a task, one after the other (the stores'
        # optimised graph: each chunk's task fused with the tasks that make its block)
        graph = collections_to_expr(stores, True).__dask_graph__()
        dsk, groups = grouped_graph(graph, keys, size, "napari-gmm-store-" + tokenize(keys), _nothing)
        get(dsk, groups, **compute_kwargs)
        return
    dsk = dict(HighLevelGraph.merge(*(st.__dask_graph__() for st in stores)))
    for g, sts in gates.values():
        g.rewire(dsk, sts, cluster=threads > 0)
    get(dsk, keys, **compute_kwargs)


def _nothing(*_):
    """The result of a task that only writes (chunks stored inside it, see :func:`_store`)."""


def _write_group(path, arrays, fmt, ome, attrs, axes, compute_kwargs):
    """Write the dask ``arrays`` into a new zarr group at ``path`` (zarr format ``fmt``) with the
    OME-Zarr metadata ``ome`` and the ``"napari_gmm"`` attributes, under a temporary name renamed
    into place when every chunk is written; an existing ``path`` is replaced only then."""
    zarr = _need("zarr")
    _need("dask.array")  # a clear message when dask is missing
    tmp = path.with_name(f".{path.name}.partial-{uuid.uuid4().hex[:8]}")
    try:
        group = zarr.open_group(str(tmp), mode="w", zarr_format=fmt)
        targets = []
        for name, a in arrays.items():
            kw = {"dimension_names": list(axes)} if fmt == 3 and axes and name == "0" else {}
            targets.append(
                group.create_array(
                    name,
                    shape=a.shape,
                    dtype=a.dtype,
                    chunks=tuple(max(c) for c in a.chunks),
                    fill_value=0,
                    # zarr's default skips chunks equal to the fill value by comparing every chunk
                    # with a chunk of zeros first: 60 % of the write time of a labels chunk,
                    # measured; an all-zero chunk of results is rare and compresses to a few bytes
                    config={"write_empty_chunks": True},
                    compressors=_compressors(fmt),
                    **kw,
                )
            )
        _store(list(arrays.values()), targets, compute_kwargs or {})
        meta = {"napari_gmm": {"complete": True, **_jsonable(attrs or {})}}
        if ome:
            meta.update(_ome_attrs(fmt, ome))
        group.attrs.update(meta)
        if path.exists():  # overwrite: swap in the complete output, then drop the old one
            old = path.with_name(f".{path.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _compressors(fmt):
    """The outputs' compressor: Blosc LZ4 with byte shuffle (level 5). On results (labels, masks,
    16-bit backgrounds) it compresses as well as zarr's default (Zstd level 0, i.e. 3) and encodes
    10-20x faster: measured on a background of 8 x 1024 x 1024 uint16 frames, ratio 0.65 vs 0.63 at
    about 1600 vs 83 MB/s; the default made compression the slowest part of writing every frame's
    background (``napari-gmm background``)."""
    if fmt == 3:
        from zarr.codecs import BloscCodec

        return [BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")]
    from numcodecs import Blosc

    return [Blosc("lz4", 5, Blosc.SHUFFLE)]


def _axis(name):
    kind = {"t": "time", "c": "channel"}.get(name, "space")
    return {"name": name, "type": kind}


def _disk_chunks(a):
    shape = np.shape(a)
    return tuple(1 if i < len(shape) - 2 else min(s, 1024) for i, s in enumerate(shape))


def _jsonable(o):
    return json.loads(json.dumps(o, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v)))


def read_result(path, name=None) -> tuple[object, dict]:
    """(the array as dask, its ``"napari_gmm"`` attributes) of an output of :func:`write_zarr`
    (``name``: which array of a multi-array result, e.g. ``"foreground"``); InputError if it is
    not one or was not completed."""
    zarr = _need("zarr")
    da = _need("dask.array")
    path = Path(path)
    try:
        group = zarr.open_group(str(path), mode="r")
    except Exception as e:
        raise InputError(f"{path}: not a napari-gmm result ({type(e).__name__}: {e})") from None
    meta = dict(group.attrs).get("napari_gmm")
    if not meta or not meta.get("complete"):
        raise InputError(f"{path}: not a complete napari-gmm result (no 'napari_gmm' attributes with complete=true)")
    names = list(group.array_keys())
    key = name or ("0" if "0" in names else names[0])
    if key not in names:
        raise InputError(f"{path} has no array {key!r}: it holds {', '.join(names)}")
    return da.from_zarr(group[key]), meta
