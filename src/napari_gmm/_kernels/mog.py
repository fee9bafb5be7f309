"""Per-pixel adaptive Gaussian mixture background model (Zivkovic's MOG2), Numba kernels.

State is a struct of arrays, float32 and C-contiguous, for a frame of ``H x W`` pixels with
``C`` channels and at most ``K`` modes per pixel:

- ``weights``   (H, K, W)     mixing weights, the first ``n_modes`` of each pixel sum to 1,
- ``means``     (H, K, C, W)  mode means, in *model units* (data multiplied by ``scale``),
- ``variances`` (H, K, W)     isotropic variances, in model units squared,
- ``n_modes``   (H, W) uint8  number of modes in use.

Modes and channels come before the pixel's column (``weights[y, k, x]``): along a row, mode
``k`` of consecutive pixels is contiguous, so the kernels update the common case (the top mode
matches) with vectorised passes over a whole row (see :func:`_apply_fast`). Modes beyond a
pixel's ``n_modes`` have weight 0.

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
float64, also without fast-math. The per-pixel helpers are inlined into the parallel kernels (a
call per pixel that passes array views costs more than the update): the small ones of the
vectorised passes by Numba (``inline="always"``), the per-pixel update and the shadow test by
LLVM (:data:`JIT_LLVM_INLINE`: typed once, not at every call site).
"""

import numba
import numpy as np
from numba import njit, prange, types
from numba.extending import intrinsic, overload

from ._config import JIT, PJIT, serial_copy

#: the update kernels compute in float32 without fast-math, so that they are bit-for-bit
#: reproducible by a plain NumPy float32 reference (tests) and do not depend on the compiler;
#: NumPy's error model (no zero-division check: the vectorised passes divide in lanes whose
#: result is then discarded, and a check per division would stop the vectorisation)
JIT_EXACT = dict(JIT, fastmath=False, error_model="numpy")
PJIT_EXACT = dict(PJIT, fastmath=False, error_model="numpy")


def _known_options(**options):
    """The ``options`` this Numba release knows as target options. ``forceinline`` and ``_nrt``
    (private) are not in every release: one it does not know is left out (the helpers are then
    called, not inlined, with the same results) rather than failing the import of napari-gmm."""
    try:
        from numba.core.cpu import CPUTargetOptions
    except ImportError:  # pragma: no cover - a Numba that moved its options
        return {}
    return {k: v for k, v in options.items() if hasattr(CPUTargetOptions, k)}


#: per-pixel helpers that LLVM inlines into their callers (``alwaysinline``) instead of Numba
#: (``inline="always"`` types and lowers the callee again at every call site, and the parallel
#: kernel's body is typed twice). Cold compile CPU of a kernel (precompile's background tasks)
#: with :func:`_update_pixel` and :func:`_is_shadow` inlined by Numba at their four call sites,
#: then this way: uint8 36 -> 23 s, uint16 35 -> 24 s, float32 38 -> 31 s. Without NRT (they
#: allocate nothing): a Numba function increfs and decrefs the arrays it is given, atomic calls
#: that LLVM cannot remove across the callee's branches. The channel count is a run-time
#: argument where Numba compiles the helper, a constant again where LLVM inlines it (the channel
#: loops unroll there). :func:`_top_mode` and :func:`_second_mode` stay inlined by Numba with a
#: literal channel count: as LLVM-inlined functions the uint8 compile took 17 s, but the grey
#: uint16 kernel ran 1.3-1.4x slower (with the channel count literal through
#: ``numba.literally``, the RGB video kernel too); only :func:`_second_mode` so, 1.4x slower on
#: grey (uint16 compile 17.6 s); LLVM-inlined copies for the RGB calls only, 17 s (uint8 and
#: uint16), but in one process of two the RGB kernel ran 1.3x slower (CDnet, measured).
JIT_LLVM_INLINE = dict(JIT_EXACT, **_known_options(forceinline=True, _nrt=False))


@intrinsic
def _fetch_add(typingctx, counter, value):
    """Atomically add ``value`` to ``counter[0]`` (int64 array); return the previous value."""
    if not (isinstance(counter, types.Array) and counter.dtype == types.int64 and isinstance(value, types.Integer)):
        return None
    sig = types.int64(counter, types.int64)

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        return builder.atomic_rmw("add", ary.data, args[1], "seq_cst")

    return sig, codegen


@njit(inline="always", **JIT_EXACT)
def _next_row(counter, rows):
    """The next row to process, or -1. Dynamic scheduling: the kernels run one task per thread,
    and each takes rows from a shared counter until none are left, so a thread slowed down by
    other processes takes fewer rows (prange's static equal shares would wait for it)."""
    r = _fetch_add(counter, 1)
    return rows[r] if r < rows.shape[0] else -1


@njit(inline="always", **JIT_EXACT)
def _as_f32(scale, var_threshold, var_threshold_gen, background_ratio, var_min, var_max, var_init):
    """The float parameters of the update kernels as float32 (the kernels compute in float32)."""
    return (
        np.float32(scale),
        np.float32(var_threshold),
        np.float32(var_threshold_gen),
        np.float32(background_ratio),
        np.float32(var_min),
        np.float32(var_max),
        np.float32(var_init),
    )


@njit(inline="always", **JIT_EXACT)
def _bg_value(v, rnd, lo, hi):
    """A background value ``v`` (data units) as stored: float32, and when ``rnd`` (integer
    outputs, written straight into the caller's array) clipped into ``[lo, hi]`` and rounded
    half to even, for ``0 <= lo <= hi < 2**23`` (checked by :func:`mog2_apply`).

    The rounding is ``np.rint`` computed as ``(v + 2**23) - 2**23`` (exact in IEEE float32
    without fast-math: the sum's spacing is 1), and the clip and the choice are selects: Numba's
    ``np.rint`` calls libm's ``rintf`` and a branch on ``rnd`` stays in the loop, either of which
    keeps the row loop around it from vectorising."""
    big = np.float32(8388608.0)
    v = np.float32(v)
    c = np.float32(lo) if v < lo else (np.float32(hi) if v > hi else v)
    r = (c + big) - big
    r = r if c < big else c
    return r if rnd else v


