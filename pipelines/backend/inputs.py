"""How the driver resolves a task's inputs in its parent DAG (``resolveInputs``), per backend version.

Sources: ``backend/src/v2/driver/driver.go`` (2.5.0) and ``driver/resolve.go`` (2.14.0, 2.17.0).
``componentInputParameter``/``componentInputArtifact`` come from the parent DAG execution; a
``taskOutputParameter``/``taskOutputArtifact`` is looked up in ``getDAGTasks`` (2.5 by task name;
2.14+ by ``<task>_<DAG id>[_idx_<i>]``) and followed down through DAG producers
(``resolveUpstreamParameters``/``Artifacts``). A loop DAG's output is collected over its
iterations on 2.14+ (``CollectInputs``, in index order); 2.5 cannot see inside the loop.
``taskFinalStatus`` (2.14+) is the handled task's MLMD state. A STRING input receives any other
value as JSON text (``handleParamTypeValidationAndConversion``).
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from pipelines.backend.metadata import BackendError, at_least, task_name_of
from pipelines.backend.render import runtime_constant, to_value

if TYPE_CHECKING:
    from pipelines.backend.dag import Run
    from pipelines.backend.runner import Backend


def resolve_inputs(
    backend: Backend, run: Run, dag_id: int, key: str, task: Any, component: Any, iterator: bool = False
) -> tuple[dict[str, Any], dict[str, list[Any]]]:  # noqa: ANN401
    """A task's input parameters and artifacts, as its driver resolves them in its parent DAG."""
    dag = backend.mlmd.execution(dag_id)
    dag_params = dict(dag.custom_properties["inputs"].struct_value.fields)
    values: dict[str, Any] = {}
    for pname, pdef in component.input_definitions.parameters.items():
        if pdef.HasField("default_value"):
            values[pname] = pdef.default_value
    for pname, pspec in task.inputs.parameters.items():
        values[pname] = _parameter(backend, run, dag, dag_params, key, task, pname, pspec)
        if pspec.parameter_expression_selector:
            values[pname] = _select(values[pname], pspec.parameter_expression_selector, pname)
    artifacts: dict[str, list[Any]] = {}
    dag_artifacts = backend.mlmd.input_artifacts(dag_id)
    for aname, aspec in task.inputs.artifacts.items():
        kind = aspec.WhichOneof("kind")
        if kind == "component_input_artifact":
            if aspec.component_input_artifact not in dag_artifacts:
                raise BackendError(
                    f"parent DAG does not have input artifact {aspec.component_input_artifact}"
                )
            artifacts[aname] = dag_artifacts[aspec.component_input_artifact]
        elif kind == "task_output_artifact":
            out = aspec.task_output_artifact
            artifacts[aname] = upstream(
                backend, run, dag, key, aname, out.producer_task, out.output_artifact_key, True
            )
        else:
            raise BackendError(f"task {key}: input artifact {aname} of kind {kind} is not emulated")
    skip = {task.parameter_iterator.item_input} if iterator else set()
    missing = [
        n
        for n, d in component.input_definitions.parameters.items()
        if n not in values and not d.is_optional and n not in skip
    ]
    if missing:
        raise BackendError(f"[{key}] driver: no value for input parameter(s) {missing}")
    _to_declared_types(component, values)
    return values, artifacts


def _parameter(
    backend: Backend, run: Run, dag: Any, dag_params: dict, key: str, task: Any, pname: str, pspec: Any
) -> Any:  # noqa: ANN401
    kind = pspec.WhichOneof("kind")
    if kind == "component_input_parameter":
        if pspec.component_input_parameter not in dag_params:
            raise BackendError(f"parent DAG does not have input parameter {pspec.component_input_parameter}")
        return dag_params[pspec.component_input_parameter]
    if kind == "runtime_value":
        name = task_name_of(key, task.task_info.name, backend.version)
        return runtime_constant(pspec.runtime_value.constant, run.run_id, run.spec.pipeline_info.name, name)
    if kind == "task_output_parameter":
        out = pspec.task_output_parameter
        return upstream(backend, run, dag, key, pname, out.producer_task, out.output_parameter_key, False)
    if kind == "task_final_status":
        return _final_status(backend, run, dag, task)
    raise BackendError(f"task {key}: input parameter kind {kind} is not emulated")


def _final_status(backend: Backend, run: Run, dag: Any, task: Any) -> Any:  # noqa: ANN401
    """``PipelineTaskFinalStatus`` of the handled task (2.14+; the 2.5 run was refused at creation)."""
    from ml_metadata.proto import metadata_store_pb2 as pb

    if not task.dependent_tasks:
        raise BackendError(f"task {task.task_info.name} has no dependent tasks")
    tasks = backend.mlmd.dag_tasks(run.context, dag.id, backend.version)
    producer = tasks.get(f"{task.dependent_tasks[0]}_{dag.id}")
    if producer is None:
        raise BackendError(f"producer task, {task.dependent_tasks[0]}, not in tasks")
    return to_value(
        {
            "state": pb.Execution.State.Name(producer.last_known_state),
            "pipelineTaskName": producer.custom_properties["task_name"].string_value,
            "pipelineJobResourceName": run.resource_name,
            "error": {},
        }
    )


