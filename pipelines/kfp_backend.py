"""Run a compiled pipeline YAML the way the open-source KFP v2 backend runs it, on this machine.

Modelled on the KFP 2.5.0 backend sources (``backend/src/v2/driver``,
``component/launcher_v2.go``, ``metadata/converter.go``, ``objectstore``) — what a task meets
on a cluster and ``kfp.local`` does not show:

- **Driver.** Each execution is recorded in a real ML Metadata store
  (``pipelines.backend_mlmd``) under the ``task_name`` the chosen backend version stores
  (2.5: ``taskInfo.name``; 2.14: the DAG task key) and upstream producers are looked up there
  by DAG task key, so a display name that differs from its key fails with the backend's
  "cannot find producer task". Input artifacts come back from MLMD with their metadata
  converted (bool → number, list → ``{"list": …}``); a null metadata value fails the task.
  ``{{$.pipeline_job_uuid}}`` and friends are resolved as the driver resolves them.
- **Launcher.** Output URIs are ``minio://mlpipeline/v2/artifacts/<pipeline>/<run id>/<task>/
  <uuid>/<output>``; the executor input is rendered as Go's protojson renders it (``8000``, not
  ``8000.0``); inputs are downloaded from the object-store stand-in into ``/minio/…`` and
  outputs uploaded from there after the command exits; ``/tmp/kfp_outputs/output_metadata.json``
  is parsed strictly as ``ExecutorOutput``; the task's log is uploaded as ``executor-logs``.
- **Pod.** A fresh process per task in its own Linux mount namespace (``unshare``): ``/minio``,
  ``/tmp/kfp_outputs`` and ``/tmp/kfp`` start empty in every task; the storage folder is
  mounted at the path the platform spec's ``pvcMount`` names; the working directory and HOME
  are a fresh folder (the image's WORKDIR); ``python3`` is an "image" environment holding the
  project's **built wheel** (not the checkout) over the locked dependencies, so a module the
  image lacks fails here first.
- **Pod in the image** (``image=``, ``submit.py --runner backend --image REF``): the user
  container is instead a container of the runtime image itself (``pipelines.backend_image``:
  ``buildah run``, uid 1000, the pod's mounts, no network but example-gen's); the driver and
  launcher above stay in the emulator, as they run outside the user's code on a cluster too.

Not modelled: parallel branches (tasks run one at a time in dependency order), retries,
caching, conditions and loops (the spec is refused if it has them); without ``image=``, the
pod's uid 1000.
"""

from __future__ import annotations

import json
import re
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from components import names
from pipelines.backend_image import NETWORKED_STAGES, exec_in_image, hand_to_pod_user, image_available
from pipelines.backend_mlmd import (
    CONTAINER_EXECUTION,
    DAG_EXECUTION,
    BackendError,
    BackendMetadata,
    task_name_of,
)
from pipelines.backend_pod import ObjectStore, available, build_image_env, exec_pod, local_path_for_uri

PIPELINE_ROOT = "minio://mlpipeline/v2/artifacts"
OUTPUT_METADATA_FILE = "/tmp/kfp_outputs/output_metadata.json"  # component.OutputMetadataFilepath
OUTPUT_PARAMETERS_DIR = "/tmp/kfp/outputs"
MINIO_MOUNT = "/minio"
EXECUTOR_LOGS = "executor-logs"


# --- Rendering, as the Go launcher does -------------------------------------------------------------


