"""model_family: the default module's network, gradient-boosted trees, a linear model, or auto.

Each family trains on a tiny table and its SavedModel serves raw tf.Examples through
``serving_default`` in a fresh Python process that loads it as evaluate's native engine does
(``tf.saved_model.load``) — with neither ydf nor TF-DF imported, so the trees are plain
TensorFlow ops — and gives the predictions train wrote for the eval rows. ``auto`` keeps the
family with the best figure on the validation slice (never the eval split).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tabular_data
from conftest import examples_from_csv
from test_train import hyperparameters_artifact, run_train_component
from test_transform import run_transform_component

from components import names
from components.errors import StageError
from components.lib import model_families
from components.lib.train_outputs import EVAL_PREDICTIONS_FILE, PREDICTION_COLUMN, SUMMARY_FILE
from components.modules import insurance, tabular

# The ops a compiled forest is made of (docs/modules.md lists them), by head; and what saving any
# variable puts into a SavedModel besides (its checkpoint plumbing).
FOREST_OPS = {
    "AddV2", "Cast", "ExpandDims", "GatherV2", "GreaterEqual", "Less", "LogicalAnd", "MatMul", "Maximum",
    "Mul", "Pack", "ReadVariableOp", "Reshape", "ResourceGather", "SelectV2", "Shape", "StridedSlice", "Tile",
}  # fmt: skip
HEAD_OPS = {0: set(), 2: {"ConcatV2", "Sigmoid", "Sub"}, 3: {"Softmax"}}
PLUMBING = {
    "AssignVariableOp", "Const", "DisableCopyOnRead", "MergeV2Checkpoints", "NoOp", "Placeholder",
    "Identity", "RestoreV2", "SaveV2", "Select", "ShardedFilename", "StatefulPartitionedCall",
    "StaticRegexFullMatch", "StringJoin", "VarHandleOp",
}  # fmt: skip

SERVE = r"""
import json, sys
import tensorflow as tf
model_dir, files = sys.argv[1], sys.argv[2:]
records = [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]
serve = tf.saved_model.load(model_dir).signatures["serving_default"]
out = serve(examples=tf.constant(records))
key = "scores" if "scores" in out else "predictions"
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("ydf", "tensorflow_decision_forests"))
print(json.dumps({"values": out[key].numpy().tolist(), "custom": loaded}))
"""


def test_an_unknown_or_unoffered_family_is_one_line_naming_the_parameter():
    with pytest.raises(StageError, match=r"model_family must be one of auto, mlp, gbt, linear, got 'trees'"):
        model_families.candidates(tabular, "trees", names.STAGE_TRAIN)
    with pytest.raises(StageError, match=r"model_family='gbt' is not offered by the module x.py"):
        model_families.candidates(insurance, "gbt", names.STAGE_TRAIN, "the module x.py")
    assert model_families.candidates(insurance, "auto", names.STAGE_TRAIN) == ["mlp"]
    assert model_families.candidates(tabular, "auto", names.STAGE_TRAIN) == ["mlp", "gbt", "linear"]
    assert model_families.candidates(tabular, "linear", names.STAGE_TRAIN) == ["linear"]
    err = StageError(names.STAGE_TRAIN, None, "x")
    assert "\n" not in str(err)


def test_choose_keeps_the_lowest_finite_figure_and_ties_go_by_order():
    assert model_families.choose({"mlp": 2.0, "gbt": 1.0, "linear": 3.0}) == "gbt"
    assert model_families.choose({"mlp": float("nan"), "gbt": 5.0}) == "gbt"
    assert model_families.choose({"linear": 1.0, "mlp": 1.0, "gbt": 1.0}) == "mlp"


def _rows(mean: float, n: int, spread: float) -> list[float]:
    """n per-row losses with this mean, alternating ``mean ± spread`` (a known standard deviation)."""
    return [mean + (spread if i % 2 else -spread) for i in range(n)]


def test_auto_replaces_the_modules_own_model_only_beyond_the_slices_noise():
    # 50 rows (a small table's slice): trees 4 % lower, per-row differences that swing by ±1 -> noise.
    own, trees = _rows(2.18, 50, 1.0), _rows(2.10, 50, 0.0)
    figures = {"mlp": 2.18, "gbt": 2.10}
    assert model_families.choose(figures) == "gbt"  # the lowest figure alone would switch
    assert model_families.choose(figures, {"mlp": own, "gbt": trees}) == "mlp"
    # 1,600 rows with the same swing: 0.08 lower is now ~3 standard errors -> the trees.
    own, trees = _rows(2.18, 1600, 1.0), _rows(2.10, 1600, 0.0)
    assert model_families.choose(figures, {"mlp": own, "gbt": trees}) == "gbt"
    # Beyond the noise the lowest figure wins among the challengers; a worse one never replaces it.
    rows = {"mlp": _rows(3.0, 400, 0.1), "gbt": _rows(2.5, 400, 0.1), "linear": _rows(2.0, 400, 0.1)}
    assert model_families.choose({"mlp": 3.0, "gbt": 2.5, "linear": 2.0}, rows) == "linear"
    assert model_families.choose({"mlp": 1.0, "gbt": 2.0}, {"mlp": [1.0] * 9, "gbt": [2.0] * 9}) == "mlp"
    # The module's own figure not finite: the lowest finite one, as without rows.
    assert model_families.choose({"mlp": float("nan"), "gbt": 5.0}, {"mlp": [1.0], "gbt": [5.0]}) == "gbt"


@pytest.mark.parametrize("classes", [0, 2, 3])
def test_the_compiled_forest_predicts_what_ydf_predicts(classes, tmp_path):
    """The plain-TF forest against YDF's own predictions, unseen category ids included."""
    import tensorflow as tf

    from components.lib import trees

    rng = np.random.default_rng(classes)

    def table(n: int) -> dict:
        return {
            "x": rng.normal(size=n).astype(np.float32),
            "c": rng.integers(0, 7, size=n).astype(np.int64),
            "z": rng.normal(size=n).astype(np.float32),
        }

    x = table(500)
    score = x["x"] * 2 + (x["c"] == 3) * 3 - (x["c"] == 5) * 2 + rng.normal(size=500) * 0.3
    if classes:
        y = np.digitize(score, np.quantile(score, np.linspace(0, 1, classes + 1)[1:-1])).astype(np.int64)
    else:
        y = score.astype(np.float32)
    fitted = trees.fit(
        ({k: v[:400] for k, v in x.items()}, y[:400]),
        ({k: v[400:] for k, v in x.items()}, y[400:]),
        classes=classes,
        seed=1,
        stage="train",
        keep_model=True,
    )
    probe = table(200)
    probe["c"][:4] = [99, -1, 6, 1000]  # ids YDF never saw
    ours = fitted.forest({k: tf.constant(v) for k, v in probe.items()}).numpy()
    theirs = np.asarray(fitted.model.predict(probe))
    if classes == 2:
        positive = int(fitted.model.label_classes()[1])
        theirs = np.stack([1 - theirs, theirs], 1) if positive == 1 else np.stack([theirs, 1 - theirs], 1)
    elif classes:
        order = [int(c) for c in fitted.model.label_classes()]
        theirs = theirs[:, np.argsort(order)]
    ops = _forest_ops(fitted.forest, tmp_path)
    assert ops == FOREST_OPS | HEAD_OPS[classes]  # standard ops only (docs/modules.md lists them)
    np.testing.assert_allclose(
        ours.reshape(len(probe["x"]), -1), theirs.reshape(len(probe["x"]), -1), atol=2e-5
    )
    assert fitted.trees >= 1 and np.isfinite(fitted.validation_loss)


