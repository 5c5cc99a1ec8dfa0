"""The pipeline over windows of a large scene: bounded memory, all cores.

A first pass gathers what the methods need globally from a sample of the scene
(the whole scene when it is small, else a lattice of blocks): the co-registration
shift, the method's global statistics (:func:`fit_method`), the threshold and the
scene medians of the index changes.  A second pass streams windows of the analysis
grid, each read with a halo for neighbourhood operations, on all cores: shift,
masks, score, threshold, opening; scores and masks go straight into tiled
GeoTIFFs and each window's changed areas into polygon parts.  Parts cut by window
edges are merged (:func:`changedet.objects.assemble_polygons`) so polygons come out
whole, then the final mask is burnt from the kept polygons window by window and
both rasters are published as Cloud-Optimized GeoTIFFs with overviews.

Memory holds a few windows, the sample, a bit-packed validity mask and the
polygons; it does not grow with the scene beyond those.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
from affine import Affine
from rasterio import features
from rasterio.windows import Window

from . import _kernels
from . import align as _align
from . import change as _change
from . import io as _io
from . import masks as _masks
from . import objects as _objects
from . import threshold as _threshold
from .areas import aoi_in_grid_crs, aoi_on_grid, parse_aoi
from .errors import EmptyDataError, InvalidParameterError
from .raster import GeoRaster, Grid, describe_grid, window_transform

__all__ = ["WindowPlan", "plan_windows", "fit_method", "FittedMethod", "detect_changes_tiled", "needs_windows",
           "TILED_MIN_PIXELS"]

#: Scenes with more analysis-grid pixels than this take the windowed path by default.
TILED_MIN_PIXELS = 4096 * 4096

def needs_windows(before: str | os.PathLike[str], after: str | os.PathLike[str]) -> bool:
    """Whether two raster files are large enough for the windowed path (read from metadata only)."""
    g_b, _ = _io.raster_grid(before)
    g_a, _ = _io.raster_grid(after)
    return g_b.height * g_b.width > TILED_MIN_PIXELS and g_a.height * g_a.width > TILED_MIN_PIXELS // 4


#: GDAL's block cache during a windowed run (its default, 5 % of RAM, would dominate memory).
GDAL_CACHE_MB = 64

#: Strips of the second pass read while the first pass fits the sample.
PREFETCH_STRIPS = 2


@dataclass(frozen=True)
class WindowPlan:
    """One window: ``core`` (written out) inside ``outer`` (core plus halo, clipped to the grid)."""

    core: Window
    outer: Window

    @property
    def inner(self) -> tuple[slice, slice]:
        """Slices of ``outer``-shaped arrays that give the core."""
        r = int(self.core.row_off - self.outer.row_off)
        c = int(self.core.col_off - self.outer.col_off)
        return slice(r, r + int(self.core.height)), slice(c, c + int(self.core.width))


def plan_windows(shape: tuple[int, int], *, size: int = 1024, halo: int = 16) -> list[WindowPlan]:
    """Windows of ``size`` x ``size`` covering ``shape``, each with a ``halo``.

    Examples
    --------
    >>> plans = plan_windows((2500, 1000), size=1024, halo=8)
    >>> len(plans), plans[1].core.row_off, plans[1].outer.row_off, plans[1].outer.height
    (3, 1024, 1016, 1040)
    """
    rows, cols = shape
    if size < 16:
        raise InvalidParameterError(f"window size must be >= 16 pixels, got {size}")
    if halo < 0:
        raise InvalidParameterError(f"halo must be >= 0, got {halo}")
    plans = []
    for r0 in range(0, rows, size):
        for c0 in range(0, cols, size):
            h, w = min(size, rows - r0), min(size, cols - c0)
            orow, ocol = max(0, r0 - halo), max(0, c0 - halo)
            oh, ow = min(rows, r0 + h + halo) - orow, min(cols, c0 + w + halo) - ocol
            plans.append(WindowPlan(Window(c0, r0, w, h), Window(ocol, orow, ow, oh)))
    return plans


# --------------------------------------------------------------------------- method fitting
class FittedMethod:
    """A change method with its global statistics fixed, applicable window by window.

    ``exact`` is True when applying it window by window gives the same score as on
    the whole scene (given a large enough ``halo_px``).
    """

    def __init__(self, method: str, band_names: Sequence[str], pixel_size_m: float | None,
                 apply: Callable[[np.ndarray, np.ndarray, np.ndarray], Any], *, halo_px: int, exact: bool,
                 threshold_method: str | None = None, sample_result: Any = None):
        self.method = method
        self.band_names = tuple(band_names)
        self.pixel_size_m = pixel_size_m
        self._apply = apply
        self.halo_px = int(halo_px)
        self.exact = bool(exact)
        self.threshold_method = threshold_method
        #: the score on the sample it was fitted on, when fitting computed it
        self.sample_result = sample_result

    def apply(self, before: np.ndarray, after: np.ndarray, valid: np.ndarray) -> Any:
        """The method's :class:`~changedet.change.ChangeScore` on one window."""
        return self._apply(before, after, valid)


