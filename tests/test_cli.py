"""Tests for the ``changedet`` command (changedet.cli): exit codes, one-line errors, real runs."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from affine import Affine

from conftest import BANDS, ORIGIN, UTM39, PairFiles, make_scene, write_tif
from changedet import __version__
from changedet.cli import build_parser, main
from changedet.errors import ChangedetError

T10 = Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1])


def _one_error_line(capsys: pytest.CaptureFixture[str], command: str = "detect") -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"changedet {command}: error: "), err
    assert "Traceback" not in err
    return lines[0]


# --------------------------------------------------------------------------- detect
def test_detect(pair_tifs: PairFiles, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code = main(["detect", str(pair_tifs.before), str(pair_tifs.after), "--out", str(out), "--no-figures"])
    assert code == 0
    stdout = capsys.readouterr().out
    assert stdout.startswith("1 changed area, 0.60 ha (1.5 acres), in ")
    assert "new_construction" in stdout and str(out) in stdout
    assert sorted(p.name for p in out.iterdir()) == [
        "change_mask.tif", "change_score.tif", "changes.geojson", "changes.gpkg", "report.html", "summary.json"
    ]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["parameters"]["method"] == "auto" and summary["parameters"]["coregister"] is True


def test_detect_says_when_unnamed_bands_keep_it_from_the_spectral_method(
        pair_tifs: PairFiles, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import rasterio

    unnamed = {}
    for key, src_path in (("before", pair_tifs.before), ("after", pair_tifs.after)):
        with rasterio.open(src_path) as src:
            unnamed[key] = write_tif(tmp_path / f"{key}_unnamed.tif", src.read(), transform=src.transform,
                                     crs=src.crs, nodata=0)
    assert main(["detect", str(unnamed["before"]), str(unnamed["after"]), "--out", str(tmp_path / "u"),
                 "--no-figures"]) == 0
    err = capsys.readouterr().err
    assert "note: the 4 bands carry no names (band1, band2, band3, band4)" in err and "set_band_description" in err
    summary = json.loads((tmp_path / "u" / "summary.json").read_text())
    assert summary["method_details"]["auto_choice"] == "structure+colour" and "note" in summary["method_details"]
    # named bands: the spectral method, and nothing to say
    assert main(["detect", str(pair_tifs.before), str(pair_tifs.after), "--out", str(tmp_path / "n"),
                 "--no-figures"]) == 0
    assert "note:" not in capsys.readouterr().err


def test_detect_into_a_closed_pipe_is_quiet(pair_tifs: PairFiles, tmp_path: Path) -> None:
    """`changedet detect ... | head -0`: the reader is gone before the first line; the outputs are whole,
    nothing is said on stderr, and the exit status is a SIGPIPE death's (141), buffered or not."""
    for unbuffered in ("1", ""):
        out = tmp_path / f"out{unbuffered}"
        env = {**os.environ, "PYTHONUNBUFFERED": unbuffered, "MPLBACKEND": "Agg"}
        if not unbuffered:
            env.pop("PYTHONUNBUFFERED")
        proc = subprocess.Popen([sys.executable, "-m", "changedet.cli", "detect", str(pair_tifs.before),
                                 str(pair_tifs.after), "--out", str(out), "--no-figures"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        proc.stdout.close()  # the reader went away
        with proc.stderr:
            err = proc.stderr.read().decode()
        assert proc.wait() == 141, err
        assert err == ""
        assert (out / "summary.json").is_file() and (out / "changes.gpkg").is_file()


def test_detect_options_reach_the_pipeline(pair_tifs: PairFiles, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code = main([
        "detect", str(pair_tifs.before), str(pair_tifs.after), "--out", str(out), "--no-figures",
        "--method", "diff", "--threshold", "p99", "--min-area-m2", "300", "--bands", "B04, B08",
        "--no-coregister", "--no-align",
    ])
    assert code == 0, capsys.readouterr().err
    params = json.loads((out / "summary.json").read_text())["parameters"]
    assert params["method"] == "diff" and params["threshold"] == "p99" and params["threshold_method"] == "percentile"
    assert params["min_area_m2"] == 300.0 and params["bands"] == ["B04", "B08"]
    assert params["coregister"] is False and params["align"] is False


def test_detect_with_truth_adds_accuracy(pair_tifs: PairFiles, tmp_path: Path) -> None:
    scene = make_scene()
    truth = write_tif(tmp_path / "truth.tif", scene.truth.astype("uint8"), transform=T10, crs=UTM39, dtype="uint8")
    out = tmp_path / "out"
    assert main(["detect", str(pair_tifs.before), str(pair_tifs.after), "--out", str(out), "--no-figures",
                 "--truth", str(truth)]) == 0
    acc = json.loads((out / "summary.json").read_text())["accuracy"]
    assert acc["f1"] > 0.9 and acc["tp"] >= 54


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["{missing}", "{after}"], r"before '.*missing\.tif' does not exist"),
        (["{text}", "{after}"], r"fake\.tif' is not a raster GDAL can read"),
        (["{before}", "{after}", "--threshold", "median"], r"error: --threshold must be a number, 'pNN'"),
        (["{before}", "{after}", "--aoi", "1,2,3"], r"error: --aoi '1,2,3' is neither an existing GeoJSON file"),
        (["{before}", "{after}", "--aoi", "10,10,10.1,10.1"], r"the area of interest .* does not overlap the images"),
        (["{before}", "{far}"], r"the images do not overlap"),
        (["{before}", "{after}", "--bands", "B11"], r"the before image has no band 'B11': its bands are \["),
        (["{before}", "{after}", "--min-area-m2", "-5"], r"error: --min-area-m2 must be a number >= 0, got -5\.0"),
        (["{before}", "{after}", "--method", "magic"], r"argument --method: invalid choice: 'magic'"),
        (["{before}"], r"the following arguments are required: AFTER"),
        (["{before}", "{after}", "--min-area-m2", "lots"], r"argument --min-area-m2: invalid float value: 'lots'"),
    ],
)
def test_detect_bad_input(
    args: list[str], match: str, pair_tifs: PairFiles, tmp_path: Path, capsys: pytest.CaptureFixture[str], make_tif
) -> None:
    text = tmp_path / "fake.tif"
    text.write_text("not a raster")
    far = make_tif(tmp_path / "far.tif", np.ones((4, 10, 10)), transform=Affine(10, 0, 700_000, 0, -10, 6_200_000),
                   crs=UTM39, descriptions=BANDS)
    paths = dict(before=pair_tifs.before, after=pair_tifs.after, missing=tmp_path / "missing.tif", text=text, far=far)
    argv = ["detect", *(a.format(**paths) for a in args), "--out", str(tmp_path / "out")]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse errors exit
        code = exc.code
    assert code == 2
    line = _one_error_line(capsys)
    assert re.search(match, line), line
    assert not (tmp_path / "out" / "summary.json").exists()


