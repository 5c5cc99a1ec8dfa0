"""The numpy twins of the compiled kernels give the same results, bit for bit.

A small in-memory pair runs the numpy twins (no compiler to load); the windowed path and
large arrays run the numba kernels.  A result must not depend on which one ran.
"""

from __future__ import annotations

import numpy as np
import pytest

from changedet import _compiled as C
from changedet import _kernels as K

RNG = np.random.default_rng(7)


@pytest.fixture(autouse=True)
def _twins_run_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(K, "_USE_COMPILED", False)


def _same(a: np.ndarray, b: np.ndarray) -> None:
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(a, b)  # NaN == NaN here; values bit for bit (no tolerance)


def _image(bands: int, rows: int, cols: int, nan: float = 0.05) -> np.ndarray:
    x = RNG.gamma(2.0, 500.0, size=(bands, rows, cols)).astype(np.float32)
    x[RNG.random(x.shape) < nan] = np.nan
    return x


@pytest.mark.parametrize("shape", [(1, 1), (3, 2), (37, 53), (64, 129)])
def test_normalized_magnitude_and_differences(shape: tuple[int, int]) -> None:
    b, a = _image(4, *shape), _image(4, *shape)
    use = np.array([0, 1, 3], np.int64)
    gains, offsets = RNG.uniform(0.5, 2, 3), RNG.normal(0, 50, 3)
    meds, spreads = RNG.uniform(100, 900, 3), RNG.uniform(10, 300, 3)
    o1, o2 = np.empty(shape, np.float32), np.empty(shape, np.float32)
    K.normalized_magnitude(b, a, use, gains, offsets, meds, spreads, o1)
    C.normalized_magnitude(b, a, use, gains, offsets, meds, spreads, o2)
    _same(o1, o2)
    b[0, 0, 0], b[1, 0, 0] = 0.0, 0.0  # x + y == 0
    pairs = np.array([[3, 2], [0, 1]], np.int64)
    d1, d2 = np.zeros((5, *shape), np.float32), np.zeros((5, *shape), np.float32)
    K.normalized_differences(b, pairs, d1, 1, 2)
    C.normalized_differences(b, pairs, d2, 1, 2)
    _same(d1, d2)


@pytest.mark.parametrize("size", [3, 5, 7, 21])
@pytest.mark.parametrize("holes", [False, True])
@pytest.mark.parametrize("shape", [(1, 1), (2, 9), (40, 33)])
def test_box_mean_valid(size: int, holes: bool, shape: tuple[int, int]) -> None:
    stack = _image(3, *shape, nan=0.02 if holes else 0.0)
    ok = RNG.random(shape) > (0.3 if holes else -1)
    _same(K.box_mean_valid(stack, ok, size), C.box_mean_valid(stack, ok, np.int64(size)))


@pytest.mark.parametrize("base", [0.0, 1.5, -0.5])
@pytest.mark.parametrize("shape", [(1, 1), (3, 40), (45, 38)])
def test_mixed_pixel_weight(base: float, shape: tuple[int, int]) -> None:
    raw = RNG.gamma(1.0, 2.0, size=shape).astype(np.float32)
    raw[RNG.random(shape) < 0.05] = np.nan
    ok = RNG.random(shape) > 0.1
    for size in (5, 9):
        _same(K.mixed_pixel_weight(raw, ok, base, size), C.mixed_pixel_weight(raw, ok, float(base), np.int64(size)))


@pytest.mark.parametrize("has_water", [False, True])
@pytest.mark.parametrize("layers", [False, True])
def test_urban_score(has_water: bool, layers: bool) -> None:
    shape = (41, 57)
    raw = RNG.gamma(1.5, 2.0, size=shape).astype(np.float32)
    raw[RNG.random(shape) < 0.03] = np.nan
    sm = np.stack([RNG.gamma(1.5, 2.0, size=shape), RNG.uniform(-0.2, 0.9, size=shape),
                   RNG.uniform(-0.2, 0.9, size=shape), RNG.uniform(-0.6, 0.6, size=shape),
                   RNG.uniform(-0.6, 0.6, size=shape)]).astype(np.float32)
    sm[RNG.random(sm.shape) < 0.03] = np.nan
    if not has_water:
        sm = sm[:3].copy()
    wm = RNG.uniform(0, 1, size=shape).astype(np.float32)
    ok = RNG.random(shape) > 0.1
    args = (raw, sm, wm, ok, 1.2, 0.8, 0.05, has_water, layers)
    for x, y in zip(K.urban_score(*args), C.urban_score(*args)):
        _same(x, y)


