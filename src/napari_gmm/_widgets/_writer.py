"""napari writer: a labels layer saved as TIFF keeps its model beside it.

File > Save Selected Layers... with the "napari GMM" writer (or ``viewer.layers.save(path,
selected=True, plugin="napari-gmm")``) writes ``cells.tif`` (tifffile, the labels' dtype and shape)
and, when the layer carries a fitted model in ``metadata["napari_gmm"]``, ``cells.tif.gmm.json``
beside it (the model-file format of :mod:`._model_file`: "Load model..." reads it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import _model_file

__all__ = ["write_labels_tiff"]


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
