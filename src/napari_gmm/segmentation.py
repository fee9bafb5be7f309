"""The public entry points of the mixture models: :func:`fit_mixture`, :func:`segment` and
:func:`quantize`.

Each validates once and routes to the model asked for: the per-pixel Gaussian mixture on the
compressed image (:mod:`napari_gmm.mixture`, with ``n_components="auto"`` and censored clipping
from :mod:`napari_gmm.selection` and :mod:`napari_gmm.censored`) or the spatial hidden-Markov
random field (``beta``, ``bias_field``: :mod:`napari_gmm.spatial`). All of them are fitted by the
one EM driver (:mod:`napari_gmm.em`) and looked up through the one pipeline
(:mod:`napari_gmm.pipeline`), NumPy or dask alike.
"""

from __future__ import annotations

import numpy as np

from . import mixture as _mx
from . import pipeline as _pl
from . import spatial as _spatial
from ._validate import InputError, check_image, check_progress, is_dask

__all__ = ["fit_mixture", "segment", "quantize"]


def _spatial_requested(beta, bias_field):
    """Whether the spatial model is asked for (beta != 0 or a bias field); InputError for a bad beta
    or bias_field. beta=0 with bias_field=False is the per-pixel path, untouched."""
    b = _spatial.check_beta(beta)
    return b is None or b > 0 or _spatial.check_bias(bias_field) > 0


def _spatial_k(image, n_components, channel_axis, mask, bins, max_components, criterion, labels, kw):
    """K for the spatial model: ``n_components`` itself, or with ``"auto"`` the K that the
    per-pixel search chooses (on the whole image, also with ``split_axis``); InputError for
    options the spatial model does not have."""
    if labels != "map":
        raise InputError(
            "labels='intervals' is for the per-pixel model: the spatial model's labels come from "
            "its neighbourhood prior, not from intensity intervals. Use labels='map' with beta"
        )
    if isinstance(n_components, str) and n_components == "auto":
        return _mx.fit_image(
            image,
            "auto",
            channel_axis=channel_axis,
            mask=mask,
            bins=bins,
            max_components=max_components,
            criterion=criterion,
            **kw,
        ).n_components
    return n_components


