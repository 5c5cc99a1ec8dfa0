"""Compiled per-pixel kernels of the default method (numba, no GIL): what :mod:`changedet._kernels`
calls for large scenes and the windowed path (small in-memory pairs run its numpy twins).

The urban-spectral score of :func:`changedet.change.auto` is a chain of per-pixel
arithmetic and small neighbourhood means, maxima and minima.  Written as numpy and
``scipy.ndimage`` calls it made about forty passes over memory per window and held
the GIL in the filters, so threads could not share the work.  These kernels do the
same arithmetic in a few passes, release the GIL (``nogil``) so windows run on all
cores, and are compiled once and cached on disk (``cache=True``).  The first run after
an install compiles them: :func:`compile_in_background` does it on a thread, for the
argument types in :data:`SIGNATURES`, while the run reads and co-registers the images.

Every neighbourhood sum is taken in a fixed order around each pixel (no running
sums), so a pixel's value does not depend on where its window starts: the windowed
path reproduces the whole-scene result bit for bit.  Image edges follow the
``nearest`` mode of ``scipy.ndimage`` (edge pixels repeated).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

import numpy as np
from numba import njit, types

__all__ = ["normalized_magnitude", "normalized_differences", "box_mean_valid", "mixed_pixel_weight", "urban_score",
           "label8", "trace_rings", "shift_cubic", "gather_float32", "pixels_last", "SIGNATURES", "SPECTRAL",
           "compile_in_background"]


def _cache_location() -> bool:
    """Whether numba has a writable folder for this module's compiled kernels.

    numba caches beside the source (``__pycache__``), else in the user's cache folder
    (``~/.cache/numba``), else in ``$NUMBA_CACHE_DIR``; a read-only install whose user
    has no writable home has none, and ``cache=True`` would then fail at import.  In
    that case: a folder in the system's temporary directory, else no cache.
    """
    import os
    import tempfile

    from numba import config
    from numba.core.caching import FunctionCache

    try:
        FunctionCache(_cache_location)
        return True
    except RuntimeError:  # no locator found a writable folder
        pass
    if not config.CACHE_DIR:
        user = os.getuid() if hasattr(os, "getuid") else "user"
        config.CACHE_DIR = os.path.join(tempfile.gettempdir(), f"changedet-numba-{user}")
        try:
            FunctionCache(_cache_location)
            return True
        except (RuntimeError, OSError):
            config.CACHE_DIR = ""
    return False


_OPTS = dict(cache=_cache_location(), nogil=True, fastmath=False, boundscheck=False)


@njit(**_OPTS)
def _clamp(i: int, n: int) -> int:
    if i < 0:
        return 0
    if i >= n:
        return n - 1
    return i


@njit(**_OPTS)
def normalized_magnitude(before, after, use, gains, offsets, meds, spreads, out):  # pragma: no cover - compiled
    """Change-vector magnitude of the bands ``use`` after radiometric normalization.

    ``after`` is mapped onto the before radiometry, ``(a - offset) / gain``, then both
    dates are divided by the before bands' robust spread: ``sqrt(sum(((a - offset) /
    gain - b) / spread) ** 2))``, float32 into ``out`` (rows, cols), NaN where a band is NaN.
    """
    nb = use.shape[0]
    rows, cols = before.shape[1], before.shape[2]
    acc = np.empty(cols, np.float32)
    for r in range(rows):
        acc[:] = 0.0
        for k in range(nb):
            i = use[k]
            # ((a - off) / gain - b) / spread  as  a * p - b * q - o
            p = np.float32(1.0 / (gains[k] * spreads[k]))
            q = np.float32(1.0 / spreads[k])
            o = np.float32(offsets[k] / (gains[k] * spreads[k]))
            for c in range(cols):
                d = after[i, r, c] * p - before[i, r, c] * q - o
                acc[c] += d * d
        for c in range(cols):
            out[r, c] = np.sqrt(acc[c])


@njit(**_OPTS)
def normalized_differences(image, pairs, out, start, step):  # pragma: no cover - compiled
    """``(x - y) / (x + y)`` for each band pair ``(x, y)`` of ``pairs`` into ``out[start + k * step]``.

    float32; NaN where ``|x + y| <= 1e-12`` or a band is NaN, like
    :func:`changedet.indices.normalized_difference`.
    """
    n = pairs.shape[0]
    rows, cols = image.shape[1], image.shape[2]
    for k in range(n):
        ix, iy = pairs[k, 0], pairs[k, 1]
        j = start + k * step
        for r in range(rows):
            for c in range(cols):
                x = np.float64(image[ix, r, c])
                y = np.float64(image[iy, r, c])
                t = x + y
                if abs(t) > 1e-12:
                    out[j, r, c] = np.float32((x - y) / t)
                else:
                    out[j, r, c] = np.nan


@njit(**_OPTS)
def _hsum_row(src, dst, half):
    """dst[c] = sum of src[c - half .. c + half] (edges repeated), left to right."""
    cols = src.shape[0]
    if half == 1 and cols >= 2:  # the common 3 x 3 case, unrolled (same order, so same result)
        dst[0] = (src[0] + src[0]) + src[1]
        for c in range(1, cols - 1):
            dst[c] = (src[c - 1] + src[c]) + src[c + 1]
        dst[cols - 1] = (src[cols - 2] + src[cols - 1]) + src[cols - 1]
        return
    for c in range(cols):
        acc = src[_clamp(c - half, cols)]
        for d in range(-half + 1, half + 1):
            acc += src[_clamp(c + d, cols)]
        dst[c] = acc


@njit(**_OPTS)
def _vsum_row(h, r, rows, out_row, half):
    """out_row[c] = sum of the row sums of image rows r - half .. r + half (edges repeated),
    top to bottom.  Image row i is ``h[i % len(h)]``: ``h`` holds every row (``len(h) ==
    rows``) or is a ring of the last ``2 * half + 1`` rows made."""
    size = h.shape[0]
    cols = out_row.shape[0]
    if half == 1:
        a, b, d = h[_clamp(r - 1, rows) % size], h[r % size], h[_clamp(r + 1, rows) % size]
        for c in range(cols):
            out_row[c] = (a[c] + b[c]) + d[c]
        return
    first = h[_clamp(r - half, rows) % size]
    for c in range(cols):
        out_row[c] = first[c]
    for d in range(-half + 1, half + 1):
        s = h[_clamp(r + d, rows) % size]
        for c in range(cols):
            out_row[c] += s[c]


@njit(**_OPTS)
def _all_true(ok):
    for r in range(ok.shape[0]):
        for c in range(ok.shape[1]):
            if not ok[r, c]:
                return False
    return True


@njit(**_OPTS)
def box_mean_valid(stack, ok, size):  # pragma: no cover - compiled
    """Mean over a ``size`` x ``size`` window of the valid pixels only, per layer.

    ``stack`` is (layers, rows, cols); NaN where the pixel itself is not valid or no
    pixel of its window is.  A NaN value at a valid pixel spreads to its neighbours,
    as a plain mean would.  Sums run in one fixed order (row sums, then the rows top
    to bottom), and a window of valid pixels is divided by the same count whether or
    not the image has invalid pixels elsewhere, so the result at a pixel depends on
    its window alone.
    """
    n, rows, cols = stack.shape
    half = size // 2
    all_ok = _all_true(ok)
    tmp = np.empty(cols, np.float32)
    full = np.float32(size * size)
    count = np.empty((1, 1), np.float32)
    if not all_ok:  # valid pixels in each window
        h = np.empty((rows, cols), np.float32)
        count = np.empty((rows, cols), np.float32)
        for r in range(rows):
            okr = ok[r]
            for c in range(cols):
                tmp[c] = np.float32(1.0) if okr[c] else np.float32(0.0)
            _hsum_row(tmp, h[r], half)
        for r in range(rows):
            _vsum_row(h, r, rows, count[r], half)
    out = np.empty((n, rows, cols), np.float32)
    nan = np.float32(np.nan)
    # row sums in a ring of ``size`` rows, each made just before the first output row
    # that needs it: every row is read once and its sums are still in cache when summed
    ring = np.empty((size, cols), np.float32)
    for k in range(n):
        made = -1  # last row whose sums are in the ring
        for r in range(rows):
            want = min(r + half, rows - 1)
            while made < want:
                made += 1
                if all_ok:
                    _hsum_row(stack[k, made], ring[made % size], half)
                else:
                    src, okr = stack[k, made], ok[made]
                    for c in range(cols):
                        tmp[c] = src[c] if okr[c] else np.float32(0.0)
                    _hsum_row(tmp, ring[made % size], half)
            dst = out[k, r]
            _vsum_row(ring, r, rows, dst, half)
            if all_ok:
                for c in range(cols):
                    dst[c] = dst[c] / full
            else:
                okr, cnt = ok[r], count[r]
                for c in range(cols):
                    dst[c] = dst[c] / cnt[c] if (okr[c] and cnt[c] > 0) else nan
    return out


@njit(**_OPTS)
def _hext_row(src, dst, half, take_max):
    """dst[c] = max (or min) of src[c - half .. c + half] (edges repeated)."""
    cols = src.shape[0]
    lo, hi = min(half, cols), max(cols - half, half)
    for c in list(range(0, lo)) + list(range(hi, cols)):
        m = src[_clamp(c - half, cols)]
        for d in range(-half + 1, half + 1):
            v = src[_clamp(c + d, cols)]
            m = max(m, v) if take_max else min(m, v)
        dst[c] = m
    if half == 1 and take_max:
        for c in range(lo, hi):
            dst[c] = max(max(src[c - 1], src[c]), src[c + 1])
    elif half == 1:
        for c in range(lo, hi):
            dst[c] = min(min(src[c - 1], src[c]), src[c + 1])
    elif half == 2 and take_max:
        for c in range(lo, hi):
            dst[c] = max(max(max(max(src[c - 2], src[c - 1]), src[c]), src[c + 1]), src[c + 2])
    else:
        for c in range(lo, hi):
            m = src[c - half]
            for d in range(-half + 1, half + 1):
                m = max(m, src[c + d]) if take_max else min(m, src[c + d])
            dst[c] = m


@njit(**_OPTS)
def _vext_row(h, r, out_row, half, take_max):
    """out_row[c] = max (or min) of h[r - half .. r + half, c] (edges repeated)."""
    rows, cols = h.shape
    first = h[_clamp(r - half, rows)]
    for c in range(cols):
        out_row[c] = first[c]
    for d in range(-half + 1, half + 1):
        s = h[_clamp(r + d, rows)]
        if take_max:
            for c in range(cols):
                out_row[c] = max(out_row[c], s[c])
        else:
            for c in range(cols):
                out_row[c] = min(out_row[c], s[c])


@njit(**_OPTS)
def mixed_pixel_weight(raw, ok, base, size):  # pragma: no cover - compiled
    """The half-contrast rim weight of :func:`changedet.change._mixed_pixel_weight`.

    ``above = max(raw - base, 0)`` (0 where not valid); ``peak`` = maximum over
    ``size`` x ``size`` of the 3 x 3 mean of ``above``; a pixel whose 3 x 3 minimum is
    under a tenth of the peak gets ``clip((above / peak - 0.25) / 0.2, 0, 1)``, others 1.
    """
    rows, cols = raw.shape
    fb = np.float32(base)
    zero = np.float32(0.0)
    outside = -fb if fb < 0 else zero
    # the helpers' sizes and modes as run-time values: a literal argument would compile
    # another specialization of each helper (0.7 s more on a first run)
    one_px = np.int64(1)
    yes = np.bool_(True)
    no = np.bool_(False)
    above = np.empty((rows, cols), np.float32)
    for r in range(rows):
        src, okr, dst = raw[r], ok[r], above[r]
        for c in range(cols):
            v = src[c]
            x = v - fb
            dst[c] = (x if x > 0 else zero) if (okr[c] and np.isfinite(v)) else outside
    h = np.empty((rows, cols), np.float32)
    for r in range(rows):
        _hsum_row(above[r], h[r], one_px)
    mean3 = np.empty((rows, cols), np.float32)
    nine = np.float32(9.0)
    for r in range(rows):
        dst = mean3[r]
        _vsum_row(h, r, rows, dst, one_px)
        for c in range(cols):
            dst[c] = dst[c] / nine
    half = size // 2
    for r in range(rows):
        _hext_row(mean3[r], h[r], half, yes)
    hmin = np.empty((rows, cols), np.float32)
    for r in range(rows):
        _hext_row(above[r], hmin[r], one_px, no)
    out = np.empty((rows, cols), np.float32)
    peak = np.empty(cols, np.float32)
    low = np.empty(cols, np.float32)
    tenth, quarter, fifth, one = np.float32(0.1), np.float32(0.25), np.float32(0.2), np.float32(1.0)
    for r in range(rows):
        _vext_row(h, r, peak, half, yes)
        _vext_row(hmin, r, low, one_px, no)
        ab, dst = above[r], out[r]
        for c in range(cols):
            p = peak[c]
            share = ab[c] / p if (p > 0 and low[c] < tenth * p) else one
            w = (share - quarter) / fifth
            dst[c] = min(max(w, zero), one)
    return out


#: The logistic function tabulated on [-20, 20] in steps of 1/64 (linear interpolation
#: between entries is within 4e-6 of it; beyond the table it is within 2e-9 of 0 or 1).
from ._sigmoid_table import SIG_STEP as _SIG_STEP, SIG_TABLE as _SIG_TABLE  # noqa: E402


@njit(**_OPTS)
def _sigmoid(x):
    """The logistic function 1 / (1 + exp(-x)), float32, from :data:`_SIG_TABLE`."""
    if x <= -20.0:
        return np.float32(0.0)
    if x >= 20.0:
        return np.float32(1.0)
    t = (x + 20.0) * _SIG_STEP
    i = int(t)
    f = np.float32(t - i)
    return _SIG_TABLE[i] + f * (_SIG_TABLE[i + 1] - _SIG_TABLE[i])


@njit(**_OPTS)
def _urban_row(rawr, sm, r, wmr, okr, zmed, zmad, water_floor, has_water, dst, mag_row, ww_row, wv_row):
    nan = np.float32(np.nan)
    one = np.float32(1.0)
    fmed, fmad = np.float32(zmed), np.float32(zmad)
    cols = rawr.shape[0]
    s0, s1, s2 = sm[0, r], sm[1, r], sm[2, r]
    s3, s4 = (sm[3, r], sm[4, r]) if has_water else (s0, s0)
    for c in range(cols):
        m0 = s0[c]
        mag = min(rawr[c], m0) if not (np.isnan(rawr[c]) or np.isnan(m0)) else nan
        mag_row[c] = mag if okr[c] else nan
    for c in range(cols):
        if not okr[c]:
            dst[c] = nan
            ww_row[c] = nan
            wv_row[c] = nan
            continue
        z = (mag_row[c] - fmed) / fmad
        wb = -1.0
        wa = -1.0
        if has_water:
            if not np.isnan(s3[c]):
                wb = np.float64(s3[c])
            if not np.isnan(s4[c]):
                wa = np.float64(s4[c])
        sb = _sigmoid(np.float32((wb - water_floor) / 0.05))
        w_water = one
        if sb > 0:
            w_water = one - sb * _sigmoid(np.float32((wa - water_floor) / 0.05))
        nb = s1[c]
        na = s2[c]
        nv = 0.0
        if not (np.isnan(nb) or np.isnan(na)):
            nv = np.float64(min(nb, na))
        w_veg = _sigmoid(np.float32((0.5 - nv) / 0.05))
        s = np.float32(np.float64(z) * w_water * w_veg * np.float64(wmr[c]))
        dst[c] = s if np.isfinite(s) else nan
        ww_row[c] = w_water
        wv_row[c] = w_veg


@njit(**_OPTS)
def urban_score(raw, smoothed, w_mixed, ok, zmed, zmad, water_floor, has_water, layers):  # pragma: no cover
    """The urban-spectral score from its parts (float32, NaN where not valid).

    ``smoothed`` holds the 30 m means of the change magnitude ``raw``, NDVI before,
    NDVI after and (with ``has_water``) the water index before and after.  The
    magnitude is ``min(raw, its mean)`` and ``z = (magnitude - zmed) / zmad``; the
    water weight is ``1 - s((wb - floor) / 0.05) * s((wa - floor) / 0.05)``, the
    vegetation weight ``s((0.5 - min(nvb, nva)) / 0.05)`` with ``s`` the logistic
    function (a NaN index counts as no water, no vegetation).  With ``layers`` the
    magnitude and both weights come back too (else 1 x 1 placeholders).
    """
    rows, cols = raw.shape
    nan = np.float32(np.nan)
    score = np.empty((rows, cols), np.float32)
    lr, lc = (rows, cols) if layers else (1, 1)
    mag_out = np.full((lr, lc), nan)
    w_water_out = np.full((lr, lc), nan)
    w_veg_out = np.full((lr, lc), nan)
    mag_row = np.empty(cols, np.float32)
    ww_row = np.empty(cols, np.float32)
    wv_row = np.empty(cols, np.float32)
    for r in range(rows):
        _urban_row(raw[r], smoothed, r, w_mixed[r], ok[r], zmed, zmad, water_floor, has_water,
                   score[r], mag_row, ww_row, wv_row)
        if layers:
            for c in range(cols):  # not `mag_out[r] = mag_row`: array-to-slice assignment compiles slowly
                mag_out[r, c] = mag_row[c]
                w_water_out[r, c] = ww_row[c]
                w_veg_out[r, c] = wv_row[c]
    return score, mag_out, w_water_out, w_veg_out


@njit(inline="always", **_OPTS)
def _rows_to_float32(src, ra, rb, c0, c1, out, fin, r_out, nodata, has_nodata, zero_is_nodata):
    # inlined where ``out`` is allocated, so the compiler knows it aliases no input and
    # vectorizes the loop (called as a function it ran 2x slower than a copy and convert)
    nan = np.float32(np.nan)
    for i in range(src.shape[0]):
        nd = nodata[i] if has_nodata[i] else np.nan
        z = 0.0 if zero_is_nodata[i] else np.nan
        for r in range(ra, rb):
            s_row, dst, f_row = src[i, r, c0:c1], out[i, r_out + r - ra], fin[r_out + r - ra]
            for c in range(c1 - c0):
                v = s_row[c]
                x = nan if (v == nd) | (v == z) else np.float32(v)
                dst[c] = x
                f_row[c] &= np.isfinite(x)


@njit(**_OPTS)
def gather_float32(p0, p1, p2, rows, c0, c1, nodata, has_nodata, zero_is_nodata):  # pragma: no cover - compiled
    """float32 of rows ``rows[k, 0]:rows[k, 1]``, columns ``c0:c1`` of the (bands, rows,
    cols) arrays ``p0``, ``p1``, ``p2`` stacked along the rows, in one pass: a window cut
    from full-width strips, with no intermediate copy (the strips are C-ordered; slices
    of them would not be, and compiled loops over strided views run about 3x slower).
    Band ``i`` is NaN where it equals ``nodata[i]`` (when ``has_nodata[i]``) or 0 (when
    ``zero_is_nodata[i]``).  Returns it and a (rows, cols) bool: every band finite."""
    n = (rows[0, 1] - rows[0, 0]) + (rows[1, 1] - rows[1, 0]) + (rows[2, 1] - rows[2, 0])
    out = np.empty((p0.shape[0], n, c1 - c0), np.float32)
    fin = np.ones((n, c1 - c0), np.bool_)
    r = 0
    _rows_to_float32(p0, rows[0, 0], rows[0, 1], c0, c1, out, fin, r, nodata, has_nodata, zero_is_nodata)
    r += rows[0, 1] - rows[0, 0]
    _rows_to_float32(p1, rows[1, 0], rows[1, 1], c0, c1, out, fin, r, nodata, has_nodata, zero_is_nodata)
    r += rows[1, 1] - rows[1, 0]
    _rows_to_float32(p2, rows[2, 0], rows[2, 1], c0, c1, out, fin, r, nodata, has_nodata, zero_is_nodata)
    return out, fin


@njit(**_OPTS)
def pixels_last(planar):  # pragma: no cover - compiled
    """The (pixels, layers) C-ordered copy of a (layers, pixels) float32 array, in tiles of
    128 pixels by 8 layers: a classifier's feature matrix from its feature images.  numpy's
    transposing copy reads each layer at a stride of the whole image (about 0.75 GB/s, 1.1 s
    for 180 layers of a megapixel); the tiles keep both sides in cache (about 0.2 s)."""
    n, m = planar.shape
    out = np.empty((m, n), np.float32)
    for p0 in range(0, m, 128):
        p1 = min(p0 + 128, m)
        for f0 in range(0, n, 8):
            f1 = min(f0 + 8, n)
            for p in range(p0, p1):
                for f in range(f0, f1):
                    out[p, f] = planar[f, p]
    return out


@njit(**_OPTS)
def _find(parent, x):
    root = x
    while parent[root] != root:
        root = parent[root]
    while parent[x] != root:  # path compression
        nxt = parent[x]
        parent[x] = root
        x = nxt
    return root


@njit(**_OPTS)
def label8(mask, score):  # pragma: no cover - compiled
    """8-connected components of a (rows, cols) bool mask and their statistics, in one pass.

    Labels are numbered 1..n in the order their first pixel appears in a row-major
    scan (as ``scipy.ndimage.label`` numbers them).  Returns ``labels`` (int32),
    ``n``, per label (index ``label - 1``): ``boxes`` (row0, row1, col0, col1, end
    exclusive), pixel ``counts``, the sum, count and maximum of the finite ``score``
    values, and ``edges`` (touches the top, bottom, left, right border).
    """
    rows, cols = mask.shape
    labels = np.zeros((rows, cols), np.int32)
    parent = np.zeros(rows * cols // 2 + cols + 2, np.int32)
    nxt = 1
    for r in range(rows):
        for c in range(cols):
            if not mask[r, c]:
                continue
            best = 0
            # neighbours already visited: left, and the three above
            for dr, dc in ((0, -1), (-1, -1), (-1, 0), (-1, 1)):
                rr, cc = r + dr, c + dc
                if rr < 0 or cc < 0 or cc >= cols:
                    continue
                lab = labels[rr, cc]
                if lab == 0:
                    continue
                root = _find(parent, lab)
                if best == 0:
                    best = root
                elif root != best:
                    lo, hi = min(root, best), max(root, best)
                    parent[hi] = lo
                    best = lo
            if best == 0:
                parent[nxt] = nxt
                best = nxt
                nxt += 1
            labels[r, c] = best
    # final numbers in order of first appearance
    final = np.zeros(nxt, np.int32)
    n = 0
    for r in range(rows):
        for c in range(cols):
            lab = labels[r, c]
            if lab == 0:
                continue
            root = _find(parent, lab)
            if final[root] == 0:
                n += 1
                final[root] = n
            labels[r, c] = final[root]
    boxes = np.empty((n, 4), np.int64)
    boxes[:, 0] = rows
    boxes[:, 1] = 0
    boxes[:, 2] = cols
    boxes[:, 3] = 0
    counts = np.zeros(n, np.int64)
    s_sum = np.zeros(n, np.float64)
    s_n = np.zeros(n, np.int64)
    s_max = np.full(n, -np.inf)
    edges = np.zeros((n, 4), np.bool_)
    for r in range(rows):
        for c in range(cols):
            lab = labels[r, c]
            if lab == 0:
                continue
            k = lab - 1
            boxes[k, 0] = min(boxes[k, 0], r)
            boxes[k, 1] = max(boxes[k, 1], r + 1)
            boxes[k, 2] = min(boxes[k, 2], c)
            boxes[k, 3] = max(boxes[k, 3], c + 1)
            counts[k] += 1
            v = score[r, c]
            if np.isfinite(v):
                s_sum[k] += v
                s_n[k] += 1
                if v > s_max[k]:
                    s_max[k] = v
            if r == 0:
                edges[k, 0] = True
            if r == rows - 1:
                edges[k, 1] = True
            if c == 0:
                edges[k, 2] = True
            if c == cols - 1:
                edges[k, 3] = True
    return labels, n, boxes, counts, s_sum, s_n, s_max, edges


# ---- ring tracing: the outlines of labelled areas, as GDAL's polygonize draws them

# directions in pixel coordinates (x = column, y = row, y down): east, south, west, north;
# a right turn (on screen) is d + 1
_DX = (1, 0, -1, 0)
_DY = (0, 1, 0, -1)


@njit(**_OPTS)
def _inside(labels, lab, r0, c0, h, w, y, x):
    """Whether pixel (y, x) of the box at (r0, c0) of size h x w holds label lab."""
    if y < 0 or x < 0 or y >= h or x >= w:
        return False
    return labels[r0 + y, c0 + x] == lab


@njit(**_OPTS)
def _out_dirs(labels, lab, r0, c0, h, w, x, y):
    """Bit set of the boundary edges leaving vertex (x, y), the area on their left."""
    tl = _inside(labels, lab, r0, c0, h, w, y - 1, x - 1)
    tr = _inside(labels, lab, r0, c0, h, w, y - 1, x)
    bl = _inside(labels, lab, r0, c0, h, w, y, x - 1)
    br = _inside(labels, lab, r0, c0, h, w, y, x)
    bits = 0
    if tr and not br:  # east: area above
        bits |= 1
    if br and not bl:  # south: area to the east
        bits |= 2
    if bl and not tl:  # west: area below
        bits |= 4
    if tl and not tr:  # north: area to the west
        bits |= 8
    return bits


@njit(**_OPTS)
def _room(xy, need):
    """``xy`` itself, or a copy twice as long, so that it holds ``need`` vertices."""
    if need <= xy.shape[0]:
        return xy
    grown = np.empty((max(need, 2 * xy.shape[0]), 2), np.int64)
    for i in range(xy.shape[0]):  # element by element: a slice assignment costs ~3 s of compile time
        grown[i, 0] = xy[i, 0]
        grown[i, 1] = xy[i, 1]
    return grown


@njit(**_OPTS)
def trace_rings(labels, n, boxes):  # pragma: no cover - compiled
    """Outline rings of labels 1..n of an 8-connected labelling, along pixel edges.

    The rings are those of ``rasterio.features.shapes(..., connectivity=8)`` (GDAL's
    polygonize), vertex for vertex: pixel-corner coordinates (x = column, y = row),
    corners only, each ring starting at its first vertex in row-major order and
    closed, the area on the left (on screen), and where two pixels of the area meet
    only at a corner the ring passes through that corner, joining them.  Per label
    the exterior ring comes first, then the holes in row-major order of their first
    vertex.  ``boxes`` are label8's (row0, row1, col0, col1).

    Returns ``xy`` (vertices, 2) int64, ``ring_start`` (rings + 1) offsets into
    ``xy``, and per label ``label_start`` (n + 1) offsets into the rings.
    """
    xy = np.empty((1024, 2), np.int64)
    nv = 0
    ring_start = [0]
    label_start = np.zeros(n + 1, np.int64)
    nr = 0
    for k in range(n):
        lab = k + 1
        r0, r1, c0, c1 = boxes[k, 0], boxes[k, 1], boxes[k, 2], boxes[k, 3]
        h, w = r1 - r0, c1 - c0
        used = np.zeros((h + 1, w + 1), np.uint8)
        for y in range(h + 1):
            for x in range(w + 1):
                free = _out_dirs(labels, lab, r0, c0, h, w, x, y) & ~used[y, x]
                while free:
                    d = 0
                    while not (free >> d) & 1:
                        d += 1
                    # one ring from (x, y), leaving along d, back to (x, y)
                    xy = _room(xy, nv + 2)
                    xy[nv, 0] = c0 + x
                    xy[nv, 1] = r0 + y
                    nv += 1
                    cx, cy = x, y
                    while True:
                        used[cy, cx] |= 1 << d
                        cx += _DX[d]
                        cy += _DY[d]
                        xy = _room(xy, nv + 2)
                        if cx == x and cy == y:
                            break
                        outs = _out_dirs(labels, lab, r0, c0, h, w, cx, cy)
                        if outs & (outs - 1):  # two ways on: pixels meeting at this corner, joined
                            nd = (d + 1) & 3
                        else:
                            nd = 0
                            while not (outs >> nd) & 1:
                                nd += 1
                        if nd != d:  # a corner
                            xy[nv, 0] = c0 + cx
                            xy[nv, 1] = r0 + cy
                            nv += 1
                        d = nd
                    xy[nv, 0] = c0 + x
                    xy[nv, 1] = r0 + y
                    nv += 1
                    free = _out_dirs(labels, lab, r0, c0, h, w, x, y) & ~used[y, x]
                    nr += 1
                    ring_start.append(nv)
        label_start[k + 1] = nr
    return xy[:nv], np.array(ring_start, np.int64), label_start


@njit(**_OPTS)
def shift_cubic(x, k, weights, axis):  # pragma: no cover - compiled
    """``out[..., i] = sum_m weights[m] * x[..., i + k + m - 1]`` (m = 0..3) along ``axis`` (1: rows,
    2: columns) of a (bands, rows, cols) float32 array, in one pass; NaN where a tap falls
    outside ``x`` (a NaN tap gives NaN).  The cubic convolution of
    :func:`changedet.align.apply_shift`: the products and sums in float32, in the order
    of its numpy twin, so equal to it bit for bit."""
    nb, rows, cols = x.shape
    out = np.empty_like(x)
    nan = np.float32(np.nan)
    w0, w1, w2, w3 = np.float32(weights[0]), np.float32(weights[1]), np.float32(weights[2]), np.float32(weights[3])
    n = rows if axis == 1 else cols
    lo, hi = max(0, 1 - k), min(n, n - 2 - k)
    for b in range(nb):
        for r in range(rows):
            dst = out[b, r]
            if axis == 1:
                if r < lo or r >= hi:
                    dst[:] = nan
                    continue
                s0, s1, s2, s3 = x[b, r + k - 1], x[b, r + k], x[b, r + k + 1], x[b, r + k + 2]
                for c in range(cols):
                    v = w0 * s0[c]
                    v = v + w1 * s1[c]
                    v = v + w2 * s2[c]
                    dst[c] = v + w3 * s3[c]
            else:
                src = x[b, r]
                for c in range(cols):
                    if c < lo or c >= hi:
                        dst[c] = nan
                    else:
                        v = w0 * src[c + k - 1]
                        v = v + w1 * src[c + k]
                        v = v + w2 * src[c + k + 1]
                        dst[c] = v + w3 * src[c + k + 2]
    return out


# ---- compiling ahead of the first call

def _c(dtype: types.Type, ndim: int) -> types.Array:
    return types.Array(dtype, ndim, "C")


_F32_2, _F32_3, _F64_1 = _c(types.float32, 2), _c(types.float32, 3), _c(types.float64, 1)
_BOOL_2, _I64_1, _I64_2, _I32_2 = _c(types.boolean, 2), _c(types.int64, 1), _c(types.int64, 2), _c(types.int32, 2)
_I64, _F64, _BOOL = types.int64, types.float64, types.boolean

#: The argument types the pipeline calls each kernel with (C-ordered arrays, Python ints
#: and floats as int64 and float64), in the order a run first needs them.
#: ``tests/test_kernels.py`` checks that a run compiles no other specialization.
SIGNATURES: dict[str, tuple[types.Type, ...]] = {
    "shift_cubic": (_F32_3, _I64, _F64_1, _I64),  # the co-registration, before any score
    "normalized_magnitude": (_F32_3, _F32_3, _I64_1, _F64_1, _F64_1, _F64_1, _F64_1, _F32_2),
    "box_mean_valid": (_F32_3, _BOOL_2, _I64),
    "normalized_differences": (_F32_3, _I64_2, _F32_3, _I64, _I64),
    "mixed_pixel_weight": (_F32_2, _BOOL_2, _F64, _I64),
    "urban_score": (_F32_2, _F32_3, _F32_2, _BOOL_2, _F64, _F64, _F64, _BOOL, _BOOL),
    "label8": (_BOOL_2, _F32_2),
    "trace_rings": (_I32_2, _I64, _I64_2),
}
#: The kernels of the urban-spectral score, which only pairs with a near-infrared band need.
SPECTRAL = ("normalized_magnitude", "normalized_differences", "urban_score")


def _compile_all(names: tuple[str, ...]) -> None:
    for name in names:
        try:
            globals()[name].compile(SIGNATURES[name])
        except Exception:  # noqa: BLE001 - the first real call compiles again and raises where it can be seen
            pass


def compile_in_background(names: Iterable[str] | None = None) -> threading.Thread:
    """Compile the kernels for :data:`SIGNATURES` on a daemon thread, in that order.

    A first run after an install spends most of its extra time compiling; on a thread
    that work overlaps the reading, co-registration and normalization that come
    before the kernels are needed.  A kernel called while the thread compiles waits
    for numba's compiler lock and is then found compiled; where the on-disk cache is
    warm the thread only loads it (milliseconds).

    Parameters
    ----------
    names : iterable of str, optional
        Keys of :data:`SIGNATURES` in the order to compile them; default all of them,
        in the order a run needs them.

    Returns
    -------
    threading.Thread
        The started thread; ``join()`` it before the process exits.

    Raises
    ------
    ValueError
        A name is not a key of :data:`SIGNATURES`.

    Examples
    --------
    >>> compile_in_background(["label8"]).join()
    >>> label8.signatures[0] == SIGNATURES["label8"]
    True
    """
    todo = tuple(SIGNATURES if names is None else names)
    unknown = [n for n in todo if n not in SIGNATURES]
    if unknown:
        raise ValueError(f"names={unknown!r} are not compiled kernels; choose from {list(SIGNATURES)}")
    thread = threading.Thread(target=_compile_all, args=(todo,), name="changedet-compile", daemon=True)
    thread.start()
    return thread
