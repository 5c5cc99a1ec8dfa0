"""The windowed path: same results as in memory, whole polygons across window edges."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from scipy import ndimage

from changedet.cli import main
from changedet.errors import InvalidParameterError, NoOverlapError
from changedet.io import read_raster
from changedet.change import METHODS
from changedet.pipeline import OUTPUT_FILES, detect_changes
from changedet.tiling import plan_windows

BANDS = ("B02", "B03", "B04", "B08")
T10 = Affine(10, 0, 500000, 0, -10, 6190000)


def _write(path: Path, data: np.ndarray, transform: Affine = T10, *, nodata: float | None = None) -> Path:
    with rasterio.open(
        path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0], dtype="uint16",
        crs="EPSG:32639", transform=transform, tiled=True, blockxsize=64, blockysize=64, nodata=nodata,
    ) as dst:
        dst.write(np.clip(data, 0, 65535).astype("uint16"))
        for i, n in enumerate(BANDS, start=1):
            dst.set_band_description(i, n)
    return path


@pytest.fixture(scope="module")
def scene_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, np.ndarray]:
    """A 400 x 360 scene with changes that straddle window edges (windows of 64 px), a
    0.6 px shift of the after image and a nodata corner."""
    root = tmp_path_factory.mktemp("scene")
    rng = np.random.default_rng(7)
    base = ndimage.gaussian_filter(rng.normal(size=(4, 400, 360)), (0, 2, 2))
    before = 900 + 300 * base / base.std()
    before[3] += 1200
    after = before * np.array([1.1, 1.05, 0.95, 0.9])[:, None, None] + 25 + rng.normal(0, 12, before.shape)
    truth = np.zeros((400, 360), bool)
    for r0, c0, h, w in [(60, 60, 10, 12), (120, 30, 8, 90), (190, 180, 40, 40), (250, 120, 6, 200), (300, 300, 30, 20)]:
        truth[r0 : r0 + h, c0 : c0 + w] = True  # several cross the 64-px window seams
    after[:3, truth] = 2800
    after[3, truth] = 2300
    after = ndimage.shift(after, (0, 0.6, 0.0), order=1, mode="nearest")
    before[:, :20, :30] = 0  # nodata corner
    return _write(root / "before.tif", before, nodata=0), _write(root / "after.tif", after, nodata=0), truth


def test_plan_windows_cover_the_grid_once() -> None:
    plans = plan_windows((130, 100), size=32, halo=5)
    cover = np.zeros((130, 100), int)
    for p in plans:
        cover[int(p.core.row_off) : int(p.core.row_off + p.core.height), int(p.core.col_off) : int(p.core.col_off + p.core.width)] += 1
        assert p.outer.row_off <= p.core.row_off and p.outer.col_off <= p.core.col_off
    assert (cover == 1).all()
    with pytest.raises(InvalidParameterError, match="window size"):
        plan_windows((10, 10), size=4)


@pytest.mark.parametrize("method", sorted(m for m in METHODS if m not in ("index:bsi", "index:ndbi")))  # no swir here
def test_windowed_equals_in_memory(scene_pair: tuple[Path, Path, np.ndarray], tmp_path: Path, method: str) -> None:
    """Every method, imad and pca-kmeans included: the windowed run (64 px windows, so
    changes straddle seams) gives the in-memory result, pixel for pixel."""
    before, after, truth = scene_pair
    mem = detect_changes(before, after, method=method, tiled=False)
    win = detect_changes(before, after, method=method, tiled=True, out=tmp_path / "w", window_px=64, progress=False)
    assert win.summary["tiling"]["windows"] > 20
    assert win.summary["tiling"]["path"] == "windowed"
    assert win.summary["tiling"]["method_statistics"].startswith("global")
    assert win.summary["coregistration"] == mem.summary["coregistration"]
    mask = read_raster(tmp_path / "w" / "change_mask.tif").data[0]
    score = read_raster(tmp_path / "w" / "change_score.tif").data[0]
    np.testing.assert_array_equal(np.nan_to_num(mask, nan=255), mem.mask.data[0])
    np.testing.assert_array_equal(score, mem.score.data[0])
    assert win.threshold == mem.threshold
    # polygons that cross window edges come out whole: same count, areas and classes
    key = lambda p: (p["area_m2"], p["change_class"], round(p["mean_score"], 4))  # noqa: E731
    assert sorted(map(key, win.polygons.properties)) == sorted(map(key, mem.polygons.properties))
    assert len(win.polygons) >= 5


def test_windowed_small_windows_many_seams(scene_pair: tuple[Path, Path, np.ndarray], tmp_path: Path) -> None:
    before, after, truth = scene_pair
    mem = detect_changes(before, after, method="cva", tiled=False)
    win = detect_changes(before, after, tiled=True, out=tmp_path / "w", method="cva", window_px=37, progress=False)
    assert win.summary["tiling"]["windows"] > 100
    mask = read_raster(tmp_path / "w" / "change_mask.tif").data[0]
    np.testing.assert_array_equal(np.nan_to_num(mask, nan=255), mem.mask.data[0])
    assert sorted(p["area_px"] for p in win.polygons.properties) == sorted(p["area_px"] for p in mem.polygons.properties)


def test_windowed_outputs_are_cogs_and_complete(scene_pair: tuple[Path, Path, np.ndarray], tmp_path: Path) -> None:
    before, after, _ = scene_pair
    out = tmp_path / "out"
    res = detect_changes(before, after, method="cva", tiled=True, out=out)
    assert {p.name for p in out.iterdir()} == set(OUTPUT_FILES) - {"structures.geojson"}  # windowed: no count
    with rasterio.open(out / "change_mask.tif") as src:
        assert src.profile["tiled"] and src.compression is not None
        assert src.dtypes == ("uint8",) and src.nodata == 255
        assert src.read(1)[5, 5] == 255  # nodata corner
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
    with rasterio.open(out / "change_score.tif") as src:
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG" and src.dtypes == ("float32",)
        assert np.isnan(src.nodata) and src.descriptions == ("score",)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["results"]["n_changes"] == res.n_changes
    assert summary["inputs"]["before"]["sha256"]
    with pytest.raises(FileExistsError, match="already holds a finished result"):
        detect_changes(before, after, method="cva", tiled=True, out=out)


def test_windowed_default_method_runs(scene_pair: tuple[Path, Path, np.ndarray], tmp_path: Path) -> None:
    before, after, truth = scene_pair
    res = detect_changes(before, after, tiled=True, out=tmp_path / "auto")
    found = read_raster(tmp_path / "auto" / "change_mask.tif").data[0] == 1
    tp = (found & truth).sum()
    assert tp / truth.sum() > 0.7, res.summary["results"]


def test_windowed_needs_files_and_out(scene_pair: tuple[Path, Path, np.ndarray]) -> None:
    before, after, _ = scene_pair
    with pytest.raises(InvalidParameterError, match="out="):
        detect_changes(before, after, tiled=True)
    r = read_raster(before)
    with pytest.raises(InvalidParameterError, match="file paths"):
        detect_changes(r, r, tiled=True, out="x")


def test_windowed_no_overlap(tmp_path: Path, scene_pair: tuple[Path, Path, np.ndarray]) -> None:
    before, _, _ = scene_pair
    far = _write(tmp_path / "far.tif", np.full((4, 50, 50), 1000.0), Affine(10, 0, 900000, 0, -10, 6190000))
    with pytest.raises(NoOverlapError, match="do not overlap"):
        detect_changes(before, far, tiled=True, out=tmp_path / "x")
    assert not (tmp_path / "x" / "summary.json").exists()


def test_cli_tiled_flag(scene_pair: tuple[Path, Path, np.ndarray], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before, after, _ = scene_pair
    assert main(["detect", str(before), str(after), "--out", str(tmp_path / "c"), "--tiled", "--method", "cva"]) == 0
    summary = json.loads((tmp_path / "c" / "summary.json").read_text())
    assert summary["tiling"]["path"] == "windowed"
    assert main(["detect", str(before), str(after), "--out", str(tmp_path / "d"), "--tiled", "--truth", str(before)]) == 2
    assert "--in-memory" in capsys.readouterr().err


def test_windowed_equals_in_memory_high_resolution_rgb(tmp_path: Path) -> None:
    """The structural (SSIM + colour) branch of auto on the 1 m sample, cut into 200 px windows."""
    from changedet.data import sample_path
    folder = sample_path("hires_rgb")
    mem = detect_changes(folder / "before.tif", folder / "after.tif", tiled=False)
    win = detect_changes(folder / "before.tif", folder / "after.tif", tiled=True, out=tmp_path / "w", window_px=200,
                         progress=False)
    assert win.summary["method_details"]["auto_choice"] == mem.summary["method_details"]["auto_choice"] == "structure+colour"
    mask = read_raster(tmp_path / "w" / "change_mask.tif").data[0]
    np.testing.assert_array_equal(np.nan_to_num(mask, nan=255), mem.mask.data[0])
    assert win.n_changes == mem.n_changes


def test_windowed_equals_in_memory_sub_metre_rgb(tmp_path: Path) -> None:
    """Below 1 m the structural branch adds the shift-tolerant colour change and the vegetation
    weight: the 1 m sample put on a 0.5 m grid, cut into 200 px windows, gives the in-memory result."""
    from changedet.data import sample_path
    folder = sample_path("hires_rgb")
    paths = []
    for name in ("before.tif", "after.tif"):
        with rasterio.open(folder / name) as ds:
            profile, data, names = ds.profile, ds.read(), ds.descriptions
        t = profile["transform"]
        profile.update(transform=Affine(0.5, 0, t.c, 0, -0.5, t.f))
        with rasterio.open(tmp_path / name, "w", **profile) as dst:
            dst.write(data)
            for i, n in enumerate(names, start=1):
                if n:
                    dst.set_band_description(i, n)
        paths.append(tmp_path / name)
    mem = detect_changes(*paths, tiled=False)
    win = detect_changes(*paths, tiled=True, out=tmp_path / "w", window_px=200, progress=False)
    assert win.summary["tiling"]["windows"] > 4
    assert win.summary["method_details"]["shift_tolerance_px"] == mem.summary["method_details"]["shift_tolerance_px"] == 1
    assert "vegetation" in mem.summary["method_details"]["suppressed"]
    mask = read_raster(tmp_path / "w" / "change_mask.tif").data[0]
    score = read_raster(tmp_path / "w" / "change_score.tif").data[0]
    np.testing.assert_array_equal(np.nan_to_num(mask, nan=255), mem.mask.data[0])
    np.testing.assert_array_equal(score, mem.score.data[0])
    assert win.n_changes == mem.n_changes and mem.n_changes > 0


def test_windowed_float_inputs_with_nodata_value(scene_pair: tuple[Path, Path, np.ndarray], tmp_path: Path) -> None:
    """Float32 files whose nodata is a value (-9999): the windowed path reads those pixels as
    nodata, as the in-memory path does (a float32 shortcut once passed -9999 on as data)."""
    paths = []
    for src in scene_pair[:2]:
        with rasterio.open(src) as ds:
            data = ds.read().astype("float32")
            profile = ds.profile
        data[data == 0] = -9999  # the nodata corner
        profile.update(dtype="float32", nodata=-9999)
        dst = tmp_path / f"{src.stem}_f32.tif"
        with rasterio.open(dst, "w", **profile) as out:
            out.write(data)
            for i, n in enumerate(BANDS, start=1):
                out.set_band_description(i, n)
        paths.append(dst)
    mem = detect_changes(*paths, method="cva", tiled=False)
    win = detect_changes(*paths, method="cva", tiled=True, out=tmp_path / "w")
    mask = read_raster(tmp_path / "w" / "change_mask.tif").data[0]
    np.testing.assert_array_equal(np.nan_to_num(mask, nan=255), mem.mask.data[0])
    assert (mem.mask.data[0][:20, :30] == 255).all()  # the corner is nodata, not a change
    assert win.summary["results"]["valid_pixels"] == mem.summary["results"]["valid_pixels"] < 400 * 360


@pytest.mark.parametrize("tiled", [True, False])
def test_a_run_removes_what_a_killed_run_left(scene_pair: tuple[Path, Path, np.ndarray], tmp_path: Path,
                                              tiled: bool) -> None:
    """A killed run leaves its scratch tiles and temporary outputs in the folder; the next
    run there (windowed, or in memory and saved) removes them, and nothing else, and
    writes its outputs whole."""
    before, after, _ = scene_pair
    out = tmp_path / "w"
    out.mkdir()
    stale = [out / ".change_score.abc123.tiles", out / ".change_mask.x9.partial.tif", out / ".summary.q.partial.json"]
    for p in stale:
        p.write_bytes(b"\0" * 1000)
    keep = out / "notes.txt"
    keep.write_text("mine")
    if tiled:
        detect_changes(before, after, method="cva", tiled=True, out=out)
    else:
        detect_changes(before, after, method="cva", tiled=False).save(out)
    assert not any(p.exists() for p in stale) and keep.read_text() == "mine"
    assert sorted(p.name for p in out.iterdir()) == sorted([*set(OUTPUT_FILES) - {"structures.geojson"}, "notes.txt"])


def test_both_paths_write_the_same_summary_keys_and_raster_format(scene_pair: tuple[Path, Path, np.ndarray],
                                                                  tmp_path: Path) -> None:
    """One summary builder and one writer: the keys of summary.json (at every level that
    does not list data) and the rasters' format are the same whichever path ran."""
    import json

    import rasterio

    before, after, _ = scene_pair
    detect_changes(before, after, method="cva", tiled=False, out=tmp_path / "m")
    detect_changes(before, after, method="cva", tiled=True, out=tmp_path / "w", window_px=128, progress=False)
    sm, sw = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("m", "w"))

    def keys(d: dict, prefix: str = "") -> set[str]:
        out = set()
        for k, v in d.items():
            if prefix.endswith(("timings_s.", "by_class.", "class_centres.", "stats.")):
                continue  # lists of what was measured or found, not the schema
            out.add(prefix + k)
            if isinstance(v, dict):
                out |= keys(v, prefix + k + ".")
        return out

    assert keys(sm) == keys(sw)
    assert sm["tiling"]["path"] == "in-memory" and sw["tiling"]["path"] == "windowed"
    assert sm["parameters"] == sw["parameters"]
    for name in ("change_mask.tif", "change_score.tif"):
        with rasterio.open(tmp_path / "m" / name) as a, rasterio.open(tmp_path / "w" / name) as b:
            pa, pb = a.profile, b.profile
            for key in ("dtype", "compress", "blockxsize", "blockysize", "tiled", "nodata", "crs", "transform"):
                assert str(pa.get(key)) == str(pb.get(key)), (name, key)
            assert a.overviews(1) == b.overviews(1)
            assert a.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == b.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"


