"""ExampleGen's first pass: the CSV files, their header, and each column's type and empty cells.

Types are what users expect: a column of digit strings with a leading zero (zip code ``00501``,
id ``007``) stays text, since as a number it would lose the zeros and no longer match the served
model's string form; a user schema or a per-column override (``column_types``:
``zip:string,age:float``) decides over inference, and a cell that does not fit the type decided
is an error naming the file, line, column and value.

Real exports change between runs, so the rules hold across them: an integer column that gained
a gap is written by pandas as ``181.0`` and stays INT; ``NA``/``null``-like tokens are missing
values only in an otherwise numeric column (``NA`` is North America in a text one);
``inf``/``nan`` and numbers float32 cannot hold are flagged, never written; the file's encoding
is checked before any record is written; and the types the served model has are kept where the
data still fits them (``preferred``), so a new export does not silently change the schema.
"""

from __future__ import annotations

import codecs
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

_INT_RE = r"^[-+]?\d+(\.0*)?$"  # an integer, or an integral decimal as pandas writes one: "181.0"
_FLOAT_RE = r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$"
_LEADING_ZERO_RE = r"^[-+]?0\d+$"  # "00501", "007": an identifier, not a number
NON_FINITE_RE = r"^[-+]?(inf|infinity|nan)$"  # matched ignoring case
# Missing values in an otherwise numeric column (values in a text one: NA is North America).
NUMERIC_NA_TOKENS = ("NA", "N/A", "n/a", "NULL", "null", "None", "#N/A")
MAX_LINES = 3  # lines of empty label cells an error names
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

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


@dataclasses.dataclass(frozen=True)
class Reading:
    """How a CSV's bytes become cells: its encoding, and the tokens missing in every column.

    Only the empty cell (and ``na_values``) is read as missing: pyarrow's default list
    (``NA``, ``null``, ``#N/A``, …) would drop real values of text columns; those tokens are
    handled per column type after the first pass (``NUMERIC_NA_TOKENS``).
    """

    encoding: str = "utf-8"
    na_values: tuple[str, ...] = ()

    @property
    def codec(self) -> str:
        return codecs.lookup(self.encoding).name

    @property
    def is_utf8(self) -> bool:
        return self.codec in ("utf-8", "utf-8-sig")

    @property
    def splits_at_newline_bytes(self) -> bool:
        """Whether a newline byte always ends a line (not so in UTF-16/32), as byte ranges assume."""
        return self.is_utf8 or "a,\n".encode(self.codec) == b"a,\n"

    def read_options(self, **kwargs: Any) -> Any:
        """Arrow reads UTF-8 itself (and skips its BOM); any other encoding through Python's codec."""
        from pyarrow import csv

        return csv.ReadOptions(encoding="utf8" if self.is_utf8 else self.encoding, **kwargs)

    def string_options(self, columns: list[str]) -> Any:
        """Every column as text; an empty cell or an ``na_values`` token is a null."""
        import pyarrow as pa
        from pyarrow import csv

        return csv.ConvertOptions(
            column_types={c: pa.string() for c in columns},
            strings_can_be_null=True,
            null_values=["", *self.na_values],
        )


def make_reading(encoding: str = "utf-8", na_values: str = "") -> Reading:
    """``encoding`` and ``na_values`` (``"NA,?"``) as given to the stage, checked."""
    try:
        codecs.lookup(encoding or "utf-8")
    except LookupError:
        raise StageError(
            STAGE, None, f"encoding {encoding!r} is unknown; use e.g. utf-8, latin-1, cp1252 or utf-16"
        ) from None
    tokens = tuple(t.strip() for t in (na_values or "").split(",") if t.strip())
    return Reading(encoding or "utf-8", tokens)


def undecodable(chunks: Iterable[bytes], codec: str) -> tuple[int, int] | None:
    """(offset, value) of the first byte ``codec`` cannot decode in the chunks laid end to end."""
    decoder = codecs.getincrementaldecoder(codec)()
    done = 0
    for chunk in _then_none(chunks):
        pending = decoder.getstate()[0]
        try:
            decoder.decode(chunk or b"", final=chunk is None)
        except UnicodeDecodeError as e:
            data = pending + (chunk or b"")
            return done - len(pending) + e.start, data[e.start]
        done += len(chunk or b"")
    return None


def _then_none(chunks: Iterable[bytes]) -> Iterator[bytes | None]:
    yield from chunks
    yield None


def _file_chunks(path: str | Path) -> Iterator[bytes]:
    with fs.open_binary(path, STAGE) as fh:
        yield from iter(lambda: fh.read(1 << 20), b"")


