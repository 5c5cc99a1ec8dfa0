"""Look closer in a notebook: a before/after swipe slider and a click-to-zoom view of changed areas.

Both views are matplotlib figures that work headless (Agg: call their methods and save
the figure) and become interactive in JupyterLab with ``%matplotlib widget`` (ipympl)
and ipywidgets: :meth:`SwipeView.widget` adds a slider that moves the split between the
dates; :meth:`AreaExplorer.widget` makes a click on a changed area zoom both dates to it
and list its attributes.  No basemap and no network: the images are the two dates.
"""

from __future__ import annotations

import html
from typing import Any, Sequence

import numpy as np

from .errors import InvalidParameterError
from .plot import (
    _HALO,
    _TEXT_HALO,
    _as_raster,
    _backend_is_interactive,
    _check_polygons,
    _common_limits,
    _display_rgb,
    _draw_polygons,
    _Figure,
    _figure_widget,
    _height_over_width,
    _map_axes,
    _refresh,
    _rings,
    _show_rgb,
    _to_bytes,
)
from .raster import GeoRaster, check_same_grid  # noqa: F401 - GeoRaster: the doctests

__all__ = ["SwipeView", "AreaExplorer"]


def _new_figure(size: tuple[float, float]) -> Any:
    """A figure whose canvas is live under an interactive backend (ipympl), else a plain one."""
    if _backend_is_interactive():
        from matplotlib import pyplot

        with pyplot.ioff():  # shown by widget(), not again at the end of the cell
            return pyplot.figure(FigureClass=_Figure, figsize=size, layout="constrained")
    return _Figure(figsize=size, layout="constrained")


def _ipywidgets() -> Any:
    try:
        import ipywidgets
    except ImportError:
        raise ImportError("the interactive views need ipywidgets (and ipympl for clicks): "
                          "pip install 'changedet[notebooks]'") from None
    return ipywidgets


