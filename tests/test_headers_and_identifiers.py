"""Any CSV header: feature keys keep the column names, identifiers are derived where TF and Keras need them.

A table whose column names hold ``/``, ``.``, spaces, non-ASCII letters, a leading digit, 200
characters, and two names that clean to the same identifier (``a b``, ``a_b``), plus a date column
the schema stage excludes, runs statistics, schema, transform and a short train with the default
module; the exported model is then called on raw tf.Examples keyed by the original names.
"""

from __future__ import annotations

import datetime
import json
import re
from pathlib import Path

import numpy as np
import pytest

from components import names
from components.lib.identifiers import MAX_LENGTH, safe_name, safe_names

LONG = "very long column name " * 9 + "ends here"  # 206 characters
LABEL = "prix/m²"
NUMBERS = ("od280/od315_of_diluted_wines", "a.b", "2nd_col")
TEXTS = ("a b", "a_b", "région", LONG)
INTEGERS = ("größe",)
DATE = "date"
ROWS = 240
IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


# --- The rule. ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name",
    [*NUMBERS, *TEXTS, *INTEGERS, LABEL, "", "日本語", "1", "_", "x" * MAX_LENGTH, "x" * (MAX_LENGTH + 1)],
)
def test_a_safe_name_is_a_bounded_deterministic_identifier_tf_and_keras_accept(name):
    import keras
    import tensorflow as tf

    safe = safe_name(name)
    assert IDENTIFIER.match(safe) and len(safe) <= MAX_LENGTH
    assert safe == safe_name(name)  # a function of the name alone
    keras.Input(shape=(), name=safe)
    with tf.Graph().as_default(), tf.compat.v1.name_scope(safe + "_unpruned_vocab_size"):
        pass  # a top-level scope: the strictest TF rule


def test_identifiers_are_kept_and_changed_names_are_told_apart():
    assert safe_name("age") == "age" and safe_name("a_b") == "a_b"
    assert safe_name("région").startswith("region_") and safe_name("größe").startswith("grosse_")
    assert safe_name("2nd_col").startswith("f_2nd_col_")
    mapping = safe_names(["a b", "a_b", "a.b", "a-b", LONG, LONG + "!"])
    assert mapping["a_b"] == "a_b"  # never renamed because of another
    assert len(set(mapping.values())) == len(mapping)
    assert safe_names(reversed(list(mapping))) == mapping  # column order does not matter
    # The rare collision left: a raw name equal to another's cleaned-and-hashed form.
    clash = safe_name("a b")
    assert safe_names(["a b", clash]) == {clash: clash, "a b": safe_name("a b", {clash})}
    assert safe_name("a b", {clash}) != clash


# --- The pipeline on such a table. ---------------------------------------------------------------
def table() -> dict[str, list]:
    """Columns by name; the label depends on the odd-named features, the date is one per row."""
    rng = np.random.default_rng(11)
    start = datetime.date(2021, 1, 1)
    cols: dict[str, list] = {
        "od280/od315_of_diluted_wines": rng.normal(2.5, 0.7, ROWS).round(3).tolist(),
        "a.b": rng.normal(0, 1, ROWS).round(3).tolist(),
        "2nd_col": rng.uniform(0, 10, ROWS).round(2).tolist(),
        "a b": rng.choice(["x", "y"], ROWS).tolist(),
        "a_b": rng.choice(["u", "v", "w"], ROWS).tolist(),
        "région": rng.choice(["nord", "sud", "île"], ROWS).tolist(),
        LONG: rng.choice(["p", "q"], ROWS).tolist(),
        "größe": rng.integers(1, 5, ROWS).tolist(),
        DATE: [str(start + datetime.timedelta(days=i)) for i in range(ROWS)],
    }
    effect = {"nord": 30.0, "sud": 0.0, "île": -20.0}
    cols[LABEL] = [
        round(
            100 + 40 * cols["od280/od315_of_diluted_wines"][i] + effect[cols["région"][i]] + rng.normal(0, 3),
            2,
        )
        for i in range(ROWS)
    ]
    return cols


