"""Compile the library's Numba kernels into Numba's on-disk cache ahead of first use.

Every kernel is compiled on its first call with a new argument type and kept in the on-disk cache
(``cache=True``: next to the sources, or in ``NUMBA_CACHE_DIR``), so only the first call in a fresh
installation pays for it: about 20 s of CPU for each of background modelling's three kernel
variants (8-bit, 16-bit, float), 20-30 s for the segmentation and spatial paths, a few seconds for
megapixel images' parallel kernels (all of it: about 75 s on 2 cores, 145 s of CPU). ``precompile`` pays it up front,
spread over several processes: after installing on a shared workstation or a cluster image, before
a first napari session, or before a test run (``tools/run-tests.sh`` does it so that its two test
processes do not each compile the same kernels).

It runs the public functions on tiny synthetic inputs of every dtype family the kernels are
specialised for (small inputs take the serial twins, larger ones the parallel kernels); nothing is
written but the cache. Command line: ``python -m napari_gmm.precompile [--jobs N]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

import numpy as np

#: sides of the tiny (serial kernels) and larger (parallel kernels: above ``_config.PARALLEL_WORK``
#: samples x components) images
SMALL, LARGE = 48, 400


def _grey_base(rng, side):
    """A side x side float image of three separated grey classes (clip it into a dtype)."""
    return rng.choice([40.0, 120.0, 200.0], size=(side, side)) + rng.normal(0, 8, (side, side))


def _rgb_base(rng, side):
    """A side x side x 3 float image of three separated colour classes (clip it into a dtype)."""
    cls = rng.integers(0, 3, (side, side))
    return np.array([[30, 60, 200], [200, 40, 40], [60, 200, 90]], float)[cls] + rng.normal(0, 6, (side, side, 3))


def _grey_images(rng):
    """Grey test images, three separated classes, in the dtypes the kernels are specialised for."""
    for side in (SMALL, LARGE):
        base = _grey_base(rng, side)
        for dtype in (np.uint8, np.uint16, np.int16, np.float32, np.float64):
            yield np.clip(base, 0, 255).astype(dtype)


def _segmentation(rng):
    import napari_gmm as ng

    for img in _grey_images(rng):
        labels, model = ng.segment(img, 3, return_model=True, random_state=0)
        model.predict_proba(img)
        ng.quantize(img, 3, channel_axis=None, random_state=0)
        ng.segment(img, 3, mask=img > img.min(), random_state=0)
        ng.segment(img, 3, init="kmeans++", random_state=0)


def _colour(rng):
    import napari_gmm as ng

    for side in (SMALL, LARGE):
        rgb = _rgb_base(rng, side)
        for dtype in (np.uint8, np.uint16, np.float32):
            img = np.clip(rgb, 0, 255).astype(dtype)
            for cov in ("spherical", "diag", "full"):
                _, model = ng.segment(img, 3, channel_axis=-1, covariance_type=cov, return_model=True, random_state=0)
                model.predict_proba(img, channel_axis=-1)
            ng.quantize(img, 3, channel_axis=-1, random_state=0)
            # the grid compression (float colour and wide integers above 2**20 pixels, or bins=)
            _, model = ng.segment(img, 3, channel_axis=-1, bins=32, return_model=True, random_state=0)
            model.predict(img, channel_axis=-1)


def _megapixel(rng):
    """Images above ``_config.SERIAL_BELOW`` pixels (a megapixel): the parallel range, histogram,
    colour-key and look-up kernels, which the smaller images above leave to their serial twins (a
    first megapixel image compiled them: about 10 s of CPU for uint8, uint16, float32 and RGB)."""
    import napari_gmm as ng
    from napari_gmm._kernels import _config

    side = int(np.ceil(np.sqrt(_config.SERIAL_BELOW))) + 1
    base = _grey_base(rng, side)
    for dtype in (np.uint8, np.uint16, np.float32):
        img = np.clip(base, 0, 255).astype(dtype)
        ng.segment(img, 3, random_state=0)
        ng.segment(img, 3, mask=img > img.min(), random_state=0)
    ng.segment(np.clip(_rgb_base(rng, side), 0, 255).astype(np.uint8), 3, channel_axis=-1, random_state=0)


def _spatial(rng):
    import napari_gmm as ng
    from napari_gmm.datasets import noisy_regions

    img2 = noisy_regions((96, 96), noise=0.58, bias=0.3, seed=0)[0]
    ng.segment(img2, 3, beta="auto")
    ng.segment(img2, 3, beta="auto", bias_field=True)
    img3 = noisy_regions((16, 40, 40), noise=0.58, seed=0)[0]
    ng.segment(img3, 3, beta="auto")


def _spatial_channels(rng):
    """The spatial model of a two-channel image (the general sweep: several channels, a layer per
    channel in the widget)."""
    import napari_gmm as ng
    from napari_gmm.datasets import noisy_regions

    a = noisy_regions((64, 64), noise=0.58, seed=0)[0]
    b = noisy_regions((64, 64), noise=0.58, seed=1)[0]
    ng.segment(np.stack([a, b], axis=-1), 3, channel_axis=-1, beta="auto")


def _other_dtypes(rng):
    """The less common integer dtypes (their histograms' serial kernels), on tiny images."""
    import napari_gmm as ng

    base = np.clip(rng.choice([10.0, 60.0, 110.0], size=(SMALL, SMALL)) + rng.normal(0, 4, (SMALL, SMALL)), 0, 120)
    for dtype in (np.int8, np.uint32, np.int32, np.uint64, np.int64):
        ng.segment(base.astype(dtype), 3, random_state=0)


def _choosing_k(rng):
    import napari_gmm as ng

    for img in _grey_images(rng):
        clipped = img.copy()
        clipped[: img.shape[0] // 10] = np.iinfo(img.dtype).max if img.dtype.kind in "ui" else img.max()
        ng.segment(clipped, "auto")
        ng.segment(img, 3, labels="intervals")


def _background(dtype):
    def run(rng):
        import napari_gmm as ng

        # a camera offset of 10, shot noise on structures of varied brightness, an object arriving
        yy, xx = np.mgrid[:40, :48]
        photons = 40.0 + 60.0 * (np.sin(yy / 5.0) * np.cos(xx / 7.0) > 0)
        frames = 10.0 + rng.poisson(photons, (24, 40, 48)) + rng.normal(0, 2, (24, 40, 48))
        frames[12:, 10:20, 10:20] += 80
        stack = np.clip(frames, 0, 250).astype(dtype)
        for preset in ("camera video", "fluorescence time-lapse"):
            ng.subtract_background(stack, preset=preset)
        ng.subtract_background(np.stack([stack] * 3, axis=-1), channel_axis=-1)
        model = ng.BackgroundModel(stack.shape[1:])  # frame by frame (streaming)
        for frame in stack[:3]:
            model.apply(frame)
        # the serial twin of hole filling, which tiled (dask) runs use inside their tasks
        from napari_gmm._kernels import mog

        mog.fill_holes_stack_serial(np.zeros((1, 4, 4), np.uint8), 1, 1)

    return run


#: name -> job, ordered from the longest to compile to the shortest (cold, 2 processes: 19-23 s
#: each down to "spatial model", then 0.1-7 s), so that a pool of processes finishes them at about
#: the same time
TASKS = {
    "background, 16-bit": _background(np.uint16),
    "background, 8-bit": _background(np.uint8),
    "background, float": _background(np.float32),
    "segmentation, grey": _segmentation,
    "segmentation, colour": _colour,
    "spatial model": _spatial,
    "spatial model, two channels": _spatial_channels,
    "choosing K, censored fits, intervals": _choosing_k,
    "megapixel images": _megapixel,
    "other integer dtypes": _other_dtypes,
}


def _run_task(name: str) -> tuple[str, float]:
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings of the tiny inputs are not the point
        TASKS[name](np.random.default_rng(0))
    return name, time.perf_counter() - t


def precompile(jobs: int | None = None, *, progress=None) -> dict[str, float]:
    """Compile every kernel into Numba's on-disk cache, in ``jobs`` processes.

    Parameters
    ----------
    jobs : int, optional
        Worker processes (default: the CPUs this process may use). 1 runs here, in this process.
    progress : callable, optional
        ``progress(done, total, name)`` after each task.

    Returns
    -------
    dict
        Seconds each task took (compile and run), by name.
    """
    if jobs is None:
        jobs = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if not isinstance(jobs, int | np.integer) or jobs < 1:
        raise ValueError(f"jobs must be an integer >= 1, got {jobs!r}")
    names = list(TASKS)
    done = {}
    if jobs == 1:
        for name in names:
            done.update([_run_task(name)])
            if progress is not None:
                progress(len(done), len(names), name)
        return done
    import multiprocessing as mp

    # spawn: fresh interpreters (fork would copy this process's threads and Numba state)
    with mp.get_context("spawn").Pool(min(jobs, len(names))) as pool:
        for name, seconds in pool.imap_unordered(_run_task, names):
            done[name] = seconds
            if progress is not None:
                progress(len(done), len(names), name)
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m napari_gmm.precompile",
        description="Compile napari-gmm's Numba kernels into Numba's on-disk cache, so that the first "
        "segmentation or background run does not wait for the compiler.",
    )
    parser.add_argument("--jobs", "-j", type=int, default=None, help="worker processes (default: all CPUs)")
    args = parser.parse_args(argv)
    t = time.perf_counter()

    def report(done, total, name):
        print(f"napari-gmm precompile: [{done}/{total}] {name}", file=sys.stderr, flush=True)

    try:
        precompile(args.jobs, progress=report)
    except ValueError as exc:
        parser.error(str(exc))
    print(f"napari-gmm precompile: done in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
