"""The native engine's classification metrics: TFMA's base computations on arrays, TFMA's code for the rest.

TFMA turns the EvalConfig into computations (``metric_specs.to_computations``): base ones, each
a Beam combiner fed one example at a time, and derived ones that compute metrics and plots from
the base ones' outputs (AUC and precision from binary confusion matrices, the confusion-matrix
plot from the multi-class matrices). Here each base combiner's output is computed from numpy
arrays of all the eval split's class ids and the models' class scores, with TFMA's per-example
arithmetic — bucket index of a prediction, ``prediction > threshold``, argmax, Keras' clipped
cross-entropy — then every derived computation, the baseline diffs and the removal of private
metrics run as TFMA's evaluator runs them. The base combiners it knows (``BASE_COMBINERS``) are
the ones the classification EvalConfig of ``tfma_engine`` needs; any other is an error that
says to use the TFMA engine.
"""

from __future__ import annotations

from typing import Any

from components.errors import StageError
from components.lib.evaluate.engines import ENGINE_TFMA
from components.lib.evaluate.keys import ACCURACY, LOG_LOSS, STAGE

BASE_COMBINERS = (
    "_ExampleCountCombiner",
    "_CompilableMetricsCombiner",
    "_MultiClassConfusionMatrixCombiner",
    "_CalibrationHistogramCombiner",
    "_BinaryConfusionMatrixCombiner",
)
KERAS_EPSILON = 1e-7  # tf_keras.backend.epsilon(): Keras clips probabilities to [eps, 1 - eps]


def _class_of(key: Any) -> int:
    """The class id of a binarized key (its sub_key); anything else is not computed natively."""
    sub = key.sub_key
    if sub is None or sub.class_id is None or sub.k is not None or sub.top_k is not None:
        raise StageError(STAGE, None, f"the native engine cannot compute {key}: use engine {ENGINE_TFMA!r}")
    return int(sub.class_id)


def _keras(key: Any, ids: Any, scores: Any) -> float:
    """Keras' SparseCategoricalAccuracy or SparseCategoricalCrossentropy, as TFMA reports them."""
    import numpy as np

    if key.name == ACCURACY:
        return float(np.mean(scores.argmax(axis=1) == ids))
    if key.name == LOG_LOSS:
        p = np.clip(scores, np.float32(KERAS_EPSILON), np.float32(1 - KERAS_EPSILON)).astype(np.float32)
        picked = p[np.arange(len(ids)), ids]
        per_example = np.log(p.sum(axis=1, dtype=np.float32)) - np.log(picked)
        return float(np.mean(per_example.astype(np.float64)))
    raise StageError(STAGE, None, f"the native engine cannot compute {key}: use engine {ENGINE_TFMA!r}")


def _calibration_histogram(combiner: Any, labels: Any, predictions: Any) -> list[Any]:
    """TFMA's ``_CalibrationHistogramCombiner`` output: the non-empty buckets, by id."""
    import numpy as np
    from tensorflow_model_analysis.metrics import calibration_histogram

    n = combiner._num_buckets  # noqa: SLF001 - the combiner's own settings
    p = predictions.astype(np.float64)
    index = (p - combiner._left) / combiner._range * n + 1  # noqa: SLF001
    bucket = np.where(index < 0, 0, np.where(index >= n + 1, n + 1, np.trunc(index))).astype(np.int64)
    if not combiner._prediction_based_bucketing:  # noqa: SLF001
        raise StageError(STAGE, None, f"the native engine cannot bucket by label: use engine {ENGINE_TFMA!r}")
    ids, inverse = np.unique(bucket, return_inverse=True)
    y = labels.astype(np.float64)
    sums_y = np.bincount(inverse, weights=y, minlength=len(ids))
    sums_p = np.bincount(inverse, weights=p, minlength=len(ids))
    counts = np.bincount(inverse, minlength=len(ids)).astype(np.float64)
    return [
        calibration_histogram.Bucket(int(b), float(sy), float(sp), float(c))
        for b, sy, sp, c in zip(ids, sums_y, sums_p, counts, strict=True)
    ]


def _binary_matrices(combiner: Any, labels: Any, predictions: Any) -> dict[float, Any]:
    """TFMA's ``_BinaryConfusionMatrixCombiner`` output: a confusion matrix per threshold."""
    import numpy as np
    from tensorflow_model_analysis.contrib.aggregates import binary_confusion_matrices as bcm

    positive = labels == 1
    p = predictions.astype(np.float64)
    out = {}
    for threshold in combiner._binary_confusion_matrices._thresholds:  # noqa: SLF001
        above = p > threshold
        matrix = bcm.Matrix(
            tp=float(np.sum(positive & above)),
            tn=float(np.sum(~positive & ~above)),
            fp=float(np.sum(~positive & above)),
            fn=float(np.sum(positive & ~above)),
        )
        out[threshold] = bcm._ThresholdEntry(matrix, [], [], [], [])  # noqa: SLF001 - TFMA's own record
    return out


