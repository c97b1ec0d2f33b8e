"""The evaluate stage's HTML report, verdict first.

1. the verdict and its reasons, the gates that apply to the task; 2. the metrics with their
change against the baseline; 3. per slice, candidate and baseline bars (the MAE bound drawn for
a regressor); 4. train's eval predictions of this candidate: for a regressor predicted vs actual
and the residuals (``regression_views``), for a classifier the confusion matrix, ROC and PR
curves, calibration and a per-class table (``classification_views``); 5. loss and metric curves
per epoch (``training_views``); 6. the tuner's trials and the hyperparameters train used. The
title names the model, the run and the baseline (the candidate's version is decided by push).
"""

from __future__ import annotations

import math
from typing import Any

from components import names
from components.lib import charts
from components.lib import html as h
from components.lib.evaluate import classification_views, regression_views, training_views
from components.lib.evaluate.classification_views import undefined
from components.lib.evaluate.keys import ACCURACY, BASELINE, CANDIDATE, COUNT, LOG_LOSS, MAE, MSE
from components.lib.evaluate.report_inputs import ReportContext
from components.lib.evaluate.results import EvaluateResult
from components.lib.tuner_progress import METRIC, format_value

CAND_COLOR, BASE_COLOR = h.PALETTE[0], h.PALETTE[1]
BLANK = "—"  # an empty cell (no baseline figure, no change for a count): never a blank cell
LOWER_IS_BETTER = ("mae", "mse", "rmse", "log_loss")
HIGHER_IS_BETTER = ("accuracy", "auc", "r2", "macro_f1")


def _configured(value: Any, shown: Any) -> Any:
    return "not configured" if value is None else shown


def gate_rows(result: EvaluateResult) -> list[tuple[str, Any]]:
    """The gates of the task: accuracy's for a classifier, MAE's for a regressor.

    The other task's absolute bound appears only when it is set, saying that it does not apply.
    """
    t = result.blessing.thresholds or {}
    cls = result.classification
    metric = "accuracy" if cls else "MAE"
    error = "error rate (1 − accuracy)" if cls else "MAE"
    margin, rel = t.get("naive_margin"), t.get("max_relative_degradation")
    rows: list[tuple[str, Any]] = []
    if cls:
        rows.append(
            ("minimum accuracy (min_accuracy)", _configured(t.get("min_accuracy"), t.get("min_accuracy")))
        )
    else:
        rows.append(
            ("MAE upper bound (mae_threshold)", _configured(t.get("mae_threshold"), t.get("mae_threshold")))
        )
    rows.append(
        (
            "naive margin (naive_margin)",
            _configured(margin, f"{error} at least {h.fmt_pct(margin or 0.0)} below the naive predictor's"),
        )
    )
    change = "a fall of at most" if cls else "a rise of at most"
    unused = "" if result.blessing.baseline is not None else " (not applied: no baseline)"
    rows.append(
        (
            "max relative degradation",
            _configured(rel, f"{metric} against the baseline: {change} {h.fmt_pct(rel or 0.0)}{unused}"),
        )
    )
    other = t.get("mae_threshold") if cls else t.get("min_accuracy")
    if other is not None:
        key = "mae_threshold" if cls else "min_accuracy"
        rows.append(
            (key, f"{h.fmt_num(other)}: does not apply to {'classification' if cls else 'regression'}")
        )
    return rows


def _verdict(result: EvaluateResult, ctx: ReportContext) -> str:
    b = result.blessing
    t = b.thresholds or {}
    sentence = (
        "the candidate passes its gates; push publishes it as the next version."
        if b.blessed
        else "the candidate fails a gate; push publishes nothing."
    )
    baseline = (
        f"{ctx.model_name} v{b.baseline}" + (f" (run {ctx.baseline_run_id})" if ctx.baseline_run_id else "")
        if b.baseline is not None
        else names.NO_BASELINE
    )
    return h.section(
        "Verdict",
        h.verdict_line(b.verdict.replace("_", " "), "ok" if b.blessed else "bad", sentence, value=b.verdict),
        h.bullets(b.reasons),
        h.kv_table(
            [
                ("task", "classification" if result.classification else "regression"),
                *gate_rows(result),
                ("thresholds from", t.get("source") or "parameters"),
                ("baseline", baseline),
                ("candidate model", h.path(b.model_path)),
                ("baseline model", h.path(b.baseline_model_path) if b.baseline_model_path else "none"),
            ],
            caption="Gates and models",
            blank=BLANK,
        ),
        anchor="verdict",
    )


