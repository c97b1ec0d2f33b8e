"""Evaluate logic: TFMA on the eval split, candidate and baseline in one pass, and the blessing.

What TFX's Evaluator does, as plain functions: one TFMA Beam pipeline computes ExampleCount,
MeanSquaredError and MeanAbsoluteError for the candidate (and, when resolve-baseline found
one, the baseline: a second ModelSpec with ``is_baseline=True``), overall and per value of the
slice feature, and validates the thresholds. The verdict is TFMA's own ``validation_ok``; the
reasons are written from TFMA's validation failures, so the blessing and the TFMA result can
never disagree (one documented exception: no thresholds configured, below).

Thresholds are configuration, not code:
- ``mae_threshold``: upper bound on the candidate's overall MAE (a TFMA value threshold);
- ``max_relative_degradation``: candidate MAE <= (1 + x) * baseline MAE (a TFMA relative change
  threshold, LOWER_IS_BETTER); only meaningful with a baseline.
A value that is negative (or null in the file) means "not configured". A thresholds file
(JSON or YAML, relative to the storage root or absolute) overrides the parameters key by key:
``{"mae_threshold": 7000, "max_relative_degradation": null}``. Unknown keys are an error, so a
typo cannot silently switch a gate off.

With nothing to check (no threshold configured, or only the change threshold and no
baseline) the model is BLESSED with the explicit reason "no thresholds configured": the
pipeline's gates are opt-in configuration, and a run configured without gates is a run that
means to push. The reason is in the blessing, the report and the registry record. (TFMA's own
validation result then reads ``missing_thresholds: true``, which TFX's Evaluator treats as not
blessed; the blessing records ``validation_ok`` as TFMA wrote it.)

Two engines write the same TFMA result (``engine`` parameter; tests/test_evaluate.py checks them
equal to 1e-6 on the same data, slicing edge cases included):
- ``tfma``: TFMA's Beam pipeline (``run_tfma``), on whatever runner ``beam_args`` names: the
  path to Dataflow/Flink/Spark, where workers scale out.
- ``native``: the same numbers from whole batches in this process (``run_native``), then TFMA's
  own key builder, diff step, validator, validation combiner and writers. ``auto`` (the
  default) picks it when Beam would run locally.

Speed (2 cores, 333,000 eval rows = the 1,000,000-row workload, candidate + baseline): the Beam
path takes 217 s (98 s with one model; 19 s at 33,000 rows), almost all of it Python per example
x slice x model x metric (``to_label_prediction_example_weight`` and the combiners'
``add_input``; slicing by ``smoker`` alone adds 36 %, the baseline doubles it). Its knobs do not
change that: input batches of 250/1,000/4,096 are within 10 % of each other (1,000 is kept:
Beam's adaptive batching starts at one example and was 30 % slower), two workers are slower
(``multi_threading`` 1.3x, ``multi_processing`` 1.9x: pickling between processes). The native
engine takes 1.5 s for the same input (model loading ~0.3 s each, the rest TFRecord reading,
parsing and the two models' predictions on 8,192-example batches); the stage is then bound by
importing TensorFlow and TFMA (~5 s with bytecode caches, as in the image; ~12 s without).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
from pathlib import Path
from typing import Any

from components import names
from components.errors import StageError
from components.lib.beam import pipeline_options

STAGE = names.STAGE_EVALUATE
CANDIDATE = "candidate"
BASELINE = "baseline"
BATCH_SIZE = 1000  # examples per batch fed to the models (see the module docstring)
METRICS = ("ExampleCount", "MeanSquaredError", "MeanAbsoluteError")
MAE = "mean_absolute_error"
MSE = "mean_squared_error"
COUNT = "example_count"
SUMMARY_FILE = "summary.json"
THRESHOLD_KEYS = ("mae_threshold", "max_relative_degradation")
NO_THRESHOLDS = "no thresholds configured"
ENGINE_AUTO, ENGINE_NATIVE, ENGINE_TFMA = "auto", "native", "tfma"
ENGINES = (ENGINE_AUTO, ENGINE_NATIVE, ENGINE_TFMA)


# --- Thresholds ------------------------------------------------------------------------------


@dataclasses.dataclass
class Thresholds:
    """The gates of one evaluation; None = not configured."""

    mae_threshold: float | None
    max_relative_degradation: float | None
    source: str = "parameters"

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _configured(value: Any, key: str, where: str | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise StageError(STAGE, where, f"threshold {key!r} must be a number or null, got {value!r}")
    value = float(value)
    if math.isnan(value):
        raise StageError(STAGE, where, f"threshold {key!r} is NaN")
    return None if value < 0 else value


def load_thresholds(
    mae_threshold: float, max_relative_degradation: float, thresholds_file: str, storage_root: str
) -> Thresholds:
    """The thresholds from the parameters, overridden key by key by ``thresholds_file`` if given."""
    values: dict[str, Any] = {
        "mae_threshold": mae_threshold,
        "max_relative_degradation": max_relative_degradation,
    }
    source = "parameters"
    if thresholds_file:
        path = Path(thresholds_file)
        path = path if path.is_absolute() else Path(storage_root) / path
        try:
            text = path.read_text()
        except OSError as e:
            raise StageError(STAGE, str(path), f"cannot read the thresholds file: {e}") from e
        import yaml  # type: ignore[import-untyped]

        try:
            # YAML is a superset of JSON, but a .json file gets JSON's stricter parser and messages.
            doc = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError) as e:
            raise StageError(STAGE, str(path), f"thresholds file is not valid JSON/YAML: {e}") from e
        if not isinstance(doc, dict):
            raise StageError(STAGE, str(path), f"thresholds file must be a mapping of {list(THRESHOLD_KEYS)}")
        unknown = sorted(set(doc) - set(THRESHOLD_KEYS))
        if unknown:
            raise StageError(
                STAGE, str(path), f"unknown threshold key(s) {unknown}; known: {list(THRESHOLD_KEYS)}"
            )
        values.update(doc)
        source = str(path)
    where = source if thresholds_file else None
    return Thresholds(
        _configured(values["mae_threshold"], "mae_threshold", where),
        _configured(values["max_relative_degradation"], "max_relative_degradation", where),
        source,
    )


# --- Inputs ----------------------------------------------------------------------------------


def check_serving_model(model_dir: Path, role: str) -> Path:
    """The SavedModel must have the serving contract; checked from saved_model.pb, without loading."""
    from tensorflow.core.framework import types_pb2
    from tensorflow.python.saved_model import loader_impl

    if not (model_dir / "saved_model.pb").is_file():
        raise StageError(STAGE, str(model_dir), f"{role} model is no SavedModel: saved_model.pb is missing")
    try:
        saved = loader_impl.parse_saved_model(str(model_dir))
    except (OSError, ValueError) as e:
        raise StageError(STAGE, str(model_dir), f"{role} SavedModel is unreadable: {e}") from e
    sigs = saved.meta_graphs[0].signature_def if saved.meta_graphs else {}
    if names.SERVING_SIGNATURE not in sigs:
        raise StageError(STAGE, str(model_dir), f"{role} model has no {names.SERVING_SIGNATURE!r} signature")
    sig = sigs[names.SERVING_SIGNATURE]
    inp = sig.inputs.get(names.EXAMPLES_INPUT_KEY)
    if len(sig.inputs) != 1 or inp is None or inp.dtype != types_pb2.DT_STRING:
        raise StageError(
            STAGE,
            str(model_dir),
            f"{role} model's {names.SERVING_SIGNATURE!r} must take one string input "
            f"{names.EXAMPLES_INPUT_KEY!r} (serialized tf.Example); it takes {sorted(sig.inputs)}",
        )
    if names.PREDICTIONS_KEY not in sig.outputs:
        raise StageError(
            STAGE,
            str(model_dir),
            f"{role} model's {names.SERVING_SIGNATURE!r} has no output {names.PREDICTIONS_KEY!r}: "
            f"{sorted(sig.outputs)}",
        )
    return model_dir


def eval_files(examples_dir: Path) -> list[Path]:
    """The eval split's TFRecord files."""
    split = examples_dir / names.split_dir(names.EVAL)
    files = sorted(p for p in split.glob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise StageError(STAGE, str(split), "the eval split has no files")
    return files


def check_eval_data(files: list[Path], label: str, slice_feature: str) -> None:
    """The first eval example must carry the label and the slice feature.

    TFMA would otherwise fail deep inside Beam (no label) or silently produce no slices.
    """
    import tensorflow as tf

    ds = tf.data.TFRecordDataset([str(f) for f in files], compression_type="GZIP").take(1)
    try:
        first = next(iter(ds), None)
    except tf.errors.OpError as e:
        raise StageError(STAGE, str(files[0]), f"cannot read the eval examples: {e.message}") from e
    if first is None:
        raise StageError(STAGE, str(files[0].parent), "the eval split has no examples")
    example = tf.train.Example.FromString(first.numpy())
    features = set(example.features.feature)
    if label not in features:
        raise StageError(
            STAGE, str(files[0]), f"label {label!r} is not in the eval examples: {sorted(features)}"
        )
    if slice_feature and slice_feature not in features:
        raise StageError(
            STAGE,
            str(files[0]),
            f"slice feature {slice_feature!r} is not in the eval examples: {sorted(features)}",
        )


# --- TFMA ------------------------------------------------------------------------------------


def eval_config(label: str, slice_feature: str, thresholds: Thresholds, with_baseline: bool) -> Any:
    """The TFMA EvalConfig: models, slices, metrics and the overall-slice thresholds."""
    import tensorflow_model_analysis as tfma

    def spec(name: str, is_baseline: bool = False) -> Any:
        return tfma.ModelSpec(
            name=name,
            label_key=label,
            prediction_key=names.PREDICTIONS_KEY,
            signature_name=names.SERVING_SIGNATURE,
            is_baseline=is_baseline,
        )

    models = [spec(CANDIDATE)] + ([spec(BASELINE, True)] if with_baseline else [])
    overall = [tfma.SlicingSpec()]
    gates = []
    if thresholds.mae_threshold is not None:
        gates.append(
            tfma.PerSliceMetricThreshold(
                slicing_specs=overall,
                threshold=tfma.MetricThreshold(
                    value_threshold=tfma.GenericValueThreshold(
                        upper_bound={"value": thresholds.mae_threshold}
                    )
                ),
            )
        )
    if thresholds.max_relative_degradation is not None and with_baseline:
        gates.append(
            tfma.PerSliceMetricThreshold(
                slicing_specs=overall,
                threshold=tfma.MetricThreshold(
                    change_threshold=tfma.GenericChangeThreshold(
                        direction=tfma.MetricDirection.LOWER_IS_BETTER,
                        relative={"value": thresholds.max_relative_degradation},
                    )
                ),
            )
        )
    metrics = [tfma.MetricConfig(class_name=m) for m in METRICS[:-1]]
    metrics.append(tfma.MetricConfig(class_name=METRICS[-1], per_slice_thresholds=gates))
    slices = overall + ([tfma.SlicingSpec(feature_keys=[slice_feature])] if slice_feature else [])
    return tfma.EvalConfig(
        model_specs=models,
        slicing_specs=slices,
        metrics_specs=[tfma.MetricsSpec(metrics=metrics, model_names=[m.name for m in models])],
    )


def run_tfma(
    files: list[Path],
    candidate_dir: Path,
    baseline_dir: Path | None,
    config: Any,
    output_dir: Path,
    beam_args: str,
) -> None:
    """One Beam pipeline: read the eval split, evaluate both models, write TFMA's result files."""
    import apache_beam as beam
    import tensorflow_model_analysis as tfma
    from tfx_bsl.public import tfxio

    options = pipeline_options(beam_args, STAGE)
    shared = [
        tfma.default_eval_shared_model(
            eval_saved_model_path=str(candidate_dir), model_name=CANDIDATE, eval_config=config
        )
    ]
    if baseline_dir is not None:
        shared.append(
            tfma.default_eval_shared_model(
                eval_saved_model_path=str(baseline_dir), model_name=BASELINE, eval_config=config
            )
        )
    source = tfxio.TFExampleRecord(
        file_pattern=[str(f) for f in files], raw_record_column_name=tfma.ARROW_INPUT_COLUMN
    )
    with beam.Pipeline(options=options) as p:
        _ = (
            p
            | "ReadEvalExamples" >> source.BeamSource(batch_size=BATCH_SIZE)
            | "EvaluateAndWrite"
            >> tfma.ExtractEvaluateAndWriteResults(
                eval_config=config,
                eval_shared_model=shared if len(shared) > 1 else shared[0],
                output_path=str(output_dir),
            )
        )


# --- The native engine -------------------------------------------------------------------------
#
# The per-example work of TFMA's Beam path done on whole batches: the models' serving signatures
# on 8,192 serialized examples at a time, the label and the slice feature parsed by tf.data in
# the same dtypes TFMA's decoder gives them (float32/int64/bytes), the errors in numpy with TFMA's
# per-example arithmetic (float32 difference, float64 sums, NaN errors skipped) and per-slice
# sums by bincount. Everything after that is TFMA's own code: the metric keys from
# ``metric_specs.to_computations``, the baseline diffs as its evaluator adds them,
# ``metrics_validator.validate_metrics`` and ``CombineValidations`` for the verdict, the writer's
# proto converters and the eval-config serializer for the files.

NATIVE_BATCH_SIZE = 8192  # serialized examples per model call (see the module docstring)
NATIVE_METRICS = {"example_count", "mean_squared_error", "mean_absolute_error"}
# The signatures TFMA's TransformedFeaturesExtractor calls when a model has them: TFMA would then
# slice on their outputs, which the native engine does not do.
TFMA_PREPROCESSING_SIGNATURES = ("transformed_features", "transformed_labels")
IN_PROCESS_RUNNERS = ("fnapirunner", "bundlebaseddirectrunner")  # after beam.pipeline_options' rewrite


def _signature_names(model_dir: Path) -> set[str]:
    from tensorflow.python.saved_model import loader_impl

    saved = loader_impl.parse_saved_model(str(model_dir))
    return set(saved.meta_graphs[0].signature_def) if saved.meta_graphs else set()


def choose_engine(engine: str, beam_args: str, model_dirs: list[Path]) -> str:
    """``"native"`` or ``"tfma"`` for the ``engine`` parameter.

    ``auto``: the native engine when Beam would run locally (the FnApiRunner), TFMA's Beam
    pipeline for any other runner (Dataflow, Flink, Spark: the path that scales out), and
    TFMA also when a model has a signature that TFMA would slice on (native cannot).
    """
    from apache_beam.options.pipeline_options import StandardOptions

    choice = (engine or ENGINE_AUTO).strip().lower()
    if choice not in ENGINES:
        raise StageError(STAGE, None, f"engine {engine!r} is unknown; one of {list(ENGINES)}")
    if choice == ENGINE_TFMA:
        return ENGINE_TFMA
    for model_dir in model_dirs:
        found = sorted(_signature_names(model_dir) & set(TFMA_PREPROCESSING_SIGNATURES))
        if found and choice == ENGINE_NATIVE:
            raise StageError(
                STAGE,
                str(model_dir),
                f"the model has TFMA preprocessing signature(s) {found}, which TFMA slices on and the "
                f"native engine does not: use engine {ENGINE_TFMA!r}",
            )
        if found:
            return ENGINE_TFMA
    if choice == ENGINE_NATIVE:
        return ENGINE_NATIVE
    runner = str(pipeline_options(beam_args, STAGE).view_as(StandardOptions).runner or "")
    return ENGINE_NATIVE if runner.rsplit(".", 1)[-1].lower() in IN_PROCESS_RUNNERS else ENGINE_TFMA


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
            if key.name == "example_count":
                metrics[key] = float(s.count)
            elif key.name == "mean_squared_error":
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
) -> None:
    """TFMA's result files for ``config`` without Beam: the same files run_tfma writes."""
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
        [mpv.convert_slice_plots_to_proto((k, {}), add_metrics_callbacks=[]) for k, _ in sliced],
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


