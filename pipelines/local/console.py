"""What a local run prints: one line per stage, a heartbeat, the verdict last.

By default a task's own output — library chatter, Keras epochs, Beam and TFMA notices — goes
to a log file per task (``kfp_local/<run id>/logs/<task>.log``), not to the console; lines a
stage marks as progress (``names.PROGRESS_PREFIX``, e.g. one per tuner trial) are relayed, and
a long stage says every ``HEARTBEAT_S`` seconds that it is still running. ``--verbose`` shows
everything as it happens.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shlex
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
        """Relay progress lines as they are written; a heartbeat (with progress) while the task runs."""
        start = last = time.monotonic()
        offset = 0
        progress = Progress(start)
        while True:
            stopping = stop.wait(0.5)
            with open(log_path, "rb") as fh:
                fh.seek(offset)
                chunk = fh.read()
            complete = chunk[: chunk.rfind(b"\n") + 1]
            offset += len(complete)
            for line in complete.decode(errors="replace").splitlines():
                progress.see(line, time.monotonic())
                if line.startswith(names.PROGRESS_PREFIX):
                    console.write(f"  {line}\n")
                    last = time.monotonic()
            if stopping:
                return
            if time.monotonic() - last >= self._heartbeat_s:
                now = time.monotonic()
                console.write(
                    f"  … {names.stage_of(task)} still running ({now - start:.0f} s{progress.says(now)})\n"
                )
                last = now


_EPOCH = re.compile(r"^Epoch (\d+)/(\d+)\s*$")
_TRIAL = re.compile(r"trial (\d+)/(\d+)\b")


class Progress:
    """Where a long stage is, read from its log: Keras' ``Epoch i/N`` and the tuner's ``trial i/N``.

    The time left is extrapolated from the pace so far: for epochs an upper bound (early stopping
    may end the fit before the cap), for trials an estimate (a trial ends before its line is written).
    """

    def __init__(self, start: float) -> None:
        self.start = start
        self.epoch: tuple[int, int, float] | None = None  # (i, N, when its line was seen)
        self.first_epoch: tuple[int, float] | None = None
        self.trial: tuple[int, int, float] | None = None  # (trials done, N, when)

    def see(self, line: str, now: float) -> None:
        if m := _EPOCH.match(line.strip()):
            i, n = int(m[1]), int(m[2])
            if self.first_epoch is None or i < self.first_epoch[0]:  # a new fit (the tuner's trials)
                self.first_epoch = (i, now)
            self.epoch = (i, n, now)
        elif line.startswith(names.PROGRESS_PREFIX) and (m := _TRIAL.search(line)):
            self.trial = (int(m[1]), int(m[2]), now)
            self.first_epoch = self.epoch = None

    def says(self, now: float) -> str:
        """``; epoch 3/40, at most ~1 min left`` or ``; trial 2/4 done, about 30 s left`` or ``""``."""
        parts = []
        if self.trial is not None:
            done, total, _ = self.trial
            per_trial = (now - self.start) / max(done, 1)
            left = f", about {_duration(per_trial * (total - done))} left" if done < total else ""
            parts.append(f"trial {done}/{total} done{left}")
        elif self.epoch is not None and self.first_epoch is not None:
            i, total, _ = self.epoch
            first, t0 = self.first_epoch
            if i > first:
                per_epoch = (now - t0) / (i - first)
                parts.append(f"epoch {i}/{total}, at most ~{_duration(per_epoch * (total - i + 1))} left")
            else:
                parts.append(f"epoch {i}/{total}")
        return "; " + ", ".join(parts) if parts else ""


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(seconds, 1):.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _figure(value: Any) -> str:  # noqa: ANN401
    """3-4 significant digits, as the reports print them (``html.fmt_num``): 1,530, 123.5, 2.19."""
    if isinstance(value, float):
        from components.lib.html import fmt_num

        return fmt_num(value) if math.isfinite(value) else str(value)
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


def stage_figures(record: Any) -> str:  # noqa: ANN401 (pipelines.run_result.TaskRecord)
    """The few figures that say how a stage went, in words."""
    task = names.stage_of(record.task)
    if task == names.STAGE_EXAMPLE_GEN:
        meta = _meta(record, "examples")
        return f"rows {_figure(meta.get(names.META_ROWS, {}))}{_on_beam(meta)}"
    if task in (names.STAGE_STATISTICS, names.STAGE_SCHEMA):
        out = "statistics" if task == names.STAGE_STATISTICS else "schema"
        meta = _meta(record, out)
        return f"{_figure(meta.get(names.META_FEATURES, '?'))} features{_on_beam(meta)}"
    if task == names.STAGE_VALIDATE:
        return _validate_figures(_meta(record, "anomalies"))
    if task == names.STAGE_TRANSFORM:
        return f"rows {_figure(_meta(record, 'transformed_examples').get(names.META_ROWS, {}))}"
    if task in (names.STAGE_TUNE, names.STAGE_TUNE_BEST):
        loss = _meta(record, "summary").get("best_val_loss")
        return f"best val_loss {_figure(loss)}" if loss is not None else "search off: the module's defaults"
    if task.startswith(names.STAGE_TUNE_TRIALS):  # tune_trials[1] (ParallelFor), tune_trials_2 (unrolled)
        return _group_figures(record)
    if task == names.STAGE_FINALIZE:
        meta = _meta(record, "outcome")
        said = f"run {meta.get('outcome', '?')}" + (
            f" at {meta['failed_task']}" if meta.get("failed_task") else ""
        )
        return said + (
            f", {meta['scratch_removed']} scratch dirs removed" if meta.get("scratch_removed") else ""
        )
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


def _validate_figures(meta: dict[str, Any]) -> str:
    """``no anomalies`` or ``2 anomalies: bmi, age`` (the first three named; all are in the report)."""
    count = meta.get(names.META_ANOMALIES)
    if count is None:
        return str(meta.get(names.META_VERDICT, "?"))
    count = int(count)
    if count == 0:
        return "no anomalies"
    features = meta.get("anomalous_features") or []
    if isinstance(features, dict):  # through ML Metadata a list comes back as {"list": [...]}
        features = features.get("list", [])
    shown = ", ".join(str(f) for f in features[:3]) + (", …" if len(features) > 3 else "")
    return f"{count} anomal{'y' if count == 1 else 'ies'}" + (f": {shown}" if shown else "")


def describe_outputs(record: Any) -> list[str]:  # noqa: ANN401
    """Where each output of a finished task went (``--verbose``)."""
    lines = []
    for key, art in record.outputs.items():
        meta = getattr(art, "metadata", {}) or {}
        lines.append(f"    {key}: {meta.get(names.META_STORAGE_PATH) or getattr(art, 'path', art)}")
    return lines


def _group_figures(record: Any) -> str:  # noqa: ANN401
    """A trial group's trials and its best val_loss, from the JSON it returned."""
    import json

    try:
        trials = json.loads(record.outputs.get("Output") or "{}").get("trials", [])
    except (TypeError, ValueError):
        return ""
    losses = [t["val_loss"] for t in trials if t.get("val_loss") is not None]
    best = f", best val_loss {_figure(min(losses))}" if losses else ""
    return f"trials {', '.join(str(t['index']) for t in trials) or 'none'}{best}"


