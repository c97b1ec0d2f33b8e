"""Retraining on exports that change as real ones do: six successive runs on one storage root.

A scheduled job retrains a model each time a new export of the same table arrives, at the same
path (so the model name, derived from the file's name, stays ``claims``). Each export below
changes the way real exports do, and each run's expected verdict is written beside it:

1. the first export                       -> BLESSED, v1
   (a different table saved under the same name is refused by the preflight: exit 2)
2. re-saved by pandas with a few gaps     -> integers stay integers (``19.0`` is 19); the gaps are a
   (``age`` written as ``19.0``)             warning; compared with v1; BLESSED, v2
3. more rows                              -> compared with v2; BLESSED, v3
4. a new category (region ``midwest``)    -> a warning naming it; compared with v3; BLESSED, v4
5. a column dropped (``children``)        -> stops at validate, before transform: the served v4 needs it
6. a type change (``bmi`` as text)        -> stops at validate, before transform: v4 reads numbers
7. a drifted feature (``age`` + 25 years) -> drift reported for ``age``; the run goes on

``max_relative_degradation=1`` keeps the verdicts about the data, not about how a 60-step model
compares with the last one.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from components import names

REPO = Path(__file__).resolve().parents[1]
FAST = {
    "tuner_trials": "1",
    "tuner_steps": "20",
    "train_steps": "60",
    "eval_steps": "10",
    "max_relative_degradation": "1",
}
MODEL = "claims"


def _export(frame, folder: Path) -> Path:
    """The export lands at the same path each time, as a scheduled job's input does."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{MODEL}.csv"
    frame.to_csv(path, index=False)
    return path


def _submit(storage: Path, data: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "submit.py", "--storage", str(storage), "--data", str(data)]
    for k, v in FAST.items():
        cmd += ["--param", f"{k}={v}"]
    return subprocess.run(cmd + list(extra), cwd=REPO, capture_output=True, text=True, timeout=900)


def _shown(proc: subprocess.CompletedProcess) -> str:
    return proc.stdout + proc.stderr


def _versions(storage: Path) -> list[int]:
    doc = json.loads((storage / names.REGISTRY_INDEX).read_text())
    return [e["version"] for e in doc["versions"] if e["model_name"] == MODEL]


def _newest_run(storage: Path) -> Path:
    return max((storage / names.ARTIFACTS_DIR).iterdir(), key=lambda p: p.stat().st_mtime)


def _served_types(storage: Path, version: int) -> dict[str, str]:
    """Feature types of the schema a pushed version was trained with (kept beside the model)."""
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    path = storage / names.SERVING_DIR / MODEL / str(version) / "assets.extra" / names.SCHEMA_FILE
    schema = text_format.Parse(path.read_text(), schema_pb2.Schema())
    return {f.name: schema_pb2.FeatureType.Name(f.type) for f in schema.feature}


@pytest.fixture(scope="module")
def table():
    import pandas as pd

    from components.lib.datagen import generate_csv

    def rows(n: int, seed: int, tmp: Path) -> pd.DataFrame:
        return pd.read_csv(generate_csv(tmp / f"g{seed}.csv", rows=n, seed=seed))

    return rows


@pytest.mark.e2e
def test_six_exports_of_one_table_each_get_their_verdict(tmp_path, table):
    import numpy as np

    storage, exports = tmp_path / "storage", tmp_path / "exports"
    first = table(900, 1, tmp_path)

    # 1. The first export: the model name comes from the file's name.
    run = _submit(storage, _export(first, exports))
    assert run.returncode == 0, _shown(run)[-4000:]
    assert f"BLESSED, pushed {MODEL} v1" in run.stdout
    served_schema = storage / names.SERVING_DIR / MODEL / "1" / "assets.extra" / names.SCHEMA_FILE
    assert served_schema.is_file(), "each pushed version keeps the schema it was trained with"

    # 1b. Another table saved under the same name: refused before anything runs.
    other = first.rename(columns={"charges": "price"}).drop(columns=["region", "sex", "smoker"])
    run = _submit(storage, _export(other, tmp_path / "other"), "--param", "label=price")
    assert run.returncode == 2, _shown(run)[-3000:]
    line = run.stderr.strip().splitlines()[-1]
    assert f"model name {MODEL!r} (derived from the data's name) belongs to another table" in line
    assert "--param model_name=<name>" in line

    # 2. Re-saved by pandas after a few cells went missing: integers are written as 19.0.
    resaved = first.astype({"age": "float64", "children": "float64"})
    resaved.loc[[3, 50, 400], "age"] = np.nan
    path = _export(resaved, exports)
    assert "19.0" in path.read_text() or ".0," in path.read_text()
    run = _submit(storage, path)
    assert run.returncode == 0, _shown(run)[-4000:]
    assert "baseline version 1" in run.stdout
    assert f"BLESSED, pushed {MODEL} v2" in run.stdout
    assert _served_types(storage, 2)["age"] == "INT" and _served_types(storage, 2)["children"] == "INT"

    # 3. More rows.
    grown = __import__("pandas").concat([first, table(300, 2, tmp_path)], ignore_index=True)
    run = _submit(storage, _export(grown, exports))
    assert run.returncode == 0, _shown(run)[-4000:]
    assert "baseline version 2" in run.stdout and f"BLESSED, pushed {MODEL} v3" in run.stdout

    # 4. A new category.
    widened = grown.copy()
    widened.loc[widened.index % 9 == 0, "region"] = "midwest"
    run = _submit(storage, _export(widened, exports))
    assert run.returncode == 0, _shown(run)[-4000:]
    assert "midwest" in run.stdout
    assert "baseline version 3" in run.stdout and f"BLESSED, pushed {MODEL} v4" in run.stdout

    # 5. A column the served model needs is gone: one line, before transform.
    run = _submit(storage, _export(widened.drop(columns=["children"]), exports))
    assert run.returncode == 1, _shown(run)[-4000:]
    stop = run.stderr.strip().splitlines()[-1]
    assert stop.startswith("FAILED: [validate]") and "'children'" in stop and f"{MODEL} v4" in stop, stop
    assert not (_newest_run(storage) / names.STAGE_TRANSFORM).exists()
    assert _versions(storage) == [1, 2, 3, 4]

    # 6. Text where numbers were.
    texty = widened.copy()
    texty["bmi"] = np.where(widened["bmi"] > 30, "obese", "normal")
    run = _submit(storage, _export(texty, exports))
    assert run.returncode == 1, _shown(run)[-4000:]
    stop = run.stderr.strip().splitlines()[-1]
    assert stop.startswith("FAILED: [validate]") and "'bmi'" in stop and f"{MODEL} v4" in stop, stop
    assert _versions(storage) == [1, 2, 3, 4]

    # 7. A drifted feature: reported, the run goes on.
    drifted = widened.copy()
    drifted["age"] = drifted["age"] + 25
    run = _submit(storage, _export(drifted, exports))
    assert run.returncode == 0, _shown(run)[-4000:]
    assert "drift" in run.stdout and "age" in run.stdout
    assert "baseline version 4" in run.stdout
