"""napari writers: a labels layer saved as TIFF or zarr keeps its model.

File > Save Selected Layers... with a "napari GMM" writer (or ``viewer.layers.save(path,
selected=True, plugin="napari-gmm")``):

- ``cells.tif``: the labels (tifffile, their dtype and shape) and, when the layer carries a fitted
  model in ``metadata["napari_gmm"]``, ``cells.tif.gmm.json`` beside it (the model-file format of
  :mod:`._model_file`);
- ``cells.zarr``: an OME-NGFF image group (:func:`napari_gmm.io.write_zarr`) whose ``"napari_gmm"``
  attribute holds the model record, as the batch command writes its results.

"Load model..." in the segmentation widget reads either.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import _model_file

__all__ = ["write_labels_tiff", "write_labels_zarr"]


def write_labels_tiff(path: str, data, attributes: dict) -> list[str]:
    """npe2 single-layer writer: the TIFF, plus the model's JSON when the layer has one."""
    import tifffile

    path = Path(path)
    if path.suffix.lower() not in (".tif", ".tiff"):
        path = path.with_suffix(".tif")
    tifffile.imwrite(path, np.asarray(data), compression="zlib")
    written = [str(path)]
    meta = (attributes.get("metadata") or {}).get("napari_gmm")
    if isinstance(meta, dict) and "model" in meta:
        side = path.with_name(path.name + _model_file.SIDECAR_SUFFIX)
        _model_file.write(side, meta)
        written.append(str(side))
    return written


def write_labels_zarr(path: str, data, attributes: dict) -> list[str]:
    """npe2 single-layer writer: OME-NGFF zarr with the model record as its attribute."""
    from napari_gmm import io

    path = Path(path)
    if path.suffix.lower() != ".zarr":
        path = path.with_suffix(".zarr")
    meta = (attributes.get("metadata") or {}).get("napari_gmm")
    attrs = _model_file.record(meta) if isinstance(meta, dict) and "model" in meta else {}
    return [str(io.write_zarr(path, data, attrs=attrs))]
