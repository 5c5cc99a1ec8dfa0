"""Change scores: (bands, rows, cols) before/after arrays -> (rows, cols) score.

A method is a *fit* and a *score*.  The fit reads the scene-wide statistics the
method needs (robust spreads, IR-MAD gains or canonical vectors, the median and
spread of an intermediate magnitude, PCA basis and k-means centres) from a pair,
or from a sample of a large scene, and returns them as a JSON-serialisable dict;
the score turns any pair of images, or any window of a scene, into a score from
those statistics alone.  :func:`fit_method` returns the frozen
:class:`FittedMethod`; :func:`change_score` fits on the pair and scores it.
Windows scored with a fit of the whole scene and a halo of
:attr:`FittedMethod.halo_px` pixels give the whole-scene score in their core.

:data:`METHODS` maps names to :class:`Method` entries (a fit and a score); the
functions :func:`auto`, :func:`diff`, ... fit and score one pair.  Higher score =
more change; NaN = nodata.
"""

from __future__ import annotations

import copy
import functools
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from . import _select
from . import _kernels
from . import indices as _idx
from .errors import ChangedetError, EmptyDataError, InvalidParameterError

__all__ = [
    "ChangeScore", "FittedMethod", "Method", "MethodFit", "METHODS", "change_score", "fit_method",
    "auto", "diff", "log_ratio", "cva", "pca_kmeans", "imad", "ssim",
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


# --- fits, scores and the registry -----------------------------------------------

#: A pair ready for a fit or a score: float32 ``before`` and ``after`` (bands, rows,
#: cols), the band names, and the (rows, cols) pixels valid and finite in both.
_Pair = tuple[np.ndarray, np.ndarray, tuple[str, ...], np.ndarray]


@dataclass(frozen=True, eq=False)
class MethodFit:
    """What a method's fit returns (see :class:`Method`); :func:`fit_method` makes it a :class:`FittedMethod`.

    Attributes
    ----------
    stats : dict
        The scene-wide statistics the score needs, JSON values only (numpy arrays
        and scalars are converted; a non-finite float becomes None).
    threshold_method : str
        The threshold that suits the score.
    details : dict
        JSON facts for ``summary.json``.
    halo_px : int
        Neighbourhood reach of the score in pixels (0 for per-pixel scores).
    sample_result : ChangeScore or None
        The score of the fitted pair, when the fit computed it anyway.
    hysteresis : (float, float) or None
        With its own threshold ``t``, the method's mask is every connected area of score at
        least ``low * t`` that reaches ``high * t`` somewhere (hysteresis thresholding);
        None: every pixel above ``t``.
    """

    stats: dict[str, Any]
    threshold_method: str
    details: dict[str, Any]
    halo_px: int
    sample_result: ChangeScore | None = None
    hysteresis: tuple[float, float] | None = None


#: fit(before, after, band_names, ok, pixel_size_m) -> MethodFit
FitFn = Callable[[np.ndarray, np.ndarray, tuple[str, ...], np.ndarray, "float | None"], MethodFit]
#: score(before, after, band_names, ok, stats, layers) -> ((rows, cols) float32 score, layers)
ScoreFn = Callable[[np.ndarray, np.ndarray, tuple[str, ...], np.ndarray, dict, bool],
                   tuple[np.ndarray, dict[str, np.ndarray]]]


@dataclass(frozen=True, eq=False)
class Method:
    """A change method: its fit and its score (an entry of :data:`METHODS`).

    Attributes
    ----------
    name : str
        The key in :data:`METHODS`.
    fit : callable
        ``fit(before, after, band_names, ok, pixel_size_m) -> MethodFit``: the scene-wide
        statistics (a JSON-serialisable dict), the suited threshold, the details for
        ``summary.json`` and the neighbourhood reach of the score in pixels.
        ``before`` and ``after`` are float32 (bands, rows, cols), ``ok`` the
        (rows, cols) pixels finite in both and valid (at least one).
    score : callable
        ``score(before, after, band_names, ok, stats, layers) -> (score, layers)``:
        the (rows, cols) float32 score (NaN where not ``ok``) from the statistics
        alone, and the extra per-pixel layers when ``layers`` is true (else ``{}``).
    function : callable
        The public convenience (fit and score one pair); its docstring documents the method.
    """

    name: str
    fit: FitFn
    score: ScoreFn
    function: Callable[..., ChangeScore]


def _json_value(x: Any, where: str) -> Any:
    """``x`` as plain JSON values (dict/list/float/int/str/bool/None); non-finite floats become None."""
    if isinstance(x, dict):
        out = {}
        for k, v in x.items():
            if not isinstance(k, str):
                raise TypeError(f"statistic keys must be strings, got {k!r} in {where}")
            out[k] = _json_value(v, f"{where}.{k}")
        return out
    if isinstance(x, (list, tuple)):
        return [_json_value(v, where) for v in x]
    if isinstance(x, np.ndarray):
        return _json_value(x.tolist(), where)
    if x is None or isinstance(x, (bool, str)):
        return x
    if isinstance(x, np.bool_):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        v = float(x)
        return v if np.isfinite(v) else None
    raise TypeError(f"{where} holds a {type(x).__name__}, which is not a JSON value")


def _float(v: Any) -> float:
    """A statistic read back as a Python float (None, a non-finite value, is NaN)."""
    return float("nan") if v is None else float(v)


def _floats(values: Sequence[Any]) -> list[float]:
    return [_float(v) for v in values]


def _array(values: Any) -> np.ndarray:
    """A (nested) list of statistics as a float64 array (None is NaN)."""
    return np.array(values, dtype=np.float64)


@dataclass(frozen=True, eq=False)
class FittedMethod:
    """A method with its scene-wide statistics fitted: :meth:`score` scores any pair or window.

    Built by :func:`fit_method`; :meth:`to_dict` and :meth:`from_dict` write and read
    it as JSON (``summary.json``), and a read one scores exactly as the original.

    Attributes
    ----------
    method : str
        A key of :data:`METHODS`.
    band_names : tuple of str
        The bands the images to score must have, in this order.
    pixel_size_m : float or None
        Ground sampling distance given to the fit.
    stats : dict
        The fitted statistics, JSON-serialisable (dict/list/float/int/str/bool/None);
        not to be mutated.
    halo_px : int
        Neighbourhood reach of the score: windows read with this halo give the
        whole-scene score in their core.
    threshold_method : str
        The threshold that suits the score (``"otsu"``, ``"sigma"``, ``"chi2"``, ``"isodata"``).
    details : dict
        JSON facts for ``summary.json`` (the :attr:`ChangeScore.details` of every score).
    sample_result : ChangeScore or None
        The score of the fitted pair, when the fit computed it anyway.
    hysteresis : (float, float) or None
        ``(low, high)`` factors of the method's own threshold for hysteresis thresholding
        (:class:`MethodFit`); None for a plain threshold.
    """

    method: str
    band_names: tuple[str, ...]
    pixel_size_m: float | None
    stats: dict
    halo_px: int
    threshold_method: str
    details: dict
    sample_result: ChangeScore | None = field(default=None, repr=False, compare=False)
    hysteresis: tuple[float, float] | None = None

    def score(self, before: np.ndarray, after: np.ndarray, valid: np.ndarray | None, *,
              layers: bool = True, valid_is_finite: bool = False) -> ChangeScore:
        """Score a pair, or a window of the scene, with the fitted statistics.

        Parameters
        ----------
        before, after : (bands, rows, cols) ndarray of float
            On :attr:`band_names`; NaN = nodata.
        valid : (rows, cols) ndarray of bool or None
            Pixels to use; pixels not finite in both images are left out as well.
        layers : bool, default True
            Also compute the extra per-pixel layers (index deltas, components); a
            windowed run that keeps only the score passes False.
        valid_is_finite : bool, default False
            ``valid`` is known to leave out every pixel not finite in both images (the
            window processor's mask): the check over every band is skipped.

        Returns
        -------
        ChangeScore
            ``score`` is (rows, cols) float32, NaN where not valid.

        Raises
        ------
        EmptyDataError
            No pixel is valid in both images.

        Examples
        --------
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> b = rng.uniform(500, 1500, size=(4, 40, 40)); a = b * 1.1; a[:, 5:9, 5:9] += 900
        >>> f = fit_method("cva", b, a, band_names=["B02", "B03", "B04", "B08"])
        >>> f.score(b[:, :20], a[:, :20], None).score.shape
        (20, 40)
        """
        return self._score(_prepare(before, after, self.band_names, valid, valid_is_finite=valid_is_finite), layers)

    def apply(self, before: np.ndarray, after: np.ndarray, valid: np.ndarray | None) -> ChangeScore:
        """:meth:`score` without the extra layers: one window of a windowed run.

        Parameters
        ----------
        before, after : (bands, rows, cols) ndarray of float
        valid : (rows, cols) ndarray of bool or None

        Returns
        -------
        ChangeScore
            With empty ``layers``.
        """
        return self.score(before, after, valid, layers=False)

    def _score(self, pair: _Pair, layers: bool) -> ChangeScore:
        before, after, names, ok = pair
        score, extra = METHODS[self.method].score(before, after, names, ok, self.stats, bool(layers))
        return ChangeScore(score, self.method, self.threshold_method, copy.deepcopy(self.details),
                           extra if layers else {})

    def to_dict(self) -> dict:
        """The fitted method as JSON values; :meth:`from_dict` rebuilds it exactly.

        Returns
        -------
        dict
            ``method``, ``band_names``, ``pixel_size_m``, ``stats``, ``halo_px``,
            ``threshold_method``, ``details``, ``hysteresis`` (``[low, high]`` or null).

        Examples
        --------
        >>> import json, numpy as np
        >>> b = np.random.default_rng(0).normal(size=(2, 8, 8)); a = b + 1
        >>> f = fit_method("diff", b, a, band_names=["B04", "B08"])
        >>> g = FittedMethod.from_dict(json.loads(json.dumps(f.to_dict())))
        >>> bool(np.array_equal(g.score(b, a, None).score, f.score(b, a, None).score))
        True
        """
        return {
            "method": self.method,
            "band_names": list(self.band_names),
            "pixel_size_m": self.pixel_size_m,
            "stats": copy.deepcopy(self.stats),
            "halo_px": int(self.halo_px),
            "threshold_method": self.threshold_method,
            "details": copy.deepcopy(self.details),
            "hysteresis": list(self.hysteresis) if self.hysteresis is not None else None,
        }

    @classmethod
    def from_dict(cls, d: dict) -> FittedMethod:
        """Rebuild a :class:`FittedMethod` from :meth:`to_dict` (after a JSON round trip).

        Parameters
        ----------
        d : dict
            As written by :meth:`to_dict`.

        Returns
        -------
        FittedMethod
        """
        keys = ("method", "band_names", "pixel_size_m", "stats", "halo_px", "threshold_method", "details")
        missing = [k for k in keys if k not in d]
        if missing:
            raise InvalidParameterError(
                f"a fitted method needs the keys {list(keys)}, missing {missing}; pass what FittedMethod.to_dict wrote"
            )
        if d["method"] not in METHODS:
            raise InvalidParameterError(f"method must be one of {sorted(METHODS)}, got {d['method']!r}")
        px = d["pixel_size_m"]
        hyst = d.get("hysteresis")  # absent in what versions before it wrote: a plain threshold
        if hyst is not None and not (isinstance(hyst, (list, tuple)) and len(hyst) == 2
                                     and all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in hyst)
                                     and hyst[0] <= 1 <= hyst[1]):
            raise InvalidParameterError(f"hysteresis must be [low, high] with 0 < low <= 1 <= high, got {hyst!r}")
        return cls(str(d["method"]), tuple(str(n) for n in d["band_names"]), None if px is None else float(px),
                   _json_value(d["stats"], "stats"), int(d["halo_px"]), str(d["threshold_method"]),
                   copy.deepcopy(d["details"]), hysteresis=None if hyst is None else (float(hyst[0]), float(hyst[1])))


