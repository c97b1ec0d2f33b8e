"""Fault injection: a push killed (SIGKILL) or failing (I/O error) at every step, stages killed before
they publish, legacy and hand-made serving directories, too little evidence to bless.

Kill points and I/O errors are chosen by ``KUBETFX_FAULTS`` (``components.lib.faults``), never by
timing: the real code runs in a child process and dies exactly at the named step. After every
crash "the next run" — resolve-baseline's housekeeping, then a push — must leave
``serving/<model>/`` and ``registry/index.json`` in agreement. docs/reliability.md lists every
case with the test that checks it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, run_component
from model_factory import fake_saved_model, push_directly

from components import names
from components.errors import StageError
from components.lib import faults, reconcile, registry, storage
from components.lib.blessing import Blessing
from components.resolve_baseline import resolve_baseline

pytestmark = pytest.mark.faults  # the fault-injection tier: pytest -m faults

MODEL = names.MODEL_NAME
TESTS = Path(__file__).resolve().parent


@pytest.fixture
def src(tmp_path: Path) -> Path:
    return fake_saved_model(tmp_path / "train" / names.MODEL_SERVING_DIR)


def child_push(src: Path, storage: Path, run_id: str, fault: str, baseline: int | None = None) -> int:
    """A blessed push in its own process with ``KUBETFX_FAULTS=fault``; its exit code (-9: killed)."""
    code = (
        f"import sys; sys.path[:0] = [{str(TESTS)!r}, {str(REPO)!r}]\n"
        "from model_factory import push_directly\n"
        "from components import names\n"
        "from components.lib.blessing import Blessing\n"
        "blessing = Blessing(names.BLESSED, reasons=['ok'], metrics={'mae': 1000.0},\n"
        f"    baseline={baseline!r})\n"
        f"push_directly({str(src)!r}, {str(storage)!r}, run_id={run_id!r}, fingerprint='fp-{run_id}',\n"
        "    blessing=blessing)\n"
    )
    env = {**os.environ, faults.ENV: fault}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode in (0, -signal.SIGKILL), proc.stderr
    return proc.returncode


def next_run_resolves(tmp_path: Path, storage: Path, capsys) -> tuple[dict, list[str]]:
    """What the next run's resolve-baseline does: its housekeeping lines and the baseline it found."""
    out = run_component(resolve_baseline, tmp_path / "kfp-next", storage_root=str(storage), model_name=MODEL)
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith(names.PROGRESS_PREFIX)]
    return dict(out["baseline"].metadata), lines


def assert_agree(storage: Path, model: str = MODEL) -> dict:
    """serving/<model>/ and registry/index.json agree: every version directory is recorded at its
    path, nothing is pending, no temp directory or temp file is left."""
    doc = registry.read_index(storage, names.STAGE_PUSH)
    model_dir = storage / names.SERVING_DIR / model
    assert not registry.pending_of(doc), doc
    recorded = {e["version"]: registry.entry_path(storage, e) for e in registry.versions_of(doc, model)}
    on_disk = registry.numeric_dirs(model_dir)
    assert sorted(on_disk) == sorted(recorded)
    assert all(recorded[v] == model_dir / str(v) for v in on_disk)
    hidden = [p.name for p in model_dir.iterdir() if p.name.startswith(".")] if model_dir.exists() else []
    assert not [h for h in hidden if not h.startswith(registry.QUARANTINE_PREFIX)], hidden
    assert not registry.temp_files(storage)
    return doc


# --- A push killed at every step -------------------------------------------------------------------

COPY, INDEX_TMP = "copy of a killed push", "an index write that was killed"
# (kill point, version 1 in place after the kill, pending entry after the kill, leftovers after the kill)
KILL_POINTS = [
    ("push.before_copy", False, False, ()),
    ("push.mid_copy", False, False, (COPY,)),
    ("push.mid_pending_write", False, False, (COPY, INDEX_TMP)),
    ("push.before_rename", False, True, (COPY,)),
    ("push.after_rename", True, True, ()),
    ("push.mid_registry_write", True, True, (INDEX_TMP,)),
]


