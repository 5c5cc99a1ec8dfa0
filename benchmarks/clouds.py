"""Clouds on real pairs: what the cloud test leaves as change, and what it costs the truth.

    python benchmarks/clouds.py [--seeds 8] [--data ../shared/data] [--cities aguasclaras,...]

Sentinel-2 Level-1C pairs without a scene classification (the OSCD cities in
``DATA/oscd``, 13 bands) get their clouds from :func:`changedet.masks.spectral_cloud_mask`
and :func:`changedet.masks.cloud_shadow_mask`.  Few of the shared cities hold clouds (one:
paris, whose after image has three small cumulus), so this benchmark adds seeded ones to
every city, on one date drawn at random per seed, and runs ``detect_changes`` as a user
does (default method, 13 bands, truth unchanged):

- a cloud field: Gaussian-smoothed noise (a scale of 4-16 px) above a level that covers
  2-12 % of the scene, with a core of thickness 0.6-1 and a thin rim (thickness falling
  off over 2-8 px, with wisps), blended over the ground ``(1 - a) * ground + a * cloud``: cloud
  top-of-atmosphere reflectance 0.30-0.60 in the visible and near-infrared, 0.6 x and 0.4 x
  that in B11 and B12 (water clouds), and a cirrus (B10) signal of 4-25 DN at the core, seen
  through a 60 m band (6 x 6 block means) displaced by up to 3 px (the parallax of the
  Sentinel-2 bands);
- its shadow: the same field moved 8-40 px in one direction, darkening every band by
  35-70 % where the cloud is thick (less in blue, lit by the sky, and in B10, which sees
  the atmosphere).

Per city and seed it prints the pooled F1 against the truth, the changed pixels inside
the clouds and shadows (``fp_cloud``: all false, as nothing there changed on the ground
but the truth's own change), and the truth's changed pixels under them
(``truth_under``).  The line ``clear`` is the same cities without added clouds.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from scipy import ndimage

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
VISIBLE_NIR = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09")


def _field(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Cloud optical thickness in [0, 1]: thick cores, thin rims."""
    scale = rng.uniform(4, 16)
    g = ndimage.gaussian_filter(rng.normal(size=shape), scale, mode="wrap")
    g = (g - g.mean()) / g.std()
    cover = rng.uniform(0.02, 0.12)
    level = np.quantile(g, 1 - cover)
    rim = rng.uniform(2, 8) / scale  # the field changes by about 1 / scale per pixel
    a = np.clip((g - level) / (rim * 2.0) + 0.15, 0.0, 1.0) ** 1.5 * (g > level - rim)
    # wisps: a finer field modulates the thickness, most in the thin rim
    fine = ndimage.gaussian_filter(rng.normal(size=shape), rng.uniform(1, 3), mode="wrap")
    fine /= fine.std()
    return np.clip(a * (1 + 0.35 * (1 - a) * fine) * rng.uniform(0.6, 1.0), 0.0, 1.0)


