"""Validate logic: eval statistics against the schema, train/eval drift and skew, and the verdict.

What TFX's ExampleValidator does (``tfdv.validate_statistics`` of the eval split against the
schema, in the TRAINING environment), plus the train/eval comparison TFDV offers through
comparators: on a copy of the schema every feature gets a drift comparator (eval against
train as the "previous" data) and a skew comparator (train as the "serving" data) —
L-infinity distance for categorical features, approximate Jensen-Shannon divergence for
numeric ones — so their figures land in the anomalies proto (``drift_skew_info``) and any
feature over a threshold becomes an anomaly. The user's schema file is never changed.

Not every anomaly should stop a run. ``fail_on="unsafe"`` fails only on anomalies that make
training unsafe: a missing label, a schema feature missing from the data (entirely or in some
examples, which breaks parsing fixed-shape features), a type or shape mismatch, or values the
schema explicitly forbids (NaN/inf). Drift, skew, new columns and categories never seen in
train are reported and left to the user: a new category is handled by Transform's OOV bucket.
``"any"`` fails on every anomaly, ``"none"`` never fails. Everything is written before the
stage fails, and the failure message lists what made it fail, so the pod log alone explains it.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from pathlib import Path
from typing import Any

from components import names
from components.errors import StageError

STAGE = names.STAGE_VALIDATE
TRAINING = names.ENV_TRAINING

FAIL_UNSAFE, FAIL_ANY, FAIL_NONE = "unsafe", "any", "none"
FAIL_MODES = (FAIL_UNSAFE, FAIL_ANY, FAIL_NONE)

VERDICT_OK, VERDICT_ANOMALIES, VERDICT_FAILED = "ok", "anomalies", "failed"

# Output metadata keys ("verdict" and "anomalies" are printed by the local runner).
META_VERDICT = names.META_VERDICT
META_ANOMALIES = names.META_ANOMALIES
META_UNSAFE = "unsafe"
META_ANOMALOUS_FEATURES = "anomalous_features"
META_UNSAFE_FEATURES = "unsafe_features"
META_UNSEEN = "unseen_categories"
META_FAIL_ON = "fail_on"
META_DRIFT = "drift"

DATASET_KEY = "(dataset)"  # the finding for dataset-level anomalies
MAX_IN_ERROR = 5  # anomalies quoted in the failure message (all are in the report)


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# AnomalyInfo.Type names that make training unsafe (see the module docstring).
UNSAFE_REASONS = frozenset(
    {
        # The feature (or the label) is missing: entirely, or in some examples.
        "SCHEMA_MISSING_COLUMN",
        "FEATURE_TYPE_LOW_FRACTION_PRESENT",
        "FEATURE_TYPE_LOW_NUMBER_PRESENT",
        "FEATURE_TYPE_NOT_PRESENT",
        "FEATURE_TYPE_NO_VALUES",
        "NO_DATA_IN_SPAN",
        # Value count / shape: a dense feature that is no longer one value per example.
        "FEATURE_TYPE_LOW_NUMBER_VALUES",
        "FEATURE_TYPE_HIGH_NUMBER_VALUES",
        "FEATURE_TYPE_UNEXPECTED_REPEATED",
        "INVALID_FEATURE_SHAPE",
        "VALUE_NESTEDNESS_MISMATCH",
        # Type mismatches.
        "UNEXPECTED_DATA_TYPE",
        "DOMAIN_INVALID_FOR_TYPE",
        "BOOL_TYPE_BYTES_NOT_INT",
        "BOOL_TYPE_BYTES_NOT_STRING",
        "BOOL_TYPE_FLOAT_NOT_INT",
        "BOOL_TYPE_FLOAT_NOT_STRING",
        "BOOL_TYPE_INT_NOT_STRING",
        "BOOL_TYPE_STRING_NOT_INT",
        "BOOL_TYPE_UNEXPECTED_FLOAT",
        "ENUM_TYPE_BYTES_NOT_STRING",
        "ENUM_TYPE_FLOAT_NOT_STRING",
        "ENUM_TYPE_INT_NOT_STRING",
        "ENUM_TYPE_INVALID_UTF8",
        "FLOAT_TYPE_NOT_FLOAT",
        "FLOAT_TYPE_STRING_NOT_FLOAT",
        "FLOAT_TYPE_NON_STRING",
        "FLOAT_TYPE_UNKNOWN_TYPE_NUMBER",
        "INT_TYPE_INT_EXPECTED",
        "INT_TYPE_NOT_INT_STRING",
        "INT_TYPE_NOT_STRING",
        "INT_TYPE_STRING_EXPECTED",
        "INT_TYPE_UNKNOWN_TYPE_NUMBER",
        "STRING_TYPE_NOW_FLOAT",
        "STRING_TYPE_NOW_INT",
        # Values the schema forbids outright.
        "FLOAT_TYPE_HAS_NAN",
        "FLOAT_TYPE_HAS_INF",
    }
)
UNSEEN_REASON = "ENUM_TYPE_UNEXPECTED_STRING_VALUES"


@dataclasses.dataclass
class Finding:
    """One anomalous feature (or the dataset): TFDV's descriptions and whether it is unsafe."""

    feature: str
    severity: str
    short_description: str
    description: str
    reasons: list[str]
    unsafe: bool


