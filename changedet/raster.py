"""The core types: :class:`Grid` (shape + transform + crs) and :class:`GeoRaster`.

A :class:`GeoRaster` carries pixels with their grid so georeferencing cannot
silently vanish between pipeline stages.  Arrays are ``(bands, rows, cols)``,
float32 with NaN for nodata after reading.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import numpy as np
from affine import Affine
from rasterio.crs import CRS

from .errors import GridMismatchError, InvalidParameterError

__all__ = ["Grid", "GeoRaster", "describe_grid", "check_same_grid", "apply_affine", "window_transform", "warp_band",
           "as_crs", "grid_problem", "NODATA_MASK"]

#: Value of a change mask (``change_mask.tif``, a series' masks) where the dates were not
#: compared: no data on either date, cloud, cloud shadow or a defective pixel.
NODATA_MASK = 255


def _crs_name(crs: CRS | None) -> str:
    if crs is None:
        return "pixel grid (no CRS)"
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.to_string()[:40]


def as_crs(crs: Any, *, name: str = "crs") -> CRS:
    """A :class:`rasterio.crs.CRS` from anything ``CRS.from_user_input`` takes, or a clear error.

    Parameters
    ----------
    crs : CRS, str, int or dict
        ``"EPSG:32639"``, ``32639``, WKT, a PROJ string or dict.
    name : str
        The parameter's name in the error message.

    Returns
    -------
    rasterio.crs.CRS

    Raises
    ------
    InvalidParameterError
        PROJ does not know the CRS (an unknown EPSG code, malformed WKT).

    Examples
    --------
    >>> as_crs("EPSG:32639").to_epsg()
    32639
    >>> as_crs("EPSG:99999")
    Traceback (most recent call last):
    ...
    changedet.errors.InvalidParameterError: crs 'EPSG:99999' is not a coordinate reference system PROJ knows (...); give an EPSG code such as 'EPSG:32639', WKT, or None for images without georeferencing
    """
    if isinstance(crs, CRS):
        return crs
    from rasterio.errors import CRSError

    try:
        return CRS.from_user_input(crs)
    except (CRSError, ValueError, TypeError) as exc:
        reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise InvalidParameterError(
            f"{name} {crs!r} is not a coordinate reference system PROJ knows ({reason}); give an EPSG code such as "
            "'EPSG:32639', WKT, or None for images without georeferencing"
        ) from None


#: The finest pixel accepted, in metres (finer is a georeferencing error: degrees on a metric CRS ...).
MIN_PIXEL_M = 1e-3


def grid_problem(grid: "Grid") -> str | None:
    """What makes a grid unusable, as the end of a sentence naming the file; None when it is usable.

    Checked when a raster is opened, before any pixel is read: a geotransform holding NaN,
    a south-up or east-left grid, a CRS without defined units (a local engineering CRS),
    a geographic grid beyond the poles or past 180 degrees (across the antimeridian), and
    pixels finer than :data:`MIN_PIXEL_M`.

    Parameters
    ----------
    grid : Grid
        The grid to check.

    Returns
    -------
    str or None
        "has ...; <the fix>", or None.

    Examples
    --------
    >>> grid_problem(Grid((10, 10), Affine(10, 0, 500000, 0, -10, 6000000), "EPSG:32639")) is None
    True
    >>> grid_problem(Grid((10, 10), Affine(0.1, 0, 179.5, 0, -0.1, 50), "EPSG:4326"))[:60]
    'reaches longitude 180.5, past 180 degrees (a grid across the'
    """
    t = grid.transform
    coeffs = tuple(float(v) for v in tuple(t)[:6])
    if not all(math.isfinite(v) for v in coeffs):
        return (f"has a geotransform holding NaN or infinity {coeffs}; fix its georeferencing "
                "(gdal_edit.py -a_ullr ULX ULY LRX LRY) or drop it (gdal_edit.py -unsetgt) to use the pixel grid")
    if t.a * t.e - t.b * t.d == 0:
        return f"has a degenerate geotransform {coeffs} (zero pixel size); fix its georeferencing (gdal_edit.py -a_ullr)"
    if grid.crs is not None and t.b == 0 and t.d == 0 and (t.e > 0 or t.a < 0):
        which = "south-up (its rows run from south to north)" if t.e > 0 else "east-left (its columns run from east to west)"
        return (f"is {which}, geotransform {coeffs}; make it north-up first: gdalwarp -overwrite FILE north_up.tif")
    crs = grid.crs
    if crs is not None:
        from rasterio.errors import CRSError

        if not (crs.is_geographic or crs.is_projected):
            return (f"has a CRS without a defined unit on the Earth ({_crs_name(crs)}: a local or engineering CRS); "
                    "assign the real one (gdal_edit.py -a_srs EPSG:XXXX FILE) or drop it (-a_srs None) to use the pixel grid")
        if crs.is_projected:
            try:
                crs.linear_units_factor
            except CRSError:
                return (f"has a projected CRS without a defined linear unit ({_crs_name(crs)}); assign a CRS in "
                        "metres (gdal_edit.py -a_srs EPSG:XXXX FILE)")
        else:
            minx, miny, maxx, maxy = grid.bounds
            tol = 0.5 * max(grid.res) + 1e-9
            if miny < -90 - tol or maxy > 90 + tol:
                return (f"reaches latitude {miny if miny < -90 else maxy:.6g}, beyond the pole, on a geographic CRS "
                        f"({_crs_name(crs)}, bounds {tuple(round(v, 6) for v in grid.bounds)}); fix its georeferencing "
                        "(latitude within -90..90)")
            if minx < -180 - tol or maxx > 180 + tol:
                return (f"reaches longitude {minx if minx < -180 else maxx:.6g}, past 180 degrees (a grid across the "
                        f"antimeridian or in 0..360 longitudes, bounds {tuple(round(v, 6) for v in grid.bounds)}); "
                        "split it at 180 degrees or reproject it to UTM (gdalwarp -t_srs EPSG:326zz)")
    px = grid.pixel_size_m if crs is not None else math.sqrt(grid.res[0] * grid.res[1])
    if not math.isfinite(px) or px < (MIN_PIXEL_M if crs is not None else 1e-6):
        unit = "m" if crs is not None else "units"
        return (f"has pixels of {px:.3g} {unit}, too small to be real (a pixel size in the wrong unit?); fix its "
                "georeferencing (gdal_edit.py -tr XRES YRES) or drop it (gdal_edit.py -unsetgt)")
    return None


@dataclass(frozen=True)
class Grid:
    """An immutable raster grid: ``shape`` (rows, cols), ``transform`` and ``crs``.

    Examples
    --------
    >>> from affine import Affine
    >>> g = Grid((100, 200), Affine(10, 0, 500000, 0, -10, 6000000), CRS.from_epsg(32639))
    >>> g.res
    (10.0, 10.0)
    >>> g.bounds
    (500000.0, 5999000.0, 502000.0, 6000000.0)
    >>> round(g.pixel_size_m, 3)
    10.0
    """

    shape: tuple[int, int]
    transform: Affine
    crs: CRS | None = None

    def __post_init__(self) -> None:
        try:
            rows, cols = (int(v) for v in self.shape)
        except (TypeError, ValueError):
            raise InvalidParameterError(f"grid shape must be two whole numbers (rows, cols), got {self.shape!r:.60}") from None
        if rows <= 0 or cols <= 0:
            raise InvalidParameterError(f"grid shape must be positive, got {self.shape}")
        object.__setattr__(self, "shape", (rows, cols))
        if self.crs is not None and not isinstance(self.crs, CRS):
            object.__setattr__(self, "crs", as_crs(self.crs))
        if not isinstance(self.transform, Affine):
            object.__setattr__(self, "transform", _as_affine(self.transform))

    @property
    def height(self) -> int:
        return self.shape[0]

    @property
    def width(self) -> int:
        return self.shape[1]

    @property
    def res(self) -> tuple[float, float]:
        """Pixel size (x, y) in CRS units, both positive."""
        t = self.transform
        return (math.hypot(t.a, t.d), math.hypot(t.b, t.e))

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(minx, miny, maxx, maxy) in CRS units."""
        t = self.transform
        xs = [t.c, t.c + t.a * self.width, t.c + t.b * self.height, t.c + t.a * self.width + t.b * self.height]
        ys = [t.f, t.f + t.d * self.width, t.f + t.e * self.height, t.f + t.d * self.width + t.e * self.height]
        return (min(xs), min(ys), max(xs), max(ys))

    @property
    def is_geographic(self) -> bool:
        return self.crs is not None and self.crs.is_geographic

    @property
    def pixel_size_m(self) -> float:
        """Approximate pixel edge length in metres (geodesic at the grid centre).

        For a grid without CRS this is 1.0 (pixel units).
        """
        if self.crs is None:
            return float(math.sqrt(self.res[0] * self.res[1]))
        if self.crs.is_geographic:
            from pyproj import Geod

            geod = Geod(ellps="WGS84")
            minx, miny, maxx, maxy = self.bounds
            lon, lat = (minx + maxx) / 2, (miny + maxy) / 2
            rx, ry = self.res
            _, _, dx = geod.inv(lon, lat, lon + rx, lat)
            _, _, dy = geod.inv(lon, lat, lon, lat + ry)
            return float(math.sqrt(abs(dx * dy)))
        factor = self.crs.linear_units_factor[1] if self.crs.linear_units_factor else 1.0
        return float(math.sqrt(self.res[0] * self.res[1]) * factor)

    @property
    def pixel_area_m2(self) -> float:
        """Approximate area of one pixel in square metres (pixel units without CRS)."""
        return self.pixel_size_m**2

    def xy(self, row: float, col: float) -> tuple[float, float]:
        """Map coordinates of a pixel's centre.

        Parameters
        ----------
        row, col : float
            Pixel position; whole numbers name a pixel, whose centre is half a pixel on.

        Returns
        -------
        tuple of float
            (x, y) in the grid's CRS units.

        Examples
        --------
        >>> Grid((10, 10), Affine(10, 0, 500000, 0, -10, 6000000)).xy(0, 2)
        (500025.0, 5999995.0)
        """
        return apply_affine(self.transform, col + 0.5, row + 0.5)

    def same_as(self, other: "Grid", *, rtol: float = 1e-6) -> bool:
        """True when shapes, CRS and transforms agree (transforms to ``rtol`` of a pixel).

        Parameters
        ----------
        other : Grid
            The grid to compare with.
        rtol : float
            Tolerance on each transform coefficient, as a fraction of the larger pixel size.

        Returns
        -------
        bool

        Examples
        --------
        >>> g = Grid((10, 10), Affine(10, 0, 0, 0, -10, 100))
        >>> g.same_as(Grid((10, 10), Affine(10, 0, 1e-7, 0, -10, 100)))
        True
        >>> g.same_as(Grid((10, 10), Affine(10, 0, 5, 0, -10, 100)))
        False
        """
        if self.shape != other.shape:
            return False
        if (self.crs is None) != (other.crs is None):
            return False
        if self.crs is not None and other.crs is not None and self.crs != other.crs:
            return False
        tol = rtol * max(self.res)
        return all(abs(a - b) <= max(tol, 1e-12) for a, b in zip(self.transform[:6], other.transform[:6]))

    def offset_in(self, source: "Grid") -> tuple[int, int] | None:
        """(row, col) of this grid's first pixel in ``source`` when it is a whole-pixel
        sub-grid of it (same CRS and pixel size, inside its extent), else None.

        Parameters
        ----------
        source : Grid
            The larger grid.

        Returns
        -------
        tuple of int or None
            (row, col) offset, or None when this grid is not a whole-pixel part of ``source``.

        Examples
        --------
        >>> big = Grid((10, 10), Affine(10, 0, 0, 0, -10, 100))
        >>> Grid((4, 4), Affine(10, 0, 20, 0, -10, 70)).offset_in(big)
        (3, 2)
        >>> Grid((4, 4), Affine(10, 0, 25, 0, -10, 70)).offset_in(big) is None
        True
        """
        t, u = source.transform, self.transform
        if source.crs != self.crs:
            return None
        if any(abs(a - b) > 1e-9 * max(source.res) for a, b in zip((t.a, t.b, t.d, t.e), (u.a, u.b, u.d, u.e))):
            return None
        col, row = apply_affine(~t, u.c, u.f)
        if abs(col - round(col)) > 1e-6 or abs(row - round(row)) > 1e-6:
            return None
        r0, c0 = int(round(row)), int(round(col))
        if r0 < 0 or c0 < 0 or r0 + self.height > source.height or c0 + self.width > source.width:
            return None
        return r0, c0

    def describe(self) -> str:
        """One-line description for messages; see :func:`describe_grid`.

        Returns
        -------
        str
        """
        return describe_grid(self)


