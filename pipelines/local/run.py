"""A local run of the whole pipeline: preflight, data onto the storage folder, compile, execute.

This is what ``python submit.py`` does without ``--host``. The storage folder plays the
PersistentVolume: the input is copied by content under ``data/<name>@<digest>/<name>``
(``stage_data``), and every stage reads and writes under the same layout as on the cluster. Nothing is written
before ``preflight.check`` has accepted every parameter and the storage root.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from components import names
from components.lib.storage import incoming_dir
from components.parameters import coerce, model_name_for
from pipelines.kubetfx_pipeline import DEFAULT_OPTIONS, ClusterOptions, compile_pipeline, tune_split_refusal
from pipelines.local import preflight
from pipelines.local.inprocess import load_pipeline_spec, run_pipeline_spec
from pipelines.run_result import LocalRun, TaskRecord

DEFAULT_STORAGE = "kubetfx_storage"
RUN_MODES = ("inprocess", "backend")
GENERATED_ROWS = 1338


def stage_data(
    storage: Path,
    data: Path | None,
    log: Callable[[str], None] = print,
    before: list[tuple[str, int, int]] | None = None,
) -> str:
    """Put the input on the storage folder; return its path relative to the storage root.

    ``--data`` (and, without it, ``data/insurance.csv``: seeded synthetic rows with the real
    columns, generated once when absent) is copied by content to ``data/<name>@<digest>/<name>``
    (``storage.copy_in``): never written again once there, so a run reading it is never handed
    another table, and the ``data`` parameter lineage records names those very bytes. The name is
    kept, so the model name derived from it is too. A ``--data`` already elsewhere on the storage
    root is used in place, as it is; rewriting it under a running reader is then the user's doing.
    ``before``: the input's ``storage.source_state`` when the preflight read it.
    """
    from components.lib import storage as volume

    (storage / names.DATA_DIR).mkdir(parents=True, exist_ok=True)
    if data is None:
        source = _default_data(storage, log)
    else:
        source = Path(os.path.abspath(data))
        if not source.exists():
            raise FileNotFoundError(f"[submit] {source}: input data does not exist")
        if volume.inside(storage, source):
            log(f"input {source}: on the storage root already, used in place")
            return os.path.relpath(source, storage)
    return volume.copy_in(storage, source, before, log)


def _default_data(storage: Path, log: Callable[[str], None]) -> Path:
    """``data/insurance.csv``, generated when absent (in scratch, then linked in: never rewritten)."""
    from components.lib.datagen import generate_csv

    target = storage / names.DEFAULT_DATA_FILE
    if target.exists():
        log(f"no --data given: using {target}")
        return target
    scratch = incoming_dir(target.parent)
    try:
        made = generate_csv(scratch / target.name, rows=GENERATED_ROWS, seed=42)
        try:
            os.link(made, target)  # fails if a concurrent run put it there first: theirs is kept
        except FileExistsError:
            pass
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    log(f"no --data given: generated {GENERATED_ROWS} synthetic insurance rows at {target}")
    return target


def _input_state(storage: Path, data: Path | None, parameters: dict[str, Any]) -> Any:  # noqa: ANN401
    """``storage.source_state`` of the input stage_data will copy (None: named by ``data`` or generated)."""
    from components.lib.storage import source_state

    if "data" in parameters:
        return None
    source = data if data is not None else storage / names.DEFAULT_DATA_FILE
    return source_state(Path(os.path.abspath(source)))


def new_run_id() -> str:
    return f"local-{dt.datetime.now(dt.UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"


@dataclasses.dataclass
class LocalResult:
    run: LocalRun
    storage: Path
    package: str
    arguments: dict[str, Any] = dataclasses.field(default_factory=dict)  # the run's parameter values


def run_locally(
    storage: Path,
    data: Path | None,
    parameters: dict[str, Any],
    *,
    mode: str = "inprocess",
    backend_version: str = "2.17",
    image: str | None = None,
    package: str | None = None,
    options: ClusterOptions = DEFAULT_OPTIONS,
    log: Callable[[str], None] = print,
    on_task_end: Callable[[TaskRecord], None] | None = None,
    start: Callable[[str, str, dict[str, Any]], None] | None = None,
    quiet: Any = None,
) -> LocalResult:
    """Compile the pipeline and run all its stages on ``storage``.

    ``mode``: ``inprocess`` (all tasks in this warm process, KFP's local machinery) or
    ``backend`` (the compiled YAML as the open-source KFP backend runs it, a pod per task:
    ``pipelines.backend.runner``; ``backend_version`` 2.5, 2.14 or 2.17 picks whose rules it follows;
    ``image``, a runtime image in buildah's storage, runs each task's container in it).

    ``options``: the compile-time settings (``--tune-parallelism``, ``--tune-fanin``); the mount
    path must stay the default, where the backend runner mounts the storage folder.

    ``start`` is told the run id, pipeline name and final arguments before the first task.
    A bad parameter, path, module or storage root is a ``preflight.PreflightError`` (a
    ValueError) raised before anything is written.
    """
    if mode not in RUN_MODES:
        raise ValueError(f"[submit] --runner must be one of {RUN_MODES}, not {mode!r}")
    if image and mode != "backend":
        raise ValueError("[submit] --image runs each task in that image: only with --runner backend")
    read = _input_state(storage, data, parameters)  # what the preflight is about to read
    preflight.check(storage, data, parameters, runner=mode)
    refusal = tune_split_refusal(options, parameters)  # a tuner that cannot run as trial groups
    if refusal:
        raise preflight.PreflightError(refusal)
    storage = storage.resolve()
    storage.mkdir(parents=True, exist_ok=True)
    args = dict(parameters)
    if "data" not in args:  # --param data=... names a file already on the storage root
        args["data"] = stage_data(storage, data, log, before=read)
    # The name the stages would derive from the data, resolved once so the console names it.
    args["model_name"] = model_name_for(str(args.get("model_name") or ""), str(args["data"]))
    if package is None:
        package = str(storage / names.KFP_LOCAL_DIR / "kubetfx_pipeline.yaml")
    compile_pipeline(package, options)
    spec = load_pipeline_spec(Path(package))
    if mode == "backend":
        # As on the cluster: the volume is mounted at the compiled mount path, which is the
        # storage_root parameter's default; the run id is a UUID.
        from pipelines.backend.runner import Backend

        backend = Backend(storage / names.KFP_LOCAL_DIR / "backend", storage, backend_version, log, image)
        args = coerce(args)
        run_id = str(uuid.uuid4())
        if start:
            start(run_id, spec.pipeline_info.name, args)
        run = backend.run(Path(package), args, run_id=run_id, on_task_end=on_task_end)
        return LocalResult(run=run, storage=storage, package=package, arguments=args)
    args["storage_root"] = str(storage)
    args = coerce(args)
    run_id = new_run_id()
    if start:
        start(run_id, spec.pipeline_info.name, args)
    run = run_pipeline_spec(
        spec,
        args,
        storage / names.KFP_LOCAL_DIR,
        run_id=run_id,
        log=log,
        on_task_end=on_task_end,
        quiet=quiet,
    )
    return LocalResult(run=run, storage=storage, package=package, arguments=args)
