"""The model registry: one JSON index on the storage root listing every pushed model version.

Why a file and not ML Metadata: resolve-baseline must find "the latest blessed model of earlier
runs" on a cluster whose metadata service may be unreachable from a pod, locally without any
service, and after the KFP database was reset. The index lives next to the served models on
the same volume, so whoever can read the models can read the registry.

Layout (``<storage root>/registry/index.json``)::

    {"format": 1,
     "versions": [{"version": 1, "model_name": "insurance", "model_location": ".../train",
                   "serving_path": ".../serving/insurance/1", "blessing": {...},
                   "metrics": {...}, "fingerprint": "...", "run_id": "...", "time": "..."}]}

Concurrency: every change takes an exclusive ``fcntl.flock`` on ``index.json.lock`` next to the
index and rewrites the index atomically (temp file in the same directory, fsync, ``os.replace``,
fsync of the directory). Readers take no lock: ``os.replace`` means they see the old or the new
index, never a half-written one. Assumption: the volume honours flock across pods. Local disks
do; on NFS (incl. GCP Filestore, EFS) the Linux client maps flock onto NFS byte-range locks
(NFSv4 natively, NFSv3 through lockd), so it holds across nodes as long as locking is not
disabled by the ``nolock``/``local_lock`` mount options. A crashed holder's lock is released
by the kernel/NFS server when its process dies, so nothing has to be cleaned up by hand.

A damaged index (not JSON, or not this structure) is never replaced or repaired: it is the only
record of what was pushed, so every reader and writer stops with a StageError naming the file.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from components import names
from components.errors import StageError

FORMAT = 1
LOCK_SUFFIX = ".lock"
ENTRY_KEYS = (
    "version",
    "model_name",
    "model_location",
    "serving_path",
    "blessing",
    "metrics",
    "fingerprint",
    "run_id",
    "time",
)
_VERSION_DIR = re.compile(r"^[0-9]+$")  # TF Serving only loads all-digit version directories


def index_path(storage_root: str | Path) -> Path:
    """Where the registry index of a storage root lives."""
    return Path(storage_root) / names.REGISTRY_INDEX


def _empty() -> dict[str, Any]:
    return {"format": FORMAT, "versions": []}


def _check(doc: Any, path: Path, stage: str) -> dict[str, Any]:
    """The parsed index, or a StageError saying what is wrong with it."""

    def bad(problem: str) -> StageError:
        return StageError(
            stage,
            str(path),
            f"registry index is damaged ({problem}); it is never replaced automatically: "
            "restore it from a backup or move it away to start a new registry",
        )

    if not isinstance(doc, dict) or not isinstance(doc.get("versions"), list):
        raise bad('expected an object with a "versions" list')
    if doc.get("format") != FORMAT:
        raise bad(f"unknown format {doc.get('format')!r}, expected {FORMAT}")
    seen: set[tuple[str, int]] = set()
    for i, entry in enumerate(doc["versions"]):
        if not isinstance(entry, dict):
            raise bad(f"versions[{i}] is not an object")
        version = entry.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 0:
            raise bad(f"versions[{i}] has no integer version")
        if not isinstance(entry.get("model_name"), str) or not isinstance(entry.get("serving_path"), str):
            raise bad(f"versions[{i}] has no model_name/serving_path")
        key = (entry["model_name"], version)
        if key in seen:
            raise bad(f"version {version} of {entry['model_name']!r} is listed twice")
        seen.add(key)
    return doc


def read_index(storage_root: str | Path, stage: str) -> dict[str, Any]:
    """The registry index (an empty one if nothing was pushed yet); damaged -> StageError."""
    path = index_path(storage_root)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return _empty()
    except OSError as e:
        raise StageError(stage, str(path), f"cannot read the registry index: {e}") from e
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise StageError(
            stage,
            str(path),
            f"registry index is damaged (not valid JSON: {e}); it is never replaced automatically: "
            "restore it from a backup or move it away to start a new registry",
        ) from e
    return _check(doc, path, stage)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on directories; the rename is still atomic
    finally:
        os.close(fd)


def write_index(storage_root: str | Path, doc: dict[str, Any], stage: str) -> None:
    """Replace the index atomically. Call only while holding ``locked``."""
    path = index_path(storage_root)
    _check(doc, path, stage)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(doc, fh, indent=2, sort_keys=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


@contextlib.contextmanager
def locked(storage_root: str | Path, stage: str) -> Iterator[dict[str, Any]]:
    """Hold the registry's exclusive lock; yield the current index (validated).

    Everything that must not interleave with another push (allocating a version, making it
    visible, recording it) happens inside this block.
    """
    path = index_path(storage_root)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(str(path) + LOCK_SUFFIX, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise StageError(stage, str(path.parent), f"cannot open the registry lock: {e}") from e
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield read_index(storage_root, stage)
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def versions_of(doc: dict[str, Any], model_name: str) -> list[dict[str, Any]]:
    """Registry entries of one model, oldest version first."""
    return sorted((e for e in doc["versions"] if e["model_name"] == model_name), key=lambda e: e["version"])


def numeric_dirs(model_dir: Path) -> list[int]:
    """Version directories already present in a serving model directory (TF Serving's view)."""
    try:
        return [int(p.name) for p in model_dir.iterdir() if _VERSION_DIR.match(p.name)]
    except FileNotFoundError:
        return []


def next_version(doc: dict[str, Any], model_name: str, model_dir: Path) -> int:
    """One more than the highest version in the registry or on disk.

    The disk counts too: a version copied by hand, or one whose registry record was lost, must
    never be overwritten or shadowed by a lower number.
    """
    known = [e["version"] for e in versions_of(doc, model_name)] + numeric_dirs(model_dir)
    return max(known, default=0) + 1


def make_entry(
    *,
    version: int,
    model_name: str,
    model_location: str,
    serving_path: str,
    blessing: dict[str, Any],
    metrics: dict[str, Any],
    fingerprint: str,
    run_id: str,
) -> dict[str, Any]:
    """One registry record (keys: ENTRY_KEYS), stamped with the current UTC time."""
    return {
        "version": int(version),
        "model_name": model_name,
        "model_location": model_location,
        "serving_path": serving_path,
        "blessing": blessing,
        "metrics": metrics,
        "fingerprint": fingerprint,
        "run_id": run_id,
        "time": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }


def latest_blessed(doc: dict[str, Any], model_name: str) -> list[dict[str, Any]]:
    """Blessed entries of a model, newest version first (the baseline candidates, in order)."""
    blessed = [
        e
        for e in versions_of(doc, model_name)
        if isinstance(e.get("blessing"), dict) and e["blessing"].get("verdict") == names.BLESSED
    ]
    return blessed[::-1]