def _as_affine(value: Any) -> Affine:
    try:
        return Affine(*(float(v) for v in tuple(value)[:6]))
    except (TypeError, ValueError):
        raise InvalidParameterError(
            f"transform must be an affine.Affine or 6 numbers (a, b, c, d, e, f), got {type(value).__name__} {value!r:.80}"
        ) from None


def apply_affine(transform: Affine, x: float, y: float) -> tuple[float, float]:
    """``transform`` applied to one point (works across affine versions).

    Parameters
    ----------
    transform : Affine
        The transform, e.g. pixel (col, row) -> map (x, y).
    x, y : float
        The point in the transform's input space.

    Returns
    -------
    tuple of float
        The transformed (x, y).

    Examples
    --------
    >>> apply_affine(Affine(10, 0, 100, 0, -10, 50), 1, 2)
    (110.0, 30.0)
    """
    t = transform
    return (float(t.a * x + t.b * y + t.c), float(t.d * x + t.e * y + t.f))


def window_transform(window: Any, transform: Affine) -> Affine:
    """The transform of a rasterio ``Window`` of a grid (no deprecated ``Affine * tuple``).

    Parameters
    ----------
    window : rasterio.windows.Window
        The window; only its ``col_off`` and ``row_off`` are used.
    transform : Affine
        The transform of the whole grid.

    Returns
    -------
    Affine
        The transform whose origin is the window's first pixel.

    Examples
    --------
    >>> from rasterio.windows import Window
    >>> window_transform(Window(2, 3, 5, 5), Affine(10, 0, 100, 0, -10, 50))
    Affine(10.0, 0.0, 120.0,
           0.0, -10.0, 20.0)
    """
    col, row = float(window.col_off), float(window.row_off)
    t = transform
    return Affine(t.a, t.b, t.c + t.a * col + t.b * row, t.d, t.e, t.f + t.d * col + t.e * row)


