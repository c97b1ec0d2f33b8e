"""Tune logic: keras-tuner search over the user module's hyperparameter space.

Each trial builds the user module's model with that trial's values and fits it as train will
(``training.fit_budget``: whole epochs over the train split minus its validation slice, ``steps``
worth, at least MIN_EPOCHS and at most ``max_epochs``; early stopping on the validation slice).
Its score is its best epoch's ``val_loss`` on that validation slice — never the eval split, on
which evaluate later blesses, so the blessing's figure is not the search's. The first trial is
the module's own ``default_hyperparameters`` (so the search can only pick something that beat
them on the validation slice); keras-tuner draws the rest with a fixed seed. The best values are
written as JSON (TFX Tuner's ``best_hyperparameters.txt``, through ``hyperparameters``, which
train reads with). What a trial shares with train — the datasets, the validation slice, the
budget rule, the label transform, building the model, the seed — is ``training``. Every trial
starts with the seed set again and fresh datasets (``tune_groups.isolate``): its score depends on
its values alone, not on the trials that ran before it, so a search split into parallel trial
groups (``tune_groups``: ``trial_group_stage`` here, ``best_of_groups`` there) picks what one task picks.

The label is the ``label`` parameter's column (transform's label contract says its task and
classes); module functions that take a context get it (``training.module_context``).

Values given in the ``hyperparameters`` JSON string are fixed during the search (keras-tuner
``hp.Fixed``), so a user can pin, say, the learning rate and search the rest. With tuning
off, the module's ``default_hyperparameters()`` updated by that JSON are the result.
"""

from __future__ import annotations

import contextlib
import difflib
import gc
import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from components import names
from components.errors import StageError, stage_error_in
from components.lib import bounds, storage, training, tune_groups, tuner_progress, user_module
from components.lib.hyperparameters import write_hyperparameters
from components.lib.transform_output import open_transform_output, read_label_info, transformed_files
from components.lib.tune_groups import TuneResult

STAGE = names.STAGE_TUNE
TUNERS = ("random", "bayesian", "hyperband")
PROJECT_NAME = "kubetfx_tuner"


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


def _defaults_first(search: Any, defaults: dict[str, Any] | None) -> dict[str, Any] | None:
    """Make the search's first trial the module's default values (fixed ones as fixed).

    keras-tuner's random and Bayesian oracles draw even their first trial at random; a search
    that never tried the module's own setting can return something worse than it. Hyperband
    schedules its own brackets and is left as it is.
    """
    import keras_tuner as kt

    oracle = search.oracle
    if not defaults or isinstance(oracle, kt.oracles.HyperbandOracle):
        return None
    original = oracle.populate_space
    pending = [True]

    def populate(trial_id: str) -> dict[str, Any]:
        if not pending:
            return original(trial_id)
        pending.clear()
        hps = oracle.hyperparameters.copy()
        for hp in hps.space:
            if hps.is_active(hp):
                fixed = isinstance(hp, kt.engine.hyperparameters.Fixed)
                hps.values[hp.name] = hp.value if fixed else defaults.get(hp.name, hp.default)
        first.update(hps.values)
        return {"status": kt.engine.trial.TrialStatus.RUNNING, "values": hps.values}

    first: dict[str, Any] = {}  # the values of the first trial, once made
    oracle.populate_space = populate
    return first


