"""Vegetation growing is not construction: below 5 m its areas stay out of the default change mask."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from changedet.data import load_sample, sample_path
from changedet.errors import InvalidParameterError
from changedet.objects import polygons_to_mask
from changedet.pipeline import detect_changes

HIRES = load_sample("hires_rgb")


def _left_out_pixels(kept, full) -> np.ndarray:
    """Pixels of the areas ``full`` has and ``kept`` lacks (the areas classed vegetation gain)."""
    gone = [(g, p) for g, p in zip(full.polygons.geometries, full.polygons.properties)
            if p["change_class"] == "vegetation_gain"]
    assert gone, "the sample should hold areas of vegetation gain"
    from changedet.objects import ChangePolygons

    return polygons_to_mask(ChangePolygons(tuple(g for g, _ in gone), tuple(p for _, p in gone), full.grid.crs),
                            full.grid)


def test_vegetation_gain_is_left_out_of_the_mask_below_5_m_and_put_back_on_request() -> None:
    out = detect_changes(HIRES.before, HIRES.after, truth=HIRES.truth)  # 1 m: "auto" leaves it out
    kept = detect_changes(HIRES.before, HIRES.after, truth=HIRES.truth, vegetation_gain="keep")
    classes = [p["change_class"] for p in kept.polygons.properties]
    assert "vegetation_gain" in classes
    assert "vegetation_gain" not in [p["change_class"] for p in out.polygons.properties]
    assert len(out.polygons) == len(kept.polygons) - classes.count("vegetation_gain")
    # the areas left out are counted in the summary, and gone from the mask (where no kept area is)
    left = out.summary["results"]["left_out"]["vegetation_gain"]
    assert left["count"] == classes.count("vegetation_gain")
    assert left["area_px"] == sum(p["area_px"] for p in kept.polygons.properties if p["change_class"] == "vegetation_gain")
    gone = _left_out_pixels(out, kept)
    still = polygons_to_mask(out.polygons, out.grid)
    assert (out.mask.data[0][gone & ~still] == 0).all() and (kept.mask.data[0][gone] == 1).all()
    assert (out.mask.data[0] == 1).sum() < (kept.mask.data[0] == 1).sum()
    assert "vegetation_gain" not in kept.summary["results"]["left_out"]
    assert out.summary["parameters"]["vegetation_gain_in_mask"] is False
    assert kept.summary["parameters"]["vegetation_gain_in_mask"] is True
    # what is left is numbered 1, 2, ... and every structure names an area that is still there
    assert [p["id"] for p in out.polygons.properties] == list(range(1, len(out.polygons) + 1))
    ids = {p["id"] for p in out.polygons.properties}
    assert out.structures.count and all(q["change_id"] in ids for q in out.structures.polygons.properties)
    # the summary's counts are those of the areas kept
    assert out.summary["results"]["n_changes"] == len(out.polygons)
    assert sum(v["count"] for v in out.summary["results"]["by_class"].values()) == len(out.polygons)
    # the sample's truth does not count those areas as change
    assert out.summary["accuracy"]["precision"] > kept.summary["accuracy"]["precision"]


def test_re_thresholding_leaves_out_what_a_fresh_run_would() -> None:
    first = detect_changes(HIRES.before, HIRES.after)
    again = first.rethreshold(first.threshold * 1.1)
    fresh = detect_changes(HIRES.before, HIRES.after, threshold=first.threshold * 1.1)
    assert again.summary["results"]["left_out"] == fresh.summary["results"]["left_out"]
    assert np.array_equal(again.mask.data, fresh.mask.data)
    assert [p["change_class"] for p in again.polygons.properties] == [p["change_class"] for p in fresh.polygons.properties]


def test_at_10_m_and_on_request_vegetation_gain_stays() -> None:
    s2 = load_sample("s2_like")
    r = detect_changes(s2.before, s2.after)
    assert r.summary["parameters"]["vegetation_gain_in_mask"] is True
    assert "vegetation_gain" not in r.summary["results"]["left_out"]
    assert detect_changes(s2.before, s2.after, seasonal="keep").summary["results"]["left_out"] is None
    dropped = detect_changes(s2.before, s2.after, vegetation_gain="drop")
    assert dropped.summary["parameters"]["vegetation_gain_in_mask"] is False
    assert dropped.summary["results"]["left_out"]["vegetation_gain"]["count"] == sum(
        p["change_class"] == "vegetation_gain" for p in r.polygons.properties)


def test_a_bad_vegetation_gain_option_is_named() -> None:
    with pytest.raises(InvalidParameterError, match="vegetation_gain must be one of"):
        detect_changes(HIRES.before, HIRES.after, vegetation_gain="maybe")


def test_the_command_takes_the_options_and_the_windowed_path_leaves_out_the_same(tmp_path: Path) -> None:
    """``--vegetation-gain keep`` and ``--seasonal keep`` put their classes back; the windowed path
    leaves out what the in-memory one does."""
    folder = sample_path("hires_rgb")
    runs, stdout = {}, {}
    for name, extra in (("keep", ["--vegetation-gain", "keep", "--in-memory"]),
                        ("keep_seasonal", ["--seasonal", "keep", "--in-memory"]), ("auto", ["--in-memory"]),
                        ("tiled", ["--tiled"])):
        proc = subprocess.run([sys.executable, "-m", "changedet.cli", "detect", str(folder / "before.tif"),
                               str(folder / "after.tif"), "--out", str(tmp_path / name), "--no-figures", *extra],
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr
        runs[name] = json.loads((tmp_path / name / "summary.json").read_text())
        stdout[name] = proc.stdout
    assert "vegetation_gain" not in runs["keep"]["results"]["left_out"]
    assert runs["auto"]["results"]["left_out"]["vegetation_gain"]["count"] >= 1
    assert runs["tiled"]["results"]["left_out"] == runs["auto"]["results"]["left_out"]
    assert "vegetation_gain" not in runs["tiled"]["results"]["by_class"]
    assert runs["auto"]["request"]["options"]["vegetation_gain"] == "auto"
    # seasonal change: the hires sample's car park
    assert "left out: 1 seasonal" in stdout["auto"] and "--seasonal keep" in stdout["auto"]
    assert "seasonal" not in runs["keep_seasonal"]["results"]["left_out"]
    assert runs["keep_seasonal"]["results"]["by_class"]["seasonal"]["count"] == 1
    assert runs["auto"]["results"]["left_out"]["seasonal"]["count"] == 1
    assert "seasonal" not in runs["tiled"]["results"]["by_class"]
    assert runs["auto"]["request"]["options"]["seasonal"] == "auto"
    assert runs["keep_seasonal"]["parameters"]["seasonal_in_mask"] is True


def test_the_report_says_what_was_left_out(tmp_path: Path) -> None:
    from changedet.report import write_report

    out = detect_changes(HIRES.before, HIRES.after)
    out.save(tmp_path / "out", figures=False)
    page = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    left = out.summary["results"]["left_out"]["vegetation_gain"]
    assert f"Left out as vegetation growing, not construction: {left['count']} areas of vegetation gain" in page
    kept = detect_changes(HIRES.before, HIRES.after, vegetation_gain="keep")
    kept.save(tmp_path / "kept", figures=False)
    assert "Left out as vegetation growing" not in write_report(tmp_path / "kept").read_text(encoding="utf-8")