@pytest.mark.parametrize("method", ["auto", "diff"])
def test_windowed_equals_in_memory_on_a_real_band_folder(oscd: Path, tmp_path: Path, method: str) -> None:
    """A real Sentinel-2 band folder (10, 20 and 60 m bands, a lon/lat grid): the windowed reader
    resamples the coarse bands as read_raster does (in float), and parts of one area cut by a
    seam share their corners exactly, so both paths give the same score and mask."""
    before, after = oscd / "rennes" / "imgs_1", oscd / "rennes" / "imgs_2"
    mem = detect_changes(before, after, method=method, tiled=False)
    detect_changes(before, after, method=method, tiled=True, out=tmp_path / "w", window_px=128, progress=False)
    score = read_raster(tmp_path / "w" / "change_score.tif").data[0]
    mask = read_raster(tmp_path / "w" / "change_mask.tif").data[0]
    np.testing.assert_array_equal(score, mem.score.data[0])
    np.testing.assert_array_equal(np.nan_to_num(mask, nan=255), mem.mask.data[0])


@pytest.mark.parametrize("shift", [(0.3, -0.7), (-1.4, 0.0), (0.0, 2.6)])
def test_window_valid_mask_from_the_reader_equals_the_full_check(shift):
    """A window finite throughout and shifted: the valid pixels taken from one shifted band are
    those every band of both dates gives (the NaN the shift brings in is alike in every band)."""
    from changedet.align import Shift
    from changedet.raster import Grid
    from changedet.spec import make_spec, run_options
    from changedet.window import _register

    rng = np.random.default_rng(3)
    b = rng.uniform(300, 3000, size=(4, 70, 90)).astype("float32")
    a = (b * 1.2 + rng.normal(0, 30, size=b.shape)).astype("float32")
    g = Grid((70, 90), Affine(10, 0, 0, 0, -10, 0), "EPSG:32639")
    spec = make_spec(run_options(method="cva", coregister=False), g, ["B02", "B03", "B04", "B08"])
    s = Shift(*shift)
    _, a_fast, v_fast, _ = _register(spec, b, a, s, True, finite=np.ones((70, 90), bool))
    _, a_full, v_full, _ = _register(spec, b, a, s, True, finite=None)
    assert not v_full.all()  # the shift brought NaN in at the window's edge
    np.testing.assert_array_equal(v_fast, v_full)
    np.testing.assert_array_equal(a_fast, a_full)
    # a window with nodata inside takes the full check
    b2 = b.copy()
    b2[1, 30, 40] = np.nan
    fin = np.isfinite(b2).all(0) & np.isfinite(a).all(0)
    _, _, v2, _ = _register(spec, b2, a, s, True, finite=fin)
    assert not v2[30, 40]
