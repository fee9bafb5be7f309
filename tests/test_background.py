"""subtract_background / BackgroundModel: accuracy on exact ground truth, streaming, dask, input
handling."""

import doctest
import json

import numpy as np
import pytest

import napari_gmm
from napari_gmm import BackgroundModel, BackgroundResult, subtract_background
from napari_gmm._validate import InputError
from napari_gmm.datasets import moving_objects


def f_measure(fg, truth):
    pred = fg == 1
    tp = np.count_nonzero(pred & truth)
    p = tp / max(np.count_nonzero(pred), 1)
    r = tp / max(np.count_nonzero(truth), 1)
    return 2 * p * r / max(p + r, 1e-12)


@pytest.fixture(scope="module")
def grey():
    return moving_objects((80, 64, 96), n_objects=3, seed=2)


# --------------------------------------------------------------------------- accuracy
@pytest.mark.parametrize("rgb", [False, True])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_f_measure_on_synthetic_ground_truth(rgb, dtype):
    stack, truth = moving_objects((100, 64, 96), n_objects=3, rgb=rgb, dtype=dtype, seed=3)
    res = subtract_background(stack)
    assert isinstance(res, BackgroundResult)
    assert res.foreground.shape == truth.shape and res.foreground.dtype == np.uint8
    f = f_measure(res.foreground, truth)
    assert f > 0.9, f
    # the flickering region and the illumination drift are background
    flick = np.zeros(truth.shape[1:], bool)
    flick[64 // 8 : 64 // 2, 96 // 8 : 96 // 2] = True
    false_pos = (res.foreground == 1) & ~truth & flick
    assert false_pos.mean() < 0.01


def test_offline_burn_in_beats_online(grey):
    stack, truth = grey
    online = subtract_background(stack, burn_in=None)
    offline = subtract_background(stack)
    assert f_measure(offline.foreground, truth) > f_measure(online.foreground, truth) + 0.02
    # the online model calls the first frame all foreground; the offline one knows the scene
    assert (online.foreground[0] == 1).mean() > 0.5
    assert (offline.foreground[0] == 1).mean() < truth[0].mean() + 0.02
    # a burn-in over frames spread through the stack also works
    spread = subtract_background(stack, burn_in=20)
    assert f_measure(spread.foreground, truth) > 0.9


def test_uint16_scaled_data_gives_the_uint8_result(grey):
    stack, _ = grey
    ref = subtract_background(stack, burn_in=None)
    big = stack.astype(np.uint16) * 16
    res = subtract_background(big, burn_in=None, data_range=255 * 16)
    np.testing.assert_array_equal(res.foreground, ref.foreground)
    np.testing.assert_allclose(res.model.background, ref.model.background * 16, rtol=1e-5)
    assert np.abs(res.background.astype(int) - ref.background.astype(int) * 16).max() <= 8
    # mixture reported in data units
    mix_ref = ref.model.mixture_at(5, 7)
    mix = res.model.mixture_at(5, 7)
    np.testing.assert_allclose(mix["means"], mix_ref["means"] * 16, rtol=1e-5)
    np.testing.assert_allclose(mix["variances"], mix_ref["variances"] * 256, rtol=1e-5)
    np.testing.assert_allclose(mix["weights"], mix_ref["weights"])


def test_default_data_range_of_float_data():
    stack, truth = moving_objects((60, 48, 64), n_objects=2, dtype=np.float32, seed=4)
    res = subtract_background(stack)
    assert 0.5 < res.params["data_range"] <= 1.0
    assert f_measure(res.foreground, truth) > 0.9
    assert res.background.dtype == np.float32
    assert abs(float(res.background[-1].mean()) - float(np.median(stack[-1]))) < 0.1


# --------------------------------------------------------------------------- streaming / dask
def test_streaming_equals_one_call(grey):
    stack, _ = grey
    res = subtract_background(stack, burn_in=None, foreground_image="difference")
    model = BackgroundModel(stack.shape[1:])
    bg = np.empty(stack.shape[1:], np.float32)
    for t, frame in enumerate(stack):
        mask = model.apply(frame, background_out=bg)
        np.testing.assert_array_equal(mask, res.foreground[t])
        np.testing.assert_array_equal(np.rint(bg).astype(np.uint8), res.background[t])
        np.testing.assert_allclose(res.foreground_image[t], frame.astype(np.float32) - bg)
    np.testing.assert_array_equal(model.background, res.model.background)
    assert model.n_frames == res.model.n_frames == len(stack)


def test_dask_with_uneven_chunks_equals_numpy():
    da = pytest.importorskip("dask.array")
    stack, _ = moving_objects((50, 40, 56), n_objects=2, rgb=True, seed=5)
    ref = subtract_background(stack, burn_in=12)
    lazy = da.from_array(stack, chunks=((7, 30, 13), (25, 15), (56,), (3,)))
    res = subtract_background(lazy, burn_in=12)
    np.testing.assert_array_equal(res.foreground, ref.foreground)
    np.testing.assert_array_equal(res.background, ref.background)
    full = subtract_background(lazy)
    np.testing.assert_array_equal(full.foreground, subtract_background(stack).foreground)


def test_time_and_channel_axes_anywhere():
    stack, _ = moving_objects((30, 32, 40), n_objects=2, rgb=True, seed=6)
    ref = subtract_background(stack)
    moved = np.ascontiguousarray(np.moveaxis(stack, [0, 3], [2, 0]))  # (C, Y, T, X)
    res = subtract_background(moved, time_axis=2, channel_axis=0)
    np.testing.assert_array_equal(res.foreground, ref.foreground)
    np.testing.assert_array_equal(res.background, ref.background)
    assert res.params["time_axis"] == 2 and res.params["channel_axis"] == 0


# --------------------------------------------------------------------------- outputs / model
def test_background_options_and_params(grey):
    stack, truth = grey
    last = subtract_background(stack, background="last", foreground_image="masked")
    assert last.background.shape == stack.shape[1:] and last.background.dtype == np.uint8
    masked = last.foreground_image
    fgm = last.foreground == 1
    np.testing.assert_array_equal(masked[fgm], stack[fgm])
    assert (masked[~fgm] == 0).all()
    none = subtract_background(stack, background=None)
    assert none.background is None and none.foreground_image is None
    np.testing.assert_array_equal(none.foreground, last.foreground)
    # the background is the scene without the objects
    allbg = subtract_background(stack).background
    err = np.abs(allbg[-1].astype(int) - stack[-1].astype(int))
    assert err[~truth[-1]].mean() < 10 and err[truth[-1]].mean() > 40
    json.dumps(last.params)  # JSON-able for layer metadata
    assert last.params["burn_in"] == 100 and last.params["n_mixtures"] == 5


def test_mixture_at_and_invariants(grey):
    stack, _ = grey
    res = subtract_background(stack, burn_in=None)
    model = res.model
    for y, x in [(0, 0), (20, 30), (63, 95), (-1, -1)]:
        mix = model.mixture_at(y, x)
        n = len(mix["weights"])
        assert 1 <= n <= 5
        assert abs(mix["weights"].sum() - 1) < 1e-5
        assert (np.diff(mix["weights"]) <= 0).all()
        assert mix["means"].shape == (n,) and mix["variances"].shape == (n,)
        assert ((mix["variances"] >= 4 - 1e-4) & (mix["variances"] <= 75 + 1e-3)).all()
        assert mix["is_background"][0]
    with pytest.raises(IndexError, match="outside the frame"):
        model.mixture_at(64, 0)
    rgb_model = BackgroundModel((8, 9, 3))
    rgb_model.apply(np.full((8, 9, 3), 100, np.uint8))
    assert rgb_model.mixture_at(1, 1)["means"].shape == (1, 3)
    assert rgb_model.background.shape == (8, 9, 3)


def test_learning_rate_zero_freezes_the_model(grey):
    stack, _ = grey
    model = BackgroundModel(stack.shape[1:])
    for frame in stack[:20]:
        model.apply(frame)
    state = model.mixture_at(10, 10), model.background.copy()
    mask = model.apply(stack[40], learning_rate=0)
    assert mask.shape == stack.shape[1:]
    np.testing.assert_array_equal(model.background, state[1])
    np.testing.assert_array_equal(model.mixture_at(10, 10)["weights"], state[0]["weights"])
    model.apply(stack[0], learning_rate=1)  # restart, as OpenCV
    assert model.n_frames == 1


def test_progress_and_cancel(grey):
    stack, _ = grey
    calls = []
    subtract_background(stack, burn_in=10, progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (90, 90)
    assert all(b[0] > a[0] for a, b in zip(calls, calls[1:]))
    n = []
    with pytest.raises(InterruptedError, match="cancelled"):
        subtract_background(stack, should_stop=lambda: n.append(1) or len(n) > 2)


# --------------------------------------------------------------------------- bad input
def test_2d_image_and_single_frame_are_refused():
    img = np.zeros((32, 32), np.uint8)
    with pytest.raises(InputError, match=r"T >= 2.*time_axis=0"):
        subtract_background(img)
    with pytest.raises(InputError, match=r"T >= 2.*time_axis=0.*has 1 there"):
        subtract_background(img[None])
    with pytest.raises(InputError, match=r"time_axis=2"):
        subtract_background(np.zeros((32, 32, 1), np.uint8), time_axis=2)


def test_misplaced_channel_axis_and_wrong_time_axis():
    stack = np.zeros((10, 3, 32, 32), np.uint8)
    with pytest.raises(InputError, match="channel_axis=1"):
        subtract_background(stack)
    rgb = np.zeros((10, 32, 32, 3), np.uint8)
    with pytest.raises(InputError, match="looks like the colour axis"):
        subtract_background(rgb, time_axis=-1)
    with pytest.raises(InputError, match="out of range"):
        subtract_background(rgb, time_axis=4)
    with pytest.raises(InputError, match="same axis"):
        subtract_background(rgb, time_axis=3, channel_axis=-1)
    # a (Y, X, T) stack read with time_axis=0 gives frames 2 pixels wide
    with pytest.raises(InputError, match="time_axis is the axis along which frames follow"):
        subtract_background(np.zeros((64, 64, 2), np.uint8))
    with pytest.raises(InputError, match="5 dimensions"):
        subtract_background(np.zeros((2, 2, 8, 8, 3), np.uint8))


def test_nan_frames_are_refused_and_input_untouched():
    stack, _ = moving_objects((20, 32, 32), n_objects=1, dtype=np.float32, seed=7)
    stack[13, 4, 5] = np.nan
    before = stack.copy()
    with pytest.raises(InputError, match=r"frame 13 .*NaN"):
        subtract_background(stack)
    np.testing.assert_array_equal(stack, before)  # NaN == NaN with assert_array_equal
    model = BackgroundModel((32, 32))
    model.apply(stack[0])
    weights = model.mixture_at(4, 5)["weights"]
    with pytest.raises(InputError, match="NaN"):
        model.apply(stack[13])
    assert model.n_frames == 1  # state untouched
    np.testing.assert_array_equal(model.mixture_at(4, 5)["weights"], weights)


@pytest.mark.parametrize(
    "bad,match",
    [
        (dict(n_mixtures=0), r"1 <= n_mixtures <= 16"),
        (dict(n_mixtures=17), r"1 <= n_mixtures <= 16"),
        (dict(n_mixtures=2.5), "integer"),
        (dict(background_ratio=1.5), "background_ratio"),
        (dict(var_min=10, var_max=5), "var_min"),
        (dict(var_init=100), "var_init"),
        (dict(median_size=4), "odd"),
        (dict(fill_holes=-1), r"0 <= fill_holes"),
        (dict(fill_holes=2.5), "integer"),
        (dict(detect_shadows="yes"), "detect_shadows"),
        (dict(burn_in="first"), "burn_in"),
        (dict(background="some"), "background"),
        (dict(history=0), "history"),
    ],
)
def test_parameters_out_of_range(grey, bad, match):
    stack, _ = grey
    with pytest.raises(InputError, match=match):
        subtract_background(stack[:4], **bad)


def _ring_video(n_frames=160, shape=(48, 320)):
    """Grey uint8 video: a ring (outer 14 x 14, its 6 x 6 inside the scene's own grey) moving 2
    pixels per frame over a flat noisy scene, entering from the left border (so it covers a pixel
    for 7 of the 160 frames, never a background mode); its exact inside, and the
    frames where the inside is enclosed (the ring whole in the frame) and open (the ring cut by
    the border through its inside)."""
    rng = np.random.default_rng(5)
    stack = np.clip(rng.normal(100, 2, (n_frames,) + shape), 0, 255).astype(np.uint8)
    inside = np.zeros(stack.shape, bool)
    xs = 2 * np.arange(n_frames) - 8  # the ring's left edge: off the frame at first
    for t, x in enumerate(xs):
        ring = np.zeros(shape, bool)
        ring[17:31, max(0, x) : max(0, x + 14)] = True
        inside[t, 21:27, max(0, x + 4) : max(0, x + 10)] = True
        stack[t][ring & ~inside[t]] = 200
    closed = (xs >= 0) & (xs + 14 <= shape[1])
    opened = (xs + 4 <= 0) & (xs + 10 > 0)
    return stack, inside, closed, opened


def test_fill_holes_makes_enclosed_background_foreground():
    stack, inside, closed, opened = _ring_video()
    assert closed.sum() > 100 and opened.sum() == 3
    res = subtract_background(stack, background=None)  # the default: fill_holes=1024
    assert res.params["fill_holes"] == 1024
    raw = subtract_background(stack, background=None, fill_holes=0)
    fg, fg0 = res.foreground[closed] == 1, raw.foreground[closed] == 1
    assert fg[inside[closed]].all()  # the inside is foreground in every frame where it is enclosed
    assert fg0[inside[closed]].mean() < 0.2  # background (the scene's grey; the majority vote takes corners)
    np.testing.assert_array_equal(fg & ~inside[closed], fg0 & ~inside[closed])  # nothing else changes
    # while the ring enters through the border its inside is open: never filled
    np.testing.assert_array_equal(res.foreground[opened], raw.foreground[opened])
    assert (raw.foreground[opened][inside[opened]] == 0).mean() > 0.8
    # a hole larger than the limit (36 pixels, 32 once the majority vote took its corners): kept
    np.testing.assert_array_equal(subtract_background(stack, fill_holes=16).foreground, raw.foreground)
    # the online model filters the same way
    model = BackgroundModel(stack.shape[1:])
    online = np.stack([model.apply(f).copy() for f in stack])
    late = closed & (np.arange(len(stack)) >= 40)  # after the online model's own warm-up
    assert (online[late][inside[late]] == 1).all()
    assert napari_gmm.background.preset_params("fluorescence time-lapse")["fill_holes"] == 0


def test_unknown_parameter_and_bad_dtype(grey):
    stack, _ = grey
    with pytest.raises(TypeError, match="varThreshold"):
        subtract_background(stack[:4], varThreshold=10)
    with pytest.raises(InputError, match="bool"):
        subtract_background(stack[:4] > 100)
    model = BackgroundModel((64, 96))
    with pytest.raises(InputError, match="shape"):
        model.apply(stack[0, :10])


def test_public_names_and_docstring_examples():
    for name in ("subtract_background", "BackgroundModel", "BackgroundResult"):
        assert name in napari_gmm.__all__
    from napari_gmm import background

    failures, tried = doctest.testmod(background, optionflags=doctest.ELLIPSIS)
    assert tried > 5 and failures == 0


# --------------------------------------------------------------------------- block API, replay
def test_apply_block_equals_frame_by_frame(grey):
    stack, _ = grey
    a = BackgroundModel(stack.shape[1:], median_size=0)
    b = BackgroundModel(stack.shape[1:], median_size=0)
    masks = np.stack([a.apply(f) for f in stack[:30]])
    bg = np.empty((30,) + stack.shape[1:], np.uint8)
    block = np.concatenate(
        [b.apply_block(stack[i : min(30, i + 7)], background_out=bg[i : i + 7]) for i in range(0, 30, 7)]
    )
    np.testing.assert_array_equal(masks, block)
    np.testing.assert_array_equal(bg[-1], np.clip(np.rint(a.background), 0, 255).astype(np.uint8))
    np.testing.assert_array_equal(a.learning_rates(3), b.learning_rates(3))
    assert b.learning_rates(2, burn_in=True)[0] == 1.0 / 31


def test_burn_in_schedule_and_default_range():
    from napari_gmm.background import burn_in_indices, default_data_range

    assert burn_in_indices(100, 5).tolist() == [0, 25, 50, 74, 99]
    assert burn_in_indices(4, 100).tolist() == [0, 1, 2, 3]
    with pytest.raises(InputError, match="burn_in"):
        burn_in_indices(10, -1)
    f = np.zeros((5, 8, 8), np.float32)
    f[4, 0, 0] = 3.0  # only in the last frame: counted
    assert default_data_range(f) == 3.0
    assert default_data_range(f.astype(np.uint8)) == 255.0


def test_pixel_history_replays_the_fluorescence_preset():
    from napari_gmm.background import pixel_history
    from napari_gmm.datasets import fluorescence_timelapse

    stack, truth, info = fluorescence_timelapse((60, 64, 64), seed=3)
    res = subtract_background(stack, preset="fluorescence time-lapse", median_size=0)
    y, x = np.argwhere(truth.any(0))[0]
    keys = napari_gmm.background.REPLAY_KEYS
    h = pixel_history(stack[:, y, x], **{k: v for k, v in res.params.items() if k in keys})
    np.testing.assert_array_equal(h["foreground"], res.foreground[:, y, x])
    np.testing.assert_allclose(h["bg_mean"], res.background[:, y, x], atol=0.5)
    json.dumps(res.params)


# --------------------------------------------------------------------------- fluorescence
@pytest.fixture(scope="module")
def fluo():
    from napari_gmm.datasets import fluorescence_timelapse

    return {v: fluorescence_timelapse((200, 160, 160), variant=v, seed=1) for v in ("standard", "dim", "crowded")}


@pytest.mark.parametrize("variant", ["standard", "dim", "crowded"])
def test_noise_model_recovery(fluo, variant):
    from napari_gmm.background import estimate_noise

    stack, _, info = fluo[variant]
    est = estimate_noise(stack)
    assert abs(est.gain / info["gain"] - 1) < 0.10
    assert abs(est.offset - info["offset"]) < 0.10 * info["offset"]
    # the modelled noise sd at the background level and at a bright level
    true = napari_gmm.background.NoiseModel(info["gain"], info["offset"], info["read_noise"])
    for level in np.percentile(stack[0], [20, 95]):
        assert abs(np.sqrt(est.variance(level) / true.variance(level)) - 1) < 0.12
    given = estimate_noise(stack, offset=info["offset"])
    assert given.offset == info["offset"] and abs(given.gain / info["gain"] - 1) < 0.10
    assert stack.flags.writeable and stack.dtype == np.uint16


@pytest.mark.parametrize("variant", ["standard", "dim", "crowded"])
def test_bleaching_factor_recovery(fluo, variant):
    from napari_gmm.background import estimate_bleaching, estimate_noise

    stack, _, info = fluo[variant]
    f = estimate_bleaching(stack, offset=info["offset"])
    assert f[0] == 1.0
    np.testing.assert_allclose(f, info["factors"], atol=0.05)
    f = estimate_bleaching(stack, offset=estimate_noise(stack).offset)
    np.testing.assert_allclose(f, info["factors"], atol=0.06)
    f = estimate_bleaching(stack)  # no offset: slopes against a median reference
    np.testing.assert_allclose(f, info["factors"], atol=0.08)


def test_fluorescence_preset_on_the_simulator(fluo):
    stack, truth, info = fluo["standard"]
    before = stack.copy()
    res = subtract_background(stack, preset="fluorescence time-lapse")
    np.testing.assert_array_equal(stack, before)
    assert f_measure(res.foreground[5:], truth[5:]) > 0.95
    video = subtract_background(stack)  # the camera-video defaults
    assert f_measure(video.foreground[5:], truth[5:]) < f_measure(res.foreground[5:], truth[5:])
    assert res.params["preset"] == "fluorescence time-lapse" and res.noise is not None
    assert len(res.params["frame_factors"]) == len(stack)
    assert res.background.dtype == np.uint16


def _pausing_stack(pause=(30, 60), t_len=140, seed=0):
    """Poisson scene (offset 100, gain 2) with a particle moving right that pauses 30 frames
    (a pixel under the pause is covered for at most 50 of the 140 frames, 36 %)."""
    rng = np.random.default_rng(seed)
    h, w = 32, 48
    scene = 40.0 + 20.0 * (np.arange(w) / w)[None, :].repeat(h, 0)
    truth = np.zeros((t_len, h, w), bool)
    stack = np.empty((t_len, h, w), np.uint16)
    yy, xx = np.mgrid[0:h, 0:w]
    x = 4.0
    for t in range(t_len):
        if not pause[0] <= t < pause[1]:
            x += 0.6
        disc = (yy - 16) ** 2 + (xx - x) ** 2 <= 9
        photons = scene * (1 - 0.3 * t / t_len) + np.where(disc, 60.0, 0.0)
        truth[t] = disc
        stack[t] = np.rint(100 + 2 * rng.poisson(photons) + rng.normal(0, 2, (h, w)))
    return stack, truth


def test_pausing_object_stays_foreground_for_its_whole_pause():
    stack, truth = _pausing_stack()
    # the per-pixel decision (the majority post-filter would erode the small disc's rim)
    res = subtract_background(stack, preset="fluorescence time-lapse", median_size=0)
    inside = truth[30:60].all(axis=0)  # the pixels covered all the pause
    assert inside.sum() > 10
    assert (res.foreground[30:60][:, inside] == 1).all()
    # the video preset (dominant modes up to 90 % of the weight) absorbs it
    video = subtract_background(stack, burn_in="all", median_size=0)
    assert (video.foreground[30:60][:, inside] == 1).mean() < 0.5


def test_fluorescence_result_does_not_depend_on_the_thread_count():
    numba = pytest.importorskip("numba")
    stack, _ = _pausing_stack(t_len=70, pause=(20, 40))
    before = numba.get_num_threads()
    out = []
    try:
        for n in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}):
            numba.set_num_threads(n)
            r = subtract_background(stack, preset="fluorescence time-lapse")
            out.append((r.foreground, r.background))
    finally:
        numba.set_num_threads(before)
    for a, b in zip(out, out[1:]):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])


