"""Watch a site over many dates: when did each pixel first change?

:func:`detect_series` runs the pair pipeline (:func:`changedet.pipeline.detect_changes`)
on the first date against every later date, puts every change mask on the first date's
grid and fits, per pixel, one step: unchanged up to some date, changed from that date
on.  The step's date is the pixel's **first change**.

Why the first date against each, and why a step fit:

- *Against the first date*, not consecutive pairs: a building that appears at date 3
  is in every later mask, so each later date confirms it; consecutive pairs see it
  once, and a pixel missed in that one pair is lost for good.  The reference date is
  also the grid every result is put on.
- *A step fit* (the date that disagrees least with the observed masks): a pixel must
  stay changed in the dates that follow, so a one-date false alarm (phenology, a
  shadow, a parked truck) does not start a change, and one missed date inside a run of
  changed dates does not delay it.  Ties go to the later date and, between a change
  and none, to none: a change needs more dates for it than against it.  Dates without
  an observation (nodata, outside a pair's overlap) count neither way.
- *Each date against the one before it* as well: a step at a date whose own consecutive
  pair saw nothing there costs one more disagreement, so a false alarm on the date just
  before a real change (a field about to be built on, flagged for its phenology) does not
  pull the change a date early.

Measured (``benchmarks/series.py``): on the bundled synthetic series the first-change date
is right for 97.9 % of the changed pixels; on six unseen seeds of its generator 0.934-0.979
(mean 0.959).  The first date any pair flags gives mean 0.926 (min 0.835) and flags 16 % of
the unchanged pixels instead of 7 %; the step fit without the consecutive pairs, mean 0.947
(min 0.861).  The last date has no later one to confirm it (``confirmed`` in the table).

Outputs (:meth:`SeriesResult.save`, ``changedet series``):

| file | what |
|---|---|
| ``first_change.tif`` | uint8 on the first date's grid: the index (1 .. N-1) of the first date of change; 0 (nodata) never changed or never seen; tags ``DATES`` and ``DATE_<i>`` |
| ``series.csv`` | per date: new and total changed area, changed fraction, structures, the pair's own changed area |
| ``series.png`` | changed area (and structures) per date |
| ``series.gif`` | the site on every date (one common stretch) with the changed areas outlined, the new ones in their own colour |
| ``series.json`` | the dates, the method, every parameter, inputs' SHA-256, per-date figures; written last |
"""

from __future__ import annotations

import csv
import datetime as dt
import io as _pyio
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import __version__
from . import io as _io
from ._paths import is_remote
from .errors import ChangedetError, InvalidParameterError
from .raster import NODATA_MASK, GeoRaster, Grid

__all__ = [
    "MIN_DATES",
    "SERIES_FILES",
    "SeriesResult",
    "SeriesInputError",
    "parse_series_dates",
    "first_change",
    "first_change_accuracy",
    "series_inputs",
    "detect_series",
    "fetch_series",
]

#: Fewest dates a series takes (with two, use :func:`changedet.pipeline.detect_changes`).
MIN_DATES = 3
#: The files :meth:`SeriesResult.save` writes.
SERIES_FILES = ("first_change.tif", "series.csv", "series.png", "series.gif", "series.json")
_NEVER = 0


class SeriesInputError(ChangedetError, ValueError):
    """The images or dates of a series are not usable (count, order, format)."""


# --------------------------------------------------------------------------- dates
def _parse_date(text: Any, position: int) -> dt.date:
    if isinstance(text, dt.datetime):
        return text.date()
    if isinstance(text, dt.date):
        return text
    s = str(text).strip()
    for fmt in ("%Y-%m-%d", "%Y%m%d"):
        try:
            return dt.datetime.strptime(s[:10] if fmt == "%Y-%m-%d" else s, fmt).date()
        except ValueError:
            continue
    raise SeriesInputError(
        f"date {position} {str(text)!r} is not a date; write it as YYYY-MM-DD, e.g. 2024-06-14"
    )


def parse_series_dates(dates: str | Sequence[Any], *, n_images: int | None = None) -> list[dt.date]:
    """Check and parse the dates of a series.

    Parameters
    ----------
    dates : str or sequence of str, date or datetime
        ``"2024-06-14,2024-08-22,..."`` or a sequence; ``YYYY-MM-DD`` (a time after it is
        ignored) or ``YYYYMMDD``.
    n_images : int, optional
        The number of images the dates belong to: the counts must match.

    Returns
    -------
    list of datetime.date
        The dates, strictly increasing.

    Raises
    ------
    ChangedetError
        A date that is not one, fewer than :data:`MIN_DATES` dates, a count that differs
        from ``n_images``, or dates not strictly increasing (the message names the
        offending date and the fix).

    Examples
    --------
    >>> parse_series_dates("2024-06-14,2024-08-22,2025-05-20")
    [datetime.date(2024, 6, 14), datetime.date(2024, 8, 22), datetime.date(2025, 5, 20)]
    >>> parse_series_dates(["2024-06-14", "2024-05-01", "2025-01-01"])
    Traceback (most recent call last):
    ...
    changedet.series.SeriesInputError: dates must increase: date 2 2024-05-01 is not after date 1 2024-06-14; give the images and their dates in time order
    """
    items = [d for d in dates.split(",")] if isinstance(dates, str) else list(dates)
    parsed = [_parse_date(d, i + 1) for i, d in enumerate(items)]
    if n_images is not None and len(parsed) != n_images:
        raise SeriesInputError(
            f"{n_images} images but {len(parsed)} dates; give one date per image, in the same order"
        )
    if len(parsed) < MIN_DATES:
        raise SeriesInputError(
            f"a series needs at least {MIN_DATES} dates, got {len(parsed)}; for two dates use detect_changes "
            "(changedet detect BEFORE AFTER)"
        )
    for i in range(1, len(parsed)):
        if parsed[i] <= parsed[i - 1]:
            raise SeriesInputError(
                f"dates must increase: date {i + 1} {parsed[i]} is not after date {i} {parsed[i - 1]}; give the "
                "images and their dates in time order"
            )
    return parsed


