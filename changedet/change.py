"""Change scores: (bands, rows, cols) before/after arrays -> (rows, cols) score.

Every method is a function ``f(before, after, *, band_names, pixel_size_m, valid)``
returning a :class:`ChangeScore`; :data:`METHODS` maps names to them and
:func:`change_score` validates inputs and dispatches.  Higher score = more change;
NaN = nodata.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from . import _kernels
from . import indices as _idx
from .errors import ChangedetError, EmptyDataError, InvalidParameterError

__all__ = [
    "ChangeScore", "METHODS", "change_score", "fit_method", "FittedScore", "StatsTape", "WINDOWABLE", "auto", "diff", "log_ratio", "cva", "pca_kmeans", "imad", "ssim",
]


@dataclass(frozen=True, eq=False)
class ChangeScore:
    """A change score and what produced it.

    Attributes
    ----------
    score : (rows, cols) ndarray of float32
        Higher = more change; NaN where nodata.
    method : str
        Method name (a key of :data:`METHODS`).
    threshold_method : str
        The threshold that suits this score (``"otsu"``, ``"chi2"``, ...).
    details : dict
        JSON-serialisable facts for ``summary.json``.
    layers : dict of str -> (rows, cols) ndarray
        Extra per-pixel layers (index deltas ``d_ndvi``, ``d_ndbi``, ``d_brightness``,
        ``d_ndwi``; CVA direction) for from-to classes.
    """

    score: np.ndarray
    method: str
    threshold_method: str = "otsu"
    details: dict[str, Any] = field(default_factory=dict)
    layers: dict[str, np.ndarray] = field(default_factory=dict)


# --- shared helpers ------------------------------------------------------------

class StatsTape:
    """Records the global statistics a method computes, then replays them.

    Methods compute scene-wide statistics (robust spreads, IR-MAD gains, MAD of
    the magnitude, ...) through :func:`_global`.  Recorded once on a sample of the
    scene and replayed on each window, they make a windowed run give the same
    score as the whole scene in memory (see :func:`fit_method`).
    """

    def __init__(self, mode: str):
        self.mode = mode
        self.values: list[Any] = []
        self.pos = 0
        #: the caller's ``valid`` holds only pixels finite in both images (no second check)
        self.valid_is_finite = False


_TAPE: contextvars.ContextVar[StatsTape | None] = contextvars.ContextVar("changedet_stats_tape", default=None)


def _global(compute: Callable[[], Any]) -> Any:
    """A scene-wide statistic: computed, recorded, or replayed by the active :class:`StatsTape`."""
    tape = _TAPE.get()
    if tape is None:
        return compute()
    if tape.mode == "record":
        value = compute()
        tape.values.append(value)
        return value
    if tape.pos >= len(tape.values):
        raise RuntimeError("the method asked for more global statistics than were recorded")  # pragma: no cover
    value = tape.values[tape.pos]
    tape.pos += 1
    return value


#: Methods whose every scene-wide statistic goes through :func:`_global`, so that a
#: windowed run reproduces the whole-scene score exactly (given the halo).
WINDOWABLE = frozenset({"auto", "diff", "cva", "log-ratio", "ssim"} | {f"index:{n}" for n in ("ndvi", "ndbi", "bsi", "ndwi", "brightness")})


@dataclass(frozen=True, eq=False)
class FittedScore:
    """A method with its scene-wide statistics fixed on a sample; :meth:`apply` scores a window."""

    method: str
    band_names: tuple[str, ...]
    pixel_size_m: float | None
    values: tuple[Any, ...]
    halo_px: int
    threshold_method: str
    #: the method's result on the sample it was fitted on (what ``apply`` would give there)
    sample_result: ChangeScore | None = field(default=None, repr=False)

    def apply(self, before: np.ndarray, after: np.ndarray, valid: np.ndarray) -> ChangeScore:
        """Score a window; ``valid`` must hold only pixels finite in every band of both
        images (the windowed path's validity mask is), as it is not checked again."""
        tape = StatsTape("replay")
        tape.values = list(self.values)
        tape.valid_is_finite = True
        token = _TAPE.set(tape)
        try:
            return METHODS[self.method](before, after, band_names=self.band_names,
                                        pixel_size_m=self.pixel_size_m, valid=valid)
        finally:
            _TAPE.reset(token)


def fit_method(
    method: str,
    before: np.ndarray,
    after: np.ndarray,
    *,
    band_names: Sequence[str],
    pixel_size_m: float | None = None,
    valid: np.ndarray | None = None,
) -> FittedScore | None:
    """Fix a method's scene-wide statistics on a sample (None for methods that cannot).

    ``fit_method(m, b, a, ...).apply(b, a, valid)`` equals ``change_score(b, a, method=m, ...)``;
    applied to windows with a halo of ``halo_px`` it gives the same score as on the whole scene.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> b = rng.uniform(500, 1500, size=(4, 40, 40)); a = b * 1.1; a[:, 5:9, 5:9] += 900
    >>> names = ["B02", "B03", "B04", "B08"]
    >>> f = fit_method("auto", b, a, band_names=names, pixel_size_m=10)
    >>> whole = change_score(b, a, band_names=names, pixel_size_m=10).score
    >>> part = f.apply(b[:, :20], a[:, :20], np.ones((20, 40), bool)).score
    >>> bool(np.allclose(part[:12], whole[:12], equal_nan=True))
    True
    """
    if method not in METHODS:
        raise InvalidParameterError(f"method must be one of {sorted(METHODS)}, got {method!r}")
    if method not in WINDOWABLE:
        return None
    tape = StatsTape("record")
    token = _TAPE.set(tape)
    try:
        res = METHODS[method](before, after, band_names=band_names, pixel_size_m=pixel_size_m, valid=valid)
    finally:
        _TAPE.reset(token)
    px = pixel_size_m or 10.0
    # neighbourhood reach of the methods: 30 m means, 5 px rims, SSIM windows (sigma 1.5 px)
    halo = max(8, int(np.ceil(30.0 / px)) + 6)
    return FittedScore(method, tuple(band_names), pixel_size_m, tuple(tape.values), halo, res.threshold_method,
                       sample_result=res)


def _prepare(before, after, band_names, valid):
    before = np.asarray(before)
    after = np.asarray(after)
    if before.ndim == 2:
        before = before[np.newaxis]
    if after.ndim == 2:
        after = after[np.newaxis]
    if before.ndim != 3 or after.ndim != 3:
        raise InvalidParameterError(
            f"before and after must be (bands, rows, cols) arrays, got shapes {before.shape} and {after.shape}"
        )
    if before.shape != after.shape:
        raise InvalidParameterError(
            f"before {before.shape} and after {after.shape} differ in shape; put both on one grid first "
            f"(changedet.align.align_to(after, like=before)) and select the same bands"
        )
    names = tuple(str(n) for n in band_names) if band_names is not None else tuple(
        f"band{i + 1}" for i in range(before.shape[0])
    )
    if len(names) != before.shape[0]:
        raise InvalidParameterError(
            f"band_names has {len(names)} names {list(names)} but the images have {before.shape[0]} bands"
        )
    before = before.astype(np.float32, copy=False)
    after = after.astype(np.float32, copy=False)
    if valid is not None:
        valid = np.asarray(valid, dtype=bool)
        if valid.shape != before.shape[1:]:
            raise InvalidParameterError(
                f"valid has shape {valid.shape}, expected {before.shape[1:]} (rows, cols) of the images"
            )
    tape = _TAPE.get()
    if valid is not None and tape is not None and tape.valid_is_finite:
        ok = valid.copy()  # checked by the caller (FittedScore.apply)
    else:
        ok = _kernels.all_finite(before, after)
        if valid is not None:
            ok &= valid
    if not ok.any():
        raise EmptyDataError(
            f"no pixel is valid in both images ({before.shape[1]}x{before.shape[2]} pixels): "
            f"every pixel is NaN or masked (clouds, nodata, outside the overlap)"
        )
    return before, after, names, ok


def _robust_stats(x: np.ndarray, ok: np.ndarray) -> tuple[float, float]:
    """Median and robust spread (IQR/1.349, falling back to std) of x over ok."""
    return _global(lambda: _robust_stats_now(x, ok))


def _robust_stats_now(x: np.ndarray, ok: np.ndarray) -> tuple[float, float]:
    v = x[ok]
    if v.size > 500_000:
        v = v[:: v.size // 500_000 + 1]
    med = float(np.median(v))
    q1, q3 = np.percentile(v, [25, 75])
    spread = float(q3 - q1) / 1.349
    if not spread > 1e-12:
        spread = float(np.std(v))
    if not spread > 1e-12:
        spread = 1.0
    return med, spread


def _standardize(image: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Each band to zero median and unit robust spread over ok pixels (per date)."""
    out = np.empty_like(image, dtype=np.float32)
    for b in range(image.shape[0]):
        med, spread = _robust_stats(image[b], ok)
        out[b] = (image[b] - med) / spread
    return out


def _finish(score: np.ndarray, ok: np.ndarray) -> np.ndarray:
    score = np.asarray(score, dtype=np.float32)
    return np.where(ok & np.isfinite(score), score, np.float32(np.nan)).astype(np.float32)


# --- methods -------------------------------------------------------------------

def diff(before, after, *, band_names=None, pixel_size_m=None, valid=None) -> ChangeScore:
    """Image differencing: mean absolute band difference (Singh 1989).

    Each band's difference is divided by the robust spread of the before band so
    bands of different ranges weigh alike.

    References
    ----------
    Singh, A. (1989). Digital change detection techniques using remotely-sensed
    data. International Journal of Remote Sensing, 10(6), 989-1003.

    Examples
    --------
    >>> import numpy as np
    >>> before = np.random.default_rng(0).normal(size=(2, 8, 8))
    >>> after = before.copy(); after[:, 2, 3] += 10
    >>> s = diff(before, after)
    >>> np.unravel_index(np.nanargmax(s.score), s.score.shape)
    (np.int64(2), np.int64(3))
    """
    before, after, names, ok = _prepare(before, after, band_names, valid)
    acc = np.zeros(before.shape[1:], np.float32)
    for b in range(before.shape[0]):
        _, spread = _robust_stats(before[b], ok)
        acc += np.abs(after[b] - before[b]) / spread
    return ChangeScore(_finish(acc / before.shape[0], ok), "diff", "otsu", {"bands": list(names)},
                       _index_layers(before, after, names, ok))


def cva(before, after, *, band_names=None, pixel_size_m=None, valid=None) -> ChangeScore:
    """Change vector analysis: magnitude of the standardized spectral change vector.

    The after image is put on the before image's radiometry with IR-MAD
    invariant pixels (Canty & Nielsen 2008; per-date standardization if that
    fails), which removes a linear gain/offset between the dates even when much
    of the scene changed; bands are divided by the before band's robust spread;
    the score is the Euclidean norm of the difference vector and
    ``layers["cva_direction"]`` holds the angle (radians) of the change vector in
    the plane of the first two bands.

    References
    ----------
    Malila, W. A. (1980). Change vector analysis: an approach for detecting forest
    changes with Landsat. LARS Symposia, 385.
    Bovolo, F., & Bruzzone, L. (2007). A theoretical framework for unsupervised
    change detection based on change vector analysis in the polar domain. IEEE TGRS, 45(1), 218-236.

    Examples
    --------
    >>> import numpy as np
    >>> before = np.random.default_rng(0).normal(size=(3, 8, 8))
    >>> after = 2 * before + 1; after[:, 5, 5] += 20
    >>> s = cva(before, after)
    >>> np.unravel_index(np.nanargmax(s.score), s.score.shape)
    (np.int64(5), np.int64(5))
    """
    before, after, names, ok = _prepare(before, after, band_names, valid)
    zb, za, normalized = _normalized_pair(before, after, ok, list(range(before.shape[0])))
    d = za - zb
    mag = np.sqrt(np.sum(d * d, axis=0))
    layers = _index_layers(before, after, names, ok)
    if d.shape[0] >= 2:
        layers["cva_direction"] = _finish(np.arctan2(d[1], d[0]), ok)
    return ChangeScore(_finish(mag, ok), "cva", "otsu",
                       {"bands": list(names),
                        "normalization": "irmad invariant pixels" if normalized else "per-date standardization"},
                       layers)


def log_ratio(before, after, *, band_names=None, pixel_size_m=None, valid=None) -> ChangeScore:
    """Log-ratio: mean absolute log of the after/before ratio over bands.

    The ratio cancels multiplicative effects (illumination, speckle); bands with
    zero or negative values are shifted to be positive first.

    References
    ----------
    Dekker, R. J. (1998). Speckle filtering in satellite SAR change detection
    imagery. International Journal of Remote Sensing, 19(6), 1133-1146.
    Bazi, Y., Bruzzone, L., & Melgani, F. (2005). An unsupervised approach based on
    the generalized Gaussian model to automatic change detection in multitemporal
    SAR images. IEEE TGRS, 43(4), 874-887.

    Examples
    --------
    >>> import numpy as np
    >>> before = np.full((2, 6, 6), 100.0); after = before.copy(); after[:, 3, 3] = 400
    >>> s = log_ratio(before, after)
    >>> round(float(s.score[3, 3]), 3), float(s.score[0, 0])
    (1.379, 0.0)
    """
    before, after, names, ok = _prepare(before, after, band_names, valid)
    acc = np.zeros(before.shape[1:], np.float64)
    shifts = []
    for b in range(before.shape[0]):
        lo, scale = _global(lambda: (min(float(before[b][ok].min()), float(after[b][ok].min())),
                                     max(float(np.percentile(np.abs(before[b][ok]), 50)), 1e-6)))
        # a shift of 1 % of the median keeps dark pixels from exploding the ratio
        shift = (0.0 if lo > 0 else -lo) + 0.01 * scale
        shifts.append(shift)
        with np.errstate(invalid="ignore", divide="ignore"):
            acc += np.abs(np.log((after[b] + shift) / (before[b] + shift)))
    return ChangeScore(_finish(acc / before.shape[0], ok), "log-ratio", "otsu",
                       {"bands": list(names), "offsets": [round(v, 6) for v in shifts]},
                       _index_layers(before, after, names, ok))


def _index_layers(before, after, names, ok) -> dict[str, np.ndarray]:
    """Signed per-pixel index changes (after - before) that the bands allow.

    Skipped (empty) while a :class:`StatsTape` replays: windowed runs use only the score.
    """
    tape = _TAPE.get()
    if tape is not None and tape.mode == "replay":
        return {}
    layers = {}
    for name in ("ndvi", "ndbi", "bsi", "ndwi", "brightness"):
        if name in _idx.available_indices(names):
            with np.errstate(invalid="ignore", divide="ignore"):
                d = _idx.compute_index(after, names, name) - _idx.compute_index(before, names, name)
            layers[f"d_{name}"] = _finish(d, ok)
    return layers


def _index_method(name: str) -> Callable[..., ChangeScore]:
    def method(before, after, *, band_names=None, pixel_size_m=None, valid=None) -> ChangeScore:
        before, after, names, ok = _prepare(before, after, band_names, valid)
        _idx.find_bands(names, _idx.INDEX_BANDS[name], method=f"index:{name}")
        with np.errstate(invalid="ignore", divide="ignore"):
            d = _idx.compute_index(after, names, name) - _idx.compute_index(before, names, name)
        d = _finish(d, ok)
        if not np.isfinite(d).any():
            raise EmptyDataError(
                f"index {name} is undefined (zero denominator or NaN) at every valid pixel of one of the dates; "
                f"check the bands {list(_idx.INDEX_BANDS[name])} hold reflectances, or pick another method"
            )
        layers = _index_layers(before, after, names, ok)
        layers[f"d_{name}"] = d
        return ChangeScore(_finish(np.abs(d), ok), f"index:{name}", "otsu",
                           {"index": name, "bands": list(_idx.INDEX_BANDS[name])}, layers)

    method.__name__ = f"index_{name}"
    method.__doc__ = f"""Absolute change of {name.upper() if name != 'brightness' else 'brightness'} (see :mod:`changedet.indices`).

    ``layers["d_{name}"]`` holds the signed change (after - before).

    References
    ----------
    Index differencing: Lyon, J. G., Yuan, D., Lunetta, R. S., & Elvidge, C. D. (1998).
    A change detection experiment using vegetation indices. Photogrammetric
    Engineering and Remote Sensing, 64(2), 143-150.
    """
    return method


def _difference_image(before, after, ok) -> np.ndarray:
    """Change magnitude per pixel on normalized bands (the grey-level difference image of Celik)."""
    zb, za, _ = _normalized_pair(before, after, ok, list(range(before.shape[0])))
    d = za - zb
    return np.sqrt(np.sum(d * d, axis=0))


def pca_kmeans(before, after, *, band_names=None, pixel_size_m=None, valid=None, block: int = 4) -> ChangeScore:
    """PCA of h x h difference-image blocks, then 2-means clustering (Celik 2009).

    The difference image (standardized change magnitude over the bands) is cut
    into non-overlapping ``block`` x ``block`` blocks; PCA of those blocks gives an
    eigenvector space; every pixel's neighbourhood is projected onto the
    eigenvectors explaining 90 % of the variance and the feature vectors are split
    by k-means (k = 2).  The score is the pixel's position between the two cluster
    centres along the line joining them (0 at the no-change centre, 1 at the
    change centre), so the k-means decision is ``score > 0.5``
    (``details["kmeans_threshold"]``); the suggested threshold is ``isodata``, the
    one-dimensional 2-means split.

    References
    ----------
    Celik, T. (2009). Unsupervised change detection in satellite images using
    principal component analysis and k-means clustering. IEEE Geoscience and
    Remote Sensing Letters, 6(4), 772-776.

    Examples
    --------
    >>> import numpy as np
    >>> before = np.random.default_rng(0).normal(size=(3, 40, 40))
    >>> after = before + 0.1; after[:, 10:20, 10:20] += 5
    >>> s = pca_kmeans(before, after)
    >>> bool(s.score[15, 15] > 0.5), bool(s.score[30, 30] < 0.5)
    (True, True)
    """
    from numpy.lib.stride_tricks import sliding_window_view
    from scipy.cluster.vq import kmeans2

    before, after, names, ok = _prepare(before, after, band_names, valid)
    if not isinstance(block, int) or block < 2:
        raise InvalidParameterError(f"block must be an integer >= 2, got {block!r}")
    diff_img = np.where(ok, _difference_image(before, after, ok), 0.0).astype(np.float64)
    rows, cols = diff_img.shape
    if rows < block or cols < block:
        raise InvalidParameterError(f"pca-kmeans needs images of at least {block}x{block} pixels, got {rows}x{cols}")
    # PCA basis from non-overlapping blocks
    r, c = rows // block * block, cols // block * block
    blocks = diff_img[:r, :c].reshape(r // block, block, c // block, block).transpose(0, 2, 1, 3).reshape(-1, block * block)
    mean = blocks.mean(axis=0)
    cov = np.cov(blocks - mean, rowvar=False) if blocks.shape[0] > 1 else np.eye(block * block)
    eigval, eigvec = np.linalg.eigh(np.atleast_2d(cov))
    order = np.argsort(eigval)[::-1]
    eigval, eigvec = eigval[order], eigvec[:, order]
    total = eigval.clip(min=0).sum()
    k = int(np.searchsorted(np.cumsum(eigval.clip(min=0)) / total, 0.9) + 1) if total > 0 else 1
    basis = eigvec[:, :k]
    # every pixel's block x block neighbourhood (edge-padded) projected on the basis
    lo = (block - 1) // 2
    padded = np.pad(diff_img, ((lo, block - 1 - lo), (lo, block - 1 - lo)), mode="edge")
    windows = sliding_window_view(padded, (block, block)).reshape(rows * cols, block * block)
    feats = (windows - mean) @ basis
    sample = feats[ok.ravel()]
    if sample.shape[0] > 200_000:
        sample = sample[np.random.default_rng(0).choice(sample.shape[0], 200_000, replace=False)]
    if np.ptp(sample, axis=0).max() <= 1e-12:
        score = np.zeros(rows * cols)
        centres = np.zeros((2, k))
    else:
        # start from the lowest- and highest-difference pixels so the labels are reproducible
        mags = diff_img.ravel()[ok.ravel()]
        init = np.stack([feats[ok.ravel()][np.argmin(mags)], feats[ok.ravel()][np.argmax(mags)]])
        centres, _ = kmeans2(sample, init, minit="matrix", iter=50)
        # the change cluster is the one whose pixels have the larger mean difference
        labels = np.argmin(((feats[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
        means = [diff_img.ravel()[(labels == j) & ok.ravel()].mean() if np.any((labels == j) & ok.ravel()) else -np.inf
                 for j in range(2)]
        if means[0] > means[1]:
            centres = centres[::-1]
        axis = centres[1] - centres[0]
        denom = float(axis @ axis)
        score = (feats - centres[0]) @ axis / denom if denom > 0 else np.zeros(rows * cols)
    score = score.reshape(rows, cols)
    return ChangeScore(_finish(score, ok), "pca-kmeans", "isodata",
                       {"block": block, "components": k, "kmeans_threshold": 0.5})


def imad(before, after, *, band_names=None, pixel_size_m=None, valid=None) -> ChangeScore:
    """Iteratively reweighted MAD: chi-square change probability (Nielsen 2007).

    The score is the probability of change, the chi-square distribution function
    (``bands`` degrees of freedom) of the sum of squared standardized MAD variates;
    the suggested threshold is ``chi2`` (change where the no-change hypothesis is
    rejected at significance 0.01).  ``layers["chi2"]`` holds the statistic itself and
    ``layers["mad1"]``... the MAD variates.  Invariant to any linear gain/offset of
    either date's bands.

    References
    ----------
    Nielsen, A. A. (2007). The regularized iteratively reweighted MAD method for change
    detection in multi- and hyperspectral data. IEEE Transactions on Image
    Processing, 16(2), 463-478.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> before = rng.normal(size=(3, 30, 30))
    >>> after = 1.1 * before + 0.05 * rng.normal(size=before.shape); after[:, 5, 5] += 4
    >>> s = imad(before, after)
    >>> bool(s.score[5, 5] > 0.99), s.threshold_method
    (True, 'chi2')
    """
    from scipy import special

    from .normalize import irmad

    before, after, names, ok = _prepare(before, after, band_names, valid)
    res = irmad(before, after, valid=ok)
    prob = np.where(ok, special.chdtr(before.shape[0], np.nan_to_num(res.chi2, nan=0.0)), np.nan)
    layers = {"chi2": _finish(res.chi2, ok)}
    for i in range(res.mad.shape[0]):
        layers[f"mad{i + 1}"] = _finish(res.mad[i], ok)
    return ChangeScore(_finish(prob, ok), "imad", "chi2",
                       {"bands": list(names), "iterations": int(res.iterations), "converged": bool(res.converged),
                        "canonical_correlations": [round(float(v), 6) for v in res.rho]}, layers)


def _ssim_map(before, after, ok, *, sigma: float = 1.5) -> np.ndarray:
    rows, cols = ok.shape
    if min(rows, cols) < 7:
        raise InvalidParameterError(f"ssim needs images of at least 7x7 pixels, got {rows}x{cols}")
    zb, za, _ = _normalized_pair(before, after, ok, list(range(before.shape[0])))
    return _ssim_pair(zb, za, ok, sigma=sigma)


def ssim(before, after, *, band_names=None, pixel_size_m=None, valid=None) -> ChangeScore:
    """Structural dissimilarity: 1 - SSIM, averaged over bands (Wang et al. 2004).

    The after image is first put on the before image's radiometry (IR-MAD
    invariant pixels, Canty & Nielsen 2008), so the luminance and contrast terms do
    not react to a global gain/offset; Gaussian window sigma 1.5 px.

    References
    ----------
    Wang, Z., Bovik, A. C., Sheikh, H. R., & Simoncelli, E. P. (2004). Image quality
    assessment: from error visibility to structural similarity. IEEE Transactions
    on Image Processing, 13(4), 600-612.

    Examples
    --------
    >>> import numpy as np
    >>> before = np.random.default_rng(0).normal(size=(1, 32, 32))
    >>> after = before.copy(); after[0, 8:16, 8:16] = np.random.default_rng(1).normal(size=(8, 8))
    >>> s = ssim(before, after)
    >>> bool(s.score[12, 12] > s.score[28, 28])
    True
    """
    before, after, names, ok = _prepare(before, after, band_names, valid)
    return ChangeScore(_finish(_ssim_map(before, after, ok), ok), "ssim", "otsu", {"bands": list(names), "sigma": 1.5})


def _smooth(x: np.ndarray, ok: np.ndarray, size: int) -> np.ndarray:
    """Mean over a size x size window of the valid pixels only (NaN where not valid)."""
    if size <= 1:
        return np.where(ok, x, np.nan).astype(np.float32)
    return _kernels.box_mean_valid(_c32(x)[np.newaxis], _cbool(ok), int(size))[0]


def _c32(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32)


def _cbool(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=bool)


def _mixed_pixel_weight(raw: np.ndarray, ok: np.ndarray, *, size: int = 5) -> np.ndarray:
    """Weight near 0 for pixels less than half changed: the half-contrast rule.

    Under linear mixing a pixel whose change magnitude (above the scene's typical
    level) is below half the largest one within ``size`` pixels is mostly
    unchanged ground on the edge of a changed object; counting it would grow every
    object by its blurred rim (resampling, co-registration, optics).  The peak is
    that of the 3 x 3 mean, so texture inside a changed area does not count as rim,
    and only rim pixels (3 x 3 minimum about unchanged) are weighted; the weight is
    a linear ramp, 0 below a 30 % share and 1 above half: a strong change's rim has
    a z-score in the hundreds, which a soft sigmoid weight would not bring under
    the threshold.  See :func:`changedet._kernels.mixed_pixel_weight`.
    """
    def base() -> float:
        sel = ok & np.isfinite(raw)
        return float(np.median(raw[sel])) if sel.any() else 0.0

    return _kernels.mixed_pixel_weight(_c32(raw), _cbool(ok), _global(base), int(size))


def _robust_z_stats(x: np.ndarray, ok: np.ndarray) -> tuple[float, float]:
    """Scene median and robust spread (1.4826 MAD) of x over ok, for z-scores."""
    def stats() -> tuple[float, float] | None:
        v = x[ok & np.isfinite(x)]
        if v.size == 0:
            return None
        med = float(np.median(v))
        # the magnitudes are in units of the bands' robust spread: below a thousandth
        # of it (over half the scene bit-identical, as in noise-free synthetic pairs)
        # the no-change noise is taken as that floor rather than zero
        mad = max(1.4826 * float(np.median(np.abs(v - med))), 1e-3)
        return med, mad

    st = _global(stats)
    return (0.0, float("inf")) if st is None else st


def _robust_z(x: np.ndarray, ok: np.ndarray) -> np.ndarray:
    med, mad = _robust_z_stats(x, ok)
    return (x - med) / mad


def _irmad_coefs(before, after, ok, bands) -> tuple[np.ndarray, np.ndarray] | None:
    """Scene-wide gains and offsets putting ``after[bands]`` on ``before[bands]``'s radiometry
    (IR-MAD invariant pixels, Canty & Nielsen 2008); None when the statistics are degenerate."""
    from .normalize import normalize_irmad

    def fit() -> tuple[np.ndarray, np.ndarray] | None:
        try:
            norm = normalize_irmad(before[bands], after[bands], valid=ok)
        except ChangedetError:  # degenerate statistics: fall back on per-date standardization
            return None
        return norm.gains, norm.offsets

    return _global(fit)


def _normalized_magnitude(before, after, ok, bands, normalize: str = "irmad", out=None) -> tuple[np.ndarray, bool]:
    """Change-vector magnitude of ``bands`` on one radiometric scale (float32 C arrays in).

    With ``normalize="irmad"`` the after bands are put on the before radiometry by
    IR-MAD invariant pixels (Canty & Nielsen 2008) and both dates divided by the
    before bands' robust spread, as :func:`_normalized_pair`; otherwise (or when
    IR-MAD is degenerate) each date is standardized on its own.  Returns the
    magnitude (in ``out`` when given) and whether IR-MAD was used.
    """
    coefs = _irmad_coefs(before, after, ok, bands) if normalize == "irmad" else None
    if coefs is not None:
        gains, offsets = (np.asarray(c, dtype=np.float64) for c in coefs)
        stats = [_robust_stats(before[i], ok) for i in bands]
    else:  # per date: (a - med_a) / spread_a as a gain/offset onto the before scale
        sb = [_robust_stats(before[i], ok) for i in bands]
        sa = [_robust_stats(after[i], ok) for i in bands]
        gains = np.array([s_a[1] / s_b[1] for s_b, s_a in zip(sb, sa)])
        offsets = np.array([s_a[0] - s_b[0] * g for s_b, s_a, g in zip(sb, sa, gains)])
        stats = sb
    meds = np.array([m for m, _ in stats], dtype=np.float64)
    spreads = np.array([sp for _, sp in stats], dtype=np.float64)
    if out is None:
        out = np.empty(before.shape[1:], np.float32)
    _kernels.normalized_magnitude(before, after, np.array(bands, dtype=np.int64), gains, offsets, meds, spreads, out)
    return out, coefs is not None


def _normalized_pair(before, after, ok, bands):
    """before[bands] and after[bands] on before's radiometry (IR-MAD invariant pixels,
    Canty & Nielsen 2008), both divided by the before bands' robust spread."""
    b = before[bands]
    coefs = _irmad_coefs(before, after, ok, bands)
    if coefs is None:  # pragma: no cover - degenerate statistics
        return _standardize(b, ok), _standardize(after[bands], ok), False
    gains, offsets = coefs
    a64 = after[bands].astype(np.float64)
    a = np.empty(a64.shape, dtype=np.float32)
    for i in range(a64.shape[0]):
        a[i] = ((a64[i] - offsets[i]) / gains[i]).astype(np.float32)
    out_b = np.empty_like(b, dtype=np.float32)
    out_a = np.empty_like(b, dtype=np.float32)
    for i in range(b.shape[0]):
        med, spread = _robust_stats(b[i], ok)
        out_b[i] = (b[i] - med) / spread
        out_a[i] = (a[i] - med) / spread
    return out_b, out_a, True