def _make_tuner(kind: str, build: Any, hp: Any, trials: int, work_dir: Path, max_epochs: int) -> Any:
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
    tuner = kt.Hyperband(max_epochs=max_epochs, factor=3, **common)
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
    validation_fraction: float = training.VALIDATION_FRACTION,
    max_epochs: int = training.MAX_EPOCHS,
    plan: tune_groups.Plan | None = None,
) -> TuneResult:
    """Search (or, disabled, take the defaults); ``work_dir`` holds keras-tuner's project files.

    ``steps``: a trial's step budget, counted in whole epochs as train counts its own
    (``training.fit_budget``); ``validation_fraction``: the share of the train split held out to
    score the trials (the same rows train stops early on). ``plan``: run only one trial group's
    share of the trial set (``tune_groups``); every trial starts as if first (``isolate``).
    """
    start = time.perf_counter()
    module = user_module.load_user_module(module_file, storage_root, STAGE)
    location = user_module.module_location(module)
    # The functions this run needs, before any work.
    user_module.require(
        module, user_module.HYPERPARAMETER_SPACE if enabled else user_module.DEFAULT_HYPERPARAMETERS, STAGE
    )
    tft_output = open_transform_output(graph_dir, STAGE)
    info = read_label_info(graph_dir, label, STAGE)
    if not enabled:
        context = training.module_context(tft_output, info)
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
    rows = info.stats.get("count")
    batch_size = bounds.at_start(STAGE, counts, batch_size, rows, len(tft_output.raw_metadata.schema.feature))
    if work_dir is None:
        raise ValueError("a search needs a work directory")
    train_files = transformed_files(transformed_dir, names.TRAIN, STAGE)
    budget = training.fit_budget(train_files, validation_fraction, batch_size, steps, max_epochs, STAGE)
    context = training.module_context(tft_output, info, budget)
    space = user_module.require(module, user_module.HYPERPARAMETER_SPACE, STAGE)
    defaults_fn = user_module.optional(module, user_module.DEFAULT_HYPERPARAMETERS, STAGE)
    known = user_module.call(defaults_fn, context=context) if defaults_fn is not None else None
    overrides = parse_overrides(hyperparameters, known, location)
    bounds.check_hyperparameters(overrides, _space_kinds(space, context), STAGE, location)
    forward, _ = training.label_functions(module, STAGE, context)

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
        # No steps_per_execution here (train uses it): Keras traces its multi-step loop (a
        # tf.while_loop) for the train and the test function of every trial, ~0.7 s each on the
        # reference workload, more than the per-step overhead it saves on a trial's ~300 steps.
        return training.build_user_model(module, values, tft_output, STAGE, context)

    training.set_seed()
    search = _make_tuner(kind, build, hp, trials, work_dir, budget.epochs)
    first = _defaults_first(search, known)
    if plan is not None:
        plan.apply(search, trials, first)  # the whole trial set drawn now; this group's share served
        if not plan.indices:  # more groups than trials: nothing for this one
            return TuneResult({}, [], None, True, time.perf_counter() - start, budget.document())
    shown = len(plan.indices) if plan is not None else trials
    tuner_progress.attach(search, shown, work_dir)  # a console line, HParams and trials.json per trial
    # The model's input names, to feed it exactly the transformed features it declares.
    probe = build(kt.HyperParameters.from_config(search.oracle.get_space().get_config()))

    def datasets(fit_only: bool = False) -> tuple[Any, Any]:
        return training.fit_datasets(
            train_files,
            tft_output,
            budget,
            label=label,
            label_fn=forward,
            stage=STAGE,
            input_names=training.model_input_names(probe),
            classification=info.is_classification,
            fit_only=fit_only,
        )

    fit_ds, validation_ds = datasets()
    # a trial's score does not depend on the trials before it
    tune_groups.isolate(search, lambda: datasets(fit_only=True)[0], validation_ds)
    _search(search, fit_ds, validation_ds, budget, location)
    done = _trials(search)
    scored = [t for t in done if t["val_loss"] is not None]
    if not scored:
        raise StageError(STAGE, location, f"no trial produced a finite val_loss: {done}")
    best_trial = tune_groups.choose(scored, first)
    return TuneResult(
        best=best_trial["values"],
        trials=done,
        best_val_loss=best_trial["val_loss"],
        searched=True,
        seconds=time.perf_counter() - start,
        budget=budget.document(),
    )