class SwipeView:
    """Before left of a vertical split, after right of it; the split moves with a slider.

    Both dates get one common stretch, so a colour difference on screen is a difference
    on the ground.

    Parameters
    ----------
    before, after : GeoRaster
        The two dates on one grid (or anything with ``before`` and ``after``: a
        ChangeResult, a SamplePair).
    position : float
        Where the split starts, as a fraction of the width (0 < position < 1).
    labels : (str, str)
        Names written on each side of the split.
    bands, percentiles
        The true-colour bands and the stretch, as for :func:`changedet.plot.rgb_composite`.

    Examples
    --------
    >>> from affine import Affine
    >>> before = GeoRaster(np.zeros((3, 20, 40)), Affine.identity())
    >>> view = SwipeView(before, before.with_data(np.ones((3, 20, 40))), position=0.25)
    >>> view.split_column, view.set_position(0.5), view.split_column
    (10, None, 20)
    """

    def __init__(self, before: Any, after: Any = None, *, position: float = 0.5,
                 labels: tuple[str, str] = ("before", "after"), bands: Sequence[str] | None = None,
                 percentiles: tuple[float, float] = (2, 98)) -> None:
        if after is None and hasattr(before, "before") and hasattr(before, "after"):
            before, after = before.before, before.after
        before, after = _as_raster(before, "before"), _as_raster(after, "after")
        check_same_grid(before, after)
        if len(labels) != 2:
            raise InvalidParameterError(f"labels must be two names (before, after); got {labels!r}")
        limits = _common_limits((before, after), bands, percentiles)
        rgb_b, grid = _display_rgb(before, bands=bands, percentiles=percentiles, limits=limits)
        rgb_a, _ = _display_rgb(after, bands=bands, percentiles=percentiles, limits=limits)
        self._rgb = (_to_bytes(rgb_b), _to_bytes(rgb_a))
        self.grid = grid
        self.labels = tuple(labels)
        self.figure = _new_figure((8.0, min(8.0 * _height_over_width(grid), 9.0) + 0.6))
        self.ax = self.figure.subplots()
        self._image = None
        self._line = None
        self._texts: list[Any] = []
        self.position = 0.5
        self.split_column = 0
        self.set_position(position)
        _map_axes(self.ax, grid, None)

    def set_position(self, position: float) -> None:
        """Move the split.

        Parameters
        ----------
        position : float
            Fraction of the width (0 < position < 1) left of which the before image shows.
        """
        if isinstance(position, bool) or not isinstance(position, (int, float)) or not 0 < position < 1:
            raise InvalidParameterError(f"position must be a number between 0 and 1 (fraction of the width), "
                                        f"got {position!r}")
        rgb_b, rgb_a = self._rgb
        split = int(round(position * rgb_b.shape[1]))
        shown = np.concatenate([rgb_b[:, :split], rgb_a[:, split:]], axis=1)
        x0, x1 = self.grid.bounds[0], self.grid.bounds[2]
        x_split = x0 + (x1 - x0) * split / rgb_b.shape[1]
        if self._image is None:
            _show_rgb(self.ax, shown, self.grid)
            self._image = self.ax.images[-1]
            self._line = self.ax.axvline(x_split, color="white", lw=2.0, path_effects=_HALO)
        else:
            self._image.set_data(shown)
            self._line.set_xdata([x_split, x_split])
            for t in self._texts:
                t.remove()
        self._texts = [
            self.ax.text(x, 0.97, text, transform=self.ax.transAxes, ha=ha, va="top", fontsize=10,
                         fontweight="bold", path_effects=_TEXT_HALO)
            for x, ha, text in ((position - 0.01, "right", f"\u25c0 {self.labels[0]}"),
                                (position + 0.01, "left", f"{self.labels[1]} \u25b6"))
        ]
        self.position = float(position)
        self.split_column = split
        self.figure.canvas.draw_idle()

    def shown(self) -> np.ndarray:
        """The image on screen now.

        Returns
        -------
        (rows, cols, 3) ndarray of uint8
            Before left of the split, after right of it (decimated like the figure).
        """
        return np.asarray(self._image.get_array())

    def widget(self) -> Any:
        """A slider above the figure (ipywidgets); moving it moves the split.

        Returns
        -------
        ipywidgets.VBox
        """
        w = _ipywidgets()
        slider = w.FloatSlider(value=self.position, min=0.01, max=0.99, step=0.01, description="split",
                               continuous_update=True, readout_format=".2f")
        view = _figure_widget(self.figure)

        def moved(change: Any) -> None:
            self.set_position(float(change["new"]))
            _refresh(view, self.figure)

        slider.observe(moved, names="value")
        return w.VBox([slider, view])

    def _repr_png_(self) -> bytes:
        return self.figure._repr_png_()