@dataclasses.dataclass
class Comparison:
    """One train/eval distance of one feature."""

    feature: str
    kind: str  # "drift" or "skew"
    measure: str  # "L_INFTY" or "JENSEN_SHANNON_DIVERGENCE"
    value: float
    threshold: float

    @property
    def exceeded(self) -> bool:
        return self.value > self.threshold


@dataclasses.dataclass
class ValidationResult:
    """Everything Validate found; ``failed`` says whether the stage must fail under ``fail_on``."""

    anomalies: Any  # anomalies_pb2.Anomalies
    findings: list[Finding]
    comparisons: list[Comparison]
    unseen: dict[str, list[tuple[str, float]]]
    fail_on: str
    eval_rows: int
    train_rows: int
    skew_threshold: float
    drift_threshold: float
    environment: str
    anomalies_path: Path | None = None

    @property
    def failing(self) -> list[Finding]:
        if self.fail_on == FAIL_NONE:
            return []
        if self.fail_on == FAIL_ANY:
            return list(self.findings)
        return [f for f in self.findings if f.unsafe]

    @property
    def verdict(self) -> str:
        if self.failing:
            return VERDICT_FAILED
        return VERDICT_ANOMALIES if self.findings else VERDICT_OK

    def metadata(self) -> dict[str, Any]:
        drift = {c.feature: round(c.value, 6) for c in self.comparisons if c.kind == "drift"}
        return {
            META_VERDICT: self.verdict,
            META_ANOMALIES: len(self.findings),
            META_UNSAFE: sum(f.unsafe for f in self.findings),
            META_ANOMALOUS_FEATURES: [f.feature for f in self.findings],
            META_UNSAFE_FEATURES: [f.feature for f in self.findings if f.unsafe],
            META_UNSEEN: {k: [v for v, _ in vals] for k, vals in self.unseen.items()},
            META_FAIL_ON: self.fail_on,
            META_DRIFT: drift,
        }

    def error(self) -> StageError | None:
        """The StageError to raise when the verdict is "failed" (None otherwise)."""
        failing = self.failing
        if not failing:
            return None
        shown = [
            f"{f.feature}: {_clip(f.description.strip() or f.short_description)}"
            for f in failing[:MAX_IN_ERROR]
        ]
        if len(failing) > MAX_IN_ERROR:
            shown.append(f"and {len(failing) - MAX_IN_ERROR} more")
        why = "; ".join(shown)
        kind = "unsafe " if self.fail_on == FAIL_UNSAFE else ""
        return StageError(
            STAGE,
            str(self.anomalies_path) if self.anomalies_path else None,
            f"{len(failing)} {kind}anomal{'y' if len(failing) == 1 else 'ies'} in the eval data "
            f"(fail_on={self.fail_on}): {why}",
        )


# --- Inputs. -----------------------------------------------------------------------------------


def check_parameters(fail_on: str, skew_threshold: float, drift_threshold: float) -> None:
    """Refuse a bad ``fail_on`` or threshold before any work, naming the parameter."""
    if fail_on not in FAIL_MODES:
        raise StageError(STAGE, None, f"fail_on must be one of {list(FAIL_MODES)}, got {fail_on!r}")
    for name, value in (("skew_threshold", skew_threshold), ("drift_threshold", drift_threshold)):
        if not isinstance(value, int | float) or math.isnan(value) or value < 0:
            raise StageError(STAGE, None, f"{name} must be a number >= 0, got {value!r}")


