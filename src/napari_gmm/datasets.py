"""Sample images for examples, tests and the napari sample-data menu.

Pure NumPy (scikit-image only for the bundled cameraman); importing this module never imports
napari or Qt.

Functions
---------
cameraman
    The 512x512 uint8 cameraman photograph of scikit-image, the example of the method's seed.
phantom
    A synthetic noisy image of ``n_classes`` smooth regions with known ground-truth labels.
"""

from __future__ import annotations

import numpy as np

from ._validate import InputError

__all__ = ["cameraman", "phantom"]


def cameraman():
    """Return the cameraman photograph bundled with scikit-image.

    Returns
    -------
    image : (512, 512) ndarray of uint8
        Grey levels 0..255 (the full 8-bit range is used, so the ``"ranges"`` initialisation
        with ``n_components=2`` starts from the slices [0, 127] and [128, 255]).

    Notes
    -----
    The image ships inside scikit-image (no download). It is the example image of the seed
    method this package implements.

    Examples
    --------
    >>> from napari_gmm.datasets import cameraman
    >>> img = cameraman()
    >>> img.shape, img.dtype
    ((512, 512), dtype('uint8'))
    """
    from skimage import data

    return data.camera()


def _smooth_field(shape, length, rng):
    """Gaussian-filtered white noise (periodic, via FFT), standardised; float64 of ``shape``."""
    white = rng.standard_normal(shape)
    spectrum = np.fft.rfftn(white)
    # Gaussian low-pass with spatial standard deviation `length` pixels along every axis
    freqs = np.meshgrid(
        *[np.fft.fftfreq(n) for n in shape[:-1]],
        np.fft.rfftfreq(shape[-1]),
        indexing="ij",
        sparse=True,
    )
    f2 = sum(f * f for f in freqs)
    spectrum *= np.exp(-2.0 * np.pi**2 * length**2 * f2)
    field = np.fft.irfftn(spectrum, s=shape, axes=tuple(range(len(shape))))
    field -= field.mean()
    std = field.std()
    return field / std if std > 0 else field


def _class_fractions(n_classes):
    """Area fraction of each class, darkest first: halving geometric series, normalised.

    ``n_classes=3`` gives (4/7, 2/7, 1/7): a large dark background, a middle class and a small
    bright class, as in a fluorescence image of cells with nuclei.
    """
    f = 0.5 ** np.arange(n_classes, dtype=np.float64)
    return f / f.sum()


