"""One self-contained HTML page per result (``report.html``) and an index per batch.

The page is for people who will not open a notebook: what changed, in words (counts,
areas by class, where on the site), the overview figure, a sortable table of the
changed areas (and of the counted structures when the run has them), accuracy against
a truth when one was given, the method with every parameter, and the inputs with
their SHA-256.  Everything is inside the one file: figures are embedded as base64 PNG,
the style sheet and the small table-sorting script are inline, and nothing is fetched
from the network when the page is opened (links point only to the files beside it).

:func:`write_report` reads a finished result folder (``summary.json``,
``changes.geojson``, ``overview.png``, optionally ``structures.geojson`` and
``score_histogram.png``); :func:`write_index` writes ``index.html`` for a batch folder,
one row and thumbnail per site with the totals.

A table can be sorted when the page opens by a URL fragment
``#sort=TABLE:COLUMN:asc`` (or ``desc``), e.g. ``report.html#sort=changes:area_m2:desc``;
clicking a column header sorts too.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io as _stdio
import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from . import io as _io
from ._dates import season_caveat
from ._paths import is_remote
from .errors import ChangedetError, InvalidParameterError

__all__ = ["write_report", "write_index", "REPORT_NAME", "INDEX_NAME"]

#: The file :func:`write_report` writes into a result folder.
REPORT_NAME = "report.html"
#: The file :func:`write_index` writes into a batch folder.
INDEX_NAME = "index.html"

#: Embedded figures larger than this (bytes of PNG) are re-encoded smaller, so the
#: demo's page stays well under 5 MB.
FIGURE_BUDGET_BYTES = 2_000_000

_METHOD_WORDS = {
    "auto": "the default: chosen from the bands and the pixel size (spectral index changes and "
            "change-vector magnitude for multispectral images; local structure and colour change at "
            "two scales for high-resolution or RGB images), on radiometrically normalized images",
    "diff": "absolute difference of the bands",
    "log-ratio": "log-ratio of the bands (robust to multiplicative gain)",
    "cva": "change-vector analysis: magnitude of the band-difference vector",
    "pca-kmeans": "PCA of local difference blocks, clustered in two by k-means",
    "imad": "iteratively re-weighted multivariate alteration detection (IR-MAD), chi-square statistic",
    "ssim": "structural dissimilarity (1 - SSIM) of the two dates",
    "learned": "a classifier trained on examples or labelled pairs",
}

_CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#1d2329;
margin:0 auto;max-width:1280px;padding:16px 24px 48px}
h1{font-size:1.6em;margin:.4em 0 .1em}h2{font-size:1.2em;margin:1.6em 0 .4em;border-bottom:1px solid #d5dbe1;
padding-bottom:.2em}
.sub{color:#5a6570;margin:0 0 1em}
.lead{font-size:1.08em;background:#f3f6f9;border-left:4px solid #2f6fb2;padding:.6em 1em;margin:1em 0}
.lead p{margin:.3em 0}
figure{margin:.6em 0}figure img{max-width:100%;height:auto;border:1px solid #d5dbe1}
figcaption{color:#5a6570;font-size:.9em}
table{border-collapse:collapse;margin:.4em 0 1em;font-size:.93em}
th,td{border:1px solid #d5dbe1;padding:3px 8px;text-align:left;vertical-align:top}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
thead th{background:#eef2f6;position:sticky;top:0}
table.sortable thead th{cursor:pointer;user-select:none}
table.sortable thead th[aria-sort=ascending]::after{content:" \\25B2"}
table.sortable thead th[aria-sort=descending]::after{content:" \\25BC"}
tbody tr:nth-child(even){background:#fafbfc}
tr.total td{font-weight:600;background:#eef2f6}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.9em;word-break:break-all}
.note{color:#5a6570;font-size:.9em}
.bad{color:#a61b1b}
details pre{background:#f6f8fa;padding:8px;overflow:auto;max-height:480px;font-size:.82em}
img.thumb{width:240px;height:auto;display:block}
"""

# A small sorter: click a header; or a fragment "#sort=TABLE:COLUMN:asc|desc" sorts when the page opens.
_JS = """
(function(){
function val(td,num){var v=td.getAttribute('data-v');if(v===null){v=td.textContent.trim();}
if(!num){return v.toLowerCase();}var x=parseFloat(v);return isNaN(x)?-Infinity:x;}
function sortTable(t,col,dir){var tb=t.tBodies[0];var ths=t.tHead.rows[0].cells;
var num=ths[col].getAttribute('data-type')==='num';var rows=Array.prototype.slice.call(tb.rows);
rows.forEach(function(r,i){r._i=i;});
rows.sort(function(a,b){var x=val(a.cells[col],num),y=val(b.cells[col],num);
var c=num?(x-y):(x<y?-1:(x>y?1:0));if(c===0){return a._i-b._i;}return dir==='desc'?-c:c;});
rows.forEach(function(r){tb.appendChild(r);});
for(var k=0;k<ths.length;k++){ths[k].removeAttribute('aria-sort');}
ths[col].setAttribute('aria-sort',dir==='desc'?'descending':'ascending');
t.setAttribute('data-sorted',ths[col].getAttribute('data-key')+':'+dir);}
var tables=document.querySelectorAll('table.sortable');
Array.prototype.forEach.call(tables,function(t){var ths=t.tHead.rows[0].cells;
Array.prototype.forEach.call(ths,function(th,i){th.addEventListener('click',function(){
sortTable(t,i,th.getAttribute('aria-sort')==='ascending'?'desc':'asc');});});});
function fromHash(){var m=/sort=([\\w-]+):([\\w-]+):(asc|desc)/.exec(decodeURIComponent(location.hash));
if(!m){return;}var t=document.getElementById(m[1]);if(!t||!t.tHead){return;}var ths=t.tHead.rows[0].cells;
for(var i=0;i<ths.length;i++){if(ths[i].getAttribute('data-key')===m[2]){sortTable(t,i,m[3]);return;}}}
fromHash();window.addEventListener('hashchange',fromHash);
})();
"""


# --------------------------------------------------------------------------- helpers

class _Html(str):
    """Text that is already HTML (made here), placed in a table cell as it is."""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _fmt(value: Any, decimals: int = 2) -> str:
    v = _num(value)
    if v is None:
        return "" if value is None else str(value)
    if decimals == 0:
        return f"{v:,.0f}"
    return f"{v:,.{decimals}f}"


def _ha(area_m2: float | None) -> str:
    """An area as a reader says it: hectares from 1 ha, square metres below."""
    if area_m2 is None:
        return ""
    return f"{area_m2 / 10_000:,.2f} ha" if area_m2 >= 10_000 else f"{area_m2:,.0f} m²"


def _class_words(name: str) -> str:
    return str(name).replace("_", " ")