def is_categorical(feature: Any) -> bool:
    """A string feature, or an integer one the schema declares categorical (or boolean)."""
    from tensorflow_metadata.proto.v0 import schema_pb2

    if feature.type == schema_pb2.BYTES:
        return True
    if feature.HasField("bool_domain"):
        return True
    return (
        feature.type == schema_pb2.INT
        and feature.HasField("int_domain")
        and feature.int_domain.is_categorical
    )


def with_comparators(schema: Any, skew_threshold: float, drift_threshold: float) -> Any:
    """A copy of ``schema`` with a skew and a drift comparator on every feature.

    Categorical features: L-infinity distance of the value distributions; numeric features:
    approximate Jensen-Shannon divergence of the histograms.
    """
    from tensorflow_metadata.proto.v0 import schema_pb2

    out = copy.deepcopy(schema)
    for feature in out.feature:
        if feature.type not in (schema_pb2.BYTES, schema_pb2.INT, schema_pb2.FLOAT):
            continue  # STRUCT and unknown types have no distribution to compare
        if is_categorical(feature):
            feature.skew_comparator.infinity_norm.threshold = skew_threshold
            feature.drift_comparator.infinity_norm.threshold = drift_threshold
        else:
            feature.skew_comparator.jensen_shannon_divergence.threshold = skew_threshold
            feature.drift_comparator.jensen_shannon_divergence.threshold = drift_threshold
    return out


# --- Reading TFDV's answer. ------------------------------------------------------------------------


def _path_str(path: Any) -> str:
    return ".".join(path.step)


def findings_of(anomalies: Any) -> list[Finding]:
    """One :class:`Finding` per anomalous feature, plus one for dataset-level anomalies."""
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    type_name = anomalies_pb2.AnomalyInfo.Type.Name
    severity_name = anomalies_pb2.AnomalyInfo.Severity.Name
    out = []
    for key in sorted(anomalies.anomaly_info):
        info = anomalies.anomaly_info[key]
        reasons = [type_name(r.type) for r in info.reason]
        out.append(
            Finding(
                feature=_path_str(info.path) or key,
                severity=severity_name(info.severity),
                short_description=info.short_description,
                description=info.description,
                reasons=reasons,
                unsafe=any(r in UNSAFE_REASONS for r in reasons),
            )
        )
    if anomalies.HasField("dataset_anomaly_info") or anomalies.data_missing:
        info = anomalies.dataset_anomaly_info
        reasons = [type_name(r.type) for r in info.reason]
        out.append(
            Finding(
                feature=DATASET_KEY,
                severity=severity_name(info.severity),
                short_description=info.short_description or ("No data" if anomalies.data_missing else ""),
                description=info.description
                or ("The eval statistics hold no data" if anomalies.data_missing else ""),
                reasons=reasons,
                unsafe=anomalies.data_missing or any(r in UNSAFE_REASONS for r in reasons),
            )
        )
    return out


def comparisons_of(anomalies: Any) -> list[Comparison]:
    """The drift and skew figures TFDV measured, whether or not they crossed a threshold."""
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    measure_name = anomalies_pb2.DriftSkewInfo.Measurement.Type.Name
    out = []
    for info in anomalies.drift_skew_info:
        for kind, measurements in (("drift", info.drift_measurements), ("skew", info.skew_measurements)):
            for m in measurements:
                out.append(Comparison(_path_str(info.path), kind, measure_name(m.type), m.value, m.threshold))
    return out


def _domain_values(schema: Any, feature: Any) -> set[str] | None:
    if feature.HasField("string_domain"):
        return set(feature.string_domain.value)
    if feature.HasField("domain"):
        for d in schema.string_domain:
            if d.name == feature.domain:
                return set(d.value)
    return None


