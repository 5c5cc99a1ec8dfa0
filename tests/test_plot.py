"""Tests for changedet.plot: figure structure, placement of overlays, stretch, atomic saving."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from affine import Affine
from matplotlib.collections import LineCollection
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar
from rasterio.crs import CRS
from shapely.geometry import MultiPolygon, Polygon, box

from changedet import plot
from changedet.errors import EmptyDataError, GridMismatchError, InvalidParameterError
from changedet.raster import GeoRaster

UTM = CRS.from_epsg(32630)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class StandInPolygons:
    """Duck-typed stand-in for changedet.objects.ChangePolygons."""

    geometries: tuple[Any, ...]
    properties: tuple[dict[str, Any], ...]
    crs: CRS | None = None


@pytest.fixture
def transform() -> Affine:
    return Affine(10, 0, 500000, 0, -10, 5300000)


@pytest.fixture
def pair(transform: Affine) -> tuple[GeoRaster, GeoRaster]:
    rng = np.random.default_rng(42)
    before = GeoRaster(rng.random((4, 50, 60)).astype("float32"), transform, UTM, ("B02", "B03", "B04", "B08"))
    after_data = before.data.copy()
    after_data[:, 10:20, 30:45] += 1.0
    return before, before.with_data(after_data)


@pytest.fixture
def mask() -> np.ndarray:
    m = np.zeros((50, 60), dtype=np.uint8)
    m[10:20, 30:45] = 1
    m[45:, :5] = 255
    return m


@pytest.fixture
def polygons() -> StandInPolygons:
    # map coordinates of the planted block (rows 10-20, cols 30-45) and two smaller ones
    block = box(500300, 5299800, 500450, 5299900)
    small = box(500000, 5299500, 500050, 5299550)
    holed = Polygon(
        [(500100, 5299600), (500200, 5299600), (500200, 5299700), (500100, 5299700)],
        [[(500130, 5299630), (500170, 5299630), (500170, 5299670), (500130, 5299670)]],
    )
    return StandInPolygons(
        (block, MultiPolygon([small]), holed),
        (
            {"change_class": "new building", "area_m2": 15000.0},
            {"change_class": "new building", "area_m2": 2500.0},
            {"change_class": "vegetation loss", "area_m2": 8400.0},
        ),
        UTM,
    )


# --- rgb_composite -----------------------------------------------------------------------------


def test_rgb_composite_percentile_stretch_known_answer() -> None:
    ramp = np.arange(101, dtype=np.float64).reshape(1, 101)
    raster = GeoRaster(np.stack([ramp, ramp * 2, ramp + 1000]), Affine.identity(), None, ("red", "green", "blue"))
    rgb = plot.rgb_composite(raster, percentiles=(10, 90))
    assert rgb.shape == (1, 101, 3)
    # 10th/90th percentiles of 0..100 are 10 and 90: value 50 -> 0.5, 30 -> 0.25, below 10 -> 0, above 90 -> 1
    np.testing.assert_allclose(rgb[0, 50], [0.5, 0.5, 0.5], atol=1e-12)
    np.testing.assert_allclose(rgb[0, 30], [0.25, 0.25, 0.25], atol=1e-12)
    np.testing.assert_allclose(rgb[0, 5], [0.0, 0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(rgb[0, 95], [1.0, 1.0, 1.0], atol=1e-12)


@pytest.mark.parametrize(
    "names",
    [("B02", "B03", "B04"), ("SR_B2", "SR_B3", "SR_B4"), ("blue", "green", "red")],
)
def test_rgb_composite_finds_true_colour_bands_by_name(names: tuple[str, str, str]) -> None:
    # bands stored blue, green, red: the composite must put the third band in the red channel
    data = np.zeros((3, 2, 2))
    data[2] = [[0, 1], [2, 3]]  # red varies, blue/green constant
    rgb = plot.rgb_composite(GeoRaster(data, Affine.identity(), None, names), percentiles=(0, 100))
    np.testing.assert_allclose(rgb[..., 0], [[0, 1 / 3], [2 / 3, 1]], atol=1e-12)
    np.testing.assert_allclose(rgb[..., 1:], 0.5, atol=1e-12)  # constant band -> mid grey


def test_rgb_composite_fallbacks_and_nodata() -> None:
    grey = np.arange(4.0).reshape(1, 2, 2)
    grey[0, 0, 0] = np.nan
    rgb = plot.rgb_composite(grey, percentiles=(0, 100))
    np.testing.assert_array_equal(rgb[0, 0], [1.0, 1.0, 1.0])  # NaN shown white
    np.testing.assert_allclose(rgb[1, 1], [1.0, 1.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(rgb[0, 1], [0.0, 0.0, 0.0], atol=1e-12)
    # unknown names, four bands: the first three are used
    four = GeoRaster(np.stack([np.full((2, 2), v) for v in (0.0, 1, 2, 3)]), Affine.identity())
    assert plot.rgb_composite(four).shape == (2, 2, 3)
    # an all-NaN band does not warn and shows white
    assert np.all(plot.rgb_composite(np.full((1, 2, 2), np.nan)) == 1.0)


def test_rgb_composite_explicit_bands_and_errors(pair: tuple[GeoRaster, GeoRaster]) -> None:
    before, _ = pair
    nir = plot.rgb_composite(before, bands="B08")
    assert np.array_equal(nir[..., 0], nir[..., 2])
    with pytest.raises(InvalidParameterError, match="bands must name 3 bands.*got \\['B02', 'B03'\\]"):
        plot.rgb_composite(before, bands=["B02", "B03"])
    with pytest.raises(InvalidParameterError, match="band 'B05' not found"):
        plot.rgb_composite(before, bands=["B05", "B03", "B02"])
    with pytest.raises(InvalidParameterError, match="percentiles must be"):
        plot.rgb_composite(before, percentiles=(98, 2))


# --- plot_overview -----------------------------------------------------------------------------


def test_overview_with_polygons_draws_one_outline_collection_per_class(
    pair: tuple[GeoRaster, GeoRaster], polygons: StandInPolygons
) -> None:
    fig = plot.plot_overview(*pair, polygons=polygons, title="site", labels=("2024-06", "2025-06"))
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 3
    assert [ax.get_title() for ax in fig.axes[:2]] == ["2024-06", "2025-06"]
    overlay = fig.axes[2]
    outlines = [c for c in overlay.collections if isinstance(c, LineCollection) and not c.get_label().startswith("_")]
    assert len(outlines) == 2  # "new building" and "vegetation loss"
    by_label = {c.get_label(): c for c in outlines}
    assert set(by_label) == {"new building: 2 (1.8 ha)", "vegetation loss: 1 (0.84 ha)"}
    # outlines are drawn in map coordinates, exactly on the polygons' rings
    building = np.concatenate(by_label["new building: 2 (1.8 ha)"].get_segments())
    assert building[:, 0].min() == pytest.approx(500000.0) and building[:, 0].max() == pytest.approx(500450.0)
    veg_rings = by_label["vegetation loss: 1 (0.84 ha)"].get_segments()
    assert len(veg_rings) == 2  # exterior and hole
    assert "3 areas, 2.6 ha" in overlay.get_title()
    legend_texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend_texts == ["new building: 2 (1.8 ha)", "vegetation loss: 1 (0.84 ha)"]


def test_overview_extent_matches_grid_and_has_scale_bar(pair: tuple[GeoRaster, GeoRaster], mask: np.ndarray) -> None:
    fig = plot.plot_overview(*pair, mask=mask)
    for ax in fig.axes:
        assert ax.get_xlim() == pytest.approx((500000.0, 500600.0))
        assert ax.get_ylim() == pytest.approx((5299500.0, 5300000.0))
        image = ax.get_images()[0]
        assert image.get_extent() == pytest.approx([500000.0, 500600.0, 5299500.0, 5300000.0])
        bars = [a for a in ax.artists if isinstance(a, AnchoredSizeBar)]
        assert len(bars) == 1
        assert bars[0].txt_label.get_text() == "100 m"  # 600 m wide -> a quarter is 150 -> 100 m
        assert any(t.get_text() == "N" for t in ax.texts)


def test_overview_mask_outline_in_the_right_place(pair: tuple[GeoRaster, GeoRaster], mask: np.ndarray) -> None:
    fig = plot.plot_overview(*pair, mask=mask)
    overlay = fig.axes[2]
    contours = [c for c in overlay.collections if hasattr(c, "levels") and not c.filled]
    assert len(contours) == 1
    vertices = np.concatenate([p.vertices for p in contours[0].get_paths() if len(p.vertices)])
    # block rows 10-20, cols 30-45 on a 10 m grid: the 0.5 contour runs on the block's pixel edges
    assert vertices[:, 0].min() == pytest.approx(500300.0) and vertices[:, 0].max() == pytest.approx(500450.0)
    assert vertices[:, 1].min() == pytest.approx(5299800.0) and vertices[:, 1].max() == pytest.approx(5299900.0)
    # the pixels not compared (255: rows 45-50, cols 0-5) are hatched, and the legend says how much
    hatched = [c for c in overlay.collections if hasattr(c, "levels") and c.filled]
    assert len(hatched) == 1 and hatched[0].hatches == ["////"]
    vertices = np.concatenate([p.vertices for p in hatched[0].get_paths() if len(p.vertices)])
    assert vertices[:, 0].min() == pytest.approx(500000.0) and vertices[:, 0].max() == pytest.approx(500050.0)
    assert vertices[:, 1].min() == pytest.approx(5299500.0) and vertices[:, 1].max() == pytest.approx(5299550.0)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [
        "change mask (150 px)", "not compared: cloud, shadow or no data (0.8% of the image)"]
    # a mask where every pixel was compared hatches nothing
    fig = plot.plot_overview(*pair, mask=np.where(mask == 255, 0, mask).astype(np.uint8))
    assert not [c for c in fig.axes[2].collections if hasattr(c, "levels") and c.filled]


def test_overview_without_overlay_has_two_panels(pair: tuple[GeoRaster, GeoRaster]) -> None:
    assert len(plot.plot_overview(*pair).axes) == 2


def test_overview_pixel_grid_keeps_row_zero_at_top(polygons: StandInPolygons) -> None:
    img = GeoRaster(np.random.default_rng(0).random((3, 40, 80)), Affine.identity(), None, ("red", "green", "blue"))
    px_polys = StandInPolygons((box(10, 5, 20, 15),), ({},))
    fig = plot.plot_overview(img, img, polygons=px_polys)
    overlay = fig.axes[2]
    assert overlay.get_ylim() == pytest.approx((40.0, 0.0))  # y (= row) grows downwards
    assert [c.get_label() for c in overlay.collections if isinstance(c, LineCollection) and c.get_label() != "_halo"] == ["change: 1"]
    bar = next(a for a in overlay.artists if isinstance(a, AnchoredSizeBar))
    assert bar.txt_label.get_text() == "20 px"
    assert not any(t.get_text() == "N" for t in overlay.texts)  # no north on a pixel grid


def test_overview_geographic_grid_shows_ground_aspect() -> None:
    t = Affine(0.0001, 0, -1.7, 0, -0.0001, 48.1)
    img = GeoRaster(np.random.default_rng(0).random((3, 30, 30)), t, CRS.from_epsg(4326), ("red", "green", "blue"))
    fig = plot.plot_overview(img, img)
    lat = 48.1 - 0.0015
    assert fig.axes[0].get_aspect() == pytest.approx(1 / math.cos(math.radians(lat)), rel=1e-6)


def test_overview_no_polygons_found(pair: tuple[GeoRaster, GeoRaster]) -> None:
    fig = plot.plot_overview(*pair, polygons=StandInPolygons((), (), UTM))
    assert any(t.get_text() == "no change found" for t in fig.axes[2].texts)
    assert not fig.legends


def test_overview_large_image_is_decimated_for_display(transform: Affine) -> None:
    big = GeoRaster(np.zeros((3, 4100, 300), "float32"), transform, UTM, ("red", "green", "blue"))
    fig = plot.plot_overview(big, big)
    image = fig.axes[0].get_images()[0]
    assert image.get_array().shape[:2] == (1367, 100)  # every 3rd pixel
    assert image.get_extent() == pytest.approx([500000.0, 503000.0, 5300000 - 41010.0, 5300000.0])


def test_overview_errors(pair: tuple[GeoRaster, GeoRaster], polygons: StandInPolygons) -> None:
    with pytest.raises(InvalidParameterError, match=r"mask has shape \(5, 5\) but the after image has \(50, 60\)"):
        plot.plot_overview(*pair, mask=np.zeros((5, 5)))
    with pytest.raises(InvalidParameterError, match="polygons must have .geometries and .properties.*list"):
        plot.plot_overview(*pair, polygons=[box(0, 0, 1, 1)])
    wrong_crs = StandInPolygons(polygons.geometries, polygons.properties, CRS.from_epsg(4326))
    with pytest.raises(InvalidParameterError, match="polygons are in EPSG:4326"):
        plot.plot_overview(*pair, polygons=wrong_crs)
    unpaired = StandInPolygons(polygons.geometries, polygons.properties[:1], UTM)
    with pytest.raises(InvalidParameterError, match="3 geometries but 1 property records"):
        plot.plot_overview(*pair, polygons=unpaired)


def test_overview_class_colors_are_respected(pair: tuple[GeoRaster, GeoRaster], polygons: StandInPolygons) -> None:
    fig = plot.plot_overview(*pair, polygons=polygons, class_colors={"vegetation loss": "#00ff00"})
    veg = next(c for c in fig.axes[2].collections if str(c.get_label()).startswith("vegetation"))
    np.testing.assert_allclose(veg.get_colors()[0], [0.0, 1.0, 0.0, 1.0])


# --- plot_histogram ----------------------------------------------------------------------------


def test_histogram_threshold_line_and_counts() -> None:
    score = np.concatenate([np.linspace(0, 1, 900), np.linspace(3, 4, 100)]).reshape(20, 50)
    score[0, 0] = np.nan
    valid = np.ones(score.shape, bool)
    valid[-1, -10:] = False  # drops 10 of the high scores
    fig = plot.plot_histogram(score, threshold=2.0, valid=valid, bins=40, method_label="otsu")
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    line = ax.lines[0]
    assert [float(x) for x in line.get_xdata()] == [2.0, 2.0]
    assert line.get_label() == "threshold (otsu) = 2"
    heights = sum(p.get_height() for container in ax.containers for p in container)
    assert heights == pytest.approx(989)  # 1000 - 1 NaN - 10 not valid
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "change: 90 px (9.1%)" in labels


def test_histogram_threshold_outside_data_range_is_visible() -> None:
    fig = plot.plot_histogram(np.linspace(0, 1, 100).reshape(10, 10), threshold=5.0)
    assert fig.axes[0].get_xlim()[1] == pytest.approx(5.0)


def test_histogram_errors() -> None:
    with pytest.raises(EmptyDataError, match="score has no valid pixel"):
        plot.plot_histogram(np.full((3, 3), np.nan), threshold=1.0)
    with pytest.raises(InvalidParameterError, match="threshold must be a finite number"):
        plot.plot_histogram(np.zeros((3, 3)), threshold=float("nan"))
    with pytest.raises(InvalidParameterError, match=r"valid has shape \(2, 2\) but score has \(3, 3\)"):
        plot.plot_histogram(np.zeros((3, 3)), threshold=1.0, valid=np.ones((2, 2), bool))


# --- plot_swipe --------------------------------------------------------------------------------


def test_swipe_splits_at_position(pair: tuple[GeoRaster, GeoRaster]) -> None:
    before, after = pair
    fig = plot.plot_swipe(before, after, position=0.5)
    ax = fig.axes[0]
    assert [float(x) for x in ax.lines[0].get_xdata()] == pytest.approx([500300.0, 500300.0])
    shown = np.asarray(ax.get_images()[0].get_array())
    # both sides under one stretch: the percentiles of both dates' pixels together
    limits = np.stack([np.percentile(np.concatenate([before.band(n).ravel(), after.band(n).ravel()]), (2, 98))
                       for n in ("B04", "B03", "B02")])
    np.testing.assert_allclose(shown[:, :30], plot.rgb_composite(before, limits=limits)[:, :30])
    np.testing.assert_allclose(shown[:, 30:], plot.rgb_composite(after, limits=limits)[:, 30:])


def test_swipe_errors(pair: tuple[GeoRaster, GeoRaster], transform: Affine) -> None:
    before, after = pair
    with pytest.raises(InvalidParameterError, match="position must be between 0 and 1"):
        plot.plot_swipe(before, after, position=1.5)
    moved = GeoRaster(after.data, transform @ Affine.translation(5, 0), UTM, after.band_names)
    with pytest.raises(GridMismatchError, match="grid differs"):
        plot.plot_swipe(before, moved)


# --- plot_mask ---------------------------------------------------------------------------------


def test_mask_with_truth_colours_tp_fp_fn() -> None:
    mask = np.array([[1, 1, 0], [0, 0, 255]])
    truth = np.array([[2, 1, 2], [1, 1, 1]])
    fig = plot.plot_mask(mask, truth=truth, truth_change_values=(2,), truth_nochange_values=(1,))
    rgb = np.asarray(fig.axes[0].get_images()[0].get_array())
    np.testing.assert_allclose(rgb[0, 0], [0x1A / 255, 0x98 / 255, 0x50 / 255])  # TP green
    np.testing.assert_allclose(rgb[0, 1], [0xD7 / 255, 0x30 / 255, 0x27 / 255])  # FP red
    np.testing.assert_allclose(rgb[0, 2], [0x45 / 255, 0x75 / 255, 0xB4 / 255])  # FN blue
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert texts == ["true positive: 1", "false positive: 1", "false negative: 1", "true negative: 2", "nodata: 1"]
    assert fig.axes[0].get_title().startswith("F1 0.500")


def test_mask_without_truth(transform: Affine, mask: np.ndarray) -> None:
    fig = plot.plot_mask(GeoRaster(mask, transform, UTM))
    assert fig.axes[0].get_title() == "change: 150 of 2,975 valid pixels (5.0%)"
    assert fig.axes[0].get_images()[0].get_extent() == pytest.approx([500000.0, 500600.0, 5299500.0, 5300000.0])


def test_mask_truth_shape_mismatch() -> None:
    with pytest.raises(GridMismatchError, match=r"shape \(2, 2\).*shape \(3, 3\)"):
        plot.plot_mask(np.zeros((2, 2)), truth=np.zeros((3, 3)))


# --- save_figure -------------------------------------------------------------------------------


def test_save_figure_writes_png_atomically(tmp_path: Path, pair: tuple[GeoRaster, GeoRaster], mask: np.ndarray) -> None:
    fig = plot.plot_overview(*pair, mask=mask)
    out = plot.save_figure(fig, tmp_path / "figs" / "overview.png", dpi=60)
    assert out == tmp_path / "figs" / "overview.png"
    data = out.read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > 1000
    assert sorted(p.name for p in out.parent.iterdir()) == ["overview.png"]  # no temporary left behind


def test_save_figure_other_format_and_errors(tmp_path: Path) -> None:
    fig = Figure()
    fig.subplots().plot([0, 1])
    assert plot.save_figure(fig, tmp_path / "f.pdf").read_bytes()[:5] == b"%PDF-"
    with pytest.raises(InvalidParameterError, match="cannot tell the figure format from .*f.xyz"):
        plot.save_figure(fig, tmp_path / "f.xyz")
    with pytest.raises(InvalidParameterError, match="dpi must be a positive integer"):
        plot.save_figure(fig, tmp_path / "f.png", dpi=0)
    assert not (tmp_path / "f.png").exists()


def test_save_figure_closes_pyplot_figures(tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure()
    number = fig.number
    plot.save_figure(fig, tmp_path / "p.png", dpi=30)
    assert not plt.fignum_exists(number)


def test_figures_show_as_png_in_jupyter(pair: tuple[GeoRaster, GeoRaster]) -> None:
    # IPython displays objects with _repr_png_; no pyplot or %matplotlib inline needed
    fig = plot.plot_overview(*pair)
    assert fig._repr_png_()[:8] == PNG_SIGNATURE


def test_overview_burns_outlines_of_very_many_polygons_into_an_image(
    pair: tuple[GeoRaster, GeoRaster], polygons: StandInPolygons, monkeypatch: pytest.MonkeyPatch
) -> None:
    drawn = plot.plot_overview(*pair, polygons=polygons)
    monkeypatch.setattr(plot, "_MAX_VECTOR_OUTLINES", 1)
    fig = plot.plot_overview(*pair, polygons=polygons)
    overlay = fig.axes[2]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [t.get_text() for t in drawn.legends[0].get_texts()]
    assert not any(len(c.get_segments()) for c in overlay.collections if isinstance(c, LineCollection))
    images = overlay.get_images()
    assert len(images) == 2  # the after image, then the outlines
    outlines = np.asarray(images[1].get_array())
    assert images[1].get_extent() == pytest.approx([500000.0, 500600.0, 5299500.0, 5300000.0])
    colour = np.array(to_rgb(plot.CLASS_COLORS[0]), np.float32)  # the most frequent class: "new building"
    line = np.all(np.isclose(outlines[..., :3], colour, atol=1e-6), axis=-1) & (outlines[..., 3] == 1)
    rows, cols = np.nonzero(line)
    # the planted block's outline (rows 10-20, cols 30-45 on this 60-column grid), within the 1-pixel line width
    assert rows.min() <= 10 and cols.max() >= 44
    assert not line[14, 37]  # the block's inside is not outlined


# --- ExamplePicker: click-to-label examples ------------------------------------------------------


def _click(picker: plot.ExamplePicker, ax: Any, x: float, y: float, button: int) -> None:
    """A mouse click at grid coordinates (x, y) on ``ax``, through matplotlib's event machinery."""
    from matplotlib.backend_bases import MouseEvent

    canvas = picker.figure.canvas
    px, py = ax.transData.transform((x, y))
    event = MouseEvent("button_press_event", canvas, px, py, button=button)
    canvas.callbacks.process("button_press_event", event)


