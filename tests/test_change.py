"""Tests of changedet.change: every method on tiny arrays with known answers."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import ndimage

from changedet.change import METHODS, ChangeScore, FittedMethod, change_score, fit_method, pca_kmeans
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


# --- fit and score -------------------------------------------------------------------

#: (method, bands, pixel size): every method, and auto's structural branch (RGB, and 4 bands at 1 m)
CASES = [(m, S2_SWIR, 10.0) for m in ALL] + [("auto", RGB, 1.0), ("auto", S2, 1.0), ("auto", RGB, 0.5),
                                             ("auto", RGB, 0.25)]
CASE_IDS = [f"{m}-{len(b)}b-{px:g}m" for m, b, px in CASES]


def _holey_scene(bands, shape=(72, 80), seed=0):
    """The planted-roof scene with NaN pixels in each date and a valid mask with holes."""
    before, after = _scene(bands, shape=shape, seed=seed)
    before[:, 3, 5] = np.nan
    after[1, 50, 60] = np.nan
    valid = np.ones(shape, bool)
    valid[30:34, 10:13] = False
    valid[60, :] = False
    return before, after, valid


def _json_only(x) -> bool:
    if isinstance(x, dict):
        return all(type(k) is str and _json_only(v) for k, v in x.items())
    if type(x) is list:
        return all(_json_only(v) for v in x)
    return x is None or type(x) in (str, bool, int, float)


def _windows(shape, core, halo):
    """(outer slices, core slices within the outer window, core slices in the scene) of a grid of windows."""
    rows, cols = shape
    for r0 in range(0, rows, core[0]):
        for c0 in range(0, cols, core[1]):
            r1, c1 = min(rows, r0 + core[0]), min(cols, c0 + core[1])
            orow, ocol = max(0, r0 - halo), max(0, c0 - halo)
            orow1, ocol1 = min(rows, r1 + halo), min(cols, c1 + halo)
            yield ((slice(orow, orow1), slice(ocol, ocol1)),
                   (slice(r0 - orow, r1 - orow), slice(c0 - ocol, c1 - ocol)),
                   (slice(r0, r1), slice(c0, c1)))


@pytest.mark.parametrize(("method", "bands", "px"), CASES, ids=CASE_IDS)
def test_fit_then_score_equals_change_score(method, bands, px):
    before, after, valid = _holey_scene(bands)
    fitted = fit_method(method, before, after, band_names=bands, pixel_size_m=px, valid=valid)
    assert isinstance(fitted, FittedMethod) and fitted.method == method and fitted.band_names == bands
    res = fitted.score(before, after, valid)
    ref = change_score(before, after, method=method, band_names=bands, pixel_size_m=px, valid=valid)
    np.testing.assert_array_equal(res.score, ref.score)
    assert np.isnan(res.score[~valid]).all() and np.isnan(res.score[3, 5]) and np.isnan(res.score[50, 60])
    assert res.threshold_method == ref.threshold_method == fitted.threshold_method
    assert res.details == ref.details == fitted.details
    assert set(res.layers) == set(ref.layers)
    for k in res.layers:
        np.testing.assert_array_equal(res.layers[k], ref.layers[k], err_msg=k)
    # the layers only the in-memory result shows are skipped for windows, the score is not
    light = fitted.apply(before, after, valid)
    assert light.layers == {}
    np.testing.assert_array_equal(light.score, res.score)
    if fitted.sample_result is not None:  # what the fit computed anyway is the score
        np.testing.assert_array_equal(fitted.sample_result.score, res.score)


@pytest.mark.parametrize(("method", "bands", "px"), CASES, ids=CASE_IDS)
def test_fitted_statistics_survive_json(method, bands, px):
    before, after, valid = _holey_scene(bands)
    fitted = fit_method(method, before, after, band_names=bands, pixel_size_m=px, valid=valid)
    d = json.loads(json.dumps(fitted.to_dict(), allow_nan=False))
    assert _json_only(d) and _json_only(fitted.stats) and _json_only(fitted.details)
    back = FittedMethod.from_dict(d)
    assert back.stats == fitted.stats and back.to_dict() == fitted.to_dict()
    assert (back.method, back.band_names, back.pixel_size_m, back.halo_px, back.threshold_method) == (
        fitted.method, fitted.band_names, fitted.pixel_size_m, fitted.halo_px, fitted.threshold_method)
    np.testing.assert_array_equal(back.score(before, after, valid).score, fitted.score(before, after, valid).score)


@pytest.mark.parametrize(("method", "bands", "px"), CASES, ids=CASE_IDS)
def test_windows_with_the_halo_reproduce_the_whole_scene(method, bands, px):
    """Windows scored with statistics fitted on the whole pair, read with ``halo_px``,
    give the whole-pair score in their cores (what the windowed run relies on)."""
    before, after, valid = _holey_scene(bands)
    fitted = fit_method(method, before, after, band_names=bands, pixel_size_m=px, valid=valid)
    whole = fitted.score(before, after, valid).score
    assert fitted.halo_px >= 0
    for outer, core, target in _windows(valid.shape, (26, 30), fitted.halo_px):
        part = fitted.apply(before[(slice(None), *outer)], after[(slice(None), *outer)], valid[outer]).score
        np.testing.assert_array_equal(part[core], whole[target], err_msg=f"{method}: window {target}")


@pytest.mark.parametrize(("method", "bands", "px"), [c for c in CASES if not c[0].startswith("index:")],
                         ids=[i for c, i in zip(CASES, CASE_IDS) if not c[0].startswith("index:")])
def test_a_window_fitted_on_its_own_differs(method, bands, px):
    """The statistics matter: a window scored with its own fit is not the whole-scene
    score, so the test above would see statistics taken from the window."""
    before, after, valid = _holey_scene(bands)
    whole = change_score(before, after, method=method, band_names=bands, pixel_size_m=px, valid=valid).score
    win = (slice(0, 40), slice(0, 50))
    own = change_score(before[:, :40, :50], after[:, :40, :50], method=method, band_names=bands, pixel_size_m=px,
                       valid=valid[win]).score
    assert not np.allclose(own[10:30, 10:40], whole[10:30, 10:40], equal_nan=True)


def test_a_window_without_the_halo_differs():
    """The halo matters: auto's neighbourhood means reach past a window without one."""
    before, after, valid = _holey_scene(S2)
    fitted = fit_method("auto", before, after, band_names=S2, pixel_size_m=10.0, valid=valid)
    whole = fitted.score(before, after, valid).score
    part = fitted.apply(before[:, :, :31], after[:, :, :31], valid[:, :31]).score  # the roof's left side
    assert fitted.halo_px == 3
    np.testing.assert_array_equal(part[:, :31 - fitted.halo_px], whole[:, :31 - fitted.halo_px])
    assert not np.array_equal(part[:, 30], whole[:, 30], equal_nan=True)


