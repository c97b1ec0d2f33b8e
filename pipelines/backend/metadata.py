"""ML Metadata as the open-source KFP v2 backend uses it (backend/src/v2/metadata, KFP 2.5.0 to 2.17.0).

The backend emulator (``pipelines.backend.runner``) records every execution and artifact here, in
a real ML Metadata store, and resolves a task's inputs from it — so the artifact metadata a
downstream task sees has made the same round trip it makes on a cluster:

- ``structValueToMLMDValue`` (launcher, on output): string → string, number → double,
  bool → int (1/0), list → struct ``{"list": [...]}``, dict → struct ``{"struct": {...}}``,
  null → the task fails ("unknown/unsupported value type").
- ``toRuntimeArtifact`` (driver, on input): string → string, double and int → number,
  struct → struct as stored (so a list comes back as ``{"list": [...]}``).

Upstream tasks are found as ``getDAGTasks`` finds them: executions of the run keyed by their
``task_name`` custom property. Backend 2.5 stores ``taskInfo.name`` (the display name) there
while consumers look producers up by DAG task key — kubeflow/pipelines#11173 — and 2.14
(#11938) stores the task key; ``task_name_of`` picks the rule. ``dag_tasks`` flattens nested
DAGs as each version's ``getDAGTasks`` does: 2.5 (driver/driver.go) keys by task name and skips
the inside of a ParallelFor DAG ("ParallelFor outputs should be handled with dsl.Collected");
2.14+ (driver/resolve.go, metadata/client.go ``GetExecutionsInDAG``) enters every DAG and keys
``<task>_<parent DAG id>`` with ``_idx_<i>`` inside an iteration, so iterations do not collide.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

BACKEND_VERSIONS = ("2.5", "2.14", "2.17")
DEFAULT_VERSION = "2.17"
DAG_EXECUTION = "system.DAGExecution"
CONTAINER_EXECUTION = "system.ContainerExecution"
RUN_CONTEXT = "system.PipelineRun"


class BackendError(RuntimeError):
    """A task failed the way the backend's driver or launcher fails it."""


class RunRefused(BackendError):
    """The API server refused to create the run (its Argo compiler rejected the spec)."""


def at_least(version: str, minimum: str) -> bool:
    """``version`` is ``minimum`` or newer (``"2.14"`` ≥ ``"2.5"``)."""
    return tuple(map(int, version.split("."))) >= tuple(map(int, minimum.split(".")))


def _locked(method: Callable) -> Callable:
    """One MLMD call at a time: loop iterations run their drivers from several threads."""

    @wraps(method)
    def call(self: BackendMetadata, *args: Any, **kwargs: Any) -> Any:  # noqa: ANN401
        with self._lock:
            return method(self, *args, **kwargs)

    return call


def task_name_of(task_key: str, task_info_name: str, version: str) -> str:
    """The ``task_name`` the driver records for a task (the key ``getDAGTasks`` maps by)."""
    if version not in BACKEND_VERSIONS:
        raise ValueError(f"backend version must be one of {BACKEND_VERSIONS}, not {version!r}")
    return task_info_name if version == "2.5" else task_key


def to_mlmd_value(key: str, value: Any) -> Any:  # noqa: ANN401 (metadata_store_pb2.Value)
    """One metadata field as the launcher stores it (``structValueToMLMDValue``)."""
    from google.protobuf import struct_pb2
    from ml_metadata.proto import metadata_store_pb2 as pb

    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return pb.Value(string_value=value.string_value)
    if kind == "number_value":
        return pb.Value(double_value=value.number_value)
    if kind == "bool_value":
        return pb.Value(int_value=1 if value.bool_value else 0)
    if kind in ("list_value", "struct_value"):
        wrapped = struct_pb2.Struct()
        if kind == "list_value":
            wrapped.fields["list"].list_value.CopyFrom(value.list_value)
        else:
            wrapped.fields["struct"].struct_value.CopyFrom(value.struct_value)
        return pb.Value(struct_value=wrapped)
    raise BackendError(
        f"failed to convert RuntimeArtifact to MLMD artifact: metadata {key!r}: "
        f"unknown/unsupported value type {kind or 'null'}"
    )


