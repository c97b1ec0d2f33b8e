"""The statistics stage's HTML report: every feature of every split, the splits on one axis.

What Facets Overview shows, as one self-contained page (``html``, ``charts``): an overview
table (sortable, filterable, the label marked), then one card per feature that opens and closes
(the drill-down) and in which train and eval share their bins (``distributions``) —

- numeric: rows, missing and zero shares, mean/std/min/median/max, quantiles (from TFDV's
  QUANTILES histogram), and the splits' histograms on common bins in % of each split's rows
  with a value, a quantile strip per split under them; an integer with few values (a count, a
  class) as bars per value;
- categorical: unique count, average length, the top values as side-by-side bars of each
  split's share, values that appear in one split only.

What deserves a look (``statistics_notes``) is highlighted in the overview row, the card's edge
and a list at the top: a feature absent from a split or of another type there (red), missing
values, a single value, values only one split has, an identifier-like column, or a bin's or
category's share differing between the splits by ``DIFFERENCE_FLAG`` or more AND by more than
sampling noise (a difference within the noise of a small split is a grey note). These are plain
observations on the statistics; the verdicts against the schema and thresholds are validate's
report. Years, ids and codes print without thousands separators.
"""

from __future__ import annotations

from typing import Any

from components.lib import charts, html_script
from components.lib import html as h
from components.lib.distributions import (
    OTHER,
    QUANTILES,
    common_stats,
    feature_format,
    missing_fraction,
    quantiles,
    rebin,
)
from components.lib.statistics_io import feature_name
from components.lib.statistics_notes import DIFFERENCE_FLAG, FeatureView

__all__ = ["render_report", "quantiles", "rebin", "feature_format"]
TOP_VALUES_SHOWN = 10  # categories per chart / table


def _value_table(f: FeatureView) -> str:
    """Counts and moments beside the quantiles, one column per split."""
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
            h.fmt_pct(missing_fraction(feat, f.rows[s])),
            h.fmt_pct(ns.num_zeros / present) if present else "",
            f.fmt(ns.mean),
            h.fmt_num(ns.std_dev),
            "",
        ]
    qs = {s: quantiles(feat) if (feat := f.here(s)) is not None else {} for s in f.splits}
    rows = [
        [lab, *(cols[s][i] for s in f.splits), q, *(f.fmt(qs[s][q]) if q in qs[s] else "" for s in f.splits)]
        for i, (lab, (q, _)) in enumerate(zip(labels, QUANTILES, strict=True))
    ]
    n = len(f.splits)
    return h.table(
        ["", *f.splits, "quantile", *f.splits], rows, numeric=[*range(1, n + 1), *range(n + 2, 2 * n + 2)]
    )


def _shares_chart(f: FeatureView, colors: dict[str, str], shown: list[int]) -> str:
    """Bars of each split's share per value (``shown``: indexes into the common bins)."""
    sh = f.shared
    assert sh is not None
    return charts.grouped_bars(
        [sh.labels[i] for i in shown],
        [(s, colors[s], [sh.percent(s)[i] for i in shown]) for s in f.splits if s in sh.counts],
        label=f"{f.name}: share of each value per split",
        x_label="% of the split's rows with a value",
        value_format=lambda v: f"{v:.1f} %",
        width=460,
    )


def _numeric_card(f: FeatureView, colors: dict[str, str], open_: bool) -> str:
    """The value table beside one chart of the splits on common bins (bars per value for few integers)."""
    sh = f.shared
    legend = h.legend([(s, colors[s]) for s in f.splits if sh and s in sh.counts])
    if sh is None:
        fig = h.paragraph("(no values)", muted=True)
    elif sh.kind == "values":
        fig = h.figure(
            _shares_chart(f, colors, list(range(len(sh.labels)))),
            legend_html=legend,
            caption=f"An integer with {len(sh.labels)} values: each value's share of the split's "
            "rows with a value.",
        )
    else:
        series = [(s, colors[s], sh.percent(s)) for s in f.splits if s in sh.counts]
        qs = {s: quantiles(feat) for s in f.splits if (feat := f.here(s)) is not None}
        chart = charts.overlaid_histogram(
            sh.edges,
            series,
            label=f"{f.name}: histogram per split",
            x_label=f.name,
            x_format=f.fmt,
            strips=[
                (colors[s], {("p50" if k == "median" else k): v for k, v in q.items()})
                for s, q in qs.items()
                if q
            ],
        )
        fig = h.figure(
            chart,
            legend_html=charts.histogram_legend(series),
            caption="% of each split's rows with a value per bin, the same bins for every split. Under "
            "it, per split: min to max, a box from the 25th to the 75th percentile, the median in black.",
        )
    return h.card(
        f"{f.name} ({f.type})",
        h.grid(_value_table(f), fig, fit=(0,)),
        anchor=h.anchor_id(f.name),
        kind=f.kind,
        heading=f.badges(),
        collapsible=True,
        open_=open_,
    )


