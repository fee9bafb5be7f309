"""The spatial (hidden-Markov-random-field) model through segment / fit_mixture / fit_spatial."""

import warnings

import numba
import numpy as np
import pytest

import napari_gmm
from napari_gmm import InputError, fit_mixture, segment
from napari_gmm.datasets import noisy_regions
from napari_gmm.spatial import fit_spatial, neighbourhood

from ._kernels.test_mrf import gibbs_potts


@pytest.fixture(scope="module")
def noisy():
    return noisy_regions((96, 96), noise=0.58, seed=3)


def _acc(labels, truth):
    return float(np.mean(labels == truth))


def test_beta_zero_is_todays_result_bit_for_bit(noisy):
    img, truth, _ = noisy
    u8 = np.clip(img, 0, 255).astype(np.uint8)
    for im in (img, u8):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a, ma = segment(im, 3, return_model=True)
            b, mb = segment(im, 3, return_model=True, beta=0.0, spacing=(1, 2), connectivity=1, bias_field=False)
            c = fit_mixture(im, 3, beta=0)
        assert np.array_equal(a, b)
        for m in (mb, c):
            assert np.array_equal(ma.means, m.means) and np.array_equal(ma.covariances, m.covariances)
            assert np.array_equal(ma.history["log_likelihood"], m.history["log_likelihood"])


def test_auto_beta_beats_the_per_pixel_model_and_orders_labels(noisy):
    img, truth, _ = noisy
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pix = segment(img, 3)
        lab, model = segment(img, 3, beta="auto", return_model=True)
    assert lab.dtype == np.uint8 and lab.shape == img.shape
    assert _acc(pix, truth) < 0.9
    assert _acc(lab, truth) > 0.97
    assert np.all(np.diff(model.means[:, 0]) > 0)  # labels 1..K by mean
    assert 0.5 < model.params["beta"] < 5 and model.params["beta_auto"] is True
    assert model.params["spacing"] == [1.0, 1.0]
    # a fixed beta is used as given
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m2 = fit_mixture(img, 3, beta=1.5)
    assert m2.params["beta"] == 1.5 and m2.params["beta_auto"] is False