def _read_json(path: Path, what: str) -> Any:
    try:
        return _io.read_json(path)
    except (OSError, ValueError) as exc:
        raise ChangedetError(f"{what} {str(path)!r} cannot be read as JSON ({exc}); run changedet detect again "
                             "to write it whole") from None


def _features(folder: Path, name: str) -> list[dict[str, Any]] | None:
    path = folder / name
    if not path.is_file():
        return None
    data = _read_json(path, name)
    feats = data.get("features") if isinstance(data, dict) else None
    if not isinstance(feats, list):
        raise ChangedetError(f"{str(path)!r} is not a GeoJSON FeatureCollection; run changedet detect again")
    return feats


def _image_data_uri(path: Path, *, budget_bytes: int, max_width: int | None = None) -> tuple[str, str]:
    """A PNG as a ``data:`` URI, re-encoded smaller when it exceeds the budget (a JPEG, see
    :func:`_reduced_image`); and a note saying how."""
    raw = path.read_bytes()
    if max_width is None and len(raw) <= budget_bytes:
        return "data:image/png;base64," + base64.b64encode(raw).decode("ascii"), ""
    prepared = _PREPARED.pop(_digest(raw), None) if max_width is None else None
    if prepared is not None and prepared[0] == budget_bytes:
        data, note = prepared[1:]
    else:
        from PIL import Image

        with Image.open(_stdio.BytesIO(raw)) as im:
            im.load()
            data, note = _reduced_image(im, budget_bytes=budget_bytes, max_width=max_width, size=len(raw))
    mime = "image/jpeg" if data[:3] == b"\xff\xd8\xff" else "image/png"
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii"), note


#: Quality of the JPEG a page embeds for a figure over its budget.
JPEG_QUALITY = 90


