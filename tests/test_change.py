"""Tests of changedet.change: every method on tiny arrays with known answers."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import ndimage

from changedet.change import METHODS, ChangeScore, change_score
from changedet.errors import BandMismatchError, EmptyDataError, InvalidParameterError
from changedet.threshold import apply_threshold, compute_threshold

S2 = ("B02", "B03", "B04", "B08")
S2_SWIR = ("B02", "B03", "B04", "B08", "B11")
RGB = ("red", "green", "blue")
ALL = sorted(METHODS)


def _texture(shape, seed, sigma=1.5):
    rng = np.random.default_rng(seed)
    t = ndimage.gaussian_filter(rng.normal(size=shape), sigma)
    return (t - t.mean()) / t.std()


def _scene(bands=S2, shape=(64, 64), seed=0):
    """A vegetated/urban mix with texture; the after date has noise, and a bright
    roof planted on bare ground at rows 20:30, cols 30:42."""
    rows, cols = shape
    level = {"B02": 900, "B03": 1000, "B04": 1000, "B08": 1800, "B11": 2000,
             "red": 110, "green": 100, "blue": 90}
    shared = _texture(shape, seed + 1)
    before = np.stack([level[b] * (1 + 0.1 * shared + 0.05 * _texture(shape, seed + 11 + i))
                       for i, b in enumerate(bands)]).astype("float32")
    rng = np.random.default_rng(seed + 7)
    after = before * (1 + 0.01 * rng.normal(size=before.shape))
    roof = {"B02": 2600, "B03": 2700, "B04": 2800, "B08": 3000, "B11": 3200, "red": 230, "green": 225, "blue": 220}
    for i, b in enumerate(bands):
        after[i, 20:30, 30:42] = roof[b] * (1 + 0.02 * rng.normal(size=(10, 12)))
    return before.astype("float32"), after.astype("float32")


PLANTED = (slice(20, 30), slice(30, 42))


def _mask(res: ChangeScore, **kw) -> np.ndarray:
    t = compute_threshold(res.score, method=res.threshold_method, **kw)
    return apply_threshold(res.score, t)


def _f1(mask, truth):
    tp = np.sum(mask & truth)
    return 2 * tp / (mask.sum() + truth.sum())


@pytest.mark.parametrize("method", [m for m in ALL if not m.startswith("index:")])
def test_planted_change_is_found(method):
    before, after = _scene()
    truth = np.zeros(before.shape[1:], bool)
    truth[PLANTED] = True
    res = change_score(before, after, method=method, band_names=S2, pixel_size_m=10.0)
    assert isinstance(res, ChangeScore)
    assert res.score.shape == before.shape[1:] and res.score.dtype == np.float32
    inside = np.nanmean(res.score[PLANTED])
    outside = np.nanmean(res.score[~truth])
    assert inside > outside, f"{method}: planted change scores {inside} <= background {outside}"
    if method != "imad":  # imad's chi2 test also rejects noise pixels at p = 0.01 on 4096 pixels
        # SSIM sees a flat new roof mostly at its edges
        assert _f1(_mask(res), truth) > (0.5 if method == "ssim" else 0.6), method


@pytest.mark.parametrize("name", ["ndvi", "ndbi", "bsi", "ndwi", "brightness"])
def test_index_methods_report_signed_delta(name):
    before, after = _scene(S2_SWIR)
    res = change_score(before, after, method=f"index:{name}", band_names=S2_SWIR)
    d = res.layers[f"d_{name}"]
    assert np.allclose(np.abs(d), res.score, equal_nan=True)
    assert abs(np.nanmean(d[PLANTED])) > abs(np.nanmean(d[40:, :20]))


def test_index_method_missing_band_names_what_would_work():
    before, after = _scene(S2)
    with pytest.raises(BandMismatchError, match=r"index:ndbi.*\['swir16'\] are missing.*index:ndvi"):
        change_score(before, after, method="index:ndbi", band_names=S2)


@pytest.mark.parametrize("method", ALL)
def test_identical_images_give_no_change(method):
    before, _ = _scene(S2_SWIR)
    res = change_score(before, before.copy(), method=method, band_names=S2_SWIR, pixel_size_m=10.0)
    assert not _mask(res).any(), method


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=arrays(np.float32, (4, 12, 12), elements=st.floats(0, 5000, width=32)),
    method=st.sampled_from([m for m in ALL if m not in ("index:ndbi", "index:bsi")]),
)
def test_property_no_change_in_no_change_out(data, method):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            res = change_score(data, data.copy(), method=method, band_names=S2, pixel_size_m=10.0)
        except EmptyDataError as exc:  # an index undefined everywhere (all-zero bands) is a clear error
            assert method.startswith("index:") and "undefined" in str(exc)
            return
    assert not _mask(res).any()


@pytest.mark.parametrize("method", ["imad", "auto"])
def test_gain_offset_of_after_hardly_changes_the_mask(method):
    before, after = _scene(S2, shape=(96, 96))
    gains = np.array([0.7, 1.3, 0.9, 1.2], "float32")[:, None, None]
    offsets = np.array([150.0, -80.0, 40.0, 300.0], "float32")[:, None, None]
    m0 = _mask(change_score(before, after, method=method, band_names=S2, pixel_size_m=10.0))
    m1 = _mask(change_score(before, after * gains + offsets, method=method, band_names=S2, pixel_size_m=10.0))
    assert np.mean(m0 != m1) <= 0.01


def test_imad_score_is_gain_offset_invariant():
    before, after = _scene(S2)
    s0 = change_score(before, after, method="imad", band_names=S2).layers["chi2"]
    s1 = change_score(before, 1.25 * after - 40, method="imad", band_names=S2).layers["chi2"]
    np.testing.assert_allclose(s0, s1, rtol=1e-3, atol=1e-3)


def test_auto_picks_by_bands_and_resolution():
    before, after = _scene(S2)
    assert change_score(before, after, band_names=S2, pixel_size_m=10).details["auto_choice"] == "urban-spectral"
    assert change_score(before, after, band_names=S2, pixel_size_m=1).details["auto_choice"] == "structure+colour"
    rb, ra = _scene(RGB)
    res = change_score(rb, ra, band_names=RGB, pixel_size_m=1.0)
    assert res.details["auto_choice"] == "structure+colour" and res.threshold_method == "otsu"


def test_auto_suppresses_water_and_vegetation_on_both_dates():
    shape = (64, 64)
    veg = np.array([400.0, 700.0, 400.0, 4000.0, 2000.0])  # NDVI 0.82
    img = np.stack([v * (1 + 0.05 * _texture(shape, 3)) for v in veg]).astype("float32")
    after = img.copy()
    after[3, :32] *= 0.7  # vegetation stays vegetation (NDVI 0.75) but changes strongly
    after[:, 40:50, 40:52] = np.array([2600, 2700, 2800, 3000, 3200.0])[:, None, None]  # new roof
    res = change_score(img, after, band_names=S2_SWIR, pixel_size_m=10.0)
    mask = _mask(res)
    assert mask[42:48, 42:50].all()
    assert not mask[:, :32].any()
    for key in ("d_ndvi", "d_ndbi", "d_brightness", "d_ndwi"):
        assert key in res.layers and res.layers[key].shape == shape


def test_auto_layers_hold_index_deltas_for_from_to_classes():
    before, after = _scene(S2)
    res = change_score(before, after, band_names=S2)
    assert {"d_ndvi", "d_brightness", "d_ndwi"} <= set(res.layers)
    assert np.nanmean(res.layers["d_brightness"][PLANTED]) > 0


def test_valid_mask_and_nan_become_nan_score():
    before, after = _scene(S2)
    after = after.copy()
    after[:, 0, 0] = np.nan
    valid = np.ones(before.shape[1:], bool)
    valid[5, 5] = False
    res = change_score(before, after, method="cva", band_names=S2, valid=valid)
    assert np.isnan(res.score[0, 0]) and np.isnan(res.score[5, 5])
    assert np.isfinite(res.score[10, 10])


@pytest.mark.parametrize("method", ALL)
def test_all_nan_raises_empty_data(method):
    nan = np.full((4, 10, 10), np.nan, "float32")
    with pytest.raises(EmptyDataError, match="no pixel is valid"):
        change_score(nan, nan, method=method, band_names=S2)


@pytest.mark.parametrize("method", ALL)
def test_constant_images_give_valid_result(method):
    before = np.full((5, 16, 16), 1000.0, "float32")
    for after in (before.copy(), before + 500):  # no pixel changed; every pixel changed alike
        res = change_score(before, after, method=method, band_names=S2_SWIR, pixel_size_m=10.0)
        assert np.isfinite(res.score).all(), method
        _mask(res)  # a threshold is computable


@pytest.mark.parametrize("method", ["cva", "imad", "auto", "pca-kmeans", "ssim"])
def test_most_pixels_changed_gives_valid_result(method):
    # relative methods may read a change shared by 90 % of the scene as the norm: any
    # finite score with a computable threshold is a valid answer
    before, after = _scene(S2)
    after = after.copy()
    after[:, :, 5:] = after[:, :, 5:] * 0.5 + 3000
    res = change_score(before, after, method=method, band_names=S2)
    assert np.isfinite(res.score).all()
    assert _mask(res).shape == before.shape[1:]


def test_index_undefined_everywhere_is_a_clear_error():
    zeros = np.zeros((4, 8, 8), "float32")
    with pytest.raises(EmptyDataError, match="index ndvi is undefined"):
        change_score(zeros, zeros, method="index:ndvi", band_names=S2)


def test_unknown_method_and_bad_inputs():
    before, after = _scene(S2)
    with pytest.raises(InvalidParameterError, match=r"method must be one of .*'cva'.*got 'nope'"):
        change_score(before, after, method="nope", band_names=S2)
    with pytest.raises(InvalidParameterError, match=r"differ in shape.*align_to"):
        change_score(before, after[:, :10], band_names=S2)
    with pytest.raises(InvalidParameterError, match="band_names has 3 names"):
        change_score(before, after, band_names=S2[:3])
    with pytest.raises(InvalidParameterError, match=r"valid has shape \(3, 3\)"):
        change_score(before, after, band_names=S2, valid=np.ones((3, 3), bool))
    with pytest.raises(InvalidParameterError, match="pixel_size_m must be a positive number"):
        change_score(before, after, band_names=S2, pixel_size_m=-1)


def test_inputs_are_not_modified():
    before, after = _scene(S2)
    before.setflags(write=False)
    after.setflags(write=False)
    for method in ALL:
        if method.startswith("index:") and method != "index:ndvi":
            continue
        change_score(before, after, method=method, band_names=S2)


def test_every_method_cites_its_paper():
    for name, fn in METHODS.items():
        doc = fn.function.__doc__ or ""
        assert "References" in doc or "Celik" in doc, f"{name} docstring has no References section"


def test_auto_on_a_real_oscd_city(oscd):
    """Rennes (OSCD): the default finds the urban changes (F1 about 0.58 in the benchmark)."""
    import rasterio

    from changedet.io import read_raster
    from changedet.masks import exclusion_mask

    city = oscd / "rennes"
    before = read_raster(city / "imgs_1", bands=["B02", "B03", "B04", "B08", "B10", "B11"])
    after = read_raster(city / "imgs_2", bands=["B02", "B03", "B04", "B08", "B10", "B11"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(city / "cm" / "rennes-cm.tif") as src:
            truth = src.read(1) == 2
    valid = ~exclusion_mask(before.data, after.data, band_names=before.band_names)
    res = change_score(before.data, after.data, band_names=before.band_names, pixel_size_m=10.0, valid=valid)
    mask = _mask(res, valid=valid)
    assert _f1(mask, truth) > 0.45
    assert res.details["normalization"] == "irmad invariant pixels"
