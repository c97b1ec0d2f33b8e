"""Tune split into parallel trial groups: the same best hyperparameters as one task, and the YAML's shapes.

The search test runs the real components on the transformed synthetic examples: one ``tune``
task, then three ``tune_trials`` groups and their ``tune_best`` fan-in (from the collected
strings, and from the groups' files on the volume as the unrolled shape reads them). The
in-process runner's ParallelFor and Collected are checked on a small pipeline of its own.

No ``from __future__ import annotations`` here: KFP reads the component annotations.
"""

import json
from pathlib import Path
from typing import List  # noqa: UP035 (KFP 2.13 reads List[str])

import pytest
import yaml
from conftest import output_artifacts, run_component
from kfp import compiler, dsl
from test_transform import transform_outputs

from components import names
from components.errors import StageError
from components.lib import tune_groups
from pipelines.kubetfx_pipeline import ClusterOptions, compile_pipeline
from pipelines.local.inprocess import load_pipeline_spec, run_pipeline_spec

TRIALS = 5


@pytest.fixture(scope="module")
def transformed(storage_root, examples, synthetic_csv):
    return transform_outputs(storage_root, examples, synthetic_csv)


def common(storage_root: Path, transformed, run_id: str, **overrides) -> dict:
    graph, examples = transformed
    kwargs = dict(
        transformed_examples=examples,
        transform_graph=graph,
        storage_root=str(storage_root),
        run_id=run_id,
        module_file="",
        tuner="random",
        trials=TRIALS,
        steps=10,
        batch_size=16,
        enabled=True,
        hyperparameters="",
        label=names.LABEL,
    )
    return {**kwargs, **overrides}


def fan_in(storage_root: Path, kfp_dir: Path, run_id: str, results: list[str], groups: int) -> dict:
    from components.tune import tune_best

    return run_component(
        tune_best,
        kfp_dir,
        group_results=results,
        storage_root=str(storage_root),
        run_id=run_id,
        groups=groups,
        module_file="",
    )


def chosen(outputs: dict) -> tuple[dict, list, dict]:
    best = outputs["best_hyperparameters"]
    values = json.loads((Path(best.path) / names.HYPERPARAMETERS_FILE).read_text())
    listed = Path(best.path) / "trials.json"  # written when there were trials
    trials = json.loads(listed.read_text()) if listed.exists() else []
    assert sorted(p.name for p in Path(best.path).iterdir()) == sorted(
        [names.HYPERPARAMETERS_FILE, *(["trials.json"] if listed.exists() else [])]
    )
    return values, trials, best.metadata


def test_three_trial_groups_pick_what_one_task_picks(storage_root, transformed, tmp_path):
    from components.tune import tune, tune_trials

    one = chosen(run_component(tune, tmp_path / "one", **common(storage_root, transformed, "tune-one")))
    run_id, groups = "tune-groups", 3
    results = [
        tune_trials.python_func(**common(storage_root, transformed, run_id), group=g, groups=groups)
        for g in range(groups)
    ]
    # Round-robin shares of one trial set: group g runs trials g, g + 3, ...
    assert [[t["index"] for t in json.loads(r)["trials"]] for r in results] == [[0, 3], [1, 4], [2]]
    collected = chosen(fan_in(storage_root, tmp_path / "collected", run_id, results, groups))
    from_volume = chosen(fan_in(storage_root, tmp_path / "volume", run_id, [], groups))  # unrolled
    for values, trials, meta in (collected, from_volume):
        assert values == one[0]  # the same best hyperparameters
        assert [t["values"] for t in trials] == [t["values"] for t in one[1]]  # the same trial set, in order
        # Each trial's score does not depend on the process or the trials before it.
        assert [t["val_loss"] for t in trials] == pytest.approx([t["val_loss"] for t in one[1]], rel=1e-4)
        assert meta["best_val_loss"] == pytest.approx(one[2]["best_val_loss"], rel=1e-4)
        assert {k: meta[k] for k in ("hyperparameters", "searched", "trials", "budget")} == {
            k: one[2][k] for k in ("hyperparameters", "searched", "trials", "budget")
        }
    assert len(one[1]) == TRIALS
    # The evaluation report reads the trials where one tune task leaves them.
    tune_dir = storage_root / names.ARTIFACTS_DIR / run_id / names.STAGE_TUNE
    assert collected[2]["tuner_dir"] == str(tune_dir)
    assert [t["values"] for t in json.loads((tune_dir / "trials.json").read_text())] == [
        t["values"] for t in one[1]
    ]