def phantom(shape=(256, 256), *, n_classes=3, noise=0.25, seed=0, dtype=np.uint16):
    """Synthetic noisy image of smooth regions with known ground-truth classes.

    The classes are the nested level sets of a smooth random field (blob-like "cells" with
    brighter "nuclei"), each class a constant intensity, plus i.i.d. Gaussian noise. The grey-level
    distribution is therefore an exact Gaussian mixture (up to rounding and clipping), with
    unequal weights, so a Gaussian-mixture fit has a true answer to find.

    Parameters
    ----------
    shape : tuple of int, optional
        Image shape, any number of dimensions >= 1 (e.g. ``(64, 128, 128)`` for a volume; each
        axis should be at least 8 pixels for the shapes to be blob-like).
    n_classes : int, optional
        Number of classes K (2..16). Class k (1-based) covers a fraction proportional to
        ``2**-(k-1)`` of the image.
    noise : float, optional
        Standard deviation of the Gaussian noise in units of the spacing between consecutive class
        intensities. With two equally likely classes the Bayes error is ``Phi(-1 / (2 * noise))``
        (``noise=0.25``: about 2.3 % per boundary between neighbouring classes); ``noise=0`` gives
        noise-free piecewise-constant data.
    seed : int or numpy.random.Generator, optional
        Seed of the shapes and the noise; the result is a deterministic function of all arguments.
    dtype : {numpy.uint16, numpy.uint8}, optional
        ``uint16`` (default) places the classes in a 12-bit camera range (0..4095), ``uint8`` in
        0..255.

    Returns
    -------
    image : ndarray of ``dtype``, shape ``shape``
        The noisy image. Class k has mean intensity
        ``lo + (k - 1) * step`` with ``lo = 0.25 * top``, ``step = 0.5 * top / (K - 1)`` and
        ``top`` = 4095 (uint16) or 255 (uint8); the noise standard deviation is ``noise * step``.
        Values are rounded and clipped to the dtype's range (with ``n_classes=3`` and
        ``noise <= 0.25`` the darkest and brightest class means are 4 standard deviations or more
        from 0 and from ``top``).
    truth : ndarray of uint8, shape ``shape``
        Ground-truth class of every pixel, 1..K ordered by class intensity (1 = darkest), the
        label convention of :func:`napari_gmm.segment`.

    Raises
    ------
    ValueError
        If ``shape`` is empty or has a zero-length axis, ``n_classes`` is outside 2..16, ``noise``
        is negative or not finite, or ``dtype`` is not uint8/uint16.

    Notes
    -----
    The smooth field is white noise low-pass filtered with a Gaussian of standard deviation
    ``min(shape) / 12`` pixels (periodic boundary); the class thresholds are its quantiles, so the
    area fractions are exactly ``2**-(k-1) / sum_j 2**-(j-1)`` up to ties. The region edges are
    sharp, so every pixel's class is defined; only the noise makes classes overlap in intensity.

    Examples
    --------
    >>> import numpy as np
    >>> from napari_gmm.datasets import phantom
    >>> image, truth = phantom((128, 128), seed=1)
    >>> image.dtype, truth.dtype, np.unique(truth).tolist()
    (dtype('uint16'), dtype('uint8'), [1, 2, 3])
    >>> means = [image[truth == k].mean() for k in (1, 2, 3)]
    >>> bool(means[0] < means[1] < means[2])
    True
    """
    shape = tuple(int(n) for n in np.atleast_1d(shape))
    if len(shape) == 0 or min(shape) < 1:
        raise InputError(f"phantom: shape must be a non-empty tuple of positive ints, got {shape}")
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)):
        raise InputError(f"phantom: n_classes must be an int in 2..16, got {n_classes!r}")
    n_classes = int(n_classes)
    if not 2 <= n_classes <= 16:
        raise InputError(f"phantom: n_classes must be in 2..16, got {n_classes}")
    noise = float(noise)
    if not np.isfinite(noise) or noise < 0:
        raise InputError(f"phantom: noise must be a finite number >= 0, got {noise}")
    dtype = np.dtype(dtype)
    if dtype == np.uint16:
        top = 4095.0
    elif dtype == np.uint8:
        top = 255.0
    else:
        raise InputError(f"phantom: dtype must be numpy.uint8 or numpy.uint16, got {dtype}")

    rng = np.random.default_rng(seed)
    field = _smooth_field(shape, max(min(shape) / 12.0, 1.0), rng)

    # class boundaries at quantiles of the field: class 1 = lowest field values
    cum = np.cumsum(_class_fractions(n_classes))[:-1]
    edges = np.quantile(field, cum)
    truth = (np.searchsorted(edges, field.ravel(), side="right") + 1).astype(np.uint8)
    truth = truth.reshape(shape)

    lo = 0.25 * top
    step = 0.5 * top / (n_classes - 1)
    levels = lo + step * np.arange(n_classes)
    image = levels[truth - 1]
    if noise > 0:
        image = image + rng.normal(0.0, noise * step, size=shape)
    image = np.clip(np.rint(image), 0, np.iinfo(dtype).max).astype(dtype)
    return image, truth


