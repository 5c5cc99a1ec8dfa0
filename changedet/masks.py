"""Pixels to leave out of change detection: nodata, image edges, clouds, cloud shadows.

Every function returns a (rows, cols) bool **exclude** mask (True = leave out).

- :func:`nodata_mask`: any band NaN (or equal to a nodata value), optionally grown
  by a few pixels to drop resampling edges.
- :func:`scl_mask`: Sentinel-2 Level-2A scene classification (SCL) classes.
- :func:`qa_pixel_mask`: Landsat Collection 2 ``QA_PIXEL`` bit flags.
- :func:`spectral_cloud_mask`: a simple test for Level-1C / top-of-atmosphere
  images without SCL: bright in the visible and raised in the cirrus band B10,
  relative to the image's own statistics (after Zhu & Woodcock 2012, Fmask).
- :func:`cloud_shadow_mask`: the cloud mask moved to where it darkens the scene
  the most (the cloud-shadow matching of Fmask).
- :func:`exclude_mask`: all of the above that the bands allow.

The classes and bits that mean cloud are named here once (``SCL_CLOUD_CLASSES``,
``QA_PIXEL_BITS``, ``QA_PIXEL_CLOUD``); :mod:`changedet.sources` ranks scenes with the
same names.
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
from scipy import ndimage

from .errors import InvalidParameterError
from .indices import resolve_bands

__all__ = [
    "SCL_NODATA_CLASS",
    "SCL_CLOUD_CLASSES",
    "SCL_EXCLUDE",
    "QA_PIXEL_BITS",
    "QA_PIXEL_CLOUD",
    "QA_PIXEL_EXCLUDE",
    "nodata_mask",
    "scl_mask",
    "qa_pixel_mask",
    "classification_band",
    "has_cloud_information",
    "spectral_cloud_mask",
    "cloud_shadow_mask",
    "exclude_mask",
    "exclusion_mask",
]

#: SCL class of pixels without data.
SCL_NODATA_CLASS = 0
#: SCL classes that are cloud: 3 cloud shadow, 8 cloud medium probability, 9 cloud high probability, 10 thin cirrus.
SCL_CLOUD_CLASSES = (3, 8, 9, 10)
#: SCL classes left out: 1 saturated/defective and the cloud classes.
SCL_EXCLUDE = (1, *SCL_CLOUD_CLASSES)

#: Landsat Collection 2 ``QA_PIXEL`` flags and their bit (USGS LSDS-1619, Landsat 8-9 C2 L2
#: Science Product Guide; the same bits for Landsat 4-7 except cirrus, which they never set).
QA_PIXEL_BITS = {"fill": 0, "dilated_cloud": 1, "cirrus": 2, "cloud": 3, "cloud_shadow": 4, "snow": 5}
#: ``QA_PIXEL`` flags that are cloud (high-confidence cloud, its dilation, cirrus, cloud shadow).
QA_PIXEL_CLOUD = ("dilated_cloud", "cirrus", "cloud", "cloud_shadow")
#: ``QA_PIXEL`` flags left out: fill and the cloud flags (snow is kept, as SCL's class 11 is).
QA_PIXEL_EXCLUDE = ("fill", *QA_PIXEL_CLOUD)

#: Names of classification bands (any case): they are read for masks, never for change.
_SCL_NAMES = ("scl",)
_QA_PIXEL_NAMES = ("qa_pixel",)


def _check_image(image: np.ndarray, band_names: Sequence[str] | None) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[np.newaxis]
    if image.ndim != 3:
        raise InvalidParameterError(f"image must be (bands, rows, cols), got shape {image.shape}")
    if band_names is not None and len(band_names) != image.shape[0]:
        raise InvalidParameterError(
            f"band_names has {len(band_names)} names but the image has {image.shape[0]} bands"
        )
    return image


def _grow(mask: np.ndarray, pixels: int) -> np.ndarray:
    if pixels <= 0 or not mask.any():
        return mask
    return ndimage.binary_dilation(mask, structure=np.ones((3, 3), bool), iterations=int(pixels))


def nodata_mask(image: np.ndarray, *, nodata: float | None = None, edge_px: int = 0) -> np.ndarray:
    """Pixels where any band is NaN (or equals ``nodata``), grown by ``edge_px``.

    Parameters
    ----------
    image : (bands, rows, cols) or (rows, cols) ndarray
        The image.
    nodata : float, optional
        A value that also means nodata.
    edge_px : int
        Grow the mask by this many pixels (drops resampling edges).

    Returns
    -------
    (rows, cols) ndarray of bool
        True where a band has no data.

    Examples
    --------
    >>> import numpy as np
    >>> img = np.ones((2, 4, 4)); img[1, 0, 0] = np.nan
    >>> int(nodata_mask(img).sum()), int(nodata_mask(img, edge_px=1).sum())
    (1, 4)
    """
    image = _check_image(image, None)
    out = ~np.all(np.isfinite(image), axis=0)
    if nodata is not None:
        out |= np.any(image == nodata, axis=0)
    if edge_px < 0:
        raise InvalidParameterError(f"edge_px must be >= 0, got {edge_px}")
    return _grow(out, edge_px)


def scl_mask(scl: np.ndarray, *, classes: Sequence[int] = SCL_EXCLUDE, grow_px: int = 0) -> np.ndarray:
    """Exclude mask from a Sentinel-2 SCL band (classes 1, 3, 8, 9, 10 by default).

    Parameters
    ----------
    scl : (rows, cols) or (1, rows, cols) ndarray
        Scene classification codes; NaN counts as class 0 (nodata).
    classes : sequence of int
        Classes to leave out (``SCL_EXCLUDE``; ``SCL_CLOUD_CLASSES`` for cloud only).
    grow_px : int
        Grow the mask by this many pixels.

    Returns
    -------
    (rows, cols) ndarray of bool
        True where the class is one of ``classes``.

    Examples
    --------
    >>> import numpy as np
    >>> scl_mask(np.array([[4, 8], [3, 5]])).tolist()
    [[False, True], [True, False]]
    """
    scl = np.asarray(scl)
    if scl.ndim == 3 and scl.shape[0] == 1:
        scl = scl[0]
    if scl.ndim != 2:
        raise InvalidParameterError(f"scl must be a (rows, cols) array, got shape {scl.shape}")
    values = np.nan_to_num(scl, nan=0).astype(np.int64)
    return _grow(np.isin(values, list(classes)), grow_px)


def qa_pixel_mask(qa: np.ndarray, *, flags: Sequence[str] = QA_PIXEL_EXCLUDE, grow_px: int = 0) -> np.ndarray:
    """Exclude mask from a Landsat Collection 2 ``QA_PIXEL`` band.

    Each flag is one bit of the 16-bit value (``QA_PIXEL_BITS``: fill 0, dilated
    cloud 1, cirrus 2, cloud 3, cloud shadow 4, snow 5); a pixel is left out when
    any of the bits of ``flags`` is set.  The cloud, shadow and cirrus bits are the
    high-confidence ones, so a pixel of medium cloud confidence (e.g. 22080) stays.

    Parameters
    ----------
    qa : (rows, cols) or (1, rows, cols) ndarray
        ``QA_PIXEL`` values; NaN (a pixel without a value after resampling) counts as fill.
    flags : sequence of str
        Names from ``QA_PIXEL_BITS`` to leave out; default fill and the cloud flags
        (``QA_PIXEL_EXCLUDE``); ``QA_PIXEL_CLOUD`` for the cloud flags alone.
    grow_px : int
        Grow the mask by this many pixels.

    Returns
    -------
    (rows, cols) ndarray of bool
        True where one of the bits of ``flags`` is set.

    Raises
    ------
    InvalidParameterError
        An unknown flag name, or ``qa`` that is not one band.

    Examples
    --------
    >>> import numpy as np
    >>> qa = np.array([[21824, 22280], [23888, 1]])  # clear land, cloud, cloud shadow, fill
    >>> qa_pixel_mask(qa).tolist()
    [[False, True], [True, True]]
    >>> qa_pixel_mask(qa, flags=["fill"]).tolist()
    [[False, False], [False, True]]
    """
    unknown = [f for f in flags if f not in QA_PIXEL_BITS]
    if unknown:
        raise InvalidParameterError(
            f"flags {list(flags)!r} holds unknown QA_PIXEL flags {unknown}; use names from {sorted(QA_PIXEL_BITS)}"
        )
    qa = np.asarray(qa)
    if qa.ndim == 3 and qa.shape[0] == 1:
        qa = qa[0]
    if qa.ndim != 2:
        raise InvalidParameterError(f"qa must be a (rows, cols) QA_PIXEL array, got shape {qa.shape}; pass one band")
    bits = 0
    for f in flags:
        bits |= 1 << QA_PIXEL_BITS[f]
    values = np.nan_to_num(qa, nan=1 << QA_PIXEL_BITS["fill"]).astype(np.int64)
    return _grow((values & bits) != 0, grow_px)


def classification_band(band_names: Sequence[str], kind: Literal["scl", "qa_pixel"]) -> int | None:
    """Position of the Sentinel-2 ``SCL`` or Landsat ``QA_PIXEL`` band among ``band_names``.

    Names match in any case, whole (``SCL``, ``qa_pixel``) or as the last token of a
    file stem (``T39UWB_20240612_SCL``, ``LC09_L2SP_163021_20240614_QA_PIXEL``).

    Parameters
    ----------
    band_names : sequence of str
        Band names of an image.
    kind : {"scl", "qa_pixel"}
        Which classification band.

    Returns
    -------
    int or None
        The position of the first band of that kind, None when there is none.

    Examples
    --------
    >>> classification_band(["SR_B2", "SR_B3", "QA_PIXEL"], "qa_pixel"), classification_band(["B02"], "scl")
    (2, None)
    """
    if kind not in ("scl", "qa_pixel"):
        raise InvalidParameterError(f"kind must be 'scl' or 'qa_pixel', got {kind!r}")
    names = _SCL_NAMES if kind == "scl" else _QA_PIXEL_NAMES
    for i, name in enumerate(band_names):
        key = str(name).strip().lower()
        if any(key == n or key.endswith(("_" + n, "-" + n, "." + n)) for n in names):
            return i
    return None


def _robust_z(band: np.ndarray) -> np.ndarray:
    """(band - median) / (1.4826 x MAD) over the finite pixels; NaN stays NaN."""
    band = band.astype(np.float64)
    v = band[np.isfinite(band)]
    if v.size == 0:
        return np.full(band.shape, np.nan)
    med = np.median(v)
    mad = 1.4826 * np.median(np.abs(v - med))
    if not mad > 0:
        mad = float(np.std(v)) or 1.0
    return (band - med) / mad


def spectral_cloud_mask(
    image: np.ndarray,
    band_names: Sequence[str],
    *,
    min_size_px: int = 100,
    grow_px: int = 2,
    z_visible: float = 3.0,
    z_cirrus: float = 6.0,
    z_visible_without_cirrus: float = 8.0,
    z_visible_rim: float = 1.5,
    z_cirrus_rim: float = 1.0,
    rim_px: int = 30,
) -> np.ndarray:
    """A simple cloud test for top-of-atmosphere images without an SCL band.

    Clouds are bright in all visible bands and, unlike bright roofs and soils,
    raised in the cirrus band B10 (1375 nm), where water vapour hides the ground
    (Zhu & Woodcock 2012; Gao et al. 1993).  Every test is on robust z-scores of the
    image's own bands ((value - median) / (1.4826 MAD)), so the mask does not move
    with a linear gain/offset of the image.  A pixel is cloud when blue, green and
    red are all above ``z_visible`` and cirrus above ``z_cirrus``; without a cirrus
    band the visible bands must all exceed ``z_visible_without_cirrus``, a much
    weaker test (large bright roofs pass it).  Blobs smaller than ``min_size_px``
    are dropped.

    A cloud's thin rim fails those tests but is no ground either: from each cloud
    the mask grows, within ``rim_px`` pixels, over the connected pixels whose blue,
    green and red are all above ``z_visible_rim`` (and cirrus above
    ``z_cirrus_rim``), a hysteresis like Fmask's potential and confirmed cloud
    pixels.  Then it is grown by ``grow_px``.  On the OSCD city paris (10 m, three
    small cumulus in the after image) the rims were 1,040 changed pixels around
    the cloud cores, none of them true change; with them left out the default's F1
    there rose from 0.20 to 0.44 (``docs/measurements.md``, "Thin cloud rims").

    Parameters
    ----------
    image : (bands, rows, cols) ndarray
        Top-of-atmosphere image with blue, green and red (and ideally cirrus) bands.
    band_names : sequence of str
        One name per band (``B02``, ``blue``, ...).
    min_size_px : int
        Smallest cloud kept, in pixels.
    grow_px : int
        Grow the clouds by this many pixels.
    z_visible, z_cirrus, z_visible_without_cirrus : float
        Robust z-score thresholds of the tests above.
    z_visible_rim, z_cirrus_rim : float
        Robust z-score thresholds of a cloud's rim.
    rim_px : int
        Farthest a rim reaches from its cloud, in pixels (0: no rim).

    Returns
    -------
    (rows, cols) ndarray of bool
        True on clouds.

    Raises
    ------
    BandMismatchError
        Blue, green or red is missing.

    References
    ----------
    Zhu, Z., & Woodcock, C. E. (2012). Object-based cloud and cloud shadow detection
    in Landsat imagery. Remote Sensing of Environment, 118, 83-94.
    Gao, B.-C., Goetz, A. F. H., & Wiscombe, W. J. (1993). Cirrus cloud detection
    from airborne imaging spectrometer data using the 1.38 um water vapor band.
    Geophysical Research Letters, 20(4), 301-304.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> img = rng.normal(1000, 50, size=(4, 60, 60)); img[3] = rng.normal(15, 1, size=(60, 60))
    >>> img[:, 10:30, 10:30] += np.array([900, 900, 900, 30])[:, None, None]
    >>> m = spectral_cloud_mask(img, ["B02", "B03", "B04", "B10"])
    >>> bool(m[20, 20]), bool(m[50, 50])
    (True, False)
    """
    image = _check_image(image, band_names)
    found = resolve_bands(band_names)
    missing = [b for b in ("blue", "green", "red") if b not in found]
    if missing:
        from .errors import BandMismatchError

        raise BandMismatchError(
            f"spectral_cloud_mask needs blue, green and red bands; {missing} missing from {list(band_names)}"
        )
    with np.errstate(invalid="ignore"):  # NaN (nodata) is never cloud: -inf in every test
        vis = np.nan_to_num(np.min(np.stack([_robust_z(image[found[b]]) for b in ("blue", "green", "red")]), axis=0),
                            nan=-np.inf)
        cirrus = np.nan_to_num(_robust_z(image[found["cirrus"]]), nan=-np.inf) if "cirrus" in found else None
    cand = (vis > z_visible) & (cirrus > z_cirrus) if cirrus is not None else vis > z_visible_without_cirrus
    if not cand.any():
        return cand
    cand = ndimage.binary_opening(cand, structure=np.ones((3, 3), bool))
    labels, n = ndimage.label(cand)
    if n:
        sizes = np.bincount(labels.ravel())
        keep = sizes >= min_size_px
        keep[0] = False
        cand = keep[labels]
    if rim_px > 0 and cand.any():
        cand = _with_rims(cand, vis, cirrus, z_visible_rim, z_cirrus_rim, rim_px)
    return _grow(cand, grow_px)


def _with_rims(clouds: np.ndarray, vis: np.ndarray, cirrus: np.ndarray | None, z_vis: float, z_cirrus: float,
               reach: int) -> np.ndarray:
    """The clouds and the connected pixels within ``reach`` of them that are bright in the
    visible (``vis`` above ``z_vis``) and raised in cirrus (above ``z_cirrus``, when given)."""
    rim = vis > z_vis
    if cirrus is not None:
        rim &= cirrus > z_cirrus
    rim &= ndimage.distance_transform_edt(~clouds) <= reach
    labels, _ = ndimage.label(rim | clouds)
    touching = np.unique(labels[clouds])
    return np.isin(labels, touching[touching > 0])


def cloud_shadow_mask(
    image: np.ndarray,
    band_names: Sequence[str],
    clouds: np.ndarray,
    *,
    max_distance_px: int = 300,
    grow_px: int = 3,
) -> np.ndarray:
    """Cloud shadows: the cloud mask moved to where it covers the darkest pixels.

    Shadows are the clouds' shapes displaced along the sun direction; as the sun
    and cloud heights are unknown here, every displacement within
    ``max_distance_px`` is tried (one FFT correlation) and the one whose footprint
    is darkest in the nir band (relative to the scene) wins, as in Fmask's shadow
    matching; low winter sun casts shadows kilometres away, hence the wide default.  The
    displaced footprint counts as shadow only where it is dark (nir below the
    scene median).

    Parameters
    ----------
    image : (bands, rows, cols) ndarray
        The image (nir, else red, is the darkness band).
    band_names : sequence of str
        One name per band.
    clouds : (rows, cols) ndarray of bool
        The cloud mask, e.g. from :func:`spectral_cloud_mask`.
    max_distance_px : int
        Farthest displacement of a shadow from its cloud, in pixels.
    grow_px : int
        Grow the shadows by this many pixels.

    Returns
    -------
    (rows, cols) ndarray of bool
        True on cloud shadows (never on the clouds themselves).

    Examples
    --------
    >>> import numpy as np
    >>> img = np.full((4, 80, 80), 0.2); clouds = np.zeros((80, 80), bool)
    >>> clouds[10:20, 10:20] = True; img[:, 30:40, 40:50] = 0.05
    >>> m = cloud_shadow_mask(img, ["blue", "green", "red", "nir"], clouds, grow_px=0)
    >>> bool(m[35, 45]), bool(m[60, 60])
    (True, False)
    """
    image = _check_image(image, band_names)
    clouds = np.asarray(clouds, bool)
    if clouds.shape != image.shape[1:]:
        raise InvalidParameterError(f"clouds has shape {clouds.shape}, expected {image.shape[1:]}")
    if not clouds.any():
        return np.zeros_like(clouds)
    found = resolve_bands(band_names)
    band = found.get("nir", found.get("red", 0))
    nir = image[band].astype(np.float64)
    med = np.nanmedian(nir[~clouds]) if (~clouds).any() else np.nanmedian(nir)
    dark = np.nan_to_num(nir, nan=med) < med
    darkness = np.nan_to_num(med - nir, nan=0.0)
    darkness[clouds] = 0.0
    # Mean darkness under the displaced cloud mask for every displacement at once (FFT correlation).
    rows, cols = clouds.shape
    shape = (2 * rows, 2 * cols)
    fc = np.fft.rfft2(clouds.astype(np.float64), shape)
    dark_sum = np.fft.irfft2(np.fft.rfft2(darkness, shape) * np.conj(fc), shape)
    inside = np.fft.irfft2(np.fft.rfft2(np.ones_like(darkness), shape) * np.conj(fc), shape)
    dr = np.fft.fftfreq(shape[0], 1 / shape[0])[:, None]
    dc = np.fft.fftfreq(shape[1], 1 / shape[1])[None, :]
    dist2 = dr**2 + dc**2
    area = clouds.sum()
    usable = (dist2 <= max_distance_px**2) & (dist2 >= 9) & (inside >= 0.5 * area)
    if not usable.any():
        return np.zeros_like(clouds)
    value = np.where(usable, dark_sum / np.maximum(inside, 1), -np.inf)
    r, c = np.unravel_index(int(np.argmax(value)), value.shape)
    best_shift = (int(dr[r, 0]), int(dc[0, c]))
    moved = ndimage.shift(clouds, best_shift, order=0, mode="constant", cval=False)
    return _grow(moved & dark & ~clouds, grow_px)


#: Bands the spectral cloud test of :func:`exclude_mask` needs when there is no SCL band.
_SPECTRAL_CLOUD_BANDS = ("blue", "green", "red", "cirrus")


def exclude_mask(
    image: np.ndarray,
    band_names: Sequence[str],
    *,
    clouds: bool = True,
    edge_px: int = 0,
) -> np.ndarray:
    """Everything to leave out of one image.

    Nodata first (any spectral band NaN); then, with ``clouds``, the classes of an
    SCL band (:func:`scl_mask`) and the flags of a Landsat ``QA_PIXEL`` band
    (:func:`qa_pixel_mask`) when the image has them; else, when the cirrus band B10
    is present, the spectral cloud test and matched shadows.  Images with none of
    these get no cloud mask: bright roofs would be taken for clouds.

    Parameters
    ----------
    image : (bands, rows, cols) ndarray
        One date; classification bands (``SCL``, ``QA_PIXEL``, any case) keep their codes.
    band_names : sequence of str
        One name per band.
    clouds : bool
        Look for clouds (False: nodata only).
    edge_px : int
        Grow the nodata mask by this many pixels (drops resampling edges).

    Returns
    -------
    (rows, cols) ndarray of bool
        True where the pixel is left out.

    Examples
    --------
    >>> import numpy as np
    >>> img = np.full((3, 5, 5), 0.1); img[0, 0, 0] = np.nan
    >>> int(exclude_mask(img, ["red", "green", "blue"]).sum())
    1
    >>> scl = np.full((5, 5), 4); scl[4, 4] = 9
    >>> img = np.stack([np.full((5, 5), 0.1)] * 3 + [scl])
    >>> exclude_mask(img, ["B02", "B03", "B04", "SCL"])[4, 4]
    np.True_
    >>> qa = np.full((5, 5), 21824); qa[0, 0] = 22280  # clear land; high-confidence cloud
    >>> img = np.stack([np.full((5, 5), 0.1)] * 3 + [qa])
    >>> exclude_mask(img, ["red", "green", "blue", "qa_pixel"]).nonzero()
    (array([0]), array([0]))
    """
    image = _check_image(image, band_names)
    scl = classification_band(band_names, "scl")
    qa = classification_band(band_names, "qa_pixel")
    spectral = [i for i in range(image.shape[0]) if i not in (scl, qa)]
    out = nodata_mask(image if len(spectral) == image.shape[0] else image[spectral], edge_px=edge_px)
    if not clouds:
        return out
    if scl is not None or qa is not None:
        if scl is not None:
            out = out | scl_mask(image[scl])
        if qa is not None:
            out = out | qa_pixel_mask(image[qa])
        return out
    # without a classification band, only a cirrus band makes the spectral test trustworthy
    found = resolve_bands(band_names)
    if all(b in found for b in _SPECTRAL_CLOUD_BANDS):
        cloud = spectral_cloud_mask(image, band_names)
        if cloud.any():
            out = out | cloud | cloud_shadow_mask(image, band_names, cloud)
    return out


def has_cloud_information(band_names: Sequence[str]) -> bool:
    """Whether :func:`exclude_mask` looks for clouds in images with these bands.

    Parameters
    ----------
    band_names : sequence of str
        Band names of an image.

    Returns
    -------
    bool
        True with an SCL or ``QA_PIXEL`` band, or blue, green, red and the cirrus
        band; otherwise :func:`exclude_mask` only leaves out nodata.

    Examples
    --------
    >>> has_cloud_information(["B02", "B03", "B04", "B08"]), has_cloud_information(["B02", "B03", "B04", "SCL"])
    (False, True)
    >>> has_cloud_information(["SR_B2", "SR_B3", "SR_B4", "QA_PIXEL"])
    True
    """
    if classification_band(band_names, "scl") is not None or classification_band(band_names, "qa_pixel") is not None:
        return True
    found = resolve_bands(band_names)
    return all(b in found for b in _SPECTRAL_CLOUD_BANDS)


def exclusion_mask(
    before: np.ndarray,
    after: np.ndarray,
    *,
    band_names: Sequence[str],
    clouds: bool = True,
    edge_px: int = 0,
) -> np.ndarray:
    """Pixels to leave out of a pair: :func:`exclude_mask` of either date.

    Parameters
    ----------
    before, after : (bands, rows, cols) ndarray
        The two dates on one grid, with the same bands.
    band_names : sequence of str
        One name per band; ``SCL`` and ``QA_PIXEL`` bands (any case) are read as classes.
    clouds : bool
        Look for clouds (False: nodata only).
    edge_px : int
        Grow the nodata masks by this many pixels.

    Returns
    -------
    (rows, cols) ndarray of bool
        True where either date is left out.

    Raises
    ------
    InvalidParameterError
        The two dates differ in shape.

    Examples
    --------
    >>> import numpy as np
    >>> b = np.full((3, 4, 4), 0.1); a = b.copy(); a[:, 0, 0] = np.nan
    >>> int(exclusion_mask(b, a, band_names=["red", "green", "blue"]).sum())
    1
    """
    before = _check_image(before, band_names)
    after = _check_image(after, band_names)
    if before.shape != after.shape:
        raise InvalidParameterError(
            f"before {before.shape} and after {after.shape} differ in shape; put both on one grid first"
        )
    return exclude_mask(before, band_names, clouds=clouds, edge_px=edge_px) | exclude_mask(
        after, band_names, clouds=clouds, edge_px=edge_px
    )