def test_tuning_off_takes_the_defaults_in_every_group(storage_root, transformed, tmp_path):
    from components.tune import tune, tune_trials

    off = common(storage_root, transformed, "tune-off", enabled=False, hyperparameters='{"units": 8}')
    one = chosen(run_component(tune, tmp_path / "one", **off))
    results = [tune_trials.python_func(**off, group=g, groups=2) for g in range(2)]
    values, trials, meta = chosen(fan_in(storage_root, tmp_path / "fan", "tune-off", results, 2))
    assert values == one[0] and values["units"] == 8 and trials == [] and meta["searched"] is False


@pytest.mark.parametrize("tuner", ["bayesian", "hyperband"])
def test_a_sequential_tuner_refuses_to_split_in_one_line(storage_root, transformed, tuner):
    from components.tune import tune_trials

    with pytest.raises(StageError) as err:
        tune_trials.python_func(
            **common(storage_root, transformed, "tune-refused", tuner=tuner), group=0, groups=2
        )
    message = str(err.value)
    assert message.startswith(f"[tune_trials] tuner '{tuner}' chooses each trial from the scores before it")
    assert (
        message.endswith("use tuner 'random', or compile with --tune-parallelism 1") and "\n" not in message
    )


def test_a_missing_group_result_names_its_file(tmp_path):
    from components.tune import tune_best

    outputs = output_artifacts(tune_best, tmp_path / "kfp")
    with pytest.raises(StageError) as err:
        tune_best.python_func(
            group_results=[], storage_root=str(tmp_path), run_id="r", groups=2, module_file="", **outputs
        )
    path = (
        tmp_path / names.ARTIFACTS_DIR / "r" / names.STAGE_TUNE_TRIALS / "group-0" / tune_groups.RESULT_FILE
    )
    assert str(err.value).startswith(f"[tune_best] {path}: trial group 0's result is missing")


def test_shares_are_round_robin_and_cover_every_trial():
    for trials in range(0, 12):
        for groups in range(1, 6):
            shares = [tune_groups.share(trials, groups, g) for g in range(groups)]
            assert sorted(i for s in shares for i in s) == list(range(trials))
            assert all(s == list(range(g, trials, groups)) for g, s in enumerate(shares))


# --- The compiled YAML's three shapes. ---------------------------------------------------------


def compiled(tmp_path: Path, **options) -> dict:
    path = tmp_path / "p.yaml"
    compile_pipeline(str(path), ClusterOptions(**options))
    return next(yaml.safe_load_all(path.read_text()))


def body(doc: dict) -> dict:
    """The tasks inside the exit handler (the ten stages' DAG)."""
    assert set(doc["root"]["dag"]["tasks"]) == {"exit-handler-1", "finalize"}
    return doc["components"]["comp-exit-handler-1"]["dag"]["tasks"]


def test_one_tune_task_by_default(tmp_path):
    doc = compiled(tmp_path)
    tasks = body(doc)
    assert "tune" in tasks and not any(t.startswith(("tune-trials", "tune-best", "for-loop")) for t in tasks)
    assert (
        tasks["train"]["inputs"]["artifacts"]["best_hyperparameters"]["taskOutputArtifact"]["producerTask"]
        == "tune"
    )
    assert not any(name.startswith("comp-for-loop") for name in doc["components"])


