"""The data stages on real Beam worker processes: results equal to the in-process ones.

One worker pool serves the module (``beam_pool``): the PortableRunner hands the pipeline to SDK
workers that import everything themselves, as Dataflow, Flink or Spark workers do. The
multi-processing DirectRunner is the other out-of-process runner checked here.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from beam_pool import MULTI_PROCESSING_ARGS, beam_pool_fixture  # noqa: F401 (the fixture beam_pool)

from components import names
from components.lib.beam import runs_in_process
from components.lib.example_gen import run_example_gen
from components.lib.statistics import run_statistics
from components.lib.statistics_io import feature_name, read_statistics

RUNNERS = ["PortableRunner", "multi-processing DirectRunner"]
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


@pytest.mark.parametrize("runner", RUNNERS)
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


def beam_args_for(runner: str, pool) -> str:
    return pool.beam_args(workers=2) if runner == "PortableRunner" else MULTI_PROCESSING_ARGS


def records_by_split(examples_dir: Path) -> dict[str, Counter]:
    """Every split's records (serialized tf.Examples) as a multiset: file order aside, the data."""
    from components.lib.examples import split_files
    from components.lib.tfrecord import read_tfrecords

    return {
        split: Counter(r for f in split_files(examples_dir, split, "test") for r in read_tfrecords(f, "test"))
        for split in names.SPLITS
    }


