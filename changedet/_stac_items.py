"""What a STAC item of a supported collection holds, and which items make one acquisition.

A *profile* says how to read a family of products (Sentinel-2 L2A, Landsat C2 L2):
output band -> asset keys to try, and which band is the cloud mask.  Items of one
platform on one solar day over the area are one :class:`Candidate`.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence
from urllib.parse import urljoin

from ._fetch_errors import CatalogueError
from .errors import InvalidParameterError

__all__ = [
    "DEFAULT_STAC_URL",
    "DEFAULT_COLLECTION",
    "Profile",
    "SENTINEL2",
    "LANDSAT",
    "Candidate",
    "profile_for",
    "asset_key",
    "asset_href",
    "scale_offset",
    "item_props",
    "item_datetime",
    "tile_id",
    "solar_date",
    "group_acquisitions",
]

#: The public Earth Search catalogue (Element 84), Sentinel-2 L2A and Landsat C2 L2 COGs on AWS.
DEFAULT_STAC_URL = "https://earth-search.aws.element84.com/v1"
DEFAULT_COLLECTION = "sentinel-2-l2a"


@dataclass(frozen=True)
class Profile:
    """How to read one family of products: output band -> asset keys to try, and the mask band."""

    name: str
    bands: tuple[tuple[str, tuple[str, ...]], ...]
    mask: str  # output name of the mask band
    resolution: float  # default output pixel size, metres
    mask_resolution: float  # pixel size of the mask band, metres


SENTINEL2 = Profile(
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
LANDSAT = Profile(
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


def profile_for(item: Mapping[str, Any], collection: str) -> Profile:
    """The profile that reads an item: Sentinel-2 when it has an SCL asset, Landsat with QA_PIXEL.

    Parameters
    ----------
    item : mapping
        A STAC item as a dict.
    collection : str
        Its collection id (a hint when the assets do not decide).

    Returns
    -------
    Profile

    Raises
    ------
    InvalidParameterError
        Neither family's assets.

    Examples
    --------
    >>> profile_for({"assets": {"blue": {}, "scl": {}}}, "x").name, profile_for({"assets": {}}, "landsat-c2-l2").mask
    ('sentinel-2', 'qa_pixel')
    """
    keys = {k.lower() for k in item.get("assets", {})}
    if "scl" in keys:
        return SENTINEL2
    if "qa_pixel" in keys or "landsat" in collection.lower():
        return LANDSAT
    if "sentinel-2" in collection.lower() or "blue" in keys or "b02" in keys:
        return SENTINEL2
    raise InvalidParameterError(
        f"item {item.get('id')!r} of collection {collection!r} has assets {sorted(item.get('assets', {}))}; "
        "changedet reads Sentinel-2 L2A (blue..swir22 + scl) and Landsat C2 L2 (blue..swir22 + qa_pixel); "
        "pass collection='sentinel-2-l2a' or 'landsat-c2-l2'"
    )


def asset_key(item: Mapping[str, Any], candidates: Sequence[str]) -> str | None:
    """The first of ``candidates`` that is an asset key of ``item`` (exact, else any case).

    Parameters
    ----------
    item : mapping
        A STAC item as a dict.
    candidates : sequence of str
        Asset keys to try, in order.

    Returns
    -------
    str or None

    Examples
    --------
    >>> asset_key({"assets": {"SR_B5": {}}}, ["nir08", "sr_b5"])
    'SR_B5'
    """
    assets = item.get("assets", {})
    lower = {k.lower(): k for k in assets}
    for c in candidates:
        if c in assets:
            return c
        if c.lower() in lower:
            return lower[c.lower()]
    return None


def asset_href(item: Mapping[str, Any], key: str) -> str:
    """The URL of an asset: an https alternate of an ``s3://`` href, relative hrefs resolved.

    Parameters
    ----------
    item : mapping
        A STAC item as a dict.
    key : str
        The asset key.

    Returns
    -------
    str

    Examples
    --------
    >>> item = {"assets": {"red": {"href": "red.tif"}}, "links": [{"rel": "self", "href": "https://h/items/a"}]}
    >>> asset_href(item, "red")
    'https://h/items/red.tif'
    """
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


def scale_offset(item: Mapping[str, Any], key: str) -> tuple[float, float]:
    """(scale, offset) turning an asset's numbers into surface reflectance: ``value * scale + offset``.

    Parameters
    ----------
    item : mapping
        A STAC item as a dict.
    key : str
        The asset key.

    Returns
    -------
    (float, float)
        From the asset's ``raster:bands``; (1, 0) without them.

    Examples
    --------
    >>> item = {"assets": {"red": {"raster:bands": [{"scale": 0.0001, "offset": -0.1}]}}, "properties": {}}
    >>> scale_offset(item, "red")
    (0.0001, -0.1)
    """
    bands = item["assets"][key].get("raster:bands") or []
    scale, offset = 1.0, 0.0
    if bands and isinstance(bands[0], dict):
        scale, offset = float(bands[0].get("scale", 1.0) or 1.0), float(bands[0].get("offset", 0.0) or 0.0)
    if "earthsearch:boa_offset_applied" in item_props(item):
        # Earth Search's sentinel-2-l2a COGs are harmonised (the BOA offset is already in the numbers,
        # reflectance = DN / 10000); the -0.1 some items carry in raster:bands is stale
        # (Element84/earth-search#66, #71).  sentinel-2-c1-l2a has no such flag and a true offset.
        offset = 0.0
    return scale, offset


def item_props(item: Mapping[str, Any]) -> dict[str, Any]:
    """An item's ``properties`` (an empty dict when it has none).

    Parameters
    ----------
    item : mapping
        A STAC item as a dict.

    Returns
    -------
    dict

    Examples
    --------
    >>> item_props({"properties": None})
    {}
    """
    return dict(item.get("properties") or {})


def item_datetime(item: Mapping[str, Any]) -> dt.datetime:
    """An item's acquisition time, timezone-aware (UTC when the catalogue gives none).

    Parameters
    ----------
    item : mapping
        A STAC item as a dict (``datetime`` or ``start_datetime``).

    Returns
    -------
    datetime.datetime

    Raises
    ------
    CatalogueError
        The item has no time.

    Examples
    --------
    >>> item_datetime({"properties": {"datetime": "2024-06-12T08:16:01.024Z"}}).isoformat()
    '2024-06-12T08:16:01.024000+00:00'
    """
    p = item_props(item)
    text = p.get("datetime") or p.get("start_datetime")
    if not text:
        raise CatalogueError(f"item {item.get('id')!r} has no datetime; the catalogue's items need one")
    try:
        from pystac.utils import str_to_datetime  # RFC 3339 with any fraction of a second

        when = str_to_datetime(str(text))
    except (ImportError, ValueError):
        when = dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.timezone.utc)


def tile_id(item: Mapping[str, Any]) -> str:
    """The tile of an item: MGRS square for Sentinel-2, WRS path+row for Landsat, else the item id.

    Parameters
    ----------
    item : mapping
        A STAC item as a dict.

    Returns
    -------
    str

    Examples
    --------
    >>> tile_id({"properties": {"landsat:wrs_path": "163", "landsat:wrs_row": "21"}})
    '163021'
    """
    p = item_props(item)
    if p.get("s2:mgrs_tile"):
        return str(p["s2:mgrs_tile"])
    if p.get("mgrs:utm_zone") is not None and p.get("mgrs:latitude_band") and p.get("mgrs:grid_square"):
        return f"{int(p['mgrs:utm_zone']):02d}{p['mgrs:latitude_band']}{p['mgrs:grid_square']}"
    if p.get("grid:code"):
        return str(p["grid:code"]).split("-", 1)[-1]
    if p.get("landsat:wrs_path") is not None and p.get("landsat:wrs_row") is not None:
        return f"{int(p['landsat:wrs_path']):03d}{int(p['landsat:wrs_row']):03d}"
    return str(item.get("id"))


def solar_date(when: dt.datetime, lon: float) -> dt.date:
    """The local solar day of a UTC time at a longitude (one orbit pass is one solar day).

    Parameters
    ----------
    when : datetime.datetime
        Timezone-aware time.
    lon : float
        Longitude, degrees east.

    Returns
    -------
    datetime.date

    Examples
    --------
    >>> solar_date(dt.datetime(2024, 6, 12, 22, 30, tzinfo=dt.timezone.utc), 52.0).isoformat()
    '2024-06-13'
    """
    return (when + dt.timedelta(hours=lon / 15.0)).date()


def group_acquisitions(items: Iterable[dict[str, Any]], lon: float) -> list[list[dict[str, Any]]]:
    """Items of one platform on one solar day (one acquisition), duplicates of a tile dropped.

    Parameters
    ----------
    items : iterable of dict
        STAC items over the area.
    lon : float
        Longitude of the area (for the solar day).

    Returns
    -------
    list of list of dict
        One list per acquisition, by date; a reprocessed duplicate of a tile replaces the original.

    Examples
    --------
    >>> its = [{"id": i, "properties": {"datetime": t, "platform": "s2a", "s2:mgrs_tile": m}}
    ...        for i, t, m in [("a", "2024-06-12T08:16:00Z", "39UWB"), ("b", "2024-06-12T08:16:05Z", "40UCG"),
    ...                        ("c", "2024-06-17T08:16:00Z", "39UWB")]]
    >>> [[i["id"] for i in g] for g in group_acquisitions(its, 52.0)]
    [['a', 'b'], ['c']]
    """
    groups: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for it in sorted(items, key=lambda i: str(i.get("id"))):
        key = (str(item_props(it).get("platform") or ""), solar_date(item_datetime(it), lon).isoformat())
        # A reprocessed duplicate of a tile sorts after the original: keep the latest.
        groups.setdefault(key, {})[tile_id(it)] = it
    return [list(g.values()) for _, g in sorted(groups.items(), key=lambda kv: kv[0][1])]


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
        """The tiles of the acquisition joined with ``+``."""
        return "+".join(self.tile_ids)

    def to_row(self) -> dict[str, Any]:
        """One row of the candidates table (JSON-serialisable).

        Returns
        -------
        dict
            ``date``, ``cloud_over_area_pct``, ``coverage_pct``, ``clear_pct``,
            ``scene_cloud_pct`` (percentages rounded to 0.01, None when unknown),
            ``platform``, ``tile_id``, ``cloud_source``, ``datetime`` and ``item_ids``.
        """
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


# Shown under the public module that users import.
Candidate.__module__ = "changedet.sources"