def test_known_beta_recovered_from_noisy_potts_samples():
    z = gibbs_potts((128, 128), 3, 0.8, 100, seed=8)
    rng = np.random.default_rng(1)
    img = (60.0 * (z + 1) + rng.normal(0, 20, z.shape)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = fit_spatial(img, 3, connectivity=1)  # the sampler's 4-neighbour model
    assert r.beta == pytest.approx(0.8, rel=0.25)
    assert _acc(r.labels, z + 1) > 0.9  # a Potts field at 0.8 has many one-pixel details


def test_thread_count_does_not_change_the_result(noisy):
    img, _, _ = noisy
    n0 = numba.get_num_threads()
    out = []
    try:
        for nt in sorted({1, n0}):
            numba.set_num_threads(nt)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                r = fit_spatial(img, 3, return_posteriors=True)
            out.append(r)
    finally:
        numba.set_num_threads(n0)
    for r in out[1:]:
        assert np.array_equal(r.labels, out[0].labels)
        assert np.array_equal(r.posteriors, out[0].posteriors)
        assert r.beta == out[0].beta


def test_posteriors_match_labels(noisy):
    img, _, _ = noisy
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = fit_spatial(img, 3, beta=1.0, return_posteriors=True)
    assert r.posteriors.shape == (3,) + img.shape and r.posteriors.dtype == np.float32
    np.testing.assert_allclose(r.posteriors.sum(0), 1.0, atol=1e-5)
    assert np.array_equal(np.argmax(r.posteriors, 0) + 1, r.labels)


def test_bias_field_recovered():
    """A known smooth (degree-2 polynomial) multiplicative field: estimated to 2 % and the labels
    as good as without it."""
    img, truth, _ = noisy_regions((96, 112), noise=0.33, seed=4)
    y, x = np.mgrid[-1:1:96j, -1:1:112j]
    field = np.exp(0.25 * x - 0.15 * y + 0.1 * x * y - 0.1 * x * x)
    field /= np.exp(np.log(field).mean())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r0 = fit_spatial(img * field, 3, beta=1.5)
        r = fit_spatial(img * field, 3, beta=1.5, bias_field=2)
    assert r.bias.shape == img.shape
    assert np.sqrt(np.mean((np.log(r.bias) - np.log(field)) ** 2)) < 0.02
    assert _acc(r.labels, truth) > 0.99 > _acc(r0.labels, truth)
    assert r.model.params["bias_field"] == 2 and len(r.model.params["bias_coef"]) == 5


def test_mask_pixels_neither_vote_nor_get_a_label(noisy):
    img, truth, _ = noisy
    mask = np.ones(img.shape, bool)
    mask[30:60, 30:60] = False
    a, b = img.copy(), img.copy()
    a[~mask] = 1e4
    b[~mask] = np.nan
    keep = img.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        la = segment(a, 3, beta=1.2, mask=mask)
        lb = segment(b, 3, beta=1.2, mask=mask)
    assert np.array_equal(img, keep)  # input untouched
    assert np.all(la[~mask] == 0) and np.all(lb[~mask] == 0)
    assert np.array_equal(la, lb)
    assert _acc(la[mask], truth[mask]) > 0.97


def test_nan_pixels_get_label_zero_and_inf_warns_as_per_pixel(noisy):
    img, _, _ = noisy
    a = img.copy()
    a[5, 7] = np.nan
    a[9, 9] = np.inf
    with warnings.catch_warnings(), pytest.warns(UserWarning, match="1 infinite pixel value"):
        warnings.simplefilter("ignore", napari_gmm.ConvergenceWarning)
        lab = segment(a, 3, beta=1.0, max_iter=5)
    assert lab[5, 7] == 0 and lab[9, 9] == 0 and np.sum(lab == 0) == 2
    with pytest.raises(InputError, match="no finite pixels"):
        segment(np.full((8, 8), np.nan, np.float32), 2, beta=1.0)


def test_spatial_model_predict_applies_its_prior():
    """predict / predict_proba of a spatial model run its mean-field E-step at fixed parameters:
    on the fitted image the same labels as segment (but for pixels where the mean field has two
    fixed points); spatial=False gives its per-pixel labels; a per-pixel model refuses spatial=True."""
    img, truth, _ = noisy_regions((48, 48), noise=0.58, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lab, m = segment(img, 3, beta=1.0, return_model=True)
        plain = fit_mixture(img, 3)
    pred = fit_mixture(img, 3, beta=1.0).predict(img)
    assert pred.dtype == lab.dtype and np.mean(pred == lab) > 0.995
    assert _acc(pred, truth) > _acc(m.predict(img, spatial=False), truth) + 0.1
    proba = m.predict_proba(img)
    assert proba.shape == (3,) + img.shape and proba.dtype == np.float32
    assert np.array_equal(np.argmax(proba, 0) + 1, m.predict(img))
    np.testing.assert_array_equal(plain.predict(img), plain.predict(img, spatial=False))
    with pytest.raises(InputError, match="no spatial prior"):
        plain.predict(img, spatial=True)


def test_neighbourhood_weights_follow_spacing():
    offs, wts = neighbourhood(3, 1, (3.0, 1.0, 1.0))
    assert len(offs) == 6
    assert sorted(wts.tolist()) == pytest.approx([1 / 3, 1 / 3, 1, 1, 1, 1])
    offs, wts = neighbourhood(2, 2, None)
    assert len(offs) == 8 and sorted(wts.tolist())[:4] == pytest.approx([2**-0.5] * 4)
    assert len(neighbourhood(3, 3)[0]) == 26


def test_3d_anisotropic_and_split_axis():
    vol, truth, _ = noisy_regions((16, 48, 48), noise=0.58, seed=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lab3, m3 = segment(vol, 3, beta="auto", spacing=(1.0, 1.0, 1.0), return_model=True)
        lab_sp = segment(vol, 3, beta=1.0, spacing=(4.0, 1.0, 1.0), connectivity=2)
        lab_t, models = segment(vol[:10], 3, beta=1.0, split_axis=0, return_model=True)  # 10 planes
        one = segment(vol[7], 3, beta=1.0)
    assert lab3.shape == vol.shape and _acc(lab3, truth) > 0.95
    assert _acc(lab_sp, truth) > 0.9
    assert isinstance(models, list) and len(models) == 10 and models[7].params["index"] == 7
    assert np.array_equal(lab_t[7], one)


def test_colour_diag_and_full():
    img, truth, _ = noisy_regions((80, 80), noise=0.7, seed=6)
    rng = np.random.default_rng(2)
    # a second channel, darker where the first is bright, with its own noise
    two = np.stack([img, 240.0 - 40.0 * truth + rng.normal(0, 40, img.shape)], axis=-1).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pix = segment(two, 3, channel_axis=-1, covariance_type="diag")
        for ct in ("diag", "full"):
            lab, m = segment(two, 3, channel_axis=-1, covariance_type=ct, beta="auto", return_model=True)
            assert lab.shape == img.shape and m.n_features == 2
            assert _acc(lab, truth) > max(0.97, _acc(pix, truth))
        ch_first = segment(np.moveaxis(two, -1, 0), 3, channel_axis=0, covariance_type="diag", beta=1.0)
        last = segment(two, 3, channel_axis=-1, covariance_type="diag", beta=1.0)
    assert np.array_equal(ch_first, last)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(beta=-1.0), "beta"),
        (dict(beta=float("nan")), "beta"),
        (dict(beta="strong"), "beta"),
        (dict(beta=1.0, spacing=(1.0,)), "spacing has 1 entries"),
        (dict(beta=1.0, spacing=(1.0, 0.0)), "spacing must be finite and > 0"),
        (dict(beta=1.0, spacing=(1.0, -2.0)), "spacing"),
        (dict(beta=1.0, connectivity=3), "connectivity"),
        (dict(bias_field=9), "bias_field"),
        (dict(bias_field=-1), "bias_field"),
        (dict(bias_field=0.5), "bias_field"),
    ],
)
def test_bad_input_is_explained_and_nothing_modified(noisy, kw, match):
    img = noisy[0]
    keep = img.copy()
    with pytest.raises(InputError, match=match):
        segment(img, 3, **kw)
    with pytest.raises(InputError, match=match):
        fit_mixture(img, 3, **kw)
    assert np.array_equal(img, keep)


