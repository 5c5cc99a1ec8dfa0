"""Tests for changedet.evaluate: known answers on tiny masks, error paths, invariants."""

from __future__ import annotations

import json

import numpy as np
import pytest
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from rasterio.crs import CRS

from changedet.errors import EmptyDataError, GridMismatchError, InvalidParameterError
from changedet.evaluate import Accuracy, evaluate
from changedet.raster import GeoRaster

UTM = CRS.from_epsg(32630)


@pytest.fixture
def grid_transform() -> Affine:
    return Affine(10, 0, 500000, 0, -10, 5300000)


@pytest.fixture
def pair() -> tuple[np.ndarray, np.ndarray]:
    """4x5 masks with 3 TP, 2 FP, 1 FN, 12 TN, 2 ignored (worked out by hand)."""
    predicted = np.array(
        [
            [1, 1, 0, 0, 0],
            [1, 1, 0, 0, 0],
            [0, 0, 0, 1, 0],
            [0, 0, 0, 255, 0],
        ],
        dtype=np.uint8,
    )
    truth = np.array(
        [
            [1, 1, 0, 0, 0],
            [1, 0, 1, 0, 0],
            [0, 0, 0, 0, 0],
            [255, 0, 0, 1, 0],
        ],
        dtype=np.uint8,
    )
    return predicted, truth


def test_known_counts_and_scores(pair: tuple[np.ndarray, np.ndarray]) -> None:
    acc = evaluate(*pair)
    assert (acc.tp, acc.fp, acc.fn, acc.tn, acc.n_ignored) == (3, 2, 1, 12, 2)
    assert acc.n_valid == 18
    assert acc.precision == pytest.approx(3 / 5, abs=1e-12)
    assert acc.recall == pytest.approx(3 / 4, abs=1e-12)
    assert acc.f1 == pytest.approx(2 * 3 / (2 * 3 + 2 + 1), abs=1e-12)
    assert acc.iou == pytest.approx(3 / 6, abs=1e-12)
    assert acc.overall_accuracy == pytest.approx(15 / 18, abs=1e-12)
    # Cohen's kappa by hand: po = 15/18; pe = (5*4 + 13*14) / 18**2 = 202/324
    po, pe = 15 / 18, 202 / 324
    assert acc.kappa == pytest.approx((po - pe) / (1 - pe), abs=1e-12)
    np.testing.assert_array_equal(acc.confusion_matrix, [[12, 2], [1, 3]])


def test_oscd_encoding_and_bool_prediction() -> None:
    predicted = np.array([[True, False], [True, False]])
    truth = np.array([[2, 2], [1, 1]], dtype=np.uint8)
    acc = evaluate(predicted, truth, truth_change_values=(2,), truth_nochange_values=(1,))
    assert (acc.tp, acc.fp, acc.fn, acc.tn) == (1, 1, 1, 1)
    assert acc.kappa == pytest.approx(0.0, abs=1e-12)


def test_nan_and_custom_ignore_values() -> None:
    predicted = np.array([[1.0, np.nan, 0.0, 0.0]], dtype=np.float32)
    truth = np.array([[1, 1, 0, 9]])
    acc = evaluate(predicted, truth, ignore_values=(9,))
    assert (acc.tp, acc.fp, acc.fn, acc.tn, acc.n_ignored) == (1, 0, 0, 1, 2)


def test_ignore_zero_in_truth_keeps_predicted_zero() -> None:
    # OSCD-like truth where 0 means "not labelled": a predicted 0 is still "no change".
    predicted = np.array([[0, 0, 1]])
    truth = np.array([[1, 0, 2]])
    acc = evaluate(predicted, truth, truth_change_values=(2,), truth_nochange_values=(1,), ignore_values=(0,))
    assert (acc.tp, acc.fp, acc.fn, acc.tn, acc.n_ignored) == (1, 0, 0, 1, 1)


def test_from_counts_matches_evaluate(pair: tuple[np.ndarray, np.ndarray]) -> None:
    assert evaluate(*pair) == Accuracy.from_counts(tp=3, fp=2, fn=1, tn=12, n_ignored=2)


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        # neither mask has change: perfect agreement, every score 1
        ({"tp": 0, "fp": 0, "fn": 0, "tn": 10}, {"precision": 1.0, "recall": 1.0, "f1": 1.0, "iou": 1.0, "kappa": 1.0}),
        # both all change
        ({"tp": 7, "fp": 0, "fn": 0, "tn": 0}, {"precision": 1.0, "recall": 1.0, "f1": 1.0, "iou": 1.0, "kappa": 1.0}),
        # nothing predicted, change missed: precision is 0 (zero_division=0)
        ({"tp": 0, "fp": 0, "fn": 3, "tn": 7}, {"precision": 0.0, "recall": 0.0, "f1": 0.0, "iou": 0.0, "kappa": 0.0}),
        # change predicted where truth has none: recall is 0 (zero_division=0)
        ({"tp": 0, "fp": 3, "fn": 0, "tn": 7}, {"precision": 0.0, "recall": 0.0, "f1": 0.0, "iou": 0.0, "kappa": 0.0}),
        # exactly inverted: kappa = -1
        ({"tp": 0, "fp": 5, "fn": 5, "tn": 0}, {"precision": 0.0, "recall": 0.0, "f1": 0.0, "iou": 0.0, "kappa": -1.0}),
    ],
)
def test_degenerate_cases_are_defined(counts: dict[str, int], expected: dict[str, float]) -> None:
    acc = Accuracy.from_counts(**counts)
    for name, value in expected.items():
        assert getattr(acc, name) == pytest.approx(value, abs=1e-12), name
        assert np.isfinite(getattr(acc, name))


