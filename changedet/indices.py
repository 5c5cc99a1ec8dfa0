"""Band names and spectral indices.

Band names are resolved to canonical common names (``blue``, ``nir``, ``swir16``,
...) from Sentinel-2 (``B02``), Landsat 8/9 Collection-2 L2 (``SR_B2``) and plain
names, so methods ask for ``"nir"`` whatever the sensor.

Indices (arrays in, arrays out; NaN where undefined):

- NDVI  (nir - red) / (nir + red)                          Rouse et al. 1974
- NDBI  (swir16 - nir) / (swir16 + nir)                    Zha et al. 2003
- BSI   ((swir16 + red) - (nir + blue)) / (sum of the four)  Rikimaru et al. 2002
- NDWI  (green - nir) / (green + nir)                      McFeeters 1996
- brightness: mean of the visible (and nir, when present) bands
"""

from __future__ import annotations

import re
from typing import Callable, Sequence

import numpy as np

from .errors import BandMismatchError, InvalidParameterError

__all__ = [
    "CANONICAL",
    "canonical_name",
    "resolve_bands",
    "find_bands",
    "has_bands",
    "INDEX_BANDS",
    "INDICES",
    "compute_index",
    "available_indices",
    "ndvi",
    "ndbi",
    "bsi",
    "ndwi",
    "brightness",
    "normalized_difference",
    "excess_green",
]

CANONICAL = (
    "coastal", "blue", "green", "red", "rededge1", "rededge2", "rededge3", "nir", "nir08",
    "watervapour", "cirrus", "swir16", "swir22", "scl",
)

_SENTINEL2 = {
    "b01": "coastal", "b02": "blue", "b03": "green", "b04": "red", "b05": "rededge1",
    "b06": "rededge2", "b07": "rededge3", "b08": "nir", "b8a": "nir08", "b09": "watervapour",
    "b10": "cirrus", "b11": "swir16", "b12": "swir22", "scl": "scl",
}
_LANDSAT = {
    "sr_b1": "coastal", "sr_b2": "blue", "sr_b3": "green", "sr_b4": "red", "sr_b5": "nir",
    "sr_b6": "swir16", "sr_b7": "swir22",
}
_COMMON = {name: name for name in CANONICAL}
_COMMON.update({
    "r": "red", "g": "green", "b": "blue", "swir1": "swir16", "swir2": "swir22",
    "nir08": "nir08", "rededge": "rededge1", "water_vapour": "watervapour", "wvp": "watervapour",
})
_ALIASES = {**_COMMON, **_LANDSAT, **_SENTINEL2}
_S2_SHORT = re.compile(r"^b(\d)$")  # "B2" -> "B02"


def canonical_name(name: str) -> str | None:
    """The canonical common name of a band name, or None when unknown.

    Matches whole names (``B02``, ``SR_B2``, ``red``) and Sentinel-2 file stems
    ending in a band code (``T31UDQ_20170829T105019_B02``).

    Parameters
    ----------
    name : str
        A band name (case and surrounding spaces ignored).

    Returns
    -------
    str or None
        One of :data:`CANONICAL`, or None.

    Examples
    --------
    >>> canonical_name("B08"), canonical_name("SR_B5"), canonical_name("Red"), canonical_name("B8A")
    ('nir', 'nir', 'red', 'nir08')
    >>> canonical_name("T31UDQ_20170829T105019_B02"), canonical_name("band1") is None
    ('blue', True)
    """
    key = str(name).strip().lower()
    if key in _ALIASES:
        return _ALIASES[key]
    m = _S2_SHORT.match(key)
    if m:
        return _SENTINEL2.get(f"b0{m.group(1)}")
    tail = re.split(r"[_\-.\s]", key)[-1]
    if tail in _SENTINEL2 and tail != key:
        return _SENTINEL2[tail]
    return None


