"""Validate: eval stats against the schema, drift/skew, fail_on policies, files written before failing."""

from __future__ import annotations

import csv
import io
import re
import shutil
from pathlib import Path

import pytest
from conftest import examples_from_csv, output_artifacts, run_component
from kfp import dsl

from components import defaults, names
from components.errors import StageError
from components.schema import schema
from components.statistics import statistics
from components.validate import validate


def _stats_and_schema(examples_dir: Path, out: Path) -> tuple[dsl.Artifact, dsl.Artifact]:
    ex = dsl.Dataset(
        name="examples", uri=str(out / "examples"), metadata={names.META_STORAGE_PATH: str(examples_dir)}
    )
    stats = run_component(
        statistics, out / "statistics", examples=ex, storage_root=str(out / "volume"), run_id="v"
    )["statistics"]
    sch = run_component(
        schema, out / "schema", statistics=stats, label=names.LABEL, schema_file="", storage_root=str(out)
    )["schema"]
    return stats, sch


@pytest.fixture(scope="module")
def clean(examples, tmp_path_factory) -> tuple[dsl.Artifact, dsl.Artifact]:
    """Statistics and inferred schema of the session's examples (train and eval from one CSV)."""
    return _stats_and_schema(
        Path(examples.metadata[names.META_STORAGE_PATH]), tmp_path_factory.mktemp("clean")
    )


@pytest.fixture(scope="module")
def synthetic_rows(synthetic_csv) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(synthetic_csv.read_text())))


@pytest.fixture
def with_eval(examples, clean, write_csv, tmp_path):
    """Factory: statistics whose train split is the session's and whose eval split comes from
    ``rows`` (written with ``write_csv`` and run through ExampleGen), plus the clean schema.
    """

    def _make(
        rows: list[dict[str, str]], columns: list[str] | None = None
    ) -> tuple[dsl.Artifact, dsl.Artifact]:
        columns = columns or list(names.COLUMNS)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        data = write_csv(buf.getvalue(), "eval_source.csv")
        gen = examples_from_csv(
            tmp_path, data, "eval-source", label=names.LABEL if names.LABEL in columns else columns[0]
        )
        mixed = tmp_path / "mixed_examples"
        train_dir = Path(examples.metadata[names.META_STORAGE_PATH]) / names.split_dir(names.TRAIN)
        shutil.copytree(train_dir, mixed / names.split_dir(names.TRAIN))
        eval_dir = Path(gen.metadata[names.META_STORAGE_PATH]) / names.split_dir(names.EVAL)
        shutil.copytree(eval_dir, mixed / names.split_dir(names.EVAL))
        stats, _ = _stats_and_schema(mixed, tmp_path / "mixed")
        return stats, clean[1]

    return _make


def run_validate(
    kfp_dir: Path,
    stats,
    sch,
    *,
    fail_on=defaults.FAIL_ON,
    skew=defaults.SKEW_THRESHOLD,
    drift=defaults.DRIFT_THRESHOLD,
    label=names.LABEL,
):
    outputs = output_artifacts(validate, kfp_dir)
    error = None
    try:
        validate.python_func(
            statistics=stats,
            schema=sch,
            label=label,
            fail_on=fail_on,
            skew_threshold=skew,
            drift_threshold=drift,
            storage_root=str(kfp_dir.parent / "volume"),
            run_id="run-v",
            model_name=names.MODEL_NAME,
            **outputs,
        )
    except StageError as e:
        error = e
    return outputs["anomalies"], outputs["report"], error


def load_anomalies(art: dsl.Artifact):
    # TFX's reader for SchemaDiff.pb (not re-exported at tfdv's top level in TFDV 1.16).
    from tensorflow_data_validation.utils import anomalies_util

    return anomalies_util.load_anomalies_binary(
        str(Path(art.path) / names.split_dir(names.EVAL) / names.ANOMALIES_FILE)
    )


def reason_types(anomalies, feature: str) -> set[str]:
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    return {anomalies_pb2.AnomalyInfo.Type.Name(r.type) for r in anomalies.anomaly_info[feature].reason}


