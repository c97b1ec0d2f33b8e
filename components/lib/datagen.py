"""Seeded insurance-like CSVs, so the project runs without the real dataset and scales up.

Two modes, both with the real columns (age, sex, bmi, children, smoker, region, charges):
- ``synthesize``: rows drawn from distributions and a cost formula shaped like the real data
  (smokers cost far more, more so with a high BMI; cost grows with age and children).
- ``resample``: rows drawn from a real CSV with small jitter, the reference workload's way of
  making its 100,000 and 1,000,000-row sizes.

Written in chunks, so a million rows never sit in memory at once.

    python -m components.lib.datagen --rows 100000 --out big.csv [--source insurance.csv]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from components import names

REGIONS = ("southwest", "southeast", "northwest", "northeast")
CHUNK = 100_000


def _synthetic_chunk(rng, n: int):  # type: ignore[no-untyped-def]
    import numpy as np
    import pandas as pd

    age = rng.integers(18, 65, n)
    sex = rng.choice(["female", "male"], n)
    bmi = np.round(np.clip(rng.normal(30.6, 6.1, n), 16.0, 53.0), 2)
    children = rng.choice(6, n, p=[0.43, 0.24, 0.18, 0.12, 0.02, 0.01])
    smoker = rng.choice(["no", "yes"], n, p=[0.795, 0.205])
    region = rng.choice(REGIONS, n)
    is_smoker = smoker == "yes"
    charges = 260.0 * age - 4800.0 + 480.0 * children + 20.0 * (bmi - 30.0)
    charges += np.where(is_smoker, 13500.0 + np.where(bmi >= 30.0, 19500.0, 0.0), 0.0)
    charges += rng.gamma(1.2, 1800.0, n)  # right-skewed extra cost, as in the real data
    charges = np.round(np.clip(charges, 1100.0, None), 4)
    return pd.DataFrame(
        {
            "age": age,
            "sex": sex,
            "bmi": bmi,
            "children": children,
            "smoker": smoker,
            "region": region,
            names.LABEL: charges,
        }
    )[list(names.COLUMNS)]


def _resampled_chunk(rng, source, n: int):  # type: ignore[no-untyped-def]
    import numpy as np

    df = source.iloc[rng.integers(0, len(source), n)].reset_index(drop=True)
    df["age"] = np.clip(df["age"] + rng.integers(-1, 2, n), 18, 64)
    df["bmi"] = np.round(df["bmi"] * rng.normal(1.0, 0.02, n), 2)
    df[names.LABEL] = np.round(df[names.LABEL] * rng.normal(1.0, 0.02, n), 4)
    return df


def generate_csv(out: Path, rows: int, seed: int = 42, source: Path | None = None) -> Path:
    """Write ``rows`` rows to ``out`` (seeded, reproducible); resample ``source`` if given."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    src = pd.read_csv(source)[list(names.COLUMNS)] if source else None
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial")
    with open(tmp, "w", newline="") as fh:
        written = 0
        while written < rows:
            n = min(CHUNK, rows - written)
            df = _resampled_chunk(rng, src, n) if src is not None else _synthetic_chunk(rng, n)
            df.to_csv(fh, index=False, header=written == 0)
            written += n
    tmp.replace(out)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1338)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--source", type=Path, help="real CSV to resample with jitter")
    args = parser.parse_args(argv)
    print(generate_csv(args.out, args.rows, args.seed, args.source))


if __name__ == "__main__":
    main()