def resolve_bands(band_names: Sequence[str]) -> dict[str, int]:
    """Map canonical names to band positions.

    A 3-band image whose names are unknown (``band1..band3``) is taken as an RGB
    photo (red, green, blue), the usual order of PNG/JPEG files.

    Parameters
    ----------
    band_names : sequence of str
        The image's band names, in band order.

    Returns
    -------
    dict of str to int
        Canonical name -> position; the first band wins when two share a name; bands
        with unknown names are left out.

    Examples
    --------
    >>> resolve_bands(["B02", "B03", "B04", "B08"])
    {'blue': 0, 'green': 1, 'red': 2, 'nir': 3}
    >>> resolve_bands(["band1", "band2", "band3"])
    {'red': 0, 'green': 1, 'blue': 2}
    """
    out: dict[str, int] = {}
    for i, name in enumerate(band_names):
        canon = canonical_name(name)
        if canon is not None and canon not in out:
            out[canon] = i
    if not out and len(band_names) == 3:
        out = {"red": 0, "green": 1, "blue": 2}
    return out


def has_bands(band_names: Sequence[str], needed: Sequence[str]) -> bool:
    """True when every canonical name in ``needed`` is present.

    Parameters
    ----------
    band_names : sequence of str
        The image's band names.
    needed : sequence of str
        Canonical names (``"red"``, ``"nir"``, ...).

    Returns
    -------
    bool

    Examples
    --------
    >>> has_bands(["B04", "B08"], ["red", "nir"]), has_bands(["red", "green", "blue"], ["nir"])
    (True, False)
    """
    found = resolve_bands(band_names)
    return all(n in found for n in needed)


#: index name -> canonical bands it needs
INDEX_BANDS: dict[str, tuple[str, ...]] = {
    "ndvi": ("red", "nir"),
    "ndbi": ("swir16", "nir"),
    "bsi": ("blue", "red", "nir", "swir16"),
    "ndwi": ("green", "nir"),
    "brightness": ("blue", "green", "red"),
}


def available_indices(band_names: Sequence[str]) -> list[str]:
    """Indices computable from these bands.

    Parameters
    ----------
    band_names : sequence of str
        The image's band names.

    Returns
    -------
    list of str
        Names from :data:`INDEX_BANDS`, in its order.

    Examples
    --------
    >>> available_indices(["B02", "B03", "B04", "B08"])
    ['ndvi', 'ndwi', 'brightness']
    """
    return [name for name, need in INDEX_BANDS.items() if has_bands(band_names, need)]


def find_bands(band_names: Sequence[str], needed: Sequence[str], *, method: str) -> list[int]:
    """Positions of the canonical bands ``needed``; raise naming what is missing.

    Parameters
    ----------
    band_names : sequence of str
        The image's band names.
    needed : sequence of str
        Canonical names, in the order wanted.
    method : str
        The method asking, for the error message (``"index:ndvi"``, ``"ssim"``, ...).

    Returns
    -------
    list of int
        One position per name of ``needed``.

    Raises
    ------
    BandMismatchError
        When a band is missing; the message lists the bands present and the
        methods that would work with them.

    Examples
    --------
    >>> find_bands(["B02", "B03", "B04", "B08"], ["red", "nir"], method="index:ndvi")
    [2, 3]
    """
    found = resolve_bands(band_names)
    missing = [n for n in needed if n not in found]
    if missing:
        workable = [f"index:{n}" for n in available_indices(band_names)]
        raise BandMismatchError(
            f"method {method!r} needs bands {list(needed)} but {missing} are missing "
            f"(bands present: {list(band_names)}); methods that work with these bands: "
            f"{['diff', 'log-ratio', 'cva', 'pca-kmeans', 'imad', 'ssim', 'auto'] + workable}"
        )
    return [found[n] for n in needed]


def normalized_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(a - b) / (a + b), NaN where |a + b| <= 1e-12 or an input is NaN.

    Parameters
    ----------
    a, b : ndarray
        Arrays of one shape (or broadcastable).

    Returns
    -------
    ndarray of float32
        Computed in float64.

    Examples
    --------
    >>> import numpy as np
    >>> normalized_difference(np.array([3.0, 0.0]), np.array([1.0, 0.0]))
    array([0.5, nan], dtype=float32)
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    total = a + b
    defined = np.abs(total) > 1e-12  # False where an input is NaN
    out = np.subtract(a, b)
    with np.errstate(divide="ignore", invalid="ignore"):
        np.divide(out, total, out=out, where=defined)
    out[~defined] = np.nan
    return out.astype(np.float32)


