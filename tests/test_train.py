"""Train: a Keras 3 model on transformed examples, metrics in charges, a raw-example SavedModel.

``trained_model`` is a cached helper (not a fixture) so test_serving reuses the session's one
training run. The full reference workload on the real CSV is the slow tier.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import examples_from_csv, run_component
from kfp import dsl
from test_transform import infer_schema_file, run_transform_component, transform_outputs
from test_tune import run_tune

from components import names
from components.errors import StageError
from components.modules import insurance

RUN_ID = "train-session"
HPARAMS = {"learning_rate": 0.01, "units": 16, "num_layers": 1}
_CACHE: dict[str, tuple] = {}


def hyperparameters_artifact(directory: Path, values: dict) -> dsl.Artifact:
    """What tune hands train: a directory holding best_hyperparameters.txt, written by tune's writer."""
    from components.lib.hyperparameters import write_hyperparameters

    art = dsl.Artifact(name="best_hyperparameters", uri=str(directory), metadata={})
    write_hyperparameters(Path(art.path), values, [])
    return art


def run_train_component(
    storage_root: Path, transformed: tuple, hparams: dsl.Artifact, run_id: str, **overrides
) -> tuple[dsl.Model, dsl.Metrics, dsl.Artifact]:
    from components.train import train

    kwargs = dict(
        storage_root=str(storage_root),
        run_id=run_id,
        module_file="",
        train_steps=100,
        eval_steps=5,
        batch_size=32,
        label=names.LABEL,
    )
    kwargs.update(overrides)
    graph, examples = transformed
    outputs = run_component(
        train,
        storage_root / "kfp" / run_id,
        transformed_examples=examples,
        transform_graph=graph,
        best_hyperparameters=hparams,
        **kwargs,
    )
    return outputs["model"], outputs["metrics"], outputs["tensorboard"]


def trained_model(storage_root: Path, examples: dsl.Dataset, csv: Path) -> tuple:
    """The session's one short training run on the synthetic data: (model, metrics, tensorboard)."""
    key = str(storage_root)
    if key not in _CACHE:
        transformed = transform_outputs(storage_root, examples, csv)
        hp = hyperparameters_artifact(storage_root / "kfp" / RUN_ID / "best_hyperparameters", HPARAMS)
        # The module's network alone (model_family=mlp): these tests are about the Keras fit and its
        # outputs; tests/test_model_family.py covers gbt, linear and auto.
        _CACHE[key] = run_train_component(storage_root, transformed, hp, RUN_ID, model_family="mlp")
    return _CACHE[key]


@pytest.fixture(scope="module")
def trained(storage_root, examples, synthetic_csv):
    return trained_model(storage_root, examples, synthetic_csv)


def test_exports_the_model_logs_and_predictions_on_the_volume(trained, storage_root, examples):
    model, metrics, tensorboard = trained
    stage = storage_root / names.ARTIFACTS_DIR / RUN_ID / names.STAGE_TRAIN
    assert model.metadata[names.META_STORAGE_PATH] == str(stage)
    assert json.loads(Path(model.path).read_text())[names.META_STORAGE_PATH] == str(stage)
    assert (stage / names.MODEL_SERVING_DIR / "saved_model.pb").is_file()
    assert model.metadata["hyperparameters"] == {**insurance.default_hyperparameters(), **HPARAMS}
    logs = stage / names.TENSORBOARD_DIR
    assert tensorboard.metadata[names.META_STORAGE_PATH] == str(logs)
    for sub in ("train", "validation"):
        assert list((logs / sub).glob("events.out.tfevents.*")), f"no TensorBoard events in {logs / sub}"
    assert not [p for p in stage.parent.iterdir() if p.name.startswith(".")]  # written atomically


def test_metrics_are_in_charges_on_the_full_eval_split(trained, storage_root, examples):
    import pandas as pd

    from components.lib.train import EVAL_PREDICTIONS_FILE, PREDICTION_COLUMN

    _, metrics, _ = trained
    m = metrics.metadata
    assert set(m) >= {"train_loss", "validation_loss", "train_mae", "eval_mae", "eval_rmse", "eval_r2"}
    table = pd.read_csv(
        storage_root / names.ARTIFACTS_DIR / RUN_ID / names.STAGE_TRAIN / EVAL_PREDICTIONS_FILE
    )
    assert len(table) == examples.metadata[names.META_ROWS][names.EVAL] == m["eval_examples"]
    err = table[PREDICTION_COLUMN] - table[names.LABEL]
    assert m["eval_mae"] == pytest.approx(err.abs().mean(), rel=1e-6)
    assert m["eval_rmse"] == pytest.approx(np.sqrt((err**2).mean()), rel=1e-6)
    ss_tot = ((table[names.LABEL] - table[names.LABEL].mean()) ** 2).sum()
    assert m["eval_r2"] == pytest.approx(1 - (err**2).sum() / ss_tot, rel=1e-6)
    # Charges units, not log units: even a 100-step model is far better than predicting 0.
    assert 100 < m["eval_mae"] < table[names.LABEL].mean()
    assert m["validation_loss"] < 2 and m["train_loss"] < 2  # the loss is |log error|


