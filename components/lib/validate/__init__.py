"""Validate logic: eval statistics against the schema, train/eval skew, drift, and the verdict.

What TFX's ExampleValidator does (``tfdv.validate_statistics`` of the eval split against the
schema, in the TRAINING environment), plus the comparisons TFDV offers through
comparators on a copy of the schema: skew (the eval split against this run's train split as
the "serving" data) and, when a model is being served, drift (this run's train split against
the served model's, found through the registry, as the "previous" data) — L-infinity distance
for categorical features, approximate Jensen-Shannon divergence for numeric ones — so their
figures land in the anomalies proto (``drift_skew_info``) and any feature over a threshold
becomes an anomaly. The user's schema file is never changed.

Not every anomaly should stop a run. ``fail_on="unsafe"`` fails only on anomalies that make
training unsafe: a missing label, a schema feature missing from the data (entirely or in some
examples, which breaks parsing fixed-shape features), a type or shape mismatch, or values the
schema explicitly forbids (NaN/inf). Drift, skew, new columns and categories never seen in
train are reported and left to the user: a new category is handled by Transform's OOV bucket.
``"any"`` fails on every anomaly, ``"none"`` never fails. Everything is written before the
stage fails, and the failure message lists what made it fail, so the pod log alone explains it.

The modules:
- ``stage``: ``run_validate`` (inputs, TFDV's validation with comparators, its answer read back,
  the anomalies written);
- ``verdict``: what fails the run (``UNSAFE_REASONS``, ``fail_on``) and ``ValidationResult``;
- ``drift``: the served model's training statistics, drift's reference (through the registry);
- ``report``: the HTML report and the log's summary lines.
"""

from components.lib.validate.drift import DriftReference, served_statistics
from components.lib.validate.report import advice, render_html, summary_lines
from components.lib.validate.stage import (
    check_parameters,
    comparisons_of,
    findings_of,
    run_validate,
    unseen_categories,
    validate,
    with_comparators,
    write_anomalies,
)
from components.lib.validate.verdict import (
    FAIL_ANY,
    FAIL_MODES,
    FAIL_NONE,
    FAIL_UNSAFE,
    META_ANOMALIES,
    META_VERDICT,
    STAGE,
    UNSAFE_REASONS,
    VERDICT_ANOMALIES,
    VERDICT_FAILED,
    VERDICT_OK,
    Comparison,
    Finding,
    ValidationResult,
)

__all__ = [
    "FAIL_ANY",
    "FAIL_MODES",
    "FAIL_NONE",
    "FAIL_UNSAFE",
    "META_ANOMALIES",
    "META_VERDICT",
    "STAGE",
    "UNSAFE_REASONS",
    "VERDICT_ANOMALIES",
    "VERDICT_FAILED",
    "VERDICT_OK",
    "Comparison",
    "Finding",
    "ValidationResult",
    "check_parameters",
    "comparisons_of",
    "findings_of",
    "render_html",
    "served_statistics",
    "summary_lines",
    "advice",
    "DriftReference",
    "run_validate",
    "unseen_categories",
    "validate",
    "with_comparators",
    "write_anomalies",
]