def fit_mixture(
    image,
    n_components=2,
    *,
    channel_axis=None,
    covariance_type="spherical",
    init="auto",
    n_init=1,
    max_iter=100,
    tol=1e-6,
    reg_covar=None,
    mask=None,
    bins=None,
    random_state=None,
    max_components=8,
    criterion="bic",
    censoring="auto",
    beta=0.0,
    spacing=None,
    connectivity=None,
    bias_field=False,
):
    """Fit a Gaussian mixture to the intensities (or colours) of an image with EM.

    The image is first compressed to exact weighted samples (its histogram; unique colours for
    integer multichannel data), so EM costs the number of distinct values, not of pixels, and gives
    the same result as EM on every pixel.

    Parameters
    ----------
    image : array_like or dask array
        Grey image of any shape and dtype (uint8, uint16, int, float), or a multichannel image with
        ``channel_axis``. NaN and inf pixels are left out (inf with a warning).
    n_components : int or "auto", default 2
        Number of Gaussians K (1 <= K <= number of distinct values), or ``"auto"``: fit K = 1 ..
        ``max_components`` and keep the K with the smallest ``criterion`` (the record of the search is
        ``model.selection``; see :mod:`napari_gmm.selection`).
    channel_axis : int or None, default None
        None for grey data (D = 1); the axis of 2 to 8 channels otherwise (-1 for RGB, 0 for (C, Y, X)).
    covariance_type : {"spherical", "diag", "full"}, default "spherical"
        As scikit-learn. For grey data the three are the same model.
    init : {"auto", "ranges", "quantiles", "kmeans++", "random"} or MixtureModel, default "auto"
        Start. ``"auto"``: ``"ranges"`` for grey data (the classic reference start), taken to its
        optimum on the coarse histogram before ``tol`` applies (on overlapping classes EM stopped
        by a per-pixel ``tol`` ends far from it; :func:`napari_gmm.selection.polished_fit`), and
        ``"quantiles"`` for multichannel data (the best mean rank of the final log-likelihood over
        the colour images of ``benchmarks/bench_inits.py``). ``"ranges"``: K equal slices of the
        intensity range [min, max] (integer value v starts in slice
        floor((v - min) * K / (max - min + 1))), each slice's weight, mean and variance taken from
        its part of the histogram (colour: slices of the mean over channels). ``"quantiles"``: K
        slices with equal pixel counts (colour: along the colours' first principal axis, so that
        colours of equal brightness are told apart). ``"kmeans++"``: weighted greedy k-means++
        seeds (as scikit-learn), then nearest-centre groups. ``"random"``: K distinct values drawn
        with probability proportional to their pixel counts. A MixtureModel starts EM from its
        parameters (warm start, or reuse on another image).
    n_init : int, default 1
        Restarts for the random starts (kmeans++, random), keeping the best log-likelihood; the
        deterministic starts run once.
    max_iter : int, default 100
    tol : float, default 1e-6
        Convergence: EM stops when one plain EM iteration changes the mean log-likelihood per pixel
        by less than tol. Where that change shrinks slowly (overlapping components), iterations
        switch to SQUAREM acceleration, which reaches the same fixed point in a fraction of the
        iterations; so ordinary 8- and 16-bit images converge well within the default max_iter.
        0 runs exactly max_iter plain EM iterations (the reference iterations).
    reg_covar : float or None, default None
        Added to the variances (diagonal of the covariances). None: the variance of one quantisation
        step, h**2 / 12 (1/12 for integer data, bin width**2 / 12 for binned float data), which keeps a
        component from collapsing onto a single grey level.
    mask : array_like of bool, optional
        Shape of the pixels (image shape without the channel axis); only True pixels are used.
    bins : int, optional
        Float data only: bins over the finite range (grey, default 4096; per channel for large
        multichannel images, default 64).
    random_state : int, numpy Generator or None
        Seed of the random starts.
    max_components : int, default 8
        ``n_components="auto"``: the largest K tried (1 <= max_components <= distinct values). The
        search stops earlier once three consecutive K are worse than the best.
    criterion : {"bic", "icl", "aic"}, default "bic"
        ``n_components="auto"``: BIC (-2 log L + p log N; the true K for Gaussian classes), ICL (BIC
        plus twice the classification entropy: fewer, well separated classes) or AIC (no log N: more
        components on large images).
    censoring : {"auto", True, False, "lower", "upper"}, default "auto"
        Grey data: fit the extreme grey level as *censored* (its pixels are only known to lie at or
        beyond it: saturation, clipping) with each component's tail mass, so that clipped pixels
        neither need a component of their own nor bias the class they were cut from
        (:mod:`napari_gmm.censored`). ``"auto"`` censors an extreme level that is a pile of clipped
        pixels (far more than its neighbouring levels hold); True both extreme levels, ``"lower"`` or
        ``"upper"`` one, False none (every level a measured value). Without clipping ``"auto"``
        changes nothing. Colour data are never censored. What was censored: ``model.censoring``.
    beta, spacing, connectivity, bias_field
        The spatial (hidden-Markov-random-field) model, see :func:`segment`. ``beta=0`` with
        ``bias_field=False`` (the defaults) is the per-pixel fit above, unchanged.

    Returns
    -------
    MixtureModel
        Components ordered by mean (brightness), with the EM history (with ``n_components="auto"``,
        the history of the final EM run of the chosen K, which starts from the search's fit).

    Raises
    ------
    InputError (a ValueError)
        For unusable input; the message says what to do.
    FitError
        When a component collapses (non positive-definite covariance).

    Warns
    -----
    ConvergenceWarning
        When tol > 0 and max_iter was reached first.

    Notes
    -----
    E-step responsibilities are computed in log space (log-probability minus logsumexp); terms more
    than 40 nats below a sample's best component are skipped (their share is below 1e-17). The
    M-step is scikit-learn's (``nk + 10 eps``, ``reg_covar`` on the diagonal), with sufficient
    statistics accumulated around the previous means to avoid cancellation. After the last M-step a
    final E-step computes ``lower_bound``, so that fit and predict agree.

    References
    ----------
    .. [1] Dempster, Laird & Rubin (1977), Maximum likelihood from incomplete data via the EM
           algorithm. J. R. Stat. Soc. B 39(1).
    .. [2] scikit-learn, ``sklearn.mixture.GaussianMixture``.

    Examples
    --------
    >>> import numpy as np
    >>> from napari_gmm import fit_mixture
    >>> rng = np.random.default_rng(0)
    >>> img = np.concatenate([rng.normal(60, 8, 5000), rng.normal(180, 12, 5000)])
    >>> img = np.clip(np.rint(img), 0, 255).astype(np.uint8).reshape(100, 100)
    >>> model = fit_mixture(img, 2)
    >>> np.round(model.means[:, 0]).tolist()
    [60.0, 180.0]
    """
    if _spatial_requested(beta, bias_field):
        n_components = _spatial_k(
            image,
            n_components,
            channel_axis,
            mask,
            bins,
            max_components,
            criterion,
            "map",
            dict(covariance_type=covariance_type, init=init, reg_covar=reg_covar),
        )
        return _spatial.fit_spatial(
            image,
            n_components,
            beta=beta,
            spacing=spacing,
            connectivity=connectivity,
            bias_field=bias_field,
            channel_axis=channel_axis,
            covariance_type=covariance_type,
            init=init,
            n_init=n_init,
            max_iter=max_iter,
            tol=_spatial.default_tol(tol),
            reg_covar=reg_covar,
            mask=mask,
            bins=bins,
            random_state=random_state,
        ).model
    return _mx.fit_image(
        image,
        n_components,
        channel_axis=channel_axis,
        mask=mask,
        bins=bins,
        covariance_type=covariance_type,
        init=init,
        n_init=n_init,
        max_iter=max_iter,
        tol=tol,
        reg_covar=reg_covar,
        random_state=random_state,
        max_components=max_components,
        criterion=criterion,
        censoring=censoring,
    )


