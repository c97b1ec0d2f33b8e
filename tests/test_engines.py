"""The data stages on real Flink and Spark clusters, through Beam's job servers.

``scripts/engines.sh`` starts each cluster on loopback — a Flink session cluster (a JobManager
and two TaskManagers) and a Spark standalone cluster (a master and two workers), each JVM its
own process, on ports the OS picks here — and stops it by its pid files. The module runs once
per engine (one cluster at a time). Two kinds of test:

* the cluster itself — two workers registered, each its own JVM, and a job of the engine's own
  API (``engines.sh check <engine>-cluster``) that runs on both;
* the four data stages through Beam's job server for the engine (``--runner=PortableRunner
  --job_endpoint=…``) with Python SDK workers in an EXTERNAL worker pool: each stage's outputs
  equal the in-process ones (the comparisons of ``tests/test_worker_pool.py``), the engine lists
  the stage's jobs as FINISHED, and a worker's failure is the stage's one line.

Java, an engine's runtime (PyPI) or Beam's job server (Maven Central) missing: the tests that
need it skip with the reason; ``KUBETFX_REQUIRE_ENGINES=1`` makes that a failure (or a list of
the parts required, e.g. ``flink-cluster,spark-cluster``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import test_worker_pool
from beam_pool import WorkerPool
from test_worker_pool import (
    assert_same_statistics,
    records_by_split,
    run_transform_with,
    split_csv,
    transformed_rows,
)

from benchmarks.worker_pool import free_port, start_pool, stop_pool
from components import names

pytestmark = pytest.mark.engines

# the in-process results tests/test_worker_pool.py compares with, as fixtures of this module too
in_process_examples = test_worker_pool.in_process_examples
in_process_statistics = test_worker_pool.in_process_statistics
in_process_transform = test_worker_pool.in_process_transform
module_file = test_worker_pool.module_file

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "engines.sh"
UNAVAILABLE = 3  # engines.sh's exit code when the registry does not serve a download


def unavailable(part: str, reason: str) -> None:
    """Skip, or fail when ``KUBETFX_REQUIRE_ENGINES`` requires ``part``.

    ``KUBETFX_REQUIRE_ENGINES=1`` requires every part; a comma-separated list names some
    (``flink-cluster``, ``flink-job-server``, ``spark-cluster``, ``spark-job-server``): CI
    requires what its machine can download.
    """
    required = os.environ.get("KUBETFX_REQUIRE_ENGINES", "")
    if required == "1" or part in required.split(","):
        pytest.fail(f"KUBETFX_REQUIRE_ENGINES={required}: {reason}")
    pytest.skip(reason)


def pinned(name: str) -> str:
    """A version pinned in engines.sh's one block (``NAME=value  # comment``)."""
    for line in SCRIPT.read_text().splitlines():
        if line.startswith(f"{name}="):
            return line.split("=", 1)[1].split("#", 1)[0].strip()
    raise AssertionError(f"{name} is not pinned in {SCRIPT}")


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


# The JVMs of each engine's cluster: {pid file name: the main class it runs}.
PROCESSES = {
    "flink": {
        "jobmanager": "org.apache.flink.runtime.entrypoint.StandaloneSessionClusterEntrypoint",
        "taskmanager-1": "org.apache.flink.runtime.taskexecutor.TaskManagerRunner",
        "taskmanager-2": "org.apache.flink.runtime.taskexecutor.TaskManagerRunner",
    },
    "spark": {
        "master": "org.apache.spark.deploy.master.Master",
        "worker-1": "org.apache.spark.deploy.worker.Worker",
        "worker-2": "org.apache.spark.deploy.worker.Worker",
    },
}


