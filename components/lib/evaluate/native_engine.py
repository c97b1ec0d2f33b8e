"""The native engine: TFMA's result files for an EvalConfig, computed in this process without Beam.

The per-example work of TFMA's Beam path done on whole batches: the models' serving signatures
on 8,192 serialized examples at a time, the label and the slice feature parsed by tf.data in
the same dtypes TFMA's decoder gives them (float32/int64/bytes), the errors in numpy with TFMA's
per-example arithmetic (float32 difference, float64 sums, NaN errors skipped) and per-slice
sums by bincount. Everything after that is TFMA's own code: the metric keys from
``metric_specs.to_computations``, the baseline diffs as its evaluator adds them,
``metrics_validator.validate_metrics`` and ``CombineValidations`` for the verdict, the writer's
proto converters and the eval-config serializer for the files.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from components import names
from components.errors import StageError
from components.lib.evaluate.engines import ENGINE_TFMA
from components.lib.evaluate.keys import BASELINE, CANDIDATE, COUNT, MAE, MSE, STAGE

NATIVE_BATCH_SIZE = 8192  # serialized examples per model call (see the package docstring)
NATIVE_METRICS = {COUNT, MSE, MAE}


@dataclasses.dataclass
class _Sums:
    """One slice's running sums: its examples, and per model the errors of non-NaN examples."""

    count: int = 0
    abs_err: dict[str, float] = dataclasses.field(default_factory=dict)
    sq_err: dict[str, float] = dataclasses.field(default_factory=dict)
    weight: dict[str, int] = dataclasses.field(default_factory=dict)

    def add(self, model: str, abs_err: float, sq_err: float, weight: int) -> None:
        self.abs_err[model] = self.abs_err.get(model, 0.0) + abs_err
        self.sq_err[model] = self.sq_err.get(model, 0.0) + sq_err
        self.weight[model] = self.weight.get(model, 0) + weight