def _multi_class_matrices(combiner: Any, ids: Any, scores: Any) -> Any:
    """TFMA's ``_MultiClassConfusionMatrixCombiner`` output: (actual, likeliest) counts per threshold."""
    import numpy as np
    from tensorflow_model_analysis.metrics import multi_class_confusion_matrix_metrics as mc

    best = scores.argmax(axis=1)
    top = scores[np.arange(len(ids)), best].astype(np.float64)
    out = mc.Matrices()
    for threshold in combiner._thresholds:  # noqa: SLF001
        predicted = np.where(top <= threshold, mc.NO_PREDICTED_CLASS_ID, best)
        pairs, counts = np.unique(np.stack([ids, predicted], axis=1), axis=0, return_counts=True)
        out[threshold] = {
            mc.MatrixEntryKey(int(a), int(b)): float(c) for (a, b), c in zip(pairs, counts, strict=True)
        }
    return out


def base_outputs(computation: Any, ids: Any, scores: dict[str, Any]) -> dict[Any, Any]:
    """One base computation's outputs on one slice: ``ids`` its class ids, ``scores`` per model [n, K]."""
    import numpy as np

    kind = type(computation.combiner).__name__
    if kind not in BASE_COMBINERS:
        raise StageError(
            STAGE, None, f"the native engine cannot compute {computation.keys}: use engine {ENGINE_TFMA!r}"
        )
    out: dict[Any, Any] = {}
    for key in computation.keys:
        if kind == "_ExampleCountCombiner":
            out[key] = float(len(ids))
            continue
        s = scores[key.model_name]
        if kind == "_CompilableMetricsCombiner":
            out[key] = _keras(key, ids, s)
        elif kind == "_MultiClassConfusionMatrixCombiner":
            out[key] = _multi_class_matrices(computation.combiner, ids, s)
        else:
            c = _class_of(key)
            labels, predictions = (ids == c).astype(np.int64), s[:, c]
            if kind == "_CalibrationHistogramCombiner":
                out[key] = _calibration_histogram(computation.combiner, labels, predictions)
            else:
                out[key] = _binary_matrices(computation.combiner, labels, predictions)
    return out


def sliced_results(
    config: Any, ids: Any, scores: dict[str, Any], slices: dict[tuple, Any]
) -> list[tuple[tuple, dict[Any, Any]]]:
    """[(slice key, {MetricKey or PlotKey: value})] as TFMA's evaluator has them before writing.

    ``scores``: per TFMA model name ("" for one model) the class scores [n, K]; ``slices``: the
    example rows of each slice key.
    """
    from tensorflow_model_analysis.evaluators import metrics_plots_and_validations_evaluator as mpve
    from tensorflow_model_analysis.metrics import metric_specs
    from tensorflow_model_analysis.utils import model_util

    computations = mpve._filter_and_separate_computations(  # noqa: SLF001 - TFMA's own split
        metric_specs.to_computations(config.metrics_specs, eval_config=config)
    )
    baseline_spec = model_util.get_baseline_model_spec(config)
    baseline = baseline_spec.name if baseline_spec else None
    out = []
    for slice_key in sorted(slices, key=lambda k: (k != (), k)):
        rows = slices[slice_key]
        if not len(rows):
            continue
        slice_ids = ids[rows]
        slice_scores = {name: s[rows] for name, s in scores.items()}
        metrics: dict[Any, Any] = {}
        for computation in computations.non_derived_computations:
            metrics.update(base_outputs(computation, slice_ids, slice_scores))
        for computation in computations.derived_computations:  # in TFMA's order: one may feed the next
            metrics.update(computation.result(metrics))
        if baseline:  # what TFMA's evaluator does in add_diff_metrics
            diffs = {}
            for key, value in metrics.items():
                if mpve._is_private_metrics(key) or key.is_diff or key.model_name == baseline:  # noqa: SLF001
                    continue
                base_key = key.make_baseline_key(baseline)
                if base_key in metrics and mpve._is_metric_diffable(value):  # noqa: SLF001
                    diffs[key.make_diff_key()] = value - metrics[base_key]
            metrics.update(diffs)
        public = {k: v for k, v in metrics.items() if not mpve._is_private_metrics(k)}  # noqa: SLF001
        out.append((slice_key, public))
    return out
