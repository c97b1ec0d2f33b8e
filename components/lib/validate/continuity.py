"""Schema continuity: this run's schema and statistics against the version of the model being served.

Retraining on new data that changed must not silently replace the served model with one that
reads other data. When a version of ``model_name`` is served (``served.served_entry``), validate
compares, per column, this run's schema (its types and domains) and statistics (train and eval)
with the schema that version was trained with (``served.served_schema``) and its training
statistics (``drift.served_statistics``, when on the volume). Each change is a
:class:`~components.lib.validate.verdict.Finding` with ``served=True``, its severity, whether it
stops the run and the fix; they go through the same verdict as TFDV's anomalies:

| change since the served version                                   | severity | stops the run            |
|-------------------------------------------------------------------|----------|--------------------------|
| a column the served model reads is gone                           | ERROR    | always (whatever fail_on) |
| text where numbers were (INT/FLOAT -> BYTES), or numbers where     | ERROR    | always (whatever fail_on) |
| text was (BYTES -> INT/FLOAT)                                     |          |                          |
| INT -> FLOAT (widened) or FLOAT -> INT                            | WARNING  | under fail_on=any        |
| missing values in a column that had none in the served training   | WARNING  | under fail_on=any        |
| string values outside the served schema's domain (new categories) | WARNING  | under fail_on=any        |
| numbers outside the served training data's min .. max             | INFO     | never                    |
| a new column                                                      | INFO     | never                    |
| a column the served model did not use (excluded) gone or retyped  | INFO     | never                    |

Why these: ExampleGen keeps a served INT column INT while its values are integral, so a type
that still changed did so in the data (or by a pin); INT -> FLOAT only means the baseline cannot
parse the new examples (evaluate then judges without the baseline gate and says so). Missing
cells are imputed by the default module, new categories go to the out-of-vocabulary bucket and
new ranges are learnt by the candidate: worth a look, not a stop. A gone column or text where
numbers were means the served model cannot read this data, and the candidate, pushed under the
same model name, would break every client of the served one: that is not a data-quality policy
(``fail_on``) but a different model, so it stops even under ``fail_on=none``; the message names
the column, the served version and the fixes (the export, ``column_types``/``schema_file``, or
another ``model_name``). The label is not read by the served model: its gone case is validate's
own check, its type change a WARNING (evaluate compares tasks and classes).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from components.errors import StageError
from components.lib import registry, served
from components.lib.statistics_io import feature_name
from components.lib.user_module import excluded_reason
from components.lib.validate.verdict import ERROR, INFO, STAGE, WARNING, Finding

# Finding.reasons of the changes (their own names: they are not TFDV's anomaly types).
GONE, TEXT_NUMBER = "SERVED_COLUMN_GONE", "SERVED_TYPE_INCOMPATIBLE"
RETYPED, MISSING_UP = "SERVED_TYPE_NUMERIC_CHANGE", "SERVED_MISSING_VALUES_NEW"
NEW_CATEGORIES, RANGE, NEW_COLUMN = "SERVED_NEW_CATEGORIES", "SERVED_RANGE_CHANGED", "SERVED_COLUMN_NEW"
UNUSED = "SERVED_UNUSED_COLUMN_CHANGED"
NUMERIC = ("INT", "FLOAT")
PIN = {"INT": "int", "FLOAT": "float", "BYTES": "string"}  # column_types spelling of a schema type
MAX_SHOWN = 5  # values quoted in a finding (all counted)
SERVING = "SERVING"


@dataclasses.dataclass
class ServedSchema:
    """The served version's training schema, or None and why the data was not compared with it."""

    schema: Any  # schema_pb2.Schema | None
    model_name: str = ""
    version: int | None = None
    source: str = ""  # the schema file, or what the types were read from
    note: str = ""  # why there was no comparison (empty when compared)

    @property
    def compared(self) -> bool:
        return self.schema is not None

    @property
    def title(self) -> str:
        """``model insurance v3``: how the report and the messages name the served version."""
        return f"model {self.model_name} v{self.version}"


