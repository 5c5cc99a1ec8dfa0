"""The ``changedet`` command: demo, detect, evaluate, fetch, batch.

Bad input ends with exit code 2 and one line on stderr naming what was wrong and
the fix; no traceback.  Set ``CHANGEDET_DEBUG=1`` to see tracebacks.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from . import __version__, _dates, _figproc, _outdir
from .errors import ChangedetError

__all__ = ["main", "entry", "build_parser"]

_EPILOG = "Docs and examples: README.md in the changedet repository."


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors on one line with the program name (exit code 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests).

    Returns
    -------
    argparse.ArgumentParser
        The ``changedet`` parser with its subcommands; its ``error`` exits with code 2
        after one line on stderr.

    Examples
    --------
    >>> p = build_parser()
    >>> p.parse_args(["detect", "a.tif", "b.tif", "--out", "x"]).method
    'auto'
    """
    from .change import METHODS

    p = _Parser(
        prog="changedet",
        description="See what changed at a site between two satellite or aerial images: where, what kind, how much.",
        epilog=_EPILOG,
    )
    p.add_argument("--version", action="version", version=f"changedet {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    d = sub.add_parser(
        "detect",
        help="detect changes between two images and write the change map, polygons, figure and summary",
        description="Detect changes between BEFORE and AFTER and write change_mask.tif, change_score.tif, "
        "changes.geojson (WGS84), changes.gpkg, overview.png and summary.json into --out.",
        epilog="BEFORE/AFTER: any raster GDAL reads (GeoTIFF/COG, JPEG2000, PNG/JPEG), a URL, a folder of "
        "single-band files (*_B02.tif ...), or a folder written by `changedet fetch`.",
    )
    d.add_argument("before", metavar="BEFORE", help="the earlier image (file, band folder or URL)")
    d.add_argument("after", metavar="AFTER", help="the later image (file, band folder or URL)")
    d.add_argument("--out", required=True, metavar="DIR", help="output folder (created if needed)")
    d.add_argument("--method", default="auto", choices=sorted(METHODS), metavar="M",
                   help=f"change method: {', '.join(sorted(METHODS))} (default: auto)")
    d.add_argument("--threshold", default=None, metavar="T",
                   help="threshold method (otsu, kittler, li, triangle, gmm, chi2), pNN for a percentile "
                   "(e.g. p99), or a number (a fixed score value); default: the method's own")
    d.add_argument("--min-area-m2", type=float, default=None, metavar="A",
                   help="minimum mapping unit in m² (default: the larger of 4 pixels and 50 m²; of 4 pixels and 20 m² "
                   "with --examples or --model)")
    d.add_argument("--aoi", default=None, metavar="GEOJSON|minx,miny,maxx,maxy",
                   help="area of interest in lon/lat: a GeoJSON file or a bbox (pixel coordinates, x = column and y = "
                        "row, for images without georeferencing)")
    d.add_argument("--bands", default=None, metavar="B1,B2,...", help="use only these bands (comma-separated names)")
    reg = d.add_mutually_exclusive_group()
    reg.add_argument("--coregister", dest="coregister", action="store_const", const=True, default=None,
                     help="estimate and remove a shift between the dates (the default, except with --examples "
                     "or --model on pixels finer than 2 m)")
    reg.add_argument("--no-coregister", dest="coregister", action="store_const", const=False,
                     help="skip the co-registration")
    d.add_argument("--no-align", action="store_true", help="fail instead of reprojecting when the grids differ")
    d.add_argument("--pixel-size-m", type=float, default=None, metavar="M",
                   help="pixel size in metres for images without georeferencing (areas in m² instead of pixels)")
    d.add_argument("--truth", default=None, metavar="MASK",
                   help="a ground-truth mask: also score the result (accuracy added to summary.json)")
    d.add_argument("--overwrite", action="store_true", help="replace a finished result already in --out")
    mode = d.add_mutually_exclusive_group()
    mode.add_argument("--tiled", dest="tiled", action="store_const", const=True, default=None,
                      help="run window by window in bounded memory (default for scenes over 4096x4096 pixels)")
    mode.add_argument("--in-memory", dest="tiled", action="store_const", const=False,
                      help="hold both images in memory whatever their size")
    d.add_argument("--no-figures", action="store_true", help="skip overview.png")
    d.add_argument("--examples", default=None, metavar="GEOJSON",
                   help="your examples: points or polygons with a boolean 'change' property (lon/lat); a classifier "
                   "trained on them gives the mask")
    d.add_argument("--model", default=None, metavar="FILE", help="apply a model written by changedet train")
    d.add_argument("--dates", default=None, metavar="BEFORE,AFTER",
                   help="acquisition dates YYYY-MM-DD,YYYY-MM-DD for the summary and the figure (default: read from "
                   "the files' tags, item.json, dates.txt or Sentinel-2/Landsat names)")
    d.add_argument("--vegetation-gain", default="auto", choices=("auto", "keep", "drop"),
                   help="areas of vegetation gain (a new lawn, crops, a season) in the change mask: auto (default) "
                   "leaves them out on pixels finer than 5 m and keeps them on coarser ones; keep; drop")
    d.add_argument("--seasonal", default="auto", choices=("auto", "keep", "drop"),
                   help="areas of seasonal change (a whole parcel changed, its outline on edges the before image "
                   "already had: fields sown, harvested, greening; or vegetation lost where neither date has an "
                   "edge at the outline: part of a field browning) in the change mask: auto (default) leaves them "
                   "out (kept with --examples or --model); keep; drop")

    t = sub.add_parser(
        "train",
        help="train a change classifier on labelled pairs and write it to a model file",
        description="Train a classifier of change on one or more labelled pairs (BEFORE AFTER LABELS, LABELS a truth "
        "mask on the before grid or a GeoJSON file of examples), then apply it with detect --model or batch --model.",
    )
    t.add_argument("triples", nargs="+", metavar="BEFORE AFTER LABELS", help="one or more labelled pairs")
    t.add_argument("--out", required=True, metavar="MODEL", help="the model file to write (skops)")
    t.add_argument("--bands", default=None, metavar="B1,B2,...", help="train on these bands")
    t.add_argument("--pixel-size-m", type=float, default=None, metavar="M",
                   help="pixel size in metres for images without georeferencing")

    e = sub.add_parser(
        "evaluate",
        help="score a predicted change mask against a ground-truth mask",
        description="Confusion matrix, precision, recall, F1, IoU and Cohen's kappa of PREDICTED_MASK "
        "(1 change, 0 no change, 255 nodata) against TRUTH_MASK.",
    )
    e.add_argument("predicted", metavar="PREDICTED_MASK")
    e.add_argument("truth", metavar="TRUTH_MASK")
    e.add_argument("--truth-change", default=None, metavar="V[,V]",
                   help="truth value(s) meaning change (default: 1, or 2 for masks holding only 1 and 2, as OSCD's)")
    e.add_argument("--truth-nochange", default=None, metavar="V[,V]",
                   help="truth value(s) meaning no change (default: 0, or 1 for OSCD-style masks)")
    e.add_argument("--json", action="store_true", help="print the scores as JSON")

    m = sub.add_parser(
        "demo",
        help="run the whole pipeline on the bundled sample tiles",
        description="Detect changes on the bundled sample pairs (a synthetic industrial site with new dormitory "
        "blocks) and write every output plus the accuracy against the truth.",
    )
    m.add_argument("--out", default="demo_output", metavar="DIR", help="output folder (default: demo_output)")
    m.add_argument("--sample", default=None, metavar="NAME", help="one sample pair (default: all)")

    f = sub.add_parser(
        "fetch",
        help="find and download public scenes (STAC) of an area for two dates (or several: --dates)",
        description="Search a STAC API for the least cloudy scene over the area in each date range and download "
        "only the area's pixels into DIR/before and DIR/after (then: changedet detect DIR/before DIR/after --out ...); "
        "with --dates, one folder per date DIR/<date> (then: changedet series DIR --out ...).",
    )
    f.add_argument("--bbox", required=True, metavar="MINX,MINY,MAXX,MAXY", help="area in lon/lat degrees")
    f.add_argument("--before", default=None, metavar="DATE[/DATE]", help="date or range, e.g. 2024-05-01/2024-07-31")
    f.add_argument("--after", default=None, metavar="DATE[/DATE]", help="date or range, e.g. 2025-05-01/2025-07-31")
    f.add_argument("--dates", nargs="+", default=None, metavar="DATE[/DATE]",
                   help="instead of --before/--after: three or more dates or ranges in time order, one scene each")
    f.add_argument("--out", required=True, metavar="DIR")
    f.add_argument("--stac-url", default=None, metavar="URL", help="STAC API (default: Earth Search)")
    f.add_argument("--collection", default=None, metavar="C", help="collection (default: sentinel-2-l2a)")
    f.add_argument("--max-cloud", type=float, default=None, metavar="PCT", help="largest cloud cover over the area, percent")

    b = sub.add_parser(
        "batch",
        help="run detect over many pairs (a CSV site,before,after or a folder of pairs)",
        description="Run detect over every pair; one output folder per pair plus a batch table. Resumable.",
    )
    b.add_argument("pairs", metavar="PAIRS.csv|FOLDER")
    b.add_argument("--out", required=True, metavar="DIR")
    b.add_argument("--workers", type=int, default=1, metavar="N")
    b.add_argument("--scheduler", default=None, metavar="ADDRESS", help="dask.distributed scheduler address")
    b.add_argument("--method", default="auto", choices=sorted(METHODS), metavar="M")
    b.add_argument("--overwrite", action="store_true", help="recompute pairs that already have a finished result")
    b.add_argument("--model", default=None, metavar="FILE", help="apply a model written by changedet train to every pair")
    b.add_argument("--vegetation-gain", default="auto", choices=("auto", "keep", "drop"),
                   help="areas of vegetation gain in the change masks, as for detect (default auto: left out below 5 m)")
    b.add_argument("--seasonal", default="auto", choices=("auto", "keep", "drop"),
                   help="areas of seasonal change in the change masks, as for detect (default auto: left out)")
    _add_series_parser(sub, sorted(METHODS))
    r = sub.add_parser(
        "report",
        help="write report.html for a result folder again (or index.html for a batch folder)",
        description="Write DIR/report.html from a finished result folder (its summary.json, changes.geojson and "
        "overview.png), e.g. one written before reports existed or whose page was deleted; for the --out folder "
        "of changedet batch, write its index.html and every finished site's missing report.html.",
    )
    r.add_argument("folder", metavar="DIR", help="a result folder (holding summary.json) or a batch folder")
    r.add_argument("--title", default=None, metavar="TEXT", help="the page title (default: the folder's name)")
    return p


