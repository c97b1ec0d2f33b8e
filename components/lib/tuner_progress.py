"""The tuner's trials as users see them: console lines, TensorBoard's HParams view, trials.json.

One console line per trial, the trials in TensorBoard's HParams view, and ``trials.json`` on the
volume for the evaluation report.

``attach(tuner, total, work_dir)`` hooks keras-tuner's ``on_epoch_end`` (to keep each epoch's
loss and val_loss) and ``on_trial_end``; after each trial it

- prints ``» trial 2/4: num_layers 2, units 64, learning_rate 0.01 val_loss 0.1342`` (the
  ``names.PROGRESS_PREFIX`` makes the local console relay it while hiding the stage's other output);
- writes the trial as a TensorBoard HParams session under ``<work_dir>/logs/trial_<n>``, ``n``
  counting 1..N as the console and the reports count (keras-tuner's own ids start at 0): its
  hyperparameters, its score ``val_loss`` (its best epoch's, at that epoch), its per-epoch
  ``epoch_loss`` and ``epoch_val_loss`` curves, and its status (``STATUS_SUCCESS``, or
  ``STATUS_FAILURE`` for a failed trial). The first trial also writes the experiment's
  configuration in ``logs/``: each hyperparameter's domain from the search space — an integer
  one (``hp.Int``, a ``hp.Choice`` of integers) as a discrete list of integers. (HParams has no
  integer type: its protos know string, bool and float64, so the type column still reads
  FLOAT64; the domain lists 16, 32, 64, not an interval of reals.) So
  ``tensorboard --logdir artifacts/<run id>`` lists the trials in its HPARAMS tab beside
  train's curves in ``train/logs``;
- rewrites ``<work_dir>/trials.json`` (``hyperparameters.TRIALS_FILE``: trial, values, val_loss,
  status, per-epoch ``history``), which the evaluation report reads from ``artifacts/<run id>/tune/``.

Reporting never decides a search: a failure to write is one warning line in the task's log.
Standard library at the top; TensorFlow and TensorBoard are imported when a trial ends.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from components import names
from components.lib.hyperparameters import TRIALS_FILE

METRIC = "val_loss"  # the tuner's objective, as TensorBoard and the console name it
TUNER_KEYS = "tuner/"  # keras-tuner's own bookkeeping values (Hyperband), not the user's


def user_values(values: dict[str, Any]) -> dict[str, Any]:
    """A trial's hyperparameters without keras-tuner's bookkeeping."""
    return {k: v for k, v in values.items() if not k.startswith(TUNER_KEYS)}


def format_value(value: Any) -> str:
    """A hyperparameter as a user wrote it: ``2``, not ``2.0``; ``0.001``, not ``1e-03``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.6g}" if isinstance(value, float) and abs(value) >= 1e-4 else f"{value:g}"


def format_values(values: dict[str, Any]) -> str:
    """``num_layers 2, units 64, learning_rate 0.01``."""
    return ", ".join(f"{k} {format_value(v)}" for k, v in values.items())


def trial_line(index: int, total: int, values: dict[str, Any], score: float | None, status: str = "") -> str:
    """The console line of one finished trial."""
    outcome = f"{METRIC} {score:.4g}" if score is not None else f"no {METRIC} ({status.lower() or 'failed'})"
    return f"{names.PROGRESS_PREFIX}trial {index}/{total}: {format_values(values)} {outcome}"


EPOCH_TAGS = {"loss": "epoch_loss", METRIC: "epoch_val_loss"}  # history key -> per-epoch scalar tag
SUCCESS, FAILURE, ABORTED, UNKNOWN = "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_ABORTED", "STATUS_UNKNOWN"
MAX_DISCRETE = 100  # an integer range with more values than this is an interval in HParams


