"""The lineage command: a pushed version's inputs, evaluation and baseline, values as users wrote them."""

from __future__ import annotations

import json
import types
from pathlib import Path

import pytest
from kfp import dsl

from components import names
from pipelines.lineage import store as lineage
from pipelines.lineage.report import describe
from pipelines.lineage.store import LineageRecorder, trace_version

HPARAMS = {"learning_rate": 0.01, "num_layers": 2, "units": 64}


def _task(
    task: str, inputs: dict[str, dsl.Artifact], outputs: dict[str, dsl.Artifact]
) -> types.SimpleNamespace:
    """A finished task as the local runner records it (pipelines.run_result.TaskRecord)."""
    wired = {
        key: {"artifacts": [{"uri": a.uri, "type": {"schemaTitle": a.schema_title}, "metadata": a.metadata}]}
        for key, a in inputs.items()
    }
    return types.SimpleNamespace(
        task=task,
        component=task,
        status="SUCCESS",
        seconds=1.0,
        peak_rss_mb=1.0,
        error="",
        outputs=outputs,
        executor_input={"inputs": {"parameterValues": {}, "artifacts": wired}},
    )


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """One run recorded: tune -> train -> evaluate (against baseline v1) -> push of version 2.

    The metadata holds numbers as ML Metadata gives them back (floats); tune's own file holds ints.
    """
    best = dsl.Artifact(
        name="best_hyperparameters",
        uri=str(tmp_path / "kfp" / "tune" / "best_hyperparameters"),
        metadata={
            "hyperparameters": {k: float(v) for k, v in HPARAMS.items()},
            "searched": True,
            "trials": 4.0,
            "best_val_loss": 0.134193,
        },
    )
    Path(best.path).mkdir(parents=True)
    (Path(best.path) / names.HYPERPARAMETERS_FILE).write_text(json.dumps(HPARAMS))
    model = dsl.Model(name="model", uri=str(tmp_path / "kfp" / "train" / "model"), metadata={})
    baseline = dsl.Model(
        name="baseline",
        uri=str(tmp_path / "kfp" / "resolve" / "baseline"),
        metadata={"found": 1.0, "version": 1.0, "run_id": "run-1", "metrics": {"mae": 1805.9}},
    )
    blessing = dsl.Artifact(
        name="blessing",
        uri=str(tmp_path / "kfp" / "evaluate" / "blessing"),
        metadata={
            "verdict": names.BLESSED,
            "mae": 1790.2,
            "baseline": 1.0,
            "reasons": {
                "list": ["overall MAE 1,790 <= upper bound 8,000", "MAE -0.9% against baseline version 1"]
            },
        },
    )
    pushed = dsl.Model(
        name="pushed_model",
        uri=str(tmp_path / "kfp" / "push" / "pushed_model"),
        metadata={"pushed": 1.0, "version": 2.0, "model_name": names.MODEL_NAME},
    )
    recorder = LineageRecorder.for_storage(tmp_path)
    recorder.start_run("run-2", "kubetfx-pipeline", {})
    recorder.record_task(_task("tune", {}, {"best_hyperparameters": best}))
    recorder.record_task(_task("train", {"best_hyperparameters": best}, {"model": model}))
    recorder.record_task(_task("resolve-baseline", {}, {"baseline": baseline}))
    recorder.record_task(_task("evaluate", {"model": model, "baseline": baseline}, {"blessing": blessing}))
    recorder.record_task(_task("push", {"model": model, "blessing": blessing}, {"pushed_model": pushed}))
    return tmp_path


def test_a_version_shows_its_evaluation_baseline_and_hyperparameters_as_written(store):
    lines = describe(trace_version(store / names.METADATA_DB, names.MODEL_NAME, 2))
    text = "\n".join(lines)
    assert lines[0] == "model insurance version 2"
    assert (
        "  hyperparameters: learning_rate 0.01, num_layers 2, units 64  "
        "(searched: 4 trials, best val_loss 0.1342)" in text
    )
    assert "2.0" not in text and "64.0" not in text
    assert (
        "  evaluation:      BLESSED, MAE 1,790: overall MAE 1,790 <= upper bound 8,000; "
        "MAE -0.9% against baseline version 1" in text
    )
    assert "  baseline:        version 1 (run run-1, MAE 1,806)" in text


