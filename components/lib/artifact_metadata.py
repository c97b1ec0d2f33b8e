"""Artifact metadata as ML Metadata hands it back, and as it must be written to reach it.

In the local runner a stage's output metadata reaches the next stage as written. On the KFP
backend it makes a round trip through ML Metadata (``pipelines/backend/metadata.py`` emulates it):
bools come back as 1.0/0.0, ints as floats, lists as ``{"list": [...]}`` and dicts as
``{"struct": {...}}``, and a None value fails the producing task. The records that cross stages
(``baseline``, ``blessing``) write through ``without_nulls`` and read through ``plain``,
``as_bool`` and ``as_int``, so they read the same in both places.

The same metadata is kept on the volume (``publish``: ``artifacts/<run id>/<stage>/
kubetfx_artifact.json``), so lineage can be answered without ML Metadata
(``pipelines.lineage.volume``); ``canonical`` is how both readers compare values.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from components import names
from components.errors import StageError


def plain(value: Any) -> Any:
    """``value`` with ML Metadata's ``{"list": [...]}`` and ``{"struct": {...}}`` wrappers removed."""
    if isinstance(value, dict):
        if len(value) == 1 and isinstance(value.get("list"), list):
            return [plain(v) for v in value["list"]]
        if len(value) == 1 and isinstance(value.get("struct"), dict):
            return {k: plain(v) for k, v in value["struct"].items()}
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def as_bool(value: Any, key: str, stage: str, where: str | None) -> bool:
    """A bool written as a bool and read back as one, or as 1/0 (ML Metadata's int)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    raise StageError(stage, where, f"metadata {key!r} must be true or false, got {value!r}")


def as_int(value: Any, key: str, stage: str, where: str | None) -> int:
    """An int written as an int and read back as one, or as a whole float (ML Metadata's double)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise StageError(stage, where, f"metadata {key!r} must be a whole number, got {value!r}")


def without_nulls(metadata: dict[str, Any]) -> dict[str, Any]:
    """Metadata without None values.

    The KFP backend fails a task whose artifact metadata holds a null ("unknown/unsupported
    value type" when the launcher writes it to ML Metadata).
    """
    return {k: v for k, v in metadata.items() if v is not None}


def canonical(value: Any) -> Any:
    """``value`` as both lineage readers compare it: ``plain``, and whole floats as ints.

    ML Metadata (and KFP's metadata on the way to it) keeps every number as a float: ``2.0`` read
    back from it and ``2`` read from a manifest are the same value written by the stage.
    """
    value = plain(value)
    if isinstance(value, dict):
        return {k: canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [canonical(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def relative_paths(roots: list[Path], value: Any) -> Any:
    """``value`` with every absolute path on the storage root made relative to it (the root: ``.``).

    ``roots``: the root as this process sees it, and as the task saw it (its ``storage_root``
    parameter: a pod's mount path). Lists and dicts are walked; URLs, relative paths and other
    text stay as they are. ML Metadata's recorder and ``publish`` record paths this one way, so a
    root that is moved or copied keeps lineage that points only into itself.
    """
    from components.lib import registry_paths, storage

    if isinstance(value, dict):
        return {k: relative_paths(roots, v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [relative_paths(roots, v) for v in value]
    if isinstance(value, str) and os.path.isabs(value):
        for root in roots:
            if storage.inside(root, value):
                return registry_paths.relative_to_root(root, value)
    return value


# --- The artifact manifest on the volume: lineage without ML Metadata ----------------------------

MANIFEST_FORMAT = 1


def manifest_path(storage_root: str | Path, run_id: str, stage: str) -> Path:
    """``<root>/artifacts/<run id>/<stage>/kubetfx_artifact.json``: one stage's outputs, described."""
    from components.lib import storage

    return storage.stage_dir(str(storage_root), run_id, stage) / names.MANIFEST_FILE


def publish(
    storage_root: str, run_id: str, stage: str, artifacts: dict[str, Any], module_file: str | None = None
) -> Path:
    """Describe a stage's output artifacts on the volume, as ML Metadata would record them.

    Why: KFP's ML Metadata is going away (proposal 12147), a pod's artifact files live in an
    object store, and a local store may be deleted; the volume outlives all three. The manifest
    holds each artifact's KFP type, URI and metadata, and the stage's code
    (``code_identity``), paths relative to the storage root (``relative_paths``). A stage that
    runs the user module (``module_file`` not None, empty for the built-in one) also puts its
    code into each artifact's metadata, so ML Metadata records the same. Call it last, when the
    metadata is final; the file is replaced atomically (a retry rewrites it whole).
    """
    from components.lib import code_identity

    code = code_identity.identity(storage_root, stage, module_file)
    if module_file is not None:
        for artifact in artifacts.values():
            artifact.metadata["code"] = code
    described = {
        key: {"type": a.schema_title, "uri": a.uri, "metadata": dict(a.metadata)}
        for key, a in artifacts.items()
    }
    doc = {"format": MANIFEST_FORMAT, "run_id": run_id, "stage": stage, "code": code, "artifacts": described}
    doc = relative_paths([Path(os.path.abspath(storage_root))], doc)
    path = manifest_path(storage_root, run_id, stage)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n")
        os.replace(tmp, path)
    except OSError as e:
        raise StageError(stage, str(path), f"cannot write the artifact manifest: {e.strerror or e}") from e
    return path


def read_manifest(path: Path) -> dict[str, Any]:
    """A manifest ``publish`` wrote, checked; ValueError ``<path>: <problem>`` when it is not one."""
    try:
        doc = json.loads(path.read_text())
    except OSError as e:
        raise ValueError(f"{path}: cannot read the artifact manifest: {e.strerror or e}") from e
    except ValueError as e:
        raise ValueError(f"{path}: artifact manifest is not valid JSON: {e}") from e
    if not isinstance(doc, dict) or doc.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"{path}: not a KubeTFX artifact manifest (format {MANIFEST_FORMAT} expected)")
    arts = doc.get("artifacts")
    if not isinstance(arts, dict) or not isinstance(doc.get("code"), dict):
        raise ValueError(f"{path}: artifact manifest has no artifacts or code")
    for key, art in arts.items():
        fields = isinstance(art, dict) and isinstance(art.get("metadata"), dict)
        if not fields or not all(isinstance(art.get(k), str) for k in ("type", "uri")):
            raise ValueError(f"{path}: artifact {key!r} has no type, uri and metadata")
    return doc
