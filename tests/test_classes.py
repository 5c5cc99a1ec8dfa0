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
