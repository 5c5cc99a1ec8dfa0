"""From a change mask to cleaned objects and polygons with areas and from-to classes.

``clean_mask`` applies the morphological clean-up and minimum mapping unit;
``vectorize`` turns connected changed areas into :class:`ChangePolygons` with
``area_m2``, ``area_ha``, centroid lon/lat, mean score, bounding box and a
``change_class`` (new construction, vegetation loss, demolition, water change, ...).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import shapely
from rasterio import features
from scipy import ndimage

from .errors import InvalidParameterError
from .io import paused_gc
from .raster import GeoRaster, Grid

__all__ = [
    "CHANGE_CLASSES",
    "MIN_CLASS_PX",
    "PolygonPart",
    "vectorize_parts",
    "assemble_polygons",
    "ChangePolygons",
    "clean_mask",
    "label_regions",
    "classify_change",
    "vectorize",
]

#: From-to classes a polygon may carry, with what each means.
CHANGE_CLASSES: dict[str, str] = {
    "new_construction": "vegetation or bare soil to built-up or bright roof (NDVI down, built-up or brightness up)",
    "vegetation_loss": "vegetation cleared to soil without a built-up signal (NDVI down)",
    "demolition": ("built-up or bright surface removed (built-up or brightness down, NDVI not up; from red, "
                   "green and blue alone, not darker than the after image's darkest tenth: a new shadow)"),
    "water_change": "water appeared or disappeared (NDWI change)",
    "vegetation_gain": ("vegetation grew on formerly bare or built ground (NDVI up, and greener in red, green "
                        "and blue where those are known; from red, green and blue alone: greener, and now as "
                        "green as the after image's vegetation)"),
    "seasonal": ("a whole parcel changed: a field sown, harvested, or greening or browning with the season "
                 "(vegetation gained or lost, or a change the indices do not name, on an area whose outline "
                 "mostly follows edges the before image already had; see SEASONAL_OUTLINE_SHARE), or "
                 "vegetation lost across an area whose outline follows no edge of either date (part of "
                 "a field browning, where the threshold fell; see DIFFUSE_OUTLINE_SHARE)"),
    "other": "changed, but the indices do not say how (or the area is under MIN_CLASS_PX pixels)",
}

#: The per-area share of the outline on edges of the before image (see
#: :func:`changedet.window.old_edges`), a layer and a property of every changed area.
OUTLINE_KEY = "outline_on_old_edges"

#: An area whose vegetation changed (or whose change the indices do not name) is ``seasonal``
#: when at least this share of its outline lies on edges the before image already had: the whole
#: parcel changed, as fields do with the seasons, where a construction site is cut into what was
#: there.  New construction, demolition and water are never seasonal.  Measured on the areas of
#: every set (``benchmarks/classes.py``, ``benchmarks/quality.py``): see :data:`SEASONAL_MIN_PX`.
SEASONAL_OUTLINE_SHARE = 0.6

#: ... and has at least this many pixels: the outline share of a smaller area rests on few pixels
#: (at 10 m mixed ones).  On OSCD the seasonal areas of 100 px or more were 1-6 % true change, the
#: smaller ones 19-30 %; with this floor the pooled F1 at an outline share of 0.5 / 0.6 / 0.7:
#: OSCD 0.285 / 0.281 / 0.269 (0.262 without the class; mean 0.301 / 0.306 / 0.303 against
#: 0.303), synthetic 0.797 / 0.792 / 0.790 (0.781), the bundled pairs' kind 0.935 (0.926),
#: LEVIR 0.374 / 0.374 / 0.371 (0.371), DSIFN 0.486 / 0.486 / 0.487 (0.487); floors of 50 and
#: 200 px gave OSCD 0.276 and 0.278.
SEASONAL_MIN_PX = 100

#: The per-area share of the outline on edges of either date: the before image's or the (registered)
#: after image's (see :func:`changedet.window.outline_edge_layers`), a layer and a property of every
#: changed area.
OUTLINE_EDGES_KEY = "outline_on_edges"

#: An area (of :data:`DIFFUSE_MIN_PX` or more) that lost vegetation is ``seasonal`` as well when
#: less than this share of its outline lies on an edge of either date.  A plot cleared for building
#: has a sharp outline in the after image (bare ground against what was left standing); a field
#: that browned or was harvested in part is cut out of a gradient of vegetation by the threshold,
#: where neither image has an edge.  Measured on the vegetation-loss areas of 100 px or more
#: (``benchmarks/quality.py``, ``benchmarks/classes.py``): on OSCD 11 of saclay_e's 24 such areas
#: (fields, none true change) fall under 0.5, the other cities have none; on the synthetic
#: generators (seeds 0-13) and the bundled pairs' kind, cleared plots all true change, three of
#: 100-290 px at 10 m fall under it (0.23-0.41), the others lie at 0.57 or more.  Other kinds of
#: area are not judged by it: on DSIFN large true areas of construction (class ``other``) lie at
#: 0.2-0.55.
DIFFUSE_OUTLINE_SHARE = 0.5

#: ... when it has at least this many pixels: a partly browned field is large, and the outline
#: share of a small area rests on few pixels.  With 100 px the three small cleared plots above went
#: too (OSCD pooled F1 0.308 against 0.303 with this floor).
DIFFUSE_MIN_PX = 300

#: An area of fewer pixels than this is classed ``other``: its mean index changes are
#: those of mixed pixels at its edge (a 3 x 3 px area has no pixel that is not at its
#: edge) and do not say what it became.  On the seven OSCD cities in the project's
#: development data, the areas under 12 px called new construction were 11 % true
#: change against 50 % for the rest; each of six cities gained from it, none lost.
MIN_CLASS_PX = 12


def _disk(radius: int) -> np.ndarray:
    r = int(radius)
    y, x = np.ogrid[-r : r + 1, -r : r + 1]
    return (x * x + y * y) <= r * r


def label_regions(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected labels of a boolean mask: ``(labels int32, count)``.

    Parameters
    ----------
    mask : (rows, cols) ndarray of bool
        The pixels to label (anything ``bool`` converts).

    Returns
    -------
    labels : (rows, cols) ndarray of int32
        0 outside the mask, else 1..count, numbered in row-major order of each area's
        first pixel (as ``scipy.ndimage.label`` numbers them).
    count : int
        The number of connected areas.

    Examples
    --------
    >>> m = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 0], [1, 1, 0]], bool)
    >>> label_regions(m)[1]
    2
    """
    from . import _kernels

    m = np.ascontiguousarray(mask, dtype=bool)
    if m.ndim != 2:
        raise InvalidParameterError(f"label_regions needs a (rows, cols) mask, got shape {m.shape}")
    labels, n = _kernels.label8(m, np.full(m.shape, np.nan, np.float32))[:2]  # numbered as scipy.ndimage.label
    return labels, int(n)


