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
    found = [i for i, part in enumerate(parts) if part == names.ARTIFACTS_DIR]
    return len(parts) - found[-1] if found else 2  # artifacts/<run id>/...


def relocate(
    storage_root: str | Path, entry: dict[str, Any], key: str, serving_dir: Path | None = None
) -> str:
    """The entry's ``key`` relative to ``storage_root`` (an absolute one mapped: module docstring).

    Relative values, ``""`` and URLs come back as they are. ``serving_dir``: the serving root the
    caller uses, where a version may be found when no tail of its old path is.
    """
    value = str(entry.get(key) or "")
    if not os.path.isabs(value):
        return value
    root, norm = os.path.abspath(storage_root), os.path.normpath(value)
    pairs = ((root, norm), (os.path.realpath(root), os.path.realpath(norm)))
    inside = [r for r in (os.path.relpath(p, o) for o, p in pairs) if r.split(os.sep)[0] != os.pardir]
    parts = Path(norm).parts[1:]
    least = _least_tail(parts, key)
    tails = [os.path.join(*parts[i:]) for i in range(max(len(parts) - least, 0) + 1)] if parts else [""]
    extra: list[str] = []
    if key == SERVING_PATH and serving_dir is not None:
        extra = [relative_to_root(root, Path(serving_dir) / entry["model_name"] / str(entry["version"]))]
    found = (c for c in inside + tails + extra if c and os.path.lexists(os.path.join(root, c)))
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
