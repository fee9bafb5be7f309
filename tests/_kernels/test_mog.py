"""The MOG2 kernel against a naive pure-Python per-pixel reference, invariants, and OpenCV."""

import numpy as np
import pytest

from napari_gmm._kernels import mog

PARAMS = dict(
    var_threshold=16.0,
    background_ratio=0.9,
    var_threshold_gen=9.0,
    var_init=15.0,
    var_min=4.0,
    var_max=75.0,
    ct=0.05,
    tau=0.5,
)


F32 = np.float32


def reference_pixel(
    data,
    modes,
    alpha,
    var_threshold,
    background_ratio,
    var_threshold_gen,
    var_init,
    var_min,
    var_max,
    ct,
    tau,
    k_max,
    detect_shadows=True,
):
    """Naive MOG2 update of one pixel, written from Zivkovic (2006) / OpenCV's description.

    ``modes`` is a list of [weight, mean (list), variance], sorted by decreasing weight. The
    update is computed in float32 (NumPy float32 scalars; the kernel is float32 without
    fast-math), the shadow test in float64. Returns (mask value, new modes).
    """
    data = [F32(d) for d in data]
    alpha64 = alpha
    alpha, prune, alpha1 = F32(alpha64), F32(-alpha64 * ct), F32(1.0 - alpha64)
    vt, vtg, ratio = F32(var_threshold), F32(var_threshold_gen), F32(background_ratio)
    vmin, vmax, vinit = F32(var_min), F32(var_max), F32(var_init)
    new = []  # modes after the update, in order, as [w, mu, var, matched]
    background = False
    fits = False
    total = F32(0)
    for w, mu, var in modes:
        wt = alpha1 * w + prune
        matched = False
        if not fits:
            diff = [m - d for m, d in zip(mu, data)]
            dist2 = F32(0)
            for d in diff:
                dist2 = dist2 + d * d
            if total < ratio and dist2 < vt * var:
                background = True
            if dist2 < vtg * var:
                fits = matched = True
                wt = wt + alpha
                k = alpha / wt
                mu = [m - k * d for m, d in zip(mu, diff)]
                var = min(max(var + k * (dist2 - var), vmin), vmax)
        if wt < -prune:
            wt = F32(0)
        total = total + wt
        new.append([wt, mu, var, matched])
    # the matched mode moves up past every mode whose new weight is not larger
    for i, m in enumerate(new):
        if m[3]:
            j = i
            while j > 0 and m[0] >= new[j - 1][0]:
                j -= 1
            new.insert(j, new.pop(i))
            break
    alive = [[m[0], m[1], m[2]] for m in new if m[0] != 0]
    inv = F32(1) / total if total > F32(1.1920929e-07) else F32(0)
    alive = [[w * inv, mu, var] for w, mu, var in alive]
    if not fits and alpha > 0:
        replaced = len(alive) == k_max
        if replaced:
            alive = alive[:-1]
        if not alive:
            alive = [[F32(1), list(data), vinit]]
        else:
            alive = [[w * alpha1, mu, var] for w, mu, var in alive]
            alive.append([alpha, list(data), vinit])
            if replaced:
                s = F32(0)
                for m in alive:
                    s = s + m[0]
                alive = [[w / s, mu, var] for w, mu, var in alive]
            new_mode = alive.pop()
            j = len(alive)
            while j > 0 and new_mode[0] >= alive[j - 1][0]:
                j -= 1
            alive.insert(j, new_mode)
    if background:
        return 0, alive
    if detect_shadows:
        tw = 0.0
        for w, mu, var in alive:
            num = sum(float(d) * float(m) for d, m in zip(data, mu))
            den = sum(float(m) * float(m) for m in mu)
            if den == 0:
                break
            if tau * den <= num <= den:
                a = num / den
                dist2a = sum((a * float(m) - float(d)) ** 2 for m, d in zip(mu, data))
                if dist2a < float(vt * var) * a * a:
                    return 2, alive
            tw += float(w)
            if tw > float(ratio):
                break
    return 1, alive


def _bg_dtype(stack):
    return stack.dtype if stack.dtype in (np.uint8, np.uint16) else np.float32