def excess_green(red: np.ndarray, green: np.ndarray, blue: np.ndarray) -> np.ndarray:
    """Chromatic excess green (2g - r - b) / (r + g + b) (Woebbecke et al. 1995): vegetation
    in RGB imagery, unchanged by one gain on all three bands.

    Parameters
    ----------
    red, green, blue : ndarray
        The three bands, one shape.

    Returns
    -------
    ndarray
        In [-1, 2] for non-negative bands, in the bands' float type (float32 at least); NaN
        where the sum is not positive or a band is not finite.

    Examples
    --------
    >>> import numpy as np
    >>> excess_green(np.array([1.0, 0.0]), np.array([2.0, 0.0]), np.array([1.0, 0.0]))
    array([0.5, nan])
    """
    dtype = np.result_type(red, green, blue, np.float32)
    r, g, b = (np.asarray(x, dtype=dtype) for x in (red, green, blue))
    total = r + g + b
    with np.errstate(divide="ignore", invalid="ignore"):
        e = (2 * g - r - b) / total
    return np.where(np.isfinite(e) & (total > 0), e, dtype.type(np.nan))


def _get(image: np.ndarray, band_names: Sequence[str], needed: Sequence[str], method: str) -> list[np.ndarray]:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[0] != len(band_names):
        raise InvalidParameterError(
            f"image must be (bands, rows, cols) with one band per name ({len(band_names)} names), "
            f"got shape {image.shape}"
        )
    return [image[i] for i in find_bands(band_names, needed, method=method)]


def ndvi(image: np.ndarray, band_names: Sequence[str]) -> np.ndarray:
    """Normalized difference vegetation index (Rouse et al. 1974).

    Parameters
    ----------
    image : (bands, rows, cols) ndarray
        One band per name of ``band_names``.
    band_names : sequence of str
        Band names, resolved by :func:`canonical_name`; red and nir are needed.

    Returns
    -------
    (rows, cols) ndarray of float32
        (nir - red) / (nir + red), NaN where undefined.

    Raises
    ------
    BandMismatchError
        When a needed band is missing.
    InvalidParameterError
        When ``image`` is not (bands, rows, cols) with one band per name.

    Examples
    --------
    >>> import numpy as np
    >>> img = np.array([[[0.1]], [[0.5]]])
    >>> float(ndvi(img, ["red", "nir"])[0, 0])
    0.6666666865348816
    """
    red, nir = _get(image, band_names, INDEX_BANDS["ndvi"], "index:ndvi")
    return normalized_difference(nir, red)


def ndbi(image: np.ndarray, band_names: Sequence[str]) -> np.ndarray:
    """Normalized difference built-up index (Zha, Gao & Ni 2003).

    Parameters
    ----------
    image : (bands, rows, cols) ndarray
        One band per name of ``band_names``.
    band_names : sequence of str
        Band names, resolved by :func:`canonical_name`; swir16 and nir are needed.

    Returns
    -------
    (rows, cols) ndarray of float32
        (swir16 - nir) / (swir16 + nir), NaN where undefined.

    Raises
    ------
    BandMismatchError
        When a needed band is missing.
    InvalidParameterError
        When ``image`` is not (bands, rows, cols) with one band per name.

    Examples
    --------
    >>> import numpy as np
    >>> float(ndbi(np.array([[[0.3]], [[0.1]]]), ["B11", "B08"])[0, 0])
    0.5
    """
    swir, nir = _get(image, band_names, INDEX_BANDS["ndbi"], "index:ndbi")
    return normalized_difference(swir, nir)


