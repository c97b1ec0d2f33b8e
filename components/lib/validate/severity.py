"""How serious a skew or drift anomaly is: sampling noise, discrete features, and what to do.

TFDV calls every distance over its threshold an ERROR. That reads as a failure where it is often
chance: 3 eval rows lie far from 17 train rows on every feature (linnerud: six ERRORs saying
"retrain on recent data" beside "stops the run: no"), and a JS divergence of a few-valued integer
compares histograms whose bin edges split the values (cars' ``Cylinders``). So validate judges
each comparator anomaly again on the two splits' statistics, re-binned onto common bins
(``distributions.shared_bins``):

| what the statistics show                                          | severity | an anomaly |
|-------------------------------------------------------------------|----------|------------|
| the distributions differ beyond sampling noise (chi-square, 1:1000) | WARNING | yes        |
| a difference sampling noise explains (few rows on either side)    | INFO     | no: a note |
| an integer with few values whose shares differ by no more than the threshold | INFO | no: a note |

ERROR stays for what makes training unsafe (``verdict.UNSAFE_REASONS``). A finding with other
reasons beside the comparator's keeps TFDV's severity. The advice tells skew (this run's eval
split against its train split: how the splits were made) from drift (this run's training data
against the served model's: the data moved since it was trained).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from components.lib.distributions import beyond_noise, largest_gap, shared_bins
from components.lib.statistics_io import feature_name
from components.lib.validate.verdict import INFO, WARNING, Comparison, Finding

COMPARATOR_REASONS = frozenset({"COMPARATOR_L_INFTY_HIGH", "COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH"})
SKEW_ADVICE = (
    "Skew: this run's eval split differs from its train split beyond sampling noise, so evaluate "
    "judges the model on data unlike what it learnt from. Check how the splits were made (an export "
    "sorted by time or group, eval rows from another source); if the difference is expected, raise "
    "skew_threshold."
)
DRIFT_ADVICE = (
    "Drift: this run's training data moved since the served model was trained, beyond sampling "
    "noise. Training on these data is what this run does, and evaluate compares the candidate with "
    "the served model on them; if the move is not expected, check the data source (an export or "
    "unit change?); if it is, raise drift_threshold."
)
NOISE_ADVICE = "Nothing to do: {why}. More rows on the smaller side make the comparison meaningful."


@dataclasses.dataclass
class Judgement:
    """One comparison judged on the statistics: a real difference, or why it is not."""

    real: bool
    why: str = ""


def _feature(stats: Any, name: str) -> Any:
    if stats is None:
        return None
    return next((f for f in stats.datasets[0].features if feature_name(f) == name), None)


def judge(comparison: Comparison, before: Any, after: Any) -> Judgement:
    """Whether ``comparison``'s distance is a real difference between statistics ``before``/``after``."""
    a, b = _feature(before, comparison.feature), _feature(after, comparison.feature)
    shared = shared_bins({"a": a, "b": b}) if a is not None and b is not None else None
    if shared is None or set(shared.counts) != {"a", "b"}:
        return Judgement(True)  # nothing to judge it on: TFDV's figure stands
    rows = f"{shared.totals['b']:,} rows against {shared.totals['a']:,}"
    if shared.kind == "values" and comparison.measure == "JENSEN_SHANNON_DIVERGENCE":
        i, gap = largest_gap(shared, "a", "b")
        if gap / 100.0 <= comparison.threshold:
            return Judgement(
                False,
                f"an integer with {len(shared.labels)} values whose shares differ by at most "
                f"{gap:.1f} points (value {shared.labels[i]}); TFDV's divergence compares histogram "
                "bins that split the values",
            )
    if not beyond_noise(shared.counts["a"], shared.counts["b"]):
        return Judgement(False, f"a distance of {comparison.value:.3g} is what {rows} give by chance")
    return Judgement(True)


def assess(findings: list[Finding], comparisons: list[Comparison], sides: dict[str, tuple[Any, Any]]) -> None:
    """Set the severity and advice of each comparator-only finding (module docstring), in place.

    ``sides``: {"skew": (train, eval), "drift": (served train, this train)} statistics.
    """
    over = {(c.feature, c.kind): c for c in comparisons if c.exceeded}
    for finding in findings:
        if finding.served or not finding.reasons or not set(finding.reasons) <= COMPARATOR_REASONS:
            continue
        kinds = [k for k in ("skew", "drift") if (finding.feature, k) in over and k in sides]
        if not kinds:
            continue
        judged = {k: judge(over[(finding.feature, k)], *sides[k]) for k in kinds}
        real = [k for k, j in judged.items() if j.real]
        if real:
            finding.severity = WARNING
            finding.fix = " ".join(SKEW_ADVICE if k == "skew" else DRIFT_ADVICE for k in real)
            continue
        why = "; ".join(f"{k}: {j.why}" for k, j in judged.items())
        finding.severity = INFO
        finding.short_description = f"{finding.short_description} (within sampling noise)"
        finding.fix = NOISE_ADVICE.format(why=why)


def noise_notes(findings: list[Finding]) -> list[Finding]:
    """The comparator findings judged to be noise (INFO)."""
    return [f for f in findings if f.severity == INFO and set(f.reasons) <= COMPARATOR_REASONS and f.reasons]
