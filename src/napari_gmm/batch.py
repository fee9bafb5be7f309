"""Batch jobs over files: segmentation (pooled or per file) and re-applying a saved model.

The functions behind ``napari-gmm segment`` and ``napari-gmm apply``. Inputs are read lazily
(:mod:`napari_gmm.io`), labels computed lazily by the pipeline and written chunk by chunk
(:func:`napari_gmm.io.write_zarr`), so memory is bounded by chunks, look-up tables and the
model, not by the images. Scheduling is dask's: the default threaded scheduler, or the active
``distributed.Client`` (``client=`` or ``--scheduler ADDRESS``) for a cluster.

A file that cannot be read or segmented is reported in the summary and the others go on; the
summary says what was done, file by file.
"""

from __future__ import annotations

import glob
import json
import time
from collections.abc import Callable
from pathlib import Path

from . import io as _io
from ._validate import FitError, InputError, check_image
from .mixture import MixtureModel, SplitModels, fit_hist
from .segmentation import segment

__all__ = ["expand_inputs", "output_paths", "segment_files", "apply_files", "background_file", "load_model", "connect"]


def expand_inputs(patterns) -> list[Path]:
    """Files from paths, globs and folders (a folder: the readable images directly inside it),
    sorted and without duplicates. InputError if nothing matches."""
    found, missing = [], []
    for pat in patterns:
        p = Path(pat)
        if p.is_dir() and _io._suffix(p) != ".zarr":
            hits = sorted(c for c in p.iterdir() if _io._suffix(c) in _io.SUFFIXES and not c.name.startswith("."))
        elif any(ch in str(pat) for ch in "*?["):
            hits = sorted(Path(h) for h in glob.glob(str(pat)))
        else:
            hits = [p] if p.exists() else []
        if not hits:
            missing.append(str(pat))
        found += hits
    if missing and not found:
        raise InputError(f"no input file matches {', '.join(missing)}: check the paths or the glob patterns")
    seen, out = set(), []
    for f in found:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out


def output_paths(inputs, out, suffix="_labels") -> list[Path]:
    """Where each input's result goes: ``out`` itself for one input and an ``out`` ending in
    ``.zarr``; else ``out/<name><suffix>.zarr``."""
    out = Path(out)
    if out.suffix.lower() == ".zarr":
        if len(inputs) != 1:
            raise InputError(f"--out {out} is one .zarr output but there are {len(inputs)} inputs: give a folder")
        return [out]
    names = [_stem(p) + suffix + ".zarr" for p in inputs]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise InputError(f"several inputs would write {sorted(dup)[0]} in {out}: give inputs with distinct names")
    return [out / n for n in names]


def _stem(p: Path) -> str:
    name = p.name.rstrip("/")
    for s in _io.SUFFIXES:
        if name.lower().endswith(s):
            return name[: -len(s)]
    return p.stem


def connect(address, timeout="10s"):
    """A ``distributed.Client`` for ``address``, or InputError saying why not (after ``timeout``)."""
    if address is None:
        return None
    try:
        from distributed import Client
    except ImportError:
        raise InputError('a scheduler address needs dask.distributed: pip install "napari-gmm[io]"') from None
    try:
        client = Client(address, timeout=timeout)
    except Exception as e:  # unreachable, refused, wrong protocol
        raise InputError(f"cannot reach the dask scheduler at {address}: {type(e).__name__}: {e}") from None
    # not waited for: the workers get ready while this process still opens the inputs and builds
    # the job's graph
    client.run(_prepare_worker, wait=False, on_error="ignore")
    return client


async def _prepare_worker():
    """Run on every worker as the command line connects, in a thread of the worker's (a coroutine:
    ``Client.run`` waits for nothing else): :func:`_load_readers`."""
    import asyncio

    await asyncio.get_running_loop().run_in_executor(None, _load_readers)


