"""Find public scenes for an area and two dates, and read only the area's pixels.

Search a STAC API (pystac-client; the optional extra ``pip install changedet[stac]``),
rank the scenes of each date range by the cloud over the *area* (not the whole
scene), and read just the area's window of the bands needed from the chosen
scenes' Cloud-Optimized GeoTIFFs over HTTP, onto one UTM grid.

Defaults: the public Earth Search catalogue (``DEFAULT_STAC_URL``), collection
``sentinel-2-l2a``.  Landsat Collection 2 Level-2 (``landsat-c2-l2``) is read the
same way where a catalogue has it; any other STAC API is reached by URL.

What a fetch writes::

    OUT/before/scene.tif   blue green red nir swir16 swir22 scl   (float32, NaN nodata)
    OUT/before/item.json   the STAC item (an ItemCollection when tiles were mosaicked)
    OUT/after/...          the same for the after date
    OUT/fetch.json         the query, every candidate, the choice, the grid

Decisions worth knowing:

* A *candidate* is one acquisition: the items of one platform on one solar day
  that intersect the area.  An area that straddles two tiles or two UTM zones is
  mosaicked from several items onto one grid (first valid pixel wins).
* Ranking: by the percentage of the area that is observed and clear
  (``clear_pct``), then by ``cloud_pct`` (cloud, cloud shadow and cirrus over the
  observed part of the area, from the SCL band for Sentinel-2 or QA_PIXEL for
  Landsat), then by date.  When a scene has no mask asset, or its mask cannot be
  read, its ``eo:cloud_cover`` is used and ``cloud_source`` says so.
* All candidates cloudy: with ``max_cloud=None`` the least cloudy scene is chosen
  and a :class:`CloudyAreaWarning` is issued when more than
  ``CLOUDY_WARNING_PCT`` of the area is cloud; with ``max_cloud`` given, a scene
  above it is never chosen and :class:`NoSceneFoundError` names the least cloudy.
* Reflectance bands are scaled to surface reflectance with the assets'
  ``raster:bands`` scale and offset when the catalogue gives them (except the
  stale offset of Earth Search ``sentinel-2-l2a``, whose numbers are already
  harmonised; ``fetch.json`` records what was applied).  The mask band
  (``scl`` / ``qa_pixel``) keeps its class codes; pixels where it is nodata are NaN
  in every band.  Landsat's ``nir08`` asset is written as the band ``nir`` (its
  canonical name, see :mod:`changedet.indices`).
* Reads are cached by item id + area + bands + resolution under ``cache_dir``
  (default ``$CHANGEDET_CACHE`` or ``~/.cache/changedet``): a second fetch of the
  same area, or a fetch resumed after an interruption, reads nothing again.
  Transient HTTP failures (5xx, connection reset, truncated transfer) are retried
  with exponential backoff; a 403/404 fails at once.  Every file is written under a
  temporary name and renamed when complete.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import hashlib
import json
import math
import os
import re
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence
from urllib.parse import urljoin

import numpy as np
from affine import Affine
from rasterio.crs import CRS

from .errors import ChangedetError, EmptyDataError, InvalidParameterError, RasterReadError
from .raster import GeoRaster, Grid, warp_band

__all__ = [
    "DEFAULT_STAC_URL",
    "DEFAULT_COLLECTION",
    "CLOUDY_WARNING_PCT",
    "MIN_COVERAGE_PCT",
    "GDAL_HTTP_OPTIONS",
    "Area",
    "DateRange",
    "Candidate",
    "FetchResult",
    "RetryPolicy",
    "NoSceneFoundError",
    "DownloadError",
    "CatalogueError",
    "CloudyAreaWarning",
    "parse_bbox",
    "parse_area",
    "parse_dates",
    "utm_crs",
    "area_grid",
    "search_scenes",
    "to_table",
    "choose_candidate",
    "read_candidate",
    "fetch_pair",
    "catalogue_reachable",
]

#: The public Earth Search catalogue (Element 84), Sentinel-2 L2A and Landsat C2 L2 COGs on AWS.
DEFAULT_STAC_URL = "https://earth-search.aws.element84.com/v1"
DEFAULT_COLLECTION = "sentinel-2-l2a"
#: With ``max_cloud=None``, choosing a scene with more cloud than this over the area warns.
CLOUDY_WARNING_PCT = 20.0
#: Choosing a scene that covers less of the area than this warns.
MIN_COVERAGE_PCT = 90.0

#: GDAL settings for windowed COG reads over HTTP: no directory listing, range
#: requests merged, a block cache, retries of 429/5xx inside GDAL itself.
GDAL_HTTP_OPTIONS: dict[str, Any] = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff,.TIF,.TIFF",
    "GDAL_HTTP_MULTIRANGE": "YES",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "VSI_CACHE": "TRUE",
    "GDAL_HTTP_MAX_RETRY": "3",
    "GDAL_HTTP_RETRY_DELAY": "0.5",
    "GDAL_HTTP_TIMEOUT": "60",
    "GDAL_HTTP_CONNECTTIMEOUT": "15",
    "GDAL_INGESTED_BYTES_AT_OPEN": "32768",
    # No process-wide cache of remote files: a failed or 404 read is not remembered,
    # so a retry (or a fetch after the object store recovers) really asks again.
    "CPL_VSIL_CURL_NON_CACHED": "/vsicurl/",
}

_INSTALL_HINT = "pip install changedet[stac]"


# --------------------------------------------------------------------------- errors
class NoSceneFoundError(EmptyDataError):
    """No scene covers the area in a date range (or none is clear enough)."""


class DownloadError(RasterReadError):
    """An asset could not be read over HTTP, after retries for transient failures."""


class CatalogueError(ChangedetError, OSError):
    """The STAC API cannot be reached, or does not hold the collection asked for."""


class CloudyAreaWarning(UserWarning):
    """The best scene of a date range is cloudy over the area."""


# --------------------------------------------------------------------------- collections
@dataclass(frozen=True)
class _Profile:
    """How to read one family of products: output band -> asset keys to try."""

    name: str
    bands: tuple[tuple[str, tuple[str, ...]], ...]
    mask: str  # output name of the mask band
    resolution: float  # default output pixel size, metres
    mask_resolution: float  # pixel size of the mask band, metres


_S2 = _Profile(
    name="sentinel-2",
    bands=(
        ("blue", ("blue", "B02")),
        ("green", ("green", "B03")),
        ("red", ("red", "B04")),
        ("nir", ("nir", "B08")),
        ("swir16", ("swir16", "B11")),
        ("swir22", ("swir22", "B12")),
        ("scl", ("scl", "SCL")),
    ),
    mask="scl",
    resolution=10.0,
    mask_resolution=20.0,
)
_LANDSAT = _Profile(
    name="landsat",
    bands=(
        ("blue", ("blue", "SR_B2")),
        ("green", ("green", "SR_B3")),
        ("red", ("red", "SR_B4")),
        ("nir", ("nir08", "SR_B5")),
        ("swir16", ("swir16", "SR_B6")),
        ("swir22", ("swir22", "SR_B7")),
        ("qa_pixel", ("qa_pixel", "QA_PIXEL")),
    ),
    mask="qa_pixel",
    resolution=30.0,
    mask_resolution=30.0,
)

# SCL classes: 0 nodata, 3 cloud shadow, 8/9 cloud medium/high probability, 10 thin cirrus.
_SCL_CLOUDY = (3, 8, 9, 10)
# QA_PIXEL bits: 0 fill, 1 dilated cloud, 2 cirrus, 3 cloud, 4 cloud shadow.
_QA_FILL = 1
_QA_CLOUDY = (1 << 1) | (1 << 2) | (1 << 3) | (1 << 4)


def _profile_for(item: Mapping[str, Any], collection: str) -> _Profile:
    keys = {k.lower() for k in item.get("assets", {})}
    if "scl" in keys:
        return _S2
    if "qa_pixel" in keys or "landsat" in collection.lower():
        return _LANDSAT
    if "sentinel-2" in collection.lower() or "blue" in keys or "b02" in keys:
        return _S2
    raise InvalidParameterError(
        f"item {item.get('id')!r} of collection {collection!r} has assets {sorted(item.get('assets', {}))}; "
        "changedet reads Sentinel-2 L2A (blue..swir22 + scl) and Landsat C2 L2 (blue..swir22 + qa_pixel); "
        "pass collection='sentinel-2-l2a' or 'landsat-c2-l2'"
    )


def _asset_key(item: Mapping[str, Any], candidates: Sequence[str]) -> str | None:
    assets = item.get("assets", {})
    lower = {k.lower(): k for k in assets}
    for c in candidates:
        if c in assets:
            return c
        if c.lower() in lower:
            return lower[c.lower()]
    return None


# --------------------------------------------------------------------------- area and dates
_LonLatBox = tuple[float, float, float, float]


@dataclass(frozen=True)
class Area:
    """An area of interest in WGS84 lon/lat: its bounding box and GeoJSON geometry.

    Build one with :func:`parse_area` (a bbox, a ``"minx,miny,maxx,maxy"`` string, a
    GeoJSON geometry/Feature/FeatureCollection or a shapely geometry).

    Examples
    --------
    >>> a = parse_area((52.0, 55.78, 52.1, 55.83))
    >>> a.bbox, a.geometry["type"], a.is_box
    ((52.0, 55.78, 52.1, 55.83), 'Polygon', True)
    >>> a.describe()
    'bbox 52.0,55.78,52.1,55.83'
    """

    bbox: _LonLatBox
    geometry: dict[str, Any] = field(compare=False, hash=False)
    is_box: bool = True

    @property
    def centroid(self) -> tuple[float, float]:
        minx, miny, maxx, maxy = self.bbox
        return ((minx + maxx) / 2, (miny + maxy) / 2)

    def describe(self) -> str:
        text = ",".join(str(round(v, 6)) for v in self.bbox)
        return f"bbox {text}" if self.is_box else f"polygon within bbox {text}"

    def to_dict(self) -> dict[str, Any]:
        return {"bbox": list(self.bbox), "geometry": self.geometry}


def parse_bbox(text: str | Sequence[float]) -> _LonLatBox:
    """Parse ``"MINX,MINY,MAXX,MAXY"`` (WGS84 lon/lat degrees) into a tuple of floats.

    Raises
    ------
    InvalidParameterError
        Not four numbers, min not below max, or outside lon -180..180 / lat -90..90.

    Examples
    --------
    >>> parse_bbox("52.0,55.78,52.1,55.83")
    (52.0, 55.78, 52.1, 55.83)
    >>> parse_bbox("55.78,52.0,55.83")
    Traceback (most recent call last):
    ...
    changedet.errors.InvalidParameterError: bbox needs four numbers MINX,MINY,MAXX,MAXY (lon/lat degrees, WGS84), got '55.78,52.0,55.83'; e.g. --bbox 52.0,55.78,52.1,55.83
    """
    if isinstance(text, str):
        parts = [p for p in re.split(r"[,\s]+", text.strip()) if p]
    else:
        parts = list(text)
    example = "e.g. --bbox 52.0,55.78,52.1,55.83"
    try:
        values = tuple(float(p) for p in parts)
    except (TypeError, ValueError):
        values = ()
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise InvalidParameterError(
            f"bbox needs four numbers MINX,MINY,MAXX,MAXY (lon/lat degrees, WGS84), got {text!r}; {example}"
        )
    minx, miny, maxx, maxy = values
    if not (-180 <= minx <= 180 and -180 <= maxx <= 180 and -90 <= miny <= 90 and -90 <= maxy <= 90):
        raise InvalidParameterError(
            f"bbox {values} is outside lon -180..180 / lat -90..90; give lon/lat degrees in the order "
            f"MINX(lon),MINY(lat),MAXX(lon),MAXY(lat), {example}"
        )
    if minx >= maxx or miny >= maxy:
        raise InvalidParameterError(
            f"bbox {values} has MINX >= MAXX or MINY >= MAXY; give MINX,MINY,MAXX,MAXY with min below max "
            f"(an area across the antimeridian must be split in two), {example}"
        )
    return (minx, miny, maxx, maxy)


def _box_geometry(b: _LonLatBox) -> dict[str, Any]:
    minx, miny, maxx, maxy = b
    ring = [[minx, miny], [maxx, miny], [maxx, maxy], [minx, maxy], [minx, miny]]
    return {"type": "Polygon", "coordinates": [ring]}


def parse_area(area: Any) -> Area:
    """An :class:`Area` from a bbox, a bbox string, GeoJSON (dict, file or text) or a shapely geometry.

    GeoJSON coordinates are WGS84 lon/lat (RFC 7946).  A FeatureCollection is the
    union of its features.

    Examples
    --------
    >>> parse_area("52.0,55.78,52.1,55.83").bbox
    (52.0, 55.78, 52.1, 55.83)
    >>> tri = {"type": "Polygon", "coordinates": [[[52.0, 55.78], [52.1, 55.78], [52.05, 55.83], [52.0, 55.78]]]}
    >>> a = parse_area({"type": "Feature", "geometry": tri, "properties": {}})
    >>> a.bbox, a.is_box
    ((52.0, 55.78, 52.1, 55.83), False)
    """
    if isinstance(area, Area):
        return area
    if isinstance(area, (str, os.PathLike)):
        text = os.fspath(area).strip()
        if text.startswith("{"):
            area = json.loads(text)
        elif text.lower().endswith((".geojson", ".json")) and Path(text).is_file():
            area = json.loads(Path(text).read_text(encoding="utf-8"))
        else:
            b = parse_bbox(text)
            return Area(b, _box_geometry(b), True)
    if isinstance(area, (tuple, list)) and len(area) == 4 and all(isinstance(v, (int, float)) for v in area):
        b = parse_bbox(area)
        return Area(b, _box_geometry(b), True)
    if hasattr(area, "__geo_interface__") and not isinstance(area, dict):
        area = area.__geo_interface__
    if not isinstance(area, dict) or "type" not in area:
        raise InvalidParameterError(
            f"area must be a bbox (MINX,MINY,MAXX,MAXY lon/lat), a GeoJSON geometry/Feature/FeatureCollection "
            f"or a shapely geometry; got {type(area).__name__} {str(area)[:80]!r}"
        )
    from shapely.geometry import mapping, shape
    from shapely.ops import unary_union

    kind = area["type"]
    try:
        if kind == "FeatureCollection":
            geoms = [shape(f["geometry"]) for f in area.get("features", []) if f.get("geometry")]
            if not geoms:
                raise InvalidParameterError("the GeoJSON FeatureCollection given as area has no geometry")
            geom = unary_union(geoms)
        elif kind == "Feature":
            geom = shape(area["geometry"])
        else:
            geom = shape(area)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        if isinstance(exc, InvalidParameterError):
            raise
        raise InvalidParameterError(f"area GeoJSON of type {kind!r} could not be read ({exc}); check its coordinates") from None
    if geom.is_empty or geom.area <= 0:
        raise InvalidParameterError(f"area GeoJSON {kind!r} has no surface (a point or a line); give a polygon or a bbox")
    b = parse_bbox(tuple(float(v) for v in geom.bounds))
    is_box = bool(geom.equals(shape(_box_geometry(b))))
    return Area(b, dict(mapping(geom)), is_box)


@dataclass(frozen=True)
class DateRange:
    """An inclusive range of days (UTC).

    Examples
    --------
    >>> r = parse_dates("2024-05-01/2024-07-31")
    >>> str(r), r.to_stac()
    ('2024-05-01/2024-07-31', '2024-05-01T00:00:00Z/2024-07-31T23:59:59Z')
    """

    start: dt.date
    end: dt.date

    def __str__(self) -> str:
        return self.start.isoformat() if self.start == self.end else f"{self.start.isoformat()}/{self.end.isoformat()}"

    def to_stac(self) -> str:
        return f"{self.start.isoformat()}T00:00:00Z/{self.end.isoformat()}T23:59:59Z"

    @property
    def middle(self) -> dt.date:
        return self.start + (self.end - self.start) / 2


def parse_dates(text: str | DateRange | dt.date | Sequence[Any]) -> DateRange:
    """Parse ``YYYY-MM-DD`` (one day) or ``YYYY-MM-DD/YYYY-MM-DD`` (inclusive range).

    Also accepts a ``date`` or a ``(start, end)`` pair.

    Raises
    ------
    InvalidParameterError
        A date that is not ``YYYY-MM-DD``, or a range that ends before it starts.

    Examples
    --------
    >>> parse_dates("2024-06-12")
    DateRange(start=datetime.date(2024, 6, 12), end=datetime.date(2024, 6, 12))
    >>> str(parse_dates("2025-05-01/2025-07-31"))
    '2025-05-01/2025-07-31'
    >>> parse_dates("2024-07-31/2024-05-01")
    Traceback (most recent call last):
    ...
    changedet.errors.InvalidParameterError: date range '2024-07-31/2024-05-01' ends before it starts; give START/END with START <= END, e.g. 2024-05-01/2024-07-31
    """
    if isinstance(text, DateRange):
        return text
    if isinstance(text, dt.datetime):
        return DateRange(text.date(), text.date())
    if isinstance(text, dt.date):
        return DateRange(text, text)
    if isinstance(text, (tuple, list)) and len(text) == 2:
        a, b = (parse_dates(v) for v in text)
        return _checked_range(a.start, b.end, f"{a.start}/{b.end}")
    if not isinstance(text, str):
        raise InvalidParameterError(
            f"dates must be 'YYYY-MM-DD' or 'YYYY-MM-DD/YYYY-MM-DD', got {type(text).__name__} {text!r}"
        )
    parts = text.strip().split("/")
    if len(parts) not in (1, 2):
        raise InvalidParameterError(
            f"dates must be 'YYYY-MM-DD' or 'YYYY-MM-DD/YYYY-MM-DD', got {text!r}; e.g. 2024-05-01/2024-07-31"
        )
    days = []
    for p in parts:
        p = p.strip()
        try:
            if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", p):
                raise ValueError(p)
            days.append(dt.date.fromisoformat(p))
        except ValueError:
            raise InvalidParameterError(
                f"date {p!r} in {text!r} is not a calendar date YYYY-MM-DD; "
                "give 'YYYY-MM-DD' or 'YYYY-MM-DD/YYYY-MM-DD', e.g. 2024-05-01/2024-07-31"
            ) from None
    return _checked_range(days[0], days[-1], text)


def _checked_range(start: dt.date, end: dt.date, text: str) -> DateRange:
    if end < start:
        raise InvalidParameterError(
            f"date range {text!r} ends before it starts; give START/END with START <= END, e.g. 2024-05-01/2024-07-31"
        )
    return DateRange(start, end)


def utm_crs(lon: float, lat: float) -> CRS:
    """The WGS84 UTM zone CRS holding a lon/lat point.

    Examples
    --------
    >>> utm_crs(52.05, 55.8).to_epsg(), utm_crs(-70.6, -33.4).to_epsg()
    (32639, 32719)
    """
    zone = min(60, max(1, int(math.floor((lon + 180) / 6)) + 1))
    return CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)


def area_grid(area: Any, *, resolution: float = 10.0, crs: CRS | str | None = None) -> Grid:
    """The output grid of an area: its bbox in UTM (or ``crs``), snapped outward to ``resolution``.

    Examples
    --------
    >>> g = area_grid((52.0, 55.78, 52.1, 55.83), resolution=10)
    >>> g.crs.to_epsg(), g.res, g.shape
    (32639, (10.0, 10.0), (567, 636))
    """
    from rasterio.warp import transform_bounds

    a = parse_area(area)
    if not resolution or resolution <= 0:
        raise InvalidParameterError(f"resolution must be a positive number of metres, got {resolution!r}")
    target = CRS.from_user_input(crs) if crs is not None else utm_crs(*a.centroid)
    left, bottom, right, top = transform_bounds(CRS.from_epsg(4326), target, *a.bbox, densify_pts=21)
    r = float(resolution)
    left, bottom = math.floor(left / r) * r, math.floor(bottom / r) * r
    right, top = math.ceil(right / r) * r, math.ceil(top / r) * r
    shape = (max(1, int(round((top - bottom) / r))), max(1, int(round((right - left) / r))))
    return Grid(shape, Affine(r, 0, left, 0, -r, top), target)


def _area_mask(area: Area, grid: Grid) -> np.ndarray:
    """(rows, cols) bool: pixels of ``grid`` inside the area polygon."""
    if area.is_box:
        return np.ones(grid.shape, bool)
    from rasterio.features import geometry_mask
    from rasterio.warp import transform_geom

    geom = transform_geom(CRS.from_epsg(4326), grid.crs, area.geometry)
    inside = ~geometry_mask([geom], out_shape=grid.shape, transform=grid.transform, all_touched=True)
    return inside if inside.any() else np.ones(grid.shape, bool)


# --------------------------------------------------------------------------- candidates
@dataclass(frozen=True)
class Candidate:
    """One acquisition over the area: the items of one platform on one solar day.

    ``cloud_pct`` is the cloud (cloud, shadow, cirrus) over the observed part of the
    area; ``coverage_pct`` the part of the area with data; ``clear_pct`` the part of
    the area both observed and clear, the ranking key.  ``cloud_source`` says where
    the cloud figure comes from: ``"scl"``, ``"qa_pixel"`` or ``"eo:cloud_cover"``
    (the whole scene's figure, when no mask could be read).

    Examples
    --------
    >>> c = Candidate(date="2024-06-12", datetime="2024-06-12T08:16:21Z", platform="sentinel-2b",
    ...               tile_ids=("39UWB",), item_ids=("S2B_39UWB_20240612_0_L2A",),
    ...               collection="sentinel-2-l2a", cloud_pct=1.5, coverage_pct=100.0, clear_pct=98.5,
    ...               scene_cloud_pct=32.0, cloud_source="scl")
    >>> c.tile_id, c.to_row()["cloud_over_area_pct"]
    ('39UWB', 1.5)
    """

    date: str
    datetime: str
    platform: str
    tile_ids: tuple[str, ...]
    item_ids: tuple[str, ...]
    collection: str
    cloud_pct: float | None
    coverage_pct: float | None
    clear_pct: float | None
    scene_cloud_pct: float | None
    cloud_source: str
    items: tuple[dict[str, Any], ...] = field(default=(), repr=False, compare=False, hash=False)

    @property
    def tile_id(self) -> str:
        return "+".join(self.tile_ids)

    def to_row(self) -> dict[str, Any]:
        """One table row (JSON-serialisable)."""
        return {
            "date": self.date,
            "cloud_over_area_pct": _round(self.cloud_pct),
            "coverage_pct": _round(self.coverage_pct),
            "clear_pct": _round(self.clear_pct),
            "scene_cloud_pct": _round(self.scene_cloud_pct),
            "platform": self.platform,
            "tile_id": self.tile_id,
            "cloud_source": self.cloud_source,
            "datetime": self.datetime,
            "item_ids": list(self.item_ids),
        }


def _round(v: float | None) -> float | None:
    return None if v is None else round(float(v), 2)


def to_table(candidates: Sequence[Candidate], *, as_dataframe: bool | None = None) -> Any:
    """The candidates as a table: a pandas DataFrame when pandas is installed, else a list of dicts.

    Columns: date, cloud_over_area_pct, coverage_pct, clear_pct, scene_cloud_pct,
    platform, tile_id, cloud_source, datetime, item_ids.  Rows keep the ranking order.

    Examples
    --------
    >>> c = Candidate("2024-06-12", "2024-06-12T08:16:21Z", "sentinel-2b", ("39UWB",), ("id",),
    ...               "sentinel-2-l2a", 1.5, 100.0, 98.5, 32.0, "scl")
    >>> rows = to_table([c], as_dataframe=False)
    >>> rows[0]["date"], rows[0]["tile_id"], rows[0]["cloud_over_area_pct"]
    ('2024-06-12', '39UWB', 1.5)
    """
    rows = [c.to_row() for c in candidates]
    if as_dataframe is False:
        return rows
    try:
        import pandas as pd
    except ImportError:
        if as_dataframe:
            raise InvalidParameterError("to_table(as_dataframe=True) needs pandas; pip install pandas") from None
        return rows
    columns = list(rows[0]) if rows else list(Candidate("", "", "", (), (), "", None, None, None, None, "").to_row())
    return pd.DataFrame(rows, columns=columns)


# --------------------------------------------------------------------------- HTTP reads
@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently transient read failures are retried.

    Waits ``backoff_s * 2**k`` seconds before attempt ``k + 2``.

    Examples
    --------
    >>> RetryPolicy(attempts=3, backoff_s=0.5).delays()
    [0.5, 1.0]
    """

    attempts: int = 4
    backoff_s: float = 1.0

    def __post_init__(self) -> None:
        if int(self.attempts) != self.attempts or self.attempts < 1:
            raise InvalidParameterError(f"RetryPolicy.attempts must be an integer >= 1, got {self.attempts!r}")
        if not (self.backoff_s >= 0 and math.isfinite(self.backoff_s)):
            raise InvalidParameterError(f"RetryPolicy.backoff_s must be a number of seconds >= 0, got {self.backoff_s!r}")

    def delays(self) -> list[float]:
        return [self.backoff_s * 2**k for k in range(max(0, self.attempts - 1))]


class _Truncated(Exception):
    """A remote file read back incomplete (retried like a dropped connection)."""


# GDAL retries these HTTP statuses itself (GDAL_HTTP_MAX_RETRY); retrying again around it only multiplies waits.
_GDAL_RETRIED = re.compile(r"HTTP response code: (429|5\d\d)")


def _gdal_options(retry: "RetryPolicy") -> dict[str, Any]:
    opts = dict(GDAL_HTTP_OPTIONS)
    opts["GDAL_HTTP_MAX_RETRY"] = str(max(0, retry.attempts - 1))
    opts["GDAL_HTTP_RETRY_DELAY"] = f"{retry.backoff_s:g}"
    return opts


_PERMANENT_CODES = (400, 401, 403, 404, 410)
_HTTP_CODE = re.compile(r"HTTP response code: (\d{3})")


def _is_permanent(exc: BaseException, href: str) -> bool:
    """True for failures a retry cannot fix: the object is missing or forbidden."""
    m = _HTTP_CODE.search(str(exc))
    if m:
        return int(m.group(1)) in _PERMANENT_CODES
    if "does not exist" in str(exc) and href.startswith(("http://", "https://")):
        # GDAL says "does not exist" both for a 404 and for a connection that failed: ask the server.
        return _http_status(href) in _PERMANENT_CODES
    return False


def _http_status(href: str, *, timeout: float = 10.0) -> int | None:
    import urllib.error
    import urllib.request

    try:
        req = urllib.request.Request(href, method="HEAD")
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - an asset URL of the catalogue
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, ValueError):
        return None


