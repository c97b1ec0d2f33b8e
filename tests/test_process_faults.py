"""Faults of the process: an error in user code, an unexpected error, Ctrl-C, a run that crashed.

No ``from __future__ import annotations`` here: KFP reads the component annotations.
"""

import errno
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kfp import compiler, dsl

from components import names
from components.errors import StageError
from components.lib import training, user_module
from pipelines.lineage.store import RUN_CONTEXT, LineageRecorder, SafeLineage
from pipelines.local.inprocess import load_pipeline_spec, run_pipeline_spec

REPO = Path(__file__).resolve().parents[1]

MODULE = """\
def _units(hparams):
    return hparams["units"]


def default_hyperparameters():
    table = {}
    return {"units": table["units"]}


def build_model(hparams, tft_output):
    return _units(hparams)
"""


def _module(tmp_path: Path) -> tuple[Path, object]:
    path = tmp_path / "modules" / "m.py"
    path.parent.mkdir(parents=True)
    path.write_text(MODULE)
    return path, user_module.load_user_module("modules/m.py", str(tmp_path), "tune")


def test_an_error_in_a_user_function_is_one_line_naming_file_function_and_line(tmp_path):
    path, module = _module(tmp_path)
    fn = user_module.require(module, user_module.DEFAULT_HYPERPARAMETERS, "tune")
    with pytest.raises(StageError) as err:
        user_module.call(fn, context=None)
    assert str(err.value) == f"[tune] {path}: default_hyperparameters raised KeyError: 'units' at line 7"
    assert isinstance(err.value.__cause__, KeyError)


def test_build_model_names_the_line_in_the_users_file_not_the_helper_it_called(tmp_path):
    path, module = _module(tmp_path)
    with pytest.raises(StageError) as err:
        training.build_user_model(module, {}, None, "train")
    assert str(err.value) == f"[train] {path}: build_model raised KeyError: 'units' at line 2"


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def boom(x: str):
    """A stage with a bug: not a StageError."""
    raise KeyError(x)


@dsl.pipeline(name="boom")
def boom_pipeline(x: str = "x"):
    boom(x=x)


def test_an_unexpected_error_is_one_line_pointing_to_the_log_with_the_traceback(tmp_path):
    package = tmp_path / "boom.yaml"
    compiler.Compiler().compile(boom_pipeline, str(package))
    lines: list[str] = []
    run = run_pipeline_spec(load_pipeline_spec(package), {}, tmp_path, run_id="r1", log=lines.append)
    log = tmp_path / "r1" / "logs" / "boom.log"
    assert not run.succeeded
    assert run.tasks[0].error == f"[boom] unexpected error: KeyError: 'x' (traceback: {log})"
    assert "Traceback" in log.read_text() and "raise KeyError(x)" in log.read_text()


def test_a_lineage_warning_is_one_short_line(tmp_path):
    warnings: list[str] = []
    lineage = SafeLineage(tmp_path, warnings.append)

    def fail() -> None:
        raise OSError("database or disk is full: " + "x" * 3000 + "\nmore\nlines")

    lineage._guarded("the run's end", fail)
    assert len(warnings) == 1 and "\n" not in warnings[0] and len(warnings[0]) < 400


def _status(storage: Path, run_id: str) -> str:
    store = LineageRecorder.for_storage(storage).store
    return store.get_context_by_type_and_name(RUN_CONTEXT, run_id).custom_properties["status"].string_value


def test_a_run_that_crashed_on_a_full_disk_is_failed_not_interrupted_later(tmp_path, monkeypatch, capsys):
    import submit
    from pipelines.local import run as local

    def full_disk(storage, data, params, *, start, **_):  # noqa: ANN001, ANN202
        start("run-1", "kubetfx", {})
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(local, "run_locally", full_disk)
    assert submit.main(["--storage", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    log = tmp_path / names.KFP_LOCAL_DIR / "run-1" / "logs" / "submit.log"
    assert err == [
        f"[submit] unexpected error: OSError: [Errno 28] No space left on device (traceback: {log})"
    ]
    assert "Traceback" in log.read_text()
    warnings: list[str] = []
    SafeLineage(tmp_path, warnings.append)  # the next run
    assert _status(tmp_path, "run-1") == "FAILED" and warnings == []


def test_ctrl_c_during_a_stage_is_one_line_exit_130_and_the_run_interrupted(tmp_path, synthetic_csv):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "submit.py", "--data", str(synthetic_csv), "--storage", str(tmp_path / "s")]
    # SIGINT back to its default in the child: a test session started in the background (`make test
    # &`) ignores it, the child would inherit that, and Python then installs no KeyboardInterrupt.
    proc = subprocess.Popen(
        cmd,
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    try:
        for line in proc.stdout:  # the first stage's line, then the next stage's log: it is running
            if line.startswith("✔ ") or time.monotonic() > deadline:
                break
        logs = next((tmp_path / "s" / names.KFP_LOCAL_DIR).glob("*/logs"))
        while len(list(logs.glob("*.log"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    lines = [ln for ln in stderr.splitlines() if ln.startswith("[submit]")]
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert len(lines) == 1, stderr
    match = re.fullmatch(
        r"\[submit\] interrupted during ([\w-]+): run (\S+) marked INTERRUPTED; "
        r"nothing was pushed by this run",
        lines[0],
    )
    assert match, lines[0]
    assert _status(tmp_path / "s", match.group(2)) == "INTERRUPTED"