def _bg_range(dtype):
    """The kernel's rounding and clipping range of an integer background output (as the library's)."""
    return None if np.dtype(dtype).kind == "f" else (0, np.iinfo(dtype).max)


def run_kernel(stack, k_max, alphas, detect_shadows=True, **kw):
    params = dict(PARAMS, **kw)
    t, h, w, c = stack.shape
    weights, means, variances, n_modes = mog.new_state(h, w, k_max, c)
    masks = np.zeros((t, h, w), np.uint8)
    # the background in the frames' own dtype, as subtract_background writes it (and so the kernel
    # specialisation the library compiles anyway, not one of its own)
    bg = np.zeros((h, w, c), _bg_dtype(stack))
    states = []
    for i in range(t):
        mog.mog2_apply(
            np.ascontiguousarray(stack[i : i + 1]),
            1.0,
            weights,
            means,
            variances,
            n_modes,
            masks[i : i + 1],
            bg[None],
            True,
            alphas[i : i + 1],
            params["var_threshold"],
            params["background_ratio"],
            params["var_threshold_gen"],
            params["var_init"],
            params["var_min"],
            params["var_max"],
            params["ct"],
            params["tau"],
            detect_shadows,
            bg_range=_bg_range(bg.dtype),
        )
        states.append(pixel_major(weights, means, variances, n_modes) + (bg.copy(),))
    return masks, states


def pixel_major(weights, means, variances, n_modes):
    """Copies of the state as (H, W, K), (H, W, K, C), (H, W, K), (H, W)."""
    return (
        weights.transpose(0, 2, 1).copy(),
        means.transpose(0, 3, 1, 2).copy(),
        variances.transpose(0, 2, 1).copy(),
        n_modes.copy(),
    )


def run_reference(stack, k_max, alphas, detect_shadows=True, **kw):
    params = dict(PARAMS, **kw)
    t, h, w, c = stack.shape
    modes = [[[] for _ in range(w)] for _ in range(h)]
    masks = np.zeros((t, h, w), np.uint8)
    for i in range(t):
        for y in range(h):
            for x in range(w):
                data = [float(v) for v in stack[i, y, x]]
                masks[i, y, x], modes[y][x] = reference_pixel(
                    data, modes[y][x], alphas[i], k_max=k_max, detect_shadows=detect_shadows, **params
                )
    return masks, modes


