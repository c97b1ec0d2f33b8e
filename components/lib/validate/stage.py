"""Validate as one call: the schema with comparators, TFDV's validation, and its answer read back.

``run_validate`` is what the component calls: it reads the statistics and the schema through
their contracts (``statistics_io``, ``schema_io``), has TFDV validate the eval split against the
schema, compare it with train (skew) and with the served model's training data (drift, see
``drift``), compares the schema and statistics with the served version's (``continuity``), and
writes the anomalies and the HTML report.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

from components import names
from components.errors import StageError
from components.lib.schema_io import read_schema, schema_file_of
from components.lib.statistics_io import feature_name, read_statistics
from components.lib.validate import continuity, severity
from components.lib.validate.continuity import ServedSchema, load_served_schema
from components.lib.validate.drift import DriftReference, merge_drift, not_computed, served_statistics
from components.lib.validate.report import render_html
from components.lib.validate.verdict import (
    DATASET_KEY,
    FAIL_MODES,
    PARTLY_PRESENT_REASONS,
    STAGE,
    TRAINING,
    UNSAFE_REASONS,
    UNSEEN_REASON,
    Comparison,
    Finding,
    ValidationResult,
)


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


def with_comparators(
    schema: Any,
    skew_threshold: float | None,
    drift_threshold: float | None,
    only: set[str] | None = None,
) -> Any:
    """A copy of ``schema`` with a skew and/or a drift comparator per feature (a None threshold: none).

    Categorical features: L-infinity distance of the value distributions; numeric features:
    approximate Jensen-Shannon divergence of the histograms. ``only``: the features to give
    comparators (None: all) — drift skips the columns the served model's data did not have:
    TFDV would call each an ERROR "previous data missing", while continuity reports it as a new
    column.
    """
    from tensorflow_metadata.proto.v0 import schema_pb2

    out = copy.deepcopy(schema)
    for feature in out.feature:
        if feature.type not in (schema_pb2.BYTES, schema_pb2.INT, schema_pb2.FLOAT):
            continue  # STRUCT and unknown types have no distribution to compare
        if only is not None and feature.name not in only:
            continue
        categorical = is_categorical(feature)
        for comparator, threshold in (
            (feature.skew_comparator, skew_threshold),
            (feature.drift_comparator, drift_threshold),
        ):
            if threshold is None:
                continue
            if categorical:
                comparator.infinity_norm.threshold = threshold
            else:
                comparator.jensen_shannon_divergence.threshold = threshold
    return out


# --- Reading TFDV's answer. ------------------------------------------------------------------------


def _path_str(path: Any) -> str:
    return ".".join(path.step)


def findings_of(anomalies: Any, label: str | None = None) -> list[Finding]:
    """One :class:`Finding` per anomalous feature, plus one for dataset-level anomalies.

    ``label`` given: values missing in some rows of a feature other than the label
    (``PARTLY_PRESENT_REASONS``) are reported, not unsafe — transform reads every feature but
    the label as optional (``transform.input_schema``) and the built-in modules impute a
    missing value; a row without a label stays unsafe.
    """
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    type_name = anomalies_pb2.AnomalyInfo.Type.Name
    severity_name = anomalies_pb2.AnomalyInfo.Severity.Name
    out = []
    for key in sorted(anomalies.anomaly_info):
        info = anomalies.anomaly_info[key]
        reasons = [type_name(r.type) for r in info.reason]
        feature = _path_str(info.path) or key
        unsafe_reasons = UNSAFE_REASONS
        if label is not None and feature != label and PARTLY_PRESENT_REASONS & set(reasons):
            # TFDV adds "shape dropped" to gaps; more than one value per row has reasons of its own
            unsafe_reasons = UNSAFE_REASONS - PARTLY_PRESENT_REASONS - {"INVALID_FEATURE_SHAPE"}
        out.append(
            Finding(
                feature=feature,
                severity=severity_name(info.severity),
                short_description=info.short_description,
                description=info.description,
                reasons=reasons,
                unsafe=any(r in unsafe_reasons for r in reasons),
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
    reference: DriftReference | None = None,
    served: ServedSchema | None = None,
    label: str = "",
) -> ValidationResult:
    """Validate ``eval_stats`` against ``schema``, compare it with ``train_stats`` (skew); drift.

    Skew: the eval split against this run's train split (TFDV's ``serving_statistics``). Drift:
    this run's train split against the served model's (``reference``, TFDV's
    ``previous_statistics``), merged into the same anomalies (``drift.merge_drift``); not
    computed without a reference (``reference.note`` says why). Continuity: ``schema`` and both
    splits against the served version's schema (``served``) and training statistics, as findings
    after TFDV's (``continuity.changes``).
    """
    import tensorflow_data_validation as tfdv

    check_parameters(fail_on, skew_threshold, drift_threshold)
    reference = reference or not_computed("no served model was looked up")
    environment = TRAINING if TRAINING in schema.default_environment else ""
    anomalies = tfdv.validate_statistics(
        eval_stats,
        with_comparators(schema, float(skew_threshold), None),
        environment=environment or None,
        serving_statistics=train_stats,
    )
    if reference.computed:
        before = {feature_name(f) for f in reference.statistics.datasets[0].features}
        drift = tfdv.validate_statistics(
            train_stats,
            with_comparators(schema, None, float(drift_threshold), only=before),
            environment=environment or None,
            previous_statistics=reference.statistics,
        )
        merge_drift(anomalies, drift)
    findings = findings_of(anomalies, label or None)
    comparisons = comparisons_of(anomalies)
    sides = {"skew": (train_stats, eval_stats)}
    if reference.computed:
        sides["drift"] = (reference.statistics, train_stats)
    severity.assess(findings, comparisons, sides)
    served = served or continuity.not_compared("no served model was looked up")
    same_version = reference.computed and reference.version == served.version
    changes = continuity.changes(
        schema, train_stats, eval_stats, served, reference.statistics if same_version else None, label
    )
    return ValidationResult(
        anomalies=anomalies,
        findings=findings + changes,
        comparisons=comparisons,
        unseen=unseen_categories(schema, eval_stats, findings),
        fail_on=fail_on,
        eval_rows=int(eval_stats.datasets[0].num_examples),
        train_rows=int(train_stats.datasets[0].num_examples),
        skew_threshold=float(skew_threshold),
        drift_threshold=float(drift_threshold),
        environment=environment,
        drift_reference=reference.note,
        drift_computed=reference.computed,
        served=served.title if served.compared else served.note,
        served_compared=served.compared,
        sides=sides,
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


def excluded_features(schema: Any, label: str) -> dict[str, str]:
    """{column: why} of the columns the schema keeps out of the default module's features."""
    from components.lib.user_module import excluded_reason

    reasons = {f.name: excluded_reason(f) for f in schema.feature if f.name != label}
    return {name: why for name, why in reasons.items() if why is not None}