def _go_numbers(value: Any) -> Any:  # noqa: ANN401
    """Go's protojson writes an integral double without a fraction: 8000, not 8000.0."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return int(value)
    if isinstance(value, dict):
        return {k: _go_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_go_numbers(v) for v in value]
    return value


def render_executor_input(executor_input: Any) -> str:  # noqa: ANN401 (ExecutorInput)
    from google.protobuf import json_format

    return json.dumps(_go_numbers(json_format.MessageToDict(executor_input)), separators=(",", ":"))


_PLACEHOLDER = re.compile(r"\{\{\$[^}]*\}\}")


def resolve_command(args: list[str], executor_input: Any, rendered: str) -> list[str]:  # noqa: ANN401
    """The launcher's placeholder resolution for the forms a container command may use."""
    ei = executor_input

    def one(match: re.Match[str]) -> str:
        text = match.group(0)
        if text == "{{$}}":
            return rendered
        m = re.fullmatch(
            r"\{\{\$\.(inputs|outputs)\.(parameters|artifacts)\['([^']+)'\](?:\.(\w+))?\}\}", text
        )
        if not m:
            raise BackendError(f"unsupported placeholder {text}")
        side, kind, name, attr = m.groups()
        io = getattr(ei, side)
        if kind == "parameters" and side == "inputs":
            value = json.loads(render_executor_input_value(io.parameter_values[name]))
            return value if isinstance(value, str) else json.dumps(value)
        if kind == "parameters":
            return io.parameters[name].output_file
        artifact = io.artifacts[name].artifacts[0]
        return artifact.uri if attr == "uri" else MINIO_MOUNT + "/" + artifact.uri[len("minio://") :]

    return [_PLACEHOLDER.sub(one, a) for a in args]


def render_executor_input_value(value: Any) -> str:  # noqa: ANN401 (struct_pb2.Value)
    from google.protobuf import json_format

    return json.dumps(_go_numbers(json_format.MessageToDict(value)))


def to_value(python_value: Any) -> Any:  # noqa: ANN401 (struct_pb2.Value)
    from google.protobuf import json_format, struct_pb2

    return json_format.ParseDict(python_value, struct_pb2.Value())


# --- The run -------------------------------------------------------------------------------------------


def _runtime_constant(value: Any, run_id: str, pipeline_name: str, task: str) -> Any:  # noqa: ANN401
    """The driver's substitution of ``{{$.pipeline_job_uuid}}`` and friends in a constant."""
    text = value.string_value if value.WhichOneof("kind") == "string_value" else None
    known = {
        "{{$.pipeline_job_uuid}}": run_id,
        "{{$.pipeline_job_name}}": pipeline_name,
        "{{$.pipeline_job_resource_name}}": f"{pipeline_name}-{run_id}",
        "{{$.pipeline_task_name}}": task,
        "{{$.pipeline_task_uuid}}": str(uuid.uuid4()),
    }
    if text in known:
        return to_value(known[text])
    if text and _PLACEHOLDER.search(text):
        raise BackendError(f"unsupported runtime placeholder {text}")
    return value


def pvc_mounts(platform: dict[str, Any], executor_label: str) -> list[str]:
    executors = (
        platform.get("platforms", {}).get("kubernetes", {}).get("deploymentSpec", {}).get("executors", {})
    )
    return [m["mountPath"] for m in executors.get(executor_label, {}).get("pvcMount", [])]


def pod_labels(platform: dict[str, Any], executor_label: str) -> dict[str, str]:
    executors = (
        platform.get("platforms", {}).get("kubernetes", {}).get("deploymentSpec", {}).get("executors", {})
    )
    return executors.get(executor_label, {}).get("podMetadata", {}).get("labels", {})