def example(cols: dict[str, list], i: int, *, label: bool = True, **override) -> bytes:
    """Row ``i`` as a serialized tf.Example keyed by the column names (``override``: other values)."""
    import tensorflow as tf

    feats = {}
    for name, values in cols.items():
        if name == LABEL and not label:
            continue
        value = override.get(name, values[i])
        if isinstance(value, float):
            feats[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
        elif isinstance(value, int):
            feats[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
        else:
            feats[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
    return tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString()


def eval_rows() -> list[int]:
    return [i for i in range(ROWS) if i % 3 == 2]


def write_examples(cols: dict[str, list], out: Path) -> Path:
    """ExampleGen's layout: ``Split-train`` (2 rows of 3) and ``Split-eval``, one gzipped file each."""
    import tensorflow as tf

    for split, rows in ((names.TRAIN, [i for i in range(ROWS) if i % 3 != 2]), (names.EVAL, eval_rows())):
        folder = out / names.split_dir(split)
        folder.mkdir(parents=True)
        with tf.io.TFRecordWriter(str(folder / "data-00000-of-00001.gz"), "GZIP") as w:
            for i in rows:
                w.write(example(cols, i))
    return out


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict:
    """Statistics, schema, transform and a 20-step train on the odd-headed table, once."""
    from components import defaults
    from components.lib import transform_output
    from components.lib.hyperparameters import write_hyperparameters
    from components.lib.schema import run_schema
    from components.lib.statistics import run_statistics
    from components.lib.train import run_train
    from components.lib.transform import run_transform

    root = tmp_path_factory.mktemp("headers")
    cols = table()
    examples_dir = write_examples(cols, root / "examples")
    run_statistics(examples_dir, root / "statistics")
    schema = run_schema(root / "statistics", root / "schema", label=LABEL)
    transformed = run_transform(
        examples_dir,
        root / "schema",
        root / "transform",
        module_file="",
        storage_root=str(root),
        beam_args=defaults.BEAM_ARGS,
        label=LABEL,
    )
    write_hyperparameters(root / "hparams", {"learning_rate": 0.01, "units": 16, "num_layers": 1}, [])
    trained = run_train(
        transform_output.transformed_examples_dir(root / "transform"),
        transform_output.graph_dir(root / "transform"),
        root / "hparams",
        root / "train",
        module_file="",
        storage_root=str(root),
        train_steps=20,
        eval_steps=2,
        batch_size=16,
        label=LABEL,
    )
    return {"root": root, "cols": cols, "schema": schema, "transform": transformed, "train": trained}


def test_the_date_is_excluded_and_every_other_header_is_a_feature_key(run):
    assert list(run["schema"].excluded) == [DATE]
    assert (
        run["schema"]
        .excluded[DATE]
        .startswith(f"date-like text: {sum(1 for i in range(ROWS) if i % 3 != 2)}")
    )
    keys = set(run["transform"].transformed_features)
    assert keys == {*NUMBERS, *TEXTS, *INTEGERS, LABEL}  # the column names, exactly


def test_vocabularies_are_stored_under_the_safe_names(run):
    import tensorflow_transform as tft

    from components.lib import transform_output

    out = tft.TFTransformOutput(str(transform_output.graph_dir(run["root"] / "transform")))
    assert set(out.vocabulary_by_name(safe_name("région"))) == {b"nord", b"sud", "île".encode()}
    assert set(out.vocabulary_by_name("a_b")) == {b"u", b"v", b"w"}
    assert set(out.vocabulary_by_name(safe_names(["a b", "a_b"])["a b"])) == {b"x", b"y"}


def test_the_eval_predictions_keep_the_column_names(run):
    import pandas as pd

    from components.lib.train_outputs import EVAL_PREDICTIONS_FILE, PREDICTION_COLUMN

    frame = pd.read_csv(run["root"] / "train" / EVAL_PREDICTIONS_FILE)
    assert set(frame.columns) == {*NUMBERS, *TEXTS, *INTEGERS, LABEL, PREDICTION_COLUMN}
    assert run["train"].metrics["eval_examples"] == len(eval_rows())


def test_the_served_model_reads_raw_examples_keyed_by_the_original_names(run):
    import pandas as pd
    import tensorflow as tf

    from components.lib import saved_model
    from components.lib.train_outputs import EVAL_PREDICTIONS_FILE, PREDICTION_COLUMN

    export = saved_model.export_dir(run["root"] / "train")
    parsed = json.loads(saved_model.inputs_path(export).read_text())
    assert set(parsed) == {*NUMBERS, *TEXTS, *INTEGERS, DATE}  # the excluded date is still accepted
    loaded = tf.saved_model.load(str(export))
    serve = loaded.signatures[names.SERVING_SIGNATURE]
    cols = run["cols"]
    requests = [example(cols, i, label=False) for i in eval_rows()]
    served = serve(examples=tf.constant(requests))[names.PREDICTIONS_KEY].numpy().reshape(-1)
    stored = pd.read_csv(run["root"] / "train" / EVAL_PREDICTIONS_FILE)[PREDICTION_COLUMN].to_numpy()
    assert np.allclose(np.sort(served), np.sort(stored), rtol=1e-4, atol=1e-3)  # no train/serve skew

    # Each odd-named feature reaches the model: the transformed features are its values, not defaults.
    transform = loaded.signatures[names.TRANSFORM_SIGNATURE]
    first = eval_rows()[0]
    out = {k: v.numpy() for k, v in transform(examples=tf.constant(requests[:1])).items()}
    assert set(out) == {*NUMBERS, *TEXTS, *INTEGERS}  # no label in a request, none out
    for name in (*NUMBERS, *INTEGERS):
        assert out[name][0] != 0.0, name  # z-scored: 0 only for a missing value
    for name in TEXTS:
        vocab = tf.constant([t.encode() for t in sorted(set(cols[name]))])
        assert 0 <= out[name][0] < len(vocab), name  # in the vocabulary: the value was read
    moved = example(cols, first, label=False, **{"od280/od315_of_diluted_wines": 9.0})
    changed = serve(examples=tf.constant([requests[0], moved]))[names.PREDICTIONS_KEY].numpy()
    assert changed[0, 0] != changed[1, 0]


def test_tf_and_keras_refusing_a_name_get_the_hint():
    import keras
    import tensorflow as tf

    from components.lib import identifiers

    with pytest.raises(ValueError) as keras_error:
        keras.Input(shape=(), name="od280/od315")
    with pytest.raises(ValueError) as tf_error, tf.Graph().as_default(), tf.compat.v1.name_scope("région"):
        pass
    for error in (keras_error.value, tf_error.value):
        assert identifiers.hint_for(error) == f"; {identifiers.HINT}"
    assert identifiers.hint_for(ValueError("shapes do not match")) == ""


def test_a_user_module_that_names_a_vocabulary_by_its_column_gets_one_line_with_the_fix(run, tmp_path):
    from components import defaults
    from components.errors import StageError
    from components.lib.transform import run_transform

    module = run["root"] / "raw_names.py"
    module.write_text(
        "import tensorflow_transform as tft\n\n\n"
        "def preprocessing_fn(inputs):\n"
        "    out = {'prix/m²': inputs['prix/m²']}\n"
        "    out['région'] = tft.compute_and_apply_vocabulary(\n"
        "        tft.sparse_tensor_to_dense_with_shape(inputs['région'], [None, 1], '')[:, 0],\n"
        "        vocab_filename='région',\n"
        "    )\n"
        "    return out\n"
    )
    with pytest.raises(StageError) as info:
        run_transform(
            run["root"] / "examples",
            run["root"] / "schema",
            tmp_path / "transform",
            module_file=str(module),
            storage_root=str(run["root"]),
            beam_args=defaults.BEAM_ARGS,
            label=LABEL,
        )
    message = str(info.value)
    assert message.startswith(f"[transform] {module}: preprocessing_fn raised ValueError: ")
    assert "'région_unpruned_vocab_size' is not a valid scope name" in message
    assert message.endswith(
        "components.lib.identifiers.safe_name(name) and keep the column name as the feature key"
    )
    assert "\n" not in message
