"""The errors and the warning of finding and fetching public scenes (re-exported by :mod:`changedet.sources`)."""

from __future__ import annotations

from .errors import ChangedetError, EmptyDataError, RasterReadError

__all__ = ["NoSceneFoundError", "DownloadError", "CatalogueError", "CloudyAreaWarning", "short_error"]


class NoSceneFoundError(EmptyDataError):
    """No scene covers the area in a date range (or none is clear enough)."""


class DownloadError(RasterReadError):
    """An asset could not be read over HTTP, after retries for transient failures."""


class CatalogueError(ChangedetError, OSError):
    """The STAC API cannot be reached, or does not hold the collection asked for."""


class CloudyAreaWarning(UserWarning):
    """The best scene of a date range is cloudy over the area."""


def short_error(exc: BaseException) -> str:
    """The first line of an exception's message (at most 200 characters), for our own messages.

    Parameters
    ----------
    exc : BaseException
        The error caught.

    Returns
    -------
    str
        Its first line, or its type name when it has no message.

    Examples
    --------
    >>> short_error(OSError("HTTP response code: 404\\nmore")), short_error(KeyError())
    ('HTTP response code: 404', 'KeyError')
    """
    text = str(exc).strip().splitlines()
    return (text[0][:200] if text else "") or type(exc).__name__


# Shown (in tracebacks, reprs and docs) under the public module that users import.
for _cls in (NoSceneFoundError, DownloadError, CatalogueError, CloudyAreaWarning):
    _cls.__module__ = "changedet.sources"
del _cls
