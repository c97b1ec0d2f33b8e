"""The statistics stage's HTML report: every feature of every split, the splits on one axis.

What Facets Overview shows, as one self-contained page (``html``, ``charts``): an overview
table, then one card per feature in which train and eval share their axes —

- numeric: rows, missing and zero shares, mean/std/min/median/max, quantiles (from TFDV's
  QUANTILES histogram), and the two splits' histograms overlaid on one shared x range in % of
  each split's rows, with a quantile strip per split under them;
- categorical: unique count, average length, the top values as side-by-side bars of each
  split's share, values that appear in one split only.

What deserves a look is highlighted (the overview row, the card's edge, a list at the top):
a feature absent from a split or of another type there (red), missing values, a single value,
values only one split has, or a largest difference of a bin's or category's share between the
splits of ``DIFFERENCE_FLAG`` or more (amber). These are plain observations on the statistics;
the verdicts against the schema and thresholds are validate's report.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from components.lib import charts
from components.lib import html as h
from components.lib.statistics_io import feature_name

TOP_VALUES_SHOWN = 10  # categories per chart / table
BINS = 10  # TFDV's own STANDARD histogram has 10 equal-width buckets over [min, max]
DIFFERENCE_FLAG = 0.10  # a bin's or category's share differing by 10 points between splits
QUANTILES = (
    ("min", 0.0),
    ("p10", 0.1),
    ("p25", 0.25),
    ("median", 0.5),
    ("p75", 0.75),
    ("p90", 0.9),
    ("max", 1.0),
)


def _common(feature: Any) -> Any:
    return (
        feature.num_stats.common_stats if feature.HasField("num_stats") else feature.string_stats.common_stats
    )


def _type_name(feature: Any) -> str:
    from tensorflow_metadata.proto.v0 import statistics_pb2

    return statistics_pb2.FeatureNameStatistics.Type.Name(feature.type)


def _missing_fraction(feature: Any, num_examples: int) -> float:
    common = _common(feature)
    total = common.num_non_missing + common.num_missing
    return (common.num_missing / total) if total else (1.0 if num_examples else 0.0)


def _histogram(feature: Any, kind: str = "STANDARD") -> list[tuple[float, float, float]]:
    from tensorflow_metadata.proto.v0 import statistics_pb2

    wanted = statistics_pb2.Histogram.HistogramType.Value(kind)
    for hist in feature.num_stats.histograms:
        if hist.type == wanted:
            return [(b.low_value, b.high_value, b.sample_count) for b in hist.buckets]
    return []


def quantiles(feature: Any) -> dict[str, float]:
    """min, p10, p25, median, p75, p90, max read from TFDV's QUANTILES histogram (equal-count buckets)."""
    buckets = _histogram(feature, "QUANTILES")
    if not buckets:
        return {}
    out = {}
    for name, p in QUANTILES:
        pos = p * len(buckets)
        k = min(int(pos), len(buckets) - 1)
        low, high, _ = buckets[k]
        out[name] = low + (pos - k) * (high - low)
    return out


def _counts(feature: Any) -> dict[str, float]:
    """{value: count} of a categorical feature (the rank histogram, else the top values)."""
    ss = feature.string_stats
    if ss.rank_histogram.buckets:
        return {b.label: b.sample_count for b in ss.rank_histogram.buckets}
    return {v.value: v.frequency for v in ss.top_values}


def rebin(buckets: Sequence[tuple[float, float, float]], edges: Sequence[float]) -> list[float]:
    """Counts of ``[(low, high, count)]`` buckets spread over new bins (uniform within a bucket).

    A bucket of zero width (a constant value) goes whole to the bin holding its value.
    """
    out = [0.0] * (len(edges) - 1)
    for low, high, count in buckets:
        if not count:
            continue
        if high <= low:
            i = next((k for k in range(len(out)) if edges[k] <= low < edges[k + 1]), len(out) - 1)
            out[max(i, 0)] += count
            continue
        for k in range(len(out)):
            overlap = min(high, edges[k + 1]) - max(low, edges[k])
            if overlap > 0:
                out[k] += count * overlap / (high - low)
    return out