def _scene(rng, t, h, w, c):
    """Pixels that switch among a few levels (multi-modal), with noise and shadows."""
    levels = rng.uniform(20, 230, (h, w, 3, c))
    choice = rng.choice(3, size=(t, h, w), p=[0.7, 0.2, 0.1])
    frames = np.take_along_axis(levels[None], choice[..., None, None], axis=3)[..., 0, :]
    frames = frames + rng.normal(0, 3, frames.shape)
    frames[t // 2 :, : h // 2, : w // 2] *= 0.6  # a shadow falls on one corner
    return np.clip(np.rint(frames), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("c", [1, 3])
@pytest.mark.parametrize("k_max,ct", [(3, 0.05), (4, 0.0), (2, 0.2)])
def test_kernel_equals_naive_reference(c, k_max, ct):
    rng = np.random.default_rng(10 * c + k_max)
    stack = _scene(rng, 40, 6, 7, c)
    alphas = [1.0 / min(2 * (i + 1), 25) for i in range(40)]
    alphas[30:33] = [0.0, 0.0, 0.0]  # classify-only frames
    masks, states = run_kernel(stack, k_max, alphas, ct=ct)
    ref_masks, ref_modes = run_reference(stack, k_max, alphas, ct=ct)
    np.testing.assert_array_equal(masks, ref_masks)
    weights, means, variances, n_modes, bg = states[-1]
    for y in range(stack.shape[1]):
        for x in range(stack.shape[2]):
            ref = ref_modes[y][x]
            n = int(n_modes[y, x])
            assert n == len(ref)
            # bit for bit: both compute in IEEE float32
            np.testing.assert_array_equal(weights[y, x, :n], np.float32([m[0] for m in ref]))
            np.testing.assert_array_equal(means[y, x, :n], np.float32([m[1] for m in ref]))
            np.testing.assert_array_equal(variances[y, x, :n], np.float32([m[2] for m in ref]))
            # the background in the frames' dtype: the top mode's mean rounded (half to even)
            np.testing.assert_array_equal(bg[y, x], np.rint(np.float32(ref[0][1])).astype(bg.dtype))
    # the scene has all three labels, so the comparison is not vacuous
    assert set(np.unique(masks)) == {0, 1, 2}


def test_float_input_equals_reference():
    rng = np.random.default_rng(3)
    stack = rng.normal(100, 5, (25, 5, 5, 2)).astype(np.float32)
    stack[10:15, 2:4] += 60
    alphas = [1.0 / min(2 * (i + 1), 30) for i in range(25)]
    masks, _ = run_kernel(stack, 3, alphas)
    ref_masks, _ = run_reference(stack, 3, alphas)
    np.testing.assert_array_equal(masks, ref_masks)
    assert (masks[10, 2:4] == 1).all()  # the jump is foreground when it appears


@pytest.mark.parametrize("ct", [0.0, 0.05])
def test_invariants(ct):
    rng = np.random.default_rng(1)
    stack = _scene(rng, 120, 12, 10, 3)
    alphas = [1.0 / min(2 * (i + 1), 40) for i in range(120)]
    _, states = run_kernel(stack, 4, alphas, ct=ct)
    for weights, _means, variances, n_modes, _ in states[1:]:
        assert n_modes.min() >= 1 and n_modes.max() <= 4
        k = np.arange(4)
        used = k[None, None, :] < n_modes[..., None]
        np.testing.assert_allclose(np.where(used, weights, 0).sum(-1), 1.0, atol=1e-5)
        assert (weights[~used] == 0).all()
        v = variances[used]
        assert v.min() >= PARAMS["var_min"] and v.max() <= PARAMS["var_max"]
        w_used = np.where(used, weights, -1.0)
        assert (np.diff(w_used, axis=-1)[used[..., 1:]] <= 0).all()  # sorted, descending
    if ct > 0:
        # the complexity prior leaves fewer modes than the fixed-K model
        assert states[-1][3].mean() < 4


def test_matches_opencv_mog2_closely():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(5)
    stack = _scene(rng, 150, 24, 32, 3)
    alphas = [1.0 / min(2 * (i + 1), 500) for i in range(150)]
    masks, _ = run_kernel(stack, 5, alphas)
    sub = cv2.createBackgroundSubtractorMOG2()
    ref = np.stack([sub.apply(f) for f in stack])
    ours = np.select([masks == 0, masks == 1], [0, 255], 127).astype(np.uint8)
    agree = (ours == ref).mean()
    # identical algorithm up to the two documented pruning/renormalisation differences
    assert agree > 0.97, agree


def test_block_equals_frame_by_frame():
    rng = np.random.default_rng(8)
    stack = _scene(rng, 30, 9, 11, 3)
    alphas = np.array([1.0 / min(2 * (i + 1), 20) for i in range(30)])
    masks, states = run_kernel(stack, 4, alphas)
    k, (h, w, c) = 4, stack.shape[1:]
    state = mog.new_state(h, w, k, c)
    block_masks = np.zeros_like(masks)
    bg = np.zeros((30, h, w, c), _bg_dtype(stack))
    for t0, t1 in [(0, 7), (7, 8), (8, 30)]:
        mog.mog2_apply(
            np.ascontiguousarray(stack[t0:t1]),
            1.0,
            *state,
            block_masks[t0:t1],
            bg[t0:t1],
            True,
            alphas[t0:t1],
            16.0,
            0.9,
            9.0,
            15.0,
            4.0,
            75.0,
            0.05,
            0.5,
            True,
            bg_range=_bg_range(bg.dtype),
        )
    np.testing.assert_array_equal(block_masks, masks)
    for a, b in zip(pixel_major(*state), states[-1]):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(bg[-1], states[-1][4])


def test_majority_filter():
    mask = np.zeros((7, 8), np.uint8)
    mask[2:5, 2:5] = 1
    mask[0, 7] = 1  # isolated pixel: removed
    mask[6, 0] = 2  # shadow kept
    mask[3, 3] = 0  # hole: filled
    out = np.empty_like(mask)
    mog.majority_filter(mask, 1, out)
    stacked = np.empty((2,) + mask.shape, np.uint8)
    mog.majority_filter_stack(np.stack([mask, mask]), 1, stacked)
    np.testing.assert_array_equal(stacked[1], out)
    assert out[0, 7] == 0 and out[6, 0] == 2 and out[3, 3] == 1
    # brute-force reference
    ref = mask.copy()
    for y in range(7):
        for x in range(8):
            win = mask[max(0, y - 1) : y + 2, max(0, x - 1) : x + 2]
            if 2 * (win == 1).sum() > win.size:
                ref[y, x] = 1
            elif mask[y, x] == 1:
                ref[y, x] = 0
    np.testing.assert_array_equal(out, ref)


def _majority_reference(mask, r):
    ref = mask.copy()
    h, w = mask.shape
    for y in range(h):
        for x in range(w):
            win = mask[max(0, y - r) : y + r + 1, max(0, x - r) : x + r + 1]
            if 2 * (win == 1).sum() > win.size:
                ref[y, x] = 1
            elif mask[y, x] == 1:
                ref[y, x] = 0
    return ref


@pytest.mark.parametrize("shape", [(9, 13), (1, 6), (6, 1), (2, 2), (5, 3), (4, 5)])
@pytest.mark.parametrize("radius", [1, 2, 3])
def test_majority_filter_random_masks(shape, radius):
    rng = np.random.default_rng(shape[0] * 100 + shape[1] + radius)
    masks = rng.choice(3, size=(3,) + shape, p=[0.4, 0.45, 0.15]).astype(np.uint8)
    out = np.empty_like(masks)
    mog.majority_filter_stack(masks, radius, out)
    for b in range(3):
        np.testing.assert_array_equal(out[b], _majority_reference(masks[b], radius))


def _fill_holes_reference(mask, max_area):
    """scipy.ndimage: the non-foreground regions (4-connected) not connected to the border, of at
    most ``max_area`` pixels, set to 1."""
    ndi = pytest.importorskip("scipy.ndimage")
    fg = mask == 1
    holes = ndi.binary_fill_holes(fg) & ~fg
    lab, _ = ndi.label(holes)
    keep = np.bincount(lab.ravel()) <= max_area
    keep[0] = False
    out = mask.copy()
    out[keep[lab]] = 1
    return out


def test_fill_holes():
    mask = np.zeros((9, 12), np.uint8)
    mask[1:6, 1:6] = 1
    mask[2:5, 2:5] = 0  # a 3 x 3 hole: filled
    mask[3, 3] = 2  # shadow inside it: filled too
    mask[4:9, 7:11] = 1
    mask[6:9, 8:10] = 0  # open at the bottom border: kept
    mask[0, 11] = 1
    out = mask[None].copy()
    assert mog.fill_holes_stack(out, 1024, 2) == 9
    assert (out[0, 1:6, 1:6] == 1).all() and (out[0, 6:9, 8:10] == 0).all()
    np.testing.assert_array_equal(out[0], _fill_holes_reference(mask, 1024))
    small = mask[None].copy()
    assert mog.fill_holes_stack_serial(small, 8, 1) == 0  # the hole has 9 pixels
    np.testing.assert_array_equal(small[0], mask)
    empty = np.zeros((2, 5, 5), np.uint8)
    assert mog.fill_holes_stack(empty, 10, 2) == 0 and not empty.any()


@pytest.mark.parametrize("shape", [(9, 13), (1, 6), (6, 1), (2, 2), (5, 3), (4, 5), (7, 400), (40, 33)])
@pytest.mark.parametrize("max_area", [0, 1, 3, 20, 10**6])
def test_fill_holes_random_masks(shape, max_area):
    # wide rows of random masks have far more runs than the work arrays start with (they grow)
    rng = np.random.default_rng(shape[0] * 1000 + shape[1] + max_area)
    masks = rng.choice(3, size=(5,) + shape, p=[0.35, 0.5, 0.15]).astype(np.uint8)
    masks[0] = 0  # a frame without foreground
    ref = np.stack([_fill_holes_reference(m, max_area) for m in masks])
    for fill, threads in ((mog.fill_holes_stack, 2), (mog.fill_holes_stack_serial, 1), (mog.fill_holes_stack, 3)):
        out = masks.copy()
        assert fill(out, max_area, threads) == np.count_nonzero(out != masks)
        np.testing.assert_array_equal(out, ref)
    if max_area >= 1 and shape[0] * shape[1] >= 100:  # not vacuous: these have one-pixel holes
        assert (ref != masks).any()


def test_result_does_not_depend_on_the_thread_count():
    numba = pytest.importorskip("numba")
    rng = np.random.default_rng(12)
    stack = _scene(rng, 24, 37, 29, 3)
    alphas = np.array([1.0 / min(2 * (i + 1), 20) for i in range(24)])
    results = []
    before = numba.get_num_threads()
    try:
        for n in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}):
            numba.set_num_threads(n)
            state = mog.new_state(37, 29, 4, 3)
            masks = np.zeros((24, 37, 29), np.uint8)
            mog.mog2_apply(
                stack,
                1.0,
                *state,
                masks,
                np.zeros((1, 1, 1, 3), np.uint8),  # no output: a stand-in of the library's dtype
                False,
                alphas,
                16.0,
                0.9,
                9.0,
                15.0,
                4.0,
                75.0,
                0.05,
                0.5,
                True,
            )
            results.append((masks, state))
    finally:
        numba.set_num_threads(before)
    for (m1, s1), (m2, s2) in zip(results, results[1:]):
        np.testing.assert_array_equal(m1, m2)
        for a, b in zip(s1, s2):
            np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------ scaled / noise kernel
