"""Tune stage: keras-tuner search over the user module's space; the best hyperparameters as JSON.

``tune`` searches in one task; ``tune_trials`` and ``tune_best`` are the same search split into
parallel trial groups and their fan-in (``compile.py --tune-parallelism N``).
"""

from typing import List  # noqa: UP035 (KFP 2.13 reads List[str], not list[str])

from kfp.dsl import Artifact, Dataset, Input, Metrics, Output

from components.component import component


@component
def tune(
    transformed_examples: Input[Dataset],
    transform_graph: Input[Artifact],
    storage_root: str,
    run_id: str,
    module_file: str,
    tuner: str,
    trials: int,
    steps: int,
    batch_size: int,
    enabled: bool,
    hyperparameters: str,
    label: str,
    best_hyperparameters: Output[Artifact],
    summary: Output[Metrics],
    validation_fraction: float = 0.05,
    max_epochs: int = 50,
):
    """Search ``trials`` trials (``tuner``: random, bayesian or hyperband), the module's defaults first.

    Each trial is fit as train fits: ``steps`` worth of whole epochs (at least 3, at most
    ``max_epochs``) on the train split minus its validation slice (``validation_fraction``, held
    out by a hash of each row), early-stopped and scored on that slice — never on the eval split.
    The defaults of the last two parameters are ``components.parameters``' (a test checks).

    ``best_hyperparameters.path`` becomes a directory holding ``best_hyperparameters.txt``;
    keras-tuner's working files go to the stage directory on the volume. ``enabled=False``:
    no search, the module's defaults updated by the ``hyperparameters`` JSON. ``label``: the
    column to predict (transform's label contract gives its task and classes).
    """
    from pathlib import Path

    from components import names
    from components.lib import storage
    from components.lib.artifact_metadata import publish
    from components.lib.hyperparameters import write_hyperparameters
    from components.lib.transform_output import transform_paths
    from components.lib.tune import run_tune

    stage = names.STAGE_TUNE
    examples_dir, graph_dir = transform_paths(
        storage.storage_path_of(transformed_examples.metadata, transformed_examples.path, stage),
        storage.storage_path_of(transform_graph.metadata, transform_graph.path, stage),
    )

    def search(work_dir):  # type: ignore[no-untyped-def]
        return run_tune(
            examples_dir,
            graph_dir,
            work_dir,
            module_file=module_file,
            storage_root=storage_root,
            tuner=tuner,
            trials=trials,
            steps=steps,
            batch_size=batch_size,
            enabled=enabled,
            hyperparameters=hyperparameters,
            label=label,
            validation_fraction=validation_fraction,
            max_epochs=max_epochs,
        )

    meta = {}
    if enabled:
        out = storage.stage_dir(storage_root, run_id, stage)
        with storage.atomic_dir(out, stage) as scratch:
            result = search(scratch)
        meta["tuner_dir"] = str(out)
    else:
        result = search(None)
    write_hyperparameters(Path(best_hyperparameters.path), result.best, result.trials)
    meta.update(result.metadata())
    best_hyperparameters.metadata.update(meta)
    outputs = {"best_hyperparameters": best_hyperparameters}
    publish(storage_root, run_id, stage, outputs, module_file=module_file)  # lineage on the volume
    for i, trial in enumerate(result.trials):
        if trial["val_loss"] is not None:
            summary.log_metric(f"trial_{i}_val_loss", trial["val_loss"])
    if result.best_val_loss is not None:
        summary.log_metric("best_val_loss", result.best_val_loss)
    summary.log_metric("trials", float(len(result.trials)))
    summary.log_metric("tune_seconds", round(result.seconds, 2))
    from components.lib.tracking import log_task

    log_task(names.STAGE_TUNE)  # MLflow, when MLFLOW_TRACKING_URI is set; never fails the stage


