"""Statistics logic: gzipped ``tf.Example`` TFRecords -> TFDV statistics per split, and their report.

TFX's StatisticsGen runs a Beam pipeline per split (``tfdv.GenerateStatistics``). On a few
thousand rows Beam's start-up dominates, so the default here runs the SAME TFDV statistics
generators in process: records are read from the files in a stream, decoded batch by batch with
tfx-bsl's C++ ``ExamplesToRecordBatchDecoder`` (the decoder TFX's Beam source uses) and folded
into the generators' accumulators — ``tfdv.generate_statistics_from_dataframe`` does the same
on one in-memory batch. Memory stays flat (one batch plus the generators' sketches), so this
path also serves large splits; the output equals the Beam path's up to float rounding in the
last digit (a test compares them). ``beam_args`` switches to the Beam path
(``tfdv.generate_statistics_from_tfrecord``) for data that needs a distributed runner.

The output layout is TFX's: ``<out>/Split-<split>/FeatureStats.pb``, a binary
``DatasetFeatureStatisticsList`` that ``tfdv.load_stats_binary`` reads, written through
``statistics_io`` (which schema and validate read it with).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from components import names
from components.errors import StageError
from components.lib import examples
from components.lib.statistics_io import feature_name, write_statistics
from components.lib.tfrecord import read_tfrecords

STAGE = names.STAGE_STATISTICS
BATCH_SIZE = 8192  # examples decoded per record batch

# Output metadata keys (the local runner prints "features"; rows/splits come from names).
META_FEATURES = names.META_FEATURES
META_FEATURES_PER_SPLIT = "features_per_split"

TOP_VALUES_SHOWN = 10  # categories per chart / table in the HTML report


@dataclasses.dataclass
class StatisticsResult:
    """What the statistics stage wrote: rows and feature counts per split."""

    rows: dict[str, int]
    features: dict[str, int]
    feature_names: list[str]
    method: str

    def metadata(self) -> dict[str, Any]:
        return {
            names.META_ROWS: self.rows,
            names.META_SPLITS: list(self.rows),
            META_FEATURES: len(self.feature_names),
            META_FEATURES_PER_SPLIT: self.features,
            "feature_names": self.feature_names,
            "method": self.method,
        }


# --- Computing statistics. ---------------------------------------------------------------------


def compute_statistics(files: list[Path], *, batch_size: int = BATCH_SIZE) -> Any:
    """TFDV statistics of the ``tf.Example`` records in ``files``, computed in process.

    Runs TFDV's in-memory generator set (basic stats with quantile histograms, sketch-based
    top-k/unique counts) over a stream of decoded record batches.
    """
    import tensorflow_data_validation as tfdv
    from tensorflow_data_validation.statistics import stats_impl
    from tfx_bsl.coders import example_coder

    options = tfdv.StatsOptions()
    generators = stats_impl.get_generators(options, in_memory=True)
    accumulators = [g.create_accumulator() for g in generators]
    decoder = example_coder.ExamplesToRecordBatchDecoder()
    batch: list[bytes] = []

    def flush(path: Path) -> None:
        try:
            record_batch = decoder.DecodeBatch(batch)
        except Exception as e:  # noqa: BLE001 (the C++ decoder raises plain RuntimeError/ValueError)
            raise StageError(STAGE, str(path), f"records are not tf.Example protos: {e}") from e
        for i, gen in enumerate(generators):
            try:
                accumulators[i] = gen.add_input(accumulators[i], record_batch)
            except (TypeError, ValueError) as e:
                raise StageError(STAGE, str(path), f"inconsistent feature values: {e}") from e
        batch.clear()

    for path in files:
        for record in read_tfrecords(path, STAGE):
            batch.append(record)
            if len(batch) >= batch_size:
                flush(path)
        if batch:
            flush(path)
    return stats_impl.extract_statistics_output(accumulators, generators)


def compute_statistics_beam(files: list[Path], beam_args: str) -> Any:
    """The same statistics through Beam (``tfdv.generate_statistics_from_tfrecord``), as TFX runs them."""
    import tempfile

    import tensorflow_data_validation as tfdv

    from components.lib.beam import pipeline_options

    with tempfile.TemporaryDirectory() as tmp:
        return tfdv.generate_statistics_from_tfrecord(
            [str(f) for f in files],  # type: ignore[arg-type]  # tfx-bsl's source takes a list of patterns
            output_path=str(Path(tmp) / "stats.tfrecord"),
            pipeline_options=pipeline_options(beam_args, STAGE),
        )


def run_statistics(examples_dir: Path, output_dir: Path, *, beam_args: str = "") -> StatisticsResult:
    """Statistics for every split under ``examples_dir``, written to ``output_dir/Split-<split>/``.

    ``beam_args`` empty: in-process (fast, memory-bounded); otherwise the Beam path with these options.
    """
    splits = examples.find_splits(examples_dir, STAGE)
    rows: dict[str, int] = {}
    features: dict[str, int] = {}
    ordered: list[str] = []
    for split, folder in splits.items():
        files = examples.split_files(examples_dir, split, STAGE)
        stats = compute_statistics_beam(files, beam_args) if beam_args else compute_statistics(files)
        dataset = stats.datasets[0]
        if dataset.num_examples == 0:
            raise StageError(STAGE, str(folder), "split has no examples")
        write_statistics(output_dir, split, stats)
        rows[split] = int(dataset.num_examples)
        features[split] = len(dataset.features)
        ordered += [n for n in (feature_name(f) for f in dataset.features) if n not in ordered]
    return StatisticsResult(
        rows=rows, features=features, feature_names=ordered, method="beam" if beam_args else "in-process"
    )


# --- The HTML report. ----------------------------------------------------------------------------


def _split_view(dataset: Any) -> dict[str, Any]:
    """``{feature name: FeatureNameStatistics}`` of one dataset."""
    return {feature_name(f): f for f in dataset.features}


def _common(feature: Any) -> Any:
    return (
        feature.num_stats.common_stats if feature.HasField("num_stats") else feature.string_stats.common_stats
    )


def _type_name(feature: Any) -> str:
    from tensorflow_metadata.proto.v0 import statistics_pb2

    return statistics_pb2.FeatureNameStatistics.Type.Name(feature.type)


def _missing_fraction(feature: Any, num_examples: int) -> float:
    common = _common(feature)
    total = common.num_non_missing + common.num_missing
    return (common.num_missing / total) if total else (1.0 if num_examples else 0.0)


def _histogram(feature: Any) -> list[tuple[float, float, float]]:
    from tensorflow_metadata.proto.v0 import statistics_pb2

    for h in feature.num_stats.histograms:
        if h.type == statistics_pb2.Histogram.STANDARD:
            return [(b.low_value, b.high_value, b.sample_count) for b in h.buckets]
    return []


def _top_values(feature: Any) -> list[tuple[str, float]]:
    ss = feature.string_stats
    if ss.top_values:
        return [(v.value, v.frequency) for v in ss.top_values]
    return [(b.label, b.sample_count) for b in ss.rank_histogram.buckets]


def render_report(stats_by_split: dict[str, Any], *, title: str = "Data statistics") -> str:
    """One self-contained HTML page: per split and per feature, train and eval side by side.

    Shows type, count, missing share, mean/std/min/median/max and a histogram for numeric
    features, unique count and top values for categorical ones.
    """
    from components.lib import html as h

    splits = list(stats_by_split)
    datasets = {s: stats_by_split[s].datasets[0] for s in splits}
    views = {s: _split_view(d) for s, d in datasets.items()}
    order: list[str] = []
    for s in splits:
        order += [n for n in views[s] if n not in order]
    color = {s: h.PALETTE[i % len(h.PALETTE)] for i, s in enumerate(splits)}

    def first(name: str) -> Any:
        return next(views[s][name] for s in splits if name in views[s])

    numeric = [n for n in order if first(n).HasField("num_stats")]
    categorical = [n for n in order if n not in numeric]

    overview_rows = []
    for n in order:
        row: list[Any] = [h.Raw(f'<a href="#{h.anchor_id(n)}">{h.esc(n)}</a>'), _type_name(first(n))]
        for s in splits:
            f = views[s].get(n)
            if f is None:
                row += [h.Raw(h.badge("absent", "bad")), ""]
            else:
                row += [
                    int(_common(f).num_non_missing),
                    h.fmt_pct(_missing_fraction(f, datasets[s].num_examples)),
                ]
        overview_rows.append(row)
    headers = ["feature", "type"] + [x for s in splits for x in (f"{s}: present", f"{s}: missing")]
    summary = ", ".join(f"{s}: {h.fmt_num(int(datasets[s].num_examples))} rows" for s in splits)
    sections = [
        h.nav(
            [
                ("Overview", "overview"),
                ("Numeric features", "numeric"),
                ("Categorical features", "categorical"),
            ]
        ),
        h.section(
            "Overview",
            h.table(headers, overview_rows, numeric=[2 + 2 * i for i in range(len(splits))]),
            anchor="overview",
        ),
    ]

    cards = []
    for n in numeric:
        stat_rows: list[list[Any]] = []
        labels: tuple[str, ...] = ("count", "missing", "mean", "std dev", "zeros", "min", "median", "max")
        per_split: dict[str, list[Any]] = {}
        for s in splits:
            f = views[s].get(n)
            if f is None or not f.HasField("num_stats"):
                per_split[s] = ["absent", *[""] * (len(labels) - 1)]
                continue
            ns = f.num_stats
            present = ns.common_stats.num_non_missing
            per_split[s] = [
                int(present),
                h.fmt_pct(_missing_fraction(f, datasets[s].num_examples)),
                ns.mean,
                ns.std_dev,
                h.fmt_pct(ns.num_zeros / present) if present else "",
                ns.min,
                ns.median,
                ns.max,
            ]
        for i, lab in enumerate(labels):
            stat_rows.append([lab] + [per_split[s][i] for s in splits])
        charts = [
            h.histogram(_histogram(views[s][n]), title=f"{s}", color=color[s])
            if n in views[s] and views[s][n].HasField("num_stats")
            else h.paragraph(f"{s}: absent", muted=True)
            for s in splits
        ]
        cards.append(
            h.card(
                f"{n} ({_type_name(first(n))})",
                h.grid(h.table(["", *splits], stat_rows), *charts),
                anchor=h.anchor_id(n),
            )
        )
    sections.append(
        h.section("Numeric features", *(cards or [h.paragraph("none", muted=True)]), anchor="numeric")
    )

    cards = []
    for n in categorical:
        labels = ("count", "missing", "unique", "avg length")
        per_split = {}  # a fresh dict per feature
        tops: dict[str, dict[str, float]] = {}
        for s in splits:
            f = views[s].get(n)
            if f is None or not f.HasField("string_stats"):
                per_split[s] = ["absent", "", "", ""]
                tops[s] = {}
                continue
            ss = f.string_stats
            per_split[s] = [
                int(ss.common_stats.num_non_missing),
                h.fmt_pct(_missing_fraction(f, datasets[s].num_examples)),
                int(ss.unique),
                ss.avg_length,
            ]
            tops[s] = dict(_top_values(f))
        stat_rows = [[lab, *(per_split[s][i] for s in splits)] for i, lab in enumerate(labels)]
        # Top values: the union, ordered by the first split's frequency, with each split's share.
        values: list[str] = []
        for s in splits:
            values += [v for v, _ in sorted(tops[s].items(), key=lambda kv: -kv[1]) if v not in values]
        shown = values[:TOP_VALUES_SHOWN]
        totals = {s: sum(tops[s].values()) or 1.0 for s in splits}
        top_rows: list[list[Any]] = [
            [v]
            + [x for s in splits for x in (tops[s].get(v, 0.0), h.fmt_pct(tops[s].get(v, 0.0) / totals[s]))]
            for v in shown
        ]
        top_headers = ["value"] + [x for s in splits for x in (f"{s}: count", f"{s}: share")]
        charts = [
            h.bar_chart(shown, [tops[s].get(v, 0.0) for v in shown], title=s, color=color[s]) for s in splits
        ]
        more = len(values) - len(shown)
        note = [h.paragraph(f"… and {more} more value(s) not shown", muted=True)] if more > 0 else []
        cards.append(
            h.card(
                f"{n} ({_type_name(first(n))})",
                h.grid(
                    h.table(["", *splits], stat_rows),
                    h.table(top_headers, top_rows, caption="top values"),
                ),
                h.grid(*charts),
                *note,
                anchor=h.anchor_id(n),
            )
        )
    sections.append(
        h.section("Categorical features", *(cards or [h.paragraph("none", muted=True)]), anchor="categorical")
    )
    subtitle = f"{summary} · {len(order)} features · TensorFlow Data Validation statistics"
    return h.page(title, sections, subtitle=subtitle)
