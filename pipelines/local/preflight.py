"""Preflight: every run parameter and the storage root checked before a local run writes anything.

``run_locally`` calls ``check`` first: before the storage folder, the copy of the data, the
lineage store or the compiled YAML exist. A rejected command leaves nothing behind and is one
``[stage] file: problem`` line, ``stage`` being the one that would have failed (or ``submit``).

The checks are the stages' own, called early, so a local run and a cluster run refuse the same
values with the same words: the parameter vocabulary (``parameters.coerce``: types, choices, JSON,
the model name; ``lock_timeout`` not negative), paths kept on the volume (``storage.resolve``:
``data``, ``schema_file``, ``module_file``, ``thresholds_file``, ``serving_root``), the user module
(``user_module``: it imports, and defines the functions the stages will call), the schema and
thresholds files (their readers), the registry index (``registry.read_index``: a damaged one stops
resolve-baseline), the slice feature (a column of the data's header), and the storage root itself
(exists or can be made, is a directory, is writable, has room for the run). On a cluster the
submitting machine cannot see the volume, so the stages enforce the same checks themselves at run
time.
"""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path
from typing import Any

from components import names
from components.errors import StageError
from components.parameters import PARAMETERS, ParameterError, coerce, model_name_for

# Room a run needs on the storage root: a run on 100,000 rows (a 4.0 MB CSV) wrote the CSV's
# copy (3.9 MB), 6.8 MB of artifacts and < 1 MB else (2.8x the input); 4x the input plus a
# fixed 100 MiB (SavedModels ~0.4 MB each, logs, lineage) leaves headroom without refusing a
# run that would fit.
MIN_FREE_BYTES = 100 * 2**20
FREE_PER_INPUT_BYTE = 4


class PreflightError(ValueError):
    """A run that must not start; the message is one ``[stage] file: problem`` line."""


def check(
    storage: Path, data: Path | None, raw: dict[str, Any], *, runner: str = "inprocess"
) -> dict[str, Any]:
    """The run parameters converted to their types, or a PreflightError; writes nothing.

    ``storage``: the storage root as given; ``data``: ``--data`` (None: a named ``data``
    parameter, or generated rows); ``raw``: ``--param`` values.
    """
    try:
        values = coerce(raw)
    except ParameterError as e:
        raise PreflightError(f"[submit] {e}") from None
    p = {q.name: q.default for q in PARAMETERS} | values
    _lock_timeout(p["lock_timeout"])
    root = Path(os.path.abspath(storage))
    _storage_root(storage)
    data_name = _data_name(data, p, named="data" in values)
    derived = not p["model_name"]
    p["model_name"] = model_name_for(p["model_name"], data_name)
    try:
        input_bytes, header, rows = _data(root, data, p, named="data" in values)
        _paths(root, p)
        _module(root, p)
        _bounds(p, values, header, rows)
        if (root / names.REGISTRY_INDEX).exists():
            from components.lib import registry

            registry.read_index(root, names.STAGE_RESOLVE)
            if header is not None:
                _model_name_fits(root, p, header, data_name, derived=derived)
    except StageError as e:
        raise PreflightError(str(e)) from None
    _layout(root, p, named="data" in values)
    _free_space(storage, input_bytes)
    if runner == "backend":
        from pipelines.backend.runner import available

        reason = available()
        if reason:
            raise PreflightError(f"[submit] --runner backend: the KFP backend emulator {reason}")
    return values


def _lock_timeout(seconds: float) -> None:
    """``lock_timeout`` is 0 (wait without limit) or more seconds (``registry_lock``, at push)."""
    from components.lib import registry_lock

    try:
        registry_lock.check_timeout(seconds, names.STAGE_PUSH)
    except StageError as e:
        raise PreflightError(f"[submit] {e.problem}") from None


def _nearest_existing(path: Path) -> Path:
    return next(p for p in (path, *path.parents) if p.exists())


def _storage_root(storage: Path) -> None:
    """Exists or can be made, is a directory, and this user may write in it."""
    if storage.exists() and not storage.is_dir():
        raise PreflightError(f"[submit] {storage}: the storage root is not a directory")
    probe = _nearest_existing(Path(os.path.abspath(storage)))
    if not probe.is_dir():
        raise PreflightError(f"[submit] {storage}: the storage root cannot be made ({probe} is a file)")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise PreflightError(f"[submit] {storage}: the storage root is not writable")


