"""``detect_changes(before, after, ...) -> ChangeResult``: one way through the stages.

options validated (:mod:`changedet.spec`) -> read and put on one grid (the whole pair
in memory, or window by window through :mod:`changedet.tiling` for whole scenes)
-> the run's statistics fitted on the pair or a sample of it -> every window through
one processor (:mod:`changedet.window`: co-registration, masks, score, threshold,
clean-up, polygon parts) -> polygons with areas and from-to classes -> one summary
and one writer, whichever path ran.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import gc
import json
import math
import os
import platform
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from . import __version__
from . import _kernels
from . import _outdir
from . import align as _align
from . import io as _io
from . import objects as _objects
from . import _dates
from . import _figproc
from . import structures as _structures
from . import report as _report
from . import threshold as _threshold
from . import window as _window
from ._paths import is_remote
from .areas import aoi_on_grid, parse_aoi
from .errors import BandMismatchError, ChangedetError, EmptyDataError, InvalidParameterError
from .raster import NODATA_MASK, GeoRaster, Grid, check_same_grid, describe_grid, grid_problem, window_transform
from .spec import CATEGORICAL_BANDS, RunOptions, RunSpec, check_call, make_spec, run_options
from .window import class_layer_centres, class_layers

__all__ = ["ChangeResult", "detect_changes", "train_model", "parse_aoi", "OUTPUT_FILES", "NODATA_MASK", "CATEGORICAL_BANDS",
           "class_layers", "class_layer_centres"]

#: The files ``ChangeResult.save`` writes (``changes.gpkg`` for georeferenced grids).
OUTPUT_FILES = (
    "change_mask.tif",
    "change_score.tif",
    "changes.geojson",
    "changes.gpkg",
    "structures.geojson",
    "overview.png",
    "report.html",
    "summary.json",
)


#: Scenes sampled whole up to this many pixels (then the windowed result equals the in-memory one).
SAMPLE_BUDGET_PX = 1_048_576


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.flags.writeable:
        a = a.view()
        a.flags.writeable = False
    return a


def _frozen_raster(r: GeoRaster) -> GeoRaster:
    return r if not r.data.flags.writeable else r.with_data(_frozen(r.data))


@dataclass(frozen=True)
class _Run:
    """What a result needs to make another from its score: the spec and the fit."""

    spec: RunSpec
    fit: _window.RunFit
    inputs: dict[str, Any]
    dropped: tuple[str, ...]
    extra: dict[str, Any]


@dataclass(frozen=True, eq=False, repr=False)
class ChangeResult:
    """What :func:`detect_changes` found.  Immutable: its arrays are read-only and
    :attr:`summary` gives a fresh copy on every access.

    Attributes
    ----------
    before, after : GeoRaster
        The two dates on the analysis grid (after co-registration); previews decimated
        by ``summary["tiling"]["preview_stride"]`` on the windowed path.
    mask : GeoRaster
        uint8, one band: 1 change, 0 no change, 255 nodata.
    score : GeoRaster
        float32 change score, NaN nodata.
    polygons : ChangePolygons
        One polygon per changed area with ``area_m2``, ``change_class``, ...
    threshold : float
        The score value above which a pixel is change.
    summary : dict
        Counts, areas, every parameter used, the fitted statistics, inputs' SHA-256,
        shift, versions, timings.
    layers : dict of str -> (rows, cols) ndarray
        The method's per-pixel layers and the index changes (in-memory path).
    structures : Structures or None
        The new structures counted in the changed areas at 2 m or finer
        (:func:`changedet.structures.find_structures`: ``.count``, ``.table()``,
        ``.summary()``), or why none were counted (``.reason``: pixels too coarse).
    """

    before: GeoRaster
    after: GeoRaster
    mask: GeoRaster
    score: GeoRaster
    polygons: _objects.ChangePolygons
    threshold: float
    summary_json: str = field(repr=False)
    layers: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    run: _Run | None = field(default=None, repr=False)
    #: The new structures counted in the changed areas (:class:`changedet.structures.Structures`;
    #: ``.count``, ``.table()``, ``.summary()``), or why they were not counted.
    structures: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        for name in ("before", "after", "mask", "score"):
            object.__setattr__(self, name, _frozen_raster(getattr(self, name)))
        object.__setattr__(self, "layers", {k: _frozen(v) for k, v in self.layers.items()})

    @property
    def summary(self) -> dict[str, Any]:
        """The run's ``summary.json`` as a dict (a fresh copy: editing it changes nothing)."""
        return json.loads(self.summary_json)

    @property
    def grid(self) -> Grid:
        return self.mask.grid

    @property
    def n_changes(self) -> int:
        return len(self.polygons)

    def change_mask(self) -> np.ndarray:
        """Where the result found change.

        Returns
        -------
        (rows, cols) ndarray of bool
            True where change.
        """
        return self.mask.data[0] == 1

    def table(self) -> Any:
        """The polygons' attributes, one row per changed area.

        Returns
        -------
        pandas.DataFrame, or list of dict where pandas is not installed
        """
        records = self.polygons.to_records()
        try:
            import pandas as pd
        except ImportError:  # pragma: no cover - pandas is in the notebooks extra
            return records
        return pd.DataFrame.from_records(records)

    def evaluate(self, truth: Any, **kwargs: Any) -> Any:
        """Accuracy of the mask against a truth mask.

        Parameters
        ----------
        truth : path or GeoRaster or (rows, cols) ndarray
            The truth mask on the result's grid.
        **kwargs
            The truth coding, as for :func:`changedet.evaluate.evaluate`.

        Returns
        -------
        Accuracy
        """
        from .evaluate import evaluate

        if isinstance(truth, (str, os.PathLike)):
            truth = _io.read_raster(truth)
        return evaluate(self.mask, truth, **kwargs)

    def plot(self, **kwargs: Any) -> Any:
        """Overview figure: before | after | change outlines.

        Parameters
        ----------
        **kwargs
            As for :func:`changedet.plot.plot_overview`.

        Returns
        -------
        matplotlib.figure.Figure
        """
        from . import plot

        return plot.plot_overview(**self._overview_arguments(**kwargs))

    def _overview_arguments(self, **kwargs: Any) -> dict[str, Any]:
        """The arguments of :func:`changedet.plot.plot_overview` for this result (``kwargs`` win)."""
        if self.structures is not None and self.structures.count:
            kwargs.setdefault("structures", self.structures.polygons)
        summary = self.summary
        base = _overview_images(self.before, self.after, summary.get("dates"),
                                (summary.get("grid") or {}).get("pixel_size_m"))
        return {**base, "polygons": self.polygons, "mask": self.mask, **kwargs}

    def plot_histogram(self, **kwargs: Any) -> Any:
        """Score histogram with the threshold marked.

        Parameters
        ----------
        **kwargs
            As for :func:`changedet.plot.plot_histogram`.

        Returns
        -------
        matplotlib.figure.Figure
        """
        from . import plot

        valid = self.mask.data[0] != NODATA_MASK
        hyst = self.summary["parameters"].get("hysteresis")
        kwargs.setdefault("hysteresis", (hyst["low"], hyst["high"]) if hyst else None)
        return plot.plot_histogram(self.score.data[0], threshold=self.threshold, valid=valid,
                                   method_label=self.summary["parameters"]["method"], **kwargs)

    def rethreshold(
        self,
        threshold: str | float | None,
        *,
        min_area_m2: float | None = None,
        opening_px: int | None = None,
        fill_holes_m2: float | None = None,
    ) -> "ChangeResult":
        """A new result from the score this one holds, with another threshold or clean-up.

        The score is not recomputed; the result equals (mask, polygons, summary
        parameters) a fresh :func:`detect_changes` with these options and the others as
        they were.  Options left None take their defaults, as in a fresh run.

        Parameters
        ----------
        threshold : str, float or None
            As for :func:`detect_changes` (None: the method's own).
        min_area_m2, opening_px, fill_holes_m2 : optional
            As for :func:`detect_changes`.

        Returns
        -------
        ChangeResult

        Examples
        --------
        >>> from affine import Affine
        >>> rng = np.random.default_rng(0)
        >>> img = rng.uniform(500, 600, size=(4, 60, 60)).astype("float32")
        >>> new = img.copy(); new[:, 20:30, 20:35] += 2000; new[:, 40:42, 40:42] += 2000
        >>> t = Affine(10, 0, 500000, 0, -10, 6190000); names = ("B02", "B03", "B04", "B08")
        >>> r = detect_changes(GeoRaster(img, t, "EPSG:32639", names), GeoRaster(new, t, "EPSG:32639", names))
        >>> r.n_changes, r.rethreshold(None, min_area_m2=1000).n_changes
        (2, 1)
        """
        if self.run is None or self.score.shape[1:] != self.grid.shape or self.run.extra.get("path") != "in-memory":
            raise InvalidParameterError(
                "rethreshold needs the full score, which only an in-memory result holds (this one is windowed: its "
                "score is the change_score.tif it wrote); run detect_changes again with the new options"
            )
        t0 = time.perf_counter()
        spec = self.run.spec.with_options(threshold=threshold, min_area_m2=min_area_m2, opening_px=opening_px,
                                          fill_holes_m2=fill_holes_m2)
        score = self.score.data[0]
        valid = self.mask.data[0] != NODATA_MASK
        o = spec.options
        thr_method = o.threshold_method or self.run.fit.method.threshold_method
        thr = _threshold.compute_threshold(score, method=thr_method, value=o.threshold_value,
                                           percentile=o.threshold_percentile, valid=valid)
        fit = dataclasses.replace(self.run.fit, threshold=float(thr), threshold_method=thr_method,
                                  hysteresis=_window.hysteresis_of(spec, self.run.fit.method, float(thr)))
        sel = _window.changed_pixels(spec, fit.threshold, score, valid, low=fit.low_threshold) & valid
        part_layers = {k: v[sel] for k, v in self.layers.items() if v.shape == sel.shape and k in _window.CLASS_LAYER_KEYS}
        part_layers = _window.judged_on_core(fit, part_layers, score[sel])
        if fit.edge_stats and sel.any():
            part_layers.update(_window.outline_layers_of_core(fit, sel, score, self.before.data, self.after.data))
        parts = _window.outline_parts(spec, sel, score, part_layers)
        timings = dict(self.summary.get("timings_s", {}))
        return _finish_in_memory(spec, fit, parts, valid, self.before, self.after, self.score, dict(self.layers),
                                 self.run.inputs, self.run.dropped, self.run.extra["excluded"],
                                 {**timings, "rethreshold": time.perf_counter() - t0})

    def save(self, folder: str | os.PathLike[str], *, overwrite: bool = False, figures: bool = True) -> dict[str, Path]:
        """Write the output files of the command-line contract into ``folder``.

        Each file is written under a temporary name and renamed when complete;
        ``summary.json`` is written last, so its presence means the folder is whole.
        An existing finished result is only replaced with ``overwrite=True``.  A
        windowed result was saved as it ran: saving it elsewhere is refused.

        Parameters
        ----------
        folder : path
            The output folder (made when missing).
        overwrite : bool
            Replace a finished result already there.
        figures : bool
            Also draw ``overview.png``.

        Returns
        -------
        dict of str -> Path
            The files written.
        """
        if self.run is not None and self.run.extra.get("path") == "windowed":
            raise InvalidParameterError(
                f"a windowed result was written as it ran (into {self.run.extra.get('out')!r}); its full-resolution "
                "rasters are not held in memory to save again"
            )
        out = _io.check_output_path(folder)
        check_call(flags={"overwrite": overwrite, "figures": figures})
        with _outdir.folder_lock(out):
            check_output_folder(out, overwrite=overwrite)
            remove_stale_temporaries(out)
            _outdir.clear_outputs(out, OUTPUT_FILES)  # the folder is not whole until the new summary lands
            try:
                return self._write_outputs(out, figures=figures)
            except BaseException:  # an error or an interrupt (Ctrl-C, SIGTERM): no files without a summary
                _outdir.discard_unfinished(out, names=OUTPUT_FILES)
                raise

    def _write_outputs(self, out: Path, *, figures: bool) -> dict[str, Path]:
        t0 = time.perf_counter()
        written: dict[str, Path] = {}
        with _io.atomic_path(out / "overview.png") if figures else contextlib.nullcontext() as figure_tmp:
            # the command line's figure helper (changedet._figproc) draws while the files are written
            helper = _figproc.current() if figures else None
            sent = helper is not None and helper.draw_overview(self._overview_arguments(), figure_tmp,
                                                                  embed_budget=_report.FIGURE_BUDGET_BYTES)

            def overview() -> Path:
                """The figure, waited for (or drawn here): the page embeds it once the rest is made."""
                if not (sent and helper.wait()):
                    from . import plot

                    plot._write_figure(self.plot(), figure_tmp)
                return figure_tmp

            try:
                written.update(_write_rasters(out, self.grid, self.mask.data[0], self.score.data[0]))
                written.update(_write_vectors(self, out))
                # the page is made while the helper draws, and takes the figure last
                written["report.html"] = _report._write_report(self.summary, out, properties=self.polygons.properties,
                                                               overview=overview if figures else None)
            except BaseException:
                if sent:  # stopped before the temporary file goes: it writes nothing after the cleanup
                    helper.close()
                raise
        if figures:
            written["overview.png"] = out / "overview.png"
        summary = self.summary
        summary["timings_s"] = dict(summary.get("timings_s", {}), save=round(time.perf_counter() - t0, 3))
        summary["outputs"] = sorted([*written, "summary.json"])
        if "changes.gpkg" not in written:
            summary["outputs_not_written"] = {"changes.gpkg": (
                "the images have no georeferencing (pixel grid): no CRS for a GeoPackage; changes.geojson holds "
                "pixel coordinates" if self.grid.crs is None else "no GeoPackage writer is installed (pip install pyogrio)")}
        written["summary.json"] = _io.write_json(summary, out / "summary.json")
        return written

    def __repr__(self) -> str:
        r = self.summary["results"]
        area = f"{r['changed_area_ha']:.2f} ha" if r.get("changed_area_ha") is not None else f"{r['changed_pixels']} px"
        n = r["n_changes"]
        return f"ChangeResult({n} changed area{'' if n == 1 else 's'}, {area}, {describe_grid(self.grid)})"


