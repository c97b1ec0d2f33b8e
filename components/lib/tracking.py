"""MLflow tracking of one task: what a stage logs when ``MLFLOW_TRACKING_URI`` is set.

KFP 2.17's MLflow integration (KEP-12862, kubeflow/pipelines ``proposals/12862-mlflow-integration``)
makes one parent MLflow run per pipeline run and, in its driver, a nested run per task, and puts
``MLFLOW_TRACKING_URI``, ``MLFLOW_EXPERIMENT_ID``, ``MLFLOW_RUN_ID`` (the task's nested run) and
``MLFLOW_WORKSPACE`` into the task's environment; its launcher logs the task's input parameters and
scalar output metrics and closes the nested run. Our local runners do the same
(``pipelines.tracking``). What KFP cannot know is what is *inside* our artifacts, so each stage's
component calls ``log_task`` once at its end and logs, into the run ``MLFLOW_RUN_ID`` names:

- its input parameters (and, on the parent run, every run parameter not already there);
- the best hyperparameters (``hp.<name>``, tune and train), per-epoch ``loss``/``val_loss`` of the
  fit (train's ``training_summary.json``, step = epoch), the scalars of its Metrics artifacts
  (evaluate's overall figures and one per slice: ``slice/smoker:yes/mae``);
- tags ``blessing``, ``registry_version`` and ``data_fingerprint``; its HTML report as an artifact;
- with ``mlflow_register_model`` on a BLESSED push: the pushed SavedModel as an MLflow model version.

Without ``MLFLOW_RUN_ID`` (KFP before 2.17 with the variable set on the pods, or a task run by
hand) the task finds or makes the parent run by the pipeline run id and a nested run of its own.
Tracking never fails a stage: a dead server, a missing ``mlflow`` or a refused call is one line,
``warning: [<stage>] mlflow: <problem> (the run goes on)``, and HTTP retries are cut to seconds
unless the user set MLflow's own ``MLFLOW_HTTP_REQUEST_*`` variables. Standard library at the top
level: ``mlflow`` (the ``mlflow`` extra) is imported only when the variable is set.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components import names

# The environment KFP 2.17's driver gives a task (KEP-12862), read by the MLflow client itself.
TRACKING_URI = "MLFLOW_TRACKING_URI"
RUN_ID = "MLFLOW_RUN_ID"
EXPERIMENT_ID = "MLFLOW_EXPERIMENT_ID"
EXPERIMENT_NAME = "MLFLOW_EXPERIMENT_NAME"  # the user's choice of experiment (MLflow's own variable)
DEFAULT_EXPERIMENT = "kubetfx-pipeline"  # the pipeline's name (a test checks they agree)
# A dead server costs seconds: one retry after 1 s, 5 s per request (MLflow's defaults: 7 retries
# with a backoff factor of 2 and 120 s timeouts, minutes per call); and no "View run at" line per
# ended run on the console (the runner prints the parent's address once). The user's values win.
CLIENT_SETTINGS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}
PARENT_TAG = "mlflow.parentRunId"  # MLflow's own: what makes a run nested in the UI
RUN_NAME_TAG = "mlflow.runName"
PIPELINE_RUN_TAG = "kubetfx.run_id"  # the KFP run id, on the parent and every task run
ROLE_TAG = "kubetfx.role"  # "pipeline" (the parent) or "task"
MADE_BY_TASKS_TAG = "kubetfx.made_by_tasks"  # a parent no runner made: push closes it
TAG_BLESSING = "blessing"
TAG_VERSION = "registry_version"
TAG_FINGERPRINT = "data_fingerprint"
REGISTER_PARAMETER = "mlflow_register_model"
REPORTS_DIR = "reports"
MODEL_DIR = "model"
HTML_SCHEMA = "system.HTML"
METRICS_SCHEMA = "system.Metrics"
_SLICED = re.compile(r"^(?P<metric>[^\[]+)\[(?P<slice>.*)\]$")  # mae[smoker=yes]
_BAD_KEY_CHARS = re.compile(r"[^/\w.\- :]")  # what MLflow refuses in a metric or param name


def warning(stage: str, problem: object) -> str:
    """The one line a tracking failure costs: the stage, the problem, and that nothing stops.

    Marked as progress (``names.PROGRESS_PREFIX``): the console shows it without ``--verbose``.
    """
    text = str(problem).strip().splitlines()[0] if str(problem).strip() else type(problem).__name__
    return f"{names.PROGRESS_PREFIX}warning: [{stage}] mlflow: {text[:300]} (the run goes on)"


@contextlib.contextmanager
def client_settings() -> Iterator[None]:
    """``CLIENT_SETTINGS`` (those the user has not set) while tracking calls run, then restored."""
    added = [key for key in CLIENT_SETTINGS if key not in os.environ]
    os.environ.update({key: CLIENT_SETTINGS[key] for key in added})
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


def metric_key(key: str) -> str:
    """A Metrics-artifact key as MLflow accepts it: ``mae[smoker=yes]`` -> ``slice/smoker:yes/mae``."""
    sliced = _SLICED.match(key)
    if sliced:
        key = f"slice/{sliced['slice'].replace('=', ':').replace(', ', '/')}/{sliced['metric']}"
    return _BAD_KEY_CHARS.sub("_", key)


def _number(value: Any) -> float | None:  # noqa: ANN401
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


@dataclass
class TaskRecord:
    """What one task logs: read from its arguments and artifacts, before any MLflow call."""

    params: dict[str, str] = field(default_factory=dict)  # the task's input parameters
    run_params: dict[str, str] = field(default_factory=dict)  # those of them that are run parameters
    hyperparameters: dict[str, str] = field(default_factory=dict)  # hp.<name>: the best, from tune
    metrics: dict[str, float] = field(default_factory=dict)
    history: dict[str, list[float]] = field(default_factory=dict)  # per epoch
    tags: dict[str, str] = field(default_factory=dict)
    reports: list[Path] = field(default_factory=list)
    pushed_version: Path | None = None  # a BLESSED push's version directory


def _artifact_facts(stage: str, name: str, artifact: Any, record: TaskRecord) -> None:  # noqa: ANN401
    """What one input or output artifact contributes, by its schema and its role in the pipeline."""
    meta = dict(artifact.metadata or {})
    if meta.get(names.META_FINGERPRINT):
        record.tags[TAG_FINGERPRINT] = str(meta[names.META_FINGERPRINT])
    if artifact.schema_title == METRICS_SCHEMA:
        for key, value in meta.items():
            number = _number(value)
            if number is not None:
                record.metrics[metric_key(key)] = number
    elif artifact.schema_title == HTML_SCHEMA and Path(artifact.path).is_file():
        record.reports.append(Path(artifact.path))
    if name == "blessing" and meta.get(names.META_VERDICT):
        record.tags[TAG_BLESSING] = str(meta[names.META_VERDICT])
    elif name == "pushed_model" and meta.get("pushed"):
        record.tags[TAG_VERSION] = str(meta.get("version"))
        record.pushed_version = Path(str(meta.get("serving_path", "")))
    elif name == "best_hyperparameters" and Path(artifact.path).exists():
        from components.lib.hyperparameters import read_hyperparameters

        for key, value in read_hyperparameters(Path(artifact.path), stage).items():
            record.hyperparameters[f"hp.{key}"] = str(value)
    elif name == "model" and stage == names.STAGE_TRAIN and meta.get(names.META_STORAGE_PATH):
        from components.lib.train_outputs import read_summary

        history = read_summary(Path(meta[names.META_STORAGE_PATH])).get("history") or {}
        for key, values in history.items():
            points = [_number(v) for v in values] if isinstance(values, list) else []
            if points and all(p is not None for p in points):
                record.history[metric_key(key)] = [p for p in points if p is not None]


def collect(stage: str, arguments: Mapping[str, Any]) -> TaskRecord:
    """The record of a task from its arguments (a component's parameters and artifacts, filled in)."""
    from components.parameters import BY_NAME

    record = TaskRecord()
    for name, value in arguments.items():
        if isinstance(value, bool | int | float | str):
            record.params[name] = str(value)
            if name in BY_NAME:
                record.run_params[name] = str(value)
        elif all(hasattr(value, a) for a in ("schema_title", "metadata", "path")):
            _artifact_facts(stage, name, value, record)
    if record.pushed_version is not None and not record.pushed_version.is_absolute():
        record.pushed_version = Path(str(arguments.get("storage_root", ""))) / record.pushed_version
    return record


def log_task(stage: str) -> None:
    """Log the calling component's task to MLflow when ``MLFLOW_TRACKING_URI`` is set; never raise.

    Called as the last line of a component body: the caller's arguments (KFP fills the output
    artifacts in before this runs) are read from its frame, so each component needs one line and
    no list of what to log that could drift from its signature.
    """
    if not os.environ.get(TRACKING_URI):
        return
    frame = sys._getframe(1)
    code = frame.f_code
    arguments = {
        n: frame.f_locals[n]
        for n in code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]
        if n in frame.f_locals
    }
    del frame
    try:
        record = collect(stage, arguments)
        with client_settings():
            _log(stage, record, str(arguments.get("run_id", "")), arguments)
    except Exception as e:  # noqa: BLE001 (tracking is never a reason for a stage to fail)
        print(warning(stage, _plain(e)), flush=True)


