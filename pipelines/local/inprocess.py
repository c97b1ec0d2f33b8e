"""Run the compiled pipeline in this process, without a cluster (the fast local mode).

The runner executes the *compiled* pipeline spec — the same YAML that is uploaded to Kubeflow
Pipelines — with KFP's own local machinery (``kfp.local``'s task-argument wiring, executor
input construction, placeholder resolution and output collection) and KFP's own
``Executor``; each task's embedded component source runs in this process, so TensorFlow,
TFDV, TFT and TFMA are imported once for the whole run instead of once per stage (~7-10 s
each on a 2-core machine).

That is not how a cluster runs it: kfp.local links tasks by DAG key, passes artifacts as
local paths, skips ML Metadata and imports the project from the checkout. The run mode that
mirrors the KFP backend is ``pipelines.backend.runner``. kfp-kubernetes settings (volume,
resources) do not apply here: the storage root is a folder given by the caller.
"""

from __future__ import annotations

import contextlib
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
from pipelines.run_result import LocalRun, TaskRecord, _append_traceback, unexpected_error_line
from pipelines.tracking import PipelineTracking, environ


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
    quiet: Any = None,  # pipelines.local.console.TaskOutput: each task's own output to a log file
) -> LocalRun:
    """Execute every task of a compiled pipeline spec in dependency order, sub-DAGs included.

    A failing task stops its DAG (and the DAGs around it); a task whose trigger policy is
    ``ALL_UPSTREAM_TASKS_COMPLETED`` — the exit task of ``dsl.ExitHandler`` — still runs after
    it. ParallelFor iterations run one after the other (``_Walker``). ``on_task_end`` sees every
    finished task (the lineage recorder and the progress printer hook in there).
    """
    from kfp.local import dag_orchestrator, io

    root_spec = spec.root
    unknown = set(arguments) - set(root_spec.input_definitions.parameters)
    if unknown:
        raise ValueError(
            f"unknown pipeline parameter(s) {sorted(unknown)}; "
            f"valid: {sorted(root_spec.input_definitions.parameters)}"
        )
    io_store = io.IOStore()
    values = dag_orchestrator.join_user_inputs_and_defaults(arguments, root_spec.input_definitions)
    for k, v in values.items():
        io_store.put_parent_input(k, v)
    walker = _Walker(spec, Path(pipeline_root), run_id, on_task_end, log, quiet)
    walker.tracker = PipelineTracking.start(run_id, spec.pipeline_info.name, values, log)  # MLflow, if set
    start = time.perf_counter()
    ok = walker.run_dag(root_spec.dag, io_store)
    walker.tracker.end(ok)
    return LocalRun(
        run_id=run_id,
        pipeline_root=Path(pipeline_root),
        tasks=walker.records,
        seconds=time.perf_counter() - start,
        succeeded=ok,
    )