# --- Reading the result back -----------------------------------------------------------------


def _slice_name(slice_key: Any) -> str:
    """A TFMA SliceKey proto -> ``"Overall"`` or ``"smoker=yes"``."""
    if not slice_key.single_slice_keys:
        return "Overall"
    parts = []
    for k in slice_key.single_slice_keys:
        kind = k.WhichOneof("kind")
        value = getattr(k, kind) if kind else ""
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        parts.append(f"{k.column}={value}")
    return ", ".join(parts)


def read_metrics(output_dir: Path) -> dict[str, dict[str, dict[str, float]]]:
    """``{slice: {model or model_diff: {metric: value}}}`` from TFMA's metrics file."""
    import tensorflow_model_analysis as tfma

    out: dict[str, dict[str, dict[str, float]]] = {}
    for mfs in tfma.load_metrics(str(output_dir)):
        by_model = out.setdefault(_slice_name(mfs.slice_key), {})
        for kv in mfs.metric_keys_and_values:
            key = kv.key
            if kv.value.WhichOneof("type") != "double_value":
                continue
            model = (key.model_name or CANDIDATE) + ("_diff" if key.is_diff else "")
            by_model.setdefault(model, {})[key.name] = kv.value.double_value.value
    return out


def overall(metrics: dict[str, dict[str, dict[str, float]]], model: str) -> dict[str, float]:
    """Overall example count, MSE, MAE and RMSE of one model (empty if it was not evaluated)."""
    m = metrics.get("Overall", {}).get(model, {})
    if not m:
        return {}
    out = {
        "example_count": m.get(COUNT, float("nan")),
        "mse": m.get(MSE, float("nan")),
        "mae": m.get(MAE, float("nan")),
    }
    out["rmse"] = math.sqrt(out["mse"]) if out["mse"] >= 0 else float("nan")
    return out


