"""Fixtures shared by the dock-widget tests (headless napari under Xvfb); helpers are in _util.py."""

from __future__ import annotations

import pytest


@pytest.fixture
def notes(monkeypatch):
    """The segmentation widget's notifications, recorded instead of shown: {kind: [messages]}
    (modules testing another widget define their own)."""
    from napari_gmm._widgets import _segment

    from ._util import record_notifications

    return record_notifications(monkeypatch, _segment)


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


@pytest.fixture(autouse=True)
def _own_settings_file(tmp_path, monkeypatch):
    """Each test remembers its widget settings in its own file, never in the user's."""
    monkeypatch.setenv("NAPARI_GMM_SETTINGS", str(tmp_path / "napari-gmm-settings.json"))
