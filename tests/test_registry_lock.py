"""The registry lock held by another process: the wait is bounded, said, and names the holder.

The holder is a real second process (``_HOLDER`` below, started with ``subprocess``), as another
run's push on the same volume would be; the waiter is push or resolve-baseline in this process.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import run_component
from model_factory import fake_saved_model

from components import names
from components.errors import StageError
from components.lib import registry, registry_lock
from components.lib.blessing import Blessing
from components.lib.push import push_model
from components.resolve_baseline import resolve_baseline

pytestmark = pytest.mark.faults  # the fault tier: pytest -m faults

REPO = Path(__file__).resolve().parents[1]
MODEL = names.MODEL_NAME
HOLDER_RUN = "run-holder-7"

# argv: storage root, seconds to hold, mode ("" | "kill" | "fork"), run id. Prints "held <pid>" once
# it holds the lock. "kill": SIGKILLs itself while holding (the kernel releases the lock, the record
# stays). "fork": a child inherits the lock's descriptor and keeps it; the holder exits at once.
_HOLDER = """
import os, signal, sys, time
from components.lib import registry, registry_lock
root, hold, mode, run_id = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4]
with registry.locked(root, "push", None, registry_lock.Request(run_id=run_id)):
    if mode == "fork":
        child = os.fork()
        if child == 0:
            time.sleep(hold)
            os._exit(0)
        print("held", child, flush=True)
        os._exit(0)
    print("held", os.getpid(), flush=True)
    if mode == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(hold)
