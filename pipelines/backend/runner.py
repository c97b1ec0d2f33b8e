"""Run a compiled pipeline YAML the way the open-source KFP v2 backend runs it, on this machine.

Modelled on the kubeflow/pipelines backend sources at tags 2.5.0, 2.14.0, 2.15.0 and 2.17.0
(``backend/src/v2/driver``, ``compiler/argocompiler``, ``cacheutils``, ``component/launcher_v2.go``,
``metadata``, ``objectstore``); ``version`` (``--backend-version`` 2.5, 2.14 or 2.17, default 2.17)
picks whose rules apply — what a task meets on a cluster and ``kfp.local`` does not show:

- **Driver.** Each execution is recorded in a real ML Metadata store
  (``pipelines.backend.metadata``) under the ``task_name`` the chosen backend version stores
  (2.5: ``taskInfo.name``; 2.14+: the DAG task key, #11938) and upstream producers are looked up
  there by DAG task key, so on 2.5 a display name that differs from its key fails with the
  backend's "cannot find producer task". Input artifacts come back from MLMD with their metadata
  converted (bool → number, list → ``{"list": …}``); a null metadata value fails the task.
  ``{{$.pipeline_job_uuid}}`` and friends are resolved as the driver resolves them.
- **DAGs** (``pipelines.backend.dag``): independent tasks at the same time, as Argo starts them;
  sub-DAGs (exit handlers, loops) with their own DAG executions; ParallelFor iterations as
  concurrent pods, at most ``parallelismLimit`` at a time;
  ``dsl.Collected`` (2.14+; on 2.5 the consumer's driver fails); exit tasks after the handled DAG
  whatever its state, with ``PipelineTaskFinalStatus`` on 2.14+ (2.5 refuses the run at creation).
- **Cache** (``pipelines.backend.cache``): a task compiled with caching on gets the driver's
  fingerprint (inputs, output types, image and command; the mounted PVCs from 2.15, #12220); a hit
  on an earlier successful execution of the same pipeline records a CACHED execution with the
  cached outputs and runs no pod. ``cache_disabled`` is the API server's switch.
- **Launcher.** Output URIs are ``minio://mlpipeline/v2/artifacts/<pipeline>/<run id>/<task>/
  <uuid>/<output>``; the executor input is rendered as Go's protojson renders it (``8000``, not
  ``8000.0``); inputs are downloaded from the object-store stand-in into ``/minio/…`` and
  outputs uploaded from there after the command exits; ``/tmp/kfp_outputs/output_metadata.json``
  is parsed strictly as ``ExecutorOutput`` and its ``parameterValues`` are the task's output
  parameters (``outputs`` in MLMD); the task's log is uploaded as ``executor-logs``.
- **Pod.** A fresh process per task in its own Linux mount namespace (``unshare``): ``/minio``,
  ``/tmp/kfp_outputs`` and ``/tmp/kfp`` start empty in every task; the storage folder is
  mounted at the path the platform spec's ``pvcMount`` names; the working directory and HOME
  are a fresh folder (the image's WORKDIR); ``python3`` is an "image" environment holding the
  project's **built wheel** (not the checkout) over the locked dependencies, so a module the
  image lacks fails here first.
- **Pod in the image** (``image=``, ``submit.py --runner backend --image REF``): the user
  container is instead a container of the runtime image itself (``pipelines.backend.image``:
  ``buildah run``, uid 1000, the pod's mounts, no network but example-gen's); the driver and
  launcher above stay in the emulator, as they run outside the user's code on a cluster too.

Not modelled: retries; conditions (``dsl.If``) and artifact iterators (the run is refused); the
per-run workspace PVC (KEP-11875); the API server's run-level ``enable_caching`` override; an
executor output from a newer SDK (#12514, #11662: parsed strictly on every version); ``.after()``
on an ExitHandler (#13112, 2.17: kfp 2.13 cannot compile it); the error code and message of a
final status (the backend leaves them empty too); without ``image=``, the pod's uid 1000.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from components import names
from pipelines.backend import cache
from pipelines.backend.dag import Run, check_creatable, run_dag
from pipelines.backend.image import NETWORKED_STAGES, exec_in_image, hand_to_pod_user, image_available
from pipelines.backend.inputs import resolve_inputs
from pipelines.backend.metadata import (
    CONTAINER_EXECUTION,
    DAG_EXECUTION,
    DEFAULT_VERSION,
    BackendError,
    BackendMetadata,
    task_name_of,
)
from pipelines.backend.pod import ObjectStore, available, build_image_env, exec_pod, local_path_for_uri
from pipelines.backend.render import (
    MINIO_MOUNT,
    render_executor_input,
    resolve_command,
    to_value,
)
from pipelines.tracking import PipelineTracking, env_command

PIPELINE_ROOT = "minio://mlpipeline/v2/artifacts"
OUTPUT_METADATA_FILE = "/tmp/kfp_outputs/output_metadata.json"  # component.OutputMetadataFilepath
OUTPUT_PARAMETERS_DIR = "/tmp/kfp/outputs"
EXECUTOR_LOGS = "executor-logs"


def _executors(platform: dict[str, Any]) -> dict[str, Any]:
    return platform.get("platforms", {}).get("kubernetes", {}).get("deploymentSpec", {}).get("executors", {})


def pvc_mounts(platform: dict[str, Any], executor_label: str) -> list[str]:
    return [m["mountPath"] for m in _executors(platform).get(executor_label, {}).get("pvcMount", [])]


def pod_labels(platform: dict[str, Any], executor_label: str) -> dict[str, str]:
    return _executors(platform).get(executor_label, {}).get("podMetadata", {}).get("labels", {})


class Backend:
    """One emulated cluster: object store, ML Metadata, image; runs compiled pipelines on it."""

    def __init__(
        self,
        root: Path,
        storage: Path,
        version: str = DEFAULT_VERSION,
        log: Callable[[str], None] = print,
        image: str | None = None,
        cache_disabled: bool = False,
    ):
        reason = available() or (image_available(image) if image else None)
        if reason:
            raise BackendError(f"the backend emulator {reason}")
        task_name_of("", "", version)  # validates the version
        self.version = version
        self.cache_disabled = cache_disabled
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
    ) -> Any:  # noqa: ANN401 (pipelines.run_result.LocalRun)
        """Create the run (or refuse it as the API server would: RunRefused), then run its DAGs."""
        import yaml
        from google.protobuf import json_format
        from kfp.pipeline_spec import pipeline_spec_pb2

        from pipelines.run_result import LocalRun

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
        check_creatable(spec, self.version)
        context = self.mlmd.run_context(run_id, name)
        dag_id = self.mlmd.create_execution(context, DAG_EXECUTION, "", 0, params)
        run = Run(spec, platform, context, run_id, f"{PIPELINE_ROOT}/{name}/{run_id}", on_task_end)
        plain = {k: json_format.MessageToDict(v) for k, v in params.items()}
        run.tracker = PipelineTracking.start(run_id, name, plain, self.log)  # MLflow, if configured
        start = time.perf_counter()
        ok = run_dag(self, run, dag_id, "root")
        self.mlmd.finish(dag_id, ok)
        run.tracker.end(ok)
        return LocalRun(
            run_id=run_id,
            pipeline_root=self.root,
            tasks=run.records,
            seconds=time.perf_counter() - start,
            succeeded=ok,
        )

    def executions(self, run_id: str) -> list[tuple[str, str]]:
        """(task name, state) of the run's container executions in ML Metadata, in creation order."""
        from ml_metadata.proto import metadata_store_pb2 as pb

        [context] = [c for c in self.mlmd.store.get_contexts() if c.name == run_id]
        return [
            (e.custom_properties["task_name"].string_value, pb.Execution.State.Name(e.last_known_state))
            for e in sorted(self.mlmd.store.get_executions_by_context(context.id), key=lambda e: e.id)
            if "parameter_producer_task" not in e.custom_properties
            and e.custom_properties["task_name"].string_value
        ]

    # -- a container task: driver, then launcher in its pod ------------------------------------------------

    def run_container(self, run: Run, dag_id: int, key: str, task: Any, component: Any, suffix: str) -> bool:  # noqa: ANN401
        from pipelines.run_result import TaskRecord

        record = TaskRecord(task=key + suffix, component=task.component_ref.name)
        run.started(record)
        self.log(f"▶ {record.task}")
        t0 = time.perf_counter()
        try:
            self._container(run, dag_id, key, task, component, record)
            record.status = "SUCCESS"
        except BackendError as e:
            text = str(e)
            record.status, record.error = (
                "FAILURE",
                text if text.startswith("[") else f"[{record.task}] {text}",
            )
        record.seconds = time.perf_counter() - t0
        run.tracker.end_task(record.task, record.status == "SUCCESS", record.executor_input)
        if record.status != "SUCCESS":
            self.log(f"✗ {record.error}")
        run.ended(record)
        return record.status == "SUCCESS"

    def _executor_input(self, run: Run, values: dict, artifacts: dict, component: Any, name: str) -> Any:  # noqa: ANN401
        """The executor input the driver builds (``provisionOutputs``); outputs under one fresh prefix."""
        from kfp.pipeline_spec import pipeline_spec_pb2

        ei = pipeline_spec_pb2.ExecutorInput()
        for pname, value in values.items():
            ei.inputs.parameter_values[pname].CopyFrom(value)
        for aname, arts in artifacts.items():
            ei.inputs.artifacts[aname].artifacts.extend(arts)
        salt = uuid.uuid4().hex
        for oname, odef in component.output_definitions.artifacts.items():
            out = ei.outputs.artifacts[oname].artifacts.add()
            out.uri = f"{run.pipeline_root}/{name}/{salt}/{oname}"
            out.type.CopyFrom(odef.artifact_type)
        for oname in component.output_definitions.parameters:
            ei.outputs.parameters[oname].output_file = f"{OUTPUT_PARAMETERS_DIR}/{oname}"
        ei.outputs.output_file = OUTPUT_METADATA_FILE
        return ei, f"{run.pipeline_root}/{name}/{salt}"

    def _fingerprint(self, run: Run, dag_id: int, task: Any, component: Any, ei: Any, container: dict) -> str:  # noqa: ANN401
        """The driver's cache fingerprint ("" when the task or the server has caching off)."""
        if self.cache_disabled or not task.caching_options.enable_cache:
            return ""
        from kfp.pipeline_spec import pipeline_spec_pb2

        dag_inputs = self.mlmd.execution(dag_id).custom_properties["inputs"].struct_value.fields
        types = {
            n: pipeline_spec_pb2.ParameterType.ParameterTypeEnum.Name(d.parameter_type)
            for n, d in component.output_definitions.parameters.items()
        }
        pvcs = cache.pvc_names(run.platform, component.executor_label, dict(dag_inputs))
        return cache.fingerprint(cache.cache_key(ei, types, container, pvcs, self.version))

    def _reuse(self, run: Run, exec_id: int, cached: Any, component: Any, record: Any) -> None:  # noqa: ANN401
        """``reuseCachedOutputs``: the cached execution's outputs, published as a CACHED execution."""
        from google.protobuf import json_format
        from kfp.dsl import executor as kfp_executor

        ids = self.mlmd.output_artifact_ids(cached.id)
        linked = {n: ids[n] for n in component.output_definitions.artifacts if n in ids}
        self.mlmd.link_outputs(run.context, exec_id, linked)
        params = dict(cached.custom_properties["outputs"].struct_value.fields)
        self.mlmd.finish(exec_id, "CACHED", outputs=params)
        for oname, aid in linked.items():
            artifact = self.mlmd._runtime_artifact(aid)
            record.outputs[oname] = kfp_executor.create_artifact_instance(json_format.MessageToDict(artifact))
        record.outputs.update({n: json_format.MessageToDict(v) for n, v in params.items()})
        self.log(f"    driver: cache hit, outputs of execution {cached.id} reused; no pod")

    def _container(self, run: Run, dag_id: int, key: str, task: Any, component: Any, record: Any) -> None:  # noqa: ANN401
        from google.protobuf import json_format
        from kfp.dsl import executor as kfp_executor
        from kfp.pipeline_spec import pipeline_spec_pb2

        values, in_artifacts = resolve_inputs(self, run, dag_id, key, task, component)
        recorded_name = task_name_of(key, task.task_info.name, self.version)
        ei, prefix = self._executor_input(run, values, in_artifacts, component, recorded_name)
        record.executor_input = json.loads(render_executor_input(ei))
        container = json_format.MessageToDict(
            run.spec.deployment_spec["executors"][component.executor_label]["container"]
        )
        fingerprint = self._fingerprint(run, dag_id, task, component, ei, container)
        cached = self.mlmd.cached_execution(fingerprint, run.spec.pipeline_info.name) if fingerprint else None
        extra = {"cache_fingerprint": fingerprint} if fingerprint else {}
        exec_id = self.mlmd.create_execution(
            run.context, CONTAINER_EXECUTION, recorded_name, dag_id, values, extra
        )
        self.mlmd.record_inputs(exec_id, in_artifacts)
        if cached is not None:
            self._reuse(run, exec_id, cached, component, record)
            return
        rendered = render_executor_input(ei)
        args = list(container["args"]) if "args" in container else []
        command = resolve_command(list(container["command"]) + args, ei, rendered)
        command = env_command(run.tracker.start_task(record.task), command)  # the driver's pod env
        pod = self.root / "pods" / run.run_id / f"{key}-{exec_id}"
        shutil.rmtree(pod, ignore_errors=True)
        ok, params = False, None
        try:
            for sub in ("minio", "kfp_outputs", "kfp", "tmp", "home"):
                (pod / sub).mkdir(parents=True)
            for arts in in_artifacts.values():  # launcher: downloadArtifacts
                for artifact in arts:
                    self.objects.download(artifact.uri, local_path_for_uri(pod, artifact.uri))
            for out in ei.outputs.artifacts.values():  # launcher: prepareOutputFolders
                local_path_for_uri(pod, out.artifacts[0].uri).parent.mkdir(parents=True, exist_ok=True)
            mounts = {
                MINIO_MOUNT: pod / "minio",
                "/tmp/kfp_outputs": pod / "kfp_outputs",
                "/tmp/kfp": pod / "kfp",
            }
            for mount_path in pvc_mounts(run.platform, component.executor_label):
                mounts[mount_path] = self.storage
            code, peak_kb, lines = self._exec(command, pod, mounts, run.platform, component.executor_label)
            record.peak_rss_mb = peak_kb / 1024
            log_uri = f"{prefix}/{EXECUTOR_LOGS}"
            (pod / EXECUTOR_LOGS).write_text("\n".join(lines) + "\n")
            self.objects.upload(pod / EXECUTOR_LOGS, log_uri)
            if code != 0:
                raise BackendError(_failure_line(record.task, code, lines))
            outputs, params = self._collect_outputs(ei, pod, component)
            logs = pipeline_spec_pb2.RuntimeArtifact(uri=log_uri)
            logs.type.schema_title = "system.Artifact"
            stored = self.mlmd.record_outputs(run.context, exec_id, {**outputs, EXECUTOR_LOGS: logs})
            record.outputs = {
                oname: kfp_executor.create_artifact_instance(json_format.MessageToDict(stored[oname]))
                for oname in outputs
            }
            record.outputs.update({n: json_format.MessageToDict(v) for n, v in params.items()})
            ok = True
        finally:
            self.mlmd.finish(
                exec_id, ok, outputs=params if ok else None, fingerprint=fingerprint if ok else ""
            )
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

    def _collect_outputs(self, ei: Any, pod: Path, component: Any) -> tuple[dict[str, Any], dict[str, Any]]:  # noqa: ANN401
        """The executor output merged into the output artifacts, then uploaded; and output parameters.

        ``uploadOutputArtifacts``; a parameter is the executor output's ``parameterValues`` entry,
        else its file.
        """
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
        params = {}
        for oname, odef in component.output_definitions.parameters.items():
            if oname in produced.parameter_values:
                params[oname] = produced.parameter_values[oname]
                continue
            path = pod / "kfp" / "outputs" / oname  # /tmp/kfp/outputs/<name>
            if path.exists():
                text = path.read_text()
                params[oname] = to_value(
                    text
                    if odef.parameter_type == pipeline_spec_pb2.ParameterType.STRING
                    else json.loads(text)
                )
        return outputs, params


def _failure_line(task: str, code: int, lines: list[str]) -> str:
    """The run's error for a failed pod: the StageError it died of, else the log's last lines."""
    from pipelines.run_result import _stage_error_line

    stage_error = _stage_error_line(lines)
    if stage_error:
        return stage_error
    return f"[{task}] pod exited with status {code}: {' | '.join(lines[-3:])}"
