"""Choosing K and censoring benchmark (issue 12), every number measured in this run.

1. Synthetic images of known Gaussian classes (512 x 512): K = 1..6 classes, neighbouring class means
   1.7, 2.5 or 4 standard deviations apart, unclipped (class means >= 4 sd inside the range) or clipped
   (6 % of the darkest class at the dtype minimum, 8 % of the brightest at the maximum; K = 1: 8 % at the
   top), as uint8, uint16 and float32 (clipped to [0, 1]). Chosen K with the defaults
   (``fit_mixture(img, "auto")``: BIC, censoring="auto"), with censoring=False, and scikit-learn's
   ``GaussianMixture`` BIC over K = 1..8 on a 65,536-pixel subsample (the peer users would script;
   uint8 only, where it costs seconds, not minutes). Where ours misses the true K, the "oracle" column
   says whether BIC could have found it: BIC of the maximum-likelihood fit started from the true
   parameters, minus the best BIC of the search (> 0: the criterion itself prefers the K found at this
   image size, so no search can do better).
2. Clipped images at the true K: the largest error of the censored and of the uncensored fit against the
   true parameters (means and sd in units of the class sd, weights relative), on 2048 x 2048 images
   (sampling spread of the estimates well under 1 % where classes are apart); goal: censored within 2 %.
3. Speed on the 4096 x 4096 uint16 image of bench_segment.py (3 classes): ``fit_mixture(img, "auto")``
   and ``segment(img, "auto")`` against one fit at K = 3; goal: under 3x.
4. Real images (cameraman, coins, cell of scikit-image): chosen K per criterion and the BIC curve.
5. Spatially coherent classes (``datasets.noisy_regions``, K = 3..6 classes 1.7 sd apart, float32, two
   seeds): the per-pixel BIC's K against a mean-field-like BIC of the spatial model (Forbes & Peyrard
   2003): ``fit_spatial(img, k, beta="auto")`` for k = 2 .. K + 2, each pixel's likelihood under the
   mixture whose weights are the Potts prior given its neighbours' posteriors,
   ``log sum_k pi_ik N(x_i | k)`` with ``pi_ik ~ w_k exp(beta sum_j w_ij q_jk)``, and p + 1 parameters
   (beta). A measurement for a spatial K search (not in the library yet).

    python benchmarks/bench_selection.py                # everything (about 2-4 minutes)
    python benchmarks/bench_selection.py --quick        # uint8 rows only, no scikit-learn
    python benchmarks/bench_selection.py --plot docs/choosing_k.png   # also the criterion plot
    python benchmarks/bench_selection.py --size 2048 --parts 1   # part 1 on 2048 x 2048 (an sCMOS frame)
    python benchmarks/bench_selection.py --parts 3 --repeat 9    # the speed part alone
    python benchmarks/bench_selection.py --size 2048 --parts 1 --dtypes uint16,float32   # by dtype
    python benchmarks/bench_selection.py --parts 5 --spatial-size 512   # the spatial criterion

At --size 2048 part 1 takes about 10 minutes on the shared 2-core machine, most of it scikit-learn's BIC
scan (8 fits on a 65,536-pixel subsample, 5-30 s per uint8 image under load; 32 images): run the dtypes
separately (``--dtypes``) or without scikit-learn (``--quick``: uint8 only).

Part 2 also fits each clipped image from the true parameters, censored, and the same draws before
clipping, plainly: the error those reach is the estimates' own spread at this image size, the floor
under any fit's error. Part 3 prints process CPU time beside the wall time.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import best_time  # noqa: E402

import napari_gmm as ng  # noqa: E402
from napari_gmm import censored as cz  # noqa: E402
from napari_gmm import em  # noqa: E402
from napari_gmm import selection as sl  # noqa: E402

FRACTIONS = np.array([1.5, 1.0, 1.25, 0.75, 1.1, 0.9])
#: image size of the parameter-accuracy part (2): the maximum-likelihood estimates' own sampling spread
#: shrinks as 1 / sqrt(pixels), so that what remains is the bias clipping causes (or not)
ERROR_SHAPE = (2048, 2048)
TOPS = {"uint8": 255.0, "uint16": 65535.0, "float32": 1.0}
#: tail fractions clipped in the clipped variants: bottom class 6 %, top class 8 %
Z_LO, Z_HI = 1.555, 1.405


def synthetic(K, sep, dtype, clip, shape=(512, 512), seed=0, raw=False):
    """(image, weights, means, sd) of K Gaussian classes ``sep`` sd apart, equal sd. ``raw``: the same
    draws rounded but not clipped (integer dtypes: int32), the reference without saturation."""
    top = TOPS[dtype]
    z_lo = Z_LO if clip and K > 1 else 4.0
    z_hi = Z_HI if clip else 4.0
    if K == 1:
        sd = top / 10.0
        mu = np.array([top - z_hi * sd]) if clip else np.array([top / 2])
    else:
        sd = top / ((K - 1) * sep + z_lo + z_hi)
        mu = z_lo * sd + sep * sd * np.arange(K)
    fr = FRACTIONS[:K] / FRACTIONS[:K].sum()
    rng = np.random.default_rng(seed + 100 * K + int(10 * sep) + (7 if clip else 0))
    cls = rng.choice(K, int(np.prod(shape)), p=fr)
    y = rng.normal(mu[cls], sd)
    if raw:
        img = y.astype(np.float32) if dtype == "float32" else np.rint(y).astype(np.int32)
    elif dtype == "float32":
        img = np.clip(y, 0.0, 1.0).astype(np.float32)
    else:
        img = np.clip(np.rint(y), 0, top).astype(dtype)
    return img.reshape(shape), fr, mu, sd


#: EM budget of the oracle's fits (the likelihood of 5-6 classes 1.7 sd apart is so flat that EM creeps
#: for tens of thousands of iterations: the values are within a few nats of the optimum, not at it; a
#: uint16 histogram's 20,000 iterations took 30-40 s under load)
ORACLE_MAX_ITER, ORACLE_TOL = 5000, 1e-13


def _tight_ll(P, params):
    """Total log-likelihood of EM from ``params`` run to ORACLE_TOL (at most ORACLE_MAX_ITER)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = em.run_em(P, params, max_iter=ORACLE_MAX_ITER, tol=ORACLE_TOL)
    return r.objective * P.total_weight