def tune_stage(
    examples_dir: Path, graph_dir: Path, best_dir: Path, *, run_id: str, **search: Any
) -> tuple[dict[str, Any], dict[str, float]]:
    """The ``tune`` stage: ``run_tune`` (``search``: its keyword arguments), its result in ``best_dir``.

    Searched, keras-tuner's files become the stage directory on the volume (``tuner_dir``) whole or
    not at all. Returns the ``best_hyperparameters`` artifact's metadata and the summary's metrics.
    """
    out = storage.stage_dir(search["storage_root"], run_id, STAGE) if search["enabled"] else None
    with _searched(examples_dir, graph_dir, out, STAGE, search) as (result, _):
        meta = {} if out is None else {"tuner_dir": str(out)}
    write_hyperparameters(best_dir, result.best, result.trials)
    return {**meta, **result.metadata()}, result.metrics()


def trial_group_stage(
    examples_dir: Path, graph_dir: Path, *, run_id: str, group: int, groups: int, **search: Any
) -> str:
    """The ``tune_trials`` stage: trial group ``group`` of ``groups`` (``tune_groups``), as JSON.

    ``search``: ``run_tune``'s keyword arguments; the caller has refused a split that cannot be
    made (``tune_groups.check``). Searched, the JSON is also ``RESULT_FILE`` in the group's
    directory on the volume, with keras-tuner's files.
    """
    stage = names.STAGE_TUNE_TRIALS
    plan = tune_groups.Plan(group, groups)
    out = None
    if search["enabled"]:
        out = storage.stage_dir(search["storage_root"], run_id, stage) / tune_groups.group_dir_name(group)
    with _searched(examples_dir, graph_dir, out, stage, search, plan) as (result, scratch):
        if scratch is None:  # tuning off: the defaults, no trials
            return json.dumps({"group": group, "searched": False, "best": result.best, "trials": []})
        doc = tune_groups.group_result(
            plan.indices,
            result.trials,
            plan.defaults,
            True,
            group=group,
            budget=result.budget,
            seconds=result.seconds,
        )
        text = json.dumps(doc, sort_keys=True)
        (scratch / tune_groups.RESULT_FILE).write_text(text)
    return text


@contextlib.contextmanager
def _searched(
    examples_dir: Path,
    graph_dir: Path,
    out: Path | None,
    stage: str,
    search: dict[str, Any],
    plan: tune_groups.Plan | None = None,
) -> Iterator[tuple[TuneResult, Path | None]]:
    """``run_tune`` with ``search``, and where its files went (None: tuning off, no directory).

    With ``out``: a scratch directory that becomes ``out`` once the ``with`` block succeeds.
    """
    if out is None:
        yield run_tune(examples_dir, graph_dir, None, **search), None
        return
    with storage.atomic_dir(out, stage) as scratch:
        yield run_tune(examples_dir, graph_dir, scratch, plan=plan, **search), scratch


def _search(search: Any, fit_ds: Any, validation_ds: Any, budget: training.Budget, location: str) -> None:
    """Run the trials: the train budget's epochs, early-stopped on the validation slice."""
    # keras-tuner runs gc.collect() twice per trial; frozen, the objects of the imports and the
    # earlier stages (millions in a warm process) are not traversed again: ~0.4 s per trial.
    # keras-tuner also saves a trial's weights at each epoch that improves its val_loss (~50 ms a
    # save: 2 s of the reference workload's search); nothing reads them (train fits its own
    # model), so the saving is switched off for the search and restored after it.
    from keras_tuner.src.engine import tuner_utils

    save = tuner_utils.SaveBestEpoch._save_model  # noqa: SLF001
    tuner_utils.SaveBestEpoch._save_model = lambda self: None  # noqa: SLF001
    gc.freeze()
    try:
        search.search(
            fit_ds,
            steps_per_epoch=budget.steps_per_epoch,
            epochs=budget.epochs,  # Hyperband sets each trial's own (up to max_epochs = this)
            # first: early stopping and keras-tuner's objective read the val_loss it writes
            callbacks=[training.slice_validation(validation_ds), training.early_stopping()],
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
        tuner_utils.SaveBestEpoch._save_model = save  # noqa: SLF001


def _trials(search: Any) -> list[dict[str, Any]]:
    """Every trial's values (without keras-tuner's own), score (its best epoch's val_loss) and status."""
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
    return done
