"""Hysteresis thresholding of the urban-spectral score (the default on multispectral pixels of
5 m and coarser): areas of pixels above the low value next to change, kept when they reach the
high value somewhere or are large; the same on both paths and through ``rethreshold``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from scipy import ndimage

from changedet import data
from changedet.change import URBAN_HYSTERESIS, FittedMethod
from changedet.objects import _disk
from changedet.pipeline import detect_changes
from changedet.window import HYSTERESIS_KEEP_M2, HYSTERESIS_REACH_PX

S2 = data.sample_path("s2_like")
EIGHT = np.ones((3, 3), bool)


@pytest.fixture(scope="module")
def runs() -> dict:
    """The 10 m sample pair with the method's own threshold (hysteresis) and with its value given."""
    return {
        "own": detect_changes(S2 / "before.tif", S2 / "after.tif", tiled=False, progress=False),
        "plain": detect_changes(S2 / "before.tif", S2 / "after.tif", threshold=6.0, tiled=False, progress=False),
    }


def test_summary_records_the_hysteresis_and_only_for_the_methods_own_threshold(runs: dict) -> None:
    own, plain = runs["own"].summary, runs["plain"].summary
    t = own["parameters"]["threshold_value"]
    assert own["parameters"]["threshold_method"] == "sigma" and t == 6.0
    assert own["parameters"]["hysteresis"] == {"low": URBAN_HYSTERESIS[0] * t, "high": URBAN_HYSTERESIS[1] * t}
    assert own["fit"]["hysteresis"] == own["parameters"]["hysteresis"]
    assert plain["parameters"]["hysteresis"] is None and plain["parameters"]["threshold_value"] == 6.0


def test_the_mask_is_what_the_rule_says(runs: dict) -> None:
    """Every changed pixel is above the low value within the reach of a pixel above the threshold;
    every area reaches the high value (or is large); every area of the plain cut that reaches the
    high value is inside the mask, and the weak ones that do not are gone."""
    r, plain = runs["own"], runs["plain"]
    low, high = r.summary["parameters"]["hysteresis"].values()
    score = r.score.data[0]
    mask, pmask = r.mask.data[0] == 1, plain.mask.data[0] == 1
    with np.errstate(invalid="ignore"):
        strong = score > r.threshold
        assert (score[mask] > low).all()
    near = ndimage.binary_dilation(strong, structure=_disk(HYSTERESIS_REACH_PX))
    assert (mask <= near).all()
    exempt = HYSTERESIS_KEEP_M2 / 100.0  # pixels of 10 m
    lab, n = ndimage.label(mask, EIGHT)
    for k in range(1, n + 1):
        area = lab == k
        assert np.nanmax(score[area]) >= high or area.sum() >= exempt
    plab, pn = ndimage.label(pmask, EIGHT)
    peaks = ndimage.maximum(np.nan_to_num(score, nan=-np.inf), plab, np.arange(1, pn + 1))
    assert (peaks >= high).any() and (peaks < high).any()  # the pair has both kinds
    for k, peak in enumerate(peaks, start=1):
        inside = mask[plab == k]
        assert inside.all() if peak >= high else not inside.any()
    # the rim: the mask is larger than the strong areas it holds
    assert mask.sum() > sum(((plab == k) & mask).sum() for k in range(1, pn + 1))
    assert r.n_changes < plain.n_changes


def test_the_rim_does_not_change_an_areas_kind(runs: dict) -> None:
    """The kind of an area is judged on its pixels above the threshold: the one area here is the
    new construction the plain cut calls its largest area."""
    own = [p["change_class"] for p in runs["own"].polygons.properties]
    plain = runs["plain"].polygons.properties
    assert own[0] == plain[0]["change_class"] == "new_construction"


def test_accuracy_on_the_sample(runs: dict) -> None:
    truth = data.load_sample("s2_like").truth.data[0] == 1

    def f1(r: object) -> float:
        m = r.mask.data[0] == 1
        return 2 * (m & truth).sum() / (m.sum() + truth.sum())

    assert f1(runs["own"]) >= 0.99 > f1(runs["plain"])


