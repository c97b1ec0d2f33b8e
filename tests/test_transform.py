"""Transform: TFT on Beam over ExampleGen's output, analyzers fit on train only.

``transform_outputs`` is a cached helper (not a fixture) so test_tune, test_train and
test_serving reuse the one transform run of the session.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import examples_from_csv, run_component
from kfp import dsl

from components import defaults, names
from components.errors import StageError

RUN_ID = "model-stages"
_CACHE: dict[str, tuple] = {}


def infer_schema_file(csv: Path, out: Path) -> Path:
    """A TFDV schema inferred (feature shapes too, as the schema stage does) from a CSV's stats."""
    import pandas as pd
    import tensorflow_data_validation as tfdv

    stats = tfdv.generate_statistics_from_dataframe(pd.read_csv(csv))
    schema = tfdv.infer_schema(stats, infer_feature_shape=True)
    out.mkdir(parents=True, exist_ok=True)
    tfdv.write_schema_text(schema, str(out / names.SCHEMA_FILE))
    return out


def run_transform_component(
    storage_root: Path,
    examples: dsl.Dataset,
    schema_dir: Path,
    run_id: str,
    module_file: str = "",
    label: str = names.LABEL,
) -> tuple[dsl.Artifact, dsl.Dataset]:
    from components.transform import transform

    outputs = run_component(
        transform,
        storage_root / "kfp" / run_id,
        examples=examples,
        schema=dsl.Artifact(name="schema", uri=str(schema_dir), metadata={}),
        storage_root=str(storage_root),
        run_id=run_id,
        module_file=module_file,
        beam_args=defaults.BEAM_ARGS,
        label=label,
    )
    return outputs["transform_graph"], outputs["transformed_examples"]


def transform_outputs(
    storage_root: Path, examples: dsl.Dataset, csv: Path
) -> tuple[dsl.Artifact, dsl.Dataset]:
    """The session's one transform run on the synthetic examples: (transform_graph, transformed_examples)."""
    key = str(storage_root)
    if key not in _CACHE:
        schema_dir = infer_schema_file(csv, storage_root / "kfp" / RUN_ID / "schema")
        _CACHE[key] = run_transform_component(storage_root, examples, schema_dir, RUN_ID)
    return _CACHE[key]


def read_split(directory: Path, split: str, spec: dict) -> dict[str, np.ndarray]:
    """Every example of one split (gz TFRecords) parsed with ``spec``, as numpy columns."""
    import tensorflow as tf

    files = sorted(str(p) for p in (directory / names.split_dir(split)).glob("*.gz"))
    assert files, f"no files in {directory / names.split_dir(split)}"
    ds = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(10_000)
    cols: dict[str, list] = {}
    for batch in ds:
        parsed = tf.io.parse_example(batch, spec)
        for k, v in parsed.items():
            if isinstance(v, tf.SparseTensor):
                v = tf.sparse.to_dense(v)
            cols.setdefault(k, []).append(v.numpy().reshape(len(batch), -1)[:, 0])
    return {k: np.concatenate(v) for k, v in cols.items()}


RAW_SPEC_TYPES = {
    "age": "int64",
    "bmi": "float32",
    "children": "int64",
    "sex": "string",
    "smoker": "string",
    "region": "string",
    "charges": "float32",
}


def raw_spec() -> dict:
    import tensorflow as tf

    return {k: tf.io.FixedLenFeature([], getattr(tf, t)) for k, t in RAW_SPEC_TYPES.items()}


@pytest.fixture(scope="module")
def outputs(storage_root, examples, synthetic_csv):
    return transform_outputs(storage_root, examples, synthetic_csv)