def test_without_tunes_file_the_metadata_still_shows_whole_numbers(store):
    (store / "kfp" / "tune" / "best_hyperparameters" / names.HYPERPARAMETERS_FILE).unlink()
    text = "\n".join(describe(trace_version(store / names.METADATA_DB, names.MODEL_NAME, 2)))
    assert "hyperparameters: learning_rate 0.01, num_layers 2, units 64" in text


def test_a_missing_version_lists_the_pushed_ones(store, capsys):
    assert lineage.main(["--storage", str(store), "--version", "7"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("[lineage] no version 7 of model 'insurance' in ") and err.rstrip().endswith(
        "; pushed versions: 2"
    )
    assert lineage.main(["--storage", str(store), "--version", "2"]) == 0
    assert "evaluation:      BLESSED" in capsys.readouterr().out


def test_paths_on_the_storage_root_are_recorded_relative_to_it_and_read_under_the_readers_root(tmp_path):
    """Local paths and a pod's view (``storage_root=/mnt/kubetfx``) alike; URLs as they are."""
    pod_root = "/mnt/kubetfx"
    model = dsl.Model(
        name="model",
        uri=str(tmp_path / names.KFP_LOCAL_DIR / "r" / "train" / "model"),
        metadata={names.META_STORAGE_PATH: f"{pod_root}/artifacts/r/train", "logs": "gs://bucket/logs"},
    )
    pushed = dsl.Model(
        name="pushed_model",
        uri="minio://mlpipeline/v2/artifacts/r/push/pushed_model",
        metadata={
            "pushed": True,
            "version": 1,
            "model_name": names.MODEL_NAME,
            "serving_path": "/elsewhere/x/1",
        },
    )
    recorder = LineageRecorder.for_storage(tmp_path)
    recorder.start_run("r", "kubetfx-pipeline", {"storage_root": str(tmp_path), "data": "data/a.csv"})
    train = _task("train", {}, {"model": model})
    train.executor_input["inputs"]["parameterValues"] = {
        "storage_root": pod_root,
        "data": f"{pod_root}/data/a.csv",
    }
    recorder.record_task(train)
    recorder.record_task(_task("push", {"model": model}, {"pushed_model": pushed}))

    store = recorder.store
    uris = sorted(a.uri for a in store.get_artifacts())
    assert uris == ["kfp_local/r/train/model", pushed.uri]
    [trained] = [a for a in store.get_artifacts() if a.uri == uris[0]]
    assert trained.custom_properties[names.META_STORAGE_PATH].string_value == "artifacts/r/train"
    [ex] = [e for e in store.get_executions() if e.name == "r/train"]
    assert ex.custom_properties["input:storage_root"].string_value == "."
    assert ex.custom_properties["input:data"].string_value == "data/a.csv"
    [run] = store.get_contexts_by_type(lineage.RUN_CONTEXT)
    assert json.loads(run.custom_properties["parameters"].string_value)["storage_root"] == "."

    elsewhere = tmp_path.parent / f"{tmp_path.name}-moved"
    trace = trace_version(tmp_path / names.METADATA_DB, names.MODEL_NAME, 1, storage_root=elsewhere)
    assert trace["model_trained"]["uri"] == str(elsewhere / "kfp_local/r/train/model")
    assert trace["model_trained"][names.META_STORAGE_PATH] == str(elsewhere / "artifacts/r/train")
    assert trace["model_trained"]["logs"] == "gs://bucket/logs" and trace["pushed"]["uri"] == pushed.uri
    assert trace["pushed"]["serving_path"] == str(elsewhere / "x/1")  # not on any root: its tail, missing
    assert "(missing)" in "\n".join(describe(trace))
