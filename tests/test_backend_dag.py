"""The backend emulator runs loops, fan-in, exit handlers and caching as each KFP backend version does.

Tiny stdlib-only pipelines, compiled here with the locked kfp (2.13), run through
``pipelines.backend.runner.Backend`` as 2.5, 2.14 and 2.17 — each behaviour on the versions where
it differs, the same YAML on each. Every task is a real pod process (the built wheel's image env).

No ``from __future__ import annotations`` here: KFP reads the component annotations.
"""

import json
import uuid
from pathlib import Path
from typing import List  # noqa: UP035 (kfp 2.13 reads typing.List, not list[str])

import pytest
from kfp import compiler, dsl, kubernetes
from kfp.dsl import Artifact, Input, Output

from pipelines.backend.metadata import BackendError, RunRefused
from pipelines.backend.runner import Backend

MOUNT = "/mnt/kubetfx-dag-test"


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def seed(n: int, notes: Output[Artifact]) -> str:
    """A parameter and an artifact the loop's iterations all receive."""
    with open(notes.path, "w") as fh:
        fh.write(f"n{n}")
    return f"s{n}"


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def trial(group: int, seed: str, notes: Input[Artifact], fail_group: int) -> str:
    """One iteration: records when and in which process it ran; group 0 is the slowest."""
    import json
    import os
    import time

    start = time.time()
    time.sleep(2.5 if group == 0 else 0.8)
    with open(f"/mnt/kubetfx-dag-test/trial-{group}.json", "w") as fh:
        json.dump({"start": start, "end": time.time(), "pid": os.getpid()}, fh)
    if group == fail_group:
        raise RuntimeError(f"group {group} failed")
    return f"{seed}{open(notes.path).read()}-g{group}"


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def pick(results: List[str]) -> str:  # noqa: UP006
    """The fan-in: the iterations' outputs as one list."""
    return "|".join(results)


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def finalize(status: dsl.PipelineTaskFinalStatus) -> str:
    """The exit task: what the backend told it about the handled DAG."""
    import json

    with open("/mnt/kubetfx-dag-test/final.json", "w") as fh:
        json.dump({"state": status.state, "task": status.pipeline_task_name}, fh)
    return status.state


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def goodbye(note: str):
    """An exit task without the final status (which 2.5 accepts)."""
    with open("/mnt/kubetfx-dag-test/goodbye.txt", "w") as fh:
        fh.write(note)


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def count(tag: str) -> str:
    """Appends a line per pod that actually ran, so a cache hit shows as no new line."""
    with open(f"/mnt/kubetfx-dag-test/{tag}.log", "a") as fh:
        fh.write("ran\n")
    return f"counted {tag}"


def _mount(task: dsl.PipelineTask, pvc: str = "kubetfx-data") -> dsl.PipelineTask:
    return kubernetes.mount_pvc(task, pvc_name=pvc, mount_path=MOUNT)


def _loop(items: list, parallelism: int, fail_group: int) -> dsl.PipelineTask:
    """The tune fan-out shape: a seed, a ParallelFor of trial groups, a Collected fan-in."""
    s = seed(n=7)
    with dsl.ParallelFor(items, parallelism=parallelism) as group:
        t = _mount(
            trial(group=group, seed=s.outputs["Output"], notes=s.outputs["notes"], fail_group=fail_group)
        )
    return pick(results=dsl.Collected(t.output))


def _compile(tmp_path: Path, pipeline_func, name: str) -> Path:  # noqa: ANN001
    path = tmp_path / f"{name}.yaml"
    compiler.Compiler().compile(pipeline_func, str(path))
    return path


def _backend(tmp_path: Path, version: str) -> Backend:
    storage = tmp_path / "volume"
    storage.mkdir(exist_ok=True)
    return Backend(tmp_path / f"cluster-{version}", storage, version, log=lambda s: None)


def _by_task(run) -> dict:  # noqa: ANN001
    return {t.task: t for t in run.tasks}


# --- ParallelFor and Collected -----------------------------------------------------------------------


