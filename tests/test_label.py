"""The label contract: the task decided from the schema and the train statistics, the classes, the figures."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from components.errors import StageError
from components.lib import label as L


def schema_and_stats(df: pd.DataFrame):
    """What the schema stage has: TFDV's schema inferred from TFDV's statistics of ``df``."""
    import tensorflow_data_validation as tfdv

    stats = tfdv.generate_statistics_from_dataframe(df)
    schema = tfdv.infer_schema(stats, infer_feature_shape=True)
    by_name = {f.path.step[0]: f for f in stats.datasets[0].features}
    return schema, by_name


def decide(df: pd.DataFrame, requested: str = "auto"):
    schema, stats = schema_and_stats(df)
    task = L.apply_task(schema, "y", requested, stats["y"], stage="schema", where="stats")
    return task, L.from_schema(schema, "y", stage="schema", where="schema"), schema


RNG = np.random.default_rng(0)
X = RNG.normal(size=200)


@pytest.mark.parametrize(
    "values, requested, task, classes",
    [
        (RNG.choice(["yes", "no"], 200), "auto", "classification", ("no", "yes")),  # sorted: "yes" positive
        (RNG.choice(["b", "c", "a"], 200), "classification", "classification", ("a", "b", "c")),
        (RNG.integers(0, 3, 200), "auto", "classification", ("0", "1", "2")),  # class id = value
        (RNG.integers(0, 2, 200), "classification", "classification", ("0", "1")),
        (RNG.integers(0, 50, 200), "auto", "regression", ()),  # too many values for classes
        (RNG.integers(0, 3, 200), "regression", "regression", ()),  # the override wins
        (RNG.normal(size=200), "auto", "regression", ()),
    ],
)
def test_the_task_is_decided_and_written_into_the_schema(values, requested, task, classes):
    chosen, info, schema = decide(pd.DataFrame({"x": X, "y": values}), requested)
    assert chosen == task and info.task == task and info.classes == classes
    label = next(f for f in schema.feature if f.name == "y")
    if task == "classification" and values.dtype.kind == "i":
        assert label.int_domain.is_categorical and label.int_domain.max == len(classes) - 1
    if task == "regression" and values.dtype.kind == "i":
        assert not label.int_domain.is_categorical


@pytest.mark.parametrize(
    "values, requested, problem",
    [
        (RNG.normal(size=200), "classification", "holds decimal numbers: it cannot be classified"),
        (RNG.choice(["yes", "no"], 200), "regression", "holds text: it can only be classified"),
        (RNG.integers(-1, 3, 200), "classification", "integer classes must be 0 .. K-1"),
        (RNG.integers(0, 500, 200), "classification", "integer classes must be 0 .. K-1"),
        (np.array([f"id{i}" for i in range(200)]), "auto", "more classes than 100"),
        (np.array(["only"] * 200), "auto", r"has one value \('only'\) in all 200 train rows"),
        (RNG.choice(["yes", "no"], 200), "sometimes", "task 'sometimes' is unknown"),
    ],
)
def test_a_label_that_cannot_be_read_so_is_an_error_saying_why(values, requested, problem):
    with pytest.raises(StageError, match=problem):
        decide(pd.DataFrame({"x": X, "y": values}), requested)


@pytest.mark.parametrize(
    "values, requested, shown",
    [
        (np.full(900, 250.0), "auto", "250"),  # regression: one number
        (np.full(900, 0.25), "regression", "0.25"),
        (np.full(900, 3), "auto", "3"),  # an integer label
        (np.full(900, 1), "classification", "1"),  # one integer class
        (np.array(["yes"] * 900), "classification", "'yes'"),  # one text class
    ],
)
def test_a_constant_label_is_one_line_naming_label_value_rows_and_fix(values, requested, shown):
    with pytest.raises(StageError) as err:
        decide(pd.DataFrame({"x": RNG.normal(size=900), "y": values}), requested)
    assert str(err.value) == (
        f"[schema] stats: label 'y' has one value ({shown}) in all 900 train rows: nothing to learn; "
        "check the export or choose another label"
    )


def test_training_figures_and_the_naive_predictor():
    reg = L.LabelInfo("y", L.REGRESSION, L.KIND_FLOAT)
    stats = L.training_statistics(reg, np.array([1.0, 2.0, 3.0, 100.0, float("nan")]))
    assert stats["count"] == 4 and stats["median"] == 2.5 and stats["min"] == 1.0
    assert stats["log_mean"] == pytest.approx(np.log([1, 2, 3, 100]).mean())
    assert reg.with_stats(stats).naive() == {"prediction": 2.5}

    cls = L.LabelInfo("y", L.CLASSIFICATION, L.KIND_STRING, ("no", "yes"))
    stats = L.training_statistics(cls, np.array([b"yes", b"no", b"yes", b"maybe"], dtype=object))
    assert stats == {"count": 4, "class_counts": [1, 2], "unknown": 1}
    assert cls.with_stats(stats).naive() == {"class_id": 1, "class": "yes", "share": 2 / 3}
    ints = L.LabelInfo("y", L.CLASSIFICATION, L.KIND_INT, ("0", "1", "2"))
    assert list(L.class_ids(ints, np.array([0, 2, 5, -1]))) == [0, 2, -1, -1]


def test_the_contract_round_trips_through_its_file(tmp_path):
    info = L.LabelInfo(
        "y", L.CLASSIFICATION, L.KIND_STRING, ("no", "yes"), {"count": 3, "class_counts": [1, 2]}
    )
    assert L.LabelInfo.read(info.write(tmp_path / "l.json"), "train") == info
    (tmp_path / "bad.json").write_text('{"task": "clustering"}')
    with pytest.raises(StageError, match="no task regression/classification"):
        L.LabelInfo.read(tmp_path / "bad.json", "train")
