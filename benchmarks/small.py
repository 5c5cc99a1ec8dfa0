"""The everyday case: one OSCD city in memory, `changedet detect` vs a hand-written pipeline.

    python benchmarks/small.py [CITY] [--repeat 5] [--keep DIR] [--data /work/shared/data/oscd] [--png pillow]
                               [--size ROWSxCOLS]

Prepares a 4-band (B02, B03, B04, B08) uint16 GeoTIFF pair from an OSCD city's band
folders (``CITY/imgs_1`` and ``CITY/imgs_2``; default ``rennes``), then runs, alternately
and each in a fresh process, ``--repeat`` times:

- (a) ``changedet detect BEFORE AFTER --out DIR`` into a fresh folder, figures included;
- (b) the hand-written notebook pipeline as a separate script: rasterio read,
  standardized change-vector magnitude, ``skimage.filters.threshold_otsu``, a 1-pixel
  opening, ``skimage.measure.label``, ``rasterio.features.shapes`` polygons, GeoJSON;

and prints the median wall times, their ratio (and the median of the per-pair ratios),
the stage timings ``detect`` wrote into ``summary.json``, and — when
``ChangeResult.rethreshold`` exists — the median time of re-thresholding a result
in memory.  Target (issue "One way through the pipeline"): detect <= 2.0x the
hand-written pipeline.  ``--png pillow`` has detect write its figures' PNG with Pillow's
encoder instead of ``changedet._png`` (the hand-written writer must gain more than 10 %
of the run to stay).  ``--size 776x718`` mirrors the city's bands out to that many rows and
columns (``numpy.pad`` in ``symmetric`` mode): pisa, the city the issue measured, is not in
the shared data, and ``saclay_e --size 776x718`` is the nearest pair of its size.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BANDS = ("B02", "B03", "B04", "B08")
DEFAULT_DATA = Path(os.environ.get("OSCD_ROOT", "/work/shared/data/oscd"))

#: The notebook pipeline an analyst would write by hand (argv: before after out.geojson).
HANDWRITTEN = r'''
import json, sys
import numpy as np
import rasterio
from rasterio.features import shapes
from scipy import ndimage
from skimage.filters import threshold_otsu
from skimage.measure import label

with rasterio.open(sys.argv[1]) as src:
    before = src.read().astype("float32")
    transform, crs = src.transform, src.crs
with rasterio.open(sys.argv[2]) as src:
    after = src.read().astype("float32")
diff = after - before
diff -= diff.mean(axis=(1, 2), keepdims=True)
diff /= diff.std(axis=(1, 2), keepdims=True)
magnitude = np.sqrt((diff * diff).sum(axis=0))
change = magnitude > threshold_otsu(magnitude)
change = ndimage.binary_opening(change, structure=np.ones((3, 3), bool))
labels = label(change, connectivity=2).astype("int32")
features = [
    {"type": "Feature", "geometry": geom, "properties": {"id": int(value)}}
    for geom, value in shapes(labels, mask=labels > 0, transform=transform)
]
with open(sys.argv[3], "w") as f:
    json.dump({"type": "FeatureCollection", "crs": str(crs), "features": features}, f)
print(len(features))
'''

#: What ``changedet detect`` imports before it has read a pixel, figures included.
DETECT_IMPORTS = "import changedet.cli, changedet.pipeline, changedet.plot, changedet.report"

#: Time ``ChangeResult.rethreshold`` in memory, when another engineer's method exists.
RETHRESHOLD = r'''
import statistics, sys, time
from changedet.pipeline import ChangeResult, detect_changes
if not hasattr(ChangeResult, "rethreshold"):
    print("absent"); sys.exit(0)
result = detect_changes(sys.argv[1], sys.argv[2])
times = []
for k in range(int(sys.argv[3])):
    value = result.threshold * (1.1 if k % 2 else 0.9)
    t = time.perf_counter(); result.rethreshold(value); times.append(time.perf_counter() - t)
print(statistics.median(times), len(times))
'''


def prepare_pair(city: str, folder: Path, *, data: Path = DEFAULT_DATA,
                 size: tuple[int, int] | None = None) -> tuple[Path, Path]:
    """Stack a city's B02, B03, B04, B08 into before.tif / after.tif (reused when present).

    With ``size`` (rows, cols), the bands are mirrored out (or cut) to that shape.
    """
    import numpy as np
    import rasterio

    tag = f"{city}_{size[0]}x{size[1]}" if size else city
    paths = (folder / f"{tag}_before.tif", folder / f"{tag}_after.tif")
    if all(p.exists() for p in paths):
        return paths
    folder.mkdir(parents=True, exist_ok=True)
    stacks, profiles = [], []
    for sub in ("imgs_1", "imgs_2"):
        arrays = []
        for band in BANDS:
            found = sorted((data / city / sub).glob(f"*_{band}.tif"))
            if not found:
                raise SystemExit(f"no *_{band}.tif in {data / city / sub}; pass an OSCD city folder with --data")
            with rasterio.open(found[0]) as src:
                arrays.append(src.read(1))
                profile = dict(src.profile)
        stacks.append(arrays)
        profiles.append(profile)
    # the hand-written pipeline needs one grid: dates of different sizes (saclay_e) are cut to
    # the rows and columns they share, both on the before date's grid
    rows = min(a.shape[0] for arrays in stacks for a in arrays)
    cols = min(a.shape[1] for arrays in stacks for a in arrays)
    stacks = [[a[:rows, :cols] for a in arrays] for arrays in stacks]
    if size is not None:
        rows, cols = size
        stacks = [[np.pad(a, ((0, max(0, rows - a.shape[0])), (0, max(0, cols - a.shape[1]))),
                          mode="symmetric")[:rows, :cols] for a in arrays] for arrays in stacks]
    profile = dict(profiles[0], driver="GTiff", count=len(BANDS), dtype="uint16", height=rows, width=cols)
    for arrays, dest in zip(stacks, paths):
        tmp = dest.with_suffix(".partial.tif")
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(np.stack(arrays).astype("uint16"))
            for i, band in enumerate(BANDS, start=1):
                dst.set_band_description(i, band)
        tmp.replace(dest)
    return paths


def _run(cmd: list[str], env: dict[str, str] | None = None) -> float:
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("city", nargs="?", default="rennes", help="OSCD city (default rennes)")
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="the OSCD folder holding CITY/imgs_1, CITY/imgs_2")
    ap.add_argument("--repeat", type=int, default=5, help="paired runs; medians are printed (default 5)")
    ap.add_argument("--keep", default=None, help="keep the pair and outputs in this folder")
    ap.add_argument("--size", default=None, metavar="ROWSxCOLS",
                    help="mirror the city's bands out to this shape (e.g. 776x718, pisa's)")
    ap.add_argument("--png", choices=("changedet", "pillow"), default="changedet",
                    help="the figures' PNG encoder detect uses (default changedet._png)")
    args = ap.parse_args()
    size = None
    if args.size:
        try:
            size = tuple(int(v) for v in args.size.lower().split("x"))
        except ValueError:
            size = ()
        if len(size) != 2 or min(size) < 1:
            ap.error(f"--size {args.size!r}: give ROWSxCOLS, e.g. 776x718")
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="changedet-small-"))
    exe = shutil.which("changedet", path=os.path.dirname(sys.executable)) or shutil.which("changedet")
    detect = [exe] if exe else [sys.executable, "-m", "changedet.cli"]
    try:
        before, after = prepare_pair(args.city, root, data=Path(args.data), size=size)
        script = root / "handwritten.py"
        script.write_text(HANDWRITTEN)
        # A regular install compiles the package's bytecode (pip does); an editable one writes it
        # on first import unless PYTHONDONTWRITEBYTECODE is set, and then recompiles the package
        # in every fresh process (about 0.07 s).  Compile it once, as an installed package is.
        import changedet

        subprocess.run([sys.executable, "-m", "compileall", "-q", str(Path(changedet.__file__).parent)],
                       check=True, capture_output=True)
        det_times, hand_times, det_imports, hand_imports = [], [], [], []
        out = root / "out"
        # one warm-up of each (page cache, numba's on-disk kernel cache), not counted
        for k in range(args.repeat + 1):
            shutil.rmtree(out, ignore_errors=True)
            d = _run([*detect, "detect", str(before), str(after), "--out", str(out)],
                     env={**os.environ, "CHANGEDET_PNG": args.png})
            h = _run([sys.executable, str(script), str(before), str(after), str(root / "hand.geojson")])
            di = _run([sys.executable, "-c", DETECT_IMPORTS])
            hi = _run([sys.executable, "-c", HANDWRITTEN.split("\n\n")[0]])
            if k:
                det_times.append(d)
                hand_times.append(h)
                det_imports.append(di)
                hand_imports.append(hi)
        summary = json.loads((out / "summary.json").read_text())
        rt = subprocess.run([sys.executable, "-c", RETHRESHOLD, str(before), str(after), str(args.repeat)],
                            capture_output=True, text=True)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    grid = summary.get("grid", {}).get("shape")
    det, hand = statistics.median(det_times), statistics.median(hand_times)
    ratios = [d / h for d, h in zip(det_times, hand_times)]
    print(f"{args.city}: {grid[0]} x {grid[1]} px, {len(BANDS)} bands, {summary['results']['n_changes']} changes; "
          f"{args.repeat} paired runs; figures' PNG by {args.png}")
    print(f"  changedet detect (figures) {det:6.2f} s  (runs {min(det_times):.2f}-{max(det_times):.2f})")
    print(f"  hand-written pipeline      {hand:6.2f} s  (runs {min(hand_times):.2f}-{max(hand_times):.2f})")
    print(f"  ratio of medians {det / hand:.2f}x; median of paired ratios {statistics.median(ratios):.2f}x "
          f"(target <= 2.0x)")
    di, hi = statistics.median(det_imports), statistics.median(hand_imports)
    print(f"  of which starting Python and importing: detect {di:.2f} s (matplotlib included), "
          f"hand-written {hi:.2f} s; the rest: detect {det - di:.2f} s, hand-written {hand - hi:.2f} s")
    print("  detect stages (s, summary.json): "
          + ", ".join(f"{k} {v}" for k, v in summary.get("timings_s", {}).items() if not isinstance(v, dict)))
    if rt.returncode != 0:
        print(f"  rethreshold: failed ({rt.stderr.strip().splitlines()[-1] if rt.stderr.strip() else rt.returncode})")
    elif rt.stdout.strip() == "absent":
        print("  rethreshold: ChangeResult.rethreshold does not exist yet")
    else:
        med, n = rt.stdout.split()
        print(f"  ChangeResult.rethreshold: {float(med) * 1000:.1f} ms (median of {n})")


if __name__ == "__main__":
    os.environ.setdefault("MPLBACKEND", "Agg")
    main()
