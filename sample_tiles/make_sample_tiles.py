#!/usr/bin/env python
"""Make the synthetic sample pairs shipped in ``sample_tiles/``.

A deterministic, standalone script (numpy + rasterio only).  It draws one
industrial site, modelled on a special economic zone in UTM zone 39N
(EPSG:32639, near 55.8 N 52.05 E), as vector objects in a local frame rotated
12 degrees from grid north: factory halls, a road grid, paved yards, fields,
meadows, forest, a pond.  Between the two dates a construction site appears:
rows of two-storey dormitory blocks (60 x 15 m) on cleared ground, and a new
access road.

Each pair is rendered at a finer grid than it is written (2 m for the 10 m pair,
1/3 m for the 1 m pair) with per-object spectra, texture, roof shading and cast
shadows, then area-averaged to the output grid.  The truth mask is the
land-cover change (class map before != class map after) area-averaged the same
way and set where at least half of a pixel changed.

Nuisances of real pairs, applied to the after image only unless noted: a
sub-pixel shift of the after image (the scene is rendered displaced by whole
render pixels), per-band gain and offset, a slight illumination gradient, a
different sun position (shading and shadow length), vegetation phenology
(fields greener or browner, meadows drier; no land-cover change), cars that
moved, and sensor noise on both dates.

Usage::

    python sample_tiles/make_sample_tiles.py            # rewrite sample_tiles/
    python sample_tiles/make_sample_tiles.py --out DIR  # write elsewhere

It writes ``<out>/<pair>/{before,after,truth}.tif`` and ``<out>/registry.json``
(SHA-256 of every file).  Same numpy/GDAL build -> same bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
from pathlib import Path

import numpy as np
import rasterio
from rasterio.features import rasterize
from rasterio.transform import from_origin

SEED = 20240614
CRS = "EPSG:32639"
# Scene centre: 55.8 N 52.05 E in UTM 39N, snapped to the 10 m grid.
CENTER_X, CENTER_Y = 565820.0, 6184320.0
ROTATION_DEG = 12.0  # the site's planned street grid, counter-clockwise from grid east

DATES = {"before": "2024-06-14", "after": "2025-06-19"}
# (azimuth clockwise from north, elevation) in degrees, late-morning overpass in June
SUN = {"before": (158.0, 55.0), "after": (149.0, 51.0)}

BANDS = ("B02", "B03", "B04", "B08")
# Surface reflectance, B02 B03 B04 B08.
SPECTRA = {
    "grass": (0.034, 0.066, 0.050, 0.310),
    "dry_grass": (0.062, 0.086, 0.104, 0.235),
    "crop": (0.026, 0.060, 0.030, 0.420),
    "soil": (0.056, 0.076, 0.100, 0.170),
    "forest": (0.024, 0.045, 0.026, 0.270),
    "forest_floor": (0.030, 0.052, 0.042, 0.190),
    "water": (0.046, 0.060, 0.040, 0.018),
    "asphalt": (0.066, 0.074, 0.082, 0.102),
    "new_asphalt": (0.042, 0.046, 0.050, 0.060),
    "concrete": (0.165, 0.180, 0.195, 0.230),
    "gravel": (0.118, 0.136, 0.156, 0.200),
    "roof_white": (0.320, 0.335, 0.345, 0.365),
    "roof_grey": (0.130, 0.140, 0.150, 0.180),
    "roof_blue": (0.170, 0.130, 0.078, 0.112),
    "roof_red": (0.058, 0.056, 0.112, 0.158),
    "dorm_roof": (0.128, 0.136, 0.142, 0.172),
    "tree": (0.030, 0.058, 0.034, 0.320),
    "site": (0.085, 0.110, 0.145, 0.210),
    "site_wet": (0.060, 0.080, 0.105, 0.160),
    "slab": (0.205, 0.218, 0.232, 0.262),
    "sand_pile": (0.190, 0.225, 0.280, 0.330),
    "skylight": (0.075, 0.085, 0.090, 0.080),
    "hvac": (0.230, 0.240, 0.250, 0.270),
}
# Fraction of diffuse (sky) light per band: what is left in a shadow.
DIFFUSE = np.array([0.36, 0.27, 0.22, 0.16], dtype=np.float32)

# Land-cover classes: the truth is where the class changes.
GRASS, FIELD, FOREST, WATER, ROAD, PAVED, GRAVEL, BUILDING, SITE, DORM, SLAB, NEW_ROAD = range(1, 13)

# Texture kinds (how an object's pixels vary).
TX_PLAIN, TX_VEG, TX_FIELD, TX_FOREST, TX_WATER, TX_ROOF, TX_PAVED, TX_SITE, TX_DORM = range(9)

PAIRS = {
    "s2_like": {
        "description": (
            "Sentinel-2-like pair, 10 m, bands B02 B03 B04 B08 (uint16 reflectance x 10000), "
            "300 x 300 px (3 x 3 km) over a synthetic industrial zone in UTM 39N. After: rows of "
            "new two-storey dormitory blocks on cleared construction ground and a new access road. "
            "Nuisances: per-band gain/offset, phenology, illumination gradient, sun angle, "
            "sensor noise, after image misregistered by -0.2 px in rows and +0.4 px in columns."
        ),
        "res": 10.0,
        "size": 300,
        "factor": 5,  # render at 2 m
        "shift_render_px": (-1, 2),  # (rows, cols) of the render grid -> (-0.2, 0.4) px
        "detail": False,
    },
    "hires_rgb": {
        "description": (
            "High-resolution RGB pair, 1 m, bands red green blue (uint8), 800 x 800 px over the "
            "construction area of the s2_like scene. After: dormitory blocks with shadows, "
            "foundation slabs, cleared ground, site roads and the new access road. Nuisances: "
            "per-band gain/offset (another camera), illumination gradient, sun angle, moved cars, "
            "phenology, sensor noise, after image misregistered by +1/3 px in rows and -1/3 px in columns."
        ),
        "res": 1.0,
        "size": 800,
        "factor": 3,  # render at 1/3 m
        "shift_render_px": (1, -1),
        "detail": True,
    },
}
S2_ORIGIN = (CENTER_X - 1500.0, CENTER_Y + 1500.0)


# --------------------------------------------------------------------------- geometry
def to_map(u: np.ndarray | float, v: np.ndarray | float) -> tuple:
    """Local site frame (u along the streets, v across, metres) -> UTM x, y."""
    t = math.radians(ROTATION_DEG)
    return (CENTER_X + np.multiply(u, math.cos(t)) - np.multiply(v, math.sin(t)),
            CENTER_Y + np.multiply(u, math.sin(t)) + np.multiply(v, math.cos(t)))


def to_local(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = math.radians(ROTATION_DEG)
    dx, dy = x - CENTER_X, y - CENTER_Y
    return dx * math.cos(t) + dy * math.sin(t), -dx * math.sin(t) + dy * math.cos(t)


def polygon(points_uv: list[tuple[float, float]]) -> dict:
    xs, ys = to_map(np.array([p[0] for p in points_uv]), np.array([p[1] for p in points_uv]))
    ring = [(float(x), float(y)) for x, y in zip(xs, ys)]
    return {"type": "Polygon", "coordinates": [ring + [ring[0]]]}


def rect(cu: float, cv: float, w: float, h: float) -> dict:
    """A rectangle w (along u) x h (along v) centred on (cu, cv) in the local frame."""
    return polygon([(cu - w / 2, cv - h / 2), (cu + w / 2, cv - h / 2), (cu + w / 2, cv + h / 2), (cu - w / 2, cv + h / 2)])


def box(u0: float, v0: float, u1: float, v1: float) -> dict:
    return rect((u0 + u1) / 2, (v0 + v1) / 2, u1 - u0, v1 - v0)


def blob(rng: np.random.Generator, cu: float, cv: float, ru: float, rv: float, *, rough: float = 0.18, n: int = 64) -> dict:
    """An irregular closed outline (forest, pond) around (cu, cv)."""
    ang = np.linspace(0, 2 * np.pi, n, endpoint=False)
    k = np.arange(1, 6)
    amp = rng.normal(0, rough, k.size) / k
    ph = rng.uniform(0, 2 * np.pi, k.size)
    r = 1 + (amp[:, None] * np.sin(k[:, None] * ang + ph[:, None])).sum(0)
    return polygon(list(zip(cu + ru * r * np.cos(ang), cv + rv * r * np.sin(ang))))


def line(points_uv: list[tuple[float, float]], width: float) -> dict:
    """A straight-segment corridor of ``width`` metres along a polyline (mitred joints)."""
    pts = np.asarray(points_uv, float)
    left, right = [], []
    for i in range(len(pts)):
        d_prev = pts[i] - pts[i - 1] if i > 0 else pts[i + 1] - pts[i]
        d_next = pts[i + 1] - pts[i] if i < len(pts) - 1 else d_prev
        n1 = np.array([-d_prev[1], d_prev[0]]) / np.hypot(*d_prev)
        n2 = np.array([-d_next[1], d_next[0]]) / np.hypot(*d_next)
        n = n1 + n2
        n = n / np.hypot(*n) / max(float(np.dot(n / np.hypot(*n), n1)), 0.5)
        left.append(pts[i] + n * width / 2)
        right.append(pts[i] - n * width / 2)
    return polygon([tuple(p) for p in left + right[::-1]])


# --------------------------------------------------------------------------- the scene
class Scene:
    """Objects (polygons with class, spectra, height, texture) and point features (trees, cars)."""

    def __init__(self) -> None:
        self.objects: list[dict] = []
        self.trees: list[tuple] = []  # (u, v, radius, height, brightness, dates)
        self.cars: list[tuple] = []  # (u, v, length, width, along_u, colour, dates)
        self.hvac: list[tuple] = []  # (u, v, w, h, top_height)
        self.blocks: list[tuple[float, float, str]] = []  # (u, v, "dormitory_blocks" | "foundation_slabs")

    def add(self, geom: dict, cls: int, spec: str, *, dates: str = "both", spec2: str | None = None,
            s: dict | None = None, tex: int = TX_PLAIN, height: float = 0.0, roof: str = "flat",
            axis_v: float = 0.0, half_width: float = 0.0, jitter: float = 0.0, rng=None, stripe: float = 0.0) -> None:
        a = np.array(SPECTRA[spec], np.float32)
        b = np.array(SPECTRA[spec2 or spec], np.float32)
        if jitter and rng is not None:
            g = (1 + rng.normal(0, jitter)) * (1 + rng.normal(0, jitter / 2, 4))
            a, b = (a * g).astype(np.float32), (b * g).astype(np.float32)
        self.objects.append(dict(geom=geom, cls=cls, a=a, b=b, dates=dates, s=s or {"before": 0.0, "after": 0.0},
                                 tex=tex, height=height, roof=roof, axis_v=axis_v, half_width=half_width,
                                 stripe=stripe))


def build_scene() -> Scene:
    rng = np.random.default_rng([SEED, 1])
    sc = Scene()

    # Fields: grids of parcels with grass margins; phenology differs between the dates.
    def fields(u0: float, v0: float, u1: float, v1: float, *, sizes=(260, 420)) -> None:
        u = u0
        while u < u1 - 60:
            w = min(rng.uniform(*sizes), u1 - u)
            v = v0
            while v < v1 - 60:
                h = min(rng.uniform(*sizes), v1 - v)
                s_b = rng.uniform(0.05, 0.55)
                s_a = float(np.clip(s_b + rng.choice([-1, 1]) * rng.uniform(0.08, 0.3), 0.02, 0.75))
                sc.add(box(u + 5, v + 5, u + w - 5, v + h - 5), FIELD, "crop", spec2="soil",
                       s={"before": s_b, "after": s_a}, tex=TX_FIELD, jitter=0.04, rng=rng,
                       stripe=float(rng.choice([0.0, 90.0])))
                v += h
            u += w

    fields(-2300, 480, -280, 2300)
    fields(1130, -2300, 2300, 2300)
    fields(-1000, -2300, 1110, -1090)
    fields(-2300, -2300, -1020, -1090)
    # A field that the construction site will take over in part.
    sc.add(box(560, 620, 1095, 1300), FIELD, "crop", spec2="soil", s={"before": 0.18, "after": 0.3},
           tex=TX_FIELD, stripe=0.0)
    fields(-240, 1330, 1110, 2300)

    # Forests and a pond.
    sc.add(blob(rng, -1620, -480, 520, 620), FOREST, "forest", tex=TX_FOREST, s={"before": 0.0, "after": 0.05})
    sc.add(blob(rng, 250, 1180, 190, 120, rough=0.25), FOREST, "forest", tex=TX_FOREST, s={"before": 0.0, "after": 0.05})
    sc.add(blob(rng, -620, 900, 260, 200), FOREST, "forest", tex=TX_FOREST, s={"before": 0.0, "after": 0.05})

    # Yards: concrete aprons around the halls (drawn before the halls), a gravel storage yard,
    # lawns between; then the pond.
    aprons = [(-590, -30, 500, 440), (420, 170, 800, 230), (720, -130, 380, 190), (150, -720, 520, 260),
              (-640, -780, 380, 300), (960, 60, 180, 110), (380, -540, 210, 130)]
    for cu, cv, w, h in aprons:
        sc.add(rect(cu, cv, w, h), PAVED, "concrete", tex=TX_PAVED, jitter=0.05, rng=rng)
    sc.add(box(-200, -300, 120, -140), GRAVEL, "gravel", tex=TX_SITE, jitter=0.03, rng=rng)
    sc.add(blob(rng, 820, -720, 170, 95, rough=0.12), WATER, "water", tex=TX_WATER)
    # Factory halls: (cu, cv, w, h, roof, height).
    halls = [(-640, 110, 320, 120, "roof_white", 14), (-640, -170, 260, 96, "roof_grey", 12),
             (-380, -40, 60, 200, "roof_red", 9), (210, 150, 380, 150, "roof_white", 16),
             (690, 215, 220, 90, "roof_blue", 11), (720, -130, 300, 120, "roof_grey", 13),
             (960, 60, 120, 60, "roof_red", 8), (150, -720, 420, 160, "roof_grey", 15),
             (-640, -720, 300, 110, "roof_white", 13), (-640, -930, 200, 60, "roof_blue", 9),
             (-820, -560, 90, 70, "roof_red", 8), (380, -540, 150, 80, "roof_white", 10)]
    for cu, cv, w, h, roof, ht in halls:
        sc.add(rect(cu, cv, w, h), BUILDING, roof, tex=TX_ROOF, height=ht, jitter=0.04, rng=rng)
        # HVAC units and vents along the ridge line of the hall roof
        for k in range(int(w // 40)):
            sc.hvac.append((cu - w / 2 + 20 + 40 * k + rng.uniform(-4, 4), cv + rng.uniform(-h / 4, h / 4),
                            rng.uniform(2.5, 5), rng.uniform(2, 3.5), ht + 1.6))

    # Roads (asphalt) on top of everything else drawn so far.
    roads = [([(-2400, -1070), (2400, -1070)], 24), ([(-250, -1070), (-250, 1330)], 16),
             ([(-1000, -350), (1110, -350)], 14), ([(-1000, 350), (1110, 350)], 14),
             ([(1110, -1070), (1110, 350)], 14), ([(-1000, -1070), (-1000, 350)], 12),
             ([(-250, 1330), (1110, 1330)], 10), ([(-2400, 440), (-250, 440)], 10)]
    for pts, w in roads:
        sc.add(line(pts, w), ROAD, "asphalt", tex=TX_PAVED, jitter=0.03, rng=rng)
    # Parking lots (cars are drawn on them in the high-resolution render).
    lots = [(430, 250, 110, 50), (-400, 250, 120, 60), (560, -250, 120, 50), (-450, -640, 80, 60)]
    for cu, cv, w, h in lots:
        sc.add(rect(cu, cv, w, h), PAVED, "asphalt", tex=TX_PAVED, jitter=0.03, rng=rng)
        for row in range(int(h // 6)):
            for col in range(int(w // 3)):
                if rng.random() < 0.8:
                    sc.cars.append((cu - w / 2 + 1.5 + 3 * col, cv - h / 2 + 3 + 6 * row, 4.5, 1.8, False, None,
                                    "random"))

    # ---- after: the construction site (taken from the meadow, the field and a copse)
    su0, sv0, su1, sv1 = 340, 440, 960, 960
    sc.add(polygon([(su0, sv0), (su1, sv0), (su1, sv1 - 30), (su1 - 40, sv1), (su0, sv1)]), SITE, "site",
           spec2="site_wet", tex=TX_SITE, dates="after")
    # site roads and the connection to the street at v = 350
    for pts, w in [([(650, 350), (650, sv1 - 6)], 10), ([(su0 + 6, 700), (su1, 700)], 10),
                   ([(su0 + 8, sv0 + 8), (su1 - 8, sv0 + 8)], 7)]:
        sc.add(line(pts, w), NEW_ROAD, "gravel", tex=TX_PAVED, dates="after")
    # the new access road to the east, with cleared verges
    access = [(su1 - 2, 760), (1400, 800), (1800, 880), (2400, 900)]
    sc.add(line(access, 26), SITE, "site", spec2="site_wet", tex=TX_SITE, dates="after")
    sc.add(line(access, 10), NEW_ROAD, "concrete", tex=TX_PAVED, dates="after")
    # dormitory blocks: 60 x 15 m, two storeys, gable roofs, in rows per quarter of the site
    for qu0, qv0 in [(su0 + 22, sv0 + 30), (662, sv0 + 30), (su0 + 22, 712), (662, 712)]:
        for row in range(6):
            for col in range(3):
                cu, cv = qu0 + 40 + col * 88, qv0 + 10 + row * 38
                if cv + 7.5 > sv1 - 12 or cu + 30 > su1 - 8:
                    continue
                if qu0 == 662 and qv0 == 712 and row >= 4:
                    sc.blocks.append((cu, cv, "foundation_slabs"))
                    sc.add(rect(cu, cv, 62, 17), SLAB, "slab", tex=TX_PAVED, dates="after", height=0.4)
                    continue
                sc.blocks.append((cu, cv, "dormitory_blocks"))
                sc.add(rect(cu, cv, 60, 15), DORM, "dorm_roof", tex=TX_DORM, dates="after", height=6.6,
                       roof="gable", axis_v=cv, half_width=7.5, jitter=0.02, rng=rng)
    # material piles and machines on the site
    for _ in range(10):
        cu, cv = rng.uniform(su0 + 20, su1 - 20), rng.uniform(sv0 + 20, sv1 - 20)
        sc.add(blob(rng, cu, cv, rng.uniform(4, 9), rng.uniform(3, 6), rough=0.2, n=24), SITE, "sand_pile",
               tex=TX_SITE, dates="after", height=2.0)
    for _ in range(14):
        sc.cars.append((rng.uniform(su0 + 10, su1 - 10), rng.uniform(sv0 + 10, sv1 - 10), rng.uniform(6, 10),
                        2.6, bool(rng.random() < 0.5), "truck", "after"))

    # Trees: rows along streets, scattered meadow trees; those on the site exist only before.
    def on_site(u: float, v: float) -> bool:
        inside = su0 - 6 <= u <= su1 + 6 and sv0 - 6 <= v <= sv1 + 6
        near_access = u > su1 and abs(v - np.interp(u, [p[0] for p in access], [p[1] for p in access])) < 17
        near_link = abs(u - 650) < 9 and 340 < v < sv0
        return bool(inside or near_access or near_link)

    def tree(u: float, v: float, r: float, h: float) -> None:
        dates = "before" if on_site(u, v) else "both"
        sc.trees.append((u, v, r, h, rng.uniform(0.8, 1.2), dates, "tree"))

    for u in np.arange(-230, 1100, 9.0):
        tree(u + rng.uniform(-1, 1), 370 + rng.uniform(-1, 1), rng.uniform(3.0, 4.2), rng.uniform(9, 13))
    for v in np.arange(370, 1320, 9.0):
        tree(-230 + rng.uniform(-1, 1), v, rng.uniform(3.0, 4.2), rng.uniform(9, 13))
    for _ in range(60):
        u, v = rng.uniform(-230, 550), rng.uniform(390, 1320)
        tree(u, v, rng.uniform(2.5, 4.5), rng.uniform(9, 17))
    for _ in range(25):  # a hedge of shrubs and trees along the old field edge
        tree(rng.uniform(340, 560), 620 + rng.uniform(-4, 4), rng.uniform(1.8, 3.0), rng.uniform(5, 9))
    return sc


# --------------------------------------------------------------------------- rendering helpers
def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], scale_px: float) -> np.ndarray:
    """Gaussian-filtered white noise (via FFT), zero mean, unit standard deviation."""
    white = rng.standard_normal(shape).astype(np.float32)
    if scale_px <= 0.5:
        return white
    fr = np.fft.fftfreq(shape[0]).astype(np.float32)[:, None]
    fc = np.fft.rfftfreq(shape[1]).astype(np.float32)[None, :]
    g = np.exp(-2 * (np.pi * scale_px) ** 2 * (fr**2 + fc**2))
    out = np.fft.irfft2(np.fft.rfft2(white) * g, s=shape).astype(np.float32)
    return (out - out.mean()) / (out.std() + 1e-12)


def shifted(a: np.ndarray, dr: int, dc: int, fill: float = 0.0) -> np.ndarray:
    """out[r, c] = a[r + dr, c + dc] (``fill`` outside)."""
    out = np.full_like(a, fill)
    rows, cols = a.shape
    r0, r1 = max(0, -dr), min(rows, rows - dr)
    c0, c1 = max(0, -dc), min(cols, cols - dc)
    if r1 > r0 and c1 > c0:
        out[r0:r1, c0:c1] = a[r0 + dr:r1 + dr, c0 + dc:c1 + dc]
    return out


def sun_terms(height: np.ndarray, res: float, sun: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """(direct-light factor from slope, lit mask) for a height field on a north-up grid."""
    az, el = (math.radians(a) for a in sun)
    sx, sy, sz = math.sin(az) * math.cos(el), math.cos(az) * math.cos(el), math.sin(el)
    d_row, d_col = np.gradient(height, res)
    dzdx, dzdy = d_col, -d_row
    slope2 = dzdx**2 + dzdy**2
    cos_i = (-dzdx * sx - dzdy * sy + sz) / np.sqrt(1 + slope2)
    factor = np.clip(cos_i, 0, None) / sz
    factor[slope2 > 1.5] = 1.0  # walls and object edges: seen from above they have no area
    lit = np.ones(height.shape, bool)
    tan_el = math.tan(el)
    steps = int(math.ceil(float(height.max()) / tan_el / res))
    for k in range(1, steps + 1):
        dc, dr = round(k * math.sin(az)), round(-k * math.cos(az))
        lit &= ~(shifted(height, dr, dc) > height + k * res * tan_el)
    return factor.astype(np.float32), lit


def area_mean(a: np.ndarray, f: int) -> np.ndarray:
    """Block-average the last two axes by ``f``."""
    *lead, rows, cols = a.shape
    return a.reshape(*lead, rows // f, f, cols // f, f).mean(axis=(-3, -1))


# --------------------------------------------------------------------------- one pair
def render_pair(name: str, scene: Scene) -> dict:
    cfg = PAIRS[name]
    res_out, size, f = cfg["res"], cfg["size"], cfg["factor"]
    res = res_out / f
    margin = 4 * f
    n = size * f + 2 * margin
    if name == "s2_like":
        left, top = S2_ORIGIN
    else:  # centred on the construction site, snapped to whole metres
        x, y = to_map(620.0, 520.0)
        left, top = float(round(x - size * res_out / 2)), float(round(y + size * res_out / 2))
    canvas = from_origin(left - margin * res, top + margin * res, res, res)
    rows, cols = np.mgrid[0:n, 0:n].astype(np.float32)
    x = left - margin * res + (cols + 0.5) * res
    y = top + margin * res - (rows + 0.5) * res
    u, v = to_local(x.astype(np.float64), y.astype(np.float64))
    u, v = u.astype(np.float32), v.astype(np.float32)
    del rows, cols, x, y

    rng = np.random.default_rng([SEED, 2, size])
    n_large = smooth_noise(rng, (n, n), 40.0 / res)
    n_med = smooth_noise(rng, (n, n), 4.0 / res)
    n_small = smooth_noise(rng, (n, n), 1.0 / res)
    n_fine = smooth_noise(rng, (n, n), 0)

    out: dict = {"classes": {}, "refl": {}}
    for date in ("before", "after"):
        objs = [o for o in scene.objects if o["dates"] in ("both", date)]
        shapes = [(o["geom"], i + 1) for i, o in enumerate(objs)]
        ids = rasterize(shapes, out_shape=(n, n), transform=canvas, fill=0, dtype="int32")
        k = len(objs) + 1
        lut_cls = np.array([GRASS] + [o["cls"] for o in objs], np.uint8)
        lut_a = np.array([SPECTRA["grass"]] + [o["a"] for o in objs], np.float32)
        lut_b = np.array([SPECTRA["dry_grass"]] + [o["b"] for o in objs], np.float32)
        lut_s = np.array([{"before": 0.1, "after": 0.3}[date]] + [o["s"][date] for o in objs], np.float32)
        lut_tex = np.array([TX_VEG] + [o["tex"] for o in objs], np.uint8)
        lut_h = np.array([0.0] + [o["height"] for o in objs], np.float32)
        lut_roof = np.array([0] + [o["roof"] == "gable" for o in objs], bool)
        lut_axis = np.array([0.0] + [o["axis_v"] for o in objs], np.float32)
        lut_hw = np.array([0.0] + [o["half_width"] for o in objs], np.float32)
        lut_stripe = np.array([0.0] + [o["stripe"] for o in objs], np.float32)
        assert k == lut_cls.size
        cls = lut_cls[ids]
        tex = lut_tex[ids]

        # mixing parameter (green -> dry/bare) with texture
        # vegetation vigour varies inside fields and meadows differently every year
        n_year = smooth_noise(np.random.default_rng([SEED, 6, size, date == "after"]), (n, n), 20.0 / res)
        s = lut_s[ids] + 0.12 * n_large + 0.06 * n_med + 0.10 * n_year
        del n_year
        m = tex == TX_FIELD
        along = np.where(lut_stripe[ids] > 0, v, u)
        s[m] += 0.06 * np.sin(2 * np.pi * along[m] / 16.0) + 0.03 * n_small[m]
        m = tex == TX_SITE
        s[m] = 0.15 + 0.25 * n_large[m] + 0.1 * n_med[m]
        s = np.clip(s, 0, 1)
        a, b = lut_a[ids], lut_b[ids]  # (n, n, 4)
        refl = a + (b - a) * s[..., None]
        del a, b
        # texture amplitude (medium, small, per-pixel scale) per texture kind
        amp = np.zeros((9, 3), np.float32)
        amp[[TX_VEG, TX_FIELD, TX_FOREST, TX_WATER, TX_ROOF, TX_PAVED, TX_SITE, TX_DORM, TX_PLAIN]] = [
            (0.05, 0.04, 0.03), (0.03, 0.02, 0.02), (0.10, 0.10, 0.06), (0.03, 0.0, 0.01), (0.03, 0.01, 0.01),
            (0.05, 0.03, 0.02), (0.08, 0.06, 0.05), (0.01, 0.01, 0.01), (0.02, 0.01, 0.01)]
        bright = 1 + (amp[tex, 0] * n_med + amp[tex, 1] * n_small + amp[tex, 2] * n_fine)
        # factory roofs: panel seams every 5 m and skylight strips every 24 m across the hall
        m = tex == TX_ROOF
        seam = (np.abs(((u + 1000) % 5.0) - 2.5) > 2.35) & m
        bright[seam] *= 0.9
        sky = (np.abs(((u + 1000) % 24.0) - 12.0) < 1.2) & m & (np.abs(((v + 1000) % 12.0) - 6.0) < 4.0)
        refl[sky] = np.array(SPECTRA["skylight"], np.float32)
        refl *= bright[..., None]

        # heights: flat roofs, gable roofs, HVAC units, piles; then trees and cars on top
        height = lut_h[ids]
        g = lut_roof[ids]
        height[g] += np.clip(lut_hw[ids][g] - np.abs(v[g] - lut_axis[ids][g]), 0, None) * math.tan(math.radians(24))
        m = tex == TX_SITE
        height[m] *= np.clip(0.5 + 0.5 * n_med[m], 0, 1)
        if scene.hvac:
            hv = [(rect(cu, cv, w, h), top) for cu, cv, w, h, top in scene.hvac]
            tops = rasterize(hv, out_shape=(n, n), transform=canvas, fill=0, dtype="float32")
            m = tops > 0
            height[m] = tops[m]
            refl[m] = np.array(SPECTRA["hvac"], np.float32)
        if cfg["detail"]:
            _draw_cars(scene, date, refl, height, canvas, (n, n))
            _draw_trees(scene, date, refl, height, cls, u, v, res, n_small)
        else:
            _draw_trees(scene, date, refl, height, None, u, v, res, n_small)

        factor, lit = sun_terms(height, res, SUN[date])
        light = DIFFUSE[None, None, :] + (1 - DIFFUSE)[None, None, :] * (factor * lit)[..., None]
        refl *= light
        out["classes"][date] = cls
        out["refl"][date] = np.moveaxis(refl, -1, 0)  # (4, n, n)
        del refl, light, height

    # crop: before on the output grid, after displaced by whole render pixels (the sub-pixel shift)
    dr, dc = cfg["shift_render_px"]
    core = np.s_[margin:margin + size * f, margin:margin + size * f]
    core_after = np.s_[margin + dr:margin + dr + size * f, margin + dc:margin + dc + size * f]
    changed = (out["classes"]["before"] != out["classes"]["after"]).astype(np.float32)
    return {
        "before": area_mean(out["refl"]["before"][(slice(None),) + core], f),
        "after": area_mean(out["refl"]["after"][(slice(None),) + core_after], f),
        "truth": (area_mean(changed[core], f) >= 0.5).astype(np.uint8),
        "transform": from_origin(left, top, res_out, res_out),
    }


CAR_COLOURS = np.array([(0.40, 0.40, 0.40, 0.42), (0.25, 0.25, 0.26, 0.28), (0.03, 0.03, 0.03, 0.05),
                        (0.05, 0.04, 0.25, 0.30), (0.18, 0.08, 0.04, 0.20), (0.45, 0.46, 0.47, 0.48)], np.float32)
TRUCK = np.array((0.05, 0.22, 0.40, 0.45), np.float32)  # yellow construction machines


def _draw_cars(scene: Scene, date: str, refl, height, canvas, shape) -> None:
    rng = np.random.default_rng([SEED, 3, 0 if date == "before" else 1])
    shapes, colours = [], []
    for cu, cv, length, width, along_u, kind, dates in scene.cars:
        if dates == "random":
            if rng.random() < 0.3:  # parked cars come and go
                continue
        elif dates not in ("both", date):
            continue
        w, h = (length, width) if along_u else (width, length)
        shapes.append((rect(cu, cv, w, h), len(shapes) + 1))
        colours.append(TRUCK if kind == "truck" else CAR_COLOURS[rng.integers(len(CAR_COLOURS))])
    # a few cars on the streets, different every date
    for _ in range(40):
        if rng.random() < 0.5:
            cu, cv, along = rng.uniform(-240, 1100), 350 + rng.choice([-3.5, 3.5]), True
        else:
            cu, cv, along = -250 + rng.choice([-4, 4]), rng.uniform(-340, 1320), False
        shapes.append((rect(cu, cv, 4.5 if along else 1.8, 1.8 if along else 4.5), len(shapes) + 1))
        colours.append(CAR_COLOURS[rng.integers(len(CAR_COLOURS))])
    ids = rasterize(shapes, out_shape=shape, transform=canvas, fill=0, dtype="int32")
    m = ids > 0
    lut = np.concatenate([np.zeros((1, 4), np.float32), np.array(colours, np.float32)])
    refl[m] = lut[ids[m]]
    height[m] += 1.5


def _draw_trees(scene: Scene, date: str, refl, height, cls, u, v, res, n_small) -> None:
    """Tree crowns as spheroids: colour with per-tree brightness; they shade and cast shadows."""
    trees = [t for t in scene.trees if t[5] in ("both", date)]
    if cls is not None:  # high resolution: the forest canopy is made of crowns too
        rng = np.random.default_rng([SEED, 4])
        rows, cols = np.nonzero(cls[::9, ::9] == FOREST)
        for r, c in zip(rows * 9, cols * 9):
            trees.append((float(u[r, c]) + rng.uniform(-1, 1), float(v[r, c]) + rng.uniform(-1, 1),
                          rng.uniform(1.9, 3.2), rng.uniform(14, 22), rng.uniform(0.75, 1.25), "both", "forest"))
        m = cls == FOREST
        refl[m] = np.array(SPECTRA["forest_floor"], np.float32) * (1 + 0.1 * n_small[m, None])
    crown = np.zeros(height.shape, np.float32)
    tone = np.ones(height.shape, np.float32)
    kind = np.zeros(height.shape, bool)  # True: forest canopy, False: single deciduous tree
    u0, v0 = float(u[0, 0]), float(v[0, 0])
    t = math.radians(ROTATION_DEG)
    for tu, tv, r, h, br, _, knd in trees:
        # tree centre in canvas pixels: invert the rotation relative to pixel (0, 0)
        du, dv = tu - u0, tv - v0
        dx, dy = du * math.cos(t) - dv * math.sin(t), du * math.sin(t) + dv * math.cos(t)
        pc, pr = dx / res, -dy / res
        rp = r / res
        r0, r1 = int(max(0, pr - rp - 1)), int(min(height.shape[0], pr + rp + 2))
        c0, c1 = int(max(0, pc - rp - 1)), int(min(height.shape[1], pc + rp + 2))
        if r0 >= r1 or c0 >= c1:
            continue
        rr, cc = np.mgrid[r0:r1, c0:c1]
        d2 = ((rr - pr) ** 2 + (cc - pc) ** 2) / rp**2
        inside = d2 < 1
        top = (h - r) + r * np.sqrt(np.clip(1 - d2, 0, 1))
        win = np.s_[r0:r1, c0:c1]
        upd = inside & (top > crown[win])
        crown[win][upd] = top[upd]
        tone[win][upd] = br
        kind[win][upd] = knd == "forest"
    m = crown > height
    height[m] = crown[m]
    spec = np.where(kind[m][:, None], np.array(SPECTRA["forest"], np.float32), np.array(SPECTRA["tree"], np.float32))
    refl[m] = spec * (tone[m] * (1 + 0.12 * n_small[m]))[:, None]


# --------------------------------------------------------------------------- output
def _sensor(name: str, pair: dict) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([SEED, 5, PAIRS[name]["size"]])
    size = PAIRS[name]["size"]
    rr, cc = np.mgrid[0:size, 0:size].astype(np.float32) / size
    if name == "s2_like":
        gain = np.array([1.06, 1.04, 1.08, 0.93], np.float32)[:, None, None]
        offset = np.array([0.012, 0.009, 0.006, -0.005], np.float32)[:, None, None]
        shade = 1 + 0.04 * (cc - rr)  # thin haze / illumination gradient across the after scene
        before = pair["before"] + rng.normal(0, 0.005, pair["before"].shape)
        after = (pair["after"] * gain + offset) * shade + rng.normal(0, 0.005, pair["after"].shape)
        return {"before": np.clip(np.round(before * 10000), 1, 65535).astype(np.uint16),
                "after": np.clip(np.round(after * 10000), 1, 65535).astype(np.uint16)}
    # aerial RGB camera: reflectance -> DN with a gamma curve; the after date is another camera
    rgb = [2, 1, 0]
    def camera(refl):
        return 255 * np.sqrt(np.clip(refl[rgb] * 2.4, 0, 1))
    before = camera(pair["before"]) + rng.normal(0, 2.5, (3, size, size))
    gain = np.array([1.07, 0.98, 0.90], np.float32)[:, None, None]
    offset = np.array([6.0, 2.0, -4.0], np.float32)[:, None, None]
    shade = 1 + 0.05 * (rr - 0.5) - 0.03 * (cc - 0.5)
    after = (camera(pair["after"]) * gain + offset) * shade + rng.normal(0, 2.5, (3, size, size))
    return {"before": np.clip(np.round(before), 0, 255).astype(np.uint8),
            "after": np.clip(np.round(after), 0, 255).astype(np.uint8)}


def _write(path: Path, data: np.ndarray, transform, names: tuple[str, ...], tags: dict) -> None:
    profile = dict(driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                   dtype=data.dtype.name, crs=CRS, transform=transform, tiled=True, blockxsize=256,
                   blockysize=256, compress="deflate", predictor=2, zlevel=9, interleave="band")
    tmp = path.with_name(path.name + ".part")
    with rasterio.open(tmp, "w", **profile) as dst:
        dst.write(data)
        for i, nm in enumerate(names, start=1):
            dst.set_band_description(i, nm)
        dst.update_tags(**tags)
    tmp.replace(path)


def _count_blocks(scene: Scene, transform, size: int) -> dict[str, int]:
    """New buildings (centres) inside a pair's extent."""
    counts = {"dormitory_blocks": 0, "foundation_slabs": 0}
    for cu, cv, kind in scene.blocks:
        col, row = ~transform * tuple(float(c) for c in to_map(cu, cv))
        if 0 <= row < size and 0 <= col < size:
            counts[kind] += 1
    return counts


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------- a series of dates
SERIES_SEED = 20240701
#: The bundled series: one site seen on five dates, new buildings appearing between them.
SERIES = {
    "site_growth": {
        "description": (
            "Synthetic series, not real imagery: one 256 x 256 m site, 1 m, bands red green blue (uint8), seen on "
            "five dates (2024-06-14 to 2025-09-03). Between the dates a plot is cleared, then rows of new "
            "buildings, a foundation slab and a site road appear; truth.tif gives per pixel the index of the first "
            "date whose land cover differs from the first date's (0 never). Nuisances per date: phenology, sun "
            "angle (shadows), per-band gain/offset, illumination gradient, sensor noise and a sub-pixel shift."
        ),
        "size": 256,
        "dates": ("2024-06-14", "2024-08-22", "2025-05-20", "2025-07-09", "2025-09-03"),
        # (azimuth, elevation) at a late-morning overpass near 55.8 N on each date
        "sun": ((158.0, 55.0), (160.0, 45.0), (156.0, 52.0), (158.0, 55.0), (162.0, 40.0)),
    },
}
# centre of the series site in the local frame of the industrial zone (a meadow east of the
# construction site, beside the access road)
SERIES_CENTRE_UV = (1450.0, 500.0)


