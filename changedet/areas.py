"""Areas of interest: one parser for every area the package takes, and its place on a grid.

An area is given in WGS84 lon/lat as ``"minx,miny,maxx,maxy"``, a 4-sequence, GeoJSON
(a dict or a file: geometry, Feature or FeatureCollection) or a shapely geometry;
:func:`parse_aoi` turns each into one shapely geometry; every area the package takes
(``detect --aoi``, ``fetch --bbox``, :func:`changedet.sources.search_scenes`) goes
through it.  :func:`parse_area` wraps it for areas that need a surface (a polygon and its
lon/lat bounding box); :func:`area_grid` gives an area its own UTM grid;
:func:`aoi_on_grid` gives the sub-grid of an existing grid that covers it and the pixels
inside it.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.crs import CRS

from . import align as _align
from .errors import InvalidParameterError, NoOverlapError
from .raster import Grid, describe_grid

__all__ = ["Area", "parse_aoi", "parse_area", "utm_crs", "area_grid", "aoi_in_grid_crs", "aoi_on_grid"]


_EXAMPLE = "e.g. '52.0,55.78,52.1,55.83'"


def parse_aoi(aoi: Any, *, name: str = "aoi", lonlat: bool = True) -> Any:
    """An area of interest as a shapely geometry in WGS84 lon/lat: the one area parser of changedet.

    Parameters
    ----------
    aoi : str, path, sequence of 4 float, dict, shapely geometry or None
        ``"minx,miny,maxx,maxy"`` (lon/lat degrees), a 4-sequence, GeoJSON (a dict, its
        text, or the path of a file: geometry, Feature or FeatureCollection, RFC 7946
        lon/lat), or a shapely geometry (returned as it is).
    name : str
        The parameter's name in error messages (``"aoi"``, ``"bbox"``, ``"area"``).
    lonlat : bool
        Refuse coordinates outside lon -180..180 / lat -90..90 now.  False when the images
        decide later (:func:`aoi_in_grid_crs`): lon/lat for georeferenced ones, pixel
        coordinates (x = column, y = row) for images without georeferencing.

    Returns
    -------
    shapely geometry or None
        The area (a FeatureCollection is the union of its features); None for None.

    Raises
    ------
    InvalidParameterError
        Not four finite numbers, min not below max, outside lon -180..180 / lat -90..90,
        a file that is missing or not GeoJSON, or a dict that is not GeoJSON.

    Examples
    --------
    >>> parse_aoi("52.0,55.7,52.1,55.8").bounds
    (52.0, 55.7, 52.1, 55.8)
    >>> parse_aoi("52.1,55.7,52.0,55.8", name="bbox")
    Traceback (most recent call last):
    ...
    changedet.errors.InvalidParameterError: bbox must have minx < maxx and miny < maxy; got [52.1, 55.7, 52.0, 55.8]; give MINX,MINY,MAXX,MAXY with min below max (an area across the antimeridian must be split in two), e.g. '52.0,55.78,52.1,55.83'
    """
    import shapely
    from shapely.geometry import box

    if aoi is None:
        return None
    if isinstance(aoi, shapely.Geometry):
        return aoi
    if isinstance(aoi, str) and aoi.lstrip().startswith("{"):
        try:
            aoi = json.loads(aoi)
        except json.JSONDecodeError as exc:
            raise InvalidParameterError(f"{name} text is not valid GeoJSON ({exc}); pass a GeoJSON polygon in lon/lat") from None
    label = name
    if isinstance(aoi, (str, os.PathLike)) and not (isinstance(aoi, str) and aoi.count(",") == 3 and not os.path.exists(aoi)):
        p = Path(aoi)
        if not os.path.lexists(p):
            raise InvalidParameterError(
                f"{name} {str(aoi)!r} is neither an existing GeoJSON file nor 'minx,miny,maxx,maxy'; give four "
                f"lon/lat numbers, {_EXAMPLE}, or the path of a GeoJSON file"
            )
        from .errors import RasterReadError
        from .io import check_input_path

        label = f"{name} file {str(p)!r}"
        try:
            check_input_path(p, f"{name} file", folder_ok=False)
        except RasterReadError as exc:
            raise InvalidParameterError(f"{exc}, a GeoJSON polygon in lon/lat") from None
        if p.stat().st_size > _MAX_GEOJSON_BYTES:
            raise InvalidParameterError(
                f"{label} is {p.stat().st_size / 2**20:.0f} MiB, too large for an area of interest; simplify it "
                "(ogr2ogr -simplify) or give its bbox"
            )
        try:
            aoi = json.loads(p.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise InvalidParameterError(
                f"{label} is not valid GeoJSON ({str(exc)[:100]}); pass a GeoJSON polygon in lon/lat"
            ) from None
        if not isinstance(aoi, dict):
            raise InvalidParameterError(
                f"{label} holds a JSON {type(aoi).__name__} ({str(aoi)[:40]!r}), not a GeoJSON object; pass a GeoJSON "
                "geometry, Feature or FeatureCollection (a polygon in lon/lat)"
            )
    if isinstance(aoi, str):
        try:
            aoi = [float(v) for v in aoi.split(",")]
        except ValueError:
            raise InvalidParameterError(f"{name} {aoi!r} must be 'minx,miny,maxx,maxy' in lon/lat degrees, {_EXAMPLE}") from None
    if isinstance(aoi, dict):
        return _checked_geojson(_geojson_geometry(aoi, label), aoi, label, lonlat=lonlat)
    as_box = name if name.endswith("bbox") else f"{name} bbox"
    try:
        vals = list(aoi)
    except TypeError:
        raise InvalidParameterError(
            f"{name} must be a bbox (minx,miny,maxx,maxy lon/lat), GeoJSON or a shapely geometry; "
            f"got {type(aoi).__name__} {str(aoi)[:80]!r}"
        ) from None
    if len(vals) != 4:
        raise InvalidParameterError(f"{as_box} needs 4 numbers minx,miny,maxx,maxy; got {len(vals)}: {vals}, {_EXAMPLE}")
    try:
        minx, miny, maxx, maxy = (float(v) for v in vals)
    except (TypeError, ValueError):
        raise InvalidParameterError(f"{as_box} needs 4 numbers minx,miny,maxx,maxy; got {vals}, {_EXAMPLE}") from None
    if not all(math.isfinite(v) for v in (minx, miny, maxx, maxy)):
        raise InvalidParameterError(f"{as_box} needs 4 finite numbers minx,miny,maxx,maxy; got {vals}, {_EXAMPLE}")
    if not (minx < maxx and miny < maxy):
        raise InvalidParameterError(
            f"{as_box} must have minx < maxx and miny < maxy; got {vals}; give MINX,MINY,MAXX,MAXY with min below "
            f"max (an area across the antimeridian must be split in two), {_EXAMPLE}"
        )
    if lonlat and not _in_lonlat_range(minx, miny, maxx, maxy):
        raise InvalidParameterError(
            f"{as_box} must be in lon/lat degrees (WGS84); got {vals}, outside lon -180..180 / lat -90..90; "
            f"give MINX(lon),MINY(lat),MAXX(lon),MAXY(lat), {_EXAMPLE}"
        )
    return box(minx, miny, maxx, maxy)


def _in_lonlat_range(minx: float, miny: float, maxx: float, maxy: float) -> bool:
    """Whether bounds (min below max) lie within lon -180..180 and lat -90..90."""
    return -180 <= minx and maxx <= 180 and -90 <= miny and maxy <= 90


#: An area of interest file larger than this is refused (an area, not a data set).
_MAX_GEOJSON_BYTES = 64 << 20


def _geojson_geometry(obj: dict[str, Any], label: str) -> Any:
    """The shapely geometry of a GeoJSON geometry, Feature or FeatureCollection (their union)."""
    import shapely
    from shapely.geometry import shape

    kind = obj.get("type")
    try:
        if kind == "FeatureCollection":
            features = obj.get("features")
            if not isinstance(features, list):
                raise InvalidParameterError(
                    f"{label} is a FeatureCollection whose 'features' is {type(features).__name__}, not a list; "
                    "give a list of Features with polygons"
                )
            geoms = [shape(f["geometry"]) for f in features if isinstance(f, dict) and f.get("geometry")]
            if not geoms:
                what = f"{label} is a FeatureCollection holding" if " file " in label else f"{label} FeatureCollection holds"
                raise InvalidParameterError(
                    f"{what} no geometry (features without 'geometry' or with null); "
                    f"give features with polygons, or a bbox {_EXAMPLE}"
                )
            return shapely.union_all(geoms)
        if kind == "Feature":
            if not isinstance(obj.get("geometry"), dict):
                raise InvalidParameterError(
                    f"{label} is a Feature without a geometry ({'null' if obj.get('geometry') is None else 'not an object'}); "
                    "give a Feature with a polygon in lon/lat"
                )
            return shape(obj["geometry"])
        return shape(obj)
    except InvalidParameterError:
        raise
    except Exception as exc:  # shapely raises several types for malformed GeoJSON
        raise InvalidParameterError(
            f"{label if ' file ' in label else label + ' dict'} is not a GeoJSON geometry, Feature or FeatureCollection "
            f"(type={kind!r}): {str(exc).splitlines()[0][:80] if str(exc) else type(exc).__name__}; check its type and "
            "coordinates (lon/lat)"
        ) from None


def _checked_geojson(geom: Any, obj: dict[str, Any], label: str, *, lonlat: bool = True) -> Any:
    """Refuse GeoJSON that cannot be an area in lon/lat: an old ``crs`` member naming another CRS,
    projected coordinates (unless ``lonlat`` is False: see :func:`parse_aoi`), an empty or
    degenerate geometry."""

    crs = obj.get("crs")
    if crs is not None:
        named = str(crs.get("properties", {}).get("name", crs)) if isinstance(crs, dict) else str(crs)
        if not any(k in named.upper().replace(":", "") for k in ("CRS84", "EPSG4326")):
            raise InvalidParameterError(
                f"{label} declares crs {named[:60]!r} (an old GeoJSON member); changedet reads RFC 7946 GeoJSON in "
                "lon/lat WGS84: reproject it (ogr2ogr -t_srs EPSG:4326 out.geojson in.geojson)"
            )
    if geom.is_empty:
        raise InvalidParameterError(f"{label} holds an empty geometry; give a polygon in lon/lat, or a bbox {_EXAMPLE}")
    bounds = tuple(float(v) for v in geom.bounds)
    if not all(math.isfinite(v) for v in bounds):
        raise InvalidParameterError(f"{label} has coordinates that are not finite numbers; check its coordinates (lon/lat)")
    minx, miny, maxx, maxy = bounds
    if lonlat and not _in_lonlat_range(minx, miny, maxx, maxy):
        raise InvalidParameterError(
            f"{label} has coordinates outside lon -180..180 / lat -90..90 (bounds {tuple(round(v, 3) for v in bounds)}: "
            "projected coordinates?); RFC 7946 GeoJSON is lon/lat WGS84: reproject it (ogr2ogr -t_srs EPSG:4326)"
        )
    if geom.geom_type in ("Polygon", "MultiPolygon") and not geom.is_valid:
        from shapely.validation import explain_validity

        raise InvalidParameterError(
            f"{label} holds an invalid {geom.geom_type} ({explain_validity(geom)[:80]}; a ring needs at least 4 "
            "positions, the last equal to the first, and must not cross itself); fix it (QGIS: Fix geometries)"
        )
    return geom


@dataclass(frozen=True)
class Area:
    """An area of interest with a surface, in WGS84 lon/lat: its geometry and bounding box.

    Made by :func:`parse_area` from :func:`parse_aoi`'s geometry.

    Examples
    --------
    >>> a = parse_area((52.0, 55.78, 52.1, 55.83))
    >>> a.bbox, a.geometry.geom_type, a.is_box
    ((52.0, 55.78, 52.1, 55.83), 'Polygon', True)
    >>> a.describe()
    'bbox 52.0,55.78,52.1,55.83'
    """

    bbox: tuple[float, float, float, float]
    geometry: Any = field(compare=False, hash=False)  # shapely geometry, lon/lat
    is_box: bool = True

    @property
    def centroid(self) -> tuple[float, float]:
        """Centre of the bounding box, (lon, lat)."""
        minx, miny, maxx, maxy = self.bbox
        return ((minx + maxx) / 2, (miny + maxy) / 2)

    def describe(self) -> str:
        """A short description for messages.

        Returns
        -------
        str
            ``bbox MINX,MINY,MAXX,MAXY`` or ``polygon within bbox MINX,MINY,MAXX,MAXY``
            (degrees rounded to 6 decimals).
        """
        text = ",".join(str(round(v, 6)) for v in self.bbox)
        return f"bbox {text}" if self.is_box else f"polygon within bbox {text}"

    def to_dict(self) -> dict[str, Any]:
        """The area as plain JSON values.

        Returns
        -------
        dict
            ``{"bbox": [minx, miny, maxx, maxy], "geometry": GeoJSON geometry}`` (lon/lat).

        Examples
        --------
        >>> parse_area((52.0, 55.78, 52.1, 55.83)).to_dict()["geometry"]["type"]
        'Polygon'
        """
        from shapely.geometry import mapping

        return {"bbox": list(self.bbox), "geometry": _plain(mapping(self.geometry))}


def _plain(obj: Any) -> Any:
    """GeoJSON from shapely's mapping with lists instead of tuples."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def parse_area(area: Any, *, name: str = "area") -> Area:
    """An :class:`Area` (an area with a surface) from anything :func:`parse_aoi` takes.

    Parameters
    ----------
    area : str, path, sequence of 4 float, dict, shapely geometry or Area
        As for :func:`parse_aoi`; an :class:`Area` is returned as it is.
    name : str
        The parameter's name in error messages.

    Returns
    -------
    Area

    Raises
    ------
    InvalidParameterError
        As :func:`parse_aoi`, and for a point, a line or an empty geometry.

    Examples
    --------
    >>> tri = {"type": "Polygon", "coordinates": [[[52.0, 55.78], [52.1, 55.78], [52.05, 55.83], [52.0, 55.78]]]}
    >>> a = parse_area({"type": "Feature", "geometry": tri, "properties": {}})
    >>> a.bbox, a.is_box
    ((52.0, 55.78, 52.1, 55.83), False)
    """
    if isinstance(area, Area):
        return area
    if area is None:
        raise InvalidParameterError(f"{name} is None; give a bbox {_EXAMPLE} or a GeoJSON polygon in lon/lat")
    from shapely.geometry import box

    geom = parse_aoi(area, name=name)
    if geom.is_empty or geom.area <= 0:
        raise InvalidParameterError(
            f"{name} GeoJSON {geom.geom_type} has no surface (a point or a line); give a polygon or a bbox {_EXAMPLE}"
        )
    bounds = tuple(float(v) for v in geom.bounds)
    minx, miny, maxx, maxy = bounds
    if not _in_lonlat_range(minx, miny, maxx, maxy):
        raise InvalidParameterError(
            f"{name} {bounds} is outside lon -180..180 / lat -90..90; give lon/lat degrees (WGS84, RFC 7946)"
        )
    return Area(bounds, geom, bool(geom.equals(box(*bounds))))  # type: ignore[arg-type]


