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
budget. ``merge`` puts the groups' trials back in index order, so the fan-in's choice (lowest
val_loss, the defaults kept within ``tune.DEFAULTS_MARGIN``, ties to the lower index) is the
one a single task makes.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from components import names
from components.errors import StageError
from components.lib import training

RESULT_FILE = "group_result.json"
SPLITTABLE = ("random",)


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


def isolate(search: Any, make_datasets: Callable[[], tuple[Any, Any]]) -> None:  # noqa: ANN401
    """Every trial starts as if first in its process: seed set again, fresh fit and validation data."""
    original = search.run_trial

    def run_trial(trial: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: ANN401
        training.set_seed()
        fit_ds, validation_ds = make_datasets()
        kwargs["callbacks"] = [training.slice_validation(validation_ds), training.early_stopping()]
        return original(trial, fit_ds, *args[1:], **kwargs)

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


STAGE_DIR = names.STAGE_TUNE_TRIALS