def encoding_error(path: str | Path, found: tuple[int, int], reading: Reading) -> StageError:
    """The one line for a byte the encoding cannot decode: where, which, and what to set."""
    offset, value = found
    if reading.is_utf8:
        return StageError(
            STAGE,
            str(path),
            f"not valid utf-8 at byte {offset} (0x{value:02x}); set the encoding parameter "
            "(e.g. encoding=latin-1) or re-save the file as UTF-8",
        )
    return StageError(
        STAGE,
        str(path),
        f"not valid {reading.encoding} at byte {offset} (0x{value:02x}); set the encoding parameter "
        "to the file's encoding or re-save the file as UTF-8",
    )


def decoding_failed(error: BaseException) -> bool:
    """Whether a read failed on the text's bytes (not its CSV form): then finding the byte is worth a scan."""
    return isinstance(error, UnicodeDecodeError) or "UTF8" in str(error)


def raise_if_undecodable(
    path: str | Path, chunks: Iterable[bytes], reading: Reading, offset: int = 0
) -> None:
    """After a read failed: the encoding error, if a byte of ``chunks`` (at ``offset``) is the cause."""
    found = undecodable(chunks, reading.codec)
    if found is not None:
        raise encoding_error(path, (offset + found[0], found[1]), reading)


_BOMS = (
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe", "UTF-16"),
    (b"\xfe\xff", "UTF-16"),
)


def _check_wide_text(path: str | Path, reading: Reading) -> None:
    """A UTF-16/32 file read as a byte encoding: said at once, before its header becomes garbage."""
    if reading.codec.startswith(("utf-16", "utf-32")):
        return
    with fs.open_binary(path, STAGE) as fh:
        head = fh.read(1 << 16)
    for bom, kind in _BOMS:
        if head.startswith(bom):
            raise StageError(
                STAGE, str(path), f"the file is {kind} (byte-order mark); set encoding={kind.lower()}"
            )
    if b"\x00" in head.split(b"\n", 1)[0]:
        raise StageError(
            STAGE,
            str(path),
            "the header holds NUL bytes, as UTF-16 or UTF-32 text does; set the encoding parameter "
            "(e.g. encoding=utf-16-le)",
        )


@contextlib.contextmanager
def csv_source(path: str | Path) -> Iterator[Any]:
    """What pyarrow's CSV reader reads: a local path as is (Arrow's own reader), a URL as a stream."""
    if not fs.is_url(path):
        yield str(path)
        return
    with fs.open_binary(path, STAGE) as fh:
        yield fh


def _read_header(path: str | Path, reading: Reading) -> list[str]:
    import pyarrow as pa
    from pyarrow import csv

    if fs.size(path, STAGE) == 0:
        raise StageError(STAGE, str(path), "file is empty (no header, no rows)")
    _check_wide_text(path, reading)
    try:
        with csv_source(path) as source:
            reader = csv.open_csv(source, read_options=reading.read_options(block_size=1 << 16))
            header = list(reader.schema.names)
    except (pa.ArrowInvalid, UnicodeDecodeError) as e:
        if decoding_failed(e):
            raise_if_undecodable(path, _file_chunks(path), reading)
        raise StageError(STAGE, str(path), f"not a readable CSV: {e}") from e
    if header:
        header[0] = header[0].removeprefix("\ufeff")  # a BOM Python's codec left (utf-16-le, …)
    if any(not h.strip() for h in header):
        raise StageError(STAGE, str(path), f"header has an empty column name: {header}")
    if len(set(header)) != len(header):
        raise StageError(STAGE, str(path), f"header repeats a column name: {header}")
    return header


def string_batches(path: str | Path, columns: list[str], reading: Reading) -> Iterator[Any]:
    """One file's rows (after its header) as Arrow record batches of strings; what both passes read."""
    import pyarrow as pa
    from pyarrow import csv

    read = reading.read_options(block_size=BLOCK_SIZE, column_names=columns, skip_rows=1)
    try:
        with csv_source(path) as source:
            yield from csv.open_csv(
                source, read_options=read, convert_options=reading.string_options(columns)
            )
    except (pa.ArrowInvalid, UnicodeDecodeError) as e:
        if decoding_failed(e):
            raise_if_undecodable(path, _file_chunks(path), reading)
        raise StageError(STAGE, str(path), f"malformed CSV: {e}") from e


Cell = tuple  # (file, line, value) of one cell; (file, line) in the lists of lines