# --------------------------------------------------------------------------- the step fit
def first_change(changed: np.ndarray, consecutive: np.ndarray | None = None) -> np.ndarray:
    """Per pixel, the first date of a change that lasts: a one-step fit to the masks.

    Parameters
    ----------
    changed : (dates - 1, rows, cols) ndarray of uint8
        For each date after the first, its change mask against the first date: 1 change,
        0 no change, 255 no observation.
    consecutive : (dates - 1, rows, cols) ndarray of uint8, optional
        For each date after the first, its change mask against the date before it (the
        first layer is the same pair as ``changed``'s).  A step at a date whose own
        consecutive pair saw no change there costs one more disagreement: a false alarm
        on the date just before a real change (phenology of a field about to be built on)
        then does not pull the change a date early.

    Returns
    -------
    (rows, cols) ndarray of uint8
        The index (1 .. dates - 1) of the date from which the pixel is changed, 0 never
        changed (or never observed).  The index minimises the disagreements (changed
        before it, unchanged from it on, and its consecutive pair unchanged); ties go to
        the later date, and to "never" when never disagrees as little.

    Examples
    --------
    >>> obs = np.array([[0, 1, 1, 1], [0, 1, 0, 0], [1, 0, 1, 1], [0, 0, 0, 1], [0, 255, 1, 1]], "uint8")
    >>> first_change(obs.T[:, :, None])[:, 0].tolist()
    [2, 0, 3, 4, 3]
    >>> field = np.array([[0, 1, 1, 1]], "uint8").T[:, :, None]   # flagged a date before it was built on
    >>> int(first_change(field)[0, 0]), int(first_change(field, np.array([[0, 0, 1, 0]], "uint8").T[:, :, None])[0, 0])
    (2, 3)
    """
    obs = np.asarray(changed)
    if obs.ndim != 3:
        raise InvalidParameterError(f"changed must be (dates - 1, rows, cols), got shape {obs.shape}")
    valid = obs != NODATA_MASK
    yes = ((obs == 1) & valid).astype(np.int16)
    no = ((obs == 0) & valid).astype(np.int16)
    m = obs.shape[0]
    # cost of a step at k (1-based date index k = j + 1): changed before it + unchanged from it on
    yes_before = np.concatenate([np.zeros((1,) + obs.shape[1:], np.int16), np.cumsum(yes, axis=0)])  # (m + 1, ...)
    no_from = np.concatenate([np.cumsum(no[::-1], axis=0)[::-1], np.zeros((1,) + obs.shape[1:], np.int16)])
    cost = yes_before + no_from  # cost[j]: step at observation j; cost[m]: never
    if consecutive is not None:
        cons = np.asarray(consecutive)
        if cons.shape != obs.shape:
            raise InvalidParameterError(f"consecutive has shape {cons.shape} but changed {obs.shape}; give one mask "
                                        "per date after the first for both")
        cost[:m] += (cons == 0).astype(np.int16)
    # the later of equal costs wins: argmin over the reversed costs
    best = m - np.argmin(cost[::-1], axis=0)
    out = np.where(best == m, _NEVER, best + 1).astype(np.uint8)
    out[~valid.any(axis=0)] = _NEVER
    return out


