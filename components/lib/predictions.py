"""Train's predictions and figures: metrics in label units, the eval prediction table, a traced predictor.

Shared by train's final passes and by auto's validation figure (``family_fits``); the report
factory of the tests builds its tables with ``prediction_table`` too.
"""

from __future__ import annotations

import math
from typing import Any

from components.lib.train_outputs import PREDICTION_COLUMN


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


def predictor(model: Any, inverse: Any, classification: bool = False) -> Any:
    """A traced function: features -> predictions in label units (class probabilities [n, K])."""
    import tensorflow as tf

    @tf.function(reduce_retracing=True, autograph=False)
    def predict(features: Any) -> Any:
        out = tf.cast(model(features, training=False), tf.float32)
        return out if classification else tf.reshape(inverse(out), [-1])

    return predict


def predict_split(
    model: Any, ds: Any, inverse: Any, classification: bool = False, predict: Any = None
) -> tuple[Any, Any, dict[str, Any]]:
    """Predictions over a finite dataset (label units; class probabilities [n, K]), labels and features.

    ``predict``: a ``predictor`` of ``model`` to reuse (each new one is traced again: ~0.1 s).
    """
    import numpy as np
    import tensorflow as tf

    predict = predict or predictor(model, inverse, classification)
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
