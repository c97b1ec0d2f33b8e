"""Push logic: copy a blessed SavedModel to ``<serving root>/<model name>/<version>/`` and register it.

TF Serving watches ``<serving root>/<model name>/`` and loads the highest all-digit directory,
so a version directory must appear complete or not at all. The copy goes into a hidden,
non-numeric sibling (``.push-<random>.partial``), which TF Serving ignores, and becomes the
version directory with one ``os.rename`` — atomic within a filesystem, which is why the temp
directory sits in the same parent. The serving root is on the volume (``storage.resolve``).

Everything below runs under the registry's exclusive lock (``registry.locked``), the copy
included (a SavedModel is a few MB; pushes are rare, so serialising them costs nothing). The wait
for a lock another run holds is bounded by ``lock_timeout`` and said on the console with the
holder's host, pid, run id and since when (``registry_lock``):

1. settle what killed pushes left (``reconcile``: pending entries, temp directories and files,
   unlisted version directories), and say so;
2. a retried push task (same run id, same trained model) finds its own entry and reports that
   version instead of pushing a duplicate;
3. re-check the baseline: if a blessed version newer than the one the candidate was judged
   against is now the baseline (a concurrent run pushed it after this run's resolve-baseline),
   the candidate is NOT pushed, with the reason "baseline changed since evaluation: version N".
   It was never compared with the model it would replace; the next run compares them;
4. copy into the temp directory, with the schema the model was trained with at
   ``assets.extra/schema.pbtxt`` (``served.schema_path``), the KServe InferenceService of this
   version alone (``kserve_manifest``) and, last, the manifest of every file (``saved_model.
   write_manifest``: size and sha256, so the next run's resolve-baseline finds a version damaged
   on the volume before any training), and fsync it;
5. record a pending entry (``registry``: the intent, written before anything is visible), its
   paths relative to the storage root (``registry_paths``: a moved or copied root still finds it);
6. rename the copy into ``<version>`` — the commit point: from here every reader counts it;
7. move the entry from pending to the recorded versions.

Killed between any two steps, the next run's resolve-baseline or push settles the state
(``reconcile``), so serving and registry agree. An I/O error is a StageError that leaves the
same settled state; one in step 7 leaves the version served and pending (counted by every
reader), which the push reports and the next run records. Fault points (``faults``):
``push.before_copy``, ``push.mid_copy``, ``push.mid_pending_write``, ``push.before_rename``,
``push.after_rename``, ``push.mid_registry_write``.

What push acts on is a ``blessing.Blessing`` record; what a SavedModel is, ``saved_model`` decides.

The schema travels with the version so the next run can tell what changed since the served
model (``served``): validate compares its data with it, ExampleGen keeps its column types. It is
copied inside the temp directory, so it becomes visible in the same rename as the model, and
the registry entry names it (``"schema"``, relative to the storage root). Where it comes from
(``training_schema``): the SavedModel's own ``assets.extra/schema.pbtxt`` if train put one
there, else the raw schema the training run's transform kept on the volume. Found nowhere (a
model made by hand): the version is pushed without one and its entry has no ``"schema"``.
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
from components.lib import faults, reconcile, registry, registry_paths, saved_model, served, storage
from components.lib.blessing import Blessing
from components.lib.kserve_manifest import Writer, writer
from components.lib.registry_lock import DEFAULT_TIMEOUT_S, Request, check_timeout

STAGE = names.STAGE_PUSH
TEMP_PREFIX = registry.TEMP_PREFIX

CopyTree = Callable[[Path, Path], Any]


@dataclasses.dataclass
class PushResult:
    """What push did: pushed or not (and why), where the version went, what it settled first."""

    pushed: bool
    reason: str
    model_name: str
    version: int | None = None
    serving_path: str = ""
    entry: dict[str, Any] | None = None
    settled: list[str] = dataclasses.field(default_factory=list)

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
    return registry.check_model_name(model_name, STAGE)


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


def _copy_file(src: str, dst: str) -> Any:
    """``shutil.copy2``, then fault point ``push.mid_copy`` (after the first file: a copy half done)."""
    out = shutil.copy2(src, dst)
    faults.point("push.mid_copy")
    return out


def copy_model(src: Path, dst: Path) -> Any:
    """The default copy: the whole SavedModel directory, file by file."""
    return shutil.copytree(src, dst, copy_function=_copy_file)


def training_schema(
    saved_model_dir: Path, model_location: str, storage_root: str, run_id: str
) -> Path | None:
    """The schema file the model was trained with (None: found nowhere).

    The SavedModel's own ``assets.extra/schema.pbtxt`` first (the copy takes it along); else the
    raw schema TFT read with, kept by the transform stage of the run that trained the model
    (``artifacts/<run>/transform`` beside its ``artifacts/<run>/train``), then of this run.
    """
    candidates = [served.schema_path(saved_model_dir)]
    for train_dir in (Path(model_location), Path(saved_model_dir).parent):
        candidates.append(served.transform_schema_path(train_dir.parent / names.STAGE_TRANSFORM))
    if run_id:
        candidates.append(
            served.transform_schema_path(storage.stage_dir(storage_root, run_id, names.STAGE_TRANSFORM))
        )
    return next((c for c in candidates if c.is_file()), None)


def copy_with_schema(
    copy_tree: CopyTree, src: Path, tmp: Path, schema: Path | None, extra: Writer | None = None
) -> bool:
    """Copy the model into ``tmp``, its schema to ``assets.extra/``, ``extra``'s files, the manifest.

    True when ``tmp`` holds the schema. Everything lands in ``tmp``, so the rename publishes the
    model, its schema, its InferenceService (``extra``) and its manifest together, or none of them.
    """
    copy_tree(src, tmp)
    kept = served.schema_path(tmp)
    if not kept.is_file() and schema is not None:
        kept.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(schema, kept)
    if extra is not None:
        extra(tmp)
    saved_model.write_manifest(tmp)
    _fsync_tree(tmp)
    return kept.is_file()


def _same_location(storage_root: str, entry: dict[str, Any], model_location: str) -> bool:
    """Whether the entry records ``model_location`` (resolved against ``storage_root``; a URL as it is)."""
    recorded = registry.entry_path(storage_root, entry, registry_paths.MODEL_LOCATION)
    if recorded is None or not model_location:
        return (entry.get(registry_paths.MODEL_LOCATION) or "") == model_location
    return os.path.normpath(os.path.abspath(model_location)) == os.path.normpath(os.path.abspath(recorded))


def already_pushed(
    storage_root: str, doc: dict[str, Any], model_name: str, run_id: str, model_location: str
) -> dict[str, Any] | None:
    """The registry entry of this run's model if it was pushed before (a retried task), else None."""
    if not run_id:
        return None
    for e in registry.versions_of(doc, model_name):
        if e.get("run_id") == run_id and _same_location(storage_root, e, model_location):
            if not registry.is_quarantined(e) and registry.has_saved_model(storage_root, e):
                return e
    return None


