"""The default user module: preprocessing, model and search space derived from the schema, for any table.

Used when a run names no ``module_file``. Every function takes the pipeline's ``ModuleContext``
(``components.lib.user_module``): the label, the task (regression or classification), the class
names, the raw schema and figures of the training labels. Nothing here knows a column name.

- ``preprocessing_fn``: every feature of the schema but the label. Numbers (INT, FLOAT) are
  z-scored with the train mean and deviation, a missing value becomes 0 (the mean); text (and
  integers the schema marks categorical) is indexed by a vocabulary of at most
  ``MAX_VOCABULARY`` values plus one out-of-vocabulary bucket, a missing value becomes "".
  Every feature is read as optional, so a serving request may leave any of them out. The label
  passes through: as a float for regression, as its class id for classification.
- ``label_transform``: regression learns a standardized label; a positive label that spans an
  order of magnitude or more (prices, costs, counts of money) is learned on the log scale, where
  its multiplicative effects become additive. The served model maps predictions back.
- ``build_model``: numbers as they are, small vocabularies one-hot, large ones embedded; ReLU
  layers; for regression one output with the absolute error as loss (its minimizer is the
  median, which is what the MAE gate rewards), starting at the training median; for
  classification a softmax over the classes with cross-entropy, starting at the class
  frequencies. Either way the untrained model already is the naive predictor the gate beats.
  Adam's learning rate falls along a cosine to a tenth over the fit's steps: on the reference
  workload that lowers the eval MAE by ~15 % and its spread across seeds by ~4x (1,530-1,650
  over four seeds, against 1,630-2,230 at a constant rate). The hidden layers get an L2 weight
  decay that shrinks with the number of training rows: on a few hundred rows 1,000 steps are
  over a hundred epochs, and without it a classifier's eval log loss doubled while its accuracy
  stayed (0.58 against 0.35 on the 240-row test table); on the workload it changes the MAE by
  2 % (1,572 against 1,606 over four seeds).
- ``hyperparameter_space``: learning rate, depth and width; the widths grow with the number
  of features. On the reference workload (six features) it is the workload's space.
- ``MODEL_FAMILIES``: besides this network ("mlp"), train may fit gradient-boosted trees on the
  same transformed features ("gbt", ``components.lib.trees``) and a linear model ("linear":
  ``build_model`` with ``hparams["model_family"] = "linear"``, the same inputs and output without
  hidden layers, an L2 penalty on the weights); ``model_family=auto`` keeps the best on the
  validation slice (``components.lib.model_families``).

The features are the schema's minus the label and minus those the schema stage tagged as
excluded (identifier-like columns: ids, row numbers, dates as text; or the run's ``features`` /
``exclude_features`` choice — ``user_module.excluded_reason``). The serving signature still
parses an excluded feature, so a request may send it. Column names are kept as the keys of the
transformed features (any CSV header: ``od280/od315``, ``région``); where TensorFlow or Keras
needs an identifier (vocabulary files and their name scopes, Keras Input names) the name goes
through ``identifiers.safe_names``.

TensorFlow, TFT and Keras are imported inside the functions: the pipeline compiles without them.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

from components.lib.identifiers import safe_name, safe_names
from components.lib.user_module import excluded_reason

NUMERIC, STRING = "numeric", "string"  # user_module's raw_features kinds
NUM_OOV_BUCKETS = 1
MAX_VOCABULARY = 1000  # most frequent values kept per text feature; the rest share the OOV bucket
ONE_HOT_LIMIT = 64  # vocabularies up to this size are one-hot encoded, larger ones embedded
LEARNING_RATES = (0.01, 0.003, 0.001)
NUM_LAYERS = (1, 2)
LOG_SPAN = 10.0  # a positive label with max/min >= this is learned on the log scale
DECAY_TO = 0.1  # the learning rate falls (cosine) to this fraction of itself over the fit
# L2 weight decay of the hidden layers: this over the number of training rows (a prior of fixed
# strength; negligible on big data). Cross-entropy is ~3x the scale of the regression loss (MAE on
# a standardized or log label), hence the larger constant for classification.
L2_PER_ROW = {"classification": 1.0, "regression": 0.3}
MODEL_FAMILIES = ("mlp", "gbt", "linear")  # what train may fit for this module (lib/model_families.py)
LINEAR = "linear"


def raw_features(context: Any) -> dict[str, str]:
    """Each feature but the label and the excluded ones: "numeric" (INT, FLOAT) or "string".

    "string": BYTES, and INT the schema marks categorical. Excluded: tagged by the schema stage.
    """
    from tensorflow_metadata.proto.v0 import schema_pb2

    kinds = {}
    for feature in context.schema.feature:
        if feature.name == context.label or excluded_reason(feature) is not None:
            continue
        categorical = feature.HasField("int_domain") and feature.int_domain.is_categorical
        numeric = feature.type in (schema_pb2.INT, schema_pb2.FLOAT) and not categorical
        kinds[feature.name] = NUMERIC if numeric else STRING
    return kinds


def identifiers(context: Any) -> dict[str, str]:
    """{feature: identifier} for the names TF and Keras restrict (vocabulary files, Input names).

    Derived from the feature names alone, so transform (vocabularies) and train (the model's
    inputs) agree without passing anything between them.
    """
    return safe_names(raw_features(context))


def _to_dense(x: Any, default: Any) -> Any:
    """A [batch] tensor from a feature as TFT delivers it (sparse, ragged, dense); ``default`` if missing."""
    import tensorflow as tf

    if isinstance(x, tf.SparseTensor):
        x = tf.sparse.to_dense(x, default_value=tf.cast(default, x.dtype))
    elif isinstance(x, tf.RaggedTensor):
        x = x.to_tensor(default_value=tf.cast(default, x.dtype))
    if x.shape.rank is not None and x.shape.rank > 1:
        # [batch, n] with n = 0 when no example in the batch has the feature: pad, take the first.
        x = tf.pad(x, [[0, 0], [0, 1]], constant_values=tf.cast(default, x.dtype))[:, 0]
    return x


def _as_text(x: Any) -> Any:
    """A string feature as it is; an integer one as its decimal text (sparse stays sparse)."""
    import tensorflow as tf

    if x.dtype == tf.string:
        return x
    if isinstance(x, tf.SparseTensor):
        return tf.SparseTensor(x.indices, tf.strings.as_string(x.values), x.dense_shape)
    if isinstance(x, tf.RaggedTensor):
        return tf.ragged.map_flat_values(tf.strings.as_string, x)
    return tf.strings.as_string(x)


def class_ids(label: Any, context: Any) -> Any:
    """The class id (int64 [batch]) of each raw label: its position in ``context.classes``, -1 if none."""
    import tensorflow as tf

    if label.dtype == tf.string:
        y = _to_dense(label, "")
        classes = tf.constant(list(context.classes))
        hits = tf.equal(tf.expand_dims(y, 1), tf.expand_dims(classes, 0))
        found = tf.reduce_any(hits, axis=1)
        return tf.where(found, tf.argmax(tf.cast(hits, tf.int64), axis=1), tf.constant(-1, tf.int64))
    y = tf.cast(_to_dense(label, -1), tf.int64)
    return tf.where((y >= 0) & (y < len(context.classes)), y, tf.constant(-1, tf.int64))


def preprocessing_fn(inputs: dict[str, Any], context: Any) -> dict[str, Any]:
    """Z-score numbers, index text, pass the label through (a float, or a class id)."""
    import tensorflow as tf
    import tensorflow_transform as tft

    out = {}
    ids = identifiers(context)
    for name, kind in raw_features(context).items():
        x = inputs[name]
        if kind == NUMERIC:
            out[name] = _to_dense(tft.scale_to_z_score(tf.cast(x, tf.float32)), 0.0)
        else:
            out[name] = tft.compute_and_apply_vocabulary(
                _to_dense(_as_text(x), ""),
                top_k=MAX_VOCABULARY,
                num_oov_buckets=NUM_OOV_BUCKETS,
                vocab_filename=ids[name],
            )
    label = inputs[context.label]
    if context.is_classification:
        out[context.label] = class_ids(label, context)
    else:
        out[context.label] = _to_dense(tf.cast(label, tf.float32), 0.0)
    return out


def label_scale(context: Any) -> tuple[bool, float, float]:
    """(log scale?, center, scale) of the regression label, from the training labels' figures.

    On the log scale the label is only centered: log units are already free of the label's unit
    (a step of 0.1 is 10 % whatever the currency), and left unscaled the fit is the one the
    insurance module makes on log(charges).
    """
    s = context.label_stats or {}
    low, high = s.get("min"), s.get("max")
    if low is not None and high is not None and low > 0 and high / low >= LOG_SPAN and "log_mean" in s:
        return True, float(s["log_mean"]), 1.0
    return False, float(s.get("mean", 0.0)), float(s.get("std") or 1.0) or 1.0


def label_transform(label: Any, context: Any) -> Any:
    """What the model learns: the standardized label (of its log, for a wide positive label)."""
    import tensorflow as tf

    if context.is_classification:
        return label
    log, center, scale = label_scale(context)
    y = tf.cast(label, tf.float32)
    if log:
        y = tf.math.log(tf.maximum(y, 1e-7))
    return (y - center) / scale


def label_inverse_transform(prediction: Any, context: Any) -> Any:
    """Model output -> label units (the served model applies it too)."""
    import tensorflow as tf

    if context.is_classification:
        return prediction
    log, center, scale = label_scale(context)
    y = tf.cast(prediction, tf.float32) * scale + center
    return tf.exp(y) if log else y


def _widths(context: Any) -> tuple[int, ...]:
    """Layer widths to search: more features, wider layers."""
    n = len(raw_features(context))
    if n <= 16:
        return (16, 32, 64)
    if n <= 64:
        return (32, 64, 128)
    return (64, 128, 256)


def hyperparameter_space(hp: Any, context: Any) -> dict[str, Any]:
    """Learning rate, width and depth, registered on keras-tuner's ``hp``."""
    return {
        "learning_rate": hp.Choice("learning_rate", list(LEARNING_RATES)),
        "units": hp.Choice("units", list(_widths(context))),
        "num_layers": hp.Choice("num_layers", list(NUM_LAYERS)),
    }


