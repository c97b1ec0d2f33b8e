"""Train logic: fit the user module's Keras model on transformed examples, export a raw-example server.

The model trains on TFT's output (``transformed_examples/``) and learns what the user module's
optional ``label_transform`` makes of the label (here log(charges)). Keras 3 no longer writes
TF SavedModels with ``model.save``, and TFT's transform layer is a tf-keras (Keras 2) object
that cannot join a Keras 3 model, so the export is a plain ``tf.Module`` holding the Keras 3
model and the transform graph, with ``tf.function`` signatures, saved by
``tf.saved_model.save`` — the format TF Serving, TFMA and ``saved_model_cli`` read:

- ``serving_default``: ``examples`` (serialized raw ``tf.Example``s, no label needed) ->
  parse with the raw schema -> transform graph -> model -> ``label_inverse_transform`` ->
  ``{"predictions": float32 [batch, 1]}`` in label units;
- ``transform_features``: ``examples`` -> the transformed features (what the model sees).

The export path and that serving contract are ``saved_model``'s, which evaluate and push check
against; what train shares with tune (datasets, label transform, model building) is ``training``.

Metrics (MAE, RMSE, R²) are computed in label units on the full eval split, and those eval
predictions are saved with the rows' transformed features and label, so a test can check
that the served model reproduces them (no train/serve skew).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

from components import names
from components.errors import StageError
from components.lib import saved_model, user_module
from components.lib.hyperparameters import read_hyperparameters
from components.lib.train_outputs import EVAL_PREDICTIONS_FILE, PREDICTION_COLUMN, SUMMARY_FILE
from components.lib.training import (
    build_user_model,
    label_functions,
    make_dataset,
    model_input_names,
    set_seed,
)
from components.lib.transform_output import open_transform_output, transformed_files

STAGE = names.STAGE_TRAIN
PREDICT_BATCH = 4096  # batch size of the final passes over eval (and a train sample)
MAX_EPOCHS = 10  # train_steps are split into up to this many epochs, for per-epoch logs
MAX_STEPS_PER_EXECUTION = 100  # see steps_per_execution()


def steps_per_execution(*step_counts: int) -> int:
    """The most steps Keras may run per call into TensorFlow without changing what is computed.

    Keras runs ``steps_per_execution`` steps inside one ``tf.function`` call, saving its
    per-step Python overhead (1,000 steps at batch 32: 2.6 s -> 1.3 s, identical losses). But
    Keras 3 rounds every fit and validation loop UP to a multiple of it, so the value must
    divide every step count the loops use: their greatest common divisor, at most
    MAX_STEPS_PER_EXECUTION (the largest divisor of it below that).
    """
    g = 0
    for n in step_counts:
        g = math.gcd(g, int(n))
    limit = min(g, MAX_STEPS_PER_EXECUTION)
    return max((d for d in range(1, limit + 1) if g % d == 0), default=1)


def run_steps_per_execution(model: Any, steps: int) -> None:
    """Let ``model`` run ``steps`` steps per execution, unless its module chose a value itself."""
    if steps > 1 and getattr(model, "steps_per_execution", None) == 1:
        model.steps_per_execution = steps  # read when Keras first builds its train/test functions


# --- Train. --------------------------------------------------------------------------------
@dataclasses.dataclass
class TrainResult:
    """What training produced: metrics in label units, hyperparameters used, timings."""

    metrics: dict[str, float]
    hyperparameters: dict[str, Any]
    history: dict[str, list[float]]
    seconds: float

    def metadata(self) -> dict[str, Any]:
        finite = {k: (v if math.isfinite(v) else None) for k, v in self.metrics.items()}  # JSON has no NaN
        return {"hyperparameters": self.hyperparameters, "metrics": finite}


def _epochs(train_steps: int) -> int:
    """The most epochs (<= MAX_EPOCHS) that split ``train_steps`` evenly: per-epoch logs, exact steps."""
    return max(d for d in range(1, MAX_EPOCHS + 1) if train_steps % d == 0)


def regression_metrics(labels: Any, predictions: Any) -> dict[str, float]:
    """MAE, RMSE and R² in label units."""
    import numpy as np

    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    p = np.asarray(predictions, dtype=np.float64).reshape(-1)
    err = p - y
    ss_tot = float(((y - y.mean()) ** 2).sum())
    return {
        "mae": float(np.abs(err).mean()),
        "rmse": float(math.sqrt((err**2).mean())),
        "r2": float(1.0 - (err**2).sum() / ss_tot) if ss_tot > 0 else float("nan"),
    }


def predict_split(model: Any, ds: Any, inverse: Any) -> tuple[Any, Any, dict[str, Any]]:
    """Predictions in label units over a finite dataset, with the labels and the features fed."""
    import numpy as np
    import tensorflow as tf

    @tf.function(reduce_retracing=True, autograph=False)
    def predict(features: Any) -> Any:
        return tf.reshape(inverse(tf.cast(model(features, training=False), tf.float32)), [-1])

    preds: list[Any] = []
    labels: list[Any] = []
    feats: dict[str, list[Any]] = {}
    for features, label in ds:
        preds.append(predict(features).numpy())
        labels.append(tf.reshape(label, [-1]).numpy())
        for k, v in features.items():
            feats.setdefault(k, []).append(v.numpy().reshape(-1))
    if not preds:
        return np.zeros(0), np.zeros(0), {}
    return np.concatenate(preds), np.concatenate(labels), {k: np.concatenate(v) for k, v in feats.items()}


def export_serving_model(model: Any, tft_output: Any, inverse: Any, export_dir: Path) -> None:
    """Save the model with the transform graph inside; signatures take serialized raw examples."""
    import tensorflow as tf

    raw_spec = dict(tft_output.raw_feature_spec())
    raw_spec.pop(names.LABEL, None)  # a serving request has no label (one that does is fine)
    input_names = model_input_names(model)

    module = tf.Module()
    module.model = model
    tft_layer = tft_output.transform_features_layer()
    # What the saved functions need from the transform layer is its loaded transform graph
    # (tables, vocabulary assets). Tracking that alone, rather than the tf-keras layer itself,
    # spares tf.saved_model.save from tracing tf-keras's own serialization functions, ~10 s.
    tracked = getattr(tft_layer, "_saved_model_loader_tracked_dict", None)
    if tracked is not None:
        module.transform_graph = tracked
    else:  # another TFT version: track the layer whole (slower to save, same result)
        module.tft_layer = tft_layer
    example_spec = tf.TensorSpec([None], tf.string, name=names.EXAMPLES_INPUT_KEY)

    @tf.function(input_signature=[example_spec], autograph=False)
    def serve(examples: tf.Tensor) -> dict[str, tf.Tensor]:
        transformed = tft_layer(tf.io.parse_example(examples, raw_spec))
        out = module.model({k: transformed[k] for k in input_names}, training=False)
        out = tf.reshape(tf.cast(inverse(tf.cast(out, tf.float32)), tf.float32), [-1, 1])
        return {names.PREDICTIONS_KEY: out}

    @tf.function(input_signature=[example_spec], autograph=False)
    def transform_features(examples: tf.Tensor) -> dict[str, tf.Tensor]:
        return tft_layer(tf.io.parse_example(examples, raw_spec))

    module.serve = serve
    module.transform_features = transform_features
    tf.saved_model.save(
        module,
        str(export_dir),
        signatures={
            names.SERVING_SIGNATURE: serve.get_concrete_function(),
            names.TRANSFORM_SIGNATURE: transform_features.get_concrete_function(),
        },
    )


def run_train(
    transformed_dir: Path,
    graph_dir: Path,
    hyperparameters_path: Path,
    output_dir: Path,
    *,
    module_file: str,
    storage_root: str,
    train_steps: int,
    eval_steps: int,
    batch_size: int,
) -> TrainResult:
    """Train, evaluate on the full eval split and export to ``output_dir/Format-Serving``.

    ``output_dir`` must be a fresh directory (the caller writes atomically); TensorBoard logs
    go to ``output_dir/logs``.
    """
    start = time.perf_counter()
    for name, value in (("train_steps", train_steps), ("eval_steps", eval_steps), ("batch_size", batch_size)):
        if value <= 0:
            raise StageError(STAGE, None, f"{name} must be positive, got {value}")
    module = user_module.load_user_module(module_file, storage_root, STAGE)
    user_module.require(module, user_module.BUILD_MODEL, STAGE)  # fail before the slow imports
    hparams = read_hyperparameters(hyperparameters_path, STAGE)
    defaults_fn = user_module.optional(module, user_module.DEFAULT_HYPERPARAMETERS, STAGE)
    if defaults_fn is not None:
        hparams = {**defaults_fn(), **hparams}
    forward, inverse = label_functions(module, STAGE)
    tft_output = open_transform_output(graph_dir, STAGE)
    train_files = transformed_files(transformed_dir, names.TRAIN, STAGE)
    eval_files = transformed_files(transformed_dir, names.EVAL, STAGE)

    import keras
    import numpy as np
    import pandas as pd

    set_seed()
    model = build_user_model(module, hparams, tft_output, STAGE)
    inputs = model_input_names(model)
    train_ds = make_dataset(
        train_files,
        tft_output,
        batch_size,
        label_fn=forward,
        stage=STAGE,
        input_names=inputs,
        shuffle=True,
        repeat=True,
    )
    eval_ds = make_dataset(
        eval_files, tft_output, batch_size, label_fn=forward, stage=STAGE, input_names=inputs, repeat=True
    )
    epochs = _epochs(train_steps)
    run_steps_per_execution(model, steps_per_execution(train_steps // epochs, eval_steps))
    logs = output_dir / names.TENSORBOARD_DIR
    timings = {"setup": time.perf_counter() - start}
    t = time.perf_counter()
    history = model.fit(
        train_ds,
        steps_per_epoch=train_steps // epochs,
        epochs=epochs,
        validation_data=eval_ds,
        validation_steps=eval_steps,
        callbacks=[keras.callbacks.TensorBoard(log_dir=str(logs), write_graph=False, profile_batch=0)],
        verbose=2,
    )
    hist = {k: [float(v) for v in vs] for k, vs in history.history.items()}
    timings["fit"] = time.perf_counter() - t
    t = time.perf_counter()

    identity = lambda x: x  # noqa: E731  (labels stay in label units for the metrics)
    eval_full = make_dataset(
        eval_files, tft_output, PREDICT_BATCH, label_fn=identity, stage=STAGE, input_names=inputs
    )
    preds, labels, feats = predict_split(model, eval_full, inverse)
    if not len(preds):
        raise StageError(STAGE, str(transformed_dir), "the eval split is empty")
    # Train MAE in label units on as many train rows as a validation pass sees (eval_steps batches).
    train_sample = make_dataset(
        train_files, tft_output, batch_size, label_fn=identity, stage=STAGE, input_names=inputs
    )
    train_preds, train_labels, _ = predict_split(model, train_sample.take(eval_steps), inverse)
    ev = regression_metrics(labels, preds)
    metrics = {
        "train_loss": hist["loss"][-1],
        "eval_loss": hist.get("val_loss", [float("nan")])[-1],
        "train_mae": regression_metrics(train_labels, train_preds)["mae"],
        "eval_mae": ev["mae"],
        "eval_rmse": ev["rmse"],
        "eval_r2": ev["r2"],
        "eval_examples": float(len(preds)),
    }
    if not np.isfinite(preds).all():
        raise StageError(STAGE, str(output_dir), f"the model predicts non-finite values; metrics {metrics}")

    timings["predict"] = time.perf_counter() - t
    t = time.perf_counter()
    table = pd.DataFrame({**feats, names.LABEL: labels, PREDICTION_COLUMN: preds})
    table.to_csv(output_dir / EVAL_PREDICTIONS_FILE, index=False)
    timings["predictions_csv"] = time.perf_counter() - t
    t = time.perf_counter()
    export_serving_model(model, tft_output, inverse, saved_model.export_dir(output_dir))
    timings["export"] = time.perf_counter() - t
    seconds = time.perf_counter() - start
    (output_dir / SUMMARY_FILE).write_text(
        json.dumps(
            {
                "hyperparameters": hparams,
                "metrics": metrics,
                "history": hist,
                "seconds": seconds,
                "timings": timings,
                "module": user_module.module_reference(module),
                "train_steps": train_steps,
                "eval_steps": eval_steps,
                "batch_size": batch_size,
                "steps_per_execution": getattr(model, "steps_per_execution", 1),
            },
            indent=2,
            sort_keys=True,
            default=str,
        )
    )
    return TrainResult(metrics=metrics, hyperparameters=hparams, history=hist, seconds=seconds)
