"""Batch runs: CSV and folder inputs, failures recorded, resume, dask.distributed."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from scipy import ndimage

from changedet.batch import Pair, read_pairs, run_batch
from changedet.errors import ChangedetError, InvalidParameterError


def _write(path: Path, data: np.ndarray, *, x0: float = 500000.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(
        path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
        dtype="uint16", crs="EPSG:32639", transform=Affine(10, 0, x0, 0, -10, 6190000),
    ) as dst:
        dst.write(data.astype("uint16"))
        for i, n in enumerate(("B02", "B03", "B04", "B08"), start=1):
            dst.set_band_description(i, n)


def _pair(folder: Path, seed: int, *, building: bool = True) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    base = ndimage.gaussian_filter(rng.normal(size=(4, 96, 96)), (0, 3, 3))
    img = (800 + 400 * base / base.std()).clip(1, None)
    after = img.copy()
    if building:
        after[:, 40:52, 30:50] += 2500
    _write(folder / "before.tif", img)
    _write(folder / "after.tif", after)
    return folder / "before.tif", folder / "after.tif"


@pytest.fixture()
def pair_folder(tmp_path: Path) -> Path:
    root = tmp_path / "sites"
    for i in range(3):
        _pair(root / f"site{i}", i)
    return root


def test_read_pairs_from_folder_and_csv(pair_folder: Path, tmp_path: Path) -> None:
    pairs = read_pairs(pair_folder)
    assert [p.site for p in pairs] == ["site0", "site1", "site2"]
    assert pairs[0].before.endswith("before.tif") and pairs[0].after.endswith("after.tif")
    csv_path = pair_folder / "pairs.csv"
    csv_path.write_text("site,before,after\nA b,site0/before.tif,site0/after.tif\n", encoding="utf-8")
    (p,) = read_pairs(csv_path)
    assert p.site == "A_b"  # made safe for a folder name
    assert Path(p.before) == pair_folder / "site0" / "before.tif"


def test_read_pairs_errors(tmp_path: Path) -> None:
    with pytest.raises(ChangedetError, match="does not exist"):
        read_pairs(tmp_path / "nope.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("name,t1,t2\nx,a,b\n", encoding="utf-8")
    with pytest.raises(ChangedetError, match="site,before,after"):
        read_pairs(bad)
    with pytest.raises(ChangedetError, match="holds no pairs"):
        read_pairs(tmp_path)
    with pytest.raises(ChangedetError, match="unique"):
        read_pairs([("a", "x", "y"), ("a", "x", "y")])


def test_batch_runs_records_failures_and_writes_tables(pair_folder: Path, tmp_path: Path) -> None:
    broken = pair_folder / "site_broken"
    broken.mkdir()
    (broken / "before.tif").write_bytes(b"not a raster")
    (broken / "after.tif").write_bytes(b"not a raster")
    out = tmp_path / "out"
    res = run_batch(pair_folder, out, progress=False)
    status = {o.site: o.status for o in res.outcomes}
    assert status == {"site0": "done", "site1": "done", "site2": "done", "site_broken": "failed"}
    failed = next(o for o in res.outcomes if o.status == "failed")
    assert "not a raster" in failed.error
    assert not (out / "site_broken" / "summary.json").exists()
    rows = list(csv.DictReader((out / "batch.csv").read_text(encoding="utf-8").splitlines()))
    assert [r["site"] for r in rows] == ["site0", "site1", "site2", "site_broken"]
    assert rows[0]["n_changes"] == "1"
    assert abs(float(rows[0]["changed_area_m2"]) - 240 * 100) / 24000 < 0.15
    gj = json.loads((out / "batch_changes.geojson").read_text(encoding="utf-8"))
    assert {f["properties"]["site"] for f in gj["features"]} == {"site0", "site1", "site2"}


def test_batch_resumes_and_never_trusts_half_done(pair_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = run_batch(pair_folder, out, progress=False)
    assert all(o.status == "done" for o in first.outcomes)
    # simulate a kill half-way through site1: its summary never landed
    (out / "site1" / "summary.json").unlink()
    (out / "site1" / "change_mask.tif").write_bytes(b"half")
    stamp = (out / "site0" / "summary.json").stat().st_mtime_ns
    second = run_batch(pair_folder, out, progress=False)
    status = {o.site: o.status for o in second.outcomes}
    assert status == {"site0": "skipped", "site1": "done", "site2": "skipped"}
    assert (out / "site0" / "summary.json").stat().st_mtime_ns == stamp  # not overwritten
    with rasterio.open(out / "site1" / "change_mask.tif") as src:
        assert src.read(1).max() == 1
    third = run_batch(pair_folder, out, progress=False, overwrite=True)
    assert all(o.status == "done" for o in third.outcomes)


def test_batch_two_local_workers_match_one(pair_folder: Path, tmp_path: Path) -> None:
    one = run_batch(pair_folder, tmp_path / "one", progress=False)
    two = run_batch(pair_folder, tmp_path / "two", workers=2, progress=False)
    assert [(o.site, o.n_changes, o.changed_area_m2) for o in one.outcomes] == [
        (o.site, o.n_changes, o.changed_area_m2) for o in two.outcomes
    ]


def test_batch_options_validated(tmp_path: Path) -> None:
    with pytest.raises(InvalidParameterError, match="method"):
        run_batch([Pair("a", "x", "y")], tmp_path, method="magic", progress=False)
    with pytest.raises(InvalidParameterError, match="workers"):
        run_batch([Pair("a", "x", "y")], tmp_path, workers=0, progress=False)


def test_batch_on_real_dask_scheduler(pair_folder: Path, tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=None, silence_logs=50,
    ) as cluster:
        res = run_batch(pair_folder, tmp_path / "dask", scheduler=cluster.scheduler_address, progress=False)
    assert [o.status for o in res.outcomes] == ["done", "done", "done"]
    assert all((tmp_path / "dask" / s / "summary.json").exists() for s in ("site0", "site1", "site2"))


def test_batch_unreachable_scheduler(pair_folder: Path, tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    with pytest.raises(ChangedetError, match="cannot reach the dask scheduler"):
        run_batch(pair_folder, tmp_path / "x", scheduler="tcp://127.0.0.1:1", progress=False)
