"""Tune logic: keras-tuner search over the user module's hyperparameter space.

Each trial builds the user module's model with that trial's values, trains ``steps`` steps at
``batch_size`` on the transformed train split and is scored by ``val_loss`` on the eval split
(at most ``defaults.EVAL_STEPS`` batches of it, so a trial's validation cost does not grow
with the data). The best values are written as JSON (TFX Tuner's ``best_hyperparameters.txt``,
through ``hyperparameters``, which train reads with). What a trial shares with train — the
datasets, the label transform, building the model, the seed — is ``training``.

The label is the ``label`` parameter's column (transform's label contract says its task and
classes); module functions that take a context get it (``training.module_context``).

Values given in the ``hyperparameters`` JSON string are fixed during the search (keras-tuner
``hp.Fixed``), so a user can pin, say, the learning rate and search the rest. With tuning
off, the module's ``default_hyperparameters()`` updated by that JSON are the result.
"""

from __future__ import annotations

import dataclasses
import difflib
import gc
import json
import math
import time
from pathlib import Path
from typing import Any

from components import defaults, names
from components.errors import StageError, stage_error_in
from components.lib import bounds, training, tuner_progress, user_module
from components.lib.transform_output import open_transform_output, read_label_info, transformed_files

STAGE = names.STAGE_TUNE
TUNERS = ("random", "bayesian", "hyperband")
PROJECT_NAME = "kubetfx_tuner"
HYPERBAND_MAX_EPOCHS = 3  # a full Hyperband trial = 3 epochs of steps/3 steps = `steps` steps


@dataclasses.dataclass
class TuneResult:
    """The chosen hyperparameters and, when searched, every trial's values and val_loss."""

    best: dict[str, Any]
    trials: list[dict[str, Any]]
    best_val_loss: float | None
    searched: bool
    seconds: float

    def metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"hyperparameters": self.best, "searched": self.searched}
        if self.searched:
            meta["trials"] = len(self.trials)
            meta["best_val_loss"] = self.best_val_loss
        return meta


