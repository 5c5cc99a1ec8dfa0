"""What counts as a remote input: one test for the whole package.

A path that starts with one of :data:`REMOTE_PREFIXES` is read by GDAL over the network
(``http(s)://`` through ``/vsicurl/``, ``s3://`` and ``gs://`` as rasterio maps them to
``/vsis3/`` and ``/vsigs/``, or any ``/vsi...`` path given as it is): it is not checked on the
local disk, not hashed and not watched for changes.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["REMOTE_PREFIXES", "is_remote"]

#: Prefixes of the inputs GDAL reads over the network (or from its virtual file systems).
REMOTE_PREFIXES = ("http://", "https://", "s3://", "gs://", "/vsi")


def is_remote(path: Any) -> bool:
    """True when ``path`` (str, bytes or path-like) names a remote input, not a local file.

    Parameters
    ----------
    path : str, bytes or os.PathLike
        An input as the user gave it.

    Returns
    -------
    bool

    Examples
    --------
    >>> is_remote("https://example.org/b.tif"), is_remote("gs://bucket/b.tif"), is_remote("site/b.tif")
    (True, True, False)
    """
    if not isinstance(path, (str, bytes, os.PathLike)):
        return False
    return os.fsdecode(os.fspath(path)).startswith(REMOTE_PREFIXES)
