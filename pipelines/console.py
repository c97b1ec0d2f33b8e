"""What a local run prints: one line per stage, a heartbeat, the verdict last.

By default a task's own output — library chatter, Keras epochs, Beam and TFMA notices — goes
to a log file per task (``kfp_local/<run id>/logs/<task>.log``), not to the console; lines a
stage marks as progress (``names.PROGRESS_PREFIX``, e.g. one per tuner trial) are relayed, and
a long stage says every ``HEARTBEAT_S`` seconds that it is still running. ``--verbose`` shows
everything as it happens.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from components import names

HEARTBEAT_S = 15.0


class TaskOutput:
    """Sends one in-process task's stdout/stderr (file descriptors 1 and 2) to a log file."""

    def __init__(self, say: Callable[[str], None] = print, heartbeat_s: float = HEARTBEAT_S) -> None:
        self._say = say
        self._heartbeat_s = heartbeat_s

    @contextlib.contextmanager
    def capture(self, task: str, log_path: Path) -> Iterator[None]:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        console = os.fdopen(os.dup(saved[0]), "w", buffering=1)
        stop = threading.Event()
        with open(log_path, "ab", buffering=0) as log:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            watcher = threading.Thread(target=self._watch, args=(task, log_path, console, stop), daemon=True)
            watcher.start()
            try:
                yield
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
                for fd in saved:
                    os.close(fd)
                stop.set()
                watcher.join()
                console.close()

    def _watch(self, task: str, log_path: Path, console: Any, stop: threading.Event) -> None:  # noqa: ANN401
        """Relay progress lines as they are written; a heartbeat while the task runs."""
        start = last = time.monotonic()
        offset = 0
        while True:
            stopping = stop.wait(0.5)
            with open(log_path, "rb") as fh:
                fh.seek(offset)
                chunk = fh.read()
            complete = chunk[: chunk.rfind(b"\n") + 1]
            offset += len(complete)
            for line in complete.decode(errors="replace").splitlines():
                if line.startswith(names.PROGRESS_PREFIX):
                    console.write(f"  {line}\n")
                    last = time.monotonic()
            if stopping:
                return
            if time.monotonic() - last >= self._heartbeat_s:
                console.write(f"  … {task} still running ({time.monotonic() - start:.0f} s)\n")
                last = time.monotonic()


def _figure(value: Any) -> str:  # noqa: ANN401
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.4g}"
    if isinstance(value, dict):
        return " / ".join(f"{k} {_figure(v)}" for k, v in value.items())
    return str(value)


def _meta(record: Any, output: str) -> dict[str, Any]:  # noqa: ANN401
    art = record.outputs.get(output)
    return dict(getattr(art, "metadata", {}) or {})


def _on_beam(meta: dict[str, Any]) -> str:
    """`` on Beam (PortableRunner, files per split train 4 / eval 2)`` when a stage took its Beam path."""
    if meta.get("method") != "beam":
        return ""
    files = meta.get("files_per_split")
    more = f", files per split {_figure(files)}" if isinstance(files, dict) else ""
    return f" on Beam ({meta.get('runner', '?')}{more})"


def stage_figures(record: Any) -> str:  # noqa: ANN401 (pipelines.local_runner.TaskRecord)
    """The few figures that say how a stage went, in words."""
    task = record.task.replace("-", "_")
    if task == names.STAGE_EXAMPLE_GEN:
        meta = _meta(record, "examples")
        return f"rows {_figure(meta.get(names.META_ROWS, {}))}{_on_beam(meta)}"
    if task in (names.STAGE_STATISTICS, names.STAGE_SCHEMA):
        out = "statistics" if task == names.STAGE_STATISTICS else "schema"
        meta = _meta(record, out)
        return f"{_figure(meta.get(names.META_FEATURES, '?'))} features{_on_beam(meta)}"
    if task == names.STAGE_VALIDATE:
        meta = _meta(record, "anomalies")
        anomalies = _figure(meta.get(names.META_ANOMALIES, "?"))
        return f"{meta.get(names.META_VERDICT, '?')}, {anomalies} anomalies"
    if task == names.STAGE_TRANSFORM:
        return f"rows {_figure(_meta(record, 'transformed_examples').get(names.META_ROWS, {}))}"
    if task == names.STAGE_TUNE:
        loss = _meta(record, "summary").get("best_val_loss")
        return f"best val_loss {_figure(loss)}" if loss is not None else "search off: the module's defaults"
    if task == names.STAGE_TRAIN:
        metrics = _meta(record, "metrics")
        if metrics.get("eval_accuracy") is not None:  # classification
            return f"eval accuracy {metrics['eval_accuracy']:.3f}"
        mae = metrics.get("eval_mae")
        return f"eval MAE {_figure(mae)}" if mae is not None else ""
    if task == names.STAGE_RESOLVE:
        meta = _meta(record, "baseline")
        return f"baseline version {_figure(meta.get('version'))}" if meta.get("found") else "no baseline"
    if task == names.STAGE_EVALUATE:
        meta = _meta(record, "blessing")
        accuracy = _meta(record, "evaluation").get("accuracy")  # classification: the gated metric
        figure = f"accuracy {accuracy:.3f}" if accuracy is not None else f"MAE {_figure(meta.get('mae'))}"
        return f"{meta.get(names.META_VERDICT, '?')}, {figure}"
    if task == names.STAGE_PUSH:
        meta = _meta(record, "pushed_model")
        return f"version {_figure(meta.get('version'))}" if meta.get("pushed") else "nothing pushed"
    return ""


