"""Tests for changedet.pipeline: detect_changes end to end and ChangeResult.save."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.warp import transform_bounds
from shapely.geometry import Polygon, box

from conftest import BANDS, BUILDING, BUILDING_AREA_M2, ORIGIN, UTM39, PairFiles, Scene, make_scene, textured_image, write_tif
from changedet.errors import EmptyDataError, GridMismatchError, InvalidParameterError, NoOverlapError
from changedet.evaluate import evaluate
from changedet.io import sha256
from changedet.pipeline import OUTPUT_FILES, ChangeResult, detect_changes, parse_aoi
from changedet.raster import GeoRaster, Grid

T10 = Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1])
TO_LONLAT = Transformer.from_crs(32639, 4326, always_xy=True)
FAST = dict(coregister=False)  # most option tests do not need the co-registration step


def _lonlat_bbox(row0: int, row1: int, col0: int, col1: int) -> tuple[float, float, float, float]:
    """The lon/lat bounding box of a block of pixels of the scene grid."""
    return transform_bounds(UTM39, "EPSG:4326", ORIGIN[0] + 10 * col0, ORIGIN[1] - 10 * row1,
                            ORIGIN[0] + 10 * col1, ORIGIN[1] - 10 * row0, densify_pts=21)


def scene_grid(scene: Scene) -> Grid:
    return GeoRaster(scene.before, scene.transform, scene.crs).grid


def _f1(result: ChangeResult, truth: np.ndarray) -> float:
    return evaluate(result.mask, truth.astype("uint8")).f1


# --------------------------------------------------------------------------- known answers
def test_planted_building_is_found(pair_tifs: PairFiles, scene: Scene) -> None:
    result = detect_changes(pair_tifs.before, pair_tifs.after)
    assert result.n_changes == 1
    p = result.polygons.properties[0]
    assert p["area_m2"] == pytest.approx(BUILDING_AREA_M2, rel=0.10)
    assert result.polygons.total_area_m2 == pytest.approx(BUILDING_AREA_M2, rel=0.10)
    # centroid at the building's centre (row 83, col 105)
    lon, lat = TO_LONLAT.transform(ORIGIN[0] + 10 * 105, ORIGIN[1] - 10 * 83)
    assert (p["centroid_lon"], p["centroid_lat"]) == pytest.approx((lon, lat), abs=2e-5)  # ~1-2 m
    assert p["change_class"] == "new_construction"
    assert _f1(result, scene.truth) > 0.9
    # the 3 x 3 nodata corner of before.tif is nodata in the mask and the score
    assert (result.mask.data[0, :3, :3] == 255).all() and np.isnan(result.score.data[0, :3, :3]).all()
    assert result.mask.data.dtype == np.uint8 and set(np.unique(result.mask.data).tolist()) == {0, 1, 255}
    assert result.grid.same_as(scene_grid(scene))
    r = result.summary["results"]
    assert r["n_changes"] == 1 and r["changed_pixels"] == int((result.mask.data == 1).sum())
    assert r["nodata_pixels"] == 9
    assert r["by_class"]["new_construction"]["count"] == 1
    assert "1 changed area," in repr(result)


def test_geo_rasters_and_paths_give_the_same_result(scene: Scene) -> None:
    b, a = scene.rasters()
    result = detect_changes(b, a, **FAST)
    assert result.n_changes == 1
    assert result.summary["inputs"]["before"] == {"path": None, "sha256": None, "bands": list(BANDS),
                                                  "grid": "EPSG:32639 10 m 192x224"}
    np.testing.assert_array_equal(result.change_mask(), scene.truth)


def test_sensor_noise_alone_is_not_change() -> None:
    """No change in, no change out: 1 % sensor noise between the dates is not change."""
    before = textured_image((128, 128), seed=21)
    rng = np.random.default_rng(22)
    after = (before + rng.normal(0, 8, before.shape)).astype("float32")
    result = detect_changes(GeoRaster(before, T10, UTM39, BANDS), GeoRaster(after, T10, UTM39, BANDS), **FAST)
    assert result.summary["results"]["changed_fraction"] < 0.01, result


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    gain=st.floats(0.5, 2.0),
    offset=st.floats(-100.0, 100.0),
)
def test_no_change_in_no_change_out(seed: int, gain: float, offset: float) -> None:
    """A pure radiometric gain and offset between the dates (illumination, sensor) is not change."""
    before = textured_image((48, 64), seed=seed)
    after = (before.astype("float64") * gain + offset).astype("float32")
    result = detect_changes(GeoRaster(before, T10, UTM39, BANDS), GeoRaster(after, T10, UTM39, BANDS), **FAST)
    assert result.n_changes == 0, (result, result.threshold)
    assert not result.change_mask().any()


def test_coregistration_corrects_a_shift() -> None:
    scene = make_scene(shift=(1.5, 0.0))
    b, a = scene.rasters()
    with_coreg = detect_changes(b, a, coregister=True)
    without = detect_changes(b, a, coregister=False)
    shift = with_coreg.summary["coregistration"]
    assert (shift["rows"], shift["cols"]) == pytest.approx((-1.5, 0.0), abs=0.1)
    assert without.summary["coregistration"] is None
    f1_with, f1_without = _f1(with_coreg, scene.truth), _f1(without, scene.truth)
    assert f1_with >= f1_without
    assert f1_with > 0.9 and f1_without < 0.85  # the shift costs accuracy, co-registration wins it back
    assert with_coreg.polygons.total_area_m2 == pytest.approx(BUILDING_AREA_M2, rel=0.10)


def test_after_in_another_crs_is_aligned(scene: Scene) -> None:
    """The after image in UTM 38N is reprojected onto the before image's grid."""
    from changedet.align import align_to

    b, a = scene.rasters()
    to38 = Transformer.from_crs(32639, 32638, always_xy=True)
    x0, y0 = to38.transform(*(ORIGIN[0] - 200, ORIGIN[1] + 200))
    g38 = Grid((260, 290), Affine(10, 0, x0 - 300, 0, -10, y0 + 300), CRS.from_epsg(32638))
    after38 = align_to(a, g38)
    result = detect_changes(b, after38, **FAST)
    assert result.grid.crs == UTM39
    assert result.n_changes == 1
    assert result.polygons.total_area_m2 == pytest.approx(BUILDING_AREA_M2, rel=0.25)  # resampled twice