def _series_layout(rng: np.random.Generator) -> list[dict]:
    """What the site holds on each date: shapes in the site's own frame (metres from its centre).

    Each item: ``geom`` (u, v rectangle or polyline), ``cls``, ``spec``, ``tex``, ``height``,
    ``gable``, ``first`` (the index of the first date it exists; 0 from the start).  The dates
    at which the three building groups appear are drawn from ``rng``, and every building is
    jittered, so each seed is a different site.
    """
    def j(s: float = 2.0) -> float:
        return float(rng.uniform(-s, s))

    items: list[dict] = []

    def add(geom, cls, spec, tex, first, height=0.0, gable=False, axis_v=0.0, half_width=0.0):
        items.append(dict(geom=geom, cls=cls, spec=spec, tex=tex, first=first, height=height, gable=gable,
                          axis_v=axis_v, half_width=half_width))

    # there from the start: a field, the street with its trees, an old hall on a concrete apron
    add(("box", -140, 30, -20, 140), FIELD, "crop", TX_FIELD, 0)
    add(("line", [(-140, -95), (140, -95)], 12), ROAD, "asphalt", TX_PAVED, 0)
    add(("box", -125, -80, -55, -35), PAVED, "concrete", TX_PAVED, 0)
    add(("rect", -90, -58, 50, 24), BUILDING, "roof_grey", TX_ROOF, 0, height=8.0)
    # the construction: a plot cleared on date 1; three groups of buildings whose dates are drawn
    add(("box", 5 + j(), 15 + j(), 115 + j(), 95 + j()), SITE, "site", TX_SITE, 1)
    # the groups on fresh ground appear on dates 2, 3 and 4 in a drawn order; the plot's, on any
    order = [int(rng.integers(2, 5))] + [int(d) for d in rng.permutation([2, 3, 4])]
    groups = {
        "plot": [(40 + j(), 40 + j()), (40 + j(), 72 + j()), (92 + j(3), 40 + j())],  # on the cleared plot
        "meadow": [(-95 + 50 * k + j(), -20 + j()) for k in range(3)],  # a row on the meadow
        "field": [(-110 + j(), 60 + j()), (-55 + j(), 60 + j()), (-110 + j(), 100 + j())],  # on the field
        "east": [(100 + j(), -58 + j()), (100 + j(), -25 + j())],  # south-east of the plot
    }
    for (name, centres), first in zip(groups.items(), order):
        for cu, cv in centres:
            add(("rect", cu, cv, 40, 12), DORM, "dorm_roof", TX_DORM, first, height=6.0, gable=True, axis_v=cv,
                half_width=6.0)
        if name == "field":  # a foundation slab and the gravel road to the group
            add(("rect", -55 + j(), 100 + j(), 42, 14), SLAB, "slab", TX_PAVED, first, height=0.3)
            add(("line", [(-140, 121), (-20, 121)], 7), NEW_ROAD, "gravel", TX_PAVED, first)
        if name == "meadow":  # its access from the street
            add(("line", [(10, -89), (10, -26)], 8), NEW_ROAD, "concrete", TX_PAVED, first)
    return items