_SELECTOR = re.compile(r'parseJson\(string_value\)(?:\["([^"]+)"\])?')


def _select(value: Any, selector: str, pname: str) -> Any:  # noqa: ANN401
    """The CEL ``parameterExpressionSelector`` forms kfp compiles for a loop item's fields."""
    from google.protobuf import json_format

    m = _SELECTOR.fullmatch(selector)
    if not m:
        raise BackendError(f"resolving parameter {pname!r}: selector {selector!r} is not emulated")
    data = json_format.MessageToDict(value)
    data = json.loads(data) if isinstance(data, str) else data
    return to_value(data[m.group(1)] if m.group(1) else data)


def _to_declared_types(component: Any, values: dict[str, Any]) -> None:  # noqa: ANN401
    """``handleParamTypeValidationAndConversion``: a STRING input receives any value as JSON text."""
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    for name, spec in component.input_definitions.parameters.items():
        value = values.get(name)
        if (
            value is not None
            and spec.parameter_type == pipeline_spec_pb2.ParameterType.STRING
            and value.WhichOneof("kind") != "string_value"
        ):
            values[name] = to_value(json.dumps(json_format.MessageToDict(value)))


def upstream(
    backend: Backend,
    run: Run,
    dag: Any,
    key: str,
    input_name: str,
    producer: str,
    output: str,
    artifact: bool,
) -> Any:  # noqa: ANN401
    """An upstream task's output as ``resolveUpstreamParameters``/``Artifacts`` find it."""
    legacy = not at_least(backend.version, "2.14")
    tasks = backend.mlmd.dag_tasks(run.context, dag.id, backend.version)
    lookup = producer
    if not legacy:
        lookup = f"{producer}_{dag.id}"
        if "iteration_index" in dag.custom_properties:
            lookup += f"_idx_{dag.custom_properties['iteration_index'].int_value}"
    if lookup not in tasks:
        what = "artifact" if artifact else "parameter"
        raise BackendError(
            f"[{key}] driver: failed to resolve inputs: resolving input {what} {input_name!r}: "
            f"cannot find producer task {producer!r} (backend {backend.version} looks tasks up by "
            f"the task_name it recorded: {sorted(tasks)})"
        )
    try:
        return _follow(backend, tasks, tasks[lookup], output, artifact, legacy)
    except BackendError as e:
        raise BackendError(
            f"[{key}] driver: failed to resolve inputs: resolving input {input_name!r}: {e}"
        ) from None


def _follow(backend: Backend, tasks: dict, current: Any, output: str, artifact: bool, legacy: bool) -> Any:  # noqa: ANN401
    """Down through DAG producers to the container that made ``output``; a loop's is collected."""
    while "parameter_producer_task" in current.custom_properties:  # a DAG execution
        prop = "artifact_producer_task" if artifact else "parameter_producer_task"
        spec = json.loads(current.custom_properties[prop].string_value).get(output)
        if spec is None:
            raise BackendError(
                f"DAG {current.custom_properties['task_name'].string_value} has no output {output!r}"
            )
        if artifact:
            selector = spec["artifactSelectors"][-1]
            sub, output = selector["producerSubtask"], selector["outputArtifactKey"]
        else:
            sub, output = (
                spec["valueFromParameter"]["producerSubtask"],
                spec["valueFromParameter"]["outputParameterKey"],
            )
        if "iteration_count" in current.custom_properties:
            if legacy:  # 2.5: the loop's inside is not in getDAGTasks
                if artifact:
                    raise BackendError("runtime error: invalid memory address or nil pointer dereference")
                raise BackendError(f"subTaskName, {sub}, not in tasks")
            return _collect(backend, tasks, current, sub, output, artifact)
        index = (
            current.custom_properties["iteration_index"].int_value
            if "iteration_index" in current.custom_properties
            else None
        )
        sub_key = sub if legacy else f"{sub}_{current.id}" + (f"_idx_{index}" if index is not None else "")
        if sub_key not in tasks:
            raise BackendError(f"subTaskName, {sub_key}, not in tasks")
        current = tasks[sub_key]
    if artifact:
        return [backend.mlmd.output_artifact(current, output)]
    fields = current.custom_properties["outputs"].struct_value.fields
    if output not in fields:
        raise BackendError(f"producer task has no output parameter {output!r}")
    return to_value(_plain(fields[output]))


def _plain(value: Any) -> Any:  # noqa: ANN401
    from google.protobuf import json_format

    return json_format.MessageToDict(value)


def _collect(backend: Backend, tasks: dict, loop: Any, sub: str, output: str, artifact: bool) -> Any:  # noqa: ANN401
    """``CollectInputs``: each iteration's output, in iteration index order (a list / artifacts)."""
    name = loop.custom_properties["task_name"].string_value
    found: list[Any] = []
    for index in range(loop.custom_properties["iteration_count"].int_value):
        iteration = tasks[f"{name}_{loop.id}_idx_{index}"]
        node = tasks[f"{sub}_{iteration.id}_idx_{index}"]
        value = _follow(backend, tasks, node, output, artifact, legacy=False)
        found.extend(value) if artifact else found.append(_plain(value))
    return found if artifact else to_value(found)