class Backend:
    """One emulated cluster: object store, ML Metadata, image; runs compiled pipelines on it."""

    def __init__(
        self,
        root: Path,
        storage: Path,
        version: str = "2.5",
        log: Callable[[str], None] = print,
        image: str | None = None,
    ):
        reason = available() or (image_available(image) if image else None)
        if reason:
            raise BackendError(f"the backend emulator {reason}")
        task_name_of("", "", version)  # validates the version
        self.version = version
        self.storage = storage.resolve()
        self.root = root.resolve()
        self.objects = ObjectStore(self.root / "minio")
        self.mlmd = BackendMetadata(self.root / "mlmd.sqlite")
        self.log = log
        self.image_ref = image
        if image:  # the volume as the data loader leaves it: owned by the pods' uid
            hand_to_pod_user(self.storage)
            log(f"pods run in image {image} (buildah, uid 1000)")
        else:
            self.image = build_image_env(log)

    def run(
        self,
        yaml_path: Path,
        arguments: dict[str, Any],
        *,
        run_id: str,
        on_task_end: Callable[[Any], None] | None = None,
    ) -> Any:  # noqa: ANN401 (pipelines.local_runner.LocalRun)
        """Run every task of the compiled YAML; stop at the first failure, as the run would."""
        import yaml
        from google.protobuf import json_format
        from kfp.local import graph_utils
        from kfp.pipeline_spec import pipeline_spec_pb2

        from pipelines.local_runner import LocalRun, TaskRecord

        docs = list(yaml.safe_load_all(Path(yaml_path).read_text()))
        spec = json_format.ParseDict(docs[0], pipeline_spec_pb2.PipelineSpec())
        platform = docs[1] if len(docs) > 1 else {}
        name = spec.pipeline_info.name
        declared = spec.root.input_definitions.parameters
        unknown = set(arguments) - set(declared)
        if unknown:
            raise ValueError(f"unknown pipeline parameter(s) {sorted(unknown)}; valid: {sorted(declared)}")
        params = {k: d.default_value for k, d in declared.items() if d.HasField("default_value")}
        params.update({k: to_value(v) for k, v in arguments.items()})
        missing = [k for k, d in declared.items() if k not in params and not d.is_optional]
        if missing:
            raise ValueError(f"missing pipeline parameter(s) {missing}")
        context = self.mlmd.run_context(run_id, name)
        dag_id = self.mlmd.create_execution(context, DAG_EXECUTION, "", 0, params)
        pipeline_root = f"{PIPELINE_ROOT}/{name}/{run_id}"
        records: list[TaskRecord] = []
        start = time.perf_counter()
        order = graph_utils.topological_sort_tasks(spec.root.dag.tasks)
        ok = True
        while order and ok:
            key = order.pop()
            task = spec.root.dag.tasks[key]
            record = TaskRecord(task=key, component=task.component_ref.name)
            records.append(record)
            self.log(f"▶ {key}")
            t0 = time.perf_counter()
            try:
                self._run_task(
                    spec, platform, key, task, params, context, dag_id, pipeline_root, run_id, record
                )
                record.status = "SUCCESS"
            except BackendError as e:
                record.status, record.error = "FAILURE", str(e)
            record.seconds = time.perf_counter() - t0
            if record.status != "SUCCESS":
                ok = False
                self.log(f"✗ {record.error}")
            if on_task_end:
                on_task_end(record)
        self.mlmd.finish(dag_id, ok)
        return LocalRun(
            run_id=run_id,
            pipeline_root=self.root,
            tasks=records,
            seconds=time.perf_counter() - start,
            succeeded=ok,
        )

    # -- driver -----------------------------------------------------------------------------------

    def _resolve_inputs(
        self, spec: Any, key: str, task: Any, params: dict, context: int, dag_id: int, run_id: str
    ):  # noqa: ANN001, ANN202
        if task.HasField("trigger_policy") and task.trigger_policy.condition or task.WhichOneof("iterator"):
            raise BackendError(f"task {key}: conditions and loops are not emulated")
        component = spec.components[task.component_ref.name]
        values: dict[str, Any] = {}
        for pname, pdef in component.input_definitions.parameters.items():
            if pdef.HasField("default_value"):
                values[pname] = pdef.default_value
        for pname, pspec in task.inputs.parameters.items():
            kind = pspec.WhichOneof("kind")
            if kind == "component_input_parameter":
                if pspec.component_input_parameter not in params:
                    raise BackendError(
                        f"parent DAG does not have input parameter {pspec.component_input_parameter}"
                    )
                values[pname] = params[pspec.component_input_parameter]
            elif kind == "runtime_value":
                values[pname] = _runtime_constant(
                    pspec.runtime_value.constant, run_id, spec.pipeline_info.name, key
                )
            else:
                raise BackendError(f"task {key}: input parameter kind {kind} is not emulated")
        artifacts: dict[str, Any] = {}
        tasks = None
        for aname, aspec in task.inputs.artifacts.items():
            if aspec.WhichOneof("kind") != "task_output_artifact":
                raise BackendError(f"task {key}: input artifact {aname} is not a task output")
            producer_key = aspec.task_output_artifact.producer_task
            tasks = tasks if tasks is not None else self.mlmd.dag_tasks(context, dag_id)
            if producer_key not in tasks:
                raise BackendError(
                    f"[{key}] driver: failed to resolve inputs: resolving input artifact {aname!r}: "
                    f"cannot find producer task {producer_key!r} (backend {self.version} looks tasks up by "
                    f"the task_name it recorded: {sorted(tasks)})"
                )
            schema = component.input_definitions.artifacts[aname].artifact_type.schema_title
            artifacts[aname] = self.mlmd.output_artifact(
                tasks[producer_key], aspec.task_output_artifact.output_artifact_key, schema
            )
        missing = [
            n
            for n, d in component.input_definitions.parameters.items()
            if n not in values and not d.is_optional
        ]
        if missing:
            raise BackendError(f"[{key}] driver: no value for input parameter(s) {missing}")
        return component, values, artifacts

    def _run_task(
        self, spec, platform, key, task, params, context, dag_id, pipeline_root, run_id, record
    ) -> None:  # noqa: ANN001
        from google.protobuf import json_format
        from kfp.dsl import executor as kfp_executor
        from kfp.pipeline_spec import pipeline_spec_pb2

        component, values, in_artifacts = self._resolve_inputs(
            spec, key, task, params, context, dag_id, run_id
        )
        recorded_name = task_name_of(key, task.task_info.name, self.version)
        exec_id = self.mlmd.create_execution(context, CONTAINER_EXECUTION, recorded_name, dag_id, values)
        self.mlmd.record_inputs(exec_id, in_artifacts)
        ei = pipeline_spec_pb2.ExecutorInput()
        for pname, value in values.items():
            ei.inputs.parameter_values[pname].CopyFrom(value)
        for aname, artifact in in_artifacts.items():
            ei.inputs.artifacts[aname].artifacts.append(artifact)
        salt = uuid.uuid4().hex
        for oname, odef in component.output_definitions.artifacts.items():
            out = ei.outputs.artifacts[oname].artifacts.add()
            out.uri = f"{pipeline_root}/{recorded_name}/{salt}/{oname}"
            out.type.CopyFrom(odef.artifact_type)
        for oname in component.output_definitions.parameters:
            ei.outputs.parameters[oname].output_file = f"{OUTPUT_PARAMETERS_DIR}/{oname}"
        ei.outputs.output_file = OUTPUT_METADATA_FILE
        record.executor_input = json.loads(render_executor_input(ei))
        container = spec.deployment_spec["executors"][component.executor_label]["container"]
        rendered = render_executor_input(ei)
        args = list(container["args"]) if "args" in container else []
        command = resolve_command(list(container["command"]) + args, ei, rendered)
        pod = self.root / "pods" / run_id / key
        shutil.rmtree(pod, ignore_errors=True)
        ok = False
        try:
            for sub in ("minio", "kfp_outputs", "kfp", "tmp", "home"):
                (pod / sub).mkdir(parents=True)
            for artifact in in_artifacts.values():  # launcher: downloadArtifacts
                self.objects.download(artifact.uri, local_path_for_uri(pod, artifact.uri))
            for arts in ei.outputs.artifacts.values():  # launcher: prepareOutputFolders
                local_path_for_uri(pod, arts.artifacts[0].uri).parent.mkdir(parents=True, exist_ok=True)
            mounts = {
                MINIO_MOUNT: pod / "minio",
                "/tmp/kfp_outputs": pod / "kfp_outputs",
                "/tmp/kfp": pod / "kfp",
            }
            for mount_path in pvc_mounts(platform, component.executor_label):
                mounts[mount_path] = self.storage
            code, peak_kb, lines = self._exec(command, pod, mounts, platform, component.executor_label)
            record.peak_rss_mb = peak_kb / 1024
            log_uri = f"{pipeline_root}/{recorded_name}/{salt}/{EXECUTOR_LOGS}"
            (pod / EXECUTOR_LOGS).write_text("\n".join(lines) + "\n")
            self.objects.upload(pod / EXECUTOR_LOGS, log_uri)
            if code != 0:
                raise BackendError(_failure_line(key, code, lines))
            outputs = self._collect_outputs(ei, pod)
            logs = pipeline_spec_pb2.RuntimeArtifact(uri=log_uri)
            logs.type.schema_title = "system.Artifact"
            stored = self.mlmd.record_outputs(context, exec_id, {**outputs, EXECUTOR_LOGS: logs})
            record.outputs = {
                oname: kfp_executor.create_artifact_instance(json_format.MessageToDict(stored[oname]))
                for oname in outputs
            }
            ok = True
        except BackendError as e:
            if not str(e).startswith("["):
                raise BackendError(f"[{key}] {e}") from None
            raise
        finally:
            self.mlmd.finish(exec_id, ok)
            shutil.rmtree(pod, ignore_errors=True)  # the pod is gone; its outputs are uploaded

    def _exec(
        self, command: list[str], pod: Path, mounts: dict[str, Path], platform: dict, executor: str
    ) -> tuple[int, int, list[str]]:
        """The user container: in the runtime image when one was given, else the wheel environment."""
        if not self.image_ref:
            return exec_pod(command, pod, mounts, self.image, self.log)
        stage = pod_labels(platform, executor).get(names.POD_LABEL_STAGE, "")
        network = stage in NETWORKED_STAGES
        return exec_in_image(command, pod, mounts, self.image_ref, self.log, network=network)

    # -- launcher ---------------------------------------------------------------------------------

    def _collect_outputs(self, ei: Any, pod: Path) -> dict[str, Any]:  # noqa: ANN401
        """The executor output merged into the output artifacts, then uploaded (``uploadOutputArtifacts``)."""
        from google.protobuf import json_format
        from kfp.pipeline_spec import pipeline_spec_pb2

        produced = pipeline_spec_pb2.ExecutorOutput()
        output_file = pod / "kfp_outputs" / Path(OUTPUT_METADATA_FILE).name
        if output_file.exists():
            try:
                json_format.Parse(output_file.read_text(), produced)  # strict: unknown fields fail
            except json_format.ParseError as e:
                raise BackendError(f"failed to parse executor output {OUTPUT_METADATA_FILE}: {e}") from None
        outputs = {}
        for oname, arts in ei.outputs.artifacts.items():
            artifact = pipeline_spec_pb2.RuntimeArtifact()
            artifact.CopyFrom(arts.artifacts[0])
            if oname in produced.artifacts and produced.artifacts[oname].artifacts:
                src = produced.artifacts[oname].artifacts[0]
                for field, value in src.metadata.fields.items():
                    artifact.metadata.fields[field].CopyFrom(value)
                if src.uri:
                    artifact.uri = src.uri
            local = local_path_for_uri(pod, artifact.uri)
            if local.exists():
                self.objects.upload(local, artifact.uri)
            else:  # "We allow components to not produce output files"
                self.log(f"    launcher: local filepath {MINIO_MOUNT}/{artifact.uri[8:]} does not exist")
            outputs[oname] = artifact
        return outputs


def _failure_line(task: str, code: int, lines: list[str]) -> str:
    """The run's error for a failed pod: the StageError it died of, else the log's last lines."""
    from pipelines.local_runner import _stage_error_line

    stage_error = _stage_error_line(lines)
    if stage_error:
        return stage_error
    return f"[{task}] pod exited with status {code}: {' | '.join(lines[-3:])}"