def _model_params(model):
    return em.Params.from_sklearn(model.weights, model.means, model.variances[:, 0], "spherical")


def oracle_gap(img, model, fr, mu, sd):
    """Where the search chose another K than the true one: (BIC gap with the library's variance floor,
    BIC gap without it, the true K's log-likelihood gain over the K found with the floor, without it,
    the pixel count N). BIC gap = BIC of the true K's best fit minus BIC of the K found; > 0: BIC prefers
    the K found even at the true K's optimum, so no search can find the true K at this image size.

    The true K's fit is the better of EM from the true parameters and EM from the library's fit at that
    K, each run to ORACLE_TOL. "With the floor": the library's model (``reg_covar`` added to every
    variance in every M-step), against the search's own log-likelihood of the K found. "Without": a
    floor of TRUTH_REG class variances, the likelihood's own maximum, on both sides (the K found from the
    library's fit). On likelihoods this flat the floor moves EM's fixed point along the ridge, and the
    log-likelihood it costs grows with N as the true K's gain does."""
    h = ng.histogram(img)
    c = cz.detect_censoring(h)

    def problem(reg):
        if c is None:
            return em.WeightedSamples(h.values, h.counts, reg)
        return cz.CensoredSamples(h.values, h.counts, c, reg)

    K, k = len(mu), model.n_components
    N = float(h.counts.sum())
    bic = lambda ll, kk: sl.criterion_value("bic", ll, N, sl.n_parameters(kk, 1, "spherical"))  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        at_k = _model_params(ng.fit_mixture(img, K))
    floor = model.params["reg_covar"]

    def true_k(reg):  # the true K's best log-likelihood under a floor
        P = problem(reg)
        truth = em.Params.from_sklearn(fr, mu, np.full(K, sd**2 + reg), "spherical")
        return max(_tight_ll(P, truth), _tight_ll(P, at_k)), P

    ll_true, P = true_k(floor)
    ll_found = model.selection.log_likelihood[model.selection.candidates.index(k)]  # the search's own
    out = [bic(ll_true, K) - bic(ll_found, k), ll_true - ll_found]
    if floor > 1e-6 * sd**2:  # else the floor changes nothing (uint16: 1/12 of a level): the same model
        ll_true, P = true_k(TRUTH_REG * sd**2)
    ll_found = _tight_ll(P, _model_params(model))
    out += [bic(ll_true, K) - bic(ll_found, k), ll_true - ll_found]
    return out[0], out[2], out[1], out[3], N