def _write_rasters(out: Path, grid: Grid, mask: np.ndarray, score: np.ndarray) -> dict[str, Path]:
    """The mask and score as the windowed path writes them (one writer for both paths)."""
    from rasterio.errors import NotGeoreferencedWarning
    from rasterio.windows import Window

    whole = Window(0, 0, grid.width, grid.height)
    written = {}
    for name, arr, dtype, nodata, band in (("change_mask.tif", mask, "uint8", NODATA_MASK, "change"),
                                           ("change_score.tif", score, "float32", float("nan"), "score")):
        with warnings.catch_warnings():
            # an image without georeferencing is written on its pixel grid, as it came
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            w = _io.WindowedWriter(out / name, grid, dtype=dtype, nodata=nodata, band_names=(band,))
            try:
                w.write(np.ascontiguousarray(arr, dtype=dtype)[np.newaxis], whole)
                written[name] = w.commit()
            except BaseException:
                w.abort()
                raise
    return written


def _write_vectors(result: ChangeResult, out: Path) -> dict[str, Path]:
    """``changes.geojson``, ``changes.gpkg`` (with a CRS) and the structures' files."""
    written: dict[str, Path] = {}
    written["changes.geojson"] = result.polygons.write_geojson(out / "changes.geojson")
    if result.grid.crs is not None:
        gpkg = _io.write_gpkg(result.polygons.geometries, [_flat(p) for p in result.polygons.properties],
                              out / "changes.gpkg", crs=result.grid.crs)
        if gpkg is not None:
            written["changes.gpkg"] = gpkg
    written.update(_write_structures(result, out, gpkg=written.get("changes.gpkg")))
    return written


#: The largest window of both dates read at once to count the structures of a windowed run.
STRUCTURE_WINDOW_PX = 2048


