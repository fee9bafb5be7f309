"""The README's demo command: `python -m napari_gmm demo` runs headless and writes its outputs."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _env():
    env = dict(
        os.environ,
        PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
        NUMBA_NUM_THREADS=os.environ.get("NUMBA_NUM_THREADS", "2"),
    )
    # no display at all: the demo must not need one
    for var in ("DISPLAY", "WAYLAND_DISPLAY", "MPLBACKEND", "QT_QPA_PLATFORM"):
        env.pop(var, None)
    return env


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """Run the README command once (default K list) in a fresh directory, no --out."""
    cwd = tmp_path_factory.mktemp("demo")
    proc = subprocess.run(
        [sys.executable, "-m", "napari_gmm", "demo"],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return cwd / "napari-gmm-demo", proc


def test_demo_writes_its_files(demo_run):
    out, proc = demo_run
    expected = [
        "summary.json",
        "summary.txt",
        "phantom_labels.png",
        "phantom_labels.npy",
        "phantom_plot.png",
        "phantom_truth.npy",
        "phantom_image.npy",
    ]
    for k in (2, 3):
        expected += [f"cameraman_k{k}_labels.png", f"cameraman_k{k}_labels.npy", f"cameraman_k{k}_plot.png"]
    for name in expected:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    summary = json.loads((out / "summary.json").read_text())
    # every file listed exists (later demo steps add their own files to the list)
    assert set(expected) <= set(summary["files"])
    assert sorted(p.name for p in out.iterdir()) == sorted(summary["files"])
    assert "wrote" in proc.stdout


def test_demo_labels_and_models(demo_run):
    import napari_gmm as ng
    from napari_gmm.datasets import cameraman

    out, _ = demo_run
    summary = json.loads((out / "summary.json").read_text())
    image = cameraman()
    runs = {r["n_components"]: r for r in summary["steps"]["cameraman"]["runs"]}
    assert sorted(runs) == [2, 3]
    for k, run in runs.items():
        labels = np.load(out / f"cameraman_k{k}_labels.npy")
        assert labels.shape == image.shape and labels.dtype == np.uint8
        assert np.unique(labels).tolist() == list(range(1, k + 1))
        # the stored model reproduces the stored labels and is ordered darkest first
        model = ng.MixtureModel.from_dict(run["model"])
        np.testing.assert_array_equal(model.predict(image), labels)
        means = np.asarray(model.means)[:, 0]
        assert np.all(np.diff(means) > 0)
        # at least K-1 changes of the most probable component (a broad component can win again
        # beyond a narrow one, so there may be more)
        assert len(run["thresholds"]) >= k - 1
        assert np.all(np.diff(run["thresholds"]) > 0)
        assert run["first_call_s"] > 0 and run["warm_call_s"] > 0
        assert abs(sum(run["label_fractions"]) - 1) < 1e-9
        ll = np.asarray(model.history["log_likelihood"])
        assert ll.size == run["n_iter"] + 1


def test_demo_phantom_accuracy(demo_run):
    out, _ = demo_run
    ph = json.loads((out / "summary.json").read_text())["steps"]["phantom"]
    truth = np.load(out / "phantom_truth.npy")
    labels = np.load(out / "phantom_labels.npy")
    acc = float(np.mean(labels == truth))
    assert acc == pytest.approx(ph["accuracy"])
    # EM on the histogram should reach (nearly) the Bayes classifier with the true parameters
    assert ph["oracle_accuracy"] > 0.95
    assert acc > ph["oracle_accuracy"] - 0.005, (acc, ph["oracle_accuracy"])
    assert np.asarray(ph["confusion_truth_by_label"]).sum() == truth.size


def test_demo_pngs_are_images(demo_run):
    from matplotlib import image as mimage

    out, _ = demo_run
    lab = mimage.imread(out / "cameraman_k2_labels.png")
    assert lab.shape[:2] == (512, 512)
    # two label colours
    assert len(np.unique(lab[..., :3].reshape(-1, 3), axis=0)) == 2
    plot = mimage.imread(out / "cameraman_k2_plot.png")
    assert plot.shape[0] >= 300 and plot.shape[1] >= 800
    assert plot[..., :3].std() > 0.05  # not blank


def test_demo_summary_text(demo_run):
    out, _ = demo_run
    text = (out / "summary.txt").read_text()
    assert "cameraman" in text and "phantom" in text and "accuracy" in text


def test_demo_never_imports_gui_modules(tmp_path):
    """The demo itself (not only `import napari_gmm`) stays away from napari and Qt."""
    code = (
        "import sys\n"
        "from napari_gmm.__main__ import main\n"
        f"assert main(['demo', '--out', {str(tmp_path / 'o')!r}, '--k', '2', "
        "'--steps', 'cameraman']) == 0\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('napari', 'qtpy', 'magicgui', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'vispy') "
        "or m.startswith('matplotlib.backends.backend_qt')]\n"
        "print('BAD', bad)\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (tmp_path / "o" / "cameraman_k2_plot.png").is_file()
    assert not (tmp_path / "o" / "phantom_plot.png").exists()  # --steps honoured


def test_demo_options_and_errors(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "napari_gmm", "demo", "--k", "0"],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "--k" in proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "napari_gmm"], cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2 and "demo" in proc.stderr
    assert not (tmp_path / "napari-gmm-demo").exists()


def test_batch_commands_limit_malloc_arenas(monkeypatch):
    from napari_gmm import __main__ as cli

    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert cli._limit_malloc_arenas(2) is False  # the user's choice stands
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    # glibc's own default (8 per core), so the test process keeps its behaviour
    assert cli._limit_malloc_arenas(8 * os.cpu_count()) is glibc
