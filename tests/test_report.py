"""report.html and the batch index, rendered in a real headless Chromium with no network.

Chromium reaches the network only through a proxy on 127.0.0.1 that records every request
and answers none: a page that tried to fetch anything fails its test (a canary page shows
the check catches it).  The browser tests need Chromium (Debian package ``chromium``; ``.ci/run`` installs it).
Without it they skip, saying so, unless ``CHANGEDET_REQUIRE_BROWSER=1`` (set by
``.ci/run`` once it has installed the browser): then a missing browser fails.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine
from scipy import ndimage

from changedet import data
from changedet.batch import run_batch
from changedet.errors import InvalidParameterError
from changedet.pipeline import detect_changes
from changedet.report import write_index, write_report

FIVE_MB = 5 * 1024 * 1024


# --------------------------------------------------------------------------- the browser
def _find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


#: Chromium's own background requests (clock, component updates, sign-in), made whatever the page
#: holds; any other request the browser makes while a page is open comes from the page.
BROWSER_OWN_HOSTS = frozenset({
    "clients2.google.com", "update.googleapis.com", "accounts.google.com", "redirector.gvt1.com",
    "edgedl.me.gvt1.com", "optimizationguide-pa.googleapis.com", "safebrowsing.googleapis.com",
    "content-autofill.googleapis.com", "android.clients.google.com",
    # Debian's Chromium 150 connects to its default search engine at start-up, a blank page too
    # (five CONNECTs; one with --disable-features=PreconnectToSearch, which _browser passes)
    "www.google.com",
})


class _Proxy:
    """The browser's only way out: a proxy on 127.0.0.1 that records each request and answers none,
    so the network is closed to the page and every attempt to reach it is seen."""

    def __init__(self) -> None:
        self._srv = socket.socket()
        self._srv.bind(("127.0.0.1", 0))
        self._srv.listen(32)
        self.port = self._srv.getsockname()[1]
        self.requests: list[str] = []
        self.idle_connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._srv.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    data = conn.recv(4096)
                except OSError:
                    data = b""
                if not data:
                    # Chromium opens spare connections to its proxy ahead of need (preconnect) and
                    # closes them unused when it exits: no request was made on them.
                    self.idle_connections += 1
                    continue
                first = data.split(b"\r\n", 1)[0].decode("latin-1")
                self.requests.append(first.split(" ")[1] if first.count(" ") >= 2 else first)

    def page_requests(self) -> list[str]:
        """The requests not from the browser's own background services."""
        def host(target: str) -> str:
            t = re.sub(r"^[a-z]+://", "", target)
            return t.split("/", 1)[0].split(":", 1)[0].lower()

        return [r for r in self.requests if host(r) not in BROWSER_OWN_HOSTS]


@pytest.fixture(scope="session")
def chromium() -> str:
    exe = _find_chromium()
    if exe is None:
        if os.environ.get("CHANGEDET_REQUIRE_BROWSER") == "1":
            pytest.fail("CHANGEDET_REQUIRE_BROWSER=1 but no chromium on PATH; apt-get install -y chromium")
        pytest.skip("headless Chromium is not installed (apt-get install -y chromium; .ci/run installs it)")
    return exe


