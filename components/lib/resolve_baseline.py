"""Resolve-baseline logic: the latest blessed, pushed version of a model, from the registry.

TFX resolves the baseline through ML Metadata; here the registry index on the storage root is
the source (see ``registry``), so this works without any metadata service and sees pushes of
every earlier run, local or on a cluster, as long as they share the volume. The answer is a
``baseline.Baseline`` record, the contract evaluate reads; the rule that picks it is the
registry's (``registry.baseline_entry``), the same push re-checks under its lock.

Before resolving, the stage looks after the volume at the start of every run (it is the one
stage every run executes uncached, with no upstream task): it settles what a killed push left
(``reconcile.settle``: the baseline it reads then counts a version whose push died after its
rename) and removes scratch directories killed stages left (``storage.clean_scratch``).
"""

from __future__ import annotations

from typing import Any

from components import names
from components.lib import reconcile, registry, storage
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


def housekeeping(storage_root: str, serving_root: str, model_name: str) -> list[str]:
    """Settle the registry against the serving directory and remove dead scratch; one line per act."""
    model_dir = registry.model_dir(storage_root, serving_root, model_name, STAGE)
    said = [f"registry: {line}" for line in reconcile.settle(storage_root, model_dir, model_name, STAGE)]
    return said + [f"scratch: {line}" for line in storage.clean_scratch(storage_root)]


def resolve(storage_root: str, model_name: str) -> Baseline:
    """The newest blessed version whose SavedModel is still on disk; versions deleted by hand are skipped."""
    entry, skipped = registry.baseline_entry(registry.read_index(storage_root, STAGE), model_name)
    if entry is None:
        return Baseline(False, names.NO_BASELINE, model_name, skipped_versions=skipped)
    return baseline_from_entry(entry, model_name, skipped)
