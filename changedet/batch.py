"""Many pairs: a folder or a CSV, resumable, on local processes or a dask.distributed cluster.

Each pair gets its own output folder (``OUT/<site>/``, the files of ``changedet detect``);
``summary.json`` is written last, so a folder holding it is finished, while a folder
without it (a killed run) is computed again.  A finished folder is skipped on the next
run only if it was made with the same options and inputs (recorded under ``request`` in
its ``summary.json``); otherwise the pair runs again and the batch says why.
The batch table ``OUT/batch.csv`` and ``OUT/batch_changes.geojson`` (every polygon
with its site) are rewritten whole after every run.

One batch at a time in an output folder (a lock file with the owner's pid, taken over
when that process is gone).  Ctrl-C or SIGTERM stops the workers at once: queued pairs
are cancelled, running ones removed what they had written, and the next run resumes.
"""

from __future__ import annotations

import contextlib
import csv
import io as _stdio
import json
import numbers
import os
import re
import signal
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from . import _outdir
from . import io as _io
from . import report as _report
from .errors import ChangedetError, InvalidParameterError

__all__ = ["Pair", "PairOutcome", "BatchResult", "read_pairs", "run_batch"]

_BEFORE_NAMES = ("before", "imgs_1", "t1", "date1")
_AFTER_NAMES = ("after", "imgs_2", "t2", "date2")


@dataclass(frozen=True)
class Pair:
    """One site: its name and the before/after inputs (files, band folders or URLs)."""

    site: str
    before: str
    after: str


@dataclass(frozen=True)
class PairOutcome:
    """What happened to one pair: ``status`` is ``done``, ``skipped`` (finished before with the
    same options and inputs) or ``failed``; ``note`` says why a finished pair was run again."""

    site: str
    status: str
    out: str
    n_changes: int | None = None
    changed_area_m2: float | None = None
    changed_area_ha: float | None = None
    seconds: float | None = None
    error: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class BatchResult:
    """Outcomes of a batch and where its table went."""

    outcomes: tuple[PairOutcome, ...]
    table_csv: Path
    changes_geojson: Path
    seconds: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def n_failed(self) -> int:
        return sum(o.status == "failed" for o in self.outcomes)

    def __str__(self) -> str:
        c = {s: sum(o.status == s for o in self.outcomes) for s in ("done", "skipped", "failed")}
        lines = [f"{len(self.outcomes)} pairs: {c['done']} done, {c['skipped']} skipped (already finished with "
                 f"these options and inputs), {c['failed']} failed, in {self.seconds:.1f} s; table: {self.table_csv}"]
        lines += [f"  re-ran {what}" for what in _notes(self.outcomes)]
        failed = [o for o in self.outcomes if o.status == "failed"]
        lines += [f"  FAILED {o.site}: {o.error}" for o in failed[:MAX_FAILED_LINES]]
        if len(failed) > MAX_FAILED_LINES:
            lines.append(f"  ... and {len(failed) - MAX_FAILED_LINES} more failed; every error is in {self.table_csv}")
        return "\n".join(lines)


#: Failed pairs listed one per line by ``str(BatchResult)``; the others are counted.
MAX_FAILED_LINES = 5


def _notes(outcomes: Sequence[PairOutcome]) -> list[str]:
    """``"site0, site1 and 4 more: options changed (...)"`` per distinct reason for re-running."""
    by_note: dict[str, list[str]] = {}
    for o in outcomes:
        if o.note:
            by_note.setdefault(o.note, []).append(o.site)
    out = []
    for note, sites in by_note.items():
        names = ", ".join(sites[:3]) + (f" and {len(sites) - 3} more" if len(sites) > 3 else "")
        out.append(f"{names}: {note}")
    return out


def _safe_site(name: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_.-]+", "_", name.strip()).strip("._")
    if not s:
        raise InvalidParameterError(f"site name {name!r} has no usable characters for a folder name")
    return s


def _find_side(folder: Path, names: Sequence[str]) -> Path | None:
    for entry in sorted(folder.iterdir()):
        stem = entry.name.split(".")[0].lower()
        if stem in names and (entry.is_dir() or entry.suffix.lower() in _io.RASTER_SUFFIXES):
            return entry
    return None


