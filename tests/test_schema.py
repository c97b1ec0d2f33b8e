"""Schema: inferred from the train statistics, or the user's file; TFX's environments; bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import examples_from_csv, run_component
from kfp import dsl

from components import names
from components.errors import StageError
from components.schema import schema
from components.statistics import statistics


def run_stats(examples: dsl.Dataset, out: Path) -> dsl.Artifact:
    ex = dsl.Dataset(name="examples", uri=examples.uri, metadata=dict(examples.metadata))
    return run_component(statistics, out, examples=ex, storage_root=str(out / "volume"), run_id="schema")[
        "statistics"
    ]


@pytest.fixture(scope="module")
def stats(examples, tmp_path_factory) -> dsl.Artifact:
    return run_stats(examples, tmp_path_factory.mktemp("stats"))


def run_schema(
    kfp_dir: Path,
    stats_art,
    *,
    schema_file: str = "",
    storage_root: str = "/nonexistent",
    label: str = names.LABEL,
) -> dsl.Artifact:
    return run_component(
        schema, kfp_dir, statistics=stats_art, label=label, schema_file=schema_file, storage_root=storage_root
    )["schema"]


def load(art: dsl.Artifact):
    import tensorflow_data_validation as tfdv

    return tfdv.load_schema_text(str(Path(art.path) / names.SCHEMA_FILE))


def test_inferred_schema_has_every_feature_and_label_not_in_serving(tmp_path, stats):
    from tensorflow_metadata.proto.v0 import schema_pb2

    out = run_schema(tmp_path / "kfp", stats)
    s = load(out)
    assert {f.name for f in s.feature} == set(names.COLUMNS)
    assert list(s.default_environment) == ["TRAINING", "SERVING"]
    by_name = {f.name: f for f in s.feature}
    assert list(by_name[names.LABEL].not_in_environment) == ["SERVING"]
    assert all(not f.not_in_environment for n, f in by_name.items() if n != names.LABEL)
    # infer_feature_shape: every always-present feature is one value per example.
    assert all([d.size for d in f.shape.dim] == [1] for f in s.feature)
    assert by_name["age"].type == schema_pb2.INT and by_name["bmi"].type == schema_pb2.FLOAT
    domains = {d.name: set(d.value) for d in s.string_domain}
    assert domains[by_name["smoker"].domain] == {"yes", "no"}
    assert out.metadata == {
        "features": 7,
        "label": names.LABEL,
        "source": "inferred",
        "feature_names": sorted(names.COLUMNS),
        "task": "regression",
        "classes": [],
    }


def test_serving_environment_drops_the_label(tmp_path, stats):
    """With TFDV, data without the label passes in SERVING and is an anomaly in TRAINING."""
    import pandas as pd
    import tensorflow_data_validation as tfdv

    s = load(run_schema(tmp_path / "kfp", stats))
    no_label = pd.DataFrame(
        {
            "age": [30, 40],
            "sex": ["male", "female"],
            "bmi": [25.0, 31.5],
            "children": [0, 2],
            "smoker": ["no", "yes"],
            "region": ["southwest", "northeast"],
        }
    )
    served = tfdv.generate_statistics_from_dataframe(no_label)
    assert not tfdv.validate_statistics(served, s, environment="SERVING").anomaly_info
    assert set(tfdv.validate_statistics(served, s, environment="TRAINING").anomaly_info) == {names.LABEL}


def test_user_schema_file_replaces_inference(stats, tmp_path):
    from google.protobuf import text_format

    inferred = load(run_schema(tmp_path / "kfp", stats))
    custom = type(inferred)()
    custom.CopyFrom(inferred)
    del custom.default_environment[:]
    for f in custom.feature:
        del f.not_in_environment[:]
    # Something inference would never produce: an extra allowed region.
    next(d for d in custom.string_domain if d.name == "region").value.append("atlantis")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "my_schema.pbtxt").write_text(text_format.MessageToString(custom))

    out = run_schema(tmp_path / "kfp", stats, schema_file="data/my_schema.pbtxt", storage_root=str(tmp_path))
    s = load(out)
    assert "atlantis" in next(d for d in s.string_domain if d.name == "region").value
    assert out.metadata["source"] == str(tmp_path / "data" / "my_schema.pbtxt")
    # A schema without environments gets TFX's habit.
    assert list(s.default_environment) == ["TRAINING", "SERVING"]
    assert [f.name for f in s.feature if "SERVING" in f.not_in_environment] == [names.LABEL]


def test_user_schema_environments_are_kept(stats, tmp_path):
    text = (
        'feature { name: "charges" type: FLOAT }\nfeature { name: "age" type: INT not_in_environment: "X" }\n'
        'default_environment: "X"\ndefault_environment: "Y"\n'
    )
    path = tmp_path / "schema.pbtxt"
    path.write_text(text)
    s = load(run_schema(tmp_path / "kfp", stats, schema_file=str(path), storage_root=str(tmp_path)))
    assert list(s.default_environment) == ["X", "Y"]
    assert [f.name for f in s.feature] == ["charges", "age"]
    assert not [f for f in s.feature if f.name == "charges"][0].not_in_environment


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "schema file does not exist"),
        ("this is { not a schema", "not a valid text Schema proto"),
        ('feature { name: "age" type: NOT_A_TYPE }', "not a valid text Schema proto"),
        ("", "schema has no features"),
        ('feature { name: "age" type: INT }', "label 'charges' is not a feature of this schema"),
    ],
)
def test_bad_schema_file_is_an_error_naming_it(stats, tmp_path, content, problem):
    path = tmp_path / "user_schema.pbtxt"
    if content is not None:
        path.write_text(content)
    with pytest.raises(StageError) as info:
        run_schema(tmp_path / "kfp", stats, schema_file="user_schema.pbtxt", storage_root=str(tmp_path))
    assert str(info.value).startswith(f"[schema] {path}: ")
    assert problem in str(info.value)


def test_label_missing_from_statistics_is_an_error(tmp_path, stats):
    with pytest.raises(StageError, match=r"\[schema\] .*FeatureStats.pb: label 'price' is not in the train"):
        run_schema(tmp_path / "kfp", stats, label="price")


def test_missing_statistics_is_an_error(tmp_path):
    empty = dsl.Artifact(name="statistics", uri=str(tmp_path / "nostats"), metadata={})
    with pytest.raises(StageError, match=r"\[schema\] .*Split-train/FeatureStats.pb: cannot read statistics"):
        run_schema(tmp_path / "kfp", empty)


def test_statistics_and_schema_on_the_real_insurance_csv(insurance_csv, tmp_path):
    """The reference data: 1,338 rows, 7 features, label charges kept out of SERVING."""
    import tensorflow_data_validation as tfdv

    ex = examples_from_csv(tmp_path, insurance_csv, "real")
    stats_art = run_stats(ex, tmp_path / "stats")
    assert sum(stats_art.metadata[names.META_ROWS].values()) == 1338
    assert stats_art.metadata["features"] == 7
    train = tfdv.load_stats_binary(str(Path(stats_art.path) / "Split-train" / names.STATS_FILE))
    assert train.datasets[0].num_examples == stats_art.metadata[names.META_ROWS][names.TRAIN]

    out = run_schema(tmp_path / "kfp", stats_art, storage_root=str(tmp_path))
    s = load(out)
    assert len(s.feature) == 7 and out.metadata["features"] == 7
    label = tfdv.get_feature(s, names.LABEL)
    assert label.name == "charges" and list(label.not_in_environment) == ["SERVING"]
    domains = {d.name: set(d.value) for d in s.string_domain}
    assert domains[tfdv.get_feature(s, "region").domain] == {
        "northeast",
        "northwest",
        "southeast",
        "southwest",
    }
