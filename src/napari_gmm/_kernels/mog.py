"""Per-pixel adaptive Gaussian mixture background model (Zivkovic's MOG2), Numba kernels.

State is a struct of arrays, float32 and C-contiguous, for a frame of ``H x W`` pixels with
``C`` channels and at most ``K`` modes per pixel:

- ``weights``   (H, W, K)     mixing weights, the first ``n_modes`` of each pixel sum to 1,
- ``means``     (H, W, K, C)  mode means, in *model units* (data multiplied by ``scale``),
- ``variances`` (H, W, K)     isotropic variances, in model units squared,
- ``n_modes``   (H, W) uint8  number of modes in use.

The modes of each pixel are kept sorted by decreasing weight, exactly as in OpenCV's
``bgfg_gaussmix2.cpp`` (the matched mode bubbles up, a new mode bubbles up from the tail),
so the background modes are always a prefix of the list.

Differences from OpenCV (deliberate, documented in ``napari_gmm.background``):

- all modes whose weight falls under the complexity-reduction prior are dropped in the same
  frame (OpenCV drops one per frame and keeps a zero-weight mode until the next frame);
- when the weakest mode is replaced, the weights are renormalised so that they sum to 1
  (OpenCV leaves them summing to slightly less than 1);
- the mask uses 0 background, 1 foreground and 2 shadow.

Kernels trust their input: shapes, dtypes and contiguity are checked by the public wrappers.
The update arithmetic is float32 (as OpenCV's), IEEE without fast-math; the shadow test runs in
float64.
"""

import numba
import numpy as np
from numba import njit, prange

from ._config import JIT, PJIT

#: the update kernels compute in float32 without fast-math, so that they are bit-for-bit
#: reproducible by a plain NumPy float32 reference (tests) and do not depend on the compiler
PJIT_EXACT = dict(PJIT, fastmath=False)

#: mask values written by the kernels
BACKGROUND, FOREGROUND, SHADOW = 0, 1, 2


@njit(**JIT)
def _is_shadow(data, wf, mf, vf, kbase, nm, n_ch, var_threshold, background_ratio, tau):
    """Prati et al. shadow test of one pixel against its background modes.

    ``kbase`` is the flat index of the pixel's first mode in ``wf``/``vf`` (``kbase * n_ch`` in
    ``mf``).
    """
    tw = 0.0
    for m in range(nm):
        o = (kbase + m) * n_ch
        num = 0.0
        den = 0.0
        for c in range(n_ch):
            mc = np.float64(mf[o + c])
            num += data[c] * mc
            den += mc * mc
        if den == 0.0:
            return False
        if num <= den and num >= tau * den:
            a = num / den
            dist2a = 0.0
            for c in range(n_ch):
                d = a * mf[o + c] - data[c]
                dist2a += d * d
            if dist2a < var_threshold * vf[kbase + m] * a * a:
                return True
        tw += wf[kbase + m]
        if tw > background_ratio:
            return False
    return False


