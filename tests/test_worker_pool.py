"""The data stages on real Beam worker processes: results equal to the in-process ones.

One worker pool serves the module (``beam_pool``): the PortableRunner hands the pipeline to SDK
workers that import everything themselves, as Dataflow, Flink or Spark workers do. The
multi-processing DirectRunner is the other out-of-process runner checked here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from beam_pool import MULTI_PROCESSING_ARGS, beam_pool_fixture  # noqa: F401 (the fixture beam_pool)

from components import names
from components.lib.beam import runs_in_process
from components.lib.statistics import run_statistics
from components.lib.statistics_io import feature_name, read_statistics

NUMERIC_FIELDS = ("mean", "std_dev", "min", "max", "median", "num_zeros")


def assert_same_statistics(a, b) -> None:
    """Two ``DatasetFeatureStatisticsList``s agree feature by feature (up to float rounding)."""
    (da,), (db,) = a.datasets, b.datasets
    assert da.num_examples == db.num_examples
    fa = {feature_name(f): f for f in da.features}
    fb = {feature_name(f): f for f in db.features}
    assert set(fa) == set(fb) == set(names.COLUMNS)
    for name, f in fa.items():
        g = fb[name]
        assert f.WhichOneof("stats") == g.WhichOneof("stats"), name
        if f.HasField("num_stats"):
            for field in NUMERIC_FIELDS:
                assert getattr(f.num_stats, field) == pytest.approx(getattr(g.num_stats, field), rel=1e-9), (
                    name,
                    field,
                )
            common_a, common_b = f.num_stats.common_stats, g.num_stats.common_stats
        else:
            assert f.string_stats.unique == g.string_stats.unique, name
            assert {(v.value, v.frequency) for v in f.string_stats.top_values} == {
                (v.value, v.frequency) for v in g.string_stats.top_values
            }, name
            common_a, common_b = f.string_stats.common_stats, g.string_stats.common_stats
        assert common_a.num_non_missing == common_b.num_non_missing, name
        assert common_a.num_missing == common_b.num_missing, name


@pytest.fixture(scope="module")
def in_process_statistics(examples, tmp_path_factory):
    """Statistics of the session's examples computed in this process (the default path)."""
    out = tmp_path_factory.mktemp("stats_in_process")
    result = run_statistics(Path(examples.metadata[names.META_STORAGE_PATH]), out)
    assert result.method == "in-process"
    return out, result


def test_the_rule_runs_beam_out_of_process_only(beam_pool):
    assert runs_in_process("", "statistics")
    assert runs_in_process("--runner=DirectRunner --direct_num_workers=1", "statistics")
    assert runs_in_process("--runner=DirectRunner --direct_running_mode=multi_threading", "statistics")
    assert not runs_in_process(MULTI_PROCESSING_ARGS, "statistics")
    assert not runs_in_process(beam_pool.beam_args(), "statistics")
    assert not runs_in_process("--runner=DataflowRunner --project=p --region=r", "statistics")


@pytest.mark.parametrize("runner", ["PortableRunner", "multi-processing DirectRunner"])
def test_statistics_on_worker_processes_equal_in_process(
    runner, beam_pool, examples, in_process_statistics, tmp_path
):
    local_dir, local = in_process_statistics
    args = beam_pool.beam_args(workers=2) if runner == "PortableRunner" else MULTI_PROCESSING_ARGS
    result = run_statistics(Path(examples.metadata[names.META_STORAGE_PATH]), tmp_path, beam_args=args)
    assert result.method == "beam"
    assert result.metadata()["runner"] == ("PortableRunner" if runner == "PortableRunner" else "FnApiRunner")
    assert result.rows == local.rows
    for split in names.SPLITS:
        assert_same_statistics(
            read_statistics(tmp_path, split, "statistics"), read_statistics(local_dir, split, "statistics")
        )
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # TFDV's scratch is gone
    if runner == "PortableRunner":  # the pool, not this process, ran the pipeline
        assert beam_pool.started_workers() > 0