def _add_series_parser(sub: Any, methods: list[str]) -> None:
    s = sub.add_parser(
        "series",
        help="watch a site over many dates: first-change date per pixel, area per date, an animated GIF",
        description="Compare the first image with each later one (and each with the one before it), put every "
        "result on the first image's grid and write first_change.tif (per pixel the index of the first date of a "
        "lasting change), series.csv and series.png (changed area and structures per date), series.gif and "
        "series.json into --out.",
        epilog="IMAGE...: three or more rasters of one site in time order, or one folder holding them (e.g. "
        "written by `changedet fetch --dates`). Dates: --dates, else each image's metadata (item.json, "
        "the GeoTIFF tag ACQUISITION_DATE).",
    )
    s.add_argument("images", nargs="+", metavar="IMAGE", help="the images in time order, or one folder")
    s.add_argument("--dates", default=None, metavar="D1,D2,...", help="one date (YYYY-MM-DD) per image, increasing")
    s.add_argument("--out", required=True, metavar="DIR", help="output folder (created if needed)")
    s.add_argument("--method", default="auto", choices=methods, metavar="M", help="change method (default: auto)")
    s.add_argument("--threshold", default=None, metavar="T", help="threshold method or value, as for detect")
    s.add_argument("--min-area-m2", type=float, default=None, metavar="A", help="minimum mapping unit in m²")
    s.add_argument("--pixel-size-m", type=float, default=None, metavar="M",
                   help="pixel size in metres for images without georeferencing")
    s.add_argument("--title", default=None, metavar="TEXT", help="the site's name, shown in the chart and the GIF")
    s.add_argument("--no-structures", action="store_true", help="do not count structures per date")
    s.add_argument("--overwrite", action="store_true", help="replace a finished series already in --out")


