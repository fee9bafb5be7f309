"""Fitted models as JSON files: what "Save model..." writes, "Load model..." reads, and what the
labels writer puts beside a TIFF.

Format (UTF-8 JSON)::

    {"format": "napari-gmm model", "version": 1,
     "model": MixtureModel.to_dict()            # or a list of them (one per index of split_axis)
     "params": {"n_components": 3, "channel_axis": null, "split_axis": null, ...},
     "source": "name of the image layer it was fitted on"}

From a script: ``json.load`` the file and ``napari_gmm.MixtureModel.from_dict(d["model"])``; a model
from a script is saved with ``{"format": "napari-gmm model", "version": 1, "model": m.to_dict()}``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

import napari_gmm as ng

FORMAT = "napari-gmm model"
VERSION = 1
#: the file written beside a labels image (``cells.tif`` -> ``cells.tif.gmm.json``)
SIDECAR_SUFFIX = ".gmm.json"


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def record(meta: dict) -> dict:
    """The file content for a layer's ``metadata["napari_gmm"]`` (model, params, source)."""
    return {"format": FORMAT, "version": VERSION, "model": _jsonable(meta["model"]),
            "params": _jsonable(meta.get("params") or {}), "source": meta.get("source")}


def write(path, meta: dict) -> Path:
    path = Path(path)
    path.write_text(json.dumps(record(meta), indent=1), encoding="utf-8")
    return path


def read(path) -> dict:
    """The record in ``path``, with ``"models"``: the list of MixtureModel it holds.

    Raises
    ------
    ValueError
        The file is not JSON, or not a napari-gmm model (the message says which file and why).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read '{path}' as a napari-gmm model file: {exc}") from None
    if not isinstance(data, dict) or "model" not in data:
        raise ValueError(f"'{path}' is not a napari-gmm model file (no \"model\" entry); save one with "
                         "'Save model...' in the segmentation widget.")
    raw = data["model"]
    try:
        models = [ng.MixtureModel.from_dict(m) for m in (raw if isinstance(raw, list) else [raw])]
    except Exception as exc:  # noqa: BLE001 - any malformed entry: one clear message
        raise ValueError(f"'{path}' holds no valid model ({type(exc).__name__}: {exc})") from None
    data.setdefault("params", {})
    data["models"] = models
    data["split"] = isinstance(raw, list)
    return data
