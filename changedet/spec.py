"""The run specification: every option of a run, validated once, frozen.

:func:`run_options` checks the options a user gives (before any file is opened);
:func:`make_spec` adds what the inputs decide (the analysis grid, which bands are
spectral and which classify pixels, the clean-up parameters' defaults, the area of
interest on the grid).  Everything downstream reads the :class:`RunSpec`; nothing
re-derives it.  The summary's ``parameters`` block is :meth:`RunSpec.parameters`,
the same on the in-memory and the windowed path.
"""

from __future__ import annotations

import dataclasses
import math
import os
import typing
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from . import threshold as _threshold
from .areas import aoi_in_grid_crs, parse_aoi
from .errors import InvalidParameterError
from .raster import Grid

__all__ = ["RunOptions", "RunSpec", "run_options", "make_spec", "parse_threshold", "check_call", "CATEGORICAL_BANDS",
           "LEARNED_COREGISTER_FROM_M", "VEGETATION_GAIN_OUT_BELOW_M", "VEGETATION_GAIN_CHOICES", "hysteresis_record"]

#: Bands that classify pixels (Sentinel-2 SCL, Landsat QA_PIXEL): used for masks, not for change
#: (recognised by :func:`changedet.masks.classification_band`, also as the last token of a file stem).
CATEGORICAL_BANDS = frozenset({"SCL", "QA_PIXEL"})

#: A classifier's run (examples or a model) keeps changed areas down to this size (m²) by default
#: (or 4 pixels, the larger), where the unsupervised default keeps 50 m² and more: the analyst's
#: examples say what counts, and a garage of 6 x 6 m is a building.  ``benchmarks/fewshot.py
#: --pipeline auto``, K = 20, seeds 0-4, pooled F1 at a floor of 50 m² / 20 m² / 4 px: the
#: synthetic 0.5 m pairs (roofs 4-10 m a side) 0.606 / 0.856 / 0.878, LEVIR-CD 0.801 / 0.802 /
#: 0.803, DSIFN 0.823 / 0.822 / 0.822; OSCD unchanged (4 px are 400 m² there).  Below 20 m² the
#: areas added are mostly specks, cars that moved among them: the model of notebook 04 applied to
#: site B (1 m) gives 4 / 5 / 14 changed areas at those floors (12 at 10 m²), F1 0.974 / 0.974 /
#: 0.973.  Holes are filled up to 50 m² as without examples: filled only up to the floor, the
#: structures counted on rows of roofs 3-4 m apart came out fewer (``benchmarks/structures.py
#: --examples 20``, ``tight_rows`` mean count error 23 -> 31 % with 4 px).
LEARNED_MIN_AREA_M2 = 20.0

#: A classifier's run (examples or a model) co-registers by default on pixels this size (m) or coarser.
LEARNED_COREGISTER_FROM_M = 2.0

#: By default areas classed vegetation gain are left out of the mask on pixels finer than this (m;
#: the high-resolution side of the ``auto`` method); see :attr:`RunSpec.vegetation_gain_in_mask`.
VEGETATION_GAIN_OUT_BELOW_M = 5.0

#: The values of the ``vegetation_gain`` option.
VEGETATION_GAIN_CHOICES = ("auto", "keep", "drop")

#: The values of the ``seasonal`` option (those of ``vegetation_gain``).
SEASONAL_CHOICES = VEGETATION_GAIN_CHOICES


