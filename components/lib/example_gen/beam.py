"""ExampleGen on Beam: the same records and split as the in-process path, written in shards.

The input is cut into byte ranges (``CHUNK_BYTES``) of its CSV files and a Reshuffle spreads
them over the workers. Each worker reads the lines that START in its range (so no line is read
twice or lost), converts them with the column types the driver's first pass decided, and
encodes and splits them with ``encode.typed_batch`` and ``encode.split_records``, as the
in-process path does. Ranges cut at newline bytes, which any ASCII-compatible encoding (UTF-8,
latin-1, cp1252, …) allows; UTF-16 and UTF-32 files are refused on this path with one line
(``stage.run_example_gen``): re-save them as UTF-8, or run in process. Each split
is written as gzipped TFRecord files named as TFX names them (``data_tfrecord-00000-of-00004.gz``):
the same records as in-process, in other files and order. How many files is the runner's
choice, one per bundle, as in TFX's ExampleGen: the records stream from the encoder into the
files. A fixed count (``shards``) costs a shuffle of every record (Beam's sink groups them by
file), which a local runner holds in memory: at 10 M rows that took the runner process to 7.7 GB.

Like TFX's CsvExampleGen (lines through ``ReadFromText``) and like the in-process reader
(pyarrow's, ``newlines_in_values`` off), a newline inside a quoted cell is not supported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from components import names
from components.errors import StageError
from components.lib import examples, fs
from components.lib.beam import run
from components.lib.example_gen.counts import (
    count_cells,
    counts_from_json,
    counts_to_json,
    empty_counts,
    merge_counts,
    shift_lines,
)
from components.lib.example_gen.encode import bucket_splits, split_records, typed_batch
from components.lib.example_gen.reading import (
    BLOCK_SIZE,
    STAGE,
    Reading,
    decoding_failed,
    raise_if_undecodable,
)

METRICS_NAMESPACE = "kubetfx_example_gen"
CHUNK_BYTES = 64 << 20  # bytes of CSV per Beam element (a worker's unit of work)


def byte_ranges(files: list[str | Path], chunk_bytes: int = CHUNK_BYTES) -> list[tuple[str, int, int]]:
    """``(file, start, end)`` pieces that cover every file."""
    out = []
    for f in files:
        size = fs.size(f, STAGE)
        out += [(str(f), start, min(start + chunk_bytes, size)) for start in range(0, size, chunk_bytes)]
    return out


def read_lines(path: str, start: int, end: int) -> bytes:
    """The bytes of the lines of ``path`` (path or URL) that start in ``[start, end)``, no header."""
    return read_range(path, start, end)[1]


def read_range(path: str, start: int, end: int) -> tuple[int, bytes]:
    """``read_lines`` and the offset in the file of the bytes' first (for a bad byte's offset)."""
    with fs.open_binary(path, STAGE) as fh:
        if start == 0:
            fh.readline()  # the header
        else:
            fh.seek(start - 1)
            fh.readline()  # the end of the line that started before this range (or just its newline)
        pos = fh.tell()
        if pos >= end:
            return pos, b""
        block = fh.read(end - pos)
        if block and not block.endswith(b"\n"):
            block += fh.readline()  # the last line starts in the range and ends after it
        return pos, block


def string_batches(block: bytes, columns: list[str], where: tuple[str, int], reading: Reading) -> Any:
    """CSV lines without a header -> Arrow record batches of strings, as ``reading.string_batches``.

    ``where``: (file, offset of the block in it), so a bad byte is named by its offset in the file.
    """
    import io

    import pyarrow as pa
    from pyarrow import csv

    path, offset = where
    read = reading.read_options(column_names=columns, block_size=BLOCK_SIZE)
    try:
        yield from csv.open_csv(
            io.BytesIO(block), read_options=read, convert_options=reading.string_options(columns)
        )
    except (pa.ArrowInvalid, UnicodeDecodeError) as e:
        if decoding_failed(e):
            raise_if_undecodable(path, [block], reading, offset)
        raise StageError(
            STAGE, f"{path} (bytes {offset}-{offset + len(block)})", f"malformed CSV: {e}"
        ) from e


def _pipeline(beam_args: str) -> Any:
    import apache_beam as beam

    from components.lib.beam import pipeline_options

    try:
        return beam.Pipeline(options=pipeline_options(beam_args, STAGE))
    except Exception as e:  # e.g. an unknown --runner
        raise StageError(STAGE, None, f"beam_args {beam_args!r}: {e}") from e


def _worker_filesystems(files: list[str | Path], beam_args: str) -> None:
    """Give a worker's FileSystems beam_args' options (it has none of its own).

    An s3:// read needs the endpoint, keys and region; gs:// would do with the worker's credentials.
    """
    if any(fs.is_url(f) for f in files):
        fs.configure(beam_args, STAGE)


def inspect_beam(
    files: list[str | Path],
    columns: list[str],
    beam_args: str,
    scratch: Path,
    *,
    reading: Reading | None = None,
    chunk_bytes: int | None = None,
) -> tuple[dict[str, Any], int]:
    """The first pass on the workers: each byte range's column counts, merged here in input order.

    Returns (counts, rows) as ``columns.infer_column_types`` computes them in process, line
    numbers included: a range reports its rows, and the driver moves each range's first cells
    down by the rows of the earlier ranges of its file. The per-range answers travel through
    ``scratch`` (a folder the workers can write: on the storage root), which is removed.
    """
    import json
    import shutil

    import apache_beam as beam

    reading = reading or Reading()

    class InspectRange(beam.DoFn):
        def setup(self) -> None:
            _worker_filesystems(files, beam_args)

        def process(self, piece):  # type: ignore[no-untyped-def]
            path, start, end = piece
            offset, block = read_range(path, start, end)
            batches = string_batches(block, columns, (path, offset), reading)
            counts, rows = count_cells(batches, columns, path, 0)
            yield json.dumps({"file": path, "start": start, "rows": rows, "counts": counts_to_json(counts)})

    scratch.mkdir(parents=True, exist_ok=True)
    pipeline = _pipeline(beam_args)
    _ = (
        pipeline
        | "Ranges" >> beam.Create(byte_ranges(files, chunk_bytes or CHUNK_BYTES))
        | "Spread" >> beam.Reshuffle()
        | "Inspect" >> beam.ParDo(InspectRange())
        | "Answers" >> beam.io.WriteToText(str(scratch / "ranges"), file_name_suffix=".jsonl")
    )
    run(pipeline, STAGE, str(files[0]), "example_gen first pass")
    answers = [
        json.loads(line) for f in sorted(scratch.glob("ranges*.jsonl")) for line in f.read_text().splitlines()
    ]

    shutil.rmtree(scratch, ignore_errors=True)
    order = {str(f): i for i, f in enumerate(files)}
    answers.sort(key=lambda a: (order[a["file"]], a["start"]))
    total = empty_counts(columns)
    per_file = dict.fromkeys(order, 0)
    for a in answers:
        merge_counts(total, shift_lines(counts_from_json(a["counts"]), 2 + per_file[a["file"]]))  # 1: header
        per_file[a["file"]] += a["rows"]
    for f, n in per_file.items():
        if n == 0:
            raise StageError(STAGE, f, "header only: the file has no data rows")
    return total, sum(per_file.values())


def write_examples_beam(
    files: list[str | Path],
    columns: list[str],
    kinds: dict[str, str],
    buckets: list[tuple[str, int]],
    output_dir: Path,
    beam_args: str,
    *,
    shards: int | None = None,
    chunk_bytes: int | None = None,
    reading: Reading | None = None,
    drop_unlabeled: str | None = None,
) -> tuple[dict[str, int], dict[str, int]]:
    """Encode and split ``files`` on Beam into ``output_dir/Split-<split>/`` shards.

    ``kinds``: each column's type (INT, FLOAT, BYTES). ``shards``: files per split (default:
    the runner's choice, no shuffle). ``drop_unlabeled``: the label column, whose rows
    without a value are left out. Returns (rows, files) per split.
    """
    import apache_beam as beam

    reading = reading or Reading()

    bucket_split = bucket_splits(buckets)

    class EncodeRange(beam.DoFn):
        """One byte range of a CSV file -> one blob of framed records per split and Arrow batch."""

        def __init__(self) -> None:
            self._rows = {n: beam.metrics.Metrics.counter(METRICS_NAMESPACE, f"rows_{n}") for n, _ in buckets}

        def setup(self) -> None:
            _worker_filesystems(files, beam_args)

        def process(self, piece):  # type: ignore[no-untyped-def]
            path, start, end = piece
            offset, block = read_range(path, start, end)
            if not block.strip():
                return
            for batch in string_batches(block, columns, (path, offset), reading):
                typed = typed_batch(batch, columns, kinds, drop_unlabeled)
                for split, framed in split_records(typed, columns, bucket_split).items():
                    if framed:
                        self._rows[split].inc(len(framed))
                        yield beam.pvalue.TaggedOutput(split, b"".join(framed))

    pipeline = _pipeline(beam_args)
    encoded = (
        pipeline
        | "Ranges" >> beam.Create(byte_ranges(files, chunk_bytes or CHUNK_BYTES))
        | "Spread" >> beam.Reshuffle()
        | "Encode" >> beam.ParDo(EncodeRange()).with_outputs(*[n for n, _ in buckets])
    )
    for name, _ in buckets:
        folder = examples.split_path(output_dir, name)
        folder.mkdir(parents=True, exist_ok=True)
        _ = encoded[name] | f"Write{name}" >> beam.io.WriteToText(  # each framed blob written verbatim
            str(folder / names.EXAMPLES_FILE_PREFIX),
            file_name_suffix=".gz",
            num_shards=shards or 0,  # 0: one file per bundle, no shuffle
            shard_name_template="-SSSSS-of-NNNNN",
            append_trailing_newlines=False,
            coder=beam.coders.BytesCoder(),
            compression_type=beam.io.filesystem.CompressionTypes.GZIP,
        )
    result = run(pipeline, STAGE, str(files[0]), "example_gen")
    counts = {name: len(examples.split_files(output_dir, name, STAGE)) for name, _ in buckets}
    return _row_counts(result, [n for n, _ in buckets]), counts


def _row_counts(result: Any, splits: list[str]) -> dict[str, int]:
    """Rows written per split, from the Beam counters (committed where the runner has them)."""
    from apache_beam.metrics.metric import MetricsFilter

    rows = dict.fromkeys(splits, 0)
    for counter in result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))["counters"]:
        value = counter.committed if counter.committed is not None else counter.attempted
        rows[counter.key.metric.name.removeprefix("rows_")] += int(value or 0)
    return rows
