"""Put two dates on one analysis grid, then co-register them to a fraction of a pixel.

Two steps, used in this order by :func:`changedet.pipeline.detect_changes`:

1. :func:`align_pair` — reprojection onto a common grid (by default the before
   image's grid restricted to the overlap), keeping the bands both dates share.
2. :func:`estimate_shift` / :func:`apply_shift` (or :func:`coregister`) — the
   residual sub-pixel offset between the dates by phase correlation on
   well-textured blocks, robust to changed areas by taking the median over blocks.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
from rasterio.enums import Resampling
from rasterio.warp import transform_bounds
from rasterio.windows import Window, from_bounds

from . import _select
from . import _kernels
from .errors import BandMismatchError, EmptyDataError, GridMismatchError, InvalidParameterError, NoOverlapError
from .raster import GeoRaster, Grid, describe_grid, warp_band, window_transform

__all__ = [
    "AlignedPair",
    "Shift",
    "overlap_grid",
    "align_to",
    "align_pair",
    "estimate_shift",
    "apply_shift",
    "coregister",
    "shift_helps",
    "shift_from_blocks",
    "MIN_SHIFT_PX",
]

#: Shifts smaller than this (pixels) are not applied: resampling would only blur.
MIN_SHIFT_PX = 0.05

ResamplingName = Literal["nearest", "bilinear", "cubic", "average"]


@dataclass(frozen=True)
class AlignedPair:
    """Two rasters on one grid with the same bands, in the same order."""

    before: GeoRaster
    after: GeoRaster
    grid: Grid
    dropped_bands: tuple[str, ...] = ()


@dataclass(frozen=True)
class Shift:
    """Residual offset of ``after`` relative to ``before``, in pixels.

    ``rows``/``cols`` are the shift that, applied to ``after``, registers it onto
    ``before`` (the convention of :func:`skimage.registration.phase_cross_correlation`).
    ``spread`` is the median absolute deviation of the per-block estimates (pixels);
    ``n_blocks`` how many blocks agreed; ``applied`` whether the after image is to be
    resampled by it.
    """

    rows: float
    cols: float
    spread: float = 0.0
    n_blocks: int = 0
    applied: bool = True

    @property
    def magnitude(self) -> float:
        return float(math.hypot(self.rows, self.cols))

    def as_dict(self) -> dict[str, float | int]:
        """The shift for a JSON summary, rounded to 0.001 px.

        Returns
        -------
        dict
            ``rows``, ``cols``, ``spread_px``, ``n_blocks`` and ``applied`` (true only when
            ``applied``, at least one block agreed and the magnitude is at least
            :data:`MIN_SHIFT_PX`).

        Examples
        --------
        >>> Shift(0.51234, -1.0, 0.1, 12).as_dict()
        {'rows': 0.512, 'cols': -1.0, 'spread_px': 0.1, 'n_blocks': 12, 'applied': True}
        """
        return {"rows": round(self.rows, 3), "cols": round(self.cols, 3), "spread_px": round(self.spread, 3),
                "n_blocks": self.n_blocks, "applied": bool(self.applied and self.n_blocks > 0 and self.magnitude >= MIN_SHIFT_PX)}


def overlap_grid(grid: Grid, other: Grid) -> Grid:
    """``grid`` restricted to where it overlaps ``other`` (whole pixels of ``grid``).

    Parameters
    ----------
    grid : Grid
        The grid to restrict (its CRS and pixel size are kept).
    other : Grid
        The other grid, in any CRS.

    Returns
    -------
    Grid
        ``grid`` itself for two grids without CRS of one shape.

    Raises
    ------
    GridMismatchError
        When one grid has a CRS and the other has not, or two grids without CRS differ in shape.
    NoOverlapError
        When the grids overlap by less than 2 x 2 pixels of ``grid``.

    Examples
    --------
    >>> from affine import Affine
    >>> from rasterio.crs import CRS
    >>> a = Grid((100, 100), Affine(10, 0, 0, 0, -10, 1000), CRS.from_epsg(32639))
    >>> b = Grid((100, 100), Affine(10, 0, 500, 0, -10, 1000), CRS.from_epsg(32639))
    >>> overlap_grid(a, b).shape
    (100, 50)
    """
    if (grid.crs is None) != (other.crs is None):
        raise GridMismatchError(
            f"one image is georeferenced and the other is not ({describe_grid(grid)} vs {describe_grid(other)}); "
            "georeference both images, or neither"
        )
    if grid.crs is None:
        if grid.shape != other.shape:
            raise GridMismatchError(
                f"images without georeferencing must have the same size; got {grid.height}x{grid.width} (before) "
                f"and {other.height}x{other.width} (after); crop or resize them to one size first"
            )
        return grid
    ob = other.bounds
    if other.crs != grid.crs:
        ob = transform_bounds(other.crs, grid.crs, *ob, densify_pts=21)
    gb = grid.bounds
    left, bottom, right, top = max(gb[0], ob[0]), max(gb[1], ob[1]), min(gb[2], ob[2]), min(gb[3], ob[3])
    if left >= right or bottom >= top:
        raise NoOverlapError(
            f"the images do not overlap: before covers {_fmt_bounds(gb)} and after covers {_fmt_bounds(ob)} "
            f"(in {describe_grid(grid).split(' ')[0]}); pass two images of the same site"
        )
    win = from_bounds(left, bottom, right, top, transform=grid.transform)
    # whole pixels inside the overlap (tolerate float noise of 1e-6 px)
    row0 = max(0, math.ceil(win.row_off - 1e-6))
    col0 = max(0, math.ceil(win.col_off - 1e-6))
    row1 = min(grid.height, math.floor(win.row_off + win.height + 1e-6))
    col1 = min(grid.width, math.floor(win.col_off + win.width + 1e-6))
    if row1 - row0 < 2 or col1 - col0 < 2:
        raise NoOverlapError(
            f"the images overlap by less than 2x2 pixels of the analysis grid ({describe_grid(grid)}); "
            "pass two images of the same site"
        )
    window = Window(col0, row0, col1 - col0, row1 - row0)
    return Grid((row1 - row0, col1 - col0), window_transform(window, grid.transform), grid.crs)


def _fmt_bounds(b: tuple[float, float, float, float]) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in b) + ")"


def align_to(raster: GeoRaster, like: Grid, *, resampling: ResamplingName = "bilinear") -> GeoRaster:
    """Reproject ``raster`` onto the grid ``like`` (NaN outside its footprint).

    Exact crops of the same grid are taken without resampling.

    Parameters
    ----------
    raster : GeoRaster
        The raster to reproject.
    like : Grid
        The target grid.
    resampling : {"nearest", "bilinear", "cubic", "average"}
        Bilinear switches to average when ``like`` is more than 1.5x coarser.

    Returns
    -------
    GeoRaster
        On ``like``, float32 for reprojected data; ``raster`` itself when already on it,
        or a view of it when ``like`` is a whole-pixel sub-grid.

    Raises
    ------
    InvalidParameterError
        For an unknown ``resampling``.
    GridMismatchError
        When only one side is georeferenced, or a raster without CRS is not an exact crop.

    Examples
    --------
    >>> import numpy as np
    >>> from affine import Affine
    >>> r = GeoRaster(np.arange(16, dtype="float32").reshape(1, 4, 4), Affine(10, 0, 0, 0, -10, 40), "EPSG:32639")
    >>> g = Grid((2, 2), Affine(10, 0, 10, 0, -10, 30), r.crs)
    >>> align_to(r, g).data[0].tolist()
    [[5.0, 6.0], [9.0, 10.0]]
    """
    if resampling not in ("nearest", "bilinear", "cubic", "average"):
        raise InvalidParameterError(f"resampling must be nearest, bilinear, cubic or average; got {resampling!r}")
    if raster.grid.same_as(like):
        return raster
    if (raster.crs is None) != (like.crs is None):
        raise GridMismatchError(
            f"cannot align a {'non-' if raster.crs is None else ''}georeferenced raster onto {describe_grid(like)}"
        )
    crop = _exact_crop(raster, like)
    if crop is not None:
        return crop
    if raster.crs is None:
        raise GridMismatchError(
            f"images without georeferencing cannot be reprojected ({describe_grid(raster.grid)} onto {describe_grid(like)}); "
            "crop or resize them to one size first"
        )
    out = np.full((raster.count, *like.shape), np.nan, dtype="float32")
    method = Resampling[resampling]
    # Downsampling by more than 1.5x averages instead of interpolating.
    if resampling == "bilinear" and like.pixel_size_m > 1.5 * raster.grid.pixel_size_m:
        method = Resampling.average
    for i in range(raster.count):
        warp_band(raster.data[i], raster.transform, raster.crs, like, resampling=method, out=out[i])
    return GeoRaster(out, like.transform, like.crs, raster.band_names)


def _exact_crop(raster: GeoRaster, like: Grid) -> GeoRaster | None:
    """A view of ``raster`` when ``like`` is a whole-pixel sub-grid of it."""
    offset = like.offset_in(raster.grid)
    if offset is None:
        return None
    r0, c0 = offset
    data = raster.data[:, r0 : r0 + like.height, c0 : c0 + like.width]
    return GeoRaster(data, like.transform, like.crs, raster.band_names)


def align_pair(
    before: GeoRaster,
    after: GeoRaster,
    *,
    grid: Grid | None = None,
    resampling: ResamplingName = "bilinear",
) -> AlignedPair:
    """Put both dates on one grid with the bands they share.

    Parameters
    ----------
    before, after : GeoRaster
        The two dates, on any grids.
    grid : Grid, optional
        The analysis grid; default the before image's grid restricted to the overlap.
    resampling : {"nearest", "bilinear", "cubic", "average"}
        How to reproject (see :func:`align_to`).

    Returns
    -------
    AlignedPair
        Both dates on ``grid`` with the shared bands in the before image's order; the
        bands only one date has in ``dropped_bands``.

    Raises
    ------
    NoOverlapError, BandMismatchError, GridMismatchError
        No overlap, no shared band, or grids that cannot be combined.
    EmptyDataError
        When either date holds only nodata on ``grid``.

    Examples
    --------
    >>> import numpy as np
    >>> from affine import Affine
    >>> b = GeoRaster(np.ones((2, 10, 10), "float32"), Affine(10, 0, 0, 0, -10, 100), "EPSG:32639", ("B04", "B08"))
    >>> a = GeoRaster(np.ones((3, 8, 8), "float32"), Affine(10, 0, 20, 0, -10, 100), "EPSG:32639", ("B03", "B04", "B08"))
    >>> p = align_pair(b, a)
    >>> p.grid.shape, p.after.band_names, p.dropped_bands
    ((8, 8), ('B04', 'B08'), ('B03',))
    """
    common = [n for n in before.band_names if n in after.band_names]
    if not common:
        raise BandMismatchError(
            f"the two dates share no band: before has {list(before.band_names)}, after has {list(after.band_names)}; "
            "pass images with the same bands (names from band descriptions or file names)"
        )
    dropped = tuple(n for n in (*before.band_names, *after.band_names) if n not in common)
    if grid is None:
        grid = overlap_grid(before.grid, after.grid)
    b = align_to(before.select(common) if list(before.band_names) != common else before, grid, resampling=resampling)
    a = align_to(after.select(common) if list(after.band_names) != common else after, grid, resampling=resampling)
    for name, r in (("before", b), ("after", a)):
        if not np.isfinite(r.data).any():
            raise EmptyDataError(f"the {name} image holds only nodata over the overlap of the two dates ({describe_grid(grid)})")
    return AlignedPair(b, a, grid, tuple(sorted(set(dropped))))


# --------------------------------------------------------------------------- co-registration
def _reference_band(data: np.ndarray) -> np.ndarray:
    """Mean of per-band standardised bands: one well-textured image per date."""
    if np.isfinite(data).all():  # the usual case: numpy's plain mean and std, without the NaN copies
        mean = data.mean(axis=(1, 2), keepdims=True)
        std = data.std(axis=(1, 2), keepdims=True)
        std = np.where(std > 0, std, 1.0)
        return ((data - mean) / std).mean(axis=0).astype("float64")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(data, axis=(1, 2), keepdims=True)
        std = np.nanstd(data, axis=(1, 2), keepdims=True)
    std = np.where(std > 0, std, 1.0)
    z = (data - mean) / std
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        img = np.nanmean(z, axis=0)
    return np.where(np.isfinite(img), img, 0.0).astype("float64")


def estimate_shift(
    before: np.ndarray,
    after: np.ndarray,
    *,
    block_size: int = 128,
    max_blocks: int = 24,
    upsample_factor: int = 20,
    max_shift_px: float = 5.0,
) -> Shift:
    """Sub-pixel shift of ``after`` relative to ``before`` by block-wise phase correlation.

    Blocks are chosen where the texture (gradient energy) is strongest; the result is
    the median of the block estimates, so changed areas in a minority of blocks do
    not bias it.  Estimates larger than ``max_shift_px`` are discarded as failures.

    Parameters
    ----------
    before, after : (bands, rows, cols) or (rows, cols) ndarray
        Two dates on one grid (NaN for nodata).
    block_size : int
        Block edge in pixels (capped at the image size); below 32 no shift is estimated.
    max_blocks : int
        How many of the best-textured blocks to correlate.
    upsample_factor : int
        Sub-pixel precision: 1 / ``upsample_factor`` of a pixel.
    max_shift_px : float
        Block estimates larger than this on either axis are discarded.

    Returns
    -------
    Shift
        Zero with ``n_blocks == 0`` (and NaN ``spread``) when no block gave an estimate.

    Raises
    ------
    GridMismatchError
        When the arrays differ in shape.

    Examples
    --------
    >>> import numpy as np
    >>> from scipy import ndimage
    >>> rng = np.random.default_rng(0)
    >>> img = ndimage.gaussian_filter(rng.normal(size=(256, 256)), 2)
    >>> moved = ndimage.shift(img, (0.6, -1.3), order=3, mode="nearest")
    >>> s = estimate_shift(img, moved)
    >>> round(s.rows, 1), round(s.cols, 1)
    (-0.6, 1.3)
    """
    b = before if before.ndim == 3 else before[np.newaxis]
    a = after if after.ndim == 3 else after[np.newaxis]
    if b.shape != a.shape:
        raise GridMismatchError(f"estimate_shift needs arrays of one shape, got {b.shape} and {a.shape}")
    valid = np.all(np.isfinite(b), axis=0) & np.all(np.isfinite(a), axis=0)
    return _estimate_shift(_reference_band(b), _reference_band(a), valid, block_size=block_size, max_blocks=max_blocks,
                           upsample_factor=upsample_factor, max_shift_px=max_shift_px)


def _estimate_shift(ref: np.ndarray, mov: np.ndarray, valid: np.ndarray, *, block_size: int = 128,
                    max_blocks: int = 24, upsample_factor: int = 20, max_shift_px: float = 5.0) -> Shift:
    """:func:`estimate_shift` on both dates' reference bands (:func:`_reference_band`) and
    the pixels valid in both."""
    from skimage.registration import phase_cross_correlation

    rows, cols = ref.shape
    bs = int(min(block_size, rows, cols))
    if bs < 32:
        return Shift(0.0, 0.0, float("nan"), 0)
    step = max(bs // 2, 16)
    candidates = []
    gy, gx = np.gradient(ref)
    energy = gy**2 + gx**2
    for r0 in range(0, rows - bs + 1, step):
        for c0 in range(0, cols - bs + 1, step):
            v = valid[r0 : r0 + bs, c0 : c0 + bs]
            if v.mean() < 0.98:
                continue
            candidates.append((float(energy[r0 : r0 + bs, c0 : c0 + bs].mean()), r0, c0))
    if not candidates:
        return Shift(0.0, 0.0, float("nan"), 0)
    candidates.sort(reverse=True)
    window = np.outer(np.hanning(bs), np.hanning(bs))
    shifts = []
    for _, r0, c0 in candidates[:max_blocks]:
        rb = ref[r0 : r0 + bs, c0 : c0 + bs]
        mb = mov[r0 : r0 + bs, c0 : c0 + bs]
        if rb.std() == 0 or mb.std() == 0:
            continue
        shift, _, _ = phase_cross_correlation(
            (rb - rb.mean()) * window, (mb - mb.mean()) * window, upsample_factor=upsample_factor, normalization=None
        )
        if np.all(np.abs(shift) <= max_shift_px):
            shifts.append(shift)
    if not shifts:
        return Shift(0.0, 0.0, float("nan"), 0)
    arr = np.array(shifts)
    med = np.median(arr, axis=0)
    spread = float(np.median(np.hypot(*(arr - med).T)))
    return Shift(float(med[0]), float(med[1]), spread, len(shifts))


def _shift_axis(x: np.ndarray, d: float, axis: int, *, order: int) -> np.ndarray:
    """``out[i] = x[i - d]`` along one axis: linear (order 1) or nearest (order 0); NaN where
    the source falls outside ``x`` or touches NaN with a non-zero weight."""
    n = x.shape[axis]
    if order == 3:
        # Keys (1981) cubic convolution, a = -0.5: 4 taps, local, sharper than linear
        k = math.floor(-d)
        t = -d - k
        if t < 1e-9:
            return _shift_axis(x, d, axis, order=0)
        a = -0.5
        def w(s: float) -> float:
            s = abs(s)
            if s <= 1:
                return (a + 2) * s**3 - (a + 3) * s**2 + 1
            if s < 2:
                return a * s**3 - 5 * a * s**2 + 8 * a * s - 4 * a
            return 0.0
        weights = np.array([w(t + 1), w(t), w(1 - t), w(2 - t)])  # taps at i+k-1, i+k, i+k+1, i+k+2
        return _kernels.shift_cubic(x.astype(np.float32, copy=False), k, weights, axis)
    out = np.full_like(x, np.nan)
    src = np.moveaxis(x, axis, 0)
    dst = np.moveaxis(out, axis, 0)
    if order == 0:
        k = -int(round(d))
        lo, hi = max(0, -k), min(n, n - k)
        if hi > lo:
            dst[lo:hi] = src[lo + k : hi + k]
        return out
    k = math.floor(-d)
    t = -d - k
    if t < 1e-9:
        lo, hi = max(0, -k), min(n, n - k)
        if hi > lo:
            dst[lo:hi] = src[lo + k : hi + k]
        return out
    lo, hi = max(0, -k), min(n, n - 1 - k)
    if hi > lo:
        dst[lo:hi] = (1.0 - t) * src[lo + k : hi + k] + t * src[lo + k + 1 : hi + k + 1]
    return out


def apply_shift(data: np.ndarray, shift: Shift, *, order: int = 3) -> np.ndarray:
    """Shift ``(bands, rows, cols)`` pixels by ``shift`` (NaN where no data came in).

    Cubic convolution (``order=3``, Keys 1981, a = -0.5, the default: it keeps edges
    sharper than linear interpolation, which matters for 1-2 pixel wide buildings),
    bilinear (``order=1``) or nearest (``order=0``, for classification bands); all
    separable and local.  A pixel is NaN when its source lies outside the array or
    draws on a NaN pixel, so a window with a halo of ``ceil(|shift|) + 2`` pixels
    gives exactly the values of the whole scene.

    Parameters
    ----------
    data : (bands, rows, cols) or (rows, cols) ndarray
        The pixels to move (NaN for nodata).
    shift : Shift
        Its ``rows`` and ``cols`` are applied; its other fields are ignored.
    order : {0, 1, 3}
        Nearest, bilinear or cubic convolution.

    Returns
    -------
    ndarray of float32
        The shape of ``data``; ``data`` itself for a zero shift.

    Raises
    ------
    InvalidParameterError
        For another ``order``.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.arange(16, dtype="float32").reshape(1, 4, 4)
    >>> apply_shift(x, Shift(0.0, 1.0))[0, 1].tolist()
    [nan, 4.0, 5.0, 6.0]
    >>> apply_shift(x, Shift(0.0, 0.5), order=1)[0, 0].tolist()
    [nan, 0.5, 1.5, 2.5]
    >>> apply_shift(x, Shift(0.0, 0.5))[0, 0].tolist()  # cubic needs two neighbours each side
    [nan, nan, 1.5, nan]
    """
    if order not in (0, 1, 3):
        raise InvalidParameterError(f"order must be 0 (nearest), 1 (bilinear) or 3 (cubic convolution), got {order}")
    if shift.rows == 0 and shift.cols == 0:
        return data
    arr = data if data.ndim == 3 else data[np.newaxis]
    out = arr.astype("float32", copy=False)
    if shift.rows:
        out = _shift_axis(out, shift.rows, 1, order=order)
    if shift.cols:
        out = _shift_axis(out, shift.cols, 2, order=order)
    out = out.astype("float32", copy=False)
    return out if data.ndim == 3 else out[0]


def coregister(
    before: GeoRaster,
    after: GeoRaster,
    *,
    min_shift_px: float = MIN_SHIFT_PX,
) -> tuple[GeoRaster, Shift]:
    """Estimate the residual shift of ``after`` and resample it onto ``before``.

    The decision is :func:`shift_from_blocks` on the whole pair: shifts smaller than
    ``min_shift_px``, or that do not bring the dates closer, are not applied.

    Parameters
    ----------
    before, after : GeoRaster
        The two dates on one grid.
    min_shift_px : float
        Smaller shifts are reported but not applied (resampling would only blur).

    Returns
    -------
    tuple of (GeoRaster, Shift)
        The after raster, shifted (cubic convolution) when the shift is applied, else
        unchanged; and the estimated :class:`Shift`.

    Raises
    ------
    GridMismatchError
        When the dates are not on one grid.

    Examples
    --------
    >>> import numpy as np
    >>> from affine import Affine
    >>> from scipy import ndimage
    >>> rng = np.random.default_rng(1)
    >>> img = ndimage.gaussian_filter(rng.normal(size=(1, 200, 200)), (0, 2, 2)).astype("float32")
    >>> b = GeoRaster(img, Affine(10, 0, 0, 0, -10, 0), "EPSG:32639")
    >>> a = b.with_data(ndimage.shift(img, (0, 1.5, 0.0), order=3, mode="nearest"))
    >>> _, s = coregister(b, a)
    >>> abs(s.rows + 1.5) < 0.1 and abs(s.cols) < 0.1
    True
    """
    if not before.grid.same_as(after.grid):
        raise GridMismatchError("coregister needs both dates on one grid; call align_pair first")
    shift = shift_from_blocks([(before.data, after.data)], min_shift_px=min_shift_px)
    if not shift.applied or shift.n_blocks == 0 or shift.magnitude < min_shift_px:
        return after, shift
    return after.with_data(apply_shift(after.data, shift)), shift


def shift_helps(before: np.ndarray, after: np.ndarray, shift: Shift, *, min_gain: float = 0.02) -> bool:
    """Whether applying ``shift`` brings the dates closer (median absolute difference of
    the standardized mean band drops by at least ``min_gain``).

    The median ignores changed areas (a minority of pixels), so a shift that a few
    blocks dominated by new objects made up is rejected instead of blurring the scene.

    Parameters
    ----------
    before, after : (bands, rows, cols) or (rows, cols) ndarray
        The two dates on one grid.
    shift : Shift
        The shift to try on ``after``.
    min_gain : float
        Relative drop of the median absolute difference required.

    Returns
    -------
    bool
        False too when fewer than 100 pixels away from the borders can be compared.

    Examples
    --------
    >>> import numpy as np
    >>> from scipy import ndimage
    >>> img = ndimage.gaussian_filter(np.random.default_rng(0).normal(size=(1, 64, 64)), (0, 2, 2))
    >>> moved = ndimage.shift(img, (0, 1.0, 0), order=1, mode="nearest")
    >>> shift_helps(img, moved, Shift(-1.0, 0.0)), shift_helps(img, img, Shift(-1.0, 0.0))
    (True, False)
    """
    return _shift_helps(_reference_band(before if before.ndim == 3 else before[np.newaxis]),
                        _reference_band(after if after.ndim == 3 else after[np.newaxis]), shift, min_gain=min_gain)


def _shift_helps(ref: np.ndarray, mov: np.ndarray, shift: Shift, *, min_gain: float = 0.02) -> bool:
    """:func:`shift_helps` on both dates' reference bands (:func:`_reference_band`)."""
    moved = apply_shift(mov[np.newaxis].astype("float32"), shift)[0]
    ok = np.isfinite(moved)
    ok[: 3 + int(abs(shift.rows))] = False
    ok[-(3 + int(abs(shift.rows))):] = False
    ok[:, : 3 + int(abs(shift.cols))] = False
    ok[:, -(3 + int(abs(shift.cols))):] = False
    if ok.sum() < 100:
        return False
    before_err = _select.median(np.abs(ref[ok] - mov[ok]))  # finite: reference bands are
    after_err = _select.median(np.abs(ref[ok] - moved[ok]))
    return after_err < (1.0 - min_gain) * before_err


