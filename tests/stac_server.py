"""A real STAC API and COG object store on 127.0.0.1, for testing changedet.sources offline.

:class:`StacServer` serves, from a ``ThreadingHTTPServer`` on an ephemeral port:

* a STAC API: landing page (with item-search and query conformance), ``/conformance``,
  ``/collections``, ``/collections/{id}``, ``/search`` (GET and POST; ``collections``,
  ``bbox``, ``intersects`` (by its bbox), ``datetime``, ``query`` with
  ``lt/lte/gt/gte/eq``, ``limit`` and paging through a ``next`` link);
* asset files under ``/assets/...`` as object stores do: ``Accept-Ranges``, ``HEAD``,
  ``206 Partial Content`` with ``Content-Range`` (and ``multipart/byteranges`` for
  several ranges), ``416`` outside the file;
* injected faults per asset path (``"404"``, ``"500"``, ``"reset"``: the connection
  drops a quarter of the way through the body), once each or for every request;
* a log of every request, so tests can count them.

:func:`make_s2_item` and :func:`make_landsat_item` write small COG band files
(Sentinel-2: 10 m blue/green/red/nir, 20 m swir16/swir22/scl; Landsat: 30 m) and
return the STAC item, with asset hrefs relative to the server (``{base}`` is
replaced by the server's URL when the item is served).
"""

from __future__ import annotations

from collections import Counter, deque
import json
import math
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlencode, urlparse

import numpy as np
import rasterio
from affine import Affine
from rasterio.warp import transform_geom

__all__ = ["StacServer", "make_s2_item", "make_landsat_item", "CONFORMANCE"]

CONFORMANCE = [
    "https://api.stacspec.org/v1.0.0/core",
    "https://api.stacspec.org/v1.0.0/collections",
    "https://api.stacspec.org/v1.0.0/ogcapi-features",
    "https://api.stacspec.org/v1.0.0/item-search",
    "https://api.stacspec.org/v1.0.0/item-search#query",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
]


def _collection(cid: str, base: str) -> dict[str, Any]:
    return {
        "type": "Collection",
        "stac_version": "1.0.0",
        "id": cid,
        "description": f"test collection {cid}",
        "license": "proprietary",
        "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]}, "temporal": {"interval": [[None, None]]}},
        "links": [
            {"rel": "self", "href": f"{base}/collections/{cid}", "type": "application/json"},
            {"rel": "root", "href": f"{base}/", "type": "application/json"},
            {"rel": "items", "href": f"{base}/collections/{cid}/items", "type": "application/geo+json"},
        ],
    }


def _fill_base(obj: Any, base: str) -> Any:
    return json.loads(json.dumps(obj).replace("{base}", base))


def _bbox_intersects(a: list[float], b: list[float]) -> bool:
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


def _parse_interval(text: str) -> tuple[str, str]:
    if "/" in text:
        start, end = text.split("/", 1)
    else:
        start = end = text
    start = "0000" if start in ("", "..") else start
    end = "9999" if end in ("", "..") else end
    return start.replace("+00:00", "Z"), end.replace("+00:00", "Z")


def _match_query(props: dict[str, Any], query: dict[str, Any]) -> bool:
    ops = {
        "lt": lambda a, b: a < b,
        "lte": lambda a, b: a <= b,
        "gt": lambda a, b: a > b,
        "gte": lambda a, b: a >= b,
        "eq": lambda a, b: a == b,
        "neq": lambda a, b: a != b,
    }
    for name, tests in query.items():
        value = props.get(name)
        for op, ref in tests.items():
            if value is None or op not in ops or not ops[op](value, ref):
                return False
    return True


