"""TFRecord files without TensorFlow: writing ExampleGen's output, reading it back.

``import tensorflow`` costs ~7 s; the stages that only move records (ExampleGen, statistics)
do not need it. The format: for each record, its length (uint64), the masked CRC32C of the
length, the data, the masked CRC32C of the data; gzip around the whole file when compressed.
"""

from __future__ import annotations

import gzip
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from components.errors import StageError

READ_CHUNK = 4 << 20  # bytes of decompressed TFRecord data read at a time


def _masked(crc: int) -> int:
    """TFRecord's masked CRC32C."""
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def read_tfrecords(path: Path, stage: str, *, verify_data_crc: bool = True) -> Iterator[bytes]:
    """The records of one TFRecord file (gzipped or not), checking the framing as TensorFlow does.

    A truncated or corrupt file is a :class:`StageError` naming the file and the record number,
    not a decoder crash later on.
    """
    from google_crc32c import value as crc32c

    try:
        raw = open(path, "rb")  # noqa: SIM115 (closed below, possibly via the gzip wrapper)
    except OSError as e:
        raise StageError(stage, str(path), f"cannot open: {e}") from e
    with raw:
        magic = raw.read(2)
        raw.seek(0)
        fh: Any = gzip.GzipFile(fileobj=raw, mode="rb") if magic == b"\x1f\x8b" else raw
        buf = b""
        pos = 0
        index = 0
        eof = False
        try:
            while True:
                if len(buf) - pos < 12 and not eof:
                    more = fh.read(READ_CHUNK)
                    eof = not more
                    buf, pos = buf[pos:] + more, 0
                    continue
                if len(buf) - pos == 0 and eof:
                    return
                if len(buf) - pos < 12:
                    raise StageError(stage, str(path), f"record {index}: truncated header (file cut short?)")
                (length,) = struct.unpack_from("<Q", buf, pos)
                (length_crc,) = struct.unpack_from("<I", buf, pos + 8)
                if _masked(crc32c(buf[pos : pos + 8])) != length_crc:
                    raise StageError(
                        stage, str(path), f"record {index}: corrupt length (not a TFRecord file?)"
                    )
                end = pos + 12 + length + 4
                while len(buf) < end and not eof:
                    more = fh.read(max(READ_CHUNK, end - len(buf)))
                    eof = not more
                    buf, end, pos = buf[pos:] + more, end - pos, 0
                if len(buf) < end:
                    raise StageError(stage, str(path), f"record {index}: truncated data (file cut short?)")
                data = buf[pos + 12 : end - 4]
                if verify_data_crc:
                    (data_crc,) = struct.unpack_from("<I", buf, end - 4)
                    if _masked(crc32c(data)) != data_crc:
                        raise StageError(stage, str(path), f"record {index}: data checksum mismatch")
                yield data
                pos = end
                index += 1
        except (OSError, EOFError, gzip.BadGzipFile) as e:
            raise StageError(stage, str(path), f"record {index}: cannot read: {e}") from e


def frame(record: bytes) -> bytes:
    """One record in TFRecord framing, ready to append to a file."""
    from google_crc32c import value as crc32c

    length = struct.pack("<Q", len(record))
    return (
        length
        + struct.pack("<I", _masked(crc32c(length)))
        + record
        + struct.pack("<I", _masked(crc32c(record)))
    )