def test_writes_the_tft_layout_on_the_volume(outputs, examples, storage_root):
    import tensorflow_transform as tft

    graph, transformed = outputs
    stage = storage_root / names.ARTIFACTS_DIR / RUN_ID / names.STAGE_TRANSFORM
    for art in (graph, transformed):
        assert art.metadata[names.META_STORAGE_PATH] == str(stage)
        assert str(stage) in Path(art.path).read_text()  # the manifest points there too
    assert graph.metadata["path"] == str(stage / names.TRANSFORM_GRAPH_DIR)
    assert transformed.metadata[names.META_ROWS] == examples.metadata[names.META_ROWS]
    assert (stage / names.TRANSFORM_GRAPH_DIR / "transform_fn" / "saved_model.pb").is_file()
    for split in names.SPLITS:
        files = list((stage / names.TRANSFORMED_EXAMPLES_DIR / names.split_dir(split)).glob("*.gz"))
        assert files and all(f.name.startswith(names.TRANSFORMED_FILE_PREFIX) for f in files)
    assert not [p for p in stage.iterdir() if p.name.startswith(".")]  # no temp dirs left behind

    tft_output = tft.TFTransformOutput(str(stage / names.TRANSFORM_GRAPH_DIR))
    spec = tft_output.transformed_feature_spec()
    assert set(spec) == set(names.FEATURES) | {names.LABEL}
    for key in names.NUMERIC_FEATURES:
        assert spec[key].dtype.name == "float32"
    for key in names.CATEGORICAL_FEATURES:
        assert spec[key].dtype.name == "int64"
    # Raw features are read as optional (VarLen), the label as required.
    raw = tft_output.raw_feature_spec()
    assert type(raw["bmi"]).__name__ == "VarLenFeature"
    assert type(raw[names.LABEL]).__name__ == "FixedLenFeature"
    assert set(tft_output.vocabulary_by_name("region")) == {
        b"southwest",
        b"southeast",
        b"northwest",
        b"northeast",
    }
    assert set(tft_output.vocabulary_by_name("smoker")) == {b"yes", b"no"}


def test_analyzers_fit_on_train_only_and_label_passes_through(outputs, examples, storage_root):
    import tensorflow_transform as tft

    stage = storage_root / names.ARTIFACTS_DIR / RUN_ID / names.STAGE_TRANSFORM
    tft_output = tft.TFTransformOutput(str(stage / names.TRANSFORM_GRAPH_DIR))
    raw_dir = Path(examples.metadata[names.META_STORAGE_PATH])
    raw = {s: read_split(raw_dir, s, raw_spec()) for s in names.SPLITS}
    out = {
        s: read_split(stage / names.TRANSFORMED_EXAMPLES_DIR, s, tft_output.transformed_feature_spec())
        for s in names.SPLITS
    }
    for s in names.SPLITS:
        assert len(out[s][names.LABEL]) == len(raw[s][names.LABEL])
        np.testing.assert_array_equal(np.sort(out[s][names.LABEL]), np.sort(raw[s][names.LABEL]))
    for key in names.NUMERIC_FEATURES:
        train = raw[names.TRAIN][key].astype(np.float64)
        mean, std = train.mean(), train.std()
        assert abs(out[names.TRAIN][key].mean()) < 1e-4 and abs(out[names.TRAIN][key].std() - 1) < 1e-3
        expected_eval = (raw[names.EVAL][key] - mean) / std  # train statistics applied to eval
        np.testing.assert_allclose(
            np.sort(out[names.EVAL][key]), np.sort(expected_eval), rtol=1e-4, atol=1e-4
        )
    for key in names.CATEGORICAL_FEATURES:
        size = tft_output.vocabulary_size_by_name(key)
        vocab = [v.decode() for v in tft_output.vocabulary_by_name(key)]
        for s in names.SPLITS:
            idx = out[s][key]
            assert idx.min() >= 0 and idx.max() < size  # every category seen: none in the OOV bucket
            np.testing.assert_array_equal(np.sort(np.array(vocab)[idx]), np.sort(raw[s][key].astype(str)))


def test_transformed_files_are_checksummed_tfrecords_in_input_order(outputs, examples, storage_root):
    # Transform writes whole framed batches through a plain file sink: every record must still
    # carry valid TFRecord checksums, one tf.Example per input row, in the input's order.
    from tensorflow.core.example import example_pb2

    from components.lib.tfrecord import read_tfrecords

    stage = storage_root / names.ARTIFACTS_DIR / RUN_ID / names.STAGE_TRANSFORM
    raw_dir = Path(examples.metadata[names.META_STORAGE_PATH])
    for split in names.SPLITS:
        files = sorted((stage / names.TRANSFORMED_EXAMPLES_DIR / names.split_dir(split)).glob("*.gz"))
        labels = []
        for file in files:
            for record in read_tfrecords(file, "test", verify_data_crc=True):
                example = example_pb2.Example.FromString(record)
                labels.append(example.features.feature[names.LABEL].float_list.value[0])
        raw = read_split(raw_dir, split, raw_spec())[names.LABEL]
        np.testing.assert_array_equal(np.array(labels, dtype=np.float32), raw)


