"""A local run of the whole pipeline: preflight, data onto the storage folder, compile, execute.

This is what ``python submit.py`` does without ``--host``. The storage folder plays the
PersistentVolume: the input CSV is placed under ``data/`` exactly as the loader Job places it
on the cluster, and every stage reads and writes under the same layout. Nothing is written
before ``preflight.check`` has accepted every parameter and the storage root.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from components import names
from components.lib.storage import INCOMING_PREFIX, owner_tag
from components.parameters import coerce, model_name_for
from pipelines import preflight
from pipelines.kubetfx_pipeline import compile_pipeline
from pipelines.local_runner import LocalRun, TaskRecord, load_pipeline_spec, run_pipeline_spec

DEFAULT_STORAGE = "kubetfx_storage"
RUN_MODES = ("inprocess", "backend")
GENERATED_ROWS = 1338


def stage_data(storage: Path, data: Path | None, log: Callable[[str], None] = print) -> str:
    """Put the input on the storage folder; return its path relative to the storage root.

    No ``data``: seeded synthetic rows with the real columns (the project runs without the
    real dataset). A file or folder: copied under ``data/`` (replacing an older copy whole).
    """
    from components.lib.datagen import generate_csv

    data_dir = storage / names.DATA_DIR
    data_dir.mkdir(parents=True, exist_ok=True)
    if data is None:
        target = storage / names.DEFAULT_DATA_FILE
        if not target.exists():
            generate_csv(target, rows=GENERATED_ROWS, seed=42)
            log(f"no --data given: generated {GENERATED_ROWS} synthetic insurance rows at {target}")
        else:
            log(f"no --data given: using {target}")
        return names.DEFAULT_DATA_FILE
    data = data.resolve()
    if not data.exists():
        raise FileNotFoundError(f"[submit] {data}: input data does not exist")
    target = data_dir / data.name
    if target.resolve() == data:
        return str(target.relative_to(storage))
    # Owner in the name: a copy killed midway is removed by the next run (storage.clean_scratch).
    scratch = Path(tempfile.mkdtemp(dir=data_dir, prefix=f"{INCOMING_PREFIX}{owner_tag()}-"))
    try:
        copy = scratch / data.name
        shutil.copytree(data, copy) if data.is_dir() else shutil.copy2(data, copy)
        if target.is_dir():
            shutil.rmtree(target)
        copy.replace(target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return str(target.relative_to(storage))


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
    backend_version: str = "2.5",
    package: str | None = None,
    log: Callable[[str], None] = print,
    on_task_end: Callable[[TaskRecord], None] | None = None,
    start: Callable[[str, str, dict[str, Any]], None] | None = None,
    quiet: Any = None,
) -> LocalResult:
    """Compile the pipeline and run all its stages on ``storage``.

    ``mode``: ``inprocess`` (all tasks in this warm process, KFP's local machinery) or
    ``backend`` (the compiled YAML as the open-source KFP backend runs it, a pod per task:
    ``pipelines.kfp_backend``; ``backend_version`` 2.5 or 2.14 picks its task-lookup rule).

    ``start`` is told the run id, pipeline name and final arguments before the first task.
    A bad parameter, path, module or storage root is a ``preflight.PreflightError`` (a
    ValueError) raised before anything is written.
    """
    if mode not in RUN_MODES:
        raise ValueError(f"[submit] --runner must be one of {RUN_MODES}, not {mode!r}")
    preflight.check(storage, data, parameters, runner=mode)
    storage = storage.resolve()
    storage.mkdir(parents=True, exist_ok=True)
    args = dict(parameters)
    if "data" not in args:  # --param data=... names a file already on the storage root
        args["data"] = stage_data(storage, data, log)
    # The name the stages would derive from the data, resolved once so the console names it.
    args["model_name"] = model_name_for(str(args.get("model_name") or ""), str(args["data"]))
    if package is None:
        package = str(storage / names.KFP_LOCAL_DIR / "kubetfx_pipeline.yaml")
    compile_pipeline(package)
    spec = load_pipeline_spec(Path(package))
    if mode == "backend":
        # As on the cluster: the volume is mounted at the compiled mount path, which is the
        # storage_root parameter's default; the run id is a UUID.
        from pipelines.kfp_backend import Backend

        backend = Backend(storage / names.KFP_LOCAL_DIR / "backend", storage, backend_version, log)
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
