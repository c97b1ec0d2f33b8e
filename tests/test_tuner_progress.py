"""The tuner's trials as users see them: a console line each, TensorBoard's HParams, trials.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_transform import transform_outputs
from test_tune import run_tune

from components import names
from components.lib import tuner_progress


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (2, "2"),
        (2.0, "2"),
        (0.001, "0.001"),
        (0.0001, "0.0001"),
        (1e-05, "1e-05"),
        (0.3, "0.3"),
        ("relu", "relu"),
    ],
)
def test_values_show_as_users_wrote_them(value, shown):
    assert tuner_progress.format_value(value) == shown


def test_a_trial_line_is_a_progress_line():
    line = tuner_progress.trial_line(2, 4, {"num_layers": 2.0, "units": 64, "learning_rate": 0.01}, 0.13419)
    assert (
        line
        == f"{names.PROGRESS_PREFIX}trial 2/4: num_layers 2, units 64, learning_rate 0.01 val_loss 0.1342"
    )
    failed = tuner_progress.trial_line(1, 4, {"units": 8}, None, "FAILED")
    assert failed.endswith("trial 1/4: units 8 no val_loss (failed)")


def test_a_search_prints_a_line_per_trial_and_records_trials_for_tensorboard(
    storage_root, examples, synthetic_csv, tmp_path, capfd
):
    import tensorflow as tf

    transformed = transform_outputs(storage_root, examples, synthetic_csv)
    best, summary, _ = run_tune(storage_root, transformed, tmp_path, "tune-progress", trials=2)
    lines = [x for x in capfd.readouterr().out.splitlines() if x.startswith(names.PROGRESS_PREFIX)]
    trials = json.loads((Path(best.path) / "trials.json").read_text())
    assert len(lines) == 2
    for i, (line, trial) in enumerate(zip(lines, trials, strict=True)):
        assert line.startswith(f"{names.PROGRESS_PREFIX}trial {i + 1}/2: ")
        assert line.endswith(f"val_loss {trial['val_loss']:.4g}")
        for key, value in trial["values"].items():
            assert f"{key} {tuner_progress.format_value(value)}" in line
    # The same trials on the volume, for the evaluation report.
    stage = storage_root / names.ARTIFACTS_DIR / "tune-progress" / names.STAGE_TUNE
    assert tuner_progress.read_trials(stage) == trials
    # One HParams session per trial under the tune output's logs: its values and its val_loss.
    sessions = sorted((stage / names.TENSORBOARD_DIR).glob("trial_*"))
    assert len(sessions) == 2
    for session, trial in zip(sessions, trials, strict=True):
        plugins, scalars = set(), {}
        for event_file in session.glob("events.out.tfevents.*"):
            for event in tf.compat.v1.train.summary_iterator(str(event_file)):
                for value in event.summary.value:
                    plugins.add(value.metadata.plugin_data.plugin_name)
                    if value.tag == tuner_progress.METRIC:
                        scalars[value.tag] = float(tf.make_ndarray(value.tensor))
        assert "hparams" in plugins
        assert scalars[tuner_progress.METRIC] == pytest.approx(trial["val_loss"], rel=1e-6)
    assert summary.metadata["trials"] == 2