@njit(**PJIT_EXACT)
def _apply_grey(frames, scale, weights, means, variances, n_modes, masks, bg_out, write_bg,
               alphas, var_threshold, background_ratio, var_threshold_gen, var_init, var_min,
               var_max, ct, tau, detect_shadows, rows):
    """One grey frame (C = 1): the channel loops of :func:`_apply_any` spelled out."""
    height, width = n_modes.shape
    n_ch = means.shape[3]
    k_max = weights.shape[2]
    wf = weights.reshape(-1)
    mf = means.reshape(-1)
    vf = variances.reshape(-1)
    inv_scale = 1.0 / scale
    f1 = np.float32(1.0)
    f0 = np.float32(0.0)
    scale = np.float32(scale)
    var_threshold = np.float32(var_threshold)
    var_threshold_gen = np.float32(var_threshold_gen)
    background_ratio = np.float32(background_ratio)
    var_min = np.float32(var_min)
    var_max = np.float32(var_max)
    var_init = np.float32(var_init)
    # pixels are independent: each thread takes whole rows through every frame of the block;
    # ``rows`` interleaves the rows so that every thread's share spreads over the whole frame
    # (busy regions such as trees or traffic lanes are not all given to one thread)
    for r in prange(height):
        y = rows[r]
        data = np.empty(n_ch, np.float32)
        for b in range(frames.shape[0]):
            alpha = np.float32(alphas[b])
            prune = np.float32(-alphas[b] * ct)
            alpha1 = np.float32(1.0 - alphas[b])
            for x in range(width):
                kb = (y * width + x) * k_max          # first mode of this pixel in wf / vf
                x0 = np.float32(frames[b, y, x, 0]) * scale
                nm = np.int64(n_modes[y, x])
                background = False
                fits = False
                total = f0
                n_alive = nm
                for m in range(nm):
                    wt = alpha1 * wf[kb + m] + prune
                    dest = m
                    if not fits:
                        v = vf[kb + m]
                        o = (kb + m) * n_ch
                        d0 = mf[o] - x0
                        dist2 = d0 * d0
                        # background: one of the first modes (cumulative weight < ratio) is close
                        if total < background_ratio and dist2 < var_threshold * v:
                            background = True
                        if dist2 < var_threshold_gen * v:
                            fits = True
                            wt += alpha
                            k = alpha / wt
                            mf[o] -= k * d0
                            vnew = v + k * (dist2 - v)
                            if vnew < var_min:
                                vnew = var_min
                            if vnew > var_max:
                                vnew = var_max
                            vf[kb + m] = vnew
                            # bubble the matched mode up (modes above hold their new weights)
                            i = m
                            while i > 0 and wt >= wf[kb + i - 1]:
                                wf[kb + i] = wf[kb + i - 1]
                                tmp = vf[kb + i]
                                vf[kb + i] = vf[kb + i - 1]
                                vf[kb + i - 1] = tmp
                                oi = (kb + i) * n_ch
                                tmp = mf[oi]
                                mf[oi] = mf[oi - 1]
                                mf[oi - 1] = tmp
                                i -= 1
                            dest = i
                    if wt < -prune:
                        # complexity reduction: the pruned modes form the tail of the sorted list
                        wt = f0
                        n_alive -= 1
                    wf[kb + dest] = wt
                    total += wt

                inv = f1 / total if total > np.float32(1.1920929e-07) else f0
                for m in range(n_alive):
                    wf[kb + m] = wf[kb + m] * inv
                for m in range(n_alive, nm):
                    wf[kb + m] = f0

                if not fits and alpha > f0:
                    if n_alive == k_max:
                        mode = n_alive - 1
                        replaced = True
                    else:
                        mode = n_alive
                        n_alive += 1
                        replaced = False
                    if n_alive == 1:
                        wnew = f1
                    else:
                        for i in range(n_alive - 1):
                            wf[kb + i] = wf[kb + i] * alpha1
                        wf[kb + mode] = alpha
                        if replaced:
                            s = f0
                            for i in range(n_alive):
                                s += wf[kb + i]
                            for i in range(n_alive):
                                wf[kb + i] = wf[kb + i] / s
                        wnew = wf[kb + mode]
                    i = mode
                    while i > 0 and wnew >= wf[kb + i - 1]:
                        wf[kb + i] = wf[kb + i - 1]
                        vf[kb + i] = vf[kb + i - 1]
                        oi = (kb + i) * n_ch
                        mf[oi] = mf[oi - 1]
                        i -= 1
                    wf[kb + i] = wnew
                    vf[kb + i] = var_init
                    oi = (kb + i) * n_ch
                    mf[oi] = x0

                n_modes[y, x] = n_alive
                if background:
                    masks[b, y, x] = BACKGROUND
                else:
                    shadow = False
                    if detect_shadows:
                        data[0] = x0
                        shadow = _is_shadow(data, wf, mf, vf, kb, n_alive, n_ch, var_threshold,
                                            background_ratio, tau)
                    masks[b, y, x] = SHADOW if shadow else FOREGROUND
                if write_bg:
                    o = kb * n_ch
                    bg_out[b, y, x, 0] = mf[o] * inv_scale if n_alive > 0 else 0.0

