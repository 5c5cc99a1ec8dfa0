"""``detect_changes(before, after, ...) -> ChangeResult``: the stages in order.

read -> common grid (align) -> area of interest -> co-registration -> masks ->
change score -> threshold -> clean-up -> polygons with areas and from-to classes.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import math
import os
import platform
import time
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from . import __version__
from . import align as _align
from . import change as _change
from . import indices as _indices
from . import io as _io
from . import masks as _masks
from . import objects as _objects
from . import threshold as _threshold
from .areas import aoi_on_grid, parse_aoi
from .errors import EmptyDataError, InvalidParameterError
from .raster import GeoRaster, Grid, check_same_grid, describe_grid

__all__ = ["ChangeResult", "detect_changes", "parse_aoi", "OUTPUT_FILES"]  # parse_aoi lives in areas

#: The files ``ChangeResult.save`` writes (``changes.gpkg`` only where pyogrio is installed).
OUTPUT_FILES = (
    "change_mask.tif",
    "change_score.tif",
    "changes.geojson",
    "changes.gpkg",
    "overview.png",
    "summary.json",
)

NODATA_MASK = 255

#: Bands that classify pixels (Sentinel-2 SCL, Landsat QA_PIXEL): used for masks, not for change.
CATEGORICAL_BANDS = frozenset({"SCL", "QA_PIXEL"})


@dataclass(frozen=True, eq=False)
class ChangeResult:
    """What :func:`detect_changes` found.

    Attributes
    ----------
    before, after : GeoRaster
        The two dates on the analysis grid (after co-registration).
    mask : GeoRaster
        uint8, one band: 1 change, 0 no change, 255 nodata.
    score : GeoRaster
        float32 change score, NaN nodata.
    polygons : ChangePolygons
        One polygon per changed area with ``area_m2``, ``change_class``, ...
    threshold : float
        The score value above which a pixel is change.
    summary : dict
        Counts, areas, every parameter used, inputs' SHA-256, shift, versions, timings.
    """

    before: GeoRaster
    after: GeoRaster
    mask: GeoRaster
    score: GeoRaster
    polygons: _objects.ChangePolygons
    threshold: float
    summary: dict[str, Any]
    layers: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def grid(self) -> Grid:
        return self.mask.grid

    @property
    def n_changes(self) -> int:
        return len(self.polygons)

    def change_mask(self) -> np.ndarray:
        """(rows, cols) bool: True where change."""
        return self.mask.data[0] == 1

    def table(self) -> Any:
        """The polygons' attributes as a pandas DataFrame (a list of dicts without pandas)."""
        records = self.polygons.to_records()
        try:
            import pandas as pd
        except ImportError:  # pragma: no cover - pandas is in the notebooks extra
            return records
        return pd.DataFrame.from_records(records)

    def evaluate(self, truth: Any, **kwargs: Any) -> Any:
        """Accuracy of the mask against a truth mask (see :func:`changedet.evaluate.evaluate`)."""
        from .evaluate import evaluate

        if isinstance(truth, (str, os.PathLike)):
            truth = _io.read_raster(truth)
        return evaluate(self.mask, truth, **kwargs)

    def plot(self, **kwargs: Any) -> Any:
        """Overview figure: before | after | change outlines (a matplotlib Figure)."""
        from . import plot

        return plot.plot_overview(self.before, self.after, polygons=self.polygons, mask=self.mask, **kwargs)

    def plot_histogram(self, **kwargs: Any) -> Any:
        """Score histogram with the threshold marked (a matplotlib Figure)."""
        from . import plot

        valid = self.mask.data[0] != NODATA_MASK
        return plot.plot_histogram(self.score.data[0], threshold=self.threshold, valid=valid,
                                   method_label=self.summary["parameters"]["method"], **kwargs)

    def save(
        self, folder: str | os.PathLike[str], *, overwrite: bool = False, figures: bool = True, rasters: bool = True,
        rasters_ready: Callable[[], Any] | None = None,
    ) -> dict[str, Path]:
        """Write the output files of the command-line contract into ``folder``.

        Each file is written under a temporary name and renamed when complete;
        ``summary.json`` is written last, so its presence means the folder is whole.
        An existing finished result is only replaced with ``overwrite=True``.
        With ``rasters=False`` the rasters are in the folder already (the windowed path
        streams them); ``rasters_ready`` is then called, after the vectors and figures
        are written and before the summary, to wait for them.
        """
        out = Path(folder)
        check_output_folder(out, overwrite=overwrite)
        out.mkdir(parents=True, exist_ok=True)
        if rasters:  # the windowed path, which streams its rasters, cleans the folder when it starts
            remove_stale_temporaries(out)
        if overwrite and (out / "summary.json").exists():
            (out / "summary.json").unlink()  # the folder is not whole until the new summary lands
        t0 = time.perf_counter()
        written: dict[str, Path] = {}
        if rasters:
            written["change_mask.tif"] = _io.write_raster(self.mask, out / "change_mask.tif", dtype="uint8", nodata=NODATA_MASK)
            written["change_score.tif"] = _io.write_raster(self.score, out / "change_score.tif", dtype="float32")
        written["changes.geojson"] = _io.write_geojson(self.polygons.to_geojson(), out / "changes.geojson")
        if self.grid.crs is not None:
            gpkg = _io.write_gpkg(self.polygons.geometries, [_flat(p) for p in self.polygons.properties],
                                  out / "changes.gpkg", crs=self.grid.crs)
            if gpkg is not None:
                written["changes.gpkg"] = gpkg
        if figures:
            from . import plot

            fig = self.plot()
            written["overview.png"] = plot.save_figure(fig, out / "overview.png")
        if not rasters:  # written already, or being written (the windowed path streams them)
            if rasters_ready is not None:
                rasters_ready()
            for name in ("change_mask.tif", "change_score.tif"):
                if not (out / name).exists():
                    raise FileNotFoundError(f"{name} is missing from {str(out)!r}; save with rasters=True")
                written[name] = out / name
        summary = _jsonable(self.summary)
        summary["timings_s"] = dict(summary.get("timings_s", {}), save=round(time.perf_counter() - t0, 3))
        summary["outputs"] = sorted([*written, "summary.json"])
        written["summary.json"] = _io.write_json(summary, out / "summary.json")
        return written

    def __repr__(self) -> str:
        r = self.summary["results"]
        area = f"{r['changed_area_ha']:.2f} ha" if r.get("changed_area_ha") is not None else f"{r['changed_pixels']} px"
        return f"ChangeResult({r['n_changes']} changed areas, {area}, {describe_grid(self.grid)})"