def describe_grid(grid: Grid) -> str:
    """One-line description of a grid for messages: CRS, pixel size, rows x cols.

    Parameters
    ----------
    grid : Grid
        The grid to describe.

    Returns
    -------
    str

    Examples
    --------
    >>> describe_grid(Grid((300, 400), Affine(10, 0, 0, 0, -10, 0), CRS.from_epsg(32639)))
    'EPSG:32639 10 m 300x400'
    """
    unit = "px"
    if grid.crs is not None:
        unit = "deg" if grid.crs.is_geographic else "m"
    rx = grid.res[0]
    res = f"{rx:.3g}" if unit != "deg" else f"{rx:.2g}"
    return f"{_crs_name(grid.crs)} {res} {unit} {grid.height}x{grid.width}"


@dataclass(frozen=True, eq=False)
class GeoRaster:
    """Pixels with their grid.

    Parameters
    ----------
    data : (bands, rows, cols) ndarray
        Pixel values; float32 with NaN for nodata after :func:`changedet.io.read_raster`.
    transform : Affine
        Pixel (col, row) -> map (x, y).
    crs : rasterio.crs.CRS or None
        None for images without georeferencing (the grid is the pixel grid).
    band_names : tuple of str
        One name per band (``"B02"``, ``"red"``, ...); defaults to ``band1``, ``band2``, ...

    Examples
    --------
    >>> import numpy as np
    >>> from affine import Affine
    >>> r = GeoRaster(np.zeros((2, 3, 4), "float32"), Affine.identity(), None, ("red", "nir"))
    >>> r.shape, r.band_names
    ((2, 3, 4), ('red', 'nir'))
    >>> r.band("nir").shape
    (3, 4)
    """

    data: np.ndarray
    transform: Affine
    crs: CRS | None = None
    band_names: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        data = np.asarray(self.data)
        if data.ndim == 2:
            data = data[np.newaxis]
        if data.ndim != 3:
            raise InvalidParameterError(
                f"GeoRaster data must be (bands, rows, cols) or (rows, cols); got an array of shape {data.shape}"
            )
        object.__setattr__(self, "data", data)
        names = tuple(str(n) for n in self.band_names) or tuple(f"band{i + 1}" for i in range(data.shape[0]))
        if len(names) != data.shape[0]:
            raise InvalidParameterError(
                f"band_names has {len(names)} names {names} but data has {data.shape[0]} bands; pass one name per band"
            )
        if len(set(names)) != len(names):
            raise InvalidParameterError(f"band_names must be unique, got {names}")
        object.__setattr__(self, "band_names", names)
        if not isinstance(self.transform, Affine):
            object.__setattr__(self, "transform", _as_affine(self.transform))
        if self.crs is not None and not isinstance(self.crs, CRS):
            object.__setattr__(self, "crs", as_crs(self.crs))

    # --- grid -----------------------------------------------------------------
    @property
    def grid(self) -> Grid:
        return Grid(self.data.shape[1:], self.transform, self.crs)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.data.shape)  # type: ignore[return-value]

    @property
    def count(self) -> int:
        return int(self.data.shape[0])

    @property
    def height(self) -> int:
        return int(self.data.shape[1])

    @property
    def width(self) -> int:
        return int(self.data.shape[2])

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        return self.grid.bounds

    @property
    def res(self) -> tuple[float, float]:
        return self.grid.res

    # --- bands ----------------------------------------------------------------
    def band_index(self, name: str) -> int:
        """Position of band ``name``.

        Parameters
        ----------
        name : str
            A band name of this raster.

        Returns
        -------
        int

        Raises
        ------
        InvalidParameterError
            When the raster has no band ``name``.

        Examples
        --------
        >>> GeoRaster(np.zeros((2, 1, 1)), Affine.identity(), None, ("red", "nir")).band_index("nir")
        1
        """
        try:
            return self.band_names.index(name)
        except ValueError:
            raise InvalidParameterError(
                f"band {name!r} not found; this raster has bands {list(self.band_names)}"
            ) from None

    def band(self, name: str) -> np.ndarray:
        """One band as a (rows, cols) array (a view, do not modify).

        Parameters
        ----------
        name : str
            A band name of this raster.

        Returns
        -------
        (rows, cols) ndarray
        """
        return self.data[self.band_index(name)]

    def select(self, names: Sequence[str]) -> "GeoRaster":
        """A new raster with only ``names``, in that order.

        Parameters
        ----------
        names : sequence of str
            Band names of this raster.

        Returns
        -------
        GeoRaster
            The same grid with ``len(names)`` bands.

        Examples
        --------
        >>> r = GeoRaster(np.zeros((3, 2, 2)), Affine.identity(), None, ("b", "g", "r"))
        >>> r.select(["r", "g"]).band_names
        ('r', 'g')
        """
        idx = [self.band_index(n) for n in names]
        return replace(self, data=self.data[idx], band_names=tuple(names))

    def with_data(self, data: np.ndarray, *, band_names: Sequence[str] | None = None) -> "GeoRaster":
        """Same grid, new pixels (and band names when the band count changes).

        Parameters
        ----------
        data : (bands, rows, cols) or (rows, cols) ndarray
            New pixels on this raster's grid.
        band_names : sequence of str, optional
            Names of the new bands; by default this raster's names when the band count is
            unchanged, else ``band1``, ``band2``, ...

        Returns
        -------
        GeoRaster

        Examples
        --------
        >>> r = GeoRaster(np.zeros((2, 3, 4)), Affine.identity(), None, ("red", "nir"))
        >>> r.with_data(r.data * 2).band_names, r.with_data(np.ones((3, 4))).band_names
        (('red', 'nir'), ('band1',))
        """
        data = np.asarray(data)
        if data.ndim == 2:
            data = data[np.newaxis]
        if data.shape[1:] != self.data.shape[1:]:
            raise InvalidParameterError(
                f"with_data needs an array of {self.data.shape[1:]} pixels, got {data.shape[1:]}"
            )
        if band_names is None:
            band_names = self.band_names if data.shape[0] == self.count else ()
        return GeoRaster(data, self.transform, self.crs, tuple(band_names))

    def valid_mask(self) -> np.ndarray:
        """Where every band is finite.

        Returns
        -------
        (rows, cols) ndarray of bool

        Examples
        --------
        >>> GeoRaster(np.array([[[1.0, np.nan]], [[1.0, 1.0]]]), Affine.identity()).valid_mask()
        array([[ True, False]])
        """
        return np.all(np.isfinite(self.data), axis=0)

    def __repr__(self) -> str:
        return f"GeoRaster({self.count} bands {list(self.band_names)}, {describe_grid(self.grid)})"


