"""Where the time of a big-data job goes: CPU seconds per activity, and how many cores it could use.

Runs one job as the command line does (``napari-gmm background`` by default, or ``apply`` /
``segment``), on a zarr stack (e.g. the one ``bench_scale.py`` generates), from a cold page cache,
with:

- the wall time and the CPU seconds (user + sys) of the whole process (every thread: dask's,
  zarr's event loop and codec threads, Numba's);
- the thread-CPU seconds spent in each activity of the calling threads, by wrapping the functions
  that do them: the per-pixel kernel, the post-filter, faulting in the outputs, the histogram and
  look-up kernels, napari-gmm's zarr reader (``io.open_image``: a chunk read and decoded in the
  calling thread). zarr decodes, encodes and writes in its own threads (the dask thread waits), so
  reading and writing show as wall time waited by the dask threads; the file I/O's CPU is in "the
  rest";
- the chunks zarr decoded and encoded, and the thread-CPU seconds of doing so, by codec (zarr runs
  them in its own threads: counted there);
- the threads of the process that were runnable (state R, or D: waiting for the disk), sampled
  every 20 ms: the cores the job could keep busy. On a machine shared with other jobs, runnable
  also counts waiting for a core, so this is the job's parallelism, not the cores it got.

The CPU seconds barely move with the others' load; wall times do. A job whose CPU seconds are
twice its wall time keeps 2 cores busy: it can only gain from less work, not from more overlap.

    python benchmarks/profile_scale.py STACK.zarr [--job background|apply|segment] [--model M.zarr]
"""

from __future__ import annotations

import argparse
import functools
import os
import resource
import shutil
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_scale import drop_caches  # noqa: E402


class Runnable:
    """Samples how many of this process's threads are runnable (R) or in disk wait (D)."""

    def __init__(self, dt=0.02):
        self.dt, self.hist, self.disk, self._stop = dt, Counter(), 0, threading.Event()

    def _run(self):
        me = threading.get_native_id()
        while not self._stop.is_set():
            n = d = 0
            for tid in os.listdir("/proc/self/task"):
                if int(tid) == me:
                    continue
                try:
                    with open(f"/proc/self/task/{tid}/stat") as f:
                        s = f.read()
                except OSError:
                    continue
                state = s[s.rindex(")") + 2]
                n += state in "RD"
                d += state == "D"
            self.hist[n] += 1
            self.disk += d > 0
            time.sleep(self.dt)

    def __enter__(self):
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()

    def report(self, cores):
        tot = max(1, sum(self.hist.values()))
        share = {k: f"{100 * v / tot:.0f}%" for k, v in sorted(self.hist.items())}
        mean = sum(min(k, cores) * v for k, v in self.hist.items()) / tot
        return (
            f"runnable threads (share of samples): {share}; mean min(runnable, {cores}) = {mean:.2f} cores; "
            f"a thread in disk wait in {100 * self.disk / tot:.0f}% of the samples"
        )


class Activities:
    """Wall and thread-CPU seconds of wrapped functions (the outermost wrapped call counts)."""

    def __init__(self):
        self.stats = defaultdict(lambda: [0, 0.0, 0.0])
        self._lock, self._tl = threading.Lock(), threading.local()

    def wrap(self, owner, attr, name):
        f = getattr(owner, attr)

        @functools.wraps(f)
        def timed(*a, **k):
            if getattr(self._tl, "inside", None):
                return f(*a, **k)
            self._tl.inside = name
            w, c = time.perf_counter(), time.thread_time()
            try:
                return f(*a, **k)
            finally:
                self._tl.inside = None
                with self._lock:
                    s = self.stats[name]
                    s[0] += 1
                    s[1] += time.perf_counter() - w
                    s[2] += time.thread_time() - c

        setattr(owner, attr, timed)


