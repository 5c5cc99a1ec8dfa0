"""The README's command examples work as written.

Every ``changedet ...`` line of the README's ``bash`` blocks runs, unchanged, in a fresh
folder that holds the files the examples name (``before.tif``, ``after.tif``,
``truth.tif``, ``my_examples.geojson``, ``pairs.csv``: the bundled s2_like pair; the
repository's ``sample_tiles``; ``../shared`` when the OSCD data sits beside the
repository).  ``changedet fetch`` (the network) is the one command left out.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.warp import transform as warp_transform

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def _commands() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith("changedet ") and not line.startswith("changedet fetch"):
                out.append(line)
    return out


def _examples(folder: Path) -> dict:
    """20 change and 60 no-change points of the pair's truth, in lon/lat."""
    with rasterio.open(folder / "truth.tif") as src:
        truth, t, crs = src.read(1), src.transform, src.crs
    rng = np.random.default_rng(0)
    feats = []
    for value, n in ((1, 20), (0, 60)):
        rows, cols = np.nonzero(truth == value)
        pick = rng.choice(rows.size, n, replace=False)
        xs, ys = zip(*(t * (c + 0.5, r + 0.5) for r, c in zip(rows[pick], cols[pick])))
        lons, lats = warp_transform(crs, "EPSG:4326", list(xs), list(ys))
        feats += [{"type": "Feature", "geometry": {"type": "Point", "coordinates": [lon, lat]},
                   "properties": {"change": bool(value)}} for lon, lat in zip(lons, lats)]
    return {"type": "FeatureCollection", "features": feats}


def test_the_readme_names_commands() -> None:
    cmds = _commands()
    assert any(c.startswith("changedet detect") for c in cmds) and any(c.startswith("changedet series") for c in cmds)


def test_readme_commands_run_as_written(tmp_path: Path) -> None:
    exe = shutil.which("changedet", path=os.path.dirname(sys.executable))
    if exe is None:
        pytest.skip("the changedet command is not installed beside this Python")
    work = tmp_path / "work"
    work.mkdir()
    sample = REPO / "sample_tiles" / "s2_like"
    for name in ("before.tif", "after.tif", "truth.tif"):
        shutil.copy(sample / name, work / name)
    (work / "my_examples.geojson").write_text(json.dumps(_examples(sample)))
    (work / "pairs.csv").write_text("site,before,after\nsite1,before.tif,after.tif\n")
    (work / "sample_tiles").symlink_to(REPO / "sample_tiles")
    if SHARED.is_dir():
        (tmp_path / "shared").symlink_to(SHARED)
    env = {**os.environ, "MPLBACKEND": "Agg"}
    ran = without_shared = 0
    for line in _commands():
        args = shlex.split(line)
        if "../shared" in line and not SHARED.is_dir():
            without_shared += 1
            continue  # the OSCD example needs ../shared/data beside the repository
        if any(a.endswith((".tif", ".png")) and not (work / a).exists() and "/" not in a and a not in
               ("change_mask.tif",) for a in args[1:] if not a.startswith("-")):
            continue  # hypothetical files of the reader's own (A.tif B.tif ...)
        proc = subprocess.run([exe, *args[1:]], cwd=work, capture_output=True, text=True, env=env, timeout=600)
        assert proc.returncode == 0, f"{line}\n{proc.stdout[-1500:]}\n{proc.stderr[-1500:]}"
        assert "Traceback" not in proc.stderr, line
        ran += 1
    # with ../shared beside the repository every command counts; without it, the ones that need it
    # are not run (the README says they skip there) and are not counted
    assert ran + without_shared >= 5, (ran, without_shared)
    assert (work / "site1" / "summary.json").is_file() and (work / "dormitories.skops").is_file()
    assert (work / "overnight").is_dir() and (work / "series_out").is_dir()
