"""Suite-wide pytest configuration."""

from __future__ import annotations

import gc

# Test modules that start fresh Python interpreters (the demo, the import checks, the threading
# layer and cache checks). They run last: by then the in-process tests have compiled the Numba
# kernels into the on-disk cache (``cache=True``), so the fresh interpreters load them instead of
# compiling them again. On a clean checkout this halves the suite's compile time.
FRESH_INTERPRETER_MODULES = (
    "tests/test_main.py",
    "tests/test_import.py",
    "tests/test_manifest.py",
    "tests/_kernels/test_config.py",
    "tests/_kernels/test_threading.py",
)


def pytest_collection_modifyitems(session, config, items):
    def last(item):
        path = item.nodeid.split("::", 1)[0]
        return path in FRESH_INTERPRETER_MODULES

    items.sort(key=last)  # stable: the order inside each group is kept


def pytest_collection_finish(session):
    """Move every object alive after collection (the imported modules of napari, Qt, Numba,
    SciPy... and the collected tests) out of the garbage collector's reach: ``gc.freeze()``.

    napari runs a full ``gc.collect()`` each time a layer leaves a canvas (every widget test's
    viewer teardown, ``napari/_vispy/canvas.py``), and a full collection walks every tracked
    object: with these imports, about 0.2-0.5 s each. Frozen objects are never freed, and
    never needed to be (modules live for the whole session); every object a test creates is
    still collected as before, so napari's leak checks (``QtViewer._instances``) and every test
    see the same garbage collected.
    """
    gc.collect()
    gc.freeze()
