"""Batch segmentation over files and the command line (napari_gmm.batch, ``napari-gmm segment``)."""

import json
import time

import numpy as np
import pytest

pytest.importorskip("zarr")
tifffile = pytest.importorskip("tifffile")
da = pytest.importorskip("dask.array")

import napari_gmm as ng  # noqa: E402
from napari_gmm import batch, io  # noqa: E402
from napari_gmm.__main__ import main  # noqa: E402
from napari_gmm.datasets import phantom  # noqa: E402


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    imgs = []
    for i in range(3):
        img, _ = phantom((96, 80), seed=i)
        tifffile.imwrite(d / f"img{i}.tif", img, tile=(32, 32))
        imgs.append(img)
    return d, imgs


def test_per_file_results_equal_in_memory_segment(folder, tmp_path):
    d, imgs = folder
    summary = batch.segment_files(batch.expand_inputs([d]), tmp_path / "out", 3)
    assert summary["n_ok"] == 3 and summary["n_failed"] == 0
    for i, img in enumerate(imgs):
        labels, meta = io.read_result(tmp_path / "out" / f"img{i}_labels.zarr")
        np.testing.assert_array_equal(labels.compute(), ng.segment(img, 3))
        assert ng.MixtureModel.from_dict(meta["model"]).n_components == 3


def test_pooled_model_equals_one_fit_on_all_pixels(folder, tmp_path):
    d, imgs = folder
    summary = batch.segment_files(batch.expand_inputs([str(d / "img*.tif")]), tmp_path / "out", 3, pooled=True)
    assert summary["n_ok"] == 3
    together = ng.fit_mixture(np.concatenate([im.ravel() for im in imgs]), 3)
    pooled = ng.MixtureModel.from_dict(summary["model"])
    np.testing.assert_allclose(pooled.means, together.means, rtol=1e-9)
    labels, _ = io.read_result(tmp_path / "out" / "img2_labels.zarr")
    np.testing.assert_array_equal(labels.compute(), together.predict(imgs[2]))


def test_cli_exit_codes_outputs_summary_and_progress(folder, tmp_path, capsys):
    d, imgs = folder
    (d / "broken.tif").write_bytes(b"garbage")
    out = tmp_path / "out"
    code = main(["segment", str(d), "--out", str(out), "-k", "3"])
    err = capsys.readouterr().err
    assert code == 1  # one corrupt file among four: the rest are done, the exit code says so
    assert "broken.tif: cannot be read" in err and "3 of 4 file(s) done" in err and "files" in err
    summary = json.loads((out / "summary.json").read_text())
    assert [f["status"] for f in summary["files"]] == ["error", "ok", "ok", "ok"]
    assert main(["segment", str(d / "img0.tif"), "--out", str(out), "--no-progress"]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["segment", str(tmp_path / "none*.tif"), "--out", str(out)]) == 2
    assert "no input file matches" in capsys.readouterr().err
    one = tmp_path / "one.zarr"
    assert main(["segment", str(d / "img1.tif"), "--out", str(one), "--no-progress"]) == 0
    model_json = tmp_path / "model.json"
    model_json.write_text(json.dumps(io.read_result(one)[1]["model"]))
    assert (
        main(["apply", str(model_json), str(d / "img1.tif"), "--out", str(tmp_path / "ap.zarr"), "--no-progress"]) == 0
    )
    np.testing.assert_array_equal(io.read_result(tmp_path / "ap.zarr")[0].compute(), io.read_result(one)[0].compute())


def test_unreachable_scheduler_is_a_clear_error():
    pytest.importorskip("distributed")
    with pytest.raises(ng.InputError, match="cannot reach the dask scheduler at tcp://127.0.0.1:9"):
        batch.connect("tcp://127.0.0.1:9", timeout="1s")