@njit(inline="always", **JIT_EXACT)
def _bg_value32(v, rnd, lo, hi):
    """:func:`_bg_value` of a float32 ``v``, clipped with float32 compares: ``lo`` and ``hi`` are
    integers under ``2**23``, exact in float32, so the result is the same as with the float64
    compares of :func:`_bg_value`, which widen every lane to float64 (half of the time of the
    8-bit RGB background row, measured); and without its ``c < 2**23`` test, always true where
    ``rnd`` (the clipped ``c`` is then at most ``hi``). Used by :func:`_bg_ident` only: in
    :func:`_bg_value`, called on float64 values by :func:`_bg_out`, the same change made the
    float32 kernel's cold compile a few seconds longer (measured)."""
    big = np.float32(8388608.0)
    v = np.float32(v)
    lo = np.float32(lo)
    hi = np.float32(hi)
    c = lo if v < lo else (hi if v > hi else v)
    r = (c + big) - big
    return r if rnd else v


#: mask values written by the kernels
BACKGROUND, FOREGROUND, SHADOW = 0, 1, 2


def new_state(height, width, n_mixtures, n_channels):
    """Zeroed model state ``(weights, means, variances, n_modes)`` in the kernels' layout."""
    h, w, k, c = int(height), int(width), int(n_mixtures), int(n_channels)
    return (
        np.zeros((h, k, w), np.float32),
        np.zeros((h, k, c, w), np.float32),
        np.zeros((h, k, w), np.float32),
        np.zeros((h, w), np.uint8),
    )


@njit(**JIT_LLVM_INLINE)
def _is_shadow(data, wy, my, vy, x, nm, n_ch, var_threshold, background_ratio, tau):
    """Prati et al. shadow test of pixel ``x`` of a row against its background modes.

    ``wy``, ``vy`` are the row's (K, W) weights and variances, ``my`` its (K * C, W) means.
    """
    tw = 0.0
    for m in range(nm):
        o = m * n_ch
        num = 0.0
        den = 0.0
        for c in range(n_ch):
            mc = np.float64(my[o + c, x])
            num += data[c] * mc
            den += mc * mc
        if den == 0.0:
            return False
        if num <= den and num >= tau * den:
            a = num / den
            dist2a = 0.0
            for c in range(n_ch):
                d = a * my[o + c, x] - data[c]
                dist2a += d * d
            if dist2a < var_threshold * vy[m, x] * a * a:
                return True
        tw += wy[m, x]
        if tw > background_ratio:
            return False
    return False


@njit(**JIT_LLVM_INLINE)
def _update_pixel(
    data,
    diff,
    wy,
    my,
    vy,
    x,
    nm,
    k_max,
    n_ch,
    alpha,
    alpha1,
    prune,
    var_threshold,
    background_ratio,
    var_threshold_gen,
    var_init,
    var_min,
    var_max,
    skip_top,
    top_background,
):
    """The MOG2 update of pixel ``x`` of a row, any number of channels: the reference form.

    ``data`` (C,) is the sample in model units, ``diff`` (C,) scratch; ``wy``, ``vy`` are the
    row's (K, W) weights and variances, ``my`` its (K * C, W) means; every float argument is
    float32. ``skip_top``: the caller knows that the top mode does not match and whether it
    makes the pixel background (``top_background``), so its distance is not computed again.
    Returns ``(n_alive, background)``.
    """
    f0 = np.float32(0.0)
    f1 = np.float32(1.0)
    background = False
    fits = False
    total = f0
    n_alive = nm
    first = 0
    if skip_top and nm > 0:
        wt = alpha1 * wy[0, x] + prune
        background = top_background
        if wt < -prune:
            wt = f0
            n_alive -= 1
        wy[0, x] = wt
        total += wt
        first = 1
    for m in range(first, nm):
        wt = alpha1 * wy[m, x] + prune
        dest = m
        if not fits:
            v = vy[m, x]
            o = m * n_ch
            dist2 = f0
            for c in range(n_ch):
                d = my[o + c, x] - data[c]
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
                    my[o + c, x] -= k * diff[c]
                vnew = v + k * (dist2 - v)
                if vnew < var_min:
                    vnew = var_min
                if vnew > var_max:
                    vnew = var_max
                vy[m, x] = vnew
                # bubble the matched mode up (modes above hold their new weights)
                i = m
                while i > 0 and wt >= wy[i - 1, x]:
                    wy[i, x] = wy[i - 1, x]
                    tmp = vy[i, x]
                    vy[i, x] = vy[i - 1, x]
                    vy[i - 1, x] = tmp
                    oi = i * n_ch
                    for c in range(n_ch):
                        tmp = my[oi + c, x]
                        my[oi + c, x] = my[oi - n_ch + c, x]
                        my[oi - n_ch + c, x] = tmp
                    i -= 1
                dest = i
        if wt < -prune:
            # complexity reduction: the pruned modes form the tail of the sorted list
            wt = f0
            n_alive -= 1
        wy[dest, x] = wt
        total += wt

    inv = f1 / total if total > np.float32(1.1920929e-07) else f0
    for m in range(n_alive):
        wy[m, x] = wy[m, x] * inv
    for m in range(n_alive, nm):
        wy[m, x] = f0

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
                wy[i, x] = wy[i, x] * alpha1
            wy[mode, x] = alpha
            if replaced:
                s = f0
                for i in range(n_alive):
                    s += wy[i, x]
                for i in range(n_alive):
                    wy[i, x] = wy[i, x] / s
            wnew = wy[mode, x]
        i = mode
        while i > 0 and wnew >= wy[i - 1, x]:
            wy[i, x] = wy[i - 1, x]
            vy[i, x] = vy[i - 1, x]
            oi = i * n_ch
            for c in range(n_ch):
                my[oi + c, x] = my[oi - n_ch + c, x]
            i -= 1
        wy[i, x] = wnew
        vy[i, x] = var_init
        oi = i * n_ch
        for c in range(n_ch):
            my[oi + c, x] = data[c]
    return n_alive, background


@njit(inline="always", **JIT_EXACT)
def _bg_data(mu, has, out_scale, offset, top_m, top):
    """The background (data units, float64) of a pixel whose most probable mode has mean ``mu``
    (model units): ``mu * out_scale + offset``, 0 without modes, and exactly ``top`` (the integer
    dtype's maximum or saturation) where ``mu`` is the model-units image ``top_m`` of it: a mode
    that learned only samples at the top (its mean then stays that value bit for bit), which
    float32 cannot carry back (4294967295 is 4294967296 in float32)."""
    v = mu * out_scale + offset
    v = top if mu == top_m else v
    return v if has else 0.0


