"""Analyst examples and trained models through the whole pipeline (both paths, the command line)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pyproj import Transformer

from changedet import data
from changedet.cli import main
from changedet.errors import BandMismatchError, InvalidParameterError
from changedet.io import read_raster
from changedet.pipeline import detect_changes


def _examples(truth: np.ndarray, transform, crs, *, n_change: int = 20, n_other: int = 60, seed: int = 0) -> dict:
    """A simulated analyst: points drawn at random from the truth, in lon/lat."""
    rng = np.random.default_rng(seed)
    feats = []
    tr = Transformer.from_crs(crs, 4326, always_xy=True)
    for value, n in ((True, n_change), (False, n_other)):
        rows, cols = np.nonzero(truth == value)
        pick = rng.choice(rows.size, n, replace=False)
        for r, c in zip(rows[pick], cols[pick]):
            x, y = transform * (c + 0.5, r + 0.5)
            lon, lat = tr.transform(x, y)
            feats.append({"type": "Feature", "geometry": {"type": "Point", "coordinates": [lon, lat]},
                          "properties": {"change": bool(value)}})
    return {"type": "FeatureCollection", "features": feats}


def _f1(mask: np.ndarray, truth: np.ndarray) -> float:
    m = mask == 1
    return 2 * float((m & truth).sum()) / float(m.sum() + truth.sum())


@pytest.fixture(scope="module")
def s2() -> tuple[Path, Path, np.ndarray, dict]:
    folder = data.sample_path("s2_like")
    truth = read_raster(folder / "truth.tif")
    ex = _examples(truth.data[0] == 1, truth.transform, truth.crs)
    return folder / "before.tif", folder / "after.tif", truth.data[0] == 1, ex


def test_examples_train_the_mask_and_the_summary_says_so(s2, tmp_path: Path) -> None:
    before, after, truth, ex = s2
    path = tmp_path / "examples.geojson"
    path.write_text(json.dumps(ex))
    r = detect_changes(before, after, examples=path, out=tmp_path / "out")
    assert _f1(r.mask.data[0], truth) > 0.8
    s = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert s["parameters"]["method"] == "learned" and s["parameters"]["examples"] == str(path)
    assert 75 <= s["method_details"]["n_examples"] <= 80 and 0.5 <= s["method_details"]["cv_accuracy"] <= 1.0
    assert s["fit"]["method"]["source"] == "examples"


def test_examples_windowed_equals_in_memory(s2, tmp_path: Path) -> None:
    before, after, _, ex = s2
    mem = detect_changes(before, after, examples=ex)
    win = detect_changes(before, after, examples=ex, tiled=True, out=tmp_path / "w", window_px=64, progress=False)
    mask = read_raster(tmp_path / "w" / "change_mask.tif").data[0]
    np.testing.assert_array_equal(np.nan_to_num(mask, nan=255), mem.mask.data[0])
    assert win.n_changes == mem.n_changes


def test_a_saved_model_applies_to_another_run_and_checks_bands(s2, tmp_path: Path) -> None:
    from changedet import learn

    before, after, truth, ex = s2
    first = detect_changes(before, after, examples=ex)
    model = first.run.fit.method.model
    path = model.save(tmp_path / "model.skops")
    again = detect_changes(before, after, model=path)
    assert again.summary["parameters"]["model"] == str(path)
    assert _f1(again.mask.data[0], truth) > 0.8
    assert isinstance(learn.load_model(path), learn.LearnedModel)
    with pytest.raises(BandMismatchError, match="trained on bands"):
        detect_changes(before, after, model=path, bands=["B02", "B03", "B04"])


@pytest.mark.parametrize(("examples", "match"), [
    ({"type": "FeatureCollection", "features": []}, "example"),
    ({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [0.0, 0.0]}, "properties": {"change": True}}]},
     "outside"),
    ("no_such_examples.geojson", "is not a file"),
])
def test_bad_examples_are_one_clear_error(s2, examples, match: str) -> None:
    before, after, _, _ = s2
    with pytest.raises(InvalidParameterError, match=match):
        detect_changes(before, after, examples=examples)


def test_examples_and_a_method_or_a_model_are_exclusive(s2) -> None:
    before, after, _, ex = s2
    with pytest.raises(InvalidParameterError, match="drop the method"):
        detect_changes(before, after, examples=ex, method="cva")
    with pytest.raises(InvalidParameterError, match="not both"):
        detect_changes(before, after, examples=ex, model="x.skops")


def test_cli_examples_and_bad_examples(s2, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before, after, _, ex = s2
    good = tmp_path / "ex.geojson"
    good.write_text(json.dumps(ex))
    assert main(["detect", str(before), str(after), "--out", str(tmp_path / "o"), "--examples", str(good)]) == 0
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["parameters"]["method"] == "learned"
    bad = tmp_path / "bad.geojson"
    bad.write_text("{not json")
    assert main(["detect", str(before), str(after), "--out", str(tmp_path / "b"), "--examples", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.geojson" in err[0]
    assert not (tmp_path / "b" / "summary.json").exists()


def test_train_once_apply_to_a_batch(s2, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """changedet train on one labelled site, then detect --model and batch --model on others."""
    before, after, truth, _ = s2
    folder = data.sample_path("s2_like")
    model = tmp_path / "site.skops"
    assert main(["train", str(before), str(after), str(folder / "truth.tif"), "--out", str(model)]) == 0
    assert "trained on" in capsys.readouterr().out and model.is_file()
    # training again to the same file replaces it (it was refused: "the folder '.../site.skops' is not
    # writable", the file itself taken for its folder; notebook 04 failed on its second run)
    first = model.stat()
    assert main(["train", str(before), str(after), str(folder / "truth.tif"), "--out", str(model)]) == 0, \
        capsys.readouterr().err
    assert "trained on" in capsys.readouterr().out and model.stat().st_ino != first.st_ino
    assert main(["detect", str(before), str(after), "--out", str(tmp_path / "d"), "--model", str(model)]) == 0
    s = json.loads((tmp_path / "d" / "summary.json").read_text())
    assert s["parameters"]["model"] == str(model) and s["fit"]["method"]["source"] == "model"
    pred = read_raster(tmp_path / "d" / "change_mask.tif").data[0]
    assert _f1(pred, truth) > 0.85
    table = tmp_path / "pairs.csv"
    table.write_text(f"site,before,after\na,{before},{after}\nb,{before},{after}\n")
    assert main(["batch", str(table), "--out", str(tmp_path / "b"), "--model", str(model)]) == 0
    for site in ("a", "b"):
        s = json.loads((tmp_path / "b" / site / "summary.json").read_text())
        assert s["parameters"]["method"] == "learned"
    assert main(["batch", str(table), "--out", str(tmp_path / "c"), "--model", str(tmp_path / "none.skops")]) == 2
    assert main(["train", str(before), str(after), "--out", str(model)]) == 2  # not a triple


@pytest.mark.parametrize("name", ["s2_like", "hires_rgb"])
def test_a_run_in_memory_computes_each_feature_block_once(name: str, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The fit's feature blocks serve the score (learn.reusing_features): one computation per
    block of the pair, co-registered (10 m) or not (1 m); without it each block was computed twice."""
    from changedet import learn

    folder = data.sample_path(name)
    truth = read_raster(folder / "truth.tif")
    path = tmp_path / "examples.geojson"
    path.write_text(json.dumps(_examples(truth.data[0] == 1, truth.transform, truth.crs)))
    calls: list[tuple[int, ...]] = []
    real = learn._features
    monkeypatch.setattr(learn, "_features", lambda *a, **k: calls.append(a[0].shape) or real(*a, **k))
    detect_changes(folder / "before.tif", folder / "after.tif", examples=path)
    rows, cols = truth.data[0].shape
    blocks = -(-rows // learn._block_rows(cols))
    assert len(calls) == blocks, calls


def test_examples_keep_changes_smaller_than_the_default_mapping_unit() -> None:
    """With examples the minimum mapping unit is 20 m² (spec.LEARNED_MIN_AREA_M2), not 50 m²: sheds of
    6 x 6 m the analyst pointed at (36 m² each, at 0.5 m) are kept; the unsupervised default's 50 m²
    would drop them all."""
    from affine import Affine

    from changedet.raster import GeoRaster

    rng = np.random.default_rng(3)
    size, px = 200, 0.5
    before = (100 + 10 * rng.standard_normal((3, size, size))).astype("float32")
    after = (before + 4 * rng.standard_normal((3, size, size))).astype("float32")
    truth = np.zeros((size, size), bool)
    for r in range(20, 180, 40):
        for c in range(20, 180, 55):
            after[:, r : r + 12, c : c + 12] = np.array([230.0, 215.0, 205.0])[:, None, None]
            truth[r : r + 12, c : c + 12] = True
    t = Affine(px, 0, 500000.0, 0, -px, 6000000.0)
    b = GeoRaster(before, t, "EPSG:32639", ("red", "green", "blue"))
    a = GeoRaster(after, t, "EPSG:32639", ("red", "green", "blue"))
    ex = _examples(truth, t, "EPSG:32639")
    r = detect_changes(b, a, examples=ex, progress=False, figures=False)
    assert r.summary["parameters"]["min_area_px"] == 80  # 20 m² at 0.5 m
    assert r.n_changes >= 10 and _f1(r.mask.data[0], truth) > 0.7, (r.n_changes, _f1(r.mask.data[0], truth))
    assert detect_changes(b, a, examples=ex, min_area_m2=50, progress=False, figures=False).n_changes == 0


def test_a_run_in_memory_uses_every_core_unless_the_caller_chose(s2, monkeypatch) -> None:
    """detect_changes with examples scores on os.cpu_count() threads (learn.using_threads), or on
    the caller's choice (changedet batch's workers choose 1: one process per core)."""
    import os

    import changedet.learn as L

    before, after, _, ex = s2
    seen: list[int] = []
    real = L._predict_change

    def spy(classifier, X):
        seen.append(L._thread_count())
        return real(classifier, X)

    monkeypatch.setattr(L, "_predict_change", spy)
    default = detect_changes(before, after, examples=ex)
    assert seen and set(seen) == {os.cpu_count() or 1}
    seen.clear()
    with L.using_threads(1):
        chosen = detect_changes(before, after, examples=ex)
    assert seen and set(seen) == {1}
    np.testing.assert_array_equal(chosen.score.data, default.score.data)  # the same values either way