def unseen_categories(
    schema: Any, eval_stats: Any, findings: list[Finding]
) -> dict[str, list[tuple[str, float]]]:
    """``{feature: [(value, eval count), ...]}``: eval values outside the schema's string domain.

    Read from the eval statistics' value counts (TFDV's description only shows a sample).
    """
    from components.lib.statistics import feature_name

    flagged = {f.feature for f in findings if UNSEEN_REASON in f.reasons}
    stats = {feature_name(f): f for f in eval_stats.datasets[0].features}
    out: dict[str, list[tuple[str, float]]] = {}
    for feature in schema.feature:
        domain = _domain_values(schema, feature)
        st = stats.get(feature.name)
        if domain is None or st is None or not st.HasField("string_stats"):
            continue
        ss = st.string_stats
        counts = [(b.label, b.sample_count) for b in ss.rank_histogram.buckets] or [
            (v.value, v.frequency) for v in ss.top_values
        ]
        unseen = [(v, c) for v, c in counts if v not in domain]
        if unseen or feature.name in flagged:
            out[feature.name] = sorted(unseen, key=lambda vc: (-vc[1], vc[0]))
    return out


# --- Running. ------------------------------------------------------------------------------------


def validate(
    train_stats: Any,
    eval_stats: Any,
    schema: Any,
    *,
    fail_on: str,
    skew_threshold: float,
    drift_threshold: float,
) -> ValidationResult:
    """Validate ``eval_stats`` against ``schema`` and compare it with ``train_stats``."""
    import tensorflow_data_validation as tfdv

    check_parameters(fail_on, skew_threshold, drift_threshold)
    environment = TRAINING if TRAINING in schema.default_environment else ""
    anomalies = tfdv.validate_statistics(
        eval_stats,
        with_comparators(schema, float(skew_threshold), float(drift_threshold)),
        environment=environment or None,
        previous_statistics=train_stats,
        serving_statistics=train_stats,
    )
    findings = findings_of(anomalies)
    return ValidationResult(
        anomalies=anomalies,
        findings=findings,
        comparisons=comparisons_of(anomalies),
        unseen=unseen_categories(schema, eval_stats, findings),
        fail_on=fail_on,
        eval_rows=int(eval_stats.datasets[0].num_examples),
        train_rows=int(train_stats.datasets[0].num_examples),
        skew_threshold=float(skew_threshold),
        drift_threshold=float(drift_threshold),
        environment=environment,
    )


def write_anomalies(anomalies: Any, output_dir: Path) -> Path:
    """Write ``<out>/Split-eval/SchemaDiff.pb`` (ExampleValidator's binary) and ``anomalies.pbtxt``."""
    from google.protobuf import text_format

    split = Path(output_dir) / names.split_dir(names.EVAL)
    split.mkdir(parents=True, exist_ok=True)
    binary = split / names.ANOMALIES_FILE
    binary.write_bytes(anomalies.SerializeToString())
    (split / names.ANOMALIES_TEXT_FILE).write_text(text_format.MessageToString(anomalies), encoding="utf-8")
    return binary


def run_validate(
    stats_dir: Path,
    schema_path: Path,
    output_dir: Path,
    *,
    label: str,
    fail_on: str,
    skew_threshold: float,
    drift_threshold: float,
) -> ValidationResult:
    """Load the statistics and the schema, validate, write the anomalies and ``report.md``.

    Does not raise for anomalies: the caller records the verdict first, then raises
    ``result.error()``. Bad parameters and unreadable inputs raise at once.
    """
    from components.lib.schema import load_schema_file
    from components.lib.statistics import load_split_statistics

    fail_on = fail_on.strip().lower()
    check_parameters(fail_on, skew_threshold, drift_threshold)
    schema = load_schema_file(schema_path, STAGE)
    if label not in {f.name for f in schema.feature}:
        raise StageError(STAGE, str(schema_path), f"label {label!r} is not a feature of the schema")
    train = load_split_statistics(stats_dir, names.TRAIN, STAGE)
    eval_ = load_split_statistics(stats_dir, names.EVAL, STAGE)
    result = validate(
        train, eval_, schema, fail_on=fail_on, skew_threshold=skew_threshold, drift_threshold=drift_threshold
    )
    result.anomalies_path = write_anomalies(result.anomalies, output_dir)
    (Path(output_dir) / names.REPORT_MD_FILE).write_text(
        render_markdown(result, label=label), encoding="utf-8"
    )
    return result


# --- The Markdown report. -----------------------------------------------------------------------


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