def test_missing_values_in_training_data_are_imputed(tmp_path, write_csv):
    """An empty bmi cell (an example without bmi) becomes the train mean (0 after scaling)."""
    import tensorflow_transform as tft

    rows = ["age,sex,bmi,children,smoker,region,charges"]
    for i in range(60):
        bmi = "" if i == 5 else f"{20 + i % 17}.5"
        rows.append(
            f"{18 + i % 40},{'male' if i % 2 else 'female'},{bmi},{i % 3},{'yes' if i % 5 == 0 else 'no'},"
            f"{['southwest', 'northeast'][i % 2]},{1000 + 97 * i}.25"
        )
    csv = write_csv("\n".join(rows) + "\n")
    root = tmp_path / "storage"
    examples = examples_from_csv(root, csv, "missing")
    schema_dir = infer_schema_file(csv, tmp_path / "schema")
    graph, _ = run_transform_component(root, examples, schema_dir, "missing")
    stage = Path(graph.metadata[names.META_STORAGE_PATH])
    tft_output = tft.TFTransformOutput(str(stage / names.TRANSFORM_GRAPH_DIR))
    spec = tft_output.transformed_feature_spec()
    cols = {s: read_split(stage / names.TRANSFORMED_EXAMPLES_DIR, s, spec) for s in names.SPLITS}
    label = np.concatenate([cols[s][names.LABEL] for s in names.SPLITS])
    bmi = np.concatenate([cols[s]["bmi"] for s in names.SPLITS])
    assert np.isfinite(bmi).all()
    assert bmi[label == np.float32(1000 + 97 * 5 + 0.25)].tolist() == [0.0]


def test_schema_artifact_as_file_or_directory(tmp_path, synthetic_csv):
    from components.lib.schema_io import schema_file_of
    from components.lib.transform import load_schema

    schema_dir = infer_schema_file(synthetic_csv, tmp_path / "schema")
    assert schema_file_of(schema_dir, names.STAGE_TRANSFORM) == schema_dir / names.SCHEMA_FILE
    assert load_schema(schema_dir / names.SCHEMA_FILE, names.LABEL) == load_schema(schema_dir, names.LABEL)
    with pytest.raises(StageError, match=f"schema artifact has no {names.SCHEMA_FILE}"):
        load_schema(tmp_path, names.LABEL)


def test_schema_without_the_label_is_refused(tmp_path, write_csv):
    from components.lib.transform import load_schema

    csv = write_csv("age,sex\n19,female\n20,male\n")
    schema_dir = infer_schema_file(csv, tmp_path / "schema")
    with pytest.raises(StageError) as err:
        load_schema(schema_dir, names.LABEL)
    assert str(err.value) == (
        f"[transform] {schema_dir / names.SCHEMA_FILE}: schema has no label feature {names.LABEL!r}; "
        "its features are ['age', 'sex']"
    )
    (schema_dir / names.SCHEMA_FILE).write_text("feature { nme: 'x' }")
    with pytest.raises(StageError, match="not a valid text Schema proto"):
        load_schema(schema_dir, names.LABEL)


def test_preprocessing_fn_errors_name_the_module_file(storage_root, examples, synthetic_csv, tmp_path):
    schema_dir = infer_schema_file(synthetic_csv, tmp_path / "schema")
    module = storage_root / "modules" / "bad_preprocessing.py"  # on the volume
    module.parent.mkdir(exist_ok=True)
    module.write_text("def preprocessing_fn(inputs):\n    return {'x': inputs['no_such_feature']}\n")
    with pytest.raises(StageError) as err:
        run_transform_component(storage_root, examples, schema_dir, "bad-module", module_file=str(module))
    assert str(err.value) == (
        f"[transform] {module}: preprocessing_fn reads feature 'no_such_feature', which is not in the "
        f"data; the features are {sorted(names.COLUMNS)}: use a module for this data (or none: the "
        "default module)"
    )

    module.write_text("def preprocessing_fn(inputs):\n    return {'age': inputs['age']}\n")
    with pytest.raises(StageError, match="must pass the label 'charges' through"):
        run_transform_component(storage_root, examples, schema_dir, "bad-module", module_file=str(module))
    assert not (storage_root / names.ARTIFACTS_DIR / "bad-module" / names.STAGE_TRANSFORM).exists()


