"""Tests for changedet.io: reading files and band folders, every bad input, atomic writers."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

from conftest import BANDS, ORIGIN, S2_FILES, UTM39, PairFiles, Scene
from changedet import io
from changedet.errors import EmptyDataError, InvalidParameterError, RasterReadError
from changedet.io import atomic_path, band_code, read_band_folder, read_raster, sha256, write_gpkg, write_json, write_raster
from changedet.raster import GeoRaster

S2_ORDER = ("B01", "B02", "B03", "B04", "B08", "B8A", "B11")


def _normal_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


# --------------------------------------------------------------------------- GeoTIFF
def test_read_geotiff(pair_tifs: PairFiles, scene: Scene) -> None:
    r = read_raster(pair_tifs.before)
    assert r.data.dtype == np.float32
    assert r.shape == (4, 192, 224)
    assert r.band_names == BANDS  # from the band descriptions
    assert r.crs == UTM39 and r.transform == scene.transform
    # nodata (0) -> NaN in every band, only there
    assert np.isnan(r.data[:, :3, :3]).all()
    assert int(np.isnan(r.data).sum()) == 4 * 9
    expected = np.rint(scene.before)
    np.testing.assert_array_equal(r.data[:, 3:, 3:], expected[:, 3:, 3:])


def test_read_geotiff_band_selection(pair_tifs: PairFiles) -> None:
    r = read_raster(pair_tifs.after, bands=["B08", "B02"])
    full = read_raster(pair_tifs.after)
    assert r.band_names == ("B08", "B02")
    np.testing.assert_array_equal(r.data, full.data[[3, 0]])
    with pytest.raises(InvalidParameterError, match=r"after.tif' has no band\(s\) \['B11'\]; its bands are \['B02', 'B03', 'B04', 'B08'\]"):
        read_raster(pair_tifs.after, bands=["B11"])


def test_band_names_fallbacks(tmp_path: Path, make_tif) -> None:
    t = Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1])
    plain = make_tif(tmp_path / "plain.tif", np.ones((3, 4, 4)), transform=t, crs=UTM39)
    assert read_raster(plain).band_names == ("band1", "band2", "band3")
    single = make_tif(tmp_path / "T39UWB_20250612_B04.tif", np.ones((4, 4)), transform=t, crs=UTM39)
    assert read_raster(single).band_names == ("B04",)  # from the file name
    dup = make_tif(tmp_path / "dup.tif", np.ones((2, 4, 4)), transform=t, crs=UTM39, descriptions=("x", "x"))
    assert read_raster(dup).band_names == ("band1", "band2")  # duplicate descriptions are not names


def test_read_float_geotiff_with_nan_nodata(tmp_path: Path, make_tif) -> None:
    data = np.array([[[1.5, np.nan], [-2.0, 4.0]]], "float32")
    p = make_tif(tmp_path / "f.tif", data, transform=Affine(10, 0, 0, 0, -10, 0), crs=UTM39, dtype="float32", nodata=float("nan"))
    r = read_raster(p)
    np.testing.assert_array_equal(r.data, data)  # NaN == NaN for assert_array_equal


def test_folder_with_one_multiband_scene(tmp_path: Path, pair_tifs: PairFiles) -> None:
    folder = tmp_path / "fetched"
    folder.mkdir()
    (folder / "scene.tif").write_bytes(pair_tifs.after.read_bytes())
    r = read_raster(folder)
    assert r.band_names == BANDS and r.shape == (4, 192, 224)


def test_inputs_are_not_opened_for_writing(pair_tifs: PairFiles, png_pair: PairFiles) -> None:
    before = {p: (sha256(p), p.stat().st_mtime_ns) for p in (pair_tifs.before, png_pair.before)}
    listing = sorted(os.listdir(pair_tifs.before.parent))
    read_raster(pair_tifs.before)
    read_raster(png_pair.before)
    assert {p: (sha256(p), p.stat().st_mtime_ns) for p in before} == before
    assert sorted(os.listdir(pair_tifs.before.parent)) == listing  # no .aux.xml or .ovr side files


# --------------------------------------------------------------------------- band folders
def test_band_folder_resampled_to_the_finest_grid(s2_folder: Path) -> None:
    r = read_raster(s2_folder)
    assert r.band_names == S2_ORDER  # wavelength order, B8A after B08
    assert r.shape == (7, 60, 60)  # the 10 m grid
    assert r.transform == Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1]) and r.crs == UTM39
    values = {code: value for _, code, _, value in S2_FILES}
    for i, name in enumerate(r.band_names):
        # each band is a constant, so any resampling must give the constant back exactly
        assert np.isfinite(r.data[i]).all(), name
        np.testing.assert_allclose(r.data[i], values[name], atol=1e-3, err_msg=name)
    assert r.data.dtype == np.float32
    assert read_band_folder(s2_folder).band_names == S2_ORDER


def test_band_folder_resamples_a_gradient_bilinearly(tmp_path: Path, make_tif) -> None:
    """A 20 m ramp along x lands on the 10 m grid as the same ramp (interior pixels)."""
    folder = tmp_path / "bands"
    folder.mkdir()
    t10, t20 = (Affine(r, 0, ORIGIN[0], 0, -r, ORIGIN[1]) for r in (10, 20))
    make_tif(folder / "T39_B02.tif", np.full((40, 40), 500), transform=t10, crs=UTM39)
    x20 = ORIGIN[0] + 20 * (np.arange(20) + 0.5)  # pixel-centre x of the 20 m band
    make_tif(folder / "T39_B11.tif", np.tile(x20 - ORIGIN[0], (20, 1)) * 10, transform=t20, crs=UTM39)
    r = read_raster(folder)
    x10 = 10 * (np.arange(40) + 0.5)
    np.testing.assert_allclose(r.band("B11")[5:-5, 2:-2], np.tile(x10 * 10, (30, 1))[:, 2:-2], atol=0.5)


def test_band_folder_selection(s2_folder: Path) -> None:
    r = read_raster(s2_folder, bands=["B11", "B02"])
    assert r.band_names == ("B11", "B02") and r.shape == (2, 60, 60)
    with pytest.raises(InvalidParameterError, match=r"has no band\(s\) \['B05'\]; its bands are \['B01', 'B02'"):
        read_raster(s2_folder, bands=["B05"])


def test_sentinel2_zero_is_nodata_in_band_folders(tmp_path: Path, make_tif) -> None:
    folder = tmp_path / "bands"
    folder.mkdir()
    t = Affine(10, 0, 0, 0, -10, 0)
    data = np.full((4, 4), 700)
    data[0, 0] = 0
    make_tif(folder / "X_B02.tif", data, transform=t, crs=UTM39)
    make_tif(folder / "X_B03.tif", np.full((4, 4), 800), transform=t, crs=UTM39)
    r = read_raster(folder)
    assert np.isnan(r.data[0, 0, 0]) and int(np.isnan(r.data).sum()) == 1


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("S2A_OPER_MSI_L1C_TL_EPA__20160706T155721_A000849_T30UWU_B01.tif", "B01"),
        ("S2A_OPER_MSI_L1C_TL_EPA__20160706T155721_A000849_T30UWU_B8A.tif", "B8A"),
        ("S2A_OPER_MSI_L1C_TL_SGS__20160315T201048_A003809_T31UDP_B12.tif", "B12"),
        ("T30UWU_20170621T110651_B02.tif", "B02"),
        ("T31UDQ_20170829T105019_B8A.tif", "B8A"),
        ("T39UWB_20250612_B11_20m.jp2", "B11"),
        ("b8a.tif", "B8A"),
        ("B2.tif", "B02"),
        ("LC09_L2SP_167021_20240612_20240613_02_T1_SR_B4.TIF", "SR_B4"),
        ("LC09_L2SP_167021_20240612_20240613_02_T1_QA_PIXEL.TIF", "QA_PIXEL"),
        ("T39UWB_20250612_SCL_20m.tif", "SCL"),
        ("nir.tif", "nir"),
        ("scene.tif", None),
        ("notes.tif", None),
        ("T39UWB_B02_quicklook.tif", None),  # the band must be the last token
    ],
)
def test_band_code(name: str, code: str | None) -> None:
    assert band_code(name) == code


def test_band_code_on_real_oscd_names(oscd: Path) -> None:
    for city in ("rennes", "saclay_e"):
        for date in ("imgs_1", "imgs_2"):
            codes = sorted(band_code(f) for f in (oscd / city / date).glob("*.tif"))
            assert codes == sorted([f"B{i:02d}" for i in range(1, 13)] + ["B8A"]), (city, date)


# --------------------------------------------------------------------------- PNG / JPEG
def test_png_without_georeferencing(png_pair: PairFiles) -> None:
    from PIL import Image

    r = read_raster(png_pair.after)
    assert r.crs is None and r.transform == Affine.identity()
    assert r.band_names == ("red", "green", "blue")
    assert r.shape == (3, 96, 128) and r.data.dtype == np.float32
    expected = np.asarray(Image.open(png_pair.after)).transpose(2, 0, 1)
    np.testing.assert_array_equal(r.data, expected)
    assert r.grid.pixel_size_m == 1.0


def test_jpeg_without_georeferencing(tmp_path: Path) -> None:
    from PIL import Image

    rgb = np.zeros((20, 30, 3), "uint8")
    rgb[..., 0] = 200
    rgb[..., 1] = 100
    rgb[..., 2] = 30
    p = tmp_path / "photo.jpg"
    Image.fromarray(rgb).save(p, quality=95)
    r = read_raster(p)
    assert r.crs is None and r.band_names == ("red", "green", "blue") and r.shape == (3, 20, 30)
    np.testing.assert_allclose(r.data.mean(axis=(1, 2)), [200, 100, 30], atol=3)  # lossy


def test_rgba_png_drops_alpha(tmp_path: Path) -> None:
    from PIL import Image

    rgba = np.full((8, 9, 4), 120, "uint8")
    p = tmp_path / "rgba.png"
    Image.fromarray(rgba, "RGBA").save(p)
    assert read_raster(p).band_names == ("red", "green", "blue")


# --------------------------------------------------------------------------- OSCD
def test_oscd_folders_load(oscd: Path) -> None:
    expected = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
    shapes = {}
    for city in ("rennes", "saclay_e"):
        for date in ("imgs_1", "imgs_2"):
            r = read_raster(oscd / city / date)
            assert r.band_names == expected
            assert r.data.dtype == np.float32 and r.crs is not None and r.crs.is_geographic
            assert np.isfinite(r.data).mean() > 0.99
            shapes[city, date] = r.shape[1:]
    assert shapes["rennes", "imgs_1"] == shapes["rennes", "imgs_2"] == (339, 563)
    # saclay_e's two dates differ in size
    assert shapes["saclay_e", "imgs_1"] == (639, 688)
    assert shapes["saclay_e", "imgs_2"] != shapes["saclay_e", "imgs_1"]


def test_oscd_truth_is_a_pixel_grid(oscd: Path) -> None:
    truth = read_raster(oscd / "rennes" / "cm" / "rennes-cm.tif")
    assert truth.crs is None and truth.shape == (1, 339, 563)
    assert set(np.unique(truth.data).tolist()) == {1.0, 2.0}


# --------------------------------------------------------------------------- bad inputs
def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(RasterReadError, match=r"input '.*nope\.tif' does not exist; check the path"):
        read_raster(tmp_path / "nope.tif")
    with pytest.raises(RasterReadError, match=r"folder '.*nodir' does not exist"):
        read_band_folder(tmp_path / "nodir")


def test_missing_path_is_an_oserror_too(tmp_path: Path) -> None:
    with pytest.raises(OSError, match="does not exist"):
        read_raster(tmp_path / "nope.tif")


def test_text_file_named_tif(tmp_path: Path) -> None:
    p = tmp_path / "fake.tif"
    p.write_text("this is not a raster\n")
    with pytest.raises(RasterReadError, match=r"'.*fake\.tif' is not a raster GDAL can read \(.*\); pass a GeoTIFF"):
        read_raster(p)


def test_truncated_geotiff(tmp_path: Path, scene: Scene) -> None:
    # a COG keeps its header and directories first, so half of one opens but cannot be read
    full = write_raster(GeoRaster(scene.before, scene.transform, scene.crs, BANDS), tmp_path / "full.tif", dtype="uint16", nodata=0)
    data = full.read_bytes()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(RasterReadError, match=r"'.*cut\.tif' is truncated or corrupt: GDAL failed while reading pixels"):
        read_raster(cut)
    head = tmp_path / "head.tif"
    head.write_bytes(data[:200])  # the header survives but not the directory
    with pytest.raises(RasterReadError, match=r"head\.tif' is a TIFF file but truncated or corrupt: GDAL cannot read it \(.+\); download"):
        read_raster(head)


def test_truncated_plain_geotiff(tmp_path: Path, pair_tifs: PairFiles) -> None:
    # GDAL's GTiff writer puts the directory last: half a file does not even open
    data = pair_tifs.after.read_bytes()
    cut = tmp_path / "half.tif"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(RasterReadError, match=r"half\.tif' (is a TIFF file but truncated or corrupt|is truncated or corrupt)"):
        read_raster(cut)


def test_all_nodata_image(tmp_path: Path, make_tif) -> None:
    p = make_tif(tmp_path / "empty.tif", np.zeros((2, 5, 5)), transform=Affine(10, 0, 0, 0, -10, 0), crs=UTM39, nodata=0)
    with pytest.raises(EmptyDataError, match=r"empty\.tif' holds only nodata \(2 bands, 5x5 pixels\); check the file's nodata"):
        read_raster(p)


def test_folder_without_band_files(tmp_path: Path, make_tif) -> None:
    folder = tmp_path / "misc"
    folder.mkdir()
    (folder / "readme.txt").write_text("x")
    with pytest.raises(RasterReadError, match=r"holds no raster file \(\.img, .*\); pass a raster file, or a folder of band files"):
        read_raster(folder)
    t = Affine(10, 0, 0, 0, -10, 0)
    make_tif(folder / "first.tif", np.ones((4, 4)), transform=t, crs=UTM39)
    make_tif(folder / "second.tif", np.ones((4, 4)), transform=t, crs=UTM39)
    with pytest.raises(RasterReadError, match=r"holds 2 raster files but none named by band \(\*_B02\.tif \.\.\.\) and no single scene\.tif"):
        read_raster(folder)
    with pytest.raises(RasterReadError, match=r"holds no band files \(expected names ending in _B02\.tif"):
        read_band_folder(folder)


def test_folder_with_duplicate_bands(s2_folder: Path) -> None:
    src = s2_folder / "T39UWB_20250612T073621_B02.tif"
    (s2_folder / "T39UWB_20250613T073621_B02.tif").write_bytes(src.read_bytes())
    with pytest.raises(RasterReadError, match=r"holds two files for band B02: .*_B02\.tif and .*_B02\.tif; keep one image per band"):
        read_raster(s2_folder)


def test_folder_with_a_multiband_band_file(tmp_path: Path, make_tif) -> None:
    folder = tmp_path / "bands"
    folder.mkdir()
    t = Affine(10, 0, 0, 0, -10, 0)
    make_tif(folder / "X_B02.tif", np.ones((4, 4)), transform=t, crs=UTM39)
    make_tif(folder / "X_B03.tif", np.ones((2, 4, 4)), transform=t, crs=UTM39)
    with pytest.raises(RasterReadError, match=r"X_B03\.tif' has 2 bands but a band folder needs single-band files"):
        read_raster(folder)


# --------------------------------------------------------------------------- writing
def test_write_raster_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = rng.normal(size=(2, 40, 50)).astype("float32")
    data[1, 5, 7] = np.nan
    t = Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1])
    r = GeoRaster(data, t, UTM39, ("score", "other"))
    out = write_raster(r, tmp_path / "sub" / "score.tif")
    assert out == tmp_path / "sub" / "score.tif"
    back = read_raster(out)
    np.testing.assert_array_equal(back.data, data)
    assert back.crs == UTM39 and back.transform == t and back.band_names == ("score", "other")
    with rasterio.open(out) as src:
        assert src.dtypes == ("float32", "float32")
        assert np.isnan(src.nodata)
    assert stat.S_IMODE(out.stat().st_mode) == _normal_mode()
    assert sorted(p.name for p in out.parent.iterdir()) == ["score.tif"]  # no temp file left


def test_write_raster_uint8_mask_with_nodata(tmp_path: Path) -> None:
    mask = np.array([[[0, 1, np.nan], [1, 0, 0]]], "float32")
    r = GeoRaster(mask, Affine(10, 0, 0, 0, -10, 0), UTM39, ("change",))
    out = write_raster(r, tmp_path / "mask.tif", dtype="uint8")
    with rasterio.open(out) as src:
        assert src.dtypes == ("uint8",) and src.nodata == 255
        np.testing.assert_array_equal(src.read(1), [[0, 1, 255], [1, 0, 0]])
    with pytest.raises(InvalidParameterError, match="writing float data that holds NaN as uint16 needs a nodata value"):
        write_raster(r, tmp_path / "bad.tif", dtype="uint16")
    assert not (tmp_path / "bad.tif").exists()


def test_write_raster_is_a_tiled_compressed_cog_with_overviews(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    data = rng.integers(0, 2, size=(1, 1100, 1000)).astype("uint8")
    r = GeoRaster(data, Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1]), UTM39, ("change",))
    out = write_raster(r, tmp_path / "big.tif")
    with rasterio.open(out) as src:
        assert src.profile["tiled"] is True
        assert src.profile["compress"].lower() == "deflate"
        assert src.block_shapes == [(256, 256)]
        assert src.overviews(1) == [2, 4, 8]  # until the overview fits in one 256 px tile
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        np.testing.assert_array_equal(src.read(1), data[0])


def test_write_raster_pixel_grid(tmp_path: Path) -> None:
    r = GeoRaster(np.ones((3, 4, 5), "float32"), Affine.identity(), None, ("red", "green", "blue"))
    back = read_raster(write_raster(r, tmp_path / "px.tif"))
    assert back.crs is None and back.transform == Affine.identity() and back.band_names == ("red", "green", "blue")


def test_atomic_path_failure_leaves_nothing(tmp_path: Path) -> None:
    dest = tmp_path / "out.tif"
    with pytest.raises(RuntimeError, match="crash mid-write"):
        with atomic_path(dest) as tmp:
            assert tmp.parent == tmp_path and tmp != dest
            tmp.write_bytes(b"half a file")
            raise RuntimeError("crash mid-write")
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_failure_keeps_the_previous_file(tmp_path: Path) -> None:
    dest = tmp_path / "summary.json"
    dest.write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(dest) as tmp:
            tmp.write_text("new but incomplete")
            raise KeyboardInterrupt
    assert dest.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_atomic_path_success_replaces_with_normal_permissions(tmp_path: Path) -> None:
    dest = tmp_path / "a" / "b" / "x.txt"
    with atomic_path(dest) as tmp:
        tmp.write_text("done")
        assert not dest.exists()  # nothing visible until the block completes
    assert dest.read_text() == "done"
    assert stat.S_IMODE(dest.stat().st_mode) == _normal_mode()
    assert [p.name for p in dest.parent.iterdir()] == ["x.txt"]


def test_write_raster_failure_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    r = GeoRaster(np.ones((1, 4, 4), "float32"), Affine(10, 0, 0, 0, -10, 0), UTM39)

    def broken(*args, **kwargs):
        raise rasterio.errors.RasterioIOError("disk full")

    monkeypatch.setattr(io.rasterio, "open", broken)
    with pytest.raises(rasterio.errors.RasterioIOError, match="disk full"):
        write_raster(r, tmp_path / "x.tif")
    assert list(tmp_path.iterdir()) == []


def test_write_json(tmp_path: Path) -> None:
    obj = {"n": np.int64(3), "x": np.float32(0.5), "a": np.arange(3), "p": Path("/tmp/x"), "none": None}
    p = write_json(obj, tmp_path / "s.json")
    assert json.loads(p.read_text()) == {"n": 3, "x": 0.5, "a": [0, 1, 2], "p": "/tmp/x", "none": None}
    assert stat.S_IMODE(p.stat().st_mode) == _normal_mode()
    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        write_json({"x": float("nan")}, tmp_path / "nan.json")
    with pytest.raises(TypeError, match="object is not JSON serialisable"):
        write_json({"x": object()}, tmp_path / "obj.json")
    assert sorted(f.name for f in tmp_path.iterdir()) == ["s.json"]


def test_write_geojson_validates(tmp_path: Path) -> None:
    with pytest.raises(InvalidParameterError, match="write_geojson needs a dict with type 'FeatureCollection'"):
        io.write_geojson({"type": "Feature"}, tmp_path / "f.geojson")
    p = io.write_geojson({"type": "FeatureCollection", "features": []}, tmp_path / "fc.geojson")
    assert json.loads(p.read_text()) == {"type": "FeatureCollection", "features": []}


def test_write_gpkg_round_trip(tmp_path: Path) -> None:
    import pyogrio
    from shapely.geometry import box

    geoms = [box(500_000, 6_199_000, 500_100, 6_199_060), box(500_200, 6_199_000, 500_210, 6_199_010)]
    props = [{"area_m2": 6000.0, "change_class": "new_construction", "bbox": (1.0, 2.0, 3.0, 4.0)},
             {"area_m2": 100.0, "change_class": None, "bbox": None}]
    p = write_gpkg(geoms, props, tmp_path / "c.gpkg", crs=UTM39)
    assert p == tmp_path / "c.gpkg"
    info = pyogrio.read_info(p, layer="changes")
    assert info["features"] == 2
    assert CRS.from_user_input(info["crs"]).to_epsg() == 32639
    meta, _, geometry, fields = pyogrio.raw.read(p, layer="changes")
    assert list(meta["fields"]) == ["area_m2", "change_class", "bbox"]
    np.testing.assert_array_equal(fields[0], [6000.0, 100.0])
    assert json.loads(fields[2][0]) == [1.0, 2.0, 3.0, 4.0]
    assert sorted(f.name for f in tmp_path.iterdir()) == ["c.gpkg"]


def test_sha256(tmp_path: Path) -> None:
    p = tmp_path / "x.txt"
    p.write_bytes(b"abc")
    assert sha256(p) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "a_B02.tif").write_bytes(b"1")
    h1 = sha256(folder)
    (folder / "a_B02.tif").write_bytes(b"2")
    h2 = sha256(folder)
    (folder / "a_B02.tif").rename(folder / "b_B02.tif")
    assert len({h1, h2, sha256(folder)}) == 3  # content and names both count


def test_detect_does_not_modify_its_inputs(pair_tifs: PairFiles, s2_folder: Path, tmp_path: Path) -> None:
    from changedet.pipeline import detect_changes

    hashes = {p: sha256(p) for p in (pair_tifs.before, pair_tifs.after)}
    listing = sorted(os.listdir(pair_tifs.before.parent))
    result = detect_changes(pair_tifs.before, pair_tifs.after)
    result.save(tmp_path / "result")
    assert {p: sha256(p) for p in hashes} == hashes
    assert sorted(os.listdir(pair_tifs.before.parent)) == sorted([*listing, "result"])
    assert result.summary["inputs"]["before"]["sha256"] == hashes[pair_tifs.before]


def test_write_raster_float_without_nan_as_integer_needs_no_nodata(tmp_path: Path) -> None:
    r = GeoRaster(np.array([[[1.0, 2.0], [3.0, 4.0]]], "float32"), Affine(10, 0, 0, 0, -10, 0), UTM39, ("b",))
    out = write_raster(r, tmp_path / "ints.tif", dtype="uint16")
    with rasterio.open(out) as src:
        assert src.dtypes == ("uint16",) and src.nodata is None
        np.testing.assert_array_equal(src.read(1), [[1, 2], [3, 4]])


# --------------------------------------------------------------------------- WindowedWriter
def _windows(rows: int, cols: int, size: int):
    from rasterio.windows import Window

    for r0 in range(0, rows, size):
        for c0 in range(0, cols, size):
            yield Window(c0, r0, min(size, cols - c0), min(size, rows - r0))


@pytest.mark.parametrize("size", [128, 100])
def test_windowed_writer_cog_with_window_made_overviews(tmp_path: Path, size: int) -> None:
    """Scores written window by window (in any order, from several threads, windows aligned
    with the tiles or not) come out whole as a COG GDAL reads, with GDAL's layout mark,
    georeferencing and band name, whose overviews are the NaN-ignoring block means."""
    from concurrent.futures import ThreadPoolExecutor

    from changedet.raster import Grid

    rows, cols = 1300, 1100
    grid = Grid((rows, cols), Affine(10, 0, 500000, 0, -10, 6200000), CRS.from_epsg(32639))
    rng = np.random.default_rng(1)
    data = rng.normal(size=(rows, cols)).astype("float32")
    data[100:300, 200:700] = np.nan
    w = io.WindowedWriter(tmp_path / "score.tif", grid, dtype="float32", nodata=float("nan"), band_names=("score",))
    assert w.factors == [2, 4]  # as GDAL's COG driver: halve until one 512 block holds the level
    wins = list(_windows(rows, cols, size))
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda win: w.write(
            data[win.row_off : win.row_off + win.height, win.col_off : win.col_off + win.width][None], win), wins[::-1]))
    assert not (tmp_path / "score.tif").exists()  # nothing at the destination before commit
    w.commit()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["score.tif"]  # scratch files gone
    with rasterio.open(tmp_path / "score.tif") as src:
        assert src.overviews(1) == [2, 4] and src.descriptions == ("score",) and src.profile["tiled"]
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"  # GDAL's mark of a cloud-optimized layout
        assert src.compression.name.upper() == "ZSTD" and src.block_shapes == [(512, 512)]
        assert src.crs == grid.crs and src.transform == grid.transform and np.isnan(src.nodata)
        np.testing.assert_array_equal(src.read(1), data)
        ovr = src.read(1, out_shape=(rows // 4, cols // 4))
    blocks = data.reshape(rows // 4, 4, cols // 4, 4)
    with np.errstate(invalid="ignore"), pytest.warns(RuntimeWarning):
        expected = np.nanmean(blocks, axis=(1, 3))
    np.testing.assert_allclose(ovr, expected, rtol=1e-5, atol=1e-6, equal_nan=True)
    _check_cog_layout((tmp_path / "score.tif").read_bytes())


def test_windowed_writer_integer_cog_is_what_gdal_validates(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A uint8 mask: nearest overviews, nodata in every level, and the layout GDAL's
    COG driver writes (every IFD before the data, the smallest overview's tiles first,
    each tile with its size before it and its last 4 bytes after it)."""
    from changedet.raster import Grid

    rows, cols = 1500, 2100
    grid = Grid((rows, cols), Affine(2.5, 0, 300000, 0, -2.5, 5000000), CRS.from_epsg(32633))
    rng = np.random.default_rng(2)
    data = (rng.random((rows, cols)) < 0.2).astype("uint8")
    data[:40] = 255
    w = io.WindowedWriter(tmp_path / "mask.tif", grid, dtype="uint8", nodata=255, band_names=("change",))
    for win in _windows(rows, cols, 300):
        w.write(data[None, win.row_off : win.row_off + win.height, win.col_off : win.col_off + win.width], win)
    w.commit()
    with rasterio.open(tmp_path / "mask.tif") as src:
        assert src.nodata == 255 and src.dtypes == ("uint8",) and src.overviews(1) == [2, 4, 8]
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        np.testing.assert_array_equal(src.read(1), data)
        np.testing.assert_array_equal(src.read(1, out_shape=(-(-rows // 2), -(-cols // 2))), data[::2, ::2])
    _check_cog_layout((tmp_path / "mask.tif").read_bytes())
    assert not [r.getMessage() for r in caplog.records if r.levelname in ("WARNING", "ERROR")]  # GDAL did not complain


def _check_cog_layout(raw: bytes) -> None:
    """The rules of GDAL's validate_cloud_optimized_geotiff.py, on a little-endian classic TIFF:
    every IFD before the tile data, the overviews' tiles before the full resolution's and
    from the smallest level up, each level's tiles in row-major order, each tile with its
    size before it and its last 4 bytes after it."""
    import struct

    assert raw[:4] == b"II*\x00" and raw[8:38] == b"GDAL_STRUCTURAL_METADATA_SIZE="
    at = struct.unpack_from("<I", raw, 4)[0]
    ifds, levels = [], []
    while at:
        ifds.append(at)
        n = struct.unpack_from("<H", raw, at)[0]
        tags = {}
        for i in range(n):
            tag, typ, count, field = struct.unpack_from("<HHI4s", raw, at + 2 + 12 * i)
            if tag in (324, 325):
                vals = struct.unpack(f"<{count}I", field if count == 1 else raw[
                    struct.unpack("<I", field)[0] : struct.unpack("<I", field)[0] + 4 * count])
                tags[tag] = list(vals)
        levels.append(list(zip(tags[324], tags[325])))
        at = struct.unpack_from("<I", raw, at + 2 + 12 * n)[0]
    assert len(levels) >= 2 and max(ifds) < min(off for lv in levels for off, _ in lv)
    for lv in levels:
        assert [off for off, _ in lv] == sorted(off for off, _ in lv)  # row-major
        for off, size in lv:
            assert struct.unpack_from("<I", raw, off - 4)[0] == size  # leader
            assert raw[off + size : off + size + 4] == raw[off + size - 4 : off + size]  # trailer
    for bigger, smaller in zip(levels, levels[1:]):
        assert max(off for off, _ in smaller) < min(off for off, _ in bigger)  # smallest level first


def test_windowed_writer_unfilled_strip_is_not_published(tmp_path: Path) -> None:
    from rasterio.windows import Window

    from changedet.raster import Grid

    grid = Grid((64, 64), Affine(10, 0, 500000, 0, -10, 6200000), CRS.from_epsg(32639))
    w = io.WindowedWriter(tmp_path / "m.tif", grid, dtype="uint8", nodata=255, band_names=("change",))
    w.write(np.ones((1, 32, 32), "uint8"), Window(0, 0, 32, 32))  # a quarter of the only tile row
    with pytest.raises(RuntimeError, match="never filled"):
        w.commit()
    assert list(tmp_path.iterdir()) == []
    w2 = io.WindowedWriter(tmp_path / "m.tif", grid, dtype="uint8", nodata=255, band_names=("change",))
    with pytest.raises(ValueError, match="does not fit"):
        w2.write(np.ones((1, 32, 40), "uint8"), Window(32, 0, 40, 32))
    w2.abort()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("bigtiff, kernel_copy", [(False, True), (True, True), (False, False)])
def test_streaming_cog_bands_types_and_bigtiff(tmp_path: Path, bigtiff: bool, kernel_copy: bool,
                                               caplog: pytest.LogCaptureFixture,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Several bands (pixel-interleaved), a signed type, a nodata value, edge tiles, the
    BigTIFF form (used past 4 GB, forced here), and the tiles copied through a buffer
    where the kernel cannot copy them: GDAL reads back every pixel."""
    from changedet import _cog

    if not kernel_copy:
        def no_copy_file_range(*args: object) -> int:
            raise OSError("not supported here")

        monkeypatch.setattr(_cog.os, "copy_file_range", no_copy_file_range, raising=False)

    rows, cols = 700, 1030
    rng = np.random.default_rng(3)
    data = rng.integers(-3000, 3000, size=(2, rows, cols)).astype("int16")
    cog = _cog.StreamingCOG(tmp_path / "x.tif", height=rows, width=cols, dtype="int16", band_names=("a", "b"),
                            crs=CRS.from_epsg(32639), transform=Affine(20, 0, 500000, 0, -20, 6200000), nodata=-9999)
    for r0 in range(0, rows, 250):
        for c0 in range(0, cols, 400):
            cog.write(data[:, r0 : r0 + 250, c0 : c0 + 400], r0, c0)
    cog.commit(tmp_path / "x.tif", bigtiff=bigtiff)
    cog.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.tif"]
    assert (tmp_path / "x.tif").read_bytes()[:4] == (b"II+\x00" if bigtiff else b"II*\x00")
    with rasterio.open(tmp_path / "x.tif") as src:
        assert src.count == 2 and src.dtypes == ("int16", "int16") and src.nodata == -9999
        assert src.descriptions == ("a", "b") and src.overviews(1) == [2, 4]
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        np.testing.assert_array_equal(src.read(), data)
        np.testing.assert_array_equal(src.read(out_shape=(2, rows // 2, -(-cols // 2))), data[:, ::2, ::2])
    assert not [r.getMessage() for r in caplog.records if r.levelname in ("WARNING", "ERROR")]  # GDAL did not complain


def test_write_gpkg_is_a_geopackage_gdal_reads_with_its_index(tmp_path: Path) -> None:
    import sqlite3

    import pyogrio
    import shapely
    from shapely.geometry import MultiPolygon, box

    geoms = [box(0, 0, 10, 10), MultiPolygon([box(20, 20, 30, 30), box(40, 40, 45, 45)])]
    props = [{"n": 1, "score": 0.5, "ok": True, "cls": "new"}, {"n": 2, "score": None, "ok": False, "cls": None}]
    p = write_gpkg(geoms, props, tmp_path / "c.gpkg", crs=UTM39)
    info = pyogrio.read_info(p, layer="changes")
    assert info["geometry_type"] == "MultiPolygon" and info["features"] == 2
    assert list(info["dtypes"]) == ["int64", "float64", "bool", "object"]  # a float column with None stays REAL
    assert info["total_bounds"] == pytest.approx((0.0, 0.0, 45.0, 45.0))
    assert info["capabilities"]["fast_spatial_filter"]  # GDAL found the R-tree index
    meta, _, wkb, fields = pyogrio.raw.read(p, layer="changes", bbox=(35, 35, 50, 50))
    assert len(wkb) == 1 and shapely.from_wkb(wkb[0]).equals(geoms[1])
    assert fields[0].tolist() == [2] and np.isnan(fields[1][0])
    with sqlite3.connect(p) as con:
        assert con.execute("PRAGMA application_id").fetchone()[0] == 0x47504B47
        assert con.execute('SELECT count(*) FROM "rtree_changes_geom"').fetchone()[0] == 2
    empty = write_gpkg([], [], tmp_path / "e.gpkg", crs="EPSG:4326")
    assert pyogrio.read_info(empty)["features"] == 0
    with pytest.raises(InvalidParameterError, match="'fid' and 'geom'"):
        write_gpkg(geoms[:1], [{"geom": 1}], tmp_path / "x.gpkg", crs=UTM39)


def test_write_geojson_in_chunks_writes_the_same_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from changedet import io

    feats = [{"type": "Feature", "id": k, "geometry": {"type": "Point", "coordinates": [k * 0.5, -k]},
              "properties": {"name": f"é{k}", "v": None}} for k in range(7)]
    fc = {"type": "FeatureCollection", "features": feats, "changedet:coordinates": "pixel"}
    monkeypatch.setattr(io, "_FEATURES_PER_CHUNK", 3)
    p = io.write_geojson(fc, tmp_path / "c.geojson")
    assert p.read_text(encoding="utf-8") == json.dumps(fc, allow_nan=False) + "\n"
    with pytest.raises(ValueError):
        io.write_geojson({"type": "FeatureCollection", "features": [{"v": float("nan")}] * 5}, tmp_path / "n.geojson")
    assert sorted(f.name for f in tmp_path.iterdir()) == ["c.geojson"]


# --------------------------------------------------------------------------- what a header check must not refuse
@pytest.mark.parametrize(
    "profile",
    [
        dict(count=3, dtype="uint8", photometric="YCBCR", compress="jpeg", tiled=True, blockxsize=16, blockysize=16),
        dict(count=1, dtype="uint8", nbits=1),  # a bilevel mask
        dict(count=1, dtype="uint16", nbits=12),  # 12-bit sensor data
        dict(count=1, dtype="int8"),
        dict(count=2, dtype="float64", compress="zstd", predictor=3),
        dict(count=4, dtype="uint16", photometric="RGB", alpha="unspecified", compress="lzw"),
        dict(count=1, dtype="uint8", photometric="PALETTE"),
        dict(count=1, dtype="uint8", photometric="MINISWHITE", compress="packbits"),
        dict(count=1, dtype="int16", BIGTIFF="YES", compress="deflate"),
    ],
    ids=["ycbcr_jpeg", "nbits1", "nbits12", "int8", "float64_zstd", "rgba_lzw", "palette", "miniswhite", "bigtiff"],
)
def test_legitimate_tiffs_pass_the_header_checks(profile: dict, tmp_path: Path) -> None:
    import warnings

    import rasterio

    path = tmp_path / "ok.tif"
    rng = np.random.default_rng(0)
    count, dtype = profile["count"], np.dtype(profile["dtype"])
    hi = 2 if profile.get("nbits") == 1 else (4096 if profile.get("nbits") == 12 else 100)
    data = rng.integers(0, hi, (count, 32, 32)).astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(path, "w", driver="GTiff", width=32, height=32, crs="EPSG:32639",
                           transform=Affine(10, 0, 500000, 0, -10, 6000000), **profile) as dst:
            dst.write(data)
            if profile.get("photometric") == "PALETTE":
                dst.write_colormap(1, {i: (i, i, i, 255) for i in range(256)})
    r = read_raster(path)
    assert r.shape[1:] == (32, 32) and np.isfinite(r.data).any()


def test_a_large_constant_file_is_no_bomb(tmp_path: Path) -> None:
    """Deflate packs a constant image about 1000:1; a file is a bomb only far past that (BOMB_RATIO)."""
    import rasterio

    from changedet import io as cio

    path = tmp_path / "flat.tif"
    with rasterio.open(path, "w", driver="GTiff", width=8192, height=8192, count=1, dtype="uint16", compress="deflate",
                       tiled=True, crs="EPSG:32639", transform=Affine(10, 0, 500000, 0, -10, 6000000)) as dst:
        dst.write(np.full((1, 8192, 8192), 7, "uint16"))
    ratio = 8192 * 8192 * 2 / path.stat().st_size
    assert 100 < ratio < cio.BOMB_RATIO
    grid, names = cio.raster_grid(path)
    assert grid.shape == (8192, 8192) and names == ("band1",)


def test_decoding_warnings_are_pinned_on_the_file_that_raised_them(tmp_path: Path) -> None:
    """Two reads at once (the windowed path's threads): GDAL's warnings about a corrupt file's
    tiles fail that file's read, never the good file's read that ends after it."""
    import threading

    import rasterio

    from changedet import io as cio

    good, bad = tmp_path / "good.tif", tmp_path / "bad.tif"
    for p in (good, bad):
        with rasterio.open(p, "w", driver="GTiff", width=64, height=64, count=1, dtype="uint16", tiled=True,
                           blockxsize=16, blockysize=16, compress="packbits", crs="EPSG:32639",
                           transform=Affine(10, 0, 500000, 0, -10, 6000000)) as dst:
            dst.write(np.random.default_rng(1).integers(500, 3000, (1, 64, 64)).astype("uint16"))
    data = bytearray(bad.read_bytes())
    rng = np.random.default_rng(5)
    for i in range(2000, len(data) - 2000, 7):
        data[i] = int(rng.integers(0, 256))
    bad.write_bytes(bytes(data))

    entered, bad_done = threading.Event(), threading.Event()
    outcome: dict[str, BaseException | None] = {}

    def read_good() -> None:
        try:
            with cio._decoding(good), rasterio.open(good) as src:
                src.read()
                entered.set()
                bad_done.wait(30)  # ends after the bad read, with the bad file's warnings in the log
            outcome["good"] = None
        except BaseException as exc:  # noqa: BLE001 - reported below
            outcome["good"] = exc

    t = threading.Thread(target=read_good)
    t.start()
    assert entered.wait(30)
    with pytest.raises(RasterReadError, match=r"bad\.tif' is corrupt: GDAL could not decode"):
        try:
            with cio._decoding(bad), rasterio.open(bad) as src:
                src.read()
        finally:
            bad_done.set()
    t.join(30)
    assert outcome == {"good": None}


@pytest.mark.parametrize("url", ["https://example.org/site/before.tif", "s3://bucket/site/before.tif",
                                 "gs://bucket/site/before.tif", "/vsizip/site.zip/before.tif"])
def test_every_part_of_the_package_takes_a_remote_input_for_remote(url, tmp_path, monkeypatch):
    """One test of what is remote (``changedet._paths.is_remote``): the reader hands it to GDAL
    as it is (http through /vsicurl/), and the hash, the dates, the re-run record and the
    report's provenance leave it alone, where a path of that name would be looked for on disk
    (gs:// was remote to the re-run record and a missing local file to the reader)."""
    from changedet import _dates, _outdir, pipeline, report
    from changedet._paths import is_remote

    monkeypatch.chdir(tmp_path)  # a relative path of that name does not exist here either
    assert is_remote(url) and is_remote(Path(url) if url.startswith("/vsi") else url)
    gdal = io._gdal_path(url)
    assert isinstance(gdal, str) and gdal == (f"/vsicurl/{url}" if url.startswith("http") else url)
    assert io._local_file(url) is None
    assert pipeline.input_hashes(url) == [None]
    assert _dates.acquisition_date(url)[0] is None
    assert _outdir.fingerprint(url) == {"path": url, "url": True}
    assert report._hash_here(url, cap_mb=1.0) == (None, "remote input: not hashed")
    assert not is_remote("site/before.tif") and not is_remote(tmp_path / "before.tif") and not is_remote(None)
