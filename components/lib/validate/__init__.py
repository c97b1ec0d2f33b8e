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
training unsafe: a missing label (entirely or in some examples), a schema feature missing
from the data entirely, a type or shape mismatch, or values the schema explicitly forbids
(NaN/inf). Drift, skew, new columns and categories never seen in train are reported and left to
the user: a new category is handled by Transform's OOV bucket. A feature other than the label
that lacks a value in some examples is reported too: transform reads every feature but the
label as optional (``transform.input_schema``) and the built-in modules impute it.
``"any"`` fails on every anomaly, ``"none"`` never fails. Everything is written before the
stage fails, and the failure message lists what made it fail, so the pod log alone explains it.

Schema continuity: when a version of ``model_name`` is served, this run's schema and statistics
are compared with the schema that version was trained with (kept beside it by push) and its
training statistics, per column. The severity rules (``continuity`` says why):

| change since the served version                                  | severity | stops the run             |
|------------------------------------------------------------------|----------|---------------------------|
| a column the served model reads is gone                          | ERROR    | always, whatever fail_on  |
| text where numbers were, or numbers where text was               | ERROR    | always, whatever fail_on  |
| INT -> FLOAT (widened; evaluate then skips the baseline gate)    | WARNING  | under fail_on=any         |
| empty cells in a column that had none (the default module imputes) | WARNING | under fail_on=any         |
| new categories (values outside the served schema's domain)       | WARNING  | under fail_on=any         |
| numbers outside the served training data's min .. max           | INFO     | never                     |
| a new column (the served model ignores it)                       | INFO     | never                     |
| a column the served model did not use (excluded) gone or retyped | INFO     | never                     |

A stop is one line naming the column, the served version and the fixes, e.g. ``[validate]
<schema>: column 'bmi' was FLOAT in the served model insurance v3 and is BYTES now: the served
model cannot read this data; fix the export, pin the type with column_types=bmi:float or
schema_file, or train a new model with another model_name``. It stops even under
``fail_on=none``: ``fail_on`` is a policy on data quality, while a candidate of these data would
replace, under the same model name, a model whose clients it cannot serve.

The modules:
- ``stage``: ``run_validate`` (inputs, TFDV's validation with comparators, its answer read back,
  the anomalies written);
- ``verdict``: what fails the run (``UNSAFE_REASONS``, ``fail_on``) and ``ValidationResult``;
- ``drift``: the served model's training statistics, drift's reference (through the registry);
- ``continuity``: the changes since the served version, as findings of the same verdict;
- ``report``: the HTML report and the log's summary lines.
"""

from components.lib.validate.continuity import ServedSchema, load_served_schema
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
    "ServedSchema",
    "load_served_schema",
    "run_validate",
    "unseen_categories",
    "validate",
    "with_comparators",
    "write_anomalies",
]
