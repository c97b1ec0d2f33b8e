"""What evaluate produced: TFMA's metrics read back per slice and model, and the stage's result.

``read_metrics`` and ``overall`` read the metrics file either engine wrote (a per-class metric as
``auc/class_1``); ``classification_plots`` reads the confusion matrix and the ROC curve from the
plots file. ``with_fit_figures`` adds what TFMA 0.47 does not compute on both engines: R² for
regression (from TFMA's MSE and the eval labels' variance) and macro-F1 for classification (from
TFMA's multi-class confusion matrix). ``EvaluateResult`` holds the blessing (a
``blessing.Blessing``) and the numbers behind it, and derives the artifacts' metadata from them.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

from components.lib.artifact_metadata import without_nulls
from components.lib.blessing import Blessing
from components.lib.evaluate.engines import ENGINE_TFMA
from components.lib.evaluate.keys import (
    ACCURACY,
    AUC,
    CANDIDATE,
    CONFUSION_MATRIX,
    COUNT,
    LOG_LOSS,
    MAE,
    MSE,
    PRECISION,
    RECALL,
    ROC,
)


def _slice_name(slice_key: Any) -> str:
    """A TFMA SliceKey proto -> ``"Overall"`` or ``"smoker=yes"``."""
    if not slice_key.single_slice_keys:
        return "Overall"
    parts = []
    for k in slice_key.single_slice_keys:
        kind = k.WhichOneof("kind")
        value = getattr(k, kind) if kind else ""
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        parts.append(f"{k.column}={value}")
    return ", ".join(parts)


def read_metrics(output_dir: Path) -> dict[str, dict[str, dict[str, float]]]:
    """``{slice: {model or model_diff: {metric: value}}}`` from TFMA's metrics file."""
    import tensorflow_model_analysis as tfma

    out: dict[str, dict[str, dict[str, float]]] = {}
    for mfs in tfma.load_metrics(str(output_dir)):
        by_model = out.setdefault(_slice_name(mfs.slice_key), {})
        for kv in mfs.metric_keys_and_values:
            key = kv.key
            if kv.value.WhichOneof("type") != "double_value":
                continue
            model = (key.model_name or CANDIDATE) + ("_diff" if key.is_diff else "")
            by_model.setdefault(model, {})[metric_name(key)] = kv.value.double_value.value
    return out


def metric_name(key: Any) -> str:
    """A TFMA MetricKey (or PlotKey) proto -> ``auc`` or, for one class, ``auc/class_1``."""
    if key.HasField("sub_key") and key.sub_key.HasField("class_id"):
        return f"{key.name}/class_{key.sub_key.class_id.value}"
    return key.name


def classification_plots(output_dir: Path, model: str, num_classes: int) -> dict[str, Any]:
    """The candidate's overall confusion matrix and, for a binary label, its ROC curve, from TFMA's plots.

    ``confusion_matrix``: rows the actual class, columns the likeliest class (counts); ``roc``:
    ``(false positive rates, true positive rates, thresholds)`` of the positive class.
    """
    import tensorflow_model_analysis as tfma

    out: dict[str, Any] = {}
    for plots in tfma.load_plots(str(output_dir)):
        if plots.slice_key.single_slice_keys:
            continue
        for kv in plots.plot_keys_and_values:
            if (kv.key.model_name or CANDIDATE) != model:
                continue
            name = metric_name(kv.key)
            if name == CONFUSION_MATRIX:
                matrix = [[0] * num_classes for _ in range(num_classes)]
                [at] = [m for m in kv.value.multi_class_confusion_matrix_at_thresholds.matrices][:1] or [None]
                for entry in at.entries if at is not None else []:
                    if (
                        0 <= entry.actual_class_id < num_classes
                        and 0 <= entry.predicted_class_id < num_classes
                    ):
                        matrix[entry.actual_class_id][entry.predicted_class_id] = int(
                            entry.num_weighted_examples
                        )
                out["confusion_matrix"] = matrix
            elif name == f"{ROC}/class_1" and num_classes == 2:
                points = sorted(kv.value.confusion_matrix_at_thresholds.matrices, key=lambda m: m.threshold)
                out["roc"] = (
                    [m.false_positive_rate for m in points],
                    [m.recall for m in points],
                    [m.threshold for m in points],
                )
    return out


def r_squared(mse: float, labels: Any) -> float:
    """1 - MSE / variance of the labels (population, finite labels only); NaN without spread."""
    import numpy as np

    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    y = y[np.isfinite(y)]
    variance = float(y.var()) if len(y) else 0.0
    return 1.0 - mse / variance if variance > 0 and math.isfinite(mse) else float("nan")


def macro_f1(matrix: list[list[int]]) -> float:
    """The mean over classes of 2·TP / (2·TP + FP + FN); rows the actual class, columns the predicted.

    Classes neither present nor predicted are left out (scikit-learn's ``f1_score(average="macro")``
    over the labels that occur); NaN for an empty matrix.
    """
    scores = []
    for k in range(len(matrix)):
        tp = matrix[k][k]
        fn = sum(matrix[k]) - tp
        fp = sum(row[k] for row in matrix) - tp
        if tp + fn + fp:
            scores.append(2.0 * tp / (2.0 * tp + fp + fn))
    return sum(scores) / len(scores) if scores else float("nan")


