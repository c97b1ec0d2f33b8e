"""MLflow tracking against a real tracking server (issue 23): what KFP 2.17's integration shows, locally.

The test starts ``mlflow server`` on 127.0.0.1 (a free port, a SQLite backend and a local artifact
folder in a temporary directory), runs the whole compiled pipeline twice in process with
``MLFLOW_TRACKING_URI`` set (small table, small budgets), and reads everything back with
``MlflowClient``: two parent runs named by their run ids, a nested run per task, every run
parameter and the best hyperparameters, per-epoch losses as metric histories, the evaluation's
overall and per-slice metrics, the blessing, registry version and data fingerprint as tags, the
HTML reports as artifacts. A task run by itself (no ``MLFLOW_RUN_ID``, as on KFP before 2.17)
finds its parent by the run id; push with ``mlflow_register_model`` registers an MLflow model
version. A tracking URI whose server is not there costs one warning line and the pipeline run
completes (run first, while the real server boots). With a headless Chromium the MLflow UI's
comparison of the two runs is screenshot (docs/kubernetes.md shows it).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from conftest import run_component

from components import names, parameters
from components.lib import tracking
from components.lib.train_outputs import read_summary

REPO = Path(__file__).resolve().parents[1]
SCREENSHOTS = Path(os.environ.get("KUBETFX_SCREENSHOTS") or REPO / "reports_screenshots")
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
TASKS = {stage.replace("_", "-") for stage in names.STAGES}  # the DAG task keys: the nested runs' names
FAST = {
    "tuner_trials": "1",
    "tuner_steps": "50",
    "eval_steps": "5",
    "module_file": "components.modules.insurance",  # offers Keras models only: a loss per epoch
    "slice_feature": "smoker",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``mlflow server`` started on loopback; ``uri`` once it answers (it boots in ~30 s on 2 cores)."""

    def __init__(self, root: Path) -> None:
        self.root, self.port = root, free_port()
        self.log = open(root / "server.log", "w")  # noqa: SIM115 (open for the server's whole life)
        cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port)]
        cmd += ["--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--workers", "1"]
        cmd += ["--artifacts-destination", str(root / "artifacts")]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, cwd=root)

    @property
    def uri(self) -> str:
        uri = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 180
        while True:
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as r:
                    if r.status == 200:
                        return uri
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                pytest.fail(f"mlflow server did not start: {(self.root / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.close()


@pytest.fixture(scope="module")
def booting_server(tmp_path_factory: pytest.TempPathFactory):
    """The real tracking server, started (not yet waited for): the tests without it run meanwhile."""
    server = Server(tmp_path_factory.mktemp("mlflow"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def server(booting_server: Server) -> str:
    """The tracking server's URI, once it answers."""
    return booting_server.uri


def run_pipeline(storage: Path, csv: Path, uri: str, log: list[str], train_steps: str = "100"):  # noqa: ANN201
    from pipelines.local.run import run_locally

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(tracking.TRACKING_URI, uri)
        for name in (tracking.RUN_ID, tracking.EXPERIMENT_ID, tracking.EXPERIMENT_NAME):
            mp.delenv(name, raising=False)
        params = {**FAST, "train_steps": train_steps}
        result = run_locally(storage, csv, params, mode="inprocess", log=log.append)
    failed = result.run.failed_task
    assert result.run.succeeded, failed.error if failed else "run failed"
    return result


@pytest.fixture(scope="module")
def two_runs(server, synthetic_csv, tmp_path_factory):
    """Two tracked runs on one storage root, the second with twice the training budget (what the
    comparison shows): (uri, storage, [LocalResult, LocalResult])."""
    storage = tmp_path_factory.mktemp("storage")
    results = []
    for train_steps in ("100", "200"):
        log: list[str] = []
        results.append(run_pipeline(storage, synthetic_csv, server, log, train_steps))
        results[-1].log = log  # what the runner said, for the tests to read
    return server, storage, results


def client(uri: str):  # noqa: ANN201 (MlflowClient)
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri)


def parent_and_tasks(c, run_id: str):  # noqa: ANN001, ANN201
    """The parent run of pipeline run ``run_id`` and its nested runs by task name."""
    experiment = c.get_experiment_by_name(tracking.DEFAULT_EXPERIMENT)
    query = f"tags.`{tracking.PIPELINE_RUN_TAG}` = '{run_id}' and tags.`{tracking.ROLE_TAG}` = 'pipeline'"
    [parent] = c.search_runs([experiment.experiment_id], filter_string=query)
    nested = c.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    )
    return parent, {r.info.run_name: r for r in nested}


def test_a_server_that_is_not_there_costs_one_warning_and_the_run_completes(
    booting_server, synthetic_csv, tmp_path, capsys
):
    """Run first, while the real server boots (``booting_server``: requested to start it early)."""
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    log: list[str] = []
    started = time.monotonic()
    result = run_pipeline(tmp_path / "storage", synthetic_csv, dead, log)
    assert result.run.succeeded and (tmp_path / "storage" / names.REGISTRY_INDEX).exists()
    warnings = [line for line in log if "mlflow" in line]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(f"{names.PROGRESS_PREFIX}warning: [mlflow] ")  # on the console
    assert warnings[0].endswith("(the run goes on)")
    assert dead in warnings[0]
    assert "mlflow" not in capsys.readouterr().out.lower()  # no task tried (and warned) again
    assert time.monotonic() - started < 600


def test_a_task_facing_a_dead_server_warns_once_and_succeeds(tmp_path, capsys):
    from components.resolve_baseline import resolve_baseline

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(tracking.TRACKING_URI, f"http://127.0.0.1:{free_port()}")
        started = time.monotonic()
        out = run_component(
            resolve_baseline, tmp_path / "kfp", storage_root=str(tmp_path / "storage"), model_name="m"
        )
        seconds = time.monotonic() - started
    assert out["baseline"].metadata["found"] is False  # the stage did its work
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "mlflow" in ln]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{names.PROGRESS_PREFIX}warning: [{names.STAGE_RESOLVE}] mlflow: ")
    assert lines[0].endswith("(the run goes on)")
    assert seconds < 30  # seconds, not MLflow's default minutes of retries