def task_label(record: Any) -> str:  # noqa: ANN401
    """A task's name on the console: the stage's; a trial group's is ``tune_trials 2/3`` (its group, 1-based).

    A trial group's KFP task name does not say which group it is (a ParallelFor iteration
    ``tune-trials[1]``, an unrolled ``tune-trials-2``): its ``group`` and ``groups`` inputs do.
    """
    stage = names.stage_of(record.task)
    if not stage.startswith(names.STAGE_TUNE_TRIALS):
        return stage
    values = (record.executor_input.get("inputs") or {}).get("parameterValues") or {}
    if "group" not in values or "groups" not in values:
        return stage
    return f"{names.STAGE_TUNE_TRIALS} {int(values['group']) + 1}/{int(values['groups'])}"


def stage_line(record: Any) -> str:  # noqa: ANN401
    """``✔ transform   5.7 s   806 MB  rows eval 450 / train 888``: time, peak memory, figures."""
    mark = "✔" if record.status == "SUCCESS" else "✗"
    figures = stage_figures(record) if record.status == "SUCCESS" else "FAILED"
    stage = task_label(record)
    return f"{mark} {stage:<17}{record.seconds:>6.1f} s{record.peak_rss_mb:>6.0f} MB  {figures}".rstrip()


def summary_table(run: Any, verdict: str) -> str:  # noqa: ANN401 (pipelines.run_result.LocalRun)
    """The run's total in one line (each stage's time and memory are on its own line above)."""
    peak = max((t.peak_rss_mb for t in run.tasks), default=0.0)
    done = sum(t.status == "SUCCESS" for t in run.tasks)
    return f"total {run.seconds:.1f} s, peak {peak:.0f} MB, {done}/{len(run.tasks)} stages: {verdict}"


