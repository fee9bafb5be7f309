"""napari_gmm.precompile: the task runner and its command line (the tasks themselves run in
tools/run-tests.sh before the suite, and every kernel they reach is tested by its own module)."""

from __future__ import annotations

import pytest

from napari_gmm import precompile as pc


def test_tasks_run_in_order_with_progress(monkeypatch):
    ran = []
    monkeypatch.setattr(pc, "TASKS", {"a": lambda rng: ran.append("a"), "b": lambda rng: ran.append("b")})
    seen = []
    out = pc.precompile(1, progress=lambda done, total, name: seen.append((done, total, name)))
    assert ran == ["a", "b"]
    assert seen == [(1, 2, "a"), (2, 2, "b")]
    assert set(out) == {"a", "b"} and all(t >= 0 for t in out.values())


@pytest.mark.parametrize("jobs", [0, -1, 1.5, "2"])
def test_bad_jobs_are_refused(jobs):
    with pytest.raises(ValueError, match="jobs must be an integer >= 1"):
        pc.precompile(jobs)


def test_command_line_refuses_zero_jobs(capsys):
    with pytest.raises(SystemExit) as exc:
        pc.main(["--jobs", "0"])
    assert exc.value.code == 2
    assert "jobs must be an integer >= 1" in capsys.readouterr().err


def test_napari_gmm_precompile_subcommand(monkeypatch):
    from napari_gmm.__main__ import main

    calls = []
    monkeypatch.setattr(pc, "precompile", lambda jobs=None, progress=None: calls.append(jobs) or {})
    assert main(["precompile", "--jobs", "1"]) == 0
    assert main(["precompile"]) == 0
    assert calls == [1, None]