def _categorical_card(f: FeatureView, colors: dict[str, str], open_: bool) -> str:
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
            h.fmt_pct(missing_fraction(feat, f.rows[s])),
            int(ss.unique),
            ss.avg_length,
        ]
    stats = h.table(["", *f.splits], [[lab, *(cols[s][i] for s in f.splits)] for i, lab in enumerate(labels)])
    sh = f.shared
    if sh is None:
        return h.card(
            f"{f.name} ({f.type})", stats, anchor=h.anchor_id(f.name), kind=f.kind, heading=f.badges()
        )
    values = [i for i, v in enumerate(sh.labels) if v != OTHER]
    shown = values[:TOP_VALUES_SHOWN]
    present = [s for s in f.splits if s in sh.counts]
    top = h.table(
        ["value", *(x for s in present for x in (f"{s} rows", f"{s} share"))],
        [
            [
                h.code(sh.labels[i]),
                *(x for s in present for x in (sh.counts[s][i], h.fmt_pct(sh.percent(s)[i] / 100))),
            ]
            for i in shown
        ],
        numeric=list(range(1, 2 * len(present) + 1)),
    )
    more = len(values) - len(shown)
    fig = h.figure(
        _shares_chart(f, colors, shown),
        legend_html=h.legend([(s, colors[s]) for s in present]),
        caption=f"Top {len(shown)} of {len(values)} values" + (f" ({more} more not shown)" if more else ""),
    )
    return h.card(
        f"{f.name} ({f.type})",
        h.grid(stats, fig, top, fit=(0, 2)),
        anchor=h.anchor_id(f.name),
        kind=f.kind,
        heading=f.badges(),
        collapsible=True,
        open_=open_,
    )


def _overview(features: list[FeatureView], splits: list[str], rows: dict[str, int]) -> str:
    """The feature table: sortable by any column, filterable by text or to the flagged rows."""
    overview, kinds = [], []
    for f in features:
        name = f'<a href="#{h.anchor_id(f.name)}">{h.esc(f.name)}</a>'
        row: list[Any] = [h.Raw(name + (" " + h.badge("label", "label") if f.is_label else "")), f.type]
        for s in splits:
            feat = f.here(s)
            row += (
                [int(common_stats(feat).num_non_missing), h.fmt_pct(missing_fraction(feat, rows[s]))]
                if feat is not None
                else [h.Raw(h.badge("absent", "bad")), ""]
            )
        notes = " ".join(h.badge(t, k) for t, k in f.notes)
        overview.append([*row, f"{100 * f.gap:.1f}" if len(splits) > 1 else "", h.Raw(notes)])
        kinds.append(f.kind)
    headers = [
        "feature",
        "type",
        *(x for s in splits for x in (f"{s}: present", f"{s}: missing")),
        "largest difference (points)",
        "notes",
    ]
    n = len(splits)
    numeric = [*(2 + 2 * i for i in range(n)), *(3 + 2 * i for i in range(n)), 2 + 2 * n]
    note_cells = {(r, len(headers) - 1): "notes" for r in range(len(overview))}
    controls = html_script.table_filter(
        "features", placeholder="filter features", flagged_label="only flagged features"
    )
    table = h.table(
        headers,
        overview,
        numeric=numeric,
        row_classes=kinds,
        cell_classes=note_cells,
        ident="features",
        sortable=True,
    )
    return controls + table


def render_report(
    stats_by_split: dict[str, Any], *, title: str = "Data statistics", run_id: str = "", label: str = ""
) -> str:
    """One self-contained HTML page: an overview, what stands out, then one card per feature.

    ``label``: the label column, marked in the overview and its card and listed first.
    """
    splits = list(stats_by_split)
    datasets = {s: stats_by_split[s].datasets[0] for s in splits}
    views = {s: {feature_name(f): f for f in d.features} for s, d in datasets.items()}
    rows = {s: int(d.num_examples) for s, d in datasets.items()}
    order: list[str] = [label] if any(label in v for v in views.values()) else []
    for s in splits:
        order += [n for n in views[s] if n not in order]
    colors = {s: h.PALETTE[i % len(h.PALETTE)] for i, s in enumerate(splits)}
    features = [FeatureView(n, splits, views, rows, label) for n in order]
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
            f"single-valued, identifier-like, or differs between the splits by {DIFFERENCE_FLAG:.0%} of "
            "rows or more."
        )
    )
    few = len(features) <= 12  # a short page opens every card; a long one only the flagged ones
    numeric = [_numeric_card(f, colors, few or f.kind != "" or f.is_label) for f in features if f.numeric]
    categorical = [_categorical_card(f, colors, few or f.kind != "") for f in features if not f.numeric]
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
        h.section("Overview", _overview(features, splits, rows), anchor="overview"),
        h.section("Numeric features", *(numeric or [h.paragraph("none", muted=True)]), anchor="numeric"),
        h.section(
            "Categorical features", *(categorical or [h.paragraph("none", muted=True)]), anchor="categorical"
        ),
    ]
    summary = ", ".join(f"{s}: {h.fmt_num(rows[s])} rows" for s in splits)
    run = f" · run {run_id}" if run_id else ""
    lab = f" · label {label}" if label else ""
    return h.page(
        title,
        sections,
        subtitle=f"{summary} · {len(order)} features{lab}{run} · TensorFlow Data Validation statistics",
        script=html_script.TABLE_SCRIPT,
    )
