"""Tests of changedet.threshold on scores with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from changedet.errors import EmptyDataError, InvalidParameterError
from changedet.threshold import THRESHOLDS, ThresholdMethod, apply_threshold, compute_threshold

AUTOMATIC = ["otsu", "kittler", "li", "triangle", "isodata", "gmm"]


def _bimodal(n_low=9000, n_high=1000, seed=0):
    rng = np.random.default_rng(seed)
    values = np.r_[rng.normal(1.0, 0.3, n_low), rng.normal(5.0, 0.5, n_high)]
    rng.shuffle(values)
    return values.reshape(100, 100)


@pytest.mark.parametrize("method", AUTOMATIC)
def test_automatic_methods_split_two_modes(method):
    score = _bimodal()
    t = compute_threshold(score, method=method)
    # triangle is made for one skewed mode and sits at the foot of the larger one
    assert (1.5 if method == "triangle" else 1.8) < t < 4.5, f"{method} gave {t}"
    mask = apply_threshold(score, t)
    assert abs(mask.sum() - 1000) < (150 if method == "triangle" else 60)


def test_triangle_and_mad_find_a_rare_tail():
    rng = np.random.default_rng(1)
    score = np.r_[np.abs(rng.normal(0, 1, 9900)), rng.uniform(10, 12, 100)].reshape(100, 100)
    for method in ("triangle", "mad"):
        mask = apply_threshold(score, compute_threshold(score, method=method))
        assert 95 <= mask.sum() <= 500, method


def test_mad_value_is_the_number_of_robust_deviations():
    rng = np.random.default_rng(2)
    score = rng.normal(10, 2, size=(200, 200))
    t3 = compute_threshold(score, method="mad", value=3)
    assert t3 == pytest.approx(16, abs=0.2)
    assert compute_threshold(score, method="mad", value=2) == pytest.approx(14, abs=0.15)
    # never above the largest score, so a huge k flags nothing rather than failing
    assert compute_threshold(score, method="mad", value=100) == pytest.approx(score.max())


def test_fixed_percentile_sigma_chi2():
    score = np.arange(100, dtype=float).reshape(10, 10)
    assert compute_threshold(score, method="fixed", value=42) == 42.0
    assert compute_threshold(score, method="percentile", percentile=90) == pytest.approx(89.1)
    assert compute_threshold(score, method="sigma") == 6.0
    assert compute_threshold(score, method="sigma", value=4) == 4.0
    assert compute_threshold(score, method="chi2") == pytest.approx(0.99)
    assert compute_threshold(score, method="chi2", value=0.05) == pytest.approx(0.95)


def test_nan_and_valid_are_ignored():
    score = _bimodal().copy()
    score[:10] = np.nan
    valid = np.ones(score.shape, bool)
    valid[:, :5] = False
    score[:, :5] = 1e6  # masked out: must not pull the threshold
    t = compute_threshold(score, method="otsu", valid=valid)
    assert 1.8 < t < 4.5
    mask = apply_threshold(score, t, valid=valid)
    assert not mask[:, :5].any() and not mask[:10].any()


@pytest.mark.parametrize("method", AUTOMATIC + ["mad", "percentile"])
def test_constant_score_flags_nothing(method):
    score = np.full((20, 20), 3.0)
    kw = {"percentile": 99} if method == "percentile" else {}
    t = compute_threshold(score, method=method, **kw)
    assert not apply_threshold(score, t).any()


@pytest.mark.parametrize("method", AUTOMATIC + ["mad"])
def test_two_values_give_a_threshold_between(method):
    score = np.r_[np.zeros(50), np.ones(50)].reshape(10, 10)
    t = compute_threshold(score, method=method)
    assert 0 <= t < 1 or (method == "mad" and t == 1.0)


@settings(max_examples=30, deadline=None)
@given(
    score=arrays(np.float64, (8, 8), elements=st.one_of(st.floats(-1e6, 1e6), st.just(np.nan))),
    method=st.sampled_from(AUTOMATIC + ["mad"]),
)
def test_property_threshold_is_finite_within_range(score, method):
    finite = score[np.isfinite(score)]
    if finite.size == 0:
        with pytest.raises(EmptyDataError):
            compute_threshold(score, method=method)
        return
    t = compute_threshold(score, method=method)
    assert np.isfinite(t)
    assert finite.min() - 1e-6 * (1 + abs(finite.min())) <= t <= finite.max() + 1e-6 * (1 + abs(finite.max()))


def test_all_nan_is_a_clear_error():
    with pytest.raises(EmptyDataError, match="no valid"):
        compute_threshold(np.full((4, 4), np.nan))
    with pytest.raises(EmptyDataError, match="no valid"):
        compute_threshold(np.ones((4, 4)), valid=np.zeros((4, 4), bool))


def test_bad_parameters():
    score = _bimodal()
    with pytest.raises(InvalidParameterError, match=r"threshold method must be one of .*'kittler'.*got 'best'"):
        compute_threshold(score, method="best")  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError, match=r"'fixed' needs value=<number>, got value=None"):
        compute_threshold(score, method="fixed")
    with pytest.raises(InvalidParameterError, match=r"percentile=<number in \[0, 100\]>, got percentile=120"):
        compute_threshold(score, method="percentile", percentile=120)
    with pytest.raises(InvalidParameterError, match=r"significance value in \(0, 1\), got value=2"):
        compute_threshold(score, method="chi2", value=2)
    with pytest.raises(InvalidParameterError, match="value must be a finite number"):
        compute_threshold(score, method="fixed", value=float("nan"))
    with pytest.raises(InvalidParameterError, match=r"valid has shape \(2, 2\)"):
        compute_threshold(score, valid=np.ones((2, 2), bool))
    with pytest.raises(InvalidParameterError, match="mad threshold needs value >= 0"):
        compute_threshold(score, method="mad", value=-1)


def test_registry_and_literal_agree():
    from typing import get_args

    assert set(THRESHOLDS) <= set(get_args(ThresholdMethod))


def test_large_scores_are_sampled_not_copied_whole():
    rng = np.random.default_rng(3)
    score = rng.normal(size=(1500, 1500)).astype("float32")
    score[:100, :100] += 20
    t = compute_threshold(score, method="otsu")
    assert 3 < t < 18