def test_connecting_prepares_the_workers_without_waiting(monkeypatch):
    """batch.connect (the command line's --scheduler) has every worker import what reading zarr
    chunks takes and load the 8/16-bit histogram kernels, in a thread of the worker's, without
    waiting for it; the preparation itself runs on a worker without error."""
    distributed = pytest.importorskip("distributed")
    ran = []

    def load():
        ran.append(1)
        batch_load()

    batch_load = batch._load_readers
    monkeypatch.setattr(batch, "_load_readers", load)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as lc:
        client = batch.connect(lc.scheduler_address)
        try:
            deadline = time.monotonic() + 30
            while len(ran) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert len(ran) == 2  # once per worker (in-process workers: this process's modules)
            assert client.submit(lambda: 1).result() == 1  # the workers still run tasks
        finally:
            client.close()


def test_on_a_local_cluster(folder, tmp_path, monkeypatch):
    """The batch job on a distributed cluster; its workers write the labels' chunks directly (the
    writer travels to them as its zarr array)."""
    distributed = pytest.importorskip("distributed")
    d, imgs = folder
    written = []
    write_file = io._write_file
    monkeypatch.setattr(io, "_write_file", lambda *a: written.append(a[0]) or write_file(*a))
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as lc:
        with distributed.Client(lc) as client:
            summary = batch.segment_files(batch.expand_inputs([d]), tmp_path / "out", 3, client=client)
    assert summary["n_ok"] == 3
    assert written
    labels, _ = io.read_result(tmp_path / "out" / "img0_labels.zarr")
    np.testing.assert_array_equal(labels.compute(), ng.segment(imgs[0], 3))


def test_background_command_writes_tiled_result_equal_to_numpy(tmp_path, monkeypatch):
    from napari_gmm._kernels import _config
    from napari_gmm.datasets import moving_objects

    monkeypatch.setattr(_config, "TILE_BYTES", 40 * 24 * 24)  # several tiles
    stack = moving_objects((40, 48, 56))[0]
    tifffile.imwrite(tmp_path / "stack.tif", stack, photometric="minisblack")
    out = tmp_path / "bg.zarr"
    assert main(["background", str(tmp_path / "stack.tif"), "--out", str(out), "--no-progress"]) == 0
    ref = ng.subtract_background(stack)
    fg, meta = io.read_result(out, "foreground")
    np.testing.assert_array_equal(fg.compute(), ref.foreground)
    np.testing.assert_array_equal(io.read_result(out, "background")[0].compute(), ref.background)
    assert meta["params"]["tiles"][0] * meta["params"]["tiles"][1] > 1
    assert main(["background", str(tmp_path / "stack.tif"), "--out", str(out), "--no-progress"]) == 2


def test_cli_labels_into_an_ome_zarr_input(tmp_path, monkeypatch):
    import zarr

    img, _ = phantom((64, 48), seed=3)
    g = zarr.open_group(str(tmp_path / "im.zarr"), mode="w")
    g.create_array("0", data=img, chunks=(32, 48))
    axes = [{"name": "y", "type": "space"}, {"name": "x", "type": "space"}]
    scale = [{"type": "scale", "scale": [1.0, 1.0]}]
    g.attrs["ome"] = {
        "version": "0.5",
        "multiscales": [{"axes": axes, "datasets": [{"path": "0", "coordinateTransformations": scale}]}],
    }
    tifffile.imwrite(tmp_path / "plain.tif", img)
    monkeypatch.chdir(tmp_path)
    code = main(["segment", "im.zarr", "plain.tif", "-k", "3", "--labels-into-input", "--no-progress"])
    assert code == 1  # the TIFF cannot hold a labels group: reported, the zarr done
    summary = json.loads((tmp_path / "napari-gmm-summary.json").read_text())
    assert [f["status"] for f in summary["files"]] == ["ok", "error"]
    assert "not an OME-Zarr image" in summary["files"][1]["error"]
    labels, _ = io.read_result(tmp_path / "im.zarr" / "labels" / "napari-gmm")
    np.testing.assert_array_equal(labels.compute(), ng.segment(img, 3))
    assert main(["segment", "plain.tif", "-k", "3", "--no-progress"]) == 2  # neither --out nor into the input