def _urban_spectral(before, after, names, ok, pixel_size_m, *, normalize: str = "irmad"):
    """The default for multispectral images with red and nir (10-30 m)."""
    found = _idx.resolve_bands(names)
    use = [found[b] for b in ("blue", "green", "red", "nir") if b in found]
    px = pixel_size_m or 10.0
    size = max(3, int(round(30.0 / px)) | 1)
    okc = _cbool(ok)
    bc, ac = _c32(before), _c32(after)
    # the magnitude and each date's NDVI and water index (read on its own reflectances)
    # in one stack: all their 30 m means share one valid count
    pairs = [(found["nir"], found["red"])]
    if "swir16" in found and "green" in found:
        pairs.append((found["green"], found["swir16"]))
        water_index = "mndwi"
    elif "green" in found:
        pairs.append((found["green"], found["nir"]))
        water_index = "ndwi"
    else:
        water_index = None
    stack = np.empty((1 + 2 * len(pairs), *ok.shape), np.float32)
    raw, normalized = _normalized_magnitude(bc, ac, ok, use, normalize, out=stack[0])
    nd = np.array(pairs, dtype=np.int64)
    _kernels.normalized_differences(bc, nd, stack, 1, 2)
    _kernels.normalized_differences(ac, nd, stack, 2, 2)
    smoothed = _kernels.box_mean_valid(stack, okc, size)
    # a pixel counts as much as both it and its neighbourhood changed: the window mean
    # silences isolated noise, the minimum keeps the mean from growing objects by a pixel
    # (the score kernel takes that minimum itself; the array is needed only where the
    # scene's statistics are computed, not where a tape replays them)
    tape = _TAPE.get()
    replay = tape is not None and tape.mode == "replay"
    mag = None if replay else np.minimum(np.where(ok, raw, np.float32(np.nan)), smoothed[0])
    w_mixed = _mixed_pixel_weight(raw, ok)
    # in robust standard deviations of the whole scene's change magnitude, before any
    # suppression, so the threshold does not move with how much of the scene is suppressed
    zmed, zmad = _robust_z_stats(mag, ok)
    # water on both dates (turbidity, waves, sun glint) and vegetation on both dates
    # (phenology, crops) are not construction: soft weights, 0.5 at the class boundary.
    # They read each date's own reflectances: NDVI 0.5 and MNDWI 0 are physical
    # boundaries, which a mapping onto the other date's radiometry would move.
    # MNDWI separates water at 0 (Xu 2006); green/nir NDWI puts bright roofs and
    # concrete close to 0, so without swir water must reach 0.2 (McFeeters 1996)
    w0 = 0.0 if water_index == "mndwi" else 0.2
    score, mag_k, w_water, w_veg = _kernels.urban_score(raw, smoothed, w_mixed, okc, zmed, zmad, w0,
                                                        water_index is not None, not replay)
    layers = {} if replay else {"change_magnitude": mag_k, "weight_water": w_water, "weight_vegetation": w_veg}
    layers.update(_index_layers(before, after, names, ok))
    details = {
        "auto_choice": "urban-spectral",
        "bands": [names[i] for i in use],
        "normalization": "irmad invariant pixels" if normalized else "per-date standardization",
        "window_px": size,
        "water_index": water_index,
        "suppressed": "water on both dates, vegetation (NDVI > 0.5) on both dates",
    }
    return score, "sigma", details, layers