def test_band_folders_as_inputs(tmp_path: Path, scene: Scene) -> None:
    """Each date as a Sentinel-2 style folder of single-band files."""
    folders = []
    for date, data in (("20240612", scene.before), ("20250612", scene.after)):
        folder = tmp_path / date
        folder.mkdir()
        for i, band in enumerate(BANDS):
            write_tif(folder / f"T39UWB_{date}T073621_{band}.tif", data[i], transform=scene.transform, crs=scene.crs)
        folders.append(folder)
    result = detect_changes(*folders, **FAST)
    assert result.before.band_names == BANDS
    assert result.n_changes == 1
    assert result.polygons.total_area_m2 == pytest.approx(BUILDING_AREA_M2, rel=0.10)
    assert result.summary["inputs"]["before"]["sha256"] == sha256(folders[0])


def test_oscd_dates_of_different_sizes(oscd: Path) -> None:
    """saclay_e: the later date is smaller; the analysis grid is the earlier date's 10 m grid."""
    from changedet.io import read_raster

    city = oscd / "saclay_e"
    result = detect_changes(city / "imgs_1", city / "imgs_2")
    assert result.grid.same_as(read_raster(city / "imgs_1", bands=["B02"]).grid)
    assert result.grid.shape == (639, 688)
    truth = read_raster(city / "cm" / "saclay_e-cm.tif")
    assert truth.shape[1:] == result.grid.shape  # the truth's pixel grid matches the analysis grid
    acc = evaluate(result.mask.data[0], truth.data[0], truth_change_values=(2,), truth_nochange_values=(1,))
    assert acc.tp + acc.fn > 1000 and acc.n_valid > 0.95 * 639 * 688