def _gdal_path(href: str) -> str:
    if href.startswith(("http://", "https://")):
        return "/vsicurl/" + href
    if href.startswith("s3://"):
        return "/vsis3/" + href[5:]
    return href


def _href(item: Mapping[str, Any], key: str) -> str:
    asset = item["assets"][key]
    href = str(asset["href"])
    if href.startswith("s3://"):
        # Some catalogues give s3:// hrefs with an https alternate (no AWS credentials needed).
        for alt in (asset.get("alternate") or {}).values():
            if isinstance(alt, dict) and str(alt.get("href", "")).startswith("https://"):
                return str(alt["href"])
    if not re.match(r"^[a-z][a-z0-9+.-]*://|^/", href):
        base = next((lk["href"] for lk in item.get("links", []) if lk.get("rel") == "self"), None)
        if base:
            href = urljoin(base, href)
    return href


def _scale_offset(item: Mapping[str, Any], key: str) -> tuple[float, float]:
    """(scale, offset) turning an asset's numbers into surface reflectance: ``value * scale + offset``."""
    bands = item["assets"][key].get("raster:bands") or []
    scale, offset = 1.0, 0.0
    if bands and isinstance(bands[0], dict):
        scale, offset = float(bands[0].get("scale", 1.0) or 1.0), float(bands[0].get("offset", 0.0) or 0.0)
    if "earthsearch:boa_offset_applied" in _props(item):
        # Earth Search's sentinel-2-l2a COGs are harmonised (the BOA offset is already in the numbers,
        # reflectance = DN / 10000); the -0.1 some items carry in raster:bands is stale
        # (Element84/earth-search#66, #71).  sentinel-2-c1-l2a has no such flag and a true offset.
        offset = 0.0
    return scale, offset


