"""changedet: what changed at a site between two satellite or aerial images.

Where, what kind, and how much — from a notebook, from Python, or from the
``changedet`` command.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import ChangedetError
from .raster import GeoRaster, Grid

__all__ = ["__version__", "ChangedetError", "GeoRaster", "Grid"]