# --------------------------------------------------------------------------- bad input
def test_noise_and_preset_bad_input():
    from napari_gmm.background import NoiseModel

    stack, _ = _pausing_stack(t_len=64)
    before = stack.copy()
    with pytest.raises(InputError, match="gain must be > 0"):
        NoiseModel(gain=0.0)
    with pytest.raises(InputError, match="gain must be > 0"):
        subtract_background(stack, noise=dict(gain=-1.0, offset=100.0))
    with pytest.raises(InputError, match="offset .* above most of the data"):
        subtract_background(stack, noise=dict(gain=2.0, offset=60000.0))
    with pytest.raises(InputError, match="preset must be one of"):
        subtract_background(stack, preset="fluorescence")
    with pytest.raises(InputError, match="bleach_correction"):
        subtract_background(stack, bleach_correction=[1.0, 0.5])
    same = np.repeat(stack[:1], 10, axis=0)
    with pytest.raises(InputError, match="identical"):
        subtract_background(same, preset="fluorescence time-lapse")
    # identical frames are fine without a noise model: all background
    assert (subtract_background(same).foreground == 0).all()
    np.testing.assert_array_equal(stack, before)


def test_saturated_region_is_background_and_does_not_spoil_the_noise_model():
    from napari_gmm.background import estimate_noise

    stack, truth = _pausing_stack(t_len=64)
    stack[:, :8, :10] = 65535  # a saturated static region
    est = estimate_noise(stack, offset=100.0)
    assert abs(est.gain / 2.0 - 1) < 0.15
    res = subtract_background(stack, preset="fluorescence time-lapse")
    assert (res.foreground[:, :8, :10] == 0).all()
    assert (res.background[:, :8, :10] == 65535).all()


