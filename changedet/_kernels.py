"""The per-pixel kernels of a run, in two implementations of one arithmetic.

The urban-spectral score of :func:`changedet.change.auto`, the change vector, the
valid-pixel box means, the mixed-pixel weight, the 8-connected labelling and the
outline tracing exist twice:

- :mod:`changedet._compiled`: numba loops that release the GIL, so the windows of a
  large scene run on every core, and that make one pass over memory where numpy makes
  several.  Loading numba and its cached kernels costs a process about half a second,
  and the first run after an install compiles them (seconds).
- here, numpy (and ``scipy.ndimage`` / GDAL's polygonize through rasterio) doing the
  same operations in the same order, so the results are the same bit for bit
  (``tests/test_twins.py`` checks it on random inputs with NaN and invalid pixels).

A call runs compiled once :func:`use_compiled` was called in the process (the windowed
path does, before its windows start), or when its array is larger than
:data:`SMALL_PX`; otherwise the numpy twin runs, and a notebook-sized pair never loads
the compiler.  Which one ran never changes a result.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["normalized_magnitude", "normalized_differences", "box_mean_valid", "mixed_pixel_weight", "urban_score",
           "label8", "trace_rings", "shift_cubic", "gather_float32", "all_finite", "pool2_finite", "pool2_sums", "mean_of",
           "pixels_last", "use_compiled", "compiled_in_use", "SMALL_PX", "SMALL_LAYERS_VALUES"]

#: Arrays of more pixels than this run compiled even when :func:`use_compiled` was not called.
SMALL_PX = 4_000_000
#: :func:`pixels_last` runs compiled for more values than this (about 180 feature layers of
#: 0.6 megapixels) even when :func:`use_compiled` was not called: above it the copy saves more
#: than loading numba costs a fresh process (about 0.5 s).
SMALL_LAYERS_VALUES = 100_000_000

_USE_COMPILED = False


def use_compiled(background: bool = False) -> Any:
    """Run every later kernel call of this process compiled (numba).

    Parameters
    ----------
    background : bool
        Load (or, after an install, compile) the kernels on a thread and return at once.

    Returns
    -------
    threading.Thread or None
        The loading thread when ``background``.
    """
    global _USE_COMPILED
    from . import _compiled

    _USE_COMPILED = True
    return _compiled.compile_in_background() if background else None


def compiled_in_use() -> bool:
    """Whether kernel calls of this process run compiled regardless of their size.

    Returns
    -------
    bool
    """
    return _USE_COMPILED


def _compiled_for(n_px: int) -> Any:
    """The compiled module when this call should run compiled, else None."""
    if _USE_COMPILED or n_px > SMALL_PX:
        from . import _compiled

        return _compiled
    return None


# --------------------------------------------------------------------------- numpy twins
def _edge_sums(x: np.ndarray, half: int, axis: int) -> np.ndarray:
    """Sum of ``x`` over ``[i - half, i + half]`` along ``axis`` (edges repeated), added in
    order from the first element of the window to the last (the compiled loops' order)."""
    n = x.shape[axis]
    idx = np.clip(np.arange(-half, n + half), 0, n - 1)
    padded = np.take(x, idx, axis=axis)
    sl = [slice(None)] * x.ndim
    sl[axis] = slice(0, n)
    acc = padded[tuple(sl)].copy()
    for d in range(1, 2 * half + 1):
        sl[axis] = slice(d, d + n)
        acc += padded[tuple(sl)]
    return acc


def _edge_extreme(x: np.ndarray, half: int, axis: int, take_max: bool) -> np.ndarray:
    from scipy import ndimage

    f = ndimage.maximum_filter1d if take_max else ndimage.minimum_filter1d
    return f(x, size=2 * half + 1, axis=axis, mode="nearest")


def normalized_magnitude(before: np.ndarray, after: np.ndarray, use: np.ndarray, gains: np.ndarray,
                         offsets: np.ndarray, meds: np.ndarray, spreads: np.ndarray, out: np.ndarray) -> None:
    """Change-vector magnitude of the bands ``use`` after radiometric normalization, into ``out``.

    ``sqrt(sum(((a - offset) / gain - b) / spread) ** 2))`` over the bands, float32, NaN
    where a band is NaN.

    Parameters
    ----------
    before, after : (bands, rows, cols) ndarray of float32
    use : (k,) ndarray of int64
        The bands to use.
    gains, offsets, meds, spreads : (k,) ndarray of float64
        Per used band: the radiometric relation and the before band's robust spread.
    out : (rows, cols) ndarray of float32
        Written in place.
    """
    c = _compiled_for(out.size)
    if c is not None:
        return c.normalized_magnitude(before, after, use, gains, offsets, meds, spreads, out)
    acc = np.zeros(out.shape, np.float32)
    for k in range(use.shape[0]):
        i = int(use[k])
        p = np.float32(1.0 / (gains[k] * spreads[k]))
        q = np.float32(1.0 / spreads[k])
        o = np.float32(offsets[k] / (gains[k] * spreads[k]))
        d = after[i] * p - before[i] * q - o
        acc += d * d
    np.sqrt(acc, out=out)
    return None


def normalized_differences(image: np.ndarray, pairs: np.ndarray, out: np.ndarray, start: int, step: int) -> None:
    """``(x - y) / (x + y)`` for each band pair ``(x, y)`` of ``pairs`` into ``out[start + k * step]``.

    Computed in float64, stored as float32; NaN where ``|x + y| <= 1e-12`` or a band is NaN.

    Parameters
    ----------
    image : (bands, rows, cols) ndarray of float32
    pairs : (k, 2) ndarray of int64
    out : (layers, rows, cols) ndarray of float32
        Written in place.
    start, step : int
        Layer of the first pair and the step between pairs.
    """
    c = _compiled_for(image.shape[1] * image.shape[2])
    if c is not None:
        return c.normalized_differences(image, pairs, out, start, step)
    with np.errstate(invalid="ignore", divide="ignore"):
        for k in range(pairs.shape[0]):
            x = image[int(pairs[k, 0])].astype(np.float64)
            y = image[int(pairs[k, 1])].astype(np.float64)
            t = x + y
            out[start + k * step] = np.where(np.abs(t) > 1e-12, ((x - y) / t).astype(np.float32), np.float32(np.nan))
    return None


def box_mean_valid(stack: np.ndarray, ok: np.ndarray, size: int) -> np.ndarray:
    """Mean over a ``size`` x ``size`` window of the valid pixels only, per layer.

    NaN where the pixel itself is not valid or no pixel of its window is; a NaN value at a
    valid pixel spreads to its neighbours.  Sums in one fixed order (row sums, then rows
    top to bottom), so a pixel's value depends on its window alone.

    Parameters
    ----------
    stack : (layers, rows, cols) ndarray of float32
    ok : (rows, cols) ndarray of bool
    size : int
        Odd window side in pixels.

    Returns
    -------
    (layers, rows, cols) ndarray of float32
    """
    c = _compiled_for(ok.size)
    if c is not None:
        return c.box_mean_valid(stack, ok, size)
    half = int(size) // 2
    all_ok = bool(ok.all())
    vals = stack if all_ok else np.where(ok, stack, np.float32(0.0))
    sums = _edge_sums(_edge_sums(vals.astype(np.float32, copy=False), half, 2), half, 1)
    if all_ok:
        return (sums / np.float32(size * size)).astype(np.float32)
    count = _edge_sums(_edge_sums(ok.astype(np.float32), half, 1), half, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ok & (count > 0), sums / count, np.float32(np.nan)).astype(np.float32)


def mixed_pixel_weight(raw: np.ndarray, ok: np.ndarray, base: float, size: int) -> np.ndarray:
    """The half-contrast rim weight of :func:`changedet.change._mixed_pixel_weight`.

    ``above = max(raw - base, 0)`` (0 where not valid); ``peak`` = maximum over ``size`` x
    ``size`` of the 3 x 3 mean of ``above``; a pixel whose 3 x 3 minimum is under a tenth
    of the peak gets ``clip((above / peak - 0.25) / 0.2, 0, 1)``, others 1.

    Parameters
    ----------
    raw : (rows, cols) ndarray of float32
    ok : (rows, cols) ndarray of bool
    base : float
    size : int

    Returns
    -------
    (rows, cols) ndarray of float32
    """
    c = _compiled_for(ok.size)
    if c is not None:
        return c.mixed_pixel_weight(raw, ok, base, size)
    fb = np.float32(base)
    zero = np.float32(0.0)
    outside = -fb if fb < 0 else zero
    x = raw - fb
    above = np.where(ok & np.isfinite(raw), np.where(x > 0, x, zero), outside).astype(np.float32)
    mean3 = _edge_sums(_edge_sums(above, 1, 1), 1, 0) / np.float32(9.0)
    half = int(size) // 2
    peak = _edge_extreme(_edge_extreme(mean3, half, 1, True), half, 0, True)
    low = _edge_extreme(_edge_extreme(above, 1, 1, False), 1, 0, False)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where((peak > 0) & (low < np.float32(0.1) * peak), above / peak, np.float32(1.0))
    w = (share - np.float32(0.25)) / np.float32(0.2)
    return np.minimum(np.maximum(w, zero), np.float32(1.0)).astype(np.float32)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """The compiled ``_sigmoid`` (tabulated logistic) on a float32 array."""
    from ._sigmoid_table import SIG_STEP, SIG_TABLE

    t = (x.astype(np.float64) + 20.0) * SIG_STEP
    i = np.clip(t, 0, SIG_TABLE.size - 2).astype(np.int64)
    f = (t - i).astype(np.float32)
    y = SIG_TABLE[i] + f * (SIG_TABLE[i + 1] - SIG_TABLE[i])
    return np.where(x <= -20.0, np.float32(0.0), np.where(x >= 20.0, np.float32(1.0), y)).astype(np.float32)


def urban_score(raw: np.ndarray, smoothed: np.ndarray, w_mixed: np.ndarray, ok: np.ndarray, zmed: float,
                zmad: float, water_floor: float, has_water: bool, layers: bool) -> tuple[np.ndarray, ...]:
    """The urban-spectral score from its parts (float32, NaN where not valid).

    See :func:`changedet._compiled.urban_score`.

    Parameters
    ----------
    raw : (rows, cols) ndarray of float32
        The change magnitude.
    smoothed : (3 or 5, rows, cols) ndarray of float32
        Means of the magnitude, NDVI before and after (and the water index before and after).
    w_mixed : (rows, cols) ndarray of float32
    ok : (rows, cols) ndarray of bool
    zmed, zmad, water_floor : float
    has_water, layers : bool

    Returns
    -------
    score, magnitude, water weight, vegetation weight : ndarray of float32
        The weights and magnitude are (rows, cols) with ``layers``, else 1 x 1 NaN.
    """
    c = _compiled_for(ok.size)
    if c is not None:
        return c.urban_score(raw, smoothed, w_mixed, ok, zmed, zmad, water_floor, has_water, layers)
    nan = np.float32(np.nan)
    one = np.float32(1.0)
    s0, s1, s2 = smoothed[0], smoothed[1], smoothed[2]
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        mag = np.where(np.isnan(raw) | np.isnan(s0), nan, np.minimum(raw, s0))
        mag = np.where(ok, mag, nan).astype(np.float32)
        z = (mag - np.float32(zmed)) / np.float32(zmad)
        if has_water:
            wb = np.where(np.isnan(smoothed[3]), -1.0, smoothed[3].astype(np.float64))
            wa = np.where(np.isnan(smoothed[4]), -1.0, smoothed[4].astype(np.float64))
        else:
            wb = wa = np.full(raw.shape, -1.0)
        sb = _sigmoid(((wb - water_floor) / 0.05).astype(np.float32))
        sa = _sigmoid(((wa - water_floor) / 0.05).astype(np.float32))
        w_water = np.where(sb > 0, one - sb * sa, one).astype(np.float32)
        nv = np.where(np.isnan(s1) | np.isnan(s2), 0.0, np.minimum(s1, s2).astype(np.float64))
        w_veg = _sigmoid(((0.5 - nv) / 0.05).astype(np.float32))
        s = (z.astype(np.float64) * w_water * w_veg * w_mixed.astype(np.float64)).astype(np.float32)
        score = np.where(ok & np.isfinite(s), s, nan).astype(np.float32)
    if layers:
        return score, mag, np.where(ok, w_water, nan).astype(np.float32), np.where(ok, w_veg, nan).astype(np.float32)
    ph = np.full((1, 1), nan, np.float32)
    return score, ph, ph.copy(), ph.copy()


def label8(mask: np.ndarray, score: np.ndarray) -> tuple[Any, ...]:
    """8-connected components of a (rows, cols) bool mask and their statistics.

    Labels numbered 1..n in row-major order of their first pixel (``scipy.ndimage.label``).

    Parameters
    ----------
    mask : (rows, cols) ndarray of bool
    score : (rows, cols) ndarray of float32

    Returns
    -------
    labels : (rows, cols) ndarray of int32
    n : int
    boxes : (n, 4) ndarray of int64
        row0, row1, col0, col1 (end exclusive).
    counts, s_n : (n,) ndarray of int64
        Pixels, and pixels with a finite score.
    s_sum, s_max : (n,) ndarray of float64
        Sum and maximum of the finite scores (-inf without one).
    edges : (n, 4) ndarray of bool
        Touches the top, bottom, left, right border.
    """
    c = _compiled_for(mask.size)
    if c is not None:
        return c.label8(mask, score)
    from scipy import ndimage

    labels, n = ndimage.label(mask, structure=np.ones((3, 3), bool), output=np.int32)
    n = int(n)
    boxes = np.array([(s[0].start, s[0].stop, s[1].start, s[1].stop) for s in ndimage.find_objects(labels)],
                     np.int64).reshape(n, 4)
    lab = labels[mask]
    counts = np.bincount(lab, minlength=n + 1)[1:].astype(np.int64)
    vals = score[mask]
    fin = np.isfinite(vals)
    s_sum = np.bincount(lab[fin], weights=vals[fin].astype(np.float64), minlength=n + 1)[1:].astype(np.float64)
    s_n = np.bincount(lab[fin], minlength=n + 1)[1:].astype(np.int64)
    s_max = np.full(n + 1, -np.inf)
    np.maximum.at(s_max, lab[fin], vals[fin].astype(np.float64))
    edges = np.zeros((n + 1, 4), bool)
    for j, line in enumerate((labels[0], labels[-1], labels[:, 0], labels[:, -1])):
        edges[np.unique(line), j] = True
    return labels, n, boxes, counts, s_sum, s_n, s_max[1:], edges[1:]


def trace_rings(labels: np.ndarray, n: int, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Outline rings of labels 1..n of an 8-connected labelling, along pixel edges.

    GDAL's polygonize (``rasterio.features.shapes``, 8-connected): pixel-corner
    coordinates (x = column, y = row), per label the exterior ring, then the holes.

    Parameters
    ----------
    labels : (rows, cols) ndarray of int32
    n : int
    boxes : (n, 4) ndarray of int64

    Returns
    -------
    xy : (vertices, 2) ndarray of int64
    ring_start : (rings + 1,) ndarray of int64
    label_start : (n + 1,) ndarray of int64
    """
    c = _compiled_for(labels.size)
    if c is not None:
        return c.trace_rings(labels, n, boxes)
    from rasterio import features

    rings_of: list[list[Any]] = [[] for _ in range(int(n))]
    if n:
        for geom, value in features.shapes(labels, mask=labels > 0, connectivity=8):
            rings_of[int(value) - 1] = geom["coordinates"]
    parts, ring_start, label_start = [], [0], [0]
    for rings in rings_of:
        for ring in rings:
            parts.append(np.asarray(ring, dtype=np.float64).astype(np.int64))
            ring_start.append(ring_start[-1] + len(ring))
        label_start.append(len(ring_start) - 1)
    xy = np.concatenate(parts) if parts else np.zeros((0, 2), np.int64)
    return xy, np.asarray(ring_start, np.int64), np.asarray(label_start, np.int64)


def shift_cubic(x: np.ndarray, k: int, weights: np.ndarray, axis: int) -> np.ndarray:
    """The 4-tap cubic convolution of :func:`changedet.align.apply_shift` along one axis.

    Parameters
    ----------
    x : (bands, rows, cols) ndarray of float32
    k : int
        The integer part of the source offset: output ``i`` draws on ``i + k - 1`` to ``i + k + 2``.
    weights : (4,) ndarray of float64
        The taps' weights (applied as float32).
    axis : {1, 2}
        Rows or columns.

    Returns
    -------
    (bands, rows, cols) ndarray of float32
        NaN where a tap falls outside ``x``; a NaN tap gives NaN.
    """
    compiled = _compiled_for(x.size)
    if compiled is not None:
        return compiled.shift_cubic(np.ascontiguousarray(x, dtype=np.float32), np.int64(k),
                                    np.asarray(weights, np.float64), np.int64(axis))
    n = x.shape[axis]
    out = np.full_like(x, np.nan)
    src = np.moveaxis(x, axis, 0)
    dst = np.moveaxis(out, axis, 0)
    lo, hi = max(0, 1 - k), min(n, n - 2 - k)
    if hi > lo:
        acc = None
        for m, wt in zip((-1, 0, 1, 2), weights):
            term = np.float32(wt) * src[lo + k + m : hi + k + m]
            acc = term if acc is None else acc + term
        dst[lo:hi] = acc
    return out


def gather_float32(*args: Any) -> Any:
    """The windowed reader's strip-to-window conversion: always compiled (see
    :func:`changedet._compiled.gather_float32`).

    Parameters
    ----------
    *args
        As for :func:`changedet._compiled.gather_float32`.

    Returns
    -------
    tuple of (bands, rows, cols) ndarray of float32 and (rows, cols) ndarray of bool
    """
    from . import _compiled

    return _compiled.gather_float32(*args)


def pixels_last(planar: np.ndarray) -> np.ndarray:
    """(layers, rows, cols) -> C-ordered (rows, cols, layers) float32: the feature images of a
    classifier as the (pixels, features) matrix scikit-learn takes, the same values either way.

    Parameters
    ----------
    planar : (layers, rows, cols) ndarray of float32
        The layers.

    Returns
    -------
    (rows, cols, layers) ndarray of float32
    """
    n, rows, cols = planar.shape
    if not _USE_COMPILED and planar.size <= SMALL_LAYERS_VALUES:
        return np.ascontiguousarray(np.moveaxis(planar, 0, -1), dtype=np.float32)
    from . import _compiled

    flat = np.ascontiguousarray(planar, dtype=np.float32).reshape(n, rows * cols)
    return _compiled.pixels_last(flat).reshape(rows, cols, n)


# all_finite and the 2 x 2 pooling of the score overviews are numpy, not compiled: they
# are a few milliseconds of a run either way, and compiling them cost a first run 1.3 s

def all_finite(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """(rows, cols) bool: every band of both (bands, rows, cols) arrays is finite."""
    out = np.ones(before.shape[1:], bool)
    band_ok = np.empty(before.shape[1:], bool)
    for band in (*before, *after):  # one band at a time: no (bands, rows, cols) temporary
        np.isfinite(band, out=band_ok)
        out &= band_ok
    return out


def _pairs(x: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Elements 0, 2, 4, ... and 1, 3, 5, ... of ``x`` along ``axis`` (the second may be one shorter)."""
    even = [slice(None)] * x.ndim
    odd = [slice(None)] * x.ndim
    even[axis], odd[axis] = slice(0, None, 2), slice(1, None, 2)
    return x[tuple(even)], x[tuple(odd)]


def _add_blocks(out: np.ndarray, x: np.ndarray) -> None:
    """out[r // 2, c // 2] += x[r, c] in row-major order of (r, c) within each 2 x 2 block."""
    top, bottom = _pairs(x, 0)
    for half in (top, bottom):
        left, right = _pairs(half, 1)
        out[: left.shape[0], : left.shape[1]] += left
        out[: right.shape[0], : right.shape[1]] += right


def pool2_finite(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sums and counts of the finite values of ``x`` (rows, cols) over 2 x 2 blocks.

    The last row or column of an odd-sized array forms blocks of its own.  float64;
    each block adds its values to 0 row by row, the two of a row first summed as a pair.
    """
    rows, cols = x.shape
    finite = np.isfinite(x)
    values = np.where(finite, x, 0).astype(np.float64)
    out = []
    for v in (values, finite.astype(np.float64)):
        pooled = np.zeros(((rows + 1) // 2, (cols + 1) // 2))
        left, right = _pairs(v, 1)
        pair = left[:, : right.shape[1]] + right  # a + b of each full pair of columns
        top, bottom = _pairs(pair, 0)
        pooled[: top.shape[0], : pair.shape[1]] += top
        pooled[: bottom.shape[0], : pair.shape[1]] += bottom
        if cols % 2:  # the odd last column alone
            top, bottom = _pairs(v[:, -1], 0)
            pooled[: top.shape[0], -1] += top
            pooled[: bottom.shape[0], -1] += bottom
        out.append(pooled)
    return out[0], out[1]


def pool2_sums(sums: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sums and counts over 2 x 2 blocks of block sums and counts (odd edges alone), and
    their mean (NaN where the count is 0) as float32."""
    rows, cols = sums.shape
    s2 = np.zeros(((rows + 1) // 2, (cols + 1) // 2))
    c2 = np.zeros_like(s2)
    _add_blocks(s2, sums)
    _add_blocks(c2, counts)
    return s2, c2, mean_of(s2, c2)


def mean_of(sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """sums / counts as float32, NaN where the count is 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = (sums / counts).astype(np.float32)
    mean[~(counts > 0)] = np.nan
    return mean


