"""ExampleGen on the second export of a real table: the values that change between exports.

Integral decimals (``181.0``), missing-value tokens, non-finite numbers, encodings, unlabeled
rows and the served model's types: each checked on the records written, and each bad input as
its one line (file, line or byte, what to do).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from components import names
from components.errors import StageError
from components.lib.example_gen import run_example_gen
from components.lib.tfrecord import read_tfrecords

LABEL = "y"


def records(out: Path) -> dict[int, dict[str, object]]:
    """Every written example as {feature: value or None}, keyed by its ``id`` feature."""
    from components.lib.tf_example import example_class

    rows = {}
    for split in names.SPLITS:
        for f in sorted((out / names.split_dir(split)).glob("*.gz")):
            for record in read_tfrecords(f, names.STAGE_EXAMPLE_GEN):
                features = example_class().FromString(record).features.feature
                row = {}
                for name, feature in features.items():
                    kind = feature.WhichOneof("kind")
                    values = list(getattr(feature, kind).value) if kind else []
                    row[name] = values[0] if values else None
                rows[row["id"]] = row
    return rows


def table(column: str, cells: list[str], n: int = 30, label: list[str] | None = None) -> str:
    """CSV text: ``id``, ``column`` (``cells`` first, then ``"1"``), the label ``y`` (1.5, 2.5, …)."""
    labels = label or [f"{i}.5" for i in range(n)]
    values = cells + ["1"] * (n - len(cells))
    rows = "".join(f"{i},{v},{y}\n" for i, (v, y) in enumerate(zip(values, labels, strict=True)))
    return f"id,{column},y\n{rows}"


# --- 1. integral decimals stay integers -----------------------------------------------------------


def test_integral_decimals_stay_integers_exactly(tmp_path, write_csv):
    """pandas writes an int column that gained a gap as 181.0; 2**53 + 1 survives (no float64 trip)."""
    csv = write_csv(table("n", ["181.0", "2.00", "-3.0", "", "9007199254740993.0", "+7", "12."]))
    r = run_example_gen(csv, tmp_path / "out", label=LABEL)
    assert r.column_types["n"] == "INT" and r.empty_cells["n"] == 1
    got = records(tmp_path / "out")
    assert [got[i]["n"] for i in range(8)] == [181, 2, -3, None, 9007199254740993, 7, 12, 1]
    assert isinstance(got[0]["n"], int)


def test_a_fraction_anywhere_makes_the_column_float(tmp_path, write_csv):
    csv = write_csv(table("n", ["181.0", "2", "181.5"]))
    r = run_example_gen(csv, tmp_path / "out", label=LABEL)
    assert r.column_types["n"] == "FLOAT"
    assert records(tmp_path / "out")[2]["n"] == pytest.approx(181.5)


def test_int_override_takes_integral_decimals_and_refuses_a_fraction(tmp_path, write_csv):
    ok = write_csv(table("n", ["181.0", "2"]), name="ok.csv")
    r = run_example_gen(ok, tmp_path / "a", label=LABEL, column_types="n:int")
    assert r.column_types["n"] == "INT" and records(tmp_path / "a")[0]["n"] == 181
    bad = write_csv(table("n", ["181.0", "2", "181.5"]), name="bad.csv")
    with pytest.raises(StageError) as err:
        run_example_gen(bad, tmp_path / "b", label=LABEL, column_types="n:int")
    assert str(err.value) == (
        f"[example_gen] {bad}: line 4: column 'n' must hold an integer (INT, as the schema or "
        "column_types say) but has the value '181.5'"
    )


def test_an_integer_beyond_int64_is_one_line(tmp_path, write_csv):
    csv = write_csv(table("n", ["1", "2", "3", "99999999999999999999"]))
    with pytest.raises(StageError) as err:
        run_example_gen(csv, tmp_path / "out", label=LABEL)
    assert str(err.value) == (
        f"[example_gen] {csv}: line 5: column 'n' holds the integer '99999999999999999999', beyond "
        "int64's range (±9.2e18): fix the cell or make the column text (column_types=n:string)"
    )
    r = run_example_gen(csv, tmp_path / "text", label=LABEL, column_types="n:string")
    assert records(tmp_path / "text")[3]["n"] == b"99999999999999999999" and r.column_types["n"] == "BYTES"


# --- 2. missing-value tokens ----------------------------------------------------------------------


def test_na_tokens_are_missing_in_numeric_columns_and_values_in_text_ones(tmp_path, write_csv):
    """NA is North America in a text column; in a numeric one it is a missing value."""
    n = 30
    region = ["NA", "EU", "N/A", "null", *["APAC"] * (n - 4)]
    bmi = ["NA", "N/A", "null", "#N/A", "None", "n/a", "NULL", "", *["30.5"] * (n - 8)]
    text = "id,region,bmi,y\n" + "".join(f"{i},{region[i]},{bmi[i]},{i}.5\n" for i in range(n))
    r = run_example_gen(write_csv(text), tmp_path / "out", label=LABEL)
    assert r.column_types == {"id": "INT", "region": "BYTES", "bmi": "FLOAT", "y": "FLOAT"}
    assert r.empty_cells["bmi"] == 8 and r.empty_cells["region"] == 0
    got = records(tmp_path / "out")
    assert [got[i]["region"] for i in range(4)] == [b"NA", b"EU", b"N/A", b"null"]
    assert [got[i]["bmi"] for i in range(9)] == [None] * 8 + [pytest.approx(30.5)]


def test_na_values_are_missing_in_every_column(tmp_path, write_csv):
    n = 30
    region = ["NA", "?", *["EU"] * (n - 2)]
    age = ["?", "NA", *["40"] * (n - 2)]
    text = "id,region,age,y\n" + "".join(f"{i},{region[i]},{age[i]},{i}.5\n" for i in range(n))
    r = run_example_gen(write_csv(text), tmp_path / "out", label=LABEL, na_values="NA, ?")
    assert r.column_types["age"] == "INT" and r.column_types["region"] == "BYTES"
    assert r.empty_cells["region"] == 2 and r.empty_cells["age"] == 2
    got = records(tmp_path / "out")
    assert [got[i]["region"] for i in range(3)] == [None, None, b"EU"]
    assert [got[i]["age"] for i in range(3)] == [None, None, 40]


# --- 3. non-finite and out-of-range numbers -------------------------------------------------------


def test_non_finite_feature_cells_are_recorded_and_written_missing(tmp_path, write_csv):
    csv = write_csv(table("bmi", ["30.5", "inf", "1e39", "-Infinity", "NaN", "3.4e38", "2"]))
    r = run_example_gen(csv, tmp_path / "out", label=LABEL)
    assert r.column_types["bmi"] == "FLOAT"
    assert r.non_finite == {"bmi": {"count": 4, "first": f"{csv}:3", "value": "inf"}}
    assert r.metadata()["non_finite"] == r.non_finite and r.metadata()["dropped_unlabeled"] == 0
    assert r.empty_cells["bmi"] == 4
    got = records(tmp_path / "out")
    assert [got[i]["bmi"] for i in range(5)] == [pytest.approx(30.5), None, None, None, None]
    assert got[5]["bmi"] == pytest.approx(3.4e38, rel=1e-6)  # within float32: kept


def test_inf_in_an_integer_column_keeps_it_integer(tmp_path, write_csv):
    csv = write_csv(table("children", ["2", "inf", "3"]))
    r = run_example_gen(csv, tmp_path / "out", label=LABEL)
    assert r.column_types["children"] == "INT"
    assert r.non_finite == {"children": {"count": 1, "first": f"{csv}:3", "value": "inf"}}
    assert records(tmp_path / "out")[1]["children"] is None


@pytest.mark.parametrize(
    "value,problem",
    [
        ("1e39", "has the value '1e39', beyond float32's range (±3.4e38)"),
        ("inf", "has the non-finite value 'inf'"),
        ("nan", "has the non-finite value 'nan'"),
    ],
)
def test_a_non_finite_label_is_one_line(value, problem, tmp_path, write_csv):
    labels = [f"{i}.5" for i in range(30)]
    labels[5] = value
    csv = write_csv(table("x", [], label=labels))
    with pytest.raises(StageError) as err:
        run_example_gen(csv, tmp_path / "out", label=LABEL)
    assert str(err.value) == f"[example_gen] {csv}: line 7: label 'y' {problem}: fix the cell or drop the row"


# --- 4. encodings ---------------------------------------------------------------------------------

BAD_CP1252, BAD_UTF8, LATIN_O = (
    b"\x81",
    b"\xff",
    b"\xf6",
)  # unmapped in cp1252; never in UTF-8; 'ö' in latin-1
UNICODE = "id,city,y\n" + "".join(f"{i},{'Zürich' if i % 2 else 'Malmö'},{i}.5\n" for i in range(30))


def test_utf8_bom_stays_out_of_the_first_column_name(tmp_path, write_csv):
    csv = write_csv(b"\xef\xbb\xbf" + UNICODE.encode())
    r = run_example_gen(csv, tmp_path / "out", label=LABEL)
    assert list(r.column_types) == ["id", "city", "y"]
    assert records(tmp_path / "out")[1]["city"] == "Zürich".encode()


@pytest.mark.parametrize("encoding", ["latin-1", "cp1252", "utf-16", "utf-16-le", "utf-8-sig"])
def test_other_encodings_are_decoded(encoding, tmp_path, write_csv):
    data = UNICODE.encode(encoding)
    if encoding == "utf-16-le":
        data = "\ufeff".encode(encoding) + data  # a BOM Python's codec keeps: not glued to 'id'
    csv = write_csv(data)
    r = run_example_gen(csv, tmp_path / "out", label=LABEL, encoding=encoding)
    assert list(r.column_types) == ["id", "city", "y"] and r.metadata()["encoding"] == encoding
    got = records(tmp_path / "out")
    assert got[1]["city"] == "Zürich".encode() and got[2]["city"] == "Malmö".encode()


def test_a_byte_utf8_cannot_decode_is_one_line_with_its_offset(tmp_path, write_csv):
    data = UNICODE.encode("latin-1")  # 'ü' is the single byte 0xfc
    csv = write_csv(data)
    with pytest.raises(StageError) as err:
        run_example_gen(csv, tmp_path / "out", label=LABEL)
    offset = data.index(b"\xf6")  # row 0's 'ö'
    assert str(err.value) == (
        f"[example_gen] {csv}: not valid utf-8 at byte {offset} (0xf6); set the encoding parameter "
        "(e.g. encoding=latin-1) or re-save the file as UTF-8"
    )
    assert not (tmp_path / "out").exists()  # nothing written


def test_a_bad_byte_far_down_the_file_is_found_by_its_offset(tmp_path, write_csv):
    good = "".join(f"{i},abc,{i}.5\n" for i in range(5000)).encode()
    data = b"id,city,y\n" + good + b"5000,ab\xffc,1.5\n"
    csv = write_csv(data)
    with pytest.raises(StageError, match=rf"not valid utf-8 at byte {data.index(BAD_UTF8)} \(0xff\)"):
        run_example_gen(csv, tmp_path / "out", label=LABEL)


def test_a_byte_cp1252_cannot_decode(tmp_path, write_csv):
    data = b"id,city,y\n" + b"".join(b"%d,x,1.5\n" % i for i in range(20)) + b"20,\x81,1.5\n"
    csv = write_csv(data)
    with pytest.raises(StageError) as err:
        run_example_gen(csv, tmp_path / "out", label=LABEL, encoding="cp1252")
    assert str(err.value) == (
        f"[example_gen] {csv}: not valid cp1252 at byte {data.index(BAD_CP1252)} (0x81); set the encoding "
        "parameter to the file's encoding or re-save the file as UTF-8"
    )


@pytest.mark.parametrize("encoding,kind", [("utf-16", "UTF-16"), ("utf-32", "UTF-32")])
def test_a_utf16_or_utf32_file_read_as_utf8_says_so_at_its_header(encoding, kind, tmp_path, write_csv):
    csv = write_csv(UNICODE.encode(encoding))
    with pytest.raises(StageError) as err:
        run_example_gen(csv, tmp_path / "out", label=LABEL)
    assert str(err.value) == (
        f"[example_gen] {csv}: the file is {kind} (byte-order mark); set encoding={kind.lower()}"
    )
    csv = write_csv(UNICODE.encode(f"{encoding}-le"), name="nobom.csv")
    with pytest.raises(StageError, match="the header holds NUL bytes"):
        run_example_gen(csv, tmp_path / "out", label=LABEL)


def test_unknown_encoding_and_utf16_on_beam_are_refused_before_any_work(tmp_path, write_csv):
    csv = write_csv(UNICODE.encode("utf-16"))
    with pytest.raises(StageError, match=r"^\[example_gen\] encoding 'klingon' is unknown"):
        run_example_gen(csv, tmp_path / "out", label=LABEL, encoding="klingon")
    with pytest.raises(StageError) as err:
        run_example_gen(
            csv,
            tmp_path / "out",
            label=LABEL,
            encoding="utf-16",
            beam_args="--runner=DirectRunner --direct_running_mode=multi_processing",
        )
    assert str(err.value) == (
        f"[example_gen] {csv}: encoding utf-16 cannot be cut into byte ranges for Beam's workers (a "
        "newline is not one byte); re-save the file as UTF-8 or run in process (the default beam_args)"
    )


def test_the_beam_range_reader_reports_the_same_offset(tmp_path, write_csv):
    """A worker's byte range: the offset is the file's, not the range's."""
    from components.lib.example_gen import beam as eg_beam
    from components.lib.example_gen.counts import count_cells
    from components.lib.example_gen.reading import Reading

    data = UNICODE.encode("latin-1")
    csv = write_csv(data)
    ranges = eg_beam.byte_ranges([csv], 100)
    with pytest.raises(StageError) as err:
        for path, start, end in ranges:
            offset, block = eg_beam.read_range(path, start, end)
            count_cells(
                eg_beam.string_batches(block, ["id", "city", "y"], (path, offset), Reading()),
                [],
                path,
                0,
            )
    assert str(err.value).startswith(
        f"[example_gen] {csv}: not valid utf-8 at byte {data.index(LATIN_O)} (0xf6)"
    )