def _remove_small(mask: np.ndarray, min_px: int) -> np.ndarray:
    if min_px <= 1:
        return mask
    labels, n = label_regions(mask)
    if n == 0:
        return mask
    sizes = np.bincount(labels.ravel())
    keep = sizes >= min_px
    keep[0] = False
    return keep[labels]


def clean_mask(
    mask: np.ndarray,
    *,
    opening_px: int = 1,
    min_area_px: int = 0,
    fill_holes_px: int = 0,
    valid: np.ndarray | None = None,
) -> np.ndarray:
    """Morphological clean-up of a change mask.

    Parameters
    ----------
    mask : (rows, cols) ndarray of bool
    opening_px : int
        Radius of the disk used for a binary opening (0 = none): removes specks and
        thin slivers along edges, the usual residue of registration and noise.
    min_area_px : int
        Minimum mapping unit: connected areas (8-connected) smaller than this go.
    fill_holes_px : int
        Holes (unchanged pixels enclosed by change) up to this size are filled.
    valid : (rows, cols) ndarray of bool, optional
        Pixels outside ``valid`` are never set.

    Returns
    -------
    (rows, cols) ndarray of bool

    Examples
    --------
    >>> m = np.zeros((10, 10), bool); m[2:8, 2:8] = True; m[0, 9] = True; m[4, 4] = False
    >>> out = clean_mask(m, opening_px=1, fill_holes_px=4)
    >>> int(out.sum()), bool(out[0, 9]), bool(out[4, 4])
    (30, False, True)
    """
    m = np.asarray(mask, dtype=bool)
    if m.ndim != 2:
        raise InvalidParameterError(f"clean_mask needs a (rows, cols) mask, got shape {m.shape}")
    for name, v in (("opening_px", opening_px), ("min_area_px", min_area_px), ("fill_holes_px", fill_holes_px)):
        if v < 0:
            raise InvalidParameterError(f"{name} must be >= 0, got {v}")
    out = m
    if opening_px > 0:
        out = ndimage.binary_opening(out, structure=_disk(opening_px))
    if fill_holes_px > 0:
        holes = ~out
        labels, n = ndimage.label(holes)  # 4-connected background
        if n:
            sizes = np.bincount(labels.ravel())
            # a hole touching the border is background, not a hole
            border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
            small = sizes <= fill_holes_px
            small[border] = False
            small[0] = False
            out = out | small[labels]
    out = _remove_small(out, int(min_area_px))
    if valid is not None:
        out = out & np.asarray(valid, dtype=bool)
    return out


def classify_change(deltas: Mapping[str, float], *, n_px: int | None = None) -> str:
    """From-to class of one changed area from the mean index changes inside it, and the share
    of its outline on edges of the before image (``outline_on_old_edges``, :data:`OUTLINE_KEY`):
    vegetation gained or lost, or a change the indices do not name, on an area whose outline
    mostly follows old edges (:data:`SEASONAL_OUTLINE_SHARE`) is ``seasonal``, and so is vegetation
    lost on an area whose outline mostly follows no edge of either date (``outline_on_edges``,
    :data:`OUTLINE_EDGES_KEY`, under :data:`DIFFUSE_OUTLINE_SHARE`); the first when the area has
    at least :data:`SEASONAL_MIN_PX` pixels, the second :data:`DIFFUSE_MIN_PX`, if ``n_px`` is given.

    ``deltas`` may hold ``d_ndvi``, ``d_ndbi``, ``d_brightness`` (relative, after/before - 1),
    ``d_ndwi``, ``d_greenness`` (excess-green for RGB images), ``after_greenness`` and
    ``after_brightness`` (the after image's excess green and brightness on its own scale: 0
    its least green or darkest tenth, 1 its greenest or brightest); missing keys are treated
    as unknown.  See :data:`CHANGE_CLASSES`.

    Parameters
    ----------
    deltas : mapping of str to float
        Mean index changes of the area; None and non-finite values count as missing.
    n_px : int, optional
        The area's size in pixels.

    Returns
    -------
    str
        A key of :data:`CHANGE_CLASSES`.

    Examples
    --------
    >>> classify_change({"d_ndvi": -0.35, "d_ndbi": 0.12, "d_brightness": 0.3})
    'new_construction'
    >>> classify_change({"d_ndvi": -0.3, "d_ndbi": -0.05, "d_brightness": -0.05})
    'vegetation_loss'
    >>> classify_change({"d_ndvi": -0.45, "d_ndbi": 0.25, "d_brightness": -0.05})  # a harvested field
    'vegetation_loss'
    >>> classify_change({"d_ndwi": 0.4, "d_ndvi": -0.2})
    'water_change'
    >>> classify_change({"d_ndvi": 0.28, "d_greenness": 0.11, "d_ndbi": -0.33, "d_brightness": -0.02})
    'vegetation_gain'
    >>> classify_change({"d_ndvi": 0.15, "d_greenness": 0.0, "d_ndbi": -0.04, "d_brightness": -0.25})  # no greener
    'other'
    >>> classify_change({"d_greenness": 0.08, "after_greenness": 0.2, "d_brightness": -0.2})  # RGB: greener, grey
    'other'
    >>> classify_change({"d_greenness": 0.08, "after_greenness": 0.9, "d_brightness": -0.2})  # RGB: a new lawn
    'vegetation_gain'
    >>> classify_change({"d_greenness": -0.04, "d_brightness": -0.5, "after_brightness": 0.3})  # RGB: darker
    'demolition'
    >>> classify_change({"d_greenness": -0.04, "d_brightness": -0.5, "after_brightness": -0.2})  # a new shadow
    'other'
    >>> classify_change({})
    'other'
    >>> classify_change({"d_ndvi": -0.3, "d_ndbi": -0.05, "d_brightness": -0.05, "outline_on_old_edges": 0.8})
    'seasonal'
    >>> classify_change({"d_ndvi": -0.35, "d_ndbi": 0.12, "d_brightness": 0.3, "outline_on_old_edges": 0.8})
    'new_construction'
    >>> classify_change({"d_ndvi": -0.3, "d_ndbi": -0.05, "d_brightness": -0.05, "outline_on_old_edges": 0.8}, n_px=40)
    'vegetation_loss'
    >>> classify_change({"d_ndvi": -0.3, "d_ndbi": -0.05, "d_brightness": -0.05, "outline_on_old_edges": 0.1,
    ...                  "outline_on_edges": 0.2})  # browned in part: no edge where it was cut
    'seasonal'
    >>> classify_change({"d_ndvi": -0.3, "d_ndbi": -0.05, "d_brightness": -0.05, "outline_on_old_edges": 0.1,
    ...                  "outline_on_edges": 0.8})  # cleared: a sharp outline in the after image
    'vegetation_loss'
    """
    cls = _from_to_class(deltas)
    if cls in ("vegetation_gain", "vegetation_loss", "other") and (n_px is None or n_px >= SEASONAL_MIN_PX):
        share = _finite(deltas.get(OUTLINE_KEY))
        if share is not None and share >= SEASONAL_OUTLINE_SHARE:
            return "seasonal"
        on_edges = _finite(deltas.get(OUTLINE_EDGES_KEY))
        if (cls == "vegetation_loss" and on_edges is not None and on_edges < DIFFUSE_OUTLINE_SHARE
                and (n_px is None or n_px >= DIFFUSE_MIN_PX)):
            return "seasonal"
    return cls


