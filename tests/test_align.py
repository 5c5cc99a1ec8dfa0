"""Tests for changedet.align: overlap grids, reprojection, sub-pixel co-registration."""

from __future__ import annotations

import math

import numpy as np
import pytest
from affine import Affine
from pyproj import Transformer
from rasterio.crs import CRS
from scipy import ndimage

from conftest import ORIGIN, UTM39, Scene, textured_field
from changedet.align import (
    AlignedPair,
    Shift,
    align_pair,
    align_to,
    apply_shift,
    coregister,
    estimate_shift,
    overlap_grid,
)
from changedet.errors import BandMismatchError, EmptyDataError, GridMismatchError, InvalidParameterError, NoOverlapError
from changedet.raster import GeoRaster, Grid

T10 = Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1])


def _g(shape: tuple[int, int], x0: float, y0: float, res: float = 10.0, crs: CRS | None = UTM39) -> Grid:
    return Grid(shape, Affine(res, 0, x0, 0, -res, y0), crs)


# --------------------------------------------------------------------------- overlap
def test_overlap_grid_of_offset_tiles() -> None:
    a = _g((100, 100), ORIGIN[0], ORIGIN[1])
    b = _g((100, 100), ORIGIN[0] + 250, ORIGIN[1] - 130)  # 25 px east, 13 px south
    g = overlap_grid(a, b)
    assert g.shape == (87, 75)
    assert g.transform == Affine(10, 0, ORIGIN[0] + 250, 0, -10, ORIGIN[1] - 130)
    assert g.crs == UTM39
    # the overlap seen from b keeps b's pixels: same bounds
    assert overlap_grid(b, a).bounds == pytest.approx(g.bounds, abs=1e-6)


def test_overlap_grid_keeps_whole_pixels_only() -> None:
    a = _g((100, 100), ORIGIN[0], ORIGIN[1])
    b = _g((100, 100), ORIGIN[0] + 255, ORIGIN[1])  # half-pixel offset
    g = overlap_grid(a, b)
    assert g.shape == (100, 74)  # column 25 is only half covered
    assert g.transform.c == ORIGIN[0] + 260


def test_overlap_grid_contained_tile() -> None:
    big = _g((100, 100), ORIGIN[0], ORIGIN[1])
    small = _g((10, 20), ORIGIN[0] + 100, ORIGIN[1] - 100)
    assert overlap_grid(big, small).same_as(small)
    assert overlap_grid(small, big).same_as(small)


def test_overlap_grid_in_another_crs() -> None:
    utm = _g((100, 100), ORIGIN[0], ORIGIN[1])
    to_ll = Transformer.from_crs(32639, 4326, always_xy=True)
    lon0, lat0 = to_ll.transform(ORIGIN[0] - 2000, ORIGIN[1] + 2000)
    geo = Grid((600, 800), Affine(1e-4, 0, lon0, 0, -1e-4, lat0), CRS.from_epsg(4326))  # covers utm
    assert overlap_grid(utm, geo).same_as(utm)


def test_no_overlap() -> None:
    a = _g((100, 100), ORIGIN[0], ORIGIN[1])
    b = _g((100, 100), ORIGIN[0] + 5000, ORIGIN[1])
    with pytest.raises(
        NoOverlapError,
        match=r"the images do not overlap: before covers \(500000, 6\.199e\+06, 501000, 6\.2e\+06\) and after covers "
        r"\(505000, .*\) \(in EPSG:32639\); pass two images of the same site",
    ):
        overlap_grid(a, b)
    touching = _g((100, 100), ORIGIN[0] + 1000, ORIGIN[1])  # shares an edge only
    with pytest.raises(NoOverlapError, match="do not overlap"):
        overlap_grid(a, touching)
    sliver = _g((100, 100), ORIGIN[0] + 995, ORIGIN[1])  # half a pixel
    with pytest.raises(NoOverlapError, match=r"overlap by less than 2x2 pixels of the analysis grid \(EPSG:32639 10 m 100x100\)"):
        overlap_grid(a, sliver)


