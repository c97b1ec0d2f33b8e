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
    storage_root: str = "",
    label: str = names.LABEL,
) -> dsl.Artifact:
    storage_root = storage_root or str(kfp_dir / "volume")
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
    kept = tmp_path / "kfp" / "volume" / names.ARTIFACTS_DIR / "run" / names.STAGE_SCHEMA / names.SCHEMA_FILE
    assert out.metadata == {
        "features": 7,
        "label": names.LABEL,
        "source": "inferred",
        "feature_names": sorted(names.COLUMNS),
        "task": "regression",
        "classes": [],
        "excluded_features": {},
        # the copy kept on the volume, the path users pass as schema_file
        names.META_STORAGE_PATH: str(kept),
    }
    assert kept.read_bytes() == (Path(out.path) / names.SCHEMA_FILE).read_bytes()


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


# --- Identifier-like columns and the features / exclude_features overrides. ----------------------
ROWS = 1461  # four years of daily rows, as in the issue


def daily_table(rows: int = ROWS, seed: int = 5):
    """A table with a date, a name and a row number next to real categories, split train/eval 2:1."""
    import datetime

    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    start = datetime.date(2020, 1, 1)
    df = pd.DataFrame(
        {
            "row": np.arange(1, rows + 1),
            "date": [str(start + datetime.timedelta(days=i)) for i in range(rows)],
            "customer": [f"customer {i:05d}" for i in rng.permutation(rows)],
            "seen": [
                f"{start + datetime.timedelta(days=i % 30)} {i % 24:02d}:{i % 60:02d}:00 UTC"
                for i in range(rows)
            ],
            "color": rng.choice(["red", "green", "blue"], rows),
            "zip": rng.choice(
                [f"{z:05d}" for z in rng.integers(0, 99999, 250)], rows
            ),  # 250 zips: a category
            "city": rng.choice([f"city {i}" for i in range(40)], rows),
            "size": rng.normal(100, 20, rows).round(1),
            "rooms": rng.integers(1, 7, rows),
            "price": rng.normal(250, 50, rows).round(2),
        }
    )
    in_train = rng.random(rows) < 2 / 3
    return df[in_train].reset_index(drop=True), df[~in_train].reset_index(drop=True)


def write_stats(directory: Path, train, evaluation=None) -> Path:
    """A statistics artifact (train, and eval when given) of dataframes, as the statistics stage writes it."""
    import tensorflow_data_validation as tfdv

    from components.lib.statistics_io import write_statistics

    def stats(df):
        return tfdv.generate_statistics_from_dataframe(df.reset_index(drop=True))

    write_statistics(directory, names.TRAIN, stats(train))
    if evaluation is not None:
        write_statistics(directory, names.EVAL, stats(evaluation))
    return directory


@pytest.fixture(scope="module")
def daily_stats(tmp_path_factory) -> Path:
    return write_stats(tmp_path_factory.mktemp("daily"), *daily_table())


def lib_schema(stats_dir: Path, out: Path, **kw):
    from components.lib.schema import run_schema as run

    return run(stats_dir, out, label=kw.pop("label", "price"), **kw)


def test_identifier_like_columns_are_tagged_out_of_the_model_but_stay_in_the_schema(daily_stats, tmp_path):
    from components.lib import user_module
    from components.modules import tabular

    result = lib_schema(daily_stats, tmp_path)
    excluded = result.metadata()["excluded_features"]
    assert set(excluded) == {"row", "date", "seen", "customer"}  # color, zip (250), city, numbers stay
    assert excluded["seen"].startswith("date-like text: ")  # a timestamp
    assert excluded["date"].startswith("date-like text: ") and "in a module_file" in excluded["date"]
    assert excluded["customer"].startswith("identifier: ") and excluded["customer"].endswith(" rows")
    distinct, rows = excluded["customer"].removeprefix("identifier: ").split(" distinct of ")
    assert distinct == rows.removesuffix(" rows")  # every name once
    assert excluded["row"] == f"row number: 1 .. {ROWS:,}, one per row of {ROWS:,}"
    s = load(dsl.Artifact(name="schema", uri=str(tmp_path)))  # what was written keeps the tags
    by_name = {f.name: f for f in s.feature}
    assert set(by_name) == {
        "row",
        "date",
        "seen",
        "customer",
        "color",
        "zip",
        "city",
        "size",
        "rooms",
        "price",
    }
    assert list(by_name["date"].annotation.tag) == ["kubetfx:excluded:date"]
    assert list(by_name["customer"].annotation.tag) == ["kubetfx:excluded:identifier"]
    assert list(by_name["row"].annotation.tag) == ["kubetfx:excluded:row_number"]
    assert not by_name["price"].HasField("annotation") and not by_name["zip"].HasField("annotation")
    # Serving still accepts them: only the label is out of SERVING.
    assert [n for n, f in by_name.items() if f.not_in_environment] == ["price"]
    ctx = user_module.ModuleContext(label="price", task="regression", schema=s)
    assert ctx.excluded_features() == excluded
    assert set(tabular.raw_features(ctx)) == {"color", "zip", "city", "size", "rooms"}