def run_scaled(
    stack,
    k_max,
    alphas,
    *,
    offset=0.0,
    factors=None,
    var_a=None,
    var_b=None,
    detect_shadows=False,
    bg_dtype=None,
    **kw,
):
    """The kernel once per frame with a per-frame offset/factor (and modelled variances)."""
    params = dict(PARAMS, **kw)
    t, h, w, c = stack.shape
    state = mog.new_state(h, w, k_max, c)
    masks = np.zeros((t, h, w), np.uint8)
    bg_dtype = _bg_dtype(stack) if bg_dtype is None else bg_dtype
    bg = np.zeros((t, h, w, c), bg_dtype)
    rng = _bg_range(bg_dtype)
    f = np.ones(t) if factors is None else np.asarray(factors, float)
    for i in range(t):
        extra = dict(offset=offset, factors=f[i : i + 1])
        if var_a is not None:
            extra.update(var_a=np.asarray(var_a)[i : i + 1], var_b=np.asarray(var_b)[i : i + 1])
        mog.mog2_apply(
            np.ascontiguousarray(stack[i : i + 1]),
            1.0,
            *state,
            masks[i : i + 1],
            bg[i : i + 1],
            True,
            alphas[i : i + 1],
            params["var_threshold"],
            params["background_ratio"],
            params["var_threshold_gen"],
            params["var_init"],
            params["var_min"],
            params["var_max"],
            params["ct"],
            params["tau"],
            detect_shadows,
            bg_range=rng,
            **extra,
        )
    return masks, state, bg