def utm_crs(lon: float, lat: float) -> CRS:
    """The WGS84 UTM zone CRS holding a lon/lat point.

    Parameters
    ----------
    lon, lat : float
        The point, degrees.

    Returns
    -------
    rasterio.crs.CRS
        EPSG:326zz north of the equator, EPSG:327zz south of it.

    Examples
    --------
    >>> utm_crs(52.05, 55.8).to_epsg(), utm_crs(-70.6, -33.4).to_epsg()
    (32639, 32719)
    """
    zone = min(60, max(1, int(math.floor((lon + 180) / 6)) + 1))
    return CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)


def area_grid(area: Any, *, resolution: float = 10.0, crs: CRS | str | None = None) -> Grid:
    """The grid of an area: its bounding box in UTM (or ``crs``), snapped outward to ``resolution``.

    Parameters
    ----------
    area : anything :func:`parse_area` takes
        The area, WGS84 lon/lat.
    resolution : float
        Pixel size in the units of the CRS (metres for UTM).
    crs : CRS or str, optional
        Default the UTM zone of the area's centre.

    Returns
    -------
    Grid
        North-up grid whose edges are multiples of ``resolution``.

    Examples
    --------
    >>> g = area_grid((52.0, 55.78, 52.1, 55.83), resolution=10)
    >>> g.crs.to_epsg(), g.res, g.shape
    (32639, (10.0, 10.0), (567, 636))
    """
    from affine import Affine
    from rasterio.warp import transform_bounds

    a = parse_area(area)
    if not isinstance(resolution, (int, float)) or not resolution > 0 or not math.isfinite(resolution):
        raise InvalidParameterError(f"resolution must be a positive number of metres, got {resolution!r}; e.g. 10")
    target = CRS.from_user_input(crs) if crs is not None else utm_crs(*a.centroid)
    left, bottom, right, top = transform_bounds(CRS.from_epsg(4326), target, *a.bbox, densify_pts=21)
    r = float(resolution)
    left, bottom = math.floor(left / r) * r, math.floor(bottom / r) * r
    right, top = math.ceil(right / r) * r, math.ceil(top / r) * r
    shape = (max(1, int(round((top - bottom) / r))), max(1, int(round((right - left) / r))))
    return Grid(shape, Affine(r, 0, left, 0, -r, top), target)