def first_change_accuracy(predicted: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """How often the first-change date is right, over the truly changed pixels.

    Parameters
    ----------
    predicted, truth : (rows, cols) ndarray of int
        Date indices of the first change (0 never), e.g. ``first_change.tif`` and the
        sample's ``truth.tif``.

    Returns
    -------
    dict
        ``date_right``: of the pixels that changed (truth > 0), the fraction whose date is
        exactly right (a missed pixel counts as wrong); ``found``: the fraction found at
        any date; ``date_right_when_found``; ``false_alarm``: of the unchanged pixels, the
        fraction given a date; ``within_one_date``; ``changed_pixels``.

    Examples
    --------
    >>> first_change_accuracy(np.array([[1, 2, 0, 3]]), np.array([[1, 3, 0, 0]]))["date_right"]
    0.5
    """
    p, t = np.asarray(predicted).astype(int), np.asarray(truth).astype(int)
    if p.shape != t.shape:
        raise InvalidParameterError(f"predicted has shape {p.shape} but truth {t.shape}; put both on one grid")
    changed = t > 0
    n = int(changed.sum())
    found = changed & (p > 0)

    def frac(a: np.ndarray, d: int) -> float:
        return float(a.sum() / d) if d else float("nan")

    return {
        "date_right": frac(changed & (p == t), n),
        "within_one_date": frac(found & (np.abs(p - t) <= 1), n),
        "found": frac(found, n),
        "date_right_when_found": frac(found & (p == t), int(found.sum())),
        "false_alarm": frac(~changed & (p > 0), int((~changed).sum())),
        "changed_pixels": float(n),
    }


# --------------------------------------------------------------------------- inputs
def _date_of_folder(folder: Path) -> str | None:
    item = folder / "item.json"
    if not item.is_file():
        return None
    meta = _io.read_json(item)
    feats = meta.get("features", [meta]) if isinstance(meta, dict) else []
    for f in feats:
        props = f.get("properties", {}) if isinstance(f, dict) else {}
        when = props.get("datetime") or props.get("start_datetime")
        if when:
            return str(when)[:10]
    return None


def _date_of_file(path: Path) -> str | None:
    """``ACQUISITION_DATE`` or the TIFF ``DATETIME`` tag of a raster file (None when absent)."""
    import rasterio

    try:
        with rasterio.open(path) as src:
            tags = src.tags()
    except Exception:  # noqa: BLE001 - an unreadable file is reported by the pipeline's reader
        return None
    for key in ("ACQUISITION_DATE", "acquisition_date", "DATE_ACQUIRED"):
        if tags.get(key):
            return str(tags[key])[:10]
    when = tags.get("TIFFTAG_DATETIME")
    return when[:10].replace(":", "-") if when else None


def series_inputs(images: Sequence[Any], dates: str | Sequence[Any] | None = None) -> tuple[list[Any], list[dt.date]]:
    """The images of a series and their dates, checked.

    Parameters
    ----------
    images : sequence of path or GeoRaster, or one folder
        The images in time order; or one folder written by ``changedet fetch --dates``
        (``fetch.json`` lists its date folders) or holding one raster per date.
    dates : str or sequence, optional
        One date per image.  Default: each image's date from its metadata (a fetch
        folder's ``item.json``, a GeoTIFF's ``ACQUISITION_DATE`` tag).

    Returns
    -------
    (list, list of datetime.date)
        The images and their dates.

    Raises
    ------
    ChangedetError
        Fewer than :data:`MIN_DATES` images, a count mismatch, dates not increasing, a date
        that is not one, or a date that cannot be found (pass ``dates``).

    Examples
    --------
    >>> from changedet.data import sample_tiles_dir
    >>> imgs, ds = series_inputs([sample_tiles_dir() / "series" / "site_growth"])
    >>> len(imgs), ds[0].isoformat()
    (5, '2024-06-14')
    """
    items = list(images) if not isinstance(images, (str, os.PathLike, GeoRaster)) else [images]
    if len(items) == 1 and isinstance(items[0], (str, os.PathLike)) and Path(items[0]).is_dir():
        folder = Path(items[0])
        fetch = folder / "fetch.json"
        if fetch.is_file() and isinstance(_io.read_json(fetch).get("series"), list):
            items = [folder / str(d) for d in _io.read_json(fetch)["series"]]
        elif not any(folder.glob("*_B0*.tif")) and not (folder / "item.json").is_file():
            found = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".tif", ".tiff", ".jp2", ".png")
                           and p.name != "truth.tif" and not p.name.startswith("."))
            found += sorted(p for p in folder.iterdir() if p.is_dir() and (p / "item.json").is_file())
            if found:
                items = found
    for i, img in enumerate(items):
        if isinstance(img, (str, os.PathLike)) and not is_remote(img):
            if not Path(img).exists():
                raise SeriesInputError(f"image {i + 1} {os.fspath(img)!r} does not exist; check the path (relative "
                                       f"paths are resolved from {os.getcwd()!r})")
        elif not isinstance(img, (str, os.PathLike, GeoRaster)):
            raise SeriesInputError(f"image {i + 1} must be a path or a GeoRaster, got {type(img).__name__}")
    if len(items) < MIN_DATES:
        raise SeriesInputError(
            f"a series needs at least {MIN_DATES} images, got {len(items)}; for two dates use detect_changes "
            "(changedet detect BEFORE AFTER)"
        )
    if dates is None:
        found_dates: list[str] = []
        for i, img in enumerate(items):
            d = None
            if isinstance(img, (str, os.PathLike)):
                p = Path(img)
                d = _date_of_folder(p) if p.is_dir() else _date_of_file(p)
            if d is None:
                raise SeriesInputError(
                    f"image {i + 1} {str(img)!r} has no date in its metadata; pass the dates (--dates D1,D2,...)"
                )
            found_dates.append(d)
        dates = found_dates
    return items, parse_series_dates(dates, n_images=len(items))