def _values(text: str | None) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ChangedetError(f"expected comma-separated numbers, got {text!r}") from None


def _print_result(result: Any, out: Path, elapsed: float) -> None:
    s = result.summary["results"]
    area = f"{s['changed_area_ha']:.2f} ha ({s['changed_area_acres']:.1f} acres)" if s["changed_area_ha"] is not None else f"{s['changed_pixels']} px"
    n = s['n_changes']
    print(f"{n} changed area{'' if n == 1 else 's'}, {area}, in {elapsed:.1f} s -> {out}")

    def size(c: dict[str, Any]) -> str:
        return f"{c['area_m2'] / 10_000:.2f} ha" if c.get("area_m2") is not None else f"{c['area_px']} px"

    for cls, c in s["by_class"].items():
        print(f"  {cls:18s} {c['count']:5d}  {size(c)}")
    for cls, c in (s.get("left_out") or {}).items():
        if c.get("count"):  # each class left out has its option, named as the class (--vegetation-gain, --seasonal)
            print(f"  left out: {c['count']} {cls} ({size(c)}; --{cls.replace('_', '-')} keep keeps them)")
    masks = result.summary.get("masks") or {}
    if masks.get("excluded_pixels"):
        where = f"{masks['excluded_area_ha']:.2f} ha" if masks.get("excluded_area_ha") is not None else f"{masks['excluded_pixels']} px"
        print(f"  left out as cloud, cloud shadow or defective: {where} ({masks['excluded_share']:.1%} of the pixels "
              f"with data)")
    st = s.get("structures") or {}
    if st.get("count") is not None:
        med = f", median footprint {st['median_footprint_m2']:.0f} m2" if st.get("median_footprint_m2") else ""
        print(f"  structures: {st['count']}{med}")
    elif st.get("reason"):
        print(f"  structures: not counted ({st['reason']})")
    dates = result.summary.get("dates") or {}
    if dates.get("before") or dates.get("after"):
        print(f"  dates: {dates.get('before') or '?'} -> {dates.get('after') or '?'}")
    caveat = _dates.season_caveat(result.summary)
    if caveat:
        print(f"  note: {caveat}")
    note = (result.summary.get("method_details") or {}).get("note")
    if note:
        print(f"note: {note}", file=sys.stderr)


