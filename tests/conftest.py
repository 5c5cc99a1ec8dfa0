"""Shared, layered fixtures: grid -> pair of arrays -> files in ``tmp_path``.

* ``grid``: a UTM 39N (EPSG:32639) 10 m grid.
* ``scene``: a textured 4-band (B02, B03, B04, B08) vegetated "before" image and an
  "after" image that differs by a little sensor noise and one planted bright 6 x 10 px
  building (60 px = 6000 m2).  Arrays are read-only, so a function that modifies its
  input fails loudly.
* ``pair_tifs``: the scene written as two uint16 GeoTIFFs with band descriptions.
* ``s2_folder``: a Sentinel-2 style band folder with 10, 20 and 60 m bands whose file
  names use both the old (``S2A_OPER_...``) and the new (``T39UWB_...``) naming.
* ``png_pair``: an RGB PNG pair without georeferencing.
* ``oscd``: the real OSCD pairs in ``../shared/data/oscd`` (skips when absent).

Helpers that tests call directly are exposed through fixtures (``make_tif``,
``textured``) rather than imported from this module.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning
from scipy import ndimage

from changedet.raster import GeoRaster, Grid

os.environ.setdefault("MPLBACKEND", "Agg")

BANDS = ("B02", "B03", "B04", "B08")
UTM39 = CRS.from_epsg(32639)
ORIGIN = (500_000.0, 6_200_000.0)  # about 51 E, 56 N
SHAPE = (192, 224)
#: the planted building (rows, cols) slices: 6 x 10 pixels
BUILDING = (slice(80, 86), slice(100, 110))
BUILDING_AREA_M2 = 6 * 10 * 100.0
#: vegetation before, bright roof after (B02, B03, B04, B08)
VEGETATION = np.array([600.0, 800.0, 700.0, 2600.0])
ROOF = np.array([2100.0, 2200.0, 2300.0, 2500.0])

OSCD_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "oscd"


def textured_field(shape: Sequence[int], *, seed: int, sigma: float = 2.0) -> np.ndarray:
    """Zero-mean, unit-std smooth random texture of ``shape`` (float64)."""
    rng = np.random.default_rng(seed)
    noise = ndimage.gaussian_filter(rng.normal(size=tuple(shape)), sigma, mode="wrap")
    return (noise - noise.mean()) / noise.std()


def textured_image(shape: Sequence[int], *, seed: int, base: np.ndarray = VEGETATION) -> np.ndarray:
    """A (bands, rows, cols) float32 image: per-band level + shared fine and coarse texture."""
    fine = textured_field(shape, seed=seed, sigma=1.5)
    coarse = textured_field(shape, seed=seed + 1, sigma=12.0)
    own = textured_field((len(base), *shape), seed=seed + 2, sigma=1.0)
    amp = 0.18 * base[:, None, None]
    img = base[:, None, None] + amp * (0.7 * fine + 0.5 * coarse + 0.2 * own)
    return np.clip(img, 50, 10_000).astype("float32")


@dataclass(frozen=True)
class Scene:
    before: np.ndarray  # (4, rows, cols) float32, read-only
    after: np.ndarray  # (4, rows, cols) float32, read-only
    truth: np.ndarray  # (rows, cols) bool, read-only: the planted building
    transform: Affine
    crs: CRS
    band_names: tuple[str, ...] = BANDS

    def rasters(self) -> tuple[GeoRaster, GeoRaster]:
        return (
            GeoRaster(self.before, self.transform, self.crs, self.band_names),
            GeoRaster(self.after, self.transform, self.crs, self.band_names),
        )


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.setflags(write=False)
    return a


def make_scene(*, seed: int = 7, shift: tuple[float, float] = (0.0, 0.0), shape: tuple[int, int] = SHAPE) -> Scene:
    """The synthetic pair; ``shift`` (rows, cols) displaces the whole after image (mis-registration).

    ``truth`` is the building's footprint on the before grid.
    """
    if shape[0] < BUILDING[0].stop or shape[1] < BUILDING[1].stop:
        raise ValueError(f"shape {shape} is too small to hold the building at {BUILDING}")
    before = textured_image(shape, seed=seed)
    rng = np.random.default_rng(seed + 100)
    truth = np.zeros(shape, bool)
    truth[BUILDING] = True
    after = before.astype("float64")
    after[:, truth] = ROOF[:, None] + rng.normal(0, 20, size=(len(ROOF), int(truth.sum())))
    if shift != (0.0, 0.0):
        # the whole after image (building included) lands displaced on the grid
        after = np.stack([ndimage.shift(b, shift, order=3, mode="nearest") for b in after])
    after = after + rng.normal(0, 8, size=after.shape)  # sensor noise, ~1 % of the signal
    t = Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1])
    return Scene(_readonly(before), _readonly(after.astype("float32")), _readonly(truth), t, UTM39)


def write_tif(
    path: Path,
    data: np.ndarray,
    *,
    transform: Affine | None = None,
    crs: CRS | str | None = None,
    dtype: str = "uint16",
    nodata: float | None = None,
    descriptions: Sequence[str] | None = None,
    driver: str = "GTiff",
) -> Path:
    """Write ``data`` ((bands, rows, cols) or (rows, cols)) with rasterio directly."""
    arr = np.asarray(data)
    if arr.ndim == 2:
        arr = arr[np.newaxis]
    if np.issubdtype(np.dtype(dtype), np.integer):
        info = np.iinfo(np.dtype(dtype))
        arr = np.clip(np.rint(np.nan_to_num(arr, nan=nodata if nodata is not None else 0)), info.min, info.max)
    profile = dict(driver=driver, width=arr.shape[2], height=arr.shape[1], count=arr.shape[0], dtype=dtype)
    if crs is not None:
        profile["crs"] = crs
    if transform is not None:
        profile["transform"] = transform
    if nodata is not None:
        profile["nodata"] = nodata
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(arr.astype(dtype))
            for i, name in enumerate(descriptions or (), start=1):
                dst.set_band_description(i, name)
    return Path(path)


def sample_pairs_folder(folder: Path, sites: Sequence[str], sample: str = "s2_like") -> Path:
    """A batch folder: one subfolder per site holding before.tif / after.tif, links to a bundled pair."""
    from changedet import data

    src = data.sample_path(sample)
    for site in sites:
        (folder / site).mkdir(parents=True)
        for name in ("before.tif", "after.tif"):
            (folder / site / name).symlink_to(src / name)
    return folder


def live_pids(*, parent: int | None = None, session: int | None = None) -> list[int]:
    """Running processes (zombies left out) with this parent pid or in this session, from /proc."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()  # state, ppid, pgrp, session, ...
            except OSError:
                continue
            if fields[0] != "Z" and (parent is None or int(fields[1]) == parent) and (
                    session is None or int(fields[3]) == session):
                pids.append(int(d.name))
    return pids


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def grid() -> Grid:
    """UTM 39N 10 m grid of the synthetic scene."""
    return Grid(SHAPE, Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1]), UTM39)


