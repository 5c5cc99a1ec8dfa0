"""The window processor: a window of both dates -> score, valid pixels and outline parts.

Every run goes through here.  :func:`fit_run` takes the statistics a run needs from
the whole pair (in memory) or a sample of it (whole scenes): the co-registration
shift, the change method's fit (:func:`changedet.change.fit_method`), the threshold
and the scene medians of the index changes that name each area's kind of change.
:func:`process_window` then turns one window of both dates (with a halo for the
neighbourhood operations) into the score, the valid pixels and the polygon parts of
its core.  The in-memory run is that processor on one window covering the grid; the
windowed run (:mod:`changedet.tiling`) calls it on every window of the scene.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from . import _select
from . import _kernels
from . import align as _align
from . import change as _change
from . import indices as _indices
from . import masks as _masks
from . import objects as _objects
from . import threshold as _threshold
from .errors import EmptyDataError, InvalidParameterError
from .raster import describe_grid
from .spec import RunSpec, hysteresis_record

__all__ = ["RunFit", "SampleBlock", "WindowResult", "LearnedFit", "outline_parts", "fit_run", "process_window", "changed_pixels",
           "hysteresis_of", "judged_on_core", "outline_layers_of_core", "peak_exempt_px", "HYSTERESIS_REACH_PX",
           "HYSTERESIS_KEEP_M2", "class_layers",
           "class_layer_centres", "edge_statistics", "old_edges", "outline_edge_layers", "OUTLINE_KEY",
           "OUTLINE_EDGES_KEY"]


# --------------------------------------------------------------------------- class layers
def _raw_class_layers(before: np.ndarray, after: np.ndarray, band_names: Sequence[str]) -> dict[str, np.ndarray]:
    """Uncentred index changes; ``_bright_b``/``_bright_a`` are the per-pixel mean brightness."""
    names = list(band_names)
    out: dict[str, np.ndarray] = {}
    with np.errstate(invalid="ignore", divide="ignore"):  # (no catch_warnings: runs in worker threads)
        available = _indices.available_indices(names)
        for idx in ("ndvi", "ndbi", "ndwi"):
            if idx in available:
                out[f"d_{idx}"] = (_indices.compute_index(after, names, idx) - _indices.compute_index(before, names, idx)).astype("float32")
        # mean over bands without np.nanmean: its empty-slice warning is not thread-safe to silence
        for key, img in (("_bright_b", before), ("_bright_a", after)):
            fin = np.isfinite(img)
            n = fin.sum(axis=0)
            out[key] = np.where(n > 0, np.where(fin, img, 0).sum(axis=0) / np.maximum(n, 1), np.nan).astype("float32")
        resolved = _indices.resolve_bands(names)
        if all(k in resolved for k in ("red", "green", "blue")):
            def exg(img: np.ndarray) -> np.ndarray:
                return _indices.excess_green(*(img[resolved[k]] for k in ("red", "green", "blue")))

            exg_a = exg(after)
            out["d_greenness"] = (exg_a - exg(before)).astype("float32")
            out["_exg_a"] = exg_a.astype("float32")
    return out


def class_layer_centres(before: np.ndarray, after: np.ndarray, band_names: Sequence[str], valid: np.ndarray) -> dict[str, float]:
    """Scene medians that :func:`class_layers` removes (computed once, on the whole scene or a sample).

    Parameters
    ----------
    before, after : (bands, rows, cols) ndarray of float
        The two dates on one grid.
    band_names : sequence of str
        One name per band.
    valid : (rows, cols) ndarray of bool
        The pixels to take the medians over.

    Returns
    -------
    dict of str -> float
        The median of each index change (and of each date's brightness).

    Examples
    --------
    >>> b = np.ones((4, 3, 3), "float32"); a = 2 * b
    >>> class_layer_centres(b, a, ["B02", "B03", "B04", "B08"], np.ones((3, 3), bool))["_bright_a"]
    2.0
    """
    return _medians(_raw_class_layers(before, after, band_names), valid)


def _medians(raw: dict[str, np.ndarray], valid: np.ndarray) -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in raw.items():
        vals = v[valid & np.isfinite(v)]
        out[k] = _select.median(vals) if vals.size else (1.0 if k.startswith("_bright") else 0.0)
        if k in ("_exg_a", "_bright_a") and vals.size:
            # the after image's own greenness and brightness scales: its least and most green (bare
            # or built ground, vegetation) and darkest and brightest tenths, which a gain or a tint
            # moves with the pixels
            out[f"{k}_p10"], out[f"{k}_p90"] = _select.percentiles(vals, [10, 90])
    return out


#: The per-pixel layers :func:`class_layers` returns, averaged per changed area (its properties)
#: and read by :func:`changedet.objects.classify_change`.
CLASS_LAYER_KEYS = ("d_ndvi", "d_ndbi", "d_ndwi", "d_brightness", "d_greenness", "after_greenness",
                    "after_brightness")


def class_layers(
    before: np.ndarray,
    after: np.ndarray,
    band_names: Sequence[str],
    valid: np.ndarray,
    *,
    centres: Mapping[str, float] | None = None,
) -> dict[str, np.ndarray]:
    """Per-pixel index changes used to name the kind of change of each polygon.

    ``d_ndvi``, ``d_ndbi``, ``d_ndwi`` (absolute), ``d_brightness`` (relative) and
    ``d_greenness`` (RGB excess green), each centred on the scene median so that a
    gain, offset or seasonal shift common to the scene does not read as change; and
    ``after_greenness`` and ``after_brightness``, the after image's excess green and
    brightness on its own scale (0 at its least green or darkest tenth, 1 at its greenest
    or brightest), when the image has such a spread.

    Parameters
    ----------
    before, after : (bands, rows, cols) ndarray of float
        The two dates on one grid.
    band_names : sequence of str
        One name per band.
    valid : (rows, cols) ndarray of bool
        The pixels the medians are taken over when ``centres`` is None.
    centres : mapping of str -> float, optional
        Fixed medians (from :func:`class_layer_centres`), as every run uses them.

    Returns
    -------
    dict of str -> (rows, cols) ndarray of float32

    Examples
    --------
    >>> b = np.ones((4, 3, 3), "float32"); a = b.copy(); a[3, 0, 0] = 0.2
    >>> out = class_layers(b, a, ["B02", "B03", "B04", "B08"], np.ones((3, 3), bool))
    >>> sorted(out)
    ['after_brightness', 'd_brightness', 'd_greenness', 'd_ndvi', 'd_ndwi']
    >>> bool(out["d_ndvi"][0, 0] < 0)
    True
    """
    return _centred_class_layers(_raw_class_layers(before, after, band_names), valid, centres)


def _centred_class_layers(raw: dict[str, np.ndarray], valid: np.ndarray,
                          centres: Mapping[str, float] | None) -> dict[str, np.ndarray]:
    """:func:`class_layers` from the raw layers (:func:`_raw_class_layers`)."""
    if centres is None:
        centres = _medians(raw, valid)
    out: dict[str, np.ndarray] = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        for k, v in raw.items():
            if not k.startswith("_"):
                out[k] = (v - np.float32(centres.get(k, 0.0))).astype("float32")
        sb, sa = centres.get("_bright_b", 1.0), centres.get("_bright_a", 1.0)
        if sb and sa and math.isfinite(sb) and math.isfinite(sa):
            out["d_brightness"] = ((raw["_bright_a"] / np.float32(sa)) / (raw["_bright_b"] / np.float32(sb)) - 1.0).astype("float32")
        # from RGB alone, an area greener than before is vegetation only when it also looks like
        # the image's vegetation (cars that moved on a car park are greener, and grey); an area
        # that darkened to below the image's darkest tenth is a new shadow, not a roof removed
        for name, key, min_spread in (("after_greenness", "_exg_a", 0.01), ("after_brightness", "_bright_a", None)):
            scaled = _own_scale(raw, centres, key, min_spread)
            if scaled is not None:
                out[name] = scaled
    return out


def _own_scale(raw: Mapping[str, np.ndarray], centres: Mapping[str, float], key: str,
               min_spread: float | None) -> np.ndarray | None:
    """``raw[key]`` on the after image's own scale: 0 at its 10th percentile, 1 at its 90th (from
    ``centres``); None without the layer or the percentiles, or when they are closer than
    ``min_spread`` (None: a millionth of the larger, at least of 1)."""
    lo, hi = centres.get(f"{key}_p10"), centres.get(f"{key}_p90")
    if key not in raw or lo is None or hi is None:
        return None
    if hi - lo <= (min_spread if min_spread is not None else 1e-6 * max(abs(hi), 1.0)):
        return None
    return ((raw[key] - np.float32(lo)) / np.float32(hi - lo)).astype("float32")


# --------------------------------------------------------------------------- the fit
@dataclass(frozen=True, eq=False)
class SampleBlock:
    """One block of both dates the run is fitted on: arrays in the spec's band order.

    ``inside`` is the (rows, cols) bool mask of the area of interest over the block,
    or None (no area of interest).
    """

    before: np.ndarray
    after: np.ndarray
    inside: np.ndarray | None = None


# --------------------------------------------------------------------------- outlines on old edges
#: The per-area layer (and polygon property): the share of an area's outline (its pixels with a
#: 4-neighbour outside it) on an edge the before image already had, see :func:`old_edges`.
OUTLINE_KEY = _objects.OUTLINE_KEY

#: The per-area layer (and polygon property): the share of an area's outline on an edge of either
#: date, the before image's or the registered after image's, see :func:`outline_edge_layers`.
OUTLINE_EDGES_KEY = _objects.OUTLINE_EDGES_KEY


#: Gaussian smoothing (pixels) of the before image's reference band before its gradient.
EDGE_SIGMA_PX = 1.0

#: Reach (pixels) of :func:`old_edges` at a pixel: the smoothing (4 sigma) and the Sobel kernel;
#: an outline pixel is also judged from its neighbours: a window's halo is at least this plus one.
EDGE_REACH_PX = int(math.ceil(4 * EDGE_SIGMA_PX)) + 1

#: A pixel is on an edge of the before image where its gradient is above this quantile of the scene's.
EDGE_QUANTILE = 75.0


def _edge_kernels() -> tuple[np.ndarray, np.ndarray]:
    """The 1-D kernels of a Sobel filter after a Gaussian of :data:`EDGE_SIGMA_PX`: derivative and
    smoothing, each the Gaussian (truncated at 4 sigma) convolved with Sobel's part."""
    r = int(math.ceil(4 * EDGE_SIGMA_PX))
    x = np.arange(-r, r + 1, dtype=np.float64)
    g = np.exp(-0.5 * (x / EDGE_SIGMA_PX) ** 2)
    g /= g.sum()
    return np.convolve(g, [1.0, 0.0, -1.0]), np.convolve(g, [1.0, 2.0, 1.0])


