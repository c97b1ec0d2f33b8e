"""What the evaluation report shows beside TFMA's metrics, gathered from the volume.

- the model's name and the baseline's version and run (the ``Baseline`` record resolve-baseline
  passed; the candidate's own version is decided by push, after evaluate);
- from train's directory (the model artifact's ``storage_path``, ``train_outputs``): the per-epoch
  history and what the fit did (its best epoch), the hyperparameters used and the candidate's
  predictions on the eval split: label and prediction as numbers for a regressor, the class and
  the class probabilities for a classifier (``class_predictions``; the task and classes are
  train's label contract, in its summary or the model's metadata);
- from tune's directory (``artifacts/<run id>/tune/``, ``tuner_progress``): the tuner's trials.

Everything is optional: a report without a training summary or trials says so instead.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from components import names
from components.errors import StageError
from components.lib import storage, train_outputs, tuner_progress
from components.lib.baseline import Baseline
from components.lib.evaluate.class_predictions import ClassPredictions, read_class_predictions
from components.lib.evaluate.keys import STAGE
from components.lib.label import CLASSIFICATION


@dataclasses.dataclass
class ReportContext:
    """The report's inputs beyond TFMA's result (all optional)."""

    model_name: str = ""
    run_id: str = ""
    baseline_version: int | None = None
    baseline_run_id: str = ""
    history: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    hyperparameters: dict[str, Any] = dataclasses.field(default_factory=dict)
    trials: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    actual: list[float] = dataclasses.field(default_factory=list)
    predicted: list[float] = dataclasses.field(default_factory=list)
    train_dir: str = ""
    fit: dict[str, Any] = dataclasses.field(default_factory=dict)  # epochs_run, best_epoch, stopped_early
    classes: ClassPredictions | None = None  # a classifier's eval rows (then actual/predicted are empty)


def _classes(summary: dict[str, Any], model_metadata: dict[str, Any]) -> tuple[str, ...]:
    """A classifier's classes by train's label contract (summary, else model metadata); () otherwise."""
    doc = summary.get("label") if isinstance(summary.get("label"), dict) else model_metadata
    if not isinstance(doc, dict) or doc.get("task") != CLASSIFICATION:
        return ()
    return tuple(str(c) for c in doc.get("classes") or ())


def report_context(
    storage_root: str,
    run_id: str,
    model_metadata: dict[str, Any],
    model_path: str,
    baseline_metadata: dict[str, Any],
    baseline_path: str,
    label: str,
) -> ReportContext:
    """Read what the report shows from the artifacts' metadata and the volume."""
    try:
        base = Baseline.from_artifact(baseline_metadata, baseline_path, STAGE)
    except StageError:
        base = Baseline(False, "", "")
    train_dir = model_metadata.get(names.META_STORAGE_PATH) or ""
    if not train_dir:
        try:
            train_dir = str(storage.storage_path_of(model_metadata, model_path, STAGE))
        except StageError:
            train_dir = ""
    summary = train_outputs.read_summary(Path(train_dir)) if train_dir else {}
    classes = _classes(summary, model_metadata)
    by_class = read_class_predictions(Path(train_dir), label, classes) if train_dir and classes else None
    actual, predicted = (
        train_outputs.read_predictions(Path(train_dir), label) if train_dir and not classes else ([], [])
    )
    history = summary.get("history") if isinstance(summary.get("history"), dict) else {}
    fit = summary.get("fit") if isinstance(summary.get("fit"), dict) else {}
    return ReportContext(
        model_name=base.model_name,
        run_id=run_id,
        baseline_version=base.version if base.found else None,
        baseline_run_id=base.run_id if base.found else "",
        history={k: [float(x) for x in v] for k, v in (history or {}).items() if isinstance(v, list)},
        hyperparameters=dict(summary.get("hyperparameters") or {}),
        trials=tuner_progress.read_trials(storage.stage_dir(storage_root, run_id, names.STAGE_TUNE)),
        actual=actual,
        predicted=predicted,
        train_dir=str(train_dir),
        fit=dict(fit or {}),
        classes=by_class,
    )