# --------------------------------------------------------------------------- AOI
def test_aoi_bbox_string_crops_and_masks(scene: Scene) -> None:
    b, a = scene.rasters()
    bbox = _lonlat_bbox(60, 120, 80, 140)  # holds the building (rows 80-86, cols 100-110)
    result = detect_changes(b, a, aoi=",".join(f"{v:.7f}" for v in bbox), **FAST)
    g = result.grid
    assert g.crs == UTM39 and g.res == (10.0, 10.0)
    # at the zone's central meridian a lon/lat box is almost a UTM box: ~60 x 60 whole pixels
    assert 60 <= g.height <= 61 and 60 <= g.width <= 61
    col, row = ~T10 * (g.transform.c, g.transform.f)
    assert (round(row), round(col)) in {(60, 80), (59, 80), (60, 79), (59, 79)}
    assert abs(row - round(row)) < 1e-6 and abs(col - round(col)) < 1e-6  # the before image's pixels
    np.testing.assert_array_equal(result.before.data, b.data[:, round(row) : round(row) + g.height, round(col) : round(col) + g.width])
    assert result.n_changes == 1
    assert result.polygons.total_area_m2 == pytest.approx(BUILDING_AREA_M2, rel=0.10)
    assert result.summary["parameters"]["aoi"] == pytest.approx(list(bbox), abs=1e-6)


def test_aoi_geojson_file_masks_outside(tmp_path: Path, scene: Scene) -> None:
    b, a = scene.rasters()
    # a triangle in lon/lat around the building
    corners = [TO_LONLAT.transform(ORIGIN[0] + 10 * c, ORIGIN[1] - 10 * r) for r, c in ((40, 60), (40, 160), (130, 60))]
    tri = Polygon(corners)
    path = tmp_path / "aoi.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [list(map(list, corners)) + [list(corners[0])]]}}
    ]}))
    result = detect_changes(b, a, aoi=str(path), **FAST)
    mask = result.mask.data[0]
    assert result.grid.height == pytest.approx(90, abs=2) and result.grid.width == pytest.approx(100, abs=2)
    # the bottom-right half of the box lies outside the triangle
    inside = mask != 255
    assert 0.4 < inside.mean() < 0.6
    assert not inside[-3:, -3:].any() and inside[2:5, 2:5].all()
    assert result.n_changes == 1
    np.testing.assert_allclose(result.summary["parameters"]["aoi"], tri.bounds, atol=1e-7)


def test_aoi_in_pixel_coordinates_on_images_without_georeferencing(scene: Scene) -> None:
    """Images without georeferencing take the area in their pixel coordinates (x = column, y = row,
    as changes.geojson writes them): the window of the whole run's answer; georeferenced ones still
    take lon/lat only."""
    b, a = scene.rasters()
    nb, na = (GeoRaster(r.data, Affine.identity(), None, r.band_names) for r in (b, a))
    whole = detect_changes(nb, na, pixel_size_m=10.0, **FAST)
    ring = [[80, 60], [140, 60], [140, 120], [80, 120], [80, 60]]
    for aoi in ("80,60,140,120", (80, 60, 140, 120), box(80, 60, 140, 120), {"type": "Polygon", "coordinates": [ring]}):
        r = detect_changes(nb, na, pixel_size_m=10.0, aoi=aoi, **FAST)
        assert r.grid.crs is None and r.grid.shape == (60, 60)
        np.testing.assert_array_equal(r.mask.data[0], whole.mask.data[0][60:120, 80:140])
        assert r.n_changes == 1  # the building, rows 80-86 and columns 100-110
    with pytest.raises(NoOverlapError, match=r"\(pixel coordinates: the images have no georeferencing\) does not overlap"):
        detect_changes(nb, na, pixel_size_m=10.0, aoi="500,500,600,600", **FAST)
    with pytest.raises(InvalidParameterError, match=r"outside lon -180\.\.180 / lat -90\.\.90 \(projected coordinates\?\): "
                                                     r"for georeferenced images give it in lon/lat degrees"):
        detect_changes(b, a, aoi="80,60,140,120", **FAST)