def _finite(v: Any) -> float | None:
    """``v`` as a float; None when it is None or not finite."""
    return None if v is None or not math.isfinite(float(v)) else float(v)


def _from_to_class(deltas: Mapping[str, float]) -> str:
    """:func:`classify_change` from the index changes alone."""

    def get(key: str) -> float | None:
        return _finite(deltas.get(key))

    d_ndvi, d_ndbi, d_bright, d_ndwi, d_green, green_after, bright_after = (
        get("d_ndvi"), get("d_ndbi"), get("d_brightness"), get("d_ndwi"), get("d_greenness"), get("after_greenness"),
        get("after_brightness")
    )
    veg_down = (d_ndvi is not None and d_ndvi < -0.08) or (d_ndvi is None and d_green is not None and d_green < -0.05)
    veg_up = (d_ndvi is not None and d_ndvi > 0.08) or (d_ndvi is None and d_green is not None and d_green > 0.05)
    # vegetation that grew is greener in red, green and blue too, or reflects less swir against
    # nir (NDBI well down): NDVI up alone, the area no greener, is bare ground or a surface that
    # changed otherwise (on OSCD a third of the "vegetation gain" area was construction sites);
    # such an area is not named vegetation, nor demolition for its darkening
    unconfirmed_veg = (veg_up and d_ndvi is not None and d_green is not None and d_green <= 0.01
                       and (d_ndbi is None or d_ndbi > -0.1))
    # from red, green and blue alone, greener than before is vegetation only when the area now
    # looks like the after image's vegetation (``after_greenness``: 0 its least green tenth, 1 its
    # greenest); a car park whose cars moved is greener on average, and grey
    if veg_up and d_ndvi is None and green_after is not None and green_after < 0.5:
        unconfirmed_veg = True
    if unconfirmed_veg:
        veg_up = False
    # NDBI rises as much over bare soil (a harvested field) as over a new roof or paving, so
    # where the brightness is known the built-up signal is a brighter surface; NDBI decides
    # only without it (on OSCD, NDBI alone put 220 ha of harvested fields into new construction).
    # Built surfaces reflect swir at least as much as nir: a brighter surface whose NDBI
    # falls (drying soil, sun and haze) is not counted as built
    if d_bright is not None:
        built_up = d_bright > 0.10 and (d_ndbi is None or d_ndbi > -0.03)
        built_down = d_bright < -0.10
    else:
        built_up = d_ndbi is not None and d_ndbi > 0.03
        built_down = d_ndbi is not None and d_ndbi < -0.03
    # McFeeters NDWI also rises when NIR falls (vegetation cleared); new water darkens, a roof brightens
    # water is dark: where the brightness is known, water appearing darkens the surface and
    # water leaving brightens it (vegetation cleared to soil raises NDWI as much, at an unchanged brightness)
    water = d_ndwi is not None and abs(d_ndwi) > 0.25 and (
        d_bright is None or (d_bright < -0.10 if d_ndwi > 0 else d_bright > 0.10))
    if water and (d_ndbi is None or abs(d_ndbi) < abs(d_ndwi)):
        return "water_change"
    if veg_down and built_up:
        return "new_construction"
    if veg_down:
        return "vegetation_loss"
    if built_up and not veg_up:
        return "new_construction"
    # from red, green and blue alone, an area that darkened to below the after image's darkest
    # tenth is a new shadow (of a new building beside it), not a roof removed: what a demolition
    # leaves (soil, rubble, a slab) is not among the darkest things of an image
    shadow = d_ndvi is None and bright_after is not None and bright_after < 0.0
    if built_down and not veg_up and not unconfirmed_veg and not shadow:
        return "demolition"
    if veg_up:
        return "vegetation_gain"
    return "other"