def add_clouds(data: np.ndarray, names: tuple[str, ...], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(bands, rows, cols) Level-1C digital numbers with clouds and shadows added; and the
    footprint (cloud or shadow thickness above 0.05)."""
    rng = np.random.default_rng(seed)
    shape = data.shape[1:]
    a = _field(shape, rng)
    out = data.astype(np.float32).copy()
    # shadow first (on the ground), then the cloud over it
    ang = rng.uniform(0, 2 * np.pi)
    dist = rng.uniform(8, 40)
    shift = (int(round(dist * np.sin(ang))), int(round(dist * np.cos(ang))))
    s = ndimage.shift(a, shift, order=0, mode="constant", cval=0.0)
    dark = rng.uniform(0.35, 0.7)
    refl = rng.uniform(3000, 6000)
    cirrus = rng.uniform(4, 25)
    par = tuple(int(v) for v in rng.integers(-3, 4, size=2))
    for i, n in enumerate(names):
        band = out[i]
        k = dark * {"B01": 0.6, "B02": 0.6, "B10": 0.2}.get(n, 1.0)
        band *= 1 - k * np.clip(s * 1.3, 0, 1)
        if n == "B10":
            c = ndimage.shift(a, par, order=0, mode="nearest")
            r, cc = shape
            pad = ((0, (-r) % 6), (0, (-cc) % 6))
            cp = np.pad(c, pad, mode="edge")
            blocks = cp.reshape(cp.shape[0] // 6, 6, cp.shape[1] // 6, 6).mean(axis=(1, 3))
            c = np.kron(blocks, np.ones((6, 6)))[:r, :cc]
            band += np.round(cirrus * c)
        else:
            f = 1.0 if n in VISIBLE_NIR else (0.6 if n == "B11" else 0.4)
            band[:] = (1 - a) * band + a * refl * f
    return out, (a > 0.05) | (s > 0.05)


def _on_grid(mask: np.ndarray, src, dst, shape: tuple[int, int]) -> np.ndarray:  # noqa: ANN001
    """A mask on one date's grid moved onto the before date's (nearest neighbour), which the
    pipeline's outputs use."""
    from rasterio.warp import Resampling, reproject

    out = np.zeros(shape, np.uint8)
    reproject(mask.astype(np.uint8), out, src_transform=src.transform, src_crs=src.crs,
              dst_transform=dst.transform, dst_crs=dst.crs, resampling=Resampling.nearest)
    return out.astype(bool)


def _f1(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--cities", default="")
    ap.add_argument("--quiet", action="store_true", help="only the totals")
    args = ap.parse_args(argv)
    from changedet.io import read_band_folder, read_raster
    from changedet.pipeline import detect_changes
    from changedet.raster import GeoRaster

    warnings.simplefilter("ignore")
    root = args.data / "oscd"
    if not root.is_dir():
        print(f"no OSCD cities in {root}", file=sys.stderr)
        return 1
    cities = args.cities.split(",") if args.cities else sorted(p.name for p in root.iterdir() if p.is_dir())
    t0 = time.perf_counter()
    tot = {"clear": [0, 0, 0], "clouds": [0, 0, 0]}
    fp_cloud = truth_under = fp_cloud_clear = 0
    for city in cities:
        truth = read_raster(root / city / "cm" / f"{city}-cm.tif").data[0] == 2
        pair = [read_band_folder(root / city / d) for d in ("imgs_1", "imgs_2")]
        names = tuple(pair[0].band_names)

        def run(b: GeoRaster, a: GeoRaster) -> np.ndarray:
            r = detect_changes(b, a, tiled=False, progress=False)
            return r.mask.data[0] == 1

        def counts(m: np.ndarray) -> list[int]:
            return [int((m & truth).sum()), int((m & ~truth).sum()), int((~m & truth).sum())]

        clear = run(*pair)
        tot["clear"] = [x + y for x, y in zip(tot["clear"], counts(clear))]
        for seed in range(args.seeds):
            which = seed % 2  # before on even seeds, after on odd ones
            data, foot = add_clouds(pair[which].data, names, 1000 * seed + sum(map(ord, city)))
            cloudy = list(pair)
            cloudy[which] = GeoRaster(data, pair[which].transform, pair[which].crs, names)
            m = run(*cloudy)
            if foot.shape != m.shape or which == 1:
                foot = _on_grid(foot, pair[which], pair[0], m.shape)
            c = counts(m)
            tot["clouds"] = [x + y for x, y in zip(tot["clouds"], c)]
            fpc = int((m & foot & ~truth).sum())
            fp_cloud += fpc
            fp_cloud_clear += int((clear & foot & ~truth).sum())
            truth_under += int((truth & foot).sum())
            if not args.quiet:
                print(f"  {city} seed {seed} ({'before' if which == 0 else 'after'}): F1 {_f1(*c):.3f} "
                      f"(clear {_f1(*counts(clear)):.3f}), cloud cover {foot.mean():.1%}, fp_cloud {fpc} px",
                      flush=True)
    print(f"clear: pooled F1 {_f1(*tot['clear']):.3f} over {len(cities)} cities")
    print(f"clouds: pooled F1 {_f1(*tot['clouds']):.3f} over {len(cities)} cities x {args.seeds} seeds; "
          f"changed pixels inside clouds and shadows that are not true change {fp_cloud} "
          f"(the clear pairs there: {fp_cloud_clear}); truth under clouds {truth_under} px; "
          f"{time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
