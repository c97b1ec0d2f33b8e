"""ExampleGen stage: CSV file or folder -> gzipped TFRecord ``tf.Example``s per split."""

from kfp.dsl import Dataset, Output

from components.component import component


@component
def example_gen(
    storage_root: str,
    data: str,
    run_id: str,
    label: str,
    split_buckets: str,
    schema_file: str,
    examples: Output[Dataset],
    column_types: str = "",
    beam_args: str = "--runner=DirectRunner --direct_num_workers=1",
    encoding: str = "utf-8",
    na_values: str = "",
    drop_unlabeled: bool = False,
    model_name: str = "",
):
    """Read ``data`` and write ``Split-train/`` and ``Split-eval/`` under the storage root.

    ``data``: a CSV file or folder relative to ``storage_root``, or a ``gs://``/``s3://`` URL
    (read through Beam's FileSystems with the pod's credentials). The examples are written once
    on the volume; the artifact points at them. An empty
    ``schema_file`` means column types are inferred (digit strings with leading zeros stay text);
    ``column_types`` (``zip:string,age:float``) overrides inference or the schema per column.
    ``beam_args``: a runner other than the local one writes the examples with a Beam pipeline,
    N files per split (``components.lib.beam.runs_in_process``; the metadata says which ran).
    ``encoding``: the CSV's text encoding; ``na_values``: cells read as missing in every column;
    ``drop_unlabeled``: rows with an empty label are dropped (counted) instead of refused.
    Where the data fits them, the column types of the served version of ``model_name`` (empty:
    derived from ``data``) are kept, so a re-saved export does not change a column's type.
    """
    from components import names
    from components.lib import served, storage
    from components.lib.artifact_metadata import publish
    from components.lib.example_gen import run_example_gen
    from components.parameters import model_name_for

    preferred = served.served_types(storage_root, model_name_for(model_name, data), names.STAGE_EXAMPLE_GEN)

    out = storage.stage_dir(storage_root, run_id, names.STAGE_EXAMPLE_GEN)
    with storage.atomic_dir(out, names.STAGE_EXAMPLE_GEN) as scratch:
        result = run_example_gen(
            storage.resolve_input(storage_root, data, names.STAGE_EXAMPLE_GEN, "data"),
            scratch,
            label=label,
            split_buckets=split_buckets,
            schema_path=(
                storage.resolve(storage_root, schema_file, names.STAGE_EXAMPLE_GEN, "schema_file")
                if schema_file
                else None
            ),
            column_types=column_types,
            beam_args=beam_args,
            encoding=encoding,
            na_values=na_values,
            drop_unlabeled=drop_unlabeled,
            preferred_types=preferred,
        )
    meta = {names.META_STORAGE_PATH: str(out), **result.metadata()}
    examples.metadata.update(meta)
    storage.write_manifest(examples.path, out, meta)
    publish(storage_root, run_id, names.STAGE_EXAMPLE_GEN, {"examples": examples})  # lineage on the volume
    if result.dropped_unlabeled:
        print(
            f"{names.PROGRESS_PREFIX}[{names.STAGE_EXAMPLE_GEN}] dropped {result.dropped_unlabeled:,} row(s) "
            f"without a label (drop_unlabeled)",
            flush=True,
        )
    for column, found in result.non_finite.items():  # written as missing; validate reports them
        print(
            f"{names.PROGRESS_PREFIX}[{names.STAGE_EXAMPLE_GEN}] column {column!r}: "
            f"{found['count']:,} value(s) beyond float32 or inf/nan, read as missing "
            f"(first {found['value']!r} at {found['first']})",
            flush=True,
        )
    from components.lib.tracking import log_task

    log_task(names.STAGE_EXAMPLE_GEN)  # MLflow, when MLFLOW_TRACKING_URI is set; never fails the stage
