"""The evaluate stage's HTML report: verdict and reasons, overall and per-slice metrics, comparison."""

from __future__ import annotations

from typing import Any

from components import names
from components.lib.evaluate.keys import BASELINE, CANDIDATE, COUNT, MAE, MSE
from components.lib.evaluate.results import EvaluateResult


def render_report(result: EvaluateResult, *, label: str, slice_feature: str) -> str:
    """A self-contained HTML page: verdict and reasons, overall and per-slice metrics, comparison."""
    from components.lib import html as h

    b = result.blessing
    has_base = bool(result.baseline)
    ok = b.blessed
    t = b.thresholds or {}
    parts = [
        h.section(
            "Verdict",
            h.badge(b.verdict, "ok" if ok else "bad"),
            "<ul>" + "".join(f"<li>{h.esc(r)}</li>" for r in b.reasons) + "</ul>",
            h.kv_table(
                [
                    (
                        "MAE upper bound",
                        "not configured" if t["mae_threshold"] is None else t["mae_threshold"],
                    ),
                    (
                        "max relative degradation",
                        "not configured"
                        if t["max_relative_degradation"] is None
                        else h.fmt_pct(t["max_relative_degradation"]),
                    ),
                    ("thresholds from", t["source"]),
                    (
                        "baseline",
                        f"version {b.baseline}" if b.baseline is not None else names.NO_BASELINE,
                    ),
                    ("candidate model", b.model_path),
                    ("baseline model", b.baseline_model_path or ""),
                ],
                caption="Configuration",
            ),
        )
    ]
    cand, base = result.candidate, result.baseline
    rows = []
    for key, title in (
        ("example_count", "examples"),
        ("mae", "mean absolute error"),
        ("mse", "mean squared error"),
        ("rmse", "root mean squared error"),
    ):
        row: list[Any] = [title, cand.get(key)]
        if has_base:
            bv, cv = base.get(key), cand.get(key)
            row += [f"{(cv - bv) / bv:+.1%}" if bv and cv is not None and key != "example_count" else ""]
            row.insert(2, bv)
        rows.append(row)
    headers = ["metric", "candidate"] + (["baseline", "change"] if has_base else [])
    parts.append(h.section("Overall", h.table(headers, rows, caption=f"label {label!r}, eval split")))

    slice_rows, labels, maes = [], [], []
    for name, by_model in sorted(result.metrics.items(), key=lambda kv: (kv[0] != "Overall", kv[0])):
        c = by_model.get(CANDIDATE, {})
        row = [name, c.get(COUNT), c.get(MAE), c.get(MSE)]
        labels.append(f"{name} candidate" if has_base else name)
        maes.append(c.get(MAE) or 0.0)
        if has_base:
            bm = by_model.get(BASELINE, {})
            row += [bm.get(MAE), bm.get(MSE)]
            labels.append(f"{name} baseline")  # one chart, one scale: bars side by side compare
            maes.append(bm.get(MAE) or 0.0)
        slice_rows.append(row)
    sh = ["slice", "examples", "MAE", "MSE"] + (["baseline MAE", "baseline MSE"] if has_base else [])
    chart = h.bar_chart(labels, maes, title="MAE per slice", width=520)
    parts.append(
        h.section(
            f"Slices (overall and by {slice_feature!r})" if slice_feature else "Slices",
            h.table(sh, slice_rows),
            chart,
        )
    )
    parts.append(
        h.paragraph(
            f"TFMA result: {result.eval_result_dir} (tfma.load_eval_result(path"
            + (f", model_name='{CANDIDATE}'" if has_base else "")
            + f"), tfma.load_validation_result(path)). TFMA wall time {result.seconds:.1f} s.",
            muted=True,
        )
    )
    return h.page("Model evaluation", parts, subtitle=f"{b.verdict} - {b.time}")