def test_clean_data_is_ok(tmp_path, clean):
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    anomalies, report, error = run_validate(tmp_path / "kfp", *clean)
    assert error is None
    assert anomalies.metadata["verdict"] == "ok" and anomalies.metadata["anomalies"] == 0
    a = load_anomalies(anomalies)
    assert not a.anomaly_info and not a.data_missing
    # Drift and skew were measured for every feature, below the thresholds.
    measured = {".".join(d.path.step) for d in a.drift_skew_info}
    assert measured == set(names.COLUMNS)
    skew = anomalies.metadata["skew"]
    assert set(skew) == set(names.COLUMNS) and all(0 <= v < defaults.SKEW_THRESHOLD for v in skew.values())
    # No model is served on this volume: drift is not computed, and the report says why.
    assert anomalies.metadata["drift"] == {}
    assert anomalies.metadata["drift_reference"].startswith("not computed: no version of model 'insurance'")
    text = (Path(anomalies.path) / names.split_dir(names.EVAL) / names.ANOMALIES_TEXT_FILE).read_text()
    assert text_format.Parse(text, anomalies_pb2.Anomalies()) == a
    page = Path(report.path).read_text()
    assert page.startswith("<!DOCTYPE html>") and '<span class="badge ok">OK</span>' in page
    assert "No anomalies." in page and "Drift was not computed: no version of model" in page
    assert report.metadata["verdict"] == "ok"


def test_unseen_category_is_reported_not_failing(tmp_path, with_eval, synthetic_rows):
    rows = [dict(r, region="atlantis") if i % 25 == 0 else r for i, r in enumerate(synthetic_rows)]
    stats, sch = with_eval(rows)
    anomalies, report, error = run_validate(tmp_path / "kfp", stats, sch, fail_on="unsafe")
    assert error is None
    assert anomalies.metadata["verdict"] == "anomalies"
    assert anomalies.metadata["unseen_categories"] == {"region": ["atlantis"]}
    assert anomalies.metadata["unsafe"] == 0
    assert "ENUM_TYPE_UNEXPECTED_STRING_VALUES" in reason_types(load_anomalies(anomalies), "region")
    page = Path(report.path).read_text()
    assert "<h2>Categories not seen in train</h2>" in page
    assert "<td><code>region</code></td><td><code>atlantis</code></td>" in page
    assert "add them to the schema&#x27;s domain" in page  # what to do about it
    # fail_on=any fails on the same data, after writing the files.
    anomalies, _, error = run_validate(tmp_path / "kfp", stats, sch, fail_on="any")
    assert error is not None and "region" in str(error)
    assert anomalies.metadata["verdict"] == "failed"


def test_eval_without_label_fails_and_still_writes_the_anomalies(tmp_path, with_eval, synthetic_rows):
    stats, sch = with_eval(synthetic_rows, columns=list(names.FEATURES))
    anomalies, report, error = run_validate(tmp_path / "kfp", stats, sch, fail_on="unsafe")
    assert error is not None
    anomalies_file = Path(anomalies.path) / names.split_dir(names.EVAL) / names.ANOMALIES_FILE
    assert str(error).startswith(f"[validate] {anomalies_file}: 1 unsafe anomaly")
    assert "charges: Column is completely missing" in str(error)
    assert "SCHEMA_MISSING_COLUMN" in reason_types(load_anomalies(anomalies), names.LABEL)
    assert anomalies.metadata["verdict"] == "failed"
    assert anomalies.metadata["unsafe_features"] == [names.LABEL]
    page = Path(report.path).read_text()
    assert '<span class="badge bad">FAILED</span>' in page
    row = re.search(r'<tr class="bad"><td><code>charges</code></td>(.*?)</tr>', page)
    assert row, page
    assert '<span class="badge bad">ERROR</span>' in row[1] and "stops the run" in row[1]
    assert "The column is missing from the eval data" in row[1]  # what to do
    # KFP does not upload a failed task's outputs: the report is kept on the volume too.
    kept = Path(anomalies.metadata[names.META_STORAGE_PATH])
    assert kept.parts[-3:] == (names.ARTIFACTS_DIR, "run-v", names.STAGE_VALIDATE)
    assert (kept / names.REPORT_HTML_FILE).read_text() == page
    assert report.metadata[names.META_STORAGE_PATH] == str(kept / names.REPORT_HTML_FILE)
    assert (kept / names.split_dir(names.EVAL) / names.ANOMALIES_FILE).exists()


