"""Small seeded tables that are not the insurance data: what a new user brings (no module file).

- ``regression``: label ``target`` (a price-like positive number), numeric and text features, a
  zip code with leading zeros, some missing cells;
- ``binary``: label ``churned`` ("no"/"yes");
- ``multiclass``: label ``species`` (0, 1, 2: integer classes).

Each label depends on the features with noise, so a model can beat the naive predictor by a
wide margin and the tests can check the gate and the served predictions. Pure numpy + csv.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

ZIPS = ("00501", "02134", "10001", "60601", "94105")
COLORS = ("red", "green", "blue")


def _features(rng: np.random.Generator, rows: int) -> dict[str, np.ndarray]:
    return {
        "size": rng.uniform(20, 200, rows).round(1),
        "rooms": rng.integers(1, 7, rows),
        "color": rng.choice(COLORS, rows),
        "zip": rng.choice(ZIPS, rows),
        "noise": rng.normal(0, 1, rows).round(3),
    }


def _write(
    path: Path, columns: dict[str, np.ndarray], missing: dict[str, float], rng: np.random.Generator
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    names = list(columns)
    rows = len(next(iter(columns.values())))
    holes = {c: rng.random(rows) < share for c, share in missing.items()}
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(names)
        for i in range(rows):
            w.writerow(["" if c in holes and holes[c][i] else columns[c][i] for c in names])
    return path


def regression_csv(path: Path, rows: int = 300, seed: int = 1) -> Path:
    """Label ``target``: a positive, right-skewed price of size, rooms, color and zip."""
    rng = np.random.default_rng(seed)
    f = _features(rng, rows)
    zip_factor = {z: 1.0 + 0.3 * i for i, z in enumerate(ZIPS)}
    color_factor = {"red": 1.3, "green": 1.0, "blue": 0.8}
    price = (
        2000.0
        * f["size"]
        * (1 + 0.1 * f["rooms"])
        * np.array([zip_factor[z] for z in f["zip"]])
        * np.array([color_factor[c] for c in f["color"]])
        * rng.lognormal(0, 0.1, rows)
    )
    return _write(path, {**f, "target": price.round(2)}, {"rooms": 0.05, "color": 0.05}, rng)


def binary_csv(path: Path, rows: int = 300, seed: int = 2) -> Path:
    """Label ``churned``: "yes" mostly for small, red, far-zip rows."""
    rng = np.random.default_rng(seed)
    f = _features(rng, rows)
    score = -0.03 * (f["size"] - 110) + 1.5 * (f["color"] == "red") - 0.8 + rng.normal(0, 0.7, rows)
    return _write(path, {**f, "churned": np.where(score > 0, "yes", "no")}, {"size": 0.05}, rng)


def multiclass_csv(path: Path, rows: int = 360, seed: int = 3) -> Path:
    """Label ``species``: 0, 1 or 2 by size band, blurred by noise."""
    rng = np.random.default_rng(seed)
    f = _features(rng, rows)
    band = np.digitize(f["size"] + rng.normal(0, 12, rows), [80, 140])
    return _write(path, {**f, "species": band}, {"color": 0.05}, rng)