#: per method, a change of both dates (or of the after date) its score ignores, and the tolerance
INVARIANTS = {
    "diff": (lambda b, a: (b + 300, a + 300), 1e-3),  # an offset common to both dates
    "log-ratio": (lambda b, a: (2 * b, 2 * a), 1e-5),  # a gain common to both dates
    "index:ndvi": (lambda b, a: (3 * b, 3 * a), 1e-6),  # normalized differences: a common gain
    "index:ndbi": (lambda b, a: (3 * b, 3 * a), 1e-6),
    "index:bsi": (lambda b, a: (3 * b, 3 * a), 1e-6),
    "index:ndwi": (lambda b, a: (3 * b, 3 * a), 1e-6),
    "index:brightness": (lambda b, a: (b + 50, a + 50), 1e-3),  # a mean of bands: a common offset
    "imad": (lambda b, a: (0.8 * b + 20, 1.25 * a - 40), 1e-4),  # any gain/offset of either date
}


@pytest.mark.parametrize("method", sorted(INVARIANTS))
def test_score_ignores_what_the_method_is_invariant_to(method):
    before, after, valid = _holey_scene(S2_SWIR)
    transform, tol = INVARIANTS[method]
    b2, a2 = (x.astype("float64") for x in transform(before.astype("float64"), after.astype("float64")))
    s0 = change_score(before, after, method=method, band_names=S2_SWIR, valid=valid).score
    s1 = change_score(b2, a2, method=method, band_names=S2_SWIR, valid=valid).score
    np.testing.assert_allclose(s1, s0, rtol=tol, atol=tol)
    # and the planted roof is not invariant: the test can tell
    a3 = after.copy()
    a3[:, PLANTED[0], PLANTED[1]] *= 1.5
    s3 = change_score(before, a3, method=method, band_names=S2_SWIR, valid=valid).score
    assert not np.allclose(s3, s0, rtol=tol, atol=tol)