def test_mistyped_feature_fails(tmp_path, with_eval, synthetic_rows):
    rows = [dict(r, bmi=f"x{r['bmi']}") for r in synthetic_rows]  # bmi becomes a string feature
    stats, sch = with_eval(rows)
    anomalies, _, error = run_validate(tmp_path / "kfp", stats, sch, fail_on="unsafe")
    assert error is not None and "bmi: Expected data of type: FLOAT but got STRING" in str(error)
    assert "UNEXPECTED_DATA_TYPE" in reason_types(load_anomalies(anomalies), "bmi")
    assert anomalies.metadata["unsafe_features"] == ["bmi"]


def test_partly_missing_feature_is_reported_and_a_partly_missing_label_is_unsafe(
    tmp_path, with_eval, synthetic_rows
):
    """Transform reads every feature but the label as optional and the built-in modules impute:
    gaps in a feature are an anomaly to look at, gaps in the label stop the run."""
    rows = [dict(r, age="") if i % 5 == 0 else r for i, r in enumerate(synthetic_rows)]
    stats, sch = with_eval(rows)
    anomalies, report, error = run_validate(tmp_path / "kfp", stats, sch, fail_on="unsafe")
    assert error is None and anomalies.metadata["verdict"] == "anomalies"
    assert "FEATURE_TYPE_LOW_FRACTION_PRESENT" in reason_types(load_anomalies(anomalies), "age")
    assert anomalies.metadata["unsafe_features"] == []
    assert "the built-in modules impute it" in Path(report.path).read_text()
    # ExampleGen refuses rows without a label; had one slipped through, it is unsafe.
    from components.lib.validate import findings_of

    a = load_anomalies(anomalies)
    a.anomaly_info[names.LABEL].CopyFrom(a.anomaly_info["age"])
    a.anomaly_info[names.LABEL].path.step[:] = [names.LABEL]
    unsafe = {f.feature: f.unsafe for f in findings_of(a, names.LABEL)}
    assert unsafe == {"age": False, names.LABEL: True}
    assert all(f.unsafe for f in findings_of(a))  # without a label named: TFDV's reasons alone


def test_fail_on_none_never_raises(tmp_path, with_eval, synthetic_rows):
    rows = [dict(r, bmi=f"x{r['bmi']}", region="atlantis") for r in synthetic_rows]
    stats, sch = with_eval(rows, columns=list(names.FEATURES))
    anomalies, report, error = run_validate(tmp_path / "kfp", stats, sch, fail_on="none", drift=0.0)
    assert error is None
    assert anomalies.metadata["verdict"] == "anomalies"
    assert set(anomalies.metadata["unsafe_features"]) == {"bmi", names.LABEL}
    assert anomalies.metadata["unseen_categories"] == {"region": ["atlantis"]}
    assert '<span class="badge warn">ANOMALIES</span>' in Path(report.path).read_text()


def serve_a_model(volume: Path, train_stats: Path, run_id: str = "served-run") -> None:
    """A volume on which version 1 of the model is served, trained on ``train_stats`` in ``run_id``.

    What push and statistics leave there: the registry entry, the version's SavedModel directory
    (its saved_model.pb is all the baseline rule looks at) and the run's statistics.
    """
    import json

    serving = volume / names.SERVING_DIR / names.MODEL_NAME / "1"
    serving.mkdir(parents=True)
    (serving / "saved_model.pb").write_bytes(b"")
    kept = volume / names.ARTIFACTS_DIR / run_id / names.STAGE_STATISTICS / names.split_dir(names.TRAIN)
    kept.mkdir(parents=True)
    shutil.copyfile(train_stats, kept / names.STATS_FILE)
    entry = {
        "version": 1,
        "model_name": names.MODEL_NAME,
        "model_location": "",
        "serving_path": str(serving),
        "blessing": {"verdict": names.BLESSED},
        "metrics": {},
        "fingerprint": "",
        "run_id": run_id,
        "time": "",
    }
    (volume / names.REGISTRY_DIR).mkdir(parents=True)
    (volume / names.REGISTRY_INDEX).write_text(json.dumps({"format": 1, "versions": [entry]}))


