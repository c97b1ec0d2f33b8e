"""ExampleGen: CSV -> gzipped tf.Example TFRecords, and every kind of bad input."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from conftest import examples_from_csv, output_artifacts

from components import names
from components.errors import StageError
from components.example_gen import example_gen
from components.lib.example_gen import parse_split_buckets, run_example_gen
from components.lib.tfrecord import read_tfrecords

HEADER = "age,sex,bmi,children,smoker,region,charges"
ROWS = [
    "19,female,27.9,0,yes,southwest,16884.924",
    "18,male,33.77,1,no,southeast,1725.5523",
    "28,male,33,3,no,southeast,4449.462",
    "33,male,22.705,0,no,northwest,21984.47061",
    "32,male,28.88,0,no,northwest,3866.8552",
    "31,female,25.74,0,no,southeast,3756.6216",
    "46,female,33.44,1,no,southeast,8240.5896",
    "37,female,27.74,3,no,northwest,7281.5056",
    "37,male,29.83,2,no,northeast,6406.4107",
    "60,female,25.84,0,no,northwest,28923.13692",
]


def split_records(out: Path, split: str) -> list[bytes]:
    files = sorted((out / names.split_dir(split)).glob("*.gz"))
    return [r for f in files for r in read_tfrecords(f, names.STAGE_EXAMPLE_GEN)]


def test_writes_tfx_layout_readable_by_tensorflow(tmp_path, write_csv):
    import tensorflow as tf

    csv = write_csv("\n".join([HEADER, *ROWS * 6]) + "\n")
    result = run_example_gen(csv, tmp_path / "out", label=names.LABEL)
    assert sum(result.rows.values()) == 60
    assert result.column_types == {
        "age": "INT",
        "sex": "BYTES",
        "bmi": "FLOAT",
        "children": "INT",
        "smoker": "BYTES",
        "region": "BYTES",
        "charges": "FLOAT",
    }
    files = list((tmp_path / "out" / "Split-eval").glob("data_tfrecord-*.gz"))
    assert len(files) == 1
    records = list(tf.data.TFRecordDataset([str(f) for f in files], compression_type="GZIP"))
    assert len(records) == result.rows[names.EVAL]
    example = tf.train.Example.FromString(records[0].numpy())
    assert set(example.features.feature) == set(names.COLUMNS)
    assert example.features.feature["sex"].bytes_list.value[0] in (b"female", b"male")


def test_hash_split_follows_tfx_rule_and_is_deterministic(tmp_path, synthetic_csv):
    a = run_example_gen(synthetic_csv, tmp_path / "a", label=names.LABEL, split_buckets="train:2,eval:1")
    b = run_example_gen(synthetic_csv, tmp_path / "b", label=names.LABEL, split_buckets="train:2,eval:1")
    assert a.rows == b.rows
    assert split_records(tmp_path / "a", names.EVAL) == split_records(tmp_path / "b", names.EVAL)
    # TFX CsvExampleGen: sha256(serialized example) % 3 -> buckets 0-1 train, 2 eval.
    for split, allowed in ((names.TRAIN, {0, 1}), (names.EVAL, {2})):
        for record in split_records(tmp_path / "a", split):
            assert int.from_bytes(hashlib.sha256(record).digest(), "big") % 3 in allowed
    assert 0.55 < a.rows[names.TRAIN] / 300 < 0.78


def test_split_ratio_is_configurable(tmp_path, synthetic_csv):
    r = run_example_gen(synthetic_csv, tmp_path / "o", label=names.LABEL, split_buckets="train:9,eval:1")
    assert r.rows[names.TRAIN] > 5 * r.rows[names.EVAL]


@pytest.mark.parametrize("spec", ["train:2", "train:2,eval:0", "train=2,eval=1", "train:2,test:1"])
def test_bad_split_spec(spec):
    with pytest.raises(StageError, match=r"\[example_gen\] .*split buckets"):
        parse_split_buckets(spec)


def test_folder_of_csvs(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.csv").write_text("\n".join([HEADER, *ROWS]) + "\n")
    (folder / "b.csv").write_text("\n".join([HEADER, *ROWS[::-1]]) + "\n")
    (folder / "notes.txt").write_text("ignored")
    r = run_example_gen(folder, tmp_path / "out", label=names.LABEL)
    assert sum(r.rows.values()) == 20 and len(r.files) == 2


def test_bom_and_crlf_simply_work(tmp_path, write_csv):
    text = "\r\n".join([HEADER, *ROWS * 3]) + "\r\n"
    csv = write_csv(b"\xef\xbb\xbf" + text.encode())
    r = run_example_gen(csv, tmp_path / "out", label=names.LABEL)
    assert "age" in r.column_types and r.column_types["age"] == "INT"  # BOM not glued to 'age'
    assert r.column_types["charges"] == "FLOAT"  # no '\r' left on the last column
    from components.lib.tf_example import example_class

    example = example_class().FromString(split_records(tmp_path / "out", names.TRAIN)[0])
    assert set(example.features.feature) == set(names.COLUMNS)
    assert example.features.feature["region"].bytes_list.value[0] in {r.split(",")[5].encode() for r in ROWS}


def test_empty_feature_cells_are_missing_values(tmp_path, write_csv):
    rows = [*ROWS * 3, "40,female,,2,no,,9000.5"]
    r = run_example_gen(write_csv("\n".join([HEADER, *rows]) + "\n"), tmp_path / "out", label=names.LABEL)
    assert r.empty_cells["bmi"] == 1 and r.empty_cells["region"] == 1
    assert r.column_types["bmi"] == "FLOAT"


def test_column_types_from_given_schema(tmp_path, write_csv):
    schema = tmp_path / "schema.pbtxt"
    schema.write_text(
        "".join(
            f'feature {{ name: "{c}" type: {t} }}\n'
            for c, t in zip(
                names.COLUMNS, ["FLOAT", "BYTES", "FLOAT", "INT", "BYTES", "BYTES", "FLOAT"], strict=False
            )
        )
    )
    r = run_example_gen(
        write_csv("\n".join([HEADER, *ROWS * 3])), tmp_path / "o", label=names.LABEL, schema_path=schema
    )
    assert r.column_types["age"] == "FLOAT"


def test_digit_strings_with_leading_zeros_stay_text(tmp_path, write_csv):
    """A zip code "00501" read as the number 501 would no longer match what a client sends."""
    from components.lib.tf_example import example_class

    csv = write_csv("zip,n,y\n" + "00501,7,1.5\n10001,8,2.5\n02134,9,3.5\n60601,10,4.5\n" * 4)
    r = run_example_gen(csv, tmp_path / "out", label="y")
    assert r.column_types == {"zip": "BYTES", "n": "INT", "y": "FLOAT"}
    values = set()
    for split in names.SPLITS:
        for record in split_records(tmp_path / "out", split):
            values.update(example_class().FromString(record).features.feature["zip"].bytes_list.value)
    assert b"00501" in values and b"02134" in values


def test_column_types_override_inference_and_are_checked(tmp_path, write_csv):
    csv = write_csv("zip,n,y\n" + "501,7,1\n10001,8,2\n2134,9,3\n" * 4)
    r = run_example_gen(csv, tmp_path / "a", label="y", column_types="zip:string, y:float")
    assert r.column_types == {"zip": "BYTES", "n": "INT", "y": "FLOAT"}
    r = run_example_gen(csv, tmp_path / "b", label="y", column_types='{"n": "float"}')
    assert r.column_types["n"] == "FLOAT"
    bad = write_csv("zip,n,y\n" + "501,7,1\n10001,seven,2\n2134,9,3\n" * 4, name="bad.csv")
    with pytest.raises(StageError) as err:
        run_example_gen(bad, tmp_path / "c", label="y", column_types="n:int")
    assert str(err.value) == (
        f"[example_gen] {bad}: line 3: column 'n' must hold an integer (INT, as the schema or "
        "column_types say) but has the value 'seven'"
    )
    for spec, problem in (
        ("n:decimal", "use one of"),
        ("m:int", "not a column of"),
        ("n=int", "must look like"),
    ):
        with pytest.raises(StageError, match=problem):
            run_example_gen(csv, tmp_path / "d", label="y", column_types=spec)


BAD_INPUTS = [
    ("missing", None, "input file does not exist"),
    ("empty", "", "file is empty"),
    ("header only", HEADER + "\n", "header only"),
    ("no label", "age,sex,bmi\n19,female,27.9\n", "label column 'charges' is missing"),
    (
        "non-numeric",
        "\n".join([HEADER, *ROWS[:5], "19,female,abc,0,yes,southwest,16884.9", *ROWS[5:]]),
        r"line 7: column 'bmi' is numeric .* non-numeric value 'abc'",
    ),
    (
        "empty label",
        "\n".join([HEADER, *ROWS[:3], "19,female,27.9,0,yes,southwest,", *ROWS[3:]]),
        "label column 'charges' is empty in 1 row",
    ),
]


@pytest.mark.parametrize("case,content,message", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_names_stage_file_problem_and_leaves_nothing(case, content, message, tmp_path, write_csv):
    storage = tmp_path  # the CSV is written on the volume
    csv = tmp_path / "absent.csv" if content is None else write_csv(content)
    outputs = output_artifacts(example_gen, tmp_path / "kfp")
    with pytest.raises(StageError, match=message) as err:
        example_gen.python_func(
            storage_root=str(storage),
            data=str(csv),
            run_id="r",
            label=names.LABEL,
            split_buckets="train:2,eval:1",
            schema_file="",
            **outputs,
        )
    assert str(err.value).startswith(f"[{names.STAGE_EXAMPLE_GEN}] {csv}")
    stage_parent = storage / names.ARTIFACTS_DIR / "r"
    assert not stage_parent.exists() or list(stage_parent.iterdir()) == []  # no partial output
    assert not Path(outputs["examples"].path).exists()


def test_headers_must_agree_across_folder(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.csv").write_text("\n".join([HEADER, *ROWS]))
    (folder / "b.csv").write_text("age,sex,charges\n1,m,2\n")
    with pytest.raises(StageError, match=r"b\.csv: header .* differs"):
        run_example_gen(folder, tmp_path / "out", label=names.LABEL)


def test_component_points_at_examples_on_the_volume(tmp_path, synthetic_csv):
    examples = examples_from_csv(tmp_path, synthetic_csv, "run-1")
    where = Path(examples.metadata[names.META_STORAGE_PATH])
    assert where == tmp_path / names.ARTIFACTS_DIR / "run-1" / names.STAGE_EXAMPLE_GEN
    assert sum(examples.metadata[names.META_ROWS].values()) == 300
    assert (where / "Split-train").is_dir() and (where / "Split-eval").is_dir()
    assert len(examples.metadata[names.META_FINGERPRINT]) == 64
    assert Path(examples.path).exists()  # the manifest KFP uploads


def test_real_insurance_csv(tmp_path, insurance_csv):
    r = run_example_gen(insurance_csv, tmp_path / "out", label=names.LABEL)
    assert sum(r.rows.values()) == 1338
    assert set(r.column_types) == set(names.COLUMNS)
    assert r.column_types[names.LABEL] == "FLOAT"