def _plain(error: Exception) -> str:
    """An MLflow or connection error in one line, without the client's multi-line retry story."""
    if isinstance(error, ImportError):
        return f"{error} (install the extra: pip install 'kubetfx[mlflow]')"
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    uri = os.environ.get(TRACKING_URI, "")
    return f"{uri}: {text}" if uri and uri not in text else text


def _log(stage: str, record: TaskRecord, pipeline_run_id: str, arguments: Mapping[str, Any]) -> None:
    """Write the record into the task's run, the run-wide part into its parent."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    run_id = os.environ.get(RUN_ID) or _own_task_run(client, stage, pipeline_run_id)
    run = client.get_run(run_id)
    own = bool(run.data.tags.get(MADE_BY_TASKS_TAG))
    # The input parameters are the launcher's to log (KFP 2.17's, or our runner's: pipelines.tracking);
    # logging them here too could refuse its batch (MLflow keeps a param's first value: 8000 vs 8000.0).
    params = (record.params if own else {}) | record.hyperparameters
    log_batch(client, run_id, params, record.metrics, record.tags)
    log_history(client, run_id, record.history)
    for report in record.reports:
        _log_report(client, run_id, stage, report)
    parent = run.data.tags.get(PARENT_TAG)
    parent_tags: Mapping[str, str] = {}
    if parent:
        parent_run = client.get_run(parent)
        present, parent_tags = parent_run.data.params, parent_run.data.tags
        fresh = {k: v for k, v in (record.run_params | record.hyperparameters).items() if k not in present}
        parent_metrics = record.metrics if stage == names.STAGE_EVALUATE else {}
        log_batch(client, parent, fresh, parent_metrics, record.tags)
        log_history(client, parent, record.history)
    if record.pushed_version is not None and arguments.get(REGISTER_PARAMETER) is True:
        model_name = str(arguments.get("model_name") or stage)
        version = register_version(client, run_id, model_name, record.pushed_version, record.tags)
        print(
            f"{names.PROGRESS_PREFIX}[{stage}] mlflow: registered {model_name!r} version {version}",
            flush=True,
        )
    if own:  # no launcher ends it: the task does, and push, the last stage, a parent no runner made
        client.set_terminated(run_id, "FINISHED")
        if parent and stage == names.STAGE_PUSH and parent_tags.get(MADE_BY_TASKS_TAG):
            client.set_terminated(parent, "FINISHED")


def log_batch(
    client: Any,  # noqa: ANN401 (mlflow.tracking.MlflowClient)
    run_id: str,
    params: Mapping[str, str],
    metrics: Mapping[str, float],
    tags: Mapping[str, str],
) -> None:
    """Params, metrics and tags in as few calls as MLflow's batch limits allow (100 params a call)."""
    import time

    from mlflow.entities import Metric, Param, RunTag

    if not (params or metrics or tags):
        return
    now = int(time.time() * 1000)
    items = [Param(_BAD_KEY_CHARS.sub("_", k), v[:6000]) for k, v in sorted(params.items())]
    for start in range(0, max(len(items), 1), 100):
        chunk = items[start : start + 100]
        first = start == 0
        client.log_batch(
            run_id,
            metrics=[Metric(k, v, now, 0) for k, v in sorted(metrics.items())] if first else [],
            params=chunk,
            tags=[RunTag(k, v) for k, v in sorted(tags.items())] if first else [],
        )


