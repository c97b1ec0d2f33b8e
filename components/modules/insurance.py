"""The built-in user module (TFX's ``module_file``) for the insurance workload.

A user module defines what the pipeline cannot know: how features are preprocessed
(``preprocessing_fn``, run by TFT in the transform stage and again, as a graph, inside the
served model), which hyperparameters are searched (``hyperparameter_space``), the ones used
when tuning is off (``default_hyperparameters``) and the network (``build_model``).
``label_transform`` / ``label_inverse_transform`` are optional: here the model learns
log(charges) — charges are right-skewed and multiplicative (smoking multiplies the cost), so
a DNN on the log scale reaches less than half the error of one on raw charges — and the
trainer maps predictions back to charges, in the served model too. ``raw_features`` declares the
columns it reads and as what, so transform refuses other data (or text in ``bmi``) with a
one-line error before building any graph. Runs without a ``module_file`` use the schema-driven
default module (``components.modules.tabular``) instead; this one is the worked example of a
module written by hand for one dataset.

Every function imports TensorFlow/Keras inside its body: the pipeline compiles without them.
"""

from __future__ import annotations

from typing import Any

from components import names

NUM_OOV_BUCKETS = 1
# Learning rate, width and depth of the network: the reference workload's search space.
LEARNING_RATES = (0.01, 0.003, 0.001)
UNITS = (16, 32, 64)
NUM_LAYERS = (1, 2)
# Where the output starts: log of a typical charge (e^9.1 ~ 9,000; the median charge is ~9,400).
LOG_CHARGES_PRIOR = 9.1


def _to_dense(x: Any, default: Any) -> Any:
    """A [batch] tensor from a feature as TFT delivers it, ``default`` where it is missing.

    Features the schema marks optional (or without a fixed shape) arrive as SparseTensor (or
    RaggedTensor); required ones as a dense [batch, 1] or [batch] tensor. Serving requests
    may omit any feature, so every one goes through here.
    """
    import tensorflow as tf

    if isinstance(x, tf.SparseTensor):
        x = tf.sparse.to_dense(x, default_value=tf.cast(default, x.dtype))
    elif isinstance(x, tf.RaggedTensor):
        x = x.to_tensor(default_value=tf.cast(default, x.dtype))
    if x.shape.rank is not None and x.shape.rank > 1:
        # [batch, n] with n = 0 when no example in the batch has the feature: pad, take the first.
        x = tf.pad(x, [[0, 0], [0, 1]], constant_values=tf.cast(default, x.dtype))[:, 0]
    return x


def raw_features() -> dict[str, str]:
    """The columns this module reads, and as what: numbers are z-scored, strings indexed."""
    return {
        **{key: "numeric" for key in names.NUMERIC_FEATURES},
        **{key: "string" for key in names.CATEGORICAL_FEATURES},
    }


def preprocessing_fn(inputs: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """Z-score the numeric features, index the categorical ones, pass the label through.

    Missing numeric values become 0 after scaling (the train mean); a missing category
    becomes "" and, like any category not seen in training, falls in the OOV bucket. The label
    is the run's ``label`` (``context.label``; ``charges`` when called without a context).
    """
    import tensorflow as tf
    import tensorflow_transform as tft

    out = {}
    for key in names.NUMERIC_FEATURES:
        x = inputs[key]
        x = tf.cast(x, tf.float32)  # tf.cast maps over SparseTensor/RaggedTensor values too
        out[key] = _to_dense(tft.scale_to_z_score(x), 0.0)
    for key in names.CATEGORICAL_FEATURES:
        x = _to_dense(inputs[key], "")
        out[key] = tft.compute_and_apply_vocabulary(x, num_oov_buckets=NUM_OOV_BUCKETS, vocab_filename=key)
    label = context.label if context is not None else names.LABEL
    out[label] = _to_dense(tf.cast(inputs[label], tf.float32), 0.0)
    return out


def hyperparameter_space(hp: Any) -> dict[str, Any]:
    """Register the search space on keras-tuner's ``hp``; return this trial's values."""
    return {
        "learning_rate": hp.Choice("learning_rate", list(LEARNING_RATES)),
        "units": hp.Choice("units", list(UNITS)),
        "num_layers": hp.Choice("num_layers", list(NUM_LAYERS)),
    }


def default_hyperparameters() -> dict[str, Any]:
    """The values used when tuning is off (the pipeline's ``hyperparameters`` overrides them)."""
    return {"learning_rate": 0.01, "units": 64, "num_layers": 2}


def label_transform(label: Any) -> Any:
    """What the model learns: log(charges) (the trainer applies it to the label)."""
    import tensorflow as tf

    return tf.math.log(tf.maximum(tf.cast(label, tf.float32), 1.0))


def label_inverse_transform(prediction: Any) -> Any:
    """Model output -> charges; the exported serving signature applies it too."""
    import tensorflow as tf

    return tf.exp(prediction)


def charges_mae(y_true: Any, y_pred: Any) -> Any:
    """Keras metric: mean absolute error in charges (the model works in log(charges))."""
    from keras import ops

    return ops.mean(ops.abs(ops.exp(y_true) - ops.exp(y_pred)))


def build_model(hparams: dict[str, Any], tf_transform_output: Any) -> Any:
    """A Keras 3 DNN on the transformed features: one-hot categories, ReLU layers, one output.

    Inputs are named after the transformed features (a [batch] tensor each), so the trainer
    feeds the transform output dict as is. The loss is the absolute error of log(charges):
    its minimizer is the conditional median, which in charges units is still the median
    (log is monotone) — the prediction with the least expected absolute error in charges,
    robust to the long tail of costly non-smokers. The output bias starts at
    LOG_CHARGES_PRIOR so that training starts near the answer: with Adam at 0.001, 1,000
    steps barely move a bias from 0 to 9.
    """
    import keras

    inputs = {}
    parts = []
    for key in names.NUMERIC_FEATURES:
        inputs[key] = keras.Input(shape=(), name=key, dtype="float32")
        parts.append(keras.layers.Reshape((1,), name=f"{key}_col")(inputs[key]))
    for key in names.CATEGORICAL_FEATURES:
        inputs[key] = keras.Input(shape=(), name=key, dtype="int64")
        size = tf_transform_output.vocabulary_size_by_name(key) + NUM_OOV_BUCKETS
        parts.append(
            keras.layers.CategoryEncoding(num_tokens=size, output_mode="one_hot", name=f"{key}_onehot")(
                inputs[key]
            )
        )
    x = keras.layers.Concatenate()(parts)
    for i in range(int(hparams["num_layers"])):
        x = keras.layers.Dense(int(hparams["units"]), activation="relu", name=f"dense_{i}")(x)
    output = keras.layers.Dense(
        1, name="output", bias_initializer=keras.initializers.Constant(LOG_CHARGES_PRIOR)
    )(x)
    model = keras.Model(inputs=inputs, outputs=output)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=float(hparams["learning_rate"])),
        loss="mean_absolute_error",
        metrics=[charges_mae],
    )
    return model