def test_image_shapes_the_spatial_model_cannot_use():
    with pytest.raises(InputError, match="2-D or 3-D"):
        segment(np.arange(50, dtype=np.float32), 2, beta=1.0)
    with pytest.raises(InputError, match="split_axis"):
        segment(np.zeros((3, 4, 8, 8), np.float32) + np.arange(8), 2, beta=1.0)
    with pytest.raises(InputError, match="too small"):
        segment(np.arange(20, dtype=np.float32).reshape(1, 20), 2, beta=1.0)


def test_public_names():
    assert napari_gmm.spatial.fit_spatial is fit_spatial


def test_auto_k_with_the_spatial_model_and_no_intervals():
    img, truth, _ = noisy_regions((64, 64), noise=0.33, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lab, m = segment(img, "auto", beta=1.0, return_model=True)
    assert m.n_components == 3 and _acc(lab, truth) > 0.97
    with pytest.raises(InputError, match="labels='intervals' is for the per-pixel model"):
        segment(img, 3, beta=1.0, labels="intervals")


def test_dask_input_chunk_by_chunk_equals_the_whole_image():
    """A lazy image: the model fitted once, the labels chunk by chunk with a halo of the sweeps'
    reach: every pixel (chunk borders too) equals the model's labels of the whole image in memory,
    and the fit's own labels but for a few pixels."""
    da = pytest.importorskip("dask.array")
    img, _, _ = noisy_regions((128, 112), noise=0.58, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lab, m = segment(img, 3, beta=1.0, return_model=True)
        lazy = segment(da.from_array(img, chunks=(64, 56)), 3, beta=1.0)
        proba = m.predict_proba(da.from_array(img, chunks=(64, 56)))
    assert isinstance(lazy, da.Array) and lazy.numblocks == (2, 2)
    out = lazy.compute()
    assert np.array_equal(out, m.predict(img))
    assert np.mean(out == lab) > 0.99
    np.testing.assert_array_equal(proba.compute(), m.predict_proba(img))
