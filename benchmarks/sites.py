"""Seeded synthetic construction sites for developing and scoring the default on many pairs.

``make_site(seed, pixel_m=1.0, ...)`` draws a site of fields, meadows, trees, roads and
existing buildings, and between the dates clears a plot (vegetation to bare, graded soil)
and builds rows of blocks on part of it.  The truth is what the toolkit is for:
construction and clearing (the plot and the new roofs); seasonal change of the fields, a
new lawn and moved cars are not change.  Nuisances vary with the seed: per-band gain and
offset, haze, sensor noise, a sub-pixel shift of the after image.

At 1 m and finer the pair is 8-bit RGB (red, green, blue); at 10 m it is Sentinel-2-like
B02, B03, B04, B08 reflectance x 10000 (uint16).  Nothing here is tuned to a detector:
the parameters are drawn from broad ranges by the seed.

    >>> s = make_site(0, pixel_m=1.0, size_px=200)
    >>> s.before.shape, s.truth.dtype.name, s.band_names
    ((3, 200, 200), 'bool', ('red', 'green', 'blue'))
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from affine import Affine
from scipy import ndimage

# reflectance: blue, green, red, nir
COVER = {
    "field": (0.030, 0.065, 0.045, 0.36),
    "field_dry": (0.060, 0.085, 0.105, 0.24),
    "meadow": (0.035, 0.070, 0.055, 0.30),
    "tree": (0.025, 0.050, 0.030, 0.28),
    "soil": (0.070, 0.095, 0.125, 0.19),
    "graded": (0.100, 0.125, 0.155, 0.22),
    "asphalt": (0.065, 0.072, 0.080, 0.10),
    "roof_grey": (0.140, 0.150, 0.160, 0.19),
    "roof_white": (0.300, 0.315, 0.325, 0.35),
    "roof_red": (0.060, 0.060, 0.115, 0.16),
    "roof_blue": (0.170, 0.130, 0.080, 0.11),
    "lawn": (0.032, 0.075, 0.045, 0.38),
}


@dataclass(frozen=True)
class Site:
    """A synthetic pair: ``before``/``after`` (bands, rows, cols), ``truth`` (rows, cols) bool,
    the grid's ``transform`` and ``crs``, band names, and what was drawn (``info``)."""

    before: np.ndarray
    after: np.ndarray
    truth: np.ndarray
    transform: Affine
    crs: str
    band_names: tuple[str, ...]
    pixel_m: float
    info: dict


def _texture(rng: np.random.Generator, shape: tuple[int, int], sigma: float, amount: float) -> np.ndarray:
    t = ndimage.gaussian_filter(rng.normal(size=shape), sigma)
    return 1.0 + amount * t / (t.std() + 1e-9)


def _rect(mask: np.ndarray, r0: float, c0: float, h: float, w: float) -> None:
    rows, cols = mask.shape
    a, b = int(max(0, round(r0))), int(min(rows, round(r0 + h)))
    c, d = int(max(0, round(c0))), int(min(cols, round(c0 + w)))
    if b > a and d > c:
        mask[a:b, c:d] = True