@dataclass(frozen=True, eq=False)
class _Patch:
    """A window of a source raster as read: float32 pixels (NaN nodata) with their georeferencing."""

    data: np.ndarray
    transform: Affine
    crs: CRS


def _read_window(href: str, grid: Grid, *, categorical: bool, retry: RetryPolicy, what: str) -> _Patch | None:
    """Read the window of a (remote) raster under ``grid``, at about the grid's resolution.

    Only HTTP and decoding happen here, so it is safe in a worker thread; warping onto
    the grid (:func:`_warp`) happens in the calling thread.  Returns None when the
    raster does not reach the grid.  Transient failures are retried per ``retry``.
    """
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.errors import NotGeoreferencedWarning, RasterioError
    from rasterio.warp import transform_bounds
    from rasterio.windows import Window, from_bounds

    path = _gdal_path(href)
    last: BaseException | None = None
    attempt = 0
    for attempt, delay in enumerate([0.0, *retry.delays()]):
        if delay:
            time.sleep(delay)
        try:
            with rasterio.Env(**_gdal_options(retry)), rasterio.open(path) as src:
                if src.crs is None or src.transform == Affine.identity():
                    # COG assets are always georeferenced: a header cut short by a broken transfer is not.
                    raise _Truncated(f"{href} opened without georeferencing (incomplete header)")
                left, bottom, right, top = transform_bounds(grid.crs, src.crs, *grid.bounds, densify_pts=21)
                win = from_bounds(left, bottom, right, top, transform=src.transform)
                col0 = max(0, int(math.floor(win.col_off)) - 2)
                row0 = max(0, int(math.floor(win.row_off)) - 2)
                col1 = min(src.width, int(math.ceil(win.col_off + win.width)) + 2)
                row1 = min(src.height, int(math.ceil(win.row_off + win.height)) + 2)
                if col1 <= col0 or row1 <= row0:
                    return None
                window = Window(col0, row0, col1 - col0, row1 - row0)
                # Read at about the target resolution (GDAL uses overviews when coarser).
                factor = 1
                if not src.crs.is_geographic and not grid.crs.is_geographic:
                    factor = max(1, int(grid.res[0] / max(abs(src.transform.a), 1e-12)))
                out_shape = (max(1, math.ceil(window.height / factor)), max(1, math.ceil(window.width / factor)))
                arr = src.read(
                    1,
                    window=window,
                    out_shape=out_shape,
                    masked=True,
                    resampling=Resampling.nearest if categorical else Resampling.average,
                )
                # (rasterio.windows.window_transform still multiplies with `*`, which affine 3 deprecates)
                wt = (
                    src.transform
                    @ Affine.translation(col0, row0)
                    @ Affine.scale(window.width / out_shape[1], window.height / out_shape[0])
                )
                return _Patch(np.ma.filled(arr.astype("float32"), np.nan), wt, src.crs)
        except (RasterioError, OSError, _Truncated, NotGeoreferencedWarning) as exc:
            # NotGeoreferencedWarning arrives here only when warnings are errors: same cause as _Truncated.
            last = exc
            if _is_permanent(exc, href):
                break
            if _GDAL_RETRIED.search(str(exc)):
                attempt = retry.attempts - 1  # GDAL itself already retried this HTTP status
                break
    msg = _short(last) if last is not None else "unknown error"
    tries = attempt + 1
    raise DownloadError(
        f"{what}: could not read {href} after {tries} attempt{'s' if tries > 1 else ''} ({msg}); "
        "check the connection, or fetch again later (completed reads are cached and not repeated)"
    )