def baseline_changed(
    storage_root: str, doc: dict[str, Any], model_name: str, blessing: Blessing
) -> str | None:
    """Why the candidate must not be pushed now, if a newer blessed version became the baseline.

    ``blessing.baseline`` is the version evaluate compared with (None: there was none). A newer
    one was pushed by a concurrent run after this run resolved its baseline.
    """
    current, _ = registry.baseline_entry(storage_root, doc, model_name)
    if current is None or (blessing.baseline is not None and current["version"] <= blessing.baseline):
        return None
    judged = "with no baseline" if blessing.baseline is None else f"against version {blessing.baseline}"
    run = f" by run {current['run_id']}" if current.get("run_id") else ""
    version = current["version"]
    return (
        f"baseline changed since evaluation: version {version} was pushed{run} after this candidate "
        f"was judged {judged}; not pushed — the next run compares its candidate with version {version}"
    )


def _entry(
    storage_root: str,
    blessing: Blessing,
    version: int,
    final: Path,
    model_name: str,
    model_location: str,
    fingerprint: str,
    run_id: str,
    schema: str | None = None,
) -> dict[str, Any]:
    """The registry entry of a push; its paths relative to the storage root (``registry_paths``)."""
    relative = registry_paths.relative_to_root
    return registry.make_entry(
        version=version,
        model_name=model_name,
        model_location=relative(storage_root, model_location) if model_location else "",
        serving_path=relative(storage_root, final),
        blessing={
            "verdict": blessing.verdict,
            "reasons": blessing.reasons,
            "baseline": blessing.baseline,
            "thresholds": blessing.thresholds,
        },
        metrics=dict(blessing.metrics),
        fingerprint=fingerprint,
        run_id=run_id,
        schema=schema,
    )


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
    copy_tree: CopyTree = copy_model,
    lock_timeout: float = DEFAULT_TIMEOUT_S,
    kserve_pvc: str | None = names.DEFAULT_PVC_NAME,
) -> PushResult:
    """Push ``saved_model_dir`` as the next version of ``model_name`` if ``blessing`` says BLESSED.

    ``serving_root`` is relative to ``storage_root`` or absolute inside it. ``copy_tree(src, dst)``
    does the copy (replaceable so a test can interrupt a push midway). ``lock_timeout``: seconds
    to wait for a registry lock another run holds (0: no limit; ``registry_lock``), checked before
    any work. ``kserve_pvc``: the storage root's claim, for the InferenceService (None: none written).
    """
    lock = Request(run_id, check_timeout(lock_timeout, STAGE))
    model_dir = registry.model_dir(storage_root, serving_root, model_name, STAGE)
    if not blessing.blessed:
        reasons = "; ".join(blessing.reasons) or "no reason given"
        return PushResult(False, f"not blessed: {reasons}", model_name)
    _check_candidate(saved_model_dir, blessing)
    _check_writable(model_dir)
    schema = training_schema(saved_model_dir, model_location, storage_root, run_id)

    # ``doc``: old paths mapped, written back when the block ends
    with registry.locked(storage_root, STAGE, model_dir.parent, lock) as doc:
        settled = reconcile.reconcile_and_record(doc, storage_root, model_dir, model_name, STAGE)
        not_new = _no_new_version(storage_root, doc, model_name, run_id, model_location, blessing, settled)
        if not_new is not None:
            return not_new
        tmp = model_dir / f"{TEMP_PREFIX}{uuid.uuid4().hex[:12]}.partial"
        version = registry.next_version(doc, model_name, model_dir)  # the hidden temp dir: not counted
        final = model_dir / str(version)
        extra = writer(storage_root, model_dir, model_name, version, kserve_pvc)
        try:
            has_schema = _copy_to_temp(copy_tree, saved_model_dir, tmp, schema, extra)
            schema_at = served.schema_path(final)
            kept = registry_paths.relative_to_root(storage_root, schema_at) if has_schema else None
            entry = _entry(
                storage_root, blessing, version, final, model_name, model_location, fingerprint, run_id, kept
            )
            _record_pending(storage_root, doc, entry)
            _rename_into_place(storage_root, doc, entry, tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        reason = _record_pushed(storage_root, doc, entry)
    return PushResult(True, reason, model_name, version, str(final), entry, settled)


def _check_candidate(saved_model_dir: Path, blessing: Blessing) -> None:
    """Refuse, before any work, a directory that is no SavedModel or is not the one the blessing judged."""
    saved_model.check_saved_model(saved_model_dir, STAGE)
    judged = blessing.model_path
    if judged and os.path.realpath(judged) != os.path.realpath(saved_model_dir):
        raise StageError(
            STAGE, str(saved_model_dir), f"the blessing is for another model ({judged}); refusing to push"
        )


def _check_writable(model_dir: Path) -> None:
    """Fail early, before taking the lock, with a clear message when the serving dir is not writable."""
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
        # Not named TEMP_PREFIX*: a push holding the lock must not mistake this probe of another
        # push for a leftover.
        probe = model_dir / f".write-probe-{uuid.uuid4().hex[:8]}"
        probe.mkdir()
        probe.rmdir()
    except OSError as e:
        raise StageError(STAGE, str(model_dir), f"serving directory is not writable: {e}") from e


def _no_new_version(
    storage_root: str,
    doc: dict[str, Any],
    model_name: str,
    run_id: str,
    model_location: str,
    blessing: Blessing,
    settled: list[str],
) -> PushResult | None:
    """Steps 2-3: a retry's earlier version, or the refusal when the baseline moved; None: push."""
    done = already_pushed(storage_root, doc, model_name, run_id, model_location)
    if done is not None:  # a retry of a push that completed: the same version, not a new one
        return PushResult(
            True,
            "already pushed by this run",
            model_name,
            done["version"],
            str(registry.entry_path(storage_root, done)),
            done,
            settled,
        )
    changed = baseline_changed(storage_root, doc, model_name, blessing)
    if changed is not None:
        return PushResult(False, changed, model_name, settled=settled)
    return None


def _copy_to_temp(
    copy_tree: CopyTree, saved_model_dir: Path, tmp: Path, schema: Path | None, extra: Writer | None
) -> bool:
    """Step 4: model, schema, InferenceService into the hidden temp dir, fsynced; True: with the schema."""
    try:
        faults.point("push.before_copy")
        return copy_with_schema(copy_tree, saved_model_dir, tmp, schema, extra)
    except OSError as e:
        raise StageError(STAGE, str(tmp), f"cannot copy the model to the serving dir: {e}") from e


def _record_pending(storage_root: str, doc: dict[str, Any], entry: dict[str, Any]) -> None:
    """Step 5: the intent on disk before anything is visible; on failure it is taken back from ``doc``."""
    registry.add_pending(doc, entry)
    try:
        registry.write_index(storage_root, doc, STAGE, fault_point="push.mid_pending_write")
    except OSError as e:
        registry.drop_pending(doc, entry)
        raise StageError(
            STAGE, str(registry.index_path(storage_root)), f"cannot record the push as pending: {e}"
        ) from e


def _rename_into_place(
    storage_root: str, doc: dict[str, Any], entry: dict[str, Any], tmp: Path, final: Path
) -> None:
    """Step 6, the commit point: the temp dir becomes the version; on failure the pending entry goes."""
    try:
        faults.point("push.before_rename")
        os.rename(tmp, final)
    except OSError as e:
        registry.drop_pending(doc, entry)
        try:  # best effort: the next reconcile drops an entry whose directory is absent anyway
            registry.write_index(storage_root, doc, STAGE)
        except OSError:
            pass
        raise StageError(STAGE, str(final), f"cannot create the version directory: {e}") from e


def _record_pushed(storage_root: str, doc: dict[str, Any], entry: dict[str, Any]) -> str:
    """Step 7: move the entry from pending to the versions; the push's reason (a note if that failed)."""
    try:
        faults.point("push.after_rename")
        registry.commit_pending(doc, entry)
        registry.write_index(storage_root, doc, STAGE, fault_point="push.mid_registry_write")
    except OSError as e:
        # The version is in place and its pending entry says so: every reader counts it as
        # pushed and the next run records it. Taking it back could pull a model TF Serving
        # has started loading; the push did what it must, so it reports success and why.
        return f"blessed; the registry still lists it as pending ({e}); the next run records it"
    return "blessed"
