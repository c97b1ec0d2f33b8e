"""Statistics stage: TFDV statistics per split of ExampleGen's output, and a self-contained HTML report."""

from kfp.dsl import HTML, Artifact, Dataset, Input, Output

from components.component import component


@component
def statistics(
    examples: Input[Dataset],
    storage_root: str,
    run_id: str,
    statistics: Output[Artifact],
    report: Output[HTML],
    beam_args: str = "--runner=DirectRunner --direct_num_workers=1",
    label: str = "charges",
):
    """Write ``<statistics>/Split-<split>/FeatureStats.pb`` (TFX StatisticsGen's layout) and the report.

    Statistics are small, so they live in the artifact itself; the examples are read in place
    from the volume. A copy of both goes to the volume, ``artifacts/<run id>/statistics/``
    (``report.html`` beside the ``Split-*`` folders): the report a user opens, and the training
    data's statistics a later run's validate compares its data with (drift), once this run's
    model is the one being served. ``beam_args``: in process when Beam would run in this process
    anyway, TFDV's Beam pipeline on the runner named otherwise (the metadata's ``method``/``runner``).
    ``label``: the column the report marks as the label (listed first).
    """
    import os
    import shutil
    from pathlib import Path

    from components import names
    from components.lib import storage
    from components.lib.examples import written_rows
    from components.lib.statistics import run_statistics
    from components.lib.statistics_io import read_statistics
    from components.lib.statistics_report import render_report

    stage = names.STAGE_STATISTICS
    examples_dir = storage.storage_path_of(examples.metadata, examples.path, stage)
    os.makedirs(statistics.path, exist_ok=True)
    written = {s: written_rows(examples.metadata, examples.path, s) for s in names.SPLITS}
    result = run_statistics(examples_dir, Path(statistics.path), beam_args=beam_args, expected_rows=written)
    stats = {s: read_statistics(Path(statistics.path), s, stage) for s in result.rows}
    html = render_report(stats, run_id=run_id, label=label)
    Path(report.path).parent.mkdir(parents=True, exist_ok=True)
    Path(report.path).write_text(html, encoding="utf-8")
    kept = storage.stage_dir(storage_root, run_id, stage)
    with storage.atomic_dir(kept, stage) as scratch:
        shutil.copytree(statistics.path, scratch, dirs_exist_ok=True)
        (scratch / names.REPORT_HTML_FILE).write_text(html, encoding="utf-8")
    statistics.metadata.update({**result.metadata(), names.META_STORAGE_PATH: str(kept)})
    # Cells example_gen wrote as missing because they were inf/nan or beyond float32: validate's to judge.
    statistics.metadata[names.META_NON_FINITE] = dict(examples.metadata.get(names.META_NON_FINITE) or {})
    report.metadata.update(
        {names.META_ROWS: result.rows, names.META_STORAGE_PATH: str(kept / names.REPORT_HTML_FILE)}
    )
    from components.lib.tracking import log_task

    log_task(names.STAGE_STATISTICS)  # MLflow, when MLFLOW_TRACKING_URI is set; never fails the stage
