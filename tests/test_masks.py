"""Tests of changedet.masks: nodata, SCL, Landsat QA_PIXEL, spectral clouds and shadows."""

from __future__ import annotations

import numpy as np
import pytest

from changedet.errors import BandMismatchError, InvalidParameterError
from changedet.masks import (
    QA_PIXEL_BITS,
    QA_PIXEL_CLOUD,
    SCL_CLOUD_CLASSES,
    SCL_EXCLUDE,
    classification_band,
    cloud_shadow_mask,
    exclude_mask,
    exclusion_mask,
    has_cloud_information,
    nodata_mask,
    qa_pixel_mask,
    scl_mask,
    spectral_cloud_mask,
)

L1C = ("B02", "B03", "B04", "B08", "B10", "B11")


def _l1c_scene(seed=0, shape=(120, 120)):
    """Ground with texture, a bright roof (no cirrus signal), a cloud (cirrus raised)
    and its shadow 30 px south-east."""
    rng = np.random.default_rng(seed)
    level = np.array([1100, 1000, 950, 2200, 13, 1800], float)[:, None, None]
    img = level * (1 + 0.05 * rng.normal(size=(len(L1C), *shape)))
    img[4] = 13 + rng.normal(0, 0.5, size=shape)
    img[:3, 80:95, 10:25] += 1500  # bright roof, 225 px
    img[:4, 20:40, 20:45] += 1800  # cloud, 500 px
    img[4, 20:40, 20:45] += 25
    img[:, 50:70, 50:75] *= 0.5  # its shadow
    return img


def test_nodata_and_edges():
    img = np.ones((2, 6, 6))
    img[0, 3, 3] = np.nan
    img[1, 0, 0] = -9999
    assert nodata_mask(img).sum() == 1
    assert nodata_mask(img, nodata=-9999).sum() == 2
    assert nodata_mask(img, edge_px=1)[2:5, 2:5].all()
    with pytest.raises(InvalidParameterError, match="edge_px must be >= 0"):
        nodata_mask(img, edge_px=-1)


def test_scl_classes():
    scl = np.arange(12).reshape(3, 4)
    m = scl_mask(scl)
    assert set(np.flatnonzero(m)) == {1, 3, 8, 9, 10}
    assert scl_mask(scl, grow_px=1).sum() > m.sum()
    with pytest.raises(InvalidParameterError, match="scl must be a"):
        scl_mask(np.ones((2, 2, 2)))


def test_spectral_cloud_finds_cloud_not_roof():
    img = _l1c_scene()
    m = spectral_cloud_mask(img, L1C)
    assert m[22:38, 22:43].all()
    assert not m[80:95, 10:25].any()


def test_spectral_cloud_takes_in_its_thin_rim_and_no_more():
    img = _l1c_scene()
    spread = np.array([1100, 1000, 950])[:, None, None] * 0.05
    # a thin rim east of the cloud: visible about 4 spreads up (the core 36), cirrus
    # 4 spreads (the core 50): the core's tests miss it
    img[:3, 22:38, 45:60] += 4 * spread
    img[4, 22:38, 45:60] += 2.0
    # the same faint brightening away from any cloud (a pale field), and beyond the rim's reach
    img[:3, 100:115, 60:75] += 4 * spread
    img[4, 100:115, 60:75] += 2.0
    core = spectral_cloud_mask(img, L1C, grow_px=0, rim_px=0)
    assert core[22:38, 22:43].all() and not core[22:38, 47:60].any()
    m = spectral_cloud_mask(img, L1C, grow_px=0)
    assert m[22:38, 45:60].mean() > 0.9
    assert not m[100:115, 60:75].any() and not m[80:95, 10:25].any()
    short = spectral_cloud_mask(img, L1C, grow_px=0, rim_px=5)
    assert short[22:38, 45:49].mean() > 0.9 and not short[22:38, 52:60].any()


def test_spectral_cloud_is_invariant_to_gain_offset():
    img = _l1c_scene()
    gains = np.array([0.7, 1.3, 1.1, 0.9, 1.25, 0.8])[:, None, None]
    offsets = np.array([200, -100, 50, 300, -10, 0])[:, None, None]
    assert np.array_equal(spectral_cloud_mask(img, L1C), spectral_cloud_mask(img * gains + offsets, L1C))


def test_cloud_shadow_matched():
    img = _l1c_scene()
    clouds = spectral_cloud_mask(img, L1C, grow_px=0)
    shadow = cloud_shadow_mask(img, L1C, clouds, grow_px=0)
    assert shadow[52:68, 52:73].mean() > 0.9
    assert not shadow[80:95, 10:25].any()
    assert not cloud_shadow_mask(img, L1C, np.zeros(clouds.shape, bool)).any()