# --------------------------------------------------------------------------- the result
@dataclass(frozen=True, eq=False, repr=False)
class SeriesResult:
    """What :func:`detect_series` found.

    Attributes
    ----------
    dates : tuple of datetime.date
        The dates, first the reference.
    first_change : GeoRaster
        uint8 on the first date's grid: the index of the first date of change, 0 never.
    images : tuple of GeoRaster
        Each date on the first date's grid (after co-registration), for figures.
    table : list of dict
        One row per date: ``date``, ``index``, ``new_area_m2``, ``changed_area_m2``,
        ``changed_area_ha``, ``changed_fraction``, ``structures`` (None when not counted),
        ``pair_changed_area_m2`` (the pair's own mask, before the step fit), ``pair_structures``
        (the pair pipeline's own count, ``summary.json`` ``results.structures``, None where it
        has none), ``confirmed``
        (False for the last date, whose new change no later date confirms).
    structures_note : str
        How structures were counted, or why not.
    pair_masks : (dates - 1, rows, cols) ndarray of uint8
        What each pair said before the step fit, on the first date's grid: row ``k - 1`` is
        date ``k`` against the first date (1 change, 0 no change, 255 no observation).
    summary : dict
        Parameters, inputs, timings, the table (``series.json``).
    """

    dates: tuple[dt.date, ...]
    first_change: GeoRaster
    images: tuple[GeoRaster, ...]
    table: list[dict[str, Any]]
    structures_note: str
    pair_masks: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0), np.uint8), repr=False)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def grid(self) -> Grid:
        """The first date's grid, which every output is on."""
        return self.first_change.grid

    def changed_by(self, index: int) -> np.ndarray:
        """Where the site had changed by a date.

        Parameters
        ----------
        index : int
            The date's index (0 the first date).

        Returns
        -------
        (rows, cols) ndarray of bool
            Pixels whose first change is at or before the date.
        """
        fc = self.first_change.data[0]
        return (fc > 0) & (fc <= index)

    def plot(self) -> Any:
        """The chart of changed area (and structures) per date.

        Returns
        -------
        matplotlib.figure.Figure
        """
        return _chart(self)

    def plot_map(self, truth: GeoRaster | np.ndarray | None = None) -> Any:
        """The first-change map: one colour per date over the first image in grey.

        Parameters
        ----------
        truth : GeoRaster or (rows, cols) ndarray, optional
            A known first-change index map on the same grid, drawn beside it with the
            fraction of changed pixels whose date is right.

        Returns
        -------
        matplotlib.figure.Figure
        """
        return _first_change_map(self, truth)

    def gif_bytes(self, *, frame_ms: int = 900) -> bytes:
        """The animated GIF of the site over time with the changed areas outlined.

        Parameters
        ----------
        frame_ms : int
            How long each date is shown, in milliseconds.

        Returns
        -------
        bytes
            A GIF with one frame per date (show it with ``IPython.display.Image(data)``).
        """
        return _gif(self, frame_ms=frame_ms)

    def save(self, folder: str | os.PathLike[str], *, overwrite: bool = False) -> dict[str, Path]:
        """Write :data:`SERIES_FILES` into ``folder``; ``series.json`` last.

        Each file is written under a temporary name and renamed when complete; when one
        fails, the files this call wrote are removed, so the folder holds a whole result
        or none.

        Parameters
        ----------
        folder : path
            The output folder (made when missing).
        overwrite : bool
            Replace a finished series already there.

        Returns
        -------
        dict of str -> Path
            The files written.
        """
        out = Path(folder)
        if (out / "series.json").exists() and not overwrite:
            raise FileExistsError(f"{str(out)!r} already holds a finished series; pass overwrite=True (--overwrite) "
                                  "or choose another folder")
        out.mkdir(parents=True, exist_ok=True)
        if (out / "series.json").exists():
            (out / "series.json").unlink()  # the folder is not whole until the new summary lands
        written: dict[str, Path] = {}
        try:
            written["first_change.tif"] = _write_first_change(self, out / "first_change.tif")
            with _io.atomic_path(out / "series.csv") as tmp:
                _write_csv(self.table, tmp)
            written["series.csv"] = out / "series.csv"
            from . import plot

            written["series.png"] = plot.save_figure(self.plot(), out / "series.png")
            data = self.gif_bytes()
            with _io.atomic_path(out / "series.gif") as tmp:
                tmp.write_bytes(data)
            written["series.gif"] = out / "series.gif"
            summary = dict(self.summary, outputs=sorted([*written, "series.json"]))
            written["series.json"] = _io.write_json(summary, out / "series.json")
        except BaseException:
            for p in written.values():
                p.unlink(missing_ok=True)
            raise
        return written

    def __repr__(self) -> str:
        last = self.table[-1]
        return (f"SeriesResult({len(self.dates)} dates {self.dates[0]} .. {self.dates[-1]}, changed "
                f"{last['changed_area_ha']:.2f} ha by the last date)")


# --------------------------------------------------------------------------- the run
def _on_grid(raster: GeoRaster, grid: Grid, *, nearest: bool) -> GeoRaster:
    if raster.grid.same_as(grid):
        return raster
    from .align import align_to

    data = raster.data.astype(np.float32)
    return align_to(raster.with_data(data), grid, resampling="nearest" if nearest else "bilinear")


def _mask_on_grid(mask: GeoRaster, grid: Grid) -> np.ndarray:
    m = mask.data[0].astype(np.float32)
    m[mask.data[0] == NODATA_MASK] = np.nan
    on = _on_grid(mask.with_data(m[None]), grid, nearest=True).data[0]
    return np.where(np.isfinite(on), on, NODATA_MASK).astype(np.uint8)


def _count_structures(changed: np.ndarray, image: GeoRaster, grid: Grid, pixel_size_m: float | None) -> tuple[int | None, str]:
    try:
        from . import structures
    except ImportError:
        return None, "structures not counted: this changedet has no changedet.structures; areas only"
    mask = GeoRaster(changed.astype(np.uint8)[None], grid.transform, grid.crs, ("change",))
    found = structures.find_structures(mask, image, pixel_size_m=pixel_size_m)
    if found.count is None:
        return None, f"structures not counted: {found.reason}"
    return int(found.count), ("structures: counted by changedet.structures.find_structures in the area changed "
                              "(lastingly) by each date, on that date's image; pair_structures: the pair "
                              "pipeline's own count for that date against the first (summary.json)")


