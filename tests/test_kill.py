"""Kill at any moment: nothing lost, nothing wrong.

``changedet detect`` and ``changedet batch`` are killed with SIGKILL at 20 seeded random
moments (10 each, every run resuming the one before); after each kill every folder
holding ``summary.json`` is complete (each file it lists is there and reads) and equal to
an uninterrupted run's, no temporary file is taken for a result, and the run after the
last kill finishes the rest.  SIGTERM on a windowed run leaves no scratch tiles; Ctrl-C
while saving leaves no rasters or vectors without ``summary.json``; Ctrl-C on a batch with
2 workers ends it (exit 130) within seconds, with no worker left.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import rasterio
from affine import Affine

from conftest import live_pids, sample_pairs_folder
from changedet import data
from changedet.cli import main

S2 = data.sample_path("s2_like")
CLI = [sys.executable, "-m", "changedet.cli"]
ENV = dict(os.environ, MPLBACKEND="Agg")
TEMPORARY_MARKS = (".partial", ".tiles", ".changedet.lock")


def _start(*args: str) -> subprocess.Popen:
    # a session of its own: the kill reaches the batch's workers too, as a crash or the OOM killer's would
    # and Ctrl-C's default disposition: a shell without job control starts a background job
    # (`pytest &`) with SIGINT ignored, and a child would inherit that and never see the signal
    return subprocess.Popen([*CLI, *args], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=_default_sigint)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _run(*args: str) -> tuple[int, float, str]:
    t = time.perf_counter()
    proc = subprocess.run([*CLI, *args], env=ENV, capture_output=True, text=True, timeout=300)
    return proc.returncode, time.perf_counter() - t, proc.stderr


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _check_result(folder: Path, reference: Path | None = None, *, polygons: bool = True) -> bool:
    """A folder holding summary.json is a whole, readable result (equal to ``reference``'s
    rasters, and polygons unless ``polygons`` is False); returns whether it holds one."""
    if not (folder / "summary.json").exists():
        names = [p.name for p in folder.iterdir()] if folder.is_dir() else []
        # a killed run leaves result files no summary vouches for (the next run replaces them) and
        # temporaries, whose hidden names can never be taken for a result's
        from changedet.pipeline import OUTPUT_FILES

        assert all(n in OUTPUT_FILES or n.startswith(".") for n in names), names
        return False
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    outputs = summary["outputs"]
    assert {"change_mask.tif", "change_score.tif", "changes.geojson", "summary.json"} <= set(outputs)
    n = summary["results"]["n_changes"]
    for name in outputs:
        path = folder / name
        assert path.is_file(), f"{folder}: {name} listed in summary.json is missing"
        if name.endswith(".tif"):
            with rasterio.open(path) as src:
                src.read()
        elif name == "changes.geojson":
            assert len(json.loads(path.read_text(encoding="utf-8"))["features"]) == n
        elif name.endswith(".gpkg"):
            assert pyogrio.read_info(path)["features"] == n
        elif name.endswith(".png"):
            from PIL import Image

            with Image.open(path) as im:
                im.load()
        elif name.endswith(".html"):
            assert path.read_text(encoding="utf-8").rstrip().endswith("</html>")
    if reference is not None:
        for name in ("change_mask.tif", "change_score.tif", "changes.geojson")[: 3 if polygons else 2]:
            assert _sha(folder / name) == _sha(reference / name), f"{folder / name} differs from an uninterrupted run's"
    return True


def _temporaries(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if any(m in p.name for m in TEMPORARY_MARKS)]


def _kill_at(args: list[str], delay: float) -> float | None:
    """Start a run and SIGKILL its process group after ``delay`` s; the run's duration if it
    had ended by then."""
    t = time.perf_counter()
    proc = _start(*args)
    while proc.poll() is None and time.perf_counter() - t < delay:
        time.sleep(0.005)
    ended = time.perf_counter() - t if proc.poll() is not None else None
    if ended is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    return ended


def test_sigkill_at_random_moments_loses_nothing(tmp_path: Path) -> None:
    rng = random.Random(14)
    # an uninterrupted run: the rasters and polygons every finished result must equal (both paths
    # write the same mask and score bytes; a batch pair runs in memory as this does)
    code, t_ref, err = _run("detect", str(S2 / "before.tif"), str(S2 / "after.tif"), "--out", str(tmp_path / "ref"),
                            "--in-memory", "--no-figures")
    assert code == 0, err
    ref = tmp_path / "ref"

    # ---- detect, windowed: scratch tiles, COG commits, vectors, report, summary; --overwrite over a finished one
    args = [str(S2 / "before.tif"), str(S2 / "after.tif"), "--tiled", "--no-figures"]
    out = tmp_path / "detect"
    # how long an uninterrupted windowed run takes here (it loads the compiled kernels)
    code, t_detect, err = _run("detect", *args, "--out", str(tmp_path / "ref_windowed"))
    assert code == 0, err
    # moments from late in the imports (nothing is written before) to about the end of a run, and
    # one surely before and one surely after it, so the kills land on both sides of the end (20x:
    # a machine under load runs slower than when t_detect was measured; a run that ends is not killed)
    moments = [rng.uniform(0.4, 1.0) for _ in range(8)] + [0.15, 20.0]
    rng.shuffle(moments)
    states = []
    for share in moments:
        again = ["--overwrite"] if (out / "summary.json").exists() else []
        _kill_at(["detect", *args, "--out", str(out), *again], share * t_detect)
        states.append(_check_result(out, ref, polygons=False))
    again = ["--overwrite"] if (out / "summary.json").exists() else []
    code, _, err = _run("detect", *args, "--out", str(out), *again)
    assert code == 0, err
    assert _check_result(out, ref, polygons=False) and not _temporaries(out)

    # ---- batch, 2 pairs on 2 workers with figures: kills land in and between pairs and while tables are written
    pairs = sample_pairs_folder(tmp_path / "pairs", ("a", "b"))
    out = tmp_path / "batch"
    t_batch = 3.0 * t_ref
    finished = []
    moments = [rng.uniform(0.4, 1.0) for _ in range(8)] + [0.1, 20.0]  # and one surely early, one surely late
    rng.shuffle(moments)
    for share in moments:
        # all finished: the next run re-makes them (--overwrite), to be killed over finished results
        again = ["--overwrite"] if all((out / s / "summary.json").exists() for s in ("a", "b")) else []
        ended = _kill_at(["batch", str(pairs), "--out", str(out), "--workers", "2", *again], share * t_batch)
        t_batch = ended if ended and again else t_batch
        finished.append(sum(_check_result(out / s, ref) for s in ("a", "b")))
        if (out / "batch.csv").exists():  # the table is written whole or not at all
            rows = list(csv.DictReader((out / "batch.csv").read_text(encoding="utf-8").splitlines()))
            assert [r["site"] for r in rows] == ["a", "b"]
    proc = subprocess.run([*CLI, "batch", str(pairs), "--out", str(out), "--workers", "2"], env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "0 failed" in proc.stdout
    assert all(_check_result(out / s, ref) for s in ("a", "b"))
    assert not _temporaries(out)
    # the kills did land at different stages (not all before the first result, not all after the last)
    print(f"after each kill: detect finished {states}; batch sites finished {finished}")
    assert len(set(states)) == 2 and len(set(finished)) > 1, (states, finished)


def _scene(path: Path, seed: int, size: int = 1536) -> Path:
    rng = np.random.default_rng(seed)
    img = rng.integers(500, 1500, size=(4, size, size), dtype=np.uint16)
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=4, dtype="uint16", crs="EPSG:32639",
                       transform=Affine(10, 0, 500000, 0, -10, 6190000), tiled=True, blockxsize=256,
                       blockysize=256) as dst:
        dst.write(img)
        for i, n in enumerate(("B02", "B03", "B04", "B08"), start=1):
            dst.set_band_description(i, n)
    return path


def _wait_for(folder: Path, pattern: str, proc: subprocess.Popen, timeout: float = 120.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if folder.is_dir() and any(folder.glob(pattern)):
            return True
        time.sleep(0.005)
    return False


def test_sigterm_on_a_windowed_run_leaves_no_scratch_tiles(tmp_path: Path) -> None:
    before, after = _scene(tmp_path / "b.tif", 1), _scene(tmp_path / "a.tif", 2)
    out = tmp_path / "out"
    proc = _start("detect", str(before), str(after), "--out", str(out), "--tiled", "--no-figures")
    assert _wait_for(out, ".change_score.*.tiles", proc), "the run never wrote its scratch tiles"
    proc.send_signal(signal.SIGTERM)
    t = time.monotonic()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and time.monotonic() - t < 10, err
    assert err.strip().splitlines()[-1] == "changedet detect: terminated"
    left = sorted(p.name for p in out.iterdir()) if out.exists() else []
    assert left == [], left  # no scratch tiles, no partial rasters, no lock


@pytest.mark.parametrize("tiled", [False, True], ids=["in-memory", "windowed"])
def test_ctrl_c_while_saving_leaves_nothing_without_a_summary(tiled: bool, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Ctrl-C arrives once the rasters and vectors are written, before the summary."""
    from changedet import pipeline

    real = pipeline._write_vectors

    def then_ctrl_c(*args, **kwargs):
        real(*args, **kwargs)
        assert (args[1] / "changes.geojson").exists()
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "_write_vectors", then_ctrl_c)
    out = tmp_path / "out"
    argv = ["detect", str(S2 / "before.tif"), str(S2 / "after.tif"), "--out", str(out), "--no-figures",
            "--tiled" if tiled else "--in-memory"]
    assert main(argv) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == "changedet detect: interrupted"
    assert not out.exists() or sorted(p.name for p in out.iterdir()) == []
    # over a finished result (--overwrite): the old summary does not vouch for half-new files
    monkeypatch.setattr(pipeline, "_write_vectors", real)
    assert main(argv) == 0
    monkeypatch.setattr(pipeline, "_write_vectors", then_ctrl_c)
    assert main([*argv, "--overwrite"]) == 130
    assert sorted(p.name for p in out.iterdir()) == []


