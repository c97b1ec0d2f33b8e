"""The paths a registry entry records: relative to the storage root, and old absolute ones mapped onto it.

Paths: ``serving_path``, ``model_location``, ``schema`` and a mark's ``moved_to`` are relative to
the storage root (a URL as it is), because the root may be moved, restored from a backup, copied
or mounted elsewhere in the next pod. ``entry_path(storage_root, entry, key)`` (also
``registry.entry_path``) is the one way to read the first two: against the root the reader was
given, never another.

Older entries hold absolute paths; ``relocate`` maps each onto the current root, and never uses
one outside it as it is (that is another copy of the volume, or nothing):

1. inside the current root: the same path, relative;
2. outside it (the root was moved or copied): the longest tail of it that exists under the current
   root, at least its layout (``<serving dir>/<model>/<version>``; ``artifacts/<run id>/...``);
3. a version dir: ``<serving root the caller uses>/<model>/<version>`` if that exists;
4. else the shortest such tail although nothing is there: the version counts as missing, like one
   deleted by hand (skipped by the baseline rule).

The same rule maps a single path (``relocate_path``): lineage reads the absolute paths older runs
recorded in ML Metadata with it (``pipelines.lineage.store.resolved_paths``).

``registry.read_index`` returns entries so mapped, and the next write of the index under the lock
(a push, resolve-baseline's set-aside, a reconcile that changed something) writes them back.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from components import names

SERVING_PATH, MODEL_LOCATION = "serving_path", "model_location"  # the entry keys holding paths


def relative_to_root(storage_root: str | Path, path: str | Path) -> str:
    """``path`` relative to the storage root, as the registry records it (a URL as it is)."""
    if "://" in str(path):
        return str(path)
    return os.path.relpath(os.path.abspath(path), os.path.abspath(storage_root))


def _least_tail(parts: tuple[str, ...], key: str) -> int:
    """How many last components a tail of an old absolute path keeps at least (its layout)."""
    if key == SERVING_PATH:
        return 3  # <serving dir>/<model>/<version>
    layout = (names.ARTIFACTS_DIR,) if key == MODEL_LOCATION else LAYOUT_DIRS
    found = [i for i, part in enumerate(parts) if part in layout]
    return len(parts) - found[-1] if found else 2  # artifacts/<run id>/..., kfp_local/<run>/..., ...


# The storage root's top folders: an old absolute path's tail starts at one of them at the latest.
LAYOUT_DIRS = (
    names.ARTIFACTS_DIR,
    names.KFP_LOCAL_DIR,
    names.DATA_DIR,
    names.SERVING_DIR,
    names.REGISTRY_DIR,
    names.METADATA_DIR,
)


def relocate(
    storage_root: str | Path, entry: dict[str, Any], key: str, serving_dir: Path | None = None
) -> str:
    """The entry's ``key`` relative to ``storage_root`` (an absolute one mapped: module docstring).

    Relative values, ``""`` and URLs come back as they are. ``serving_dir``: the serving root the
    caller uses, where a version may be found when no tail of its old path is.
    """
    value = str(entry.get(key) or "")
    extra: list[str] = []
    if key == SERVING_PATH and serving_dir is not None and os.path.isabs(value):
        extra = [
            relative_to_root(storage_root, Path(serving_dir) / entry["model_name"] / str(entry["version"]))
        ]
    return relocate_path(storage_root, value, key, extra)


def relocate_path(
    storage_root: str | Path,
    value: str,
    key: str = "",
    extra: list[str] | None = None,
    recorded_root: str | None = None,
) -> str:
    """One recorded path relative to ``storage_root``: the rule of the module docstring.

    ``key`` picks the least tail (``_least_tail``; any other key: from the last layout folder, e.g.
    ``kfp_local/<run>/...`` for lineage's URIs). ``recorded_root``: the root the path was recorded
    under, when known (lineage records the run's ``storage_root``): a path inside it maps exactly.
    ``extra``: more candidates, tried after the tails.
    """
    if not os.path.isabs(value):
        return value
    root, norm = os.path.abspath(storage_root), os.path.normpath(value)
    pairs: tuple[tuple[str, str], ...] = ((root, norm), (os.path.realpath(root), os.path.realpath(norm)))
    if recorded_root and os.path.isabs(recorded_root):
        pairs = ((os.path.normpath(recorded_root), norm), *pairs)
    inside = [r for r in (os.path.relpath(p, o) for o, p in pairs) if r.split(os.sep)[0] != os.pardir]
    parts = Path(norm).parts[1:]
    least = _least_tail(parts, key)
    tails = [os.path.join(*parts[i:]) for i in range(max(len(parts) - least, 0) + 1)] if parts else [""]
    found = (c for c in inside + tails + (extra or []) if c and os.path.lexists(os.path.join(root, c)))
    return next(found, inside[0] if inside else tails[-1])


def entry_path(storage_root: str | Path, entry: dict[str, Any], key: str = SERVING_PATH) -> Path | None:
    """Where an entry's ``key`` (``SERVING_PATH``, ``MODEL_LOCATION``) is under ``storage_root``.

    The one way to read a recorded path: against the root this reader was given. None: the entry
    records none (``""``) or a URL (``entry[key]``, as it is).
    """
    rel = relocate(storage_root, entry, key)
    if not rel or "://" in rel:
        return None
    return Path(os.path.normpath(os.path.join(storage_root, rel)))


def relocate_all(entries: list[dict[str, Any]], storage_root: str | Path, serving_dir: Path | None) -> None:
    """Every entry's paths made relative to ``storage_root`` (``relocate``), in place."""
    for entry in entries:
        for key in (SERVING_PATH, MODEL_LOCATION):
            if key in entry:
                entry[key] = relocate(storage_root, entry, key, serving_dir)
