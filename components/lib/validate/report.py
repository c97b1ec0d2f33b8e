"""Validate's HTML report and log summary.

The verdict, one table of anomalies with what to do, the changes since the served version
(``continuity``), unseen categories, then skew and drift, each saying what it compared. Skew
compares this run's eval split with its train split; drift compares this run's train split with
the one the served model was trained on (``drift``), or says why it was not computed.
"""

from __future__ import annotations

import textwrap
from typing import Any

from components.lib import html as h
from components.lib.validate.distances import comparison_section
from components.lib.validate.severity import noise_notes
from components.lib.validate.verdict import (
    VERDICT_ANOMALIES,
    VERDICT_FAILED,
    VERDICT_OK,
    Finding,
    ValidationResult,
)

# What a user should do about an anomaly, by TFDV's AnomalyInfo.Type (first match wins).
_MISSING = {"SCHEMA_MISSING_COLUMN", "FEATURE_TYPE_NOT_PRESENT", "FEATURE_TYPE_NO_VALUES", "NO_DATA_IN_SPAN"}
_PARTLY = {"FEATURE_TYPE_LOW_FRACTION_PRESENT", "FEATURE_TYPE_LOW_NUMBER_PRESENT"}
_SHAPE = {
    "FEATURE_TYPE_LOW_NUMBER_VALUES",
    "FEATURE_TYPE_HIGH_NUMBER_VALUES",
    "FEATURE_TYPE_UNEXPECTED_REPEATED",
    "INVALID_FEATURE_SHAPE",
    "VALUE_NESTEDNESS_MISMATCH",
}
ADVICE: tuple[tuple[Any, str], ...] = (
    (
        _MISSING,
        "The column is missing from the eval data: fix the export that wrote the CSV; if the "
        "feature is gone for good, remove it from the schema (schema_file) and the user module.",
    ),
    (
        _PARTLY,
        "Some rows lack a value: the built-in modules impute it (a module of your own must too); "
        "if the gaps are an export error, fill or drop those rows at the source. A row without "
        "the label cannot be trained on.",
    ),
    (_SHAPE, "Rows carry a different number of values: make the column one value per row at the source."),
    (
        {"FLOAT_TYPE_HAS_NAN", "FLOAT_TYPE_HAS_INF"},
        "NaN or infinite values: remove or impute them at the source.",
    ),
    (
        {"ENUM_TYPE_UNEXPECTED_STRING_VALUES"},
        "Categories the schema does not know: if they are valid, add them to the schema's domain "
        "(schema_file); until then Transform maps them to the out-of-vocabulary bucket.",
    ),
    (
        {"SCHEMA_NEW_COLUMN"},
        "A column the schema does not have: add it to the schema and the module to use it; "
        "otherwise it is ignored.",
    ),
    (
        {"COMPARATOR_L_INFTY_HIGH", "COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH"},
        "A distance over its threshold: the skew and drift sections below draw the two "
        "distributions; skew_threshold / drift_threshold set how far is too far.",
    ),
)
TYPE_ADVICE = (
    "Values of another type (e.g. text in a numeric column): clean the source column, or update "
    "the schema's type (schema_file) if the change is intended."
)
DEFAULT_ADVICE = (
    "Read TFDV's description: fix the data, or update the schema (schema_file) if the change is intended."
)


def advice(finding: Finding) -> str:
    """What to do about one anomaly (the finding's own fix when it has one)."""
    if finding.fix:
        return finding.fix
    reasons = set(finding.reasons)
    for types, text in ADVICE:
        if reasons & types:
            return text
    if any("TYPE" in r for r in reasons):
        return TYPE_ADVICE
    return DEFAULT_ADVICE


VERDICT = {
    VERDICT_OK: ("OK", "ok", "the eval data matches the schema{skew}."),
    VERDICT_ANOMALIES: (
        "ANOMALIES",
        "warn",
        "{n} anomal{ies} below; none stops the run under fail_on={fail_on}.",
    ),
    VERDICT_FAILED: ("FAILED", "bad", "{n} anomal{ies} stop the run under fail_on={fail_on}: see below."),
}


def _verdict(result: ValidationResult) -> tuple[str, str, str]:
    word, kind, text = VERDICT[result.verdict]
    n = len(result.failing) if result.verdict == VERDICT_FAILED else len(result.anomalies_found)
    skew = " and its distributions are close to the train split's"
    stops = sum(f.stops for f in result.findings)
    if stops:  # not a fail_on decision: say so
        s = "" if stops == 1 else "s"
        return (
            word,
            kind,
            (
                f"{stops} change{s} since the served {result.served} stop{'s' if stops == 1 else ''} the run "
                "whatever fail_on says: see below."
            ),
        )
    noise = len(noise_notes(result.findings))
    if noise:
        s = "s" if noise != 1 else ""
        skew = f"; {noise} distance{s} over a threshold within sampling noise (notes below)"
        text = text.replace(" and its distributions", "")
    return word, kind, text.format(n=n, ies="y" if n == 1 else "ies", fail_on=result.fail_on, skew=skew)