def shift_from_blocks(
    blocks: "list[tuple[np.ndarray, np.ndarray]]",
    *,
    min_shift_px: float = MIN_SHIFT_PX,
) -> Shift:
    """The co-registration decision, from the whole pair or from sample blocks of it.

    One block (the whole scene): :func:`estimate_shift` on it.  Several blocks (a
    sample lattice of a large scene): the median of each block's estimate, with about
    as many correlations in all as one whole-scene estimate.  The shift is then
    applied only if it is at least ``min_shift_px`` and brings the dates closer
    (:func:`shift_helps`) in most blocks; otherwise ``applied`` is False.

    Parameters
    ----------
    blocks : list of ((bands, rows, cols) ndarray, (bands, rows, cols) ndarray)
        Before and after arrays of the same blocks (spectral bands only, NaN nodata).
    min_shift_px : float
        Shifts below this are reported but not applied.

    Returns
    -------
    Shift
        ``applied`` says whether to resample the after image by it.

    Examples
    --------
    >>> from scipy import ndimage
    >>> img = ndimage.gaussian_filter(np.random.default_rng(1).normal(size=(1, 200, 200)), (0, 2, 2))
    >>> moved = ndimage.shift(img, (0, 1.5, 0.0), order=3, mode="nearest")
    >>> s = shift_from_blocks([(img, moved)])
    >>> abs(s.rows + 1.5) < 0.1, s.applied
    (True, True)
    """
    if not blocks:
        raise InvalidParameterError("shift_from_blocks needs at least one (before, after) block")
    refs = []  # each block's reference bands, for the estimate and the vote
    for b, a in blocks:
        b = b if b.ndim == 3 else b[np.newaxis]
        a = a if a.ndim == 3 else a[np.newaxis]
        if b.shape != a.shape:
            raise GridMismatchError(f"shift_from_blocks needs blocks of one shape per date, got {b.shape} and {a.shape}")
        refs.append((_reference_band(b), _reference_band(a),
                     np.all(np.isfinite(b), axis=0) & np.all(np.isfinite(a), axis=0)))
    if len(blocks) == 1:
        shift = _estimate_shift(*refs[0])
    else:
        per_block = max(2, 24 // len(blocks))  # about as many correlations as one whole-scene estimate
        est = [_estimate_shift(*r, max_blocks=per_block) for r in refs]
        est = [e for e in est if e.n_blocks > 0]
        if not est:
            return Shift(0.0, 0.0, 0.0, 0, applied=False)
        rows = float(np.median([e.rows for e in est]))
        cols = float(np.median([e.cols for e in est]))
        spread = float(np.median([math.hypot(e.rows - rows, e.cols - cols) for e in est]))
        shift = Shift(rows, cols, spread, int(sum(e.n_blocks for e in est)))
    if shift.n_blocks == 0 or shift.magnitude < min_shift_px:
        return Shift(shift.rows, shift.cols, shift.spread, shift.n_blocks, applied=False)
    votes = [_shift_helps(ref, mov, shift) for ref, mov, _ in refs]
    if sum(votes) <= len(votes) / 2:
        return Shift(shift.rows, shift.cols, shift.spread, shift.n_blocks, applied=False)
    return shift