def _schema(examples, out: Path) -> Path:
    """The TFDV schema of example_gen's train split (its column types: zip codes text, rooms INT)."""
    import tensorflow_data_validation as tfdv

    split = Path(examples.metadata[names.META_STORAGE_PATH]) / names.split_dir(names.TRAIN)
    stats = tfdv.generate_statistics_from_tfrecord(data_location=str(split / "*.gz"))
    out.mkdir(parents=True, exist_ok=True)
    tfdv.write_schema_text(tfdv.infer_schema(stats, infer_feature_shape=False), str(out / names.SCHEMA_FILE))
    return out


def _forest_ops(forest, tmp_path: Path) -> set[str]:
    """The op types of a SavedModel holding ``forest`` alone (what the trees put into a served model)."""
    import tensorflow as tf

    module = tf.Module()
    module.forest = forest
    specs = {n: tf.TensorSpec([None], tf.float32 if n != "c" else tf.int64) for n in forest.input_names}
    module.f = tf.function(lambda features: forest(features), input_signature=[specs])
    tf.saved_model.save(module, str(tmp_path / "forest"))
    return _ops(tmp_path / "forest") - PLUMBING


@pytest.fixture(scope="module")
def regression(tmp_path_factory):
    """The transformed tiny regression table (300 rows; label ``target``)."""
    root = tmp_path_factory.mktemp("families")
    csv = tabular_data.regression_csv(root / "homes.csv")
    examples = examples_from_csv(root, csv, "families", label="target")
    schema = _schema(examples, root / "kfp" / "families" / "schema")
    return root, run_transform_component(root, examples, schema, "families", label="target"), examples


