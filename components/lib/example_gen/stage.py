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
    Decided,
    column_types_from_schema,
    decide_types,
    infer_column_types,
    parse_column_types,
    parse_preferred_types,
    parse_split_buckets,
)
from components.lib.example_gen.encode import bucket_splits, fingerprint, split_records, typed_batch
from components.lib.example_gen.reading import (
    STAGE,
    Reading,
    list_csv_files,
    make_reading,
    read_columns,
    string_batches,
)


@dataclasses.dataclass
class ExampleGenResult:
    """What ExampleGen wrote: rows per split, column types, empty cells, input fingerprint, how.

    ``empty_cells``: per column, cells written as missing over every input row (unlabeled rows
    dropped included); ``non_finite``: per feature column, its inf/nan/beyond-float32 cells
    (``{"count", "first": "file:line", "value"}``), written as missing; ``dropped_unlabeled``:
    rows left out for want of a label (``drop_unlabeled``).
    """

    rows: dict[str, int]
    column_types: dict[str, str]
    empty_cells: dict[str, int]
    files: list[str]
    fingerprint: str
    method: str = "in-process"
    runner: str = ""
    shards: dict[str, int] = dataclasses.field(default_factory=dict)
    non_finite: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    dropped_unlabeled: int = 0
    encoding: str = "utf-8"

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
            names.META_NON_FINITE: self.non_finite,
            "dropped_unlabeled": self.dropped_unlabeled,
            "encoding": self.encoding,
        }


def write_examples_in_process(
    files: list[str | Path],
    columns: list[str],
    kinds: dict[str, str],
    buckets: list[tuple[str, int]],
    out: Path,
    reading: Reading | None = None,
    drop_unlabeled: str | None = None,
) -> dict[str, int]:
    """Stream the CSV files in Arrow batches into one gzipped file per split; rows per split.

    ``drop_unlabeled``: the label column, whose rows without a value are left out.
    """
    import pyarrow as pa

    reading = reading or Reading()
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
                for batch in string_batches(path, columns, reading):
                    typed = typed_batch(batch, columns, kinds, drop_unlabeled)
                    for split, framed in split_records(typed, columns, bucket_split).items():
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
    encoding: str = "utf-8",
    na_values: str = "",
    drop_unlabeled: bool = False,
    preferred_types: dict[str, str] | None = None,
) -> ExampleGenResult:
    """The CSV(s) at ``input_path`` (a path, a gs:// or s3:// URL) -> ``output_dir/Split-<split>/*.gz``.

    ``output_dir`` must be a fresh directory (the caller writes atomically). ``beam_args``
    picks in process or Beam (module docstring); ``shards``: files per split on Beam
    (default: the runner's choice, one per bundle, with no shuffle of the records).
    ``encoding``: the files' text encoding; ``na_values``: comma-separated tokens that are
    missing values in every column (``NUMERIC_NA_TOKENS`` are, in numeric columns, anyway);
    ``drop_unlabeled``: leave out rows without a usable label instead of failing;
    ``preferred_types``: the served model's column types, kept where the data fits them.
    """
    from components.lib.beam import runner_name, runs_in_process

    on_beam = not runs_in_process(beam_args, STAGE)  # a bad beam_args fails here, before any work
    if fs.is_url(input_path):
        fs.configure(beam_args, STAGE)  # endpoints, project, region for the driver's own reads
    buckets = parse_split_buckets(split_buckets)
    reading = make_reading(encoding, na_values)
    files = list_csv_files(input_path)
    if on_beam:  # before any work, with one line
        _check_beam_can_split(reading, files, encoding)
    columns = read_columns(files, label, reading)
    decided = _given_types(schema_path, column_types, columns)
    preferred = parse_preferred_types(preferred_types, columns)
    beam = beam_args if on_beam else None
    plan = _first_pass(files, columns, decided, reading, label, preferred, drop_unlabeled, beam, output_dir)
    digest = fingerprint(files, STAGE)
    drop = label if drop_unlabeled and plan.unlabeled else None
    rows, counts = _second_pass(
        input_path, files, columns, plan.types, buckets, output_dir, beam, shards, reading, drop
    )
    return ExampleGenResult(
        rows=rows,
        column_types=plan.types,
        empty_cells=plan.empty,
        files=[str(f) for f in files],
        fingerprint=digest,
        method="beam" if on_beam else "in-process",
        runner=runner_name(beam_args, STAGE) if on_beam else "",
        shards=counts,
        non_finite=plan.non_finite,
        dropped_unlabeled=plan.unlabeled,
        encoding=reading.encoding,
    )


def _check_beam_can_split(reading: Reading, files: list[str | Path], encoding: str) -> None:
    """Refuse, before any work on Beam, an encoding whose files cannot be cut at newline bytes."""
    if not reading.splits_at_newline_bytes:
        raise StageError(
            STAGE,
            str(files[0]),
            f"encoding {encoding} cannot be cut into byte ranges for Beam's workers (a newline is not "
            "one byte); re-save the file as UTF-8 or run in process (the default beam_args)",
        )


def _given_types(schema_path: Path | None, column_types: str, columns: list[str]) -> dict[str, str]:
    """The column types the user fixed: a given schema's, then ``column_types`` over them."""
    decided = column_types_from_schema(schema_path, columns) if schema_path is not None else {}
    decided.update(parse_column_types(column_types, columns))
    return decided


def _first_pass(
    files: list[str | Path],
    columns: list[str],
    decided: dict[str, str],
    reading: Reading,
    label: str,
    preferred: dict[str, str],
    drop_unlabeled: bool,
    beam_args: str | None,
    output_dir: Path,
) -> Decided:
    """Types and what the records leave out, in process or (``beam_args``) on the workers."""
    rules: dict[str, Any] = {"label": label, "preferred": preferred, "drop_unlabeled": drop_unlabeled}
    if beam_args is None:
        return infer_column_types(files, columns, decided, reading=reading, **rules)
    # on the workers too: at 100 GB one process would take most of an hour
    from components.lib.example_gen.beam import inspect_beam

    stats, n = inspect_beam(files, columns, beam_args, output_dir / ".first-pass", reading=reading)
    return decide_types(stats, n, files, decided, **rules)


def _second_pass(
    input_path: str | Path,
    files: list[str | Path],
    columns: list[str],
    kinds: dict[str, str],
    buckets: list[tuple[str, int]],
    output_dir: Path,
    beam_args: str | None,
    shards: int | None,
    reading: Reading,
    drop_unlabeled: str | None,
) -> tuple[dict[str, int], dict[str, int]]:
    """The records, in process or (``beam_args``) on Beam: rows and files per split, none empty."""
    counts: dict[str, int] = {}
    if beam_args is not None:
        from components.lib.example_gen.beam import write_examples_beam

        rows, counts = write_examples_beam(
            files,
            columns,
            kinds,
            buckets,
            output_dir,
            beam_args,
            shards=shards,
            reading=reading,
            drop_unlabeled=drop_unlabeled,
        )
    else:
        rows = write_examples_in_process(files, columns, kinds, buckets, output_dir, reading, drop_unlabeled)
    if sum(rows.values()) == 0:
        raise StageError(STAGE, str(input_path), "header only: the input has no data rows")
    for name, n in rows.items():
        if n == 0:
            raise StageError(
                STAGE, str(input_path), f"split {name!r} received no rows; the input is too small"
            )
    return rows, counts