class _Feature:
    """One feature across the splits: its statistics per split and what stands out."""

    def __init__(self, name: str, splits: list[str], views: dict[str, dict[str, Any]], rows: dict[str, int]):
        self.name = name
        self.splits = splits
        self.stats = {s: views[s].get(name) for s in splits}
        self.rows = rows
        present = [f for f in self.stats.values() if f is not None]
        self.first = present[0]
        self.numeric = self.first.HasField("num_stats")
        self.type = _type_name(self.first)
        self.notes: list[tuple[str, str]] = []  # (text, "warn" | "bad")
        self.edges: list[float] = []
        self.percent: dict[str, list[float]] = {}
        self.shares: dict[str, dict[str, float]] = {}
        self.counts: dict[str, dict[str, float]] = {}
        self.gap = 0.0  # the largest difference of a bin's or value's share between splits
        self._observe()

    def here(self, split: str) -> Any:
        f = self.stats[split]
        if f is None or f.HasField("num_stats") != self.numeric:
            return None
        return f

    def _observe(self) -> None:
        for s, f in self.stats.items():
            if f is None:
                self.notes.append((f"absent from {s}", "bad"))
            elif _type_name(f) != self.type:
                self.notes.append((f"{s} has type {_type_name(f)}, {self.splits[0]} {self.type}", "bad"))
        missing = {s: _missing_fraction(f, self.rows[s]) for s in self.splits if (f := self.here(s))}
        if any(v > 0 for v in missing.values()):
            self.notes.append(
                ("missing " + ", ".join(f"{s} {h.fmt_pct(v)}" for s, v in missing.items()), "warn")
            )
        if self.numeric:
            self._observe_numeric()
        else:
            self._observe_categorical()

    def _observe_numeric(self) -> None:
        nums = {s: f.num_stats for s in self.splits if (f := self.here(s))}
        if not nums:
            return
        lo, hi = min(n.min for n in nums.values()), max(n.max for n in nums.values())
        if lo == hi:
            self.notes.append((f"one value only ({h.fmt_num(lo)})", "warn"))
            lo, hi = lo - 0.5, hi + 0.5
        self.edges = [lo + (hi - lo) * i / BINS for i in range(BINS + 1)]
        for s in nums:
            counts = rebin(_histogram(self.stats[s]), self.edges)
            self.percent[s] = [100.0 * c / max(self.rows[s], 1) for c in counts]
        self._flag_difference(list(self.percent.values()), "a bin")

    def _observe_categorical(self) -> None:
        for s in self.splits:
            f = self.here(s)
            if f is not None:
                self.counts[s] = _counts(f)
                total = sum(self.counts[s].values()) or 1.0
                self.shares[s] = {v: c / total for v, c in self.counts[s].items()}
        if any(len(v) == 1 for v in self.shares.values()):
            self.notes.append(("one value only", "warn"))
        first = self.splits[0]
        for s in self.splits[1:]:
            if first in self.shares and s in self.shares:
                new = sorted(set(self.shares[s]) - set(self.shares[first]))
                if new:
                    shown = ", ".join(new[:3]) + (f" and {len(new) - 3} more" if len(new) > 3 else "")
                    self.notes.append((f"values only in {s}: {shown}", "warn"))
        values = sorted({v for d in self.shares.values() for v in d})
        self._flag_difference(
            [[100.0 * d.get(v, 0.0) for v in values] for d in self.shares.values()], "a value"
        )

    def _flag_difference(self, distributions: list[list[float]], what: str) -> None:
        if len(distributions) < 2:
            return
        gap = max((max(col) - min(col) for col in zip(*distributions, strict=True)), default=0.0)
        self.gap = gap / 100.0
        if self.gap >= DIFFERENCE_FLAG:
            self.notes.append((f"splits differ: {what}'s share differs by {gap:.1f} points", "warn"))

    @property
    def kind(self) -> str:
        kinds = {k for _, k in self.notes}
        return "bad" if "bad" in kinds else "warn" if kinds else ""

    def badges(self) -> str:
        return " ".join(h.badge(text, kind) for text, kind in self.notes)


