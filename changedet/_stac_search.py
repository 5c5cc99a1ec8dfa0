"""Search a STAC API for the scenes of an area and dates, and rank them by the cloud over the area.

Each candidate (one acquisition: the items of one platform on one solar day) is
judged on the area, not the whole scene: its mask band (Sentinel-2 ``SCL``, Landsat
``QA_PIXEL``) is read over the area only, at the mask's own coarse resolution, and the
cloud classes of :mod:`changedet.masks` counted.  Ranking: the part of the area
observed and clear (``clear_pct``), then ``cloud_pct``, then date.
"""

from __future__ import annotations

import concurrent.futures
import math
import os
import threading
import warnings
from datetime import timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ._fetch_cache import cache_path, cache_read, cache_write, default_cache_dir
from ._fetch_dates import DateRange, parse_dates
from ._fetch_errors import (CatalogueError, CloudyAreaWarning, DownloadError, NoSceneFoundError, check_host,
                            network_reason, short_error)
from ._fetch_read import RetryPolicy, mask_observed, progress_bar, read_window, warp_patch
from ._stac_items import (
    DEFAULT_COLLECTION,
    DEFAULT_STAC_URL,
    Candidate,
    Profile,
    asset_href,
    asset_key,
    group_acquisitions,
    item_datetime,
    item_props,
    profile_for,
    solar_date,
    tile_id,
)
from .areas import Area, aoi_in_grid_crs, area_grid, parse_area
from .errors import InvalidParameterError
from .masks import QA_PIXEL_CLOUD, SCL_CLOUD_CLASSES, qa_pixel_mask, scl_mask
from .raster import GeoRaster, Grid

__all__ = [
    "CLOUDY_WARNING_PCT",
    "MIN_COVERAGE_PCT",
    "search_scenes",
    "cloud_over_area",
    "rank_key",
    "choose_candidate",
    "to_table",
    "catalogue_reachable",
    "format_pct",
    "check_pct",
]

#: With ``max_cloud=None``, choosing a scene with more cloud than this over the area warns.
CLOUDY_WARNING_PCT = 20.0
#: Choosing a scene that covers less of the area than this warns.
MIN_COVERAGE_PCT = 90.0

_INSTALL_HINT = "pip install changedet[stac]"


