"""Train logic: fit the user module's Keras model on transformed examples, export a raw-example server.

The model trains on TFT's output (``transformed_examples/``) and learns what the user module's
optional ``label_transform`` makes of the label (the ``label`` parameter's column; the default
module standardizes it, the insurance module takes log(charges)); for classification the label
is the class id and the model outputs one probability per class. The export — the model with
the transform graph inside, raw ``tf.Example``s in (no label), predictions (regression) or class
scores, class names and the likeliest class (classification) out — is ``serving_export``'s; the
export path and the serving contract are ``saved_model``'s, which evaluate and push check
against; what train shares with tune (datasets, label transform, model building) is ``training``.

Metrics are computed on the full eval split — MAE, RMSE and R² in label units, or accuracy and
log loss — and the eval predictions are saved with the rows' transformed features and label, so
a test can check that the served model reproduces them (no train/serve skew).
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
from components.lib import bounds, saved_model, user_module
from components.lib.hyperparameters import read_hyperparameters
from components.lib.serving_export import export_serving_model
from components.lib.train_outputs import EVAL_PREDICTIONS_FILE, PREDICTION_COLUMN, SUMMARY_FILE
from components.lib.training import (
    build_user_model,
    label_functions,
    make_dataset,
    model_input_names,
    module_context,
    set_seed,
)
from components.lib.transform_output import open_transform_output, read_label_info, transformed_files

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
    label: Any = None  # label.LabelInfo

    def metadata(self) -> dict[str, Any]:
        finite = {k: (v if math.isfinite(v) else None) for k, v in self.metrics.items()}  # JSON has no NaN
        meta: dict[str, Any] = {"hyperparameters": self.hyperparameters, "metrics": finite}
        if self.label is not None:
            meta.update(label=self.label.name, task=self.label.task, classes=list(self.label.classes))
        return meta


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


def classification_metrics(labels: Any, probabilities: Any) -> dict[str, float]:
    """Accuracy (the likeliest class) and log loss (natural log, probabilities clipped to 1e-7)."""
    import numpy as np

    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    p = np.asarray(probabilities, dtype=np.float64)
    picked = np.clip(p[np.arange(len(y)), y], 1e-7, 1.0)
    return {"accuracy": float((p.argmax(axis=1) == y).mean()), "log_loss": float(-np.log(picked).mean())}


def check_outputs(model: Any, info: Any, location: str) -> None:
    """A classifier outputs one probability per class; a regressor one value."""
    shape = tuple(model.outputs[0].shape) if model.outputs else ()
    width = shape[-1] if len(shape) > 1 else 1
    want = info.num_classes if info.is_classification else 1
    if width != want:
        what = f"one probability per class ({want}: {list(info.classes)})" if want > 1 else "one value"
        raise StageError(
            STAGE, location, f"for {info.task} of {info.name!r} the model must output {what}, not {width}"
        )


def prediction_table(feats: dict[str, Any], labels: Any, preds: Any, info: Any) -> Any:
    """The eval predictions: features fed, label and prediction (class names and probabilities)."""
    import numpy as np
    import pandas as pd

    if not info.is_classification:
        return pd.DataFrame({**feats, info.name: labels, PREDICTION_COLUMN: preds})
    classes = np.asarray(info.classes, dtype=object)
    probs = {f"p_{c}": preds[:, i] for i, c in enumerate(info.classes)}
    best = classes[preds.argmax(axis=1)]
    return pd.DataFrame({**feats, info.name: classes[labels], PREDICTION_COLUMN: best, **probs})


def predict_split(
    model: Any, ds: Any, inverse: Any, classification: bool = False
) -> tuple[Any, Any, dict[str, Any]]:
    """Predictions over a finite dataset (label units; class probabilities [n, K]), labels and features."""
    import numpy as np
    import tensorflow as tf

    @tf.function(reduce_retracing=True, autograph=False)
    def predict(features: Any) -> Any:
        out = tf.cast(model(features, training=False), tf.float32)
        return out if classification else tf.reshape(inverse(out), [-1])

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
    label: str,
) -> TrainResult:
    """Train, evaluate on the full eval split and export to ``output_dir/Format-Serving``.

    ``output_dir`` must be a fresh directory (the caller writes atomically); TensorBoard logs
    go to ``output_dir/logs``. ``label``: the column to predict.
    """
    start = time.perf_counter()
    for name, value in (("train_steps", train_steps), ("eval_steps", eval_steps), ("batch_size", batch_size)):
        if value <= 0:
            raise StageError(STAGE, None, f"{name} must be positive, got {value}")
    module = user_module.load_user_module(module_file, storage_root, STAGE)
    user_module.require(module, user_module.BUILD_MODEL, STAGE)  # fail before the slow imports
    hparams = read_hyperparameters(hyperparameters_path, STAGE)
    tft_output = open_transform_output(graph_dir, STAGE)
    info = read_label_info(graph_dir, label, STAGE)
    context = module_context(tft_output, info, train_steps)
    defaults_fn = user_module.optional(module, user_module.DEFAULT_HYPERPARAMETERS, STAGE)
    if defaults_fn is not None:
        hparams = {**user_module.call(defaults_fn, context=context), **hparams}
    bounds.check_hyperparameters(hparams, None, STAGE)
    counts = {"train_steps": train_steps, "eval_steps": eval_steps}
    batch_size = bounds.at_start(STAGE, counts, batch_size, context.train_rows, len(context.schema.feature))
    forward, inverse = label_functions(module, STAGE, context)
    train_files = transformed_files(transformed_dir, names.TRAIN, STAGE)
    eval_files = transformed_files(transformed_dir, names.EVAL, STAGE)

    import keras
    import numpy as np

    set_seed()
    model = build_user_model(module, hparams, tft_output, STAGE, context)
    inputs = model_input_names(model)
    check_outputs(model, info, user_module.module_location(module))

    def dataset(files: list[str], batch: int, label_fn: Any, **kw: Any) -> Any:
        return make_dataset(
            files,
            tft_output,
            batch,
            label=label,
            label_fn=label_fn,
            stage=STAGE,
            input_names=inputs,
            classification=info.is_classification,
            **kw,
        )

    train_ds = dataset(train_files, batch_size, forward, shuffle=True, repeat=True)
    eval_ds = dataset(eval_files, batch_size, forward, repeat=True)
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
    classify = info.is_classification
    eval_full = dataset(eval_files, PREDICT_BATCH, identity)
    preds, labels, feats = predict_split(model, eval_full, inverse, classify)
    if not len(preds):
        raise StageError(STAGE, str(transformed_dir), "the eval split is empty")
    # Train figures in label units on as many train rows as a validation pass sees (eval_steps batches).
    train_sample = dataset(train_files, batch_size, identity).take(eval_steps)
    train_preds, train_labels, _ = predict_split(model, train_sample, inverse, classify)
    metrics = {"train_loss": hist["loss"][-1], "eval_loss": hist.get("val_loss", [float("nan")])[-1]}
    if classify:
        metrics["train_accuracy"] = classification_metrics(train_labels, train_preds)["accuracy"]
        metrics.update({f"eval_{k}": v for k, v in classification_metrics(labels, preds).items()})
    else:
        ev = regression_metrics(labels, preds)
        metrics.update(train_mae=regression_metrics(train_labels, train_preds)["mae"])
        metrics.update(eval_mae=ev["mae"], eval_rmse=ev["rmse"], eval_r2=ev["r2"])
    metrics["eval_examples"] = float(len(preds))
    if not np.isfinite(preds).all():
        raise StageError(STAGE, str(output_dir), f"the model predicts non-finite values; metrics {metrics}")

    timings["predict"] = time.perf_counter() - t
    t = time.perf_counter()
    prediction_table(feats, labels, preds, info).to_csv(output_dir / EVAL_PREDICTIONS_FILE, index=False)
    timings["predictions_csv"] = time.perf_counter() - t
    t = time.perf_counter()
    export_serving_model(
        model, tft_output, inverse, saved_model.export_dir(output_dir), info=info, input_names=inputs
    )
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
                "label": info.to_document(),
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
    return TrainResult(metrics=metrics, hyperparameters=hparams, history=hist, seconds=seconds, label=info)