def fit_method(
    method: str,
    before: np.ndarray,
    after: np.ndarray,
    *,
    band_names: Sequence[str],
    pixel_size_m: float | None,
    valid: np.ndarray,
) -> FittedMethod:
    """Fix a method's global statistics on a sample of the scene.

    Methods of :data:`changedet.change.WINDOWABLE` record their scene-wide statistics
    on the sample and replay them on every window (exact); the others (``imad``,
    ``pca-kmeans``) are applied to each window as a whole, their statistics then
    coming from the window, which the summary reports.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> b = rng.normal(size=(4, 32, 32)); a = b.copy(); a[:, 5:9, 5:9] += 5
    >>> f = fit_method("cva", b, a, band_names=["B02", "B03", "B04", "B08"], pixel_size_m=10,
    ...                valid=np.ones((32, 32), bool))
    >>> f.apply(b, a, np.ones((32, 32), bool)).score.shape
    (32, 32)
    """
    fitted = _change.fit_method(method, before, after, band_names=band_names, pixel_size_m=pixel_size_m, valid=valid)
    if fitted is not None:
        return FittedMethod(method, band_names, pixel_size_m, fitted.apply, halo_px=fitted.halo_px, exact=True,
                            threshold_method=fitted.threshold_method, sample_result=fitted.sample_result)

    def whole(b: np.ndarray, a: np.ndarray, v: np.ndarray) -> Any:
        return _change.change_score(b, a, method=method, band_names=band_names, pixel_size_m=pixel_size_m, valid=v)

    return FittedMethod(method, band_names, pixel_size_m, whole, halo_px=32, exact=False)


# --------------------------------------------------------------------------- strips
class _Strips:
    """Full-width strips of the analysis grid, each read once per date.

    A window with a halo slices the strips that cover it, so blocks of the input are
    decompressed once even though neighbouring windows overlap; only the strip of
    the current window row, the next one and the previous one's last rows are held.
    """

    def __init__(self, readers: Sequence[Any], grid: Grid, strip_rows: int, halo: int):
        self.readers = list(readers)
        self.grid = grid
        self.rows = int(strip_rows)
        self.halo = int(halo)
        self.cache: dict[int, list[np.ndarray]] = {}
        self.tails: dict[int, list[np.ndarray]] = {}
        self.n = -(-grid.height // self.rows)

    def ensure(self, j: int) -> None:
        if 0 <= j < self.n and j not in self.cache:
            r0 = j * self.rows
            win = Window(0, r0, self.grid.width, min(self.rows, self.grid.height - r0))
            self.cache[j] = [r.read(win, raw=True) for r in self.readers]

    def retire(self, j: int) -> None:
        """Window row ``j`` is done: keep only the last ``halo`` rows of its strip."""
        if j in self.cache:
            self.tails[j] = [a[:, a.shape[1] - min(self.halo, a.shape[1]) :].copy() for a in self.cache.pop(j)]
        self.tails.pop(j - 1, None)

    def outer(self, window: Window) -> list[tuple[np.ndarray, np.ndarray]]:
        """The arrays of ``window`` (rows may reach into the strips above and below), each
        with where all its bands are finite."""
        r0, r1 = int(window.row_off), int(window.row_off + window.height)
        c0, c1 = int(window.col_off), int(window.col_off + window.width)
        pieces: list[list[tuple[np.ndarray, int, int]]] = [[] for _ in self.readers]
        row = r0
        while row < r1:
            j = row // self.rows
            s0 = j * self.rows
            s1 = min(s0 + self.rows, self.grid.height)
            take = min(r1, s1)
            if j in self.cache:
                arrs, base = self.cache[j], s0
            else:
                arrs = self.tails[j]
                base = s1 - arrs[0].shape[1]
                if row < base:
                    raise RuntimeError("strip tail too short for the halo")  # pragma: no cover - halo bounded
            for i, a in enumerate(arrs):
                pieces[i].append((a, row - base, take - base))
            row = take
        return [r.to_float_rows(p, c0, c1) for r, p in zip(self.readers, pieces)]


# --------------------------------------------------------------------------- helpers
def _majority_helps(samples: Sequence[tuple[Any, np.ndarray, np.ndarray]], ns: int, shift: _align.Shift) -> bool:
    """The shift brings the dates closer in most sample blocks."""
    votes = [_align.shift_helps(b_s[:ns], a_s[:ns], shift) for _, b_s, a_s in samples]
    return sum(votes) > len(votes) / 2


@contextlib.contextmanager
def _quiet_threads() -> Iterator[None]:
    """Silence, for the threaded section, the warnings rasterio raises and hides itself.

    rasterio wraps arrays in in-memory datasets and hides their NotGeoreferencedWarning
    with ``warnings.catch_warnings``, which is not thread-safe: with several threads one
    thread's restore can expose another's warning.  Entered in the main thread before
    any worker starts, this filter is in every state those blocks save and restore.
    """
    from rasterio.errors import NotGeoreferencedWarning

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=NotGeoreferencedWarning)
        warnings.filterwarnings("ignore", message="Use `@` matmul", category=PendingDeprecationWarning)
        yield



