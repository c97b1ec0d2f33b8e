"""Statistics: TFDV stats per split in TFX's layout, a self-contained HTML report, bad input."""

from __future__ import annotations

import gzip
import re
import shutil
from pathlib import Path

import pytest
from conftest import run_component
from kfp import dsl

from components import names
from components.errors import StageError
from components.lib import charts, html
from components.lib.examples import split_files
from components.lib.statistics import compute_statistics, compute_statistics_beam
from components.lib.statistics_io import feature_name
from components.lib.tfrecord import read_tfrecords
from components.statistics import statistics


def run_statistics_on(examples_dir: Path, out: Path) -> tuple[dsl.Artifact, dsl.HTML]:
    """statistics.python_func on an examples folder; returns its two output artifacts."""
    ex = dsl.Dataset(
        name="examples", uri=str(out / "examples"), metadata={names.META_STORAGE_PATH: str(examples_dir)}
    )
    outputs = run_component(statistics, out, examples=ex, storage_root=str(out / "volume"), run_id="stats")
    return outputs["statistics"], outputs["report"]


@pytest.fixture(scope="module")
def stats_run(examples, tmp_path_factory) -> tuple[dsl.Artifact, dsl.HTML]:
    """The statistics stage on the session's ExampleGen output, run once for this module."""
    out = tmp_path_factory.mktemp("statistics")
    ex = dsl.Dataset(name="examples", uri=examples.uri, metadata=dict(examples.metadata))
    outputs = run_component(statistics, out, examples=ex, storage_root=str(out / "volume"), run_id="stats")
    return outputs["statistics"], outputs["report"]


def examples_dir_of(examples) -> Path:
    return Path(examples.metadata[names.META_STORAGE_PATH])


def decoded_split(examples, split: str) -> list[dict[str, object]]:
    """The examples of one split as {feature: first value}, decoded without TFDV."""
    from components.lib.tf_example import example_class

    cls = example_class()
    rows = []
    for f in split_files(examples_dir_of(examples), split, names.STAGE_STATISTICS):
        for record in read_tfrecords(f, "statistics"):
            ex = cls.FromString(record)
            row = {}
            for k, feat in ex.features.feature.items():
                kind = feat.WhichOneof("kind")
                row[k] = getattr(feat, kind).value[0]
            rows.append(row)
    return rows


def test_stats_in_tfx_layout_with_right_rows_and_features(stats_run, examples):
    import tensorflow_data_validation as tfdv

    stats_art, _ = stats_run
    for split in names.SPLITS:
        path = Path(stats_art.path) / names.split_dir(split) / names.STATS_FILE
        stats = tfdv.load_stats_binary(str(path))
        (dataset,) = stats.datasets
        assert dataset.num_examples == examples.metadata[names.META_ROWS][split]
        assert {feature_name(f) for f in dataset.features} == set(names.COLUMNS)
    assert stats_art.metadata[names.META_ROWS] == examples.metadata[names.META_ROWS]
    assert stats_art.metadata["features"] == 7
    assert sum(stats_art.metadata[names.META_ROWS].values()) == 300


def test_stats_values_match_the_data(stats_run, examples):
    """Mean/min/max and category counts agree with the records decoded independently."""
    import tensorflow_data_validation as tfdv

    stats_art, _ = stats_run
    rows = decoded_split(examples, names.EVAL)
    stats = tfdv.load_stats_binary(str(Path(stats_art.path) / names.split_dir(names.EVAL) / names.STATS_FILE))
    by_name = {feature_name(f): f for f in stats.datasets[0].features}
    bmi = [float(r["bmi"]) for r in rows]
    assert by_name["bmi"].num_stats.mean == pytest.approx(sum(bmi) / len(bmi), rel=1e-5)
    assert by_name["bmi"].num_stats.min == pytest.approx(min(bmi), rel=1e-6)
    assert by_name["bmi"].num_stats.max == pytest.approx(max(bmi), rel=1e-6)
    smokers = sum(r["smoker"] == b"yes" for r in rows)
    top = {v.value: v.frequency for v in by_name["smoker"].string_stats.top_values}
    assert top["yes"] == smokers
    assert by_name["region"].string_stats.unique == len({r["region"] for r in rows})


