"""How good is the default (or any method) on many pairs, not one: F1 per set and its spread.

    python benchmarks/quality.py [--sets synthetic,oscd,levir,dsifn,samples] [--seeds 6]
                                 [--method auto] [--data ../shared/data]

Sets:
- ``synthetic``: seeded sites from ``benchmarks/sites.py`` at 0.5 m, 1 m (8-bit RGB) and
  10 m (Sentinel-2-like), each with its own noise, gain/offset, haze, shift and season;
- ``oscd``: the OSCD Sentinel-2 cities in ``DATA/oscd`` (truth 2 = change);
- ``levir``: LEVIR-CD 0.5 m tiles in ``DATA/vhr/levir`` (buildings only);
- ``dsifn``: DSIFN tiles in ``DATA/vhr/dsifn`` (pixel size not published; 1 m assumed);
- ``samplekind``: pairs of the bundled samples' kind with other seeds and harsher sensors
  (``benchmarks/samplekind.py``; cached in the temporary folder);
- ``samples``: the bundled sample pairs.

Every pair goes through ``changedet.pipeline.detect_changes`` as a user runs it.  Prints,
per set, the pooled F1 (all pixels of the set together), the mean F1 over pairs and
its min-max, and per pair its F1.  Masks' nodata (255) counts as no change.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
DEFAULT_DATA = HERE.parents[1] / "shared" / "data"


def _counts(pred: np.ndarray, truth: np.ndarray) -> tuple[int, int, int]:
    p = pred == 1
    return int((p & truth).sum()), int((p & ~truth).sum()), int((~p & truth).sum())


def _f1(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0


def _pairs(name: str, data: Path, seeds: int):
    """Yield (label, before, after, truth (rows, cols) bool, options) for a set."""
    from changedet.io import read_raster
    from changedet.raster import GeoRaster

    if name == "synthetic":
        from sites import make_site

        for pixel_m, size in ((0.5, 512), (1.0, 512), (10.0, 400)):
            for seed in range(seeds):
                s = make_site(1000 + seed, pixel_m=pixel_m, size_px=size)
                yield (f"{pixel_m:g}m/seed{seed}", GeoRaster(s.before.astype("float32"), s.transform, s.crs, s.band_names),
                       GeoRaster(s.after.astype("float32"), s.transform, s.crs, s.band_names), s.truth, {})
    elif name == "samplekind":
        from samplekind import make_pair

        cache = Path(tempfile.gettempdir()) / "changedet_samplekind"
        cache.mkdir(exist_ok=True)
        for kind in ("hires_rgb", "s2_like"):
            for seed in range(seeds):
                f = cache / f"{kind}_{seed}.npz"
                if not f.exists():
                    p = make_pair(seed, name=kind)
                    np.savez(f, before=p["before"], after=p["after"], truth=p["truth"],
                             transform=np.array(list(p["transform"])[:6]), names=np.array(p["band_names"]))
                z = np.load(f)
                from affine import Affine

                t = Affine(*z["transform"].tolist())
                names = tuple(str(n) for n in z["names"])
                yield (f"{kind}/seed{seed}", GeoRaster(z["before"].astype("float32"), t, "EPSG:32639", names),
                       GeoRaster(z["after"].astype("float32"), t, "EPSG:32639", names), z["truth"], {})
    elif name == "oscd":
        for city in sorted(p.name for p in (data / "oscd").iterdir() if p.is_dir()):
            root = data / "oscd" / city
            truth = read_raster(root / "cm" / f"{city}-cm.tif").data[0] == 2
            yield city, root / "imgs_1", root / "imgs_2", truth, {}
    elif name in ("levir", "dsifn"):
        root = data / "vhr" / name
        for png in sorted((root / "A").glob("*.png")):
            truth = read_raster(root / "label" / png.name).data[0] > 127
            yield png.stem, png, root / "B" / png.name, truth, {"pixel_size_m": 0.5 if name == "levir" else 1.0}
    elif name == "samples":
        from changedet import data as samples

        for s in samples.list_samples():
            folder = samples.sample_path(s)
            truth = read_raster(folder / "truth.tif").data[0] == 1
            yield s, folder / "before.tif", folder / "after.tif", truth, {}
    else:
        raise SystemExit(f"unknown set {name!r}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default="synthetic,samplekind,oscd,levir,dsifn,samples")
    ap.add_argument("--seeds", type=int, default=6)
    ap.add_argument("--method", default="auto")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--quiet", action="store_true", help="only the per-set lines")
    args = ap.parse_args(argv)
    from changedet.pipeline import detect_changes

    warnings.simplefilter("ignore")
    rows = []
    for name in args.sets.split(","):
        tot = [0, 0, 0]
        f1s = []
        groups: dict[str, list[float]] = {}
        t0 = time.perf_counter()
        for label, before, after, truth, opts in _pairs(name, args.data, args.seeds):
            r = detect_changes(before, after, method=args.method, tiled=False, progress=False, **opts)
            pred = r.mask.data[0]
            if pred.shape != truth.shape:
                print(f"  {name}/{label}: grid {pred.shape} != truth {truth.shape}; skipped")
                continue
            c = _counts(pred, truth)
            tot = [a + b for a, b in zip(tot, c)]
            f1 = _f1(*c)
            f1s.append(f1)
            groups.setdefault(label.split("/")[0] if "/" in label else name, []).append(f1)
            if not args.quiet:
                print(f"  {name}/{label}: F1 {f1:.3f}  ({r.n_changes} areas)")
        if not f1s:
            print(f"{name}: no pairs (is {args.data} there?)")
            continue
        line = (f"{name}: pooled F1 {_f1(*tot):.3f}, mean {np.mean(f1s):.3f} (min {min(f1s):.3f}, "
                f"max {max(f1s):.3f}) over {len(f1s)} pairs, {time.perf_counter() - t0:.0f} s")
        print(line)
        if len(groups) > 1:
            for g, v in groups.items():
                print(f"    {g}: mean {np.mean(v):.3f} (min {min(v):.3f}, max {max(v):.3f}) over {len(v)}")
        rows.append(line)
    print("\n".join(["", f"method {args.method}:", *rows]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
