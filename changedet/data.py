"""The bundled sample pairs and their ground truth.

``sample_tiles/`` at the repository's top level holds synthetic before/after
pairs made by ``sample_tiles/make_sample_tiles.py``, each with a truth mask, and a
``registry.json`` with the SHA-256 of every file; ``sample_tiles/series/`` holds a
synthetic series of dates with the date each pixel first changed (:func:`load_series`).  It installs as the package
``changedet.sample_tiles`` (in a wheel and in an editable install alike) and is
found through :mod:`importlib.resources`.  :func:`load_sample` checks
the hashes before reading, so a truncated or edited file is reported instead of
silently giving wrong numbers.

Set the environment variable ``CHANGEDET_SAMPLE_TILES`` to use another folder
laid out the same way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import InvalidParameterError, RasterReadError
from .io import read_json, read_raster, sha256
from .raster import GeoRaster

__all__ = [
    "SAMPLE_TILES_ENV",
    "SamplePair",
    "sample_tiles_dir",
    "list_samples",
    "sample_path",
    "sample_info",
    "load_sample",
    "SampleSeries",
    "list_series",
    "series_path",
    "load_series",
]

SAMPLE_TILES_ENV = "CHANGEDET_SAMPLE_TILES"
_PACKAGE = "changedet.sample_tiles"
_REGISTRY = "registry.json"
_FILES = ("before.tif", "after.tif", "truth.tif")
_REMAKE = "re-run `python sample_tiles/make_sample_tiles.py` from the repository root to make them again"


@dataclass(frozen=True, eq=False)
class SamplePair:
    """A bundled before/after pair with its truth mask, all on one grid.

    Attributes
    ----------
    name : str
        The sample's name, e.g. ``"s2_like"``.
    before, after : GeoRaster
        The two dates (float32, same bands and grid).
    truth : GeoRaster
        One band ``change``: 1.0 where the land cover changed, 0.0 elsewhere, on the
        ``before`` grid.
    description : str
        What the pair shows and which nuisances it carries.

    Examples
    --------
    >>> pair = load_sample("s2_like")
    >>> pair.before.grid.same_as(pair.truth.grid)
    True
    """

    name: str
    before: GeoRaster
    after: GeoRaster
    truth: GeoRaster
    description: str

    def __repr__(self) -> str:
        return f"SamplePair({self.name!r}, before={self.before!r}, truth {float(self.truth.data.mean()):.1%} changed)"


def sample_tiles_dir() -> Path:
    """The folder that holds the sample pairs.

    ``$CHANGEDET_SAMPLE_TILES`` when set, else the installed package data
    ``changedet.sample_tiles`` (``sample_tiles/`` of the checkout in an editable
    install), else ``sample_tiles/`` beside the package (a checkout put on
    ``sys.path`` without installing it).

    Returns
    -------
    Path
        The folder, absolute; it holds ``registry.json`` and one folder per pair.

    Raises
    ------
    RasterReadError
        changedet is installed inside a zip archive, where the tiles are no files
        that GDAL could open.

    Examples
    --------
    >>> (sample_tiles_dir() / "registry.json").is_file()
    True
    """
    env = os.environ.get(SAMPLE_TILES_ENV)
    if env:
        return Path(env).expanduser().resolve()
    try:
        root = resources.files(_PACKAGE)
    except ModuleNotFoundError:
        # not installed (a checkout on sys.path), or an editable install made before the
        # tiles were package data: the checkout's own folder
        return Path(__file__).resolve().parents[1] / "sample_tiles"
    if not isinstance(root, Path):
        raise RasterReadError(
            f"the sample tiles are inside an archive ({root}), not files GDAL can open; "
            f"install changedet unzipped, or set ${SAMPLE_TILES_ENV} to a folder holding them"
        )
    return root.resolve()


def _registry() -> dict[str, Any]:
    root = sample_tiles_dir()
    path = root / _REGISTRY
    if not path.is_file():
        hint = (
            f"${SAMPLE_TILES_ENV} points at {str(root)!r}; unset it or point it at a folder holding registry.json"
            if os.environ.get(SAMPLE_TILES_ENV)
            else f"this installation lacks the package data {_PACKAGE}; reinstall changedet, set ${SAMPLE_TILES_ENV} "
            "to a folder holding the tiles, or " + _REMAKE
        )
        raise RasterReadError(f"sample registry {str(path)!r} not found; {hint}")
    try:
        registry = read_json(path)
        pairs = registry["pairs"]
    except (ValueError, KeyError, TypeError) as exc:
        raise RasterReadError(f"sample registry {str(path)!r} is not valid ({exc}); {_REMAKE}") from None
    if not isinstance(pairs, dict):
        raise RasterReadError(f"sample registry {str(path)!r} has no 'pairs' mapping; {_REMAKE}")
    return registry


def list_samples() -> list[str]:
    """Names of the bundled sample pairs, sorted.

    Returns
    -------
    list of str
        The names :func:`load_sample` accepts.

    Raises
    ------
    RasterReadError
        ``registry.json`` is missing or not valid.

    Examples
    --------
    >>> list_samples()
    ['hires_rgb', 's2_like']
    """
    return sorted(_registry()["pairs"])


def sample_info(name: str) -> dict[str, Any]:
    """The registry entry of one sample: description, resolution, bands, dates, file hashes.

    Parameters
    ----------
    name : str
        One of :func:`list_samples`.

    Returns
    -------
    dict
        A copy of the entry: ``description``, ``resolution_m``, ``shape``, ``bands``,
        ``dates``, ``change_fraction``, ``new_objects``, ``after_offset_px`` and, per
        file, its ``sha256`` and ``bytes``.

    Raises
    ------
    InvalidParameterError
        ``name`` is not a bundled sample.

    Examples
    --------
    >>> info = sample_info("s2_like")
    >>> info["resolution_m"], info["bands"]
    (10.0, ['B02', 'B03', 'B04', 'B08'])
    """
    pairs = _registry()["pairs"]
    if name not in pairs:
        raise InvalidParameterError(f"name={name!r} is not a sample; choose one of {sorted(pairs)}")
    return dict(pairs[name])


def sample_path(name: str) -> Path:
    """The folder of one sample pair (holding ``before.tif``, ``after.tif``, ``truth.tif``).

    Parameters
    ----------
    name : str
        One of :func:`list_samples`.

    Returns
    -------
    Path
        ``sample_tiles_dir() / name``.

    Raises
    ------
    InvalidParameterError
        ``name`` is not a bundled sample.

    Examples
    --------
    >>> sorted(p.name for p in sample_path("s2_like").glob("*.tif"))
    ['after.tif', 'before.tif', 'truth.tif']
    """
    sample_info(name)
    return sample_tiles_dir() / name


def _verify(name: str, folder: Path, files: dict[str, Any]) -> None:
    for fname in _FILES:
        path = folder / fname
        entry = files.get(fname)
        if entry is None:
            raise RasterReadError(f"sample {name!r}: the registry lists no hash for {fname!r}; {_REMAKE}")
        if not path.is_file():
            raise RasterReadError(f"sample {name!r}: file {str(path)!r} is missing; {_REMAKE}")
        expected = entry["sha256"] if isinstance(entry, dict) else str(entry)
        got = sha256(path)
        if got != expected:
            raise RasterReadError(
                f"sample {name!r}: file {str(path)!r} is corrupted or was modified "
                f"(SHA-256 {got[:12]}... but the registry expects {expected[:12]}...); {_REMAKE}"
            )


def load_sample(name: str, *, verify: bool = True) -> SamplePair:
    """Load a bundled sample pair, checking every file against the hash registry.

    Parameters
    ----------
    name : str
        One of :func:`list_samples`: ``"s2_like"`` (10 m, B02 B03 B04 B08) or
        ``"hires_rgb"`` (1 m, red green blue).
    verify : bool, default True
        Compare each file's SHA-256 with ``registry.json`` before reading.

    Returns
    -------
    SamplePair
        ``before``, ``after`` and ``truth`` on one grid.

    Raises
    ------
    InvalidParameterError
        ``name`` is not a bundled sample.
    RasterReadError
        A file is missing or its hash differs from the registry (the message names the
        file and how to make the samples again).

    Examples
    --------
    >>> pair = load_sample("s2_like")
    >>> pair.before.band_names
    ('B02', 'B03', 'B04', 'B08')
    >>> pair.before.shape
    (4, 300, 300)
    >>> 0.01 < float(pair.truth.data.mean()) < 0.1
    True
    """
    info = sample_info(name)
    folder = sample_tiles_dir() / name
    if verify:
        _verify(name, folder, info.get("files", {}))
    rasters = {}
    for fname in _FILES:
        path = folder / fname
        if not path.is_file():
            raise RasterReadError(f"sample {name!r}: file {str(path)!r} is missing; {_REMAKE}")
        rasters[fname] = read_raster(path)
    return SamplePair(
        name=name,
        before=rasters["before.tif"],
        after=rasters["after.tif"],
        truth=rasters["truth.tif"],
        description=str(info.get("description", "")),
    )


# --------------------------------------------------------------------------- series of dates
@dataclass(frozen=True, eq=False)
class SampleSeries:
    """A bundled series: one site on several dates, with the date each pixel first changed.

    Attributes
    ----------
    name : str
        The series' name, e.g. ``"site_growth"``.
    images : tuple of Path
        One GeoTIFF per date, in time order (all on one grid up to a sub-pixel shift).
    dates : tuple of str
        ``YYYY-MM-DD`` of each image.
    truth : GeoRaster
        One band ``first_change``: the index (1 .. N-1) of the first date whose land cover
        differs from the first date's, 0 never; on the first date's grid.
    description : str
        What the series shows and which nuisances it carries.
    new_buildings : dict of str -> int
        How many new buildings first appear on each date after the first.
    """

    name: str
    images: tuple[Path, ...]
    dates: tuple[str, ...]
    truth: GeoRaster
    description: str
    new_buildings: dict[str, int] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"SampleSeries({self.name!r}, {len(self.dates)} dates {self.dates[0]} .. {self.dates[-1]})"


def _series_entries() -> dict[str, Any]:
    series = _registry().get("series", {})
    return series if isinstance(series, dict) else {}


def list_series() -> list[str]:
    """Names of the bundled series of dates, sorted.

    Returns
    -------
    list of str
        The names :func:`load_series` accepts.

    Examples
    --------
    >>> list_series()
    ['site_growth']
    """
    return sorted(_series_entries())


def series_path(name: str) -> Path:
    """The folder of one bundled series (one GeoTIFF per date and ``truth.tif``).

    Parameters
    ----------
    name : str
        One of :func:`list_series`.

    Returns
    -------
    Path
        ``sample_tiles_dir() / "series" / name``.

    Raises
    ------
    InvalidParameterError
        ``name`` is not a bundled series.

    Examples
    --------
    >>> series_path("site_growth").name
    'site_growth'
    """
    entries = _series_entries()
    if name not in entries:
        raise InvalidParameterError(f"name={name!r} is not a sample series; choose one of {sorted(entries)}")
    return sample_tiles_dir() / "series" / name


def load_series(name: str = "site_growth", *, verify: bool = True) -> SampleSeries:
    """A bundled series of dates, its files checked against the hash registry.

    Parameters
    ----------
    name : str
        One of :func:`list_series`.
    verify : bool, default True
        Compare each file's SHA-256 with ``registry.json`` first.

    Returns
    -------
    SampleSeries
        The image paths in time order, their dates and the first-change truth.

    Raises
    ------
    InvalidParameterError
        ``name`` is not a bundled series.
    RasterReadError
        A file is missing or its hash differs from the registry.

    Examples
    --------
    >>> s = load_series("site_growth")
    >>> len(s.images), s.dates[0], int(s.truth.data.max())
    (5, '2024-06-14', 4)
    """
    folder = series_path(name)
    entry = _series_entries()[name]
    files = entry.get("files", {})
    images = tuple(folder / f for f in entry.get("images", []))
    for path in (*images, folder / "truth.tif"):
        if not path.is_file():
            raise RasterReadError(f"series {name!r}: file {str(path)!r} is missing; {_REMAKE}")
        if verify:
            expected = files.get(path.name, {}).get("sha256")
            got = sha256(path)
            if got != expected:
                raise RasterReadError(
                    f"series {name!r}: file {str(path)!r} is corrupted or was modified (SHA-256 {got[:12]}... but "
                    f"the registry expects {str(expected)[:12]}...); {_REMAKE}"
                )
    return SampleSeries(name=name, images=images, dates=tuple(entry.get("dates", [])),
                        truth=read_raster(folder / "truth.tif"), description=str(entry.get("description", "")),
                        new_buildings=dict(entry.get("new_buildings_by_first_date", {})))
