"""The on-disk cache of fetched pixels: one GeoTIFF per STAC item, area grid and band list.

A second fetch of the same area, or one resumed after an interruption, reads nothing
again.  Entries live under ``$CHANGEDET_CACHE`` (default ``~/.cache/changedet``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import EmptyDataError, RasterReadError
from .raster import GeoRaster, Grid

__all__ = ["default_cache_dir", "cache_path", "cache_read", "cache_write"]


def default_cache_dir() -> Path:
    """Where fetched pixels are cached: ``$CHANGEDET_CACHE``, else ``$XDG_CACHE_HOME/changedet``.

    Returns
    -------
    Path

    Examples
    --------
    >>> default_cache_dir().name
    'changedet'
    """
    env = os.environ.get("CHANGEDET_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "changedet"


# Bump when what a cache entry holds changes (scaling, masking), so old entries are not reused.
_CACHE_VERSION = 1


def cache_path(item_id: str, grid: Grid, bands: Sequence[str], kind: str) -> Path:
    """The path, relative to the cache folder, of one item's pixels on ``grid``.

    Parameters
    ----------
    item_id : str
        STAC item id.
    grid : Grid
        The grid the pixels are on.
    bands : sequence of str
        Output band names, in order.
    kind : str
        ``"scene"`` (all bands) or ``"mask"`` (the cloud mask band for ranking).

    Returns
    -------
    Path
        ``KIND/ITEM_ID/DIGEST.tif``; the digest covers the grid, the bands and the cache version.

    Examples
    --------
    >>> from affine import Affine
    >>> from rasterio.crs import CRS
    >>> g = Grid((2, 2), Affine(10, 0, 0, 0, -10, 0), CRS.from_epsg(32639))
    >>> p = cache_path("S2A/x", g, ["scl"], "mask")
    >>> p.parts[:2], p.suffix
    (('mask', 'S2A_x'), '.tif')
    """
    spec = json.dumps(
        {
            "item": item_id,
            "crs": grid.crs.to_string() if grid.crs else None,
            "transform": [round(v, 6) for v in tuple(grid.transform)[:6]],
            "shape": list(grid.shape),
            "bands": list(bands),
            "kind": kind,
            "version": _CACHE_VERSION,
        },
        sort_keys=True,
    )
    digest = hashlib.sha256(spec.encode()).hexdigest()[:20]
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", item_id)[:120]
    return Path(kind) / safe / f"{digest}.tif"


def cache_read(path: Path, grid: Grid, count: int) -> np.ndarray | None:
    """A cached (count, rows, cols) array on ``grid``, or None when absent or unusable.

    Parameters
    ----------
    path : Path
        The entry (cache folder / :func:`cache_path`).
    grid : Grid
        The grid the entry must be on.
    count : int
        The number of bands it must hold.

    Returns
    -------
    (count, rows, cols) ndarray of float32 or None
        All NaN for a cached "no data here"; None when missing, corrupt or on another grid.

    Examples
    --------
    >>> from affine import Affine
    >>> cache_read(Path("no/such/entry.tif"), Grid((2, 2), Affine(10, 0, 0, 0, -10, 0), None), 1) is None
    True
    """
    if not path.is_file():
        return None
    from .io import read_raster

    try:
        r = read_raster(path)
    except EmptyDataError:
        return np.full((count, *grid.shape), np.nan, dtype="float32")  # cached "no data here"
    except RasterReadError:
        return None  # a corrupt entry is rebuilt
    if r.count != count or not r.grid.same_as(grid):
        return None
    return r.data


def cache_write(raster: GeoRaster, path: Path) -> None:
    """Write a cache entry (float32 GeoTIFF, under a temporary name renamed when complete).

    Parameters
    ----------
    raster : GeoRaster
        The pixels.
    path : Path
        The entry.

    Examples
    --------
    >>> import tempfile
    >>> from affine import Affine
    >>> r = GeoRaster(np.ones((1, 2, 2), "float32"), Affine(10, 0, 0, 0, -10, 0), None, ("b",))
    >>> with tempfile.TemporaryDirectory() as d:
    ...     cache_write(r, Path(d) / "e.tif")
    ...     float(cache_read(Path(d) / "e.tif", r.grid, 1).sum())
    4.0
    """
    from .io import write_raster

    write_raster(raster, path, dtype="float32")
