"""Tests of changedet.series: many dates of one site, first-change date per pixel."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from changedet import data
from changedet.cli import main
from changedet.errors import ChangedetError
from changedet.io import sha256
from changedet.raster import GeoRaster
from changedet.series import (
    SERIES_FILES,
    detect_series,
    first_change,
    first_change_accuracy,
    parse_series_dates,
    series_inputs,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bundled() -> data.SampleSeries:
    return data.load_series("site_growth")


@pytest.fixture(scope="module")
def bundled_run(bundled: data.SampleSeries, tmp_path_factory: pytest.TempPathFactory) -> tuple[object, Path]:
    out = tmp_path_factory.mktemp("series") / "out"
    res = detect_series(list(bundled.images), list(bundled.dates), title="Synthetic series (not Alabuga)", out=out)
    return res, out


# --------------------------------------------------------------------------- the step fit
def test_first_change_known_answers() -> None:
    # rows: pixels; columns: dates 1..4 against date 0 (255 no observation)
    obs = np.array([
        [0, 0, 0, 0],  # never
        [1, 1, 1, 1],  # from date 1
        [0, 1, 1, 1],  # from date 2
        [0, 1, 0, 0],  # one-date flicker: never
        [0, 0, 1, 0],  # flicker: never
        [1, 0, 1, 1],  # a false alarm at 1 or a miss at 2: the later date wins the tie
        [0, 1, 0, 1],  # ... the same
        [0, 0, 0, 1],  # only the last date: a change there (nothing to contradict it)
        [0, 255, 1, 1],  # a missing observation counts neither way
        [255, 255, 255, 255],  # never seen
        [0, 1, 1, 0],  # changed then back: two for, one against -> from 2
    ], np.uint8)
    got = first_change(obs.T[:, :, None])[:, 0]
    assert got.tolist() == [0, 1, 2, 0, 0, 3, 4, 4, 3, 0, 2]


def test_consecutive_pairs_move_an_early_false_alarm_to_the_real_date() -> None:
    field = np.array([[0, 1, 1, 1]], np.uint8).T[:, :, None]  # flagged the date before it was built on
    assert first_change(field)[0, 0] == 2
    assert first_change(field, np.array([[0, 0, 1, 0]], np.uint8).T[:, :, None])[0, 0] == 3
    # a real change seen by its consecutive pair keeps its date
    assert first_change(field, np.array([[0, 1, 0, 0]], np.uint8).T[:, :, None])[0, 0] == 2
    with pytest.raises(ChangedetError, match="consecutive has shape"):
        first_change(field, np.zeros((2, 1, 1), np.uint8))


def test_first_change_accuracy_counts_misses_as_wrong() -> None:
    acc = first_change_accuracy(np.array([[1, 2, 0, 0, 3]]), np.array([[1, 3, 2, 0, 0]]))
    assert acc["date_right"] == pytest.approx(1 / 3)
    assert acc["found"] == pytest.approx(2 / 3)
    assert acc["date_right_when_found"] == pytest.approx(1 / 2)
    assert acc["false_alarm"] == pytest.approx(1 / 2)


# --------------------------------------------------------------------------- inputs
@pytest.mark.parametrize(
    ("dates", "n", "match"),
    [
        ("2024-06-14,2024-08-22", None, r"at least 3 dates, got 2"),
        ("2024-06-14,2024-08-22,2025-01-01", 4, r"4 images but 3 dates"),
        ("2024-06-14,2024-06-14,2025-01-01", None, r"date 2 2024-06-14 is not after date 1 2024-06-14"),
        ("2024-06-14,2024-02-30,2025-01-01", None, r"date 2 '2024-02-30' is not a date; write it as YYYY-MM-DD"),
        ("2024-06-14,yesterday,2025-01-01", None, r"date 2 'yesterday' is not a date"),
    ],
)
def test_bad_dates_are_refused(dates: str, n: int | None, match: str) -> None:
    with pytest.raises(ChangedetError, match=match):
        parse_series_dates(dates, n_images=n)


def test_dates_parse_in_both_forms() -> None:
    got = parse_series_dates(["2024-06-14T08:31:00Z", "20240822", "2025-05-20"])
    assert [d.isoformat() for d in got] == ["2024-06-14", "2024-08-22", "2025-05-20"]


def test_series_inputs_from_a_folder_read_the_dates_from_the_files(bundled: data.SampleSeries) -> None:
    images, dates = series_inputs([bundled.images[0].parent])
    assert [p.name for p in images] == [p.name for p in bundled.images]  # truth.tif is not an image
    assert [d.isoformat() for d in dates] == list(bundled.dates)


def test_series_inputs_from_fetch_folders(tmp_path: Path, bundled: data.SampleSeries) -> None:
    """A folder of date folders as `fetch` writes them: scene.tif + item.json each, listed in fetch.json."""
    names = []
    for img, date in zip(bundled.images[:3], bundled.dates[:3]):
        folder = tmp_path / date
        folder.mkdir()
        shutil.copy(img, folder / "scene.tif")
        (folder / "item.json").write_text(json.dumps({"type": "Feature", "properties": {"datetime": f"{date}T08:00:00Z"}}))
        names.append(date)
    (tmp_path / "fetch.json").write_text(json.dumps({"series": names}))
    images, dates = series_inputs(tmp_path)
    assert [Path(p).name for p in images] == names
    assert [d.isoformat() for d in dates] == names


def test_undated_images_need_dates(tmp_path: Path, bundled: data.SampleSeries) -> None:
    paths = []
    for i, img in enumerate(bundled.images[:3]):
        with rasterio.open(img) as src:
            arr, profile = src.read(), src.profile
        p = tmp_path / f"img{i}.tif"
        with rasterio.open(p, "w", **profile) as dst:
            dst.write(arr)
        paths.append(p)
    with pytest.raises(ChangedetError, match=r"image 1 .*img0\.tif' has no date in its metadata; pass the dates"):
        series_inputs(paths)
    assert len(series_inputs(paths, "2024-01-01,2024-02-01,2024-03-01")[0]) == 3


def test_a_missing_image_is_named(bundled: data.SampleSeries) -> None:
    with pytest.raises(ChangedetError, match=r"image 2 .*nope\.tif' does not exist"):
        series_inputs([bundled.images[0], bundled.images[0].parent / "nope.tif", bundled.images[2]],
                      "2024-01-01,2024-02-01,2024-03-01")


# --------------------------------------------------------------------------- the bundled series
def test_bundled_series_is_registered_and_small(bundled: data.SampleSeries) -> None:
    assert data.list_series() == ["site_growth"]
    assert len(bundled.images) == len(bundled.dates) == 5
    assert "not real imagery" in bundled.description
    sizes = sum(p.stat().st_size for p in bundled.images[0].parent.glob("*.tif"))
    assert sizes < 1.5e6
    truth = bundled.truth.data[0]
    # every later date brings new change; the truth is on the first date's grid
    assert set(np.unique(truth).astype(int)) == {0, 1, 2, 3, 4}
    with rasterio.open(bundled.images[0]) as a, rasterio.open(bundled.images[0].parent / "truth.tif") as t:
        assert a.transform == t.transform and a.crs == t.crs and a.count == 3 and a.dtypes[0] == "uint8"


def test_bundled_series_first_change_date_is_right(bundled: data.SampleSeries, bundled_run: tuple) -> None:
    res, _ = bundled_run
    acc = first_change_accuracy(res.first_change.data[0], bundled.truth.data[0])
    assert acc["date_right"] >= 0.90, acc
    assert acc["false_alarm"] < 0.12, acc
    # the step fit is what gets there: the pairs' masks alone would give an earlier date to flicker
    assert res.first_change.grid.same_as(bundled.truth.grid)


def test_outputs_are_written_and_read_back(bundled: data.SampleSeries, bundled_run: tuple) -> None:
    from PIL import Image

    res, out = bundled_run
    assert sorted(p.name for p in out.iterdir()) == sorted(SERIES_FILES)
    with rasterio.open(out / "first_change.tif") as src:
        fc = src.read(1)
        assert src.nodata == 0 and src.dtypes[0] == "uint8"
        assert src.tags()["DATES"] == ",".join(bundled.dates)
        assert src.tags()["DATE_2"] == bundled.dates[2]
        assert "first date of change" in src.descriptions[0]
        with rasterio.open(bundled.images[0]) as first:
            assert src.transform == first.transform and src.crs == first.crs
    assert np.array_equal(fc, res.first_change.data[0])
    with (out / "series.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["date"] for r in rows] == list(bundled.dates)
    assert {"new_area_m2", "changed_area_ha", "structures", "pair_structures", "confirmed"} <= set(rows[0])
    assert [r["confirmed"] for r in rows] == ["True"] * 4 + ["False"]
    area = [float(r["changed_area_m2"]) for r in rows]
    assert area[0] == 0 and all(b >= a for a, b in zip(area, area[1:]))  # cumulative
    # area at each date = pixels (1 m) whose first change is at or before it
    assert area[2] == pytest.approx(float(((fc > 0) & (fc <= 2)).sum()))
    truth = bundled.truth.data[0]
    for k in range(1, 5):  # the changed area tracks the truth's (plus the new buildings' shadows: up to +30 %)
        true_area = float(((truth > 0) & (truth <= k)).sum())
        assert 0.9 * true_area <= area[k] <= 1.3 * true_area, (k, area[k], true_area)
    with Image.open(out / "series.gif") as gif:
        assert gif.n_frames == 5
        frames = []
        for i in range(gif.n_frames):
            gif.seek(i)
            frames.append(np.asarray(gif.convert("RGB"), float))
    assert all(f.std() > 20 for f in frames)  # not blank
    assert np.abs(frames[-1] - frames[0]).mean() > 5  # the site changes over the frames
    with Image.open(out / "series.png") as png:
        assert png.size[0] > 500 and np.asarray(png.convert("L"), float).std() > 10
    summary = json.loads((out / "series.json").read_text())
    assert summary["dates"] == list(bundled.dates)
    assert [i["sha256"] for i in summary["inputs"]] == [sha256(p) for p in bundled.images]
    assert summary["outputs"] == sorted(SERIES_FILES)
    assert summary["title"] == "Synthetic series (not Alabuga)"


def test_an_existing_series_is_not_overwritten(bundled: data.SampleSeries, bundled_run: tuple) -> None:
    _, out = bundled_run
    before = (out / "series.json").read_bytes()
    with pytest.raises(FileExistsError, match="already holds a finished series"):
        detect_series(list(bundled.images), list(bundled.dates), out=out)
    assert (out / "series.json").read_bytes() == before


def test_georasters_without_crs_in_pixels() -> None:
    """Plain arrays (no georeferencing): areas in pixels, and a planted block found at its date."""
    from scipy import ndimage

    rng = np.random.default_rng(3)
    base = np.stack([ndimage.gaussian_filter(rng.normal(0, 1, (64, 64)), 4) for _ in range(3)])
    base = (100 + 20 * base / base.std()).astype("float32")  # a smooth ground, unlike pure noise
    imgs = []
    for k in range(4):
        a = base + rng.normal(0, 2, base.shape).astype("float32")
        if k >= 2:
            a[:, 20:36, 10:40] = 240  # built at date 2
        imgs.append(GeoRaster(a, Affine.identity(), None, ("red", "green", "blue")))
    res = detect_series(imgs, "2024-01-01,2024-04-01,2024-07-01,2024-10-01", structures=False)
    fc = res.first_change.data[0]
    assert np.mean(fc[22:34, 12:38] == 2) > 0.95
    assert np.mean(fc[45:, 45:] == 0) > 0.99
    assert res.summary["area_unit"] == "px"
    assert res.table[2]["structures"] is None and "structures=False" in res.structures_note


# --------------------------------------------------------------------------- the command line
def test_cli_series_in_a_subprocess(tmp_path: Path, bundled: data.SampleSeries) -> None:
    out = tmp_path / "cli"
    proc = subprocess.run([sys.executable, "-m", "changedet.cli", "series", *map(str, bundled.images), "--dates",
                           ",".join(bundled.dates), "--out", str(out), "--no-structures"],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "MPLBACKEND": "Agg"})
    assert proc.returncode == 0, proc.stderr
    assert "2025-09-03  changed" in proc.stdout
    with rasterio.open(out / "first_change.tif") as src:
        assert src.read(1).max() == 4


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (lambda imgs: [*imgs[:2], "--dates", "2024-06-14,2024-08-22"], "at least 3 images, got 2"),
        (lambda imgs: [*imgs[:3], "--dates", "2024-06-14,2024-08-22"], "3 images but 2 dates"),
        (lambda imgs: [*imgs[:3], "--dates", "2024-06-14,2025-08-22,2025-01-01"], "dates must increase"),
        (lambda imgs: [*imgs[:3], "--dates", "2024-06-14,2024/08/22,2025-01-01"], "'2024/08/22' is not a date"),
    ],
)
def test_cli_errors_are_one_line_exit_2(args, match: str, bundled: data.SampleSeries, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["series", *args([str(p) for p in bundled.images]), "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("changedet series: error: ") and match in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists()


# --------------------------------------------------------------------------- fetch for several dates
def test_fetch_dates_writes_a_series_folder_that_series_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """`changedet fetch --dates` against a real STAC API on 127.0.0.1, then `changedet series` on its folder."""
    pytest.importorskip("pystac_client")
    sys.path.insert(0, str(Path(__file__).parent))
    from pyproj import Transformer
    from stac_server import StacServer, make_s2_item

    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("GDAL_HTTP_PROXY", "")
    monkeypatch.setenv("CHANGEDET_CACHE", str(tmp_path / "cache"))
    left, top = 565000.0, 6186000.0
    t = Transformer.from_crs(32639, 4326, always_xy=True)
    (a, b), (c, d) = t.transform(left + 900, top - 1500), t.transform(left + 1500, top - 900)
    bbox = f"{min(a, c)},{min(b, d)},{max(a, c)},{max(b, d)}"

    def build(when: str, first_built: int):
        def edit(band: str, arr: np.ndarray) -> np.ndarray:  # a roof appears in the area from this date on
            if first_built and band in ("blue", "green", "red", "nir"):
                out = arr.copy()
                f = arr.shape[0] / 240  # pixels per 10 m
                r0, c0 = int((900 + 10 * first_built) / 10 * f), int(1000 / 10 * f)
                out[r0:r0 + int(12 * f), c0:c0 + int(15 * f)] = 3000
                return out
            return arr
        return edit

    srv = StacServer().start()
    try:
        root = tmp_path / "assets"
        days = ["2023-06-12", "2024-06-17", "2025-06-07"]
        for k, day in enumerate(days):
            srv.add(*make_s2_item(root, f"S2A_39UWB_{day.replace('-', '')}_0_L2A", when=f"{day}T08:16:01Z",
                                  epsg=32639, left=left, top=top, cloud_cover=5.0, noise=True,
                                  edit=build(day, k)))
        out = tmp_path / "fetched"
        code = main(["fetch", "--bbox", bbox, "--dates", "2023-06-01/2023-06-30", "2024-06-01/2024-06-30",
                     "2025-06-01/2025-06-30", "--stac-url", srv.url, "--out", str(out)])
        printed = capsys.readouterr()
        assert code == 0, printed.err
    finally:
        srv.stop()
    assert json.loads((out / "fetch.json").read_text())["series"] == days
    for day in days:
        assert (out / day / "scene.tif").is_file() and (out / day / "item.json").is_file()
    images, dates = series_inputs(out)
    assert [Path(p).name for p in images] == days and [x.isoformat() for x in dates] == days
    # the two forms of fetch cannot be mixed, and a pair still needs both of its dates
    assert main(["fetch", "--bbox", bbox, "--dates", "2023-06-01", "--before", "2024-06-01", "--out", str(tmp_path / "y")]) == 2
    assert main(["fetch", "--bbox", bbox, "--before", "2024-06-01", "--out", str(tmp_path / "y")]) == 2
    err = capsys.readouterr().err
    assert "not both" in err and "needs --before" in err
    code = main(["series", str(out), "--out", str(tmp_path / "series"), "--no-structures"])
    assert code == 0, capsys.readouterr().err
    with rasterio.open(tmp_path / "series" / "first_change.tif") as src:
        assert src.tags()["DATES"] == ",".join(days)


def test_a_date_covering_part_of_the_site_is_put_on_the_first_grid(tmp_path: Path, bundled: data.SampleSeries) -> None:
    """Date 3 covers only the site's west half: its pixels elsewhere are no observation, not 'no change'."""
    from rasterio.windows import Window, transform as window_transform

    paths = list(bundled.images)
    with rasterio.open(paths[3]) as src:
        win = Window(0, 0, 128, 256)
        profile = dict(src.profile, width=128, height=256, transform=window_transform(win, src.transform))
        arr = src.read(window=win)
        tags = src.tags()
    paths[3] = tmp_path / "west_half.tif"
    with rasterio.open(paths[3], "w", **profile) as dst:
        dst.write(arr)
        dst.update_tags(**tags)
    res = detect_series(paths, list(bundled.dates), structures=False)
    assert res.first_change.grid.same_as(bundled.truth.grid)
    assert res.images[3].shape[1:] == (256, 256) and np.isnan(res.images[3].data[:, :, 140:]).all()
    acc = first_change_accuracy(res.first_change.data[0], bundled.truth.data[0])
    assert acc["date_right"] >= 0.85, acc
    # in the east half, date 3 was not seen: changes of date 3 there are given date 4 at the latest, never date 3
    east = res.first_change.data[0][:, 140:]
    assert not (east == 3).any()