def test_aoi_outside_the_scene(scene: Scene) -> None:
    b, a = scene.rasters()
    with pytest.raises(NoOverlapError, match=r"the area of interest \(10\.0, 10\.0, 10\.1, 10\.1\) does not overlap the images"):
        detect_changes(b, a, aoi="10,10,10.1,10.1", **FAST)


@pytest.mark.parametrize(
    ("aoi", "error", "match"),
    [
        ("1,2,3", InvalidParameterError, r"aoi '1,2,3' is neither an existing GeoJSON file nor 'minx,miny,maxx,maxy'"),
        ("a,b,c,d", InvalidParameterError, r"aoi 'a,b,c,d' must be 'minx,miny,maxx,maxy' in lon/lat degrees"),
        ("5,5,4,6", InvalidParameterError, r"aoi bbox must have minx < maxx and miny < maxy"),
        ("500000,6000000,501000,6001000", InvalidParameterError, r"aoi bbox must be in lon/lat degrees \(WGS84\)"),
        ((1, 2, 3), InvalidParameterError, r"aoi bbox needs 4 numbers minx,miny,maxx,maxy; got 3"),
        ({"type": "FeatureCollection", "features": []}, InvalidParameterError, "aoi FeatureCollection holds no geometry"),
        ({"type": "Blob"}, InvalidParameterError, r"aoi dict is not a GeoJSON geometry, Feature or FeatureCollection \(type='Blob'\)"),
    ],
)
def test_parse_aoi_errors(aoi: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        parse_aoi(aoi)


def test_parse_aoi_forms(tmp_path: Path) -> None:
    assert parse_aoi(None) is None
    assert parse_aoi("52.0,55.7,52.1,55.8").bounds == (52.0, 55.7, 52.1, 55.8)
    assert parse_aoi([52, 55.7, 52.1, 55.8]).equals(box(52, 55.7, 52.1, 55.8))
    g = box(1, 2, 3, 4)
    assert parse_aoi(g) is g
    feature = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [1, 2]}, "properties": {}}
    assert parse_aoi(feature).equals(box(1, 2, 1, 2).centroid)
    bad = tmp_path / "bad.geojson"
    bad.write_text("{not json")
    with pytest.raises(InvalidParameterError, match=r"aoi file '.*bad\.geojson' is not valid GeoJSON"):
        parse_aoi(bad)


# --------------------------------------------------------------------------- options
def test_threshold_number(scene: Scene) -> None:
    b, a = scene.rasters()
    result = detect_changes(b, a, threshold=5.0, **FAST)
    assert result.threshold == 5.0
    params = result.summary["parameters"]
    assert (params["threshold"], params["threshold_method"], params["threshold_value"]) == (5.0, "fixed", 5.0)
    assert detect_changes(b, a, threshold="5", **FAST).threshold == 5.0
    assert detect_changes(b, a, threshold=np.float32(5.0), **FAST).summary["parameters"]["threshold"] == 5.0


def test_threshold_percentile(scene: Scene) -> None:
    b, a = scene.rasters()
    result = detect_changes(b, a, threshold="p99", min_area_m2=0, opening_px=0, fill_holes_m2=0, **FAST)
    assert result.summary["parameters"]["threshold_method"] == "percentile"
    score = result.score.data[0]
    assert result.threshold == pytest.approx(float(np.nanpercentile(score, 99)), rel=1e-6)
    assert (result.change_mask() == (score > result.threshold)).all()


def test_threshold_otsu(scene: Scene) -> None:
    b, a = scene.rasters()
    result = detect_changes(b, a, threshold="otsu", **FAST)
    assert result.summary["parameters"]["threshold_method"] == "otsu"
    assert result.n_changes == 1