def _stored(v, out):
    """``v`` (float32) as the kernels store it into the array ``out``: through int32 for an
    integer ``out`` (a direct float -> uint8 conversion does not vectorise as well; the value is
    already rounded and within the dtype, so the store is exact), unchanged for a float one."""


@overload(_stored, jit_options=JIT_EXACT)
def _stored_impl(v, out):
    if isinstance(out.dtype, types.Integer):
        return lambda v, out: np.int32(v)
    return lambda v, out: v


@njit(**JIT_EXACT)
def _bg_out(mu, has, conv, out):
    """The value stored into the background output ``out`` for a pixel whose most probable mode
    has mean ``mu``: :func:`_bg_data`, then :func:`_bg_value` (rounded and clipped with ``rnd``),
    then :func:`_stored`; ``conv`` is ``(out_scale, offset, top_m, top, rnd, lo, hi)``.

    Not inlined by Numba (``inline="always"`` types the callee again at every call site: the
    uint8 kernel's cold compile took 36-38 s of CPU time that way, 24 s this way); LLVM inlines
    it, and the loops still vectorise."""
    out_scale, offset, top_m, top, rnd, lo, hi = conv
    return _stored(_bg_value(_bg_data(mu, has, out_scale, offset, top_m, top), rnd, lo, hi), out)


@njit(**JIT_EXACT)
def _bg_ident(mu, has, rnd, lo, hi, out):
    """:func:`_bg_out` where data units are model units (``out_scale`` 1, ``offset`` 0 and the
    top exact in float32: 8-bit video): the same value without the float64 product."""
    return _stored(_bg_value32(mu if has else np.float32(0.0), rnd, lo, hi), out)


@njit(**PJIT_EXACT)
def _apply_pixels(
    frames,
    offset,
    factors,
    saturation,
    scale,
    weights,
    means,
    variances,
    n_modes,
    masks,
    bg_out,
    write_bg,
    bg_round,
    bg_lo,
    bg_hi,
    alphas,
    modelled,
    var_a,
    var_b,
    var_threshold,
    background_ratio,
    var_threshold_gen,
    var_init,
    var_min,
    var_max,
    ct,
    tau,
    detect_shadows,
    rows,
    counter,
    n_workers,
):
    """Any number of channels C, one pixel at a time (:func:`_update_pixel`): the reference
    form of :func:`_apply_fast` (same arguments, same float32 arithmetic, bit for bit), used
    for C other than 1 and 3.

    The model sees ``(frame - offset) / factors[b]`` (times ``scale``); samples at or above
    ``saturation`` enter as ``saturation - offset`` unscaled. With ``modelled``, every mode's
    variance is set, before each frame, from the noise model at the mode's mean ``mu`` (model
    units, channel average): ``var_a[b] * max(mu, 0) + var_b[b]``.
    """
    height, width = n_modes.shape
    k_max = weights.shape[1]
    n_ch = means.shape[2]
    m3 = means.reshape((height, k_max * n_ch, width))
    f0 = np.float32(0.0)
    tiny = np.float32(1e-30)
    off = np.float32(offset)
    sat = np.float32(saturation)
    if modelled:  # the learned variance is replaced before it is used: no clamps
        var_min = 1e-30
        var_max = 3e38
    scale64 = scale
    scale, var_threshold, var_threshold_gen, background_ratio, var_min, var_max, var_init = _as_f32(
        scale, var_threshold, var_threshold_gen, background_ratio, var_min, var_max, var_init
    )
    inv_ch = np.float32(1.0 / n_ch)
    sat_m = (sat - off) * scale  # a saturated sample in model units
    for _ in prange(n_workers):  # one task per thread, taking rows (see _next_row)
        data = np.empty(n_ch, np.float32)
        diff = np.empty(n_ch, np.float32)
        while True:
            y = _next_row(counter, rows)
            if y < 0:
                break
            wy = weights[y]
            my = m3[y]
            vy = variances[y]
            for b in range(frames.shape[0]):
                alpha = np.float32(alphas[b])
                prune = np.float32(-alphas[b] * ct)
                alpha1 = np.float32(1.0 - alphas[b])
                s_b = np.float32(scale64 / factors[b])
                out_scale = factors[b] / scale64
                a_b = np.float32(var_a[b])
                c_b = np.float32(var_b[b])
                for x in range(width):
                    for c in range(n_ch):
                        v = np.float32(frames[b, y, x, c])
                        data[c] = sat_m if v >= sat else (v - off) * s_b
                    nm = np.int64(n_modes[y, x])
                    if modelled:
                        for m in range(nm):
                            mu = f0
                            for c in range(n_ch):
                                mu += my[m * n_ch + c, x]
                            v = a_b * max(mu * inv_ch, f0) + c_b
                            vy[m, x] = max(v, tiny)
                    n_alive, background = _update_pixel(
                        data,
                        diff,
                        wy,
                        my,
                        vy,
                        x,
                        nm,
                        k_max,
                        n_ch,
                        alpha,
                        alpha1,
                        prune,
                        var_threshold,
                        background_ratio,
                        var_threshold_gen,
                        var_init,
                        var_min,
                        var_max,
                        False,
                        False,
                    )
                    n_modes[y, x] = n_alive
                    if background:
                        masks[b, y, x] = BACKGROUND
                    else:
                        shadow = False
                        if detect_shadows:
                            shadow = _is_shadow(
                                data, wy, my, vy, x, n_alive, n_ch, var_threshold, background_ratio, tau
                            )
                        masks[b, y, x] = SHADOW if shadow else FOREGROUND
                    if write_bg:
                        for c in range(n_ch):
                            v = _bg_data(my[c, x], n_alive > 0, out_scale, offset, sat_m, saturation)
                            bg_out[b, y, x, c] = _bg_value(v, bg_round, bg_lo, bg_hi)


