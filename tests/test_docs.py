"""The runnable Examples in the core modules' docstrings run and give what they show."""

import doctest
import importlib

import pytest

MODULES = [
    "napari_gmm",
    "napari_gmm.segmentation",
    "napari_gmm.pipeline",
    "napari_gmm.datasets",
    "napari_gmm.background",
    "napari_gmm.plotting",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"no examples found in {name}"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