@pytest.mark.parametrize(
    ("point", "landed", "pending", "leftover"), KILL_POINTS, ids=[k[0] for k in KILL_POINTS]
)
def test_push_killed_at_each_step_is_settled_by_the_next_run(
    tmp_path, src, capsys, point, landed, pending, leftover
):
    storage = tmp_path / "storage"
    assert child_push(src, storage, "run-killed", point) == -signal.SIGKILL
    model_dir = storage / names.SERVING_DIR / MODEL
    assert registry.numeric_dirs(model_dir) == ([1] if landed else [])
    doc = registry.read_index(storage, names.STAGE_PUSH)
    assert bool(registry.pending_of(doc)) is pending and doc["versions"] == []
    copies = [p for p in model_dir.iterdir() if p.name.startswith(registry.TEMP_PREFIX)]
    assert bool(copies) is (COPY in leftover)
    assert bool(registry.temp_files(storage)) is (INDEX_TMP in leftover)
    # A reader without the lock already counts a version whose push died after its rename.
    assert [e["version"] for e in registry.pushed_of(storage, doc, MODEL)] == ([1] if landed else [])

    baseline, said = next_run_resolves(tmp_path, storage, capsys)
    doc = assert_agree(storage)
    if landed:
        [entry] = doc["versions"]
        assert entry["run_id"] == "run-killed" and entry["blessing"]["verdict"] == names.BLESSED
        assert entry["metrics"] == {"mae": 1000.0} and entry["fingerprint"] == "fp-run-killed"
        assert baseline["found"] is True and baseline["version"] == 1
        assert any("recorded insurance version 1" in line and "killed after" in line for line in said)
    else:
        assert doc["versions"] == [] and baseline["found"] is False
        if pending:
            assert any("dropped the pending entry of insurance version 1" in line for line in said)
    for kind in leftover:
        assert any(kind in line for line in said), said

    # The next push compares with what the registry now holds and numbers past it.
    nxt = push_directly(src, storage, run_id="run-next")
    assert nxt.pushed and nxt.version == (2 if landed else 1)
    assert_agree(storage)


def test_a_retried_push_of_a_killed_run_reports_its_version_instead_of_pushing_again(tmp_path, src):
    storage = tmp_path / "storage"
    assert child_push(src, storage, "run-r", "push.after_rename") == -signal.SIGKILL
    again = push_directly(src, storage, run_id="run-r", blessing=Blessing(names.BLESSED))
    assert again.pushed and again.version == 1 and again.reason == "already pushed by this run"
    assert any("recorded insurance version 1" in line for line in again.settled)
    assert registry.numeric_dirs(storage / names.SERVING_DIR / MODEL) == [1]
    assert_agree(storage)


# --- I/O errors at every step ----------------------------------------------------------------------

IO_POINTS = ["push.before_copy", "push.mid_copy", "push.mid_pending_write", "push.before_rename"]


@pytest.mark.parametrize("action", [faults.OSERROR, faults.ENOSPC])
@pytest.mark.parametrize("point", IO_POINTS)
def test_an_io_error_before_the_rename_is_one_line_and_pushes_nothing(
    tmp_path, src, monkeypatch, point, action
):
    storage = tmp_path / "storage"
    monkeypatch.setenv(faults.ENV, f"{point}={action}")
    with pytest.raises(StageError) as err:
        push_directly(src, storage, run_id="run-io")
    message = str(err.value)
    assert message.startswith(f"[{names.STAGE_PUSH}] ") and "\n" not in message
    assert ("injected I/O error" if action == faults.OSERROR else "No space left on device") in message
    model_dir = storage / names.SERVING_DIR / MODEL
    assert list(model_dir.iterdir()) == []  # neither a version nor the copy
    assert_agree(storage)
    monkeypatch.delenv(faults.ENV)
    assert push_directly(src, storage, run_id="run-after").version == 1


