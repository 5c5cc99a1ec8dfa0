"""The package as a user installs it: a wheel in a new environment, then ``changedet demo``.

The wheel is built from a copy of this checkout with the build backend of the test
environment (no download) and installed without its dependencies into a new virtual
environment; a ``.pth`` file puts the test environment's site-packages behind the new
one's, so the dependencies are the ones already installed.  The demo then runs there
from a folder outside the checkout: it must find the sample tiles inside the installed
package, and it runs with no numba cache, as the first run after an install does.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: what a wheel is built from (as in an sdist)
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "changedet", "sample_tiles")
#: the accuracy the demo reaches on each bundled pair, with room for method changes
F1_FLOOR = {"hires_rgb": 0.85, "s2_like": 0.90}
OUTPUTS = ("change_mask.tif", "change_score.tif", "changes.geojson", "overview.png", "score_histogram.png",
           "summary.json")


def _build_backend_args() -> list[str]:
    """pip options that build the wheel offline where the test environment has the backend."""
    try:
        import setuptools
    except ImportError:
        return []
    version = tuple(int(x) for x in re.findall(r"\d+", setuptools.__version__)[:2])
    return ["--no-build-isolation", "--no-index"] if version >= (77, 0) else []


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc", "*.egg-info", "build", "dist")
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=ignore)
        else:
            shutil.copy2(path, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", *_build_backend_args(),
                    "-w", str(root / "dist"), str(src)], check=True, cwd=root, timeout=600)
    (built,) = (root / "dist").glob("changedet-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``bin`` of a new virtual environment holding the wheel (dependencies: this environment's)."""
    root = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120)
    py = root / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index",
                    "--quiet", str(wheel)], check=True, timeout=300)
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True, timeout=60).stdout.strip()
    deps = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    Path(site, "_changedet_deps.pth").write_text("".join(f"{p}\n" for p in deps))
    return root / "bin"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CHANGEDET_SAMPLE_TILES", "NUMBA_CACHE_DIR", "PYTHONPATH")}
    env["MPLBACKEND"] = "Agg"
    return env


def test_wheel_carries_the_sample_tiles(wheel: Path) -> None:
    import zipfile

    names = set(zipfile.ZipFile(wheel).namelist())
    registry = json.loads((REPO / "sample_tiles" / "registry.json").read_text())
    expected = {f"changedet/sample_tiles/{pair}/{fname}" for pair, entry in registry["pairs"].items()
                for fname in entry["files"]}
    expected |= {f"changedet/sample_tiles/series/{name}/{fname}" for name, entry in registry.get("series", {}).items()
                 for fname in entry["files"]}
    assert expected | {"changedet/sample_tiles/registry.json", "changedet/py.typed"} <= names


def test_installed_package_finds_its_tiles(installed: Path, tmp_path: Path) -> None:
    code = "import changedet, changedet.data as d; print(changedet.__file__); print(d.sample_tiles_dir())"
    out = subprocess.run([str(installed / "python"), "-c", code], cwd=tmp_path, env=_env(), check=True,
                         capture_output=True, text=True, timeout=120).stdout.split("\n")
    venv = installed.parent.resolve()
    assert Path(out[0]).resolve().is_relative_to(venv), "changedet was not imported from the new environment"
    assert Path(out[1]).resolve() == Path(out[0]).resolve().parent / "sample_tiles"


def test_demo_runs_from_the_wheel(installed: Path, tmp_path: Path) -> None:
    out = tmp_path / "demo"
    proc = subprocess.run([str(installed / "changedet"), "demo", "--out", str(out)], cwd=tmp_path, env=_env(),
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    printed = dict(re.findall(r"^\[(\w+)\].*?accuracy vs truth: F1 ([0-9.]+)", proc.stdout, re.M | re.S))
    assert sorted(printed) == sorted(F1_FLOOR), proc.stdout
    venv = installed.parent.resolve()
    for name, floor in F1_FLOOR.items():
        for fname in OUTPUTS:
            assert (out / name / fname).is_file() and (out / name / fname).stat().st_size > 0, (name, fname)
        summary = json.loads((out / name / "summary.json").read_text())
        assert printed[name] == f"{summary['accuracy']['f1']:.3f}"
        assert float(printed[name]) >= floor, (name, printed[name])
        # the inputs were the tiles inside the installed package, not the checkout's
        assert Path(summary["inputs"]["before"]["path"]).resolve().is_relative_to(venv)