def not_compared(why: str, model_name: str = "", version: int | None = None) -> ServedSchema:
    return ServedSchema(None, model_name, version, note=f"not compared: {why}")


def load_served_schema(storage_root: str, model_name: str) -> ServedSchema:
    """The served version's schema (``served.served_schema``), or why there is nothing to compare.

    A damaged registry or schema file is not this stage's to stop on (resolve-baseline stops the
    run on the registry); it becomes the reason the comparison was not made.
    """
    if not storage_root or not model_name:
        return not_compared("no storage root or model name was given")
    try:
        schema, entry = served.served_schema(storage_root, model_name, STAGE)
    except StageError as e:
        return not_compared(f"the served version's schema cannot be read: {e}", model_name)
    if entry is None:
        return not_compared(f"no version of model {model_name!r} is being served", model_name)
    version = entry["version"]
    if schema is None:
        return not_compared(f"{model_name} v{version} was pushed without a schema", model_name, version)
    path = served.schema_file_of_entry(storage_root, entry)
    inputs = registry.entry_path(storage_root, entry)
    source = str(path) if path is not None else f"the inputs of {inputs} (types only)"
    return ServedSchema(schema, model_name, version, source)


# --- Reading schemas and statistics. ----------------------------------------------------------------


def _by_name(stats: Any) -> dict[str, Any]:
    return {feature_name(f): f for f in stats.datasets[0].features} if stats is not None else {}


def _common(feature_stats: Any) -> Any:
    for kind in ("num_stats", "string_stats", "bytes_stats", "struct_stats"):
        if feature_stats.HasField(kind):
            return getattr(feature_stats, kind).common_stats
    return None


def _missing(stats: Any, name: str) -> tuple[int, int]:
    """(rows missing ``name``, rows) of one split's statistics; a feature absent: all missing."""
    rows = int(stats.datasets[0].num_examples)
    f = _by_name(stats).get(name)
    common = _common(f) if f is not None else None
    if common is None:
        return rows, rows
    return int(common.num_missing), rows


def _range(stats_list: list[Any], name: str) -> tuple[float, float] | None:
    """(min, max) of a numeric feature over the given splits' statistics (None: no numbers)."""
    lows, highs = [], []
    for stats in stats_list:
        f = _by_name(stats).get(name)
        if f is not None and f.HasField("num_stats") and _common(f).num_non_missing:
            lows.append(f.num_stats.min)
            highs.append(f.num_stats.max)
    return (min(lows), max(highs)) if lows else None


def _domain(schema: Any, feature: Any) -> set[str] | None:
    if feature.HasField("string_domain"):
        return set(feature.string_domain.value)
    if feature.HasField("domain"):
        return next((set(d.value) for d in schema.string_domain if d.name == feature.domain), None)
    return None


def _values(schema: Any, feature: Any, stats_list: list[Any]) -> set[str]:
    """The string values of a feature in this run: its schema domain and the statistics' values."""
    out = set(_domain(schema, feature) or ())
    for stats in stats_list:
        f = _by_name(stats).get(feature.name)
        if f is not None and f.HasField("string_stats"):
            ss = f.string_stats
            out |= {b.label for b in ss.rank_histogram.buckets} | {v.value for v in ss.top_values}
    return out


def _reads(feature: Any, label: str) -> bool:
    """Whether the served model uses ``feature`` of a request.

    Not the label, nor a feature outside the SERVING environment, nor one the schema stage
    excluded from the model (``user_module.excluded_reason``: an id, a date as text, ...).
    """
    return (
        feature.name != label
        and SERVING not in feature.not_in_environment
        and excluded_reason(feature) is None
    )


def _fmt(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.4g}"


# --- The changes. -------------------------------------------------------------------------------------


def _finding(name: str, severity: str, reason: str, short: str, description: str, fix: str) -> Finding:
    stops = severity == ERROR
    return Finding(
        name, severity, short, description, [reason], unsafe=stops, served=True, stops=stops, fix=fix
    )


