"""Tune's trials in parallel tasks: the trial set fixed up front, split round-robin, the best picked after.

Why: TFX's Tuner runs every trial in one pod; a Kubeflow run can give each share of the trials
its own pod (``compile.py --tune-parallelism N``: a ParallelFor of N ``tune_trials`` tasks and a
``tune_best`` fan-in). For the split to pick what one task would pick, two things hold:

- The trial set does not depend on the split. ``Plan.apply`` draws the whole set from the
  random oracle before any trial runs — the module's defaults first, then the oracle's seeded
  draws, exactly the values one task's search creates in order — and hands this group trial
  indices ``group, group + N, group + 2N, ...`` (round-robin). Only the ``random`` tuner splits:
  Bayesian optimization and Hyperband choose each trial from the scores before it (``check``).
- A trial's score does not depend on what ran before it in its process. ``isolate`` makes every
  trial start as if it were the first: the seed set again and fresh datasets (the shuffle order
  of a reused dataset continues from the previous trial's). One task's search uses it too.

Each group returns (and writes, ``RESULT_FILE`` in its directory on the volume) a JSON string:
its trials with their global index, values, val_loss and status; the defaults' values; the
budget. ``merge`` puts the groups' trials back in index order, so the fan-in's choice (``choose``:
lowest val_loss, the defaults kept within ``DEFAULTS_MARGIN``, ties to the lower index) is the
one a single task makes. ``best_of_groups`` is the ``tune_best`` stage: the fan-in, written as one
tune task writes its result (``TuneResult``, which both build).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from components import names
from components.errors import StageError
from components.lib import storage, training, tuner_progress
from components.lib.hyperparameters import TRIALS_FILE, write_hyperparameters

RESULT_FILE = "group_result.json"
STAGE_DIR = names.STAGE_TUNE_TRIALS
SPLITTABLE = ("random",)
# A trial replaces the module's default setting only when its validation loss is lower by more than
# this share. On a slice of ~50 rows the scores are noisy: on the reference workload one setting
# scored 0.0943 and 0.0987 in two identical runs (oneDNN's float order, amplified by 300 steps) —
# 4.6 % apart — and a setting that beat the defaults by 1.4-6 % on the slice lost on eval by 20 %
# (MAE ~1,870 against ~1,530). Twice that run-to-run spread: 10 %.
DEFAULTS_MARGIN = 0.1


@dataclasses.dataclass
class TuneResult:
    """The chosen hyperparameters and, when searched, every trial's values and val_loss."""

    best: dict[str, Any]
    trials: list[dict[str, Any]]
    best_val_loss: float | None
    searched: bool
    seconds: float
    budget: dict[str, Any] = dataclasses.field(default_factory=dict)  # a trial's slice and epochs

    def metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"hyperparameters": self.best, "searched": self.searched}
        if self.searched:
            meta["trials"] = len(self.trials)
            meta["best_val_loss"] = self.best_val_loss
            meta["budget"] = self.budget
        return meta

    def metrics(self) -> dict[str, float]:
        """The summary's metrics: the trials' val_loss, the best, how many trials, the seconds.

        A trial's is ``trial_<n>_val_loss``, n counted from 1 as the console and the reports count.
        """
        metrics = {
            f"trial_{i}_val_loss": t["val_loss"]
            for i, t in enumerate(self.trials, start=1)
            if t["val_loss"] is not None
        }
        if self.best_val_loss is not None:
            metrics["best_val_loss"] = self.best_val_loss
        metrics["trials"] = float(len(self.trials))
        metrics["tune_seconds"] = round(self.seconds, 2)
        return metrics


def choose(scored: list[dict[str, Any]], defaults: dict[str, Any] | None) -> dict[str, Any]:
    """The trial with the lowest val_loss, unless the defaults' trial is within DEFAULTS_MARGIN of it."""
    best = min(scored, key=lambda t: t["val_loss"])
    mine = [t for t in scored if defaults and t["values"] == tuner_progress.user_values(defaults)]
    if mine and best["val_loss"] > mine[0]["val_loss"] * (1 - DEFAULTS_MARGIN):
        return mine[0]
    return best


