"""Tune: keras-tuner search on the transformed synthetic examples, and tuning switched off."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_component
from test_transform import transform_outputs

from components import names
from components.errors import StageError
from components.modules import insurance

SPACE = {
    "learning_rate": set(insurance.LEARNING_RATES),
    "units": set(insurance.UNITS),
    "num_layers": set(insurance.NUM_LAYERS),
}


@pytest.fixture(scope="module")
def transformed(storage_root, examples, synthetic_csv):
    return transform_outputs(storage_root, examples, synthetic_csv)


def run_tune(storage_root: Path, transformed, tmp_path: Path, run_id: str, **overrides):
    from components.tune import tune

    graph, examples = transformed
    kwargs = dict(
        storage_root=str(storage_root),
        run_id=run_id,
        module_file="",
        tuner="random",
        trials=2,
        steps=10,
        batch_size=16,
        enabled=True,
        hyperparameters="",
        label=names.LABEL,
    )
    kwargs.update(overrides)
    outputs = run_component(
        tune, tmp_path / "kfp", transformed_examples=examples, transform_graph=graph, **kwargs
    )
    best, summary = outputs["best_hyperparameters"], outputs["summary"]
    values = json.loads((Path(best.path) / names.HYPERPARAMETERS_FILE).read_text())
    return best, summary, values


def test_random_search_writes_the_best_trial(storage_root, transformed, tmp_path):
    best, summary, values = run_tune(storage_root, transformed, tmp_path, "tune-random")
    assert set(values) == set(SPACE)
    for key, value in values.items():
        assert value in SPACE[key]
    trials = json.loads((Path(best.path) / "trials.json").read_text())
    assert len(trials) == 2
    losses = [summary.metadata[f"trial_{i}_val_loss"] for i in range(1, 3)]  # counted from 1, as the console
    assert [t["val_loss"] for t in trials] == pytest.approx(losses)
    # The lowest val_loss wins unless the module's defaults (trial 0) are within DEFAULTS_MARGIN of it.
    from components.lib.tune_groups import DEFAULTS_MARGIN

    chosen = 0 if min(losses) > losses[0] * (1 - DEFAULTS_MARGIN) else losses.index(min(losses))
    assert summary.metadata["best_val_loss"] == pytest.approx(losses[chosen])
    assert values == trials[chosen]["values"]
    assert best.metadata["hyperparameters"] == values and best.metadata["searched"] is True
    # keras-tuner's working files are on the volume under the stage directory, not in the artifact.
    stage = storage_root / names.ARTIFACTS_DIR / "tune-random" / names.STAGE_TUNE
    assert best.metadata["tuner_dir"] == str(stage)
    assert list(stage.glob("*/oracle.json"))
    assert sorted(p.name for p in Path(best.path).iterdir()) == [names.HYPERPARAMETERS_FILE, "trials.json"]
    # The first trial is the module's own setting (the widest layers, two of them, rate 0.01).
    assert trials[0]["values"] == {"learning_rate": 0.01, "units": max(SPACE["units"]), "num_layers": 2}
    # Trials were fit as train fits: whole epochs of the train split minus its validation slice.
    budget = best.metadata["budget"]
    assert budget["epochs"] >= 3 and budget["validation_rows"] >= 25 and budget["fit_rows"] > 0


def test_given_values_are_fixed_during_the_search(storage_root, transformed, tmp_path):
    best, _, values = run_tune(
        storage_root, transformed, tmp_path, "tune-fixed", hyperparameters='{"learning_rate": 0.001}'
    )
    trials = json.loads((Path(best.path) / "trials.json").read_text())
    assert [t["values"]["learning_rate"] for t in trials] == [0.001, 0.001]
    assert values["learning_rate"] == 0.001


def test_hyperband_is_selectable(storage_root, transformed, tmp_path):
    best, summary, values = run_tune(
        storage_root, transformed, tmp_path, "tune-hb", tuner="hyperband", steps=6
    )
    assert set(values) == set(SPACE)
    assert 1 <= summary.metadata["trials"] <= 2


def test_bayesian_runs_or_says_what_is_missing(storage_root, transformed, tmp_path):
    try:
        import sklearn  # noqa: F401
    except ImportError:
        with pytest.raises(StageError, match="tuner 'bayesian' is unavailable in this image"):
            run_tune(storage_root, transformed, tmp_path, "tune-bayes", tuner="bayesian")
    else:
        _, _, values = run_tune(storage_root, transformed, tmp_path, "tune-bayes", tuner="bayesian")
        assert set(values) == set(SPACE)


def test_disabled_writes_defaults_with_overrides_and_no_search(storage_root, transformed, tmp_path):
    best, summary, values = run_tune(
        storage_root, transformed, tmp_path, "tune-off", enabled=False, hyperparameters='{"units": 16}'
    )
    assert values == {**insurance.default_hyperparameters(), "units": 16}
    assert best.metadata["searched"] is False
    assert "best_val_loss" not in summary.metadata
    kept = storage_root / names.ARTIFACTS_DIR / "tune-off"
    files = [p.relative_to(kept).as_posix() for p in kept.rglob("*") if p.is_file()]
    assert files == [f"tune/{names.MANIFEST_FILE}"]  # no tuner files: only lineage's manifest


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"hyperparameters": "{not json"}, "are not valid JSON"),
        ({"hyperparameters": "[1, 2]"}, "must be a JSON object"),
        ({"hyperparameters": '{"lr": 0.1}'}, "hyperparameters ['lr'] are not among the module's"),
        (
            {"enabled": False, "hyperparameters": '{"lr": 0.1}'},
            "hyperparameters ['lr'] are not among the module's",
        ),
        ({"tuner": "grid"}, "unknown tuner 'grid'; choose one of ['random', 'bayesian', 'hyperband']"),
        ({"trials": 0}, "trials must be positive, got 0"),
    ],
)
def test_bad_settings_are_stage_errors(storage_root, transformed, tmp_path, overrides, problem):
    with pytest.raises(StageError) as err:
        run_tune(storage_root, transformed, tmp_path, "tune-bad", **overrides)
    assert str(err.value).startswith("[tune]")
    assert problem in str(err.value)


def test_failing_build_model_names_the_module(storage_root, transformed, tmp_path):
    module = storage_root / "modules" / "bad_build.py"  # on the volume
    module.parent.mkdir(exist_ok=True)
    module.write_text(
        "from components.modules.insurance import *  # noqa\n"
        "def build_model(hparams, tf_transform_output):\n"
        "    raise ValueError('no such layer')\n"
    )
    with pytest.raises(StageError) as err:
        run_tune(storage_root, transformed, tmp_path, "tune-badbuild", module_file=str(module))
    assert str(err.value) == f"[tune] {module}: build_model raised ValueError: no such layer at line 3"
