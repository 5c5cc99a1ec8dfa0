"""Batch runs: CSV and folder inputs, failures recorded, resume, dask.distributed."""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from scipy import ndimage

from changedet.batch import Pair, read_pairs, run_batch
from changedet.errors import ChangedetError, InvalidParameterError


def _write(path: Path, data: np.ndarray, *, x0: float = 500000.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(
        path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
        dtype="uint16", crs="EPSG:32639", transform=Affine(10, 0, x0, 0, -10, 6190000),
    ) as dst:
        dst.write(data.astype("uint16"))
        for i, n in enumerate(("B02", "B03", "B04", "B08"), start=1):
            dst.set_band_description(i, n)


def _pair(folder: Path, seed: int, *, building: bool = True) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    base = ndimage.gaussian_filter(rng.normal(size=(4, 96, 96)), (0, 3, 3))
    img = (800 + 400 * base / base.std()).clip(1, None)
    after = img.copy()
    if building:
        after[:, 40:52, 30:50] += 2500
    _write(folder / "before.tif", img)
    _write(folder / "after.tif", after)
    return folder / "before.tif", folder / "after.tif"


@pytest.fixture()
def pair_folder(tmp_path: Path) -> Path:
    root = tmp_path / "sites"
    for i in range(3):
        _pair(root / f"site{i}", i)
    return root


def test_read_pairs_from_folder_and_csv(pair_folder: Path, tmp_path: Path) -> None:
    pairs = read_pairs(pair_folder)
    assert [p.site for p in pairs] == ["site0", "site1", "site2"]
    assert pairs[0].before.endswith("before.tif") and pairs[0].after.endswith("after.tif")
    csv_path = pair_folder / "pairs.csv"
    csv_path.write_text("site,before,after\nA b,site0/before.tif,site0/after.tif\n", encoding="utf-8")
    (p,) = read_pairs(csv_path)
    assert p.site == "A_b"  # made safe for a folder name
    assert Path(p.before) == pair_folder / "site0" / "before.tif"


def test_read_pairs_errors(tmp_path: Path) -> None:
    with pytest.raises(ChangedetError, match="does not exist"):
        read_pairs(tmp_path / "nope.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("name,t1,t2\nx,a,b\n", encoding="utf-8")
    with pytest.raises(ChangedetError, match="site,before,after"):
        read_pairs(bad)
    with pytest.raises(ChangedetError, match="holds no pairs"):
        read_pairs(tmp_path)
    with pytest.raises(ChangedetError, match="unique"):
        read_pairs([("a", "x", "y"), ("a", "x", "y")])


def test_batch_runs_records_failures_and_writes_tables(pair_folder: Path, tmp_path: Path) -> None:
    broken = pair_folder / "site_broken"
    broken.mkdir()
    (broken / "before.tif").write_bytes(b"not a raster")
    (broken / "after.tif").write_bytes(b"not a raster")
    out = tmp_path / "out"
    res = run_batch(pair_folder, out, progress=False)
    status = {o.site: o.status for o in res.outcomes}
    assert status == {"site0": "done", "site1": "done", "site2": "done", "site_broken": "failed"}
    failed = next(o for o in res.outcomes if o.status == "failed")
    assert "not a raster" in failed.error
    assert not (out / "site_broken" / "summary.json").exists()
    rows = list(csv.DictReader((out / "batch.csv").read_text(encoding="utf-8").splitlines()))
    assert [r["site"] for r in rows] == ["site0", "site1", "site2", "site_broken"]
    assert rows[0]["n_changes"] == "1"
    assert abs(float(rows[0]["changed_area_m2"]) - 240 * 100) / 24000 < 0.15
    gj = json.loads((out / "batch_changes.geojson").read_text(encoding="utf-8"))
    assert {f["properties"]["site"] for f in gj["features"]} == {"site0", "site1", "site2"}


def test_batch_resumes_and_never_trusts_half_done(pair_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = run_batch(pair_folder, out, progress=False)
    assert all(o.status == "done" for o in first.outcomes)
    # simulate a kill half-way through site1: its summary never landed
    (out / "site1" / "summary.json").unlink()
    (out / "site1" / "change_mask.tif").write_bytes(b"half")
    stamp = (out / "site0" / "summary.json").stat().st_mtime_ns
    second = run_batch(pair_folder, out, progress=False)
    status = {o.site: o.status for o in second.outcomes}
    assert status == {"site0": "skipped", "site1": "done", "site2": "skipped"}
    assert (out / "site0" / "summary.json").stat().st_mtime_ns == stamp  # not overwritten
    with rasterio.open(out / "site1" / "change_mask.tif") as src:
        assert src.read(1).max() == 1
    third = run_batch(pair_folder, out, progress=False, overwrite=True)
    assert all(o.status == "done" for o in third.outcomes)


def test_batch_two_local_workers_match_one(pair_folder: Path, tmp_path: Path) -> None:
    one = run_batch(pair_folder, tmp_path / "one", progress=False)
    two = run_batch(pair_folder, tmp_path / "two", workers=2, progress=False)
    assert [(o.site, o.n_changes, o.changed_area_m2) for o in one.outcomes] == [
        (o.site, o.n_changes, o.changed_area_m2) for o in two.outcomes
    ]


def test_batch_options_validated(tmp_path: Path) -> None:
    with pytest.raises(InvalidParameterError, match="method"):
        run_batch([Pair("a", "x", "y")], tmp_path, method="magic", progress=False)
    with pytest.raises(InvalidParameterError, match="workers"):
        run_batch([Pair("a", "x", "y")], tmp_path, workers=0, progress=False)
    with pytest.raises(InvalidParameterError, match="workers"):
        run_batch([Pair("a", "x", "y")], tmp_path, workers=1.5, progress=False)
    # every option is checked before any pair runs (not once per pair)
    with pytest.raises(InvalidParameterError, match="threshold"):
        run_batch([Pair("a", "x", "y")], tmp_path / "t", threshold="chi2:abc", progress=False)
    assert not (tmp_path / "t").exists()


def test_batch_on_real_dask_scheduler(pair_folder: Path, tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=None, silence_logs=50,
    ) as cluster:
        res = run_batch(pair_folder, tmp_path / "dask", scheduler=cluster.scheduler_address, progress=False)
    assert [o.status for o in res.outcomes] == ["done", "done", "done"]
    assert all((tmp_path / "dask" / s / "summary.json").exists() for s in ("site0", "site1", "site2"))


def test_batch_unreachable_scheduler(pair_folder: Path, tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    with pytest.raises(ChangedetError, match="cannot reach the dask scheduler"):
        run_batch(pair_folder, tmp_path / "x", scheduler="tcp://127.0.0.1:1", progress=False)


# --------------------------------------------------------------------------- finished only for its options and inputs
def test_batch_reruns_pairs_whose_options_changed_and_says_so(pair_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert {o.status for o in run_batch(pair_folder, out, progress=False).outcomes} == {"done"}
    second = run_batch(pair_folder, out, method="cva", progress=False)
    assert [o.status for o in second.outcomes] == ["done"] * 3
    assert {o.note for o in second.outcomes} == {"options changed (method auto -> cva)"}
    assert "re-ran site0, site1, site2: options changed (method auto -> cva)" in str(second)
    for site in ("site0", "site1", "site2"):
        summary = json.loads((out / site / "summary.json").read_text())
        assert summary["parameters"]["method"] == "cva" and summary["request"]["options"]["method"] == "cva"
    rows = list(csv.DictReader((out / "batch.csv").read_text(encoding="utf-8").splitlines()))
    assert rows[0]["note"] == "options changed (method auto -> cva)"
    third = run_batch(pair_folder, out, method="cva", progress=False)
    assert [o.status for o in third.outcomes] == ["skipped"] * 3 and "re-ran" not in str(third)
    fourth = run_batch(pair_folder, out, method="cva", threshold="p99", progress=False)
    assert {o.note for o in fourth.outcomes} == {"options changed (threshold default -> p99)"}


def test_batch_reruns_pairs_whose_inputs_changed(pair_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_batch(pair_folder, out, progress=False)
    _pair(pair_folder / "site1", 7)  # new content for site1 (same size: the edges differ)
    t = (pair_folder / "site0" / "before.tif").stat().st_mtime_ns + 5 * 10**9
    os.utime(pair_folder / "site0" / "before.tif", ns=(t, t))  # only touched: the whole-file SHA-256 decides
    (out / "site2" / "change_score.tif").unlink()  # a finished folder that lost a file
    res = run_batch(pair_folder, out, progress=False)
    by_site = {o.site: o for o in res.outcomes}
    assert by_site["site0"].status == "skipped"
    assert by_site["site1"].status == "done"
    assert by_site["site1"].note.startswith("inputs changed (before file changed")
    assert by_site["site2"].status == "done" and by_site["site2"].note == "its files are incomplete (change_score.tif missing)"
    # a result from a changedet that did not record its request is made again
    summary_path = out / "site0" / "summary.json"
    summary = json.loads(summary_path.read_text())
    del summary["request"]
    summary_path.write_text(json.dumps(summary))
    res = run_batch(pair_folder, out, progress=False)
    assert [o.status for o in res.outcomes] == ["done", "skipped", "skipped"]
    assert "does not record the options" in res.outcomes[0].note


def test_many_failed_pairs_are_summarised_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from changedet.cli import main

    table = tmp_path / "pairs.csv"
    table.write_text("site,before,after\n" + "".join(f"s{i},missing{i}_a.tif,missing{i}_b.tif\n" for i in range(40)),
                     encoding="utf-8")
    assert main(["batch", str(table), "--out", str(tmp_path / "out")]) == 2  # every pair failed: bad input
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("40 pairs: 0 done, 0 skipped") and "40 failed" in lines[0]
    assert len(lines) == 1 + 5 + 1 and all(line.startswith("  FAILED s") for line in lines[1:6])
    assert lines[-1] == f"  ... and 35 more failed; every error is in {tmp_path / 'out' / 'batch.csv'}"
    rows = list(csv.DictReader((tmp_path / "out" / "batch.csv").read_text(encoding="utf-8").splitlines()))
    assert len(rows) == 40 and all("does not exist" in r["error"] for r in rows)


def test_a_batch_with_some_failed_pairs_exits_1(pair_folder: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from changedet.cli import main

    table = tmp_path / "pairs.csv"
    table.write_text(f"site,before,after\nok,{pair_folder}/site0/before.tif,{pair_folder}/site0/after.tif\n"
                     "gone,missing_a.tif,missing_b.tif\n", encoding="utf-8")
    assert main(["batch", str(table), "--out", str(tmp_path / "out")]) == 1
    assert "1 done" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["batch.csv", "Batch_Changes.geojson", "index.html"])
def test_a_site_named_like_the_batch_files_does_not_take_their_place(name: str, pair_folder: Path,
                                                                     tmp_path: Path) -> None:
    out = tmp_path / "out"
    b, a = pair_folder / "site0" / "before.tif", pair_folder / "site0" / "after.tif"
    try:
        res = run_batch([(name, b, a), ("fine", b, a)], out, progress=False)
    except ChangedetError as exc:  # refused up front, naming the site
        assert name in str(exc)
    else:  # or that pair alone fails
        assert [o.status for o in res.outcomes] == ["failed", "done"] and name in res.outcomes[0].error
        assert (out / "batch.csv").is_file() and (out / "batch_changes.geojson").is_file()
    assert not (out / name).is_dir() and not (out / name.lower()).is_dir()


def test_detect_without_overwrite_reruns_only_what_changed(pair_folder: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """``changedet detect`` into a finished folder: the same options and inputs are refused
    (exit 2, one line); other options or inputs re-run it, saying why."""
    from changedet.cli import main

    b, a = pair_folder / "site0" / "before.tif", pair_folder / "site0" / "after.tif"
    out = tmp_path / "out"
    argv = ["detect", str(b), str(a), "--out", str(out), "--no-figures"]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already holds a finished result for these inputs and options" in err[0]
    assert main([*argv, "--method", "index:brightness"]) == 0
    assert capsys.readouterr().err.strip() == "re-running: options changed (method auto -> index:brightness)"
    assert json.loads((out / "summary.json").read_text())["parameters"]["method"] == "index:brightness"
    other = pair_folder / "site1" / "after.tif"
    assert main(["detect", str(b), str(other), "--out", str(out), "--no-figures", "--method", "index:brightness"]) == 0
    line = capsys.readouterr().err.strip()
    assert re.fullmatch(r"re-running: inputs changed \(after \.\.\..+/sites/site0/after\.tif -> "
                        r"\.\.\..+/sites/site1/after\.tif\)", line), line


def test_detect_into_a_finished_folder_with_a_band_it_lacks_says_only_that(pair_folder: Path, tmp_path: Path,
                                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """A re-run that cannot start (a band the images lack) is refused with one line naming the
    band and the image; it does not announce "re-running" first, and the finished result stays."""
    from changedet.cli import main

    b, a = pair_folder / "site0" / "before.tif", pair_folder / "site0" / "after.tif"
    out = tmp_path / "out"
    argv = ["detect", str(b), str(a), "--out", str(out), "--no-figures"]
    assert main(argv) == 0
    before_summary = (out / "summary.json").read_bytes()
    capsys.readouterr()
    assert main([*argv, "--bands", "B02,B99"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "re-running" not in err[0], err
    assert "the before image has no band 'B99': its bands are ['B02', 'B03', 'B04', 'B08']" in err[0]
    assert (out / "summary.json").read_bytes() == before_summary


def test_detect_changes_into_a_finished_folder_says_whether_it_was_made_the_same_way(pair_folder: Path,
                                                                                     tmp_path: Path) -> None:
    from changedet.pipeline import detect_changes

    b, a = pair_folder / "site0" / "before.tif", pair_folder / "site0" / "after.tif"
    detect_changes(b, a, out=tmp_path, figures=False)
    with pytest.raises(FileExistsError, match=r"\(summary\.json\) for these inputs and options; pass overwrite=True"):
        detect_changes(b, a, out=tmp_path, figures=False)
    with pytest.raises(FileExistsError, match=r"; for this run the options changed \(method auto -> cva\); pass"):
        detect_changes(b, a, out=tmp_path, figures=False, method="cva")


def test_batch_takes_the_vegetation_gain_option_and_reruns_when_it_changes(pair_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = run_batch(pair_folder, out, progress=False)
    assert {o.status for o in first.outcomes} == {"done"}
    summary = json.loads((out / "site0" / "summary.json").read_text())
    assert summary["parameters"]["vegetation_gain"] == "auto"
    second = run_batch(pair_folder, out, vegetation_gain="drop", progress=False)
    assert {o.note for o in second.outcomes} == {"options changed (vegetation_gain auto -> drop)"}
    summary = json.loads((out / "site0" / "summary.json").read_text())
    assert summary["parameters"]["vegetation_gain"] == "drop" and summary["parameters"]["vegetation_gain_in_mask"] is False
    assert summary["results"]["left_out"] is not None
    with pytest.raises(Exception, match="vegetation_gain must be one of"):
        run_batch(pair_folder, tmp_path / "bad", vegetation_gain="sometimes", progress=False)