def _load_readers():
    """Import what reading and counting zarr chunks takes (zarr, numcodecs, zstandard, dask.array,
    Numba) and load the compiled histogram kernels of 8- and 16-bit chunks, the usual microscopy
    data, which a fresh worker otherwise did in its first tasks. The benchmark's 8 GB segmentation
    on a fresh LocalCluster, the command line, 3 alternating pairs: 15.2 / 15.7 / 15.7 s against
    16.0 / 15.7 / 16.2 s (the histogram pass 6.1-6.2 against 6.5-6.8 s)."""
    import numpy as np

    from . import io  # noqa: F401  (zarr, numcodecs, zstandard)
    from ._dask import _block_whole

    for dtype in (np.uint8, np.uint16):
        _block_whole(np.zeros(1, dtype), None)


def load_model(path):
    """A MixtureModel (or SplitModels) from a JSON file written by ``to_dict`` (or a result's
    ``napari_gmm`` attributes holding ``"model"``)."""
    path = Path(path)
    try:
        if _io._suffix(path) == ".zarr":
            d = _io.read_result(path)[1]["model"]
        else:
            d = json.loads(path.read_text())
            d = d.get("model", d)
    except (OSError, ValueError, KeyError) as e:
        raise InputError(f"{path}: not a napari-gmm model ({type(e).__name__}: {e})") from None
    return SplitModels.from_dict(d) if "models" in d else MixtureModel.from_dict(d)


def _progress_bar(enabled, total, desc):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm comes with dask's extras in practice
        return None
    return tqdm(total=total, desc=desc, unit="file", leave=True)


def _record(summary, path, out, status, t0, **extra):
    summary["files"].append(
        {
            "input": str(path),
            "output": None if out is None else str(out),
            "status": status,
            "seconds": round(time.perf_counter() - t0, 3),
            **extra,
        }
    )


def _chunk_bar(enabled, name):
    """A dask callback drawing a per-file progress bar over the write's tasks (threaded scheduler)."""
    if not enabled:
        return None
    from dask.callbacks import Callback
    from tqdm.auto import tqdm

    class Bar(Callback):
        def _start_state(self, dsk, state):
            self.bar = tqdm(total=sum(len(state[k]) for k in ("ready", "waiting")), desc=name, unit="task", leave=False)

        def _posttask(self, key, result, dsk, state, worker_id):
            self.bar.update(1)

        def _finish(self, dsk, state, errored):
            self.bar.close()

    return Bar()


def _write(labels, path, attrs, axes, overwrite, client, bars, image=None):
    """Write one result (into ``image`` as an OME-Zarr label image when given); with a client,
    dask runs the chunks on the cluster (the active client)."""
    from contextlib import nullcontext

    bar = None if client is not None else _chunk_bar(bars, path.name)
    with bar if bar is not None else nullcontext():
        if image is not None:
            return _io.write_ome_labels(image, labels, name=path.name, attrs=attrs, overwrite=overwrite)
        return _io.write_zarr(path, labels, attrs=attrs, axes=axes, overwrite=overwrite)


def _label_axes(src: _io.ImageSource, channel_axis):
    if not src.axes:
        return None
    return src.axes if channel_axis is None else src.axes.replace("c", "")


def _resolve_channel_axis(src, channel_axis):
    if channel_axis == "auto":
        return src.channel_axis
    return channel_axis


def _outputs(inputs, out, overwrite, into_input=None):
    """The output paths (see :func:`output_paths`; with ``into_input``, each input's
    ``labels/<into_input>``), refusing existing ones unless ``overwrite``; the output folder
    created."""
    if into_input:
        outs = [Path(p) / "labels" / into_input for p in inputs]
    elif out is None:
        raise InputError("no output: give --out (a folder, or OUT.zarr for one input), or --labels-into-input")
    else:
        outs = output_paths(inputs, out)
    if not overwrite:
        taken = [p for p in outs if p.exists()]
        if taken:
            raise InputError(f"{taken[0]} exists: choose another --out, or --overwrite to replace it")
    if out is not None and not into_input and Path(out).suffix.lower() != ".zarr":
        Path(out).mkdir(parents=True, exist_ok=True)
    return outs