def test_the_experiment_is_named_after_the_pipeline():
    from pipelines.kubetfx_pipeline import PIPELINE_NAME

    assert tracking.DEFAULT_EXPERIMENT == PIPELINE_NAME


def test_two_runs_are_two_parent_runs_each_with_a_nested_run_per_task(two_runs):
    uri, _, results = two_runs
    c = client(uri)
    experiment = c.get_experiment_by_name(tracking.DEFAULT_EXPERIMENT)
    parents = c.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`{tracking.ROLE_TAG}` = 'pipeline'"
    )
    assert sorted(p.info.run_name for p in parents) == sorted(r.run.run_id for r in results)
    for result in results:
        parent, tasks = parent_and_tasks(c, result.run.run_id)
        assert parent.info.status == "FINISHED"
        assert TASKS <= set(tasks)  # and any other task the pipeline has (an exit handler's)
        assert {t.info.status for t in tasks.values()} == {"FINISHED"}
        where = f"{uri}/#/experiments/{parent.info.experiment_id}/runs/{parent.info.run_id}"
        said = f"{names.PROGRESS_PREFIX}mlflow: run {result.run.run_id} logs to {where}"
        assert said in result.log  # the console's line: where to look
    assert tracking.RUN_ID not in os.environ and tracking.TRACKING_URI not in os.environ  # restored


def test_every_run_parameter_and_the_best_hyperparameters_are_logged(two_runs):
    uri, _, results = two_runs
    c = client(uri)
    parent, tasks = parent_and_tasks(c, results[0].run.run_id)
    params = parent.data.params
    assert set(parameters.BY_NAME) <= set(params)
    assert params["tuner_trials"] == "1" and params["module_file"] == FAST["module_file"]
    assert params["data"] == results[0].arguments["data"]
    second = parent_and_tasks(c, results[1].run.run_id)[0].data.params
    assert (params["train_steps"], second["train_steps"]) == ("100", "200")
    tune = next(t for t in results[0].run.tasks if t.task == "tune")
    best = json.loads(
        (Path(tune.outputs["best_hyperparameters"].path) / names.HYPERPARAMETERS_FILE).read_text()
    )
    assert best and all(params[f"hp.{k}"] == str(v) for k, v in best.items())
    assert tasks["tune"].data.params["trials"] == "1"  # each task's own inputs, as KFP's launcher logs them
    assert tasks["tune"].data.metrics["trials"] == 1.0  # and its Metrics artifacts' scalars
    train = next(t for t in results[0].run.tasks if t.task == "train").outputs["metrics"].metadata
    assert tasks["train"].data.metrics["eval_mae"] == pytest.approx(train["eval_mae"])
    assert {f"hp.{k}" for k in best} <= set(tasks["train"].data.params)


