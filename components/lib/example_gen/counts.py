"""The first pass's unit of work: what each column's cells look like, counted and mergeable.

For each column: how many cells are integers (or integral decimals, ``181.0``), numbers,
digit strings with a leading zero, NA tokens, ``inf``/``nan``, or beyond float32 or int64, and
the first cell of each kind with its file and line. That is all ``columns.decide_types`` needs
to choose a type and to name the cell an error is about, without another look at the data.

The counts are apart from the decision because they are computed in pieces and merged: a whole
file in process, a byte range on a Beam worker (``beam.inspect_beam``). ``merge_counts`` adds
later input to earlier, ``shift_lines`` moves a range's lines once the driver knows the rows
before it, and ``counts_to_json`` carries a worker's answer to the driver, so both ways give the
same types and error lines. The tokens counted as missing here (``NUMERIC_NA_TOKENS``,
``NON_FINITE_RE``) are the ones ``encode`` writes as missing values, so the two passes agree.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path
from typing import Any

_INT_RE = r"^[-+]?\d+(\.0*)?$"  # an integer, or an integral decimal as pandas writes one: "181.0"
_FLOAT_RE = r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$"
_LEADING_ZERO_RE = r"^[-+]?0\d+$"  # "00501", "007": an identifier, not a number
NON_FINITE_RE = r"^[-+]?(inf|infinity|nan)$"  # matched ignoring case
# Missing values in an otherwise numeric column (values in a text one: NA is North America).
NUMERIC_NA_TOKENS = ("NA", "N/A", "n/a", "NULL", "null", "None", "#N/A")
MAX_LINES = 3  # lines of empty label cells an error names
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


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
