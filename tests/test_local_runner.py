"""The local runner executes a compiled spec with KFP's own machinery; lineage lands in MLMD.

No ``from __future__ import annotations`` here: KFP reads the component annotations.
"""

from pathlib import Path

import pytest
from kfp import compiler, dsl
from kfp.dsl import Dataset, Input, Metrics, Output

from components import names
from components.example_gen import example_gen
from pipelines.lineage.store import LineageRecorder
from pipelines.local.inprocess import load_pipeline_spec, run_pipeline_spec


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def count_rows(examples: Input[Dataset], total: Output[Metrics]):
    """A downstream task, to check artifacts flow from one task to the next."""
    rows = examples.metadata["rows"]
    total.log_metric("rows", sum(rows.values()))


@dsl.pipeline(name="mini")
def mini(storage_root: str, data: str, label: str = names.LABEL):
    gen = example_gen(
        storage_root=storage_root,
        data=data,
        run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
        label=label,
        split_buckets="train:2,eval:1",
        schema_file="",
    )
    count_rows(examples=gen.outputs["examples"])


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    path = tmp_path_factory.mktemp("mini") / "mini.yaml"
    compiler.Compiler().compile(mini, str(path))
    return load_pipeline_spec(path)


@pytest.fixture
def data_on_volume(tmp_path, synthetic_csv) -> Path:
    """The synthetic CSV on the storage root (tmp_path): a run reads only its volume."""
    import shutil

    return Path(shutil.copy2(synthetic_csv, tmp_path / "insurance.csv"))


def test_the_compiled_spec_runs_and_passes_artifacts(spec, tmp_path, data_on_volume):
    mode = "inprocess"
    run = run_pipeline_spec(
        spec,
        {"storage_root": str(tmp_path), "data": str(data_on_volume)},
        tmp_path / "kfp",
        run_id=f"run-{mode}",
        log=lambda s: None,
    )
    assert run.succeeded, [t.error for t in run.tasks]
    assert [t.task for t in run.tasks] == ["example-gen", "count-rows"]
    examples = run.tasks[0].outputs["examples"]
    # The run id placeholder resolved to this run: bulk data under artifacts/<run id>/.
    assert examples.metadata[names.META_STORAGE_PATH] == str(
        tmp_path / names.ARTIFACTS_DIR / f"run-{mode}" / names.STAGE_EXAMPLE_GEN
    )
    assert run.tasks[1].outputs["total"].metadata["rows"] == 300
    assert all(t.seconds > 0 and t.peak_rss_mb > 10 for t in run.tasks)


def test_failing_stage_stops_the_run_with_its_stage_error(spec, tmp_path, write_csv):
    bad = write_csv("age,sex\n1,m\n")
    run = run_pipeline_spec(
        spec,
        {"storage_root": str(tmp_path), "data": str(bad)},
        tmp_path / "kfp",
        run_id="r",
        log=lambda s: None,
    )
    assert not run.succeeded
    assert [t.status for t in run.tasks] == ["FAILURE"]
    assert (
        run.failed_task.error
        == f"[example_gen] {bad}: label column 'charges' is missing; columns are ['age', 'sex']"
    )


def test_unknown_parameter_is_refused(spec, tmp_path):
    with pytest.raises(ValueError, match="unknown pipeline parameter"):
        run_pipeline_spec(spec, {"storage_root": "x", "data": "y", "nope": 1}, tmp_path, run_id="r")


def test_lineage_records_executions_artifacts_events_and_run_context(spec, tmp_path, data_on_volume):
    recorder = LineageRecorder.for_storage(tmp_path)
    recorder.start_run("run-L", "mini", {"data": str(data_on_volume)})
    run = run_pipeline_spec(
        spec,
        {"storage_root": str(tmp_path), "data": str(data_on_volume)},
        tmp_path / "kfp",
        run_id="run-L",
        on_task_end=recorder.record_task,
        log=lambda s: None,
    )
    recorder.end_run(run)
    store = recorder.store
    assert Path(tmp_path / names.METADATA_DB).exists()
    executions = store.get_executions()
    assert [e.name for e in executions] == ["run-L/example-gen", "run-L/count-rows"]
    artifacts = {a.type: a for a in store.get_artifacts()}
    assert set(artifacts) == {"system.Dataset", "system.Metrics"}
    ds = artifacts["system.Dataset"]
    assert ds.custom_properties[names.META_STORAGE_PATH].string_value.endswith("example_gen")
    # The dataset is the OUTPUT of example-gen and the INPUT of count-rows: one artifact, two events.
    from ml_metadata.proto import metadata_store_pb2 as pb

    by_exec = {e.id: e.custom_properties["task"].string_value for e in executions}
    events = {(by_exec[e.execution_id], e.type) for e in store.get_events_by_artifact_ids([ds.id])}
    assert events == {("example-gen", pb.Event.OUTPUT), ("count-rows", pb.Event.INPUT)}
    ctx = store.get_context_by_type_and_name("system.PipelineRun", "run-L")
    assert ctx.custom_properties["status"].string_value == "SUCCEEDED"
    assert len(store.get_executions_by_context(ctx.id)) == 2