def pixels_needed(gain_per_pixel, dp):
    """Pixels at which a log-likelihood gain of ``gain_per_pixel`` per pixel pays BIC's penalty for
    ``dp`` more parameters (N gain = dp ln(N) / 2), or None when the gain is not positive."""
    if gain_per_pixel <= 0:
        return None
    n = 1e4
    for _ in range(100):  # fixed point of N = dp ln(N) / (2 gain)
        n = dp * math.log(n) / (2 * gain_per_pixel)
    return n


def sklearn_bic_k(img, kmax=8, n=65536, seed=0):
    from sklearn.mixture import GaussianMixture

    x = img.reshape(-1).astype(np.float64)
    x = np.random.default_rng(seed).choice(x, min(n, x.size), replace=False)[:, None]
    bics = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for k in range(1, kmax + 1):
            bics.append(GaussianMixture(k, random_state=0).fit(x).bic(x))
    return int(np.argmin(bics)) + 1


def param_errors(model, fr, mu, sd):
    """Largest |d mean| / sd, |d sd| / sd and |d w| / w over the classes (model at the true K)."""
    return _errors(model.weights, model.means[:, 0], model.variances[:, 0], fr, mu, sd)


def _errors(w, m, v, fr, mu, sd):
    o = np.argsort(m)
    w, m, s = w[o], m[o], np.sqrt(v[o])
    return (float(np.max(np.abs(m - mu) / sd)), float(np.max(np.abs(s - sd) / sd)), float(np.max(np.abs(w - fr) / fr)))


#: EM budget of the fits started from the truth. The likelihood of classes 1.7 sd apart is so flat that
#: EM from the truth creeps for thousands of iterations; with 3000 iterations (the fits' budget) it
#: stays near its start and its error says nothing about the estimates' spread (3-4 % against 10-60 %
#: at convergence)
TRUTH_MAX_ITER, TRUTH_TOL = 50000, 1e-13
#: variance floor of those fits, relative to the class variance: negligible, so that they end at the
#: maximum of the likelihood. The library's floor (one quantisation step's variance, 1/12 for integer
#: data) is added in every M-step, and along a flat ridge its pull, not the data, decides where EM ends:
#: 3 classes 1.7 sd apart, 2048 x 2048 uint8 clipped, EM from the truth with the floor 1/12 drifted to
#: 95 % parameter error after 114,796 iterations, 2.2 nats below the maximum, which is 24.9 % off
#: (reached from the truth and from the range slices alike); the previous session's reference (the
#: floor 1/12, 20,000 iterations) stopped on the way, at 5.7 %
TRUTH_REG = 1e-9


def from_truth_errors(img, fr, mu, sd, censored):
    """(errors, total log-likelihood) of the maximum-likelihood fit started from the true parameters,
    run to TRUTH_TOL (at most TRUTH_MAX_ITER iterations) with the floor TRUTH_REG: the estimates' own
    spread on these draws.
    ``censored``: the clipped levels as the default detection finds them. uint16 histograms (tens of
    thousands of levels) are skipped: (None, None)."""
    if img.dtype == np.uint16 or img.dtype == np.int32 and img.max() > 4096:
        return None, None
    h = ng.histogram(img)
    reg = TRUTH_REG * sd**2
    c = cz.detect_censoring(h) if censored else None
    P = em.WeightedSamples(h.values, h.counts, reg) if c is None else cz.CensoredSamples(h.values, h.counts, c, reg)
    K = len(mu)
    start = em.Params.from_sklearn(fr, mu, np.full(K, sd**2 + reg), "spherical")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = em.run_em(P, start, max_iter=TRUTH_MAX_ITER, tol=TRUTH_TOL)
    return _errors(
        r.params.weights, r.params.means[:, 0], r.params.cov[:, 0, 0], fr, mu, sd
    ), r.objective * P.total_weight


