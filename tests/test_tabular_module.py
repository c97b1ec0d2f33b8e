"""The default module: everything derived from the schema and the training labels' figures."""

from __future__ import annotations

import math

import pytest
from google.protobuf import text_format

from components import names
from components.lib import user_module
from components.modules import tabular


def schema_of(text: str):
    from tensorflow_metadata.proto.v0 import schema_pb2

    return text_format.Parse(text, schema_pb2.Schema())


INSURANCE = schema_of(
    "".join(
        f'feature {{ name: "{n}" type: {t} }}\n'
        for n, t in zip(
            names.COLUMNS, ["INT", "BYTES", "FLOAT", "INT", "BYTES", "BYTES", "FLOAT"], strict=True
        )
    )
)


def context(schema=INSURANCE, label=names.LABEL, **kw) -> user_module.ModuleContext:
    return user_module.ModuleContext(label=label, task=kw.pop("task", "regression"), schema=schema, **kw)


def test_on_the_reference_workload_the_search_space_is_the_workloads():
    import keras_tuner as kt

    ctx = context()
    assert tabular.raw_features(ctx) == {
        "age": "numeric",
        "sex": "string",
        "bmi": "numeric",
        "children": "numeric",
        "smoker": "string",
        "region": "string",
    }
    hp = kt.HyperParameters()
    user_module.call(tabular.hyperparameter_space, hp, context=ctx)
    space = {p.name: list(p.values) for p in hp.space}
    assert space == {"learning_rate": [0.01, 0.003, 0.001], "units": [16, 32, 64], "num_layers": [1, 2]}
    for key, value in tabular.default_hyperparameters(ctx).items():
        assert value in space[key]


def test_wider_tables_get_wider_layers_and_categorical_ints_are_text():
    wide = schema_of(
        'feature { name: "y" type: FLOAT }\n'
        'feature { name: "code" type: INT int_domain { is_categorical: true } }\n'
        + "".join(f'feature {{ name: "f{i}" type: FLOAT }}\n' for i in range(30))
    )
    ctx = context(wide, "y")
    assert tabular.raw_features(ctx)["code"] == "string"
    assert tabular.default_hyperparameters(ctx)["units"] == 128


@pytest.mark.parametrize(
    "stats, log",
    [
        (
            {"min": 1121.0, "max": 63770.0, "mean": 13270.0, "std": 12110.0, "log_mean": 9.1, "log_std": 0.9},
            True,
        ),
        ({"min": -5.0, "max": 40.0, "mean": 12.0, "std": 8.0}, False),  # not positive: standardized
        (
            {"min": 50.0, "max": 90.0, "mean": 70.0, "std": 8.0, "log_mean": 4.2, "log_std": 0.1},
            False,
        ),  # narrow
    ],
)
def test_the_label_scale_and_its_inverse(stats, log):
    import numpy as np
    import tensorflow as tf

    ctx = context(label_stats=stats)
    assert tabular.label_scale(ctx)[0] is log
    y = tf.constant([[stats["min"]], [stats["mean"]], [stats["max"]]], tf.float32)
    learned = tabular.label_transform(y, ctx)
    assert np.allclose(tabular.label_inverse_transform(learned, ctx).numpy(), y.numpy(), rtol=1e-5)
    if log:
        assert float(learned[1, 0]) == pytest.approx(math.log(stats["mean"]) - stats["log_mean"], rel=1e-5)
    else:
        assert float(learned[1, 0]) == pytest.approx(0.0, abs=1e-6)  # the mean maps to 0


def test_classification_starts_at_the_class_frequencies():
    import numpy as np

    ctx = context(task="classification", classes=("no", "yes"), label_stats={"class_counts": [299, 99]})
    bias = np.array(tabular._output_start(ctx).value)  # noqa: SLF001
    probs = np.exp(bias) / np.exp(bias).sum()
    assert probs == pytest.approx([0.75, 0.25], abs=1e-9)
