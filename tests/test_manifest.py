"""The napari manifest: valid, shipped in the wheel, every reference real, menus napari shows.

``npe2 validate`` accepts misspelled menu ids and dangling command references, so these tests check
them against napari's own menu ids and by importing every ``python_name``.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "src" / "napari_gmm" / "napari.yaml"
PLUGIN = "napari-gmm"

npe2 = pytest.importorskip("npe2")


@pytest.fixture(scope="module")
def manifest():
    return npe2.PluginManifest.from_file(MANIFEST)


def _resolve(python_name: str):
    module_name, _, attr = python_name.partition(":")
    obj = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


# --------------------------------------------------------------------------------------------
# the file itself


def test_npe2_validate_passes():
    """The npe2 command line accepts the manifest (schema, ids, python_name syntax)."""
    proc = subprocess.run(
        [sys.executable, "-m", "npe2", "validate", str(MANIFEST)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "valid" in proc.stdout.lower()


def test_manifest_is_a_real_file_in_the_package():
    """The package holds the manifest itself (no symlink inside the package); the top-level
    napari.yaml, if present, is a symlink to it (the design card lists napari.yaml at the top)."""
    assert MANIFEST.is_file() and not MANIFEST.is_symlink(), "src/napari_gmm/napari.yaml must be a file"
    top = ROOT / "napari.yaml"
    if top.exists() or top.is_symlink():
        assert top.is_symlink() and top.resolve() == MANIFEST.resolve()


def test_plain_install_pulls_neither_napari_nor_qt():
    """`pip install napari-gmm` (scripts, cluster workers): no napari, Qt, magicgui or npe2; the
    napari parts come with the extras "napari" / "pyqt6"."""
    import re
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {re.split(r"[\[<>=!~; ]", d, maxsplit=1)[0].lower() for d in project["dependencies"]}
    gui = {
        "napari",
        "magicgui",
        "qtpy",
        "npe2",
        "pyqt5",
        "pyqt6",
        "pyside2",
        "pyside6",
        "napari-matplotlib",
        "superqt",
        "vispy",
    }
    assert not names & gui, names & gui
    extras = project["optional-dependencies"]
    assert any(d.startswith("napari>=") for d in extras["napari"])
    assert any("pyqt6" in d for d in extras["pyqt6"])


def test_name_and_command_ids(manifest):
    assert manifest.name == PLUGIN
    ids = [c.id for c in manifest.contributions.commands]
    assert len(ids) == len(set(ids)), f"duplicate command ids: {ids}"
    for cid in ids:
        assert cid.startswith(PLUGIN + "."), cid
    keys = [s.key for s in manifest.contributions.sample_data]
    assert len(keys) == len(set(keys))


# --------------------------------------------------------------------------------------------
# references


def test_every_referenced_command_exists(manifest):
    """Widgets, menu items and sample data point to declared commands; submenus are declared."""
    contrib = manifest.contributions
    commands = {c.id for c in contrib.commands}
    submenus = {s.id for s in contrib.submenus or ()}
    referenced = set()
    for w in contrib.widgets or ():
        referenced.add(w.command)
    for s in contrib.sample_data or ():
        referenced.add(s.command)
    for wr in contrib.writers or ():
        referenced.add(wr.command)
    placed_submenus = set()
    for _menu_id, items in contrib.menus.items():
        for item in items:
            if isinstance(item, npe2.manifest.contributions.MenuCommand):
                referenced.add(item.command)
            else:
                placed_submenus.add(item.submenu)
                assert item.submenu in submenus, f"submenu {item.submenu!r} is not declared"
    missing = referenced - commands
    assert not missing, f"commands referenced but not declared: {sorted(missing)}"
    unused = commands - referenced
    assert not unused, f"commands declared but not used by any contribution: {sorted(unused)}"
    # every declared submenu is placed in a menu and has entries
    assert submenus == placed_submenus, (submenus, placed_submenus)
    for sid in submenus:
        assert contrib.menus.get(sid), f"submenu {sid!r} is empty"


def test_every_python_name_imports_and_resolves(manifest):
    for cmd in manifest.contributions.commands:
        assert cmd.python_name, f"{cmd.id} has no python_name"
        obj = _resolve(cmd.python_name)
        assert callable(obj), f"{cmd.python_name} is not callable"


def test_menu_ids_are_napari_contributable_menus(manifest):
    """Each menu key is a menu napari lets plugins contribute to, or one of our submenus."""
    from napari._app_model.constants import MenuId

    contributable = {str(m.value) for m in MenuId.contributables()}
    submenus = {s.id for s in manifest.contributions.submenus or ()}
    for menu_id in manifest.contributions.menus:
        if menu_id.startswith("napari/"):
            assert menu_id in contributable, (
                f"{menu_id!r} is not a contributable napari menu; choose one of {sorted(contributable)}"
            )
        else:
            assert menu_id in submenus, f"{menu_id!r} is neither a napari menu nor our submenu"


def test_segment_entry_in_layers_segment(manifest):
    """Layers > Segment > "Gaussian mixture (EM)" holds the segmentation and background widgets."""
    from napari._app_model.constants import MenuId

    contrib = manifest.contributions
    entries = contrib.menus[str(MenuId.LAYERS_SEGMENT.value)]
    labels = {s.id: s.label for s in contrib.submenus}
    sub = [e.submenu for e in entries if hasattr(e, "submenu")]
    assert [labels[s] for s in sub] == ["Gaussian mixture (EM)"]
    assert [i.command for i in contrib.menus[sub[0]]] == [
        "napari-gmm.segment_selected",
        "napari-gmm.segment_selected_auto_k",
        "napari-gmm.background_selected",
        "napari-gmm.segment_widget",
        "napari-gmm.background_widget",
    ]
    widgets = {w.command: w.display_name for w in contrib.widgets}
    assert widgets["napari-gmm.segment_widget"] == "Gaussian mixture segmentation"
    assert widgets["napari-gmm.background_widget"] == "Background model"
    cmds = {c.id: c for c in contrib.commands}
    assert cmds["napari-gmm.segment_widget"].python_name == "napari_gmm._widgets._segment:segment_widget"
    assert cmds["napari-gmm.background_widget"].python_name == "napari_gmm._widgets._background:background_widget"


def test_sample_data_commands(manifest):
    """Each sample returns napari layer-data tuples that napari can turn into layers."""
    from napari.layers import Layer

    commands = {c.id: c for c in manifest.contributions.commands}
    seen = {}
    for sample in manifest.contributions.sample_data:
        out = _resolve(commands[sample.command].python_name)()
        assert isinstance(out, list) and out
        layers = [Layer.create(*tup) for tup in out]
        seen[sample.key] = layers
    (cam,) = seen["cameraman"]
    assert cam.data.shape == (512, 512)
    image, truth = seen["phantom"]
    assert type(image).__name__ == "Image" and type(truth).__name__ == "Labels"
    assert image.data.shape == truth.data.shape == (256, 256)
    assert sorted(set(truth.data.ravel().tolist())) == [1, 2, 3]
    stack, moving = seen["moving_objects"]
    assert stack.data.ndim == 3 and moving.data.shape == stack.data.shape
    assert sorted(set(moving.data.ravel().tolist())) == [0, 1]


# --------------------------------------------------------------------------------------------
# shipping: installed metadata and the built wheel


def test_installed_entry_point_finds_the_manifest():
    """The installed distribution (editable or not) exposes the manifest to npe2's discovery."""
    try:
        dist = metadata.distribution(PLUGIN)
    except metadata.PackageNotFoundError:
        pytest.fail("napari-gmm is not installed: run `pip install -e .` (tools/run-tests.sh does)")
    eps = [ep for ep in dist.entry_points if ep.group == "napari.manifest"]
    assert [(ep.name, ep.value) for ep in eps] == [(PLUGIN, "napari_gmm:napari.yaml")]
    found = npe2.PluginManifest.from_distribution(PLUGIN)
    assert found.name == PLUGIN
    # same content (the objects also carry the path they were read from, which differs for a
    # regular install)
    assert found.model_dump() == npe2.PluginManifest.from_file(MANIFEST).model_dump()


