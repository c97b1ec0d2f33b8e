"""What a local run shows: one line per stage, progress and heartbeat, the outcome last;
lineage that never decides a run."""

from __future__ import annotations

import os
import sqlite3
import time
import types
from pathlib import Path

from kfp import dsl

from components import names
from pipelines.lineage.store import RUN_CONTEXT, LineageRecorder, SafeLineage
from pipelines.local import console


def test_a_tasks_output_goes_to_its_log_with_progress_and_heartbeat_relayed(tmp_path, capfd):
    out = console.TaskOutput(heartbeat_s=0.4)
    log = tmp_path / "logs" / "tune.log"
    with out.capture("tune", log):
        os.write(1, b"Epoch 1/10 noise\n")
        os.write(1, f"{names.PROGRESS_PREFIX}trial 1/2: val_loss 0.25\n".encode())
        os.write(2, b"WARNING:root:crcmod package not found\n")
        time.sleep(1.3)
    shown = capfd.readouterr().out
    assert f"  {names.PROGRESS_PREFIX}trial 1/2: val_loss 0.25" in shown
    assert "… tune still running" in shown
    assert "Epoch" not in shown and "crcmod" not in shown
    kept = log.read_text()
    assert "Epoch 1/10 noise" in kept and "crcmod" in kept
    print("after")  # the console is back
    assert capfd.readouterr().out == "after\n"


def _record(task: str, **outputs: dict) -> types.SimpleNamespace:
    arts = {k: dsl.Artifact(name=k, uri=f"/x/{k}", metadata=m) for k, m in outputs.items()}
    return types.SimpleNamespace(
        task=task, status="SUCCESS", seconds=1.0, peak_rss_mb=1.0, error="", outputs=arts
    )


def _run(*records) -> types.SimpleNamespace:
    return types.SimpleNamespace(tasks=list(records), succeeded=True, seconds=2.0, failed_task=None)


def test_the_outcome_says_not_blessed_and_that_nothing_was_pushed(tmp_path):
    run = _run(
        _record("evaluate", blessing={"verdict": "NOT_BLESSED", "reasons": {"list": ["MAE 9,100 > 8,000"]}}),
        _record("push", pushed_model={"pushed": 0.0, "reason": "not blessed"}),
    )
    word, lines = console.outcome(run, tmp_path, "insurance")
    assert word == "NOT_BLESSED"  # the blessing's own word, as in the registry and lineage
    assert lines[0] == "NOT_BLESSED: MAE 9,100 > 8,000; nothing pushed"
    assert console.summary_table(run, word) == "total 2.0 s, peak 1 MB, 2/2 stages: NOT_BLESSED"


def test_the_outcome_names_the_pushed_version(tmp_path):
    run = _run(
        _record("evaluate", blessing={"verdict": "BLESSED", "mae": 1806.0}),
        _record("push", pushed_model={"pushed": 1, "version": 2.0, "serving_path": "/v/serving/insurance/2"}),
    )
    assert (
        console.outcome(run, tmp_path, "insurance")[1][0]
        == "BLESSED, pushed insurance v2 → /v/serving/insurance/2"
    )
    assert console.stage_line(run.tasks[0]) == "✔ evaluate            1.0 s     1 MB  BLESSED, MAE 1,806"


def test_a_classifiers_stage_lines_show_accuracy():
    evaluate = _record("evaluate", blessing={"verdict": "BLESSED"}, evaluation={"accuracy": 0.9123})
    train = _record("train", metrics={"eval_accuracy": 0.9, "eval_log_loss": 0.3})
    assert console.stage_line(evaluate) == "✔ evaluate            1.0 s     1 MB  BLESSED, accuracy 0.912"
    assert console.stage_line(train) == "✔ train               1.0 s     1 MB  eval accuracy 0.900"


def test_a_damaged_lineage_store_is_set_aside_and_a_new_one_started(tmp_path):
    db = tmp_path / names.METADATA_DB
    db.parent.mkdir(parents=True)
    db.write_text("this is not a database")
    warnings: list[str] = []
    lineage = SafeLineage(tmp_path, warnings.append)
    lineage.start_run("r1", "p", {"a": 1})
    assert len(warnings) == 1 and "set aside as mlmd.sqlite.damaged-" in warnings[0]
    assert [p.name for p in db.parent.glob("mlmd.sqlite.damaged-*")]
    assert sqlite3.connect(db).execute("select count(*) from Context").fetchone()[0] >= 1


