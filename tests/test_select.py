"""changedet._select: numpy's median and percentiles, bit for bit, by single selections."""

import numpy as np
import pytest

from changedet import _select


@pytest.mark.parametrize("dtype", ["float32", "float64", "int16", "uint16"])
@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 10, 101, 1000, 30001])
def test_same_as_numpy(dtype, n):
    rng = np.random.default_rng(n)
    v = (rng.normal(size=n) * 1000).astype(dtype) if dtype.startswith("float") else rng.integers(0, 3000, n).astype(dtype)
    if n > 10:
        v[: n // 3] = v[0]  # ties
    q = [0, 2, 10, 25, 33.3, 50, 75, 90, 98, 100]
    assert _select.median(v) == float(np.median(v))
    assert _select.percentiles(v, q) == [float(x) for x in np.percentile(v, q)]


def test_input_unchanged_and_any_shape():
    v = np.arange(24, 0, -1, dtype="float32").reshape(4, 6)
    before = v.copy()
    assert _select.median(v) == float(np.median(v))
    assert _select.percentiles(v, [10, 90]) == [float(x) for x in np.percentile(v, [10, 90])]
    np.testing.assert_array_equal(v, before)


def test_empty_as_numpy():
    with pytest.warns(RuntimeWarning):
        assert np.isnan(_select.median(np.array([], "float32")))