def _warp(patch: _Patch | None, grid: Grid, *, categorical: bool) -> np.ndarray:
    """A patch warped onto ``grid``: (rows, cols) float32, NaN where there is no data."""
    if patch is None:
        return np.full(grid.shape, np.nan, dtype="float32")
    return warp_band(patch.data, patch.transform, patch.crs, grid, resampling="nearest" if categorical else "bilinear")


# --------------------------------------------------------------------------- cache
def _default_cache_dir() -> Path:
    env = os.environ.get("CHANGEDET_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "changedet"


# Bump when what a cache entry holds changes (scaling, masking), so old entries are not reused.
_CACHE_VERSION = 1


def _cache_key(item_id: str, grid: Grid, bands: Sequence[str], kind: str) -> Path:
    spec = json.dumps(
        {
            "item": item_id,
            "crs": grid.crs.to_string() if grid.crs else None,
            "transform": [round(v, 6) for v in tuple(grid.transform)[:6]],
            "shape": list(grid.shape),
            "bands": list(bands),
            "kind": kind,
            "version": _CACHE_VERSION,
        },
        sort_keys=True,
    )
    digest = hashlib.sha256(spec.encode()).hexdigest()[:20]
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", item_id)[:120]
    return Path(kind) / safe / f"{digest}.tif"


def _cache_read(path: Path, grid: Grid, count: int) -> np.ndarray | None:
    """A cached (count, rows, cols) array on ``grid``, or None when absent or unusable."""
    if not path.is_file():
        return None
    from .io import read_raster

    try:
        r = read_raster(path)
    except EmptyDataError:
        return np.full((count, *grid.shape), np.nan, dtype="float32")  # cached "no data here"
    except RasterReadError:
        return None  # a corrupt entry is rebuilt
    if r.count != count or not r.grid.same_as(grid):
        return None
    return r.data


# --------------------------------------------------------------------------- search
def _import_client() -> Any:
    try:
        from pystac_client import Client
    except ImportError:
        raise ImportError(
            f"searching a STAC catalogue needs pystac-client; {_INSTALL_HINT} (or pip install pystac-client)"
        ) from None
    return Client


def _open_client(stac_url: str, collection: str) -> Any:
    Client = _import_client()
    import requests
    from pystac_client.exceptions import APIError

    try:
        client = Client.open(stac_url, timeout=30)
    except (APIError, requests.RequestException, OSError, ValueError) as exc:
        raise CatalogueError(
            f"could not open the STAC API at {stac_url!r} ({_short(exc)}); check the URL and the network "
            f"connection (the default is {DEFAULT_STAC_URL})"
        ) from None
    try:
        with warnings.catch_warnings():
            # pystac-client warns when it falls back to listing all collections; that is fine here.
            warnings.simplefilter("ignore")
            found = client.get_collection(collection)
        if found is None or getattr(found, "id", collection) != collection:
            raise KeyError("not found")
    except (APIError, requests.RequestException, KeyError, ValueError, TypeError) as exc:
        names = []
        try:
            names = sorted(c.id for c in client.get_collections())
        except Exception:  # noqa: BLE001 - the listing is only a hint in the message
            pass
        hint = f"; it has {names[:30]}" if names else ""
        raise CatalogueError(
            f"the STAC API at {stac_url!r} has no collection {collection!r} ({_short(exc)}){hint}; "
            "pass collection='sentinel-2-l2a' or another collection it holds"
        ) from None
    return client


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0][:200] if text else "") or type(exc).__name__


