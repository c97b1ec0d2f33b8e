"""The served model train exports: the Keras model with the transform graph inside, raw examples in.

A plain ``tf.Module`` holding the Keras 3 model and TFT's transform graph, with ``tf.function``
signatures, saved by ``tf.saved_model.save`` (Keras 3 no longer writes TF SavedModels with
``model.save``, and TFT's transform layer is a tf-keras object that cannot join a Keras 3 model):

- ``serving_default``: ``examples`` (serialized raw ``tf.Example``s; the label is not needed,
  and ignored when present) -> parse with the raw schema -> transform graph -> model ->
  - regression: ``{"predictions": float32 [batch, 1]}`` in label units (the module's
    ``label_inverse_transform`` applied);
  - classification: ``{"scores": float32 [batch, K]`` (the probability of each class),
    ``"classes": string [batch, K]`` (the class names, TF Serving's classify outputs, from which
    TFMA reads the label vocabulary), ``"predictions": string [batch, 1]}`` (the likeliest class);
- ``transform_features``: ``examples`` -> the transformed features (what the model sees).

The label contract (``label.LabelInfo``) and the raw features the signature parses go into the
SavedModel's ``assets.extra/`` (``saved_model.label_info_path``, ``inputs_path``), so evaluate
knows the task and classes of any model it loads, and refuses a baseline that reads other data.
``saved_model`` checks the contract on the reading side.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from components import names
from components.lib import saved_model


def export_serving_model(
    model: Any, tft_output: Any, inverse: Any, export_dir: Path, *, info: Any, input_names: list[str]
) -> None:
    """Save ``model`` with the transform graph inside; ``info``: the ``label.LabelInfo``."""
    import tensorflow as tf

    raw_spec = dict(tft_output.raw_feature_spec())
    raw_spec.pop(info.name, None)  # a serving request has no label (one that does is fine)

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
    classes = tf.constant(list(info.classes), tf.string) if info.is_classification else None

    def outputs(scores: Any) -> dict[str, Any]:
        if classes is None:
            out = tf.reshape(tf.cast(inverse(tf.cast(scores, tf.float32)), tf.float32), [-1, 1])
            return {names.PREDICTIONS_KEY: out}
        scores = tf.cast(scores, tf.float32)
        best = tf.gather(classes, tf.argmax(scores, axis=1))
        return {
            names.SCORES_KEY: scores,
            names.CLASSES_KEY: tf.tile(tf.expand_dims(classes, 0), [tf.shape(scores)[0], 1]),
            names.PREDICTIONS_KEY: tf.reshape(best, [-1, 1]),
        }

    @tf.function(input_signature=[example_spec], autograph=False)
    def serve(examples: tf.Tensor) -> dict[str, tf.Tensor]:
        transformed = tft_layer(tf.io.parse_example(examples, raw_spec))
        return outputs(module.model({k: transformed[k] for k in input_names}, training=False))

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
    info.write(saved_model.label_info_path(export_dir))
    # The raw schema the model was trained on travels with it: push keeps it with each version,
    # and the next run's example_gen and validate compare new data with it (schema continuity).
    from google.protobuf import text_format

    from components.lib import served

    served.schema_path(export_dir).write_text(text_format.MessageToString(tft_output.raw_metadata.schema))
    parsed = {name: spec.dtype.name for name, spec in sorted(raw_spec.items())}
    saved_model.inputs_path(export_dir).write_text(json.dumps(parsed, indent=2))
