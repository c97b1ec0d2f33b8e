"""Resource bounds (components/lib/bounds.py): hyperparameters, batch size, steps and trials refused in one
line — by the preflight before anything is written, and by tune and train before any fit — and the
storage root's folders checked writable by the preflight."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from test_submit_preflight import HEADER, run_submit, snapshot

from components import names
from components.errors import StageError
from components.lib import bounds
from pipelines.local import preflight

ROW = "19,female,27.9,0,yes,southwest,16884.92\n"
GIB = 2**30


@pytest.fixture
def volume(tmp_path: Path) -> Path:
    root = tmp_path / "storage"
    (root / names.DATA_DIR).mkdir(parents=True)
    (root / names.DATA_DIR / "insurance.csv").write_text(HEADER + "\n" + ROW * 888)
    (root / names.DATA_DIR / "good.py").write_text("from components.modules.insurance import *  # noqa\n")
    return root


@pytest.fixture(autouse=True)
def eight_gib(monkeypatch):
    """The same memory on every machine, so the lines are exact."""
    monkeypatch.setattr(bounds, "available_memory", lambda: 8 * GIB)


CASES = {
    "units zero": (
        ['hyperparameters={"units": 0}'],
        "[tune] hyperparameters: 'units' must be an integer ≥ 1, got 0",
    ),
    "units not an integer": (
        ['hyperparameters={"units": 1.5}', "module_file=data/good.py"],
        "[tune] hyperparameters: 'units' must be an integer ≥ 1, got 1.5",
    ),
    "learning rate a word": (
        ['hyperparameters={"learning_rate": "fast"}'],
        "[tune] hyperparameters: 'learning_rate' must be a number between 0 and 1 (exclusive), got 'fast'",
    ),
    "learning rate too large": (
        ['hyperparameters={"learning_rate": 1.5}'],
        "[tune] hyperparameters: 'learning_rate' must be a number between 0 and 1 (exclusive), got 1.5",
    ),
    "num_layers zero": (
        ['hyperparameters={"num_layers": 0}'],
        "[tune] hyperparameters: 'num_layers' must be an integer ≥ 1, got 0",
    ),
    "unknown name": (
        ['hyperparameters={"unit": 32}'],
        "[tune] hyperparameters: 'unit' is not a parameter of the built-in module "
        "(learning_rate, num_layers, units); did you mean 'units'?",
    ),
    "batch beyond memory": (
        ["batch_size=3000000000"],
        "[tune] batch_size: 3,000,000,000 examples of 7 columns need ≈5,006.8 GiB of memory "
        "(≈1,792 bytes each), over half of the 8.0 GiB available: at most 2,396,745",
    ),
    "batch beyond memory, tuning off": (
        ["batch_size=3000000000", "tune_enabled=false"],
        "[train] batch_size: 3,000,000,000 examples of 7 columns need ≈5,006.8 GiB",
    ),
    "batch beyond the rows": (
        ["batch_size=100000", "data=data/insurance.csv"],
        "[tune] batch_size: 100,000 is more than the 888 rows of {data}/insurance.csv; "
        "a batch holds at most the training rows",
    ),
    "train steps typo": (
        ["train_steps=100000000"],
        "[train] train_steps: 100,000,000 is above the bound of 10,000,000 steps (a typo?)",
    ),
    "eval steps typo": (
        ["eval_steps=10000001"],
        "[train] eval_steps: 10,000,001 is above the bound of 10,000,000 steps (a typo?)",
    ),
    "tuner steps typo": (
        ["tuner_steps=30000000"],
        "[tune] tuner_steps: 30,000,000 is above the bound of 10,000,000 steps (a typo?)",
    ),
    "tuner trials typo": (
        ["tuner_trials=40000"],
        "[tune] tuner_trials: 40,000 is above the bound of 10,000 trials (a typo?)",
    ),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_a_value_beyond_its_bound_is_one_line_before_anything_is_written(capsys, volume, case):
    params, expected = CASES[case]
    before = snapshot(volume.parent)
    code, lines = run_submit(capsys, volume, *params)
    assert code == 2
    assert len(lines) == 1, lines
    assert lines[0].startswith(expected.format(data=volume / names.DATA_DIR)), lines[0]
    assert snapshot(volume.parent) == before


@pytest.mark.parametrize(
    "params",
    [
        {},  # the defaults
        {  # the reference workload's settings
            "data": "data/insurance.csv",
            "batch_size": "32",
            "train_steps": "1000",
            "eval_steps": "100",
            "tuner_trials": "4",
            "tuner_steps": "300",
            "hyperparameters": '{"learning_rate": 0.003, "units": 64, "num_layers": 2}',
        },
        {"module_file": "data/good.py", "hyperparameters": '{"units": 16, "dropout": 0.1}'},
    ],
)
def test_the_defaults_and_the_reference_settings_pass(volume, params):
    assert preflight.check(volume, None, params) is not None


def test_a_default_batch_on_a_small_table_is_left_to_the_clamp(volume):
    small = volume / names.DATA_DIR / "small.csv"
    small.write_text(HEADER + "\n" + ROW * 10)
    preflight.check(volume, None, {"data": "data/small.csv"})  # batch 32 > 10 rows: clamped at run time


@pytest.mark.parametrize(
    ("folder", "why"),
    [
        (names.SERVING_DIR, "at push after all the training"),
        (f"{names.SERVING_DIR}/insurance", "at push after all the training"),
        (names.REGISTRY_DIR, "at push after all the training"),
        (names.METADATA_DIR, "at the lineage store, before the first stage"),
        (names.ARTIFACTS_DIR, "at the first stage's output"),
        (names.DATA_DIR, "at the copy of the data, before the first stage"),
    ],
)
def test_an_unwritable_folder_of_the_storage_root(capsys, volume, monkeypatch, folder, why):
    """Root bypasses permission bits: the check asks ``os.access``, which the test answers."""
    path = volume / folder
    path.mkdir(parents=True, exist_ok=True)
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == path else real(p, mode))
    before = snapshot(volume)
    code, lines = run_submit(capsys, volume)
    assert (code, lines) == (
        2,
        [
            f"[submit] {path}: not writable by this user (uid {os.getuid()}); "
            f"the run would fail {why}: fix its permissions"
        ],
    )
    assert snapshot(volume) == before


def test_a_named_data_folder_is_only_read(volume, monkeypatch):
    data = volume / names.DATA_DIR
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == data else real(p, mode))
    preflight.check(volume, None, {"data": "data/insurance.csv"})


def test_a_serving_root_that_is_a_file(capsys, volume):
    (volume / names.SERVING_DIR).write_text("not a folder")
    code, lines = run_submit(capsys, volume)
    assert (code, lines) == (
        2,
        [
            f"[submit] {volume / names.SERVING_DIR}: not a directory; "
            "the run would fail at push after all the training"
        ],
    )


def test_rows_are_counted_in_a_small_file_and_estimated_in_a_big_one(tmp_path):
    small = tmp_path / "small.csv"
    small.write_text(HEADER + "\n" + ROW * 888)
    assert bounds.csv_rows([small]) == (888, True)
    big = tmp_path / "big.csv"
    big.write_text(HEADER + "\n" + ROW * 60_000)  # 2.4 MB: only its first MiB is read
    rows, exact = bounds.csv_rows([big])
    assert not exact and abs(rows - 60_000) < 600


def test_the_memory_estimate_and_the_machine(monkeypatch):
    assert bounds.bytes_per_example(7) == 7 * 8 * 32
    monkeypatch.undo()
    available = bounds.available_memory()
    assert available is None or available > 0
    bounds.check_batch_memory(32, 7, names.STAGE_TRAIN)  # the reference batch fits any machine
    with pytest.raises(StageError, match=r"^\[train\] batch_size: 1,000 examples of 500 columns"):
        bounds.check_batch_memory(1000, 500, names.STAGE_TRAIN, available=2**20)


def test_a_batch_larger_than_the_training_rows_is_clamped(capsys):
    assert bounds.clamp_batch(100_000, 888, names.STAGE_TRAIN) == 888
    assert capsys.readouterr().out == (
        "[train] batch_size: 100,000 is more than the 888 training rows; batches of 888 instead\n"
    )
    assert bounds.clamp_batch(32, 888, names.STAGE_TRAIN) == 32
    assert bounds.clamp_batch(32, None, names.STAGE_TRAIN) == 32
    assert capsys.readouterr().out == ""


def test_the_kinds_of_a_keras_tuner_space():
    import keras_tuner as kt

    from components.modules import insurance

    hp = kt.HyperParameters()
    insurance.hyperparameter_space(hp)
    hp.Int("depth", 1, 3)
    hp.Float("dropout", 0.0, 0.5)
    hp.Boolean("batch_norm")
    assert bounds.space_kinds(hp) == {
        "learning_rate": "float",
        "units": "int",
        "num_layers": "int",
        "depth": "int",
        "dropout": "float",
        "batch_norm": "bool",
    }
    with pytest.raises(
        StageError, match=r"^\[tune\] hyperparameters: 'depth' must be an integer, got 'two'$"
    ):
        bounds.check_hyperparameters({"depth": "two"}, bounds.space_kinds(hp), names.STAGE_TUNE)


# --- At run time: tune and train refuse before any fit, and clamp the batch. ------------------
@pytest.fixture(scope="module")
def transformed(storage_root, examples, synthetic_csv):
    from test_transform import transform_outputs

    return transform_outputs(storage_root, examples, synthetic_csv)


@pytest.mark.parametrize(
    ("overrides", "line"),
    [
        (
            {"hyperparameters": '{"units": 0}'},
            "[tune] hyperparameters: 'units' must be an integer ≥ 1, got 0",
        ),
        (
            {"hyperparameters": '{"learning_rate": "fast"}', "enabled": False},
            "[tune] hyperparameters: 'learning_rate' must be a number between 0 and 1 (exclusive), "
            "got 'fast'",
        ),
        (
            {"steps": 20_000_000},
            "[tune] tuner_steps: 20,000,000 is above the bound of 10,000,000 steps (a typo?)",
        ),
    ],
)
def test_tune_refuses_before_the_search(storage_root, transformed, tmp_path, overrides, line):
    from test_tune import run_tune

    with pytest.raises(StageError) as err:
        run_tune(storage_root, transformed, tmp_path, "tune-bounds", **overrides)
    assert str(err.value) == line


def test_tune_clamps_a_batch_larger_than_the_training_rows(storage_root, transformed, tmp_path, capsys):
    from test_tune import run_tune

    _, summary, _ = run_tune(
        storage_root, transformed, tmp_path, "tune-clamp", trials=1, steps=2, batch_size=5000
    )
    out = capsys.readouterr().out
    assert "[tune] batch_size: 5,000 is more than the " in out and " training rows; batches of " in out
    assert summary.metadata["trials"] == 1.0


def test_train_refuses_before_the_fit(storage_root, transformed, tmp_path, monkeypatch):
    from test_train import hyperparameters_artifact, run_train_component

    hp = hyperparameters_artifact(tmp_path / "hp", {"learning_rate": 0.01, "units": 0, "num_layers": 1})
    with pytest.raises(StageError) as err:
        run_train_component(storage_root, transformed, hp, "train-bounds")
    assert str(err.value) == "[train] hyperparameters: 'units' must be an integer ≥ 1, got 0"
    hp = hyperparameters_artifact(tmp_path / "hp2", {"learning_rate": 0.01, "units": 16, "num_layers": 1})
    monkeypatch.setattr(bounds, "available_memory", lambda: 2**16)
    with pytest.raises(StageError) as err:
        run_train_component(storage_root, transformed, hp, "train-bounds")
    assert str(err.value) == (
        "[train] batch_size: 32 examples of 7 columns need ≈56 KiB of memory (≈1,792 bytes each), "
        "over half of the 64 KiB available: at most 18"
    )
    assert not (storage_root / names.ARTIFACTS_DIR / "train-bounds" / names.STAGE_TRAIN).exists()


# --- A wide table: the built-in module's transform, one analyzer per column. ------------------
WIDE_LINE = (
    "[transform] columns: 1,500 feature columns need ≈19.4 GiB of memory in transform with the built-in "
    "module (one analyzer per column, ≈13 MiB each), over the 8.0 GiB available: at most 803; choose "
    "columns with features= or exclude_features=, or give the stage more memory"
)


def wide_csv(volume: Path, columns: int) -> str:
    header = [f"f{i}" for i in range(columns)] + [names.LABEL]
    (volume / names.DATA_DIR / "wide.csv").write_text(
        ",".join(header) + "\n" + ",".join(["1"] * len(header)) + "\n"
    )
    return "data=data/wide.csv"


@pytest.mark.parametrize(("columns", "measured_gib"), [(50, 0.21), (150, 0.80), (500, 3.56)])
def test_the_transform_estimate_follows_what_was_measured(columns, measured_gib):
    """Transform's peak above its imports, the built-in module on a 1,340-row table of number columns."""
    estimate = (bounds.transform_memory(columns) - bounds.TRANSFORM_BASE_BYTES) / GIB
    assert 0.9 * measured_gib <= estimate <= 1.3 * measured_gib


