"""The one parameter vocabulary: the compiled pipeline, --help, local and server runs all use it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from components import parameters
from components.parameters import PARAMETERS, ParameterError, coerce
from pipelines.kubetfx_pipeline import ClusterOptions, compile_pipeline
from pipelines.remote.submit import SubmitError, validate_parameters

REPO = Path(__file__).resolve().parents[1]
PYTHON_TYPES = {"STRING": str, "NUMBER_INTEGER": int, "NUMBER_DOUBLE": float, "BOOLEAN": bool}


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> dict:
    path = tmp_path_factory.mktemp("vocab") / "p.yaml"
    compile_pipeline(str(path), ClusterOptions(mount_path="/mnt/v"))
    return next(yaml.safe_load_all(path.read_text()))


def test_the_compiled_pipeline_declares_exactly_the_vocabulary(spec):
    declared = spec["root"]["inputDefinitions"]["parameters"]
    assert list(declared) == sorted(p.name for p in PARAMETERS) or set(declared) == {
        p.name for p in PARAMETERS
    }
    for p in PARAMETERS:
        d = declared[p.name]
        assert PYTHON_TYPES[d["parameterType"]] is p.type, p.name
        assert d["defaultValue"] == ("/mnt/v" if p.default is None else p.default), p.name
        assert d["description"].startswith(p.help), p.name  # what the KFP UI's run form shows


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"tune_enabled": "on"}, {"tune_enabled": True}),
        ({"tune_enabled": "No"}, {"tune_enabled": False}),
        ({"tuner_trials": " 3 "}, {"tuner_trials": 3}),
        ({"mae_threshold": "8000"}, {"mae_threshold": 8000.0}),
        ({"mae_threshold": 7}, {"mae_threshold": 7.0}),
        ({"hyperparameters": '{"units": 8}'}, {"hyperparameters": '{"units": 8}'}),
        ({"model_name": "claims-v2"}, {"model_name": "claims-v2"}),
    ],
)
def test_values_are_converted_to_their_types(raw, expected):
    assert coerce(raw) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"tuner_trail": "3"}, "unknown parameter 'tuner_trail'; did you mean 'tuner_trials'?"),
        ({"mae_threshold": "nan"}, "parameter 'mae_threshold' must be a finite number, got 'nan'"),
        ({"tune_enabled": "maybe"}, "parameter 'tune_enabled' must be true or false, got 'maybe'"),
        ({"tuner_trials": "2.5"}, "parameter 'tuner_trials' must be an integer, got '2.5'"),
        ({"tuner_trials": "0"}, "parameter 'tuner_trials' must be a positive integer, got 0"),
        ({"fail_on": "unsafee"}, "must be one of unsafe, any, none; got 'unsafee' (did you mean 'unsafe'?)"),
        ({"hyperparameters": "{units: 8}"}, "parameter 'hyperparameters' is not valid JSON"),
        ({"hyperparameters": "[1]"}, "parameter 'hyperparameters' must be a JSON object"),
        ({"model_name": "../evil"}, "parameter 'model_name' must be a plain name"),
        ({"split_buckets": "train=2"}, "parameter 'split_buckets' must look like 'train:2,eval:1'"),
    ],
)
def test_bad_values_are_refused_in_one_plain_line(raw, message):
    with pytest.raises(ParameterError) as err:
        coerce(raw)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert "NUMBER_" not in str(err.value)


def test_a_server_run_coerces_through_the_same_function(spec):
    raw = {"tune_enabled": "on", "tuner_trials": "3", "mae_threshold": "9000"}
    assert validate_parameters(spec, raw) == coerce(raw)
    with pytest.raises(SubmitError, match="did you mean 'tuner_trials'"):
        validate_parameters(spec, {"tuner_trail": "3"})
    with pytest.raises(SubmitError, match="must be one of unsafe, any, none"):
        validate_parameters(spec, {"fail_on": "bogus"})


def test_the_stages_accept_exactly_the_vocabularys_choices():
    from components.lib import evaluate, label, tune, validate

    assert parameters.TUNER_CHOICES == tuple(tune.TUNERS)
    assert set(parameters.FAIL_ON_CHOICES) == {validate.FAIL_UNSAFE, validate.FAIL_ANY, validate.FAIL_NONE}
    assert set(parameters.EVALUATE_ENGINE_CHOICES) == set(evaluate.ENGINES)
    assert parameters.TASK_CHOICES == label.TASKS


def test_submit_help_lists_every_parameter_with_its_default():
    out = subprocess.run(
        [sys.executable, "submit.py", "--help"], cwd=REPO, capture_output=True, text=True, timeout=60
    ).stdout
    for p in PARAMETERS:
        assert f"  {p.name} (" in out and p.help in out, p.name
    assert "mae_threshold (a number, default -1.0)" in out  # absolute gates are off by default
    assert "naive_margin (a number, default 0.1)" in out


def test_a_rejected_command_creates_nothing(tmp_path):
    storage = tmp_path / "never"
    proc = subprocess.run(
        [sys.executable, "submit.py", "--storage", str(storage), "--param", "fail_on=bogus"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "[submit] parameter 'fail_on' must be one of unsafe, any, none; got 'bogus'"
    ]
    assert not storage.exists()


def test_component_defaults_equal_the_vocabularys():
    """A component input that has a default (its literal: KFP runs the function's own source) and
    shares a run parameter's name defaults to that parameter's default."""
    from components.evaluate import evaluate
    from components.example_gen import example_gen
    from components.schema import schema
    from components.statistics import statistics

    checked = 0
    for component in (example_gen, statistics, schema, evaluate):
        for name, spec in component.component_spec.inputs.items():
            if spec.default is not None and name in parameters.BY_NAME:
                assert spec.default == parameters.BY_NAME[name].default, (component.name, name)
                checked += 1
    assert checked >= 4  # column_types, task, naive_margin, min_accuracy
