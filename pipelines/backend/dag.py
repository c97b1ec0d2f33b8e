"""The DAG side of the KFP backend emulator: task order, sub-DAGs, ParallelFor, exit handlers.

What each backend version's driver and Argo workflow do with a compiled pipeline's DAGs, from
the kubeflow/pipelines sources at tags 2.5.0, 2.14.0, 2.15.0 and 2.17.0:

- **Sub-DAGs** (``exit-handler-1``, ``for-loop-N``; argocompiler/dag.go): a DAG driver records a
  ``system.DAGExecution`` under its parent with the inputs it resolved and, as custom properties,
  which sub-task produces each DAG output (``parameter_producer_task``/``artifact_producer_task``,
  ``driver.DAG``); its tasks read ``componentInputParameter``/``componentInputArtifact`` from it.
  A ``taskOutputParameter``/``taskOutputArtifact`` names a task of the same DAG; when that task is
  a DAG the driver follows its producer sub-task down (``resolveUpstreamParameters``/``Artifacts``).
- **ParallelFor** (``iteratorTask``): the iterator driver records the loop DAG with
  ``iteration_count``; each iteration is a DAG execution with ``iteration_index`` and the item
  bound to the loop-item input; Argo runs the iterations at most ``iteratorPolicy.parallelismLimit``
  at a time (the loop template's ``parallelism``), each task its own pod. Argo's DAG ``failFast``:
  after one iteration fails no new one starts, the running ones finish, and the loop fails.
- **Collected** (a consumer outside the loop of a loop task's output): 2.14+ (#11725,
  ``CollectInputs`` in driver/resolve.go) walks the iterations breadth first in index order, so the
  list is in iteration order whatever order they finished in. 2.5's ``getDAGTasks`` skips the
  inside of a ParallelFor DAG, so the consumer's driver fails with "subTaskName, <task>, not in
  tasks" (parameters); for artifacts 2.5 dereferences the missing task.
- **Exit handler** (a task with ``triggerPolicy.strategy: ALL_UPSTREAM_TASKS_COMPLETED``,
  dag.go: an Argo exit lifecycle hook on the handled DAG): it runs once the handled DAG ended,
  succeeded or failed; the run's state is the handled DAG's. ``PipelineTaskFinalStatus`` (#11953,
  2.14; ``TaskFinalStatus`` in driver/resolve.go) is the handled DAG execution's state (COMPLETE,
  or FAILED once one of its tasks failed: ``UpdateDAGExecutionsState``, metadata/client.go), its
  task name and the run's resource name, with an empty ``error``; 2.5's Argo compiler
  refuses it when the run is created ("task final status not supported yet", argocompiler/dag.go).
- **Order** (Argo's DAG template, ``depends`` on the upstream tasks' success): a task starts as
  soon as every task it depends on succeeded, so independent tasks run at the same time; after a
  failure no new task of that DAG starts (``failFast``), the running ones finish, its exit tasks run.

How a task's inputs are resolved is ``pipelines.backend.inputs``.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

from pipelines.backend.inputs import resolve_inputs
from pipelines.backend.metadata import DAG_EXECUTION, BackendError, RunRefused, at_least, task_name_of
from pipelines.backend.render import to_value

if TYPE_CHECKING:
    from pipelines.backend.runner import Backend


@dataclasses.dataclass
class Run:
    """One run in progress: its spec, ML Metadata context and the records of its container tasks."""

    spec: Any
    platform: dict[str, Any]
    context: int
    run_id: str
    pipeline_root: str
    on_task_end: Callable[[Any], None] | None = None
    tracker: Any = None  # pipelines.tracking.PipelineTracking
    records: list[Any] = dataclasses.field(default_factory=list)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    @property
    def resource_name(self) -> str:
        return f"{self.spec.pipeline_info.name}-{self.run_id}"

    def started(self, record: Any) -> None:  # noqa: ANN401
        with self.lock:
            self.records.append(record)

    def ended(self, record: Any) -> None:  # noqa: ANN401
        with self.lock:  # the console is not thread-safe; iterations end from several threads
            if self.on_task_end:
                self.on_task_end(record)


def dags(spec: Any) -> dict[str, Any]:  # noqa: ANN401
    """Every DAG of the spec by component name (the root as ``root``)."""
    found = {"root": spec.root.dag}
    found.update({name: c.dag for name, c in spec.components.items() if c.HasField("dag")})
    return found


def check_creatable(spec: Any, version: str) -> None:  # noqa: ANN401
    """What the API server's Argo compiler refuses when the run is created (RunRefused)."""
    for dag_name, dag in dags(spec).items():
        for key, task in dag.tasks.items():
            kinds = {p.WhichOneof("kind") for p in task.inputs.parameters.values()}
            if "task_final_status" in kinds and not at_least(version, "2.14"):
                raise RunRefused(
                    f"the KFP {version} API server refuses to create the run: compiling DAG {dag_name!r}: "
                    "failed to add implicit deps: task final status not supported yet"
                )
            if task.trigger_policy.condition:
                raise RunRefused(f"task {key}: conditions (dsl.If) are not emulated")
            if task.HasField("artifact_iterator"):
                raise RunRefused(f"task {key}: artifact iterator not implemented yet")


