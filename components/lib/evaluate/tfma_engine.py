"""TFMA's own path: the EvalConfig both engines evaluate, and the Beam pipeline that runs it.

The EvalConfig names the models (the candidate; the baseline as a second ModelSpec with
``is_baseline=True``), the slices (overall and per value of the slice feature), the metrics, and
the gates as TFMA thresholds on the overall slice (``gating.Gates``). ``run_tfma`` runs TFMA's
``ExtractEvaluateAndWriteResults`` on whatever runner ``beam_args`` names: the path to
Dataflow/Flink/Spark, where workers scale out.

The metrics are the task's, as TFMA's own defaults pick them:
- regression: ExampleCount, MeanSquaredError, MeanAbsoluteError (the gated one);
- classification (the model's ``scores`` over its ``classes``, from which TFMA maps text labels
  to class ids): ExampleCount, Keras' SparseCategoricalAccuracy as ``accuracy`` (the gated one)
  and SparseCategoricalCrossentropy as ``log_loss`` (TFMA's ``default_multi_class_classification_specs``
  uses the same two), the MultiClassConfusionMatrixPlot, and per class (one-vs-rest, TFMA's
  ``binarize``) AUC, precision and recall, and the ConfusionMatrixPlot from which the ROC
  curve comes. For a binary label the second class (the schema's order: "yes" after "no", 1
  after 0) is the positive one: its AUC is the model's AUC.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from components import names
from components.lib.beam import pipeline_options
from components.lib.evaluate.gating import Gates, Thresholds
from components.lib.evaluate.gating import gates as gating_gates
from components.lib.evaluate.keys import (
    ACCURACY,
    AUC,
    BASELINE,
    CANDIDATE,
    CONFUSION_MATRIX,
    COUNT,
    LOG_LOSS,
    PRECISION,
    RECALL,
    ROC,
    STAGE,
)

BATCH_SIZE = 1000  # examples per batch fed to the models (see the package docstring)
METRICS = ("ExampleCount", "MeanSquaredError", "MeanAbsoluteError")
# Classification: (TFMA or Keras class, the name it is reported under).
CLASSIFICATION_METRICS = (
    ("ExampleCount", COUNT),
    ("SparseCategoricalAccuracy", ACCURACY),
    ("SparseCategoricalCrossentropy", LOG_LOSS),
    ("MultiClassConfusionMatrixPlot", CONFUSION_MATRIX),
)
PER_CLASS_METRICS = (("AUC", AUC), ("Precision", PRECISION), ("Recall", RECALL), ("ConfusionMatrixPlot", ROC))


def _metric(class_name: str, name: str, gates: list[Any] | None = None) -> Any:
    import tensorflow_model_analysis as tfma

    return tfma.MetricConfig(
        class_name=class_name, config=json.dumps({"name": name}), per_slice_thresholds=gates
    )


def _thresholds(gates: Gates, with_baseline: bool) -> list[Any]:
    """The gates as TFMA thresholds on the overall slice (the gated metric's value and its change)."""
    import tensorflow_model_analysis as tfma

    overall = [tfma.SlicingSpec()]
    out = []
    if gates.lower is not None or gates.upper is not None:
        bounds = {"lower_bound": {"value": gates.lower}} if gates.lower is not None else {}
        if gates.upper is not None:
            bounds["upper_bound"] = {"value": gates.upper}
        out.append(
            tfma.PerSliceMetricThreshold(
                slicing_specs=overall,
                threshold=tfma.MetricThreshold(value_threshold=tfma.GenericValueThreshold(**bounds)),
            )
        )
    if gates.change is not None and with_baseline:
        higher = tfma.MetricDirection.HIGHER_IS_BETTER
        lower = tfma.MetricDirection.LOWER_IS_BETTER
        out.append(
            tfma.PerSliceMetricThreshold(
                slicing_specs=overall,
                threshold=tfma.MetricThreshold(
                    change_threshold=tfma.GenericChangeThreshold(
                        direction=higher if gates.higher_is_better else lower,
                        relative={"value": -gates.change if gates.higher_is_better else gates.change},
                    )
                ),
            )
        )
    return out


def eval_config(
    label: str,
    slice_feature: str,
    thresholds: Thresholds,
    with_baseline: bool,
    info: Any = None,
    gates: Gates | None = None,
) -> Any:
    """The TFMA EvalConfig: models, slices, the task's metrics and the overall-slice thresholds.

    ``info``: the candidate's ``label.LabelInfo`` (None: regression); ``gates``: the bounds
    ``gating.gates`` derived (None: from ``thresholds`` alone, as without a naive predictor).
    """
    import tensorflow_model_analysis as tfma

    classification = info is not None and info.is_classification
    if gates is None:
        gates = gating_gates(thresholds, info, None)

    def spec(name: str, is_baseline: bool = False) -> Any:
        return tfma.ModelSpec(
            name=name,
            label_key=label,
            prediction_key=names.SCORES_KEY if classification else names.PREDICTIONS_KEY,
            signature_name=names.SERVING_SIGNATURE,
            is_baseline=is_baseline,
        )

    models = [spec(CANDIDATE)] + ([spec(BASELINE, True)] if with_baseline else [])
    model_names = [m.name for m in models]
    overall = [tfma.SlicingSpec()]
    slices = overall + ([tfma.SlicingSpec(feature_keys=[slice_feature])] if slice_feature else [])
    limits = _thresholds(gates, with_baseline)
    if not classification:
        metrics = [tfma.MetricConfig(class_name=m) for m in METRICS[:-1]]
        metrics.append(tfma.MetricConfig(class_name=METRICS[-1], per_slice_thresholds=limits))
        specs = [tfma.MetricsSpec(metrics=metrics, model_names=model_names)]
    else:
        main = [_metric(c, n, limits if n == ACCURACY else None) for c, n in CLASSIFICATION_METRICS]
        per_class = [_metric(c, n) for c, n in PER_CLASS_METRICS]
        binarize = tfma.BinarizationOptions(class_ids={"values": list(range(info.num_classes))})
        specs = [
            tfma.MetricsSpec(metrics=main, model_names=model_names),
            tfma.MetricsSpec(metrics=per_class, model_names=model_names, binarize=binarize),
        ]
    return tfma.EvalConfig(model_specs=models, slicing_specs=slices, metrics_specs=specs)


def _records(path: str) -> Any:  # noqa: ANN401
    from components.lib.tfrecord import read_tfrecords

    yield from read_tfrecords(Path(path), STAGE)


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
    # Not TFExampleRecord(file_pattern).BeamSource: its splittable read silently loses records on
    # Beam's multi-processing DirectRunner (tensorflow/data-validation#247, the same reader). Each
    # file is one element spread by a Reshuffle (a gzipped file cannot be split anyway), its
    # records read here, then decoded by TFXIO as TFMA expects.
    source = tfxio.TFExampleBeamRecord(
        physical_format="tfrecords_gzip",
        telemetry_descriptors=["kubetfx", STAGE],
        raw_record_column_name=tfma.ARROW_INPUT_COLUMN,
    )
    with beam.Pipeline(options=options) as p:
        _ = (
            p
            | "EvalFiles" >> beam.Create([str(f) for f in files])
            | "Spread" >> beam.Reshuffle()
            | "ReadRecords" >> beam.FlatMap(_records)
            | "DecodeEvalExamples" >> source.BeamSource(batch_size=BATCH_SIZE)
            | "EvaluateAndWrite"
            >> tfma.ExtractEvaluateAndWriteResults(
                eval_config=config,
                eval_shared_model=shared if len(shared) > 1 else shared[0],
                output_path=str(output_dir),
            )
        )