def log_history(client: Any, run_id: str, history: Mapping[str, list[float]]) -> None:  # noqa: ANN401
    """Per-epoch values as one metric history each (step = epoch, from 0), in one batch call."""
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    points = [Metric(key, v, now, step) for key, values in history.items() for step, v in enumerate(values)]
    for start in range(0, len(points), 1000):
        client.log_batch(run_id, metrics=points[start : start + 1000])


def _log_report(client: Any, run_id: str, stage: str, report: Path) -> None:  # noqa: ANN401
    """An HTML report under ``reports/<stage>.html``: KFP names the file after the output, no suffix."""
    with tempfile.TemporaryDirectory() as tmp:
        named = Path(tmp) / f"{stage}.html"
        shutil.copyfile(report, named)
        client.log_artifact(run_id, str(named), REPORTS_DIR)


def register_version(
    client: Any,  # noqa: ANN401
    run_id: str,
    model_name: str,
    version_dir: Path,
    tags: Mapping[str, str],
) -> str:
    """The pushed SavedModel as a version of the registered model ``model_name``; its number."""
    from mlflow.exceptions import MlflowException

    client.log_artifacts(run_id, str(version_dir), MODEL_DIR)
    try:
        client.create_registered_model(model_name)
    except MlflowException as e:
        if e.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    source = f"{client.get_run(run_id).info.artifact_uri}/{MODEL_DIR}"
    version = client.create_model_version(model_name, source, run_id=run_id, tags=dict(tags))
    return str(version.version)