def test_a_run_killed_earlier_is_marked_interrupted(tmp_path):
    recorder = LineageRecorder.for_storage(tmp_path)
    recorder.start_run("killed-run", "p", {})
    ctx = recorder.store.get_context_by_type_and_name(RUN_CONTEXT, "killed-run")
    ctx.custom_properties["pid"].int_value = 2**22 + 12345  # no such process
    recorder.store.put_contexts([ctx])
    warnings: list[str] = []
    SafeLineage(tmp_path, warnings.append)
    again = LineageRecorder.for_storage(tmp_path).store.get_context_by_type_and_name(
        RUN_CONTEXT, "killed-run"
    )
    assert again.custom_properties["status"].string_value == "INTERRUPTED"
    assert warnings == ["warning: [lineage] runs killed earlier marked INTERRUPTED: killed-run"]


def test_a_lineage_failure_mid_run_is_one_warning(tmp_path):
    warnings: list[str] = []
    lineage = SafeLineage(tmp_path, warnings.append)
    lineage.start_run("r", "p", {})
    broken = types.SimpleNamespace(task="statistics", component="x", status="SUCCESS")  # no timings: fails
    lineage.record_task(broken)
    assert len(warnings) == 1 and warnings[0].startswith("warning: [lineage]") and "statistics" in warnings[0]
    assert "\n" not in warnings[0]


