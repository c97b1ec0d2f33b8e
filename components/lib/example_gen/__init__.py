"""ExampleGen logic: CSV file(s) -> gzipped TFRecords of ``tf.Example`` per split.

Two passes over the input. The first (``columns``) infers column types and rejects bad cells
with the line they are on; it streams the input in Arrow record batches, so memory does not grow
with the file. The second encodes each batch to serialized ``tf.Example``s with tfx-bsl's C++
encoder (the one TFX's CsvExampleGen uses) and splits by hashing the serialized example exactly
as TFX does (``encode``): the same rows land in the same split as in TFX, and the same CSV always
gives the same records. TensorFlow is not imported: records are framed and checksummed here.

Both passes run in process (one gzipped file per split) when Beam would run in this process
anyway, and as Beam pipelines for any other runner (``stage``, ``beam``): the first pass counts
each byte range on the workers and the driver merges the counts in input order (the same types,
empty cells and error lines), the second writes N files per split. The rule is
``components.lib.beam.runs_in_process``. The input may be a local path or a gs:// or s3:// URL
(``components.lib.fs``).
"""

from components.lib.example_gen.columns import (
    FLOAT,
    INT,
    STAGE,
    STRING,
    TYPE_WORDS,
    column_types_from_schema,
    infer_column_types,
    list_csv_files,
    parse_column_types,
    parse_split_buckets,
    read_columns,
)
from components.lib.example_gen.stage import ExampleGenResult, run_example_gen

__all__ = [
    "FLOAT",
    "INT",
    "STAGE",
    "STRING",
    "TYPE_WORDS",
    "ExampleGenResult",
    "column_types_from_schema",
    "infer_column_types",
    "list_csv_files",
    "parse_column_types",
    "parse_split_buckets",
    "read_columns",
    "run_example_gen",
]
