"""The first run after a fresh install against a warm run of the same command.

    python benchmarks/first_run.py [--rounds 3] [--sample NAME] [--wheel PATH] [--fresh-mplconfig]

Builds a wheel from this checkout (or takes ``--wheel``), and in each round installs it
into a new virtual environment (no numba cache yet), runs ``changedet demo`` there
twice - the first run, then the same command warm - and prints both, wall and CPU
(user + system) seconds, and their ratio.  The environments get the dependencies of
the interpreter running this script through a ``.pth`` file, so nothing is downloaded.

Rounds alternate first and warm runs, and the ratio is taken round by round, so a
machine whose speed drifts moves both alike; quote the medians.  Target (issue "One
way through the pipeline"): first run <= 1.5 x the warm run.

``--fresh-mplconfig`` also gives each round an empty matplotlib configuration folder,
so the first run builds matplotlib's font cache as on a machine that never ran it.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: what a wheel is built from (as in an sdist); caches and build leftovers are not copied
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "changedet", "sample_tiles")
_IGNORE = shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc", "*.egg-info", "build", "dist")


def build_wheel(src: Path, dist: Path) -> Path:
    """Build the wheel of the checkout ``src`` into ``dist`` from a clean copy, without network."""
    work = dist / "src"
    work.mkdir(parents=True)
    for name in SOURCES:
        path = src / name
        if path.is_dir():
            shutil.copytree(path, work / name, ignore=_IGNORE)
        elif path.exists():
            shutil.copy2(path, work / name)
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-index", "--quiet", "-w", str(dist), str(work)]
    if _has_build_backend():
        cmd.insert(4, "--no-build-isolation")  # the build backend of this environment: no download
    else:
        cmd.remove("--no-index")  # pip fetches setuptools for an isolated build
    subprocess.run(cmd, check=True, cwd=dist)
    (wheel,) = dist.glob("changedet-*.whl")
    return wheel


def _has_build_backend() -> bool:
    try:
        import setuptools
    except ImportError:
        return False
    return tuple(int(x) for x in setuptools.__version__.split(".")[:2]) >= (70, 1)  # bdist_wheel built in


def make_venv(wheel: Path, root: Path) -> Path:
    """A new virtual environment at ``root`` with ``wheel`` installed; returns its ``bin``.

    The wheel goes in without its dependencies; a ``.pth`` file puts this interpreter's
    site-packages behind the environment's own, so the dependencies are the installed ones.
    """
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    py = root / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index",
                    "--quiet", str(wheel)], check=True)
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    deps = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    Path(site, "_changedet_deps.pth").write_text("".join(f"{p}\n" for p in deps))
    return root / "bin"


def timed(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, str]:
    """Wall and CPU (user + system, children included) seconds of ``cmd``, and what it printed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc.stdout


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3, help="fresh installs, each with a first and a warm run")
    p.add_argument("--sample", default=None, help="run the demo on one sample pair only (default: all)")
    p.add_argument("--wheel", type=Path, default=None, help="a built changedet wheel (default: build this checkout)")
    p.add_argument("--fresh-mplconfig", action="store_true", help="an empty matplotlib config folder per round")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="changedet-first-run-") as tmp:
        tmp_path = Path(tmp)
        t0 = time.perf_counter()
        wheel = args.wheel.resolve() if args.wheel else build_wheel(REPO, tmp_path / "dist")
        print(f"wheel: {wheel.name} ({wheel.stat().st_size / 1e6:.1f} MB, {time.perf_counter() - t0:.1f} s)")
        env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "PYTHONPATH")}
        env["MPLBACKEND"] = "Agg"
        rows = []
        for i in range(args.rounds):
            t0 = time.perf_counter()
            bin_dir = make_venv(wheel, tmp_path / f"venv{i}")
            install = time.perf_counter() - t0
            if args.fresh_mplconfig:
                env["MPLCONFIGDIR"] = str(tmp_path / f"mpl{i}")
            demo = [str(bin_dir / "changedet"), "demo"] + (["--sample", args.sample] if args.sample else [])
            first = timed(demo + ["--out", str(tmp_path / f"first{i}")], env, tmp_path)
            warm = timed(demo + ["--out", str(tmp_path / f"warm{i}")], env, tmp_path)
            f1 = re.findall(r"F1 ([0-9.]+)", first[2])
            if not f1 or f1 != re.findall(r"F1 ([0-9.]+)", warm[2]):
                raise RuntimeError(f"the demo printed no F1, or other F1 values warm:\n{first[2]}\n{warm[2]}")
            rows.append((first[0], warm[0], first[1], warm[1]))
            print(f"round {i + 1}: install {install:4.1f} s | first {first[0]:5.1f} s wall {first[1]:5.1f} s cpu"
                  f" | warm {warm[0]:5.1f} s wall {warm[1]:5.1f} s cpu | first/warm {first[0] / warm[0]:.2f} wall"
                  f" {first[1] / warm[1]:.2f} cpu | F1 {' '.join(f1)}", flush=True)
        med = [statistics.median(col) for col in zip(*rows)]
        ratio_wall = statistics.median(r[0] / r[1] for r in rows)
        ratio_cpu = statistics.median(r[2] / r[3] for r in rows)
        print(f"median of {len(rows)}: first {med[0]:.1f} s wall ({med[2]:.1f} s cpu), warm {med[1]:.1f} s wall"
              f" ({med[3]:.1f} s cpu); first/warm {ratio_wall:.2f} wall, {ratio_cpu:.2f} cpu (target <= 1.5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
