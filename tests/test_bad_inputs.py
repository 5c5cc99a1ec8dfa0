"""A generated corpus of bad and odd inputs, through the command line and the Python API.

Each family builds its bad files in ``tmp_path`` (real GeoTIFFs through rasterio, or raw
bytes where rasterio would refuse to write them) and checks the contract of issue 14:
exit code 2 and one line on stderr naming the input, what was wrong and what to do; no
traceback; no output folder left half-written; the inputs' bytes unchanged; and from
Python, a :class:`~changedet.errors.ChangedetError` naming the input or parameter.

The command line runs in-process (``changedet.cli.main``) where a subprocess would only
add start-up time; what could hang (a FIFO) runs in a subprocess with a timeout.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import struct
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

from changedet import io as cio
from changedet.cli import main
from changedet.errors import ChangedetError
from changedet.pipeline import detect_changes
from changedet.raster import GeoRaster

ORIGIN = (500_000.0, 6_200_000.0)
T10 = Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1])
BANDS = ("B02", "B03", "B04", "B08")
#: a lon/lat box inside the good pair (EPSG:32639, 480 m x 480 m from ORIGIN)
INSIDE = [[51.0005, 55.9447], [51.0045, 55.9447], [51.0045, 55.9425], [51.0005, 55.9425], [51.0005, 55.9447]]


# --------------------------------------------------------------------------- building bad files
def tif(path: Path, *, transform: Affine | None = T10, crs: Any = "EPSG:32639", shape: tuple[int, int] = (48, 48),
        bands: int = 4, dtype: str = "uint16", seed: int = 0, **profile: Any) -> Path:
    """A textured GeoTIFF written by rasterio (any transform or CRS it accepts)."""
    rng = np.random.default_rng(seed)
    data = rng.uniform(500, 3000, (bands, *shape)).astype(dtype)
    kw: dict[str, Any] = dict(driver="GTiff", width=shape[1], height=shape[0], count=bands, dtype=dtype)
    if transform is not None:
        kw["transform"] = transform
    if crs is not None:
        kw["crs"] = crs
    kw.update(profile)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(path, "w", **kw) as dst:
            dst.write(data)
            if bands == 4:
                for i, name in enumerate(BANDS, start=1):
                    dst.set_band_description(i, name)
    return path


def _ifd_short(data: bytearray, tag: int) -> int:
    """Offset of the SHORT value of ``tag`` in a classic little-endian TIFF's first directory."""
    assert data[:4] == b"II*\x00"
    off = struct.unpack("<I", data[4:8])[0]
    for i in range(struct.unpack("<H", data[off : off + 2])[0]):
        e = off + 2 + 12 * i
        t, typ, count = struct.unpack("<HHI", data[e : e + 8])
        if t == tag:
            assert typ == 3 and count == 1, (tag, typ, count)
            return e + 8
    raise KeyError(tag)


def patched_tag(path: Path, tag: int, value: int, *, dtype: str = "uint8") -> Path:
    """A one-band uncompressed TIFF whose header says ``tag`` = ``value`` (bytes edited)."""
    tif(path, bands=1, dtype=dtype)
    data = bytearray(path.read_bytes())
    pos = _ifd_short(data, tag)
    data[pos : pos + 2] = struct.pack("<H", value)
    path.write_bytes(bytes(data))
    return path


def corrupt_packbits(path: Path) -> Path:
    """A tiled PackBits GeoTIFF whose tile bytes are scrambled (the header stays intact)."""
    tif(path, shape=(64, 64), tiled=True, blockxsize=16, blockysize=16, compress="packbits", interleave="band")
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(5)
    for i in range(2000, len(data) - 2000, 7):
        data[i] = int(rng.integers(0, 256))
    path.write_bytes(bytes(data))
    return path


def sparse_bomb(path: Path) -> Path:
    """A 200000 x 200000 GeoTIFF of about 2 MB: every tile left sparse (no data written)."""
    with rasterio.open(path, "w", driver="GTiff", width=200_000, height=200_000, count=1, dtype="uint8", tiled=True,
                       blockxsize=512, blockysize=512, sparse_ok=True, BIGTIFF="YES", crs="EPSG:32639",
                       transform=T10):
        pass
    return path


def bigtiff_noise(path: Path) -> Path:
    path.write_bytes(b"II+\x00\x08\x00\x00\x00" + np.random.default_rng(3).bytes(4000))
    return path


def truncated(path: Path) -> Path:
    tif(path, shape=(96, 96), compress="deflate", tiled=True, blockxsize=32, blockysize=32)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


