"""Statistics logic: ``tf.Example`` TFRecords -> TFDV statistics per split (report: ``statistics_report``).

TFX's StatisticsGen runs a Beam pipeline per split (``tfdv.GenerateStatistics``). On a few
thousand rows Beam's start-up dominates, so the default here runs the SAME TFDV statistics
generators in process: records are read from the files in a stream, decoded batch by batch with
tfx-bsl's C++ ``ExamplesToRecordBatchDecoder`` (the decoder TFX's Beam source uses) and folded
into the generators' accumulators — ``tfdv.generate_statistics_from_dataframe`` does the same
on one in-memory batch. Memory stays flat (one batch plus the generators' sketches), so this
path also serves large splits; the output equals the Beam path's up to float rounding in the
last digit (a test compares them).

The rule (``beam.runs_in_process``, shared with the other stages' fast paths): in process when
``beam_args`` would run Beam in this process anyway (the default ``DirectRunner``, empty
options); TFDV's Beam pipeline (``tfdv.generate_statistics_from_tfrecord``, TFX's path) for any
other runner — Dataflow, Flink, Spark, a ``PortableRunner`` job, or local worker processes
(``--direct_running_mode=multi_processing``). The output metadata says which ran (``method``,
``runner``); a test checks that both give the same statistics on real worker processes.

The output layout is TFX's: ``<out>/Split-<split>/FeatureStats.pb``, a binary
``DatasetFeatureStatisticsList`` that ``tfdv.load_stats_binary`` reads, written through
``statistics_io`` (which schema and validate read it with).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from components import names
from components.errors import StageError
from components.lib import examples
from components.lib.statistics_io import feature_name, write_statistics
from components.lib.tfrecord import read_tfrecords

STAGE = names.STAGE_STATISTICS
BATCH_SIZE = 8192  # examples decoded per record batch

# Output metadata keys (the local runner prints "features"; rows/splits come from names).
META_FEATURES = names.META_FEATURES
META_FEATURES_PER_SPLIT = "features_per_split"


@dataclasses.dataclass
class StatisticsResult:
    """What the statistics stage wrote: rows and feature counts per split."""

    rows: dict[str, int]
    features: dict[str, int]
    feature_names: list[str]
    method: str
    runner: str = ""

    def metadata(self) -> dict[str, Any]:
        return {
            names.META_ROWS: self.rows,
            names.META_SPLITS: list(self.rows),
            META_FEATURES: len(self.feature_names),
            META_FEATURES_PER_SPLIT: self.features,
            "feature_names": self.feature_names,
            "method": self.method,
            "runner": self.runner or "none",
        }


# --- Computing statistics. ---------------------------------------------------------------------


def compute_statistics(files: list[Path], *, batch_size: int = BATCH_SIZE) -> Any:
    """TFDV statistics of the ``tf.Example`` records in ``files``, computed in process.

    Runs TFDV's in-memory generator set (basic stats with quantile histograms, sketch-based
    top-k/unique counts) over a stream of decoded record batches.
    """
    import tensorflow_data_validation as tfdv
    from tensorflow_data_validation.statistics import stats_impl
    from tfx_bsl.coders import example_coder

    options = tfdv.StatsOptions()
    generators = stats_impl.get_generators(options, in_memory=True)
    accumulators = [g.create_accumulator() for g in generators]
    decoder = example_coder.ExamplesToRecordBatchDecoder()
    batch: list[bytes] = []

    def flush(path: Path) -> None:
        try:
            record_batch = decoder.DecodeBatch(batch)
        except Exception as e:  # noqa: BLE001 (the C++ decoder raises plain RuntimeError/ValueError)
            raise StageError(STAGE, str(path), f"records are not tf.Example protos: {e}") from e
        for i, gen in enumerate(generators):
            try:
                accumulators[i] = gen.add_input(accumulators[i], record_batch)
            except (TypeError, ValueError) as e:
                raise StageError(STAGE, str(path), f"inconsistent feature values: {e}") from e
        batch.clear()

    for path in files:
        for record in read_tfrecords(path, STAGE):
            batch.append(record)
            if len(batch) >= batch_size:
                flush(path)
        if batch:
            flush(path)
    return stats_impl.extract_statistics_output(accumulators, generators)


def compute_statistics_beam(files: list[Path], beam_args: str, *, scratch: Path | None = None) -> Any:
    """The same statistics through Beam (``tfdv.generate_statistics_from_tfrecord``), as TFX runs them.

    TFDV's pipeline writes its result to a file that the driver then reads: ``scratch`` is where,
    a folder the workers can write to (on a cluster, beside the stage's output on the shared
    storage, not the driver's local disk); a local temporary folder when not given.
    """
    import shutil
    import tempfile

    import tensorflow_data_validation as tfdv

    from components.lib.beam import pipeline_options

    options = pipeline_options(beam_args, STAGE)
    folder = Path(tempfile.mkdtemp(prefix=".beam-stats-", dir=scratch))
    try:
        return tfdv.generate_statistics_from_tfrecord(
            [str(f) for f in files],  # type: ignore[arg-type]  # tfx-bsl's source takes a list of patterns
            output_path=str(folder / "stats.tfrecord"),
            pipeline_options=options,
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run_statistics(examples_dir: Path, output_dir: Path, *, beam_args: str = "") -> StatisticsResult:
    """Statistics for every split under ``examples_dir``, written to ``output_dir/Split-<split>/``.

    In process when ``beam_args`` would run Beam in this process anyway (``beam.runs_in_process``:
    fast, memory-bounded); TFDV's Beam pipeline on the runner ``beam_args`` names otherwise.
    """
    from components.lib.beam import runner_name, runs_in_process

    on_beam = not runs_in_process(beam_args, STAGE)
    splits = examples.find_splits(examples_dir, STAGE)
    rows: dict[str, int] = {}
    features: dict[str, int] = {}
    ordered: list[str] = []
    for split, folder in splits.items():
        files = examples.split_files(examples_dir, split, STAGE)
        if on_beam:
            Path(output_dir).mkdir(parents=True, exist_ok=True)
            stats = compute_statistics_beam(files, beam_args, scratch=Path(output_dir))
        else:
            stats = compute_statistics(files)
        dataset = stats.datasets[0]
        if dataset.num_examples == 0:
            raise StageError(STAGE, str(folder), "split has no examples")
        write_statistics(output_dir, split, stats)
        rows[split] = int(dataset.num_examples)
        features[split] = len(dataset.features)
        ordered += [n for n in (feature_name(f) for f in dataset.features) if n not in ordered]
    return StatisticsResult(
        rows=rows,
        features=features,
        feature_names=ordered,
        method="beam" if on_beam else "in-process",
        runner=runner_name(beam_args, STAGE) if on_beam else "",
    )
