"""Tests for changedet.objects: mask clean-up, polygons with areas, GeoJSON, from-to classes."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import shapely
from affine import Affine
from pyproj import Geod, Transformer
from rasterio.crs import CRS
from shapely.geometry import Polygon, box

from conftest import ORIGIN, UTM39
from changedet.errors import InvalidParameterError
from changedet.objects import (
    CHANGE_CLASSES,
    ChangePolygons,
    assemble_polygons,
    classify_change,
    clean_mask,
    label_regions,
    polygons_to_mask,
    vectorize,
    vectorize_parts,
)
from changedet.raster import GeoRaster, Grid

T10 = Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1])
WGS84 = CRS.from_epsg(4326)


def _mask(shape: tuple[int, int], *blocks: tuple[slice, slice]) -> np.ndarray:
    m = np.zeros(shape, bool)
    for b in blocks:
        m[b] = True
    return m


def _raster(mask: np.ndarray, transform: Affine = T10, crs: CRS | None = UTM39) -> GeoRaster:
    return GeoRaster(mask.astype("float32")[np.newaxis], transform, crs, ("change",))


# --------------------------------------------------------------------------- clean_mask
def test_opening_removes_specks_and_slivers() -> None:
    m = _mask((20, 20), np.s_[2:7, 2:7], np.s_[15, 15], np.s_[10, 3:15])  # square, speck, 1-px line
    m.setflags(write=False)
    out = clean_mask(m, opening_px=1)
    # opening by a radius-1 disk (a cross) keeps the 5 x 5 square minus its four corners
    expected = _mask((20, 20), np.s_[2:7, 2:7])
    for r, c in ((2, 2), (2, 6), (6, 2), (6, 6)):
        expected[r, c] = False
    np.testing.assert_array_equal(out, expected)
    assert int(out.sum()) == 21
    np.testing.assert_array_equal(clean_mask(m, opening_px=0), m)  # no opening: unchanged


def test_min_area_uses_8_connectivity() -> None:
    m = _mask((12, 12), np.s_[0, 0:3], np.s_[4:6, 4:6], np.s_[8:10, 0:5])  # 3, 4 and 10 px
    m[10, 5] = True  # diagonal neighbour of the 10 px area: joins it (11 px)
    out = clean_mask(m, opening_px=0, min_area_px=4)
    assert not out[0, 0:3].any()
    assert out[4:6, 4:6].all() and out[8:10, 0:5].all() and out[10, 5]
    assert int(out.sum()) == 4 + 11
    assert int(clean_mask(m, opening_px=0, min_area_px=12).sum()) == 0


def test_fill_holes() -> None:
    m = _mask((20, 20), np.s_[1:8, 1:8], np.s_[10:19, 10:19])
    m[4, 4] = False  # 1 px hole
    m[13:16, 13:16] = False  # 9 px hole
    border_gap = _mask((20, 20), np.s_[0:3, 15:20])
    border_gap[0, 17] = False  # a notch touching the border is not a hole
    m |= border_gap
    out = clean_mask(m, opening_px=0, fill_holes_px=4)
    assert out[4, 4]
    assert not out[13:16, 13:16].any()
    assert not out[0, 17]
    assert int(out.sum()) == int(m.sum()) + 1
    assert int(clean_mask(m, opening_px=0, fill_holes_px=9).sum()) == int(m.sum()) + 10


def test_clean_mask_respects_valid() -> None:
    m = _mask((6, 6), np.s_[1:5, 1:5])
    valid = np.ones((6, 6), bool)
    valid[1, 1] = False
    out = clean_mask(m, opening_px=0, valid=valid)
    assert not out[1, 1] and int(out.sum()) == 15


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(opening_px=-1), "opening_px must be >= 0, got -1"),
        (dict(min_area_px=-5), "min_area_px must be >= 0, got -5"),
        (dict(fill_holes_px=-2), "fill_holes_px must be >= 0, got -2"),
    ],
)
def test_clean_mask_validation(kwargs: dict, match: str) -> None:
    with pytest.raises(InvalidParameterError, match=match):
        clean_mask(np.zeros((4, 4), bool), **kwargs)


def test_clean_mask_needs_2d() -> None:
    with pytest.raises(InvalidParameterError, match=r"clean_mask needs a \(rows, cols\) mask, got shape \(1, 4, 4\)"):
        clean_mask(np.zeros((1, 4, 4), bool))


def test_label_regions() -> None:
    m = np.array([[1, 0, 1], [0, 1, 0], [0, 0, 0], [1, 1, 0]], bool)
    labels, n = label_regions(m)
    assert n == 2 and labels.dtype == np.int32
    assert labels[0, 0] == labels[1, 1] == labels[0, 2] != labels[3, 0]


# --------------------------------------------------------------------------- vectorize
def test_vectorize_utm_exact_areas() -> None:
    m = _mask((30, 40), np.s_[10:16, 20:30], np.s_[2:4, 2:4])  # 60 px and 4 px
    polys = vectorize(_raster(m))
    assert len(polys) == 2
    big, small = polys.properties
    assert (big["id"], small["id"]) == (1, 2)  # largest first
    assert big["area_px"] == 60 and big["area_m2"] == 6000.0 and big["area_ha"] == 0.6
    assert small["area_m2"] == 400.0
    assert polys.total_area_m2 == 6400.0 and polys.total_area_px == 64
    assert polys.geometries[0].bounds == (ORIGIN[0] + 200, ORIGIN[1] - 160, ORIGIN[0] + 300, ORIGIN[1] - 100)
    assert polys.crs == UTM39
    assert polys.geometries[0].equals(box(ORIGIN[0] + 200, ORIGIN[1] - 160, ORIGIN[0] + 300, ORIGIN[1] - 100))


def test_vectorize_centroid_lon_lat_matches_pyproj() -> None:
    m = _mask((30, 40), np.s_[10:16, 20:30])
    p = vectorize(_raster(m)).properties[0]
    lon, lat = Transformer.from_crs(32639, 4326, always_xy=True).transform(ORIGIN[0] + 250, ORIGIN[1] - 130)
    assert p["centroid_lon"] == pytest.approx(lon, abs=1e-6)  # ~0.1 m
    assert p["centroid_lat"] == pytest.approx(lat, abs=1e-6)
    assert 50.9 < lon < 51.1 and 55.9 < lat < 56.0
    minx, miny, maxx, maxy = p["bbox"]
    assert minx < p["centroid_lon"] < maxx and miny < p["centroid_lat"] < maxy
    assert (maxx - minx) == pytest.approx(100 / (111_320 * math.cos(math.radians(56))), rel=0.01)


def test_vectorize_geographic_area_is_geodesic() -> None:
    """The same 6 x 10 px rectangle in EPSG:4326 and measured in UTM agree within 1 %."""
    res = 1e-4
    lon0, lat0 = 50.99, 55.95
    m = _mask((30, 40), np.s_[10:16, 20:30])
    polys = vectorize(_raster(m, Affine(res, 0, lon0, 0, -res, lat0), WGS84))
    p = polys.properties[0]
    rect = box(lon0 + 20 * res, lat0 - 16 * res, lon0 + 30 * res, lat0 - 10 * res)
    tr = Transformer.from_crs(4326, 32639, always_xy=True)
    rect_utm = shapely.transform(shapely.segmentize(rect, res / 10), lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))
    assert p["area_m2"] == pytest.approx(rect_utm.area / 0.9996**2, rel=0.01)
    assert p["area_m2"] == pytest.approx(abs(Geod(ellps="WGS84").geometry_area_perimeter(rect)[0]), rel=1e-6)
    assert 2500 < p["area_m2"] < 5000  # ~6.2 m x 11.1 m pixels, 60 of them
    assert polys.geometries[0].equals(rect)  # stays in the grid CRS


def test_vectorize_pixel_grid() -> None:
    m = _mask((30, 40), np.s_[10:16, 20:30])
    polys = vectorize(_raster(m, Affine.identity(), None))
    p = polys.properties[0]
    assert p["area_px"] == 60 and p["area_m2"] is None and p["area_ha"] is None
    assert p["centroid_lon"] is None and (p["centroid_x"], p["centroid_y"]) == (25.0, 13.0)
    assert p["bbox"] == (20.0, 10.0, 30.0, 16.0)
    assert polys.total_area_m2 is None and polys.crs is None
    fc = polys.to_geojson()
    assert "pixel" in fc["changedet:coordinates"]
    # with a pixel size the areas are in m2
    sized = vectorize(_raster(m, Affine.identity(), None), pixel_size_m=0.5)
    assert sized.properties[0]["area_m2"] == 15.0 and sized.total_area_m2 == 15.0


def test_vectorize_diagonal_pixels_are_one_polygon() -> None:
    m = np.zeros((6, 6), bool)
    m[1, 1] = m[2, 2] = m[3, 3] = True
    polys = vectorize(_raster(m))
    assert len(polys) == 1
    assert polys.properties[0]["area_px"] == 3 and polys.properties[0]["area_m2"] == 300.0
    assert polys.geometries[0].area == 300.0


def test_vectorize_min_area_filter() -> None:
    m = _mask((30, 40), np.s_[10:16, 20:30], np.s_[2:4, 2:4], np.s_[25, 35])  # 6000, 400, 100 m2
    assert len(vectorize(_raster(m), min_area_m2=400)) == 2  # >= keeps 400
    polys = vectorize(_raster(m), min_area_m2=401)
    assert [p["area_m2"] for p in polys.properties] == [6000.0]
    px = vectorize(_raster(m, Affine.identity(), None), min_area_m2=4)  # pixels for pixel grids
    assert [p["area_px"] for p in px.properties] == [60, 4]


def test_vectorize_ignores_nodata_and_empty_masks() -> None:
    data = np.zeros((1, 8, 8), "float32")
    data[0, :2] = 255
    data[0, 5, 5] = np.nan
    polys = vectorize(GeoRaster(data, T10, UTM39))
    assert len(polys) == 0 and polys.total_area_m2 == 0.0
    assert polys.to_geojson() == {"type": "FeatureCollection", "features": []}


def test_vectorize_scores_and_classes() -> None:
    m = _mask((10, 10), np.s_[2:5, 2:6])  # 12 px: enough to tell a class
    score = np.zeros((10, 10))
    score[2:5, 2:6] = [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, np.nan]]
    d_ndvi = np.full((10, 10), -0.4)
    d_bright = np.full((10, 10), 0.5)
    polys = vectorize(_raster(m), score=score, layers={"d_ndvi": d_ndvi, "d_brightness": d_bright})
    p = polys.properties[0]
    assert p["mean_score"] == pytest.approx(6.0) and p["max_score"] == 11.0
    assert p["d_ndvi"] == pytest.approx(-0.4) and p["change_class"] == "new_construction"
    assert polys.class_counts() == {"new_construction": 1}


def test_an_area_too_small_to_tell_its_class_is_other() -> None:
    from changedet.objects import MIN_CLASS_PX

    d_ndvi, d_bright = np.full((10, 10), -0.4), np.full((10, 10), 0.5)
    for rows, expected in ((np.s_[2:4, 2:7], "other"), (np.s_[2:5, 2:6], "new_construction")):
        m = _mask((10, 10), rows)
        polys = vectorize(_raster(m), layers={"d_ndvi": d_ndvi, "d_brightness": d_bright})
        p = polys.properties[0]
        assert (p["area_px"] < MIN_CLASS_PX) == (expected == "other")
        # the index changes are reported either way; only the class is withheld
        assert p["change_class"] == expected and p["d_ndvi"] == pytest.approx(-0.4)


def test_vectorize_validation() -> None:
    r = _raster(np.ones((4, 4), bool))
    with pytest.raises(InvalidParameterError, match="vectorize needs a one-band mask, got 2 bands"):
        vectorize(GeoRaster(np.zeros((2, 4, 4)), T10, UTM39))
    with pytest.raises(InvalidParameterError, match="min_area_m2 must be >= 0, got -1"):
        vectorize(r, min_area_m2=-1)
    with pytest.raises(InvalidParameterError, match=r"score has shape \(3, 3\), expected \(4, 4\)"):
        vectorize(r, score=np.zeros((3, 3)))
    with pytest.raises(InvalidParameterError, match=r"layer 'd_ndvi' has shape \(4, 5\), expected \(4, 4\)"):
        vectorize(r, layers={"d_ndvi": np.zeros((4, 5))})


def test_polygons_to_mask_round_trip() -> None:
    m = _mask((20, 20), np.s_[2:6, 3:9], np.s_[10:18, 10:18])
    m[13:15, 13:15] = False  # a hole survives the round trip
    m[0, 19] = True
    r = _raster(m)
    np.testing.assert_array_equal(polygons_to_mask(vectorize(r), r.grid), m)
    assert not polygons_to_mask(vectorize(_raster(np.zeros((5, 5), bool))), r.grid).any()


def test_to_records_flattens_bbox() -> None:
    polys = vectorize(_raster(_mask((10, 10), np.s_[2:4, 2:4])))
    rec = polys.to_records()[0]
    assert "bbox" not in rec and {"bbox_minx", "bbox_miny", "bbox_maxx", "bbox_maxy"} <= set(rec)
    assert rec["area_m2"] == 400.0


# --------------------------------------------------------------------------- GeoJSON
def _ring_is_ccw(coords: list) -> bool:
    return shapely.LinearRing(coords).is_ccw


def test_geojson_is_rfc7946() -> None:
    m = _mask((30, 40), np.s_[5:20, 5:20], np.s_[25:28, 30:38])
    m[10:13, 10:13] = False  # a hole
    score = np.full((30, 40), np.nan)  # no score anywhere: mean_score must not be NaN in JSON
    fc = vectorize(_raster(m), score=score, layers={"d_ndvi": np.full((30, 40), np.nan)}).to_geojson()
    fc = json.loads(json.dumps(fc, allow_nan=False))  # raises on NaN/Infinity and non-JSON types
    assert fc["type"] == "FeatureCollection" and len(fc["features"]) == 2
    holed = fc["features"][0]
    assert holed["geometry"]["type"] == "MultiPolygon"  # one geometry type in the layer
    (exterior, *holes), = holed["geometry"]["coordinates"]
    assert _ring_is_ccw(exterior) and len(holes) == 1 and not _ring_is_ccw(holes[0])
    for f in fc["features"]:
        assert f["type"] == "Feature" and f["id"] == f["properties"]["id"]
        assert f["geometry"]["type"] == "MultiPolygon"
        for ring in (r for part in f["geometry"]["coordinates"] for r in part):
            lons, lats = zip(*ring)
            assert all(50.9 < x < 51.1 for x in lons) and all(55.9 < y < 56.0 for y in lats)  # lon, lat order
            assert ring[0] == ring[-1]
        props = f["properties"]
        assert props["mean_score"] is None and props["d_ndvi"] is None
        assert isinstance(props["bbox"], list) and len(props["bbox"]) == 4
        assert {"area_m2", "area_ha", "centroid_lon", "centroid_lat", "change_class"} <= set(props)


def test_geojson_area_matches_the_grid_area() -> None:
    """Polygons reprojected to lon/lat keep their geodesic area (within 0.1 %)."""
    m = _mask((30, 40), np.s_[10:16, 20:30])
    fc = vectorize(_raster(m)).to_geojson()
    geom = shapely.geometry.shape(fc["features"][0]["geometry"])
    area = abs(Geod(ellps="WGS84").geometry_area_perimeter(geom)[0])
    assert area == pytest.approx(6000.0 / 0.9996**2, rel=1e-3)


def test_geojson_from_a_geographic_grid_is_unchanged() -> None:
    m = _mask((10, 10), np.s_[2:4, 2:4])
    polys = vectorize(_raster(m, Affine(1e-4, 0, 51.0, 0, -1e-4, 56.0), WGS84))
    assert polys.to_wgs84() == polys.geometries
    coords = polys.to_geojson()["features"][0]["geometry"]["coordinates"][0][0]  # part 0, exterior ring
    assert min(c[0] for c in coords) == pytest.approx(51.0002, abs=1e-7)


def test_empty_change_polygons() -> None:
    empty = ChangePolygons((), (), UTM39)
    assert len(empty) == 0 and empty.total_area_m2 == 0.0 and empty.to_records() == []


# --------------------------------------------------------------------------- classes
@pytest.mark.parametrize(
    ("deltas", "expected"),
    [
        ({"d_ndvi": -0.35, "d_ndbi": 0.12, "d_brightness": 0.3}, "new_construction"),
        ({"d_ndvi": 0.0, "d_brightness": 0.4}, "new_construction"),  # bare soil -> bright roof
        ({"d_ndvi": -0.3, "d_ndbi": -0.05, "d_brightness": -0.05}, "vegetation_loss"),
        # a harvested field: NDBI rises over bare soil as over paving, the surface is not brighter
        ({"d_ndvi": -0.45, "d_ndbi": 0.25, "d_brightness": -0.05}, "vegetation_loss"),
        ({"d_ndvi": 0.0, "d_ndbi": 0.1, "d_brightness": 0.0}, "other"),
        ({"d_ndvi": 0.0, "d_ndbi": 0.1}, "new_construction"),  # without brightness NDBI decides
        ({"d_ndvi": 0.0, "d_ndbi": -0.1, "d_brightness": 0.3}, "other"),  # brighter, swir down: not built
        ({"d_ndvi": 0.02, "d_ndbi": -0.1, "d_brightness": -0.3}, "demolition"),
        ({"d_ndwi": 0.4, "d_ndvi": -0.2}, "water_change"),
        ({"d_ndwi": -0.5, "d_ndvi": 0.1}, "water_change"),
        ({"d_ndwi": 0.5, "d_ndvi": -0.4, "d_brightness": -0.4}, "water_change"),  # a new pond: darker
        ({"d_ndvi": 0.3, "d_brightness": -0.1}, "vegetation_gain"),
        ({"d_ndvi": 0.01, "d_brightness": 0.02}, "other"),
        ({}, "other"),
        ({"d_ndvi": float("nan"), "d_brightness": float("nan")}, "other"),  # NaN = unknown
        # RGB images: excess green stands in for NDVI
        ({"d_greenness": -0.2, "d_brightness": 0.3}, "new_construction"),
        ({"d_greenness": -0.2, "d_brightness": 0.0}, "vegetation_loss"),
        ({"d_greenness": 0.2}, "vegetation_gain"),
    ],
)
def test_classify_change(deltas: dict, expected: str) -> None:
    assert classify_change(deltas) == expected
    assert expected in CHANGE_CLASSES


def test_classify_bright_roof_on_vegetation_is_construction() -> None:
    """Vegetation replaced by a bright roof (4 bands, no SWIR, so no NDBI).

    McFeeters NDWI (green - nir) / (green + nir) rises whenever NIR falls, so vegetation
    loss alone moves it by ~0.5; with NDVI down and brightness up this is construction,
    not water (water is dark: brightness goes down).
    """
    # conftest's scene: B03, B04, B08 = 800, 700, 2600 before; 2200, 2300, 2500 after
    ndwi_before = (800 - 2600) / (800 + 2600)
    ndwi_after = (2200 - 2500) / (2200 + 2500)
    ndvi_before = (2600 - 700) / (2600 + 700)
    ndvi_after = (2500 - 2300) / (2500 + 2300)
    deltas = {"d_ndvi": ndvi_after - ndvi_before, "d_ndwi": ndwi_after - ndwi_before, "d_brightness": 1.3}
    assert classify_change(deltas) == "new_construction"


def test_every_class_is_documented() -> None:
    assert set(CHANGE_CLASSES) == {
        "new_construction", "vegetation_loss", "demolition", "water_change", "vegetation_gain", "seasonal", "other"
    }
    assert all(isinstance(v, str) and v for v in CHANGE_CLASSES.values())


def test_polygon_helpers_accept_shapely_polygons() -> None:
    p = ChangePolygons((Polygon([(0, 0), (10, 0), (10, 10)]),), ({"area_m2": 50.0, "area_px": 1},), UTM39)
    assert p.total_area_m2 == 50.0 and len(p.to_wgs84()) == 1


def test_vectorize_parts_sparse_layers_equal_full_layers() -> None:
    """Layers given as their values at the mask's pixels give the same parts as full arrays."""
    from affine import Affine

    from changedet.objects import vectorize_parts

    rng = np.random.default_rng(5)
    mask = np.zeros((60, 70), bool)
    mask[5:15, 5:20] = True
    mask[30:33, 40:41] = True
    mask[50:60, 60:70] = True  # touches the bottom and right sides
    full = rng.normal(size=mask.shape).astype("float32")
    score = rng.normal(size=mask.shape).astype("float32")
    t = Affine(10, 0, 500000, 0, -10, 6200000)
    a = vectorize_parts(mask, t, score=score, layers={"d_ndvi": full}, window_edges=(False, True, False, True))
    b = vectorize_parts(mask, t, score=score, layers={"d_ndvi": full[mask]}, window_edges=(False, True, False, True))
    assert [p.n_px for p in a] == [150, 3, 100]
    assert [(p.n_px, p.score_sum, p.layer_sums, p.on_edge) for p in a] == [
        (p.n_px, p.score_sum, p.layer_sums, p.on_edge) for p in b]
    assert [p.on_edge for p in a] == [False, False, True]
    assert all(pa.geometry.equals(pb.geometry) for pa, pb in zip(a, b))
    assert a[0].geometry.area == 150 * 100
    with pytest.raises(InvalidParameterError, match="values at the mask's pixels"):
        vectorize_parts(mask, t, layers={"d_ndvi": full[:3]})


