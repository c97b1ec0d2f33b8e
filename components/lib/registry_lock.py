"""The registry's exclusive lock: a bounded wait that says who holds it.

``registry.locked`` takes an exclusive ``fcntl.flock`` on ``index.json.lock``. A blocking flock
waits without limit and says nothing: a push after all the training would sit behind another
process's lock with only the console's "push still running". Here the lock is polled
(``LOCK_EX | LOCK_NB``) instead:

- the holder writes who it is into the lock file, once it holds the lock: one JSON line
  ``{"host", "pid", "run_id", "stage", "since"}`` (``since``: UTC, ISO 8601; ``pid_start``: the
  process's start time from ``/proc``, where there is one, so a reused pid is told apart) and
  empties it before it releases the lock;
- a waiter reads that record and, after ``TELL_AFTER_S``, says in one line who holds the lock,
  since when and how long it will wait (again whenever the holder changes);
- ``lock_timeout`` seconds (a run parameter; 0: without limit, as PostgreSQL's ``lock_timeout``)
  end the wait with one StageError line naming the holder and the parameter to raise.

A holder that is gone: the kernel (or the NFS server) releases a flock when its process dies, so
the next waiter simply gets the lock; the record the dead holder left is overwritten, and the new
holder says whose record it replaced. A record whose process is gone while the lock is still held
is said as such when the holder was on this host (same host name): the lock is then held by a
process that inherited the lock's file descriptor (a child the holder started), or by one that
writes no record (an older KubeTFX, ``flock(1)``); it is never broken, because a flock cannot be
taken from a live process and whoever holds it may be writing. On another host (another pod, an
NFS client) the pid cannot be checked from here; the record is reported as it is. On NFS the
lock of a node that died is released when the server's lease for it expires (NFSv4, about 90 s)
or when the node restarts (NFSv3 through lockd), not at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from components import names, parameters
from components.errors import StageError

PARAMETER = "lock_timeout"
DEFAULT_TIMEOUT_S: float = parameters.BY_NAME[PARAMETER].default
TELL_AFTER_S = 1.0  # a push's own copy holds the lock for seconds: say nothing about shorter waits
POLL_S = 0.2
_RECORD_BYTES = 4096  # a record is one short JSON line; anything longer is not ours


def _say(line: str) -> None:
    """A progress line: the local console relays it, a pod log shows it."""
    print(f"{names.PROGRESS_PREFIX}{line}", file=sys.stdout, flush=True)


@dataclasses.dataclass(frozen=True)
class Request:
    """Who asks for the lock (recorded while it holds it) and how long it waits for it.

    ``timeout``: seconds; 0 waits without limit. ``say``: where the waiting line goes.
    """

    run_id: str = ""
    timeout: float = DEFAULT_TIMEOUT_S
    say: Callable[[str], None] = _say


def check_timeout(value: Any, stage: str) -> float:  # noqa: ANN401 (a run parameter as given)
    """``lock_timeout`` as seconds, or a StageError: a number, 0 (without limit) or more."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value or value < 0:
        why = f"parameter '{PARAMETER}' must be 0 (wait without limit) or more seconds, got {value!r}"
        raise StageError(stage, None, why)
    return float(value)


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (``/proc/<pid>/stat`` field 22), if readable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()  # the command name may hold spaces and ')'
    return fields[19] if len(fields) > 19 else None


def holder_record(stage: str, run_id: str) -> dict[str, Any]:
    """What the holder writes into the lock file: host, pid (and its start), run id, stage, since."""
    record: dict[str, Any] = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "run_id": run_id,
        "stage": stage,
        "since": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    start = _process_start(os.getpid())
    if start is not None:
        record["pid_start"] = start
    return record


def read_record(lock_path: Path) -> dict[str, Any] | None:
    """The holder record in the lock file; None when empty, unreadable or not a record.

    Opened afresh on each read: on NFS a new open revalidates the client's cache.
    """
    try:
        with open(lock_path, "rb") as fh:
            text = fh.read(_RECORD_BYTES)
        record = json.loads(text.decode()) if text.strip() else None
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("pid"), int) else None


def _write_record(fd: int, record: dict[str, Any] | None) -> None:
    """Replace the lock file's content (None: empty it). Best effort: the lock matters, not the note."""
    data = (json.dumps(record, sort_keys=True) + "\n").encode() if record else b""
    try:
        os.ftruncate(fd, 0)
        if data:
            os.pwrite(fd, data, 0)
    except OSError:
        pass