@dataclass(frozen=True)
class RunOptions:
    """The options of a run as the user gave them, validated (see :func:`run_options`).

    ``threshold_method``/``threshold_value``/``threshold_percentile`` are the parsed
    ``threshold``; ``aoi`` is a shapely geometry or None: lon/lat for georeferenced images,
    pixel coordinates for images without georeferencing (checked against the grid in
    :func:`make_spec`).  Clean-up options left None take their defaults from the grid in
    :func:`make_spec`.
    """

    method: str = "auto"
    threshold: str | float | None = None
    threshold_method: str | None = None
    threshold_value: float | None = None
    threshold_percentile: float | None = None
    min_area_m2: float | None = None
    opening_px: int | None = None
    fill_holes_m2: float | None = None
    pixel_size_m: float | None = None
    aoi: Any = None
    #: the area as given when it was text or a path (named in errors found once the grid is known)
    aoi_source: str | None = None
    align: bool = True
    #: None: co-register, except a classifier's run finer than :data:`LEARNED_COREGISTER_FROM_M`
    coregister: bool | None = None
    bands: tuple[str, ...] | None = None
    examples: Any = None
    model: Any = None
    #: acquisition dates (before, after) as ``YYYY-MM-DD`` given by the user; None: read from the inputs
    dates: tuple[str | None, str | None] | None = None
    #: areas classed vegetation gain in the mask: "auto" (left out on pixels finer than
    #: :data:`VEGETATION_GAIN_OUT_BELOW_M`, kept coarser and for a classifier's run), "keep", "drop"
    vegetation_gain: str = "auto"
    #: areas classed seasonal (a whole parcel changed) in the mask: "auto" (left out, kept for a
    #: classifier's run), "keep", "drop"
    seasonal: str = "auto"
    #: the model itself, loaded (and so checked) when the options were validated
    learned_model: Any = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def learned(self) -> bool:
        """The mask comes from a classifier (analyst examples or a trained model)."""
        return self.examples is not None or self.model is not None

    @property
    def method_name(self) -> str:
        """The method the summary names: ``learned`` for examples or a model."""
        return "learned" if self.learned else self.method


def parse_threshold(threshold: str | float | None) -> tuple[str | None, float | None, float | None]:
    """(method, value, percentile) from the user's threshold option.

    Parameters
    ----------
    threshold : str, float or None
        A number (a fixed score value), ``"pNN"`` (a percentile), ``"chi2:ALPHA"`` or a
        threshold method of :mod:`changedet.threshold`; None for the method's own.

    Returns
    -------
    tuple of (str or None, float or None, float or None)
        The threshold method, its value and its percentile.

    Examples
    --------
    >>> parse_threshold("p99"), parse_threshold(3), parse_threshold("otsu")
    (('percentile', None, 99.0), ('fixed', 3.0, None), ('otsu', None, None))
    """
    allowed = list(typing.get_args(_threshold.ThresholdMethod))
    named = [m for m in allowed if m not in ("fixed", "percentile")]
    if threshold is None:
        return None, None, None
    if isinstance(threshold, (int, float, np.number)) and not isinstance(threshold, bool):
        if not math.isfinite(float(threshold)):
            raise InvalidParameterError(f"threshold must be finite, got {threshold!r}")
        return "fixed", float(threshold), None
    if isinstance(threshold, str):
        text = threshold.strip().lower()
        try:
            value = float(text)
        except ValueError:
            pass
        else:
            if not math.isfinite(value):
                raise InvalidParameterError(f"threshold must be finite, got {threshold!r}")
            return "fixed", value, None
        if text.startswith("p") and text[1:].replace(".", "", 1).isdigit():
            pct = float(text[1:])
            if not 0 <= pct <= 100:
                raise InvalidParameterError(f"threshold percentile must be between p0 and p100, got {threshold!r}")
            return "percentile", None, pct
        if text.startswith("chi2:"):
            try:
                alpha = float(text.split(":", 1)[1])
            except ValueError:
                alpha = float("nan")
            if not 0 < alpha < 1:
                raise InvalidParameterError(
                    f"threshold {threshold!r}: chi2 takes a significance level between 0 and 1, e.g. 'chi2:0.01'"
                )
            return "chi2", alpha, None
        if text in named:
            return text, None, None
        raise InvalidParameterError(
            f"threshold must be a number, 'pNN' (percentile, e.g. p99) or one of {named}; got {threshold!r}"
        )
    raise InvalidParameterError(f"threshold must be a number or a method name, got {type(threshold).__name__}")