def _reduced_image(im: Any, *, budget_bytes: int, max_width: int | None = None,
                size: int | None = None) -> tuple[bytes, str]:
    """The image the page embeds for a figure over the budget, and a note saying how it was reduced.

    A PNG when one without loss fits the budget (reduced in width when ``max_width`` asks),
    otherwise a JPEG (quality :data:`JPEG_QUALITY`, colour at full resolution), made
    narrower by quarters until it fits.  The figures are mostly imagery: a JPEG keeps their
    colours (a palette of 256 made bands of them) and took 12 ms on a 3-megapixel overview
    against 50 ms for the palette PNG.

    Parameters
    ----------
    im : PIL.Image.Image
        The figure's pixels (as decoded from its PNG).
    budget_bytes : int
        The most bytes to embed.
    max_width : int, optional
        Also reduce to at most this many pixels wide.
    size : int, optional
        The bytes of the figure's own PNG.  Unknown (None), the lossless re-encoding,
        which only helps an RGBA figure (see :func:`_lossless_may_fit`), is not tried.

    Returns
    -------
    (bytes, str)
        The PNG or JPEG to embed and the note for the caption ("" when nothing was lost).
    """
    from PIL import Image

    note = ""
    img = im.convert("RGB") if im.mode in ("RGBA", "LA", "P") else im
    if img.mode == "RGB" and im.mode in ("RGBA", "LA"):
        # a figure on a transparent background: put it on white as a browser shows it
        bg = Image.new("RGB", im.size, (255, 255, 255))
        bg.paste(im, mask=im.getchannel("A"))
        img = bg
    if max_width is not None and img.width > max_width:
        img = img.resize((max_width, max(1, round(img.height * max_width / img.width))), Image.Resampling.LANCZOS)
        note = f"reduced to {img.width} px wide"
    lossless = max_width is not None or (size is not None and _lossless_may_fit(im.mode, size, budget_bytes))
    data = _encode_png(img) if lossless else None
    if data is None or len(data) > budget_bytes:
        data = _encode_jpeg(img)
        note = f"a JPEG of quality {JPEG_QUALITY} to keep the page small" + (f", {note}" if note else "")
    while len(data) > budget_bytes and img.width > 400:
        img = img.resize((img.width * 3 // 4, max(1, img.height * 3 // 4)), Image.Resampling.LANCZOS)
        data = _encode_jpeg(img)
        note = f"a JPEG of quality {JPEG_QUALITY}, {img.width} px wide, to keep the page small"
    return data, note


def _lossless_may_fit(mode: str, size: int, budget_bytes: int) -> bool:
    """Whether re-encoding a PNG of ``size`` bytes without loss may bring it under the budget.

    Dropping an alpha channel saves at most about a quarter.  Without one, another zlib
    level saves a few percent at most (level 1 was within 3 % of level 6 on imagery; the
    figures' own PNG, deflated by ISA-L, 0.81-1.19x the bytes of Pillow's at level 1): go straight
    to a JPEG.
    """
    return mode in ("RGBA", "LA") and size * 0.75 <= budget_bytes


#: Reduced figures made ahead by the command's figure helper (changedet._figproc), by the
#: digest of the PNG they stand for; each is used once.
_PREPARED: dict[bytes, tuple[int, bytes, str]] = {}


def _digest(raw: bytes) -> bytes:
    import hashlib

    return hashlib.blake2b(raw, digest_size=16).digest()


def _prepare_embedding(digest: bytes, budget_bytes: int, data: bytes, note: str) -> None:
    """Remember the reduction (see :func:`_reduced_image`) of the PNG with this :func:`_digest`
    for the next page that embeds it."""
    _PREPARED.clear()  # one figure at a time: never more than one reduction held
    _PREPARED[digest] = (budget_bytes, data, note)


def _encode_png(img: Any) -> bytes:
    buf = _stdio.BytesIO()
    img.save(buf, "PNG", compress_level=6)  # optimize=True: 2x the time for 0.5 % smaller
    return buf.getvalue()


def _encode_jpeg(img: Any) -> bytes:
    buf = _stdio.BytesIO()
    if img.mode not in ("RGB", "L"):  # _reduced_image's figures are RGB already: no copy of them
        img = img.convert("RGB")
    img.save(buf, "JPEG", quality=JPEG_QUALITY, subsampling=0)  # 4:4:4: thin coloured outlines stay sharp
    return buf.getvalue()


# --------------------------------------------------------------------------- where on the site

_Place = tuple[tuple[float, float], tuple[float, float, float, float]]


def _grid_places(props: Sequence[Mapping[str, Any]], summary: Mapping[str, Any]) -> list[_Place | None]:
    """Each polygon's centroid (row, col) and bounding box (row0, row1, col0, col1) as fractions of the
    grid (0 = top/left, 1 = bottom/right); None where the polygon has no centroid."""
    g = summary.get("grid") or {}
    shape, tr = g.get("shape"), g.get("transform")
    if not shape or not tr or len(tr) < 6:
        return [None] * len(props)
    from affine import Affine

    inv = ~Affine(*tr[:6])
    height, width = float(shape[0]), float(shape[1])
    pts: list[list[tuple[float, float]]] = []  # per polygon: centroid, then the box's corners
    geo: list[bool] = []
    for p in props:
        lonlat = _num(p.get("centroid_lon")) is not None and _num(p.get("centroid_lat")) is not None
        kx, ky = ("centroid_lon", "centroid_lat") if lonlat else ("centroid_x", "centroid_y")
        if _num(p.get(kx)) is None or _num(p.get(ky)) is None:
            pts.append([])
            geo.append(False)
            continue
        q = [(float(p[kx]), float(p[ky]))]
        box = p.get("bbox")
        if isinstance(box, (list, tuple)) and len(box) == 4 and all(_num(v) is not None for v in box):
            x0, y0, x1, y1 = (float(v) for v in box)
            q += [(x0, y0), (x0, y1), (x1, y0), (x1, y1)]
        pts.append(q)
        geo.append(lonlat)
    crs = g.get("crs")
    if crs and any(geo):
        from pyproj import Transformer

        t = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
        flat = [(i, j) for i, q in enumerate(pts) if geo[i] for j in range(len(q))]
        xs, ys = t.transform([pts[i][j][0] for i, j in flat], [pts[i][j][1] for i, j in flat])
        for (i, j), x, y in zip(flat, xs, ys):
            pts[i][j] = (float(x), float(y))

    def frac(x: float, y: float) -> tuple[float, float]:
        col, row = inv * (x, y)
        return min(max(row / height, 0.0), 1.0), min(max(col / width, 0.0), 1.0)

    out: list[_Place | None] = []
    for q in pts:
        if not q or not all(math.isfinite(v) for xy in q for v in xy):
            out.append(None)
            continue
        rc = [frac(x, y) for x, y in q]
        rows, cols = [r for r, _ in rc[1:] or rc], [c for _, c in rc[1:] or rc]
        out.append((rc[0], (min(rows), max(rows), min(cols), max(cols))))
    return out


def _north_up(summary: Mapping[str, Any]) -> bool:
    g = summary.get("grid") or {}
    tr = g.get("transform") or []
    return bool(g.get("crs")) and len(tr) >= 6 and tr[1] == 0 and tr[3] == 0 and tr[4] < 0


def _part_name(pos: tuple[float, float], compass: bool) -> str:
    """The ninth of the site a position falls in: "north-east", "centre", ... (or "top right")."""
    row, col = pos
    v = 0 if row < 1 / 3 else (1 if row < 2 / 3 else 2)
    h = 0 if col < 1 / 3 else (1 if col < 2 / 3 else 2)
    if compass:
        vs, hs = ("north", "", "south")[v], ("west", "", "east")[h]
        return f"{vs}-{hs}" if vs and hs else (vs or hs or "centre")
    vs, hs = ("top", "", "bottom")[v], ("left", "", "right")[h]
    return f"{vs} {hs}" if vs and hs else (vs or hs or "centre")


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    """The fraction of [a0, a1] inside [b0, b1] (for a point: 1 when inside)."""
    if a1 <= a0:
        return 1.0 if (b0 <= a0 < b1 or (b1 == 1.0 and a0 == 1.0)) else 0.0
    return max(0.0, min(a1, b1) - max(a0, b0)) / (a1 - a0)


def _where_sentence(places: Sequence[_Place | None], weights: Sequence[float], compass: bool) -> str:
    """Where the changed area lies on the site: each area's weight spread evenly over its bounding box."""
    pairs = [(pl[1], w) for pl, w in zip(places, weights) if pl is not None and w > 0]
    total = sum(w for _, w in pairs)
    if not pairs or total <= 0:
        return ""
    if compass:
        q_names = {(0, 0): "north-west quarter", (0, 1): "north-east quarter", (1, 0): "south-west quarter",
                   (1, 1): "south-east quarter"}
        halves = {"n": "northern half", "s": "southern half", "w": "western half", "e": "eastern half"}
    else:
        q_names = {(0, 0): "top-left quarter", (0, 1): "top-right quarter", (1, 0): "bottom-left quarter",
                   (1, 1): "bottom-right quarter"}
        halves = {"n": "top half", "s": "bottom half", "w": "left half", "e": "right half"}
    share = {k: 0.0 for k in q_names}
    centre = 0.0
    for (r0, r1, c0, c1), w in pairs:
        for (qr, qc) in share:
            share[(qr, qc)] += w / total * _overlap(r0, r1, qr / 2, qr / 2 + 0.5) * _overlap(c0, c1, qc / 2, qc / 2 + 0.5)
        centre += w / total * _overlap(r0, r1, 0.25, 0.75) * _overlap(c0, c1, 0.25, 0.75)
    best = max(share, key=lambda k: share[k])
    half = {"n": share[(0, 0)] + share[(0, 1)], "s": share[(1, 0)] + share[(1, 1)],
            "w": share[(0, 0)] + share[(1, 0)], "e": share[(0, 1)] + share[(1, 1)]}
    best_half = max(half, key=lambda k: half[k])
    # the middle first when the change straddles the centre lines (no quarter holds nearly all of it)
    if centre >= 0.6 and share[best] < 0.9:
        return f"mostly in the middle of the site ({centre:.0%} of the changed area)"
    if share[best] >= 0.6:
        return f"mostly in the {q_names[best]} of the site ({share[best]:.0%} of the changed area)"
    if half[best_half] >= 0.75:
        return f"mostly in the {halves[best_half]} of the site ({half[best_half]:.0%} of the changed area)"
    parts = ", ".join(f"{q_names[k].split()[0]} {share[k]:.0%}" for k in sorted(share, key=lambda k: -share[k]))
    return f"spread over the site (by quarter: {parts})"


# --------------------------------------------------------------------------- sections

def _dates(summary: Mapping[str, Any]) -> dict[str, str | None]:
    """Acquisition dates where the summary records them (several places are looked at)."""
    out: dict[str, str | None] = {"before": None, "after": None}
    top = summary.get("dates")
    inputs = summary.get("inputs") or {}
    for side in out:
        cands: list[Any] = []
        if isinstance(top, Mapping):
            cands.append(top.get(side))
        info = inputs.get(side) if isinstance(inputs, Mapping) else None
        if isinstance(info, Mapping):
            cands += [info.get(k) for k in ("date", "acquired", "acquisition_date", "datetime")]
        for c in cands:
            if isinstance(c, Mapping):
                c = c.get("date") or c.get("datetime")
            if c:
                out[side] = str(c)
                break
    return out


def _date_source(summary: Mapping[str, Any], side: str) -> str:
    """Where a date came from, as summary.json's ``dates.source`` records it: " (tag)", or ""."""
    src = (summary.get("dates") or {}).get("source") if isinstance(summary.get("dates"), Mapping) else None
    value = src.get(side) if isinstance(src, Mapping) else None
    return f" (from {value})" if value else ""


def _words(summary: Mapping[str, Any], props: Sequence[Mapping[str, Any]],
           places: Sequence[_Place | None], structures: Sequence[Mapping[str, Any]] | None = None) -> list[str]:
    """The paragraph at the top: what changed, how much, where."""
    r = summary.get("results") or {}
    g = summary.get("grid") or {}
    compass = _north_up(summary)
    n = int(r.get("n_changes") or 0)
    area = _num(r.get("changed_area_m2"))
    px = _num(g.get("pixel_size_m"))
    dates = _dates(summary)
    when = (f"Between {_e(dates['before'])} and {_e(dates['after'])}, "
            if dates["before"] and dates["after"] else "Between the two dates, ")
    lines: list[str] = []
    if n == 0:
        lines.append(when + "no changed area was found (above the minimum mapping unit).")
    else:
        frac = _num(r.get("changed_fraction"))
        of_site = f"{frac:.1%} of the valid site area" if frac is not None else ""
        if area is not None:
            acres = _num(r.get("changed_area_acres"))
            size = (f"covering <b>{area / 10_000:,.2f} ha</b> ({area:,.0f} m²" if area >= 10_000
                    else f"covering <b>{area:,.0f} m²</b> ({area / 10_000:,.4f} ha")
            size += (f", {acres:,.{1 if acres >= 10 else 2}f} acres" if acres is not None else "")
            size += f", {of_site})" if of_site else ")"
        else:
            size = f"covering <b>{int(r.get('changed_pixels') or 0):,} pixels</b>" + (f" ({of_site})" if of_site else "")
        lines.append(when + f"<b>{n:,} changed area{'s' if n != 1 else ''}</b> {size}.")
        by_class = r.get("by_class") or {}
        if by_class:
            items = sorted(by_class.items(), key=lambda kv: -(_num(kv[1].get("area_m2")) or kv[1].get("area_px") or 0))
            bits = []
            for cls, c in items:
                a = _ha(_num(c.get("area_m2"))) or f"{int(c.get('area_px') or 0):,} px"
                bits.append(f"{_e(_class_words(cls))}: {int(c.get('count') or 0):,} ({a})")
            lines.append("By kind of change: " + "; ".join(bits) + ".")
        weights = [(_num(p.get("area_m2")) or _num(p.get("area_px")) or 0.0) for p in props]
        where = _where_sentence(places, weights, compass)
        if where:
            lines.append(f"The change {'is' if where.startswith('spread') else 'lies'} {_e(where)}.")
        if props:
            big = max(range(len(props)), key=lambda i: weights[i])
            p = props[big]
            a = _ha(_num(p.get("area_m2"))) or f"{int(p.get('area_px') or 0):,} px"
            pl = places[big]
            part = _part_name(pl[0], compass) if pl is not None else ""
            place = "" if not part else (", in the middle of the site" if part == "centre"
                                         else f", centred in the {part} of the site")
            lines.append(f"The largest area (id {_e(p.get('id'))}) is {a} of "
                         f"{_e(_class_words(p.get('change_class', 'change')))}{_e(place)}.")
    for cls, words, why in (("vegetation_gain", "vegetation gain", "vegetation growing"),
                            ("seasonal", "seasonal change", "parcels changing with the season (outlined by "
                             "edges the before image already had, or vegetation lost across a field where "
                             "neither date has an edge)")):
        flag = "--" + cls.replace("_", "-")  # each class left out has its option, named as the class
        left = (r.get("left_out") or {}).get(cls)
        if isinstance(left, Mapping) and left.get("count"):
            k = int(left["count"])
            a = _ha(_num(left.get("area_m2"))) or f"{int(left.get('area_px') or 0):,} px"
            lines.append(f"Left out as {why}, not construction: {k:,} area{'s' if k != 1 else ''} of "
                         f"{words} ({a}; <code>{flag} keep</code> keeps them).")
    masks = summary.get("masks") or {}
    if isinstance(masks, Mapping) and masks.get("excluded_pixels"):
        ha = _num(masks.get("excluded_area_ha"))
        a = _ha(ha * 10_000 if ha is not None else None) or f"{int(masks['excluded_pixels']):,} px"
        share = _num(masks.get("excluded_share"))
        lines.append(f"Not compared: {a} left out as cloud, cloud shadow or defective"
                     + (f" ({share:.1%} of the pixels with data)" if share is not None else "")
                     + "; what changed under them is not in these figures.")
    caveat = season_caveat(summary)
    if caveat:
        lines.append(_e(caveat))
    s = r.get("structures")
    if isinstance(s, Mapping):
        if s.get("count") is not None:
            med = _num(s.get("median_footprint_m2"))
            where_s = ""
            if structures:
                # each structure counts once, wherever its centroid is
                where_s = _where_sentence([(pl[0], (pl[0][0], pl[0][0], pl[0][1], pl[0][1])) if pl else None
                                           for pl in _grid_places(structures, summary)],
                                          [1.0] * len(structures), compass)
                where_s = where_s.replace("of the changed area", "of them")
            lines.append(f"<b>{int(s['count']):,} individual structure{'s' if s['count'] != 1 else ''}</b> counted"
                         + (f", median footprint {med:,.0f} m²" if med is not None else "")
                         + (f", {_e(where_s)}" if where_s else "") + ".")
        elif s.get("reason") or s.get("why"):
            lines.append(f"Structures not counted: {_e(s.get('reason') or s.get('why'))}.")
    extent = ""
    shape = g.get("shape")
    if shape and px:
        w_m, h_m = shape[1] * px, shape[0] * px
        extent = (f"The site: {w_m / 1000:,.2f} x {h_m / 1000:,.2f} km" if max(w_m, h_m) >= 1000
                  else f"The site: {w_m:,.0f} x {h_m:,.0f} m")
        extent += f" ({_e(g.get('crs') or 'no georeferencing')}, {px:g} m pixels)."
    elif shape:
        extent = f"The site: {shape[1]:,} x {shape[0]:,} pixels (no georeferencing: areas in pixels)."
    if extent:
        lines.append(extent)
    return lines


_OUTPUT_NAMES = ("change_mask.tif", "change_score.tif", "changes.geojson", "changes.gpkg", "structures.geojson",
                 "overview.png", "score_histogram.png", "summary.json")

_CHANGE_COLUMNS = (
    # key, header, numeric, decimals
    ("id", "id", True, 0),
    ("change_class", "class", False, None),
    ("area_m2", "area (m²)", True, 0),
    ("area_ha", "area (ha)", True, 4),
    ("area_px", "area (px)", True, 0),
    ("centroid_lon", "centroid lon", True, 6),
    ("centroid_lat", "centroid lat", True, 6),
    ("centroid_x", "centroid x", True, 2),
    ("centroid_y", "centroid y", True, 2),
    ("where", "where on the site", False, None),
    ("mean_score", "mean score", True, 3),
)

_STRUCTURE_PREFERRED = ("id", "change_id", "area_id", "changed_area_id", "area_m2", "length_m", "width_m",
                        "orientation_deg", "centroid_lon", "centroid_lat", "centroid_x", "centroid_y")


def _table(table_id: str, columns: Sequence[tuple[str, str, bool, int | None]], rows: Iterable[Mapping[str, Any]],
           *, sortable: bool = True, total: Mapping[str, str] | None = None) -> str:
    head = "".join(
        f'<th data-key="{_e(k)}" data-type="{"num" if num else "text"}"{" class=n" if num else ""}>{_e(h)}</th>'
        for k, h, num, _ in columns
    )
    body = []
    for r in rows:
        cells = []
        for k, _, num, dec in columns:
            v = r.get(k)
            if num:
                fv = _num(v)
                shown = _fmt(v, dec if dec is not None else 2) if fv is not None else ("" if v is None else _e(v))
                cells.append(f'<td class="n" data-v="{"" if fv is None else repr(fv)}">{shown}</td>')
            elif isinstance(v, _Html):
                cells.append(f"<td>{v}</td>")  # already HTML (a link or thumbnail made here)
            else:
                cells.append(f"<td>{_e(v)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    foot = ""
    if total is not None:
        foot = "<tfoot><tr class=total>" + "".join(
            f'<td{" class=n" if num else ""}>{total.get(k, "")}</td>' for k, _, num, _ in columns) + "</tr></tfoot>"
    cls = ' class="sortable"' if sortable else ""
    return (f'<table id="{_e(table_id)}"{cls}><thead><tr>{head}</tr></thead><tbody>'
            + "\n".join(body) + f"</tbody>{foot}</table>")


def _kv_table(items: Iterable[tuple[str, Any]]) -> str:
    rows = []
    for k, v in items:
        shown = json.dumps(v) if isinstance(v, (list, dict)) else ("—" if v is None else str(v))
        rows.append(f"<tr><th>{_e(k)}</th><td class=mono>{_e(shown)}</td></tr>")
    return "<table>" + "".join(rows) + "</table>"


def _inputs_section(summary: Mapping[str, Any], *, hash_cap_mb: float) -> str:
    inputs = summary.get("inputs") or {}
    dates = _dates(summary)
    rows = []
    computed = []
    for side in ("before", "after"):
        info = inputs.get(side) if isinstance(inputs, Mapping) else None
        info = info if isinstance(info, Mapping) else {}
        path = info.get("path")
        digest = info.get("sha256")
        how = "from summary.json"
        if not digest:
            digest, how = _hash_here(path, cap_mb=hash_cap_mb)
            if digest:
                computed.append(side)
        rows.append(
            f"<tr><th>{side}</th><td class=mono>{_e(path if path else '(an array passed in Python: no file)')}</td>"
            f"<td>{_e(dates[side] or 'not known')}{_e(_date_source(summary, side))}</td>"
            f"<td>{_e(info.get('grid', ''))}</td>"
            f"<td>{_e(', '.join(info.get('bands') or []))}</td>"
            f"<td class=mono>{_e(digest or '—')}</td><td class=note>{_e(how)}</td></tr>"
        )
    note = ""
    if computed:
        note = (f"<p class=note>The SHA-256 of {' and '.join(computed)} was not in summary.json; the report writer "
                f"computed it when the report was written (files up to {hash_cap_mb:g} MB), so it identifies the "
                "file found at that path then, not necessarily the one the run read.</p>")
    return ("<table><thead><tr><th></th><th>path</th><th>acquired</th><th>grid</th><th>bands</th><th>SHA-256</th>"
            "<th></th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>" + note)


def _hash_here(path: Any, *, cap_mb: float) -> tuple[str | None, str]:
    if not path:
        return None, "no file"
    text = str(path)
    if is_remote(text):
        return None, "remote input: not hashed"
    p = Path(text)
    if not p.exists():
        return None, "not hashed: the file is no longer there"
    size = p.stat().st_size if p.is_file() else sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    if size > cap_mb * 1e6:
        return None, f"not hashed: {size / 1e6:,.0f} MB is above the report writer's cap of {cap_mb:g} MB (hash_cap_mb)"
    return _io.sha256(p), "computed by the report writer"


def _accuracy_section(acc: Mapping[str, Any] | None) -> str:
    if not acc:
        return "<p>No ground truth was given, so accuracy was not measured.</p>"
    keys = ("precision", "recall", "f1", "iou", "kappa", "overall_accuracy")
    names = {"f1": "F1", "iou": "IoU", "overall_accuracy": "overall accuracy"}
    cells = "".join(f"<th>{_e(names.get(k, k))}</th>" for k in keys if k in acc)
    vals = "".join(f'<td class=n>{_fmt(acc[k], 3)}</td>' for k in keys if k in acc)
    out = f'<table id="accuracy"><thead><tr>{cells}</tr></thead><tbody><tr>{vals}</tr></tbody></table>'
    cm = [acc.get(k) for k in ("tp", "fp", "fn", "tn")]
    if all(v is not None for v in cm):
        tp, fp, fn, tn = (int(v) for v in cm)
        out += ("<table><thead><tr><th>pixels</th><th>truth: change</th><th>truth: no change</th></tr></thead><tbody>"
                f"<tr><th>found change</th><td class=n>{tp:,}</td><td class=n>{fp:,}</td></tr>"
                f"<tr><th>found no change</th><td class=n>{fn:,}</td><td class=n>{tn:,}</td></tr></tbody></table>")
    return out


def _method_section(summary: Mapping[str, Any]) -> str:
    params = summary.get("parameters") or {}
    method = params.get("method")
    words = _METHOD_WORDS.get(str(method), "")
    details = summary.get("method_details") or {}
    thr = params.get("threshold_value")
    text = f"<p>Method <b>{_e(method)}</b>" + (f": {_e(words)}" if words else "") + "."
    if details.get("auto_choice"):
        text += f" On this pair the default chose <b>{_e(details['auto_choice'])}</b>."
    hyst = params.get("hysteresis")
    if thr is not None and isinstance(hyst, Mapping) and hyst.get("low") is not None and hyst.get("high") is not None:
        rim = (f", with the pixels above {_fmt(hyst['low'], 4)} next to them (their rim)"
               if hyst["low"] < thr else "")
        from .window import HYSTERESIS_KEEP_M2

        text += (f" A changed area is the pixels whose score exceeds {_fmt(thr, 4)} (threshold by "
                 f"{_e(params.get('threshold_method'))}){rim}, kept when its score reaches {_fmt(hyst['high'], 4)} "
                 f"somewhere or it covers {HYSTERESIS_KEEP_M2 / 10_000:g} ha (hysteresis: weak isolated specks are "
                 "dropped).")
    elif thr is not None:
        text += (f" A pixel is change where its score exceeds {_fmt(thr, 4)} (threshold by "
                 f"{_e(params.get('threshold_method'))}).")
    mmu = params.get("min_area_m2")
    if mmu is not None:
        text += f" Areas smaller than {_fmt(mmu, 0)} m² are dropped."
    text += "</p>"
    co = summary.get("coregistration")
    if isinstance(co, Mapping) and co:
        text += (f"<p>Co-registration: the after image was offset by {_fmt(co.get('rows'), 2)} rows and "
                 f"{_fmt(co.get('cols'), 2)} columns relative to the before image "
                 f"({'corrected' if co.get('applied') else 'below the correction threshold, not applied'}).</p>")
    text += "<h3>Parameters (summary.json: parameters)</h3>" + _kv_table(params.items())
    if details:
        text += "<h3>Method details</h3>" + _kv_table(details.items())
    versions = summary.get("versions") or {}
    if versions:
        text += "<h3>Versions</h3>" + _kv_table(versions.items())
    return text


def _page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        # no request may leave the page: only inline style, inline script and data: images
        "<meta http-equiv=Content-Security-Policy content=\"default-src 'none'; img-src data:; "
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">"
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>\n{body}\n"
        f"<script>{_JS}</script></body></html>\n"
    )


# --------------------------------------------------------------------------- public

def _load(source: Any, folder: Any) -> tuple[dict[str, Any], Path]:
    if isinstance(source, Mapping):
        if folder is None:
            raise InvalidParameterError("a summary passed as a dict needs folder= (where changes.geojson and "
                                        "overview.png are, and where report.html goes)")
        return dict(source), Path(folder)
    if not isinstance(source, (str, os.PathLike)):
        raise InvalidParameterError(
            f"result_folder_or_summary must be a result folder, its summary.json or a summary dict; "
            f"got {type(source).__name__}"
        )
    p = Path(source)
    if p.is_dir():
        summary_path = p / "summary.json"
    elif p.name.endswith(".json"):
        summary_path = p
    else:
        raise InvalidParameterError(f"result_folder_or_summary {str(p)!r} is neither a folder nor a summary.json; "
                                    "pass the --out folder of changedet detect")
    if not summary_path.is_file():
        raise InvalidParameterError(
            f"{str(summary_path)!r} does not exist: {str(summary_path.parent)!r} is not a finished changedet result; "
            "run changedet detect ... --out on it first"
        )
    summary = _read_json(summary_path, "summary")
    if not isinstance(summary, dict) or "results" not in summary:
        raise InvalidParameterError(f"{str(summary_path)!r} is not a changedet summary (no 'results'); "
                                    "pass the summary.json written by changedet detect")
    return summary, Path(folder) if folder is not None else summary_path.parent


def write_report(
    result_folder_or_summary: str | os.PathLike[str] | Mapping[str, Any],
    folder: str | os.PathLike[str] | None = None,
    *,
    title: str | None = None,
    properties: Sequence[Mapping[str, Any]] | None = None,
    max_rows: int = 5000,
    hash_cap_mb: float = 512.0,
) -> Path:
    """Write ``report.html``: one self-contained page describing a result.

    Parameters
    ----------
    result_folder_or_summary : path or dict
        A finished result folder (as written by ``changedet detect --out``), its
        ``summary.json``, or the summary as a dict (then ``folder`` says where the
        other files are).
    folder : path, optional
        The folder holding ``changes.geojson``, ``overview.png`` (and optionally
        ``structures.geojson``, ``score_histogram.png``), where ``report.html`` is
        written.  Default: the result folder.
    title : str, optional
        The page title.  Default: the folder's name.
    properties : sequence of dict, optional
        The changed areas' properties (``ChangePolygons.properties``), when the caller
        holds them; default: read from ``changes.geojson``.
    max_rows : int
        At most this many rows per table (the largest areas); the page says when the
        rest are only in the GeoJSON.
    hash_cap_mb : float
        When the summary lacks an input's SHA-256, hash inputs up to this size here.

    Returns
    -------
    pathlib.Path
        The report written (atomically: a temporary file renamed when complete).

    Raises
    ------
    InvalidParameterError
        Not a result folder or summary, or ``max_rows`` below 1.
    ChangedetError
        An unreadable ``summary.json`` or ``changes.geojson``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> summary = {"results": {"n_changes": 0, "changed_area_m2": 0.0, "by_class": {}},
    ...            "parameters": {"method": "cva"}, "grid": {"shape": [10, 10], "pixel_size_m": 10.0}}
    >>> write_report(summary, d).name
    'report.html'
    """
    if int(max_rows) != max_rows or max_rows < 1:
        raise InvalidParameterError(f"max_rows must be an integer >= 1, got {max_rows!r}")
    summary, out = _load(result_folder_or_summary, folder)
    return _write_report(summary, out, title=title, properties=properties, max_rows=max_rows,
                         hash_cap_mb=hash_cap_mb)


def _write_report(summary: dict[str, Any], out: Path, *, title: str | None = None,
                  properties: Sequence[Mapping[str, Any]] | None = None, max_rows: int = 5000,
                  hash_cap_mb: float = 512.0, overview: Callable[[], Path | None] | None = None) -> Path:
    """:func:`write_report` of a loaded summary.  ``overview``: called once the rest of the page
    is made, it returns the overview figure's file (None: there is none).  A run that is still
    writing its figure passes one that waits for it, and the page's other parts are made
    meanwhile; default ``overview.png`` in ``out`` when it is there."""
    name = title or out.resolve().name or "changedet result"
    feats = _features(out, "changes.geojson") if properties is None else [{"properties": p} for p in properties]
    props = [dict(f.get("properties") or {}) for f in (feats or [])]
    places = _grid_places(props, summary)
    compass = _north_up(summary)
    for p, pl in zip(props, places):
        p["where"] = _part_name(pl[0], compass) if pl is not None else ""
    dates = _dates(summary)
    sub = f"changedet {summary.get('changedet_version', '')} · run {summary.get('created_utc', '')}"
    if dates["before"] or dates["after"]:
        sub = f"{dates['before'] or '?'} → {dates['after'] or '?'} · " + sub
    body = [f"<h1>What changed: {_e(name)}</h1><p class=sub>{_e(sub)}</p>"]
    s_info = (summary.get("results") or {}).get("structures")
    sfeats = _features(out, "structures.geojson") if isinstance(s_info, Mapping) else None
    sprops = [dict(f.get("properties") or {}) for f in sfeats] if sfeats else []
    body.append('<div class=lead id="words">'
                + "".join(f"<p>{s}</p>" for s in _words(summary, props, places, sprops)) + "</div>")

    # ---- figures (the overview's place is kept: it is embedded last)
    body.append("<h2>Overview</h2>")
    overview_at = len(body)
    body.append("")
    hist = out / "score_histogram.png"
    if hist.is_file():
        uri, _ = _image_data_uri(hist, budget_bytes=FIGURE_BUDGET_BYTES // 3)
        body.append(f'<figure><img alt="score histogram" src="{uri}" style="max-width:640px">'
                    "<figcaption>The change score of every valid pixel and the threshold.</figcaption></figure>")

    # ---- changed areas
    body.append("<h2>Changed areas</h2>")
    if feats is None:
        body.append("<p class=note>changes.geojson is not in this folder.</p>")
    elif not props:
        body.append("<p>No changed area.</p>")
    else:
        present = {k for p in props for k, v in p.items() if v is not None}
        cols = [c for c in _CHANGE_COLUMNS if c[0] in present]
        shown = sorted(props, key=lambda p: -(_num(p.get("area_px")) or 0))[:max_rows]
        if len(props) > max_rows:
            body.append(f"<p class=note>The {max_rows:,} largest of {len(props):,} areas; all are in "
                        '<a href="changes.geojson">changes.geojson</a>.</p>')
        body.append(_table("changes", cols, shown))
        coords = "lon/lat" if (summary.get("grid") or {}).get("crs") else "pixel coordinates"
        gpkg = ', <a href="changes.gpkg">changes.gpkg</a> (for QGIS)' if (out / "changes.gpkg").is_file() else ""
        body.append('<p class=note>Click a column header to sort. The polygons: <a href="changes.geojson">'
                    f"changes.geojson</a> ({coords}){gpkg}.</p>")

    # ---- structures
    s = s_info
    if isinstance(s, Mapping):
        body.append("<h2>Structures</h2>")
        # every figure and setting of results.structures; a per-area breakdown is in the table below
        extra = {k: v for k, v in s.items() if not (isinstance(v, (dict, list)) and len(v) > 30)}
        body.append(_kv_table(extra.items()))
        if sfeats:
            keys = [k for k in _STRUCTURE_PREFERRED if any(k in p for p in sprops)]
            keys += [k for k in dict.fromkeys(k for p in sprops for k in p)
                     if k not in keys and all(not isinstance(p.get(k), (dict, list, tuple)) for p in sprops)]
            cols = [(k, k.replace("_", " ").replace(" m2", " (m²)").replace(" m", " (m)").replace(" deg", " (°)"),
                     all(p.get(k) is None or _num(p.get(k)) is not None for p in sprops)
                     and any(_num(p.get(k)) is not None for p in sprops),
                     0 if k in ("id", "change_id", "area_id", "changed_area_id") else 1 if k == "area_m2" else 2)
                    for k in keys]
            shown_s = sorted(sprops, key=lambda p: -(_num(p.get("area_m2")) or 0))[:max_rows]
            if len(sprops) > max_rows:
                body.append(f"<p class=note>The {max_rows:,} largest of {len(sprops):,} structures; all are in "
                            '<a href="structures.geojson">structures.geojson</a>.</p>')
            body.append(_table("structures", cols, shown_s))
        elif sfeats is not None:
            body.append("<p>No structure was counted.</p>")

    # ---- accuracy, method, inputs
    body.append("<h2>Accuracy</h2>" + _accuracy_section(summary.get("accuracy")))
    body.append("<h2>Method and parameters</h2>" + _method_section(summary))
    body.append("<h2>Inputs</h2>" + _inputs_section(summary, hash_cap_mb=hash_cap_mb))
    outputs = summary.get("outputs") or sorted(
        {f for f in _OUTPUT_NAMES if (out / f).is_file()} | {REPORT_NAME, "summary.json"}
        | ({"overview.png"} if overview is not None else set()))
    if outputs:
        body.append("<h2>Files</h2><p>" + " · ".join(f'<a href="{_e(o)}">{_e(o)}</a>' for o in outputs) + "</p>")
    body.append("<details><summary>The whole summary.json</summary><pre>"
                + _e(json.dumps(summary, indent=2)) + "</pre></details>")
    body.append(f"<p class=note>Written by changedet.report on "
                f"{_dt.datetime.now(_dt.timezone.utc).isoformat(timespec='seconds')}.</p>")
    fig = overview() if overview is not None else out / "overview.png"
    if fig is not None and fig.is_file():
        uri, note = _image_data_uri(fig, budget_bytes=FIGURE_BUDGET_BYTES)
        cap = "Before, after and the outlines of the changed areas, coloured by kind of change" + (
            ", and each counted structure." if sprops else ".")
        if note:
            cap += f" ({_e(note)}; the full figure is <a href=\"overview.png\">overview.png</a>.)"
        body[overview_at] = (f'<figure><img id="overview" alt="overview figure" src="{uri}"><figcaption>{cap}'
                             "</figcaption></figure>")
    else:
        body[overview_at] = "<p class=note>No overview figure in this folder (the run was made without figures).</p>"
    page = _page(f"changedet report: {name}", "\n".join(body))
    dest = out / REPORT_NAME
    with _io.atomic_path(dest) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return dest


_INDEX_COLUMNS = (
    ("thumb", "overview", False, None),
    ("site", "site", False, None),
    ("status", "status", False, None),
    ("n_changes", "changed areas", True, 0),
    ("changed_area_ha", "area (ha)", True, 2),
    ("main_class", "main kind of change", False, None),
    ("where", "where", False, None),
    ("structures", "structures", True, 0),
    ("f1", "F1", True, 3),
    ("error", "error", False, None),
)


def _site_rows(batch: Path) -> list[dict[str, Any]]:
    """One row per site: from batch.csv when there is one, else every sub-folder holding a summary."""
    rows: list[dict[str, Any]] = []
    table = batch / "batch.csv"
    if table.is_file():
        import csv

        with open(table, encoding="utf-8", newline="") as fh:
            for r in csv.DictReader(fh):
                # run_batch writes each site into OUT/<site>; the recorded path may be relative to another cwd
                out = batch / (r.get("site") or "")
                if not out.is_dir() and r.get("out"):
                    out = Path(r["out"])
                rows.append({"site": r.get("site", out.name), "status": r.get("status", ""), "dir": out,
                             "error": r.get("error") or ""})
    else:
        for sub in sorted(p for p in batch.iterdir() if p.is_dir()):
            if (sub / "summary.json").is_file():
                rows.append({"site": sub.name, "status": "done", "dir": sub, "error": ""})
    return rows


def write_index(
    batch_folder: str | os.PathLike[str],
    *,
    title: str | None = None,
    write_missing: bool = True,
    thumb_width: int = 360,
) -> Path:
    """Write ``index.html`` for a batch: one row and thumbnail per site, links to each site's report, totals.

    Parameters
    ----------
    batch_folder : path
        The output folder of :func:`changedet.batch.run_batch` (sites from its
        ``batch.csv``; without one, every sub-folder holding a ``summary.json``).
    title : str, optional
        The page title.  Default: the folder's name.
    write_missing : bool
        Write ``report.html`` for a finished site that has none (a result from before
        reports were written).
    thumb_width : int
        Width in pixels of the embedded thumbnails.

    Returns
    -------
    pathlib.Path
        The index written (atomically).

    Raises
    ------
    InvalidParameterError
        ``batch_folder`` is not a folder, or ``thumb_width`` below 32.

    Examples
    --------
    >>> import tempfile
    >>> write_index(tempfile.mkdtemp()).name
    'index.html'
    """
    batch = Path(batch_folder)
    if not batch.is_dir():
        raise InvalidParameterError(f"batch_folder {str(batch)!r} is not a folder; pass the --out folder of "
                                    "changedet batch")
    if int(thumb_width) != thumb_width or thumb_width < 32:
        raise InvalidParameterError(f"thumb_width must be an integer >= 32, got {thumb_width!r}")
    name = title or batch.resolve().name or "changedet batch"
    rows = []
    totals = {"sites": 0, "finished": 0, "failed": 0, "n_changes": 0, "area_m2": 0.0, "structures": 0}
    have_area = have_structures = False
    by_class: dict[str, dict[str, float]] = {}
    for site in _site_rows(batch):
        totals["sites"] += 1
        d: Path = site["dir"]
        row: dict[str, Any] = {"site": site["site"], "status": site["status"], "error": site["error"]}
        summary_path = d / "summary.json"
        if site["status"] != "failed" and summary_path.is_file():
            try:
                summary = _io.read_json(summary_path)
                r = summary["results"]
            except (OSError, ValueError, KeyError, TypeError):
                row["error"] = "summary.json unreadable"
                rows.append(row)
                continue
            totals["finished"] += 1
            report = d / REPORT_NAME
            if write_missing and not report.is_file():
                try:
                    write_report(d)
                except ChangedetError as exc:  # one site's unreadable files must not hide the others
                    row["error"] = f"no report: {exc}"
            rel = os.path.relpath(d, batch).replace(os.sep, "/")
            if report.is_file():
                row["site"] = _Html(f'<a href="{_e(rel)}/{REPORT_NAME}">{_e(site["site"])}</a>')
            fig = d / "overview.png"
            if fig.is_file():
                uri, _ = _image_data_uri(fig, budget_bytes=80_000, max_width=int(thumb_width))
                link = f'{_e(rel)}/{REPORT_NAME}' if report.is_file() else f'{_e(rel)}/overview.png'
                row["thumb"] = _Html(f'<a href="{link}"><img class=thumb alt="{_e(site["site"])}" src="{uri}"></a>')
            row["n_changes"] = r.get("n_changes")
            row["changed_area_ha"] = r.get("changed_area_ha")
            totals["n_changes"] += int(r.get("n_changes") or 0)
            if r.get("changed_area_m2") is not None:
                have_area = True
                totals["area_m2"] += float(r["changed_area_m2"])
            classes = r.get("by_class") or {}
            for cls, c in classes.items():
                t = by_class.setdefault(cls, {"count": 0, "area_m2": 0.0})
                t["count"] += int(c.get("count") or 0)
                t["area_m2"] += float(c.get("area_m2") or 0.0)
            if classes:
                main = max(classes.items(), key=lambda kv: (kv[1].get("area_m2") or kv[1].get("area_px") or 0))
                row["main_class"] = _class_words(main[0])
            feats = _features(d, "changes.geojson") or []
            props = [f.get("properties") or {} for f in feats]
            where = _where_sentence(_grid_places(props, summary),
                                    [(_num(p.get("area_m2")) or _num(p.get("area_px")) or 0.0) for p in props],
                                    _north_up(summary))
            row["where"] = where.replace("mostly in the ", "").replace(" of the site", "").replace(
                " of the changed area", "")
            s = r.get("structures")
            if isinstance(s, Mapping) and s.get("count") is not None:
                row["structures"] = s["count"]
                have_structures = True
                totals["structures"] += int(s["count"])
            acc = summary.get("accuracy") or {}
            row["f1"] = acc.get("f1")
        elif site["status"] == "failed":
            totals["failed"] += 1
        rows.append(row)
    cols = [c for c in _INDEX_COLUMNS if c[0] != "structures" or have_structures]
    if not any(r.get("f1") is not None for r in rows):
        cols = [c for c in cols if c[0] != "f1"]
    if not any(r.get("error") for r in rows):
        cols = [c for c in cols if c[0] != "error"]
    total_cells = {"site": f"{totals['sites']} sites", "status": f"{totals['finished']} finished, {totals['failed']} failed",
                   "n_changes": f"{totals['n_changes']:,}",
                   "changed_area_ha": f"{totals['area_m2'] / 10_000:,.2f}" if have_area else "",
                   "structures": f"{totals['structures']:,}" if have_structures else ""}
    body = [f"<h1>Batch: {_e(name)}</h1>"]
    lead = (f"<p><b>{totals['sites']} site{'s' if totals['sites'] != 1 else ''}</b>: {totals['finished']} finished, "
            f"{totals['failed']} failed. <b>{totals['n_changes']:,} changed areas</b>"
            + (f", <b>{totals['area_m2'] / 10_000:,.2f} ha</b> in all" if have_area else "")
            + (f"; {totals['structures']:,} structures counted" if have_structures else "") + ".</p>")
    if by_class:
        lead += "<p>By kind of change: " + "; ".join(
            f"{_e(_class_words(k))}: {int(v['count']):,} ({v['area_m2'] / 10_000:,.2f} ha)"
            for k, v in sorted(by_class.items(), key=lambda kv: -kv[1]["area_m2"])) + ".</p>"
    body.append(f'<div class=lead id="totals">{lead}</div>')
    body.append(_table("sites", cols, rows, total=total_cells))
    extras = [f for f in ("batch.csv", "batch_changes.geojson") if (batch / f).is_file()]
    if extras:
        body.append("<p class=note>Click a column header to sort. Every site's polygons and the table: "
                    + " · ".join(f'<a href="{f}">{f}</a>' for f in extras) + ".</p>")
    body.append(f"<p class=note>Written by changedet.report on "
                f"{_dt.datetime.now(_dt.timezone.utc).isoformat(timespec='seconds')}.</p>")
    dest = batch / INDEX_NAME
    with _io.atomic_path(dest) as tmp:
        tmp.write_text(_page(f"changedet batch: {name}", "\n".join(body)), encoding="utf-8")
    return dest