def run_synthetic(dtypes, with_sklearn, size=512, errors=True):
    rows, errs, misses = [], [], []
    for dtype in dtypes:
        for clip in (False, True):
            for K in range(1, 7):
                for sep in (1.7, 2.5, 4.0):
                    if K == 1 and sep != 1.7:
                        continue  # one class: the separation does not exist
                    img, fr, mu, sd = synthetic(K, sep, dtype, clip, shape=(size, size))
                    t = time.perf_counter()
                    m = ng.fit_mixture(img, "auto")
                    dt = time.perf_counter() - t
                    plain = ng.fit_mixture(img, "auto", censoring=False).n_components if clip else None
                    skl = sklearn_bic_k(img) if with_sklearn and dtype == "uint8" else None
                    gap = oracle_gap(img, m, fr, mu, sd) if m.n_components != K else None
                    rows.append((dtype, clip, K, sep, m.n_components, plain, skl, gap, dt, m.censoring is not None))
                    if gap is not None:
                        misses.append(rows[-1])
                    if clip and errors:
                        big, fr, mu, sd = synthetic(K, sep, dtype, clip, shape=ERROR_SHAPE)
                        with warnings.catch_warnings():
                            warnings.simplefilter("ignore")
                            mc = ng.fit_mixture(big, K, max_iter=3000, tol=1e-10)
                            md = ng.fit_mixture(big, K)  # the defaults (tol 1e-6)
                            mp = ng.fit_mixture(big, K, max_iter=3000, tol=1e-10, censoring=False)
                        raw = synthetic(K, sep, dtype, clip, shape=ERROR_SHAPE, raw=True)[0]
                        et, ll_truth = from_truth_errors(big, fr, mu, sd, True)
                        errs.append(
                            (
                                dtype,
                                K,
                                sep,
                                param_errors(mc, fr, mu, sd),
                                param_errors(mp, fr, mu, sd),
                                mc.censoring is not None,
                                et,
                                from_truth_errors(raw, fr, mu, sd, False)[0],
                                None if ll_truth is None else mc.lower_bound * big.size - ll_truth,
                                param_errors(md, fr, mu, sd),
                            )
                        )
    return rows, errs, misses