def _search_items(
    client: Any, area: Area, dates: DateRange, collection: str, limit: int, max_scene_cloud: float | None
) -> list[dict[str, Any]]:
    import requests
    from pystac_client.exceptions import APIError

    kwargs: dict[str, Any] = dict(
        collections=[collection], bbox=list(area.bbox), datetime=dates.to_stac(), max_items=limit, limit=min(limit, 100)
    )
    if max_scene_cloud is not None:
        kwargs["query"] = {"eo:cloud_cover": {"lte": float(max_scene_cloud)}}
    try:
        items = list(client.search(**kwargs).items_as_dicts())
    except (APIError, requests.RequestException) as exc:
        raise CatalogueError(f"the STAC search failed ({_short(exc)}); check the URL, or try again later") from None
    if len(items) >= limit:
        warnings.warn(
            f"the search for {area.describe()} in {dates} returned the limit of {limit} scenes; only those are ranked. "
            "Narrow the dates or raise limit=",
            stacklevel=3,
        )
    if not area.is_box:
        from shapely.geometry import shape

        poly = shape(area.geometry)
        items = [it for it in items if not it.get("geometry") or shape(it["geometry"]).intersects(poly)]
    return items


def _props(item: Mapping[str, Any]) -> dict[str, Any]:
    return dict(item.get("properties") or {})


def _item_datetime(item: Mapping[str, Any]) -> dt.datetime:
    p = _props(item)
    text = p.get("datetime") or p.get("start_datetime")
    if not text:
        raise CatalogueError(f"item {item.get('id')!r} has no datetime; the catalogue's items need one")
    try:
        from pystac.utils import str_to_datetime  # RFC 3339 with any fraction of a second

        when = str_to_datetime(str(text))
    except (ImportError, ValueError):
        when = dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.timezone.utc)


def _tile_id(item: Mapping[str, Any]) -> str:
    p = _props(item)
    if p.get("s2:mgrs_tile"):
        return str(p["s2:mgrs_tile"])
    if p.get("mgrs:utm_zone") is not None and p.get("mgrs:latitude_band") and p.get("mgrs:grid_square"):
        return f"{int(p['mgrs:utm_zone']):02d}{p['mgrs:latitude_band']}{p['mgrs:grid_square']}"
    if p.get("grid:code"):
        return str(p["grid:code"]).split("-", 1)[-1]
    if p.get("landsat:wrs_path") is not None and p.get("landsat:wrs_row") is not None:
        return f"{int(p['landsat:wrs_path']):03d}{int(p['landsat:wrs_row']):03d}"
    return str(item.get("id"))


def _group(items: Iterable[dict[str, Any]], lon: float) -> list[list[dict[str, Any]]]:
    """Items of one platform on one solar day (one acquisition), duplicates of a tile dropped."""
    groups: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for it in sorted(items, key=lambda i: str(i.get("id"))):
        when = _item_datetime(it) + dt.timedelta(hours=lon / 15.0)
        key = (str(_props(it).get("platform") or ""), when.date().isoformat())
        # A reprocessed duplicate of a tile sorts after the original: keep the latest.
        groups.setdefault(key, {})[_tile_id(it)] = it
    return [list(g.values()) for _, g in sorted(groups.items(), key=lambda kv: kv[0][1])]


def _cloud_stats(mask: np.ndarray, profile: _Profile, inside: np.ndarray) -> tuple[float, float, float]:
    """(cloud_pct, coverage_pct, clear_pct) over the area pixels from a mosaicked mask band."""
    observed = np.isfinite(mask) & inside
    if profile.mask == "scl":
        observed &= mask != 0
        cloudy = observed & np.isin(np.nan_to_num(mask), _SCL_CLOUDY)
    else:
        codes = np.nan_to_num(mask).astype(np.int64)
        observed &= (codes & _QA_FILL) == 0
        cloudy = observed & ((codes & _QA_CLOUDY) != 0)
    n_area = max(1, int(inside.sum()))
    n_obs = int(observed.sum())
    coverage = 100.0 * n_obs / n_area
    cloud = 100.0 * int(cloudy.sum()) / n_obs if n_obs else 100.0
    clear = 100.0 * int((observed & ~cloudy).sum()) / n_area
    return cloud, coverage, clear


def _assessment_grid(area: Area, profile: _Profile) -> Grid:
    g = area_grid(area, resolution=profile.mask_resolution)
    # Keep the cloud assessment cheap on large areas: at most ~512 pixels a side.
    side = max(g.shape)
    if side > 512:
        g = area_grid(area, resolution=profile.mask_resolution * math.ceil(side / 512))
    return g


def _candidate(
    group: list[dict[str, Any]],
    collection: str,
    area: Area,
    masks: list[np.ndarray | None],
    grid: Grid,
) -> Candidate:
    """A candidate from a group of items and their mask bands warped onto ``grid`` (None: no mask)."""
    first = group[0]
    profile = _profile_for(first, collection)
    scene_cc = [float(_props(i)["eo:cloud_cover"]) for i in group if _props(i).get("eo:cloud_cover") is not None]
    scene_cloud = float(np.mean(scene_cc)) if scene_cc else None
    when = min(_item_datetime(i) for i in group)
    solar = (when + dt.timedelta(hours=area.centroid[0] / 15.0)).date().isoformat()
    if any(m is None for m in masks):
        source = "eo:cloud_cover"
        cloud, coverage, clear = scene_cloud, None, (None if scene_cloud is None else 100.0 - scene_cloud)
    else:
        mosaic = masks[0]
        for m in masks[1:]:
            mosaic = np.where(np.isfinite(mosaic), mosaic, m)
        source = profile.mask
        cloud, coverage, clear = _cloud_stats(mosaic, profile, _area_mask(area, grid))
    return Candidate(
        date=solar,
        datetime=when.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        platform=str(_props(first).get("platform") or ""),
        tile_ids=tuple(_tile_id(i) for i in group),
        item_ids=tuple(str(i["id"]) for i in group),
        collection=collection,
        cloud_pct=cloud,
        coverage_pct=coverage,
        clear_pct=clear,
        scene_cloud_pct=scene_cloud,
        cloud_source=source,
        items=tuple(group),
    )


