"""Tune stage: keras-tuner search over the user module's space; the best hyperparameters as JSON."""

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
    for i, trial in enumerate(result.trials):
        if trial["val_loss"] is not None:
            summary.log_metric(f"trial_{i}_val_loss", trial["val_loss"])
    if result.best_val_loss is not None:
        summary.log_metric("best_val_loss", result.best_val_loss)
    summary.log_metric("trials", float(len(result.trials)))
    summary.log_metric("tune_seconds", round(result.seconds, 2))
