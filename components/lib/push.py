"""Push logic: copy a blessed SavedModel to ``<serving root>/<model name>/<version>/`` and register it.

TF Serving watches ``<serving root>/<model name>/`` and loads the highest all-digit directory,
so a version directory must appear complete or not at all. The copy goes into a hidden,
non-numeric sibling (``.push-<random>.partial``), which TF Serving ignores, and becomes the
version directory with one ``os.rename`` — atomic within a filesystem, which is why the temp
directory sits in the same parent.

Everything from choosing the version number to recording it in the registry runs under the
registry's exclusive lock (``registry.locked``), including the copy (a SavedModel is a few MB;
pushes are rare, so serialising them costs nothing). Because no other push can be mid-copy
while the lock is held, any ``.push-*`` directory found then is the leftover of a push that
was killed, and is removed. If recording in the registry fails after the rename, the version
directory is taken back, so the registry and the serving directory never disagree.

A retried push task (same run id, same trained model) finds its own registry entry and reports
that version instead of pushing a duplicate. What push acts on is a ``blessing.Blessing`` record;
what a SavedModel is, ``saved_model`` decides.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from components import names
from components.errors import StageError
from components.lib import registry, saved_model
from components.lib.blessing import Blessing

STAGE = names.STAGE_PUSH
TEMP_PREFIX = ".push-"  # hidden and non-numeric: TF Serving never loads it

CopyTree = Callable[[Path, Path], Any]


@dataclasses.dataclass
class PushResult:
    """What push did: pushed or not (and why), and where the version went."""

    pushed: bool
    reason: str
    model_name: str
    version: int | None = None
    serving_path: str = ""
    entry: dict[str, Any] | None = None

    def metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "pushed": int(self.pushed),
            "reason": self.reason,
            "model_name": self.model_name,
            "version": self.version if self.version is not None else -1,
            "serving_path": self.serving_path,
        }
        if self.pushed:
            meta[names.META_STORAGE_PATH] = self.serving_path
            meta[names.META_MODEL_PATH] = self.serving_path  # the SavedModel dir itself (saved_model.py)
        return meta


def check_model_name(model_name: str) -> str:
    """A model name must be one plain directory name (it becomes a path component)."""
    if not model_name or model_name in (".", "..") or "/" in model_name or model_name.startswith("."):
        raise StageError(STAGE, None, f"model name {model_name!r} must be a plain directory name")
    return model_name


def _fsync_tree(root: Path) -> None:
    """Flush the copied files to the volume before the rename makes them visible."""
    for dirpath, _, files in os.walk(root):
        for f in files:
            try:
                fd = os.open(os.path.join(dirpath, f), os.O_RDONLY)
            except OSError:
                continue
            try:
                os.fsync(fd)
            except OSError:
                pass
            finally:
                os.close(fd)


def clean_leftovers(model_dir: Path) -> list[str]:
    """Remove temp dirs of killed pushes. Call only while holding the registry lock."""
    removed: list[str] = []
    try:
        children = list(model_dir.iterdir())
    except FileNotFoundError:
        return removed
    for p in children:
        if p.name.startswith(TEMP_PREFIX) and p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p.name)
    return removed


def already_pushed(
    doc: dict[str, Any], model_name: str, run_id: str, model_location: str
) -> dict[str, Any] | None:
    """The registry entry of this run's model if it was pushed before (a retried task), else None."""
    if not run_id:
        return None
    for e in registry.versions_of(doc, model_name):
        if e.get("run_id") == run_id and e.get("model_location") == model_location:
            if saved_model.is_saved_model(e["serving_path"]):
                return e
    return None


def push_model(
    saved_model_dir: Path,
    *,
    storage_root: str,
    serving_root: str,
    model_name: str,
    run_id: str,
    model_location: str,
    blessing: Blessing,
    fingerprint: str,
    copy_tree: CopyTree = shutil.copytree,
) -> PushResult:
    """Push ``saved_model_dir`` as the next version of ``model_name`` if ``blessing`` says BLESSED.

    ``serving_root`` is relative to ``storage_root`` or absolute. ``copy_tree(src, dst)`` does the
    copy (``shutil.copytree``; replaceable so a test can interrupt a push midway).
    """
    check_model_name(model_name)
    if not blessing.blessed:
        reasons = "; ".join(blessing.reasons) or "no reason given"
        return PushResult(False, f"not blessed: {reasons}", model_name)
    saved_model.check_saved_model(saved_model_dir, STAGE)
    judged = blessing.model_path
    if judged and os.path.realpath(judged) != os.path.realpath(saved_model_dir):
        raise StageError(
            STAGE, str(saved_model_dir), f"the blessing is for another model ({judged}); refusing to push"
        )

    root = Path(serving_root) if os.path.isabs(serving_root) else Path(storage_root) / serving_root
    model_dir = root / model_name
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
        # Fail early, before taking the lock, with a clear message. Not named TEMP_PREFIX*: a push
        # holding the lock must not mistake this probe of another push for a leftover.
        probe = model_dir / f".write-probe-{uuid.uuid4().hex[:8]}"
        probe.mkdir()
        probe.rmdir()
    except OSError as e:
        raise StageError(STAGE, str(model_dir), f"serving directory is not writable: {e}") from e

    with registry.locked(storage_root, STAGE) as doc:
        clean_leftovers(model_dir)
        done = already_pushed(doc, model_name, run_id, model_location)
        if done is not None:  # a retry of a push that completed: the same version, not a new one
            return PushResult(
                True, "already pushed by this run", model_name, done["version"], done["serving_path"], done
            )
        tmp = model_dir / f"{TEMP_PREFIX}{uuid.uuid4().hex[:12]}.partial"
        try:
            try:
                copy_tree(saved_model_dir, tmp)
                _fsync_tree(tmp)
            except OSError as e:
                raise StageError(STAGE, str(tmp), f"cannot copy the model to the serving dir: {e}") from e
            version = registry.next_version(doc, model_name, model_dir)
            final = model_dir / str(version)
            try:
                os.rename(tmp, final)
            except OSError as e:
                raise StageError(STAGE, str(final), f"cannot create the version directory: {e}") from e
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        entry = registry.make_entry(
            version=version,
            model_name=model_name,
            model_location=model_location,
            serving_path=str(final),
            blessing={
                "verdict": blessing.verdict,
                "reasons": blessing.reasons,
                "baseline": blessing.baseline,
                "thresholds": blessing.thresholds,
            },
            metrics=dict(blessing.metrics),
            fingerprint=fingerprint,
            run_id=run_id,
        )
        doc["versions"].append(entry)
        try:
            registry.write_index(storage_root, doc, STAGE)
        except BaseException as e:
            # Take the version back: a served version the registry does not know is worse than
            # a failed push (the next push would number past it, resolve-baseline never sees it).
            back = model_dir / f"{TEMP_PREFIX}{uuid.uuid4().hex[:12]}.rollback"
            try:
                os.rename(final, back)
                shutil.rmtree(back, ignore_errors=True)
            except OSError:
                pass
            if isinstance(e, OSError):
                raise StageError(
                    STAGE, str(registry.index_path(storage_root)), f"cannot record the version: {e}"
                ) from e
            raise
    return PushResult(True, "blessed", model_name, version, str(final), entry)
