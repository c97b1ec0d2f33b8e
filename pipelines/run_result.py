"""What a run on this machine returns, and a failed task's one line — shared by both runners.

The in-process runner (``pipelines.local.inprocess``) and the backend emulator
(``pipelines.backend.runner``) return the same ``LocalRun`` of ``TaskRecord``s and turn a task's
failure into the same one line, so ``submit.py`` and the console treat them alike.
"""

from __future__ import annotations

import dataclasses
import traceback
from pathlib import Path
from typing import Any


@dataclasses.dataclass
class TaskRecord:
    """What one task did: timing, memory, status, inputs and outputs."""

    task: str
    component: str
    status: str = "PENDING"
    seconds: float = 0.0
    peak_rss_mb: float = 0.0
    error: str = ""
    outputs: dict[str, Any] = dataclasses.field(default_factory=dict)
    executor_input: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class LocalRun:
    """The result of a local run."""

    run_id: str
    pipeline_root: Path
    tasks: list[TaskRecord]
    seconds: float
    succeeded: bool

    @property
    def failed_task(self) -> TaskRecord | None:
        return next((t for t in self.tasks if t.status == "FAILURE"), None)


def unexpected_error_line(task: str, error: BaseException, log_path: Path) -> str:
    """One line for an error that is not a StageError; its full traceback appended to ``log_path``.

    ``[task] unexpected error: Type: message (traceback: <log path>)`` — the message's first
    line, cut to ~200 characters; without a writable log the line says so instead.
    """
    text = " ".join(str(error).split())
    text = text if len(text) <= 200 else text[:197] + "..."
    head = f"[{task}] unexpected error: {type(error).__name__}: {text}"
    problem = _append_traceback(error, log_path)
    return f"{head} (traceback not written: {problem})" if problem else f"{head} (traceback: {log_path})"


def _append_traceback(error: BaseException, log_path: Path) -> str:
    """Append ``error``'s full traceback to ``log_path``: "" when written, else why not."""
    try:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "a") as fh:
            fh.write("".join(traceback.format_exception(error)))
    except OSError as e:
        return f"{type(e).__name__}: {e.strerror or e}"
    return ""


_STAGE_ERROR_PREFIX = "components.errors.StageError: "


def _stage_error_line(lines: list[str]) -> str | None:
    """The message of the StageError a child process died of (its traceback's last line)."""
    for line in reversed(lines):
        if line.startswith(_STAGE_ERROR_PREFIX):
            return line[len(_STAGE_ERROR_PREFIX) :]
    return None
