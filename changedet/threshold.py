"""Change score -> threshold: a score above the threshold is change.

Every function takes a (rows, cols) score (NaN = nodata) and returns one float
``t``; the change mask is ``score > t`` (see :func:`apply_threshold`).

Methods
-------
otsu
    Maximum between-class variance (Otsu 1979).
kittler
    Minimum error thresholding, two Gaussian classes (Kittler & Illingworth 1986).
li
    Minimum cross entropy (Li & Lee 1993; Li & Tam 1998).
triangle
    Triangle method for skewed, unimodal histograms (Zack et al. 1977).
isodata
    Iterative intermeans, the one-dimensional 2-means split (Ridler & Calvard 1978).
mad
    Robust outlier rule: median + ``value`` (default 6) x 1.4826 x median absolute
    deviation, for rare changes in a large unchanged background (Rousseeuw &
    Croux 1993; Hampel 1974).
sigma
    For scores already expressed in robust standard deviations (``auto`` on
    multispectral images): the threshold is ``value`` (default 6).
gmm
    Two-component Gaussian mixture fitted by EM; the threshold is where the
    posterior of the high component reaches 0.5 (Bruzzone & Prieto 2000).
percentile
    The given percentile of the valid scores.
fixed
    The given value.
chi2
    For scores that are chi-square change probabilities (``imad``): the threshold
    is ``1 - alpha`` with significance ``alpha = value`` (default 0.01)
    (Nielsen 2007; Canty & Nielsen 2008).
"""

from __future__ import annotations

import math
from typing import Callable, Literal, get_args

import numpy as np
from skimage import filters

from . import _select
from .errors import EmptyDataError, InvalidParameterError

__all__ = ["ThresholdMethod", "THRESHOLDS", "compute_threshold", "apply_threshold"]

ThresholdMethod = Literal[
    "otsu", "kittler", "li", "triangle", "isodata", "gmm", "mad", "sigma", "percentile", "fixed", "chi2"
]

_MAX_SAMPLES = 1_000_000  # statistics of a random sample this large are exact to well below a score step
_BINS = 1024


