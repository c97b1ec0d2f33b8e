"""Evaluate reports of small models on small tables, built from the stages' real parts.

Each case writes eval rows as tf.Examples (``test_evaluate.write_eval_split``), saves a SavedModel
with the train stage's serving contract (``classifier_factory``, or a formula regressor here),
runs the evaluate stage's logic (``evaluate_models``: TFMA's metrics and validation), and writes
what train leaves beside its model: ``eval_predictions.csv`` from the model's own outputs through
train's writer (``train.prediction_table``) and ``training_summary.json`` with the history of a
real, early-stopped Keras fit on the same rows. The report is then rendered from those files
exactly as the stage does (``report_context`` + ``render_report``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from classifier_factory import classification_rows, save_size_classifier
from test_evaluate import write_eval_split

from components import defaults, names
from components.lib import evaluate as ev
from components.lib import saved_model
from components.lib.baseline import Baseline
from components.lib.label import CLASSIFICATION, KIND_FLOAT, KIND_STRING, REGRESSION, LabelInfo


def serve(model_dir: Path, examples_dir: Path) -> dict[str, Any]:
    """The model's serving outputs on every eval example, as numpy arrays."""
    import tensorflow as tf

    files = [str(p) for p in sorted((examples_dir / names.split_dir(names.EVAL)).glob("*.gz"))]
    serialized = [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]
    fn = tf.saved_model.load(str(model_dir)).signatures[names.SERVING_SIGNATURE]
    return {k: v.numpy() for k, v in fn(examples=tf.constant(serialized)).items()}


def keras_history(x: Any, y: Any, classes: int) -> tuple[dict[str, list[float]], int]:
    """A real small Keras fit on (x, y), early-stopped on a validation slice: (history, best epoch)."""
    import keras
    import numpy as np

    keras.utils.set_random_seed(3)
    x = np.asarray(x, dtype=np.float32).reshape(len(x), -1)
    x = (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-6)
    out = keras.layers.Dense(classes, activation="softmax") if classes else keras.layers.Dense(1)
    model = keras.Sequential([keras.Input((x.shape[1],)), keras.layers.Dense(8, activation="relu"), out])
    loss = "sparse_categorical_crossentropy" if classes else "mse"
    model.compile(keras.optimizers.Adam(0.01), loss=loss, metrics=["accuracy"] if classes else ["mae"])
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=4, restore_best_weights=True)
    y = np.asarray(y, dtype=np.float32)
    fit = model.fit(x, y, validation_split=0.25, epochs=30, batch_size=16, callbacks=[stop], verbose=0)
    history = {k: [float(v) for v in vs] for k, vs in fit.history.items()}
    best = min(range(len(history["val_loss"])), key=lambda i: history["val_loss"][i]) + 1
    return history, best


def write_train_dir(train_dir: Path, info: LabelInfo, table: Any, history: dict, best: int) -> None:
    from components.lib.train_outputs import EVAL_PREDICTIONS_FILE, SUMMARY_FILE

    table.to_csv(train_dir / EVAL_PREDICTIONS_FILE, index=False)
    summary = {
        "history": history,
        "fit": {"epochs_run": len(history["loss"]), "best_epoch": best, "stopped_early": True},
        "label": info.to_document(),
        "hyperparameters": {"units": 8, "learning_rate": 0.01},
    }
    (train_dir / SUMMARY_FILE).write_text(json.dumps(summary))


def render(root: Path, result: Any, train_dir: Path, label: str, slice_feature: str, base: Baseline) -> str:
    from components.lib.evaluate.report_inputs import report_context

    meta = {names.META_STORAGE_PATH: str(train_dir)}
    context = report_context(str(root), "r2", meta, str(train_dir), base.to_metadata(), "", label)
    return ev.render_report(result, label=label, slice_feature=slice_feature, context=context)


