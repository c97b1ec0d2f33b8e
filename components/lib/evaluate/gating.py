"""Evaluation gating as data: the thresholds, and the rule that turns TFMA's validation into a verdict.

Thresholds are configuration, not code:
- ``mae_threshold``: upper bound on the candidate's overall MAE (a TFMA value threshold);
- ``max_relative_degradation``: candidate MAE <= (1 + x) * baseline MAE (a TFMA relative change
  threshold, LOWER_IS_BETTER); only meaningful with a baseline.
A value that is negative (or null in the file) means "not configured". A thresholds file
(JSON or YAML, relative to the storage root or absolute) overrides the parameters key by key:
``{"mae_threshold": 7000, "max_relative_degradation": null}``. Unknown keys are an error, so a
typo cannot silently switch a gate off. ``tfma_engine.eval_config`` hands them to TFMA.

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
from pathlib import Path
from typing import Any

from components import names
from components.errors import StageError
from components.lib.evaluate.keys import STAGE

THRESHOLD_KEYS = ("mae_threshold", "max_relative_degradation")
NO_THRESHOLDS = "no thresholds configured"


@dataclasses.dataclass
class Thresholds:
    """The gates of one evaluation; None = not configured."""

    mae_threshold: float | None
    max_relative_degradation: float | None
    source: str = "parameters"

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


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
    mae_threshold: float, max_relative_degradation: float, thresholds_file: str, storage_root: str
) -> Thresholds:
    """The thresholds from the parameters, overridden key by key by ``thresholds_file`` if given."""
    values: dict[str, Any] = {
        "mae_threshold": mae_threshold,
        "max_relative_degradation": max_relative_degradation,
    }
    source = "parameters"
    if thresholds_file:
        path = Path(thresholds_file)
        path = path if path.is_absolute() else Path(storage_root) / path
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
    )


def _n(x: float) -> str:
    return f"{x:,.0f}" if math.isfinite(x) else str(x)


def judge(
    validation: Any,
    thresholds: Thresholds,
    candidate: dict[str, float],
    base: dict[str, float],
    baseline_version: int | None,
) -> tuple[str, list[str]]:
    """(verdict, reasons) from TFMA's ValidationResult.

    Reasons: the failed gates first, then the gates that passed, then notes on what was not
    checked (no baseline, no thresholds), so the first line always explains the verdict.
    """
    reasons: list[str] = []
    mae = candidate.get("mae", float("nan"))
    base_mae = base.get("mae")
    has_baseline = baseline_version is not None
    if not has_baseline:
        reasons.append(f"{names.NO_BASELINE}: the candidate is judged by the absolute threshold only")
    change_applies = thresholds.max_relative_degradation is not None and has_baseline
    if thresholds.mae_threshold is None and not change_applies:
        if thresholds.max_relative_degradation is None:
            reasons.append(NO_THRESHOLDS)
        else:
            reasons.append(f"{NO_THRESHOLDS} that apply: the change threshold needs a baseline")
    if has_baseline and thresholds.max_relative_degradation is None:
        reasons.append(
            f"no change threshold configured: baseline version {baseline_version} is for comparison only"
        )

    failures = [f for s in validation.metric_validations_per_slice for f in s.failures]
    failed: list[str] = []
    value_failed = change_failed = False
    for f in failures:
        value = f.metric_value.double_value.value
        t = f.metric_threshold
        if t.HasField("value_threshold"):
            value_failed = True
            failed.append(
                f"overall {f.metric_key.name} {_n(value)} is above the upper bound "
                f"{_n(t.value_threshold.upper_bound.value)}"
            )
        elif t.HasField("change_threshold"):
            change_failed = True
            rel = value / base_mae if base_mae else float("nan")
            failed.append(
                f"{f.metric_key.name} is {rel:+.1%} against baseline version {baseline_version} "
                f"({_n(base_mae or float('nan'))} -> {_n(mae)}); at most "
                f"{t.change_threshold.relative.value:+.1%} is allowed"
            )
        else:
            failed.append(f"TFMA threshold failed: {f.metric_key.name} = {value}: {f.message.strip()}")
    if not validation.validation_ok and not failures:
        failed.append(f"TFMA validation failed without a metric failure: {validation}")
    passed: list[str] = []
    if thresholds.mae_threshold is not None and not value_failed:
        passed.append(f"overall MAE {_n(mae)} <= upper bound {_n(thresholds.mae_threshold)}")
    if change_applies and base_mae and not change_failed:
        passed.append(
            f"MAE {(mae - base_mae) / base_mae:+.1%} against baseline version {baseline_version} "
            f"({_n(base_mae)} -> {_n(mae)}); at most {thresholds.max_relative_degradation:+.1%} allowed"
        )
    if thresholds.mae_threshold is None and not change_applies:
        # Nothing was handed to TFMA, so its result says validation_ok=False, missing_thresholds
        # (TFX's Evaluator would not bless). Our rule: no gates configured = meant to push.
        return names.BLESSED, reasons
    verdict = names.BLESSED if validation.validation_ok else names.NOT_BLESSED
    return verdict, failed + passed + reasons