SEVERITY_BADGE = {"ERROR": "bad", "WARNING": "warn", "INFO": ""}  # INFO: a grey note


def changes_title(result: ValidationResult) -> str:
    """The report's section title: ``Changes since the served version (model m v3)``."""
    return "Changes since the served version" + (f" ({result.served})" if result.served_compared else "")


def _changes_section(result: ValidationResult) -> str:
    """The changes since the served version, stops first, each with what to do."""
    title = changes_title(result)
    if not result.served_compared:
        return h.section(title, h.paragraph(f"The data was {result.served}.", muted=True), anchor="served")
    changes = result.changes
    if not changes:
        return h.section(
            title,
            h.paragraph(
                f"No change: every column has the type, values and range of the served {result.served}."
            ),
            anchor="served",
        )
    failing = {id(f) for f in result.failing}
    rows = [
        [
            h.code(f.feature),
            h.Raw(h.badge(f.severity, SEVERITY_BADGE.get(f.severity, "warn"))),
            h.Raw(f"<strong>{h.esc(f.short_description)}</strong><br>{h.esc(f.description)}"),
            h.Raw(h.badge("stops the run", "bad") if id(f) in failing else "no"),
            f.fix,
        ]
        for f in changes
    ]
    intro = (
        "This run's schema and statistics against the schema and training data of the served "
        f"{result.served}. "
        "A column the served model reads that is gone, or text where numbers were, stops the run whatever "
        "fail_on says: the candidate would replace a model its clients can no longer call."
    )
    table = h.table(
        ["feature", "severity", "what changed", "stops the run", "what to do"],
        rows,
        row_classes=["bad" if id(f) in failing else ("" if f.is_note else "warn") for f in changes],
    )
    return h.section(title, h.paragraph(intro), table, anchor="served")


def _anomalies_section(result: ValidationResult) -> str:
    """TFDV's anomalies, each with whether it stops the run and what to do."""
    failing = {id(f) for f in result.failing}
    tfdv_findings = [f for f in result.findings if not f.served]
    if tfdv_findings:
        rows = [
            [
                h.code(f.feature),
                h.Raw(h.badge(f.severity, SEVERITY_BADGE.get(f.severity, "warn"))),
                h.Raw(f"<strong>{h.esc(f.short_description)}</strong><br>{h.esc(f.description)}"),
                h.Raw(h.badge("stops the run", "bad") if id(f) in failing else "no"),
                advice(f),
            ]
            for f in tfdv_findings
        ]
        body = h.table(
            ["feature", "severity", "what TFDV found", "stops the run", "what to do"],
            rows,
            row_classes=["bad" if id(f) in failing else ("" if f.is_note else "warn") for f in tfdv_findings],
        )
    else:
        body = h.paragraph("No anomalies.")
    notes = sum(f.is_note for f in tfdv_findings)
    count = f"{len(tfdv_findings) - notes}" + (f", {notes} note{'s' if notes != 1 else ''}" if notes else "")
    return h.section(f"Anomalies ({count})", body, anchor="anomalies")


def _checked(result: ValidationResult, label: str) -> str:
    """What was compared with what: the eval split, skew, drift, continuity and the thresholds."""
    env = f"environment {result.environment}" if result.environment else "no environment"
    return h.kv_table(
        [
            (
                "validated",
                f"the eval split ({result.eval_rows:,} rows) against the schema ({env}), label {label!r}",
            ),
            ("skew compares", f"the eval split with this run's train split ({result.train_rows:,} rows)"),
            (
                "drift compares",
                f"this run's train split ({result.train_rows:,} rows) with {result.drift_reference}"
                if result.drift_computed
                else f"drift was {result.drift_reference}",
            ),
            (
                "continuity compares",
                f"this run's schema and statistics with the served {result.served}"
                if result.served_compared
                else f"the data was {result.served}",
            ),
            ("fail_on", result.fail_on),
            ("skew threshold", result.skew_threshold),
            ("drift threshold", result.drift_threshold),
        ],
        caption="What was checked",
    )


