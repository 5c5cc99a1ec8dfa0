"""The overview figure drawn by a second process, started before the images are read.

Drawing ``overview.png`` in the command's own process costs the import of matplotlib
(about 0.2 s) and the drawing itself after the change map is ready.  ``changedet
detect`` forks a helper at its start instead: it imports matplotlib on the other core
while the pair is read.  Sent the two images once they are on the analysis grid
(:meth:`FigureProcess.prepare_overview`), it draws the figure's image panels while the pair
is scored; sent the changes (:meth:`FigureProcess.draw_overview`), it draws the outlines and
legend over them and writes the PNG while the command writes the rasters and polygons.  The
figure is the one :func:`changedet.plot.plot_overview` draws in process (the same functions,
the same arguments; tests compare the bytes).

Only the command line starts a helper (it owns its process), and only on Linux; a result
saved from Python draws in process.  Whenever the helper cannot serve (it died, it raised, the arguments are
too large to send), the figure is drawn in process, so the outputs never depend on it.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["FigureProcess", "current", "started"]

#: Above this many bytes of image data the figure is drawn in process: sending it would
#: cost about what drawing costs.
MAX_SEND_BYTES = 64 << 20

_CURRENT: FigureProcess | None = None


def current() -> FigureProcess | None:
    """The helper this process started and that is still serving, if any."""
    return _CURRENT if _CURRENT is not None and _CURRENT.alive() else None


class FigureProcess:
    """A forked process that imports matplotlib now and draws overview figures when sent them."""

    def __init__(self, figures: int | None = None) -> None:
        import multiprocessing

        ctx = multiprocessing.get_context("fork")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child, self._conn), name="changedet-figures", daemon=True)
        self._proc.start()
        child.close()
        self._busy = False
        self._base: dict[str, Any] | None = None  # the arguments of the figure prepared, if any
        self._sender: threading.Thread | None = None
        #: Whether the last figure was drawn over a prepared one (for the tests).
        self.used_prepared = False
        self._figures_left = figures  # after the last, the helper is let go (it exits meanwhile)

    def alive(self) -> bool:
        return self._proc.is_alive() and not self._conn.closed

    def expect_overview(self) -> None:
        """Tell the helper the images of an overview are coming (an in-memory run has begun):
        it skips its warm-up figure, which would hold up drawing them when they come just
        after its wait for them (0.25 s) has ended.  A small message: it never blocks."""
        if self._busy or not self.alive() or self._sender is not None:
            return
        try:
            self._conn.send_bytes(pickle.dumps(("expect", None), protocol=pickle.HIGHEST_PROTOCOL))
        except OSError:  # the helper is gone: the figure is drawn in process
            pass

    def prepare_overview(self, kwargs: dict[str, Any]) -> bool:
        """Send the images of an overview before its changes are known: the helper draws its
        image panels (:func:`changedet.plot._overview_base`) while the pair is scored.

        ``kwargs`` are those of :func:`changedet.plot.plot_overview` without the changes
        (``before``, ``after``, ``labels``, ``pixel_size_m``, ...).  A later
        :meth:`draw_overview` with the same ones (the images compared by value) only sends
        the changes.  False when it cannot be sent; nothing is answered.
        """
        if self._busy or not self.alive() or self._base is not None or _nbytes(kwargs) > MAX_SEND_BYTES:
            return False
        try:
            payload = pickle.dumps(("base", kwargs), protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError):
            return False
        # written by a thread: the helper may still be importing matplotlib, and a pipe holds
        # 64 KiB; the scoring goes on meanwhile (the write frees the GIL)
        self._sender = threading.Thread(target=self._send_quietly, args=(payload,), name="changedet-figure-send",
                                        daemon=True)
        self._sender.start()
        self._base = kwargs
        return True

    def _send_quietly(self, payload: bytes) -> None:
        try:
            self._conn.send_bytes(payload)
        except OSError:  # the helper is gone: the figure is drawn in process
            pass

    def _sent(self) -> None:
        """Wait for the images being written to the helper, if they are."""
        if self._sender is not None:
            self._sender.join()
            self._sender = None

    def _prepared_for(self, kwargs: dict[str, Any]) -> dict[str, Any] | None:
        """The changes of ``kwargs`` alone when the prepared figure has all the rest."""
        import numpy as np

        base = self._base
        if base is None:
            return None
        defaults = {"labels": ("before", "after"), "title": None, "bands": None, "percentiles": (2, 98),
                    "pixel_size_m": None}
        for key in defaults:
            if kwargs.get(key, defaults[key]) != base.get(key, defaults[key]):
                return None
        for key in ("before", "after"):
            a, b = kwargs.get(key), base.get(key)
            if a is None or b is None or not (a is b or (
                    a.shape == b.shape and a.transform == b.transform and a.crs == b.crs
                    and tuple(a.band_names) == tuple(b.band_names) and np.array_equal(a.data, b.data, equal_nan=True))):
                return None
        if kwargs.get("polygons") is None and kwargs.get("mask") is None:
            return None  # two panels: not the figure prepared
        return {k: kwargs.get(k) for k in ("polygons", "mask", "class_colors", "structures")}

    def draw_overview(self, kwargs: dict[str, Any], path: Path, *, embed_budget: int | None = None) -> bool:
        """Send the arguments of :func:`changedet.plot.plot_overview`; the figure goes to ``path``
        (a temporary file of the caller's).  False when it cannot be sent (draw in process).
        With the images already sent (:meth:`prepare_overview`), only the changes are sent.

        With ``embed_budget``, a figure larger than that many bytes is also reduced for the
        report page (:func:`changedet.report._reduced_image`) while it is encoded, and the
        reduction handed to :mod:`changedet.report` when the figure is waited for.
        """
        self._sent()
        if self._busy or not self.alive():
            return False
        kwargs = {k: _Outlines.of(v) if k in ("polygons", "structures") else v for k, v in kwargs.items()}
        changes = self._prepared_for(kwargs)
        self._base = None  # one figure per preparation
        message = ("changes", changes) if changes is not None else ("whole", kwargs)
        self.used_prepared = changes is not None
        if changes is None and _nbytes(kwargs) > MAX_SEND_BYTES:
            return False
        try:
            self._conn.send_bytes(pickle.dumps((*message, str(path), embed_budget), protocol=pickle.HIGHEST_PROTOCOL))
        except (OSError, pickle.PicklingError, TypeError, AttributeError):
            return False
        self._busy = True
        return True

    def wait(self) -> bool:
        """Wait for the figure sent; True when it was written, False when it must be drawn in process.

        Interrupted (Ctrl-C, SIGTERM), the helper is stopped before the interrupt goes on, so no
        file is written after the caller has cleaned up.
        """
        try:
            reply = self._conn.recv()
        except (EOFError, OSError):
            self.close()
            return False
        except BaseException:
            self.close()
            raise
        self._busy = False
        if self._figures_left is not None:
            self._figures_left -= 1
            if self._figures_left <= 0:
                # no figure will follow: the helper reads the end of the pipe and exits while the
                # caller goes on (the page, the summary), and close() finds it gone
                self._conn.close()
        if isinstance(reply, tuple) and reply[0] == "ok":
            from . import report

            report._prepare_embedding(*reply[1:])
            return True
        return reply == "ok"

    def cancel(self) -> None:
        """Stop the helper now, whatever it is doing: the run will draw no figure with it (a
        windowed run draws its own from previews), so its imports and warm-up would only take
        a core from the run."""
        self._proc.terminate()
        self.close()

    def close(self) -> None:
        """Stop the helper (it is also a daemon: it never outlives the command)."""
        global _CURRENT
        if self._sender is not None and self._sender.is_alive():
            self._proc.terminate()  # still reading the images: stopped, which ends the write
        self._sent()
        if not self._conn.closed:
            self._conn.close()  # an idle helper reads the end of the pipe and exits
        if self._busy:  # drawing for a run that stopped: its file is no longer wanted
            self._proc.terminate()
        self._proc.join(timeout=2)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(timeout=2)
        if _CURRENT is self:
            _CURRENT = None


class started:
    """``with started():`` runs the block with a figure helper, stopped on the way out.

    ``figures``: how many figures the block sends at most (the helper leaves as the last is
    written); None for any number.
    """

    def __init__(self, enabled: bool = True, *, figures: int | None = None) -> None:
        self._enabled = enabled
        self._figures = figures
        self._proc: FigureProcess | None = None

    def __enter__(self) -> FigureProcess | None:
        global _CURRENT
        # Linux only: fork is not offered on Windows and not safe on macOS once system frameworks load
        if self._enabled and _CURRENT is None and sys.platform.startswith("linux"):
            try:
                self._proc = _CURRENT = FigureProcess(self._figures)
            except (OSError, ValueError):  # no fork here (resource limits): figures are drawn in process
                self._proc = None
        return self._proc

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.close()


@dataclass(frozen=True, eq=False)
class _Outlines:
    """What the overview reads of a :class:`changedet.objects.ChangePolygons`: sent as this, the
    helper draws them without importing :mod:`changedet.objects` (0.1 s of scipy and pyproj)."""

    geometries: tuple[Any, ...]
    properties: tuple[dict[str, Any], ...]
    crs: Any = None
    areas_in_pixels: bool = False

    @classmethod
    def of(cls, polygons: Any) -> Any:
        if polygons is None or not (hasattr(polygons, "geometries") and hasattr(polygons, "properties")):
            return polygons  # not polygons: the figure raises its own error
        return cls(tuple(polygons.geometries), tuple(polygons.properties), getattr(polygons, "crs", None),
                   bool(getattr(polygons, "areas_in_pixels", getattr(polygons, "crs", None) is None)))


def _nbytes(kwargs: dict[str, Any]) -> int:
    """Bytes of the arrays (and rasters' arrays) among ``kwargs``."""
    return sum(getattr(v, "nbytes", 0) + getattr(getattr(v, "data", None), "nbytes", 0) for v in kwargs.values())


def _warm_up(plot: Any) -> None:  # pragma: no cover - runs in the forked helper
    """Draw a tiny overview once while the pair is scored: the first figure of a process also
    loads fonts and fills matplotlib's caches (about 0.07 s of a 0.3 s figure)."""
    import io

    import numpy as np
    import shapely
    from affine import Affine
    from rasterio.crs import CRS

    from .objects import ChangePolygons
    from .raster import GeoRaster

    try:
        image = GeoRaster(np.zeros((3, 16, 16), "float32"), Affine(10, 0, 500000, 0, -10, 5300000),
                          CRS.from_epsg(32630), ("red", "green", "blue"))
        polygons = ChangePolygons((shapely.box(500040, 5299900, 500080, 5299940),),
                                  ({"change_class": "new_construction", "area_m2": 1600.0},), image.grid.crs)
        plot._save_png(plot.plot_overview(image, image, polygons=polygons, title="warm-up"), io.BytesIO(), 100)
    except Exception:  # noqa: BLE001 - a warm-up only: the real figure reports its own errors
        pass


def _draw(plot: Any, kwargs: dict[str, Any], path: Path, budget: int | None,
          base: Any = None) -> Any:  # pragma: no cover - helper
    """Draw one overview (over ``base``, a prepared figure, when given ``kwargs`` of its changes);
    "ok", or with a budget and a figure over it ("ok", digest, budget, data, note)."""
    import threading

    from . import report

    reduced: dict[str, Any] = {}

    def reduce(im: Any) -> None:  # on the other core while the figure's PNG is encoded (both free the GIL)
        reduced["mode"] = im.mode

        def run() -> None:
            try:
                reduced["value"] = report._reduced_image(im, budget_bytes=budget)
            except Exception:  # noqa: BLE001 - the page then reduces the figure itself
                pass

        reduced["thread"] = threading.Thread(target=run, daemon=True)
        reduced["thread"].start()

    if base is not None:
        plot._overview_changes(base, **kwargs)
        plot._write_rendered(base, path, on_pixels=reduce if budget else None)
    else:
        plot._write_figure(plot.plot_overview(**kwargs), path, on_pixels=reduce if budget else None)
    if "thread" in reduced:
        reduced["thread"].join()
    size = path.stat().st_size
    # made without knowing the PNG's size, the reduction skips the lossless re-encoding, which the
    # page may try for an RGBA figure: then it is only good when the page would not try it
    if budget and "value" in reduced and size > budget and not report._lossless_may_fit(reduced["mode"], size, budget):
        return ("ok", report._digest(path.read_bytes()), budget, *reduced["value"])
    return "ok"


def _serve(conn: Any, parent_end: Any) -> None:  # pragma: no cover - runs in the forked helper
    """The helper's life: import matplotlib, then draw each figure sent until the pipe closes."""
    parent_end.close()
    # Ctrl-C reaches the whole process group: the command cleans up and stops the helper
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the command's handler: stopped is stopped
    try:
        os.environ.setdefault("MPLBACKEND", "Agg")
        from . import plot

        if not conn.poll(0.25):  # images sent soon, or announced (an in-memory run), are the warm-up
            _warm_up(plot)
        base = None
        while True:
            try:
                kind, kwargs, *rest = pickle.loads(conn.recv_bytes())
            except (EOFError, OSError):
                break
            if kind == "expect":  # the images follow (the warm-up is over or was skipped)
                continue
            if kind == "base":  # the image panels, drawn now; nothing to answer
                try:
                    base = plot._overview_base(**{"n_panels": 3, "title": None, "labels": ("before", "after"),
                                                  "bands": None, "percentiles": (2, 98), "pixel_size_m": None,
                                                  **kwargs})
                    plot._render_base(base)
                except Exception:  # noqa: BLE001 - the figure is then drawn in process, with its error
                    base = None
                continue
            path, budget = rest
            try:
                if kind == "changes" and base is None:
                    raise RuntimeError("no prepared figure")  # it failed: drawn in process
                reply = _draw(plot, kwargs, Path(path), budget, base if kind == "changes" else None)
            except Exception:  # noqa: BLE001 - drawn again in process, where the error is raised as it should be
                reply = "failed"
            base = None
            conn.send(reply)
    finally:
        conn.close()
        sys.stdout.flush()
        os._exit(0)
