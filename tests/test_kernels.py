"""The compiled kernels against plain numpy / scipy versions of the same arithmetic."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from changedet import _kernels as K

RNG = np.random.default_rng(3)


def _box_mean_valid_reference(x: np.ndarray, ok: np.ndarray, size: int) -> np.ndarray:
    """Valid-pixel mean over size x size, edges repeated (scipy's 'nearest'), float64."""
    num = ndimage.uniform_filter(np.where(ok, x, 0.0).astype(np.float64), size, mode="nearest")
    den = ndimage.uniform_filter(ok.astype(np.float64), size, mode="nearest")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ok & (den > 1e-9), num / den, np.nan)


@pytest.mark.parametrize("size", [3, 5, 7])
@pytest.mark.parametrize("holes", [False, True])
def test_box_mean_valid_matches_scipy(size: int, holes: bool) -> None:
    stack = RNG.normal(size=(3, 41, 57)).astype(np.float32)
    ok = np.ones((41, 57), bool)
    if holes:
        ok[RNG.random(ok.shape) < 0.2] = False
        ok[:6, :9] = False  # a block with windows that hold no valid pixel
    out = K.box_mean_valid(stack, ok, size)
    for k in range(3):
        ref = _box_mean_valid_reference(stack[k], ok, size)
        np.testing.assert_array_equal(np.isnan(out[k]), np.isnan(ref))
        np.testing.assert_allclose(out[k][ok], ref[ok], rtol=1e-5, atol=1e-5)


def test_box_mean_valid_does_not_depend_on_the_window() -> None:
    """A pixel's mean is the same computed on the whole image or on a crop holding its window."""
    stack = RNG.normal(size=(2, 64, 64)).astype(np.float32)
    ok = RNG.random((64, 64)) > 0.1
    whole = K.box_mean_valid(stack, ok, 3)
    part = K.box_mean_valid(np.ascontiguousarray(stack[:, 10:40, 7:50]), np.ascontiguousarray(ok[10:40, 7:50]), 3)
    np.testing.assert_array_equal(part[:, 1:-1, 1:-1], whole[:, 11:39, 8:49])


def test_mixed_pixel_weight_matches_numpy() -> None:
    raw = np.abs(RNG.normal(size=(50, 60))).astype(np.float32)
    raw[20:30, 20:32] += 40  # a strong change with a rim
    ok = RNG.random(raw.shape) > 0.05
    base = float(np.median(raw[ok]))
    filled = np.where(ok, raw, 0.0).astype(np.float32)
    above = np.maximum(filled - np.float32(base), 0).astype(np.float32)
    peak = ndimage.maximum_filter(ndimage.uniform_filter(above, 3, mode="nearest"), size=5, mode="nearest")
    low = ndimage.minimum_filter(above, size=3, mode="nearest")
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(peak > 0, above / peak, 1.0)
        share = np.where(low < 0.1 * peak, share, 1.0)
    ref = np.clip((share - 0.25) / 0.2, 0.0, 1.0)
    out = K.mixed_pixel_weight(raw, ok, base, 5)
    np.testing.assert_allclose(out, ref, atol=1e-4)
    assert out[25, 25] == 1.0 and out.min() == 0.0