@pytest.mark.parametrize("method", ["cva", "ssim", "pca-kmeans", "auto", "imad"])
def test_gain_offset_of_after_hardly_changes_the_mask_of_normalized_methods(method):
    before, after = _scene(S2, shape=(96, 96))
    gains = np.array([0.7, 1.3, 0.9, 1.2], "float32")[:, None, None]
    offsets = np.array([150.0, -80.0, 40.0, 300.0], "float32")[:, None, None]
    m0 = _mask(change_score(before, after, method=method, band_names=S2, pixel_size_m=10.0))
    m1 = _mask(change_score(before, after * gains + offsets, method=method, band_names=S2, pixel_size_m=10.0))
    assert np.mean(m0 != m1) <= 0.01
    assert m0[PLANTED].mean() > 0.5


@pytest.mark.parametrize("method", ["diff", "log-ratio", "cva", "index:ndvi", "index:brightness"])
def test_identical_images_score_zero(method):
    before, _, valid = _holey_scene(S2_SWIR)
    s = change_score(before, before.copy(), method=method, band_names=S2_SWIR, valid=valid).score
    ok = np.isfinite(s)
    assert ok.sum() > 0.9 * valid.sum()
    np.testing.assert_allclose(s[ok], 0.0, atol=1e-5)


def test_statistics_fitted_on_a_sample_score_the_scene():
    """The windowed run's case: the fit sees a sample (here the left half), the score the whole scene."""
    before, after, valid = _holey_scene(S2)
    for method in ("imad", "pca-kmeans", "auto"):
        fitted = fit_method(method, before[:, :, :40], after[:, :, :40], band_names=S2, pixel_size_m=10.0,
                            valid=valid[:, :40])
        res = fitted.score(before, after, valid)
        assert res.score.shape == valid.shape and np.isfinite(res.score[valid & np.isfinite(after).all(0)
                                                                        & np.isfinite(before).all(0)]).all()
        assert np.nanmean(res.score[PLANTED]) > np.nanmean(res.score[40:, :20]), method


def test_fitted_method_errors():
    before, after, valid = _holey_scene(S2)
    fitted = fit_method("cva", before, after, band_names=S2, valid=valid)
    with pytest.raises(InvalidParameterError, match="band_names has 4 names"):
        fitted.score(before[:3], after[:3], valid)
    with pytest.raises(EmptyDataError, match="no pixel is valid"):
        fitted.score(before, after, np.zeros(valid.shape, bool))
    d = fitted.to_dict()
    with pytest.raises(InvalidParameterError, match=r"missing \['stats'\]"):
        FittedMethod.from_dict({k: v for k, v in d.items() if k != "stats"})
    with pytest.raises(InvalidParameterError, match="method must be one of .*got 'nope'"):
        FittedMethod.from_dict({**d, "method": "nope"})
    with pytest.raises(InvalidParameterError, match="method must be one of"):
        fit_method("nope", before, after, band_names=S2)
    with pytest.raises(InvalidParameterError, match="block must be an integer >= 2"):
        pca_kmeans(before, after, band_names=S2, block=1)