def _flat(p: dict[str, Any]) -> dict[str, Any]:
    q = {k: v for k, v in p.items() if k != "bbox"}
    if p.get("bbox") is not None:
        q.update(dict(zip(("bbox_minx", "bbox_miny", "bbox_maxx", "bbox_maxy"), p["bbox"])))
    return q


# --------------------------------------------------------------------------- class layers
def _raw_class_layers(before: np.ndarray, after: np.ndarray, band_names: Sequence[str]) -> dict[str, np.ndarray]:
    """Uncentred index changes; ``_bright_b``/``_bright_a`` are the per-pixel mean brightness."""
    names = list(band_names)
    out: dict[str, np.ndarray] = {}
    with np.errstate(invalid="ignore", divide="ignore"):  # (no catch_warnings: runs in worker threads)
        available = _indices.available_indices(names)
        for idx in ("ndvi", "ndbi", "ndwi"):
            if idx in available:
                out[f"d_{idx}"] = (_indices.compute_index(after, names, idx) - _indices.compute_index(before, names, idx)).astype("float32")
        # mean over bands without np.nanmean: its empty-slice warning is not thread-safe to silence
        for key, img in (("_bright_b", before), ("_bright_a", after)):
            fin = np.isfinite(img)
            n = fin.sum(axis=0)
            out[key] = np.where(n > 0, np.where(fin, img, 0).sum(axis=0) / np.maximum(n, 1), np.nan).astype("float32")
        resolved = _indices.resolve_bands(names)
        if all(k in resolved for k in ("red", "green", "blue")):
            def exg(img: np.ndarray) -> np.ndarray:
                r, g, b = (img[resolved[k]] for k in ("red", "green", "blue"))
                return (2 * g - r - b) / (r + g + b)

            out["d_greenness"] = (exg(after) - exg(before)).astype("float32")
    return out