@pytest.mark.parametrize(
    "counts, expected",
    [((100, 100), 100), ((300, 15), 15), ((1000,), 100), ((250, 100), 50), ((7, 5), 1), ((100, 5), 5)],
)
def test_steps_per_execution_divides_every_loop(counts, expected):
    from components.lib.train import steps_per_execution

    assert steps_per_execution(*counts) == expected


def test_steps_per_execution_trains_exactly_the_same_model(
    trained, storage_root, examples, synthetic_csv, monkeypatch
):
    # The speed-up must not change what is computed: the session's model (many steps per call; the
    # validation pass ends with its data) against the same run one step per call.
    from components.lib import train as train_lib
    from components.lib import training

    monkeypatch.setattr(training, "MAX_STEPS_PER_EXECUTION", 1)
    transformed = transform_outputs(storage_root, examples, synthetic_csv)
    hp = hyperparameters_artifact(storage_root / "kfp" / "train-spe1" / "best_hyperparameters", HPARAMS)
    _, one_step, _ = run_train_component(storage_root, transformed, hp, "train-spe1", model_family="mlp")
    _, batched, _ = trained
    stage_dir = storage_root / names.ARTIFACTS_DIR / RUN_ID / names.STAGE_TRAIN
    summary = json.loads((stage_dir / train_lib.SUMMARY_FILE).read_text())
    budget = summary["budget"]
    assert summary["steps_per_execution"] == budget["steps_per_epoch"] > 1  # a whole epoch per call
    for key in ("train_loss", "validation_loss", "eval_mae", "eval_rmse", "epochs_run", "best_epoch"):
        assert batched.metadata[key] == pytest.approx(one_step.metadata[key], rel=1e-6), key


def test_bad_hyperparameters_and_steps_are_stage_errors(storage_root, examples, synthetic_csv, tmp_path):
    transformed = transform_outputs(storage_root, examples, synthetic_csv)
    hp = hyperparameters_artifact(tmp_path / "hp", HPARAMS)
    (Path(hp.path) / names.HYPERPARAMETERS_FILE).write_text("{units: 3")
    with pytest.raises(StageError) as err:
        run_train_component(storage_root, transformed, hp, "train-bad")
    assert str(err.value).startswith(
        f"[train] {Path(hp.path) / names.HYPERPARAMETERS_FILE}: hyperparameters are not valid JSON"
    )
    hp = hyperparameters_artifact(tmp_path / "hp2", HPARAMS)
    with pytest.raises(StageError, match=r"^\[train\] train_steps must be positive, got 0$"):
        run_train_component(storage_root, transformed, hp, "train-bad", train_steps=0)


def test_half_a_label_transform_is_refused(storage_root, examples, synthetic_csv, tmp_path):
    transformed = transform_outputs(storage_root, examples, synthetic_csv)
    module = storage_root / "modules" / "half.py"  # on the volume
    module.parent.mkdir(exist_ok=True)
    module.write_text(
        "from components.modules.insurance import preprocessing_fn, build_model, label_transform  # noqa\n"
    )
    hp = hyperparameters_artifact(tmp_path / "hp", HPARAMS)
    with pytest.raises(StageError) as err:
        run_train_component(storage_root, transformed, hp, "train-half", module_file=str(module))
    assert str(err.value) == (
        f"[train] {module}: define both 'label_transform' and 'label_inverse_transform', or neither"
    )


