"""The evaluate report's predictions section for a regressor (train's eval predictions of the candidate).

Three views: predicted against actual (a perfect model on the diagonal), each row's residual
against its predicted value, and the residuals binned by predicted value — per bin of about
equal rows the mean residual and the middle 80 % of residuals, the regression counterpart of a
classifier's calibration plot: a mean away from 0 in some range says the model is biased there.
Years and ids (a label like ``Year``) print without thousands separators, by the statistics
report's rule (``distributions.feature_format``). Standard library at the top level.
"""

from __future__ import annotations

import math
from typing import Any

from components.lib import html as h
from components.lib import plots
from components.lib.evaluate.report_inputs import ReportContext

SCATTER_POINTS = 1200  # at most this many dots per scatter plot (evenly spaced rows)
RESIDUAL_BINS = 10  # bins of the predicted value (fewer for few rows: at least MIN_BIN_ROWS each)
MIN_BIN_ROWS = 5
SPREAD = (0.1, 0.9)  # the residuals' range drawn per bin: the middle 80 %
CAND_COLOR = h.PALETTE[0]


def quantile(sorted_values: list[float], p: float) -> float:
    """The ``p`` quantile by linear interpolation (numpy's default) of already sorted values."""
    k = (len(sorted_values) - 1) * p
    lo = math.floor(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def label_format(label: str, values: list[float]) -> Any:
    """How the label's values print: the statistics report's rule for years, ids and codes.

    ``distributions.feature_format`` decides on a feature's statistics; the eval labels are
    described to it the same way (an INT feature with their min and max when all are whole).
    """
    from tensorflow_metadata.proto.v0 import statistics_pb2

    from components.lib.distributions import feature_format

    if not values or not all(float(v).is_integer() for v in values):
        return h.fmt_num
    feature = statistics_pb2.FeatureNameStatistics(type=statistics_pb2.FeatureNameStatistics.INT)
    feature.num_stats.min, feature.num_stats.max = min(values), max(values)
    return feature_format(label, [feature])


def residual_bins(
    predicted: list[float], residuals: list[float], bins: int = RESIDUAL_BINS
) -> list[tuple[float, float, float, float, int]]:
    """Rows sorted by predicted value in about equal bins: (mean predicted, mean residual, p10, p90, rows).

    Rows with the same predicted value stay in one bin, so a model predicting few values gets
    one bin per value.
    """
    order = sorted(range(len(predicted)), key=lambda i: predicted[i])
    count = max(1, min(bins, len(order) // MIN_BIN_ROWS))
    out: list[tuple[float, float, float, float, int]] = []
    start = 0
    for b in range(1, count + 1):
        end = max(start, round(b * len(order) / count))
        while 0 < end < len(order) and predicted[order[end]] == predicted[order[end - 1]]:
            end += 1  # keep ties together
        rows = order[start:end]
        if rows:
            r = sorted(residuals[i] for i in rows)
            x = sum(predicted[i] for i in rows) / len(rows)
            out.append((x, sum(r) / len(r), quantile(r, SPREAD[0]), quantile(r, SPREAD[1]), len(rows)))
        start = end
    return out


def _scatters(ctx: ReportContext, label: str, residuals: list[float], fmt: Any) -> tuple[str, str, str]:
    n = len(ctx.actual)
    step = max(1, math.ceil(n / SCATTER_POINTS))
    idx = range(0, n, step)
    pred_vs_actual = plots.scatter(
        [(ctx.actual[i], ctx.predicted[i]) for i in idx],
        label="predicted vs actual",
        x_label=f"actual {label}",
        y_label=f"predicted {label}",
        diagonal=True,
        x_format=fmt,
        y_format=fmt,
    )
    resid = plots.scatter(
        [(ctx.predicted[i], residuals[i]) for i in idx],
        label="residuals",
        x_label=f"predicted {label}",
        y_label="residual = predicted − actual",
        zero_line=True,
        color=h.PALETTE[2],
        x_format=fmt,
    )
    shown = f"{len(idx):,} of {n:,} eval rows" if step > 1 else f"all {n:,} eval rows"
    return pred_vs_actual, resid, shown


def predictions_section(ctx: ReportContext, label: str) -> str:
    """Predicted vs actual, residuals per row, and residuals binned by predicted value."""
    n = len(ctx.actual)
    residuals = [p - a for a, p in zip(ctx.actual, ctx.predicted, strict=True)]
    fmt = label_format(label, ctx.actual)
    pred_vs_actual, resid, shown = _scatters(ctx, label, residuals, fmt)
    bins = residual_bins(ctx.predicted, residuals) if n >= 2 * MIN_BIN_ROWS else []
    binned = (
        plots.binned_errors(
            bins,
            label="mean residual by predicted value",
            x_label=f"predicted {label} (bins of about {n // max(len(bins), 1):,} rows)",
            y_label="residual = predicted − actual",
            x_format=fmt,
        )
        if bins
        else ""
    )
    worst = max(bins, key=lambda b: abs(b[1])) if bins else None
    abs_sorted = sorted(abs(r) for r in residuals)
    summary = (
        f"Mean residual {h.fmt_num(sum(residuals) / n)} (above 0: over-predicts on average); half the "
        f"absolute errors are under {h.fmt_num(quantile(abs_sorted, 0.5))}, "
        f"90 % under {h.fmt_num(quantile(abs_sorted, 0.9))}."
    )
    binned_caption = (
        f"Per bin of the predicted value: the mean residual (dot) and the middle 80 % of residuals "
        f"(bar). The largest mean, {h.fmt_num(worst[1])}, is around a prediction of {fmt(worst[0])}."
        if worst
        else ""
    )
    return h.section(
        "Predictions",
        h.paragraph(
            f"The candidate's predictions on the eval split (written by train), {shown} shown. {summary}"
        ),
        h.grid(
            h.figure(
                pred_vs_actual,
                legend_html=h.legend(
                    [("eval row", CAND_COLOR)], lines=[("perfect prediction", h.THRESHOLD_COLOR)]
                ),
            ),
            h.figure(
                resid,
                legend_html=h.legend([("eval row", h.PALETTE[2])], lines=[("no error", h.THRESHOLD_COLOR)]),
            ),
            h.figure(
                binned,
                legend_html=h.legend(
                    [("mean residual", h.PALETTE[2])], lines=[("no bias", h.THRESHOLD_COLOR)]
                ),
                caption=binned_caption,
            )
            if binned
            else h.paragraph(
                f"{n:,} eval rows: too few to bin the residuals by predicted value "
                f"(at least {2 * MIN_BIN_ROWS} needed).",
                muted=True,
            ),
        ),
        anchor="predictions",
    )