ENGINEERING = ('ENGCRS["site grid",EDATUM["local"],CS[Cartesian,2],AXIS["x",east,LENGTHUNIT["metre",1]],'
               'AXIS["y",north,LENGTHUNIT["metre",1]]]')

#: name -> (builder of the bad file, which side it takes: "both", "before" or "after", what the message says)
RASTERS: dict[str, tuple[Callable[[Path], Path], str, str]] = {
    "nan_pixel_size": (lambda p: tif(p, transform=Affine(float("nan"), 0, ORIGIN[0], 0, -10, ORIGIN[1])), "before",
                       "NaN"),
    "nan_geotransform": (lambda p: tif(p, transform=Affine(10, 0, float("nan"), 0, -10, ORIGIN[1])), "after", "NaN"),
    "south_up": (lambda p: tif(p, transform=Affine(10, 0, ORIGIN[0], 0, 10, ORIGIN[1])), "both", "south-up"),
    "east_left": (lambda p: tif(p, transform=Affine(-10, 0, ORIGIN[0], 0, -10, ORIGIN[1])), "both", "east-left"),
    "nano_pixels": (lambda p: tif(p, transform=Affine(1e-9, 0, ORIGIN[0], 0, -1e-9, ORIGIN[1])), "both",
                    "too small to be real"),
    "engineering_crs": (lambda p: tif(p, crs=CRS.from_wkt(ENGINEERING)), "both", "local or engineering CRS"),
    "beyond_pole": (lambda p: tif(p, crs="EPSG:4326", transform=Affine(0.01, 0, 10, 0, -0.01, 90.2)), "both",
                    "beyond the pole"),
    "past_180": (lambda p: tif(p, crs="EPSG:4326", transform=Affine(0.01, 0, 180.1, 0, -0.01, 50)), "both",
                 "past 180 degrees"),
    "across_antimeridian": (lambda p: tif(p, crs="EPSG:4326", transform=Affine(0.01, 0, 179.8, 0, -0.01, 50)), "both",
                            "antimeridian"),
    "corrupt_packbits": (corrupt_packbits, "after", "corrupt"),
    "bits_per_sample_7": (lambda p: patched_tag(p, 258, 7), "after", "7 bits per sample"),
    "sample_format_5": (lambda p: patched_tag(p, 339, 5, dtype="int16"), "after", "SampleFormat 5"),
    "photometric_99": (lambda p: patched_tag(p, 262, 99), "after", "Photometric interpretation 99"),
    "bigtiff_noise": (bigtiff_noise, "before", "truncated or corrupt"),
    "truncated": (truncated, "after", "corrupt"),
    "empty_file": (lambda p: (p.write_bytes(b""), p)[1], "before", "not a raster GDAL can read"),
    "text_file": (lambda p: (p.write_text("site,before,after\n"), p)[1], "after", "not a raster GDAL can read"),
    "sparse_bomb": (sparse_bomb, "both", "decompression-bomb"),
}