def test_detect_refuses_a_finished_output(pair_tifs: PairFiles, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    argv = ["detect", str(pair_tifs.before), str(pair_tifs.after), "--out", str(out), "--no-figures"]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(argv) == 2
    line = _one_error_line(capsys)
    assert "already holds a finished result" in line and "--overwrite" in line
    assert main([*argv, "--overwrite"]) == 0


def test_debug_env_shows_the_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHANGEDET_DEBUG", "1")
    with pytest.raises(ChangedetError, match="does not exist"):
        main(["detect", str(tmp_path / "a.tif"), str(tmp_path / "b.tif"), "--out", str(tmp_path / "o")])


# --------------------------------------------------------------------------- help, version
def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for command in ("detect", "evaluate", "demo", "fetch", "batch"):
        assert command in out


def test_detect_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["detect", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--threshold" in out and "--aoi" in out and "change_mask.tif" in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"changedet {__version__}"


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: changedet" in capsys.readouterr().out


def test_unknown_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["detcet"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("changedet: error: argument COMMAND: invalid choice: 'detcet'")


def test_parser_defaults() -> None:
    args = build_parser().parse_args(["detect", "a.tif", "b.tif", "--out", "x"])
    assert (args.method, args.threshold, args.aoi, args.coregister, args.overwrite) == ("auto", None, None, None, False)
    assert build_parser().parse_args(["detect", "a.tif", "b.tif", "--out", "x", "--no-coregister"]).coregister is False
    assert build_parser().parse_args(["detect", "a.tif", "b.tif", "--out", "x", "--coregister"]).coregister is True


# --------------------------------------------------------------------------- evaluate
PRED = np.array([[1, 1, 0, 0], [1, 0, 0, 255], [0, 0, 1, 0]], "uint8")
TRUTH01 = np.array([[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]], "uint8")  # tp 2, fp 2, fn 1, tn 6, 1 ignored


@pytest.fixture
def masks(tmp_path: Path) -> dict[str, Path]:
    kw = dict(transform=T10, crs=UTM39, dtype="uint8")
    return {
        "pred": write_tif(tmp_path / "pred.tif", PRED, nodata=255, **kw),
        "truth01": write_tif(tmp_path / "truth01.tif", TRUTH01, **kw),
        "truth12": write_tif(tmp_path / "truth12.tif", TRUTH01 + 1, **kw),  # OSCD: 2 change, 1 no change
        "rgb": write_tif(tmp_path / "rgb.tif", np.ones((3, 3, 4)), **kw),
        "truth0255": write_tif(tmp_path / "truth0255.tif", TRUTH01 * 255, **kw),  # 8-bit labels
        "truthpng": _png(tmp_path / "label.png", TRUTH01 * 255),  # LEVIR-CD's kind: 255 change, no georeferencing
    }


def _png(path: Path, arr: np.ndarray) -> Path:
    from PIL import Image

    Image.fromarray(arr.astype("uint8")).save(path)
    return path


@pytest.mark.parametrize("truth", ["truth01", "truth12", "truth0255", "truthpng"])
def test_evaluate_auto_detects_truth_values(masks: dict[str, Path], truth: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", str(masks["pred"]), str(masks[truth]), "--json"]) == 0
    acc = json.loads(capsys.readouterr().out)
    assert (acc["tp"], acc["fp"], acc["fn"], acc["tn"], acc["n_ignored"]) == (2, 2, 1, 6, 1)
    assert acc["f1"] == pytest.approx(2 * 2 / (2 * 2 + 2 + 1), abs=1e-9)


def test_evaluate_explicit_truth_values(masks: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    # reading the OSCD mask with 0/1 semantics would be wrong: say it explicitly
    assert main(["evaluate", str(masks["pred"]), str(masks["truth12"]), "--truth-change", "2",
                 "--truth-nochange", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tp"] == 2


def test_evaluate_text_report(masks: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", str(masks["pred"]), str(masks["truth01"])]) == 0
    out = capsys.readouterr().out
    assert "F1 0.5714" in out and "pixels compared 11 (ignored 1)" in out


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["{pred}", "{rgb}"], r"TRUTH_MASK '.*rgb\.tif' has 3 bands; a mask has one"),
        (["{rgb}", "{pred}"], r"PREDICTED_MASK '.*rgb\.tif' has 3 bands; a mask has one"),
        (["{pred}", "{truth01}", "--truth-change", "x"], r"expected comma-separated numbers, got 'x'"),
        (["{pred}", "{missing}"], r"input '.*missing\.tif' does not exist"),
    ],
)
def test_evaluate_bad_input(
    args: list[str], match: str, masks: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = {k: str(v) for k, v in masks.items()} | {"missing": str(tmp_path / "missing.tif")}
    assert main(["evaluate", *(a.format(**paths) for a in args)]) == 2
    line = _one_error_line(capsys, "evaluate")
    assert re.search(match, line), line


# --------------------------------------------------------------------------- the installed command
def _changedet_command() -> list[str]:
    exe = Path(sys.executable).with_name("changedet")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("changedet")
    return [found] if found else [sys.executable, "-m", "changedet.cli"]


def test_console_script_runs_detect(tmp_path: Path, make_tif) -> None:
    scene = make_scene(shape=(96, 128))  # tiny, but holds the building
    kw = dict(transform=T10, crs=UTM39, descriptions=BANDS)
    b = make_tif(tmp_path / "b.tif", scene.before, **kw)
    a = make_tif(tmp_path / "a.tif", scene.after, **kw)
    out = tmp_path / "out"
    env = dict(os.environ, MPLBACKEND="Agg")
    proc = subprocess.run([*_changedet_command(), "detect", str(b), str(a), "--out", str(out)],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("1 changed area,")
    assert (out / "summary.json").exists() and (out / "overview.png").exists()
    bad = subprocess.run([*_changedet_command(), "detect", str(tmp_path / "nope.tif"), str(a), "--out", str(tmp_path / "o2")],
                         capture_output=True, text=True, timeout=120, env=env)
    assert bad.returncode == 2
    assert bad.stderr.startswith("changedet detect: error: before ") and len(bad.stderr.strip().splitlines()) == 1


# --------------------------------------------------------------------------- OSCD
def test_oscd_rennes_detect_and_evaluate(oscd: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    city = oscd / "rennes"
    out = tmp_path / "rennes"
    assert main(["detect", str(city / "imgs_1"), str(city / "imgs_2"), "--out", str(out), "--no-figures"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["grid"]["crs"] == "EPSG:4326" and summary["grid"]["shape"] == [339, 563]
    assert len(summary["inputs"]["before"]["bands"]) == 13
    capsys.readouterr()
    assert main(["evaluate", str(out / "change_mask.tif"), str(city / "cm" / "rennes-cm.tif"), "--json"]) == 0
    acc = json.loads(capsys.readouterr().out)
    # the truth marks 1 = no change, 2 = change: auto-detected, so changed truth pixels are counted
    assert acc["tp"] + acc["fn"] > 1000
    assert acc["n_valid"] + acc["n_ignored"] == 339 * 563
    assert 0.0 <= acc["f1"] <= 1.0


def test_the_program_ends_without_teardown_but_with_its_exit_handlers(pair_tifs: PairFiles, tmp_path: Path) -> None:
    """The program skips Python's teardown after a command (0.06 s of a small run), yet runs the
    exit handlers (coverage, temporary folders) and flushes everything it printed; with another
    thread still running it exits as Python does, which waits for it.  A daemon thread (tqdm's
    monitor beside a progress bar) is one Python's exit would not wait for: the fast exit."""
    code = r'''
import atexit, sys, threading, time
from changedet import cli
handler, fast, thread, mode = sys.argv[1:5]
atexit.register(lambda: open(handler, "w").write("handler ran"))
real = cli.os._exit
cli.os._exit = lambda c: (open(fast, "w").write(f"fast {c}"), real(c))
if mode == "thread":  # still working when the program ends, however long the command took
    ending = threading.Event()
    real_end = cli._end
    cli._end = lambda c: (ending.set(), real_end(c))
    threading.Thread(target=lambda: (ending.wait(120), time.sleep(0.3), open(thread, "w").write("thread done"))).start()
if mode == "daemon":
    threading.Thread(target=lambda: time.sleep(60), daemon=True).start()
sys.argv = ["changedet", "detect", *sys.argv[5:]]
cli.entry()
'''
    out = tmp_path / "out"
    args = [str(pair_tifs.before), str(pair_tifs.after), "--out", str(out), "--no-figures"]
    for mode in ("alone", "thread", "daemon"):
        marks = [tmp_path / f"{mode}_{n}" for n in ("handler", "fast", "thread")]
        proc = subprocess.run([sys.executable, "-c", code, *map(str, marks), mode, *args, "--overwrite"],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith("1 changed area,") and proc.stdout.endswith("\n")  # all of it, flushed
        assert marks[0].read_text() == "handler ran"
        if mode in ("alone", "daemon"):
            assert marks[1].read_text() == "fast 0"
        else:  # the ordinary exit: the thread finished its work
            assert not marks[1].exists()
            assert marks[2].read_text() == "thread done"


# --------------------------------------------------------------------------- report
def test_report_writes_a_result_folders_page_again(pair_tifs: PairFiles, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """changedet report DIR: the page detect wrote, from the folder's files (the sort keys read
    from changes.geojson carry its rounding); a batch folder gets its index; anything else exit 2."""
    out = tmp_path / "batch" / "site1"
    assert main(["detect", str(pair_tifs.before), str(pair_tifs.after), "--out", str(out), "--no-figures"]) == 0
    page = out / "report.html"
    first = page.read_text(encoding="utf-8")
    page.unlink()
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {page}"
    again = page.read_text(encoding="utf-8")

    def shown(html: str) -> str:  # what the page shows up to its method (whose timings now hold the save's),
        # the sort keys (data-v) aside
        return re.sub(r' data-v="[^"]*"', "", html.split("<h2>Method and parameters</h2>")[0])

    assert shown(again) == shown(first) and "new_construction" in again
    assert main(["report", str(out.parent), "--title", "overnight"]) == 0  # a folder of results: the index
    index = (out.parent / "index.html").read_text(encoding="utf-8")
    assert "<title>changedet batch: overnight</title>" in index and "site1/report.html" in index
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "is not a folder" in _one_error_line(capsys, "report")
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "not a changedet result" in _one_error_line(capsys, "report")
