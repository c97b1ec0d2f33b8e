"""ExampleGen's stage function: the first pass, then the records in process or on Beam.

The rule is ``beam.runs_in_process`` (the one every stage with a fast path applies): in process
— pyarrow's CSV reader, one gzipped file per split — when Beam
would run in this process anyway (the default ``beam_args``); a Beam pipeline writing N files
per split (``beam.write_examples_beam``) for any other runner. The output metadata says which
(``method``, ``runner``) and how many files each split has.
"""

from __future__ import annotations

import dataclasses
import gzip
from pathlib import Path
from typing import Any

from components import names
from components.errors import StageError
from components.lib import examples, fs
from components.lib.example_gen.columns import (
    BLOCK_SIZE,
    STAGE,
    column_types_from_schema,
    csv_source,
    decide_types,
    infer_column_types,
    list_csv_files,
    parse_column_types,
    parse_split_buckets,
    read_columns,
)
from components.lib.example_gen.encode import arrow_type, bucket_splits, fingerprint, split_records


@dataclasses.dataclass
class ExampleGenResult:
    """What ExampleGen wrote: rows per split, column types, empty cells, input fingerprint, how."""

    rows: dict[str, int]
    column_types: dict[str, str]
    empty_cells: dict[str, int]
    files: list[str]
    fingerprint: str
    method: str = "in-process"
    runner: str = ""
    shards: dict[str, int] = dataclasses.field(default_factory=dict)

    def metadata(self) -> dict[str, Any]:
        return {
            names.META_ROWS: self.rows,
            names.META_COLUMNS: self.column_types,
            "empty_cells": self.empty_cells,
            "input_files": self.files,
            names.META_FINGERPRINT: self.fingerprint,
            "method": self.method,
            "runner": self.runner or "none",
            "files_per_split": self.shards or {split: 1 for split in self.rows},
        }


def write_examples_in_process(
    files: list[str | Path],
    columns: list[str],
    kinds: dict[str, str],
    buckets: list[tuple[str, int]],
    out: Path,
) -> dict[str, int]:
    """Stream the CSV files in Arrow batches into one gzipped file per split; rows per split."""
    import pyarrow as pa
    from pyarrow import csv

    convert = csv.ConvertOptions(
        column_types={c: arrow_type(kinds[c]) for c in columns}, strings_can_be_null=True
    )
    bucket_split = bucket_splits(buckets)
    rows = {name: 0 for name, _ in buckets}
    writers = {}
    for name, _ in buckets:
        d = examples.split_path(out, name)
        d.mkdir(parents=True)
        writers[name] = gzip.open(
            d / f"{names.EXAMPLES_FILE_PREFIX}-00000-of-00001.gz", "wb", compresslevel=6
        )
    try:
        for path in files:
            try:
                with csv_source(path) as source:
                    reader = csv.open_csv(
                        source, read_options=csv.ReadOptions(block_size=BLOCK_SIZE), convert_options=convert
                    )
                    for batch in reader:
                        for split, framed in split_records(batch, columns, bucket_split).items():
                            writers[split].write(b"".join(framed))
                            rows[split] += len(framed)
            except pa.ArrowInvalid as e:
                raise StageError(STAGE, str(path), f"cannot convert a cell to the schema's type: {e}") from e
    finally:
        for w in writers.values():
            w.close()
    return rows


def run_example_gen(
    input_path: str | Path,
    output_dir: Path,
    *,
    label: str,
    split_buckets: str = "train:2,eval:1",
    schema_path: Path | None = None,
    column_types: str = "",
    beam_args: str = "",
    shards: int | None = None,
) -> ExampleGenResult:
    """The CSV(s) at ``input_path`` (a path, a gs:// or s3:// URL) -> ``output_dir/Split-<split>/*.gz``.

    ``output_dir`` must be a fresh directory (the caller writes atomically). ``beam_args``
    picks in process or Beam (module docstring); ``shards``: files per split on Beam
    (default: the runner's choice, one per bundle, with no shuffle of the records).
    """
    from components.lib.beam import runner_name, runs_in_process

    on_beam = not runs_in_process(beam_args, STAGE)  # a bad beam_args fails here, before any work
    if fs.is_url(input_path):
        fs.configure(beam_args, STAGE)  # endpoints, project, region for the driver's own reads
    buckets = parse_split_buckets(split_buckets)
    files = list_csv_files(input_path)
    columns = read_columns(files, label)
    decided = column_types_from_schema(schema_path, columns) if schema_path is not None else {}
    decided.update(parse_column_types(column_types, columns))
    if on_beam:  # the first pass on the workers too: at 100 GB one process would take most of an hour
        from components.lib.example_gen.beam import inspect_beam

        stats, n = inspect_beam(files, columns, beam_args, output_dir / ".first-pass")
        types, empty = decide_types(stats, n, files, decided)
    else:
        types, empty = infer_column_types(files, columns, decided)
    if empty.get(label):
        raise StageError(STAGE, str(input_path), f"label column {label!r} is empty in {empty[label]} row(s)")

    digest = fingerprint(files, STAGE)
    counts: dict[str, int] = {}
    if on_beam:
        from components.lib.example_gen.beam import write_examples_beam

        rows, counts = write_examples_beam(
            files, columns, types, buckets, output_dir, beam_args, shards=shards
        )
    else:
        rows = write_examples_in_process(files, columns, types, buckets, output_dir)
    if sum(rows.values()) == 0:
        raise StageError(STAGE, str(input_path), "header only: the input has no data rows")
    for name, n in rows.items():
        if n == 0:
            raise StageError(
                STAGE, str(input_path), f"split {name!r} received no rows; the input is too small"
            )
    return ExampleGenResult(
        rows=rows,
        column_types=types,
        empty_cells=empty,
        files=[str(f) for f in files],
        fingerprint=digest,
        method="beam" if on_beam else "in-process",
        runner=runner_name(beam_args, STAGE) if on_beam else "",
        shards=counts,
    )