def test_in_process_statistics_equal_beam_statistics(examples):
    """The fast path computes what TFX's Beam path computes (up to float rounding)."""
    files = split_files(examples_dir_of(examples), names.TRAIN, names.STAGE_STATISTICS)
    fast = compute_statistics(files).datasets[0]
    beam = compute_statistics_beam(files, "--runner=DirectRunner").datasets[0]
    assert fast.num_examples == beam.num_examples
    fast_f = {feature_name(f): f for f in fast.features}
    beam_f = {feature_name(f): f for f in beam.features}
    assert set(fast_f) == set(beam_f) == set(names.COLUMNS)
    for name in names.NUMERIC_FEATURES + (names.LABEL,):
        a, b = fast_f[name].num_stats, beam_f[name].num_stats
        for field in ("mean", "std_dev", "min", "max", "median", "num_zeros"):
            assert getattr(a, field) == pytest.approx(getattr(b, field), rel=1e-9), (name, field)
    for name in names.CATEGORICAL_FEATURES:
        a, b = fast_f[name].string_stats, beam_f[name].string_stats
        assert a.unique == b.unique
        assert {(v.value, v.frequency) for v in a.top_values} == {
            (v.value, v.frequency) for v in b.top_values
        }


def test_batches_accumulate_to_the_same_statistics(examples):
    """Streaming in small batches gives the statistics of one big batch (the accumulators merge)."""
    files = split_files(examples_dir_of(examples), names.EVAL, names.STAGE_STATISTICS)
    whole = compute_statistics(files).datasets[0]
    pieces = compute_statistics(files, batch_size=7).datasets[0]
    assert pieces.num_examples == whole.num_examples
    a = {feature_name(f): f for f in whole.features}
    b = {feature_name(f): f for f in pieces.features}
    for name in names.NUMERIC_FEATURES:
        assert b[name].num_stats.mean == pytest.approx(a[name].num_stats.mean, rel=1e-9)
        assert b[name].num_stats.max == a[name].num_stats.max
    assert b["region"].string_stats.top_values == a["region"].string_stats.top_values


def test_report_is_self_contained_and_covers_every_feature(stats_run):
    _, report = stats_run
    doc = Path(report.path).read_text(encoding="utf-8")
    assert doc.startswith("<!DOCTYPE html>")
    lowered = doc.lower()
    assert lowered.count("<script") == 1 and "<script>" in lowered  # one inline script: sort, filter
    assert "http://" not in lowered and "https://" not in lowered
    assert "<link" not in lowered and "@import" not in lowered and "url(" not in lowered
    assert not re.search(r"\ssrc\s*=", lowered)
    for feature in names.COLUMNS:
        assert f'id="{html.anchor_id(feature)}"' in doc, feature
        assert f"<h3>{feature} (" in doc, feature
    # One chart per feature: the splits share its axes (overlaid histogram, side-by-side bars).
    assert doc.count("<svg") == len(names.COLUMNS)
    for split in names.SPLITS:
        assert f"{split}: present" in doc
    assert not re.search(r"\de[+-]\d", doc)  # no 6.377e+04: numbers for people


def test_report_is_kept_on_the_volume_beside_the_statistics(stats_run):
    stats, report = stats_run
    kept = Path(stats.metadata[names.META_STORAGE_PATH])
    assert kept.parts[-3:] == (names.ARTIFACTS_DIR, "stats", names.STAGE_STATISTICS)
    assert report.metadata[names.META_STORAGE_PATH] == str(kept / names.REPORT_HTML_FILE)
    assert (kept / names.REPORT_HTML_FILE).read_text() == Path(report.path).read_text()
    for split in names.SPLITS:  # what a later run's validate compares its data with (drift)
        assert (kept / names.split_dir(split) / names.STATS_FILE).read_bytes() == (
            Path(stats.path) / names.split_dir(split) / names.STATS_FILE
        ).read_bytes()


