"""Censored-observation terms of the grey EM (Lee & Scott 2012) and the normal tail functions.

A grey histogram whose extreme level is a pile of clipped pixels (saturation at the camera's full
well, 0 and 255 in an 8-bit export) holds, at that level, pixels whose true value is only known to
lie beyond a threshold ``c``. Their likelihood under component k is the tail mass
``S_k = P(y >= c)`` (upper limit) or ``P(y <= c)`` (lower), and their E-step needs the first two
moments of the component truncated to the tail:

* upper, ``a = (c - mu) / sd``, ``lam = phi(a) / (1 - Phi(a))`` (inverse Mills ratio):
  ``E[y - mu] = sd * lam``, ``E[(y - mu)**2] = var * (1 + a * lam)``,
* lower, ``b = (c - mu) / sd``, ``rho = phi(b) / Phi(b)``:
  ``E[y - mu] = -sd * rho``, ``E[(y - mu)**2] = var * (1 - b * rho)``.

Only the (at most two) censored groups go through these kernels; every other level goes through
the plain E-step of :mod:`napari_gmm._kernels.em`.
"""

import math

import numpy as np
from numba import njit

from ._config import JIT

LOG_2PI = np.log(2.0 * np.pi)
_SQRT1_2 = 0.7071067811865476
#: below this standardised value log Phi(x) uses its asymptotic series (erfc would underflow at
#: about -37.5); the first omitted term is then below 105 / 37**8 = 3e-11 relative
ASYMPTOTIC_BELOW = -37.0


@njit(**JIT)
def log_ndtr(x):
    """log Phi(x), the log of the standard normal CDF, to float64 precision over the whole line."""
    if x > 3.0:
        # Phi(x) = 1 - Q with Q = erfc(x / sqrt 2) / 2 small: log1p keeps its digits
        return math.log1p(-0.5 * math.erfc(x * _SQRT1_2))
    if x > ASYMPTOTIC_BELOW:
        return math.log(0.5 * math.erfc(-x * _SQRT1_2))
    x2 = x * x
    inv = 1.0 / x2
    series = 1.0 - inv * (1.0 - inv * (3.0 - inv * (15.0 - 105.0 * inv)))
    return -0.5 * x2 - math.log(-x) - 0.5 * LOG_2PI + math.log(series)


@njit(**JIT)
def censored_accumulate(c, n, upper, h, means, var, log_w, Nk, Sx, Sxx):
    """Add one censored group to the E-step statistics; return its ``n * log`` likelihood.

    Parameters
    ----------
    c : float
        Censoring threshold: the group's pixels have true value >= c (``upper``) or <= c.
    n : float
        Number of pixels in the group (> 0).
    upper : bool
    h : float
        Quantisation step of the histogram: the group's likelihood is ``sum_k w_k S_k / h``, in
        the same density units as the uncensored levels (h = 1 for integer data).
    means, var : (K,)
        Component means and variances (grey data: one feature).
    log_w : (K,)
        Log mixing weights (-inf for an empty component).
    Nk, Sx, Sxx : (K,), (K, 1), (K, 1, 1)
        Statistics of the plain E-step, accumulated around the current means (``ref = means``),
        updated in place.
    """
    K = means.shape[0]
    lq = np.empty(K)
    best = -np.inf
    for k in range(K):
        sd = math.sqrt(var[k])
        z = (c - means[k]) / sd
        lq[k] = log_w[k] + (log_ndtr(-z) if upper else log_ndtr(z))
        if lq[k] > best:
            best = lq[k]
    if best == -np.inf:  # no component reaches the group: cannot happen with finite parameters
        return -np.inf
    tot = 0.0
    for k in range(K):
        tot += math.exp(lq[k] - best)
    lse = best + math.log(tot)
    for k in range(K):
        r = math.exp(lq[k] - lse)
        if r == 0.0:
            continue
        sd = math.sqrt(var[k])
        z = (c - means[k]) / sd
        lphi = -0.5 * z * z - 0.5 * LOG_2PI
        if upper:
            lam = math.exp(lphi - log_ndtr(-z))  # phi(z) / (1 - Phi(z))
            m1 = sd * lam
            m2 = var[k] * (1.0 + z * lam)
        else:
            rho = math.exp(lphi - log_ndtr(z))  # phi(z) / Phi(z)
            m1 = -sd * rho
            m2 = var[k] * (1.0 - z * rho)
        rn = r * n
        Nk[k] += rn
        Sx[k, 0] += rn * m1
        Sxx[k, 0, 0] += rn * m2
    return n * (lse - math.log(h))


@njit(**JIT)
def censored_log_probs(c, upper, h, means, var, log_w, out):
    """``out[k] = log(w_k S_k / h)`` of one censored group (the group's labels and posteriors)."""
    K = means.shape[0]
    for k in range(K):
        z = (c - means[k]) / math.sqrt(var[k])
        out[k] = log_w[k] + (log_ndtr(-z) if upper else log_ndtr(z)) - math.log(h)