def class_layer_centres(before: np.ndarray, after: np.ndarray, band_names: Sequence[str], valid: np.ndarray) -> dict[str, float]:
    """Scene medians that :func:`class_layers` removes (computed once, on the whole scene or a sample).

    Examples
    --------
    >>> b = np.ones((4, 3, 3), "float32"); a = 2 * b
    >>> class_layer_centres(b, a, ["B02", "B03", "B04", "B08"], np.ones((3, 3), bool))["_bright_a"]
    2.0
    """
    return _medians(_raw_class_layers(before, after, band_names), valid)


def _medians(raw: dict[str, np.ndarray], valid: np.ndarray) -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in raw.items():
        vals = v[valid & np.isfinite(v)]
        out[k] = float(np.median(vals)) if vals.size else (1.0 if k.startswith("_bright") else 0.0)
    return out


def class_layers(
    before: np.ndarray,
    after: np.ndarray,
    band_names: Sequence[str],
    valid: np.ndarray,
    *,
    centres: dict[str, float] | None = None,
) -> dict[str, np.ndarray]:
    """Per-pixel index changes used to name the kind of change of each polygon.

    ``d_ndvi``, ``d_ndbi``, ``d_ndwi`` (absolute), ``d_brightness`` (relative) and
    ``d_greenness`` (RGB excess green), each centred on the scene median so that a
    gain, offset or seasonal shift common to the scene does not read as change.
    ``centres`` (from :func:`class_layer_centres`) fixes those medians, as the
    windowed path does; by default they come from ``valid`` pixels of these arrays.

    Examples
    --------
    >>> b = np.ones((4, 3, 3), "float32"); a = b.copy(); a[3, 0, 0] = 0.2
    >>> out = class_layers(b, a, ["B02", "B03", "B04", "B08"], np.ones((3, 3), bool))
    >>> sorted(out)
    ['d_brightness', 'd_greenness', 'd_ndvi', 'd_ndwi']
    >>> bool(out["d_ndvi"][0, 0] < 0)
    True
    """
    raw = _raw_class_layers(before, after, band_names)
    if centres is None:
        centres = _medians(raw, valid)
    out: dict[str, np.ndarray] = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        for k, v in raw.items():
            if not k.startswith("_"):
                out[k] = (v - np.float32(centres.get(k, 0.0))).astype("float32")
        sb, sa = centres.get("_bright_b", 1.0), centres.get("_bright_a", 1.0)
        if sb and sa and math.isfinite(sb) and math.isfinite(sa):
            out["d_brightness"] = ((raw["_bright_a"] / np.float32(sa)) / (raw["_bright_b"] / np.float32(sb)) - 1.0).astype("float32")
    return out


# --------------------------------------------------------------------------- the pipeline
def _versions() -> dict[str, str]:
    import rasterio
    import scipy
    import shapely
    import skimage

    return {
        "changedet": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "rasterio": rasterio.__version__,
        "gdal": rasterio.__gdal_version__,
        "scikit-image": skimage.__version__,
        "shapely": shapely.__version__,
    }


def _as_raster(value: Any, name: str) -> tuple[GeoRaster, dict[str, Any]]:
    if isinstance(value, GeoRaster):
        return value, {"path": None, "sha256": None}
    if isinstance(value, (str, os.PathLike)):
        raster = _io.read_raster(value)
        text = os.fspath(value)
        local = not text.startswith(("http://", "https://", "/vsi", "s3://"))
        return raster, {"path": text, "sha256": _io.sha256(value) if local else None}
    raise InvalidParameterError(
        f"{name} must be a path to a raster (file, band folder or URL) or a GeoRaster; got {type(value).__name__}"
    )


