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
* The area goes through the package's one area parser (:func:`changedet.areas.parse_aoi`);
  the cloud classes and bits are those of :mod:`changedet.masks`, so ``detect`` masks
  what the ranking counted as cloud.
* Reads are cached by item id + area + bands + resolution under ``cache_dir``
  (default ``$CHANGEDET_CACHE`` or ``~/.cache/changedet``): a second fetch of the
  same area, or a fetch resumed after an interruption, reads nothing again.
  Transient HTTP failures (5xx, connection reset, truncated transfer) are retried
  with exponential backoff; a 403/404 fails at once.  Every file is written under a
  temporary name and renamed when complete.

The work is split by job, each in a private module this one re-exports:
``_stac_items`` (what a STAC item holds; one acquisition), ``_stac_search`` (search and
rank by cloud over the area), ``_fetch_read`` (windowed HTTP reads onto a grid, retries),
``_fetch_cache`` (the on-disk cache), ``_fetch_dates`` (date ranges) and
``_fetch_errors``; areas and their UTM grid come from :mod:`changedet.areas`.
``_fetch_read`` also records why the read is not odc-stac's (measured: same pixels, no
faster at equal GDAL settings, no account of broken transfers, a much heavier extra).
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ._fetch_cache import default_cache_dir
from ._fetch_dates import DateRange, parse_dates
from ._fetch_errors import CatalogueError, CloudyAreaWarning, DownloadError, NoSceneFoundError
from ._fetch_read import GDAL_HTTP_OPTIONS, RetryPolicy, read_candidate
from ._stac_items import DEFAULT_COLLECTION, DEFAULT_STAC_URL, SENTINEL2, Candidate, asset_key, profile_for, scale_offset
from ._stac_search import (
    CLOUDY_WARNING_PCT,
    MIN_COVERAGE_PCT,
    check_pct,
    catalogue_reachable,
    choose_candidate,
    format_pct,
    search_scenes,
    to_table,
)
from .areas import Area, area_grid, parse_area, utm_crs
from .errors import InvalidParameterError
from .raster import Grid

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


def parse_bbox(text: str | Sequence[float]) -> tuple[float, float, float, float]:
    """The lon/lat bounding box ``(minx, miny, maxx, maxy)`` of ``"MINX,MINY,MAXX,MAXY"``.

    The one area parser of the package (:func:`changedet.areas.parse_area`) reads it,
    so ``--bbox`` of ``fetch`` and ``--aoi`` of ``detect`` accept and refuse the same text.

    Parameters
    ----------
    text : str or sequence of 4 float
        WGS84 lon/lat degrees.

    Returns
    -------
    (minx, miny, maxx, maxy) : tuple of float

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
    changedet.errors.InvalidParameterError: bbox '55.78,52.0,55.83' is neither an existing GeoJSON file nor 'minx,miny,maxx,maxy'; give four lon/lat numbers, e.g. '52.0,55.78,52.1,55.83', or the path of a GeoJSON file
    """
    return parse_area(text, name="bbox").bbox


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
                f"{c.date} {c.platform} {c.tile_id}, {format_pct(c.cloud_pct)} cloud over the area ({c.cloud_source})"
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
    changedet.errors.InvalidParameterError: bbox '52.0,55.78,52.1' is neither an existing GeoJSON file nor 'minx,miny,maxx,maxy'; give four lon/lat numbers, e.g. '52.0,55.78,52.1,55.83', or the path of a GeoJSON file

    With a network connection:

    >>> res = fetch_pair(bbox="52.0,55.78,52.1,55.83", before="2024-06-01/2024-08-31",
    ...                  after="2025-06-01/2025-08-31", out="alabuga")  # doctest: +SKIP
    """
    area = parse_area(bbox, name="bbox")
    picks: dict[str, Candidate | DateRange] = {}
    for label, value in (("before", before), ("after", after)):
        picks[label] = value if isinstance(value, Candidate) else parse_dates(value)
    check_pct("max_cloud", max_cloud)
    if resolution is not None and not resolution > 0:
        raise InvalidParameterError(f"resolution must be a positive number of metres, got {resolution!r}")
    out_dir = Path(out)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()

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

    profile = profile_for(chosen["before"].items[0], chosen["before"].collection) if chosen["before"].items else SENTINEL2
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
        profile = profile_for(it, candidate.collection)
        bands = {}
        for name, keys in profile.bands:
            key = asset_key(it, keys)
            if key is not None and name != profile.mask:
                scale, offset = scale_offset(it, key)
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
