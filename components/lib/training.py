"""Fitting the user module's Keras model on transformed examples: what tune and train share.

Both stages build the model with the user module's ``build_model``, feed it batches of TFT's
transformed examples (only the inputs the model declares), learn the label as the module's
optional ``label_transform`` makes it, and seed Keras the same way — so a trial in tune and the
final fit in train see the same data in the same order for the same hyperparameters.
"""

from __future__ import annotations

from typing import Any

from components import names
from components.errors import StageError
from components.lib import user_module

SEED = 42
SHUFFLE_BUFFER = 10_000


def set_seed() -> None:
    """Same data order and initial weights on every run with the same inputs."""
    import keras

    keras.utils.set_random_seed(SEED)


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


def model_input_names(model: Any) -> list[str]:
    """The names of a Keras model's inputs (the transformed features it consumes)."""
    return [t.name.split(":")[0] for t in model.inputs]


def make_dataset(
    files: list[str],
    tft_output: Any,
    batch_size: int,
    *,
    label_fn: Any,
    stage: str,
    input_names: list[str] | None = None,
    shuffle: bool = False,
    repeat: bool = False,
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
