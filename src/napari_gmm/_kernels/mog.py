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
Scalar arithmetic runs in float64; the state is stored in float32.
"""

import numpy as np
from numba import njit, prange

from ._config import JIT, PJIT

#: mask values written by the kernels
BACKGROUND, FOREGROUND, SHADOW = 0, 1, 2


@njit(**JIT)
def _update_pixel(data, w, mu, var, nm, alpha, var_threshold, background_ratio,
                  var_threshold_gen, var_init, var_min, var_max, prune, diff):
    """Update the mixture of one pixel with sample ``data``; return (is_background, n_modes)."""
    n_ch = data.shape[0]
    alpha1 = 1.0 - alpha
    background = False
    fits = False
    total = 0.0
    n_alive = nm
    for m in range(nm):
        wt = alpha1 * w[m] + prune
        dest = m
        if not fits:
            v = var[m]
            dist2 = 0.0
            for c in range(n_ch):
                d = mu[m, c] - data[c]
                diff[c] = d
                dist2 += d * d
            # background: one of the first modes (cumulative weight < background_ratio) is close
            if total < background_ratio and dist2 < var_threshold * v:
                background = True
            if dist2 < var_threshold_gen * v:
                fits = True
                wt += alpha
                k = alpha / wt
                for c in range(n_ch):
                    mu[m, c] -= k * diff[c]
                vnew = v + k * (dist2 - v)
                if vnew < var_min:
                    vnew = var_min
                if vnew > var_max:
                    vnew = var_max
                var[m] = vnew
                # bubble the matched mode up (modes above it already hold their new weights)
                i = m
                while i > 0 and wt >= w[i - 1]:
                    w[i] = w[i - 1]
                    tmp = var[i]
                    var[i] = var[i - 1]
                    var[i - 1] = tmp
                    for c in range(n_ch):
                        tmp = mu[i, c]
                        mu[i, c] = mu[i - 1, c]
                        mu[i - 1, c] = tmp
                    i -= 1
                dest = i
        if wt < -prune:
            # complexity reduction: the pruned modes form the tail of the sorted list
            wt = 0.0
            n_alive -= 1
        w[dest] = wt
        total += wt

    inv = 1.0 / total if total > 1.1920929e-07 else 0.0
    for m in range(n_alive):
        w[m] = w[m] * inv
    for m in range(n_alive, nm):
        w[m] = 0.0

    if not fits and alpha > 0.0:
        if n_alive == w.shape[0]:
            mode = n_alive - 1
            replaced = True
        else:
            mode = n_alive
            n_alive += 1
            replaced = False
        if n_alive == 1:
            w[mode] = 1.0
        else:
            for i in range(n_alive - 1):
                w[i] = w[i] * alpha1
            w[mode] = alpha
            if replaced:
                s = 0.0
                for i in range(n_alive):
                    s += w[i]
                for i in range(n_alive):
                    w[i] = w[i] / s
        for c in range(n_ch):
            mu[mode, c] = data[c]
        var[mode] = var_init
        wnew = w[mode]
        i = mode
        while i > 0 and wnew >= w[i - 1]:
            w[i] = w[i - 1]
            var[i] = var[i - 1]
            for c in range(n_ch):
                mu[i, c] = mu[i - 1, c]
            i -= 1
        w[i] = wnew
        var[i] = var_init
        for c in range(n_ch):
            mu[i, c] = data[c]
    return background, n_alive


@njit(**JIT)
def _is_shadow(data, w, mu, var, nm, var_threshold, background_ratio, tau):
    """Prati et al. shadow test against the background modes of one pixel."""
    n_ch = data.shape[0]
    tw = 0.0
    for m in range(nm):
        num = 0.0
        den = 0.0
        for c in range(n_ch):
            mc = np.float64(mu[m, c])
            num += data[c] * mc
            den += mc * mc
        if den == 0.0:
            return False
        if num <= den and num >= tau * den:
            a = num / den
            dist2a = 0.0
            for c in range(n_ch):
                d = a * mu[m, c] - data[c]
                dist2a += d * d
            if dist2a < var_threshold * var[m] * a * a:
                return True
        tw += w[m]
        if tw > background_ratio:
            return False
    return False


@njit(**PJIT)
def mog2_apply(frame, scale, weights, means, variances, n_modes, mask, bg_out, write_bg,
               alpha, var_threshold, background_ratio, var_threshold_gen, var_init, var_min,
               var_max, ct, tau, detect_shadows):
    """Classify one frame and update the model in place (parallel over rows).

    Parameters
    ----------
    frame : (H, W, C) array, any real dtype, C-contiguous
        The frame in data units; it is multiplied by ``scale`` to model units.
    scale : float
        Data units to model units (255 / data_range).
    weights, means, variances, n_modes : state arrays (see module docstring), updated in place.
    mask : (H, W) uint8
        Output: 0 background, 1 foreground, 2 shadow.
    bg_out : (H, W, C) float32
        Output when ``write_bg``: the mean of the most probable mode, in data units.
    alpha : float
        Learning rate of this frame (0 classifies without learning).
    ct : float
        Complexity reduction prior; the pruning threshold is ``alpha * ct``.
    """
    height, width, n_ch = frame.shape
    prune = -alpha * ct
    inv_scale = 1.0 / scale
    for y in prange(height):
        data = np.empty(n_ch, np.float64)
        diff = np.empty(n_ch, np.float64)
        for x in range(width):
            for c in range(n_ch):
                data[c] = frame[y, x, c] * scale
            w = weights[y, x]
            mu = means[y, x]
            var = variances[y, x]
            background, nm = _update_pixel(
                data, w, mu, var, np.int64(n_modes[y, x]), alpha, var_threshold,
                background_ratio, var_threshold_gen, var_init, var_min, var_max, prune, diff)
            n_modes[y, x] = nm
            if background:
                mask[y, x] = BACKGROUND
            elif detect_shadows and _is_shadow(data, w, mu, var, nm, var_threshold,
                                               background_ratio, tau):
                mask[y, x] = SHADOW
            else:
                mask[y, x] = FOREGROUND
            if write_bg:
                for c in range(n_ch):
                    bg_out[y, x, c] = mu[0, c] * inv_scale if nm > 0 else 0.0


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


@njit(**PJIT)
def majority_filter(mask, radius, out):
    """Binary majority vote of ``mask == 1`` over a (2r+1)^2 window (clipped at the borders).

    Pixels where more than half of the window is foreground become 1; other pixels keep
    their value if it is 0 or 2 and become 0 if it was 1. This is the post-filtering step
    of Zivkovic's reference implementation, written as a separable box count.
    """
    height, width = mask.shape
    rows = np.empty((height, width), np.int32)
    for y in prange(height):
        for x in range(width):
            s = 0
            for xx in range(max(0, x - radius), min(width, x + radius + 1)):
                if mask[y, xx] == FOREGROUND:
                    s += 1
            rows[y, x] = s
    for y in prange(height):
        y0 = max(0, y - radius)
        y1 = min(height, y + radius + 1)
        for x in range(width):
            s = 0
            for yy in range(y0, y1):
                s += rows[yy, x]
            area = (y1 - y0) * (min(width, x + radius + 1) - max(0, x - radius))
            if 2 * s > area:
                out[y, x] = FOREGROUND
            elif mask[y, x] == FOREGROUND:
                out[y, x] = BACKGROUND
            else:
                out[y, x] = mask[y, x]
