"""Tests of changedet.data: the bundled sample pairs, their registry and the generator script."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from changedet import data
from changedet.errors import ChangedetError, InvalidParameterError, RasterReadError

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "sample_tiles" / "make_sample_tiles.py"
# (resolution m, shape, band names, sane range of the changed fraction)
EXPECTED = {
    "s2_like": (10.0, (4, 300, 300), ("B02", "B03", "B04", "B08"), (0.02, 0.08)),
    "hires_rgb": (1.0, (3, 800, 800), ("red", "green", "blue"), (0.2, 0.7)),
}


@pytest.fixture
def sample_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of sample_tiles/ that CHANGEDET_SAMPLE_TILES points at."""
    root = tmp_path / "tiles"
    shutil.copytree(data.sample_tiles_dir(), root, ignore=shutil.ignore_patterns("*.py", "*.md", "__pycache__"))
    monkeypatch.setenv(data.SAMPLE_TILES_ENV, str(root))
    return root


def test_list_samples() -> None:
    assert data.list_samples() == sorted(EXPECTED)


def test_default_folder_is_beside_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(data.SAMPLE_TILES_ENV, raising=False)
    assert data.sample_tiles_dir() == REPO / "sample_tiles"
    assert data.sample_path("s2_like") == REPO / "sample_tiles" / "s2_like"