def _each_file(summary, inputs, outs, work, *, bars, progress):
    """``work(path, output)`` for every input, recording "ok" with what it returns, or "error" with
    the message (the others go on); progress over the files."""
    overall = _progress_bar(bars, len(inputs), "files")
    t_all = time.perf_counter()
    for i, (path, dst) in enumerate(zip(inputs, outs)):
        t0 = time.perf_counter()
        try:
            _record(summary, path, dst, "ok", t0, **work(path, dst))
        except (InputError, FitError, OSError) as e:
            _record(summary, path, None, "error", t0, error=str(e))
        if overall is not None:
            overall.update(1)
        if progress is not None:
            progress(i + 1, len(inputs))
    if overall is not None:
        overall.close()
    return _finish(summary, t_all)


def segment_files(
    inputs,
    out,
    n_components=3,
    *,
    pooled=False,
    channel_axis="auto",
    split_axis=None,
    overwrite=False,
    client=None,
    bars=False,
    progress: Callable | None = None,
    labels_into_input: str | None = None,
    **fit_kw,
) -> dict:
    """Segment every input file and write its labels as zarr, with the model as an attribute.

    Parameters
    ----------
    inputs : list of paths
        From :func:`expand_inputs`.
    out : path or None
        A folder (created), or one ``.zarr`` output for a single input; None with
        ``labels_into_input``.
    n_components : int
    pooled : bool, default False
        One model for all files, fitted on their merged histograms (grey data of one dtype), and
        applied to each; otherwise one model per file.
    channel_axis : int, None or "auto"
        "auto": the axis the file names ``c`` (OME), else grey.
    split_axis : int, optional
        One model per index of this axis, within each file (see :func:`napari_gmm.segment`).
    overwrite : bool
        Replace existing outputs (each only once its replacement is complete).
    client : distributed.Client, optional
        Run on this cluster (else dask's default scheduler).
    bars : bool
        Draw progress bars (files, and each file's chunks) on stderr.
    progress : callable, optional
        ``progress(done, total)`` over files; may raise :class:`napari_gmm.Cancelled`.
    labels_into_input : str, optional
        Write each input's labels into the input itself as the OME-Zarr label image
        ``INPUT/labels/<labels_into_input>`` (:func:`napari_gmm.io.write_ome_labels`; OME-Zarr
        inputs only, the image's own data untouched) instead of into ``out``.
    **fit_kw
        As :func:`napari_gmm.segment` (covariance_type, init, max_iter, tol, reg_covar, bins, ...).

    Returns
    -------
    dict
        The summary: per file its input, output, status ("ok" or "error"), seconds, the error
        message, and for "ok" the model's K, iterations and convergence; plus totals.
    """
    outs = _outputs(inputs, out, overwrite, labels_into_input)
    summary = {"command": "segment", "n_components": n_components, "pooled": bool(pooled), "files": []}
    sources = {}
    for p in inputs:
        try:
            sources[p] = _io.open_image(p)
        except InputError as e:
            sources[p] = e
    model = _pooled_model(inputs, sources, n_components, channel_axis, summary, fit_kw) if pooled else None

    def work(path, dst):
        src = sources[path]
        if isinstance(src, Exception):
            raise src
        if labels_into_input:
            _io.ome_image(path)  # before the fit: can it hold a labels group?
        ch = _resolve_channel_axis(src, channel_axis)
        image = check_image(src.data, channel_axis=ch)
        if pooled:
            labels, mdl = model.predict(image, channel_axis=ch), model
        else:
            labels, mdl = segment(
                image, n_components, channel_axis=ch, split_axis=split_axis, return_model=True, **fit_kw
            )
        attrs = {
            "model": mdl.to_dict(),
            "input": str(path),
            "channel_axis": ch,
            "pooled": bool(pooled),
            "n_components": n_components,
        }
        _write(labels, dst, attrs, _label_axes(src, ch), overwrite, client, bars, path if labels_into_input else None)
        info = mdl if isinstance(mdl, MixtureModel) else mdl[0]
        return dict(n_iter=info.n_iter, converged=info.converged, shape=list(labels.shape), dtype=str(labels.dtype))

    return _each_file(summary, inputs, outs, work, bars=bars, progress=progress)


