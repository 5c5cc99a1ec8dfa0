"""Tests for changedet.raster (Grid, GeoRaster, grid checks) and changedet.errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from affine import Affine
from pyproj import Transformer
from rasterio.crs import CRS

from changedet import errors
from changedet.errors import GridMismatchError, InvalidParameterError
from changedet.raster import GeoRaster, Grid, apply_affine, check_same_grid, describe_grid

UTM39 = CRS.from_epsg(32639)
WGS84 = CRS.from_epsg(4326)


# --------------------------------------------------------------------------- Grid
def test_grid_res_bounds_size(grid: Grid) -> None:
    assert grid.res == (10.0, 10.0)
    assert grid.shape == (192, 224) and (grid.height, grid.width) == (192, 224)
    assert grid.bounds == (500_000.0, 6_200_000.0 - 1920.0, 500_000.0 + 2240.0, 6_200_000.0)
    assert grid.pixel_size_m == pytest.approx(10.0, abs=1e-9)
    assert grid.pixel_area_m2 == pytest.approx(100.0, abs=1e-9)
    assert not grid.is_geographic
    # centre of the top-left pixel
    assert grid.xy(0, 0) == (500_005.0, 6_199_995.0)


def test_grid_bounds_of_a_rotated_transform() -> None:
    # 90-degree rotation: rows run along +x, columns along +y
    g = Grid((2, 3), Affine(0, 10, 100, 10, 0, 200), UTM39)
    assert g.bounds == (100.0, 200.0, 120.0, 230.0)
    assert g.res == (10.0, 10.0)


def test_grid_pixel_size_geographic_within_1_percent() -> None:
    """A 1e-4 degree pixel at 56 N measured independently in UTM 39N (central meridian 51 E)."""
    res = 1e-4
    g = Grid((100, 100), Affine(res, 0, 50.995, 0, -res, 56.005), WGS84)
    assert g.is_geographic
    lon, lat = 51.0, 56.0  # the grid centre
    tr = Transformer.from_crs(4326, 32639, always_xy=True)
    x0, y0 = tr.transform(lon, lat)
    x1, _ = tr.transform(lon + res, lat)
    _, y2 = tr.transform(lon, lat + res)
    expected = np.sqrt(abs(x1 - x0) * abs(y2 - y0)) / 0.9996  # undo the UTM scale factor on the meridian
    assert g.pixel_size_m == pytest.approx(expected, rel=0.01)
    # and the raw numbers make sense: ~6.2 m east-west x ~11.1 m north-south
    assert g.pixel_size_m == pytest.approx(np.sqrt(6.24 * 11.15), rel=0.01)
    assert g.pixel_area_m2 == pytest.approx(expected**2, rel=0.02)


def test_grid_pixel_size_in_feet() -> None:
    # EPSG:2263 (NY Long Island, US survey feet): 3.28 ft pixels are about 1 m
    g = Grid((10, 10), Affine(3.280833333, 0, 1_000_000, 0, -3.280833333, 200_000), CRS.from_epsg(2263))
    assert g.pixel_size_m == pytest.approx(1.0, rel=1e-4)


def test_pixel_grid_without_crs() -> None:
    g = Grid((3, 4), Affine.identity(), None)
    assert g.pixel_size_m == 1.0
    assert g.bounds == (0.0, 0.0, 4.0, 3.0)
    assert describe_grid(g) == "pixel grid (no CRS) 1 px 3x4"


@pytest.mark.parametrize("shape", [(0, 5), (5, 0), (-1, 3)])
def test_grid_shape_must_be_positive(shape: tuple[int, int]) -> None:
    with pytest.raises(InvalidParameterError, match=r"grid shape must be positive, got \(-?\d+, -?\d+\)"):
        Grid(shape, Affine.identity(), None)


def test_grid_shape_is_normalised_to_ints() -> None:
    g = Grid((np.int64(2), 3.0), Affine.identity())  # type: ignore[arg-type]
    assert g.shape == (2, 3) and all(type(v) is int for v in g.shape)


def test_same_as(grid: Grid) -> None:
    t = grid.transform
    assert grid.same_as(Grid(grid.shape, t, CRS.from_epsg(32639)))
    # float noise far below a pixel is the same grid
    assert grid.same_as(Grid(grid.shape, Affine(10, 0, t.c + 1e-7, 0, -10, t.f), grid.crs))
    assert not grid.same_as(Grid(grid.shape, Affine(10, 0, t.c + 5, 0, -10, t.f), grid.crs))  # half a pixel
    assert not grid.same_as(Grid(grid.shape, Affine(20, 0, t.c, 0, -20, t.f), grid.crs))  # resolution
    assert not grid.same_as(Grid((grid.height, grid.width + 1), t, grid.crs))  # shape
    assert not grid.same_as(Grid(grid.shape, t, CRS.from_epsg(32638)))  # CRS
    assert not grid.same_as(Grid(grid.shape, t, None))  # georeferenced vs pixel grid
    assert not Grid(grid.shape, t, None).same_as(grid)


def test_describe_grid(grid: Grid) -> None:
    assert describe_grid(grid) == "EPSG:32639 10 m 192x224"
    assert grid.describe() == describe_grid(grid)
    g = Grid((5, 6), Affine(0.0001, 0, 51, 0, -0.0001, 56), WGS84)
    assert describe_grid(g) == "EPSG:4326 0.0001 deg 5x6"


def test_grid_is_frozen(grid: Grid) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        grid.shape = (1, 1)  # type: ignore[misc]


def test_apply_affine() -> None:
    assert apply_affine(Affine(10, 0, 100, 0, -10, 50), 1, 2) == (110.0, 30.0)
    assert apply_affine(~Affine(10, 0, 100, 0, -10, 50), 110.0, 30.0) == pytest.approx((1.0, 2.0), abs=1e-12)


# --------------------------------------------------------------------------- GeoRaster
def _raster(bands: int = 2, rows: int = 3, cols: int = 4, names: tuple[str, ...] = ()) -> GeoRaster:
    data = np.arange(bands * rows * cols, dtype="float32").reshape(bands, rows, cols)
    return GeoRaster(data, Affine(10, 0, 500_000, 0, -10, 6_200_000), UTM39, names)


def test_georaster_basic_properties() -> None:
    r = _raster(names=("red", "nir"))
    assert r.shape == (2, 3, 4) and (r.count, r.height, r.width) == (2, 3, 4)
    assert r.grid == Grid((3, 4), r.transform, UTM39)
    assert r.res == (10.0, 10.0)
    assert r.bounds == (500_000.0, 6_199_970.0, 500_040.0, 6_200_000.0)
    np.testing.assert_array_equal(r.band("nir"), r.data[1])
    assert r.band_index("nir") == 1
    assert repr(r) == "GeoRaster(2 bands ['red', 'nir'], EPSG:32639 10 m 3x4)"


def test_georaster_defaults_and_coercion() -> None:
    r = GeoRaster(np.zeros((3, 4), "float32"), (10.0, 0.0, 0.0, 0.0, -10.0, 0.0), "EPSG:32639")  # type: ignore[arg-type]
    assert r.shape == (1, 3, 4)  # a 2-D array is one band
    assert r.band_names == ("band1",)
    assert isinstance(r.transform, Affine) and r.transform == Affine(10, 0, 0, 0, -10, 0)
    assert isinstance(r.crs, CRS) and r.crs.to_epsg() == 32639
    assert _raster(bands=3).band_names == ("band1", "band2", "band3")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(data=np.zeros(5)), r"must be \(bands, rows, cols\) or \(rows, cols\); got an array of shape \(5,\)"),
        (dict(data=np.zeros((1, 1, 2, 2))), r"got an array of shape \(1, 1, 2, 2\)"),
        (dict(band_names=("a",)), r"band_names has 1 names \('a',\) but data has 2 bands; pass one name per band"),
        (dict(band_names=("a", "a")), r"band_names must be unique, got \('a', 'a'\)"),
    ],
)
def test_georaster_validation(kwargs: dict, match: str) -> None:
    args = dict(data=np.zeros((2, 3, 3)), transform=Affine.identity(), crs=None, band_names=())
    args.update(kwargs)
    with pytest.raises(InvalidParameterError, match=match):
        GeoRaster(**args)


def test_band_not_found_names_the_bands() -> None:
    r = _raster(names=("red", "nir"))
    with pytest.raises(InvalidParameterError, match=r"band 'swir16' not found; this raster has bands \['red', 'nir'\]"):
        r.band("swir16")
    with pytest.raises(InvalidParameterError, match="band 'B02' not found"):
        r.select(["nir", "B02"])


def test_select_reorders_and_keeps_the_grid() -> None:
    r = _raster(bands=3, names=("B02", "B03", "B04"))
    s = r.select(["B04", "B02"])
    assert s.band_names == ("B04", "B02")
    np.testing.assert_array_equal(s.data, r.data[[2, 0]])
    assert s.grid == r.grid
    assert r.band_names == ("B02", "B03", "B04")  # the original is untouched


def test_with_data() -> None:
    r = _raster(names=("red", "nir"))
    same = r.with_data(r.data * 2)
    assert same.band_names == ("red", "nir") and same.grid == r.grid
    np.testing.assert_array_equal(same.data, r.data * 2)
    one = r.with_data(r.data[0] > 5)  # 2-D, band count changes -> default names
    assert one.shape == (1, 3, 4) and one.band_names == ("band1",)
    named = r.with_data(r.data[:1], band_names=["score"])
    assert named.band_names == ("score",)
    with pytest.raises(InvalidParameterError, match=r"with_data needs an array of \(3, 4\) pixels, got \(4, 3\)"):
        r.with_data(np.zeros((2, 4, 3)))


def test_valid_mask() -> None:
    r = _raster()
    data = r.data.copy()
    data[0, 0, 0] = np.nan
    data[1, 2, 3] = np.inf
    v = r.with_data(data).valid_mask()
    assert v.shape == (3, 4) and v.dtype == bool
    assert not v[0, 0] and not v[2, 3] and int(v.sum()) == 10


def test_georaster_is_frozen() -> None:
    r = _raster()
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.crs = None  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.band_names = ("x", "y")  # type: ignore[misc]


def test_check_same_grid_message(grid: Grid) -> None:
    check_same_grid(grid, grid)
    other = Grid((10, 10), Affine(0.0001, 0, 51, 0, -0.0001, 56), WGS84)
    with pytest.raises(
        GridMismatchError,
        match=r"after grid differs from before \(EPSG:4326 0.0001 deg 10x10 vs EPSG:32639 10 m 192x224\); "
        r"pass align=True or call changedet.align.align_to\(after, like=before\)",
    ):
        check_same_grid(grid, other)
    r = _raster()
    with pytest.raises(GridMismatchError, match="truth grid differs"):
        check_same_grid(r, r.grid.__class__((3, 5), r.transform, r.crs), what="truth")


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("cls", "builtin"),
    [
        (errors.RasterReadError, OSError),
        (errors.GridMismatchError, ValueError),
        (errors.NoOverlapError, ValueError),
        (errors.BandMismatchError, ValueError),
        (errors.EmptyDataError, ValueError),
        (errors.InvalidParameterError, ValueError),
    ],
)
def test_errors_subclass_builtins(cls: type, builtin: type) -> None:
    assert issubclass(cls, errors.ChangedetError) and issubclass(cls, builtin)
    with pytest.raises(builtin, match="boom"):
        raise cls("boom")
    assert set(errors.__all__) >= {cls.__name__, "ChangedetError"}


def test_raster_read_error_is_not_a_value_error() -> None:
    assert not issubclass(errors.RasterReadError, ValueError)


# --------------------------------------------------------------------------- grids refused when opened
@pytest.mark.parametrize(
    ("transform", "crs", "says"),
    [
        (Affine(10, 0, float("nan"), 0, -10, 0), "EPSG:32639", "NaN or infinity"),
        (Affine(10, 0, 0, 0, 10, 0), "EPSG:32639", "south-up"),
        (Affine(-10, 0, 0, 0, -10, 0), "EPSG:32639", "east-left"),
        (Affine(0, 0, 0, 0, 0, 0), "EPSG:32639", "degenerate"),
        (Affine(1e-9, 0, 500000, 0, -1e-9, 0), "EPSG:32639", "too small to be real"),
        (Affine(0.01, 0, 10, 0, -0.01, 90.5), "EPSG:4326", "beyond the pole"),
        (Affine(0.01, 0, -180.5, 0, -0.01, 50), "EPSG:4326", "past 180 degrees"),
        (Affine(0.1, 0, 179.5, 0, -0.1, 50), "EPSG:4326", "antimeridian"),
        (Affine(1, 0, 0, 0, -1, 0), 'ENGCRS["x",EDATUM["d"],CS[Cartesian,2],AXIS["x",east,LENGTHUNIT["metre",1]],'
                                    'AXIS["y",north,LENGTHUNIT["metre",1]]]', "local or engineering CRS"),
    ],
)
def test_grid_problem_names_what_is_wrong_and_the_fix(transform: Affine, crs: str, says: str) -> None:
    from changedet.raster import grid_problem

    text = grid_problem(Grid((10, 10), transform, CRS.from_user_input(crs)))
    assert text is not None and says in text and ";" in text  # what, then the fix


@pytest.mark.parametrize(
    ("shape", "transform", "crs"),
    [
        ((10, 10), Affine(10, 0, 500000, 0, -10, 6000000), "EPSG:32639"),
        ((1800, 3600), Affine(0.1, 0, -180, 0, -0.1, 90), "EPSG:4326"),  # the whole globe
        ((721, 1440), Affine(0.25, 0, -180.125, 0, -0.25, 90.125), "EPSG:4326"),  # pixel centres on the edges
        ((10, 10), Affine(2e-7, 0, 52.0, 0, -2e-7, 55.8), "EPSG:4326"),  # 2 cm drone pixels in degrees
        ((10, 10), Affine(8.66, 5, 500000, 5, -8.66, 6000000), "EPSG:32639"),  # rotated
        ((10, 10), Affine.identity(), None),  # a PNG's pixel grid (rows run down: e = +1)
    ],
)
def test_grid_problem_accepts_real_grids(shape: tuple[int, int], transform: Affine, crs: str | None) -> None:
    from changedet.raster import grid_problem

    assert grid_problem(Grid(shape, transform, crs)) is None


def test_unknown_crs_is_a_changedet_error_naming_it() -> None:
    from changedet.errors import ChangedetError
    from changedet.raster import as_crs

    with pytest.raises(ChangedetError, match=r"^crs 'EPSG:99999' is not a coordinate reference system PROJ knows"):
        GeoRaster(np.zeros((1, 2, 2), "float32"), Affine.identity(), "EPSG:99999")
    with pytest.raises(ChangedetError, match=r"^grid crs 12 is not"):
        as_crs(12, name="grid crs")
    assert as_crs(32639).to_epsg() == 32639
