"""Same inputs, same outputs: two runs give byte-identical rasters and identical GeoJSON,
windowed (several threads, many windows) and in memory; and ``changes.geojson`` holds one
geometry type (MultiPolygon), as the GeoPackage does."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import rasterio

from changedet import data
from changedet.pipeline import detect_changes

S2 = data.sample_path("s2_like")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("mode", [dict(tiled=False), dict(tiled=True, window_px=64, workers=2)],
                         ids=["in-memory", "windowed"])
def test_two_runs_write_identical_outputs(mode: dict, tmp_path: Path) -> None:
    outs = []
    for k in range(2):
        out = tmp_path / f"run{k}"
        # the method's threshold value given as a number (no hysteresis): ten areas, many across windows
        detect_changes(S2 / "before.tif", S2 / "after.tif", out=out, figures=False, progress=False, threshold=6.0,
                       **mode)
        outs.append(out)
    a, b = outs
    summary = json.loads((a / "summary.json").read_text())
    assert summary["tiling"]["path"] == ("windowed" if mode["tiled"] else "in-memory")
    if mode["tiled"]:
        assert summary["tiling"]["windows"] == 25  # 300 x 300 px in windows of 64: thread order varies
    assert summary["results"]["n_changes"] >= 5
    for name in ("change_mask.tif", "change_score.tif"):
        assert _sha(a / name) == _sha(b / name), name
    assert (a / "changes.geojson").read_bytes() == (b / "changes.geojson").read_bytes()
    # no timestamp or other varying metadata in the GeoTIFFs
    with rasterio.open(a / "change_mask.tif") as src:
        tags = {**src.tags(), **src.tags(1)}
    assert not [k for k in tags if "DATE" in k.upper() or "TIME" in k.upper()], tags


def test_windowed_and_in_memory_masks_are_the_same_bytes(tmp_path: Path) -> None:
    """On a scene the sample covers whole, both paths make the same mask and score files."""
    detect_changes(S2 / "before.tif", S2 / "after.tif", out=tmp_path / "m", figures=False, tiled=False)
    detect_changes(S2 / "before.tif", S2 / "after.tif", out=tmp_path / "w", figures=False, tiled=True, window_px=128,
                   progress=False)
    for name in ("change_mask.tif", "change_score.tif"):
        assert _sha(tmp_path / "m" / name) == _sha(tmp_path / "w" / name), name


def test_changes_geojson_has_one_geometry_type(tmp_path: Path) -> None:
    """Areas with holes and areas of one ring alike are MultiPolygons; pyogrio (GDAL) reads
    the layer's type as MultiPolygon, not Unknown, like the GeoPackage's."""
    from affine import Affine

    from changedet.objects import vectorize
    from changedet.raster import GeoRaster

    mask = np.zeros((40, 60), bool)
    mask[5:20, 5:25] = True
    mask[10:13, 10:13] = False  # a hole
    mask[25:35, 40:55] = True  # a plain rectangle
    raster = GeoRaster(mask[np.newaxis].astype("float32"), Affine(10, 0, 500000, 0, -10, 6190000), "EPSG:32639")
    polys = vectorize(raster)
    assert {g.geom_type for g in polys.geometries} == {"Polygon"}  # built as polygons ...
    path = polys.write_geojson(tmp_path / "c.geojson")
    fc = json.loads(Path(path).read_text())
    assert [f["geometry"]["type"] for f in fc["features"]] == ["MultiPolygon", "MultiPolygon"]  # ... written as one type
    info = pyogrio.read_info(path)
    assert info["geometry_type"] == "MultiPolygon" and info["features"] == 2
    # the same areas as the polygons (the hole kept)
    import shapely

    back = [shapely.geometry.shape(f["geometry"]) for f in fc["features"]]
    assert sorted(len(g.geoms[0].interiors) for g in back) == [0, 1]


def test_a_result_folder_has_multipolygon_layers(tmp_path: Path) -> None:
    detect_changes(S2 / "before.tif", S2 / "after.tif", out=tmp_path, figures=False, tiled=False)
    assert pyogrio.read_info(tmp_path / "changes.geojson")["geometry_type"] == "MultiPolygon"
    assert pyogrio.read_info(tmp_path / "changes.gpkg")["geometry_type"] == "MultiPolygon"


def test_geopackage_is_the_same_bytes_with_source_date_epoch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The GeoPackage's only varying content is each layer's ``last_change``; with
    SOURCE_DATE_EPOCH set it is that time, and two runs write the same bytes."""
    import sqlite3

    from changedet.errors import InvalidParameterError

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    for k in range(2):
        detect_changes(S2 / "before.tif", S2 / "after.tif", out=tmp_path / f"run{k}", figures=False, progress=False)
    a, b = tmp_path / "run0" / "changes.gpkg", tmp_path / "run1" / "changes.gpkg"
    assert _sha(a) == _sha(b)
    with sqlite3.connect(a) as con:
        stamps = [r[0] for r in con.execute("SELECT last_change FROM gpkg_contents")]
    assert stamps and set(stamps) == {"2023-11-14T22:13:20.000Z"}
    assert pyogrio.read_info(a)["features"] == json.loads((tmp_path / "run0" / "summary.json").read_text())[
        "results"]["n_changes"]
    # without it, now; a malformed value is refused by name
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    detect_changes(S2 / "before.tif", S2 / "after.tif", out=tmp_path / "now", figures=False, progress=False)
    with sqlite3.connect(tmp_path / "now" / "changes.gpkg") as con:
        (stamp,) = con.execute("SELECT last_change FROM gpkg_contents").fetchone()
    assert stamp[:4] >= "2025" and stamp.endswith("Z")
    for bad in ("yesterday", "\u00b2", "9" * 30):  # a word, a superscript digit, past the year 9999
        monkeypatch.setenv("SOURCE_DATE_EPOCH", bad)
        with pytest.raises(InvalidParameterError, match="SOURCE_DATE_EPOCH"):
            detect_changes(S2 / "before.tif", S2 / "after.tif", out=tmp_path / "bad", figures=False, progress=False)
        assert not (tmp_path / "bad" / "changes.gpkg").exists()