def _ssim_pair(zb, za, ok, *, sigma: float = 1.5) -> np.ndarray:
    """1 - SSIM averaged over bands of two images already on one radiometric scale."""
    from skimage.metrics import structural_similarity

    zb = np.where(ok, zb, 0.0)
    za = np.where(ok, za, 0.0)
    acc = np.zeros(ok.shape, np.float64)
    for b in range(zb.shape[0]):
        lo, hi = _global(lambda: (min(float(zb[b].min()), float(za[b].min())), max(float(zb[b].max()), float(za[b].max()))))
        if hi - lo <= 0:
            acc += 1.0
            continue
        _, full = structural_similarity(zb[b], za[b], full=True, gaussian_weights=True, sigma=sigma,
                                        use_sample_covariance=False, data_range=hi - lo)
        acc += full
    return 1.0 - acc / zb.shape[0]


def _structural_colour(before, after, names, ok, pixel_size_m):
    """The default for high-resolution or RGB-only images: structure + colour."""
    found = _idx.resolve_bands(names)
    use = [found[b] for b in ("red", "green", "blue") if b in found] or list(range(before.shape[0]))
    if min(ok.shape) < 7:
        raise InvalidParameterError(f"auto needs images of at least 7x7 pixels, got {ok.shape[0]}x{ok.shape[1]}")
    zb, za, normalized = _normalized_pair(before, after, ok, use)
    structure = _ssim_pair(zb, za, ok)
    d = za - zb
    colour = np.sqrt(np.sum(d * d, axis=0))
    px = pixel_size_m or 1.0
    size = max(3, int(round(3.0 / px)) | 1)
    score = 0.5 * (_robust_z(_smooth(structure, ok, size), ok) + _robust_z(_smooth(colour, ok, size), ok))
    # SSIM windows reach a few pixels past an object; the pixel-exact colour change
    # decides the outline (half-contrast rule on the colour magnitude)
    score = np.where(score > 0, score * _mixed_pixel_weight(colour, ok), score)
    layers = _index_layers(before, after, names, ok)
    layers["structure"] = _finish(structure, ok)
    layers["colour"] = _finish(colour, ok)
    details = {"auto_choice": "structure+colour", "bands": [names[i] for i in use], "window_px": size,
               "normalization": "irmad invariant pixels" if normalized else "per-date standardization"}
    return score, "otsu", details, layers


