"""The tuner's trials as users see them: a console line each, TensorBoard's HParams, trials.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tensorboard.plugins.hparams import api_pb2
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
    stage = storage_root / names.ARTIFACTS_DIR / "tune-progress" / names.STAGE_TUNE
    # The same trials on the volume, for the evaluation report, with each one's number and epochs.
    recorded = tuner_progress.read_trials(stage)
    assert [{k: t[k] for k in trials[0]} for t in recorded] == trials
    assert [t["number"] for t in recorded] == [1, 2]
    trials = recorded
    # One HParams session per trial under the tune output's logs, numbered 1..N as the console numbers
    # them: its values (integers as integers), its score, its per-epoch curves and its status.
    logs = stage / names.TENSORBOARD_DIR
    sessions = sorted(logs.glob("trial_*"))
    assert [s.name for s in sessions] == ["trial_1", "trial_2"]
    for n, (session, trial) in enumerate(zip(sessions, trials, strict=True), start=1):
        found = read_session(session)
        assert found["start"].group_name == f"trial {n}"
        for key, value in trial["values"].items():
            assert found["start"].hparams[key].number_value == pytest.approx(value)
        assert found["end"].status == api_pb2.STATUS_SUCCESS
        curve = found["scalars"]["epoch_val_loss"]
        assert len(curve) == len(trial["history"]["val_loss"]) >= 2  # a curve, not one point
        assert [v for _, v in curve] == pytest.approx(trial["history"]["val_loss"], rel=1e-6)
        assert [s for s, _ in curve] == list(range(1, len(curve) + 1))
        assert len(found["scalars"]["epoch_loss"]) == len(curve)
        [(step, score)] = found["scalars"][tuner_progress.METRIC]  # the score, at its best epoch
        assert score == pytest.approx(trial["val_loss"], rel=1e-6) == pytest.approx(min(v for _, v in curve))
        assert curve[step - 1][1] == pytest.approx(score, rel=1e-6)
    # The experiment: integer hyperparameters as discrete lists of integers, the rate as its choices.
    experiment = read_session(logs)["experiment"]
    domains = {info.name: info for info in experiment.hparam_infos}
    for key in ("units", "num_layers"):
        values = [v.number_value for v in domains[key].domain_discrete.values]
        assert (
            values
            and all(v == int(v) for v in values)
            and set(map(int, values)) >= {int(t["values"][key]) for t in trials}
        )
    assert [m.name.tag for m in experiment.metric_infos] == [tuner_progress.METRIC]
    assert summary.metadata["trials"] == 2


def read_session(run: Path) -> dict:
    """What a run folder's event files hold: the hparams plugin's protos and the scalars per tag."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import plugin_data_pb2

    found: dict = {"scalars": {}}
    for event_file in sorted(run.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(event_file)):
            for value in event.summary.value:
                plugin = value.metadata.plugin_data
                if plugin.plugin_name == "hparams":
                    data = plugin_data_pb2.HParamsPluginData.FromString(plugin.content)
                    kind = data.WhichOneof("data")
                    found[{"session_start_info": "start", "session_end_info": "end"}.get(kind, kind)] = (
                        getattr(data, kind)
                    )
                elif plugin.plugin_name == "scalars":
                    found["scalars"].setdefault(value.tag, []).append(
                        (event.step, float(tf.make_ndarray(value.tensor)))
                    )
    return found


@pytest.mark.parametrize(
    ("status", "session"),
    [("COMPLETED", "STATUS_SUCCESS"), ("FAILED", "STATUS_FAILURE"), ("INVALID", "STATUS_FAILURE")],
)
def test_a_trial_status_becomes_the_session_status(status, session):
    assert tuner_progress.session_status(status) == session


def test_integer_hyperparameters_get_integer_domains():
    import keras_tuner as kt

    hp = kt.HyperParameters()
    hp.Int("layers", 1, 3)
    hp.Choice("units", [16, 32, 64])
    hp.Choice("rate", [0.01, 0.001])
    hp.Float("dropout", 0.0, 0.5)
    hp.Choice("activation", ["relu", "tanh"])
    domains = tuner_progress.hparam_domains(hp.space)
    assert domains["layers"].values == [1, 2, 3] and domains["layers"].dtype is int
    assert domains["units"].values == [16, 32, 64] and domains["units"].dtype is int
    assert domains["rate"].dtype is float and domains["activation"].dtype is str
    assert (domains["dropout"].min_value, domains["dropout"].max_value) == (0.0, 0.5)