def incompatible_type(name: str, was: str, now: str, who: str) -> Finding:
    """Text where numbers were, or numbers where text was: the served model cannot read the data."""
    return _finding(
        name,
        ERROR,
        TEXT_NUMBER,
        f"{was} in the served model, {now} now",
        f"column {name!r} was {was} in the served {who} and is {now} now: "
        "the served model cannot read this data",
        f"fix the export, pin the type with column_types={name}:{PIN[was]} or schema_file, "
        "or train a new model with another model_name",
    )


def gone(name: str, was: str, who: str) -> Finding:
    return _finding(
        name,
        ERROR,
        GONE,
        "column gone",
        f"column {name!r} ({was}) was read by the served {who} and is not in this data: "
        "the served model cannot read this data",
        "restore the column in the export, or train a new model without it with another model_name",
    )


def unused_change(name: str, what: str, who: str) -> Finding:
    """A column the served model did not use (excluded from its features) is gone or retyped."""
    return _finding(
        name,
        INFO,
        UNUSED,
        what,
        f"column {name!r} {what} since the served {who}, which did not use it (excluded from its features)",
        "nothing to do",
    )


def label_retype(name: str, was: str, now: str, who: str) -> Finding:
    """The label's type changed: no request carries it, but the task may have changed with it."""
    return _finding(
        name,
        WARNING,
        RETYPED,
        f"{was} in the served model, {now} now",
        f"the label {name!r} was {was} in the served {who} and is {now} now: the served model does not "
        "read the label, but evaluate refuses a baseline of another task or other classes",
        f"if the label should keep its type, fix the export or pin column_types={name}:{PIN[was]}; "
        "if this is another prediction task, train it with another model_name",
    )


def numeric_retype(name: str, was: str, now: str, who: str) -> Finding:
    """INT <-> FLOAT: the data still fits a number, but the baseline's signature cannot parse it."""
    how = "widened" if (was, now) == ("INT", "FLOAT") else "changed"
    effect = (
        "the served model cannot parse it, so evaluate judges the candidate without the baseline "
        f"gate, and once the candidate is pushed clients must send {name!r} as {PIN[now]}"
    )
    if how == "widened":
        fix = (
            f"nothing, if {name!r} really holds fractions now; if its values should be whole numbers, "
            f"fix the export (a value like 31.5 made it FLOAT) or pin column_types={name}:int"
        )
    else:
        fix = f"keep the served type with column_types={name}:float (a pin or schema_file made it INT)"
    return _finding(
        name,
        WARNING,
        RETYPED,
        f"{was} in the served model, {now} now",
        f"column {name!r} was {was} in the served {who} and is {now} now (the type {how}): {effect}",
        fix,
    )


def type_changes(current: Any, served_schema: ServedSchema, label: str) -> list[Finding]:
    """Gone columns, type changes and new columns, from the two schemas."""
    now = {f.name: f for f in current.feature}
    who = served_schema.title
    out: list[Finding] = []
    for old in served_schema.schema.feature:
        was = served.type_name(old)
        new = now.get(old.name)
        reads = _reads(old, label)
        if new is None:
            if reads:
                out.append(gone(old.name, was, who))
            elif old.name != label:  # a gone label is validate's own check
                out.append(unused_change(old.name, "is gone", who))
            continue
        is_ = served.type_name(new)
        if was == is_ or was not in served.TYPE_NAMES or is_ not in served.TYPE_NAMES:
            continue
        if old.name == label:
            out.append(label_retype(old.name, was, is_, who))
        elif not reads:
            out.append(unused_change(old.name, f"was {was} and is {is_} now", who))
        elif (was in NUMERIC) != (is_ in NUMERIC):
            out.append(incompatible_type(old.name, was, is_, who))
        else:
            out.append(numeric_retype(old.name, was, is_, who))
    known = {f.name for f in served_schema.schema.feature}
    for name in sorted(set(now) - known - {label}):
        out.append(
            _finding(
                name,
                INFO,
                NEW_COLUMN,
                "new column",
                f"column {name!r} is new since the served {who}: the served model ignores it, "
                "the candidate may use it",
                "nothing to do: the module decides whether the candidate uses it",
            )
        )
    return out