def test_missing_eval_split_is_an_error(examples, tmp_path):
    src = examples_dir_of(examples)
    partial = tmp_path / "examples"
    shutil.copytree(src / names.split_dir(names.TRAIN), partial / names.split_dir(names.TRAIN))
    with pytest.raises(StageError, match=r"\[statistics\] .*examples: no Split-eval folder"):
        run_statistics_on(partial, tmp_path / "out")


def test_examples_missing_from_volume_is_an_error(tmp_path):
    with pytest.raises(StageError, match=r"\[statistics\] .*gone: input data is missing"):
        run_statistics_on(tmp_path / "gone", tmp_path / "out")


def copy_with_first_eval_file(examples, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the session's examples to damage, and the first file of its eval split."""
    copy = tmp_path / "examples"
    shutil.copytree(examples_dir_of(examples), copy)
    return copy, split_files(copy, names.EVAL, names.STAGE_STATISTICS)[0]


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_records_are_an_error_naming_the_file(examples, tmp_path, damage):
    bad, target = copy_with_first_eval_file(examples, tmp_path)
    if damage == "garbage":
        target.write_bytes(gzip.compress(b"this is not a TFRecord file at all"))
        expected = "corrupt length"
    else:
        data = gzip.decompress(target.read_bytes())
        target.write_bytes(gzip.compress(data[: len(data) // 2]))
        expected = "truncated"
    with pytest.raises(StageError, match=rf"\[statistics\] {re.escape(str(target))}: record \d+: {expected}"):
        run_statistics_on(bad, tmp_path / "out")


@pytest.mark.parametrize("beam_args", ["", "--runner=DirectRunner --direct_running_mode=multi_processing"])
def test_examples_fewer_than_example_gen_wrote_are_an_error(examples, tmp_path, beam_args):
    """A split that lost a file (or a runner that lost records) fails; statistics of other data don't pass."""
    short, first = copy_with_first_eval_file(examples, tmp_path)
    records = list(read_tfrecords(first, "test"))
    from components.lib.tfrecord import frame

    first.write_bytes(gzip.compress(b"".join(frame(r) for r in records[:-3])))  # a well-formed file, 3 short
    written = dict(examples.metadata[names.META_ROWS])
    ex = dsl.Dataset(
        name="examples",
        uri=str(tmp_path / "ex"),
        metadata={**examples.metadata, names.META_STORAGE_PATH: str(short)},
    )
    folder = re.escape(str(short / names.split_dir(names.EVAL)))
    with pytest.raises(
        StageError,
        match=rf"^\[statistics\] {folder}: {written['eval'] - 3:,} examples read but ExampleGen wrote "
        rf"{written['eval']:,}",
    ):
        run_component(
            statistics,
            tmp_path / "out",
            examples=ex,
            storage_root=str(tmp_path / "volume"),
            run_id="s",
            beam_args=beam_args,
        )
    assert not (tmp_path / "volume" / names.ARTIFACTS_DIR).exists()  # nothing kept on the volume


def test_html_helpers_escape_text_and_draw_charts():
    doc = html.page(
        "<Report & co>",
        [
            html.section("S", html.table(["a<b", "n"], [["<i>x</i>", 1234.5], [html.Raw("<b>ok</b>"), 3]])),
            charts.grouped_bars(["x&y", "z"], [("s", html.PALETTE[0], [1.0, 2.0])], label="bars"),
        ],
    )
    assert "<title>&lt;Report &amp; co&gt;</title>" in doc
    assert "<th>a&lt;b</th>" in doc and "&lt;i&gt;x&lt;/i&gt;" in doc and "<b>ok</b>" in doc
    assert '<td class="num">1,234</td>' in doc or '<td class="num">1,234.5</td>' in doc
    assert doc.count("<rect") == 2 and "x&amp;y" in doc
    assert "http" not in doc
    # The larger value gets the longer bar.
    widths = [float(w) for w in re.findall(r'<rect [^>]*width="([\d.]+)"', doc)]
    assert widths[1] == pytest.approx(2 * widths[0], abs=0.2)  # drawn to 0.1 px