@njit(inline="always", **JIT_EXACT)
def _top_mode(dat, wy, my, vy, nmy, x, n_ch, alpha, alpha1, prune, var_threshold_gen, var_min, var_max):
    """Pass A of :func:`_apply_fast` for pixel ``x`` (``n_ch`` a literal 1 or 3): test the sample
    against the top mode and update that mode where it matches, with selects instead of
    branches. Returns (matched and kept: a "fast" pixel, the top-mode weight after the decay,
    the squared distance, the top mode's variance before the update)."""
    nm = nmy[x]
    v = vy[0, x]
    w = wy[0, x]
    mu0 = my[0, x]
    d0 = mu0 - dat[n_ch * x]
    dist2 = d0 * d0
    mu1 = mu2 = d1 = d2 = np.float32(0.0)
    if n_ch == 3:
        mu1 = my[1, x]
        mu2 = my[2, x]
        d1 = mu1 - dat[3 * x + 1]
        d2 = mu2 - dat[3 * x + 2]
        dist2 = d0 * d0 + d1 * d1 + d2 * d2
    wt = alpha1 * w + prune
    wt = wt + alpha
    ok = (nm > 0) & (dist2 < var_threshold_gen * v) & (wt >= -prune)
    k = alpha / wt
    vnew = v + k * (dist2 - v)
    vnew = var_min if vnew < var_min else vnew
    vnew = var_max if vnew > var_max else vnew
    my[0, x] = mu0 - k * d0 if ok else mu0
    if n_ch == 3:
        my[1, x] = mu1 - k * d1 if ok else mu1
        my[2, x] = mu2 - k * d2 if ok else mu2
    vy[0, x] = vnew if ok else v
    wy[0, x] = wt if ok else w
    return ok, wt, dist2, v


@njit(inline="always", **JIT_EXACT)
def _second_mode(
    dat,
    wy,
    my,
    vy,
    nmy,
    other,
    x,
    n_ch,
    alpha,
    alpha1,
    prune,
    var_threshold,
    background_ratio,
    var_threshold_gen,
    var_min,
    var_max,
):
    """Pass A2 of :func:`_apply_fast` for pixel ``x`` (``n_ch`` a literal 1 or 3) where
    ``other[x]`` (its top mode does not match): test the sample against the second mode and, where it
    matches and neither mode is pruned, decay the top mode, update the second and swap them when
    the second's new weight reaches the top's, with selects (the steps of
    :func:`_update_pixel`, bit for bit). Returns (done here, the two weights' sum, the second
    mode's background test)."""
    w0 = wy[0, x]
    w1 = wy[1, x]
    v0 = vy[0, x]
    v1 = vy[1, x]
    a0 = my[0, x]
    b0 = my[n_ch, x]
    e0 = b0 - dat[n_ch * x]
    dist2 = e0 * e0
    a1 = a2 = b1 = b2 = e1 = e2 = np.float32(0.0)
    if n_ch == 3:
        a1 = my[1, x]
        a2 = my[2, x]
        b1 = my[4, x]
        b2 = my[5, x]
        e1 = b1 - dat[3 * x + 1]
        e2 = b2 - dat[3 * x + 2]
        dist2 = e0 * e0 + e1 * e1 + e2 * e2
    wt0 = alpha1 * w0 + prune
    wt1 = alpha1 * w1 + prune
    wt1 = wt1 + alpha
    ok = other[x] & (nmy[x] >= 2) & (dist2 < var_threshold_gen * v1) & (wt0 >= -prune) & (wt1 >= -prune)
    k = alpha / wt1
    vnew = v1 + k * (dist2 - v1)
    vnew = var_min if vnew < var_min else vnew
    vnew = var_max if vnew > var_max else vnew
    swap = wt1 >= wt0  # the matched mode moves up
    n0 = b0 - k * e0
    wy[0, x] = (wt1 if swap else wt0) if ok else w0
    wy[1, x] = (wt0 if swap else wt1) if ok else w1
    vy[0, x] = (vnew if swap else v0) if ok else v0
    vy[1, x] = (v0 if swap else vnew) if ok else v1
    my[0, x] = (n0 if swap else a0) if ok else a0
    my[n_ch, x] = (a0 if swap else n0) if ok else b0
    if n_ch == 3:
        n1 = b1 - k * e1
        n2 = b2 - k * e2
        my[1, x] = (n1 if swap else a1) if ok else a1
        my[2, x] = (n2 if swap else a2) if ok else a2
        my[4, x] = (a1 if swap else n1) if ok else b1
        my[5, x] = (a2 if swap else n2) if ok else b2
    background = (wt0 < background_ratio) & (dist2 < var_threshold * v1)
    return ok, wt0 + wt1, background


