"""The evaluate report's training curves: each metric per epoch, train and validation.

Each chart's axis stays inside its metric's domain (an accuracy or AUC in [0, 1], a loss or an
error at least 0: padding around the data never shows an accuracy of 1.2 or a loss of -0.5),
and each caption names the BEST epoch as early stopping chose it — the lowest validation loss,
the metric it monitors (``training.early_stopping``), whose weights train kept — with the
metric's validation value there and at the last epoch. "Lowest" is never said of a metric that
is better high. Standard library only.
"""

from __future__ import annotations

import math
from typing import Any

from components.lib import html as h
from components.lib import plots

MONITORED = "val_loss"  # what early stopping watches (training.early_stopping): the best epoch's metric
SHARES = ("accuracy", "auc", "precision", "recall", "f1")  # names of metrics in [0, 1]
ERRORS = ("loss", "error", "mae", "mse", "rmse", "crossentropy", "hinge")  # names of metrics >= 0
UNBOUNDED = (-math.inf, math.inf)


def metric_domain(name: str) -> tuple[float, float]:
    """The values a Keras metric can take, by its name: [0, 1], [0, ∞) or unbounded (R², ...)."""
    key = name.lower().removeprefix("val_")
    if any(word in key for word in SHARES):
        return (0.0, 1.0)
    if any(word in key for word in ERRORS):
        return (0.0, math.inf)
    return UNBOUNDED


def best_epoch(history: dict[str, list[float]], fit: dict[str, Any]) -> int | None:
    """The epoch (1-based) whose weights train kept: its record, else the lowest finite val_loss."""
    recorded = fit.get("best_epoch")
    if isinstance(recorded, int) and recorded >= 1:
        return recorded
    val = history.get(MONITORED, [])
    finite = [i for i, v in enumerate(val) if math.isfinite(v)]
    return min(finite, key=lambda i: val[i]) + 1 if finite else None


def _caption(key: str, val: list[float], best: int | None) -> str:
    parts = []
    if best is not None and best <= len(val):
        parts.append(
            f"Best epoch {best} by validation loss (the metric early stopping monitors; train kept "
            f"its weights): validation {key} {h.fmt_num(val[best - 1])} there"
        )
    if val:
        parts.append(f"{h.fmt_num(val[-1])} at the last epoch ({len(val)})")
    caption = ", ".join(parts)
    if key == "loss":
        caption += ". Loss is on the label as the module's label_transform makes it for training."
    return caption


def training_section(history: dict[str, list[float]], fit: dict[str, Any]) -> str:
    keys = [k for k in history if not k.startswith("val_")]
    if not keys:
        return h.section("Training", h.paragraph("No training history found.", muted=True), anchor="training")
    best = best_epoch(history, fit)
    figures = []
    for key in keys:
        series = [("train", h.PALETTE[0], [(i + 1.0, v) for i, v in enumerate(history[key])])]
        val = history.get(f"val_{key}", [])
        if val:
            series.append(("validation", h.PALETTE[1], [(i + 1.0, v) for i, v in enumerate(val)]))
        chart = plots.line_chart(
            series,
            label=f"{key} per epoch",
            x_label="epoch",
            y_label=key,
            y_domain=metric_domain(key),
            mark_x=float(best) if best is not None else None,
        )
        marks = [("best epoch", h.THRESHOLD_COLOR)] if best is not None else []
        legend = h.legend([(n, c) for n, c, _ in series], lines=marks)
        figures.append(h.figure(chart, legend_html=legend, caption=_caption(key, val, best)))
    return h.section("Training curves", h.grid(*figures), anchor="training")