@pytest.mark.parametrize("version", ["2.5", "2.14", "2.17"])
def test_parallel_for_fans_out_and_collected_fans_in_from_2_14(kfp_backend_ready, tmp_path, version):
    @dsl.pipeline(name="loop-check")
    def pipeline():
        _loop([0, 1, 2, 3], parallelism=2, fail_group=-1)

    backend = _backend(tmp_path, version)
    run = backend.run(_compile(tmp_path, pipeline, "loop"), {}, run_id=str(uuid.uuid4()))
    tasks = _by_task(run)
    # Every iteration is its own pod with its own item and the loop's inputs (a parameter and an
    # artifact from outside the loop); at most 2 at a time, and 2 did overlap.
    assert [tasks[f"trial[{i}]"].outputs["Output"] for i in range(4)] == [f"s7n7-g{i}" for i in range(4)]
    spans = [json.loads((tmp_path / "volume" / f"trial-{i}.json").read_text()) for i in range(4)]
    assert len({s["pid"] for s in spans}) == 4
    overlap = max(sum(s["start"] <= t["start"] < s["end"] for s in spans) for t in spans)
    assert overlap == 2, spans
    assert min(range(4), key=lambda i: spans[i]["end"]) != 0  # group 0 finished last, not first
    if version == "2.5":  # the same YAML: the fan-in's driver fails, one line
        assert not run.succeeded
        error = tasks["pick"].error
        assert tasks["pick"].status == "FAILURE" and "\n" not in error
        assert "resolving input 'results': subTaskName, trial, not in tasks" in error, error
    else:  # the list in iteration order, whatever order the iterations finished in
        assert run.succeeded, [t.error for t in run.tasks if t.error]
        assert tasks["pick"].outputs["Output"] == "s7n7-g0|s7n7-g1|s7n7-g2|s7n7-g3"


def test_a_failed_iteration_fails_the_loop_and_no_new_iteration_starts(kfp_backend_ready, tmp_path):
    @dsl.pipeline(name="loop-fail")
    def pipeline():
        _loop([0, 1, 2], parallelism=1, fail_group=1)

    run = _backend(tmp_path, "2.17").run(_compile(tmp_path, pipeline, "fail"), {}, run_id=str(uuid.uuid4()))
    assert not run.succeeded
    assert [(t.task, t.status) for t in run.tasks] == [
        ("seed", "SUCCESS"),
        ("trial[0]", "SUCCESS"),
        ("trial[1]", "FAILURE"),
    ]  # Argo's failFast: trial[2] never started, the fan-in never ran
    assert "group 1 failed" in run.tasks[2].error
    assert not (tmp_path / "volume" / "trial-2.json").exists()


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def nap(tag: str, seconds: float, fail: bool) -> str:
    """Records when it ran on the volume; fails after its nap when told to."""
    import json
    import time

    start = time.time()
    time.sleep(seconds)
    with open(f"/mnt/kubetfx-dag-test/nap-{tag}.json", "w") as fh:
        json.dump({"start": start, "end": time.time()}, fh)
    if fail:
        raise RuntimeError(f"{tag} failed")
    return tag


def test_independent_tasks_run_at_once_and_a_failure_starts_nothing_new(kfp_backend_ready, tmp_path):
    """Argo's DAG: both roots start together; after one fails its sibling's dependant never starts."""

    @dsl.pipeline(name="dag-order")
    def pipeline():
        a = _mount(nap(tag="a", seconds=2.0, fail=False))
        b = _mount(nap(tag="b", seconds=0.5, fail=True))
        _mount(nap(tag="after-a", seconds=0.0, fail=False)).after(a)
        _mount(nap(tag="after-b", seconds=0.0, fail=False)).after(b)

    run = _backend(tmp_path, "2.17").run(_compile(tmp_path, pipeline, "order"), {}, run_id=str(uuid.uuid4()))
    assert not run.succeeded
    spans = {t: json.loads((tmp_path / "volume" / f"nap-{t}.json").read_text()) for t in ("a", "b")}
    assert spans["b"]["start"] < spans["a"]["end"] and spans["a"]["start"] < spans["b"]["end"]
    assert sorted((t.task, t.status) for t in run.tasks) == [("nap", "SUCCESS"), ("nap-2", "FAILURE")]
    assert not list((tmp_path / "volume").glob("nap-after-*.json"))  # failFast: nothing new started


# --- Exit handlers -----------------------------------------------------------------------------------


@dsl.pipeline(name="exit-check")
def _handled(fail_group: int = -1):
    exit_task = _mount(finalize())
    with dsl.ExitHandler(exit_task):
        s = seed(n=1)
        _mount(trial(group=3, seed=s.outputs["Output"], notes=s.outputs["notes"], fail_group=fail_group))


@pytest.mark.parametrize("fail_group", [-1, 3])
def test_the_exit_task_runs_after_the_handled_dag_and_gets_its_final_status(
    kfp_backend_ready, tmp_path, fail_group
):
    backend = _backend(tmp_path, "2.17")
    run = backend.run(
        _compile(tmp_path, _handled, "exit"), {"fail_group": fail_group}, run_id=str(uuid.uuid4())
    )
    tasks = _by_task(run)
    assert tasks["finalize"].status == "SUCCESS"
    final = json.loads((tmp_path / "volume" / "final.json").read_text())
    assert final["task"] == "exit-handler-1"
    if fail_group == 3:
        assert not run.succeeded and tasks["trial"].status == "FAILURE"  # the run's state: the DAG's
        assert final["state"] == "FAILED"
    else:
        assert run.succeeded and final["state"] == "COMPLETE"
    assert [t for t, _ in backend.executions(run.run_id)][-1] == "finalize"


