"""Fixtures shared by the dock-widget tests (headless napari under Xvfb); helpers are in _util.py."""

from __future__ import annotations

import pytest


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()