def detect_series(
    images: Sequence[GeoRaster | str | os.PathLike[str]] | str | os.PathLike[str],
    dates: str | Sequence[Any] | None = None,
    *,
    method: str = "auto",
    threshold: str | float | None = None,
    min_area_m2: float | None = None,
    coregister: bool = True,
    pixel_size_m: float | None = None,
    bands: Sequence[str] | None = None,
    structures: bool = True,
    title: str | None = None,
    out: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
) -> SeriesResult:
    """When did each pixel of a site first change, over many dates?

    Each later date is compared with the first (:func:`changedet.pipeline.detect_changes`,
    with its alignment, co-registration and normalization), the masks are put on the
    first date's grid and :func:`first_change` fits one lasting step per pixel.

    Parameters
    ----------
    images : sequence of path or GeoRaster, or one folder
        At least :data:`MIN_DATES` images of one site in time order, or a folder (see
        :func:`series_inputs`).
    dates : str or sequence, optional
        One date per image (``"2024-06-14,2024-08-22,..."``); default from the images'
        metadata.
    method, threshold, min_area_m2, coregister, pixel_size_m, bands
        As for :func:`changedet.pipeline.detect_changes`, for every pair.
    structures : bool
        Count structures per date (pixels of 2 m or finer, where
        :mod:`changedet.structures` is installed).
    title : str, optional
        A name for the site, shown in the chart's and the GIF's titles.
    out : path, optional
        Also write :data:`SERIES_FILES` into this folder.
    overwrite : bool
        Replace a finished series already in ``out``.

    Returns
    -------
    SeriesResult

    Raises
    ------
    ChangedetError
        Fewer than three images, dates that do not match the images in number, are not
        increasing or are not dates; and every error of the pair pipeline.

    Examples
    --------
    >>> from changedet.data import sample_tiles_dir
    >>> res = detect_series(sample_tiles_dir() / "series" / "site_growth")  # doctest: +SKIP
    >>> [row["date"] for row in res.table][:2]  # doctest: +SKIP
    ['2024-06-14', '2024-08-22']
    """
    from .pipeline import detect_changes, input_hashes

    t0 = time.perf_counter()
    items, parsed = series_inputs(images, dates)
    if out is not None:
        if not os.fspath(out).strip():
            raise InvalidParameterError(f"out must be a folder path, got {out!r}")
        if (Path(out) / "series.json").exists() and not overwrite:
            raise FileExistsError(f"{os.fspath(out)!r} already holds a finished series; pass overwrite=True "
                                  "(--overwrite) or choose another folder")
    masks: list[np.ndarray] = []
    frames: list[GeoRaster] = []
    pair_area: list[float] = []
    pair_structures: list[int | None] = []  # the pair pipeline's own count (summary results.structures), if any
    grid: Grid | None = None
    pair_summary: dict[str, Any] = {}
    timings: dict[str, float] = {}
    for k in range(1, len(items)):
        tk = time.perf_counter()
        res = detect_changes(items[0], items[k], method=method, threshold=threshold, min_area_m2=min_area_m2,
                             coregister=coregister, pixel_size_m=pixel_size_m, bands=bands, tiled=False,
                             figures=False, progress=False)
        if grid is None:
            # the first date as read is the reference grid; the pair's grid may be its overlap with date 1
            first = items[0] if isinstance(items[0], GeoRaster) else _io.read_raster(items[0], bands=bands)
            grid = first.grid
            frames.append(_on_grid(res.before, grid, nearest=False))
            pair_summary = res.summary
        masks.append(_mask_on_grid(res.mask, grid))
        frames.append(_on_grid(res.after, grid, nearest=False))
        pair_area.append(float(res.change_mask().sum()) * _pixel_area(grid, pixel_size_m))
        counted_by_pair = (res.summary.get("results", {}).get("structures") or {}).get("count")
        pair_structures.append(int(counted_by_pair) if counted_by_pair is not None else None)
        timings[f"pair_0_{k}"] = round(time.perf_counter() - tk, 3)
    assert grid is not None
    # each date against the one before it: a step must show where it happens
    consecutive = [masks[0]]
    for k in range(2, len(items)):
        tk = time.perf_counter()
        res = detect_changes(items[k - 1], items[k], method=method, threshold=threshold, min_area_m2=min_area_m2,
                             coregister=coregister, pixel_size_m=pixel_size_m, bands=bands, tiled=False,
                             figures=False, progress=False)
        consecutive.append(_mask_on_grid(res.mask, grid))
        timings[f"pair_{k - 1}_{k}"] = round(time.perf_counter() - tk, 3)
    fc = first_change(np.stack(masks), np.stack(consecutive))
    first = GeoRaster(fc[None], grid.transform, grid.crs, ("first_change",))
    px_area = _pixel_area(grid, pixel_size_m)
    unit = "m2" if px_area != 1.0 or grid.crs is not None or pixel_size_m else "px"
    n_valid = int((np.stack(masks) != NODATA_MASK).any(axis=0).sum())
    table: list[dict[str, Any]] = []
    note = "structures not counted (structures=False)"
    counted: list[int | None] = [None] * len(items)
    if structures:
        note = ""
        for k in range(len(items)):
            changed = (fc > 0) & (fc <= k)
            if not changed.any():
                counted[k] = 0
                continue
            counted[k], note = _count_structures(changed, frames[k], grid, pixel_size_m)
            if counted[k] is None:
                counted = [None] * len(items)
                break
        note = note or "no change found: no structures"
    for k, d in enumerate(parsed):
        changed = int(((fc > 0) & (fc <= k)).sum())
        table.append({
            "date": d.isoformat(),
            "index": k,
            "new_area_m2": round(int((fc == k).sum()) * px_area, 1) if k else 0.0,
            "changed_area_m2": round(changed * px_area, 1),
            "changed_area_ha": round(changed * px_area / 10_000, 4),
            "changed_fraction": round(changed / n_valid, 5) if n_valid else 0.0,
            "structures": counted[k],
            "pair_changed_area_m2": round(pair_area[k - 1], 1) if k else 0.0,
            "pair_structures": (pair_structures[k - 1] if k else 0) if structures else None,
            # the last date's new change has no later date to confirm that it lasts
            "confirmed": k < len(parsed) - 1,
        })
    paths = [p for p in items if not isinstance(p, GeoRaster)]
    found = iter(input_hashes(*paths) if paths else [])
    hashes = [None if isinstance(p, GeoRaster) else next(found) for p in items]
    summary = {
        "changedet_version": __version__,
        "kind": "series",
        "title": title,
        "dates": [d.isoformat() for d in parsed],
        "inputs": [{"date": d.isoformat(), "path": None if isinstance(p, GeoRaster) else os.fspath(p), "sha256": h}
                   for d, p, h in zip(parsed, items, hashes)],
        "grid": {"crs": grid.crs.to_string() if grid.crs else None, "transform": list(tuple(grid.transform)[:6]),
                 "shape": list(grid.shape)},
        "area_unit": unit,
        "method": {
            "pairs": "first date against each later date (changedet.pipeline.detect_changes)",
            "first_change": "per pixel one lasting step: the date minimising the dates that disagree (changed "
                            "before it, unchanged from it on); ties to the later date, and to never",
        },
        "parameters": {"method": method, "threshold": threshold, "min_area_m2": min_area_m2, "coregister": coregister,
                       "pixel_size_m": pixel_size_m, "bands": list(bands) if bands else None,
                       "structures": structures},
        "pair_parameters": pair_summary.get("parameters", {}),
        "structures_note": note,
        "table": table,
        "timings_s": dict(timings, total=round(time.perf_counter() - t0, 3)),
    }
    result = SeriesResult(tuple(parsed), first, tuple(frames), table, note, np.stack(masks),
                          json.loads(json.dumps(summary, default=str)))
    if out is not None:
        result.save(out, overwrite=overwrite)
    return result


