"""The evaluate report's predictions section for a classifier (train's eval predictions of the candidate).

From ``eval_predictions.csv`` (the class and the class probabilities of every eval row,
``class_predictions``): the confusion matrix of the likeliest class (counts and the share of each
actual class's rows), ROC and precision-recall curves with their areas — the positive class's
for a binary label, one per class (one against the rest) for more — a reliability diagram, and a
per-class table in which no cell is blank: a figure that is undefined says why (a class never
predicted has no precision). Standard library at the top level.
"""

from __future__ import annotations

import math
from typing import Any

from components.lib import html as h
from components.lib import plots
from components.lib.evaluate import class_predictions as cp

CURVE_POINTS = 300  # a curve keeps a point where it moved by 1/CURVE_POINTS of the axis
MATRIX_MAX_CLASSES = 15  # more classes than this: the per-class table only
SQUARE = (0.0, 1.0)


def undefined(why: str) -> str:
    """A table cell for a figure that does not exist, saying why (never a blank cell)."""
    return f"— ({why})"


def thin(xs: list[float], ys: list[float], n: int = CURVE_POINTS) -> list[tuple[float, float]]:
    """The curve's points, without those closer than 1/n of the unit square to the last kept one."""
    kept = [(xs[0], ys[0])] if xs else []
    for i in range(1, len(xs)):
        last = i == len(xs) - 1
        if last or abs(xs[i] - kept[-1][0]) >= 1 / n or abs(ys[i] - kept[-1][1]) >= 1 / n:
            kept.append((xs[i], ys[i]))
    return kept


def _focus(preds: cp.ClassPredictions) -> list[int]:
    """The classes drawn one against the rest: the positive (second) class of a binary label, else all."""
    return [1] if len(preds.classes) == 2 else list(range(len(preds.classes)))


def class_rows(preds: cp.ClassPredictions) -> list[list[Any]]:
    """Per class: rows, predicted, precision, recall, F1, ROC AUC, average precision (or why not)."""
    k = len(preds.classes)
    matrix = cp.confusion_matrix(preds.actual, preds.predicted(), k)
    rows = []
    for c in range(k):
        tp, support, predicted = matrix[c][c], sum(matrix[c]), sum(r[c] for r in matrix)
        positive, score = cp.one_vs_rest(preds, c)
        fpr, tpr, _ = cp.roc_curve(positive, score)
        precision, recall, _ = cp.precision_recall_curve(positive, score)
        auc = cp.area(fpr, tpr)
        rows.append(
            [
                preds.classes[c],
                support,
                predicted,
                tp / predicted if predicted else undefined("never predicted"),
                tp / support if support else undefined("no eval rows"),
                2 * tp / (support + predicted)
                if support + predicted
                else undefined("no rows, never predicted"),
                auc
                if math.isfinite(auc)
                else undefined("no eval rows" if not support else "every eval row is this class"),
                cp.average_precision(precision, recall) if support else undefined("no eval rows"),
            ]
        )
    return rows


def class_table(preds: cp.ClassPredictions) -> str:
    return h.table(
        ["class", "eval rows", "predicted", "precision", "recall", "F1", "ROC AUC", "average precision"],
        class_rows(preds),
        numeric=[1, 2, 3, 4, 5, 6, 7],
        caption="per class, from the likeliest class of each eval row; ROC AUC and average precision "
        "(the precision-recall curve's area) from the class's probability, one against the rest",
    )


def confusion_figure(preds: cp.ClassPredictions) -> str:
    k = len(preds.classes)
    if k > MATRIX_MAX_CLASSES:
        return h.paragraph(f"{k} classes: the confusion matrix is not drawn, see the table.", muted=True)
    matrix = cp.confusion_matrix(preds.actual, preds.predicted(), k)
    cells = []
    for row in matrix:
        total = sum(row)
        cells.append(
            [
                (n / total if total else 0.0, f"{n:,}", h.fmt_pct(n / total) if total else "no rows")
                for n in row
            ]
        )
    chart = plots.heatmap(
        list(preds.classes),
        list(preds.classes),
        cells,
        label="confusion matrix",
        x_label="predicted class (the likeliest)",
        y_label="actual class",
    )
    right = sum(matrix[c][c] for c in range(k))
    return h.figure(
        chart,
        caption=f"Rows of each actual class by the class predicted: count and share of the row. "
        f"{right:,} of {len(preds):,} eval rows on the diagonal (accuracy {right / max(len(preds), 1):.3f}).",
    )