def test_exclude_mask_rules():
    img = _l1c_scene()
    m = exclude_mask(img, L1C)
    assert m[25, 25] and m[60, 60] and not m[100, 100] and not m[85, 15]
    # without a cirrus band no spectral cloud test: bright roofs are not clouds
    no_cirrus = exclude_mask(img[[0, 1, 2, 3, 5]], ("B02", "B03", "B04", "B08", "B11"))
    assert not no_cirrus.any()
    # SCL wins when present
    scl = np.full(img.shape[1:], 4.0)
    scl[0, 0] = 9
    with_scl = np.concatenate([img, scl[None]])
    m2 = exclude_mask(with_scl, (*L1C, "SCL"))
    assert m2[0, 0] and m2.sum() == 1
    assert not exclude_mask(img, L1C, clouds=False).any()


def test_exclusion_mask_of_a_pair():
    before = _l1c_scene()
    after = before.copy()
    after[:, 100:110, 100:110] = np.nan
    m = exclusion_mask(before, after, band_names=L1C)
    assert m[105, 105] and m[25, 25]
    with pytest.raises(InvalidParameterError, match="differ in shape"):
        exclusion_mask(before, after[:, :10], band_names=L1C)


def test_errors():
    with pytest.raises(BandMismatchError, match=r"needs blue, green and red"):
        spectral_cloud_mask(np.ones((2, 4, 4)), ["B08", "B11"])
    with pytest.raises(InvalidParameterError, match="band_names has 1 names but the image has 2 bands"):
        exclude_mask(np.ones((2, 4, 4)), ["B02"])
    with pytest.raises(InvalidParameterError, match=r"clouds has shape \(2, 2\)"):
        cloud_shadow_mask(np.ones((3, 4, 4)), ["red", "green", "blue"], np.zeros((2, 2), bool))


# --------------------------------------------------------------------------- Landsat QA_PIXEL
# Landsat 8-9 Collection 2 Level-2 QA_PIXEL values as the products hold them, with whether the
# pixel is left out by default.  1, 21824, 21826, 21888, 22080, 22280, 23888 and 23952 are rows of
# the QA_PIXEL value table of USGS LSDS-1619 (Landsat 8-9 C2 L2 Science Product Guide); the others
# are values seen in products, named here from their bits (checked below against the bit layout).
QA_VALUES = {
    1: ("fill", True),  # bit 0
    21824: ("clear land, low confidences", False),  # bits 6 clear, 8/10/12/14 low confidences
    21826: ("dilated cloud over land", True),  # + bit 1
    21888: ("water", False),  # bit 7, no clear bit
    21952: ("clear water", False),  # bits 6 and 7
    22080: ("mid-confidence cloud, clear", False),  # cloud confidence 2 (bits 8-9), cloud bit 3 not set
    22280: ("high-confidence cloud", True),  # bit 3 (and cloud confidence 3)
    23888: ("high-confidence cloud shadow over land", True),  # bit 4
    23952: ("high-confidence cloud shadow over water", True),  # bits 4 and 7
    54596: ("high-confidence cirrus, clear", True),  # bit 2 (and cirrus confidence 3)
    55052: ("high-confidence cirrus and cloud", True),  # bits 2 and 3
    30048: ("high-confidence snow", False),  # bit 5: kept, as SCL snow (11) is
}


def _bits(value: int) -> set[int]:
    return {b for b in range(16) if value >> b & 1}


def test_qa_pixel_values_decode_to_the_documented_bits() -> None:
    assert QA_PIXEL_BITS == {"fill": 0, "dilated_cloud": 1, "cirrus": 2, "cloud": 3, "cloud_shadow": 4, "snow": 5}
    assert _bits(1) == {0}
    assert _bits(21824) == {6, 8, 10, 12, 14}
    assert _bits(22280) == {3, 8, 9, 10, 12, 14}
    assert _bits(23888) == {4, 6, 8, 10, 11, 12, 14}
    assert _bits(55052) == {2, 3, 8, 9, 10, 12, 14, 15}
    assert _bits(30048) == {5, 6, 8, 10, 12, 13, 14}


def test_qa_pixel_mask_on_real_values() -> None:
    values = np.array(list(QA_VALUES), dtype="uint16").reshape(3, 4)
    expected = np.array([QA_VALUES[v][1] for v in values.ravel()]).reshape(3, 4)
    np.testing.assert_array_equal(qa_pixel_mask(values), expected)
    # the same as float32 read back from a GeoTIFF, and as a (1, rows, cols) band
    np.testing.assert_array_equal(qa_pixel_mask(values.astype("float32")[None]), expected)
    # cloud flags alone: fill is not cloud
    cloud = qa_pixel_mask(values, flags=QA_PIXEL_CLOUD)
    assert not cloud[0, 0] and cloud[values == 22280].all()
    snow = qa_pixel_mask(values, flags=["snow"])
    assert snow.sum() == 1 and snow[values == 30048].all()
    # NaN (no value after resampling) is fill
    assert qa_pixel_mask(np.array([[np.nan, 21824.0]])).tolist() == [[True, False]]
    assert qa_pixel_mask(np.full((5, 5), 21824), grow_px=1).sum() == 0
    grown = np.full((5, 5), 21824)
    grown[2, 2] = 22280
    assert qa_pixel_mask(grown, grow_px=1).sum() == 9
    with pytest.raises(InvalidParameterError, match=r"unknown QA_PIXEL flags \['clouds'\]; use names from"):
        qa_pixel_mask(values, flags=["clouds"])
    with pytest.raises(InvalidParameterError, match="qa must be a"):
        qa_pixel_mask(np.ones((2, 2, 2)))


