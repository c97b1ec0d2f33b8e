"""Statistics stage: TFDV statistics per split of ExampleGen's output, and a self-contained HTML report."""

from kfp.dsl import HTML, Artifact, Dataset, Input, Output

from components.component import component


@component
def statistics(
    examples: Input[Dataset],
    statistics: Output[Artifact],
    report: Output[HTML],
):
    """Write ``<statistics>/Split-<split>/FeatureStats.pb`` (TFX StatisticsGen's layout) and the report.

    Statistics are small, so they live in the artifact itself rather than on the volume; the
    examples are read in place from the volume.
    """
    import os
    from pathlib import Path

    from components import names
    from components.lib import storage
    from components.lib.statistics import render_report, run_statistics
    from components.lib.statistics_io import read_statistics

    examples_dir = storage.storage_path_of(examples.metadata, examples.path, names.STAGE_STATISTICS)
    os.makedirs(statistics.path, exist_ok=True)
    result = run_statistics(examples_dir, Path(statistics.path))
    stats = {s: read_statistics(Path(statistics.path), s, names.STAGE_STATISTICS) for s in result.rows}
    Path(report.path).parent.mkdir(parents=True, exist_ok=True)
    Path(report.path).write_text(render_report(stats), encoding="utf-8")
    meta = result.metadata()
    statistics.metadata.update(meta)
    report.metadata.update({names.META_ROWS: result.rows})