def check_options(
    method: str, threshold: str | float | None, min_area_m2: float | None, opening_px: int | None
) -> tuple[str | None, float | None, float | None]:
    """Validate the options both paths share; returns the parsed threshold (method, value, percentile)."""
    if method not in _change.METHODS:
        raise InvalidParameterError(f"method must be one of {sorted(_change.METHODS)}, got {method!r}")
    parsed = _parse_threshold(threshold)
    if min_area_m2 is not None and not (np.isfinite(min_area_m2) and min_area_m2 >= 0):
        raise InvalidParameterError(f"min_area_m2 must be a number >= 0, got {min_area_m2!r}")
    if opening_px is not None and (int(opening_px) != opening_px or opening_px < 0):
        raise InvalidParameterError(f"opening_px must be an integer >= 0, got {opening_px!r}")
    return parsed


def check_output_folder(out: str | os.PathLike[str], *, overwrite: bool) -> None:
    """Refuse a folder that already holds a finished result (its summary.json) unless ``overwrite``."""
    if (Path(out) / "summary.json").exists() and not overwrite:
        raise FileExistsError(
            f"{str(out)!r} already holds a finished result (summary.json); pass overwrite=True "
            "(--overwrite on the command line) or choose another folder"
        )


def remove_stale_temporaries(out: str | os.PathLike[str]) -> list[Path]:
    """Delete what a killed run left in an output folder: the temporary files of its
    outputs (``.change_mask.*.partial.tif`` ...) and the compressed tiles of its rasters
    (``.change_score.*.tiles``, as large as the raster).  Only names this package makes
    are touched; returns the paths removed.  Called when a run starts writing the folder
    (two runs writing one folder at once are not supported anyway)."""
    from . import _cog

    folder = Path(out)
    if not folder.is_dir():
        return []
    removed = []
    for name in OUTPUT_FILES:
        stem, suffix = os.path.splitext(name)
        for pattern in (f".{stem}.*{_io.PARTIAL}{suffix}", f".{stem}.*{_cog.SCRATCH_SUFFIX}"):
            for p in folder.glob(pattern):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
                    removed.append(p)
    return removed


def cleanup_parameters(
    grid: Grid, px_size: float, pixel_size_m: float | None, min_area_m2: float | None,
    opening_px: int | None, fill_holes_m2: float | None,
) -> tuple[float, int, float]:
    """(minimum mapping unit, opening radius, largest hole filled) with their defaults applied."""
    mmu_m2 = _default_min_area_m2(grid, pixel_size_m) if min_area_m2 is None else float(min_area_m2)
    open_px = (1 if px_size < 5 else 0) if opening_px is None else int(opening_px)
    holes_m2 = mmu_m2 if fill_holes_m2 is None else float(fill_holes_m2)
    return mmu_m2, open_px, holes_m2


def _default_min_area_m2(grid: Grid, pixel_size_m: float | None) -> float:
    px = pixel_size_m if (grid.crs is None and pixel_size_m) else grid.pixel_size_m
    if grid.crs is None and not pixel_size_m:
        return 4.0  # pixels
    return float(max(4 * px * px, 50.0))


