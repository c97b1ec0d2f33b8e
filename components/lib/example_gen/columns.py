"""ExampleGen's first pass: the CSV files, their header, and each column's type and empty cells.

Types are what users expect: a column of digit strings with a leading zero (zip code ``00501``,
id ``007``) stays text, since as a number it would lose the zeros and no longer match the served
model's string form; a user schema or a per-column override (``column_types``:
``zip:string,age:float``) decides over inference, and a cell that does not fit the type decided
is an error naming the file, line, column and value.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from components import names
from components.errors import StageError
from components.lib import fs
from components.lib.schema_io import read_schema

STAGE = names.STAGE_EXAMPLE_GEN
BLOCK_SIZE = 4 << 20  # bytes of CSV per Arrow record batch

_INT_RE = r"^[-+]?\d+$"
_FLOAT_RE = r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$"
_LEADING_ZERO_RE = r"^[-+]?0\d+$"  # "00501", "007": an identifier, not a number

INT, FLOAT, STRING = "INT", "FLOAT", "BYTES"  # schema_pb2.FeatureType names
# What a column_types override may say, and the type each word means.
TYPE_WORDS = {
    "int": INT,
    "integer": INT,
    "float": FLOAT,
    "number": FLOAT,
    "string": STRING,
    "text": STRING,
    "bytes": STRING,
}


def parse_split_buckets(spec: str) -> list[tuple[str, int]]:
    """``"train:2,eval:1"`` -> ``[("train", 2), ("eval", 1)]``; must name train and eval."""
    out: list[tuple[str, int]] = []
    try:
        for part in spec.split(","):
            name, count = part.split(":")
            out.append((name.strip(), int(count)))
    except ValueError:
        raise StageError(STAGE, None, f"split buckets {spec!r} must look like 'train:2,eval:1'") from None
    got = [n for n, _ in out]
    if sorted(got) != sorted(names.SPLITS) or any(c <= 0 for _, c in out):
        raise StageError(
            STAGE, None, f"split buckets {spec!r} must give positive counts for exactly {list(names.SPLITS)}"
        )
    return out


def list_csv_files(input_path: str | Path) -> list[str | Path]:
    """The CSV file itself, or every ``*.csv`` in a folder (a URL prefix) in name order."""
    files = fs.list_files(input_path, ".csv", STAGE)
    if files is None:
        raise StageError(STAGE, str(input_path), "input file does not exist")
    if not files:
        raise StageError(STAGE, str(input_path), "folder contains no .csv files")
    return files


@contextlib.contextmanager
def csv_source(path: str | Path) -> Iterator[Any]:
    """What pyarrow's CSV reader reads: a local path as is (Arrow's own reader), a URL as a stream."""
    if not fs.is_url(path):
        yield str(path)
        return
    with fs.open_binary(path, STAGE) as fh:
        yield fh


def _read_header(path: str | Path) -> list[str]:
    import pyarrow as pa
    from pyarrow import csv

    if fs.size(path, STAGE) == 0:
        raise StageError(STAGE, str(path), "file is empty (no header, no rows)")
    try:
        with csv_source(path) as source:
            reader = csv.open_csv(source, read_options=csv.ReadOptions(block_size=1 << 16))
            header = list(reader.schema.names)
    except pa.ArrowInvalid as e:
        raise StageError(STAGE, str(path), f"not a readable CSV: {e}") from e
    if any(not h.strip() for h in header):
        raise StageError(STAGE, str(path), f"header has an empty column name: {header}")
    if len(set(header)) != len(header):
        raise StageError(STAGE, str(path), f"header repeats a column name: {header}")
    return header


def _string_batches(path: str | Path, columns: list[str]) -> Iterator[Any]:
    import pyarrow as pa
    from pyarrow import csv

    convert = csv.ConvertOptions(column_types={c: pa.string() for c in columns}, strings_can_be_null=True)
    try:
        with csv_source(path) as source:
            reader = csv.open_csv(
                source, read_options=csv.ReadOptions(block_size=BLOCK_SIZE), convert_options=convert
            )
            yield from reader
    except pa.ArrowInvalid as e:
        raise StageError(STAGE, str(path), f"malformed CSV: {e}") from e


@dataclasses.dataclass
class _ColumnCounts:
    """One column's counts during type inference, and its first non-numeric and non-integer cells."""

    nonnull: int = 0
    ints: int = 0
    floats: int = 0
    leading_zeros: int = 0
    first_bad: tuple[str | Path, int, Any] | None = None
    first_non_int: tuple[str | Path, int, Any] | None = None
    first_leading_zero: tuple[str | Path, int, Any] | None = None


