"""Counting new structures: known blocks in synthetic rasters, the files read back, the reasons given."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from scipy import ndimage
from shapely import affinity
from shapely.geometry import box, shape

from changedet import structures
from changedet.errors import InvalidParameterError
from changedet.pipeline import detect_changes
from changedet.raster import GeoRaster

UTM = CRS.from_epsg(32639)
NAMES = ("red", "green", "blue")


def _grid(px: float, n: int) -> Affine:
    return Affine(px, 0, 565000.0, 0, -px, 6185000.0 + n * px)


def _blocks(n_rows: int, n_cols: int, length: float, width: float, gap: float, angle: float, centre: tuple[float, float]):
    """Rectangles (map coordinates) of a lattice of blocks, long side along ``angle`` (degrees from north)."""
    out = []
    cx, cy = centre
    for i in range(n_rows):
        for j in range(n_cols):
            u = (j - (n_cols - 1) / 2) * (width + gap)
            v = (i - (n_rows - 1) / 2) * (length + gap)
            b = box(u - width / 2, v - length / 2, u + width / 2, v + length / 2)
            out.append(affinity.translate(affinity.rotate(b, -angle, origin=(0, 0)), cx, cy))
    return out


def _burn(geoms, n: int, t: Affine) -> np.ndarray:
    from rasterio import features

    ss = 4
    fine = features.rasterize([(g, 1) for g in geoms], out_shape=(n * ss, n * ss), transform=t * Affine.scale(1 / ss),
                              fill=0, dtype="uint8")
    return fine.reshape(n, ss, n, ss).mean(axis=(1, 3))


def _site(seed: int, *, px: float = 1.0, n: int = 260, angle: float = 25.0, gap: float = 6.0,
          length: float = 40.0, width: float = 14.0, rows: int = 3, cols: int = 4):
    """A meadow (before) cleared to brown ground with grey blocks and their shadows (after); uint8 RGB."""
    rng = np.random.default_rng(seed)
    t = _grid(px, n)
    centre = t * (n / 2, n / 2)
    blocks = _blocks(rows, cols, length, width, gap, angle, centre)
    plot = affinity.rotate(box(centre[0] - (cols * (width + gap)) / 2 - 15, centre[1] - (rows * (length + gap)) / 2 - 15,
                               centre[0] + (cols * (width + gap)) / 2 + 15, centre[1] + (rows * (length + gap)) / 2 + 15),
                           -angle, origin=centre)
    tex = 1 + 0.08 * ndimage.gaussian_filter(rng.normal(size=(n, n)), 3 / px) / 0.1
    meadow = np.array([0.06, 0.08, 0.04])[:, None, None] * tex
    after = meadow.copy()
    cover = _burn([plot], n, t)
    after = after * (1 - cover) + np.array([0.15, 0.115, 0.085])[:, None, None] * tex * cover
    roofs = _burn(blocks, n, t)
    after = after * (1 - roofs) + np.array([0.145, 0.15, 0.16])[:, None, None] * roofs
    shadow = _burn([affinity.translate(b, 0, 5).union(b).convex_hull.difference(b) for b in blocks], n, t)
    after = after * (1 - 0.6 * np.minimum(shadow, 1 - roofs))
    noisy = [np.clip(img * 640 + rng.normal(0, 4, img.shape), 0, 255).astype("uint8") for img in (meadow, after)]
    return noisy[0], noisy[1], t, blocks, plot


def _write(path: Path, data: np.ndarray, t: Affine) -> Path:
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1], count=3, dtype="uint8",
                       crs=UTM, transform=t) as dst:
        dst.write(data)
        dst.descriptions = NAMES
    return path


def _mask(blocks, n: int, t: Affine) -> GeoRaster:
    return GeoRaster((_burn(blocks, n, t) >= 0.5).astype("uint8")[np.newaxis], t, UTM, ("change",))


# --- the mask alone -----------------------------------------------------------------------------


def test_blocks_joined_by_necks_are_split_and_counted() -> None:
    n = 200
    t = _grid(1.0, n)
    blocks = _blocks(3, 4, 30.0, 12.0, 5.0, 0.0, t * (n / 2, n / 2))
    m = _mask(blocks, n, t)
    data = m.data.copy()
    # a 3 m neck between the first two blocks of each row (a path, a wall): the mask joins them
    rows = np.flatnonzero(data[0].any(axis=1))
    cols = np.flatnonzero(data[0].any(axis=0))
    c0 = cols.min() + 12
    for r in (rows.min() + 10, rows.min() + 45, rows.min() + 80):
        data[0, r : r + 3, c0 : c0 + 5] = 1
    s = structures.find_structures(m.with_data(data))
    assert s.count == 12
    areas = s.footprints_m2
    assert np.all(np.abs(areas - 360) <= 0.1 * 360), areas
    assert {p["source"] for p in s.polygons.properties} == {"shape"}


def test_one_rotated_block_length_width_orientation() -> None:
    n = 120
    t = _grid(0.5, n)
    block = _blocks(1, 1, 40.0, 12.0, 0.0, 30.0, t * (n / 2, n / 2))
    s = structures.find_structures(_mask(block, n, t))
    assert s.count == 1
    p = s.polygons.properties[0]
    assert p["length_m"] == pytest.approx(40.0, abs=1.5)
    assert p["width_m"] == pytest.approx(12.0, abs=1.5)
    assert p["orientation_deg"] == pytest.approx(30.0, abs=3.0)
    assert p["area_m2"] == pytest.approx(480.0, rel=0.05)
    assert s.polygons.geometries[0].area == pytest.approx(p["area_m2"])


def test_too_small_or_too_long_is_not_a_building() -> None:
    n = 300
    t = _grid(1.0, n)
    shed = _blocks(1, 1, 6.0, 5.0, 0, 0, t * (50, 50))  # 30 m2
    road = _blocks(1, 1, 280.0, 10.0, 0, 90, t * (150, 150))  # a 10 m road across the scene
    s = structures.find_structures(_mask(shed + road, n, t))
    assert s.count == 0
    assert structures.find_structures(_mask(shed, n, t), min_area_m2=20).count == 1


# --- the after image: blocks inside one changed area ----------------------------------------------


@pytest.mark.parametrize(("seed", "angle", "gap"), [(0, 25.0, 6.0), (1, 70.0, 4.0), (2, 0.0, 9.0)])
def test_blocks_on_a_cleared_plot_are_counted(seed: int, angle: float, gap: float) -> None:
    before, after, t, blocks, plot = _site(seed, angle=angle, gap=gap)
    n = after.shape[1]
    mask = _mask([plot], n, t)  # the whole cleared plot is one changed area
    assert ndimage.label(mask.data[0])[1] == 1
    s = structures.find_structures(mask, GeoRaster(after.astype("float32"), t, UTM, NAMES))
    assert abs(s.count - len(blocks)) <= 1, s.count
    assert abs(np.median(s.footprints_m2) - 40 * 14) <= 0.2 * 40 * 14
    assert all(p["source"] == "appearance" for p in s.polygons.properties)
    # each structure lies on a true block
    for g in s.polygons.geometries:
        assert max(g.intersection(b).area for b in blocks) >= 0.6 * g.area
    assert n == after.shape[2]


# --- a classifier's mask (examples or a model) --------------------------------------------------------


def _ragged(mask: np.ndarray, seed: int, bite: float = 0.25) -> np.ndarray:
    """A classifier's outline: edge pixels dropped or added at random (its roof edges are not clean)."""
    rng = np.random.default_rng(seed)
    edge = mask ^ ndimage.binary_erosion(mask)
    rim = ndimage.binary_dilation(mask) & ~mask
    out = mask & ~(edge & (rng.random(mask.shape) < bite))
    return out | (rim & (rng.random(mask.shape) < bite))