def test_cloud_classes_are_named_once() -> None:
    assert SCL_CLOUD_CLASSES == (3, 8, 9, 10) and set(SCL_CLOUD_CLASSES) < set(SCL_EXCLUDE)
    assert classification_band(["SR_B2", "SR_B3", "SR_B4", "qa_pixel"], "qa_pixel") == 3
    assert classification_band(["LC09_L2SP_163021_20240614_QA_PIXEL"], "qa_pixel") == 0
    assert classification_band(["T39UWB_20240612_SCL", "B02"], "scl") == 0
    assert classification_band(["B02", "B03"], "qa_pixel") is None
    with pytest.raises(InvalidParameterError, match="kind must be 'scl' or 'qa_pixel'"):
        classification_band(["B02"], "fmask")  # type: ignore[arg-type]
    assert has_cloud_information(["blue", "green", "red", "QA_PIXEL"])


def test_exclusion_mask_reads_qa_pixel_in_any_case() -> None:
    qa = np.full((2, 2), 21824.0)
    qa[0, 1] = 22280  # cloud
    qa[1, 0] = 23888  # cloud shadow
    qa[1, 1] = 54596  # cirrus
    clear = np.full((2, 2), 21824.0)
    spectral = np.full((3, 2, 2), 0.1)
    for name in ("QA_PIXEL", "qa_pixel", "Qa_Pixel"):
        names = ("red", "green", "blue", name)
        before = np.concatenate([spectral, clear[None]])
        after = np.concatenate([spectral, qa[None]])
        m = exclusion_mask(before, after, band_names=names)
        assert m.tolist() == [[False, True], [True, True]], name
        # the class codes are not taken for nodata, and clouds=False leaves only nodata
        assert not exclusion_mask(before, after, band_names=names, clouds=False).any()


def test_detect_changes_leaves_out_qa_pixel_clouds(capsys: pytest.CaptureFixture[str]) -> None:
    """End to end: a Landsat pair whose after date has a cloud over part of the scene; the summary
    and the command's lines say how much was left out."""
    from conftest import BUILDING, make_scene

    from changedet.pipeline import detect_changes
    from changedet.raster import GeoRaster

    scene = make_scene()
    rows, cols = scene.before.shape[1:]
    qa_before = np.full((1, rows, cols), 21824, "float32")
    qa_after = qa_before.copy()
    cloud = (slice(20, 60), slice(20, 80))  # well away from the planted building
    qa_after[0, cloud[0], cloud[1]] = 22280
    after = scene.after.copy()
    after[:, cloud[0], cloud[1]] = 9000.0  # bright cloud: a change if it were not masked
    names = ("SR_B2", "SR_B3", "SR_B4", "SR_B5", "QA_PIXEL")
    b = GeoRaster(np.concatenate([scene.before, qa_before]), scene.transform, scene.crs, names)
    a = GeoRaster(np.concatenate([after, qa_after]), scene.transform, scene.crs, names)
    result = detect_changes(b, a, coregister=False)
    assert result.n_changes == 1
    mask = result.mask.data[0]
    assert (mask[cloud] == 255).all()  # the cloud is nodata in the change mask
    assert (mask[BUILDING] == 1).mean() > 0.9
    m = result.summary["masks"]
    assert m["excluded_pixels"] == 40 * 60 and m["classification_bands"] == ["QA_PIXEL"]
    px = result.summary["grid"]["pixel_size_m"]
    assert m["excluded_area_ha"] == pytest.approx(40 * 60 * px * px / 10_000, abs=0.01)
    valid = result.summary["results"]["valid_pixels"]
    assert m["excluded_share"] == pytest.approx(40 * 60 / (40 * 60 + valid), abs=1e-4)
    from pathlib import Path

    from changedet.cli import _print_result

    _print_result(result, Path("out"), 1.0)
    line = next(ln for ln in capsys.readouterr().out.splitlines() if "left out as cloud" in ln)
    assert f"{m['excluded_area_ha']:.2f} ha" in line and f"{m['excluded_share']:.1%}" in line
    # without the QA band the same cloud is a change
    bare = detect_changes(b.select(list(names[:4])), a.select(list(names[:4])), coregister=False)
    assert bare.n_changes == 2
