"""How well ``changedet`` counts new structures, on seeded synthetic sites of several kinds.

Each generator draws a before/after pair (8-bit RGB, georeferenced) and the true
footprints of the new buildings; the pair goes through the whole pipeline
(``detect_changes``: co-registration, score, threshold, changed areas) and the count and
median footprint of ``result.structures`` are compared with the truth.  The generators
vary what a detector could be tuned to: block sizes from 8 x 8 m to 60 x 15 m, spacing
3-10 m (and wider), orientation, roof colour and shape (flat or gable), shadows or none,
pixels of 0.5, 1 and 2 m, noise, a cleared plot around the blocks or new buildings on
ground that did not change.  ``sites`` is the quality benchmark's own generator
(``benchmarks/sites.py``, rows of 60 x 15 m blocks on a graded plot), written for another
purpose; ``sites_half`` the same at 0.5 m (1536 px).

    python benchmarks/structures.py            # every generator, 3 seeds each
    python benchmarks/structures.py --seeds 5 --only heldout_like
    python benchmarks/structures.py --examples 20          # a classifier's mask instead
    python benchmarks/structures.py --only levir --examples 20

``--examples K`` runs each pair with K change examples drawn from the true footprints and
3K no-change examples from outside them (a simulated analyst, as ``benchmarks/fewshot.py``),
so the structures are counted on a classifier's mask.  ``--only levir`` counts on the
LEVIR-CD tiles in ``../shared/data/vhr/levir`` (each connected region of the truth is one
house) and prints, per tile and seed, the houses, the structures counted and those matching
a house (intersection over union >= 0.5).

Prints, per generator and seed, the true and found count, the count error (%), the true
and found median footprint and its error (%); then per generator the mean and the spread
(worst) of both errors.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from affine import Affine
from scipy import ndimage

#: Reflectance (red, green, blue) of the surfaces drawn.
SURFACE = {
    "meadow": (0.060, 0.080, 0.040),
    "meadow_dry": (0.095, 0.095, 0.055),
    "ground": (0.150, 0.115, 0.085),
    "ground_wet": (0.110, 0.085, 0.062),
    "gravel": (0.190, 0.180, 0.165),
    "concrete": (0.200, 0.200, 0.190),
    "roof_grey": (0.145, 0.150, 0.158),
    "roof_red": (0.170, 0.070, 0.055),
    "roof_white": (0.330, 0.335, 0.340),
    "roof_green": (0.070, 0.120, 0.095),
    "roof_dark": (0.085, 0.088, 0.095),
    "roof_blue": (0.080, 0.120, 0.190),
    "sand": (0.260, 0.220, 0.160),
}


@dataclass(frozen=True)
class StructureSite:
    """A synthetic pair with its true new buildings.

    ``before``/``after`` are (3, rows, cols) uint8 (red, green, blue), ``footprints`` the
    true new buildings entirely inside the image (shapely polygons in the grid's CRS),
    ``transform``/``crs`` the grid.
    """

    name: str
    before: np.ndarray
    after: np.ndarray
    footprints: list
    transform: Affine
    crs: str
    pixel_m: float

    @property
    def count(self) -> int:
        return len(self.footprints)

    @property
    def median_footprint_m2(self) -> float:
        return float(np.median([g.area for g in self.footprints]))


def _texture(rng: np.random.Generator, shape: tuple[int, int], sigma_px: float, amount: float) -> np.ndarray:
    t = ndimage.gaussian_filter(rng.normal(size=shape), sigma_px)
    return 1.0 + amount * t / (t.std() + 1e-9)


def _rect(cx: float, cy: float, length: float, width: float, azimuth_deg: float):
    """A rectangle in map coordinates: centre, long side along ``azimuth_deg`` (clockwise from north)."""
    from shapely import affinity
    from shapely.geometry import box

    b = box(-width / 2, -length / 2, width / 2, length / 2)  # long side along y (north)
    return affinity.translate(affinity.rotate(b, -azimuth_deg, origin=(0, 0)), cx, cy)


def _burn(geoms, shape, transform, ss: int = 4) -> np.ndarray:
    """Fraction of each pixel covered by ``geoms`` (supersampled ``ss`` x ``ss``)."""
    from rasterio import features

    if not geoms:
        return np.zeros(shape, np.float32)
    fine = features.rasterize([(g, 1) for g in geoms], out_shape=(shape[0] * ss, shape[1] * ss),
                              transform=transform * Affine.scale(1 / ss), fill=0, dtype="uint8")
    return fine.reshape(shape[0], ss, shape[1], ss).mean(axis=(1, 3)).astype(np.float32)


def _paint(img: np.ndarray, cover: np.ndarray, colour) -> None:
    for b in range(3):
        img[b] = img[b] * (1 - cover) + colour[b] * cover


# kind -> how the seed draws the scene
KINDS = {
    # the held-out figure: 48 blocks of 60 x 15 m on a cleared plot, 1 m
    "heldout_like": dict(pixel_m=1.0, size_m=(60, 60, 15, 15), grid=(8, 6), spacing_m=(14, 26), gable=True,
                         shadows=True, roofs=("roof_grey", "roof_red", "roof_white", "roof_blue"), plot=True),
    # small houses, 0.5 m
    "houses": dict(pixel_m=0.5, size_m=(8, 14, 8, 11), grid=(6, 6), spacing_m=(5, 10), gable=True, shadows=True,
                   roofs=("roof_red", "roof_grey", "roof_dark", "roof_green"), plot=True),
    # tight rows of flat-roofed blocks, 3-4 m apart, no shadow (noon, low buildings)
    "tight_rows": dict(pixel_m=1.0, size_m=(24, 40, 10, 14), grid=(6, 5), spacing_m=(3, 4), gable=False,
                       shadows=False, roofs=("roof_grey", "roof_white", "roof_blue"), plot=True),
    # mixed sizes and orientations scattered on a plot
    "mixed": dict(pixel_m=1.0, size_m=(8, 60, 8, 15), grid=None, spacing_m=(4, 10), gable=None, shadows=True,
                  roofs=("roof_grey", "roof_red", "roof_white", "roof_blue", "roof_green"), plot=True),
    # coarse: 2 m pixels, 40 x 15 m blocks 8-10 m apart
    "two_metre": dict(pixel_m=2.0, size_m=(36, 48, 14, 16), grid=(5, 4), spacing_m=(8, 10), gable=True,
                      shadows=True, roofs=("roof_grey", "roof_white", "roof_red"), plot=True),
    # new buildings on a concrete yard that did not change: the change is the buildings alone
    "on_yard": dict(pixel_m=0.5, size_m=(15, 40, 10, 15), grid=(4, 3), spacing_m=(3, 8), gable=False,
                    shadows=False, roofs=("roof_red", "roof_blue", "roof_dark", "roof_green"), plot=False),
}


def make_structure_site(kind: str, seed: int) -> StructureSite:
    """One seeded pair of ``kind`` (a key of :data:`KINDS`)."""
    from shapely.geometry import box

    spec = KINDS[kind]
    rng = np.random.default_rng([zlib.crc32(kind.encode()), seed])
    px = spec["pixel_m"]
    lmin, lmax, wmin, wmax = spec["size_m"]
    smin, smax = spec["spacing_m"]
    azimuth = float(rng.uniform(0, 180))
    # the blocks, on a rotated lattice (or scattered), in plot coordinates (u along the rows, v across)
    blocks: list[tuple[float, float, float, float]] = []  # (u, v, length, width) in the plot frame
    if spec["grid"] is not None:
        n_u, n_v = spec["grid"]
        length, width = rng.uniform(lmin, lmax), rng.uniform(wmin, wmax)
        gap_u, gap_v = rng.uniform(smin, smax), rng.uniform(smin, smax)
        for i in range(n_v):
            for j in range(n_u):
                blocks.append((j * (width + gap_u), i * (length + gap_v), length, width))
        extent_u = n_u * (width + gap_u)
        extent_v = n_v * (length + gap_v)
    else:
        extent_u = extent_v = 320.0
        placed = []
        for _ in range(400):
            length = rng.uniform(lmin, lmax)
            width = min(rng.uniform(wmin, wmax), length)
            u, v = rng.uniform(0, extent_u - width), rng.uniform(0, extent_v - length)
            gap = rng.uniform(smin, smax)
            cand = box(u - gap, v - gap, u + width + gap, v + length + gap)
            if any(cand.intersects(p) for p in placed):
                continue
            placed.append(box(u, v, u + width, v + length))
            blocks.append((u, v, length, width))
            if len(blocks) >= 40:
                break
    margin = 20.0
    size_m = max(extent_u, extent_v) * 1.45 + 2 * margin + 60
    n = int(math.ceil(size_m / px))
    shape = (n, n)
    x0, y0 = 565000.0, 6185000.0
    transform = Affine(px, 0, x0, 0, -px, y0 + n * px)
    cx, cy = x0 + n * px / 2, y0 + n * px / 2
    theta = math.radians(azimuth)

    def to_map(u: float, v: float) -> tuple[float, float]:
        du, dv = u - extent_u / 2, v - extent_v / 2
        # v along the azimuth, u across it
        return (cx + dv * math.sin(theta) + du * math.cos(theta), cy + dv * math.cos(theta) - du * math.sin(theta))

    footprints = []
    for u, v, length, width in blocks:
        mx, my = to_map(u + width / 2, v + length / 2)
        footprints.append(_rect(mx, my, length, width, azimuth))
    plot_geom = _rect(*to_map(extent_u / 2, extent_v / 2), extent_v + 2 * margin, extent_u + 2 * margin, azimuth)

    # the before image: meadow (or a yard), with texture
    base = "concrete" if not spec["plot"] else str(rng.choice(["meadow", "meadow_dry"]))
    tex = _texture(rng, shape, max(1.0, 3 / px), 0.10) * _texture(rng, shape, max(0.7, 0.7 / px), 0.05)
    before = np.stack([np.full(shape, c, np.float32) for c in SURFACE[base]]) * tex
    after = before.copy()
    if spec["plot"]:
        ground = SURFACE[str(rng.choice(["ground", "ground_wet"]))]
        cover = _burn([plot_geom], shape, transform)
        wet = _texture(rng, shape, 12 / px, 0.12)
        for b in range(3):
            after[b] = after[b] * (1 - cover) + ground[b] * tex * wet * cover
        # site roads, piles and machines on the plot
        for _ in range(int(rng.integers(1, 3))):
            along = rng.random() < 0.5
            t = rng.uniform(0.1, 0.9)
            if along:
                a, b_ = to_map(t * extent_u, -margin), to_map(t * extent_u, extent_v + margin)
            else:
                a, b_ = to_map(-margin, t * extent_v), to_map(extent_u + margin, t * extent_v)
            from shapely.geometry import LineString

            road = LineString([a, b_]).buffer(rng.uniform(4, 8) / 2, cap_style="flat")
            road = road.difference(box(0, 0, 1, 1)).intersection(plot_geom)
            for f in footprints:
                road = road.difference(f.buffer(3))
            _paint(after, _burn([road], shape, transform) * 0.9, SURFACE["gravel"])
        piles = []
        for _ in range(int(rng.integers(4, 12))):
            px_, py_ = to_map(rng.uniform(0, extent_u), rng.uniform(0, extent_v))
            from shapely.geometry import Point
            from shapely import affinity

            blob = affinity.scale(Point(px_, py_).buffer(1.0), rng.uniform(2, 6), rng.uniform(2, 5))
            if not any(blob.intersects(f.buffer(2)) for f in footprints):
                piles.append(blob)
        _paint(after, _burn(piles, shape, transform), SURFACE["sand"])
    # the new buildings
    sun_az = float(rng.uniform(120, 240))  # sun in the south: shadows to the north
    roof_names = spec["roofs"]
    gable = spec["gable"] if spec["gable"] is not None else None
    height = rng.uniform(4, 10)
    shadows = []
    for k, f in enumerate(footprints):
        roof = SURFACE[str(rng.choice(roof_names))] if spec["grid"] is None or k == 0 else roof
        gain = rng.uniform(0.92, 1.08)
        cover = _burn([f], shape, transform)
        g = gable if gable is not None else bool(rng.random() < 0.5)
        if g:  # one half of the roof in the sun, the other darker
            c = f.centroid
            side = _rect(*_shift(c.x, c.y, azimuth + 90, 5e3), 1e4, 1e4, azimuth)
            shade = 1 - 0.28 * _burn([f.intersection(side)], shape, transform)
        else:
            shade = 1.0
        for b in range(3):
            after[b] = after[b] * (1 - cover) + roof[b] * gain * shade * cover
        if spec["shadows"]:
            from shapely import affinity

            length = height / math.tan(math.radians(rng.uniform(45, 60)))
            dx, dy = -length * math.sin(math.radians(sun_az)), -length * math.cos(math.radians(sun_az))
            shadows.append(affinity.translate(f, dx, dy).union(f).convex_hull.difference(f))
    if shadows:
        sh = _burn(shadows, shape, transform)
        sh = np.minimum(sh, 1 - _burn(footprints, shape, transform))
        after *= 1 - 0.6 * sh
    # sensor: another camera for the after date, noise, a sub-pixel shift
    gain = rng.uniform(0.85, 1.15, 3)[:, None, None]
    after = after * gain + rng.uniform(-0.01, 0.01, 3)[:, None, None]
    after = ndimage.shift(after, (0, *rng.uniform(-0.5, 0.5, 2)), order=1, mode="nearest")
    noise = rng.uniform(3, 9)
    scale = 255 / 0.4
    out = [np.clip(img * scale + rng.normal(0, noise, img.shape), 0, 255).round().astype(np.uint8)
           for img in (before, after)]
    inside = box(*transform * (0, n), *transform * (n, 0))
    footprints = [f for f in footprints if inside.contains(f)]
    return StructureSite(kind, out[0], out[1], footprints, transform, "EPSG:32639", px)


def _shift(x: float, y: float, azimuth: float, d: float) -> tuple[float, float]:
    a = math.radians(azimuth)
    return x + d * math.sin(a), y + d * math.cos(a)


def _sites_truth(seed: int, pixel_m: float = 1.0, size_px: int = 512, name: str = "sites"):
    """Blocks of ``sites.make_site``: rectangles of 60 x 15 m from the generator's own arrays."""
    sys.path.insert(0, str(Path(__file__).parent))
    import sites

    captured = {}
    real_rect = sites._rect

    def spy(mask, r0, c0, h, w):
        captured.setdefault(id(mask), []).append((r0, c0, h, w))
        return real_rect(mask, r0, c0, h, w)

    sites._rect = spy
    try:
        s = sites.make_site(seed, pixel_m=pixel_m, size_px=size_px)
    finally:
        sites._rect = real_rect
    from shapely.geometry import box

    # the blocks are the calls of 15 x 60 m (h, w) after the plot
    rects = [r for calls in captured.values() for r in calls
             if abs(r[2] - 15 / pixel_m) < 1e-9 and abs(r[3] - 60 / pixel_m) < 1e-9]
    t = s.transform
    n = s.before.shape[1]
    fps = []
    for r0, c0, h, w in rects:
        a, b = max(0, round(r0)), min(n, round(r0 + h))
        c, d = max(0, round(c0)), min(n, round(c0 + w))
        if b > a and d > c:
            fps.append(box(*(t * (c, b)), *(t * (d, a))))
    return StructureSite(name, s.before, s.after, fps, t, s.crs, pixel_m)


def simulated_examples(truth: np.ndarray, k: int, seed: int):
    """K change pixels drawn from ``truth`` and 3K no-change pixels from outside it."""
    from changedet.learn import Examples

    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(truth), np.flatnonzero(~truth)
    idx = np.concatenate([rng.choice(pos, min(k, pos.size), replace=False),
                          rng.choice(neg, min(3 * k, neg.size), replace=False)])
    rows, cols = np.unravel_index(idx, truth.shape)
    return Examples(rows, cols, truth.ravel()[idx])


def run(site: StructureSite, *, examples: int = 0, seed: int = 0) -> dict:
    """The pipeline on one site; count and median footprint against the truth."""
    from rasterio import features

    from changedet.pipeline import detect_changes
    from changedet.raster import GeoRaster

    names = ("red", "green", "blue")
    before = GeoRaster(site.before.astype(np.float32), site.transform, site.crs, names)
    after = GeoRaster(site.after.astype(np.float32), site.transform, site.crs, names)
    ex = None
    if examples:
        roofs = features.rasterize([(f, 1) for f in site.footprints], out_shape=site.before.shape[1:],
                                   transform=site.transform).astype(bool)
        ex = simulated_examples(roofs, examples, seed)
    t0 = time.perf_counter()
    result = detect_changes(before, after, figures=False, progress=False, examples=ex)
    s = result.summary["results"]["structures"]
    found, med = s.get("count"), s.get("median_footprint_m2")
    return {
        "kind": site.name, "true_count": site.count, "count": found,
        "count_err_pct": None if found is None else 100.0 * (found - site.count) / max(site.count, 1),
        "true_median_m2": site.median_footprint_m2, "median_m2": med,
        "footprint_err_pct": None if med is None else 100.0 * (med - site.median_footprint_m2) / site.median_footprint_m2,
        "seconds": time.perf_counter() - t0, "result": result,
    }


def hires_truth() -> tuple[list, list]:
    """The bundled 1 m pair's new dormitory blocks and foundation slabs (footprints from the
    scene ``sample_tiles/make_sample_tiles.py`` draws), those entirely inside the pair."""
    import importlib.util

    from shapely.geometry import box, shape

    from changedet import data

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("make_sample_tiles", root / "sample_tiles" / "make_sample_tiles.py")
    mst = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mst)
    scene = mst.build_scene()
    pair = data.load_sample("hires_rgb")
    t, (rows, cols) = pair.after.transform, pair.after.shape[1:]
    extent = box(*(t * (0, rows)), *(t * (cols, 0)))
    blocks = [shape(mst.rect(cu, cv, 60, 15)) for cu, cv, kind in scene.blocks if kind == "dormitory_blocks"]
    slabs = [shape(mst.rect(cu, cv, 62, 17)) for cu, cv, kind in scene.blocks if kind == "foundation_slabs"]
    return [b for b in blocks if extent.contains(b)], [b for b in slabs if extent.contains(b)]


