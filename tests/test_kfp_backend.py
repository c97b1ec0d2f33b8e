"""The backend emulator behaves as the open-source KFP backend: task lookup by recorded task name,
metadata through ML Metadata, Go-rendered executor input, pods that see only the built wheel.

No ``from __future__ import annotations`` here: KFP reads the component annotations.
"""

import json
import re
import uuid
from pathlib import Path

import pytest
from kfp import compiler, dsl
from kfp.dsl import Artifact, Input, Output

from pipelines.backend.metadata import BackendError, BackendMetadata, from_mlmd_value, to_mlmd_value
from pipelines.backend.runner import Backend, render_executor_input, to_value

# --- Unit: the conversions, on a real ML Metadata store ---------------------------------------------


def test_metadata_makes_the_ml_metadata_round_trip_of_the_launcher_and_driver(tmp_path):
    from google.protobuf import json_format

    store = BackendMetadata(tmp_path / "mlmd.sqlite")
    ctx = store.run_context("r", "p")
    exec_id = store.create_execution(ctx, "system.ContainerExecution", "t", 0, {})
    from kfp.pipeline_spec import pipeline_spec_pb2

    art = pipeline_spec_pb2.RuntimeArtifact(uri="minio://b/k")
    art.type.schema_title = "system.Dataset"
    metadata = {"flag": True, "n": 3, "x": 0.5, "s": "a", "cols": ["a", "b"], "d": {"k": 1}}
    json_format.ParseDict(metadata, art.metadata)
    store.record_outputs(ctx, exec_id, {"out": art})
    [producer] = store.dag_tasks(ctx, 0).values()
    back = store.output_artifact(producer, "out", "system.Dataset")
    assert json_format.MessageToDict(back.metadata) == {
        "flag": 1.0,
        "n": 3.0,
        "x": 0.5,
        "s": "a",
        "cols": {"list": ["a", "b"]},
        "d": {"struct": {"k": 1.0}},
    }


def test_a_null_metadata_value_is_refused_as_the_launcher_refuses_it():
    with pytest.raises(BackendError, match="metadata 'mae': unknown/unsupported value type null"):
        to_mlmd_value("mae", to_value(None))
    assert from_mlmd_value(to_mlmd_value("ok", to_value(False))).number_value == 0.0


def test_executor_input_numbers_are_rendered_as_go_protojson_renders_them():
    from kfp.pipeline_spec import pipeline_spec_pb2

    ei = pipeline_spec_pb2.ExecutorInput()
    ei.inputs.parameter_values["mae_threshold"].number_value = 8000.0
    ei.inputs.parameter_values["degradation"].number_value = 0.05
    rendered = json.loads(render_executor_input(ei))["inputs"]["parameterValues"]
    assert rendered == {"mae_threshold": 8000, "degradation": 0.05}
    assert isinstance(rendered["mae_threshold"], int)  # what the component receives for a float


def test_the_cache_key_is_the_drivers_and_names_the_pvc_from_2_15():
    from kfp.pipeline_spec import pipeline_spec_pb2

    from pipelines.backend.cache import cache_key, fingerprint, pvc_names

    def executor_input(artifact_name: str, uri: str):  # noqa: ANN202
        ei = pipeline_spec_pb2.ExecutorInput()
        ei.inputs.parameter_values["n"].number_value = 3
        ei.inputs.artifacts["data"].artifacts.add(name=artifact_name, uri="minio://b/in")
        out = ei.outputs.artifacts["model"].artifacts.add(uri=uri)
        out.type.schema_title = "system.Model"
        ei.outputs.parameters["Output"].output_file = "/tmp/kfp/outputs/Output"
        return ei

    container = {"image": "kubetfx/runtime:0.1.0", "command": ["python3"], "args": ["{{$}}"]}
    types = {"Output": "STRING"}

    def key(version: str, artifact: str = "7", uri: str = "minio://b/x", pvcs=("vol",)) -> str:  # noqa: ANN001
        return fingerprint(cache_key(executor_input(artifact, uri), types, container, list(pvcs), version))

    assert key("2.17") == key("2.17", uri="minio://b/another-run")  # output URIs are wiped
    assert key("2.17") != key("2.17", artifact="8")  # an upstream that ran again: a new artifact
    assert key("2.17") != key("2.17", pvcs=("other",))  # #12220, from 2.15
    assert key("2.14") == key("2.14", pvcs=("other",)) and key("2.5") == key("2.5", pvcs=())
    platform = {
        "platforms": {
            "kubernetes": {
                "deploymentSpec": {
                    "executors": {
                        "exec-a": {
                            "pvcMount": [
                                {
                                    "constant": "vol",
                                    "mountPath": "/mnt",
                                    "pvcNameParameter": {"runtimeValue": {"constant": "vol"}},
                                },
                                {
                                    "mountPath": "/other",
                                    "pvcNameParameter": {"componentInputParameter": "pvc"},
                                },
                            ]
                        }
                    }
                }
            }
        }
    }
    assert pvc_names(platform, "exec-a", {"pvc": to_value("from-a-parameter")}) == ["from-a-parameter", "vol"]