@dataclasses.dataclass
class Cluster:
    """A running cluster: its engine, state folder, environment for engines.sh, and ports."""

    engine: str
    run: Path  # KUBETFX_ENGINES_RUN; engines.sh keeps the engine's state in run/<engine>
    env: dict[str, str]
    ui_port: int  # Flink's REST API / the Spark master's web UI (JSON under /json/)
    job_port: int

    @classmethod
    def ports(cls, engine: str, run: Path) -> Cluster:
        ui_port = free_port()
        env = {
            **os.environ,
            "KUBETFX_ENGINES_RUN": str(run),
            "FLINK_REST_PORT": str(ui_port),
            "FLINK_RPC_PORT": str(free_port()),
            "SPARK_MASTER_UI_PORT": str(ui_port),
            "SPARK_MASTER_PORT": str(free_port()),
            "BEAM_JOB_PORT": str(job_port := free_port()),
            "BEAM_ARTIFACT_PORT": str(free_port()),
            "BEAM_EXPANSION_PORT": str(free_port()),
        }
        return cls(engine, run, env, ui_port, job_port)

    def engines(self, command: str, part: str = "", *args: str, timeout: float = 300):
        target = f"{self.engine}-{part}" if part else self.engine
        return subprocess.run(
            ["bash", str(SCRIPT), command, target, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def ui(self, path: str) -> dict:
        return get_json(f"http://localhost:{self.ui_port}{path}")

    def jobs(self) -> dict[str, str]:
        """Every job (Flink) or application (Spark) the cluster has run or runs: {id: state}."""
        if self.engine == "flink":
            return {j["jid"]: j["state"] for j in self.ui("/jobs/overview")["jobs"]}
        master = self.ui("/json/")
        return {a["id"]: a["state"] for a in master["activeapps"] + master["completedapps"]}

    def workers(self) -> set[str]:
        """The TaskManagers / Spark workers registered and alive."""
        if self.engine == "flink":
            return {tm["id"] for tm in self.ui("/taskmanagers")["taskmanagers"]}
        return {w["id"] for w in self.ui("/json/")["workers"] if w["state"] == "ALIVE"}

    def workers_of(self, job: str) -> set[str]:
        """The TaskManagers / workers that ran a part of ``job``: a subtask, or an executor."""
        ran = set()
        if self.engine == "flink":
            for vertex in self.ui(f"/jobs/{job}")["vertices"]:
                for tm in self.ui(f"/jobs/{job}/vertices/{vertex['id']}/taskmanagers")["taskmanagers"]:
                    ran.add(tm["taskmanager-id"])
            return ran
        for worker in self.ui("/json/")["workers"]:
            page = get_json(worker["webuiaddress"] + "/json/")
            if any(e["appid"] == job for e in page["executors"] + page["finishedexecutors"]):
                ran.add(worker["id"])
        return ran

    def pid(self, name: str) -> int:
        return int((self.run / self.engine / f"{name}.pid").read_text())


@pytest.fixture(scope="module", params=["flink", "spark"])
def cluster(request, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One engine's cluster for the module (Flink, then Spark), stopped by its pid files."""
    engine = request.param
    if shutil.which("java") is None:
        unavailable(f"{engine}-cluster", "java is not installed: the clusters need Java 17")
    cluster = Cluster.ports(engine, tmp_path_factory.mktemp(engine))
    fetched = cluster.engines("fetch", "runtime", timeout=900)
    if fetched.returncode != 0:
        why = fetched.stderr.strip()[-300:]
        unavailable(f"{engine}-cluster", f"{engine}'s runtime could not be downloaded: {why}")
    started_at = time.monotonic()
    try:
        started = cluster.engines("start", "cluster")
        assert started.returncode == 0, f"the {engine} cluster did not start:\n{started.stderr[-3000:]}"
        print(f"{engine} cluster started in {time.monotonic() - started_at:.1f} s")
        yield cluster
    finally:
        pid_files = list((cluster.run / engine).glob("*.pid"))
        pids = {f.stem: int(f.read_text()) for f in pid_files}
        stopped = cluster.engines("stop", timeout=120)
        assert stopped.returncode == 0, stopped.stderr
    # stopping ends exactly the processes of the pid files: every JVM of the cluster
    assert set(PROCESSES[engine]) <= set(pids)
    assert [name for name, pid in pids.items() if not gone(pid)] == []
    assert not list((cluster.run / engine).glob("*.pid"))


def test_the_engine_versions_are_pinned_once_and_match_the_lock():
    import apache_beam

    assert pinned("BEAM_VERSION") == apache_beam.__version__  # the job servers speak this SDK's protocol
    flink_minor = pinned("FLINK_MINOR")
    assert pinned("FLINK_VERSION").startswith(flink_minor + ".")
    assert flink_minor in ("1.17", "1.18", "1.19", "1.20")  # the Flink versions Beam 2.72 runs on
    assert pinned("SPARK_VERSION").startswith("3.")  # beam-runners-spark-3


def test_the_cluster_is_a_master_and_two_workers_in_their_own_jvms(cluster):
    assert len(cluster.workers()) == 2
    if cluster.engine == "flink":
        assert cluster.workers() == {"taskmanager-1", "taskmanager-2"}
        assert cluster.ui("/config")["flink-version"] == pinned("FLINK_VERSION")
    else:
        assert all(w["cores"] == 1 for w in cluster.ui("/json/")["workers"])
    pids = {name: cluster.pid(name) for name in PROCESSES[cluster.engine]}
    assert len(set(pids.values())) == 3
    for name, main in PROCESSES[cluster.engine].items():
        command = Path(f"/proc/{pids[name]}/cmdline").read_bytes().split(b"\0")
        assert command[0].endswith(b"java"), (name, command[0])
        assert main.encode() in command, (name, main)


def test_a_job_of_the_engines_own_api_runs_on_both_workers(cluster):
    before = cluster.jobs()
    n = 100_000
    done = cluster.engines("check", "cluster", str(n))
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"sum_of_squares={n * (n + 1) * (2 * n + 1) // 6}" in done.stdout
    (job,) = set(cluster.jobs()) - set(before)
    assert cluster.jobs()[job] == "FINISHED"
    assert cluster.workers_of(job) == cluster.workers()


def gone(pid: int) -> bool:
    """The process has exited (a zombie awaiting its reaper counts as gone)."""
    try:
        return b"zombie" in Path(f"/proc/{pid}/status").read_bytes().lower()
    except OSError:
        return True


# --- the data stages through Beam's job server for the engine ----------------------------------


@dataclasses.dataclass
class BeamOn:
    """Beam's job server in front of a cluster, and the worker pool its SDK workers come from."""

    cluster: Cluster
    pool: WorkerPool

    def beam_args(self) -> str:
        args = (
            f"--runner=PortableRunner --job_endpoint=localhost:{self.cluster.job_port} "
            f"--environment_type=EXTERNAL --environment_config=localhost:{self.pool.port}"
        )
        return args + (" --parallelism=2" if self.cluster.engine == "flink" else "")

    def new_jobs(self, before: dict[str, str]) -> dict[str, str]:
        return {j: s for j, s in self.cluster.jobs().items() if j not in before}


@pytest.fixture(scope="module")
def beam_on(cluster, tmp_path_factory) -> Iterator[BeamOn]:
    """The cluster's job server (skipped when the registry does not serve it) and a worker pool."""
    started = cluster.engines("start", "job-server", timeout=900)
    if started.returncode == UNAVAILABLE:
        unavailable(
            f"{cluster.engine}-job-server",
            f"Beam's {cluster.engine} job server cannot be downloaded: "
            f"{started.stderr.strip().splitlines()[-1]}",
        )
    assert started.returncode == 0, f"Beam's job server did not start:\n{started.stderr[-3000:]}"
    pool = start_pool(tmp_path_factory.mktemp(f"{cluster.engine}_pool") / "pool.log")
    try:
        yield BeamOn(cluster, pool)
    finally:
        stop_pool(pool)


def test_example_gen_on_the_cluster_writes_the_same_records(
    beam_on, synthetic_csv, in_process_examples, tmp_path
):
    from components.lib.example_gen import run_example_gen

    local_dir, local = in_process_examples
    before = beam_on.cluster.jobs()
    out = tmp_path / "examples"
    result = run_example_gen(synthetic_csv, out, label=names.LABEL, beam_args=beam_on.beam_args())
    assert result.method == "beam" and result.metadata()["runner"] == "PortableRunner"
    assert result.rows == local.rows and result.fingerprint == local.fingerprint
    assert result.column_types == local.column_types and result.empty_cells == local.empty_cells
    assert records_by_split(out) == records_by_split(local_dir)
    jobs = beam_on.new_jobs(before)
    assert jobs and set(jobs.values()) == {"FINISHED"}  # the first pass and the write: jobs of the cluster


def test_statistics_on_the_cluster_equal_in_process(beam_on, examples, in_process_statistics, tmp_path):
    from components.lib.statistics import run_statistics
    from components.lib.statistics_io import read_statistics

    local_dir, local = in_process_statistics
    before = beam_on.cluster.jobs()
    result = run_statistics(
        Path(examples.metadata[names.META_STORAGE_PATH]), tmp_path, beam_args=beam_on.beam_args()
    )
    assert result.method == "beam" and result.rows == local.rows
    for split in names.SPLITS:
        assert_same_statistics(
            read_statistics(tmp_path, split, "statistics"), read_statistics(local_dir, split, "statistics")
        )
    jobs = beam_on.new_jobs(before)
    assert jobs and set(jobs.values()) == {"FINISHED"}
    assert any(beam_on.cluster.workers_of(j) == beam_on.cluster.workers() for j in jobs)  # spread


def test_transform_with_a_module_file_on_the_cluster_equals_in_process(
    beam_on, examples, synthetic_csv, storage_root, module_file, in_process_transform, tmp_path
):
    """The user module travels by value: the workers import neither the file nor its name."""
    import numpy as np

    local_out, local = in_process_transform
    before = beam_on.cluster.jobs()
    result = run_transform_with(
        beam_on.beam_args(), examples, synthetic_csv, storage_root, module_file, tmp_path
    )
    assert result.module == str(module_file)
    assert result.rows == local.rows and result.transformed_features == local.transformed_features
    for split in names.SPLITS:
        got, got_cols = transformed_rows(tmp_path, split)
        want, want_cols = transformed_rows(local_out, split)
        assert got_cols == want_cols
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    jobs = beam_on.new_jobs(before)
    assert jobs and set(jobs.values()) == {"FINISHED"}


def test_evaluate_on_the_cluster_writes_what_the_native_engine_writes(beam_on, tmp_path):
    from test_evaluate import assert_same_evaluation, save_age_model, tricky_rows, write_eval_split

    from components import defaults
    from components.lib import evaluate as ev

    examples_dir = write_eval_split(tmp_path / "examples", tricky_rows())
    candidate = save_age_model(tmp_path / "candidate", 330.0)
    baseline = save_age_model(tmp_path / "baseline", 300.0)
    before = beam_on.cluster.jobs()
    results = {}
    for where, beam_args in (("local", defaults.BEAM_ARGS), ("cluster", beam_on.beam_args())):
        (tmp_path / where).mkdir()
        run = ev.evaluate_models(
            examples_dir,
            candidate,
            baseline,
            1,
            tmp_path / where,
            label=names.LABEL,
            slice_feature="smoker",
            thresholds=ev.Thresholds(20000.0, 0.5),
            beam_args=beam_args,
            engine=ev.ENGINE_AUTO,
        )
        results[run.engine] = run
    assert set(results) == {ev.ENGINE_NATIVE, ev.ENGINE_TFMA}  # TFMA's Beam pipeline ran on the cluster
    assert_same_evaluation(results)
    jobs = beam_on.new_jobs(before)
    assert jobs and set(jobs.values()) == {"FINISHED"}


def test_a_bad_cell_found_on_a_cluster_worker_is_the_stages_one_line(beam_on, synthetic_csv, tmp_path):
    """The worker's StageError crosses the engine and the job server as text; the user reads one line."""
    from components.errors import StageError
    from components.lib.example_gen import run_example_gen

    bad = split_csv(synthetic_csv, tmp_path / "bad", {220: ("bmi", "3O.5")})
    with pytest.raises(StageError) as in_process:
        run_example_gen(bad, tmp_path / "local", label=names.LABEL)
    before = beam_on.cluster.jobs()
    with pytest.raises(StageError) as on_cluster:
        run_example_gen(bad, tmp_path / "cluster", label=names.LABEL, beam_args=beam_on.beam_args())
    assert str(on_cluster.value) == str(in_process.value)
    assert "\n" not in str(on_cluster.value)
    if beam_on.cluster.engine == "flink":  # (a Spark application ends FINISHED either way)
        assert "FAILED" in beam_on.new_jobs(before).values()  # it failed on the cluster