def auto(before, after, *, band_names=None, pixel_size_m=None, valid=None) -> ChangeScore:
    """Default method: evidence of construction chosen by the bands and resolution.

    Multispectral images with red and nir at medium resolution (>= 5 m, or
    unknown):

    1. the after image is put on the before image's radiometry with IR-MAD
       invariant pixels (Canty & Nielsen 2008), so a linear gain/offset of the
       after image does not move the magnitude;
    2. change-vector magnitude over blue, green, red, nir (Malila 1980), each band
       divided by its robust spread; per pixel the smaller of its own magnitude
       and its 30 m window mean (isolated noise drops, objects keep their outline);
    3. as robust z-score: (magnitude - median) / (1.4826 MAD) over the scene;
    4. weighted down where both dates are water (MNDWI, Xu 2006, or NDWI) or both
       dates are vegetation (NDVI > 0.5), each date read on its own reflectances:
       seasonal and water changes are not construction;
    5. weighted down on the rim of strong changes, where a pixel holds less than
       about a third of the nearby peak change (a mostly unchanged mixed pixel),
       so blurred edges do not inflate areas.

    Threshold: ``sigma`` (6 robust standard deviations).

    High-resolution (< 5 m) or RGB images: the IR-MAD-normalized pair, then the
    mean of the robust z-scores of structural dissimilarity (1 - SSIM, Wang et al.
    2004) and colour change magnitude, with the same rim rule on the colour
    magnitude.  Threshold: ``otsu``.

    ``details["auto_choice"]`` says which was used; ``layers`` holds index deltas
    (``d_ndvi``, ``d_ndbi``, ``d_brightness``, ``d_ndwi``...) and the components.

    References
    ----------
    Malila, W. A. (1980). Change vector analysis. LARS Symposia, 385.
    Xu, H. (2006). Modification of normalised difference water index (NDWI) to
    enhance open water features. International Journal of Remote Sensing, 27(14), 3025-3033.
    Wang, Z., Bovik, A. C., Sheikh, H. R., & Simoncelli, E. P. (2004). Image quality
    assessment: from error visibility to structural similarity. IEEE TIP, 13(4), 600-612.

    Examples
    --------
    >>> import numpy as np
    >>> before = np.random.default_rng(0).uniform(500, 1500, size=(4, 32, 32))
    >>> after = before.copy(); after[:, 10:16, 10:16] += 2000
    >>> s = auto(before, after, band_names=["B02", "B03", "B04", "B08"], pixel_size_m=10)
    >>> s.method, s.details["auto_choice"], bool(s.score[12, 12] > 3)
    ('auto', 'urban-spectral', True)
    """
    before, after, names, ok = _prepare(before, after, band_names, valid)
    found = _idx.resolve_bands(names)
    high_res = pixel_size_m is not None and pixel_size_m < 5.0
    if "red" in found and "nir" in found and not high_res:
        # float32, NaN where not valid or not finite already (the score kernel's contract)
        score, thr, details, layers = _urban_spectral(before, after, names, ok, pixel_size_m)
    else:
        score, thr, details, layers = _structural_colour(before, after, names, ok, pixel_size_m)
        score = _finish(score, ok)
    return ChangeScore(score, "auto", thr, details, layers)


