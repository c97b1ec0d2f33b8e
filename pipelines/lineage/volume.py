"""Lineage without ML Metadata: what made a pushed version, from the volume alone.

KFP is removing ML Metadata (proposal 12147, PR #13986), a pod's artifact files live in an object
store, and a local store may be deleted or never have existed (a root restored from a backup, a
version pushed by a cluster run). The volume keeps what is needed to answer anyway:

- the registry (``registry/index.json``): the version's run id, data fingerprint and blessing;
- every stage's artifact manifest (``artifacts/<run id>/<stage>/kubetfx_artifact.json``, written
  by ``artifact_metadata.publish``): each output artifact's KFP type, URI and metadata — the
  same metadata ML Metadata records — and the stage's code (``code_identity``).

``trace_from_volume`` returns the trace ``store.trace_version`` returns, key for key, so the
report and ``--json`` read the same whichever source answered (``answer`` is what both give
equal, ``tests/test_lineage_volume.py``). The stages are found by the run id, not by events:
one run pushes at most one version, and its stages write under its own ``artifacts/<run id>/``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from components import names

STAGE = "lineage"
# The trace's keys that are the answer to "what made version N" (both sources give them equal).
ANSWER_KEYS = (
    "model",
    "version",
    "runs",
    "pushed",
    "data",
    "schema",
    "transform_graph",
    "hyperparameters",
    "model_trained",
    "blessing",
    "baseline",
    "code",
)
# Trace key -> the output artifact that answers it (the output's name in the pipeline).
ARTIFACT_OF = {
    "pushed": "pushed_model",
    "data": "examples",
    "schema": "schema",
    "transform_graph": "transform_graph",
    "hyperparameters": "best_hyperparameters",
    "model_trained": "model",
    "blessing": "blessing",
    "baseline": "baseline",
}


MLMD_DECIMALS = 6  # ML Metadata's SQLite store writes a double property as %f: six decimals kept


class UnknownVersion(LookupError):
    """The registry lists no such version; ``known``: the versions of the model it lists."""

    def __init__(self, message: str, known: list[int]) -> None:
        super().__init__(message)
        self.known = known


def answer(trace: dict[str, Any]) -> dict[str, Any]:
    """The answer of a trace as both sources must give it: ``ANSWER_KEYS``, values ``canonical``.

    Numbers are compared at the precision ML Metadata keeps: its SQLite store writes a double
    property with six decimals (a blessing's MAE 1855.8600187 comes back 1855.860019), while the
    manifest keeps the stage's float whole. Everything else must be equal as it is.
    """
    from components.lib.artifact_metadata import canonical

    return {key: _at_mlmd_precision(canonical(trace.get(key))) for key in ANSWER_KEYS}


def _at_mlmd_precision(value: Any) -> Any:  # noqa: ANN401
    if isinstance(value, dict):
        return {k: _at_mlmd_precision(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_at_mlmd_precision(v) for v in value]
    if isinstance(value, float):
        value = round(value, MLMD_DECIMALS)
        return int(value) if value.is_integer() else value
    return value


def code_of(by_name: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The code that made the model: train's (its module, the package, the image)."""
    from components.lib.artifact_metadata import canonical

    for name in ("model", "best_hyperparameters", "transform_graph"):
        code = canonical((by_name.get(name) or {}).get("code"))
        if isinstance(code, dict):
            return code
    return None


def by_artifact(found: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The trace's answer keys from records found by output name (``ARTIFACT_OF``), and the code."""
    traced: dict[str, Any] = {key: found.get(name) for key, name in ARTIFACT_OF.items()}
    traced["code"] = code_of(found)
    return traced


def trace_from_volume(storage_root: str | Path, model_name: str, version: int) -> dict[str, Any]:
    """Everything upstream of the pushed ``model_name`` version ``version``, from the volume.

    UnknownVersion (a LookupError): the registry lists no such version (the message lists the
    pushed ones).
    ValueError ``<file>: <problem>``: the index or a manifest is damaged.
    """
    from components.errors import StageError
    from components.lib import registry
    from pipelines.lineage.store import resolved_paths

    root = Path(os.path.abspath(storage_root))
    try:
        doc = registry.read_index(root, STAGE)
    except StageError as e:
        raise ValueError(f"{e.path}: {e.problem}") from None
    pushed = registry.pushed_of(root, doc, model_name)
    entry = next((e for e in pushed if e["version"] == version), None)
    if entry is None:
        known = [int(e["version"]) for e in pushed]
        listed = f"pushed versions: {', '.join(map(str, known))}" if known else "no version was pushed"
        where = registry.index_path(root)
        raise UnknownVersion(f"no version {version} of model {model_name!r} in {where}; {listed}", known)
    run_id = str(entry["run_id"])
    found, artifacts, stages = _manifests(root, run_id)
    found = {name: resolved_paths(str(root), record) for name, record in found.items()}
    record = found.get(ARTIFACT_OF["pushed"]) or {}
    if record and record.get("version") not in (version, float(version)):
        where = _manifest_of(root, run_id, names.STAGE_PUSH)
        raise ValueError(
            f"{where}: run {run_id} pushed version {record.get('version')}, the registry says {version}"
        )
    traced = by_artifact(found)
    missing = [key for key, name in ARTIFACT_OF.items() if name not in found]
    for key, record in from_registry(resolved_paths(str(root), entry), pushed).items():
        if traced.get(key) is None:  # the run's artifacts are gone (or older): the registry's word
            traced[key] = record
    return {
        "model": model_name,
        "version": version,
        "runs": [run_id],
        **traced,
        "artifacts": [resolved_paths(str(root), a) for a in artifacts],
        "executions": stages,
        "registry": resolved_paths(str(root), entry, "") | {"run_id": run_id},
        "missing": missing,
    }


def from_registry(entry: dict[str, Any], pushed: list[dict[str, Any]]) -> dict[str, Any]:
    """What the registry's entry alone says of a version, in the trace's shape.

    Used for what the run's manifests do not say (its artifacts deleted, or written before
    manifests existed): the data's fingerprint, the blessing, the baseline (its entry among
    ``pushed``), the trained model's location, the pushed version, and the code when push
    recorded it (``registry.CODE``).
    """
    from components.lib.registry import CODE

    blessing: dict[str, Any] = entry["blessing"] if isinstance(entry.get("blessing"), dict) else {}
    metrics: dict[str, Any] = entry["metrics"] if isinstance(entry.get("metrics"), dict) else {}
    verdict = {k: blessing[k] for k in (names.META_VERDICT, "reasons", "baseline") if k in blessing}
    if "mae" in metrics:
        verdict["mae"] = metrics["mae"]
    published = {k: entry[k] for k in ("version", "model_name", "serving_path")}
    return {
        "pushed": {"pushed": True, **published},
        "data": {names.META_FINGERPRINT: entry.get("fingerprint", "")},
        "model_trained": {names.META_STORAGE_PATH: entry.get("model_location", "")},
        "blessing": verdict,
        "baseline": _baseline_of(blessing, pushed),
        "code": entry[CODE] if isinstance(entry.get(CODE), dict) else None,
    }


def _baseline_of(blessing: dict[str, Any], pushed: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The baseline a blessing names (a version, or null: none), as resolve-baseline described it."""
    if "baseline" not in blessing:
        return None
    judged = blessing["baseline"]
    if judged is None or (isinstance(judged, int | float) and judged < 0):
        return {"found": False, "reason": names.NO_BASELINE}
    base = next((e for e in pushed if e["version"] == judged), {})
    found = {"found": True, "version": judged, "run_id": base.get("run_id", "?")}
    return found | ({"metrics": base["metrics"]} if isinstance(base.get("metrics"), dict) else {})


def _manifest_of(root: Path, run_id: str, stage: str) -> Path:
    from components.lib.artifact_metadata import manifest_path

    return manifest_path(root, run_id, stage)


def _manifests(root: Path, run_id: str) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]], list[str]]:
    """Every stage manifest of a run: records by output name, all records, the stages found.

    A record has the shape of ML Metadata's (``store.trace_version``): type, uri, the metadata,
    ``display_name`` (the output's name) and ``produced_by`` (the stage).
    """
    from components.lib.artifact_metadata import read_manifest

    found: dict[str, dict[str, Any]] = {}
    records: list[dict[str, Any]] = []
    stages: list[str] = []
    for stage in names.STAGES:
        path = _manifest_of(root, run_id, stage)
        if not path.is_file():
            continue
        doc = read_manifest(path)
        stages.append(stage)
        for key, art in doc["artifacts"].items():
            record = {"type": art["type"], "uri": art["uri"], **art["metadata"]}
            record.update(display_name=key, produced_by=stage)
            found[key] = record
            records.append(record)
    return found, records, stages