def test_per_epoch_losses_are_metric_histories(two_runs):
    uri, _, results = two_runs
    c = client(uri)
    parent, tasks = parent_and_tasks(c, results[0].run.run_id)
    train = next(t for t in results[0].run.tasks if t.task == "train")
    history = read_summary(Path(train.outputs["model"].metadata[names.META_STORAGE_PATH]))["history"]
    assert len(history["loss"]) >= 3
    for run in (tasks["train"], parent):
        for key in ("loss", "val_loss"):
            points = sorted(c.get_metric_history(run.info.run_id, key), key=lambda m: m.step)
            assert [m.step for m in points] == list(range(len(history[key])))
            assert [m.value for m in points] == pytest.approx(history[key])


def test_eval_metrics_overall_and_per_slice_and_the_tags(two_runs):
    uri, storage, results = two_runs
    c = client(uri)
    versions = json.loads((storage / names.REGISTRY_INDEX).read_text())["versions"]
    for result in results:
        parent, tasks = parent_and_tasks(c, result.run.run_id)
        evaluate = next(t for t in result.run.tasks if t.task == "evaluate")
        logged = evaluate.outputs["metrics"].metadata
        for run in (tasks["evaluate"], parent):
            assert run.data.metrics["mae"] == pytest.approx(logged["mae"])
            for value in ("yes", "no"):
                assert run.data.metrics[f"slice/smoker:{value}/mae"] == pytest.approx(
                    logged[f"mae[smoker={value}]"]
                )
        blessing = evaluate.outputs["blessing"].metadata[names.META_VERDICT]
        examples = next(t for t in result.run.tasks if t.task == "example-gen").outputs["examples"]
        assert parent.data.tags[tracking.TAG_BLESSING] == blessing
        assert parent.data.tags[tracking.TAG_FINGERPRINT] == examples.metadata[names.META_FINGERPRINT]
        pushed = [v for v in versions if v["run_id"] == result.run.run_id]
        if blessing == names.BLESSED:
            assert parent.data.tags[tracking.TAG_VERSION] == str(pushed[0]["version"])
        else:
            assert tracking.TAG_VERSION not in parent.data.tags and not pushed


def test_the_reports_are_artifacts(two_runs, tmp_path):
    uri, _, results = two_runs
    c = client(uri)
    _, tasks = parent_and_tasks(c, results[1].run.run_id)
    for stage in ("statistics", "validate", "evaluate"):
        [report] = c.list_artifacts(tasks[stage].info.run_id, tracking.REPORTS_DIR)
        assert report.path == f"{tracking.REPORTS_DIR}/{stage}.html"
        local = Path(c.download_artifacts(tasks[stage].info.run_id, report.path, str(tmp_path)))
        assert "<html" in local.read_text(encoding="utf-8")[:500].lower()


def test_a_blessed_push_with_mlflow_register_model_registers_a_model_version(two_runs, tmp_path):
    """Push alone (no runner: KFP before 2.17) with ``mlflow_register_model``: the first run's blessed
    model pushed to a fresh registry, registered in MLflow, and the parent the tasks made is ended."""
    from components.push import push

    uri, _, results = two_runs
    outputs = {t.task: t.outputs for t in results[0].run.tasks}
    assert outputs["evaluate"]["blessing"].metadata[names.META_VERDICT] == names.BLESSED  # no baseline yet
    storage = tmp_path / "storage"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(tracking.TRACKING_URI, uri)
        mp.delenv(tracking.RUN_ID, raising=False)
        pushed = run_component(
            push,
            tmp_path / "kfp",
            model=outputs["train"]["model"],
            blessing=outputs["evaluate"]["blessing"],
            examples=outputs["example-gen"]["examples"],
            storage_root=str(storage),
            run_id="kfp-run-register",
            model_name="mlflow-registered",
            serving_root=names.SERVING_DIR,
            mlflow_register_model=True,
        )["pushed_model"].metadata
    assert pushed["pushed"] == 1
    c = client(uri)
    parent, tasks = parent_and_tasks(c, "kfp-run-register")
    assert parent.info.status == "FINISHED" and tasks["push"].info.status == "FINISHED"
    assert tasks["push"].data.tags[tracking.TAG_VERSION] == str(pushed["version"])
    [version] = c.search_model_versions("name = 'mlflow-registered'")
    assert version.run_id == tasks["push"].info.run_id
    assert version.tags[tracking.TAG_VERSION] == str(pushed["version"])
    assert version.tags[tracking.TAG_BLESSING] == names.BLESSED
    files = {a.path for a in c.list_artifacts(tasks["push"].info.run_id, tracking.MODEL_DIR)}
    assert f"{tracking.MODEL_DIR}/saved_model.pb" in files