def _copy_tree(dst: Path) -> Path:
    """Copy the source tree (symlinks kept) so that building leaves the checkout untouched."""
    ignore = shutil.ignore_patterns(
        ".git",
        ".venv",
        "build",
        "dist",
        "*.egg-info",
        "__pycache__",
        ".pytest_cache",
        ".tox",
        "napari-gmm-demo",
        "*.nbi",
        "*.nbc",
    )
    return Path(shutil.copytree(ROOT, dst / "src-copy", symlinks=True, ignore=ignore))


def test_wheel_ships_the_manifest(tmp_path):
    """Build the wheel offline; it contains napari_gmm/napari.yaml equal to the top-level file."""
    src = _copy_tree(tmp_path)
    out = tmp_path / "wheels"
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", str(out), str(src)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    wheels = list(out.glob("napari_gmm-*.whl"))
    assert len(wheels) == 1, list(out.iterdir())
    with zipfile.ZipFile(wheels[0]) as zf:
        names = zf.namelist()
        assert "napari_gmm/napari.yaml" in names
        assert zf.read("napari_gmm/napari.yaml") == MANIFEST.read_bytes()
        info = zf.getinfo("napari_gmm/napari.yaml")
        # a regular file in the wheel, not a stored symlink
        assert (info.external_attr >> 28) != 0o12
        ep_name = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        ep_text = zf.read(ep_name).decode()
        assert "[napari.manifest]" in ep_text
        assert "napari-gmm = napari_gmm:napari.yaml" in ep_text
        assert "napari_gmm/__main__.py" in names
        assert "napari_gmm/_widgets/_sample_data.py" in names
        # no test or tool files in the wheel
        assert not [n for n in names if n.startswith(("tests/", "tools/"))]