def test_drift_compares_the_train_split_with_the_served_models_and_skew_the_splits(
    tmp_path, clean, with_eval, synthetic_rows
):
    # The served model was trained on other rows (a third of them): the data moved a little.
    other, _ = with_eval(synthetic_rows[::3])
    serve_a_model(tmp_path / "volume", Path(other.path) / names.split_dir(names.EVAL) / names.STATS_FILE)
    anomalies, report, error = run_validate(tmp_path / "kfp", *clean, drift=1e-6)
    assert error is None  # drift alone does not make training unsafe
    # Over the tiny threshold, but a sample of the same table: chance, so notes and not anomalies.
    assert anomalies.metadata["verdict"] == "ok" and anomalies.metadata["anomalies"] == 0
    a = load_anomalies(anomalies)
    assert "COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH" in reason_types(a, "bmi")
    assert "COMPARATOR_L_INFTY_HIGH" in reason_types(a, "smoker")
    drift, skew = anomalies.metadata["drift"], anomalies.metadata["skew"]
    assert set(drift) == set(names.COLUMNS) and drift["bmi"] > 1e-6
    assert drift != skew  # they compare different data
    reference = anomalies.metadata["drift_reference"]
    assert reference.startswith("the train split of insurance v1, the served model (run served-run")
    page = Path(report.path).read_text()
    assert "Drift: this run&#x27;s training data vs the served model&#x27;s" in page
    assert "Skew: eval split vs train split of this run" in page and "over threshold" in page
    assert "drift: a distance of" in page and "give by chance" in page  # why each is a note
    # The schema artifact itself is not modified by the comparators.
    assert "comparator" not in (Path(clean[1].path) / names.SCHEMA_FILE).read_text()


def test_drift_on_unchanged_data_is_zero(tmp_path, clean):
    serve_a_model(tmp_path / "volume", Path(clean[0].path) / names.split_dir(names.TRAIN) / names.STATS_FILE)
    anomalies, _, error = run_validate(tmp_path / "kfp", *clean)
    assert error is None and anomalies.metadata["verdict"] == "ok"
    assert set(anomalies.metadata["drift"]) == set(names.COLUMNS)
    assert set(anomalies.metadata["drift"].values()) == {0.0}
    assert any(v > 0 for v in anomalies.metadata["skew"].values())


def test_drift_without_the_served_runs_statistics_says_why(tmp_path, clean):
    serve_a_model(tmp_path / "volume", Path(clean[0].path) / names.split_dir(names.TRAIN) / names.STATS_FILE)
    shutil.rmtree(tmp_path / "volume" / names.ARTIFACTS_DIR / "served-run")
    anomalies, report, _ = run_validate(tmp_path / "kfp", *clean)
    assert anomalies.metadata["drift"] == {}
    assert anomalies.metadata["drift_reference"].startswith(
        "not computed: the training statistics of insurance v1 (run served-run) are not on the volume"
    )
    assert "Drift was not computed: the training statistics of insurance v1" in Path(report.path).read_text()


def test_low_skew_threshold_reports_skew(tmp_path, clean):
    anomalies, _, error = run_validate(tmp_path / "kfp", *clean, skew=1e-6)
    assert error is None
    a = load_anomalies(anomalies)
    descriptions = " ".join(info.description for info in a.anomaly_info.values())
    assert "training and serving" in descriptions


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"fail_on": "sometimes"}, "fail_on must be one of"),
        ({"drift": -0.1}, "drift_threshold must be a number >= 0"),
        ({"skew": float("nan")}, "skew_threshold must be a number >= 0"),
    ],
)
def test_bad_parameters_are_errors(tmp_path, clean, kwargs, problem):
    _, _, error = run_validate(tmp_path / "kfp", *clean, **kwargs)
    assert error is not None and str(error).startswith("[validate]") and problem in str(error)


def test_label_not_in_schema_is_an_error(tmp_path, clean):
    _, _, error = run_validate(tmp_path / "kfp", *clean, label="price")
    assert error is not None
    schema_file = Path(clean[1].path) / names.SCHEMA_FILE
    assert str(error) == f"[validate] {schema_file}: label 'price' is not a feature of the schema"


def test_missing_eval_statistics_is_an_error(clean, tmp_path):
    stats_dir = tmp_path / "stats"
    shutil.copytree(
        Path(clean[0].path) / names.split_dir(names.TRAIN), stats_dir / names.split_dir(names.TRAIN)
    )
    stats = dsl.Artifact(name="statistics", uri=str(stats_dir), metadata={})
    _, _, error = run_validate(tmp_path / "kfp", stats, clean[1])
    assert error is not None and "Split-eval/FeatureStats.pb: cannot read statistics" in str(error)


