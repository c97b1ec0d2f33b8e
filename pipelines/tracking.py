"""What KFP 2.17 does for MLflow on a cluster, done by our runners when ``MLFLOW_TRACKING_URI`` is set.

KEP-12862 (kubeflow/pipelines ``proposals/12862-mlflow-integration``): the API server makes an
experiment and one parent run per pipeline run and ends it with the run's state; the driver makes
a nested run per task (tag ``mlflow.parentRunId``) and puts ``MLFLOW_TRACKING_URI``,
``MLFLOW_EXPERIMENT_ID`` and ``MLFLOW_RUN_ID`` (the nested run) into the task's environment; the
launcher logs the task's input parameters and ends the nested run FINISHED or FAILED.
``PipelineTracking`` is those three parts for ``pipelines.local.inprocess`` (environment set
around each task in this process: ``environ``) and ``pipelines.backend.runner`` (the pod's
environment: ``env_command``). The parent is named by the run id, in the experiment
``MLFLOW_EXPERIMENT_NAME`` names, else the pipeline's; it carries every run parameter.

What the tasks log inside those runs is ``components.lib.tracking``'s. A server that cannot be
reached when the run starts costs one warning line and the run goes on untracked: the tasks are
then given no tracking URI, so they do not each warn again.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from components import names
from components.lib import tracking as task_tracking

RUNNER = "mlflow"  # the warning line's label: not a stage's


class PipelineTracking:
    """One pipeline run's MLflow parent run and its task runs; inert when tracking is off."""

    def __init__(self, log: Callable[[str], None], client: Any = None, **run: str) -> None:  # noqa: ANN401
        self.log = log
        self.client = client
        self.uri = run.get("uri", "")
        self.experiment_id = run.get("experiment_id", "")
        self.parent_id = run.get("parent_id", "")
        self.task_runs: dict[str, str] = {}
        self.failed = False

    @property
    def active(self) -> bool:
        return self.client is not None and not self.failed

    @classmethod
    def start(
        cls,
        run_id: str,
        pipeline_name: str,
        arguments: Mapping[str, Any],
        log: Callable[[str], None] = print,
    ) -> PipelineTracking:
        """The parent run of ``run_id`` with every run parameter; inert without MLFLOW_TRACKING_URI."""
        uri = os.environ.get(task_tracking.TRACKING_URI, "")
        if not uri:
            return cls(log)
        try:
            with task_tracking.client_settings():
                from mlflow.tracking import MlflowClient

                client = MlflowClient(uri)
                experiment = task_tracking.experiment_id(client, pipeline_name)
                tags = {
                    task_tracking.PIPELINE_RUN_TAG: run_id,
                    task_tracking.ROLE_TAG: "pipeline",
                    "kubetfx.pipeline": pipeline_name,
                }
                parent = client.create_run(experiment, tags=tags, run_name=run_id).info.run_id
                params = {k: _text(v) for k, v in arguments.items()}
                task_tracking.log_batch(client, parent, params, {}, {})
        except Exception as e:  # noqa: BLE001 (tracking never stops a run)
            tracker = cls(log, uri=uri)
            tracker._warn(e)
            return tracker
        where = f"{uri.rstrip('/')}/#/experiments/{experiment}/runs/{parent}"
        log(f"{names.PROGRESS_PREFIX}mlflow: run {run_id} logs to {where}")  # on the console too
        return cls(log, client, uri=uri, experiment_id=experiment, parent_id=parent)

    def _warn(self, error: Exception) -> None:
        self.failed = True
        text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if isinstance(error, ImportError):
            text += " (install the extra: pip install 'kubetfx[mlflow]')"
        self.log(task_tracking.warning(RUNNER, f"{self.uri}: {text}"))

    def start_task(self, task: str) -> dict[str, str | None]:
        """The nested run of ``task``; the environment the task gets (None: remove the variable)."""
        if not self.uri:
            return {}
        if not self.active:
            return {task_tracking.TRACKING_URI: None}  # the run is untracked: no task tries again
        try:
            with task_tracking.client_settings():
                tags = {
                    task_tracking.PARENT_TAG: self.parent_id,
                    task_tracking.ROLE_TAG: "task",
                    "kubetfx.task": task,
                }
                run = self.client.create_run(self.experiment_id, tags=tags, run_name=task)
        except Exception as e:  # noqa: BLE001
            self._warn(e)
            return {task_tracking.TRACKING_URI: None}
        self.task_runs[task] = run.info.run_id
        return {
            task_tracking.TRACKING_URI: self.uri,
            task_tracking.EXPERIMENT_ID: self.experiment_id,
            task_tracking.RUN_ID: run.info.run_id,
        }

    def end_task(self, task: str, succeeded: bool, executor_input: Mapping[str, Any] | None = None) -> None:
        """The launcher's part: the task's input parameters logged, its run ended with its state."""
        run_id = self.task_runs.pop(task, "")
        if not (self.active and run_id):
            return
        values = ((executor_input or {}).get("inputs") or {}).get("parameterValues") or {}
        try:
            with task_tracking.client_settings():
                params = {k: _text(v) for k, v in values.items()}
                task_tracking.log_batch(self.client, run_id, params, {}, {})
                self.client.set_terminated(run_id, "FINISHED" if succeeded else "FAILED")
        except Exception as e:  # noqa: BLE001
            self._warn(e)

    def end(self, succeeded: bool) -> None:
        """The parent run ended with the pipeline run's state (the API server's part)."""
        if not self.active:
            return
        try:
            with task_tracking.client_settings():
                for run_id in self.task_runs.values():  # a task that never reached end_task
                    self.client.set_terminated(run_id, "FAILED")
                self.client.set_terminated(self.parent_id, "FINISHED" if succeeded else "FAILED")
        except Exception as e:  # noqa: BLE001
            self._warn(e)


def _text(value: Any) -> str:  # noqa: ANN401
    """A parameter value as the KFP UI shows it: JSON-ish for booleans, integral numbers unpadded."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@contextlib.contextmanager
def environ(env: Mapping[str, str | None]) -> Iterator[None]:
    """``env`` set in this process while a task runs in it (None: unset), then restored exactly."""
    saved = {key: os.environ.get(key) for key in env}
    try:
        for key, value in env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def env_command(env: Mapping[str, str | None], command: list[str]) -> list[str]:
    """A pod's command with ``env`` in its environment, as the driver's pod spec patch would put it."""
    pairs = [f"{key}={value}" for key, value in sorted(env.items()) if value is not None]
    return ["env", *pairs, *command] if pairs else list(command)
