"""Benchmark every change method over the OSCD cities.

Usage::

    python benchmarks/methods.py [OSCD_DIR] [--methods auto,cva,...] [--cities a,b] [--no-pipeline]

By default each city goes through ``changedet.pipeline.detect_changes`` exactly as a
user would run it (``read_raster`` of each date's band folder, alignment onto the
before grid, co-registration, cloud/shadow masks, the method's own threshold, the
pipeline's clean-up and mapping unit); the mask (255 nodata counted as no change)
is compared with ``CITY/cm/CITY-cm.tif`` (2 = change).  ``--no-pipeline`` instead
reads the bands here (10 m grid, after reprojected onto the before grid,
phase-correlation co-registration), calls ``change_score`` + ``compute_threshold``
directly and cleans with a 1 px opening and a 4 px mapping unit.

Prints per-city and mean F1 and Cohen's kappa of the change class.

Data: Caye Daudt, Le Saux, Boulch, Gousseau, "Urban Change Detection for
Multispectral Earth Observation Using Convolutional Neural Networks",
IGARSS 2018; Copernicus Sentinel-2 data.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFAULT_OSCD = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "oscd"
CITIES = ("aguasclaras", "bercy", "bordeaux", "nantes", "paris", "rennes", "saclay_e")
BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
MIN_AREA_PX = 4  # minimum mapping unit: 400 m2 at 10 m
OPENING_PX = 1


@dataclass(frozen=True)
class CityPair:
    name: str
    before: np.ndarray  # (bands, rows, cols) float32
    after: np.ndarray
    band_names: tuple[str, ...]
    truth: np.ndarray  # (rows, cols) bool, True = change
    pixel_size_m: float
    shift: tuple[float, float]


def _read_folder(folder: Path):
    try:
        from changedet.io import read_raster
    except ImportError:  # pragma: no cover - before io.py existed
        read_raster = None
    if read_raster is not None:
        r = read_raster(folder)
        return r.data, r.transform, r.crs, r.band_names
    raise RuntimeError("changedet.io.read_raster is needed")


def coregister(before: np.ndarray, after: np.ndarray, band_names, *, upsample_factor: int = 10):
    """Shift ``after`` onto ``before`` by phase correlation of the 10 m visible/nir mean."""
    from scipy import ndimage
    from skimage.registration import phase_cross_correlation

    idx = [i for i, n in enumerate(band_names) if n in ("B02", "B03", "B04", "B08")] or list(range(len(band_names)))

    def ref(img):
        m = np.nanmean(img[idx], axis=0)
        m = np.where(np.isfinite(m), m, np.nanmedian(m))
        return (m - m.mean()) / (m.std() + 1e-9)

    shift, _, _ = phase_cross_correlation(ref(before), ref(after), upsample_factor=upsample_factor)
    shifted = np.stack([
        ndimage.shift(np.nan_to_num(b, nan=float(np.nanmedian(b))), shift, order=1, mode="nearest") for b in after
    ]).astype(np.float32)
    # pixels shifted in from outside the image are not valid
    rows, cols = before.shape[1:]
    valid = np.ones((rows, cols), bool)
    r, c = int(np.ceil(abs(shift[0]))), int(np.ceil(abs(shift[1])))
    if r:
        valid[:r] = valid[:r] & (shift[0] <= 0)
        valid[-r:] = valid[-r:] & (shift[0] >= 0)
    if c:
        valid[:, :c] = valid[:, :c] & (shift[1] <= 0)
        valid[:, -c:] = valid[:, -c:] & (shift[1] >= 0)
    shifted[:, ~valid] = np.nan
    return shifted, (float(shift[0]), float(shift[1]))


def load_city(city_dir: Path, *, register: bool = True) -> CityPair:
    """One OSCD city as arrays on the date-1 10 m grid."""
    import rasterio
    from rasterio.warp import Resampling, reproject

    name = city_dir.name
    b_data, b_tr, b_crs, b_names = _read_folder(city_dir / "imgs_1")
    a_data, a_tr, a_crs, a_names = _read_folder(city_dir / "imgs_2")
    names = tuple(n for n in b_names if n in a_names)
    b_data = b_data[[b_names.index(n) for n in names]]
    a_src = a_data[[a_names.index(n) for n in names]]
    if a_src.shape != b_data.shape or not np.allclose(tuple(a_tr), tuple(b_tr)):
        a_data = np.full_like(b_data, np.nan)
        for i in range(len(names)):
            reproject(a_src[i], a_data[i], src_transform=a_tr, src_crs=a_crs, dst_transform=b_tr, dst_crs=b_crs,
                      src_nodata=np.nan, dst_nodata=np.nan, resampling=Resampling.bilinear)
    else:
        a_data = a_src
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(city_dir / "cm" / f"{name}-cm.tif") as src:
            truth = src.read(1) == 2
    shift = (0.0, 0.0)
    if register:
        a_data, shift = coregister(b_data, a_data, names)
    return CityPair(name, b_data.astype(np.float32), a_data.astype(np.float32), names, truth, 10.0, shift)


def clean(mask: np.ndarray, *, opening_px: int = OPENING_PX, min_area_px: int = MIN_AREA_PX) -> np.ndarray:
    """The pipeline's post-processing: opening, then small objects removed."""
    try:
        from changedet.objects import clean_mask

        return clean_mask(mask, opening_px=opening_px, min_area_px=min_area_px)
    except (ImportError, TypeError):
        from scipy import ndimage

        out = np.asarray(mask, bool)
        if opening_px:
            out = ndimage.binary_opening(out, structure=ndimage.generate_binary_structure(2, 1),
                                         iterations=opening_px)
        if min_area_px > 1:
            labels, n = ndimage.label(out, structure=np.ones((3, 3)))
            sizes = np.bincount(labels.ravel())
            keep = sizes >= min_area_px
            keep[0] = False
            out = keep[labels]
        return out


