"""Medians and percentiles of a run's statistics, by single selections.

``np.median`` selects two elements and a third to look for NaN, and ``np.percentile``
of several quantiles partitions around every index at once; numpy's selection is fast
for one index and several times slower for several (300,000 float32 values: one
selection 0.2 ms, ``np.median`` 2.1 ms, ``np.percentile`` of three quantiles 4.6 ms).
Here each index is one selection of the part of the array that can hold it, and the
values are combined exactly as numpy combines them, so the results are numpy's, bit
for bit (``tests/test_select.py``).  The values must be finite (the callers select the
valid pixels first).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["median", "percentiles"]


def _order_stats(v: np.ndarray, ranks: Sequence[int]) -> dict[int, np.generic]:
    """The values at ``ranks`` (0-based) of sorted ``v`` (1-D, finite), each by one selection
    of the slice between the ranks already placed."""
    want = sorted(set(int(r) for r in ranks))
    part = np.array(v, copy=True)
    out: dict[int, np.generic] = {}
    lo, hi = 0, part.size  # part[lo:hi] holds the ranks not placed yet (those above the last placed)
    for r in want:
        seg = part[lo:hi]
        seg.partition(r - lo)
        out[r] = seg[r - lo]
        lo = r + 1
    return out


def median(v: np.ndarray) -> float:
    """``float(np.median(v))`` of finite values, by one or two selections.

    Parameters
    ----------
    v : ndarray
        Finite values (any shape; flattened).

    Returns
    -------
    float

    Examples
    --------
    >>> median(np.array([3.0, 1.0, 2.0, 10.0]))
    2.5
    """
    v = np.asarray(v).ravel()
    n = v.size
    if n == 0:
        return float(np.median(v))
    k = n // 2
    if n % 2:
        return float(_order_stats(v, [k])[k])
    s = _order_stats(v, [k - 1, k])
    return float(np.mean(np.array([s[k - 1], s[k]], dtype=v.dtype)))


def percentiles(v: np.ndarray, q: Sequence[float]) -> list[float]:
    """``np.percentile(v, q)`` (linear interpolation) of finite values, as floats.

    Parameters
    ----------
    v : ndarray
        Finite values (any shape; flattened).
    q : sequence of float
        Percentiles in [0, 100].

    Returns
    -------
    list of float
        One value per ``q``.

    Examples
    --------
    >>> percentiles(np.arange(11.0), [10, 50, 95])
    [1.0, 5.0, 9.5]
    """
    v = np.asarray(v).ravel()
    n = v.size
    if n == 0:
        return [float(x) for x in np.percentile(v, q)]
    virtual = (n - 1) * (np.asarray(q, dtype=np.float64) / 100)  # numpy's 'linear' method
    below = np.clip(np.floor(virtual).astype(np.intp), 0, n - 1)
    above = np.clip(below + 1, 0, n - 1)
    stats = _order_stats(v, [*below.tolist(), *above.tolist()])
    a = np.array([stats[int(i)] for i in below], dtype=v.dtype)
    b = np.array([stats[int(i)] for i in above], dtype=v.dtype)
    t = virtual - below
    # numpy's _lerp: from the lower neighbour below half-way, from the upper one above
    diff = b - a
    out = a + diff * t
    np.subtract(b, diff * (1 - t), out=out, where=t >= 0.5, casting="unsafe", dtype=type(out.dtype))
    return [float(x) for x in out]