def _valid_values(score: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
    score = np.asarray(score)
    if score.ndim == 0:
        raise InvalidParameterError(f"score must be an array, got a scalar {score!r}")
    finite = np.isfinite(score)
    if valid is not None:
        valid = np.asarray(valid, dtype=bool)
        if valid.shape != score.shape:
            raise InvalidParameterError(
                f"valid has shape {valid.shape} but score has shape {score.shape}; pass a bool mask of the score's shape"
            )
        finite &= valid
    values = score[finite].astype(np.float64, copy=False)
    if values.size == 0:
        raise EmptyDataError(
            f"the score ({score.size} pixels) has no valid (finite, unmasked) pixel; nothing to threshold"
        )
    if values.size > _MAX_SAMPLES:
        rng = np.random.default_rng(0)
        values = rng.choice(values, _MAX_SAMPLES, replace=False)
    return values


def _otsu(values: np.ndarray) -> float:
    return float(filters.threshold_otsu(values, nbins=_BINS))


def _li(values: np.ndarray) -> float:
    # Li's iteration works on positive intensities; shift so the minimum is 1.
    lo = values.min()
    return float(filters.threshold_li(values - lo + 1.0) + lo - 1.0)


def _triangle(values: np.ndarray) -> float:
    return float(filters.threshold_triangle(values, nbins=_BINS))


def _isodata(values: np.ndarray) -> float:
    return float(filters.threshold_isodata(values, nbins=_BINS))


def _mad(values: np.ndarray, k: float = 6.0) -> float:
    med = _select.median(values)
    mad = 1.4826 * _select.median(np.abs(values - med))
    if not mad > 0:
        # more than half the pixels share one value: fall back on the standard deviation
        mad = float(np.std(values))
    return med + k * mad


def _kittler(values: np.ndarray) -> float:
    """Minimum error threshold on a histogram (Kittler & Illingworth 1986)."""
    counts, edges = np.histogram(values, bins=_BINS)
    centers = 0.5 * (edges[:-1] + edges[1:])
    p = counts / counts.sum()
    w1 = np.cumsum(p)
    m1 = np.cumsum(p * centers)
    s1 = np.cumsum(p * centers**2)
    w2 = 1.0 - w1
    m2 = m1[-1] - m1
    s2 = s1[-1] - s1
    with np.errstate(divide="ignore", invalid="ignore"):
        mu1 = m1 / w1
        mu2 = m2 / w2
        var1 = s1 / w1 - mu1**2
        var2 = s2 / w2 - mu2**2
        cost = w1 * np.log(var1) + w2 * np.log(var2) - 2 * (w1 * np.log(w1) + w2 * np.log(w2))
    cost[~np.isfinite(cost) | (var1 <= 0) | (var2 <= 0)] = np.inf
    if not np.isfinite(cost).any():
        return _otsu(values)
    return float(edges[int(np.argmin(cost)) + 1])


def _gmm(values: np.ndarray, *, iterations: int = 200) -> float:
    """Two-Gaussian EM; the threshold is where the upper component's posterior is 0.5."""
    t0 = _otsu(values)
    lo, hi = values[values <= t0], values[values > t0]
    if lo.size == 0 or hi.size == 0:
        return t0
    w = np.array([lo.size, hi.size], float) / values.size
    mu = np.array([lo.mean(), hi.mean()])
    floor = max(1e-12, 1e-6 * float(values.var()))
    var = np.array([max(lo.var(), floor), max(hi.var(), floor)])
    x = values[:, None]
    prev = -np.inf
    for _ in range(iterations):
        logp = -0.5 * ((x - mu) ** 2 / var + np.log(2 * np.pi * var)) + np.log(w)
        top = logp.max(axis=1, keepdims=True)
        ll = float(np.mean(top[:, 0] + np.log(np.exp(logp - top).sum(axis=1))))
        r = np.exp(logp - top)
        r /= r.sum(axis=1, keepdims=True)
        n = r.sum(axis=0) + 1e-12
        w = n / n.sum()
        mu = (r * x).sum(axis=0) / n
        var = np.maximum((r * (x - mu) ** 2).sum(axis=0) / n, floor)
        if ll - prev < 1e-9:
            break
        prev = ll
    order = np.argsort(mu)
    w, mu, var = w[order], mu[order], var[order]
    # Solve w1 N(t; mu1, var1) = w2 N(t; mu2, var2) for t between the means.
    a = 1 / var[1] - 1 / var[0]
    b = 2 * (mu[0] / var[0] - mu[1] / var[1])
    c = mu[1] ** 2 / var[1] - mu[0] ** 2 / var[0] + np.log(var[1] / var[0]) - 2 * np.log(w[1] / w[0])
    if abs(a) < 1e-12:
        roots = np.array([-c / b]) if b != 0 else np.array([])
    else:
        disc = b * b - 4 * a * c
        roots = np.array([]) if disc < 0 else (-b + np.array([-1, 1]) * math.sqrt(disc)) / (2 * a)
    between = roots[(roots >= mu[0]) & (roots <= mu[1])]
    if between.size:
        return float(between[0])
    return t0


def _check_value(value: float | None, method: str) -> float:
    if value is None:
        raise InvalidParameterError(f"threshold method {method!r} needs value=<number>, got value=None")
    value = float(value)
    if not math.isfinite(value):
        raise InvalidParameterError(f"value must be a finite number, got {value!r}")
    return value


#: name -> function of the 1-D array of valid values (sampled to at most a million).
THRESHOLDS: dict[str, Callable[[np.ndarray], float]] = {
    "otsu": _otsu,
    "kittler": _kittler,
    "li": _li,
    "triangle": _triangle,
    "isodata": _isodata,
    "gmm": _gmm,
    "mad": _mad,
}


def compute_threshold(
    score: np.ndarray,
    *,
    method: ThresholdMethod = "otsu",
    value: float | None = None,
    percentile: float | None = None,
    valid: np.ndarray | None = None,
) -> float:
    """Threshold a change score: pixels with ``score > threshold`` are change.

    Parameters
    ----------
    score : (rows, cols) ndarray of float
        Change score, higher = more change; NaN is nodata.
    method : {"otsu", "kittler", "li", "triangle", "isodata", "gmm", "mad", "sigma", "percentile", "fixed", "chi2"}
        How to pick the threshold (see the module docstring for references).
    value : float, optional
        The threshold for ``"fixed"``; the significance level alpha for ``"chi2"``
        (default 0.01); the number of robust standard deviations for ``"mad"`` and
        ``"sigma"`` (default 6).
    percentile : float, optional
        In [0, 100], for ``"percentile"``.
    valid : (rows, cols) ndarray of bool, optional
        Pixels to use; others are ignored.

    Returns
    -------
    float
        The threshold.  On a constant score the automatic methods return that
        constant, so nothing is flagged.

    Raises
    ------
    InvalidParameterError
        Unknown method or missing/invalid ``value``/``percentile``.
    EmptyDataError
        No finite valid pixel.

    Examples
    --------
    >>> import numpy as np
    >>> score = np.r_[np.zeros(90), np.ones(10)].reshape(10, 10)
    >>> t = compute_threshold(score, method="otsu")
    >>> 0 <= t < 1
    True
    >>> compute_threshold(score, method="percentile", percentile=50)
    0.0
    >>> compute_threshold(score, method="fixed", value=0.5)
    0.5
    """
    allowed = get_args(ThresholdMethod)
    if method not in allowed:
        raise InvalidParameterError(f"threshold method must be one of {list(allowed)}, got {method!r}")
    if method == "fixed":
        return _check_value(value, method)
    if method == "sigma":
        k = 6.0 if value is None else _check_value(value, method)
        _valid_values(score, valid)  # the score must still hold valid pixels
        return k
    if method == "chi2":
        alpha = 0.01 if value is None else _check_value(value, method)
        if not 0 < alpha < 1:
            raise InvalidParameterError(f"chi2 threshold needs a significance value in (0, 1), got value={alpha}")
        return 1.0 - alpha
    if method == "percentile":
        if percentile is None or not (0 <= float(percentile) <= 100):
            raise InvalidParameterError(
                f"threshold method 'percentile' needs percentile=<number in [0, 100]>, got percentile={percentile!r}"
            )
        values = _valid_values(score, valid)
        return _select.percentiles(values, [float(percentile)])[0]
    if method == "mad":
        k = 6.0 if value is None else _check_value(value, method)
        if k < 0:
            raise InvalidParameterError(f"mad threshold needs value >= 0 (robust standard deviations), got {k}")
    values = _valid_values(score, valid)
    lo, hi = float(values.min()), float(values.max())
    if hi - lo <= 1e-5 * max(1.0, abs(hi)):
        return hi
    if method == "mad":
        return min(_mad(values, k), hi)
    return THRESHOLDS[method](values)


def apply_threshold(
    score: np.ndarray, threshold: float, *, valid: np.ndarray | None = None
) -> np.ndarray:
    """The change mask: ``score > threshold`` where valid; NaN is never change.

    Parameters
    ----------
    score : (rows, cols) ndarray of float
        The change score (NaN = nodata).
    threshold : float
        Scores strictly above it are change (see :func:`compute_threshold`).
    valid : (rows, cols) ndarray of bool, optional
        Pixels outside it are never change.

    Returns
    -------
    (rows, cols) ndarray of bool

    Examples
    --------
    >>> import numpy as np
    >>> apply_threshold(np.array([[0.0, 2.0, np.nan]]), 1.0)
    array([[False,  True, False]])
    """
    score = np.asarray(score)
    with np.errstate(invalid="ignore"):
        mask = score > threshold  # NaN compares False
    if valid is not None:
        mask &= np.asarray(valid, dtype=bool)
    return mask
