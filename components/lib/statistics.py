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
options); TFDV's ``GenerateStatistics`` as a Beam pipeline (``compute_statistics_beam``) for any
other runner — Dataflow, Flink, Spark, a ``PortableRunner`` job, or local worker processes
(``--direct_running_mode=multi_processing``). The output metadata says which ran (``method``,
``runner``); a test checks that both give the same statistics on real worker processes.

The output layout is TFX's: ``<out>/Split-<split>/FeatureStats.pb``, a binary
``DatasetFeatureStatisticsList`` that ``tfdv.load_stats_binary`` reads, written through
``statistics_io`` (which schema and validate read it with).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from components import names
from components.errors import StageError
from components.lib import examples
from components.lib.statistics_io import feature_name, write_statistics
from components.lib.tfrecord import read_tfrecords

STAGE = names.STAGE_STATISTICS
BATCH_SIZE = 8192  # examples decoded per record batch
METRICS_NAMESPACE = "kubetfx_statistics"

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

    options = tfdv.StatsOptions()
    generators = stats_impl.get_generators(options, in_memory=True)
    accumulators = [g.create_accumulator() for g in generators]
    for path in files:
        for record_batch, _ in decoded_batches(path, batch_size):
            for i, gen in enumerate(generators):
                try:
                    accumulators[i] = gen.add_input(accumulators[i], record_batch)
                except (TypeError, ValueError) as e:
                    raise StageError(STAGE, str(path), f"inconsistent feature values: {e}") from e
    return stats_impl.extract_statistics_output(accumulators, generators)


def compute_statistics_beam(
    files: list[Path], beam_args: str, *, scratch: Path | None = None, batch_size: int = BATCH_SIZE
) -> Any:
    """The same statistics through Beam: TFDV's ``GenerateStatistics`` over the files' record batches.

    Not ``tfdv.generate_statistics_from_tfrecord``: its reader (tfx-bsl's ``BeamSource``, a
    splittable read) silently loses records on Beam's multi-processing DirectRunner
    (tensorflow/data-validation#247; measured here at 10 M rows: 6,594,154 of 6,663,509 train
    examples). Each file is one element, spread over the workers by a Reshuffle (a gzipped file
    cannot be split anyway) and read and decoded as the in-process path does; every record read is
    counted, and a count that differs from the statistics' is the stage's error. TFDV's result
    goes to a file in ``scratch`` (a folder the workers can write: on a cluster, beside the
    stage's output on the shared storage) that the driver then reads.
    """
    import shutil
    import tempfile

    import apache_beam as beam
    import tensorflow_data_validation as tfdv
    from apache_beam.metrics.metric import MetricsFilter

    from components.lib.beam import pipeline_options, run

    class DecodeFile(beam.DoFn):
        """One examples file -> Arrow record batches of its tf.Examples, counted."""

        def __init__(self) -> None:
            self._read = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "records")

        def process(self, path):  # type: ignore[no-untyped-def]
            for record_batch, n in decoded_batches(Path(path), batch_size):
                yield record_batch
                self._read.inc(n)

    folder = Path(tempfile.mkdtemp(prefix=".beam-stats-", dir=scratch))
    output = folder / "stats.binpb"
    try:
        pipeline = beam.Pipeline(options=pipeline_options(beam_args, STAGE))
        _ = (
            pipeline
            | "Files" >> beam.Create([str(f) for f in files])
            | "Spread" >> beam.Reshuffle()
            | "Decode" >> beam.ParDo(DecodeFile())
            | "Statistics" >> tfdv.GenerateStatistics(tfdv.StatsOptions())
            | "Write" >> tfdv.WriteStatisticsToBinaryFile(str(output))
        )
        result = run(pipeline, STAGE, str(files[0]), "statistics")
        stats = tfdv.load_stats_binary(str(output))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    read = 0
    for counter in result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))["counters"]:
        read += int((counter.committed if counter.committed is not None else counter.attempted) or 0)
    seen = int(stats.datasets[0].num_examples) if stats.datasets else 0
    if seen != read:
        raise StageError(
            STAGE,
            str(Path(files[0]).parent),
            f"the statistics count {seen:,} examples but {read:,} were read: the runner lost or "
            "repeated records; nothing was written",
        )
    return stats


def decoded_batches(path: Path, batch_size: int) -> Iterator[tuple[Any, int]]:
    """The records of one examples file as (Arrow record batch, records in it), ``batch_size`` at a time.

    Read with ``tfrecord.read_tfrecords`` (framing and checksums checked), decoded with tfx-bsl's
    C++ ``ExamplesToRecordBatchDecoder``; both statistics paths read through this.
    """
    from tfx_bsl.coders import example_coder

    decoder = example_coder.ExamplesToRecordBatchDecoder()
    batch: list[bytes] = []
    for record in read_tfrecords(path, STAGE):
        batch.append(record)
        if len(batch) >= batch_size:
            yield _decode(decoder, batch, path), len(batch)
            batch = []
    if batch:
        yield _decode(decoder, batch, path), len(batch)


def _decode(decoder: Any, batch: list[bytes], path: Path) -> Any:  # noqa: ANN401
    try:
        return decoder.DecodeBatch(batch)
    except Exception as e:  # noqa: BLE001 (the C++ decoder raises plain RuntimeError/ValueError)
        raise StageError(STAGE, str(path), f"records are not tf.Example protos: {e}") from e


def run_statistics(
    examples_dir: Path,
    output_dir: Path,
    *,
    beam_args: str = "",
    expected_rows: dict[str, int | None] | None = None,
) -> StatisticsResult:
    """Statistics for every split under ``examples_dir``, written to ``output_dir/Split-<split>/``.

    ``expected_rows``: per split, the rows ExampleGen wrote (``examples.written_rows``); statistics
    of any other number of examples are the stage's error, before anything is written.

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
        want = (expected_rows or {}).get(split)
        if want is not None and int(dataset.num_examples) != want:
            raise StageError(
                STAGE,
                str(folder),
                f"{int(dataset.num_examples):,} examples read but ExampleGen wrote {want:,}: "
                "a file is missing or truncated, or the runner lost records",
            )
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