def describe_outputs(record: Any) -> list[str]:  # noqa: ANN401
    """Where each output of a finished task went (``--verbose``)."""
    lines = []
    for key, art in record.outputs.items():
        meta = getattr(art, "metadata", {}) or {}
        lines.append(f"    {key}: {meta.get(names.META_STORAGE_PATH) or getattr(art, 'path', art)}")
    return lines


def stage_line(record: Any) -> str:  # noqa: ANN401
    """``✔ transform   5.7 s   806 MB  rows eval 450 / train 888``: time, peak memory, figures."""
    mark = "✔" if record.status == "SUCCESS" else "✗"
    figures = stage_figures(record) if record.status == "SUCCESS" else "FAILED"
    return (
        f"{mark} {record.task:<17}{record.seconds:>6.1f} s{record.peak_rss_mb:>6.0f} MB  {figures}".rstrip()
    )


def summary_table(run: Any, verdict: str) -> str:  # noqa: ANN401 (pipelines.local_runner.LocalRun)
    """The run's total in one line (each stage's time and memory are on its own line above)."""
    peak = max((t.peak_rss_mb for t in run.tasks), default=0.0)
    done = sum(t.status == "SUCCESS" for t in run.tasks)
    return f"total {run.seconds:.1f} s, peak {peak:.0f} MB, {done}/{len(run.tasks)} stages: {verdict}"


def outcome(run: Any, storage: Path, model_name: str) -> tuple[str, list[str]]:  # noqa: ANN401
    """(the total's one word, the closing lines): the verdict, the reports, TensorBoard."""
    tasks = {t.task.replace("-", "_"): t for t in run.tasks}
    if not run.succeeded:
        failed = run.failed_task
        return "FAILED", [f"FAILED: {failed.error}" if failed else "FAILED"]
    blessing = _meta(tasks[names.STAGE_EVALUATE], "blessing") if names.STAGE_EVALUATE in tasks else {}
    pushed = _meta(tasks[names.STAGE_PUSH], "pushed_model") if names.STAGE_PUSH in tasks else {}
    reasons = blessing.get("reasons") or []
    if isinstance(reasons, dict):  # through ML Metadata a list comes back as {"list": [...]}
        reasons = reasons.get("list", [])
    if pushed.get("pushed"):
        where = pushed.get("serving_path") or pushed.get(names.META_STORAGE_PATH) or ""
        lines = [f"BLESSED, pushed {model_name} v{_figure(pushed.get('version'))} → {where}".rstrip(" →")]
        word = "BLESSED"
    elif blessing.get(names.META_VERDICT) == names.BLESSED and pushed.get("reason"):
        lines = [f"BLESSED, NOT pushed: {pushed['reason']}"]  # e.g. the baseline changed meanwhile
        word = "NOT PUSHED"
    else:
        why = "; ".join(str(r) for r in reasons) or "see the evaluation report"
        lines = [f"NOT BLESSED: {why}; nothing pushed"]
        word = "NOT BLESSED"
    reports = []
    for task in (names.STAGE_STATISTICS, names.STAGE_VALIDATE, names.STAGE_EVALUATE):
        meta = _meta(tasks[task], "report") if task in tasks else {}
        path = on_host(meta.get(names.META_STORAGE_PATH), storage)
        if path and path.exists():
            reports.append(f"report {task:<11}{path}")
    lines += reports
    train = tasks.get(names.STAGE_TRAIN)
    logs = on_host(_meta(train, "tensorboard").get(names.META_STORAGE_PATH), storage) if train else None
    if logs:
        # The run's folder: train's curves (train/logs) and the tuner's trials (tune/logs, HPARAMS tab).
        run_dir = logs.parent.parent if logs.parent.name == names.STAGE_TRAIN else logs
        lines.append(f"TensorBoard: {Path(sys.executable).parent / 'tensorboard'} --logdir {run_dir}")
    return word, lines


def on_host(path: Any, storage: Path) -> Path | None:  # noqa: ANN401
    """A volume path as this machine sees it.

    ``--runner backend`` pods mount the storage at the mount path (``/mnt/kubetfx``), which is
    the storage folder here.
    """
    if not path:
        return None
    p = Path(str(path))
    mount = Path(names.DEFAULT_MOUNT_PATH)
    if not p.exists() and p.is_relative_to(mount):
        return Path(storage) / p.relative_to(mount)
    return p