@njit(**PJIT_EXACT)
def _apply_fast(
    frames,
    offset,
    factors,
    saturation,
    scale,
    weights,
    means,
    variances,
    n_modes,
    masks,
    bg_out,
    write_bg,
    bg_round,
    bg_lo,
    bg_hi,
    alphas,
    modelled,
    var_a,
    var_b,
    var_threshold,
    background_ratio,
    var_threshold_gen,
    var_init,
    var_min,
    var_max,
    ct,
    tau,
    detect_shadows,
    rows,
    counter,
    n_workers,
):
    """C = 1 or 3: the common cases (the top or the second mode matches) in vectorisable passes
    over each row.

    ``frames`` and ``bg_out`` are (B, H, W * C). Per frame and row: pass 0 converts
    the row to model units (and, with ``modelled``, sets every mode's variance from the noise
    model); pass A tests every pixel against its top mode and updates that mode where it
    matches ("fast" pixels); pass A2 does the same with the second mode where the top one does
    not match (decaying the top mode, swapping the two when the second's weight reaches it);
    passes B decay the other modes of fast pixels and sum the weights; passes C normalise them;
    then the other pixels (neither of the first two modes matches: 7 % of the pixel-frames on
    the issue-15 stack, 1 % on CDnet highway, 13 % on traffic, 22 % on fall) go through
    :func:`_update_pixel` one at a time. Every
    pass computes exactly the float32 operations of :func:`_update_pixel` (and of
    :func:`_apply_pixels`), in the same order, with selects instead of branches (bit-identical
    results). The background is written while the row's state is in cache, straight into the
    output dtype (no second pass over the model, no float32 buffer).
    """
    height, width = n_modes.shape
    k_max = weights.shape[1]
    n_ch = means.shape[2]
    m3 = means.reshape((height, k_max * n_ch, width))
    f0 = np.float32(0.0)
    f1 = np.float32(1.0)
    eps = np.float32(1.1920929e-07)
    tiny = np.float32(1e-30)
    off = np.float32(offset)
    sat = np.float32(saturation)
    if modelled:  # the learned variance is replaced before it is used: no clamps
        var_min = 1e-30
        var_max = 3e38
    scale64 = scale
    scale, var_threshold, var_threshold_gen, background_ratio, var_min, var_max, var_init = _as_f32(
        scale, var_threshold, var_threshold_gen, background_ratio, var_min, var_max, var_init
    )
    inv_ch = np.float32(1.0 / n_ch)
    sat_m = (sat - off) * scale  # a saturated sample in model units
    top = saturation == saturation  # not NaN: integer data, whose maximum is written exactly
    rgb = n_ch == 3
    for _ in prange(n_workers):  # one task per thread, taking rows (see _next_row)
        fast = np.empty(width, np.bool_)
        bgd = np.empty(width, np.bool_)
        fit0 = np.empty(width, np.bool_)  # the top mode is within var_threshold_gen
        two = np.empty(width, np.bool_)  # done by pass A2
        sum2 = np.empty(width, np.float32)  # pass A2: the two weights' sum, or -1
        bg2s = np.empty(width, np.bool_)  # pass A2: the second mode's background test
        tot = np.empty(width, np.float32)
        cnt = np.empty(width, np.uint8)
        dat = np.empty(width * n_ch, np.float32)  # the row in model units
        others = np.empty(width, np.int64)  # the columns left to the per-pixel update
        data = np.empty(n_ch, np.float32)
        diff = np.empty(n_ch, np.float32)
        while True:
            y = _next_row(counter, rows)
            if y < 0:
                break
            wy = weights[y]
            my = m3[y]
            vy = variances[y]
            nmy = n_modes[y]
            for b in range(frames.shape[0]):
                alpha = np.float32(alphas[b])
                prune = np.float32(-alphas[b] * ct)
                alpha1 = np.float32(1.0 - alphas[b])
                s_b = np.float32(scale64 / factors[b])
                out_scale = factors[b] / scale64
                fr = frames[b, y]
                # pass 0: the row in model units; the modes' variances from the noise model
                for i in range(width * n_ch):
                    v = np.float32(fr[i])
                    dat[i] = sat_m if v >= sat else (v - off) * s_b
                nmax = 0
                for x in range(width):
                    nmax = max(nmax, np.int64(nmy[x]))
                if modelled:
                    a_b = np.float32(var_a[b])
                    c_b = np.float32(var_b[b])
                    for m in range(nmax):
                        if rgb:
                            for x in range(width):
                                mu = f0
                                mu += my[3 * m, x]
                                mu += my[3 * m + 1, x]
                                mu += my[3 * m + 2, x]
                                v = a_b * max(mu * inv_ch, f0) + c_b
                                vy[m, x] = max(v, tiny) if m < nmy[x] else vy[m, x]
                        else:
                            for x in range(width):
                                mu = f0
                                mu += my[m, x]
                                v = a_b * max(mu * inv_ch, f0) + c_b
                                vy[m, x] = max(v, tiny) if m < nmy[x] else vy[m, x]
                # pass A: the top mode, and the background where it stays the top mode
                if rgb:
                    for x in range(width):
                        ok, wt, dist2, v = _top_mode(
                            dat, wy, my, vy, nmy, x, 3, alpha, alpha1, prune, var_threshold_gen, var_min, var_max
                        )
                        tot[x] = wt
                        cnt[x] = 1
                        bgd[x] = dist2 < var_threshold * v
                        fast[x] = ok
                        fit0[x] = dist2 < var_threshold_gen * v
                else:
                    for x in range(width):
                        ok, wt, dist2, v = _top_mode(
                            dat, wy, my, vy, nmy, x, 1, alpha, alpha1, prune, var_threshold_gen, var_min, var_max
                        )
                        tot[x] = wt
                        cnt[x] = 1
                        bgd[x] = dist2 < var_threshold * v
                        fast[x] = ok
                        fit0[x] = dist2 < var_threshold_gen * v
                # pass A2: where the top mode does not match, the second mode (the most common
                # case of the others: about half of them on CDnet video and on noisy stacks)
                if nmax >= 2:
                    for x in range(width):
                        two[x] = not (fast[x] | fit0[x])  # the top mode does not match
                    if rgb:
                        for x in range(width):
                            ok, t2, bg2 = _second_mode(
                                dat,
                                wy,
                                my,
                                vy,
                                nmy,
                                two,
                                x,
                                3,
                                alpha,
                                alpha1,
                                prune,
                                var_threshold,
                                background_ratio,
                                var_threshold_gen,
                                var_min,
                                var_max,
                            )
                            sum2[x] = t2 if ok else np.float32(-1.0)
                            bg2s[x] = bg2
                    else:
                        for x in range(width):
                            ok, t2, bg2 = _second_mode(
                                dat,
                                wy,
                                my,
                                vy,
                                nmy,
                                two,
                                x,
                                1,
                                alpha,
                                alpha1,
                                prune,
                                var_threshold,
                                background_ratio,
                                var_threshold_gen,
                                var_min,
                                var_max,
                            )
                            sum2[x] = t2 if ok else np.float32(-1.0)
                            bg2s[x] = bg2
                    # their results (a separate loop: with these stores too, the one above had
                    # too many arrays for LLVM's run-time alias checks and stayed scalar)
                    for x in range(width):
                        t2 = sum2[x]
                        use = t2 >= f0
                        f = fast[x]
                        t = tot[x]
                        n = cnt[x]
                        g = bgd[x]
                        tot[x] = t2 if use else t
                        cnt[x] = np.uint8(2) if use else n
                        bgd[x] = (g | bg2s[x]) if use else g
                        two[x] = use
                        fast[x] = f | use
                # pass B: decay (and prune) the other modes of the fast pixels; sum the weights
                # (the second mode of pass A2's pixels is done)
                for m in range(1, nmax):
                    for x in range(width):
                        w = wy[m, x]
                        wm = alpha1 * w + prune
                        keep = (m < nmy[x]) & (wm >= -prune)
                        wm = wm if keep else f0
                        use = fast[x] & ((m > 1) | (two[x] == 0))
                        wy[m, x] = wm if use else w
                        t = tot[x]
                        n = cnt[x]
                        tot[x] = t + wm if use else t
                        cnt[x] = n + keep if use else n
                # pass C: normalise (modes beyond a pixel's own count hold 0 and stay 0)
                for x in range(width):
                    t = tot[x]
                    tot[x] = f1 / t if t > eps else f0
                for m in range(nmax):
                    for x in range(width):
                        w = wy[m, x]
                        wy[m, x] = w * tot[x] if fast[x] else w
                mb = masks[b, y]
                for x in range(width):
                    nmy[x] = cnt[x] if fast[x] else nmy[x]
                    mb[x] = BACKGROUND if bgd[x] else FOREGROUND
                # the other pixels, and the shadow test of fast foreground pixels: their
                # columns listed first (a branch-free pass), then a loop over the list only.
                # Measured on the issue-15 stack and not kept (each bit for bit the same, each
                # slower than this, 1 thread, ns per pixel-frame against 8.0-8.6): the update of
                # these pixels in masked passes over the row (80) or over their compacted state
                # (29; the passes did not vectorise); written with selects over all k_max modes
                # instead of data-dependent branches (9.8); their state gathered into compact
                # arrays and updated there (12.8); every pass on chunks of 256 columns (9.3-9.5;
                # a loop over Numba's range(x0, x1) does not vectorise, range(n) from 0 does); a
                # pass A3 for the third mode as A2 for the second (9.2-9.7: it took half of these
                # updates, the loop fell from 9-11 to 6 cycles per pixel-frame, but the pass
                # itself cost 5.9 against A2's 2.2, rdtsc per pass, most likely not vectorised);
                # a pass N making the new mode with selects (no mode matches, at most two modes:
                # the model's first frames, every pixel of the first one; only in rows whose
                # pixels all have at most two modes: elsewhere it cost more than it saved, 1.5x
                # A2's time, RGB video up to 1.5x slower): frames 1-3 of a burn-in 11-12 against
                # 13-20 ns, 1-2 % of a 100-frame burn-in, for a cold compile of 38-46 s against
                # 22-28 s per dtype (inlined by LLVM instead: 29 against 23 s, uint16)
                n_other = 0
                for x in range(width):
                    others[n_other] = x
                    n_other += not (fast[x] & (bgd[x] | (not detect_shadows)))
                for j in range(n_other):
                    x = others[j]
                    f = fast[x]
                    for c in range(n_ch):
                        data[c] = dat[n_ch * x + c]
                    if f:
                        n_alive = np.int64(nmy[x])
                        background = False
                    else:
                        if rgb:
                            # a literal channel count: LLVM inlines the update, its channel loops unroll
                            n_alive, background = _update_pixel(
                                data,
                                diff,
                                wy,
                                my,
                                vy,
                                x,
                                np.int64(nmy[x]),
                                k_max,
                                3,
                                alpha,
                                alpha1,
                                prune,
                                var_threshold,
                                background_ratio,
                                var_threshold_gen,
                                var_init,
                                var_min,
                                var_max,
                                not fit0[x],
                                bgd[x],
                            )
                        else:
                            n_alive, background = _update_pixel(
                                data,
                                diff,
                                wy,
                                my,
                                vy,
                                x,
                                np.int64(nmy[x]),
                                k_max,
                                1,
                                alpha,
                                alpha1,
                                prune,
                                var_threshold,
                                background_ratio,
                                var_threshold_gen,
                                var_init,
                                var_min,
                                var_max,
                                not fit0[x],
                                bgd[x],
                            )
                        nmy[x] = n_alive
                    if background:
                        mb[x] = BACKGROUND
                    else:
                        shadow = False
                        if detect_shadows and rgb:
                            shadow = _is_shadow(data, wy, my, vy, x, n_alive, 3, var_threshold, background_ratio, tau)
                        elif detect_shadows:
                            shadow = _is_shadow(data, wy, my, vy, x, n_alive, 1, var_threshold, background_ratio, tau)
                        mb[x] = SHADOW if shadow else FOREGROUND
                if write_bg:
                    # pass D: the background row while the row's state is in cache, straight
                    # into the output dtype. ``bg_out`` is (B, H, W * C): RGB is stored at
                    # ``3 * x + c`` with a literal 3, an interleaved store that LLVM vectorises
                    # (through a (W, C) view the stride is a runtime value and the store stayed
                    # scalar: 3x slower). One loop per case, each a single vectorised form.
                    bo = bg_out[b, y]
                    # data units = model units (8-bit video): no float64 product (2x faster)
                    ident = out_scale == 1.0 and offset == 0.0 and (np.float64(sat_m) == saturation or not top)
                    conv = (out_scale, offset, sat_m, saturation, bg_round, bg_lo, bg_hi)
                    m0 = my[0]
                    if rgb and ident:
                        m1 = my[1]
                        m2 = my[2]
                        for x in range(width):
                            h = nmy[x] > 0
                            bo[3 * x] = _bg_ident(m0[x], h, bg_round, bg_lo, bg_hi, bo)
                            bo[3 * x + 1] = _bg_ident(m1[x], h, bg_round, bg_lo, bg_hi, bo)
                            bo[3 * x + 2] = _bg_ident(m2[x], h, bg_round, bg_lo, bg_hi, bo)
                    elif rgb:
                        m1 = my[1]
                        m2 = my[2]
                        for x in range(width):
                            h = nmy[x] > 0
                            bo[3 * x] = _bg_out(m0[x], h, conv, bo)
                            bo[3 * x + 1] = _bg_out(m1[x], h, conv, bo)
                            bo[3 * x + 2] = _bg_out(m2[x], h, conv, bo)
                    elif ident:
                        for x in range(width):
                            bo[x] = _bg_ident(m0[x], nmy[x] > 0, bg_round, bg_lo, bg_hi, bo)
                    else:
                        for x in range(width):
                            bo[x] = _bg_out(m0[x], nmy[x] > 0, conv, bo)


