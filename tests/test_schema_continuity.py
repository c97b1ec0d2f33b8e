"""Schema continuity: the served version's schema (served.py), push keeping it, validate comparing
with it (severities, the one-line stop, the report section), evaluate's baseline when a type widened.

Statistics and schemas come from small pandas frames through TFDV (in memory, no Beam); the
served versions are registry entries over fake SavedModels (what push and the baseline rule
look at), and the evaluate tests use the tiny SavedModels of ``test_evaluate``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from model_factory import fake_saved_model, push_directly

from components import names
from components.errors import StageError
from components.lib import registry, served
from components.lib.schema_io import write_schema
from components.lib.statistics_io import write_statistics

MODEL = names.MODEL_NAME  # "insurance"
LABEL = names.LABEL  # "charges"
REGIONS = ["northeast", "northwest", "southeast", "southwest"]


def rows(n: int = 40, **change) -> dict[str, list]:
    """Columns of ``n`` insurance-like rows; ``change`` replaces (or, with None, drops) columns."""
    cols: dict[str, list] = {
        "age": [18 + (i * 7) % 47 for i in range(n)],
        "bmi": [20.0 + (i * 3.7) % 20 for i in range(n)],
        "region": [REGIONS[i % 4] for i in range(n)],
        LABEL: [1000.0 + 250.0 * i for i in range(n)],
    }
    for name, values in change.items():
        if values is None:
            cols.pop(name)
        else:
            cols[name] = values
    return cols


def stats_of(columns: dict[str, list]):
    import pandas as pd
    import tensorflow_data_validation as tfdv

    return tfdv.generate_statistics_from_dataframe(pd.DataFrame(columns))


def schema_of(stats):
    import tensorflow_data_validation as tfdv

    return tfdv.infer_schema(stats)


def entry(version: int, serving_path: Path, run_id: str = "served-run", **extra) -> dict:
    e = registry.make_entry(
        version=version,
        model_name=MODEL,
        model_location="",
        serving_path=str(serving_path),
        blessing={"verdict": names.BLESSED},
        metrics={},
        fingerprint="",
        run_id=run_id,
    )
    e.update(extra)
    return e


def serve(
    volume: Path, columns: dict[str, list] | None = None, *, version: int = 3, record: bool = True
) -> Path:
    """A volume on which ``version`` of the model is served, trained on ``columns``.

    What push and statistics leave: the version's SavedModel directory with its schema under
    ``assets.extra/``, the registry entry naming it (``record``), the run's train statistics.
    """
    stats = stats_of(columns or rows())
    version_dir = fake_saved_model(volume / names.SERVING_DIR / MODEL / str(version))
    write_schema(schema_of(stats), served.schema_path(version_dir).parent)
    write_statistics(volume / names.ARTIFACTS_DIR / "served-run" / names.STAGE_STATISTICS, names.TRAIN, stats)
    extra = {"schema": f"serving/{MODEL}/{version}/assets.extra/schema.pbtxt"} if record else {}
    doc = {"format": 1, "versions": [entry(version, version_dir, **extra)]}
    (volume / names.REGISTRY_DIR).mkdir(parents=True, exist_ok=True)
    (volume / names.REGISTRY_INDEX).write_text(json.dumps(doc))
    return version_dir


def validate_run(tmp_path: Path, train: dict, eval_: dict | None = None, *, fail_on: str = "unsafe"):
    """run_validate on this run's data (schema inferred from train) against the volume's served model."""
    from components.lib.validate import run_validate

    train_stats = stats_of(train)
    stats_dir = tmp_path / "stats"
    write_statistics(stats_dir, names.TRAIN, train_stats)
    write_statistics(stats_dir, names.EVAL, stats_of(eval_ or train))
    schema_file = write_schema(schema_of(train_stats), tmp_path / "schema")
    out = tmp_path / "anomalies"
    out.mkdir(exist_ok=True)
    result = run_validate(
        stats_dir,
        schema_file,
        out,
        label=LABEL,
        fail_on=fail_on,
        skew_threshold=1.0,  # skew and drift are validate's other checks, not these tests'
        drift_threshold=1.0,
        storage_root=str(tmp_path / "volume"),
        model_name=MODEL,
        run_id="new-run",
    )
    return result, schema_file, (out / names.REPORT_HTML_FILE).read_text()


def change_of(result, feature: str):
    [found] = [f for f in result.changes if f.feature == feature]
    return found


# --- served.py: the one contract for "the model being served". --------------------------------------


def test_served_entry_is_the_newest_blessed_version_on_the_volume(tmp_path):
    v3 = serve(tmp_path)
    assert served.served_entry(tmp_path, MODEL, "x")["version"] == 3
    gone = tmp_path / names.SERVING_DIR / MODEL / "4"  # newer, blessed, its files deleted by hand
    doc = registry.read_index(tmp_path, "x")
    doc["versions"] += [entry(4, gone), dict(entry(5, v3), blessing={"verdict": names.NOT_BLESSED})]
    registry.index_path(tmp_path).write_text(json.dumps(doc))
    assert served.served_entry(tmp_path, MODEL, "x")["version"] == 3
    assert served.served_entry(tmp_path, "other", "x") is None
    assert served.served_entry(tmp_path / "empty", MODEL, "x") is None
    assert served.schema_path(v3) == v3 / "assets.extra" / "schema.pbtxt"


def test_served_types_and_schema(tmp_path):
    serve(tmp_path)
    assert served.served_types(tmp_path, MODEL, "x") == {
        "age": "INT",
        "bmi": "FLOAT",
        "region": "BYTES",
        LABEL: "FLOAT",
    }
    schema, e = served.served_schema(tmp_path, MODEL, "x")
    assert e["version"] == 3 and [f.name for f in schema.feature] == ["age", "bmi", "region", LABEL]
    assert served.served_types(tmp_path, "other", "x") == {}


def test_old_entries_without_a_schema_key_fall_back(tmp_path):
    """The version's own file, then its run's transform schema, then the parsed inputs (types only)."""
    version_dir = serve(tmp_path, record=False)
    assert served.served_types(tmp_path, MODEL, "x")["bmi"] == "FLOAT"  # assets.extra of the version
    kept = served.schema_path(version_dir)
    transform = served.transform_schema_path(
        tmp_path / names.ARTIFACTS_DIR / "served-run" / names.STAGE_TRANSFORM
    )
    transform.parent.mkdir(parents=True)
    shutil.move(kept, transform)
    assert served.served_types(tmp_path, MODEL, "x")["region"] == "BYTES"  # the run's transform kept it
    transform.unlink()
    assert served.served_types(tmp_path, MODEL, "x") == {}  # no schema anywhere
    (version_dir / "assets.extra" / names.SERVING_INPUTS_FILE).write_text(
        '{"age": "int64", "bmi": "float32"}'
    )
    assert served.served_types(tmp_path, MODEL, "x") == {"age": "INT", "bmi": "FLOAT"}


def test_a_damaged_registry_or_schema_is_the_callers_stage_error(tmp_path):
    version_dir = serve(tmp_path)
    served.schema_path(version_dir).write_text("feature { nonsense")
    with pytest.raises(StageError, match=r"^\[example_gen\] .*schema.pbtxt: not a valid text Schema"):
        served.served_types(tmp_path, MODEL, names.STAGE_EXAMPLE_GEN)
    registry.index_path(tmp_path).write_text("{")
    with pytest.raises(StageError, match="registry index is damaged"):
        served.served_types(tmp_path, MODEL, names.STAGE_EXAMPLE_GEN)


# --- Push keeps the schema the model was trained with. ----------------------------------------------


def trained_run(volume: Path, run_id: str = "run-1", *, with_schema: bool = True) -> Path:
    """``artifacts/<run>/train/Format-Serving`` and, beside it, the raw schema transform kept."""
    run = volume / names.ARTIFACTS_DIR / run_id
    model = fake_saved_model(run / names.STAGE_TRAIN / names.MODEL_SERVING_DIR)
    if with_schema:
        path = served.transform_schema_path(run / names.STAGE_TRANSFORM)
        write_schema(schema_of(stats_of(rows(5))), path.parent)
    return model


def test_push_puts_the_training_schema_in_the_version_and_the_registry(tmp_path):
    model = trained_run(tmp_path)
    result = push_directly(model, tmp_path)
    kept = served.schema_path(tmp_path / names.SERVING_DIR / MODEL / "1")
    source = served.transform_schema_path(tmp_path / names.ARTIFACTS_DIR / "run-1" / names.STAGE_TRANSFORM)
    assert result.pushed and kept.read_text() == source.read_text()
    [e] = registry.read_index(tmp_path, "x")["versions"]
    assert e["schema"] == f"{names.SERVING_DIR}/{MODEL}/1/assets.extra/schema.pbtxt"
    assert (tmp_path / e["schema"]).is_file()
    assert served.served_types(tmp_path, MODEL, "x") == {
        "age": "INT",
        "bmi": "FLOAT",
        "region": "BYTES",
        LABEL: "FLOAT",
    }


def test_a_schema_the_saved_model_carries_is_kept_as_it_is(tmp_path):
    model = trained_run(tmp_path)
    served.schema_path(model).parent.mkdir()
    served.schema_path(model).write_text('feature { name: "x" type: INT }\n')
    push_directly(model, tmp_path)
    kept = served.schema_path(tmp_path / names.SERVING_DIR / MODEL / "1")
    assert kept.read_text() == 'feature { name: "x" type: INT }\n'


def test_a_model_without_a_schema_is_pushed_without_one(tmp_path):
    model = trained_run(tmp_path, with_schema=False)
    assert push_directly(model, tmp_path).pushed
    [e] = registry.read_index(tmp_path, "x")["versions"]
    assert "schema" not in e and not served.schema_path(tmp_path / names.SERVING_DIR / MODEL / "1").exists()
    assert served.served_types(tmp_path, MODEL, "x") == {}


def test_a_push_that_dies_in_its_copy_leaves_neither_model_nor_schema(tmp_path):
    model = trained_run(tmp_path)

    def copy_then_die(src: Path, dst: Path) -> None:
        shutil.copytree(src, dst)
        raise OSError("disk full")

    with pytest.raises(StageError, match="cannot copy the model"):
        push_directly(model, tmp_path, copy_tree=copy_then_die)
    model_dir = tmp_path / names.SERVING_DIR / MODEL
    assert [p.name for p in model_dir.iterdir() if not p.name.startswith(".write-probe")] == []
    assert registry.read_index(tmp_path, "x")["versions"] == []


# --- Validate: the changes since the served version, their severities and the stop. ---------------


def test_unchanged_data_has_no_changes_and_says_what_it_compared(tmp_path):
    serve(tmp_path / "volume")
    result, _, page = validate_run(tmp_path, rows())
    assert result.error() is None and result.verdict == "ok" and result.changes == []
    meta = result.metadata()
    assert meta["served_version"] == "model insurance v3" and meta["served_changes"] == []
    assert "<h2>Changes since the served version (model insurance v3)</h2>" in page
    assert "No change: every column has the type, values and range of the served model insurance v3." in page


def test_nothing_served_is_said_not_compared(tmp_path):
    from components.lib.validate import summary_lines

    result, _, page = validate_run(tmp_path, rows())
    assert (
        result.metadata()["served_version"] == "not compared: no version of model 'insurance' is being served"
    )
    assert "The data was not compared: no version of model &#x27;insurance&#x27; is being served." in page
    assert "  changes since the served version: not compared: no version" in "\n".join(summary_lines(result))


@pytest.mark.parametrize("fail_on", ["unsafe", "any", "none"])
def test_text_where_numbers_were_stops_whatever_fail_on_in_one_line(tmp_path, fail_on):
    serve(tmp_path / "volume")
    text = rows(bmi=[f"{20 + i % 9}kg" for i in range(40)])
    result, schema_file, page = validate_run(tmp_path, text, fail_on=fail_on)
    assert str(result.error()) == (
        f"[validate] {schema_file}: column 'bmi' was FLOAT in the served model insurance v3 and is BYTES "
        "now: the served model cannot read this data; fix the export, pin the type with "
        "column_types=bmi:float or schema_file, or train a new model with another model_name"
    )
    assert result.verdict == "failed" and result.metadata()["served_stops"] == ["bmi"]
    bmi = change_of(result, "bmi")
    assert (bmi.severity, bmi.stops) == ("ERROR", True)
    assert '<tr class="bad"><td><code>bmi</code></td>' in page and "stops the run" in page
    assert "1 change since the served model insurance v3 stops the run whatever fail_on says" in page


def test_numbers_where_text_was_stops_too(tmp_path):
    serve(tmp_path / "volume")
    result, schema_file, _ = validate_run(tmp_path, rows(region=[i % 4 for i in range(40)]))
    assert str(result.error()) == (
        f"[validate] {schema_file}: column 'region' was BYTES in the served model insurance v3 and is INT "
        "now: the served model cannot read this data; fix the export, pin the type with "
        "column_types=region:string or schema_file, or train a new model with another model_name"
    )


def test_a_column_the_served_model_reads_that_is_gone_stops(tmp_path):
    serve(tmp_path / "volume")
    result, schema_file, _ = validate_run(tmp_path, rows(age=None), fail_on="none")
    assert str(result.error()) == (
        f"[validate] {schema_file}: column 'age' (INT) was read by the served model insurance v3 and is "
        "not in this data: the served model cannot read this data; restore the column in the export, "
        "or train a new model without it with another model_name"
    )


def test_int_widened_to_float_is_a_warning(tmp_path):
    serve(tmp_path / "volume")
    result, _, _ = validate_run(tmp_path, rows(age=[18.5 + (i * 7) % 47 for i in range(40)]))
    age = change_of(result, "age")
    assert (age.severity, age.stops, age.reasons) == ("WARNING", False, ["SERVED_TYPE_NUMERIC_CHANGE"])
    assert "was INT in the served model insurance v3 and is FLOAT now (the type widened)" in age.description
    assert "judges the candidate without the baseline gate" in age.description
    assert result.error() is None and result.verdict == "anomalies"
    assert result.metadata()["served_changes"][0]["change"] == "SERVED_TYPE_NUMERIC_CHANGE"


def test_warnings_fail_only_under_fail_on_any(tmp_path):
    serve(tmp_path / "volume")
    new = rows(region=[(REGIONS + ["mars"])[i % 5] for i in range(40)])
    result, _, _ = validate_run(tmp_path, new, fail_on="any")
    assert result.verdict == "failed" and "region" in str(result.error())
    region = change_of(result, "region")
    assert region.severity == "WARNING" and region.description.endswith("domain: 'mars'")
    result, _, _ = validate_run(tmp_path, new, fail_on="unsafe")
    assert result.error() is None and result.verdict == "anomalies"


def test_empty_cells_in_a_column_that_had_none_are_a_warning(tmp_path):
    serve(tmp_path / "volume")
    bmi = [None if i % 10 == 0 else 25.0 + i % 7 for i in range(40)]
    result, _, _ = validate_run(tmp_path, rows(bmi=bmi))
    found = change_of(result, "bmi")
    assert (found.severity, found.stops, found.reasons) == ("WARNING", False, ["SERVED_MISSING_VALUES_NEW"])
    assert "has 8 of 80 (10.0%) now" in found.description  # train and eval (the same rows here)
    assert "the default module imputes them" in found.fix


def test_new_columns_and_ranges_are_notes_that_leave_the_verdict_ok(tmp_path):
    from components.lib.validate import summary_lines

    serve(tmp_path / "volume")
    result, _, page = validate_run(tmp_path, rows(age=[18 + i * 2 for i in range(40)], smoker=["no"] * 40))
    assert {(f.feature, f.severity, f.reasons[0]) for f in result.changes} == {
        ("smoker", "INFO", "SERVED_COLUMN_NEW"),
        ("age", "INFO", "SERVED_RANGE_CHANGED"),
    }
    assert result.verdict == "ok" and result.metadata()["anomalies"] == 0
    assert (
        "column &#x27;age&#x27; ranges 18 .. 96 now; the served model insurance v3 was trained on 18 .. 64"
        in page
    )
    lines = summary_lines(result)
    assert "  changes since the served version (model insurance v3): 2" in lines
    assert any(line.startswith("    smoker: INFO column 'smoker' is new since") for line in lines)
    # fail_on=any: notes are not anomalies
    result, _, _ = validate_run(tmp_path, rows(smoker=["no"] * 40), fail_on="any")
    assert result.error() is None


def test_an_old_version_without_a_recorded_schema_is_compared_too(tmp_path):
    serve(tmp_path / "volume", record=False)
    result, _, _ = validate_run(tmp_path, rows(bmi=[f"x{i}" for i in range(40)]))
    assert result.metadata()["served_stops"] == ["bmi"]


def test_an_unreadable_served_schema_is_reported_not_failed(tmp_path):
    version_dir = serve(tmp_path / "volume")
    served.schema_path(version_dir).write_text("feature {")
    result, _, _ = validate_run(tmp_path, rows(bmi=[f"x{i}" for i in range(40)]))
    assert result.error() is None
    assert result.metadata()["served_version"].startswith(
        "not compared: the served version's schema cannot be read"
    )


# --- Evaluate: a type that widened is not "another dataset". -----------------------------------------


def save_age_float_model(export_dir: Path, slope: float) -> Path:
    """``save_age_model`` reading age as a float (a model of the data after INT -> FLOAT)."""
    import tensorflow as tf

    class AgeModel(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=names.EXAMPLES_INPUT_KEY)])
        def serve(self, examples: tf.Tensor) -> dict[str, tf.Tensor]:
            age = tf.io.parse_example(
                examples, {"age": tf.io.FixedLenFeature([], tf.float32, default_value=0.0)}
            )
            return {names.PREDICTIONS_KEY: tf.reshape(slope * age["age"], [-1, 1])}

    module = AgeModel()
    tf.saved_model.save(module, str(export_dir), signatures={names.SERVING_SIGNATURE: module.serve})
    return export_dir


@pytest.fixture(scope="module")
def age_models(tmp_path_factory) -> dict[str, Path]:
    from test_evaluate import save_age_model

    root = tmp_path_factory.mktemp("age_models")
    return {"int": save_age_model(root / "int", 330.0), "float": save_age_float_model(root / "float", 330.0)}


def with_inputs(model: Path, where: Path, inputs: dict[str, str]) -> Path:
    """A copy of ``model`` at ``where`` whose serving signature is declared to parse ``inputs``."""
    from components.lib import saved_model

    shutil.copytree(model, where)
    saved_model.inputs_path(where).parent.mkdir(exist_ok=True)
    saved_model.inputs_path(where).write_text(json.dumps(inputs))
    return where


@pytest.mark.parametrize(
    ("baseline", "candidate", "outcome"),
    [
        (
            {"age": "int64"},
            {"age": "int64", "region": "string"},
            None,
        ),  # a new feature: ignored by the baseline
        (
            {"age": "int64", "sex": "string"},
            {"age": "int64"},
            None,
        ),  # removed: the baseline reads it optional
        ({"age": "int64"}, {"age": "float32"}, "widened"),
        ({"age": "float32"}, {"age": "int64"}, "changed"),
        ({"age": "int64", "sex": "string"}, {"age": "int64", "region": "string"}, "two datasets"),
    ],
)
def test_the_baseline_rule(tmp_path, age_models, baseline, candidate, outcome):
    from components.lib.evaluate.models import check_baseline

    base = with_inputs(age_models["int"], tmp_path / names.SERVING_DIR / MODEL / "3", baseline)
    cand = with_inputs(age_models["int"], tmp_path / "candidate", candidate)
    if outcome == "two datasets":
        with pytest.raises(StageError, match="different input features.*Two datasets share the model name"):
            check_baseline(cand, base, None)
        return
    why = check_baseline(cand, base, None)
    if outcome is None:
        assert why is None
    else:
        was, now = ("INT", "FLOAT") if outcome == "widened" else ("FLOAT", "INT")
        assert why == (
            f"baseline v3 not compared: its serving signature reads 'age' as {was}, this data has {now} — "
            f"the type {outcome} since v3; the candidate is judged without the change threshold"
        )


def evaluate(tmp_path: Path, candidate: Path, baseline: Path, eval_rows: list[dict]):
    from test_evaluate import write_eval_split

    from components.lib import evaluate as ev

    examples = write_eval_split(tmp_path / "examples", eval_rows)
    out = tmp_path / "out"
    out.mkdir()
    thresholds = ev.Thresholds(mae_threshold=1e9, max_relative_degradation=0.05)
    return ev.evaluate_models(
        examples, candidate, baseline, 3, out, label=LABEL, slice_feature="", thresholds=thresholds,
        beam_args="", engine=ev.ENGINE_NATIVE,
    )  # fmt: skip


def test_evaluate_judges_without_the_baseline_when_a_type_widened(tmp_path, age_models):
    base = with_inputs(age_models["int"], tmp_path / names.SERVING_DIR / MODEL / "3", {"age": "int64"})
    cand = with_inputs(age_models["float"], tmp_path / "candidate", {"age": "float32"})
    result = evaluate(tmp_path, cand, base, [{"age": 20.5 + i, LABEL: 7000.0 + 330.0 * i} for i in range(40)])
    why = (
        "baseline v3 not compared: its serving signature reads 'age' as INT, this data has FLOAT — the type "
        "widened since v3; the candidate is judged without the change threshold"
    )
    assert why in result.blessing.reasons and result.blessing.verdict == names.BLESSED
    assert result.blessing.baseline == 3 and result.baseline == {}  # push still sees v3 as judged next to
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["baseline_not_compared"] == why


def test_evaluate_compares_a_baseline_that_ignores_a_new_feature(tmp_path, age_models):
    base = with_inputs(age_models["int"], tmp_path / names.SERVING_DIR / MODEL / "3", {"age": "int64"})
    cand = with_inputs(age_models["int"], tmp_path / "candidate", {"age": "int64", "region": "string"})
    eval_rows = [{"age": 20 + i, "region": REGIONS[i % 4], LABEL: 7000.0 + 330.0 * i} for i in range(40)]
    result = evaluate(tmp_path, cand, base, eval_rows)
    assert result.baseline and result.baseline["example_count"] == 40
    assert not any("not compared" in r for r in result.blessing.reasons)


def test_a_label_that_changed_type_is_a_warning_not_a_stop(tmp_path):
    serve(tmp_path / "volume")
    result, _, _ = validate_run(tmp_path, rows(**{LABEL: [["low", "high"][i % 2] for i in range(40)]}))
    found = change_of(result, LABEL)
    assert (found.severity, found.stops) == ("WARNING", False) and result.error() is None
    assert "evaluate refuses a baseline of another task or other classes" in found.description


def test_a_column_the_served_model_did_not_use_may_go(tmp_path):
    """The schema stage's excluded columns (ids, dates as text) are not read by the model."""
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    from components.lib.user_module import EXCLUDED_TAG

    version_dir = serve(tmp_path / "volume", rows(row_id=list(range(40))))
    path = served.schema_path(version_dir)
    schema = text_format.Parse(path.read_text(), schema_pb2.Schema())
    next(f for f in schema.feature if f.name == "row_id").annotation.tag.append(f"{EXCLUDED_TAG}:row_number")
    path.write_text(text_format.MessageToString(schema))
    result, _, _ = validate_run(tmp_path, rows())
    found = change_of(result, "row_id")
    assert (found.severity, found.stops, result.error()) == ("INFO", False, None)
    assert found.description == (
        "column 'row_id' is gone since the served model insurance v3, which did not use it "
        "(excluded from its features)"
    )
