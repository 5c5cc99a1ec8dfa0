"""Pairs of the bundled samples' kind, but unseen: other seeds and harsher sensors.

``make_pair(seed, name="hires_rgb")`` re-runs ``sample_tiles/make_sample_tiles.py``'s
scene and renderer with another seed (another layout of fields, buildings, blocks and
phenology), then applies a sensor of its own drawn from the seed: sensor noise up to
sigma 12 DN (8-bit) or 0.012 reflectance, per-band gain 0.75-1.25 and offset, haze,
an illumination gradient.  The truth is the renderer's (land-cover change).

    >>> p = make_pair(1, name="s2_like")      # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

_GEN = Path(__file__).resolve().parents[1] / "sample_tiles" / "make_sample_tiles.py"


def _module():
    spec = importlib.util.spec_from_file_location("make_sample_tiles_variant", _GEN)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def make_pair(seed: int, *, name: str = "hires_rgb") -> dict:
    """before, after (bands, rows, cols), truth (rows, cols) bool, transform, crs, band_names, res."""
    mod = _module()
    mod.SEED = 7_000_000 + seed
    scene = mod.build_scene()
    pair = mod.render_pair(name, scene)
    rng = np.random.default_rng([seed, 99])
    size = mod.PAIRS[name]["size"]
    rr, cc = np.mgrid[0:size, 0:size].astype(np.float32) / size
    shade = 1 + rng.uniform(-0.08, 0.08) * (rr - 0.5) + rng.uniform(-0.08, 0.08) * (cc - 0.5)
    if name == "s2_like":
        noise = rng.uniform(0.004, 0.012)
        gain = rng.uniform(0.8, 1.2, 4)[:, None, None]
        offset = rng.uniform(-0.015, 0.015, 4)[:, None, None]
        haze = rng.uniform(0, 0.02) * np.array([1.0, 0.8, 0.6, 0.3])[:, None, None]
        before = pair["before"] + rng.normal(0, noise, pair["before"].shape)
        after = (pair["after"] * gain + offset + haze) * shade + rng.normal(0, noise, pair["after"].shape)
        conv = lambda x: np.clip(np.round(x * 10000), 1, 65535).astype(np.uint16)  # noqa: E731
        names = ("B02", "B03", "B04", "B08")
    else:
        noise = rng.uniform(6, 12)
        rgb = [2, 1, 0]

        def camera(refl: np.ndarray, gamma: float) -> np.ndarray:
            return 255 * np.clip(refl[rgb] * 2.4, 0, 1) ** gamma

        before = camera(pair["before"], 0.5) + rng.normal(0, noise, (3, size, size))
        gain = rng.uniform(0.75, 1.25, 3)[:, None, None]
        offset = rng.uniform(-12, 12, 3)[:, None, None]
        haze = rng.uniform(0, 20)
        after = (camera(pair["after"], rng.uniform(0.45, 0.6)) * gain + offset + haze) * shade \
            + rng.normal(0, noise, (3, size, size))
        conv = lambda x: np.clip(np.round(x), 0, 255).astype(np.uint8)  # noqa: E731
        names = ("red", "green", "blue")
    return {"before": conv(before), "after": conv(after), "truth": pair["truth"].astype(bool),
            "transform": pair["transform"], "crs": mod.CRS, "band_names": names, "res": mod.PAIRS[name]["res"],
            "noise": float(noise)}