def _figure_helper_wanted(args: argparse.Namespace) -> bool:
    """Draw the overview in a forked helper (:mod:`changedet._figproc`): only when this process is
    the program's own (not ``main([...])`` called inside another program, which forking would copy),
    with figures, on a run that may be in memory (a windowed run draws from its own preview)."""
    return bool(getattr(args, "own_process", False)) and not args.no_figures and args.tiled is not True


def _print_not_written(out: Path) -> None:
    """Say which output files of the contract a run did not write, and why (from its summary)."""
    try:
        skipped = json.loads((out / "summary.json").read_text(encoding="utf-8")).get("outputs_not_written") or {}
    except (OSError, ValueError, AttributeError):
        return
    for name, why in skipped.items():
        print(f"  no {name}: {why}")


def _cmd_detect(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    # the figure helper is forked first: it imports matplotlib while this process imports the pipeline
    with _figproc.started(_figure_helper_wanted(args), figures=1):
        result = _detect(args)
    acc = result.summary.get("accuracy")
    if acc:
        print(f"accuracy vs truth: F1 {acc['f1']:.3f}  precision {acc['precision']:.3f}  recall {acc['recall']:.3f}  "
              f"kappa {acc['kappa']:.3f}")
    out = Path(args.out)
    _print_result(result, out, time.perf_counter() - t0)
    _print_not_written(out)
    return 0


def _detect(args: argparse.Namespace) -> Any:
    """``detect_changes`` for the ``detect`` command's arguments (a finished result is refused)."""
    from .pipeline import detect_changes

    out = Path(args.out)
    options = dict(
        method=args.method,
        threshold=args.threshold,
        min_area_m2=args.min_area_m2,
        aoi=args.aoi,
        align=not args.no_align,
        coregister=args.coregister,
        pixel_size_m=args.pixel_size_m,
        bands=[b.strip() for b in args.bands.split(",")] if args.bands else None,
        examples=args.examples,
        model=args.model,
        dates=args.dates,
        vegetation_gain=args.vegetation_gain,
        seasonal=args.seasonal,
    )
    overwrite = args.overwrite
    with _outdir.folder_lock(out):  # held through the run (detect_changes takes it again, re-entrant)
        if not overwrite and (out / "summary.json").exists():
            # a result is finished only for the options and inputs that made it
            from .pipeline import check_inputs
            from .spec import run_options

            spec_options = run_options(**options)
            request = _outdir.request_record(spec_options, args.before, args.after)
            reason = _outdir.rerun_reason(out / "summary.json", request)
            if reason is not None:  # announced only for a run that can start: bad inputs are said first
                check_inputs(args.before, args.after, bands=spec_options.bands)
            if reason is None:
                raise ChangedetError(
                    f"{str(out)!r} already holds a finished result for these inputs and options (summary.json); "
                    "pass --overwrite to compute it again, or choose another --out"
                )
            print(f"re-running: {reason}", file=sys.stderr)
            overwrite = True
        return detect_changes(args.before, args.after, out=out, tiled=args.tiled, overwrite=overwrite,
                              truth=args.truth, figures=not args.no_figures, **options)


def _truth_values(truth: Any, change: tuple[float, ...] | None, nochange: tuple[float, ...] | None) -> dict[str, Any]:
    from .evaluate import nodata_values, truth_coding

    if change is None and nochange is None:
        change, nochange = truth_coding(truth)
    elif change is None:
        change = (1.0,)
    elif nochange is None:
        nochange = (0.0,)
    return {"truth_change_values": change, "truth_nochange_values": nochange, "ignore_values": nodata_values(change)}


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate
    from .io import read_raster

    pred = read_raster(args.predicted)
    truth = read_raster(args.truth)
    for name, r in (("PREDICTED_MASK", pred), ("TRUTH_MASK", truth)):
        if r.count != 1:
            raise ChangedetError(f"{name} {getattr(args, name.split('_')[0].lower())!r} has {r.count} bands; a mask has one")
    import numpy as np

    pred_arr = np.where(np.isfinite(pred.data[0]), pred.data[0], 255)
    kw = _truth_values(truth.data[0], _values(args.truth_change), _values(args.truth_nochange))
    acc = evaluate(pred.with_data(pred_arr) if truth.crs is not None else pred_arr,
                   truth if truth.crs is not None else np.where(np.isfinite(truth.data[0]), truth.data[0], 255), **kw)
    if args.json:
        print(json.dumps(acc.as_dict(), indent=2))
    else:
        print(acc)
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from .pipeline import train_model

    if len(args.triples) % 3:
        raise ChangedetError(
            f"train takes pairs as BEFORE AFTER LABELS triples; got {len(args.triples)} paths, which is not a multiple of 3"
        )
    triples = [tuple(args.triples[i : i + 3]) for i in range(0, len(args.triples), 3)]
    t0 = time.perf_counter()
    model = train_model(triples, args.out, bands=[b.strip() for b in args.bands.split(",")] if args.bands else None,
                        pixel_size_m=args.pixel_size_m)
    acc = model.cv_accuracy
    print(f"trained on {model.n_examples} labelled pixels of {len(triples)} pair(s), bands {', '.join(model.band_names)}; "
          f"cross-validated accuracy {acc:.3f} in {time.perf_counter() - t0:.1f} s -> {args.out}" if acc == acc else
          f"trained on {model.n_examples} labelled pixels of {len(triples)} pair(s) in {time.perf_counter() - t0:.1f} s -> {args.out}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from . import data
    from .pipeline import detect_changes

    # the sample pairs are small: they run the numpy twins of the kernels, so a first run
    # after an install compiles nothing (see changedet._kernels)
    names = [args.sample] if args.sample else data.list_samples()

    out_root = Path(args.out)
    rows = []
    for name in names:
        sample = data.load_sample(name)
        t0 = time.perf_counter()
        folder = data.sample_path(name)
        out = out_root / name
        result = detect_changes(folder / "before.tif", folder / "after.tif", truth=sample.truth, out=out,
                                overwrite=True, tiled=False)
        acc = result.evaluate(sample.truth)
        from . import plot

        plot.save_figure(result.plot_histogram(), out / "score_histogram.png")
        print(f"[{name}] {sample.description}")
        _print_result(result, out, time.perf_counter() - t0)
        print(f"  accuracy vs truth: F1 {acc.f1:.3f}  precision {acc.precision:.3f}  recall {acc.recall:.3f}  kappa {acc.kappa:.3f}")
        rows.append((name, acc.f1))
    print(f"outputs: {out_root.resolve()}")
    return 0


def _sha(path: Path) -> str | None:
    from .io import sha256

    return sha256(path) if path.exists() else None


def _cmd_fetch(args: argparse.Namespace) -> int:
    try:
        from . import sources
    except ImportError as exc:  # pragma: no cover - depends on the optional extra
        raise ChangedetError(f"changedet fetch needs the 'stac' extra ({exc}); pip install 'changedet[stac]'") from None
    kwargs: dict[str, Any] = {}
    if args.stac_url:
        kwargs["stac_url"] = args.stac_url
    if args.collection:
        kwargs["collection"] = args.collection
    if args.max_cloud is not None:
        kwargs["max_cloud"] = args.max_cloud
    if args.dates:
        return _fetch_series(args, kwargs)
    if args.before is None or args.after is None:
        raise ChangedetError("fetch needs --before DATE[/DATE] and --after DATE[/DATE], or --dates D1 D2 D3 ... for a "
                             "series of three or more")
    result = sources.fetch_pair(bbox=args.bbox, before=args.before, after=args.after, out=Path(args.out), **kwargs)
    print(result)
    print(f"next: changedet detect {Path(args.out) / 'before'} {Path(args.out) / 'after'} --out {Path(args.out) / 'changes'}")
    return 0


def _fetch_series(args: argparse.Namespace, kwargs: dict[str, Any]) -> int:
    from .series import fetch_series

    if args.before is not None or args.after is not None:
        raise ChangedetError("give either --dates (a series) or --before and --after (a pair), not both")
    dates = [d for text in args.dates for d in text.split(",") if d.strip()]
    folders = fetch_series(bbox=args.bbox, dates=dates, out=Path(args.out), **kwargs)
    for folder in folders:
        print(f"{folder.name}: {folder}")
    print(f"next: changedet series {Path(args.out)} --out {Path(args.out) / 'series'}")
    return 0


def _cmd_batch(args: argparse.Namespace) -> int:
    try:
        from . import batch
    except ImportError:
        raise ChangedetError("changedet batch is not available in this version") from None
    res = batch.run_batch(args.pairs, args.out, workers=args.workers, scheduler=args.scheduler,
                          method=args.method, overwrite=args.overwrite, model=args.model,
                          vegetation_gain=args.vegetation_gain, seasonal=args.seasonal)
    print(res)
    if not res.n_failed:
        return 0
    # every pair failed: nothing was made from this input (bad input, exit 2); some failed: 1
    return 2 if res.n_failed == len(res.outcomes) else 1


def _cmd_series(args: argparse.Namespace) -> int:
    from .series import detect_series

    t0 = time.perf_counter()
    res = detect_series(args.images if len(args.images) > 1 else args.images[0], args.dates, method=args.method,
                        threshold=args.threshold, min_area_m2=args.min_area_m2, pixel_size_m=args.pixel_size_m,
                        structures=not args.no_structures, title=args.title, out=args.out, overwrite=args.overwrite)
    unit = res.summary["area_unit"]
    print(f"{len(res.dates)} dates {res.dates[0]} .. {res.dates[-1]} in {time.perf_counter() - t0:.1f} s -> {args.out}")
    for row in res.table:
        area = f"{row['changed_area_ha']:8.2f} ha" if unit == "m2" else f"{row['changed_area_m2']:8.0f} px"
        new = f"+{row['new_area_m2'] / 10_000:.2f} ha" if unit == "m2" else f"+{row['new_area_m2']:.0f} px"
        n = f"  {row['structures']} structures" if row["structures"] is not None else ""
        print(f"  {row['date']}  changed {area}  ({new}){n}")
    print(f"  {res.structures_note}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from .report import _site_rows, write_index, write_report

    folder = Path(args.folder)
    if not folder.is_dir():
        raise ChangedetError(f"{str(folder)!r} is not a folder; pass the --out folder of changedet detect or batch")
    if (folder / "summary.json").is_file():
        written = write_report(folder, title=args.title)
    elif (folder / "batch.csv").is_file() or _site_rows(folder):  # the sites write_index finds
        written = write_index(folder, title=args.title)
    else:
        raise ChangedetError(
            f"{str(folder)!r} holds no summary.json and no finished site: it is not a changedet result; "
            "run changedet detect BEFORE AFTER --out on it first"
        )
    print(f"wrote {written}")
    return 0


_COMMANDS = {"detect": _cmd_detect, "evaluate": _cmd_evaluate, "demo": _cmd_demo, "fetch": _cmd_fetch, "batch": _cmd_batch,
             "train": _cmd_train, "series": _cmd_series, "report": _cmd_report}


def _check_out_option(args: argparse.Namespace) -> None:
    """``--out`` checked before any work: not empty (``--out ""`` would write into the current
    folder), no control characters, a name the file system takes, under a folder."""
    out = getattr(args, "out", None)
    if out is None:
        return
    from .io import check_output_path

    check_output_path(out, name="--out", kind="file" if args.command == "train" else "folder")


def _error_line(exc: BaseException) -> str:
    """One line for an error: ours as written; an operating-system error with its file; memory."""
    if isinstance(exc, MemoryError):
        return (f"not enough memory ({_first(exc) or 'MemoryError'}); run window by window (--tiled) or crop the "
                "images to the site first")
    if isinstance(exc, OSError) and not isinstance(exc, ChangedetError) and exc.strerror:
        where = f" {os.fsdecode(exc.filename)!r}" if exc.filename is not None else ""
        return f"{exc.strerror}:{where}; check the path and its permissions"
    return _first(exc) or type(exc).__name__


def _as_flags(line: str, argv: Sequence[str]) -> str:
    """An error that starts with an option's Python name (``min_area_m2 must be ...``) names the
    flag the user typed instead (``--min-area-m2 must be ...``)."""
    head, sep, rest = line.partition(" ")
    flag = "--" + head.replace("_", "-")
    if sep and head.isidentifier() and any(a == flag or a.startswith(flag + "=") for a in argv):
        return f"{flag} {rest}"
    return line


def _quiet_stdout() -> None:
    """Point stdout at the null device, so the interpreter's last flush finds no closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # stdout replaced (tests, notebooks): nothing to redirect
        pass


def _first(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def tune_malloc(*, mmap_threshold_mb: int = 64, trim_threshold_mb: int = 256) -> bool:
    """Keep freed memory of working-size arrays in the process (glibc only; False elsewhere).

    Windowed runs allocate and free arrays of a few MB per window thousands of times.
    With glibc's defaults each comes from a fresh ``mmap`` whose pages fault in again
    (measured on a 10980 x 10980 pair: 4.9 s of system time, 2.4 s with these
    settings, 16.0 s -> 14.1 s wall, peak memory about the same).  Process-wide, so
    the command line sets it for its own process and its batch workers; a Python
    session may call it too.

    Examples
    --------
    >>> isinstance(tune_malloc(), bool)
    True
    """
    import ctypes
    import ctypes.util

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    ok = mallopt(m_mmap_threshold, int(mmap_threshold_mb) << 20) == 1
    ok &= mallopt(m_trim_threshold, int(trim_threshold_mb) << 20) == 1
    return bool(ok)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``changedet`` command; returns the exit code.

    Parameters
    ----------
    argv : sequence of str or None
        The arguments after the program name; None reads ``sys.argv`` (and tunes malloc,
        as the process is then the program's own).

    Returns
    -------
    int
        0 on success, 1 when a ``batch`` run had some failed sites (2 when every site
        failed), 2 on an error (one line on stderr, or the usage and a hint when no command is given),
        130 when interrupted (Ctrl-C), 143 on SIGTERM, 141 when the reader of stdout closed it.  Argument errors raise
        ``SystemExit(2)`` from the parser instead.

    Examples
    --------
    >>> main(["detect", "no_such_before.tif", "no_such_after.tif", "--out", "unused"])  # one line on stderr
    2
    """
    if argv is None:  # run as the program (not called from Python): this process is ours to tune
        tune_malloc()
    parser = build_parser()
    args = parser.parse_args(argv)
    args.own_process = argv is None
    if not args.command:  # the usage and one hint, not the whole help
        parser.print_usage()
        print("changedet: give a command; try `changedet demo` on the bundled samples, or `changedet --help` for all")
        return 2
    try:
        with _outdir.terminate_on_signals():  # SIGTERM unwinds like Ctrl-C: scratch files and partial outputs go
            _check_out_option(args)
            code = _COMMANDS[args.command](args)
            sys.stdout.flush()  # a closed pipe is met here, not in the interpreter's last flush
            return code
    except BrokenPipeError as exc:
        if exc.filename is not None:  # a file of ours, not our output stream
            print(f"changedet {args.command}: error: {_error_line(exc)}", file=sys.stderr)
            return 2
        # the reader of our output went away (`changedet ... | head`): nothing to say, nothing lost
        # (the outputs are written before anything is printed); as a program killed by SIGPIPE
        _quiet_stdout()
        return 141
    except (ChangedetError, OSError, MemoryError, RecursionError, UnicodeError) as exc:
        if os.environ.get("CHANGEDET_DEBUG"):
            raise
        print(f"changedet {args.command}: error: {_as_flags(_error_line(exc), sys.argv[1:] if argv is None else argv)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM/SIGHUP (Terminated)
        signum = getattr(exc, "signum", None)
        print(f"changedet {args.command}: {'terminated' if signum else 'interrupted'}", file=sys.stderr)
        return 128 + signum if signum else 130


def entry() -> None:
    """The ``changedet`` program (and ``python -m changedet.cli``): :func:`main` and its exit status.

    An interrupt that lands as :func:`main` returns, or while it reports another error, ends the
    program as any interrupt does (130), not with Python's own exit by SIGINT: the outputs are
    whole or gone either way.
    """
    try:
        code = main()
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    _end(code)


def _end(code: int) -> None:
    """End the program with ``code``, without the interpreter's teardown when nothing needs it.

    Python's finalization after the command has returned (a full garbage collection, then
    freeing every module: numpy, scipy, GDAL, pyproj) took 0.06 s of a 0.9 s ``detect`` on
    a small pair, and 0.43 s of a 9 s whole scene; the outputs are whole and closed by then.  So,
    with no other non-daemon thread running (the interpreter's exit would wait for one; it never
    waits for a daemon thread, such as the monitor tqdm starts beside a progress bar), the exit
    handlers run (``atexit``: coverage, temporary folders, logging), stdout and stderr are
    flushed, and the process ends.  Otherwise the ordinary exit.
    """
    import atexit
    import threading

    run_exit_handlers = getattr(atexit, "_run_exitfuncs", None)
    main_thread = threading.main_thread()
    working = [t for t in threading.enumerate() if t is not main_thread and not t.daemon]  # the live ones
    if run_exit_handlers is None or working or os.environ.get("CHANGEDET_DEBUG"):
        raise SystemExit(code)
    run_exit_handlers()
    try:
        sys.stdout.flush()
    except OSError:  # the reader went away after the outputs were written: nothing lost
        pass
    try:
        sys.stderr.flush()
    except OSError:
        pass
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    entry()
