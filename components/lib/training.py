"""Fitting the user module's Keras model on transformed examples: what tune and train share.

Both stages build the model with the user module's ``build_model``, feed it batches of TFT's
transformed examples (only the inputs the model declares), learn the label (the ``label``
parameter's column) as the module's optional ``label_transform`` makes it, and seed Keras the
same way — so a trial in tune and the final fit in train see the same data in the same order for
the same hyperparameters. Module functions that take a context get the same
``user_module.ModuleContext`` in both (``module_context``: the label contract transform wrote).
For classification the label is the class id (int64); rows whose label is no class (-1) are
left out.

Neither stage reads the eval split while it fits or chooses: a validation slice of the train
split (``validation_fraction`` of its rows, by a seeded hash of each row's position — transform
writes rows in input order, so the same rows in tune, train and every run; the records' bytes
would not do: their feature order varies between transform runs) drives early stopping and the
tuner's objective. The fit's length follows the data (``fit_budget``); early stopping keeps the
best epoch's weights; tune's trials use the same rule, so a setting is scored as train fits it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from components.errors import StageError
from components.lib import user_module
from components.parameters import BY_NAME

SEED = 42
SHUFFLE_BUFFER = 10_000
HOLDOUT_BUCKETS = 10_000  # a row is in the validation slice when its hash bucket < fraction * this
HOLDOUT_SALT = "kubetfx-validation-"  # hashed with the row's position: which rows, fixed by this
MIN_EPOCHS = 3  # big tables: a 1,000-step budget is about one epoch of 32k rows, still improving
MAX_BUDGET_FACTOR = 10  # but no fit runs more than this many times its step budget (1M rows: 10k steps)
MIN_VALIDATION_ROWS = 50  # a smaller share is raised to hold out this many rows (at most half the split)
# Epochs without a lower validation loss before the fit stops. A slice of ~100 rows is noisy: with
# 5 the reference workload stopped at epoch 15 of 40 (best 10), still falling: MAE 1,908 vs 1,575.
PATIENCE = 10
MAX_STEPS_PER_EXECUTION = 100  # see steps_per_execution()
ROUND_EPOCHS_ABOVE = 100  # longer epochs are rounded up to a multiple of 25 steps (see fit_budget)
FIT, VALIDATION = "fit", "validation"  # the two parts of the train split
CACHE_ROWS = 200_000  # fit rows kept in memory (serialized) after the first epoch, up to this many
VALIDATION_FRACTION: float = BY_NAME["validation_fraction"].default  # the run parameters' defaults
MAX_EPOCHS: int = BY_NAME["max_epochs"].default


def set_seed() -> None:
    """Same data order and initial weights on every run with the same inputs."""
    import keras

    keras.utils.set_random_seed(SEED)


def module_context(tft_output: Any, info: Any, budget: Budget | None = None) -> user_module.ModuleContext:
    """The context module functions get in tune and train, from the label contract (``label.LabelInfo``).

    With a ``budget``: ``train_rows`` are the rows the model is fit on (the train split minus the
    validation slice), ``steps`` the most steps the fit runs, ``epochs`` its most epochs.
    """
    return user_module.ModuleContext(
        label=info.name,
        task=info.task,
        classes=tuple(info.classes),
        schema=tft_output.raw_metadata.schema,
        label_stats=dict(info.stats),
        train_rows=budget.fit_rows if budget else info.stats.get("count"),
        steps=budget.steps if budget else None,
        validation_rows=budget.validation_rows if budget else None,
        epochs=budget.epochs if budget else None,
    )


# --- The validation slice and the fit's budget. -----------------------------------------------
def check_validation_fraction(fraction: float, stage: str) -> None:
    """A share of the train split strictly between 0 and 0.5."""
    if not (isinstance(fraction, int | float) and 0.0 < fraction <= 0.5):
        raise StageError(
            stage, None, f"validation_fraction must be above 0 and at most 0.5, got {fraction!r}"
        )


def in_validation(positions: Any, fraction: float) -> Any:
    """Whether the rows at ``positions`` (in the train split, from 0) are in the validation slice.

    FarmHash of the salted position, bucketed: the same rows on every run and platform, spread
    over the split whatever order the data came in.
    """
    import tensorflow as tf

    cut = max(1, round(fraction * HOLDOUT_BUCKETS))
    keys = tf.strings.join([HOLDOUT_SALT, tf.strings.as_string(positions)])
    return tf.strings.to_hash_bucket_fast(keys, HOLDOUT_BUCKETS) < cut


def _records(files: list[str]) -> Any:
    import tensorflow as tf

    return tf.data.TFRecordDataset(files, compression_type="GZIP")


def holdout_share(fraction: float, rows: int) -> float:
    """``fraction`` raised to hold out MIN_VALIDATION_ROWS rows (means over fewer are noise), at most 0.5."""
    return min(0.5, max(fraction, MIN_VALIDATION_ROWS / rows)) if rows else fraction


def count_rows(files: list[str]) -> int:
    """How many records the train split's files hold (one pass)."""
    import tensorflow as tf

    return int(
        _records(files).batch(8192).reduce(tf.constant(0, tf.int64), lambda n, r: n + tf.size(r, tf.int64))
    )