def sha_tree(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder`` (FIFOs and devices are named, not read)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            out[str(p.relative_to(folder))] = hashlib.sha256(p.read_bytes()).hexdigest()
        elif not p.is_dir():
            out[str(p.relative_to(folder))] = "special"
    return out


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    tif(folder / "before.tif", seed=1)
    tif(folder / "after.tif", seed=2)
    return folder


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


def assert_one_line(code: int, err: str, *, command: str, names: str, says: str | None = None) -> str:
    """Exit 2, one line on stderr, no traceback, naming the input (``names``)."""
    assert code == 2, err
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith(f"changedet {command}: error: "), line
    assert names in line, f"{names!r} not named in: {line}"
    if says is not None:
        assert says in line, f"{says!r} not in: {line}"
    return line


def assert_nothing_written(out: Path) -> None:
    """The output folder was not made, or holds nothing (no half-written result)."""
    assert not out.exists() or (out.is_dir() and not any(out.iterdir())), sorted(out.rglob("*"))


# --------------------------------------------------------------------------- rasters
@pytest.mark.parametrize("case", sorted(RASTERS))
def test_bad_rasters(case: str, inputs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    build, side, says = RASTERS[case]
    bad_b = build(inputs / f"{case}_b.tif") if side in ("both", "before") else inputs / "before.tif"
    bad_a = build(inputs / f"{case}_a.tif") if side in ("both", "after") else inputs / "after.tif"
    named = (bad_b if side != "after" else bad_a).name
    before_bytes = sha_tree(inputs)
    out = tmp_path / "out"
    code, err = run_cli(["detect", bad_b, bad_a, "--out", out, "--no-figures"], capsys)
    line = assert_one_line(code, err, command="detect", names=named, says=says)
    date = "after" if side == "after" else "before"
    assert line.startswith(f"changedet detect: error: {date} "), line  # which of the two dates is at fault
    assert_nothing_written(out)
    with pytest.raises(ChangedetError, match=rf"^{date} .*{named}"):
        detect_changes(bad_b, bad_a, out=tmp_path / "api_out", figures=False)
    assert_nothing_written(tmp_path / "api_out")
    assert sha_tree(inputs) == before_bytes


@pytest.mark.parametrize("case", ["corrupt_packbits", "sparse_bomb", "past_180"])
def test_bad_rasters_windowed(case: str, inputs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The windowed path (--tiled) refuses them too, before its first window or at the corrupt one."""
    build, side, says = RASTERS[case]
    bad = build(inputs / f"{case}.tif")
    pair = [bad, bad] if side == "both" else [inputs / "before.tif", bad]
    out = tmp_path / "out"
    code, err = run_cli(["detect", *pair, "--out", out, "--tiled", "--no-figures"], capsys)
    assert_one_line(code, err, command="detect", names=bad.name, says=says)
    if side in ("before", "after"):  # which date, as the in-memory path says it
        assert f"error: {side} " in err, err
    assert_nothing_written(out)


def test_non_utf8_file_name(inputs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = os.path.join(os.fsencode(inputs), b"before_\xff.tif")
    with open(raw, "wb") as fh:
        fh.write((inputs / "before.tif").read_bytes())
    name = os.fsdecode(raw)
    out = tmp_path / "out"
    code, err = run_cli(["detect", name, inputs / "after.tif", "--out", out], capsys)
    assert_one_line(code, err, command="detect", names="before_", says="not valid UTF-8")
    assert_nothing_written(out)


@pytest.mark.parametrize("kind", ["device", "folder_without_rasters"])
def test_not_a_raster_file(kind: str, inputs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if kind == "device":
        path, says = Path("/dev/null"), "character device"
    else:
        path = inputs / "empty_folder"
        path.mkdir()
        says = "holds no raster file (.img, .jp2"
    code, err = run_cli(["detect", inputs / "before.tif", path, "--out", tmp_path / "out"], capsys)
    assert_one_line(code, err, command="detect", names=str(path), says=says)
    assert_nothing_written(tmp_path / "out")


def _changedet() -> list[str]:
    return [sys.executable, "-c", "import sys; from changedet.cli import main; sys.exit(main())"]


def test_fifo_is_refused_before_it_is_opened(inputs: Path, tmp_path: Path) -> None:
    """A FIFO would block its reader forever: refused at once (a subprocess, so a hang fails the test)."""
    fifo = inputs / "after.fifo.tif"
    os.mkfifo(fifo)
    table = inputs / "pairs.fifo.csv"
    os.mkfifo(table)
    for argv, names in ((["detect", inputs / "before.tif", fifo, "--out", tmp_path / "o1"], fifo.name),
                        (["batch", table, "--out", tmp_path / "o2"], table.name),
                        (["evaluate", inputs / "before.tif", fifo], fifo.name)):
        t0 = time.perf_counter()
        proc = subprocess.run([*_changedet(), *map(str, argv)], capture_output=True, text=True, timeout=60)
        assert time.perf_counter() - t0 < 30
        assert_one_line(proc.returncode, proc.stderr, command=str(argv[0]), names=names, says="FIFO")
    assert_nothing_written(tmp_path / "o1")
    assert_nothing_written(tmp_path / "o2")


@pytest.mark.parametrize("case", ["bigtiff_noise", "corrupt_packbits", "engineering_crs"])
def test_one_line_on_the_real_stderr(case: str, inputs: Path, tmp_path: Path) -> None:
    """In a subprocess, so what GDAL or PROJ would print on file descriptor 2 is seen too."""
    bad = RASTERS[case][0](inputs / f"{case}.tif")
    proc = subprocess.run([*_changedet(), "detect", str(inputs / "before.tif"), str(bad), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=120)
    line = assert_one_line(proc.returncode, proc.stderr, command="detect", names=bad.name)
    assert "previous exception" not in line
    assert_nothing_written(tmp_path / "o")


# --------------------------------------------------------------------------- guards before heavy work
def test_read_needing_more_memory_than_available_is_refused(inputs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The memory a whole read needs is estimated from the header: past what is free, refused with --tiled."""
    big_b = tif(inputs / "big_b.tif", shape=(600, 600), seed=1)
    big_a = tif(inputs / "big_a.tif", shape=(600, 600), seed=2)
    monkeypatch.setattr(cio, "available_memory_bytes", lambda: 8 << 20)  # 600*600*4 bands*9 B = 12.4 MiB needed
    code, err = run_cli(["evaluate", big_b, big_a], capsys)
    line = assert_one_line(code, err, command="evaluate", names="big_b.tif", says="--tiled")
    assert "600 x 600 pixels x 4 band(s)" in line and "MiB" in line
    code, err = run_cli(["detect", big_b, big_a, "--out", tmp_path / "out", "--in-memory"], capsys)
    assert_one_line(code, err, command="detect", names="in memory", says="--tiled")
    assert_nothing_written(tmp_path / "out")
    with pytest.raises(ChangedetError, match=r"big_b\.tif.*tiled=True"):
        cio.read_raster(big_b)


def test_a_pair_that_would_not_fit_in_memory_runs_windowed_or_is_refused(
        inputs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Whether the in-memory run fits is estimated from the headers: by default a pair that would not
    fit runs window by window; --in-memory is refused with the fix before anything is read."""
    from changedet import pipeline

    need = pipeline._in_memory_bytes(inputs / "before.tif", inputs / "after.tif")
    assert need == int(2 * 4 * 48 * 48 * cio.READ_BYTES_PER_PIXEL * pipeline.IN_MEMORY_FACTOR)
    monkeypatch.setattr(cio, "available_memory_bytes", lambda: int(need / cio.MEMORY_SHARE) - 1)
    out = tmp_path / "auto"
    result = detect_changes(inputs / "before.tif", inputs / "after.tif", out=out, figures=False, progress=False)
    assert result.summary["tiling"]["path"] == "windowed" and (out / "summary.json").exists()
    code, err = run_cli(["detect", inputs / "before.tif", inputs / "after.tif", "--out", tmp_path / "mem", "--in-memory"],
                        capsys)
    assert_one_line(code, err, command="detect", names="in memory", says="--tiled")
    assert_nothing_written(tmp_path / "mem")
    monkeypatch.setattr(cio, "available_memory_bytes", lambda: int(need / cio.MEMORY_SHARE) + 1)
    assert detect_changes(inputs / "before.tif", inputs / "after.tif").summary["tiling"]["path"] == "in-memory"


def test_sparse_bomb_as_truth_for_evaluate(inputs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bomb = sparse_bomb(inputs / "truth_bomb.tif")
    code, err = run_cli(["evaluate", inputs / "before.tif", bomb], capsys)
    assert_one_line(code, err, command="evaluate", names="truth_bomb.tif", says="200000 x 200000")


# --------------------------------------------------------------------------- areas of interest
AOIS: dict[str, Any] = {
    "feature_without_geometry": {"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {}}]},
    "feature_null_geometry": {"type": "Feature", "geometry": None, "properties": {}},
    "collection_null_geometry": {"type": "FeatureCollection",
                                 "features": [{"type": "Feature", "geometry": None, "properties": {}}]},
    "ring_of_3_points": {"type": "Polygon", "coordinates": [[[51.0, 55.94], [51.01, 55.94], [51.0, 55.94]]]},
    "number": 5,
    "null": None,
    "true": True,
    "string": "hello",
    "list": [1, 2],
    "features_not_a_list": {"type": "FeatureCollection", "features": 5},
    "features_a_dict": {"type": "FeatureCollection", "features": {"a": 1}},
    "features_of_numbers": {"type": "FeatureCollection", "features": [1, 2]},
    "projected_coordinates": {"type": "Polygon", "coordinates": [[[500000, 6199800], [500400, 6199800],
                                                                  [500400, 6199600], [500000, 6199800]]]},
    "old_crs_member": {"type": "FeatureCollection", "crs": {"type": "name", "properties": {"name": "EPSG:32639"}},
                       "features": [{"type": "Feature", "properties": {},
                                     "geometry": {"type": "Polygon", "coordinates": [INSIDE]}}]},
    "no_type": {"coordinates": [1, 2]},
    "coordinates_a_string": {"type": "Polygon", "coordinates": "abc"},
    "empty_collection": {"type": "GeometryCollection", "geometries": []},
    "bow_tie": {"type": "Polygon", "coordinates": [[[51.0, 55.94], [51.01, 55.943], [51.01, 55.94], [51.0, 55.943],
                                                    [51.0, 55.94]]]},
}


@pytest.mark.parametrize("case", sorted(AOIS) + ["not_json", "latin1_text", "a_folder", "a_fifo"])
def test_bad_area_of_interest(case: str, inputs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = inputs / f"{case}.geojson"
    if case in AOIS:
        path.write_text(json.dumps(AOIS[case]))
    elif case == "not_json":
        path.write_text("{not json")
    elif case == "latin1_text":
        path.write_bytes('{"type": "Polygon", "name": "é"}'.encode("latin-1"))
    elif case == "a_folder":
        path.mkdir()
    else:
        os.mkfifo(path)
    before_bytes = sha_tree(inputs)
    out = tmp_path / "out"
    code, err = run_cli(["detect", inputs / "before.tif", inputs / "after.tif", "--aoi", path, "--out", out], capsys)
    assert_one_line(code, err, command="detect", names=path.name)
    assert_nothing_written(out)
    with pytest.raises(ChangedetError, match=path.name):
        detect_changes(inputs / "before.tif", inputs / "after.tif", aoi=path)
    if case in AOIS and isinstance(AOIS[case], dict):  # the same GeoJSON given as a dict
        with pytest.raises(ChangedetError, match=r"^aoi"):
            detect_changes(inputs / "before.tif", inputs / "after.tif", aoi=AOIS[case])
    assert sha_tree(inputs) == before_bytes


# --------------------------------------------------------------------------- options
CLI_OPTIONS = {
    "chi2_abc": (["--threshold", "chi2:abc"], "threshold 'chi2:abc'"),
    "chi2_empty": (["--threshold", "chi2:"], "threshold 'chi2:'"),
    "chi2_out_of_range": (["--threshold", "chi2:2"], "threshold 'chi2:2'"),
    "percentile_101": (["--threshold", "p101"], "threshold percentile"),
    "threshold_nan": (["--threshold", "nan"], "threshold must be finite"),
    "min_area_nan": (["--min-area-m2", "nan"], "--min-area-m2"),
    "min_area_inf": (["--min-area-m2", "inf"], "--min-area-m2"),
    "pixel_size_zero": (["--pixel-size-m", "0"], "--pixel-size-m"),
    "aoi_reversed_bbox": (["--aoi", "51.01,55.94,51.0,55.95"], "aoi"),
    "aoi_not_numbers": (["--aoi", "a,b,c,d"], "aoi"),
    "bands_missing": (["--bands", "B99"], "B99"),
    "examples_missing": (["--examples", "nope.geojson"], "nope.geojson"),
    "model_missing": (["--model", "nope.skops"], "nope.skops"),
    "truth_missing": (["--truth", "nope_truth.tif"], "nope_truth.tif"),
}


@pytest.mark.parametrize("case", sorted(CLI_OPTIONS))
def test_bad_cli_options(case: str, inputs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    extra, names = CLI_OPTIONS[case]
    out = tmp_path / "out"
    code, err = run_cli(["detect", inputs / "before.tif", inputs / "after.tif", "--out", out, *extra], capsys)
    assert_one_line(code, err, command="detect", names=names)
    assert_nothing_written(out)


API_OPTIONS: dict[str, tuple[dict[str, Any], str]] = {
    "min_area_str": ({"min_area_m2": "50"}, "min_area_m2"),
    "pixel_size_str": ({"pixel_size_m": "1"}, "pixel_size_m"),
    "fill_holes_negative": ({"fill_holes_m2": -1}, "fill_holes_m2"),
    "opening_float": ({"opening_px": 1.5}, "opening_px"),
    "aoi_int": ({"aoi": 5}, "aoi"),
    "out_int": ({"out": 5}, "out"),
    "out_empty": ({"out": ""}, "out"),
    "method_int": ({"method": 5}, "method"),
    "threshold_list": ({"threshold": [1]}, "threshold"),
    "threshold_chi2_abc": ({"threshold": "chi2:abc"}, "threshold"),
    "threshold_chi2_empty": ({"threshold": "chi2:"}, "threshold"),
    "bands_str": ({"bands": "B02"}, "bands"),
    "align_str": ({"align": "yes"}, "align"),
    "coregister_int": ({"coregister": 1}, "coregister"),
    "tiled_str": ({"tiled": "yes"}, "tiled"),
    "overwrite_str": ({"overwrite": "no"}, "overwrite"),
    "figures_int": ({"figures": 3}, "figures"),
    "progress_none": ({"progress": None}, "progress"),
    "window_px_small": ({"window_px": 4, "tiled": True}, "window_px"),
    "workers_str": ({"workers": "2"}, "workers"),
    "truth_int": ({"truth": 5}, "truth"),
    "examples_int": ({"examples": 5}, "examples"),
    "model_int": ({"model": 5}, "model"),
}


@pytest.mark.parametrize("case", sorted(API_OPTIONS))
def test_bad_api_options(case: str, inputs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every option of detect_changes is checked at the top: a ChangedetError naming it, nothing read."""
    kwargs, name = API_OPTIONS[case]
    kwargs = dict(kwargs)
    if kwargs.get("tiled") is True or "overwrite" in kwargs or "figures" in kwargs:
        kwargs.setdefault("out", tmp_path / "out")
    read = []
    monkeypatch.setattr(cio, "read_raster", lambda *a, **k: read.append(a) or pytest.fail("read before the check"))
    with pytest.raises(ChangedetError, match=rf"^{name}\b"):
        detect_changes(inputs / "before.tif", inputs / "after.tif", **kwargs)
    assert not read
    assert_nothing_written(tmp_path / "out")


ENTRY_POINTS: dict[str, tuple[Callable[[Path], Any], str]] = {
    "read_raster_int": (lambda d: cio.read_raster(5), "path"),
    "read_raster_none": (lambda d: cio.read_raster(None), "path"),
    "read_raster_empty": (lambda d: cio.read_raster(""), "path"),
    "read_raster_bands_str": (lambda d: cio.read_raster(d / "before.tif", bands="B02"), "bands"),
    "read_raster_fifo": (lambda d: (os.mkfifo(d / "p.tif"), cio.read_raster(d / "p.tif")), "p.tif"),
    "write_raster_int_path": (lambda d: cio.write_raster(cio.read_raster(d / "before.tif"), 5), "path"),
    "write_raster_not_a_raster": (lambda d: cio.write_raster(np.zeros((2, 2)), d / "x.tif"), "raster"),
    "evaluate_values_str": (lambda d: __import__("changedet.evaluate", fromlist=["evaluate"]).evaluate(
        np.zeros((2, 2)), np.zeros((2, 2)), truth_change_values="1"), "truth_change_values"),
    "grid_shape_str": (lambda d: __import__("changedet.raster", fromlist=["Grid"]).Grid(("a", 2), T10), "grid shape"),
    "parse_aoi_fifo": (lambda d: (os.mkfifo(d / "a.geojson"),
                                  __import__("changedet.areas", fromlist=["parse_aoi"]).parse_aoi(d / "a.geojson")),
                       "a.geojson"),
    "train_model_pairs_int": (lambda d: __import__("changedet.pipeline", fromlist=["x"]).train_model(5, d / "m.skops"),
                              "pairs"),
    "train_model_bands_str": (lambda d: __import__("changedet.pipeline", fromlist=["x"]).train_model(
        [(d / "before.tif", d / "after.tif", d / "before.tif")], d / "m.skops", bands="B02"), "bands"),
    "train_model_seed_str": (lambda d: __import__("changedet.pipeline", fromlist=["x"]).train_model(
        [(d / "before.tif", d / "after.tif", d / "before.tif")], d / "m.skops", seed="x"), "seed"),
    "train_model_out_a_folder": (lambda d: __import__("changedet.pipeline", fromlist=["x"]).train_model(
        [(d / "before.tif", d / "after.tif", d / "before.tif")], d), "existing folder"),
    "train_model_missing_before": (lambda d: __import__("changedet.pipeline", fromlist=["x"]).train_model(
        [(d / "nope.tif", d / "after.tif", d / "before.tif")], d / "m.skops"), r"^before '.*nope\.tif' does not exist"),
    "read_pairs_missing": (lambda d: __import__("changedet.batch", fromlist=["read_pairs"]).read_pairs(d / "nope.csv"),
                       "nope.csv"),
}


@pytest.mark.parametrize("case", sorted(ENTRY_POINTS))
def test_other_public_entry_points(case: str, inputs: Path) -> None:
    call, name = ENTRY_POINTS[case]
    with pytest.raises(ChangedetError, match=name):
        call(inputs)


def test_save_checks_its_options_at_the_top(inputs: Path, tmp_path: Path) -> None:
    result = detect_changes(inputs / "before.tif", inputs / "after.tif")
    for folder, kw, name in ((5, {}, "out"), ("", {}, "out"), (tmp_path / "s", {"overwrite": "x"}, "overwrite"),
                             (tmp_path / "s", {"figures": None}, "figures")):
        with pytest.raises(ChangedetError, match=rf"^{name}\b"):
            result.save(folder, **kw)
    assert_nothing_written(tmp_path / "s")


@pytest.mark.parametrize("value, name", [(5, "before"), (None, "before"), (b"before.tif", "before")])
def test_bad_api_inputs(value: Any, name: str, inputs: Path) -> None:
    with pytest.raises(ChangedetError, match=rf"^{name} must be a path"):
        detect_changes(value, inputs / "after.tif")


@pytest.mark.parametrize("crs, transform", [("EPSG:99999", T10), ("not a crs", T10), ("EPSG:32639", "abc")])
def test_georaster_with_an_unknown_crs_or_transform(crs: Any, transform: Any) -> None:
    with pytest.raises(ChangedetError, match=r"^(crs .* is not a coordinate reference system PROJ knows|transform must be)"):
        GeoRaster(np.zeros((1, 4, 4), "float32"), transform, crs)


def test_georaster_with_a_bad_grid_is_refused_by_detect(tmp_path: Path) -> None:
    data = np.random.default_rng(0).uniform(500, 900, (4, 32, 32)).astype("float32")
    south = GeoRaster(data, Affine(10, 0, ORIGIN[0], 0, 10, ORIGIN[1]), "EPSG:32639", BANDS)
    with pytest.raises(ChangedetError, match=r"^before .*south-up"):
        detect_changes(south, south)


# --------------------------------------------------------------------------- output folders
def _out_cases(tmp: Path) -> dict[str, tuple[str, str, list[str]]]:
    (tmp / "a_file").write_text("keep me")
    (tmp / "with_summary_dir" / "summary.json").mkdir(parents=True)
    return {
        "parent_is_a_file": (str(tmp / "a_file" / "sub"), "is a file, not a folder", []),
        "name_too_long": (str(tmp / ("x" * 300)), "give a shorter name", []),
        "newline_in_name": (str(tmp / "new\nline"), "control character", []),
        "tab_in_name": (str(tmp / "tab\there"), "control character", []),
        "empty": ("", "--out is empty", []),
        "blank": ("  ", "--out is empty", []),
        "an_existing_file": (str(tmp / "a_file"), "is an existing file", []),
        "summary_json_is_a_folder": (str(tmp / "with_summary_dir"), "folder named 'summary.json'", ["--overwrite"]),
    }


@pytest.mark.parametrize("case", ["parent_is_a_file", "name_too_long", "newline_in_name", "tab_in_name", "empty",
                                  "blank", "an_existing_file", "summary_json_is_a_folder"])
@pytest.mark.parametrize("command", ["detect", "batch", "demo"])
def test_bad_output_folder(case: str, command: str, inputs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                           monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # `--out ""` must not write into the current folder
    out, says, extra = _out_cases(tmp_path)[case]
    snapshot = sha_tree(tmp_path)
    if command == "detect":
        argv = ["detect", inputs / "before.tif", inputs / "after.tif", "--out", out, *extra]
    elif command == "batch":
        table = inputs / "pairs.csv"
        table.write_text("site,before,after\nsite_a,before.tif,after.tif\n")
        snapshot = sha_tree(tmp_path)
        argv = ["batch", table, "--out", out]
    else:
        argv = ["demo", "--out", out]
    code, err = run_cli(argv, capsys)
    assert_one_line(code, err, command=command, names="--out", says=says)
    assert not any(work.iterdir())
    assert sha_tree(tmp_path) == snapshot  # nothing written anywhere, the existing file untouched
    if command == "detect" and case not in ("blank",):
        with pytest.raises(ChangedetError, match=r"^out\b"):
            detect_changes(inputs / "before.tif", inputs / "after.tif", out=out, overwrite=bool(extra))
        assert sha_tree(tmp_path) == snapshot


# --------------------------------------------------------------------------- batch tables
def _tables(folder: Path) -> dict[str, tuple[Path, str]]:
    def write(name: str, data: bytes | str) -> Path:
        p = folder / name
        p.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
        return p

    header = "site,before,after\n"
    return {
        "latin1": (write("latin1.csv", (header + "sé,before.tif,after.tif\n").encode("latin-1")), "not UTF-8"),
        "utf16": (write("utf16.csv", (header + "s,before.tif,after.tif\n").encode("utf-16")), "UTF-16"),
        "binary": (write("binary.csv", b"\x00\x01PK\x03\x04" + np.random.default_rng(0).bytes(500)), "binary"),
        "field_over_131072": (write("long.csv", header + "s," + "x" * 140_000 + ",after.tif\n"), "field larger"),
        "no_header": (write("noheader.csv", "before.tif,after.tif\n"), "site,before,after"),
        "empty_after": (write("empty_after.csv", header + "s,before.tif,\n"), "line 2"),
        "site_named_batch_csv": (write("batchname.csv", header + "batch.csv,before.tif,after.tif\n"), "batch.csv"),
        "site_of_300_chars": (write("longsite.csv", header + "s" * 300 + ",before.tif,after.tif\n"), "too long"),
        "duplicate_sites": (write("dupes.csv", header + "a,before.tif,after.tif\na,before.tif,after.tif\n"), "unique"),
        "a_folder_named_csv": ((folder / "dir.csv", (folder / "dir.csv").mkdir())[0], "is a folder, not a CSV"),
        "missing": (folder / "missing.csv", "does not exist"),
    }


@pytest.mark.parametrize("case", ["latin1", "utf16", "binary", "field_over_131072", "no_header", "empty_after",
                                  "site_named_batch_csv", "site_of_300_chars", "duplicate_sites", "a_folder_named_csv",
                                  "missing"])
def test_bad_batch_table(case: str, inputs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    table, says = _tables(inputs)[case]
    snapshot = sha_tree(inputs)
    out = tmp_path / "batch_out"
    code, err = run_cli(["batch", table, "--out", out], capsys)
    assert_one_line(code, err, command="batch", names=table.name, says=says)
    assert_nothing_written(out)
    assert sha_tree(inputs) == snapshot
    from changedet.batch import read_pairs

    with pytest.raises(ChangedetError, match=table.name):
        read_pairs(table)


# --------------------------------------------------------------------------- evaluate
def test_evaluate_bad_masks(inputs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(["evaluate", inputs / "before.tif", inputs / "after.tif"], capsys)
    assert_one_line(code, err, command="evaluate", names="before.tif", says="4 bands")
    truth = tif(inputs / "truth.tif", bands=1, dtype="uint8", shape=(48, 48))
    for bad, says in ((RASTERS["past_180"][0](inputs / "truth_180.tif"), "past 180"),
                      (truncated(inputs / "truth_cut.tif"), "corrupt")):
        code, err = run_cli(["evaluate", truth, bad], capsys)
        assert_one_line(code, err, command="evaluate", names=bad.name, says=says)


# --------------------------------------------------------------------------- fetch without network
def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("where", ["refused", "unresolvable"])
def test_fetch_without_network(where: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A catalogue that cannot be reached: 'cannot reach HOST: why; check the network or --stac-url', quickly."""
    pytest.importorskip("pystac_client")
    if where == "refused":
        port = _closed_port()
        url, host, says = f"http://127.0.0.1:{port}/stac", f"127.0.0.1:{port}", "connection refused"
    else:
        url, host, says = "http://no-such-host.invalid/stac", "no-such-host.invalid", "name resolution"
    t0 = time.perf_counter()
    code, err = run_cli(["fetch", "--bbox", "51.0,55.9,51.01,55.91", "--before", "2024-06-01/2024-06-30",
                         "--after", "2025-06-01/2025-06-30", "--out", tmp_path / "f", "--stac-url", url], capsys)
    assert time.perf_counter() - t0 < 15
    line = assert_one_line(code, err, command="fetch", names=f"cannot reach {host}", says=says)
    assert "check the network or --stac-url" in line
    assert_nothing_written(tmp_path / "f")


# --------------------------------------------------------------------------- odd inputs say what they did not write
def test_png_pair_says_there_is_no_geopackage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    img = rng.integers(60, 120, (64, 80, 3)).astype("uint8")
    after = img.copy()
    after[20:32, 30:44] = 240
    Image.fromarray(img).save(tmp_path / "b.png")
    Image.fromarray(after).save(tmp_path / "a.png")
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["detect", str(tmp_path / "b.png"), str(tmp_path / "a.png"), "--out", str(out), "--no-figures"]) == 0
    stdout = capsys.readouterr().out
    assert "no changes.gpkg: the images have no georeferencing" in stdout
    summary = json.loads((out / "summary.json").read_text())
    assert "changes.gpkg" not in summary["outputs"]
    assert "no georeferencing" in summary["outputs_not_written"]["changes.gpkg"]
    assert not (out / "changes.gpkg").exists()
