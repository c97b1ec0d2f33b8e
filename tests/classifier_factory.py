"""Tiny classifiers with the train stage's classification contract, for testing evaluate.

The contract (``components.lib.serving_export``): ``serving_default`` takes ``examples``
(serialized raw ``tf.Example``s) and returns ``scores`` (float32 [batch, K], class
probabilities), ``classes`` (string [batch, K]) and ``predictions`` (string [batch, 1]); the
label contract and the parsed inputs sit in ``assets.extra/``. Here the scores are a fixed
softmax of ``size`` — no training — so the TFMA engine and the native engine can be compared in
seconds, on eval rows the test writes (``test_evaluate.write_eval_split``).
"""

from __future__ import annotations

import json
from pathlib import Path

from components import names
from components.lib import saved_model
from components.lib.label import CLASSIFICATION, KIND_INT, KIND_STRING, LabelInfo


def save_size_classifier(
    export_dir: Path,
    classes: tuple[str, ...],
    *,
    kind: str = KIND_STRING,
    sharpness: float = 0.05,
    counts=None,
) -> Path:
    """Class k's logit = sharpness * size * (k - (K-1)/2): bigger rows lean to later classes."""
    import tensorflow as tf

    k = len(classes)
    spec = {"size": tf.io.FixedLenFeature([], tf.float32, default_value=100.0)}
    weights = tf.constant([[sharpness * (i - (k - 1) / 2) for i in range(k)]], tf.float32)
    names_ = tf.constant(list(classes))

    class Classifier(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=names.EXAMPLES_INPUT_KEY)])
        def serve(self, examples: tf.Tensor) -> dict[str, tf.Tensor]:
            size = tf.io.parse_example(examples, spec)["size"]
            scores = tf.nn.softmax(tf.expand_dims(size - 100.0, 1) * weights)
            return {
                names.SCORES_KEY: scores,
                names.CLASSES_KEY: tf.tile(tf.expand_dims(names_, 0), [tf.shape(scores)[0], 1]),
                names.PREDICTIONS_KEY: tf.reshape(tf.gather(names_, tf.argmax(scores, axis=1)), [-1, 1]),
            }

    module = Classifier()
    export_dir = Path(export_dir)
    export_dir.parent.mkdir(parents=True, exist_ok=True)
    tf.saved_model.save(module, str(export_dir), signatures={names.SERVING_SIGNATURE: module.serve})
    stats = {"count": sum(counts or [1] * k), "class_counts": list(counts or [1] * k), "unknown": 0}
    LabelInfo("y", CLASSIFICATION, kind, tuple(classes), stats).write(saved_model.label_info_path(export_dir))
    saved_model.inputs_path(export_dir).write_text(json.dumps({"size": "float32"}))
    return export_dir


def classification_rows(classes: tuple[str, ...], *, ints: bool, n: int = 160, seed: int = 5) -> list[dict]:
    """Eval rows: ``size``, a slice feature ``color`` (a few rows without it), label ``y`` by size band."""
    import random

    rng = random.Random(seed)
    rows = []
    for i in range(n):
        size = rng.uniform(20.0, 180.0)
        band = min(len(classes) - 1, int((size - 20.0 + rng.gauss(0, 15)) / (160.0 / len(classes))))
        band = max(0, band)
        row = {
            "size": size,
            "y": band if ints else classes[band],
            "color": rng.choice(["red", "blue", "grün"]),
        }
        if i % 37 == 5:  # a few rows without the slice feature (not the first: evaluate checks it)
            del row["color"]
        rows.append(row)
    return rows


__all__ = ["KIND_INT", "KIND_STRING", "classification_rows", "save_size_classifier"]