def check_call(
    *,
    flags: dict[str, Any] | None = None,
    optional_flags: dict[str, Any] | None = None,
    counts: dict[str, Any] | None = None,
) -> None:
    """Check the type and range of a call's plain options at the top, before any work.

    Parameters
    ----------
    flags : dict of str -> Any
        Options that must be True or False.
    optional_flags : dict of str -> Any
        Options that must be True, False or None.
    counts : dict of str -> (value, minimum)
        Options that must be None or a whole number at least ``minimum``.

    Raises
    ------
    InvalidParameterError
        Naming the first option whose value does not fit.

    Examples
    --------
    >>> check_call(flags={"overwrite": False}, optional_flags={"tiled": None}, counts={"workers": (2, 1)})
    >>> check_call(flags={"overwrite": "no"})
    Traceback (most recent call last):
    ...
    changedet.errors.InvalidParameterError: overwrite must be True or False, got str 'no'
    """
    for name, value in (flags or {}).items():
        if not isinstance(value, (bool, np.bool_)):
            raise InvalidParameterError(f"{name} must be True or False, got {type(value).__name__} {value!r:.60}")
    for name, value in (optional_flags or {}).items():
        if value is not None and not isinstance(value, (bool, np.bool_)):
            raise InvalidParameterError(f"{name} must be True, False or None, got {type(value).__name__} {value!r:.60}")
    for name, (value, minimum) in (counts or {}).items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
            raise InvalidParameterError(f"{name} must be a whole number >= {minimum}, got {type(value).__name__} {value!r:.60}")


def _number(name: str, value: Any, *, minimum: float, strict: bool = False) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise InvalidParameterError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    v = float(value)
    if not math.isfinite(v) or v < minimum or (strict and v == minimum):
        what = "a positive number of metres" if strict else f"a number >= {minimum:g}"
        raise InvalidParameterError(f"{name} must be {what}, got {value!r}")
    return v


def run_options(
    *,
    method: str = "auto",
    threshold: str | float | None = None,
    min_area_m2: float | None = None,
    opening_px: int | None = None,
    fill_holes_m2: float | None = None,
    pixel_size_m: float | None = None,
    aoi: Any = None,
    align: bool = True,
    coregister: bool | None = None,
    bands: Sequence[str] | None = None,
    examples: Any = None,
    model: Any = None,
    dates: Any = None,
    vegetation_gain: str = "auto",
    seasonal: str = "auto",
) -> RunOptions:
    """Validate a run's options, before any file is opened.

    Parameters
    ----------
    method : str
        A change method of :data:`changedet.change.METHODS`.
    threshold, min_area_m2, opening_px, fill_holes_m2, pixel_size_m, aoi, align, coregister, bands
        As for :func:`changedet.pipeline.detect_changes`.
    examples : path, dict or Examples, optional
        Analyst examples (a GeoJSON FeatureCollection of points or polygons with a boolean
        ``change`` property): a classifier trained on them gives the mask.
    model : path or LearnedModel, optional
        A model written by ``changedet train`` (:meth:`changedet.learn.LearnedModel.save`).
    dates : (str or None, str or None) or str, optional
        The acquisition dates of the before and after images, ``YYYY-MM-DD`` (or one string
        ``"BEFORE,AFTER"``); they override the dates found in the inputs' metadata.
    vegetation_gain : {"auto", "keep", "drop"}
        Whether areas classed ``vegetation_gain`` stay in the change mask and the changed areas
        (see :attr:`RunSpec.vegetation_gain_in_mask`).
    seasonal : {"auto", "keep", "drop"}
        Whether areas classed ``seasonal`` (a whole parcel changed: fields with the seasons)
        stay in the change mask and the changed areas (see :attr:`RunSpec.seasonal_in_mask`).

    Returns
    -------
    RunOptions

    Examples
    --------
    >>> run_options(threshold="p98", min_area_m2=100).threshold_percentile
    98.0
    >>> run_options(method="nope")
    Traceback (most recent call last):
    ...
    changedet.errors.InvalidParameterError: method must be one of [...], got 'nope'
    """
    from .change import METHODS

    if not isinstance(method, str) or method not in METHODS:
        raise InvalidParameterError(f"method must be one of {sorted(METHODS)}, got {method!r}")
    thr_method, thr_value, thr_pct = parse_threshold(threshold)
    mmu = _number("min_area_m2", min_area_m2, minimum=0)
    holes = _number("fill_holes_m2", fill_holes_m2, minimum=0)
    px = _number("pixel_size_m", pixel_size_m, minimum=0, strict=True)
    if opening_px is not None and (isinstance(opening_px, bool) or not isinstance(opening_px, (int, np.integer))
                                   or opening_px < 0):
        raise InvalidParameterError(f"opening_px must be an integer >= 0, got {opening_px!r}")
    for name, flag in (("align", align), ("coregister", coregister)):
        if not isinstance(flag, (bool, np.bool_)) and not (name == "coregister" and flag is None):
            raise InvalidParameterError(f"{name} must be True or False{' or None' if name == 'coregister' else ''}, "
                                        f"got {flag!r}")
    if bands is not None:
        if isinstance(bands, str) or not all(isinstance(b, str) for b in bands) or not len(bands):
            raise InvalidParameterError(f"bands must be a non-empty list of band names, got {bands!r}")
        bands = tuple(bands)
    examples, learned_model = _check_learned(examples, model, method)
    if vegetation_gain not in VEGETATION_GAIN_CHOICES:
        raise InvalidParameterError(f"vegetation_gain must be one of {list(VEGETATION_GAIN_CHOICES)}, got {vegetation_gain!r}: "
                                    "'auto' leaves areas of vegetation gain out of the mask on pixels finer than "
                                    f"{VEGETATION_GAIN_OUT_BELOW_M:g} m, 'keep' keeps them, 'drop' leaves them out")
    if seasonal not in SEASONAL_CHOICES:
        raise InvalidParameterError(f"seasonal must be one of {list(SEASONAL_CHOICES)}, got {seasonal!r}: 'auto' leaves "
                                    "areas of seasonal change out of the mask (kept in a classifier's run), 'keep' keeps "
                                    "them, 'drop' leaves them out")
    dates = _check_dates(dates)
    return RunOptions(
        method=method, threshold=float(threshold) if isinstance(threshold, np.generic) else threshold,
        threshold_method=thr_method, threshold_value=thr_value, threshold_percentile=thr_pct,
        min_area_m2=mmu, opening_px=None if opening_px is None else int(opening_px), fill_holes_m2=holes,
        pixel_size_m=px, aoi=parse_aoi(aoi, lonlat=False),
        aoi_source=os.fspath(aoi) if isinstance(aoi, (str, os.PathLike)) else None, align=bool(align),
        coregister=None if coregister is None else bool(coregister), bands=bands,
        examples=examples, model=model, learned_model=learned_model, dates=dates, vegetation_gain=vegetation_gain,
        seasonal=seasonal,
    )