@njit(**PJIT_EXACT)
def _apply_rgb(frames, scale, weights, means, variances, n_modes, masks, bg_out, write_bg,
               alphas, var_threshold, background_ratio, var_threshold_gen, var_init, var_min,
               var_max, ct, tau, detect_shadows, rows):
    """One 3-channel frame (C = 3): the channel loops of :func:`_apply_any` spelled out."""
    height, width = n_modes.shape
    n_ch = means.shape[3]
    k_max = weights.shape[2]
    wf = weights.reshape(-1)
    mf = means.reshape(-1)
    vf = variances.reshape(-1)
    inv_scale = 1.0 / scale
    f1 = np.float32(1.0)
    f0 = np.float32(0.0)
    scale = np.float32(scale)
    var_threshold = np.float32(var_threshold)
    var_threshold_gen = np.float32(var_threshold_gen)
    background_ratio = np.float32(background_ratio)
    var_min = np.float32(var_min)
    var_max = np.float32(var_max)
    var_init = np.float32(var_init)
    # pixels are independent: each thread takes whole rows through every frame of the block;
    # ``rows`` interleaves the rows so that every thread's share spreads over the whole frame
    # (busy regions such as trees or traffic lanes are not all given to one thread)
    for r in prange(height):
        y = rows[r]
        data = np.empty(n_ch, np.float32)
        for b in range(frames.shape[0]):
            alpha = np.float32(alphas[b])
            prune = np.float32(-alphas[b] * ct)
            alpha1 = np.float32(1.0 - alphas[b])
            for x in range(width):
                kb = (y * width + x) * k_max          # first mode of this pixel in wf / vf
                x0 = np.float32(frames[b, y, x, 0]) * scale
                x1 = np.float32(frames[b, y, x, 1]) * scale
                x2 = np.float32(frames[b, y, x, 2]) * scale
                nm = np.int64(n_modes[y, x])
                background = False
                fits = False
                total = f0
                n_alive = nm
                for m in range(nm):
                    wt = alpha1 * wf[kb + m] + prune
                    dest = m
                    if not fits:
                        v = vf[kb + m]
                        o = (kb + m) * n_ch
                        d0 = mf[o] - x0
                        d1 = mf[o + 1] - x1
                        d2 = mf[o + 2] - x2
                        dist2 = d0 * d0 + d1 * d1 + d2 * d2
                        # background: one of the first modes (cumulative weight < ratio) is close
                        if total < background_ratio and dist2 < var_threshold * v:
                            background = True
                        if dist2 < var_threshold_gen * v:
                            fits = True
                            wt += alpha
                            k = alpha / wt
                            mf[o] -= k * d0
                            mf[o + 1] -= k * d1
                            mf[o + 2] -= k * d2
                            vnew = v + k * (dist2 - v)
                            if vnew < var_min:
                                vnew = var_min
                            if vnew > var_max:
                                vnew = var_max
                            vf[kb + m] = vnew
                            # bubble the matched mode up (modes above hold their new weights)
                            i = m
                            while i > 0 and wt >= wf[kb + i - 1]:
                                wf[kb + i] = wf[kb + i - 1]
                                tmp = vf[kb + i]
                                vf[kb + i] = vf[kb + i - 1]
                                vf[kb + i - 1] = tmp
                                oi = (kb + i) * n_ch
                                for c in range(3):
                                    tmp = mf[oi + c]
                                    mf[oi + c] = mf[oi - 3 + c]
                                    mf[oi - 3 + c] = tmp
                                i -= 1
                            dest = i
                    if wt < -prune:
                        # complexity reduction: the pruned modes form the tail of the sorted list
                        wt = f0
                        n_alive -= 1
                    wf[kb + dest] = wt
                    total += wt

                inv = f1 / total if total > np.float32(1.1920929e-07) else f0
                for m in range(n_alive):
                    wf[kb + m] = wf[kb + m] * inv
                for m in range(n_alive, nm):
                    wf[kb + m] = f0

                if not fits and alpha > f0:
                    if n_alive == k_max:
                        mode = n_alive - 1
                        replaced = True
                    else:
                        mode = n_alive
                        n_alive += 1
                        replaced = False
                    if n_alive == 1:
                        wnew = f1
                    else:
                        for i in range(n_alive - 1):
                            wf[kb + i] = wf[kb + i] * alpha1
                        wf[kb + mode] = alpha
                        if replaced:
                            s = f0
                            for i in range(n_alive):
                                s += wf[kb + i]
                            for i in range(n_alive):
                                wf[kb + i] = wf[kb + i] / s
                        wnew = wf[kb + mode]
                    i = mode
                    while i > 0 and wnew >= wf[kb + i - 1]:
                        wf[kb + i] = wf[kb + i - 1]
                        vf[kb + i] = vf[kb + i - 1]
                        oi = (kb + i) * n_ch
                        for c in range(3):
                            mf[oi + c] = mf[oi - 3 + c]
                        i -= 1
                    wf[kb + i] = wnew
                    vf[kb + i] = var_init
                    oi = (kb + i) * n_ch
                    mf[oi] = x0
                    mf[oi + 1] = x1
                    mf[oi + 2] = x2

                n_modes[y, x] = n_alive
                if background:
                    masks[b, y, x] = BACKGROUND
                else:
                    shadow = False
                    if detect_shadows:
                        data[0] = x0
                        data[1] = x1
                        data[2] = x2
                        shadow = _is_shadow(data, wf, mf, vf, kb, n_alive, n_ch, var_threshold,
                                            background_ratio, tau)
                    masks[b, y, x] = SHADOW if shadow else FOREGROUND
                if write_bg:
                    o = kb * n_ch
                    for c in range(3):
                        bg_out[b, y, x, c] = mf[o + c] * inv_scale if n_alive > 0 else 0.0