def _curves(preds: cp.ClassPredictions, kind: str) -> tuple[list[Any], list[tuple[str, str]]]:
    series, legend = [], []
    for n, c in enumerate(_focus(preds)):
        color = h.PALETTE[n % len(h.PALETTE)]
        positive, score = cp.one_vs_rest(preds, c)
        if kind == "roc":
            xs, ys, _ = cp.roc_curve(positive, score)
            figure = cp.area(xs, ys)
            name = "ROC AUC"
        else:
            ys, xs, _ = cp.precision_recall_curve(positive, score)
            xs, ys = xs[::-1], ys[::-1]  # recall rising
            figure = cp.average_precision(ys[::-1], xs[::-1]) if xs else float("nan")
            name = "AP"
        shown = f"{name} {figure:.3f}" if math.isfinite(figure) else f"no {name}: one side has no rows"
        title = f"{preds.classes[c]} ({shown})"
        if math.isfinite(figure):
            series.append((title, color, thin(xs, ys)))
        legend.append((title, color))
    return series, legend


def curve_figures(preds: cp.ClassPredictions) -> list[str]:
    """The ROC and the precision-recall curves, each on the unit square."""
    binary = len(preds.classes) == 2
    who = f"positive class {preds.classes[1]!r}" if binary else "each class against the rest"
    out = []
    for kind, title, x_label, y_label in (
        ("roc", "ROC curve", "false positive rate", "true positive rate"),
        ("pr", "precision-recall curve", "recall", "precision"),
    ):
        series, legend = _curves(preds, kind)
        chart = plots.line_chart(
            series,
            label=title,
            x_label=x_label,
            y_label=y_label,
            x_range=SQUARE,
            y_range=SQUARE,
            dots=False,
            step=kind == "pr",
            diagonal=kind == "roc",
            width=360,
            height=300,
        )
        lines = [("chance", h.THRESHOLD_COLOR)] if kind == "roc" else []
        out.append(h.figure(chart, legend_html=h.legend(legend, lines=lines), caption=f"{title}, {who}"))
    return out


def calibration_figure(preds: cp.ClassPredictions) -> str:
    """A reliability diagram of the probabilities the model gives.

    Binary: the positive class's probability against how often the row was of that class; more
    classes: the likeliest class's probability against how often it was right.
    """
    binary = len(preds.classes) == 2
    right, score = cp.one_vs_rest(preds, 1) if binary else cp.top_label(preds)
    bins = cp.calibration(right, score)
    gap = sum(n * abs(y - x) for x, y, n in bins) / max(len(preds), 1)
    what = f"class {preds.classes[1]!r}" if binary else "the likeliest class"
    chart = plots.reliability(
        bins,
        label="calibration",
        x_label=f"predicted probability of {what}",
        y_label=f"share of rows that were {what}" if binary else "share of rows it was right",
    )
    return h.figure(
        chart,
        legend_html=h.legend(
            [("bin of 0.1 (dot area: rows)", h.PALETTE[0])], lines=[("calibrated", h.THRESHOLD_COLOR)]
        ),
        caption=f"Calibration: a calibrated model's probabilities match how often they come true (the "
        f"diagonal). Mean gap, weighted by rows: {gap:.3f}.",
    )


def predictions_section(preds: cp.ClassPredictions | None, train_dir: str) -> str:
    if preds is None or not len(preds):
        return h.section(
            "Predictions",
            h.paragraph(f"No eval predictions found in {train_dir or 'the train output'}.", muted=True),
            anchor="predictions",
        )
    return h.section(
        "Predictions",
        h.paragraph(
            f"The candidate's class probabilities on the eval split (written by train): {len(preds):,} "
            f"eval rows, {len(preds.classes)} classes."
        ),
        h.grid(confusion_figure(preds), calibration_figure(preds)),
        h.grid(*curve_figures(preds)),
        class_table(preds),
        anchor="predictions",
    )
