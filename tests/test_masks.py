"""Tests of changedet.masks: nodata, SCL, spectral clouds and shadows."""

from __future__ import annotations

import numpy as np
import pytest

from changedet.errors import BandMismatchError, InvalidParameterError
from changedet.masks import (
    cloud_shadow_mask,
    exclude_mask,
    exclusion_mask,
    nodata_mask,
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