def _windowed_structures(scene: Any, spec: RunSpec, polygons: Any) -> Any:
    """The structures of a windowed run's changed areas, counted area group by area group on
    windows of both dates read back around them (at most :data:`STRUCTURE_WINDOW_PX` a side,
    a larger area alone on its own window), as :func:`changedet.structures.find_structures`
    counts them on a whole pair."""
    from rasterio import features
    from rasterio.windows import Window

    grid = spec.grid
    empty = GeoRaster(np.zeros((1, 1, 1), np.uint8), grid.transform, grid.crs, ("change",))
    probe = _structures.find_structures(empty, pixel_size_m=spec.options.pixel_size_m)
    if probe.count is None or not len(polygons):  # pixels too coarse (the probe says why), or nothing changed
        return probe
    inv = ~grid.transform
    boxes = []
    for g in polygons.geometries:
        minx, miny, maxx, maxy = g.bounds
        cols, rows = zip(*(inv * (x, y) for x, y in ((minx, miny), (maxx, maxy), (minx, maxy), (maxx, miny))))
        boxes.append((max(int(math.floor(min(rows))) - 4, 0), min(int(math.ceil(max(rows))) + 4, grid.height),
                      max(int(math.floor(min(cols))) - 4, 0), min(int(math.ceil(max(cols))) + 4, grid.width)))
    groups: dict[tuple[int, int], list[int]] = {}
    for i, (r0, _, c0, _) in enumerate(boxes):
        groups.setdefault((r0 // STRUCTURE_WINDOW_PX, c0 // STRUCTURE_WINDOW_PX), []).append(i)
    ns = len(spec.spectral)
    geoms: list[Any] = []
    props: list[dict[str, Any]] = []
    settings: dict[str, float] = {}
    for members in groups.values():
        r0 = min(boxes[i][0] for i in members)
        r1 = max(boxes[i][1] for i in members)
        c0 = min(boxes[i][2] for i in members)
        c1 = max(boxes[i][3] for i in members)
        win = Window(c0, r0, c1 - c0, r1 - r0)
        b, a = scene.read_window(win)
        t = window_transform(win, grid.transform)
        burnt = features.rasterize([polygons.geometries[i] for i in members], out_shape=(r1 - r0, c1 - c0),
                                   transform=t, dtype="uint8")
        burnt &= np.isfinite(a[:ns]).all(axis=0)
        sub = _take(polygons, members)
        found = _structures.find_structures(
            GeoRaster(burnt[np.newaxis], t, grid.crs, ("change",)),
            GeoRaster(a[:ns], t, grid.crs, spec.spectral), areas=sub,
            before=GeoRaster(b[:ns], t, grid.crs, spec.spectral), pixel_size_m=spec.options.pixel_size_m,
            classifier_mask=spec.options.learned)
        settings = dict(found.settings)
        geoms.extend(found.polygons.geometries)
        props.extend(found.polygons.properties)
    props = [{**p, "id": k + 1} for k, p in enumerate(props)]
    return dataclasses.replace(probe, polygons=dataclasses.replace(probe.polygons, geometries=tuple(geoms),
                                                                   properties=tuple(props)),
                               count=len(props), settings=settings)


def _write_structures(result: ChangeResult, out: Path, *, gpkg: Path | None) -> dict[str, Path]:
    """``structures.geojson``, and a ``structures`` layer added to ``changes.gpkg`` (atomically)."""
    s = result.structures
    if s is None or s.count is None:
        return {}
    written = {"structures.geojson": s.polygons.write_geojson(out / "structures.geojson")}
    if gpkg is not None and s.count:
        import shutil

        import pyogrio.raw
        import shapely

        geoms = np.empty(len(s.polygons), dtype=object)
        geoms[:] = list(s.polygons.geometries)
        parts, owner = shapely.get_parts(geoms, return_index=True)
        multi = shapely.multipolygons(parts, indices=owner)
        props = s.polygons.properties
        names = [k for k in props[0]]
        values = [np.asarray([p[k] for p in props], dtype=object if isinstance(props[0][k], str) else None)
                  for k in names]
        with _io.atomic_path(gpkg) as tmp:
            shutil.copyfile(gpkg, tmp)
            pyogrio.raw.write(tmp, shapely.to_wkb(multi, flavor="iso"), values, names, layer="structures",
                              driver="GPKG", geometry_type="MultiPolygon", crs=result.grid.crs.to_wkt())
    return written


def _flat(p: dict[str, Any]) -> dict[str, Any]:
    q = {k: v for k, v in p.items() if k != "bbox"}
    if p.get("bbox") is not None:
        q.update(dict(zip(("bbox_minx", "bbox_miny", "bbox_maxx", "bbox_maxy"), p["bbox"])))
    return q


# --------------------------------------------------------------------------- the pipeline
def _masks_summary(excluded: int, n_valid: int, px: float | None, aux: list[str]) -> dict[str, Any]:
    """``summary.json``'s ``masks``: the pixels with data left out as cloud, cloud shadow or flagged by a
    classification band (``excluded_pixels``), their area (about: pixels x pixel size squared) and
    their share of the pixels with data.

    >>> _masks_summary(2500, 97500, 10.0, [])
    {'excluded_pixels': 2500, 'excluded_area_ha': 25.0, 'excluded_share': 0.025, 'classification_bands': []}
    """
    return {
        "excluded_pixels": excluded,
        "excluded_area_ha": round(excluded * px * px / 10_000, 2) if px is not None else None,
        "excluded_share": round(excluded / max(excluded + n_valid, 1), 4),
        "classification_bands": aux,
    }


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


def _is_path(value: Any) -> bool:
    return isinstance(value, (str, os.PathLike))


@contextlib.contextmanager
def _named(name: str) -> Iterator[None]:
    """An error about an input starts with which input it is (``before``, ``after``, ``truth``)."""
    try:
        yield
    except ChangedetError as exc:
        text = str(exc)
        if text.startswith("input "):  # io's word for a path it was given
            text = text[len("input "):]
        if not text.startswith(name):
            exc.args = (f"{name} {text}",)
        raise


def _check_input(value: Any, name: str) -> tuple[str, ...] | None:
    """A local input path that is missing, or not a regular file or folder (a FIFO), refused by name;
    the band names of a local input's header or of a GeoRaster (None for a URL, not read here)."""
    if _is_path(value) and not is_remote(value):
        _io.check_input_path(value, name)
        with _named(name):  # its header, before any pixel: what cannot be read is said now, with the date
            return _io.raster_grid(value)[1]
    if isinstance(value, GeoRaster):
        if problem := grid_problem(value.grid):
            raise InvalidParameterError(f"{name} GeoRaster {problem}")
        return tuple(value.band_names)
    return None


def _check_bands(band_names: Mapping[str, tuple[str, ...] | None], bands: Sequence[str] | None) -> None:
    """Bands asked for by name that an input lacks (its names from :func:`_check_input`; None: not
    known before reading), refused by name before any work."""
    if not bands:
        return
    for name, have in band_names.items():
        if have is None:
            continue
        if missing := [b for b in bands if b not in have]:
            raise BandMismatchError(
                f"the {name} image has no band {' or '.join(map(repr, missing))}: its bands are {list(have)}; pass "
                "names both images have (--bands / bands=), or leave them out to use every band they share"
            )


def check_inputs(before: Any, after: Any, *, bands: Sequence[str] | None = None) -> None:
    """Refuse, before any work, inputs that cannot be read or lack the bands asked for.

    Parameters
    ----------
    before, after : path or GeoRaster
        As for :func:`detect_changes`.
    bands : sequence of str, optional
        Band names the run is asked to use.

    Raises
    ------
    ChangedetError
        A missing or unreadable input (named ``before`` or ``after``), or a band it lacks.
    """
    _check_bands({"before": _check_input(before, "before"), "after": _check_input(after, "after")}, bands)


def _as_raster(value: Any, name: str) -> tuple[GeoRaster, dict[str, Any]]:
    if isinstance(value, GeoRaster):
        return value, {"path": None, "sha256": None}
    with _named(name):
        raster = _io.read_raster(value)
    return raster, {"path": os.fspath(value), "sha256": input_hashes(value)[0]}


def check_output_folder(out: str | os.PathLike[str], *, overwrite: bool, request: dict[str, Any] | None = None) -> None:
    """Refuse a folder that already holds a finished result (its summary.json) unless ``overwrite``.

    Parameters
    ----------
    out : path
        The output folder.
    overwrite : bool
        Whether a finished result there may be replaced.
    request : dict, optional
        The new run's options and inputs (``changedet._outdir.request_record``): the
        message then says whether the result there was made with the same ones.
    """
    summary = Path(out) / "summary.json"
    if summary.exists() and not overwrite:
        why = ""
        if request is not None:
            reason = _outdir.rerun_reason(summary, request)
            why = " for these inputs and options" if reason is None else f"; for this run the {reason}"
        raise FileExistsError(
            f"{str(out)!r} already holds a finished result (summary.json){why}; pass overwrite=True "
            "(--overwrite on the command line) or choose another folder"
        )


def remove_stale_temporaries(out: str | os.PathLike[str]) -> list[Path]:
    """Delete what a killed run left in an output folder: the temporary files of its
    outputs (``.change_mask.*.partial.tif`` ...) and the compressed tiles of its rasters
    (``.change_score.*.tiles``, as large as the raster).  Only names this package makes
    are touched; returns the paths removed.

    Parameters
    ----------
    out : path
        The output folder.

    Returns
    -------
    list of Path
    """
    return _outdir.remove_temporaries(out, OUTPUT_FILES)


def detect_changes(
    before: GeoRaster | str | os.PathLike[str],
    after: GeoRaster | str | os.PathLike[str],
    *,
    method: str = "auto",
    threshold: str | float | None = None,
    min_area_m2: float | None = None,
    aoi: Any = None,
    align: bool = True,
    coregister: bool | None = None,
    opening_px: int | None = None,
    fill_holes_m2: float | None = None,
    pixel_size_m: float | None = None,
    bands: Sequence[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    tiled: bool | None = None,
    overwrite: bool = False,
    truth: Any = None,
    figures: bool = True,
    examples: Any = None,
    model: Any = None,
    dates: Any = None,
    vegetation_gain: str = "auto",
    seasonal: str = "auto",
    window_px: int = 512,
    workers: int | None = None,
    progress: bool = True,
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
        images without georeferencing and without ``pixel_size_m``); with ``examples`` or
        ``model`` the larger of 4 pixels and 20 m² (:data:`changedet.spec.LEARNED_MIN_AREA_M2`:
        the analyst's examples say what counts, a garage included).
    aoi : str, dict, sequence or geometry, optional
        Area of interest in lon/lat: ``"minx,miny,maxx,maxy"``, GeoJSON (dict or file); for
        images without georeferencing, in their pixel coordinates (x = column, y = row).
    align : bool
        Reproject the after image onto the before image's grid when they differ
        (default True); False raises :class:`~changedet.errors.GridMismatchError` instead.
    coregister : bool, optional
        Estimate and remove the residual shift between the dates.  Default (None): yes,
        except with ``examples`` or ``model`` on pixels finer than 2 m or of unknown size
        (:attr:`changedet.spec.RunSpec.coregister` says why).
    opening_px : int, optional
        Radius of the morphological opening; default 1 for pixels finer than 5 m, else 0.
    fill_holes_m2 : float, optional
        Fill unchanged holes up to this area inside changed areas; default the minimum mapping unit
        (with ``examples`` or ``model``, the larger of 4 pixels and 50 m², as without them).
    pixel_size_m : float, optional
        Pixel size for images without georeferencing (areas are in pixels otherwise).
    bands : sequence of str, optional
        Use only these bands.
    out : path, optional
        Also write the output files into this folder.
    tiled : bool, optional
        Run window by window in bounded memory (needs file inputs and ``out``).  Default:
        when the analysis grid has more than :data:`changedet.tiling.TILED_MIN_PIXELS`
        pixels.  The windowed result's rasters are previews; the full-resolution mask
        and score are the files in ``out``.
    overwrite : bool
        Replace a finished result already in ``out``.
    truth : path or GeoRaster, optional
        A truth mask on the analysis grid (OSCD's 1/2 coding or 0/1); its accuracy goes
        into the summary (in-memory path).
    figures : bool
        Draw ``overview.png`` into ``out`` (default True).
    examples : path, dict or Examples, optional
        The analyst's examples: a GeoJSON FeatureCollection of points or polygons, each with a
        boolean ``change`` property (lon/lat, or pixel coordinates x = col + 0.5, y = row + 0.5
        for images without georeferencing).  A classifier trained on them
        (:mod:`changedet.learn`) gives the mask; the summary records the number of examples
        and their cross-validated accuracy.
    model : path or LearnedModel, optional
        A classifier trained before (``changedet train``) to apply instead.
    dates : (str, str) or str, optional
        Acquisition dates of the before and after images (``YYYY-MM-DD``, or
        ``"BEFORE,AFTER"``), for the summary and the figure titles; by default they are read
        from the inputs (GeoTIFF tags, ``item.json``, ``dates.txt``, Sentinel-2/Landsat names).
    vegetation_gain : {"auto", "keep", "drop"}
        Areas classed ``vegetation_gain`` (a new lawn, crops, a season: not construction) in
        the change mask and the changed areas or not.  ``"auto"``: left out on pixels finer
        than 5 m (:data:`changedet.spec.VEGETATION_GAIN_OUT_BELOW_M`), kept on coarser ones and
        in a classifier's run; ``summary.json`` counts what was left out under
        ``results.left_out``.
    seasonal : {"auto", "keep", "drop"}
        Areas classed ``seasonal`` (a whole parcel changed, its outline on edges the before
        image already had: fields sown, harvested, greening with the season; or vegetation lost
        where neither date has an edge at the outline: part of a field browning, see
        :func:`changedet.objects.classify_change`) in the change mask and the changed areas or not.  ``"auto"``: left out, kept in a classifier's run;
        counted under ``results.left_out`` like vegetation gain.
    window_px, workers, progress
        The windowed path's window edge, threads and progress bar.

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
    t0 = time.perf_counter()
    # ---- every option validated once, before any heavy work
    options = run_options(method=method, threshold=threshold, min_area_m2=min_area_m2, opening_px=opening_px,
                          fill_holes_m2=fill_holes_m2, pixel_size_m=pixel_size_m, aoi=aoi, align=align,
                          coregister=coregister, bands=bands, examples=examples, model=model, dates=dates,
                          vegetation_gain=vegetation_gain, seasonal=seasonal)
    band_names: dict[str, tuple[str, ...] | None] = {}
    for name, value in (("before", before), ("after", after)):
        if not (_is_path(value) or isinstance(value, GeoRaster)):
            raise InvalidParameterError(
                f"{name} must be a path to a raster (file, band folder or URL) or a GeoRaster; got {type(value).__name__}"
            )
        band_names[name] = _check_input(value, name)
    _check_bands(band_names, options.bands)
    check_call(flags={"overwrite": overwrite, "figures": figures, "progress": progress}, optional_flags={"tiled": tiled},
               counts={"window_px": (window_px, 16), "workers": (workers, 1)})
    if truth is not None:
        if not (_is_path(truth) or isinstance(truth, GeoRaster)):
            raise InvalidParameterError(f"truth must be a path to a mask or a GeoRaster, got {type(truth).__name__}")
        _check_input(truth, "truth")
    with contextlib.ExitStack() as held:
        if out is not None:
            _io.check_output_path(out)
            _io.gpkg_timestamp()  # a malformed SOURCE_DATE_EPOCH is refused now, not after the work
            # one run at a time in a folder; what a failed or interrupted run wrote does not stay
            held.enter_context(_outdir.folder_lock(out))
            check_output_folder(out, overwrite=overwrite,
                                request=_outdir.request_record(options, before, after) if not overwrite else None)
            held.enter_context(_discarded_on_failure(out))
        # ---- the one place the path is chosen
        if tiled is None:
            tiled = _is_path(before) and _is_path(after) and _needs_windows(before, after)
        elif not tiled and (need := _in_memory_bytes(before, after)) > (free := _io.available_memory_bytes() * _io.MEMORY_SHARE):
            raise InvalidParameterError(
                f"holding this pair in memory needs about {need / 2**20:,.0f} MiB, more than the {free / 2**20:,.0f} MiB "
                "free; run window by window (drop tiled=False / --in-memory, or pass --tiled) or crop the images first"
            )
        if tiled:
            if not (_is_path(before) and _is_path(after)):
                raise InvalidParameterError("tiled=True reads the images window by window: pass file paths, not GeoRasters")
            if out is None:
                raise InvalidParameterError(
                    "this scene takes the windowed path (bounded memory), which writes its full-resolution rasters to a "
                    "folder: pass out='folder' (or tiled=False to hold everything in memory)"
                )
            if not options.align:
                raise InvalidParameterError("the windowed path always aligns the after image onto the before grid; drop "
                                            "align=False (--no-align) or pass tiled=False (--in-memory)")
            if options.pixel_size_m is not None:
                raise InvalidParameterError("pixel_size_m applies to images without georeferencing, which the windowed "
                                            "path does not take; pass tiled=False (--in-memory)")
            if truth is not None:
                raise InvalidParameterError("truth is scored on the in-memory path; pass tiled=False (--in-memory), or "
                                            "score the written change_mask.tif with changedet evaluate")
            if (helper := _figproc.current()) is not None:
                helper.cancel()  # the command's figure helper is for in-memory runs: its core goes to the windows
            return _detect_windowed(before, after, options, out=Path(out), window_px=window_px, workers=workers,
                                    progress=progress, figures=figures, t0=t0)
        if out is not None and figures and (helper := _figproc.current()) is not None and options.aoi is None:
            helper.expect_overview()  # its images are sent once co-registered (see _prepare_figure)
        if out is not None and figures and _figproc.current() is None:
            # the figure's libraries load on a thread while the pair is read and scored (with the
            # command line's figure helper they load in that process instead: no GIL shared)
            threading.Thread(target=_preload_writers, name="changedet-preload", daemon=True).start()
        with one_blas_thread():
            result = _detect_in_memory(before, after, options, truth=truth, t0=t0)
        if out is not None:
            result.save(out, overwrite=overwrite, figures=figures)
        return result


@contextlib.contextmanager
def _discarded_on_failure(out: str | os.PathLike[str]) -> Iterator[None]:
    """On an error or interrupt, remove the result files this run wrote (unless its summary landed)."""
    state = _outdir.outputs_state(out, OUTPUT_FILES)
    try:
        yield
    except BaseException:
        _outdir.discard_unfinished(out, state, names=OUTPUT_FILES)
        raise


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """BLAS on one thread for a run.  Its products here are small (a few bands, blocks of
    128 px for the co-registration's upsampled DFT), where threads only add spin-waiting:
    measured on a busy 2-core machine, 48 complex (30 x 128) @ (128 x 128) products took
    40 ms each on 2 OpenBLAS threads and 0.17 ms on one."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


def train_model(
    pairs: Sequence[tuple[Any, Any, Any]],
    out: str | os.PathLike[str],
    *,
    bands: Sequence[str] | None = None,
    pixel_size_m: float | None = None,
    seed: int = 0,
) -> Any:
    """Train a change classifier on labelled pairs and write it to ``out`` (a skops file).

    "Label one site, run a hundred overnight": the model file goes to
    ``detect_changes(..., model=out)`` and ``run_batch(..., model=out)``.

    Parameters
    ----------
    pairs : sequence of (before, after, labels)
        ``before`` and ``after`` as for :func:`detect_changes` (the after image is put on the
        before grid); ``labels`` a truth mask on the before grid (a raster path or GeoRaster:
        1 = change and 0 = no change, or OSCD's 2 and 1; other values unlabelled) or analyst
        examples (a GeoJSON path or dict).
    out : path
        The model file to write.
    bands : sequence of str, optional
        Train on these bands (default: the bands every pair has).
    pixel_size_m : float, optional
        Pixel size for images without georeferencing.
    seed : int
        Random seed of the classifier.

    Returns
    -------
    LearnedModel
        The trained model (also written to ``out``).
    """
    from . import learn

    if not isinstance(pairs, (list, tuple)) or not pairs:
        raise InvalidParameterError(
            f"pairs must be a non-empty list of (before, after, labels), got {type(pairs).__name__} {pairs!r:.60}"
        )
    _io.check_output_path(out, kind="file")
    check_call(counts={"seed": (seed, 0)})
    px = run_options(pixel_size_m=pixel_size_m, bands=bands).pixel_size_m
    prepared = []
    for k, item in enumerate(pairs):
        if not (isinstance(item, (tuple, list)) and len(item) == 3):
            raise InvalidParameterError(f"pair {k + 1} must be (before, after, labels), got {item!r}")
        before, after, labels = item
        b, _ = _as_raster(before, "before")
        a, _ = _as_raster(after, "after")
        if bands is not None:
            b, a = b.select(list(bands)), a.select(list(bands))
        pair = _align.align_pair(b, a)
        b, a = pair.before, pair.after
        if b.crs is None and px is not None:
            from affine import Affine

            b = GeoRaster(b.data, Affine(px, 0, 0, 0, -px, 0) * b.transform, None, b.band_names)
            a = GeoRaster(a.data, b.transform, None, a.band_names)
        spectral = [n for n in b.band_names if n.upper() not in CATEGORICAL_BANDS]
        b, a = b.select(spectral), a.select(spectral)
        prepared.append((b, a, _training_labels(labels, b.grid, k)))
    with learn.threads_for_a_run():  # the pairs' filters and the trees on every core, the same model
        model = learn.train(prepared, pixel_size_m=px, seed=seed)
    model.save(out)
    return model


def _training_labels(labels: Any, grid: Grid, k: int) -> Any:
    """A truth mask as int labels (1 change, 0 no change, -1 unlabelled), or examples as given."""
    from . import learn

    text = os.fspath(labels) if _is_path(labels) else None
    if isinstance(labels, dict) or (text is not None and text.lower().endswith((".geojson", ".json"))):
        return learn.read_examples(labels, grid)
    if isinstance(labels, learn.Examples):
        return labels
    t = _io.read_raster(labels) if text is not None else labels
    arr = t.data[0] if isinstance(t, GeoRaster) else np.asarray(t)
    if arr.shape != grid.shape:
        raise InvalidParameterError(
            f"labels of pair {k + 1} are {arr.shape[0]}x{arr.shape[1]} pixels but the pair's grid is "
            f"{grid.height}x{grid.width}; give a truth mask on the before image's grid"
        )
    from .evaluate import truth_coding

    (change,), (nochange,) = truth_coding(arr)
    out = np.full(arr.shape, -1, dtype=np.int8)
    out[arr == change] = 1
    out[arr == nochange] = 0
    return out


#: An in-memory run's peak over its inputs' whole-read estimate (:data:`changedet.io.READ_BYTES_PER_PIXEL`
#: per pixel and band): measured 3.07 on a 2000 x 2000 x 4-band pair of noise (842 MiB over 275 MiB).
IN_MEMORY_FACTOR = 3.5


def _in_memory_bytes(before: Any, after: Any) -> int:
    """The memory an in-memory run of two paths needs, from their headers (0 for GeoRasters)."""
    total = 0
    for value in (before, after):
        if _is_path(value):
            grid, names = _io.raster_grid(value)
            total += len(names) * grid.height * grid.width * _io.READ_BYTES_PER_PIXEL
    return int(total * IN_MEMORY_FACTOR)


def _needs_windows(before: Any, after: Any) -> bool:
    """Large scenes, and scenes whose in-memory run would not fit in the memory free now."""
    from .tiling import needs_windows

    if needs_windows(before, after):
        return True
    return _in_memory_bytes(before, after) > _io.available_memory_bytes() * _io.MEMORY_SHARE


def _overview_images(before: GeoRaster, after: GeoRaster, dates: Any, pixel_size_m: float | None) -> dict[str, Any]:
    """The arguments of :func:`changedet.plot.plot_overview` that do not depend on the changes:
    the two images, the panels' titles with the dates, and the pixel size of a grid without CRS."""
    out: dict[str, Any] = {"before": before, "after": after}
    if before.grid.crs is None:
        out["pixel_size_m"] = pixel_size_m
    dates = dates or {}
    if dates.get("before") or dates.get("after"):
        out["labels"] = tuple(f"{side} ({dates[side]})" if dates.get(side) else side for side in ("before", "after"))
    return out


def _prepare_figure(spec: RunSpec, b_data: np.ndarray, a_data: np.ndarray, inputs: dict[str, Any]) -> None:
    """Send the command's figure helper the images of the overview (``a_data`` the after image
    as co-registered) as the result will hold them: it draws them while the pair is scored (and
    compares them with the result's before drawing the changes over them)."""
    helper = _figproc.current()
    if helper is None:
        return
    grid, ns = spec.grid, len(spec.spectral)
    helper.prepare_overview(_overview_images(
        GeoRaster(b_data[:ns], grid.transform, grid.crs, spec.spectral),
        GeoRaster(a_data[:ns], grid.transform, grid.crs, spec.spectral),
        _dates.input_dates(inputs, given=spec.options.dates),
        None if spec.in_px else round(spec.px_size, 4)))  # the summary's grid.pixel_size_m


def _detect_in_memory(before: Any, after: Any, options: RunOptions, *, truth: Any, t0: float) -> ChangeResult:
    timings: dict[str, float] = {}
    # ---- read
    b_raster, b_info = _as_raster(before, "before")
    a_raster, a_info = _as_raster(after, "after")
    if options.bands is not None:
        b_raster, a_raster = b_raster.select(list(options.bands)), a_raster.select(list(options.bands))
    timings["read"] = time.perf_counter() - t0

    # ---- common grid
    t = time.perf_counter()
    if not options.align:
        check_same_grid(b_raster, a_raster)
    pair = _align.align_pair(b_raster, a_raster)
    grid = pair.grid
    b, a = pair.before, pair.after
    inside = None
    context = None
    if options.aoi is not None:
        # the statistics come from the whole pair around the area (the answer inside the
        # area must not depend on whether it was given); only the area is processed
        context = (b, a)
        grid, inside = aoi_on_grid(options.aoi, grid, source=options.aoi_source)
        b, a = _align.align_to(b, grid), _align.align_to(a, grid)
    spec = make_spec(options, grid, b.band_names)
    order = list(spec.band_order)
    b_data, a_data = b.select(order).data, a.select(order).data
    timings["align"] = time.perf_counter() - t
    inputs = {
        "before": {**b_info, "bands": list(b_raster.band_names), "grid": describe_grid(b_raster.grid)},
        "after": {**a_info, "bands": list(a_raster.band_names), "grid": describe_grid(a_raster.grid)},
    }

    # ---- the fit on the whole pair, then the processor on one window covering the grid
    with contextlib.ExitStack() as stack:
        if spec.options.learned:  # the classifier's features of the pair: computed for the fit, kept for the score
            from .learn import reusing_features, threads_for_a_run

            stack.enter_context(reusing_features())
            # one pair in memory: its filters, trees and scores on every core (a scene's
            # windows are the windowed path's parallelism instead), unless the caller chose
            stack.enter_context(threads_for_a_run())
        fit, w = _fit_and_process(spec, b_data, a_data, inside, context, timings,
                                  on_registered=lambda after: _prepare_figure(spec, b_data, after, inputs))
    if not w.valid.any():
        raise EmptyDataError(
            f"no pixel is valid in both dates on the analysis grid ({describe_grid(grid)}): "
            "nodata, clouds or the area of interest leave nothing to compare"
        )
    ns = len(spec.spectral)
    before_r = GeoRaster(b_data[:ns], grid.transform, grid.crs, spec.spectral)
    after_r = GeoRaster(w.after, grid.transform, grid.crs, spec.spectral)
    score_r = GeoRaster(w.score[np.newaxis], grid.transform, grid.crs, ("score",))
    result = _finish_in_memory(spec, fit, w.parts, w.valid, before_r, after_r, score_r, dict(w.layers), inputs,
                               tuple(pair.dropped_bands), w.excluded, timings, t0=t0, truth=truth)
    return result


def _fit_and_process(spec: RunSpec, b_data: np.ndarray, a_data: np.ndarray, inside: np.ndarray | None,
                     context: tuple[GeoRaster, GeoRaster] | None, timings: dict[str, float], *,
                     on_registered: Callable[[np.ndarray], None] | None = None) -> tuple[Any, Any]:
    """The fit on the whole pair, then the processor on one window covering the grid (or the
    area of interest cut from the whole pair ``context``); ``on_registered`` as for
    :func:`changedet.window.fit_run` (a run without an area of interest)."""
    t = time.perf_counter()
    order = list(spec.band_order)
    if context is None:
        fit = _window.fit_run(spec, [_window.SampleBlock(b_data, a_data, inside)], whole=True,
                              on_registered=on_registered)
    else:  # the whole pair's bands in the run's order, once: the fit and the area's halo read them
        whole_pair = _window.SampleBlock(context[0].select(order).data, context[1].select(order).data)
        fit = _window.fit_run(spec, [whole_pair], whole=False,
                              training=_window.SampleBlock(b_data, a_data) if spec.examples is not None else None)
    timings["fit"] = time.perf_counter() - t
    t = time.perf_counter()
    if context is None:
        w = _window.process_window(spec, fit, b_data, a_data, inside=inside, keep=True)
    else:  # the area with the pixels around it that its score and opening reach
        w = _process_area(spec, fit, whole_pair, context[0].grid, inside)
        del whole_pair
    timings["window"] = time.perf_counter() - t
    return fit, w


def _process_area(spec: RunSpec, fit: _window.RunFit, whole_pair: _window.SampleBlock, full: Grid,
                  inside: np.ndarray) -> Any:
    """The processor on the area of interest's grid, cut from the whole pair (on ``full``, bands
    in the run's order) with the fit's halo around it, so pixels near the area's edge are
    judged as in a run without it."""
    col0 = int(round((spec.grid.transform.c - full.transform.c) / full.transform.a))
    row0 = int(round((spec.grid.transform.f - full.transform.f) / full.transform.e))
    h = int(fit.halo_px)
    r0, c0 = max(row0 - h, 0), max(col0 - h, 0)
    r1, c1 = min(row0 + spec.grid.height + h, full.height), min(col0 + spec.grid.width + h, full.width)
    b_w = whole_pair.before[:, r0:r1, c0:c1]
    a_w = whole_pair.after[:, r0:r1, c0:c1]
    inner = (slice(row0 - r0, row0 - r0 + spec.grid.height), slice(col0 - c0, col0 - c0 + spec.grid.width))
    inside_w = np.zeros((r1 - r0, c1 - c0), bool)
    inside_w[inner] = inside
    return _window.process_window(spec, fit, b_w, a_w, inner=inner, inside=inside_w, keep=True)


#: A changed area whose new structures cover at least this share of it is new construction,
#: whatever its mean index changes say (a construction site of new blocks on cleared ground
#: reads as vegetation loss on average: bare soil dominates it)
BUILT_SHARE = 0.10


def _built_where_structures(polygons: Any, structures: Any) -> Any:
    """The changed areas, those holding new structures over ``BUILT_SHARE`` of their area
    classed ``new_construction``."""
    if structures is None or not structures.count:
        return polygons
    built: dict[Any, float] = {}
    for p in structures.polygons.properties:
        built[p.get("change_id")] = built.get(p.get("change_id"), 0.0) + float(p.get("area_m2") or 0.0)
    props = []
    changed = False
    for p in polygons.properties:
        area = p.get("area_m2")
        share = built.get(p.get("id"), 0.0) / float(area) if isinstance(area, (int, float)) and area > 0 else 0.0
        if share >= BUILT_SHARE and p.get("change_class") != "new_construction":
            p = {**p, "change_class": "new_construction"}
            changed = True
        props.append(p)
    return dataclasses.replace(polygons, properties=tuple(props)) if changed else polygons


def _take(polygons: Any, idx: Sequence[int],
          relabel: Callable[[int, dict[str, Any]], dict[str, Any]] | None = None) -> Any:
    """The polygons at ``idx``, in that order; ``relabel(k, properties)`` gives the ``k``-th one's
    properties when given."""
    props = [polygons.properties[i] for i in idx]
    return dataclasses.replace(polygons, geometries=tuple(polygons.geometries[i] for i in idx),
                               properties=tuple(relabel(k, p) if relabel else p for k, p in enumerate(props)))


def _left_out_classes(spec: RunSpec) -> tuple[str, ...]:
    """The change classes the run leaves out of the mask and the changed areas."""
    out = []
    if not spec.vegetation_gain_in_mask:
        out.append("vegetation_gain")
    if not spec.seasonal_in_mask:
        out.append("seasonal")
    return tuple(out)


def _leave_out_classes(spec: RunSpec, polygons: Any, structures: Any) -> tuple[Any, Any, dict[str, Any] | None]:
    """The changed areas without those of the classes the run leaves out of the mask (vegetation
    gain: :attr:`changedet.spec.RunSpec.vegetation_gain_in_mask`; seasonal change:
    :attr:`changedet.spec.RunSpec.seasonal_in_mask`), renumbered 1, 2, ... in their order; the
    structures in the areas kept; and what was left out, per class (None when the options leave
    nothing out)."""
    classes = _left_out_classes(spec)
    if not classes:
        return polygons, structures, None
    left: dict[str, Any] = {}
    gone: set[int] = set()
    for cls in classes:
        out = [i for i, p in enumerate(polygons.properties) if p.get("change_class") == cls]
        left[cls] = {"count": len(out), "area_px": int(sum(polygons.properties[i]["area_px"] for i in out)),
                     "area_m2": None if spec.in_px else round(sum(float(polygons.properties[i]["area_m2"]) for i in out), 2)}
        gone.update(out)
    if not gone:
        return polygons, structures, left
    kept = [i for i in range(len(polygons.properties)) if i not in gone]
    new_id = {polygons.properties[i].get("id"): k + 1 for k, i in enumerate(kept)}
    polygons = _take(polygons, kept, lambda k, p: {**p, "id": new_id[p.get("id")]})
    if structures is not None and structures.count is not None:
        s_kept = [j for j, q in enumerate(structures.polygons.properties) if q.get("change_id") in new_id]
        s_polys = _take(structures.polygons, s_kept,
                        lambda k, q: {**q, "id": k + 1, "change_id": new_id[q["change_id"]]})
        structures = dataclasses.replace(structures, polygons=s_polys, count=len(s_kept))
    return polygons, structures, left


def _finish_in_memory(
    spec: RunSpec, fit: _window.RunFit, parts: list[Any], valid: np.ndarray, before: GeoRaster, after: GeoRaster,
    score: GeoRaster, layers: dict[str, np.ndarray], inputs: dict[str, Any], dropped: tuple[str, ...],
    excluded: int, timings: dict[str, float], *, t0: float | None = None, truth: Any = None,
) -> ChangeResult:
    """Polygons from the parts, the mask from the polygons, the summary: the in-memory
    run's last stage (and :meth:`ChangeResult.rethreshold`'s)."""
    grid = spec.grid
    t = time.perf_counter()
    polygons = _objects.assemble_polygons(parts, grid, min_area_m2=spec.min_area_m2,
                                          fill_holes_m2=spec.fill_holes_m2, pixel_size_m=spec.options.pixel_size_m,
                                          min_peak=fit.min_peak, min_peak_exempt_px=_window.peak_exempt_px(spec))
    kept = _objects.polygons_to_mask(polygons, grid) & valid
    mask_arr = np.where(valid, kept.astype("uint8"), NODATA_MASK).astype("uint8")
    mask = GeoRaster(mask_arr[np.newaxis], grid.transform, grid.crs, ("change",))
    timings["polygons"] = time.perf_counter() - t
    if t0 is not None:
        timings["total"] = time.perf_counter() - t0
    extra: dict[str, Any] = {"path": "in-memory", "excluded": excluded}
    t = time.perf_counter()
    structures = _structures.find_structures(mask, after, areas=polygons, before=before,
                                             pixel_size_m=spec.options.pixel_size_m,
                                             classifier_mask=spec.options.learned)
    polygons = _built_where_structures(polygons, structures)
    n_areas = len(polygons)
    polygons, structures, left_out = _leave_out_classes(spec, polygons, structures)
    if len(polygons) != n_areas:  # the mask without the areas left out
        kept = _objects.polygons_to_mask(polygons, grid) & valid
        mask_arr = np.where(valid, kept.astype("uint8"), NODATA_MASK).astype("uint8")
        mask = GeoRaster(mask_arr[np.newaxis], grid.transform, grid.crs, ("change",))
    timings["structures"] = time.perf_counter() - t
    accuracy = None
    if truth is not None:
        accuracy = _accuracy(mask, truth)
    summary = build_summary(
        spec, fit, polygons=polygons, structures=structures.summary(), left_out=left_out,
        changed=int((mask_arr == 1).sum()), n_valid=int(valid.sum()),
        inputs=inputs, dropped=dropped, excluded=excluded, timings=timings,
        tiling={"path": "in-memory", "window_px": max(grid.shape), "halo_px": 0, "windows": 1, "workers": 1,
                "sample": fit.sample, "method_statistics": "global (exact split)", "preview_stride": 1},
        accuracy=accuracy,
    )
    run = _Run(spec, dataclasses.replace(fit, sample_result=None, sample_pair=None), inputs, dropped, extra)
    return ChangeResult(before, after, mask, score, polygons, float(fit.threshold), json.dumps(summary), layers, run,
                        structures)


def _accuracy(mask: GeoRaster, truth: Any) -> dict[str, Any]:
    from .evaluate import evaluate, nodata_values, truth_coding

    t = _io.read_raster(truth) if _is_path(truth) else truth
    if not isinstance(t, GeoRaster):
        raise InvalidParameterError(f"truth must be a path to a mask or a GeoRaster, got {type(truth).__name__}")
    data = t.data[0]
    change, nochange = truth_coding(data)
    kw = {"truth_change_values": change, "truth_nochange_values": nochange, "ignore_values": nodata_values(change)}
    if t.crs is None:
        t = data  # no georeferencing: compared by shape (NaN is nodata)
    return evaluate(mask, t, **kw).as_dict()


def _detect_windowed(before: Any, after: Any, options: RunOptions, *, out: Path, window_px: int,
                     workers: int | None, progress: bool, figures: bool, t0: float) -> ChangeResult:
    # For the whole run: no cyclic garbage collection (the run makes few reference cycles;
    # with thousands of polygon parts alive each full collection rescans them: measured
    # about 1.5 s of a 10980 x 10980 run), and BLAS on one thread.
    from .tiling import WindowedScene

    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        with one_blas_thread():
            return _run_windowed(before, after, options, out=out, window_px=window_px, workers=workers,
                                 progress=progress, figures=figures, t0=t0, scene_cls=WindowedScene)
    finally:
        if gc_was_enabled:
            gc.enable()


def _preload_writers() -> None:
    with contextlib.suppress(Exception):
        import skimage.registration  # noqa: F401  (co-registration, needed first)

        from . import plot  # noqa: F401  (matplotlib)


def _run_windowed(before: Any, after: Any, options: RunOptions, *, out: Path, window_px: int, workers: int | None,
                  progress: bool, figures: bool, t0: float, scene_cls: Any) -> ChangeResult:
    cpu_start = time.process_time()  # all threads, as every figure named *_cpu
    timings: dict[str, float] = {}
    # the inputs' SHA-256 for the summary, computed beside the work (hashlib releases the GIL)
    hasher = ThreadPoolExecutor(max_workers=1)
    hashes = hasher.submit(input_hashes, before, after)
    # the figure and GeoPackage libraries load while the sample is read and fitted
    threading.Thread(target=_preload_writers, name="changedet-preload", daemon=True).start()
    # the windows run the compiled kernels (no GIL: all cores); they load, or after an
    # install compile, on a thread while the sample is read
    loading = _kernels.use_compiled(background=True)
    try:
        # ---- grids and bands (metadata only)
        t = time.perf_counter()
        grid_b, names_b = _io.raster_grid(before)
        grid_a, names_a = _io.raster_grid(after)
        wanted = list(options.bands) if options.bands is not None else [n for n in names_b if n in names_a]
        if not wanted:
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
        scene_grid = grid  # the statistics of an area of interest come from the scene around it
        if options.aoi is not None:
            grid, _ = aoi_on_grid(options.aoi, grid, source=options.aoi_source)
        spec = make_spec(options, grid, wanted)
        out.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(out)  # a killed run's scratch tiles can be hundreds of MB
        _outdir.clear_outputs(out, OUTPUT_FILES)  # an old summary.json must not vouch for the files this run replaces
        scene = scene_cls(before, after, grid, spec.band_order, out, window_px=window_px, workers=workers,
                          progress=progress)
        timings["open"] = time.perf_counter() - t
        with scene:
            # ---- the fit, on the whole scene or a lattice of blocks
            t = time.perf_counter()
            blocks, whole = scene.read_sample(budget_px=SAMPLE_BUDGET_PX, grid=scene_grid)
            sample = [_window.SampleBlock(b_s, a_s) for w, b_s, a_s in blocks]
            del blocks
            training, offset = None, (0, 0)
            if spec.examples is not None and not whole:
                training, offset = _training_window(spec, scene)
            fit = _window.fit_run(spec, sample, whole=whole, training=training, training_offset=offset)
            fit = dataclasses.replace(fit, sample_result=None, sample_pair=None)
            del sample
            timings["sample_fit"] = time.perf_counter() - t
            timings["sample_cpu"] = time.process_time() - cpu_start

            # ---- every window through the processor
            def process(plan: Any, b_o: np.ndarray, a_o: np.ndarray, finite: np.ndarray) -> Any:
                core = plan.core
                edges = (core.row_off > 0, core.row_off + core.height < grid.height,
                         core.col_off > 0, core.col_off + core.width < grid.width)
                return _window.process_window(spec, fit, b_o, a_o, offset=(int(core.row_off), int(core.col_off)),
                                              inner=plan.inner, edges=edges, inside=_inside(spec, plan.outer),
                                              finite=finite)

            res = scene.run(process, halo=fit.halo_px)
            cpu_after = time.process_time()
            t = time.perf_counter()
            polygons = _objects.assemble_polygons(res.parts, grid, min_area_m2=spec.min_area_m2,
                                                  fill_holes_m2=spec.fill_holes_m2, min_peak=fit.min_peak,
                                                  min_peak_exempt_px=_window.peak_exempt_px(spec))
            timings["polygons"] = time.perf_counter() - t
            t = time.perf_counter()
            structures = _windowed_structures(scene, spec, polygons)
            polygons = _built_where_structures(polygons, structures)
            polygons, structures, left_out = _leave_out_classes(spec, polygons, structures)
            timings["structures"] = time.perf_counter() - t
            changed = scene.publish(polygons)
            stride = res.stride
            prev_t = grid.transform * _affine_scale(stride)
            ns = len(spec.spectral)
            b_prev = GeoRaster(res.previews["before"][:ns], prev_t, grid.crs, spec.spectral)
            a_prev = GeoRaster(res.previews["after"][:ns], prev_t, grid.crs, spec.spectral)
            score_prev = GeoRaster(res.previews["score"][np.newaxis], prev_t, grid.crs, ("score",))
            inputs = input_info(before, after, names_b, names_a, grid_b, grid_a, hashes=hashes.result())
            dropped = tuple(n for n in (*names_b, *names_a) if n not in wanted)
            # the vectors and the figure while the final mask is burnt and both COGs published
            mask_prev_pending = GeoRaster(res.previews["mask"][np.newaxis], prev_t, grid.crs, ("change",))
            draft = ChangeResult(b_prev, a_prev, mask_prev_pending, score_prev, polygons, float(fit.threshold), "{}",
                                 structures=structures)
            written = _write_vectors_and_figure_after_mask(draft, out, changed, figures=figures)
            scene.wait()
            timings.update(scene.timings)
            timings["after_windows_cpu"] = time.process_time() - cpu_after
            timings["total"] = time.perf_counter() - t0
            n_changed = changed.result()
            summary = build_summary(
                spec, fit, polygons=polygons, changed=n_changed, n_valid=res.n_valid, inputs=inputs,
                structures=structures.summary(), left_out=left_out,
                dropped=dropped, excluded=res.excluded, timings=timings,
                tiling={"path": "windowed", "window_px": window_px, "halo_px": fit.halo_px, "windows": res.windows,
                        "workers": scene.workers, "sample": fit.sample, "method_statistics": "global (exact split)",
                        "preview_stride": stride},
                accuracy=None,
            )
            written["report.html"] = _report.write_report(summary, out, properties=polygons.properties)
            summary["outputs"] = sorted([*written, "change_mask.tif", "change_score.tif", "summary.json"])
            _io.write_json(summary, out / "summary.json")
            mask_prev = GeoRaster(res.previews["mask"][np.newaxis].copy(), prev_t, grid.crs, ("change",))
            run = _Run(spec, fit, inputs, dropped, {"path": "windowed", "excluded": res.excluded, "out": str(out)})
            return ChangeResult(b_prev, a_prev, mask_prev, score_prev, polygons, float(fit.threshold),
                                json.dumps(summary), {}, run, structures)
    finally:
        hasher.shutdown(wait=False)
        loading.join()  # a compiler thread must not outlive the run (nor the interpreter)


def _write_vectors_and_figure_after_mask(draft: ChangeResult, out: Path, changed: Any, *,
                                         figures: bool) -> dict[str, Path]:
    """Vectors first (they do not need the mask), then the figure once the mask preview is burnt."""
    written = _write_vectors(draft, out)
    if not figures:
        return written
    changed.result()  # the mask preview is complete once the mask is burnt
    from . import plot

    written["overview.png"] = plot.save_figure(draft.plot(), out / "overview.png")
    return written


#: The largest window read to train a classifier on a whole scene's examples.
TRAINING_BUDGET_PX = 4096 * 4096


def _training_window(spec: RunSpec, scene: Any) -> tuple[_window.SampleBlock, tuple[int, int]]:
    """The window of both dates that holds every example, with a margin for the features."""
    from rasterio.windows import Window

    ex = spec.examples
    margin = 64
    r0, r1 = max(int(ex.row.min()) - margin, 0), min(int(ex.row.max()) + margin + 1, spec.grid.height)
    c0, c1 = max(int(ex.col.min()) - margin, 0), min(int(ex.col.max()) + margin + 1, spec.grid.width)
    if (r1 - r0) * (c1 - c0) > TRAINING_BUDGET_PX:
        raise InvalidParameterError(
            f"the examples spread over {r1 - r0} x {c1 - c0} pixels of this scene, more than the "
            f"{TRAINING_BUDGET_PX // 4096} x 4096 window a classifier is trained on; mark examples in one part of "
            "the scene, or train a model on a crop (changedet train) and pass it with --model"
        )
    w = Window(c0, r0, c1 - c0, r1 - r0)
    b, a = scene.read_window(w)
    return _window.SampleBlock(b, a), (r0, c0)


def _affine_scale(stride: int) -> Any:
    from affine import Affine

    return Affine.scale(stride)


def _inside(spec: RunSpec, window: Any) -> np.ndarray | None:
    """The area of interest over a window of the grid (None without one)."""
    if spec.aoi_grid is None:
        return None
    from rasterio import features

    return features.geometry_mask([spec.aoi_grid], out_shape=(int(window.height), int(window.width)),
                                  transform=window_transform(window, spec.grid.transform), invert=True)


def input_hashes(*paths: Any) -> list[str | None]:
    """SHA-256 of each local input (file or folder); None for URLs.

    Parameters
    ----------
    *paths : path
        The inputs.

    Returns
    -------
    list of str or None
    """
    return [None if is_remote(value) else _io.sha256(value) for value in paths]


def input_info(
    before: Any, after: Any, names_b: Sequence[str], names_a: Sequence[str], grid_b: Grid, grid_a: Grid,
    *, hashes: Sequence[str | None] | None = None,
) -> dict[str, Any]:
    """The ``inputs`` block of a summary: paths, SHA-256 of local files, bands, grids.

    Parameters
    ----------
    before, after : path
        The two inputs.
    names_b, names_a : sequence of str
        Their bands.
    grid_b, grid_a : Grid
        Their grids.
    hashes : sequence of (str or None), optional
        Their SHA-256 when known already.

    Returns
    -------
    dict
    """
    hashes = list(hashes) if hashes is not None else input_hashes(before, after)
    out = {}
    for (key, value, names, g), h in zip((("before", before, names_b, grid_b), ("after", after, names_a, grid_a)), hashes):
        out[key] = {"path": os.fspath(value), "sha256": h, "bands": list(names), "grid": describe_grid(g)}
    return out


def changed_results(changed: int, n_valid: int) -> dict[str, Any]:
    """The summary's figures that come from the number of changed pixels.

    Parameters
    ----------
    changed, n_valid : int
        Changed and valid pixels.

    Returns
    -------
    dict

    Examples
    --------
    >>> changed_results(25, 1000)
    {'changed_pixels': 25, 'changed_fraction': 0.025}
    """
    return {"changed_pixels": int(changed), "changed_fraction": round(changed / n_valid, 6) if n_valid else 0.0}


def build_summary(
    spec: RunSpec,
    fit: _window.RunFit,
    *,
    polygons: _objects.ChangePolygons,
    changed: int,
    n_valid: int,
    inputs: dict[str, Any],
    dropped: Sequence[str],
    excluded: int,
    timings: dict[str, float],
    tiling: dict[str, Any],
    accuracy: dict[str, Any] | None = None,
    structures: dict[str, Any] | None = None,
    left_out: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``summary.json`` of a run (JSON-safe), the same keys whichever path ran.

    Parameters
    ----------
    spec : RunSpec
        The run.
    fit : RunFit
        Its fitted statistics (written under ``fit``).
    polygons : ChangePolygons
        The changed areas.
    changed, n_valid : int
        Changed and valid pixels of the final mask.
    inputs : dict
        From :func:`input_info`.
    dropped : sequence of str
        Bands only one date had.
    excluded : int
        Pixels left out as cloud or shadow.
    timings : dict of str -> float
        Seconds per stage.
    tiling : dict
        How the run was executed (``path``, windows, sample, ...).
    accuracy : dict, optional
        Accuracy against a truth mask.
    structures : dict, optional
        :meth:`changedet.structures.Structures.summary` (``results.structures``); without
        it the summary says they were not counted.
    left_out : dict, optional
        Changed areas left out of the mask by class (``results.left_out``: count, pixels, m²
        per class), None when the run leaves none out.

    Returns
    -------
    dict
    """
    in_px = spec.in_px
    grid = spec.grid
    by_class: dict[str, dict[str, Any]] = {}
    for p in polygons.properties:
        c = by_class.setdefault(p["change_class"], {"count": 0, "area_m2": 0.0 if not in_px else None, "area_px": 0})
        c["count"] += 1
        c["area_px"] += p["area_px"]
        if not in_px:
            c["area_m2"] = round(c["area_m2"] + p["area_m2"], 2)
    total_m2 = polygons.total_area_m2
    px = None if in_px else spec.px_size
    summary: dict[str, Any] = {
        "changedet_version": __version__,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "inputs": inputs,
        "dates": _dates.input_dates(inputs, given=spec.options.dates),
        "parameters": spec.parameters(threshold_method=fit.threshold_method, threshold_value=fit.threshold,
                                      hysteresis=fit.hysteresis),
        "grid": {
            "crs": grid.crs.to_string() if grid.crs is not None else None,
            "transform": list(grid.transform)[:6],
            "shape": list(grid.shape),
            "pixel_size_m": round(px, 4) if px is not None else None,
            "bands_dropped": sorted(set(dropped)),
        },
        "coregistration": fit.shift.as_dict() if spec.coregister else None,
        "results": {
            "n_changes": len(polygons),
            **changed_results(changed, n_valid),
            "valid_pixels": n_valid,
            "nodata_pixels": int(grid.height * grid.width - n_valid),
            "changed_area_m2": round(total_m2, 2) if total_m2 is not None else None,
            "changed_area_ha": round(total_m2 / 10_000, 4) if total_m2 is not None else None,
            "changed_area_acres": round(total_m2 / 4046.8564224, 3) if total_m2 is not None else None,
            "by_class": by_class,
            "structures": structures if structures is not None else {"count": None, "reason": "not counted"},
            "left_out": left_out,
        },
        "masks": _masks_summary(int(excluded), n_valid, px, list(spec.aux)),
        "method_details": fit.method_details,
        "fit": fit.to_dict(),
        # what made this result: a batch or a detect re-runs it when these change
        "request": _outdir.request_record(spec.options, inputs["before"].get("path"), inputs["after"].get("path")),
        "tiling": tiling,
        "accuracy": accuracy,
        "versions": _versions(),
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
    }
    return _jsonable(summary)


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