def _pack(mask: np.ndarray) -> tuple[bytes, tuple[int, int]]:
    return np.packbits(mask, axis=None).tobytes(), mask.shape


def _unpack(packed: tuple[bytes, tuple[int, int]]) -> np.ndarray:
    data, shape = packed
    return np.unpackbits(np.frombuffer(data, dtype=np.uint8), count=shape[0] * shape[1]).reshape(shape).astype(bool)


def _sample_windows(grid: Grid, budget_px: int, block: int = 256) -> list[Window]:
    """The whole grid when it fits the budget, else a regular lattice of blocks."""
    rows, cols = grid.shape
    if rows * cols <= budget_px:
        return [Window(0, 0, cols, rows)]
    n = max(4, budget_px // (block * block))
    per_side = max(2, int(math.sqrt(n)))
    out = []
    for i in range(per_side):
        for j in range(per_side):
            # on multiples of the block size: inside one tile of tiled inputs (tiles of 256,
            # 512, ...), so each sample block decompresses one tile rather than up to four
            r0 = int(round((rows - block) * (i + 0.5) / per_side)) // block * block
            c0 = int(round((cols - block) * (j + 0.5) / per_side)) // block * block
            out.append(Window(max(0, c0), max(0, r0), min(block, cols), min(block, rows)))
    return out


def _aoi_inside(aoi_geom: Any, grid: Grid, window: Window) -> np.ndarray | None:
    if aoi_geom is None:
        return None
    return features.geometry_mask([aoi_geom], out_shape=(int(window.height), int(window.width)),
                                  transform=window_transform(window, grid.transform), invert=True)


class _Progress:
    def __init__(self, total: int, enabled: bool, desc: str):
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="window", leave=False)
        self.lock = threading.Lock()

    def update(self) -> None:
        if self.bar is not None:
            with self.lock:
                self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# --------------------------------------------------------------------------- the engine
