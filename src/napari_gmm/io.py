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
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._validate import InputError

__all__ = ["ImageSource", "open_image", "write_zarr", "read_result", "SUFFIXES"]

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


def _open_zarr(path, da):
    zarr = _need("zarr")
    node = zarr.open(str(path), mode="r")
    if hasattr(node, "shape"):
        return ImageSource(path, da.from_zarr(node), None, dict(node.attrs))
    attrs = dict(node.attrs)
    ms = attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")
    if ms:
        first = ms[0]
        arr = node[first["datasets"][0]["path"]]
        axes = "".join(a["name"][0] if isinstance(a, dict) else str(a)[0] for a in first.get("axes", [])).lower()
        return ImageSource(path, da.from_zarr(arr), _known_axes(axes, arr.ndim), attrs)
    arrays = [k for k in node.array_keys()]
    if len(arrays) == 1:
        return ImageSource(path, da.from_zarr(node[arrays[0]]), None, attrs)
    raise InputError(
        f"{path}: a zarr group without OME-NGFF multiscales metadata and with {len(arrays)} arrays: "
        "open the array you mean (path/to/group.zarr/name)"
    )


def _default_axes(ndim):
    return "tczyx"[-ndim:] if ndim <= 5 else None


def write_zarr(path, data, *, attrs=None, axes=None, chunks=None, overwrite=False, compute_kwargs=None):
    """Write ``data`` (NumPy or dask) into a new OME-NGFF image group at ``path``, chunk by chunk.

    Parameters
    ----------
    path : str or Path
        The output, conventionally ending in ``.zarr``.
    data : ndarray or dask array, or dict of them
        One image (stored as the group's array ``"0"`` with OME-NGFF multiscales metadata, which
        napari opens), or several named arrays (e.g. ``{"foreground": ..., "background": ...}``).
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
    zarr = _need("zarr")
    da = _need("dask.array")
    path = Path(path)
    if path.exists() and not overwrite:
        raise InputError(f"{path} exists: choose another output, or overwrite=True (--overwrite) to replace it")
    single = not isinstance(data, dict)
    arrays = {"0": data} if single else dict(data)
    for name, a in arrays.items():
        a = a if hasattr(a, "dask") else da.from_array(np.asarray(a), chunks=chunks or _disk_chunks(a))
        # regular chunks equal to the zarr chunks: two tasks never write into one zarr chunk (unequal
        # dask chunks, e.g. background tiles, would race on the chunk they share)
        arrays[name] = a.rechunk(chunks if chunks is not None else tuple(max(c) for c in a.chunks))
    tmp = path.with_name(f".{path.name}.partial-{uuid.uuid4().hex[:8]}")
    try:
        group = zarr.open_group(str(tmp), mode="w")
        targets = [
            group.create_array(
                name,
                shape=a.shape,
                dtype=a.dtype,
                chunks=tuple(max(c) for c in a.chunks),
                fill_value=0,
                # zarr's default skips chunks equal to the fill value by comparing every chunk with
                # a chunk of zeros first: 60 % of the write time of a labels chunk, measured; an
                # all-zero chunk of results is rare and compresses to a few bytes
                config={"write_empty_chunks": True},
            )
            for name, a in arrays.items()
        ]
        da.store(list(arrays.values()), targets, lock=False, compute=True, **(compute_kwargs or {}))
        meta = {"napari_gmm": {"complete": True, **_jsonable(attrs or {})}}
        if single:
            arr = arrays["0"]
            axes = axes or _default_axes(arr.ndim)
            meta["multiscales"] = [
                {
                    "version": "0.4",
                    "name": path.stem,
                    "axes": [_axis(a) for a in axes] if axes and len(axes) == arr.ndim else [],
                    "datasets": [
                        {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1.0] * arr.ndim}]}
                    ],
                }
            ]
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
