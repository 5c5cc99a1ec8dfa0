"""The command line's figure helper (changedet._figproc): the same figure, never a stray file or process."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import live_pids
from changedet import _figproc, data, pipeline, report
from changedet.pipeline import detect_changes

S2 = data.sample_path("s2_like")
ENV = {**os.environ, "MPLBACKEND": "Agg"}


def test_the_command_draws_with_a_helper_the_figure_drawn_in_process(tmp_path: Path) -> None:
    """`changedet detect` (its own process: the helper draws) writes the overview byte for byte as
    ``detect_changes(..., out=...)`` in this process (no helper) does."""
    here = tmp_path / "in_process"
    detect_changes(S2 / "before.tif", S2 / "after.tif", out=here)
    assert _figproc.current() is None  # a Python caller never gets a helper
    there = tmp_path / "command"
    proc = subprocess.Popen([sys.executable, "-m", "changedet.cli", "detect", str(S2 / "before.tif"),
                             str(S2 / "after.tif"), "--out", str(there)], env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    # the helper is forked at the start and gone at the end
    seen: set[int] = set()
    while proc.poll() is None:
        seen.update(live_pids(parent=proc.pid))
        time.sleep(0.02)
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    assert seen, "no helper process was started"
    assert [p for p in seen if p in live_pids()] == []  # the helper did not outlive the command
    assert (there / "overview.png").read_bytes() == (here / "overview.png").read_bytes()
    assert not list(there.glob(".*partial*"))


def test_the_helper_reduces_a_large_figure_for_the_page_as_the_page_would(tmp_path: Path) -> None:
    """Over the page's budget, the figure's reduction for ``report.html`` is made by the helper while
    it encodes the PNG: the same bytes the page would make, used once, only for that figure."""
    result = detect_changes(S2 / "before.tif", S2 / "after.tif")
    budget = 50_000
    report._PREPARED.clear()
    with _figproc.started() as helper:
        target = tmp_path / "overview.png"
        assert helper.draw_overview(result._overview_arguments(), target, embed_budget=budget)
        assert helper.wait() is True
    raw = target.read_bytes()
    assert len(raw) > budget
    assert list(report._PREPARED) == [report._digest(raw)]  # the helper sent its reduction
    prepared = report._PREPARED[report._digest(raw)]
    report._PREPARED.clear()
    own_uri, own_note = report._image_data_uri(target, budget_bytes=budget)  # the page on its own
    assert prepared == (budget, base64.b64decode(own_uri.split(",", 1)[1]), own_note)
    assert own_uri.startswith("data:image/jpeg;base64,") and "a JPEG of quality 90" in own_note
    # the page takes a prepared reduction of this very figure, once
    report._prepare_embedding(report._digest(raw), budget, b"prepared", "a note")
    assert report._image_data_uri(target, budget_bytes=budget) == (
        "data:image/png;base64," + base64.b64encode(b"prepared").decode(), "a note")
    assert report._PREPARED == {}
    # not for another figure, nor for another budget
    report._prepare_embedding(report._digest(raw + b"x"), budget, b"prepared", "a note")
    assert report._image_data_uri(target, budget_bytes=budget)[1] == own_note
    report._prepare_embedding(report._digest(raw), budget * 2, b"prepared", "a note")
    assert report._image_data_uri(target, budget_bytes=budget)[1] == own_note
    report._PREPARED.clear()


def test_a_helper_draws_what_it_is_sent_and_a_dead_one_is_drawn_around(tmp_path: Path) -> None:
    result = detect_changes(S2 / "before.tif", S2 / "after.tif")
    result.save(tmp_path / "reference")
    with _figproc.started() as helper:
        assert helper is not None and _figproc.current() is helper
        target = tmp_path / "sent.png"
        assert helper.draw_overview(result._overview_arguments(), target)
        assert helper.wait() is True
        assert target.read_bytes() == (tmp_path / "reference" / "overview.png").read_bytes()
        # killed (the OOM killer, a user): the next save draws in process, the same figure
        os.kill(helper._proc.pid, signal.SIGKILL)
        helper._proc.join(5)
        assert _figproc.current() is None
        result.save(tmp_path / "after_kill")
        assert (tmp_path / "after_kill" / "overview.png").read_bytes() == target.read_bytes()
    assert _figproc.current() is None


def test_a_helper_that_fails_to_draw_leaves_the_error_to_the_process(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Arguments the helper cannot draw: it answers 'failed' and the figure is drawn in process,
    where the error is raised as it would be without a helper."""
    result = detect_changes(S2 / "before.tif", S2 / "after.tif")
    with _figproc.started() as helper:
        assert helper is not None
        assert helper.draw_overview({"labels": ("only one",)}, tmp_path / "x.png")
        assert helper.wait() is False
        assert helper.alive()  # it goes on serving
        real = pipeline.ChangeResult._overview_arguments
        monkeypatch.setattr(pipeline.ChangeResult, "_overview_arguments",
                            lambda self, **kw: {**real(self, **kw), "labels": ("only one",)})
        with pytest.raises(Exception, match="labels must be two titles"):
            result.save(tmp_path / "bad")
        assert not (tmp_path / "bad" / "overview.png").exists()
        assert not (tmp_path / "bad" / "summary.json").exists()


