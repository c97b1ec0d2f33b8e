"""Wiring: the compiled YAML parses strictly, every task is placed on the cluster, and the
whole pipeline runs locally from the compiled spec (both local runners)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from components import names
from pipelines.kubetfx_pipeline import STAGE_RESOURCES, ClusterOptions, compile_pipeline
from pipelines.local.inprocess import load_pipeline_spec

REPO = Path(__file__).resolve().parents[1]
STAGES = names.STAGES
TASKS = (*STAGES, names.STAGE_FINALIZE)  # the ten inside the exit handler, and its exit task
# Small settings so the end-to-end tier takes a minute, not the workload's full budget.
FAST = {"tuner_trials": "1", "tuner_steps": "20", "train_steps": "60", "eval_steps": "10"}


def dag_tasks(doc: dict) -> dict[str, dict]:
    """Every task of the compiled pipeline by key: the root DAG's and every sub-DAG's (the exit handler's)."""
    tasks = dict(doc["root"]["dag"]["tasks"])
    for component in doc["components"].values():
        tasks.update(component.get("dag", {}).get("tasks", {}))
    return tasks


def container_tasks(doc: dict) -> dict[str, dict]:
    """The tasks that run a container (not a sub-DAG)."""
    return {
        k: t for k, t in dag_tasks(doc).items() if "dag" not in doc["components"][t["componentRef"]["name"]]
    }


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    path = tmp_path_factory.mktemp("yaml") / "p.yaml"
    compile_pipeline(
        str(path),
        ClusterOptions(image="reg.example/kubetfx/runtime:9", pvc_name="pvc-x", mount_path="/mnt/x"),
    )
    return path


def test_compile_py_writes_the_upload_file(tmp_path):
    out = tmp_path / "k.yaml"
    proc = subprocess.run(
        [sys.executable, "compile.py", "--output", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    spec = load_pipeline_spec(out)
    # The ten stages inside the exit handler; finalize runs after it however they ended.
    assert set(spec.root.dag.tasks) == {"exit-handler-1", "finalize"}
    exit_handler = spec.components[spec.root.dag.tasks["exit-handler-1"].component_ref.name]
    assert set(exit_handler.dag.tasks) == {s.replace("_", "-") for s in STAGES}
    final = spec.root.dag.tasks["finalize"]
    assert list(final.dependent_tasks) == ["exit-handler-1"]
    assert final.trigger_policy.strategy == final.trigger_policy.TriggerStrategy.ALL_UPSTREAM_TASKS_COMPLETED
    # No PipelineTaskFinalStatus: KFP 2.5 refuses a run that asks for it at creation.
    assert not any(p.HasField("task_final_status") for p in final.inputs.parameters.values())


def test_yaml_parses_strictly_with_kfp_protos(compiled):
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    spec = load_pipeline_spec(compiled)  # strict: an unknown field raises
    docs = list(yaml.safe_load_all(compiled.read_text()))
    assert len(docs) == 2, "the Kubernetes platform spec is the second document"
    platform = pipeline_spec_pb2.PlatformSpec()
    json_format.ParseDict(docs[1], platform)
    assert {t["componentRef"]["name"].removeprefix("comp-") for t in container_tasks(docs[0]).values()} == {
        s.replace("_", "-") for s in TASKS
    }
    assert spec.root.dag.tasks  # parsed


def test_every_task_mounts_the_pvc_and_has_resources_image_and_cache_policy(compiled):
    spec_doc, platform = list(yaml.safe_load_all(compiled.read_text()))
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert len(executors) == len(TASKS)
    for name, cfg in executors.items():
        assert cfg["pvcMount"] == [
            {
                "constant": "pvc-x",
                "mountPath": "/mnt/x",
                "pvcNameParameter": {"runtimeValue": {"constant": "pvc-x"}},
            }
        ] or (cfg["pvcMount"][0]["mountPath"] == "/mnt/x"), name
    for name, ex in spec_doc["deploymentSpec"]["executors"].items():
        c = ex["container"]
        assert c["image"] == "reg.example/kubetfx/runtime:9"
        assert c["resources"]["resourceCpuRequest"] and c["resources"]["resourceMemoryLimit"], name
        assert "pip install" not in " ".join(c["command"]), "nothing may be pip-installed at pod start"
    tasks = container_tasks(spec_doc)
    assert len(tasks) == len(TASKS)
    for task in tasks.values():
        stage = task["taskInfo"]["name"].replace("-", "_")
        assert stage in STAGE_RESOURCES
        assert task.get("cachingOptions", {}).get("enableCache", False) is STAGE_RESOURCES[stage].cache
    assert spec_doc["root"]["inputDefinitions"]["parameters"]["storage_root"]["defaultValue"] == "/mnt/x"


@pytest.mark.parametrize("yaml_file", ["compiled", "checked_in"])
def test_every_producer_is_found_by_the_kfp_2_5_driver(compiled, yaml_file):
    """KFP 2.5 records a task under ``taskInfo.name`` and finds producers by DAG task key
    (kubeflow/pipelines#11173): every name a consumer looks up must be one that was recorded."""
    from pipelines.backend.metadata import task_name_of

    path = compiled if yaml_file == "compiled" else REPO / "pl_yaml_output" / "kubetfx_pipeline.yaml"
    tasks = dag_tasks(yaml.safe_load_all(path.read_text()).__next__())
    assert len(tasks) == len(TASKS) + 1  # and the exit handler's own DAG task
    recorded = {task_name_of(key, t["taskInfo"]["name"], "2.5") for key, t in tasks.items()}
    for key, task in tasks.items():
        for name, spec in task.get("inputs", {}).get("artifacts", {}).items():
            producer = spec["taskOutputArtifact"]["producerTask"]
            assert producer in recorded, f"{key}.{name}: the 2.5 driver cannot find producer {producer!r}"
        assert task["taskInfo"]["name"] == key


def test_the_2_5_lookup_rule_rejects_a_display_name_unlike_its_key():
    from pipelines.backend.metadata import task_name_of

    assert task_name_of("example-gen", "example_gen", "2.5") == "example_gen"  # the old defect
    assert task_name_of("example-gen", "example_gen", "2.14") == "example-gen"


def test_every_pod_carries_the_labels_a_network_policy_selects(compiled):
    _, platform = list(yaml.safe_load_all(compiled.read_text()))
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    stages = set()
    for cfg in executors.values():
        labels = cfg["podMetadata"]["labels"]
        assert labels[names.POD_LABEL_PART_OF] == names.POD_LABEL_APP
        stages.add(labels[names.POD_LABEL_STAGE])
    assert stages == {s.replace("_", "-") for s in TASKS}


def test_tune_and_train_get_more_than_validate_and_push():
    def mem(s: str) -> float:
        return float(s[:-2]) * (1024 if s.endswith("Gi") else 1)

    for big in (names.STAGE_TUNE, names.STAGE_TRAIN):
        for small in (names.STAGE_VALIDATE, names.STAGE_PUSH):
            assert mem(STAGE_RESOURCES[big].memory_limit) > mem(STAGE_RESOURCES[small].memory_limit)
            assert float(STAGE_RESOURCES[big].cpu_limit) > float(
                STAGE_RESOURCES[small].cpu_limit.rstrip("m")
            ) / (1000 if STAGE_RESOURCES[small].cpu_limit.endswith("m") else 1)


def test_compiling_does_not_import_tensorflow():
    code = (
        "import sys; from pipelines.kubetfx_pipeline import compile_pipeline; import tempfile, os;"
        "compile_pipeline(os.path.join(tempfile.mkdtemp(), 'p.yaml'));"
        "heavy = [m for m in ('tensorflow', 'tensorflow_data_validation', 'tensorflow_transform',"
        " 'tensorflow_model_analysis', 'pandas', 'keras') if m in sys.modules];"
        " print(heavy); assert not heavy"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _submit(tmp_path, *extra, data=None):
    cmd = [sys.executable, "submit.py", "--storage", str(tmp_path / "storage")]
    if data:
        cmd += ["--data", str(data)]
    for k, v in FAST.items():
        cmd += ["--param", f"{k}={v}"]
    return subprocess.run(cmd + list(extra), cwd=REPO, capture_output=True, text=True, timeout=1500)


@pytest.mark.e2e
def test_local_run_twice_pushes_then_compares_with_baseline(tmp_path):
    first = _submit(tmp_path)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    for stage in STAGES:
        assert f"✔ {stage} " in first.stdout  # one name per stage, as in errors and logs
    storage = tmp_path / "storage"
    index = json.loads((storage / names.REGISTRY_INDEX).read_text())
    versions = index["versions"] if isinstance(index, dict) else index
    assert [v["version"] for v in versions] == [1]
    assert (storage / names.SERVING_DIR / names.MODEL_NAME / "1" / "saved_model.pb").exists()

    second = _submit(tmp_path)
    assert second.returncode == 0, second.stdout[-4000:] + second.stderr[-4000:]
    assert "baseline version 1" in second.stdout  # the baseline resolved by the second run
    for run in (first, second):  # the console: a line per stage, no library noise, the outcome last
        lines = run.stdout.strip().splitlines()
        assert len(lines) <= 30, run.stdout
        shown = run.stdout + run.stderr
        assert not any(noise in shown for noise in ("Epoch 1/", "crcmod", "Instructions for"))
        assert lines[-1].startswith("TensorBoard: ") and "--logdir" in lines[-1]
        reports = [x.split()[-1] for x in lines if x.strip().endswith(names.REPORT_HTML_FILE)]
        assert len(reports) == 3 and all(Path(r).is_file() for r in reports), run.stdout
        assert f"{names.PROGRESS_PREFIX}trial 1/1: " in run.stdout  # the tuner's trial, as it ends
    assert "BLESSED, pushed insurance v1 → " in first.stdout
    assert "BLESSED, pushed insurance v2 → " in second.stdout

    lineage = subprocess.run(
        [sys.executable, "-m", "pipelines.lineage", "--storage", str(storage), "--version", "1", "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert lineage.returncode == 0, lineage.stderr
    trace = json.loads(lineage.stdout)
    assert trace["data"]["input_files"][0].endswith("insurance.csv")
    assert trace["schema"] and trace["transform_graph"] and trace["hyperparameters"]
    shown = subprocess.run(
        [sys.executable, "-m", "pipelines.lineage", "--storage", str(storage), "--version", "2"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert re.search(r"hyperparameters: (\w+ [\d.e-]+, )*\w+ [\d.e-]+  \(searched: 1 trial,", shown), shown
    assert not re.search(r"(num_layers|units) \d+\.0\b", shown), shown  # as users wrote them
    assert "  evaluation:      BLESSED, MAE " in shown
    assert re.search(r"  baseline:        version 1 \(run local-[\w-]+, MAE [\d,]+\)", shown), shown
    missing = subprocess.run(
        [sys.executable, "-m", "pipelines.lineage", "--storage", str(storage), "--version", "9"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 1 and missing.stderr.rstrip().endswith("pushed versions: 1, 2")
    _tensorboard_serves(Path(second.stdout.strip().splitlines()[-1].split("--logdir ")[1]))


def _tensorboard_serves(logdir: Path) -> None:
    """TensorBoard from the locked environment starts on a run's logs and serves their scalars,
    and the tuner's trials in its HParams view."""
    import socket
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tensorboard = Path(sys.executable).parent / "tensorboard"
    proc = subprocess.Popen(
        [str(tensorboard), "--logdir", str(logdir), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline, tags = time.monotonic() + 90, {}
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                url = f"http://127.0.0.1:{port}/data/plugin/scalars/tags"
                tags = json.loads(urllib.request.urlopen(url, timeout=5).read())
                if any("epoch_loss" in t for t in tags.values()):
                    break
            except OSError:
                pass
            time.sleep(1)
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        assert any("epoch_loss" in t for t in tags.values()), tags
        base = f"http://127.0.0.1:{port}/data"
        plugins = json.loads(urllib.request.urlopen(f"{base}/plugins_listing", timeout=10).read())
        assert plugins["hparams"]["enabled"], plugins
        request = urllib.request.Request(
            f"{base}/plugin/hparams/session_groups",
            data=json.dumps(
                {
                    "experimentName": "",
                    # a finished trial is STATUS_SUCCESS (tuner_progress); older logs said nothing
                    "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS"],
                    "startIndex": 0,
                    "sliceSize": 10,
                }
            ).encode(),
            headers={"Content-Type": "application/json"},
        )
        groups = json.loads(urllib.request.urlopen(request, timeout=10).read())["sessionGroups"]
        assert len(groups) == 1, groups  # FAST: one trial
        assert groups[0]["hparams"] and groups[0]["metricValues"][0]["name"]["tag"] == "val_loss", groups
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.e2e
def test_backend_runner_fails_with_a_readable_stage_error(kfp_backend_ready, tmp_path, write_csv):
    bad = write_csv("age,sex,bmi\n19,female,27.9\n", name="bad.csv")
    proc = _submit(tmp_path, "--runner", "backend", data=bad)
    assert proc.returncode == 1
    assert "[example_gen]" in proc.stderr and "label column 'charges' is missing" in proc.stderr


def test_checked_in_yaml_is_what_compile_py_writes(tmp_path):
    """The file users upload (pl_yaml_output/) must match the code: rerun `python compile.py`."""
    fresh = tmp_path / "fresh.yaml"
    compile_pipeline(str(fresh))
    checked_in = REPO / "pl_yaml_output" / "kubetfx_pipeline.yaml"
    expected = list(yaml.safe_load_all(fresh.read_text()))
    assert (
        list(yaml.safe_load_all(checked_in.read_text())) == expected
    ), "pl_yaml_output/kubetfx_pipeline.yaml is stale: run `python compile.py`"