def render_html(result: ValidationResult, *, label: str, run_id: str = "") -> str:
    """The report: verdict, what was compared, anomalies with what to do, unseen values, skew, drift."""
    word, kind, sentence = _verdict(result)
    parts = [h.verdict_line(word, kind, sentence), _checked(result, label)]
    parts.append(_anomalies_section(result))
    parts.append(_changes_section(result))
    if result.excluded:
        parts.append(
            h.section(
                "Columns that are not model features",
                h.table(["column", "why"], [[h.code(k), v] for k, v in sorted(result.excluded.items())]),
                h.paragraph(
                    "The schema stage tagged these (kubetfx:excluded): the default module leaves them out, "
                    "the serving signature still accepts them. features= / exclude_features= decide instead.",
                    muted=True,
                ),
            )
        )
    if result.unseen:
        unseen: list[list[Any]] = []
        for feature, values in result.unseen.items():
            if not values:
                unseen.append([h.code(feature), "(see the anomaly's description)", "", ""])
            for v, c in values:
                unseen.append([h.code(feature), h.code(v), c, h.fmt_pct(c / max(result.eval_rows, 1), 2)])
        parts.append(
            h.section(
                "Categories not seen in train",
                h.table(["feature", "value", "eval rows", "eval share"], unseen, numeric=[2, 3]),
                h.paragraph(
                    "Transform maps a category it has not seen to the out-of-vocabulary bucket.", muted=True
                ),
            )
        )
    measures = (
        "L∞: the largest difference of a category's share; JS divergence: the Jensen-Shannon "
        "divergence of the histograms of a number."
    )
    parts.append(
        comparison_section(
            "Skew: eval split vs train split of this run",
            f"Do the two splits of this run's data agree? {measures}",
            "skew",
            [c for c in result.comparisons if c.kind == "skew"],
            result.skew_threshold,
            result.sides,
        )
    )
    if result.drift_computed:
        parts.append(
            comparison_section(
                "Drift: this run's training data vs the served model's",
                "Has the data moved since the model being served was trained? This run's train split "
                f"compared with {result.drift_reference}. {measures}",
                "drift",
                [c for c in result.comparisons if c.kind == "drift"],
                result.drift_threshold,
                result.sides,
            )
        )
    else:
        parts.append(h.section("Drift", h.paragraph(f"Drift was {result.drift_reference}.")))
    title = "Data validation" + (f": run {run_id}" if run_id else "")
    n = len(result.anomalies_found)
    found = f"{n} anomal{'y' if n == 1 else 'ies'}"
    return h.page(title, parts, subtitle=f"{word} · {found} · TensorFlow Data Validation")


def summary_lines(result: ValidationResult) -> list[str]:
    """A few plain lines for the task log: the verdict, each anomaly, what drift compared."""
    word, _, sentence = _verdict(result)
    lines = [f"validation {word}: {sentence}"]
    failing = {id(f) for f in result.failing}
    for f in result.findings:
        if f.served:
            continue
        stop = " (stops the run)" if id(f) in failing else ""
        lines.append(f"  {f.feature}: {f.severity} {f.short_description}{stop}")
    lines.append(f"  drift: {'against ' if result.drift_computed else ''}{result.drift_reference}")
    if not result.served_compared:
        lines.append(f"  changes since the served version: {result.served}")
        return lines
    changes = result.changes
    lines.append(f"  changes since the served version ({result.served}): {len(changes) or 'none'}")
    for f in changes:
        stop = " (stops the run)" if id(f) in failing else ""
        lines.append(f"    {f.feature}: {f.severity} {f.description}{stop}")
    return lines


CONSOLE_LIMIT = 8  # lines of changes and anomalies a local run's console shows; the report has all


def console_lines(result: ValidationResult) -> list[str]:
    """What the console shows of a validation, at most ``CONSOLE_LIMIT`` lines and then a count.

    The changes since the served version (stops first), the anomalies, and the distances over
    their threshold: the task log and the report have everything.
    """
    failing = {id(f) for f in result.failing}
    changes = sorted(result.changes, key=lambda f: (id(f) not in failing, f.is_note))
    lines = [
        f"since {result.served}: {f.feature}: {f.severity} {textwrap.shorten(f.description, 140)}"
        + (" (stops the run)" if id(f) in failing else "")
        for f in changes
    ]
    lines += [
        f"{f.feature}: {f.severity} {f.short_description}" + (" (stops the run)" if id(f) in failing else "")
        for f in result.findings
        if not f.served
    ]
    noise = {f.feature for f in noise_notes(result.findings)}  # said once, as the note above
    lines += [
        f"{c.kind} of {c.feature!r}: {c.value:.3g} over the threshold {c.threshold:g}"
        for c in result.comparisons
        if c.exceeded and c.feature not in noise
    ]
    if len(lines) > CONSOLE_LIMIT:
        lines = lines[:CONSOLE_LIMIT] + [f"… and {len(lines) - CONSOLE_LIMIT} more in the report"]
    return lines