def test_as_dict_is_json_ready_and_str_is_readable(pair: tuple[np.ndarray, np.ndarray]) -> None:
    acc = evaluate(*pair)
    d = json.loads(json.dumps(acc.as_dict()))
    assert d["tp"] == 3 and d["confusion_matrix"] == [[12, 2], [1, 3]] and d["n_valid"] == 18
    assert set(d) >= {"precision", "recall", "f1", "iou", "kappa", "overall_accuracy", "n_ignored"}
    text = str(acc)
    assert "F1 0.6667" in text and "kappa" in text and "truth change" in text


def test_accepts_georasters_on_same_grid_and_truth_without_crs(
    pair: tuple[np.ndarray, np.ndarray], grid_transform: Affine
) -> None:
    predicted, truth = pair
    pred_r = GeoRaster(predicted, grid_transform, UTM)
    same = evaluate(pred_r, GeoRaster(truth, grid_transform, UTM))
    # OSCD-style truth: same shape, identity transform, no CRS
    no_crs = evaluate(pred_r, GeoRaster(truth, Affine.identity(), None))
    plain = evaluate(pred_r, truth)
    assert same == no_crs == plain == evaluate(predicted, truth)


def test_grid_mismatch_is_clear(pair: tuple[np.ndarray, np.ndarray], grid_transform: Affine) -> None:
    predicted, truth = pair
    shifted = grid_transform @ Affine.translation(3, 0)
    with pytest.raises(GridMismatchError, match=r"truth grid \(EPSG:32630 10 m 4x5\) differs.*nearest"):
        evaluate(GeoRaster(predicted, grid_transform, UTM), GeoRaster(truth, shifted, UTM))


def test_shape_mismatch_names_both_shapes(pair: tuple[np.ndarray, np.ndarray]) -> None:
    predicted, _ = pair
    with pytest.raises(GridMismatchError, match=r"shape \(4, 5\).*shape \(3, 5\)"):
        evaluate(predicted, np.zeros((3, 5)))


def test_unexpected_truth_values_suggest_option() -> None:
    with pytest.raises(InvalidParameterError, match=r"truth mask holds values \[2\].*truth_change_values=\(2,\)"):
        evaluate(np.zeros((2, 2)), np.array([[0, 2], [1, 1]]))


def test_unexpected_predicted_values() -> None:
    with pytest.raises(InvalidParameterError, match=r"predicted mask holds values \[3\]"):
        evaluate(np.array([[0, 3]]), np.array([[0, 1]]))


def test_overlapping_options_rejected() -> None:
    with pytest.raises(InvalidParameterError, match=r"values \[1\] are in both truth_change_values"):
        evaluate(np.zeros((1, 2)), np.zeros((1, 2)), truth_change_values=(1,), truth_nochange_values=(0, 1))


def test_multiband_input_rejected(grid_transform: Affine) -> None:
    two = GeoRaster(np.zeros((2, 3, 3), "float32"), grid_transform, UTM)
    with pytest.raises(InvalidParameterError, match="single-band mask.*2 bands"):
        evaluate(two, np.zeros((3, 3)))


def test_all_nodata_raises() -> None:
    with pytest.raises(EmptyDataError, match="no pixel is valid in both masks"):
        evaluate(np.full((2, 2), 255), np.zeros((2, 2)))


def test_negative_count_rejected() -> None:
    with pytest.raises(InvalidParameterError, match="fp must be a non-negative integer"):
        Accuracy.from_counts(tp=1, fp=-1, fn=0, tn=0)


masks = arrays(np.uint8, st.tuples(st.integers(1, 12), st.integers(1, 12)), elements=st.sampled_from([0, 1, 255]))


@settings(max_examples=60, deadline=None)
@given(truth=masks)
def test_perfect_prediction_scores_one(truth: np.ndarray) -> None:
    if np.all(truth == 255):
        with pytest.raises(EmptyDataError):
            evaluate(truth, truth)
        return
    acc = evaluate(truth, truth)
    assert acc.fp == acc.fn == 0
    assert acc.f1 == 1.0 and acc.kappa == 1.0 and acc.iou == 1.0 and acc.overall_accuracy == 1.0


