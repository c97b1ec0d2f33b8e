"""A Beam job on a worker pool that Beam's boot program serves; prints what ran each element.

    python tests/beam_boot_job.py OUT_DIR -- POOL_COMMAND...   # e.g. /opt/apache/beam/boot --worker_pool

Starts POOL_COMMAND (in a session of its own), waits for boot's worker pool on port 50000 — the
port boot fixes, so the callers (tests/test_beam_boot.py, tests/test_image.py) run this in a
fresh network namespace, where the port is free and the pool and the job's embedded job service
share a loopback — then runs a PortableRunner job with ``--environment_type=EXTERNAL
--environment_config=localhost:50000``, stops the pool and every process of its session, and
prints one JSON line: the job's seconds, and per element what the SDK worker that computed it
saw (its parent's executable: boot; the variables boot sets; its interpreter and Beam version).
OUT_DIR receives the job's output and the pool's log (``pool.log``); SDK workers write into it.
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

BOOT_POOL_PORT = 50000  # boot.go: worker_pool_main --service_port=50000
POOL_START_S = 180.0
ELEMENTS = 12


def where(x: int) -> dict:
    """What the SDK worker computing ``x`` sees of the process that started it (boot)."""
    import os
    import sys

    import apache_beam

    try:
        parent = os.readlink(f"/proc/{os.getppid()}/exe")
    except OSError as e:
        parent = f"unreadable: {e}"
    env = (
        "WORKER_ID",
        "PIPELINE_OPTIONS_FILE",
        "SEMI_PERSISTENT_DIRECTORY",
        "RUN_PYTHON_SDK_IN_DEFAULT_ENVIRONMENT",
    )
    return {
        "x": x,
        "square": x * x,
        "pid": os.getpid(),
        "uid": os.getuid(),
        "parent_exe": parent,
        "python": sys.executable,
        "main": sys.argv[0],
        "beam": apache_beam.__version__,
        **{name: os.environ.get(name) for name in env},
    }


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("localhost", port)) == 0


def stop_session(process: subprocess.Popen) -> None:
    """SIGTERM the pool's process group (boot passes it on to its workers), then SIGKILL its session.

    boot starts each SDK worker in a process group of its own, but in the pool's session: the
    session id finds those too.
    """
    sid = process.pid
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(sid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=10)
            break
        except subprocess.TimeoutExpired:
            continue
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getsid(int(entry.name)) == sid:
                    os.kill(int(entry.name), signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                continue


def run_job(out: Path) -> float:
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    options = PipelineOptions(
        [
            "--runner=PortableRunner",
            "--job_endpoint=embed",
            "--environment_type=EXTERNAL",
            f"--environment_config=localhost:{BOOT_POOL_PORT}",
        ]
    )
    t0 = time.perf_counter()
    with beam.Pipeline(options=options) as p:
        _ = (
            p
            | beam.Create(range(ELEMENTS))
            | beam.Map(where)
            | beam.Map(json.dumps)
            | beam.io.WriteToText(str(out / "where"), num_shards=1, shard_name_template="")
        )
    return time.perf_counter() - t0


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[2] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    out, pool_command = Path(argv[1]), argv[3:]
    if listening(BOOT_POOL_PORT):
        print(
            f"beam_boot_job: port {BOOT_POOL_PORT} is taken here (run in a fresh network namespace)",
            file=sys.stderr,
        )
        return 1
    log = out / "pool.log"
    with open(log, "wb") as sink:  # boot writes pipeline_options.json into its working directory
        pool = subprocess.Popen(
            pool_command, stdout=sink, stderr=subprocess.STDOUT, cwd=out, start_new_session=True
        )
    try:
        deadline = time.monotonic() + POOL_START_S
        while not listening(BOOT_POOL_PORT):
            if pool.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-3000:]
                print(
                    f"beam_boot_job: the pool did not serve port {BOOT_POOL_PORT}:\n{tail}", file=sys.stderr
                )
                return 1
            time.sleep(0.5)
        seconds = run_job(out)
    finally:
        stop_session(pool)
    rows = [json.loads(line) for line in (out / "where").read_text().splitlines()]
    print(json.dumps({"seconds": round(seconds, 1), "elements": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