def test_a_save_that_fails_while_the_helper_draws_leaves_no_file(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The vectors fail (a full disk) while the helper draws: the helper is stopped before the
    temporary figure is removed, so nothing lands in the folder afterwards."""
    result = detect_changes(S2 / "before.tif", S2 / "after.tif")

    def failing(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pipeline, "_write_vectors", failing)
    out = tmp_path / "out"
    with _figproc.started() as helper:
        assert helper is not None
        with pytest.raises(OSError, match="No space left"):
            result.save(out)
        assert not helper.alive()
        time.sleep(1.0)  # a helper still drawing would have written its file by now
        left = sorted(p.name for p in out.iterdir()) if out.exists() else []
        assert left == [], left


def _images_only(arguments: dict) -> dict:
    return {k: v for k, v in arguments.items() if k not in ("polygons", "mask", "structures", "class_colors")}


def test_a_figure_prepared_from_its_images_is_the_figure_drawn_whole(tmp_path: Path) -> None:
    """The helper draws the image panels when sent the images (the command does while the pair is
    scored) and the changes over them later: the bytes of the figure drawn in one go."""
    result = detect_changes(S2 / "before.tif", S2 / "after.tif", tiled=False)
    result.save(tmp_path / "reference")
    arguments = result._overview_arguments()
    with _figproc.started() as helper:
        assert helper is not None
        # copies: the images are compared by value, not by identity
        images = _images_only(arguments)
        images["before"] = images["before"].with_data(images["before"].data.copy())
        assert helper.prepare_overview(images)
        target = tmp_path / "prepared.png"
        assert helper.draw_overview(arguments, target)
        assert helper.used_prepared
        assert helper.wait() is True
        assert target.read_bytes() == (tmp_path / "reference" / "overview.png").read_bytes()


def test_an_announced_figure_is_drawn_over_when_its_images_come_late(tmp_path: Path) -> None:
    """The command announces the images when an in-memory run begins (the helper then skips its
    warm-up figure); they may come after the helper's wait for them has ended: the announcement
    is read as such, and the figure is the one drawn in one go."""
    result = detect_changes(S2 / "before.tif", S2 / "after.tif", tiled=False)
    result.save(tmp_path / "reference")
    arguments = result._overview_arguments()
    with _figproc.started() as helper:
        assert helper is not None
        helper.expect_overview()
        time.sleep(0.6)  # past the helper's 0.25 s wait for images
        assert helper.prepare_overview(_images_only(arguments))
        target = tmp_path / "announced.png"
        assert helper.draw_overview(arguments, target)
        assert helper.used_prepared
        assert helper.wait() is True
        assert target.read_bytes() == (tmp_path / "reference" / "overview.png").read_bytes()


def test_a_prepared_figure_of_other_images_is_not_drawn_over(tmp_path: Path) -> None:
    """Images that are not the result's (the after image was shifted by co-registration since, or
    the dates differ): the whole figure is sent and drawn, the same as in process."""
    result = detect_changes(S2 / "before.tif", S2 / "after.tif", tiled=False)
    result.save(tmp_path / "reference")
    arguments = result._overview_arguments()
    for change in ("pixels", "labels"):
        images = _images_only(arguments)
        if change == "pixels":
            data = images["after"].data.copy()
            data[0, data.shape[1] // 2, data.shape[2] // 2] += 1  # a finite pixel (the edges may be NaN)
            images["after"] = images["after"].with_data(data)
        else:
            images["labels"] = ("before (another day)", "after")
        with _figproc.started() as helper:
            assert helper is not None
            assert helper.prepare_overview(images)
            target = tmp_path / f"{change}.png"
            assert helper.draw_overview(arguments, target)
            assert not helper.used_prepared
            assert helper.wait() is True
            assert target.read_bytes() == (tmp_path / "reference" / "overview.png").read_bytes()


def test_the_command_prepares_its_figure_while_the_pair_is_scored(tmp_path: Path) -> None:
    """`changedet detect` on a pair the co-registration leaves as it is: the figure drawn over the
    prepared image panels, byte for byte the one drawn in process."""
    code = r'''
import sys
from changedet import _figproc, cli
used = []
real = _figproc.FigureProcess.draw_overview
def spy(self, *a, **k):
    ok = real(self, *a, **k)
    used.append(self.used_prepared)
    return ok
_figproc.FigureProcess.draw_overview = spy
sys.argv = ["changedet", *sys.argv[1:]]
code = cli.main()
print("USED", used)
sys.exit(code)
'''
    hires = data.sample_path("hires_rgb")
    here = tmp_path / "in_process"
    result = detect_changes(hires / "before.tif", hires / "after.tif", out=here)
    assert not result.summary["coregistration"] or not result.summary["coregistration"].get("applied")
    there = tmp_path / "command"
    proc = subprocess.run([sys.executable, "-c", code, "detect", str(hires / "before.tif"), str(hires / "after.tif"),
                           "--out", str(there)], env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "USED [True]" in proc.stdout
    assert (there / "overview.png").read_bytes() == (here / "overview.png").read_bytes()


def test_a_helper_for_one_figure_leaves_once_it_is_written(tmp_path: Path) -> None:
    """``started(figures=1)`` (the detect command's): once its figure is written the helper exits
    by itself, while the caller goes on; a later figure is drawn in process, the same bytes."""
    result = detect_changes(S2 / "before.tif", S2 / "after.tif")
    result.save(tmp_path / "reference")
    with _figproc.started(figures=1) as helper:
        assert helper is not None
        assert helper.draw_overview(result._overview_arguments(), tmp_path / "sent.png")
        assert helper.wait() is True
        helper._proc.join(10)  # not stopped by anyone: it left on its own
        assert not helper._proc.is_alive() and helper._proc.exitcode == 0
        assert _figproc.current() is None
        result.save(tmp_path / "after")
    for name in ("sent.png", "after/overview.png"):
        assert (tmp_path / name).read_bytes() == (tmp_path / "reference" / "overview.png").read_bytes()
    with _figproc.started() as helper:  # any number of figures: it stays until stopped
        assert helper.draw_overview(result._overview_arguments(), tmp_path / "again.png")
        assert helper.wait() is True
        helper._proc.join(1.0)
        assert helper.alive()


def test_a_windowed_run_stops_the_helper_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The helper is for in-memory runs: a run that takes the windowed path (here: too little
    memory free) stops it as it starts, so its imports do not take a core from the windows,
    and draws its own figure from the previews."""
    from changedet import io as cio

    monkeypatch.setattr(cio, "available_memory_bytes", lambda: 1 << 20)
    with _figproc.started() as helper:
        assert helper is not None and helper.alive()
        result = detect_changes(S2 / "before.tif", S2 / "after.tif", out=tmp_path / "w")
        assert result.run is not None and result.run.extra.get("path") == "windowed"
        assert _figproc.current() is None and not helper._proc.is_alive()
    assert (tmp_path / "w" / "overview.png").is_file() and (tmp_path / "w" / "summary.json").is_file()
