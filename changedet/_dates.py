"""Acquisition dates of the inputs, from what they carry: metadata, names, fetch's item.json, dates.txt.

Looked at in this order, the first found wins:

1. the raster's tags (``ACQUISITION_DATE``, ``DATE_ACQUIRED``, ``SENSING_TIME``,
   ``DATATAKE_SENSING_START``, ``ACQUISITIONDATETIME``; the sample tiles carry the first);
2. ``item.json`` in a folder written by ``changedet fetch`` (``properties.datetime``) or beside
   the file;
3. ``dates.txt`` beside band folders, as the OSCD data set has (``date_1: 20150703`` for
   ``imgs_1``, ``date_2`` for ``imgs_2``);
4. the name: Sentinel-2 (``..._20240614T083601_...``), Landsat (``..._20240614_...``) or any
   ``YYYY-MM-DD`` / ``YYYYMMDD`` in the file or folder name.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import warnings
from pathlib import Path
from typing import Any, Mapping

from ._paths import is_remote

__all__ = ["acquisition_date", "input_dates", "days_apart_in_year", "season_caveat", "SEASON_GAP_DAYS"]

#: Dates at least this many days apart in the year (whatever the years) are of different seasons
#: for :func:`season_caveat`: six weeks, in which crops grow, ripen or are harvested.
SEASON_GAP_DAYS = 45

_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")

#: The classes whose areas may be the season's doing rather than construction.
_SEASON_CLASSES = ("vegetation_loss", "vegetation_gain", "seasonal")

_TAGS = ("ACQUISITION_DATE", "DATE_ACQUIRED", "SENSING_TIME", "DATATAKE_SENSING_START", "ACQUISITIONDATETIME",
         "ACQUISITION_DATETIME", "DATETIME_ACQUIRED")
_ISO = re.compile(r"(?<!\d)((?:19|20)\d\d)-?(0[1-9]|1[0-2])-?(0[1-9]|[12]\d|3[01])(?!\d)")


def _date(text: Any) -> str | None:
    """``YYYY-MM-DD`` from the first date in a text, if it is a real date."""
    if not isinstance(text, str):
        return None
    for m in _ISO.finditer(text):
        try:
            return dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3))).isoformat()
        except ValueError:
            continue
    return None


def _from_tags(path: Path) -> str | None:
    import rasterio
    from rasterio.errors import RasterioError

    target = path
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".tif", ".tiff", ".jp2"))
        if not files:
            return None
        target = files[0]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # only the tags are read: a PNG's missing georeferencing is not news here
            with rasterio.open(target) as src:
                tags = {k.upper(): v for k, v in src.tags().items()}
    except (RasterioError, OSError):
        return None
    for key in _TAGS:
        found = _date(tags.get(key))
        if found:
            return found
    return None


def _from_item(path: Path) -> str | None:
    for item in ((path / "item.json") if path.is_dir() else None, path.parent / "item.json"):
        if item is None or not item.is_file():
            continue
        try:
            doc = json.loads(item.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        feats = doc.get("features") if isinstance(doc, dict) and doc.get("type") == "FeatureCollection" else [doc]
        for f in feats or []:
            props = f.get("properties") if isinstance(f, dict) else None
            if isinstance(props, dict):
                found = _date(props.get("datetime") or props.get("start_datetime"))
                if found:
                    return found
    return None


def _from_dates_txt(path: Path) -> str | None:
    m = re.search(r"(\d+)$", path.name)
    listing = path.parent / "dates.txt"
    if not m or not listing.is_file():
        return None
    try:
        text = listing.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in (f"date_{m.group(1)}", f"date{m.group(1)}"):
            return _date(value.strip())
    return None


def acquisition_date(path: str | os.PathLike[str] | None) -> tuple[str | None, str | None]:
    """The acquisition date of one input and where it was found.

    Parameters
    ----------
    path : path or None
        A raster file or band folder (None: a raster given in memory, no date).

    Returns
    -------
    (str or None, str or None)
        ``YYYY-MM-DD`` and its source (``"tag"``, ``"item.json"``,
        ``"dates.txt"``, ``"name"``), or ``(None, None)``.

    Examples
    --------
    >>> acquisition_date("S2B_MSIL2A_20240614T083559_N0510_R064_T39UWB_20240614T104017.SAFE")
    ('2024-06-14', 'name')
    >>> acquisition_date(None)
    (None, None)
    """
    if path is None:
        return None, None
    text = os.fspath(path)
    p = Path(text)
    local = not is_remote(text)
    if local and p.exists():
        for source, finder in (("tag", _from_tags), ("item.json", _from_item), ("dates.txt", _from_dates_txt)):
            found = finder(p)
            if found:
                return found, source
    found = _date(p.name) or _date(p.parent.name)
    return (found, "name") if found else (None, None)


def input_dates(inputs: dict[str, Any], given: Any = None) -> dict[str, Any]:
    """The ``dates`` block of a summary from its ``inputs`` block.

    Parameters
    ----------
    inputs : dict
        ``{"before": {"path": ...}, "after": {"path": ...}}``.
    given : (str or None, str or None), optional
        Dates the user gave (``detect_changes(dates=)``, ``--dates``): they win, with
        source ``"option"``.

    Returns
    -------
    dict
        ``{"before": date or None, "after": date or None, "source": {"before": ..., "after": ...},
        "days_apart_in_year": int or None}`` (see :func:`days_apart_in_year`).
    """
    out: dict[str, Any] = {"before": None, "after": None, "source": {"before": None, "after": None}}
    for side in ("before", "after"):
        info = inputs.get(side) if isinstance(inputs, dict) else None
        path = info.get("path") if isinstance(info, dict) else None
        date, source = acquisition_date(path)
        if given is not None and given[0 if side == "before" else 1]:
            date, source = given[0 if side == "before" else 1], "option"
        out[side] = date
        out["source"][side] = source
    out["days_apart_in_year"] = days_apart_in_year(out["before"], out["after"])
    return out


def days_apart_in_year(before: str | None, after: str | None) -> int | None:
    """How far apart two dates are in the year, whatever their years: 0 (the same day of the
    year) to 183 (half a year).

    Parameters
    ----------
    before, after : str or None
        ``YYYY-MM-DD`` dates.

    Returns
    -------
    int or None
        Days between their days of the year, the shorter way round; None when a date is missing.

    Examples
    --------
    >>> days_apart_in_year("2016-03-15", "2017-08-29")
    167
    >>> days_apart_in_year("2024-12-20", "2025-01-10")
    21
    >>> days_apart_in_year("2024-06-14", None) is None
    True
    """
    b, a = _date(before), _date(after)
    if b is None or a is None:
        return None

    def day_of_year(text: str) -> int:  # on a 365-day year: 29 February counts as 28 February
        d = dt.date.fromisoformat(text)
        return dt.date(2001, d.month, min(d.day, 28) if d.month == 2 else d.day).timetuple().tm_yday

    gap = abs(day_of_year(a) - day_of_year(b))
    return min(gap, 365 - gap)


def season_caveat(summary: Mapping[str, Any]) -> str | None:
    """A sentence for the analyst when the dates are of different seasons and vegetation changed:
    areas of vegetation lost or gained may then be crops and the season, not construction.

    Parameters
    ----------
    summary : mapping
        A run's ``summary.json``.

    Returns
    -------
    str or None
        The sentence, or None (dates of the same season, unknown, or no vegetation change).

    Examples
    --------
    >>> s = {"dates": {"before": "2016-03-15", "after": "2017-08-29"},
    ...      "results": {"by_class": {"vegetation_loss": {"count": 3}}, "left_out": {}}}
    >>> print(season_caveat(s))
    The dates are 167 days apart in the year (March and August): crops and vegetation differ with the season, so areas of vegetation loss or gain may be the season's, not construction; a pair from the same time of year tells them apart better.
    >>> s["dates"]["after"] = "2017-03-29"
    >>> season_caveat(s) is None
    True
    """
    dates = summary.get("dates") or {}
    before, after = _date(dates.get("before")), _date(dates.get("after"))
    gap = days_apart_in_year(before, after)
    if gap is None or gap < SEASON_GAP_DAYS:
        return None
    results = summary.get("results") or {}
    found = [(results.get(key) or {}).get(cls) for key in ("by_class", "left_out") for cls in _SEASON_CLASSES]
    if not any(isinstance(c, Mapping) and c.get("count") for c in found):
        return None
    months = [_MONTHS[dt.date.fromisoformat(d).month - 1] for d in (before, after)]
    return (f"The dates are {gap} days apart in the year ({months[0]} and {months[1]}): crops and vegetation "
            "differ with the season, so areas of vegetation loss or gain may be the season's, not construction; "
            "a pair from the same time of year tells them apart better.")