@pytest.mark.parametrize("point", ["push.after_rename", "push.mid_registry_write"])
def test_an_io_error_after_the_rename_leaves_the_version_served_and_pending(
    tmp_path, src, monkeypatch, capsys, point
):
    storage = tmp_path / "storage"
    monkeypatch.setenv(faults.ENV, f"{point}={faults.ENOSPC}")
    result = push_directly(src, storage, run_id="run-full")
    assert result.pushed and result.version == 1
    assert "still lists it as pending" in result.reason and "No space left" in result.reason
    doc = registry.read_index(storage, names.STAGE_PUSH)
    assert [e["version"] for e in registry.pending_of(doc)] == [1]
    assert registry.baseline_entry(storage, doc, MODEL)[0]["version"] == 1  # every reader counts it already
    monkeypatch.delenv(faults.ENV)
    baseline, said = next_run_resolves(tmp_path, storage, capsys)
    assert baseline["version"] == 1 and any("recorded insurance version 1" in line for line in said)
    assert_agree(storage)


# --- Version directories the registry does not list ------------------------------------------------


def test_a_version_left_by_an_older_push_is_registered_unverified_and_never_a_baseline(tmp_path, src, capsys):
    """The state an older push left when killed after its rename: serving/insurance/1, no index."""
    import shutil

    storage = tmp_path / "storage"
    model_dir = storage / names.SERVING_DIR / MODEL
    shutil.copytree(src, model_dir / "1")
    baseline, said = next_run_resolves(tmp_path, storage, capsys)
    assert baseline["found"] is False
    assert said == [
        f"{names.PROGRESS_PREFIX}[{names.STAGE_RESOLVE}] registry: registered {model_dir / '1'} as insurance "
        f"version 1, {reconcile.UNVERIFIED}: a SavedModel no registry entry listed; "
        "it is served, never a baseline"
    ]
    [entry] = assert_agree(storage)["versions"]
    assert entry["blessing"]["verdict"] == reconcile.UNVERIFIED and entry["run_id"] == ""
    result = push_directly(src, storage, run_id="run-2")  # no blessed baseline: judged alone is right
    assert result.pushed and result.version == 2
    assert_agree(storage)


def test_a_broken_version_directory_is_set_aside_and_its_number_never_reused(tmp_path, src, capsys):
    storage = tmp_path / "storage"
    model_dir = storage / names.SERVING_DIR / MODEL
    (model_dir / "7" / "variables").mkdir(parents=True)  # no saved_model.pb: TF Serving would fail on it
    _, said = next_run_resolves(tmp_path, storage, capsys)
    assert len(said) == 1 and f"moved {model_dir / '7'} to {registry.QUARANTINE_PREFIX}7-" in said[0]
    assert registry.numeric_dirs(model_dir) == [] and registry.quarantined(model_dir) == [7]
    assert push_directly(src, storage, run_id="run-8").version == 8
    assert_agree(storage)


def test_a_settled_volume_takes_no_lock_and_writes_nothing(tmp_path, capsys):
    storage = tmp_path / "storage"
    baseline, said = next_run_resolves(tmp_path, storage, capsys)
    assert said == [] and baseline["found"] is False
    assert not (storage / names.REGISTRY_DIR).exists() and not (storage / names.SERVING_DIR).exists()


# --- Stages killed before they publish: scratch leftovers ------------------------------------------


def child_publish(final: Path, stage: str, fault: str = "", hold: bool = False) -> subprocess.Popen:
    """A stage writing ``final`` through ``storage.atomic_dir`` in its own process."""
    code = (
        f"import sys, time; sys.path[:0] = [{str(REPO)!r}]\n"
        "from pathlib import Path\n"
        "from components.lib import storage\n"
        f"with storage.atomic_dir(Path({str(final)!r}), {stage!r}) as d:\n"
        "    (d / 'out.txt').write_text('x')\n"
        "    print('writing', flush=True)\n"
        f"    time.sleep(600 if {hold!r} else 0)\n"
    )
    env = {**os.environ, faults.ENV: fault}
    return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)