def test_picker_clicks_round_trip_to_the_clicked_pixels_in_lon_lat(
    pair: tuple[GeoRaster, GeoRaster], polygons: StandInPolygons, tmp_path: Path
) -> None:
    from changedet.learn import read_examples

    @dataclass(frozen=True)
    class Result:
        before: GeoRaster
        after: GeoRaster
        polygons: StandInPolygons

    picker = plot.ExamplePicker(Result(*pair, polygons))
    outlines = [c for c in picker.axes[0].collections if c.get_label() == "_outline"]
    assert [len(c.get_segments()) for c in outlines] == [4]  # three polygons, one with a hole
    picker.figure.draw_without_rendering()  # the constrained layout places the axes
    grid = pair[0].grid
    clicks = [(12, 33, 1, True), (15, 40, 1, True), (3, 5, 3, False), (40, 50, 3, False)]  # row, col, button
    for k, (row, col, button, _) in enumerate(clicks):
        x, y = grid.transform * (col + 0.5, row + 0.5)
        _click(picker, picker.axes[k % 2], x, y, button)  # either panel
    assert (picker.n_change, picker.n_no_change) == (2, 2)
    fc = picker.to_geojson()
    lon, lat = fc["features"][0]["geometry"]["coordinates"]
    assert -3.1 < lon < -2.9 and 47.8 < lat < 47.9  # UTM 30N, 500 km E, 5300 km N: near 3 deg W, 47.8 deg N
    ex = read_examples(fc, grid)
    got = sorted(zip(ex.row.tolist(), ex.col.tolist(), ex.change.tolist()))
    assert got == sorted((r, c, ch) for r, c, _, ch in clicks)
    # drawn on both panels, in two colours and shapes
    for ax in picker.axes:
        colls = [c for c in ax.collections if c.get_label() in ("change", "no change")]
        assert {c.get_label(): len(c.get_offsets()) for c in colls} == {"change": 2, "no change": 2}
    assert "2 change, 2 no change" in picker.figure.get_suptitle()
    # save, load into a new picker, same GeoJSON; a click beside the image, or while zooming, adds nothing
    path = picker.save(tmp_path / "ex.geojson")
    again = plot.ExamplePicker(pair, examples=path)
    assert again.to_geojson() == fc
    left, right, bottom, top = again.axes[0].get_xlim() + again.axes[0].get_ylim()
    again.figure.draw_without_rendering()
    _click(again, again.axes[0], left - 50, top + 50, 1)
    assert len(again) == 4
    x, y = grid.transform * (20.5, 20.5)
    with pytest.MonkeyPatch.context() as mp:  # the toolbar's zoom is on: the click zooms, it marks nothing
        mp.setattr(again.figure.canvas, "toolbar", type("Toolbar", (), {"mode": "zoom rect"})())
        _click(again, again.axes[0], x, y, 1)
    assert len(again) == 4
    _click(again, again.axes[0], x, y, 1)
    assert len(again) == 5
    out = plot.save_figure(picker.figure, tmp_path / "picker.png", dpi=60)
    assert out.read_bytes()[:8] == PNG_SIGNATURE


