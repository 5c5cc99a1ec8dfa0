"""The notebook views: the swipe shows each date on its side of the split; a click on a
changed area zooms both panels to it and gives its attributes."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine

from changedet.errors import ChangedetError
from changedet.explore import AreaExplorer, SwipeView
from changedet.pipeline import detect_changes
from changedet.raster import GeoRaster


def _pair() -> tuple[GeoRaster, GeoRaster]:
    rng = np.random.default_rng(3)
    b = rng.uniform(0.2, 0.3, (3, 80, 120))
    a = b.copy()
    a[:, 10:25, 20:40] = 0.9   # area 1
    a[:, 50:70, 80:110] = 0.05  # area 2
    t = Affine(2.0, 0, 500_000, 0, -2.0, 6_200_000)
    return GeoRaster(b, t, "EPSG:32639", ("red", "green", "blue")), GeoRaster(a, t, "EPSG:32639", ("red", "green", "blue"))


def test_swipe_shows_before_left_and_after_right_of_the_split() -> None:
    rng = np.random.default_rng(0)
    b = rng.uniform(0.0, 1.0, (3, 60, 100))
    t = Affine(2.0, 0, 500_000, 0, -2.0, 6_200_000)
    before = GeoRaster(b, t, "EPSG:32639", ("red", "green", "blue"))
    after = before.with_data(1.0 - b)  # every pixel changed: the after date is the negative
    view = SwipeView(before, after, position=0.5)
    for position in (0.25, 0.6):
        view.set_position(position)
        shown = view.shown()[..., 0].astype(float)
        split = view.split_column
        assert split == round(position * 100)
        left = np.corrcoef(shown[:, :split].ravel(), b[0, :, :split].ravel())[0, 1]
        right = np.corrcoef(shown[:, split:].ravel(), b[0, :, split:].ravel())[0, 1]
        assert left > 0.95 and right < -0.95, (left, right)
    with pytest.raises(ChangedetError, match="position"):
        view.set_position(1.5)


def test_a_click_on_an_area_zooms_to_it_and_a_click_beside_resets() -> None:
    before, after = _pair()
    result = detect_changes(before, after)
    ex = AreaExplorer(result)
    full = ex.axes[0].get_xlim()
    geoms = result.polygons.geometries
    assert len(geoms) == 2
    for k, g in enumerate(geoms):
        p = g.representative_point()
        props = ex.click(p.x, p.y)
        assert props is not None and ex.selected == k
        assert props["id"] == result.polygons.properties[k]["id"]
        x0, x1 = ex.axes[0].get_xlim()
        minx, miny, maxx, maxy = g.bounds
        assert x0 <= minx and maxx <= x1 and (x1 - x0) < (full[1] - full[0])  # zoomed in, area in view
        y0, y1 = sorted(ex.axes[1].get_ylim())  # both panels share the view
        assert y0 <= miny and maxy <= y1
    assert ex.click(500_001.0, 6_199_999.0) is None  # a corner without change
    assert ex.selected is None and ex.axes[0].get_xlim() == full
    with pytest.raises(ChangedetError, match="index"):
        ex.select(7)


def test_widgets_build_headless() -> None:
    w = pytest.importorskip("ipywidgets")
    before, after = _pair()
    box = SwipeView(before, after).widget()
    slider = box.children[0]
    assert isinstance(slider, w.FloatSlider)
    result = detect_changes(before, after)
    ex = AreaExplorer(result)
    panel = ex.widget()
    ex.select(0)
    assert "change_class" in panel.children[-1].value


def test_static_views_are_images_that_follow_the_figure() -> None:
    """Under a static backend the widgets show the figure as an Image (an Output capture would
    wait for a front end, stalling a headless notebook), redrawn after each change."""
    w = pytest.importorskip("ipywidgets")
    from changedet.plot import ExamplePicker

    before, after = _pair()
    result = detect_changes(before, after)
    picker = ExamplePicker(result)
    box = picker.widget()
    view = box.children[1]
    assert isinstance(view, w.Image) and view.value[:8] == b"\x89PNG\r\n\x1a\n"
    first = view.value
    picker.add(500_030.0, 6_199_970.0, True)
    assert view.value != first
    ex = AreaExplorer(result)
    panel = ex.widget()
    shown = panel.children[0].value
    ex.select(0)
    assert panel.children[0].value != shown
