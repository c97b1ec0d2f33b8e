"""Schema logic: infer a TFDV schema from the train statistics, or load the user's own.

As TFX's SchemaGen does, the schema is inferred from the TRAIN split only (the eval split is
what Validate checks against it) with feature shapes inferred, so Transform can parse
always-present single-valued features as dense tensors. A user-given ``schema.pbtxt`` replaces
inference entirely: a curated schema is the way to pin domains and presence rules.

Either way the schema gets TFX's environment habit when it has none: default environments
TRAINING and SERVING, with the label ``not_in_environment: SERVING``, so the serving signature
and validation of serving data do not expect a label.

And either way the task is decided here and written into the label's domain (``label.apply_task``):
``task=auto`` reads text labels and small non-negative integer labels (0 .. 9) as classes, numbers
otherwise as regression; ``regression`` or ``classification`` overrides that, or fails with the
reason when the label cannot be read so.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from components import names
from components.errors import StageError
from components.lib import label as label_contract
from components.lib.schema_io import read_schema, write_schema
from components.lib.statistics_io import feature_name, read_statistics, statistics_path

STAGE = names.STAGE_SCHEMA
TRAINING = names.ENV_TRAINING
SERVING = names.ENV_SERVING
SOURCE_INFERRED = "inferred"

# Output metadata keys (the local runner prints "features").
META_FEATURES = names.META_FEATURES
META_LABEL = "label"
META_SOURCE = "source"


@dataclasses.dataclass
class SchemaResult:
    """The schema written, where it came from, and its feature names."""

    schema: Any
    source: str
    label: str
    task: str = label_contract.REGRESSION
    classes: tuple[str, ...] = ()

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.schema.feature]

    def metadata(self) -> dict[str, Any]:
        return {
            META_FEATURES: len(self.schema.feature),
            META_LABEL: self.label,
            META_SOURCE: self.source,
            "feature_names": self.feature_names,
            "task": self.task,
            "classes": list(self.classes),
        }


def add_environments(schema: Any, label: str) -> None:
    """TFX's habit, in place: environments TRAINING and SERVING; the label only in TRAINING.

    A schema that already declares environments is left as its author wrote it.
    """
    if schema.default_environment:
        return
    schema.default_environment.extend([TRAINING, SERVING])
    for feature in schema.feature:
        if feature.name == label and SERVING not in feature.not_in_environment:
            feature.not_in_environment.append(SERVING)


def infer(train_stats: Any, label: str, stats_path: str) -> Any:
    """``tfdv.infer_schema`` on the train statistics, feature shapes inferred."""
    import tensorflow_data_validation as tfdv

    present = [feature_name(f) for f in train_stats.datasets[0].features]
    if label not in present:
        raise StageError(
            STAGE, stats_path, f"label {label!r} is not in the train statistics; features are {present}"
        )
    return tfdv.infer_schema(train_stats, infer_feature_shape=True)


def _label_statistics(train: Any, label: str) -> Any:
    """The label's ``FeatureNameStatistics`` in the train statistics, or None."""
    for feature in train.datasets[0].features:
        if feature_name(feature) == label:
            return feature
    return None


def run_schema(
    stats_dir: Path,
    output_dir: Path,
    *,
    label: str,
    schema_file: Path | None = None,
    task: str = label_contract.AUTO,
) -> SchemaResult:
    """Infer from ``stats_dir``'s train split (or load ``schema_file``); write ``<out>/schema.pbtxt``.

    ``task``: auto, regression or classification; the decision is written into the label's domain.
    """
    if not label:
        raise StageError(STAGE, None, "the label name is empty")
    train = None
    if schema_file is not None:
        schema = read_schema(schema_file, STAGE)
        if label not in {f.name for f in schema.feature}:
            raise StageError(STAGE, str(schema_file), f"label {label!r} is not a feature of this schema")
        source = str(schema_file)
        where = source
        if statistics_path(stats_dir, names.TRAIN).is_file():
            train = read_statistics(stats_dir, names.TRAIN, STAGE)
    else:
        train = read_statistics(stats_dir, names.TRAIN, STAGE)
        where = str(statistics_path(stats_dir, names.TRAIN))
        schema = infer(train, label, where)
        source = SOURCE_INFERRED
    label_stats = _label_statistics(train, label) if train is not None else None
    chosen = label_contract.apply_task(schema, label, task, label_stats, stage=STAGE, where=where)
    add_environments(schema, label)
    write_schema(schema, output_dir)
    classes = label_contract.from_schema(schema, label, stage=STAGE, where=where).classes
    return SchemaResult(schema=schema, source=source, label=label, task=chosen, classes=classes)