def _pooled_model(inputs, sources, n_components, channel_axis, summary, fit_kw):
    from ._dask import pooled_histogram

    good = []
    for p in inputs:
        src = sources[p]
        if isinstance(src, Exception):
            continue
        ch = _resolve_channel_axis(src, channel_axis)
        if ch is not None:
            raise InputError(
                f"{p}: a pooled fit merges grey histograms; multichannel files (channel_axis={ch}) "
                "are segmented one by one: leave out --pooled"
            )
        good.append(check_image(src.data))
    if not good:
        raise InputError("no readable input for the pooled fit")
    bins = fit_kw.pop("bins", None)
    hist = pooled_histogram(good, bins=bins)
    model = fit_hist(hist, n_components, extra_params={"bins": bins, "pooled_files": len(good)}, **fit_kw)
    summary["model"] = model.to_dict()
    return model


def apply_files(
    model_path,
    inputs,
    out,
    *,
    channel_axis="auto",
    overwrite=False,
    client=None,
    bars=False,
    progress: Callable | None = None,
    labels_into_input: str | None = None,
) -> dict:
    """Label every input with a saved model (no fitting): ``napari-gmm apply MODEL.json INPUT...``
    (``out`` and ``labels_into_input`` as :func:`segment_files`)."""
    model = load_model(model_path)
    outs = _outputs(inputs, out, overwrite, labels_into_input)
    summary = {"command": "apply", "model": str(model_path), "files": []}

    def work(path, dst):
        src = _io.open_image(path)
        if labels_into_input:
            _io.ome_image(path)
        ch = _resolve_channel_axis(src, channel_axis)
        labels = model.predict(src.data, channel_axis=ch)
        _write(
            labels,
            dst,
            {"model": model.to_dict(), "input": str(path), "channel_axis": ch, "applied_from": str(model_path)},
            _label_axes(src, ch),
            overwrite,
            client,
            bars,
            path if labels_into_input else None,
        )
        return dict(shape=list(labels.shape))

    return _each_file(summary, inputs, outs, work, bars=bars, progress=progress)


def _finish(summary, t0):
    files = summary["files"]
    summary["n_ok"] = sum(f["status"] == "ok" for f in files)
    summary["n_failed"] = len(files) - summary["n_ok"]
    summary["seconds"] = round(time.perf_counter() - t0, 3)
    return summary


def background_file(
    path,
    out,
    *,
    preset="camera video",
    time_axis=0,
    channel_axis="auto",
    background="all",
    overwrite=False,
    client=None,
    bars=False,
    **params,
) -> dict:
    """Background modelling of one stack file, written to ``out`` (a .zarr group with the arrays
    ``foreground`` (T, Y, X) uint8 and, unless ``background=None``, ``background``): the stack is
    read lazily and modelled per spatial tile, a column of the input's chunks streamed over time
    (see :func:`napari_gmm.subtract_background`), so memory is the tiles' models and a few chunks,
    not the stack's. ``napari-gmm background STACK --out OUT.zarr``."""
    from .background import subtract_background

    t0 = time.perf_counter()
    out = Path(out)
    if out.exists() and not overwrite:
        raise InputError(f"{out} exists: choose another --out, or --overwrite to replace it")
    summary = {"command": "background", "preset": preset, "files": []}
    try:
        src = _io.open_image(path)
        ch = _resolve_channel_axis(src, channel_axis)
        res = subtract_background(
            src.data, preset=preset, time_axis=time_axis, channel_axis=ch, background=background, **params
        )
        arrays = {"foreground": res.foreground}
        if res.background is not None:
            arrays["background"] = res.background
        attrs = {
            "params": res.params,
            "input": str(path),
            "frame_factors": None if res.frame_factors is None else list(map(float, res.frame_factors)),
            "noise": None if res.noise is None else res.noise.as_dict(),
        }
        bar = None if client is not None else _chunk_bar(bars, out.name)
        if bar is None:
            _io.write_zarr(out, arrays, attrs=attrs, overwrite=overwrite)
        else:
            with bar:
                _io.write_zarr(out, arrays, attrs=attrs, overwrite=overwrite)
        _record(summary, path, out, "ok", t0, shape=list(res.foreground.shape), tiles=res.params.get("tiles"))
    except (InputError, FitError, OSError) as e:
        _record(summary, path, None, "error", t0, error=str(e))
    return _finish(summary, t0)
