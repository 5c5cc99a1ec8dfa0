"""An area of interest restricts what is reported, not how its pixels are judged.

The run with ``aoi=`` must give, inside the area, the answer of the run without it
cropped to the area: the statistics (co-registration, normalization, threshold) come
from the scene around the area, and pixels near its edge see their neighbours.
"""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.warp import transform_bounds

from changedet.data import sample_path
from changedet.pipeline import detect_changes


def _f1(pred: np.ndarray, truth: np.ndarray) -> float:
    tp = int((pred & truth).sum())
    fp = int((pred & ~truth).sum())
    fn = int((~pred & truth).sum())
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0


def _boxes(truth: np.ndarray, n: int, seed: int) -> list[tuple[int, int, int, int]]:
    """The box around every changed pixel, and ``n`` random boxes of a quarter to half the scene."""
    rng = np.random.default_rng(seed)
    rows, cols = truth.shape
    ys, xs = np.nonzero(truth)
    boxes = [(int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1)]
    for _ in range(n):
        h, w = int(rng.integers(rows // 4, rows // 2)), int(rng.integers(cols // 4, cols // 2))
        r0, c0 = int(rng.integers(0, rows - h)), int(rng.integers(0, cols - w))
        boxes.append((r0, c0, r0 + h, c0 + w))
    return boxes


@pytest.mark.parametrize("name, windowed", [("s2_like", False), ("hires_rgb", False), ("s2_like", True)])
def test_the_answer_inside_an_area_does_not_depend_on_giving_it(name: str, windowed: bool, tmp_path) -> None:
    folder = sample_path(name)
    before, after = str(folder / "before.tif"), str(folder / "after.tif")
    with rasterio.open(folder / "truth.tif") as src:
        truth, transform, crs = src.read(1) == 1, src.transform, src.crs
    kw = dict(tiled=True, window_px=64, progress=False) if windowed else {}
    full = detect_changes(before, after, **kw, **({"out": tmp_path / "full"} if windowed else {}))
    whole = full.change_mask()
    for k, (r0, c0, r1, c1) in enumerate(_boxes(truth, 2, seed=len(name))):
        x0, y1 = transform * (c0, r0)
        x1, y0 = transform * (c1, r1)
        area = list(transform_bounds(crs, "EPSG:4326", x0, y0, x1, y1))
        res = detect_changes(before, after, aoi=area, **kw, **({"out": tmp_path / f"aoi{k}"} if windowed else {}))
        t = res.mask.transform
        row, col = round((t.f - transform.f) / transform.e), round((t.c - transform.c) / transform.a)
        mask = res.mask.data[0]
        h, w = mask.shape
        valid = mask != 255
        assert valid.any()
        cropped = whole[row:row + h, col:col + w][valid]
        inside = (mask == 1)[valid]
        agree = float((inside == cropped).mean())
        assert agree >= 0.995, (k, agree)
        t_in = truth[row:row + h, col:col + w][valid]
        if t_in.sum() > 100:  # F1 is meaningful only where the area holds change
            assert abs(_f1(inside, t_in) - _f1(cropped, t_in)) <= 0.01, k