def _numeric_card(f: _Feature, colors: dict[str, str]) -> str:
    """Counts and moments beside the quantiles in one table; the splits' histograms on one axis."""
    labels = ("rows", "present", "missing", "zeros", "mean", "std dev", "")
    cols: dict[str, list[Any]] = {}
    for s in f.splits:
        feat = f.here(s)
        if feat is None:
            cols[s] = ["absent", *[""] * (len(labels) - 1)]
            continue
        ns = feat.num_stats
        present = int(ns.common_stats.num_non_missing)
        cols[s] = [
            f.rows[s],
            present,
            h.fmt_pct(_missing_fraction(feat, f.rows[s])),
            h.fmt_pct(ns.num_zeros / present) if present else "",
            ns.mean,
            ns.std_dev,
            "",
        ]
    qs = {s: quantiles(feat) if (feat := f.here(s)) is not None else {} for s in f.splits}
    rows = [
        [lab, *(cols[s][i] for s in f.splits), q, *(qs[s].get(q, "") for s in f.splits)]
        for i, (lab, (q, _)) in enumerate(zip(labels, QUANTILES, strict=True))
    ]
    n = len(f.splits)
    table = h.table(
        ["", *f.splits, "quantile", *f.splits],
        rows,
        numeric=[*range(1, n + 1), *range(n + 2, 2 * n + 2)],
    )
    series = [(s, colors[s], f.percent[s]) for s in f.splits if s in f.percent]
    chart = charts.overlaid_histogram(
        f.edges,
        series,
        label=f"{f.name}: histogram per split",
        x_label=f.name,
        strips=[
            (colors[s], {("p50" if k == "median" else k): v for k, v in qs[s].items()})
            for s in f.splits
            if qs[s]
        ],
    )
    fig = h.figure(
        chart,
        legend_html=charts.histogram_legend(series),
        caption="% of each split's rows per bin, on one x axis. Under it, per split: min to max, "
        "a box from the 25th to the 75th percentile, the median in black.",
    )
    return h.card(
        f"{f.name} ({f.type})",
        h.grid(table, fig, fit=(0,)),
        anchor=h.anchor_id(f.name),
        kind=f.kind,
        heading=f.badges(),
    )


def _categorical_card(f: _Feature, colors: dict[str, str]) -> str:
    labels = ("rows", "present", "missing", "unique", "avg length")
    cols: dict[str, list[Any]] = {}
    for s in f.splits:
        feat = f.here(s)
        if feat is None:
            cols[s] = ["absent", "", "", "", ""]
            continue
        ss = feat.string_stats
        cols[s] = [
            f.rows[s],
            int(ss.common_stats.num_non_missing),
            h.fmt_pct(_missing_fraction(feat, f.rows[s])),
            int(ss.unique),
            ss.avg_length,
        ]
    stats = h.table(["", *f.splits], [[lab, *(cols[s][i] for s in f.splits)] for i, lab in enumerate(labels)])
    values: list[str] = []
    for s in f.splits:  # the union, ordered by the first split's share, then the others'
        values += [
            v for v, _ in sorted(f.shares.get(s, {}).items(), key=lambda kv: -kv[1]) if v not in values
        ]
    shown = values[:TOP_VALUES_SHOWN]
    chart = charts.grouped_bars(
        shown,
        [(s, colors[s], [100.0 * f.shares[s].get(v, 0.0) for v in shown]) for s in f.splits if s in f.shares],
        label=f"{f.name}: share of each value per split",
        x_label="% of the split's non-missing rows",
        value_format=lambda v: f"{v:.1f} %",
        width=460,
    )
    present = [s for s in f.splits if s in f.shares]
    top = h.table(
        ["value", *(x for s in present for x in (f"{s} rows", f"{s} share"))],
        [
            [
                h.code(v),
                *(x for s in present for x in (f.counts[s].get(v, 0.0), h.fmt_pct(f.shares[s].get(v, 0.0)))),
            ]
            for v in shown
        ],
        numeric=list(range(1, 2 * len(present) + 1)),
    )
    more = len(values) - len(shown)
    fig = h.figure(
        chart,
        legend_html=h.legend([(s, colors[s]) for s in f.splits if s in f.shares]),
        caption=f"Top {len(shown)} of {len(values)} values" + (f" ({more} more not shown)" if more else ""),
    )
    return h.card(
        f"{f.name} ({f.type})",
        h.grid(stats, fig, top, fit=(0, 2)),
        anchor=h.anchor_id(f.name),
        kind=f.kind,
        heading=f.badges(),
    )


