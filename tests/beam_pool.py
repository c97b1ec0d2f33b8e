"""A Beam worker pool for tests: real SDK worker processes that share nothing with the test process.

Beam's ``worker_pool_main`` serves the EXTERNAL environment: for each pipeline the
``PortableRunner`` (with its job service embedded in the test process, ``--job_endpoint=embed``)
asks the pool for SDK workers, and the pool starts each as a fresh ``python`` process — the one
on ``PATH``, so the venv's ``bin`` goes first. Such a worker has only what Beam ships to it (the
pickled pipeline) and what its interpreter can import; it is the closest offline stand-in for a
Dataflow, Flink or Spark worker. Its cost: ~1.5 s per pipeline and a worker import of TFDV/TFT.

Use it through the module-scoped fixture (one pool per test module, started on a port the OS
picks, stopped by its process-group id at teardown)::

    from beam_pool import beam_pool_fixture  # noqa: F401 (the fixture ``beam_pool``)

    def test_x(beam_pool):
        run(beam_args=beam_pool.beam_args(workers=2))
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

START_TIMEOUT_S = 60.0
# Local worker processes without the pool: Beam's FnApiRunner in its multi-processing mode.
MULTI_PROCESSING_ARGS = "--runner=DirectRunner --direct_running_mode=multi_processing --direct_num_workers=2"


@dataclasses.dataclass
class WorkerPool:
    """A running worker pool: its port, its process and its log."""

    port: int
    process: subprocess.Popen
    log: Path

    def beam_args(self, workers: int = 2) -> str:
        """``beam_args`` that run a pipeline on this pool with ``workers`` SDK worker processes."""
        return (
            "--runner=PortableRunner --job_endpoint=embed --environment_type=EXTERNAL "
            f"--environment_config=localhost:{self.port} --sdk_worker_parallelism={workers}"
        )

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


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
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main", f"--service_port={port}"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its own process group: the workers it starts die with it
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
        for sig, wait_s in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            try:
                os.killpg(pool.process.pid, sig)
            except ProcessLookupError:
                break
            try:
                pool.process.wait(timeout=wait_s)
                break
            except subprocess.TimeoutExpired:
                continue
    try:  # workers outliving a pool that exited on its own
        os.killpg(pool.process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture(scope="module", name="beam_pool")
def beam_pool_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerPool]:
    """One Beam worker pool for a test module."""
    pool = start_pool(tmp_path_factory.mktemp("beam_pool") / "pool.log")
    try:
        yield pool
    finally:
        stop_pool(pool)
