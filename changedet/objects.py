"""From a change mask to cleaned objects and polygons with areas and from-to classes.

``clean_mask`` applies the morphological clean-up and minimum mapping unit;
``vectorize`` turns connected changed areas into :class:`ChangePolygons` with
``area_m2``, ``area_ha``, centroid lon/lat, mean score, bounding box and a
``change_class`` (new construction, vegetation loss, demolition, water change, ...).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import shapely
from rasterio import features
from scipy import ndimage

from .errors import InvalidParameterError
from .raster import GeoRaster, Grid

__all__ = [
    "CHANGE_CLASSES",
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
    "demolition": "built-up or bright surface removed (built-up or brightness down, NDVI not up)",
    "water_change": "water appeared or disappeared (NDWI change)",
    "vegetation_gain": "vegetation grew on formerly bare or built ground (NDVI up)",
    "other": "changed, but the indices do not say how",
}

_EIGHT = np.ones((3, 3), dtype=bool)


def _disk(radius: int) -> np.ndarray:
    r = int(radius)
    y, x = np.ogrid[-r : r + 1, -r : r + 1]
    return (x * x + y * y) <= r * r


def label_regions(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected labels of a boolean mask: ``(labels int32, count)``.

    Examples
    --------
    >>> m = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 0], [1, 1, 0]], bool)
    >>> label_regions(m)[1]
    2
    """
    labels, n = ndimage.label(np.asarray(mask, dtype=bool), structure=_EIGHT)
    return labels.astype("int32"), int(n)


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


def classify_change(deltas: Mapping[str, float]) -> str:
    """From-to class of one changed area from the mean index changes inside it.

    ``deltas`` may hold ``d_ndvi``, ``d_ndbi``, ``d_brightness`` (relative, after/before - 1),
    ``d_ndwi`` and ``d_greenness`` (excess-green for RGB images); missing keys are
    treated as unknown.  See :data:`CHANGE_CLASSES`.

    Examples
    --------
    >>> classify_change({"d_ndvi": -0.35, "d_ndbi": 0.12, "d_brightness": 0.3})
    'new_construction'
    >>> classify_change({"d_ndvi": -0.3, "d_ndbi": -0.05, "d_brightness": -0.05})
    'vegetation_loss'
    >>> classify_change({"d_ndwi": 0.4, "d_ndvi": -0.2})
    'water_change'
    >>> classify_change({})
    'other'
    """

    def get(key: str) -> float | None:
        v = deltas.get(key)
        return None if v is None or not math.isfinite(float(v)) else float(v)

    d_ndvi, d_ndbi, d_bright, d_ndwi, d_green = (
        get("d_ndvi"), get("d_ndbi"), get("d_brightness"), get("d_ndwi"), get("d_greenness")
    )
    veg_down = (d_ndvi is not None and d_ndvi < -0.08) or (d_ndvi is None and d_green is not None and d_green < -0.05)
    veg_up = (d_ndvi is not None and d_ndvi > 0.08) or (d_ndvi is None and d_green is not None and d_green > 0.05)
    built_up = (d_ndbi is not None and d_ndbi > 0.03) or (d_bright is not None and d_bright > 0.10)
    built_down = (d_ndbi is not None and d_ndbi < -0.03) or (d_bright is not None and d_bright < -0.10)
    # McFeeters NDWI also rises when NIR falls (vegetation cleared); new water darkens, a roof brightens
    water = d_ndwi is not None and abs(d_ndwi) > 0.25 and not (d_ndwi > 0 and d_bright is not None and d_bright > 0.10)
    if water and (d_ndbi is None or abs(d_ndbi) < abs(d_ndwi)):
        return "water_change"
    if veg_down and built_up:
        return "new_construction"
    if veg_down:
        return "vegetation_loss"
    if built_up and not veg_up:
        return "new_construction"
    if built_down and not veg_up:
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
        counts: dict[str, int] = {}
        for p in self.properties:
            counts[p.get("change_class", "other")] = counts.get(p.get("change_class", "other"), 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: -kv[1]))

    def to_records(self) -> list[dict[str, Any]]:
        """Properties as a list of flat dicts (``pandas.DataFrame(polygons.to_records())``)."""
        out = []
        for p in self.properties:
            rec = {k: v for k, v in p.items() if k != "bbox"}
            if p.get("bbox") is not None:
                rec.update(dict(zip(("bbox_minx", "bbox_miny", "bbox_maxx", "bbox_maxy"), p["bbox"])))
            out.append(rec)
        return out

    def to_wgs84(self) -> tuple[Any, ...]:
        """Geometries in lon/lat (EPSG:4326); unchanged for pixel grids."""
        if self.crs is None or not self.geometries:
            return self.geometries
        from pyproj import CRS as PCRS
        from pyproj import Transformer

        src = PCRS.from_user_input(self.crs.to_wkt() if hasattr(self.crs, "to_wkt") else self.crs)
        if src.equals(PCRS.from_epsg(4326), ignore_axis_order=True):
            return self.geometries
        tr = Transformer.from_crs(src, 4326, always_xy=True)
        return tuple(shapely.transform(g, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1]))) for g in self.geometries)

    def to_geojson(self, *, precision: int = 7) -> dict[str, Any]:
        """RFC 7946 FeatureCollection in WGS84 lon/lat (pixel coordinates for pixel grids).

        Exterior rings are counter-clockwise, coordinates rounded to ``precision`` decimals.
        """
        geoms = self.to_wgs84()
        feats = []
        for g, p in zip(geoms, self.properties):
            g = shapely.orient_polygons(shapely.set_precision(g, 10.0**-precision), exterior_cw=False)
            feats.append({"type": "Feature", "id": p.get("id"), "geometry": shapely.geometry.mapping(g), "properties": _jsonable(p)})
        fc: dict[str, Any] = {"type": "FeatureCollection", "features": feats}
        if self.crs is None:
            fc["changedet:coordinates"] = "pixel (x = column, y = row); the images have no georeferencing"
        return fc


