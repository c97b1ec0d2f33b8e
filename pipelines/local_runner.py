"""Run the compiled pipeline in this process, without a cluster (the fast local mode).

The runner executes the *compiled* pipeline spec — the same YAML that is uploaded to Kubeflow
Pipelines — with KFP's own local machinery (``kfp.local``'s task-argument wiring, executor
input construction, placeholder resolution and output collection) and KFP's own
``Executor``; each task's embedded component source runs in this process, so TensorFlow,
TFDV, TFT and TFMA are imported once for the whole run instead of once per stage (~7-10 s
each on a 2-core machine).

That is not how a cluster runs it: kfp.local links tasks by DAG key, passes artifacts as
local paths, skips ML Metadata and imports the project from the checkout. The run mode that
mirrors the KFP backend is ``pipelines.kfp_backend``. kfp-kubernetes settings (volume,
resources) do not apply here: the storage root is a folder given by the caller.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import threading
import time
import traceback
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from components import names
from components.errors import StageError


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


class _PeakRss:
    """Samples the resident memory of this process (and any children) to find one task's peak."""

    def __init__(self, interval: float = 0.05) -> None:
        self._interval = interval
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    @staticmethod
    def _rss_kb(pid: int) -> int:
        try:
            with open(f"/proc/{pid}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except (OSError, ValueError):
            pass
        return 0

    @staticmethod
    def _children(pid: int) -> list[int]:
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as fh:
                return [int(c) for c in fh.read().split()]
        except (OSError, ValueError):
            return []

    def _sample(self) -> None:
        total, todo = 0, [os.getpid()]
        while todo:
            pid = todo.pop()
            total += self._rss_kb(pid)
            if pid != os.getpid():  # in-process: threads, not children, do the work
                todo.extend(self._children(pid))
        self.peak_kb = max(self.peak_kb, total)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self._sample()

    def __enter__(self) -> _PeakRss:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._sample()
        self._stop.set()
        self._thread.join()


def load_pipeline_spec(yaml_path: Path):  # noqa: ANN201 (pipeline_spec_pb2.PipelineSpec)
    """Parse a compiled pipeline YAML strictly into KFP's PipelineSpec proto."""
    import yaml
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    docs = list(yaml.safe_load_all(Path(yaml_path).read_text()))
    spec = pipeline_spec_pb2.PipelineSpec()
    json_format.ParseDict(docs[0], spec)  # strict: unknown fields raise
    return spec


def _split_command(full_command: list[str]) -> tuple[str, str, dict[str, Any]]:
    """(component source, function name, executor input) from a resolved lightweight command."""
    if full_command[:2] != ["sh", "-ec"] or "--function_to_execute" not in full_command:
        raise RuntimeError(f"not a lightweight Python component command: {full_command[:3]}")
    source = full_command[3]
    func = full_command[full_command.index("--function_to_execute") + 1]
    executor_input = json.loads(full_command[full_command.index("--executor_input") + 1])
    return source, func, executor_input


def _execute_in_process(full_command: list[str], task_root: str) -> None:
    """Run a component exactly as ``kfp.dsl.executor_main`` would, but in this process."""
    from kfp.dsl import executor as kfp_executor

    source, func_name, executor_input = _split_command(full_command)
    module_path = Path(task_root) / "ephemeral_component.py"
    module_path.parent.mkdir(parents=True, exist_ok=True)
    module_path.write_text(source)
    module = types.ModuleType(f"kubetfx_task_{func_name}")
    module.__file__ = str(module_path)
    # dont_inherit: this file's `from __future__ import annotations` must not turn the
    # component's annotations into strings, which the Executor would not recognise.
    code = compile(source, str(module_path), "exec", dont_inherit=True)
    exec(code, module.__dict__)  # noqa: S102 (the compiled component itself)
    kfp_executor.Executor(
        executor_input=executor_input, function_to_execute=getattr(module, func_name)
    ).execute()


def run_pipeline_spec(
    spec: Any,
    arguments: dict[str, Any],
    pipeline_root: Path,
    *,
    run_id: str,
    on_task_end: Callable[[TaskRecord], None] | None = None,
    log: Callable[[str], None] = print,
    quiet: Any = None,  # pipelines.console.TaskOutput: each task's own output to a log file
) -> LocalRun:
    """Execute every task of a compiled pipeline spec in dependency order.

    Stops at the first failing task. ``on_task_end`` sees every finished task (the lineage
    recorder and the progress printer hook in there).
    """
    from kfp.local import (
        dag_orchestrator,
        executor_input_utils,
        executor_output_utils,
        graph_utils,
        io,
        placeholder_utils,
    )

    root_spec = spec.root
    pipeline_name = spec.pipeline_info.name
    unknown = set(arguments) - set(root_spec.input_definitions.parameters)
    if unknown:
        raise ValueError(
            f"unknown pipeline parameter(s) {sorted(unknown)}; "
            f"valid: {sorted(root_spec.input_definitions.parameters)}"
        )
    io_store = io.IOStore()
    for k, v in dag_orchestrator.join_user_inputs_and_defaults(
        arguments, root_spec.input_definitions
    ).items():
        io_store.put_parent_input(k, v)

    pipeline_resource_name = f"{pipeline_name}-{run_id}"
    records: list[TaskRecord] = []
    start = time.perf_counter()
    order = graph_utils.topological_sort_tasks(root_spec.dag.tasks)
    ok = True
    while order and ok:
        task_name = order.pop()
        task_spec = root_spec.dag.tasks[task_name]
        component_spec = spec.components[task_spec.component_ref.name]
        executor_spec = spec.deployment_spec["executors"][component_spec.executor_label]
        record = TaskRecord(task=task_name, component=task_spec.component_ref.name)
        records.append(record)
        task_root = str(Path(pipeline_root) / run_id / task_name)
        arguments_ = dag_orchestrator.make_task_arguments(task_spec.inputs, io_store)
        executor_input = executor_input_utils.construct_executor_input(
            component_spec=component_spec,
            arguments=arguments_,
            task_root=task_root,
            block_input_artifact=False,
        )
        executor_input_dict = executor_input_utils.executor_input_to_dict(executor_input, component_spec)
        container = executor_spec["container"]
        full_command = placeholder_utils.replace_placeholders(
            full_command=list(container["command"]) + list(container["args"]),
            executor_input_dict=executor_input_dict,
            pipeline_resource_name=pipeline_resource_name,
            task_resource_name=task_name,
            pipeline_root=str(pipeline_root),
            unique_pipeline_id=run_id,
        )
        record.executor_input = _split_command(full_command)[2]
        stage = names.stage_of(task_name)  # one name per stage: console, log file, error lines
        log(f"▶ {stage}")
        t0 = time.perf_counter()
        task_log = Path(pipeline_root) / run_id / "logs" / f"{stage}.log"
        hide = quiet.capture(stage, task_log) if quiet else None
        try:
            with hide or contextlib.nullcontext(), _PeakRss() as rss:
                _execute_in_process(full_command, task_root)
            record.status = "SUCCESS"
        except StageError as e:
            record.status, record.error = "FAILURE", str(e)
            if e.__cause__ is not None:  # an error in user code: where it was raised, in the log
                _append_traceback(e, task_log)
        except Exception as e:  # noqa: BLE001 (its traceback goes to the task's log, then the run stops)
            record.status = "FAILURE"
            record.error = unexpected_error_line(stage, e, task_log)
            log(traceback.format_exc())
        record.seconds = time.perf_counter() - t0
        record.peak_rss_mb = rss.peak_kb / 1024
        if record.status == "SUCCESS":
            record.outputs = executor_output_utils.get_outputs_for_task(executor_input, component_spec)
            for key, value in record.outputs.items():
                io_store.put_task_output(task_name, key, value)
        else:
            ok = False
            log(f"✗ {record.error}")
        if on_task_end:
            on_task_end(record)
    return LocalRun(
        run_id=run_id,
        pipeline_root=Path(pipeline_root),
        tasks=records,
        seconds=time.perf_counter() - start,
        succeeded=ok,
    )


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


def _parse_stage_error(message: str) -> tuple[str, str | None, str]:
    """``"[stage] path: problem"`` -> (stage, path, problem), as StageError takes them."""
    stage, _, rest = message.partition("] ")
    path, sep, problem = rest.partition(": ")
    return (stage.lstrip("["), path, problem) if sep else (stage.lstrip("["), None, rest)
