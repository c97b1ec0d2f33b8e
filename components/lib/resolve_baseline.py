"""Resolve-baseline logic: the latest blessed, pushed version of a model, from the registry.

TFX resolves the baseline through ML Metadata; here the registry index on the storage root is
the source (see ``registry``), so this works without any metadata service and sees pushes of
every earlier run, local or on a cluster, as long as they share the volume. The answer is a
``baseline.Baseline`` record, the contract evaluate reads.
"""

from __future__ import annotations

from typing import Any

from components import names
from components.lib import registry, saved_model
from components.lib.baseline import Baseline

STAGE = names.STAGE_RESOLVE
FOUND_REASON = "latest blessed pushed version"


def baseline_from_entry(entry: dict[str, Any], model_name: str, skipped: list[int]) -> Baseline:
    """The baseline record of one registry entry (a pushed version)."""
    return Baseline(
        True,
        FOUND_REASON,
        model_name,
        version=entry["version"],
        model_path=entry["serving_path"],
        metrics=entry.get("metrics") or {},
        run_id=entry.get("run_id") or "",
        model_location=entry.get("model_location") or "",
        fingerprint=entry.get("fingerprint") or "",
        pushed_at=entry.get("time") or "",
        skipped_versions=skipped,
    )


def resolve(storage_root: str, model_name: str) -> Baseline:
    """The newest blessed version whose SavedModel is still on disk; versions deleted by hand are skipped."""
    doc = registry.read_index(storage_root, STAGE)
    skipped: list[int] = []
    for entry in registry.latest_blessed(doc, model_name):
        if saved_model.is_saved_model(entry["serving_path"]):
            return baseline_from_entry(entry, model_name, skipped)
        skipped.append(entry["version"])
    return Baseline(False, names.NO_BASELINE, model_name, skipped_versions=skipped)
