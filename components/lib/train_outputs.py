"""What train leaves beside the SavedModel for people and later stages to read.

In the train stage's directory (``artifacts/<run id>/train/``, the model artifact's
``storage_path``), next to ``Format-Serving/`` and ``logs/``:

- ``training_summary.json``: the hyperparameters used, the per-epoch ``history`` Keras recorded
  (``loss``, ``val_loss`` and the module's metrics), the metrics in label units, timings;
- ``eval_predictions.csv``: one row per eval example: the transformed features the model saw,
  the label and the model's ``prediction``, both in label units.

Train writes them (``components.lib.train``); the evaluation report reads them through
``read_summary`` and ``read_predictions``. Standard library only.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

SUMMARY_FILE = "training_summary.json"
EVAL_PREDICTIONS_FILE = "eval_predictions.csv"
PREDICTION_COLUMN = "prediction"


def read_summary(train_dir: Path) -> dict[str, Any]:
    """The training summary of a train directory; {} when it is absent or unreadable."""
    try:
        doc = json.loads((Path(train_dir) / SUMMARY_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def read_predictions(train_dir: Path, label: str) -> tuple[list[float], list[float]]:
    """(actual, predicted) label values of every eval row; empty lists when the file is absent."""
    actual: list[float] = []
    predicted: list[float] = []
    try:
        with open(Path(train_dir) / EVAL_PREDICTIONS_FILE, newline="") as fh:
            for row in csv.DictReader(fh):
                try:
                    a, p = float(row[label]), float(row[PREDICTION_COLUMN])
                except (KeyError, TypeError, ValueError):
                    continue
                if math.isfinite(a) and math.isfinite(p):
                    actual.append(a)
                    predicted.append(p)
    except OSError:
        return [], []
    return actual, predicted