def share(trials: int, groups: int, group: int) -> list[int]:
    """The trial indices one group runs: round-robin over the trial set."""
    return list(range(group, trials, groups))


def group_dir_name(group: int) -> str:
    """A group's directory under the ``tune_trials`` stage directory of the run."""
    return f"group-{group}"


def split_refusal(tuner: str, groups: int) -> str:
    """Why ``tuner``'s trials cannot run in ``groups`` parallel groups ("" when they can)."""
    if groups <= 1 or tuner.strip().lower() in SPLITTABLE:
        return ""
    return (
        f"tuner {tuner!r} chooses each trial from the scores before it, so its trials cannot run in "
        f"{groups} parallel groups; use tuner 'random', or compile with --tune-parallelism 1"
    )


def check(tuner: str, groups: int, group: int, stage: str) -> None:
    """Refuse a split that cannot reproduce one task's search (one line naming the fix)."""
    if groups < 1 or not 0 <= group < groups:
        raise StageError(stage, None, f"trial group {group} of {groups} does not exist")
    refusal = split_refusal(tuner, groups)
    if refusal:
        raise StageError(stage, None, refusal)


@dataclasses.dataclass
class Plan:
    """One task's share of the trial set (``apply`` fixes the set and hands the oracle the share)."""

    group: int
    groups: int
    indices: list[int] = dataclasses.field(default_factory=list)
    defaults: dict[str, Any] | None = None  # the first trial's values when they are the module's

    def apply(self, search: Any, trials: int, first: dict[str, Any] | None) -> None:  # noqa: ANN401
        """Draw the whole trial set as one search would, then serve only this group's indices.

        ``first``: what ``tune._defaults_first`` fills with the defaults' trial (None: no defaults).
        """
        import keras_tuner as kt

        running, stopped = kt.engine.trial.TrialStatus.RUNNING, kt.engine.trial.TrialStatus.STOPPED
        oracle = search.oracle
        values: list[dict[str, Any]] = []
        for i in range(trials):
            response = oracle.populate_space(f"plan-{i}")  # the defaults first (tune._defaults_first)
            if response["status"] != running:
                break
            hps = oracle.hyperparameters.copy()
            hps.values = response["values"]
            hps.ensure_active_values()  # as keras-tuner records a created trial's values
            oracle._tried_so_far.add(oracle._compute_values_hash(hps.values))  # noqa: SLF001
            values.append(dict(hps.values))
        self.indices = share(len(values), self.groups, self.group)
        self.defaults = dict(first) if first else None
        queue = [values[i] for i in self.indices]

        def populate(trial_id: str) -> dict[str, Any]:
            if not queue:
                return {"status": stopped, "values": None}
            return {"status": running, "values": queue.pop(0)}

        oracle.populate_space = populate


