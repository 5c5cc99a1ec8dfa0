"""Figures for reports and notebooks: before/after/changes, score histogram, swipe, mask accuracy.

Every function returns a :class:`matplotlib.figure.Figure` built with the
object-oriented API (no pyplot state), so it works under any backend, in
batch jobs and in Jupyter, where it shows as a PNG when it is the value of a
cell (no ``%matplotlib inline`` needed).  Map panels are drawn in the grid's coordinates
(``imshow`` with the raster's extent), so change polygons in the grid CRS — or
pixel coordinates when the grid has no CRS — overlay where they belong.

This is the only changedet module that imports matplotlib.
"""

from __future__ import annotations

import io
import math
import os
import sys
import zlib
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from affine import Affine
from matplotlib import patheffects
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

from . import _select
from .errors import EmptyDataError, InvalidParameterError
from .evaluate import evaluate
from .indices import resolve_bands
from .io import atomic_path, paused_gc
from .raster import NODATA_MASK, GeoRaster, Grid, check_same_grid, describe_grid

__all__ = [
    "rgb_composite",
    "plot_overview",
    "plot_histogram",
    "plot_swipe",
    "plot_mask",
    "plot_comparison",
    "save_figure",
    "CLASS_COLORS",
    "CHANGE_CLASS_COLORS",
    "STRUCTURE_COLOR",
    "ExamplePicker",
    "EXAMPLE_STYLE",
]

#: Bright outline colours that stay visible over both vegetation and built-up areas; classes
#: not in :data:`CHANGE_CLASS_COLORS` take the first one no class uses.
CLASS_COLORS = ("#ffe119", "#f032e6", "#42d4f4", "#f58231", "#e6194b", "#3cb44b", "#4363d8", "#ffffff")

#: One colour per change class, the same in every figure whatever the scene (the classes of
#: :data:`changedet.objects.CHANGE_CLASSES`; ``change`` for areas without a class).
CHANGE_CLASS_COLORS = {
    "new_construction": "#ffe119",  # yellow
    "vegetation_loss": "#f58231",  # orange
    "demolition": "#42d4f4",  # cyan
    "water_change": "#4363d8",  # blue
    "vegetation_gain": "#3cb44b",  # green
    "seasonal": "#bfef45",  # lime
    "other": "#f032e6",  # magenta
    "change": "#ffe119",
}

#: Outline of each counted structure (no change class uses it).
STRUCTURE_COLOR = "#e6194b"

# Larger images are decimated (every n-th pixel) for display; a figure cannot show more.
_MAX_DISPLAY_PX = 2000
# Percentiles are estimated on at most this many pixels (a regular subsample).
_MAX_STATS_PX = 1_000_000



class _Figure(Figure):
    """A Figure that shows itself as a PNG in Jupyter without pyplot or ``%matplotlib inline``."""

    #: dpi :func:`save_figure` uses by default; map figures lower it to their images' resolution.
    save_dpi: int = 150

    def _repr_png_(self) -> bytes:
        buf = io.BytesIO()
        self.savefig(buf, format="png", dpi=100, facecolor="white")
        return buf.getvalue()


_HALO_WIDTH, _HALO_ALPHA = 3.0, 0.55
_HALO = [patheffects.withStroke(linewidth=_HALO_WIDTH, foreground="black", alpha=_HALO_ALPHA)]
_TEXT_HALO = [patheffects.withStroke(linewidth=2.5, foreground="white")]


# --- grids and display helpers -----------------------------------------------------------------


def _as_raster(value: Any, name: str) -> GeoRaster:
    if isinstance(value, GeoRaster):
        return value
    arr = np.asarray(value)
    if arr.ndim not in (2, 3):
        raise InvalidParameterError(
            f"{name} must be a GeoRaster or a (bands, rows, cols) / (rows, cols) array; got shape {arr.shape}"
        )
    return GeoRaster(arr, Affine.identity(), None)


def _as_2d(value: Any, name: str) -> np.ndarray:
    arr = value.data if isinstance(value, GeoRaster) else np.asarray(value)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise InvalidParameterError(f"{name} must be a (rows, cols) array or a 1-band GeoRaster; got shape {arr.shape}")
    return arr


def _extent(grid: Grid) -> tuple[float, float, float, float]:
    """(left, right, bottom, top) for ``imshow(origin="upper")``; row 0 is at ``top``."""
    t = grid.transform
    if t.b == 0 and t.d == 0:
        return (t.c, t.c + t.a * grid.width, t.f + t.e * grid.height, t.f)
    minx, miny, maxx, maxy = grid.bounds  # rotated grid: best effort, axis-aligned box
    return (minx, maxx, miny, maxy)


def _aspect(grid: Grid) -> float:
    """Data aspect that shows ground distances true: 1/cos(lat) for lon/lat grids."""
    if grid.is_geographic:
        _, miny, _, maxy = grid.bounds
        return 1.0 / max(math.cos(math.radians((miny + maxy) / 2)), 0.01)
    return 1.0


def _height_over_width(grid: Grid) -> float:
    left, right, bottom, top = _extent(grid)
    return abs(top - bottom) * _aspect(grid) / max(abs(right - left), 1e-12)


def _metres_per_x_unit(grid: Grid) -> float | None:
    """Ground metres per unit of x at the grid centre; None for a pixel grid."""
    if grid.crs is None:
        return None
    if grid.crs.is_geographic:
        from pyproj import Geod

        minx, miny, maxx, maxy = grid.bounds
        lon, lat = (minx + maxx) / 2, (miny + maxy) / 2
        step = grid.res[0]
        _, _, dist = Geod(ellps="WGS84").inv(lon - step / 2, lat, lon + step / 2, lat)
        return float(dist / step)
    factor = grid.crs.linear_units_factor[1] if grid.crs.linear_units_factor else 1.0
    return float(factor)


def _stride(shape: tuple[int, ...], max_px: int = _MAX_DISPLAY_PX) -> int:
    return max(1, math.ceil(max(shape[-2:]) / max_px))


def _nice_length(target: float) -> float:
    """Largest 1, 2 or 5 x 10^k not above ``target``."""
    if target <= 0:
        return 1.0
    exp = math.floor(math.log10(target))
    for m in (5, 2, 1):
        if m * 10**exp <= target:
            return float(m * 10**exp)
    return float(10**exp)


def _fmt_length(value: float, unit: str) -> str:
    if unit == "m" and value >= 1000:
        return f"{value / 1000:g} km"
    return f"{value:g} {unit}"


def _fmt_area(area_m2: float) -> str:
    ha = area_m2 / 10_000
    if ha >= 100:
        return f"{ha:,.0f} ha"
    if ha >= 1:
        return f"{ha:.1f} ha"
    return f"{ha:.2f} ha"


def _add_scale_bar(ax: Any, grid: Grid, pixel_size_m: float | None = None) -> None:
    left, right, bottom, top = _extent(grid)
    width_units = abs(right - left)
    per_unit = _metres_per_x_unit(grid)
    if per_unit is None and pixel_size_m:  # a pixel grid with a stated pixel size: metres
        per_unit = float(pixel_size_m) / abs(grid.transform.a)
    unit, width = ("px", width_units / grid.res[0]) if per_unit is None else ("m", width_units * per_unit)
    length = _nice_length(width / 4)
    size = length / (per_unit if per_unit is not None else 1.0 / grid.res[0])
    bar = AnchoredSizeBar(
        ax.transData,
        size,
        _fmt_length(length, unit),
        loc="lower left",
        pad=0.35,
        borderpad=0.6,
        sep=3,
        frameon=True,
        size_vertical=abs(top - bottom) / 120,
        color="black",
        fontproperties={"size": 8},
    )
    bar.patch.set_facecolor("white")
    bar.patch.set_alpha(0.75)
    bar.patch.set_edgecolor("none")
    ax.add_artist(bar)


def _add_north_arrow(ax: Any, grid: Grid) -> None:
    t = grid.transform
    if grid.crs is None or t.b != 0 or t.d != 0 or t.e >= 0:
        return  # north is only "up" on a georeferenced north-up grid
    x = 0.94
    ax.annotate(
        "",
        xy=(x, 0.91),
        xytext=(x, 0.79),
        xycoords="axes fraction",
        arrowprops={"facecolor": "black", "edgecolor": "white", "width": 2.5, "headwidth": 8, "headlength": 8},
    )
    ax.text(
        x, 0.925, "N", transform=ax.transAxes, ha="center", va="bottom", fontsize=9, fontweight="bold",
        path_effects=_TEXT_HALO,
    )


def _caption(grid: Grid) -> str:
    """Grid facts for a figure's small print: CRS, pixel size, size in pixels."""
    text = describe_grid(grid).rsplit(" ", 1)[0]
    if grid.is_geographic:
        text += f" (~{grid.pixel_size_m:.3g} m)"
    return f"{text} \u00b7 {grid.height} \u00d7 {grid.width} px"


def _map_axes(ax: Any, grid: Grid, title: str | None) -> None:
    left, right, bottom, top = _extent(grid)
    ax.set_xlim(left, right)
    ax.set_ylim(bottom, top)
    ax.set_aspect(_aspect(grid))
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=11)


def _decimated(raster: GeoRaster, bands: Sequence[str] | None) -> GeoRaster:
    """The display bands of a raster, every n-th pixel (a view before the band pick: a tile is never copied)."""
    names = _rgb_band_names(raster, bands)
    stride = _stride(raster.shape)
    idx = [raster.band_index(n) for n in names]
    data = raster.data[:, ::stride, ::stride][idx]
    return GeoRaster(data, raster.transform @ Affine.scale(stride), raster.crs, tuple(names))


def _display_rgb(
    raster: GeoRaster, *, bands: Sequence[str] | None, percentiles: tuple[float, float],
    limits: np.ndarray | None = None,
) -> tuple[np.ndarray, Grid]:
    """The true-colour composite of a raster decimated for display, and the grid it covers."""
    small = _decimated(raster, bands)
    return rgb_composite(small, bands=list(small.band_names), percentiles=percentiles, limits=limits), small.grid