# --- The verdict -----------------------------------------------------------------------------


def _n(x: float) -> str:
    return f"{x:,.0f}" if math.isfinite(x) else str(x)


def judge(
    validation: Any,
    thresholds: Thresholds,
    candidate: dict[str, float],
    base: dict[str, float],
    baseline_version: int | None,
) -> tuple[str, list[str]]:
    """(verdict, reasons) from TFMA's ValidationResult.

    Reasons: the failed gates first, then the gates that passed, then notes on what was not
    checked (no baseline, no thresholds), so the first line always explains the verdict.
    """
    reasons: list[str] = []
    mae = candidate.get("mae", float("nan"))
    base_mae = base.get("mae")
    has_baseline = baseline_version is not None
    if not has_baseline:
        reasons.append(f"{names.NO_BASELINE}: the candidate is judged by the absolute threshold only")
    change_applies = thresholds.max_relative_degradation is not None and has_baseline
    if thresholds.mae_threshold is None and not change_applies:
        if thresholds.max_relative_degradation is None:
            reasons.append(NO_THRESHOLDS)
        else:
            reasons.append(f"{NO_THRESHOLDS} that apply: the change threshold needs a baseline")
    if has_baseline and thresholds.max_relative_degradation is None:
        reasons.append(
            f"no change threshold configured: baseline version {baseline_version} is for comparison only"
        )

    failures = [f for s in validation.metric_validations_per_slice for f in s.failures]
    failed: list[str] = []
    value_failed = change_failed = False
    for f in failures:
        value = f.metric_value.double_value.value
        t = f.metric_threshold
        if t.HasField("value_threshold"):
            value_failed = True
            failed.append(
                f"overall {f.metric_key.name} {_n(value)} is above the upper bound "
                f"{_n(t.value_threshold.upper_bound.value)}"
            )
        elif t.HasField("change_threshold"):
            change_failed = True
            rel = value / base_mae if base_mae else float("nan")
            failed.append(
                f"{f.metric_key.name} is {rel:+.1%} against baseline version {baseline_version} "
                f"({_n(base_mae or float('nan'))} -> {_n(mae)}); at most "
                f"{t.change_threshold.relative.value:+.1%} is allowed"
            )
        else:
            failed.append(f"TFMA threshold failed: {f.metric_key.name} = {value}: {f.message.strip()}")
    if not validation.validation_ok and not failures:
        failed.append(f"TFMA validation failed without a metric failure: {validation}")
    passed: list[str] = []
    if thresholds.mae_threshold is not None and not value_failed:
        passed.append(f"overall MAE {_n(mae)} <= upper bound {_n(thresholds.mae_threshold)}")
    if change_applies and base_mae and not change_failed:
        passed.append(
            f"MAE {(mae - base_mae) / base_mae:+.1%} against baseline version {baseline_version} "
            f"({_n(base_mae)} -> {_n(mae)}); at most {thresholds.max_relative_degradation:+.1%} allowed"
        )
    if thresholds.mae_threshold is None and not change_applies:
        # Nothing was handed to TFMA, so its result says validation_ok=False, missing_thresholds
        # (TFX's Evaluator would not bless). Our rule: no gates configured = meant to push.
        return names.BLESSED, reasons
    verdict = names.BLESSED if validation.validation_ok else names.NOT_BLESSED
    return verdict, failed + passed + reasons


