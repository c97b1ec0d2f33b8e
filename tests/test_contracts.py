"""The shared contracts: what one stage writes, the next reads back the same, locally and through KFP.

On the KFP backend artifact metadata makes a round trip through ML Metadata (bools as 1.0/0.0,
ints as floats, lists and dicts wrapped, a null fails the task); ``through_ml_metadata`` makes it
with the backend emulator's own converters.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from components import names
from components.errors import StageError
from components.lib import examples, saved_model, schema_io
from components.lib.baseline import Baseline
from components.lib.blessing import Blessing

STAGE = "test"


def through_ml_metadata(metadata: dict) -> dict:
    """``metadata`` as a downstream task gets it on the KFP backend (launcher, then driver)."""
    from google.protobuf import json_format, struct_pb2

    from pipelines.backend.metadata import from_mlmd_value, to_mlmd_value

    written = struct_pb2.Struct()
    json_format.ParseDict(metadata, written)
    read = struct_pb2.Struct()
    for key, value in written.fields.items():
        read.fields[key].CopyFrom(from_mlmd_value(to_mlmd_value(key, value)))
    return json_format.MessageToDict(read)


FOUND = Baseline(
    True,
    "latest blessed pushed version",
    names.MODEL_NAME,
    version=3,
    model_path="/mnt/kubetfx/serving/insurance/3",
    metrics={"mae": 1234.5, "example_count": 446.0},
    run_id="run-3",
    model_location="/mnt/kubetfx/artifacts/run-3/train",
    fingerprint="f" * 64,
    pushed_at="2025-01-01T00:00:00+00:00",
    skipped_versions=[4],
)
NOT_FOUND = Baseline(False, names.NO_BASELINE, names.MODEL_NAME, skipped_versions=[2, 1])


@pytest.mark.parametrize("record", [FOUND, NOT_FOUND], ids=["found", "not found"])
def test_the_baseline_reads_back_the_same_from_metadata_mlmd_and_file(tmp_path, record):
    meta = record.to_metadata()
    assert None not in meta.values()
    assert Baseline.from_metadata(meta, STAGE) == record
    assert Baseline.from_metadata(through_ml_metadata(meta), STAGE) == record
    record.write(tmp_path / "baseline")
    assert Baseline.read(tmp_path / "baseline", STAGE) == record
    assert Baseline.from_artifact({}, str(tmp_path / "baseline"), STAGE) == record  # metadata lost


def test_the_baseline_metadata_keys_evaluate_and_the_ui_read():
    meta = FOUND.to_metadata()
    assert meta["found"] is True and meta["version"] == 3
    assert meta[names.META_MODEL_PATH] == meta[names.META_STORAGE_PATH] == FOUND.model_path
    assert set(NOT_FOUND.to_metadata()) == {"found", "reason", "model_name", "skipped_versions"}


def test_a_baseline_marked_found_without_its_model_is_refused():
    with pytest.raises(StageError, match="baseline is marked found but has no model_path/version"):
        Baseline.from_metadata({"found": 1.0, "version": 3.0}, STAGE)
    with pytest.raises(StageError, match="'version' must be a whole number"):
        Baseline.from_metadata({"found": True, names.META_MODEL_PATH: "/m", "version": 2.5}, STAGE)


BLESSING = Blessing(
    names.BLESSED,
    reasons=["overall MAE 1,234 <= upper bound 8,000"],
    baseline=3,
    model_path="/mnt/kubetfx/artifacts/run-4/train/Format-Serving",
    baseline_model_path="/mnt/kubetfx/serving/insurance/3",
    metrics={"example_count": 446.0, "mae": 1234.5, "mse": 3.1e6, "rmse": 1760.7},
    baseline_metrics={"example_count": 446.0, "mae": 1250.0, "mse": 3.2e6, "rmse": 1788.9},
    thresholds={"mae_threshold": 8000.0, "max_relative_degradation": 0.05, "source": "parameters"},
    validation_ok=True,
    eval_result="/mnt/kubetfx/artifacts/run-4/evaluate/eval_result",
    time="2025-01-01T00:00:00+00:00",
)


def test_the_blessing_file_push_reads_is_the_record_evaluate_wrote(tmp_path):
    path = BLESSING.write(tmp_path / "blessing")
    assert path == tmp_path / "blessing" / names.BLESSING_FILE
    assert Blessing.read(tmp_path / "blessing", STAGE) == BLESSING


@pytest.mark.parametrize(
    "record",
    [BLESSING, Blessing(names.NOT_BLESSED, reasons=["no baseline"], metrics={"mae": math.nan})],
    ids=["blessed with a baseline", "not blessed, no baseline, NaN MAE"],
)
def test_the_blessing_metadata_survives_ml_metadata(record):
    meta = record.to_metadata()
    assert None not in meta.values()
    back = Blessing.from_metadata(through_ml_metadata(meta), STAGE)
    assert (back.verdict, back.reasons, back.baseline) == (record.verdict, record.reasons, record.baseline)
    assert back.blessed == record.blessed and back.metrics.get("mae") == meta.get("mae")
    assert Blessing.from_metadata({"blessed": 1.0}, STAGE).verdict == names.BLESSED


def test_a_blessing_without_a_verdict_is_refused(tmp_path):
    with pytest.raises(StageError, match="blessing file is missing"):
        Blessing.read(tmp_path, STAGE)
    (tmp_path / names.BLESSING_FILE).write_text('{"verdict": "MAYBE"}')
    with pytest.raises(StageError, match='blessing has no "verdict" BLESSED/NOT_BLESSED'):
        Blessing.read(tmp_path, STAGE)


def test_every_reader_lists_the_same_files_of_a_split(tmp_path):
    split = examples.split_path(tmp_path, names.TRAIN)
    split.mkdir(parents=True)
    for name in ("b-00001.gz", "a-00000.gz", ".hidden.gz", "_SUCCESS"):
        (split / name).write_bytes(b"")
    (split / "beam-temp-dir").mkdir()
    listed = examples.split_files(tmp_path, names.TRAIN, STAGE)
    assert [p.name for p in listed] == ["a-00000.gz", "b-00001.gz"]
    with pytest.raises(StageError, match="examples have no 'eval' split"):
        examples.split_files(tmp_path, names.EVAL, STAGE)
    with pytest.raises(StageError, match=r"no Split-eval folder; found \['train'\]"):
        examples.find_splits(tmp_path, STAGE)


def test_one_schema_reader_for_artifacts_and_user_files(tmp_path):
    from tensorflow_metadata.proto.v0 import schema_pb2

    schema = schema_pb2.Schema()
    schema.feature.add(name=names.LABEL, type=schema_pb2.FLOAT)
    path = schema_io.write_schema(schema, tmp_path / "artifact")
    assert path == tmp_path / "artifact" / names.SCHEMA_FILE
    assert schema_io.read_schema(tmp_path / "artifact", STAGE) == schema_io.read_schema(path, STAGE) == schema
    with pytest.raises(StageError, match=f"schema artifact has no {names.SCHEMA_FILE}"):
        schema_io.read_schema(tmp_path, STAGE)
    path.write_text("feature { nme: 'x' }")
    with pytest.raises(StageError, match="not a valid text Schema proto"):
        schema_io.read_schema(path, STAGE)


def test_what_counts_as_a_saved_model(tmp_path):
    model = tmp_path / "model"
    with pytest.raises(StageError, match="model directory does not exist"):
        saved_model.check_saved_model(model, STAGE)
    model.mkdir()
    with pytest.raises(StageError, match="not a SavedModel: saved_model.pb is missing"):
        saved_model.check_saved_model(model, STAGE)
    (model / "saved_model.pb").write_bytes(b"")
    assert saved_model.is_saved_model(model) and saved_model.check_saved_model(model, STAGE) == model
    train_dir = tmp_path / "train"
    assert saved_model.export_dir(train_dir) == train_dir / names.MODEL_SERVING_DIR
    exact = {names.META_MODEL_PATH: str(model)}
    assert saved_model.saved_model_dir(exact, "", STAGE) == model
    train_dir.mkdir()
    stored = {names.META_STORAGE_PATH: str(train_dir)}
    assert saved_model.saved_model_dir(stored, "", STAGE) == Path(train_dir / names.MODEL_SERVING_DIR)
