"""Tests of changedet.normalize: IR-MAD and relative normalization."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from changedet.errors import EmptyDataError, InvalidParameterError
from changedet.normalize import fit_irmad, fit_normalize_irmad, irmad, match_histograms, normalize_irmad


def _pair(seed=0, shape=(60, 60), bands=4):
    rng = np.random.default_rng(seed)
    before = np.stack([ndimage.gaussian_filter(rng.normal(size=shape), 1.5) * 100 + 1000 + 100 * b
                       for b in range(bands)])
    gains = np.linspace(0.8, 1.25, bands)[:, None, None]
    offsets = np.linspace(-50, 120, bands)[:, None, None]
    after = gains * before + offsets + rng.normal(0, 2, size=before.shape)
    truth = np.zeros(shape, bool)
    truth[10:20, 30:45] = True
    after[:, truth] += rng.normal(300, 50, size=(bands, int(truth.sum())))
    return before, after, truth, gains, offsets


def test_irmad_finds_planted_change_and_is_calibrated():
    before, after, truth, *_ = _pair()
    r = irmad(before, after)
    assert r.converged
    assert np.all(np.diff(r.rho) >= -1e-9)
    # unchanged pixels follow chi-square(4): median near 3.36
    assert 2.0 < np.median(r.chi2[~truth]) < 5.0
    assert np.mean(r.p_nochange[truth] < 0.01) > 0.95
    assert np.mean(r.p_nochange[~truth] > 0.01) > 0.9


def test_irmad_is_invariant_to_gain_and_offset():
    before, after, *_ = _pair(1)
    r0 = irmad(before, after)
    r1 = irmad(before, 0.7 * after + 250)
    r2 = irmad(1.3 * before - 40, after)
    np.testing.assert_allclose(r0.chi2, r1.chi2, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(r0.chi2, r2.chi2, rtol=1e-4, atol=1e-4)


def test_normalize_irmad_recovers_gains_and_offsets():
    before, after, truth, gains, offsets = _pair(2)
    res = normalize_irmad(before, after)
    # orthogonal regression leans a little with noise in one date only: 2 %
    np.testing.assert_allclose(res.gains, gains.ravel(), rtol=0.02)
    np.testing.assert_allclose(res.offsets, offsets.ravel(), atol=30)
    assert not (res.invariant & truth).any()
    err = np.abs(res.after[:, ~truth] - before[:, ~truth])
    assert np.median(err) < 3


def test_normalize_irmad_result_ignores_after_rescaling():
    before, after, *_ = _pair(3)
    a = normalize_irmad(before, after).after
    b = normalize_irmad(before, 1.2 * after - 77).after
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-2)


def test_identical_images():
    before, *_ = _pair(4)
    r = irmad(before, before.copy())
    assert np.nanmax(r.chi2) < 1e-3
    res = normalize_irmad(before, before.copy())
    np.testing.assert_allclose(res.after, before, rtol=1e-5)


def test_match_histograms_maps_quantiles_and_keeps_nan():
    before = np.arange(100, dtype=float).reshape(1, 10, 10)
    after = np.exp(before / 50)
    after[0, 0, 0] = np.nan
    out = match_histograms(before, after)
    assert np.isnan(out[0, 0, 0])
    assert np.all(np.diff(out[0].ravel()[1:]) >= 0)
    assert out[0, 9, 9] == pytest.approx(99)


def test_errors():
    before, after, *_ = _pair()
    with pytest.raises(InvalidParameterError, match="one shape"):
        irmad(before, after[:, :10])
    with pytest.raises(EmptyDataError, match="no pixel is valid"):
        irmad(before, np.full_like(after, np.nan))
    with pytest.raises(InvalidParameterError, match=r"p_invariant must be in \(0, 1\), got 1.5"):
        normalize_irmad(before, after, p_invariant=1.5)
    with pytest.raises(InvalidParameterError, match="max_iterations must be >= 1"):
        irmad(before, after, max_iterations=0)
    with pytest.raises(InvalidParameterError, match=r"valid has shape \(2, 2\)"):
        match_histograms(before, after, valid=np.ones((2, 2), bool))


def test_fitted_irmad_transform_applies_to_windows_as_to_the_whole():
    before, after, truth, *_ = _pair(5)
    valid = np.ones(truth.shape, bool)
    valid[40:45, :] = False
    whole = irmad(before, after, valid=valid)
    t = fit_irmad(before, after, valid=valid)
    again = t.apply(before, after, valid=valid)
    np.testing.assert_array_equal(again.chi2, whole.chi2)
    np.testing.assert_array_equal(again.mad, whole.mad)
    np.testing.assert_array_equal(t.rho, whole.rho)
    # any window: each pixel from the frozen transform alone
    part = t.apply(before[:, 25:50, 5:37], after[:, 25:50, 5:37], valid=valid[25:50, 5:37])
    np.testing.assert_allclose(part.chi2, whole.chi2[25:50, 5:37], rtol=1e-12, atol=1e-12, equal_nan=True)
    # a transform fitted on part of the scene is another transform
    other = fit_irmad(before[:, :20], after[:, :20])
    assert not np.allclose(other.apply(before, after).chi2, whole.chi2, equal_nan=True)
    with pytest.raises(InvalidParameterError, match="fitted on 4 bands, got images of 3 bands"):
        t.apply(before[:3], after[:3])


def test_fit_normalize_irmad_gives_the_gains_of_normalize_irmad():
    before, after, *_ = _pair(6)
    fit = fit_normalize_irmad(before, after)
    res = normalize_irmad(before, after)
    np.testing.assert_array_equal(fit.gains, res.gains)
    np.testing.assert_array_equal(fit.offsets, res.offsets)
    np.testing.assert_array_equal(fit.invariant, res.invariant)
    np.testing.assert_array_equal(fit.apply(after), res.after)
    with pytest.raises(InvalidParameterError, match="of 4 bands, got shape"):
        fit.apply(after[:2])


def test_identical_images_with_collinear_bands_give_no_change():
    """Bands without correlation (constant or collinear) pair with a zero after-vector: their
    rounding noise is not blown up into a change (found by the property test of change.imad)."""
    data = np.zeros((4, 12, 12), np.float32)
    data[0, 0, 0] = data[1, 0, 0] = 1
    r = irmad(data, data.copy())
    assert np.nanmax(r.chi2) < 1e-6
