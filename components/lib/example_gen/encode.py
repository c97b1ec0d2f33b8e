"""ExampleGen's encoding, the same on both paths: Arrow batch -> framed ``tf.Example``s per split.

Each batch is encoded with tfx-bsl's C++ encoder (the one TFX's CsvExampleGen uses); the
encoder's feature order varies between calls, so each example is re-serialized with its feature
map sorted (TFX hashes ``SerializeToString(deterministic=True)``) and hashed into its split
exactly as TFX does (SHA-256 of the bytes, modulo the total bucket count). The in-process path
and the Beam path both read the CSV as strings and call ``typed_batch`` and ``split_records``,
so they write the same records.

Cells are typed here rather than by pyarrow's typed CSV read, which could not take an INT
column's integral decimals (``181.0``) without a float64 round trip that loses big integers,
and which would write ``inf`` into ``float_list``: here ``181.0`` becomes the int64 181 exactly,
and a missing-value token or a non-finite number becomes a missing value.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any


def typed_batch(
    batch: Any, columns: list[str], kinds: dict[str, str], drop_unlabeled: str | None = None
) -> Any:
    """A record batch of strings -> the same rows typed as the first pass decided.

    ``drop_unlabeled``: the label column, whose rows without a value are left out.
    """
    import pyarrow as pa

    typed = pa.RecordBatch.from_arrays([typed_column(batch.column(c), kinds[c]) for c in columns], columns)
    if drop_unlabeled is not None:
        typed = typed.filter(typed.column(drop_unlabeled).is_valid())
    return typed


def typed_column(arr: Any, kind: str) -> Any:
    """A string column -> ``kind`` (INT int64, FLOAT float32, BYTES binary).

    Numeric: the NA tokens and inf/nan become missing; FLOAT: so do numbers float32 holds only
    as infinity (``1e39``). INT: integral decimals lose their ``.0`` as text, then cast exactly.
    The first pass has checked every cell, so the fast cast fails only where there is text to
    clean.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if kind == "BYTES":
        return arr.cast(pa.binary())
    if kind == "INT":
        try:
            return pc.cast(arr, pa.int64())
        except pa.ArrowInvalid:
            return pc.cast(
                pc.replace_substring_regex(_numbers_only(arr), r"^(-?\d+)\.0*$", r"\1"), pa.int64()
            )
    try:
        floats = pc.cast(arr, pa.float32())
    except pa.ArrowInvalid:
        floats = pc.cast(_numbers_only(arr), pa.float32())
    finite = pc.is_finite(floats)
    if pc.all(finite).as_py() is False:
        floats = pc.if_else(finite, floats, pa.scalar(None, pa.float32()))
    return floats


def _numbers_only(arr: Any) -> Any:
    """A numeric column's strings with the NA tokens and inf/nan as nulls and no leading ``+``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from components.lib.example_gen.counts import NON_FINITE_RE, NUMERIC_NA_TOKENS

    missing = pc.or_(
        pc.is_in(arr, value_set=pa.array(NUMERIC_NA_TOKENS)),
        pc.fill_null(pc.match_substring_regex(arr, NON_FINITE_RE, ignore_case=True), False),
    )
    return pc.utf8_ltrim(pc.if_else(missing, pa.scalar(None, pa.string()), arr), "+")


def to_list_array(arr: Any) -> Any:
    """A nullable column -> a list column (one value per row; an empty cell is a missing value)."""
    import numpy as np
    import pyarrow as pa

    if arr.null_count:
        valid = np.asarray(arr.is_valid())
        offsets = np.concatenate([[0], np.cumsum(valid)]).astype(np.int32)
        return pa.ListArray.from_arrays(pa.array(offsets), arr.drop_null(), mask=pa.array(~valid))
    return pa.ListArray.from_arrays(pa.array(np.arange(len(arr) + 1, dtype=np.int32)), arr)


def bucket_splits(buckets: list[tuple[str, int]]) -> list[str]:
    """Bucket number -> split: buckets are laid out in order, e.g. ``[train, train, eval]``."""
    return [name for name, count in buckets for _ in range(count)]


def split_records(batch: Any, columns: list[str], bucket_split: list[str]) -> dict[str, list[bytes]]:
    """One typed record batch -> ``{split: [TFRecord-framed tf.Example, ...]}`` in row order."""
    import pyarrow as pa
    from tfx_bsl.coders import example_coder

    from components.lib.tf_example import deterministic
    from components.lib.tfrecord import frame

    lists = pa.RecordBatch.from_arrays([to_list_array(batch.column(c)) for c in columns], columns)
    total = len(bucket_split)
    out: dict[str, list[bytes]] = {name: [] for name in dict.fromkeys(bucket_split)}
    for encoded in example_coder.RecordBatchToExamples(lists):
        record = deterministic(encoded)
        out[bucket_split[int.from_bytes(hashlib.sha256(record).digest(), "big") % total]].append(
            frame(record)
        )
    return out


def fingerprint(files: list[str | Path], stage: str) -> str:
    """SHA-256 of the input's bytes, the files in order (what the registry records as the data)."""
    from components.lib import fs

    digest = hashlib.sha256()
    for path in files:
        with fs.open_binary(path, stage) as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()