@pytest.mark.parametrize(
    ("threshold", "match"),
    [
        ("median", r"threshold must be a number, 'pNN' \(percentile, e\.g\. p99\) or one of \[.*'otsu'.*\]; got 'median'"),
        ("p", r"got 'p'"),
        (float("inf"), r"threshold must be finite, got inf"),
        ([1, 2], r"threshold must be a number or a method name, got list"),
        ("fixed", r"got 'fixed'"),
    ],
)
def test_bad_threshold(scene: Scene, threshold: object, match: str) -> None:
    b, a = scene.rasters()
    with pytest.raises(InvalidParameterError, match=match):
        detect_changes(b, a, threshold=threshold)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(method="magic"), r"method must be one of \[.*'cva'.*\], got 'magic'"),
        (dict(min_area_m2=-1), r"min_area_m2 must be a number >= 0, got -1"),
        (dict(min_area_m2=float("nan")), r"min_area_m2 must be a number >= 0, got nan"),
        (dict(opening_px=1.5), r"opening_px must be an integer >= 0, got 1\.5"),
        (dict(pixel_size_m=0), r"pixel_size_m must be a positive number of metres, got 0"),
    ],
)
def test_bad_options(scene: Scene, kwargs: dict, match: str) -> None:
    b, a = scene.rasters()
    with pytest.raises(InvalidParameterError, match=match):
        detect_changes(b, a, **kwargs)


def test_bad_input_type(scene: Scene) -> None:
    b, _ = scene.rasters()
    with pytest.raises(InvalidParameterError, match=r"after must be a path to a raster \(file, band folder or URL\) or a GeoRaster; got ndarray"):
        detect_changes(b, scene.after)  # type: ignore[arg-type]


def test_align_false_with_differing_grids(scene: Scene) -> None:
    b, a = scene.rasters()
    shifted = GeoRaster(a.data, a.transform * Affine.translation(3, 0), a.crs, a.band_names)
    with pytest.raises(
        GridMismatchError,
        match=r"after grid differs from before \(EPSG:32639 10 m 192x224 vs EPSG:32639 10 m 192x224\); "
        r"pass align=True or call changedet\.align\.align_to\(after, like=before\)",
    ):
        detect_changes(b, shifted, align=False)
    # with alignment the overlap is analysed
    result = detect_changes(b, shifted, **FAST)
    assert result.grid.shape == (192, 221)


def test_bands_option(scene: Scene) -> None:
    b, a = scene.rasters()
    result = detect_changes(b, a, bands=["B04", "B08"], **FAST)
    assert result.before.band_names == ("B04", "B08")
    assert result.summary["parameters"]["bands"] == ["B04", "B08"]
    assert result.n_changes == 1


def test_all_nodata_after_alignment(scene: Scene) -> None:
    b, a = scene.rasters()
    valid = np.ones(b.data.shape, bool)
    valid[:, :, 100:] = False
    b_left = b.with_data(np.where(valid, b.data, np.nan))
    a_right = a.with_data(np.where(~valid, a.data, np.nan))
    with pytest.raises(EmptyDataError, match=r"no pixel is valid in both dates on the analysis grid \(EPSG:32639 10 m 192x224\)"):
        detect_changes(b_left, a_right, **FAST)


def test_png_pair_areas_in_pixels(png_pair: PairFiles, tmp_path: Path) -> None:
    result = detect_changes(png_pair.before, png_pair.after)
    assert result.grid.crs is None
    assert result.n_changes == 1
    p = result.polygons.properties[0]
    assert p["area_px"] == pytest.approx(96, rel=0.15) and p["area_m2"] is None
    assert result.summary["results"]["changed_area_m2"] is None
    sized = detect_changes(png_pair.before, png_pair.after, pixel_size_m=2.0)
    assert sized.polygons.total_area_m2 == pytest.approx(96 * 4.0, rel=0.15)
    assert sized.summary["parameters"]["min_area_m2"] == 50.0  # the default mapping unit
    written = result.save(tmp_path / "png_out", figures=False)
    assert "changes.gpkg" not in written  # no CRS, no GeoPackage
    fc = json.loads((tmp_path / "png_out" / "changes.geojson").read_text())
    xs = [x for x, _ in fc["features"][0]["geometry"]["coordinates"][0][0]]
    assert 55 <= min(xs) and max(xs) <= 77  # pixel coordinates (cols 60-72)


