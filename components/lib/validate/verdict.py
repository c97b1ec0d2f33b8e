"""What fails the run: the anomaly types that make training unsafe, ``fail_on``, and the verdict.

``ValidationResult`` holds what validate found (TFDV's anomalies read as :class:`Finding`s, the
drift and skew figures as :class:`Comparison`s, unseen categories) and derives from it the
verdict, the artifact's metadata and the error that fails the stage.

TFDV gives every comparator anomaly (drift or skew over its threshold) severity ERROR; validate
judges it again on the statistics (``severity``): a WARNING when the two distributions differ
beyond sampling noise, an INFO note (not an anomaly) when chance explains the distance (3 eval
rows) or a few-valued integer's shares are within the threshold. What a WARNING does is the
``fail_on`` policy's decision, not the severity's:

| ``fail_on``          | unsafe (``UNSAFE_REASONS``) | drift / skew (WARNING) | new column, unseen category |
|----------------------|-----------------------------|------------------------|-----------------------------|
| ``unsafe`` (default) | fail the run                | reported, run goes on  | reported                    |
| ``any``              | fail                        | fail                   | fail                        |
| ``none``             | reported                    | reported               | reported                    |

Changes since the served version (``continuity``) are findings too, marked ``served``: an INFO
one (a new column, a moved range) is a note, not an anomaly — it counts for no ``fail_on`` and
leaves the verdict "ok"; a WARNING one fails only under ``fail_on=any``, like every anomaly; one
that ``stops`` (a column the served model reads is gone, or text where numbers were) fails the
run under every ``fail_on``, ``none`` included: it is not a question of data quality but of
replacing the served model with one its clients cannot call (see ``continuity``).

Why drift and skew do not stop the default run: neither makes training unsafe. Skew between
two hash-split halves of one dataset is sampling noise, large only when a split is tiny — and
evaluate's minimum evidence (``min_eval_examples``, ``min_train_rows``) refuses to bless a model
judged on too few rows. Drift against the served model's training data is the reason to retrain;
the candidate is then compared with the served model on the new eval data before it may replace
it. A user who wants either to stop the run sets ``fail_on=any``.
"""

from __future__ import annotations

import dataclasses
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
META_DRIFT = "drift"  # {feature: distance} against the served model's training data (when computed)
META_SKEW = "skew"  # {feature: distance} between this run's eval and train splits
META_DRIFT_REFERENCE = "drift_reference"  # what drift compared with, or why it was not computed
META_SERVED = "served_version"  # what the data was compared with ("model m v3"), or why not
META_CHANGES = "served_changes"  # [{feature, change, severity, stops, description, fix}]
META_STOPS = "served_stops"  # features whose change stops the run whatever fail_on says

ERROR, WARNING, INFO = "ERROR", "WARNING", "INFO"  # severities (TFDV's two, and a note)