@njit(**PJIT_EXACT)
def _apply_any(frames, scale, weights, means, variances, n_modes, masks, bg_out, write_bg,
               alphas, var_threshold, background_ratio, var_threshold_gen, var_init, var_min,
               var_max, ct, tau, detect_shadows, rows):
    """One frame with any number of channels C (the reference form of the update)."""
    height, width = n_modes.shape
    n_ch = means.shape[3]
    k_max = weights.shape[2]
    wf = weights.reshape(-1)
    mf = means.reshape(-1)
    vf = variances.reshape(-1)
    inv_scale = 1.0 / scale
    f1 = np.float32(1.0)
    f0 = np.float32(0.0)
    scale = np.float32(scale)
    var_threshold = np.float32(var_threshold)
    var_threshold_gen = np.float32(var_threshold_gen)
    background_ratio = np.float32(background_ratio)
    var_min = np.float32(var_min)
    var_max = np.float32(var_max)
    var_init = np.float32(var_init)
    # pixels are independent: each thread takes whole rows through every frame of the block;
    # ``rows`` interleaves the rows so that every thread's share spreads over the whole frame
    # (busy regions such as trees or traffic lanes are not all given to one thread)
    for r in prange(height):
        y = rows[r]
        data = np.empty(n_ch, np.float32)
        diff = np.empty(n_ch, np.float32)
        for b in range(frames.shape[0]):
            alpha = np.float32(alphas[b])
            prune = np.float32(-alphas[b] * ct)
            alpha1 = np.float32(1.0 - alphas[b])
            for x in range(width):
                kb = (y * width + x) * k_max          # first mode of this pixel in wf / vf
                for c in range(n_ch):
                    data[c] = np.float32(frames[b, y, x, c]) * scale
                nm = np.int64(n_modes[y, x])
                background = False
                fits = False
                total = f0
                n_alive = nm
                for m in range(nm):
                    wt = alpha1 * wf[kb + m] + prune
                    dest = m
                    if not fits:
                        v = vf[kb + m]
                        o = (kb + m) * n_ch
                        dist2 = f0
                        for c in range(n_ch):
                            d = mf[o + c] - data[c]
                            diff[c] = d
                            dist2 += d * d
                        # background: one of the first modes (cumulative weight < ratio) is close
                        if total < background_ratio and dist2 < var_threshold * v:
                            background = True
                        if dist2 < var_threshold_gen * v:
                            fits = True
                            wt += alpha
                            k = alpha / wt
                            for c in range(n_ch):
                                mf[o + c] -= k * diff[c]
                            vnew = v + k * (dist2 - v)
                            if vnew < var_min:
                                vnew = var_min
                            if vnew > var_max:
                                vnew = var_max
                            vf[kb + m] = vnew
                            # bubble the matched mode up (modes above hold their new weights)
                            i = m
                            while i > 0 and wt >= wf[kb + i - 1]:
                                wf[kb + i] = wf[kb + i - 1]
                                tmp = vf[kb + i]
                                vf[kb + i] = vf[kb + i - 1]
                                vf[kb + i - 1] = tmp
                                oi = (kb + i) * n_ch
                                for c in range(n_ch):
                                    tmp = mf[oi + c]
                                    mf[oi + c] = mf[oi - n_ch + c]
                                    mf[oi - n_ch + c] = tmp
                                i -= 1
                            dest = i
                    if wt < -prune:
                        # complexity reduction: the pruned modes form the tail of the sorted list
                        wt = f0
                        n_alive -= 1
                    wf[kb + dest] = wt
                    total += wt

                inv = f1 / total if total > np.float32(1.1920929e-07) else f0
                for m in range(n_alive):
                    wf[kb + m] = wf[kb + m] * inv
                for m in range(n_alive, nm):
                    wf[kb + m] = f0

                if not fits and alpha > f0:
                    if n_alive == k_max:
                        mode = n_alive - 1
                        replaced = True
                    else:
                        mode = n_alive
                        n_alive += 1
                        replaced = False
                    if n_alive == 1:
                        wnew = f1
                    else:
                        for i in range(n_alive - 1):
                            wf[kb + i] = wf[kb + i] * alpha1
                        wf[kb + mode] = alpha
                        if replaced:
                            s = f0
                            for i in range(n_alive):
                                s += wf[kb + i]
                            for i in range(n_alive):
                                wf[kb + i] = wf[kb + i] / s
                        wnew = wf[kb + mode]
                    i = mode
                    while i > 0 and wnew >= wf[kb + i - 1]:
                        wf[kb + i] = wf[kb + i - 1]
                        vf[kb + i] = vf[kb + i - 1]
                        oi = (kb + i) * n_ch
                        for c in range(n_ch):
                            mf[oi + c] = mf[oi - n_ch + c]
                        i -= 1
                    wf[kb + i] = wnew
                    vf[kb + i] = var_init
                    oi = (kb + i) * n_ch
                    for c in range(n_ch):
                        mf[oi + c] = data[c]

                n_modes[y, x] = n_alive
                if background:
                    masks[b, y, x] = BACKGROUND
                else:
                    shadow = False
                    if detect_shadows:
                        pass
                        shadow = _is_shadow(data, wf, mf, vf, kb, n_alive, n_ch, var_threshold,
                                            background_ratio, tau)
                    masks[b, y, x] = SHADOW if shadow else FOREGROUND
                if write_bg:
                    o = kb * n_ch
                    for c in range(n_ch):
                        bg_out[b, y, x, c] = mf[o + c] * inv_scale if n_alive > 0 else 0.0