def test_classifier_mask_houses_joined_by_lawn_are_counted_one_by_one() -> None:
    """Houses a classifier outlines touch where it also took a strip of lawn between them: the
    region is split at each neck.  The appearance and shape tests see one ragged region that
    is not a rectangle and count nothing of it."""
    n = 240
    t = _grid(0.5, n)
    houses = _blocks(2, 6, 15.0, 12.0, 4.0, 20.0, t * (n / 2, n / 2))
    m = _burn(houses, n, t) >= 0.5
    # lawn taken as change: a 4 m strip between each pair of neighbours in a row
    lawn = []
    for i in range(2):
        for j in range(5):
            a, b = houses[i * 6 + j].centroid, houses[i * 6 + j + 1].centroid
            lawn.append(affinity.translate(box(-2.0, -2.0, 2.0, 2.0), (a.x + b.x) / 2, (a.y + b.y) / 2))
    m |= _burn(lawn, n, t) >= 0.5
    assert ndimage.label(m, structure=np.ones((3, 3), bool))[1] == 2  # two rows, each one region
    mask = GeoRaster(_ragged(m, 0).astype("uint8")[np.newaxis], t, UTM, ("change",))
    s = structures.find_structures(mask, classifier_mask=True)
    assert abs(s.count - 12) <= 1, s.count
    assert {p["source"] for p in s.polygons.properties} == {"classifier"}
    assert abs(np.median(s.footprints_m2) - 180) <= 0.25 * 180
    for g in s.polygons.geometries:  # each on one house
        assert max(g.intersection(h).area for h in houses) >= 0.6 * g.area
    assert structures.find_structures(mask).count <= 2


