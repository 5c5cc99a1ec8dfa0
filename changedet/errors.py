"""Exceptions raised by changedet.

Each error subclasses :class:`ChangedetError` and, where it fits, a builtin
(``ValueError``, ``OSError``) so callers can catch either.  Messages name what
was received, what was expected and how to fix it.
"""

from __future__ import annotations

__all__ = [
    "ChangedetError",
    "RasterReadError",
    "GridMismatchError",
    "NoOverlapError",
    "BandMismatchError",
    "EmptyDataError",
    "InvalidParameterError",
    "OutputInUseError",
]


class ChangedetError(Exception):
    """Base class of every error changedet raises on purpose."""


class RasterReadError(ChangedetError, OSError):
    """A path is missing, is not a raster, or is corrupt."""


class GridMismatchError(ChangedetError, ValueError):
    """Two rasters are not on the same grid and alignment was not requested."""


class NoOverlapError(ChangedetError, ValueError):
    """The before and after images do not overlap."""


class BandMismatchError(ChangedetError, ValueError):
    """The two dates share no band, or a method needs bands that are missing."""


class EmptyDataError(ChangedetError, ValueError):
    """An image (or the area of interest) holds only nodata."""


class InvalidParameterError(ChangedetError, ValueError):
    """An option has a value outside what it accepts."""


class OutputInUseError(ChangedetError, OSError):
    """Another run (a live process) is writing into the same output folder."""