def test_picker_pixel_coordinates_without_crs_and_add_does_what_a_click_does() -> None:
    from changedet.learn import read_examples

    img = GeoRaster(np.random.default_rng(1).random((3, 40, 70)), Affine.identity(), None, ("red", "green", "blue"))
    clicked = plot.ExamplePicker((img, img))
    clicked.figure.draw_without_rendering()
    added = plot.ExamplePicker((img, img), mode="no change")  # a left click then marks no change
    for row, col, change in [(0, 0, True), (39, 69, False), (20, 35, True)]:
        _click(clicked, clicked.axes[1], col + 0.5, row + 0.5, 1 if change else 3)
        added.add(col + 0.5, row + 0.5, change)
    fc = clicked.to_geojson()
    assert fc == added.to_geojson()
    assert [f["geometry"]["coordinates"] for f in fc["features"]] == [[0.5, 0.5], [69.5, 39.5], [35.5, 20.5]]
    ex = read_examples(fc, img.grid)
    assert sorted(zip(ex.row.tolist(), ex.col.tolist())) == [(0, 0), (20, 35), (39, 69)]
    clicked.undo()
    assert len(clicked) == 2
    clicked.clear()
    assert clicked.to_geojson()["features"] == []
    # a pixel size without a CRS (detect_changes(..., pixel_size_m=0.5)): the axes are in metres, the GeoJSON in pixels
    metres = GeoRaster(img.data, Affine(0.5, 0, 0, 0, -0.5, 0), None, img.band_names)
    scaled = plot.ExamplePicker((metres, metres))
    scaled.add(*(metres.transform * (35.5, 20.5)), True)
    assert scaled.to_geojson()["features"][0]["geometry"]["coordinates"] == [35.5, 20.5]
    again = plot.ExamplePicker((metres, metres), examples=scaled.to_geojson())
    assert again.to_geojson() == scaled.to_geojson()


