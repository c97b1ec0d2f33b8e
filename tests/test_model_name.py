"""The model name: given, or derived from the data's name the same way by every stage and by submit."""

from __future__ import annotations

import pytest

from components.parameters import ParameterError, coerce, model_name_for


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("data/insurance.csv", "insurance"),  # the reference workload keeps its name
        ("data/Claims 2024.CSV", "Claims_2024"),
        ("data/exports/", "exports"),
        ("s3://bucket/tables/claims/", "claims"),
        ("gs://bucket/t/région.csv", "r_gion"),
        ("data/.hidden.csv", "hidden"),
        ("data/___.csv", "model"),
        ("data/" + "x" * 100 + ".csv", "x" * 63),
    ],
)
def test_an_empty_model_name_derives_from_the_data(data, expected):
    name = model_name_for("", data)
    assert name == expected
    assert coerce({"model_name": name})["model_name"] == name  # always a valid name


def test_a_given_model_name_wins():
    assert model_name_for("prices", "data/insurance.csv") == "prices"


def test_empty_model_name_is_a_valid_parameter_value():
    assert coerce({"model_name": ""}) == {"model_name": ""}


def test_an_unknown_encoding_is_one_line():
    with pytest.raises(ParameterError, match=r"parameter 'encoding' names no known text encoding: 'utf-9'"):
        coerce({"encoding": "utf-9"})
    assert coerce({"encoding": "latin-1"}) == {"encoding": "latin-1"}