def split_counts(rows: int, fraction: float) -> tuple[int, int]:
    """(fit rows, validation rows) of a split of ``rows`` rows: the hash of every position, at once."""
    import tensorflow as tf

    held = int(tf.reduce_sum(tf.cast(in_validation(tf.range(rows, dtype=tf.int64), fraction), tf.int64)))
    return rows - held, held


@dataclasses.dataclass(frozen=True)
class Budget:
    """How long a fit may run and on which rows: the same rule in a tune trial and in train."""

    validation_fraction: float
    fit_rows: int
    validation_rows: int
    batch_size: int
    steps_per_epoch: int
    epochs: int  # the most; early stopping may end the fit sooner
    validation_batch: int
    validation_steps: int

    @property
    def steps(self) -> int:
        return self.steps_per_epoch * self.epochs

    def document(self) -> dict[str, Any]:
        """What the outputs' metadata record about the slice and the budget."""
        return {
            **dataclasses.asdict(self),
            "max_steps": self.steps,
            "holdout": f"rows of the train split whose position, salted {HOLDOUT_SALT!r}, hashes "
            f"(FarmHash) to a bucket below {self.validation_fraction} * {HOLDOUT_BUCKETS}",
        }


def fit_budget(
    files: list[str], fraction: float, batch_size: int, step_budget: int, max_epochs: int, stage: str
) -> Budget:
    """Whole epochs of the fit rows: as many as ``step_budget`` steps hold, in [MIN_EPOCHS, max_epochs].

    At most MAX_BUDGET_FACTOR x ``step_budget`` steps in all; ``fraction`` raised by
    ``holdout_share``; epochs above ROUND_EPOCHS_ABOVE steps rounded up to a multiple of 25.
    """
    check_validation_fraction(fraction, stage)
    if max_epochs <= 0:
        raise StageError(stage, None, f"max_epochs must be positive, got {max_epochs}")
    rows = count_rows(files)
    fraction = holdout_share(fraction, rows)
    fit_rows, validation_rows = split_counts(rows, fraction)
    if not fit_rows or not validation_rows:
        raise StageError(
            stage,
            str(files[0]) if files else None,
            f"the train split's {fit_rows + validation_rows:,} rows leave {fit_rows:,} to fit and "
            f"{validation_rows:,} to validate (validation_fraction={fraction}): both must be non-empty",
        )
    steps_per_epoch = math.ceil(fit_rows / batch_size)
    if steps_per_epoch > ROUND_EPOCHS_ABOVE:
        steps_per_epoch = math.ceil(steps_per_epoch / 25) * 25
    epochs = min(max_epochs, max(MIN_EPOCHS, step_budget // steps_per_epoch))
    ceiling = MAX_BUDGET_FACTOR * step_budget
    if epochs * steps_per_epoch > ceiling:  # very big data: fewer epochs, or part of one
        epochs = max(1, ceiling // steps_per_epoch)
        steps_per_epoch = min(steps_per_epoch, ceiling)
    validation_batch = min(4096, validation_rows)
    return Budget(
        validation_fraction=fraction,
        fit_rows=fit_rows,
        validation_rows=validation_rows,
        batch_size=batch_size,
        steps_per_epoch=steps_per_epoch,
        epochs=epochs,
        validation_batch=validation_batch,
        validation_steps=math.ceil(validation_rows / validation_batch),
    )


def steps_per_execution(*step_counts: int) -> int:
    """The most steps Keras may run per call into TensorFlow without changing what is computed.

    Keras runs ``steps_per_execution`` steps inside one ``tf.function`` call, saving its
    per-step Python overhead (1,000 steps at batch 32: 2.6 s -> 1.3 s, identical losses). But
    Keras 3 rounds every fit and validation loop UP to a multiple of it, so the value must
    divide every step count the loops use: their greatest common divisor, at most
    MAX_STEPS_PER_EXECUTION (the largest divisor of it below that).
    """
    g = 0
    for n in step_counts:
        g = math.gcd(g, int(n))
    limit = min(g, MAX_STEPS_PER_EXECUTION)
    return max((d for d in range(1, limit + 1) if g % d == 0), default=1)


def fit_datasets(
    files: list[str],
    tft_output: Any,
    budget: Budget,
    *,
    label: str,
    label_fn: Any,
    stage: str,
    input_names: list[str],
    classification: bool,
    fit_only: bool = False,
) -> tuple[Any, Any]:
    """(fit batches, shuffled and repeated; validation batches, one pass) of the train split.

    The validation batches go to ``slice_validation``; ``fit_only``: (fit batches, None).
    """
    common = dict(label=label, label_fn=label_fn, stage=stage, input_names=input_names)
    common.update(classification=classification, holdout_fraction=budget.validation_fraction)
    small = budget.fit_rows <= CACHE_ROWS
    fit = make_dataset(
        files, tft_output, budget.batch_size, shuffle=True, repeat=True, part=FIT, cache_rows=small, **common
    )
    if fit_only:  # a fresh fit dataset for another trial (``tune_groups.isolate``)
        return fit, None
    return fit, make_dataset(files, tft_output, budget.validation_batch, part=VALIDATION, **common).cache()


def fit_steps_per_execution(model: Any, budget: Budget) -> None:
    """Let ``model`` run many steps per call (dividing the epoch's), unless its module chose a value."""
    steps = steps_per_execution(budget.steps_per_epoch)
    if steps > 1 and getattr(model, "steps_per_execution", None) == 1:
        model.steps_per_execution = steps  # read when Keras first builds its train/test functions


def slice_validation(validation_ds: Any) -> Any:
    """A Keras callback writing each epoch's ``val_loss`` on the validation slice into its logs.

    Keras's own validation value (compiled loss plus regularization, mean over the rows), without
    an ``evaluate()`` per epoch (its per-call overhead and a traced test function per trial showed
    as ~4 s of the reference workload's search in a profile). List it first: early stopping, the
    tuner and TensorBoard read what it writes.
    """
    import keras
    import tensorflow as tf

    batches = [(x, y) for x, y in validation_ds]
    rows = sum(int(tf.shape(y)[0]) for _, y in batches)

    class SliceValidation(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.batches = batches

        def on_train_begin(self, logs: Any = None) -> None:
            model = self.model
            compute = getattr(model, "_compute_loss", None) or model.compute_loss

            def loss(x: Any, y: Any) -> Any:  # eager: tracing it per trial costs more than it saves
                return compute(x=x, y=y, y_pred=model(x, training=False), training=False)

            self._loss = loss

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            if logs is None or not rows:
                return
            total = sum(float(self._loss(x, y)) * int(tf.shape(y)[0]) for x, y in self.batches)
            logs["val_loss"] = total / rows

    return SliceValidation()


def early_stopping() -> Any:
    """Stop after PATIENCE epochs without a lower validation loss; keep the best epoch's weights."""
    import keras

    return keras.callbacks.EarlyStopping(monitor="val_loss", patience=PATIENCE, restore_best_weights=True)


def label_functions(module: Any, stage: str, context: Any = None) -> tuple[Any, Any]:
    """The module's label transform and its inverse (identity when it defines neither)."""
    forward = user_module.optional(module, user_module.LABEL_TRANSFORM, stage)
    inverse = user_module.optional(module, user_module.LABEL_INVERSE_TRANSFORM, stage)
    if (forward is None) != (inverse is None):
        raise StageError(
            stage,
            user_module.module_location(module),
            f"define both {user_module.LABEL_TRANSFORM!r} and "
            f"{user_module.LABEL_INVERSE_TRANSFORM!r}, or neither",
        )
    identity = lambda x: x  # noqa: E731
    if forward is None or inverse is None:
        return identity, identity
    return (
        lambda x: user_module.call(forward, x, context=context, stage=stage),
        lambda x: user_module.call(inverse, x, context=context, stage=stage),
    )


def build_user_model(
    module: Any, hparams: dict[str, Any], tft_output: Any, stage: str, context: Any = None
) -> Any:
    """The module's ``build_model``, its failures reported against the module file."""
    build = user_module.require(module, user_module.BUILD_MODEL, stage)
    # An exception in build_model: a StageError naming the file, the function and the line.
    model = user_module.call(build, hparams, tft_output, context=context, stage=stage)
    if model is None or not hasattr(model, "fit"):
        raise StageError(
            stage,
            user_module.module_location(module),
            f"{user_module.BUILD_MODEL} must return a compiled Keras model",
        )
    return model


def model_input_names(model: Any) -> list[str]:
    """The transformed features a Keras model consumes: its input dict's keys, else its Inputs' names.

    A functional model built on a dict of inputs matches what it is fed by the dict's keys, so
    those are the feature names; the ``keras.Input`` names may differ (Keras allows no ``/`` in
    them, a feature name may have one: ``identifiers.safe_name``). A model built on a list
    matches by Input name.
    """
    try:
        structure = model.input
    except (AttributeError, ValueError):  # a subclassed model that was never called
        structure = None
    if isinstance(structure, dict) and structure:
        return list(structure)
    return [t.name.split(":")[0] for t in model.inputs]


def make_dataset(
    files: list[str],
    tft_output: Any,
    batch_size: int,
    *,
    label: str,
    label_fn: Any,
    stage: str,
    input_names: list[str] | None = None,
    shuffle: bool = False,
    repeat: bool = False,
    classification: bool = False,
    part: str | None = None,
    holdout_fraction: float = 0.0,
    cache_rows: bool = False,
) -> Any:
    """(features, label) batches of transformed examples; label as ``label_fn`` makes it, [batch, 1].

    ``classification``: the label is the class id (int64, [batch]); rows without a class (-1)
    are dropped. ``part``: FIT or VALIDATION, the rows of that part of the train split
    (``in_validation`` with ``holdout_fraction``); None: every row of ``files``. ``cache_rows``:
    keep that part's records in memory after the first epoch (small splits: ``CACHE_ROWS``).
    """
    import tensorflow as tf

    spec = tft_output.transformed_feature_spec()
    if label not in spec:
        raise StageError(stage, None, f"transformed examples have no label {label!r}")
    ds = _records(files)
    if part is not None:  # before shuffling: the positions are those in the split's files
        held_out = part == VALIDATION
        ds = ds.enumerate().filter(lambda i, _: tf.equal(in_validation(i, holdout_fraction), held_out))
        ds = ds.map(lambda _, r: r)
        if repeat and cache_rows:  # filter (and read) once, not every epoch
            ds = ds.cache()
    if shuffle:
        ds = ds.shuffle(SHUFFLE_BUFFER, seed=SEED, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size)

    def parse(records: Any) -> Any:
        features = tf.io.parse_example(records, spec)
        if classification:
            y = tf.reshape(tf.cast(features.pop(label), tf.int64), [-1])
            known = y >= 0
            features = {
                k: tf.boolean_mask(v, known) if isinstance(v, tf.Tensor) else v for k, v in features.items()
            }
            y = tf.boolean_mask(y, known)
        else:
            y = tf.reshape(tf.cast(features.pop(label), tf.float32), [-1, 1])
        if input_names is not None:
            features = {k: features[k] for k in input_names}
        return features, label_fn(y)

    return ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