def detect_changes_tiled(
    before: str | os.PathLike[str],
    after: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    method: str = "auto",
    threshold: str | float | None = None,
    min_area_m2: float | None = None,
    aoi: Any = None,
    coregister: bool = True,
    opening_px: int | None = None,
    fill_holes_m2: float | None = None,
    bands: Sequence[str] | None = None,
    window_px: int = 512,
    workers: int | None = None,
    sample_budget_px: int = 1_048_576,
    overwrite: bool = False,
    progress: bool = True,
) -> Any:
    """Detect changes between two raster files window by window and write the outputs.

    Same options and outputs as :func:`changedet.pipeline.detect_changes` plus
    ``ChangeResult.save``; the returned :class:`~changedet.pipeline.ChangeResult`
    carries the full polygons and summary, and *previews* of the rasters (decimated
    to at most 1000 pixels a side, see ``summary["tiling"]["preview_stride"]``):
    the full-resolution mask and score are the files in ``out``.

    Parameters
    ----------
    window_px : int
        Window edge in pixels (default 512); the scene is read in full-width strips of
        this many rows, each once.
    workers : int, optional
        Threads working on windows (default: all cores).
    sample_budget_px : int
        Scenes up to this many pixels are sampled whole (then the result is identical
        to the in-memory path); larger scenes are sampled on a lattice of 256 x 256 blocks
        of about this many pixels in all.

    Examples
    --------
    >>> import tempfile, rasterio
    >>> d = tempfile.mkdtemp()
    >>> rng = np.random.default_rng(0)
    >>> img = rng.uniform(500, 600, size=(4, 300, 300)).astype("uint16")
    >>> new = img.copy(); new[:, 100:110, 40:70] += 2000
    >>> for name, arr in (("b.tif", img), ("a.tif", new)):
    ...     with rasterio.open(f"{d}/{name}", "w", driver="GTiff", width=300, height=300, count=4, dtype="uint16",
    ...                        crs="EPSG:32639", transform=Affine(10, 0, 500000, 0, -10, 6190000)) as dst:
    ...         dst.write(arr)
    >>> r = detect_changes_tiled(f"{d}/b.tif", f"{d}/a.tif", f"{d}/out", method="cva", threshold=10,
    ...                          window_px=128, progress=False)
    >>> r.n_changes, round(r.polygons.total_area_m2)
    (1, 30000)
    """
    # For the whole run: no cyclic garbage collection (the run makes few reference cycles,
    # the figure's, collected once it returns; with thousands of polygon parts alive each
    # full collection rescans them: measured about 1.5 s of a 10980 x 10980 run), and
    # BLAS on one thread (its few small products gain nothing from threads, whose
    # spin-waiting took about 4 % of the CPU the windows need).
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        with _one_blas_thread():
            return _detect_changes_tiled(
                before, after, out, method=method, threshold=threshold, min_area_m2=min_area_m2, aoi=aoi,
                coregister=coregister, opening_px=opening_px, fill_holes_m2=fill_holes_m2, bands=bands,
                window_px=window_px, workers=workers, sample_budget_px=sample_budget_px, overwrite=overwrite,
                progress=progress,
            )
    finally:
        if gc_was_enabled:
            gc.enable()


