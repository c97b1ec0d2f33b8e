"""The registry's run log: one JSON line per finished run, its outcome (``registry/runs.jsonl``).

Why beside the index: the registry says what each pushed version came from; the run log says how
every run ended, pushed or not — the failing task and its one line, or that a task was killed —
where the same readers look, with no metadata service (``finalize`` writes it, ``read`` reads it).

Same discipline as the index (``registry``): written only under the registry's lock
(``registry.locked``), replaced atomically (temp file, fsync, ``os.replace``), one record per run
id (a finalize that runs again for the same run replaces its line). A line is::

    {"run_id": ..., "outcome": "succeeded" | "failed", "failed_task": ..., "error": ...,
     "tasks": {"train": "succeeded", ...}, "time": "2026-12-06T01:00:00Z", "scratch_removed": 2}

(``failed_task`` and ``error`` only on a failed run.) A line that is not JSON (a volume that tore
a write) is kept as it is and skipped by ``read``: the log is evidence, never rewritten away.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

from components import names
from components.lib import registry, registry_lock


def path_of(storage_root: str | Path) -> Path:
    """Where a storage root's run log is."""
    return Path(storage_root) / names.RUN_LOG


def _parse(line: str) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def read(storage_root: str | Path) -> list[dict[str, Any]]:
    """Every readable record, oldest first ([] when no run has finalized)."""
    try:
        lines = path_of(storage_root).read_text().splitlines()
    except FileNotFoundError:
        return []
    return [r for r in (_parse(line) for line in lines if line.strip()) if r is not None]


def record_run(
    storage_root: str | Path, record: dict[str, Any], stage: str, lock: registry_lock.Request | None = None
) -> Path:
    """Add (or replace) ``record``'s run under the registry lock; returns the log's path."""
    path = path_of(storage_root)
    with registry.locked(storage_root, stage, None, lock):
        try:
            lines = path.read_text().splitlines()
        except FileNotFoundError:
            lines = []
        others = [line for line in lines if line.strip()]
        kept = [line for line in others if (_parse(line) or {}).get("run_id") != record["run_id"]]
        text = "\n".join([*kept, json.dumps(record, sort_keys=True)]) + "\n"
        tmp = path.parent / f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return path
