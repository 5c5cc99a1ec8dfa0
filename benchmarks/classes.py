"""Are the kinds of change right?  Per from-to class, the share of its area the truth marks as change.

    python benchmarks/classes.py [--sets oscd,synthetic,samplekind] [--seeds 4] [--data ../shared/data]

Every pair goes through ``changedet.pipeline.detect_changes`` as a user runs it (the default
method); each changed area's polygon is burnt onto the analysis grid and its pixels counted
against the truth.  Prints, per set and class, the number of areas, their area (pixels and,
where the grid is in metres, hectares) and the share of that area which is true change.
Target: the area called ``new_construction`` is at least 50 % true change.  Per pair with
``--per-pair``.  Same sets as ``benchmarks/quality.py`` (whose ``_pairs`` it reuses).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from quality import DEFAULT_DATA, _pairs  # noqa: E402


def _class_counts(result, truth: np.ndarray) -> dict[str, list[float]]:
    """class -> [areas, pixels, true-change pixels, hectares] of one result."""
    from rasterio.features import rasterize

    grid = result.mask
    out: dict[str, list[float]] = {}
    polys = result.polygons
    for geom, props in zip(polys.geometries, polys.properties):
        cls = str(props.get("change_class", "other"))
        burnt = rasterize([(geom, 1)], out_shape=truth.shape, transform=grid.transform, fill=0,
                          dtype="uint8").astype(bool)
        c = out.setdefault(cls, [0, 0, 0, 0.0])
        c[0] += 1
        c[1] += int(burnt.sum())
        c[2] += int((burnt & truth).sum())
        c[3] += float(props.get("area_ha") or 0.0)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default="oscd,synthetic,samplekind")
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--method", default="auto")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--per-pair", action="store_true")
    args = ap.parse_args(argv)
    from changedet.pipeline import detect_changes

    warnings.simplefilter("ignore")
    for name in args.sets.split(","):
        total: dict[str, list[float]] = {}
        for label, before, after, truth, opts in _pairs(name, args.data, args.seeds):
            # every area's class, vegetation gain and seasonal change included (the default leaves them out of the mask)
            r = detect_changes(before, after, method=args.method, tiled=False, progress=False,
                               vegetation_gain="keep", seasonal="keep", **opts)
            if r.mask.data.shape[1:] != truth.shape:
                print(f"  {name}/{label}: grid differs from truth; skipped")
                continue
            counts = _class_counts(r, truth)
            for cls, c in counts.items():
                tot = total.setdefault(cls, [0, 0, 0, 0.0])
                for i in range(4):
                    tot[i] += c[i]
            if args.per_pair:
                print(f"  {name}/{label}: " + ", ".join(
                    f"{k} {int(v[0])} areas {v[2] / max(v[1], 1):.2f} true" for k, v in sorted(counts.items())))
        print(f"{name}:")
        for cls, (n, pix, tp, ha) in sorted(total.items(), key=lambda kv: -kv[1][1]):
            print(f"  {cls:18s} {int(n):5d} areas {int(pix):9d} px {ha:9.1f} ha  true change {tp / max(pix, 1):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
