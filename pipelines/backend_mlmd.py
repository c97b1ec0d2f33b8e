"""ML Metadata as the open-source KFP v2 backend uses it (backend/src/v2/metadata, KFP 2.5.0).

The backend emulator (``pipelines.kfp_backend``) records every execution and artifact here, in
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
(#11938) stores the task key; ``task_name_of`` picks the rule.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

BACKEND_VERSIONS = ("2.5", "2.14")
DAG_EXECUTION = "system.DAGExecution"
CONTAINER_EXECUTION = "system.ContainerExecution"
RUN_CONTEXT = "system.PipelineRun"


class BackendError(RuntimeError):
    """A task failed the way the backend's driver or launcher fails it."""


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

    def run_context(self, run_id: str, pipeline_name: str) -> int:
        pb = self._pb
        ctx = pb.Context(type_id=self._type_id("context", RUN_CONTEXT), name=run_id)
        ctx.custom_properties["pipeline_name"].string_value = pipeline_name
        return self.store.put_contexts([ctx])[0]

    def create_execution(
        self,
        context_id: int,
        type_name: str,
        task_name: str,
        parent_dag_id: int,
        parameters: dict[str, Any],
    ) -> int:
        """The driver's execution record (state RUNNING) with its inputs."""
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
        [context] = self.store.get_contexts_by_id([context_id])
        exec_id, _, _ = self.store.put_execution(execution, [], [context])
        return exec_id

    def record_inputs(self, exec_id: int, artifacts: dict[str, Any]) -> None:
        """INPUT events for the artifacts a task consumed (keyed by input name)."""
        pb = self._pb
        events = []
        for key, runtime_artifact in artifacts.items():
            event = pb.Event(
                artifact_id=int(runtime_artifact.name), execution_id=exec_id, type=pb.Event.INPUT
            )
            event.path.steps.add().key = key
            events.append(event)
        if events:
            self.store.put_events(events)

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
        events = []
        for (key, runtime_artifact), aid in zip(artifacts.items(), ids, strict=True):
            runtime_artifact.name = str(aid)
            event = pb.Event(artifact_id=aid, execution_id=exec_id, type=pb.Event.OUTPUT)
            event.path.steps.add().key = key
            events.append(event)
        if events:
            self.store.put_events(events)
            self.store.put_attributions_and_associations(
                [pb.Attribution(artifact_id=aid, context_id=context_id) for aid in ids], []
            )
        return artifacts

    def finish(self, exec_id: int, ok: bool) -> None:
        pb = self._pb
        [execution] = self.store.get_executions_by_id([exec_id])
        execution.last_known_state = pb.Execution.COMPLETE if ok else pb.Execution.FAILED
        self.store.put_executions([execution])

    def dag_tasks(self, context_id: int, dag_id: int) -> dict[str, Any]:
        """``getDAGTasks``: the run's executions under one DAG, keyed by their ``task_name``."""
        tasks = {}
        for execution in self.store.get_executions_by_context(context_id):
            props = execution.custom_properties
            if props["parent_dag_id"].int_value == dag_id:
                tasks[props["task_name"].string_value] = execution
        return tasks

    def output_artifact(self, producer: Any, key: str, schema_title: str) -> Any:  # noqa: ANN401
        """The producer's output ``key`` as a RuntimeArtifact, metadata converted back."""
        from kfp.pipeline_spec import pipeline_spec_pb2

        pb = self._pb
        events = self.store.get_events_by_execution_ids([producer.id])
        ids = [
            e.artifact_id
            for e in events
            if e.type == pb.Event.OUTPUT and e.path.steps and e.path.steps[0].key == key
        ]
        if not ids:
            raise BackendError(f"cannot find output artifact key {key!r} in producer task")
        [artifact] = self.store.get_artifacts_by_id(ids[-1:])
        rta = pipeline_spec_pb2.RuntimeArtifact(name=str(artifact.id), uri=artifact.uri)
        rta.type.schema_title = schema_title
        for field, value in artifact.custom_properties.items():
            rta.metadata.fields[field].CopyFrom(from_mlmd_value(value))
        return rta