def moving_objects(
    shape=(120, 96, 128), *, n_objects=4, noise=3.0, drift=0.1, flicker=True, rgb=False, seed=0, dtype=np.uint8
):
    """Synthetic video of moving objects over a textured background, with exact ground truth.

    A test scene for background modelling (:func:`napari_gmm.subtract_background`): a static
    smooth texture lit by a slowly drifting illumination, a flickering rectangle (a dynamic
    background that switches between two levels at random, as leaves or a monitor), i.i.d.
    Gaussian noise, and ``n_objects`` rectangles and disks moving at constant velocity and
    bouncing off the frame edges. Each object is darker or brighter than what it covers by at
    least 60 grey levels (8-bit units).

    Parameters
    ----------
    shape : (T, Y, X) tuple of int, optional
        Number of frames and frame size (Y, X >= 16).
    n_objects : int, optional
        Number of moving objects (0..32).
    noise : float, optional
        Standard deviation of the Gaussian noise, in 8-bit grey levels.
    drift : float, optional
        Relative change of the illumination over the whole stack (0.1: the scene gets 10 %
        brighter, linearly).
    flicker : bool, optional
        Add the flickering rectangle (top-left quarter, 30 % of the frames bright).
    rgb : bool, optional
        Colour frames (T, Y, X, 3): the objects have their own hues.
    seed : int, optional
        Seed; the result is a deterministic function of all arguments.
    dtype : {numpy.uint8, numpy.uint16, numpy.float32}, optional
        uint8 (0..255), uint16 (12-bit camera range 0..4095) or float32 (0..1).

    Returns
    -------
    stack : (T, Y, X) or (T, Y, X, 3) ndarray of ``dtype``
    truth : (T, Y, X) ndarray of bool
        True exactly where a moving object is drawn (the flicker and drift are background).

    Examples
    --------
    >>> from napari_gmm.datasets import moving_objects
    >>> stack, truth = moving_objects((20, 32, 48), n_objects=2)
    >>> stack.shape, stack.dtype, truth.shape, bool(truth.any())
    ((20, 32, 48), dtype('uint8'), (20, 32, 48), True)
    """
    t_len, h, w = (int(s) for s in shape)
    if t_len < 1 or h < 16 or w < 16:
        raise InputError(f"moving_objects: shape must be (T >= 1, Y >= 16, X >= 16), got {shape}")
    if not 0 <= int(n_objects) <= 32:
        raise InputError(f"moving_objects: n_objects must be in 0..32, got {n_objects}")
    dtype = np.dtype(dtype)
    tops = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 4095.0, np.dtype(np.float32): 1.0}
    if dtype not in tops:
        raise InputError(f"moving_objects: dtype must be uint8, uint16 or float32, got {dtype}")
    rng = np.random.default_rng(seed)
    n_ch = 3 if rgb else 1
    texture = 110.0 + 35.0 * np.tanh(_smooth_field((h, w), max(min(h, w) / 10.0, 1.0), rng))
    base = texture[..., None] * (np.array([1.0, 0.9, 0.8]) if rgb else np.ones(1))
    fy0, fy1, fx0, fx1 = h // 8, h // 2, w // 8, w // 2
    bright = rng.random(t_len) < 0.3
    yy, xx = np.mgrid[0:h, 0:w]
    objs = []
    for _ in range(int(n_objects)):
        size = rng.uniform(0.04, 0.08) * min(h, w)
        objs.append(
            dict(
                y=rng.uniform(size, h - size),
                x=rng.uniform(size, w - size),
                r=size,
                vy=rng.uniform(-1, 1) * h / 30.0,
                vx=rng.choice([-1, 1]) * rng.uniform(0.5, 1) * w / 20.0,
                disk=bool(rng.random() < 0.5),
                level=(rng.uniform(0.0, 30.0) if rng.random() < 0.5 else rng.uniform(215.0, 250.0)),
                hue=rng.uniform(0.5, 1.0, 3) if rgb else np.ones(1),
            )
        )
    stack = np.empty((t_len, h, w, n_ch), np.float64)
    truth = np.zeros((t_len, h, w), bool)
    for t in range(t_len):
        frame = base.copy()
        if flicker and bright[t]:
            frame[fy0:fy1, fx0:fx1] += 50.0
        frame *= 1.0 + drift * (t / max(t_len - 1, 1))
        for o in objs:
            if o["disk"]:
                m = (yy - o["y"]) ** 2 + (xx - o["x"]) ** 2 <= o["r"] ** 2
            else:
                m = (np.abs(yy - o["y"]) <= o["r"]) & (np.abs(xx - o["x"]) <= 0.6 * o["r"])
            frame[m] = o["level"] * o["hue"]
            truth[t] |= m
            for k, lim in (("y", h), ("x", w)):
                o[k] += o["v" + k]
                if not o["r"] <= o[k] <= lim - o["r"]:
                    o["v" + k] = -o["v" + k]
                    o[k] = min(max(o[k], o["r"]), lim - o["r"])
        stack[t] = frame
    if noise > 0:
        stack += rng.normal(0.0, float(noise), stack.shape)
    stack = np.clip(stack, 0.0, 255.0) * (tops[dtype] / 255.0)
    if dtype.kind == "u":
        stack = np.rint(stack)
    stack = stack.astype(dtype)
    return (stack if rgb else stack[..., 0]), truth