def _pixel_area(grid: Grid, pixel_size_m: float | None) -> float:
    if grid.crs is None:
        return float(pixel_size_m) ** 2 if pixel_size_m else 1.0
    return float(grid.pixel_area_m2)


# --------------------------------------------------------------------------- writers and figures
def _write_first_change(result: SeriesResult, path: Path) -> Path:
    import rasterio

    grid = result.grid
    dates = [d.isoformat() for d in result.dates]
    profile: dict[str, Any] = dict(driver="GTiff", width=grid.shape[1], height=grid.shape[0], count=1, dtype="uint8",
                                   crs=grid.crs, transform=grid.transform, nodata=_NEVER, tiled=True, blockxsize=256,
                                   blockysize=256, compress="deflate", predictor=2)
    with _io.atomic_path(path) as tmp:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(result.first_change.data)
            dst.set_band_description(1, "first_change: index of the first date of change (see DATES); 0 never")
            dst.update_tags(DATES=",".join(dates), MEANING="index i of the first date of change, DATE_<i> its date; "
                            "0 (nodata) never changed", REFERENCE_DATE=dates[0],
                            **{f"DATE_{i}": d for i, d in enumerate(dates)})
    return path


def _write_csv(table: list[dict[str, Any]], path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(table[0]))
        w.writeheader()
        for row in table:
            w.writerow({k: ("" if v is None else v) for k, v in row.items()})


def _new_figure(**kwargs: Any) -> Any:
    """A matplotlib Figure (no pyplot state) that shows itself as a PNG in Jupyter."""
    from matplotlib.figure import Figure

    class _Shown(Figure):
        def _repr_png_(self) -> bytes:
            buf = _pyio.BytesIO()
            self.savefig(buf, format="png", dpi=100, facecolor="white")
            return buf.getvalue()

    return _Shown(**kwargs)


def _chart(result: SeriesResult) -> Any:
    dates = [dt.datetime.combine(d, dt.time()) for d in result.dates]
    area = [r["changed_area_ha"] for r in result.table]
    pair = [r["pair_changed_area_m2"] / 10_000 for r in result.table]
    fig = _new_figure(figsize=(7.5, 4.2), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    unit = result.summary.get("area_unit", "m2")
    scale = "ha" if unit == "m2" else "px / 10 000"
    ax.plot(dates, area, "o-", color="#d62728", lw=2, label="changed since the first date (lasting)")
    ax.plot(dates[1:], pair[1:], "s--", color="#7f7f7f", lw=1, ms=4, label="pair mask alone (before the step fit)")
    for x, y in zip(dates[1:], area[1:]):
        ax.annotate(f"{y:.2f}", (x, y), textcoords="offset points", xytext=(7, -11), ha="left", fontsize=8,
                    color="#d62728")
    ax.plot(dates[-1:], area[-1:], "o", ms=11, mfc="none", mec="#d62728", lw=1)
    ax.annotate("last date: not yet confirmed\nby a later one", (dates[-1], area[-1]), textcoords="offset points",
                xytext=(-8, 14), ha="right", fontsize=7, color="#555")
    ax.set_ylabel(f"changed area ({scale})")
    ax.set_ylim(0, max(max(area), max(pair), 1e-6) * 1.25)
    ax.grid(alpha=0.3)
    counts = [r["structures"] for r in result.table]
    if all(c is not None for c in counts):
        ax2 = ax.twinx()
        ax2.bar(dates, counts, width=12, color="#1f77b4", alpha=0.35, label="structures")
        ax2.set_ylabel("structures (count)")
        ax2.set_ylim(0, max(max(counts), 1) * 1.6)
        ax.set_zorder(ax2.get_zorder() + 1)
        ax.patch.set_visible(False)
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, loc="upper left", fontsize=8)
    else:
        ax.legend(loc="upper left", fontsize=8)
        ax.text(0.99, 0.02, "structures not counted", transform=ax.transAxes, ha="right", va="bottom", fontsize=7,
                color="#555")
    title = result.summary.get("title")
    title = f"{title}: changed area per date" if title else "Changed area per date"
    ax.set_title(f"{title}\n{result.dates[0]} .. {result.dates[-1]}, {len(result.dates)} dates", fontsize=10)
    fig.autofmt_xdate()
    return fig


