"""Count new structures: changed areas split into individual building footprints.

At 1 m a row of new blocks on a cleared plot is one changed area; an analyst wants the
blocks.  :func:`find_structures` looks inside each changed area for building-like
segments, in two ways, and keeps for each area the one that explains more of it:

- **appearance** (with the after image): the area's dominant surface (the cleared
  ground of a construction site) is its median colour; pixels far from it in a robust
  z-score are objects, except shadows (much darker than the ground), which lie beside a
  footprint, not on it;
- **shape** (the mask alone): the area itself, for new buildings on ground that did
  not change.

Either foreground is split by a watershed on its distance transform, with markers from
the h-maxima (a neck narrower than the blocks either side splits, a long block does
not); pieces whose union is well fitted by a rectangle are merged back, and segments
too small, too large, too thin or not rectangular enough to be a building are dropped.
Each footprint gets its area, length, width and orientation from its oriented bounding
box (principal axes), and the id of the changed area that holds it.

When the mask comes from a classifier the analyst taught what counts (``classifier_mask=True``:
examples or a trained model), its regions already are roofs, not areas of mixed ground, and
a third way is tried beside the two:

- **classifier** (the mask alone): each region is split where it narrows (a watershed on its
  smoothed distance transform from maxima at least :data:`_PEAK_SPACING_M` apart; two pieces
  are joined back where the neck between them is nearly as wide as the narrower of them),
  with looser shape tests (a classifier's outline of a roof is ragged, not a clean rectangle).

On the LEVIR-CD tiles in ``shared/data`` (0.5 m suburbs, 41 new houses) with 20 change and 60
no-change examples drawn from the truth, 3 seeds: 81 structures counted for 123 houses, 51 of
them matching one house (intersection over union >= 0.5); the appearance and shape tests
alone counted 0-3 per run, none matching (``python benchmarks/structures.py --only levir
--examples 20``).  On the synthetic generators of ``benchmarks/structures.py`` with 20
examples the mean count error per generator is 0-17 %.

Pixels coarser than :data:`MAX_PIXEL_SIZE_M` give no count (neighbouring blocks merge
into one blob): the result says why instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np
from scipy import ndimage

from .errors import InvalidParameterError
from .objects import ChangePolygons
from .raster import GeoRaster, Grid

__all__ = ["MAX_PIXEL_SIZE_M", "Structures", "find_structures", "no_structures"]

#: Pixels finer than or equal to this (m) are fine enough to count structures.
MAX_PIXEL_SIZE_M = 2.0

# appearance: robust z-score above which a pixel is not the area's dominant surface
_Z_OBJECT = 3.0
# a pixel this much darker than the dominant surface (relative brightness) is shadow
_SHADOW_DROP = 0.35
# this much darker is shadow whatever its colour (the noise of a black shadow looks like colour)
_DEEP_SHADOW_DROP = 0.45
# shadows are narrower than this (m): a 10 m high block in a sun 45 degrees up
_MAX_SHADOW_M = 11.0
# shape priors of a building footprint
_MIN_RECTANGULARITY = 0.78
_MERGE_RECTANGULARITY = 0.80
# corners of a building's rectangle are full; an ellipse leaves them about a third full
_MIN_CORNER_FILL = 0.6
# a connected foreground this rectangular is kept whole without trying a split
_WHOLE_RECTANGULARITY = 0.95
_MAX_ASPECT = 6.0
_MIN_WIDTH_M = 5.0
# width of an area's rim (m), where an object found by appearance is a strip of the surroundings
_RIM_M = 2.0
# a footprint that stands out this much (robust z) from its surroundings in the before image
# as well was there before
_WAS_THERE_Z = 3.0
# what sticks out of a building narrower than this (m) is cut off before its shape is judged
_PROTRUSION_M = 4.0
# h of the h-maxima markers (m of distance to the edge): a neck this much narrower splits
_H_M = 1.5
# a classifier's mask: maxima of the distance transform at least this far apart (m) seed pieces
_PEAK_SPACING_M = 5.0
# ... and two pieces stay apart where the neck between them is narrower than this share of the
# narrower piece's half-width and more than _NECK_DEPTH_PX pixels narrower (a long block's ridge
# is flat, and a classifier's ragged outline makes it a pixel lower here and there: its pieces
# join back)
_NECK_RATIO = 0.95
_NECK_DEPTH_PX = 2.0
# Gaussian smoothing (pixels) of the distance transform of a classifier's region
_DIST_SMOOTH_PX = 1.0
# looser shape tests for a classifier's outline of a roof
_CLASSIFIER_MIN_RECTANGULARITY = 0.6
_CLASSIFIER_MIN_CORNER_FILL = 0.15


@dataclass(frozen=True, eq=False)
class Structures:
    """Individual structures found in the changed areas, or why none were counted.

    Attributes
    ----------
    polygons : ChangePolygons
        One footprint per structure, in the grid's CRS (pixel coordinates without one);
        properties ``id``, ``change_id`` (the changed area holding it), ``area_m2``,
        ``length_m``, ``width_m``, ``orientation_deg`` (of the long side, clockwise from
        the grid's up direction: grid north, 0-180), ``rectangularity`` (area over its
        oriented box), ``centroid_lon``, ``centroid_lat`` (WGS84; ``centroid_x``,
        ``centroid_y`` in pixel coordinates for a grid without CRS) and ``source``
        (``"appearance"``, ``"shape"`` or ``"classifier"``: how it was split from its area).
    count : int or None
        The number of structures; None when they were not counted.
    reason : str or None
        Why they were not counted (pixels too coarse, no pixel size, ...).
    pixel_size_m : float or None
        The pixel size they were counted at.
    """

    polygons: ChangePolygons
    count: int | None
    reason: str | None = None
    pixel_size_m: float | None = None
    settings: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.polygons)

    @property
    def footprints_m2(self) -> np.ndarray:
        """Footprint areas in m², one per structure."""
        return np.array([p["area_m2"] for p in self.polygons.properties], dtype=float)

    def summary(self) -> dict[str, Any]:
        """What ``summary.json`` holds under ``results.structures``.

        Returns
        -------
        dict
            ``count``, ``median_footprint_m2``, ``total_footprint_m2``,
            ``median_length_m``, ``median_width_m``, ``by_change_id`` (count per changed
            area), ``pixel_size_m``, ``method`` and the settings; with ``count`` None,
            ``reason`` says why.
        """
        if self.count is None:
            return {"count": None, "reason": self.reason, "pixel_size_m": self.pixel_size_m}
        props = self.polygons.properties
        areas = self.footprints_m2

        def med(key: str) -> float | None:
            return round(float(np.median([p[key] for p in props])), 2) if props else None

        by_area: dict[str, int] = {}
        for p in props:
            by_area[str(p["change_id"])] = by_area.get(str(p["change_id"]), 0) + 1
        return {
            "count": int(self.count),
            "median_footprint_m2": round(float(np.median(areas)), 2) if areas.size else None,
            "total_footprint_m2": round(float(areas.sum()), 2),
            "median_length_m": med("length_m"),
            "median_width_m": med("width_m"),
            "by_change_id": by_area,
            "pixel_size_m": self.pixel_size_m,
            "method": "watershed on the distance transform (h-maxima markers) of each changed area's objects "
                      "(after image) or of the area itself, pieces merged when a rectangle fits their union",
            "settings": dict(self.settings),
        }

    def table(self) -> Any:
        """One row per structure: its properties and its ``geometry`` (shapely).

        Returns
        -------
        pandas.DataFrame, or list of dict where pandas is not installed
        """
        records = [{**p, "geometry": g} for p, g in zip(self.polygons.properties, self.polygons.geometries)]
        try:
            import pandas as pd
        except ImportError:  # pragma: no cover - pandas is in the notebooks extra
            return records
        where = ["centroid_lon", "centroid_lat"] if records and "centroid_lon" in records[0] else ["centroid_x", "centroid_y"]
        cols = ["id", "change_id", "area_m2", "length_m", "width_m", "orientation_deg", "rectangularity",
                *where, "source", "geometry"]
        return pd.DataFrame.from_records(records, columns=cols)

    def __repr__(self) -> str:
        if self.count is None:
            return f"Structures(not counted: {self.reason})"
        s = self.summary()
        med = f", median footprint {s['median_footprint_m2']:.0f} m2" if s["median_footprint_m2"] is not None else ""
        return f"Structures({self.count} structures{med})"


def no_structures(reason: str, *, crs: Any = None, pixel_size_m: float | None = None) -> Structures:
    """A :class:`Structures` that holds no count, and why.

    Parameters
    ----------
    reason : str
        Why the structures were not counted; goes into ``summary.json``.
    crs : CRS, optional
        The grid's CRS (for an empty layer).
    pixel_size_m : float, optional
        The grid's pixel size.

    Returns
    -------
    Structures
        ``count`` None, no polygons.

    Examples
    --------
    >>> no_structures("a windowed run").summary()
    {'count': None, 'reason': 'a windowed run', 'pixel_size_m': None}
    """
    return Structures(ChangePolygons((), (), crs), None, str(reason), pixel_size_m)


def _pixel_size(mask: GeoRaster, pixel_size_m: float | None) -> float | None:
    if mask.crs is not None:
        return float(mask.grid.pixel_size_m)
    return float(pixel_size_m) if pixel_size_m else None


def find_structures(
    mask: GeoRaster,
    after: GeoRaster | None = None,
    *,
    areas: ChangePolygons | None = None,
    before: GeoRaster | None = None,
    pixel_size_m: float | None = None,
    min_area_m2: float = 40.0,
    max_area_m2: float = 6000.0,
    max_length_m: float = 200.0,
    classifier_mask: bool = False,
) -> Structures:
    """Split the changed areas of a mask into individual structures (building footprints).

    Parameters
    ----------
    mask : GeoRaster
        One band on the analysis grid: 1 change, anything else not.
    after : GeoRaster, optional
        The after image on the same grid (its spectral bands); with it, structures are
        also found inside areas that changed as a whole (a cleared plot with new blocks).
    areas : ChangePolygons, optional
        The changed areas (polygons on the same grid); each structure's ``change_id`` is
        the ``id`` of the area holding it (else the number of its mask region).
    before : GeoRaster, optional
        The before image on the same grid (the bands of ``after``).  With it, a shape the
        before image already shows as clearly as the after image (an existing building
        whose roof was repainted, or that the light made look changed) is not counted as new.
    pixel_size_m : float, optional
        Pixel size of a grid without a CRS (else from the grid).
    min_area_m2 : float
        Segments smaller than this are not a building (a car, a pile, noise).
    max_area_m2 : float
        Segments larger than this are not one building (a plot, a yard).
    max_length_m : float
        Segments longer than this are not one building (a road, a fence line).
    classifier_mask : bool
        The mask comes from a classifier taught what counts (examples or a trained
        model): its regions are also split where they narrow and judged by looser shape
        tests (source ``"classifier"``); of the ways tried, each area keeps the one that
        explains it as buildings best.

    Returns
    -------
    Structures
        The footprints and their count; with pixels coarser than :data:`MAX_PIXEL_SIZE_M`
        (or no pixel size), no count and the reason.

    Examples
    --------
    >>> from affine import Affine
    >>> m = np.zeros((1, 60, 80), "uint8")
    >>> m[0, 10:25, 5:65] = 1; m[0, 25:29, 30:34] = 1; m[0, 29:44, 5:65] = 1  # two blocks and a neck
    >>> s = find_structures(GeoRaster(m, Affine(1, 0, 0, 0, -1, 60), "EPSG:32639"))
    >>> s.count, [round(p["area_m2"]) for p in s.polygons.properties]
    (2, [898, 898])
    >>> find_structures(GeoRaster(m, Affine(10, 0, 0, 0, -10, 600), "EPSG:32639")).reason[:30]
    'pixels of 10 m are coarser tha'
    """
    if not isinstance(mask, GeoRaster):
        raise InvalidParameterError(f"mask must be a GeoRaster (1 change), got {type(mask).__name__}")
    if mask.count != 1:
        raise InvalidParameterError(f"mask must have one band, got {mask.count}")
    if after is not None:
        if not isinstance(after, GeoRaster):
            raise InvalidParameterError(f"after must be a GeoRaster on the mask's grid, got {type(after).__name__}")
        if after.shape[1:] != mask.shape[1:]:
            raise InvalidParameterError(
                f"after has {after.shape[1:]} pixels but the mask {mask.shape[1:]}; pass the after image on the "
                "mask's grid (ChangeResult.after)"
            )
    for name, value in (("min_area_m2", min_area_m2), ("max_area_m2", max_area_m2), ("max_length_m", max_length_m)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise InvalidParameterError(f"{name} must be a positive number of metres, got {value!r}")
    if min_area_m2 >= max_area_m2:
        raise InvalidParameterError(f"min_area_m2 ({min_area_m2}) must be below max_area_m2 ({max_area_m2})")
    px = _pixel_size(mask, pixel_size_m)
    if px is None:
        return no_structures("the images have no georeferencing and no pixel size: structures are counted in metres; "
                             "pass pixel_size_m (--pixel-size-m)", crs=mask.crs)
    if px > MAX_PIXEL_SIZE_M + 1e-9:
        return no_structures(
            f"pixels of {px:.3g} m are coarser than {MAX_PIXEL_SIZE_M:g} m: neighbouring buildings merge into one "
            f"changed area; structures are counted on images of {MAX_PIXEL_SIZE_M:g} m or finer",
            crs=mask.crs, pixel_size_m=round(px, 4),
        )
    settings = {"min_area_m2": float(min_area_m2), "max_area_m2": float(max_area_m2),
                "max_length_m": float(max_length_m), "h_maxima_m": _H_M, "object_z": _Z_OBJECT,
                "min_rectangularity": _MIN_RECTANGULARITY, "merge_rectangularity": _MERGE_RECTANGULARITY}
    if classifier_mask:  # the shape and appearance tests run too, with their own settings above
        settings.update({"peak_spacing_m": _PEAK_SPACING_M, "neck_ratio": _NECK_RATIO, "neck_depth_px": _NECK_DEPTH_PX,
                         "classifier_min_rectangularity": _CLASSIFIER_MIN_RECTANGULARITY,
                         "classifier_min_corner_fill": _CLASSIFIER_MIN_CORNER_FILL})
    changed = mask.data[0] == 1
    labels, n = ndimage.label(changed, structure=np.ones((3, 3), bool))
    ids, _ = _area_ids(labels, n, areas, mask.grid)
    bands = None
    if after is not None:
        bands = np.asarray(after.data, dtype=np.float32)
    old = None
    if before is not None and after is not None:
        if not isinstance(before, GeoRaster) or before.shape != after.shape:
            raise InvalidParameterError(
                f"before must be a GeoRaster with the after image's bands and pixels {after.shape}; got "
                f"{getattr(before, 'shape', type(before).__name__)}"
            )
        old = np.asarray(before.data, dtype=np.float32)
    prior = _Prior(px, min_area_m2, max_area_m2, max_length_m)
    feats = _appearance(bands) if bands is not None else None
    ring_px = max(1, int(round(_RING_M / px)))
    segments: list[_Segment] = []
    pad = 2
    for k, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        r0, r1 = max(sl[0].start - pad, 0), min(sl[0].stop + pad, labels.shape[0])
        c0, c1 = max(sl[1].start - pad, 0), min(sl[1].stop + pad, labels.shape[1])
        area = labels[r0:r1, c0:c1] == k
        n_px = int(area.sum())
        if n_px * px * px < min_area_m2:
            continue
        if classifier_mask:
            candidates = [_classifier_segments(area, prior)]
            # the shape and appearance tests too: rows of roofs a few metres apart, which the
            # classifier's smoothed outline joins, stand apart in the after image
            candidates.append(_segments_of(area, prior, "shape"))
        else:
            candidates = [_segments_of(area, prior, "shape")]
        if bands is not None and n_px * px * px > min_area_m2 * 2:
            # the area's rim: where its edge cuts through the ground around it (a field strip
            # left in the area by the mask's blur looks like an object, and lies along the rim)
            rim = area & ~ndimage.binary_erosion(area, _disk(max(1, int(round(_RIM_M / px)))))
            for objects in _objects_by_appearance(bands[:, r0:r1, c0:c1], area, px):
                candidates.append([s for s in _segments_of(objects, prior, "appearance")
                                   if rim[s.rows, s.cols].mean() <= 0.25])
        contrast = None
        if feats is not None and sum(len(c) > 0 for c in candidates) > 1:
            spread = _robust_spread(feats[:, r0:r1, c0:c1][:, area])
            contrast = [_median_contrast(c, feats, r0, c0, ring_px, spread) for c in candidates]
        best = _choose(candidates, contrast)
        for s in best:
            s.rows += r0
            s.cols += c0
            s.change_id = ids[k]
            segments.append(s)
    if old is not None:
        segments = [s for s in segments if not _was_there(s, old, bands, px)]
    return _as_structures(segments, mask.grid, px, settings)


# --------------------------------------------------------------------------- internals
@dataclass
class _Prior:
    px: float
    min_area_m2: float
    max_area_m2: float
    max_length_m: float


@dataclass
class _Segment:
    rows: np.ndarray
    cols: np.ndarray
    area_m2: float
    length_m: float
    width_m: float
    orientation_deg: float
    rectangularity: float
    source: str
    change_id: Any = None
    corner_fill: float = 1.0


def _area_ids(labels: np.ndarray, n: int, areas: ChangePolygons | None,
              grid: Grid) -> tuple[list[Any], list[str | None]]:
    """For each mask region (1..n), the id and change class of the changed-area polygon over most of it."""
    ids: list[Any] = list(range(n + 1))
    classes: list[str | None] = [None] * (n + 1)
    if areas is None or not len(areas):
        return ids, classes
    from rasterio import features

    props = areas.properties
    burnt = features.rasterize([(g, i + 1) for i, g in enumerate(areas.geometries)], out_shape=labels.shape,
                               transform=grid.transform, fill=0, dtype="int32")
    inside = labels > 0
    pairs = np.stack([labels[inside], burnt[inside]], axis=1)
    if not pairs.size:
        return ids, classes
    uniq, counts = np.unique(pairs, axis=0, return_counts=True)
    order = np.lexsort((-counts, uniq[:, 0]))
    seen: set[int] = set()
    for (lab, poly), _ in zip(uniq[order].tolist(), counts[order].tolist()):
        if lab in seen:
            continue
        seen.add(lab)
        if poly > 0:
            ids[lab] = props[poly - 1].get("id", poly)
            classes[lab] = props[poly - 1].get("change_class")
    return ids, classes


def _objects_by_appearance(img: np.ndarray, area: np.ndarray, px: float) -> list[np.ndarray]:
    """Candidate objects of an area: the pixels unlike its ground, for a few guesses of the ground.

    The ground is guessed as the whole area (its median: a cleared plot with blocks on
    it) and as each of three colour clusters of the area that covers a tenth of it or more
    (the blocks may cover more of a plot than the ground between them).  Against a guess,
    two robust z-scores: of the colour (each band over the brightness: a grey roof on
    brown ground, whatever the light) and of the brightness (a white slab on grey
    ground); much darker than the ground is shadow, not an object.
    """
    sigma = max(1.0, 1.0 / px)
    finite = np.isfinite(img).all(axis=0)
    inside = area & finite
    if inside.sum() < 16:
        return []
    filled = [np.where(finite, b, np.nanmedian(b[inside])) for b in img]
    smooth = np.stack([ndimage.gaussian_filter(b, sigma) for b in filled])
    floor = max(float(np.abs(smooth[:, inside]).mean()) * 1e-3, 1e-6)
    bright = np.log(np.maximum(smooth.mean(axis=0), floor))
    chroma = [np.log(np.maximum(b, floor)) - bright for b in smooth] if len(smooth) > 1 else []
    del smooth  # each of these is the area's box in every band: freed as soon as used
    # the same on a finer scale: the smoothing finds objects, this puts their edges back
    fine = np.stack([ndimage.gaussian_filter(b, 0.5) for b in filled])
    del filled
    fine_bright = np.log(np.maximum(fine.mean(axis=0), floor))
    fine_chroma = [np.log(np.maximum(b, floor)) - fine_bright for b in fine] if len(fine) > 1 else []
    del fine
    guesses = [inside]
    feats = np.stack([bright[inside], *[c[inside] for c in chroma]], axis=1)
    feats = feats / np.maximum(_robust_spread(feats.T), 0.01)
    if len(feats) >= 300:
        from scipy.cluster.vq import kmeans2

        sample = feats[:: max(1, len(feats) // 20000)]
        centres, _ = kmeans2(sample, 3, minit="++", seed=0)
        # the nearest centre, one centre at a time (an (n, 3, bands) temporary was 300 MB on a
        # 100 ha plot at 0.5 m); ties go to the first centre, as argmin gives them
        cluster = np.zeros(len(feats), dtype=np.intp)
        best = None
        for c, centre in enumerate(centres):
            d = np.square(feats - centre).sum(axis=1)
            if best is None:
                best = d
            else:
                closer = d < best
                cluster[closer] = c
                np.minimum(best, d, out=best)
        for c in range(3):
            sel = cluster == c
            if sel.mean() >= 0.1:
                g = np.zeros_like(inside)
                g[inside] = sel
                guesses.append(g)
    from skimage.filters import apply_hysteresis_threshold

    wide = _disk(max(1, int(round(_MAX_SHADOW_M / 2 / px))))
    out = []
    for ground in guesses:
        def robust_z(x: np.ndarray, like: np.ndarray | None = None) -> tuple[np.ndarray, float]:
            v = (x if like is None else like)[ground]
            m = float(np.median(v))
            s = max(1.4826 * float(np.median(np.abs(v - m))), 0.01)
            return (x - m) / s, m

        z_bright, m_bright = robust_z(bright)
        z_colour = np.sqrt(np.mean(np.square([robust_z(c)[0] for c in chroma]), axis=0)) if chroma \
            else np.zeros_like(z_bright)
        # shadow: much darker than the ground with the ground's colour (a dark red roof half is not)
        shadow = ((bright < m_bright + math.log(1 - _SHADOW_DROP)) & (z_colour < _Z_OBJECT)) | (
            bright < m_bright + math.log(1 - _DEEP_SHADOW_DROP))
        # a shadow is a band beside a building; a dark patch wider than that is a dark roof
        shadow &= ~ndimage.binary_propagation(ndimage.binary_opening(shadow, wide), mask=shadow)
        # darker than the ground with its colour is shade (penumbra, a wet patch), not an object
        z = np.maximum(z_colour, z_bright)
        z[shadow | ~inside] = 0
        # hysteresis: a pixel a little off the ground joins an object that is clearly off it
        objects = apply_hysteresis_threshold(z, _Z_OBJECT, _Z_OBJECT * 4 / 3)
        # edges: a pixel of an object stays when it is off the ground on the fine scale too
        # (on the smooth scale every object is a sigma wider)
        zf = np.maximum(robust_z(fine_bright)[0], np.sqrt(np.mean(np.square(
            [robust_z(f)[0] for f in fine_chroma]), axis=0)) if fine_chroma else 0.0)
        # Only the rim an object gained from the smoothing is trimmed: its inside stays whole
        # (noisy pixels inside a roof fail the fine test and would cut it into pieces; at
        # 0.5 m and noise 10 DN a 60 x 15 m block came out in ragged halves)
        core = ndimage.binary_erosion(objects, _disk(int(math.ceil(2 * sigma))))
        objects &= (zf > _Z_OBJECT * 0.75) | core
        if objects.any():
            out.append(objects)
    return out


def _disk(radius: int) -> np.ndarray:
    y, x = np.ogrid[-radius : radius + 1, -radius : radius + 1]
    return (x * x + y * y) <= radius * radius


def _segments_of(fg: np.ndarray, prior: _Prior, source: str) -> list[_Segment]:
    """Building-like segments of a foreground: opened, split by watershed, merged, filtered.

    Pieces a narrow gap apart (texture biting into a roof) are also tried joined: each
    group of pieces that a closing joins is one building when the joined shape explains
    clearly more of it than the pieces do on their own (blocks 3 m apart each fit a
    rectangle on their own and stay apart).
    """
    px = prior.px
    r_open = max(1, int(round(1.0 / px)))
    fg = _fill_small_holes(ndimage.binary_opening(fg, _disk(r_open)), prior)
    if not fg.any():
        return []
    eight = np.ones((3, 3), bool)
    comp, _ = ndimage.label(fg, structure=eight)
    joined = _fill_small_holes(ndimage.binary_closing(fg, _disk(r_open), border_value=0) | fg, prior)
    groups, _ = ndimage.label(joined, structure=eight)
    out = []
    for g, sl in enumerate(ndimage.find_objects(groups), start=1):
        if sl is None:
            continue
        group = groups[sl] == g
        if group.sum() * px * px < prior.min_area_m2:
            continue
        inside = np.unique(comp[sl][group & (comp[sl] > 0)])
        apart: list[_Segment] = []
        for k in inside.tolist():
            apart += _component(comp[sl] == k, prior, source)
        candidates = [apart]
        if len(inside) > 1 or (group & ~(comp[sl] > 0)).sum() * px * px >= prior.min_area_m2 / 4:
            candidates.append(_component(group, prior, source))
        chosen = candidates[0] if len(candidates) == 1 else (
            candidates[1] if _explained(candidates[1]) > 1.25 * _explained(candidates[0]) else candidates[0])
        for s in chosen:
            s.rows += sl[0].start
            s.cols += sl[1].start
            out.append(s)
    return out


def _fill_small_holes(fg: np.ndarray, prior: _Prior) -> np.ndarray:
    """Holes smaller than a building filled (a roof unit, a skylight, texture)."""
    holes = ndimage.binary_fill_holes(fg) & ~fg
    if not holes.any():
        return fg
    hl, _ = ndimage.label(holes)
    sizes = np.bincount(hl.ravel())
    small = sizes * prior.px * prior.px < prior.min_area_m2
    small[0] = False
    return fg | small[hl]


def _component(piece: np.ndarray, prior: _Prior, source: str) -> list[_Segment]:
    """One connected foreground: one building, several (split), or none.

    Bites of texture into its edge are filled and what sticks out of it narrower than
    4 m (noise at a shadow's edge, a thread to a neighbour) is cut off, this piece alone
    (no neighbour joins it); the parts left are judged one by one.
    """
    px = prior.px
    r = max(1, int(round(1.0 / px)))
    pad = 2 * r + 2
    big = np.pad(piece, pad)
    big = ndimage.binary_closing(big, _disk(r)) | big
    closed = _part(big[pad:-pad, pad:-pad], prior, source)
    if len(closed) == 1 and closed[0].rectangularity >= _MERGE_RECTANGULARITY:
        return closed  # one building, and a rectangle fits it well
    big = ndimage.binary_opening(big, _disk(max(1, int(round(_PROTRUSION_M / 2 / px)))))
    parts, n = ndimage.label(big[pad:-pad, pad:-pad], structure=np.ones((3, 3), bool))
    out: list[_Segment] = []
    for k, sl in enumerate(ndimage.find_objects(parts), start=1):
        if sl is None:
            continue
        for s in _part(parts[sl] == k, prior, source):
            s.rows += sl[0].start
            s.cols += sl[1].start
            out.append(s)
    return out if _explained(out) >= 0.8 * _explained(closed) else closed


def _part(piece: np.ndarray, prior: _Prior, source: str) -> list[_Segment]:
    px = prior.px
    rr, cc = np.nonzero(piece)
    if rr.size * px * px < prior.min_area_m2:
        return []
    whole = _shape(rr, cc, px, source)
    pieces = []
    if whole.rectangularity < _WHOLE_RECTANGULARITY or not _plausible(whole, prior):
        pieces = _split(piece, prior, source)
    # the split stands when the merge (the rectangle prior) kept two or more buildings that
    # explain most of the piece; else the piece is one building or none
    split_wins = len(pieces) >= 2 and sum(p.area_m2 for p in pieces) >= 0.7 * whole.area_m2
    if _plausible(whole, prior) and not split_wins:
        return [whole]
    return pieces


def _h_maxima(image: np.ndarray, h: int) -> np.ndarray:
    """``skimage.morphology.h_maxima(image, h)`` of an integer image (8-connected), by level sets.

    A pixel is an h-maximum when its value is the largest in its 8-connected component of
    the pixels above its value minus ``h`` (the definition by reconstruction by dilation
    of ``image - h`` under ``image``, read per level): such a pixel lies on a regional
    maximum, so only those are tested, one labelling per value they take (3.5 on average on
    the structures' distance images).  scikit-image's reconstruction sorts every pixel
    instead: on the 476 distance images of the notebook's re-run and the 1 m demo, 4.5 s
    against 0.55 s, the same masks (``tests/test_structures.py`` compares the two on real and
    random images).

    Parameters
    ----------
    image : (rows, cols) ndarray of int
        The image (the watershed's quantised distance transform).
    h : int
        The least height of a maximum above its surroundings.

    Returns
    -------
    (rows, cols) ndarray of uint8
        1 at the h-maxima (none when ``h`` exceeds the image's range, as scikit-image).

    Examples
    --------
    >>> f = np.array([[0, 0, 0, 0, 0], [0, 3, 0, 1, 0], [0, 0, 0, 0, 0]])
    >>> _h_maxima(f, 2)
    array([[0, 0, 0, 0, 0],
           [0, 1, 0, 0, 0],
           [0, 0, 0, 0, 0]], dtype=uint8)
    """
    f = np.asarray(image)
    out = np.zeros(f.shape, np.uint8)
    if f.size == 0 or h > int(f.max()) - int(f.min()):
        return out
    from skimage.morphology import local_maxima

    eight = np.ones((3, 3), bool)
    # an h-maximum's plateau has no higher neighbour (it would be in the same component):
    # only the regional maxima are tested (scikit-image's flood fill, one pass)
    cand = np.flatnonzero(local_maxima(f, connectivity=2, allow_borders=True))
    values = f.ravel()[cand]
    for v in np.unique(values):
        labels, n = ndimage.label(f > v - h, structure=eight)
        at = labels.ravel()[cand]
        top = np.zeros(n + 1, f.dtype)
        np.maximum.at(top, at, values)  # a component's largest value is at one of its candidates
        out.ravel()[cand[(values == v) & (top[at] == v)]] = 1
    return out


def _split(piece: np.ndarray, prior: _Prior, source: str) -> list[_Segment]:
    """Watershed of one connected foreground on its distance transform, pieces merged back where a rectangle fits."""
    from skimage.segmentation import watershed

    px = prior.px
    fg = np.pad(piece, 1)
    dist = ndimage.distance_transform_edt(fg) * px
    # smoothed and quantised to a quarter metre: a ragged edge does not make a maximum of its own
    smooth = ndimage.gaussian_filter(dist, max(1.0, 1.0 / px))
    quant = np.round(smooth / 0.25).astype(np.int32)
    markers, n_markers = ndimage.label(_h_maxima(quant, int(round(_H_M / 0.25))), structure=np.ones((3, 3), bool))
    if n_markers < 2:
        seg = fg.astype(np.int32)
    else:
        seg = watershed(-smooth, markers, mask=fg)
    seg = _merge_pieces(seg, prior)[1:-1, 1:-1]
    return [s for s in _measure(seg, px, source) if _plausible(s, prior)]


def _measure(seg: np.ndarray, px: float, source: str) -> list[_Segment]:
    out = []
    for k, sl in enumerate(ndimage.find_objects(seg), start=1):
        if sl is None:
            continue
        rr, cc = np.nonzero(seg[sl] == k)
        if rr.size < 3:
            continue
        rr = rr + sl[0].start
        cc = cc + sl[1].start
        out.append(_shape(rr, cc, px, source))
    return out


def _shape(rr: np.ndarray, cc: np.ndarray, px: float, source: str) -> _Segment:
    """The minimum-area rectangle around the pixels: length, width, orientation, rectangularity."""
    import shapely

    # the hull only needs each row's first and last pixel
    r0 = int(rr.min())
    h = int(rr.max()) - r0 + 1
    lo = np.full(h, np.iinfo(np.int64).max, np.int64)
    hi = np.full(h, -1, np.int64)
    np.minimum.at(lo, rr - r0, cc)
    np.maximum.at(hi, rr - r0, cc)
    rows = np.flatnonzero(hi >= 0)
    pts = np.concatenate([np.stack([rows + r0, lo[rows]], 1), np.stack([rows + r0, hi[rows]], 1)]).astype(float)
    hull = shapely.convex_hull(shapely.multipoints(pts[:, ::-1]))  # (x=col, y=row)
    corner_fill = 1.0
    if hull.geom_type != "Polygon":  # a line of pixels
        d = np.ptp(pts, axis=0)
        length, width = float(np.hypot(*d)) + 1.0, 1.0
        vec = (d[0], d[1])
    else:
        box = np.asarray(shapely.minimum_rotated_rectangle(hull).exterior.coords)[:4]
        e1, e2 = box[1] - box[0], box[2] - box[1]
        n1, n2 = float(np.hypot(*e1)), float(np.hypot(*e2))
        # centres span one pixel less than the footprint: a pixel's width along each side
        if n1 >= n2:
            length, width, vec = n1 + 1.0, n2 + 1.0, (e1[1], e1[0])
        else:
            length, width, vec = n2 + 1.0, n1 + 1.0, (e2[1], e2[0])
        corner_fill = _corner_fill(rr, cc, box, n1, n2)
    n = float(rr.size)
    # azimuth of the long side, clockwise from up (-row); vec is (drow, dcol)
    orient = math.degrees(math.atan2(vec[1], -vec[0])) % 180.0
    return _Segment(rr, cc, n * px * px, length * px, width * px, float(orient), min(n / (length * width), 1.0), source,
                    corner_fill=corner_fill)


def _corner_fill(rr: np.ndarray, cc: np.ndarray, box: np.ndarray, n1: float, n2: float) -> float:
    """How full the four corners of the pixels' minimum rectangle are (the outer quarter of
    each side): about 1 for a rectangle, about 0.3 for an ellipse (a pile, a tank, a tree)."""
    if n1 < 2 or n2 < 2:
        return 1.0
    u1 = (box[1] - box[0]) / n1
    u2 = (box[2] - box[1]) / n2
    x, y = cc - box[0][0], rr - box[0][1]
    a, b = x * u1[0] + y * u1[1], x * u2[0] + y * u2[1]
    near_a = (a < 0.25 * n1) | (a > 0.75 * n1)
    near_b = (b < 0.25 * n2) | (b > 0.75 * n2)
    # the corner zones' area in pixels: four quarter-by-quarter rectangles of the (pixel-wide) box
    zone = 4 * (0.25 * (n1 + 1)) * (0.25 * (n2 + 1))
    return float(min(np.count_nonzero(near_a & near_b) / zone, 1.0))


def _plausible(s: _Segment, prior: _Prior, *, loose: bool = False) -> bool:
    rect, corner = ((_CLASSIFIER_MIN_RECTANGULARITY, _CLASSIFIER_MIN_CORNER_FILL) if loose
                    else (_MIN_RECTANGULARITY, _MIN_CORNER_FILL))
    return (prior.min_area_m2 <= s.area_m2 <= prior.max_area_m2 and s.length_m <= prior.max_length_m
            and s.width_m >= _MIN_WIDTH_M and s.length_m / max(s.width_m, 1e-9) <= _MAX_ASPECT
            and s.rectangularity >= rect and s.corner_fill >= corner)


def _classifier_segments(area: np.ndarray, prior: _Prior) -> list[_Segment]:
    """The roofs of a classifier's region: opened, split where it narrows, loosely judged.

    Markers are the smoothed distance transform's maxima at least :data:`_PEAK_SPACING_M`
    apart (a long block gets several on its flat ridge); the watershed's pieces are then
    joined back, widest neck first, unless the neck is narrower than :data:`_NECK_RATIO` of
    the narrower piece's half-width and more than :data:`_NECK_DEPTH_PX` below it (two
    houses touching in the mask stay apart, a block's pieces join).
    """
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    px = prior.px
    fg = _fill_small_holes(ndimage.binary_opening(area, _disk(max(1, int(round(1.0 / px))))), prior)
    if fg.sum() * px * px < prior.min_area_m2:
        return []
    fg = np.pad(fg, 1)
    # smoothed: a ragged outline does not make maxima and necks of its own
    dist = np.where(fg, ndimage.gaussian_filter(ndimage.distance_transform_edt(fg), _DIST_SMOOTH_PX), 0.0)
    comp, _ = ndimage.label(fg, structure=np.ones((3, 3), bool))
    peaks = peak_local_max(dist, min_distance=max(1, int(round(_PEAK_SPACING_M / px))), labels=comp,
                           exclude_border=False)
    markers = np.zeros(fg.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1, dtype=np.int32)
    seg = watershed(-dist, markers, mask=fg) if len(peaks) else comp.astype(np.int32)
    seg = _join_at_wide_necks(seg, dist, _NECK_DEPTH_PX)[1:-1, 1:-1]
    return [s for s in _measure(seg, px, "classifier") if _plausible(s, prior, loose=True)]


def _join_at_wide_necks(seg: np.ndarray, dist: np.ndarray, depth_px: float) -> np.ndarray:
    """Pieces of a watershed joined where the neck between two (the widest distance on their
    shared edge) is at least :data:`_NECK_RATIO` of the narrower piece's widest distance, or
    at most ``depth_px`` below it; widest necks first."""
    n = int(seg.max())
    if n < 2:
        return seg
    peak = np.zeros(n + 1)
    np.maximum.at(peak, seg.ravel(), dist.ravel())
    pairs, necks = [], []
    for lo, hi, at_a, at_b, touch in _touching(seg, ((0, 1), (1, 0), (1, 1), (1, -1))):
        pairs.append(lo.astype(np.int64) * (n + 1) + hi)
        necks.append(np.minimum(dist[at_a][touch], dist[at_b][touch]))
    if not pairs:
        return seg
    uniq, inv = np.unique(np.concatenate(pairs), return_inverse=True)
    widest = np.full(uniq.size, -np.inf)
    np.maximum.at(widest, inv, np.concatenate(necks))  # the widest neck of each pair of pieces
    parent = np.arange(n + 1)

    def root(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = int(parent[x])
        return x

    for k in np.argsort(-widest, kind="stable"):
        i, j = divmod(int(uniq[k]), n + 1)
        ri, rj = root(i), root(j)
        low = min(peak[i], peak[j])
        if ri != rj and (widest[k] >= _NECK_RATIO * low or low - widest[k] <= depth_px):
            parent[rj] = ri
    return np.array([root(x) for x in range(n + 1)], dtype=seg.dtype)[seg]


def _merge_pieces(seg: np.ndarray, prior: _Prior) -> np.ndarray:
    """Merge neighbouring pieces while a rectangle fits their union at least as well as each piece."""
    seg = seg.copy()
    px = prior.px
    for _ in range(4):
        pairs = _neighbour_pairs(seg)
        if not pairs:
            break
        shapes: dict[int, _Segment] = {}
        # every label's pixels at once, in row-major order as np.nonzero(seg == k) gives them:
        # one sort instead of a scan of the whole area per label (a 184 ha site of 552
        # blocks at 1 m spent 30 s in those scans)
        flat = seg.ravel()
        inside = np.flatnonzero(flat)
        order = inside[np.argsort(flat[inside], kind="stable")]
        top = int(flat.max(initial=0))
        starts = np.searchsorted(flat[order], np.arange(top + 2))

        def shape_of(k: int) -> _Segment:
            if k not in shapes:
                rr, cc = np.divmod(order[starts[k]:starts[k + 1]], seg.shape[1])
                shapes[k] = _shape(rr, cc, px, "")
            return shapes[k]

        merged_any = False
        used: set[int] = set()
        candidates = []
        for (i, j), contact in pairs.items():
            si, sj = shape_of(i), shape_of(j)
            # pieces of one building share a side; two buildings joined by a neck touch along the neck only
            if contact * px < 0.5 * min(si.width_m, sj.width_m):
                continue
            # too large a union for a building (the test below, made before the union's shape:
            # a cleared plot's piece of millions of pixels cost hundreds of MB per pair)
            if float(si.rows.size + sj.rows.size) * px * px > prior.max_area_m2:
                continue
            rr = np.concatenate([si.rows, sj.rows])
            cc = np.concatenate([si.cols, sj.cols])
            u = _shape(rr, cc, px, "")
            # the union is a building: a rectangle fits it well, or as well as it fits the pieces
            if (u.rectangularity >= _MIN_RECTANGULARITY
                    and (u.rectangularity >= _MERGE_RECTANGULARITY
                         or u.rectangularity >= min(si.rectangularity, sj.rectangularity) - 0.05)
                    and u.area_m2 <= prior.max_area_m2 and u.length_m <= prior.max_length_m
                    and u.length_m / max(u.width_m, 1e-9) <= _MAX_ASPECT):
                candidates.append((u.rectangularity, i, j))
        relabel = np.arange(top + 1, dtype=seg.dtype)
        for _, i, j in sorted(candidates, reverse=True):
            if i in used or j in used:
                continue
            relabel[j] = i  # i and j are used now: no label is merged twice in a round
            used.update((i, j))
            merged_any = True
        if not merged_any:
            break
        seg = relabel[seg]
    return seg


def _neighbour_pairs(seg: np.ndarray) -> dict[tuple[int, int], int]:
    """Pairs of touching labels and the length of their contact (pixel edges, 4-neighbours)."""
    pairs: dict[tuple[int, int], int] = {}
    for lo, hi, _, _, _ in _touching(seg, ((0, 1), (1, 0))):
        for key, n in zip(*np.unique(np.stack([lo, hi], axis=1), axis=0, return_counts=True)):
            pairs[(int(key[0]), int(key[1]))] = pairs.get((int(key[0]), int(key[1])), 0) + int(n)
    return pairs


def _touching(seg: np.ndarray, offsets: Sequence[tuple[int, int]]) -> Iterator[tuple[np.ndarray, ...]]:
    """For each offset (rows, cols) between a pixel and its neighbour: the labels (lower, higher)
    of every two different pieces that touch there, the slices of ``seg`` holding the pixel and
    its neighbour, and where in those slices they touch (to read other rasters at both)."""
    rows, cols = seg.shape
    for dr, dc in offsets:
        at_a = (slice(0, rows - dr), slice(max(-dc, 0), cols - max(dc, 0)))
        at_b = (slice(dr, rows), slice(max(dc, 0), cols - max(-dc, 0)))
        a, b = seg[at_a], seg[at_b]
        touch = (a > 0) & (b > 0) & (a != b)
        if touch.any():
            yield np.minimum(a[touch], b[touch]), np.maximum(a[touch], b[touch]), at_a, at_b, touch


def _contrast(img: np.ndarray, inside: np.ndarray, ring: np.ndarray) -> float:
    """How far a footprint stands out from the ring around it: robust z of the medians, over the bands."""
    logs = np.log(np.maximum(img, 1e-6))
    zs = []
    for b in logs:
        v_in, v_ring = b[inside], b[ring]
        v_in, v_ring = v_in[np.isfinite(v_in)], v_ring[np.isfinite(v_ring)]
        if v_in.size < 4 or v_ring.size < 4:
            return 0.0
        m = float(np.median(v_ring))
        zs.append(abs(float(np.median(v_in)) - m) / max(1.4826 * float(np.median(np.abs(v_ring - m))), 0.01))
    return float(np.max(zs))


def _was_there(s: _Segment, before: np.ndarray, after: np.ndarray, px: float) -> bool:
    """The before image shows this footprint as clearly as the after image: not a new structure."""
    gap, width = max(1, int(round(1.0 / px))), max(2, int(round(4.0 / px)))
    pad = gap + width + 1
    r0, r1 = max(int(s.rows.min()) - pad, 0), min(int(s.rows.max()) + pad + 1, before.shape[1])
    c0, c1 = max(int(s.cols.min()) - pad, 0), min(int(s.cols.max()) + pad + 1, before.shape[2])
    inside = np.zeros((r1 - r0, c1 - c0), bool)
    inside[s.rows - r0, s.cols - c0] = True
    near = ndimage.binary_dilation(inside, _disk(gap))
    ring = ndimage.binary_dilation(near, _disk(width)) & ~near
    core = ndimage.binary_erosion(inside, _disk(gap)) if inside.sum() > 50 else inside
    c_before = _contrast(before[:, r0:r1, c0:c1], core, ring)
    c_after = _contrast(after[:, r0:r1, c0:c1], core, ring)
    return c_before >= _WAS_THERE_Z and c_before >= 0.5 * c_after


def _explained(segments: list[_Segment]) -> float:
    return float(sum(s.area_m2 for s in segments))


#: Width (m) of the ground around a candidate footprint it is compared with (see :func:`_median_contrast`).
_RING_M = 2.0

#: A split into more pieces whose median contrast with the ground around them is at least this many
#: times the chosen split's is the buildings (see :func:`_choose`).
_CONTRAST_RATIO = 1.5


def _appearance(bands: np.ndarray) -> np.ndarray:
    """Per pixel: log brightness and each band's log share of it (colour whatever the light)."""
    x = np.maximum(np.where(np.isfinite(bands), bands, 0.0), 1e-6).astype(np.float32)
    log_b = np.log(np.maximum(x.mean(axis=0), 1e-6))
    return np.stack([log_b, *[np.log(b) - log_b for b in x]]) if len(x) > 1 else log_b[np.newaxis]


def _robust_spread(values: np.ndarray) -> np.ndarray:
    """1.4826 MAD of each row of (channels, n) values (at least 1e-3)."""
    med = np.median(values, axis=1, keepdims=True)
    return np.maximum(1.4826 * np.median(np.abs(values - med), axis=1), 1e-3)


def _median_contrast(segments: list[_Segment], feats: np.ndarray, r0: int, c0: int, ring_px: int,
                     spread: np.ndarray) -> float:
    """The median over ``segments`` (coordinates from ``r0``, ``c0``) of how far each stands out
    from the ground right around it (a ring of ``ring_px``): the distance between the medians of
    :func:`_appearance` inside and in the ring, in units of the area's robust spread."""
    if not segments:
        return 0.0
    n_rows, n_cols = feats.shape[1:]
    out = []
    for s in segments:
        rows, cols = s.rows + r0, s.cols + c0
        b0, b1 = max(int(rows.min()) - ring_px, 0), min(int(rows.max()) + ring_px + 1, n_rows)
        a0, a1 = max(int(cols.min()) - ring_px, 0), min(int(cols.max()) + ring_px + 1, n_cols)
        seg = np.zeros((b1 - b0, a1 - a0), bool)
        seg[rows - b0, cols - a0] = True
        ring = ndimage.binary_dilation(seg, iterations=ring_px) & ~seg
        if not ring.any():
            continue
        box = feats[:, b0:b1, a0:a1]
        d = (np.median(box[:, seg], axis=1) - np.median(box[:, ring], axis=1)) / spread
        out.append(float(np.sqrt((d * d).sum())))
    return float(np.median(out)) if out else 0.0


def _choose(candidates: list[list[_Segment]], contrast: list[float] | None = None) -> list[_Segment]:
    """The split of an area that explains most of it as buildings; of those that explain at
    least 60 % as much, the one with the most buildings (joined blocks are one shape, not one
    building, when the after image shows them apart); and over it a split into more pieces whose
    median contrast with the ground right around them (``contrast``, one per candidate) is at
    least :data:`_CONTRAST_RATIO` times its own."""
    most = max(_explained(c) for c in candidates)
    if most <= 0:
        return []
    close = [c for c in candidates if _explained(c) >= 0.6 * most]
    best = max(close, key=lambda c: (len(c), _explained(c)))
    if contrast is not None:
        # a split into more pieces that stand out from the ground around them much more than the
        # chosen ones is the buildings, the chosen pieces each some of them with the ground between
        # (a 0.5 m housing estate: three shapes of houses and yards explained more of the area than
        # the 36 houses, which stand out 2x as much)
        c_best = contrast[next(i for i, c in enumerate(candidates) if c is best)]
        sharper = [c for c, k in zip(candidates, contrast) if len(c) > len(best) and k >= _CONTRAST_RATIO * c_best]
        if sharper:
            return max(sharper, key=lambda c: (len(c), _explained(c)))
    return best


def _as_structures(segments: list[_Segment], grid: Grid, px: float, settings: dict[str, float]) -> Structures:
    import shapely
    from rasterio import features

    geoms: list[Any] = []
    props: list[dict[str, Any]] = []
    centres: list[tuple[float, float]] = []
    t = grid.transform
    for i, s in enumerate(segments, start=1):
        r0, c0 = int(s.rows.min()), int(s.cols.min())
        local = np.zeros((int(s.rows.max()) - r0 + 1, int(s.cols.max()) - c0 + 1), np.uint8)
        local[s.rows - r0, s.cols - c0] = 1
        shapes = [shapely.geometry.shape(g) for g, v in
                  features.shapes(local, mask=local.astype(bool), transform=t * t.translation(c0, r0)) if v == 1]
        geom = shapely.union_all(shapes) if len(shapes) > 1 else shapes[0]
        cx, cy = t * (float(s.cols.mean()) + 0.5, float(s.rows.mean()) + 0.5)
        centres.append((round(float(cx), 3), round(float(cy), 3)))
        geoms.append(geom)
        props.append({
            "id": i,
            "change_id": s.change_id.item() if isinstance(s.change_id, np.generic) else s.change_id,
            "area_m2": round(s.area_m2, 2),
            "length_m": round(s.length_m, 2),
            "width_m": round(s.width_m, 2),
            "orientation_deg": round(s.orientation_deg, 1),
            "rectangularity": round(s.rectangularity, 3),
        })
    # where the footprints are: lon/lat, as changes.geojson says where its areas are (the grid's
    # own coordinates only for images without georeferencing)
    if grid.crs is not None and centres:
        from pyproj import Transformer

        lon, lat = Transformer.from_crs(grid.crs.to_wkt(), 4326, always_xy=True).transform(*zip(*centres))
        where = [{"centroid_lon": round(x, 7), "centroid_lat": round(y, 7)}
                 for x, y in zip(np.atleast_1d(lon).tolist(), np.atleast_1d(lat).tolist())]
    else:
        where = [{"centroid_x": x, "centroid_y": y} for x, y in centres]
    for p, w, seg in zip(props, where, segments):
        p.update(w, source=seg.source)
    return Structures(ChangePolygons(tuple(geoms), tuple(props), grid.crs), len(geoms), None, round(px, 4), settings)