def _is_exit_task(task: Any) -> bool:  # noqa: ANN401
    return task.trigger_policy.strategy == task.trigger_policy.TriggerStrategy.ALL_UPSTREAM_TASKS_COMPLETED


def run_dag(backend: Backend, run: Run, dag_id: int, component: str, suffix: str = "") -> bool:
    """Run one DAG's tasks as Argo's DAG template does; True when every non-exit task succeeded.

    Every task whose dependencies succeeded starts at once (its own thread, its pod its own
    process); after a failure no new task starts and the running ones finish (``failFast``);
    exit tasks then run once their handled task has ended, whatever its state.
    """
    from kfp.local import graph_utils

    tasks = dags(run.spec)[component].tasks
    order = list(reversed(graph_utils.topological_sort_tasks(tasks)))
    normal = [k for k in order if not _is_exit_task(tasks[k])]
    done: dict[str, bool] = {}
    running: dict[Future, str] = {}
    with ThreadPoolExecutor(max_workers=max(1, len(normal))) as pool:
        while True:
            if all(done.values()):  # failFast: nothing new after a failure
                for key in normal:
                    deps = tasks[key].dependent_tasks
                    if key not in done and key not in running.values() and all(done.get(d) for d in deps):
                        running[pool.submit(run_task, backend, run, dag_id, key, tasks[key], suffix)] = key
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                done[running.pop(future)] = future.result()
    for key in order:  # exit hooks: once the handled task ended, whatever its state
        if _is_exit_task(tasks[key]) and all(d in done for d in tasks[key].dependent_tasks):
            run_task(backend, run, dag_id, key, tasks[key], suffix)
    return all(done.get(k) for k in normal)


def run_task(backend: Backend, run: Run, dag_id: int, key: str, task: Any, suffix: str) -> bool:  # noqa: ANN401
    component = run.spec.components[task.component_ref.name]
    try:
        if task.HasField("parameter_iterator"):
            return _run_loop(backend, run, dag_id, key, task, component, suffix)
        if component.HasField("dag"):
            return _run_sub_dag(backend, run, dag_id, key, task, component, suffix)
    except BackendError as e:  # a DAG driver failed: the task fails with its message
        from pipelines.run_result import TaskRecord

        record = TaskRecord(task=key + suffix, component=task.component_ref.name, status="FAILURE")
        record.error = str(e) if str(e).startswith("[") else f"[{key + suffix}] {e}"
        run.started(record)
        backend.log(f"✗ {record.error}")
        run.ended(record)
        return False
    return backend.run_container(run, dag_id, key, task, component, suffix)