def _slice_value(value: Any, feature: str, where: str) -> Any:
    """A decoded feature value as TFMA's slicer keys it: bytes -> str (strict UTF-8)."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as e:
            raise StageError(
                STAGE, where, f"slice feature {feature!r} has a non-UTF-8 value {value!r}"
            ) from e
    return value


def _label_values(rows: Any, values: Any, n: int, label: str, where: str) -> Any:
    """The label of every example of a batch: numeric, exactly one value each."""
    import numpy as np

    per_row = np.bincount(rows, minlength=n)
    bad = int(np.count_nonzero(per_row != 1))
    if bad:
        raise StageError(
            STAGE,
            where,
            f"{bad} eval example(s) do not have exactly one {label!r} value (counts {set(per_row)})",
        )
    if values.dtype.kind not in "fiu":
        raise StageError(STAGE, where, f"label {label!r} must be numeric, it is {values.dtype}")
    return values


def _slice_groups(rows: Any, values: Any, feature: str, where: str) -> tuple[list[Any], Any, Any]:
    """(slice values, row of each (row, value) pair, value index of each pair) of one batch.

    As TFMA's slicer: one slice per distinct value of an example (a multivalent feature puts the
    example in several slices, each once); an example without the feature is in no slice.
    """
    import numpy as np

    if len(values) == 0:
        return [], rows, rows
    uniques, codes = np.unique(values, return_inverse=True)
    codes = codes.astype(np.int64).reshape(-1)
    if len(rows) > 1 and np.any(rows[1:] == rows[:-1]):  # a multivalent example: each value once
        pairs = np.unique(rows * len(uniques) + codes)
        rows, codes = pairs // len(uniques), pairs % len(uniques)
    return [_slice_value(v, feature, where) for v in uniques.tolist()], rows, codes


def _rows_values(sparse: Any) -> tuple[Any, Any]:
    """(example row of each value, the values) of a parsed VarLenFeature."""
    import numpy as np

    return sparse.indices.numpy()[:, 0].astype(np.int64), sparse.values.numpy()


def _feature_dtypes(files: list[Path], features: list[str], where: str) -> dict[str, Any]:
    """The tf dtype of each feature, from the first of the first examples that has a value kind.

    TFMA's decoder (tfx_bsl, no schema) infers the same types from the data and also needs one
    kind per feature; a feature without a value in those examples reads as bytes (no slice then).
    """
    import tensorflow as tf

    kinds = {"float_list": tf.float32, "int64_list": tf.int64, "bytes_list": tf.string}
    found: dict[str, Any] = {}
    ds = tf.data.TFRecordDataset([str(f) for f in files], compression_type="GZIP").take(1000)
    try:
        for record in ds:
            example = tf.train.Example.FromString(record.numpy())
            for name in features:
                feature = example.features.feature.get(name)
                if name not in found and feature is not None and feature.WhichOneof("kind"):
                    found[name] = kinds[feature.WhichOneof("kind")]
            if len(found) == len(features):
                break
    except tf.errors.OpError as e:
        raise StageError(STAGE, where, f"cannot read the eval examples: {e.message}") from e
    return {name: found.get(name, tf.string) for name in features}


def _load_signatures(models: dict[str, Path]) -> dict[str, tuple[Any, Any]]:
    """{TFMA model name: (loaded SavedModel, its serving function)}; the object keeps it alive."""
    import tensorflow as tf

    out = {}
    for name, model_dir in models.items():
        try:
            loaded = tf.saved_model.load(str(model_dir))
        except (OSError, ValueError, tf.errors.OpError) as e:
            raise StageError(STAGE, str(model_dir), f"cannot load the SavedModel: {e}") from e
        out[name] = (loaded, loaded.signatures[names.SERVING_SIGNATURE])
    return out


def native_sums(
    files: list[Path],
    models: dict[str, Path],
    *,
    label: str,
    slice_feature: str,
    batch_size: int = NATIVE_BATCH_SIZE,
) -> dict[tuple, _Sums]:
    """Per-slice sums over the eval split for every model, one pass over the data.

    ``models`` is keyed by the model names TFMA uses in its metric keys ("" for one model).
    Errors as TFMA's combiners compute them per example: ``|label - prediction|`` and
    ``norm(label - prediction) ** 2`` in the inputs' own dtype (float32), then float64; an
    example whose error is NaN counts in example_count but not in the means. The label and the
    slice feature are parsed by tf.data in the background while the models predict.
    """
    import numpy as np
    import tensorflow as tf

    where = str(files[0].parent)
    features = [label] + ([slice_feature] if slice_feature and slice_feature != label else [])
    dtypes = _feature_dtypes(files, features, where)
    spec = {name: tf.io.VarLenFeature(dtypes[name]) for name in features}
    signatures = _load_signatures(models)

    def parse(serialized: Any) -> tuple[Any, Any]:
        return serialized, tf.io.parse_example(serialized, spec)

    ds = tf.data.TFRecordDataset([str(f) for f in files], compression_type="GZIP", buffer_size=1 << 22)
    ds = ds.batch(batch_size).map(parse).prefetch(1)
    sums: dict[tuple, _Sums] = {(): _Sums()}
    it = iter(ds)
    while True:
        try:
            serialized, parsed = next(it)
        except StopIteration:
            break
        except tf.errors.OpError as e:
            raise StageError(STAGE, where, f"cannot read the eval examples: {e.message}") from e
        n = int(serialized.shape[0])

        labels = _label_values(*_rows_values(parsed[label]), n, label, where)
        no_slices: tuple[list[Any], Any, Any] = ([], np.zeros(0, np.int64), np.zeros(0, np.int64))
        values, rows, codes = (
            _slice_groups(*_rows_values(parsed[slice_feature]), slice_feature, where)
            if slice_feature
            else no_slices
        )
        slice_sums = [sums.setdefault(((slice_feature, v),), _Sums()) for v in values]
        sums[()].count += n
        if values:
            for s, count in zip(slice_sums, np.bincount(codes, minlength=len(values)), strict=True):
                s.count += int(count)
        for name, (_, serve) in signatures.items():
            pred = serve(**{names.EXAMPLES_INPUT_KEY: serialized})[names.PREDICTIONS_KEY].numpy()
            if pred.size != n:
                raise StageError(
                    STAGE,
                    str(models[name]),
                    f"{names.PREDICTIONS_KEY!r} has shape {pred.shape} for {n} examples: "
                    "one value per example expected",
                )
            diff = labels - pred.reshape(-1)
            abs_err = np.abs(diff).astype(np.float64)
            sq_err = np.sqrt(diff * diff).astype(np.float64) ** 2  # np.linalg.norm of one value
            ok = ~np.isnan(abs_err)
            abs_err, sq_err = np.where(ok, abs_err, 0.0), np.where(ok, sq_err, 0.0)
            sums[()].add(name, float(abs_err.sum()), float(sq_err.sum()), int(ok.sum()))
            if values:
                per_abs = np.bincount(codes, weights=abs_err[rows], minlength=len(values))
                per_sq = np.bincount(codes, weights=sq_err[rows], minlength=len(values))
                per_ok = np.bincount(codes, weights=ok[rows], minlength=len(values))
                for j, s in enumerate(slice_sums):
                    s.add(name, float(per_abs[j]), float(per_sq[j]), int(per_ok[j]))
    return sums


def _sliced_metrics(sums: dict[tuple, _Sums], config: Any) -> list[tuple[tuple, dict]]:
    """[(slice key, {MetricKey: value})] in TFMA's in-memory form, with TFMA's baseline diffs."""
    from tensorflow_model_analysis.metrics import metric_specs, metric_types
    from tensorflow_model_analysis.utils import model_util

    keys = []
    for computation in metric_specs.to_computations(config.metrics_specs, eval_config=config):
        for key in computation.keys:
            plain = not (key.output_name or key.sub_key or key.aggregation_type or key.example_weighted)
            if (
                type(computation) is not metric_types.MetricComputation
                or key.name not in NATIVE_METRICS
                or not plain
            ):
                raise StageError(
                    STAGE, None, f"the native engine cannot compute {key}: use engine {ENGINE_TFMA!r}"
                )
            keys.append(key)
    baseline_spec = model_util.get_baseline_model_spec(config)
    baseline = baseline_spec.name if baseline_spec else None

    def mean(total: dict[str, float], s: _Sums, model: str) -> float:
        return total[model] / s.weight[model] if s.weight.get(model) else float("nan")

    out = []
    for slice_key in sorted(sums, key=lambda k: (k != (), k)):
        s = sums[slice_key]
        if not s.count:
            continue
        metrics: dict[Any, Any] = {}
        for key in keys:
            if key.name == COUNT:
                metrics[key] = float(s.count)
            elif key.name == MSE:
                metrics[key] = mean(s.sq_err, s, key.model_name)
            else:
                metrics[key] = mean(s.abs_err, s, key.model_name)
        if baseline:  # what TFMA's evaluator does in add_diff_metrics
            diffs = {}
            for key, value in metrics.items():
                if not key.is_diff and key.model_name != baseline:
                    base_key = key.make_baseline_key(baseline)
                    if base_key in metrics:
                        diffs[key.make_diff_key()] = value - metrics[base_key]
            metrics.update(diffs)
        out.append((slice_key, metrics))
    return out


def _classification_arrays(
    files: list[Path], models: dict[str, Path], label: str, slice_feature: str, batch_size: int, info: Any
) -> tuple[Any, dict[str, Any], dict[tuple, Any]]:
    """(class id of every eval example, each model's scores [n, K], each slice's example rows)."""
    import numpy as np
    import tensorflow as tf

    from components.lib.label import class_ids

    where = str(files[0].parent)
    features = [label] + ([slice_feature] if slice_feature and slice_feature != label else [])
    dtypes = _feature_dtypes(files, features, where)
    spec = {name: tf.io.VarLenFeature(dtypes[name]) for name in features}
    signatures = _load_signatures(models)
    ds = tf.data.TFRecordDataset([str(f) for f in files], compression_type="GZIP", buffer_size=1 << 22)
    ds = ds.batch(batch_size).map(lambda x: (x, tf.io.parse_example(x, spec))).prefetch(1)
    ids: list[Any] = []
    scores: dict[str, list[Any]] = {name: [] for name in models}
    members: dict[tuple[tuple[str, Any], ...], list[Any]] = {}
    offset = 0
    try:
        for serialized, parsed in ds:
            n = int(serialized.shape[0])
            rows, values = _rows_values(parsed[label])
            if np.any(np.bincount(rows, minlength=n) != 1):
                raise StageError(STAGE, where, f"every eval example must have exactly one {label!r} value")
            ids.append(class_ids(info, values))
            for name, (_, serve) in signatures.items():
                out = serve(**{names.EXAMPLES_INPUT_KEY: serialized})
                if names.SCORES_KEY not in out:
                    raise StageError(
                        STAGE, str(models[name]), f"a classifier must output {names.SCORES_KEY!r}"
                    )
                scores[name].append(out[names.SCORES_KEY].numpy().reshape(n, -1))
            if slice_feature:
                values, rows, codes = _slice_groups(
                    *_rows_values(parsed[slice_feature]), slice_feature, where
                )
                for j, value in enumerate(values):
                    members.setdefault(((slice_feature, value),), []).append(rows[codes == j] + offset)
            offset += n
    except tf.errors.OpError as e:
        raise StageError(STAGE, where, f"cannot read the eval examples: {e.message}") from e
    all_ids = np.concatenate(ids) if ids else np.zeros(0, np.int64)
    slices: dict[tuple[tuple[str, Any], ...], Any] = {(): np.arange(offset)}
    slices.update({k: np.concatenate(v) for k, v in members.items()})
    return all_ids, {k: np.concatenate(v) for k, v in scores.items()}, slices


def _write_records(path: Path, protos: list[Any]) -> None:
    import tensorflow as tf

    with tf.io.TFRecordWriter(str(path)) as writer:
        for proto in protos:
            writer.write(proto.SerializeToString())


def run_native(
    files: list[Path],
    candidate_dir: Path,
    baseline_dir: Path | None,
    config: Any,
    output_dir: Path,
    *,
    label: str,
    slice_feature: str,
    batch_size: int = NATIVE_BATCH_SIZE,
    info: Any = None,
) -> None:
    """TFMA's result files for ``config`` without Beam: the same files run_tfma writes.

    ``info``: the candidate's ``label.LabelInfo``; for classification the metrics and plots come
    from ``native_classification`` on the class ids and the models' scores.
    """
    from tensorflow_model_analysis import constants
    from tensorflow_model_analysis.evaluators import metrics_validator
    from tensorflow_model_analysis.utils import config_util
    from tensorflow_model_analysis.writers import eval_config_writer
    from tensorflow_model_analysis.writers import metrics_plots_and_validations_writer as mpv

    has_baseline = baseline_dir is not None
    # What ExtractEvaluateAndWriteResults does first (rubber_stamp: default_eval_shared_model's).
    config = config_util.update_eval_config_with_defaults(
        config, has_baseline=has_baseline, rubber_stamp=False
    )
    # TFMA keys a lone model as "" (so does its eval_config.json's modelLocations).
    models = (
        {"": candidate_dir} if baseline_dir is None else {CANDIDATE: candidate_dir, BASELINE: baseline_dir}
    )
    plots: dict[tuple, dict] = {}
    if info is not None and info.is_classification:
        from tensorflow_model_analysis.metrics import metric_types

        from components.lib.evaluate.native_classification import sliced_results

        ids, scores, slices = _classification_arrays(files, models, label, slice_feature, batch_size, info)
        sliced = []
        for key, values in sliced_results(config, ids, scores, slices):
            plots[key] = {k: v for k, v in values.items() if isinstance(k, metric_types.PlotKey)}
            sliced.append((key, {k: v for k, v in values.items() if k not in plots[key]}))
    else:
        sums = native_sums(files, models, label=label, slice_feature=slice_feature, batch_size=batch_size)
        sliced = _sliced_metrics(sums, config)

    combine = mpv.CombineValidations(config, rubber_stamp=False)
    validation = combine.create_accumulator()
    for item in sliced:
        validation = combine.add_input(validation, metrics_validator.validate_metrics(item, config))
    validation = combine.extract_output(validation)

    shard = "-00000-of-00001.tfrecord"  # Beam's WriteToTFRecord names for one shard
    _write_records(
        output_dir / (constants.METRICS_KEY + shard),
        [mpv.convert_slice_metrics_to_proto(item, add_metrics_callbacks=[]) for item in sliced],
    )
    _write_records(
        output_dir / (constants.PLOTS_KEY + shard),
        [
            mpv.convert_slice_plots_to_proto((k, plots.get(k, {})), add_metrics_callbacks=[])
            for k, _ in sliced
        ],
    )
    _write_records(
        output_dir / (constants.ATTRIBUTIONS_KEY + shard),
        [mpv.convert_slice_attributions_to_proto((k, {})) for k, _ in sliced],
    )
    _write_records(output_dir / f"{constants.VALIDATIONS_KEY}.tfrecord", [validation])
    run = eval_config_writer._serialize_eval_run(  # noqa: SLF001 - TFMA's own serializer, same JSON
        config, "<user provided PCollection>", "<unknown>", {k: str(v) for k, v in models.items()}
    )
    config_file = f"{eval_config_writer.EVAL_CONFIG_FILE}.{eval_config_writer.EVAL_CONFIG_FILE_FORMAT}"
    (output_dir / config_file).write_text(run + "\n")  # Beam's WriteToText ends the line
