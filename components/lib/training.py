"""Fitting the user module's Keras model on transformed examples: what tune and train share.

Both stages build the model with the user module's ``build_model``, feed it batches of TFT's
transformed examples (only the inputs the model declares), learn the label (the ``label``
parameter's column) as the module's optional ``label_transform`` makes it, and seed Keras the
same way — so a trial in tune and the final fit in train see the same data in the same order for
the same hyperparameters. Module functions that take a context get the same
``user_module.ModuleContext`` in both (``module_context``: the label contract transform wrote).
For classification the label is the class id (int64); rows whose label is no class (-1) are
left out.
"""

from __future__ import annotations

from typing import Any

from components.errors import StageError
from components.lib import user_module

SEED = 42
SHUFFLE_BUFFER = 10_000


def set_seed() -> None:
    """Same data order and initial weights on every run with the same inputs."""
    import keras

    keras.utils.set_random_seed(SEED)


def module_context(tft_output: Any, info: Any, steps: int | None = None) -> user_module.ModuleContext:
    """The context module functions get in tune and train, from the label contract (``label.LabelInfo``)."""
    return user_module.ModuleContext(
        label=info.name,
        task=info.task,
        classes=tuple(info.classes),
        schema=tft_output.raw_metadata.schema,
        label_stats=dict(info.stats),
        train_rows=info.stats.get("count"),
        steps=steps,
    )


def label_functions(module: Any, stage: str, context: Any = None) -> tuple[Any, Any]:
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
    if forward is None or inverse is None:
        return identity, identity
    return (
        lambda x: user_module.call(forward, x, context=context, stage=stage),
        lambda x: user_module.call(inverse, x, context=context, stage=stage),
    )


def build_user_model(
    module: Any, hparams: dict[str, Any], tft_output: Any, stage: str, context: Any = None
) -> Any:
    """The module's ``build_model``, its failures reported against the module file."""
    build = user_module.require(module, user_module.BUILD_MODEL, stage)
    # An exception in build_model: a StageError naming the file, the function and the line.
    model = user_module.call(build, hparams, tft_output, context=context, stage=stage)
    if model is None or not hasattr(model, "fit"):
        raise StageError(
            stage,
            user_module.module_location(module),
            f"{user_module.BUILD_MODEL} must return a compiled Keras model",
        )
    return model


def model_input_names(model: Any) -> list[str]:
    """The transformed features a Keras model consumes: its input dict's keys, else its Inputs' names.

    A functional model built on a dict of inputs matches what it is fed by the dict's keys, so
    those are the feature names; the ``keras.Input`` names may differ (Keras allows no ``/`` in
    them, a feature name may have one: ``identifiers.safe_name``). A model built on a list
    matches by Input name.
    """
    try:
        structure = model.input
    except (AttributeError, ValueError):  # a subclassed model that was never called
        structure = None
    if isinstance(structure, dict) and structure:
        return list(structure)
    return [t.name.split(":")[0] for t in model.inputs]


def make_dataset(
    files: list[str],
    tft_output: Any,
    batch_size: int,
    *,
    label: str,
    label_fn: Any,
    stage: str,
    input_names: list[str] | None = None,
    shuffle: bool = False,
    repeat: bool = False,
    classification: bool = False,
) -> Any:
    """(features, label) batches of transformed examples; label as ``label_fn`` makes it, [batch, 1].

    ``classification``: the label is the class id (int64, [batch]); rows without a class (-1)
    are dropped.
    """
    import tensorflow as tf

    spec = tft_output.transformed_feature_spec()
    if label not in spec:
        raise StageError(stage, None, f"transformed examples have no label {label!r}")
    ds = tf.data.TFRecordDataset(files, compression_type="GZIP")
    if shuffle:
        ds = ds.shuffle(SHUFFLE_BUFFER, seed=SEED, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size)

    def parse(records: Any) -> Any:
        features = tf.io.parse_example(records, spec)
        if classification:
            y = tf.reshape(tf.cast(features.pop(label), tf.int64), [-1])
            known = y >= 0
            features = {
                k: tf.boolean_mask(v, known) if isinstance(v, tf.Tensor) else v for k, v in features.items()
            }
            y = tf.boolean_mask(y, known)
        else:
            y = tf.reshape(tf.cast(features.pop(label), tf.float32), [-1, 1])
        if input_names is not None:
            features = {k: features[k] for k in input_names}
        return features, label_fn(y)

    return ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def count_records(files: list[str], limit: int) -> int:
    """How many records the files hold, counting no further than ``limit``."""
    import tensorflow as tf

    ds = tf.data.TFRecordDataset(files, compression_type="GZIP").take(limit)
    return int(ds.reduce(0, lambda n, _: n + 1))
