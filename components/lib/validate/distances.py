"""Validate's skew and drift sections: the distances, and the distributions behind the largest.

A distance alone says little ("JS divergence 0.83"): each feature over the threshold is also
drawn as its two distributions on common bins (``distributions.shared_bins``), the reference
(train for skew, the served model's train split for drift) against the compared data, the way
the statistics report draws train against eval. When every distance is 0 (the same data) the
section says so instead of drawing an empty chart.
"""

from __future__ import annotations

from typing import Any

from components.lib import charts
from components.lib import html as h
from components.lib.distributions import feature_format, shared_bins
from components.lib.statistics_io import feature_name
from components.lib.validate.verdict import Comparison

MEASURES = {"L_INFTY": "L∞ distance", "JENSEN_SHANNON_DIVERGENCE": "JS divergence"}
DRAWN = 6  # features drawn as two distributions per section (the largest distances over the threshold)
TOP_VALUES = 10
FIGURE_WIDTH = 420  # two side by side in a 1,000-px window
SIDE_NAMES = {"skew": ("train", "eval"), "drift": ("served model's train", "this run's train")}


def _feature(stats: Any, name: str) -> Any:
    if stats is None:
        return None
    return next((f for f in stats.datasets[0].features if feature_name(f) == name), None)


def distribution_figure(name: str, kind: str, before: Any, after: Any) -> str:
    """One feature of two statistics on common bins: bars per value, or overlaid histograms."""
    old, new = SIDE_NAMES[kind]
    features = {old: _feature(before, name), new: _feature(after, name)}
    fmt = feature_format(name, [f for f in features.values() if f is not None])
    shared = shared_bins(features, fmt)
    if shared is None or len(shared.counts) < 2:
        return ""
    colors = {old: h.PALETTE[0], new: h.PALETTE[1]}
    rows = ", ".join(f"{s} {shared.totals[s]:,} rows" for s in shared.counts)
    if shared.categorical:
        shown = list(range(min(len(shared.labels), TOP_VALUES)))
        chart = charts.grouped_bars(
            [shared.labels[i] for i in shown],
            [(s, colors[s], [shared.percent(s)[i] for i in shown]) for s in shared.counts],
            label=f"{name}: {old} and {new}",
            x_label="% of the rows with a value",
            value_format=lambda v: f"{v:.1f} %",
            width=FIGURE_WIDTH,
        )
        legend = h.legend(list(colors.items()))
    else:
        series = [(s, colors[s], shared.percent(s)) for s in shared.counts]
        chart = charts.overlaid_histogram(
            shared.edges,
            series,
            label=f"{name}: {old} and {new}",
            x_label=name,
            x_format=fmt,
            width=FIGURE_WIDTH,
        )
        legend = charts.histogram_legend(series)
    return h.figure(chart, legend_html=legend, caption=f"{name}: {rows}; the same bins for both.")


def comparison_section(
    title: str, intro: str, kind: str, comparisons: list[Comparison], threshold: float, sides: dict
) -> str:
    """The distances of one kind (table and bars), then the largest ones over the threshold drawn."""
    if not comparisons:
        return h.section(title, h.paragraph(intro), h.paragraph("No feature could be compared.", muted=True))
    comparisons = sorted(comparisons, key=lambda c: -c.value)
    rows = [
        [
            h.code(c.feature),
            MEASURES.get(c.measure, c.measure),
            c.value,
            c.threshold,
            h.Raw(h.badge("over threshold", "warn") if c.exceeded else h.badge("ok", "ok")),
        ]
        for c in comparisons
    ]
    table = h.table(
        ["feature", "measure", "distance", "threshold", ""],
        rows,
        numeric=[2, 3],
        row_classes=["warn" if c.exceeded else "" for c in comparisons],
    )
    if not any(c.value for c in comparisons):
        same = h.paragraph("Every distance is 0: the distributions are identical.")
        return h.section(title, h.paragraph(intro), table, same)
    chart = charts.grouped_bars(
        [c.feature for c in comparisons],
        [("distance", h.PALETTE[0], [c.value for c in comparisons])],
        label=title,
        x_label="distance (0 = identical)",
        threshold=threshold,
        threshold_label=f"threshold {h.fmt_num(threshold)}",
    )
    legend = h.legend([("distance", h.PALETTE[0])], lines=[("threshold", h.THRESHOLD_COLOR)])
    parts = [h.paragraph(intro), h.grid(table, h.figure(chart, legend_html=legend), fit=(0,))]
    over = [c for c in comparisons if c.exceeded][:DRAWN]
    before, after = sides.get(kind, (None, None))
    figures = [distribution_figure(c.feature, kind, before, after) for c in over]
    if any(figures):
        old, new = SIDE_NAMES[kind]
        parts.append(h.paragraph(f"Over the threshold, {old} against {new}:"))
        parts.append(h.grid(*figures))
    return h.section(title, *parts)