class StacServer:
    """A STAC API + object store on 127.0.0.1 (port 0), started with :meth:`start`."""

    def __init__(self, items: list[dict[str, Any]] | None = None, *, files: dict[str, Path] | None = None,
                 collections: tuple[str, ...] = ("sentinel-2-l2a", "landsat-c2-l2"), page_size: int = 100) -> None:
        self.items: list[dict[str, Any]] = list(items or [])
        self.files: dict[str, Path] = dict(files or {})
        self.collections = collections
        self.page_size = page_size
        self.log: list[tuple[str, str, str]] = []
        self.bytes_sent: Counter[str] = Counter()
        self.faults: dict[str, deque[str]] = {}
        self.always: dict[str, str] = {}
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle
    def start(self) -> "StacServer":
        server = self

        class Handler(_Handler):
            owner = server

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> "StacServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._httpd is not None, "start() the server first"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    # -- content
    def add(self, item: dict[str, Any], files: dict[str, Path]) -> None:
        self.items.append(item)
        self.files.update(files)

    def fault(self, path: str, mode: str, *, times: int | None = 1) -> None:
        """Make requests to ``path`` fail with ``mode`` (``404``, ``500``, ``reset``); ``times=None``: always."""
        with self._lock:
            if times is None:
                self.always[path] = mode
            else:
                self.faults.setdefault(path, deque()).extend([mode] * times)

    def requests_to(self, prefix: str = "/assets/") -> list[tuple[str, str, str]]:
        with self._lock:
            return [r for r in self.log if r[1].startswith(prefix)]

    def _take_fault(self, path: str) -> str | None:
        with self._lock:
            if path in self.always:
                return self.always[path]
            q = self.faults.get(path)
            return q.popleft() if q else None

    # -- STAC
    def landing(self) -> dict[str, Any]:
        base = self.url
        return {
            "type": "Catalog",
            "stac_version": "1.0.0",
            "id": "changedet-test",
            "description": "changedet test STAC API",
            "conformsTo": CONFORMANCE,
            "links": [
                {"rel": "self", "href": f"{base}/", "type": "application/json"},
                {"rel": "root", "href": f"{base}/", "type": "application/json"},
                {"rel": "conformance", "href": f"{base}/conformance", "type": "application/json"},
                {"rel": "data", "href": f"{base}/collections", "type": "application/json"},
                {"rel": "search", "href": f"{base}/search", "type": "application/geo+json", "method": "GET"},
                {"rel": "search", "href": f"{base}/search", "type": "application/geo+json", "method": "POST"},
            ],
        }

    def search(self, params: dict[str, Any], method: str) -> dict[str, Any]:
        cols = params.get("collections")
        if isinstance(cols, str):
            cols = cols.split(",")
        bbox = params.get("bbox")
        if isinstance(bbox, str):
            bbox = [float(v) for v in bbox.split(",")]
        if bbox is None and params.get("intersects"):
            geom = params["intersects"]
            if isinstance(geom, str):
                geom = json.loads(geom)
            from shapely.geometry import shape

            bbox = list(shape(geom).bounds)
        query = params.get("query") or {}
        if isinstance(query, str):
            query = json.loads(query)
        start, end = _parse_interval(params["datetime"]) if params.get("datetime") else ("0000", "9999")
        limit = int(params.get("limit") or self.page_size)
        limit = min(limit, self.page_size)
        token = int(params.get("token") or 0)
        hits = []
        for it in self.items:
            if cols and it.get("collection") not in cols:
                continue
            if bbox and not _bbox_intersects(bbox, it["bbox"]):
                continue
            when = it["properties"]["datetime"]
            if not (start <= when <= end):
                continue
            if query and not _match_query(it["properties"], query):
                continue
            hits.append(it)
        page = hits[token: token + limit]
        links: list[dict[str, Any]] = [{"rel": "root", "href": f"{self.url}/", "type": "application/json"}]
        if token + limit < len(hits):
            if method == "GET":
                q = {k: (json.dumps(v) if isinstance(v, dict) else ",".join(map(str, v)) if isinstance(v, list) else v)
                     for k, v in params.items() if k != "token"}
                q["token"] = str(token + limit)
                links.append({"rel": "next", "href": f"{self.url}/search?{urlencode(q)}", "method": "GET",
                              "type": "application/geo+json"})
            else:
                links.append({"rel": "next", "href": f"{self.url}/search", "method": "POST", "merge": True,
                              "body": {"token": token + limit}, "type": "application/geo+json"})
        return {
            "type": "FeatureCollection",
            "features": [_fill_base(it, self.url) for it in page],
            "links": links,
            "numberMatched": len(hits),
            "numberReturned": len(page),
        }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    owner: StacServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence the default stderr log
        pass

    def _record(self) -> str:
        path = urlparse(self.path).path
        with self.owner._lock:
            self.owner.log.append((self.command, path, self.headers.get("Range", "")))
        return path

    def _json(self, obj: Any, status: int = 200) -> None:
        body = json.dumps(obj).encode()
        self.send_response(status)
        ctype = "application/geo+json" if isinstance(obj, dict) and obj.get("type") in ("Feature", "FeatureCollection") else "application/json"
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status: int, text: str = "") -> None:
        body = (text or f"error {status}").encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self) -> None:  # noqa: N802 - http.server API
        self.do_GET()

    def do_GET(self) -> None:  # noqa: N802
        path = self._record()
        owner = self.owner
        if path.startswith("/assets/"):
            return self._asset(path)
        if path in ("", "/"):
            return self._json(owner.landing())
        if path == "/conformance":
            return self._json({"conformsTo": CONFORMANCE})
        if path == "/collections":
            return self._json({"collections": [_collection(c, owner.url) for c in owner.collections], "links": []})
        m = re.fullmatch(r"/collections/([^/]+)", path)
        if m:
            if m.group(1) not in owner.collections:
                return self._json({"code": "NotFound", "description": f"collection {m.group(1)} not found"}, 404)
            return self._json(_collection(m.group(1), owner.url))
        if path == "/search":
            qs = {k: v[-1] for k, v in parse_qs(urlparse(self.path).query).items()}
            return self._json(owner.search(qs, "GET"))
        return self._error(404)

    def do_POST(self) -> None:  # noqa: N802
        path = self._record()
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        if path == "/search":
            return self._json(self.owner.search(body, "POST"))
        return self._error(405)

    def _asset(self, path: str) -> None:
        owner = self.owner
        # Faults hit transfers (GET); a HEAD only sees the persistent 404/500 of a missing or broken object.
        fault = owner._take_fault(path) if self.command == "GET" else owner.always.get(path)
        if fault == "reset" and self.command == "HEAD":
            fault = None
        if fault == "404" or path not in owner.files:
            return self._error(404, "NoSuchKey")
        if fault == "500":
            return self._error(500, "InternalError")
        data = owner.files[path].read_bytes()
        size = len(data)
        rng = self.headers.get("Range")
        if not rng:
            return self._send_bytes(200, data, {"Content-Type": "image/tiff"}, fault)
        m = re.fullmatch(r"bytes=(.+)", rng.strip())
        spans = []
        for part in (m.group(1).split(",") if m else []):
            a, _, b = part.strip().partition("-")
            if a == "":
                start, end = max(0, size - int(b)), size - 1
            else:
                start, end = int(a), (int(b) if b else size - 1)
            end = min(end, size - 1)
            if start < size and start <= end:
                spans.append((start, end))
        if not spans:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        if len(spans) == 1:
            start, end = spans[0]
            return self._send_bytes(206, data[start:end + 1],
                                    {"Content-Type": "image/tiff", "Content-Range": f"bytes {start}-{end}/{size}"}, fault)
        boundary = "changedetboundary"
        chunks = []
        for start, end in spans:
            chunks.append(
                f"\r\n--{boundary}\r\nContent-Type: image/tiff\r\nContent-Range: bytes {start}-{end}/{size}\r\n\r\n".encode()
                + data[start:end + 1]
            )
        chunks.append(f"\r\n--{boundary}--\r\n".encode())
        return self._send_bytes(206, b"".join(chunks), {"Content-Type": f"multipart/byteranges; boundary={boundary}"}, fault)

    def _send_bytes(self, status: int, body: bytes, headers: dict[str, str], fault: str | None) -> None:
        self.send_response(status)
        self.send_header("Accept-Ranges", "bytes")
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        if fault == "reset":
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command == "HEAD":
            return
        path = urlparse(self.path).path
        with self.owner._lock:
            self.owner.bytes_sent[path] += len(body) if fault != "reset" else max(1, len(body) // 4)
        if fault == "reset":
            # A quarter of the body, then the connection drops: a transfer broken mid-way.
            self.wfile.write(body[: max(1, len(body) // 4)])
            self.wfile.flush()
            self.close_connection = True
            import socket

            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        self.wfile.write(body)


# --------------------------------------------------------------------------- scenes
def _write_cog(path: Path, data: np.ndarray, transform: Affine, epsg: int, nodata: float | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(
        path, "w", driver="COG", width=data.shape[1], height=data.shape[0], count=1, dtype=data.dtype.name,
        crs=f"EPSG:{epsg}", transform=transform, nodata=nodata, blocksize=128, compress="DEFLATE",
        overviews="NONE",
    ) as dst:
        dst.write(data, 1)


def _pixel_centres(transform: Affine, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.mgrid[0: shape[0], 0: shape[1]]
    x = transform.c + (cols + 0.5) * transform.a
    y = transform.f + (rows + 0.5) * transform.e
    return x, y


def _footprint(epsg: int, left: float, top: float, width_m: float, height_m: float) -> dict[str, Any]:
    ring = [[left, top], [left + width_m, top], [left + width_m, top - height_m], [left, top - height_m], [left, top]]
    return transform_geom(f"EPSG:{epsg}", "EPSG:4326", {"type": "Polygon", "coordinates": [ring]})


def _item(item_id: str, collection: str, when: str, geom: dict[str, Any], props: dict[str, Any],
          assets: dict[str, dict[str, Any]]) -> dict[str, Any]:
    coords = np.array(geom["coordinates"][0])
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": [],
        "id": item_id,
        "collection": collection,
        "geometry": geom,
        "bbox": [float(coords[:, 0].min()), float(coords[:, 1].min()), float(coords[:, 0].max()), float(coords[:, 1].max())],
        "properties": {"datetime": when, **props},
        "assets": assets,
        "links": [
            {"rel": "self", "href": f"{{base}}/collections/{collection}/items/{item_id}", "type": "application/geo+json"},
            {"rel": "collection", "href": f"{{base}}/collections/{collection}", "type": "application/json"},
            {"rel": "root", "href": "{base}/", "type": "application/json"},
        ],
    }


S2_DN = {"blue": 1100, "green": 1300, "red": 1500, "nir": 3100, "swir16": 2300, "swir22": 1800}


def make_s2_item(
    root: Path,
    item_id: str,
    *,
    when: str,
    epsg: int,
    left: float,
    top: float,
    size_m: float = 2400.0,
    cloud_cover: float = 10.0,
    platform: str = "sentinel-2a",
    tile: str = "39UWB",
    scl: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    dn: dict[str, int] | None = None,
    collection: str = "sentinel-2-l2a",
    noise: bool = False,
    props: dict[str, Any] | None = None,
    edit: Callable[[str, np.ndarray], np.ndarray] | None = None,
) -> tuple[dict[str, Any], dict[str, Path]]:
    """A Sentinel-2 L2A-like item: COG bands under ``root`` and the STAC item.

    ``scl(x, y)`` gives the SCL class at 20 m pixel centres (map coordinates in
    ``epsg``); the default is 4 (vegetation) everywhere.  Where SCL is 0 every band
    is 0 (nodata), as in the products.  ``noise=True`` adds noise to every band (a
    different draw per item), so files barely compress and two dates differ a little.
    ``edit(name, array)`` returns the array to write for a band (to plant a change).
    """
    dn = {**S2_DN, **(dn or {})}
    files: dict[str, Path] = {}
    assets: dict[str, dict[str, Any]] = {}
    t20 = Affine(20, 0, left, 0, -20, top)
    n20 = int(round(size_m / 20))
    x20, y20 = _pixel_centres(t20, (n20, n20))
    scl_arr = (scl(x20, y20) if scl is not None else np.full((n20, n20), 4)).astype("uint8")
    nodata20 = scl_arr == 0
    nodata10 = np.repeat(np.repeat(nodata20, 2, axis=0), 2, axis=1)
    for name, res in [("blue", 10), ("green", 10), ("red", 10), ("nir", 10), ("swir16", 20), ("swir22", 20), ("scl", 20)]:
        t = Affine(res, 0, left, 0, -res, top)
        n = int(round(size_m / res))
        if name == "scl":
            arr = scl_arr
            dtype = "uint8"
        else:
            x, _ = _pixel_centres(t, (n, n))
            # A gentle east-west gradient so resampling is visible but predictable.
            arr = (dn[name] + ((x - left) / size_m * 100)).astype("uint16")
            if noise:
                # Seeded by item and band: two dates differ by sensor noise, as real pairs do.
                seed = int.from_bytes(f"{item_id}/{name}".encode()[-8:], "little")
                arr = arr + np.random.default_rng(seed).integers(0, 50, arr.shape).astype("uint16")
            arr[nodata10 if res == 10 else nodata20] = 0
            dtype = "uint16"
        if edit is not None:
            arr = edit(name, arr)
        path = root / item_id / f"{name}.tif"
        _write_cog(path, arr.astype(dtype), t, epsg, 0)
        url_path = f"/assets/{item_id}/{name}.tif"
        files[url_path] = path
        asset: dict[str, Any] = {
            "href": "{base}" + url_path,
            "type": "image/tiff; application=geotiff; profile=cloud-optimized",
            "roles": ["data"],
            "raster:bands": [{"nodata": 0, "data_type": dtype, "spatial_resolution": res}],
        }
        if name != "scl":
            asset["raster:bands"][0].update({"scale": 0.0001, "offset": -0.1})
        assets[name] = asset
    zone, band, square = tile[:2], tile[2], tile[3:]
    props = {
        "platform": platform,
        "constellation": "sentinel-2",
        "eo:cloud_cover": cloud_cover,
        "proj:epsg": epsg,
        "mgrs:utm_zone": int(zone),
        "mgrs:latitude_band": band,
        "mgrs:grid_square": square,
        "grid:code": f"MGRS-{tile}",
        **(props or {}),
    }
    geom = _footprint(epsg, left, top, size_m, size_m)
    return _item(item_id, collection, when, geom, props, assets), files


LANDSAT_DN = {"blue": 9000, "green": 10000, "red": 11000, "nir08": 20000, "swir16": 15000, "swir22": 12000}


def make_landsat_item(
    root: Path,
    item_id: str,
    *,
    when: str,
    epsg: int,
    left: float,
    top: float,
    size_m: float = 2400.0,
    cloud_cover: float = 10.0,
    platform: str = "landsat-9",
    qa: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    noise: bool = False,
    edit: Callable[[str, np.ndarray], np.ndarray] | None = None,
) -> tuple[dict[str, Any], dict[str, Path]]:
    """A Landsat C2 L2-like item at 30 m: SR bands and ``qa_pixel`` (21824 clear, bit 3 cloud).

    ``qa(x, y)`` gives the QA_PIXEL value at pixel centres; where its fill bit is set every
    band is 0.  ``noise=True`` adds noise to every SR band (a different draw per item);
    ``edit(name, array)`` returns the array to write for a band (to plant a change or a cloud).
    """
    files: dict[str, Path] = {}
    assets: dict[str, dict[str, Any]] = {}
    t = Affine(30, 0, left, 0, -30, top)
    n = int(math.ceil(size_m / 30))
    x, y = _pixel_centres(t, (n, n))
    qa_arr = (qa(x, y) if qa is not None else np.full((n, n), 21824)).astype("uint16")
    for name in ["blue", "green", "red", "nir08", "swir16", "swir22", "qa_pixel"]:
        if name == "qa_pixel":
            arr, nodata = qa_arr, 1
        else:
            arr = np.full((n, n), LANDSAT_DN[name], "uint16")
            if noise:
                seed = int.from_bytes(f"{item_id}/{name}".encode()[-8:], "little")
                arr = arr + np.random.default_rng(seed).integers(0, 150, arr.shape).astype("uint16")
            if edit is not None:
                arr = edit(name, arr).astype("uint16")
            arr[(qa_arr & 1) == 1] = 0
            nodata = 0
        path = root / item_id / f"{name}.tif"
        _write_cog(path, arr, t, epsg, nodata)
        url_path = f"/assets/{item_id}/{name}.tif"
        files[url_path] = path
        bands: dict[str, Any] = {"nodata": nodata, "data_type": "uint16"}
        if name != "qa_pixel":
            bands.update({"scale": 2.75e-05, "offset": -0.2})
        assets[name] = {"href": "{base}" + url_path, "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                        "roles": ["data"], "raster:bands": [bands]}
    props = {"platform": platform, "eo:cloud_cover": cloud_cover, "proj:epsg": epsg,
             "landsat:wrs_path": "163", "landsat:wrs_row": "021"}
    geom = _footprint(epsg, left, top, n * 30, n * 30)
    return _item(item_id, "landsat-c2-l2", when, geom, props, assets), files