def test_normalized_magnitude_and_differences() -> None:
    b = RNG.uniform(100, 3000, size=(4, 9, 11)).astype(np.float32)
    a = RNG.uniform(100, 3000, size=(4, 9, 11)).astype(np.float32)
    b[2, 3, 4] = np.nan
    gains, offsets = np.array([1.1, 0.9, 1.0, 1.2]), np.array([10.0, -5.0, 0.0, 3.0])
    meds, spreads = np.array([900.0, 1000.0, 1100.0, 2000.0]), np.array([300.0, 310.0, 320.0, 500.0])
    use = np.array([0, 1, 2, 3])
    out = np.empty((9, 11), np.float32)
    K.normalized_magnitude(b, a, use, gains, offsets, meds, spreads, out)
    za = ((a - offsets[:, None, None]) / gains[:, None, None] - meds[:, None, None]) / spreads[:, None, None]
    zb = (b - meds[:, None, None]) / spreads[:, None, None]
    ref = np.sqrt(((za - zb) ** 2).sum(axis=0))
    np.testing.assert_allclose(out, ref, rtol=1e-4, equal_nan=True)
    assert np.isnan(out[3, 4])
    stack = np.zeros((5, 9, 11), np.float32)
    b[1, 0, 0] = -b[3, 0, 0]  # a zero denominator gives NaN
    K.normalized_differences(b, np.array([[3, 2], [1, 3]]), stack, 1, 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        np.testing.assert_allclose(stack[1], (b[3] - b[2]) / (b[3] + b[2]), rtol=1e-5, equal_nan=True)
        np.testing.assert_allclose(stack[3][1:], ((b[1] - b[3]) / (b[1] + b[3]))[1:], rtol=1e-5, equal_nan=True)
    assert np.isnan(stack[3, 0, 0]) and np.all(stack[[0, 2, 4]] == 0)


def test_urban_score_weights() -> None:
    raw = np.full((3, 4), 5.0, np.float32)
    sm = np.zeros((5, 3, 4), np.float32)
    sm[0] = 3.0  # the magnitude is min(raw, its mean) = 3
    sm[1:3] = 0.1  # no vegetation
    sm[3:5] = -0.5  # no water
    sm[1:3, 0, 0] = 0.9  # vegetation on both dates
    sm[3:5, 0, 1] = 0.6  # water on both dates
    ok = np.ones((3, 4), bool)
    ok[2, 3] = False
    w_mixed = np.ones((3, 4), np.float32)
    score, mag, ww, wv = K.urban_score(raw, sm, w_mixed, ok, 1.0, 0.5, 0.2, True, True)
    sig = lambda x: 1.0 / (1.0 + np.exp(-x))  # noqa: E731
    w_veg, w_water = sig((0.5 - 0.1) / 0.05), 1.0 - sig((-0.5 - 0.2) / 0.05) ** 2
    assert score[1, 1] == pytest.approx((3 - 1) / 0.5 * w_veg * w_water, rel=1e-5)
    assert score[0, 0] < 0.01 and wv[0, 0] < 0.01  # vegetation on both dates
    assert score[0, 1] < 0.01 and ww[0, 1] < 0.01  # water on both dates
    assert np.isnan(score[2, 3]) and np.isnan(mag[2, 3])
    assert mag[1, 1] == 3.0
    no_layers = K.urban_score(raw, sm, w_mixed, ok, 1.0, 0.5, 0.2, True, False)
    np.testing.assert_array_equal(no_layers[0], score)
    assert no_layers[1].shape == (1, 1)


def test_sigmoid_table() -> None:
    for x in (-25.0, -20.0, -3.3, 0.0, 0.01, 7.77, 19.99, 25.0):
        assert K._sigmoid(np.float32(x)) == pytest.approx(1.0 / (1.0 + np.exp(-x)), abs=5e-6)


def _to_float32(raw: np.ndarray, nodata: np.ndarray, has: np.ndarray, zero: np.ndarray) -> np.ndarray:
    """The nodata rules in numpy: band i NaN where it equals nodata[i] (if has[i]) or 0 (if zero[i])."""
    out = raw.astype(np.float32)
    for i in range(raw.shape[0]):
        if has[i]:
            out[i][raw[i] == nodata[i]] = np.nan
        if zero[i]:
            out[i][raw[i] == 0] = np.nan
    return out


def test_gather_float32_and_all_finite() -> None:
    raw = np.array([[[0, 1, 65535]], [[0, 7, 8]]], np.uint16)
    out, finite = K.gather_float32(raw, raw, raw, np.array([[0, 1], [0, 0], [0, 0]]), 0, 3,
                                   np.array([65535.0, 0.0]), np.array([True, False]), np.array([False, True]))
    np.testing.assert_array_equal(out, np.array([[[0, 1, np.nan]], [[np.nan, 7, 8]]], np.float32))
    assert finite.tolist() == [[False, True, False]]
    assert K.all_finite(out[:1], out[1:]).tolist() == [[False, True, False]]


def test_gather_float32_is_the_nodata_rules_on_the_stacked_slices() -> None:
    strips = [RNG.integers(0, 5, size=(3, n, 20)).astype(np.uint16) for n in (4, 9, 6)]
    nodata, has, zero = np.array([3.0, 0, 0]), np.array([True, False, False]), np.array([False, True, False])
    rows = np.array([[2, 4], [0, 9], [0, 3]], np.int64)
    got, finite = K.gather_float32(*strips, rows, 5, 17, nodata, has, zero)
    want = _to_float32(np.concatenate([s[:, a:b, 5:17] for s, (a, b) in zip(strips, rows.tolist())], axis=1),
                       nodata, has, zero)
    np.testing.assert_array_equal(got, want)
    assert got.shape == (3, 14, 12) and np.isnan(want[0]).any()  # the nodata value occurs
    np.testing.assert_array_equal(finite, np.isfinite(want).all(axis=0))
    assert not finite.all() and finite.any()
    # unused ranges take nothing; float input with a nodata value
    one, _ = K.gather_float32(strips[1], strips[1], strips[1], np.array([[1, 3], [0, 0], [0, 0]]), 0, 20, nodata, has,
                              zero)
    np.testing.assert_array_equal(one, _to_float32(strips[1][:, 1:3], nodata, has, zero))
    f = strips[1].astype(np.float32)
    got_f, _ = K.gather_float32(f, f, f, np.array([[0, 9], [0, 0], [0, 0]]), 0, 20, nodata, has, zero)
    np.testing.assert_array_equal(got_f, _to_float32(f, nodata, has, zero))


@pytest.mark.parametrize("density", [0.05, 0.3, 0.6])
def test_label8_matches_scipy(density: float) -> None:
    mask = RNG.random((67, 81)) < density
    score = RNG.normal(size=mask.shape).astype(np.float32)
    score[RNG.random(mask.shape) < 0.1] = np.nan
    labels, n, boxes, counts, s_sum, s_n, s_max, edges = K.label8(mask, score)
    ref, n_ref = ndimage.label(mask, structure=np.ones((3, 3)))
    assert n == n_ref
    np.testing.assert_array_equal(labels, ref)
    for k, (rs, cs) in enumerate(ndimage.find_objects(ref)):
        assert tuple(boxes[k]) == (rs.start, rs.stop, cs.start, cs.stop)
        px = ref == k + 1
        vals = score[px]
        fin = vals[np.isfinite(vals)]
        assert counts[k] == px.sum() and s_n[k] == fin.size
        assert s_sum[k] == pytest.approx(float(fin.astype(np.float64).sum()), abs=1e-4)
        assert s_max[k] == (fin.max() if fin.size else -np.inf)
        assert edges[k].tolist() == [px[0].any(), px[-1].any(), px[:, 0].any(), px[:, -1].any()]


def _gdal_rings(labels: np.ndarray) -> dict[int, list[list[list[tuple[int, int]]]]]:
    from rasterio import features

    out: dict[int, list] = {}
    for geom, value in features.shapes(labels.astype(np.int32), connectivity=8):
        if value:
            out.setdefault(int(value), []).append([[tuple(map(int, p)) for p in ring] for ring in geom["coordinates"]])
    return out


@pytest.mark.parametrize("shape, density, opened", [((9, 11), 0.5, False), ((40, 37), 0.35, False),
                                                    ((61, 70), 0.6, True), ((25, 25), 0.8, False)])
def test_trace_rings_are_gdals_polygons(shape: tuple[int, int], density: float, opened: bool) -> None:
    """Vertex for vertex the polygons of GDAL's polygonize (8-connected): the same rings,
    start vertices, orientation, hole order, and pixels meeting at a corner joined."""
    for _ in range(40):
        mask = RNG.random(shape) < density
        if opened:
            mask = ndimage.binary_opening(mask)
        labels, n, boxes, *_ = K.label8(mask, np.zeros(shape, np.float32))
        xy, ring_start, label_start = K.trace_rings(labels, n, boxes)
        mine = {k + 1: [[[tuple(map(int, p)) for p in xy[ring_start[i]:ring_start[i + 1]]]
                         for i in range(label_start[k], label_start[k + 1])]] for k in range(n)}
        assert mine == _gdal_rings(labels)


def test_trace_rings_corner_cases() -> None:
    # two pixels meeting at a corner: one ring through the shared corner
    labels, n, boxes, *_ = K.label8(np.array([[1, 0], [0, 1]], bool), np.zeros((2, 2), np.float32))
    xy, ring_start, label_start = K.trace_rings(labels, n, boxes)
    assert n == 1 and ring_start.tolist() == [0, 9] and label_start.tolist() == [0, 1]
    assert xy.tolist() == [[0, 0], [0, 1], [1, 1], [1, 2], [2, 2], [2, 1], [1, 1], [1, 0], [0, 0]]
    # a ring of pixels around a hole; a large area (the vertex buffer grows)
    m = np.ones((300, 300), bool)
    m[1:-1, 1:-1] = False
    m[100:200:2, 100:200:2] = True
    labels, n, boxes, *_ = K.label8(m, np.zeros(m.shape, np.float32))
    xy, ring_start, label_start = K.trace_rings(labels, n, boxes)
    assert n == 1 + 50 * 50 and label_start[1] == 2  # the frame: its outline and one hole
    assert xy[ring_start[1]:ring_start[2]].tolist() == [[1, 1], [299, 1], [299, 299], [1, 299], [1, 1]]
    assert label_start[-1] == ring_start.size - 1 == 2 + 2500
    empty = K.trace_rings(np.zeros((3, 3), np.int32), 0, np.zeros((0, 4), np.int64))
    assert empty[0].shape == (0, 2) and empty[1].tolist() == [0] and empty[2].tolist() == [0]


def test_pool2() -> None:
    x = RNG.normal(size=(7, 9)).astype(np.float32)
    x[0, 0] = np.nan
    sums, counts = K.pool2_finite(x)
    pad = np.pad(x, ((0, 1), (0, 1)), constant_values=np.nan)
    blocks = pad.reshape(4, 2, 5, 2)
    np.testing.assert_allclose(sums, np.nansum(blocks, axis=(1, 3)), rtol=1e-6)
    np.testing.assert_array_equal(counts, np.isfinite(blocks).sum(axis=(1, 3)))
    s2, c2, mean = K.pool2_sums(sums, counts)
    assert c2.sum() == np.isfinite(x).sum() and mean.shape == (2, 3)
    np.testing.assert_allclose(mean[0, 0], np.nanmean(x[:4, :4]), rtol=1e-6)


def _pool2_reference(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 2 x 2 block sums and counts as a loop in the documented order (float64)."""
    rows, cols = x.shape
    sums = np.zeros(((rows + 1) // 2, (cols + 1) // 2))
    counts = np.zeros_like(sums)
    for r in range(rows):
        for c in range(0, cols - 1, 2):
            a, b = x[r, c], x[r, c + 1]
            sums[r // 2, c // 2] += (float(a) if np.isfinite(a) else 0.0) + (float(b) if np.isfinite(b) else 0.0)
            counts[r // 2, c // 2] += float(np.isfinite(a)) + float(np.isfinite(b))
        if cols % 2 and np.isfinite(x[r, -1]):
            sums[r // 2, -1] += float(x[r, -1])
            counts[r // 2, -1] += 1.0
    return sums, counts


@pytest.mark.parametrize("shape", [(1, 1), (1, 2), (2, 1), (7, 9), (8, 8), (9, 8), (17, 33)])
def test_pool2_is_the_loop_bit_for_bit(shape: tuple[int, int]) -> None:
    """The overview pooling adds in one fixed order, so windowed overviews match whole ones."""
    x = RNG.normal(size=shape).astype(np.float32)
    x[RNG.random(shape) < 0.3] = np.nan
    x[RNG.random(shape) < 0.1] = -np.inf
    x[RNG.random(shape) < 0.1] = -0.0
    sums, counts = K.pool2_finite(x)
    ref_sums, ref_counts = _pool2_reference(x)
    assert sums.tobytes() == ref_sums.tobytes() and counts.tobytes() == ref_counts.tobytes()
    s2, c2, mean = K.pool2_sums(sums, counts)
    ref_s2, ref_c2 = np.zeros_like(s2), np.zeros_like(c2)
    for r in range(sums.shape[0]):
        for c in range(sums.shape[1]):
            ref_s2[r // 2, c // 2] += sums[r, c]
            ref_c2[r // 2, c // 2] += counts[r, c]
    assert s2.tobytes() == ref_s2.tobytes() and c2.tobytes() == ref_c2.tobytes()
    ref_mean = np.full(s2.shape, np.nan, np.float32)
    ref_mean[c2 > 0] = (s2[c2 > 0] / c2[c2 > 0]).astype(np.float32)
    assert mean.tobytes() == ref_mean.tobytes()


def test_all_finite_on_views() -> None:
    before = RNG.normal(size=(3, 20, 30)).astype(np.float32)
    after = RNG.normal(size=(2, 20, 30)).astype(np.float32)
    before[1, 4, 5] = np.nan
    after[0, 7, 8] = np.inf
    expected = np.isfinite(before).all(axis=0) & np.isfinite(after).all(axis=0)
    np.testing.assert_array_equal(K.all_finite(before, after), expected)
    np.testing.assert_array_equal(K.all_finite(before[:, ::2, 1:], after[:, ::2, 1:]), expected[::2, 1:])


_SIGNATURE_PROBE = """
import json, sys
from numba.core.registry import CPUDispatcher
from changedet import _compiled as _kernels, data
from changedet.pipeline import detect_changes
for name in data.list_samples():
    folder = data.sample_path(name)
    # the windowed path runs the compiled kernels (in memory, small pairs run their numpy twins)
    detect_changes(folder / "before.tif", folder / "after.tif", out=sys.argv[1] + "/" + name, figures=False,
                   progress=False, tiled=True, window_px=128)
compiled = {n: f.signatures for n, f in vars(_kernels).items()
            if isinstance(f, CPUDispatcher) and not n.startswith("_") and f.signatures
            and n != "gather_float32"}  # the windowed reader's conversion: one per input data type
# the specializations a run compiled that SIGNATURES does not declare
undeclared = {n: [str(s) for s in sigs if tuple(s) != _kernels.SIGNATURES.get(n)] for n, sigs in compiled.items()}
print(json.dumps({"compiled": sorted(compiled), "undeclared": {n: v for n, v in undeclared.items() if v}}))
"""


def test_a_run_compiles_the_declared_signatures_only(tmp_path) -> None:
    """compile_in_background compiles SIGNATURES; a run that needs other argument types
    would compile them again on its first call (seconds on a first run)."""
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, "-c", _SIGNATURE_PROBE, str(tmp_path)], capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(got["compiled"]) >= {"box_mean_valid", "mixed_pixel_weight", "label8", "trace_rings"}
    assert got["undeclared"] == {}


_CACHE_PROBE = """
import numpy as np
from changedet import _compiled as _kernels
labels, n = _kernels.label8(np.eye(4, dtype=bool), np.ones((4, 4), np.float32))[:2]
print(_kernels._OPTS["cache"], n)
"""


@pytest.mark.parametrize("locators, cached", [
    # a read-only install without a user cache folder: a folder in the temporary directory
    ("numba.core.caching.UserProvidedCacheLocator", True),
    # not even that: the kernels still import and run, compiled every time
    ("numba.core.caching.IPythonCacheLocator", False),
])
def test_kernels_run_where_numba_finds_no_cache_folder(tmp_path, locators: str, cached: bool) -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env.update(NUMBA_CACHE_LOCATOR_CLASSES=locators, TMPDIR=str(tmp_path))
    proc = subprocess.run([sys.executable, "-c", _CACHE_PROBE], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [str(cached), "1"]
    assert any(tmp_path.glob("changedet-numba-*/**/*.nbi")) == cached