def detect_changes(
    before: GeoRaster | str | os.PathLike[str],
    after: GeoRaster | str | os.PathLike[str],
    *,
    method: str = "auto",
    threshold: str | float | None = None,
    min_area_m2: float | None = None,
    aoi: Any = None,
    align: bool = True,
    coregister: bool = True,
    opening_px: int | None = None,
    fill_holes_m2: float | None = None,
    pixel_size_m: float | None = None,
    bands: Sequence[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    tiled: bool | None = None,
    overwrite: bool = False,
) -> ChangeResult:
    """Find what changed between two images of a site.

    Parameters
    ----------
    before, after : GeoRaster or path
        The two dates: rasters GDAL reads, band folders, or :class:`GeoRaster`.
    method : str
        A change method of :data:`changedet.change.METHODS` (default ``"auto"``).
    threshold : str or float, optional
        A threshold method of :mod:`changedet.threshold` (``"otsu"``, ``"kittler"``, ...,
        ``"p99"`` for the 99th percentile) or a fixed score value; default the method's own.
    min_area_m2 : float, optional
        Minimum mapping unit; default the larger of 4 pixels and 50 m² (4 pixels for
        images without georeferencing and without ``pixel_size_m``).
    aoi : str, dict, sequence or geometry, optional
        Area of interest in lon/lat: ``"minx,miny,maxx,maxy"``, GeoJSON (dict or file).
    align : bool
        Reproject the after image onto the before image's grid when they differ
        (default True); False raises :class:`~changedet.errors.GridMismatchError` instead.
    coregister : bool
        Estimate and remove the residual sub-pixel shift (default True).
    opening_px : int, optional
        Radius of the morphological opening; default 1 for pixels finer than 5 m, else 0.
    fill_holes_m2 : float, optional
        Fill unchanged holes up to this area inside changed areas; default the minimum mapping unit.
    pixel_size_m : float, optional
        Pixel size for images without georeferencing (areas are in pixels otherwise).
    bands : sequence of str, optional
        Use only these bands.
    out : path, optional
        Also write the output files into this folder (as :meth:`ChangeResult.save`).
    tiled : bool, optional
        Run window by window in bounded memory (:mod:`changedet.tiling`; needs file
        inputs and ``out``).  Default: when the analysis grid has more than
        :data:`changedet.tiling.TILED_MIN_PIXELS` pixels.  The windowed result's rasters
        are previews; the full-resolution mask and score are the files in ``out``.
    overwrite : bool
        Replace a finished result already in ``out``.

    Returns
    -------
    ChangeResult

    Examples
    --------
    >>> from affine import Affine
    >>> rng = np.random.default_rng(0)
    >>> img = rng.uniform(500, 600, size=(4, 60, 60)).astype("float32")
    >>> new = img.copy(); new[:, 20:30, 20:35] += 2000   # a new bright building
    >>> t = Affine(10, 0, 500000, 0, -10, 6190000)
    >>> names = ("B02", "B03", "B04", "B08")
    >>> result = detect_changes(GeoRaster(img, t, "EPSG:32639", names), GeoRaster(new, t, "EPSG:32639", names))
    >>> result.n_changes, round(result.polygons.total_area_m2)
    (1, 15000)
    """
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    # ---- validate options before any heavy work
    thr_method, thr_value, thr_pct = check_options(method, threshold, min_area_m2, opening_px)
    if pixel_size_m is not None and not (np.isfinite(pixel_size_m) and pixel_size_m > 0):
        raise InvalidParameterError(f"pixel_size_m must be a positive number of metres, got {pixel_size_m!r}")
    aoi_geom = parse_aoi(aoi)
    if tiled is None and all(isinstance(v, (str, os.PathLike)) for v in (before, after)):
        from .tiling import needs_windows

        tiled = needs_windows(before, after)
    if tiled:
        if not all(isinstance(v, (str, os.PathLike)) for v in (before, after)):
            raise InvalidParameterError("tiled=True reads the images window by window: pass file paths, not GeoRasters")
        if out is None:
            raise InvalidParameterError(
                "this scene takes the windowed path (bounded memory), which writes its full-resolution rasters to a "
                "folder: pass out='folder' (or tiled=False to hold everything in memory)"
            )
        if not align:
            raise InvalidParameterError("the windowed path always aligns the after image onto the before grid; drop align=False")
        if pixel_size_m is not None:
            raise InvalidParameterError("pixel_size_m applies to images without georeferencing, which the windowed path does not take")
        from .tiling import detect_changes_tiled

        return detect_changes_tiled(before, after, out, method=method, threshold=threshold, min_area_m2=min_area_m2,
                                    aoi=aoi_geom, coregister=coregister, opening_px=opening_px,
                                    fill_holes_m2=fill_holes_m2, bands=bands, overwrite=overwrite)
    if out is not None:
        check_output_folder(out, overwrite=overwrite)

    # ---- read
    b_raster, b_info = _as_raster(before, "before")
    a_raster, a_info = _as_raster(after, "after")
    if bands is not None:
        b_raster, a_raster = b_raster.select(list(bands)), a_raster.select(list(bands))
    timings["read"] = time.perf_counter() - t0

    # ---- common grid
    t = time.perf_counter()
    if not align:
        check_same_grid(b_raster, a_raster)
    pair = _align.align_pair(b_raster, a_raster)
    grid = pair.grid
    b, a = pair.before, pair.after
    inside_aoi = None
    if aoi_geom is not None:
        grid, inside_aoi = aoi_on_grid(aoi_geom, grid)
        b, a = _align.align_to(b, grid), _align.align_to(a, grid)
    timings["align"] = time.perf_counter() - t

    # ---- classification bands (SCL, QA_PIXEL) only feed the masks, never the change score
    aux_names = [n for n in b.band_names if n.upper() in CATEGORICAL_BANDS]
    spectral_names = [n for n in b.band_names if n not in aux_names]
    if not spectral_names:
        raise InvalidParameterError(
            f"the images hold only classification bands {aux_names}; pass images with spectral bands"
        )
    b_aux, a_aux = (b.select(aux_names), a.select(aux_names)) if aux_names else (None, None)
    if aux_names:
        b, a = b.select(spectral_names), a.select(spectral_names)

    # ---- co-registration
    t = time.perf_counter()
    shift = _align.Shift(0.0, 0.0, 0.0, 0)
    if coregister:
        a, shift = _align.coregister(b, a)
        if a_aux is not None and shift.n_blocks and (shift.rows or shift.cols):
            a_aux = a_aux.with_data(_align.apply_shift(a_aux.data, shift, order=0))
    timings["coregister"] = time.perf_counter() - t

    # ---- masks
    valid = b.valid_mask() & a.valid_mask()
    if inside_aoi is not None:
        valid &= inside_aoi
    cloud_info: dict[str, Any] = {}
    full_b = b if b_aux is None else b.with_data(np.concatenate([b.data, b_aux.data]), band_names=(*b.band_names, *aux_names))
    full_a = a if a_aux is None else a.with_data(np.concatenate([a.data, a_aux.data]), band_names=(*a.band_names, *aux_names))
    excl = _masks.exclusion_mask(full_b.data, full_a.data, band_names=full_b.band_names)
    excl_in = excl & valid
    cloud_info = {"excluded_pixels": int(excl_in.sum()), "classification_bands": aux_names}
    valid &= ~excl
    if not valid.any():
        raise EmptyDataError(
            f"no pixel is valid in both dates on the analysis grid ({describe_grid(grid)}): "
            "nodata, clouds or the area of interest leave nothing to compare"
        )
    px_size = pixel_size_m if (grid.crs is None and pixel_size_m) else grid.pixel_size_m

    # ---- change score
    t = time.perf_counter()
    cs = _change.change_score(b.data, a.data, method=method, band_names=b.band_names,
                              pixel_size_m=None if (grid.crs is None and not pixel_size_m) else px_size, valid=valid)
    score = np.where(valid, cs.score, np.nan).astype("float32")
    timings["score"] = time.perf_counter() - t

    # ---- threshold and clean-up
    t = time.perf_counter()
    used_thr_method = thr_method or cs.threshold_method
    thr = _threshold.compute_threshold(score, method=used_thr_method, value=thr_value, percentile=thr_pct, valid=valid)
    raw = _threshold.apply_threshold(score, thr, valid=valid)
    mmu_m2, open_px, holes_m2 = cleanup_parameters(grid, px_size, pixel_size_m, min_area_m2, opening_px, fill_holes_m2)
    px_area = 1.0 if (grid.crs is None and not pixel_size_m) else px_size * px_size
    opened = _objects.clean_mask(raw, opening_px=open_px, valid=valid)
    timings["threshold_clean"] = time.perf_counter() - t

    # ---- polygons: minimum mapping unit and hole filling on whole objects, then the mask from them
    t = time.perf_counter()
    # the method's own layers (components, raw index changes) stay on the result; the
    # from-to classes read the scene-centred index changes, as the windowed path does
    layers = dict(cs.layers)
    class_input = class_layers(b.data, a.data, b.band_names, valid)
    layers.update(class_input)
    polygons = _objects.vectorize(
        GeoRaster(opened[np.newaxis].astype("uint8"), grid.transform, grid.crs, ("change",)),
        score=score, layers=class_input,
        min_area_m2=mmu_m2, fill_holes_m2=holes_m2, pixel_size_m=pixel_size_m,
    )
    kept = _objects.polygons_to_mask(polygons, grid) & valid
    mask_arr = np.where(valid, kept.astype("uint8"), NODATA_MASK).astype("uint8")
    mask = GeoRaster(mask_arr[np.newaxis], grid.transform, grid.crs, ("change",))
    timings["vectorize"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0

    in_px = grid.crs is None and not pixel_size_m
    summary = build_summary(
        grid=grid, polygons=polygons, changed=int((mask_arr == 1).sum()), n_valid=int(valid.sum()),
        n_pixels=int(valid.size), in_px=in_px,
        inputs={
            "before": {**b_info, "bands": list(b_raster.band_names), "grid": describe_grid(b_raster.grid)},
            "after": {**a_info, "bands": list(a_raster.band_names), "grid": describe_grid(a_raster.grid)},
        },
        parameters={
            "method": method,
            "threshold": threshold if not isinstance(threshold, np.generic) else float(threshold),
            "threshold_method": used_thr_method,
            "threshold_value": _finite_or_none(thr),
            "min_area_m2": mmu_m2 if not in_px else None,
            "min_area_px": mmu_m2 if in_px else int(math.ceil(mmu_m2 / px_area - 1e-9)),
            "opening_px": open_px,
            "fill_holes_m2": holes_m2 if not in_px else None,
            "aoi": list(aoi_geom.bounds) if aoi_geom is not None else None,
            "align": align,
            "coregister": coregister,
            "pixel_size_m": pixel_size_m,
            "bands": list(b.band_names),
        },
        shift=shift if coregister else None, dropped=list(pair.dropped_bands), masks=cloud_info,
        method_details=cs.details, timings=timings, pixel_size_m=None if in_px else px_size,
    )
    summary["tiling"] = {"path": "in-memory"}
    result = ChangeResult(b, a, mask, GeoRaster(score[np.newaxis], grid.transform, grid.crs, ("score",)),
                          polygons, float(thr), summary, layers)
    if out is not None:
        result.save(out, overwrite=overwrite)
    return result


def input_hashes(*paths: Any) -> list[str | None]:
    """SHA-256 of each local input (file or folder); None for URLs."""
    out: list[str | None] = []
    for value in paths:
        text = os.fspath(value)
        local = not text.startswith(("http://", "https://", "/vsi", "s3://"))
        out.append(_io.sha256(value) if local else None)
    return out


def input_info(
    before: Any, after: Any, names_b: Sequence[str], names_a: Sequence[str], grid_b: Grid, grid_a: Grid,
    *, hashes: Sequence[str | None] | None = None,
) -> dict[str, Any]:
    """The ``inputs`` block of a summary: paths, SHA-256 of local files, bands, grids."""
    hashes = list(hashes) if hashes is not None else input_hashes(before, after)
    out = {}
    for (key, value, names, g), h in zip((("before", before, names_b, grid_b), ("after", after, names_a, grid_a)), hashes):
        out[key] = {"path": os.fspath(value), "sha256": h, "bands": list(names), "grid": describe_grid(g)}
    return out


def changed_results(changed: int, n_valid: int) -> dict[str, Any]:
    """The summary's figures that come from the number of changed pixels.

    Examples
    --------
    >>> changed_results(25, 1000)
    {'changed_pixels': 25, 'changed_fraction': 0.025}
    """
    return {"changed_pixels": int(changed), "changed_fraction": round(changed / n_valid, 6) if n_valid else 0.0}


def build_summary(
    *,
    grid: Grid,
    polygons: _objects.ChangePolygons,
    changed: int,
    n_valid: int,
    n_pixels: int,
    in_px: bool,
    inputs: dict[str, Any],
    parameters: dict[str, Any],
    shift: _align.Shift | None,
    dropped: Sequence[str],
    masks: dict[str, Any],
    method_details: dict[str, Any],
    timings: dict[str, float],
    pixel_size_m: float | None = None,
) -> dict[str, Any]:
    """The ``summary.json`` of a run (JSON-safe): results, parameters, inputs, versions, timings."""
    by_class: dict[str, dict[str, Any]] = {}
    for p in polygons.properties:
        c = by_class.setdefault(p["change_class"], {"count": 0, "area_m2": 0.0 if not in_px else None, "area_px": 0})
        c["count"] += 1
        c["area_px"] += p["area_px"]
        if not in_px:
            c["area_m2"] = round(c["area_m2"] + p["area_m2"], 2)
    total_m2 = polygons.total_area_m2
    px = pixel_size_m if pixel_size_m is not None else (grid.pixel_size_m if not in_px else None)
    summary: dict[str, Any] = {
        "changedet_version": __version__,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "inputs": inputs,
        "parameters": parameters,
        "grid": {
            "crs": grid.crs.to_string() if grid.crs is not None else None,
            "transform": list(grid.transform)[:6],
            "shape": list(grid.shape),
            "pixel_size_m": round(px, 4) if px is not None else None,
            "bands_dropped": sorted(set(dropped)),
        },
        "coregistration": shift.as_dict() if shift is not None else None,
        "results": {
            "n_changes": len(polygons),
            **changed_results(changed, n_valid),
            "valid_pixels": n_valid,
            "nodata_pixels": int(n_pixels - n_valid),
            "changed_area_m2": round(total_m2, 2) if total_m2 is not None else None,
            "changed_area_ha": round(total_m2 / 10_000, 4) if total_m2 is not None else None,
            "changed_area_acres": round(total_m2 / 4046.8564224, 3) if total_m2 is not None else None,
            "by_class": by_class,
        },
        "masks": masks,
        "method_details": method_details,
        "versions": _versions(),
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
    }
    return _jsonable(summary)


def _finite_or_none(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def _jsonable(obj: Any) -> Any:
    """A JSON-safe copy: numpy scalars to Python, NaN/inf to None, unknown objects to str."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    return str(obj)


def _parse_threshold(threshold: str | float | None) -> tuple[str | None, float | None, float | None]:
    """(method, value, percentile) from the user's threshold option."""
    allowed = list(typing.get_args(_threshold.ThresholdMethod))
    if threshold is None:
        return None, None, None
    if isinstance(threshold, (int, float, np.number)) and not isinstance(threshold, bool):
        if not math.isfinite(float(threshold)):
            raise InvalidParameterError(f"threshold must be finite, got {threshold!r}")
        return "fixed", float(threshold), None
    if isinstance(threshold, str):
        text = threshold.strip().lower()
        try:
            return "fixed", float(text), None
        except ValueError:
            pass
        if text.startswith("p") and text[1:].replace(".", "", 1).isdigit():
            return "percentile", None, float(text[1:])
        if text.startswith("chi2:"):
            return "chi2", float(text.split(":", 1)[1]), None
        if text in allowed and text not in ("fixed", "percentile"):
            return text, None, None
        raise InvalidParameterError(
            f"threshold must be a number, 'pNN' (percentile, e.g. p99) or one of "
            f"{[m for m in allowed if m not in ('fixed', 'percentile')]}; got {threshold!r}"
        )
    raise InvalidParameterError(f"threshold must be a number or a method name, got {type(threshold).__name__}")
