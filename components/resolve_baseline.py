"""Resolve-baseline stage: the latest blessed model of earlier runs, from the registry on the volume."""

from kfp.dsl import Model, Output

from components.component import component


@component
def resolve_baseline(
    storage_root: str,
    model_name: str,
    baseline: Output[Model],
    serving_root: str = "serving",  # a literal: KFP runs the function's own source (the vocabulary's default)
    data: str = "data/insurance.csv",  # the vocabulary's default: an empty model_name derives from it
    run_id: str = "",  # recorded in the registry lock while this stage holds it
    lock_timeout: float = 600.0,  # the vocabulary's default (components.parameters)
):
    """Find the newest blessed, pushed version of ``model_name`` in ``<storage_root>/registry/index.json``.

    The output is the baseline contract evaluate reads (``components.lib.baseline.Baseline``).
    Found: metadata ``found=True``, ``version``, ``model_path`` (the SavedModel directory),
    ``metrics``, ``run_id``. None (first run): ``found=False``, ``reason="no baseline"``. The
    artifact file holds the same as JSON plus a sentence, so the outcome is visible in the UI.
    No metadata service is needed; a damaged index stops the run (StageError).

    First it settles what killed runs left: a push's pending entry, temp files, version
    directories under ``serving_root`` the registry does not list, stages' scratch directories
    (``components.lib.resolve_baseline.housekeeping``); each act is one line in the log.
    A registry lock another run holds is waited for at most ``lock_timeout`` seconds (0: no
    limit), and the log names its holder (``components.lib.registry_lock``).
    """
    from pathlib import Path

    from components import names
    from components.lib.artifact_metadata import publish
    from components.lib.registry_lock import Request, check_timeout
    from components.lib.resolve_baseline import STAGE, housekeeping, resolve
    from components.parameters import model_name_for

    model_name = model_name_for(model_name, data)  # empty: derived from the data, as every stage does
    lock = Request(run_id, check_timeout(lock_timeout, STAGE))
    for line in housekeeping(storage_root, serving_root, model_name, lock):
        print(f"{names.PROGRESS_PREFIX}[{STAGE}] {line}", flush=True)
    result = resolve(storage_root, model_name, lock)
    baseline.metadata.update(result.to_metadata())
    result.write(Path(baseline.path))
    publish(storage_root, run_id, STAGE, {"baseline": baseline})  # lineage on the volume
    print(result.note())
    from components.lib.tracking import log_task

    log_task(names.STAGE_RESOLVE)  # MLflow, when MLFLOW_TRACKING_URI is set; never fails the stage