def _dag_properties(component: Any) -> dict[str, int | str]:  # noqa: ANN401
    """What ``driver.DAG`` records on a DAG execution to resolve its outputs later."""
    from google.protobuf import json_format

    outputs = component.dag.outputs
    return {
        "parameter_producer_task": json.dumps(
            {n: json_format.MessageToDict(s) for n, s in outputs.parameters.items()}
        ),
        "artifact_producer_task": json.dumps(
            {n: json_format.MessageToDict(s) for n, s in outputs.artifacts.items()}
        ),
        "total_dag_tasks": len(component.dag.tasks),
    }


def _run_sub_dag(
    backend: Backend, run: Run, dag_id: int, key: str, task: Any, component: Any, suffix: str
) -> bool:  # noqa: ANN401
    values, artifacts = resolve_inputs(backend, run, dag_id, key, task, component)
    name = task_name_of(key, task.task_info.name, backend.version)
    sub = backend.mlmd.create_execution(
        run.context, DAG_EXECUTION, name, dag_id, values, _dag_properties(component)
    )
    backend.mlmd.record_inputs(sub, artifacts)
    ok = run_dag(backend, run, sub, task.component_ref.name, suffix)
    backend.mlmd.finish(sub, ok)
    return ok


def _loop_items(task: Any, values: dict[str, Any]) -> list[Any]:  # noqa: ANN401
    """The iterator driver's items: the raw JSON list, or the list an input parameter holds."""
    from google.protobuf import json_format

    items = task.parameter_iterator.items
    if items.WhichOneof("kind") == "raw":
        return list(json.loads(items.raw))
    if items.input_parameter not in values:
        raise BackendError(
            f"iterating on item input {task.parameter_iterator.item_input!r} failed: "
            "cannot find input parameter"
        )
    value = json_format.MessageToDict(values[items.input_parameter])
    if isinstance(value, str):
        value = json.loads(value)
    if not isinstance(value, list):
        raise BackendError(
            f"iterating on item input {task.parameter_iterator.item_input!r} failed: not a list"
        )
    return value


def _run_loop(
    backend: Backend, run: Run, dag_id: int, key: str, task: Any, component: Any, suffix: str
) -> bool:  # noqa: ANN401
    """ParallelFor: the loop DAG, then its iterations, ``parallelismLimit`` at a time, failFast."""
    values, artifacts = resolve_inputs(backend, run, dag_id, key, task, component, iterator=True)
    items = _loop_items(task, values)
    item_input = task.parameter_iterator.item_input
    items_input = task.parameter_iterator.items.input_parameter
    name = task_name_of(key, task.task_info.name, backend.version)
    props = _dag_properties(component)
    loop = backend.mlmd.create_execution(
        run.context, DAG_EXECUTION, name, dag_id, values, {**props, "iteration_count": len(items)}
    )
    backend.mlmd.record_inputs(loop, artifacts)
    failed = threading.Event()

    def iteration(index: int) -> bool:
        if failed.is_set():
            return False  # failFast: not started
        inputs = {k: v for k, v in values.items() if k != items_input}
        inputs[item_input] = to_value(items[index])
        it = backend.mlmd.create_execution(
            run.context, DAG_EXECUTION, name, loop, inputs, {**props, "iteration_index": index}
        )
        backend.mlmd.record_inputs(it, artifacts)
        ok = run_dag(backend, run, it, task.component_ref.name, f"{suffix}[{index}]")
        backend.mlmd.finish(it, ok)
        if not ok:
            failed.set()
        return ok

    limit = task.iterator_policy.parallelism_limit or len(items)
    with ThreadPoolExecutor(max_workers=max(1, min(limit, len(items)))) as pool:
        ok = all(list(pool.map(iteration, range(len(items)))))
    backend.mlmd.finish(loop, ok)
    return ok