def _check_method(method: str, pixel_size_m: float | None) -> None:
    if method not in METHODS:
        raise InvalidParameterError(f"method must be one of {sorted(METHODS)}, got {method!r}")
    if pixel_size_m is not None and not (np.isfinite(pixel_size_m) and pixel_size_m > 0):
        raise InvalidParameterError(f"pixel_size_m must be a positive number, got {pixel_size_m!r}")


def _fit_prepared(method: str, pair: _Pair, pixel_size_m: float | None, fit: FitFn | None = None) -> FittedMethod:
    before, after, names, ok = pair
    f = (fit or METHODS[method].fit)(before, after, names, ok, pixel_size_m)
    px = None if pixel_size_m is None else float(pixel_size_m)
    return FittedMethod(method, names, px, _json_value(f.stats, "stats"), int(f.halo_px), f.threshold_method,
                        _json_value(f.details, "details"), sample_result=f.sample_result, hysteresis=f.hysteresis)


def fit_method(
    method: str,
    before: np.ndarray,
    after: np.ndarray,
    *,
    band_names: Sequence[str],
    pixel_size_m: float | None = None,
    valid: np.ndarray | None = None,
) -> FittedMethod:
    """Fit a method's scene-wide statistics on a pair or a sample of a scene.

    ``fit_method(m, b, a, ...).score(b, a, valid)`` equals ``change_score(b, a, method=m, ...)``;
    applied to windows of the scene read with a halo of ``halo_px`` it gives the
    whole-scene score in each window's core.

    Parameters
    ----------
    method : str
        A key of :data:`METHODS`.
    before, after : (bands, rows, cols) ndarray of float
        The pair, or a sample of the scene (blocks side by side); NaN = nodata.
    band_names : sequence of str
        One name per band.
    pixel_size_m : float, optional
        Ground sampling distance (``auto`` chooses its evidence by it).
    valid : (rows, cols) ndarray of bool, optional
        Pixels to fit on.

    Returns
    -------
    FittedMethod

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> b = rng.uniform(500, 1500, size=(4, 40, 40)); a = b * 1.1; a[:, 5:9, 5:9] += 900
    >>> names = ["B02", "B03", "B04", "B08"]
    >>> f = fit_method("auto", b, a, band_names=names, pixel_size_m=10)
    >>> f.stats["choice"], f.stats["normalization"], f.threshold_method, f.halo_px
    ('urban-spectral', 'irmad', 'sigma', 3)
    >>> whole = change_score(b, a, band_names=names, pixel_size_m=10).score
    >>> part = f.apply(b[:, :20], a[:, :20], np.ones((20, 40), bool)).score
    >>> bool(np.array_equal(part[:20 - f.halo_px], whole[:20 - f.halo_px], equal_nan=True))
    True
    """
    _check_method(method, pixel_size_m)
    return _fit_prepared(method, _prepare(before, after, band_names, valid), pixel_size_m)


def _prepare(before, after, band_names, valid, *, valid_is_finite: bool = False) -> _Pair:
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
    if valid is not None and valid_is_finite:
        ok = valid.copy()
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


# --- shared statistics -----------------------------------------------------------