@dataclass(frozen=True, eq=False)
class ChangePolygons:
    """Changed areas as polygons with their attributes.

    Attributes
    ----------
    geometries : tuple of shapely Polygon/MultiPolygon
        In the analysis grid's CRS (pixel coordinates when ``crs`` is None).
    properties : tuple of dict
        One per geometry: ``id``, ``area_m2``, ``area_ha``, ``area_px``, ``mean_score``,
        ``max_score``, ``centroid_lon``, ``centroid_lat``, ``bbox`` (lon/lat),
        ``change_class`` and the mean index changes inside.
    crs : rasterio CRS or None
    """

    geometries: tuple[Any, ...]
    properties: tuple[dict[str, Any], ...]
    crs: Any = None
    areas_in_pixels: bool = field(default=False)

    def __len__(self) -> int:
        return len(self.geometries)

    @property
    def total_area_m2(self) -> float | None:
        if self.areas_in_pixels:
            return None
        return float(sum(p["area_m2"] for p in self.properties))

    @property
    def total_area_px(self) -> int:
        return int(sum(p["area_px"] for p in self.properties))

    def class_counts(self) -> dict[str, int]:
        """Number of polygons per ``change_class``.

        Returns
        -------
        dict of str to int
            Class to count, most frequent first; polygons without a class count as
            ``other``.
        """
        counts: dict[str, int] = {}
        for p in self.properties:
            counts[p.get("change_class", "other")] = counts.get(p.get("change_class", "other"), 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: -kv[1]))

    def to_records(self) -> list[dict[str, Any]]:
        """Properties as a list of flat dicts (``pandas.DataFrame(polygons.to_records())``).

        Returns
        -------
        list of dict
            One per polygon: its properties, with ``bbox`` split into ``bbox_minx``,
            ``bbox_miny``, ``bbox_maxx`` and ``bbox_maxy``.
        """
        out = []
        for p in self.properties:
            rec = {k: v for k, v in p.items() if k != "bbox"}
            if p.get("bbox") is not None:
                rec.update(dict(zip(("bbox_minx", "bbox_miny", "bbox_maxx", "bbox_maxy"), p["bbox"])))
            out.append(rec)
        return out

    def to_wgs84(self) -> tuple[Any, ...]:
        """Geometries in lon/lat (EPSG:4326); unchanged for pixel grids.

        Returns
        -------
        tuple of shapely Polygon/MultiPolygon
            One per polygon, in order; :attr:`geometries` itself when ``crs`` is None or
            already WGS84.
        """
        if self.crs is None or not self.geometries:
            return self.geometries
        from pyproj import CRS as PCRS
        from pyproj import Transformer

        src = PCRS.from_user_input(self.crs.to_wkt() if hasattr(self.crs, "to_wkt") else self.crs)
        if src.equals(PCRS.from_epsg(4326), ignore_axis_order=True):
            return self.geometries
        tr = Transformer.from_crs(src, 4326, always_xy=True)
        arr = np.array(list(self.geometries), dtype=object)
        return tuple(shapely.transform(arr, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1]))))

    @paused_gc()
    def to_geojson(self, *, precision: int = 7) -> dict[str, Any]:
        """RFC 7946 FeatureCollection in WGS84 lon/lat (pixel coordinates for pixel grids).

        Every geometry is a MultiPolygon (a polygon is one part), so the layer has one
        geometry type; exterior rings are counter-clockwise, coordinates rounded to
        ``precision`` decimals.

        Parameters
        ----------
        precision : int
            Decimals kept in the coordinates.

        Returns
        -------
        dict
            ``{"type": "FeatureCollection", "features": [...]}``, each feature's ``id`` that
            of its properties, which are JSON-ready (NaN as None, floats to 6 decimals);
            pixel grids add a ``"changedet:coordinates"`` note.
        """
        fc: dict[str, Any] = {"type": "FeatureCollection", "features": self._features(0, len(self), precision)}
        fc.update(self._geojson_members())
        return fc

    @paused_gc()
    def write_geojson(self, path: Any, *, precision: int = 7, chunk: int = 2000) -> Any:
        """Write :meth:`to_geojson` to ``path`` (the same text as ``io.write_geojson(self.to_geojson(), path)``).

        Features are made and written ``chunk`` at a time, so a scene of hundreds of
        thousands of polygons never holds them all as GeoJSON objects (about 3 KB each).

        Parameters
        ----------
        path : str or path-like
            Destination, written atomically.
        precision : int
            Decimals kept in the coordinates.
        chunk : int
            Features made and written at a time (at least 1).

        Returns
        -------
        pathlib.Path
            The path written.

        Examples
        --------
        >>> import tempfile, json
        >>> from shapely.geometry import box
        >>> polys = ChangePolygons((box(0, 0, 2, 1),), ({"id": 1, "area_px": 2},))
        >>> p = polys.write_geojson(tempfile.mkdtemp() + "/c.geojson")
        >>> json.loads(p.read_text())["features"][0]["properties"]
        {'id': 1, 'area_px': 2}
        """
        from .io import write_geojson_chunks

        if chunk < 1:
            raise InvalidParameterError(f"chunk must be a positive number of features, got {chunk}")
        chunks = (self._features(i, i + chunk, precision) for i in range(0, len(self), chunk))
        return write_geojson_chunks(chunks, path, members=self._geojson_members())

    def _geojson_members(self) -> dict[str, Any]:
        if self.crs is None:
            return {"changedet:coordinates": "pixel (x = column, y = row); the images have no georeferencing"}
        return {}

    def _features(self, start: int, stop: int, precision: int) -> list[dict[str, Any]]:
        """GeoJSON features of polygons ``start:stop`` (every step is per geometry, so chunks equal the whole)."""
        part = ChangePolygons(self.geometries[start:stop], self.properties[start:stop], self.crs, self.areas_in_pixels)
        arr = np.array(list(part.to_wgs84()), dtype=object)
        arr = shapely.orient_polygons(shapely.set_precision(arr, 10.0**-precision), exterior_cw=False)
        return [{"type": "Feature", "id": p.get("id"), "geometry": g, "properties": _jsonable(p)}
                for g, p in zip(_geojson_geometries(arr), part.properties)]


def _geojson_geometries(geoms: np.ndarray) -> list[Any]:
    """Each (Multi)Polygon as a GeoJSON MultiPolygon, from one coordinate array per type.

    One geometry type in a layer (as the GeoPackage): a polygon is a MultiPolygon of one
    part, so ``pyogrio.read_info`` and QGIS see MultiPolygon, not Unknown.  The same JSON
    as ``shapely.geometry.mapping`` of the MultiPolygon (lists where it has tuples); other
    types and empty geometries go through ``mapping``.  A per-geometry mapping walks every
    vertex in Python.
    """
    out: list[Any] = [None] * len(geoms)
    if not len(geoms):
        return out
    types = shapely.get_type_id(geoms)
    empty = shapely.is_empty(geoms)
    for type_id, name in ((shapely.GeometryType.POLYGON, "Polygon"), (shapely.GeometryType.MULTIPOLYGON, "MultiPolygon")):
        idx = np.flatnonzero((types == type_id) & ~empty)
        if not idx.size:
            continue
        _, coords, offsets = shapely.to_ragged_array(geoms[idx])
        xy = coords.tolist()
        ring_off = offsets[0].tolist()
        rings = [xy[a:b] for a, b in zip(ring_off[:-1], ring_off[1:])]
        poly_off = offsets[1].tolist()
        polys = [rings[a:b] for a, b in zip(poly_off[:-1], poly_off[1:])]
        if name == "Polygon":
            for k, i in enumerate(idx.tolist()):
                out[i] = {"type": "MultiPolygon", "coordinates": [polys[k]]}
        else:
            part_off = offsets[2].tolist()
            for k, i in enumerate(idx.tolist()):
                out[i] = {"type": name, "coordinates": polys[part_off[k] : part_off[k + 1]]}
    for i in np.flatnonzero([o is None for o in out]).tolist():
        g = geoms[i]
        if g.geom_type == "Polygon":  # an empty one
            g = shapely.MultiPolygon()
        out[i] = shapely.geometry.mapping(g)
    return out


