"""The linear family for regression: ridge regression in closed form on the transformed features.

The design matrix is the transformed features as the network reads them — z-scored numbers as
they are, each vocabulary id one-hot (ids above the largest one in the fit rows, which the fit
never saw, weigh nothing) — plus an intercept. The weights solve ``(X'X + ALPHA * I) w = X'y``
on the fit rows (the intercept unpenalized) for the label the module learns (its
``label_transform``: standardized, or log-scale). ALPHA is scikit-learn's ``Ridge`` default.
One solve costs milliseconds where a Keras fit of the same model costs seconds (~1.9 s CPU on
the reference workload), and it reaches the least-squares optimum the Keras fit only approaches.

The served model is a ``tf.Module`` called like a Keras model (``model(features)`` ->
[batch, 1]), made of standard TensorFlow ops (one-hot, matmul). Classification's linear model is
the module's own (a softmax without hidden layers, fit by Keras): no closed form exists for it.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from components.errors import StageError

ALPHA = 1.0  # L2 penalty (scikit-learn Ridge's default alpha)


@dataclasses.dataclass
class Fitted:
    """The model and what its fit did."""

    model: Any  # a Linear tf.Module
    columns: int
    seconds: float


def _design(columns: dict[str, Any], names: list[str], sizes: dict[str, int]) -> Any:
    """[rows, columns + 1] float64: numbers as they are, ids one-hot (``sizes`` wide), then 1."""
    import numpy as np

    rows = len(next(iter(columns.values())))
    parts = []
    for name in names:
        values = columns[name]
        if name in sizes:
            onehot = np.zeros((rows, sizes[name]))
            known = (values >= 0) & (values < sizes[name])
            onehot[np.nonzero(known)[0], values[known]] = 1.0
            parts.append(onehot)
        else:
            parts.append(values.astype(np.float64).reshape(-1, 1))
    return np.concatenate(parts + [np.ones((rows, 1))], axis=1)


def fit(fit_rows: tuple[dict[str, Any], Any], *, stage: str, where: str | None = None) -> Fitted:
    """Ridge regression of the fit rows' (transformed) label on their transformed features."""
    import numpy as np

    start = time.perf_counter()
    columns, y = fit_rows
    if y is None or not len(y):
        raise StageError(stage, where, "linear: the fit rows are empty")
    names = list(columns)
    sizes = {n: int(columns[n].max()) + 1 for n in names if np.issubdtype(columns[n].dtype, np.integer)}
    x = _design(columns, names, sizes)
    penalty = ALPHA * np.eye(x.shape[1])
    penalty[-1, -1] = 0.0  # the intercept is not shrunk
    weights = np.linalg.solve(x.T @ x + penalty, x.T @ np.asarray(y, np.float64).reshape(-1))
    model = _linear_type()(names, sizes, weights)
    return Fitted(model=model, columns=x.shape[1], seconds=time.perf_counter() - start)


_LINEAR_TYPE: list[Any] = []


def _linear_type() -> Any:
    """The ``Linear`` class (a ``tf.Module``), defined on first use: TensorFlow loads only then."""
    if _LINEAR_TYPE:
        return _LINEAR_TYPE[0]
    import numpy as np
    import tensorflow as tf

    class Linear(tf.Module):
        """``model(features)`` -> [batch, 1]: the weights times the design row (see ``_design``)."""

        def __init__(self, names: list[str], sizes: dict[str, int], weights: Any):
            super().__init__(name="ridge")
            self.input_names, self.sizes = list(names), dict(sizes)
            self.weights = tf.Variable(np.asarray(weights, np.float32).reshape(-1, 1), trainable=False)

        def __call__(self, features: dict[str, Any], training: bool = False) -> Any:
            parts = []
            for name in self.input_names:
                x = tf.reshape(features[name], [-1])
                if name in self.sizes:  # ids outside [0, size) one-hot to all zeros
                    parts.append(tf.one_hot(tf.cast(x, tf.int32), self.sizes[name], dtype=tf.float32))
                else:
                    parts.append(tf.expand_dims(tf.cast(x, tf.float32), 1))
            parts.append(tf.ones_like(parts[0][:, :1]))
            return tf.matmul(tf.concat(parts, axis=1), self.weights)

    _LINEAR_TYPE.append(Linear)
    return Linear
