"""The run parameters: one vocabulary of name, type, default, choices and a one-line description.

Everything that takes run parameters reads them from here: the pipeline function's signature
and docstring (so the KFP UI's run form shows each description), ``submit.py --help``, and the
one function that coerces and checks values for local and server runs alike (``coerce``).
Standard library only: this module is imported when the pipeline is compiled.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import re
from typing import Any

from components import defaults, names

# Choices of the enumerated parameters (the stages check the same tuples: see tests).
FAIL_ON_CHOICES = ("unsafe", "any", "none")
TUNER_CHOICES = ("random", "bayesian", "hyperband")
TASK_CHOICES = ("auto", "regression", "classification")  # lib/label.py TASKS
EVALUATE_ENGINE_CHOICES = ("auto", "tfma", "native")
MODEL_FAMILY_CHOICES = ("auto", "mlp", "gbt", "linear")  # lib/model_families.py

TRUE_WORDS = ("true", "1", "yes", "on")
FALSE_WORDS = ("false", "0", "no", "off")
_PLAIN_TYPE = {
    str: "text",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    list: "a JSON list",
    dict: "a JSON object",
}
# The compiled pipeline's parameter types (PipelineSpec ParameterType) as Python types.
SPEC_TYPES = {
    "STRING": str,
    "NUMBER_INTEGER": int,
    "NUMBER_DOUBLE": float,
    "BOOLEAN": bool,
    "LIST": list,
    "STRUCT": dict,
}
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_SPLIT_BUCKETS = re.compile(r"^\s*\w+\s*:\s*\d+\s*(,\s*\w+\s*:\s*\d+\s*)*$")


class ParameterError(ValueError):
    """A run parameter that cannot be used; the message is one line naming it."""


@dataclasses.dataclass(frozen=True)
class Parameter:
    """One run parameter. ``default`` None: set by the cluster options (the volume's mount path)."""

    name: str
    type: type
    default: Any
    help: str
    choices: tuple[str, ...] = ()


PARAMETERS: tuple[Parameter, ...] = (
    Parameter("storage_root", str, None, "where the volume is mounted in every pod (the storage root)"),
    Parameter(
        "data",
        str,
        names.DEFAULT_DATA_FILE,
        "input CSV file or folder: relative to the storage root, or a gs:// or s3:// URL",
    ),
    Parameter("label", str, names.LABEL, "the column to predict"),
    Parameter(
        "task",
        str,
        defaults.TASK,
        "auto: text or small integer labels are classes, numbers regression",
        TASK_CHOICES,
    ),
    Parameter(
        "split_buckets", str, defaults.SPLIT_BUCKETS, "hash split into train and eval, as name:buckets"
    ),
    Parameter("schema_file", str, "", "a schema.pbtxt to use instead of inferring one (empty: infer)"),
    Parameter(
        "column_types",
        str,
        "",
        "column types that override inference, e.g. zip:string,age:float (empty: inferred)",
    ),
    Parameter("encoding", str, defaults.ENCODING, "text encoding of the CSV files, e.g. latin-1, utf-16"),
    Parameter(
        "na_values",
        str,
        "",
        "comma-separated cell values read as missing in every column, e.g. NA,? (empty: only empty "
        "cells; NA, N/A, null are missing in number columns anyway)",
    ),
    Parameter(
        "drop_unlabeled", bool, False, "drop rows whose label is empty (false: such rows stop the run)"
    ),
    Parameter(
        "features",
        str,
        "",
        "comma-separated columns the default module uses as features (empty: all but identifier-like ones)",
    ),
    Parameter(
        "exclude_features", str, "", "comma-separated columns the default module leaves out (empty: none)"
    ),
    Parameter("fail_on", str, defaults.FAIL_ON, "which anomalies stop the run at validate", FAIL_ON_CHOICES),
    Parameter(
        "skew_threshold",
        float,
        defaults.SKEW_THRESHOLD,
        "train/eval skew limit (categories: L-infinity; numbers: Jensen-Shannon)",
    ),
    Parameter(
        "drift_threshold",
        float,
        defaults.DRIFT_THRESHOLD,
        "drift limit vs the served model's data (categories: L-infinity; numbers: Jensen-Shannon)",
    ),
    Parameter(
        "module_file",
        str,
        "",
        "user module: a .py path on the volume or a dotted name (empty: derived from the schema)",
    ),
    Parameter("beam_args", str, defaults.BEAM_ARGS, "Beam pipeline options for the data stages"),
    Parameter("tuner", str, defaults.TUNER, "keras-tuner search algorithm", TUNER_CHOICES),
    Parameter("tune_enabled", bool, True, "search hyperparameters (false: the module's defaults)"),
    Parameter("tuner_trials", int, defaults.TUNER_TRIALS, "number of tuner trials"),
    Parameter("tuner_steps", int, defaults.TUNER_STEPS, "training steps per tuner trial"),
    Parameter("hyperparameters", str, "", "JSON object of hyperparameters to fix (empty: none)"),
    Parameter("batch_size", int, defaults.BATCH_SIZE, "training batch size"),
    Parameter("train_steps", int, defaults.TRAIN_STEPS, "training steps of the final model"),
    Parameter("eval_steps", int, defaults.EVAL_STEPS, "validation steps during training"),
    Parameter(
        "validation_fraction",
        float,
        0.05,
        "share of the train split held out (by a hash of each row; at least 50 rows) for early stopping "
        "and the tuner's objective; the eval split is never used for either",
    ),
    Parameter(
        "max_epochs",
        int,
        50,
        "most epochs of a fit (train, and each tuner trial); early stopping usually ends it sooner",
    ),
    Parameter(
        "model_family",
        str,
        defaults.MODEL_FAMILY,
        "default module's model: mlp, gbt (gradient-boosted trees), linear, or auto (fit all three, keep "
        "the best on the validation slice)",
        MODEL_FAMILY_CHOICES,
    ),
    Parameter(
        "model_name",
        str,
        "",
        "name of the served model, serving/<name>/<version> (empty: the data's file or folder name)",
    ),
    Parameter("slice_feature", str, "", "feature whose values evaluate slices by (empty: none)"),
    Parameter(
        "naive_margin",
        float,
        defaults.NAIVE_MARGIN,
        "bless only if the error is this much below a naive predictor's (median / majority class)",
    ),
    Parameter("mae_threshold", float, defaults.MAE_THRESHOLD, "bless only if MAE <= this (negative: off)"),
    Parameter("min_accuracy", float, defaults.MIN_ACCURACY, "classification: bless only if accuracy >= this"),
    Parameter(
        "max_relative_degradation",
        float,
        defaults.MAX_RELATIVE_DEGRADATION,
        "bless only if at most this much worse than the baseline (negative: off)",
    ),
    Parameter("thresholds_file", str, "", "JSON thresholds file overriding the gates above (empty: none)"),
    Parameter(
        "min_eval_examples",
        int,
        defaults.MIN_EVAL_EXAMPLES,
        "bless only if evaluated on at least this many eval examples (0: no minimum)",
    ),
    Parameter(
        "min_train_rows",
        int,
        defaults.MIN_TRAIN_ROWS,
        "bless only if trained on at least this many rows (0: no minimum)",
    ),
    Parameter(
        "evaluate_engine",
        str,
        defaults.EVALUATE_ENGINE,
        "auto: native when Beam runs locally, else TFMA's Beam pipeline",
        EVALUATE_ENGINE_CHOICES,
    ),
    Parameter("serving_root", str, names.SERVING_DIR, "TF Serving model base, relative to the storage root"),
    Parameter(
        "lock_timeout",
        float,
        600.0,
        "seconds push and resolve_baseline wait for the registry lock another run holds (0: no limit)",
    ),
    Parameter(
        "mlflow_register_model",
        bool,
        False,
        "with MLFLOW_TRACKING_URI set: a BLESSED push also registers an MLflow model version",
    ),
)
BY_NAME: dict[str, Parameter] = {p.name: p for p in PARAMETERS}


def plain_type(kind: type) -> str:
    """A type as users speak of it ("an integer"), not as a proto does (NUMBER_INTEGER)."""
    return _PLAIN_TYPE[kind]


def unknown_name_message(name: str, vocabulary: dict[str, Parameter] | None = None) -> str:
    """``unknown parameter 'x'`` with the closest valid name, if one is close."""
    vocabulary = BY_NAME if vocabulary is None else vocabulary
    close = difflib.get_close_matches(name, list(vocabulary), n=1)
    valid = ", ".join(f"{p.name} ({plain_type(p.type)})" for p in vocabulary.values()) or "none"
    hint = f"; did you mean {close[0]!r}?" if close else f" (valid: {valid})"
    return f"unknown parameter {name!r}{hint}"


def for_compiled(declared_types: dict[str, str]) -> dict[str, Parameter]:
    """The vocabulary of a compiled pipeline: ours where the name and type match, else plain."""
    out = {}
    for name, spec_type in declared_types.items():
        kind = SPEC_TYPES.get(spec_type)
        if kind is None:
            raise ParameterError(f"parameter {name!r} has an unsupported type {spec_type}")
        ours = BY_NAME.get(name)
        out[name] = ours if ours is not None and ours.type is kind else Parameter(name, kind, None, "")
    return out


def convert(parameter: Parameter, value: Any) -> Any:  # noqa: ANN401
    """One value to the parameter's type (strings from a command line are parsed)."""
    kind, name = parameter.type, parameter.name
    text = value.strip() if isinstance(value, str) else None
    bad = ParameterError(f"parameter {name!r} must be {plain_type(kind)}, got {value!r}")
    if kind is str:
        if not isinstance(value, str):
            raise bad
        converted: Any = value
    elif kind in (list, dict):
        try:
            converted = json.loads(text) if text is not None else value
        except ValueError:
            raise bad from None
        if not isinstance(converted, kind):
            raise bad
    elif kind is bool:
        if isinstance(value, bool):
            converted = value
        elif text is not None and text.lower() in TRUE_WORDS + FALSE_WORDS:
            converted = text.lower() in TRUE_WORDS
        else:
            raise bad
    elif kind is int:
        if isinstance(value, bool):
            raise bad
        try:
            converted = int(text) if text is not None else value
        except ValueError:
            raise bad from None
        if not isinstance(converted, int):
            raise bad
    else:  # float
        if isinstance(value, bool):
            raise bad
        try:
            converted = float(text) if text is not None else float(value)
        except (TypeError, ValueError):
            raise bad from None
        if not math.isfinite(converted):
            raise ParameterError(f"parameter {name!r} must be a finite number, got {value!r}")
    _check_value(parameter, converted)
    return converted


def _check_value(parameter: Parameter, value: Any) -> None:  # noqa: ANN401
    """What a value must be beyond its type: a choice, JSON, a name, a positive count."""
    name = parameter.name
    if parameter.choices and value not in parameter.choices:
        close = difflib.get_close_matches(str(value), parameter.choices, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ParameterError(
            f"parameter {name!r} must be one of {', '.join(parameter.choices)}; got {value!r}{hint}"
        )
    if name in ("tuner_trials", "tuner_steps", "batch_size", "train_steps", "eval_steps") and value <= 0:
        raise ParameterError(f"parameter {name!r} must be a positive integer, got {value}")
    if name == "max_epochs" and value <= 0:
        raise ParameterError(f"parameter {name!r} must be a positive integer, got {value}")
    if name == "validation_fraction" and not 0 < value <= 0.5:
        raise ParameterError(f"parameter {name!r} must be above 0 and at most 0.5, got {value}")
    if name in ("min_eval_examples", "min_train_rows") and value < 0:
        raise ParameterError(f"parameter {name!r} must be 0 (no minimum) or more, got {value}")
    if name == "hyperparameters" and value.strip():
        try:
            parsed = json.loads(value)
        except ValueError as e:
            raise ParameterError(f"parameter 'hyperparameters' is not valid JSON ({e}): {value!r}") from None
        if not isinstance(parsed, dict):
            raise ParameterError(f"parameter 'hyperparameters' must be a JSON object, got {value!r}")
    if name == "model_name" and value and not _MODEL_NAME.match(value):
        raise ParameterError(
            f"parameter 'model_name' must be a plain name (letters, digits, '.', '_', '-'), got {value!r}"
        )
    if name == "encoding" and value.strip():
        import codecs

        try:
            codecs.lookup(value.strip())
        except LookupError:
            raise ParameterError(
                f"parameter 'encoding' names no known text encoding: {value!r} (e.g. utf-8, latin-1, utf-16)"
            ) from None
    if name == "split_buckets" and not _SPLIT_BUCKETS.match(value):
        raise ParameterError(f"parameter 'split_buckets' must look like 'train:2,eval:1', got {value!r}")


def model_name_for(model_name: str, data: str) -> str:
    """The model name a run uses: ``model_name`` when given, else one derived from ``data``.

    The data's last path or URL segment without ``.csv`` (``data/insurance.csv`` -> ``insurance``,
    ``s3://bucket/tables/claims/`` -> ``claims``), made a plain name: characters other than
    letters, digits, ``.``, ``_`` and ``-`` become ``_``, at most 63 of them. So a CSV of one's own
    never lands in another table's registry entries by accident; every stage that needs the name
    (example_gen, validate, resolve_baseline, push) derives the same one from the same parameters.
    """
    if model_name:
        return model_name
    segment = data.rstrip("/").rsplit("/", 1)[-1]
    if segment.lower().endswith(".csv"):
        segment = segment[: -len(".csv")]
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", segment).lstrip("._-")[:63]
    return safe or "model"


def coerce(raw: dict[str, Any], vocabulary: dict[str, Parameter] | None = None) -> dict[str, Any]:
    """Check names and convert values to their types; every problem reported in one line.

    Local and server runs both call this (``vocabulary``: ours, or a compiled pipeline's).
    """
    vocabulary = BY_NAME if vocabulary is None else vocabulary
    values: dict[str, Any] = {}
    problems = []
    for name, value in raw.items():
        if name not in vocabulary:
            problems.append(unknown_name_message(name, vocabulary))
            continue
        try:
            values[name] = convert(vocabulary[name], value)
        except ParameterError as e:
            problems.append(str(e))
    if problems:
        raise ParameterError("; ".join(problems))
    return values


def docstring(summary: str) -> str:
    """A Google-style docstring whose ``Args`` KFP copies into each input's description."""
    lines = [summary, "", "Args:"]
    lines += [
        f"    {p.name}: {p.help}" + (f" ({' | '.join(p.choices)})" if p.choices else "") for p in PARAMETERS
    ]
    return "\n".join(lines)


def help_table(storage_default: str) -> str:
    """Every parameter with its type, default, choices and description, for ``submit.py --help``."""
    rows = []
    for p in PARAMETERS:
        default = storage_default if p.default is None else p.default
        shown = json.dumps(default) if isinstance(default, str) and p.default is not None else default
        shown = str(shown).lower() if isinstance(shown, bool) else shown
        choices = f"; one of {' | '.join(p.choices)}" if p.choices else ""
        rows.append(f"  {p.name} ({plain_type(p.type)}, default {shown}{choices})\n      {p.help}")
    return "\n".join(rows)