def segment(
    image,
    n_components=2,
    *,
    channel_axis=None,
    covariance_type="spherical",
    init="auto",
    n_init=1,
    max_iter=100,
    tol=1e-6,
    reg_covar=None,
    mask=None,
    bins=None,
    random_state=None,
    split_axis=None,
    return_model=False,
    progress=None,
    max_components=8,
    criterion="bic",
    censoring="auto",
    labels="map",
    beta=0.0,
    spacing=None,
    connectivity=None,
    bias_field=False,
):
    """Label every pixel with its most probable Gaussian component.

    Fits :func:`fit_mixture` and assigns each pixel (through a per-value look-up table) to the
    component with the highest posterior probability.

    Parameters
    ----------
    image, n_components, channel_axis, covariance_type, init, n_init, max_iter, tol, reg_covar, mask, bins, random_state
        As :func:`fit_mixture`.
    max_components, criterion, censoring
        As :func:`fit_mixture` (``n_components="auto"`` and clipped grey levels).
    labels : {"map", "intervals"}, default "map"
        ``"map"``: each pixel's most probable component. ``"intervals"`` (grey images only): K
        contiguous intensity intervals, cut at the decision points between neighbouring components
        (:meth:`MixtureModel.interval_cuts`), so that label k + 1 is always brighter than label k
        (with "map" a broad component can win in both tails).
    split_axis : int, optional
        Fit one model per index of this axis (e.g. 0 for each time point of a (T, Y, X) stack, where
        bleaching shifts intensities), instead of one model for the whole array.
    return_model : bool, default False
        Also return the model (a list of models with ``split_axis``).
    progress : callable, optional
        ``progress(done, total)``, called from the computing thread every few EM iterations (at
        least every 0.1 s) and between slices of the look-up, with ``done`` growing to ``total``:
        the EM iterations of all fits (a converged fit counts as its ``max_iter``) plus a tenth of
        that for each fit's look-up. An exception it raises stops the computation there
        (:class:`napari_gmm.Cancelled` is the documented way; the napari widget's Cancel does it).
    beta : float or "auto", default 0.0
        Strength of a Potts (hidden-Markov-random-field) prior that makes neighbouring pixels
        prefer the same label: noise-robust segmentation (see :mod:`napari_gmm.spatial`). 0 keeps
        the per-pixel result exactly; a number fixes it (about 1-3 for 4-/6-neighbours); "auto"
        estimates it from the image by pseudo-likelihood (the value used is in
        ``model.params["beta"]``). EM then runs on the pixels (one mean-field sweep per
        iteration) of a 2-D or 3-D image; use ``split_axis`` for time series. Its objective is
        the mean-field free energy per pixel, and the default ``tol`` stands for 1e-4 there (1e-6
        with a bias field).
    spacing : sequence of float, optional
        Pixel size along each spatial axis (e.g. a napari layer's ``scale``): neighbours are
        weighted by inverse physical distance, so anisotropic z-stacks are smoothed correctly.
    connectivity : int or None, default None
        1: face neighbours (4 in 2-D, 6 in 3-D); 2: also the diagonal neighbours within a plane
        (8 in 2-D, as ANTs Atropos's 3 x 3 neighbourhood; 18 in 3-D); 3 in 3-D: all 26. None: 2 for
        2-D images, 1 for 3-D. Face neighbours alone measure a boundary's length in city-block
        distance, so the prior cuts diagonal and curved boundaries: in 2-D all 8 neighbours got more
        pixels right on every benchmark phantom (see the README); in 3-D 18 neighbours were only
        0.06 points better for 1.65x the time.
    bias_field : bool or int, default False
        Also estimate a smooth multiplicative intensity field (uneven illumination, vignetting)
        inside EM: True for a polynomial of degree 3 in the log domain, or the degree (1..8).
        The field is in ``model.params["bias_coef"]``; see :func:`napari_gmm.spatial.fit_spatial`
        for the field on the pixel grid. With the spatial model, ``n_components="auto"`` takes the
        K the per-pixel search chooses (on the whole image); it does not censor clipped levels.

    Returns
    -------
    labels : ndarray (or dask array for dask input)
        Image shape without the channel axis; uint8 for K < 256, else uint16. Labels 1..K ordered by
        component mean (1 = darkest; colour: by mean brightness), 0 where masked, NaN or inf.
    model : MixtureModel or list of MixtureModel
        Only with ``return_model=True``.

    Examples
    --------
    >>> import numpy as np
    >>> from napari_gmm import segment
    >>> img = np.array([[10, 12, 11], [200, 202, 199]], dtype=np.uint8)
    >>> segment(img, 2)
    array([[1, 1, 1],
           [2, 2, 2]], dtype=uint8)
    """
    check_progress(progress)
    if _spatial_requested(beta, bias_field):
        n_components = _spatial_k(
            image,
            n_components,
            channel_axis,
            mask,
            bins,
            max_components,
            criterion,
            labels,
            dict(covariance_type=covariance_type, init=init, reg_covar=reg_covar),
        )
        return _spatial.segment_spatial(
            image,
            n_components,
            beta=beta,
            spacing=spacing,
            connectivity=connectivity,
            bias_field=bias_field,
            channel_axis=channel_axis,
            covariance_type=covariance_type,
            init=init,
            n_init=n_init,
            max_iter=max_iter,
            tol=_spatial.default_tol(tol),
            reg_covar=reg_covar,
            mask=mask,
            bins=bins,
            random_state=random_state,
            split_axis=split_axis,
            return_model=return_model,
            progress=progress,
        )
    image = check_image(image, channel_axis=channel_axis)
    fit_kw = dict(
        covariance_type=covariance_type,
        init=init,
        n_init=n_init,
        max_iter=max_iter,
        tol=tol,
        reg_covar=reg_covar,
        random_state=random_state,
        max_components=max_components,
        criterion=criterion,
        censoring=censoring,
        labels=labels,
    )
    _mx._check_fit_kw(n_components, fit_kw, progress)
    _mx._check_labels(labels, channel_axis)
    if split_axis is None:
        labels, model = _mx._segment_one(
            image, n_components, channel_axis, mask, bins, fit_kw, _pl.Progress(progress, _mx._units(fit_kw))
        )
        return (labels, model) if return_model else labels
    axes = _pl.split_axes(image, channel_axis, split_axis)
    phases = _pl.Progress(progress, [sum(_mx._units(fit_kw))] * axes.length)

    def one(sub, m, i):
        lab, model = _mx._segment_one(
            sub, n_components, axes.channel_slice, m, bins, fit_kw, _pl.Progress(phases.phase(i), _mx._units(fit_kw))
        )
        model.params.update(split_axis=axes.axis, index=i)
        return lab, model

    if mask is not None and not is_dask(mask):
        mask = np.asarray(mask)
    labels, models = _pl.split(image, mask, axes, one)
    return (labels, _mx.SplitModels(models, axes.axis, channel_axis)) if return_model else labels


