"""Transform logic: TFT on Beam, analyzers fit on train, the same graph applied to every split.

Reads ExampleGen's ``Split-<split>/`` gzipped TFRecords through tfx-bsl's TFXIO with the
schema, fits the user module's ``preprocessing_fn`` with ``tft_beam.AnalyzeDataset`` on train,
applies it with ``TransformDataset`` to train (read a second time, so both passes stream) and
eval, and writes the TFT layout (``transform_graph/``,
which ``tft.TFTransformOutput`` opens) and ``transformed_examples/Split-<split>/`` gzipped
TFRecords (that layout is ``transform_output``, which tune and train read with). The Beam options
string is handed to ``PipelineOptions`` unchanged, so a Dataflow/Flink/Spark runner gets exactly
what the user typed.

Every raw feature except the label is read as optional (a VarLen feature, i.e. a
SparseTensor in ``preprocessing_fn``), whatever shape the inferred schema gives it. The
transform graph is also the served model's first layer: a serving request that omits a
value (no ``bmi``) must still get a prediction, and whether a training row may lack a value
is the validate stage's call, not the transform graph's.

The label is the ``label`` parameter's column; its task and classes are what the schema says
(``label.from_schema``). Module functions that take a ``context`` get them
(``user_module.ModuleContext``). Before Beam starts, the features the module reads
(``raw_features``, when it declares them) are checked against the schema: a missing feature,
or a number column that holds text, is an error naming the column, the file and a sample value
instead of a TensorFlow graph dump. While the train split is read, the training labels' figures
(``label.training_statistics``) are computed on the side and written with the task and classes
beside the transform graph (``transform_output.label_info_path``), for tune and train.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from components import names
from components.errors import StageError
from components.lib import bounds, examples, module_inputs, transform_output, user_module
from components.lib import label as label_contract
from components.lib.beam import pickle_by_value, pipeline_options
from components.lib.beam import run as beam_run
from components.lib.schema_io import read_schema, schema_file_of

STAGE = names.STAGE_TRANSFORM
METRICS_NAMESPACE = "kubetfx_transform"
READ_BATCH_SIZE = 1000  # rows per Arrow batch read (tfx-bsl's cap for the batches its Beam sources make)


@dataclasses.dataclass
class TransformResult:
    """What the transform stage wrote: rows per split, transformed features, timings."""

    rows: dict[str, int]
    transformed_features: dict[str, str]
    module: str
    seconds: float
    beam_seconds: float
    label: Any = None  # label.LabelInfo, with the training labels' figures

    def metadata(self) -> dict[str, Any]:
        meta = {
            names.META_ROWS: self.rows,
            "transformed_features": self.transformed_features,
            "module": self.module,
            "beam_seconds": round(self.beam_seconds, 3),
        }
        if self.label is not None:
            meta.update(label=self.label.name, task=self.label.task, classes=list(self.label.classes))
        return meta


def load_schema(schema_path: Path, label: str) -> Any:
    """The schema artifact (``schema_io.read_schema``); it must describe the label."""
    schema = read_schema(schema_path, STAGE)
    if label not in {f.name for f in schema.feature}:
        raise StageError(
            STAGE,
            str(schema_file_of(schema_path, STAGE)),
            f"schema has no label feature {label!r}; its features are {[f.name for f in schema.feature]}",
        )
    return schema


def input_schema(schema: Any, label: str) -> Any:
    """The schema TFT reads with: every feature but the label optional (VarLen).

    Dropping ``shape`` makes tfx-bsl represent a feature as a VarLenSparseTensor; the label
    keeps its shape (a training row without a label is an error, not a default).
    """
    out = type(schema)()
    out.CopyFrom(schema)
    for feature in out.feature:
        if feature.name == label:
            continue
        feature.ClearField("shape")
        if feature.HasField("presence"):
            feature.presence.min_fraction = 0.0
    # Environments (e.g. a SERVING env without the label) do not change how TFT reads training data.
    del out.default_environment[:]
    for feature in out.feature:
        del feature.in_environment[:]
        del feature.not_in_environment[:]
    return out


def _wrap_preprocessing_fn(fn: Any, location: str, context: Any) -> Any:
    """``fn`` with its exceptions turned into a StageError naming the user module file."""
    label = context.label

    def preprocessing_fn(inputs: dict[str, Any]) -> dict[str, Any]:
        checked = module_inputs.CheckedInputs(inputs, location, STAGE)
        # user_module.call turns the function's own error into one line: the file, the line, the hint.
        out = user_module.call(fn, checked, context=context, stage=STAGE)
        if not isinstance(out, dict) or not out:
            raise StageError(
                STAGE, location, f"{user_module.PREPROCESSING_FN} must return a non-empty dict of tensors"
            )
        if label not in out:
            raise StageError(
                STAGE,
                location,
                f"{user_module.PREPROCESSING_FN} must pass the label {label!r} through to its outputs",
            )
        return out

    return preprocessing_fn


def run_transform(
    examples_dir: Path,
    schema_path: Path,
    output_dir: Path,
    *,
    module_file: str,
    storage_root: str,
    beam_args: str,
    label: str,
    source: str | None = None,
) -> TransformResult:
    """Analyze train, transform train and eval; write ``output_dir/{transform_graph,transformed_examples}``.

    ``output_dir`` must be a fresh directory (the caller writes atomically). ``source``: the CSV
    the examples came from, named in data errors.
    """
    start = time.perf_counter()
    if not label:
        raise StageError(STAGE, None, "the label name is empty")
    module = user_module.load_user_module(module_file, storage_root, STAGE)
    if user_module.module_reference(module) != module.__name__:  # a file: its code goes to the workers
        pickle_by_value(module)
    location = user_module.module_location(module)
    user_fn = user_module.require(module, user_module.PREPROCESSING_FN, STAGE)  # before any work
    raw_schema = load_schema(schema_path, label)
    info = label_contract.from_schema(
        raw_schema, label, stage=STAGE, where=str(schema_file_of(schema_path, STAGE))
    )
    context = user_module.ModuleContext(label=label, task=info.task, classes=info.classes, schema=raw_schema)
    preprocessing_fn = _wrap_preprocessing_fn(user_fn, location, context)
    split_paths = {split: examples.split_files(examples_dir, split, STAGE) for split in names.SPLITS}
    module_inputs.check_raw_features(module, context, raw_schema, split_paths[names.TRAIN], source, STAGE)
    if module.__name__ == names.DEFAULT_MODULE:  # one analyzer per column: refuse what cannot fit
        bounds.check_transform_memory(len(module.raw_features(context)), STAGE)
    schema = input_schema(raw_schema, label)
    files = {split: [str(f) for f in paths] for split, paths in split_paths.items()}
    options = pipeline_options(beam_args, STAGE)

    import apache_beam as beam
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from tfx_bsl.coders import example_coder
    from tfx_bsl.public import tfxio

    from components.lib.tfrecord import frame

    graph_dir = transform_output.graph_dir(output_dir)
    transformed_dir = transform_output.transformed_examples_dir(output_dir)
    tmp_dir = output_dir / ".tft_tmp"
    stats_file = output_dir / ".label_stats.json"

    class LabelValues(beam.CombineFn):
        """Every training label (numpy), for their exact figures: a float or a short id each."""

        def create_accumulator(self):  # type: ignore[no-untyped-def]
            return []

        def add_input(self, acc, batch):  # type: ignore[no-untyped-def]
            column = batch.column(batch.schema.get_field_index(label)).flatten()
            acc.append(column.to_numpy(zero_copy_only=False))
            return acc

        def merge_accumulators(self, accs):  # type: ignore[no-untyped-def]
            return [a for acc in accs for a in acc]

        def extract_output(self, acc):  # type: ignore[no-untyped-def]
            import numpy as np

            values = np.concatenate(acc) if acc else np.zeros(0)
            return label_contract.training_statistics(info, values)

    def write_label_stats(stats: dict) -> None:  # type: ignore[type-arg]
        stats_file.write_text(json.dumps(stats))

    class ReadRecordBatches(beam.DoFn):
        """One examples file -> Arrow record batches, read and decoded by TFXIO itself.

        TFXIO's ``BeamSource`` reads a file one record per Beam element and batches them again
        (12.9 s for 1,000,000 rows here); its ``RecordBatches`` reads the file with tf.data in
        C++ and decodes whole batches with the same decoder and schema (3.9 s). A gzipped
        TFRecord file cannot be split anyway, so a file per element loses no parallelism: the
        Reshuffle before this lets a distributed runner hand different files to different
        workers. Within a file, rows keep their order.
        """

        def __init__(self, schema: Any) -> None:
            self._schema = schema

        def process(self, path):  # type: ignore[no-untyped-def]
            import tensorflow as tf
            from tfx_bsl.tfxio import dataset_options

            reader = tfxio.TFExampleRecord(
                file_pattern=[path], schema=self._schema, telemetry_descriptors=["kubetfx", STAGE]
            )
            options = dataset_options.RecordBatchesOptions(
                batch_size=READ_BATCH_SIZE, drop_final_batch=False, num_epochs=1, shuffle=False
            )
            try:
                yield from reader.RecordBatches(options)
            except tf.errors.OpError as e:
                raise StageError(STAGE, path, f"cannot read the examples: {e.message}") from e

    class EncodeExamples(beam.DoFn):
        """Transformed Arrow record batches -> one blob of TFRecord-framed tf.Examples per batch.

        One Beam element per batch rather than per example: ``WriteToTFRecord`` frames,
        checksums and compresses every record through Beam's per-element machinery, ~9 us a
        record (at 1,000,000 rows this stage took 36.8 s with it, 30.1 s without). The blob
        holds exactly the records it would have written, in the same TFRecord framing, so the
        files read back the same (tests/test_transform.py checks checksums and row order).
        """

        def __init__(self, split: str) -> None:
            self._split = split
            self._rows = beam.metrics.Metrics.counter(METRICS_NAMESPACE, f"rows_{split}")

        def process(self, batch_and_passthrough):  # type: ignore[no-untyped-def]
            record_batch, _ = batch_and_passthrough
            self._rows.inc(record_batch.num_rows)
            yield b"".join(map(frame, example_coder.RecordBatchToExamples(record_batch)))

    def write(pcoll: Any, split: str) -> None:
        out = examples.split_path(transformed_dir, split)
        out.mkdir(parents=True, exist_ok=True)
        _ = (
            pcoll
            | f"Encode{split}" >> beam.ParDo(EncodeExamples(split))
            | f"Write{split}"
            >> beam.io.WriteToText(  # a file sink that writes each (framed) blob verbatim
                str(out / names.TRANSFORMED_FILE_PREFIX),
                file_name_suffix=".gz",
                append_trailing_newlines=False,
                coder=beam.coders.BytesCoder(),
                compression_type=beam.io.filesystem.CompressionTypes.GZIP,
            )
        )

    beam_start = time.perf_counter()
    try:
        pipeline = beam.Pipeline(options=options)
    except Exception as e:  # e.g. an unknown --runner
        raise StageError(STAGE, None, f"beam_args {beam_args!r}: {e}") from e
    io = {
        split: tfxio.TFExampleRecord(
            file_pattern=files[split], schema=schema, telemetry_descriptors=["kubetfx", STAGE]
        )
        for split in names.SPLITS
    }

    def read(split: str, label: str = "") -> Any:
        return (
            pipeline
            | f"Files{split}{label}" >> beam.Create(files[split])
            | f"Spread{split}{label}" >> beam.Reshuffle()
            | f"Read{split}{label}" >> beam.ParDo(ReadRecordBatches(schema))
        )

    with tft_beam.Context(temp_dir=str(tmp_dir)):
        # The train split is read twice: once for the analyzers, once to transform it. Read once
        # (AnalyzeAndTransformDataset), its rows would wait — in the local runner's memory, 3.5 GB
        # at 10 M rows — until the analysis they feed is done; read twice, each pass streams.
        analyzed = read(names.TRAIN)
        transform_fn = (
            analyzed,
            io[names.TRAIN].TensorAdapterConfig(),
        ) | "Analyze" >> tft_beam.AnalyzeDataset(preprocessing_fn)
        _ = transform_fn | "WriteTransformFn" >> tft_beam.WriteTransformFn(str(graph_dir))
        _ = (
            analyzed
            | "LabelFigures" >> beam.CombineGlobally(LabelValues())
            | "WriteLabelFigures" >> beam.Map(write_label_stats)
        )
        for split in names.SPLITS:
            transformed, _ = (
                (read(split, "ToTransform" if split == names.TRAIN else ""), io[split].TensorAdapterConfig()),
                transform_fn,
            ) | f"Transform{split}" >> tft_beam.TransformDataset(output_record_batches=True)
            write(transformed, split)
        result = beam_run(pipeline, STAGE, str(examples_dir), "transform")
    beam_seconds = time.perf_counter() - beam_start

    rows = _row_counts(result)
    import shutil

    shutil.rmtree(tmp_dir, ignore_errors=True)
    info = info.with_stats(json.loads(stats_file.read_text()))
    stats_file.unlink()
    if info.is_classification and info.stats.get("unknown"):
        raise StageError(
            STAGE,
            str(examples_dir),
            f"{info.stats['unknown']} training row(s) have a label outside the schema's classes "
            f"{list(info.classes)}: fix the data or the schema's label domain",
        )
    # The raw schema TFT read with, where TFTransformOutput.raw_feature_spec() finds it: the
    # trainer parses serving requests with it (TFX's Transform writes the same directory).
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io

    metadata_io.write_metadata(
        dataset_metadata.DatasetMetadata(schema), str(graph_dir / tft.TFTransformOutput.RAW_METADATA_DIR)
    )
    tft_output = tft.TFTransformOutput(str(graph_dir))
    features = {
        name: type(spec).__name__ + ":" + spec.dtype.name
        for name, spec in sorted(tft_output.transformed_feature_spec().items())
    }
    if label not in tft_output.transformed_feature_spec():
        raise StageError(STAGE, location, f"the transformed examples have no label {label!r}")
    info.write(transform_output.label_info_path(graph_dir))
    return TransformResult(
        rows=rows,
        transformed_features=features,
        module=user_module.module_reference(module),
        seconds=time.perf_counter() - start,
        beam_seconds=beam_seconds,
        label=info,
    )


def _row_counts(result: Any) -> dict[str, int]:
    """Rows written per split, from the Beam counters (committed where the runner has them)."""
    from apache_beam.metrics.metric import MetricsFilter

    counts: dict[str, int] = {}
    try:
        query = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))
    except Exception:  # a runner without metrics support
        return counts
    for counter in query["counters"]:
        value = counter.committed if counter.committed is not None else counter.attempted
        split = counter.key.metric.name.removeprefix("rows_")
        counts[split] = counts.get(split, 0) + int(value or 0)
    return counts