#: Names a site folder cannot take: the batch's own files in the output folder.
_RESERVED_SITES = frozenset({"batch.csv", "batch_changes.geojson", "index.html", ".changedet.lock"})
#: Longest site name (a folder name, with room for its files' temporary names).
_MAX_SITE_BYTES = 200
#: A batch table larger than this is refused (a table of pairs, not a data set).
_MAX_TABLE_BYTES = 256 << 20


def _table_text(path: Path) -> str:
    """A batch table's text (UTF-8, with or without BOM), or one clear line for what it is not."""
    size = path.stat().st_size
    if size > _MAX_TABLE_BYTES:
        raise ChangedetError(f"batch table {str(path)!r} is {size / 2**20:.0f} MiB, too large for a table of pairs; "
                             "split it")
    data = path.read_bytes()
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise ChangedetError(f"batch table {str(path)!r} is UTF-16 text; save it as UTF-8 CSV (site,before,after)")
    if b"\0" in data[:65536]:
        raise ChangedetError(f"batch table {str(path)!r} is a binary file, not a CSV; give a UTF-8 CSV with columns "
                             "site,before,after")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ChangedetError(f"batch table {str(path)!r} is not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line}); "
                             "save it as UTF-8 CSV (site,before,after)") from None


def read_pairs(source: str | os.PathLike[str] | Iterable[Pair | Sequence[str]]) -> list[Pair]:
    """The pairs of a batch.

    Parameters
    ----------
    source : path or iterable of Pair or (site, before, after)
        A CSV file with columns ``site, before, after`` (relative paths are relative to
        the CSV's folder), a folder whose sub-folders are sites each holding a before
        and an after (``before.tif``/``after.tif``, ``before/``/``after/`` or
        OSCD-style ``imgs_1/``/``imgs_2/``), or an iterable of :class:`Pair` or
        ``(site, before, after)`` tuples.

    Returns
    -------
    list of Pair
        Site names made safe for folder names (other characters become ``_``).

    Raises
    ------
    ChangedetError
        A missing path, a CSV without the columns or with an empty before/after, a
        folder without pairs, or two sites with one name.
    InvalidParameterError
        A site name with no usable character.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "pairs.csv").write_text("site,before,after\\nalabuga,a/2024.tif,a/2025.tif\\n")
    >>> [p.site for p in read_pairs(d / "pairs.csv")]
    ['alabuga']
    """
    pairs: list[Pair] = []
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise ChangedetError(f"batch input {str(path)!r} does not exist; pass a CSV (site,before,after) or a folder of pairs")
        if not path.is_dir():
            try:
                _io.check_input_path(path, "batch table", folder_ok=False)
            except ChangedetError as exc:
                raise ChangedetError(f"{exc} (a CSV with columns site,before,after) or a folder of pairs") from None
        if path.is_dir() and path.suffix.lower() in (".csv", ".txt", ".tsv"):
            raise ChangedetError(f"batch table {str(path)!r} is a folder, not a CSV file; give the CSV's path "
                                 "(site,before,after), or a folder whose sub-folders hold before/after pairs")
        if path.is_file():
            reader = csv.DictReader(_stdio.StringIO(_table_text(path)))
            try:
                cols = [c.strip().lower() for c in (reader.fieldnames or [])]
                rows = list(reader)
            except csv.Error as exc:
                raise ChangedetError(
                    f"batch table {str(path)!r} is not a readable CSV ({exc}); give one line per pair: site,before,after"
                ) from None
            if not {"site", "before", "after"} <= set(cols):
                raise ChangedetError(
                    f"{str(path)!r} needs a header with columns site,before,after; got {reader.fieldnames}"
                )
            for i, row in enumerate(rows, start=2):
                row = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
                if not row.get("before") or not row.get("after"):
                    raise ChangedetError(f"{str(path)!r} line {i}: before and after are both needed")
                resolve = (lambda p: p if re.match(r"^(https?://|/vsi|s3://)", p) or os.path.isabs(p) else str(path.parent / p))
                pairs.append(Pair(row.get("site") or f"pair{i - 1}", resolve(row["before"]), resolve(row["after"])))
        else:
            for sub in sorted(p for p in path.iterdir() if p.is_dir()):
                b, a = _find_side(sub, _BEFORE_NAMES), _find_side(sub, _AFTER_NAMES)
                if b is not None and a is not None:
                    pairs.append(Pair(sub.name, str(b), str(a)))
            if not pairs:
                raise ChangedetError(
                    f"folder {str(path)!r} holds no pairs: expected sub-folders each with before/after "
                    "(before.tif + after.tif, before/ + after/, or imgs_1/ + imgs_2/)"
                )
    else:
        for item in source:
            pairs.append(item if isinstance(item, Pair) else Pair(*(str(v) for v in item)))
    where = f"batch table {os.fspath(source)!r}: " if isinstance(source, (str, os.PathLike)) else ""
    sites = [_safe_site(p.site) for p in pairs]
    for raw, site in zip((p.site for p in pairs), sites):
        if site.lower() in _RESERVED_SITES:
            raise ChangedetError(f"{where}site {raw!r} takes the name of the batch's own file {site!r} in the output "
                                 "folder; rename the site")
        if len(site.encode("utf-8")) > _MAX_SITE_BYTES:
            raise ChangedetError(f"{where}site name {raw[:40]!r}... is {len(site)} characters, too long for a folder "
                                 f"name (at most {_MAX_SITE_BYTES}); give the site a shorter name")
    dupes = sorted({s for s in sites if sites.count(s) > 1})
    if dupes:
        raise ChangedetError(f"{where}site names must be unique (each gets an output folder); repeated: {dupes}")
    return [Pair(s, p.before, p.after) for s, p in zip(sites, pairs)]


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """BLAS/OpenMP and a classifier's filters and trees held to one thread: with one process per
    core, more threads only fight over the cores (measured: 1.4x instead of 2.0x on 2 workers)."""
    from threadpoolctl import threadpool_limits

    from .learn import using_threads

    with threadpool_limits(limits=1), using_threads(1):
        yield