DATASET_KEY = "(dataset)"  # the finding for dataset-level anomalies
MAX_IN_ERROR = 5  # anomalies quoted in the failure message (all are in the report)


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# AnomalyInfo.Type names that make training unsafe (see the module docstring).
UNSAFE_REASONS = frozenset(
    {
        # The feature (or the label) is missing: entirely, or in some examples (for a feature
        # other than the label, in some examples is not unsafe: PARTLY_PRESENT_REASONS).
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
# A feature missing in SOME rows: unsafe for the label only (``stage.findings_of``): transform
# reads every other feature as optional and the built-in modules impute a missing value.
PARTLY_PRESENT_REASONS = frozenset({"FEATURE_TYPE_LOW_FRACTION_PRESENT", "FEATURE_TYPE_LOW_NUMBER_PRESENT"})


@dataclasses.dataclass
class Finding:
    """One anomalous feature (or the dataset): TFDV's descriptions and whether it is unsafe."""

    feature: str
    severity: str
    short_description: str
    description: str
    reasons: list[str]
    unsafe: bool
    served: bool = False  # a change since the served version (``continuity``), not TFDV's
    stops: bool = False  # stops the run whatever fail_on says (``continuity``)
    fix: str = ""  # what to do, when the finding knows better than ``report.advice``

    @property
    def is_note(self) -> bool:
        """An INFO finding: reported, never an anomaly."""
        return self.severity == INFO


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
    drift_reference: str = "not computed"
    drift_computed: bool = False
    anomalies_path: Path | None = None
    served: str = "not compared"  # "model m v3" (what the data was compared with), or why not
    served_compared: bool = False
    schema_path: Path | None = None  # this run's schema file (named by a stop)
    excluded: dict[str, str] = dataclasses.field(default_factory=dict)  # not model features: why
    # The statistics each comparison compared, (before, after): {"skew": (train, eval), "drift":
    # (served model's train, this train)}; the report draws a feature's two distributions from them.
    sides: dict[str, tuple[Any, Any]] = dataclasses.field(default_factory=dict)

    @property
    def anomalies_found(self) -> list[Finding]:
        """The findings that are anomalies (INFO notes are not)."""
        return [f for f in self.findings if not f.is_note]

    @property
    def changes(self) -> list[Finding]:
        """The changes since the served version."""
        return [f for f in self.findings if f.served]

    @property
    def failing(self) -> list[Finding]:
        stops = [f for f in self.findings if f.stops]
        if self.fail_on == FAIL_NONE:
            policy: list[Finding] = []
        elif self.fail_on == FAIL_ANY:
            policy = self.anomalies_found
        else:
            policy = [f for f in self.findings if f.unsafe]
        return stops + [f for f in policy if not f.stops]

    @property
    def verdict(self) -> str:
        if self.failing:
            return VERDICT_FAILED
        return VERDICT_ANOMALIES if self.anomalies_found else VERDICT_OK

    def metadata(self) -> dict[str, Any]:
        drift = {c.feature: round(c.value, 6) for c in self.comparisons if c.kind == "drift"}
        skew = {c.feature: round(c.value, 6) for c in self.comparisons if c.kind == "skew"}
        return {
            META_VERDICT: self.verdict,
            META_ANOMALIES: len(self.anomalies_found),
            META_UNSAFE: sum(f.unsafe for f in self.findings),
            META_ANOMALOUS_FEATURES: [f.feature for f in self.anomalies_found],
            META_UNSAFE_FEATURES: [f.feature for f in self.findings if f.unsafe],
            META_UNSEEN: {k: [v for v, _ in vals] for k, vals in self.unseen.items()},
            META_FAIL_ON: self.fail_on,
            META_DRIFT: drift,
            META_SKEW: skew,
            META_DRIFT_REFERENCE: self.drift_reference,
            META_SERVED: self.served,
            META_CHANGES: [
                {
                    "feature": f.feature,
                    "change": f.reasons[0] if f.reasons else "",
                    "severity": f.severity,
                    "stops": int(f.stops),
                    "description": f.description,
                    "fix": f.fix,
                }
                for f in self.changes
            ],
            META_STOPS: [f.feature for f in self.findings if f.stops],
        }

    def stop_error(self) -> StageError | None:
        """The one-line StageError of the changes that stop the run whatever fail_on says."""
        stops = [f for f in self.findings if f.stops]
        if not stops:
            return None
        what = "; ".join(f.description for f in stops)
        fixes = "; ".join(dict.fromkeys(f.fix for f in stops))  # one fix per kind, in order
        others = len(self.failing) - len(stops)
        more = f" (and {others} more anomal{'y' if others == 1 else 'ies'}: see the report)" if others else ""
        where = self.schema_path or self.anomalies_path
        return StageError(STAGE, str(where) if where else None, f"{what}; {fixes}{more}")

    def error(self) -> StageError | None:
        """The StageError to raise when the verdict is "failed" (None otherwise)."""
        stop = self.stop_error()
        if stop is not None:
            return stop
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
