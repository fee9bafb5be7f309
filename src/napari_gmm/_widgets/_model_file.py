"""Fitted models as JSON files: what "Save model..." writes, "Load model..." reads (also from the
attributes of a labels zarr), and what the labels writer puts beside a TIFF.

Format (UTF-8 JSON)::

    {"format": "napari-gmm model", "version": 1,
     "model": MixtureModel.to_dict()            # or SplitModels.to_dict() (one per index of split_axis)
     "params": {"n_components": 3, "channel_axis": null, "split_axis": null, ...},
     "source": "name of the image layer it was fitted on"}

From a script: ``napari_gmm.batch.load_model(path)`` (a MixtureModel or SplitModels); the command
line ``napari-gmm apply MODEL.json INPUT... --out DIR`` applies it to files. A model from a script is
saved with ``{"format": "napari-gmm model", "version": 1, "model": m.to_dict()}``.
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
    """The file content for a layer's ``metadata["napari_gmm"]`` (model, params, source). Models
    fitted per index of an axis (a list in the layer's metadata) are written as
    ``SplitModels.to_dict()`` (``{"models": [...], "split_axis": ...}``), the form
    :func:`napari_gmm.batch.load_model` and ``napari-gmm apply`` read."""
    params = _jsonable(meta.get("params") or {})
    model = _jsonable(meta["model"])
    if isinstance(model, list):
        model = {"models": model, "split_axis": params.get("split_axis"), "channel_axis": params.get("channel_axis")}
    return {"format": FORMAT, "version": VERSION, "model": model, "params": params, "source": meta.get("source")}


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
    if path.is_dir() and path.suffix.lower() == ".zarr":  # a labels zarr written with its model
        from napari_gmm import io

        try:
            _, data = io.read_result(path)
        except Exception as exc:  # noqa: BLE001 - one clear message
            raise ValueError(f"cannot read a model from '{path}': {exc}") from None
        data = dict(data)
    else:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read '{path}' as a napari-gmm model file: {exc}") from None
    if not isinstance(data, dict) or "model" not in data:
        raise ValueError(
            f"'{path}' is not a napari-gmm model file (no \"model\" entry); save one with "
            "'Save model...' in the segmentation widget."
        )
    raw = data["model"]
    if isinstance(raw, dict) and "models" in raw:  # SplitModels.to_dict()
        data.setdefault("params", {}).setdefault("split_axis", raw.get("split_axis"))
        raw = raw["models"]
    try:
        models = [ng.MixtureModel.from_dict(m) for m in (raw if isinstance(raw, list) else [raw])]
    except Exception as exc:  # noqa: BLE001 - any malformed entry: one clear message
        raise ValueError(f"'{path}' holds no valid model ({type(exc).__name__}: {exc})") from None
    data.setdefault("params", {})
    data["models"] = models
    data["split"] = isinstance(raw, list)
    return data