def print_synthetic(rows, size=512):
    print(f"\n## 1. Chosen K on synthetic images ({size} x {size}; defaults: BIC, censoring='auto')\n")
    print(
        "| dtype | clipped | true K | sep (sd) | ours | censoring=False | sklearn BIC | oracle gap (floor / none) "
        "| censored | time (ms) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for dtype, clip, K, sep, k, plain, skl, gap, dt, cens in rows:
        ok = "" if k == K else " (miss)"
        print(
            f"| {dtype} | {'yes' if clip else 'no'} | {K} | {sep} | {k}{ok} | {'' if plain is None else plain} | "
            f"{'' if skl is None else skl} | {'' if gap is None else f'{gap[0]:+.1f} / {gap[1]:+.1f}'} | "
            f"{'yes' if cens else 'no'} | "
            f"{dt * 1e3:.0f} |"
        )
    n = len(rows)
    hit = sum(r[4] == r[2] for r in rows)
    print(f"\nours: true K on {hit}/{n} images", end="")
    clipped = [r for r in rows if r[1]]
    print(f"; censoring=False on the clipped ones: {sum(r[5] == r[2] for r in clipped)}/{len(clipped)}", end="")
    skl = [r for r in rows if r[6] is not None]
    if skl:
        print(f"; sklearn BIC: {sum(r[6] == r[2] for r in skl)}/{len(skl)} (uint8)", end="")
    by_sep = {s: [r for r in rows if r[3] == s or (r[2] == 1 and s == 1.7)] for s in (1.7, 2.5, 4.0)}
    print("; by separation: " + ", ".join(f"{s} sd {sum(r[4] == r[2] for r in v)}/{len(v)}" for s, v in by_sep.items()))
    missed = [r for r in rows if r[7] is not None]
    print(
        f"misses where BIC at the true K's optimum is worse than at the K found (not identifiable at this size): "
        f"{sum(r[7][0] > 0 for r in missed)} of {n - hit} with the library's variance floor, "
        f"{sum(r[7][1] > 0 for r in missed)} without it (the likelihood's own maximum)"
    )
    if missed:
        print(
            "\nNote: 'oracle gap' = BIC of the true K's best fit (EM from the truth and from the library's fit at "
            "that K, to tol 1e-13) minus BIC of the K found; > 0: the criterion itself prefers the K found at this "
            "size, whatever the search does. The true K's log-likelihood gain grows with the pixel count N and BIC's "
            "penalty only with log N, so more pixels make these classes identifiable; below, the pixel count at "
            "which the floor-free gain per pixel measured here pays BIC's penalty (a rough extrapolation from one "
            "image: a gain of a few nats is itself noisy at this size):"
        )
        for dtype, clip, K, sep, k, _plain, _skl, gap, _dt, _cens in missed:
            dp = sl.n_parameters(K, 1, "spherical") - sl.n_parameters(k, 1, "spherical")
            need = pixels_needed(gap[3] / gap[4], dp)
            where = "never (no gain)" if need is None else f"{need:.3g} pixels ({math.sqrt(need):.0f} square)"
            print(
                f"  {dtype}, {'clipped' if clip else 'unclipped'}, K = {K}, {sep} sd (found {k}): the true K gains "
                f"{gap[2]:+.1f} nats with the floor, {gap[3]:+.1f} without, BIC asks {dp * math.log(gap[4]) / 2:.1f}; "
                f"from about {where}"
            )
        print(
            "(with the library's floor, reg_covar added to every variance in every M-step, EM's fixed point moves "
            "along these flat likelihoods, and the loss grows with N as the gain does: the first column)"
        )


def print_errors(errs):
    print(
        f"\n## 2. Clipped images ({ERROR_SHAPE[0]} x {ERROR_SHAPE[1]}) at the true K: largest parameter error, "
        "censored vs uncensored (fit_mixture(img, K, max_iter=3000, tol=1e-10); and censored with the defaults)\n"
    )
    print(
        "| dtype | K | sep | detected | censored: mean/sd, sd, w | censored, default tol | uncensored: mean/sd, sd, w "
        "| censored from the truth | unclipped draws from the truth | log L: censored fit - from the truth |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for dtype, K, sep, ec, ep, det, et, er, dll, ed in errs:
        f = lambda e: "" if e is None else ", ".join(f"{100 * v:.1f} %" for v in e)  # noqa: E731
        d = "" if dll is None else f"{dll:+.1f}"
        print(
            f"| {dtype} | {K} | {sep} | {'yes' if det else 'NO'} | {f(ec)} | {f(ed)} | {f(ep)} | {f(et)} | {f(er)} "
            f"| {d} |"
        )
    print(
        f"\n(from the truth: EM started from the true parameters, to tol {TRUTH_TOL:g} or {TRUTH_MAX_ITER} iterations, "
        f"variance floor {TRUTH_REG:g} sd^2 (the maximum likelihood), "
        "uint8 and float32 only; 'unclipped draws': the same pixels before clipping, fitted plainly: the estimates' "
        "own spread at this size; last column: nats, < 0 where the default fit stopped below that optimum)"
    )
    for lo, hi in ((1.7, 1.7), (2.5, 2.5), (4.0, 4.0)):
        for kmax in (2, 6):
            sub = [e for e in errs if lo <= e[2] <= hi and e[1] <= kmax and (kmax == 2 or e[1] > 2)]
            if not sub:
                continue
            w = [max((max(e[i]) for e in sub if e[i] is not None), default=float("nan")) for i in (3, 4, 6, 7, 9)]
            print(
                f"sep {lo} sd, K {'<= 2' if kmax == 2 else '3-6'}: worst censored {100 * w[0]:.1f} % (default tol "
                f"{100 * w[4]:.1f} %), uncensored "
                f"{100 * w[1]:.1f} %, censored from the truth {100 * w[2]:.1f} %, "
                f"unclipped from the truth {100 * w[3]:.1f} %"
            )


def run_speed(repeat):
    from bench_segment import big_image

    img, _ = big_image()
    ng.fit_mixture(img[:256], 3)
    ng.fit_mixture(img[:256], "auto")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t_fit = best_time(lambda: ng.fit_mixture(img, 3), repeat)[0]
        t_auto, m = best_time(lambda: ng.fit_mixture(img, "auto"), repeat)
        t_seg = best_time(lambda: ng.segment(img, 3), repeat)[0]
        t_sega = best_time(lambda: ng.segment(img, "auto"), repeat)[0]
        c_fit = best_cpu(lambda: ng.fit_mixture(img, 3), repeat)
        c_auto = best_cpu(lambda: ng.fit_mixture(img, "auto"), repeat)
    print("\n## 3. Speed, 4096 x 4096 uint16 (bench_segment.py's image, 3 classes), best of", repeat, "\n")
    print("| call | time (ms) | ratio |")
    print("|---|---|---|")
    print(f"| fit_mixture(img, 3) | {t_fit * 1e3:.1f} | 1.00 |")
    print(
        f"| fit_mixture(img, 'auto') (chose K={m.n_components}, tried {m.selection.candidates}) | "
        f"{t_auto * 1e3:.1f} | {t_auto / t_fit:.2f} |"
    )
    print(f"| segment(img, 3) | {t_seg * 1e3:.1f} | 1.00 |")
    print(f"| segment(img, 'auto') | {t_sega * 1e3:.1f} | {t_sega / t_seg:.2f} |")
    print(
        f"\nprocess CPU time (all threads; less sensitive to other processes on a shared machine), best of {repeat}: "
        f"fit_mixture(img, 3) {c_fit * 1e3:.1f} ms, fit_mixture(img, 'auto') {c_auto * 1e3:.1f} ms, "
        f"ratio {c_auto / c_fit:.2f}"
    )


def best_cpu(f, repeat):
    best = np.inf
    for _ in range(repeat):
        t = time.process_time()
        f()
        best = min(best, time.process_time() - t)
    return best


def real_images():
    from skimage import data

    from napari_gmm.datasets import cameraman, phantom

    imgs = {
        "cameraman": cameraman(),
        "coins": data.coins(),
        "cell": data.cell(),
        "phantom (issue: 3 classes, sd 35, uint8)": phantom(
            (256, 256), n_classes=3, noise=35 / 63.75, dtype=np.uint8, seed=0
        )[0],
    }
    out = {}
    print("\n## 4. Real images: chosen K per criterion (censoring='auto')\n")
    print("| image | censored | BIC | ICL | AIC | BIC, censoring=False | BIC by K |")
    print("|---|---|---|---|---|---|---|")
    for name, img in imgs.items():
        ms = {c: ng.fit_mixture(img, "auto", criterion=c) for c in ("bic", "icl", "aic")}
        plain = ng.fit_mixture(img, "auto", censoring=False)
        s = ms["bic"].selection
        curve = ", ".join(f"{k}: {v:.0f}" for k, v in zip(s.candidates, s.values))
        cens = ms["bic"].censoring
        print(
            f"| {name} | {'no' if cens is None else cens.describe()} | {ms['bic'].n_components} | "
            f"{ms['icl'].n_components} | {ms['aic'].n_components} | {plain.n_components} | {curve} |"
        )
        out[name] = (img, ms, plain)
    return out


def plot(path, real):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["cameraman", "phantom (issue: 3 classes, sd 35, uint8)"]
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    for row, name in enumerate(names):
        img, ms, plain = real[name]
        ax = axes[row, 0]
        for crit, style in (("bic", "o-"), ("icl", "s--"), ("aic", "^:")):
            s = ms[crit].selection
            v = np.asarray(s.values)
            ax.plot(s.candidates, v - v.min(), style, label=f"{crit.upper()} (chose {s.n_components})")
            ax.plot([s.n_components], [0], "k*", ms=14)
        sp = plain.selection
        vp = np.asarray(sp.values)
        ax.plot(
            sp.candidates, vp - vp.min(), "x:", color="grey", label=f"BIC, censoring=False (chose {sp.n_components})"
        )
        ax.set_yscale("symlog", linthresh=10)
        ax.set_xlabel("K (number of components)")
        ax.set_ylabel("criterion - its minimum")
        ax.set_title(f"{name.split(' (')[0]}: criterion against K (* = chosen)")
        ax.legend(fontsize=8)
        ax = axes[row, 1]
        m = ms["bic"]
        x = np.arange(0, 256)
        counts = np.bincount(img.reshape(-1), minlength=256)[:256]
        ax.bar(x, counts / counts.sum(), width=1.0, color="0.8", label="histogram")
        dens = m.pdf(x)
        for k in range(m.n_components):
            ax.plot(x, dens[:, k], lw=1)
        ax.plot(x, dens.sum(1), "k", lw=1.5, label=f"BIC's K={m.n_components} mixture")
        c = m.censoring
        if c is not None:
            for lvl in (c.lower_level, c.upper_level):
                if lvl is not None:
                    ax.axvline(lvl, color="r", ls="--", lw=1)
            ax.plot([], [], "r--", label="censored levels")
        for cut in m.interval_cuts():
            ax.axvline(cut, color="b", lw=0.6, alpha=0.6)
        ax.plot([], [], "b-", lw=0.6, label="interval cuts")
        ax.set_ylim(0, np.sort(counts / counts.sum())[-3] * 1.3)
        ax.set_xlabel("grey level")
        ax.set_title(f"{name.split(' (')[0]}: the chosen mixture")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"\nplot written to {path}")


def run_spatial(size, seeds=(0, 1)):
    import math

    from napari_gmm import spatial
    from napari_gmm.datasets import noisy_regions

    print(
        f"\n## 5. Spatially coherent classes ({size} x {size}, noisy_regions, 1.7 sd apart, float32): per-pixel BIC "
        "against the spatial model's mean-field-like BIC and ICL (selection.spatial_log_likelihood)\n"
    )
    print("| true K | seed | per-pixel BIC | time | BIC_MF | ICL_MF | time (k = 2..K+2) | BIC_MF - min (beta) |")
    print("|---|---|---|---|---|---|---|---|")
    hits = {"pixels": 0, "bic": 0, "icl": 0, "n": 0}
    for K in (3, 4, 5, 6):
        for seed in seeds:
            img = noisy_regions((size, size), noise=1 / 1.7, n_classes=K, seed=seed)[0]
            N = img.size
            t = time.perf_counter()
            kp = ng.fit_mixture(img, "auto").n_components
            tp = time.perf_counter() - t
            var = float(img.astype(np.float64).var())
            ll1 = -0.5 * N * (math.log(2 * math.pi * var) + 1.0)
            rows = [(1, -2 * ll1 + 2 * math.log(N), -2 * ll1 + 2 * math.log(N), 0.0)]
            t = time.perf_counter()
            for k in range(2, K + 3):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    res = spatial.fit_spatial(img, k, beta="auto", return_posteriors=True)
                m = res.model
                offs, wts = spatial.neighbourhood(2, m.params["connectivity"], m.params["spacing"])
                ll, ent = sl.spatial_log_likelihood(
                    img, None, res.posteriors, m.weights, m.means[:, 0], m.variances[:, 0], res.beta, offs, wts
                )
                p = sl.n_parameters(k, 1, "spherical") + 1
                rows.append(
                    (k, sl.criterion_value("bic", ll, N, p), sl.criterion_value("icl", ll, N, p, ent), res.beta)
                )
            ts = time.perf_counter() - t
            kb = min(rows, key=lambda r: r[1])
            ki = min(rows, key=lambda r: r[2])[0]
            hits["pixels"] += kp == K
            hits["bic"] += kb[0] == K
            hits["icl"] += ki == K
            hits["n"] += 1
            curve = ", ".join(f"{k}: {v - kb[1]:.0f} ({b:.2f})" for k, v, _, b in rows)
            print(f"| {K} | {seed} | {kp} | {tp:.2f} s | {kb[0]} | {ki} | {ts:.1f} s | {curve} |", flush=True)
    n = hits["n"]
    print(f"\ntrue K: per-pixel BIC {hits['pixels']}/{n}, BIC_MF {hits['bic']}/{n}, ICL_MF {hits['icl']}/{n}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="uint8 rows only, no scikit-learn")
    ap.add_argument("--plot", default=None, help="write the criterion plot (PNG) here")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument(
        "--size", type=int, default=512, help="side of the part-1 images (512: an EMCCD frame; 2048: an sCMOS frame)"
    )
    ap.add_argument(
        "--parts", default="1234", help="which parts to run, e.g. 13 (part 2 needs part 1's loop; 5 is not a default)"
    )
    ap.add_argument("--dtypes", default=None, help="comma-separated dtypes of parts 1-2 (default: all three)")
    ap.add_argument("--spatial-size", type=int, default=256, help="side of the part-5 images")
    a = ap.parse_args()
    print(f"napari_gmm {ng.__version__}, numba threads {__import__('numba').get_num_threads()}, load {os.getloadavg()}")
    dtypes = ["uint8"] if a.quick else ["uint8", "uint16", "float32"]
    if a.dtypes:
        dtypes = a.dtypes.split(",")
    if "1" in a.parts or "2" in a.parts:
        rows, errs, misses = run_synthetic(dtypes, with_sklearn=not a.quick, size=a.size, errors="2" in a.parts)
        print_synthetic(rows, a.size)
        if errs:
            print_errors(errs)
    if "3" in a.parts:
        run_speed(a.repeat)
    if "4" in a.parts:
        real = real_images()
        if a.plot:
            plot(a.plot, real)
    if "5" in a.parts:
        run_spatial(a.spatial_size)
    print(f"\nload at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