def parse_column_types(spec: str, columns: list[str]) -> dict[str, str]:
    """``column_types``: ``"zip:string,age:float"`` or a JSON object -> {column: INT | FLOAT | BYTES}."""
    import json

    spec = (spec or "").strip()
    if not spec:
        return {}
    bad = StageError(
        STAGE, None, f"column_types {spec!r} must look like 'zip:string,age:float' or a JSON object"
    )
    if spec.startswith("{"):
        try:
            raw = json.loads(spec)
        except ValueError:
            raise bad from None
        if not isinstance(raw, dict):
            raise bad
        pairs = [(str(k), str(v)) for k, v in raw.items()]
    else:
        try:
            pairs = [(k.strip(), v.strip()) for k, v in (part.split(":") for part in spec.split(","))]
        except ValueError:
            raise bad from None
    out = {}
    for column, word in pairs:
        if column not in columns:
            raise StageError(STAGE, None, f"column_types names {column!r}, not a column of {columns}")
        kind = TYPE_WORDS.get(word.lower())
        if kind is None:
            raise StageError(
                STAGE, None, f"column_types: {column!r} has type {word!r}; use one of {sorted(TYPE_WORDS)}"
            )
        out[column] = kind
    return out


def _first(arr: Any, mask: Any, path: str | Path, line0: int) -> tuple[str | Path, int, Any]:
    """(file, line, value) of the first non-empty cell of a batch column where ``mask`` holds."""
    import pyarrow.compute as pc

    i = pc.index(pc.and_(pc.is_valid(arr), mask), True).as_py()
    return path, line0 + i, arr[i].as_py()


def count_cells(
    batches: Iterable[Any], columns: list[str], path: str | Path, line0: int
) -> tuple[dict[str, _ColumnCounts], int]:
    """Each column's counts over string batches whose first row is line ``line0``; the rows seen.

    The unit of the first pass: in process over a whole file (``line0`` 2: line 1 is the
    header), on Beam over one byte range (``line0`` 0: the driver shifts the lines with
    ``shift_lines`` once it knows how many rows the earlier ranges of the file hold).
    """
    import pyarrow.compute as pc

    stats = empty_counts(columns)
    rows = 0
    for batch in batches:
        for c in columns:
            arr = batch.column(c)
            s = stats[c]
            valid = arr.drop_null()
            s.nonnull += len(valid)
            if not len(valid):
                continue
            is_int = pc.match_substring_regex(arr, _INT_RE)
            is_float = pc.match_substring_regex(arr, _FLOAT_RE)
            n_int = pc.sum(is_int).as_py() or 0
            s.ints += n_int
            n_float = pc.sum(is_float).as_py() or 0
            s.floats += n_float
            if s.first_bad is None and n_float < len(valid):
                s.first_bad = _first(arr, pc.invert(pc.fill_null(is_float, False)), path, line0 + rows)
            if s.first_non_int is None and n_int < len(valid):
                s.first_non_int = _first(arr, pc.invert(pc.fill_null(is_int, False)), path, line0 + rows)
            if n_int:
                zeros = pc.fill_null(pc.match_substring_regex(arr, _LEADING_ZERO_RE), False)
                n_zero = pc.sum(zeros).as_py() or 0
                s.leading_zeros += n_zero
                if n_zero and s.first_leading_zero is None:
                    s.first_leading_zero = _first(arr, zeros, path, line0 + rows)
        rows += batch.num_rows
    return stats, rows


_FIRSTS = ("first_bad", "first_non_int", "first_leading_zero")


def empty_counts(columns: list[str]) -> dict[str, _ColumnCounts]:
    """Counts before any row: what ``merge_counts`` adds the input to."""
    return {c: _ColumnCounts() for c in columns}


def shift_lines(stats: dict[str, _ColumnCounts], by: int) -> dict[str, _ColumnCounts]:
    """The same counts with every first cell's line moved ``by`` lines down."""
    out = {}
    for c, s in stats.items():
        moved: dict[str, Any] = {
            f: (v[0], v[1] + by, v[2]) if (v := getattr(s, f)) is not None else None for f in _FIRSTS
        }
        out[c] = dataclasses.replace(s, **moved)
    return out


def merge_counts(total: dict[str, _ColumnCounts], later: dict[str, _ColumnCounts]) -> None:
    """Add ``later``'s counts (input that comes after ``total``'s) into ``total``."""
    for c, s in later.items():
        t = total[c]
        t.nonnull += s.nonnull
        t.ints += s.ints
        t.floats += s.floats
        t.leading_zeros += s.leading_zeros
        for f in _FIRSTS:
            if getattr(t, f) is None:
                setattr(t, f, getattr(s, f))