@dataclasses.dataclass
class _ColumnCounts:
    """One column's counts during type inference, and the first cells of each kind that matter.

    ``nonnull``: cells neither empty nor an ``na_values`` token; of those, ``na_tokens`` are
    ``NUMERIC_NA_TOKENS`` and ``nonfinite`` are ``inf``/``nan`` text (both missing in a numeric
    column), ``ints`` integers or integral decimals, ``floats`` finite-looking numbers, and
    ``beyond_float32`` numbers float32 holds only as infinity.
    """

    nonnull: int = 0
    ints: int = 0
    floats: int = 0
    leading_zeros: int = 0
    na_tokens: int = 0
    nonfinite: int = 0
    beyond_float32: int = 0
    first_bad: Cell | None = None
    first_non_int: Cell | None = None
    first_leading_zero: Cell | None = None
    first_nonfinite: Cell | None = None
    first_beyond_float32: Cell | None = None
    first_beyond_int64: Cell | None = None
    empty_lines: list[Cell] = dataclasses.field(default_factory=list)
    na_lines: list[Cell] = dataclasses.field(default_factory=list)


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


def _first(arr: Any, mask: Any, path: str | Path, line0: int) -> Cell:
    """(file, line, value) of the first non-empty cell of a batch column where ``mask`` holds."""
    import pyarrow.compute as pc

    i = pc.index(pc.and_(pc.is_valid(arr), pc.fill_null(mask, False)), True).as_py()
    return path, line0 + i, arr[i].as_py()


def _lines(mask: Any, path: str | Path, line0: int, room: int) -> list[Cell]:
    """(file, line) of the first ``room`` rows where ``mask`` holds."""
    import pyarrow.compute as pc

    found = pc.indices_nonzero(pc.fill_null(mask, False))[:room].to_pylist()
    return [(path, line0 + i) for i in found]


def _count(mask: Any) -> int:
    import pyarrow.compute as pc

    return pc.sum(mask).as_py() or 0


def count_cells(
    batches: Iterable[Any], columns: list[str], path: str | Path, line0: int
) -> tuple[dict[str, _ColumnCounts], int]:
    """Each column's counts over string batches whose first row is line ``line0``; the rows seen.

    The unit of the first pass: in process over a whole file (``line0`` 2: line 1 is the
    header), on Beam over one byte range (``line0`` 0: the driver shifts the lines with
    ``shift_lines`` once it knows how many rows the earlier ranges of the file hold).
    """
    stats = empty_counts(columns)
    rows = 0
    for batch in batches:
        for c in columns:
            _count_column(batch.column(c), stats[c], path, line0 + rows)
        rows += batch.num_rows
    return stats, rows


def _count_column(arr: Any, s: _ColumnCounts, path: str | Path, line0: int) -> None:
    """Add one batch column (first row: line ``line0``) to its counts."""
    import pyarrow as pa
    import pyarrow.compute as pc

    nonnull = len(arr) - arr.null_count
    s.nonnull += nonnull
    if arr.null_count and len(s.empty_lines) < MAX_LINES:
        s.empty_lines += _lines(arr.is_null(), path, line0, MAX_LINES - len(s.empty_lines))
    if not nonnull:
        return
    is_int = pc.match_substring_regex(arr, _INT_RE)
    is_float = pc.match_substring_regex(arr, _FLOAT_RE)
    n_int, n_float = _count(is_int), _count(is_float)
    s.ints += n_int
    s.floats += n_float
    missing = pa.scalar(False)  # NA tokens and inf/nan: none where every cell is a number
    n_missing = 0
    if n_float < nonnull:
        is_na = pc.is_in(arr, value_set=pa.array(NUMERIC_NA_TOKENS))
        is_nonfinite = pc.match_substring_regex(arr, NON_FINITE_RE, ignore_case=True)
        n_na, n_nonfinite = _count(is_na), _count(is_nonfinite)
        s.na_tokens += n_na
        s.nonfinite += n_nonfinite
        n_missing = n_na + n_nonfinite
        missing = pc.or_(is_na, pc.fill_null(is_nonfinite, False))
        if n_na and len(s.na_lines) < MAX_LINES:
            s.na_lines += _lines(is_na, path, line0, MAX_LINES - len(s.na_lines))
        if n_nonfinite and s.first_nonfinite is None:
            s.first_nonfinite = _first(arr, is_nonfinite, path, line0)
        if s.first_bad is None and n_float + n_missing < nonnull:
            s.first_bad = _first(arr, pc.invert(pc.or_(pc.fill_null(is_float, False), missing)), path, line0)
    if s.first_non_int is None and n_int + n_missing < nonnull:
        s.first_non_int = _first(arr, pc.invert(pc.or_(pc.fill_null(is_int, False), missing)), path, line0)
    if n_int:
        _count_integers(arr, is_int, s, path, line0)
    if n_float:
        _count_beyond_float32(arr, is_float, s, path, line0)