def _check_dates(dates: Any) -> tuple[str | None, str | None] | None:
    """``(before, after)`` as ``YYYY-MM-DD`` strings (either may be None), or None."""
    import datetime

    if dates is None:
        return None
    if isinstance(dates, str):
        dates = [d.strip() or None for d in dates.split(",")]
    if isinstance(dates, (bytes, dict)) or not hasattr(dates, "__len__") or len(dates) != 2:
        raise InvalidParameterError(
            f"dates must be two dates (before, after) as YYYY-MM-DD, e.g. '2024-06-14,2025-06-19'; got {dates!r}")
    out: list[str | None] = []
    for side, d in zip(("before", "after"), dates):
        if d is None:
            out.append(None)
            continue
        if isinstance(d, (datetime.date, datetime.datetime)):
            out.append(d.strftime("%Y-%m-%d"))
            continue
        try:
            out.append(datetime.date.fromisoformat(str(d).strip()).isoformat())
        except ValueError:
            raise InvalidParameterError(
                f"dates: the {side} date {d!r} is not a date as YYYY-MM-DD (e.g. 2024-06-14)") from None
    if out[0] and out[1] and out[0] > out[1]:
        raise InvalidParameterError(f"dates: the before date {out[0]} is after the after date {out[1]}; "
                                    "give them in the order before, after")
    return out[0], out[1]


def _check_learned(examples: Any, model: Any, method: str) -> tuple[Any, Any]:
    """Examples (a path, GeoJSON dict or :class:`~changedet.learn.Examples`) and a model
    (a path or :class:`~changedet.learn.LearnedModel`), checked before any pixel is read."""
    import os
    from pathlib import Path

    if examples is None and model is None:
        return None, None
    if examples is not None and model is not None:
        raise InvalidParameterError("pass examples or a model, not both: examples train a new classifier, a model "
                                    "applies one trained before")
    if method != "auto":
        raise InvalidParameterError(
            f"method={method!r} and {'examples' if examples is not None else 'a model'} both choose how change is "
            "scored; drop the method to use the classifier"
        )
    from .learn import Examples, LearnedModel, load_model

    if model is not None:
        if isinstance(model, LearnedModel):
            return None, model
        if not isinstance(model, (str, os.PathLike)):
            raise InvalidParameterError(f"model must be a path to a model file or a LearnedModel, got {type(model).__name__}")
        if not Path(model).is_file():
            raise InvalidParameterError(f"model {os.fspath(model)!r} is not a file; pass a file written by changedet train")
        return None, load_model(model)
    if isinstance(examples, (Examples, dict)):
        return examples, None
    if isinstance(examples, (str, os.PathLike)):
        if not Path(examples).is_file():
            raise InvalidParameterError(
                f"examples {os.fspath(examples)!r} is not a file; pass a GeoJSON FeatureCollection of points or "
                "polygons with a boolean 'change' property"
            )
        return os.fspath(examples), None
    raise InvalidParameterError(
        f"examples must be a GeoJSON file, a GeoJSON dict or changedet.learn.Examples, got {type(examples).__name__}"
    )