@contextlib.contextmanager
def _one_blas_thread() -> Iterator[None]:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _detect_changes_tiled(
    before: str | os.PathLike[str],
    after: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    method: str,
    threshold: str | float | None,
    min_area_m2: float | None,
    aoi: Any,
    coregister: bool,
    opening_px: int | None,
    fill_holes_m2: float | None,
    bands: Sequence[str] | None,
    window_px: int,
    workers: int | None,
    sample_budget_px: int,
    overwrite: bool,
    progress: bool,
) -> Any:
    from . import pipeline as _pipeline

    t_start = time.perf_counter()
    cpu_start = time.process_time()  # all threads, as every figure named *_cpu
    timings: dict[str, float] = {}
    thr_method, thr_value, thr_pct = _pipeline.check_options(method, threshold, min_area_m2, opening_px)
    if workers is not None and (int(workers) != workers or workers < 1):
        raise InvalidParameterError(f"workers must be an integer >= 1, got {workers!r}")
    out_dir = Path(out)
    _pipeline.check_output_folder(out_dir, overwrite=overwrite)
    aoi_lonlat = parse_aoi(aoi)
    # the inputs' SHA-256 for the summary, computed beside the work (hashlib releases the GIL)
    hasher = ThreadPoolExecutor(max_workers=1)
    hashes = hasher.submit(_pipeline.input_hashes, before, after)
    # the figure and GeoPackage libraries load while the sample is read and fitted
    threading.Thread(target=_preload_writers, name="changedet-preload", daemon=True).start()

    # ---- grids and bands (metadata only)
    t = time.perf_counter()
    grid_b, names_b = _io.raster_grid(before)
    grid_a, names_a = _io.raster_grid(after)
    wanted = list(bands) if bands is not None else [n for n in names_b if n in names_a]
    if not wanted:
        from .errors import BandMismatchError

        raise BandMismatchError(
            f"the two dates share no band: before has {list(names_b)}, after has {list(names_a)}; "
            "pass images with the same bands (names from band descriptions or file names)"
        )
    if grid_b.crs is None or grid_a.crs is None:
        raise InvalidParameterError(
            "the windowed path needs georeferenced images; for images without georeferencing pass tiled=False "
            "(--in-memory)"
        )
    grid = _align.overlap_grid(grid_b, grid_a)
    aoi_geom = None
    if aoi_lonlat is not None:
        grid, _ = aoi_on_grid(aoi_lonlat, grid)
        aoi_geom = aoi_in_grid_crs(aoi_lonlat, grid)
    aux = [n for n in wanted if n.upper() in _pipeline.CATEGORICAL_BANDS]
    spectral = [n for n in wanted if n not in aux]
    if not spectral:
        raise InvalidParameterError(f"the images hold only classification bands {aux}; pass images with spectral bands")
    order = spectral + aux
    env = _io.gdal_env(cache_mb=GDAL_CACHE_MB)
    env.__enter__()
    ahead = ThreadPoolExecutor(max_workers=1)  # reads strips ahead of the windows
    pending: Any = None
    rb = _io.WindowedReader(before, grid=grid, bands=order)
    ra = _io.WindowedReader(after, grid=grid, bands=order)
    ns = len(spectral)
    px_size = grid.pixel_size_m
    timings["open"] = time.perf_counter() - t

    try:
        # ---- first pass: the sample
        t = time.perf_counter()
        # the first strips of the second pass are read meanwhile, on the core the fit leaves idle
        strips = _Strips([rb, ra], grid, window_px, 0)
        pending = ahead.submit(lambda: [strips.ensure(j) for j in range(PREFETCH_STRIPS)])
        sample_wins = _sample_windows(grid, sample_budget_px)
        samples = []
        for w in sample_wins:
            b_s, a_s = rb.read(w), ra.read(w)
            samples.append((w, b_s, a_s))
        whole = len(sample_wins) == 1 and sample_wins[0].width == grid.width and sample_wins[0].height == grid.height
        timings["sample_read"] = time.perf_counter() - t
        shift = _align.Shift(0.0, 0.0, 0.0, 0)
        if coregister:
            if whole:
                shift = _align.estimate_shift(samples[0][1][:ns], samples[0][2][:ns])
            else:
                per_block = max(2, 24 // len(samples))  # about as many correlations as the in-memory path
                est = [_align.estimate_shift(b_s[:ns], a_s[:ns], max_blocks=per_block) for _, b_s, a_s in samples]
                est = [e for e in est if e.n_blocks > 0]
                if est:
                    rows = float(np.median([e.rows for e in est]))
                    cols = float(np.median([e.cols for e in est]))
                    spread = float(np.median([math.hypot(e.rows - rows, e.cols - cols) for e in est]))
                    shift = _align.Shift(rows, cols, spread, int(sum(e.n_blocks for e in est)))
        apply_shift = coregister and shift.n_blocks > 0 and shift.magnitude >= 0.05
        if apply_shift and not _majority_helps(samples, ns, shift):
            apply_shift = False
            shift = _align.Shift(shift.rows, shift.cols, shift.spread, shift.n_blocks, applied=False)
        timings["sample_coregister"] = time.perf_counter() - t - timings["sample_read"]
        fit_b, fit_a, fit_v = [], [], []
        for w, b_s, a_s in samples:
            a_sp = _align.apply_shift(a_s[:ns], shift) if apply_shift else a_s[:ns]
            a_ax = _align.apply_shift(a_s[ns:], shift, order=0) if (apply_shift and aux) else a_s[ns:]
            v = np.all(np.isfinite(b_s[:ns]), axis=0) & np.all(np.isfinite(a_sp), axis=0)
            excl = _masks.exclusion_mask(b_s, np.concatenate([a_sp, a_ax]), band_names=order)
            v &= ~excl
            inside = _aoi_inside(aoi_geom, grid, w)
            if inside is not None:
                v &= inside
            fit_b.append(b_s[:ns]); fit_a.append(a_sp); fit_v.append(v)
        del samples
        if whole:
            sb, sa, sv = fit_b[0], fit_a[0], fit_v[0]
        else:  # blocks side by side: statistics do not care about the arrangement
            sb, sa, sv = np.concatenate(fit_b, axis=2), np.concatenate(fit_a, axis=2), np.concatenate(fit_v, axis=1)
        del fit_b, fit_a, fit_v
        if not sv.any():
            raise EmptyDataError(
                f"no pixel is valid in both dates in the sample of the analysis grid ({describe_grid(grid)}): "
                "nodata, clouds or the area of interest leave nothing to compare"
            )
        t_fit = time.perf_counter()
        fitted = fit_method(method, sb, sa, band_names=spectral, pixel_size_m=px_size, valid=sv)
        timings["sample_method"] = time.perf_counter() - t_fit
        cs = fitted.sample_result if fitted.sample_result is not None else fitted.apply(sb, sa, sv)
        s_score = np.where(sv, cs.score, np.nan).astype("float32")
        used_thr_method = thr_method or cs.threshold_method
        thr = _threshold.compute_threshold(s_score, method=used_thr_method, value=thr_value, percentile=thr_pct, valid=sv)
        centres = _pipeline.class_layer_centres(sb, sa, spectral, sv)
        method_details = cs.details
        del sb, sa, sv, s_score, cs
        timings["sample_fit"] = time.perf_counter() - t
        timings["sample_cpu"] = time.process_time() - cpu_start

        # ---- second pass: windows
        t = time.perf_counter()
        mmu_m2, open_px, holes_m2 = _pipeline.cleanup_parameters(grid, px_size, None, min_area_m2, opening_px,
                                                                 fill_holes_m2)
        halo = max(fitted.halo_px, int(math.ceil(shift.magnitude)) + 2 if apply_shift else 0, open_px + 1, 4)
        plans = plan_windows(grid.shape, size=window_px, halo=halo)
        stride = max(1, int(math.ceil(max(grid.shape) / 1000)))
        prev_shape = (-(-grid.height // stride), -(-grid.width // stride))
        preview_b = np.full((ns, *prev_shape), np.nan, dtype="float32")
        preview_a = np.full((ns, *prev_shape), np.nan, dtype="float32")
        preview_score = np.full(prev_shape, np.nan, dtype="float32")
        preview_mask = np.full(prev_shape, 255, dtype="uint8")
        tmp_dir = out_dir
        tmp_dir.mkdir(parents=True, exist_ok=True)
        _pipeline.remove_stale_temporaries(tmp_dir)  # a killed run's scratch tiles can be hundreds of MB
        score_w = _io.WindowedWriter(tmp_dir / "change_score.tif", grid, dtype="float32", nodata=float("nan"),
                                     band_names=("score",))
        mask_w = _io.WindowedWriter(tmp_dir / "change_mask.tif", grid, dtype="uint8", nodata=255,
                                    band_names=("change",))
        valid_bits: dict[int, tuple[bytes, tuple[int, int]]] = {}
        parts: list[_objects.PolygonPart] = []
        parts_lock = threading.Lock()
        counts = {"valid": 0, "excluded": 0}
        bar = _Progress(len(plans), progress, "changedet windows")

        strips.halo = halo
        cloud_tests = _masks.has_cloud_information(order)

        def run(k: int) -> None:
            plan = plans[k]
            (b_o, fin_b), (a_o, fin_a) = strips.outer(plan.outer)
            a_sp = _align.apply_shift(a_o[:ns], shift) if apply_shift else a_o[:ns]
            a_ax = _align.apply_shift(a_o[ns:], shift, order=0) if (apply_shift and aux) else a_o[ns:]
            if apply_shift or aux:  # the shifted after image, or the spectral bands alone
                v = _kernels.all_finite(b_o[:ns], a_sp)
            else:  # found while the windows were converted
                v = fin_b & fin_a
            if cloud_tests:
                excl = _masks.exclusion_mask(b_o, np.concatenate([a_sp, a_ax]), band_names=order)
                excluded = excl & v
                v &= ~excl
            else:  # without cloud information the exclusion mask is the nodata that v leaves out already
                excluded = np.zeros(v.shape, bool)
            inside = _aoi_inside(aoi_geom, grid, plan.outer)
            if inside is not None:
                v &= inside
            if v.any():
                # the window's own fresh score array, NaN outside the valid pixels (in place)
                score_o = np.asarray(fitted.apply(b_o[:ns], a_sp, v).score, dtype=np.float32)
                np.copyto(score_o, np.float32(np.nan), where=~v)
            else:  # nothing to compare here (nodata, clouds, outside the AOI)
                score_o = np.full(v.shape, np.nan, dtype="float32")
            raw = _threshold.apply_threshold(score_o, thr, valid=v)
            opened = _objects.clean_mask(raw, opening_px=open_px, valid=v)
            rs, cs_ = plan.inner
            score_c, opened_c, v_c = score_o[rs, cs_], opened[rs, cs_], v[rs, cs_]
            b_c, a_c = b_o[:ns, rs, cs_], a_sp[:, rs, cs_]
            # index changes are only needed inside changed areas: compute them there alone
            # (the opened mask lies inside the valid pixels: these are the polygons' pixels, in
            # row-major order, as vectorize_parts takes them)
            sel = opened_c & v_c
            layers = {}
            if sel.any():
                sparse = _pipeline.class_layers(b_c[:, sel][:, :, None], a_c[:, sel][:, :, None], spectral,
                                                np.ones((int(sel.sum()), 1), bool), centres=centres)
                layers = {k_: v_[:, 0] for k_, v_ in sparse.items()}
            core = plan.core
            edges = (core.row_off > 0, core.row_off + core.height < grid.height,
                     core.col_off > 0, core.col_off + core.width < grid.width)
            win_parts = _objects.vectorize_parts(sel, window_transform(core, grid.transform), score=score_c,
                                                 layers={k_: v_ for k_, v_ in layers.items() if k_.startswith("d_")},
                                                 window_edges=edges)
            score_w.write(score_c[np.newaxis], core)
            for preview, arr in ((preview_b, b_c), (preview_a, a_c), (preview_score, score_c)):
                _decimate_into(preview, arr, core, stride)
            with parts_lock:
                parts.extend(win_parts)
                valid_bits[k] = _pack(v_c)
                counts["valid"] += int(v_c.sum())
                counts["excluded"] += int(excluded[rs, cs_].sum())
            bar.update()

        n_workers = workers or os.cpu_count() or 1
        cpu0 = time.process_time()
        read_s = 0.0
        window_rows: dict[int, list[int]] = {}
        for k, plan in enumerate(plans):
            window_rows.setdefault(int(plan.core.row_off) // window_px, []).append(k)
        try:
            with _quiet_threads(), ThreadPoolExecutor(max_workers=n_workers) as pool:
                for j in sorted(window_rows):
                    t_read = time.perf_counter()
                    pending.result()  # the strips read ahead (the first ones during the sample fit)
                    strips.ensure(j)
                    strips.ensure(j + 1)  # the bottom halo
                    read_s += time.perf_counter() - t_read
                    pending = ahead.submit(strips.ensure, j + 2)
                    if n_workers == 1:
                        for k in window_rows[j]:
                            run(k)
                    else:
                        list(pool.map(run, window_rows[j]))
                    strips.retire(j)
                pending.result()
        except BaseException:
            score_w.abort()
            mask_w.abort()
            raise
        finally:
            bar.close()
        timings["windows"] = time.perf_counter() - t
        timings["windows_reading"] = read_s
        cpu_after = time.process_time()
        timings["windows_cpu"] = cpu_after - cpu0  # all threads: the reads, the windows

        # ---- the score's COG is written out (its tiles are compressed already) while the
        # polygons are made; then the final mask is burnt from the polygons and published
        # beside it while the vectors and figures are written
        publisher = ThreadPoolExecutor(max_workers=2)

        def publish(writer: Any, key: str) -> None:
            t_c = time.perf_counter()
            writer.commit()
            timings[key] = time.perf_counter() - t_c

        published = [publisher.submit(publish, score_w, "cog_score")]
        try:
            t = time.perf_counter()
            polygons = _objects.assemble_polygons(parts, grid, min_area_m2=mmu_m2, fill_holes_m2=holes_m2)
            del parts
            timings["polygons"] = time.perf_counter() - t

            def burn_and_publish() -> int:
                t_b = time.perf_counter()
                changed = _burn_mask(polygons, grid, plans, window_rows, valid_bits, mask_w, preview_mask, stride)
                timings["mask"] = time.perf_counter() - t_b
                publish(mask_w, "cog_mask")
                return changed

            burning = publisher.submit(burn_and_publish)
            published.append(burning)
        except BaseException:
            for f in published:
                with contextlib.suppress(BaseException):
                    f.result()
            score_w.abort()
            mask_w.abort()
            raise
        finally:
            publisher.shutdown(wait=False)
    finally:
        if pending is not None:  # the readers stay open until the reads in flight are done
            with contextlib.suppress(BaseException):
                pending.result()
        ahead.shutdown()
        rb.close()
        ra.close()
        env.__exit__(None, None, None)
        hasher.shutdown(wait=False)
    timings["total"] = time.perf_counter() - t_start
    prev_transform = grid.transform * Affine.scale(stride)
    b_prev = GeoRaster(preview_b, prev_transform, grid.crs, tuple(spectral))
    a_prev = GeoRaster(preview_a, prev_transform, grid.crs, tuple(spectral))
    mask_prev = GeoRaster(preview_mask[np.newaxis], prev_transform, grid.crs, ("change",))
    score_prev = GeoRaster(preview_score[np.newaxis], prev_transform, grid.crs, ("score",))
    summary = _pipeline.build_summary(
        grid=grid, polygons=polygons, changed=0, n_valid=counts["valid"],  # changed: once the mask is burnt
        n_pixels=grid.height * grid.width, in_px=False,
        inputs=_pipeline.input_info(before, after, names_b, names_a, grid_b, grid_a, hashes=hashes.result()),
        parameters={
            "method": method, "threshold": threshold, "threshold_method": used_thr_method,
            "threshold_value": float(thr), "min_area_m2": mmu_m2, "opening_px": open_px,
            "fill_holes_m2": holes_m2, "aoi": list(aoi_lonlat.bounds) if aoi_lonlat is not None else None,
            "align": True, "coregister": coregister, "pixel_size_m": None, "bands": spectral,
        },
        shift=shift if coregister else None, dropped=[n for n in (*names_b, *names_a) if n not in wanted],
        masks={"excluded_pixels": counts["excluded"], "classification_bands": aux},
        method_details=method_details, timings=timings,
    )
    summary["tiling"] = {
        "path": "windowed", "window_px": window_px, "halo_px": halo, "windows": len(plans), "workers": n_workers,
        "sample": "whole scene" if whole else f"{len(sample_wins)} blocks of 256 x 256",
        "method_statistics": "global (exact split)" if fitted.exact else "per window (the method has no global split)",
        "preview_stride": stride,
    }
    result = _pipeline.ChangeResult(b_prev, a_prev, mask_prev, score_prev, polygons, float(thr), summary, {})

    def rasters_ready() -> None:
        # the COGs are whole before summary.json says the folder is
        for f in published:
            f.result()
        result.summary["results"].update(_pipeline.changed_results(burning.result(), counts["valid"]))
        result.summary["timings_s"].update({k: round(timings[k], 3) for k in ("mask", "cog_score", "cog_mask")})
        result.summary["timings_s"]["total"] = round(time.perf_counter() - t_start, 3)
        result.summary["timings_s"]["after_windows_cpu"] = round(time.process_time() - cpu_after, 3)

    try:
        result.save(out_dir, overwrite=True, rasters=False, rasters_ready=rasters_ready)
    except BaseException:
        for f in published:
            with contextlib.suppress(BaseException):
                f.result()
        raise
    return result


def _preload_writers() -> None:
    with contextlib.suppress(Exception):
        import skimage.registration  # noqa: F401  (co-registration, needed first)

        from . import plot  # noqa: F401  (matplotlib)
        import pyogrio  # noqa: F401


def _burn_mask(polygons: Any, grid: Grid, plans: Sequence[WindowPlan], window_rows: dict[int, list[int]],
               valid_bits: dict[int, tuple[bytes, tuple[int, int]]], mask_w: Any, preview_mask: np.ndarray,
               stride: int) -> int:
    """Write the final mask (1 inside the kept polygons, 0 elsewhere, 255 where not valid) a
    strip of full rows at a time, one rasterization and one write each; returns the changed pixels."""
    import shapely

    tree = shapely.STRtree(list(polygons.geometries)) if len(polygons) else None
    changed = 0
    for j in sorted(window_rows):
        ks = window_rows[j]
        r0 = int(plans[ks[0]].core.row_off)
        h = int(plans[ks[0]].core.height)
        strip = Window(0, r0, grid.width, h)
        v_s = np.zeros((h, grid.width), dtype=bool)
        for k in ks:
            c0 = int(plans[k].core.col_off)
            v_c = _unpack(valid_bits.pop(k))
            v_s[:, c0 : c0 + v_c.shape[1]] = v_c
        m = None
        if tree is not None:
            x0, y0 = _corner(grid, strip, 0, 0)
            x1, y1 = _corner(grid, strip, h, grid.width)
            hits = tree.query(shapely.box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)))
            if len(hits):
                m = features.rasterize([(polygons.geometries[i], 1) for i in hits], out_shape=v_s.shape,
                                       transform=window_transform(strip, grid.transform), fill=0, dtype="uint8")
        if m is None:
            m = np.zeros(v_s.shape, dtype="uint8")
        np.copyto(m, np.uint8(255), where=~v_s)  # not valid: nodata, burnt or not
        changed += int(np.count_nonzero(m == 1))
        mask_w.write(m[np.newaxis], strip)
        _decimate_into(preview_mask, m, strip, stride)
    return changed


def _decimate_into(preview: np.ndarray, arr: np.ndarray, window: Window, stride: int) -> None:
    """Put the pixels of ``arr`` (the last two axes cover ``window``) whose grid row and
    column are multiples of ``stride`` into ``preview``, the grid decimated by ``stride``."""
    r0, c0 = int(window.row_off), int(window.col_off)
    fr, fc = (-r0) % stride, (-c0) % stride
    pr, pc = (r0 + fr) // stride, (c0 + fc) // stride
    sub = arr[..., fr::stride, fc::stride]
    preview[..., pr : pr + sub.shape[-2], pc : pc + sub.shape[-1]] = sub


def _corner(grid: Grid, core: Window, row: float, col: float) -> tuple[float, float]:
    from .raster import apply_affine

    return apply_affine(grid.transform, core.col_off + col, core.row_off + row)