@pytest.mark.slow
def test_reference_workload_reaches_the_quality_target(insurance_csv, tmp_path):
    """The workload's settings on the real CSV: 4 trials x 300 steps, then 1,000 steps; MAE <= 3,000."""
    from components import defaults

    root = tmp_path / "storage"
    times = {}
    t = time.perf_counter()
    examples = examples_from_csv(root, insurance_csv, "workload")
    schema_dir = infer_schema_file(insurance_csv, tmp_path / "schema")
    times["example_gen+schema"] = time.perf_counter() - t
    t = time.perf_counter()
    transformed = run_transform_component(root, examples, schema_dir, "workload")
    times["transform"] = time.perf_counter() - t

    t = time.perf_counter()
    best, summary, _ = run_tune(
        root,
        transformed,
        root,
        "workload",
        tuner=defaults.TUNER,
        trials=defaults.TUNER_TRIALS,
        steps=defaults.TUNER_STEPS,
        batch_size=defaults.BATCH_SIZE,
    )
    times["tune"] = time.perf_counter() - t
    assert summary.metadata["trials"] == defaults.TUNER_TRIALS

    t = time.perf_counter()
    _, metrics, _ = run_train_component(
        root,
        transformed,
        best,
        "workload",
        train_steps=defaults.TRAIN_STEPS,
        eval_steps=defaults.EVAL_STEPS,
        batch_size=defaults.BATCH_SIZE,
    )
    times["train"] = time.perf_counter() - t
    m = metrics.metadata
    print(
        f"\nreference workload: best {best.metadata['hyperparameters']} "
        f"eval MAE {m['eval_mae']:.0f} RMSE {m['eval_rmse']:.0f} R2 {m['eval_r2']:.3f}; "
        + ", ".join(f"{k} {v:.1f} s" for k, v in times.items())
    )
    assert m["eval_examples"] == examples.metadata[names.META_ROWS][names.EVAL]
    assert m["eval_mae"] <= 3000
    assert m["eval_r2"] >= 0.8


def _records_file(path: Path, rows: int) -> list[str]:
    """A gzipped TFRecord file of ``rows`` empty records: fit_budget only counts them."""
    import tensorflow as tf

    with tf.io.TFRecordWriter(str(path), options="GZIP") as writer:
        for _ in range(rows):
            writer.write(b"")
    return [str(path)]


@pytest.mark.parametrize(
    "rows, epochs",
    [
        (300, 50),  # a few hundred rows: capped at max_epochs, not ~125 epochs of 1,000 steps
        (900, 37),  # the reference workload: the whole epochs the budget holds
        (32_000, 3),  # adult-sized: at least MIN_EPOCHS, not one epoch
        (400_000, 1),  # big: at most MAX_BUDGET_FACTOR x the budget, part of an epoch
    ],
)
def test_the_fit_budget_follows_the_data(tmp_path, rows, epochs):
    import math

    from components.lib import training

    files = _records_file(tmp_path / "train.gz", rows)
    b = training.fit_budget(files, 0.05, 32, 1000, 50, "train")
    assert b.fit_rows + b.validation_rows == rows
    one_pass = math.ceil(b.fit_rows / 32)
    one_pass = one_pass if one_pass <= 100 else math.ceil(one_pass / 25) * 25
    assert b.epochs == epochs and b.steps_per_epoch == min(one_pass, 10_000)
    assert b.steps <= 10 * 1000 and (b.steps <= 1000 or b.epochs in (1, 3))
    share = max(0.05, 50 / rows)  # at least 50 rows held out
    assert b.validation_fraction == pytest.approx(share)
    assert abs(b.validation_rows - share * rows) < 4 * (share * rows) ** 0.5 + 5  # a hash, not a count
    again = training.fit_budget(files, 0.05, 32, 1000, 50, "train")
    assert again == b  # the same rows on every run


def test_the_validation_slice_is_fixed_by_position_and_disjoint_from_the_fit_rows(tmp_path):
    import tensorflow as tf

    from components.lib import training

    path = tmp_path / "rows.gz"
    with tf.io.TFRecordWriter(str(path), options="GZIP") as writer:
        for i in range(400):
            writer.write(str(i).encode())
    files = [str(path)]

    def rows(part: str) -> set[int]:
        ds = training._records(files).enumerate()  # noqa: SLF001
        ds = ds.filter(lambda i, _: tf.equal(training.in_validation(i, 0.2), part == training.VALIDATION))
        return {int(r.numpy()) for _, r in ds}

    held, fit = rows(training.VALIDATION), rows(training.FIT)
    assert held.isdisjoint(fit) and held | fit == set(range(400))
    assert 50 < len(held) < 110 and held != set(range(len(held)))  # ~20 %, spread over the split


def test_component_defaults_are_the_run_parameters(tmp_path):
    import inspect

    from components.parameters import BY_NAME
    from components.train import train
    from components.tune import tune

    for component in (train, tune):
        signature = inspect.signature(component.python_func).parameters
        for name in ("validation_fraction", "max_epochs"):
            assert signature[name].default == BY_NAME[name].default, (component.name, name)
    assert inspect.signature(train.python_func).parameters["model_family"].default == (
        BY_NAME["model_family"].default
    )
