"""An output folder's life: who writes into it (a lock), whether what it holds is finished
for the run at hand (the options and inputs recorded in its ``summary.json``), and what
an interrupted run leaves behind.

- :func:`folder_lock` holds ``DIR/.changedet.lock`` for a run: an advisory ``flock`` on
  it (released by the kernel when the process dies, however it dies) plus the owner's
  pid, host and start time in it for the message a second run gets.  A lock file left
  by a killed run is taken over.
- :func:`request_record` is what a run records under ``request`` in ``summary.json``:
  the options as given (normalised) and a cheap fingerprint of each input (size,
  modification time, SHA-256 of the first and last MiB; per file for a band folder).
  :func:`rerun_reason` compares it with a new run's: a result is finished only for the
  options and inputs that made it.  Only when nothing but a modification time differs is
  a file hashed whole, against the SHA-256 the summary holds.  Measured on this project's
  2-core machine: the fingerprint of a file takes 1.7 ms whatever its size; the whole
  SHA-256 858 MB/s (about 2.5 s for a pair of Sentinel-2 band folders, read from the page
  cache): too slow to pay for every finished pair of a resumed batch.
- :func:`discard_unfinished` removes what a failed or interrupted run wrote, so a
  folder never holds rasters or vectors without the ``summary.json`` that vouches for
  them.
- :func:`terminate_on_signals` turns SIGTERM into an exception (:class:`Terminated`)
  so ``finally`` blocks run: scratch tiles are removed, writers aborted.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import hashlib
import json
import os
import signal
import socket
import threading
from pathlib import Path
from typing import Any, Iterator, Sequence

from ._paths import is_remote
from .errors import ChangedetError, OutputInUseError

#: The lock file's name inside an output folder.
LOCK_NAME = ".changedet.lock"

#: Bytes hashed at each end of a file for its fingerprint.
EDGE_BYTES = 1 << 20

#: The files of a finished result (``changes.gpkg`` only for georeferenced grids,
#: ``overview.png`` only with figures; as ``changedet.pipeline.OUTPUT_FILES``, which
#: this lower module cannot import); ``summary.json`` last.
CONTRACT_FILES = (
    "change_mask.tif",
    "change_score.tif",
    "changes.geojson",
    "changes.gpkg",
    "overview.png",
    "report.html",
    "structures.geojson",
    "summary.json",
)


class Terminated(KeyboardInterrupt):
    """The process got SIGTERM (or SIGHUP): unwinds like Ctrl-C so cleanup runs."""

    def __init__(self, signum: int = signal.SIGTERM):
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)


# --------------------------------------------------------------------------- the lock
_held: dict[str, list[Any]] = {}  # real path of the folder -> [fd, count]
_held_guard = threading.Lock()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    except OSError:
        return False
    return True


def _owner(path: Path) -> dict[str, Any]:
    for _ in range(20):  # the owner writes its record just after taking the lock
        with contextlib.suppress(OSError, ValueError):
            rec = json.loads(path.read_text(encoding="utf-8") or "null")
            if isinstance(rec, dict) and "pid" in rec:
                return rec
        threading.Event().wait(0.01)
    return {}


def _in_use(folder: Path, owner: dict[str, Any]) -> OutputInUseError:
    who = f"pid {owner['pid']}" if owner.get("pid") else "another process"
    if owner.get("host") and owner.get("host") != socket.gethostname():
        who += f" on {owner['host']}"
    since = f", since {owner['started']}" if owner.get("started") else ""
    return OutputInUseError(
        f"output folder {str(folder)!r} is in use by another changedet run ({who}{since}); wait for it to finish, "
        "stop it, or choose another output folder"
    )


def _make_folder(folder: Path) -> bool:
    """Create ``folder`` (and parents); True when it was made here.  One clear line when it cannot be."""
    if folder.is_dir():
        return False
    if folder.exists() or folder.is_symlink():
        raise ChangedetError(f"output folder {str(folder)!r} exists and is not a folder; choose a folder path")
    try:
        folder.mkdir(parents=True)
    except FileExistsError:
        if not folder.is_dir():
            raise ChangedetError(f"output folder {str(folder)!r} exists and is not a folder; choose a folder path") from None
        return False
    except OSError as exc:
        why = {errno.ENOTDIR: "a part of its path is a file", errno.ENAMETOOLONG: "its name is too long",
               errno.EACCES: "permission denied", errno.EROFS: "the file system is read-only"}.get(
            exc.errno, exc.strerror or type(exc).__name__)
        raise ChangedetError(f"cannot create output folder {str(folder)!r}: {why}; choose another output folder") from None
    return True


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold ``folder``'s lock for a run (the folder is created when missing).

    Re-entrant within a process (a run that saves its result holds it once).  A second
    process gets :class:`OutputInUseError` naming the folder and the owner's pid at once
    (no waiting).  The lock is an ``flock`` on ``folder/.changedet.lock``, so a run killed
    with SIGKILL leaves a lock file that the next run simply takes over.  A folder made
    here and still empty when the lock is released is removed again.

    Parameters
    ----------
    folder : path
        The output folder.

    Yields
    ------
    pathlib.Path
        The folder.

    Raises
    ------
    OutputInUseError
        Another live process holds the lock.
    ChangedetError
        The folder cannot be created (its path names a file, is too long, ...).
    """
    folder = Path(folder)
    made = _make_folder(folder)
    key = os.path.realpath(folder)
    with _held_guard:
        if key in _held:
            _held[key][1] += 1
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield folder
        finally:
            with _held_guard:
                _held[key][1] -= 1
        return
    path = folder / LOCK_NAME
    fd = None
    try:
        with _signals_deferred():  # an interrupt lands before the lock file exists or once its removal is due
            fd = _acquire(folder, path)
            with _held_guard:
                _held[key] = [fd, 1]
        yield folder
    finally:
        if fd is not None:
            with _held_guard:
                _held.pop(key, None)
            with contextlib.suppress(OSError):
                path.unlink()  # while still holding it: a waiting process sees a new inode and retries
            _release(fd)
        if made:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if empty: a failed first run leaves no empty folder behind


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP held back (POSIX) while a few system calls run together."""
    sigs = {signal.SIGINT, signal.SIGTERM, *([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])}
    try:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    except (AttributeError, OSError, ValueError):  # pragma: no cover - not POSIX
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def forget_inherited_locks() -> None:
    """In a forked child: close the lock descriptors inherited from the parent and forget them,
    so the parent's locks end with the parent (a child that outlives it does not keep them)
    and the child does not take the parent's folders for its own."""
    with _held_guard:
        for fd, _ in _held.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        _held.clear()


