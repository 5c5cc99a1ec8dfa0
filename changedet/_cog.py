"""A Cloud-Optimized GeoTIFF written as its tiles arrive: no staging raster, no second pass.

GDAL's COG driver makes a COG only by copying a finished raster, so a raster computed
window by window had to be written whole once (uncompressed staging), then read back,
compressed and written again.  Here each 512 x 512 tile is compressed (ZSTD, off the
GIL) by the thread that completes it, each full-resolution tile gives its share of
every overview on the way (a tile holds whole 2^k x 2^k blocks: NaN-ignoring means for
floating point, nearest for integers), and the compressed tiles wait in a scratch file.  :meth:`StreamingCOG.commit` writes the file GDAL's COG driver
would: the header with GDAL's structural metadata, every IFD before the data, the
overviews' tiles from the smallest up and the full resolution last, each tile with a
4-byte size before it and its last 4 bytes repeated after it (``LAYOUT=COG``).  The
georeferencing tags are those GDAL writes for the grid, taken from a 1 x 1 GeoTIFF GDAL
makes with the same CRS, transform, nodata and band names.

The layout follows https://gdal.org/drivers/raster/cog.html ("Header ghost area",
"Tile data leader and trailer"); the result is read and checked by GDAL in the tests.
"""

from __future__ import annotations

import contextlib
import os
import struct
import tempfile
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import _kernels

BLOCK = 512
#: Suffix of the scratch file of compressed tiles (``.NAME.XXXX.tiles`` beside ``NAME.tif``).
SCRATCH_SUFFIX = ".tiles"
_ZSTD = 50000  # TIFF compression code of ZSTD (libtiff, GDAL)
# tags GDAL writes for the georeferencing and its own metadata, copied from its template
_GEO_TAGS = (33550, 33922, 34264, 34735, 34736, 34737, 42112)
_NODATA_TAG = 42113
_GHOST = (
    "LAYOUT=IFDS_BEFORE_DATA\n"
    "BLOCK_ORDER=ROW_MAJOR\n"
    "BLOCK_LEADER=SIZE_AS_UINT4\n"
    "BLOCK_TRAILER=LAST_4_BYTES_REPEATED\n"
    "KNOWN_INCOMPATIBLE_EDITION=NO\n "
)
# TIFF field types: SHORT, LONG, LONG8 and the byte size of each type code
_SHORT, _LONG, _LONG8 = 3, 4, 16
_TYPE_SIZE = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 16: 8, 17: 8, 18: 8}


