"""Transform stage: TFT on Beam; the transform graph and the transformed examples, on the volume."""

from kfp.dsl import Artifact, Dataset, Input, Output

from components.component import component


@component
def transform(
    examples: Input[Dataset],
    schema: Input[Artifact],
    storage_root: str,
    run_id: str,
    module_file: str,
    beam_args: str,
    label: str,
    transform_graph: Output[Artifact],
    transformed_examples: Output[Dataset],
):
    """Fit the user module's ``preprocessing_fn`` on train, apply it to every split.

    Writes ``transform_graph/`` and ``transformed_examples/Split-*/`` under the stage
    directory; both artifacts point at it. ``module_file`` empty = the default module (derived
    from the schema); ``beam_args`` go to Beam's PipelineOptions unchanged; ``label``: the column
    to predict (its task and classes come from the schema). Metadata: rows, transformed features,
    module, label, task, classes.
    """
    from pathlib import Path

    from components import names
    from components.lib import storage
    from components.lib.artifact_metadata import plain, publish
    from components.lib.transform import run_transform
    from components.lib.transform_output import graph_dir, transformed_examples_dir

    examples_dir = storage.storage_path_of(examples.metadata, examples.path, names.STAGE_TRANSFORM)
    sources = plain(examples.metadata.get("input_files")) or []
    out = storage.stage_dir(storage_root, run_id, names.STAGE_TRANSFORM)
    with storage.atomic_dir(out, names.STAGE_TRANSFORM) as scratch:
        result = run_transform(
            examples_dir,
            Path(schema.path),
            scratch,
            module_file=module_file,
            storage_root=storage_root,
            beam_args=beam_args,
            label=label,
            source=sources[0] if len(sources) == 1 else None,
        )
    meta = {names.META_STORAGE_PATH: str(out), **result.metadata()}
    for artifact, part in (
        (transform_graph, graph_dir(out)),
        (transformed_examples, transformed_examples_dir(out)),
    ):
        artifact_meta = {**meta, "path": str(part)}
        artifact.metadata.update(artifact_meta)
        storage.write_manifest(artifact.path, out, artifact_meta)
    outputs = {"transform_graph": transform_graph, "transformed_examples": transformed_examples}
    publish(storage_root, run_id, names.STAGE_TRANSFORM, outputs, module_file=module_file)  # lineage
    from components.lib.tracking import log_task

    log_task(names.STAGE_TRANSFORM)  # MLflow, when MLFLOW_TRACKING_URI is set; never fails the stage