def _cache_write(raster: GeoRaster, path: Path) -> None:
    from .io import write_raster

    write_raster(raster, path, dtype="float32")


def _rank_key(c: Candidate) -> tuple[float, float, str]:
    clear = -1.0 if c.clear_pct is None else c.clear_pct
    cloud = 101.0 if c.cloud_pct is None else c.cloud_pct
    return (-round(clear, 6), round(cloud, 6), c.date)


def search_scenes(
    bbox_or_geojson: Any,
    dates: str | DateRange | Sequence[Any],
    *,
    stac_url: str = DEFAULT_STAC_URL,
    collection: str = DEFAULT_COLLECTION,
    max_cloud: float | None = None,
    max_scene_cloud: float | None = None,
    limit: int = 200,
    cache_dir: str | os.PathLike[str] | None = None,
    retry: RetryPolicy = RetryPolicy(),
    progress: bool = False,
) -> list[Candidate]:
    """Find the scenes that cover an area in a date range, best first by cloud over the area.

    Parameters
    ----------
    bbox_or_geojson : bbox tuple, ``"MINX,MINY,MAXX,MAXY"``, GeoJSON or shapely geometry
        The area, WGS84 lon/lat.
    dates : str or DateRange
        ``YYYY-MM-DD`` or ``YYYY-MM-DD/YYYY-MM-DD`` (inclusive).
    stac_url, collection : str
        Any STAC API with item search; default Earth Search ``sentinel-2-l2a``
        (``landsat-c2-l2`` for Landsat Collection 2 Level-2).
    max_cloud : float, optional
        Drop candidates with more than this percentage of cloud over the area.
    max_scene_cloud : float, optional
        Ask the catalogue only for scenes with ``eo:cloud_cover`` at most this (whole
        scene): fewer masks to read over long date ranges, at the risk of missing a
        cloudy scene that is clear over a small area.
    limit : int
        Most scenes considered (warns when reached).
    cache_dir : path, optional
        Where mask reads are cached (default ``$CHANGEDET_CACHE`` or ``~/.cache/changedet``).
    retry : RetryPolicy
        Retries of transient HTTP failures.
    progress : bool
        Show a progress bar while masks are read.

    Returns
    -------
    list of Candidate
        Ranked by ``clear_pct`` (part of the area observed and clear), then
        ``cloud_pct``, then date; see :func:`to_table`.

    Raises
    ------
    NoSceneFoundError
        No scene covers the area in the date range (or none is under ``max_cloud``).
    CatalogueError
        The STAC API cannot be reached or lacks the collection.
    ImportError
        pystac-client is missing: ``pip install changedet[stac]``.

    Examples
    --------
    Arguments are checked before any network access:

    >>> search_scenes((52.0, 55.78, 52.1, 55.83), "2024-06-31")
    Traceback (most recent call last):
    ...
    changedet.errors.InvalidParameterError: date '2024-06-31' in '2024-06-31' is not a calendar date YYYY-MM-DD; give 'YYYY-MM-DD' or 'YYYY-MM-DD/YYYY-MM-DD', e.g. 2024-05-01/2024-07-31

    With a network connection:

    >>> cands = search_scenes((52.0, 55.78, 52.1, 55.83), "2024-06-01/2024-08-31")  # doctest: +SKIP
    >>> to_table(cands).head()  # doctest: +SKIP
    """
    area = parse_area(bbox_or_geojson)
    dates = parse_dates(dates)
    _check_pct("max_cloud", max_cloud)
    _check_pct("max_scene_cloud", max_scene_cloud)
    if int(limit) < 1:
        raise InvalidParameterError(f"limit must be a positive number of scenes, got {limit!r}")
    cache = Path(cache_dir) if cache_dir is not None else _default_cache_dir()
    client = _open_client(stac_url, collection)
    items = _search_items(client, area, dates, collection, int(limit), max_scene_cloud)
    where = f"{area.describe()} between {dates.start} and {dates.end}"
    if not items:
        extra = f" with eo:cloud_cover <= {max_scene_cloud}" if max_scene_cloud is not None else ""
        raise NoSceneFoundError(
            f"no {collection} scene{extra} covers {where} in {stac_url}; "
            "widen the dates, check the bbox is MINX(lon),MINY(lat),MAXX(lon),MAXY(lat), or try another collection"
        )
    groups = _group(items, area.centroid[0])
    candidates = _assess(groups, collection, area, cache=cache, retry=retry, progress=progress)
    candidates.sort(key=_rank_key)
    if max_cloud is not None:
        kept = [c for c in candidates if c.cloud_pct is not None and c.cloud_pct <= max_cloud]
        if not kept:
            best = candidates[0]
            raise NoSceneFoundError(
                f"all {len(candidates)} {collection} scenes of {where} have more than {max_cloud:g}% cloud over the "
                f"area; the least cloudy is {best.date} ({_fmt_pct(best.cloud_pct)} cloud, {best.tile_id}); "
                "raise max_cloud (--max-cloud), widen the dates, or pass max_cloud=None to take the least cloudy"
            )
        candidates = kept
    return candidates


def _fmt_pct(v: float | None) -> str:
    return "unknown" if v is None else f"{v:.0f}%"


def _check_pct(name: str, value: float | None) -> None:
    if value is None:
        return
    try:
        ok = 0 <= float(value) <= 100
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise InvalidParameterError(f"{name} is a percentage 0..100, got {value!r}")


def _assess(
    groups: list[list[dict[str, Any]]],
    collection: str,
    area: Area,
    *,
    cache: Path,
    retry: RetryPolicy,
    progress: bool,
) -> list[Candidate]:
    """Read every item's mask over the area (cached; HTTP in worker threads) and build candidates."""
    grids: dict[str, Grid] = {}
    jobs: dict[tuple[int, int], Any] = {}
    bar = _progress(len(groups), "cloud over the area", progress)
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        for gi, group in enumerate(groups):
            profile = _profile_for(group[0], collection)
            grid = grids.setdefault(profile.name, _assessment_grid(area, profile))
            for ii, it in enumerate(group):
                key = _asset_key(it, dict(profile.bands)[profile.mask])
                if key is None:
                    jobs[gi, ii] = None
                    continue
                cached = _cache_read(cache / _cache_key(str(it["id"]), grid, [profile.mask], "mask"), grid, 1)
                if cached is not None:
                    jobs[gi, ii] = cached[0]
                    continue
                jobs[gi, ii] = pool.submit(
                    _read_window, _href(it, key), grid, categorical=True, retry=retry, what=f"mask of {it['id']}"
                )
        candidates = []
        for gi, group in enumerate(groups):
            profile = _profile_for(group[0], collection)
            grid = grids[profile.name]
            masks: list[np.ndarray | None] = []
            for ii, it in enumerate(group):
                job = jobs[gi, ii]
                if isinstance(job, concurrent.futures.Future):
                    try:
                        arr = _warp(job.result(), grid, categorical=True)
                    except DownloadError as exc:
                        warnings.warn(
                            f"the cloud mask of {it['id']} could not be read ({exc}); ranking it by its whole-scene "
                            "eo:cloud_cover instead",
                            CloudyAreaWarning,
                            stacklevel=3,
                        )
                        arr = None
                    else:
                        path = cache / _cache_key(str(it["id"]), grid, [profile.mask], "mask")
                        _cache_write(GeoRaster(arr, grid.transform, grid.crs, (profile.mask,)), path)
                    job = arr
                masks.append(job)
            candidates.append(_candidate(group, collection, area, masks, grid))
            bar.update(1)
    bar.close()
    return candidates


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, desc: str, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    try:
        import ipywidgets  # noqa: F401 - tqdm.auto needs it for notebook bars, and warns without it
    except ImportError:
        from tqdm import tqdm
    else:
        from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="scene" if "cloud" in desc else "band")