def test_cancel_raises_cancelled():
    stack, _ = _pausing_stack(t_len=64)
    with pytest.raises(napari_gmm.Cancelled):
        subtract_background(stack, should_stop=lambda: True)

    def progress(done, total):
        if done > 3:
            raise napari_gmm.Cancelled("stop")

    with pytest.raises(InterruptedError):
        subtract_background(stack, preset="fluorescence time-lapse", progress=progress)


@pytest.mark.parametrize("dtype", [np.uint32, np.int64])
def test_wide_integers_keep_the_exact_top_and_share_one_kernel(dtype):
    """A scene at the top of a 32/64-bit dtype comes back exactly (the float32 state cannot hold
    it); wide dtypes run through the float32 kernel (no compile of their own)."""
    top = np.iinfo(dtype).max
    stack = np.full((4, 6, 8), top, dtype)
    stack[:, :2] = top // 2
    res = subtract_background(stack, median_size=0)
    assert res.background.dtype == dtype
    assert (res.background[:, 2:] == top).all()
    from napari_gmm._kernels import mog

    assert {sig[0].dtype.name for sig in mog._apply_fast.signatures} <= {"uint8", "uint16", "float32"}


def _resident(a):
    """Whether each 4 KiB page inside ``a`` is resident (Linux ``mincore``)."""
    import ctypes

    start, n = napari_gmm.background._page_range(a)
    vec = (ctypes.c_ubyte * (n // 4096))()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mincore.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)
    assert libc.mincore(ctypes.c_void_p(start), ctypes.c_size_t(n), vec) == 0
    return np.frombuffer(vec, np.uint8) & 1


def test_outputs_are_faulted_in_one_block_ahead_of_the_kernel(monkeypatch):
    import mmap

    def fresh(shape):  # never touched memory (np.empty may reuse the heap's)
        return np.frombuffer(mmap.mmap(-1, int(np.prod(shape))), np.uint8).reshape(shape)

    bgm = napari_gmm.background
    probe = fresh((2**18,))
    bgm._populate(probe, serial=True)
    if bgm._MADVISE is None or not _resident(probe).all():
        pytest.skip("MADV_POPULATE_WRITE is not available here (Linux 5.14 or later)")
    monkeypatch.setattr(bgm, "_AHEAD", 1)
    out = fresh((64, 128, 128))  # blocks of 16 frames: 256 KiB each
    assert not _resident(out).any()
    ahead = bgm._PopulateAhead((out, None), 64, 16)
    ahead.ready(0, 16)  # the first block now, in this thread; the second on the pool
    assert _resident(out[:16]).all()
    ahead.pending[16].result()
    assert _resident(out[16:32]).all() and not _resident(out[32:]).any()
    ahead.ready(16, 32)
    ahead.ready(32, 48)
    ahead.ready(48, 64)  # the last block: nothing left to submit
    assert _resident(out).all() and not ahead.pending
    # (every subtract_background of the other tests with blocks over 256 KiB goes through it)
