"""ExampleGen's encoding, the same on both paths: Arrow batch -> framed ``tf.Example``s per split.

Each batch is encoded with tfx-bsl's C++ encoder (the one TFX's CsvExampleGen uses); the
encoder's feature order varies between calls, so each example is re-serialized with its feature
map sorted (TFX hashes ``SerializeToString(deterministic=True)``) and hashed into its split
exactly as TFX does (SHA-256 of the bytes, modulo the total bucket count). The in-process path
and the Beam path both call ``split_records``, so they write the same records.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

ARROW_TYPES = ("INT", "FLOAT", "BYTES")  # the column types decided by the first pass


def arrow_type(kind: str) -> Any:
    """The Arrow type a column of ``kind`` is read as (``float_list`` is float32, as TF's)."""
    import pyarrow as pa

    return {"INT": pa.int64(), "FLOAT": pa.float32(), "BYTES": pa.binary()}[kind]


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