def _series_geom(g: tuple) -> dict:
    cu0, cv0 = SERIES_CENTRE_UV
    if g[0] == "box":
        return box(cu0 + g[1], cv0 + g[2], cu0 + g[3], cv0 + g[4])
    if g[0] == "rect":
        return rect(cu0 + g[1], cv0 + g[2], g[3], g[4])
    return line([(cu0 + a, cv0 + b) for a, b in g[1]], g[2])


def render_series(*, seed: int = SERIES_SEED, noise_dn: float = 2.5, max_shift_render_px: int = 1,
                  name: str = "site_growth") -> dict:
    """Render one series: the images of every date (uint8 RGB), the truth and the grid.

    Parameters: ``seed`` draws the building layout, the dates of the groups, the per-date
    camera (gain, offset, gradient), the shifts and the noise; ``noise_dn`` is the sensor noise
    (DN, standard deviation); each date after the first is displaced by a whole number of
    render pixels (1/3 m) up to ``max_shift_render_px`` in rows and columns: a sub-pixel shift.

    Returns ``{"images": [(3, n, n) uint8, ...], "truth": (n, n) uint8, "transform": Affine,
    "dates": [...], "shifts_px": [(rows, cols), ...], "first_dates": {...}}``.
    """
    cfg = SERIES[name]
    size, f = cfg["size"], 3
    res = 1.0 / f
    margin = 4 * f
    n = size * f + 2 * margin
    rng = np.random.default_rng([seed, 100])
    items = _series_layout(rng)
    cx, cy = to_map(*SERIES_CENTRE_UV)
    left, top = float(round(float(cx) - size / 2)), float(round(float(cy) + size / 2))
    canvas = from_origin(left - margin * res, top + margin * res, res, res)
    rows, cols = np.mgrid[0:n, 0:n].astype(np.float64)
    u, v = to_local(left - margin * res + (cols + 0.5) * res, top + margin * res - (rows + 0.5) * res)
    u, v = u.astype(np.float32), v.astype(np.float32)
    del rows, cols
    tex_rng = np.random.default_rng([seed, 101])
    n_large = smooth_noise(tex_rng, (n, n), 40.0 / res)
    n_med = smooth_noise(tex_rng, (n, n), 4.0 / res)
    n_small = smooth_noise(tex_rng, (n, n), 1.0 / res)
    # street trees and a few meadow trees: (u, v, radius, height), gone where something is built
    trees = [(SERIES_CENTRE_UV[0] + t, SERIES_CENTRE_UV[1] - 83 + tex_rng.uniform(-1, 1), tex_rng.uniform(2.5, 3.5),
              tex_rng.uniform(8, 11)) for t in np.arange(-135, 140, 10.0)]
    dates = cfg["dates"]
    n_dates = len(dates)
    # phenology: the meadow's and the field's green -> dry mixing on each date, and a yearly vigour pattern
    meadow_s = (0.10, 0.45, 0.05, 0.20, 0.50)
    field_s = (0.20, 0.40, 0.35, 0.15, 0.45)
    cam_rng = np.random.default_rng([seed, 102])
    classes, images, shifts = [], [], []
    for k in range(n_dates):
        objs = [o for o in items if o["first"] <= k]
        shapes = [(_series_geom(o["geom"]), i + 1) for i, o in enumerate(objs)]
        ids = rasterize(shapes, out_shape=(n, n), transform=canvas, fill=0, dtype="int32")
        cls = np.array([GRASS] + [o["cls"] for o in objs], np.uint8)[ids]
        tex = np.array([TX_VEG] + [o["tex"] for o in objs], np.uint8)[ids]
        a = np.array([SPECTRA["grass"]] + [SPECTRA[o["spec"]] for o in objs], np.float32)[ids]
        b_names = {"crop": "soil", "site": "site_wet"}
        b = np.array([SPECTRA["dry_grass"]] + [SPECTRA[b_names.get(o["spec"], o["spec"])] for o in objs],
                     np.float32)[ids]
        n_year = smooth_noise(np.random.default_rng([seed, 103, k]), (n, n), 20.0 / res)
        s = np.where(tex == TX_FIELD, field_s[k], meadow_s[k]).astype(np.float32)
        s += 0.10 * n_large + 0.05 * n_med + 0.08 * n_year
        m = tex == TX_FIELD
        s[m] += 0.05 * np.sin(2 * np.pi * u[m] / 14.0)
        m = tex == TX_SITE
        s[m] = 0.15 + 0.25 * n_large[m] + 0.1 * n_med[m] + 0.1 * (k % 2)  # wetter or drier ground
        s = np.clip(s, 0, 1)
        refl = a + (b - a) * s[..., None]
        del a, b
        amp = np.zeros((9, 2), np.float32)
        amp[[TX_VEG, TX_FIELD, TX_PAVED, TX_SITE, TX_DORM, TX_ROOF]] = [
            (0.05, 0.04), (0.03, 0.02), (0.05, 0.03), (0.08, 0.06), (0.01, 0.01), (0.03, 0.01)]
        refl *= (1 + amp[tex, 0] * n_med + amp[tex, 1] * n_small)[..., None]
        lut_h = np.array([0.0] + [o["height"] for o in objs], np.float32)
        height = lut_h[ids]
        g = np.array([False] + [o["gable"] for o in objs])[ids]
        ax = np.array([0.0] + [SERIES_CENTRE_UV[1] + o["axis_v"] for o in objs], np.float32)[ids]
        hw = np.array([0.0] + [o["half_width"] for o in objs], np.float32)[ids]
        height[g] += np.clip(hw[g] - np.abs(v[g] - ax[g]), 0, None) * math.tan(math.radians(24))
        # trees where the ground is still meadow or field
        for tu, tv, r, h in trees:
            d2 = ((u - tu) ** 2 + (v - tv) ** 2) / r**2
            inside = (d2 < 1) & np.isin(cls, (GRASS, FIELD))
            top_h = (h - r) + r * np.sqrt(np.clip(1 - d2, 0, 1))
            upd = inside & (top_h > height)
            height[upd] = top_h[upd]
            refl[upd] = np.array(SPECTRA["tree"], np.float32) * (1 + 0.12 * n_small[upd, None])
        factor, lit = sun_terms(height, res, cfg["sun"][k])
        refl *= DIFFUSE[None, None, :] + (1 - DIFFUSE)[None, None, :] * (factor * lit)[..., None]
        dr, dc = (0, 0) if k == 0 else (int(cam_rng.integers(-max_shift_render_px, max_shift_render_px + 1)),
                                        int(cam_rng.integers(-max_shift_render_px, max_shift_render_px + 1)))
        core = np.s_[margin + dr:margin + dr + size * f, margin + dc:margin + dc + size * f]
        img = area_mean(np.moveaxis(refl, -1, 0)[(slice(None),) + core], f)
        # the camera of the date: gamma curve to 8 bits, gain, offset, a gradient, noise
        dn = 255 * np.sqrt(np.clip(img[[2, 1, 0]] * 2.4, 0, 1))
        if k:
            gain = cam_rng.uniform(0.9, 1.1, 3).astype(np.float32)[:, None, None]
            offset = cam_rng.uniform(-6, 6, 3).astype(np.float32)[:, None, None]
            rr, cc = np.mgrid[0:size, 0:size].astype(np.float32) / size
            gr, gc = cam_rng.uniform(-0.04, 0.04, 2)
            dn = (dn * gain + offset) * (1 + gr * (rr - 0.5) + gc * (cc - 0.5))
        dn = dn + cam_rng.normal(0, noise_dn, dn.shape)
        images.append(np.clip(np.round(dn), 0, 255).astype(np.uint8))
        classes.append(cls[margin:margin + size * f, margin:margin + size * f])
        shifts.append((round(dr / f, 4), round(dc / f, 4)))
        del refl, height
    truth = np.zeros((size, size), np.uint8)
    for k in range(n_dates - 1, 0, -1):  # the earliest date whose cover differs from the first date's
        changed = area_mean((classes[k] != classes[0]).astype(np.float32), f) >= 0.5
        truth[changed] = k
    return {"images": images, "truth": truth, "transform": from_origin(left, top, 1.0, 1.0), "dates": list(dates),
            "shifts_px": shifts,
            "buildings_by_first_date": {dates[k]: sum(o["cls"] == DORM and o["first"] == k for o in items)
                                        for k in range(1, n_dates)}}


