"""Tests of changedet.indices: band aliases and index values."""

from __future__ import annotations

import numpy as np
import pytest

from changedet.errors import BandMismatchError, InvalidParameterError
from changedet.indices import (
    INDICES,
    available_indices,
    bsi,
    brightness,
    canonical_name,
    compute_index,
    find_bands,
    ndbi,
    ndvi,
    ndwi,
    resolve_bands,
)


@pytest.mark.parametrize(
    ("name", "canon"),
    [
        ("B02", "blue"), ("b03", "green"), ("B04", "red"), ("B08", "nir"), ("B8A", "nir08"),
        ("B11", "swir16"), ("B12", "swir22"), ("B10", "cirrus"), ("SCL", "scl"), ("B2", "blue"),
        ("SR_B2", "blue"), ("SR_B5", "nir"), ("SR_B6", "swir16"), ("SR_B7", "swir22"),
        ("Red", "red"), ("NIR", "nir"), ("swir1", "swir16"), ("swir22", "swir22"),
        ("T31UDQ_20170829T105019_B11", "swir16"),
        ("S2A_OPER_MSI_L1C_TL_MPS__20161130T130757_A007527_T31UDQ_B04", "red"),
        ("band1", None), ("elevation", None),
    ],
)
def test_canonical_names(name, canon):
    assert canonical_name(name) == canon


def test_resolve_bands_sentinel_landsat_rgb():
    assert resolve_bands(["B02", "B03", "B04", "B08", "B11"]) == {
        "blue": 0, "green": 1, "red": 2, "nir": 3, "swir16": 4}
    assert resolve_bands(["SR_B2", "SR_B3", "SR_B4", "SR_B5", "SR_B6", "SR_B7"])["swir22"] == 5
    assert resolve_bands(["red", "green", "blue"]) == {"red": 0, "green": 1, "blue": 2}
    # three unnamed bands: an RGB photo
    assert resolve_bands(["band1", "band2", "band3"]) == {"red": 0, "green": 1, "blue": 2}
    assert resolve_bands(["band1", "band2"]) == {}


def test_available_indices():
    assert available_indices(["B02", "B03", "B04", "B08", "B11"]) == ["ndvi", "ndbi", "bsi", "ndwi", "brightness"]
    assert available_indices(["red", "green", "blue"]) == ["brightness"]


def test_known_values():
    img = np.array([0.05, 0.08, 0.04, 0.40, 0.20]).reshape(5, 1, 1)
    names = ["B02", "B03", "B04", "B08", "B11"]
    assert ndvi(img, names)[0, 0] == pytest.approx((0.40 - 0.04) / 0.44, rel=1e-6)
    assert ndbi(img, names)[0, 0] == pytest.approx((0.20 - 0.40) / 0.60, rel=1e-6)
    assert ndwi(img, names)[0, 0] == pytest.approx((0.08 - 0.40) / 0.48, rel=1e-6)
    assert bsi(img, names)[0, 0] == pytest.approx((0.24 - 0.45) / 0.69, rel=1e-6)
    assert brightness(img, names)[0, 0] == pytest.approx(np.mean([0.05, 0.08, 0.04, 0.40]), rel=1e-6)


def test_zero_denominator_and_nan_give_nan_without_warning():
    img = np.zeros((2, 2, 2))
    img[:, 1, 1] = np.nan
    out = ndvi(img, ["red", "nir"])
    assert np.isnan(out).all()


def test_missing_band_error_names_bands_and_working_methods():
    img = np.ones((3, 2, 2))
    with pytest.raises(BandMismatchError, match=r"'index:ndvi' needs bands \['red', 'nir'\] but \['nir'\] are missing"):
        ndvi(img, ["red", "green", "blue"])
    with pytest.raises(BandMismatchError, match=r"index:brightness"):
        find_bands(["red", "green", "blue"], ["swir16"], method="index:ndbi")


def test_bad_shapes_and_names():
    with pytest.raises(InvalidParameterError, match=r"one band per name \(2 names\), got shape \(3, 2, 2\)"):
        ndvi(np.ones((3, 2, 2)), ["red", "nir"])
    with pytest.raises(InvalidParameterError, match=r"index must be one of .*got 'evi'"):
        compute_index(np.ones((2, 2, 2)), ["red", "nir"], "evi")


def test_registry_complete():
    assert set(INDICES) == {"ndvi", "ndbi", "bsi", "ndwi", "brightness"}