def _cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime, r.ru_stime


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stack")
    ap.add_argument("--job", choices=("background", "apply", "segment"), default="background")
    ap.add_argument("--model", help="apply: a saved model (.json, or a result .zarr)")
    ap.add_argument("--out", default=None, help="output .zarr (default: beside the stack, removed after)")
    args = ap.parse_args()

    import zarr.core.array as za

    from napari_gmm import _dask, batch
    from napari_gmm import background as bg
    from napari_gmm._kernels import mog

    acts = Activities()
    acts.wrap(mog, "mog2_apply", "background kernel (mog2_apply)")
    acts.wrap(bg, "_majority_block", "post-filter (majority vote)")
    acts.wrap(bg, "_populate", "faulting in the outputs (_populate)")
    acts.wrap(bg._BlockReader, "__call__", "input block read (dask thread waits)")
    acts.wrap(_dask, "whole_dtype_counts", "histogram kernel")
    acts.wrap(_dask, "grey_lookup", "labels look-up kernel")
    acts.wrap(za.Array, "__getitem__", "zarr read (dask thread waits)")
    # napari-gmm's reader (io.open_image) reads a whole chunk, or a chunk's first frames, itself
    # and decodes it in the calling dask thread (calls = chunks; zarr's own reads counted above)
    from napari_gmm import io as nio

    acts.wrap(nio._ZarrChunks, "__getitem__", "napari-gmm zarr reader: read + decode (dask thread)")
    acts.wrap(za.Array, "__setitem__", "zarr write (dask thread waits)")
    # zarr runs its codecs in its own threads (asyncio.to_thread): each call is counted there, so
    # these rows are the decoding and compressing themselves (calls = chunks decoded / encoded)
    from zarr.codecs import BloscCodec, ZstdCodec

    for cls, cname in ((ZstdCodec, "Zstd"), (BloscCodec, "Blosc")):
        acts.wrap(cls, "_decode_sync", f"zarr decode, {cname} (zarr's threads)")
        acts.wrap(cls, "_encode_sync", f"zarr encode, {cname} (zarr's threads)")

    stack = Path(args.stack)
    out = Path(args.out or stack.with_name(f".profile-{args.job}.zarr"))
    drop_caches(stack)
    cpu0, sys0 = _cpu()
    t0 = time.perf_counter()
    with Runnable() as rn:
        if args.job == "background":
            s = batch.background_file(stack, out, overwrite=True)
        elif args.job == "apply":
            if not args.model:
                ap.error("--job apply needs --model")
            s = batch.apply_files(args.model, [stack], out, overwrite=True)
        else:
            s = batch.segment_files([stack], out, 3, overwrite=True)
    wall = time.perf_counter() - t0
    cpu1, sys1 = _cpu()
    bad = [f for f in s["files"] if f["status"] != "ok"]
    if bad:
        raise SystemExit(f"the job failed: {bad}")
    cpu = cpu1 - cpu0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    cores = os.cpu_count()
    print(
        f"{args.job} of {stack}: wall {wall:.1f} s; process CPU {cpu:.1f} s (sys {sys1 - sys0:.1f}) = "
        f"{cpu / wall:.2f} cores busy on average; peak RSS {peak / 2**20:.0f} MiB; "
        f"load average after {open('/proc/loadavg').read().split()[:3]}"
    )
    print("| activity | calls | wall s (summed over threads) | thread-CPU s | share of the process CPU |")
    print("|---|---|---|---|---|")
    counted = 0.0
    for name, (n, w, c) in sorted(acts.stats.items(), key=lambda kv: -kv[1][2]):
        counted += c
        print(f"| {name} | {n} | {w:.2f} | {c:.2f} | {100 * c / cpu:.1f}% |")
    rest = cpu - counted
    rest_name = "the rest: zarr's file I/O and event loop, the OS, dask, Python"
    print(f"| {rest_name} | - | - | {rest:.2f} | {100 * rest / cpu:.1f}% |")
    print(rn.report(cores))
    if args.out is None:
        shutil.rmtree(out, ignore_errors=True)
        for p in out.parent.glob(out.name + "*summary.json"):
            p.unlink()


if __name__ == "__main__":
    main()