# --- 5. the label -------------------------------------------------------------------------------


def test_a_table_of_only_the_label_is_refused(tmp_path, write_csv):
    csv = write_csv("y\n1\n2\n3\n")
    with pytest.raises(StageError) as err:
        run_example_gen(csv, tmp_path / "out", label=LABEL)
    assert str(err.value) == (
        f"[example_gen] {csv}: the table holds only the label column 'y': there is no feature to learn from"
    )


def unlabeled_csv(write_csv, empty_rows: list[int], n: int = 40) -> Path:
    labels = [f"{i}.5" for i in range(n)]
    for k, i in enumerate(empty_rows):
        labels[i] = ["", "NA", "null"][k % 3]  # NA tokens are missing in a numeric label
    return write_csv(table("x", [], n=n, label=labels))


def test_empty_label_cells_are_named_by_line(tmp_path, write_csv):
    csv = unlabeled_csv(write_csv, [3, 7, 12])
    with pytest.raises(StageError) as err:
        run_example_gen(csv, tmp_path / "out", label=LABEL)
    assert str(err.value) == (
        f"[example_gen] {csv}: label column 'y' is empty in 3 row(s) (lines 5, 9, 14); "
        "drop them with drop_unlabeled=true or fill them"
    )
    csv = unlabeled_csv(write_csv, [3, 7, 12, 20, 30])
    with pytest.raises(StageError, match=r"empty in 5 row\(s\) \(lines 5, 9, 14 and 2 more\)"):
        run_example_gen(csv, tmp_path / "out", label=LABEL)


