"""Tests of changedet.areas: the one area parser, lon/lat areas with a surface, and their grids."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from rasterio.warp import transform_bounds
from shapely.geometry import Point, box

from changedet import areas, sources
from changedet.areas import Area, area_grid, parse_aoi, parse_area, utm_crs
from changedet.errors import InvalidParameterError

TRI = {"type": "Polygon", "coordinates": [[[52.0, 55.78], [52.1, 55.78], [52.05, 55.83], [52.0, 55.78]]]}


# --------------------------------------------------------------------------- one parser
@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("52.1,55.78,52.0,55.83", r"must have minx < maxx and miny < maxy; got \[52\.1, 55\.78, 52\.0, 55\.83\]"),
        ("55.78,252.0,55.83,253", r"must be in lon/lat degrees \(WGS84\)"),
        ("a,b,c,d", r"'a,b,c,d' must be 'minx,miny,maxx,maxy' in lon/lat degrees"),
        ("52.0,55.78,52.1", r"'52\.0,55\.78,52\.1' is neither an existing GeoJSON file nor 'minx,miny,maxx,maxy'"),
        ("nan,55.78,52.1,55.83", "needs 4 finite numbers"),
    ],
)
def test_fetch_and_detect_refuse_the_same_text(text: str, match: str) -> None:
    """`fetch --bbox` and `detect --aoi` go through one parser: the same text, the same refusal."""
    with pytest.raises(InvalidParameterError, match=r"^aoi .*" + match):
        parse_aoi(text)
    with pytest.raises(InvalidParameterError, match=r"^bbox .*" + match):
        sources.parse_bbox(text)
    with pytest.raises(InvalidParameterError, match=r"^area .*" + match):
        parse_area(text)


def test_messages_name_the_parameter_the_value_and_the_fix() -> None:
    with pytest.raises(InvalidParameterError) as err:
        parse_aoi("52.1,55.78,52.0,55.83", name="bbox")
    msg = str(err.value)
    assert msg.startswith("bbox must have minx < maxx")  # the parameter, once
    assert "[52.1, 55.78, 52.0, 55.83]" in msg  # the value
    assert "e.g. '52.0,55.78,52.1,55.83'" in msg  # the fix
    with pytest.raises(InvalidParameterError, match=r"^bbox_or_geojson bbox needs 4 numbers .* got 3"):
        sources.search_scenes((52.0, 55.78, 52.1), "2024-06-01", stac_url="http://127.0.0.1:9")


def test_parse_aoi_forms(tmp_path: Path) -> None:
    assert parse_aoi(" 52.0, 55.78 ,52.1,55.83").bounds == (52.0, 55.78, 52.1, 55.83)
    assert parse_aoi(json.dumps(TRI)).equals(parse_aoi(TRI))  # GeoJSON text
    path = tmp_path / "area.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": TRI},
        {"type": "Feature", "properties": {}, "geometry": None}]}))
    assert parse_aoi(path).equals(parse_aoi(TRI)) and parse_aoi(str(path)).equals(parse_aoi(TRI))
    with pytest.raises(InvalidParameterError, match=r"^aoi text is not valid GeoJSON"):
        parse_aoi("{not json")
    with pytest.raises(InvalidParameterError, match=r"^aoi must be a bbox .* got int '5'"):
        parse_aoi(5)
    with pytest.raises(InvalidParameterError, match=r"^aoi dict is not a GeoJSON geometry.*check its type"):
        parse_aoi({"type": "Polygon", "coordinates": "nonsense"})


# --------------------------------------------------------------------------- areas with a surface
def test_parse_area_from_the_one_parser() -> None:
    a = parse_area("52.0,55.78,52.1,55.83")
    assert a == Area((52.0, 55.78, 52.1, 55.83), box(52.0, 55.78, 52.1, 55.83), True)
    assert a.geometry.equals(parse_aoi("52.0,55.78,52.1,55.83"))
    assert a.centroid == pytest.approx((52.05, 55.805)) and a.describe() == "bbox 52.0,55.78,52.1,55.83"
    t = parse_area({"type": "Feature", "geometry": TRI, "properties": {}})
    assert t.bbox == (52.0, 55.78, 52.1, 55.83) and not t.is_box
    assert t.describe() == "polygon within bbox 52.0,55.78,52.1,55.83"
    record = json.loads(json.dumps(t.to_dict()))  # JSON as fetch.json holds it
    assert record["bbox"] == [52.0, 55.78, 52.1, 55.83] and record["geometry"]["type"] == "Polygon"
    assert parse_area(t) is t and sources.parse_area is parse_area and sources.Area is Area
    with pytest.raises(InvalidParameterError, match=r"^area GeoJSON Point has no surface .* give a polygon or a bbox"):
        parse_area({"type": "Point", "coordinates": [52.0, 55.8]})
    with pytest.raises(InvalidParameterError, match=r"^area \(499900\.0, 5999900\.0, .* is outside lon -180\.\.180"):
        parse_area(Point(500000, 6000000).buffer(100))
    with pytest.raises(InvalidParameterError, match=r"^area is None"):
        parse_area(None)


def test_area_grid_in_utm() -> None:
    assert utm_crs(52.05, 55.8).to_epsg() == 32639 and utm_crs(-70.6, -33.4).to_epsg() == 32719
    assert utm_crs(180.0, 0.0).to_epsg() == 32660 and utm_crs(-180.0, 0.0).to_epsg() == 32601
    g = area_grid((53.99, 55.8, 54.01, 55.81), resolution=10)
    assert g.crs.to_epsg() == 32640  # the zone of the area's centre
    assert g.transform.c % 10 == 0 and g.transform.f % 10 == 0 and g.res == (10.0, 10.0)
    g30 = area_grid((52.0, 55.78, 52.1, 55.83), resolution=30, crs="EPSG:32639")
    left, bottom, right, top = transform_bounds("EPSG:4326", "EPSG:32639", 52.0, 55.78, 52.1, 55.83, densify_pts=21)
    gl, gb, gr, gt = g30.bounds
    assert g30.transform.c % 30 == 0 and g30.transform.f % 30 == 0
    # covers the area, snapped outward by less than one pixel on each side
    assert 0 <= left - gl < 30 and 0 <= gt - top < 30 and 0 <= gr - right < 30 and 0 <= bottom - gb < 30
    with pytest.raises(InvalidParameterError, match=r"resolution must be a positive number of metres, got 0"):
        area_grid((52.0, 55.78, 52.1, 55.83), resolution=0)


# --------------------------------------------------------------------------- module map
def test_sources_modules_import_down_the_pipeline_only() -> None:
    """No stage below sources imports it; every private module of sources imports alone (no cycle)."""
    root = Path(areas.__file__).parent
    private = sorted(p.stem for p in root.glob("_fetch*.py")) + sorted(p.stem for p in root.glob("_stac*.py"))
    assert {"_fetch_cache", "_fetch_dates", "_fetch_errors", "_fetch_read", "_stac_items", "_stac_search"} <= set(private)
    for name in ["areas", "masks", *private]:
        text = (root / f"{name}.py").read_text(encoding="utf-8")
        assert "import sources" not in text and "from .sources" not in text, name
    code = "; ".join(f"import changedet.{m}" for m in reversed(private))
    for first in private:  # each one first in a fresh interpreter: an import cycle fails here
        subprocess.run([sys.executable, "-c", f"import changedet.{first}; {code}"], check=True)
    for name in sources.__all__:
        assert getattr(sources, name) is not None, name
    for cls in (sources.Candidate, sources.DateRange, sources.NoSceneFoundError, sources.DownloadError,
                sources.CatalogueError, sources.CloudyAreaWarning):
        assert cls.__module__ == "changedet.sources" and getattr(sources, cls.__name__) is cls