def _jsonable(p: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in p.items():
        if isinstance(v, (np.floating, float)):
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


def vectorize(
    mask: GeoRaster,
    *,
    score: np.ndarray | None = None,
    layers: Mapping[str, np.ndarray] | None = None,
    min_area_m2: float = 0.0,
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
    pixel_size_m : float, optional
        Pixel edge in metres for images without georeferencing.

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
    m = mask.data[0] == 1
    grid = mask.grid
    labels, n = label_regions(m)
    if score is not None and np.shape(score) != m.shape:
        raise InvalidParameterError(f"score has shape {np.shape(score)}, expected {m.shape}")
    in_pixels = grid.crs is None and pixel_size_m is None
    if n == 0:
        return ChangePolygons((), (), grid.crs, in_pixels)
    transform = grid.transform
    shapes_by_label: dict[int, list[Any]] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for geom, value in features.shapes(labels, mask=labels > 0, connectivity=8, transform=transform):
            shapes_by_label.setdefault(int(value), []).append(shapely.geometry.shape(geom))
    index = np.arange(1, n + 1)
    counts = ndimage.sum_labels(np.ones_like(labels), labels, index)
    means = {}
    if score is not None:
        s = np.where(np.isfinite(score), score, 0.0)
        okc = ndimage.sum_labels(np.isfinite(score), labels, index)
        with np.errstate(invalid="ignore", divide="ignore"):
            means["mean_score"] = ndimage.sum_labels(s, labels, index) / okc
        means["max_score"] = ndimage.maximum(np.where(np.isfinite(score), score, -np.inf), labels, index)
    layer_means: dict[str, np.ndarray] = {}
    for key, arr in (layers or {}).items():
        arr = np.asarray(arr)
        if arr.shape != m.shape:
            raise InvalidParameterError(f"layer {key!r} has shape {arr.shape}, expected {m.shape}")
        fin = np.isfinite(arr)
        with np.errstate(invalid="ignore", divide="ignore"):
            layer_means[key] = ndimage.sum_labels(np.where(fin, arr, 0.0), labels, index) / ndimage.sum_labels(fin, labels, index)
    geoms: list[Any] = []
    props: list[dict[str, Any]] = []
    wgs = ChangePolygons((), (), grid.crs)
    px_area = (pixel_size_m or 1.0) ** 2
    for i, lab in enumerate(index):
        parts = shapes_by_label.get(int(lab), [])
        if not parts:
            continue
        geom = parts[0] if len(parts) == 1 else shapely.union_all(parts)
        if grid.crs is None:
            area_m2 = float(geom.area) * px_area if not in_pixels else None
            lonlat_geom = None
        else:
            lonlat_geom = ChangePolygons((geom,), ({},), grid.crs).to_wgs84()[0]
            if grid.crs.is_geographic:
                area_m2 = _geod_area_m2(lonlat_geom)
            else:
                factor = grid.crs.linear_units_factor[1] if grid.crs.linear_units_factor else 1.0
                area_m2 = float(geom.area) * factor * factor
        size_for_mmu = area_m2 if area_m2 is not None else float(counts[i])
        if size_for_mmu < min_area_m2:
            continue
        p: dict[str, Any] = {"id": 0, "area_px": int(counts[i])}
        p["area_m2"] = round(area_m2, 2) if area_m2 is not None else None
        p["area_ha"] = round(area_m2 / 10_000, 4) if area_m2 is not None else None
        for key, arr in means.items():
            p[key] = float(arr[i])
        if lonlat_geom is not None:
            c = lonlat_geom.centroid
            p["centroid_lon"], p["centroid_lat"] = round(c.x, 7), round(c.y, 7)
            p["bbox"] = tuple(round(v, 7) for v in lonlat_geom.bounds)
        else:
            c = geom.centroid
            p["centroid_lon"], p["centroid_lat"] = None, None
            p["centroid_x"], p["centroid_y"] = round(c.x, 2), round(c.y, 2)
            p["bbox"] = tuple(round(v, 2) for v in geom.bounds)
        deltas = {k: float(v[i]) for k, v in layer_means.items()}
        p["change_class"] = classify_change(deltas)
        for k, v in deltas.items():
            p[k] = round(v, 4) if math.isfinite(v) else None
        geoms.append(geom)
        props.append(p)
    del wgs
    # Largest first; ids follow that order.
    order = sorted(range(len(props)), key=lambda j: -props[j]["area_px"])
    geoms = [geoms[j] for j in order]
    props = [props[j] for j in order]
    for k, p in enumerate(props, start=1):
        p["id"] = k
    return ChangePolygons(tuple(geoms), tuple(props), grid.crs, in_pixels)


def polygons_to_mask(polygons: ChangePolygons, grid: Grid) -> np.ndarray:
    """Burn polygons back onto ``grid`` as a (rows, cols) bool mask.

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
