"""Evaluate logic: TFMA on the eval split, candidate and baseline in one pass, and the blessing.

What TFX's Evaluator does, as plain functions: one TFMA Beam pipeline computes ExampleCount,
MeanSquaredError and MeanAbsoluteError for the candidate (and, when resolve-baseline found
one, the baseline: a second ModelSpec with ``is_baseline=True``), overall and per value of the
slice feature, and validates the thresholds. The verdict is TFMA's own ``validation_ok``; the
reasons are written from TFMA's validation failures, so the blessing and the TFMA result can
never disagree (one documented exception: no thresholds configured, see ``gating``).

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

The baseline it compares with and the blessing it writes are contracts with the stages around it,
each one shared module: ``components.lib.baseline`` (written by resolve-baseline) and
``components.lib.blessing`` (read by push); the SavedModel checks are ``components.lib.saved_model``.

The modules:
- ``stage``: ``evaluate_models`` (input checks, engine, judging, summary.json) and ``baseline_of``;
- ``gating``: the thresholds (configuration, ``load_thresholds``) and ``judge`` (TFMA's
  validation result -> verdict and reasons);
- ``engines``: the ``engine`` parameter's values and ``choose_engine``;
- ``tfma_engine``: the EvalConfig both engines evaluate, and TFMA's Beam pipeline;
- ``native_engine``: the in-process engine;
- ``results``: TFMA's metrics read back, and ``EvaluateResult`` (the Blessing record, artifact metadata);
- ``report``: the HTML report; ``keys``: the names they all share.
Their top levels import only the standard library and ``components``: TensorFlow, TFMA and Beam
are imported inside the functions that use them, so importing this package stays light.
"""

from components.lib.evaluate.engines import (
    ENGINE_AUTO,
    ENGINE_NATIVE,
    ENGINE_TFMA,
    ENGINES,
    TFMA_PREPROCESSING_SIGNATURES,
    choose_engine,
)
from components.lib.evaluate.gating import NO_THRESHOLDS, THRESHOLD_KEYS, Thresholds, judge, load_thresholds
from components.lib.evaluate.keys import BASELINE, CANDIDATE, COUNT, MAE, MSE, STAGE
from components.lib.evaluate.native_engine import NATIVE_BATCH_SIZE, NATIVE_METRICS, native_sums, run_native
from components.lib.evaluate.report import render_report
from components.lib.evaluate.results import EvaluateResult, overall, read_metrics
from components.lib.evaluate.stage import (
    SUMMARY_FILE,
    baseline_of,
    check_eval_data,
    check_serving_model,
    eval_files,
    evaluate_models,
)
from components.lib.evaluate.tfma_engine import BATCH_SIZE, METRICS, eval_config, run_tfma

__all__ = [
    "BASELINE",
    "BATCH_SIZE",
    "CANDIDATE",
    "COUNT",
    "ENGINES",
    "ENGINE_AUTO",
    "ENGINE_NATIVE",
    "ENGINE_TFMA",
    "MAE",
    "METRICS",
    "MSE",
    "NATIVE_BATCH_SIZE",
    "NATIVE_METRICS",
    "NO_THRESHOLDS",
    "STAGE",
    "SUMMARY_FILE",
    "THRESHOLD_KEYS",
    "TFMA_PREPROCESSING_SIGNATURES",
    "EvaluateResult",
    "Thresholds",
    "baseline_of",
    "check_eval_data",
    "check_serving_model",
    "choose_engine",
    "eval_config",
    "eval_files",
    "evaluate_models",
    "judge",
    "load_thresholds",
    "native_sums",
    "overall",
    "read_metrics",
    "render_report",
    "run_native",
    "run_tfma",
]