def test_classifier_mask_long_blocks_stay_whole() -> None:
    """A long block's distance ridge is flat: its watershed pieces join back into one."""
    n = 300
    t = _grid(1.0, n)
    blocks = _blocks(2, 3, 60.0, 15.0, 8.0, 35.0, t * (n / 2, n / 2))
    mask = GeoRaster(_ragged(_burn(blocks, n, t) >= 0.5, 1).astype("uint8")[np.newaxis], t, UTM, ("change",))
    s = structures.find_structures(mask, classifier_mask=True)
    assert s.count == 6, s.count
    assert np.all(np.abs(s.footprints_m2 - 900) <= 0.15 * 900), s.footprints_m2
    assert s.settings["neck_ratio"] == structures._NECK_RATIO


def test_examples_run_counts_on_the_classifier_mask_without_coregistering() -> None:
    """With examples on a fine grid, detect counts the structures on the classifier's mask and
    does not co-register (the summary says so); without examples it co-registers."""
    from rasterio import features

    from changedet.learn import Examples

    before, after, t, blocks, _ = _site(2, px=0.5, n=320, length=20.0, width=12.0)
    b = GeoRaster(before.astype("float32"), t, UTM, NAMES)
    a = GeoRaster(after.astype("float32"), t, UTM, NAMES)
    roofs = features.rasterize([(g, 1) for g in blocks], out_shape=before.shape[1:], transform=t).astype(bool)
    rng = np.random.default_rng(0)
    pos = rng.choice(np.flatnonzero(roofs), 20, replace=False)
    neg = rng.choice(np.flatnonzero(~roofs), 60, replace=False)
    idx = np.concatenate([pos, neg])
    rows, cols = np.unravel_index(idx, roofs.shape)
    r = detect_changes(b, a, examples=Examples(rows, cols, roofs.ravel()[idx]), progress=False)
    assert r.summary["parameters"]["coregister"] is False and r.summary["coregistration"] is None
    assert abs(r.structures.count - len(blocks)) <= 2, (r.structures.count, len(blocks))
    assert {p["source"] for p in r.structures.polygons.properties} == {"classifier"}
    plain = detect_changes(b, a, progress=False)
    assert plain.summary["parameters"]["coregister"] is True and plain.summary["coregistration"] is not None
    forced = detect_changes(b, a, examples=Examples(rows, cols, roofs.ravel()[idx]), coregister=True, progress=False)
    assert forced.summary["parameters"]["coregister"] is True


def test_examples_windowed_run_counts_as_in_memory(tmp_path: Path) -> None:
    """A whole scene with examples counts its structures on the classifier's mask too, and as in memory."""
    from rasterio import features

    from changedet.learn import Examples

    before, after, t, blocks, _ = _site(4, px=0.5, n=320, length=20.0, width=12.0)
    b = _write(tmp_path / "before.tif", before, t)
    a = _write(tmp_path / "after.tif", after, t)
    roofs = features.rasterize([(g, 1) for g in blocks], out_shape=before.shape[1:], transform=t).astype(bool)
    rng = np.random.default_rng(1)
    idx = np.concatenate([rng.choice(np.flatnonzero(roofs), 20, replace=False),
                          rng.choice(np.flatnonzero(~roofs), 60, replace=False)])
    rows, cols = np.unravel_index(idx, roofs.shape)
    ex = Examples(rows, cols, roofs.ravel()[idx])
    mem = detect_changes(b, a, examples=ex, progress=False)
    win = detect_changes(b, a, examples=ex, out=tmp_path / "w", tiled=True, window_px=128, progress=False)
    assert np.array_equal(mem.change_mask(), win.change_mask())
    assert mem.structures.count and win.structures.count == mem.structures.count
    assert (sorted(p["area_m2"] for p in win.structures.polygons.properties)
            == sorted(p["area_m2"] for p in mem.structures.polygons.properties))
    assert json.loads((tmp_path / "w" / "summary.json").read_text())["parameters"]["coregister"] is False


