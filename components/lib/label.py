"""The label contract: what the model predicts (the task and its classes) and the training labels' figures.

The task is decided once, by the schema stage, and written INTO the schema, so every later stage
(and a user's own schema) reads it from there:

- regression: the label is FLOAT, or INT without a categorical domain;
- classification: the label is BYTES with a string domain (the classes are its values, in the
  schema's order: TFDV writes them sorted, so "no" < "yes" and the second class is the positive
  one of a binary label), or INT with ``int_domain {min: 0 max: K-1 is_categorical: true}``
  (classes "0" .. "K-1": the class id is the value itself, which is how TFMA reads an int label).

``LabelInfo`` is that decision plus figures of the TRAINING labels (count, mean, median, spread;
class counts), which transform computes while it reads the train split. Transform writes it next
to the transform graph (``transform_output.label_info_path``), where tune and train read it;
train copies it into the SavedModel (``saved_model.label_info_path``), so evaluate knows the
task, the classes and the naive predictor (training median, or majority class) of every model
it judges, a pushed baseline too. Standard library at the top level (numpy inside functions).
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from components import names
from components.errors import StageError

AUTO, REGRESSION, CLASSIFICATION = "auto", "regression", "classification"
TASKS = (AUTO, REGRESSION, CLASSIFICATION)
KIND_FLOAT, KIND_INT, KIND_STRING = "float", "int", "string"
# task=auto reads an INT label as classes when its values are 0 .. AUTO_INT_CLASSES-1.
AUTO_INT_CLASSES = 10
MAX_CLASSES = 100  # TFDV keeps a string domain up to 100 values (infer_schema's default)
LABEL_FILE = names.LABEL_INFO_FILE


@dataclasses.dataclass(frozen=True)
class LabelInfo:
    """The label's name, task, value kind and classes, and figures of the training labels.

    ``stats`` (empty until transform has read the train split): ``count``; regression also
    ``mean``, ``std``, ``min``, ``max``, ``median`` and, for a positive label, ``log_mean`` and
    ``log_std``; classification ``class_counts`` (per class id) and ``unknown`` (labels outside
    the classes).
    """

    name: str
    task: str
    kind: str
    classes: tuple[str, ...] = ()
    stats: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def is_classification(self) -> bool:
        return self.task == CLASSIFICATION

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def with_stats(self, stats: dict[str, Any]) -> LabelInfo:
        return dataclasses.replace(self, stats=dict(stats))

    def naive(self) -> dict[str, Any]:
        """The naive predictor the gate compares with: the training median, or the majority class."""
        if self.is_classification:
            counts = list(self.stats.get("class_counts") or [])
            if not counts or not sum(counts):
                return {}
            best = max(range(len(counts)), key=lambda i: (counts[i], -i))
            return {"class_id": best, "class": self.classes[best], "share": counts[best] / sum(counts)}
        median = self.stats.get("median")
        return {} if median is None else {"prediction": float(median)}

    def to_document(self) -> dict[str, Any]:
        return {
            "label": self.name,
            "task": self.task,
            "kind": self.kind,
            "classes": list(self.classes),
            "stats": self.stats,
        }

    @classmethod
    def from_document(cls, doc: Any, stage: str, where: str | None) -> LabelInfo:
        if not isinstance(doc, dict) or doc.get("task") not in (REGRESSION, CLASSIFICATION):
            raise StageError(stage, where, "not a label description: no task regression/classification")
        return cls(
            name=str(doc.get("label") or ""),
            task=doc["task"],
            kind=str(doc.get("kind") or ""),
            classes=tuple(str(c) for c in doc.get("classes") or ()),
            stats=dict(doc.get("stats") or {}),
        )

    def write(self, path: Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_document(), indent=2, sort_keys=True))
        return path

    @classmethod
    def read(cls, path: Path, stage: str) -> LabelInfo:
        try:
            doc = json.loads(Path(path).read_text())
        except FileNotFoundError as e:
            raise StageError(stage, str(path), "label description is missing") from e
        except (OSError, ValueError) as e:
            raise StageError(stage, str(path), f"label description is unreadable: {e}") from e
        return cls.from_document(doc, stage, str(path))


def _feature(schema: Any, label: str, stage: str, where: str | None) -> Any:
    for feature in schema.feature:
        if feature.name == label:
            return feature
    names = [f.name for f in schema.feature]
    raise StageError(stage, where, f"schema has no label feature {label!r}; its features are {names}")


def _string_domain(schema: Any, feature: Any) -> list[str] | None:
    """The values of a BYTES feature's string domain (inline or referenced), or None."""
    if feature.HasField("string_domain"):
        return list(feature.string_domain.value)
    if feature.domain:
        for domain in schema.string_domain:
            if domain.name == feature.domain:
                return list(domain.value)
    return None


