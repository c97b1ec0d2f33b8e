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
    from components.lib.transform_output import transform_paths
    from components.lib.tune import tune_stage

    stage = names.STAGE_TUNE
    examples_dir, graph_dir = transform_paths(
        storage.storage_path_of(transformed_examples.metadata, transformed_examples.path, stage),
        storage.storage_path_of(transform_graph.metadata, transform_graph.path, stage),
    )
    meta, metrics = tune_stage(
        examples_dir,
        graph_dir,
        Path(best_hyperparameters.path),
        run_id=run_id,
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
    best_hyperparameters.metadata.update(meta)
    outputs = {"best_hyperparameters": best_hyperparameters}
    publish(storage_root, run_id, stage, outputs, module_file=module_file)  # lineage on the volume
    for key, value in metrics.items():
        summary.log_metric(key, value)
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
    from components import names
    from components.lib import storage, tune_groups
    from components.lib.transform_output import transform_paths
    from components.lib.tune import trial_group_stage

    stage = names.STAGE_TUNE_TRIALS
    if enabled:  # refused before any input is read
        tune_groups.check(tuner, groups, group, stage)
    examples_dir, graph_dir = transform_paths(
        storage.storage_path_of(transformed_examples.metadata, transformed_examples.path, stage),
        storage.storage_path_of(transform_graph.metadata, transform_graph.path, stage),
    )
    return trial_group_stage(
        examples_dir,
        graph_dir,
        run_id=run_id,
        group=group,
        groups=groups,
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
    from pathlib import Path

    from components import names
    from components.lib.artifact_metadata import publish
    from components.lib.tune_groups import best_of_groups

    meta, metrics = best_of_groups(
        list(group_results),
        Path(best_hyperparameters.path),
        storage_root=storage_root,
        run_id=run_id,
        groups=groups,
    )
    best_hyperparameters.metadata.update(meta)
    outputs = {"best_hyperparameters": best_hyperparameters}
    publish(storage_root, run_id, names.STAGE_TUNE, outputs, module_file=module_file)  # as tune's
    for key, value in metrics.items():
        summary.log_metric(key, value)