def overview_factors(height: int, width: int) -> list[int]:
    """Overview factors as GDAL's COG driver picks them: halving until one block holds the level."""
    factors: list[int] = []
    f = 2
    while max(height, width) > BLOCK:
        factors.append(f)
        if max(-(-height // f), -(-width // f)) <= BLOCK:
            break
        f *= 2
    return factors


class _Level:
    """One resolution level: its size, the tiles being filled, and where the finished ones went."""

    def __init__(self, height: int, width: int):
        self.height, self.width = height, width
        self.tile_rows = -(-height // BLOCK)
        self.tile_cols = -(-width // BLOCK)
        self.pending: dict[tuple[int, int], list[Any]] = {}  # (tile row, col) -> [pixels, pixels filled]
        self.stored: dict[tuple[int, int], tuple[int, int]] = {}  # (tile row, col) -> (scratch offset, size)

    def tile_shape(self, ty: int, tx: int) -> tuple[int, int]:
        return min(BLOCK, self.height - ty * BLOCK), min(BLOCK, self.width - tx * BLOCK)


class StreamingCOG:
    """A COG written block by block, in any order and from several threads.

    :meth:`write` takes blocks of the full resolution; each pixel once, every pixel
    before :meth:`commit`.  Overviews of floating-point rasters are NaN-ignoring means,
    of integer rasters the nearest pixel (every other one, level by level).
    """

    def __init__(self, dest: Path, *, height: int, width: int, dtype: str, band_names: Sequence[str],
                 crs: Any, transform: Any, nodata: float | None, level: int = 1):
        import zstandard

        self.dest = Path(dest)
        self.dtype = np.dtype(dtype)
        self.bands = len(band_names)
        self.floating = np.issubdtype(self.dtype, np.floating)
        self.nodata = nodata
        self._tags = _gdal_tags(height, width, self.dtype, band_names, crs, transform, nodata)
        self.levels = [_Level(height, width)] + [
            _Level(-(-height // f), -(-width // f)) for f in overview_factors(height, width)
        ]
        self._zstd = threading.local()
        self._zstd_level = int(level)
        self._zstd_module = zstandard
        self._lock = threading.Lock()
        fd, name = tempfile.mkstemp(prefix=f".{self.dest.stem}.", suffix=SCRATCH_SUFFIX, dir=self.dest.parent)
        self._scratch = os.fdopen(fd, "w+b")
        self.scratch_path = Path(name)
        self._fill = np.zeros((), self.dtype) if nodata is None else np.array(nodata, self.dtype)

    # ---- pixels in
    def write(self, data: np.ndarray, row0: int, col0: int = 0) -> None:
        """A block of the full-resolution level at ``(row0, col0)``; blocks must not overlap."""
        arr = np.asarray(data)
        if arr.ndim == 2:
            arr = arr[np.newaxis]
        lv = self.levels[0]
        if arr.shape[0] != self.bands or row0 < 0 or col0 < 0 or row0 + arr.shape[1] > lv.height \
                or col0 + arr.shape[2] > lv.width:
            raise ValueError(f"a block of shape {arr.shape} at row {row0}, column {col0} does not fit a raster of "
                             f"{self.bands} bands x {lv.height} rows x {lv.width} columns")
        self._put(0, arr.astype(self.dtype, copy=False), row0, col0)

    def _put(self, k: int, block: np.ndarray, row0: int, col0: int) -> None:
        """A block of level ``k`` into the tiles it covers; each tile completed is finished."""
        lv = self.levels[k]
        h, w = block.shape[1], block.shape[2]
        for ty in range(row0 // BLOCK, (row0 + h - 1) // BLOCK + 1):
            for tx in range(col0 // BLOCK, (col0 + w - 1) // BLOCK + 1):
                th, tw = lv.tile_shape(ty, tx)
                r0, c0 = ty * BLOCK, tx * BLOCK
                ra, rb = max(row0, r0), min(row0 + h, r0 + th)
                ca, cb = max(col0, c0), min(col0 + w, c0 + tw)
                part = block[:, ra - row0 : rb - row0, ca - col0 : cb - col0]
                if (rb - ra, cb - ca) == (th, tw):  # the whole tile at once (windows on the tile grid)
                    self._finish(k, ty, tx, part)
                    continue
                with self._lock:
                    slot = lv.pending.get((ty, tx))
                    if slot is None:
                        slot = lv.pending[(ty, tx)] = [np.empty((self.bands, th, tw), block.dtype), 0]
                slot[0][:, ra - r0 : rb - r0, ca - c0 : cb - c0] = part  # blocks do not overlap: no lock
                with self._lock:
                    slot[1] += (rb - ra) * (cb - ca)
                    done = slot[1] >= th * tw
                    if done:
                        del lv.pending[(ty, tx)]
                if done:
                    self._finish(k, ty, tx, slot[0])

    def _finish(self, k: int, ty: int, tx: int, pixels: np.ndarray) -> None:
        """A complete tile of level ``k``: compressed and stored; a full-resolution tile also
        gives its share of every overview (a 512 x 512 tile holds whole 2^k x 2^k blocks)."""
        self._store(k, ty, tx, pixels)
        if k or len(self.levels) == 1:
            return
        per_band: list[list[np.ndarray]] = []
        for b in range(self.bands):
            if self.floating:  # NaN-ignoring means, each level from the sums and counts of the one below
                sums, counts = _kernels.pool2_finite(np.ascontiguousarray(pixels[b]))
                means = [_kernels.mean_of(sums, counts)]
                for _ in self.levels[2:]:
                    sums, counts, mean = _kernels.pool2_sums(sums, counts)
                    means.append(mean)
            else:  # nearest: every other pixel of the level below
                means = [pixels[b, :: 2**q, :: 2**q] for q in range(1, len(self.levels))]
            per_band.append(means)
        for q in range(1, len(self.levels)):
            f = 2**q
            block = np.stack([means[q - 1] for means in per_band]).astype(self.dtype, copy=False)
            self._put(q, block, ty * BLOCK // f, tx * BLOCK // f)

    def _compressor(self) -> Any:
        c = getattr(self._zstd, "c", None)
        if c is None:
            c = self._zstd.c = self._zstd_module.ZstdCompressor(level=self._zstd_level)
        return c

    def _store(self, k: int, ty: int, tx: int, pixels: np.ndarray) -> None:
        """Compress one tile and append it, with its leader and trailer, to the scratch file."""
        th, tw = pixels.shape[1], pixels.shape[2]
        if (th, tw) == (BLOCK, BLOCK) and self.bands == 1:
            tile = np.ascontiguousarray(pixels[0])
        else:  # pixel-interleaved; edge tiles padded to the full block
            tile = np.empty((BLOCK, BLOCK, self.bands), self.dtype)
            if (th, tw) != (BLOCK, BLOCK):
                tile[...] = self._fill
            tile[:th, :tw] = np.moveaxis(pixels, 0, -1)
        data = self._compressor().compress(tile)
        blob = struct.pack("<I", len(data)) + data + data[-4:]
        with self._lock:
            off = self._scratch.seek(0, os.SEEK_END)
            self._scratch.write(blob)
            self.levels[k].stored[(ty, tx)] = (off, len(data))

    # ---- the file out
    def missing(self) -> list[str]:
        return [f"level {k}: tile ({ty}, {tx})" for k, lv in enumerate(self.levels)
                for ty in range(lv.tile_rows) for tx in range(lv.tile_cols) if (ty, tx) not in lv.stored]

    def commit(self, final: Path, *, bigtiff: bool | None = None) -> None:
        """Write the COG to ``final`` (every pixel must have been written); BigTIFF when
        ``bigtiff`` or (None) when the file could pass 4 GB."""
        missing = self.missing()
        if missing:
            raise RuntimeError(f"{len(missing)} tiles of {self.dest.name} were never filled ({missing[0]}, ...); "
                               "write every window")
        self._scratch.flush()
        order = [(k, ty, tx) for k in range(len(self.levels) - 1, -1, -1)  # smallest overview first
                 for ty in range(self.levels[k].tile_rows) for tx in range(self.levels[k].tile_cols)]
        data_bytes = sum(size + 8 for lv in self.levels for _, size in lv.stored.values())
        big = data_bytes + 1_000_000 + 64 * len(order) >= 2**32 - 1 if bigtiff is None else bool(bigtiff)
        head = self._layout(big, order)
        with open(final, "wb") as out:
            out.write(head)
            out.flush()
            # the tiles in file order, runs of tiles adjacent in the scratch file copied at once
            src = self._scratch.fileno()
            run_at, run_len = -1, 0
            for k, ty, tx in order:
                off, size = self.levels[k].stored[(ty, tx)]
                if off == run_at + run_len:
                    run_len += size + 8
                    continue
                if run_len:
                    _copy_range(src, out, run_at, run_len)
                run_at, run_len = off, size + 8
            _copy_range(src, out, run_at, run_len)

    def _layout(self, big: bool, order: list[tuple[int, int, int]]) -> bytes:
        """Header, ghost area and IFDs, with the tile offsets of the data that follows them."""
        ntiles = [lv.tile_rows * lv.tile_cols for lv in self.levels]
        # lengths first (the offsets' values do not change the IFDs' length), then the offsets
        ifds = [self._ifd(k, big, [0] * n) for k, n in enumerate(ntiles)]
        ghost = f"GDAL_STRUCTURAL_METADATA_SIZE={len(_GHOST):06d} bytes\n{_GHOST}".encode()
        pos = (16 if big else 8) + len(ghost)
        positions = []
        for ifd in ifds:
            pos += pos % 2
            positions.append(pos)
            pos += _ifd_length(ifd, big)
        data_start = pos
        offsets = [[0] * n for n in ntiles]
        for k, ty, tx in order:
            _, size = self.levels[k].stored[(ty, tx)]
            offsets[k][ty * self.levels[k].tile_cols + tx] = pos + 4  # after the leader
            pos += size + 8
        buf = bytearray(b"II+\x00\x08\x00\x00\x00" + struct.pack("<Q", positions[0]) if big
                        else b"II*\x00" + struct.pack("<I", positions[0]))
        buf += ghost
        for k in range(len(self.levels)):
            buf += b"\x00" * (positions[k] - len(buf))
            nxt = positions[k + 1] if k + 1 < len(self.levels) else 0
            buf += _encode_ifd(self._ifd(k, big, offsets[k]), positions[k], nxt, big)
        buf += b"\x00" * (data_start - len(buf))
        return bytes(buf)

    def _ifd(self, k: int, big: bool, offsets: list[int]) -> list[tuple[int, int, Any]]:
        lv = self.levels[k]
        sizes = [lv.stored[(ty, tx)][1] for ty in range(lv.tile_rows) for tx in range(lv.tile_cols)]
        fmt = 3 if self.floating else (2 if np.issubdtype(self.dtype, np.signedinteger) else 1)
        long_t = _LONG8 if big else _LONG
        entries: list[tuple[int, int, Any]] = [
            (254, _LONG, [1 if k else 0]),
            (256, _LONG, [lv.width]),
            (257, _LONG, [lv.height]),
            (258, _SHORT, [self.dtype.itemsize * 8] * self.bands),
            (259, _SHORT, [_ZSTD]),
            (262, _SHORT, [1]),  # min-is-black
            (277, _SHORT, [self.bands]),
            (284, _SHORT, [1]),  # pixel-interleaved
            (322, _SHORT, [BLOCK]),
            (323, _SHORT, [BLOCK]),
            (324, long_t, offsets),
            (325, long_t, sizes),
            (339, _SHORT, [fmt] * self.bands),
        ]
        if self.bands > 1:  # samples beyond the one grey channel: unspecified extra samples
            entries.append((338, _SHORT, [0] * (self.bands - 1)))
        for tag, (typ, count, raw) in self._tags.items():
            if k == 0 or tag == _NODATA_TAG:
                entries.append((tag, typ, (count, raw)))
        return sorted(entries, key=lambda e: e[0])

    def close(self) -> None:
        """Remove the scratch file."""
        try:
            self._scratch.close()
        finally:
            with contextlib.suppress(FileNotFoundError):
                self.scratch_path.unlink()


def _copy_range(src_fd: int, out: Any, offset: int, length: int) -> None:
    """Append ``length`` bytes of ``src_fd`` from ``offset`` to the file ``out``: in the
    kernel where it can (Linux ``copy_file_range``), else through a buffer."""
    out.flush()
    dst_fd = out.fileno()
    while length > 0:
        try:
            n = os.copy_file_range(src_fd, dst_fd, length, offset)  # advances dst_fd's position
        except (AttributeError, OSError):  # not Linux, or a file system that cannot
            n = 0
        if n <= 0:
            data = os.pread(src_fd, min(length, 64 << 20), offset)
            if not data:
                raise RuntimeError(f"the scratch file of tiles ended early, at byte {offset}")  # pragma: no cover
            view = memoryview(data)
            while view:
                view = view[os.write(dst_fd, view):]
            n = len(data)
        offset += n
        length -= n
    out.seek(0, os.SEEK_END)


def _value_bytes(typ: int, value: Any) -> tuple[int, bytes]:
    """Count and little-endian bytes of an IFD entry's value."""
    if isinstance(value, tuple):  # copied from the template: (count, raw bytes)
        return value
    code = {_SHORT: "H", _LONG: "I", _LONG8: "Q"}[typ]
    return len(value), struct.pack(f"<{len(value)}{code}", *value)


def _ifd_length(entries: list[tuple[int, int, Any]], big: bool) -> int:
    inline = 8 if big else 4
    n = (8 + 20 * len(entries) + 8) if big else (2 + 12 * len(entries) + 4)
    for typ, value in ((t, v) for _, t, v in entries):
        _, raw = _value_bytes(typ, value)
        if len(raw) > inline:
            n += len(raw) + len(raw) % 2
    return n


def _encode_ifd(entries: list[tuple[int, int, Any]], at: int, nxt: int, big: bool) -> bytes:
    inline = 8 if big else 4
    head = struct.pack("<Q", len(entries)) if big else struct.pack("<H", len(entries))
    extra_at = at + len(head) + (20 if big else 12) * len(entries) + (8 if big else 4)
    body, extra = bytearray(), bytearray()
    for tag, typ, value in entries:
        count, raw = _value_bytes(typ, value)
        if len(raw) <= inline:
            field = raw + b"\x00" * (inline - len(raw))
        else:
            field = struct.pack("<Q" if big else "<I", extra_at + len(extra))
            extra += raw + b"\x00" * (len(raw) % 2)
        body += struct.pack("<HHQ" if big else "<HHI", tag, typ, count) + field
    tail = struct.pack("<Q" if big else "<I", nxt)
    return bytes(head + body + tail + extra)


def _gdal_tags(height: int, width: int, dtype: np.dtype, band_names: Sequence[str], crs: Any, transform: Any,
               nodata: float | None) -> dict[int, tuple[int, int, bytes]]:
    """The georeferencing, metadata and nodata tags GDAL writes for this grid: from a
    1 x 1 GeoTIFF GDAL makes in memory with the same CRS, transform, nodata and band names."""
    from rasterio.io import MemoryFile

    with MemoryFile() as mem:
        with mem.open(driver="GTiff", width=1, height=1, count=len(band_names), dtype=dtype.name, crs=crs,
                      transform=transform, nodata=nodata) as ds:
            for i, name in enumerate(band_names, start=1):
                ds.set_band_description(i, name)
        raw = mem.read()
    return {t: v for t, v in _read_ifd0(raw).items() if t in _GEO_TAGS or t == _NODATA_TAG}


def _read_ifd0(raw: bytes) -> dict[int, tuple[int, int, bytes]]:
    """Tags of the first IFD of a little-endian classic TIFF: {tag: (type, count, value bytes)}."""
    if raw[:4] != b"II*\x00":
        raise ValueError("expected a little-endian classic TIFF from GDAL")  # pragma: no cover - GDAL's template
    (at,) = struct.unpack_from("<I", raw, 4)
    (n,) = struct.unpack_from("<H", raw, at)
    tags = {}
    for i in range(n):
        tag, typ, count, field = struct.unpack_from("<HHI4s", raw, at + 2 + 12 * i)
        size = _TYPE_SIZE.get(typ, 1) * count
        value = field[:size] if size <= 4 else raw[struct.unpack("<I", field)[0] : struct.unpack("<I", field)[0] + size]
        tags[tag] = (typ, count, value)
    return tags
