"""Seasonal change: a whole parcel that changed (its outline on edges the before image had) is its
own class, left out of the default mask; a plot cut into a field is not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from affine import Affine

from changedet.errors import InvalidParameterError
from changedet.pipeline import detect_changes
from changedet.raster import GeoRaster
from changedet import window

NAMES = ("B02", "B03", "B04", "B08")
T = Affine(10, 0, 500000, 0, -10, 6190000)

# reflectances (B02, B03, B04, B08) of a green field, a dry field and bare soil
GREEN = (400, 700, 500, 3500)
DRY = (700, 900, 1100, 2200)
SOIL = (1100, 1300, 1600, 2100)


def _fields(seed: int = 0) -> tuple[GeoRaster, GeoRaster, np.ndarray, np.ndarray]:
    """A 10 m scene of four fields; in the after image the top-left field is harvested whole
    (green to dry, its outline the field's own) and a plot is cleared inside the bottom-right
    field (green to bare soil, its outline new).  Returns both dates and the two changes' pixels."""
    rng = np.random.default_rng(seed)
    n = 160
    img = np.zeros((4, n, n), "float32")
    fields = {(0, 0): GREEN, (0, 1): DRY, (1, 0): DRY, (1, 1): GREEN}
    for (i, j), refl in fields.items():
        img[:, i * 80:(i + 1) * 80, j * 80:(j + 1) * 80] = np.array(refl, "float32")[:, None, None]
    before = img + rng.normal(0, 40, img.shape).astype("float32")
    after_img = img.copy()
    harvested = np.zeros((n, n), bool)
    harvested[:80, :80] = True
    after_img[:, harvested] = np.array(DRY, "float32")[:, None]
    plot = np.zeros((n, n), bool)
    plot[100:140, 95:145] = True
    after_img[:, plot] = np.array(SOIL, "float32")[:, None]
    after = after_img + rng.normal(0, 40, img.shape).astype("float32")
    return GeoRaster(before, T, "EPSG:32631", NAMES), GeoRaster(after, T, "EPSG:32631", NAMES), harvested, plot


def _browning(seed: int = 0) -> tuple[GeoRaster, GeoRaster, np.ndarray, np.ndarray]:
    """A 10 m scene of small fields (10 px, green or dry) around a large green one: in the after
    image a round patch of the large field dries, smoothly (no edge where the threshold will cut
    it), and a rectangular plot in it of about the same size is cleared (the same change of
    colour, with a sharp outline).  Returns both dates, the patch's core (mostly dry) and the plot."""
    rng = np.random.default_rng(seed)
    n = 200
    green, dry = (np.array(v, "float32") for v in (GREEN, DRY))
    small = rng.random((n // 10, n // 10)) < 0.5
    img = np.where(np.kron(small, np.ones((10, 10), bool))[None], dry[:, None, None], green[:, None, None])
    img[:, 40:160, 40:160] = green[:, None, None]
    yy, xx = np.mgrid[:n, :n]
    w = np.exp(-((yy - 80.0) ** 2 + (xx - 80.0) ** 2) / (2 * 16.0 ** 2)).astype("float32")
    after_img = img * (1 - w) + dry[:, None, None] * w
    plot = np.zeros((n, n), bool)
    plot[115:145, 110:145] = True
    after_img[:, plot] = dry[:, None]
    before = img + rng.normal(0, 40, img.shape).astype("float32")
    after = after_img + rng.normal(0, 40, img.shape).astype("float32")
    return (GeoRaster(before, T, "EPSG:32631", NAMES), GeoRaster(after, T, "EPSG:32631", NAMES), w > 0.6, plot)


def _class_at(result, where: np.ndarray) -> str | None:
    from changedet.objects import ChangePolygons, polygons_to_mask

    for g, p in zip(result.polygons.geometries, result.polygons.properties):
        m = polygons_to_mask(ChangePolygons((g,), (p,), result.grid.crs), result.grid)
        if (m & where).sum() > 0.5 * where.sum():
            return p["change_class"]
    return None


def test_a_whole_field_that_changed_is_seasonal_and_left_out_a_plot_cut_into_one_is_not() -> None:
    before, after, harvested, plot = _fields()
    kept = detect_changes(before, after, seasonal="keep")
    assert _class_at(kept, harvested) == "seasonal"
    assert _class_at(kept, plot) not in (None, "seasonal")
    props = {p["change_class"]: p for p in kept.polygons.properties}
    assert props["seasonal"][window.OUTLINE_KEY] >= 0.6  # its outline on the field's old edges
    assert min(p[window.OUTLINE_KEY] for p in kept.polygons.properties if p["change_class"] != "seasonal") < 0.6
    # by default left out of the mask and the areas, counted in the summary
    out = detect_changes(before, after)
    assert _class_at(out, harvested) is None and _class_at(out, plot) is not None
    assert (out.mask.data[0][harvested] == 0).mean() > 0.95
    left = out.summary["results"]["left_out"]["seasonal"]
    assert left["count"] == 1 and left["area_px"] == props["seasonal"]["area_px"]
    assert out.summary["parameters"]["seasonal_in_mask"] is False
    assert kept.summary["parameters"]["seasonal_in_mask"] is True
    assert out.n_changes == kept.n_changes - 1


def test_vegetation_lost_where_neither_date_has_an_edge_is_seasonal_a_cleared_plot_is_not() -> None:
    """Part of a field browning is cut out of a gradient by the threshold: its outline lies on no
    edge of either date.  A cleared plot's outline is sharp in the after image."""
    from changedet.objects import DIFFUSE_MIN_PX, DIFFUSE_OUTLINE_SHARE

    before, after, patch, plot = _browning()
    kept = detect_changes(before, after, seasonal="keep")
    assert _class_at(kept, patch) == "seasonal"
    assert _class_at(kept, plot) == "vegetation_loss"
    by_class = {p["change_class"]: p for p in kept.polygons.properties}
    browned, cleared = by_class["seasonal"], by_class["vegetation_loss"]
    assert browned["area_px"] >= DIFFUSE_MIN_PX and cleared["area_px"] >= DIFFUSE_MIN_PX
    assert browned[window.OUTLINE_EDGES_KEY] < DIFFUSE_OUTLINE_SHARE <= cleared[window.OUTLINE_EDGES_KEY]
    # neither follows an edge the before image had: the after image's edges tell them apart
    assert browned[window.OUTLINE_KEY] < 0.6 and cleared[window.OUTLINE_KEY] < 0.6
    out = detect_changes(before, after)
    assert _class_at(out, patch) is None and _class_at(out, plot) == "vegetation_loss"
    assert out.summary["results"]["left_out"]["seasonal"]["count"] == 1
    assert "edges_after" in out.summary["fit"] and out.summary["fit"]["edges_after"]["strong"] > 0


def test_the_share_follows_the_edges_not_the_radiometry() -> None:
    """A gain and offset on the after image, or on both, change neither the share nor the class."""
    before, after, harvested, _ = _fields(1)
    ref = detect_changes(before, after, seasonal="keep")
    brighter = detect_changes(before.with_data(before.data * 1.3 + 50), after.with_data(after.data * 0.8 + 100),
                              seasonal="keep")
    assert _class_at(brighter, harvested) == _class_at(ref, harvested) == "seasonal"


def test_re_thresholding_judges_the_new_outlines() -> None:
    before, after, harvested, plot = _fields(2)
    first = detect_changes(before, after)
    for thr in (first.threshold * 0.8, first.threshold * 1.2):
        again = first.rethreshold(thr)
        fresh = detect_changes(before, after, threshold=thr)
        assert again.summary["results"]["left_out"] == fresh.summary["results"]["left_out"]
        assert np.array_equal(again.mask.data, fresh.mask.data)
        for key in (window.OUTLINE_KEY, window.OUTLINE_EDGES_KEY):
            assert [p[key] for p in again.polygons.properties] == [p[key] for p in fresh.polygons.properties]


def test_a_window_gives_the_outline_the_whole_grid_gives() -> None:
    """The outline's layer on a window with a halo of EDGE_REACH_PX + 1 equals the whole grid's at its core."""
    before, _, harvested, plot = _fields(3)
    area = harvested | plot
    stats = window.edge_statistics(before.data, np.ones(area.shape, bool))
    whole = window.outline_edge_layers(area, before.data, stats)[window.OUTLINE_KEY]
    h = window.EDGE_REACH_PX + 1
    r0, r1, c0, c1 = 50, 120, 60, 130
    core = (slice(h, h + r1 - r0), slice(h, h + c1 - c0))
    part = window.outline_edge_layers(area[r0 - h:r1 + h, c0 - h:c1 + h], before.data[:, r0 - h:r1 + h, c0 - h:c1 + h],
                                      stats, core=core)[window.OUTLINE_KEY]
    expect = np.full(area.shape, np.nan, np.float32)
    expect[area] = whole
    got = expect[r0:r1, c0:c1][area[r0:r1, c0:c1]]
    np.testing.assert_array_equal(part, got)


def test_a_window_gives_the_edges_of_either_date_the_whole_grid_gives() -> None:
    before, after, patch, plot = _browning(1)
    area = patch | plot
    ok = np.ones(area.shape, bool)
    sb, sa = window.edge_statistics(before.data, ok), window.edge_statistics(after.data, ok)
    whole = window.outline_edge_layers(area, before.data, sb, after=after.data, after_stats=sa)
    h = window.EDGE_REACH_PX + 1
    r0, r1, c0, c1 = 50, 150, 50, 150
    core = (slice(h, h + r1 - r0), slice(h, h + c1 - c0))
    win = (slice(r0 - h, r1 + h), slice(c0 - h, c1 + h))
    part = window.outline_edge_layers(area[win], before.data[(slice(None), *win)], sb,
                                      after=after.data[(slice(None), *win)], after_stats=sa, core=core)
    for key in (window.OUTLINE_KEY, window.OUTLINE_EDGES_KEY):
        expect = np.full(area.shape, np.nan, np.float32)
        expect[area] = whole[key]
        np.testing.assert_array_equal(part[key], expect[r0:r1, c0:c1][area[r0:r1, c0:c1]])
    assert np.nanmean(whole[window.OUTLINE_EDGES_KEY]) >= np.nanmean(whole[window.OUTLINE_KEY])


def test_a_bad_seasonal_option_is_named() -> None:
    before, after, _, _ = _fields()
    with pytest.raises(InvalidParameterError, match="seasonal must be one of"):
        detect_changes(before, after, seasonal="sometimes")


def test_the_report_says_what_was_left_out(tmp_path: Path) -> None:
    from changedet.data import load_sample

    hires = load_sample("hires_rgb")
    out = detect_changes(hires.before, hires.after)
    out.save(tmp_path / "out", figures=False)
    page = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert out.summary["results"]["left_out"]["seasonal"]["count"] == 1
    assert "Left out as parcels changing with the season" in page
    assert "1 area of seasonal change (5,487 m²; <code>--seasonal keep</code> keeps them)" in page
    kept = detect_changes(hires.before, hires.after, seasonal="keep")
    kept.save(tmp_path / "kept", figures=False)
    assert "Left out as whole parcels" not in (tmp_path / "kept" / "report.html").read_text(encoding="utf-8")


def test_dates_of_different_seasons_warn_that_vegetation_change_may_be_the_season(tmp_path: Path) -> None:
    """Dates 167 days apart in the year, vegetation changed: the summary records the gap, and the
    command's output and the report say the vegetation classes may be the season's; dates of the
    same season, or unknown, say nothing."""
    import subprocess
    import sys

    from changedet import _dates
    from changedet.io import write_raster

    before, after, _, _ = _fields()
    apart = detect_changes(before, after, dates=("2016-03-15", "2017-08-29"))
    assert apart.summary["dates"]["days_apart_in_year"] == 167
    caveat = _dates.season_caveat(apart.summary)
    assert caveat is not None and "167 days apart in the year (March and August)" in caveat
    same = detect_changes(before, after, dates=("2016-03-15", "2017-03-29"))
    assert same.summary["dates"]["days_apart_in_year"] == 14 and _dates.season_caveat(same.summary) is None
    unknown = detect_changes(before, after)
    assert unknown.summary["dates"]["days_apart_in_year"] is None and _dates.season_caveat(unknown.summary) is None
    # through the command: its output and the report
    b_tif, a_tif = tmp_path / "before.tif", tmp_path / "after.tif"
    write_raster(before, b_tif)
    write_raster(after, a_tif)
    cli = [sys.executable, "-m", "changedet.cli", "detect", str(b_tif), str(a_tif)]
    run = subprocess.run([*cli, "--out", str(tmp_path / "apart"), "--dates", "2016-03-15,2017-08-29"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "note: The dates are 167 days apart in the year" in run.stdout
    page = (tmp_path / "apart" / "report.html").read_text(encoding="utf-8")
    assert "167 days apart in the year (March and August)" in page
    run = subprocess.run([*cli, "--out", str(tmp_path / "same"), "--dates", "2016-03-15,2017-03-29", "--no-figures"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "days apart in the year" not in run.stdout