def test_scaled_kernel_without_scaling_equals_the_mog2_kernel():
    """Factor 1 and offset 0 through the scaled kernel: the same float32 arithmetic, bit for bit."""
    rng = np.random.default_rng(5)
    stack = _scene(rng, 30, 6, 9, 1)
    alphas = np.array([1.0 / min(2 * (i + 1), 25) for i in range(30)])
    # uint16 frames and output: the specialisation the fluorescence preset compiles anyway
    masks, state, bg = run_scaled(stack.astype(np.uint16), 3, alphas, detect_shadows=True, bg_dtype=np.uint16)
    ref_masks, states = run_kernel(stack, 3, alphas, detect_shadows=True)
    np.testing.assert_array_equal(masks, ref_masks)
    for a, b in zip(pixel_major(*state), states[-1][:4]):
        np.testing.assert_array_equal(a, b)


def test_noise_model_kernel_equals_naive_reference():
    """Modelled variances: before each frame every mode's variance is var_a * mu + var_b; then the
    update is the reference one (the learned variance is overwritten at the next frame)."""
    rng = np.random.default_rng(8)
    t, h, w = 40, 4, 5
    scene = rng.uniform(20, 200, (h, w))
    factors = np.linspace(1.0, 0.6, t)  # bleaching
    offset = 10.0
    photons = rng.poisson(scene[None] * factors[:, None, None])
    stack = (offset + photons).astype(np.uint16)[..., None]
    stack[20:28, 1:3, 1:4] += 80  # a passing object
    alphas = np.array([1.0 / min(2 * (i + 1), 30) for i in range(t)])
    gain, read = 1.0, 2.0
    var_a = gain / factors
    var_b = (read**2) / factors**2
    masks, state, _ = run_scaled(
        stack, 3, alphas, offset=offset, factors=factors, var_a=var_a, var_b=var_b, bg_dtype=np.uint16
    )
    params = dict(PARAMS, var_min=1e-30, var_max=3e38)
    ref_masks = np.zeros_like(masks)
    for y in range(h):
        for x in range(w):
            modes = []
            for i in range(t):
                a32, b32 = np.float32(var_a[i]), np.float32(var_b[i])
                modes = [[wt, mu, max(a32 * max(mu[0], F32(0)) + b32, F32(1e-30))] for wt, mu, _ in modes]
                s_b = np.float32(1.0 / factors[i])
                data = [(F32(stack[i, y, x, 0]) - F32(offset)) * s_b]
                ref_masks[i, y, x], modes = reference_pixel(
                    data, modes, alphas[i], k_max=3, detect_shadows=False, **params
                )
    np.testing.assert_array_equal(masks, ref_masks)
    # (online learning at 1/30: the object is foreground when it appears, the scene background)
    assert (masks[20:22, 1:3, 1:4] == 1).all() and (masks[5:19] == 0).mean() > 0.95