# --- The whole stage -------------------------------------------------------------------------


@dataclasses.dataclass
class EvaluateResult:
    """Everything evaluate produced: the blessing document and the numbers behind it."""

    blessing: dict[str, Any]
    metrics: dict[str, dict[str, dict[str, float]]]
    candidate: dict[str, float]
    baseline: dict[str, float]
    eval_result_dir: Path
    seconds: float
    engine: str = ENGINE_TFMA

    @property
    def blessed(self) -> bool:
        return self.blessing["verdict"] == names.BLESSED

    def blessing_metadata(self) -> dict[str, Any]:
        """The blessing artifact's metadata (what push and the KFP UI read)."""
        b = self.blessing
        return {
            "blessed": int(self.blessed),
            "verdict": b["verdict"],
            "reasons": b["reasons"],
            "baseline": b["baseline"] if b["baseline"] is not None else -1,
            "mae": _finite(self.candidate["mae"]),
        }

    def evaluation_metadata(self) -> dict[str, Any]:
        """The evaluation artifact's metadata: where TFMA's result is and how to load it."""
        return {
            "eval_result": str(self.eval_result_dir),
            "verdict": self.blessing["verdict"],
            "mae": _finite(self.candidate["mae"]),
            "rmse": _finite(self.candidate["rmse"]),
            "tfma_seconds": round(self.seconds, 3),
            "engine": self.engine,
            # tfma.load_eval_result(eval_result, model_name=this): TFMA drops model names from its
            # keys when it evaluated one model, so it is "" without a baseline, "candidate" with one.
            "tfma_candidate_model_name": CANDIDATE if self.baseline else "",
        }

    def logged_metrics(self) -> dict[str, float]:
        """The scalars for the KFP Metrics artifact (finite values only: JSON has no NaN)."""
        logged = {k: self.candidate[k] for k in ("example_count", "mse", "mae", "rmse")}
        if self.baseline:
            logged.update(baseline_mae=self.baseline["mae"], baseline_mse=self.baseline["mse"])
        return {k: v for k, v in logged.items() if _finite(v) is not None}