def _first_change_map(result: SeriesResult, truth: Any) -> Any:
    from matplotlib import colormaps
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    fc = result.first_change.data[0]
    n = len(result.dates)
    colors = colormaps["plasma"](np.linspace(0.05, 0.95, max(n - 1, 1)))
    cmap = ListedColormap(colors)
    lo, hi = _common_stretch(result.images[:1])
    grey = np.nanmean(np.clip((np.asarray(result.images[0].data[:3], np.float32) - lo[:, None, None])
                              / (hi - lo)[:, None, None], 0, 1), axis=0)
    maps = [("first change found", fc)]
    if truth is not None:
        t = np.asarray(truth.data[0] if isinstance(truth, GeoRaster) else truth)
        acc = first_change_accuracy(fc, t)
        maps.append((f"truth (date right for {acc['date_right']:.1%} of changed pixels)", t))
    rows, cols = fc.shape
    fig = _new_figure(figsize=(5.2 * len(maps), 5.2 * rows / cols + 1.2), layout="constrained")
    axes = fig.subplots(1, len(maps), squeeze=False)[0]
    for ax, (label, m) in zip(axes, maps):
        ax.imshow(grey, cmap="gray", vmin=-0.3, vmax=1.3, interpolation="nearest")
        shown = np.ma.masked_where(m == 0, m.astype(float))
        ax.imshow(shown, cmap=cmap, vmin=0.5, vmax=n - 0.5, interpolation="nearest")
        ax.set_title(label, fontsize=10)
        ax.set_axis_off()
    handles = [Patch(color=colors[k - 1], label=f"{k}: {result.dates[k]}") for k in range(1, n)]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(n - 1, 4), fontsize=8,
               title=f"first date of change (none: grey, {result.dates[0]} the reference)", title_fontsize=8)
    title = result.summary.get("title")
    fig.suptitle(f"{title + ': ' if title else ''}when each pixel first changed", fontsize=11)
    return fig


def _common_stretch(images: Sequence[GeoRaster]) -> tuple[np.ndarray, np.ndarray]:
    """Per band 2nd and 98th percentiles over every date together: one stretch for all frames."""
    stack = np.stack([np.asarray(im.data[:3], np.float32) for im in images])  # (dates, 3, rows, cols)
    flat = np.moveaxis(stack, 1, 0).reshape(stack.shape[1], -1)
    lo = np.nanpercentile(flat, 2, axis=1)
    hi = np.nanpercentile(flat, 98, axis=1)
    return lo, np.where(hi > lo, hi, lo + 1)


def _gif(result: SeriesResult, *, frame_ms: int) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from PIL import Image

    lo, hi = _common_stretch(result.images)
    fc = result.first_change.data[0]
    rows, cols = fc.shape
    width = min(6.0, max(4.5, cols / 100))  # inches at 100 dpi
    map_h = width * rows / cols
    head = 0.62
    title = result.summary.get("title")
    frames = []
    for k, (d, im) in enumerate(zip(result.dates, result.images)):
        data = np.asarray(im.data[:3], np.float32) if im.count >= 3 else np.repeat(np.asarray(im.data[:1]), 3, 0)
        rgb = np.clip((np.moveaxis(data, 0, -1) - lo[: data.shape[0]]) / (hi - lo)[: data.shape[0]], 0, 1)
        rgb = np.nan_to_num(rgb, nan=1.0)
        fig = Figure(figsize=(width, map_h + head), dpi=100)
        ax = fig.add_axes((0, 0, 1, map_h / (map_h + head)))
        ax.imshow(rgb, interpolation="nearest")
        older = ((fc > 0) & (fc < k)).astype(float)
        new = (fc == k).astype(float) if k else np.zeros_like(older)
        if older.any():
            ax.contour(older, levels=[0.5], colors=["#00e5ff"], linewidths=1.0)
        if new.any():
            ax.contour(new, levels=[0.5], colors=["#ffd400"], linewidths=1.6)
        ax.set_axis_off()
        row = result.table[k]
        area = f"{row['changed_area_ha']:.2f} ha changed" if result.summary.get("area_unit") == "m2" \
            else f"{row['changed_area_m2']:.0f} px changed"
        n = f", {row['structures']} structures" if row["structures"] is not None else ""
        top = 1 - 0.2 / (map_h + head)
        fig.text(0.02, top, f"{d}  (date {k + 1} of {len(result.dates)})" + (f"  {title}" if title else ""),
                 fontsize=9.5, weight="bold", va="center")
        fig.text(0.02, top - 0.25 / (map_h + head),
                 "the reference date" if k == 0 else f"{area}{n}   yellow: new, cyan: earlier",
                 fontsize=8, va="center")
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        frames.append(Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3].copy()))
    buf = _pyio.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=int(frame_ms), loop=0,
                   optimize=False, disposal=2)
    return buf.getvalue()