def outcome(run: Any, storage: Path, model_name: str) -> tuple[str, list[str]]:  # noqa: ANN401
    """(the total's one word, the closing lines): the verdict, the reports, schema, TensorBoard.

    The word is the blessing's own (``BLESSED``/``NOT_BLESSED``, as in the registry and lineage),
    ``NOT_PUSHED`` (blessed but refused at push) or ``FAILED``. Paths are this machine's, also
    for ``--runner backend`` (whose pods see the volume at the mount path).
    """
    tasks = {names.stage_of(t.task): t for t in run.tasks}
    if not run.succeeded:
        failed = run.failed_task
        return "FAILED", [f"FAILED: {failed.error}" if failed else "FAILED"]
    blessing = _meta(tasks[names.STAGE_EVALUATE], "blessing") if names.STAGE_EVALUATE in tasks else {}
    pushed = _meta(tasks[names.STAGE_PUSH], "pushed_model") if names.STAGE_PUSH in tasks else {}
    reasons = blessing.get("reasons") or []
    if isinstance(reasons, dict):  # through ML Metadata a list comes back as {"list": [...]}
        reasons = reasons.get("list", [])
    if pushed.get("pushed"):
        where = on_host(pushed.get("serving_path") or pushed.get(names.META_STORAGE_PATH), storage) or ""
        lines = [
            f"{names.BLESSED}, pushed {model_name} v{_figure(pushed.get('version'))} → {where}".rstrip(" →")
        ]
        lines += _same_as_baseline(tasks, storage, where)
        word = names.BLESSED
    elif blessing.get(names.META_VERDICT) == names.BLESSED and pushed.get("reason"):
        lines = [f"{names.BLESSED}, NOT pushed: {pushed['reason']}"]  # e.g. the baseline changed meanwhile
        word = "NOT_PUSHED"
    else:
        why = "; ".join(str(r) for r in reasons) or "see the evaluation report"
        lines = [f"{names.NOT_BLESSED}: {why}; nothing pushed"]
        word = names.NOT_BLESSED
    return word, lines + _where_outputs_went(tasks, storage)


def _where_outputs_went(tasks: dict[str, Any], storage: Path) -> list[str]:
    """The reports, the schema file (to reuse as ``schema_file``) and a TensorBoard command."""
    lines = []
    for task in (names.STAGE_STATISTICS, names.STAGE_VALIDATE, names.STAGE_EVALUATE):
        meta = _meta(tasks[task], "report") if task in tasks else {}
        path = on_host(meta.get(names.META_STORAGE_PATH), storage)
        if path and path.exists():
            lines.append(f"report {task:<11}{path}")
    schema_meta = _meta(tasks[names.STAGE_SCHEMA], "schema") if names.STAGE_SCHEMA in tasks else {}
    schema = on_host(schema_meta.get(names.META_STORAGE_PATH), storage)
    if schema and schema.exists():
        lines.append(f"schema {'':<11}{schema}  (reuse: schema_file={_relative(schema, storage)})")
    train = tasks.get(names.STAGE_TRAIN)
    logs = on_host(_meta(train, "tensorboard").get(names.META_STORAGE_PATH), storage) if train else None
    if logs:
        # The run's folder: train's curves (train/logs) and the tuner's trials (tune/logs, HPARAMS tab).
        run_dir = logs.parent.parent if logs.parent.name == names.STAGE_TRAIN else logs
        tensorboard = Path(sys.executable).parent / "tensorboard"
        lines.append(f"TensorBoard: {shlex.join([str(tensorboard), '--logdir', str(run_dir)])}")
    return lines


def _relative(path: Path, storage: Path) -> str:
    """``path`` relative to the storage root when it is under it (what ``schema_file`` takes)."""
    try:
        return shlex.quote(str(path.resolve().relative_to(Path(storage).resolve())))
    except ValueError:
        return shlex.quote(str(path))


def _same_as_baseline(tasks: dict[str, Any], storage: Path, pushed_dir: Any) -> list[str]:  # noqa: ANN401
    """A word when the pushed candidate repeats its baseline: the same data, maybe the same weights."""
    from components.lib import saved_model

    baseline = _meta(tasks[names.STAGE_RESOLVE], "baseline") if names.STAGE_RESOLVE in tasks else {}
    examples = _meta(tasks[names.STAGE_EXAMPLE_GEN], "examples") if names.STAGE_EXAMPLE_GEN in tasks else {}
    data = examples.get(names.META_FINGERPRINT)
    if not baseline.get("found") or not data or data != baseline.get(names.META_FINGERPRINT):
        return []
    version = _figure(baseline.get("version"))
    old = on_host(baseline.get(names.META_MODEL_PATH), storage)
    mine = saved_model.read_manifest(pushed_dir) if pushed_dir else None
    theirs = saved_model.read_manifest(old) if old else None
    weights = {k: v for k, v in (mine or {}).items() if k.startswith("variables/")}
    if weights and weights == {k: v for k, v in (theirs or {}).items() if k.startswith("variables/")}:
        return [
            f"note: the candidate is identical to the baseline v{version} (the same data, the same weights)"
        ]
    return [
        f"note: the candidate was trained on the same data as the baseline v{version} (fingerprint {data})"
    ]


def on_host(path: Any, storage: Path) -> Path | None:  # noqa: ANN401
    """A volume path as this machine sees it.

    ``--runner backend`` pods mount the storage at the mount path (``/mnt/kubetfx``), which is
    the storage folder here.
    """
    if not path:
        return None
    p = Path(str(path))
    if not p.is_absolute():  # recorded relative to the storage root
        return Path(storage) / p
    mount = Path(names.DEFAULT_MOUNT_PATH)
    if not p.exists() and p.is_relative_to(mount):
        return Path(storage) / p.relative_to(mount)
    return p