def _record() -> bytes:
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": started}).encode()


def _acquire(folder: Path, path: Path) -> int:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: an exclusive create and the pid
        return _acquire_by_pid(folder, path)
    for _ in range(50):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise _in_use(folder, _owner(path)) from None
        except OSError:  # a file system without flock: fall back to the pid
            os.close(fd)
            return _acquire_by_pid(folder, path)
        try:  # the owner before us may have unlinked the file between our open and our lock
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            continue
        os.ftruncate(fd, 0)
        os.pwrite(fd, _record(), 0)
        return fd
    raise _in_use(folder, {})  # pragma: no cover - 50 lost races in a row


def _acquire_by_pid(folder: Path, path: Path) -> int:
    for _ in range(2):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            owner = _owner(path)
            stale = owner.get("host") == socket.gethostname() and not _pid_alive(int(owner.get("pid", 0) or 0))
            if not stale and owner:
                raise _in_use(folder, owner) from None
            with contextlib.suppress(FileNotFoundError):
                path.unlink()  # a killed run's lock: taken over
            continue
        os.write(fd, _record())
        return fd
    raise _in_use(folder, _owner(path))


def _release(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)  # closing the descriptor releases the flock


def lock_owner(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The record of the run holding ``folder``'s lock, or None when no live run holds it.

    Parameters
    ----------
    folder : path
        The output folder.

    Returns
    -------
    dict or None
        ``pid``, ``host`` and ``started`` of the owner.
    """
    path = Path(folder) / LOCK_NAME
    if not path.exists():
        return None
    try:
        import fcntl
    except ImportError:  # pragma: no cover
        owner = _owner(path)
        return owner if owner and _pid_alive(int(owner["pid"])) else None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _owner(path) or {"pid": None}
    finally:
        os.close(fd)
    return None


# --------------------------------------------------------------------------- what made a result
def _edges(path: Path, size: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as fh:
        h.update(fh.read(EDGE_BYTES))
        if size > EDGE_BYTES:
            fh.seek(max(EDGE_BYTES, size - EDGE_BYTES))
            h.update(fh.read(EDGE_BYTES))
    return h.hexdigest()


def fingerprint(value: Any) -> dict[str, Any] | None:
    """A cheap fingerprint of an input: size, modification time and the SHA-256 of its
    first and last MiB (for a folder: of every file under it, with their names).

    Parameters
    ----------
    value : path or URL or other
        The input.

    Returns
    -------
    dict or None
        ``{"path", "size", "mtime_ns", "edges"}``; ``{"path", "url": True}`` for a URL;
        None for what is not a path (an in-memory raster) or cannot be read.
    """
    if not isinstance(value, (str, os.PathLike)):
        return None
    text = os.fspath(value)
    if is_remote(text):
        return {"path": text, "url": True}
    p = Path(text)
    try:
        if p.is_dir():
            h = hashlib.sha256()
            size, mtime = 0, 0
            for f in sorted(q for q in p.rglob("*") if q.is_file()):
                st = f.stat()
                h.update(f"{f.relative_to(p).as_posix()}\0{st.st_size}\0{_edges(f, st.st_size)}\n".encode())
                size += st.st_size
                mtime = max(mtime, st.st_mtime_ns)
            return {"path": text, "size": size, "mtime_ns": mtime, "edges": h.hexdigest()}
        st = p.stat()
        return {"path": text, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "edges": _edges(p, st.st_size)}
    except OSError:
        return None


def _threshold_text(o: Any) -> str | None:
    m = o.threshold_method
    if m is None:
        return None
    if m == "fixed":
        return f"{o.threshold_value:g}"
    if m == "percentile":
        return f"p{o.threshold_percentile:g}"
    if m == "chi2":
        return f"chi2:{o.threshold_value:g}"
    return str(m)


def _learned_text(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, (str, os.PathLike)):
        fp = fingerprint(value) or {"path": os.fspath(value)}
        return {k: fp.get(k) for k in ("path", "size", "edges")}
    if isinstance(value, dict):
        text = json.dumps(value, sort_keys=True, default=str)
        return {"geojson_sha256": hashlib.sha256(text.encode()).hexdigest()}
    return {"in_memory": type(value).__name__}


def options_record(options: Any) -> dict[str, Any]:
    """The options of a run as given, normalised to compare two runs (JSON values).

    Parameters
    ----------
    options : changedet.spec.RunOptions
        The validated options.

    Returns
    -------
    dict
        ``method``, ``threshold`` (``"otsu"``, ``"p99"``, ``"0.5"``, ``"chi2:0.01"`` or None for
        the method's own), the clean-up options, ``aoi`` (WKT, 9 decimals), ``align``,
        ``coregister``, ``pixel_size_m``, ``bands``, ``examples`` and ``model`` (their files'
        size and edge hash), and ``dates`` given by the user.
    """
    import shapely

    o = options
    return {
        "method": o.method_name,
        "threshold": _threshold_text(o),
        "min_area_m2": o.min_area_m2,
        "opening_px": o.opening_px,
        "fill_holes_m2": o.fill_holes_m2,
        "aoi": shapely.to_wkt(o.aoi, rounding_precision=9) if o.aoi is not None else None,
        "align": bool(o.align),
        "coregister": None if o.coregister is None else bool(o.coregister),
        "pixel_size_m": o.pixel_size_m,
        "bands": list(o.bands) if o.bands is not None else None,
        "examples": _learned_text(o.examples),
        "model": _learned_text(o.model),
        "dates": list(o.dates) if getattr(o, "dates", None) else None,
        "vegetation_gain": getattr(o, "vegetation_gain", "auto"),
        "seasonal": getattr(o, "seasonal", "auto"),
    }


def request_record(options: Any, before: Any, after: Any) -> dict[str, Any]:
    """What a run records under ``request`` in ``summary.json``: its options as given and
    its inputs' fingerprints (see :func:`options_record`, :func:`fingerprint`).

    Parameters
    ----------
    options : changedet.spec.RunOptions
        The validated options.
    before, after : path or GeoRaster
        The inputs.

    Returns
    -------
    dict
        ``{"options": {...}, "inputs": {"before": {...} or None, "after": {...} or None}}``.
    """
    return {"options": options_record(options),
            "inputs": {"before": fingerprint(before), "after": fingerprint(after)}}


def _show(v: Any, *, path: bool = False) -> str:
    if v is None:
        return "default"
    if isinstance(v, dict):
        v, path = v.get("path") or "given in memory", True
    text = json.dumps(v) if isinstance(v, list) else str(v)
    if len(text) <= 40:
        return text
    return "..." + text[-37:] if path else text[:37] + "..."  # a path's end names the file


def _input_change(side: str, old: dict[str, Any] | None, new: dict[str, Any] | None, sha_old: str | None) -> str | None:
    if new is None or old is None:
        return f"{side} given in memory, cannot be compared" if new is None else f"{side} not recorded"
    if os.path.abspath(str(old.get("path"))) != os.path.abspath(str(new.get("path"))):
        return f"{side} {_show(old.get('path'), path=True)} -> {_show(new.get('path'), path=True)}"
    if new.get("url"):
        return None  # a URL: the same address is taken for the same scene
    if old.get("size") != new.get("size"):
        return f"{side} file changed (size {old.get('size')} -> {new.get('size')} bytes)"
    if old.get("edges") != new.get("edges"):
        return f"{side} file changed (content)"
    if old.get("mtime_ns") == new.get("mtime_ns"):
        return None
    # only the modification time differs (copied, touched, downloaded again): the content decides
    if sha_old:
        from .io import sha256

        try:
            if sha256(new["path"]) == sha_old:
                return None
        except OSError:
            pass
    return f"{side} file changed (modified since)"


def rerun_reason(summary: Any, request: dict[str, Any]) -> str | None:
    """Why a finished result must be made again for ``request``, or None when it was made
    with the same options and inputs.

    Parameters
    ----------
    summary : dict or path
        The existing ``summary.json`` (decoded, or its path).
    request : dict
        The new run's :func:`request_record`.

    Returns
    -------
    str or None
        E.g. ``"options changed (method auto -> index:brightness)"``, ``"inputs changed
        (after file changed (content))"``; None when nothing changed.
    """
    if not isinstance(summary, dict):
        try:
            summary = json.loads(Path(summary).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return "its summary.json is unreadable"
    rec = summary.get("request") if isinstance(summary, dict) else None
    if not isinstance(rec, dict) or not isinstance(rec.get("options"), dict):
        return "its summary.json does not record the options it was made with (an older changedet)"
    old_o, new_o = rec["options"], request["options"]
    changed = [f"{k} {_show(old_o.get(k))} -> {_show(new_o.get(k))}"
               for k in new_o if json.dumps(old_o.get(k), sort_keys=True) != json.dumps(new_o.get(k), sort_keys=True)]
    if changed:
        return f"options changed ({', '.join(changed)})"
    old_i = rec.get("inputs") or {}
    inputs = summary.get("inputs") or {}
    why = [w for side in ("before", "after")
           if (w := _input_change(side, old_i.get(side), request["inputs"].get(side),
                                  (inputs.get(side) or {}).get("sha256"))) is not None]
    if why:
        return f"inputs changed ({'; '.join(why)})"
    return None


# --------------------------------------------------------------------------- unfinished outputs
def outputs_state(folder: str | os.PathLike[str], names: Sequence[str] = CONTRACT_FILES) -> dict[str, tuple[int, int]]:
    """(inode, mtime) of each result file in ``folder`` now, to tell later what a run wrote.

    Parameters
    ----------
    folder : path
        The output folder.
    names : sequence of str
        The result files' names.

    Returns
    -------
    dict of str -> (int, int)
    """
    state = {}
    for name in names:
        with contextlib.suppress(OSError):
            st = (Path(folder) / name).stat()
            state[name] = (st.st_ino, st.st_mtime_ns)
    return state


def discard_unfinished(folder: str | os.PathLike[str], before: dict[str, tuple[int, int]] | None = None, *,
                       names: Sequence[str] = CONTRACT_FILES) -> list[Path]:
    """After a failed or interrupted run: unless its ``summary.json`` landed, remove the result
    files it wrote (all of them, or those new or changed since ``before``) and every
    temporary file of ours, so the folder never holds rasters or vectors without a summary.

    Parameters
    ----------
    folder : path
        The output folder.
    before : dict, optional
        :func:`outputs_state` taken when the run started.
    names : sequence of str
        The result files' names.

    Returns
    -------
    list of Path
        The files removed.
    """
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    removed += _remove_temporaries(folder, names)
    if (folder / "summary.json").exists():
        # finished: the new summary landed, or the old one was never touched (a run removes
        # the old summary before it writes anything else)
        return removed
    now = outputs_state(folder, names)
    for name, st in now.items():
        if before is None or before.get(name) != st:
            with contextlib.suppress(OSError):
                (folder / name).unlink()
                removed.append(folder / name)
    return removed


def clear_outputs(folder: str | os.PathLike[str], names: Sequence[str] = CONTRACT_FILES) -> None:
    """Before a run writes: remove ``summary.json`` first (the folder stops being a finished
    result), then the other result files, so what follows is only this run's.

    Parameters
    ----------
    folder : path
        The output folder.
    names : sequence of str
        The result files' names.
    """
    for name in ("summary.json", *names):
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            (Path(folder) / name).unlink()


def _remove_temporaries(folder: Path, names: Sequence[str]) -> list[Path]:
    """The hidden temporaries a killed run left beside each of ``names``: a raster or vector
    being written (``.NAME.*.partial.EXT``, :data:`changedet.io.PARTIAL`, and SQLite's
    ``-journal``/``-wal``/``-shm`` beside a GeoPackage) and a windowed run's
    scratch tiles (``.NAME.*.tiles``, :data:`changedet._cog.SCRATCH_SUFFIX`)."""
    removed = []
    for name in names:
        stem, suffix = os.path.splitext(name)
        # (a GeoPackage being written also has SQLite's -journal / -wal / -shm beside it)
        for pattern in (f".{stem}.*.partial{suffix}", f".{stem}.*.partial{suffix}-*", f".{stem}.*.tiles"):
            for p in folder.glob(pattern):
                with contextlib.suppress(OSError):
                    p.unlink()
                    removed.append(p)
    return removed


def remove_temporaries(folder: str | os.PathLike[str], names: Sequence[str]) -> list[Path]:
    """Remove what killed runs left in ``folder`` beside the result files ``names``.

    Parameters
    ----------
    folder : path
        An output folder (nothing happens when it does not exist).
    names : sequence of str
        The result files' names.

    Returns
    -------
    list of Path
        The files removed.
    """
    folder = Path(folder)
    return _remove_temporaries(folder, names) if folder.is_dir() else []


@contextlib.contextmanager
def terminate_on_signals() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise :class:`Terminated` in the main thread
    (Python's default ends the process at once, skipping every cleanup).  Does nothing
    outside the main thread.

    Yields
    ------
    None
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_terminated(signum: int, frame: Any) -> None:
        raise Terminated(signum)

    old = {}
    for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if sig is None:
            continue
        with contextlib.suppress(ValueError, OSError):
            old[sig] = signal.signal(sig, raise_terminated)
    try:
        yield
    finally:
        for sig, handler in old.items():
            with contextlib.suppress(ValueError, OSError):
                signal.signal(sig, handler)