def with_fit_figures(
    figures: dict[str, float], model: str, result_dir: Path, labels: Any, info: Any = None
) -> dict[str, float]:
    """``figures`` (``overall``'s, for ``model``) with ``r2`` (regression) or ``macro_f1`` (classification).

    ``labels``: the eval split's labels (regression; unused for classification, whose figure comes
    from the confusion matrix in ``result_dir``'s plots).
    """
    if not figures:
        return figures
    if info is not None and info.is_classification:
        matrix = classification_plots(result_dir, model, info.num_classes).get("confusion_matrix")
        return {**figures, "macro_f1": macro_f1(matrix) if matrix else float("nan")}
    return {**figures, "r2": r_squared(figures.get("mse", float("nan")), labels)}


def overall(
    metrics: dict[str, dict[str, dict[str, float]]], model: str, info: Any = None
) -> dict[str, float]:
    """Overall figures of one model (empty if it was not evaluated).

    Regression: example count, MSE, MAE and RMSE. Classification (``info``, a ``label.LabelInfo``):
    example count, accuracy, log loss, and for a binary label the positive class's AUC,
    precision and recall; per class ``auc/<class>`` etc.
    """
    m = metrics.get("Overall", {}).get(model, {})
    if not m:
        return {}
    if info is not None and info.is_classification:
        figures = {
            "example_count": m.get(COUNT, float("nan")),
            "accuracy": m.get(ACCURACY, float("nan")),
            "log_loss": m.get(LOG_LOSS, float("nan")),
        }
        if info.num_classes == 2:
            for name in (AUC, PRECISION, RECALL):
                figures[name] = m.get(f"{name}/class_1", float("nan"))
        for i, cls in enumerate(info.classes):
            for name in (AUC, PRECISION, RECALL):
                if f"{name}/class_{i}" in m:
                    figures[f"{name}/{cls}"] = m[f"{name}/class_{i}"]
        return figures
    out = {
        "example_count": m.get(COUNT, float("nan")),
        "mse": m.get(MSE, float("nan")),
        "mae": m.get(MAE, float("nan")),
    }
    out["rmse"] = math.sqrt(out["mse"]) if out["mse"] >= 0 else float("nan")
    return out


@dataclasses.dataclass
class EvaluateResult:
    """Everything evaluate produced: the blessing document and the numbers behind it."""

    blessing: Blessing
    metrics: dict[str, dict[str, dict[str, float]]]
    candidate: dict[str, float]
    baseline: dict[str, float]
    eval_result_dir: Path
    seconds: float
    engine: str = ENGINE_TFMA
    label_info: Any = None  # the candidate's label.LabelInfo (None: regression without one)

    @property
    def classification(self) -> bool:
        return self.label_info is not None and self.label_info.is_classification

    @property
    def blessed(self) -> bool:
        return self.blessing.blessed

    def blessing_metadata(self) -> dict[str, Any]:
        """The blessing artifact's metadata (the blessing contract's summary: what the KFP UI shows)."""
        return self.blessing.to_metadata()

    def evaluation_metadata(self) -> dict[str, Any]:
        """The evaluation artifact's metadata: where TFMA's result is and how to load it."""
        if self.classification:
            keys = ("accuracy", "log_loss", "macro_f1")
            figures = {k: _finite(self.candidate.get(k, float("nan"))) for k in keys}
            figures["task"] = self.label_info.task
        else:
            figures = {k: _finite(self.candidate.get(k, float("nan"))) for k in ("mae", "rmse", "r2")}
        return without_nulls(
            {
                "eval_result": str(self.eval_result_dir),
                "verdict": self.blessing.verdict,
                **figures,
                "tfma_seconds": round(self.seconds, 3),
                "engine": self.engine,
                # tfma.load_eval_result(eval_result, model_name=this): TFMA drops model names from its
                # keys when it evaluated one model, so it is "" without a baseline, "candidate" with one.
                "tfma_candidate_model_name": CANDIDATE if self.baseline else "",
            }
        )

    def logged_metrics(self) -> dict[str, float]:
        """The scalars for the KFP Metrics artifact, rounded, in the label's units.

        The candidate's overall figures, the blessing (1/0), the baseline's headline figures and
        the change against them in percent, and the headline metric of every slice
        (``mae[smoker=yes]``). Finite values only: JSON has no NaN.
        """
        headline = ("accuracy", "log_loss") if self.classification else ("mae", "mse")
        if self.classification:
            logged = {k: v for k, v in self.candidate.items() if "/" not in k}
        else:
            keys = ("example_count", "mse", "mae", "rmse", "r2")
            logged = {k: self.candidate[k] for k in keys if k in self.candidate}
        logged["blessed"] = 1.0 if self.blessed else 0.0
        for key in headline if self.baseline else ():
            base, cand = self.baseline.get(key, float("nan")), self.candidate.get(key, float("nan"))
            logged[f"baseline_{key}"] = base
            if _finite(base) and base != 0:
                logged[f"{key}_change_pct"] = 100.0 * (cand - base) / abs(base)
        key = headline[0]
        for slice_name, models in self.metrics.items():
            if slice_name != "Overall":
                value = overall({"Overall": models}, CANDIDATE, self.label_info).get(key)
                if value is not None:
                    logged[f"{key}[{slice_name}]"] = value
        return {k: _rounded(v) for k, v in logged.items() if _finite(v) is not None}


def _rounded(x: float) -> float:
    """Figures as people read them: 2 decimals from 1 up, 4 significant digits below."""
    return round(x, 2) if abs(x) >= 1 else float(f"{x:.4g}")


def _finite(x: float) -> float | None:
    """``x``, or None for NaN/inf: a diverged model must not make the metadata invalid JSON."""
    return x if math.isfinite(x) else None