def test_beam_args_reach_beam_unchanged(storage_root, examples, tmp_path, synthetic_csv):
    from components.transform import transform

    schema_dir = infer_schema_file(synthetic_csv, tmp_path / "schema")
    with pytest.raises(StageError) as err:
        run_component(
            transform,
            tmp_path / "kfp",
            examples=examples,
            schema=dsl.Artifact(name="schema", uri=str(schema_dir), metadata={}),
            storage_root=str(storage_root),
            run_id="bad-runner",
            module_file="",
            beam_args="--runner=NoSuchRunnerKubetfx",
            label=names.LABEL,
        )
    assert str(err.value).startswith("[transform] beam_args '--runner=NoSuchRunnerKubetfx'")
    assert "NoSuchRunnerKubetfx" in str(err.value)


def test_missing_split_is_refused(tmp_path, synthetic_csv):
    from components.lib.transform import run_transform

    (tmp_path / "examples" / names.split_dir(names.TRAIN)).mkdir(parents=True)
    schema_dir = infer_schema_file(synthetic_csv, tmp_path / "schema")
    with pytest.raises(StageError) as err:
        run_transform(
            tmp_path / "examples",
            schema_dir,
            tmp_path / "out",
            module_file="",
            storage_root=str(tmp_path),
            beam_args=defaults.BEAM_ARGS,
            label=names.LABEL,
        )
    assert (
        str(err.value)
        == f"[transform] {tmp_path / 'examples' / names.split_dir(names.TRAIN)}: split 'train' has no files"
    )


def test_a_damaged_examples_file_is_a_stage_error_naming_it(tmp_path, examples, synthetic_csv):
    import shutil

    from components.lib.transform import run_transform

    source = Path(examples.metadata[names.META_STORAGE_PATH])
    copy = tmp_path / "examples"
    shutil.copytree(source, copy)
    damaged = sorted((copy / names.split_dir(names.TRAIN)).glob("*.gz"))[0]
    data = damaged.read_bytes()
    damaged.write_bytes(data[: len(data) // 2])  # a gzip stream cut short, as by a full disk
    schema_dir = infer_schema_file(synthetic_csv, tmp_path / "schema")
    with pytest.raises(StageError) as err:
        run_transform(
            copy,
            schema_dir,
            tmp_path / "out",
            module_file="",
            storage_root=str(tmp_path),
            beam_args=defaults.BEAM_ARGS,
            label=names.LABEL,
        )
    assert str(err.value).startswith(f"[transform] {damaged}: cannot read the examples: ")


def test_a_module_for_other_data_is_refused_naming_the_feature(tmp_path, write_csv):
    """The insurance module on a table without its columns: one line, before any graph is built."""
    import tabular_data

    csv = tabular_data.regression_csv(tmp_path / "homes.csv", rows=60)
    examples = examples_from_csv(tmp_path, csv, "other-data", label="target")
    schema_dir = infer_schema_file(csv, tmp_path / "schema")
    with pytest.raises(StageError) as err:
        run_transform_component(
            tmp_path, examples, schema_dir, "other-data", module_file=names.INSURANCE_MODULE, label="target"
        )
    from components.modules import insurance

    assert str(err.value) == (
        f"[transform] {insurance.__file__}: the module reads feature 'age', which is not in the data; the "
        "features are ['color', 'noise', 'rooms', 'size', 'target', 'zip']: use a module for this data "
        "(or none: the default module)"
    )


def test_text_in_a_column_the_module_reads_as_a_number_names_column_file_and_value(tmp_path, synthetic_csv):
    import pandas as pd

    df = pd.read_csv(synthetic_csv)
    df["bmi"] = [f"{v:.1f} kg/m2" for v in df["bmi"]]  # a unit in every cell: the column is text
    csv = tmp_path / "insurance_units.csv"
    df.to_csv(csv, index=False)
    examples = examples_from_csv(tmp_path, csv, "units")
    schema_dir = infer_schema_file(csv, tmp_path / "schema")
    with pytest.raises(StageError) as err:
        run_transform_component(tmp_path, examples, schema_dir, "units", module_file=names.INSURANCE_MODULE)
    message = str(err.value)
    assert message.startswith(f"[transform] {csv}: column 'bmi' holds text (for example '")
    assert message.endswith(
        " kg/m2') but the module uses it as a number: fix those cells, or give the column a type "
        "(column_types, schema_file) and clean it"
    )
    assert not (tmp_path / names.ARTIFACTS_DIR / "units" / names.STAGE_TRANSFORM).exists()
