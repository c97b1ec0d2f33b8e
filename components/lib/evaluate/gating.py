"""Evaluation gating as data: the thresholds, the bounds they give, and the verdict from TFMA's validation.

Thresholds are configuration, not code. Each gates the task's metric — MAE for regression,
accuracy for classification — on the overall slice:
- ``naive_margin`` (the default gate, 0.1): the candidate's error must be at least this fraction
  below a naive predictor's on the same eval split — the training median for every row
  (regression), or always the majority class (classification; error = 1 - accuracy). It means
  the same in any dataset's units: "the model learned something";
- ``mae_threshold`` / ``min_accuracy``: absolute bounds (off by default: "MAE <= 8,000" means
  something in one dataset's units only);
- ``max_relative_degradation``: at most this much worse than the baseline (MAE up by at most x,
  accuracy down by at most x, relative; a TFMA change threshold); only with a baseline.
A value that is negative (or null in the file) means "not configured". A thresholds file
(JSON or YAML, relative to the storage root or absolute) overrides the parameters key by key:
``{"mae_threshold": 7000, "max_relative_degradation": null}``. Unknown keys are an error, so a
typo cannot silently switch a gate off. ``gates`` turns them into the bounds
``tfma_engine.eval_config`` hands to TFMA (the absolute and the naive bound are one TFMA value
threshold: the tighter of the two).

The verdict is TFMA's own ``validation_ok``; ``judge`` writes the reasons from TFMA's validation
failures, so the blessing and the TFMA result can never disagree, with one exception: with
nothing to check (no threshold configured, or only the change threshold and no
baseline) the model is BLESSED with the explicit reason "no thresholds configured": the
pipeline's gates are opt-in configuration, and a run configured without gates is a run that
means to push. The reason is in the blessing, the report and the registry record. (TFMA's own
validation result then reads ``missing_thresholds: true``, which TFX's Evaluator treats as not
blessed; the blessing records ``validation_ok`` as TFMA wrote it.)
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

from components import names
from components.errors import StageError
from components.lib import storage
from components.lib.evaluate.keys import STAGE

THRESHOLD_KEYS = ("mae_threshold", "max_relative_degradation", "naive_margin", "min_accuracy")
NO_THRESHOLDS = "no thresholds configured"


@dataclasses.dataclass
class Thresholds:
    """The gates of one evaluation; None = not configured."""

    mae_threshold: float | None
    max_relative_degradation: float | None
    source: str = "parameters"
    naive_margin: float | None = None
    min_accuracy: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Naive:
    """The naive predictor on the eval split: what it predicts, and its error there (MAE, or 1 - accuracy)."""

    description: str
    error: float


@dataclasses.dataclass(frozen=True)
class Gates:
    """The bounds one evaluation hands TFMA, and where each came from (for the reasons).

    ``metric``: the TFMA metric gated (MAE or accuracy); ``upper``/``lower``: its bound (the
    tighter of ``absolute`` and ``naive_bound``); ``change``: the baseline rule's allowed
    relative degradation.
    """

    metric: str
    higher_is_better: bool
    absolute: float | None = None
    naive_bound: float | None = None
    naive: Naive | None = None
    margin: float | None = None
    change: float | None = None

    @property
    def upper(self) -> float | None:
        if self.higher_is_better:
            return None
        bounds = [b for b in (self.absolute, self.naive_bound) if b is not None]
        return min(bounds) if bounds else None

    @property
    def lower(self) -> float | None:
        if not self.higher_is_better:
            return None
        bounds = [b for b in (self.absolute, self.naive_bound) if b is not None]
        return max(bounds) if bounds else None

    @property
    def has_value_gate(self) -> bool:
        return self.absolute is not None or self.naive_bound is not None


def gates(thresholds: Thresholds, info: Any, naive: Naive | None) -> Gates:
    """The bounds for the task (``info``: the candidate's ``label.LabelInfo``; None: regression)."""
    from components.lib.evaluate.keys import ACCURACY, MAE

    classification = info is not None and info.is_classification
    margin = thresholds.naive_margin
    naive_bound = None
    if margin is not None and naive is not None:
        error = (1.0 - margin) * naive.error
        naive_bound = 1.0 - error if classification else error
    return Gates(
        metric=ACCURACY if classification else MAE,
        higher_is_better=classification,
        absolute=thresholds.min_accuracy if classification else thresholds.mae_threshold,
        naive_bound=naive_bound,
        naive=naive if margin is not None else None,
        margin=margin,
        change=thresholds.max_relative_degradation,
    )


def _configured(value: Any, key: str, where: str | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise StageError(STAGE, where, f"threshold {key!r} must be a number or null, got {value!r}")
    value = float(value)
    if math.isnan(value):
        raise StageError(STAGE, where, f"threshold {key!r} is NaN")
    return None if value < 0 else value


def load_thresholds(
    mae_threshold: float,
    max_relative_degradation: float,
    thresholds_file: str,
    storage_root: str,
    naive_margin: float = -1.0,
    min_accuracy: float = -1.0,
) -> Thresholds:
    """The thresholds from the parameters, overridden key by key by ``thresholds_file`` if given."""
    values: dict[str, Any] = {
        "mae_threshold": mae_threshold,
        "max_relative_degradation": max_relative_degradation,
        "naive_margin": naive_margin,
        "min_accuracy": min_accuracy,
    }
    source = "parameters"
    if thresholds_file:
        path = storage.resolve(storage_root, thresholds_file, STAGE, "thresholds_file")  # on the volume only
        try:
            text = path.read_text()
        except OSError as e:
            raise StageError(STAGE, str(path), f"cannot read the thresholds file: {e}") from e
        import yaml  # type: ignore[import-untyped]

        try:
            # YAML is a superset of JSON, but a .json file gets JSON's stricter parser and messages.
            doc = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError) as e:
            raise StageError(STAGE, str(path), f"thresholds file is not valid JSON/YAML: {e}") from e
        if not isinstance(doc, dict):
            raise StageError(STAGE, str(path), f"thresholds file must be a mapping of {list(THRESHOLD_KEYS)}")
        unknown = sorted(set(doc) - set(THRESHOLD_KEYS))
        if unknown:
            raise StageError(
                STAGE, str(path), f"unknown threshold key(s) {unknown}; known: {list(THRESHOLD_KEYS)}"
            )
        values.update(doc)
        source = str(path)
    where = source if thresholds_file else None
    return Thresholds(
        _configured(values["mae_threshold"], "mae_threshold", where),
        _configured(values["max_relative_degradation"], "max_relative_degradation", where),
        source,
        _configured(values["naive_margin"], "naive_margin", where),
        _configured(values["min_accuracy"], "min_accuracy", where),
    )


def _n(x: float) -> str:
    """3-4 significant digits: ``1,554``, ``123.5``, ``2.19``, ``0.0312`` (never ``2`` for 2.19)."""
    if not math.isfinite(x):
        return str(x)
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.4g}"