def _browser(exe: str, profile: Path, *args: str, allow_requests: bool = False) -> subprocess.CompletedProcess[str]:
    """Chromium headless, every request sent to a recording proxy that answers none; the page made none."""
    proxy = _Proxy()
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", f"--proxy-server=127.0.0.1:{proxy.port}",
           "--proxy-bypass-list=<-loopback>", "--no-first-run", "--disable-extensions",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-default-apps", "--disable-features=PreconnectToSearch", "--hide-scrollbars",
           f"--user-data-dir={profile}", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180,
                          env={**os.environ, "HOME": str(profile)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    time.sleep(0.2)  # the last connection's request line
    proc.page_requests = proxy.page_requests()  # type: ignore[attr-defined]
    if not allow_requests:
        assert proc.page_requests == [], f"the page tried to reach the network: {proc.page_requests}"  # type: ignore[attr-defined]
    return proc


def test_the_network_check_sees_a_page_that_fetches(chromium: str, tmp_path: Path) -> None:
    """The check above can fail: a page with a remote image and style sheet is caught."""
    page = tmp_path / "leaky.html"
    page.write_text('<html><body><table><tr><td>x</td></tr></table><img src="http://example.com/x.png">'
                    '<link rel=stylesheet href="https://cdn.example.org/a.css"></body></html>')
    proc = _browser(chromium, tmp_path / "profile", "--virtual-time-budget=3000", "--dump-dom", page.as_uri(),
                    allow_requests=True)
    assert "http://example.com/x.png" in proc.page_requests  # type: ignore[attr-defined]
    assert "cdn.example.org:443" in proc.page_requests  # type: ignore[attr-defined]


def dump_dom(exe: str, page: Path, tmp_path: Path, *, fragment: str = "") -> str:
    """The DOM after the page's scripts ran (``--dump-dom``)."""
    url = page.resolve().as_uri() + (f"#{fragment}" if fragment else "")
    proc = _browser(exe, tmp_path / "profile-dom", "--run-all-compositor-stages-before-draw",
                    "--virtual-time-budget=3000", "--dump-dom", url)
    assert "<table" in proc.stdout, proc.stdout[:500]
    return proc.stdout


def screenshot(exe: str, page: Path, dest: Path, *, size: str = "1280,2400") -> np.ndarray:
    proc = _browser(exe, dest.parent / "profile-shot", f"--window-size={size}", f"--screenshot={dest}",
                    "--virtual-time-budget=3000", page.resolve().as_uri())
    assert dest.is_file(), proc.stderr[-2000:]
    from PIL import Image

    with Image.open(dest) as im:
        return np.asarray(im.convert("RGB"))


class _Tables(HTMLParser):
    """Rows of every table in a page: per table id, a list of rows, each a list of (text, data-v)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, dict[str, Any]] = {}
        self._stack: list[dict[str, Any]] = []
        self._cell: list[Any] | None = None
        self._row: list[Any] | None = None
        self._section = ""
        self.resources: list[tuple[str, str, str]] = []  # (tag, attribute, value)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        for key in ("src", "href", "srcset", "poster", "data", "action"):
            if a.get(key) is not None:
                self.resources.append((tag, key, a[key] or ""))
        if tag == "table":
            t = {"id": a.get("id") or f"table{len(self.tables)}", "head": [], "rows": [], "attrs": a}
            self.tables[t["id"]] = t
            self._stack.append(t)
        elif tag in ("thead", "tbody", "tfoot"):
            self._section = tag
        elif tag == "tr" and self._stack:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = ["", a.get("data-v"), a.get("data-key")]

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append((self._cell[0].strip(), self._cell[1], self._cell[2]))
            self._cell = None
        elif tag == "tr" and self._row is not None and self._stack:
            t = self._stack[-1]
            if self._section == "thead":
                t["head"] = [c[2] or c[0] for c in self._row]
            elif self._section == "tbody":
                t["rows"].append(self._row)
            self._row = None
        elif tag == "table" and self._stack:
            self._stack.pop()

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell[0] += data


def parse(page_html: str) -> _Tables:
    p = _Tables()
    p.feed(page_html)
    return p


def rows_as_dicts(table: dict[str, Any]) -> list[dict[str, tuple[str, str | None]]]:
    return [{k: (c[0], c[1]) for k, c in zip(table["head"], row)} for row in table["rows"]]


def assert_offline(page_html: str, dom: _Tables) -> None:
    """Nothing in the page can make a request to the network when it is opened."""
    for tag, attr, value in dom.resources:
        v = value.strip().lower()
        if tag == "a" and attr == "href":
            assert not re.match(r"^[a-z][a-z0-9+.-]*:", v) or v.startswith(("data:", "#")), (tag, attr, value[:80])
            continue
        assert v.startswith("data:"), f"<{tag} {attr}=...> loads {value[:80]!r}"
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page_html, flags=re.I)
    assert not re.search(r"url\(\s*['\"]?\s*(https?:)?//", page_html, flags=re.I)
    assert "@import" not in page_html and "@font-face" not in page_html
    assert "default-src 'none'" in page_html  # the page's own Content-Security-Policy forbids any fetch


# --------------------------------------------------------------------------- the demo's reports
@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``changedet demo`` as a user runs it (a real subprocess): detect on both bundled pairs."""
    out = tmp_path_factory.mktemp("demo") / "demo_output"
    exe = Path(sys.executable).with_name("changedet")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "changedet.cli"]
    proc = subprocess.run([*cmd, "demo", "--out", str(out)], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "MPLBACKEND": "Agg"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


SAMPLES = ("s2_like", "hires_rgb")


@pytest.mark.parametrize("sample", SAMPLES)
def test_demo_report_is_written_whole_small_and_self_contained(demo: Path, sample: str) -> None:
    folder = demo / sample
    page = folder / "report.html"
    assert page.is_file()
    assert page.stat().st_size < FIVE_MB, f"{page.stat().st_size / 1e6:.2f} MB"
    text = page.read_text(encoding="utf-8")
    # the overview figure, embedded: as its PNG, or within the page's budget as a JPEG
    assert re.search(r'<img id="overview" alt="overview figure" src="data:image/(png|jpeg);base64,', text)
    assert not list(folder.glob("*.partial*"))
    summary = json.loads((folder / "summary.json").read_text())
    assert "report.html" in summary["outputs"]  # written before summary.json, listed in it
    assert_offline(text, parse(text))


@pytest.mark.parametrize("sample", SAMPLES)
def test_rendered_table_matches_the_polygons(demo: Path, sample: str, chromium: str, tmp_path: Path) -> None:
    folder = demo / sample
    dom_html = dump_dom(chromium, folder / "report.html", tmp_path)
    dom = parse(dom_html)
    assert_offline(dom_html, dom)
    feats = json.loads((folder / "changes.geojson").read_text())["features"]
    assert len(feats) >= 1
    rows = rows_as_dicts(dom.tables["changes"])
    assert len(rows) == len(feats)
    by_id = {int(r["id"][0]): r for r in rows}
    assert set(by_id) == {int(f["properties"]["id"]) for f in feats}
    for f in feats:
        p = f["properties"]
        r = by_id[int(p["id"])]
        assert r["change_class"][0] == p["change_class"]
        # the text a reader sees, and the value the sorter uses
        assert float(r["area_m2"][0].replace(",", "")) == pytest.approx(p["area_m2"], abs=0.5)
        assert float(r["area_m2"][1]) == pytest.approx(p["area_m2"], rel=1e-12)
        assert float(r["area_ha"][0].replace(",", "")) == pytest.approx(p["area_ha"], abs=5e-5)
        assert float(r["centroid_lon"][1]) == pytest.approx(p["centroid_lon"], abs=1e-6)
        assert r["where on the site" if "where on the site" in r else "where"][0]
    summary = json.loads((folder / "summary.json").read_text())
    words = re.sub(r"\s+", " ", re.search(r'id="words">(.*?)</div>', dom_html, flags=re.S).group(1))
    res = summary["results"]
    n = res["n_changes"]
    assert f"{n} changed area{'s' if n != 1 else ''}" in re.sub(r"<[^>]+>", "", words)
    assert f"{res['changed_area_ha']:,.2f} ha" in words
    for cls in res["by_class"]:
        assert cls.replace("_", " ") in words
    assert re.search(r"The change (lies mostly in the|is spread over)", words)
    dates = summary["dates"]  # the bundled pairs carry their acquisition dates in their tags
    assert f"Between {dates['before']} and {dates['after']}, " in words
    # accuracy (the demo passes the truth): the page shows the summary's F1
    acc = rows_as_dicts(dom.tables["accuracy"])[0]
    assert float(acc["F1"][0]) == pytest.approx(summary["accuracy"]["f1"], abs=5e-4)
    # every parameter of summary.json's parameters block is on the page
    for key in summary["parameters"]:
        assert f"<th>{key}</th>" in dom_html
    for side in ("before", "after"):
        assert summary["inputs"][side]["sha256"] in dom_html


@pytest.fixture(scope="module")
def many_areas(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A result of ten changed areas of several kinds: the 10 m sample pair cut at the method's own
    threshold value (6 sigma) given as a number, so without the hysteresis that joins them."""
    out = tmp_path_factory.mktemp("many") / "s2_like"
    folder = data.sample_path("s2_like")
    r = detect_changes(folder / "before.tif", folder / "after.tif", threshold=6.0, out=out,
                       truth=data.load_sample("s2_like").truth, tiled=False, progress=False)
    assert r.n_changes == 10 and len(r.summary["results"]["by_class"]) > 1
    return out


def test_sort_by_url_fragment_in_the_browser(many_areas: Path, chromium: str, tmp_path: Path) -> None:
    page = many_areas / "report.html"
    feats = json.loads((page.parent / "changes.geojson").read_text())["features"]
    areas = {int(f["properties"]["id"]): f["properties"]["area_m2"] for f in feats}
    unsorted = [int(r["id"][0]) for r in rows_as_dicts(parse(dump_dom(chromium, page, tmp_path)).tables["changes"])]
    asc = parse(dump_dom(chromium, page, tmp_path, fragment="sort=changes:area_m2:asc"))
    assert asc.tables["changes"]["attrs"].get("data-sorted") == "area_m2:asc"
    ids = [int(r["id"][0]) for r in rows_as_dicts(asc.tables["changes"])]
    assert [areas[i] for i in ids] == sorted(areas.values())
    assert ids != unsorted  # the page opens largest first: the sort moved rows
    desc = parse(dump_dom(chromium, page, tmp_path, fragment="sort=changes:change_class:desc"))
    classes = [r["change_class"][0] for r in rows_as_dicts(desc.tables["changes"])]
    assert classes == sorted(classes, reverse=True) and len(set(classes)) > 1
    # a reader's clicks on a header: the first sorts ascending, the second descending
    clicked = tmp_path / "clicked.html"
    click = "document.querySelector('#changes th[data-key=mean_score]').click();"
    clicked.write_text(page.read_text().replace("</body>", f"<script>{click}{click}</script></body>"))
    dom = parse(dump_dom(chromium, clicked, tmp_path))
    assert dom.tables["changes"]["attrs"].get("data-sorted") == "mean_score:desc"
    scores = [float(r["mean_score"][1]) for r in rows_as_dicts(dom.tables["changes"])]
    assert scores == sorted(scores, reverse=True) and len(set(scores)) > 1


@pytest.mark.parametrize("sample", SAMPLES)
def test_screenshot_is_not_blank(demo: Path, sample: str, chromium: str, tmp_path: Path) -> None:
    shot = tmp_path / f"{sample}.png"
    px = screenshot(chromium, demo / sample / "report.html", shot)
    assert px.shape[0] >= 2000 and px.shape[1] >= 1200
    assert px.std() > 20  # text, tables and the figure, not a white page
    # the embedded figure rendered (no broken-image box): a colourful band across the page
    band = px[300:900].reshape(-1, 3).astype(float)
    assert band.std(axis=0).mean() > 25
    assert len(np.unique(band.astype(np.uint8) // 16, axis=0)) > 200


# --------------------------------------------------------------------------- structures, inputs, words
@pytest.fixture()
def s2_copy(many_areas: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "s2"
    shutil.copytree(many_areas, folder)
    (folder / "report.html").unlink()
    return folder


def _patch_summary(folder: Path, fn: Any) -> dict[str, Any]:
    s = json.loads((folder / "summary.json").read_text())
    fn(s)
    (folder / "summary.json").write_text(json.dumps(s))
    return s


def test_structures_table_when_the_result_has_them(s2_copy: Path, chromium: str, tmp_path: Path) -> None:
    feats = json.loads((s2_copy / "changes.geojson").read_text())["features"]
    host = feats[0]["properties"]
    structures = [
        {"type": "Feature", "geometry": None,
         "properties": {"id": i, "change_id": host["id"], "area_m2": a, "length_m": 60.0, "width_m": a / 60.0,
                        "orientation_deg": 12.5 + i}}
        for i, a in ((1, 900.0), (2, 850.0), (3, 1200.0))
    ]
    (s2_copy / "structures.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": structures}))
    _patch_summary(s2_copy, lambda s: s["results"].__setitem__(
        "structures", {"count": 3, "median_footprint_m2": 900.0, "method": "distance transform + watershed"}))
    page = write_report(s2_copy)
    dom_html = dump_dom(chromium, page, tmp_path)
    rows = rows_as_dicts(parse(dom_html).tables["structures"])
    assert sorted(int(r["id"][0]) for r in rows) == [1, 2, 3]
    assert {int(r["id"][0]): float(r["area_m2"][1]) for r in rows} == {1: 900.0, 2: 850.0, 3: 1200.0}
    assert {int(r["change_id"][0]) for r in rows} == {host["id"]}
    assert "3 individual structures" in dom_html and "median footprint 900 m²" in dom_html
    # without structures.geojson the section shows the summary's figures but no table
    (s2_copy / "structures.geojson").unlink()
    text = write_report(s2_copy).read_text()
    assert 'id="structures"' not in text and "distance transform + watershed" in text


def test_no_structures_section_without_results_structures(s2_copy: Path) -> None:
    _patch_summary(s2_copy, lambda s: s["results"].pop("structures", None))  # a result from before structures
    text = write_report(s2_copy).read_text()
    assert "<h2>Structures</h2>" not in text


def test_structures_not_counted_says_why(s2_copy: Path) -> None:
    _patch_summary(s2_copy, lambda s: s["results"].__setitem__(
        "structures", {"count": None, "reason": "pixels of 10 m are coarser than 2 m"}))
    text = write_report(s2_copy).read_text()
    assert "Structures not counted: pixels of 10 m are coarser than 2 m." in text


def test_input_hashes_computed_when_the_summary_lacks_them(s2_copy: Path) -> None:
    s = _patch_summary(s2_copy, lambda s: [s["inputs"][k].__setitem__("sha256", None) for k in ("before", "after")])
    text = write_report(s2_copy).read_text()
    inputs = text.split("<h2>Inputs</h2>")[1].split("<h2>")[0]
    for side in ("before", "after"):
        digest = hashlib.sha256(Path(s["inputs"][side]["path"]).read_bytes()).hexdigest()
        assert digest in inputs
    assert "computed by the report writer" in text and "not necessarily the one the run read" in text
    text = write_report(s2_copy, hash_cap_mb=0.001).read_text()
    inputs = text.split("<h2>Inputs</h2>")[1].split("<h2>")[0]
    assert "above the report writer&#x27;s cap of 0.001 MB" in inputs
    assert hashlib.sha256(Path(s["inputs"]["before"]["path"]).read_bytes()).hexdigest() not in inputs


def test_dates_no_truth_and_max_rows(s2_copy: Path) -> None:
    def patch(s: dict[str, Any]) -> None:
        s["dates"] = {"before": "2024-06-15", "after": "2025-06-20", "source": {"before": "item.json", "after": "name"}}
        s["accuracy"] = None

    _patch_summary(s2_copy, patch)
    text = write_report(s2_copy, max_rows=3).read_text()
    assert "Between 2024-06-15 and 2025-06-20, " in text
    assert "2024-06-15 (from item.json)</td>" in text and "2025-06-20 (from name)</td>" in text
    assert "No ground truth was given" in text and 'id="accuracy"' not in text
    rows = rows_as_dicts(parse(text).tables["changes"])
    assert len(rows) == 3 and "The 3 largest of 10 areas" in text
    feats = json.loads((s2_copy / "changes.geojson").read_text())["features"]
    top3 = sorted((f["properties"]["area_px"] for f in feats), reverse=True)[:3]
    assert sorted((int(r["area_px"][1].split(".")[0]) for r in rows), reverse=True) == top3


def _grid_summary(*, crs: str | None, transform: list[float], shape: list[int]) -> dict[str, Any]:
    return {"results": {"n_changes": 0, "by_class": {}}, "parameters": {"method": "cva"},
            "grid": {"crs": crs, "transform": transform, "shape": shape, "pixel_size_m": 10.0 if crs else None}}


@pytest.mark.parametrize(("row", "col", "expected"), [
    (20, 80, "mostly in the north-east quarter of the site (100% of the changed area)"),
    (80, 20, "mostly in the south-west quarter of the site (100% of the changed area)"),
])
def test_where_words_from_centroids_on_a_utm_grid(tmp_path: Path, row: int, col: int, expected: str) -> None:
    from pyproj import Transformer

    tr = [10.0, 0.0, 500000.0, 0.0, -10.0, 6190000.0]
    summary = _grid_summary(crs="EPSG:32639", transform=tr, shape=[100, 100])
    to_ll = Transformer.from_crs("EPSG:32639", "EPSG:4326", always_xy=True)
    props = []
    for k, (dr, dc, area) in enumerate(((0, 0, 5000.0), (5, -3, 800.0), (-4, 6, 300.0)), start=1):
        lon, lat = to_ll.transform(500000 + (col + dc + 0.5) * 10, 6190000 - (row + dr + 0.5) * 10)
        props.append({"id": k, "area_m2": area, "area_ha": area / 1e4, "area_px": int(area / 100),
                      "centroid_lon": lon, "centroid_lat": lat, "change_class": "new_construction"})
    summary["results"].update(n_changes=3, changed_area_m2=6100.0, changed_area_ha=0.61, changed_area_acres=1.5)
    text = write_report(summary, tmp_path, properties=props).read_text()
    assert expected in text
    quarter = expected.split("the ")[1].split(" quarter")[0]
    assert f"in the {quarter} of the site" in text  # the largest area's place


def test_where_words_on_a_pixel_grid_and_spread(tmp_path: Path) -> None:
    summary = _grid_summary(crs=None, transform=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0], shape=[200, 300])
    props = [{"id": 1, "area_px": 500, "centroid_x": 250.0, "centroid_y": 30.0, "change_class": "other"}]
    summary["results"].update(n_changes=1, changed_pixels=500)
    text = write_report(summary, tmp_path, properties=props).read_text()
    assert "mostly in the top-right quarter of the site" in text and "north" not in text
    props = [{"id": i, "area_px": 100, "centroid_x": x, "centroid_y": y, "change_class": "other"}
             for i, (x, y) in enumerate(((20, 20), (280, 20), (20, 180), (280, 180)), start=1)]
    text = write_report(summary, tmp_path, properties=props).read_text()
    assert "spread over the site (by quarter:" in text
    # one large area: its centroid is top left, its extent the whole site -> not "mostly top-left"
    props = [{"id": 1, "area_px": 50000, "centroid_x": 140.0, "centroid_y": 90.0, "bbox": [0, 0, 300, 200],
              "change_class": "other"}]
    text = write_report(summary, tmp_path, properties=props).read_text()
    assert "spread over the site (by quarter: top-left 25%" in text
    props[0]["bbox"] = [150, 0, 300, 100]
    text = write_report(summary, tmp_path, properties=props).read_text()
    assert "mostly in the top-right quarter of the site (100% of the changed area)" in text


def test_bad_inputs_are_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(InvalidParameterError, match=r"summary.json.* does not exist.*run changedet detect"):
        write_report(tmp_path)
    with pytest.raises(InvalidParameterError, match="max_rows must be an integer >= 1, got 0"):
        write_report(tmp_path, max_rows=0)
    with pytest.raises(InvalidParameterError, match="needs folder="):
        write_report({"results": {}})
    (tmp_path / "summary.json").write_text("{not json")
    with pytest.raises(Exception, match=r"cannot be read as JSON"):
        write_report(tmp_path)
    with pytest.raises(InvalidParameterError, match="is not a folder"):
        write_index(tmp_path / "missing")


# --------------------------------------------------------------------------- the windowed path
def test_windowed_detect_writes_a_report(tmp_path: Path) -> None:
    from changedet.pipeline import detect_changes

    b, a = _pair(tmp_path / "in", 3)
    res = detect_changes(b, a, out=tmp_path / "w", tiled=True, window_px=64, workers=1, progress=False)
    text = (tmp_path / "w" / "report.html").read_text()
    rows = rows_as_dicts(parse(text).tables["changes"])
    assert len(rows) == res.n_changes >= 1
    assert "report.html" in res.summary["outputs"]


# --------------------------------------------------------------------------- the batch index
def _write(path: Path, data: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                       dtype="uint16", crs="EPSG:32639", transform=Affine(10, 0, 500000, 0, -10, 6190000)) as dst:
        dst.write(data.astype("uint16"))
        for i, n in enumerate(("B02", "B03", "B04", "B08"), start=1):
            dst.set_band_description(i, n)


def _pair(folder: Path, seed: int) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    base = ndimage.gaussian_filter(rng.normal(size=(4, 128, 128)), (0, 3, 3))
    img = (800 + 400 * base / base.std()).clip(1, None)
    after = img.copy()
    after[:, 10 + 5 * seed:24 + 5 * seed, 80:110] += 2500  # a roof in the north-east
    after[:, 100:106, 10:18] += 2500
    _write(folder / "before.tif", img)
    _write(folder / "after.tif", after)
    return folder / "before.tif", folder / "after.tif"


def test_batch_index_rows_thumbnails_links_and_totals(tmp_path: Path, chromium: str) -> None:
    pairs = [("north", *_pair(tmp_path / "in" / "north", 0)), ("east", *_pair(tmp_path / "in" / "east", 1)),
             ("broken", tmp_path / "in" / "missing_b.tif", tmp_path / "in" / "missing_a.tif")]
    out = tmp_path / "batch"
    res = run_batch([(s, str(b), str(a)) for s, b, a in pairs], out, progress=False)
    assert [o.status for o in res.outcomes] == ["done", "done", "failed"]
    index = out / "index.html"
    assert index.is_file()
    dom_html = dump_dom(chromium, index, tmp_path)
    dom = parse(dom_html)
    assert_offline(dom_html, dom)
    rows = rows_as_dicts(dom.tables["sites"])
    assert [r["site"][0] for r in rows] == ["north", "east", "broken"]
    for r, o in zip(rows, res.outcomes):
        assert r["status"][0] == o.status
        if o.status == "done":
            assert int(r["n_changes"][1].split(".")[0]) == o.n_changes
    links = [v for tag, attr, v in dom.resources if tag == "a" and attr == "href" and v.endswith("report.html")]
    assert sorted(set(links)) == ["east/report.html", "north/report.html"]
    assert all((out / link).is_file() for link in links)
    thumbs = [v for tag, attr, v in dom.resources if tag == "img"]
    assert len(thumbs) == 2 and all(re.match(r"data:image/(png|jpeg);base64,", t) for t in thumbs)
    total = sum(o.n_changes for o in res.outcomes if o.n_changes)
    assert f"{total} changed areas" in re.sub(r"<[^>]+>", "", dom_html)
    assert "2 finished, 1 failed" in dom_html
    assert "does not exist" in rows[2]["error"][0]  # the failed pair's own message
    px = screenshot(chromium, index, tmp_path / "index.png", size="1280,900")
    assert px.std() > 20
    # a finished site without a report (a result from before reports) gets one when the index is rewritten
    (out / "north" / "report.html").unlink()
    write_index(out)
    assert (out / "north" / "report.html").is_file()


# --------------------------------------------------------------------------- images without georeferencing
def test_png_pair_report_in_pixels(png_pair: Any, tmp_path: Path, chromium: str) -> None:
    from changedet.pipeline import detect_changes

    out = tmp_path / "png"
    res = detect_changes(png_pair.before, png_pair.after, out=out)
    assert res.n_changes >= 1
    dom_html = dump_dom(chromium, out / "report.html", tmp_path)
    rows = rows_as_dicts(parse(dom_html).tables["changes"])
    feats = json.loads((out / "changes.geojson").read_text())["features"]
    assert {int(r["id"][0]): int(r["area_px"][0].replace(",", "")) for r in rows} == \
        {f["properties"]["id"]: f["properties"]["area_px"] for f in feats}
    assert "area_m2" not in rows[0] and "centroid_x" in rows[0]  # areas in pixels, grid coordinates
    words = re.search(r'id="words">(.*?)</div>', dom_html, flags=re.S).group(1)
    assert "no georeferencing: areas in pixels" in words
    assert "north" not in words and "east" not in words  # a pixel grid has no compass: top/left words
    # the planted block sits at rows 40-48, columns 60-72 of 96 x 128: the middle of the image
    assert re.search(r"covering <b>[\d,]+ pixels</b> \([\d.]+% of the valid site area\)\.", words), words
    assert "The change lies mostly in the middle of the site" in words, words
    assert re.search(r"is [\d,]+ px of new construction, in the middle of the site\.", words), words


def test_index_without_batch_csv_counts_structures(demo: Path, tmp_path: Path) -> None:
    """A folder of result folders (no batch.csv): every one with a summary is a row; structures are totalled."""
    root = tmp_path / "sites"
    for name, count in (("a", 5), ("b", 7), ("c", None)):
        shutil.copytree(demo / "s2_like", root / name)
        if count is not None:
            _patch_summary(root / name, lambda s, n=count: s["results"].__setitem__(
                "structures", {"count": n, "median_footprint_m2": 900.0}))
        else:
            _patch_summary(root / name, lambda s: s["results"].pop("structures", None))
    (root / "not_a_result").mkdir()
    text = write_index(root, title="three sites").read_text()
    rows = rows_as_dicts(parse(text).tables["sites"])
    assert [r["site"][0] for r in rows] == ["a", "b", "c"]
    assert [r["structures"][0] for r in rows] == ["5", "7", ""]
    assert "12 structures counted" in text and "<h1>Batch: three sites</h1>" in text
    n = json.loads((demo / "s2_like" / "summary.json").read_text())["results"]["n_changes"]
    assert f"{3 * n} changed areas" in re.sub(r"<[^>]+>", "", text)
