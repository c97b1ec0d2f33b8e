"""submit.py's local preflight: every bad parameter, path, module, file or storage root is one
``[stage] file: problem`` line, exit 2, before anything is written (pipelines/local/preflight.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import pytest

import submit
from components import names
from pipelines.local import preflight

REPO = Path(__file__).resolve().parents[1]
HEADER = ",".join(names.COLUMNS)
GOOD_MODULE = "from components.modules.insurance import *  # noqa\n"


def snapshot(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else ["<absent>"]


def run_submit(capsys, storage: Path, *params: str, data: Path | None = None) -> tuple[int, list[str]]:
    """``submit.py`` in this process (nothing heavy is imported before the preflight answers)."""
    argv = ["--storage", str(storage)] + (["--data", str(data)] if data else [])
    for p in params:
        argv += ["--param", p]
    code = submit.main(argv)
    err = capsys.readouterr().err
    return code, [line for line in err.splitlines() if line.strip()]


@pytest.fixture
def volume(tmp_path: Path) -> Path:
    """A storage root holding data, modules and files a user might name."""
    root = tmp_path / "storage"
    data = root / names.DATA_DIR
    data.mkdir(parents=True)
    (data / "insurance.csv").write_text(HEADER + "\n19,female,27.9,0,yes,southwest,16884.92\n")
    (data / "only_preprocessing.py").write_text("def preprocessing_fn(inputs):\n    return inputs\n")
    (data / "no_build.py").write_text(
        "from components.modules.insurance import preprocessing_fn, hyperparameter_space  # noqa\n"
    )
    (data / "broken.py").write_text("def preprocessing_fn(inputs):\n    return (\n")
    (data / "good.py").write_text(GOOD_MODULE)
    (data / "bad_schema.pbtxt").write_text("this is { not a schema")
    (data / "gates.json").write_text('{"mae_treshold": 7000}')
    (tmp_path / "outside.py").write_text(GOOD_MODULE)
    (tmp_path / "outside.csv").write_text(HEADER + "\n")
    return root


Case = namedtuple("Case", "params expected")
# ``{root}``: the storage root; ``{data}``: its data folder; ``{tmp}``: the folder around it;
# ``{up}``: that folder's parent.
CASES = {
    "serving_root off the volume": Case(
        ["serving_root=../../outside/serving"],
        "[push] {up}/outside/serving: serving_root '../../outside/serving' is outside the storage root "
        "{root}; a run reads and writes only on its volume",
    ),
    "data off the volume": Case(
        ["data=../outside.csv"],
        "[example_gen] {tmp}/outside.csv: data '../outside.csv' is outside the storage root {root}; "
        "a run reads and writes only on its volume",
    ),
    "data missing": Case(["data=data/nope.csv"], "[example_gen] {data}/nope.csv: input data does not exist"),
    "module_file off the volume": Case(
        ["module_file={tmp}/outside.py"],
        "[transform] {tmp}/outside.py: module_file '{tmp}/outside.py' is outside the storage root {root}; "
        "a run reads and writes only on its volume",
    ),
    "module without build_model": Case(
        ["module_file=data/no_build.py"],
        "[train] {data}/no_build.py: user module defines no function 'build_model'",
    ),
    "module without hyperparameter_space": Case(
        ["module_file=data/only_preprocessing.py"],
        "[tune] {data}/only_preprocessing.py: user module defines no function 'hyperparameter_space'",
    ),
    "module without default_hyperparameters, tuning off": Case(
        ["module_file=data/only_preprocessing.py", "tune_enabled=false"],
        "[tune] {data}/only_preprocessing.py: user module defines no function 'default_hyperparameters'",
    ),
    "module with a syntax error": Case(
        ["module_file=data/broken.py"],
        "[transform] {data}/broken.py: syntax error in user module at line 2: '(' was never closed",
    ),
    "module file missing": Case(
        ["module_file=data/absent.py"], "[transform] {data}/absent.py: user module file does not exist"
    ),
    "schema_file missing": Case(
        ["schema_file=data/absent.pbtxt"], "[schema] {data}/absent.pbtxt: schema file does not exist"
    ),
    "schema_file not a schema": Case(
        ["schema_file=data/bad_schema.pbtxt"],
        "[schema] {data}/bad_schema.pbtxt: not a valid text Schema proto",
    ),
    "schema_file off the volume": Case(
        ["schema_file=/etc/hostname"],
        "[schema] /etc/hostname: schema_file '/etc/hostname' is outside the storage root {root}; "
        "a run reads and writes only on its volume",
    ),
    "thresholds_file with an unknown key": Case(
        ["thresholds_file=data/gates.json"],
        "[evaluate] {data}/gates.json: unknown threshold key(s) ['mae_treshold']",
    ),
    "thresholds_file off the volume": Case(
        ["thresholds_file=../gates.json"],
        "[evaluate] {tmp}/gates.json: thresholds_file '../gates.json' is outside the storage root {root}; "
        "a run reads and writes only on its volume",
    ),
    "slice feature not in the data": Case(
        ["data=data/insurance.csv", "slice_feature=smokes"],
        "[evaluate] {data}/insurance.csv: slice feature 'smokes' is not a column of the data: "
        "['age', 'sex', 'bmi', 'children', 'smoker', 'region', 'charges']",
    ),
    "model name with a path": Case(
        ["model_name=../evil"],
        "[submit] parameter 'model_name' must be a plain name (letters, digits, '.', '_', '-'), "
        "got '../evil'",
    ),
    "minimum evidence below zero": Case(
        ["min_eval_examples=-1"],
        "[submit] parameter 'min_eval_examples' must be 0 (no minimum) or more, got -1",
    ),
    "hyperparameters not JSON": Case(
        ["hyperparameters={{units: 3"], "[submit] parameter 'hyperparameters' is not"
    ),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_a_bad_parameter_is_one_line_before_anything_is_written(capsys, volume, case):
    params, expected = CASES[case]
    tmp = volume.parent
    fill = {"root": volume, "data": volume / names.DATA_DIR, "tmp": tmp, "up": tmp.parent}
    before = snapshot(tmp)
    code, lines = run_submit(capsys, volume, *(p.format(**fill) for p in params))
    assert code == 2
    assert len(lines) == 1, lines
    assert lines[0].startswith(expected.format(**fill)), lines[0]
    assert snapshot(tmp) == before  # no storage, data copy, lineage store, YAML or registry


def test_a_good_module_on_the_volume_passes(volume):
    values = preflight.check(volume, None, {"module_file": "data/good.py", "data": "data/insurance.csv"})
    assert values == {"module_file": "data/good.py", "data": "data/insurance.csv"}


def test_a_damaged_registry_stops_the_run_before_it_starts(capsys, volume):
    index = volume / names.REGISTRY_INDEX
    index.parent.mkdir()
    index.write_text('{"format": 1, "versions": [')
    before = snapshot(volume)
    code, lines = run_submit(capsys, volume)
    assert code == 2 and len(lines) == 1
    assert lines[0].startswith(f"[{names.STAGE_RESOLVE}] {index}: registry index is damaged (not valid JSON")
    assert snapshot(volume) == before


def test_missing_data_file(capsys, tmp_path):
    code, lines = run_submit(capsys, tmp_path / "never", data=tmp_path / "absent.csv")
    assert (code, lines) == (2, [f"[submit] {tmp_path / 'absent.csv'}: input data does not exist"])
    assert not (tmp_path / "never").exists()


def test_a_storage_root_under_a_file_cannot_be_made(capsys, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    code, lines = run_submit(capsys, blocker / "storage")
    assert (code, lines) == (
        2,
        [f"[submit] {blocker / 'storage'}: the storage root cannot be made ({blocker} is a file)"],
    )


def test_an_unwritable_storage_root(capsys, tmp_path, monkeypatch):
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == tmp_path else real(p, mode))
    code, lines = run_submit(capsys, tmp_path / "storage")
    assert (code, lines) == (2, [f"[submit] {tmp_path / 'storage'}: the storage root is not writable"])
    assert not (tmp_path / "storage").exists()


def test_a_storage_root_without_room_for_the_run(capsys, tmp_path, monkeypatch):
    data = tmp_path / "in.csv"
    data.write_text(HEADER + "\n" + "19,female,27.9,0,yes,southwest,16884.92\n" * 1000)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(
        shutil, "disk_usage", lambda p: usage(10 * 2**30, 10 * 2**30 - 50 * 2**20, 50 * 2**20)
    )
    code, lines = run_submit(capsys, tmp_path / "storage", data=data)
    assert code == 2
    assert lines == [
        f"[submit] {tmp_path / 'storage'}: the storage root has 50 MiB free; "
        "a run on this data needs at least 100 MiB"
    ]
    assert not (tmp_path / "storage").exists()


def test_the_backend_runner_without_an_emulator_is_refused_first(capsys, tmp_path, monkeypatch):
    import pipelines.backend.runner as backend

    monkeypatch.setattr(backend, "available", lambda: "needs Linux and util-linux's unshare")
    code = submit.main(["--storage", str(tmp_path / "s"), "--runner", "backend"])
    assert code == 2
    assert capsys.readouterr().err.strip() == (
        "[submit] --runner backend: the KFP backend emulator needs Linux and util-linux's unshare"
    )
    assert not (tmp_path / "s").exists()


def test_submit_prints_the_line_without_a_traceback(tmp_path):
    """The way users meet it: a process, one line on stderr, exit 2, nothing created."""
    storage = tmp_path / "never"
    proc = subprocess.run(
        [
            sys.executable,
            "submit.py",
            "--storage",
            str(storage),
            "--param",
            "serving_root=../../outside/serving",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"[push] {tmp_path.parent}/outside/serving: serving_root '../../outside/serving' is outside "
        f"the storage root {storage}; a run reads and writes only on its volume"
    ]
    assert "Traceback" not in proc.stderr and not storage.exists()