def _robust_stats(x: np.ndarray, ok: np.ndarray) -> tuple[float, float]:
    """Median and robust spread (IQR/1.349, falling back to std) of x over ok."""
    v = x[ok]
    if v.size > 500_000:
        v = v[:: v.size // 500_000 + 1]
    med = _select.median(v)
    q1, q3 = _select.percentiles(v, [25, 75])
    spread = float(q3 - q1) / 1.349
    if not spread > 1e-12:
        spread = float(np.std(v))
    if not spread > 1e-12:
        spread = 1.0
    return med, spread


def _band_stats(image: np.ndarray, ok: np.ndarray, bands: Sequence[int]) -> tuple[list[float], list[float]]:
    """Per band of ``bands``: median and robust spread over ok."""
    st = [_robust_stats(image[i], ok) for i in bands]
    return [m for m, _ in st], [s for _, s in st]


def _robust_z_stats(x: np.ndarray, ok: np.ndarray) -> tuple[float | None, float | None]:
    """Scene median and robust spread (1.4826 MAD) of x over ok, for z-scores (None, None
    when no value is finite)."""
    v = x[ok & np.isfinite(x)]
    if v.size == 0:
        return None, None
    med = _select.median(v)
    # the magnitudes are in units of the bands' robust spread: below a thousandth
    # of it (over half the scene bit-identical, as in noise-free synthetic pairs)
    # the no-change noise is taken as that floor rather than zero
    mad = max(1.4826 * _select.median(np.abs(v - med)), 1e-3)
    return med, mad


def _z_params(med: Any, mad: Any) -> tuple[float, float]:
    """The z-score's centre and spread as fitted (no finite magnitude: 0 and infinity, all z 0)."""
    return (0.0, float("inf")) if med is None or mad is None else (float(med), float(mad))


def _median_finite(x: np.ndarray, ok: np.ndarray) -> float:
    """Median of x over ok and finite (0 when none is): the base of the rim weight."""
    sel = ok & np.isfinite(x)
    return _select.median(x[sel]) if sel.any() else 0.0


def _fit_normalization(before: np.ndarray, after: np.ndarray, ok: np.ndarray, bands: Sequence[int]) -> dict:
    """Statistics putting ``after[bands]`` on ``before[bands]``'s radiometry, in before's robust spreads.

    IR-MAD invariant pixels (Canty & Nielsen 2008): ``irmad_gains``, ``irmad_offsets``
    (``after = gain * before + offset``) and ``before_median``, ``before_spread``;
    where IR-MAD is degenerate, per-date standardization: the medians and spreads of
    both dates.
    """
    from .normalize import fit_normalize_irmad

    bands = list(bands)
    meds, spreads = _band_stats(before, ok, bands)
    whole = bands == list(range(before.shape[0]))  # no copy of the images when every band is used
    try:
        fit = fit_normalize_irmad(before if whole else before[bands], after if whole else after[bands], valid=ok)
    except ChangedetError:  # degenerate statistics: fall back on per-date standardization
        fit = None
    if fit is not None:
        return {"normalization": "irmad", "irmad_gains": fit.gains.tolist(), "irmad_offsets": fit.offsets.tolist(),
                "before_median": meds, "before_spread": spreads}
    a_meds, a_spreads = _band_stats(after, ok, bands)
    return {"normalization": "standardize", "before_median": meds, "before_spread": spreads,
            "after_median": a_meds, "after_spread": a_spreads}


def _normalization_name(stats: dict) -> str:
    return "irmad invariant pixels" if stats["normalization"] == "irmad" else "per-date standardization"


def _normalized_magnitude(before: np.ndarray, after: np.ndarray, bands: Sequence[int], stats: dict,
                          out: np.ndarray | None = None) -> np.ndarray:
    """Change-vector magnitude of ``bands`` on before's radiometry, in before's robust spreads
    (float32 C arrays in; the fitted :func:`_fit_normalization` statistics)."""
    meds = _floats(stats["before_median"])
    spreads = _floats(stats["before_spread"])
    if stats["normalization"] == "irmad":
        gains = _array(stats["irmad_gains"])
        offsets = _array(stats["irmad_offsets"])
    else:  # per date: (a - med_a) / spread_a as a gain/offset onto the before scale
        a_meds, a_spreads = _floats(stats["after_median"]), _floats(stats["after_spread"])
        gains = np.array([s_a / s_b for s_b, s_a in zip(spreads, a_spreads)])
        offsets = np.array([m_a - m_b * g for m_b, m_a, g in zip(meds, a_meds, gains)])
    if out is None:
        out = np.empty(before.shape[1:], np.float32)
    _kernels.normalized_magnitude(before, after, np.array(bands, dtype=np.int64), gains, offsets,
                                  _array(meds), _array(spreads), out)
    return out


def _normalized_pair(before: np.ndarray, after: np.ndarray, bands: Sequence[int],
                     stats: dict) -> tuple[np.ndarray, np.ndarray]:
    """before[bands] and after[bands] on before's radiometry, both in before's robust spreads
    (the fitted :func:`_fit_normalization` statistics)."""
    bands = list(bands)
    b = before[bands]
    meds, spreads = _floats(stats["before_median"]), _floats(stats["before_spread"])
    out_b = np.empty_like(b, dtype=np.float32)
    out_a = np.empty_like(b, dtype=np.float32)
    if stats["normalization"] == "irmad":
        gains, offsets = _floats(stats["irmad_gains"]), _floats(stats["irmad_offsets"])
        a64 = after[bands].astype(np.float64)
        for i in range(b.shape[0]):
            a = ((a64[i] - offsets[i]) / gains[i]).astype(np.float32)
            out_b[i] = (b[i] - meds[i]) / spreads[i]
            out_a[i] = (a - meds[i]) / spreads[i]
    else:
        a = after[bands]
        a_meds, a_spreads = _floats(stats["after_median"]), _floats(stats["after_spread"])
        for i in range(b.shape[0]):
            out_b[i] = (b[i] - meds[i]) / spreads[i]
            out_a[i] = (a[i] - a_meds[i]) / a_spreads[i]
    return out_b, out_a


def _finish(score: np.ndarray, ok: np.ndarray) -> np.ndarray:
    score = np.asarray(score, dtype=np.float32)
    return np.where(ok & np.isfinite(score), score, np.float32(np.nan)).astype(np.float32)


def _index_layers(before, after, names, ok) -> dict[str, np.ndarray]:
    """Signed per-pixel index changes (after - before) that the bands allow."""
    layers = {}
    for name in ("ndvi", "ndbi", "bsi", "ndwi", "brightness"):
        if name in _idx.available_indices(names):
            with np.errstate(invalid="ignore", divide="ignore"):
                d = _idx.compute_index(after, names, name) - _idx.compute_index(before, names, name)
            layers[f"d_{name}"] = _finish(d, ok)
    return layers


def _smooth(x: np.ndarray, ok: np.ndarray, size: int) -> np.ndarray:
    """Mean over a size x size window of the valid pixels only (NaN where not valid)."""
    if size <= 1:
        return np.where(ok, x, np.nan).astype(np.float32)
    return _kernels.box_mean_valid(_c32(x)[np.newaxis], _cbool(ok), int(size))[0]


def _c32(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32)


def _cbool(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=bool)


#: reach of :func:`_mixed_pixel_weight` (3 x 3 mean, then the maximum over 5 x 5)
_MIXED_SIZE = 5
_MIXED_REACH = 1 + _MIXED_SIZE // 2


def _mixed_pixel_weight(raw: np.ndarray, ok: np.ndarray, base: float) -> np.ndarray:
    """Weight near 0 for pixels less than half changed: the half-contrast rule.

    Under linear mixing a pixel whose change magnitude (above the scene's typical
    level ``base``, the fitted median of ``raw``) is below half the largest one within
    5 pixels is mostly unchanged ground on the edge of a changed object; counting
    it would grow every object by its blurred rim (resampling, co-registration,
    optics).  The peak is that of the 3 x 3 mean, so texture inside a changed area
    does not count as rim, and only rim pixels (3 x 3 minimum about unchanged) are
    weighted; the weight is a linear ramp, 0 below a 30 % share and 1 above half: a
    strong change's rim has a z-score in the hundreds, which a soft sigmoid weight
    would not bring under the threshold.  See :func:`changedet._kernels.mixed_pixel_weight`.
    """
    return _kernels.mixed_pixel_weight(_c32(raw), _cbool(ok), float(base), _MIXED_SIZE)


#: SSIM: Gaussian window sigma and its reach (scikit-image truncates at 3.5 sigma)
_SSIM_SIGMA = 1.5
_SSIM_REACH = int(3.5 * _SSIM_SIGMA + 0.5)


def _ssim_ranges(zb: np.ndarray, za: np.ndarray, ok: np.ndarray) -> list[list[float]]:
    """Per band, the [min, max] of both dates (0 outside ok): SSIM's data range."""
    zb = np.where(ok, zb, 0.0)
    za = np.where(ok, za, 0.0)
    return [[min(float(zb[b].min()), float(za[b].min())), max(float(zb[b].max()), float(za[b].max()))]
            for b in range(zb.shape[0])]


def _ssim_pair(zb: np.ndarray, za: np.ndarray, ok: np.ndarray, ranges: Sequence[Sequence[Any]]) -> np.ndarray:
    """1 - SSIM averaged over bands of two images already on one radiometric scale,
    with the fitted data ranges."""
    from skimage.metrics import structural_similarity

    zb = np.where(ok, zb, 0.0)
    za = np.where(ok, za, 0.0)
    acc = np.zeros(ok.shape, np.float64)
    for b in range(zb.shape[0]):
        lo, hi = _floats(ranges[b])
        # no range, or one so small that SSIM's stabilising constants (0.01 and 0.03 of it,
        # squared) vanish in the images' float type: nothing to compare (SSIM would divide 0 by 0)
        if not hi - lo > 0 or not zb.dtype.type((0.01 * (hi - lo)) ** 2) > 0:
            acc += 1.0
            continue
        _, full = structural_similarity(zb[b], za[b], full=True, gaussian_weights=True, sigma=_SSIM_SIGMA,
                                        use_sample_covariance=False, data_range=hi - lo)
        acc += full
    return 1.0 - acc / zb.shape[0]


_METHOD_PARAMETERS = """
    Parameters
    ----------
    before, after : (bands, rows, cols) ndarray of float
        The two dates on one grid with the same bands; NaN = nodata.
    band_names : sequence of str, optional
        One name per band (``B02``, ``SR_B4``, ``red``, ...).
    pixel_size_m : float, optional
        Ground sampling distance.
    valid : (rows, cols) ndarray of bool, optional
        Pixels to use (False = cloud, nodata, outside the overlap).

    Returns
    -------
    ChangeScore
        ``score`` (rows, cols) float32, NaN where not valid; fitted on this pair
        (:func:`fit_method` and :meth:`FittedMethod.score` separate the two steps).

"""


# --- methods: fit and score ------------------------------------------------------

def _fit_diff(before: np.ndarray, after: np.ndarray, names: tuple[str, ...], ok: np.ndarray,
              pixel_size_m: float | None) -> MethodFit:
    _, spreads = _band_stats(before, ok, range(before.shape[0]))
    return MethodFit({"before_spread": spreads}, "otsu", {"bands": list(names)}, 0)


def _score_diff(before: np.ndarray, after: np.ndarray, names: tuple[str, ...], ok: np.ndarray,
                stats: dict, layers: bool) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    acc = np.zeros(before.shape[1:], np.float32)
    for b, spread in enumerate(_floats(stats["before_spread"])):
        acc += np.abs(after[b] - before[b]) / spread
    return _finish(acc / before.shape[0], ok), (_index_layers(before, after, names, ok) if layers else {})


def diff(before: np.ndarray, after: np.ndarray, *, band_names: Sequence[str] | None = None,
         pixel_size_m: float | None = None, valid: np.ndarray | None = None) -> ChangeScore:
    """Image differencing: mean absolute band difference (Singh 1989).

    Each band's difference is divided by the robust spread of the before band so
    bands of different ranges weigh alike.  Statistics: ``before_spread`` (per band).
    {parameters}
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
    return change_score(before, after, method="diff", band_names=band_names, pixel_size_m=pixel_size_m, valid=valid)


def _fit_cva(before: np.ndarray, after: np.ndarray, names: tuple[str, ...], ok: np.ndarray,
             pixel_size_m: float | None) -> MethodFit:
    stats = _fit_normalization(before, after, ok, range(before.shape[0]))
    return MethodFit(stats, "otsu", {"bands": list(names), "normalization": _normalization_name(stats)}, 0)


def _score_cva(before: np.ndarray, after: np.ndarray, names: tuple[str, ...], ok: np.ndarray,
               stats: dict, layers: bool) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    zb, za = _normalized_pair(before, after, range(before.shape[0]), stats)
    d = za - zb
    mag = np.sqrt(np.sum(d * d, axis=0))
    extra = {}
    if layers:
        extra = _index_layers(before, after, names, ok)
        if d.shape[0] >= 2:
            extra["cva_direction"] = _finish(np.arctan2(d[1], d[0]), ok)
    return _finish(mag, ok), extra


def cva(before: np.ndarray, after: np.ndarray, *, band_names: Sequence[str] | None = None,
        pixel_size_m: float | None = None, valid: np.ndarray | None = None) -> ChangeScore:
    """Change vector analysis: magnitude of the standardized spectral change vector.

    The after image is put on the before image's radiometry with IR-MAD
    invariant pixels (Canty & Nielsen 2008; per-date standardization if that
    fails), which removes a linear gain/offset between the dates even when much
    of the scene changed; bands are divided by the before band's robust spread;
    the score is the Euclidean norm of the difference vector and
    ``layers["cva_direction"]`` holds the angle (radians) of the change vector in
    the plane of the first two bands.  Statistics: ``irmad_gains``,
    ``irmad_offsets``, ``before_median``, ``before_spread`` (per band).
    {parameters}
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
    return change_score(before, after, method="cva", band_names=band_names, pixel_size_m=pixel_size_m, valid=valid)


def _fit_log_ratio(before: np.ndarray, after: np.ndarray, names: tuple[str, ...], ok: np.ndarray,
                   pixel_size_m: float | None) -> MethodFit:
    shifts = []
    for b in range(before.shape[0]):
        lo = min(float(before[b][ok].min()), float(after[b][ok].min()))
        scale = max(float(np.percentile(np.abs(before[b][ok]), 50)), 1e-6)
        # a shift of 1 % of the median keeps dark pixels from exploding the ratio
        shifts.append((0.0 if lo > 0 else -lo) + 0.01 * scale)
    return MethodFit({"offsets": shifts}, "otsu", {"bands": list(names), "offsets": [round(v, 6) for v in shifts]}, 0)


def _score_log_ratio(before: np.ndarray, after: np.ndarray, names: tuple[str, ...], ok: np.ndarray,
                     stats: dict, layers: bool) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    acc = np.zeros(before.shape[1:], np.float64)
    for b, shift in enumerate(_floats(stats["offsets"])):
        with np.errstate(invalid="ignore", divide="ignore"):
            acc += np.abs(np.log((after[b] + shift) / (before[b] + shift)))
    return _finish(acc / before.shape[0], ok), (_index_layers(before, after, names, ok) if layers else {})


def log_ratio(before: np.ndarray, after: np.ndarray, *, band_names: Sequence[str] | None = None,
              pixel_size_m: float | None = None, valid: np.ndarray | None = None) -> ChangeScore:
    """Log-ratio: mean absolute log of the after/before ratio over bands.

    The ratio cancels multiplicative effects (illumination, speckle); bands with
    zero or negative values are shifted to be positive first.  Statistics:
    ``offsets`` (per band, added to both dates: minus the smallest value when it is
    not positive, plus 1 % of the before band's median absolute value).
    {parameters}
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
    return change_score(before, after, method="log-ratio", band_names=band_names, pixel_size_m=pixel_size_m,
                        valid=valid)


def _index_delta(before, after, names, ok, name: str) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        d = _idx.compute_index(after, names, name) - _idx.compute_index(before, names, name)
    return _finish(d, ok)


def _index_entry(name: str) -> tuple[FitFn, ScoreFn, Callable[..., ChangeScore]]:
    method_name = f"index:{name}"

    def fit(before: np.ndarray, after: np.ndarray, names: tuple[str, ...], ok: np.ndarray,
        pixel_size_m: float | None) -> MethodFit:
        _idx.find_bands(names, _idx.INDEX_BANDS[name], method=method_name)
        if not np.isfinite(_index_delta(before, after, names, ok, name)).any():
            raise EmptyDataError(
                f"index {name} is undefined (zero denominator or NaN) at every valid pixel of one of the dates; "
                f"check the bands {list(_idx.INDEX_BANDS[name])} hold reflectances, or pick another method"
            )
        return MethodFit({}, "otsu", {"index": name, "bands": list(_idx.INDEX_BANDS[name])}, 0)

    def score(before: np.ndarray, after: np.ndarray, names: tuple[str, ...], ok: np.ndarray,
          stats: dict, layers: bool) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        d = _index_delta(before, after, names, ok, name)
        extra = {}
        if layers:
            extra = _index_layers(before, after, names, ok)
            extra[f"d_{name}"] = d
        return _finish(np.abs(d), ok), extra

    def function(before: np.ndarray, after: np.ndarray, *, band_names: Sequence[str] | None = None,
                 pixel_size_m: float | None = None, valid: np.ndarray | None = None) -> ChangeScore:
        return change_score(before, after, method=method_name, band_names=band_names, pixel_size_m=pixel_size_m,
                            valid=valid)

    function.__name__ = f"index_{name}"
    function.__qualname__ = f"index_{name}"
    function.__doc__ = f"""Absolute change of {name.upper() if name != 'brightness' else 'brightness'} (see :mod:`changedet.indices`).

    ``layers["d_{name}"]`` holds the signed change (after - before).  No statistics:
    the score of a pixel is its own index change.
{_METHOD_PARAMETERS}    References
    ----------
    Index differencing: Lyon, J. G., Yuan, D., Lunetta, R. S., & Elvidge, C. D. (1998).
    A change detection experiment using vegetation indices. Photogrammetric
    Engineering and Remote Sensing, 64(2), 143-150.
    """
    return fit, score, function


def _difference_image(before, after, ok, stats) -> np.ndarray:
    """Change magnitude per pixel on normalized bands (the grey-level difference image of
    Celik), float64, 0 where not valid."""
    zb, za = _normalized_pair(before, after, range(before.shape[0]), stats)
    d = za - zb
    return np.where(ok, np.sqrt(np.sum(d * d, axis=0)), 0.0).astype(np.float64)


def _pca_features(diff_img: np.ndarray, block: int, mean: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """Every pixel's block x block neighbourhood (edge-padded) projected on the PCA basis: (rows * cols, k)."""
    from numpy.lib.stride_tricks import sliding_window_view

    rows, cols = diff_img.shape
    lo = (block - 1) // 2
    padded = np.pad(diff_img, ((lo, block - 1 - lo), (lo, block - 1 - lo)), mode="edge")
    windows = sliding_window_view(padded, (block, block)).reshape(rows * cols, block * block)
    return (windows - mean) @ basis


def _pca_position(feats: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Position between the no-change (0) and change (1) centres along the line joining them."""
    axis = centres[1] - centres[0]
    denom = float(axis @ axis)
    return (feats - centres[0]) @ axis / denom if denom > 0 else np.zeros(feats.shape[0])


def _kmeans(data: np.ndarray, init: np.ndarray, *, iterations: int) -> np.ndarray:
    """The centres of ``scipy.cluster.vq.kmeans2(data, init, minit="matrix", iter=iterations)``,
    without the iterations after they stop moving (each would give the same centres again).

    ``data`` is (n, k), ``init`` and the result (clusters, k) arrays of float64.
    """
    from scipy.cluster.vq import kmeans2

    centres = np.array(init, dtype=np.float64)
    for _ in range(iterations):
        # one step of kmeans2: nearest centre of every point, then the centres as their means
        new, _ = kmeans2(data, centres, minit="matrix", iter=1)
        if np.array_equal(new, centres):
            break
        centres = new
    return centres


def _fit_pca_kmeans(before: np.ndarray, after: np.ndarray, names: tuple[str, ...], ok: np.ndarray,
                    pixel_size_m: float | None, *, block: int = 4) -> MethodFit:
    rows, cols = ok.shape
    if rows < block or cols < block:
        raise InvalidParameterError(f"pca-kmeans needs images of at least {block}x{block} pixels, got {rows}x{cols}")
    norm = _fit_normalization(before, after, ok, range(before.shape[0]))
    diff_img = _difference_image(before, after, ok, norm)
    # PCA basis from non-overlapping blocks
    r, c = rows // block * block, cols // block * block
    blocks = (diff_img[:r, :c].reshape(r // block, block, c // block, block).transpose(0, 2, 1, 3)
              .reshape(-1, block * block))
    mean = blocks.mean(axis=0)
    cov = np.cov(blocks - mean, rowvar=False) if blocks.shape[0] > 1 else np.eye(block * block)
    eigval, eigvec = np.linalg.eigh(np.atleast_2d(cov))
    order = np.argsort(eigval)[::-1]
    eigval, eigvec = eigval[order], eigvec[:, order]
    total = eigval.clip(min=0).sum()
    k = int(np.searchsorted(np.cumsum(eigval.clip(min=0)) / total, 0.9) + 1) if total > 0 else 1
    # the basis as the score reads it back from the statistics (a C-ordered copy)
    basis = _array(eigvec[:, :k].tolist())
    feats = _pca_features(diff_img, block, mean, basis)
    okf = ok.ravel()
    sample = feats[okf]
    if sample.shape[0] > 200_000:
        sample = sample[np.random.default_rng(0).choice(sample.shape[0], 200_000, replace=False)]
    if np.ptp(sample, axis=0).max() <= 1e-12:
        centres = np.zeros((2, k))  # one cluster: every score 0
    else:
        # start from the lowest- and highest-difference pixels so the labels are reproducible
        mags = diff_img.ravel()[okf]
        init = np.stack([feats[okf][np.argmin(mags)], feats[okf][np.argmax(mags)]])
        centres = _kmeans(sample, init, iterations=50)
        # the change cluster is the one whose pixels have the larger mean difference
        labels = np.argmin(((feats[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
        means = [diff_img.ravel()[(labels == j) & okf].mean() if np.any((labels == j) & okf) else -np.inf
                 for j in range(2)]
        if means[0] > means[1]:
            centres = centres[::-1]
    stats = {**norm, "block": int(block), "pca_mean": mean.tolist(), "pca_basis": basis.tolist(),
             "kmeans_centres": np.ascontiguousarray(centres).tolist()}
    details = {"block": int(block), "components": k, "kmeans_threshold": 0.5}
    # the fit has every pixel's features: the score of the fitted pair is one product away
    score = _finish(_pca_position(feats, _array(stats["kmeans_centres"])).reshape(rows, cols), ok)
    sample_result = ChangeScore(score, "pca-kmeans", "isodata", copy.deepcopy(details), {})
    return MethodFit(stats, "isodata", details, block - 1 - (block - 1) // 2, sample_result)


def _score_pca_kmeans(before: np.ndarray, after: np.ndarray, names: tuple[str, ...], ok: np.ndarray,
                      stats: dict, layers: bool) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    diff_img = _difference_image(before, after, ok, stats)
    feats = _pca_features(diff_img, int(stats["block"]), _array(stats["pca_mean"]), _array(stats["pca_basis"]))
    return _finish(_pca_position(feats, _array(stats["kmeans_centres"])).reshape(ok.shape), ok), {}


def pca_kmeans(before: np.ndarray, after: np.ndarray, *, band_names: Sequence[str] | None = None,
               pixel_size_m: float | None = None, valid: np.ndarray | None = None, block: int = 4) -> ChangeScore:
    """PCA of h x h difference-image blocks, then 2-means clustering (Celik 2009).

    The difference image (standardized change magnitude over the bands) is cut
    into non-overlapping ``block`` x ``block`` blocks; PCA of those blocks gives an
    eigenvector space; every pixel's neighbourhood is projected onto the
    eigenvectors explaining 90 % of the variance and the feature vectors are split
    by k-means (k = 2).  The score is the pixel's position between the two cluster
    centres along the line joining them (0 at the no-change centre, 1 at the
    change centre), so the k-means decision is ``score > 0.5``
    (``details["kmeans_threshold"]``); the suggested threshold is ``isodata``, the
    one-dimensional 2-means split.  Statistics: the normalization of :func:`cva`,
    ``block``, ``pca_mean`` (block * block), ``pca_basis`` (block * block, k) and
    ``kmeans_centres`` (2, k: no change, change).

    Parameters
    ----------
    before, after : (bands, rows, cols) ndarray of float
        The two dates on one grid with the same bands; NaN = nodata.
    band_names : sequence of str, optional
        One name per band.
    pixel_size_m : float, optional
        Ground sampling distance.
    valid : (rows, cols) ndarray of bool, optional
        Pixels to use (False = cloud, nodata, outside the overlap).
    block : int, default 4
        Side of the blocks, in pixels.

    Returns
    -------
    ChangeScore
        ``score`` (rows, cols) float32 (0 at the no-change centre, 1 at the change
        centre), NaN where not valid.

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
    if not isinstance(block, (int, np.integer)) or isinstance(block, bool) or block < 2:
        raise InvalidParameterError(f"block must be an integer >= 2, got {block!r}")
    _check_method("pca-kmeans", pixel_size_m)
    pair = _prepare(before, after, band_names, valid)
    fitted = _fit_prepared("pca-kmeans", pair, pixel_size_m, functools.partial(_fit_pca_kmeans, block=int(block)))
    return fitted._score(pair, True)


def _fit_imad(before: np.ndarray, after: np.ndarray, names: tuple[str, ...], ok: np.ndarray,
              pixel_size_m: float | None) -> MethodFit:
    from .normalize import fit_irmad

    t = fit_irmad(before, after, valid=ok)
    stats = {"irmad_vectors_before": t.vectors_before.tolist(), "irmad_vectors_after": t.vectors_after.tolist(),
             "irmad_mean_before": t.mean_before.tolist(), "irmad_mean_after": t.mean_after.tolist(),
             "mad_variances": t.variances.tolist(), "canonical_correlations": t.rho.tolist(),
             "iterations": int(t.iterations), "converged": bool(t.converged)}
    details = {"bands": list(names), "iterations": int(t.iterations), "converged": bool(t.converged),
               "canonical_correlations": [round(float(v), 6) for v in t.rho]}
    return MethodFit(stats, "chi2", details, 0)


def _score_imad(before: np.ndarray, after: np.ndarray, names: tuple[str, ...], ok: np.ndarray,
                stats: dict, layers: bool) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    from scipy import special

    from .normalize import IRMADTransform

    t = IRMADTransform(_array(stats["irmad_vectors_before"]), _array(stats["irmad_vectors_after"]),
                       _array(stats["irmad_mean_before"]), _array(stats["irmad_mean_after"]),
                       _array(stats["mad_variances"]), _array(stats["canonical_correlations"]),
                       int(stats["iterations"]), bool(stats["converged"]))
    extra = {}
    if layers:
        res = t.apply(before, after, valid=ok)
        chi2 = res.chi2
        extra["chi2"] = _finish(chi2, ok)
        for i in range(res.mad.shape[0]):
            extra[f"mad{i + 1}"] = _finish(res.mad[i], ok)
    else:  # a window: the statistic alone
        chi2 = t.statistic(before, after, valid=ok)
    prob = np.where(ok, special.chdtr(before.shape[0], np.nan_to_num(chi2, nan=0.0)), np.nan)
    return _finish(prob, ok), extra


def imad(before: np.ndarray, after: np.ndarray, *, band_names: Sequence[str] | None = None,
         pixel_size_m: float | None = None, valid: np.ndarray | None = None) -> ChangeScore:
    """Iteratively reweighted MAD: chi-square change probability (Nielsen 2007).

    The score is the probability of change, the chi-square distribution function
    (``bands`` degrees of freedom) of the sum of squared standardized MAD variates;
    the suggested threshold is ``chi2`` (change where the no-change hypothesis is
    rejected at significance 0.01).  ``layers["chi2"]`` holds the statistic itself and
    ``layers["mad1"]``... the MAD variates.  Invariant to any linear gain/offset of
    either date's bands.  Statistics: the IR-MAD transform
    (:class:`changedet.normalize.IRMADTransform`): ``irmad_vectors_before``,
    ``irmad_vectors_after`` (bands, bands), ``irmad_mean_before``,
    ``irmad_mean_after``, ``mad_variances``, ``canonical_correlations`` (bands).
    {parameters}
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
    return change_score(before, after, method="imad", band_names=band_names, pixel_size_m=pixel_size_m, valid=valid)


def _fit_ssim(before: np.ndarray, after: np.ndarray, names: tuple[str, ...], ok: np.ndarray,
              pixel_size_m: float | None) -> MethodFit:
    rows, cols = ok.shape
    if min(rows, cols) < 7:
        raise InvalidParameterError(f"ssim needs images of at least 7x7 pixels, got {rows}x{cols}")
    bands = range(before.shape[0])
    stats = _fit_normalization(before, after, ok, bands)
    stats["ssim_range"] = _ssim_ranges(*_normalized_pair(before, after, bands, stats), ok)
    return MethodFit(stats, "otsu", {"bands": list(names), "sigma": _SSIM_SIGMA}, _SSIM_REACH)


def _score_ssim(before: np.ndarray, after: np.ndarray, names: tuple[str, ...], ok: np.ndarray,
                stats: dict, layers: bool) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    zb, za = _normalized_pair(before, after, range(before.shape[0]), stats)
    return _finish(_ssim_pair(zb, za, ok, stats["ssim_range"]), ok), {}


def ssim(before: np.ndarray, after: np.ndarray, *, band_names: Sequence[str] | None = None,
         pixel_size_m: float | None = None, valid: np.ndarray | None = None) -> ChangeScore:
    """Structural dissimilarity: 1 - SSIM, averaged over bands (Wang et al. 2004).

    The after image is first put on the before image's radiometry (IR-MAD
    invariant pixels, Canty & Nielsen 2008), so the luminance and contrast terms do
    not react to a global gain/offset; Gaussian window sigma 1.5 px.  Statistics:
    the normalization of :func:`cva` and ``ssim_range`` (per band, [min, max] of
    both normalized dates: SSIM's data range).
    {parameters}
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
    return change_score(before, after, method="ssim", band_names=band_names, pixel_size_m=pixel_size_m, valid=valid)


# --- auto ------------------------------------------------------------------------

def _fit_auto(before: np.ndarray, after: np.ndarray, names: tuple[str, ...], ok: np.ndarray,
              pixel_size_m: float | None) -> MethodFit:
    found = _idx.resolve_bands(names)
    high_res = pixel_size_m is not None and pixel_size_m < 5.0
    if "red" in found and "nir" in found and not high_res:
        return _fit_urban_spectral(before, after, names, ok, pixel_size_m)
    return _fit_structural_colour(before, after, names, ok, pixel_size_m)


def _score_auto(before: np.ndarray, after: np.ndarray, names: tuple[str, ...], ok: np.ndarray,
                stats: dict, layers: bool) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    if stats["choice"] == "urban-spectral":
        return _score_urban_spectral(before, after, names, ok, stats, layers)
    return _score_structural_colour(before, after, names, ok, stats, layers)


#: Hysteresis of the urban-spectral score (factors of its 6-sigma threshold): a changed area is
#: kept when it reaches 2 x the threshold somewhere (or is large:
#: :data:`changedet.window.HYSTERESIS_KEEP_M2`), and takes in the pixels above 0.5 x the threshold
#: next to it (:data:`changedet.window.HYSTERESIS_REACH_PX`).  Weak isolated specks (noise, a
#: roof that changed colour, a field's edge) go; the rim of a strong change, which the score
#: reads weaker where it mixes with the ground around it, stays.  Measured in
#: ``docs/measurements.md``.
URBAN_HYSTERESIS = (0.5, 2.0)


def _fit_urban_spectral(before: np.ndarray, after: np.ndarray, names: tuple[str, ...], ok: np.ndarray,
                        pixel_size_m: float | None) -> MethodFit:
    """The default for multispectral images with red and nir (10-30 m)."""
    found = _idx.resolve_bands(names)
    use = [found[b] for b in ("blue", "green", "red", "nir") if b in found]
    px = pixel_size_m or 10.0
    size = max(3, int(round(30.0 / px)) | 1)
    # each date's NDVI and water index, read on its own reflectances
    if "swir16" in found and "green" in found:
        water_index, water_bands = "mndwi", [found["green"], found["swir16"]]
    elif "green" in found:
        water_index, water_bands = "ndwi", [found["green"], found["nir"]]
    else:
        water_index, water_bands = None, None
    bc, ac, okc = _c32(before), _c32(after), _cbool(ok)
    norm = _fit_normalization(bc, ac, ok, use)
    raw = _normalized_magnitude(bc, ac, use, norm)
    # the z-score is of the magnitude the score uses: the smaller of a pixel's own and its 30 m mean
    mean = _kernels.box_mean_valid(raw[np.newaxis], okc, size)[0]
    mag = np.minimum(np.where(ok, raw, np.float32(np.nan)), mean)
    z_median, z_mad = _robust_z_stats(mag, ok)
    stats = {
        "choice": "urban-spectral", "band_index": use, "window_px": size, **norm,
        "ndvi_band_index": [found["nir"], found["red"]], "water_index": water_index,
        "water_band_index": water_bands,
        "mixed_base": _median_finite(raw, ok), "z_median": z_median, "z_mad": z_mad,
    }
    details = {
        "auto_choice": "urban-spectral",
        "bands": [names[i] for i in use],
        "normalization": _normalization_name(norm),
        "window_px": size,
        "water_index": water_index,
        "suppressed": "water on both dates, vegetation (NDVI > 0.5) on both dates",
    }
    # 30 m means and the rim weight's 3 x 3 means and 5 x 5 maxima
    return MethodFit(stats, "sigma", details, max(size // 2, _MIXED_REACH), hysteresis=URBAN_HYSTERESIS)


def _score_urban_spectral(before: np.ndarray, after: np.ndarray, names: tuple[str, ...], ok: np.ndarray,
                          stats: dict, layers: bool) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    bc, ac, okc = _c32(before), _c32(after), _cbool(ok)
    pairs = [stats["ndvi_band_index"]] + (
        [stats["water_band_index"]] if stats["water_band_index"] is not None else [])
    # the magnitude and each date's NDVI and water index in one stack: all their 30 m
    # means share one valid count
    stack = np.empty((1 + 2 * len(pairs), *ok.shape), np.float32)
    raw = _normalized_magnitude(bc, ac, stats["band_index"], stats, out=stack[0])
    nd = np.array(pairs, dtype=np.int64)
    _kernels.normalized_differences(bc, nd, stack, 1, 2)
    _kernels.normalized_differences(ac, nd, stack, 2, 2)
    smoothed = _kernels.box_mean_valid(stack, okc, int(stats["window_px"]))
    # a pixel counts as much as both it and its neighbourhood changed: the window mean
    # silences isolated noise, the minimum (taken by the score kernel) keeps the mean
    # from growing objects by a pixel
    w_mixed = _mixed_pixel_weight(raw, ok, _float(stats["mixed_base"]))
    # in robust standard deviations of the whole scene's change magnitude, before any
    # suppression, so the threshold does not move with how much of the scene is suppressed
    zmed, zmad = _z_params(stats["z_median"], stats["z_mad"])
    # water on both dates (turbidity, waves, sun glint) and vegetation on both dates
    # (phenology, crops) are not construction: soft weights, 0.5 at the class boundary.
    # They read each date's own reflectances: NDVI 0.5 and MNDWI 0 are physical
    # boundaries, which a mapping onto the other date's radiometry would move.
    # MNDWI separates water at 0 (Xu 2006); green/nir NDWI puts bright roofs and
    # concrete close to 0, so without swir water must reach 0.2 (McFeeters 1996)
    w0 = 0.0 if stats["water_index"] == "mndwi" else 0.2
    score, mag_k, w_water, w_veg = _kernels.urban_score(raw, smoothed, w_mixed, okc, zmed, zmad, w0,
                                                        stats["water_index"] is not None, bool(layers))
    if not layers:
        return score, {}
    extra = {"change_magnitude": mag_k, "weight_water": w_water, "weight_vegetation": w_veg}
    extra.update(_index_layers(before, after, names, ok))
    return score, extra


def _structural_parts(before, after, ok, use, stats) -> tuple[np.ndarray, np.ndarray]:
    """Structural dissimilarity (1 - SSIM) and colour change magnitude of the normalized pair
    (shift-tolerant within ``stats["tolerance_px"]``, 0 for fits that predate it)."""
    zb, za = _normalized_pair(before, after, use, stats)
    structure = _ssim_pair(zb, za, ok, stats["ssim_range"])
    return structure, _shift_tolerant_colour(zb, za, ok, int(stats.get("tolerance_px", 0)))


#: sub-metre pairs: the colour change tolerates a local misregistration of this much (m)
#: between the dates; measured on the LEVIR-CD tiles (0.5 m, existing houses a pixel or
#: more apart between dates): 1 pixel lifts their pooled F1 from 0.23 to 0.32, 2 pixels
#: to 0.31, and at 1 m a pixel costs DSIFN 0.02, so pixels of 1 m get none
_TOLERANCE_M = 0.75


def _tolerance_px(pixel_size_m: float) -> int:
    return int(np.floor(_TOLERANCE_M / pixel_size_m + 1e-9))


def _shift_tolerant_colour(zb: np.ndarray, za: np.ndarray, ok: np.ndarray, radius: int) -> np.ndarray:
    """Colour change magnitude that tolerates a local misregistration of ``radius`` pixels.

    Per pixel, the distance from the after colour to the closest before colour within
    the disc of ``radius`` pixels, and from the before colour to the closest after colour
    there; the larger of the two.  The edge of a building that stands in both dates a
    pixel apart (relief displacement, another view angle) finds its match and drops; a
    new roof has no match in the before image and keeps its full change; a demolished one
    has none in the after image.  Neighbours outside the image or not valid are not
    candidates; ``radius`` 0 is the plain per-pixel magnitude.  Known as neighbourhood
    or shift-tolerant differencing.

    Parameters
    ----------
    zb, za : (bands, rows, cols) ndarray of float32
        The two dates on one radiometric scale.
    ok : (rows, cols) ndarray of bool
    radius : int

    Returns
    -------
    (rows, cols) ndarray of float32
        NaN where the pixel itself is not finite in both.
    """
    d = za - zb
    if radius <= 0:
        return np.sqrt(np.sum(d * d, axis=0))
    # squared distances, one square root at the end (the same values: it is monotonic)
    direct = np.sum(d * d, axis=0)
    rows, cols = ok.shape
    all_ok = bool(ok.all())
    to_before = direct.copy()  # the after colour against the before colours around it
    to_after = direct  # the before colour against the after colours around it
    for dr in range(-radius, radius + 1):
        for dc in range(-radius, radius + 1):
            if (dr == 0 and dc == 0) or dr * dr + dc * dc > radius * radius + radius:
                continue
            r0, r1 = max(0, -dr), rows - max(0, dr)
            c0, c1 = max(0, -dc), cols - max(0, dc)
            if r1 <= r0 or c1 <= c0:
                continue
            here = (slice(r0, r1), slice(c0, c1))
            there = (slice(r0 + dr, r1 + dr), slice(c0 + dc, c1 + dc))
            for own, other, best in ((za, zb, to_before), (zb, za, to_after)):
                e = own[(slice(None), *here)] - other[(slice(None), *there)]
                e *= e
                e2 = e.sum(axis=0)
                if not all_ok:
                    e2[~ok[there]] = np.inf
                np.minimum(best[here], e2, out=best[here])
    return np.sqrt(np.maximum(to_before, to_after))


#: sub-metre pairs: a pixel whose after image is this many robust spreads greener than
#: the scene's median (chromatic excess green) is a lawn, a tree or a field, not a roof
#: or cleared ground; its positive score weighs 0 from 0.25 above, 1 from 0.25 below.
#: Measured on LEVIR-CD (with the shift tolerance): pooled F1 0.32 without, 0.37 at 1.0,
#: 0.35 at 1.5, 0.34 at 2.0
_VEGETATION_Z = 1.0
#: the spread of excess green is at least this: on a scene of one bare ground (spread of
#: its texture alone) the ground's own texture would read as vegetation
_VEGETATION_MIN_SPREAD = 0.02


def _excess_green(image: np.ndarray, rgb: Sequence[int]) -> np.ndarray:
    """Chromatic excess green (2g - r - b) / (r + g + b) of an image's own values (0 where
    the sum is not positive or a value is not finite)."""
    e = _idx.excess_green(*(image[i].astype(np.float32) for i in rgb))
    return np.nan_to_num(e, nan=0.0).astype(np.float32, copy=False)


def _vegetation_weight(after: np.ndarray, ok: np.ndarray, stats: dict) -> np.ndarray | None:
    """Weight near 0 where the after image is vegetation (its 3 x 3 excess green well above
    the fitted scene median); None when the fit has no vegetation statistics."""
    med, spread = stats.get("vegetation_median"), stats.get("vegetation_spread")
    if med is None or spread is None:
        return None
    z = (_smooth(_excess_green(after, stats["vegetation_band_index"]), ok, 3) - float(med)) / float(spread)
    w = np.clip((_VEGETATION_Z - z) / 0.5 + 0.5, 0.0, 1.0)
    return np.where(np.isfinite(w), w, np.float32(1.0)).astype(np.float32)


#: the large scale of the high-resolution score: the colour change averaged over about
#: 10 m (sensor noise down), then opened with a 40 m square (kept only where a whole
#: 40 x 40 m square changed: a cleared plot, not a road, a yard or a roof's rim)
_OPEN_DENOISE_M = 10.0
_OPEN_M = 40.0


def _opened_colour(colour: np.ndarray, ok: np.ndarray, denoise: int, opening: int) -> np.ndarray:
    """Grey-scale opening (minimum then maximum over opening x opening) of the colour change's
    denoise x denoise window mean; not-valid pixels count as unchanged."""
    from scipy import ndimage

    m = _smooth(colour, ok, denoise)
    m = np.where(np.isfinite(m), m, np.float32(0.0)).astype(np.float32)
    return ndimage.maximum_filter(ndimage.minimum_filter(m, opening, mode="nearest"), opening, mode="nearest")


def _fit_structural_colour(before: np.ndarray, after: np.ndarray, names: tuple[str, ...], ok: np.ndarray,
                           pixel_size_m: float | None) -> MethodFit:
    """The default for high-resolution or RGB-only images: structure + colour."""
    found = _idx.resolve_bands(names)
    use = [found[b] for b in ("red", "green", "blue") if b in found] or list(range(before.shape[0]))
    if min(ok.shape) < 7:
        raise InvalidParameterError(f"auto needs images of at least 7x7 pixels, got {ok.shape[0]}x{ok.shape[1]}")
    px = pixel_size_m or 1.0
    size = max(3, int(round(3.0 / px)) | 1)
    tolerance = _tolerance_px(px)
    stats = {"choice": "structure+colour", "band_index": use, "window_px": size, "tolerance_px": tolerance,
             **_fit_normalization(before, after, ok, use)}
    rgb = [found[b] for b in ("red", "green", "blue")] if all(b in found for b in ("red", "green", "blue")) else None
    # below 1 m a new lawn or tree is a change but not construction (the building truths of
    # LEVIR-CD and of benchmarks/sites.py): the vegetation of the after image, relative to the
    # scene (a per-band gain or haze moves absolute excess green).  At 1 m it would cost DSIFN,
    # whose land-cover truth counts vegetation, 0.026 pooled F1 (measured)
    if rgb is not None and px < 1.0:
        veg = _smooth(_excess_green(after, rgb), ok, 3)
        sel = ok & np.isfinite(veg)
        v_med, v_spread = _robust_stats(veg, sel) if sel.any() else (None, None)
        if v_spread is not None:
            v_spread = max(v_spread, _VEGETATION_MIN_SPREAD)
    else:
        v_med, v_spread = None, None
    stats.update({"vegetation_band_index": rgb, "vegetation_median": v_med, "vegetation_spread": v_spread})
    stats["ssim_range"] = _ssim_ranges(*_normalized_pair(before, after, use, stats), ok)
    structure, colour = _structural_parts(before, after, ok, use, stats)
    zs = _robust_z_stats(_smooth(structure, ok, size), ok)
    zc = _robust_z_stats(_smooth(colour, ok, size), ok)
    stats.update({"z_structure_median": zs[0], "z_structure_mad": zs[1],
                  "z_colour_median": zc[0], "z_colour_mad": zc[1], "mixed_base": _median_finite(colour, ok)})
    denoise = max(size, int(round(_OPEN_DENOISE_M / px)) | 1)
    opening = max(denoise, int(round(_OPEN_M / px)) | 1)
    stats.update({"open_denoise_px": denoise, "open_px": opening})
    # the opening flattens the field it keeps: on a small or quiet scene its own spread is
    # nearly nothing and would turn the faintest variation into a large z-score, so the
    # spread is at least half that of the averaged change before the opening (measured:
    # a 96 x 128 px pair with one planted roof gave 10 areas instead of 1 without it;
    # over benchmarks/quality.py it moves synthetic +0.004, levir -0.016, dsifn -0.010)
    zo = _robust_z_stats(_opened_colour(colour, ok, denoise, opening), ok)
    zd = _robust_z_stats(_smooth(colour, ok, denoise), ok)
    spread = max(zo[1], 0.5 * zd[1]) if zo[1] is not None and zd[1] is not None else zo[1]
    stats.update({"z_open_median": zo[0], "z_open_mad": spread})
    details = {"auto_choice": "structure+colour", "bands": [names[i] for i in use], "window_px": size,
               "normalization": _normalization_name(stats), "shift_tolerance_px": tolerance}
    if v_med is not None:
        details["suppressed"] = "change where the after image is vegetation (excess green above the scene's)"
    if not found and len(names) >= 4:
        # a 4-band stack without band names is most often blue, green, red, near-infrared
        # (Sentinel-2, PlanetScope) or red, green, blue, near-infrared (NAIP): guessing would
        # be wrong half the time, so say what was done and how to do better
        details["note"] = (
            f"the {len(names)} bands carry no names ({', '.join(names)}), so 'auto' could not tell which is red "
            "or near-infrared and compared all of them by structure and colour; when they are e.g. blue, green, "
            "red, near-infrared, write their names into the files (rasterio: dst.set_band_description(1, 'B02') "
            "..., or a band folder of *_B02.tif, *_B03.tif, ...) to use the spectral method with its classes"
        )
    # SSIM's Gaussian window, then the window mean; the rim weight on the colour magnitude;
    # the colour magnitude itself reaches the shift tolerance
    return MethodFit(stats, "otsu", details, tolerance + max(_SSIM_REACH + size // 2, _MIXED_REACH,
                                                             denoise // 2 + 2 * (opening // 2) + 1))


def _score_structural_colour(before: np.ndarray, after: np.ndarray, names: tuple[str, ...], ok: np.ndarray,
                             stats: dict, layers: bool) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    size = int(stats["window_px"])
    structure, colour = _structural_parts(before, after, ok, stats["band_index"], stats)
    zs_med, zs_mad = _z_params(stats["z_structure_median"], stats["z_structure_mad"])
    zc_med, zc_mad = _z_params(stats["z_colour_median"], stats["z_colour_mad"])
    score = 0.5 * ((_smooth(structure, ok, size) - zs_med) / zs_mad + (_smooth(colour, ok, size) - zc_med) / zc_mad)
    # SSIM windows reach a few pixels past an object; the pixel-exact colour change
    # decides the outline (half-contrast rule on the colour magnitude)
    score = np.where(score > 0, score * _mixed_pixel_weight(colour, ok, _float(stats["mixed_base"])), score)
    # two scales: a large homogeneous change (a cleared and graded plot) hides in the sensor
    # noise at 3 m but stands far out of it once averaged and opened; as a robust z-score of
    # the opened change over the scene (whose noise the averaging has made small)
    opened = _opened_colour(colour, ok, int(stats["open_denoise_px"]), int(stats["open_px"]))
    zo_med, zo_mad = _z_params(stats["z_open_median"], stats["z_open_mad"])
    z_open = (opened - zo_med) / zo_mad
    score = np.maximum(score, z_open)
    w_veg = _vegetation_weight(after, ok, stats)
    if w_veg is not None:  # a new lawn or tree is not construction
        score = np.where(score > 0, score * w_veg, score)
    # z-scores of real change span orders of magnitude (a new roof hundreds, a cleared
    # plot or a faint roof a few): on a log scale the two classes the threshold splits
    # have comparable spreads, so Otsu no longer separates the strongest roofs from
    # every other change.  Monotonic: the order of pixels is unchanged.
    score = np.sign(score) * np.log1p(np.abs(score))
    extra = {}
    if layers:
        extra = _index_layers(before, after, names, ok)
        extra["structure"] = _finish(structure, ok)
        extra["colour"] = _finish(colour, ok)
        extra["large_change"] = _finish(z_open, ok)
        if w_veg is not None:
            extra["weight_vegetation"] = _finish(w_veg, ok)
    return _finish(score, ok), extra


def auto(before: np.ndarray, after: np.ndarray, *, band_names: Sequence[str] | None = None,
         pixel_size_m: float | None = None, valid: np.ndarray | None = None) -> ChangeScore:
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

    Threshold: ``sigma`` (6 robust standard deviations).  Statistics: the
    normalization (``irmad_gains``, ``irmad_offsets``, ``before_median``,
    ``before_spread``), ``mixed_base`` (the median magnitude, base of the rim
    rule) and ``z_median``, ``z_mad`` of the magnitude of step 2.

    High-resolution (< 5 m) or RGB images, change at two scales:

    1. the IR-MAD-normalized pair (as above);
    2. small and structured change (a roof): the mean of the robust z-scores of
       structural dissimilarity (1 - SSIM, Wang et al. 2004) and colour change
       magnitude over about 3 m, with the same rim rule on the colour magnitude;
    3. large and homogeneous change (a cleared and graded plot, which hides in
       the sensor noise at 3 m): the colour change magnitude averaged over about
       10 m, then opened (minimum, then maximum) with a 40 m square, so it is
       kept only where a whole 40 x 40 m square changed (not a road, a yard or a
       roof's rim), as a robust z-score over the scene;
    4. per pixel the larger of the two, on a log scale ``sign(z) log(1 + |z|)``:
       new roofs reach z in the hundreds and cleared ground tens, and on a
       linear scale Otsu split the brightest roofs from every other change.

    Pixels finer than 1 m add two rules for the questions asked at that scale
    (new buildings, cleared plots):

    - the colour change tolerates a local misregistration of a pixel (up to
      0.75 m): per pixel the distance from each date's colour to the closest
      colour of the other date within that radius, the larger of the two
      (neighbourhood differencing), so the edges of a building that stands in
      both dates a pixel apart (relief displacement, another view angle) drop,
      while a new or demolished one keeps its full change;
    - where the after image is vegetation (its chromatic excess green
      ``(2g - r - b) / (r + g + b)`` a robust spread, at least 0.02, above the
      scene's median) the positive score weighs 0: a new lawn or tree is not
      construction.  Red, green and blue are needed.

    Threshold: ``otsu``.  Statistics: the normalization, ``ssim_range``,
    ``tolerance_px``, ``z_structure_median``, ``z_structure_mad``,
    ``z_colour_median``, ``z_colour_mad``, ``mixed_base``, ``open_denoise_px``,
    ``open_px``, ``z_open_median``, ``z_open_mad``, ``vegetation_band_index``,
    ``vegetation_median`` and ``vegetation_spread`` (None at 1 m and coarser);
    ``layers`` add ``large_change`` (the z-score of step 3) and, below 1 m,
    ``weight_vegetation``.

    ``details["auto_choice"]`` (and ``stats["choice"]`` of the fit) says which was
    used; ``layers`` holds index deltas (``d_ndvi``, ``d_ndbi``, ``d_brightness``,
    ``d_ndwi``...) and the components.
    {parameters}
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
    return change_score(before, after, method="auto", band_names=band_names, pixel_size_m=pixel_size_m, valid=valid)


for _fn in (diff, cva, log_ratio, imad, ssim, auto):
    _fn.__doc__ = _fn.__doc__.replace("    {parameters}\n", _METHOD_PARAMETERS)
del _fn


def _index_methods() -> dict[str, Method]:
    out = {}
    for name in _idx.INDICES:
        fit, score, function = _index_entry(name)
        out[f"index:{name}"] = Method(f"index:{name}", fit, score, function)
    return out


#: name -> :class:`Method` (its fit, its score and its public function); a new method
#: is one entry here.
METHODS: dict[str, Method] = {
    "auto": Method("auto", _fit_auto, _score_auto, auto),
    "diff": Method("diff", _fit_diff, _score_diff, diff),
    "log-ratio": Method("log-ratio", _fit_log_ratio, _score_log_ratio, log_ratio),
    "cva": Method("cva", _fit_cva, _score_cva, cva),
    **_index_methods(),
    "pca-kmeans": Method("pca-kmeans", _fit_pca_kmeans, _score_pca_kmeans, pca_kmeans),
    "imad": Method("imad", _fit_imad, _score_imad, imad),
    "ssim": Method("ssim", _fit_ssim, _score_ssim, ssim),
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
    """Score change between two co-registered images: the method fitted on the pair, then scored.

    The same as ``fit_method(method, before, after, ...).score(before, after, valid)``.

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
        ``score`` (rows, cols) float32, NaN where not valid.

    Examples
    --------
    >>> import numpy as np
    >>> before = np.random.default_rng(1).normal(size=(4, 16, 16))
    >>> after = before.copy(); after[:, 4:6, 4:6] += 5
    >>> s = change_score(before, after, method="cva", band_names=["B02", "B03", "B04", "B08"])
    >>> bool(s.score[4, 4] > np.nanpercentile(s.score, 95))
    True
    """
    _check_method(method, pixel_size_m)
    pair = _prepare(before, after, band_names, valid)
    fitted = _fit_prepared(method, pair, pixel_size_m)
    if fitted.sample_result is not None:  # the fit scored the pair already (the same values)
        return fitted.sample_result
    return fitted._score(pair, True)
