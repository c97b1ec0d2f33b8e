"""The drift reference: the training data of the model being served, found through the registry.

Skew and drift answer different questions, so they compare different data:
- skew: this run's eval split against this run's train split (do the two splits agree?);
- drift: this run's train split against the train split the SERVED model was trained on (has
  the data moved since the model in production was trained?). Like for like: on unchanged data
  drift is zero, whatever the skew between the splits.

TFDV measures drift in a second ``validate_statistics`` call (the train split, drift comparators
only); ``merge_drift`` adds its figures and its comparator anomalies to the eval split's
anomalies, so one ``SchemaDiff.pb`` holds everything validate found.

The served model is the registry's newest blessed version of ``model_name`` whose SavedModel is
still on the volume (``served.served_entry``, the baseline rule); its entry names the run
that trained it, and that run's statistics stage kept the train split's statistics on the volume
(``artifacts/<run id>/statistics/Split-train/FeatureStats.pb``). When there is no served model, or
its statistics are not on the volume (pushed before statistics were kept there, or deleted), drift
is not computed and :attr:`DriftReference.note` says why.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from components import names
from components.errors import StageError
from components.lib import served, storage
from components.lib.statistics_io import read_statistics, statistics_path
from components.lib.validate.verdict import STAGE


@dataclasses.dataclass
class DriftReference:
    """The served model's training statistics, or None and the reason drift is not computed."""

    statistics: Any  # DatasetFeatureStatisticsList | None
    note: str  # what drift compares with, or why it was not computed
    version: int | None = None
    run_id: str = ""
    rows: int = 0

    @property
    def computed(self) -> bool:
        return self.statistics is not None


def not_computed(why: str) -> DriftReference:
    return DriftReference(None, f"not computed: {why}")


def served_statistics(storage_root: str, model_name: str) -> DriftReference:
    """The train statistics of the run that trained the served version of ``model_name``."""
    if not model_name:
        return not_computed("no model name was given, so no served model to compare with")
    try:
        entry = served.served_entry(storage_root, model_name, STAGE)
    except StageError as e:  # resolve-baseline stops the run on it; drift is only information
        return not_computed(f"the registry cannot be read: {e}")
    if entry is None:
        return not_computed(
            f"no version of model {model_name!r} is being served (the registry lists no blessed "
            "version whose files are on the volume)"
        )
    version, run_id = entry["version"], str(entry.get("run_id") or "")
    if not run_id:
        return not_computed(f"the registry entry of {model_name} v{version} names no run")
    stats_dir = storage.stage_dir(storage_root, run_id, names.STAGE_STATISTICS)
    if not statistics_path(stats_dir, names.TRAIN).is_file():
        return not_computed(
            f"the training statistics of {model_name} v{version} (run {run_id}) are not on the volume at "
            f"{statistics_path(stats_dir, names.TRAIN)}"
        )
    try:
        stats = read_statistics(stats_dir, names.TRAIN, STAGE)
    except StageError as e:
        return not_computed(f"the training statistics of {model_name} v{version} are unreadable: {e.problem}")
    rows = int(stats.datasets[0].num_examples)
    return DriftReference(
        stats,
        f"the train split of {model_name} v{version}, the served model (run {run_id}, {rows:,} rows)",
        version=version,
        run_id=run_id,
        rows=rows,
    )


def merge_drift(anomalies: Any, drift: Any) -> None:
    """Add the drift call's figures and comparator anomalies to ``anomalies`` (in place).

    Only comparator reasons are taken from ``drift``: its schema checks of the train split are
    not what validate reports (the eval split is what is validated).
    """
    figures = {tuple(info.path.step): info for info in anomalies.drift_skew_info}
    for info in drift.drift_skew_info:
        target = figures.get(tuple(info.path.step))
        if target is None:
            target = anomalies.drift_skew_info.add()
            target.path.CopyFrom(info.path)
        target.drift_measurements.extend(info.drift_measurements)
    for key, info in drift.anomaly_info.items():
        reasons = [r for r in info.reason if _is_comparator(r)]
        if not reasons:
            continue
        target = anomalies.anomaly_info[key]  # created empty when the eval split had none
        if not target.HasField("path"):
            target.path.CopyFrom(info.path)
            target.severity = info.severity
        target.severity = max(target.severity, info.severity)
        target.reason.extend(reasons)
        texts = [f"Drift: {r.description}" for r in reasons]
        target.description = " ".join([target.description, *texts]).strip()
        short = "; ".join(r.short_description for r in reasons)
        target.short_description = (
            f"{target.short_description}; {short}" if target.short_description else short
        )


def _is_comparator(reason: Any) -> bool:
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    return anomalies_pb2.AnomalyInfo.Type.Name(reason.type).startswith("COMPARATOR_")
