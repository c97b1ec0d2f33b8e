"""Resolve-baseline logic: the latest blessed, pushed version of a model, from the registry.

TFX resolves the baseline through ML Metadata; here the registry index on the storage root is
the source (see ``registry``), so this works without any metadata service and sees pushes of
every earlier run, local or on a cluster, as long as they share the volume. The answer is a
``baseline.Baseline`` record, the contract evaluate reads; the rule that picks it is the
registry's (``registry.baseline_entry``), the same push re-checks under its lock.

Before resolving, the stage looks after the volume at the start of every run (it is the one
stage every run executes uncached, with no upstream task): it settles what a killed push left
(``reconcile.settle``: the baseline it reads then counts a version whose push died after its
rename) and removes scratch directories killed stages left (``storage.clean_scratch``).

It also sets aside damaged versions (``set_aside_damaged``), because resolve-baseline runs first:
a served version whose files were corrupted, truncated or deleted on the volume
(``saved_model.damage``, checked against the manifest push wrote) would otherwise be found only
when evaluate loads it, after all the training, and again by every later run. Under the registry
lock its directory is renamed to ``.quarantined-<version>-<time>`` (hidden and non-numeric, so TF
Serving stops serving it and loads the highest remaining version; the same naming as
``reconcile``) and its registry entry is marked (``registry.QUARANTINED``): later runs never pick
it and its number is never given again. The next older intact blessed version is the baseline,
and the Baseline's reason says why in one line. A version that cannot be renamed is not marked:
the baseline rule skips it anyway and the next run tries again.

Every path it reads from the registry is resolved against the storage root this run was given
(``registry.entry_path``): a root moved elsewhere still finds its baseline, and a copy of the
volume never hands evaluate a version of the original (``registry_paths``).
"""

from __future__ import annotations

import datetime as _dt
import os
import time
from pathlib import Path
from typing import Any

from components import names
from components.errors import StageError
from components.lib import reconcile, registry, registry_lock, registry_paths, saved_model, storage
from components.lib.baseline import FOUND_REASON, Baseline

STAGE = names.STAGE_RESOLVE


def baseline_from_entry(
    storage_root: str, entry: dict[str, Any], model_name: str, skipped: list[int], reason: str = FOUND_REASON
) -> Baseline:
    """The baseline record of one registry entry (a pushed version), its paths under ``storage_root``."""
    location = registry.entry_path(storage_root, entry, registry_paths.MODEL_LOCATION)
    return Baseline(
        True,
        reason,
        model_name,
        version=entry["version"],
        model_path=str(registry.entry_path(storage_root, entry) or ""),
        metrics=entry.get("metrics") or {},
        run_id=entry.get("run_id") or "",
        model_location=str(location or entry.get(registry_paths.MODEL_LOCATION) or ""),
        fingerprint=entry.get("fingerprint") or "",
        pushed_at=entry.get("time") or "",
        skipped_versions=skipped,
    )


def housekeeping(
    storage_root: str, serving_root: str, model_name: str, lock: registry_lock.Request | None = None
) -> list[str]:
    """Settle the registry against the serving directory and remove dead scratch; one line per act.

    ``lock``: this run's id and how long it waits for the registry lock (``lock_timeout``).
    """
    model_dir = registry.model_dir(storage_root, serving_root, model_name, STAGE)
    settled = reconcile.settle(storage_root, model_dir, model_name, STAGE, lock)
    said = [f"registry: {line}" for line in settled]
    said += [f"registry: {line}" for line in set_aside_damaged(storage_root, model_name, lock)]
    return said + [f"scratch: {line}" for line in storage.clean_scratch(storage_root)]


def _version_dir(storage_root: str, entry: dict[str, Any]) -> Path | None:
    """The entry's version directory under ``storage_root`` if it is there (``registry.entry_path``)."""
    path = registry.entry_path(storage_root, entry)
    return path if path is not None and path.is_dir() else None


