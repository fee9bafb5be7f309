"""Suite-wide pytest configuration."""

from __future__ import annotations

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