def test_windowed_equals_in_memory(tmp_path: Path) -> None:
    """Areas crossing windows of 64 px are kept or dropped whole, and their rims reach across."""
    detect_changes(S2 / "before.tif", S2 / "after.tif", out=tmp_path / "m", figures=False, tiled=False)
    detect_changes(S2 / "before.tif", S2 / "after.tif", out=tmp_path / "w", figures=False, tiled=True, window_px=64,
                   workers=2, progress=False)
    with rasterio.open(tmp_path / "m" / "change_mask.tif") as a, rasterio.open(tmp_path / "w" / "change_mask.tif") as b:
        assert np.array_equal(a.read(), b.read())
    sm = json.loads((tmp_path / "m" / "summary.json").read_text())
    sw = json.loads((tmp_path / "w" / "summary.json").read_text())
    assert sw["tiling"]["windows"] > 1
    assert sm["parameters"] == sw["parameters"] and sm["results"]["n_changes"] == sw["results"]["n_changes"]


def test_rethreshold_is_a_fresh_run(runs: dict) -> None:
    r, plain = runs["own"], runs["plain"]
    again = r.rethreshold(None)
    assert np.array_equal(again.mask.data, r.mask.data)
    assert again.summary["parameters"] == r.summary["parameters"]
    cut = r.rethreshold(6.0)
    assert np.array_equal(cut.mask.data, plain.mask.data)
    assert cut.summary["parameters"]["hysteresis"] is None
    back = plain.rethreshold(None)  # from a plain result back to the method's own: the hysteresis again
    assert np.array_equal(back.mask.data, r.mask.data)


def test_fitted_method_keeps_its_factors_through_json() -> None:
    b = np.random.default_rng(0).uniform(500, 1500, size=(4, 40, 40))
    a = b.copy()
    a[:, 10:20, 10:20] += 900
    from changedet.change import fit_method

    f = fit_method("auto", b, a, band_names=["B02", "B03", "B04", "B08"], pixel_size_m=10.0)
    assert f.hysteresis == URBAN_HYSTERESIS
    g = FittedMethod.from_dict(json.loads(json.dumps(f.to_dict())))
    assert g.hysteresis == URBAN_HYSTERESIS
    old = f.to_dict()
    del old["hysteresis"]  # what a version before it wrote: a plain threshold
    assert FittedMethod.from_dict(old).hysteresis is None
    with pytest.raises(Exception, match="hysteresis must be"):
        FittedMethod.from_dict({**f.to_dict(), "hysteresis": [2.0, 0.5]})
    rgb = fit_method("auto", b[:3], a[:3], band_names=["red", "green", "blue"], pixel_size_m=1.0)
    assert rgb.hysteresis is None  # the metre-class default cuts at its threshold


def test_grown_is_a_dilation_within_the_low_pixels() -> None:
    """The rim as computed (at the pixels of ``low`` only) equals ``low & dilation(core) | core``."""
    from changedet.window import _grown

    rng = np.random.default_rng(7)
    for radius in (1, 2, 3):
        for _ in range(40):
            shape = (int(rng.integers(1, 50)), int(rng.integers(1, 50)))
            core = rng.random(shape) > rng.uniform(0.5, 0.999)
            low = (rng.random(shape) > rng.uniform(0.0, 0.9)) | core
            want = (ndimage.binary_dilation(core, structure=_disk(radius)) & low) | core
            assert np.array_equal(_grown(core, low, radius), want)


def test_the_report_says_how_the_mask_was_made(tmp_path: Path) -> None:
    """report.html states the hysteresis (not "a pixel is change where ...") when the run had one."""
    import re

    detect_changes(S2 / "before.tif", S2 / "after.tif", out=tmp_path / "own", tiled=False, progress=False)
    detect_changes(S2 / "before.tif", S2 / "after.tif", threshold=6.0, out=tmp_path / "plain", tiled=False,
                   progress=False)
    own = re.sub(r"\s+", " ", (tmp_path / "own" / "report.html").read_text(encoding="utf-8"))
    plain = re.sub(r"\s+", " ", (tmp_path / "plain" / "report.html").read_text(encoding="utf-8"))
    assert ("A changed area is the pixels whose score exceeds 6.0000 (threshold by sigma), with the pixels above "
            "3.0000 next to them (their rim), kept when its score reaches 12.0000 somewhere or it covers 10 ha") in own
    assert "A pixel is change where its score exceeds" not in own
    assert "A pixel is change where its score exceeds 6.0000 (threshold by fixed)" in plain
