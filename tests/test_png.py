"""changedet._png: the figures' PNG writer, read back by Pillow and compared with Pillow's own."""

from __future__ import annotations

import io
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from changedet import _png, plot


def _read(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


@pytest.mark.parametrize("shape", [(1, 1, 3), (7, 5, 4), (64, 33, 3), (300, 701, 3), (129, 2, 4)])
def test_pixels_come_back_exactly(shape: tuple[int, int, int]) -> None:
    rng = np.random.default_rng(sum(shape))
    pixels = rng.integers(0, 256, shape, dtype=np.uint8)
    pixels[shape[0] // 2:] = pixels[: shape[0] - shape[0] // 2] // 3  # runs and repeats as well as noise
    buf = io.BytesIO()
    _png.encode_png(pixels, buf, dpi=150, text={"Software": "changedet test"})
    im = _read(buf.getvalue())
    assert im.mode == ("RGB" if shape[2] == 3 else "RGBA") and im.size == (shape[1], shape[0])
    assert np.array_equal(np.asarray(im), pixels)
    assert im.info["Software"] == "changedet test"
    assert round(im.info["dpi"][0]) == 150


def test_a_strided_view_and_a_file_path(tmp_path: Path) -> None:
    rgba = np.random.default_rng(1).integers(0, 256, (50, 40, 4), dtype=np.uint8)
    path = tmp_path / "x.png"
    _png.encode_png(rgba[..., :3], path)
    assert np.array_equal(np.asarray(_read(path.read_bytes())), rgba[..., :3])


def test_without_isal_zlib_writes_the_same_pixels(monkeypatch: pytest.MonkeyPatch) -> None:
    pixels = np.random.default_rng(2).integers(0, 256, (80, 90, 3), dtype=np.uint8)
    with_isal = io.BytesIO()
    _png.encode_png(pixels, with_isal)
    monkeypatch.setitem(sys.modules, "isal", None)  # import isal now raises ImportError
    without = io.BytesIO()
    _png.encode_png(pixels, without)
    assert with_isal.getvalue() != without.getvalue()  # another deflate...
    assert np.array_equal(np.asarray(_read(without.getvalue())), pixels)  # ...of the same rows


def test_every_chunk_checks_out() -> None:
    """Signature, chunk CRCs, the zlib stream's Adler-32 and the "up" filter, read by hand."""
    pixels = np.random.default_rng(3).integers(0, 256, (20, 10, 3), dtype=np.uint8)
    buf = io.BytesIO()
    _png.encode_png(pixels, buf, dpi=96)
    data = buf.getvalue()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, kinds, idat = 8, [], b""
    while pos < len(data):
        n = int.from_bytes(data[pos:pos + 4], "big")
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        assert int.from_bytes(data[pos + 8 + n:pos + 12 + n], "big") == zlib.crc32(kind + body)
        kinds.append(kind)
        idat += body if kind == b"IDAT" else b""
        pos += 12 + n
    assert kinds == [b"IHDR", b"pHYs", b"IDAT", b"IEND"]
    rows = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(20, 1 + 30)  # zlib checks the Adler-32
    assert (rows[:, 0] == 2).all()
    assert np.array_equal(np.cumsum(rows[:, 1:], axis=0, dtype=np.uint8), pixels.reshape(20, 30))


@pytest.mark.parametrize("bad", [np.zeros((4, 4, 3), np.uint16), np.zeros((4, 4), np.uint8),
                                 np.zeros((4, 4, 2), np.uint8), np.zeros((0, 4, 3), np.uint8)])
def test_what_is_not_8_bit_rgb_or_rgba_is_refused(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="PNG"):
        _png.encode_png(bad, io.BytesIO())


def test_a_figure_has_the_pixels_pillow_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """plot's figures through this writer and through Pillow (``CHANGEDET_PNG=pillow``): other bytes,
    the same pixels, dpi and text; RGB when every pixel is opaque, RGBA otherwise."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    for transparent in (False, True):
        files = {}
        for engine in ("changedet", "pillow"):
            fig = Figure(figsize=(3, 2))
            FigureCanvasAgg(fig)
            ax = fig.add_subplot()
            ax.imshow(np.random.default_rng(4).random((30, 40)))
            ax.plot([0, 39], [0, 29], color="magenta")
            if transparent:
                fig.patch.set_alpha(0.0)
            monkeypatch.setenv("CHANGEDET_PNG", engine)
            buf = io.BytesIO()
            fig.canvas.draw()
            raw = memoryview(fig.canvas.buffer_rgba()).cast("B")
            w, h = fig.canvas.get_width_height()
            if not transparent:
                assert np.frombuffer(raw, np.uint8)[3::4].min() == 255
            plot._encode_png(raw, w, h, buf, 100)
            files[engine] = buf.getvalue()
        ours, pillows = _read(files["changedet"]), _read(files["pillow"])
        assert files["changedet"] != files["pillow"]
        assert ours.mode == pillows.mode == ("RGBA" if transparent else "RGB")
        assert np.array_equal(np.asarray(ours), np.asarray(pillows))
        assert ours.info["dpi"] == pillows.info["dpi"] and ours.info["Software"] == pillows.info["Software"]