def _finite(x: float) -> float | None:
    """``x``, or None for NaN/inf: a diverged model must not make the metadata invalid JSON."""
    return x if math.isfinite(x) else None


def baseline_of(metadata: dict[str, Any], artifact_path: str) -> tuple[Path | None, int | None]:
    """The baseline SavedModel directory and registry version resolve-baseline passed, or (None, None).

    The artifact's metadata says ``found``; when KFP lost the metadata on the way, the artifact
    file (written by resolve-baseline with the same content) is read instead. If neither says,
    that is an error: evaluating without the baseline would silently drop its gate.
    """
    meta = dict(metadata)
    if "found" not in meta:
        try:
            meta = json.loads(Path(artifact_path).read_text())
        except (OSError, ValueError) as e:
            raise StageError(
                STAGE,
                artifact_path,
                f"the baseline artifact has no 'found' metadata and no readable file: {e}",
            ) from e
        if not isinstance(meta, dict) or "found" not in meta:
            raise StageError(
                STAGE, artifact_path, "the baseline artifact file does not say whether one was found"
            )
    if not meta.get("found"):
        return None, None
    if not meta.get(names.META_MODEL_PATH) or meta.get("version") is None:
        raise StageError(
            STAGE, artifact_path, f"baseline is marked found but has no {names.META_MODEL_PATH}/version"
        )
    return Path(meta[names.META_MODEL_PATH]), int(meta["version"])