__all__ += ["moving_objects"]


def _disks(shape, n, radius_range, rng):
    """Boolean mask of ``n`` random disks (2-D) or balls (3-D), radii uniform in radius_range."""
    out = np.zeros(shape, bool)
    grids = np.ogrid[tuple(slice(0, s) for s in shape)]
    for _ in range(n):
        r = rng.uniform(*radius_range)
        c = [rng.uniform(0, s) for s in shape]
        lo = [max(0, int(ci - r - 1)) for ci in c]
        hi = [min(s, int(ci + r + 2)) for ci, s in zip(c, shape)]
        sl = tuple(slice(a, b) for a, b in zip(lo, hi))
        d2 = 0.0
        for i, g in enumerate(grids):
            idx = [slice(None)] * len(shape)
            idx[i] = sl[i]
            d2 = d2 + (g[tuple(idx)] - c[i]) ** 2
        out[sl] |= d2 <= r * r
    return out


def noisy_regions(shape=(512, 512), *, noise=0.58, bias=0.0, n_classes=3, separation=60.0, seed=0):
    """Noisy piecewise-constant image of blob- and disk-like regions with exact truth, for
    noise-robust (spatial) segmentation.

    Class 1 is the background, class 2 blob-like regions (level sets of a smooth random field),
    classes 3..K disks (balls in 3-D) of random radii, drawn in order over the others. Class k has
    mean ``separation * k`` (60, 120, 180 by default), then i.i.d. Gaussian noise of standard
    deviation ``noise * separation`` is added, and the whole image is multiplied by a smooth bias
    field of amplitude ``bias`` (``bias=0.3``: a factor between 0.7 and 1.3).

    Parameters
    ----------
    shape : tuple of int
        2-D or 3-D, every axis >= 16.
    noise : float
        Noise standard deviation over the class separation (0.33, 0.58 and 0.83 in the benchmark).
    bias : float
        Amplitude of the multiplicative bias field, in [0, 0.9].
    n_classes : int
        3..6.
    separation : float
        Distance between consecutive class means.
    seed : int

    Returns
    -------
    image : ndarray of float32
        Not clipped (negative values are possible at high noise).
    truth : ndarray of uint8
        Class 1..K of every pixel (1 = darkest).
    field : ndarray of float32
        The bias field (all ones when ``bias=0``); ``image / field`` is the unbiased image.

    Examples
    --------
    >>> from napari_gmm.datasets import noisy_regions
    >>> img, truth, field = noisy_regions((64, 64), noise=0.33, seed=1)
    >>> img.shape, int(truth.max()), float(field.min())
    ((64, 64), 3, 1.0)
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (2, 3) or min(shape) < 16:
        raise InputError(f"noisy_regions: shape must be 2-D or 3-D with every axis >= 16, got {shape}")
    if not 3 <= int(n_classes) <= 6:
        raise InputError(f"noisy_regions: n_classes must be in 3..6, got {n_classes}")
    if not (np.isfinite(noise) and noise >= 0):
        raise InputError(f"noisy_regions: noise must be a finite number >= 0, got {noise}")
    if not 0 <= bias <= 0.9:
        raise InputError(f"noisy_regions: bias must be in [0, 0.9], got {bias}")
    rng = np.random.default_rng(seed)
    size = max(shape)
    field = _smooth_field(shape, max(size / 16.0, 1.0), rng)
    truth = np.ones(shape, np.uint8)
    truth[field > np.quantile(field, 0.7)] = 2
    vol = float(np.prod(shape))
    for k in range(3, int(n_classes) + 1):
        rmax = min(size / 12.0 + 3, min(shape) / 3.0)
        rmin = min(size / 40.0 + 2, 0.5 * rmax)
        mean_r = 0.5 * (rmin + rmax)
        unit = np.pi * mean_r**2 if len(shape) == 2 else 4.0 / 3.0 * np.pi * mean_r**3
        n = max(3, int(0.12 * vol / unit / (k - 2)))
        truth[_disks(shape, n, (rmin, rmax), rng)] = k
    image = separation * truth.astype(np.float64)
    image += rng.normal(0.0, noise * separation, shape)
    if bias > 0:
        g = _smooth_field(shape, size / 2.0, rng)
        g /= np.abs(g).max()
        bf = 1.0 + bias * g
    else:
        bf = np.ones(shape)
    image *= bf
    return image.astype(np.float32), truth, bf.astype(np.float32)


__all__ += ["noisy_regions"]


#: the variants of :func:`fluorescence_timelapse`: camera, bleaching, scene
FLUORESCENCE_VARIANTS = {
    # sCMOS-like camera, moderate bleaching, a handful of particles of each kind
    "standard": dict(
        gain=2.0,
        offset=100.0,
        read_noise=2.0,
        bleach=0.35,
        drift=0.0,
        background=30.0,
        structures=300.0,
        n_fast=4,
        n_slow=4,
        n_pausing=3,
        contrast=(3.0, 10.0),
    ),
    # a dim stack bleached by 60 %: weak particles (3-6 sd), high camera offset
    "dim": dict(
        gain=1.0,
        offset=400.0,
        read_noise=3.0,
        bleach=0.6,
        drift=0.0,
        background=15.0,
        structures=80.0,
        n_fast=3,
        n_slow=3,
        n_pausing=3,
        contrast=(3.0, 6.0),
    ),
    # bright structures, many particles, 20 % bleaching plus a lamp drift of a few percent
    "crowded": dict(
        gain=4.0,
        offset=200.0,
        read_noise=1.5,
        bleach=0.2,
        drift=0.03,
        background=50.0,
        structures=1500.0,
        n_fast=8,
        n_slow=6,
        n_pausing=5,
        contrast=(3.0, 10.0),
    ),
}


def fluorescence_timelapse(shape=(200, 160, 160), *, variant="standard", seed=0):
    """Simulated fluorescence time-lapse (uint16 camera) with exact foreground truth.

    A test scene for background modelling of microscopy stacks: static structures of varied
    brightness (Gaussian blobs and filaments over an autofluorescent background), bleaching of
    the whole scene over the stack (exponential, 20-60 % depending on the variant), and moving
    objects: fast particles (2-4 pixels per frame), slow ones (0.3-1), particles that pause
    20-50 frames (once or twice) and one cell (radius 12-15 pixels, textured) migrating 0.4-0.6
    pixel per frame across part of the field. Objects are flat discs whose brightness at the
    last frame is 3-10 (``"dim"``: 3-6) noise sd above the background around them; they bleach
    with the scene. The camera: ``offset + gain * Poisson(photons) + Normal(0, read_noise)``,
    rounded and clipped to uint16.

    Parameters
    ----------
    shape : (T, Y, X), default (200, 160, 160)
        T >= 60 (the pauses), Y, X >= 64.
    variant : {"standard", "dim", "crowded"}
        Camera and scene (:data:`FLUORESCENCE_VARIANTS`): ``"standard"`` (gain 2, offset 100,
        read noise 2, 35 % bleaching), ``"dim"`` (gain 1, offset 400, 60 % bleaching, weak
        particles), ``"crowded"`` (gain 4, bright structures, many particles, 20 % bleaching
        and a 3 % lamp drift).
    seed : int
        The result is a deterministic function of all arguments.

    Returns
    -------
    stack : (T, Y, X) ndarray of uint16
    truth : (T, Y, X) ndarray of bool
        True exactly inside the objects' discs.
    info : dict
        ``gain``, ``offset``, ``read_noise`` (the camera), ``factors`` (T,) the scene's
        intensity factor (1 at frame 0), ``photons`` (Y, X) the static scene at frame 0,
        ``max_dwell`` the largest fraction of frames any pixel is foreground, ``pauses`` a list
        of (particle, first frame, last frame).

    Examples
    --------
    >>> from napari_gmm.datasets import fluorescence_timelapse
    >>> stack, truth, info = fluorescence_timelapse((60, 64, 64), seed=1)
    >>> stack.dtype, stack.shape == truth.shape, info["gain"], bool(0.6 < info["factors"][-1] < 0.7)
    (dtype('uint16'), True, 2.0, True)
    """
    from ._validate import InputError

    t_len, h, w = (int(s) for s in shape)
    if t_len < 60 or h < 64 or w < 64:
        raise InputError(f"fluorescence_timelapse: shape must be (T >= 60, Y >= 64, X >= 64), got {shape}")
    if variant not in FLUORESCENCE_VARIANTS:
        raise InputError(
            f"fluorescence_timelapse: variant must be one of {sorted(FLUORESCENCE_VARIANTS)}, got {variant!r}"
        )
    v = FLUORESCENCE_VARIANTS[variant]
    rng = np.random.default_rng([seed, sorted(FLUORESCENCE_VARIANTS).index(variant)])
    gain, offset, read = v["gain"], v["offset"], v["read_noise"]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)

    # static scene (photons at frame 0): background, blobs of log-uniform brightness, filaments
    scene = v["background"] * (1.0 + 0.3 * np.tanh(_smooth_field((h, w), min(h, w) / 6.0, rng)))
    n_blobs = int(h * w / 600)
    for _ in range(n_blobs):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        sd = rng.uniform(1.5, 6.0)
        amp = v["structures"] * np.exp(rng.uniform(np.log(0.05), 0.0))
        scene += amp * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sd * sd))
    for _ in range(max(2, int(h * w / 8000))):
        y0, x0, ang = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(0, np.pi)
        d = np.abs((yy - y0) * np.cos(ang) - (xx - x0) * np.sin(ang))
        scene += 0.3 * v["structures"] * rng.uniform(0.2, 1.0) * np.exp(-d * d / 2.0)

    # bleaching (exponential, ends at 1 - bleach) and a slow lamp drift
    t = np.arange(t_len, dtype=np.float64)
    tau = t_len / 2.0
    decay = (1.0 - np.exp(-t / tau)) / (1.0 - np.exp(-(t_len - 1) / tau))
    factors = 1.0 - v["bleach"] * decay
    if v["drift"]:
        wobble = np.cumsum(rng.normal(0, 1, t_len))
        wobble = np.convolve(wobble - wobble.mean(), np.ones(9) / 9, mode="same")
        wobble *= v["drift"] / max(np.abs(wobble).max(), 1e-12)
        factors = factors * (1.0 + wobble)
        factors = factors / factors[0]
    f_end = float(factors[-1])

    def amplitude(k, y, x):
        """Photons (at frame 0) of an object k noise sd above the local scene at the last frame."""
        iy, ix = int(np.clip(y, 0, h - 1)), int(np.clip(x, 0, w - 1))
        y0, y1, x0, x1 = max(0, iy - 6), min(h, iy + 7), max(0, ix - 6), min(w, ix + 7)
        local = float(scene[y0:y1, x0:x1].max()) * f_end
        sd = np.sqrt(gain * gain * local + read * read)
        return k * sd / (gain * f_end)

    lo_k, hi_k = v["contrast"]
    objects = []

    def particle(speed, pauses=()):
        y, x = rng.uniform(8, h - 8), rng.uniform(8, w - 8)
        ang = rng.uniform(0, 2 * np.pi)
        path = np.empty((t_len, 2))
        for i in range(t_len):
            path[i] = y, x
            if any(a <= i < b for a, b in pauses):
                continue
            ang += rng.normal(0, 0.15)
            y, x = y + speed * np.sin(ang), x + speed * np.cos(ang)
            if not 4 <= y <= h - 5:
                ang = -ang
                y = float(np.clip(y, 4, h - 5))
            if not 4 <= x <= w - 5:
                ang = np.pi - ang
                x = float(np.clip(x, 4, w - 5))
        r = rng.uniform(2.0, 3.5)
        k = rng.uniform(lo_k, hi_k)
        amp = max(amplitude(k, py, px) for py, px in path[:: max(1, t_len // 20)])
        objects.append(dict(path=path, r=r, amp=amp, texture=None))

    for _ in range(v["n_fast"]):
        particle(rng.uniform(2.0, 4.0))
    for _ in range(v["n_slow"]):
        particle(rng.uniform(0.3, 1.0))
    pauses_out = []
    for _ in range(v["n_pausing"]):
        n_p = 1 if t_len < 140 else int(rng.integers(1, 3))
        pauses, start = [], int(rng.integers(5, max(6, t_len // 4)))
        for _ in range(n_p):
            length = int(rng.integers(20, 51))
            if start + length > t_len - 2:
                break
            pauses.append((start, start + length))
            start += length + int(rng.integers(15, 40))
        particle(rng.uniform(1.0, 2.0), pauses)
        pauses_out += [(len(objects) - 1, a, b - 1) for a, b in pauses]
    # the migrating cell: a straight path at 0.4-0.6 pixel per frame, textured
    r_cell = rng.uniform(12.0, 15.0)
    speed = rng.uniform(0.4, 0.6)
    ang = rng.uniform(0, 2 * np.pi)
    cy, cx = h / 2 - np.sin(ang) * speed * t_len / 2, w / 2 - np.cos(ang) * speed * t_len / 2
    cell_path = np.stack([cy + np.sin(ang) * speed * t, cx + np.cos(ang) * speed * t], axis=1)
    k_cell = rng.uniform(max(lo_k, 5.0), max(hi_k, 8.0) if variant != "dim" else 6.0)
    cell_amp = max(amplitude(k_cell / 0.6, py, px) for py, px in cell_path[::10])
    tex_n = int(2 * r_cell + 3)
    # cytoplasm texture, blurred by the optics (correlation length 4 pixels)
    texture = 0.6 + 0.4 * (0.5 + 0.5 * np.tanh(_smooth_field((tex_n, tex_n), 4.0, rng)))
    objects.append(dict(path=cell_path, r=r_cell, amp=cell_amp, texture=texture))

    stack = np.empty((t_len, h, w), np.uint16)
    truth = np.zeros((t_len, h, w), bool)
    for i in range(t_len):
        photons = scene * factors[i]
        for o in objects:
            py, px = o["path"][i]
            r = o["r"]
            y0, y1 = max(0, int(py - r) - 1), min(h, int(py + r) + 2)
            x0, x1 = max(0, int(px - r) - 1), min(w, int(px + r) + 2)
            if y0 >= y1 or x0 >= x1:
                continue
            sub_y, sub_x = yy[y0:y1, x0:x1], xx[y0:y1, x0:x1]
            disc = (sub_y - py) ** 2 + (sub_x - px) ** 2 <= r * r
            level = o["amp"] * factors[i]
            if o["texture"] is not None:
                ty = np.clip((sub_y - py + r + 1).astype(int), 0, o["texture"].shape[0] - 1)
                tx = np.clip((sub_x - px + r + 1).astype(int), 0, o["texture"].shape[1] - 1)
                level = level * o["texture"][ty, tx]
            photons[y0:y1, x0:x1] += np.where(disc, level, 0.0)
            truth[i, y0:y1, x0:x1] |= disc
        adu = offset + gain * rng.poisson(photons) + rng.normal(0.0, read, (h, w))
        stack[i] = np.clip(np.rint(adu), 0, 65535).astype(np.uint16)
    info = dict(
        gain=gain,
        offset=offset,
        read_noise=read,
        factors=factors,
        photons=scene,
        max_dwell=float(truth.mean(axis=0).max()),
        pauses=pauses_out,
        variant=variant,
    )
    return stack, truth, info


__all__ += ["fluorescence_timelapse"]
