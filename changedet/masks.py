"""Pixels to leave out of change detection: nodata, image edges, clouds, cloud shadows.

Every function returns a (rows, cols) bool **exclude** mask (True = leave out).

- :func:`nodata_mask`: any band NaN (or equal to a nodata value), optionally grown
  by a few pixels to drop resampling edges.
- :func:`scl_mask`: Sentinel-2 Level-2A scene classification (SCL) classes.
- :func:`spectral_cloud_mask`: a simple test for Level-1C / top-of-atmosphere
  images without SCL: bright in the visible and raised in the cirrus band B10,
  relative to the image's own statistics (after Zhu & Woodcock 2012, Fmask).
- :func:`cloud_shadow_mask`: the cloud mask moved to where it darkens the scene
  the most (the cloud-shadow matching of Fmask).
- :func:`exclude_mask`: all of the above that the bands allow.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage

from .errors import InvalidParameterError
from .indices import resolve_bands

__all__ = [
    "SCL_EXCLUDE",
    "nodata_mask",
    "scl_mask",
    "spectral_cloud_mask",
    "cloud_shadow_mask",
    "exclude_mask",
    "exclusion_mask",
]

#: SCL classes left out: 1 saturated/defective, 3 cloud shadow, 8 cloud medium, 9 cloud high, 10 cirrus.
SCL_EXCLUDE = (1, 3, 8, 9, 10)


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
    are dropped, the rest grown by ``grow_px``.

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
    with np.errstate(invalid="ignore"):
        vis = np.min(np.stack([_robust_z(image[found[b]]) for b in ("blue", "green", "red")]), axis=0)
        if "cirrus" in found:
            cand = (np.nan_to_num(vis, nan=-np.inf) > z_visible) & (
                np.nan_to_num(_robust_z(image[found["cirrus"]]), nan=-np.inf) > z_cirrus
            )
        else:
            cand = np.nan_to_num(vis, nan=-np.inf) > z_visible_without_cirrus
    if not cand.any():
        return cand
    cand = ndimage.binary_opening(cand, structure=np.ones((3, 3), bool))
    labels, n = ndimage.label(cand)
    if n:
        sizes = np.bincount(labels.ravel())
        keep = sizes >= min_size_px
        keep[0] = False
        cand = keep[labels]
    return _grow(cand, grow_px)


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
    """Everything to leave out of one image: nodata, then SCL classes when an SCL band
    is present, else (when the cirrus band B10 is present) the spectral cloud test
    and matched shadows.  Images with neither get no cloud mask: bright roofs would
    be taken for clouds.

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
    """
    image = _check_image(image, band_names)
    found = resolve_bands(band_names)
    spectral = [i for i in range(image.shape[0]) if i != found.get("scl", -1)]
    out = nodata_mask(image if len(spectral) == image.shape[0] else image[spectral], edge_px=edge_px)
    if not clouds:
        return out
    if "scl" in found:
        return out | scl_mask(image[found["scl"]])
    # without SCL, only a cirrus band makes the spectral test trustworthy
    if all(b in found for b in _SPECTRAL_CLOUD_BANDS):
        cloud = spectral_cloud_mask(image, band_names)
        if cloud.any():
            out = out | cloud | cloud_shadow_mask(image, band_names, cloud)
    return out


def has_cloud_information(band_names: Sequence[str]) -> bool:
    """Whether :func:`exclude_mask` looks for clouds in images with these bands (SCL, or
    blue, green, red and the cirrus band); otherwise it only leaves out nodata.

    Examples
    --------
    >>> has_cloud_information(["B02", "B03", "B04", "B08"]), has_cloud_information(["B02", "B03", "B04", "SCL"])
    (False, True)
    """
    found = resolve_bands(band_names)
    return "scl" in found or all(b in found for b in _SPECTRAL_CLOUD_BANDS)


def exclusion_mask(
    before: np.ndarray,
    after: np.ndarray,
    *,
    band_names: Sequence[str],
    clouds: bool = True,
    edge_px: int = 0,
) -> np.ndarray:
    """Pixels to leave out of a pair: :func:`exclude_mask` of either date.

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