def session_status(status: str) -> str:
    """keras-tuner's trial status -> the HParams session status."""
    key = status.upper().rsplit(".", 1)[-1]
    return {"COMPLETED": SUCCESS, "FAILED": FAILURE, "INVALID": FAILURE, "STOPPED": ABORTED}.get(key, UNKNOWN)


def run_name(index: int, total: int) -> str:
    """``trial_3`` (``trial_03`` among 10 or more, so the runs sort as they ran)."""
    return f"trial_{index:0{len(str(max(total, 1)))}d}"


def hparam_domains(space: Any) -> dict[str, Any]:
    """{name: TensorBoard domain} of a keras-tuner search space (its ``space`` list).

    Integers (``hp.Int`` of linear steps, a ``hp.Choice`` or ``hp.Fixed`` of ints) get a discrete
    domain of ints; floats an interval or their choices; bools and strings their values.
    """
    from tensorboard.plugins.hparams import api as hp

    domains: dict[str, Any] = {}
    for p in space:
        kind = type(p).__name__
        if kind == "Int":
            step = getattr(p, "step", None) or 1
            count = (p.max_value - p.min_value) // step + 1
            linear = getattr(p, "sampling", "linear") in (None, "linear")
            domains[p.name] = (
                hp.Discrete(list(range(p.min_value, p.max_value + 1, step)), dtype=int)
                if linear and count <= MAX_DISCRETE
                else hp.IntInterval(p.min_value, p.max_value)
            )
        elif kind == "Float":
            domains[p.name] = hp.RealInterval(float(p.min_value), float(p.max_value))
        elif kind == "Boolean":
            domains[p.name] = hp.Discrete([False, True], dtype=bool)
        else:
            values = list(p.values) if hasattr(p, "values") else [p.value]
            dtype: type | None = next(
                (t for t in (bool, int, float) if all(type(v) is t for v in values)), None
            )
            if dtype is None and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
                dtype, values = float, [float(v) for v in values]
            if dtype is None:
                dtype, values = str, [str(v) for v in values]
            domains[p.name] = hp.Discrete(values, dtype=dtype)
    return domains


def write_experiment(log_dir: Path, domains: dict[str, Any]) -> None:
    """The HParams experiment (``log_dir`` itself): every hyperparameter's domain and the metric."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hp

    writer = tf.summary.create_file_writer(str(log_dir))
    with writer.as_default():
        hp.hparams_config(
            hparams=[hp.HParam(name, domain) for name, domain in domains.items()],
            metrics=[hp.Metric(METRIC, display_name=f"{METRIC} (best epoch)")],
        )
    writer.close()


def _typed(value: Any, domain: Any) -> Any:
    """A trial's value as its domain's type (an int hyperparameter stays an int)."""
    dtype = getattr(domain, "dtype", None)
    if dtype is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool | int | float | str):
        return value
    return str(value)


def write_hparams(
    log_dir: Path,
    run: str,
    values: dict[str, Any],
    score: float | None,
    *,
    status: str = "",
    history: dict[str, list[float]] | None = None,
    domains: dict[str, Any] | None = None,
) -> None:
    """One trial as a TensorBoard HParams session (``<log_dir>/<run>``): values, score, curves, status."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hp
    from tensorboard.plugins.hparams import api_pb2
    from tensorboard.plugins.hparams import summary as hp_summary

    domains = domains or {}
    history = history or {}
    writer = tf.summary.create_file_writer(str(log_dir / run))
    with writer.as_default():
        hp.hparams({k: _typed(v, domains.get(k)) for k, v in values.items()}, trial_id=run.replace("_", " "))
        for key, tag in EPOCH_TAGS.items():
            for epoch, value in enumerate(history.get(key, []), start=1):
                tf.summary.scalar(tag, value, step=epoch)
        val = history.get(METRIC, [])
        if score is not None:  # at the best epoch, where its weights were
            best = min(range(len(val)), key=lambda i: abs(val[i] - score)) + 1 if val else 1
            tf.summary.scalar(METRIC, score, step=best)
        end = hp_summary.session_end_pb(api_pb2.Status.Value(session_status(status)))
        tf.summary.experimental.write_raw_pb(end.SerializeToString(), step=max(len(val), 1))
    writer.close()