def _kind(feature: Any) -> str:
    from tensorflow_metadata.proto.v0 import schema_pb2

    return {schema_pb2.FLOAT: KIND_FLOAT, schema_pb2.INT: KIND_INT}.get(feature.type, KIND_STRING)


def _value_text(value: float) -> str:
    """A label value as a person reads it: 250 for 250.0, 0.5 as 0.5 (float32 noise trimmed)."""
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.6g}"


def check_label_varies(label: str, label_stats: Any, *, stage: str, where: str | None) -> None:
    """A label with one value in every train row (one number, one class) is an error, before any work.

    Nothing can be learned from it, and the stages after would run to a meaningless verdict
    ("MAE 0 is nan% below ..."); the usual causes are a broken export or the wrong column.
    ``label_stats``: the label's train ``FeatureNameStatistics`` (None: nothing to check).
    """
    if label_stats is None:
        return
    if label_stats.HasField("num_stats"):
        ns = label_stats.num_stats
        rows = int(ns.common_stats.num_non_missing)
        if not rows or ns.min != ns.max:
            return
        value = _value_text(ns.min)
    elif label_stats.HasField("string_stats"):
        ss = label_stats.string_stats
        rows = int(ss.common_stats.num_non_missing)
        if not rows or ss.unique != 1:
            return
        top = [v.value for v in ss.top_values] or [b.label for b in ss.rank_histogram.buckets]
        value = repr(top[0]) if top else "?"
    else:
        return
    raise StageError(
        stage,
        where,
        f"label {label!r} has one value ({value}) in all {rows:,} train rows: nothing to learn; "
        "check the export or choose another label",
    )


def apply_task(
    schema: Any, label: str, requested: str, label_stats: Any, *, stage: str, where: str | None
) -> str:
    """Decide the task (``requested``: auto, regression or classification) and write it into ``schema``.

    ``label_stats``: the label's ``FeatureNameStatistics`` on the train split (None: a user
    schema without statistics at hand). An INT label becomes classification with
    ``int_domain {min: 0, max: K-1, is_categorical: true}``; a BYTES label must have (or gets,
    from the statistics) a string domain. A label with one value in the train statistics is
    refused (``check_label_varies``). Returns the task.
    """
    requested = (requested or AUTO).strip().lower()
    if requested not in TASKS:
        raise StageError(stage, None, f"task {requested!r} is unknown; one of {list(TASKS)}")
    feature = _feature(schema, label, stage, where)
    check_label_varies(label, label_stats, stage=stage, where=where)
    kind = _kind(feature)
    if kind == KIND_FLOAT:
        return _float_task(label, requested, stage=stage, where=where)
    if kind == KIND_STRING:
        return _string_task(schema, feature, label, requested, label_stats, stage=stage, where=where)
    return _int_task(feature, label, requested, label_stats, stage=stage, where=where)


def _float_task(label: str, requested: str, *, stage: str, where: str | None) -> str:
    """A FLOAT label is regression; asking to classify it is the user's error."""
    if requested == CLASSIFICATION:
        raise StageError(
            stage,
            where,
            f"label {label!r} holds decimal numbers: it cannot be classified; "
            "use task=regression (or auto), or integer or text classes",
        )
    return REGRESSION


def _string_task(
    schema: Any, feature: Any, label: str, requested: str, label_stats: Any, *, stage: str, where: str | None
) -> str:
    """A BYTES label is classification over its string domain, taken from the statistics if absent."""
    if requested == REGRESSION:
        raise StageError(
            stage,
            where,
            f"label {label!r} holds text: it can only be classified; use task=classification (or auto)",
        )
    classes = _string_domain(schema, feature)
    if classes is None and label_stats is not None and label_stats.HasField("string_stats"):
        ss = label_stats.string_stats
        if ss.unique <= MAX_CLASSES and len(ss.rank_histogram.buckets) >= ss.unique:
            classes = sorted(b.label for b in ss.rank_histogram.buckets)
            feature.string_domain.value.extend(classes)
    if classes is None:
        unique = label_stats.string_stats.unique if label_stats is not None else "too many"
        raise StageError(
            stage,
            where,
            f"label {label!r} has {unique} distinct values and no string domain: more classes than "
            f"{MAX_CLASSES}; is it the right column?",
        )
    if len(classes) < 2:
        raise StageError(stage, where, f"label {label!r} has a single class {classes}: nothing to learn")
    return CLASSIFICATION