MethodFn = Callable[..., ChangeScore]

#: name -> method function; a new method is one function and one entry here.
METHODS: dict[str, MethodFn] = {
    "auto": auto,
    "diff": diff,
    "log-ratio": log_ratio,
    "cva": cva,
    **{f"index:{name}": _index_method(name) for name in _idx.INDICES},
    "pca-kmeans": pca_kmeans,
    "imad": imad,
    "ssim": ssim,
}


def change_score(
    before: np.ndarray,
    after: np.ndarray,
    *,
    method: str = "auto",
    band_names: Sequence[str] | None = None,
    pixel_size_m: float | None = None,
    valid: np.ndarray | None = None,
) -> ChangeScore:
    """Score change between two co-registered images.

    Parameters
    ----------
    before, after : (bands, rows, cols) ndarray of float
        The two dates on one grid with the same bands; NaN = nodata.
    method : str
        A key of :data:`METHODS` (default ``"auto"``).
    band_names : sequence of str, optional
        One name per band (``B02``, ``SR_B4``, ``red``, ...); needed by methods
        that use specific bands.
    pixel_size_m : float, optional
        Ground sampling distance; ``auto`` uses it to choose between medium
        resolution (spectral) and high resolution (structural) evidence.
    valid : (rows, cols) ndarray of bool, optional
        Pixels to use (False = cloud, nodata, outside the overlap).

    Returns
    -------
    ChangeScore

    Examples
    --------
    >>> import numpy as np
    >>> before = np.random.default_rng(1).normal(size=(4, 16, 16))
    >>> after = before.copy(); after[:, 4:6, 4:6] += 5
    >>> s = change_score(before, after, method="cva", band_names=["B02", "B03", "B04", "B08"])
    >>> bool(s.score[4, 4] > np.nanpercentile(s.score, 95))
    True
    """
    if method not in METHODS:
        raise InvalidParameterError(f"method must be one of {sorted(METHODS)}, got {method!r}")
    if pixel_size_m is not None and not (np.isfinite(pixel_size_m) and pixel_size_m > 0):
        raise InvalidParameterError(f"pixel_size_m must be a positive number, got {pixel_size_m!r}")
    return METHODS[method](before, after, band_names=band_names, pixel_size_m=pixel_size_m, valid=valid)