def choose_candidate(
    candidates: Sequence[Candidate],
    *,
    max_cloud: float | None = None,
    what: str = "scene",
) -> Candidate:
    """The best candidate (the first, as ranked), with the cloudy-area policy applied.

    With ``max_cloud=None`` the least cloudy is returned, with a
    :class:`CloudyAreaWarning` when it has more than ``CLOUDY_WARNING_PCT`` cloud
    over the area or covers less than ``MIN_COVERAGE_PCT`` of it.  With ``max_cloud`` given, a
    candidate above it is refused with :class:`NoSceneFoundError`.

    Examples
    --------
    >>> a = Candidate("2024-06-12", "", "s2b", ("39UWB",), ("a",), "c", 2.0, 100.0, 98.0, 40.0, "scl")
    >>> b = Candidate("2024-06-17", "", "s2a", ("39UWB",), ("b",), "c", 30.0, 100.0, 70.0, 5.0, "scl")
    >>> choose_candidate([a, b]).date
    '2024-06-12'
    >>> choose_candidate([b], max_cloud=10)
    Traceback (most recent call last):
    ...
    changedet.sources.NoSceneFoundError: no scene is under 10% cloud over the area: the least cloudy, 2024-06-17 (39UWB), has 30%; raise max_cloud or widen the dates
    """
    if not candidates:
        raise NoSceneFoundError(f"no {what} candidates to choose from; widen the dates or check the area")
    ranked = sorted(candidates, key=_rank_key)
    best = ranked[0]
    if max_cloud is not None:
        ok = [c for c in ranked if c.cloud_pct is not None and c.cloud_pct <= max_cloud]
        if not ok:
            least = min(ranked, key=lambda c: 101.0 if c.cloud_pct is None else c.cloud_pct)
            raise NoSceneFoundError(
                f"no {what} is under {max_cloud:g}% cloud over the area: the least cloudy, {least.date} "
                f"({least.tile_id}), has {_fmt_pct(least.cloud_pct)}; raise max_cloud or widen the dates"
            )
        return ok[0]
    if best.cloud_pct is not None and best.cloud_pct > CLOUDY_WARNING_PCT:
        warnings.warn(
            f"every {what} candidate is cloudy over the area; taking the least cloudy, {best.date} ({best.tile_id}) "
            f"with {_fmt_pct(best.cloud_pct)} cloud (cloudy pixels are kept and flagged in the {best.cloud_source} "
            "band); pass max_cloud to refuse such scenes, or widen the dates",
            CloudyAreaWarning,
            stacklevel=2,
        )
    elif best.coverage_pct is not None and best.coverage_pct < MIN_COVERAGE_PCT:
        warnings.warn(
            f"the best {what}, {best.date} ({best.tile_id}), covers only {best.coverage_pct:.0f}% of the area; "
            "the rest is nodata; widen the dates for a scene that covers it all",
            CloudyAreaWarning,
            stacklevel=2,
        )
    return best


# --------------------------------------------------------------------------- reading a candidate
def read_candidate(
    candidate: Candidate,
    area: Any,
    *,
    resolution: float | None = None,
    grid: Grid | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    retry: RetryPolicy = RetryPolicy(),
    progress: bool = False,
) -> GeoRaster:
    """Read only the area's pixels of a candidate's bands onto one grid.

    Bands ``blue, green, red, nir, swir16, swir22`` as surface reflectance (scaled by
    the assets' ``raster:bands`` scale/offset) plus the mask band (``scl`` or
    ``qa_pixel``, class codes); 20 m / 30 m bands bilinear, the mask nearest; the
    tiles of the candidate mosaicked (first valid pixel wins); NaN where the mask is
    nodata.  Each item's read is cached, so a repeated or resumed read is local.

    Examples
    --------
    >>> read_candidate(Candidate("2024-06-12", "", "s2", (), (), "c", None, None, None, None, "scl"),
    ...                (52.0, 55.78, 52.1, 55.83))
    Traceback (most recent call last):
    ...
    changedet.errors.InvalidParameterError: candidate 2024-06-12 has no STAC items to read; take candidates from search_scenes()
    """
    a = parse_area(area)
    if not candidate.items:
        raise InvalidParameterError(
            f"candidate {candidate.date} has no STAC items to read; take candidates from search_scenes()"
        )
    profile = _profile_for(candidate.items[0], candidate.collection)
    if grid is None:
        grid = area_grid(a, resolution=resolution or profile.resolution)
    cache = Path(cache_dir) if cache_dir is not None else _default_cache_dir()
    names: list[str] = []
    keys: dict[str, list[str | None]] = {}
    for name, asset_keys in profile.bands:
        found = [_asset_key(it, asset_keys) for it in candidate.items]
        if name != profile.mask and any(k is None for k in found):
            item = candidate.items[found.index(None)]
            raise DownloadError(
                f"item {item['id']!r} has no {name} asset (looked for {list(asset_keys)}; it has "
                f"{sorted(item.get('assets', {}))}); pick another collection or candidate"
            )
        if name == profile.mask and any(k is None for k in found):
            continue  # no mask asset: the scene is written without one
        names.append(name)
        keys[name] = found
    per_item: list[np.ndarray | None] = [None] * len(candidate.items)
    bar = _progress(len(candidate.items) * len(names), f"reading {candidate.date}", progress)
    jobs: dict[tuple[int, int], concurrent.futures.Future[_Patch | None]] = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        for i, it in enumerate(candidate.items):
            cached = _cache_read(cache / _cache_key(str(it["id"]), grid, names, "scene"), grid, len(names))
            if cached is not None:
                per_item[i] = cached
                bar.update(len(names))
                continue
            for j, name in enumerate(names):
                key = keys[name][i]
                assert key is not None
                jobs[i, j] = pool.submit(
                    _read_window, _href(it, key), grid, categorical=name == profile.mask, retry=retry,
                    what=f"{name} of {it['id']}",
                )
        try:
            for i, it in enumerate(candidate.items):
                if per_item[i] is not None:
                    continue
                stack = np.full((len(names), *grid.shape), np.nan, dtype="float32")
                for j, name in enumerate(names):
                    arr = _warp(jobs[i, j].result(), grid, categorical=name == profile.mask)
                    if name != profile.mask:
                        scale, offset = _scale_offset(it, keys[name][i] or "")
                        if scale != 1.0 or offset != 0.0:
                            arr = arr * np.float32(scale) + np.float32(offset)
                    stack[j] = arr
                    bar.update(1)
                if profile.mask in names:
                    stack[:, ~_mask_valid(stack[names.index(profile.mask)], profile)] = np.nan
                _cache_write(GeoRaster(stack, grid.transform, grid.crs, tuple(names)),
                             cache / _cache_key(str(it["id"]), grid, names, "scene"))
                per_item[i] = stack
        except BaseException:
            for f in jobs.values():
                f.cancel()
            raise
    bar.close()
    stacks = [p for p in per_item if p is not None]
    out = stacks[0].copy()
    for stack in stacks[1:]:
        # Mosaic pixel by pixel: where the mask band (or every band) is nodata, take the next tile.
        if profile.mask in names:
            fill = ~np.isfinite(out[names.index(profile.mask)])
        else:
            fill = ~np.isfinite(out).any(axis=0)
        out[:, fill] = stack[:, fill]
    if not np.isfinite(out).any():
        raise EmptyDataError(
            f"the scene of {candidate.date} ({candidate.tile_id}) holds no data over {a.describe()}; "
            "choose another candidate"
        )
    return GeoRaster(out, grid.transform, grid.crs, tuple(names))


def _mask_valid(mask: np.ndarray, profile: _Profile) -> np.ndarray:
    finite = np.isfinite(mask)
    if profile.mask == "scl":
        return finite & (np.nan_to_num(mask) != 0)
    return finite & ((np.nan_to_num(mask).astype(np.int64) & _QA_FILL) == 0)


