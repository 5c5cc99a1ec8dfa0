"""The executor of a windowed run over a large scene: bounded memory, all cores.

It knows windows, strips, readers and writers, and nothing of methods (it never
imports :mod:`changedet.pipeline` or :mod:`changedet.window`).  The pipeline fits
the run on a sample :meth:`WindowedScene.read_sample` gives (the whole scene when it
is small, else a lattice of blocks), then :meth:`WindowedScene.run` streams windows
of the analysis grid, each read with a halo for neighbourhood operations, through
the window processor the pipeline hands it, on all cores; scores go straight into a
tiled COG and each window's changed areas into polygon parts.  Once the pipeline has
merged the parts into polygons, :meth:`WindowedScene.publish` burns the final mask
from them strip by strip and both rasters are published as Cloud-Optimized GeoTIFFs
with overviews.

Memory holds a few windows, the sample, a bit-packed validity mask and the
polygons; it does not grow with the scene beyond those.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
from rasterio import features
from rasterio.windows import Window

from . import io as _io
from .errors import InvalidParameterError
from .raster import NODATA_MASK, Grid, window_transform

__all__ = ["WindowPlan", "plan_windows", "WindowedScene", "WindowedOutput", "needs_windows", "TILED_MIN_PIXELS"]

#: Scenes with more analysis-grid pixels than this take the windowed path by default.
TILED_MIN_PIXELS = 4096 * 4096

def needs_windows(before: str | os.PathLike[str], after: str | os.PathLike[str]) -> bool:
    """Whether two raster files are large enough for the windowed path (read from metadata only).

    Parameters
    ----------
    before, after : path
        The two dates (files or band folders).

    Returns
    -------
    bool
        True when before has more than :data:`TILED_MIN_PIXELS` pixels and after more
        than a quarter of that.

    Examples
    --------
    >>> import tempfile, rasterio
    >>> from affine import Affine
    >>> path = tempfile.mkdtemp() + "/small.tif"
    >>> with rasterio.open(path, "w", driver="GTiff", height=64, width=64, count=1, dtype="uint16",
    ...                    crs="EPSG:32639", transform=Affine(10, 0, 500000, 0, -10, 6200000)) as dst:
    ...     dst.write(np.ones((1, 64, 64), "uint16"))
    >>> needs_windows(path, path)
    False
    """
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

    Parameters
    ----------
    shape : tuple of int
        (rows, cols) of the grid.
    size : int
        Window edge in pixels (at least 16); the last row and column of windows are smaller.
    halo : int
        Pixels added on each side of a window's core, clipped to the grid.

    Returns
    -------
    list of WindowPlan
        Row by row, left to right.

    Raises
    ------
    InvalidParameterError
        When ``size`` is below 16 or ``halo`` negative.

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


# --------------------------------------------------------------------------- the executor
@dataclass(frozen=True, eq=False)
class WindowedOutput:
    """What the pass over the windows gathered (see :meth:`WindowedScene.run`).

    ``parts`` are the polygon parts of every window; ``n_valid``/``excluded`` count
    valid and cloud-excluded pixels; ``previews`` hold the before, after and score
    decimated by ``stride``.
    """

    parts: list[Any]
    n_valid: int
    excluded: int
    windows: int
    previews: dict[str, np.ndarray]
    stride: int
    timings: dict[str, float]


class WindowedScene:
    """Two raster files read window by window onto one analysis grid, and the rasters written.

    The executor of a windowed run: it knows windows, strips, readers and writers, and
    nothing of methods.  The caller (:func:`changedet.pipeline.detect_changes`) gives
    it a window processor; the life cycle is :meth:`read_sample`, :meth:`run` (every
    window through the processor, scores streamed into ``change_score.tif``),
    :meth:`publish` (the final mask burnt from the polygons, both COGs committed),
    then :meth:`close` (or use it as a context manager).

    Parameters
    ----------
    before, after : path
        The two dates (files or band folders GDAL reads).
    grid : Grid
        The analysis grid.
    bands : sequence of str
        The bands to read, in the order the processor takes them.
    out : path
        The output folder (the rasters are streamed into it).
    window_px : int
        Window edge in pixels; the scene is read in full-width strips this many rows high.
    workers : int, optional
        Threads working on windows (default: all cores).
    progress : bool
        Show a progress bar.
    """

    def __init__(self, before: str | os.PathLike[str], after: str | os.PathLike[str], grid: Grid,
                 bands: Sequence[str], out: str | os.PathLike[str], *, window_px: int = 512,
                 workers: int | None = None, progress: bool = True):
        if workers is not None and (isinstance(workers, bool) or int(workers) != workers or workers < 1):
            raise InvalidParameterError(f"workers must be an integer >= 1, got {workers!r}")
        if int(window_px) != window_px or window_px < 16:
            raise InvalidParameterError(f"window_px must be an integer >= 16, got {window_px!r}")
        self.grid = grid
        self.bands = list(bands)
        self.out = Path(out)
        self.window_px = int(window_px)
        self.workers = int(workers or os.cpu_count() or 1)
        self.progress = progress
        self.timings: dict[str, float] = {}
        self._env = _io.gdal_env(cache_mb=GDAL_CACHE_MB)
        self._env.__enter__()
        self._ahead = ThreadPoolExecutor(max_workers=1)  # reads strips ahead of the windows
        self._pending: Any = None
        self._readers_closed = False
        self._writers: list[Any] = []
        self._published: list[Any] = []
        try:
            self._rb = _io.WindowedReader(before, grid=grid, bands=self.bands, name="before")
            self._ra = _io.WindowedReader(after, grid=grid, bands=self.bands, name="after")
        except BaseException:
            self._env.__exit__(None, None, None)
            raise
        self._strips = _Strips([self._rb, self._ra], grid, self.window_px, 0)
        # the first strips of the window pass are read while the sample is fitted
        self._pending = self._ahead.submit(lambda: [self._strips.ensure(j) for j in range(PREFETCH_STRIPS)])

    def __enter__(self) -> "WindowedScene":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close(abort=exc[0] is not None)

    # ---- the sample
    def read_sample(self, *, budget_px: int = 1_048_576,
                    grid: Grid | None = None) -> tuple[list[tuple[Window, np.ndarray, np.ndarray]], bool]:
        """Blocks of both dates to fit the run on: the whole grid when it fits
        ``budget_px``, else a lattice of 256 x 256 blocks of about that many pixels.

        Parameters
        ----------
        budget_px : int
            About how many pixels the sample holds.
        grid : Grid, optional
            Sample this grid instead of the scene's (same CRS and pixel size; the scene
            around an area of interest, whose statistics the area is judged by).

        Returns
        -------
        blocks : list of (Window, (bands, rows, cols) ndarray, (bands, rows, cols) ndarray)
            Each block's window on the grid and its before and after pixels (float32, NaN nodata).
        whole : bool
            Whether the one block is the whole grid.
        """
        t = time.perf_counter()
        if grid is not None and grid != self.grid:
            wins = _sample_windows(grid, budget_px)
            rb = _io.WindowedReader(self._rb.path, grid=grid, bands=self.bands, name="before")
            ra = _io.WindowedReader(self._ra.path, grid=grid, bands=self.bands, name="after")
            try:
                blocks = [(w, rb.read(w), ra.read(w)) for w in wins]
            finally:
                rb.close(), ra.close()
            self.timings["sample_read"] = time.perf_counter() - t
            return blocks, False
        wins = _sample_windows(self.grid, budget_px)
        blocks = [(w, self._rb.read(w), self._ra.read(w)) for w in wins]
        whole = len(wins) == 1 and wins[0].width == self.grid.width and wins[0].height == self.grid.height
        self.timings["sample_read"] = time.perf_counter() - t
        return blocks, whole

    def read_window(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """Both dates over one window of the analysis grid (float32, NaN nodata).

        Parameters
        ----------
        window : rasterio.windows.Window
            The window on the analysis grid.

        Returns
        -------
        tuple of two (bands, rows, cols) ndarray of float32
        """
        if self._readers_closed:  # after the window pass (which frees them): open them again
            self._rb = _io.WindowedReader(self._rb.path, grid=self.grid, bands=self.bands, name="before")
            self._ra = _io.WindowedReader(self._ra.path, grid=self.grid, bands=self.bands, name="after")
            self._readers_closed = False
        return self._rb.read(window), self._ra.read(window)

    # ---- the windows
    def run(self, process: Callable[..., Any], *, halo: int) -> WindowedOutput:
        """Every window through ``process`` on all cores; scores streamed into ``change_score.tif``.

        ``process(plan, before, after, finite)`` gets a :class:`WindowPlan`, the window
        with its halo for both dates (float32, NaN nodata) and where all their bands
        are finite, and returns an object with the core's ``score``, ``valid``,
        ``parts`` and ``excluded`` (a :class:`changedet.window.WindowResult`).

        Parameters
        ----------
        process : callable
            The window processor, called from worker threads.
        halo : int
            Pixels read around each window's core (the reach of the processor).

        Returns
        -------
        WindowedOutput
            The polygon parts of every window, the valid and excluded pixel counts,
            decimated previews and the timings.
        """
        grid, window_px = self.grid, self.window_px
        t = time.perf_counter()
        plans = plan_windows(grid.shape, size=window_px, halo=halo)
        stride = max(1, int(math.ceil(max(grid.shape) / 1000)))
        prev_shape = (-(-grid.height // stride), -(-grid.width // stride))
        nb = len(self.bands)
        previews = {
            "before": np.full((nb, *prev_shape), np.nan, dtype="float32"),
            "after": np.full((nb, *prev_shape), np.nan, dtype="float32"),
            "score": np.full(prev_shape, np.nan, dtype="float32"),
            "mask": np.full(prev_shape, NODATA_MASK, dtype="uint8"),
        }
        self.out.mkdir(parents=True, exist_ok=True)
        # each writer listed as soon as it exists: an interrupt between the two still aborts the first
        # (its scratch file of tiles is as large as the raster)
        self._writers = []
        self._score_w = _io.WindowedWriter(self.out / "change_score.tif", grid, dtype="float32", nodata=float("nan"),
                                           band_names=("score",))
        self._writers.append(self._score_w)
        self._mask_w = _io.WindowedWriter(self.out / "change_mask.tif", grid, dtype="uint8", nodata=NODATA_MASK,
                                          band_names=("change",))
        self._writers.append(self._mask_w)
        self._valid_bits: dict[int, tuple[bytes, tuple[int, int]]] = {}
        parts: list[Any] = []
        lock = threading.Lock()
        counts = {"valid": 0, "excluded": 0}
        bar = _Progress(len(plans), self.progress, "changedet windows")
        self._strips.halo = halo

        def one(k: int) -> None:
            plan = plans[k]
            (b_o, fin_b), (a_o, fin_a) = self._strips.outer(plan.outer)
            res = process(plan, b_o, a_o, fin_b & fin_a)
            rs, cs_ = plan.inner
            self._score_w.write(res.score[np.newaxis], plan.core)
            for key, arr in (("before", b_o[:, rs, cs_]), ("after", a_o[:, rs, cs_]), ("score", res.score)):
                _decimate_into(previews[key], arr, plan.core, stride)
            with lock:
                parts.extend(res.parts)
                self._valid_bits[k] = _pack(res.valid)
                counts["valid"] += int(res.valid.sum())
                counts["excluded"] += int(res.excluded)
            bar.update()

        cpu0 = time.process_time()
        read_s = 0.0
        rows: dict[int, list[int]] = {}
        for k, plan in enumerate(plans):
            rows.setdefault(int(plan.core.row_off) // window_px, []).append(k)
        try:
            with _quiet_threads(), ThreadPoolExecutor(max_workers=self.workers) as pool:
                for j in sorted(rows):
                    t_read = time.perf_counter()
                    self._pending.result()  # the strips read ahead (the first ones during the sample fit)
                    self._strips.ensure(j)
                    self._strips.ensure(j + 1)  # the bottom halo
                    read_s += time.perf_counter() - t_read
                    self._pending = self._ahead.submit(self._strips.ensure, j + 2)
                    if self.workers == 1:
                        for k in rows[j]:
                            one(k)
                    else:
                        list(pool.map(one, rows[j]))
                    self._strips.retire(j)
                self._pending.result()
        finally:
            bar.close()
        self.timings["windows"] = time.perf_counter() - t
        self.timings["windows_reading"] = read_s
        self._cpu_after = time.process_time()
        self.timings["windows_cpu"] = self._cpu_after - cpu0  # all threads: the reads, the windows
        self._plans, self._rows, self._stride, self._previews = plans, rows, stride, previews
        # the score's COG is written out (its tiles are compressed already) while the polygons are made
        self._publisher = ThreadPoolExecutor(max_workers=2)
        self._published = [self._publisher.submit(self._commit, self._score_w, "cog_score")]
        self._close_readers()
        return WindowedOutput(parts, counts["valid"], counts["excluded"], len(plans), previews, stride,
                              dict(self.timings))

    def _commit(self, writer: Any, key: str) -> None:
        t = time.perf_counter()
        writer.commit()
        self.timings[key] = time.perf_counter() - t

    def publish(self, polygons: Any) -> "Future[int]":
        """Burn the final mask (1 inside the kept polygons, 0 elsewhere, 255 not valid) and
        commit both COGs in the background.

        Call after :meth:`run`.

        Parameters
        ----------
        polygons : changedet.objects.ChangePolygons
            The kept polygons, in the grid's CRS.

        Returns
        -------
        concurrent.futures.Future of int
            The number of changed pixels, once the mask is written (:meth:`wait` waits
            for both rasters).
        """

        def burn() -> int:
            t = time.perf_counter()
            changed = _burn_mask(polygons, self.grid, self._plans, self._rows, self._valid_bits, self._mask_w,
                                 self._previews["mask"], self._stride)
            self.timings["mask"] = time.perf_counter() - t
            self._commit(self._mask_w, "cog_mask")
            return changed

        future = self._publisher.submit(burn)
        self._published.append(future)
        return future

    def wait(self) -> None:
        """Wait until both COGs are whole (raises what writing them raised)."""
        for f in self._published:
            f.result()

    def _close_readers(self) -> None:
        if self._pending is not None:  # the readers stay open until the reads in flight are done
            with contextlib.suppress(BaseException):
                self._pending.result()
            self._pending = None
        self._ahead.shutdown()
        self._rb.close()
        self._ra.close()
        self._readers_closed = True
        if self._env is not None:
            self._env.__exit__(None, None, None)
            self._env = None

    def close(self, *, abort: bool = False) -> None:
        """Release readers and threads; with ``abort`` drop the rasters being written.

        Parameters
        ----------
        abort : bool
            Abort the raster writers (the run failed): a raster not yet committed leaves
            nothing at its destination.
        """
        self._close_readers()
        for f in self._published:
            with contextlib.suppress(BaseException):
                f.result()
        if getattr(self, "_publisher", None) is not None:
            self._publisher.shutdown(wait=False)
        if abort:
            for w in self._writers:
                with contextlib.suppress(BaseException):
                    w.abort()


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
        np.copyto(m, np.uint8(NODATA_MASK), where=~v_s)  # not valid: nodata, burnt or not
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