def _count_integers(arr: Any, is_int: Any, s: _ColumnCounts, path: str | Path, line0: int) -> None:
    """Leading zeros (``00501``: an identifier) and integers int64 cannot hold."""
    import pyarrow.compute as pc

    zeros = pc.fill_null(pc.match_substring_regex(arr, _LEADING_ZERO_RE), False)
    n_zero = _count(zeros)
    s.leading_zeros += n_zero
    if n_zero and s.first_leading_zero is None:
        s.first_leading_zero = _first(arr, zeros, path, line0)
    if s.first_beyond_int64 is None:  # only 19 characters or more can be out of range
        long = pc.and_(pc.fill_null(is_int, False), pc.greater_equal(pc.utf8_length(arr), 19))
        for i in pc.indices_nonzero(pc.fill_null(long, False)).to_pylist():
            value = arr[i].as_py()
            if not INT64_MIN <= int(value.split(".")[0]) <= INT64_MAX:
                s.first_beyond_int64 = (path, line0 + i, value)
                break


def _count_beyond_float32(arr: Any, is_float: Any, s: _ColumnCounts, path: str | Path, line0: int) -> None:
    """Numbers float32 holds only as infinity (``1e39``), as ``encode.typed_column`` reads them."""
    import pyarrow as pa
    import pyarrow.compute as pc

    is_float = pc.fill_null(is_float, False)
    numbers = arr.filter(is_float)
    try:
        as_f32 = pc.cast(numbers, pa.float32())
    except pa.ArrowInvalid:  # a leading "+"
        as_f32 = pc.cast(pc.utf8_ltrim(numbers, "+"), pa.float32())
    beyond = pc.is_inf(as_f32)
    n = _count(beyond)
    s.beyond_float32 += n
    if n and s.first_beyond_float32 is None:
        i = pc.indices_nonzero(is_float)[pc.index(beyond, True).as_py()].as_py()
        s.first_beyond_float32 = (path, line0 + i, arr[i].as_py())


_FIRSTS = (
    "first_bad",
    "first_non_int",
    "first_leading_zero",
    "first_nonfinite",
    "first_beyond_float32",
    "first_beyond_int64",
)
_LINES = ("empty_lines", "na_lines")


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
        moved.update({f: [(p, line + by) for p, line in getattr(s, f)] for f in _LINES})
        out[c] = dataclasses.replace(s, **moved)
    return out


def merge_counts(total: dict[str, _ColumnCounts], later: dict[str, _ColumnCounts]) -> None:
    """Add ``later``'s counts (input that comes after ``total``'s) into ``total``."""
    sums = [f.name for f in dataclasses.fields(_ColumnCounts) if f.type in (int, "int")]
    for c, s in later.items():
        t = total[c]
        for f in sums:
            setattr(t, f, getattr(t, f) + getattr(s, f))
        for f in _FIRSTS:
            if getattr(t, f) is None:
                setattr(t, f, getattr(s, f))
        for f in _LINES:
            setattr(t, f, (getattr(t, f) + getattr(s, f))[:MAX_LINES])


def counts_to_json(stats: dict[str, _ColumnCounts]) -> dict[str, Any]:
    """Counts as JSON (a Beam worker's answer to the driver)."""
    return {c: dataclasses.asdict(s) for c, s in stats.items()}


def counts_from_json(doc: dict[str, Any]) -> dict[str, _ColumnCounts]:
    """``counts_to_json``'s inverse."""
    out = {}
    for c, d in doc.items():
        firsts = {f: tuple(d[f]) if d[f] is not None else None for f in _FIRSTS}
        lines = {f: [tuple(x) for x in d[f]] for f in _LINES}
        out[c] = _ColumnCounts(**{**d, **firsts, **lines})
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


def read_columns(files: list[str | Path], label: str, reading: Reading | None = None) -> list[str]:
    """The header every file shares; it must hold the label and at least one feature."""
    reading = reading or Reading()
    columns = _read_header(files[0], reading)
    for f in files[1:]:
        other = _read_header(f, reading)
        if other != columns:
            raise StageError(STAGE, str(f), f"header {other} differs from {fs.name(files[0])}'s {columns}")
    if label not in columns:
        raise StageError(STAGE, str(files[0]), f"label column {label!r} is missing; columns are {columns}")
    if columns == [label]:
        raise StageError(
            STAGE,
            str(files[0]),
            f"the table holds only the label column {label!r}: there is no feature to learn from",
        )
    return columns