class AreaExplorer:
    """Before | after with the changed areas outlined; a click on an area zooms to it.

    A click inside a changed area (either panel) zooms both panels to it, outlines it in
    white and lists its attributes (class, area, score, centroid ...); a click outside
    every area, or :meth:`reset`, shows the whole grid again.  Headless, :meth:`select`
    and :meth:`click` do what a click does.

    Parameters
    ----------
    result : ChangeResult
        Anything with ``before``, ``after`` and ``polygons`` on one grid.
    margin : float
        Space around a selected area, as a fraction of its larger side (at least 20 pixels).
    labels, bands, percentiles
        Panel titles and the true-colour stretch (one stretch for both dates).

    Examples
    --------
    >>> from affine import Affine
    >>> from changedet.pipeline import detect_changes
    >>> b = np.full((3, 60, 60), 0.2); a = b.copy(); a[:, 20:30, 30:45] = 0.9
    >>> r = detect_changes(GeoRaster(b, Affine.identity()), GeoRaster(a, Affine.identity()))
    >>> ex = AreaExplorer(r)
    >>> ex.click(35.0, 25.0)["id"], [round(v) for v in ex.axes[0].get_xlim()]
    (1, [5, 60])
    """

    def __init__(self, result: Any, *, margin: float = 0.5, labels: tuple[str, str] = ("before", "after"),
                 bands: Sequence[str] | None = None, percentiles: tuple[float, float] = (2, 98)) -> None:
        if not all(hasattr(result, k) for k in ("before", "after", "polygons")):
            raise InvalidParameterError(f"result must be a ChangeResult (before, after, polygons); got {type(result).__name__}")
        if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not margin >= 0:
            raise InvalidParameterError(f"margin must be a number >= 0 (fraction of the area's size), got {margin!r}")
        before, after = _as_raster(result.before, "before"), _as_raster(result.after, "after")
        check_same_grid(before, after)
        self.grid = after.grid
        self.result = result
        self.margin = float(margin)
        self._geoms, self._props = _check_polygons(result.polygons, self.grid)
        self.figure = _new_figure((10.0, min(4.8 * _height_over_width(self.grid), 9.0) + 1.4))
        self.axes = tuple(self.figure.subplots(1, 2, sharex=True, sharey=True))
        limits = _common_limits((before, after), bands, percentiles)
        for ax, raster, label in zip(self.axes, (before, after), labels):
            rgb, grid = _display_rgb(raster, bands=bands, percentiles=percentiles, limits=limits)
            _show_rgb(ax, _to_bytes(rgb), grid)
            _map_axes(ax, self.grid, label)
            _draw_polygons(ax, result.polygons, self.grid, None)
        self._full = (self.axes[0].get_xlim(), self.axes[0].get_ylim())
        self._highlight: list[Any] = []
        self._info = self.figure.text(0.5, 0.005, "click a changed area to zoom to it", ha="center", va="bottom",
                                      fontsize=9)
        self.selected: int | None = None
        self._html: Any = None
        self._view: Any = None
        self._cid = self.figure.canvas.mpl_connect("button_press_event", self._on_click)
        self._tree = None
        if self._geoms:
            import shapely

            self._tree = shapely.STRtree(list(self._geoms))

    # -- queries ------------------------------------------------------------------------------

    def area_at(self, x: float, y: float) -> int | None:
        """The index (0-based, in ``result.polygons``) of the changed area holding a map point.

        Parameters
        ----------
        x, y : float
            Map coordinates of the grid (pixel coordinates for a grid without a CRS).

        Returns
        -------
        int or None
            None where no area holds the point.
        """
        if self._tree is None:
            return None
        import shapely

        hits = self._tree.query(shapely.Point(float(x), float(y)), predicate="intersects")
        return int(min(hits)) if len(hits) else None

    def attributes(self, index: int) -> dict[str, Any]:
        """The attributes of one changed area (as in ``changes.geojson``).

        Parameters
        ----------
        index : int
            0-based index in ``result.polygons``.

        Returns
        -------
        dict
        """
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < len(self._geoms):
            raise InvalidParameterError(f"index must be an integer from 0 to {len(self._geoms) - 1}, got {index!r}")
        return dict(self._props[int(index)])

    # -- actions ------------------------------------------------------------------------------

    def select(self, index: int) -> dict[str, Any]:
        """Zoom both panels to one changed area, outline it and show its attributes.

        Parameters
        ----------
        index : int
            0-based index in ``result.polygons``.

        Returns
        -------
        dict
            The area's attributes.
        """
        props = self.attributes(index)
        minx, miny, maxx, maxy = self._geoms[int(index)].bounds
        px = abs(self.grid.transform.a)
        pad = max(self.margin * max(maxx - minx, maxy - miny), 20 * px)
        # a square view around the area, kept inside the image
        gx0, gx1 = sorted(self._full[0])
        gy0, gy1 = sorted(self._full[1])
        half = min(max(maxx - minx, maxy - miny) / 2 + pad, (gx1 - gx0) / 2, (gy1 - gy0) / 2)
        cx = min(max((minx + maxx) / 2, gx0 + half), gx1 - half)
        cy = min(max((miny + maxy) / 2, gy0 + half), gy1 - half)
        ax = self.axes[0]
        ax.set_xlim(cx - half, cx + half)
        flipped = self._full[1][0] > self._full[1][1]  # a pixel grid has y down
        ax.set_ylim((cy + half, cy - half) if flipped else (cy - half, cy + half))
        for artist in self._highlight:
            artist.remove()
        self._highlight = []
        for a in self.axes:
            for ring in _rings(self._geoms[int(index)]):
                self._highlight += a.plot(ring[:, 0], ring[:, 1], color="white", lw=2.2, path_effects=_HALO)
        self.selected = int(index)
        self._info.set_text(self._describe(props))
        if self._html is not None:
            self._html.value = self._table(props)
        self.figure.canvas.draw_idle()
        if self._view is not None:
            _refresh(self._view, self.figure)
        return props

    def click(self, x: float, y: float) -> dict[str, Any] | None:
        """What a click at a map point does: select the area there, else show everything.

        Parameters
        ----------
        x, y : float
            Map coordinates.

        Returns
        -------
        dict or None
            The selected area's attributes, None where no area holds the point.
        """
        index = self.area_at(x, y)
        if index is None:
            self.reset()
            return None
        return self.select(index)

    def reset(self) -> None:
        """Show the whole grid and no selection."""
        self.axes[0].set_xlim(*self._full[0])
        self.axes[0].set_ylim(*self._full[1])
        for artist in self._highlight:
            artist.remove()
        self._highlight = []
        self.selected = None
        self._info.set_text("click a changed area to zoom to it")
        if self._html is not None:
            self._html.value = ""
        self.figure.canvas.draw_idle()
        if self._view is not None:
            _refresh(self._view, self.figure)

    def _on_click(self, event: Any) -> None:
        if event.inaxes not in self.axes or event.xdata is None or event.button != 1:
            return
        toolbar = getattr(self.figure.canvas, "toolbar", None)
        if toolbar is not None and str(getattr(toolbar, "mode", "")):  # zooming or panning
            return
        self.click(event.xdata, event.ydata)

    # -- text ---------------------------------------------------------------------------------

    @staticmethod
    def _describe(props: dict[str, Any]) -> str:
        parts = [f"area {props.get('id', '?')}: {str(props.get('change_class', 'change')).replace('_', ' ')}"]
        if isinstance(props.get("area_m2"), (int, float)):
            a = float(props["area_m2"])
            parts.append(f"{a / 1e4:.2f} ha" if a >= 1e4 else f"{a:,.0f} m\u00b2")
        elif isinstance(props.get("area_px"), (int, float)):
            parts.append(f"{int(props['area_px'])} px")
        if isinstance(props.get("mean_score"), (int, float)):
            parts.append(f"mean score {float(props['mean_score']):.2f}")
        return ", ".join(parts)

    @staticmethod
    def _table(props: dict[str, Any]) -> str:
        rows = "".join(
            f"<tr><th style='text-align:left;padding-right:1em'>{html.escape(str(k))}</th>"
            f"<td>{html.escape(f'{v:.4g}' if isinstance(v, float) else str(v))}</td></tr>"
            for k, v in props.items()
        )
        return f"<table>{rows}</table>"

    def widget(self) -> Any:
        """The figure, an attribute table of the selected area and a Reset button (ipywidgets).

        Returns
        -------
        ipywidgets.VBox
        """
        w = _ipywidgets()
        self._html = w.HTML(self._table(self.attributes(self.selected)) if self.selected is not None else "")
        reset = w.Button(description="Show all")
        self._view = _figure_widget(self.figure)

        def show_all(_: Any) -> None:
            self.reset()

        reset.on_click(show_all)
        return w.VBox([self._view, w.HBox([reset]), self._html])

    def _repr_png_(self) -> bytes:
        return self.figure._repr_png_()
