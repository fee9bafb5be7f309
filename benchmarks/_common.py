"""Helpers shared by the benchmarks: best-of timing and peak-memory measurement (Linux)."""

from __future__ import annotations

import time


def best_time(f, repeat=7):
    """(minimum wall time over ``repeat`` calls, the last result). The minimum is the least disturbed
    run on a shared machine."""
    ts, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = f()
        ts.append(time.perf_counter() - t)
    return min(ts), out


def proc_status(key):
    """A byte count from /proc/self/status (``"VmRSS:"``, ``"VmHWM:"``)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def peak_growth(f):
    """(bytes the resident set grew to at its peak while ``f()`` ran, f's result): the peak RSS
    (VmHWM) is reset to the current RSS just before (Linux >= 4.0, /proc/self/clear_refs)."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    before = proc_status("VmRSS:")
    out = f()
    return proc_status("VmHWM:") - before, out