def gone(record: dict[str, Any]) -> bool | None:
    """Whether the recorded process no longer runs: True/False on this host, None on another host."""
    if record.get("host") != socket.gethostname():
        return None
    pid = record["pid"]
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # it exists, under another user
    except OSError:
        return None
    start = record.get("pid_start")
    return start is not None and _process_start(pid) not in (None, start)  # the pid was reused


def describe(record: dict[str, Any] | None, lock_path: Path, *, held: bool = True) -> str:
    """``host H pid P run R (stage S) since T (N s ago)``, or what is known when there is no record.

    ``held``: the lock is held now, so a recorded process that is gone is said to be (its lock
    outlived it); False when a holder's leftover record is described after taking the lock.
    """
    if record is None:
        return (
            "a process that left no holder record (an older KubeTFX, or a tool such as flock(1); "
            f"find it with: fuser -v {lock_path})"
        )
    run = record.get("run_id") or "?"
    text = f"host {record.get('host', '?')} pid {record['pid']} run {run} (stage {record.get('stage', '?')})"
    since = record.get("since")
    if isinstance(since, str):
        text += f" since {since}"
        try:
            ago = (_dt.datetime.now(_dt.UTC) - _dt.datetime.fromisoformat(since)).total_seconds()
            text += f" ({ago:,.0f} s ago)"
        except (TypeError, ValueError):
            pass
    if held and gone(record):
        text += (
            "; that process no longer runs on this host, yet the lock is held: a process that "
            "inherited its file descriptor (a child it started) or one that writes no record holds "
            f"it (find it with: fuser -v {lock_path}); a held lock is never broken"
        )
    return text


def _try(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _who(record: dict[str, Any] | None) -> tuple[Any, ...] | None:
    return None if record is None else (record.get("host"), record["pid"], record.get("since"))


def acquire(fd: int, lock_path: Path, stage: str, request: Request) -> None:
    """Take the lock on ``fd`` (open on ``lock_path``) within ``request.timeout``; record the holder.

    Waiting longer than ``TELL_AFTER_S`` is said in one line, again when the holder changes (a
    record is said once two polls in a row read it: not one half-written or just emptied); the
    timeout is one StageError naming the holder and the parameter.
    """
    timeout = check_timeout(request.timeout, stage)
    start = time.monotonic()
    told: tuple[Any, ...] | None | bool = False  # whose record was said last (False: none yet)
    last: tuple[Any, ...] | None | bool = False
    while not _try(fd):
        waited = time.monotonic() - start
        record = read_record(lock_path)
        if timeout and waited >= timeout:
            if record is None:  # perhaps read while the holder was writing it: once more
                time.sleep(0.05)
                record = read_record(lock_path)
            raise StageError(
                stage,
                str(lock_path),
                f"registry lock held by {describe(record, lock_path)}; gave up after {waited:,.0f} s "
                f"({PARAMETER}={timeout:g}): retry when that run ends, or raise {PARAMETER} "
                "(0: wait without limit)",
            )
        who = _who(record)
        if waited >= TELL_AFTER_S and who == last and who != told:
            limit = f"up to {timeout:g} s ({PARAMETER})" if timeout else f"without limit ({PARAMETER}=0)"
            request.say(f"[{stage}] registry lock held by {describe(record, lock_path)}; waiting {limit}")
            told = who
        last = who
        time.sleep(POLL_S if not timeout else max(0.0, min(POLL_S, timeout - waited)))
    _take_over(fd, lock_path, stage, request)


def _take_over(fd: int, lock_path: Path, stage: str, request: Request) -> None:
    """Held now: say whose record a holder that ended without releasing left, then write ours."""
    left = read_record(lock_path)
    if left is not None:
        request.say(
            f"[{stage}] registry lock: taken over from {describe(left, lock_path, held=False)}, which "
            "ended without releasing it (the kernel or the NFS server released its lock); its record "
            "is replaced"
        )
    _write_record(fd, holder_record(stage, request.run_id))


def release(fd: int) -> None:
    """Empty the holder record, then unlock (the fd is the caller's to close)."""
    _write_record(fd, None)
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    except OSError:
        pass


@contextlib.contextmanager
def held(lock_path: Path, stage: str, request: Request | None = None) -> Iterator[None]:
    """Hold the lock of ``lock_path`` (made if absent, with its folder) for the block; see ``acquire``."""
    request = Request() if request is None else request
    check_timeout(request.timeout, stage)  # before anything is made
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as e:
        raise StageError(stage, str(lock_path.parent), f"cannot open the registry lock: {e}") from e
    try:
        acquire(fd, lock_path, stage, request)
        try:
            yield
        finally:
            release(fd)
    finally:
        os.close(fd)
