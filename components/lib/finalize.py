"""Finalize (the exit handler): how the run ended, in the registry's run log; the run's scratch removed.

Why an exit task and not the last stage: it runs after the ten stages however they ended — a
failed validation, a killed train — so every run leaves one record of its outcome. It reads the
status records every task leaves on the volume (``run_status``), not KFP's
``PipelineTaskFinalStatus``, which the KFP 2.5 API server refuses at run creation.

The outcome: ``succeeded`` when the last stage (push) succeeded and no task failed; else
``failed`` with the failing task and its one line (the earliest to fail), a task that started
and never ended named as killed, or the stages that never ran (no record at all: a pod that
did not start, or an input the backend's driver could not resolve). It goes to the registry's run
log (``run_log``) and to the finalize task's ``outcome`` artifact (KFP's ML Metadata on a
cluster, the local lineage store locally: the run's context holds it either way).

Scratch: what the run's stages leave when killed — ``artifacts/<run id>/.<dir>.partial-*`` and
``.old-*`` (``storage.atomic_dir``), and the same one level down (a trial group's
``tune_trials/.group-<g>.partial-*``). Every task of the run has ended when finalize runs, so
these are removed whoever wrote them (an ``.old-*`` whose final directory is missing is the last
complete output and is put back). Nothing else is touched: stage directories, status records,
and everything lineage or the registry names stay.

Finalize never fails the run: each of its own errors is one warning line.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from components import names
from components.lib import registry_lock, run_log, run_status, storage

STAGE = names.STAGE_FINALIZE
SUCCEEDED, FAILED = "succeeded", "failed"
_SCRATCH = re.compile(r"^\.(?P<final>.+)\.(?P<kind>partial|old)-")  # storage.atomic_dir's names


def outcome(records: dict[str, dict[str, Any]], last_task: str = names.STAGE_PUSH) -> dict[str, Any]:
    """The run's outcome from its tasks' status records (see the module); ``last_task``: the final stage."""
    states = {task: r.get("state", run_status.STARTED) for task, r in records.items()}
    failed = sorted(
        (r.get("ended", 0.0), task) for task, r in records.items() if r.get("state") == run_status.FAILED
    )
    killed = sorted(task for task, state in states.items() if state == run_status.STARTED)
    result: dict[str, Any] = {"tasks": states}
    if failed:
        task = failed[0][1]
        return {**result, "outcome": FAILED, "failed_task": task, "error": records[task].get("error", "")}
    if killed:
        task = killed[0]
        host = records[task].get("host", "?")
        why = "killed (out of memory, evicted or the run stopped)"
        error = f"[{task}] started on {host} and never finished: {why}"
        return {**result, "outcome": FAILED, "failed_task": task, "error": error}
    if states.get(last_task) != run_status.SUCCEEDED:
        # Tune compiled as trial groups: its fan-in, tune_best, stands for it.
        grouped = any(t == names.STAGE_TUNE_BEST or t.startswith(names.STAGE_TUNE_TRIALS) for t in states)
        stages: tuple[str, ...] = names.STAGES if last_task == names.STAGE_PUSH else (last_task,)
        stages = tuple(names.STAGE_TUNE_BEST if grouped and s == names.STAGE_TUNE else s for s in stages)
        missing = [s for s in stages if s not in states]
        why = "their pods did not start, or the backend's driver refused them"
        error = f"[{STAGE}] these stages never ran ({why}): {', '.join(missing) or last_task}"
        return {
            **result,
            "outcome": FAILED,
            "failed_task": missing[0] if missing else last_task,
            "error": error,
        }
    return {**result, "outcome": SUCCEEDED}


def remove_scratch(storage_root: str | Path, run_id: str) -> list[str]:
    """Remove the run's ``.partial-*``/``.old-*`` directories (see the module); one line each."""
    run_dir = storage.stage_dir(str(storage_root), run_id, "")
    said: list[str] = []
    top = sorted(run_dir.iterdir()) if run_dir.is_dir() else []
    # A stage's own directories (tune_trials/group-<g>) are one level down.
    below = [p for d in top if d.is_dir() and not _SCRATCH.match(d.name) for p in sorted(d.iterdir())]
    for path in top + below:
        match = _SCRATCH.match(path.name)
        if not match:
            continue
        final = path.parent / match["final"]
        if match["kind"] == "old" and not final.exists():
            os.rename(path, final)
            said.append(f"{final}: restored from {path.name}")
            continue
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
        said.append(f"{path}: removed")
    return said


def _guarded(what: str, call: Callable[[], Any], warn: Callable[[str], None]) -> Any:  # noqa: ANN401
    """``call()``, or None and one warning line: finalize's own errors never fail the run."""
    try:
        return call()
    except Exception as e:  # noqa: BLE001 (see the docstring)
        warn(f"warning: [{STAGE}] could not {what}: {' '.join(str(e).split())[:300]}")
        return None


def finalize(
    storage_root: str,
    run_id: str,
    lock_timeout: float,
    warn: Callable[[str], None] = lambda line: print(line, flush=True),
    last_task: str = names.STAGE_PUSH,
) -> dict[str, Any]:
    """Read the run's status records, remove its scratch, record the outcome; returns the record."""
    read = lambda: run_status.read_all(storage_root, run_id)  # noqa: E731
    records = _guarded("read the tasks' status records", read, warn)
    record: dict[str, Any] = {
        "run_id": run_id,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **outcome(records or {}, last_task),
    }
    removed = _guarded("remove the run's scratch", lambda: remove_scratch(storage_root, run_id), warn)
    record["scratch_removed"] = len(removed or [])
    for line in removed or []:
        print(f"[{STAGE}] {line}", flush=True)
    request = registry_lock.Request(run_id, lock_timeout)
    logged = _guarded(
        "record the outcome in the registry's run log",
        lambda: run_log.record_run(storage_root, record, STAGE, request),
        warn,
    )
    record["run_log"] = str(logged) if logged else ""
    return record