def mog2_apply(
    frames,
    scale,
    weights,
    means,
    variances,
    n_modes,
    masks,
    bg_out,
    write_bg,
    alphas,
    var_threshold,
    background_ratio,
    var_threshold_gen,
    var_init,
    var_min,
    var_max,
    ct,
    tau,
    detect_shadows,
    *,
    bg_range=None,
    offset=0.0,
    factors=None,
    var_a=None,
    var_b=None,
    saturation=None,
    per_pixel=False,
):
    """Classify a block of frames and update the model in place (parallel over rows).

    Each pixel's mixture only depends on that pixel's samples, so every thread takes whole
    rows through all frames of the block: one parallel launch per block, and the state of a
    row stays in cache from frame to frame. The result is identical to calling this once per
    frame. Grey (C = 1) and RGB (C = 3) frames go through :func:`_apply_fast` (the common
    case in vectorised passes over each row), any other C through :func:`_apply_pixels`: the
    same float32 arithmetic, bit for bit, with or without bleaching factors and noise model.

    Parameters
    ----------
    frames : (B, H, W, C) array, C-contiguous: uint8, uint16 or float32 (each dtype compiles
        its own kernel: the public wrappers convert other dtypes to float32, exactly)
        The frames in data units; multiplied by ``scale`` to model units.
    scale : float
        Data units to model units (255 / data_range).
    weights, means, variances, n_modes : state arrays (see module docstring and
        :func:`new_state`), updated in place.
    masks : (B, H, W) uint8
        Output: 0 background, 1 foreground, 2 shadow.
    bg_out : (B, H, W, C) array, C-contiguous: float32, uint8 or uint16
        Output when ``write_bg``: the mean of the most probable mode after each frame, in data
        units, as float32 (rounded and clipped with ``bg_range`` for integer outputs); any
        array of that dtype, e.g. (1, 1, 1, C), when ``write_bg`` is False.
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
    bg_range : (lo, hi), optional
        Round the background half to even and clip it into ``[lo, hi]`` (an integer
        ``bg_out``, written directly).
    offset : float
        Subtracted from the frames before ``factors`` divides them.
    factors : (B,) float64, optional
        Per-frame factors divided out of ``frames - offset`` (bleaching, global drift).
    var_a, var_b : (B,) float64, optional
        Modelled variance of a mode of mean ``mu`` (model units) in frame ``b``:
        ``var_a[b] * max(mu, 0) + var_b[b]``; learned variances are not used.
    saturation : float, optional
        Samples at or above it are saturated: they enter unscaled by ``factors`` (with factor 1
        and offset 0 that is the plain sample), and a background mode that learned only them is
        written as exactly this value. Default: the maximum of an integer ``frames`` dtype,
        none for floats (give the original dtype's maximum for frames converted to float32).
    per_pixel : bool
        Use :func:`_apply_pixels` for any C (the reference form; tests).
    """
    n_b, height, width, n_ch = frames.shape
    rnd = bg_range is not None
    lo, hi = (float(bg_range[0]), float(bg_range[1])) if rnd else (0.0, 0.0)
    if rnd and not 0.0 <= lo <= hi < 2.0**23:
        raise ValueError(
            f"bg_range must lie within [0, 2**23), got {bg_range}: wider integer outputs go through a float32 buffer"
        )
    rows = np.arange(height, dtype=np.int64)
    counter = np.zeros(1, np.int64)
    n_workers = max(1, numba.get_num_threads())
    alphas = np.ascontiguousarray(alphas, np.float64)
    if saturation is None:
        saturation = float(np.iinfo(frames.dtype).max) if frames.dtype.kind in "ui" else np.nan
    modelled = var_a is not None
    ones = np.ones(n_b, np.float64)
    fast = n_ch in (1, 3) and not per_pixel
    kernel = _apply_fast if fast else _apply_pixels
    if fast:
        frames = frames.reshape(n_b, height, width * n_ch)
        bg_out = bg_out.reshape(bg_out.shape[0], bg_out.shape[1], bg_out.shape[2] * n_ch)
    kernel(
        frames,
        float(offset),
        ones if factors is None else np.ascontiguousarray(factors, np.float64),
        float(saturation),
        float(scale),
        weights,
        means,
        variances,
        n_modes,
        masks,
        bg_out,
        bool(write_bg),
        rnd,
        lo,
        hi,
        alphas,
        modelled,
        np.ascontiguousarray(var_a if modelled else ones, np.float64),
        np.ascontiguousarray(var_b if modelled else ones, np.float64),
        float(var_threshold),
        float(background_ratio),
        float(var_threshold_gen),
        float(var_init),
        float(var_min),
        float(var_max),
        float(ct),
        float(tau),
        bool(detect_shadows),
        rows,
        counter,
        n_workers,
    )