def write_series(out: Path, name: str = "site_growth", **kwargs) -> dict:
    """Write one series (``<date>.tif`` per date and ``truth.tif``) into ``out/series/name``; return its registry entry."""
    made = render_series(name=name, **kwargs)
    folder = out / "series" / name
    folder.mkdir(parents=True, exist_ok=True)
    common = {"SYNTHETIC": "yes", "LICENCE": "CC0-1.0", "GENERATOR": "sample_tiles/make_sample_tiles.py"}
    files = {}
    cfg = SERIES[name]
    for k, (img, date) in enumerate(zip(made["images"], made["dates"])):
        fname = f"{date}.tif"
        _write(folder / fname, img, made["transform"], ("red", "green", "blue"),
               dict(common, ACQUISITION_DATE=date, SUN_AZIMUTH=str(cfg["sun"][k][0]),
                    SUN_ELEVATION=str(cfg["sun"][k][1])))
        files[fname] = None
    _write(folder / "truth.tif", made["truth"][None], made["transform"], ("first_change",),
           dict(common, DATES=",".join(made["dates"]),
                MEANING="index (1..N-1) of the first date whose land cover differs from the first date's; 0 never"))
    files["truth.tif"] = None
    for fname in files:
        p = folder / fname
        files[fname] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
    truth = made["truth"]
    return {
        "description": cfg["description"],
        "resolution_m": 1.0,
        "shape": [cfg["size"], cfg["size"]],
        "bands": ["red", "green", "blue"],
        "dates": made["dates"],
        "images": [f"{d}.tif" for d in made["dates"]],
        "truth": "truth.tif",
        "changed_pixels_by_first_date": {d: int((truth == k).sum()) for k, d in enumerate(made["dates"]) if k},
        "change_fraction": round(float((truth > 0).mean()), 4),
        "new_buildings_by_first_date": made["buildings_by_first_date"],
        "offsets_px": [{"rows": r, "cols": c} for r, c in made["shifts_px"]],
        "files": files,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent,
                        help="output folder (default: the folder of this script)")
    parser.add_argument("--pairs", nargs="*", default=list(PAIRS), choices=list(PAIRS))
    parser.add_argument("--series", nargs="*", default=list(SERIES), choices=list(SERIES),
                        help="the series to make (default: all; pass --series alone for none)")
    args = parser.parse_args(argv)
    scene = build_scene()
    registry: dict = {
        "generator": "sample_tiles/make_sample_tiles.py",
        "licence": "CC0-1.0",
        "crs": CRS,
        "pairs": {},
    }
    reg = args.out / "registry.json"
    if reg.is_file() and set(args.pairs) != set(PAIRS):  # remaking some pairs keeps the others' entries
        registry["pairs"] = json.loads(reg.read_text())["pairs"]
    registry["series"] = {}
    if reg.is_file() and set(args.series) != set(SERIES):
        registry["series"] = json.loads(reg.read_text()).get("series", {})
    for name in args.pairs:
        pair = render_pair(name, scene)
        images = _sensor(name, pair)
        folder = args.out / name
        folder.mkdir(parents=True, exist_ok=True)
        names = BANDS if name == "s2_like" else ("red", "green", "blue")
        common = {"SYNTHETIC": "yes", "LICENCE": "CC0-1.0", "GENERATOR": "sample_tiles/make_sample_tiles.py"}
        for date in ("before", "after"):
            tags = dict(common, ACQUISITION_DATE=DATES[date], SUN_AZIMUTH=str(SUN[date][0]),
                        SUN_ELEVATION=str(SUN[date][1]))
            if name == "s2_like":
                tags["REFLECTANCE_SCALE"] = "10000"
            _write(folder / f"{date}.tif", images[date], pair["transform"], names, tags)
        _write(folder / "truth.tif", pair["truth"][None], pair["transform"], ("change",),
               dict(common, MEANING="1 land-cover change (new buildings, cleared ground, new road), 0 no change"))
        files = {}
        for fname in ("before.tif", "after.tif", "truth.tif"):
            p = folder / fname
            files[fname] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
        registry["pairs"][name] = {
            "description": PAIRS[name]["description"],
            "resolution_m": PAIRS[name]["res"],
            "shape": [PAIRS[name]["size"], PAIRS[name]["size"]],
            "bands": list(names),
            "dates": DATES,
            "change_fraction": round(float(pair["truth"].mean()), 4),
            "new_objects": _count_blocks(scene, pair["transform"], PAIRS[name]["size"]),
            "after_offset_px": {
                "rows": round(PAIRS[name]["shift_render_px"][0] / PAIRS[name]["factor"], 4),
                "cols": round(PAIRS[name]["shift_render_px"][1] / PAIRS[name]["factor"], 4),
                "meaning": "after[r, c] shows what before shows at (r + rows, c + cols); "
                           "scipy.ndimage.shift(after, (rows, cols)) registers it",
            },
            "files": files,
        }
        print(f"{name}: {folder} truth {pair['truth'].mean():.3%} changed, "
              f"{sum(f['bytes'] for f in files.values()) / 1e6:.2f} MB")
    for name in args.series:
        registry["series"][name] = entry = write_series(args.out, name)
        print(f"{name}: {args.out / 'series' / name} {len(entry['dates'])} dates, truth {entry['change_fraction']:.3%} changed, "
              f"{sum(f['bytes'] for f in entry['files'].values()) / 1e6:.2f} MB")
    tmp = reg.with_name(reg.name + ".part")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_text(json.dumps(registry, indent=2, sort_keys=True) + "\n")
    tmp.replace(reg)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