def _common_limits(rasters: Sequence[GeoRaster], bands: Sequence[str] | None,
                   percentiles: tuple[float, float]) -> np.ndarray | None:
    """One stretch for several dates: each band's percentiles over the pixels of all of them.

    With each date stretched on its own, a brighter date looks like the other and a colour
    difference on screen says nothing; one stretch keeps real differences visible.  None
    when the dates' display bands differ in number.
    """
    smalls = [_decimated(r, bands) for r in rasters]
    if len({s.count for s in smalls}) != 1:
        return None
    out = []
    for b in range(smalls[0].count):
        values = np.concatenate([_sample(s.data[b]) for s in smalls])
        values = values[np.isfinite(values)]
        if values.size == 0:
            return None
        out.append(_select.percentiles(values, percentiles))  # np.percentile's values, 4x faster
    return np.asarray(out, dtype=np.float64)


def _sample(band: np.ndarray) -> np.ndarray:
    flat = band.ravel()
    if flat.size > _MAX_STATS_PX:
        flat = flat[:: flat.size // _MAX_STATS_PX + 1]
    return flat.astype(np.float64, copy=False)


def _to_bytes(rgb: np.ndarray) -> np.ndarray:
    """(rows, cols, 3) floats in [0, 1] -> uint8, as matplotlib would quantize them."""
    return (np.clip(rgb, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


def _map_dpi(shape: tuple[int, ...], panel_w: float, panel_h: float, lo: int = 100, hi: int = 150) -> int:
    """A dpi that gives a map panel about one screen pixel per displayed image pixel.

    More only enlarges the PNG and the time to draw and compress it; fewer than
    ``lo`` would make text and outlines coarse.
    """
    need = max(shape[1] / max(panel_w, 1e-6), shape[0] / max(panel_h, 1e-6))
    return int(min(max(math.ceil(need), lo), hi))


def _show_rgb(ax: Any, rgb: np.ndarray, grid: Grid) -> None:
    ax.imshow(rgb, extent=_extent(grid), origin="upper", interpolation="antialiased")


# --- rgb composite -----------------------------------------------------------------------------


def _rgb_band_names(raster: GeoRaster, bands: Sequence[str] | None) -> list[str]:
    if bands is not None:
        names = [bands] if isinstance(bands, str) else list(bands)
        if len(names) not in (1, 3):
            raise InvalidParameterError(
                f"bands must name 3 bands (red, green, blue) or 1 (greyscale); got {names}"
            )
        for n in names:
            raster.band_index(n)  # raises with the list of bands available
        return names
    found = resolve_bands(raster.band_names)
    if all(c in found for c in ("red", "green", "blue")):
        return [raster.band_names[found[c]] for c in ("red", "green", "blue")]
    if raster.count >= 3:
        return list(raster.band_names[:3])
    return [raster.band_names[0]]


def _stretch(band: np.ndarray, percentiles: tuple[float, float], limits: Sequence[float] | None = None) -> np.ndarray:
    if limits is not None:
        lo, hi = float(limits[0]), float(limits[1])
    else:
        values = band[np.isfinite(band)]
        if values.size == 0:
            return np.zeros(band.shape, dtype=np.float64)
        if values.size > _MAX_STATS_PX:
            values = values[:: values.size // _MAX_STATS_PX + 1]
        lo, hi = _select.percentiles(values, percentiles)  # np.percentile's values, 4x faster
    if hi <= lo:
        return np.where(band > lo, 1.0, np.where(band < lo, 0.0, 0.5))
    return np.clip((band - lo) / (hi - lo), 0.0, 1.0)


def rgb_composite(
    raster: GeoRaster | np.ndarray,
    *,
    bands: Sequence[str] | str | None = None,
    percentiles: tuple[float, float] = (2, 98),
    limits: Sequence[Sequence[float]] | np.ndarray | None = None,
) -> np.ndarray:
    """A display-ready true-colour image: each band stretched between two percentiles.

    Parameters
    ----------
    raster : GeoRaster or (bands, rows, cols) ndarray
        The image; NaN is nodata.
    bands : sequence of 3 str, or 1 str, optional
        Band names for red, green, blue (or one band, shown in grey).  By
        default the bands whose names mean red, green and blue (``red`` /
        ``B04`` / ``SR_B4`` ...), else the first three bands, else the first
        band in grey.
    percentiles : (float, float)
        Low and high percentiles of each band (NaN ignored) mapped to 0 and 1.
    limits : (n_bands, 2) array of float, optional
        The values mapped to 0 and 1 for each chosen band instead of its percentiles:
        one stretch shared by two dates (what the overview does), so that a colour
        difference between them on screen is a real one.

    Returns
    -------
    (rows, cols, 3) ndarray of float64
        Values in [0, 1]; nodata pixels (NaN in any chosen band) are white.

    Examples
    --------
    >>> import numpy as np
    >>> from affine import Affine
    >>> from changedet.raster import GeoRaster
    >>> data = np.stack([np.arange(101.0).reshape(1, 101)] * 3)
    >>> r = GeoRaster(data, Affine.identity(), None, ("B02", "B03", "B04"))
    >>> rgb = rgb_composite(r)
    >>> rgb.shape, rgb[0, 50].tolist(), rgb[0, 0].tolist()
    ((1, 101, 3), [0.5, 0.5, 0.5], [0.0, 0.0, 0.0])
    """
    raster = _as_raster(raster, "raster")
    lo, hi = (float(p) for p in percentiles)
    if not 0 <= lo < hi <= 100:
        raise InvalidParameterError(f"percentiles must be (low, high) with 0 <= low < high <= 100; got {percentiles}")
    names = _rgb_band_names(raster, bands)
    raw = [raster.band(n).astype(np.float64, copy=False) for n in names]
    if limits is not None:
        limits = np.asarray(limits, dtype=np.float64)
        if limits.shape != (len(names), 2) or not np.isfinite(limits).all():
            raise InvalidParameterError(
                f"limits must be (low, high) for each of the {len(names)} bands shown; got {limits.tolist()}"
            )
    channels = [_stretch(band, (lo, hi), None if limits is None else limits[i]) for i, band in enumerate(raw)]
    rgb = np.stack(channels * 3 if len(channels) == 1 else channels, axis=-1)
    nodata = ~np.all([np.isfinite(band) for band in raw], axis=0)
    rgb[nodata] = 1.0
    return rgb


# --- overview ----------------------------------------------------------------------------------


def _rings(geom: Any) -> list[np.ndarray]:
    """Boundary rings / lines of a shapely geometry as (n, 2) arrays."""
    out: list[np.ndarray] = []
    parts = getattr(geom, "geoms", None)
    if parts is not None:
        for part in parts:
            out.extend(_rings(part))
        return out
    if geom is None or geom.is_empty:
        return out
    if geom.geom_type == "Polygon":
        out.append(np.asarray(geom.exterior.coords)[:, :2])
        out.extend(np.asarray(r.coords)[:, :2] for r in geom.interiors)
    elif geom.geom_type in ("LineString", "LinearRing"):
        out.append(np.asarray(geom.coords)[:, :2])
    return out


def _rings_of_all(geoms: Sequence[Any]) -> list[list[np.ndarray]]:
    """:func:`_rings` of each geometry; for (multi)polygons from one coordinate array."""
    import shapely

    arr = np.empty(len(geoms), dtype=object)
    arr[:] = list(geoms)
    try:
        parts, owner = shapely.get_parts(arr, return_index=True)
    except (TypeError, shapely.errors.GEOSException):  # not shapely geometries
        return [_rings(g) for g in geoms]
    if not parts.size or not (shapely.get_type_id(parts) == shapely.GeometryType.POLYGON).all():
        return [_rings(g) for g in geoms]
    keep = ~shapely.is_empty(parts)
    rings, ring_part = shapely.get_rings(parts[keep], return_index=True)
    xy, ring_of = shapely.get_coordinates(rings, return_index=True)
    pieces = np.split(xy, np.flatnonzero(np.diff(ring_of)) + 1) if xy.size else []
    out: list[list[np.ndarray]] = [[] for _ in geoms]
    for ring, piece in zip(owner[keep][ring_part].tolist(), pieces):
        out[ring].append(piece)
    return out


def _check_polygons(polygons: Any, grid: Grid) -> tuple[Sequence[Any], Sequence[Mapping[str, Any]]]:
    if not (hasattr(polygons, "geometries") and hasattr(polygons, "properties")):
        raise InvalidParameterError(
            f"polygons must have .geometries and .properties (a changedet.objects.ChangePolygons); "
            f"got {type(polygons).__name__}"
        )
    geoms, props = list(polygons.geometries), list(polygons.properties)
    if len(props) != len(geoms):
        raise InvalidParameterError(
            f"polygons has {len(geoms)} geometries but {len(props)} property records; they must pair up"
        )
    crs = getattr(polygons, "crs", None)
    if crs is not None and grid.crs is not None and crs != grid.crs:
        raise InvalidParameterError(
            f"polygons are in {crs} but the after image is on {describe_grid(grid)}; "
            "pass the polygons that changedet.objects.vectorize made on this grid"
        )
    return geoms, props


def _class_colors(classes: Sequence[str], class_colors: Mapping[str, str] | None) -> dict[str, str]:
    """Each class's colour: the one given, else its own (:data:`CHANGE_CLASS_COLORS`), else a spare."""
    given = {**CHANGE_CLASS_COLORS, **dict(class_colors or {})}
    taken = {given[c] for c in classes if c in given}
    spare = [c for c in CLASS_COLORS if c not in taken and c != STRUCTURE_COLOR] or list(CLASS_COLORS)
    out = {}
    unknown = 0
    for cls in classes:
        if cls in given:
            out[cls] = given[cls]
        else:
            out[cls] = spare[unknown % len(spare)]
            unknown += 1
    return out


@paused_gc()
def _draw_polygons(
    ax: Any, polygons: Any, grid: Grid, class_colors: Mapping[str, str] | None, *, screen_px: int | None = None
) -> tuple[list[Any], str]:
    """Outline polygons per change class; return legend handles and a panel title.

    Up to :data:`_MAX_VECTOR_OUTLINES` polygons are drawn as lines.  More (a noisy scene
    holds hundreds of thousands, most smaller than a screen pixel) are burnt into an
    image at the panel's screen resolution, ``screen_px`` columns: drawing each as a
    path took longer than the rest of the run.
    """
    geoms, props = _check_polygons(polygons, grid)
    if not geoms:
        ax.text(
            0.5, 0.5, "no change found", transform=ax.transAxes, ha="center", va="center", fontsize=11,
            path_effects=_TEXT_HALO,
        )
        return [], "changes: none"
    classes = [str(p.get("change_class", "change")) for p in props]
    counts = Counter(classes)
    order = sorted(counts, key=lambda c: (-counts[c], c))
    colors = _class_colors(order, class_colors)
    # Areas are square metres unless the polygons say they are pixels (a pixel grid without pixel size).
    in_pixels = getattr(polygons, "areas_in_pixels", grid.crs is None)
    has_area = not in_pixels and all(isinstance(p.get("area_m2"), (int, float)) for p in props)
    handles = []
    as_image = len(geoms) > _MAX_VECTOR_OUTLINES and screen_px is not None
    if as_image:
        _burn_outlines(ax, geoms, classes, order, colors, grid, int(screen_px))
    all_rings = [] if as_image else _rings_of_all(geoms)
    for cls in order:
        rings = [r for rs, c in zip(all_rings, classes) if c == cls for r in rs]
        label = f"{cls.replace('_', ' ')}: {counts[cls]}"
        if has_area:
            label += f" ({_fmt_area(sum(float(p['area_m2']) for p, c in zip(props, classes) if c == cls))})"
        if as_image:  # the legend's handle only
            coll = LineCollection([], colors=colors[cls], linewidths=1.3, label=label)
            ax.add_collection(coll, autolim=False)
            handles.append(coll)
            continue
        # the halo is its own collection under the outline: a path effect on a collection is drawn
        # path by path (twice), a plain collection in one call (0.13 s less for ~300 polygons)
        ax.add_collection(LineCollection(rings, colors="black", alpha=_HALO_ALPHA, linewidths=_HALO_WIDTH,
                                         label="_halo"), autolim=False)
        coll = LineCollection(rings, colors=colors[cls], linewidths=1.3, label=label)
        ax.add_collection(coll, autolim=False)
        handles.append(coll)
    title = f"changes: {len(geoms)} area{'s' if len(geoms) != 1 else ''}"
    if has_area:
        title += f", {_fmt_area(sum(float(p['area_m2']) for p in props))}"
    return handles, title


#: Above this many polygons the overview burns their outlines into an image (see _draw_polygons).
_MAX_VECTOR_OUTLINES = 20_000


def _burn_outlines(ax: Any, geoms: Sequence[Any], classes: Sequence[str], order: Sequence[str],
                   colors: Mapping[str, str], grid: Grid, screen_px: int) -> None:
    """Outlines per class, about as wide as the drawn lines (3 px, on a 5 px halo), as one RGBA image."""
    import shapely
    from matplotlib.colors import to_rgb
    from rasterio import features
    from scipy import ndimage

    factor = max(grid.width / max(screen_px, 1), 1.0)
    rows, cols = max(1, math.ceil(grid.height / factor)), max(1, math.ceil(grid.width / factor))
    t = grid.transform @ Affine.scale(grid.width / cols, grid.height / rows)
    rgba = np.zeros((rows, cols, 4), np.float32)
    arr = np.empty(len(geoms), dtype=object)
    arr[:] = list(geoms)
    cls_arr = np.asarray(classes, dtype=object)
    for cls in order:
        lines = shapely.boundary(arr[cls_arr == cls])
        burnt = features.rasterize(((g, 1) for g in lines if g is not None and not g.is_empty), out_shape=(rows, cols),
                                   transform=t, fill=0, dtype="uint8").astype(bool)
        line = ndimage.binary_dilation(burnt)
        halo = ndimage.binary_dilation(line)
        rgba[halo, :3] *= 1 - _HALO_ALPHA
        rgba[halo, 3] += _HALO_ALPHA * (1 - rgba[halo, 3])
        rgba[line, :3] = to_rgb(colors[cls])
        rgba[line, 3] = 1.0
    ax.imshow(rgba, extent=_extent(grid), origin="upper", interpolation="nearest", zorder=2)


def _display_contour_grid(flags: np.ndarray, grid: Grid, *, most: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``flags`` (rows, cols) on the display's decimated grid (:func:`_stride`: a block is set when
    any of its pixels is, or with ``most`` when at least half are), padded by an unset pixel so
    contours close at the image edge; with the x and y of its pixel centres, for ``contour(xs, ys, z)``."""
    stride = _stride(flags.shape)
    if stride > 1:
        rows, cols = (math.ceil(n / stride) * stride for n in flags.shape)
        padded = np.zeros((rows, cols), dtype=np.float32)
        padded[: flags.shape[0], : flags.shape[1]] = flags
        blocks = padded.reshape(rows // stride, stride, cols // stride, stride)
        flags = blocks.mean(axis=(1, 3)) >= 0.5 if most else blocks.any(axis=(1, 3))
    t = grid.transform @ Affine.scale(stride)
    z = np.pad(flags.astype(np.float32), 1)
    xs = t.c + t.a * (np.arange(z.shape[1]) - 0.5)
    ys = t.f + t.e * (np.arange(z.shape[0]) - 0.5)
    return xs, ys, z


def _draw_mask_outline(ax: Any, mask: Any, grid: Grid, color: str) -> list[Any]:
    arr = _as_2d(mask, "mask")
    if arr.shape != grid.shape:
        raise InvalidParameterError(
            f"mask has shape {arr.shape} but the after image has {grid.shape} (rows, cols); "
            "pass the change mask made on the after image's grid"
        )
    # keep every change visible: a displayed block shows change if any of its pixels does
    xs, ys, z = _display_contour_grid(arr == 1, grid, most=False)
    if not z.any():
        ax.text(
            0.5, 0.5, "no change found", transform=ax.transAxes, ha="center", va="center", fontsize=11,
            path_effects=_TEXT_HALO,
        )
        return []
    cs = ax.contour(xs, ys, z, levels=[0.5], colors=[color], linewidths=1.3)
    cs.set_path_effects(_HALO)
    n_px = int(np.count_nonzero(arr == 1))
    return [Line2D([], [], color=color, lw=1.5, label=f"change mask ({n_px:,} px)")]


def _draw_not_compared(ax: Any, mask: Any, grid: Grid) -> Patch | None:
    """Hatch the change mask's pixels that were not compared (255: nodata, cloud, cloud shadow) on the
    change panel; a legend handle with their share, or None when there are none (or all are)."""
    arr = _as_2d(mask, "mask")
    if arr.shape != grid.shape:
        return None
    left = arr == NODATA_MASK
    n = int(np.count_nonzero(left))
    if n == 0 or n == left.size:
        return None
    xs, ys, z = _display_contour_grid(left, grid, most=True)  # a displayed block hatched when most of it is
    cs = ax.contourf(xs, ys, z, levels=[0.5, 1.5], colors="none", hatches=["////"])
    cs.set_edgecolor("0.15")
    cs.set_linewidth(0.0)
    return Patch(facecolor="none", edgecolor="0.15", hatch="////",
                 label=f"not compared: cloud, shadow or no data ({n / arr.size:.1%} of the image)")


@paused_gc()
def plot_overview(
    before: GeoRaster,
    after: GeoRaster,
    *,
    polygons: Any = None,
    mask: GeoRaster | np.ndarray | None = None,
    title: str | None = None,
    labels: tuple[str, str] = ("before", "after"),
    class_colors: Mapping[str, str] | None = None,
    bands: Sequence[str] | None = None,
    percentiles: tuple[float, float] = (2, 98),
    structures: Any = None,
    pixel_size_m: float | None = None,
) -> Figure:
    """Before | after | change outlines over the after image, with scale bar, north arrow and legend.

    Both dates share one stretch (each band's percentiles over the pixels of both), so a
    colour difference between the panels is a real one.

    Parameters
    ----------
    before, after : GeoRaster
        The two dates; shown in true colour (see :func:`rgb_composite`).
    polygons : ChangePolygons, optional
        Anything with ``.geometries`` (shapely, in the after grid's CRS, pixel
        coordinates when it has none) and ``.properties`` (dicts; outlines are
        coloured by ``change_class`` when present, and ``area_m2`` is summed in
        the legend).
    mask : (rows, cols) ndarray or GeoRaster, optional
        Change mask on the after grid (1 change); outlined when no polygons
        are given.  With neither, only the two image panels are drawn.
    title : str, optional
        Figure title.
    labels : (str, str)
        Titles of the two image panels, e.g. the dates.
    class_colors : mapping of str to colour, optional
        Outline colour per change class; by default each class has its own
        (:data:`CHANGE_CLASS_COLORS`), the same in every figure.
    bands, percentiles
        Passed to :func:`rgb_composite`.
    structures : ChangePolygons, optional
        The counted structures (``ChangeResult.structures.polygons``): each one outlined
        in :data:`STRUCTURE_COLOR` on the change panel, their number and median
        footprint in the legend.
    pixel_size_m : float, optional
        Pixel size of images without georeferencing: the scale bar then reads metres.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np
    >>> from affine import Affine
    >>> from rasterio.crs import CRS
    >>> from changedet.raster import GeoRaster
    >>> rng = np.random.default_rng(0)
    >>> t = Affine(10, 0, 500000, 0, -10, 5300000)
    >>> before = GeoRaster(rng.random((3, 50, 60)), t, CRS.from_epsg(32630), ("red", "green", "blue"))
    >>> after = before.with_data(before.data[::-1])
    >>> mask = np.zeros((50, 60), "uint8"); mask[10:20, 30:45] = 1
    >>> fig = plot_overview(before, after, mask=mask, title="test site")
    >>> len(fig.axes)
    3
    """
    before = _as_raster(before, "before")
    after = _as_raster(after, "after")
    if polygons is not None:
        _check_polygons(polygons, after.grid)
    if structures is not None:
        _check_polygons(structures, after.grid)
    n_panels = 3 if (polygons is not None or mask is not None) else 2
    fig = _overview_base(before, after, n_panels=n_panels, title=title, labels=labels, bands=bands,
                         percentiles=percentiles, pixel_size_m=pixel_size_m)
    if n_panels == 3:
        _overview_changes(fig, polygons=polygons, mask=mask, class_colors=class_colors, structures=structures)
    return fig


# The overview's layout, in inches: fixed, so the two image panels and the change panel's
# image can be drawn before the changes are known (the command's figure helper does, while the
# pair is scored) and the outlines, the change panel's title and the legend drawn over them
# after (see _render_base).  The legend band holds its title and two rows of four entries
# (six classes and the structures at most).
_OV_PANEL_W = 5.0  # each panel's slot
_OV_MAX_PANEL_H = 9.0
_OV_SIDE, _OV_GAP, _OV_TOP = 0.06, 0.1, 0.05
_OV_SUPTITLE_H = 0.4
_OV_TITLE_H = 0.25  # a panel's title above it
_OV_CAPTION_H = 0.2  # the grid's small print under the first panel
_OV_LEGEND_H = 0.68


def _overview_base(before: GeoRaster, after: GeoRaster, *, n_panels: int, title: str | None,
                   labels: tuple[str, str], bands: Sequence[str] | None, percentiles: tuple[float, float],
                   pixel_size_m: float | None) -> Figure:
    """The overview without the changes: both dates, and with ``n_panels=3`` the after image,
    scale bar and north arrow of the change panel, which :func:`_overview_changes` completes."""
    if len(labels) != 2:
        raise InvalidParameterError(f"labels must be two titles (before, after); got {labels!r}")
    if pixel_size_m is not None and not (isinstance(pixel_size_m, (int, float)) and 0 < pixel_size_m < math.inf):
        raise InvalidParameterError(f"pixel_size_m must be a positive number of metres, got {pixel_size_m!r}")
    ratio = max(_height_over_width(before.grid), _height_over_width(after.grid))
    slot_w = (_OV_PANEL_W * n_panels - 2 * _OV_SIDE - (n_panels - 1) * _OV_GAP) / n_panels
    panel_h = min(slot_w * ratio, _OV_MAX_PANEL_H)
    top = _OV_TOP + (_OV_SUPTITLE_H if title else 0.0) + _OV_TITLE_H
    bottom = _OV_CAPTION_H + (_OV_LEGEND_H if n_panels == 3 else 0.0)
    dpi = _map_dpi(_decimated(after, bands).grid.shape, slot_w, panel_h)
    fig_w = _OV_PANEL_W * n_panels
    fig_h = (math.floor((top + panel_h + bottom) * dpi) + 0.5) / dpi  # no pixel row half-counted
    fig = _Figure(figsize=(fig_w, fig_h), facecolor="white")
    fig.save_dpi = dpi
    axes = [fig.add_axes(((_OV_SIDE + i * (slot_w + _OV_GAP)) / fig_w, bottom / fig_h, slot_w / fig_w,
                          panel_h / fig_h)) for i in range(n_panels)]
    # stretched once, as bytes: matplotlib then neither converts nor copies float images on each draw
    limits = _common_limits((before, after), bands, percentiles)
    shown = [(_to_bytes(rgb), grid) for rgb, grid in
             (_display_rgb(r, bands=bands, percentiles=percentiles, limits=limits) for r in (before, after))]
    for ax, (rgb, grid), label in zip(axes, shown, labels):
        _show_rgb(ax, rgb, grid)
        _map_axes(ax, grid, label)
    if n_panels == 3:
        _show_rgb(axes[2], *shown[1])
        _map_axes(axes[2], shown[1][1], None)
        fig._changes_base = (axes[2], axes[2].images[0], after.grid, labels[1])
    for ax, raster in zip(axes, (before, after, after)):
        _add_scale_bar(ax, raster.grid, pixel_size_m)
        _add_north_arrow(ax, raster.grid)
    caption = _caption(after.grid)
    if pixel_size_m and after.grid.crs is None:
        caption += f" \u00b7 pixels of {pixel_size_m:g} m"
    axes[0].set_xlabel(caption, fontsize=7, color="0.35", loc="left")
    if title:
        fig.suptitle(title, fontsize=13, y=1 - _OV_TOP / fig_h, va="top")
    return fig


def _overview_changes(fig: Figure, *, polygons: Any, mask: Any, class_colors: Mapping[str, str] | None,
                      structures: Any) -> None:
    """The change panel of an :func:`_overview_base` figure: outlines, title, and the legend."""
    ax, _, grid, after_label = fig._changes_base
    if polygons is not None:
        handles, panel_title = _draw_polygons(ax, polygons, grid, class_colors,
                                              screen_px=int(ax.get_position().width * fig.get_figwidth()
                                                            * fig.save_dpi))
    else:
        color = (class_colors or {}).get("change", CHANGE_CLASS_COLORS["change"])
        handles, panel_title = _draw_mask_outline(ax, mask, grid, color), "change mask outline"
    if mask is not None:
        hatch = _draw_not_compared(ax, mask, grid)
        if hatch is not None:
            handles.append(hatch)
    if structures is not None:
        handle = _draw_structures(ax, structures)
        if handle is not None:
            handles.append(handle)
            n = len(structures.geometries)
            panel_title += f", {n} structure{'s' if n != 1 else ''}"
    ax.set_title(f"{panel_title} (on {after_label})", fontsize=11)
    if handles:
        leg = fig.legend(
            handles=handles,
            loc="upper center",
            bbox_to_anchor=(0.5, _OV_LEGEND_H / fig.get_figheight()),
            ncols=min(len(handles), 4),
            fontsize=9,
            frameon=False,
            title="change class" if polygons is not None and len(handles) > 1 else None,
            title_fontsize=9,
        )
        for line in leg.get_lines():
            line.set_linewidth(3)
        for handle in getattr(leg, "legend_handles", []):
            if isinstance(handle, (Line2D, LineCollection)):
                handle.set_linewidth(3)


def _later_artists(fig: Figure) -> list[Any]:
    """What :func:`_overview_changes` adds or completes, in the order a full draw draws it: the
    change panel's children but its background, image and (empty) axes, then the legends."""
    ax, image, *_ = fig._changes_base
    skip = {id(ax.patch), id(image), *(id(a) for a in (ax.xaxis, ax.yaxis))}
    children = [a for a in ax.get_children() if id(a) not in skip]
    return sorted(children, key=lambda a: a.get_zorder()) + list(fig.legends)


def _render_base(fig: Figure) -> None:
    """Draw an :func:`_overview_base` figure (three panels) at its ``save_dpi`` on an Agg canvas,
    all but what :func:`_overview_changes` draws over: the change panel's frame, scale bar and
    arrow wait for the outlines, which a full draw puts under them.  :func:`_write_rendered`
    draws the rest and writes the PNG, the same pixels as :func:`_write_figure` of the whole."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    fig.set_dpi(int(fig.save_dpi))
    later = _later_artists(fig)
    for a in later:
        a.set_animated(True)  # left out of a draw that is not a save
    fig.canvas.draw()
    for a in later:
        a.set_animated(False)


def _write_rendered(fig: Figure, path: Path, *, on_pixels: Callable[[Any], None] | None = None) -> None:
    """Draw what :func:`_render_base` left out (after :func:`_overview_changes`) and write the PNG."""
    renderer = fig.canvas.get_renderer()
    for a in _later_artists(fig):
        a.draw(renderer)
    raw = memoryview(fig.canvas.buffer_rgba()).cast("B")
    _encode_png(raw, *_pixel_size(fig.bbox.size, raw.nbytes), path, int(fig.save_dpi), on_pixels=on_pixels)


def _draw_structures(ax: Any, structures: Any) -> Any:
    """Outline each counted structure (thin, over the change outlines); the legend's handle."""
    geoms, props = list(structures.geometries), list(structures.properties)
    if not geoms:
        return None
    rings = [r for rs in _rings_of_all(geoms) for r in rs]
    ax.add_collection(LineCollection(rings, colors="white", alpha=0.8, linewidths=2.0, label="_halo", zorder=4),
                      autolim=False)
    ax.add_collection(LineCollection(rings, colors=STRUCTURE_COLOR, linewidths=0.9, label="_structures", zorder=4),
                      autolim=False)
    label = f"structures: {len(geoms)}"
    areas = [float(p["area_m2"]) for p in props if isinstance(p.get("area_m2"), (int, float))]
    if areas and not getattr(structures, "areas_in_pixels", False):
        label += f" (median {np.median(areas):,.0f} m\u00b2)"
    return Line2D([], [], color=STRUCTURE_COLOR, lw=1.5, label=label)


# --- histogram ---------------------------------------------------------------------------------


def plot_histogram(
    score: GeoRaster | np.ndarray,
    *,
    threshold: float,
    valid: np.ndarray | None = None,
    bins: int = 128,
    method_label: str | None = None,
    hysteresis: tuple[float, float] | None = None,
) -> Figure:
    """Histogram of a change score (log counts) with the threshold marked.

    Bins at or above the threshold (the pixels called change) are drawn in
    orange, the others in grey.

    Parameters
    ----------
    score : (rows, cols) ndarray or 1-band GeoRaster
        Change score; NaN is nodata.
    threshold : float
        Score at and above which a pixel is change.
    valid : (rows, cols) ndarray of bool, optional
        Pixels to include (besides finite scores).
    bins : int
        Number of bins between the lowest and highest score.
    method_label : str, optional
        How the threshold was chosen (``"otsu"``), shown in the legend.
    hysteresis : (float, float), optional
        The run's hysteresis (low, high score values): both are marked, and the orange
        bins are the pixels above the threshold, not the change mask (which takes in
        pixels above ``low`` next to them and drops areas that do not reach ``high``).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np
    >>> score = np.random.default_rng(0).gamma(2.0, size=(100, 100))
    >>> fig = plot_histogram(score, threshold=6.0, method_label="otsu")
    >>> fig.axes[0].get_yscale(), [float(x) for x in fig.axes[0].lines[0].get_xdata()]
    ('log', [6.0, 6.0])
    """
    arr = _as_2d(score, "score")
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
    if not np.isfinite(threshold):
        raise InvalidParameterError(f"threshold must be a finite number, got {threshold!r}")
    if int(bins) != bins or bins < 2:
        raise InvalidParameterError(f"bins must be an integer >= 2, got {bins!r}")
    ok = np.isfinite(arr)
    if valid is not None:
        valid = np.asarray(valid, dtype=bool)
        if valid.shape != arr.shape:
            raise InvalidParameterError(f"valid has shape {valid.shape} but score has {arr.shape}; pass one per pixel")
        ok &= valid
    values = arr[ok]
    if values.size == 0:
        raise EmptyDataError("score has no valid pixel (all NaN or outside valid); nothing to plot")
    lo, hi = float(values.min()), float(values.max())
    lo, hi = min(lo, threshold), max(hi, threshold)
    if hi == lo:
        lo, hi = lo - 0.5, hi + 0.5
    counts, edges = np.histogram(values, bins=int(bins), range=(lo, hi))
    centres = (edges[:-1] + edges[1:]) / 2
    above = centres >= threshold
    n_change = int(np.count_nonzero(values >= threshold))

    fig = _Figure(figsize=(7.0, 4.0), layout="constrained")
    ax = fig.subplots()
    # The threshold line goes first so it is ax.lines[0].
    label = f"threshold{f' ({method_label})' if method_label else ''} = {threshold:.4g}"
    ax.axvline(threshold, color="#d62728", lw=1.8, ls="--", label=label)
    ax.hist(centres, bins=edges, weights=np.where(above, 0, counts), color="0.55", log=True, label="no change")
    if hysteresis is not None:
        h_lo, h_hi = (float(v) for v in hysteresis)
        ax.axvline(h_lo, color="#d62728", lw=1.2, ls=":", label=f"hysteresis low = {h_lo:.4g} (next to change)")
        ax.axvline(h_hi, color="#7f0000", lw=1.2, ls=":", label=f"hysteresis high = {h_hi:.4g} (an area reaches it)")
        lo, hi = min(lo, h_lo), max(hi, h_hi)
    ax.hist(
        centres, bins=edges, weights=np.where(above, counts, 0), color="#f58231", log=True,
        label=(f"{'above the threshold' if hysteresis is not None else 'change'}: "
               f"{n_change:,} px ({n_change / values.size:.1%})"),
    )
    ax.set_xlim(lo, hi)
    ax.set_xlabel("change score")
    ax.set_ylabel("pixels (log scale)")
    ax.set_title(f"Change score histogram ({values.size:,} valid pixels)", fontsize=11)
    ax.legend(fontsize=9, loc="upper right")
    ax.grid(True, which="major", axis="y", alpha=0.3)
    return fig


# --- swipe -------------------------------------------------------------------------------------


def plot_swipe(
    before: GeoRaster,
    after: GeoRaster,
    *,
    position: float = 0.5,
    labels: tuple[str, str] = ("before", "after"),
    title: str | None = None,
    bands: Sequence[str] | None = None,
    percentiles: tuple[float, float] = (2, 98),
) -> Figure:
    """A static swipe view: ``before`` left of a vertical split, ``after`` right of it.

    Parameters
    ----------
    before, after : GeoRaster
        Two dates on the same grid.
    position : float
        Where the split falls, as a fraction of the width (0 < position < 1).
    labels : (str, str)
        Names written on each side.
    title : str, optional
        Axes title.
    bands, percentiles
        Passed to :func:`rgb_composite`.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np
    >>> from affine import Affine
    >>> from changedet.raster import GeoRaster
    >>> before = GeoRaster(np.zeros((3, 20, 40)), Affine.identity())
    >>> after = before.with_data(np.ones((3, 20, 40)))
    >>> fig = plot_swipe(before, after, position=0.25)
    >>> [float(x) for x in fig.axes[0].lines[0].get_xdata()]
    [10.0, 10.0]
    """
    before = _as_raster(before, "before")
    after = _as_raster(after, "after")
    if not 0 < position < 1:
        raise InvalidParameterError(f"position must be between 0 and 1 (fraction of the width), got {position!r}")
    check_same_grid(before, after)
    limits = _common_limits((before, after), bands, percentiles)
    rgb, grid = _display_rgb(before, bands=bands, percentiles=percentiles, limits=limits)
    rgb_after, _ = _display_rgb(after, bands=bands, percentiles=percentiles, limits=limits)
    split = int(round(position * rgb.shape[1]))
    rgb[:, split:] = rgb_after[:, split:]
    left, right, _, _ = _extent(grid)
    x_split = left + (right - left) * split / rgb.shape[1]

    fig = _Figure(figsize=(8.0, min(8.0 * _height_over_width(grid), 9.0) + 0.6), layout="constrained")
    ax = fig.subplots()
    ax.imshow(rgb, extent=_extent(grid), origin="upper", interpolation="antialiased")
    ax.axvline(x_split, color="white", lw=2.0, path_effects=_HALO)
    for x, ha, text in ((position - 0.01, "right", f"\u25c0 {labels[0]}"), (position + 0.01, "left", f"{labels[1]} \u25b6")):
        ax.text(x, 0.97, text, transform=ax.transAxes, ha=ha, va="top", fontsize=10, fontweight="bold",
                path_effects=_TEXT_HALO)
    _map_axes(ax, grid, title)
    _add_scale_bar(ax, grid)
    _add_north_arrow(ax, grid)
    return fig


# --- mask --------------------------------------------------------------------------------------

_MASK_COLORS = {
    "tp": ("#1a9850", "true positive"),
    "fp": ("#d73027", "false positive"),
    "fn": ("#4575b4", "false negative"),
    "tn": ("#ffffff", "true negative"),
    "change": ("#f58231", "change"),
    "nochange": ("#ffffff", "no change"),
    "nodata": ("#bdbdbd", "nodata"),
}


def _mask_codes(
    mask: GeoRaster | np.ndarray,
    truth: GeoRaster | np.ndarray | None,
    truth_change_values: Sequence[float],
    truth_nochange_values: Sequence[float],
    ignore_values: Sequence[float],
) -> tuple[np.ndarray, Grid, list[str], dict[str, int], str]:
    """Per-pixel agreement codes of a mask (with a truth: TP, FP, FN, TN, nodata)."""
    pred = _as_2d(mask, "mask")
    grid = mask.grid if isinstance(mask, GeoRaster) else Grid(pred.shape, Affine.identity(), None)
    pred_f = pred.astype(np.float64, copy=False)
    keys: list[str]
    if truth is not None:
        acc = evaluate(
            mask, truth, truth_change_values=truth_change_values,
            truth_nochange_values=truth_nochange_values, ignore_values=ignore_values,
        )
        true_f = _as_2d(truth, "truth").astype(np.float64, copy=False)
        t_change = np.isin(true_f, np.asarray(truth_change_values, dtype=np.float64))
        t_nochange = np.isin(true_f, np.asarray(truth_nochange_values, dtype=np.float64))
        p_change, p_nochange = pred_f == 1, pred_f == 0
        keys = ["tp", "fp", "fn", "tn", "nodata"]
        codes = np.full(pred.shape, 4, dtype=np.uint8)
        codes[p_change & t_change] = 0
        codes[p_change & t_nochange] = 1
        codes[p_nochange & t_change] = 2
        codes[p_nochange & t_nochange] = 3
        counts = {"tp": acc.tp, "fp": acc.fp, "fn": acc.fn, "tn": acc.tn, "nodata": acc.n_ignored}
        default_title = f"F1 {acc.f1:.3f}   IoU {acc.iou:.3f}   kappa {acc.kappa:.3f}"
    else:
        keys = ["change", "nochange", "nodata"]
        codes = np.full(pred.shape, 2, dtype=np.uint8)
        codes[pred_f == 1] = 0
        codes[pred_f == 0] = 1
        counts = {k: int(np.count_nonzero(codes == i)) for i, k in enumerate(keys)}
        n_valid = counts["change"] + counts["nochange"]
        default_title = f"change: {counts['change']:,} of {n_valid:,} valid pixels" + (
            f" ({counts['change'] / n_valid:.1%})" if n_valid else ""
        )
    return codes, grid, keys, counts, default_title


def plot_mask(
    mask: GeoRaster | np.ndarray,
    *,
    truth: GeoRaster | np.ndarray | None = None,
    truth_change_values: Sequence[float] = (1,),
    truth_nochange_values: Sequence[float] = (0,),
    ignore_values: Sequence[float] = (255,),
    title: str | None = None,
) -> Figure:
    """A change mask, or its agreement with a ground truth (TP green, FP red, FN blue).

    Parameters
    ----------
    mask : (rows, cols) ndarray or 1-band GeoRaster
        1 change, 0 no change, 255 / NaN nodata (grey).
    truth : (rows, cols) ndarray or 1-band GeoRaster, optional
        Ground truth; the title then gives F1, IoU and kappa (see
        :func:`changedet.evaluate.evaluate`, which also checks the grids).
    truth_change_values, truth_nochange_values, ignore_values
        How the truth is encoded, as in :func:`changedet.evaluate.evaluate`.
    title : str, optional
        Axes title (default: a summary of the counts or scores).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np
    >>> mask = np.array([[1, 1, 0], [0, 0, 255]])
    >>> truth = np.array([[1, 0, 1], [0, 0, 0]])
    >>> fig = plot_mask(mask, truth=truth)
    >>> [t.get_text() for t in fig.legends[0].get_texts()][:3]
    ['true positive: 1', 'false positive: 1', 'false negative: 1']
    """
    codes, grid, keys, counts, default_title = _mask_codes(
        mask, truth, truth_change_values, truth_nochange_values, ignore_values
    )
    lut = np.array([[int(_MASK_COLORS[k][0][i : i + 2], 16) / 255 for i in (1, 3, 5)] for k in keys])
    stride = _stride(codes.shape)
    shown = codes[::stride, ::stride]
    small = Grid(shown.shape, grid.transform @ Affine.scale(stride), grid.crs)

    fig = _Figure(figsize=(9.0, min(6.5 * _height_over_width(small), 9.0) + 0.6), layout="constrained")
    ax = fig.subplots()
    ax.imshow(lut[shown], extent=_extent(small), origin="upper", interpolation="nearest")
    _map_axes(ax, small, title or default_title)
    handles = [
        Patch(facecolor=_MASK_COLORS[k][0], edgecolor="0.4", label=f"{_MASK_COLORS[k][1]}: {counts[k]:,}")
        for k in keys
        if counts[k] or k not in ("nodata",)
    ]
    fig.legend(handles=handles, loc="outside right upper", fontsize=9, frameon=False)
    _add_scale_bar(ax, small)
    return fig


def plot_comparison(
    masks: Mapping[str, GeoRaster | np.ndarray],
    *,
    truth: GeoRaster | np.ndarray | None = None,
    truth_change_values: Sequence[float] = (1,),
    truth_nochange_values: Sequence[float] = (0,),
    ignore_values: Sequence[float] = (255,),
    ncols: int = 4,
) -> Figure:
    """Several change masks side by side (one per method), coloured by agreement with a truth.

    Each panel's title gives the method and, with a truth, its F1 and kappa (without
    one, the number of changed pixels).

    Parameters
    ----------
    masks : mapping of str to (rows, cols) ndarray or 1-band GeoRaster
        Method name to its mask (1 change, 0 no change, anything else nodata), one
        panel each, in the mapping's order; not empty.
    truth : (rows, cols) ndarray or 1-band GeoRaster, optional
        Ground truth every mask is scored against (see
        :func:`changedet.evaluate.evaluate`).
    truth_change_values, truth_nochange_values, ignore_values : sequence of float
        How the truth is encoded, as in :func:`changedet.evaluate.evaluate`.
    ncols : int
        Panels per row (at least 1; fewer when there are fewer masks).

    Returns
    -------
    matplotlib.figure.Figure
        One panel per mask (spare panels hidden) and a shared legend below.

    Examples
    --------
    >>> import numpy as np
    >>> truth = np.array([[1, 0], [0, 0]])
    >>> fig = plot_comparison({"a": np.array([[1, 0], [0, 0]]), "b": np.array([[1, 1], [0, 0]])}, truth=truth)
    >>> [ax.get_title().split()[0] for ax in fig.axes if ax.get_visible()]
    ['a', 'b']
    """
    if not masks:
        raise InvalidParameterError("plot_comparison needs at least one mask")
    if ncols < 1:
        raise InvalidParameterError(f"ncols must be >= 1, got {ncols}")
    names = list(masks)
    ncols = min(ncols, len(names))
    nrows = -(-len(names) // ncols)
    first = _mask_codes(masks[names[0]], truth, truth_change_values, truth_nochange_values, ignore_values)
    aspect = _height_over_width(first[1])
    fig = _Figure(figsize=(3.4 * ncols, 3.4 * nrows * aspect + 0.9), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols)).ravel()
    keys: list[str] = first[2]
    for ax, name in zip(axes, names):
        codes, grid, keys, counts, title = _mask_codes(
            masks[name], truth, truth_change_values, truth_nochange_values, ignore_values
        )
        lut = np.array([[int(_MASK_COLORS[k][0][i : i + 2], 16) / 255 for i in (1, 3, 5)] for k in keys])
        stride = _stride(codes.shape, 1200)
        shown = codes[::stride, ::stride]
        small = Grid(shown.shape, grid.transform @ Affine.scale(stride), grid.crs)
        ax.imshow(lut[shown], extent=_extent(small), origin="upper", interpolation="nearest")
        if truth is not None:
            parts = dict(p.split(" ", 1) for p in title.split("   "))
            label = f"{name}\nF1 {parts.get('F1', '?')}  kappa {parts.get('kappa', '?')}"
        else:
            label = f"{name}\n{counts.get('change', 0):,} px changed"
        _map_axes(ax, small, label)
        ax.title.set_fontsize(9)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    handles = [Patch(facecolor=_MASK_COLORS[k][0], edgecolor="0.4", label=_MASK_COLORS[k][1]) for k in keys]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=9, frameon=False)
    return fig


# --- saving ------------------------------------------------------------------------------------


@paused_gc()
def save_figure(fig: Figure, path: str | os.PathLike[str], *, dpi: int | None = None) -> Path:
    """Write a figure atomically (temporary file, then rename) and release it.

    The format comes from the suffix (``.png``, ``.pdf``, ``.svg``, ...).  A
    figure made by pyplot is closed; figures from this module are not
    registered with pyplot and are freed once no longer referenced.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    path : str or path-like
        Destination; missing parent folders are created.
    dpi : int, optional
        Resolution for raster formats; by default 150, or for map figures made
        here about one pixel per displayed image pixel (100 to 150).

    Returns
    -------
    pathlib.Path
        The path written.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from matplotlib.figure import Figure
    >>> fig = _Figure(figsize=(2, 2)); _ = fig.subplots().plot([0, 1], [0, 1])
    >>> out = save_figure(fig, pathlib.Path(tempfile.mkdtemp()) / "line.png", dpi=50)
    >>> out.read_bytes()[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
    True
    """
    dest = Path(path)
    fmt = dest.suffix.lstrip(".").lower()
    supported = fig.canvas.get_supported_filetypes()
    if fmt not in supported:
        raise InvalidParameterError(
            f"cannot tell the figure format from {str(dest)!r}; use one of the suffixes "
            f"{', '.join('.' + s for s in sorted(supported))}"
        )
    if dpi is not None and (int(dpi) != dpi or dpi <= 0):
        raise InvalidParameterError(f"dpi must be a positive integer, got {dpi!r}")
    with atomic_path(dest) as tmp:
        _write_figure(fig, tmp, fmt=fmt, dpi=dpi)
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        pyplot.close(fig)
    return dest


def _write_figure(fig: Figure, path: Path, *, fmt: str = "png", dpi: int | None = None,
                  on_pixels: Callable[[Any], None] | None = None) -> None:
    """The figure written straight into ``path`` (the caller makes that atomic); by default at
    the figure's own ``save_dpi`` (map figures) or 150.  A PNG's pixels (a PIL image) are
    handed to ``on_pixels`` before they are encoded."""
    if dpi is None:
        dpi = int(getattr(fig, "save_dpi", 150))
    if fmt == "png":
        _save_png(fig, path, dpi, on_pixels=on_pixels)
    else:
        fig.savefig(path, format=fmt, dpi=dpi, facecolor="white")


def _save_png(fig: Figure, path: Path, dpi: int, *, on_pixels: Callable[[Any], None] | None = None) -> None:
    """The figure as a PNG on white: RGB when every pixel is opaque (:func:`_encode_png`).

    ``savefig`` (its canvas, dpi and layout handling) renders the figure's raw RGBA
    pixels, which are encoded once.  Matplotlib's own PNG is RGBA: on a white
    background the alpha channel is 255 everywhere and a quarter of the bytes to
    compress (the 1 m sample's overview went from 2.3 MB to under the report's 2 MB
    embedding budget).
    """
    import matplotlib

    buf = io.BytesIO()
    engine = fig.get_layout_engine()
    original_dpi = fig.dpi
    try:
        fig.set_dpi(dpi)
        box = fig.bbox.size  # the renderer takes the int of each side (see _pixel_size)
        if engine is not None and type(engine).__name__ == "ConstrainedLayoutEngine":
            # savefig draws a figure with a layout engine twice: once to lay it out, once to
            # render (each resampling every image).  Lay it out here at the output dpi and
            # render once with the layout fixed; the figure gets its engine back
            # ('none' would leave a placeholder engine, which savefig still lays out and draws
            # twice for; None with the rc layouts off removes it)
            engine.execute(fig)
            with matplotlib.rc_context({"figure.autolayout": False, "figure.constrained_layout.use": False}):
                fig.set_layout_engine(None)
        fig.savefig(buf, format="raw", dpi=dpi, facecolor="white")
    finally:
        if engine is not None and fig.get_layout_engine() is not engine:
            fig.set_layout_engine(engine)
        fig.set_dpi(original_dpi)
    raw = buf.getbuffer()
    _encode_png(raw, *_pixel_size(box, raw.nbytes), path, dpi, on_pixels=on_pixels)


def _pixel_size(box: Any, nbytes: int) -> tuple[int, int]:
    """(width, height) in pixels of a figure of ``box`` (its size in pixels at the saving dpi)
    rendered as ``nbytes`` of RGBA: the renderer truncates each side, which a side within
    rounding of a whole number can put on either side of it."""
    w, h = float(box[0]), float(box[1])
    for width in dict.fromkeys((int(w), int(round(w)))):
        for height in dict.fromkeys((int(h), int(round(h)))):
            if width * height * 4 == nbytes:
                return width, height
    return int(w), int(h)  # _encode_png says what was rendered


def _encode_png(raw: Any, width: int, height: int, path: Path | io.BytesIO, dpi: int, *,
                on_pixels: Callable[[Any], None] | None = None) -> None:
    """RGBA pixels (``width`` x ``height``, row-major bytes) as a PNG, RGB when all are opaque
    (:func:`changedet._png.encode_png`; ``CHANGEDET_PNG=pillow`` writes it with Pillow)."""
    import matplotlib

    from . import _png

    raw = memoryview(raw).cast("B")
    if raw.nbytes != width * height * 4:  # pragma: no cover - matplotlib rendered another size
        raise RuntimeError(f"the figure rendered {raw.nbytes} bytes, not {width} x {height} RGBA pixels")
    rgba = np.frombuffer(raw, np.uint8).reshape(height, width, 4)
    opaque = bool(rgba[..., 3].min() == 255)
    text = {"Software": f"Matplotlib version{matplotlib.__version__}, https://matplotlib.org/"}
    pillow = os.environ.get("CHANGEDET_PNG") == "pillow"  # the library's encoder (benchmarks/small.py --png pillow)
    if on_pixels is not None or pillow:
        from PIL import Image

        im = Image.frombuffer("RGBA", (width, height), raw, "raw", "RGBA", 0, 1)
        if opaque:
            im = im.convert("RGB")
        if on_pixels is not None:
            on_pixels(im)
    if pillow:
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        for key, value in text.items():
            info.add_text(key, value)
        im.save(path, "PNG", compress_level=1, compress_type=zlib.Z_RLE, pnginfo=info, dpi=(dpi, dpi))
        return
    _png.encode_png(rgba[..., :3] if opaque else rgba, path, dpi=dpi, text=text)


# --- click-to-label examples -------------------------------------------------------------------

#: Colours and markers of the analyst's examples: change, no change (told apart by shape as well).
EXAMPLE_STYLE = {True: ("#ff2e63", "o", "change"), False: ("#08d9d6", "s", "no change")}

#: The change outlines in the picker (all classes alike).
_OUTLINE_COLOR = CLASS_COLORS[0]

_STATIC_BACKENDS = ("agg", "pdf", "ps", "svg", "cairo", "template", "inline")


def _backend_is_interactive() -> bool:
    """True when figures get a live canvas (``%matplotlib widget``, Qt, Tk, ...)."""
    import matplotlib

    name = matplotlib.get_backend().lower()
    return not any(name.endswith(s) for s in _STATIC_BACKENDS)


def _png(figure: Any) -> bytes:
    buf = io.BytesIO()
    figure.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def _figure_widget(figure: Any) -> Any:
    """The figure as an ipywidget: its live canvas (ipympl), else an Image of it (a static
    backend; :func:`_refresh` redraws it).  Not an Output widget: capturing a display into
    one waits for a front end, and a notebook run headless would stall on it."""
    import ipywidgets as w

    canvas = figure.canvas
    if isinstance(canvas, w.DOMWidget):
        return canvas
    return w.Image(value=_png(figure), format="png")


def _refresh(view: Any, figure: Any) -> None:
    """Show the figure's new state in a static view made by :func:`_figure_widget`."""
    if view is None:  # no widget made (ipywidgets may not even be installed)
        return
    import ipywidgets as w

    if isinstance(view, w.Image):
        view.value = _png(figure)


class ExamplePicker:
    """A click-to-label view: before | after with the change outlines; clicks make examples.

    A left click on either panel marks "this is the kind of change I mean" (a
    red circle), a right click "this is not change" (a cyan square); both
    panels show every point.  With ``mode="no change"`` a left click marks no
    change (for a trackpad).  :meth:`to_geojson` gives the examples as
    :func:`changedet.pipeline.detect_changes` takes them (``examples=``): lon/lat
    for a georeferenced grid, pixel coordinates (x = column + 0.5, y = row + 0.5)
    without a CRS.

    In JupyterLab with ``%matplotlib widget`` (ipympl) the clicks work on the live
    figure; :meth:`widget` adds buttons (re-run, undo, clear).  Under a static
    backend (Agg, inline) the picker still draws, and :meth:`add` does what a
    click does.  Clicks while the toolbar's zoom or pan is on are ignored.

    Parameters
    ----------
    source : ChangeResult, SamplePair or (before, after)
        Anything with ``before`` and ``after`` GeoRasters (a result also gives its
        ``polygons``, outlined on both panels), or the two rasters.
    examples : path or dict, optional
        Examples to start from (a GeoJSON FeatureCollection of Points, as
        :meth:`save` writes); see :meth:`load`.
    on_rerun : callable, optional
        ``on_rerun(examples_geojson) -> ChangeResult``, called by :meth:`rerun` (the
        widget's "Re-run" button); the outlines then show the new result.
    mode : {"change", "no change"}
        What a left click marks.
    labels, bands, percentiles
        Panel titles and the true-colour stretch, as for :func:`plot_overview`.

    Examples
    --------
    >>> import numpy as np
    >>> from affine import Affine
    >>> from changedet.raster import GeoRaster
    >>> img = GeoRaster(np.random.default_rng(0).random((3, 20, 30)), Affine.identity())
    >>> picker = ExamplePicker((img, img))
    >>> picker.add(4.5, 2.5, True); picker.add(10.5, 12.5, False)
    >>> [f["geometry"]["coordinates"] for f in picker.to_geojson()["features"]]
    [[4.5, 2.5], [10.5, 12.5]]
    >>> picker.n_change, picker.n_no_change
    (1, 1)
    """

    def __init__(
        self,
        source: Any,
        *,
        examples: Any = None,
        on_rerun: Any = None,
        mode: str = "change",
        labels: tuple[str, str] = ("before", "after"),
        bands: Sequence[str] | None = None,
        percentiles: tuple[float, float] = (2, 98),
    ) -> None:
        if isinstance(source, (tuple, list)) and len(source) == 2:
            before, after, polygons = source[0], source[1], None
        elif hasattr(source, "before") and hasattr(source, "after"):
            before, after, polygons = source.before, source.after, getattr(source, "polygons", None)
        else:
            raise InvalidParameterError(
                f"source must be a ChangeResult, a SamplePair or a (before, after) pair of GeoRasters; "
                f"got {type(source).__name__}"
            )
        before, after = _as_raster(before, "before"), _as_raster(after, "after")
        check_same_grid(before, after)
        if on_rerun is not None and not callable(on_rerun):
            raise InvalidParameterError(f"on_rerun must be a function examples -> ChangeResult, got {on_rerun!r}")
        if len(labels) != 2:
            raise InvalidParameterError(f"labels must be two titles (before, after); got {labels!r}")
        self.grid: Grid = after.grid
        self.on_rerun = on_rerun
        self.mode = mode
        self.result: Any = source if polygons is not None else None
        self._x: list[float] = []
        self._y: list[float] = []
        self._change: list[bool] = []
        self._outlines: list[Any] = []
        self.figure = self._draw(before, after, labels, bands, percentiles)
        if polygons is not None:
            self._draw_outlines(polygons)
        self._cid = self.figure.canvas.mpl_connect("button_press_event", self._on_click)
        if examples is not None:
            self.load(examples)
        self._redraw_points()

    # -- state --------------------------------------------------------------------------------

    @property
    def mode(self) -> str:
        """What a left click marks: ``"change"`` or ``"no change"`` (a right click marks the other)."""
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        if value not in ("change", "no change"):
            raise InvalidParameterError(f'mode must be "change" or "no change", got {value!r}')
        self._mode = value

    @property
    def n_change(self) -> int:
        return sum(self._change)

    @property
    def n_no_change(self) -> int:
        return len(self._change) - self.n_change

    def __len__(self) -> int:
        return len(self._change)

    def add(self, x: float, y: float, change: bool) -> None:
        """Add an example at grid coordinates ``(x, y)`` (what a click on the map does).

        Parameters
        ----------
        x, y : float
            Map coordinates in the grid's CRS (without a CRS, the grid transform's
            coordinates: pixel coordinates for an identity transform), as the panels' axes are.
        change : bool
            True: this is the kind of change meant; False: this is not change.
        """
        if not isinstance(change, (bool, np.bool_)):
            raise InvalidParameterError(f"change must be True or False, got {change!r}")
        col, row = ~self.grid.transform * (float(x), float(y))
        if not (0 <= row < self.grid.height and 0 <= col < self.grid.width) or not np.isfinite([row, col]).all():
            raise InvalidParameterError(
                f"({x}, {y}) is outside the image ({describe_grid(self.grid)}); give grid coordinates on the map"
            )
        self._x.append(float(x))
        self._y.append(float(y))
        self._change.append(bool(change))
        self._redraw_points()

    def undo(self) -> None:
        """Remove the last example."""
        if self._change:
            for seq in (self._x, self._y, self._change):
                seq.pop()
            self._redraw_points()

    def clear(self) -> None:
        """Remove every example."""
        self._x, self._y, self._change = [], [], []
        self._redraw_points()

    # -- GeoJSON ------------------------------------------------------------------------------

    def to_geojson(self) -> dict[str, Any]:
        """The examples as a GeoJSON FeatureCollection of Points with a boolean ``change``.

        Returns
        -------
        dict
            The FeatureCollection: coordinates in lon/lat (EPSG:4326, RFC 7946) for a
            georeferenced grid, pixel coordinates (x = column + 0.5 at a pixel's centre)
            without a CRS; what ``detect_changes(..., examples=)`` reads.
        """
        xs, ys = np.asarray(self._x, float), np.asarray(self._y, float)
        if self.grid.crs is None:
            inv = ~self.grid.transform
            xs, ys = inv.a * xs + inv.b * ys + inv.c, inv.d * xs + inv.e * ys + inv.f
            digits = 6
        elif xs.size:
            from pyproj import Transformer

            tr = Transformer.from_crs(self.grid.crs, "EPSG:4326", always_xy=True)
            xs, ys = (np.asarray(v, float) for v in tr.transform(xs, ys))
            digits = 10  # 1e-10 degree is about 0.01 mm
        else:
            digits = 10
        features = [
            {"type": "Feature", "geometry": {"type": "Point", "coordinates": [round(float(x), digits), round(float(y), digits)]},
             "properties": {"change": c}}
            for x, y, c in zip(xs, ys, self._change)
        ]
        return {"type": "FeatureCollection", "features": features}

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`to_geojson` to a GeoJSON file (atomically).

        Parameters
        ----------
        path : path
            The file to write (``.geojson``); missing parent folders are made.

        Returns
        -------
        pathlib.Path
            The path written.
        """
        from .io import write_json

        return write_json(self.to_geojson(), path)

    def load(self, examples: str | os.PathLike[str] | Mapping[str, Any]) -> None:
        """Add the Point examples of a GeoJSON FeatureCollection, to go on labelling.

        Parameters
        ----------
        examples : path or dict
            A GeoJSON file or FeatureCollection of Points with a boolean ``change``, in the
            coordinates :meth:`to_geojson` writes.  Polygons are refused (the picker draws
            points): give them to ``detect_changes(..., examples=)`` directly.  Nothing is
            added when one point is unreadable or outside the image.
        """
        import json

        source = "examples"
        if isinstance(examples, Mapping):
            fc = dict(examples)
        else:
            source = os.fspath(examples)
            try:
                fc = json.loads(Path(source).read_text(encoding="utf-8"))
            except FileNotFoundError:
                raise InvalidParameterError(f"{source}: the examples file does not exist; check the path") from None
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise InvalidParameterError(
                    f"{source}: cannot be read as GeoJSON ({exc.__class__.__name__}); pass a file ExamplePicker.save wrote"
                ) from None
        feats = fc.get("features") if isinstance(fc, dict) and fc.get("type") == "FeatureCollection" else None
        if not isinstance(feats, list):
            raise InvalidParameterError(f"{source}: expected a GeoJSON FeatureCollection, as ExamplePicker.save writes")
        xs, ys, flags = [], [], []
        for i, f in enumerate(feats):
            geom = f.get("geometry") if isinstance(f, dict) else None
            flag = (f.get("properties") or {}).get("change") if isinstance(f, dict) else None
            if not isinstance(geom, dict) or geom.get("type") != "Point" or not isinstance(flag, bool):
                raise InvalidParameterError(
                    f"{source}: feature {i} is not a Point with a boolean property 'change' (got "
                    f"{geom.get('type') if isinstance(geom, dict) else geom!r}, change={flag!r}); the picker "
                    "draws points only: pass polygons to detect_changes(examples=) directly"
                )
            xs.append(float(geom["coordinates"][0]))
            ys.append(float(geom["coordinates"][1]))
            flags.append(flag)
        x, y = np.asarray(xs, float), np.asarray(ys, float)
        if self.grid.crs is None:  # pixel coordinates -> the grid's (what the axes show)
            t = self.grid.transform
            x, y = t.a * x + t.b * y + t.c, t.d * x + t.e * y + t.f
        elif x.size:
            from pyproj import Transformer

            tr = Transformer.from_crs("EPSG:4326", self.grid.crs, always_xy=True)
            x, y = (np.asarray(v, float) for v in tr.transform(x, y))
        n = len(self._change)
        try:
            for xi, yi, c in zip(x, y, flags):
                self.add(float(xi), float(yi), c)
        except InvalidParameterError as exc:
            del self._x[n:], self._y[n:], self._change[n:]
            self._redraw_points()
            raise InvalidParameterError(f"{source}: {exc}") from None

    # -- drawing ------------------------------------------------------------------------------

    def _draw(self, before: GeoRaster, after: GeoRaster, labels: tuple[str, str], bands: Sequence[str] | None,
              percentiles: tuple[float, float]) -> Figure:
        ratio = _height_over_width(self.grid)
        size = (10.0, min(4.8 * ratio, 9.0) + 0.9)
        if _backend_is_interactive():  # a live canvas needs the backend's figure manager
            from matplotlib import pyplot

            with pyplot.ioff():  # shown by widget(), not again at the end of the cell
                fig = pyplot.figure(FigureClass=_Figure, figsize=size, layout="constrained")
        else:
            fig = _Figure(figsize=size, layout="constrained")
        self.axes = tuple(fig.subplots(1, 2, sharex=True, sharey=True))
        limits = _common_limits((before, after), bands, percentiles)
        for ax, raster, label in zip(self.axes, (before, after), labels):
            rgb, grid = _display_rgb(raster, bands=bands, percentiles=percentiles, limits=limits)
            _show_rgb(ax, _to_bytes(rgb), grid)
            _map_axes(ax, self.grid, label)
        self._points = {
            (k, flag): ax.scatter([], [], s=46, c=EXAMPLE_STYLE[flag][0], marker=EXAMPLE_STYLE[flag][1],
                                  edgecolors="black", linewidths=0.9, zorder=5, label=EXAMPLE_STYLE[flag][2])
            for k, ax in enumerate(self.axes) for flag in (True, False)
        }
        self._legend = fig.legend(handles=[self._points[(0, True)], self._points[(0, False)]], loc="outside lower center",
                                  ncols=3, fontsize=9, frameon=False)
        self._axes_extent = _extent(self.grid)
        return fig

    def _draw_outlines(self, polygons: Any) -> None:
        for artist in self._outlines:
            artist.remove()
        self._outlines = []
        geoms, props = _check_polygons(polygons, self.grid)
        # one colour for every class: the question here is change or not, and the class
        # colours would clash with the examples' red and cyan
        rings = [r for rs in _rings_of_all(geoms) for r in rs]
        for ax in self.axes:
            for colour, alpha, width, label in (("black", _HALO_ALPHA, _HALO_WIDTH, "_halo"),
                                                (_OUTLINE_COLOR, 1.0, 1.3, "_outline")):
                coll = LineCollection(rings, colors=colour, alpha=alpha, linewidths=width, label=label, zorder=3)
                self._outlines.append(ax.add_collection(coll, autolim=False))
        title = f"detected change: {len(geoms)} area{'s' if len(geoms) != 1 else ''}"
        in_pixels = getattr(polygons, "areas_in_pixels", self.grid.crs is None)
        if geoms and not in_pixels and all(isinstance(p.get("area_m2"), (int, float)) for p in props):
            title += f", {_fmt_area(sum(float(p['area_m2']) for p in props))}"
        self._outline_handle = Line2D([], [], color=_OUTLINE_COLOR, lw=2.5, label=title)
        self._update_legend()

    def _update_legend(self) -> None:
        handles = [self._points[(0, True)], self._points[(0, False)]]
        if getattr(self, "_outline_handle", None) is not None:
            handles.append(self._outline_handle)
        self._legend.remove()
        self._legend = self.figure.legend(handles=handles, loc="outside lower center", ncols=3, fontsize=9,
                                          frameon=False)

    def _redraw_points(self) -> None:
        xy = np.column_stack([self._x, self._y]) if self._x else np.empty((0, 2))
        flags = np.asarray(self._change, bool)
        for (_, flag), coll in self._points.items():
            coll.set_offsets(xy[flags == flag])
        left = "change" if self.mode == "change" else "no change"
        right = "no change" if self.mode == "change" else "change"
        self.figure.suptitle(
            f"left click: {left}, right click: {right}   |   {self.n_change} change, {self.n_no_change} no change",
            fontsize=10,
        )
        self.figure.canvas.draw_idle()
        _refresh(getattr(self, "_view", None), self.figure)

    def _on_click(self, event: Any) -> None:
        if event.inaxes not in self.axes or event.xdata is None or event.button not in (1, 3):
            return
        toolbar = getattr(self.figure.canvas, "toolbar", None)
        if toolbar is not None and str(getattr(toolbar, "mode", "")):  # zooming or panning
            return
        left = self.mode == "change"
        try:
            self.add(event.xdata, event.ydata, left if event.button == 1 else not left)
        except InvalidParameterError:  # a click beside the image
            return

    # -- re-run -------------------------------------------------------------------------------

    def update(self, result: Any) -> None:
        """Show another result's change outlines (e.g. the run with these examples).

        Parameters
        ----------
        result : ChangeResult
            Anything with ``polygons`` on this grid.
        """
        polygons = getattr(result, "polygons", None)
        if polygons is None:
            raise InvalidParameterError(f"update needs a ChangeResult (with .polygons), got {type(result).__name__}")
        self.result = result
        self._draw_outlines(polygons)
        self.figure.canvas.draw_idle()
        _refresh(getattr(self, "_view", None), self.figure)

    def rerun(self) -> Any:
        """Call ``on_rerun`` with the examples and show the result it returns.

        Returns
        -------
        ChangeResult
            What ``on_rerun`` returned (its outlines are now drawn).
        """
        if self.on_rerun is None:
            raise InvalidParameterError(
                "rerun needs on_rerun: ExamplePicker(result, on_rerun=lambda ex: detect_changes(before, after, "
                "examples=ex))"
            )
        if not self.n_change or not self.n_no_change:
            raise InvalidParameterError(
                f"mark examples of both kinds before re-running (now {self.n_change} change, "
                f"{self.n_no_change} no change)"
            )
        result = self.on_rerun(self.to_geojson())
        self.update(result)
        return result

    def widget(self) -> Any:
        """The figure with buttons (ipywidgets): what a left click marks, Re-run, Undo, Clear.

        Needs ipywidgets; the figure is live (clickable) with ``%matplotlib widget`` (ipympl).
        Errors of a button (e.g. Re-run without examples of both kinds) show under the figure.

        Returns
        -------
        ipywidgets.VBox
            The buttons, the figure and a status line.
        """
        try:
            import ipywidgets as w
        except ImportError:
            raise ImportError(
                "ExamplePicker.widget needs ipywidgets (and ipympl for clicks): pip install 'changedet[notebooks]'"
            ) from None
        status = w.HTML()
        mode = w.ToggleButtons(options=["change", "no change"], value=self.mode, description="left click:")
        buttons = {name: w.Button(description=name) for name in ("Re-run", "Undo", "Clear")}
        buttons["Re-run"].disabled = self.on_rerun is None

        def set_mode(change: Any) -> None:
            self.mode = change["new"]
            self._redraw_points()

        def run(action: Any) -> Any:
            def handler(_: Any) -> None:
                try:
                    action()
                    status.value = ""
                except Exception as exc:  # shown to the analyst, not lost in the kernel log
                    status.value = f"<span style='color:#b00'>{exc}</span>"
            return handler

        mode.observe(set_mode, names="value")
        buttons["Re-run"].on_click(run(self.rerun))
        buttons["Undo"].on_click(run(self.undo))
        buttons["Clear"].on_click(run(self.clear))
        self._view = _figure_widget(self.figure)  # live with ipympl; an image redrawn after each change otherwise
        return w.VBox([w.HBox([mode, *buttons.values()]), self._view, status])

    def _repr_png_(self) -> bytes:
        return self.figure._repr_png_()