"""


class Holder:
    """A second process holding the registry lock of ``storage``."""

    def __init__(self, storage: Path, hold_s: float, mode: str = "") -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _HOLDER, str(storage), str(hold_s), mode, HOLDER_RUN],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        assert line.startswith("held "), f"the holder did not take the lock: {line!r}"
        self.pid = int(line.split()[1])  # the holder (or, "fork", its child that keeps the lock)

    def stop(self) -> None:
        if self.pid != self.proc.pid:  # "fork": the child keeps the lock
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def holders() -> Iterator[list[Holder]]:
    started: list[Holder] = []
    yield started
    for holder in started:
        holder.stop()


def lock_file(storage: Path) -> Path:
    return Path(str(registry.index_path(storage)) + registry.LOCK_SUFFIX)


def push(storage: Path, src: Path, lock_timeout: float, run_id: str = "run-waiter") -> object:
    return push_model(
        src,
        storage_root=str(storage),
        serving_root=names.SERVING_DIR,
        model_name=MODEL,
        run_id=run_id,
        model_location=str(src.parent),
        fingerprint="fp",
        blessing=Blessing(names.BLESSED, reasons=["ok"], metrics={"mae": 1.0}),
        lock_timeout=lock_timeout,
    )


def said_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if "registry lock" in line]


def test_push_gives_up_after_lock_timeout_in_one_line_naming_the_holder(tmp_path, holders, capsys):
    storage = tmp_path / "storage"
    src = fake_saved_model(tmp_path / "train" / names.MODEL_SERVING_DIR)
    holders.append(holder := Holder(storage, 60))
    start = time.monotonic()
    with pytest.raises(StageError) as err:
        push(storage, src, lock_timeout=2)
    took = time.monotonic() - start
    message = str(err.value)
    assert 2 <= took < 4, took
    assert "\n" not in message and message.startswith(f"[push] {lock_file(storage)}: registry lock held by ")
    host = socket.gethostname()
    assert f"host {host} pid {holder.pid} run {HOLDER_RUN} (stage push) since 20" in message
    assert "lock_timeout=2" in message and "raise lock_timeout" in message
    waiting = said_lines(capsys.readouterr().out)
    assert len(waiting) == 1, waiting  # said once: the holder did not change
    assert waiting[0].startswith(f"{names.PROGRESS_PREFIX}[push] registry lock held by host {host} ")
    assert f"pid {holder.pid} run {HOLDER_RUN}" in waiting[0]
    assert waiting[0].endswith("waiting up to 2 s (lock_timeout)")
    assert not (storage / names.SERVING_DIR / MODEL / "1").exists()  # nothing pushed


def test_push_waits_for_a_holder_that_releases_and_then_pushes(tmp_path, holders, capsys):
    storage = tmp_path / "storage"
    src = fake_saved_model(tmp_path / "train" / names.MODEL_SERVING_DIR)
    holders.append(Holder(storage, 1.5))
    start = time.monotonic()
    result = push(storage, src, lock_timeout=30)
    assert 1.0 <= time.monotonic() - start < 10
    assert result.pushed and result.version == 1
    said = said_lines(capsys.readouterr().out)
    assert len(said) == 1 and f"run {HOLDER_RUN}" in said[0] and "waiting up to 30 s" in said[0]
    assert lock_file(storage).read_text() == ""  # released: the record is emptied


def test_resolve_baseline_gives_up_after_lock_timeout_naming_the_holder(tmp_path, holders, capsys):
    storage = tmp_path / "storage"
    leftover = storage / names.SERVING_DIR / MODEL / f"{registry.TEMP_PREFIX}dead.partial"
    leftover.mkdir(parents=True)  # a killed push's copy: resolve-baseline must take the lock to settle it
    holders.append(holder := Holder(storage, 60))
    start = time.monotonic()
    with pytest.raises(StageError) as err:
        run_component(
            resolve_baseline, tmp_path / "kfp", storage_root=str(storage), model_name=MODEL, lock_timeout=2.0
        )
    assert 2 <= time.monotonic() - start < 4
    assert str(err.value).startswith(f"[{names.STAGE_RESOLVE}] {lock_file(storage)}: registry lock held by ")
    assert f"pid {holder.pid} run {HOLDER_RUN} (stage push)" in str(err.value)
    assert "\n" not in str(err.value)
    assert len(said_lines(capsys.readouterr().out)) == 1
    assert leftover.exists()  # nothing was done without the lock


def test_resolve_baseline_records_its_run_id_while_it_holds_the_lock(tmp_path, monkeypatch):
    storage = tmp_path / "storage"
    (storage / names.SERVING_DIR / MODEL / f"{registry.TEMP_PREFIX}dead.partial").mkdir(parents=True)
    seen: list[dict | None] = []
    real_locked = registry.locked

    def spying(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        with real_locked(*args, **kwargs) as doc:  # what the lock file says while the stage holds it
            seen.append(registry_lock.read_record(lock_file(storage)))
            yield doc

    monkeypatch.setattr(registry, "locked", contextlib.contextmanager(spying))
    run_component(
        resolve_baseline, tmp_path / "kfp", storage_root=str(storage), model_name=MODEL, run_id="r-42"
    )
    assert seen and seen[0] is not None
    assert seen[0]["run_id"] == "r-42" and seen[0]["stage"] == names.STAGE_RESOLVE
    assert seen[0]["pid"] == os.getpid() and seen[0]["host"] == socket.gethostname()
    assert lock_file(storage).read_text() == ""


def test_a_holder_killed_while_holding_is_taken_over_and_its_record_replaced(tmp_path, holders, capsys):
    storage = tmp_path / "storage"
    holders.append(holder := Holder(storage, 60, mode="kill"))
    holder.proc.wait(10)  # SIGKILLed holding the lock: the kernel released it, the record stays
    stale = registry_lock.read_record(lock_file(storage))
    assert stale is not None and stale["pid"] == holder.pid
    start = time.monotonic()
    with registry.locked(storage, names.STAGE_PUSH, None, registry_lock.Request("run-next", timeout=2)):
        assert time.monotonic() - start < 1  # no wait: the lock was free
        now = registry_lock.read_record(lock_file(storage))
        assert now is not None and now["pid"] == os.getpid() and now["run_id"] == "run-next"
    said = said_lines(capsys.readouterr().out)
    assert (
        len(said) == 1
        and "taken over from host" in said[0]
        and f"pid {holder.pid} run {HOLDER_RUN}" in said[0]
    )
    assert "no longer runs" not in said[0]  # the lock was free: nothing is held by a ghost
    assert lock_file(storage).read_text() == ""


def test_a_gone_holder_whose_lock_a_child_inherited_is_said_to_be_gone(tmp_path, holders):
    storage = tmp_path / "storage"
    holders.append(holder := Holder(storage, 60, mode="fork"))
    holder.proc.wait(10)  # the recorded holder has exited (and is reaped); its child keeps the lock
    with pytest.raises(StageError) as err:
        with registry.locked(storage, names.STAGE_PUSH, None, registry_lock.Request(timeout=1)):
            pass
    message = str(err.value)
    assert f"pid {holder.proc.pid} run {HOLDER_RUN}" in message
    assert "no longer runs on this host, yet the lock is held" in message
    assert f"fuser -v {lock_file(storage)}" in message and "\n" not in message


@pytest.mark.parametrize("value", [-1, float("nan"), "10", True])
def test_a_negative_or_non_numeric_lock_timeout_is_one_line(tmp_path, value):
    with pytest.raises(StageError) as err:
        with registry.locked(tmp_path, names.STAGE_PUSH, None, registry_lock.Request(timeout=value)):
            pass
    assert str(err.value).startswith("[push] parameter 'lock_timeout' must be 0 (wait without limit) or more")
    assert not registry.index_path(tmp_path).parent.exists()  # refused before anything is made


def test_a_record_from_another_host_is_reported_as_is(tmp_path):
    record = {
        "host": "node-b-pod-x",
        "pid": 1,
        "run_id": "r9",
        "stage": "push",
        "since": "2026-01-01T00:00:00+00:00",
    }
    assert registry_lock.gone(record) is None  # another host: its pid cannot be checked from here
    text = registry_lock.describe(record, tmp_path / "l")
    assert text.startswith("host node-b-pod-x pid 1 run r9 (stage push) since 2026-01-01T00:00:00+00:00 (")
    assert "no longer runs" not in text
    assert json.loads(json.dumps(registry_lock.holder_record("push", "r")))["pid"] == os.getpid()


def test_the_preflight_refuses_a_negative_lock_timeout_before_anything_is_made(tmp_path):
    from pipelines.local import preflight

    storage = tmp_path / "never"
    with pytest.raises(preflight.PreflightError) as err:
        preflight.check(storage, None, {"lock_timeout": "-5"})
    assert str(err.value) == (
        "[submit] parameter 'lock_timeout' must be 0 (wait without limit) or more seconds, got -5.0"
    )
    assert not storage.exists()
