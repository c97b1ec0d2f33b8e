"""A local Beam worker pool: SDK worker processes that share nothing with the pipeline's process.

Beam's ``worker_pool_main`` serves the EXTERNAL environment: for each pipeline, the
``PortableRunner`` (its job service embedded in the submitting process, ``--job_endpoint=embed``)
asks the pool for SDK workers, and the pool starts each as a fresh ``python`` process — the one
on ``PATH``, so this interpreter's ``bin`` goes first. Such a worker has only what Beam ships to
it (the pickled pipeline) and what its interpreter can import: the closest offline stand-in for
a Dataflow, Flink or Spark worker. The tests (``tests/beam_pool.py``) and the benchmark
(``--worker-pool``) share this.

The pool runs in its own process group, so stopping it by its pid's group also stops every
worker it started. ``PoolMemory`` samples the resident memory of that group's processes.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

START_TIMEOUT_S = 60.0
# Local worker processes without a pool: Beam's FnApiRunner in its multi-processing mode.
MULTI_PROCESSING_ARGS = "--runner=DirectRunner --direct_running_mode=multi_processing --direct_num_workers=2"


@dataclasses.dataclass
class WorkerPool:
    """A running worker pool: its port, its process and its log."""

    port: int
    process: subprocess.Popen
    log: Path

    def beam_args(self, workers: int = 2) -> str:
        """``beam_args`` that run a pipeline on this pool (``workers``: SDK processes it may start).

        Beam's embedded job service runs the pipeline with its FnApiRunner, which hands each
        stage to ONE worker (it never splits a stage's input over workers: measured, 20 slow
        elements ran in one process with any ``--sdk_worker_parallelism``/``--direct_num_workers``).
        The pool shows a remote worker's behaviour and memory; Flink and Spark split the work by
        their own parallelism. For data parallelism here, ``MULTI_PROCESSING_ARGS``.
        """
        return (
            "--runner=PortableRunner --job_endpoint=embed --environment_type=EXTERNAL "
            f"--environment_config=localhost:{self.port} --sdk_worker_parallelism={workers}"
        )

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def started_workers(self) -> int:
        """How many SDK workers the pool has started so far (from its log)."""
        return self.log.read_text(errors="replace").count("Starting worker with command")


def free_port() -> int:
    """A port the OS says is free on the loopback interface."""
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("localhost", port)) == 0


def start_pool(log: Path) -> WorkerPool:
    """Start ``worker_pool_main`` in its own process group; return once it accepts connections."""
    port = free_port()
    venv_bin = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": venv_bin + os.pathsep + os.environ.get("PATH", "")}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main", f"--service_port={port}"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its own process group: the workers it starts go with it
        )
    pool = WorkerPool(port=port, process=process, log=log)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not _listening(port):
        if process.poll() is not None or time.monotonic() > deadline:
            stop_pool(pool)
            raise RuntimeError(f"the Beam worker pool did not start on port {port}:\n{pool.log_tail()}")
        time.sleep(0.2)
    return pool


def stop_pool(pool: WorkerPool) -> None:
    """Stop the pool and every worker it started (its process group, by the pool's pid)."""
    if pool.process.poll() is None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(pool.process.pid, sig)
            except ProcessLookupError:
                break
            try:
                pool.process.wait(timeout=10)
                break
            except subprocess.TimeoutExpired:
                continue
    try:  # workers outliving a pool that exited on its own
        os.killpg(pool.process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


SDK_WORKER_MAIN = "apache_beam.runners.worker.sdk_worker_main"  # a multi-processing worker's command


def _rss_mb(pid: str) -> float | None:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return None


def _processes_rss_mb(keep: Callable[[str], bool]) -> dict[int, float]:
    """Resident MB of every process (Linux ``/proc``) whose pid ``keep`` accepts."""
    out: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if keep(entry) and (rss := _rss_mb(entry)) is not None:
                out[int(entry)] = rss
        except (OSError, ValueError):
            continue
    return out


def _command_rss_mb(needle: str) -> dict[int, float]:
    """Resident MB of every process whose command line contains ``needle``."""
    return _processes_rss_mb(lambda pid: needle.encode() in Path(f"/proc/{pid}/cmdline").read_bytes())


def _group_rss_mb(pgid: int) -> dict[int, float]:
    """Resident MB of every process in process group ``pgid``."""
    return _processes_rss_mb(lambda pid: os.getpgid(int(pid)) == pgid)


class PoolMemory:
    """Samples worker processes while a stage runs: the largest single worker and the largest sum.

    ``pool``: the pool's process group. None: every process running Beam's ``sdk_worker_main``
    (the multi-processing DirectRunner's workers, children of the stage's process).
    """

    def __init__(self, pool: WorkerPool | None, interval_s: float = 0.5) -> None:
        self._pgid = pool.process.pid if pool is not None else None
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.peak_process_mb = 0.0
        self.peak_total_mb = 0.0

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            rss = _group_rss_mb(self._pgid) if self._pgid is not None else _command_rss_mb(SDK_WORKER_MAIN)
            if rss:
                self.peak_process_mb = max(self.peak_process_mb, max(rss.values()))
                self.peak_total_mb = max(self.peak_total_mb, sum(rss.values()))

    def __enter__(self) -> PoolMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