def test_a_real_category_and_a_few_dates_are_kept(tmp_path):
    """Conservative: repeated values (even many of them) and a handful of dates are not identifiers."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(1)
    rows = 300
    df = pd.DataFrame(
        {
            "state": rng.choice([f"state {i}" for i in range(50)], rows),  # 50 of 300: repeats
            "snapshot": rng.choice(["2024-01-01", "2024-02-01", "2024-03-01"], rows),  # three dates
            "few": [f"v{i}" for i in range(rows)][:rows],  # distinct, but see below: 20 rows only
            "age": rng.integers(18, 90, rows),  # an integer, not a row number
            "y": rng.normal(size=rows),
        }
    )
    df.loc[20:, "few"] = "same"  # 21 distinct values of 300: a category with a long tail
    result = lib_schema(write_stats(tmp_path / "st", df), tmp_path / "out", label="y")
    assert result.excluded == {}


def test_the_features_parameter_names_exactly_the_model_features(daily_stats, tmp_path):
    result = lib_schema(daily_stats, tmp_path, features="date, size,rooms")
    assert result.excluded == {
        n: "not in features parameter" for n in ("row", "seen", "customer", "color", "zip", "city")
    }  # the rules do not apply: the user chose the date
    tags = {f.name: list(f.annotation.tag) for f in result.schema.feature}
    assert tags["date"] == [] and tags["color"] == ["kubetfx:excluded:parameter"]


def test_exclude_features_adds_to_the_rules(daily_stats, tmp_path):
    result = lib_schema(daily_stats, tmp_path, exclude_features="city,zip")
    assert set(result.excluded) == {"row", "date", "seen", "customer", "city", "zip"}
    assert result.excluded["city"] == result.excluded["zip"] == "exclude_features parameter"


@pytest.mark.parametrize(
    ("kw", "problem"),
    [
        (
            {"features": "size,colour"},
            "features names 'colour', which is not a column of the data; the columns are "
            "['city', 'color', 'customer', 'date', 'price', 'rooms', 'row', 'seen', 'size', 'zip']: "
            "use the names of the CSV header, comma-separated",
        ),
        (
            {"exclude_features": "price"},
            "exclude_features names the label 'price': the label is what the model predicts, never one "
            "of its features; remove it from exclude_features",
        ),
        (
            {"features": "price,size"},
            "features names the label 'price': the label is what the model predicts, never one "
            "of its features; remove it from features",
        ),
    ],
)
def test_a_bad_override_is_one_line_naming_the_column(daily_stats, tmp_path, kw, problem):
    with pytest.raises(StageError) as info:
        lib_schema(daily_stats, tmp_path, **kw)
    assert str(info.value) == f"[schema] {daily_stats / 'Split-train' / names.STATS_FILE}: {problem}"


def test_excluding_every_feature_is_an_error_naming_the_fix(daily_stats, tmp_path):
    with pytest.raises(StageError) as info:
        lib_schema(daily_stats, tmp_path, exclude_features="color,zip,city,size,rooms")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"[schema] {daily_stats / 'Split-train' / names.STATS_FILE}: ")
    assert "every feature but the label 'price' is excluded (" in message
    assert "color: exclude_features parameter" in message
    assert message.endswith(
        "nothing to learn from; name the columns to use in the features parameter (comma-separated), "
        "or remove names from exclude_features"
    )


def test_a_user_schema_keeps_its_tags_and_the_overrides_apply(daily_stats, tmp_path):
    inferred = lib_schema(daily_stats, tmp_path / "first").schema
    path = tmp_path / "mine.pbtxt"
    from google.protobuf import text_format

    custom = type(inferred)()
    custom.CopyFrom(inferred)
    for f in custom.feature:  # the user hand-tags city, and un-tags the row number
        if f.name == "city":
            f.annotation.tag.append("kubetfx:excluded")
        if f.name == "row":
            f.ClearField("annotation")
    path.write_text(text_format.MessageToString(custom))
    result = lib_schema(daily_stats, tmp_path / "second", schema_file=path, exclude_features="zip")
    assert set(result.excluded) == {"date", "seen", "customer", "city", "zip"}  # no rule on a curated schema
    assert result.excluded["city"] == "schema tag kubetfx:excluded"
    assert result.excluded["date"].startswith("date-like text: ")  # its reason travels with the tag


def test_a_constant_label_stops_the_schema_stage(tmp_path):
    import numpy as np
    import pandas as pd

    df = pd.DataFrame({"x": np.arange(900) % 7, "price": np.full(900, 250.0)})
    stats_dir = write_stats(tmp_path / "st", df)
    with pytest.raises(StageError) as info:
        lib_schema(stats_dir, tmp_path / "out")
    assert str(info.value) == (
        f"[schema] {stats_dir / 'Split-train' / names.STATS_FILE}: label 'price' has one value (250) in "
        "all 900 train rows: nothing to learn; check the export or choose another label"
    )