def evaluate_models(
    examples_dir: Path,
    candidate_dir: Path,
    baseline_dir: Path | None,
    baseline_version: int | None,
    output_dir: Path,
    *,
    label: str,
    slice_feature: str,
    thresholds: Thresholds,
    beam_args: str,
    engine: str = ENGINE_AUTO,
) -> EvaluateResult:
    """Write TFMA's result into ``output_dir/eval_result`` (native or Beam engine) and judge."""
    import time

    import tensorflow_model_analysis as tfma

    files = eval_files(examples_dir)
    check_serving_model(candidate_dir, CANDIDATE)
    if baseline_dir is not None:
        check_serving_model(baseline_dir, BASELINE)
    check_eval_data(files, label, slice_feature)
    models = [candidate_dir] + ([baseline_dir] if baseline_dir is not None else [])
    chosen = choose_engine(engine, beam_args, models)
    config = eval_config(label, slice_feature, thresholds, baseline_dir is not None)
    result_dir = output_dir / names.EVAL_RESULT_DIR
    result_dir.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    if chosen == ENGINE_NATIVE:
        run_native(
            files, candidate_dir, baseline_dir, config, result_dir, label=label, slice_feature=slice_feature
        )
    else:
        run_tfma(files, candidate_dir, baseline_dir, config, result_dir, beam_args)
    seconds = time.monotonic() - start

    metrics = read_metrics(result_dir)
    cand = overall(metrics, CANDIDATE)
    base = overall(metrics, BASELINE) if baseline_dir is not None else {}
    if not cand or not cand.get("example_count"):
        raise StageError(STAGE, str(result_dir), "TFMA computed no metrics: are there eval examples?")
    validation = tfma.load_validation_result(str(result_dir))
    verdict, reasons = judge(validation, thresholds, cand, base, baseline_version)
    blessing = {
        "verdict": verdict,
        "reasons": reasons,
        "baseline": baseline_version,
        "model_path": str(candidate_dir),
        "baseline_model_path": str(baseline_dir) if baseline_dir is not None else None,
        "metrics": cand,
        "baseline_metrics": base or None,
        "thresholds": thresholds.as_dict(),
        "validation_ok": bool(validation.validation_ok),
        "eval_result": str(result_dir),
        "time": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    summary = {
        "blessing": blessing,
        "slices": metrics,
        "engine": chosen,
        "tfma_seconds": round(seconds, 3),
        "label": label,
        "slice_feature": slice_feature,
    }
    (output_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, sort_keys=True, default=str))
    return EvaluateResult(blessing, metrics, cand, base, result_dir, seconds, chosen)


