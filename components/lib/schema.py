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
reason when the label cannot be read so. A label with a single value in the train split (one
number, one class) is refused here, before transform and training spend time on it.

Features the model should not read are decided here too, and travel in the schema: such a
feature keeps its place (ExampleGen, validation and the serving signature still accept it) and
gets the tag ``kubetfx:excluded:<kind>`` with the reason in its annotation comment
(``user_module.excluded_reason``); the default module leaves it out. On an inferred schema these
identifier-like columns are excluded, from the train statistics (eval's too, for row numbers):

- text whose values are nearly all different: more than ``MIN_DISTINCT`` (20) distinct values
  and at least ``DISTINCT_SHARE`` (90 %) as many distinct values as rows with a value, one value
  per row. Then at most 20 % of the training rows share their value with another row, so a
  vocabulary learns the training rows themselves (a ``date`` column with 1,461 distinct values
  in 1,461 rows: train accuracy 1.0, validation 0.54) and new rows are out of vocabulary. A real
  category repeats: 3 colors, 50 states, even 250 zip codes in 1,000 rows (25 %) stay;
- text that looks like dates or timestamps (``2020-10-25``, ``25/10/2020``, with a time or not)
  in at least 90 % of its most frequent values, with more than ``MIN_DISTINCT`` distinct values:
  as a category, a date the served model meets is one it never trained on. Dates are not turned
  into numbers; derive year, month or age in a ``module_file``;
- an integer row number: no value missing, at least ``ROW_NUMBER_MIN_ROWS`` (100) rows, the
  values span exactly as many integers as there are rows (max - min + 1 == rows of train and
  eval together) and are spread evenly (every bucket of the train histogram holds 0.5x .. 1.5x
  its share). TFDV counts no distinct values of an integer feature, so an integer id that is not
  a run of consecutive numbers is not detected: name it in ``exclude_features``.

Never the label. Overrides: ``features`` (comma-separated) names exactly the features to use —
every other one is excluded and the rules above do not apply; ``exclude_features`` excludes
these too. A user's ``schema_file`` keeps its own tags (the rules are not applied to a curated
schema); the overrides apply to it as well. Naming a column the data lacks, or the label, is an
error; so is excluding every feature.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from components import names
from components.errors import StageError
from components.lib import label as label_contract
from components.lib import user_module
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
META_EXCLUDED = "excluded_features"

# The identifier rules (module docstring).
MIN_DISTINCT = 20
DISTINCT_SHARE = 0.9
DATE_SHARE = 0.9
ROW_NUMBER_MIN_ROWS = 100
ROW_NUMBER_BUCKET_SPREAD = (0.5, 1.5)
_DATE = re.compile(  # 2020-10-25, 2020/10/25, 25.10.2020, 10/25/20; a time may follow
    r"^\s*(\d{4}(?P<a>[-/.])\d{1,2}(?P=a)\d{1,2}|\d{1,2}(?P<b>[-/.])\d{1,2}(?P=b)\d{2,4})"
    r"([ T]\d{1,2}:\d{2}.*)?$"
)
KIND_IDENTIFIER, KIND_DATE, KIND_ROW_NUMBER, KIND_PARAMETER = "identifier", "date", "row_number", "parameter"


@dataclasses.dataclass
class SchemaResult:
    """The schema written, where it came from, and its feature names."""

    schema: Any
    source: str
    label: str
    task: str = label_contract.REGRESSION
    classes: tuple[str, ...] = ()
    excluded: dict[str, str] = dataclasses.field(default_factory=dict)  # {feature: reason}

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
            META_EXCLUDED: dict(self.excluded),
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


def _by_name(stats: Any) -> dict[str, Any]:
    """{feature: FeatureNameStatistics} of one split's statistics (empty for None)."""
    return {feature_name(f): f for f in stats.datasets[0].features} if stats is not None else {}


def _text_reason(stats: Any) -> tuple[str, str] | None:
    """(kind, reason) when a text feature is a date or an identifier (module docstring), else None."""
    ss = stats.string_stats
    rows, distinct = int(ss.common_stats.num_non_missing), int(ss.unique)
    if distinct <= MIN_DISTINCT or ss.common_stats.max_num_values > 1:
        return None
    top = [v.value for v in ss.top_values]
    dates = [v for v in top if _DATE.match(v)]
    if top and len(dates) >= DATE_SHARE * len(top):
        return KIND_DATE, (
            f"date-like text: {distinct:,} distinct values such as {dates[0]!r} in {rows:,} rows; "
            "dates are not used as categories: derive year/month yourself in a module_file"
        )
    if distinct >= DISTINCT_SHARE * rows:
        return KIND_IDENTIFIER, f"identifier: {distinct:,} distinct of {rows:,} rows"
    return None


def _row_number_reason(train: Any, other: Any) -> tuple[str, str] | None:
    """(kind, reason) when an INT feature is a row number over train and eval together, else None."""
    parts = [f for f in (train, other) if f is not None and f.HasField("num_stats")]
    common = [f.num_stats.common_stats for f in parts]
    if any(c.num_missing or c.max_num_values > 1 for c in common):
        return None
    rows = sum(int(c.num_non_missing) for c in common)
    low = min(f.num_stats.min for f in parts)
    high = max(f.num_stats.max for f in parts)
    if rows < ROW_NUMBER_MIN_ROWS or high - low + 1 != rows:
        return None
    train_rows = train.num_stats.common_stats.num_non_missing
    histograms = [h for h in train.num_stats.histograms if h.type == h.STANDARD and h.buckets]
    if not histograms:
        return None
    buckets = histograms[0].buckets
    share, (least, most) = train_rows / len(buckets), ROW_NUMBER_BUCKET_SPREAD
    if not all(least * share <= b.sample_count <= most * share for b in buckets):
        return None
    return KIND_ROW_NUMBER, f"row number: {low:,.0f} .. {high:,.0f}, one per row of {rows:,}"


