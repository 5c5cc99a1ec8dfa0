"""Change scores: (bands, rows, cols) before/after arrays -> (rows, cols) score.

Every method is a function ``f(before, after, *, band_names, pixel_size_m, valid)``
returning a :class:`ChangeScore`; :data:`METHODS` maps names to them and
:func:`change_score` validates inputs and dispatches.  Higher score = more change;
NaN = nodata.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from . import indices as _idx
from .errors import BandMismatchError, EmptyDataError, InvalidParameterError

__all__ = ["ChangeScore", "METHODS", "change_score", "diff", "cva"]


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
    ok = np.all(np.isfinite(before), axis=0) & np.all(np.isfinite(after), axis=0)
    if valid is not None:
        valid = np.asarray(valid, dtype=bool)
        if valid.shape != before.shape[1:]:
            raise InvalidParameterError(
                f"valid has shape {valid.shape}, expected {before.shape[1:]} (rows, cols) of the images"
            )
        ok &= valid
    if not ok.any():
        raise EmptyDataError(
            f"no pixel is valid in both images ({before.shape[1]}x{before.shape[2]} pixels): "
            f"every pixel is NaN or masked (clouds, nodata, outside the overlap)"
        )
    return before, after, names, ok


def _robust_stats(x: np.ndarray, ok: np.ndarray) -> tuple[float, float]:
    """Median and robust spread (IQR/1.349, falling back to std) of x over ok."""
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
    return ChangeScore(_finish(acc / before.shape[0], ok), "diff", "otsu", {"bands": list(names)})


def cva(before, after, *, band_names=None, pixel_size_m=None, valid=None) -> ChangeScore:
    """Change vector analysis: magnitude of the standardized spectral change vector.

    Bands are standardized per date (median, robust spread), which removes a
    linear gain/offset between the dates; the score is the Euclidean norm of the
    difference vector and ``layers["cva_direction"]`` holds the angle (radians)
    of the change vector in the plane of the first two bands.

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
    d = _standardize(after, ok) - _standardize(before, ok)
    mag = np.sqrt(np.sum(d * d, axis=0))
    layers = {}
    if d.shape[0] >= 2:
        layers["cva_direction"] = _finish(np.arctan2(d[1], d[0]), ok)
    return ChangeScore(_finish(mag, ok), "cva", "otsu", {"bands": list(names), "standardized": "per date"}, layers)


def auto(before, after, *, band_names=None, pixel_size_m=None, valid=None) -> ChangeScore:
    """Default method: picks a score by the bands and resolution present.

    Currently change vector analysis (see :func:`cva`).

    Examples
    --------
    >>> import numpy as np
    >>> before = np.random.default_rng(0).normal(size=(3, 8, 8))
    >>> after = before.copy(); after[:, 1, 1] += 20
    >>> s = auto(before, after)
    >>> s.method
    'auto'
    """
    res = cva(before, after, band_names=band_names, pixel_size_m=pixel_size_m, valid=valid)
    return ChangeScore(res.score, "auto", res.threshold_method, {**res.details, "auto_choice": "cva"}, res.layers)


MethodFn = Callable[..., ChangeScore]

#: name -> method function; a new method is one function and one entry here.
METHODS: dict[str, MethodFn] = {
    "auto": auto,
    "diff": diff,
    "cva": cva,
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