# --- The report ------------------------------------------------------------------------------


def render_report(result: EvaluateResult, *, label: str, slice_feature: str) -> str:
    """A self-contained HTML page: verdict and reasons, overall and per-slice metrics, comparison."""
    from components.lib import html as h

    b = result.blessing
    has_base = bool(result.baseline)
    ok = b["verdict"] == names.BLESSED
    t = b["thresholds"]
    parts = [
        h.section(
            "Verdict",
            h.badge(b["verdict"], "ok" if ok else "bad"),
            "<ul>" + "".join(f"<li>{h.esc(r)}</li>" for r in b["reasons"]) + "</ul>",
            h.kv_table(
                [
                    (
                        "MAE upper bound",
                        "not configured" if t["mae_threshold"] is None else t["mae_threshold"],
                    ),
                    (
                        "max relative degradation",
                        "not configured"
                        if t["max_relative_degradation"] is None
                        else h.fmt_pct(t["max_relative_degradation"]),
                    ),
                    ("thresholds from", t["source"]),
                    (
                        "baseline",
                        f"version {b['baseline']}" if b["baseline"] is not None else names.NO_BASELINE,
                    ),
                    ("candidate model", b["model_path"]),
                    ("baseline model", b["baseline_model_path"] or ""),
                ],
                caption="Configuration",
            ),
        )
    ]
    cand, base = result.candidate, result.baseline
    rows = []
    for key, title in (
        ("example_count", "examples"),
        ("mae", "mean absolute error"),
        ("mse", "mean squared error"),
        ("rmse", "root mean squared error"),
    ):
        row: list[Any] = [title, cand.get(key)]
        if has_base:
            bv, cv = base.get(key), cand.get(key)
            row += [f"{(cv - bv) / bv:+.1%}" if bv and cv is not None and key != "example_count" else ""]
            row.insert(2, bv)
        rows.append(row)
    headers = ["metric", "candidate"] + (["baseline", "change"] if has_base else [])
    parts.append(h.section("Overall", h.table(headers, rows, caption=f"label {label!r}, eval split")))

    slice_rows, labels, maes = [], [], []
    for name, by_model in sorted(result.metrics.items(), key=lambda kv: (kv[0] != "Overall", kv[0])):
        c = by_model.get(CANDIDATE, {})
        row = [name, c.get(COUNT), c.get(MAE), c.get(MSE)]
        labels.append(f"{name} candidate" if has_base else name)
        maes.append(c.get(MAE) or 0.0)
        if has_base:
            bm = by_model.get(BASELINE, {})
            row += [bm.get(MAE), bm.get(MSE)]
            labels.append(f"{name} baseline")  # one chart, one scale: bars side by side compare
            maes.append(bm.get(MAE) or 0.0)
        slice_rows.append(row)
    sh = ["slice", "examples", "MAE", "MSE"] + (["baseline MAE", "baseline MSE"] if has_base else [])
    chart = h.bar_chart(labels, maes, title="MAE per slice", width=520)
    parts.append(
        h.section(
            f"Slices (overall and by {slice_feature!r})" if slice_feature else "Slices",
            h.table(sh, slice_rows),
            chart,
        )
    )
    parts.append(
        h.paragraph(
            f"TFMA result: {result.eval_result_dir} (tfma.load_eval_result(path"
            + (f", model_name='{CANDIDATE}'" if has_base else "")
            + f"), tfma.load_validation_result(path)). TFMA wall time {result.seconds:.1f} s.",
            muted=True,
        )
    )
    return h.page("Model evaluation", parts, subtitle=f"{b['verdict']} - {b['time']}")
