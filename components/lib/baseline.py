"""The baseline: what resolve-baseline hands to evaluate, as one typed record.

Resolve-baseline writes a :class:`Baseline` (``write`` for the artifact file, ``to_metadata`` for
the artifact's metadata); evaluate reads it back with ``Baseline.from_artifact`` — the metadata
when it arrived, else the file, which holds the same keys plus a sentence for the UI. A found
baseline is a pushed model version: ``model_path`` is its SavedModel directory (the serving
directory ``<serving root>/<model>/<version>``, whose top holds the SavedModel), so evaluate
loads it exactly as it loads a candidate that names its ``model_path``. ``model_path`` and
``model_location`` are absolute, under the storage root resolve-baseline was given (the registry
records them relative to it: ``registry.entry_path``), never under another copy of the volume.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from components import names
from components.errors import StageError
from components.lib.artifact_metadata import as_bool, as_int, plain, without_nulls

FOUND = "found"
REASON = "reason"
MODEL_NAME = "model_name"
VERSION = "version"
METRICS = "metrics"
RUN_ID = "run_id"
MODEL_LOCATION = "model_location"
PUSHED_AT = "pushed_at"
SKIPPED_VERSIONS = "skipped_versions"
NOTE = "note"  # the file's extra: the human sentence
FOUND_REASON = "latest blessed pushed version"  # the reason of a found baseline, when nothing else is said


@dataclasses.dataclass(frozen=True)
class Baseline:
    """The resolved baseline, or why there is none.

    ``skipped_versions``: registered versions whose files are gone from the serving directory.
    """

    found: bool
    reason: str
    model_name: str
    version: int | None = None
    model_path: str = ""
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
    run_id: str = ""
    model_location: str = ""
    fingerprint: str = ""
    pushed_at: str = ""
    skipped_versions: list[int] = dataclasses.field(default_factory=list)

    def to_metadata(self) -> dict[str, Any]:
        """The artifact's metadata: ``found``, ``reason``, ``model_name``, and the version when found."""
        meta: dict[str, Any] = {FOUND: self.found, REASON: self.reason, MODEL_NAME: self.model_name}
        if self.skipped_versions:
            meta[SKIPPED_VERSIONS] = list(self.skipped_versions)
        if self.found:
            meta.update(
                {
                    VERSION: self.version,
                    names.META_MODEL_PATH: self.model_path,
                    names.META_STORAGE_PATH: self.model_path,
                    METRICS: dict(self.metrics),
                    RUN_ID: self.run_id,
                    MODEL_LOCATION: self.model_location,
                    names.META_FINGERPRINT: self.fingerprint,
                    PUSHED_AT: self.pushed_at,
                }
            )
        return without_nulls(meta)

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any], stage: str, where: str | None = None) -> Baseline:
        """The record from artifact metadata (as written, or after ML Metadata's round trip) or the file."""
        meta = plain(dict(metadata))
        found = as_bool(meta.get(FOUND), FOUND, stage, where)
        skipped = [as_int(v, SKIPPED_VERSIONS, stage, where) for v in meta.get(SKIPPED_VERSIONS) or []]
        reason = str(meta.get(REASON) or "")
        model_name = str(meta.get(MODEL_NAME) or "")
        if not found:
            return cls(False, reason, model_name, skipped_versions=skipped)
        if not meta.get(names.META_MODEL_PATH) or meta.get(VERSION) is None:
            raise StageError(
                stage, where, f"baseline is marked found but has no {names.META_MODEL_PATH}/version"
            )
        return cls(
            True,
            reason,
            model_name,
            version=as_int(meta[VERSION], VERSION, stage, where),
            model_path=str(meta[names.META_MODEL_PATH]),
            metrics=dict(meta.get(METRICS) or {}),
            run_id=str(meta.get(RUN_ID) or ""),
            model_location=str(meta.get(MODEL_LOCATION) or ""),
            fingerprint=str(meta.get(names.META_FINGERPRINT) or ""),
            pushed_at=str(meta.get(PUSHED_AT) or ""),
            skipped_versions=skipped,
        )

    @classmethod
    def from_artifact(cls, metadata: dict[str, Any], artifact_path: str, stage: str) -> Baseline:
        """The baseline an input artifact carries: its metadata, or its file when KFP lost the metadata.

        If neither says whether a baseline was found, that is an error: evaluating without the
        baseline would silently drop its gate.
        """
        if FOUND in metadata:
            return cls.from_metadata(metadata, stage, artifact_path)
        return cls.read(Path(artifact_path), stage)

    def note(self) -> str:
        """A human sentence for the artifact file and logs."""
        if not self.found:
            gone = (
                f" (registered versions {self.skipped_versions} are missing from the serving directory)"
                if self.skipped_versions
                else ""
            )
            return (
                f"No baseline for model {self.model_name!r}: {self.reason}{gone}; "
                "the candidate is judged alone."
            )
        found = (
            f"Baseline for model {self.model_name!r}: version {self.version} "
            f"(run {self.run_id}, pushed {self.pushed_at}) at {self.model_path}."
        )
        # A newer version set aside as damaged (resolve_baseline.set_aside_damaged) is said too.
        return found if self.reason == FOUND_REASON else f"{found} {self.reason}."

    def write(self, path: Path) -> None:
        """The artifact file: the metadata as JSON plus the note, so the outcome shows in the UI."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({NOTE: self.note(), **self.to_metadata()}, indent=2, sort_keys=True))

    @classmethod
    def read(cls, path: Path, stage: str) -> Baseline:
        """The record from an artifact file ``write`` wrote."""
        try:
            doc = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            raise StageError(
                stage, str(path), f"the baseline artifact has no 'found' metadata and no readable file: {e}"
            ) from e
        if not isinstance(doc, dict) or FOUND not in doc:
            raise StageError(
                stage, str(path), "the baseline artifact file does not say whether one was found"
            )
        return cls.from_metadata(doc, stage, str(path))