def test_empty_labels_in_a_folder_name_their_files(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    labels = [f"{i}.5" for i in range(20)]
    (folder / "a.csv").write_text(table("x", [], n=20, label=[*labels[:4], "", *labels[5:]]))
    (folder / "b.csv").write_text(table("x", [], n=20, label=["", *labels[1:]]))
    with pytest.raises(StageError) as err:
        run_example_gen(folder, tmp_path / "out", label=LABEL)
    assert str(err.value) == (
        f"[example_gen] {folder / 'a.csv'}: label column 'y' is empty in 2 row(s) (lines 6, b.csv:2); "
        "drop them with drop_unlabeled=true or fill them"
    )


def test_drop_unlabeled_drops_them(tmp_path, write_csv):
    labels = [f"{i}.5" for i in range(40)]
    labels[3], labels[7], labels[12], labels[20] = "", "NA", "inf", "1e39"
    csv = write_csv(table("x", [], n=40, label=labels))
    r = run_example_gen(csv, tmp_path / "out", label=LABEL, drop_unlabeled=True)
    assert r.dropped_unlabeled == 4 and r.metadata()["dropped_unlabeled"] == 4
    assert sum(r.rows.values()) == 36 and r.non_finite == {}
    got = records(tmp_path / "out")
    assert set(got) == set(range(40)) - {3, 7, 12, 20}
    assert all(row["y"] is not None for row in got.values())


# --- 6. the served model's types ----------------------------------------------------------------


def test_preferred_types_are_kept_where_the_data_fits(tmp_path, write_csv):
    n = 30
    text = "id,price,count,zip,size,y\n" + "".join(
        f"{i},{100 + i},{i}.5,{10000 + i},{'small' if i % 2 else 'large'},{i}.5\n" for i in range(n)
    )
    served = {"price": "FLOAT", "count": "INT", "zip": "BYTES", "size": "FLOAT", "gone": "INT"}
    r = run_example_gen(write_csv(text), tmp_path / "out", label=LABEL, preferred_types=served)
    # price: all integral now, served FLOAT -> FLOAT; count: 181.5-like, served INT -> FLOAT (inferred);
    # zip: digits, served BYTES -> BYTES; size: text, served FLOAT -> BYTES (inferred)
    assert r.column_types == {
        "id": "INT",
        "price": "FLOAT",
        "count": "FLOAT",
        "zip": "BYTES",
        "size": "BYTES",
        "y": "FLOAT",
    }
    got = records(tmp_path / "out")
    assert got[1]["price"] == 101.0 and got[1]["zip"] == b"10001"


def test_served_int_takes_integral_decimals_and_decided_types_win(tmp_path, write_csv):
    csv = write_csv(table("n", ["181.0", "2", "3"]))
    r = run_example_gen(csv, tmp_path / "a", label=LABEL, preferred_types={"n": "INT"})
    assert r.column_types["n"] == "INT" and records(tmp_path / "a")[0]["n"] == 181
    r = run_example_gen(
        csv, tmp_path / "b", label=LABEL, preferred_types={"n": "INT"}, column_types="n:float"
    )
    assert r.column_types["n"] == "FLOAT"
    with pytest.raises(StageError, match=r"preferred_types: 'n' has type 'decimal'"):
        run_example_gen(csv, tmp_path / "c", label=LABEL, preferred_types={"n": "decimal"})


def test_a_truncated_utf16_file_is_one_line(tmp_path, write_csv):
    data = UNICODE.encode("utf-16") + b"\x00"
    csv = write_csv(data)
    with pytest.raises(StageError) as err:
        run_example_gen(csv, tmp_path / "out", label=LABEL, encoding="utf-16")
    assert str(err.value).startswith(f"[example_gen] {csv}: not valid utf-16 at byte {len(data) - 1} (0x00)")


# --- the Beam path: the same rules, the same records --------------------------------------------


def test_beam_writes_the_records_the_in_process_path_writes(tmp_path, write_csv, monkeypatch):
    """Integral decimals, NA tokens, inf, a latin-1 file and dropped rows, on Beam's worker processes."""
    from beam_pool import MULTI_PROCESSING_ARGS

    from components.lib.example_gen import beam as eg_beam

    n = 60
    rows = [
        f"{i},{['181.0', 'NA', '7'][i % 3]},{['Zürich', 'NA'][i % 2]},{['1.5', 'inf'][i % 5 == 1]},{i}.5"
        for i in range(n)
    ]
    rows[10] = rows[10].rsplit(",", 1)[0] + ","  # no label
    csv = write_csv(("id,n,city,bmi,y\n" + "\n".join(rows) + "\n").encode("latin-1"))
    kwargs = {"label": LABEL, "encoding": "latin-1", "drop_unlabeled": True}
    local = run_example_gen(csv, tmp_path / "local", **kwargs)
    monkeypatch.setattr(eg_beam, "CHUNK_BYTES", 256)  # several byte ranges
    beam = run_example_gen(csv, tmp_path / "beam", beam_args=MULTI_PROCESSING_ARGS, **kwargs)
    assert beam.method == "beam"
    assert (
        local.column_types
        == beam.column_types
        == {"id": "INT", "n": "INT", "city": "BYTES", "bmi": "FLOAT", "y": "FLOAT"}
    )
    assert (local.empty_cells, local.non_finite, local.rows) == (beam.empty_cells, beam.non_finite, beam.rows)
    assert local.dropped_unlabeled == beam.dropped_unlabeled == 1
    assert local.non_finite["bmi"] == {"count": 12, "first": f"{csv}:3", "value": "inf"}
    assert records(tmp_path / "local") == records(tmp_path / "beam")
    got = records(tmp_path / "beam")
    assert (got[0]["n"], got[1]["n"], got[1]["city"], got[0]["city"]) == (181, None, b"NA", "Zürich".encode())
    # without drop_unlabeled: the same line on Beam, whose ranges' lines the driver shifts
    with pytest.raises(StageError) as in_process:
        run_example_gen(csv, tmp_path / "e1", label=LABEL, encoding="latin-1")
    with pytest.raises(StageError) as workers:
        run_example_gen(
            csv, tmp_path / "e2", label=LABEL, encoding="latin-1", beam_args=MULTI_PROCESSING_ARGS
        )
    assert str(workers.value) == str(in_process.value)
    assert "label column 'y' is empty in 1 row(s) (line 12)" in str(in_process.value)