def test_parallel_trial_groups_are_a_parallel_for_and_a_collected_fan_in(tmp_path):
    doc = compiled(tmp_path, tune_parallelism=3)
    tasks = body(doc)
    [loop] = [t for t in tasks if t.startswith("for-loop")]
    assert "tune" not in tasks
    assert tasks[loop]["iteratorPolicy"] == {"parallelismLimit": 3}
    iterator = tasks[loop]["parameterIterator"]
    assert json.loads(iterator["items"]["raw"]) == [0, 1, 2]
    inner = doc["components"][tasks[loop]["componentRef"]["name"]]["dag"]
    assert set(inner["tasks"]) == {"tune-trials"}
    group = inner["tasks"]["tune-trials"]["inputs"]["parameters"]["group"]
    assert group == {"componentInputParameter": iterator["itemInput"]}
    fan_in = tasks["tune-best"]["inputs"]["parameters"]
    assert fan_in["group_results"]["taskOutputParameter"]["producerTask"] == loop  # dsl.Collected
    assert fan_in["groups"]["runtimeValue"]["constant"] == 3
    producer = tasks["train"]["inputs"]["artifacts"]["best_hyperparameters"]["taskOutputArtifact"][
        "producerTask"
    ]
    assert producer == "tune-best"


def test_unrolled_trial_groups_need_neither_parallel_for_nor_collected(tmp_path):
    doc = compiled(tmp_path, tune_parallelism=3, tune_fanin="unrolled")
    tasks = body(doc)
    groups = ["tune-trials", "tune-trials-2", "tune-trials-3"]
    assert [t for t in tasks if t.startswith("tune-trials")] == groups
    assert [tasks[g]["inputs"]["parameters"]["group"]["runtimeValue"]["constant"] for g in groups] == [
        0,
        1,
        2,
    ]
    assert sorted(tasks["tune-best"]["dependentTasks"]) == groups
    assert tasks["tune-best"]["inputs"]["parameters"]["group_results"] == {"runtimeValue": {"constant": []}}
    assert not any("parameterIterator" in t or "iteratorPolicy" in t for t in tasks.values())
    assert not any(name.startswith("comp-for-loop") for name in doc["components"])


def test_a_bad_compile_option_is_one_line(tmp_path):
    with pytest.raises(ValueError, match=r"^--tune-parallelism must be 1 to 32, got 0$"):
        ClusterOptions(tune_parallelism=0)
    with pytest.raises(
        ValueError, match=r"^--tune-fanin must be one of \('collected', 'unrolled'\), got 'x'$"
    ):
        ClusterOptions(tune_fanin="x")


# --- The in-process runner: ParallelFor iterations and a Collected list. -------------------------


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def square(item: int) -> str:
    return str(item * item)


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def add_up(values: List[str]) -> int:  # noqa: UP006
    return sum(int(v) for v in values)


@dsl.pipeline(name="mini-loop")
def mini_loop():
    with dsl.ParallelFor(items=[1, 2, 3], parallelism=3) as item:
        part = square(item=item)
    add_up(values=dsl.Collected(part.output))


def test_the_in_process_runner_runs_a_parallel_for_and_collects_its_outputs(tmp_path):
    compiler.Compiler().compile(mini_loop, str(tmp_path / "loop.yaml"))
    spec = load_pipeline_spec(tmp_path / "loop.yaml")
    run = run_pipeline_spec(spec, {}, tmp_path / "kfp", run_id="loop", log=lambda s: None)
    assert run.succeeded, [t.error for t in run.tasks]
    assert [t.task for t in run.tasks] == ["square[0]", "square[1]", "square[2]", "add-up"]
    assert [t.outputs["Output"] for t in run.tasks[:3]] == ["1", "4", "9"]
    assert run.tasks[-1].outputs["Output"] == 14


def test_a_tuner_that_cannot_split_is_refused_before_a_run_is_created():
    from pipelines.kubetfx_pipeline import tune_split_refusal

    three = ClusterOptions(tune_parallelism=3)
    assert tune_split_refusal(three, {"tuner": "hyperband"}).startswith(
        "tuner 'hyperband' chooses each trial"
    )
    assert tune_split_refusal(three, {"tuner": "hyperband", "tune_enabled": "false"}) == ""  # no search
    assert tune_split_refusal(three, {}) == ""  # the default tuner, random, splits
    assert tune_split_refusal(ClusterOptions(), {"tuner": "bayesian"}) == ""  # one task