def _damaged(storage_root: str, doc: dict[str, Any], model_name: str) -> list[dict[str, Any]]:
    """Blessed versions newer than the baseline that are on disk but damaged, newest first.

    Exactly the ones the baseline rule skips (``registry.baseline_entry``) although their
    directory is there; the ones whose directory is gone are only skipped, as before.
    """
    _, skipped = registry.baseline_entry(storage_root, doc, model_name)
    return [
        e
        for e in registry.latest_blessed(storage_root, doc, model_name)
        if e["version"] in skipped and _version_dir(storage_root, e) is not None
    ]


def _what(entry: dict[str, Any], why: str) -> str:
    return f"version {entry['version']} of model {entry['model_name']!r} is damaged ({why})"


def _set_aside(storage_root: str, doc: dict[str, Any], entry: dict[str, Any]) -> str:
    """Rename one damaged version aside and mark its entry; the line that says so."""
    path = _version_dir(storage_root, entry)
    if path is None:  # gone meanwhile: only skipped
        return f"version {entry['version']} of model {entry['model_name']!r} is gone; it is skipped"
    why = saved_model.damage(path) or "damaged"
    aside = path.parent / f"{registry.QUARANTINE_PREFIX}{entry['version']}-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        os.rename(path, aside)
    except OSError as e:
        return f"{_what(entry, why)}: could not set it aside ({e}); it is skipped"
    if any(e is entry for e in registry.pending_of(doc)):  # a landed push not recorded yet
        registry.commit_pending(doc, entry)
    moved_to = registry_paths.relative_to_root(storage_root, aside)
    now = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    entry[registry.QUARANTINED] = {"reason": why, "time": now, "moved_to": moved_to}
    return f"{_what(entry, why)}: set aside as {moved_to}"


def set_aside_damaged(
    storage_root: str, model_name: str, lock: registry_lock.Request | None = None
) -> list[str]:
    """Quarantine the damaged blessed versions newer than the baseline; one line per version.

    A look without the lock first (nearly every run finds nothing to do), then the work under it,
    on the index as it is then.
    """
    if not _damaged(storage_root, registry.read_index(storage_root, STAGE), model_name):
        return []
    with registry.locked(storage_root, STAGE, None, lock) as doc:  # old absolute paths mapped: written back
        said = [_set_aside(storage_root, doc, entry) for entry in _damaged(storage_root, doc, model_name)]
        try:
            registry.write_index(storage_root, doc, STAGE)
        except OSError as e:
            raise StageError(
                STAGE, str(registry.index_path(storage_root)), f"cannot record the versions set aside: {e}"
            ) from e
    return said


def _set_aside_note(
    storage_root: str, doc: dict[str, Any], model_name: str, baseline: dict[str, Any] | None
) -> str:
    """Why newer blessed versions are not the baseline: set aside, or damaged and still in place."""
    newer = [
        e
        for e in registry.versions_of(doc, model_name)[::-1]
        if (baseline is None or e["version"] > baseline["version"])
        and isinstance(e.get("blessing"), dict)
        and e["blessing"].get("verdict") == names.BLESSED
    ]
    parts = []
    for e in newer:
        mark = e.get(registry.QUARANTINED)
        if mark is not None:
            parts.append(f"{_what(e, mark['reason'])}: set aside as {mark.get('moved_to', '?')}")
        elif (path := _version_dir(storage_root, e)) is not None and (why := saved_model.damage(path)):
            parts.append(f"{_what(e, why)}: could not be set aside; it is skipped")
    return "; ".join(parts)


def resolve(storage_root: str, model_name: str, lock: registry_lock.Request | None = None) -> Baseline:
    """The newest blessed version that is intact on disk; damaged ones are set aside first.

    Versions deleted by hand are skipped (``skipped_versions``); when a newer version was set
    aside as damaged (now or by an earlier run), the reason names it and the version chosen.
    """
    set_aside_damaged(storage_root, model_name, lock)
    doc = registry.read_index(storage_root, STAGE)
    entry, skipped = registry.baseline_entry(storage_root, doc, model_name)
    aside = _set_aside_note(storage_root, doc, model_name, entry)
    if entry is None:
        reason = f"{aside}; no intact blessed version remains" if aside else names.NO_BASELINE
        return Baseline(False, reason, model_name, skipped_versions=skipped)
    reason = f"{aside}; baseline is version {entry['version']}" if aside else FOUND_REASON
    return baseline_from_entry(storage_root, entry, model_name, skipped, reason)
