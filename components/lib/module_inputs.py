"""What a user module reads from the raw data, checked before any TensorFlow graph is built.

A module may declare ``raw_features(context) -> {feature: "numeric" | "string"}``; transform
checks each against the schema and the data before Beam starts, so using another dataset's
module, or a column that holds text where the module expects numbers, is a one-line error that
names the column, the file and a sample value. Whatever it declares, ``preprocessing_fn`` gets
its inputs as ``CheckedInputs``: reading a feature the data does not have names the feature and
the ones there are, instead of a bare ``KeyError``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from components.errors import StageError
from components.lib import user_module


class CheckedInputs(dict):
    """``preprocessing_fn``'s inputs: a feature the data lacks is a StageError naming it, not a KeyError."""

    def __init__(self, inputs: dict[str, Any], where: str, stage: str) -> None:
        super().__init__(inputs)
        self.where = where
        self.stage = stage

    def __missing__(self, key: str) -> Any:
        raise StageError(
            self.stage,
            self.where,
            f"{user_module.PREPROCESSING_FN} reads feature {key!r}, which is not in the data; "
            f"the features are {sorted(self)}: use a module for this data (or none: the default module)",
        )


def _first_text_value(files: list[Path], feature: str) -> tuple[str, Any] | None:
    """(file, value) of the first text value of ``feature`` that is not a number, in the examples."""
    import tensorflow as tf

    for path in files:
        for record in tf.data.TFRecordDataset(str(path), compression_type="GZIP").take(100_000):
            values = tf.train.Example.FromString(record.numpy()).features.feature[feature].bytes_list.value
            for value in values:
                try:
                    float(value)
                except ValueError:
                    return str(path), value.decode("utf-8", "replace")
    return None


def check_raw_features(
    module: Any, context: Any, schema: Any, train_files: list[Path], source: str | None, stage: str
) -> None:
    """The features the module says it reads (``raw_features``) exist, and number ones hold numbers.

    ``source``: the CSV the examples came from, named in the error (else the examples file).
    """
    from tensorflow_metadata.proto.v0 import schema_pb2

    fn = user_module.optional(module, user_module.RAW_FEATURES, stage)
    if fn is None:
        return
    location = user_module.module_location(module)
    wanted = user_module.call(fn, context=context)
    if not isinstance(wanted, dict):
        raise StageError(stage, location, f"{user_module.RAW_FEATURES} must return a dict of feature: kind")
    by_name = {f.name: f for f in schema.feature}
    for name, kind in wanted.items():
        if kind not in (user_module.NUMERIC, user_module.STRING):
            raise StageError(
                stage, location, f"{user_module.RAW_FEATURES}: {name!r} has kind {kind!r}; numeric or string"
            )
        if name not in by_name:
            raise StageError(
                stage,
                location,
                f"the module reads feature {name!r}, which is not in the data; the features are "
                f"{sorted(by_name)}: use a module for this data (or none: the default module)",
            )
        if kind == user_module.NUMERIC and by_name[name].type == schema_pb2.BYTES:
            sample = _first_text_value(train_files, name)
            where, value = sample if sample else (str(train_files[0]), "?")
            raise StageError(
                stage,
                source or where,
                f"column {name!r} holds text (for example {value!r}) but the module uses it as a number: "
                "fix those cells, or give the column a type (column_types, schema_file) and clean it",
            )
