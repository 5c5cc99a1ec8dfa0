"""Make hires_rgb_examples.geojson: the clicks of a simulated analyst on the bundled hires_rgb pair.

04_examples.ipynb reads this file when it runs headless (``INTERACTIVE = False``, as in the test
suite) instead of waiting for clicks.  The "analyst" marks points at random inside the sample's
truth, away from its edges (as a person clicks well inside what they mean): CHANGE points on
change, NO_CHANGE points on no change, in the west half of the site (columns < 400), the part
the notebook labels.  Deterministic (seed 0); run from the repository root:

    python notebooks/examples/make_examples.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from pyproj import Transformer
from scipy import ndimage

from changedet import data

CHANGE, NO_CHANGE, WEST_COLS, SEED = 15, 30, 400, 0
OUT = Path(__file__).with_name("hires_rgb_examples.geojson")


def main() -> Path:
    pair = data.load_sample("hires_rgb")
    truth = pair.truth.data[0] == 1
    to_lonlat = Transformer.from_crs(pair.truth.crs, "EPSG:4326", always_xy=True)
    rng = np.random.default_rng(SEED)
    features = []
    for change, n in ((True, CHANGE), (False, NO_CHANGE)):
        inner = ndimage.binary_erosion(truth == change, iterations=4)  # 4 px (4 m) inside
        inner[:, WEST_COLS:] = False
        rows, cols = np.nonzero(inner)
        for k in rng.choice(rows.size, n, replace=False):
            x, y = pair.truth.transform * (cols[k] + 0.5, rows[k] + 0.5)
            lon, lat = to_lonlat.transform(x, y)
            features.append({"type": "Feature", "properties": {"change": change},
                             "geometry": {"type": "Point", "coordinates": [round(lon, 9), round(lat, 9)]}})
    lines = ",\n".join(json.dumps(f) for f in features)  # one example a line: diffs stay readable
    OUT.write_text('{"type": "FeatureCollection", "features": [\n' + lines + "\n]}\n", encoding="utf-8")
    return OUT


if __name__ == "__main__":
    print(main())