# --------------------------------------------------------------------------- save
@dataclass(frozen=True)
class Saved:
    result: ChangeResult
    folder: Path
    written: dict[str, Path]
    inputs: PairFiles


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Saved:
    """The scene written to files, detected and saved once (figures are the slow part)."""
    scene = make_scene()
    d = tmp_path_factory.mktemp("saved")
    before = np.array(scene.before)
    before[:, :3, :3] = 0
    kw = dict(transform=scene.transform, crs=scene.crs, nodata=0, descriptions=BANDS)
    files = PairFiles(write_tif(d / "before.tif", before, **kw), write_tif(d / "after.tif", scene.after, **kw))
    result = detect_changes(files.before, files.after)
    written = result.save(d / "out")
    return Saved(result, d / "out", written, files)


def test_save_writes_exactly_the_contract_files(saved: Saved) -> None:
    expected = set(OUTPUT_FILES) - {"structures.geojson"}  # 10 m pixels: no structures counted
    assert saved.result.summary["results"]["structures"]["count"] is None
    assert sorted(p.name for p in saved.folder.iterdir()) == sorted(expected)  # and no temp files
    assert set(saved.written) == expected
    assert all(p.parent == saved.folder for p in saved.written.values())


def test_saved_change_mask(saved: Saved) -> None:
    with rasterio.open(saved.folder / "change_mask.tif") as src:
        assert src.dtypes == ("uint8",) and src.nodata == 255 and src.count == 1
        assert src.crs == UTM39 and src.transform == T10
        mask = src.read(1)
    np.testing.assert_array_equal(mask, saved.result.mask.data[0])
    assert (mask[:3, :3] == 255).all() and int((mask == 1).sum()) == saved.result.summary["results"]["changed_pixels"]


def test_saved_change_score(saved: Saved) -> None:
    with rasterio.open(saved.folder / "change_score.tif") as src:
        assert src.dtypes == ("float32",) and np.isnan(src.nodata)
        assert src.crs == UTM39 and src.transform == T10
        score = src.read(1)
    np.testing.assert_array_equal(score, saved.result.score.data[0])
    assert np.isnan(score[:3, :3]).all()


def test_saved_geojson_is_wgs84_within_the_scene(saved: Saved) -> None:
    text = (saved.folder / "changes.geojson").read_text()
    assert "NaN" not in text and "Infinity" not in text
    fc = json.loads(text)
    assert fc["type"] == "FeatureCollection" and len(fc["features"]) == 1
    west, south, east, north = transform_bounds(UTM39, "EPSG:4326", *scene_grid(make_scene()).bounds)
    for f in fc["features"]:
        assert f["geometry"]["type"] == "MultiPolygon"
        for lon, lat in f["geometry"]["coordinates"][0][0]:
            assert west <= lon <= east and south <= lat <= north
        props = f["properties"]
        assert props["area_m2"] == pytest.approx(BUILDING_AREA_M2, rel=0.10)
        assert props["area_ha"] == pytest.approx(props["area_m2"] / 10_000, abs=1e-4)
        assert west <= props["centroid_lon"] <= east and south <= props["centroid_lat"] <= north
        assert np.isfinite(props["mean_score"])


