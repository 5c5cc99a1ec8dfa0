"""Two runs on one output folder cannot clobber each other: a lock file with the owner's pid;
a second run refuses with one line naming the folder and the owner; a lock left by a
killed run is taken over."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import sample_pairs_folder
from changedet import _outdir, data
from changedet.batch import run_batch
from changedet.cli import main
from changedet.errors import ChangedetError, OutputInUseError
from changedet.pipeline import detect_changes

S2 = data.sample_path("s2_like")
HOLD = """
import sys, time
from changedet import _outdir
with _outdir.folder_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(60)
"""


@pytest.fixture()
def holder(tmp_path: Path):
    """A live process holding the lock of ``tmp_path / 'out'``."""
    folder = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    yield folder, proc
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)
    proc.stdout.close()


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_a_second_run_refuses_naming_the_folder_and_the_owner(holder, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    folder, proc = holder
    record = json.loads((folder / _outdir.LOCK_NAME).read_text())
    assert record["pid"] == proc.pid and record["host"] == socket.gethostname()
    assert _outdir.lock_owner(folder)["pid"] == proc.pid
    code = main(["detect", str(S2 / "before.tif"), str(S2 / "after.tif"), "--out", str(folder), "--no-figures"])
    assert code == 2
    line = _one_line(capsys)
    assert f"output folder {str(folder)!r} is in use" in line and f"pid {proc.pid}" in line
    with pytest.raises(OutputInUseError, match=rf"in use by another changedet run \(pid {proc.pid}"):
        run_batch([("a", S2 / "before.tif", S2 / "after.tif")], folder, progress=False)
    with pytest.raises(OutputInUseError, match=f"pid {proc.pid}"):
        detect_changes(S2 / "before.tif", S2 / "after.tif", out=folder, figures=False)
    assert sorted(p.name for p in folder.iterdir()) == [_outdir.LOCK_NAME]  # nothing written
    # a killed owner leaves its lock file; the next run takes it over
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert (folder / _outdir.LOCK_NAME).exists() and _outdir.lock_owner(folder) is None
    assert main(["detect", str(S2 / "before.tif"), str(S2 / "after.tif"), "--out", str(folder), "--no-figures"]) == 0
    assert (folder / "summary.json").exists() and not (folder / _outdir.LOCK_NAME).exists()


def test_batch_and_detect_in_one_folder_refuse_each_other(tmp_path: Path) -> None:
    """A real batch holding the folder: a detect started meanwhile gets exit 2 and one line."""
    pairs = sample_pairs_folder(tmp_path / "pairs", ("a", "b"))
    out = tmp_path / "out"
    env = dict(os.environ, MPLBACKEND="Agg")
    batch = subprocess.Popen([sys.executable, "-m", "changedet.cli", "batch", str(pairs), "--out", str(out)],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while _outdir.lock_owner(out) is None and batch.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert batch.poll() is None, batch.communicate()
        second = subprocess.run([sys.executable, "-m", "changedet.cli", "detect", str(S2 / "before.tif"),
                                 str(S2 / "after.tif"), "--out", str(out), "--no-figures"],
                                env=env, capture_output=True, text=True, timeout=120)
        assert second.returncode == 2
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and f"pid {batch.pid}" in lines[0] and str(out) in lines[0], second.stderr
    finally:
        stdout, stderr = batch.communicate(timeout=180)
    assert batch.returncode == 0, stderr
    assert "2 pairs: 2 done" in stdout
    assert not (out / "summary.json").exists()  # the detect wrote nothing into the batch's folder


def test_a_stale_lock_file_of_a_dead_pid_is_taken_over(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (folder / _outdir.LOCK_NAME).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname()}))
    with _outdir.folder_lock(folder):
        assert json.loads((folder / _outdir.LOCK_NAME).read_text())["pid"] == os.getpid()
    assert not (folder / _outdir.LOCK_NAME).exists()


def test_the_pid_fallback_takes_over_only_a_dead_owner(tmp_path: Path) -> None:
    """Where flock is missing the lock is an exclusive create plus the owner's pid."""
    folder = tmp_path / "out"
    folder.mkdir()
    path = folder / _outdir.LOCK_NAME
    path.write_text(json.dumps({"pid": os.getppid(), "host": socket.gethostname()}))  # alive
    with pytest.raises(OutputInUseError, match=f"pid {os.getppid()}"):
        _outdir._acquire_by_pid(folder, path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    path.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname()}))
    fd = _outdir._acquire_by_pid(folder, path)
    try:
        assert json.loads(path.read_text())["pid"] == os.getpid()
    finally:
        os.close(fd)


