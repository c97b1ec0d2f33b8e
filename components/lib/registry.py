"""The model registry: one JSON index on the storage root listing every pushed model version.

Why a file and not ML Metadata: resolve-baseline must find "the latest blessed model of earlier
runs" on a cluster whose metadata service may be unreachable from a pod, locally without any
service, and after the KFP database was reset. The index lives next to the served models on
the same volume, so whoever can read the models can read the registry.

Layout (``<storage root>/registry/index.json``)::

    {"format": 1,
     "versions": [{"version": 1, "model_name": "insurance", "model_location": "artifacts/<run>/train",
                   "serving_path": "serving/insurance/1", "blessing": {...},
                   "metrics": {...}, "fingerprint": "...", "run_id": "...", "time": "...",
                   "schema": "serving/insurance/1/assets.extra/schema.pbtxt"}],
     "pending": [ ...entries of the same shape... ]}

Paths (``serving_path``, ``model_location``, ``schema``, a mark's ``moved_to``) are relative to the
storage root (URLs as they are): it may be moved, copied or mounted elsewhere. ``entry_path(root,
entry, key)`` is the one way to read them, against the root the reader was given. Old absolute ones
(``relocate``, ``registry_paths``): inside the root they become relative; outside (moved, copied)
never used as is: mapped by their layout tail (``<serving dir>/<model>/<version>``,
``artifacts/<run id>/...``) onto what exists under this root, else they count as missing (as a
version deleted by hand). ``read_index`` returns them mapped; the next write under the lock stores it.

``schema`` (optional, ``OPTIONAL_ENTRY_KEYS``): the schema the version was trained with, relative
to the storage root, inside the version directory (``served.schema_path``). Entries written
before push kept the schema, and versions whose training schema was not found, have no such key;
every reader treats it as optional (``served.served_schema`` looks further).

``quarantined`` (added to an entry by resolve-baseline, never by push): ``{"reason": ...,
"time": ..., "moved_to": ...}`` on a version found damaged on the volume (``saved_model.damage``)
and set aside as ``.quarantined-<version>-<time>`` (``moved_to``, relative to the storage root).
The entry stays, so its number is never given again, but it is never a baseline. Entries
without the key (all written before it existed) are not quarantined.

A push records its entry under ``pending`` before it renames the version directory into place,
and moves it to ``versions`` after: the rename is the commit point. A pending entry whose
SavedModel is on disk is pushed (the process died between rename and record) and every reader
counts it (``pushed_of``); one without is a push that died before its rename and counts for
nothing. The next push or resolve-baseline settles both under the lock (``reconcile``).
``pending`` is absent from an index no push has written since it was introduced; readers that
predate it ignore it.

Concurrency: every change takes an exclusive ``fcntl.flock`` on ``index.json.lock`` next to the
index (``registry_lock``: a bounded wait that names the holder) and rewrites the index atomically
(temp file in the same directory, fsync, ``os.replace``, fsync of the directory). Readers take no
lock: ``os.replace`` means they see the old or the new index, never a half-written one.
Assumption: the volume honours flock across pods. Local disks do; on NFS (incl. GCP Filestore,
EFS) the Linux client maps flock onto NFS byte-range locks (NFSv4 natively, NFSv3 through lockd),
so it holds across nodes unless the ``nolock``/``local_lock`` mount options disable locking. A
crashed holder's lock is released by the kernel/NFS server when its process dies; its temp file
(``.index.json.*.tmp``) is removed by the next holder. Files get the umask's modes (0644 under the
usual 022), like every other file on the volume.

A damaged index (not JSON, or not this structure) is never replaced or repaired: it is the only
record of what was pushed, so every reader and writer stops with a StageError naming the file.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from components import names, parameters
from components.errors import StageError
from components.lib import faults, registry_lock, registry_paths, saved_model, storage
from components.lib.registry_paths import entry_path  # also ``registry.entry_path``, the one reader

FORMAT = 1
LOCK_SUFFIX = ".lock"
PENDING = "pending"  # the index's list of pushes recorded before their rename
TEMP_PREFIX = ".push-"  # a push's copy in progress: hidden and non-numeric, TF Serving never loads it
QUARANTINE_PREFIX = ".quarantined-"  # ".quarantined-<version>-<time>": a broken version dir set aside
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
OPTIONAL_ENTRY_KEYS = ("schema",)  # present only when push found the training schema
CODE = "code"  # optional too: the code that trained the version, when push was given it
QUARANTINED = "quarantined"  # added to an entry later: its version was damaged and set aside
_MARK_KEYS = ("reason", "time")  # what a QUARANTINED mark must hold (strings); "moved_to" may be absent
_VERSION_DIR = re.compile(r"^[0-9]+$")  # TF Serving only loads all-digit version directories
_QUARANTINED = re.compile(rf"^{re.escape(QUARANTINE_PREFIX)}([0-9]+)-")


def index_path(storage_root: str | Path) -> Path:
    """Where the registry index of a storage root lives."""
    return Path(storage_root) / names.REGISTRY_INDEX


def _damaged(path: Path, stage: str, problem: str) -> StageError:
    return StageError(
        stage,
        str(path),
        f"registry index is damaged ({problem}); it is never replaced automatically: "
        "restore it from a backup or move it away to start a new registry",
    )


def _check(doc: Any, path: Path, stage: str) -> dict[str, Any]:
    """The parsed index, or a StageError saying what is wrong with it."""

    def bad(problem: str) -> StageError:
        return _damaged(path, stage, problem)

    if not isinstance(doc, dict) or not isinstance(doc.get("versions"), list):
        raise bad('expected an object with a "versions" list')
    if doc.get("format") != FORMAT:
        raise bad(f"unknown format {doc.get('format')!r}, expected {FORMAT}")
    if not isinstance(doc.get(PENDING, []), list):
        raise bad(f'"{PENDING}" is not a list')
    seen: set[tuple[str, int]] = set()
    for where in ("versions", PENDING):
        for i, entry in enumerate(doc.get(where, [])):
            if not isinstance(entry, dict):
                raise bad(f"{where}[{i}] is not an object")
            version = entry.get("version")
            if not isinstance(version, int) or isinstance(version, bool) or version < 0:
                raise bad(f"{where}[{i}] has no integer version")
            if not isinstance(entry.get("model_name"), str) or not isinstance(entry.get("serving_path"), str):
                raise bad(f"{where}[{i}] has no model_name/serving_path")
            if not isinstance(entry.get("schema", ""), str):
                raise bad(f'{where}[{i}] has a "schema" that is not a path')
            if not isinstance(entry.get("code", {}), dict):
                raise bad(f'{where}[{i}] has a "code" that is not an object')
            mark = entry.get(QUARANTINED, {"reason": "", "time": ""})  # absent: not quarantined
            if not isinstance(mark, dict) or not all(isinstance(mark.get(k), str) for k in _MARK_KEYS):
                raise bad(f'{where}[{i}] has a "{QUARANTINED}" without a reason and a time')
            key = (entry["model_name"], version)
            if key in seen:
                raise bad(f"version {version} of {entry['model_name']!r} is listed twice")
            seen.add(key)
    return doc


def read_index(storage_root: str | Path, stage: str, serving_dir: Path | None = None) -> dict[str, Any]:
    """The index (empty if nothing was pushed; damaged: StageError), its paths relative (``relocate``)."""
    path = index_path(storage_root)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {"format": FORMAT, "versions": []}
    except OSError as e:
        raise StageError(stage, str(path), f"cannot read the registry index: {e}") from e
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise _damaged(path, stage, f"not valid JSON: {e}") from e
    doc = _check(doc, path, stage)
    registry_paths.relocate_all(doc["versions"] + doc.get(PENDING, []), storage_root, serving_dir)
    return doc


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


def write_index(
    storage_root: str | Path, doc: dict[str, Any], stage: str, fault_point: str = "registry.mid_write"
) -> None:
    """Replace the index atomically. Call only while holding ``locked``.

    The temp file is created with the umask's mode (``tempfile.mkstemp`` would make it 0600,
    and the index with it). ``fault_point`` fires with half the document written.
    """
    path = index_path(storage_root)
    _check(doc, path, stage)
    text = json.dumps(doc, indent=2, sort_keys=True) + "\n"
    tmp = path.parent / f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "w") as fh:
            fh.write(text[: len(text) // 2])
            fh.flush()
            faults.point(fault_point)
            fh.write(text[len(text) // 2 :])
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def temp_files(storage_root: str | Path) -> list[Path]:
    """Temp files of index writes; any found while holding the lock belongs to a dead writer."""
    path = index_path(storage_root)
    return sorted(path.parent.glob(f".{path.name}.*.tmp"))


@contextlib.contextmanager
def locked(
    storage_root: str | Path,
    stage: str,
    serving_dir: Path | None = None,
    request: registry_lock.Request | None = None,
) -> Iterator[dict[str, Any]]:
    """Hold the registry's exclusive lock; yield the current index (validated, paths relative).

    Everything that must not interleave with another push (allocating a version, making it
    visible, recording it) happens inside this block. The wait is bounded and names the holder
    (``registry_lock``; ``request``: this run's id and ``lock_timeout``).
    """
    path = index_path(storage_root)
    with registry_lock.held(Path(str(path) + LOCK_SUFFIX), stage, request):
        yield read_index(storage_root, stage, serving_dir)


def check_model_name(model_name: str, stage: str) -> str:
    """A model name is one plain directory name (it becomes a path component under the serving root).

    The rule is the parameter vocabulary's (``components.parameters``), enforced here again at run
    time: a server run's parameters reach the pod unchecked by any local preflight. The parameter
    may be empty (the stage derives the name from ``data``); the name used here may not.
    """
    if not model_name:
        why = "parameter 'model_name' must be a plain name (letters, digits, '.', '_', '-'), got ''"
        raise StageError(stage, None, why)
    try:
        parameters.convert(parameters.BY_NAME["model_name"], model_name)
    except parameters.ParameterError as e:
        raise StageError(stage, None, str(e)) from None
    return model_name


def model_dir(storage_root: str | Path, serving_root: str, model_name: str, stage: str) -> Path:
    """``<serving root>/<model name>``: the folder TF Serving watches; on the volume, never outside."""
    root = storage.resolve(storage_root, serving_root, stage, "serving_root")
    if os.path.normpath(root) == os.path.normpath(os.path.abspath(storage_root)):
        raise StageError(
            stage, str(root), "serving_root must name a folder under the storage root, not the root"
        )
    return root / check_model_name(model_name, stage)


def versions_of(doc: dict[str, Any], model_name: str) -> list[dict[str, Any]]:
    """Recorded entries of one model, oldest version first (pending pushes not included)."""
    return sorted((e for e in doc["versions"] if e["model_name"] == model_name), key=lambda e: e["version"])


def pending_of(doc: dict[str, Any], model_name: str | None = None) -> list[dict[str, Any]]:
    """Pushes recorded before their rename and not yet settled (of one model, or all)."""
    return [e for e in doc.get(PENDING, []) if model_name is None or e["model_name"] == model_name]


def pushed_of(storage_root: str | Path, doc: dict[str, Any], model_name: str) -> list[dict[str, Any]]:
    """Every pushed version of a model, oldest first: recorded ones and landed pending ones.

    A pending entry whose version directory holds a SavedModel was pushed: its push died after
    the rename, the commit point.
    """
    landed = [e for e in pending_of(doc, model_name) if has_saved_model(storage_root, e)]
    return sorted(versions_of(doc, model_name) + landed, key=lambda e: e["version"])


def add_pending(doc: dict[str, Any], entry: dict[str, Any]) -> None:
    doc.setdefault(PENDING, []).append(entry)


def drop_pending(doc: dict[str, Any], entry: dict[str, Any]) -> None:
    doc[PENDING] = [e for e in doc.get(PENDING, []) if e is not entry]
    if not doc[PENDING]:
        del doc[PENDING]


def commit_pending(doc: dict[str, Any], entry: dict[str, Any]) -> None:
    """Move a pending entry to the recorded versions (its version directory is in place)."""
    drop_pending(doc, entry)
    doc["versions"].append(entry)


def numeric_dirs(model_dir: Path) -> list[int]:
    """Version directories already present in a serving model directory (TF Serving's view)."""
    try:
        return [int(p.name) for p in model_dir.iterdir() if _VERSION_DIR.match(p.name)]
    except FileNotFoundError:
        return []


def quarantined(model_dir: Path) -> list[int]:
    """Versions whose directories ``reconcile`` set aside (their numbers are never given again)."""
    try:
        return [int(m[1]) for p in model_dir.iterdir() if (m := _QUARANTINED.match(p.name))]
    except FileNotFoundError:
        return []


def next_version(doc: dict[str, Any], model_name: str, model_dir: Path) -> int:
    """One more than the highest version in the registry (pending too), on disk or set aside.

    The disk counts too: a version copied by hand, or one whose registry record was lost, must
    never be overwritten or shadowed by a lower number.
    """
    entries = versions_of(doc, model_name) + pending_of(doc, model_name)
    known = [e["version"] for e in entries] + numeric_dirs(model_dir) + quarantined(model_dir)
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
    schema: str | None = None,
    code: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One registry record (ENTRY_KEYS, and ``schema``/``code`` when given), stamped with the UTC time.

    ``schema``: the training schema's path relative to the storage root (None: none was found).
    ``code``: who trained it (``code_identity``), for lineage once the run's artifacts are gone.
    """
    entry = {
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
    if schema:
        entry["schema"] = schema
    if code:
        entry["code"] = dict(code)
    return entry


def is_quarantined(entry: dict[str, Any]) -> bool:
    """Whether the entry's version was found damaged and set aside (it is never a baseline)."""
    return QUARANTINED in entry


def has_saved_model(storage_root: str | Path, entry: dict[str, Any]) -> bool:
    """Whether the entry's version directory under ``storage_root`` holds a SavedModel."""
    path = entry_path(storage_root, entry)
    return path is not None and saved_model.is_saved_model(path)


def latest_blessed(storage_root: str | Path, doc: dict[str, Any], model_name: str) -> list[dict[str, Any]]:
    """Blessed pushed versions of a model not set aside, newest first (the baseline candidates, in order)."""
    blessed = [
        e
        for e in pushed_of(storage_root, doc, model_name)
        if isinstance(e.get("blessing"), dict)
        and e["blessing"].get("verdict") == names.BLESSED
        and not is_quarantined(e)
    ]
    return blessed[::-1]


def baseline_entry(
    storage_root: str | Path, doc: dict[str, Any], model_name: str
) -> tuple[dict[str, Any] | None, list[int]]:
    """The baseline rule, for resolve-baseline and for push's re-check under the lock.

    The newest blessed pushed version not set aside whose SavedModel is under ``storage_root`` and
    intact (``saved_model.damage``), and the newer blessed versions skipped: their files are gone
    (deleted by hand, or not under this root) or damaged. Every reader applies the damage check,
    so one that runs before resolve-baseline sets a damaged version aside (ExampleGen, a push)
    already agrees with it.
    """
    skipped: list[int] = []
    for entry in latest_blessed(storage_root, doc, model_name):
        path = entry_path(storage_root, entry)
        if path is not None and saved_model.is_saved_model(path) and saved_model.damage(path) is None:
            return entry, skipped
        skipped.append(entry["version"])
    return None, skipped