class TrialReporter:
    """Reports each trial of one search; ``on_trial_end`` is called after keras-tuner's own."""

    def __init__(
        self, total: int, work_dir: Path, say: Callable[[str], None] | None = None, space: Any = None
    ) -> None:
        self.total = total
        self.work_dir = Path(work_dir)
        self.trials: list[dict[str, Any]] = []
        self.epochs: dict[str, dict[str, list[float]]] = {}  # keras-tuner trial id -> per-epoch logs
        self._space: Callable[[], Any] = space or (
            lambda: []
        )  # the search space's parameters, once the first trial built
        self._domains: dict[str, Any] | None = None
        self._say = say or (lambda line: print(line, flush=True))

    def epoch_ended(self, trial_id: str, logs: dict[str, Any] | None) -> None:
        history = self.epochs.setdefault(trial_id, {})
        for key in EPOCH_TAGS:
            value = (logs or {}).get(key)
            if value is not None:
                history.setdefault(key, []).append(float(value))

    def trial_ended(self, trial_id: str, values: dict[str, Any], score: float | None, status: str) -> None:
        score = None if score is None or not math.isfinite(score) else float(score)
        values = user_values(values)
        history = self.epochs.get(trial_id, {})
        n = len(self.trials) + 1
        self.trials.append(
            {
                "trial": trial_id,
                "number": n,
                "values": values,
                METRIC: score,
                "status": status,
                "history": history,
            }
        )
        self._say(trial_line(n, self.total, values, score, status))
        try:
            (self.work_dir / TRIALS_FILE).write_text(json.dumps(self.trials, indent=2, sort_keys=True))
            logs = self.work_dir / names.TENSORBOARD_DIR
            if self._domains is None:
                self._domains = hparam_domains(p for p in self._space() if p.name in values)
                write_experiment(logs, self._domains)
            write_hparams(
                logs,
                run_name(n, self.total),
                values,
                score,
                status=status,
                history=history,
                domains=self._domains,
            )
        except Exception as e:  # noqa: BLE001 (reporting never decides a search)
            print(f"warning: [{names.STAGE_TUNE}] could not record trial {n}: {type(e).__name__}: {e}")


def attach(tuner: Any, total: int, work_dir: Path, say: Callable[[str], None] | None = None) -> TrialReporter:
    """Hook a keras-tuner tuner so every epoch and finished trial is reported (see the module docstring)."""
    reporter = TrialReporter(total, work_dir, say, space=lambda: tuner.oracle.get_space().space)
    original_epoch, original_end = tuner.on_epoch_end, tuner.on_trial_end

    def on_epoch_end(trial: Any, model: Any, epoch: int, logs: Any = None) -> None:
        original_epoch(trial, model, epoch, logs=logs)
        reporter.epoch_ended(str(trial.trial_id), logs)

    def on_trial_end(trial: Any) -> None:
        try:
            original_end(trial)  # the oracle scores the trial (and may stop the search on failures)
        finally:
            ended = tuner.oracle.trials.get(trial.trial_id, trial)
            reporter.trial_ended(
                str(ended.trial_id), dict(ended.hyperparameters.values), ended.score, str(ended.status)
            )

    tuner.on_epoch_end = on_epoch_end
    tuner.on_trial_end = on_trial_end
    return reporter


def read_trials(tune_dir: Path) -> list[dict[str, Any]]:
    """The trials a search reported (``trials.json`` in the tune stage's directory); [] without one."""
    try:
        trials = json.loads((Path(tune_dir) / TRIALS_FILE).read_text())
    except (OSError, ValueError):
        return []
    return trials if isinstance(trials, list) else []
