"""ExampleGen's first pass decides each column's type and empty cells, from the counts over all the input.

Types are what users expect: a column of digit strings with a leading zero (zip code ``00501``,
id ``007``) stays text, since as a number it would lose the zeros and no longer match the served
model's string form; a user schema or a per-column override (``column_types``:
``zip:string,age:float``) decides over inference, and a cell that does not fit the type decided
is an error naming the file, line, column and value.

Real exports change between runs, so the rules hold across them: an integer column that gained
a gap is written by pandas as ``181.0`` and stays INT; ``NA``/``null``-like tokens are missing
values only in an otherwise numeric column (``NA`` is North America in a text one);
``inf``/``nan`` and numbers float32 cannot hold are flagged, never written; and the types the
served model has are kept where the data still fits them (``preferred``), so a new export does
not silently change the schema.

The input is read in ``reading`` and counted in ``counts`` (the part Beam's workers run); here
are the rules that turn the merged counts into types, and the stage parameters that name types
and splits (``column_types``, a schema, ``preferred_types``, ``split_buckets``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from components import names
from components.errors import StageError
from components.lib import fs
from components.lib.example_gen.counts import (
    MAX_LINES,
    Cell,
    _ColumnCounts,
    count_cells,
    empty_counts,
    merge_counts,
)
from components.lib.example_gen.reading import STAGE, Reading, string_batches
from components.lib.schema_io import read_schema

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


def parse_preferred_types(preferred: dict[str, str] | None, columns: list[str]) -> dict[str, str]:
    """The served model's types ({column: INT | FLOAT | BYTES}, or the words of ``TYPE_WORDS``).

    A column the CSV no longer has is left out: validate reports the schema change.
    """
    out = {}
    for column, word in (preferred or {}).items():
        kind = (
            str(word).upper()
            if str(word).upper() in (INT, FLOAT, STRING)
            else TYPE_WORDS.get(str(word).lower())
        )
        if kind is None:
            raise StageError(
                STAGE, None, f"preferred_types: {column!r} has type {word!r}; use INT, FLOAT or BYTES"
            )
        if column in columns:
            out[column] = kind
    return out


@dataclasses.dataclass
class Decided:
    """What the first pass decided: each column's type, and what the records leave out.

    ``empty``: per column, the cells written as missing values over every input row (empty
    cells, ``NUMERIC_NA_TOKENS`` in a numeric column, non-finite numbers). ``non_finite``:
    per feature column, its ``inf``/``nan`` cells and numbers beyond float32 (written as
    missing: validate turns them into an anomaly). ``unlabeled``: rows without a usable label,
    dropped when ``drop_unlabeled`` (otherwise they are an error).
    """

    types: dict[str, str]
    empty: dict[str, int]
    non_finite: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    unlabeled: int = 0


def infer_column_types(
    files: list[str | Path],
    columns: list[str],
    decided: dict[str, str] | None = None,
    *,
    reading: Reading | None = None,
    label: str | None = None,
    preferred: dict[str, str] | None = None,
    drop_unlabeled: bool = False,
) -> Decided:
    """First pass over the input, in this process: each column's type and its count of empty cells.

    Rules in ``decide_types``; Beam's version of this pass is ``beam.inspect_beam``.
    """
    reading = reading or Reading()
    stats = empty_counts(columns)
    rows = 0
    for path in files:
        counts, n = count_cells(string_batches(path, columns, reading), columns, path, 2)  # line 1: header
        if n == 0:
            raise StageError(STAGE, str(path), "header only: the file has no data rows")
        merge_counts(stats, counts)
        rows += n
    return decide_types(
        stats, rows, files, decided, label=label, preferred=preferred, drop_unlabeled=drop_unlabeled
    )


def decide_types(
    stats: dict[str, _ColumnCounts],
    rows: int,
    files: list[str | Path],
    decided: dict[str, str] | None,
    *,
    label: str | None = None,
    preferred: dict[str, str] | None = None,
    drop_unlabeled: bool = False,
) -> Decided:
    """Each column's type and count of empty cells, from the counts over the whole input.

    Types per ``_column_type``; an INT column's cells must fit int64. The label's
    non-finite and empty cells are errors (``check_label``) unless ``drop_unlabeled``;
    a feature's are recorded in ``non_finite`` and written as missing values.
    """
    types: dict[str, str] = {}
    empty: dict[str, int] = {}
    order = {str(f): i for i, f in enumerate(files)}
    for c, s in stats.items():
        if s.nonnull == 0:
            raise StageError(STAGE, str(files[0]), f"column {c!r} is empty in every row")
        types[c] = _column_type(c, s, (decided or {}).get(c), (preferred or {}).get(c))
        empty[c] = rows - _values(s, types[c])
        if types[c] == INT and s.first_beyond_int64 is not None:
            path, line, value = s.first_beyond_int64
            raise StageError(
                STAGE,
                str(path),
                f"line {line}: column {c!r} holds the integer {value!r}, beyond int64's range (±9.2e18): "
                f"fix the cell or make the column text (column_types={c}:string)",
            )
    non_finite = {}
    for c, s in stats.items():
        bad = _non_finite(s, types[c], order)
        if bad is not None and c != label:
            path, line, value = bad[0]
            non_finite[c] = {"count": bad[1], "first": f"{path}:{line}", "value": value}
    unlabeled = 0
    if label is not None:
        unlabeled = check_label(label, stats[label], types[label], empty[label], rows, order, drop_unlabeled)
    return Decided(types, empty, non_finite, unlabeled)


def _values(s: _ColumnCounts, kind: str) -> int:
    """Cells written as values in a column of ``kind`` (the rest are missing)."""
    if kind == STRING:
        return s.nonnull
    return s.nonnull - s.na_tokens - s.nonfinite - (s.beyond_float32 if kind == FLOAT else 0)


def _column_type(c: str, s: _ColumnCounts, decided: str | None, preferred: str | None) -> str:
    """INT if every value is an integer or integral (``181.0``), FLOAT if a number, else BYTES.

    Values: the cells that are not empty, an NA token or inf/nan. Except that ``decided`` (a
    schema, ``column_types``) wins and every cell must fit it; the ``preferred`` type (the
    served model's) wins where the data fits it, so a new export keeps the served schema;
    integers with a leading zero (``00501``) keep the column BYTES; and a mostly numeric
    column with a few non-numbers is an error naming the file, line and value (a typo in ``bmi`` must not turn
    it into a string feature).
    """
    values = s.nonnull - s.na_tokens - s.nonfinite
    numeric = values > 0 and s.floats == values
    integral = numeric and s.ints == values
    if decided is not None:
        return _check_decided(c, decided, s)
    fits = {STRING: True, FLOAT: numeric, INT: integral and s.first_beyond_int64 is None}
    if preferred is not None and fits[preferred]:
        return preferred
    if integral:
        return STRING if s.leading_zeros else INT  # digit strings with leading zeros are identifiers
    if numeric:
        return FLOAT
    if values and s.floats * 2 > values and s.first_bad is not None:
        path, line, value = s.first_bad
        raise StageError(
            STAGE,
            str(path),
            f"line {line}: column {c!r} is numeric in {s.floats} of {values} rows "
            f"but has the non-numeric value {value!r}",
        )
    return STRING


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
    return kind  # INT asked for explicitly: leading zeros go


def _non_finite(s: _ColumnCounts, kind: str, order: dict[str, int]) -> tuple[Cell, int] | None:
    """The first non-finite cell of a numeric column, and their count (beyond float32: FLOAT only)."""
    if kind == STRING:
        return None
    cells = [s.first_nonfinite, s.first_beyond_float32 if kind == FLOAT else None]
    found = [cell for cell in cells if cell is not None]
    if not found:
        return None
    count = s.nonfinite + (s.beyond_float32 if kind == FLOAT else 0)
    return min(found, key=lambda cell: (order[str(cell[0])], cell[1])), count


def check_label(
    label: str, s: _ColumnCounts, kind: str, missing: int, rows: int, order: dict[str, int], drop: bool
) -> int:
    """The rows without a usable label (dropped if ``drop``); otherwise the first such cell is an error.

    A non-finite label cannot be learned from, and an empty one is not an example: both are
    errors naming the file and lines, unless ``drop_unlabeled`` drops their rows.
    """
    if drop:
        if missing >= rows:
            raise StageError(
                STAGE, str(next(iter(order))), f"label column {label!r} has no usable value in any row"
            )
        return missing
    bad = _non_finite(s, kind, order)
    if bad is not None:
        (path, line, value), _ = bad
        beyond = bad[0] == s.first_beyond_float32
        what = (
            f"the value {value!r}, beyond float32's range (±3.4e38)"
            if beyond
            else f"the non-finite value {value!r}"
        )
        raise StageError(
            STAGE, str(path), f"line {line}: label {label!r} has {what}: fix the cell or drop the row"
        )
    if missing:
        lines = s.empty_lines + (s.na_lines if kind != STRING else [])
        lines = sorted(lines, key=lambda cell: (order[str(cell[0])], cell[1]))[:MAX_LINES]
        path = lines[0][0]
        named = [str(line) if p == path else f"{fs.name(p)}:{line}" for p, line in lines]
        more = f" and {missing - len(named)} more" if missing > len(named) else ""
        raise StageError(
            STAGE,
            str(path),
            f"label column {label!r} is empty in {missing} row(s) ({'line' if len(named) == 1 else 'lines'} "
            f"{', '.join(named)}{more}); drop them with drop_unlabeled=true or fill them",
        )
    return 0


def column_types_from_schema(schema_path: Path, columns: list[str]) -> dict[str, str]:
    """Column types from a user-given TFDV schema (``schema.pbtxt``)."""
    from tensorflow_metadata.proto.v0 import schema_pb2

    schema = read_schema(schema_path, STAGE)
    by_name = {f.name: schema_pb2.FeatureType.Name(f.type) for f in schema.feature}
    missing = [c for c in columns if c not in by_name]
    if missing:
        raise StageError(STAGE, str(schema_path), f"schema has no feature for CSV column(s) {missing}")
    return {c: by_name[c] for c in columns}
