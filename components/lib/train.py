"""Train logic: fit the user module's Keras model on transformed examples, export a raw-example server.

The model trains on TFT's output (``transformed_examples/``) and learns what the user module's
optional ``label_transform`` makes of the label (the ``label`` parameter's column; the default
module standardizes it, the insurance module takes log(charges)); for classification the label
is the class id and the model outputs one probability per class. The export — the model with
the transform graph inside, raw ``tf.Example``s in (no label), predictions (regression) or class
scores, class names and the likeliest class (classification) out — is ``serving_export``'s; the
export path and the serving contract are ``saved_model``'s, which evaluate and push check
against; what train shares with tune (datasets, label transform, model building) is ``training``.

The fit never reads the eval split: it fits on the train split minus a validation slice
(``training``: held out by a hash of each example, ``validation_fraction`` of the rows), runs
whole epochs as the budget rule says (``training.fit_budget``: ``train_steps`` worth of epochs
within [MIN_EPOCHS, ``max_epochs``]) and stops early when the validation loss stops falling,
keeping the best epoch's weights. ``model_family`` says which models are fit
(``model_families``: the module's network, gradient-boosted trees from ``trees``, a linear
model; ``auto``: all the module offers, the best on the validation slice kept — its MAE or log
loss in label units — with every candidate's figure recorded). Only once the weights are final
are the metrics computed on the full eval split — MAE, RMSE and R² in label units, or accuracy
and log loss — and the eval predictions saved with the rows' transformed features and label,
so a test can check that the served model reproduces them (no train/serve skew). Nothing
computed on eval feeds back.
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
from components.lib import bounds, model_families, saved_model, training, user_module
from components.lib.family_fits import Fitted, fit_ridge, fit_trees, validation_figure
from components.lib.hyperparameters import read_hyperparameters
from components.lib.predictions import (  # noqa: F401 (re-exported: the tests' report factory uses them)
    classification_metrics,
    predict_split,
    prediction_table,
    predictor,
    regression_metrics,
)
from components.lib.serving_export import export_serving_model
from components.lib.train_outputs import EVAL_PREDICTIONS_FILE, PREDICTION_COLUMN, SUMMARY_FILE  # noqa: F401
from components.lib.training import build_user_model, label_functions, make_dataset, model_input_names
from components.lib.transform_output import open_transform_output, read_label_info, transformed_files

STAGE = names.STAGE_TRAIN
PREDICT_BATCH = 4096  # batch size of the final passes over eval (and a train sample)
steps_per_execution = training.steps_per_execution  # re-exported: what Keras may batch per call


# --- Train. --------------------------------------------------------------------------------
@dataclasses.dataclass
class TrainResult:
    """What training produced: metrics in label units, hyperparameters used, timings."""

    metrics: dict[str, float]
    hyperparameters: dict[str, Any]
    history: dict[str, list[float]]
    seconds: float
    label: Any = None  # label.LabelInfo
    budget: dict[str, Any] = dataclasses.field(default_factory=dict)  # the validation slice, the epochs
    family: dict[str, Any] = dataclasses.field(default_factory=dict)  # requested, chosen, candidates

    def metadata(self) -> dict[str, Any]:
        finite = {k: (v if math.isfinite(v) else None) for k, v in self.metrics.items()}  # JSON has no NaN
        meta: dict[str, Any] = {"hyperparameters": self.hyperparameters, "metrics": finite}
        if self.budget:
            meta["fit"] = self.budget
        if self.family:
            meta["model_family"] = self.family
        if self.label is not None:
            meta.update(label=self.label.name, task=self.label.task, classes=list(self.label.classes))
        return meta


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


@dataclasses.dataclass
class _Setup:
    """What the fit needs, read and checked before the slow work starts."""

    module: Any
    hparams: dict[str, Any]
    tft_output: Any
    info: Any
    context: Any
    budget: training.Budget
    forward: Any
    inverse: Any
    train_files: list[str]
    eval_files: list[str]
    families: list[str] = dataclasses.field(default_factory=lambda: [model_families.MLP])
    rows: dict[str, Any] = dataclasses.field(default_factory=dict)  # read_rows' cache


def _setup(
    transformed_dir: Path,
    graph_dir: Path,
    hyperparameters_path: Path,
    *,
    module_file: str,
    storage_root: str,
    train_steps: int,
    eval_steps: int,
    batch_size: int,
    label: str,
    validation_fraction: float,
    max_epochs: int,
    model_family: str = model_families.AUTO,
) -> _Setup:
    """Load the module and hyperparameters, check the counts, size the validation slice and the budget."""
    for name, value in (("train_steps", train_steps), ("eval_steps", eval_steps), ("batch_size", batch_size)):
        if value <= 0:
            raise StageError(STAGE, None, f"{name} must be positive, got {value}")
    training.check_validation_fraction(validation_fraction, STAGE)
    module = user_module.load_user_module(module_file, storage_root, STAGE)
    user_module.require(module, user_module.BUILD_MODEL, STAGE)  # fail before the slow imports
    where = user_module.module_location(module)
    families = model_families.candidates(module, model_family, STAGE, f"the module {where}")
    hparams = read_hyperparameters(hyperparameters_path, STAGE)
    tft_output = open_transform_output(graph_dir, STAGE)
    info = read_label_info(graph_dir, label, STAGE)
    counts = {"train_steps": train_steps, "eval_steps": eval_steps}
    rows = info.stats.get("count")
    batch_size = bounds.at_start(STAGE, counts, batch_size, rows, len(tft_output.raw_metadata.schema.feature))
    train_files = transformed_files(transformed_dir, names.TRAIN, STAGE)
    budget = training.fit_budget(train_files, validation_fraction, batch_size, train_steps, max_epochs, STAGE)
    context = training.module_context(tft_output, info, budget)
    defaults_fn = user_module.optional(module, user_module.DEFAULT_HYPERPARAMETERS, STAGE)
    if defaults_fn is not None:
        hparams = {**user_module.call(defaults_fn, context=context), **hparams}
    bounds.check_hyperparameters(hparams, None, STAGE)
    forward, inverse = label_functions(module, STAGE, context)
    eval_files = transformed_files(transformed_dir, names.EVAL, STAGE)
    return _Setup(
        module,
        hparams,
        tft_output,
        info,
        context,
        budget,
        forward,
        inverse,
        train_files,
        eval_files,
        families,
    )


def _fit(s: _Setup, output_dir: Path, family: str) -> Fitted:
    """Build and fit a Keras family on the fit rows, early-stopped on the validation slice (never eval).

    The module's own network (mlp) logs to ``logs/``, another Keras family to ``logs/<family>/``.
    """
    import keras

    start = time.perf_counter()
    training.set_seed()
    hparams = s.hparams if family == model_families.MLP else {**s.hparams, "model_family": family}
    model = build_user_model(s.module, hparams, s.tft_output, STAGE, s.context)
    inputs = model_input_names(model)
    check_outputs(model, s.info, user_module.module_location(s.module))
    fit_ds, validation_ds = training.fit_datasets(
        s.train_files,
        s.tft_output,
        s.budget,
        label=s.info.name,
        label_fn=s.forward,
        stage=STAGE,
        input_names=inputs,
        classification=s.info.is_classification,
    )
    training.fit_steps_per_execution(model, s.budget)
    logs = output_dir / names.TENSORBOARD_DIR
    history = model.fit(
        fit_ds,
        steps_per_epoch=s.budget.steps_per_epoch,
        epochs=s.budget.epochs,
        callbacks=[
            training.slice_validation(validation_ds),  # first: the others read its val_loss
            training.early_stopping(),
            keras.callbacks.TensorBoard(
                log_dir=str(logs if family == model_families.MLP else logs / family),
                write_graph=False,
                profile_batch=0,
            ),
        ],
        verbose=2,
    )
    hist = {k: [float(v) for v in vs] for k, vs in history.history.items()}
    val = hist.get("val_loss", [])
    finite = [i for i, v in enumerate(val) if math.isfinite(v)]
    best = min(finite, key=lambda i: val[i]) if finite else len(val) - 1
    ran = {"epochs_run": len(val), "best_epoch": best + 1, "stopped_early": len(val) < s.budget.epochs}
    losses = {"train_loss": hist["loss"][best], "validation_loss": hist.get("val_loss", [math.nan])[best]}
    return Fitted(family, model, inputs, hist, ran, losses, hparams, time.perf_counter() - start)


def _dataset(s: _Setup, files: list[str], inputs: list[str], **kw: Any) -> Any:
    """Finite (features, label in label units) batches of ``files`` for the final passes."""
    return make_dataset(
        files,
        s.tft_output,
        PREDICT_BATCH,
        label=s.info.name,
        label_fn=lambda x: x,
        stage=STAGE,
        input_names=inputs,
        classification=s.info.is_classification,
        **kw,
    )


def _fit_families(s: _Setup, output_dir: Path) -> tuple[Fitted, dict[str, Any]]:
    """Fit each candidate family, score it on the validation slice; (the kept one, the record of all)."""
    fits = {}
    for family in s.families:
        if family == model_families.GBT:
            fitted = fit_trees(s)
        elif family == model_families.LINEAR and not s.info.is_classification:
            fitted = fit_ridge(s)
        else:
            fitted = _fit(s, output_dir, family)
        fitted.validation, fitted.validation_rows = validation_figure(s, fitted)
        fits[family] = fitted
    chosen = model_families.choose(
        {f: next(iter(v.validation.values())) for f, v in fits.items()},
        {f: v.validation_rows for f, v in fits.items()},
    )
    record = {
        "chosen": chosen,
        "candidates": {f: {**v.validation, "seconds": round(v.seconds, 3), **v.ran} for f, v in fits.items()},
        "rule": model_families.RULE,
    }
    return fits[chosen], record


def _metrics(s: _Setup, fitted: Fitted) -> tuple[dict[str, float], Any]:
    """Train, validation and eval figures of the final weights; (metrics, the eval prediction table)."""
    import numpy as np

    model, inputs = fitted.model, fitted.inputs
    classify = s.info.is_classification
    predict = predictor(model, s.inverse, classify)  # traced once for the eval and train passes
    preds, labels, feats = predict_split(
        model, _dataset(s, s.eval_files, inputs), s.inverse, classify, predict
    )
    if not len(preds):
        raise StageError(STAGE, str(Path(s.eval_files[0]).parent), "the eval split is empty")
    # Train figures in label units on (up to PREDICT_BATCH) fit rows.
    part = dict(part=training.FIT, holdout_fraction=s.budget.validation_fraction)
    fit_rows = _dataset(s, s.train_files, inputs, **part).take(1)
    train_preds, train_labels, _ = predict_split(model, fit_rows, s.inverse, classify, predict)
    metrics = dict(fitted.losses)
    metrics.update(fitted.validation)
    if classify:
        metrics["train_accuracy"] = classification_metrics(train_labels, train_preds)["accuracy"]
        metrics.update({f"eval_{k}": v for k, v in classification_metrics(labels, preds).items()})
    else:
        ev = regression_metrics(labels, preds)
        metrics.update(train_mae=regression_metrics(train_labels, train_preds)["mae"])
        metrics.update(eval_mae=ev["mae"], eval_rmse=ev["rmse"], eval_r2=ev["r2"])
    metrics["eval_examples"] = float(len(preds))
    if "epochs_run" in fitted.ran:
        metrics.update(epochs_run=float(fitted.ran["epochs_run"]), best_epoch=float(fitted.ran["best_epoch"]))
    elif "trees" in fitted.ran:
        metrics["trees"] = float(fitted.ran["trees"])
    if not np.isfinite(preds).all():
        raise StageError(STAGE, s.eval_files[0], f"the model predicts non-finite values; metrics {metrics}")
    return metrics, prediction_table(feats, labels, preds, s.info)


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
    validation_fraction: float = training.VALIDATION_FRACTION,
    max_epochs: int = training.MAX_EPOCHS,
    model_family: str = model_families.AUTO,
) -> TrainResult:
    """Fit the family or families (early-stopped on the validation slice), measure on eval, export.

    Export to ``output_dir/Format-Serving``. ``output_dir`` must be a fresh directory (the caller
    writes atomically); TensorBoard logs go to ``output_dir/logs``. ``label``: the column to
    predict. ``train_steps``: the step budget the epochs are counted from (``training.fit_budget``);
    ``eval_steps``: checked against the bounds only (the validation slice is read whole).
    ``model_family``: ``model_families``' choices.
    """
    start = time.perf_counter()
    s = _setup(
        transformed_dir,
        graph_dir,
        hyperparameters_path,
        module_file=module_file,
        storage_root=storage_root,
        train_steps=train_steps,
        eval_steps=eval_steps,
        batch_size=batch_size,
        label=label,
        validation_fraction=validation_fraction,
        max_epochs=max_epochs,
        model_family=model_family,
    )
    timings = {"setup": time.perf_counter() - start}
    t = time.perf_counter()
    fitted, family = _fit_families(s, output_dir)
    family["requested"] = model_family
    timings["fit"] = time.perf_counter() - t
    t = time.perf_counter()
    metrics, table = _metrics(s, fitted)
    timings["predict"] = time.perf_counter() - t
    t = time.perf_counter()
    table.to_csv(output_dir / EVAL_PREDICTIONS_FILE, index=False)
    timings["predictions_csv"] = time.perf_counter() - t
    t = time.perf_counter()
    export_serving_model(
        fitted.model,
        s.tft_output,
        s.inverse,
        saved_model.export_dir(output_dir),
        info=s.info,
        input_names=fitted.inputs,
    )
    timings["export"] = time.perf_counter() - t
    seconds = time.perf_counter() - start
    summary = {
        "hyperparameters": fitted.hyperparameters,
        "metrics": metrics,
        "history": fitted.history,
        "seconds": seconds,
        "timings": timings,
        "module": user_module.module_reference(s.module),
        "label": s.info.to_document(),
        "train_steps": train_steps,
        "eval_steps": eval_steps,
        "batch_size": s.budget.batch_size,
        "budget": s.budget.document(),
        "fit": fitted.ran,
        "model_family": family,
        "steps_per_execution": getattr(fitted.model, "steps_per_execution", 1),
    }
    (output_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, sort_keys=True, default=str))
    return TrainResult(
        metrics=metrics,
        hyperparameters=fitted.hyperparameters,
        history=fitted.history,
        seconds=seconds,
        label=s.info,
        budget={**s.budget.document(), **fitted.ran},
        family=family,
    )
