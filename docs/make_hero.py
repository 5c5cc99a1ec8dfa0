"""Make the README's hero image from the demo, and the sentence under it from the same run.

    python docs/make_hero.py            # writes docs/demo_overview.png, prints the caption

Runs ``detect_changes`` on the bundled ``s2_like`` pair exactly as ``changedet demo`` does
(the sample's files, its truth, in memory) and copies the run's ``overview.png`` to
``docs/demo_overview.png``.  The caption it prints is what the README says under the image;
``tests/test_plot.py::test_readme_hero_agrees_with_the_demo`` runs the demo again and checks
that the README's numbers are the demo's.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
HERO = HERE / "demo_overview.png"
SAMPLE = "s2_like"


def demo_result(out: Path) -> Any:
    """The demo's run on the hero's pair, written into ``out``."""
    from changedet import data
    from changedet.pipeline import detect_changes

    folder = data.sample_path(SAMPLE)
    sample = data.load_sample(SAMPLE)
    return detect_changes(folder / "before.tif", folder / "after.tif", truth=sample.truth, out=out, overwrite=True,
                          tiled=False)


def caption(summary: dict) -> str:
    """The README's sentence under the hero image, from a run's summary."""
    r = summary["results"]
    d = summary.get("dates") or {}
    acc = summary.get("accuracy") or {}
    n = r["n_changes"]
    text = (f"{n} changed area{'' if n == 1 else 's'}, {r['changed_area_ha']:.1f} ha, between {d.get('before')} and "
            f"{d.get('after')}")
    if acc.get("f1") is not None:
        text += f" (F1 {acc['f1']:.3f} against the pair's truth)"
    return text


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        result = demo_result(Path(tmp) / SAMPLE)
        shutil.copyfile(Path(tmp) / SAMPLE / "overview.png", HERO)
    print(f"{HERO}: {caption(result.summary)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