def scores(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """F1 of the change class and Cohen's kappa."""
    tp = float(np.sum(pred & truth))
    fp = float(np.sum(pred & ~truth))
    fn = float(np.sum(~pred & truth))
    tn = float(pred.size - tp - fp - fn)
    n = tp + fp + fn + tn
    f1 = 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else 1.0
    po = (tp + tn) / n
    pe = ((tp + fp) * (tp + fn) + (fn + tn) * (fp + tn)) / (n * n)
    kappa = (po - pe) / (1 - pe) if pe < 1 else 1.0
    return f1, kappa


def run_method(pair: CityPair, method: str) -> np.ndarray:
    """Score, threshold and clean one city with one method, without the pipeline; returns the bool mask."""
    from changedet.change import change_score
    from changedet.masks import exclusion_mask
    from changedet.threshold import apply_threshold, compute_threshold

    valid = ~exclusion_mask(pair.before, pair.after, band_names=pair.band_names)
    res = change_score(pair.before, pair.after, method=method, band_names=pair.band_names,
                       pixel_size_m=pair.pixel_size_m, valid=valid)
    t = compute_threshold(res.score, method=res.threshold_method, valid=valid)
    return clean(apply_threshold(res.score, t, valid=valid))


def run_pipeline(city_dir: Path, method: str, *, after_transform=None) -> tuple[np.ndarray, dict]:
    """One city through ``changedet.pipeline.detect_changes``; returns (bool mask, summary).

    ``after_transform``, a function of the after GeoRaster, perturbs the after image
    first (gain/offset, shift) for the robustness checks.
    """
    from changedet.io import read_raster
    from changedet.pipeline import detect_changes

    before = read_raster(city_dir / "imgs_1")
    after = read_raster(city_dir / "imgs_2")
    if after_transform is not None:
        after = after_transform(after)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = detect_changes(before, after, method=method)
    mask = res.mask.data[0] == 1
    return mask, getattr(res, "summary", {})


def truth_of(city_dir: Path) -> np.ndarray:
    import rasterio

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(city_dir / "cm" / f"{city_dir.name}-cm.tif") as src:
            return src.read(1) == 2


def have_pipeline() -> bool:
    try:
        from changedet.pipeline import detect_changes  # noqa: F401
        from changedet.io import read_raster  # noqa: F401
    except ImportError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    from changedet.change import METHODS

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("oscd", nargs="?", default=str(DEFAULT_OSCD), help="OSCD folder (default: %(default)s)")
    p.add_argument("--methods", default=None, help="comma-separated methods (default: all)")
    p.add_argument("--cities", default=None, help="comma-separated cities (default: all found)")
    p.add_argument("--no-pipeline", action="store_true",
                   help="score with change/threshold directly instead of changedet.pipeline.detect_changes")
    args = p.parse_args(argv)
    root = Path(args.oscd)
    if not root.is_dir():
        print(f"OSCD folder {root} not found; pass its path as the first argument", file=sys.stderr)
        return 2
    cities = args.cities.split(",") if args.cities else [c for c in CITIES if (root / c).is_dir()]
    methods = args.methods.split(",") if args.methods else list(METHODS)
    use_pipeline = have_pipeline() and not args.no_pipeline
    if use_pipeline:
        truths = {c: truth_of(root / c) for c in cities}
    else:
        pairs = {c: load_city(root / c) for c in cities}
    table: dict[str, list[tuple[float, float]]] = {}
    for m in methods:
        t0 = time.perf_counter()
        row = []
        for c in cities:
            if use_pipeline:
                row.append(scores(run_pipeline(root / c, m)[0], truths[c]))
            else:
                row.append(scores(run_method(pairs[c], m), pairs[c].truth))
        row.append(tuple(np.mean(row, axis=0)))  # type: ignore[arg-type]
        table[m] = row
        print(f"  {m}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    print(f"OSCD {root} via {'changedet.pipeline.detect_changes' if use_pipeline else 'change_score + threshold'}")
    cols = [c[:9] for c in cities] + ["MEAN"]
    for metric, k in (("F1", 0), ("kappa", 1)):
        print(f"\n{metric}")
        print(f"{'method':<18}" + "".join(f"{c:>10}" for c in cols))
        for m in methods:
            print(f"{m:<18}" + "".join(f"{v[k]:>10.3f}" for v in table[m]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