def _data(
    root: Path, data: Path | None, p: dict[str, Any], *, named: bool
) -> tuple[int, list[str] | None, tuple[int, bool, str] | None]:
    """The input's size in bytes, header and rows, once it is known to exist and to hold the slice feature.

    Rows: (count, exact?, where) of local CSV files (``bounds.csv_rows``), None if unknown.

    Named by the ``data`` parameter, it must be on the volume already or be a gs:// or s3://
    URL (listed and its header read here, with ``beam_args``' options); ``--data`` is copied.
    """
    from components.lib import fs, storage

    if named:
        source = storage.resolve_input(root, p["data"], names.STAGE_EXAMPLE_GEN, "data")
        if fs.is_url(source):
            fs.configure(p["beam_args"], names.STAGE_EXAMPLE_GEN)
        elif not Path(source).exists():
            raise StageError(names.STAGE_EXAMPLE_GEN, str(source), "input data does not exist")
    elif data is not None:
        source = Path(os.path.abspath(data))
        if not source.exists():
            raise PreflightError(f"[submit] {source}: input data does not exist")
    else:
        source = root / names.DEFAULT_DATA_FILE  # generated with names.COLUMNS if absent
        if not source.exists():
            _columns_named(names.COLUMNS, p, f"{source} (generated)")
            return 0, list(names.COLUMNS), None
    from components.lib.example_gen import list_csv_files

    files = list_csv_files(source)
    header, where = _header(files[0])
    if header is not None:
        _columns_named(header, p, where)
    rows = None
    if not fs.is_url(str(files[0])):
        from components.lib.bounds import csv_rows

        rows = (*csv_rows([Path(f) for f in files]), str(source))
    return fs.total_size(files, names.STAGE_EXAMPLE_GEN), header, rows


def _header(first: str | Path) -> tuple[list[str] | None, str]:
    """The first CSV's header (None when there is none to read: ExampleGen says why)."""
    import io

    from components.lib import fs

    try:
        with fs.open_binary(first, names.STAGE_EXAMPLE_GEN) as raw:
            text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
            return next(csv.reader(text), None), str(first)
    except (OSError, UnicodeDecodeError, csv.Error):
        return None, str(first)


def _columns_named(header: Any, p: dict[str, Any], where: str) -> None:  # noqa: ANN401
    """The slice feature is a column of the data (evaluate would say so only after training).

    The label is example_gen's to check: it is the first stage and answers within a second.
    """
    columns = [c.strip() for c in header]
    if p["slice_feature"] and p["slice_feature"] not in columns:
        raise StageError(
            names.STAGE_EVALUATE,
            where,
            f"slice feature {p['slice_feature']!r} is not a column of the data: {columns}",
        )


def _data_name(data: Path | None, p: dict[str, Any], *, named: bool) -> str:
    """What the run's ``data`` parameter will be (``--data`` is copied under ``data/``, name kept)."""
    if named or data is None:
        return str(p["data"])
    return f"{names.DATA_DIR}/{Path(os.path.abspath(data)).name}"


def _model_name_fits(
    root: Path, p: dict[str, Any], header: list[str], data_name: str, *, derived: bool
) -> None:
    """The model name's served version is a model of this table: same label, task, mostly the same columns.

    A model name is a registry key; a run whose data predicts another label, or shares under half
    of the served model's columns, would be judged against another table's model after all the
    training (evaluate refuses such a baseline). Smaller changes — a column more or less, a type
    that widened — are validate's (schema continuity), not a reason to refuse the name.
    """
    from components.lib import registry, served
    from components.lib.label import LabelInfo
    from components.lib.saved_model import label_info_path

    model = p["model_name"]
    schema, entry = served.served_schema(root, model, names.STAGE_RESOLVE)  # one registry read
    if entry is None:
        return
    version_dir = registry.entry_path(root, entry)
    if version_dir is None:
        return
    info_file = label_info_path(version_dir)
    info = LabelInfo.read(info_file, names.STAGE_RESOLVE) if info_file.is_file() else None
    columns = set(c.strip() for c in header)
    problems = []
    if info is not None and info.name != p["label"]:
        problems.append(f"it predicts {info.name!r}, this run {p['label']!r}")
    elif info is not None and p["task"] != "auto" and p["task"] != info.task:
        problems.append(f"it is a {info.task} model, this run asks for {p['task']}")
    if schema is not None:
        served_columns = {f.name for f in schema.feature}
        shared = served_columns & columns
        if len(shared) * 2 < len(served_columns):
            problems.append(
                f"this data shares {len(shared)} of its {len(served_columns)} columns "
                f"({sorted(served_columns)[:8]}{' …' if len(served_columns) > 8 else ''})"
            )
    if problems:
        how = "derived from the data's name" if derived else "given"
        raise PreflightError(
            f"[submit] {data_name}: model name {model!r} ({how}) belongs to another table: its served "
            f"version {entry['version']} — {'; '.join(problems)}. Give this table its own name "
            f"(--param model_name=<name>), or move {p['serving_root']}/{model}/ and its registry entries away"
        )