def _jsonable(p: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in p.items():
        t = type(v)  # the common exact types first: this runs for every property of every polygon
        if t is float:
            out[k] = round(v, 6) if math.isfinite(v) else None
        elif t is int or t is str or v is None:
            out[k] = v
        elif isinstance(v, (np.floating, float)):
            v = float(v)
            out[k] = None if not math.isfinite(v) else round(v, 6)
        elif isinstance(v, np.integer):
            out[k] = int(v)
        elif isinstance(v, tuple):
            out[k] = [None if (isinstance(x, float) and not math.isfinite(x)) else x for x in v]
        else:
            out[k] = v
    return out


def _geod_area_m2(geom_lonlat: Any) -> float:
    from pyproj import Geod

    area, _ = Geod(ellps="WGS84").geometry_area_perimeter(geom_lonlat)
    return abs(float(area))


@dataclass(frozen=True, eq=False)
class PolygonPart:
    """A connected changed area as seen inside one window, with running sums.

    Parts of one area cut by window edges are merged by :func:`assemble_polygons`.
    """

    geometry: Any
    n_px: int
    score_sum: float = 0.0
    score_n: int = 0
    score_max: float = float("-inf")
    layer_sums: tuple[tuple[str, float, int], ...] = ()
    on_edge: bool = False


@paused_gc()
def vectorize_parts(
    mask: np.ndarray,
    transform: Any,
    *,
    score: np.ndarray | None = None,
    layers: Mapping[str, np.ndarray] | None = None,
    window_edges: tuple[bool, bool, bool, bool] = (False, False, False, False),
    min_area_px: float = 0,
    offset: tuple[int, int] = (0, 0),
) -> list[PolygonPart]:
    """Connected (8-connected) areas of a (rows, cols) bool mask as :class:`PolygonPart`.

    ``transform`` maps this array's pixels to map coordinates; ``window_edges``
    says which sides (top, bottom, left, right) are internal window edges, across
    which an area may continue.  ``layers`` are (rows, cols) arrays, or 1-D arrays of
    their values at the mask's True pixels in row-major order (``layer[mask]``).

    ``offset`` (row, col) is the mask's first pixel on the grid ``transform`` belongs to, when
    the mask is a window of a larger grid: coordinates are then computed from grid pixel
    numbers, so parts of one area in neighbouring windows share their corners exactly.

    ``min_area_px`` drops, before their outlines are traced, the areas that do not touch an
    internal window edge and cannot reach that many pixels even with their holes filled
    (a filled area stays inside its bounding box, and an area less than 3 pixels high or
    wide encloses nothing): :func:`assemble_polygons` would drop them for a minimum mapping
    unit of that size anyway.  On noisy ground these specks are most areas, and each kept
    part is memory until the scene is done.  Pass the mapping unit in pixels, rounded down
    where pixel areas vary (lon/lat grids).

    Parameters
    ----------
    mask : (rows, cols) ndarray of bool
        The changed pixels.
    transform : affine.Affine
        Pixel to map coordinates, of this array or (with ``offset``) of the larger grid.
    score : (rows, cols) ndarray of float, optional
        Change score; its finite values give each part's sum, count and maximum.
    layers : mapping of str to (rows, cols) or (n_true,) ndarray, optional
        Index changes to sum per part (finite values only).
    window_edges : (bool, bool, bool, bool)
        Whether the top, bottom, left and right sides are internal window edges.
    min_area_px : float
        Drop areas away from internal edges that cannot reach this many pixels (0 keeps all).
    offset : (int, int)
        Row and column of the mask's first pixel on the grid of ``transform``.

    Returns
    -------
    list of PolygonPart
        One per kept area, in label order (row-major order of their first pixel), with
        ``on_edge`` set for those touching an internal window edge.

    Examples
    --------
    >>> from affine import Affine
    >>> m = np.zeros((4, 4), bool); m[1:3, 1:3] = True
    >>> [p.n_px for p in vectorize_parts(m, Affine.identity())]
    [4]
    >>> vectorize_parts(m, Affine.identity(), min_area_px=5)
    []
    """
    from . import _kernels

    m = np.ascontiguousarray(mask, dtype=bool)
    if m.ndim != 2:
        raise InvalidParameterError(f"vectorize_parts needs a (rows, cols) mask, got shape {m.shape}")
    if score is not None and np.shape(score) != m.shape:
        raise InvalidParameterError(f"score has shape {np.shape(score)}, expected {m.shape}")
    # labels, boxes, pixel counts, score sums and maxima and border contacts in one compiled pass
    score_arr = np.ascontiguousarray(score, dtype=np.float32) if score is not None else np.full(m.shape, np.nan, np.float32)
    labels, n, boxes, counts, s_sum, s_n, s_max, contact = _kernels.label8(m, score_arr)
    if n == 0:
        return []
    # an area touching a side that is an internal window edge may continue in the next window
    touches = np.concatenate([[False], (contact & np.asarray(window_edges, dtype=bool)).any(axis=1)])
    keep = np.ones(n, dtype=bool)
    if min_area_px > 0:
        height, width = (boxes[:, 1] - boxes[:, 0]).astype(np.int64), (boxes[:, 3] - boxes[:, 2]).astype(np.int64)
        can_enclose = (height >= 3) & (width >= 3)
        largest = np.where(can_enclose, height * width, counts)
        keep = touches[1:] | (largest >= min_area_px)
        if not keep.any():
            return []
    sums: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if layers:
        # per-label sums of the layers over the changed pixels only (sparse), with bincount
        lab = labels[m]
        n_true = int(lab.size)

        def sums_of(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            fin = np.isfinite(values)
            return (np.bincount(lab, weights=np.where(fin, values, 0.0), minlength=n + 1)[1:],
                    np.bincount(lab, weights=fin, minlength=n + 1)[1:])

        for key, arr in layers.items():
            arr = np.asarray(arr)
            if arr.ndim == 1 and arr.size == n_true:  # values at the mask's pixels only, in row-major order
                sums[key] = sums_of(arr.astype("float64"))
                continue
            if arr.shape != m.shape:
                raise InvalidParameterError(
                    f"layer {key!r} has shape {arr.shape}, expected {m.shape} or ({n_true},) values at the mask's pixels"
                )
            sums[key] = sums_of(arr[m].astype("float64"))
    # The outlines of every label, traced along pixel edges in one compiled pass: the
    # rings GDAL's polygonize (rasterio.features.shapes, 8-connected) draws, vertex for
    # vertex (tested), without a GDAL call, a GeoJSON mapping and the GIL per area.
    # Pixel-corner coordinates are mapped as GDAL maps them (x = c + col * a + row * b),
    # so a window and the whole image give the same coordinates.
    if not keep.all():  # trace only the kept labels: the others become background
        lut = np.zeros(n + 1, dtype=labels.dtype)
        lut[1:][keep] = np.arange(1, int(keep.sum()) + 1, dtype=labels.dtype)
        labels = lut[labels]
        boxes, counts, s_sum, s_n, s_max = (a[keep] for a in (boxes, counts, s_sum, s_n, s_max))
        touches = np.concatenate([[False], touches[1:][keep]])
        sums = {k: (v[0][keep], v[1][keep]) for k, v in sums.items()}
        n = int(keep.sum())
    xy, ring_start, label_start = _kernels.trace_rings(labels, n, boxes)
    t = transform
    # pixel corners numbered on the whole grid when ``transform`` is the grid's and ``offset``
    # the window's first row and column: a corner shared by two windows then gets the same
    # coordinates from both, to the last bit (on lon/lat grids a window's own transform does not)
    col = xy[:, 0].astype(np.float64) + float(offset[1])
    row = xy[:, 1].astype(np.float64) + float(offset[0])
    coords = np.column_stack([t.c + col * t.a + row * t.b, t.f + col * t.d + row * t.e])
    geoms = shapely.from_ragged_array(shapely.GeometryType.POLYGON, coords, (ring_start, label_start))
    parts = []
    for i, geom in enumerate(geoms):
        parts.append(PolygonPart(
            geom, int(counts[i]),
            float(s_sum[i]) if score is not None else 0.0,
            int(s_n[i]) if score is not None else 0,
            float(s_max[i]) if score is not None else float("-inf"),
            tuple((k, float(v[0][i]), int(v[1][i])) for k, v in sums.items()),
            bool(touches[i + 1]),
        ))
    return parts


def _merge_parts(parts: Sequence[PolygonPart]) -> list[PolygonPart]:
    """Merge parts of one area split by window edges (those that touch or overlap)."""
    edge = [i for i, p in enumerate(parts) if p.on_edge]
    if len(edge) < 2:
        return list(parts)
    tree = shapely.STRtree([parts[i].geometry for i in edge])
    parent = list(range(len(edge)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    left, right = tree.query([parts[i].geometry for i in edge], predicate="intersects")
    for a, b in zip(left.tolist(), right.tolist()):
        if a != b:
            ra, rb = find(a), find(b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    groups: dict[int, list[int]] = {}
    for k in range(len(edge)):
        groups.setdefault(find(k), []).append(edge[k])
    merged = [p for i, p in enumerate(parts) if not p.on_edge]
    for members in groups.values():
        ps = [parts[i] for i in members]
        if len(ps) == 1:
            merged.append(ps[0])
            continue
        layer: dict[str, list[float]] = {}
        for p in ps:
            for k, v, c in p.layer_sums:
                acc = layer.setdefault(k, [0.0, 0])
                acc[0] += v
                acc[1] += c
        merged.append(PolygonPart(
            shapely.union_all([p.geometry for p in ps]),
            sum(p.n_px for p in ps),
            sum(p.score_sum for p in ps),
            sum(p.score_n for p in ps),
            max(p.score_max for p in ps),
            tuple((k, v[0], int(v[1])) for k, v in layer.items()),
            False,
        ))
    return merged


def _fill_holes(geom: Any, max_hole_area: float) -> Any:
    """Fill enclosed unchanged areas up to ``max_hole_area`` (CRS units²).

    A hole is any bounded face of the polygon's boundary linework that the polygon
    does not cover — whether GDAL wrote it as an interior ring or it is enclosed by
    pieces touching only at corners (8-connected) — so the result does not depend on
    how the area was cut into windows.
    """
    if max_hole_area <= 0:
        return geom
    if geom.geom_type == "Polygon" and not geom.interiors and geom.is_valid:
        return geom
    faces = shapely.get_parts(shapely.polygonize(shapely.get_parts(shapely.node(shapely.boundary(geom)))))
    holes = [f for f in faces if f.area <= max_hole_area * (1 + 1e-9) and not geom.covers(f.representative_point())]
    if not holes:
        return geom
    return shapely.union_all([geom, *holes])


def _fill_holes_all(geoms: np.ndarray, max_hole_area: float, *, max_lines: int = 64) -> list[Any]:
    """:func:`_fill_holes` of each geometry, with the same faces and unions, in a few array calls.

    Geometries whose boundary noded into more than ``max_lines`` pieces go one by one
    (padding every row of the array to the longest would cost more than it saves).
    """
    out = list(geoms)
    if max_hole_area <= 0 or not len(geoms):
        return out
    simple = (shapely.get_type_id(geoms) == shapely.GeometryType.POLYGON) & (shapely.get_num_interior_rings(geoms) == 0)
    simple[simple] = shapely.is_valid(geoms[simple])
    todo = np.flatnonzero(~simple)
    if not todo.size:
        return out
    lines, owner = shapely.get_parts(shapely.node(shapely.boundary(geoms[todo])), return_index=True)
    counts = np.bincount(owner, minlength=todo.size)
    few = counts <= max_lines
    for k in np.flatnonzero(~few).tolist():
        out[todo[k]] = _fill_holes(geoms[todo[k]], max_hole_area)
    rows = np.flatnonzero(few)
    if not rows.size:
        return out
    # one row of line pieces per geometry, padded with None (which polygonize skips)
    row_of = np.full(todo.size, -1)
    row_of[rows] = np.arange(rows.size)
    keep = few[owner]
    lines, owner = lines[keep], owner[keep]
    first = np.concatenate([[0], np.cumsum(counts[rows])[:-1]])
    col = np.arange(owner.size) - np.repeat(first, counts[rows])
    table = np.full((rows.size, max(int(counts[rows].max()), 1)), None, dtype=object)
    table[row_of[owner], col] = lines
    faces, face_row = shapely.get_parts(shapely.polygonize(table), return_index=True)
    small = shapely.area(faces) <= max_hole_area * (1 + 1e-9)
    host = geoms[todo[rows]]
    hole = np.zeros(faces.size, dtype=bool)
    if small.any():
        hole[small] = ~shapely.covers(host[face_row[small]], shapely.point_on_surface(faces[small]))
    for r in np.unique(face_row[hole]).tolist():
        out[todo[rows[r]]] = shapely.union_all([host[r], *faces[hole & (face_row == r)]])
    return out


def _bbox_area_bound(geoms: np.ndarray, grid: Grid, in_pixels: bool, px_area_units: float, px_m2: float) -> np.ndarray:
    """An upper bound of the area :func:`assemble_polygons` measures (m², or pixels) of each geometry after filling.

    A filled part stays inside its convex hull and its bounding box.  The bound is the hull's
    area, planar in the CRS units or in pixels from the grid's pixel area; for lon/lat grids
    the bounding box's, on a sphere of the equatorial radius between its two parallels
    (within 0.7 % of the ellipsoid's, with 1 % to spare).
    """
    minx, miny, maxx, maxy = shapely.bounds(geoms).T
    if grid.crs is None or not grid.crs.is_geographic:  # the convex hull also holds every hole: a tighter bound
        box_units = shapely.area(shapely.convex_hull(geoms))
    if grid.crs is None:
        n_px = box_units / px_area_units if px_area_units > 0 else np.full(len(geoms), np.inf)
        return (n_px + 1.0) * (1.0 if in_pixels else px_m2)
    if grid.crs.is_geographic:
        # the box in lon/lat of the polygons' own CRS: only for north-up lon/lat grids; otherwise no bound
        t = grid.transform
        if t.b != 0 or t.d != 0:
            return np.full(len(geoms), np.inf)
        a = 6378137.0
        band = np.abs(np.sin(np.radians(np.clip(maxy, -90, 90))) - np.sin(np.radians(np.clip(miny, -90, 90))))
        return a * a * np.radians(maxx - minx) * band * 1.01 + 1e-6
    factor = grid.crs.linear_units_factor[1] if grid.crs.linear_units_factor else 1.0
    return box_units * factor * factor * (1 + 1e-9) + 1e-6


@paused_gc()
def assemble_polygons(
    parts: Sequence[PolygonPart],
    grid: Grid,
    *,
    min_area_m2: float = 0.0,
    fill_holes_m2: float = 0.0,
    pixel_size_m: float | None = None,
    min_peak: float | None = None,
    min_peak_exempt_px: int | None = None,
) -> ChangePolygons:
    """Merge window parts, fill small holes, apply the minimum mapping unit, name the change.

    Areas are geodesic (WGS84 ellipsoid) for geographic grids, planar in metres for
    projected ones, and in pixels for grids without CRS (m² when ``pixel_size_m`` is given).

    Parameters
    ----------
    parts : sequence of PolygonPart
        What :func:`vectorize_parts` gave for every window of ``grid``.
    grid : Grid
        The analysis grid, in whose CRS the parts' coordinates are.
    min_area_m2 : float
        Minimum mapping unit: smaller polygons (after filling holes) are dropped; in
        pixels for grids without CRS and ``pixel_size_m``.
    fill_holes_m2 : float
        Unchanged holes up to this area are filled (same units as ``min_area_m2``).
    pixel_size_m : float, optional
        Pixel edge in metres, for grids without CRS.
    min_peak : float, optional
        Areas whose highest score (over all their parts) is below this are dropped: the
        high value of a hysteresis threshold, whose low value made the mask.
    min_peak_exempt_px : int, optional
        Areas of at least this many changed pixels are kept whatever their highest score.

    Returns
    -------
    ChangePolygons
        Largest first (by ``area_px``), ``id`` 1, 2, ...; with ``change_class`` and the
        mean of each layer of the parts.

    Examples
    --------
    >>> from affine import Affine
    >>> m = np.zeros((6, 6), bool); m[1:5, 1:5] = True; m[2, 2] = False
    >>> g = Grid((6, 6), Affine(10, 0, 500000, 0, -10, 6200000), "EPSG:32639")
    >>> polys = assemble_polygons(vectorize_parts(m, g.transform), g, fill_holes_m2=100)
    >>> polys.properties[0]["area_m2"], polys.properties[0]["area_px"]
    (1600.0, 16)
    """
    if min_area_m2 < 0 or fill_holes_m2 < 0:
        raise InvalidParameterError(f"min_area_m2 and fill_holes_m2 must be >= 0, got {min_area_m2}, {fill_holes_m2}")
    in_pixels = grid.crs is None and pixel_size_m is None
    px_area_units = abs(grid.transform.a * grid.transform.e - grid.transform.b * grid.transform.d)
    merged = _merge_parts(parts)
    if min_peak is not None:
        big = math.inf if min_peak_exempt_px is None else min_peak_exempt_px
        merged = [part for part in merged if part.score_n and (part.score_max >= min_peak or part.n_px >= big)]
    geoms: list[Any] = []
    props: list[dict[str, Any]] = []
    px_m2 = (pixel_size_m or 1.0) ** 2
    # hole sizes are given in m²: in CRS units² through the grid's mean pixel area
    if grid.crs is None:
        hole_units = fill_holes_m2 / px_m2 * px_area_units if not in_pixels else fill_holes_m2 * px_area_units
    else:
        hole_units = fill_holes_m2 / grid.pixel_area_m2 * px_area_units
    shapes = np.array([part.geometry for part in merged], dtype=object)
    # Parts that cannot reach the minimum mapping unit even with every hole filled are dropped
    # first: on noisy ground they are most parts, and filling, reprojecting and measuring them
    # was most of the time.
    if len(shapes) and min_area_m2 > 0:
        can_reach = _bbox_area_bound(shapes, grid, in_pixels, px_area_units, px_m2) >= min_area_m2
        merged = [part for part, ok in zip(merged, can_reach.tolist()) if ok]
        shapes = shapes[can_reach]
    filled = np.empty(len(shapes), dtype=object)
    filled[:] = _fill_holes_all(shapes, hole_units)
    # sizes of all parts at once, then the minimum mapping unit (for lon/lat grids after reprojection)
    areas = shapely.area(filled).tolist()
    n_px_all = [int(round(a / px_area_units)) for a in areas] if px_area_units > 0 else [p.n_px for p in merged]
    if grid.crs is None:
        area_all: list[float | None] = [float(n) * px_m2 for n in n_px_all] if not in_pixels else [None] * len(areas)
    elif not grid.crs.is_geographic:
        factor = grid.crs.linear_units_factor[1] if grid.crs.linear_units_factor else 1.0
        area_all = [float(a) * factor * factor for a in areas]
    keep = [True] * len(areas)
    if grid.crs is None or not grid.crs.is_geographic:
        keep = [(a if a is not None else float(n)) >= min_area_m2 for a, n in zip(area_all, n_px_all)]
    kept = np.flatnonzero(np.asarray(keep, dtype=bool)) if len(keep) else np.zeros(0, dtype=int)
    lonlat: np.ndarray | None = None
    if grid.crs is not None:
        # lon/lat of the polygons in one transformation (a transformer per polygon was most of the time)
        lonlat = np.empty(kept.size, dtype=object)
        lonlat[:] = ChangePolygons(tuple(filled[kept]), tuple({} for _ in kept), grid.crs).to_wgs84()
        if grid.crs.is_geographic:
            area_all = [None] * len(areas)
            for j, g in zip(kept.tolist(), lonlat.tolist()):
                area_all[j] = _geod_area_m2(g)
    # centroids and boxes where they are reported: lon/lat, or the grid's own coordinates without a CRS
    where = lonlat if lonlat is not None else filled[kept]
    cx, cy = (shapely.get_x(shapely.centroid(where)).tolist(), shapely.get_y(shapely.centroid(where)).tolist()) \
        if kept.size else ([], [])
    boxes = shapely.bounds(where).tolist() if kept.size else []
    for k, k_part in enumerate(kept.tolist()):
        part = merged[k_part]
        geom = filled[k_part]
        n_px = n_px_all[k_part]
        area_m2 = area_all[k_part]
        size_for_mmu = area_m2 if area_m2 is not None else float(n_px)
        if size_for_mmu < min_area_m2:
            continue
        p: dict[str, Any] = {"id": 0, "area_px": n_px}
        p["area_m2"] = round(area_m2, 2) if area_m2 is not None else None
        p["area_ha"] = round(area_m2 / 10_000, 4) if area_m2 is not None else None
        p["mean_score"] = part.score_sum / part.score_n if part.score_n else None
        p["max_score"] = part.score_max if part.score_n else None
        if lonlat is not None:
            p["centroid_lon"], p["centroid_lat"] = round(cx[k], 7), round(cy[k], 7)
            p["bbox"] = tuple(round(v, 7) for v in boxes[k])
        else:
            p["centroid_lon"], p["centroid_lat"] = None, None
            p["centroid_x"], p["centroid_y"] = round(cx[k], 2), round(cy[k], 2)
            p["bbox"] = tuple(round(v, 2) for v in boxes[k])
        deltas = {k_: (v / c_ if c_ else float("nan")) for k_, v, c_ in part.layer_sums}
        p["change_class"] = classify_change(deltas, n_px=n_px) if n_px >= MIN_CLASS_PX else "other"
        for k_, v in deltas.items():
            p[k_] = round(v, 4) if math.isfinite(v) else None
        geoms.append(geom)
        props.append(p)
    # Largest first, ties by position, so ids do not depend on how the scene was cut into windows.
    own = shapely.bounds(np.array(geoms, dtype=object)).tolist() if geoms else []
    order = sorted(range(len(props)), key=lambda j: (-props[j]["area_px"], own[j][3] * -1, own[j][0]))
    geoms = [geoms[j] for j in order]
    props = [props[j] for j in order]
    for k, p in enumerate(props, start=1):
        p["id"] = k
    return ChangePolygons(tuple(geoms), tuple(props), grid.crs, in_pixels)


def vectorize(
    mask: GeoRaster,
    *,
    score: np.ndarray | None = None,
    layers: Mapping[str, np.ndarray] | None = None,
    min_area_m2: float = 0.0,
    fill_holes_m2: float = 0.0,
    pixel_size_m: float | None = None,
) -> ChangePolygons:
    """Connected changed areas (8-connected) of ``mask`` as polygons with attributes.

    Parameters
    ----------
    mask : GeoRaster
        One band: 1 change, 0 no change, anything else (255, NaN) nodata.
    score : (rows, cols) ndarray, optional
        Change score for ``mean_score``/``max_score``.
    layers : mapping of str -> (rows, cols) ndarray, optional
        Index changes (``d_ndvi``, ``d_ndbi``, ``d_brightness``, ``d_ndwi``, ``d_greenness``)
        averaged per polygon and used for ``change_class``.
    min_area_m2 : float
        Polygons smaller than this are dropped (in pixels for pixel grids without
        ``pixel_size_m``).
    fill_holes_m2 : float
        Unchanged holes up to this area inside a polygon are filled.
    pixel_size_m : float, optional
        Pixel edge in metres for images without georeferencing.

    Returns
    -------
    ChangePolygons
        As :func:`assemble_polygons` gives them: largest first, ``id`` 1, 2, ...

    Examples
    --------
    >>> from affine import Affine
    >>> m = np.zeros((1, 10, 10), "float32"); m[0, 2:4, 2:8] = 1
    >>> polys = vectorize(GeoRaster(m, Affine(10, 0, 500000, 0, -10, 6200000), "EPSG:32639"))
    >>> len(polys), round(polys.properties[0]["area_m2"])
    (1, 1200)
    """
    if mask.count != 1:
        raise InvalidParameterError(f"vectorize needs a one-band mask, got {mask.count} bands")
    if min_area_m2 < 0:
        raise InvalidParameterError(f"min_area_m2 must be >= 0, got {min_area_m2}")
    parts = vectorize_parts(mask.data[0] == 1, mask.transform, score=score, layers=layers)
    return assemble_polygons(parts, mask.grid, min_area_m2=min_area_m2, fill_holes_m2=fill_holes_m2,
                             pixel_size_m=pixel_size_m)


def polygons_to_mask(polygons: ChangePolygons, grid: Grid) -> np.ndarray:
    """Burn polygons back onto ``grid`` as a (rows, cols) bool mask.

    Parameters
    ----------
    polygons : ChangePolygons
        Polygons in the grid's CRS (or pixel coordinates).
    grid : Grid
        The grid to burn them onto.

    Returns
    -------
    (rows, cols) ndarray of bool
        True for pixels whose centre lies inside a polygon.

    Examples
    --------
    >>> from affine import Affine
    >>> m = np.zeros((1, 6, 6), "float32"); m[0, 1:3, 1:4] = 1
    >>> g = GeoRaster(m, Affine(10, 0, 0, 0, -10, 60), "EPSG:32639")
    >>> int(polygons_to_mask(vectorize(g), g.grid).sum())
    6
    """
    if not len(polygons):
        return np.zeros(grid.shape, dtype=bool)
    return features.rasterize(
        [(g, 1) for g in polygons.geometries], out_shape=grid.shape, transform=grid.transform, fill=0, dtype="uint8"
    ).astype(bool)


__all__.append("polygons_to_mask")
