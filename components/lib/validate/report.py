"""Validate's Markdown report: verdict, anomalies, unseen categories by value, drift and skew figures."""

from __future__ import annotations

from typing import Any

from components.lib.validate.verdict import (
    VERDICT_ANOMALIES,
    VERDICT_FAILED,
    VERDICT_OK,
    Comparison,
    ValidationResult,
)


def _cell(text: Any) -> str:
    """Text safe inside a Markdown table cell."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").strip()


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _num(value: float) -> str:
    return f"{value:.4g}"


VERDICT_TEXT = {
    VERDICT_OK: "✅ **ok** — the eval data matches the schema and the train data.",
    VERDICT_ANOMALIES: "⚠️ **anomalies** — reported below; none fails the run under fail_on={fail_on}.",
    VERDICT_FAILED: "❌ **failed** — {n} anomal{ies} under fail_on={fail_on}; the run stops here.",
}


def render_markdown(result: ValidationResult, *, label: str) -> str:
    """A readable report: verdict, anomalies, unseen categories by value, drift and skew figures."""
    n = len(result.failing)
    verdict = VERDICT_TEXT[result.verdict].format(fail_on=result.fail_on, n=n, ies="y" if n == 1 else "ies")
    env = f"environment {result.environment}" if result.environment else "no environment"
    out = [
        "# Data validation",
        "",
        f"Verdict: {verdict}",
        "",
        _table(
            ["Item", "Value"],
            [
                ["Validated", f"eval split ({result.eval_rows:,} rows) against the schema ({env})"],
                ["Compared with", f"train split ({result.train_rows:,} rows)"],
                ["Label", label],
                ["fail_on", result.fail_on],
                ["Skew threshold", _num(result.skew_threshold)],
                ["Drift threshold", _num(result.drift_threshold)],
            ],
        ),
        "",
        f"## Anomalies ({len(result.findings)})",
        "",
    ]
    if result.findings:
        rows = [
            [
                f"`{f.feature}`",
                f.severity,
                "**yes**" if f.unsafe else "no",
                "**yes**" if f in result.failing else "no",
                f.short_description,
                f.description,
            ]
            for f in result.findings
        ]
        out.append(
            _table(["Feature", "Severity", "Unsafe", "Fails run", "Short description", "Description"], rows)
        )
        out += [
            "",
            "Unsafe: the label or a schema feature is missing, or a type or shape does not match — "
            "training on this data would fail or be wrong.",
        ]
    else:
        out.append("No anomalies.")
    out += ["", "## Categories not seen in train", ""]
    if result.unseen:
        rows = []
        for feature, values in result.unseen.items():
            total = max(result.eval_rows, 1)
            if not values:
                rows.append([f"`{feature}`", "(see the anomaly's description)", "", ""])
            for v, c in values:
                rows.append([f"`{feature}`", f"`{v}`", f"{c:,.0f}", f"{100 * c / total:.2f} %"])
        out.append(_table(["Feature", "Value", "Eval count", "Eval share"], rows))
        out += ["", "Transform maps a category it has not seen to the out-of-vocabulary bucket."]
    else:
        out.append("None: every categorical value in eval is in the schema's domain.")
    out += [
        "",
        "## Drift and skew (eval compared with train)",
        "",
        "L∞: largest difference of a category's share; JSD: approximate Jensen-Shannon divergence of the "
        "histograms. A figure above its threshold is an anomaly.",
        "",
    ]
    by_feature: dict[str, dict[str, Comparison]] = {}
    for comparison in result.comparisons:
        by_feature.setdefault(comparison.feature, {})[comparison.kind] = comparison
    if by_feature:
        rows = []
        for feature, kinds in by_feature.items():
            d, s = kinds.get("drift"), kinds.get("skew")
            measure = next(iter(kinds.values())).measure
            flag = "**over threshold**" if any(k.exceeded for k in kinds.values()) else "ok"
            rows.append(
                [
                    f"`{feature}`",
                    {"L_INFTY": "L∞", "JENSEN_SHANNON_DIVERGENCE": "JSD"}.get(measure, measure),
                    _num(d.value) if d else "",
                    _num(d.threshold) if d else "",
                    _num(s.value) if s else "",
                    _num(s.threshold) if s else "",
                    flag,
                ]
            )
        out.append(
            _table(["Feature", "Measure", "Drift", "Drift threshold", "Skew", "Skew threshold", ""], rows)
        )
    else:
        out.append("No figures (no feature could be compared).")
    out.append("")
    return "\n".join(out)
