"""Where input data may live: a path on the volume, or an object-store URL (``gs://``, ``s3://``).

A URL is read through Beam's ``FileSystems`` — the layer TFX and Beam's own sources use, with
the same credentials (Application Default Credentials / Workload Identity for ``gs://``, the AWS
chain / IRSA for ``s3://``) and the same options (``--s3_endpoint_url``, ``--project`` … in
``beam_args``; ``configure`` hands them to the driver's FileSystems, Beam hands them to its
workers). A local path is read with plain ``open`` (no Beam import on the fast path). Reads
stream and seek, so ExampleGen's byte ranges cost what they cost on a disk.

Only the INPUT may be a URL: every stage's output is written under the storage root, a POSIX
volume (docs/scale-out.md "Storage" says why and what that means for Dataflow).
"""

from __future__ import annotations

from pathlib import Path
from typing import IO

from components.errors import StageError

URL_SCHEMES = ("gs", "s3")


def is_url(path: str | Path) -> bool:
    """``gs://…`` or ``s3://…`` (a ``Path`` never is one: it would have mangled the ``//``)."""
    scheme, sep, _ = str(path).partition("://")
    return bool(sep) and not isinstance(path, Path) and scheme.lower() in URL_SCHEMES


def name(path: str | Path) -> str:
    """The last part of a path or URL (``gs://b/in/a.csv`` -> ``a.csv``)."""
    return str(path).rstrip("/").rsplit("/", 1)[-1]


def configure(beam_args: str, stage: str) -> None:
    """Give the driver's FileSystems the options in ``beam_args`` (endpoints, project, region)."""
    from apache_beam.io.filesystems import FileSystems

    from components.lib.beam import pipeline_options

    FileSystems.set_options(pipeline_options(beam_args, stage))


def _problem(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:300]


def open_binary(path: str | Path, stage: str) -> IO[bytes]:
    """A binary reader that can seek; a URL that cannot be opened is the stage's one line."""
    if not is_url(path):
        return open(path, "rb")
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems

    try:
        return FileSystems.open(str(path), compression_type=CompressionTypes.UNCOMPRESSED)
    except Exception as e:  # noqa: BLE001 (each store raises its own errors)
        raise StageError(stage, str(path), f"cannot read: {_problem(e)}") from e


def size(path: str | Path, stage: str) -> int:
    """Bytes in one file."""
    if not is_url(path):
        return Path(path).stat().st_size
    found = [n for u, n in _match(str(path), stage) if u == str(path)]
    if not found:
        raise StageError(stage, str(path), "input file does not exist")
    return found[0]


def _match(pattern: str, stage: str) -> list[tuple[str, int]]:
    from apache_beam.io.filesystems import FileSystems

    try:
        found = FileSystems.match([pattern])[0].metadata_list
    except Exception as e:  # noqa: BLE001 (no bucket, no credentials, no network: one line)
        message = _problem(e)
        if "No files found" in message or "NotFound" in message or "404" in message:
            return []
        raise StageError(stage, pattern, f"cannot list: {message}") from e
    return sorted((m.path, m.size_in_bytes) for m in found)


def list_files(path: str | Path, suffix: str, stage: str) -> list[str | Path] | None:
    """The file itself, or a folder's (a URL prefix's) files ending in ``suffix`` in name order.

    None when nothing is there. A URL that names an object is that file; otherwise it is a
    prefix whose direct children are listed (not sub-folders, as for a local folder).
    """
    if not is_url(path):
        p = Path(path)
        if not p.exists():
            return None
        if p.is_dir():
            return sorted(c for c in p.iterdir() if c.suffix.lower() == suffix and c.is_file())
        return [p]
    url = str(path)
    exact = [u for u, _ in _match(url, stage) if u == url] if not url.endswith("/") else []
    if exact:
        return [url]
    children = _match(url.rstrip("/") + "/*", stage)
    if not children:
        return None
    return [u for u, _ in children if u.lower().endswith(suffix) and "/" not in u[len(url.rstrip("/")) + 1 :]]


def total_size(files: list[str | Path], stage: str) -> int:
    """Bytes in all ``files``."""
    return sum(size(f, stage) for f in files)