def _cleared_plot_with_roofs(seed=0, n=160):
    """A 1 m RGB pair: meadow cleared to bare soil over 80 x 80 m, two bright 60 x 12 m roofs on it;
    noise 8 DN, another gain and offset on the after date."""
    rng = np.random.default_rng(seed)
    tex = _texture((n, n), seed + 1, sigma=2) * 6
    meadow, soil, roof = np.array([35.0, 50.0, 25.0]), np.array([85.0, 65.0, 50.0]), np.array([210.0, 210.0, 215.0])
    before = meadow[:, None, None] + tex
    after = before.copy()
    after[:, 30:110, 30:110] = soil[:, None, None] + tex[30:110, 30:110]
    after[:, 40:52, 40:100] = roof[:, None, None]
    after[:, 70:82, 40:100] = roof[:, None, None]
    before = before + rng.normal(0, 8, before.shape)
    after = after * np.array([1.1, 0.95, 1.05])[:, None, None] + 5 + rng.normal(0, 8, after.shape)
    plot = np.zeros((n, n), bool)
    plot[34:106, 34:106] = True
    plot[38:54, 38:102] = plot[68:84, 38:102] = False  # the plot's bare ground, away from the roofs
    outside = np.ones((n, n), bool)
    outside[24:116, 24:116] = False
    return np.clip(before, 0, 255), np.clip(after, 0, 255), plot, outside


@pytest.mark.parametrize("seed", [0, 1])
def test_auto_high_res_finds_a_cleared_plot_beside_bright_new_roofs(seed):
    # roofs reach z-scores in the hundreds, bare ground tens: on a linear scale Otsu split the
    # roofs from everything else and missed the plot (found 0 %)
    before, after, plot, outside = _cleared_plot_with_roofs(seed)
    s = change_score(before, after, band_names=RGB, pixel_size_m=1.0)
    mask = s.score > compute_threshold(s.score, method=s.threshold_method)
    assert mask[42:50, 45:95].mean() > 0.95
    assert mask[plot].mean() > 0.6
    assert mask[outside].mean() < 0.01


def test_auto_high_res_large_scale_keeps_a_plot_and_drops_a_road():
    # 1 m RGB, noise 12 DN: a 90 x 90 m plot cleared to soil and a 10 m wide new road of the same
    # colour change; the large-scale evidence (10 m mean, opened with 40 m) keeps the plot only
    rng = np.random.default_rng(3)
    n = 200
    tex = _texture((n, n), 7, sigma=2) * 6
    meadow, soil = np.array([35.0, 50.0, 25.0]), np.array([70.0, 62.0, 45.0])
    before = meadow[:, None, None] + tex
    after = before.copy()
    after[:, 20:110, 20:110] = soil[:, None, None] + tex[20:110, 20:110]
    after[:, 150:160, :] = soil[:, None, None] + tex[150:160, :]
    before = np.clip(before + rng.normal(0, 12, before.shape), 0, 255)
    after = np.clip(after + rng.normal(0, 12, after.shape), 0, 255)
    s = change_score(before, after, band_names=RGB, pixel_size_m=1.0)
    large = s.layers["large_change"]
    plot, road, far = large[35:95, 35:95], large[153:157, 20:180], large[120:140, 130:190]
    # the plot stands several robust spreads out, the road and the meadow at about none
    assert np.median(plot) > 5.0 and max(np.percentile(road, 95), np.percentile(far, 95)) < 0.1 * np.median(plot)
    mask = s.score > compute_threshold(s.score, method=s.threshold_method)
    assert mask[35:95, 35:95].mean() > 0.9
    assert mask[120:140, 130:190].mean() < 0.01


def _houses(shift: int, seed: int = 0, n: int = 120):
    """0.5 m RGB on bare ground: an existing house drawn ``shift`` pixels further right in
    the after image (another view angle), a new house, a demolished one and a new lawn."""
    rng = np.random.default_rng(seed)
    tex = _texture((n, n), seed + 1, sigma=2) * 5
    ground, roof, lawn = np.array([120.0, 105.0, 85.0]), np.array([70.0, 72.0, 78.0]), np.array([70.0, 110.0, 45.0])
    before = ground[:, None, None] + tex
    after = before.copy()
    before[:, 20:44, 20:44] = roof[:, None, None]  # the existing house
    after[:, 20:44, 20 + shift:44 + shift] = roof[:, None, None]
    after[:, 70:94, 20:44] = roof[:, None, None]  # new
    before[:, 20:44, 70:94] = roof[:, None, None]  # demolished
    after[:, 70:100, 66:100] = lawn[:, None, None] + tex[70:100, 66:100]  # new lawn
    before = before + rng.normal(0, 3, before.shape)
    after = after + rng.normal(0, 3, after.shape)
    return np.clip(before, 0, 255), np.clip(after, 0, 255)


