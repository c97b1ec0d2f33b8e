"""The best-hyperparameters artifact, the contract between tune and train.

Tune writes a directory holding ``best_hyperparameters.txt`` (TFX Tuner's file name; a JSON
object of the values) and, after a search, ``trials.json``; train reads the values back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from components import names
from components.errors import StageError

TRIALS_FILE = "trials.json"


def write_hyperparameters(out_dir: Path, values: dict[str, Any], trials: list[dict[str, Any]]) -> None:
    """``<out_dir>/best_hyperparameters.txt`` (JSON of the values) and the trials, if any."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / names.HYPERPARAMETERS_FILE).write_text(json.dumps(values, indent=2, sort_keys=True))
    if trials:
        (out_dir / TRIALS_FILE).write_text(json.dumps(trials, indent=2, sort_keys=True))


def read_hyperparameters(path: Path, stage: str) -> dict[str, Any]:
    """The JSON object in a hyperparameters artifact (a directory holding the file, or the file)."""
    file = path / names.HYPERPARAMETERS_FILE if path.is_dir() else path
    try:
        values = json.loads(file.read_text())
    except OSError as e:
        raise StageError(stage, str(file), f"cannot read hyperparameters: {e}") from e
    except ValueError as e:
        raise StageError(stage, str(file), f"hyperparameters are not valid JSON: {e}") from e
    if not isinstance(values, dict):
        raise StageError(stage, str(file), "hyperparameters must be a JSON object")
    return values