_TRAINED: dict[str, tuple] = {}


def _train(root: Path, transformed: tuple, run_id: str, family: str, label: str = "target") -> tuple:
    """(model, metrics, train dir) of train with ``family`` on the table; once per run id."""
    if run_id not in _TRAINED:
        hp = hyperparameters_artifact(root / "kfp" / run_id / "hp", {})
        model, metrics, _ = run_train_component(
            root, transformed, hp, run_id, label=label, model_family=family, train_steps=300
        )
        _TRAINED[run_id] = (model, metrics, Path(model.metadata[names.META_STORAGE_PATH]))
    return _TRAINED[run_id]


def _served(model_dir: Path, examples, tmp: Path) -> dict:
    """serving_default on the raw eval records (label left in: the signature ignores it) in a fresh
    Python process that loads the model as evaluate's native engine does."""
    split = Path(examples.metadata[names.META_STORAGE_PATH]) / names.split_dir(names.EVAL)
    files = sorted(str(p) for p in split.glob("*.gz"))
    assert files
    out = subprocess.run(
        [sys.executable, "-c", SERVE, str(model_dir), *files], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("family", ["gbt", "linear", "mlp"])
def test_each_family_serves_raw_examples_in_a_fresh_process(regression, family, tmp_path):
    root, transformed, examples = regression
    model, metrics, train_dir = _train(root, transformed, f"fam-{family}", family)
    summary = json.loads((train_dir / SUMMARY_FILE).read_text())
    assert summary["model_family"]["chosen"] == family
    assert model.metadata["model_family"]["candidates"].keys() == {family}
    assert metrics.metadata["eval_mae"] > 0 and metrics.metadata["validation_mae"] > 0
    import pandas as pd

    wanted = pd.read_csv(train_dir / EVAL_PREDICTIONS_FILE)[PREDICTION_COLUMN].to_numpy()
    served = _served(train_dir / names.MODEL_SERVING_DIR, examples, tmp_path)
    assert served["custom"] == []  # neither ydf nor TF-DF in the serving process
    np.testing.assert_allclose(np.ravel(served["values"]), wanted, rtol=2e-4)


def test_auto_keeps_the_best_family_on_the_validation_slice(regression):
    root, transformed, _ = regression
    model, metrics, train_dir = _train(root, transformed, "fam-auto", "auto")
    record = model.metadata["model_family"]
    figures = {f: c["validation_mae"] for f, c in record["candidates"].items()}
    assert set(figures) == {"mlp", "gbt", "linear"} and record["requested"] == "auto"
    assert (
        record["chosen"] == "mlp" or figures[record["chosen"]] < figures["mlp"]
    )  # replaced only when better
    assert "standard errors" in record["rule"]
    assert metrics.metadata["validation_mae"] == pytest.approx(figures[record["chosen"]])
    # Every candidate's figure is its own: the families differ on this table.
    assert len({round(v, 6) for v in figures.values()}) == 3


def test_the_trees_see_only_the_train_split(regression, monkeypatch):
    """gbt is fit outside keras.Model.fit (test_eval_isolation's instrument): its rows are checked here."""
    from components.lib import training, trees
    from components.lib.transform_output import transform_paths, transformed_files

    root, transformed, examples = regression
    seen = {}
    real_fit = trees.fit

    def spy(fit_rows, validation_rows, **kw):
        seen["fit"], seen["validation"] = fit_rows, validation_rows
        return real_fit(fit_rows, validation_rows, **kw)

    monkeypatch.setattr(trees, "fit", spy)
    model, _, _ = _train(root, transformed, "fam-iso", "gbt")
    graph, data = transformed
    examples_dir, graph_dir = transform_paths(
        Path(data.metadata[names.META_STORAGE_PATH]), Path(graph.metadata[names.META_STORAGE_PATH])
    )
    from components.lib.transform_output import open_transform_output

    tft_output = open_transform_output(graph_dir, "test")
    common = dict(label="target", label_fn=lambda y: y, stage="test", input_names=["size", "noise"])
    eval_cols, _ = trees.read_part(
        transformed_files(examples_dir, names.EVAL, "test"), tft_output, None, 0.0, **common
    )

    def pairs(cols: dict) -> set:
        return set(zip(np.round(cols["size"], 4), np.round(cols["noise"], 4), strict=True))

    fit, held = pairs(seen["fit"][0]), pairs(seen["validation"][0])
    budget = model.metadata["fit"]
    assert (
        len(seen["fit"][1]) == budget["fit_rows"] and len(seen["validation"][1]) == budget["validation_rows"]
    )
    assert not (fit | held) & pairs(eval_cols) and not fit & held
    assert len(eval_cols["size"]) == examples.metadata[names.META_ROWS][names.EVAL]
    assert training.FIT != training.VALIDATION


def _ops(model_dir: Path) -> set[str]:
    """Every op type in a SavedModel's graph and its functions, read from saved_model.pb."""
    from tensorflow.python.saved_model import loader_impl

    graph = loader_impl.parse_saved_model(str(model_dir)).meta_graphs[0].graph_def
    found = {n.op for n in graph.node}
    for function in graph.library.function:
        found |= {n.op for n in function.node_def}
    return found


def test_the_trees_add_only_these_standard_ops_to_the_networks(regression):
    """What docs/modules.md lists: a gbt model adds no op beyond these to the mlp model's."""
    root, transformed, _ = regression
    gbt = _ops(_train(root, transformed, "fam-gbt", "gbt")[2] / names.MODEL_SERVING_DIR)
    mlp = _ops(_train(root, transformed, "fam-mlp", "mlp")[2] / names.MODEL_SERVING_DIR)
    assert gbt - mlp == {
        "ExpandDims",
        "GatherV2",
        "GreaterEqual",
        "Less",
        "LogicalAnd",
        "Maximum",
        "ResourceGather",
        "Tile",
    }


@pytest.fixture(scope="module")
def binary(tmp_path_factory):
    """The transformed tiny binary table (300 rows; label ``churned``: "no"/"yes")."""
    root = tmp_path_factory.mktemp("families-binary")
    csv = tabular_data.binary_csv(root / "churn.csv")
    examples = examples_from_csv(root, csv, "families-binary", label="churned")
    schema = _schema(examples, root / "kfp" / "families-binary" / "schema")
    transformed = run_transform_component(root, examples, schema, "families-binary", label="churned")
    return root, transformed, examples


@pytest.mark.parametrize("family", ["gbt", "linear"])
def test_a_classifiers_family_serves_its_class_scores_in_a_fresh_process(binary, family, tmp_path):
    import pandas as pd

    root, transformed, examples = binary
    model, metrics, train_dir = _train(root, transformed, f"bin-{family}", family, label="churned")
    assert model.metadata["model_family"]["chosen"] == family
    assert 0 < metrics.metadata["validation_log_loss"] < 0.69  # better than a coin
    table = pd.read_csv(train_dir / EVAL_PREDICTIONS_FILE)
    served = _served(train_dir / names.MODEL_SERVING_DIR, examples, tmp_path)
    assert served["custom"] == []
    np.testing.assert_allclose(np.asarray(served["values"]), table[["p_no", "p_yes"]].to_numpy(), atol=1e-5)


def test_the_ridge_is_scikit_learns_ridge_with_its_default_alpha():
    """Regression's linear family against sklearn's Ridge(alpha=1) on the same one-hot design."""
    import tensorflow as tf
    from sklearn.linear_model import Ridge

    from components.lib import linear

    rng = np.random.default_rng(0)
    x = {"a": rng.normal(size=200).astype(np.float32), "c": rng.integers(0, 4, size=200).astype(np.int64)}
    y = (2 * x["a"] + (x["c"] == 2) - 0.5 * (x["c"] == 0) + rng.normal(size=200) * 0.1).astype(np.float32)
    fitted = linear.fit((x, y), stage="train")
    design = np.column_stack([x["a"], np.eye(4)[x["c"]]])
    reference = Ridge(alpha=1.0).fit(design, y)
    probe = {"a": np.array([0.3, -1.0, 2.0], np.float32), "c": np.array([1, 3, 7], np.int64)}  # 7: unseen
    ours = fitted.model({k: tf.constant(v) for k, v in probe.items()}).numpy().ravel()
    probe_design = np.column_stack([probe["a"], np.vstack([np.eye(4)[1], np.eye(4)[3], np.zeros(4)])])
    np.testing.assert_allclose(ours, reference.predict(probe_design), atol=1e-4)
