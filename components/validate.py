"""Validate stage: eval statistics against the schema, train/eval skew, drift, and the verdict."""

from kfp.dsl import HTML, Artifact, Input, Output

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
    model_name: str,
    anomalies: Output[Artifact],
    report: Output[HTML],
    data: str = "data/insurance.csv",  # the vocabulary's default: an empty model_name derives from it
):
    """Write ``<anomalies>/Split-eval/SchemaDiff.pb`` (TFX ExampleValidator's layout) and an HTML report.

    ``fail_on``: "unsafe" fails the run only on anomalies that make training unsafe (missing
    label or feature, type or shape mismatch), "any" on every anomaly, "none" never. The
    anomalies, the report and the verdict metadata are written before the stage fails, and a
    summary is printed to the log. A copy also goes to the volume
    (``artifacts/<run id>/validate/``, with ``report.html``): KFP does not upload a failed
    task's outputs, and the report of a failed validation is the one a user most needs.

    Skew compares the eval split with this run's train split; drift compares this run's train
    split with the one the served version of ``model_name`` was trained on (the registry's latest
    blessed version, whose run's statistics are on the volume), or the report says why it was
    not computed.
    """
    import os
    import shutil
    from pathlib import Path

    from components import names
    from components.lib import storage
    from components.lib.validate import META_ANOMALIES, META_VERDICT, run_validate, summary_lines
    from components.lib.validate.report import console_lines
    from components.parameters import model_name_for

    model_name = model_name_for(model_name, data)  # empty: derived from the data, as every stage does
    os.makedirs(anomalies.path, exist_ok=True)
    result = run_validate(
        Path(statistics.path),
        Path(schema.path) / names.SCHEMA_FILE,
        Path(anomalies.path),
        label=label,
        fail_on=fail_on,
        skew_threshold=skew_threshold,
        drift_threshold=drift_threshold,
        storage_root=storage_root,
        model_name=model_name,
        run_id=run_id,
        non_finite=dict(statistics.metadata.get(names.META_NON_FINITE) or {}),
    )
    meta = result.metadata()
    anomalies.metadata.update(meta)
    Path(report.path).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(anomalies.path) / names.REPORT_HTML_FILE, report.path)
    print("\n".join(summary_lines(result)), flush=True)
    for line in console_lines(result):  # the few that matter, on a local run's console too
        print(f"{names.PROGRESS_PREFIX}[{names.STAGE_VALIDATE}] {line}", flush=True)
    kept = storage.stage_dir(storage_root, run_id, names.STAGE_VALIDATE)
    with storage.atomic_dir(kept, names.STAGE_VALIDATE) as scratch:
        shutil.copytree(anomalies.path, scratch, dirs_exist_ok=True)
    anomalies.metadata[names.META_STORAGE_PATH] = str(kept)
    report.metadata.update(
        {
            **{k: meta[k] for k in (META_VERDICT, META_ANOMALIES)},
            names.META_STORAGE_PATH: str(kept / names.REPORT_HTML_FILE),
        }
    )
    from components.lib.tracking import log_task

    log_task(names.STAGE_VALIDATE)  # MLflow, when MLFLOW_TRACKING_URI is set; never fails the stage
    error = result.error()
    if error is not None:
        raise error