def match(found: list, truth: list, iou: float = 0.5) -> int:
    """How many true footprints one found footprint covers with IoU >= ``iou`` (each used once)."""
    used: set[int] = set()
    n = 0
    for t in truth:
        for i, f in enumerate(found):
            if i in used or not f.intersects(t):
                continue
            if f.intersection(t).area / f.union(t).area >= iou:
                used.add(i)
                n += 1
                break
    return n


def hires() -> dict:
    """The pipeline on the bundled 1 m pair: structures against its blocks and slabs."""
    from changedet import data
    from changedet.pipeline import detect_changes

    pair = data.load_sample("hires_rgb")
    result = detect_changes(pair.before, pair.after, figures=False, progress=False)
    found = list(result.structures.polygons.geometries)
    blocks, slabs = hires_truth()
    mb, ms = match(found, blocks), match(found, slabs)
    return {"count": result.structures.count, "blocks": len(blocks), "blocks_found": mb, "slabs": len(slabs),
            "slabs_found": ms, "other": len(found) - mb - ms,
            "median_m2": result.summary["results"]["structures"]["median_footprint_m2"]}


def levir(data: Path, examples: int, seeds: int) -> None:
    """Structures counted on the LEVIR-CD tiles (0.5 m) against their new houses."""
    from rasterio import features
    from shapely.geometry import shape

    from changedet.io import read_raster
    from changedet.pipeline import detect_changes

    folder = data / "vhr" / "levir"
    totals = np.zeros(3, int)
    for p in sorted((folder / "A").glob("*.png")):
        truth = read_raster(folder / "label" / p.name).data[0] > 127
        houses, n = ndimage.label(truth)
        if not n:
            continue
        # the houses as polygons in pixel coordinates x = col, y = row, as the footprints are
        # (no georeferencing)
        truth_fps = [shape(g) for g, v in features.shapes(houses.astype(np.int32), mask=houses > 0)]
        for seed in range(seeds if examples else 1):
            ex = simulated_examples(truth, examples, seed) if examples else None
            r = detect_changes(read_raster(p), read_raster(folder / "B" / p.name), pixel_size_m=0.5,
                               examples=ex, figures=False, progress=False)
            found = list(r.structures.polygons.geometries)
            matched = match(found, truth_fps)
            totals += (n, len(found), matched)
            print(f"{p.stem:<22} seed {seed}: {n:>3} houses, {len(found):>3} counted, {matched:>3} matching one",
                  flush=True)
    print(f"LEVIR-CD, {'%d examples' % examples if examples else 'no examples'}: {totals[0]} houses, "
          f"{totals[1]} counted, {totals[2]} matching one (IoU >= 0.5)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--only", default=None, help="one generator (a kind, 'sites', 'hires' or 'levir')")
    ap.add_argument("--examples", type=int, default=0, metavar="K",
                    help="K change and 3K no-change examples drawn from the truth (a classifier's mask)")
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    args = ap.parse_args(argv)
    if args.only == "levir":
        levir(args.data, args.examples, args.seeds)
        return 0
    if args.only in (None, "hires") and not args.examples:
        h = hires()
        print(f"bundled hires pair: {h['count']} structures (median {h['median_m2']:.0f} m2): {h['blocks_found']} of its "
              f"{h['blocks']} blocks and {h['slabs_found']} of its {h['slabs']} slabs found (IoU >= 0.5), "
              f"{h['other']} other")
        if args.only == "hires":
            return 0
    kinds = [args.only] if args.only else [*KINDS, "sites", "sites_half"]
    rows = []
    print(f"{'generator':<13} {'seed':>4} {'true':>5} {'found':>5} {'count err':>9} {'true med':>9} "
          f"{'found med':>9} {'fp err':>7}")
    for kind in kinds:
        for seed in range(args.seeds):
            site = (_sites_truth(seed) if kind == "sites"
                    else _sites_truth(seed, pixel_m=0.5, size_px=1536, name=kind) if kind == "sites_half"
                    else make_structure_site(kind, seed))
            r = run(site, examples=args.examples, seed=seed)
            rows.append(r)
            ce = "-" if r["count_err_pct"] is None else f"{r['count_err_pct']:+.1f}%"
            fe = "-" if r["footprint_err_pct"] is None else f"{r['footprint_err_pct']:+.1f}%"
            med = "-" if r["median_m2"] is None else f"{r['median_m2']:.0f}"
            print(f"{kind:<13} {seed:>4} {r['true_count']:>5} {str(r['count']):>5} {ce:>9} "
                  f"{r['true_median_m2']:>9.0f} {med:>9} {fe:>7}", flush=True)
    print()
    print(f"{'generator':<13} {'mean |count err|':>16} {'worst':>7} {'mean |fp err|':>14} {'worst':>7}")
    for kind in kinds:
        sel = [r for r in rows if r["kind"] == kind and r["count_err_pct"] is not None]
        if not sel:
            continue
        ce = np.abs([r["count_err_pct"] for r in sel])
        fe = np.abs([r["footprint_err_pct"] for r in sel if r["footprint_err_pct"] is not None])
        print(f"{kind:<13} {ce.mean():>15.1f}% {ce.max():>6.1f}% {fe.mean() if fe.size else float('nan'):>13.1f}% "
              f"{fe.max() if fe.size else float('nan'):>6.1f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