def mog2_apply(frames, scale, weights, means, variances, n_modes, masks, bg_out, write_bg,
               alphas, var_threshold, background_ratio, var_threshold_gen, var_init, var_min,
               var_max, ct, tau, detect_shadows):
    """Classify a block of frames and update the model in place (parallel over rows).

    Each pixel's mixture only depends on that pixel's samples, so every thread takes whole
    rows through all frames of the block: one parallel launch per block, and the state of a
    row stays in cache from frame to frame. The result is identical to calling this once per
    frame. Dispatches to the kernel for grey (C = 1), RGB (C = 3) or any C: the same
    algorithm, the first two with their channel loops written out with scalars (about twice
    as fast).

    Parameters
    ----------
    frames : (B, H, W, C) array, any real dtype, C-contiguous
        The frames in data units; multiplied by ``scale`` to model units.
    scale : float
        Data units to model units (255 / data_range).
    weights, means, variances, n_modes : state arrays (see module docstring), updated in place.
    masks : (B, H, W) uint8
        Output: 0 background, 1 foreground, 2 shadow.
    bg_out : (B, H, W, C) float32
        Output when ``write_bg``: the mean of the most probable mode after each frame, in data
        units (any array, e.g. (1, 1, 1, C), when ``write_bg`` is False).
    write_bg : bool
    alphas : (B,) float64
        Learning rate of each frame (0 classifies without learning).
    var_threshold, background_ratio, var_threshold_gen, var_init, var_min, var_max : float
        OpenCV's Tb, TB, Tg, fVarInit, fVarMin, fVarMax (variances in model units).
    ct : float
        Complexity reduction prior; the pruning threshold is ``alpha * ct``.
    tau : float
        Shadow threshold.
    detect_shadows : bool
    """
    n_ch = frames.shape[3]
    kernel = _apply_grey if n_ch == 1 else _apply_rgb if n_ch == 3 else _apply_any
    kernel(frames, float(scale), weights, means, variances, n_modes, masks, bg_out,
           bool(write_bg), np.ascontiguousarray(alphas, np.float64), float(var_threshold),
           float(background_ratio), float(var_threshold_gen), float(var_init), float(var_min),
           float(var_max), float(ct), float(tau), bool(detect_shadows),
           _row_order(n_modes.shape[0]))