def default_hyperparameters(context: Any) -> dict[str, Any]:
    """The values used when tuning is off: the widest layers, two of them."""
    return {"learning_rate": 0.01, "units": max(_widths(context)), "num_layers": 2}


def _output_start(context: Any) -> Any:
    """The output layer's initial bias: the naive predictor (training median, or class frequencies)."""
    import keras

    s = context.label_stats or {}
    if context.is_classification:
        counts = s.get("class_counts") or [1] * len(context.classes)
        total = sum(counts) + len(counts)
        return keras.initializers.Constant([math.log((c + 1) / total) for c in counts])
    log, center, scale = label_scale(context)
    median = s.get("median")
    if median is None or (log and median <= 0):
        return "zeros"
    return keras.initializers.Constant(((math.log(median) if log else median) - center) / scale)


def _functional(inputs: dict[str, Any], output: Any) -> Any:
    """``keras.Model(inputs, output)``, without Keras's warning about dict keys that are not Input names.

    The keys are the feature names and the Inputs carry their identifiers, which differ for any
    name Keras refuses (``a/b``); Keras matches the dict it is fed by key all the same (it
    flattens both dicts in key order), so the warning would only puzzle whoever reads the log.
    """
    import keras

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="When providing `inputs` as a dict", category=UserWarning)
        return keras.Model(inputs=inputs, outputs=output)


