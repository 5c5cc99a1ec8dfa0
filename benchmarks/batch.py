"""Batch throughput: N small pairs on 1 worker vs W local worker processes.

    python benchmarks/batch.py [--pairs 8] [--size 512] [--workers 2] [--repeats 3]

Writes N synthetic 4-band 10 m pairs (with planted changes) into a temporary folder,
runs ``changedet.batch.run_batch`` with 1 worker and with W workers (fresh output
folders each time, so nothing is skipped), and prints the median wall times and
the speed-up.  Target (issue 4): 8 pairs, 2 workers >= 1.7x faster than 1 worker.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from scipy import ndimage

from changedet.batch import run_batch


def write_pair(folder: Path, size: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    base = ndimage.gaussian_filter(rng.normal(size=(4, size, size)), (0, 2.5, 2.5))
    img = (900 + 350 * base / base.std()).clip(1, 6000)
    after = img * rng.uniform(0.9, 1.1, size=(4, 1, 1)) + rng.normal(0, 15, size=img.shape)
    for _ in range(12):  # new buildings
        r, c = rng.integers(10, size - 30, size=2)
        after[:, r : r + 6, c : c + 15] = rng.uniform(2500, 3500)
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in (("before.tif", img), ("after.tif", after)):
        with rasterio.open(
            folder / name, "w", driver="GTiff", width=size, height=size, count=4, dtype="uint16",
            crs="EPSG:32639", transform=Affine(10, 0, 500000, 0, -10, 6190000), tiled=True, compress="deflate",
        ) as dst:
            dst.write(data.clip(1, 65535).astype("uint16"))
            for i, n in enumerate(("B02", "B03", "B04", "B08"), start=1):
                dst.set_band_description(i, n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for i in range(args.pairs):
            write_pair(root / "pairs" / f"site{i:02d}", args.size, i)
        times: dict[int, list[float]] = {1: [], args.workers: []}
        for rep in range(args.repeats):
            for w in (1, args.workers):
                t0 = time.perf_counter()
                res = run_batch(root / "pairs", root / f"out_{w}_{rep}", workers=w, progress=False)
                times[w].append(time.perf_counter() - t0)
                assert res.n_failed == 0, str(res)
        t1, tw = statistics.median(times[1]), statistics.median(times[args.workers])
        print(f"pairs: {args.pairs} x {args.size}x{args.size} px x 4 bands, repeats: {args.repeats}")
        print(f"1 worker : median {t1:.2f} s  (runs {', '.join(f'{t:.2f}' for t in times[1])})")
        print(f"{args.workers} workers: median {tw:.2f} s  (runs {', '.join(f'{t:.2f}' for t in times[args.workers])})")
        print(f"speed-up : {t1 / tw:.2f}x  (target >= 1.7x for 8 pairs on 2 workers)")


if __name__ == "__main__":
    main()