@pytest.fixture(scope="session")
def scene(grid: Grid) -> Scene:
    s = make_scene()
    assert s.before.shape[1:] == grid.shape and s.transform == grid.transform
    return s


@pytest.fixture(scope="session")
def make_tif() -> Callable[..., Path]:
    return write_tif


@pytest.fixture(scope="session")
def textured() -> Callable[..., np.ndarray]:
    return textured_field


@dataclass(frozen=True)
class PairFiles:
    before: Path
    after: Path


@pytest.fixture
def pair_tifs(tmp_path: Path, scene: Scene) -> PairFiles:
    """before.tif / after.tif: uint16, EPSG:32639 10 m, descriptions B02..B08, nodata 0.

    The before image has a 3 x 3 nodata block in its top-left corner.
    """
    before = np.array(scene.before)
    before[:, :3, :3] = 0
    kw = dict(transform=scene.transform, crs=scene.crs, nodata=0, descriptions=BANDS)
    b = write_tif(tmp_path / "before.tif", before, **kw)
    a = write_tif(tmp_path / "after.tif", scene.after, **kw)
    return PairFiles(b, a)


#: (file name, band, resolution m, value): 10 m bands in the new naming, 20/60 m in the old
S2_FILES = [
    ("T39UWB_20250612T073621_B02.tif", "B02", 10, 1020),
    ("T39UWB_20250612T073621_B03.tif", "B03", 10, 1030),
    ("T39UWB_20250612T073621_B04.tif", "B04", 10, 1040),
    ("T39UWB_20250612T073621_B08.tif", "B08", 10, 1080),
    ("S2A_OPER_MSI_L1C_TL_EPA__20250612T155721_A000849_T39UWB_B8A.tif", "B8A", 20, 1085),
    ("S2A_OPER_MSI_L1C_TL_EPA__20250612T155721_A000849_T39UWB_B11.tif", "B11", 20, 1110),
    ("S2A_OPER_MSI_L1C_TL_EPA__20250612T155721_A000849_T39UWB_B01.tif", "B01", 60, 1010),
]
S2_SIZE_M = 600  # every band covers 600 m x 600 m


@pytest.fixture
def s2_folder(tmp_path: Path) -> Path:
    """A band folder: each band constant (the value in ``S2_FILES``) on its own 10/20/60 m grid."""
    folder = tmp_path / "S2_band_set"
    folder.mkdir()
    for name, _code, res, value in S2_FILES:
        n = S2_SIZE_M // res
        write_tif(
            folder / name,
            np.full((n, n), value),
            transform=Affine(res, 0, ORIGIN[0], 0, -res, ORIGIN[1]),
            crs=UTM39,
        )
    (folder / "MTD_TL.xml").write_text("<metadata/>")  # non-raster files are ignored
    return folder


@pytest.fixture
def png_pair(tmp_path: Path) -> PairFiles:
    """RGB PNGs (uint8, 96 x 128) without georeferencing; after has a bright 8 x 12 px block."""
    from PIL import Image

    rows, cols = 96, 128
    base = np.array([90.0, 120.0, 70.0])
    tex = textured_field((rows, cols), seed=3, sigma=1.5)
    before = np.clip(base[None, None, :] * (1 + 0.25 * tex[..., None]), 0, 255)
    rng = np.random.default_rng(4)
    after = np.clip(before + rng.normal(0, 2, before.shape), 0, 255)
    after[40:48, 60:72] = [235, 230, 225]
    b, a = tmp_path / "before.png", tmp_path / "after.png"
    Image.fromarray(before.astype("uint8"), "RGB").save(b)
    Image.fromarray(after.astype("uint8"), "RGB").save(a)
    return PairFiles(b, a)


@pytest.fixture(scope="session")
def oscd() -> Path:
    """The OSCD root (``CITY/imgs_1``, ``CITY/imgs_2``, ``CITY/cm``); skips when absent."""
    if not (OSCD_ROOT / "rennes" / "imgs_1").is_dir():
        pytest.skip(f"OSCD data not found at {OSCD_ROOT}")
    return OSCD_ROOT
