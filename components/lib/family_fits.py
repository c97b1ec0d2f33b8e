"""The families train fits outside Keras (gradient-boosted trees, the ridge) and auto's validation figure.

Each takes train's setup (``train._Setup``: the transform output, the label contract, the budget,
the label functions, the train files) and returns a ``Fitted``, as train's Keras fit does. The
rows come from the train split's fit rows and validation slice (``training.FIT`` /
``VALIDATION``), read once per train run into numpy (``read_rows``); the eval split is never read
here.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

from components import names
from components.lib import model_families, training
from components.lib.predictions import classification_metrics, regression_metrics

STAGE = names.STAGE_TRAIN


@dataclasses.dataclass
class Fitted:
    """One family's fitted model and what its fit did."""

    family: str
    model: Any  # a Keras model, or a trees.Forest: both called as model(features, training=False)
    inputs: list[str]
    history: dict[str, list[float]]  # per epoch (Keras families); {} for trees
    ran: dict[str, Any]  # epochs run, best epoch, stopped early; or the trees kept
    losses: dict[str, float]  # train_loss, validation_loss: the family's own loss at the kept weights
    hyperparameters: dict[str, Any]
    seconds: float
    validation: dict[str, float] = dataclasses.field(default_factory=dict)  # label units (auto's figure)
    validation_rows: list[float] = dataclasses.field(default_factory=list)  # its per-row losses (auto's test)


def read_rows(s: Any, part: str) -> tuple[list[str], tuple]:
    """(features, rows of ``part`` as numpy columns and the learned label); each part read once.

    Every transformed feature but the label; ``part``: training.FIT or VALIDATION (never eval).
    """
    from components.lib import trees

    inputs = sorted(k for k in s.tft_output.transformed_feature_spec() if k != s.info.name)
    if part not in s.rows:
        s.rows[part] = trees.read_part(
            s.train_files,
            s.tft_output,
            part,
            s.budget.validation_fraction,
            label=s.info.name,
            label_fn=s.forward,
            stage=STAGE,
            input_names=inputs,
            classification=s.info.is_classification,
        )
    return inputs, s.rows[part]


def fit_trees(s: Any) -> Fitted:
    """Gradient-boosted trees (``trees``) on every transformed feature, early-stopped on the validation slice.

    The trees read the same fit rows and validation slice as the Keras families (never eval).
    """
    from components.lib import trees

    start = time.perf_counter()
    inputs, fit_rows = read_rows(s, training.FIT)
    _, validation_rows = read_rows(s, training.VALIDATION)
    fitted = trees.fit(
        fit_rows,
        validation_rows,
        classes=s.info.num_classes if s.info.is_classification else 0,
        seed=training.SEED,
        stage=STAGE,
        where=s.train_files[0],
    )
    hparams = {"model_family": model_families.GBT, **trees.hyperparameters()}
    ran = {"trees": fitted.trees}
    losses = {"train_loss": math.nan, "validation_loss": fitted.validation_loss}
    return Fitted(
        model_families.GBT, fitted.forest, inputs, {}, ran, losses, hparams, time.perf_counter() - start
    )


def fit_ridge(s: Any) -> Fitted:
    """Regression's linear family: ridge regression in closed form (``linear``) on the fit rows."""
    from components.lib import linear

    start = time.perf_counter()
    inputs, fit_rows = read_rows(s, training.FIT)
    fitted = linear.fit(fit_rows, stage=STAGE, where=s.train_files[0])
    hparams = {"model_family": model_families.LINEAR, "alpha": linear.ALPHA}
    ran = {"columns": fitted.columns}
    losses = {"train_loss": math.nan, "validation_loss": math.nan}
    return Fitted(
        model_families.LINEAR, fitted.model, inputs, {}, ran, losses, hparams, time.perf_counter() - start
    )


def validation_figure(s: Any, fitted: Fitted) -> tuple[dict[str, float], list[float]]:
    """Auto's figure (MAE or log loss, label units, validation slice) and the per-row losses behind it.

    The per-row losses feed auto's paired test between families (``model_families.choose``).
    One eager call on the slice's rows (read once for all families; no tracing).
    """
    import numpy as np
    import tensorflow as tf

    _, (columns, learned) = read_rows(s, training.VALIDATION)
    features = {k: tf.constant(columns[k]) for k in fitted.inputs}
    out = tf.cast(fitted.model(features, training=False), tf.float32)
    if s.info.is_classification:
        probabilities = np.asarray(out.numpy(), dtype=np.float64)
        y = np.asarray(learned, dtype=np.int64).reshape(-1)
        rows = -np.log(np.clip(probabilities[np.arange(len(y)), y], 1e-7, 1.0))
        return {
            "validation_log_loss": classification_metrics(learned, probabilities)["log_loss"]
        }, rows.tolist()
    preds = np.reshape(s.inverse(out).numpy(), [-1])
    labels = np.reshape(s.inverse(tf.constant(learned.reshape(-1, 1), tf.float32)).numpy(), [-1])
    rows = np.abs(labels.astype(np.float64) - preds.astype(np.float64))
    return {"validation_mae": regression_metrics(labels, preds)["mae"]}, rows.tolist()
