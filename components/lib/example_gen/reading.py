"""ExampleGen's input: which CSV files, the header they share, and how their bytes become string cells.

Both passes read the input only through here (``string_batches``; Beam's byte ranges through
``beam.string_batches`` with the same ``Reading``), so they see the same cells. Every cell is
read as text, and only the empty cell (and the ``na_values`` asked for) is missing at read time:
what a cell means is decided later, per column (``counts``, ``columns``, ``encode``).

The encoding is checked before any record is written, and an error says what to set rather than
passing on Arrow's message: a UTF-16/32 byte-order mark or NUL bytes in the header are refused
at once, and when a read fails on the text's bytes the file is scanned for the first byte the
encoding cannot decode (``undecodable``), so the error names its offset and value.
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

STAGE = names.STAGE_EXAMPLE_GEN
BLOCK_SIZE = 4 << 20  # bytes of CSV per Arrow record batch


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
