"""A changed area holding new structures is new construction, whatever its mean index changes say."""

from __future__ import annotations

from shapely.geometry import box

from changedet.data import load_sample
from changedet.objects import ChangePolygons
from changedet.pipeline import BUILT_SHARE, _built_where_structures, detect_changes
from changedet.structures import Structures


def _areas() -> ChangePolygons:
    geoms = (box(0, 0, 100, 100), box(200, 0, 300, 100))
    props = ({"id": 1, "area_m2": 10_000.0, "change_class": "vegetation_loss"},
             {"id": 2, "area_m2": 10_000.0, "change_class": "vegetation_loss"})
    return ChangePolygons(geoms, props, "EPSG:32639")


def _structures(footprints: dict[int, float]) -> Structures:
    geoms = tuple(box(0, 0, 10, 10) for _ in footprints)
    props = tuple({"id": k + 1, "change_id": cid, "area_m2": a} for k, (cid, a) in enumerate(footprints.items()))
    return Structures(ChangePolygons(geoms, props, "EPSG:32639"), len(props), None, 1.0)


def test_only_areas_mostly_built_become_new_construction() -> None:
    out = _built_where_structures(_areas(), _structures({1: BUILT_SHARE * 10_000.0, 2: 0.5 * BUILT_SHARE * 10_000.0}))
    assert [p["change_class"] for p in out.properties] == ["new_construction", "vegetation_loss"]
    uncounted = Structures(ChangePolygons((), (), "EPSG:32639"), None, "pixels of 10 m are coarser than 2 m", 10.0)
    assert _built_where_structures(_areas(), uncounted) is not None
    assert [p["change_class"] for p in _built_where_structures(_areas(), uncounted).properties] == ["vegetation_loss"] * 2


def test_the_sample_construction_site_is_new_construction() -> None:
    pair = load_sample("hires_rgb")
    result = detect_changes(pair.before, pair.after)
    site = max(result.polygons.properties, key=lambda p: p["area_m2"])
    assert result.structures.count and site["change_class"] == "new_construction"
    by_class = result.summary["results"]["by_class"]
    assert by_class["new_construction"]["area_m2"] >= site["area_m2"]
    assert sum(v["count"] for v in by_class.values()) == len(result.polygons)


def test_dates_given_as_an_option_win_and_bad_ones_are_named(tmp_path) -> None:
    import json
    import subprocess
    import sys

    import pytest

    from changedet.data import sample_path
    from changedet.errors import ChangedetError

    folder = sample_path("s2_like")
    r = detect_changes(folder / "before.tif", folder / "after.tif", dates=("2023-05-01", "2025-08-30"))
    assert r.summary["dates"]["before"] == "2023-05-01" and r.summary["dates"]["source"]["after"] == "option"
    assert "2023-05-01" in r.plot().axes[0].get_title()
    r2 = detect_changes(folder / "before.tif", folder / "after.tif")
    assert r2.summary["dates"]["source"]["before"] != "option"  # read from the files
    for bad in ("2024-13-01,2025-01-01", "2025-06-01,2024-06-01", ("2024-06-01",), 5):
        with pytest.raises(ChangedetError, match="dates"):
            detect_changes(folder / "before.tif", folder / "after.tif", dates=bad)
    cli = [sys.executable, "-m", "changedet.cli", "detect", str(folder / "before.tif"), str(folder / "after.tif")]
    ok = subprocess.run([*cli, "--out", str(tmp_path / "a"), "--dates", "2023-05-01,2025-08-30", "--no-figures"],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert json.loads((tmp_path / "a" / "summary.json").read_text())["dates"]["after"] == "2025-08-30"
    bad = subprocess.run([*cli, "--out", str(tmp_path / "b"), "--dates", "June"], capture_output=True, text=True)
    assert bad.returncode == 2 and "dates" in bad.stderr and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_from_rgb_alone_vegetation_gain_is_an_area_that_now_looks_like_vegetation() -> None:
    """The 1 m sample's car park, where cars moved, is greener on average but grey: not vegetation
    gain (it was, before ``after_greenness``); the patches that grew green are.  The same with a
    tint on the after image (another camera), which moves every pixel's excess green."""
    import numpy as np

    pair = load_sample("hires_rgb")
    for gain in (None, (0.85, 1.15, 0.9)):
        after = pair.after if gain is None else pair.after.with_data(
            np.clip(pair.after.data.astype("float32") * np.array(gain, "float32")[:, None, None], 0, 255))
        # the classes of every area, vegetation gain and seasonal change included (left out of the mask)
        props = detect_changes(pair.before, after, vegetation_gain="keep", seasonal="keep").polygons.properties
        assert all(0.5 <= p["after_greenness"] for p in props if p["change_class"] == "vegetation_gain")
        greener_grey = [p for p in props if p["d_greenness"] > 0.05 and p["after_greenness"] < 0.5]
        # (the car park, a whole lot whose outline follows the edges it had, is a parcel that changed)
        assert greener_grey and {p["change_class"] for p in greener_grey} <= {"other", "new_construction", "seasonal"}
        assert max(p["area_m2"] for p in greener_grey) > 5000  # the car park itself
        assert any(p["change_class"] == "vegetation_gain" for p in props)


def test_from_rgb_alone_a_new_shadow_is_not_a_demolition() -> None:
    """The 1 m sample has no demolition: the dark strip beside a new block (its shadow, darker
    than the after image's darkest tenth) was "demolition"; it is ``other`` now."""
    pair = load_sample("hires_rgb")
    props = detect_changes(pair.before, pair.after).polygons.properties
    assert not [p for p in props if p["change_class"] == "demolition"]
    shadows = [p for p in props if p["d_brightness"] < -0.3 and p["after_brightness"] < 0.0]
    assert shadows and all(p["change_class"] == "other" for p in shadows)