def bsi(image: np.ndarray, band_names: Sequence[str]) -> np.ndarray:
    """Bare soil index (Rikimaru, Roy & Miyatake 2002).

    Parameters
    ----------
    image : (bands, rows, cols) ndarray
        One band per name of ``band_names``.
    band_names : sequence of str
        Band names, resolved by :func:`canonical_name`; blue, red, nir and swir16 are needed.

    Returns
    -------
    (rows, cols) ndarray of float32
        ((swir16 + red) - (nir + blue)) / (swir16 + red + nir + blue), NaN where undefined.

    Raises
    ------
    BandMismatchError
        When a needed band is missing.
    InvalidParameterError
        When ``image`` is not (bands, rows, cols) with one band per name.

    Examples
    --------
    >>> import numpy as np
    >>> img = np.array([[[0.1]], [[0.2]], [[0.3]], [[0.4]]])
    >>> round(float(bsi(img, ["blue", "red", "nir", "swir16"])[0, 0]), 3)
    0.2
    """
    blue, red, nir, swir = _get(image, band_names, INDEX_BANDS["bsi"], "index:bsi")
    return normalized_difference(swir + red, nir + blue)


def ndwi(image: np.ndarray, band_names: Sequence[str]) -> np.ndarray:
    """Normalized difference water index (McFeeters 1996).

    Parameters
    ----------
    image : (bands, rows, cols) ndarray
        One band per name of ``band_names``.
    band_names : sequence of str
        Band names, resolved by :func:`canonical_name`; green and nir are needed.

    Returns
    -------
    (rows, cols) ndarray of float32
        (green - nir) / (green + nir), NaN where undefined.

    Raises
    ------
    BandMismatchError
        When a needed band is missing.
    InvalidParameterError
        When ``image`` is not (bands, rows, cols) with one band per name.

    Examples
    --------
    >>> import numpy as np
    >>> float(ndwi(np.array([[[0.3]], [[0.1]]]), ["green", "nir"])[0, 0])
    0.5
    """
    green, nir = _get(image, band_names, INDEX_BANDS["ndwi"], "index:ndwi")
    return normalized_difference(green, nir)


def brightness(image: np.ndarray, band_names: Sequence[str]) -> np.ndarray:
    """Mean of the visible bands (and nir when present): overall albedo.

    Parameters
    ----------
    image : (bands, rows, cols) ndarray
        One band per name of ``band_names``.
    band_names : sequence of str
        Band names, resolved by :func:`canonical_name`; blue, green and red are needed, nir is used when present.

    Returns
    -------
    (rows, cols) ndarray of float32
        The mean of those bands.

    Raises
    ------
    BandMismatchError
        When a needed band is missing.
    InvalidParameterError
        When ``image`` is not (bands, rows, cols) with one band per name.

    Examples
    --------
    >>> import numpy as np
    >>> round(float(brightness(np.array([[[0.1]], [[0.2]], [[0.3]]]), ["blue", "green", "red"])[0, 0]), 4)
    0.2
    """
    bands = _get(image, band_names, INDEX_BANDS["brightness"], "index:brightness")
    found = resolve_bands(band_names)
    if "nir" in found:
        bands.append(np.asarray(image)[found["nir"]])
    # summed in float64 one band after another, as the mean over a float64 stack's first axis is
    total = np.asarray(bands[0], dtype=np.float64).copy()
    for band in bands[1:]:
        total += band
    total /= len(bands)
    return total.astype(np.float32)


INDICES: dict[str, Callable[[np.ndarray, Sequence[str]], np.ndarray]] = {
    "ndvi": ndvi,
    "ndbi": ndbi,
    "bsi": bsi,
    "ndwi": ndwi,
    "brightness": brightness,
}


def compute_index(image: np.ndarray, band_names: Sequence[str], name: str) -> np.ndarray:
    """One index by name.

    Parameters
    ----------
    image : (bands, rows, cols) ndarray
        One band per name of ``band_names``.
    band_names : sequence of str
        Band names, resolved by :func:`canonical_name`.
    name : str
        A key of :data:`INDICES` (``"ndvi"``, ``"ndbi"``, ``"bsi"``, ``"ndwi"``,
        ``"brightness"``; case ignored).

    Returns
    -------
    (rows, cols) ndarray of float32

    Raises
    ------
    InvalidParameterError
        For an unknown index name (and see the index functions).

    Examples
    --------
    >>> import numpy as np
    >>> compute_index(np.ones((2, 1, 1)), ["B04", "B08"], "ndvi")
    array([[0.]], dtype=float32)
    """
    key = str(name).lower()
    if key not in INDICES:
        raise InvalidParameterError(f"index must be one of {list(INDICES)}, got {name!r}")
    return INDICES[key](image, band_names)