def test_picker_rerun_redraws_the_outlines_and_errors_are_clear(
    pair: tuple[GeoRaster, GeoRaster], polygons: StandInPolygons
) -> None:
    seen = []

    @dataclass(frozen=True)
    class Result:
        polygons: StandInPolygons

    fewer = StandInPolygons(polygons.geometries[:1], polygons.properties[:1], UTM)

    def rerun(examples: dict) -> Result:
        seen.append(examples)
        return Result(fewer)

    picker = plot.ExamplePicker(pair, on_rerun=rerun)
    with pytest.raises(InvalidParameterError, match="both kinds"):
        picker.rerun()
    x, y = pair[0].grid.transform * (35.5, 15.5)
    picker.add(x, y, True)
    picker.add(x + 100, y - 100, False)
    assert picker.rerun().polygons is fewer and seen == [picker.to_geojson()]
    legend = [t.get_text() for t in picker.figure.legends[-1].get_texts()]
    assert legend == ["change", "no change", "detected change: 1 area, 1.5 ha"]
    for ax in picker.axes:
        outlines = [c for c in ax.collections if isinstance(c, LineCollection) and c.get_label() == "_outline"]
        assert [len(c.get_segments()) for c in outlines] == [1]  # the old outlines are gone
    with pytest.raises(InvalidParameterError, match="outside the image"):
        picker.add(0.0, 0.0, True)
    with pytest.raises(InvalidParameterError, match="True or False"):
        picker.add(x, y, "yes")
    with pytest.raises(InvalidParameterError, match="mode must be"):
        picker.mode = "maybe"
    with pytest.raises(InvalidParameterError, match="source must be"):
        plot.ExamplePicker(pair[0])
    with pytest.raises(InvalidParameterError, match="feature 0 is not a Point"):
        picker.load({"type": "FeatureCollection", "features": [
            {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": []}, "properties": {"change": True}}]})
    with pytest.raises(InvalidParameterError, match="outside the image"):
        picker.load({"type": "FeatureCollection", "features": [
            {"type": "Feature", "geometry": {"type": "Point", "coordinates": [0.0, 0.0]}, "properties": {"change": True}}]})
    assert len(picker) == 2  # a failed load adds nothing


def test_picker_widget_has_the_buttons(pair: tuple[GeoRaster, GeoRaster]) -> None:
    w = pytest.importorskip("ipywidgets")
    picker = plot.ExamplePicker(pair)
    box = picker.widget()
    buttons = [c.description for c in box.children[0].children if isinstance(c, w.Button)]
    assert buttons == ["Re-run", "Undo", "Clear"]
    assert box.children[0].children[-3].disabled  # no on_rerun: Re-run is off


# --- one colour per class, one stretch, scale in metres, structures (issue 13) -----------------


def _class_colour(fig: Any, cls: str) -> tuple[float, ...]:
    coll = next(c for c in fig.axes[2].collections if str(c.get_label()).startswith(cls.replace("_", " ")))
    return tuple(np.round(coll.get_colors()[0][:3], 6))


def test_overview_each_class_keeps_its_colour_whatever_the_scene(pair: tuple[GeoRaster, GeoRaster]) -> None:
    a, b, c = box(500000, 5299500, 500050, 5299550), box(500100, 5299600, 500200, 5299700), box(500300, 5299800,
                                                                                              500450, 5299900)
    # water change alone, then as the rarest of three classes: colours used to go by frequency rank
    alone = StandInPolygons((a,), ({"change_class": "water_change", "area_m2": 2500.0},), UTM)
    crowd = StandInPolygons((a, b, c), ({"change_class": "water_change", "area_m2": 2500.0},
                                        {"change_class": "new_construction", "area_m2": 1e4},
                                        {"change_class": "new_construction", "area_m2": 1.5e4}), UTM)
    want = tuple(np.round(to_rgb(plot.CHANGE_CLASS_COLORS["water_change"]), 6))
    assert _class_colour(plot.plot_overview(*pair, polygons=alone), "water_change") == want
    fig = plot.plot_overview(*pair, polygons=crowd)
    assert _class_colour(fig, "water_change") == want
    assert _class_colour(fig, "new_construction") == tuple(np.round(to_rgb(plot.CHANGE_CLASS_COLORS["new_construction"]), 6))
    assert len(set(plot.CHANGE_CLASS_COLORS[k] for k in plot.CHANGE_CLASS_COLORS if k != "change")) == 7
    assert plot.STRUCTURE_COLOR not in plot.CHANGE_CLASS_COLORS.values()


def test_overview_stretches_both_dates_alike(transform: Affine) -> None:
    rng = np.random.default_rng(3)
    names = ("red", "green", "blue")
    before = GeoRaster(rng.uniform(100, 200, (3, 40, 50)).astype("float32"), transform, UTM, names)
    after = before.with_data(before.data * 0.5)  # the same scene, half as bright
    fig = plot.plot_overview(before, after)
    shown_b, shown_a = (np.asarray(ax.get_images()[0].get_array(), float) for ax in fig.axes[:2])
    # stretched each on its own both would look alike; under one stretch the after date is darker
    assert shown_a.mean() < 0.6 * shown_b.mean()
    np.testing.assert_allclose(shown_b.mean(axis=(0, 1)), shown_b.mean(axis=(0, 1)).mean(), atol=15)


def _scale_text(ax: Any) -> str:
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    bar = next(a for a in ax.artists if isinstance(a, AnchoredSizeBar))
    return bar.txt_label.get_children()[0].get_text()


def test_scale_bar_reads_metres_with_a_pixel_size() -> None:
    img = GeoRaster(np.random.default_rng(0).random((3, 200, 200)).astype("float32"), Affine.identity(), None)
    assert _scale_text(plot.plot_overview(img, img).axes[0]).endswith(" px")
    # 200 px of 0.5 m: 100 m wide, a bar of a quarter of it at most
    fig = plot.plot_overview(img, img, pixel_size_m=0.5)
    assert _scale_text(fig.axes[0]) == "20 m"
    assert fig.axes[0].get_xlabel().endswith("pixels of 0.5 m")
    with pytest.raises(InvalidParameterError, match="pixel_size_m must be a positive number"):
        plot.plot_overview(img, img, pixel_size_m=-1)


def test_overview_marks_each_structure(pair: tuple[GeoRaster, GeoRaster], polygons: StandInPolygons) -> None:
    blocks = StandInPolygons((box(500300, 5299800, 500360, 5299815), box(500300, 5299830, 500360, 5299845)),
                             ({"area_m2": 900.0}, {"area_m2": 900.0}), UTM)
    fig = plot.plot_overview(*pair, polygons=polygons, structures=blocks)
    drawn = [c for c in fig.axes[2].collections if c.get_label() == "_structures"]
    assert len(drawn) == 1 and len(drawn[0].get_segments()) == 2
    np.testing.assert_allclose(drawn[0].get_colors()[0][:3], to_rgb(plot.STRUCTURE_COLOR))
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "structures: 2 (median 900 m\u00b2)" in texts
    assert "2 structures" in fig.axes[2].get_title()


# --- the README's hero image is the demo's (issue 13) ------------------------------------------


def test_readme_hero_agrees_with_the_demo(tmp_path: Path) -> None:
    import importlib.util

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("make_hero", root / "docs" / "make_hero.py")
    make_hero = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(make_hero)
    result = make_hero.demo_result(tmp_path / "demo")
    readme = " ".join((root / "README.md").read_text(encoding="utf-8").split())  # lines wrapped anywhere
    # the image the README shows, and under it the demo's own numbers
    assert "](docs/demo_overview.png)" in readme
    assert make_hero.caption(result.summary) in readme
    from matplotlib import image as mpl_image

    shown = mpl_image.imread(root / "docs" / "demo_overview.png")
    fresh = mpl_image.imread(tmp_path / "demo" / "overview.png")
    assert shown.shape == fresh.shape
    # the figure's change-panel title gives the same count the README states
    areas = "area" if result.n_changes == 1 else "areas"
    assert f"changes: {result.n_changes} {areas}" in result.plot().axes[2].get_title()
    assert f"{result.n_changes} changed {areas}" in make_hero.caption(result.summary)


# --- acquisition dates in the summary and the titles (issue 13) --------------------------------


def _tif(path: Path, data: np.ndarray, transform: Affine, **tags: str) -> Path:
    import rasterio

    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                       dtype=data.dtype.name, crs=UTM, transform=transform) as dst:
        dst.write(data)
        dst.descriptions = ("B02", "B03", "B04", "B08")
        if tags:
            dst.update_tags(**tags)
    return path


def test_dates_from_tags_names_item_json_and_dates_txt(tmp_path: Path, transform: Affine) -> None:
    import json

    from changedet._dates import acquisition_date
    from changedet.pipeline import detect_changes

    rng = np.random.default_rng(1)
    img = rng.uniform(500, 600, (4, 40, 40)).astype("uint16")
    new = img.copy()
    new[:, 10:20, 10:25] += 2000
    b = _tif(tmp_path / "before.tif", img, transform, ACQUISITION_DATE="2024-06-14")
    a = _tif(tmp_path / "S2B_MSIL2A_20250619T083559_N0511_R064_T39UWB.tif", new, transform)
    result = detect_changes(b, a, figures=False)
    assert result.summary["dates"] == {"before": "2024-06-14", "after": "2025-06-19",
                                       "source": {"before": "tag", "after": "name"}, "days_apart_in_year": 5}
    titles = [ax.get_title() for ax in result.plot().axes]
    assert titles[0] == "before (2024-06-14)" and titles[1] == "after (2025-06-19)"
    # a folder written by fetch: item.json; OSCD band folders: dates.txt beside them
    fetched = tmp_path / "fetched" / "after"
    fetched.mkdir(parents=True)
    (fetched / "item.json").write_text(json.dumps({"type": "Feature", "properties": {"datetime": "2023-05-02T08:36:01Z"}}))
    assert acquisition_date(fetched) == ("2023-05-02", "item.json")
    city = tmp_path / "rennes"
    (city / "imgs_2").mkdir(parents=True)
    (city / "dates.txt").write_text("date_1: 20150703\ndate_2: 20170628\n")
    assert acquisition_date(city / "imgs_2") == ("2017-06-28", "dates.txt")
    assert acquisition_date(tmp_path / "scene_20241341.tif") == (None, None)  # not a date
    untagged = detect_changes(GeoRaster(img.astype("float32"), transform, UTM, ("B02", "B03", "B04", "B08")),
                              GeoRaster(new.astype("float32"), transform, UTM, ("B02", "B03", "B04", "B08")),
                              figures=False)
    assert untagged.summary["dates"]["before"] is None
    assert [ax.get_title() for ax in untagged.plot().axes][:2] == ["before", "after"]