def _metrics(result: EvaluateResult, label: str) -> str:
    cand, base, has_base = result.candidate, result.baseline, bool(result.baseline)
    rows, classes = [], {}
    shown: tuple[tuple[str, str], ...] = (
        ("example_count", "examples"),
        ("mae", "mean absolute error"),
        ("mse", "mean squared error"),
        ("rmse", "root mean squared error"),
        ("r2", "R² (1 - MSE / variance of the labels)"),
    )
    if result.classification:  # the task's metrics (TFMA's: tfma_engine.CLASSIFICATION_METRICS)
        shown = (("example_count", "examples"), ("accuracy", "accuracy"), ("log_loss", "log loss"))
        shown += (("macro_f1", "macro-F1 (mean of the classes' F1)"),)
        shown += (("auc", "AUC (positive class)"),) if "auc" in cand else ()
    for r, (key, title) in enumerate(shown):
        row: list[Any] = [title, cand.get(key)]
        if has_base:
            directed = key in LOWER_IS_BETTER or key in HIGHER_IS_BETTER
            change = h.fmt_change(cand.get(key), base.get(key)) if directed else ""
            row += [base.get(key), change]
            if change and cand.get(key) != base.get(key):
                lower = cand[key] < base[key]
                classes[(r, 3)] = "better" if lower == (key in LOWER_IS_BETTER) else "worse"
        rows.append(row)
    headers = ["metric", "candidate"] + (["baseline", "change"] if has_base else [])
    note = "" if has_base else " No baseline: the candidate is shown alone."
    return h.section(
        "Metrics",
        h.table(
            headers,
            rows,
            numeric=list(range(1, len(headers))),
            cell_classes=classes,
            blank=BLANK,
            caption=f"label {label!r} on the eval split"
            + (
                ", accuracy, macro-F1 and AUC: higher is better."
                if result.classification
                else ", errors in label units (lower is better), R² without units (higher is better)."
            )
            + note,
        ),
        _classes(result),
        anchor="metrics",
    )


def _per_class(value: float | None, why: str) -> Any:
    return value if value is not None and math.isfinite(value) else undefined(why)


def _classes(result: EvaluateResult) -> str:
    """Per class (one-vs-rest) AUC, precision and recall of the candidate (TFMA's); empty for regression.

    TFMA leaves a figure undefined (NaN) when a class has no eval rows (recall, AUC) or no row
    scores 0.5 for it (precision): the cell says so instead of being blank.
    """
    if not result.classification:
        return ""
    cand = result.candidate
    rows = [
        [
            c,
            _per_class(cand.get(f"auc/{c}"), "undefined: no rows of it, or only rows of it"),
            _per_class(cand.get(f"precision/{c}"), "never predicted"),
            _per_class(cand.get(f"recall/{c}"), "no eval rows"),
        ]
        for c in result.label_info.classes
    ]
    return h.table(
        ["class", "AUC", "precision", "recall"],
        rows,
        numeric=[1, 2, 3],
        caption="per class, one against the rest (precision and recall at a score of 0.5)",
        blank=BLANK,
    )


def _slices(result: EvaluateResult, slice_feature: str) -> str:
    has_base = bool(result.baseline)
    ordered = sorted(result.metrics.items(), key=lambda kv: (kv[0] != "Overall", kv[0]))
    rows = []
    # The gated metric per slice: MAE (regression) or accuracy (classification).
    key, second, short, long = (
        (ACCURACY, LOG_LOSS, "accuracy", "accuracy")
        if result.classification
        else (MAE, MSE, "MAE", "mean absolute error")
    )
    for name, by_model in ordered:
        c, bm = by_model.get(CANDIDATE, {}), by_model.get(BASELINE, {})
        row: list[Any] = [name, c.get(COUNT), c.get(key), c.get(second)]
        if has_base:
            row += [bm.get(key), h.fmt_change(c.get(key), bm.get(key))]
        rows.append(row)
    headers = ["slice", "examples", short, "log loss" if result.classification else "MSE"]
    headers += [f"baseline {short}", f"{short} change"] if has_base else []
    series = [("candidate", CAND_COLOR, [m.get(CANDIDATE, {}).get(key) for _, m in ordered])]
    if has_base:
        series.append(("baseline", BASE_COLOR, [m.get(BASELINE, {}).get(key) for _, m in ordered]))
    bound = None if result.classification else (result.blessing.thresholds or {}).get("mae_threshold")
    chart = charts.grouped_bars(
        [n for n, _ in ordered],
        series,
        label=f"{short} per slice",
        x_label=long,
        threshold=bound,
        threshold_label=f"MAE upper bound {h.fmt_num(bound)}" if bound is not None else "",
        x_domain=(0.0, 1.0) if result.classification else (0.0, math.inf),
    )
    legend = h.legend(
        [(n, c) for n, c, _ in series],
        lines=[("MAE upper bound (overall)", h.THRESHOLD_COLOR)] if bound is not None else [],
    )
    title = f"Slices: overall and by {slice_feature!r}" if slice_feature else "Slices"
    return h.section(
        title,
        h.grid(
            h.table(headers, rows, numeric=list(range(1, len(headers))), blank=BLANK),
            h.figure(chart, legend_html=legend),
            fit=(0,),
        ),
        anchor="slices",
    )