def test_vectorize_parts_min_area_px_drops_only_what_the_mapping_unit_would() -> None:
    from affine import Affine
    from scipy import ndimage

    rng = np.random.default_rng(3)
    mask = ndimage.gaussian_filter(rng.normal(size=(120, 150)), 1.0) > 0.3  # many specks, some large areas
    mask[40:60, 40:70] = True
    mask[48:52, 50:55] = False  # a hole the fill closes
    t = Affine(10, 0, 500_000, 0, -10, 6_200_000)
    grid = Grid(mask.shape, t, "EPSG:32639")
    score = rng.random(mask.shape).astype("float32")
    for edges in ((False, False, False, False), (True, False, False, True)):
        every = vectorize_parts(mask, t, score=score, window_edges=edges)
        some = vectorize_parts(mask, t, score=score, window_edges=edges, min_area_px=9)
        assert 0 < len(some) < len(every)
        assert all(p.on_edge or p.n_px >= 3 for p in some)
        a = assemble_polygons(every, grid, min_area_m2=900, fill_holes_m2=400)
        b = assemble_polygons(some, grid, min_area_m2=900, fill_holes_m2=400)
        assert a.properties == b.properties
        assert [g.wkb for g in a.geometries] == [g.wkb for g in b.geometries]


def test_write_geojson_in_chunks_equals_to_geojson(tmp_path) -> None:
    from affine import Affine

    from changedet import io

    mask = np.zeros((1, 30, 40), "float32")
    mask[0, 2:6, 3:9] = 1
    mask[0, 10:20, 10:30] = 1
    mask[0, 14:16, 18:21] = 0  # a hole
    mask[0, 25:28, 2:5] = 1
    polys = vectorize(GeoRaster(mask, Affine(10, 0, 500_000, 0, -10, 6_200_000), "EPSG:32639"))
    assert len(polys) == 3
    whole = io.write_geojson(polys.to_geojson(), tmp_path / "whole.geojson").read_text()
    assert polys.write_geojson(tmp_path / "chunks.geojson", chunk=2).read_text() == whole
    pixel = vectorize(GeoRaster(mask, Affine.identity(), None))
    assert pixel.write_geojson(tmp_path / "px.geojson", chunk=1).read_text() == \
        io.write_geojson(pixel.to_geojson(), tmp_path / "px_whole.geojson").read_text()
    with pytest.raises(InvalidParameterError, match="chunk must be a positive"):
        polys.write_geojson(tmp_path / "x.geojson", chunk=0)
