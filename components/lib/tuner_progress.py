"""The tuner's trials as users see them: console lines, TensorBoard's HParams view, trials.json.

One console line per trial, the trials in TensorBoard's HParams view, and ``trials.json`` on the
volume for the evaluation report.

``attach(tuner, total, work_dir)`` hooks keras-tuner's ``on_trial_end``; after each trial it

- prints ``» trial 2/4: num_layers 2, units 64, learning_rate 0.01 val_loss 0.1342`` (the
  ``names.PROGRESS_PREFIX`` makes the local console relay it while hiding the stage's other output);
- writes the trial's hyperparameters and val_loss with TensorBoard's HParams API under
  ``<work_dir>/logs/trial_<id>``, so
  ``tensorboard --logdir artifacts/<run id>`` lists the trials in its HPARAMS tab beside train's
  curves in ``train/logs``;
- rewrites ``<work_dir>/trials.json`` (``hyperparameters.TRIALS_FILE``: trial, values, val_loss,
  status), which the evaluation report reads from ``artifacts/<run id>/tune/``.

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


def write_hparams(log_dir: Path, trial_id: str, values: dict[str, Any], score: float | None) -> None:
    """One trial as a TensorBoard HParams session (``<log_dir>/trial_<id>``) with its val_loss."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hp

    # No hparams_config: TensorBoard then infers each hyperparameter's type and values, and the
    # metric, from the trials themselves (a configuration written up front would need domains).
    writer = tf.summary.create_file_writer(str(log_dir / f"trial_{trial_id}"))
    with writer.as_default():
        hp.hparams({k: _hparam_value(v) for k, v in values.items()}, trial_id=f"trial {trial_id}")
        if score is not None:
            tf.summary.scalar(METRIC, score, step=1)
    writer.close()


def _hparam_value(value: Any) -> Any:
    return value if isinstance(value, bool | int | float | str) else str(value)


class TrialReporter:
    """Reports each trial of one search; ``on_trial_end`` is called after keras-tuner's own."""

    def __init__(self, total: int, work_dir: Path, say: Callable[[str], None] | None = None) -> None:
        self.total = total
        self.work_dir = Path(work_dir)
        self.trials: list[dict[str, Any]] = []
        self._say = say or (lambda line: print(line, flush=True))

    def trial_ended(self, trial_id: str, values: dict[str, Any], score: float | None, status: str) -> None:
        score = None if score is None or not math.isfinite(score) else float(score)
        values = user_values(values)
        self.trials.append({"trial": trial_id, "values": values, METRIC: score, "status": status})
        self._say(trial_line(len(self.trials), self.total, values, score, status))
        try:
            (self.work_dir / TRIALS_FILE).write_text(json.dumps(self.trials, indent=2, sort_keys=True))
            write_hparams(self.work_dir / names.TENSORBOARD_DIR, trial_id, values, score)
        except Exception as e:  # noqa: BLE001 (reporting never decides a search)
            print(f"warning: [{names.STAGE_TUNE}] could not record trial {trial_id}: {type(e).__name__}: {e}")


def attach(tuner: Any, total: int, work_dir: Path, say: Callable[[str], None] | None = None) -> TrialReporter:
    """Hook a keras-tuner tuner so every finished trial is reported (see the module docstring)."""
    reporter = TrialReporter(total, work_dir, say)
    original = tuner.on_trial_end

    def on_trial_end(trial: Any) -> None:
        try:
            original(trial)  # the oracle scores the trial (and may stop the search on failures)
        finally:
            ended = tuner.oracle.trials.get(trial.trial_id, trial)
            reporter.trial_ended(
                str(ended.trial_id), dict(ended.hyperparameters.values), ended.score, str(ended.status)
            )

    tuner.on_trial_end = on_trial_end
    return reporter


def read_trials(tune_dir: Path) -> list[dict[str, Any]]:
    """The trials a search reported (``trials.json`` in the tune stage's directory); [] without one."""
    try:
        trials = json.loads((Path(tune_dir) / TRIALS_FILE).read_text())
    except (OSError, ValueError):
        return []
    return trials if isinstance(trials, list) else []