def render_report(stats_by_split: dict[str, Any], *, title: str = "Data statistics", run_id: str = "") -> str:
    """One self-contained HTML page: an overview, what stands out, then one card per feature."""
    splits = list(stats_by_split)
    datasets = {s: stats_by_split[s].datasets[0] for s in splits}
    views = {s: {feature_name(f): f for f in d.features} for s, d in datasets.items()}
    rows = {s: int(d.num_examples) for s, d in datasets.items()}
    order: list[str] = []
    for s in splits:
        order += [n for n in views[s] if n not in order]
    colors = {s: h.PALETTE[i % len(h.PALETTE)] for i, s in enumerate(splits)}
    features = [_Feature(n, splits, views, rows) for n in order]

    overview, kinds = [], []
    for f in features:
        row: list[Any] = [h.Raw(f'<a href="#{h.anchor_id(f.name)}">{h.esc(f.name)}</a>'), f.type]
        for s in splits:
            feat = f.here(s)
            row += (
                [int(_common(feat).num_non_missing), h.fmt_pct(_missing_fraction(feat, rows[s]))]
                if feat is not None
                else [h.Raw(h.badge("absent", "bad")), ""]
            )
        overview.append([*row, h.Raw(f.badges())])
        kinds.append(f.kind)
    headers = ["feature", "type", *(x for s in splits for x in (f"{s}: present", f"{s}: missing")), "notes"]
    flagged = [f for f in features if f.notes]
    highlights = (
        "<ul>"
        + "".join(
            f'<li><a href="#{h.anchor_id(f.name)}">{h.esc(f.name)}</a>: '
            + "; ".join(h.esc(t) for t, _ in f.notes)
            + "</li>"
            for f in flagged
        )
        + "</ul>"
        if flagged
        else h.paragraph(
            "Nothing stands out: no feature is missing values, absent or of another type in a split, "
            f"single-valued, or differs between the splits by {DIFFERENCE_FLAG:.0%} of rows or more."
        )
    )
    numeric = [_numeric_card(f, colors) for f in features if f.numeric]
    categorical = [_categorical_card(f, colors) for f in features if not f.numeric]
    sections = [
        h.nav(
            [
                ("What stands out", "highlights"),
                ("Overview", "overview"),
                ("Numeric features", "numeric"),
                ("Categorical features", "categorical"),
            ]
        ),
        h.section("What stands out", highlights, anchor="highlights"),
        h.section(
            "Overview",
            h.table(headers, overview, numeric=[2 + 2 * i for i in range(len(splits))], row_classes=kinds),
            anchor="overview",
        ),
        h.section("Numeric features", *(numeric or [h.paragraph("none", muted=True)]), anchor="numeric"),
        h.section(
            "Categorical features", *(categorical or [h.paragraph("none", muted=True)]), anchor="categorical"
        ),
    ]
    summary = ", ".join(f"{s}: {h.fmt_num(rows[s])} rows" for s in splits)
    run = f" · run {run_id}" if run_id else ""
    return h.page(
        title,
        sections,
        subtitle=f"{summary} · {len(order)} features{run} · TensorFlow Data Validation statistics",
    )