@settings(max_examples=60, deadline=None)
@given(predicted=masks, data=st.data())
def test_counts_partition_pixels_and_scores_in_range(predicted: np.ndarray, data: st.DataObject) -> None:
    truth = data.draw(arrays(np.uint8, predicted.shape, elements=st.sampled_from([0, 1, 255])))
    try:
        acc = evaluate(predicted, truth)
    except EmptyDataError:
        return
    assert acc.tp + acc.fp + acc.fn + acc.tn + acc.n_ignored == predicted.size
    for name in ("precision", "recall", "f1", "iou", "overall_accuracy"):
        assert 0.0 <= getattr(acc, name) <= 1.0
    assert -1.0 <= acc.kappa <= 1.0 + 1e-12
    # swapping the roles of truth and prediction swaps FP and FN, keeps F1 and kappa
    swapped = evaluate(truth, predicted)
    assert (swapped.fp, swapped.fn) == (acc.fn, acc.fp)
    assert swapped.f1 == pytest.approx(acc.f1, abs=1e-12)
    assert swapped.kappa == pytest.approx(acc.kappa, abs=1e-12)


# --------------------------------------------------------------------------- a result on part of the truth's grid
def test_truth_covering_more_is_cropped_to_the_prediction_grid(grid_transform: Affine) -> None:
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 2, (10, 12)).astype("uint8")
    predicted = rng.integers(0, 2, (4, 5)).astype("uint8")
    sub = grid_transform @ Affine.translation(2, 3)  # rows 3..6, cols 2..6 of the truth's grid
    acc = evaluate(GeoRaster(predicted, sub, UTM), GeoRaster(truth, grid_transform, UTM))
    assert acc == evaluate(predicted, truth[3:7, 2:7])
    assert acc != evaluate(predicted, truth[0:4, 0:5])  # the crop is where the prediction lies, not the corner


def test_the_suggested_alignment_call_runs(grid_transform: Affine) -> None:
    """The message's fix, run as written, gives a truth the evaluation takes."""
    from changedet import align  # noqa: F401  (the name the message uses)
    import changedet

    truth = GeoRaster(np.ones((10, 12), "uint8"), grid_transform, UTM)
    predicted = GeoRaster(np.ones((4, 5), "uint8"), grid_transform @ Affine.translation(2.5, 3), UTM)
    with pytest.raises(GridMismatchError, match=r"not a whole-pixel part of it") as err:
        evaluate(predicted, truth)
    call = str(err.value).rsplit(": ", 1)[1]
    assert call.startswith("changedet.align.align_to(")
    aligned = eval(call, {"changedet": changedet, "truth": truth, "predicted": predicted})  # noqa: S307 - our own message
    assert aligned.grid.same_as(predicted.grid)
    assert evaluate(predicted, aligned).f1 == 1.0


def test_detect_with_aoi_and_truth_then_evaluate(tmp_path, capsys) -> None:  # noqa: ANN001
    """`detect --aoi ... --truth` and `evaluate aoi/change_mask.tif truth.tif`: the truth is cropped to the result."""
    from conftest import BANDS, BUILDING, make_scene, write_tif

    from changedet.cli import main

    scene = make_scene()
    kw = dict(transform=scene.transform, crs=scene.crs, descriptions=BANDS)
    b = write_tif(tmp_path / "b.tif", scene.before, **kw)
    a = write_tif(tmp_path / "a.tif", scene.after, **kw)
    truth = write_tif(tmp_path / "truth.tif", scene.truth.astype("uint8"), transform=scene.transform, crs=scene.crs,
                      dtype="uint8")
    # a box around the building, well inside the scene
    from pyproj import Transformer

    to_ll = Transformer.from_crs(scene.crs, 4326, always_xy=True)
    t = scene.transform
    (r0, r1), (c0, c1) = (BUILDING[0].start - 20, BUILDING[0].stop + 20), (BUILDING[1].start - 20, BUILDING[1].stop + 20)
    lon0, lat1 = to_ll.transform(t.c + c0 * t.a, t.f + r0 * t.e)
    lon1, lat0 = to_ll.transform(t.c + c1 * t.a, t.f + r1 * t.e)
    aoi = f"{lon0},{lat0},{lon1},{lat1}"
    out = tmp_path / "aoi"
    assert main(["detect", str(b), str(a), "--aoi", aoi, "--truth", str(truth), "--out", str(out), "--no-figures"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["accuracy"]["f1"] > 0.8
    capsys.readouterr()
    assert main(["evaluate", str(out / "change_mask.tif"), str(truth), "--json"]) == 0
    acc = json.loads(capsys.readouterr().out)
    assert acc["f1"] == summary["accuracy"]["f1"] and acc["tp"] == summary["accuracy"]["tp"]
    import rasterio

    with rasterio.open(out / "change_mask.tif") as m:
        assert (m.height, m.width) != scene.truth.shape and acc["n_valid"] + acc["n_ignored"] == m.height * m.width