@pytest.fixture(scope="module")
def in_process_examples(synthetic_csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("eg_in_process") / "examples"
    result = run_example_gen(synthetic_csv, out, label=names.LABEL)
    assert result.method == "in-process" and result.metadata()["files_per_split"] == {"train": 1, "eval": 1}
    return out, result


@pytest.mark.parametrize("runner", RUNNERS)
def test_example_gen_on_worker_processes_writes_the_same_records_in_shards(
    runner, beam_pool, synthetic_csv, in_process_examples, tmp_path
):
    local_dir, local = in_process_examples
    out = tmp_path / "examples"
    result = run_example_gen(
        synthetic_csv, out, label=names.LABEL, beam_args=beam_args_for(runner, beam_pool), shards=2
    )
    assert result.method == "beam" and result.rows == local.rows
    assert result.fingerprint == local.fingerprint and result.column_types == local.column_types
    assert result.metadata()["files_per_split"] == {"train": 2, "eval": 2}
    for split in names.SPLITS:
        assert sorted(p.name for p in (out / names.split_dir(split)).iterdir()) == [
            f"{names.EXAMPLES_FILE_PREFIX}-00000-of-00002.gz",
            f"{names.EXAMPLES_FILE_PREFIX}-00001-of-00002.gz",
        ]
    assert records_by_split(out) == records_by_split(local_dir)


def split_csv(source: Path, folder: Path, bad: dict[int, tuple[str, str]] | None = None) -> Path:
    """``source`` as two CSV files in ``folder``; ``bad``: {data row: (column, new value)}."""
    import csv

    with open(source, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for i, (column, value) in (bad or {}).items():
        rows[i][column] = value
    folder.mkdir(parents=True)
    half = len(rows) // 2 + 7
    for name, part in (("a.csv", rows[:half]), ("b.csv", rows[half:])):
        with open(folder / name, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(part)
    return folder


@pytest.mark.parametrize("runner", RUNNERS)
def test_the_first_pass_on_workers_decides_as_in_process(
    runner, beam_pool, synthetic_csv, tmp_path, monkeypatch
):
    """Types, empty cells and the line of a bad cell: the same from 4 KB ranges on the workers.

    The workers count each byte range; the driver merges them in input order and moves each
    range's first bad cell down by the rows of the earlier ranges of its file.
    """
    from components.errors import StageError
    from components.lib.example_gen import beam as eg_beam

    monkeypatch.setattr(eg_beam, "CHUNK_BYTES", 512)  # ~15 ranges per file
    args = beam_args_for(runner, beam_pool)
    # 300 rows as two files (157 + 143 rows), with empty cells in both
    folder = split_csv(synthetic_csv, tmp_path / "in", {5: ("children", ""), 250: ("children", "")})
    local = run_example_gen(folder, tmp_path / "local", label=names.LABEL)
    on_beam = run_example_gen(folder, tmp_path / "beam", label=names.LABEL, beam_args=args)
    assert on_beam.method == "beam"
    assert on_beam.column_types == local.column_types and on_beam.empty_cells == local.empty_cells
    assert on_beam.empty_cells["children"] == 2
    assert on_beam.rows == local.rows and on_beam.fingerprint == local.fingerprint
    assert not (tmp_path / "beam" / ".first-pass").exists()

    # a typo in a numeric column in the second file: the same file and line both ways
    bad = split_csv(synthetic_csv, tmp_path / "bad", {220: ("bmi", "3O.5"), 260: ("bmi", "x")})
    with pytest.raises(StageError) as in_process:
        run_example_gen(bad, tmp_path / "bad_local", label=names.LABEL)
    with pytest.raises(StageError) as workers:
        run_example_gen(bad, tmp_path / "bad_beam", label=names.LABEL, beam_args=args)
    assert str(workers.value) == str(in_process.value)
    # data row 220 is row 63 of b.csv: line 65 after the header
    assert str(in_process.value).startswith(f"[example_gen] {bad / 'b.csv'}: line 65: column 'bmi' ")
    assert str(in_process.value).endswith("has the non-numeric value '3O.5'")


def test_byte_ranges_own_each_line_once(tmp_path):
    """Lines are cut by where they start: every line in exactly one range, at any chunk size."""
    from components.lib.example_gen.beam import byte_ranges, read_lines

    csv = tmp_path / "x.csv"
    lines = [b"a,b\n"] + [f"{i},{'x' * (i % 7)}\n".encode() for i in range(200)]
    csv.write_bytes(b"".join(lines))
    for chunk in (1, 2, 3, 5, 16, 17, 64, 10_000):
        got = b"".join(read_lines(*piece) for piece in byte_ranges([csv], chunk))
        assert got == b"".join(lines[1:]), chunk


def test_a_stage_error_raised_on_a_worker_reaches_the_user_as_its_one_line(beam_pool):
    """The PortableRunner returns a worker's failure as traceback text; the stage's line is rebuilt."""
    import apache_beam as beam

    from components.errors import StageError
    from components.lib.beam import pipeline_options, worker_stage_error

    def fail(x):  # pickled by value (a function of this test module); StageError by reference
        raise StageError("transform", "/data/Split-eval/x.gz", f"record {x}: truncated")

    with pytest.raises(Exception) as caught:  # noqa: B017 (the runner's own exception type)
        with beam.Pipeline(options=pipeline_options(beam_pool.beam_args(workers=1), "transform")) as p:
            _ = p | beam.Create([3]) | beam.Map(fail)
    assert not isinstance(caught.value, StageError)  # what the runner raised: text only
    found = worker_stage_error(caught.value)
    assert str(found) == "[transform] /data/Split-eval/x.gz: record 3: truncated"


# --- transform: TFT with a user module given as a FILE, on workers that cannot import it by name --


@pytest.fixture(scope="module")
def module_file(storage_root) -> Path:
    """The insurance module copied to the volume as a user's own file (imported under a made-up name)."""
    import shutil

    from components.modules import insurance

    path = storage_root / names.DATA_DIR / "modules" / "my_insurance_module.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(insurance.__file__, path)
    return path


def run_transform_with(beam_args: str, examples, synthetic_csv, storage_root, module_file, out: Path):
    from test_transform import infer_schema_file

    from components.lib.transform import run_transform

    schema_dir = infer_schema_file(synthetic_csv, out / "schema")
    return run_transform(
        Path(examples.metadata[names.META_STORAGE_PATH]),
        schema_dir,
        out / "transform",
        module_file=str(module_file),
        storage_root=str(storage_root),
        beam_args=beam_args,
        label=names.LABEL,
    )


def transformed_rows(out: Path, split: str):
    """The transformed examples of one split as a row-sorted matrix (row order is not the data)."""
    import numpy as np
    import tensorflow_transform as tft
    from test_transform import read_split

    from components.lib import transform_output

    graph = tft.TFTransformOutput(str(transform_output.graph_dir(out / "transform")))
    spec = graph.transformed_feature_spec()
    cols = read_split(transform_output.transformed_examples_dir(out / "transform"), split, spec)
    matrix = np.column_stack([cols[k].astype(np.float64) for k in sorted(cols)])
    return matrix[np.lexsort(matrix.T[::-1])], sorted(cols)


@pytest.fixture(scope="module")
def in_process_transform(examples, synthetic_csv, storage_root, module_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("transform_local")
    result = run_transform_with("", examples, synthetic_csv, storage_root, module_file, out)
    return out, result


@pytest.mark.parametrize("runner", RUNNERS)
def test_transform_with_a_module_file_on_worker_processes_equals_in_process(
    runner, beam_pool, examples, synthetic_csv, storage_root, module_file, in_process_transform, tmp_path
):
    import numpy as np

    local_out, local = in_process_transform
    result = run_transform_with(
        beam_args_for(runner, beam_pool), examples, synthetic_csv, storage_root, module_file, tmp_path
    )
    assert result.module == str(module_file)  # the file, imported under a generated name
    assert result.rows == local.rows == examples.metadata[names.META_ROWS]
    assert result.transformed_features == local.transformed_features
    for split in names.SPLITS:
        (got, got_cols), (want, want_cols) = (
            transformed_rows(tmp_path, split),
            transformed_rows(local_out, split),
        )
        assert got_cols == want_cols
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


# --- evaluate: engine "auto" picks TFMA's Beam pipeline for a runner that is not this process ----


@pytest.mark.parametrize("runner", RUNNERS)
def test_evaluate_on_worker_processes_equals_the_in_process_engine(runner, beam_pool, tmp_path):
    """TFMA on worker processes (``auto`` out of process) writes what the in-process engine writes."""
    from test_evaluate import assert_same_evaluation, save_age_model, tricky_rows, write_eval_split

    from components import defaults
    from components.lib import evaluate as ev

    examples_dir = write_eval_split(tmp_path / "examples", tricky_rows())
    candidate = save_age_model(tmp_path / "candidate", 330.0)
    baseline = save_age_model(tmp_path / "baseline", 300.0)
    results = {}
    for beam_args in (defaults.BEAM_ARGS, beam_args_for(runner, beam_pool)):
        out = tmp_path / ("local" if beam_args == defaults.BEAM_ARGS else "pool")
        out.mkdir()
        run = ev.evaluate_models(
            examples_dir,
            candidate,
            baseline,
            1,
            out,
            label=names.LABEL,
            slice_feature="smoker",
            thresholds=ev.Thresholds(20000.0, 0.5),
            beam_args=beam_args,
            engine=ev.ENGINE_AUTO,
        )
        results[run.engine] = run
    assert set(results) == {ev.ENGINE_NATIVE, ev.ENGINE_TFMA}  # in process: native; workers: TFMA
    assert_same_evaluation(results)


def test_the_components_hand_beam_args_to_their_stage(beam_pool, storage_root, synthetic_csv, tmp_path):
    """example_gen and statistics as the pipeline calls them: beam_args picks the Beam path."""
    from conftest import run_component
    from kfp import dsl

    from components.example_gen import example_gen
    from components.statistics import statistics

    data = storage_root / names.DATA_DIR / "beam_components" / "insurance.csv"
    data.parent.mkdir(parents=True, exist_ok=True)
    data.write_bytes(synthetic_csv.read_bytes())
    args = beam_pool.beam_args(workers=2)
    examples = run_component(
        example_gen,
        tmp_path / "eg",
        storage_root=str(storage_root),
        data=str(data),
        run_id="beam-components",
        label=names.LABEL,
        split_buckets="train:2,eval:1",
        schema_file="",
        beam_args=args,
    )["examples"]
    assert examples.metadata["method"] == "beam" and examples.metadata["runner"] == "PortableRunner"
    for split, count in examples.metadata["files_per_split"].items():  # the runner chose N: TFX's names
        folder = Path(examples.metadata[names.META_STORAGE_PATH]) / names.split_dir(split)
        assert sorted(p.name for p in folder.iterdir()) == [
            f"{names.EXAMPLES_FILE_PREFIX}-{i:05d}-of-{count:05d}.gz" for i in range(count)
        ]
    ex = dsl.Dataset(name="examples", uri=examples.uri, metadata=dict(examples.metadata))
    stats = run_component(
        statistics,
        tmp_path / "st",
        examples=ex,
        storage_root=str(storage_root),
        run_id="beam-components",
        beam_args=args,
    )["statistics"]
    assert stats.metadata["method"] == "beam" and stats.metadata["runner"] == "PortableRunner"
    assert stats.metadata[names.META_ROWS] == examples.metadata[names.META_ROWS]