def test_sigint_during_a_real_save(tmp_path: Path) -> None:
    """A real SIGINT as a result file lands: the run either stops (130) leaving no result
    file, or had finished and is whole (0; or 130 when the signal came after summary.json,
    the last file, had landed: overview.png lands just before it)."""
    codes = []
    for k, trigger in enumerate(("change_mask.tif", "changes.geojson", "overview.png")):
        out = tmp_path / f"out{k}"
        proc = _start("detect", str(S2 / "before.tif"), str(S2 / "after.tif"), "--out", str(out), "--in-memory",
                      *(["--no-figures"] if trigger != "overview.png" else []))
        if _wait_for(out, trigger, proc):
            proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        codes.append(proc.returncode)
        assert proc.returncode in (0, 130), (trigger, proc.returncode, err[-2000:])
        if proc.returncode == 0 or (out / "summary.json").exists():
            assert _check_result(out)
        else:
            assert not out.exists() or sorted(p.name for p in out.iterdir()) == []
    assert 130 in codes, codes  # at least one signal landed while saving


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm-to-batch-only"])
def test_interrupting_a_batch_with_2_workers_stops_it_within_seconds(how: str, tmp_path: Path) -> None:
    sites = [f"s{i}" for i in range(4)]
    pairs = sample_pairs_folder(tmp_path / "pairs", sites)
    out = tmp_path / "out"
    proc = _start("batch", str(pairs), "--out", str(out), "--workers", "2")
    assert _wait_for(out, "*/summary.json", proc), proc.communicate()
    t = time.monotonic()
    if how == "ctrl-c":
        os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C reaches the whole foreground group
    else:
        proc.send_signal(signal.SIGTERM)  # the batch alone: it stops its workers
    _, err = proc.communicate(timeout=60)
    elapsed = time.monotonic() - t
    assert proc.returncode == (130 if how == "ctrl-c" else 143), err
    assert elapsed < 5.0, elapsed
    assert err.strip().splitlines()[-1] == f"changedet batch: {'interrupted' if how == 'ctrl-c' else 'terminated'}"
    time.sleep(0.5)
    assert live_pids(session=proc.pid) == []  # no worker left running
    done = [s for s in sites if _check_result(out / s)]
    assert 1 <= len(done) <= 3, done  # the queued pairs did not run on
    assert not _temporaries(out)
    if how != "ctrl-c":
        return
    # the next run finishes the rest
    proc = subprocess.run([*CLI, "batch", str(pairs), "--out", str(out), "--workers", "2"], env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and f"{len(done)} skipped" in proc.stdout, proc.stdout + proc.stderr
