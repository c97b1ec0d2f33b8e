"""TFMA's own path: the EvalConfig both engines evaluate, and the Beam pipeline that runs it.

The EvalConfig names the models (the candidate; the baseline as a second ModelSpec with
``is_baseline=True``), the slices (overall and per value of the slice feature), the metrics, and
the thresholds as TFMA thresholds on the overall slice. ``run_tfma`` runs TFMA's
``ExtractEvaluateAndWriteResults`` on whatever runner ``beam_args`` names: the path to
Dataflow/Flink/Spark, where workers scale out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from components import names
from components.lib.beam import pipeline_options
from components.lib.evaluate.gating import Thresholds
from components.lib.evaluate.keys import BASELINE, CANDIDATE, STAGE

BATCH_SIZE = 1000  # examples per batch fed to the models (see the package docstring)
METRICS = ("ExampleCount", "MeanSquaredError", "MeanAbsoluteError")


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
