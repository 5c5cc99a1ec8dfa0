"""The errors and the warning of finding and fetching public scenes (re-exported by :mod:`changedet.sources`)."""

from __future__ import annotations

from .errors import ChangedetError, EmptyDataError, RasterReadError

__all__ = ["NoSceneFoundError", "DownloadError", "CatalogueError", "CloudyAreaWarning", "short_error", "network_reason",
           "check_host"]


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


def _chain(exc: BaseException) -> str:
    """The text of an exception and of what it wraps (requests -> urllib3 -> socket)."""
    parts, seen, todo = [], set(), [exc]
    while todo:
        e = todo.pop()
        if id(e) in seen or len(seen) > 20:
            continue
        seen.add(id(e))
        parts.append(f"{type(e).__name__} {e}")
        todo += [x for x in (e.__cause__, e.__context__, getattr(e, "reason", None)) if isinstance(x, BaseException)]
        todo += [a for a in getattr(e, "args", ()) if isinstance(a, BaseException)]
    return " | ".join(parts)


def network_reason(exc: BaseException) -> str | None:
    """Why a connection failed, in a few words; None when ``exc`` is not a connection failure.

    Parameters
    ----------
    exc : BaseException
        What requests, urllib3, urllib or GDAL raised.

    Returns
    -------
    str or None
        ``"name resolution failed"``, ``"connection refused"``, ``"no answer (timed out)"``,
        ``"network unreachable"``, ``"TLS handshake failed"``, or None.

    Examples
    --------
    >>> import socket
    >>> network_reason(socket.gaierror(-2, "Name or service not known"))
    'name resolution failed'
    >>> network_reason(ConnectionRefusedError(111, "Connection refused"))
    'connection refused'
    >>> network_reason(ValueError("bad")) is None
    True
    """
    text = _chain(exc).lower()
    for needles, reason in (
        (("nameresolution", "failed to resolve", "name or service not known", "gaierror", "temporary failure in name",
          "could not resolve host", "nodename nor servname", "name resolution"), "name resolution failed"),
        (("connection refused", "errno 111", "connectionrefused"), "connection refused"),
        (("timed out", "timeout"), "no answer (timed out)"),
        (("network is unreachable", "no route to host", "errno 101", "errno 113"), "network unreachable"),
        (("ssl", "certificate"), "TLS handshake failed"),
        (("connection reset", "remotedisconnected", "connection aborted"), "the connection was closed"),
    ):
        if any(n in text for n in needles):
            return reason
    return None


def check_host(url: str, *, timeout: float = 5.0) -> None:
    """Resolve ``url``'s host name within ``timeout`` seconds (a resolver without network can
    take much longer); :class:`CatalogueError` naming the host when it cannot be resolved.

    Parameters
    ----------
    url : str
        An http(s) URL.
    timeout : float
        Seconds to wait for the resolver.

    Raises
    ------
    CatalogueError
        "cannot reach HOST: name resolution failed ...".

    Examples
    --------
    >>> check_host("http://127.0.0.1:9/")
    """
    import socket
    import threading
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    host = parts.hostname
    if not host or parts.scheme not in ("http", "https"):
        return
    result: dict[str, BaseException | None] = {}

    def resolve() -> None:
        try:
            socket.getaddrinfo(host, parts.port or (443 if parts.scheme == "https" else 80), type=socket.SOCK_STREAM)
            result["error"] = None
        except (OSError, UnicodeError) as exc:
            result["error"] = exc

    t = threading.Thread(target=resolve, name="changedet-resolve", daemon=True)
    t.start()
    t.join(timeout)
    if "error" not in result:
        raise CatalogueError(f"cannot reach {host}: name resolution got no answer within {timeout:g} s; check the "
                             "network or --stac-url")
    if result["error"] is not None:
        raise CatalogueError(f"cannot reach {host}: name resolution failed ({short_error(result['error'])}); check the "
                             "network or --stac-url")


# Shown (in tracebacks, reprs and docs) under the public module that users import.
for _cls in (NoSceneFoundError, DownloadError, CatalogueError, CloudyAreaWarning):
    _cls.__module__ = "changedet.sources"
del _cls