def experiment_id(client: Any, default_name: str = DEFAULT_EXPERIMENT) -> str:  # noqa: ANN401
    """``MLFLOW_EXPERIMENT_ID``, else the experiment named ``MLFLOW_EXPERIMENT_NAME`` or the pipeline's."""
    if os.environ.get(EXPERIMENT_ID):
        return os.environ[EXPERIMENT_ID]
    name = os.environ.get(EXPERIMENT_NAME) or default_name
    found = client.get_experiment_by_name(name)
    return found.experiment_id if found is not None else client.create_experiment(name)


def _own_task_run(client: Any, stage: str, pipeline_run_id: str) -> str:  # noqa: ANN401
    """No ``MLFLOW_RUN_ID``: a nested run under the parent of ``pipeline_run_id`` (made if missing)."""
    experiment = experiment_id(client)
    query = f"tags.`{PIPELINE_RUN_TAG}` = '{pipeline_run_id}' and tags.`{ROLE_TAG}` = 'pipeline'"
    found = client.search_runs([experiment], filter_string=query, max_results=1)
    if found:
        parent = found[0].info.run_id
    else:
        tags = {PIPELINE_RUN_TAG: pipeline_run_id, ROLE_TAG: "pipeline", MADE_BY_TASKS_TAG: "1"}
        parent = client.create_run(experiment, tags=tags, run_name=pipeline_run_id).info.run_id
    tags = {PARENT_TAG: parent, PIPELINE_RUN_TAG: pipeline_run_id, ROLE_TAG: "task", MADE_BY_TASKS_TAG: "1"}
    task = stage.replace("_", "-")  # the DAG task key, as the runners and KFP name a task's run
    return client.create_run(experiment, tags=tags, run_name=task).info.run_id