def from_mlmd_value(value: Any) -> Any:  # noqa: ANN401 (struct_pb2.Value)
    """One MLMD property as the driver hands it to a downstream task (``toRuntimeArtifact``)."""
    from google.protobuf import struct_pb2

    kind = value.WhichOneof("value")
    if kind == "string_value":
        return struct_pb2.Value(string_value=value.string_value)
    if kind == "double_value":
        return struct_pb2.Value(number_value=value.double_value)
    if kind == "int_value":
        return struct_pb2.Value(number_value=float(value.int_value))
    if kind == "struct_value":
        return struct_pb2.Value(struct_value=value.struct_value)
    raise BackendError(f"failed to convert MLMD artifact to RuntimeArtifact: unknown property type {kind}")


class BackendMetadata:
    """The cluster's ML Metadata store, as the driver and launcher read and write it."""

    def __init__(self, db_path: Path) -> None:
        from ml_metadata.metadata_store import metadata_store
        from ml_metadata.proto import metadata_store_pb2 as pb

        self._pb = pb
        self._lock = threading.RLock()
        db_path.parent.mkdir(parents=True, exist_ok=True)
        config = pb.ConnectionConfig()
        config.sqlite.filename_uri = str(db_path)
        config.sqlite.connection_mode = pb.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
        self.store = metadata_store.MetadataStore(config)
        self._types: dict[tuple[str, str], int] = {}

    def _type_id(self, kind: str, name: str) -> int:
        if (kind, name) not in self._types:
            pb = self._pb
            put = {
                "execution": lambda: self.store.put_execution_type(pb.ExecutionType(name=name)),
                "artifact": lambda: self.store.put_artifact_type(pb.ArtifactType(name=name)),
                "context": lambda: self.store.put_context_type(pb.ContextType(name=name)),
            }[kind]
            self._types[(kind, name)] = put()
        return self._types[(kind, name)]

    @_locked
    def run_context(self, run_id: str, pipeline_name: str) -> int:
        pb = self._pb
        ctx = pb.Context(type_id=self._type_id("context", RUN_CONTEXT), name=run_id)
        ctx.custom_properties["pipeline_name"].string_value = pipeline_name
        return self.store.put_contexts([ctx])[0]

    @_locked
    def create_execution(
        self,
        context_id: int,
        type_name: str,
        task_name: str,
        parent_dag_id: int,
        parameters: dict[str, Any],
        extra: dict[str, int | str] | None = None,
    ) -> int:
        """The driver's execution record (state RUNNING) with its inputs and extra properties.

        ``extra``: ``iteration_count``, ``iteration_index``, ``parameter_producer_task``, ...
        """
        pb = self._pb
        execution = pb.Execution(
            type_id=self._type_id("execution", type_name), last_known_state=pb.Execution.RUNNING
        )
        execution.custom_properties["task_name"].string_value = task_name
        execution.custom_properties["parent_dag_id"].int_value = parent_dag_id
        inputs = execution.custom_properties["inputs"].struct_value
        inputs.SetInParent()  # a task without parameters still records an (empty) struct
        for name, value in parameters.items():
            inputs.fields[name].CopyFrom(value)
        for name, value in (extra or {}).items():
            if isinstance(value, int):
                execution.custom_properties[name].int_value = value
            else:
                execution.custom_properties[name].string_value = value
        [context] = self.store.get_contexts_by_id([context_id])
        exec_id, _, _ = self.store.put_execution(execution, [], [context])
        return exec_id

    @_locked
    def record_inputs(self, exec_id: int, artifacts: dict[str, Any]) -> None:
        """INPUT events for the artifacts a task consumed (keyed by input name, in list order)."""
        pb = self._pb
        events = []
        for key, runtime_artifacts in artifacts.items():
            for runtime_artifact in (
                runtime_artifacts if isinstance(runtime_artifacts, list) else [runtime_artifacts]
            ):
                event = pb.Event(
                    artifact_id=int(runtime_artifact.name), execution_id=exec_id, type=pb.Event.INPUT
                )
                event.path.steps.add().key = key
                events.append(event)
        if events:
            self.store.put_events(events)

    @_locked
    def input_artifacts(self, exec_id: int) -> dict[str, list[Any]]:
        """A DAG's input artifacts (``GetInputArtifactsByExecutionID``), for its tasks to read."""
        pb = self._pb
        found: dict[str, list[Any]] = defaultdict(list)
        for event in self.store.get_events_by_execution_ids([exec_id]):
            if event.type == pb.Event.INPUT and event.path.steps:
                found[event.path.steps[0].key].append(self._runtime_artifact(event.artifact_id))
        return dict(found)

    @_locked
    def record_outputs(self, context_id: int, exec_id: int, artifacts: dict[str, Any]) -> dict[str, Any]:
        """Store output artifacts (launcher's ``RecordArtifact``) and OUTPUT events; ids set on them."""
        pb = self._pb
        stored = {}
        for key, runtime_artifact in artifacts.items():
            artifact = pb.Artifact(
                type_id=self._type_id("artifact", runtime_artifact.type.schema_title),
                uri=runtime_artifact.uri,
                state=pb.Artifact.LIVE,
            )
            for field, value in runtime_artifact.metadata.fields.items():
                artifact.custom_properties[field].CopyFrom(to_mlmd_value(field, value))
            stored[key] = artifact
        ids = self.store.put_artifacts(list(stored.values())) if stored else []
        for runtime_artifact, aid in zip(artifacts.values(), ids, strict=True):
            runtime_artifact.name = str(aid)
        self.link_outputs(context_id, exec_id, dict(zip(artifacts, ids, strict=True)))
        return artifacts

    @_locked
    def link_outputs(self, context_id: int, exec_id: int, artifact_ids: dict[str, int]) -> None:
        """OUTPUT events and run attributions (a cached execution links its source's artifacts)."""
        pb = self._pb
        events = []
        for key, aid in artifact_ids.items():
            event = pb.Event(artifact_id=aid, execution_id=exec_id, type=pb.Event.OUTPUT)
            event.path.steps.add().key = key
            events.append(event)
        if events:
            self.store.put_events(events)
            self.store.put_attributions_and_associations(
                [pb.Attribution(artifact_id=aid, context_id=context_id) for aid in artifact_ids.values()], []
            )

    @_locked
    def finish(
        self, exec_id: int, ok: bool | str, outputs: dict[str, Any] | None = None, fingerprint: str = ""
    ) -> None:
        """Final state (COMPLETE/FAILED, or a state name such as CACHED) and what ``PublishExecution`` adds.

        Output parameters go under ``outputs``; ``fingerprint`` is the cache entry the launcher files.
        """
        pb = self._pb
        [execution] = self.store.get_executions_by_id([exec_id])
        state = ok if isinstance(ok, str) else ("COMPLETE" if ok else "FAILED")
        execution.last_known_state = pb.Execution.State.Value(state)
        if outputs is not None:
            struct = execution.custom_properties["outputs"].struct_value
            struct.SetInParent()
            for name, value in outputs.items():
                struct.fields[name].CopyFrom(value)
        if fingerprint:
            execution.custom_properties["cache_fingerprint"].string_value = fingerprint
        self.store.put_executions([execution])

    @_locked
    def execution(self, exec_id: int) -> Any:  # noqa: ANN401
        [execution] = self.store.get_executions_by_id([exec_id])
        return execution

    @_locked
    def dag_tasks(self, context_id: int, dag_id: int, version: str = "2.5") -> dict[str, Any]:
        """``getDAGTasks``: the executions under one DAG and its sub-DAGs, keyed as ``version`` keys them."""
        executions = self.store.get_executions_by_context(context_id)
        by_id = {e.id: e for e in executions}
        children: dict[int, list[Any]] = defaultdict(list)
        for e in executions:
            children[e.custom_properties["parent_dag_id"].int_value].append(e)
        legacy = not at_least(version, "2.14")
        tasks: dict[str, Any] = {}

        dag_type = self._type_id("execution", DAG_EXECUTION)

        def walk(dag: int) -> None:
            parent = by_id.get(dag)
            iteration = (
                parent if parent is not None and "iteration_index" in parent.custom_properties else None
            )
            for e in children[dag]:
                tasks[task_key(e, dag, iteration, legacy)] = e
            for e in children[dag]:
                if e.type_id != dag_type:
                    continue
                if legacy and "iteration_count" in e.custom_properties:
                    continue  # 2.5: "Found a ParallelFor task ... Skipping it."
                walk(e.id)

        walk(dag_id)
        return tasks

    @_locked
    def cached_execution(self, fingerprint: str, pipeline_name: str) -> Any:  # noqa: ANN401
        """``GetExecutionCache``: the newest COMPLETE execution of the pipeline with this fingerprint."""
        pb = self._pb
        names = {
            c.id: c.custom_properties["pipeline_name"].string_value
            for c in self.store.get_contexts_by_type(RUN_CONTEXT)
        }
        hits = []
        for context_id, name in names.items():
            if name != pipeline_name:
                continue
            for e in self.store.get_executions_by_context(context_id):
                props = e.custom_properties
                if e.last_known_state == pb.Execution.COMPLETE and (
                    props["cache_fingerprint"].string_value == fingerprint
                    if "cache_fingerprint" in props
                    else False
                ):
                    hits.append(e)
        return max(hits, key=lambda e: e.id) if hits else None

    @_locked
    def output_artifact_ids(self, exec_id: int) -> dict[str, int]:
        pb = self._pb
        return {
            e.path.steps[0].key: e.artifact_id
            for e in self.store.get_events_by_execution_ids([exec_id])
            if e.type == pb.Event.OUTPUT and e.path.steps
        }

    @_locked
    def output_artifact(self, producer: Any, key: str, schema_title: str = "") -> Any:  # noqa: ANN401
        """The producer's output ``key`` as a RuntimeArtifact, metadata converted back."""
        ids = self.output_artifact_ids(producer.id)
        if key not in ids:
            raise BackendError(f"cannot find output artifact key {key!r} in producer task")
        return self._runtime_artifact(ids[key], schema_title)

    @_locked
    def _runtime_artifact(self, artifact_id: int, schema_title: str = "") -> Any:  # noqa: ANN401
        from kfp.pipeline_spec import pipeline_spec_pb2

        [artifact] = self.store.get_artifacts_by_id([artifact_id])
        if not schema_title:
            [atype] = self.store.get_artifact_types_by_id([artifact.type_id])
            schema_title = atype.name
        rta = pipeline_spec_pb2.RuntimeArtifact(name=str(artifact.id), uri=artifact.uri)
        rta.type.schema_title = schema_title
        for field, value in artifact.custom_properties.items():
            rta.metadata.fields[field].CopyFrom(from_mlmd_value(value))
        return rta


def task_key(execution: Any, parent_dag_id: int, iteration_dag: Any, legacy: bool) -> str:  # noqa: ANN401
    """The key ``getDAGTasks`` maps an execution by: 2.5 its task name; 2.14+ name_<DAG id>[_idx_<i>]."""
    name = execution.custom_properties["task_name"].string_value
    if legacy:
        return name
    key = f"{name}_{parent_dag_id}"
    if "iteration_index" in execution.custom_properties:
        return f"{key}_idx_{execution.custom_properties['iteration_index'].int_value}"
    if iteration_dag:
        return f"{key}_idx_{iteration_dag.custom_properties['iteration_index'].int_value}"
    return key
