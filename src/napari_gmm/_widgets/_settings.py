"""Settings remembered across sessions: one small JSON file per user.

The file is ``settings.json`` in the user's configuration folder for napari-gmm (platformdirs, which
napari depends on; e.g. ``~/.config/napari-gmm/`` on Linux), or the path in the environment variable
``NAPARI_GMM_SETTINGS``. It holds one section per widget, e.g. ``{"segment": {"n_components": 3,
...}}``: the values of the last run, which the widget shows when it opens and which the Layers-menu
command "Segment the selected layer" uses. "Reset to defaults" in a widget empties its section. A
missing, unreadable or hand-broken file means the defaults (never an error).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

_log = logging.getLogger(__name__)

ENV = "NAPARI_GMM_SETTINGS"


def path() -> Path:
    if os.environ.get(ENV):
        return Path(os.environ[ENV])
    from platformdirs import user_config_dir

    return Path(user_config_dir("napari-gmm", appauthor=False)) / "settings.json"


def _read_all() -> dict:
    try:
        data = json.loads(path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def load(section: str) -> dict:
    """The remembered values of ``section`` ({} when none)."""
    values = _read_all().get(section)
    return dict(values) if isinstance(values, dict) else {}


def save(section: str, values: dict) -> None:
    """Remember ``values`` (JSON-able) for ``section``; a failure to write is logged, not raised."""
    data = _read_all()
    data[section] = values
    target = path()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
        tmp.replace(target)
    except OSError as exc:
        _log.warning("napari-gmm could not save its settings to %s: %s", target, exc)


def reset(section: str) -> None:
    """Forget ``section`` (back to the defaults)."""
    data = _read_all()
    if data.pop(section, None) is not None:
        save_all(data)


def save_all(data: dict) -> None:
    target = path()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
    except OSError as exc:
        _log.warning("napari-gmm could not save its settings to %s: %s", target, exc)