# --------------------------------------------------------------------------------------------
# what napari really shows


def _qmenu_titles(menu):
    return [a.text().replace("&&", "&") for a in menu.actions()]


def test_menus_in_a_running_napari(make_napari_viewer):
    """In a viewer, Layers > Segment > Gaussian mixture (EM) opens the dock widget; samples load."""
    from napari._app_model import get_app_model
    from napari._app_model.constants import MenuId

    viewer = make_napari_viewer()
    app = get_app_model()

    # app-model: the submenu sits in Layers > Segment and holds the widget action
    items = list(app.menus.get_menu(MenuId.LAYERS_SEGMENT))
    subs = [i for i in items if getattr(i, "submenu", None) == "napari-gmm.layers_segment_gmm"]
    assert len(subs) == 1 and subs[0].title == "Gaussian mixture (EM)"
    inner = [i.command.id for i in app.menus.get_menu("napari-gmm.layers_segment_gmm") if hasattr(i, "command")]
    assert inner == [
        "napari-gmm.segment_selected",
        "napari-gmm.segment_selected_auto_k",
        "napari-gmm.background_selected",
        "napari-gmm.segment_widget",
        "napari-gmm.background_widget",
    ]

    # Qt: the menu a user clicks through
    menubar = viewer.window._qt_window.menuBar()
    layers = next(a.menu() for a in menubar.actions() if a.text().replace("&", "") == "Layers")
    segment = next(a.menu() for a in layers.actions() if a.text().replace("&", "") == "Segment")
    gmm = next(a for a in segment.actions() if a.text().replace("&&", "&") == "Gaussian mixture (EM)")
    assert gmm.menu() is not None
    gmm.menu().aboutToShow.emit()  # app-model menus fill/refresh their actions on show
    titles = _qmenu_titles(gmm.menu())
    assert "Gaussian mixture segmentation (napari GMM)" in titles, titles

    # triggering the entry docks the widget
    action = next(
        a for a in gmm.menu().actions() if a.text().replace("&&", "&").startswith("Gaussian mixture segmentation")
    )
    action.trigger()
    docks = viewer.window.dock_widgets
    assert any("Gaussian mixture segmentation" in name for name in docks), list(docks)
    assert "Background model (napari GMM)" in titles, titles
    action = next(a for a in gmm.menu().actions() if a.text().replace("&&", "&") == "Background model (napari GMM)")
    action.trigger()
    assert any("Background model" in name for name in viewer.window.dock_widgets), list(viewer.window.dock_widgets)

    # File > Open Sample > napari GMM > phantom: image + truth labels
    viewer.open_sample(PLUGIN, "phantom")
    assert [layer.name for layer in viewer.layers][-2:] == ["phantom", "phantom truth"]
    assert viewer.layers["phantom truth"].data.max() == 3
    viewer.open_sample(PLUGIN, "cameraman")
    assert viewer.layers["cameraman"].data.shape == (512, 512)
