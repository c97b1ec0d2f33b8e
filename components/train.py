"""Train stage: Keras model on transformed examples, exported with the transform graph inside."""

from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from components.component import component


@component
def train(
    transformed_examples: Input[Dataset],
    transform_graph: Input[Artifact],
    best_hyperparameters: Input[Artifact],
    storage_root: str,
    run_id: str,
    module_file: str,
    train_steps: int,
    eval_steps: int,
    batch_size: int,
    label: str,
    model: Output[Model],
    metrics: Output[Metrics],
    tensorboard: Output[Artifact],
    validation_fraction: float = 0.05,
    max_epochs: int = 50,
    model_family: str = "auto",
):
    """Fit on the train split minus a validation slice; export ``Format-Serving/`` (raw tf.Example in).

    The fit runs whole epochs (``train_steps`` worth, at least 3, at most ``max_epochs``) and stops
    early when the loss on the validation slice (``validation_fraction`` of the train split, held
    out by a hash of each row) stops falling, keeping the best epoch's weights. The eval split is
    read only after the weights are final, for the metrics. ``model_family`` (the default
    module's): ``mlp``, ``gbt`` (gradient-boosted trees), ``linear``, or ``auto``: all three, the
    one with the lowest MAE (log loss) on the validation slice kept. The defaults of the last
    three parameters are ``components.parameters``' (a test checks they agree).

    The model artifact points at the stage directory (the SavedModel is its ``Format-Serving``
    subdirectory, as TFX's Trainer lays it out); the tensorboard artifact at its ``logs/``.
    ``label``: the column to predict. Metrics: train/eval loss; regression: train MAE and eval
    MAE, RMSE, R² in label units; classification: train and eval accuracy, eval log loss.
    Model metadata: hyperparameters, metrics, label, task, classes, and ``fit``: the validation
    slice (fraction, fit and validation rows, the hash rule) and the epochs planned, run and kept
    (the trees kept, for gbt); ``model_family``: requested, chosen, each candidate's validation
    figure and seconds.
    """
    import math
    from pathlib import Path

    from components import names
    from components.lib import storage
    from components.lib.artifact_metadata import publish
    from components.lib.saved_model import export_dir
    from components.lib.train import run_train
    from components.lib.transform_output import transform_paths

    stage = names.STAGE_TRAIN
    examples_dir, graph_dir = transform_paths(
        storage.storage_path_of(transformed_examples.metadata, transformed_examples.path, stage),
        storage.storage_path_of(transform_graph.metadata, transform_graph.path, stage),
    )
    out = storage.stage_dir(storage_root, run_id, stage)
    with storage.atomic_dir(out, stage) as scratch:
        result = run_train(
            examples_dir,
            graph_dir,
            Path(best_hyperparameters.path),
            scratch,
            module_file=module_file,
            storage_root=storage_root,
            train_steps=train_steps,
            eval_steps=eval_steps,
            batch_size=batch_size,
            label=label,
            validation_fraction=validation_fraction,
            max_epochs=max_epochs,
            model_family=model_family,
        )
    meta = {names.META_STORAGE_PATH: str(out), "serving_model": str(export_dir(out))}
    meta.update(result.metadata())
    model.metadata.update(meta)
    storage.write_manifest(model.path, out, meta)
    logs = out / names.TENSORBOARD_DIR
    tensorboard.metadata.update({names.META_STORAGE_PATH: str(logs)})
    storage.write_manifest(tensorboard.path, logs, {})
    outputs = {"model": model, "tensorboard": tensorboard}
    publish(storage_root, run_id, stage, outputs, module_file=module_file)  # lineage on the volume
    for key, value in result.metrics.items():
        if math.isfinite(value):  # e.g. R² of a one-row eval split is undefined; JSON has no NaN
            metrics.log_metric(key, value)
    from components.lib.tracking import log_task

    log_task(names.STAGE_TRAIN)  # MLflow, when MLFLOW_TRACKING_URI is set; never fails the stage