@dataclass(frozen=True)
class RunSpec:
    """Everything a run needs to know, fixed before the first pixel is scored.

    Attributes
    ----------
    options : RunOptions
        The validated user options.
    grid : Grid
        The analysis grid (the overlap of both dates, cropped to the area of interest).
    spectral, aux : tuple of str
        Spectral bands (scored) and classification bands (SCL, QA_PIXEL: masks only);
        arrays hold the spectral bands first, then the classification bands.
    min_area_m2, fill_holes_m2 : float
        Minimum mapping unit and largest hole filled (pixels on pixel grids without a
        pixel size).
    opening_px : int
        Radius of the morphological opening.
    px_size : float
        Pixel edge in metres (1 on pixel grids without a pixel size).
    in_px : bool
        Areas are in pixels (no georeferencing and no ``pixel_size_m``).
    aoi_grid : shapely geometry or None
        The area of interest in the grid's CRS.
    """

    options: RunOptions
    grid: Grid
    spectral: tuple[str, ...]
    aux: tuple[str, ...]
    min_area_m2: float
    opening_px: int
    fill_holes_m2: float
    px_size: float
    in_px: bool
    aoi_grid: Any = None
    examples: Any = None

    @property
    def band_order(self) -> tuple[str, ...]:
        """The bands of the arrays a window holds: spectral, then classification bands."""
        return (*self.spectral, *self.aux)

    @property
    def coregister(self) -> bool:
        """Whether the run estimates and removes a shift between the dates.

        As the user chose; by default yes, except for a classifier's run (examples or a
        model) on pixels finer than :data:`LEARNED_COREGISTER_FROM_M` or of unknown size.
        There misregistration is local (buildings lean differently from two view angles)
        rather than one shift, a shift estimated on a small tile full of new buildings can be
        pixels wrong, and the classifier learns the pair as it is from its examples.  With 20
        change and 60 no-change examples, 5 seeds (``benchmarks/fewshot.py --pipeline on|off``):
        LEVIR-CD pooled F1 0.716 without co-registration, 0.679 with it; DSIFN 0.777 and
        0.778.  On the OSCD cities (10 m) co-registration raised it by about 0.005.
        """
        o = self.options
        if o.coregister is not None:
            return bool(o.coregister)
        return not (o.learned and (self.in_px or self.px_size < LEARNED_COREGISTER_FROM_M))

    @property
    def vegetation_gain_in_mask(self) -> bool:
        """Whether areas classed ``vegetation_gain`` stay in the mask and the changed areas.

        Vegetation growing (a new lawn, crops, a season) is not construction.  By default
        (``vegetation_gain="auto"``) such areas are left out on pixels finer than
        :data:`VEGETATION_GAIN_OUT_BELOW_M` (lawns and gardens around new buildings) and kept
        on coarser pixels and in a classifier's run (the analyst's examples say what counts).
        ``benchmarks/quality.py``, pooled F1 kept -> left out below 5 m: synthetic 0.5 m mean
        (12 seeds) 0.818 -> 0.824, 1 m 0.878 -> 0.882 (no pair lower), LEVIR-CD 0.368 -> 0.371,
        DSIFN 0.486 -> 0.487, the 1 m sample 0.964 -> 0.965.  At 10 m it would cost the OSCD
        cities 0.262 -> 0.248 (mean 0.303 -> 0.286): their truth counts construction sites
        that turned green, which the class also holds.
        """
        o = self.options
        if o.vegetation_gain != "auto":
            return o.vegetation_gain == "keep"
        return o.learned or self.in_px or self.px_size >= VEGETATION_GAIN_OUT_BELOW_M

    @property
    def seasonal_in_mask(self) -> bool:
        """Whether areas classed ``seasonal`` stay in the mask and the changed areas.

        A whole parcel that changed (vegetation gained or lost, or a change the indices do
        not name, on an area whose outline follows edges the before image already had: see
        :data:`changedet.objects.SEASONAL_OUTLINE_SHARE`), or vegetation lost on an area whose
        outline follows no edge of either date (:data:`changedet.objects.DIFFUSE_OUTLINE_SHARE`),
        is a field with the seasons, not construction.  By default (``seasonal="auto"``) such areas are left out at every pixel
        size, and kept in a classifier's run (the analyst's examples say what counts: left out
        there, ``benchmarks/fewshot.py --pipeline auto`` at K = 20, seeds 0-4, read OSCD 0.405 ->
        0.360, the 0.5-1 m sets unchanged).
        """
        o = self.options
        if o.seasonal != "auto":
            return o.seasonal == "keep"
        return o.learned

    @property
    def method_pixel_size_m(self) -> float | None:
        """The pixel size the methods are told (None where it is unknown)."""
        return None if self.in_px else self.px_size

    @property
    def min_area_px(self) -> int:
        """The minimum mapping unit in whole pixels."""
        px_area = 1.0 if self.in_px else self.px_size * self.px_size
        return int(math.ceil(self.min_area_m2 / px_area - 1e-9))

    def parameters(self, *, threshold_method: str, threshold_value: float,
                   hysteresis: tuple[float, float] | None = None) -> dict[str, Any]:
        """The ``parameters`` block of ``summary.json`` (the same keys on every path).

        Parameters
        ----------
        threshold_method : str
            The thresholding method the run used.
        threshold_value : float
            The threshold it chose (NaN is written as null).
        hysteresis : (float, float), optional
            The low and high score values of its hysteresis thresholding, if it had one.

        Returns
        -------
        dict
            The options as run, plain JSON values; areas are null on pixel grids.

        Examples
        --------
        >>> from affine import Affine
        >>> s = make_spec(run_options(), Grid((10, 10), Affine(10, 0, 0, 0, -10, 0), "EPSG:32639"), ["B04", "B08"])
        >>> p = s.parameters(threshold_method="otsu", threshold_value=0.25)
        >>> p["threshold_value"], p["min_area_px"], p["bands"]
        (0.25, 4, ['B04', 'B08'])
        """
        o = self.options
        return {
            "method": o.method_name,
            "threshold": o.threshold,
            "threshold_method": threshold_method,
            "threshold_value": float(threshold_value) if math.isfinite(threshold_value) else None,
            "hysteresis": hysteresis_record(hysteresis),
            "min_area_m2": None if self.in_px else self.min_area_m2,
            "min_area_px": self.min_area_px,
            "opening_px": self.opening_px,
            "fill_holes_m2": None if self.in_px else self.fill_holes_m2,
            "aoi": list(o.aoi.bounds) if o.aoi is not None else None,
            "align": o.align,
            "coregister": self.coregister,
            "pixel_size_m": o.pixel_size_m,
            "bands": list(self.spectral),
            "examples": _describe(o.examples),
            "model": _describe(o.model),
            "vegetation_gain": o.vegetation_gain,
            "vegetation_gain_in_mask": self.vegetation_gain_in_mask,
            "seasonal": o.seasonal,
            "seasonal_in_mask": self.seasonal_in_mask,
        }

    def with_options(self, **changes: Any) -> "RunSpec":
        """A new spec with some options changed (threshold and clean-up), defaults re-derived.

        Parameters
        ----------
        **changes : Any
            Keyword arguments of :func:`run_options`; the others keep this spec's values
            (the parsed threshold is re-derived from ``threshold``).

        Returns
        -------
        RunSpec
            On the same grid and bands.

        Raises
        ------
        InvalidParameterError
            As :func:`run_options`, for an invalid value.
        TypeError
            For a name that is not an option of :func:`run_options`.

        Examples
        --------
        >>> from affine import Affine
        >>> s = make_spec(run_options(), Grid((10, 10), Affine(10, 0, 0, 0, -10, 0), "EPSG:32639"), ["B04", "B08"])
        >>> s.min_area_m2, s.with_options(min_area_m2=500).min_area_m2
        (400.0, 500.0)
        """
        o = self.options
        kw = {f.name: getattr(o, f.name) for f in dataclasses.fields(o)
              if f.name not in ("threshold_method", "threshold_value", "threshold_percentile", "learned_model",
                                "aoi_source")}
        kw.update(changes)
        new = run_options(**kw)
        return make_spec(new, self.grid, self.band_order)