# --- Pods: a small pipeline through the emulator ----------------------------------------------------


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def produce(meta: str, out: Output[Artifact]):
    """Writes a file and the metadata given as JSON."""
    import json

    with open(out.path, "w") as fh:
        fh.write("payload")
    out.metadata.update(json.loads(meta))


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def consume(threshold: float, data: Input[Artifact], seen: Output[Artifact]):
    """Reports what a pod sees: its input, metadata, parameter, working dir and importable code."""
    import json
    import os

    report = {
        "content": open(data.path).read(),
        "input_path": data.path,
        "metadata": data.metadata,
        "threshold": threshold,
        "threshold_type": type(threshold).__name__,
        "cwd_entries": sorted(os.listdir(".")),
        "minio_files": sorted(
            os.path.relpath(os.path.join(d, f), "/minio") for d, _, fs in os.walk("/minio") for f in fs
        ),
    }
    import components

    report["components_file"] = components.__file__
    try:
        import benchmarks  # noqa: F401  (in the checkout, not in the wheel)

        report["benchmarks"] = "importable"
    except ModuleNotFoundError as e:
        report["benchmarks"] = str(e)
    with open(seen.path, "w") as fh:
        json.dump(report, fh)


def _compile(tmp_path: Path, display_name: str, meta: dict) -> Path:
    @dsl.pipeline(name="backend-check")
    def pipeline(threshold: float = 8000.0):
        p = produce(meta=json.dumps(meta))
        if display_name:
            p.set_display_name(display_name)
        consume(threshold=threshold, data=p.outputs["out"])

    path = tmp_path / "p.yaml"
    compiler.Compiler().compile(pipeline, str(path))
    return path


def _run(tmp_path: Path, yaml: Path, version: str):
    storage = tmp_path / "storage"
    storage.mkdir(exist_ok=True)
    backend = Backend(tmp_path / "backend", storage, version, log=lambda s: None)
    return backend, backend.run(yaml, {}, run_id=str(uuid.uuid4()))


@pytest.mark.parametrize("version", ["2.5", "2.14", "2.17"])
def test_a_display_name_unlike_the_task_key_breaks_2_5_only(kfp_backend_ready, tmp_path, version):
    _, run = _run(tmp_path, _compile(tmp_path, "produce_step", {"a": 1}), version)
    if version == "2.5":
        assert not run.succeeded
        assert [t.status for t in run.tasks] == ["SUCCESS", "FAILURE"]
        assert "cannot find producer task 'produce'" in run.tasks[1].error
    else:
        assert run.succeeded, [t.error for t in run.tasks]


def test_a_pod_sees_what_it_would_see_on_the_cluster(kfp_backend_ready, tmp_path):
    meta = {"flag": True, "rows": 3, "cols": ["a", "b"]}
    backend, run = _run(tmp_path, _compile(tmp_path, "", meta), "2.5")
    assert run.succeeded, [t.error for t in run.tasks]
    seen_uri = run.tasks[1].outputs["seen"].uri
    pattern = rf"minio://mlpipeline/v2/artifacts/backend-check/{run.run_id}/consume/[0-9a-f]{{32}}/seen"
    assert re.fullmatch(pattern, seen_uri)
    seen = json.loads(backend.objects.path(seen_uri).read_text())
    # The input was downloaded from the object store into an otherwise empty /minio.
    assert seen["content"] == "payload" and seen["input_path"].startswith("/minio/mlpipeline/")
    assert seen["minio_files"] == [seen["input_path"][len("/minio/") :]]
    assert seen["cwd_entries"] == []  # a fresh WORKDIR
    # Metadata as ML Metadata hands it back; a float parameter as protojson renders it.
    assert seen["metadata"] == {"flag": 1.0, "rows": 3.0, "cols": {"list": ["a", "b"]}}
    assert seen["threshold"] == 8000 and seen["threshold_type"] == "int"
    # The project comes from the built wheel; what the wheel lacks cannot be imported.
    assert str(backend.image) in seen["components_file"]
    assert "No module named 'benchmarks'" in seen["benchmarks"]
    for task in run.tasks:
        logs = backend.objects.path(task.outputs[next(iter(task.outputs))].uri).parent / "executor-logs"
        assert logs.exists()


def test_a_null_in_output_metadata_fails_the_task(kfp_backend_ready, tmp_path):
    _, run = _run(tmp_path, _compile(tmp_path, "", {"mae": None}), "2.14")
    assert [t.status for t in run.tasks] == ["FAILURE"]
    assert "unknown/unsupported value type null" in run.tasks[0].error
