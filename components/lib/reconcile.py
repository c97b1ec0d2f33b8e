"""The registry and the serving directory in agreement, whatever step a push was killed at.

A push (``components.lib.push``) copies into a hidden temp directory, records a pending entry,
renames the copy into ``<serving root>/<model>/<version>`` and moves the entry to the recorded
versions. Killed between any two of those, it leaves one of: a temp directory, a temp file of
the index, a pending entry without its directory, or a pending entry whose directory is in
place. ``reconcile`` settles each, under the registry lock, and says what it did:

- a pending entry whose SavedModel is in place is recorded (the rename is the commit point), so
  the version is the next run's baseline exactly as if its push had finished;
- a pending entry without its directory is dropped (that push never became visible);
- temp directories (``.push-*``) and index temp files (``.index.json.*.tmp``) are removed: while
  the lock is held no other push can be writing them;
- a version directory no entry lists (copied by hand, or left by a push from before pending
  entries existed) is registered from what it is — its path, a SavedModel — with the verdict
  ``UNVERIFIED``, so the registry lists everything TF Serving can load but such a version is never
  a baseline; one that is not a SavedModel (TF Serving would fail on it) is set aside as
  ``.quarantined-<version>-<time>`` (hidden: TF Serving ignores it; its number is never reused).

Resolve-baseline calls ``settle`` at the start of every run (so the baseline it reads is settled)
and push calls ``reconcile`` under its own lock before choosing a version: after any crash, the
next run leaves ``serving/`` and ``registry/index.json`` in agreement.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from components.lib import registry, registry_lock, registry_paths, saved_model

UNVERIFIED = "UNVERIFIED"  # the verdict of a version found on disk without a registry entry


def _unlisted(doc: dict[str, Any], model_dir: Path, model_name: str) -> list[int]:
    """Version directories on disk whose number no recorded entry of the model holds."""
    listed = {e["version"] for e in registry.versions_of(doc, model_name)}
    return sorted(v for v in registry.numeric_dirs(model_dir) if v not in listed)


def _temp_dirs(model_dir: Path) -> list[Path]:
    try:
        return sorted(p for p in model_dir.iterdir() if p.name.startswith(registry.TEMP_PREFIX))
    except FileNotFoundError:
        return []


def needed(doc: dict[str, Any], storage_root: str | Path, model_dir: Path, model_name: str) -> bool:
    """Whether anything is left to settle (read without the lock: a cheap look)."""
    return bool(
        registry.pending_of(doc)
        or _temp_dirs(model_dir)
        or registry.temp_files(storage_root)
        or _unlisted(doc, model_dir, model_name)
    )


def reconcile(doc: dict[str, Any], storage_root: str | Path, model_dir: Path, model_name: str) -> list[str]:
    """Settle ``doc`` and the disk (see the module docstring); one line per thing done.

    Call only while holding ``registry.locked``; the caller writes ``doc`` if it changed.
    """
    said: list[str] = []
    for entry in registry.pending_of(doc):
        name, version, where = entry["model_name"], entry["version"], registry.entry_path(storage_root, entry)
        if registry.has_saved_model(storage_root, entry):
            registry.commit_pending(doc, entry)
            said.append(
                f"recorded {name} version {version} ({where}) from its pending entry: "
                "its push was killed after the version became visible"
            )
        else:
            registry.drop_pending(doc, entry)
            said.append(
                f"dropped the pending entry of {name} version {version}: "
                "its push was killed before the version became visible"
            )
    for tmp in _temp_dirs(model_dir):
        shutil.rmtree(tmp, ignore_errors=True)
        said.append(f"removed {tmp}, the copy of a killed push")
    for tmp in registry.temp_files(storage_root):
        try:
            tmp.unlink()
        except FileNotFoundError:
            continue
        said.append(f"removed {tmp}, an index write that was killed")
    for version in _unlisted(doc, model_dir, model_name):
        path = model_dir / str(version)
        if saved_model.is_saved_model(path):
            doc["versions"].append(
                registry.make_entry(
                    version=version,
                    model_name=model_name,
                    model_location="",
                    serving_path=registry_paths.relative_to_root(storage_root, path),
                    blessing={
                        "verdict": UNVERIFIED,
                        "reasons": ["found in the serving directory without a registry entry"],
                    },
                    metrics={},
                    fingerprint="",
                    run_id="",
                )
            )
            said.append(
                f"registered {path} as {model_name} version {version}, {UNVERIFIED}: a SavedModel no "
                "registry entry listed; it is served, never a baseline"
            )
        else:
            aside = model_dir / f"{registry.QUARANTINE_PREFIX}{version}-{time.strftime('%Y%m%d-%H%M%S')}"
            try:
                os.rename(path, aside)
            except OSError as e:
                said.append(f"could not set {path} aside ({e}): not a SavedModel, TF Serving cannot load it")
                continue
            said.append(f"moved {path} to {aside.name}: not a SavedModel, TF Serving could not load it")
    return said


def reconcile_and_record(
    doc: dict[str, Any], storage_root: str | Path, model_dir: Path, model_name: str, stage: str
) -> list[str]:
    """``reconcile``, then the index rewritten if that changed it. Call only while holding the lock."""
    before = json.dumps(doc, sort_keys=True)
    said = reconcile(doc, storage_root, model_dir, model_name)
    if json.dumps(doc, sort_keys=True) != before:
        registry.write_index(storage_root, doc, stage)
    return said


def settle(
    storage_root: str | Path,
    model_dir: Path,
    model_name: str,
    stage: str,
    lock: registry_lock.Request | None = None,
) -> list[str]:
    """``reconcile`` under the lock if a look without it finds anything to do; one line per thing done.

    Takes the lock (and so creates the registry folder) only when there is something to settle;
    ``lock``: who asks and how long it waits for it (``registry_lock``). A damaged index stops
    here with its StageError, as it stops every reader.
    """
    serving_dir = model_dir.parent  # where old absolute paths may be found (``registry_paths``)
    if not needed(registry.read_index(storage_root, stage, serving_dir), storage_root, model_dir, model_name):
        return []
    with registry.locked(storage_root, stage, serving_dir, lock) as doc:
        return reconcile_and_record(doc, storage_root, model_dir, model_name, stage)
