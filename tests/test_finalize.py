"""The exit handler: every task's status record, and finalize's outcome in the run log and lineage.

A small pipeline of real components (``components.component``, so their bodies are recorded as
every stage's are) inside ``dsl.ExitHandler(finalize)``, compiled and run by the in-process
runner; a killed task is a real process killed with SIGKILL.

No ``from __future__ import annotations`` here: KFP reads the component annotations.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from kfp import compiler, dsl

from components import names
from components.component import component
from components.finalize import finalize
from components.lib import finalize as finalize_lib
from components.lib import run_log, run_status
from pipelines.lineage.store import LineageRecorder
from pipelines.local.inprocess import load_pipeline_spec, run_pipeline_spec

REPO = Path(__file__).resolve().parents[1]


@component
def first_step(storage_root: str, run_id: str) -> str:
    """Succeeds."""
    return "ok"


@component
def second_step(storage_root: str, run_id: str, previous: str, fail: bool):
    """Fails with a StageError naming a file when told to."""
    from components.errors import StageError

    if fail:
        raise StageError("second_step", "data/x.csv", "column 'charges' is missing")


@component
def last_step(storage_root: str, run_id: str):
    """Runs only after second_step."""


@dsl.pipeline(name="mini-exit")
def mini(storage_root: str, fail: bool):
    run_id = dsl.PIPELINE_JOB_ID_PLACEHOLDER
    exit_task = finalize(storage_root=storage_root, run_id=run_id, lock_timeout=30.0, last_task="last_step")
    with dsl.ExitHandler(exit_task):
        one = first_step(storage_root=storage_root, run_id=run_id)
        two = second_step(storage_root=storage_root, run_id=run_id, previous=one.output, fail=fail)
        last_step(storage_root=storage_root, run_id=run_id).after(two)


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    path = tmp_path_factory.mktemp("mini-exit") / "mini.yaml"
    compiler.Compiler().compile(mini, str(path))
    return load_pipeline_spec(path)


def leftovers(root: Path, run_id: str) -> dict[str, Path]:
    """What killed stages leave (``storage.atomic_dir``'s names), for this run and another one."""
    mine = root / names.ARTIFACTS_DIR / run_id
    other = root / names.ARTIFACTS_DIR / "another-run"
    paths = {
        "partial": mine / ".train.partial-pod-a-7-0123abcd",
        "group": mine / names.STAGE_TUNE_TRIALS / ".group-1.partial-pod-d-5-0a0b0c0d",
        "old": mine / ".transform.old-pod-b-9-89abcdef",  # its final directory is missing
        "kept_output": mine / "schema",
        "other_run": other / ".train.partial-pod-c-3-00ff00ff",
    }
    for path in paths.values():
        path.mkdir(parents=True)
        (path / "file").write_text("x")
    return paths


def run(spec, root: Path, run_id: str, fail: bool, recorder=None):
    return run_pipeline_spec(
        spec,
        {"storage_root": str(root), "fail": fail},
        root / "kfp",
        run_id=run_id,
        on_task_end=recorder.record_task if recorder else None,
        log=lambda s: None,
    )


def test_a_failing_stage_is_the_runs_outcome_and_the_scratch_goes(spec, tmp_path):
    paths = leftovers(tmp_path, "run-F")
    recorder = LineageRecorder.for_storage(tmp_path)
    recorder.start_run("run-F", "mini-exit", {})
    result = run(spec, tmp_path, "run-F", fail=True, recorder=recorder)
    recorder.end_run(result)
    assert not result.succeeded
    # The failing stage stopped the DAG (last-step never ran); the exit task ran after it.
    assert [(t.task, t.status) for t in result.tasks] == [
        ("first-step", "SUCCESS"),
        ("second-step", "FAILURE"),
        ("finalize", "SUCCESS"),
    ]
    line = "[second_step] data/x.csv: column 'charges' is missing"
    assert result.failed_task.error == line
    records = run_status.read_all(tmp_path, "run-F")
    assert {t: r["state"] for t, r in records.items()} == {"first_step": "succeeded", "second_step": "failed"}
    assert records["second_step"]["error"] == line
    [logged] = run_log.read(tmp_path)
    assert logged["run_id"] == "run-F" and logged["outcome"] == "failed"
    assert logged["failed_task"] == "second_step" and logged["error"] == line
    assert logged["scratch_removed"] == 3
    # The run's scratch is gone, the last complete output is back, the rest is untouched.
    assert not paths["partial"].exists() and not paths["old"].exists() and not paths["group"].exists()
    assert (paths["old"].parent / "transform" / "file").exists()
    assert paths["kept_output"].exists() and paths["other_run"].exists()
    # The outcome is in the finalize task's artifact, and so in the run's lineage context.
    outcome = result.tasks[-1].outputs["outcome"]
    assert outcome.metadata["outcome"] == "failed" and outcome.metadata["error"] == line
    assert outcome.metadata["warnings"] == []
    store = recorder.store
    ctx = store.get_context_by_type_and_name("system.PipelineRun", "run-F")
    tasks = {e.custom_properties["task"].string_value for e in store.get_executions_by_context(ctx.id)}
    assert "finalize" in tasks
    recorded = [a for a in store.get_artifacts_by_context(ctx.id) if "outcome" in a.custom_properties]
    assert [a.custom_properties["error"].string_value for a in recorded] == [line]


def test_a_run_that_succeeds_is_recorded_once_per_run(spec, tmp_path):
    for _ in range(2):  # a finalize that runs again for the same run replaces its line
        result = run(spec, tmp_path, "run-S", fail=False)
        assert result.succeeded and [t.task for t in result.tasks][-1] == "finalize"
    assert [t.status for t in result.tasks] == ["SUCCESS"] * 4
    [logged] = run_log.read(tmp_path)
    assert logged["outcome"] == "succeeded" and "error" not in logged
    assert logged["tasks"] == {
        "first_step": "succeeded",
        "second_step": "succeeded",
        "last_step": "succeeded",
    }


def test_finalizes_own_error_is_one_warning_and_never_fails_the_run(spec, tmp_path):
    index = tmp_path / names.REGISTRY_INDEX
    index.parent.mkdir(parents=True)
    index.write_text("{not json")  # the registry refuses every writer: so does the run log's
    result = run(spec, tmp_path, "run-W", fail=False)
    assert result.succeeded and result.tasks[-1].status == "SUCCESS"
    outcome = result.tasks[-1].outputs["outcome"]
    assert outcome.metadata["outcome"] == "succeeded" and outcome.metadata["run_log"] == ""
    [warning] = outcome.metadata["warnings"]
    assert warning.startswith("warning: [finalize] could not record the outcome in the registry's run log: [")
    assert str(index) in warning and "\n" not in warning
    assert not run_log.path_of(tmp_path).exists()


KILLED_CHILD = """
import sys, time
from components.lib.run_status import recorded
with recorded(sys.argv[1], "run-K", "train"):
    print("inside", flush=True)
    time.sleep(60)
"""


def test_a_killed_task_is_named_as_killed(tmp_path):
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(KILLED_CHILD), str(tmp_path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "inside"
    child.send_signal(signal.SIGKILL)
    assert child.wait(30) == -signal.SIGKILL
    run_status.write(tmp_path, "run-K", "transform", {"state": "succeeded", "ended": 1.0})
    record = finalize_lib.finalize(str(tmp_path), "run-K", 30.0)
    assert record["outcome"] == "failed" and record["failed_task"] == "train"
    assert record["error"].startswith("[train] started on ") and "never finished: killed" in record["error"]
    assert json.loads(run_log.path_of(tmp_path).read_text())["failed_task"] == "train"


def test_a_run_whose_last_stage_never_started_did_not_succeed():
    records = {"example_gen": {"state": "succeeded"}, "statistics": {"state": "succeeded"}}
    out = finalize_lib.outcome(records)
    assert out["outcome"] == "failed" and out["failed_task"] == "schema"
    assert out["error"].startswith("[finalize] these stages never ran (their pods did not start, or the ")
    assert out["error"].endswith(
        "refused them): schema, validate, transform, tune, train, resolve_baseline, evaluate, push"
    )
    # Tune compiled as trial groups whose fan-in never ran (KFP 2.5's driver refuses dsl.Collected).
    grouped = {**records, "tune_trials-0": {"state": "succeeded"}, "tune_trials-1": {"state": "succeeded"}}
    out = finalize_lib.outcome(grouped)
    assert (
        out["failed_task"] == "schema" and ": schema, validate, transform, tune_best, train," in out["error"]
    )
    done = {s: {"state": "succeeded"} for s in names.STAGES if s not in ("tune", "train", "evaluate", "push")}
    out = finalize_lib.outcome({**done, "tune_trials-0": {"state": "succeeded"}})
    assert out["failed_task"] == "tune_best" and out["error"].endswith(": tune_best, train, evaluate, push")