def make_site(
    seed: int,
    *,
    pixel_m: float = 1.0,
    size_px: int = 512,
    noise: float | None = None,
    shift_px: float | None = None,
    season: bool | None = None,
) -> Site:
    """One seeded site; ``noise`` (DN, 8-bit scale), ``shift_px`` and ``season`` default to
    values drawn from the seed."""
    rng = np.random.default_rng(seed)
    shape = (size_px, size_px)
    m = 1.0 / pixel_m  # pixels per metre
    labels_b = np.zeros(shape, dtype=np.int16)  # index into kinds
    kinds = list(COVER)
    k = {name: i for i, name in enumerate(kinds)}
    # fields in a patchwork
    n_fields = rng.integers(4, 9)
    cuts_r = np.sort(rng.choice(np.arange(size_px // 8, size_px - size_px // 8), n_fields // 2, replace=False))
    cuts_c = np.sort(rng.choice(np.arange(size_px // 8, size_px - size_px // 8), n_fields - n_fields // 2, replace=False))
    rr = np.searchsorted(cuts_r, np.arange(size_px))
    cc = np.searchsorted(cuts_c, np.arange(size_px))
    patch = rr[:, None] * 31 + cc[None, :]
    choice = rng.choice(["field", "field_dry", "meadow", "tree", "soil"], size=patch.max() + 1, p=[0.35, 0.15, 0.3, 0.12, 0.08])
    for pid in np.unique(patch):
        labels_b[patch == pid] = k[str(choice[pid])]
    # roads
    road_w = max(1.0, 8 * m)
    for _ in range(rng.integers(1, 3)):
        road = np.zeros(shape, bool)
        if rng.random() < 0.5:
            _rect(road, rng.uniform(0, size_px), 0, road_w, size_px)
        else:
            _rect(road, 0, rng.uniform(0, size_px), size_px, road_w)
        labels_b[road] = k["asphalt"]
    # existing buildings
    for _ in range(int(rng.integers(3, 12))):
        b = np.zeros(shape, bool)
        _rect(b, rng.uniform(0, size_px), rng.uniform(0, size_px), rng.uniform(10, 40) * m, rng.uniform(10, 60) * m)
        labels_b[b] = k[str(rng.choice(["roof_grey", "roof_white", "roof_red", "roof_blue"]))]
    labels_a = labels_b.copy()
    # the plot: cleared and graded; blocks on part of it
    plot_h = rng.uniform(0.25, 0.5) * size_px
    plot_w = rng.uniform(0.3, 0.6) * size_px
    pr0, pc0 = rng.uniform(0, size_px - plot_h), rng.uniform(0, size_px - plot_w)
    plot = np.zeros(shape, bool)
    _rect(plot, pr0, pc0, plot_h, plot_w)
    labels_a[plot] = k[str(rng.choice(["soil", "graded"]))]
    blocks = np.zeros(shape, bool)
    bh, bw = 15 * m, 60 * m  # two-storey blocks, 60 x 15 m
    gap_r, gap_c = rng.uniform(10, 25) * m, rng.uniform(8, 20) * m
    roof = str(rng.choice(["roof_grey", "roof_white", "roof_blue", "roof_red"]))
    n_blocks = 0
    built_frac = rng.uniform(0.3, 1.0)
    r = pr0 + gap_r
    while r + bh < pr0 + plot_h * built_frac and bh >= 1:
        c = pc0 + gap_c
        while c + bw < pc0 + plot_w - gap_c:
            _rect(blocks, r, c, bh, bw)
            n_blocks += 1
            c += bw + gap_c
        r += bh + gap_r
    labels_a[blocks] = k[roof]
    # a new lawn elsewhere (vegetation growing: not construction)
    lawn = np.zeros(shape, bool)
    lh, lw = rng.uniform(0.05, 0.15) * size_px, rng.uniform(0.05, 0.15) * size_px
    _rect(lawn, rng.uniform(0, size_px - lh), rng.uniform(0, size_px - lw), lh, lw)
    lawn &= ~plot & (labels_b == k["soil"]) | (lawn & ~plot & (labels_b == k["field_dry"]))
    labels_a[lawn] = k["lawn"]
    truth = plot | blocks
    season = bool(rng.random() < 0.5) if season is None else season
    refl = np.array([COVER[n] for n in kinds], dtype=np.float64)  # (kinds, 4)

    # the ground's texture is the ground's: the same on both dates, with a little of each date's own
    tex = _texture(rng, shape, max(1.0, 2 * m), 0.12) * _texture(rng, shape, 0.7, 0.06)

    def render(labels: np.ndarray, date: int) -> np.ndarray:
        img = refl[labels].transpose(2, 0, 1).copy()  # (4, rows, cols)
        veg = np.isin(labels, [k["field"], k["meadow"], k["tree"], k["lawn"], k["field_dry"]])
        img *= tex * _texture(rng, shape, max(1.0, 1 * m), 0.03)
        if season and date == 1:  # the fields browner in the after year: phenology, not construction
            img[:, veg] = img[:, veg] * np.array([1.5, 1.25, 1.9, 0.7])[:, None]
        return img

    before = render(labels_b, 0)
    after = render(labels_a, 1)
    # shadows of the new blocks (cast to one side)
    sh = max(1, int(round(6 * m)))
    shadow = np.roll(blocks, sh, axis=1) & ~blocks
    after[:, shadow] *= 0.45
    truth |= shadow & plot
    # haze, gain, offset on the after image
    haze = rng.uniform(0.0, 0.03)
    gain = rng.uniform(0.8, 1.2, size=4)
    offset = rng.uniform(-0.01, 0.01, size=4)
    after = after * gain[:, None, None] + offset[:, None, None] + haze * np.array([1.0, 0.8, 0.6, 0.3])[:, None, None]
    shift = rng.uniform(-0.7, 0.7, size=2) if shift_px is None else np.array([shift_px, -shift_px / 2])
    after = ndimage.shift(after, (0, *shift), order=1, mode="nearest")
    truth = ndimage.shift(truth.astype(float), shift, order=1, mode="nearest") >= 0.5
    transform = Affine(pixel_m, 0, 565000.0, 0, -pixel_m, 6184000.0)
    if pixel_m < 5:
        # 8-bit RGB: red, green, blue
        noise = rng.uniform(4, 12) if noise is None else noise
        scale = 255 / 0.4
        rgb = [np.clip(img[[2, 1, 0]] * scale + rng.normal(0, noise, (3, *shape)), 0, 255).round().astype("uint8")
               for img in (before, after)]
        return Site(rgb[0], rgb[1], truth, transform, "EPSG:32639", ("red", "green", "blue"), pixel_m,
                    {"n_blocks": n_blocks, "plot_ha": float(plot.sum() * pixel_m ** 2 / 1e4), "noise": noise,
                     "shift": shift.tolist(), "season": season, "lawn": lawn})
    noise = rng.uniform(0.003, 0.01) if noise is None else noise
    s2 = [np.clip((img + rng.normal(0, noise, img.shape)) * 10000, 1, 65535).round().astype("uint16")
          for img in (before, after)]
    return Site(s2[0], s2[1], truth, transform, "EPSG:32639", ("B02", "B03", "B04", "B08"), pixel_m,
                {"n_blocks": n_blocks, "plot_ha": float(plot.sum() * pixel_m ** 2 / 1e4), "noise": noise,
                 "shift": shift.tolist(), "season": season, "lawn": lawn})