def test_a_task_without_mlflow_run_id_finds_its_parent_by_the_run_id(server, tmp_path):
    """KFP before 2.17 (MLFLOW_TRACKING_URI on the pods, no driver making runs): the tasks make them."""
    from components.resolve_baseline import resolve_baseline

    c = client(server)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(tracking.TRACKING_URI, server)
        mp.delenv(tracking.RUN_ID, raising=False)
        for attempt in range(2):  # two tasks of one run: one parent
            run_component(
                resolve_baseline,
                tmp_path / f"kfp{attempt}",
                storage_root=str(tmp_path / "storage"),
                model_name="m",
                run_id="kfp-run-before-2-17",
            )
    parent, tasks = parent_and_tasks(c, "kfp-run-before-2-17")
    assert parent.info.run_name == "kfp-run-before-2-17" and parent.data.tags[tracking.MADE_BY_TASKS_TAG]
    assert (
        len(c.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"))
        == 2
    )
    [task] = tasks.values()
    assert task.info.run_name == "resolve-baseline" and task.info.status == "FINISHED"
    assert task.data.params["model_name"] == "m"  # no launcher logs the inputs: the task does


def test_a_failed_task_and_run_end_failed_in_the_experiment_named_by_the_user(server):
    """The runner's side alone (``pipelines.tracking``): states and the experiment, as KFP 2.17 sets them."""
    from pipelines.tracking import PipelineTracking

    log: list[str] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(tracking.TRACKING_URI, server)
        mp.setenv(tracking.EXPERIMENT_NAME, "kubetfx-failures")
        tracker = PipelineTracking.start(
            "run-that-fails", "kubetfx-pipeline", {"tuner_trials": 2.0}, log.append
        )
        env = tracker.start_task("transform")
        tracker.end_task("transform", False, {"inputs": {"parameterValues": {"label": "charges"}}})
        tracker.end(False)
    c = client(server)
    experiment = c.get_experiment_by_name("kubetfx-failures")
    assert env[tracking.EXPERIMENT_ID] == experiment.experiment_id
    parent = c.get_run(tracker.parent_id)
    task = c.get_run(env[tracking.RUN_ID])
    assert (parent.info.status, task.info.status) == ("FAILED", "FAILED")
    assert parent.info.experiment_id == experiment.experiment_id and parent.info.run_name == "run-that-fails"
    assert parent.data.params["tuner_trials"] == "2"  # as the KFP UI shows a number
    assert (
        task.data.params == {"label": "charges"} and task.data.tags[tracking.PARENT_TAG] == parent.info.run_id
    )
    assert not [line for line in log if "warning" in line]


def test_the_users_own_mlflow_http_settings_win():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "77")
        mp.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
        with tracking.client_settings():
            assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "77"
            assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "1"
        assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ
        assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "77"


def find_browser() -> str | None:
    return next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)


def test_the_mlflow_ui_compares_the_two_runs(two_runs, tmp_path):
    """The comparison page of the two parent runs renders both; its screenshot is docs/kubernetes.md's."""
    browser = find_browser()
    if browser is None:
        if os.environ.get("KUBETFX_REQUIRE_BROWSER") == "1":
            pytest.fail("no headless browser found: run tests/browser_tools.sh")
        pytest.skip(
            f"no headless browser ({', '.join(BROWSERS)}) on PATH; tests/browser_tools.sh installs one"
        )
    uri, _, results = two_runs
    c = client(uri)
    parents = [parent_and_tasks(c, r.run.run_id)[0] for r in results]
    experiment = parents[0].info.experiment_id
    page = (
        f"{uri}/#/compare-runs?runs={urllib.parse.quote(json.dumps([p.info.run_id for p in parents]))}"
        f"&experiments={urllib.parse.quote(json.dumps([experiment]))}"
    )
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
    ]
    flags += [
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1600,2000",
        "--virtual-time-budget=20000",
    ]
    dom = subprocess.run([browser, *flags, "--dump-dom", page], capture_output=True, text=True, timeout=180)
    assert "Comparing 2 Runs" in dom.stdout, dom.stdout[-1500:] + dom.stderr[-1500:]
    assert all(r.run.run_id in dom.stdout for r in results)
    shot = SCREENSHOTS / "mlflow_compare_runs.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    shot.unlink(missing_ok=True)
    subprocess.run(
        [browser, *flags, f"--screenshot={shot}", page], capture_output=True, timeout=180, check=True
    )
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(shot.read_bytes()[16:20], "big") == 1600