def test_a_table_too_wide_for_the_transform_is_one_line_before_anything_is_written(capsys, volume):
    data = wide_csv(volume, 1500)
    before = snapshot(volume.parent)
    code, lines = run_submit(capsys, volume, data)
    assert (code, lines) == (2, [WIDE_LINE])
    assert snapshot(volume.parent) == before
    fewer = ",".join(f"f{i}" for i in range(800))  # 700 columns left: they fit
    assert preflight.check(volume, None, {"data": "data/wide.csv", "exclude_features": fewer}) is not None
    assert preflight.check(volume, None, {"data": "data/wide.csv", "features": "f1,f2"}) is not None
    assert preflight.check(volume, None, {"data": "data/wide.csv", "module_file": "data/good.py"}) is not None


def test_the_500_column_table_of_the_issue_passes(volume):
    assert preflight.check(volume, None, {"data": wide_csv(volume, 500).split("=", 1)[1]}) is not None


def test_transform_refuses_a_table_too_wide_before_beam_starts(
    storage_root, examples, synthetic_csv, monkeypatch
):
    from test_transform import infer_schema_file, run_transform_component

    schema_dir = infer_schema_file(synthetic_csv, storage_root / "kfp" / "wide-bounds" / "schema")
    monkeypatch.setattr(bounds, "available_memory", lambda: GIB + 10 * 2**20)  # room for 2 columns
    with pytest.raises(StageError) as err:
        run_transform_component(storage_root, examples, schema_dir, "wide-bounds")
    assert str(err.value).startswith("[transform] columns: 6 feature columns need ≈1.0 GiB of memory")
    assert str(err.value).endswith(
        "over the 1.0 GiB available: at most 2; choose columns with features= or "
        "exclude_features=, or give the stage more memory"
    )
    assert not (storage_root / names.ARTIFACTS_DIR / "wide-bounds" / names.STAGE_TRANSFORM).exists()