def _row_order(height):
    """Rows grouped by ``row % n_threads``: prange's equal chunks then interleave over the frame."""
    n = max(1, numba.get_num_threads())
    return np.argsort(np.arange(height) % n, kind="stable").astype(np.int64)


@njit(**PJIT)
def mog2_background(means, n_modes, scale, out):
    """Write the mean of the most probable mode of every pixel (data units) into ``out``."""
    height, width = n_modes.shape
    n_ch = out.shape[2]
    inv_scale = 1.0 / scale
    for y in prange(height):
        for x in range(width):
            for c in range(n_ch):
                out[y, x, c] = means[y, x, 0, c] * inv_scale if n_modes[y, x] > 0 else 0.0


@njit(**JIT)
def majority_filter(mask, radius, out):
    """Binary majority vote of ``mask == 1`` over a (2r+1)^2 window (clipped at the borders).

    Pixels where more than half of the window is foreground become 1; other pixels keep
    their value if it is 0 or 2 and become 0 if it was 1. This is the post-filtering step
    of Zivkovic's reference implementation (a median filter of the binary mask), written as a
    separable running box count.
    """
    height, width = mask.shape
    rows = np.empty((height, width), np.int32)
    widths = np.empty(width, np.int32)
    for x in range(width):
        widths[x] = min(width, x + radius + 1) - max(0, x - radius)
    for y in range(height):
        s = 0
        for x in range(min(radius, width)):
            s += mask[y, x] == FOREGROUND
        for x in range(width):
            xa = x + radius
            if xa < width:
                s += mask[y, xa] == FOREGROUND
            xr = x - radius - 1
            if xr >= 0:
                s -= mask[y, xr] == FOREGROUND
            rows[y, x] = s
    acc = np.empty(width, np.int32)
    for y in range(height):
        y0 = max(0, y - radius)
        y1 = min(height, y + radius + 1)
        acc[:] = 0
        for yy in range(y0, y1):
            for x in range(width):
                acc[x] += rows[yy, x]
        hy = y1 - y0
        for x in range(width):
            if 2 * acc[x] > hy * widths[x]:
                out[y, x] = FOREGROUND
            elif mask[y, x] == FOREGROUND:
                out[y, x] = BACKGROUND
            else:
                out[y, x] = mask[y, x]


@njit(**PJIT)
def majority_filter_stack(masks, radius, out):
    """:func:`majority_filter` of every frame of (B, H, W) ``masks``, parallel over frames."""
    for b in prange(masks.shape[0]):
        majority_filter(masks[b], radius, out[b])
