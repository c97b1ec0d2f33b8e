"""The committed YAML, run twice on the KFP backend emulator as the 2.5 and the 2.17 backends run it.

The second run resolves the first run's pushed model as its baseline; nothing a stage reports
(blessing, summary, HTML report, registry, ML Metadata) points at a pod's own paths.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from components import names
from pipelines.backend.metadata import DEFAULT_VERSION
from pipelines.backend.runner import Backend
from pipelines.local.run import stage_data

REPO = Path(__file__).resolve().parents[1]
COMMITTED_YAML = REPO / "pl_yaml_output" / "kubetfx_pipeline.yaml"
REAL_CSV = REPO.parent / "shared" / "data" / "insurance.csv"
FAST = {"tuner_trials": 1, "tuner_steps": 20, "train_steps": 60, "eval_steps": 10}
POD_LOCAL = ("/minio/", "/tmp/", "/gcs/", "/s3/")


def _reported_documents(storage: Path) -> dict[str, str]:
    docs = {}
    for stage_dir in (storage / names.ARTIFACTS_DIR).glob(f"*/{names.STAGE_EVALUATE}"):
        for name in (names.BLESSING_FILE, "summary.json", names.REPORT_HTML_FILE):
            docs[str(stage_dir / name)] = (stage_dir / name).read_text()
    docs[names.REGISTRY_INDEX] = (storage / names.REGISTRY_INDEX).read_text()
    return docs


def container_tasks(yaml_path: Path) -> set[str]:
    """The keys of every container task in the compiled YAML, in every DAG (what gets a pod)."""
    import yaml

    spec = next(yaml.safe_load_all(yaml_path.read_text()))
    dags = [spec["root"]["dag"], *(c["dag"] for c in spec["components"].values() if "dag" in c)]
    return {
        key
        for dag in dags
        for key, task in dag["tasks"].items()
        if "executorLabel" in spec["components"][task["componentRef"]["name"]]
    }


@pytest.mark.e2e
@pytest.mark.parametrize("version", ["2.5", "2.17"])
def test_committed_yaml_runs_twice_on_the_backend(kfp_backend_ready, tmp_path, version):
    run_twice_and_check(tmp_path, version=version)


def run_twice_and_check(tmp_path: Path, image: str | None = None, version: str = DEFAULT_VERSION) -> list:
    """Two runs of the committed YAML on one volume (tasks in ``image`` if given); their checks."""
    storage = tmp_path / "volume"
    data = stage_data(storage, REAL_CSV if REAL_CSV.exists() else None, log=lambda s: None)
    backend = Backend(tmp_path / "cluster", storage, version, log=lambda s: None, image=image)
    expected = container_tasks(COMMITTED_YAML)
    assert set(names.STAGES) <= {key.replace("-", "_") for key in expected}
    runs = []
    for _ in range(2):
        run = backend.run(COMMITTED_YAML, {"data": data, **FAST}, run_id=str(uuid.uuid4()))
        assert run.succeeded, [t.error for t in run.tasks if t.error]
        assert {t.task.split("[")[0] for t in run.tasks} == expected
        assert all(t.status == "SUCCESS" for t in run.tasks)
        runs.append(run)
    # Caching as compiled: example-gen never comes from cache, so nothing downstream of it does.
    assert all(state == "COMPLETE" for _, state in backend.executions(runs[1].run_id))
    first, second = ({t.task: t for t in r.tasks} for r in runs)
    assert first["resolve-baseline"].outputs["baseline"].metadata["found"] == 0  # MLMD: bool -> int
    resolved = second["resolve-baseline"].outputs["baseline"].metadata
    assert resolved["found"] == 1 and resolved["version"] == 1
    index = json.loads((storage / names.REGISTRY_INDEX).read_text())
    assert [v["version"] for v in index["versions"]][0] == 1
    assert second["evaluate"].outputs["blessing"].metadata["baseline"] == 1
    # Drift: the second run found the served v1's training statistics through the registry's run id.
    drift = second["validate"].outputs["anomalies"].metadata["drift_reference"]
    assert drift.startswith(f"the train split of insurance v1, the served model (run {runs[0].run_id}"), drift
    for run in runs:
        for stage in (names.STAGE_STATISTICS, names.STAGE_VALIDATE, names.STAGE_EVALUATE):
            page = storage / names.ARTIFACTS_DIR / run.run_id / stage / names.REPORT_HTML_FILE
            assert page.read_text().startswith("<!DOCTYPE html>"), page

    mount = "/mnt/kubetfx/"
    for where, text in _reported_documents(storage).items():
        leaked = [p for p in POD_LOCAL if p in text]
        assert not leaked, f"{where} cites pod-local paths {leaked}"
        if where == names.REGISTRY_INDEX:  # relative to the volume, wherever it is mounted next
            assert mount not in text and '"serving_path": "serving/insurance/' in text, where
        else:
            assert mount in text, where
    for artifact in backend.mlmd.store.get_artifacts():
        for key, value in artifact.custom_properties.items():
            text = value.string_value
            if text.startswith("/"):
                assert text.startswith(mount), f"ML Metadata {artifact.uri} {key}={text}"
    return runs