def _edge_magnitude_at(before: np.ndarray, rows: np.ndarray, cols: np.ndarray, stats: Mapping[str, Any]) -> np.ndarray:
    """The before image's gradient magnitude at some pixels: per band, a Sobel filter after a
    Gaussian (one kernel of :data:`EDGE_REACH_PX` pixels each way, the image's edge repeated
    beyond it), over the band's scene standard deviation, NaN as the band's median; the root of
    the sum of squares over the bands.  A pixel's value depends on its neighbourhood alone (a
    window with its halo gives what the whole image gives)."""
    deriv, smooth = (k.astype(np.float32) for k in _edge_kernels())
    r = EDGE_REACH_PX
    off = np.arange(-r, r + 1)
    n_rows, n_cols = before.shape[1:]
    bands = [(np.ascontiguousarray(band).ravel(), np.float32(med), float(std))
             for band, med, std in zip(before, stats["band_median"], stats["band_std"])]
    total = np.zeros(rows.size, np.float64)
    for s in range(0, rows.size, _EDGE_CHUNK_PX):  # (chunks: a patch per pixel and band is 0.5 KiB)
        ri = np.clip(rows[s:s + _EDGE_CHUNK_PX, None] + off[None, :], 0, n_rows - 1)
        ci = np.clip(cols[s:s + _EDGE_CHUNK_PX, None] + off[None, :], 0, n_cols - 1)
        flat = ri[:, :, None] * n_cols + ci[:, None, :]  # (n, rows of the patch, columns of the patch)
        for band, med, std in bands:
            patch = np.take(band, flat).astype(np.float32, copy=False)
            np.copyto(patch, med, where=~np.isfinite(patch))
            gy = (patch @ smooth) @ deriv
            gx = (patch @ deriv) @ smooth
            total[s:s + _EDGE_CHUNK_PX] += (gy.astype(np.float64) ** 2 + gx.astype(np.float64) ** 2) / (std * std)
    return np.sqrt(total)