@njit(**PJIT)
def mog2_background(means, n_modes, scale, out):
    """Write the mean of the most probable mode of every pixel (data units) into ``out``."""
    height, width = n_modes.shape
    n_ch = out.shape[2]
    inv_scale = 1.0 / scale
    for y in prange(height):
        for x in range(width):
            for c in range(n_ch):
                out[y, x, c] = means[y, 0, c, x] * inv_scale if n_modes[y, x] > 0 else 0.0


@njit(inline="always", **JIT)
def _box_edges(col, radius, acc):
    """``acc[x]`` = the sum of ``col`` over ``[x - radius, x + radius]`` clipped to the row, for
    the ``radius`` first and last ``x`` of a row (at least ``2 * radius + 1`` long)."""
    width = col.shape[0]
    for i in range(2 * radius):
        x = i if i < radius else width - 2 * radius + i
        s = 0
        for xx in range(max(0, x - radius), min(width, x + radius + 1)):
            s += col[xx]
        acc[x] = s


@njit(**JIT)
def majority_filter(mask, radius, out):
    """Binary majority vote of ``mask == 1`` over a (2r+1)^2 window (clipped at the borders).

    Pixels where more than half of the window is foreground become 1; other pixels keep
    their value if it is 0 or 2 and become 0 if it was 1. This is the post-filtering step
    of Zivkovic's reference implementation (a median filter of the binary mask), written as
    running column counts (one row added, one removed per row) and a horizontal box sum (written
    out for the 3 x 3 and 5 x 5 windows, so that every loop vectorises; a running sum for
    larger ones).
    """
    height, width = mask.shape
    col = np.zeros(width, np.int32)
    acc = np.empty(width, np.int32)
    widths = np.empty(width, np.int32)
    for x in range(width):
        widths[x] = min(width, x + radius + 1) - max(0, x - radius)
    for yy in range(min(radius, height)):
        for x in range(width):
            col[x] += mask[yy, x] == FOREGROUND
    for y in range(height):
        ya = y + radius
        if ya < height:
            for x in range(width):
                col[x] += mask[ya, x] == FOREGROUND
        yr = y - radius - 1
        if yr >= 0:
            for x in range(width):
                col[x] -= mask[yr, x] == FOREGROUND
        if radius == 1 and width >= 3:
            for x in range(1, width - 1):
                acc[x] = col[x - 1] + col[x] + col[x + 1]
            _box_edges(col, radius, acc)
        elif radius == 2 and width >= 5:
            for x in range(2, width - 2):
                acc[x] = col[x - 2] + col[x - 1] + col[x] + col[x + 1] + col[x + 2]
            _box_edges(col, radius, acc)
        else:
            s = 0
            for x in range(min(radius, width)):
                s += col[x]
            for x in range(width):
                xa = x + radius
                if xa < width:
                    s += col[xa]
                xr = x - radius - 1
                if xr >= 0:
                    s -= col[xr]
                acc[x] = s
        hy = min(height, y + radius + 1) - max(0, y - radius)
        for x in range(width):
            m = mask[y, x]
            keep = BACKGROUND if m == FOREGROUND else m
            out[y, x] = FOREGROUND if 2 * acc[x] > hy * widths[x] else keep