# --------------------------------------------------------------------------- fetch a pair
@dataclass(frozen=True)
class FetchResult:
    """What :func:`fetch_pair` wrote: the two scene folders and the chosen candidates.

    ``before`` and ``after`` are folders that :func:`changedet.io.read_raster` reads
    (``scene.tif`` + ``item.json``); ``fetch_json`` records the query, the candidates
    and the choice.

    Examples
    --------
    >>> c = Candidate("2024-06-17", "", "sentinel-2b", ("39UWB",), ("x",), "sentinel-2-l2a", 0.0, 100.0, 100.0,
    ...               70.0, "scl")
    >>> r = FetchResult(Path("out/before"), Path("out/after"), c, c, Path("out/fetch.json"))
    >>> print(str(r).splitlines()[0])
    before: 2024-06-17 sentinel-2b 39UWB, 0% cloud over the area (scl) -> out/before
    """

    before: Path
    after: Path
    before_candidate: Candidate | None
    after_candidate: Candidate | None
    fetch_json: Path
    grid: Grid | None = field(default=None, compare=False)

    def __str__(self) -> str:
        lines = []
        pairs = (("before", self.before, self.before_candidate), ("after", self.after, self.after_candidate))
        for label, folder, c in pairs:
            what = (
                f"{c.date} {c.platform} {c.tile_id}, {_fmt_pct(c.cloud_pct)} cloud over the area ({c.cloud_source})"
                if c is not None
                else "?"
            )
            lines.append(f"{label}: {what} -> {folder}")
        return "\n".join(lines)


def fetch_pair(
    *,
    bbox: Any,
    before: str | DateRange | Candidate,
    after: str | DateRange | Candidate,
    out: str | os.PathLike[str],
    stac_url: str = DEFAULT_STAC_URL,
    collection: str = DEFAULT_COLLECTION,
    max_cloud: float | None = None,
    resolution: float | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    retry: RetryPolicy = RetryPolicy(),
    progress: bool = True,
) -> FetchResult:
    """Find the best public scene for each date and write only the area's pixels.

    For each of ``before`` and ``after`` (a date, a date range, or a
    :class:`Candidate` already chosen from :func:`search_scenes`): search, rank by
    cloud over the area, choose (see :func:`choose_candidate` for the cloudy-area
    policy), read the bands over the area onto one grid shared by both dates (10 m
    UTM for Sentinel-2, 30 m for Landsat, or ``resolution``) and write::

        OUT/before/scene.tif, OUT/before/item.json
        OUT/after/scene.tif,  OUT/after/item.json
        OUT/fetch.json

    Parameters
    ----------
    bbox : bbox tuple, ``"MINX,MINY,MAXX,MAXY"``, GeoJSON or shapely geometry
        The area, WGS84 lon/lat.
    before, after : str, DateRange or Candidate
        ``YYYY-MM-DD`` or ``YYYY-MM-DD/YYYY-MM-DD``, or a chosen candidate.
    out : path
        Output folder (created).
    stac_url, collection, max_cloud
        As in :func:`search_scenes`.
    resolution : float, optional
        Output pixel size in metres.
    cache_dir : path, optional
        Read cache (default ``$CHANGEDET_CACHE`` or ``~/.cache/changedet``).
    retry : RetryPolicy
        Retries of transient HTTP failures.
    progress : bool
        Progress bars (tqdm).

    Returns
    -------
    FetchResult

    Examples
    --------
    Arguments are checked before any network access:

    >>> fetch_pair(bbox="52.0,55.78,52.1", before="2024-06-01/2024-08-31",
    ...            after="2025-06-01/2025-08-31", out="alabuga")
    Traceback (most recent call last):
    ...
    changedet.errors.InvalidParameterError: bbox needs four numbers MINX,MINY,MAXX,MAXY (lon/lat degrees, WGS84), got '52.0,55.78,52.1'; e.g. --bbox 52.0,55.78,52.1,55.83

    With a network connection:

    >>> res = fetch_pair(bbox="52.0,55.78,52.1,55.83", before="2024-06-01/2024-08-31",
    ...                  after="2025-06-01/2025-08-31", out="alabuga")  # doctest: +SKIP
    """
    area = parse_area(bbox)
    picks: dict[str, Candidate | DateRange] = {}
    for label, value in (("before", before), ("after", after)):
        picks[label] = value if isinstance(value, Candidate) else parse_dates(value)
    _check_pct("max_cloud", max_cloud)
    if resolution is not None and not resolution > 0:
        raise InvalidParameterError(f"resolution must be a positive number of metres, got {resolution!r}")
    out_dir = Path(out)
    cache = Path(cache_dir) if cache_dir is not None else _default_cache_dir()

    tables: dict[str, list[dict[str, Any]]] = {}
    chosen: dict[str, Candidate] = {}
    for label, pick in picks.items():
        if isinstance(pick, Candidate):
            chosen[label] = pick
            tables[label] = [pick.to_row()]
            continue
        cands = search_scenes(
            area, pick, stac_url=stac_url, collection=collection, cache_dir=cache, retry=retry, progress=progress
        )
        tables[label] = [c.to_row() for c in cands]
        chosen[label] = choose_candidate(cands, max_cloud=max_cloud, what=f"{label} scene ({pick})")

    profile = _profile_for(chosen["before"].items[0], chosen["before"].collection) if chosen["before"].items else _S2
    grid = area_grid(area, resolution=resolution or profile.resolution)
    folders: dict[str, Path] = {}
    from .io import write_json, write_raster

    # Both scenes are read before anything is written: OUT is complete or untouched (reads stay cached).
    scenes = {
        label: read_candidate(chosen[label], area, grid=grid, cache_dir=cache, retry=retry, progress=progress)
        for label in ("before", "after")
    }
    for label, scene in scenes.items():
        cand = chosen[label]
        folder = out_dir / label
        write_raster(scene, folder / "scene.tif", dtype="float32")
        items = list(cand.items)
        meta: dict[str, Any] = items[0] if len(items) == 1 else {"type": "FeatureCollection", "features": items}
        write_json(meta, folder / "item.json")
        folders[label] = folder

    record = {
        "query": {
            "area": area.to_dict(),
            "before": str(picks["before"]) if not isinstance(picks["before"], Candidate) else picks["before"].date,
            "after": str(picks["after"]) if not isinstance(picks["after"], Candidate) else picks["after"].date,
            "stac_url": stac_url,
            "collection": collection,
            "max_cloud": max_cloud,
            "resolution_m": grid.res[0],
        },
        "grid": {
            "crs": grid.crs.to_string() if grid.crs else None,
            "transform": list(tuple(grid.transform)[:6]),
            "shape": list(grid.shape),
        },
        "candidates": tables,
        "choice": {label: chosen[label].to_row() for label in ("before", "after")},
        "bands": {label: list(_band_names_of(folders[label])) for label in ("before", "after")},
        "radiometry": {label: _radiometry(chosen[label]) for label in ("before", "after")},
        "created": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "versions": _versions(),
    }
    fetch_json = write_json(record, out_dir / "fetch.json")
    return FetchResult(folders["before"], folders["after"], chosen["before"], chosen["after"], fetch_json, grid)


def _radiometry(candidate: Candidate) -> dict[str, Any]:
    """Per item and band, the scale and offset applied (reflectance = value * scale + offset)."""
    out: dict[str, Any] = {}
    for it in candidate.items:
        profile = _profile_for(it, candidate.collection)
        bands = {}
        for name, keys in profile.bands:
            key = _asset_key(it, keys)
            if key is not None and name != profile.mask:
                scale, offset = _scale_offset(it, key)
                bands[name] = {"asset": key, "scale": scale, "offset": offset}
        out[str(it["id"])] = bands
    return out


def _band_names_of(folder: Path) -> tuple[str, ...]:
    from .io import read_raster

    return read_raster(folder).band_names


def _versions() -> dict[str, str]:
    import rasterio

    from . import __version__

    v = {"changedet": __version__, "rasterio": rasterio.__version__, "gdal": rasterio.__gdal_version__}
    try:
        import pystac_client

        v["pystac_client"] = pystac_client.__version__
    except ImportError:  # pragma: no cover
        pass
    return v


# --------------------------------------------------------------------------- network check
def catalogue_reachable(url: str = DEFAULT_STAC_URL, *, timeout: float = 5.0) -> bool:
    """True when the STAC API answers within ``timeout`` seconds (never hangs longer).

    Set the environment variable ``CHANGEDET_OFFLINE=1`` to get False at once (for test
    suites and CI that must not touch the public catalogue).

    Examples
    --------
    >>> catalogue_reachable("http://127.0.0.1:9/", timeout=1)
    False
    """
    if os.environ.get("CHANGEDET_OFFLINE", "").strip().lower() not in ("", "0", "false", "no"):
        return False
    result: list[bool] = []

    def probe() -> None:
        import urllib.request

        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - http(s) URL from the caller
                result.append(200 <= resp.status < 400)
        except Exception:  # noqa: BLE001 - any failure means "not reachable"
            result.append(False)

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout + 0.5)
    return bool(result and result[0])

