"""How long a run with examples takes on a notebook-sized pair (issue: "seconds on a 1-megapixel pair").

    python benchmarks/learned_speed.py [--size 1024] [--pixel 0.5] [--repeat 3] [--k 20]

A seeded synthetic site of ``benchmarks/sites.py`` (``--size`` pixels a side, ``--pixel`` metres,
8-bit RGB), ``--k`` change and ``3k`` no-change example pixels drawn from its truth; each run
is a fresh process calling ``detect_changes(before, after, examples=...)`` in memory (no files
written).  Prints the median wall time of ``detect_changes`` (not the interpreter's start),
and the median of each stage ``summary.json`` records (``fit`` holds the features, the
classifier's training and its scoring of every pixel; ``structures`` the footprint count).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

RUN = r'''
import json, sys, time, warnings
sys.path.insert(0, sys.argv[1])
warnings.simplefilter("ignore")
import numpy as np
from sites import make_site
from changedet.learn import Examples
from changedet.pipeline import detect_changes
from changedet.raster import GeoRaster

size, pixel, k = int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
s = make_site(1234, pixel_m=pixel, size_px=size)
b = GeoRaster(s.before.astype("float32"), s.transform, s.crs, s.band_names)
a = GeoRaster(s.after.astype("float32"), s.transform, s.crs, s.band_names)
rng = np.random.default_rng(0)
pos, neg = np.flatnonzero(s.truth.ravel()), np.flatnonzero(~s.truth.ravel())
idx = np.concatenate([rng.choice(pos, k, replace=False), rng.choice(neg, 3 * k, replace=False)])
rows, cols = np.unravel_index(idx, s.truth.shape)
t = time.perf_counter()
r = detect_changes(b, a, examples=Examples(rows, cols, np.arange(idx.size) < k), progress=False)
wall = time.perf_counter() - t
print(json.dumps({"wall": wall, "mpx": s.truth.size / 1e6, "timings": r.summary["timings_s"],
                  "n_changes": r.summary["results"]["n_changes"]}))
'''


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1024, help="pixels a side (default 1024: 1.05 megapixels)")
    ap.add_argument("--pixel", type=float, default=0.5, help="pixel size in metres (default 0.5)")
    ap.add_argument("--repeat", type=int, default=3, help="fresh-process runs; medians are printed (default 3)")
    ap.add_argument("--k", type=int, default=20, help="change examples (and 3k no-change; default 20)")
    args = ap.parse_args()
    runs = []
    for _ in range(args.repeat):
        proc = subprocess.run([sys.executable, "-c", RUN, str(HERE), str(args.size), str(args.pixel), str(args.k)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(proc.stderr[-2000:])
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    walls = [r["wall"] for r in runs]
    print(f"{runs[0]['mpx']:.2f} Mpx at {args.pixel:g} m, {args.k} + {3 * args.k} examples, {args.repeat} fresh runs:")
    print(f"  detect_changes with examples  {statistics.median(walls):.2f} s  (runs {min(walls):.2f}-{max(walls):.2f})")
    keys = [k for k, v in runs[0]["timings"].items() if not isinstance(v, dict)]
    print("  stages (median, s): " + ", ".join(
        f"{k} {statistics.median(r['timings'][k] for r in runs):.2f}" for k in keys))


if __name__ == "__main__":
    main()