def test_fast_kernel_equals_per_pixel_kernel_with_bleaching_and_noise_model():
    """C = 3 through the vectorised kernel and through the per-pixel reference form, with
    per-frame factors, an offset, modelled variances and saturated samples: bit for bit."""
    rng = np.random.default_rng(4)
    t, h, w, c = 12, 5, 9, 3
    stack = 30 + rng.poisson(rng.uniform(20, 200, (h, w, c))[None] * np.linspace(1, 0.7, t)[:, None, None, None])
    stack = stack.astype(np.float32)  # float32: the specialisations the other tests compile anyway
    stack[4:7, 3:5, 2:6] = 65535  # a saturated object
    stack[:, 1:3, 2:6] = 65535  # a saturated region
    alphas = np.array([1.0 / min(i + 1, 10) for i in range(t)])
    factors = np.linspace(1.0, 0.7, t)
    out = []
    for per_pixel in (False, True):
        state = mog.new_state(h, w, 3, c)
        masks = np.zeros((t, h, w), np.uint8)
        bg = np.zeros((t, h, w, c), np.float32)
        mog.mog2_apply(
            stack, 1.0, *state, masks, bg, True, alphas, 6.25, 0.5, 6.25, 15.0, 4.0, 75.0, 0.05, 0.5, False,
            saturation=65535.0, offset=30.0, factors=factors, var_a=1.0 / factors,
            var_b=4.0 / factors**2, per_pixel=per_pixel,
        )  # fmt: skip
        out.append((masks, bg) + state)
    for a, b in zip(*out):
        np.testing.assert_array_equal(a, b)
    assert (out[0][1][6, 1:3, 2:6] == 65535).all()  # a saturated background stays exactly saturated


def test_llvm_inline_options_are_only_those_numba_knows():
    # a Numba release without one of these target options still imports napari-gmm
    assert mog._known_options(forceinline=True, no_such_option=1) == {"forceinline": True}
    extra = {k: v for k, v in mog.JIT_LLVM_INLINE.items() if k not in mog.JIT_EXACT}
    assert extra == mog._known_options(forceinline=True, _nrt=False)