def quantize(
    image,
    n_components=32,
    *,
    channel_axis=-1,
    covariance_type="spherical",
    init="auto",
    n_init=1,
    max_iter=100,
    tol=1e-6,
    reg_covar=None,
    mask=None,
    bins=None,
    random_state=0,
    return_model=False,
    max_components=8,
    criterion="bic",
    censoring="auto",
    labels="map",
):
    """Replace every pixel by the mean colour (or grey level) of its most probable component.

    The classic "image with only K colours": :func:`segment` followed by a look-up of the component
    means, rounded and clipped back into the input dtype. Masked, NaN or inf pixels keep their value.

    Parameters
    ----------
    image : array_like
        Colour image (default ``channel_axis=-1``) or, with ``channel_axis=None``, a grey image.
    n_components : int, default 32
    init : default "auto"
        As :func:`fit_mixture` (for colour, the quantiles start: deterministic and the best measured).
    random_state : default 0
        Fixed, so that the same call gives the same image with a random start.
    labels : {"map", "intervals"}, default "map"
        As :func:`segment` (``"intervals"``: grey images only).
    Other parameters as :func:`fit_mixture` (``n_components="auto"`` searches up to
    ``max_components``).

    Returns
    -------
    quantised : ndarray
        Same shape and dtype as ``image``.
    model : MixtureModel
        Only with ``return_model=True``.

    Examples
    --------
    >>> import numpy as np
    >>> from napari_gmm import quantize
    >>> rgb = np.zeros((4, 4, 3), np.uint8); rgb[:2] = (200, 10, 10); rgb[2:] = (10, 10, 200)
    >>> rgb[0, 0] = (210, 20, 20)
    >>> q = quantize(rgb, 2)
    >>> q[0, 0].tolist(), q.dtype
    ([201, 11, 11], dtype('uint8'))
    """
    labels, model = segment(
        image,
        n_components,
        channel_axis=channel_axis,
        covariance_type=covariance_type,
        init=init,
        n_init=n_init,
        max_iter=max_iter,
        tol=tol,
        reg_covar=reg_covar,
        mask=mask,
        bins=bins,
        random_state=random_state,
        return_model=True,
        max_components=max_components,
        criterion=criterion,
        censoring=censoring,
        labels=labels,
    )
    out = _pl.paint_image(
        image if is_dask(image) else np.asarray(image), labels, model.means, channel_axis=channel_axis
    )
    return (out, model) if return_model else out