def test_a_killed_stages_scratch_is_removed_and_a_live_one_kept(tmp_path):
    root = tmp_path / "storage"
    dead = child_publish(
        storage.stage_dir(str(root), "run-1", names.STAGE_TRAIN), names.STAGE_TRAIN, "train.before_publish"
    )
    assert dead.wait(60) == -signal.SIGKILL
    live = child_publish(
        storage.stage_dir(str(root), "run-2", names.STAGE_TRAIN), names.STAGE_TRAIN, hold=True
    )
    try:
        assert live.stdout is not None and live.stdout.readline().strip() == "writing"
        [left] = list((root / names.ARTIFACTS_DIR / "run-1").iterdir())
        assert left.name.startswith(f".{names.STAGE_TRAIN}.partial-{storage.owner_tag().rsplit('-', 1)[0]}-")
        [running] = list((root / names.ARTIFACTS_DIR / "run-2").iterdir())
        done = storage.clean_scratch(root)
        assert done == [f"{left}: removed, left by a killed stage"]
        assert not left.exists() and running.exists()  # the concurrent run's live scratch stays
    finally:
        live.kill()
        live.wait(30)


def test_scratch_of_unknown_owners_waits_for_the_safe_age(tmp_path):
    run_dir = tmp_path / names.ARTIFACTS_DIR / "run-1"
    legacy = run_dir / ".tune.partial-0123abcd"  # named before owners were recorded
    other_host = run_dir / ".train.partial-pod-xyz-12-89abcdef"
    for d in (legacy, other_host):
        (d / "sub").mkdir(parents=True)
        (d / "sub" / "f").write_text("x")
    assert storage.clean_scratch(tmp_path) == []  # young: maybe a live stage elsewhere
    old = time.time() - storage.SCRATCH_MAX_AGE_S - 60
    for d in (legacy, other_host):
        for p in (d / "sub" / "f", d / "sub", d):
            os.utime(p, (old, old))
    assert len(storage.clean_scratch(tmp_path)) == 2 and list(run_dir.iterdir()) == []


def test_a_stage_killed_between_its_two_renames_gets_its_last_output_back(tmp_path):
    run_dir = tmp_path / names.ARTIFACTS_DIR / "run-1"
    old = run_dir / ".evaluate.old-nohost-99999999-0123abcd"  # the previous output, renamed away
    (old / "eval_result").mkdir(parents=True)
    stamp = time.time() - storage.SCRATCH_MAX_AGE_S - 60
    for p in (old / "eval_result", old):
        os.utime(p, (stamp, stamp))
    [line] = storage.clean_scratch(tmp_path)
    assert "restored" in line and (run_dir / names.STAGE_EVALUATE / "eval_result").is_dir()


def test_a_killed_data_copy_is_removed(tmp_path):
    incoming = tmp_path / names.DATA_DIR / f"{storage.INCOMING_PREFIX}{socket.gethostname()}-99999999-abc_12"
    incoming.mkdir(parents=True)
    (incoming / "insurance.csv").write_text("age\n1\n")
    assert storage.clean_scratch(tmp_path) == [f"{incoming}: removed, left by a killed stage"]


# --- Nothing bad is blessed: minimum evidence ------------------------------------------------------


def test_evidence_shortfall_names_both_minimums():
    from components.lib.evaluate.stage import evidence_shortfall

    assert evidence_shortfall(1.0, 2, 30, 100) == [
        "too little evidence: 1 eval example, at least 30 needed to bless (min_eval_examples)",
        "too little evidence: trained on 2 rows, at least 100 needed to bless (min_train_rows)",
    ]
    assert evidence_shortfall(30.0, 100, 30, 100) == []
    assert evidence_shortfall(1.0, None, 0, 0) == []  # 0: no minimum
    assert evidence_shortfall(500.0, None, 30, 100) == [
        "too little evidence: the number of training rows is unknown (min_train_rows)"
    ]