def _int_task(
    feature: Any, label: str, requested: str, label_stats: Any, *, stage: str, where: str | None
) -> str:
    """An INT label: regression, or classes 0 .. K-1 written as a categorical ``int_domain``."""
    domain = feature.int_domain if feature.HasField("int_domain") else None
    if requested == REGRESSION:
        if domain is not None and domain.is_categorical:
            feature.int_domain.is_categorical = False
        return REGRESSION
    if domain is not None and domain.is_categorical and domain.HasField("max"):
        low, high = domain.min, domain.max
    elif label_stats is not None and label_stats.HasField("num_stats"):
        low, high = label_stats.num_stats.min, label_stats.num_stats.max
    else:
        if requested == CLASSIFICATION:
            raise StageError(
                stage,
                where,
                f"label {label!r}: classification of an integer label needs its range; give the schema "
                "int_domain {min: 0 max: K-1 is_categorical: true}",
            )
        return REGRESSION
    fits = low >= 0 and high == math.floor(high) and high >= 1
    if requested == AUTO and not (fits and high < AUTO_INT_CLASSES):
        return REGRESSION
    if not fits or high >= MAX_CLASSES:
        raise StageError(
            stage,
            where,
            f"label {label!r} ranges over {low:g} .. {high:g}: integer classes must be 0 .. K-1 with "
            f"2 <= K <= {MAX_CLASSES} (the class id is the value); map them, or use task=regression",
        )
    feature.ClearField("domain")
    feature.int_domain.min = 0
    feature.int_domain.max = int(high)
    feature.int_domain.is_categorical = True
    return CLASSIFICATION


def from_schema(schema: Any, label: str, *, stage: str, where: str | None) -> LabelInfo:
    """The task and classes the schema stage wrote into ``schema`` for ``label`` (no statistics yet)."""
    feature = _feature(schema, label, stage, where)
    kind = _kind(feature)
    if kind == KIND_STRING:
        classes = _string_domain(schema, feature)
        if not classes:
            raise StageError(
                stage, where, f"label {label!r} is text but the schema gives it no string domain (classes)"
            )
        return LabelInfo(label, CLASSIFICATION, kind, tuple(classes))
    if kind == KIND_INT and feature.HasField("int_domain") and feature.int_domain.is_categorical:
        k = int(feature.int_domain.max) + 1
        return LabelInfo(label, CLASSIFICATION, kind, tuple(str(i) for i in range(k)))
    return LabelInfo(label, REGRESSION, kind)


def class_ids(info: LabelInfo, values: Any) -> Any:
    """Class id of each raw label value (numpy): the index in ``info.classes``, -1 if none."""
    import numpy as np

    values = np.asarray(values)
    if info.kind == KIND_INT:
        ids = values.astype(np.int64)
        return np.where((ids >= 0) & (ids < info.num_classes), ids, -1)
    lookup = {c.encode() if isinstance(c, str) else c: i for i, c in enumerate(info.classes)}
    return np.array(
        [lookup.get(v if isinstance(v, bytes) else str(v).encode(), -1) for v in values.tolist()],
        dtype=np.int64,
    )


def training_statistics(info: LabelInfo, values: Any) -> dict[str, Any]:
    """Figures of the training labels (``LabelInfo.stats``) from all their values (numpy)."""
    import numpy as np

    if info.is_classification:
        ids = class_ids(info, values)
        counts = np.bincount(ids[ids >= 0], minlength=info.num_classes)
        return {
            "count": int(len(ids)),
            "class_counts": [int(c) for c in counts],
            "unknown": int((ids < 0).sum()),
        }
    y = np.asarray(values, dtype=np.float64)
    y = y[np.isfinite(y)]
    if not len(y):
        return {"count": 0}
    stats: dict[str, Any] = {
        "count": int(len(y)),
        "mean": float(y.mean()),
        "std": float(y.std()),
        "min": float(y.min()),
        "max": float(y.max()),
        "median": float(np.median(y)),
    }
    if stats["min"] > 0:
        logs = np.log(y)
        stats.update(log_mean=float(logs.mean()), log_std=float(logs.std()))
    return stats