def _is_classification(name: str) -> bool:
    from .masks import classification_band

    return classification_band([name], "scl") == 0 or classification_band([name], "qa_pixel") == 0


def make_spec(options: RunOptions, grid: Grid, band_names: Sequence[str]) -> RunSpec:
    """The run specification for a pair on ``grid`` with bands ``band_names``.

    Parameters
    ----------
    options : RunOptions
        From :func:`run_options`.
    grid : Grid
        The analysis grid.
    band_names : sequence of str
        The bands both dates share (spectral and classification bands).

    Returns
    -------
    RunSpec

    Examples
    --------
    >>> from affine import Affine
    >>> g = Grid((100, 100), Affine(10, 0, 500000, 0, -10, 6000000), "EPSG:32639")
    >>> s = make_spec(run_options(), g, ["B02", "B03", "B04", "B08", "SCL"])
    >>> s.spectral, s.aux, s.min_area_m2, s.opening_px
    (('B02', 'B03', 'B04', 'B08'), ('SCL',), 400.0, 0)
    """
    names = [str(n) for n in band_names]
    aux = tuple(n for n in names if _is_classification(n))
    spectral = tuple(n for n in names if n not in aux)
    if not spectral:
        raise InvalidParameterError(f"the images hold only classification bands {list(aux)}; pass images with spectral bands")
    in_px = grid.crs is None and not options.pixel_size_m
    if grid.crs is None:
        px_size = float(options.pixel_size_m) if options.pixel_size_m else 1.0
    else:
        px_size = float(grid.pixel_size_m)
    unit = 4.0 if in_px else float(max(4 * px_size * px_size, 50.0))  # the unsupervised default (4: pixels)
    if options.min_area_m2 is not None:
        mmu = float(options.min_area_m2)
    elif options.learned and not in_px:  # the analyst's examples say what counts, a garage included
        mmu = float(max(4 * px_size * px_size, LEARNED_MIN_AREA_M2))
    else:
        mmu = unit
    opening = (1 if px_size < 5 else 0) if options.opening_px is None else int(options.opening_px)
    if options.fill_holes_m2 is not None:
        holes = float(options.fill_holes_m2)
    else:  # the minimum mapping unit; a classifier's default one fills holes as the unsupervised default does
        holes = mmu if options.min_area_m2 is not None else unit
    aoi_grid = aoi_in_grid_crs(options.aoi, grid, source=options.aoi_source) if options.aoi is not None else None
    examples = None
    if options.examples is not None:
        from .learn import Examples, read_examples

        examples = options.examples if isinstance(options.examples, Examples) else read_examples(options.examples, grid)
    return RunSpec(options, grid, spectral, aux, mmu, opening, holes, px_size, in_px, aoi_grid, examples)


def hysteresis_record(h: tuple[float, float] | None) -> dict[str, float] | None:
    """A run's hysteresis ``(low, high)`` as ``summary.json`` writes it (``parameters`` and ``fit``).

    Parameters
    ----------
    h : (float, float) or None
        The low and high score values, or None (no hysteresis).

    Returns
    -------
    dict or None
        ``{"low", "high"}`` rounded to 6 decimals.

    Examples
    --------
    >>> hysteresis_record((3.0, 12.0)), hysteresis_record(None)
    ({'low': 3.0, 'high': 12.0}, None)
    """
    return None if h is None else {"low": round(float(h[0]), 6), "high": round(float(h[1]), 6)}


def _describe(value: Any) -> Any:
    """How the summary names examples or a model: the path, or what was passed."""
    import os

    if value is None:
        return None
    if isinstance(value, (str, os.PathLike)):
        return os.fspath(value)
    if isinstance(value, dict):
        return "GeoJSON (in memory)"
    return type(value).__name__