def to_table(candidates: Sequence[Candidate], *, as_dataframe: bool | None = None) -> Any:
    """The candidates as a table: a pandas DataFrame when pandas is installed, else a list of dicts.

    Columns: date, cloud_over_area_pct, coverage_pct, clear_pct, scene_cloud_pct,
    platform, tile_id, cloud_source, datetime, item_ids.  Rows keep the ranking order.

    Parameters
    ----------
    candidates : sequence of Candidate
        From :func:`search_scenes`.
    as_dataframe : bool, optional
        True: a DataFrame (pandas required); False: a list of dicts; None: a DataFrame when pandas is installed.

    Returns
    -------
    pandas.DataFrame or list of dict

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


def _import_client() -> Any:
    try:
        from pystac_client import Client
    except ImportError:
        raise ImportError(
            f"searching a STAC catalogue needs pystac-client; {_INSTALL_HINT} (or pip install pystac-client)"
        ) from None
    return Client


def _host(url: str) -> str:
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    return parts.netloc or url


def _open_client(stac_url: str, collection: str) -> Any:
    Client = _import_client()
    import requests
    from pystac_client.exceptions import APIError

    check_host(stac_url)
    try:
        client = Client.open(stac_url, timeout=30)
    except (APIError, requests.RequestException, OSError, ValueError) as exc:
        if (reason := network_reason(exc)) is not None:
            raise CatalogueError(f"cannot reach {_host(stac_url)}: {reason}, so could not open the STAC API at "
                                 f"{stac_url!r}; check the network or --stac-url (the default is {DEFAULT_STAC_URL})") from None
        raise CatalogueError(
            f"could not open the STAC API at {stac_url!r} ({short_error(exc)}); check the URL and the network "
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
            f"the STAC API at {stac_url!r} has no collection {collection!r} ({short_error(exc)}){hint}; "
            "pass collection='sentinel-2-l2a' or another collection it holds"
        ) from None
    return client


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
        raise CatalogueError(f"the STAC search failed ({short_error(exc)}); check the URL, or try again later") from None
    if len(items) >= limit:
        warnings.warn(
            f"the search for {area.describe()} in {dates} returned the limit of {limit} scenes; only those are ranked. "
            "Narrow the dates or raise limit=",
            stacklevel=3,
        )
    if not area.is_box:
        from shapely.geometry import shape

        items = [it for it in items if not it.get("geometry") or shape(it["geometry"]).intersects(area.geometry)]
    return items


def cloud_over_area(mask: np.ndarray, profile: Profile, inside: np.ndarray) -> tuple[float, float, float]:
    """Cloud, coverage and clear percentages of an area from a mosaicked mask band.

    Cloud is :data:`changedet.masks.SCL_CLOUD_CLASSES` of an SCL band, or the
    :data:`changedet.masks.QA_PIXEL_CLOUD` bits of a QA_PIXEL band; observed is every
    pixel with a value that is not SCL nodata (0) or QA_PIXEL fill.

    Parameters
    ----------
    mask : (rows, cols) ndarray
        The mask band on the assessment grid, NaN where no tile has data.
    profile : Profile
        Which mask band it is.
    inside : (rows, cols) ndarray of bool
        Pixels inside the area.

    Returns
    -------
    (cloud_pct, coverage_pct, clear_pct) : tuple of float
        Cloud over the observed part of the area; the observed part of the area; the
        part of the area observed and clear.

    Examples
    --------
    >>> from ._stac_items import SENTINEL2
    >>> cloud_over_area(np.array([[4.0, 9.0], [0.0, 4.0]]), SENTINEL2, np.ones((2, 2), bool))
    (33.333333333333336, 75.0, 50.0)
    """
    observed = mask_observed(mask, profile) & inside
    if profile.mask == "scl":
        cloudy = observed & scl_mask(mask, classes=SCL_CLOUD_CLASSES)
    else:
        cloudy = observed & qa_pixel_mask(mask, flags=QA_PIXEL_CLOUD)
    n_area = max(1, int(inside.sum()))
    n_obs = int(observed.sum())
    coverage = 100.0 * n_obs / n_area
    cloud = 100.0 * int(cloudy.sum()) / n_obs if n_obs else 100.0
    clear = 100.0 * int((observed & ~cloudy).sum()) / n_area
    return cloud, coverage, clear


def _area_mask(area: Area, grid: Grid) -> np.ndarray:
    """(rows, cols) bool: pixels of ``grid`` the area polygon touches (all of them for a box)."""
    if area.is_box:
        return np.ones(grid.shape, bool)
    from rasterio.features import geometry_mask

    inside = ~geometry_mask([aoi_in_grid_crs(area.geometry, grid)], out_shape=grid.shape, transform=grid.transform,
                            all_touched=True)
    return inside if inside.any() else np.ones(grid.shape, bool)


def _assessment_grid(area: Area, profile: Profile) -> Grid:
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
    profile = profile_for(first, collection)
    scene_cc = [float(item_props(i)["eo:cloud_cover"]) for i in group if item_props(i).get("eo:cloud_cover") is not None]
    scene_cloud = float(np.mean(scene_cc)) if scene_cc else None
    when = min(item_datetime(i) for i in group)
    solar = solar_date(when, area.centroid[0]).isoformat()
    if any(m is None for m in masks):
        source = "eo:cloud_cover"
        cloud, coverage, clear = scene_cloud, None, (None if scene_cloud is None else 100.0 - scene_cloud)
    else:
        mosaic = masks[0]
        for m in masks[1:]:
            mosaic = np.where(np.isfinite(mosaic), mosaic, m)
        source = profile.mask
        cloud, coverage, clear = cloud_over_area(mosaic, profile, _area_mask(area, grid))
    return Candidate(
        date=solar,
        datetime=when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        platform=str(item_props(first).get("platform") or ""),
        tile_ids=tuple(tile_id(i) for i in group),
        item_ids=tuple(str(i["id"]) for i in group),
        collection=collection,
        cloud_pct=cloud,
        coverage_pct=coverage,
        clear_pct=clear,
        scene_cloud_pct=scene_cloud,
        cloud_source=source,
        items=tuple(group),
    )


def rank_key(c: Candidate) -> tuple[float, float, str]:
    """The sort key of the ranking: most of the area clear first, then least cloud, then earliest.

    Parameters
    ----------
    c : Candidate

    Returns
    -------
    (float, float, str)
        ``(-clear_pct, cloud_pct, date)``; unknown figures rank last.

    Examples
    --------
    >>> c = Candidate("2024-06-12", "", "s2b", ("39UWB",), ("a",), "c", 2.0, 100.0, 98.0, 40.0, "scl")
    >>> rank_key(c)
    (-98.0, 2.0, '2024-06-12')
    """
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
    area = parse_area(bbox_or_geojson, name="bbox_or_geojson")
    dates = parse_dates(dates)
    check_pct("max_cloud", max_cloud)
    check_pct("max_scene_cloud", max_scene_cloud)
    if int(limit) < 1:
        raise InvalidParameterError(f"limit must be a positive number of scenes, got {limit!r}")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    client = _open_client(stac_url, collection)
    items = _search_items(client, area, dates, collection, int(limit), max_scene_cloud)
    where = f"{area.describe()} between {dates.start} and {dates.end}"
    if not items:
        extra = f" with eo:cloud_cover <= {max_scene_cloud}" if max_scene_cloud is not None else ""
        raise NoSceneFoundError(
            f"no {collection} scene{extra} covers {where} in {stac_url}; "
            "widen the dates, check the bbox is MINX(lon),MINY(lat),MAXX(lon),MAXY(lat), or try another collection"
        )
    groups = group_acquisitions(items, area.centroid[0])
    candidates = _assess(groups, collection, area, cache=cache, retry=retry, progress=progress)
    candidates.sort(key=rank_key)
    if max_cloud is not None:
        kept = [c for c in candidates if c.cloud_pct is not None and c.cloud_pct <= max_cloud]
        if not kept:
            best = candidates[0]
            raise NoSceneFoundError(
                f"all {len(candidates)} {collection} scenes of {where} have more than {max_cloud:g}% cloud over the "
                f"area; the least cloudy is {best.date} ({format_pct(best.cloud_pct)} cloud, {best.tile_id}); "
                "raise max_cloud (--max-cloud), widen the dates, or pass max_cloud=None to take the least cloudy"
            )
        candidates = kept
    return candidates


def format_pct(v: float | None) -> str:
    """A percentage for messages: ``"12%"``, or ``"unknown"`` for None.

    Parameters
    ----------
    v : float or None

    Returns
    -------
    str

    Examples
    --------
    >>> format_pct(12.4), format_pct(None)
    ('12%', 'unknown')
    """
    return "unknown" if v is None else f"{v:.0f}%"


def check_pct(name: str, value: float | None) -> None:
    """Refuse a percentage outside 0..100 (None passes).

    Parameters
    ----------
    name : str
        The parameter, for the message.
    value : float or None

    Raises
    ------
    InvalidParameterError

    Examples
    --------
    >>> check_pct("max_cloud", 150)
    Traceback (most recent call last):
    ...
    changedet.errors.InvalidParameterError: max_cloud is a percentage 0..100, got 150; e.g. max_cloud=20
    """
    if value is None:
        return
    try:
        ok = 0 <= float(value) <= 100
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise InvalidParameterError(f"{name} is a percentage 0..100, got {value!r}; e.g. {name}=20")


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
    bar = progress_bar(len(groups), "cloud over the area", progress)
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        for gi, group in enumerate(groups):
            profile = profile_for(group[0], collection)
            grid = grids.setdefault(profile.name, _assessment_grid(area, profile))
            for ii, it in enumerate(group):
                key = asset_key(it, dict(profile.bands)[profile.mask])
                if key is None:
                    jobs[gi, ii] = None
                    continue
                cached = cache_read(cache / cache_path(str(it["id"]), grid, [profile.mask], "mask"), grid, 1)
                if cached is not None:
                    jobs[gi, ii] = cached[0]
                    continue
                jobs[gi, ii] = pool.submit(
                    read_window, asset_href(it, key), grid, categorical=True, retry=retry, what=f"mask of {it['id']}"
                )
        candidates = []
        for gi, group in enumerate(groups):
            profile = profile_for(group[0], collection)
            grid = grids[profile.name]
            masks: list[np.ndarray | None] = []
            for ii, it in enumerate(group):
                job = jobs[gi, ii]
                if isinstance(job, concurrent.futures.Future):
                    try:
                        arr = warp_patch(job.result(), grid, categorical=True)
                    except DownloadError as exc:
                        warnings.warn(
                            f"the cloud mask of {it['id']} could not be read ({exc}); ranking it by its whole-scene "
                            "eo:cloud_cover instead",
                            CloudyAreaWarning,
                            stacklevel=3,
                        )
                        arr = None
                    else:
                        path = cache / cache_path(str(it["id"]), grid, [profile.mask], "mask")
                        cache_write(GeoRaster(arr, grid.transform, grid.crs, (profile.mask,)), path)
                    job = arr
                masks.append(job)
            candidates.append(_candidate(group, collection, area, masks, grid))
            bar.update(1)
    bar.close()
    return candidates


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

    Parameters
    ----------
    candidates : sequence of Candidate
        From :func:`search_scenes` (ranked again here).
    max_cloud : float, optional
        Most cloud over the area accepted, percent.
    what : str
        What is chosen, for messages (``"before scene (2024-06-01/2024-08-31)"``).

    Returns
    -------
    Candidate

    Raises
    ------
    NoSceneFoundError
        No candidates, or none under ``max_cloud``.

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
    ranked = sorted(candidates, key=rank_key)
    best = ranked[0]
    if max_cloud is not None:
        ok = [c for c in ranked if c.cloud_pct is not None and c.cloud_pct <= max_cloud]
        if not ok:
            least = min(ranked, key=lambda c: 101.0 if c.cloud_pct is None else c.cloud_pct)
            raise NoSceneFoundError(
                f"no {what} is under {max_cloud:g}% cloud over the area: the least cloudy, {least.date} "
                f"({least.tile_id}), has {format_pct(least.cloud_pct)}; raise max_cloud or widen the dates"
            )
        return ok[0]
    if best.cloud_pct is not None and best.cloud_pct > CLOUDY_WARNING_PCT:
        warnings.warn(
            f"every {what} candidate is cloudy over the area; taking the least cloudy, {best.date} ({best.tile_id}) "
            f"with {format_pct(best.cloud_pct)} cloud (cloudy pixels are kept and flagged in the {best.cloud_source} "
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


def catalogue_reachable(url: str = DEFAULT_STAC_URL, *, timeout: float = 5.0) -> bool:
    """True when the STAC API answers within ``timeout`` seconds (never hangs longer).

    Set the environment variable ``CHANGEDET_OFFLINE=1`` to get False at once (for test
    suites and CI that must not touch the public catalogue).

    Parameters
    ----------
    url : str
        The STAC API's landing page.
    timeout : float
        Seconds to wait at most.

    Returns
    -------
    bool

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