def test_training_rows_are_read_as_written_and_after_ml_metadatas_round_trip(tmp_path):
    from components.lib.examples import written_rows

    assert written_rows({names.META_ROWS: {"train": 2, "eval": 1}}, "", names.TRAIN) == 2
    assert written_rows({names.META_ROWS: {"struct": {"train": 2.0, "eval": 1.0}}}, "", names.TRAIN) == 2
    manifest = tmp_path / "examples"
    manifest.write_text(json.dumps({names.META_ROWS: {"train": 7}}))
    assert written_rows({}, str(manifest), names.TRAIN) == 7
    assert written_rows({}, str(tmp_path / "absent"), names.TRAIN) is None


TINY = "age,sex,bmi,children,smoker,region,charges\n" + "".join(
    f"{20 + i},{'male' if i % 2 else 'female'},{25 + i % 9}.5,{i % 3},{'yes' if i % 4 == 0 else 'no'},"
    f"{('southwest', 'northeast', 'southeast', 'northwest')[i % 4]},{4000 + 350 * i}.25\n"
    for i in range(12)
)


def test_a_model_judged_on_a_tiny_csv_is_not_blessed_and_not_pushed(tmp_path, tmp_path_factory):
    """Issue 14's first case: a few rows, a good MAE on a handful of eval examples -> NOT_BLESSED."""
    from conftest import examples_from_csv
    from model_factory import model_artifact, trained_models

    from components.evaluate import evaluate
    from components.lib.baseline import Baseline
    from components.push import push

    csv = tmp_path / "tiny.csv"
    csv.write_text(TINY)
    examples = examples_from_csv(tmp_path, csv, "tiny")
    rows = examples.metadata[names.META_ROWS]
    assert rows["train"] < 100 and rows["eval"] < 30
    model = model_artifact(trained_models(tmp_path_factory)["good"], tmp_path / "kfp")
    first = Baseline(False, names.NO_BASELINE, MODEL)
    baseline = tmp_path / "kfp" / "baseline"
    base_art = type(model)(name="baseline", uri=str(baseline), metadata=first.to_metadata())
    common = dict(
        storage_root=str(tmp_path),
        run_id="tiny",
        label=names.LABEL,
        slice_feature="",
        mae_threshold=1e9,  # any MAE passes: the verdict is the evidence's alone
        max_relative_degradation=0.05,
        thresholds_file="",
        beam_args="--runner=DirectRunner",
        engine="native",
    )
    outs = run_component(
        evaluate, tmp_path / "kfp-eval", examples=examples, model=model, baseline=base_art, **common
    )
    verdict = json.loads(Path(outs["blessing"].path, names.BLESSING_FILE).read_text())
    assert verdict["verdict"] == names.NOT_BLESSED
    assert verdict["reasons"][:2] == [
        f"too little evidence: {rows['eval']} eval examples, at least 30 needed to bless (min_eval_examples)",
        f"too little evidence: trained on {rows['train']} rows, at least 100 needed to bless "
        "(min_train_rows)",
    ]
    pushed = run_component(
        push,
        tmp_path / "kfp-push",
        model=model,
        blessing=outs["blessing"],
        examples=examples,
        storage_root=str(tmp_path),
        run_id="tiny",
        model_name=MODEL,
        serving_root=names.SERVING_DIR,
    )["pushed_model"]
    assert pushed.metadata["pushed"] == 0 and not (tmp_path / names.SERVING_DIR).exists()
    # The same run with the minimums switched off judges the metrics alone.
    outs = run_component(
        evaluate,
        tmp_path / "kfp-eval-off",
        examples=examples,
        model=model,
        baseline=base_art,
        **common,
        min_eval_examples=0,
        min_train_rows=0,
    )
    assert (
        json.loads(Path(outs["blessing"].path, names.BLESSING_FILE).read_text())["verdict"] == names.BLESSED
    )


# --- Whole runs killed, then run again (the end-to-end tier) ---------------------------------------

FAST = {"tuner_trials": "1", "tuner_steps": "20", "train_steps": "60", "eval_steps": "10"}


def submit(storage: Path, fault: str = "") -> subprocess.CompletedProcess:
    cmd = [sys.executable, "submit.py", "--storage", str(storage)]
    for k, v in FAST.items():
        cmd += ["--param", f"{k}={v}"]
    env = {**os.environ, faults.ENV: fault}
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1500)