def test_the_console_names_each_trial_group():
    from pipelines.local import console
    from pipelines.run_result import TaskRecord

    result = json.dumps({"trials": [{"index": 1, "val_loss": 0.5}, {"index": 4, "val_loss": 0.25}]})
    for task in ("tune-trials[1]", "tune-trials-2"):  # a ParallelFor iteration, an unrolled task
        record = TaskRecord(task=task, component="comp-tune-trials", status="SUCCESS", seconds=1.0)
        record.executor_input = {"inputs": {"parameterValues": {"group": 1, "groups": 3}}}
        record.outputs = {"Output": result}
        assert (
            console.stage_line(record)
            == "✔ tune_trials 2/3     1.0 s     0 MB  trials 1, 4, best val_loss 0.25"
        )


# --- The whole pipeline, trial groups and exit handler included, in the in-process runner. --------


@pytest.mark.e2e
def test_the_pipeline_runs_two_trial_groups_and_finalizes(tmp_path, synthetic_csv):
    from components.lib import run_log
    from components.parameters import coerce
    from pipelines.local.run import stage_data

    package = tmp_path / "p.yaml"
    compile_pipeline(str(package), ClusterOptions(tune_parallelism=2))
    storage = tmp_path / "storage"
    storage.mkdir()
    small = {"tuner_trials": 3, "tuner_steps": 20, "train_steps": 60, "eval_steps": 10}
    args = coerce(
        {"data": stage_data(storage, synthetic_csv, lambda s: None), "storage_root": str(storage), **small}
    )
    run = run_pipeline_spec(
        load_pipeline_spec(package), args, storage / "kfp", run_id="two-groups", log=lambda s: None
    )
    assert run.succeeded, [t.error for t in run.tasks if t.error]
    tasks = [t.task for t in run.tasks]
    assert tasks.index("tune-trials[0]") < tasks.index("tune-trials[1]") < tasks.index("tune-best")
    assert tasks.index("tune-best") < tasks.index("train") and tasks[-1] == "finalize"
    by_task = {t.task: t for t in run.tasks}
    shares = [
        [t["index"] for t in json.loads(by_task[f"tune-trials[{g}]"].outputs["Output"])["trials"]]
        for g in (0, 1)
    ]
    assert shares == [[0, 2], [1]]
    best = by_task["tune-best"].outputs["best_hyperparameters"]
    assert best.metadata["trials"] == 3 and best.metadata["searched"] is True
    # Train read the fan-in's artifact, as it reads tune's.
    given = by_task["train"].executor_input["inputs"]["artifacts"]["best_hyperparameters"]["artifacts"][0]
    assert given["uri"] == best.uri
    [logged] = run_log.read(storage)
    assert logged["run_id"] == "two-groups" and logged["outcome"] == "succeeded"
    assert {"tune_trials-0", "tune_trials-1", "tune_best", "push"} <= set(logged["tasks"])


def test_submit_refuses_what_it_cannot_split_before_anything_runs(tmp_path):
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]

    def submit(*args: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "submit.py", "--storage", str(tmp_path / "s"), *args]
        return subprocess.run(cmd, cwd=repo, capture_output=True, text=True, timeout=300)

    server = submit("--host", "http://127.0.0.1:9", "--tune-parallelism", "2", "--param", "tuner=hyperband")
    assert server.returncode == 2
    assert server.stderr.strip().splitlines()[-1] == (
        "[submit] tuner 'hyperband' chooses each trial from the scores before it, so its trials cannot "
        "run in 2 parallel groups; use tuner 'random', or compile with --tune-parallelism 1"
    )
    local = submit("--tune-parallelism", "2", "--param", "tuner=bayesian")  # a local run compiles it too
    assert local.returncode == 2
    assert local.stderr.strip().splitlines()[-1] == (
        "[submit] tuner 'bayesian' chooses each trial from the scores before it, so its trials cannot "
        "run in 2 parallel groups; use tuner 'random', or compile with --tune-parallelism 1"
    )
    assert not (tmp_path / "s").exists()
