"""Gradient-boosted trees on the transformed features, served by plain TensorFlow ops.

The learner is YDF's (``ydf``, the C++ engine TensorFlow Decision Forests wraps): a
gradient-boosted trees model fit on the fit rows of the train split, early-stopped on the
validation slice (``training``'s; never the eval split), on the same transformed features the
Keras families read: z-scored numbers as NUMERICAL, vocabulary ids as CATEGORICAL. A tree does
not care that a number was z-scored (a split on a monotone transform is the same split), so the
transformed features lose nothing against the raw ones, and the served model keeps the one TFT
transform layer every family shares.

The fitted forest is then compiled into a ``tf.Module`` (``Forest``) made of standard TensorFlow
ops only — gathers, comparisons, a sum — so its SavedModel needs no custom op: TF-DF's SavedModels
need TF-DF's inference ops in every process that loads them (TF Serving has them built in, KServe's
TF runtime image and TFMA's Beam workers do not). Here evaluate (TFMA and the native engine),
push, the serving checks, the benchmark and any TF Serving load it as they load the Keras
families. ``Forest`` predicts what YDF predicts (a test compares them).

How a tree is evaluated: every node of every tree is a row of flat arrays (feature, threshold,
positive and negative child; a leaf points at itself), each (example, tree) pair starts at its
tree's root and takes ``depth`` steps; then the leaves' values are summed per output with YDF's
initial predictions. Numerical conditions are ``x >= threshold``; a categorical condition is a
row of a mask table indexed by the vocabulary id (ids YDF never saw, or saw too rarely, take the
mask of its out-of-dictionary item).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from components.errors import StageError

LABEL_COLUMN = "__kubetfx_label__"
NUM_TREES = 500  # most trees (iterations); early stopping on the validation slice usually stops sooner
MAX_DEPTH = 6  # YDF's default
SHRINKAGE = 0.1  # YDF's default
LOOK_AHEAD = 30  # trees without a lower validation loss before the fit stops (YDF's default)
MIN_VOCAB_FREQUENCY = 1  # keep every category seen in the fit rows (YDF's default 5 drops rare ones)
READ_BATCH = 8192


@dataclasses.dataclass
class Fitted:
    """A forest and what its fit did (trees kept, validation loss of YDF's own loss)."""

    forest: Any  # Forest
    trees: int
    validation_loss: float
    seconds: float
    model: Any = None  # the YDF model itself, when ``fit`` was asked to keep it


def read_part(files: list[str], tft_output: Any, part: str | None, fraction: float, **common: Any) -> tuple:
    """({feature: numpy column}, labels) of a part of a split (``training.FIT``/``VALIDATION``; None: all).

    ``common``: ``training.make_dataset``'s keywords (label, label_fn, stage, input_names, ...).
    """
    import numpy as np

    from components.lib import training

    ds = training.make_dataset(files, tft_output, READ_BATCH, part=part, holdout_fraction=fraction, **common)
    columns: dict[str, list[Any]] = {}
    labels = []
    for features, y in ds:
        labels.append(y.numpy().reshape(-1))
        for name, value in features.items():
            columns.setdefault(name, []).append(value.numpy().reshape(-1))
    return {k: np.concatenate(v) for k, v in columns.items()}, np.concatenate(labels) if labels else None


def fit(
    fit_rows: tuple[dict[str, Any], Any],
    validation_rows: tuple[dict[str, Any], Any],
    *,
    classes: int,
    seed: int,
    stage: str,
    where: str | None = None,
    keep_model: bool = False,
) -> Fitted:
    """Fit a GBT model (``classes`` 0: regression on the given label scale) and compile it.

    Regression learns the label as given (the module's ``label_transform`` of it: standardized,
    or log-scale) with YDF's default squared error — not the networks' absolute error: with the
    absolute error's sign gradients the trees stopped after ~25 and their eval MAE was 5-17 %
    higher on cars, diabetes and insurance (2.06 against 1.83, 48.3 / 47.6, 2,502 / 2,144).
    Classification learns the class ids (log likelihood).
    """
    import time

    import numpy as np
    import ydf

    start = time.perf_counter()
    (x_fit, y_fit), (x_val, y_val) = fit_rows, validation_rows
    if y_fit is None or not len(y_fit) or y_val is None or not len(y_val):
        raise StageError(stage, where, "gbt: the fit rows or the validation slice are empty")
    features = []
    for name, column in x_fit.items():
        integer = np.issubdtype(column.dtype, np.integer)
        features.append(ydf.Feature(name, ydf.Semantic.CATEGORICAL if integer else ydf.Semantic.NUMERICAL))
    if classes:
        present = np.unique(y_fit)
        if len(present) < 2:
            raise StageError(stage, where, f"gbt: the fit rows hold {len(present)} class, 2 are needed")
        y_fit, y_val = y_fit.astype(str), y_val.astype(str)
    learner = ydf.GradientBoostedTreesLearner(
        label=LABEL_COLUMN,
        task=ydf.Task.CLASSIFICATION if classes else ydf.Task.REGRESSION,
        features=features,
        include_all_columns=False,
        loss="DEFAULT",  # squared error; binomial / multinomial log likelihood
        num_trees=NUM_TREES,
        max_depth=MAX_DEPTH,
        shrinkage=SHRINKAGE,
        early_stopping="LOSS_INCREASE",
        early_stopping_num_trees_look_ahead=LOOK_AHEAD,
        min_vocab_frequency=MIN_VOCAB_FREQUENCY,
        random_seed=seed,
    )
    model = learner.train({**x_fit, LABEL_COLUMN: y_fit}, valid={**x_val, LABEL_COLUMN: y_val}, verbose=0)
    forest = compile_forest(model, list(x_fit), classes)
    loss = model.validation_loss()
    return Fitted(
        forest=forest,
        trees=model.num_trees() // max(1, model.num_trees_per_iteration()),
        validation_loss=float(loss) if loss is not None else math.nan,
        seconds=time.perf_counter() - start,
        model=model if keep_model else None,
    )


def _flatten(model: Any, positions: dict[int, int], categories: dict[int, dict[int, int]]) -> dict[str, Any]:
    """Every tree's nodes as rows of flat arrays (see the module docstring); raises on other conditions."""
    from ydf.model.tree import condition as cond_lib
    from ydf.model.tree import node as node_lib

    rows: dict[str, list[Any]] = {k: [] for k in ("feature", "threshold", "mask_row", "pos", "neg", "leaf")}
    masks: list[tuple[int, set[int]]] = []
    roots, depth = [], 0

    def add(node: Any, level: int) -> int:
        nonlocal depth
        i = len(rows["pos"])
        for k in rows:
            rows[k].append(0)
        rows["pos"][i] = rows["neg"][i] = i  # a leaf stays where it is
        rows["mask_row"][i] = -1
        if isinstance(node, node_lib.Leaf):
            rows["leaf"][i] = float(node.value.value)
            depth = max(depth, level)
            return i
        c = node.condition
        rows["feature"][i] = positions[c.attribute]
        if isinstance(c, cond_lib.NumericalHigherThanCondition):
            rows["threshold"][i] = float(c.threshold)
        elif isinstance(c, cond_lib.CategoricalIsInCondition):
            rows["mask_row"][i] = len(masks)
            masks.append((c.attribute, set(int(m) for m in c.mask)))
        else:
            raise ValueError(f"gbt: a {type(c).__name__} cannot be compiled")
        rows["pos"][i] = add(node.pos_child, level + 1)
        rows["neg"][i] = add(node.neg_child, level + 1)
        return i

    for tree in model.get_all_trees():
        roots.append(add(tree.root, 0))
    return {**rows, "roots": roots, "depth": depth, "masks": masks}


def _mask_table(masks: list[tuple[int, set[int]]], categories: dict[int, dict[int, int]]) -> tuple[Any, int]:
    """[categorical conditions x width] booleans: which vocabulary ids go to the positive child.

    Column ``width - 1`` stands for every id YDF has no item for (its out-of-dictionary item, 0).
    """
    import numpy as np

    width = 1 + max((max(d, default=-1) + 1 for d in categories.values()), default=0)
    table = np.zeros((max(1, len(masks)), width), dtype=bool)
    for row, (attribute, positive) in enumerate(masks):
        items = categories[attribute]
        table[row, width - 1] = 0 in positive
        for vocab_id in range(width - 1):
            table[row, vocab_id] = items.get(vocab_id, 0) in positive
    return table, width


def compile_forest(model: Any, names: list[str], classes: int) -> Any:
    """The YDF model as a ``Forest`` of TensorFlow ops over ``names`` (the transformed features)."""
    import numpy as np

    spec = model.data_spec()
    positions = {f.column_idx: names.index(f.name) for f in model.input_features()}
    categories: dict[int, dict[int, int]] = {}
    for column_idx in positions:
        column = spec.columns[column_idx]
        if column.HasField("categorical"):
            items = {k: v.index for k, v in column.categorical.items.items()}
            categories[column_idx] = {int(k): i for k, i in items.items() if k.lstrip("-").isdigit()}
    flat = _flatten(model, positions, categories)
    table, width = _mask_table(flat["masks"], categories)
    per_iteration = max(1, model.num_trees_per_iteration())
    tree_output = np.zeros((len(flat["roots"]), per_iteration), dtype=np.float32)
    tree_output[np.arange(len(flat["roots"])), np.arange(len(flat["roots"])) % per_iteration] = 1.0
    head = "regression"
    to_ours = None
    if classes:  # YDF's classes are our class ids as text, in YDF's own order
        ydf_classes = [int(c) for c in model.label_classes()]
        to_ours = np.zeros((len(ydf_classes), classes), dtype=np.float32)
        to_ours[np.arange(len(ydf_classes)), ydf_classes] = 1.0
        head = "binary" if per_iteration == 1 else "multiclass"
    return _forest_type()(
        names=names,
        arrays={
            "feature": np.asarray(flat["feature"], np.int32),
            "threshold": np.asarray(flat["threshold"], np.float32),
            "mask_row": np.asarray(flat["mask_row"], np.int32),
            "pos": np.asarray(flat["pos"], np.int32),
            "neg": np.asarray(flat["neg"], np.int32),
            "leaf": np.asarray(flat["leaf"], np.float32),
            "roots": np.asarray(flat["roots"], np.int32),
            "masks": table.reshape(-1),
            "tree_output": tree_output,
            "initial": np.asarray(model.initial_predictions(), np.float32).reshape(-1),
            **({"to_ours": to_ours} if to_ours is not None else {}),
        },
        depth=int(flat["depth"]),
        width=width,
        head=head,
    )


_FOREST_TYPE: list[Any] = []


def _forest_type() -> Any:
    """The ``Forest`` class (a ``tf.Module``), defined on first use: TensorFlow loads only then."""
    if _FOREST_TYPE:
        return _FOREST_TYPE[0]
    import tensorflow as tf

    class Forest(tf.Module):
        """A compiled forest: ``forest(features)`` -> [batch, 1] (regression) or [batch, K] probabilities.

        ``features``: {name: [batch] tensor}, the transformed features (extra keys ignored), as a
        Keras model of the other families is called; ``training`` is accepted and ignored.
        """

        def __init__(self, names: list[str], arrays: dict[str, Any], depth: int, width: int, head: str):
            super().__init__(name="gbt_forest")
            self.input_names = list(names)
            self.depth, self.width, self.head = depth, width, head
            self.tables = {k: tf.Variable(v, trainable=False, name=k) for k, v in arrays.items()}

        def __call__(self, features: dict[str, Any], training: bool = False) -> Any:
            t = self.tables
            x = tf.stack([tf.reshape(tf.cast(features[n], tf.float32), [-1]) for n in self.input_names], 1)
            node = tf.tile(tf.expand_dims(t["roots"], 0), [tf.shape(x)[0], 1])  # [batch, trees]
            for _ in range(self.depth):
                value = tf.gather(x, tf.gather(t["feature"], node), batch_dims=1)
                row = tf.gather(t["mask_row"], node)
                known = (value >= 0) & (value < self.width - 1)
                column = tf.where(known, tf.cast(value, tf.int32), self.width - 1)
                in_mask = tf.gather(t["masks"], tf.maximum(row, 0) * self.width + column)
                positive = tf.where(row >= 0, in_mask, value >= tf.gather(t["threshold"], node))
                node = tf.where(positive, tf.gather(t["pos"], node), tf.gather(t["neg"], node))
            raw = tf.matmul(tf.gather(t["leaf"], node), t["tree_output"]) + t["initial"]
            if self.head == "regression":
                return raw
            if self.head == "binary":
                p = tf.sigmoid(raw)
                probabilities = tf.concat([1.0 - p, p], axis=1)
            else:
                probabilities = tf.nn.softmax(raw, axis=1)
            return tf.matmul(probabilities, t["to_ours"])  # YDF's class order -> the class ids'

    _FOREST_TYPE.append(Forest)
    return Forest


def hyperparameters() -> dict[str, Any]:
    """The learner's settings, as train records them (the module's hyperparameters do not apply)."""
    return {
        "max_trees": NUM_TREES,
        "max_depth": MAX_DEPTH,
        "shrinkage": SHRINKAGE,
        "early_stopping_look_ahead": LOOK_AHEAD,
    }