def check_same_grid(before: GeoRaster | Grid, after: GeoRaster | Grid, *, what: str = "after") -> None:
    """Raise :class:`GridMismatchError` when two rasters are not on one grid.

    Parameters
    ----------
    before, after : GeoRaster or Grid
        The two rasters (or their grids).
    what : str
        What ``after`` is called in the error message.

    Raises
    ------
    GridMismatchError
        When shape, CRS or transform differ (see :meth:`Grid.same_as`).

    Examples
    --------
    >>> import numpy as np
    >>> from affine import Affine
    >>> a = GeoRaster(np.zeros((1, 2, 2)), Affine.identity())
    >>> check_same_grid(a, a)
    """
    g1 = before.grid if isinstance(before, GeoRaster) else before
    g2 = after.grid if isinstance(after, GeoRaster) else after
    if not g1.same_as(g2):
        raise GridMismatchError(
            f"{what} grid differs from before ({describe_grid(g2)} vs {describe_grid(g1)}); "
            f"pass align=True or call changedet.align.align_to({what}, like=before)"
        )


def warp_band(band: np.ndarray, transform: Affine, crs: Any, grid: Grid, *, resampling: Any = "bilinear",
              out: np.ndarray | None = None) -> np.ndarray:
    """One band reprojected onto ``grid``: float32, NaN where nothing maps.

    NaN is the nodata value on both sides.  Every reprojection of the package (band
    folders, image alignment, downloaded patches) goes through here.

    Parameters
    ----------
    band : (rows, cols) ndarray
        The source pixels.
    transform : Affine
        The source transform.
    crs : rasterio.crs.CRS or None
        The source CRS.
    grid : Grid
        The target grid.
    resampling : rasterio.enums.Resampling or str
        The resampling method or its name (``"bilinear"``, ``"nearest"``, ``"average"``, ...).
    out : (rows, cols) ndarray of float32, optional
        Receives the result when given; the shape of ``grid``.

    Returns
    -------
    (rows, cols) ndarray of float32
        ``out`` when given, else a new array of the shape of ``grid``.

    Examples
    --------
    >>> src = np.arange(16, dtype="float32").reshape(4, 4)
    >>> g = Grid((2, 2), Affine(20, 0, 0, 0, -20, 80), CRS.from_epsg(32639))
    >>> warp_band(src, Affine(10, 0, 0, 0, -10, 80), g.crs, g, resampling="average").tolist()
    [[2.5, 4.5], [10.5, 12.5]]
    """
    from rasterio.enums import Resampling
    from rasterio.warp import reproject

    method = Resampling[resampling] if isinstance(resampling, str) else resampling
    if out is None:
        out = np.empty(grid.shape, dtype="float32")
    out[...] = np.nan
    reproject(
        source=np.ascontiguousarray(band, dtype="float32"),
        destination=out,
        src_transform=transform,
        src_crs=crs,
        dst_transform=grid.transform,
        dst_crs=grid.crs,
        src_nodata=np.nan,
        dst_nodata=np.nan,
        resampling=method,
    )
    return out