#: Pixels whose neighbourhoods :func:`_edge_magnitude_at` gathers at once.
_EDGE_CHUNK_PX = 4096


#: Pixels of the fit's sample the scene's edge statistic is taken at (a regular subset).
_EDGE_SAMPLE_PX = 12_000


def edge_statistics(before: np.ndarray, valid: np.ndarray) -> dict[str, Any]:
    """The scene statistics of :func:`old_edges`, fitted once on about 12,000 valid pixels evenly
    spread: each band's median and standard deviation, and the :data:`EDGE_QUANTILE` of the
    gradient magnitude.

    Parameters
    ----------
    before : (bands, rows, cols) ndarray of float
        The before date's spectral bands (the whole scene or sample blocks side by side).
    valid : (rows, cols) ndarray of bool
        Pixels to take the statistics over.

    Returns
    -------
    dict
        ``band_median``, ``band_std`` (lists of float, one per band) and ``strong`` (float).

    Examples
    --------
    >>> b = np.zeros((1, 40, 40), "float32"); b[:, :, 20:] = 100.0
    >>> st = edge_statistics(b, np.ones((40, 40), bool))
    >>> st["strong"] >= 0.0, len(st["band_median"])
    (True, 1)
    """
    where = np.flatnonzero(valid)
    where = where[:: max(1, where.size // _EDGE_SAMPLE_PX)]
    rows, cols = np.divmod(where, valid.shape[1])
    meds, stds = [], []
    for band in before:
        v = band[rows, cols]
        v = v[np.isfinite(v)]
        std = float(np.std(v, dtype=np.float64)) if v.size else 0.0
        meds.append(_select.median(v) if v.size else 0.0)
        stds.append(std if std > 1e-12 else 1.0)
    stats: dict[str, Any] = {"band_median": meds, "band_std": stds, "strong": 0.0}
    if where.size:
        stats["strong"] = float(_select.percentiles(_edge_magnitude_at(before, rows, cols, stats), [EDGE_QUANTILE])[0])
    return stats


def old_edges(before: np.ndarray, stats: Mapping[str, Any], at: np.ndarray) -> np.ndarray:
    """Whether the before image has an edge at some pixels: gradient magnitude above the scene's
    ``strong`` (:func:`edge_statistics`).

    Parameters
    ----------
    before : (bands, rows, cols) ndarray of float
        The before date's spectral bands (a window with a halo of at least :data:`EDGE_REACH_PX`).
    stats : dict
        From :func:`edge_statistics`.
    at : (rows, cols) ndarray of bool
        The pixels to judge.

    Returns
    -------
    (rows, cols) ndarray of float32
        1 on an edge, 0 elsewhere (and where not judged).
    """
    out = np.zeros(at.shape, np.float32)
    rows, cols = np.nonzero(at)
    if rows.size:
        out[rows, cols] = _edge_magnitude_at(before, rows, cols, stats) > float(stats["strong"])
    return out


def _outline(area: np.ndarray) -> np.ndarray:
    """The pixels of ``area`` with a 4-neighbour outside it (the array's border is not outside)."""
    inner = area.copy()
    inner[1:, :] &= area[:-1, :]
    inner[:-1, :] &= area[1:, :]
    inner[:, 1:] &= area[:, :-1]
    inner[:, :-1] &= area[:, 1:]
    return area & ~inner


def outline_edge_layers(area: np.ndarray, before: np.ndarray, stats: Mapping[str, Any], *,
                        after: np.ndarray | None = None, after_stats: Mapping[str, Any] | None = None,
                        core: tuple[slice, slice] | None = None) -> dict[str, np.ndarray]:
    """The layers of an area mask's outline: :data:`OUTLINE_KEY` (on an edge of the before image)
    and, given the after image and its statistics, :data:`OUTLINE_EDGES_KEY` (on an edge of either
    date); each 1 or 0 at outline pixels (a 4-neighbour outside the mask; the grid's border is not
    an outline), NaN at the other pixels.

    Parameters
    ----------
    area : (rows, cols) ndarray of bool
        The changed pixels of a window with its halo (or of the whole grid).
    before : (bands, rows, cols) ndarray of float
        The before date's spectral bands over the same pixels.
    stats : dict
        The before image's :func:`edge_statistics`.
    after : (bands, rows, cols) ndarray of float, optional
        The after date's spectral bands (registered to the before image) over the same pixels.
    after_stats : dict, optional
        The after image's :func:`edge_statistics`.
    core : (slice, slice), optional
        The window's core: values at the core's changed pixels only, row-major.

    Returns
    -------
    dict of str -> 1-D ndarray of float32
        One value per changed pixel of the core (``area[core]``), in row-major order, per layer.

    Examples
    --------
    >>> b = np.zeros((1, 20, 20), "float32")
    >>> a = b.copy(); a[:, 5:15, 10:16] = 100.0                      # a new roof: edges in the after image only
    >>> area = a[0] > 50
    >>> ok = np.ones((20, 20), bool)
    >>> v = outline_edge_layers(area, b, edge_statistics(b, ok), after=a, after_stats=edge_statistics(a, ok))
    >>> float(np.nanmean(v[OUTLINE_KEY])), float(np.nanmean(v[OUTLINE_EDGES_KEY]))
    (0.0, 1.0)
    """
    rs, cs = core if core is not None else (slice(None), slice(None))
    outline = _outline(area)
    judged = np.zeros(area.shape, bool)
    judged[rs, cs] = outline[rs, cs]
    old = old_edges(before, stats, judged)
    a, o = area[rs, cs], outline[rs, cs]
    out = {OUTLINE_KEY: np.where(o[a], old[rs, cs][a], np.float32(np.nan)).astype(np.float32)}
    if after is not None and after_stats:
        # either date: the after image is judged only where the before image has no edge
        either = old + old_edges(after, after_stats, judged & (old == 0))
        out[OUTLINE_EDGES_KEY] = np.where(o[a], either[rs, cs][a], np.float32(np.nan)).astype(np.float32)
    return out


@dataclass(frozen=True, eq=False)
class RunFit:
    """The statistics of a run, fixed before its windows are scored.

    Attributes
    ----------
    shift : Shift
        Co-registration shift (applied to every window when ``shift.applied``).
    method : FittedMethod
        The change method with its fitted statistics.
    threshold : float
        Score above which a pixel is change (with ``hysteresis``, the threshold its two
        values are factors of).
    threshold_method : str
        How ``threshold`` was chosen.
    class_centres : dict of str -> float
        Scene medians of the index changes (see :func:`class_layers`).
    halo_px : int
        Halo a window needs for its core to equal the whole-scene result.
    sample : str
        What the statistics were taken on.
    sample_result : ChangeScore or None
        The method's score on the sample (with the method's layers), when the
        sample is the whole scene; None otherwise.
    edge_stats : dict
        The before image's statistics for :func:`old_edges` (:func:`edge_statistics`).
    after_edge_stats : dict
        The registered after image's, for the outline on edges of either date
        (:func:`outline_edge_layers`).
    sample_pair : _Registered or None
        With the whole scene as sample: the pair as registered for the fit (the after
        image shifted, the valid pixels) and its raw class layers, which the in-memory
        run's window (that very pair) takes instead of computing them again.
    hysteresis : (float, float) or None
        ``(low, high)`` score values: a changed area is connected pixels of score at least
        ``low`` that reach ``high`` somewhere (:func:`hysteresis_of`); None: every pixel
        above ``threshold``.
    """

    shift: _align.Shift
    method: Any
    threshold: float
    threshold_method: str
    class_centres: dict[str, float]
    halo_px: int
    sample: str
    method_details: dict[str, Any] = field(default_factory=dict)
    sample_result: Any = field(default=None, repr=False)
    sample_pair: Any = field(default=None, repr=False)
    edge_stats: dict[str, Any] = field(default_factory=dict)
    after_edge_stats: dict[str, Any] = field(default_factory=dict)
    hysteresis: tuple[float, float] | None = None

    @property
    def low_threshold(self) -> float | None:
        """The hysteresis' low value (pixels above it next to change are change too), or None."""
        return self.hysteresis[0] if self.hysteresis is not None else None

    @property
    def min_peak(self) -> float | None:
        """Score a changed area must reach somewhere to be kept (the hysteresis' high value), or None."""
        return self.hysteresis[1] if self.hysteresis is not None else None

    @property
    def apply_shift(self) -> bool:
        """Whether windows resample the after image by :attr:`shift`."""
        return bool(self.shift.applied and self.shift.n_blocks > 0 and self.shift.magnitude >= _align.MIN_SHIFT_PX)

    def to_dict(self) -> dict[str, Any]:
        """The fitted statistics for ``summary.json`` (JSON-safe).

        Returns
        -------
        dict
            ``shift``, ``method`` (the fitted method's own ``to_dict``, else its name),
            ``threshold_method``, ``threshold_value`` (null when not finite),
            ``hysteresis`` (``{"low", "high"}`` score values, or null), ``class_centres``, ``halo_px`` and ``sample``.
        """
        to_dict = getattr(self.method, "to_dict", None)
        return {
            "shift": self.shift.as_dict(),
            "method": to_dict() if callable(to_dict) else {"method": getattr(self.method, "method", None)},
            "threshold_method": self.threshold_method,
            "threshold_value": float(self.threshold) if math.isfinite(self.threshold) else None,
            "hysteresis": hysteresis_record(self.hysteresis),
            "class_centres": {k: round(v, 6) for k, v in self.class_centres.items()},
            "halo_px": self.halo_px,
            "sample": self.sample,
            "edges": _rounded(self.edge_stats),
            "edges_after": _rounded(self.after_edge_stats),
        }


def _rounded(stats: Mapping[str, Any]) -> dict[str, Any]:
    return {k: ([round(x, 6) for x in v] if isinstance(v, list) else round(v, 6)) for k, v in stats.items()}


def _register(spec: RunSpec, before: np.ndarray, after: np.ndarray, shift: _align.Shift, apply_shift: bool, *,
              finite: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """A window's (or sample block's) spectral bands, the after ones shifted, the pixels valid
    in both dates and those left out as cloud or shadow (None without cloud information)."""
    ns = len(spec.spectral)
    b_sp = before[:ns]
    a_sp = _align.apply_shift(after[:ns], shift) if apply_shift else after[:ns]
    a_ax = _align.apply_shift(after[ns:], shift, order=0) if (apply_shift and spec.aux) else after[ns:]
    if finite is not None and not (apply_shift or spec.aux):
        v = finite.copy()  # found while the windows were read
    elif finite is not None and not spec.aux and finite.all():
        # every input pixel finite: the shift leaves NaN only where its stencil reaches past
        # the window, in every band alike (the cubic weights sum to 1 and their magnitudes to
        # 1.25: finite pixels of a float32 image cannot overflow), so one band tells it
        v = np.isfinite(a_sp[0])
    else:
        v = _kernels.all_finite(np.ascontiguousarray(b_sp, dtype=np.float32), np.ascontiguousarray(a_sp, dtype=np.float32))
    excluded = None
    if _masks.has_cloud_information(spec.band_order):
        excl = _masks.exclusion_mask(before, np.concatenate([a_sp, a_ax]), band_names=spec.band_order)
        excluded = excl & v
        v &= ~excl
    # (without cloud information the exclusion mask is the nodata that v leaves out already)
    return b_sp, a_sp, v, excluded


@dataclass(frozen=True, eq=False)
class _Registered:
    """A whole pair as the fit registered it: the dates it was given, :func:`_register`'s
    result on them, and the raw class layers (:func:`_raw_class_layers`) of the registered pair."""

    before: np.ndarray
    after: np.ndarray
    registered: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]
    raw_layers: dict[str, np.ndarray] | None = None

    def of(self, before: np.ndarray, after: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None] | None:
        """The registered pair (valid pixels copied) when ``before`` and ``after`` are the ones fitted."""
        if before is not self.before or after is not self.after:
            return None
        b_sp, a_sp, v, excluded = self.registered
        return b_sp, a_sp, v.copy(), excluded


def _sample_arrays(spec: RunSpec, blocks: Sequence[SampleBlock], shift: _align.Shift, apply_shift: bool,
                   registered: list[Any] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The blocks' spectral bands (after image shifted) and valid pixels, side by side
    (``registered`` receives each block's :func:`_register` result, before the area of interest)."""
    fit_b, fit_a, fit_v = [], [], []
    for blk in blocks:
        b_sp, a_sp, v, excluded = _register(spec, blk.before, blk.after, shift, apply_shift)
        if registered is not None:
            registered.append((b_sp, a_sp, v.copy(), excluded))
        if blk.inside is not None:
            v &= blk.inside
        fit_b.append(b_sp)
        fit_a.append(a_sp)
        fit_v.append(v)
    if len(blocks) == 1:
        return fit_b[0], fit_a[0], fit_v[0]
    # blocks side by side: the statistics do not care about the arrangement
    return np.concatenate(fit_b, axis=2), np.concatenate(fit_a, axis=2), np.concatenate(fit_v, axis=1)


def fit_run(spec: RunSpec, blocks: Sequence[SampleBlock], *, whole: bool,
            training: SampleBlock | None = None, training_offset: tuple[int, int] = (0, 0),
            on_registered: Callable[[np.ndarray], None] | None = None) -> RunFit:
    """Fix a run's statistics on the whole pair or on sample blocks of it.

    Parameters
    ----------
    spec : RunSpec
        The run.
    blocks : sequence of SampleBlock
        The whole pair as one block, or a lattice of blocks of a large scene.
    whole : bool
        The one block is the whole analysis grid (then the method's score on it is
        kept as ``sample_result``, which an in-memory run uses as its score).
    training : SampleBlock, optional
        With analyst examples on a sampled scene: the window of both dates that holds every
        example (the classifier is trained there); without it, on the whole pair.
    training_offset : (int, int)
        Row and column of ``training``'s first pixel on the analysis grid.
    on_registered : callable, optional
        With ``whole``: called with the after image's spectral bands as co-registered
        ((bands, rows, cols), NaN where the shift leaves no data) once the shift is decided,
        before the method is fitted (the command's figure helper draws them meanwhile).

    Returns
    -------
    RunFit

    Examples
    --------
    >>> from affine import Affine
    >>> from changedet.raster import Grid
    >>> from changedet.spec import make_spec, run_options
    >>> rng = np.random.default_rng(0)
    >>> b = rng.uniform(500, 600, size=(4, 64, 64)).astype("float32"); a = b.copy(); a[:, 10:20, 10:20] += 900
    >>> spec = make_spec(run_options(method="cva", coregister=False),
    ...                  Grid((64, 64), Affine(10, 0, 0, 0, -10, 0), "EPSG:32639"), ["B02", "B03", "B04", "B08"])
    >>> fit = fit_run(spec, [SampleBlock(b, a)], whole=True)
    >>> fit.threshold_method, fit.threshold > 0
    ('otsu', True)
    """
    ns = len(spec.spectral)
    o = spec.options
    if o.learned and spec.examples is not None and training is None and not whole:
        raise InvalidParameterError("examples on a sampled scene need the window that holds them: pass training=")
    if spec.coregister:
        shift = _align.shift_from_blocks([(blk.before[:ns], blk.after[:ns]) for blk in blocks])
    else:
        shift = _align.Shift(0.0, 0.0, 0.0, 0, applied=False)
    apply_shift = bool(shift.applied and shift.n_blocks > 0 and shift.magnitude >= _align.MIN_SHIFT_PX)
    registered: list[Any] | None = [] if whole else None
    sb, sa, sv = _sample_arrays(spec, blocks, shift, apply_shift, registered)
    if whole and on_registered is not None:
        on_registered(sa)
    if not sv.any():
        where = "on the analysis grid" if whole else "in the sample of the analysis grid"
        raise EmptyDataError(
            f"no pixel is valid in both dates {where} ({describe_grid(spec.grid)}): "
            "nodata, clouds or the area of interest leave nothing to compare"
        )
    if o.learned:
        fitted = _fit_learned(spec, sb, sa, sv, training, training_offset)
    else:
        fitted = _change.fit_method(o.method, sb, sa, band_names=spec.spectral,
                                    pixel_size_m=spec.method_pixel_size_m, valid=sv)
    cs = fitted.sample_result if fitted.sample_result is not None else fitted.score(sb, sa, sv, layers=whole)
    s_score = np.where(sv, cs.score, np.nan).astype("float32")
    thr_method = o.threshold_method or cs.threshold_method
    value = o.threshold_value if o.threshold_value is not None else getattr(fitted, "threshold_value", None)
    thr = _threshold.compute_threshold(s_score, method=thr_method, value=value,
                                       percentile=o.threshold_percentile, valid=sv)
    raw = _raw_class_layers(sb, sa, spec.spectral)
    centres = _medians(raw, sv)
    # the reaches add up: the shift's interpolation feeds the method's neighbourhood, whose
    # score feeds the opening
    hysteresis = hysteresis_of(spec, fitted, float(thr))
    halo = max(int(fitted.halo_px) + (int(math.ceil(shift.magnitude)) + 2 if apply_shift else 0)
               + spec.opening_px + (HYSTERESIS_REACH_PX if hysteresis is not None else 0) + 1, EDGE_REACH_PX + 1, 4)
    edge_stats, after_edge_stats = edge_statistics(sb, sv), edge_statistics(sa, sv)
    sample = "whole scene" if whole else f"{len(blocks)} blocks of {blocks[0].before.shape[1]} x {blocks[0].before.shape[2]}"
    pair = _Registered(blocks[0].before, blocks[0].after, registered[0], raw) if registered else None
    return RunFit(shift, fitted, float(thr), thr_method, centres, halo, sample, dict(cs.details),
                  cs if whole else None, pair, edge_stats, after_edge_stats, hysteresis)


def hysteresis_of(spec: RunSpec, fitted: Any, threshold: float) -> tuple[float, float] | None:
    """The ``(low, high)`` score values of a run's hysteresis thresholding, or None.

    Only the method's own threshold has one (a threshold the caller chose, by value or by
    method, cuts every pixel at it), and only a method whose fit names its factors
    (:attr:`changedet.change.MethodFit.hysteresis`).

    Parameters
    ----------
    spec : RunSpec
        The run (its threshold options).
    fitted : FittedMethod or LearnedFit
        The fitted method.
    threshold : float
        The threshold the run chose.

    Returns
    -------
    (float, float) or None
    """
    factors = getattr(fitted, "hysteresis", None)
    o = spec.options
    if factors is None or o.threshold is not None or not math.isfinite(threshold):
        return None
    return (float(factors[0]) * threshold, float(factors[1]) * threshold)


# --------------------------------------------------------------------------- learned methods
class LearnedFit:
    """A classifier of change (:mod:`changedet.learn`) as a fitted method: its statistics are
    fixed (the model, the pair's per-date statistics), its score is the probability of change.

    Parameters
    ----------
    model : LearnedModel
        The classifier with the pair's statistics fixed (:meth:`LearnedModel.for_pair`).
    source : str
        ``"examples"`` or ``"model"``: where the classifier came from.
    """

    method = "learned"
    threshold_method = "fixed"
    sample_result = None

    def __init__(self, model: Any, source: str):
        self.model = model
        self.source = source
        self.halo_px = int(model.halo_px)
        self.threshold_value = float(model.threshold)
        self.band_names = tuple(model.band_names)

    def score(self, before: np.ndarray, after: np.ndarray, valid: np.ndarray, *, layers: bool = True,
              valid_is_finite: bool = False) -> Any:
        """The probability of change as a :class:`~changedet.change.ChangeScore`.

        Parameters
        ----------
        before, after : (bands, rows, cols) ndarray of float32
            A window of both dates (the model's bands).
        valid : (rows, cols) ndarray of bool
            Pixels to score.
        layers : bool
            Unused (a classifier has no extra layers).
        valid_is_finite : bool
            Unused (the model checks the pixels it scores itself).

        Returns
        -------
        ChangeScore
        """
        prob = self.model.score(before, after, valid)
        return _change.ChangeScore(np.asarray(prob, dtype=np.float32), "learned", "fixed", self.details)

    @property
    def details(self) -> dict[str, Any]:
        """What the summary says of the classifier."""
        return {**self.model.summary(), "source": self.source}

    def to_dict(self) -> dict[str, Any]:
        """The fitted classifier's description for ``summary.json`` (the model itself is a file).

        Returns
        -------
        dict
        """
        return {"method": "learned", **self.details}


def _fit_learned(spec: RunSpec, sb: np.ndarray, sa: np.ndarray, sv: np.ndarray, training: SampleBlock | None,
                 offset: tuple[int, int]) -> LearnedFit:
    """The classifier bound to the pair: a trained model, or one trained on the examples
    (on the pair's sample, or on ``training``, the window at ``offset`` holding them)."""
    from . import learn

    o = spec.options
    if o.learned_model is not None:
        o.learned_model.check_bands(spec.spectral)
        return LearnedFit(o.learned_model.for_pair(sb, sa, band_names=spec.spectral, valid=sv), "model")
    ex = spec.examples
    if training is not None:
        r0, c0 = offset
        rows, cols = training.before.shape[1:]
        inside = (ex.row >= r0) & (ex.row < r0 + rows) & (ex.col >= c0) & (ex.col < c0 + cols)
        ex = learn.Examples(ex.row[inside] - r0, ex.col[inside] - c0, ex.change[inside], ex.source)
        ns = len(spec.spectral)
        sb, sa = training.before[:ns], training.after[:ns]
        sv = _kernels.all_finite(np.ascontiguousarray(sb, dtype=np.float32), np.ascontiguousarray(sa, dtype=np.float32))
    return LearnedFit(learn.fit_examples(sb, sa, ex, band_names=spec.spectral, pixel_size_m=spec.px_size, valid=sv),
                      "examples")


# --------------------------------------------------------------------------- the processor
#: How far (pixels) a hysteresis' low value reaches out from a pixel above the threshold: the rim
#: of a change, not the field it borders (grown without a bound, a construction site took in
#: the parcels around it, whose outline on old field edges then read as seasonal change).
HYSTERESIS_REACH_PX = 2
#: A changed area at least this large (m²) is kept whatever its highest score: the hysteresis
#: removes specks, and 10 ha of change above the threshold is none (a weak clearing, low contrast).
HYSTERESIS_KEEP_M2 = 100_000.0


def peak_exempt_px(spec: RunSpec) -> int:
    """Changed pixels from which an area is kept whatever its highest score (:data:`HYSTERESIS_KEEP_M2`);
    on grids of unknown pixel size, pixels of 10 m, as the urban-spectral score assumes.

    Parameters
    ----------
    spec : RunSpec
        The run (its grid).

    Returns
    -------
    int
    """
    px = 10.0 if spec.in_px else float(spec.px_size)
    return max(1, int(math.ceil(HYSTERESIS_KEEP_M2 / (px * px) - 1e-9)))


def judged_on_core(fit: RunFit, part_layers: dict[str, np.ndarray], score: np.ndarray) -> dict[str, np.ndarray]:
    """The index changes an area's kind is judged on: with hysteresis, those of its pixels at or
    above the threshold only (NaN on the rim the low value added, which the sums skip), so the
    kind is that of the change itself and not of the ground around it.

    Parameters
    ----------
    fit : RunFit
        The run's statistics (its threshold and hysteresis).
    part_layers : dict of str -> 1-D ndarray
        Index changes at the changed pixels, in row-major order.
    score : 1-D ndarray
        The score at the same pixels.

    Returns
    -------
    dict of str -> 1-D ndarray
        ``part_layers`` itself without hysteresis; otherwise new arrays.
    """
    if fit.hysteresis is None or not part_layers:
        return part_layers
    rim = ~(score > fit.threshold)
    if not rim.any():
        return part_layers
    return {k: np.where(rim, np.nan, v).astype(v.dtype, copy=False) if k in CLASS_LAYER_KEYS else v
            for k, v in part_layers.items()}


def _grown(core: np.ndarray, low: np.ndarray, radius: int) -> np.ndarray:
    """``core`` with the pixels of ``low`` within ``radius`` of it (a disk, as
    :func:`changedet.objects._disk`): ``low & binary_dilation(core) | core``, computed at the
    few pixels of ``low`` outside ``core`` only (a dilation of every window cost a 10980 x 10980
    scene about 3 s of CPU).

    >>> core = np.zeros((7, 7), bool); core[3, 3] = True
    >>> low = np.ones((7, 7), bool); low[3, 5] = False
    >>> g = _grown(core, low, 2)
    >>> int(g.sum()), bool(g[3, 5]), bool(g[4, 4]), bool(g[5, 4])
    (12, False, True, False)
    """
    ys, xs = np.nonzero(low & ~core)
    if ys.size == 0 or not core.any():
        return core
    padded = np.pad(core, radius)
    hit = np.zeros(ys.size, dtype=bool)
    r2 = radius * radius
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if (dy or dx) and dy * dy + dx * dx <= r2:
                hit |= padded[ys + radius + dy, xs + radius + dx]
    out = core.copy()
    out[ys[hit], xs[hit]] = True
    return out


def outline_layers_of_core(fit: RunFit, area: np.ndarray, score: np.ndarray, before: np.ndarray, after: np.ndarray,
                           *, core: tuple[slice, slice] | None = None) -> dict[str, np.ndarray]:
    """:func:`outline_edge_layers` of a window's changed pixels, taken (with hysteresis) on the
    outline of their pixels above the threshold: the rim the low value adds reaches to the
    parcel edges around a change, and an outline on old edges is what marks a seasonal field.

    Parameters
    ----------
    fit : RunFit
        The run's statistics (threshold, hysteresis, edge statistics).
    area : (rows, cols) ndarray of bool
        The changed pixels of the window with its halo.
    score : (rows, cols) ndarray of float32
        The score over the same pixels.
    before, after : (bands, rows, cols) ndarray of float
        Both dates' spectral bands over the same pixels.
    core : (slice, slice), optional
        The window's core.

    Returns
    -------
    dict of str -> 1-D ndarray of float32
        One value per changed pixel of the core (``area[core]``), row-major; NaN off the outline.
    """
    if fit.hysteresis is None:
        return outline_edge_layers(area, before, fit.edge_stats, after=after, after_stats=fit.after_edge_stats,
                                   core=core)
    strong = area & _threshold.apply_threshold(score, fit.threshold)
    rs, cs = core if core is not None else _full(area.shape)
    on_strong = outline_edge_layers(strong, before, fit.edge_stats, after=after, after_stats=fit.after_edge_stats,
                                    core=core)
    at = np.flatnonzero(strong[rs, cs][area[rs, cs]])  # the strong pixels' places among the changed ones
    n = int(np.count_nonzero(area[rs, cs]))
    out = {}
    for key, values in on_strong.items():
        full = np.full(n, np.nan, dtype=np.float32)
        full[at] = values
        out[key] = full
    return out


def changed_pixels(spec: RunSpec, threshold: float, score: np.ndarray, valid: np.ndarray, *,
                   low: float | None = None) -> np.ndarray:
    """The thresholded, opened change mask of a score (before polygons and their clean-up).

    Parameters
    ----------
    spec : RunSpec
        The run (its ``opening_px``).
    threshold : float
        Score above which a pixel is change.
    score : (rows, cols) ndarray of float32
        The change score.
    valid : (rows, cols) ndarray of bool
        Pixels to judge.
    low : float, optional
        A hysteresis' low value: pixels above it within :data:`HYSTERESIS_REACH_PX` of a
        pixel above ``threshold`` are change too (the rim of a change, which the score
        reads weaker where it mixes with the ground around it).

    Returns
    -------
    (rows, cols) ndarray of bool

    Examples
    --------
    >>> from affine import Affine
    >>> from changedet.raster import Grid
    >>> from changedet.spec import make_spec, run_options
    >>> spec = make_spec(run_options(opening_px=0), Grid((4, 4), Affine(10, 0, 0, 0, -10, 0), "EPSG:32639"), ["B04"])
    >>> s = np.zeros((4, 4), "float32"); s[1:3, 1:3] = 5; s[0, 1] = 2
    >>> int(changed_pixels(spec, 1.0, s, np.ones((4, 4), bool)).sum())
    5
    >>> int(changed_pixels(spec, 3.0, s, np.ones((4, 4), bool), low=1.5).sum())
    5
    """
    raw = _threshold.apply_threshold(score, threshold, valid=valid)
    if low is not None and low < threshold and raw.any():
        raw = _grown(raw, _threshold.apply_threshold(score, low, valid=valid), HYSTERESIS_REACH_PX)
    return _objects.clean_mask(raw, opening_px=spec.opening_px, valid=valid)


@dataclass(frozen=True, eq=False)
class WindowResult:
    """What one window gives: its core's score, valid pixels and polygon parts.

    Attributes
    ----------
    score : (rows, cols) ndarray of float32
        The core's change score, NaN where not valid.
    valid : (rows, cols) ndarray of bool
        Pixels valid in both dates (not nodata, cloud, or outside the area of interest).
    parts : list of PolygonPart
        The changed areas of the core (before the minimum mapping unit).
    excluded : int
        Pixels of the core left out as cloud or shadow.
    after : (bands, rows, cols) ndarray or None
        The core of the co-registered after image (kept only on request).
    layers : dict of str -> (rows, cols) ndarray
        The method's layers and the index changes (kept only on request).
    """

    score: np.ndarray
    valid: np.ndarray
    parts: list[Any]
    excluded: int
    after: np.ndarray | None = None
    layers: dict[str, np.ndarray] = field(default_factory=dict)


def outline_parts(spec: RunSpec, changed: np.ndarray, score: np.ndarray, layers: Mapping[str, np.ndarray], *,
                  offset: tuple[int, int] = (0, 0),
                  edges: tuple[bool, bool, bool, bool] = (False, False, False, False)) -> list[Any]:
    """The polygon parts of a window's changed pixels, on the analysis grid's coordinates.

    Parameters
    ----------
    spec : RunSpec
        The run (its grid and mapping unit).
    changed : (rows, cols) ndarray of bool
        The window core's changed pixels.
    score : (rows, cols) ndarray of float32
        The core's score.
    layers : mapping of str -> 1-D ndarray
        Index changes at the changed pixels, in row-major order (``layer[changed]``).
    offset : (int, int)
        Row and column of the core on the analysis grid.
    edges : (bool, bool, bool, bool)
        Which sides (top, bottom, left, right) are internal window edges.

    Returns
    -------
    list of PolygonPart
        Areas below the mapping unit (holes filled) that touch no internal edge are left out.
    """
    return _objects.vectorize_parts(changed, spec.grid.transform, score=score, layers=layers, window_edges=edges,
                                    min_area_px=_drop_below_px(spec), offset=offset)


def _drop_below_px(spec: RunSpec) -> int:
    """Areas with fewer pixels than this (holes filled) are below the mapping unit anywhere on
    the grid; 0 on lon/lat grids, whose pixel areas vary with latitude."""
    if spec.grid.crs is not None and spec.grid.crs.is_geographic:
        return 0
    px_area = 1.0 if spec.in_px else spec.px_size * spec.px_size
    return int(math.floor(spec.min_area_m2 / px_area + 1e-9))


def _full(shape: tuple[int, int]) -> tuple[slice, slice]:
    return slice(0, shape[0]), slice(0, shape[1])


def process_window(
    spec: RunSpec,
    fit: RunFit,
    before: np.ndarray,
    after: np.ndarray,
    *,
    offset: tuple[int, int] = (0, 0),
    inner: tuple[slice, slice] | None = None,
    edges: tuple[bool, bool, bool, bool] = (False, False, False, False),
    inside: np.ndarray | None = None,
    finite: np.ndarray | None = None,
    keep: bool = False,
) -> WindowResult:
    """Score one window of both dates and cut its core's changed areas into polygon parts.

    Parameters
    ----------
    spec : RunSpec
        The run.
    fit : RunFit
        Its fitted statistics.
    before, after : (bands, rows, cols) ndarray of float32
        The window with its halo, bands in ``spec.band_order``, NaN nodata.
    offset : (int, int)
        Row and column of the window's core on the analysis grid.
    inner : (slice, slice), optional
        The core inside the window (default: the whole window).
    edges : (bool, bool, bool, bool)
        Which sides of the core (top, bottom, left, right) are internal window edges.
    inside : (rows, cols) ndarray of bool, optional
        The area of interest over the window.
    finite : (rows, cols) ndarray of bool, optional
        Where every band of both dates is finite, when the reader found it already.
    keep : bool
        Also return the co-registered after image and every per-pixel layer (in-memory runs).

    Returns
    -------
    WindowResult

    Examples
    --------
    >>> from affine import Affine
    >>> from changedet.raster import Grid
    >>> from changedet.spec import make_spec, run_options
    >>> rng = np.random.default_rng(0)
    >>> b = rng.uniform(500, 600, size=(4, 64, 64)).astype("float32"); a = b.copy(); a[:, 10:20, 10:20] += 900
    >>> g = Grid((64, 64), Affine(10, 0, 0, 0, -10, 0), "EPSG:32639")
    >>> spec = make_spec(run_options(method="cva", coregister=False), g, ["B02", "B03", "B04", "B08"])
    >>> w = process_window(spec, fit_run(spec, [SampleBlock(b, a)], whole=True), b, a)
    >>> [p.n_px for p in w.parts]
    [100]
    """
    fitted_pair = fit.sample_pair if keep and inner is None and fit.sample_pair is not None else None
    reg = fitted_pair.of(before, after) if fitted_pair is not None else None
    if reg is None:  # (the in-memory run's one window is the pair the fit registered: taken as it is)
        fitted_pair = None
        reg = _register(spec, before, after, fit.shift, fit.apply_shift, finite=finite)
    b_sp, a_sp, v, excluded = reg
    rs, cs_ = inner if inner is not None else _full(v.shape)
    layers: dict[str, np.ndarray] = {}
    if inside is not None and not inside[rs, cs_].any():
        v &= False  # the core is outside the area of interest: nothing to score
    if keep and fit.sample_result is not None and fit.sample_result.score.shape == v.shape:
        cs = fit.sample_result  # the in-memory run: the fit scored this very window
        score_o = np.where(v, cs.score, np.float32(np.nan)).astype(np.float32)
        layers.update({k: arr[rs, cs_] for k, arr in cs.layers.items()})
    elif v.any():
        cs = fit.method.score(b_sp, a_sp, v, layers=keep, valid_is_finite=True)
        score_o = np.asarray(cs.score, dtype=np.float32)
        if not score_o.flags.writeable:
            score_o = score_o.copy()
        np.copyto(score_o, np.float32(np.nan), where=~v)
        if keep:
            layers.update({k: arr[rs, cs_] for k, arr in cs.layers.items()})
    else:  # nothing to compare here (nodata, clouds, outside the area of interest)
        score_o = np.full(v.shape, np.nan, dtype="float32")
    # the area of interest restricts what is reported, not how its pixels are judged: the
    # score and the opening see the pixels around it, the area cuts their result
    opened = changed_pixels(spec, fit.threshold, score_o, v, low=fit.low_threshold)
    if inside is not None:
        v &= inside
        opened &= inside
        np.copyto(score_o, np.float32(np.nan), where=~inside)
    score_c, opened_c, v_c = score_o[rs, cs_], opened[rs, cs_], v[rs, cs_]
    b_c, a_c = b_sp[:, rs, cs_], a_sp[:, rs, cs_]
    sel = opened_c & v_c
    if keep:
        full = (_centred_class_layers(fitted_pair.raw_layers, v_c, fit.class_centres)
                if fitted_pair is not None and fitted_pair.raw_layers is not None
                else class_layers(b_c, a_c, spec.spectral, v_c, centres=fit.class_centres))
        layers.update(full)
        part_layers = {k: arr[sel] for k, arr in full.items() if k in CLASS_LAYER_KEYS}
    else:
        # index changes are only needed inside changed areas: compute them there alone
        # (row-major order, as vectorize_parts takes them)
        part_layers = {}
        if sel.any():
            sparse = class_layers(b_c[:, sel][:, :, None], a_c[:, sel][:, :, None], spec.spectral,
                                  np.ones((int(sel.sum()), 1), bool), centres=fit.class_centres)
            part_layers = {k: arr[:, 0] for k, arr in sparse.items() if k in CLASS_LAYER_KEYS}
    part_layers = judged_on_core(fit, part_layers, score_c[sel])
    if fit.edge_stats and sel.any():
        part_layers.update(outline_layers_of_core(fit, opened & v, score_o, b_sp, a_sp, core=(rs, cs_)))
    parts = outline_parts(spec, sel, score_c, part_layers, offset=offset, edges=edges)
    return WindowResult(
        score=score_c, valid=v_c, parts=parts,
        excluded=int(excluded[rs, cs_].sum()) if excluded is not None else 0,
        after=a_c if keep else None, layers=layers,
    )