def _paths(root: Path, p: dict[str, Any]) -> None:
    """The schema and thresholds files read, the serving root on the volume."""
    from components.lib import registry, storage
    from components.lib.evaluate.gating import load_thresholds
    from components.lib.schema_io import read_schema

    if p["schema_file"]:
        path = storage.resolve(root, p["schema_file"], names.STAGE_SCHEMA, "schema_file")
        read_schema(path, names.STAGE_SCHEMA)
    load_thresholds(p["mae_threshold"], p["max_relative_degradation"], p["thresholds_file"], str(root))
    registry.model_dir(root, p["serving_root"], p["model_name"], names.STAGE_PUSH)


def _module(root: Path, p: dict[str, Any]) -> None:
    """A user module imports and defines what transform, tune and train will call."""
    if not p["module_file"].strip():
        return  # the built-in module
    from components.lib import training, user_module

    module = user_module.load_user_module(p["module_file"], str(root), names.STAGE_TRANSFORM)
    user_module.require(module, user_module.PREPROCESSING_FN, names.STAGE_TRANSFORM)
    if p["tune_enabled"]:
        user_module.require(module, user_module.HYPERPARAMETER_SPACE, names.STAGE_TUNE)
    else:
        user_module.require(module, user_module.DEFAULT_HYPERPARAMETERS, names.STAGE_TUNE)
    user_module.require(module, user_module.BUILD_MODEL, names.STAGE_TRAIN)
    training.label_functions(module, names.STAGE_TRAIN)


def _bounds(
    p: dict[str, Any], given: dict[str, Any], header: list[str] | None, rows: tuple[int, bool, str] | None
) -> None:
    """Steps, trials, the batch's memory and rows, the table's width, fixed hyperparameters (``bounds``)."""
    import json

    from components.lib import bounds

    for name in bounds.COUNTS:
        bounds.check_count(name, p[name])
    batch_stage = names.STAGE_TUNE if p["tune_enabled"] else names.STAGE_TRAIN
    bounds.check_batch_memory(p["batch_size"], len(header or names.COLUMNS), batch_stage)
    if rows is not None and "batch_size" in given:
        bounds.check_batch_rows(p["batch_size"], rows[0], rows[1], batch_stage, rows[2])
    fixed = json.loads(p["hyperparameters"]) if p["hyperparameters"].strip() else {}
    built_in = not p["module_file"].strip()
    if built_in and header is not None:  # a wide table: the built-in transform's graphs
        columns = bounds.feature_columns(header, p["label"], p["features"], p["exclude_features"])
        bounds.check_transform_memory(columns, names.STAGE_TRANSFORM)
    # A user module's space: tune checks it.
    kinds: dict[str, str | None] | None = dict(bounds.BUILT_IN) if built_in else None
    module = "the built-in module" if built_in else "the module"
    bounds.check_hyperparameters(fixed, kinds, names.STAGE_TUNE, module)


# What the run writes where (the storage root's folders) and the stage that would fail on it.
_WRITES = {
    names.DATA_DIR: "at the copy of the data, before the first stage",
    names.METADATA_DIR: "at the lineage store, before the first stage",
    names.ARTIFACTS_DIR: "at the first stage's output",
    names.REGISTRY_DIR: "at push after all the training",
}


def _layout(root: Path, p: dict[str, Any], *, named: bool) -> None:
    """The storage root's folders the run writes in, those that exist: directories writable by this user."""
    serving = Path(os.path.normpath(root / p["serving_root"]))
    places = [(root / d, why) for d, why in _WRITES.items() if not (named and d == names.DATA_DIR)]
    places += [(serving, "at push after all the training")]
    places += [(serving / p["model_name"], "at push after all the training")]
    for path, why in places:
        if not path.exists():
            continue
        if not path.is_dir():
            raise PreflightError(f"[submit] {path}: not a directory; the run would fail {why}")
        if not os.access(path, os.W_OK | os.X_OK):
            raise PreflightError(
                f"[submit] {path}: not writable by this user (uid {os.getuid()}); "
                f"the run would fail {why}: fix its permissions"
            )


def _free_space(storage: Path, input_bytes: int) -> None:
    probe = _nearest_existing(Path(os.path.abspath(storage)))
    free = shutil.disk_usage(probe).free
    need = MIN_FREE_BYTES + FREE_PER_INPUT_BYTE * input_bytes
    if free < need:
        raise PreflightError(
            f"[submit] {storage}: the storage root has {free / 2**20:,.0f} MiB free; "
            f"a run on this data needs at least {need / 2**20:,.0f} MiB"
        )