def aoi_in_grid_crs(aoi_lonlat: Any, grid: Grid, *, source: str | None = None) -> Any:
    """The AOI (lon/lat) in the grid's CRS, densified so long edges follow the projection.

    Parameters
    ----------
    aoi_lonlat : shapely geometry
        The area in WGS84 lon/lat, from :func:`parse_aoi`.
    grid : Grid
        Its CRS is the target; a grid without CRS (pixel coordinates) keeps the geometry as it is.
    source : str, optional
        The area as the user gave it (text or a path), named in the error.

    Returns
    -------
    shapely geometry
        The area in the grid's CRS.

    Examples
    --------
    >>> from affine import Affine
    >>> g = Grid((10, 10), Affine(10, 0, 565000, 0, -10, 6186000), CRS.from_epsg(32639))
    >>> round(aoi_in_grid_crs(parse_aoi("52.0,55.78,52.1,55.83"), g).bounds[0])
    562640
    """
    import shapely
    from pyproj import Transformer

    if grid.crs is None:
        return aoi_lonlat  # pixel coordinates for unreferenced images
    minx, miny, maxx, maxy = (float(v) for v in aoi_lonlat.bounds)
    if not _in_lonlat_range(minx, miny, maxx, maxy):
        given = f"{source!r} " if source else ""
        raise InvalidParameterError(
            f"aoi {given}(bounds {tuple(round(v, 3) for v in (minx, miny, maxx, maxy))}) is outside lon -180..180 / "
            f"lat -90..90 (projected coordinates?): for georeferenced images give it in lon/lat degrees (WGS84), "
            f"{_EXAMPLE}, or a GeoJSON polygon in lon/lat (pixel coordinates are for images without georeferencing)"
        )
    tr = Transformer.from_crs(4326, grid.crs.to_wkt(), always_xy=True)
    return shapely.transform(shapely.segmentize(aoi_lonlat, max(aoi_lonlat.length / 400, 1e-9)),
                             lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))


