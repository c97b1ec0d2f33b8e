"""Validate stage: eval statistics against the schema, train/eval drift and skew, and the verdict."""

from kfp.dsl import Artifact, Input, Markdown, Output

from components.component import component


@component
def validate(
    statistics: Input[Artifact],
    schema: Input[Artifact],
    label: str,
    fail_on: str,
    skew_threshold: float,
    drift_threshold: float,
    storage_root: str,
    run_id: str,
    anomalies: Output[Artifact],
    report: Output[Markdown],
):
    """Write ``<anomalies>/Split-eval/SchemaDiff.pb`` (TFX ExampleValidator's layout) and a Markdown report.

    ``fail_on``: "unsafe" fails the run only on anomalies that make training unsafe (missing
    label or feature, type or shape mismatch), "any" on every anomaly, "none" never. The
    anomalies, the report and the verdict metadata are written before the stage fails, and the
    report is printed to the log. A copy also goes to the volume
    (``artifacts/<run id>/validate/``): KFP does not upload a failed task's outputs, and the
    report of a failed validation is the one a user most needs.
    """
    import os
    import shutil
    from pathlib import Path

    from components import names
    from components.lib import storage
    from components.lib.validate import META_ANOMALIES, META_VERDICT, run_validate

    os.makedirs(anomalies.path, exist_ok=True)
    result = run_validate(
        Path(statistics.path),
        Path(schema.path) / names.SCHEMA_FILE,
        Path(anomalies.path),
        label=label,
        fail_on=fail_on,
        skew_threshold=skew_threshold,
        drift_threshold=drift_threshold,
    )
    meta = result.metadata()
    anomalies.metadata.update(meta)
    report.metadata.update({k: meta[k] for k in (META_VERDICT, META_ANOMALIES)})
    Path(report.path).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(anomalies.path) / names.REPORT_MD_FILE, report.path)
    print(Path(report.path).read_text(encoding="utf-8"), flush=True)
    kept = storage.stage_dir(storage_root, run_id, names.STAGE_VALIDATE)
    with storage.atomic_dir(kept, names.STAGE_VALIDATE) as scratch:
        shutil.copytree(anomalies.path, scratch, dirs_exist_ok=True)
    anomalies.metadata[names.META_STORAGE_PATH] = str(kept)
    error = result.error()
    if error is not None:
        raise error