def value_changes(
    current: Any, splits: list[Any], served_schema: ServedSchema, served_stats: Any
) -> list[Finding]:
    """New categories, ranges and missing values of the columns both schemas have, alike.

    Categories against the served schema's domains; ranges and missing values against the served
    training statistics, when they are on the volume (``served_stats``).
    """
    old = {f.name: f for f in served_schema.schema.feature}
    who = served_schema.title
    out: list[Finding] = []
    for feature in current.feature:
        before = old.get(feature.name)
        if before is None or served.type_name(before) != served.type_name(feature):
            continue  # new, or retyped: reported by type_changes
        out += _new_categories(current, feature, splits, served_schema.schema, before, who)
        if served_stats is not None:
            out += _missing_up(feature.name, splits, served_stats, who)
            out += _range_change(feature.name, splits, served_stats, who)
    return out


def _new_categories(
    current: Any, feature: Any, splits: list[Any], old_schema: Any, before: Any, who: str
) -> list[Finding]:
    domain = _domain(old_schema, before)
    if domain is None or served.type_name(feature) != "BYTES":
        return []
    new = sorted(_values(current, feature, splits) - domain)
    if not new:
        return []
    shown = ", ".join(repr(v) for v in new[:MAX_SHOWN]) + (
        f" and {len(new) - MAX_SHOWN} more" if len(new) > MAX_SHOWN else ""
    )
    return [
        _finding(
            feature.name,
            WARNING,
            NEW_CATEGORIES,
            f"{len(new)} categor{'y' if len(new) == 1 else 'ies'} the served model does not know",
            f"column {feature.name!r} has values outside the served {who}'s domain: {shown}",
            "the served model maps them to its out-of-vocabulary bucket and the candidate learns them; "
            "if they are typos or a new spelling, fix the export",
        )
    ]


def _missing_up(name: str, splits: list[Any], served_stats: Any, who: str) -> list[Finding]:
    before, _ = _missing(served_stats, name)
    counts = [_missing(s, name) for s in splits]
    missing, rows = sum(m for m, _ in counts), sum(r for _, r in counts)
    if before or not missing or missing == rows:
        return []  # had missing values already, has none, or is gone entirely (TFDV's finding)
    return [
        _finding(
            name,
            WARNING,
            MISSING_UP,
            f"{missing:,} missing values, none in the served model's training data",
            f"column {name!r} had no missing values in the training data of the served {who} and has "
            f"{missing:,} of {rows:,} ({missing / max(rows, 1):.1%}) now",
            "the default module imputes them; a user module must handle them too; if the empty cells "
            "are an export error, fix the export",
        )
    ]


def _range_change(name: str, splits: list[Any], served_stats: Any, who: str) -> list[Finding]:
    old, new = _range([served_stats], name), _range(splits, name)
    if old is None or new is None or (new[0] >= old[0] and new[1] <= old[1]):
        return []
    return [
        _finding(
            name,
            INFO,
            RANGE,
            "values outside the served model's training range",
            f"column {name!r} ranges {_fmt(new[0])} .. {_fmt(new[1])} now; the served {who} was trained on "
            f"{_fmt(old[0])} .. {_fmt(old[1])}",
            "nothing, if the data really moved: the candidate learns the new range, the served model "
            "extrapolates there; otherwise check the export (units, a shifted column)",
        )
    ]


def changes(
    current: Any, train: Any, eval_: Any, served_schema: ServedSchema, served_stats: Any, label: str
) -> list[Finding]:
    """Every change of this run's data since the served version, stops first (empty: not compared)."""
    if not served_schema.compared:
        return []
    found = type_changes(current, served_schema, label)
    found += value_changes(current, [train, eval_], served_schema, served_stats)
    order = {ERROR: 0, WARNING: 1, INFO: 2}
    return sorted(found, key=lambda f: order.get(f.severity, 3))