def test_saved_geopackage(saved: Saved) -> None:
    import pyogrio

    info = pyogrio.read_info(saved.folder / "changes.gpkg")
    assert info["features"] == 1
    assert CRS.from_user_input(info["crs"]).to_epsg() == 32639
    assert {"area_m2", "area_ha", "change_class", "centroid_lon"} <= set(info["fields"])
    _, _, geometry, fields = pyogrio.raw.read(saved.folder / "changes.gpkg")
    import shapely

    geom = shapely.from_wkb(geometry[0])
    assert geom.area == pytest.approx(saved.result.polygons.geometries[0].area, rel=1e-9)  # UTM m2
    assert box(*scene_grid(make_scene()).bounds).contains(geom)


def test_saved_overview_png(saved: Saved) -> None:
    from PIL import Image

    path = saved.folder / "overview.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.width > 300 and im.height > 100


def test_saved_summary(saved: Saved) -> None:
    summary = json.loads((saved.folder / "summary.json").read_text())
    params = summary["parameters"]
    assert {"method", "threshold", "threshold_method", "threshold_value", "min_area_m2", "opening_px",
            "aoi", "align", "coregister", "bands"} <= set(params)
    assert params["threshold_value"] == pytest.approx(saved.result.threshold)
    ins = summary["inputs"]
    assert ins["before"]["sha256"] == sha256(saved.inputs.before)
    assert ins["after"]["sha256"] == sha256(saved.inputs.after)
    assert ins["before"]["path"] == str(saved.inputs.before)
    assert {"changedet", "numpy", "rasterio", "gdal"} <= set(summary["versions"])
    assert {"read", "align", "fit", "window", "polygons", "total", "save"} <= set(summary["timings_s"])
    assert all(v >= 0 for v in summary["timings_s"].values())
    assert set(summary["coregistration"]) == {"rows", "cols", "spread_px", "n_blocks", "applied"}
    assert abs(summary["coregistration"]["rows"]) < 0.1
    assert summary["results"]["n_changes"] == 1
    assert summary["results"]["changed_area_m2"] == pytest.approx(BUILDING_AREA_M2, rel=0.10)
    assert sorted(summary["outputs"]) == sorted(set(OUTPUT_FILES) - {"structures.geojson"})  # 10 m: no count
    assert summary["grid"]["crs"] == "EPSG:32639" and summary["grid"]["shape"] == [192, 224]


def test_save_refuses_to_overwrite_a_finished_result(saved: Saved, tmp_path: Path) -> None:
    out = tmp_path / "again"
    saved.result.save(out, figures=False)
    stamp = (out / "summary.json").read_text()
    with pytest.raises(FileExistsError, match=r"already holds a finished result \(summary\.json\); pass overwrite=True"):
        saved.result.save(out, figures=False)
    assert (out / "summary.json").read_text() == stamp
    written = saved.result.save(out, figures=False, overwrite=True)
    assert "overview.png" not in written and (out / "summary.json").exists()


