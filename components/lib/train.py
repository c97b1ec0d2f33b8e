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
from components.lib import user_module

STAGE = names.STAGE_TRAIN
SEED = 42
SHUFFLE_BUFFER = 10_000
PREDICT_BATCH = 4096  # batch size of the final passes over eval (and a train sample)
MAX_EPOCHS = 10  # train_steps are split into up to this many epochs, for per-epoch logs
MAX_STEPS_PER_EXECUTION = 100  # see steps_per_execution()
EVAL_PREDICTIONS_FILE = "eval_predictions.csv"
SUMMARY_FILE = "training_summary.json"
PREDICTION_COLUMN = "prediction"


# --- Shared by tune and train. ---------------------------------------------------------------
def split_files(transformed_dir: Path, split: str, stage: str) -> list[str]:
    """The gzipped TFRecord files of one split of the transformed examples."""
    d = transformed_dir / names.split_dir(split)
    files = sorted(str(p) for p in d.glob("*.gz")) if d.is_dir() else []
    if not files:
        raise StageError(stage, str(d), f"transformed examples have no {split!r} files")
    return files


def open_transform_output(graph_dir: Path, stage: str) -> Any:
    """``tft.TFTransformOutput`` of a transform graph directory, or a StageError naming it."""
    import tensorflow_transform as tft

    if not (graph_dir / "transform_fn").is_dir() or not (graph_dir / "transformed_metadata").is_dir():
        raise StageError(
            stage, str(graph_dir), "not a TFT transform graph (no transform_fn/ or transformed_metadata/)"
        )
    return tft.TFTransformOutput(str(graph_dir))


def transform_paths(transformed_root: Path, graph_root: Path) -> tuple[Path, Path]:
    """``transformed_examples/`` and ``transform_graph/`` under the transform stage's directories.

    Both artifacts point at the transform stage directory; a path that already is the
    subdirectory is accepted too.
    """
    examples = transformed_root
    if (transformed_root / names.TRANSFORMED_EXAMPLES_DIR).is_dir():
        examples = transformed_root / names.TRANSFORMED_EXAMPLES_DIR
    graph = graph_root
    if (graph_root / names.TRANSFORM_GRAPH_DIR).is_dir():
        graph = graph_root / names.TRANSFORM_GRAPH_DIR
    return examples, graph


def label_functions(module: Any, stage: str) -> tuple[Any, Any]:
    """The module's label transform and its inverse (identity when it defines neither)."""
    forward = user_module.optional(module, user_module.LABEL_TRANSFORM, stage)
    inverse = user_module.optional(module, user_module.LABEL_INVERSE_TRANSFORM, stage)
    if (forward is None) != (inverse is None):
        raise StageError(
            stage,
            user_module.module_location(module),
            f"define both {user_module.LABEL_TRANSFORM!r} and "
            f"{user_module.LABEL_INVERSE_TRANSFORM!r}, or neither",
        )
    identity = lambda x: x  # noqa: E731
    return forward or identity, inverse or identity


def model_input_names(model: Any) -> list[str]:
    """The names of a Keras model's inputs (the transformed features it consumes)."""
    return [t.name.split(":")[0] for t in model.inputs]


def make_dataset(
    files: list[str],
    tft_output: Any,
    batch_size: int,
    *,
    label_fn: Any,
    input_names: list[str] | None = None,
    shuffle: bool = False,
    repeat: bool = False,
    stage: str = STAGE,
) -> Any:
    """(features, label) batches of transformed examples; label as ``label_fn`` makes it, [batch, 1]."""
    import tensorflow as tf

    spec = tft_output.transformed_feature_spec()
    if names.LABEL not in spec:
        raise StageError(stage, None, f"transformed examples have no label {names.LABEL!r}")
    ds = tf.data.TFRecordDataset(files, compression_type="GZIP")
    if shuffle:
        ds = ds.shuffle(SHUFFLE_BUFFER, seed=SEED, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size)

    def parse(records: Any) -> Any:
        features = tf.io.parse_example(records, spec)
        label = tf.reshape(tf.cast(features.pop(names.LABEL), tf.float32), [-1, 1])
        if input_names is not None:
            features = {k: features[k] for k in input_names}
        return features, label_fn(label)

    return ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def count_records(files: list[str], limit: int) -> int:
    """How many records the files hold, counting no further than ``limit``."""
    import tensorflow as tf

    ds = tf.data.TFRecordDataset(files, compression_type="GZIP").take(limit)
    return int(ds.reduce(0, lambda n, _: n + 1))


def read_hyperparameters(path: Path, stage: str) -> dict[str, Any]:
    """The JSON object in a hyperparameters artifact (a directory holding the file, or the file)."""
    file = path / names.HYPERPARAMETERS_FILE if path.is_dir() else path
    try:
        values = json.loads(file.read_text())
    except OSError as e:
        raise StageError(stage, str(file), f"cannot read hyperparameters: {e}") from e
    except ValueError as e:
        raise StageError(stage, str(file), f"hyperparameters are not valid JSON: {e}") from e
    if not isinstance(values, dict):
        raise StageError(stage, str(file), "hyperparameters must be a JSON object")
    return values


def build_user_model(module: Any, hparams: dict[str, Any], tft_output: Any, stage: str) -> Any:
    """The module's ``build_model``, its failures reported against the module file."""
    build = user_module.require(module, user_module.BUILD_MODEL, stage)
    try:
        model = build(hparams, tft_output)
    except StageError:
        raise
    except Exception as e:
        raise StageError(
            stage,
            user_module.module_location(module),
            f"{user_module.BUILD_MODEL} failed: {type(e).__name__}: {e}",
        ) from e
    if model is None or not hasattr(model, "fit"):
        raise StageError(
            stage,
            user_module.module_location(module),
            f"{user_module.BUILD_MODEL} must return a compiled Keras model",
        )
    return model


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


def set_seed() -> None:
    """Same data order and initial weights on every run with the same inputs."""
    import keras

    keras.utils.set_random_seed(SEED)


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
    train_files = split_files(transformed_dir, names.TRAIN, STAGE)
    eval_files = split_files(transformed_dir, names.EVAL, STAGE)

    import keras
    import numpy as np
    import pandas as pd

    set_seed()
    model = build_user_model(module, hparams, tft_output, STAGE)
    inputs = model_input_names(model)
    train_ds = make_dataset(
        train_files, tft_output, batch_size, label_fn=forward, input_names=inputs, shuffle=True, repeat=True
    )
    eval_ds = make_dataset(
        eval_files, tft_output, batch_size, label_fn=forward, input_names=inputs, repeat=True
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
    eval_full = make_dataset(eval_files, tft_output, PREDICT_BATCH, label_fn=identity, input_names=inputs)
    preds, labels, feats = predict_split(model, eval_full, inverse)
    if not len(preds):
        raise StageError(STAGE, str(transformed_dir), "the eval split is empty")
    # Train MAE in label units on as many train rows as a validation pass sees (eval_steps batches).
    train_sample = make_dataset(train_files, tft_output, batch_size, label_fn=identity, input_names=inputs)
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
    export_serving_model(model, tft_output, inverse, output_dir / names.MODEL_SERVING_DIR)
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
