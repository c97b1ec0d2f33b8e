"""Resolve-baseline logic: the latest blessed, pushed version of a model, from the registry.

TFX resolves the baseline through ML Metadata; here the registry index on the storage root is
the source (see ``registry``), so this works without any metadata service and sees pushes of
every earlier run, local or on a cluster, as long as they share the volume.

The baseline is described by ``model_path``: the exact SavedModel directory. For a pushed
version that is the serving directory ``<serving root>/<model>/<version>`` itself (TF Serving's
layout has the SavedModel at the top). Evaluate reads ``model_path`` from both the candidate
and the baseline, so it loads either the same way (a train artifact without ``model_path``
falls back to ``<storage_path>/Format-Serving``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from components import names
from components.lib import registry
from components.lib.push import SAVED_MODEL_FILES

STAGE = names.STAGE_RESOLVE
META_MODEL_PATH = names.META_MODEL_PATH


@dataclasses.dataclass
class Baseline:
    """The resolved baseline, or why there is none; ``skipped`` = registered versions whose files are gone."""

    found: bool
    reason: str
    model_name: str
    entry: dict[str, Any] | None = None
    skipped: list[int] = dataclasses.field(default_factory=list)

    def metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"found": self.found, "reason": self.reason, "model_name": self.model_name}
        if self.skipped:
            meta["skipped_versions"] = self.skipped
        if self.entry is not None:
            e = self.entry
            meta.update(
                {
                    "version": e["version"],
                    META_MODEL_PATH: e["serving_path"],
                    names.META_STORAGE_PATH: e["serving_path"],
                    "metrics": e.get("metrics") or {},
                    "run_id": e.get("run_id", ""),
                    "model_location": e.get("model_location", ""),
                    names.META_FINGERPRINT: e.get("fingerprint", ""),
                    "pushed_at": e.get("time", ""),
                }
            )
        return meta

    def note(self) -> str:
        """A human sentence for the artifact file and logs."""
        if not self.found:
            gone = (
                f" (registered versions {self.skipped} are missing from the serving directory)"
                if self.skipped
                else ""
            )
            return (
                f"No baseline for model {self.model_name!r}: {self.reason}{gone}; "
                "the candidate is judged alone."
            )
        e = self.entry or {}
        return (
            f"Baseline for model {self.model_name!r}: version {e.get('version')} "
            f"(run {e.get('run_id')}, pushed {e.get('time')}) at {e.get('serving_path')}."
        )


def _is_saved_model(path: str) -> bool:
    return any((Path(path) / f).is_file() for f in SAVED_MODEL_FILES)


def resolve(storage_root: str, model_name: str) -> Baseline:
    """The newest blessed version whose SavedModel is still on disk; versions deleted by hand are skipped."""
    doc = registry.read_index(storage_root, STAGE)
    skipped: list[int] = []
    for entry in registry.latest_blessed(doc, model_name):
        if _is_saved_model(entry["serving_path"]):
            return Baseline(True, "latest blessed pushed version", model_name, entry, skipped)
        skipped.append(entry["version"])
    return Baseline(False, names.NO_BASELINE, model_name, None, skipped)
