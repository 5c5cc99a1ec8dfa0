"""Areas of interest: one parser for every area the package takes, and its place on a grid.

An area is given in WGS84 lon/lat as ``"minx,miny,maxx,maxy"``, a 4-sequence, GeoJSON
(a dict or a file: geometry, Feature or FeatureCollection) or a shapely geometry;
:func:`parse_aoi` turns each into one shapely geometry.  :func:`aoi_on_grid` gives the
sub-grid that covers it and the pixels inside it.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from . import align as _align
from .errors import InvalidParameterError, NoOverlapError
from .raster import Grid, describe_grid

__all__ = ["parse_aoi", "aoi_in_grid_crs", "aoi_on_grid"]


def parse_aoi(aoi: Any) -> Any:
    """An area of interest as a shapely geometry in WGS84 lon/lat.

    Accepts ``"minx,miny,maxx,maxy"``, a 4-sequence, a GeoJSON dict (geometry,
    Feature or FeatureCollection), a path to a GeoJSON file, or a shapely geometry.

    Examples
    --------
    >>> parse_aoi("52.0,55.7,52.1,55.8").bounds
    (52.0, 55.7, 52.1, 55.8)
    """
    import shapely
    from shapely.geometry import box, shape

    if aoi is None:
        return None
    if isinstance(aoi, shapely.Geometry):
        return aoi
    if isinstance(aoi, (str, os.PathLike)) and not (isinstance(aoi, str) and aoi.count(",") == 3 and not os.path.exists(aoi)):
        p = Path(aoi)
        if not p.exists():
            raise InvalidParameterError(f"aoi {str(aoi)!r} is neither an existing GeoJSON file nor 'minx,miny,maxx,maxy'")
        try:
            aoi = json.loads(p.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidParameterError(f"aoi file {str(p)!r} is not valid GeoJSON ({exc}); pass a GeoJSON polygon in lon/lat") from None
    if isinstance(aoi, str):
        try:
            aoi = [float(v) for v in aoi.split(",")]
        except ValueError:
            raise InvalidParameterError(f"aoi {aoi!r} must be 'minx,miny,maxx,maxy' in lon/lat degrees") from None
    if isinstance(aoi, dict):
        kind = aoi.get("type")
        if kind == "FeatureCollection":
            geoms = [shape(f["geometry"]) for f in aoi.get("features", []) if f.get("geometry")]
            if not geoms:
                raise InvalidParameterError("aoi FeatureCollection holds no geometry")
            return shapely.union_all(geoms)
        if kind == "Feature":
            return shape(aoi["geometry"])
        try:
            return shape(aoi)
        except Exception:  # shapely raises several types for malformed GeoJSON
            raise InvalidParameterError(f"aoi dict is not a GeoJSON geometry, Feature or FeatureCollection (type={kind!r})") from None
    vals = list(aoi)
    if len(vals) != 4:
        raise InvalidParameterError(f"aoi bbox needs 4 numbers minx,miny,maxx,maxy; got {len(vals)}")
    minx, miny, maxx, maxy = (float(v) for v in vals)
    if not (minx < maxx and miny < maxy):
        raise InvalidParameterError(f"aoi bbox must have minx < maxx and miny < maxy; got {vals}")
    if not (-180 <= minx <= 180 and -180 <= maxx <= 180 and -90 <= miny <= 90 and -90 <= maxy <= 90):
        raise InvalidParameterError(f"aoi bbox must be in lon/lat degrees (WGS84); got {vals}")
    return box(minx, miny, maxx, maxy)


def aoi_in_grid_crs(aoi_lonlat: Any, grid: Grid) -> Any:
    """The AOI (lon/lat) in the grid's CRS, densified so long edges follow the projection."""
    import shapely
    from pyproj import Transformer

    if grid.crs is None:
        return aoi_lonlat  # pixel coordinates for unreferenced images
    tr = Transformer.from_crs(4326, grid.crs.to_wkt(), always_xy=True)
    return shapely.transform(shapely.segmentize(aoi_lonlat, max(aoi_lonlat.length / 400, 1e-9)),
                             lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))


def aoi_on_grid(aoi_lonlat: Any, grid: Grid) -> tuple[Grid, np.ndarray]:
    """The sub-grid covering the AOI and a (rows, cols) bool mask of pixels inside it."""
    from rasterio import features

    geom = aoi_in_grid_crs(aoi_lonlat, grid)
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


def _grid_from_bounds(minx: float, miny: float, maxx: float, maxy: float, like: Grid) -> Grid:
    from affine import Affine

    rx, ry = like.res
    cols = max(1, math.ceil((maxx - minx) / rx))
    rows = max(1, math.ceil((maxy - miny) / ry))
    return Grid((rows, cols), Affine(rx, 0, minx, 0, -ry, maxy), like.crs)