def _run_one_limited(pair: Pair, folder: str, options: dict[str, Any], overwrite: bool) -> dict[str, Any]:
    """:func:`_run_one` on one thread (:func:`_one_thread`)."""
    with _one_thread():
        return _run_one(pair, folder, options, overwrite)


def _run_one(pair: Pair, folder: str, options: dict[str, Any], overwrite: bool, note: str | None = None) -> dict[str, Any]:
    """Run one pair into ``folder``; never raises an error (it goes into the outcome); an
    interrupt (Ctrl-C, SIGTERM) propagates once the pair's partial files are removed."""
    t0 = time.perf_counter()
    try:
        from .pipeline import detect_changes

        result = detect_changes(pair.before, pair.after, out=folder, overwrite=overwrite, progress=False, **options)
        s = result.summary["results"]
        return asdict(PairOutcome(pair.site, "done", folder, s["n_changes"], s["changed_area_m2"],
                                  s["changed_area_ha"], round(time.perf_counter() - t0, 3), note=note))
    except Exception as exc:  # a failed pair must not stop the batch
        return _failed(pair.site, folder, exc, time.perf_counter() - t0, note)


def _failed(site: str, folder: str, exc: BaseException, seconds: float = 0.0, note: str | None = None) -> dict[str, Any]:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if not isinstance(exc, (ChangedetError, OSError)):
        msg = f"{type(exc).__name__}: {msg} ({traceback.extract_tb(exc.__traceback__)[-1].name})"
    return asdict(PairOutcome(site, "failed", folder, seconds=round(seconds, 3), error=msg, note=note))


# ---- worker processes of a local pool
_busy = False  # a pool worker is running a pair (then a signal unwinds it; idle, it just exits)


def _ignore(signum: int, frame: Any) -> None:
    pass


def _worker_signal(signum: int, frame: Any) -> None:
    if not _busy:
        os._exit(128 + signum)
    # the first signal unwinds the pair; a second one (Ctrl-C reaches the workers and the batch
    # then stops them) must not cut that cleanup short: the batch sends SIGKILL after 3 s
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _ignore)  # a Python no-op, not SIG_IGN: a signal already pending would raise OSError
    raise KeyboardInterrupt() if signum == signal.SIGINT else _outdir.Terminated(signum)


def _worker_init() -> None:
    """In each pool worker: SIGTERM and SIGINT unwind the running pair (its partial files are
    removed) and end the process; and the worker gets SIGTERM when the batch process dies
    (Linux), so a killed batch leaves no worker writing on."""
    _outdir.forget_inherited_locks()  # the batch's lock on the output folder stays the batch's
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _worker_signal)
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(Exception):
            pr_set_pdeathsig = 1
            ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
            if os.getppid() == 1:  # the batch died before the line above: nobody to work for
                os._exit(143)