def _v(x: float | None, classification: bool) -> str:
    """A metric value as a reason shows it: MAE in whole units, accuracy to three places."""
    if x is None:
        return "nan"
    return f"{x:.3f}" if classification else _n(x)


def judge(
    validation: Any,
    thresholds: Thresholds,
    candidate: dict[str, float],
    base: dict[str, float],
    baseline_version: int | None,
    gate: Gates | None = None,
) -> tuple[str, list[str]]:
    """(verdict, reasons) from TFMA's ValidationResult.

    Reasons: the failed gates first, then the gates that passed, then notes on what was not
    checked (no baseline, no thresholds), so the first line always explains the verdict.
    ``gate``: the bounds ``gates`` derived (None: regression from ``thresholds`` alone).
    """
    gate = gate if gate is not None else gates(thresholds, None, None)
    cls = gate.higher_is_better  # classification: accuracy, higher is better
    key = "accuracy" if cls else "mae"
    title = "accuracy" if cls else "MAE"
    value = candidate.get(key, float("nan"))
    base_value = base.get(key)
    reasons: list[str] = []
    has_baseline = baseline_version is not None
    if not has_baseline:
        reasons.append(f"{names.NO_BASELINE}: the candidate is judged without the change threshold")
    if thresholds.naive_margin is not None and gate.naive is None:
        reasons.append(
            "the naive predictor is unknown (the model carries no training-label figures): not gated"
        )
    unused = thresholds.mae_threshold if cls else thresholds.min_accuracy
    if unused is not None:
        which = "mae_threshold" if cls else "min_accuracy"
        reasons.append(f"{which} does not apply to {'classification' if cls else 'regression'}: not gated")
    change_applies = gate.change is not None and has_baseline
    if not gate.has_value_gate and not change_applies:
        if gate.change is None:
            reasons.append(NO_THRESHOLDS)
        else:
            reasons.append(f"{NO_THRESHOLDS} that apply: the change threshold needs a baseline")
    if has_baseline and gate.change is None:
        reasons.append(
            f"no change threshold configured: baseline version {baseline_version} is for comparison only"
        )

    def naive_text(x: float) -> str:
        n = gate.naive
        assert n is not None and gate.margin is not None
        error = 1.0 - x if cls else x
        below = 1.0 - error / n.error if n.error else float("nan")
        # Classification: error rates on both sides (the accuracy beside), never an accuracy beside an error.
        subject = f"overall error rate {error:.1%} (accuracy {x:.3f})" if cls else f"overall {title} {_n(x)}"
        against = f"the naive predictor's {n.error:.1%}" if cls else f"the naive predictor's {_n(n.error)}"
        where = f"{below:.1%} below" if not below < 0 else f"{-below:.1%} above (worse than)"
        return f"{subject} is {where} {against} ({n.description}); at least {gate.margin:.0%} below"

    def allowed_text(limit: float) -> str:
        """The change gate's limit in words: MAE may rise by at most x, accuracy fall by at most x."""
        return f"a fall of at most {abs(limit):.1%}" if cls else f"at most {limit:+.1%}"

    failures = [f for s in validation.metric_validations_per_slice for f in s.failures]
    failed: list[str] = []
    value_failed = change_failed = False
    for f in failures:
        got = f.metric_value.double_value.value
        t = f.metric_threshold
        if t.HasField("value_threshold"):
            value_failed = True
            absolute_fails = gate.absolute is not None and (
                got < gate.absolute if cls else got > gate.absolute
            )
            naive_fails = gate.naive_bound is not None and (
                got < gate.naive_bound if cls else got > gate.naive_bound
            )
            if absolute_fails or not naive_fails:
                side, bound = (
                    ("below the lower bound", gate.absolute)
                    if cls
                    else ("above the upper bound", gate.absolute)
                )
                bound = (
                    bound
                    if bound is not None
                    else (t.value_threshold.lower_bound.value if cls else t.value_threshold.upper_bound.value)
                )
                failed.append(f"overall {f.metric_key.name} {_v(got, cls)} is {side} {_v(bound, cls)}")
            if naive_fails:
                failed.append(naive_text(got) + " needed")
        elif t.HasField("change_threshold"):
            change_failed = True
            rel = got / base_value if base_value else float("nan")
            failed.append(
                f"{f.metric_key.name} is {rel:+.1%} against baseline version {baseline_version} "
                f"({_v(base_value if base_value is not None else float('nan'), cls)} -> {_v(value, cls)}); "
                f"{allowed_text(t.change_threshold.relative.value)} is allowed"
            )
        else:
            failed.append(f"TFMA threshold failed: {f.metric_key.name} = {got}: {f.message.strip()}")
    if not validation.validation_ok and not failures:
        failed.append(f"TFMA validation failed without a metric failure: {validation}")
    passed: list[str] = []
    if gate.absolute is not None and not value_failed:
        sign = ">= lower bound" if cls else "<= upper bound"
        passed.append(f"overall {title} {_v(value, cls)} {sign} {_v(gate.absolute, cls)}")
    if gate.naive_bound is not None and not value_failed:
        passed.append(naive_text(value) + " needed")
    if change_applies and gate.change is not None and base_value and not change_failed:
        passed.append(
            f"{title} {(value - base_value) / base_value:+.1%} against baseline version {baseline_version} "
            f"({_v(base_value, cls)} -> {_v(value, cls)}); {allowed_text(gate.change)} allowed"
        )
    if not gate.has_value_gate and not change_applies:
        # Nothing was handed to TFMA, so its result says validation_ok=False, missing_thresholds
        # (TFX's Evaluator would not bless). Our rule: no gates configured = meant to push.
        return names.BLESSED, reasons
    verdict = names.BLESSED if validation.validation_ok else names.NOT_BLESSED
    return verdict, failed + passed + reasons