@pytest.mark.parametrize("density", [0.0, 0.05, 0.35, 0.7, 1.0])
@pytest.mark.parametrize("shape", [(1, 1), (1, 17), (23, 1), (48, 61)])
def test_label8_and_trace_rings(density: float, shape: tuple[int, int]) -> None:
    for _ in range(5):
        mask = RNG.random(shape) < density
        score = RNG.normal(size=shape).astype(np.float32)
        score[RNG.random(shape) < 0.1] = np.nan
        mine, theirs = K.label8(mask, score), C.label8(mask, score)
        assert mine[1] == theirs[1]
        for x, y in zip(mine[:1] + mine[2:], theirs[:1] + theirs[2:]):
            _same(x, y)
        labels, n, boxes = theirs[0], theirs[1], theirs[2]
        for x, y in zip(K.trace_rings(labels, n, boxes), C.trace_rings(labels, np.int64(n), boxes)):
            _same(x, y)


@pytest.mark.parametrize("axis", [1, 2])
@pytest.mark.parametrize("d", [0.37, -0.62, 1.3, -2.8, 40.5])
@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (37, 53)])
def test_shift_cubic(axis: int, d: float, shape: tuple[int, int]) -> None:
    import math

    x = _image(3, *shape)
    k = math.floor(-d)
    weights = RNG.uniform(-0.2, 1.0, 4)
    _same(K.shift_cubic(x, k, weights, axis), C.shift_cubic(x, np.int64(k), weights, np.int64(axis)))


def test_shift_through_align_is_the_same_compiled(monkeypatch: pytest.MonkeyPatch) -> None:
    from changedet.align import Shift, apply_shift

    x = _image(4, 61, 47, nan=0.002)
    numpy_twin = apply_shift(x, Shift(0.43, -1.27))
    monkeypatch.setattr(K, "_USE_COMPILED", True)
    _same(numpy_twin, apply_shift(x, Shift(0.43, -1.27)))
    assert np.isnan(numpy_twin[:, :1]).all() and np.isfinite(numpy_twin[:, 5:-5, 5:-5]).mean() > 0.5


def test_a_small_call_does_not_load_the_compiler() -> None:
    import subprocess
    import sys

    code = ("import sys, numpy as np\n"
            "from changedet import _kernels as K\n"
            "m = np.zeros((20, 20), bool); m[3:9, 4:12] = True\n"
            "lab, n, boxes, *_ = K.label8(m, np.zeros(m.shape, np.float32))\n"
            "K.trace_rings(lab, n, boxes)\n"
            "K.box_mean_valid(np.ones((1, 20, 20), np.float32), m, 5)\n"
            "print('numba' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 2, 5), (9, 37, 53), (200, 3, 129)])
def test_pixels_last(shape: tuple[int, int, int], monkeypatch: pytest.MonkeyPatch) -> None:
    """A classifier's feature matrix from its feature images: tiles of 128 pixels x 8 layers
    (compiled) or numpy's transposing copy, the same values and layout."""
    planar = _image(*shape)
    expected = np.moveaxis(planar, 0, -1)
    numpy_twin = K.pixels_last(planar)
    monkeypatch.setattr(K, "_USE_COMPILED", True)
    compiled = K.pixels_last(planar)
    for got in (numpy_twin, compiled):
        _same(got, expected)
        assert got.flags.c_contiguous
    # a view (not C-ordered) in, the same out
    _same(K.pixels_last(planar[:, ::-1, ::2]), np.moveaxis(planar[:, ::-1, ::2], 0, -1))