@pytest.mark.e2e
def test_runs_killed_mid_stage_and_mid_push_are_settled_by_the_next_run(tmp_path):
    storage = tmp_path / "storage"
    first = submit(storage, "train.before_publish")  # kill -9 while train's output is in scratch
    assert first.returncode == -signal.SIGKILL, first.stdout[-3000:] + first.stderr[-3000:]
    [left] = [p for p in (storage / names.ARTIFACTS_DIR).glob("*/.train.partial-*")]

    second = submit(storage, "push.after_rename")  # kill -9 after v1 became visible, before its record
    assert second.returncode == -signal.SIGKILL, second.stdout[-3000:] + second.stderr[-3000:]
    assert not left.exists()  # the second run's resolve-baseline removed the dead stage's scratch
    model_dir = storage / names.SERVING_DIR / MODEL
    assert registry.numeric_dirs(model_dir) == [1]
    assert registry.pending_of(registry.read_index(storage, names.STAGE_PUSH))

    third = submit(storage)
    assert third.returncode == 0, third.stdout[-4000:] + third.stderr[-4000:]
    assert "registry: recorded insurance version 1" in third.stdout  # said on the console
    assert "baseline version 1" in third.stdout  # compared with the version the killed run pushed
    assert "runs killed earlier marked INTERRUPTED" in third.stderr
    doc = assert_agree(storage)
    assert [e["version"] for e in doc["versions"]] == [1, 2]  # same data and seed: as good as version 1


def test_component_defaults_are_the_vocabularys():
    """A component's own default (a literal: KFP runs the function's source) equals the parameter's."""
    from components import parameters
    from components.evaluate import evaluate

    for component in (evaluate, resolve_baseline):
        for name, spec in component.component_spec.inputs.items():
            if spec.default is not None and name in parameters.BY_NAME:
                assert spec.default == parameters.BY_NAME[name].default, (component.name, name)
    assert evaluate.component_spec.inputs["min_eval_examples"].default == 30


@pytest.mark.parametrize(
    ("path", "inside"),
    [
        ("data/insurance.csv", True),
        ("{root}/data/x.csv", True),
        ("data/../serving", True),
        ("../elsewhere.csv", False),
        ("data/../../x", False),
        ("/etc/hostname", False),
    ],
)
def test_every_path_a_parameter_names_stays_on_the_volume(tmp_path, path, inside):
    """storage.resolve: what example_gen, schema, user_module, gating and push read paths through."""
    root = tmp_path / "root"
    if inside:
        assert storage.resolve(root, path.format(root=root), "stage", "data").is_relative_to(root)
        return
    with pytest.raises(StageError) as err:
        storage.resolve(root, path.format(root=root), "example_gen", "data")
    assert str(err.value).startswith("[example_gen] ") and f"is outside the storage root {root}" in str(
        err.value
    )


def test_the_console_says_a_blessed_model_was_not_pushed_and_why(tmp_path):
    import types

    from kfp import dsl

    from pipelines.local import console

    def record(task: str, output: str, meta: dict) -> types.SimpleNamespace:
        art = dsl.Artifact(name=output, uri=f"/x/{output}", metadata=meta)
        return types.SimpleNamespace(
            task=task, status="SUCCESS", seconds=1.0, peak_rss_mb=1.0, error="", outputs={output: art}
        )

    reason = "baseline changed since evaluation: version 1 was pushed by run run-a after this candidate ..."
    run = types.SimpleNamespace(
        tasks=[
            record("evaluate", "blessing", {"verdict": names.BLESSED, "mae": 1800.0}),
            record("push", "pushed_model", {"pushed": 0, "reason": reason}),
        ],
        succeeded=True,
        seconds=2.0,
        failed_task=None,
    )
    word, lines = console.outcome(run, tmp_path, MODEL)
    assert word == "NOT_PUSHED" and lines[0] == f"BLESSED, NOT pushed: {reason}"