class _Walker:
    """Walks a compiled spec's DAGs as the KFP backend would, running container tasks in this process.

    kfp.local runs neither sub-DAGs, ParallelFor nor exit handlers; this walks them with its
    pieces: each DAG has its own ``IOStore`` (the parent's inputs, the siblings' outputs); a
    sub-DAG's outputs go to its task in the parent's store; a ParallelFor's outputs are the
    list of each iteration's (what ``dsl.Collected`` reads). An iteration's task is recorded as
    ``<task>[<index>]``.
    """

    def __init__(
        self,
        spec: Any,  # noqa: ANN401 (pipeline_spec_pb2.PipelineSpec)
        pipeline_root: Path,
        run_id: str,
        on_task_end: Callable[[TaskRecord], None] | None,
        log: Callable[[str], None],
        quiet: Any,  # noqa: ANN401
    ) -> None:
        self.spec, self.pipeline_root, self.run_id = spec, pipeline_root, run_id
        self.on_task_end, self.log, self.quiet = on_task_end, log, quiet
        self.records: list[TaskRecord] = []
        self.tracker = PipelineTracking(log)  # inert; run_pipeline_spec starts the run's own

    def run_dag(self, dag: Any, io_store: Any, suffix: str = "") -> bool:  # noqa: ANN401
        """Run a DAG's tasks in dependency order; False when one failed (the rest skipped but exit tasks)."""
        from kfp.local import graph_utils
        from kfp.pipeline_spec import pipeline_spec_pb2

        always = pipeline_spec_pb2.PipelineTaskSpec.TriggerPolicy.TriggerStrategy.ALL_UPSTREAM_TASKS_COMPLETED
        order = graph_utils.topological_sort_tasks(dag.tasks)
        ok = True
        while order:
            name = order.pop()
            task_spec = dag.tasks[name]
            if not ok and task_spec.trigger_policy.strategy != always:
                continue
            component_spec = self.spec.components[task_spec.component_ref.name]
            if component_spec.WhichOneof("implementation") == "dag":
                done = self._run_sub_dag(name, task_spec, component_spec, io_store, suffix)
            else:
                done = self._run_container(name + suffix, name, task_spec, component_spec, io_store)
            ok = ok and done
        return ok

    def _run_sub_dag(
        self, name: str, task_spec: Any, component_spec: Any, io_store: Any, suffix: str
    ) -> bool:  # noqa: ANN401
        """An ExitHandler's or a ParallelFor's DAG; its outputs (a list per output for a loop) to ``name``."""
        import json as _json

        from kfp.local import dag_orchestrator, io

        arguments = dag_orchestrator.make_task_arguments(task_spec.inputs, io_store)
        if task_spec.WhichOneof("iterator") is None:
            child = io.IOStore()
            for key, value in arguments.items():
                child.put_parent_input(key, value)
            ok = self.run_dag(component_spec.dag, child, suffix)
            if ok:
                for key, value in dag_orchestrator.get_dag_outputs(component_spec.dag.outputs, child).items():
                    io_store.put_task_output(name, key, value)
            return ok
        iterator = task_spec.parameter_iterator
        if task_spec.WhichOneof("iterator") != "parameter_iterator":
            raise RuntimeError(f"{name}: only ParallelFor over parameters runs in process")
        raw = iterator.items.raw
        items = _json.loads(raw) if raw else arguments[iterator.items.input_parameter]
        collected: dict[str, list[Any]] = {k: [] for k in component_spec.dag.outputs.parameters}
        for index, item in enumerate(items):  # one after the other: the tasks share this process
            child = io.IOStore()
            for key, value in {**arguments, iterator.item_input: item}.items():
                child.put_parent_input(key, value)
            if not self.run_dag(component_spec.dag, child, f"{suffix}[{index}]"):
                return False
            for key, value in dag_orchestrator.get_dag_output_parameters(
                component_spec.dag.outputs, child
            ).items():
                collected[key].append(value)
        for key, values in collected.items():
            io_store.put_task_output(name, key, values)
        return True

    def _run_container(self, task: str, key: str, task_spec: Any, component_spec: Any, io_store: Any) -> bool:  # noqa: ANN401
        """One container task in this process; its record to ``on_task_end``; its outputs under ``key``."""
        from kfp.local import dag_orchestrator, executor_input_utils, executor_output_utils, placeholder_utils

        executor_spec = self.spec.deployment_spec["executors"][component_spec.executor_label]
        record = TaskRecord(task=task, component=task_spec.component_ref.name)
        self.records.append(record)
        task_root = str(self.pipeline_root / self.run_id / task)
        executor_input = executor_input_utils.construct_executor_input(
            component_spec=component_spec,
            arguments=dag_orchestrator.make_task_arguments(task_spec.inputs, io_store),
            task_root=task_root,
            block_input_artifact=False,
        )
        executor_input_dict = executor_input_utils.executor_input_to_dict(executor_input, component_spec)
        container = executor_spec["container"]
        full_command = placeholder_utils.replace_placeholders(
            full_command=list(container["command"]) + list(container["args"]),
            executor_input_dict=executor_input_dict,
            pipeline_resource_name=f"{self.spec.pipeline_info.name}-{self.run_id}",
            task_resource_name=task,
            pipeline_root=str(self.pipeline_root),
            unique_pipeline_id=self.run_id,
        )
        record.executor_input = _split_command(full_command)[2]
        self._execute(record, full_command, task_root)
        if record.status == "SUCCESS":
            record.outputs = executor_output_utils.get_outputs_for_task(executor_input, component_spec)
            for name, value in record.outputs.items():
                io_store.put_task_output(key, name, value)
        else:
            self.log(f"✗ {record.error}")
        if self.on_task_end:
            self.on_task_end(record)
        return record.status == "SUCCESS"

    def _execute(self, record: TaskRecord, full_command: list[str], task_root: str) -> None:
        """Run the task's code; its status, error line, time and peak memory into ``record``."""
        stage = names.stage_of(record.task)  # one name per stage: console, log file, error lines
        self.log(f"▶ {stage}")
        t0 = time.perf_counter()
        task_log = self.pipeline_root / self.run_id / "logs" / f"{stage}.log"
        hide = self.quiet.capture(stage, task_log) if self.quiet else None
        env = self.tracker.start_task(record.task)  # the task's MLflow run, as KFP 2.17's driver makes it
        try:
            with hide or contextlib.nullcontext(), environ(env), _PeakRss() as rss:
                _execute_in_process(full_command, task_root)
            record.status = "SUCCESS"
        except StageError as e:
            record.status, record.error = "FAILURE", str(e)
            if e.__cause__ is not None:  # an error in user code: where it was raised, in the log
                _append_traceback(e, task_log)
        except Exception as e:  # noqa: BLE001 (its traceback goes to the task's log, then the run stops)
            record.status = "FAILURE"
            record.error = unexpected_error_line(stage, e, task_log)
            self.log(traceback.format_exc())
        record.seconds = time.perf_counter() - t0
        record.peak_rss_mb = rss.peak_kb / 1024
        self.tracker.end_task(record.task, record.status == "SUCCESS", record.executor_input)