def aoi_on_grid(aoi_lonlat: Any, grid: Grid, *, source: str | None = None) -> tuple[Grid, np.ndarray]:
    """The sub-grid covering the AOI and a (rows, cols) bool mask of pixels inside it.

    Parameters
    ----------
    aoi_lonlat : shapely geometry
        The area in WGS84 lon/lat, from :func:`parse_aoi`.
    grid : Grid
        The analysis grid.
    source : str, optional
        The area as the user gave it (text or a path), named in errors.

    Returns
    -------
    sub : Grid
        The part of ``grid`` that covers the area (same pixels, a window of them).
    inside : (rows, cols) ndarray of bool
        Pixels of ``sub`` whose centre is inside the area.

    Raises
    ------
    NoOverlapError
        The area misses the grid, or covers no whole pixel of it.

    Examples
    --------
    >>> from affine import Affine
    >>> g = area_grid((52.0, 55.78, 52.1, 55.83), resolution=100)
    >>> sub, inside = aoi_on_grid(parse_aoi("52.02,55.79,52.03,55.80"), g)
    >>> sub.shape, bool(inside.all())
    ((11, 6), True)
    """
    from rasterio import features

    geom = aoi_in_grid_crs(aoi_lonlat, grid, source=source)
    if grid.crs is None:
        return _pixel_window(geom, grid)
    minx, miny, maxx, maxy = geom.bounds
    try:
        sub = _align.overlap_grid(grid, _grid_from_bounds(minx, miny, maxx, maxy, grid))
    except NoOverlapError:
        raise NoOverlapError(
            f"the area of interest {tuple(round(v, 6) for v in aoi_lonlat.bounds)} does not overlap the images "
            f"({describe_grid(grid)}); check the AOI is in lon/lat degrees and covers the site"
        ) from None
    inside = features.geometry_mask([geom], out_shape=sub.shape, transform=sub.transform, invert=True, all_touched=False)
    if not inside.any():
        raise NoOverlapError(f"the area of interest covers no whole pixel of the images ({describe_grid(grid)})")
    return sub, inside