def classifier_report(root: Path, classes: tuple[str, ...], *, baseline: bool) -> tuple[str, Path]:
    """A classifier by size band (``classifier_factory``): its evaluate report and its train directory."""
    import numpy as np

    rows = classification_rows(classes, ints=False, n=160, seed=11)
    examples = write_eval_split(root / "examples", rows)
    train_dir = root / names.ARTIFACTS_DIR / "r2" / names.STAGE_TRAIN
    counts = [60, 50, 40, 30][: len(classes)]
    model = save_size_classifier(train_dir / names.MODEL_SERVING_DIR, classes, counts=counts)
    base_dir = save_size_classifier(root / "served", classes, sharpness=0.02) if baseline else None
    out = root / "evaluate"
    out.mkdir()
    thresholds = ev.Thresholds(None, 0.05, naive_margin=0.1, min_accuracy=0.6)
    result = ev.evaluate_models(
        examples,
        model,
        base_dir,
        1 if baseline else None,
        out,
        label="y",
        slice_feature="color",
        thresholds=thresholds,
        beam_args=defaults.BEAM_ARGS,
    )
    from components.lib.train import prediction_table

    info = LabelInfo("y", CLASSIFICATION, KIND_STRING, classes)
    ids = np.asarray([classes.index(r["y"]) for r in rows])
    sizes = np.asarray([r["size"] for r in rows])
    probs = serve(model, examples)[names.SCORES_KEY]
    write_train_dir(
        train_dir,
        info,
        prediction_table({"size": sizes}, ids, probs, info),
        *keras_history(sizes, ids, len(classes)),
    )
    name = "churn" if len(classes) == 2 else "iris"
    base = (
        Baseline(True, "latest blessed pushed version", name, 1, str(base_dir), run_id="r1")
        if baseline
        else Baseline(False, names.NO_BASELINE, name)
    )
    return render(root, result, train_dir, "y", "color", base), train_dir


def save_formula_regressor(export_dir: Path, features: dict[str, str], formula: Any, info: LabelInfo) -> Path:
    """A regressor with the serving contract predicting ``formula(parsed features)``."""
    import tensorflow as tf

    dtypes = {"int": tf.int64, "float": tf.float32}
    spec = {k: tf.io.FixedLenFeature([], dtypes[t], default_value=0) for k, t in features.items()}

    class Formula(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=names.EXAMPLES_INPUT_KEY)])
        def serve(self, examples: tf.Tensor) -> dict[str, tf.Tensor]:
            f = {k: tf.cast(v, tf.float32) for k, v in tf.io.parse_example(examples, spec).items()}
            return {names.PREDICTIONS_KEY: tf.reshape(formula(f), [-1, 1])}

    module = Formula()
    tf.saved_model.save(module, str(export_dir), signatures={names.SERVING_SIGNATURE: module.serve})
    info.write(saved_model.label_info_path(export_dir))
    saved_model.inputs_path(export_dir).write_text(
        json.dumps({k: "int64" if t == "int" else "float32" for k, t in features.items()})
    )
    return export_dir


def regression_report(
    root: Path,
    train: Any,
    evaluation: Any,
    label: str,
    features: dict[str, str],
    formula: Any,
    *,
    slice_feature: str,
    model_name: str,
) -> tuple[str, Path]:
    """A formula regressor on a table (pandas frames): its evaluate report and its train directory."""
    import numpy as np

    rows = json.loads(evaluation.to_json(orient="records"))  # Python ints and floats
    examples = write_eval_split(root / "examples", rows)
    train_dir = root / names.ARTIFACTS_DIR / "r2" / names.STAGE_TRAIN
    y = train[label].astype(float)
    stats = {
        "count": len(y),
        "mean": y.mean(),
        "std": y.std(),
        "min": y.min(),
        "max": y.max(),
        "median": y.median(),
    }
    info = LabelInfo(label, REGRESSION, KIND_FLOAT, (), stats)
    model = save_formula_regressor(train_dir / names.MODEL_SERVING_DIR, features, formula, info)
    out = root / "evaluate"
    out.mkdir()
    result = ev.evaluate_models(
        examples,
        model,
        None,
        None,
        out,
        label=label,
        slice_feature=slice_feature,
        thresholds=ev.Thresholds(None, 0.05, naive_margin=0.1),
        beam_args=defaults.BEAM_ARGS,
        min_eval_examples=30,
    )
    from components.lib.train import prediction_table

    predictions = serve(model, examples)[names.PREDICTIONS_KEY].reshape(-1)
    table = prediction_table(
        {k: evaluation[k].to_numpy() for k in features}, evaluation[label].to_numpy(), predictions, info
    )
    fit_x, fit_y = train[list(features)].to_numpy(dtype=np.float64), train[label].to_numpy(dtype=np.float64)
    write_train_dir(train_dir, info, table, *keras_history(fit_x, fit_y, 0))
    base = Baseline(False, names.NO_BASELINE, model_name)
    return render(root, result, train_dir, label, slice_feature, base), train_dir