def test_auto_sub_metre_colour_tolerates_a_pixel_of_misregistration():
    # LEVIR-CD at 0.5 m: existing houses stand a pixel or more apart between the dates, and
    # their edges came out as change; a new or demolished house has no match and keeps its change
    before, after = _houses(shift=1)
    fine = change_score(before, after, band_names=RGB, pixel_size_m=0.5)
    plain = change_score(before, after, band_names=RGB, pixel_size_m=1.0)
    assert fine.details["shift_tolerance_px"] == 1 and plain.details["shift_tolerance_px"] == 0
    edges = (slice(22, 42), [20, 44])  # the columns the existing house left and took
    new, gone = (slice(72, 92), slice(22, 42)), (slice(22, 42), slice(72, 92))
    assert np.median(plain.layers["colour"][edges]) > 3.0
    assert np.median(fine.layers["colour"][edges]) < 0.25 * np.median(plain.layers["colour"][edges])  # noise
    for where in (new, gone):
        np.testing.assert_allclose(np.median(fine.layers["colour"][where]), np.median(plain.layers["colour"][where]),
                                   rtol=0.1)
    mask = fine.score > compute_threshold(fine.score, method=fine.threshold_method)
    assert mask[new].mean() > 0.95 and mask[gone].mean() > 0.95
    assert mask[edges].mean() < 0.05


def test_shift_tolerant_colour_ignores_invalid_neighbours_and_radius_0_is_plain():
    from changedet.change import _shift_tolerant_colour

    zb = np.zeros((1, 5, 5), np.float32)
    za = np.zeros((1, 5, 5), np.float32)
    za[0, 2, 2] = 4.0  # a new one-pixel object
    zb[0, 2, 3] = 4.0  # the same colour beside it, in a pixel that is not valid
    ok = np.ones((5, 5), bool)
    np.testing.assert_array_equal(_shift_tolerant_colour(zb, za, ok, 0), np.abs(za - zb)[0])
    assert _shift_tolerant_colour(zb, za, ok, 1)[2, 2] == 0.0  # matched by the neighbour
    ok[2, 3] = False
    assert _shift_tolerant_colour(zb, za, ok, 1)[2, 2] == 4.0


def test_auto_sub_metre_new_lawn_is_not_construction():
    # a lawn sown on bare ground changes colour as much as a roof; below 1 m the default
    # weighs the small-scale change of the after image's vegetation down (truths of new buildings)
    before, after = _houses(shift=0)
    fine = change_score(before, after, band_names=RGB, pixel_size_m=0.5)
    lawn, new = (slice(74, 98), slice(70, 98)), (slice(72, 92), slice(22, 42))
    assert np.median(fine.layers["weight_vegetation"][lawn]) == 0.0
    assert np.median(fine.layers["weight_vegetation"][new]) == 1.0
    mask = fine.score > compute_threshold(fine.score, method=fine.threshold_method)
    assert mask[new].mean() > 0.95 and mask[lawn].mean() < 0.05
    # at 1 m and coarser (DSIFN's land-cover truth counts vegetation) there is no such weight
    plain = change_score(before, after, band_names=RGB, pixel_size_m=1.0)
    assert "weight_vegetation" not in plain.layers


def test_ssim_of_a_range_below_float_precision_is_no_change():
    """The falsifying example hypothesis found in CI: bands of subnormal values, whose SSIM
    constants vanish in float32, once made SSIM divide 0 by 0."""
    data = np.full((4, 12, 12), 1.1754944e-38, np.float32)
    data[0, 0, 0] = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = change_score(data, data.copy(), method="ssim", band_names=S2, pixel_size_m=10.0)
    assert not _mask(res).any() and np.nanmax(res.score) == 0.0