def _pixel_window(geom: Any, grid: Grid) -> tuple[Grid, np.ndarray]:
    """:func:`aoi_on_grid` on a grid without CRS: ``geom`` in its pixel coordinates (x = column,
    y = row, as ``changes.geojson`` writes them for such images)."""
    from affine import Affine
    from rasterio import features

    inv = ~grid.transform
    corners = [inv * (x, y) for x in geom.bounds[0::2] for y in geom.bounds[1::2]]
    c0 = max(0, math.floor(min(c for c, _ in corners)))
    c1 = min(grid.width, math.ceil(max(c for c, _ in corners)))
    r0 = max(0, math.floor(min(r for _, r in corners)))
    r1 = min(grid.height, math.ceil(max(r for _, r in corners)))
    where = (f"the area of interest {tuple(round(v, 3) for v in geom.bounds)} (pixel coordinates: the images have no "
             f"georeferencing)")
    if c1 <= c0 or r1 <= r0:
        raise NoOverlapError(
            f"{where} does not overlap the images ({describe_grid(grid)}, x 0..{grid.width}, y 0..{grid.height}); "
            "give it in pixel coordinates, x = column and y = row"
        )
    sub = Grid((r1 - r0, c1 - c0), grid.transform * Affine.translation(c0, r0), None)
    inside = features.geometry_mask([geom], out_shape=sub.shape, transform=sub.transform, invert=True, all_touched=False)
    if not inside.any():
        raise NoOverlapError(f"{where} covers no whole pixel of the images ({describe_grid(grid)})")
    return sub, inside


def _grid_from_bounds(minx: float, miny: float, maxx: float, maxy: float, like: Grid) -> Grid:
    from affine import Affine

    rx, ry = like.res
    cols = max(1, math.ceil((maxx - minx) / rx))
    rows = max(1, math.ceil((maxy - miny) / ry))
    return Grid((rows, cols), Affine(rx, 0, minx, 0, -ry, maxy), like.crs)