def identifier_reasons(schema: Any, label: str, train: Any, other: Any) -> dict[str, tuple[str, str]]:
    """{feature: (kind, reason)} of the identifier-like features of ``schema`` (never the label).

    ``train``/``other``: the train and eval statistics (``other`` may be None).
    """
    from tensorflow_metadata.proto.v0 import statistics_pb2

    text = (statistics_pb2.FeatureNameStatistics.STRING, statistics_pb2.FeatureNameStatistics.BYTES)
    train_by, other_by = _by_name(train), _by_name(other)
    out = {}
    for feature in schema.feature:
        stats = train_by.get(feature.name)
        if feature.name == label or stats is None:
            continue
        found = None
        if stats.type in text and stats.HasField("string_stats"):
            found = _text_reason(stats)
        elif stats.type == statistics_pb2.FeatureNameStatistics.INT and stats.HasField("num_stats"):
            found = _row_number_reason(stats, other_by.get(feature.name))
        if found is not None:
            out[feature.name] = found
    return out


def _names_parameter(text: str) -> list[str]:
    """The comma-separated names of a ``features``/``exclude_features`` parameter, stripped."""
    return [n.strip() for n in (text or "").split(",") if n.strip()]


def _check_names(param: str, chosen: list[str], columns: list[str], label: str, where: str | None) -> None:
    """Every name a parameter gives is a column of the data, and not the label."""
    for name in chosen:
        if name == label:
            raise StageError(
                STAGE,
                where,
                f"{param} names the label {label!r}: the label is what the model predicts, "
                f"never one of its features; remove it from {param}",
            )
        if name not in columns:
            raise StageError(
                STAGE,
                where,
                f"{param} names {name!r}, which is not a column of the data; the columns are "
                f"{sorted(columns)}: use the names of the CSV header, comma-separated",
            )


def _set_excluded(feature: Any, kind: str | None, reason: str = "") -> None:
    """Tag ``feature`` as excluded (``kind``, ``reason``), or clear every exclusion tag (``kind`` None)."""
    tag = user_module.EXCLUDED_TAG
    keep = [t for t in feature.annotation.tag if t != tag and not t.startswith(tag + ":")]
    comments = [c for c in feature.annotation.comment if not c.startswith(user_module.EXCLUDED_COMMENT)]
    del feature.annotation.tag[:]
    del feature.annotation.comment[:]
    feature.annotation.tag.extend(keep + ([f"{tag}:{kind}"] if kind else []))
    feature.annotation.comment.extend(comments + ([user_module.EXCLUDED_COMMENT + reason] if kind else []))
    if (
        not feature.annotation.tag
        and not feature.annotation.comment
        and not feature.annotation.extra_metadata
    ):
        feature.ClearField("annotation")


def select_features(
    schema: Any,
    label: str,
    *,
    features: str,
    exclude_features: str,
    identifiers: dict[str, tuple[str, str]],
    where: str | None,
) -> dict[str, str]:
    """Tag the excluded features in ``schema`` (in place); return {feature: reason}.

    ``identifiers``: what the rules found (ignored when ``features`` is given: the user chose).
    """
    columns = [f.name for f in schema.feature]
    chosen, dropped = _names_parameter(features), _names_parameter(exclude_features)
    _check_names("features", chosen, columns, label, where)
    _check_names("exclude_features", dropped, columns, label, where)
    excluded: dict[str, str] = {}
    for feature in schema.feature:
        name = feature.name
        if name == label:
            _set_excluded(feature, None)
            continue
        if name in dropped:
            _set_excluded(feature, KIND_PARAMETER, "exclude_features parameter")
        elif chosen:
            _set_excluded(feature, None if name in chosen else KIND_PARAMETER, "not in features parameter")
        elif name in identifiers:
            _set_excluded(feature, *identifiers[name])
        reason = user_module.excluded_reason(feature)
        if reason is not None:
            excluded[name] = reason
    if excluded and len(excluded) == len(columns) - 1:
        shown = "; ".join(f"{n}: {r}" for n, r in excluded.items())
        raise StageError(
            STAGE,
            where,
            f"every feature but the label {label!r} is excluded ({shown}): nothing to learn from; "
            "name the columns to use in the features parameter (comma-separated), or remove names "
            "from exclude_features",
        )
    return excluded


def run_schema(
    stats_dir: Path,
    output_dir: Path,
    *,
    label: str,
    schema_file: Path | None = None,
    task: str = label_contract.AUTO,
    features: str = "",
    exclude_features: str = "",
) -> SchemaResult:
    """Infer from ``stats_dir``'s train split (or load ``schema_file``); write ``<out>/schema.pbtxt``.

    ``task``: auto, regression or classification; the decision is written into the label's domain.
    ``features``/``exclude_features``: comma-separated columns to use exactly / to leave out
    (module docstring); the exclusions are tags in the schema and ``excluded_features`` metadata.
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
    found = {}
    if source == SOURCE_INFERRED and not _names_parameter(features):
        other = None
        if statistics_path(stats_dir, names.EVAL).is_file():
            other = read_statistics(stats_dir, names.EVAL, STAGE)
        found = identifier_reasons(schema, label, train, other)
    excluded = select_features(
        schema, label, features=features, exclude_features=exclude_features, identifiers=found, where=where
    )
    add_environments(schema, label)
    write_schema(schema, output_dir)
    classes = label_contract.from_schema(schema, label, stage=STAGE, where=where).classes
    return SchemaResult(
        schema=schema, source=source, label=label, task=chosen, classes=classes, excluded=excluded
    )