def _predictions(result: EvaluateResult, ctx: ReportContext, label: str) -> str:
    if result.classification:
        return classification_views.predictions_section(ctx.classes, ctx.train_dir)
    if not ctx.actual:
        return h.section(
            "Predictions",
            h.paragraph(f"No eval predictions found in {ctx.train_dir or 'the train output'}.", muted=True),
            anchor="predictions",
        )
    return regression_views.predictions_section(ctx, label)


def _tuning(ctx: ReportContext) -> str:
    used = h.kv_table(
        [(k, h.code(format_value(v))) for k, v in ctx.hyperparameters.items()],
        caption="Hyperparameters train used",
        blank=BLANK,
    )
    if not ctx.trials:
        return h.section(
            "Hyperparameters",
            h.paragraph(
                "No tuner trials for this run (tuning was off: train used the module's defaults and the "
                "hyperparameters parameter)."
            ),
            used if ctx.hyperparameters else "",
            anchor="tuning",
        )
    keys: list[str] = []
    for t in ctx.trials:
        keys += [k for k in t.get("values", {}) if k not in keys]
    scored = [t for t in ctx.trials if t.get(METRIC) is not None]
    # The trial train used: the lowest val_loss, or the module's defaults when within tune's margin.
    used_trials = [
        t
        for t in scored
        if t.get("values") and all(ctx.hyperparameters.get(k) == v for k, v in t["values"].items())
    ]
    best = used_trials[0] if used_trials else (min(scored, key=lambda t: t[METRIC]) if scored else None)
    rows = [
        [
            h.Raw(f"{i + 1} {h.badge('best', 'ok')}") if t is best else str(i + 1),
            *(h.code(format_value(t["values"][k])) if k in t.get("values", {}) else "" for k in keys),
            t.get(METRIC) if t.get(METRIC) is not None else f"no {METRIC} ({t.get('status') or 'failed'})",
        ]
        for i, t in enumerate(ctx.trials)
    ]
    return h.section(
        f"Tuner trials ({len(ctx.trials)})",
        h.grid(
            h.table(
                ["trial", *keys, f"{METRIC}"],
                rows,
                numeric=[len(keys) + 1],
                row_classes=["ok" if t is best else "" for t in ctx.trials],
                blank=BLANK,
                caption=f"{METRIC}: the tuner's objective, on the validation slice held out from the "
                "train split, never the eval split (lower is better); "
                "the trials are also in TensorBoard's HPARAMS tab",
            ),
            used if ctx.hyperparameters else "",
            fit=(0, 1),
        ),
        anchor="tuning",
    )


def render_report(
    result: EvaluateResult, *, label: str, slice_feature: str, context: ReportContext | None = None
) -> str:
    """A self-contained HTML page: verdict first, then metrics, slices, predictions, training, tuning."""
    ctx = context or ReportContext()
    b = result.blessing
    model = ctx.model_name or "model"
    baseline = (
        f"baseline {model} v{b.baseline}" + (f" (run {ctx.baseline_run_id})" if ctx.baseline_run_id else "")
        if b.baseline is not None
        else names.NO_BASELINE
    )
    title = f"Model evaluation: {model} candidate" + (f", run {ctx.run_id}" if ctx.run_id else "")
    parts = [
        h.nav(
            [
                ("Verdict", "verdict"),
                ("Metrics", "metrics"),
                ("Slices", "slices"),
                ("Predictions", "predictions"),
                ("Training", "training"),
                ("Hyperparameters", "tuning"),
            ]
        ),
        _verdict(result, ctx),
        _metrics(result, label),
        _slices(result, slice_feature),
        _predictions(result, ctx, label),
        training_views.training_section(ctx.history, ctx.fit),
        _tuning(ctx),
        h.paragraph(
            f"TFMA result: {result.eval_result_dir} (tfma.load_eval_result(path"
            + (f", model_name='{CANDIDATE}'" if result.baseline else "")
            + f"), tfma.load_validation_result(path)); engine {result.engine}, {result.seconds:.1f} s.",
            muted=True,
        ),
    ]
    return h.page(
        title, parts, subtitle=f"{b.verdict.replace('_', ' ')} · compared with {baseline} · {b.time}"
    )