def counts_to_json(stats: dict[str, _ColumnCounts]) -> dict[str, Any]:
    """Counts as JSON (a Beam worker's answer to the driver)."""
    return {c: dataclasses.asdict(s) for c, s in stats.items()}


def counts_from_json(doc: dict[str, Any]) -> dict[str, _ColumnCounts]:
    """``counts_to_json``'s inverse."""
    out = {}
    for c, d in doc.items():
        firsts = {f: tuple(d[f]) if d[f] is not None else None for f in _FIRSTS}
        out[c] = _ColumnCounts(**{**d, **firsts})
    return out


def infer_column_types(
    files: list[str | Path], columns: list[str], decided: dict[str, str] | None = None
) -> tuple[dict[str, str], dict[str, int]]:
    """First pass over the input, in this process: each column's type and its count of empty cells.

    Rules in ``decide_types``; Beam's version of this pass is ``beam.inspect_beam``.
    """
    stats = empty_counts(columns)
    rows = 0
    for path in files:
        counts, n = count_cells(_string_batches(path, columns), columns, path, 2)  # line 1: header
        if n == 0:
            raise StageError(STAGE, str(path), "header only: the file has no data rows")
        merge_counts(stats, counts)
        rows += n
    return decide_types(stats, rows, files, decided)


def decide_types(
    stats: dict[str, _ColumnCounts], rows: int, files: list[str | Path], decided: dict[str, str] | None
) -> tuple[dict[str, str], dict[str, int]]:
    """Each column's type and count of empty cells, from the counts over the whole input.

    INT if every non-empty cell is an integer, FLOAT if every one is a number, BYTES
    otherwise — except that a mostly numeric column with a few non-numbers is an error
    naming the file, line and value (a typo in ``bmi`` must not turn it into a string feature),
    and that integers written with a leading zero (``00501``) keep the column BYTES.
    ``decided``: types a schema or an override fixed; every cell must fit them.
    """
    types: dict[str, str] = {}
    empty: dict[str, int] = {}
    decided = decided or {}
    for c, s in stats.items():
        empty[c] = rows - s.nonnull
        if s.nonnull == 0:
            raise StageError(STAGE, str(files[0]), f"column {c!r} is empty in every row")
        if c in decided:
            types[c] = _check_decided(c, decided[c], s)
        elif s.ints == s.nonnull and s.leading_zeros:
            types[c] = STRING  # digit strings with leading zeros are identifiers: keep "00501"
        elif s.ints == s.nonnull:
            types[c] = INT
        elif s.floats == s.nonnull:
            types[c] = FLOAT
        elif s.floats * 2 > s.nonnull and s.first_bad is not None:
            path, line, value = s.first_bad
            raise StageError(
                STAGE,
                str(path),
                f"line {line}: column {c!r} is numeric in {s.floats} of {s.nonnull} rows "
                f"but has the non-numeric value {value!r}",
            )
        else:
            types[c] = STRING
    return types, empty


def _check_decided(column: str, kind: str, s: _ColumnCounts) -> str:
    """The type a schema or an override gave ``column``, if every non-empty cell fits it."""
    first = s.first_non_int if kind == INT else s.first_bad if kind == FLOAT else None
    if first is not None:
        path, line, value = first
        what = "an integer" if kind == INT else "a number"
        raise StageError(
            STAGE,
            str(path),
            f"line {line}: column {column!r} must hold {what} ({kind}, as the schema or column_types say) "
            f"but has the value {value!r}",
        )
    if kind == INT and s.leading_zeros and s.first_leading_zero is not None:
        return INT  # asked for explicitly: the leading zeros go
    return kind


def column_types_from_schema(schema_path: Path, columns: list[str]) -> dict[str, str]:
    """Column types from a user-given TFDV schema (``schema.pbtxt``)."""
    from tensorflow_metadata.proto.v0 import schema_pb2

    schema = read_schema(schema_path, STAGE)
    by_name = {f.name: schema_pb2.FeatureType.Name(f.type) for f in schema.feature}
    missing = [c for c in columns if c not in by_name]
    if missing:
        raise StageError(STAGE, str(schema_path), f"schema has no feature for CSV column(s) {missing}")
    return {c: by_name[c] for c in columns}


def read_columns(files: list[str | Path], label: str) -> list[str]:
    """The header every file shares; it must hold the label."""
    columns = _read_header(files[0])
    for f in files[1:]:
        other = _read_header(f)
        if other != columns:
            raise StageError(STAGE, str(f), f"header {other} differs from {fs.name(files[0])}'s {columns}")
    if label not in columns:
        raise StageError(STAGE, str(files[0]), f"label column {label!r} is missing; columns are {columns}")
    return columns