# --- why no count -----------------------------------------------------------------------------------


def test_coarse_pixels_give_no_count_and_say_why() -> None:
    m = GeoRaster(np.ones((1, 20, 20), "uint8"), Affine(10, 0, 500000, 0, -10, 6200000), UTM, ("change",))
    s = structures.find_structures(m)
    assert s.count is None and len(s) == 0
    assert s.summary() == {"count": None, "reason": s.reason, "pixel_size_m": 10.0}
    assert s.reason.startswith("pixels of 10 m are coarser than 2 m")
    grid_only = GeoRaster(np.ones((1, 20, 20), "uint8"), Affine.identity(), None, ("change",))
    assert "pass pixel_size_m" in structures.find_structures(grid_only).reason
    assert structures.find_structures(grid_only, pixel_size_m=0.5).count == 1


def test_bad_arguments_are_refused_by_name() -> None:
    m = GeoRaster(np.zeros((1, 20, 20), "uint8"), _grid(1.0, 20), UTM, ("change",))
    with pytest.raises(InvalidParameterError, match="mask must be a GeoRaster"):
        structures.find_structures(np.zeros((20, 20)))  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError, match=r"after has \(10, 10\) pixels but the mask \(20, 20\)"):
        structures.find_structures(m, GeoRaster(np.zeros((3, 10, 10), "float32"), _grid(1.0, 10), UTM, NAMES))
    with pytest.raises(InvalidParameterError, match="min_area_m2 must be a positive number"):
        structures.find_structures(m, min_area_m2=float("nan"))
    with pytest.raises(InvalidParameterError, match=r"min_area_m2 \(500\) must be below max_area_m2 \(400\)"):
        structures.find_structures(m, min_area_m2=500, max_area_m2=400)


# --- through the pipeline: files written and read back ----------------------------------------------


def test_detect_writes_structures_geojson_and_gpkg_layer(tmp_path: Path) -> None:
    import pyogrio

    before, after, t, blocks, plot = _site(4)
    b = _write(tmp_path / "before.tif", before, t)
    a = _write(tmp_path / "after.tif", after, t)
    out = tmp_path / "out"
    result = detect_changes(b, a, out=out)
    summary = json.loads((out / "summary.json").read_text())
    s = summary["results"]["structures"]
    assert abs(s["count"] - len(blocks)) <= 1
    assert abs(s["median_footprint_m2"] - 560) <= 0.25 * 560
    assert s == result.summary["results"]["structures"]
    assert result.structures.count == s["count"] and len(result.structures.table()) == s["count"]
    assert "structures.geojson" in summary["outputs"]
    fc = json.loads((out / "structures.geojson").read_text())
    assert len(fc["features"]) == s["count"]
    assert {f["geometry"]["type"] for f in fc["features"]} <= {"Polygon", "MultiPolygon"}
    lon, lat = fc["features"][0]["geometry"]["coordinates"][0][0][:2] if fc["features"][0]["geometry"]["type"] == \
        "Polygon" else fc["features"][0]["geometry"]["coordinates"][0][0][0][:2]
    assert 50 < lon < 54 and 54 < lat < 57  # lon/lat (RFC 7946), not grid metres
    layers = dict(pyogrio.list_layers(out / "changes.gpkg"))
    assert layers == {"changes": "MultiPolygon", "structures": "MultiPolygon"}
    meta, _, geoms, fields = pyogrio.raw.read(out / "changes.gpkg", layer="structures")
    cols = dict(zip(meta["fields"], fields))
    assert len(geoms) == s["count"]
    for k in ("area_m2", "length_m", "width_m", "orientation_deg", "change_id"):
        assert k in cols
    np.testing.assert_allclose(sorted(cols["area_m2"]), sorted(result.structures.footprints_m2))
    _, _, _, change_fields = pyogrio.raw.read(out / "changes.gpkg", layer="changes")
    change_meta = pyogrio.read_info(out / "changes.gpkg", layer="changes")
    ids = set(change_fields[list(change_meta["fields"]).index("id")].tolist())
    assert set(cols["change_id"].tolist()) <= ids
    # every footprint inside the changed area it names
    changes = json.loads((out / "changes.geojson").read_text())
    by_id = {f["properties"]["id"]: shape(f["geometry"]) for f in changes["features"]}
    for f in fc["features"]:
        assert by_id[f["properties"]["change_id"]].buffer(1e-5).contains(shape(f["geometry"]).centroid)