def test_2_5_refuses_at_creation_the_final_status_that_2_17_runs(kfp_backend_ready, tmp_path):
    backend = _backend(tmp_path, "2.5")
    with pytest.raises(RunRefused) as refused:
        backend.run(_compile(tmp_path, _handled, "exit"), {}, run_id=str(uuid.uuid4()))
    assert str(refused.value).endswith("failed to add implicit deps: task final status not supported yet")
    assert "\n" not in str(refused.value)
    assert backend.mlmd.store.get_executions() == []  # refused before anything ran
    assert isinstance(refused.value, BackendError)


def test_an_exit_task_without_final_status_runs_after_a_failure_on_2_5(kfp_backend_ready, tmp_path):
    @dsl.pipeline(name="exit-plain")
    def pipeline():
        exit_task = _mount(goodbye(note="bye"))
        with dsl.ExitHandler(exit_task):
            s = seed(n=1)
            _mount(trial(group=3, seed=s.outputs["Output"], notes=s.outputs["notes"], fail_group=3))

    run = _backend(tmp_path, "2.5").run(_compile(tmp_path, pipeline, "plain"), {}, run_id=str(uuid.uuid4()))
    assert not run.succeeded
    assert [(t.task, t.status) for t in run.tasks] == [
        ("seed", "SUCCESS"),
        ("trial", "FAILURE"),
        ("goodbye", "SUCCESS"),
    ]
    assert (tmp_path / "volume" / "goodbye.txt").read_text() == "bye"


# --- Caching ------------------------------------------------------------------------------------------


def _cache_pipeline(pvc: str):  # noqa: ANN202
    @dsl.pipeline(name="cache-check")
    def pipeline():
        cached = _mount(count(tag="cached"), pvc)
        _mount(count(tag="uncached"), pvc).set_caching_options(enable_caching=False).after(cached)

    return pipeline


@pytest.mark.parametrize("version", ["2.5", "2.17"])
def test_a_second_identical_run_reuses_the_cache_but_never_for_uncached_tasks(
    kfp_backend_ready, tmp_path, version
):
    backend = _backend(tmp_path, version)
    yaml = _compile(tmp_path, _cache_pipeline("kubetfx-data"), "cache")
    first = backend.run(yaml, {}, run_id=str(uuid.uuid4()))
    second = backend.run(yaml, {}, run_id=str(uuid.uuid4()))
    assert first.succeeded and second.succeeded
    assert backend.executions(first.run_id) == [("count", "COMPLETE"), ("count-2", "COMPLETE")]
    assert backend.executions(second.run_id) == [("count", "CACHED"), ("count-2", "COMPLETE")]
    volume = tmp_path / "volume"
    assert (volume / "cached.log").read_text() == "ran\n"  # the cached task's pod did not run again
    assert (volume / "uncached.log").read_text() == "ran\nran\n"
    assert _by_task(second)["count"].outputs["Output"] == "counted cached"  # the cached output


@pytest.mark.parametrize("version", ["2.5", "2.14", "2.17"])
def test_the_mounted_pvc_is_in_the_cache_key_from_2_15(kfp_backend_ready, tmp_path, version):
    """The same task on another volume: 2.17 runs it; before 2.15 it is a (stale) cache hit."""
    backend = _backend(tmp_path, version)
    backend.run(_compile(tmp_path, _cache_pipeline("volume-a"), "a"), {}, run_id=str(uuid.uuid4()))
    other = backend.run(_compile(tmp_path, _cache_pipeline("volume-b"), "b"), {}, run_id=str(uuid.uuid4()))
    state = dict(backend.executions(other.run_id))["count"]
    assert state == ("COMPLETE" if version == "2.17" else "CACHED")


def test_a_server_with_caching_disabled_never_reuses(kfp_backend_ready, tmp_path):
    storage = tmp_path / "volume"
    storage.mkdir()
    backend = Backend(tmp_path / "cluster", storage, "2.17", log=lambda s: None, cache_disabled=True)
    yaml = _compile(tmp_path, _cache_pipeline("kubetfx-data"), "cache")
    runs = [backend.run(yaml, {}, run_id=str(uuid.uuid4())) for _ in range(2)]
    assert [s for _, s in backend.executions(runs[1].run_id)] == ["COMPLETE", "COMPLETE"]