def parse_overrides(hyperparameters: str, known: dict[str, Any] | None, location: str) -> dict[str, Any]:
    """The ``hyperparameters`` JSON object string (empty: none); unknown names are an error."""
    if not hyperparameters.strip():
        return {}
    try:
        values = json.loads(hyperparameters)
    except ValueError as e:
        raise StageError(STAGE, None, f"hyperparameters {hyperparameters!r} are not valid JSON: {e}") from e
    if not isinstance(values, dict):
        raise StageError(STAGE, None, f"hyperparameters {hyperparameters!r} must be a JSON object")
    if known is not None:
        unknown = sorted(set(values) - set(known))
        if unknown:
            close = difflib.get_close_matches(unknown[0], list(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise StageError(
                STAGE,
                location,
                f"hyperparameters {unknown} are not among the module's {sorted(known)}{hint}",
            )
    return values


def _default_values(module: Any, context: Any) -> dict[str, Any]:
    fn = user_module.require(module, user_module.DEFAULT_HYPERPARAMETERS, STAGE)
    values = user_module.call(fn, context=context)
    if not isinstance(values, dict):
        raise StageError(
            STAGE,
            user_module.module_location(module),
            f"{user_module.DEFAULT_HYPERPARAMETERS} must return a dict, got {type(values).__name__}",
        )
    return values


def _space_kinds(space: Any, context: Any) -> dict[str, Any] | None:
    """{name: kind} of the module's search space (None when building it fails: the search says why)."""
    import keras_tuner as kt

    hp = kt.HyperParameters()
    try:
        user_module.call(space, hp, context=context)
    except Exception:  # noqa: BLE001 (the trial's build reports it with the module's name)
        return None
    return bounds.space_kinds(hp)


def _make_tuner(kind: str, build: Any, hp: Any, trials: int, work_dir: Path) -> Any:
    import keras_tuner as kt

    common = dict(
        hypermodel=build,
        objective="val_loss",
        hyperparameters=hp,
        tune_new_entries=True,
        directory=str(work_dir),
        project_name=PROJECT_NAME,
        overwrite=True,
        seed=training.SEED,
        max_consecutive_failed_trials=1,  # a failing build is the user's bug: report it at once
    )
    if kind == "random":
        return kt.RandomSearch(max_trials=trials, **common)
    if kind == "bayesian":
        try:
            return kt.BayesianOptimization(max_trials=trials, **common)
        except ImportError as e:  # keras-tuner's Gaussian process needs scikit-learn
            raise StageError(
                STAGE,
                None,
                f"tuner 'bayesian' is unavailable in this image ({e}); use 'random' or 'hyperband'",
            ) from e
    tuner = kt.Hyperband(max_epochs=HYPERBAND_MAX_EPOCHS, factor=3, **common)
    tuner.oracle.max_trials = trials  # Hyperband has no max_trials argument; the oracle honours it
    return tuner


def run_tune(
    transformed_dir: Path,
    graph_dir: Path,
    work_dir: Path | None,
    *,
    module_file: str,
    storage_root: str,
    tuner: str,
    trials: int,
    steps: int,
    batch_size: int,
    enabled: bool,
    hyperparameters: str,
    label: str,
) -> TuneResult:
    """Search (or, disabled, take the defaults); ``work_dir`` holds keras-tuner's project files."""
    start = time.perf_counter()
    module = user_module.load_user_module(module_file, storage_root, STAGE)
    location = user_module.module_location(module)
    # The functions this run needs, before any work.
    user_module.require(
        module, user_module.HYPERPARAMETER_SPACE if enabled else user_module.DEFAULT_HYPERPARAMETERS, STAGE
    )
    tft_output = open_transform_output(graph_dir, STAGE)
    info = read_label_info(graph_dir, label, STAGE)
    context = training.module_context(tft_output, info, steps)
    if not enabled:
        values = _default_values(module, context)
        overrides = parse_overrides(hyperparameters, values, location)
        bounds.check_hyperparameters(overrides, bounds.value_kinds(values), STAGE, location)
        return TuneResult({**values, **overrides}, [], None, False, time.perf_counter() - start)

    kind = tuner.strip().lower()
    if kind not in TUNERS:
        raise StageError(STAGE, None, f"unknown tuner {tuner!r}; choose one of {list(TUNERS)}")
    for name, value in (("trials", trials), ("steps", steps), ("batch_size", batch_size)):
        if value <= 0:
            raise StageError(STAGE, None, f"{name} must be positive, got {value}")
    counts = {"tuner_trials": trials, "tuner_steps": steps}
    batch_size = bounds.at_start(STAGE, counts, batch_size, context.train_rows, len(context.schema.feature))
    if work_dir is None:
        raise ValueError("a search needs a work directory")
    space = user_module.require(module, user_module.HYPERPARAMETER_SPACE, STAGE)
    defaults_fn = user_module.optional(module, user_module.DEFAULT_HYPERPARAMETERS, STAGE)
    known = user_module.call(defaults_fn, context=context) if defaults_fn is not None else None
    overrides = parse_overrides(hyperparameters, known, location)
    bounds.check_hyperparameters(overrides, _space_kinds(space, context), STAGE, location)
    forward, _ = training.label_functions(module, STAGE, context)
    train_files = transformed_files(transformed_dir, names.TRAIN, STAGE)
    eval_files = transformed_files(transformed_dir, names.EVAL, STAGE)

    import keras_tuner as kt

    hp = kt.HyperParameters()
    for name, value in overrides.items():
        hp.Fixed(name, value)

    def build(trial_hp: Any) -> Any:
        try:
            values = user_module.call(space, trial_hp, context=context, stage=STAGE)
        except StageError:  # user code's own error: already one line naming the module and line
            raise
        except Exception as e:
            raise StageError(
                STAGE, location, f"{user_module.HYPERPARAMETER_SPACE} failed: {type(e).__name__}: {e}"
            ) from e
        values = dict(values) if isinstance(values, dict) else dict(trial_hp.values)
        # No steps_per_execution here (train uses it): the first trial is identical with it,
        # but from the second trial on the losses differ (measured on the workload: trials 2-4
        # changed and another trial won), so the search would no longer be the one TFX's Tuner
        # runs with the same module and seed.
        return training.build_user_model(module, values, tft_output, STAGE, context)

    training.set_seed()
    search = _make_tuner(kind, build, hp, trials, work_dir)
    tuner_progress.attach(search, trials, work_dir)  # a console line, HParams and trials.json per trial
    # The model's input names, to feed it exactly the transformed features it declares.
    probe = build(kt.HyperParameters.from_config(search.oracle.get_space().get_config()))
    inputs = training.model_input_names(probe)
    train_ds = training.make_dataset(
        train_files,
        tft_output,
        batch_size,
        label=label,
        label_fn=forward,
        input_names=inputs,
        shuffle=True,
        repeat=True,
        stage=STAGE,
        classification=info.is_classification,
    )
    # One pass over (at most EVAL_STEPS batches of) eval per validation, as a repeated dataset
    # of known length: Keras warns about a finite dataset of unknown cardinality running out.
    eval_rows = training.count_records(eval_files, limit=defaults.EVAL_STEPS * batch_size)
    if not eval_rows:
        raise StageError(STAGE, str(transformed_dir), "the eval split is empty")
    validation_steps = math.ceil(eval_rows / batch_size)
    eval_ds = (
        training.make_dataset(
            eval_files,
            tft_output,
            batch_size,
            label=label,
            label_fn=forward,
            input_names=inputs,
            stage=STAGE,
            classification=info.is_classification,
        )
        .take(validation_steps)
        .repeat()
    )
    per_epoch = max(1, steps // HYPERBAND_MAX_EPOCHS) if kind == "hyperband" else steps
    # keras-tuner runs gc.collect() twice per trial; frozen, the objects of the imports and the
    # earlier stages (millions in a warm process) are not traversed again: ~0.4 s per trial.
    gc.freeze()
    try:
        search.search(
            train_ds,
            steps_per_epoch=per_epoch,
            epochs=HYPERBAND_MAX_EPOCHS if kind == "hyperband" else 1,
            validation_data=eval_ds,
            validation_steps=validation_steps,
            verbose=0,
        )
    except StageError:
        raise
    except Exception as e:  # keras-tuner stops the search when a trial fails; name the module
        cause = stage_error_in(e)
        if cause is not None:
            raise StageError(cause.stage, cause.path, cause.problem) from e
        raise StageError(STAGE, location, f"tuning failed: {type(e).__name__}: {e}") from e
    finally:
        gc.unfreeze()

    done = []
    for trial_id, trial in sorted(search.oracle.trials.items()):
        score = trial.score
        done.append(
            {
                "trial": trial_id,
                "values": {
                    k: v for k, v in trial.hyperparameters.values.items() if not k.startswith("tuner/")
                },
                "val_loss": None if score is None or not math.isfinite(score) else float(score),
                "status": str(trial.status),
            }
        )
    scored = [t for t in done if t["val_loss"] is not None]
    if not scored:
        raise StageError(STAGE, location, f"no trial produced a finite val_loss: {done}")
    best_trial = min(scored, key=lambda t: t["val_loss"])
    return TuneResult(
        best=best_trial["values"],
        trials=done,
        best_val_loss=best_trial["val_loss"],
        searched=True,
        seconds=time.perf_counter() - start,
    )