def test_pixel_grid_with_pixel_size_counts_in_metres(tmp_path: Path) -> None:
    from PIL import Image

    before, after, _, blocks, _ = _site(5, px=0.5, n=400, length=20, width=8, gap=5)
    for name, img in (("before.png", before), ("after.png", after)):
        Image.fromarray(np.moveaxis(img, 0, -1)).save(tmp_path / name)
    result = detect_changes(tmp_path / "before.png", tmp_path / "after.png", pixel_size_m=0.5)
    s = result.summary["results"]["structures"]
    assert abs(s["count"] - len(blocks)) <= 2
    assert abs(s["median_footprint_m2"] - 160) <= 0.3 * 160
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    fig = result.plot()
    bar = next(a for a in fig.axes[0].artists if isinstance(a, AnchoredSizeBar))
    assert bar.txt_label.get_children()[0].get_text().endswith(" m")
    no_size = detect_changes(tmp_path / "before.png", tmp_path / "after.png")
    assert no_size.summary["results"]["structures"]["count"] is None
    assert "pixel_size_m" in no_size.summary["results"]["structures"]["reason"]


def test_windowed_run_counts_the_structures_of_a_run_in_memory(tmp_path: Path) -> None:
    """A whole scene counts its structures too: each group of changed areas is read back on a
    window of both dates and split as in memory (same count, footprints and change ids)."""
    before, after, t, _, _ = _site(6, n=160)
    b = _write(tmp_path / "before.tif", before, t)
    a = _write(tmp_path / "after.tif", after, t)
    mem = detect_changes(b, a, progress=False)
    win = detect_changes(b, a, out=tmp_path / "w", tiled=True, window_px=64, progress=False)
    s = json.loads((tmp_path / "w" / "summary.json").read_text())["results"]["structures"]
    assert mem.structures.count and s["count"] == mem.structures.count == win.structures.count
    assert s["median_footprint_m2"] == mem.summary["results"]["structures"]["median_footprint_m2"]
    assert (sorted(p["area_m2"] for p in win.structures.polygons.properties)
            == sorted(p["area_m2"] for p in mem.structures.polygons.properties))
    assert (tmp_path / "w" / "structures.geojson").is_file()
    assert result_classes(win) == result_classes(mem)


def result_classes(result) -> list[str]:
    return sorted(p["change_class"] for p in result.polygons.properties)


def test_ten_metre_sample_gives_reason_in_summary() -> None:
    from changedet import data

    pair = data.load_sample("s2_like")
    s = detect_changes(pair.before, pair.after, figures=False).summary["results"]["structures"]
    assert s["count"] is None
    assert s["reason"].startswith("pixels of 10 m are coarser than 2 m")


def test_hires_sample_block_count_within_one() -> None:
    """The issue's figure on the bundled 1 m pair: its 66 blocks counted within one, and most
    of the structures are blocks (not a count right by luck)."""
    import importlib.util

    from shapely.geometry import box as sbox

    from changedet import data

    pair = data.load_sample("hires_rgb")
    result = detect_changes(pair.before, pair.after, figures=False)
    s = result.summary["results"]["structures"]
    # the truth: 66 dormitory blocks (registry.json new_objects, drawn by make_sample_tiles.py)
    root = Path(__file__).resolve().parents[1]
    registry = json.loads((root / "sample_tiles" / "registry.json").read_text())
    assert registry["pairs"]["hires_rgb"]["new_objects"]["dormitory_blocks"] == 66
    assert abs(s["count"] - 66) <= 1, s["count"]
    assert abs(s["median_footprint_m2"] - 900) <= 0.25 * 900
    spec = importlib.util.spec_from_file_location("make_sample_tiles", root / "sample_tiles" / "make_sample_tiles.py")
    mst = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mst)
    t, (rows, cols) = pair.after.transform, pair.after.shape[1:]
    extent = sbox(*(t * (0, rows)), *(t * (cols, 0)))
    blocks = [b for b in (shape(mst.rect(cu, cv, 60, 15)) for cu, cv, kind in mst.build_scene().blocks
                          if kind == "dormitory_blocks") if extent.contains(b)]
    assert len(blocks) == 66
    found = list(result.structures.polygons.geometries)
    matched = sum(any(f.intersection(b).area >= 0.5 * f.union(b).area for f in found) for b in blocks)
    assert matched >= 55, matched  # measured: 58 of 66 (the others split, or cut by the changed area's edge)


