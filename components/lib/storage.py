"""The storage root: the PersistentVolume on a cluster, a folder locally.

Bulk artifacts (examples, transformed examples, models) are written once under
``<root>/artifacts/<run id>/<stage>/`` and read in place by later stages. The KFP artifact
of such a stage holds a small manifest pointing at that directory, and the same path is in
the artifact's metadata, so lineage in ML Metadata stays complete.

Writes are atomic at directory level: a stage writes into a hidden sibling directory and
renames it into place only when everything is there, so a crash never leaves an output that
looks complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from components import names
from components.errors import StageError


def resolve(storage_root: str, path: str) -> Path:
    """A path as given by the user: absolute as is, relative to the storage root otherwise."""
    p = Path(path)
    return p if p.is_absolute() else Path(storage_root) / p


def stage_dir(storage_root: str, run_id: str, stage: str) -> Path:
    """Where one stage of one run writes its bulk output on the volume."""
    safe_run = run_id.replace("/", "_") or "run"
    return Path(storage_root) / names.ARTIFACTS_DIR / safe_run / stage


@contextlib.contextmanager
def atomic_dir(final: Path, stage: str) -> Iterator[Path]:
    """Yield a scratch directory that becomes ``final`` only if the block succeeds.

    A rerun of the same task (a retry) replaces an earlier complete output whole.
    """
    final = Path(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StageError(stage, str(final.parent), f"cannot create output directory: {e}") from e
    scratch = final.parent / f".{final.name}.partial-{uuid.uuid4().hex[:8]}"
    scratch.mkdir()
    try:
        yield scratch
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    old = None
    if final.exists():
        old = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(final, old)
    os.rename(scratch, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_manifest(artifact_path: str, storage_path: Path, metadata: dict[str, Any]) -> None:
    """Write the KFP artifact's own content: a JSON pointer to the bulk data on the volume."""
    Path(artifact_path).parent.mkdir(parents=True, exist_ok=True)
    doc = {names.META_STORAGE_PATH: str(storage_path), **metadata}
    Path(artifact_path).write_text(json.dumps(doc, indent=2, sort_keys=True, default=str))


def storage_path_of(metadata: dict[str, Any], artifact_path: str, stage: str) -> Path:
    """Where an input artifact's bulk data lives: from its metadata, else from its manifest."""
    value = metadata.get(names.META_STORAGE_PATH)
    if not value:
        try:
            value = json.loads(Path(artifact_path).read_text())[names.META_STORAGE_PATH]
        except (OSError, ValueError, KeyError) as e:
            raise StageError(stage, artifact_path, f"input artifact has no storage path: {e}") from e
    path = Path(value)
    if not path.exists():
        raise StageError(stage, str(path), "input data is missing from the storage volume")
    return path