def test_the_lock_is_reentrant_and_an_empty_folder_it_made_goes(tmp_path: Path) -> None:
    folder = tmp_path / "new" / "out"
    with _outdir.folder_lock(folder):
        with _outdir.folder_lock(folder):  # detect_changes inside a command that holds it
            assert (folder / _outdir.LOCK_NAME).exists()
        assert (folder / _outdir.LOCK_NAME).exists()  # still held by the outer block
    assert not folder.exists()  # made here and left empty: removed
    with pytest.raises(ValueError):
        with _outdir.folder_lock(folder):
            (folder / "kept.txt").write_text("x")
            raise ValueError("boom")
    assert sorted(p.name for p in folder.iterdir()) == ["kept.txt"]


@pytest.mark.parametrize("make", ["file", "parent_file"])
def test_an_output_folder_that_cannot_be_one_is_one_line(make: str, tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    folder = tmp_path / "f" if make == "file" else tmp_path / "f" / "sub"
    with pytest.raises(ChangedetError, match=r"(exists and is not a folder|a part of its path is a file)"):
        with _outdir.folder_lock(folder):
            pass


def test_a_finished_site_keeps_no_stale_lock(tmp_path: Path) -> None:
    """A batch killed between a pair's summary and its lock's release: the next batch skips the
    pair and removes the lock file it left."""
    pairs = [("a", S2 / "before.tif", S2 / "after.tif")]
    out = tmp_path / "out"
    run_batch(pairs, out, progress=False)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / "a" / _outdir.LOCK_NAME).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname()}))
    res = run_batch(pairs, out, progress=False)
    assert res.outcomes[0].status == "skipped"
    assert not (out / "a" / _outdir.LOCK_NAME).exists()


FORK_THEN_DIE = """
import os, sys, time
from changedet import _outdir
with _outdir.folder_lock(sys.argv[1]):
    pid = os.fork()
    if pid == 0:  # the child, as a pool worker starts
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)  # the test reads the parent's output to its end
        if sys.argv[2] == "forget":
            _outdir.forget_inherited_locks()
        time.sleep(30)
        os._exit(0)
    print(pid, flush=True)
    os.kill(os.getpid(), 9)  # the parent is killed outright; its child lives on
"""


@pytest.mark.parametrize("forget", [True, False])
def test_a_forked_worker_does_not_keep_a_killed_batchs_lock(forget: bool, tmp_path: Path) -> None:
    """A batch's workers are forked while it holds the output folder's lock; killed, the batch
    leaves its lock file, and a worker still alive must not keep the folder locked."""
    folder = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-c", FORK_THEN_DIE, str(folder), "forget" if forget else "keep"],
                          capture_output=True, text=True, timeout=60)
    child = int(proc.stdout.split()[0])
    try:
        assert (folder / _outdir.LOCK_NAME).exists()
        if forget:
            with _outdir.folder_lock(folder):  # taken over
                pass
        else:  # what forget_inherited_locks prevents: the child holds the dead parent's lock
            with pytest.raises(OutputInUseError):
                with _outdir.folder_lock(folder):
                    pass
    finally:
        os.kill(child, signal.SIGKILL)


def test_the_temporary_names_are_the_writers_names() -> None:
    """_outdir finds a killed run's temporaries by the marks io and _cog give them."""
    import inspect

    from changedet import _cog, _outdir
    from changedet import io as _io

    source = inspect.getsource(_outdir._remove_temporaries)
    assert f"{_io.PARTIAL}{{suffix}}" in source and f"*{_cog.SCRATCH_SUFFIX}" in source


def test_a_killed_geopackage_writes_journal_is_removed(tmp_path) -> None:
    from changedet import _outdir

    left = [tmp_path / ".changes.ab12cd.partial.gpkg", tmp_path / ".changes.ab12cd.partial.gpkg-journal",
            tmp_path / ".changes.ab12cd.partial.gpkg-wal", tmp_path / ".change_score.x1.tiles"]
    keep = [tmp_path / "changes.gpkg", tmp_path / "notes.txt"]
    for p in left + keep:
        p.write_text("x")
    removed = _outdir.remove_temporaries(tmp_path, ["changes.gpkg", "change_score.tif"])
    assert sorted(removed) == sorted(left)
    assert all(p.exists() for p in keep)
