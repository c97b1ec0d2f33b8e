"""A classifier's eval predictions as train wrote them, and the curves the report draws from them.

Train's ``eval_predictions.csv`` (``train_outputs``) holds, for a classifier, the label as the
class NAME, ``prediction`` the likeliest class's name and one probability column ``p_<class>``
per class. ``train_outputs.read_predictions`` reads numbers (regression) and skips every row of
a text label, which is why the report once said "No eval predictions found" for a classifier;
``read_class_predictions`` reads the names and the probabilities instead.

The figures are computed here with numpy, one-vs-rest per class (scikit-learn is a dev
dependency only; ``tests/test_classification_views.py`` checks every function against
scikit-learn's ``confusion_matrix``, ``roc_curve``, ``roc_auc_score``, ``precision_recall_curve``,
``average_precision_score`` and ``calibration_curve``). Standard library at the top level.
"""

from __future__ import annotations

import csv
import dataclasses
import math
from pathlib import Path
from typing import Any

from components.lib.train_outputs import EVAL_PREDICTIONS_FILE

PROBABILITY_PREFIX = "p_"  # train's column of class c's probability: p_<c> (train.prediction_table)
CALIBRATION_BINS = 10


@dataclasses.dataclass(frozen=True)
class ClassPredictions:
    """Eval rows of a classifier: the actual class id per row and the K class probabilities."""

    classes: tuple[str, ...]
    actual: list[int]
    probabilities: list[list[float]]

    def __len__(self) -> int:
        return len(self.actual)

    def predicted(self) -> list[int]:
        """The likeliest class per row (the first on a tie, as numpy's argmax and train pick it)."""
        return [max(range(len(p)), key=lambda k: (p[k], -k)) for p in self.probabilities]


def read_class_predictions(train_dir: Path, label: str, classes: tuple[str, ...]) -> ClassPredictions | None:
    """The rows of ``eval_predictions.csv`` whose label is one of ``classes``; None without the file.

    A row with a missing or non-numeric probability, or a label outside the classes, is skipped.
    """
    if not classes:
        return None
    index = {c: k for k, c in enumerate(classes)}
    columns = [PROBABILITY_PREFIX + c for c in classes]
    actual: list[int] = []
    probabilities: list[list[float]] = []
    try:
        with open(Path(train_dir) / EVAL_PREDICTIONS_FILE, newline="") as fh:
            reader = csv.DictReader(fh)
            header = set(reader.fieldnames or ())
            if label not in header or any(c not in header for c in columns):
                return None  # not a classifier's file (a regression's, or another label's)
            for row in reader:
                k = index.get(row[label])
                if k is None:  # an int label read back as "1.0"? train writes the class name itself
                    continue
                try:
                    p = [float(row[c]) for c in columns]
                except (TypeError, ValueError):
                    continue
                if all(math.isfinite(v) for v in p):
                    actual.append(k)
                    probabilities.append(p)
    except OSError:
        return None
    return ClassPredictions(tuple(classes), actual, probabilities)


def confusion_matrix(actual: list[int], predicted: list[int], k: int) -> list[list[int]]:
    """Rows the actual class, columns the predicted one (counts)."""
    matrix = [[0] * k for _ in range(k)]
    for a, p in zip(actual, predicted, strict=True):
        matrix[a][p] += 1
    return matrix


def _sorted_scores(positive: Any, score: Any) -> tuple[Any, Any, Any]:
    """Cumulative true and false positives at each distinct score, highest score first."""
    import numpy as np

    y = np.asarray(positive, dtype=bool)
    s = np.asarray(score, dtype=np.float64)
    order = np.argsort(-s, kind="mergesort")
    y, s = y[order], s[order]
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # the last row of each distinct score
    tps = np.cumsum(y)[last].astype(np.float64)
    fps = (last + 1) - tps
    return tps, fps, s[last]


def roc_curve(positive: Any, score: Any) -> tuple[list[float], list[float], list[float]]:
    """(false positive rates, true positive rates, thresholds), starting at (0, 0).

    The first point's threshold is +inf, as in scikit-learn's ``roc_curve(..., drop_intermediate=False)``.
    """
    import numpy as np

    tps, fps, thresholds = _sorted_scores(positive, score)
    p, n = (tps[-1] if len(tps) else 0.0), (fps[-1] if len(fps) else 0.0)
    tps, fps = np.r_[0.0, tps], np.r_[0.0, fps]
    fpr = fps / n if n else np.full_like(fps, np.nan)
    tpr = tps / p if p else np.full_like(tps, np.nan)
    return fpr.tolist(), tpr.tolist(), np.r_[np.inf, thresholds].tolist()


def area(x: list[float], y: list[float]) -> float:
    """The trapezoidal area under y(x) (the ROC AUC from ``roc_curve``); NaN when undefined."""
    import numpy as np

    xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(xs) < 2 or not (np.isfinite(xs).all() and np.isfinite(ys).all()):
        return float("nan")
    return float(np.sum(np.diff(xs) * (ys[1:] + ys[:-1]) / 2.0))


def precision_recall_curve(positive: Any, score: Any) -> tuple[list[float], list[float], list[float]]:
    """(precision, recall, thresholds), recall falling to the point (recall 0, precision 1).

    In scikit-learn's ``precision_recall_curve`` order; empty lists without a positive row.
    """
    import numpy as np

    tps, fps, thresholds = _sorted_scores(positive, score)
    if not len(tps) or not tps[-1]:
        return [], [], []
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    return (
        np.r_[precision[::-1], 1.0].tolist(),
        np.r_[recall[::-1], 0.0].tolist(),
        thresholds[::-1].tolist(),
    )


def average_precision(precision: list[float], recall: list[float]) -> float:
    """Σ (R_n − R_{n−1}) P_n over the curve from ``precision_recall_curve`` (the PR curve's area)."""
    import numpy as np

    if not precision:
        return float("nan")
    p, r = np.asarray(precision), np.asarray(recall)
    return float(-np.sum(np.diff(r) * p[:-1]))


def calibration(positive: Any, score: Any, bins: int = CALIBRATION_BINS) -> list[tuple[float, float, int]]:
    """Per non-empty bin of equal width over [0, 1]: (mean score, share of positives, rows)."""
    import numpy as np

    y = np.asarray(positive, dtype=np.float64)
    s = np.clip(np.asarray(score, dtype=np.float64), 0.0, 1.0)
    # scikit-learn's uniform bins: a score on an inner edge belongs to the bin below it.
    which = np.searchsorted(np.linspace(0.0, 1.0, bins + 1)[1:-1], s)
    out = []
    for b in range(bins):
        rows = which == b
        if rows.any():
            out.append((float(s[rows].mean()), float(y[rows].mean()), int(rows.sum())))
    return out


def one_vs_rest(preds: ClassPredictions, k: int) -> tuple[list[bool], list[float]]:
    """(is class k, probability of class k) per eval row."""
    return [a == k for a in preds.actual], [p[k] for p in preds.probabilities]


def top_label(preds: ClassPredictions) -> tuple[list[bool], list[float]]:
    """(the likeliest class is right, its probability) per row: a multi-class reliability diagram's input."""
    picked = preds.predicted()
    return (
        [a == p for a, p in zip(preds.actual, picked, strict=True)],
        [probs[p] for probs, p in zip(preds.probabilities, picked, strict=True)],
    )
