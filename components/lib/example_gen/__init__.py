"""ExampleGen logic: CSV file(s) -> gzipped TFRecords of ``tf.Example`` per split.

Two passes over the input. The first infers column types and rejects bad cells with the line
they are on (``reading`` the files, ``counts`` of each column's cells, ``columns`` the types);
it streams the input in Arrow record batches, so memory does not grow with the file. The second
encodes each batch to serialized ``tf.Example``s with tfx-bsl's C++ encoder (the one TFX's
CsvExampleGen uses) and splits by hashing the serialized example exactly as TFX does
(``encode``): the same rows land in the same split as in TFX, and the same CSV always gives the
same records. TensorFlow is not imported: records are framed and checksummed here.

Both passes run in process (one gzipped file per split) when Beam would run in this process
anyway, and as Beam pipelines for any other runner (``stage``, ``beam``): the first pass counts
each byte range on the workers and the driver merges the counts in input order (the same types,
empty cells and error lines), the second writes N files per split. The rule is
``components.lib.beam.runs_in_process``. The input may be a local path or a gs:// or s3:// URL
(``components.lib.fs``).

Both passes read every cell as text, with only the empty cell (and the ``na_values`` asked for)
missing; the first pass decides types from the text (``181.0`` in an integer column stays an
integer, ``NA`` is missing only in a numeric column, ``inf``/``1e39`` are flagged and written as
missing) and the second types each batch exactly (``encode.typed_batch``). The encoding is
checked before any record is written: a byte-order mark at the header, a bad byte in the first
pass, each a one-line error naming the file and the byte.
"""

from components.lib.example_gen.columns import (
    FLOAT,
    INT,
    STRING,
    TYPE_WORDS,
    Decided,
    column_types_from_schema,
    infer_column_types,
    parse_column_types,
    parse_split_buckets,
)
from components.lib.example_gen.counts import NUMERIC_NA_TOKENS
from components.lib.example_gen.reading import STAGE, Reading, list_csv_files, make_reading, read_columns
from components.lib.example_gen.stage import ExampleGenResult, run_example_gen

__all__ = [
    "FLOAT",
    "INT",
    "NUMERIC_NA_TOKENS",
    "STAGE",
    "STRING",
    "TYPE_WORDS",
    "Decided",
    "ExampleGenResult",
    "Reading",
    "column_types_from_schema",
    "infer_column_types",
    "list_csv_files",
    "make_reading",
    "parse_column_types",
    "parse_split_buckets",
    "read_columns",
    "run_example_gen",
]
