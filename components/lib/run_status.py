"""Every task's status on the volume: started, then succeeded or failed with its one line.

Why on the volume and not from the backend: the exit handler (``finalize``) must say how the run
ended on KFP 2.5 too, whose API server refuses ``PipelineTaskFinalStatus`` at run creation; the
volume is the one thing every task and the exit task share on every backend and locally.

``recorded(storage_root, run_id, task)`` wraps a component's whole body (``components.component``
puts it there, so no stage can forget it). It writes
``run_status/<run id>/<task>.json`` on the storage root (``names.RUN_STATUS_DIR``; beside, not
inside, ``artifacts/<run id>/``, which holds only the stages' outputs)::

    {"task": "train", "state": "started", "host": ..., "pid": ..., "started": <unix time>}

and on the way out ``state`` becomes ``succeeded`` or ``failed`` with ``error``: the StageError's
message (``[stage] file: problem``), or ``[task] unexpected error: Type: message`` for anything
else. A record still ``started`` after the run is a task that was killed (out of memory, evicted,
the run terminated): nothing else leaves it so. A retry writes ``started`` again; a task the
backend serves from its cache runs no code and leaves no record. Writing the record never
fails a stage: a volume that refuses it is one warning line in the task's log.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from components import names
from components.errors import StageError

STARTED, SUCCEEDED, FAILED = "started", "succeeded", "failed"
MAX_ERROR_CHARS = 300


def status_dir(storage_root: str | Path, run_id: str) -> Path:
    """The folder of a run's status records (the run id made safe as ``storage.stage_dir`` does)."""
    safe_run = run_id.replace("/", "_") or "run"
    return Path(storage_root) / names.RUN_STATUS_DIR / safe_run


def error_line(task: str, error: BaseException) -> str:
    """The one line a failed task leaves: a StageError's own, else ``[task] unexpected error: ...``."""
    if isinstance(error, StageError):
        text = str(error)
    else:
        text = f"[{task}] unexpected error: {type(error).__name__}: {' '.join(str(error).split())}"
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."


def write(storage_root: str | Path, run_id: str, task: str, record: dict[str, Any]) -> None:
    """Replace one task's record atomically (a reader sees the old or the new one, never half)."""
    folder = status_dir(storage_root, run_id)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{task}.{uuid.uuid4().hex[:8]}.tmp"
    tmp.write_text(json.dumps({"task": task, **record}, sort_keys=True))
    os.replace(tmp, folder / f"{task}.json")


def _try_write(storage_root: str | Path, run_id: str, task: str, record: dict[str, Any]) -> None:
    try:
        write(storage_root, run_id, task, record)
    except OSError as e:  # the record is for the exit handler; the stage's work goes on
        print(f"warning: [{task}] could not write its status record: {e}", flush=True)


@contextlib.contextmanager
def recorded(storage_root: str, run_id: str, task: str) -> Iterator[None]:
    """Record ``started`` now and ``succeeded``/``failed`` when the block ends (see the module)."""
    if not run_id or not storage_root or not Path(storage_root).is_dir():
        yield  # a stage called outside a run (a test, a notebook): no root of a run to record on
        return
    base = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}
    _try_write(storage_root, run_id, task, {**base, "state": STARTED})
    try:
        yield
    except BaseException as e:
        failed = {**base, "state": FAILED, "ended": time.time(), "error": error_line(task, e)}
        _try_write(storage_root, run_id, task, failed)
        raise
    _try_write(storage_root, run_id, task, {**base, "state": SUCCEEDED, "ended": time.time()})


def read_all(storage_root: str | Path, run_id: str) -> dict[str, dict[str, Any]]:
    """Every task's record of a run, by task; an unreadable record counts as one that never ended."""
    folder = status_dir(storage_root, run_id)
    records: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            record = {"state": STARTED, "unreadable": True}
        records[path.stem] = record if isinstance(record, dict) else {"state": STARTED, "unreadable": True}
    return records