def _segment(r0: int, c0: int, h: int, w: int) -> "structures._Segment":
    rr, cc = np.mgrid[r0:r0 + h, c0:c0 + w]
    return structures._Segment(rr.ravel(), cc.ravel(), float(h * w), float(max(h, w)), float(min(h, w)), 0.0, 1.0,
                               "appearance")


def test_a_sharper_split_into_more_pieces_is_chosen_over_one_that_explains_more() -> None:
    """Of splits explaining at least 60 % as much as the best, the one with most pieces; below that
    line, a split into more pieces standing out from the ground around them at least 1.5x as much."""
    coarse = [_segment(0, 0, 40, 100), _segment(50, 0, 40, 100)]        # 8000 px: houses with their yards
    fine = [_segment(r, c, 10, 10) for r in (5, 55) for c in range(5, 95, 20)]  # 10 houses, 1000 px
    assert structures._choose([coarse, fine]) is coarse                 # explains 12.5 % as much
    assert structures._choose([coarse, fine], [2.0, 4.5]) is fine       # but stands out 2.25x as much
    assert structures._choose([coarse, fine], [2.0, 2.5]) is coarse     # 1.25x: not enough
    assert structures._choose([fine, fine[:3]], [2.0, 9.0]) is fine     # fewer pieces never replace more


def test_houses_beside_yards_that_explain_more_are_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    """The structures benchmark's 0.5 m housing estate, seed 2: 36 houses, where a split into three
    shapes of houses and yards explained more of the changed area (3 counted before the contrast)."""
    import importlib.util
    import sys

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "structures.py"
    monkeypatch.syspath_prepend(str(path.parent))  # (it imports its neighbours)
    spec = importlib.util.spec_from_file_location("structures_benchmark", path)
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "structures_benchmark", bench)  # (its dataclasses look their module up)
    spec.loader.exec_module(bench)

    site = bench.make_structure_site("houses", 2)
    before = GeoRaster(site.before.astype(np.float32), site.transform, site.crs, NAMES)
    after = GeoRaster(site.after.astype(np.float32), site.transform, site.crs, NAMES)
    count = detect_changes(before, after, figures=False).structures.count
    assert abs(count - site.count) <= 2, (count, site.count)


def test_structures_say_where_they_are_in_lon_lat_as_the_changed_areas_do(tmp_path: Path) -> None:
    """structures.geojson is lon/lat (RFC 7946): each footprint's centroid is given in lon/lat too,
    inside its own footprint's bounds, not in the grid's metres."""
    from changedet import data

    hires = data.sample_path("hires_rgb")
    result = detect_changes(hires / "before.tif", hires / "after.tif", out=tmp_path / "out")
    feats = json.loads((tmp_path / "out" / "structures.geojson").read_text())["features"]
    assert len(feats) == result.structures.count > 10
    for f in feats:
        p = f["properties"]
        assert "centroid_x" not in p and "centroid_y" not in p
        minx, miny, maxx, maxy = shape(f["geometry"]).bounds
        assert minx <= p["centroid_lon"] <= maxx and miny <= p["centroid_lat"] <= maxy
    frame = result.structures.table()
    assert {"centroid_lon", "centroid_lat"} <= set(frame.columns)


def test_h_maxima_is_scikit_images():
    """structures._h_maxima (level sets) gives scikit-image's h_maxima (reconstruction), on
    smooth distance images like the watershed's and on rough random ones with plateaus."""
    from skimage.morphology import h_maxima

    from changedet.structures import _h_maxima

    rng = np.random.default_rng(11)
    checked = 0
    for k in range(400):
        rows, cols = (int(v) for v in rng.integers(1, 40, 2))
        if k % 2:  # a distance image of a few blobs, quantised as _split does
            fg = ndimage.gaussian_filter(rng.random((rows, cols)), 2) > 0.5
            f = np.round(ndimage.gaussian_filter(ndimage.distance_transform_edt(fg), 1) / 0.25).astype(np.int32)
        else:  # rough, with plateaus and ties
            f = rng.integers(0, int(rng.integers(1, 12)), (rows, cols)).astype(np.int32)
        for h in (1, 2, 6):
            np.testing.assert_array_equal(_h_maxima(f, h), h_maxima(f, h))
            checked += int(h_maxima(f, h).any())
    assert checked > 200  # most cases have maxima to find
    np.testing.assert_array_equal(_h_maxima(np.zeros((0, 3), np.int32), 6), np.zeros((0, 3), np.uint8))