def test_unwritable_storage_is_one_line_before_anything_is_made(tmp_path):
    import subprocess
    import sys

    target = tmp_path / "file-not-dir"
    target.write_text("x")
    proc = subprocess.run(
        [sys.executable, "submit.py", "--storage", str(target)],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"[submit] {target}: the storage root is not a directory"


def test_the_outcome_lists_the_html_reports_on_the_volume_and_tensorboard_over_the_run(tmp_path):
    run_dir = tmp_path / names.ARTIFACTS_DIR / "r1"
    for stage in (names.STAGE_STATISTICS, names.STAGE_VALIDATE, names.STAGE_EVALUATE):
        (run_dir / stage).mkdir(parents=True)
        (run_dir / stage / names.REPORT_HTML_FILE).write_text("<!DOCTYPE html>")
    pod_view = f"{names.DEFAULT_MOUNT_PATH}/{names.ARTIFACTS_DIR}/r1"  # --runner backend: the pod's mount
    run = _run(
        _record("statistics", report={names.META_STORAGE_PATH: f"{pod_view}/statistics/report.html"}),
        _record("validate", report={names.META_STORAGE_PATH: str(run_dir / "validate" / "report.html")}),
        _record("train", tensorboard={names.META_STORAGE_PATH: f"{pod_view}/train/logs"}),
        _record(
            "evaluate",
            blessing={"verdict": "BLESSED"},
            report={names.META_STORAGE_PATH: str(run_dir / "evaluate" / "report.html")},
        ),
        _record("push", pushed_model={"pushed": 1, "version": 1.0, "serving_path": "/v/1"}),
    )
    _, lines = console.outcome(run, tmp_path, "insurance")
    assert lines[1:4] == [
        f"report {stage:<11}{run_dir / stage / names.REPORT_HTML_FILE}"
        for stage in (names.STAGE_STATISTICS, names.STAGE_VALIDATE, names.STAGE_EVALUATE)
    ]
    # The run's folder: train's curves and the tuner's trials (HPARAMS) in one TensorBoard.
    assert lines[-1].startswith("TensorBoard: ") and lines[-1].endswith(f" --logdir {run_dir}")


def test_a_stage_that_ran_on_beam_says_so():
    beam = _record(
        "example-gen",
        examples={
            names.META_ROWS: {"train": 200, "eval": 100},
            "method": "beam",
            "runner": "PortableRunner",
            "files_per_split": {"train": 2, "eval": 1},
        },
    )
    local = _record(
        "statistics", statistics={names.META_FEATURES: 7, "method": "in-process", "runner": "none"}
    )
    assert console.stage_figures(beam) == (
        "rows train 200 / eval 100 on Beam (PortableRunner, files per split train 2 / eval 1)"
    )
    assert console.stage_figures(local) == "7 features"


def test_a_stage_has_one_name_on_the_console_and_validate_names_its_anomalies():
    gen = _record("example-gen", examples={names.META_ROWS: {"train": 2}})
    assert console.stage_line(gen).startswith("✔ example_gen ")
    many = _record(
        "validate",
        anomalies={
            "verdict": "anomalies",
            "anomalies": 4.0,
            "anomalous_features": {"list": ["a", "b", "c", "d"]},
        },
    )
    assert console.stage_figures(many) == "4 anomalies: a, b, c, …"
    one = _record(
        "validate", anomalies={"verdict": "anomalies", "anomalies": 1, "anomalous_features": ["bmi"]}
    )
    assert console.stage_figures(one) == "1 anomaly: bmi"
    assert (
        console.stage_figures(_record("validate", anomalies={"verdict": "ok", "anomalies": 0}))
        == "no anomalies"
    )


def test_the_heartbeat_says_the_epoch_or_trial_and_the_time_left():
    progress = console.Progress(start=0.0)
    assert progress.says(5.0) == ""
    progress.see("Epoch 1/40", 10.0)
    assert progress.says(11.0) == "; epoch 1/40"
    progress.see("4/4 - 0s - 5ms/step - loss: 1.0", 12.0)
    progress.see("Epoch 11/40", 30.0)  # 10 epochs in 20 s: at most 30 epochs (60 s) left
    assert progress.says(30.0) == "; epoch 11/40, at most ~60 s left"
    progress.see(f"{names.PROGRESS_PREFIX}trial 1/4: units 64 val_loss 0.2", 40.0)
    assert progress.says(40.0) == "; trial 1/4 done, about 2 min left"  # 40 s a trial, 3 to go


def test_a_backend_runs_closing_lines_are_local_paths_with_the_schema_and_a_quoted_tensorboard(tmp_path):
    storage = tmp_path / "my storage"
    run_dir = storage / names.ARTIFACTS_DIR / "r1"
    (run_dir / "schema").mkdir(parents=True)
    (run_dir / "schema" / names.SCHEMA_FILE).write_text("")
    (storage / "serving" / "m" / "1").mkdir(parents=True)
    pod = f"{names.DEFAULT_MOUNT_PATH}/{names.ARTIFACTS_DIR}/r1"  # what the pods recorded
    run = _run(
        _record("schema", schema={names.META_STORAGE_PATH: f"{pod}/schema/{names.SCHEMA_FILE}"}),
        _record("train", tensorboard={names.META_STORAGE_PATH: f"{pod}/train/logs"}),
        _record("evaluate", blessing={"verdict": "BLESSED"}),
        _record(
            "push",
            pushed_model={
                "pushed": 1,
                "version": 1.0,
                "serving_path": f"{names.DEFAULT_MOUNT_PATH}/serving/m/1",
            },
        ),
    )
    word, lines = console.outcome(run, storage, "m")
    assert word == "BLESSED"
    assert lines[0] == f"BLESSED, pushed m v1 → {storage / 'serving' / 'm' / '1'}"
    assert lines[1] == (
        f"schema {'':<11}{run_dir / 'schema' / names.SCHEMA_FILE}  "
        f"(reuse: schema_file={names.ARTIFACTS_DIR}/r1/schema/{names.SCHEMA_FILE})"
    )
    assert lines[2].endswith(f" --logdir '{run_dir}'")  # a path with a space, shell-quoted


def _pushed_copy(path: Path, weights: bytes) -> Path:
    from components.lib import saved_model

    (path / "variables").mkdir(parents=True)
    (path / "variables" / "variables.index").write_bytes(weights)
    (path / "saved_model.pb").write_bytes(os.urandom(8))  # graphs differ between exports anyway
    saved_model.write_manifest(path)
    return path


def test_a_candidate_that_repeats_its_baseline_is_said(tmp_path):
    old = _pushed_copy(tmp_path / "serving" / "m" / "1", b"w")
    new = _pushed_copy(tmp_path / "serving" / "m" / "2", b"w")
    other = _pushed_copy(tmp_path / "serving" / "m" / "3", b"x")

    def run_with(pushed: Path, data: str):  # noqa: ANN202
        return _run(
            _record("example-gen", examples={names.META_FINGERPRINT: data}),
            _record(
                "resolve-baseline",
                baseline={"found": True, "version": 1.0, "model_path": str(old), "fingerprint": "d1"},
            ),
            _record("evaluate", blessing={"verdict": "BLESSED"}),
            _record("push", pushed_model={"pushed": 1, "version": 2.0, "serving_path": str(pushed)}),
        )

    lines = console.outcome(run_with(new, "d1"), tmp_path, "m")[1]
    assert lines[1] == "note: the candidate is identical to the baseline v1 (the same data, the same weights)"
    lines = console.outcome(run_with(other, "d1"), tmp_path, "m")[1]
    assert lines[1] == "note: the candidate was trained on the same data as the baseline v1 (fingerprint d1)"
    assert not any(
        line.startswith("note:") for line in console.outcome(run_with(new, "d2"), tmp_path, "m")[1]
    )