def non_finite_findings(non_finite: dict[str, Any]) -> list[Finding]:
    """One WARNING per feature that held inf, nan or numbers beyond float32 (ExampleGen's counts)."""
    out = []
    for column, found in sorted(non_finite.items()):
        count = int(found.get("count", 0))
        out.append(
            Finding(
                feature=column,
                severity="WARNING",
                short_description="Values no float32 can hold",
                description=(
                    f"{count:,} cell(s) were inf, nan or beyond float32's range "
                    f"(first {found.get('value')!r} at {found.get('first')}); "
                    "example_gen wrote them as missing"
                ),
                reasons=["NON_FINITE_VALUES"],
                unsafe=False,
                fix="fix the cells in the export (a unit or overflow error?), or accept them as missing",
            )
        )
    return out


def run_validate(
    stats_dir: Path,
    schema_path: Path,
    output_dir: Path,
    *,
    label: str,
    fail_on: str,
    skew_threshold: float,
    drift_threshold: float,
    storage_root: str = "",
    model_name: str = "",
    run_id: str = "",
    non_finite: dict[str, Any] | None = None,
) -> ValidationResult:
    """Load the statistics and the schema, validate, write the anomalies and ``report.html``.

    ``non_finite``: ExampleGen's count of cells per feature that were inf, nan or beyond float32
    (written as missing, so the statistics cannot show them): each a WARNING anomaly, which stops
    the run under ``fail_on=any``.
    Drift is measured against the served ``model_name``'s training statistics on ``storage_root``
    (``drift.served_statistics``), its schema against the served version's (``continuity``). Does
    not raise for anomalies nor for changes that stop the run: the caller records the verdict
    first, then raises ``result.error()``. Bad parameters and unreadable inputs raise at once.
    """
    fail_on = fail_on.strip().lower()
    check_parameters(fail_on, skew_threshold, drift_threshold)
    schema = read_schema(schema_path, STAGE)
    if label not in {f.name for f in schema.feature}:
        raise StageError(STAGE, str(schema_path), f"label {label!r} is not a feature of the schema")
    train = read_statistics(stats_dir, names.TRAIN, STAGE)
    eval_ = read_statistics(stats_dir, names.EVAL, STAGE)
    reference = (
        served_statistics(storage_root, model_name)
        if storage_root
        else not_computed("no storage root was given, so no registry to find the served model in")
    )
    served = load_served_schema(storage_root, model_name)
    result = validate(
        train,
        eval_,
        schema,
        fail_on=fail_on,
        skew_threshold=skew_threshold,
        drift_threshold=drift_threshold,
        reference=reference,
        served=served,
        label=label,
    )
    result.findings.extend(non_finite_findings(non_finite or {}))
    result.excluded = excluded_features(schema, label)
    result.schema_path = schema_file_of(schema_path, STAGE)
    result.anomalies_path = write_anomalies(result.anomalies, output_dir)
    (Path(output_dir) / names.REPORT_HTML_FILE).write_text(
        render_html(result, label=label, run_id=run_id), encoding="utf-8"
    )
    return result