@njit(**JIT)
def _find(parent, i):
    """Root of ``i`` in the union-find forest ``parent`` (with path halving)."""
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


@njit(**JIT)
def fill_holes(mask, max_area, starts, stops, rows, parent, area, edge):
    """Set to 1 (foreground) every hole of ``mask`` (H, W) uint8, in place: a 4-connected region
    of pixels other than 1 (background 0 or shadow 2) that does not touch the frame's border,
    of at most ``max_area`` pixels. Returns the number of pixels filled, or -1 (``mask``
    unchanged) when the frame has more runs than the work arrays hold.

    Runs of non-foreground pixels along the rows are joined to the overlapping runs of the row
    above (union-find); a region is a hole when none of its runs touches the border. The work
    arrays hold one entry per run; a frame without foreground returns after one scan.
    """
    height, width = mask.shape
    cap = starts.shape[0]
    n = 0
    prev0 = 0  # runs of the row above: [prev0, prev1)
    prev1 = 0
    any_fg = False
    for y in range(height):
        row = mask[y]
        cur0 = n
        has_fg = False
        for x in range(width):  # vectorised: most rows have no foreground
            has_fg |= row[x] == FOREGROUND
        any_fg |= has_fg
        x = 0
        while x < width:
            if has_fg:  # the next run of non-foreground pixels
                while x < width and row[x] == FOREGROUND:
                    x += 1
                if x == width:
                    break
                x0 = x
                while x < width and row[x] != FOREGROUND:
                    x += 1
            else:  # one run, the whole row (no scan)
                x0, x = 0, width
            if n == cap:
                return -1
            starts[n] = x0
            stops[n] = x
            rows[n] = y
            parent[n] = n
            area[n] = x - x0
            edge[n] = y == 0 or y == height - 1 or x0 == 0 or x == width
            # join the overlapping runs of the row above (both lists sorted along x)
            j = prev0
            while j < prev1 and stops[j] <= x0:
                j += 1
            while j < prev1 and starts[j] < x:
                a = _find(parent, j)
                b = _find(parent, n)
                if a != b:
                    parent[b] = a
                    area[a] += area[b]
                    edge[a] = edge[a] or edge[b]
                j += 1
            # the next run may overlap the same run above: step back to it
            prev0 = max(prev0, j - 1)
            n += 1
        prev0 = cur0
        prev1 = n
    if not any_fg:
        return 0
    filled = 0
    for i in range(n):
        r = _find(parent, i)
        if not edge[r] and area[r] <= max_area:
            y = rows[i]
            for x in range(starts[i], stops[i]):
                mask[y, x] = FOREGROUND
            filled += stops[i] - starts[i]
    return filled


@njit(**JIT)
def _run_arrays(m):
    """Work arrays of :func:`fill_holes` for ``m`` runs: starts, stops, rows, parent, area, edge."""
    return (
        np.empty(m, np.int32),
        np.empty(m, np.int32),
        np.empty(m, np.int32),
        np.empty(m, np.int32),
        np.empty(m, np.int64),
        np.empty(m, np.bool_),
    )


@njit(**JIT)
def _fill_frames(masks, lo, hi, max_area):
    """:func:`fill_holes` of frames ``lo:hi`` of ``masks`` with work arrays of their own: a few
    runs per row at first, doubled when a frame has more (and kept for the next frames)."""
    height, width = masks.shape[1], masks.shape[2]
    m = 4 * height + 64
    work = _run_arrays(m)
    filled = 0
    for b in range(lo, hi):
        while True:
            k = fill_holes(masks[b], max_area, *work)
            if k >= 0:
                break
            m = min(2 * m, height * (width // 2 + 1))
            work = _run_arrays(m)
        filled += k
    return filled


def _fill_holes_stack(masks, max_area, n_threads):
    """:func:`fill_holes` of every frame of (B, H, W) ``masks``, in place, the frames split into
    ``n_threads`` parts (Numba's thread count: the parts run in parallel); returns the number of
    pixels filled. ``fill_holes_stack_serial``: the same in the calling thread (inside dask's
    tasks; ``n_threads`` 1)."""
    n = masks.shape[0]
    parts = max(1, min(n, n_threads))
    filled = 0
    for i in prange(parts):
        filled += _fill_frames(masks, i * n // parts, (i + 1) * n // parts, max_area)
    return filled


fill_holes_stack = njit(**PJIT)(_fill_holes_stack)
fill_holes_stack_serial = njit(**JIT)(serial_copy(_fill_holes_stack))


@njit(**JIT)
def majority_filter_stack(masks, radius, out):
    """:func:`majority_filter` of every frame of (B, H, W) ``masks``.

    Serial, in the calling thread: it takes about 0.06 ms per 640 x 480 frame, less than a
    parallel launch can wait for a worker thread on a busy machine.
    """
    for b in range(masks.shape[0]):
        majority_filter(masks[b], radius, out[b])
