"""Schema stage: a TFDV schema inferred from the train statistics, or the user's own schema file."""

from kfp.dsl import Artifact, Input, Output

from components.component import component


@component
def schema(
    statistics: Input[Artifact],
    label: str,
    schema_file: str,
    storage_root: str,
    schema: Output[Artifact],
    task: str = "auto",
    features: str = "",
    exclude_features: str = "",
    run_id: str = "",
):
    """Write ``<schema>/schema.pbtxt`` (TFX SchemaGen's file name).

    An empty ``schema_file`` means infer from the train statistics; otherwise that file
    (relative to ``storage_root``, or absolute) is used as the schema. ``task`` (auto, regression,
    classification) is decided here and written into the label's domain (metadata ``task``,
    ``classes``). Identifier-like columns (ids, names, dates as text) are tagged as excluded from
    the default module's features (metadata ``excluded_features``); ``features`` (use exactly
    these) and ``exclude_features`` (leave these out too), comma-separated, decide instead.
    """
    import os
    import shutil
    from pathlib import Path

    from components import names
    from components.lib import storage
    from components.lib.artifact_metadata import publish
    from components.lib.schema import run_schema

    os.makedirs(schema.path, exist_ok=True)
    result = run_schema(
        Path(statistics.path),
        Path(schema.path),
        label=label,
        task=task,
        features=features,
        exclude_features=exclude_features,
        schema_file=(
            storage.resolve(storage_root, schema_file, names.STAGE_SCHEMA, "schema_file")
            if schema_file
            else None
        ),
    )
    schema.metadata.update(result.metadata())
    # A copy on the volume that outlives the run's artifacts: the path users pass as schema_file.
    kept = storage.stage_dir(storage_root, run_id, names.STAGE_SCHEMA)
    with storage.atomic_dir(kept, names.STAGE_SCHEMA) as scratch:
        shutil.copyfile(Path(schema.path) / names.SCHEMA_FILE, scratch / names.SCHEMA_FILE)
    schema.metadata[names.META_STORAGE_PATH] = str(kept / names.SCHEMA_FILE)
    publish(storage_root, run_id, names.STAGE_SCHEMA, {"schema": schema})  # lineage on the volume
    for name, why in (result.metadata().get("excluded_features") or {}).items():
        # On the console too: a column left out of the model is a choice the user may overrule.
        print(
            f"{names.PROGRESS_PREFIX}[{names.STAGE_SCHEMA}] not a model feature: {name!r} ({why}); "
            "features= / exclude_features= decide",
            flush=True,
        )
    from components.lib.tracking import log_task

    log_task(names.STAGE_SCHEMA)  # MLflow, when MLFLOW_TRACKING_URI is set; never fails the stage