def test_default_folder_is_the_package_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the variable the folder comes from importlib.resources (wheel or editable install)."""
    monkeypatch.delenv(data.SAMPLE_TILES_ENV, raising=False)
    asked = []

    def files(package: str) -> Path:
        asked.append(package)
        return tmp_path

    monkeypatch.setattr(data.resources, "files", files)
    assert data.sample_tiles_dir() == tmp_path.resolve()
    assert asked == ["changedet.sample_tiles"]
    with pytest.raises(RasterReadError, match=r"registry.*not found.*lacks the package data changedet\.sample_tiles"):
        data.list_samples()


def test_checkout_without_install_uses_its_own_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    """An editable install made before the tiles were package data still finds them."""
    monkeypatch.delenv(data.SAMPLE_TILES_ENV, raising=False)

    def files(package: str) -> Path:
        raise ModuleNotFoundError(f"No module named {package!r}")

    monkeypatch.setattr(data.resources, "files", files)
    assert data.sample_tiles_dir() == REPO / "sample_tiles"


def test_tiles_inside_a_zip_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import zipfile

    monkeypatch.delenv(data.SAMPLE_TILES_ENV, raising=False)
    archive = tmp_path / "changedet.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("changedet/sample_tiles/registry.json", "{}")
    monkeypatch.setattr(data.resources, "files", lambda package: zipfile.Path(archive, "changedet/sample_tiles/"))
    with pytest.raises(RasterReadError, match=r"inside an archive.*CHANGEDET_SAMPLE_TILES"):
        data.sample_tiles_dir()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_load_sample_grids_and_truth(name: str) -> None:
    res, shape, bands, (lo, hi) = EXPECTED[name]
    pair = data.load_sample(name)
    assert pair.name == name
    assert pair.description == data.sample_info(name)["description"] and "dormitory" in pair.description
    for raster in (pair.before, pair.after):
        assert raster.shape == shape
        assert raster.band_names == bands
        assert raster.crs is not None and raster.crs.to_epsg() == 32639
        assert raster.res == pytest.approx((res, res), abs=1e-9)
        assert np.isfinite(raster.data).all()
    assert pair.before.grid.same_as(pair.after.grid)
    assert pair.before.grid.same_as(pair.truth.grid)
    assert pair.truth.count == 1
    assert set(np.unique(pair.truth.data)) <= {0.0, 1.0}
    fraction = float(pair.truth.data.mean())
    assert lo < fraction < hi
    assert fraction == pytest.approx(data.sample_info(name)["change_fraction"], abs=1e-4)


def test_s2_like_values_are_reflectance_x_10000() -> None:
    pair = data.load_sample("s2_like")
    nir, red = pair.before.band("B08"), pair.before.band("B04")
    assert 0 < float(pair.before.data.min()) and float(pair.before.data.max()) < 10000
    # a vegetated scene: NIR above red over most of it
    assert float(np.mean(nir > red)) > 0.6


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_truth_marks_where_the_images_changed(name: str) -> None:
    """Known answer: inside the truth the two dates differ several times more than outside it.

    Each date is standardized with the statistics of the unchanged pixels (so a change that
    covers half the image does not skew the scale), then the change-vector magnitude compared.
    """
    pair = data.load_sample(name)
    truth = pair.truth.data[0] == 1

    def z(a: np.ndarray) -> np.ndarray:
        same = a[:, ~truth]
        return (a - same.mean(1)[:, None, None]) / same.std(1)[:, None, None]

    magnitude = np.sqrt(((z(pair.after.data) - z(pair.before.data)) ** 2).sum(0))
    assert np.median(magnitude[truth]) > 4 * np.median(magnitude[~truth])
    # and the truth is not the whole change: a shifted truth explains the images less well
    moved = np.roll(truth, 15, axis=1)
    assert np.median(magnitude[moved & ~truth]) < 0.5 * np.median(magnitude[truth])


def test_unknown_sample_names_the_choices() -> None:
    with pytest.raises(InvalidParameterError, match=r"name='nope' is not a sample; choose one of \['hires_rgb', 's2_like'\]"):
        data.load_sample("nope")
    with pytest.raises(InvalidParameterError, match="not a sample"):
        data.sample_path("nope")


def test_corrupted_file_is_reported(sample_copy: Path) -> None:
    path = sample_copy / "s2_like" / "after.tif"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(RasterReadError, match=r"after\.tif.*corrupted.*python sample_tiles/make_sample_tiles\.py") as info:
        data.load_sample("s2_like")
    assert isinstance(info.value, ChangedetError) and isinstance(info.value, OSError)
    # the other pair in the same copy is untouched and still loads
    assert data.load_sample("hires_rgb").truth.shape == (1, 800, 800)


def test_missing_file_is_reported(sample_copy: Path) -> None:
    (sample_copy / "hires_rgb" / "truth.tif").unlink()
    with pytest.raises(RasterReadError, match=r"truth\.tif.*is missing.*make_sample_tiles\.py"):
        data.load_sample("hires_rgb")


def test_folder_without_registry_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(data.SAMPLE_TILES_ENV, str(tmp_path))
    with pytest.raises(RasterReadError, match=r"registry.*not found.*CHANGEDET_SAMPLE_TILES"):
        data.list_samples()


def test_invalid_registry_is_reported(sample_copy: Path) -> None:
    (sample_copy / "registry.json").write_text("{not json")
    with pytest.raises(RasterReadError, match=r"registry.*is not valid.*make_sample_tiles\.py"):
        data.list_samples()


def test_verify_false_skips_the_hash_check(sample_copy: Path) -> None:
    registry = json.loads((sample_copy / "registry.json").read_text())
    registry["pairs"]["s2_like"]["files"]["truth.tif"]["sha256"] = "0" * 64
    (sample_copy / "registry.json").write_text(json.dumps(registry))
    with pytest.raises(RasterReadError, match="truth.tif"):
        data.load_sample("s2_like")
    assert data.load_sample("s2_like", verify=False).truth.shape == (1, 300, 300)


def test_generator_is_deterministic(tmp_path: Path) -> None:
    """Re-running the script reproduces the shipped pixels, grids and registry facts.

    Pixels are compared rather than file bytes, so another GDAL/zlib build (which may
    compress differently) does not fail the test while a change of the scene does.
    """
    import numpy as np
    import rasterio

    subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path)], check=True, capture_output=True, timeout=180)
    made = json.loads((tmp_path / "registry.json").read_text())
    shipped = json.loads((REPO / "sample_tiles" / "registry.json").read_text())
    assert made.keys() == shipped.keys()
    for name, entry in shipped["pairs"].items():
        assert {k: v for k, v in made["pairs"][name].items() if k != "files"} == {
            k: v for k, v in entry.items() if k != "files"
        }
        for fname in entry["files"]:
            with rasterio.open(tmp_path / name / fname) as a, rasterio.open(REPO / "sample_tiles" / name / fname) as b:
                assert a.crs == b.crs and a.transform == b.transform and a.descriptions == b.descriptions
                assert np.array_equal(a.read(), b.read()), f"{name}/{fname} pixels differ"