def _pool_task(pair: Pair, folder: str, options: dict[str, Any], overwrite: bool, note: str | None) -> dict[str, Any]:
    """A pair in a pool worker: an interrupt ends the worker once the pair has cleaned up
    (the pool would otherwise take the next pair)."""
    global _busy
    _busy = True
    try:
        with _one_thread():  # one process per core: one thread each
            return _run_one(pair, folder, options, overwrite, note)
    except KeyboardInterrupt as exc:
        os._exit(128 + getattr(exc, "signum", signal.SIGINT))
    finally:
        _busy = False


def _stop_pool(pool: ProcessPoolExecutor) -> None:
    """Cancel the queued pairs and end the workers now: SIGTERM (each removes what its pair
    wrote), SIGKILL for one still alive after 3 s."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        if p.is_alive():
            p.terminate()
    deadline = time.monotonic() + 3.0
    for p in procs:
        p.join(timeout=max(0.0, deadline - time.monotonic()))
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join(timeout=1.0)


def _preload() -> None:
    """Import what every pair needs (pipeline, figures, registration) once, before forking."""
    from . import pipeline, plot  # noqa: F401
    import pyproj  # noqa: F401
    import skimage.metrics  # noqa: F401
    import skimage.registration  # noqa: F401


def _progress(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="changedet batch", unit="pair")


#: Names in the output folder that belong to the batch: a site folder cannot take them.
RESERVED_NAMES = frozenset({"batch.csv", "batch_changes.geojson", "index.html", _outdir.LOCK_NAME})


@dataclass(frozen=True)
class _Todo:
    pair: Pair
    folder: str
    note: str | None  # why a finished result is made again


def _prepare(pair: Pair, out_root: Path, record: dict[str, Any], overwrite: bool) -> dict[str, Any] | _Todo:
    """What to do with one pair: an outcome already (skipped: finished with the same options
    and inputs; failed: a site name that cannot be a folder here), or a pair to run."""
    folder = out_root / pair.site
    try:
        if pair.site.lower() in RESERVED_NAMES:
            raise ChangedetError(f"site {pair.site!r} takes the name of the batch's own file {pair.site!r} in "
                                 f"{str(out_root)!r}; rename the site")
        summary_path = folder / "summary.json"
        if overwrite or not summary_path.exists():
            return _Todo(pair, str(folder), None)
        try:
            summary = json.loads(summary_path.read_text(encoding="utf-8"))
            s = summary["results"]
        except (OSError, ValueError, KeyError, TypeError):
            return _Todo(pair, str(folder), "its summary.json is unreadable")
        missing = [n for n in summary.get("outputs") or () if not (folder / n).is_file()]
        if missing:
            return _Todo(pair, str(folder), f"its files are incomplete ({', '.join(missing)} missing)")
        request = {"options": record, "inputs": {"before": _outdir.fingerprint(pair.before),
                                                 "after": _outdir.fingerprint(pair.after)}}
        reason = _outdir.rerun_reason(summary, request)
        if reason is not None:
            return _Todo(pair, str(folder), reason)
        if (folder / _outdir.LOCK_NAME).exists():  # a run killed just after its summary landed: its lock goes
            with contextlib.suppress(ChangedetError), _outdir.folder_lock(folder):
                pass
        return asdict(PairOutcome(pair.site, "skipped", str(folder), s.get("n_changes"), s.get("changed_area_m2"),
                                  s.get("changed_area_ha")))
    except Exception as exc:  # one odd site never stops the batch
        return _failed(pair.site, str(folder), exc)


def run_batch(
    pairs: str | os.PathLike[str] | Iterable[Pair | Sequence[str]],
    out: str | os.PathLike[str],
    *,
    workers: int = 1,
    scheduler: str | Any | None = None,
    method: str = "auto",
    threshold: str | float | None = None,
    min_area_m2: float | None = None,
    overwrite: bool = False,
    progress: bool = True,
    model: str | os.PathLike[str] | None = None,
    vegetation_gain: str = "auto",
    seasonal: str = "auto",
) -> BatchResult:
    """Detect changes for every pair; resumable; a failed pair is recorded, the rest go on.

    Parameters
    ----------
    pairs : path or iterable of Pair or (site, before, after)
        Read by :func:`read_pairs`.
    out : path
        Output root: one folder per site plus ``batch.csv``, ``batch_changes.geojson`` and
        ``index.html`` (one row and thumbnail per site, links to each site's ``report.html``).
    workers : int
        Local worker processes (1 = in this process).
    scheduler : str or dask.distributed.Client, optional
        A dask.distributed scheduler address (``tcp://host:8786``) or client: run the
        pairs on that cluster instead of local processes.
    method, threshold, min_area_m2, vegetation_gain, seasonal
        As for :func:`changedet.pipeline.detect_changes`.
    overwrite : bool
        Recompute pairs that already have a finished result.
    progress : bool
        Show a progress bar (tqdm).
    model : path, optional
        A model written by ``changedet train``, applied to every pair (each worker loads it).

    Returns
    -------
    BatchResult
        One :class:`PairOutcome` per pair, in input order, and the paths of the tables.

    Raises
    ------
    InvalidParameterError
        An unknown ``method`` or ``threshold``, or ``workers`` below 1.
    OutputInUseError
        Another batch (a live process) is running in ``out``.
    ChangedetError
        From :func:`read_pairs`, or an unreachable dask scheduler; a pair's own failure
        is recorded in its outcome instead.
    KeyboardInterrupt
        Ctrl-C (or SIGTERM under the command line): queued pairs are cancelled and the
        workers stopped within seconds; the tables are not rewritten.

    Notes
    -----
    A pair whose folder holds a finished result is skipped only when the result was
    made with the same options (method, threshold, minimum area, model) and the same
    inputs (size, modification time and the first and last MiB of each file, and the
    whole file's SHA-256 when only its time changed); otherwise it runs again and its
    outcome's ``note`` says why, e.g. ``options changed (method auto -> cva)``.

    Examples
    --------
    >>> import tempfile
    >>> res = run_batch([("nowhere", "missing_a.tif", "missing_b.tif")], tempfile.mkdtemp(), progress=False)
    >>> res.outcomes[0].status, res.n_failed
    ('failed', 1)
    """
    from .change import METHODS
    from .spec import run_options

    if not isinstance(method, str) or method not in METHODS:
        raise InvalidParameterError(f"method must be one of {sorted(METHODS)}, got {method!r}")
    if isinstance(workers, bool) or not isinstance(workers, numbers.Integral) or workers < 1:
        raise InvalidParameterError(f"workers must be an integer >= 1, got {workers!r}")
    workers = int(workers)
    options: dict[str, Any] = {"method": method, "threshold": threshold, "min_area_m2": min_area_m2,
                               "vegetation_gain": vegetation_gain, "seasonal": seasonal}
    if model is not None:
        options["model"] = os.fspath(model) if isinstance(model, (str, os.PathLike)) else model
    # every option checked (and a model loaded) before any pair runs; what a finished pair is compared with
    record = _outdir.options_record(run_options(**options))
    plist = read_pairs(pairs)
    out_root = Path(out)
    with _outdir.folder_lock(out_root):
        t0 = time.perf_counter()
        results: dict[str, dict[str, Any]] = {}
        todo: list[_Todo] = []
        for p in plist:
            step = _prepare(p, out_root, record, overwrite)
            if isinstance(step, _Todo):
                todo.append(step)
            else:
                results[p.site] = step
        if progress:
            for line in _notes([PairOutcome(t.pair.site, "", t.folder, note=t.note) for t in todo]):
                print(f"re-running {line}", file=sys.stderr)
        bar = _progress(len(plist), progress)
        if bar is not None:
            bar.update(len(results))
        try:
            if not todo:
                pass
            elif scheduler is not None:
                results.update(_run_dask(todo, options, scheduler, bar))
            elif workers == 1 or len(todo) == 1:
                for t in todo:
                    results[t.pair.site] = _run_one(t.pair, t.folder, options, True, t.note)
                    if bar is not None:
                        bar.update(1)
            else:
                results.update(_run_pool(todo, options, workers, bar))
        finally:
            if bar is not None:
                bar.close()
        outcomes = tuple(PairOutcome(**results[p.site]) for p in plist)
        table, gj = _write_tables(outcomes, out_root)
        _report.write_index(out_root)  # index.html: one row and thumbnail per site, links to each report.html
        return BatchResult(outcomes, table, gj, round(time.perf_counter() - t0, 3))


def _run_pool(todo: list[_Todo], options: dict[str, Any], workers: int, bar: Any) -> dict[str, dict[str, Any]]:
    """The pairs on local worker processes; an interrupt stops them at once (see :func:`_stop_pool`)."""
    from concurrent.futures.process import BrokenProcessPool

    _preload()  # forked workers inherit the imports instead of each paying for them
    pool = ProcessPoolExecutor(max_workers=min(workers, len(todo)), initializer=_worker_init)
    results: dict[str, dict[str, Any]] = {}
    futs: dict[Any, _Todo] = {}
    try:
        for t in todo:
            futs[pool.submit(_pool_task, t.pair, t.folder, options, True, t.note)] = t
        for f in as_completed(futs):
            t = futs[f]
            try:
                results[t.pair.site] = f.result()
            except BrokenProcessPool as exc:  # a worker was killed (out of memory?): this pair failed, not the batch
                results[t.pair.site] = _failed(t.pair.site, t.folder, ChangedetError(
                    f"its worker process died ({exc}); run the batch again to resume"), note=t.note)
            if bar is not None:
                bar.update(1)
    except BaseException:
        _stop_pool(pool)
        # a pair whose worker did not finish (stopped, or killed after 3 s of cleaning up on a
        # busy machine) must not leave files without a summary, temporaries or its lock
        _clean_unfinished([t.folder for f, t in futs.items() if not f.cancelled()
                           and not (f.done() and f.exception() is None)])
        raise
    pool.shutdown(wait=True)
    return results


def _clean_unfinished(folders: Sequence[str | os.PathLike[str]]) -> None:
    """What a stopped worker may have left in its pairs' folders: result files without a
    summary, temporaries, a lock file (a dead process's lock is taken over, then removed)."""
    from .pipeline import OUTPUT_FILES

    for folder in folders:
        if not Path(folder).is_dir():
            continue
        with contextlib.suppress(ChangedetError, OSError):
            with _outdir.folder_lock(folder):
                _outdir.discard_unfinished(folder, names=OUTPUT_FILES)


def _run_dask(todo: list[_Todo], options: dict[str, Any], scheduler: Any, bar: Any) -> dict[str, dict[str, Any]]:
    try:
        from dask.distributed import Client, as_completed as dask_completed
    except ImportError:
        raise ChangedetError("--scheduler needs dask.distributed: pip install 'changedet[dask]'") from None
    own = not hasattr(scheduler, "submit")
    try:
        client = Client(scheduler, timeout="15s") if own else scheduler
    except OSError as exc:
        raise ChangedetError(f"cannot reach the dask scheduler at {scheduler!r} ({exc}); start it or fix the address") from None
    results: dict[str, dict[str, Any]] = {}
    futs: list[Any] = []
    try:
        futs = client.map(_run_one_limited, [t.pair for t in todo], [t.folder for t in todo], options=options,
                          overwrite=True, pure=False)
        by_key = {f.key: t for f, t in zip(futs, todo)}
        for f in dask_completed(futs):
            t = by_key[f.key]
            results[t.pair.site] = {**f.result(), "note": t.note}
            if bar is not None:
                bar.update(1)
    except BaseException:
        if futs:
            client.cancel(futs)  # an interrupt: the queued pairs do not run on
        raise
    finally:
        if own:
            client.close()
    return results


_COLUMNS = ("site", "status", "n_changes", "changed_area_m2", "changed_area_ha", "seconds", "out", "note", "error")


def _write_tables(outcomes: Sequence[PairOutcome], out_root: Path) -> tuple[Path, Path]:
    buf = _stdio.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(_COLUMNS), lineterminator="\n")
    w.writeheader()
    for o in outcomes:
        w.writerow({k: ("" if v is None else v) for k, v in asdict(o).items() if k in _COLUMNS})
    with _io.atomic_path(out_root / "batch.csv") as tmp:
        tmp.write_text(buf.getvalue(), encoding="utf-8")
    features: list[dict[str, Any]] = []
    for o in outcomes:
        gj = Path(o.out) / "changes.geojson"
        if o.status in ("done", "skipped") and gj.exists():
            for f in json.loads(gj.read_text(encoding="utf-8")).get("features", []):
                f["properties"] = {"site": o.site, **f.get("properties", {})}
                f["id"] = f"{o.site}:{f.get('id')}"
                features.append(f)
    path = _io.write_geojson({"type": "FeatureCollection", "features": features}, out_root / "batch_changes.geojson")
    return out_root / "batch.csv", path