def isolate(search: Any, make_fit: Callable[[], Any], validation_ds: Any) -> None:  # noqa: ANN401
    """Every trial starts as if first in its process: seed set again, a fresh fit dataset.

    Fresh, because a shuffled dataset's order depends on how many times it was iterated before;
    the validation slice is not shuffled, so its (cached) dataset is shared by all trials.
    """
    original = search.run_trial

    def run_trial(trial: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: ANN401
        training.set_seed()
        kwargs["callbacks"] = [training.slice_validation(validation_ds), training.early_stopping()]
        return original(trial, make_fit(), *args[1:], **kwargs)

    search.run_trial = run_trial


def group_result(
    indices: list[int],
    trials: list[dict[str, Any]],
    defaults: dict[str, Any] | None,
    searched: bool,
    **extra: Any,
) -> dict[str, Any]:
    """What a group hands the fan-in: its trials under their global index (``trials`` in run order)."""
    if searched and len(indices) != len(trials):
        raise ValueError(f"{len(trials)} trials ran for {len(indices)} planned")
    indexed = [{**t, "index": i} for i, t in zip(indices, trials, strict=False)]
    return {"trials": indexed, "defaults": defaults, "searched": searched, **extra}


def read_results(texts: list[str], folder: Path, groups: int, stage: str) -> list[dict[str, Any]]:
    """Each group's result: from the collected strings, else from the groups' files on the volume."""
    if not texts:
        texts = []
        for g in range(groups):
            path = folder / group_dir_name(g) / RESULT_FILE
            try:
                texts.append(path.read_text())
            except OSError as e:
                raise StageError(stage, str(path), f"trial group {g}'s result is missing: {e}") from e
    if len(texts) != groups:
        raise StageError(stage, None, f"{len(texts)} trial group results for {groups} groups")
    results = []
    for g, text in enumerate(texts):
        try:
            results.append(json.loads(text))
        except ValueError as e:
            raise StageError(stage, None, f"trial group result {g} is not JSON: {e}") from e
    return results


def merge(results: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """All groups' trials in trial-index order (``trial`` renumbered to it), and the defaults' values."""
    trials = sorted((t for r in results for t in r.get("trials", [])), key=lambda t: t["index"])
    width = len(str(max(len(trials), 1)))
    merged = [
        {**{k: v for k, v in t.items() if k != "index"}, "trial": f"{t['index']:0{width}d}"} for t in trials
    ]
    defaults = next((r["defaults"] for r in results if r.get("defaults")), None)
    return merged, defaults


def fan_in(results: list[dict[str, Any]], seconds: float) -> TuneResult:
    """One search's result from its trial groups': the same trials, the same choice."""
    if not any(r.get("searched") for r in results):  # tuning off: every group took the defaults
        return TuneResult(dict(results[0].get("best", {})), [], None, False, seconds)
    trials, defaults = merge(results)
    scored = [t for t in trials if t["val_loss"] is not None]
    if not scored:
        raise StageError(names.STAGE_TUNE, None, f"no trial produced a finite val_loss: {trials}")
    best = choose(scored, defaults)  # in index order: a tie goes to the lower index, as in one search
    budget: dict[str, Any] = next((r["budget"] for r in results if r.get("budget")), {})
    return TuneResult(best["values"], trials, best["val_loss"], True, seconds, budget)


def best_of_groups(
    texts: list[str], best_dir: Path, *, storage_root: str, run_id: str, groups: int
) -> tuple[dict[str, Any], dict[str, float]]:
    """The ``tune_best`` stage: the groups' results (``texts``; empty: their files) to one tune result.

    Writes ``best_dir`` (the ``best_hyperparameters`` artifact) and, searched, ``trials.json`` in
    the tune stage directory, as one tune task does. Returns the artifact's metadata and the
    summary's metrics (``tune``'s, and ``trial_groups``).
    """
    stage = names.STAGE_TUNE_BEST
    folder = storage.stage_dir(storage_root, run_id, STAGE_DIR)
    results = read_results(list(texts), folder, groups, stage)
    result = fan_in(results, max((float(r.get("seconds", 0.0)) for r in results), default=0.0))
    meta: dict[str, Any] = {}
    if result.searched:
        out = storage.stage_dir(storage_root, run_id, names.STAGE_TUNE)
        with storage.atomic_dir(out, stage) as scratch:
            (scratch / TRIALS_FILE).write_text(json.dumps(result.trials, indent=2, sort_keys=True))
        meta["tuner_dir"] = str(out)
        meta["trial_groups"] = [str(folder / group_dir_name(g)) for g in range(groups)]
    write_hyperparameters(best_dir, result.best, result.trials)
    meta.update(result.metadata())
    return meta, {**result.metrics(), "trial_groups": float(groups)}