def test_failure_during_save_leaves_no_summary(saved: Saved, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from changedet import plot

    def broken(*args, **kwargs):
        raise RuntimeError("plotting failed")

    monkeypatch.setattr(plot, "plot_overview", broken)
    out = tmp_path / "crash"
    with pytest.raises(RuntimeError, match="plotting failed"):
        saved.result.save(out)
    assert not (out / "summary.json").exists()
    assert not out.exists()  # no temp files either: the folder the failed save made is gone
    # overwriting a finished result that then fails does not leave the old summary behind
    saved.result.save(out, figures=False)
    with pytest.raises(RuntimeError, match="plotting failed"):
        saved.result.save(out, overwrite=True)
    assert not (out / "summary.json").exists()


def test_result_helpers(saved: Saved) -> None:
    r = saved.result
    assert r.change_mask().dtype == bool and int(r.change_mask().sum()) == r.summary["results"]["changed_pixels"]
    table = r.table()
    assert len(table) == 1 and "area_m2" in list(table.columns)
    truth = np.zeros(r.grid.shape, "uint8")
    truth[BUILDING] = 1
    assert r.evaluate(truth).f1 > 0.9


@pytest.mark.parametrize(("sample", "options"), [
    ("hires_rgb", dict(threshold="p97", min_area_m2=120.0)),
    ("hires_rgb", dict(threshold=None, opening_px=0, fill_holes_m2=0.0)),
    ("s2_like", dict(threshold="kittler", min_area_m2=1000.0)),
])
def test_rethreshold_equals_a_fresh_run(sample: str, options: dict) -> None:
    """rethreshold reuses the score and gives what a fresh run with those options gives."""
    from changedet import data

    folder = data.sample_path(sample)
    first = detect_changes(folder / "before.tif", folder / "after.tif")
    opts = dict(options)
    thr = opts.pop("threshold")
    again = first.rethreshold(thr, **opts)
    fresh = detect_changes(folder / "before.tif", folder / "after.tif", threshold=thr, **opts)
    np.testing.assert_array_equal(again.mask.data, fresh.mask.data)
    assert again.threshold == fresh.threshold
    assert again.summary["parameters"] == fresh.summary["parameters"]
    assert again.summary["results"] == fresh.summary["results"]
    assert [p["area_px"] for p in again.polygons.properties] == [p["area_px"] for p in fresh.polygons.properties]
    assert again.polygons.properties == fresh.polygons.properties
    # the first result is untouched
    assert first.summary["parameters"]["threshold"] is None


def test_a_result_cannot_be_changed(scene: Scene) -> None:
    result = detect_changes(*scene.rasters())
    result.summary["results"]["n_changes"] = -1
    assert result.summary["results"]["n_changes"] == result.n_changes
    for arr in (result.mask.data, result.score.data, result.before.data, result.after.data, *result.layers.values()):
        with pytest.raises(ValueError, match="read-only"):
            arr[..., 0] = 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.threshold = 0.0  # type: ignore[misc]


def test_rethreshold_refuses_a_windowed_result(tmp_path: Path) -> None:
    from changedet import data

    folder = data.sample_path("s2_like")
    win = detect_changes(folder / "before.tif", folder / "after.tif", tiled=True, out=tmp_path / "w", progress=False)
    with pytest.raises(InvalidParameterError, match="only an in-memory result holds"):
        win.rethreshold("p99")


def test_the_in_memory_window_takes_the_pair_the_fit_registered(monkeypatch) -> None:
    """The in-memory run is the window processor on the pair the fit registered: the after image is
    shifted and the class layers' indices computed once, and the window equals one computed afresh."""
    import numpy as np

    from changedet import window as _window
    from changedet.raster import Grid
    from changedet.spec import make_spec, run_options
    from affine import Affine

    rng = np.random.default_rng(3)
    b = rng.uniform(500, 900, size=(4, 96, 96)).astype("float32")
    a = (np.roll(b, 1, axis=2) * 1.05 + rng.normal(0, 4, size=b.shape)).astype("float32")
    a[:, 30:50, 30:50] += 700
    spec = make_spec(run_options(coregister=True), Grid((96, 96), Affine(10, 0, 0, 0, -10, 0), "EPSG:32639"),
                     ["B02", "B03", "B04", "B08"])
    calls = []
    real = _window._register
    monkeypatch.setattr(_window, "_register", lambda *a_, **k: calls.append(1) or real(*a_, **k))
    fit = _window.fit_run(spec, [_window.SampleBlock(b, a)], whole=True)
    assert fit.sample_pair is not None and len(calls) == 1
    reused = _window.process_window(spec, fit, b, a, keep=True)
    assert len(calls) == 1  # taken from the fit
    fresh = _window.process_window(spec, fit, b.copy(), a.copy(), keep=True)  # other arrays: registered again
    assert len(calls) == 2
    np.testing.assert_array_equal(reused.score, fresh.score)
    np.testing.assert_array_equal(reused.after, fresh.after)
    assert reused.layers.keys() == fresh.layers.keys()
    for k in reused.layers:
        np.testing.assert_array_equal(reused.layers[k], fresh.layers[k])
    assert [p.n_px for p in reused.parts] == [p.n_px for p in fresh.parts]