def build_model(hparams: dict[str, Any], tf_transform_output: Any, context: Any) -> Any:
    """A Keras 3 network on the transformed features (a [batch] tensor each, keyed by the feature name).

    The inputs are a dict keyed by feature name, which is how Keras 3 matches the features it is
    fed; each ``keras.Input`` is named with the feature's identifier (Keras refuses ``/``).
    """
    import keras
    import tensorflow as tf

    spec = tf_transform_output.transformed_feature_spec()
    ids = identifiers(context)
    inputs, parts = {}, []  # keyed by feature name (what Keras matches a dict input by)
    for name in sorted(spec):
        if name == context.label:
            continue
        key = ids.get(name) or safe_name(name, set(ids.values()))
        if spec[name].dtype == tf.float32:
            inputs[name] = keras.Input(shape=(), name=key, dtype="float32")
            parts.append(keras.layers.Reshape((1,))(inputs[name]))
            continue
        inputs[name] = keras.Input(shape=(), name=key, dtype="int64")
        size = tf_transform_output.vocabulary_size_by_name(key) + NUM_OOV_BUCKETS
        if size <= ONE_HOT_LIMIT:
            parts.append(keras.layers.CategoryEncoding(num_tokens=size, output_mode="one_hot")(inputs[name]))
        else:
            dim = min(32, max(4, round(1.6 * size**0.56)))
            parts.append(keras.layers.Embedding(size, dim)(inputs[name]))
    if not parts:
        raise ValueError("the transformed examples hold no feature besides the label")
    x = keras.layers.Concatenate()(parts) if len(parts) > 1 else parts[0]
    decay = L2_PER_ROW["classification" if context.is_classification else "regression"]
    reg = keras.regularizers.l2(decay / context.train_rows) if context.train_rows else None
    linear = hparams.get("model_family") == LINEAR  # no hidden layers; the penalty on the output
    for i in range(0 if linear else int(hparams["num_layers"])):
        x = keras.layers.Dense(
            int(hparams["units"]), activation="relu", name=f"dense_{i}", kernel_regularizer=reg
        )(x)
    rate: Any = float(hparams["learning_rate"])
    if context.steps:  # anneal to a tenth over the fit: a steadier end point, ~15 % lower MAE here
        rate = keras.optimizers.schedules.CosineDecay(rate, decay_steps=int(context.steps), alpha=DECAY_TO)
    optimizer = keras.optimizers.Adam(learning_rate=rate)
    if context.is_classification:
        output = keras.layers.Dense(
            len(context.classes),
            activation="softmax",
            name="output",
            bias_initializer=_output_start(context),
            kernel_regularizer=reg if linear else None,
        )(x)
        model = _functional(inputs, output)
        model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return model
    output = keras.layers.Dense(
        1, name="output", bias_initializer=_output_start(context), kernel_regularizer=reg if linear else None
    )(x)
    model = _functional(inputs, output)

    def label_mae(y_true: Any, y_pred: Any) -> Any:
        """Mean absolute error in label units (the model works on the transformed label)."""
        back = label_inverse_transform
        return keras.ops.mean(keras.ops.abs(back(y_true, context) - back(y_pred, context)))

    model.compile(optimizer=optimizer, loss="mean_absolute_error", metrics=[label_mae])
    return model
