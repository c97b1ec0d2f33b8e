"""The lineage command: a pushed version's inputs, evaluation and baseline, values as users wrote them."""

from __future__ import annotations

import json
import types
from pathlib import Path

import pytest
from kfp import dsl

from components import names
from pipelines import lineage
from pipelines.lineage import LineageRecorder, trace_version
from pipelines.lineage_report import describe

HPARAMS = {"learning_rate": 0.01, "num_layers": 2, "units": 64}


def _task(
    task: str, inputs: dict[str, dsl.Artifact], outputs: dict[str, dsl.Artifact]
) -> types.SimpleNamespace:
    """A finished task as the local runner records it (pipelines.local_runner.TaskRecord)."""
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