@pytest.mark.parametrize(("fail_on", "fails"), [("unsafe", False), ("any", True), ("none", False)])
def test_comparator_anomalies_stop_the_run_only_under_fail_on_any(
    tmp_path, with_eval, synthetic_rows, fail_on, fails
):
    """The fail_on policy for drift/skew: see components/lib/validate/verdict.py.

    An eval split of smokers only: skew far beyond sampling noise. TFDV's severity (ERROR) stays in
    the anomalies proto; validate's finding is a WARNING with skew's advice.
    """
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    stats, sch = with_eval([dict(r, smoker="yes") for r in synthetic_rows])
    anomalies, report, error = run_validate(tmp_path / "kfp", stats, sch, fail_on=fail_on)
    a = load_anomalies(anomalies)
    assert "COMPARATOR_L_INFTY_HIGH" in reason_types(a, "smoker")
    assert {i.severity for i in a.anomaly_info.values()} == {anomalies_pb2.AnomalyInfo.ERROR}
    assert "smoker" in anomalies.metadata["anomalous_features"]
    assert anomalies.metadata["unsafe"] == 0  # no comparator anomaly makes training unsafe
    assert (error is not None) is fails
    assert anomalies.metadata["verdict"] == ("failed" if fails else "anomalies")
    row = re.search(r"<td><code>smoker</code></td>(.*?)</tr>", Path(report.path).read_text())
    assert row and '<span class="badge warn">WARNING</span>' in row[1]
    assert "Skew: this run&#x27;s eval split differs from its train split" in row[1]


def test_skew_within_sampling_noise_is_a_note_not_an_anomaly(tmp_path, clean):
    """Two hash-split halves of one table: a tiny threshold finds distances, all of them chance."""
    anomalies, report, error = run_validate(tmp_path / "kfp", *clean, fail_on="any", skew=1e-6)
    assert load_anomalies(anomalies).anomaly_info  # TFDV: every feature over the threshold
    assert error is None and anomalies.metadata["verdict"] == "ok" and anomalies.metadata["anomalies"] == 0
    page = Path(report.path).read_text()
    anomalies_section = page[page.index('id="anomalies"') : page.index('id="served"')]
    assert "within sampling noise" in anomalies_section, anomalies_section


@pytest.mark.parametrize(("fail_on", "stops"), [("unsafe", False), ("any", True)])
def test_cells_example_gen_wrote_missing_for_being_non_finite_are_an_anomaly(tmp_path, clean, fail_on, stops):
    """ExampleGen's ``non_finite`` (via the statistics' metadata) is a WARNING naming the first cell."""
    import copy

    stats, sch = clean
    stats = copy.copy(stats)  # the fixture's artifact is shared: give this one its own metadata
    found = {"bmi": {"count": 2, "first": "/v/data/x.csv:7", "value": "1e39"}}
    stats.metadata = {**stats.metadata, names.META_NON_FINITE: found}
    anomalies, report, error = run_validate(tmp_path / "kfp", stats, sch, fail_on=fail_on)
    assert anomalies.metadata["verdict"] == ("failed" if stops else "anomalies")
    assert "bmi" in anomalies.metadata["anomalous_features"]
    assert (error is not None) is stops
    if stops:
        assert (
            "bmi: 2 cell(s) were inf, nan or beyond float32's range (first '1e39' at /v/data/x.csv:7)"
            in str(error)
        )
    assert "/v/data/x.csv:7" in Path(report.path).read_text()


def test_the_report_lists_the_columns_that_are_not_model_features(tmp_path, clean):
    """A column the schema stage tagged as excluded is named in validate's report with the reason."""
    import copy

    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    stats, sch = clean
    tagged = schema_pb2.Schema()
    text_format.Parse((Path(sch.path) / names.SCHEMA_FILE).read_text(), tagged)
    region = next(f for f in tagged.feature if f.name == "region")
    region.annotation.tag.append("kubetfx:excluded:parameter")
    region.annotation.comment.append("kubetfx:excluded: exclude_features parameter")
    (tmp_path / "tagged").mkdir()
    (tmp_path / "tagged" / names.SCHEMA_FILE).write_text(text_format.MessageToString(tagged))
    sch = copy.copy(sch)
    sch.path = str(tmp_path / "tagged")
    _, report, error = run_validate(tmp_path / "kfp", stats, sch)
    assert error is None
    page = Path(report.path).read_text()
    assert "Columns that are not model features" in page
    assert "<code>region</code></td><td>exclude_features parameter" in page