# --------------------------------------------------------------------------- public scenes for several dates
def fetch_series(
    *,
    bbox: Any,
    dates: Sequence[str] | str,
    out: str | os.PathLike[str],
    stac_url: str | None = None,
    collection: str | None = None,
    max_cloud: float | None = None,
    resolution: float | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> list[Path]:
    """Find the best public scene in each of several date ranges and write the area's pixels.

    The same search, ranking by cloud over the area and windowed reading as
    :func:`changedet.sources.fetch_pair`, for any number of dates, all read onto one grid
    (the first date's profile: 10 m UTM for Sentinel-2, 30 m for Landsat, or
    ``resolution``) before anything is written::

        OUT/<date>/scene.tif, OUT/<date>/item.json   (one folder per date, named by the scene's date)
        OUT/fetch.json                                ("series": the folders in time order)

    ``changedet series OUT --out ...`` (or :func:`detect_series` on ``OUT``) then runs them.

    Parameters
    ----------
    bbox : bbox tuple, ``"MINX,MINY,MAXX,MAXY"``, GeoJSON or shapely geometry
        The area, WGS84 lon/lat.
    dates : sequence of str, or str
        One date or range (``YYYY-MM-DD`` or ``YYYY-MM-DD/YYYY-MM-DD``) per scene, in time
        order and not overlapping; a str is split on commas.
    out : path
        Output folder (created).
    stac_url, collection, max_cloud
        As in :func:`changedet.sources.search_scenes` (default Earth Search, Sentinel-2 L2A).
    resolution : float, optional
        Output pixel size in metres.
    cache_dir : path, optional
        Read cache (default ``$CHANGEDET_CACHE`` or ``~/.cache/changedet``).
    progress : bool
        Progress bars (tqdm).

    Returns
    -------
    list of Path
        The date folders, in time order.

    Raises
    ------
    ChangedetError
        Fewer than :data:`MIN_DATES` ranges, ranges out of order or overlapping, two ranges
        whose best scene is the same day, and every error of the search and the reads.

    Examples
    --------
    Arguments are checked before any network access:

    >>> fetch_series(bbox="52.0,55.78,52.1,55.83", dates=["2024-06-01/2024-08-31", "2023-06-01/2023-08-31",
    ...              "2025-06-01/2025-08-31"], out="alabuga")
    Traceback (most recent call last):
    ...
    changedet.series.SeriesInputError: date ranges must follow each other: range 2 2023-06-01/2023-08-31 does not start after range 1 2024-06-01/2024-08-31 ends; give them in time order, not overlapping
    """
    from . import sources

    area = sources.parse_area(bbox, name="bbox")
    texts = [d.strip() for d in dates.split(",")] if isinstance(dates, str) else [str(d).strip() for d in dates]
    ranges = [sources.parse_dates(t) for t in texts]
    if len(ranges) < MIN_DATES:
        raise SeriesInputError(f"a series needs at least {MIN_DATES} date ranges, got {len(ranges)}; for two dates "
                               "use changedet fetch --before ... --after ...")
    for i in range(1, len(ranges)):
        if ranges[i].start <= ranges[i - 1].end:
            raise SeriesInputError(
                f"date ranges must follow each other: range {i + 1} {ranges[i]} does not start after range {i} "
                f"{ranges[i - 1]} ends; give them in time order, not overlapping"
            )
    kw: dict[str, Any] = {}
    if stac_url:
        kw["stac_url"] = stac_url
    if collection:
        kw["collection"] = collection
    out_dir = Path(out)
    cache = Path(cache_dir) if cache_dir is not None else None
    chosen, tables = [], []
    for i, r in enumerate(ranges):
        cands = sources.search_scenes(area, r, cache_dir=cache, progress=progress, **kw)
        tables.append([c.to_row() for c in cands])
        chosen.append(sources.choose_candidate(cands, max_cloud=max_cloud, what=f"date {i + 1} scene ({r})"))
    days = [c.date for c in chosen]
    if len(set(days)) != len(days):
        raise SeriesInputError(f"two date ranges chose the same day ({days}); give ranges that do not share scenes")
    first = chosen[0]
    from ._stac_items import SENTINEL2, profile_for

    profile = profile_for(first.items[0], first.collection) if first.items else SENTINEL2
    grid = sources.area_grid(area, resolution=resolution or profile.resolution)
    # every scene read before anything is written: OUT is complete or untouched (reads stay cached)
    scenes = [sources.read_candidate(c, area, grid=grid, cache_dir=cache, progress=progress) for c in chosen]
    folders = []
    for cand, scene in zip(chosen, scenes):
        folder = out_dir / cand.date
        _io.write_raster(scene, folder / "scene.tif", dtype="float32")
        items = list(cand.items)
        _io.write_json(items[0] if len(items) == 1 else {"type": "FeatureCollection", "features": items},
                       folder / "item.json")
        folders.append(folder)
    record = {
        "series": [c.date for c in chosen],
        "query": {"area": area.to_dict(), "dates": [str(r) for r in ranges], "max_cloud": max_cloud,
                  "resolution_m": grid.res[0], **kw},
        "grid": {"crs": grid.crs.to_string() if grid.crs else None, "transform": list(tuple(grid.transform)[:6]),
                 "shape": list(grid.shape)},
        "candidates": tables,
        "choice": [c.to_row() for c in chosen],
        "created": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "versions": {"changedet": __version__},
    }
    _io.write_json(record, out_dir / "fetch.json")
    return folders