def test_pixel_grids_of_different_sizes() -> None:
    a = Grid((96, 128), Affine.identity(), None)
    b = Grid((96, 130), Affine.identity(), None)
    assert overlap_grid(a, Grid((96, 128), Affine.identity(), None)) == a
    with pytest.raises(
        GridMismatchError,
        match=r"images without georeferencing must have the same size; got 96x128 \(before\) and 96x130 \(after\); crop or resize",
    ):
        overlap_grid(a, b)


def test_georeferenced_with_pixel_grid() -> None:
    with pytest.raises(GridMismatchError, match=r"one image is georeferenced and the other is not \(EPSG:32639 10 m 5x5 vs pixel grid"):
        overlap_grid(_g((5, 5), 0, 0), Grid((5, 5), Affine.identity(), None))


# --------------------------------------------------------------------------- align_to / align_pair
def _smooth(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A smooth field of UTM 39N coordinates (wavelengths of kilometres)."""
    return 1000 + 300 * np.sin((x - ORIGIN[0]) / 700) + 200 * np.cos((y - ORIGIN[1]) / 500)


def _sample_in(crs_epsg: int, transform: Affine, shape: tuple[int, int]) -> np.ndarray:
    """``_smooth`` sampled at the pixel centres of a grid in another CRS."""
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]] + 0.5
    xs = transform.c + transform.a * cols
    ys = transform.f + transform.e * rows
    tr = Transformer.from_crs(crs_epsg, 32639, always_xy=True)
    x39, y39 = tr.transform(xs, ys)
    return _smooth(np.asarray(x39), np.asarray(y39)).astype("float32")


@pytest.mark.parametrize("after_epsg", [4326, 32638])
def test_reprojection_onto_the_before_grid(after_epsg: int) -> None:
    shape = (80, 100)
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]] + 0.5
    before_vals = _smooth(ORIGIN[0] + 10 * cols, ORIGIN[1] - 10 * rows).astype("float32")
    before = GeoRaster(np.stack([before_vals, before_vals * 0.5]), T10, UTM39, ("B04", "B08"))
    # the after image covers more than the before image, in its own CRS
    tr = Transformer.from_crs(32639, after_epsg, always_xy=True)
    x0, y0 = tr.transform(ORIGIN[0] - 300, ORIGIN[1] + 300)
    x1, y1 = tr.transform(ORIGIN[0] + 1300, ORIGIN[1] - 1100)
    res = 1e-4 if after_epsg == 4326 else 8.0
    a_shape = (math.ceil(abs(y0 - y1) / res) + 20, math.ceil(abs(x1 - x0) / res) + 20)
    t_after = Affine(res, 0, min(x0, x1) - 10 * res, 0, -res, max(y0, y1) + 10 * res)
    vals = _sample_in(after_epsg, t_after, a_shape)
    after = GeoRaster(np.stack([vals * 0.5, vals]), t_after, CRS.from_epsg(after_epsg), ("B08", "B04"))

    pair = align_pair(before, after)
    assert isinstance(pair, AlignedPair)
    assert pair.grid.same_as(before.grid)
    assert pair.before is before or np.array_equal(pair.before.data, before.data)
    assert pair.after.band_names == ("B04", "B08")  # the before image's band order
    assert pair.after.grid.same_as(before.grid)
    assert np.isfinite(pair.after.data).all()
    # bilinear resampling of a smooth field: within 0.5 % of its 500-unit amplitude
    np.testing.assert_allclose(pair.after.data[0], before_vals, atol=2.5)
    np.testing.assert_allclose(pair.after.data[1], before_vals * 0.5, atol=1.25)


def test_align_to_exact_crop_is_not_resampled() -> None:
    rng = np.random.default_rng(0)
    r = GeoRaster(rng.normal(size=(2, 20, 30)).astype("float32"), T10, UTM39, ("a", "b"))
    g = Grid((5, 7), Affine(10, 0, ORIGIN[0] + 40, 0, -10, ORIGIN[1] - 30), UTM39)
    out = align_to(r, g)
    np.testing.assert_array_equal(out.data, r.data[:, 3:8, 4:11])
    assert out.band_names == ("a", "b") and out.grid.same_as(g)
    assert align_to(r, r.grid) is r


def test_align_to_outside_the_footprint_is_nan() -> None:
    r = GeoRaster(np.ones((1, 10, 10), "float32"), T10, UTM39)
    g = Grid((10, 10), Affine(10, 0, ORIGIN[0] + 50, 0, -10, ORIGIN[1]), UTM39)  # half outside
    out = align_to(r, g)
    assert np.all(out.data[0, :, :5] == 1) and np.isnan(out.data[0, :, 5:]).all()


def test_align_to_downsampling_averages() -> None:
    rng = np.random.default_rng(1)
    data = rng.uniform(0, 100, size=(1, 30, 30)).astype("float32")
    r = GeoRaster(data, T10, UTM39)
    g30 = Grid((10, 10), Affine(30, 0, ORIGIN[0], 0, -30, ORIGIN[1]), UTM39)
    out = align_to(r, g30)
    expected = data[0].reshape(10, 3, 10, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(out.data[0], expected, rtol=1e-5)


def test_align_to_validation() -> None:
    r = GeoRaster(np.ones((1, 10, 10), "float32"), T10, UTM39)
    with pytest.raises(InvalidParameterError, match=r"resampling must be nearest, bilinear, cubic or average; got 'lanczos'"):
        align_to(r, r.grid, resampling="lanczos")  # type: ignore[arg-type]
    px = GeoRaster(np.ones((1, 10, 10), "float32"), Affine.identity(), None)
    with pytest.raises(GridMismatchError, match=r"cannot align a non-georeferenced raster onto EPSG:32639"):
        align_to(px, r.grid)
    with pytest.raises(GridMismatchError, match=r"images without georeferencing cannot be reprojected .*; crop or resize"):
        align_to(px, Grid((10, 10), Affine.scale(2), None))


def test_align_pair_no_common_band() -> None:
    b = GeoRaster(np.ones((2, 10, 10), "float32"), T10, UTM39, ("B04", "B08"))
    a = GeoRaster(np.ones((2, 10, 10), "float32"), T10, UTM39, ("red", "nir"))
    with pytest.raises(
        BandMismatchError,
        match=r"the two dates share no band: before has \['B04', 'B08'\], after has \['red', 'nir'\]; pass images with the same bands",
    ):
        align_pair(b, a)


def test_align_pair_drops_and_reorders_bands() -> None:
    b = GeoRaster(np.ones((3, 10, 10), "float32"), T10, UTM39, ("B02", "B04", "B08"))
    a = GeoRaster(np.stack([np.full((10, 10), v, "float32") for v in (8, 4, 11)]), T10, UTM39, ("B08", "B04", "B11"))
    p = align_pair(b, a)
    assert p.before.band_names == p.after.band_names == ("B04", "B08")
    assert p.dropped_bands == ("B02", "B11")
    assert p.after.data[0, 0, 0] == 4 and p.after.data[1, 0, 0] == 8


def test_align_pair_pixel_grids() -> None:
    b = GeoRaster(np.ones((3, 20, 30), "float32"), Affine.identity(), None, ("red", "green", "blue"))
    p = align_pair(b, b.with_data(b.data * 2))
    assert p.grid.crs is None and p.grid.shape == (20, 30)
    small = GeoRaster(np.ones((3, 20, 29), "float32"), Affine.identity(), None, ("red", "green", "blue"))
    with pytest.raises(GridMismatchError, match=r"must have the same size; got 20x30 \(before\) and 20x29 \(after\)"):
        align_pair(b, small)


def test_align_pair_after_empty_over_the_overlap() -> None:
    b = GeoRaster(np.ones((1, 10, 10), "float32"), T10, UTM39, ("B04",))
    a = b.with_data(np.full((1, 10, 10), np.nan, "float32"))
    with pytest.raises(EmptyDataError, match=r"the after image holds only nodata over the overlap of the two dates \(EPSG:32639"):
        align_pair(b, a)


# --------------------------------------------------------------------------- co-registration
@pytest.fixture(scope="module")
def texture_with_change() -> np.ndarray:
    """(2, 256, 256) textured image with a bright 20 x 30 px block planted."""
    img = np.stack([textured_field((256, 256), seed=11, sigma=2.0), textured_field((256, 256), seed=12, sigma=2.0)])
    img[:, 100:120, 60:90] += 6.0
    return img


@pytest.mark.parametrize("shift", [(0.3, -2.2), (1.5, 0.3), (-2.2, 1.5), (0.0, 0.0)])
def test_estimate_shift_recovers_known_shifts(texture_with_change: np.ndarray, shift: tuple[float, float]) -> None:
    before = texture_with_change.copy()
    before[:, 100:120, 60:90] -= 6.0  # the block is new in the after image
    after = np.stack([ndimage.shift(b, shift, order=3, mode="nearest") for b in texture_with_change])
    s = estimate_shift(before, after)
    # the shift that registers after onto before is the opposite of the one applied
    assert s.rows == pytest.approx(-shift[0], abs=0.1)
    assert s.cols == pytest.approx(-shift[1], abs=0.1)
    assert s.n_blocks >= 5 and s.spread < 0.1


def test_coregister_registers_the_after_image(texture_with_change: np.ndarray) -> None:
    before = GeoRaster(texture_with_change.astype("float32"), T10, UTM39, ("a", "b"))
    moved = np.stack([ndimage.shift(b, (1.5, -0.7), order=3, mode="nearest") for b in texture_with_change])
    after = before.with_data(moved.astype("float32"))
    registered, s = coregister(before, after)
    assert (s.rows, s.cols) == pytest.approx((-1.5, 0.7), abs=0.1)
    assert registered.grid.same_as(before.grid) and registered.band_names == before.band_names
    inner = (slice(None), slice(8, -8), slice(8, -8))
    err_before = np.sqrt(np.mean((after.data[inner] - before.data[inner]) ** 2))
    err_after = np.sqrt(np.nanmean((registered.data[inner] - before.data[inner]) ** 2))
    assert err_after < 0.2 * err_before  # bilinear resampling leaves some blur


def test_coregister_leaves_small_shifts_alone(texture_with_change: np.ndarray) -> None:
    before = GeoRaster(texture_with_change.astype("float32"), T10, UTM39)
    out, s = coregister(before, before)
    assert out is before and s.magnitude < 0.05


def test_coregister_needs_one_grid() -> None:
    a = GeoRaster(np.ones((1, 64, 64), "float32"), T10, UTM39)
    b = GeoRaster(np.ones((1, 64, 64), "float32"), T10 * Affine.translation(1, 0), UTM39)
    with pytest.raises(GridMismatchError, match="coregister needs both dates on one grid; call align_pair first"):
        coregister(a, b)


def test_estimate_shift_degenerate_inputs(textured) -> None:
    tiny = textured((20, 20), seed=1)
    s = estimate_shift(tiny, tiny)
    assert (s.rows, s.cols, s.n_blocks) == (0.0, 0.0, 0) and math.isnan(s.spread)
    flat = np.ones((64, 64))
    assert estimate_shift(flat, flat).n_blocks == 0
    nodata = np.full((64, 64), np.nan)
    assert estimate_shift(nodata, nodata).n_blocks == 0
    with pytest.raises(GridMismatchError, match=r"estimate_shift needs arrays of one shape, got \(1, 64, 64\) and \(1, 64, 65\)"):
        estimate_shift(flat, np.ones((64, 65)))


def test_shift_dataclass() -> None:
    s = Shift(3.0, -4.0, 0.01234, 7)
    assert s.magnitude == 5.0
    assert s.as_dict() == {"rows": 3.0, "cols": -4.0, "spread_px": 0.012, "n_blocks": 7, "applied": True}
    assert Shift(3.0, -4.0, 0.0, 7, applied=False).as_dict()["applied"] is False


def test_apply_shift_integer_and_nan_handling() -> None:
    x = np.arange(36, dtype="float32").reshape(1, 6, 6)
    x[0, 2, 2] = np.nan
    x.setflags(write=False)  # apply_shift must not modify its input
    out = apply_shift(x, Shift(0.0, 1.0))
    assert out.shape == x.shape and out.dtype == np.float32
    assert np.isnan(out[0, :, 0]).all()  # nothing came in from the left edge
    assert np.isnan(out[0, 2, 3]) and int(np.isnan(out).sum()) == 7  # the NaN moved one column right
    finite = np.isfinite(out)
    np.testing.assert_array_equal(out[finite], np.roll(x, 1, axis=2)[finite])


def test_apply_shift_fractional_spreads_nodata() -> None:
    x = np.ones((6, 6), "float32")
    x[2, 2] = np.nan
    out = apply_shift(x, Shift(0.0, 0.5), order=1)
    assert out.shape == (6, 6)  # 2-D in, 2-D out
    # bilinear: pixels (2, 2) and (2, 3) both draw on the NaN; column 0 on the outside
    assert np.isnan(out[2, 2]) and np.isnan(out[2, 3]) and np.isnan(out[:, 0]).all()
    assert int(np.isnan(out).sum()) == 6 + 2
    np.testing.assert_allclose(out[np.isfinite(out)], 1.0, atol=1e-6)  # the NaN did not leak as a value


def test_apply_shift_zero_is_identity() -> None:
    x = np.ones((2, 4, 4), "float32")
    assert apply_shift(x, Shift(0.0, 0.0)) is x


def test_coregistration_of_the_pipeline_scene_is_zero(scene: Scene) -> None:
    """The synthetic scene (no shift, one planted building) needs no correction."""
    s = estimate_shift(scene.before, scene.after)
    assert s.magnitude < 0.05 and s.n_blocks >= 1


def test_apply_shift_cubic_default_keeps_more_contrast_than_linear() -> None:
    """Cubic convolution (the default) spreads NaN two pixels each way and keeps a
    one-pixel-wide feature (a narrow building at 10 m) brighter than linear interpolation."""
    x = np.zeros((1, 8, 12), "float32")
    x[0, :, 6] = 100.0
    cubic = apply_shift(x, Shift(0.0, 0.5))[0, 3]
    linear = apply_shift(x, Shift(0.0, 0.5), order=1)[0, 3]
    assert np.isnan(cubic[:2]).all() and np.isnan(cubic[-1]) and np.isnan(linear[0])
    assert linear[6] == pytest.approx(50.0) and linear[7] == pytest.approx(50.0)
    assert cubic[6] == pytest.approx(56.25) and cubic[7] == pytest.approx(56.25)
    assert np.nansum(cubic) == pytest.approx(100.0) and np.nansum(linear) == pytest.approx(100.0)
    with pytest.raises(InvalidParameterError, match="order must be"):
        apply_shift(x, Shift(0.0, 0.5), order=2)


def test_coregister_rejects_a_shift_made_up_by_a_new_building() -> None:
    """One block dominated by a new bright building fakes a shift; the median check refuses it."""
    rng = np.random.default_rng(0)
    base = ndimage.gaussian_filter(rng.normal(size=(4, 96, 96)), (0, 3, 3))
    img = (800 + 400 * base / base.std()).astype("float32")
    after = img.copy()
    after[:, 40:52, 30:50] += 2500
    b = GeoRaster(img, Affine(10, 0, 0, 0, -10, 0), "EPSG:32639")
    a, shift = coregister(b, b.with_data(after))
    assert not shift.applied
    assert a.data is not None and np.array_equal(a.data, after)