@component
def tune_trials(
    transformed_examples: Input[Dataset],
    transform_graph: Input[Artifact],
    storage_root: str,
    run_id: str,
    module_file: str,
    tuner: str,
    trials: int,
    steps: int,
    batch_size: int,
    enabled: bool,
    hyperparameters: str,
    label: str,
    group: int,
    groups: int,
    validation_fraction: float = 0.05,
    max_epochs: int = 50,
) -> str:
    """Run trial group ``group`` of ``groups``: its round-robin share of the trial set one tune task draws.

    Parameters as ``tune``'s. The whole set (the module's defaults first, then the random
    tuner's seeded draws) is fixed before any trial runs, and each trial starts as if first,
    so the split does not change a score (``components.lib.tune_groups``). Only tuner
    ``random`` splits. Returns (and writes to ``artifacts/<run id>/tune_trials/group-<g>/``)
    the group's trials as JSON for ``tune_best``.
    """
    import json

    from components import names
    from components.lib import storage, tune_groups
    from components.lib.transform_output import transform_paths
    from components.lib.tune import run_tune

    stage = names.STAGE_TUNE_TRIALS
    if enabled:
        tune_groups.check(tuner, groups, group, stage)
    examples_dir, graph_dir = transform_paths(
        storage.storage_path_of(transformed_examples.metadata, transformed_examples.path, stage),
        storage.storage_path_of(transform_graph.metadata, transform_graph.path, stage),
    )
    plan = tune_groups.Plan(group, groups)

    def search(work_dir):  # type: ignore[no-untyped-def]
        return run_tune(
            examples_dir,
            graph_dir,
            work_dir,
            module_file=module_file,
            storage_root=storage_root,
            tuner=tuner,
            trials=trials,
            steps=steps,
            batch_size=batch_size,
            enabled=enabled,
            hyperparameters=hyperparameters,
            label=label,
            validation_fraction=validation_fraction,
            max_epochs=max_epochs,
            plan=plan if enabled else None,
        )

    if not enabled:
        result = search(None)
        return json.dumps({"group": group, "searched": False, "best": result.best, "trials": []})
    out = storage.stage_dir(storage_root, run_id, stage) / tune_groups.group_dir_name(group)
    with storage.atomic_dir(out, stage) as scratch:
        result = search(scratch)
        doc = tune_groups.group_result(
            plan.indices,
            result.trials,
            plan.defaults,
            True,
            group=group,
            budget=result.budget,
            seconds=result.seconds,
        )
        text = json.dumps(doc, sort_keys=True)
        (scratch / tune_groups.RESULT_FILE).write_text(text)
    return text


@component
def tune_best(
    group_results: List[str],  # noqa: UP006
    storage_root: str,
    run_id: str,
    groups: int,
    module_file: str,
    best_hyperparameters: Output[Artifact],
    summary: Output[Metrics],
):
    """Pick the best of the trial groups' trials and write ``best_hyperparameters`` as ``tune`` does.

    ``group_results``: the groups' JSON strings (``dsl.Collected`` of the ``tune_trials`` tasks);
    empty: read from each group's file on the volume (the unrolled shape, for backends without
    Collected). The choice is one task's (lowest val_loss, the defaults kept within the margin,
    ties to the lower trial index); the artifact, its metadata, ``trials.json`` in
    ``artifacts/<run id>/tune/`` (the evaluation report's), its description on the volume (as
    tune's, under ``tune``; ``module_file`` names the code) and the summary are ``tune``'s.
    """
    import json
    from pathlib import Path

    from components import names
    from components.lib import storage, tune_groups
    from components.lib.artifact_metadata import publish
    from components.lib.hyperparameters import TRIALS_FILE, write_hyperparameters
    from components.lib.tune import fan_in

    stage = names.STAGE_TUNE_BEST
    folder = storage.stage_dir(storage_root, run_id, names.STAGE_TUNE_TRIALS)
    results = tune_groups.read_results(list(group_results), folder, groups, stage)
    result = fan_in(results, max((float(r.get("seconds", 0.0)) for r in results), default=0.0))
    meta: dict = {}
    if result.searched:
        out = storage.stage_dir(storage_root, run_id, names.STAGE_TUNE)
        with storage.atomic_dir(out, stage) as scratch:
            (scratch / TRIALS_FILE).write_text(json.dumps(result.trials, indent=2, sort_keys=True))
        meta["tuner_dir"] = str(out)
        meta["trial_groups"] = [str(folder / tune_groups.group_dir_name(g)) for g in range(groups)]
    write_hyperparameters(Path(best_hyperparameters.path), result.best, result.trials)
    meta.update(result.metadata())
    best_hyperparameters.metadata.update(meta)
    outputs = {"best_hyperparameters": best_hyperparameters}
    publish(storage_root, run_id, names.STAGE_TUNE, outputs, module_file=module_file)  # as tune's
    for i, trial in enumerate(result.trials):
        if trial["val_loss"] is not None:
            summary.log_metric(f"trial_{i}_val_loss", trial["val_loss"])
    if result.best_val_loss is not None:
        summary.log_metric("best_val_loss", result.best_val_loss)
    summary.log_metric("trials", float(len(result.trials)))
    summary.log_metric("tune_seconds", round(result.seconds, 2))
    summary.log_metric("trial_groups", float(groups))
