"""The storage root: the PersistentVolume on a cluster, a folder locally.

Bulk artifacts (examples, transformed examples, models) are written once under
``<root>/artifacts/<run id>/<stage>/`` and read in place by later stages. The KFP artifact
of such a stage holds a small manifest pointing at that directory, and the same path is in
the artifact's metadata, so lineage in ML Metadata stays complete.

Every path a run parameter names (``data``, ``schema_file``, ``module_file``,
``thresholds_file``, ``serving_root``) is read through ``resolve``, which keeps it on the
volume: relative to the root, or absolute inside it. A pod has nothing else that outlives it,
and a local run must not write outside the folder it was given.

Writes are atomic at directory level: a stage writes into a hidden sibling directory and
renames it into place only when everything is there, so a crash never leaves an output that
looks complete. The scratch name carries its owner (host and process id), so the next run can
tell a killed stage's leftover from a live one of a concurrent run (``clean_scratch``).

A local run's input is copied by content (``copy_in``): ``data/<name>@<digest>/<name>``, never
written again once renamed into place, so a run reading it never sees another table.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from components import names
from components.errors import StageError
from components.lib import faults

# A leftover whose owner cannot be asked (another host or pod) is removed only when nothing in
# it has changed for this long: far longer than any stage goes without writing a file.
SCRATCH_MAX_AGE_S = 24 * 3600
INCOMING_PREFIX = ".incoming-"  # data being copied onto the volume by a local run
# ".<final>.partial-<host>-<pid>-<8 hex>" and ".<final>.old-<host>-<pid>-<8 hex>" (the owner is
# absent from names written before it was added).
_SCRATCH = re.compile(r"^\.(?P<final>.+)\.(?P<kind>partial|old)-(?:(?P<host>.+)-(?P<pid>\d+)-)?[0-9a-f]{8}$")


def inside(root: str | Path, path: str | Path) -> bool:
    """Whether ``path`` is ``root`` or under it, as written or once symlinks are followed."""
    root_abs, path_abs = os.path.abspath(root), os.path.abspath(path)
    if os.path.commonpath([root_abs, path_abs]) == root_abs:
        return True
    root_real, path_real = os.path.realpath(root), os.path.realpath(path)
    return os.path.commonpath([root_real, path_real]) == root_real


def resolve(storage_root: str | Path, path: str, stage: str, parameter: str) -> Path:
    """The path a parameter names: relative to the storage root, or absolute — on the volume either way.

    ``..`` or an absolute path that leaves the storage root is that stage's StageError.
    """
    p = Path(path)
    full = Path(os.path.normpath(p if p.is_absolute() else Path(storage_root) / p))
    if not inside(storage_root, full):
        raise StageError(
            stage,
            str(full),
            f"{parameter} {path!r} is outside the storage root {os.path.abspath(storage_root)}; "
            "a run reads and writes only on its volume",
        )
    return full


def resolve_input(storage_root: str | Path, path: str, stage: str, parameter: str) -> str | Path:
    """Input data: a ``gs://``/``s3://`` URL as written (``fs``), else a path on the volume (``resolve``)."""
    from components.lib import fs

    return path.strip() if fs.is_url(path.strip()) else resolve(storage_root, path, stage, parameter)


def stage_dir(storage_root: str, run_id: str, stage: str) -> Path:
    """Where one stage of one run writes its bulk output on the volume."""
    safe_run = run_id.replace("/", "_") or "run"
    return Path(storage_root) / names.ARTIFACTS_DIR / safe_run / stage


def owner_tag() -> str:
    """``<host>-<pid>``: who writes a scratch directory (a pod's host name is the pod's name)."""
    return f"{socket.gethostname()}-{os.getpid()}"


@contextlib.contextmanager
def atomic_dir(final: Path, stage: str) -> Iterator[Path]:
    """Yield a scratch directory that becomes ``final`` only if the block succeeds.

    A rerun of the same task (a retry) replaces an earlier complete output whole. Fault point
    ``<stage>.before_publish``: the output is complete in scratch, not yet renamed.
    """
    final = Path(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StageError(stage, str(final.parent), f"cannot create output directory: {e}") from e
    tag = f"{owner_tag()}-{uuid.uuid4().hex[:8]}"
    scratch = final.parent / f".{final.name}.partial-{tag}"
    scratch.mkdir()
    try:
        yield scratch
        faults.point(f"{stage}.before_publish")
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    old = None
    if final.exists():
        old = final.parent / f".{final.name}.old-{tag}"
        os.rename(final, old)
    os.rename(scratch, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _last_change(path: Path) -> float:
    """The newest modification time in a tree (a live stage keeps writing somewhere in it)."""
    newest = path.lstat().st_mtime
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            with contextlib.suppress(OSError):
                newest = max(newest, os.lstat(os.path.join(dirpath, name)).st_mtime)
    return newest


def abandoned(path: Path, host: str | None, pid: str | None, now: float, max_age_s: float) -> bool:
    """Whether a scratch directory's writer is gone.

    Its owner on this host is asked directly (a live process keeps its scratch, however quiet it
    is); an owner elsewhere (another pod) or unnamed (older scratch names) cannot be asked, so its
    scratch is abandoned once nothing in it has changed for ``max_age_s``. Host names tell pods
    and machines apart.
    """
    if host == socket.gethostname() and pid is not None:
        return int(pid) != os.getpid() and not _alive(int(pid))
    try:
        return now - _last_change(path) > max_age_s
    except OSError:
        return False


def _leftovers(root: Path) -> Iterator[tuple[Path, str | None, str | None, Path | None]]:
    """``(path, owner host, owner pid, final of an .old-* dir)`` of every scratch on the volume."""
    with contextlib.suppress(OSError):
        for run_dir in (root / names.ARTIFACTS_DIR).iterdir():
            if not run_dir.is_dir() or run_dir.is_symlink():
                continue
            for path in run_dir.iterdir():
                m = _SCRATCH.match(path.name)
                if m is not None:
                    old_of = path.parent / m["final"] if m["kind"] == "old" else None
                    yield path, m["host"], m["pid"], old_of
    with contextlib.suppress(OSError):
        for path in (root / names.DATA_DIR).glob(f"{INCOMING_PREFIX}*"):
            # ".incoming-<host>-<pid>-<random>" (tempfile's random part has no "-")
            parts = path.name[len(INCOMING_PREFIX) :].rsplit("-", 2)
            owned = len(parts) == 3 and parts[1].isdigit()
            yield path, parts[0] if owned else None, parts[1] if owned else None, None


def clean_scratch(storage_root: str | Path, *, max_age_s: float = SCRATCH_MAX_AGE_S) -> list[str]:
    """Remove what killed stages left on the volume; return one line per leftover handled.

    Looks at ``artifacts/<run>/.<stage>.partial-*`` and ``.old-*`` (``atomic_dir``) and
    ``data/.incoming-*`` (a local run's data copy). Only abandoned ones (``abandoned``) are
    touched, so a concurrent run's live scratch stays. An ``.old-*`` whose final directory is
    missing (killed between atomic_dir's two renames) is the last complete output: it is put
    back, not removed. Registry and serving leftovers are ``reconcile``'s, under the lock.
    """
    now = time.time()
    done: list[str] = []
    for path, host, pid, old_of in list(_leftovers(Path(storage_root))):
        if not abandoned(path, host, pid, now, max_age_s):
            continue
        try:
            if old_of is not None and not old_of.exists():
                os.rename(path, old_of)
                done.append(f"{old_of}: restored from {path.name}, left by a stage killed while publishing")
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        except OSError as e:
            done.append(f"{path}: could not remove a killed stage's leftover: {e}")
            continue
        done.append(f"{path}: removed, left by a killed stage")
    return done


def write_manifest(artifact_path: str, storage_path: Path, metadata: dict[str, Any]) -> None:
    """Write the KFP artifact's own content: a JSON pointer to the bulk data on the volume."""
    Path(artifact_path).parent.mkdir(parents=True, exist_ok=True)
    doc = {names.META_STORAGE_PATH: str(storage_path), **metadata}
    Path(artifact_path).write_text(json.dumps(doc, indent=2, sort_keys=True, default=str))


def storage_path_of(metadata: dict[str, Any], artifact_path: str, stage: str) -> Path:
    """Where an input artifact's bulk data lives: from its metadata, else from its manifest."""
    value = metadata.get(names.META_STORAGE_PATH)
    if not value:
        try:
            value = json.loads(Path(artifact_path).read_text())[names.META_STORAGE_PATH]
        except (OSError, ValueError, KeyError) as e:
            raise StageError(stage, artifact_path, f"input artifact has no storage path: {e}") from e
    path = Path(value)
    if not path.exists():
        raise StageError(stage, str(path), "input data is missing from the storage volume")
    return path


# --- Input copies: one immutable directory per content ---------------------------------------

COPY_MANIFEST = ".kubetfx-copy.json"  # written last inside a copy: its digest and files
DIGEST_CHARS = 16  # hex characters of the SHA-256 in a copy's directory name


def content_digest(source: Path) -> str:
    """SHA-256 of a file's bytes; of a folder, of ``sha256sum``'s lines for its files in path order."""
    if source.is_file():
        return file_digest(source)
    lines = [f"{file_digest(source / rel)}  {rel}\n" for rel in _files_under(source)]
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def file_digest(path: Path) -> str:
    """SHA-256 of one file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _files_under(folder: Path) -> list[str]:
    """Every file under ``folder`` (symlinks followed), as sorted POSIX paths relative to it."""
    found = []
    for dirpath, _, filenames in os.walk(folder, followlinks=True):
        for name in filenames:
            found.append(Path(dirpath, name).relative_to(folder).as_posix())
    return sorted(found)


def source_state(source: Path) -> list[tuple[str, int, int]] | None:
    """``(path, size, mtime_ns)`` of every file of an input; None when it does not exist.

    Taken before the preflight reads the input and again after it is copied: the same state means
    the copy holds the bytes the preflight checked.
    """
    if source.is_file():
        st = source.stat()
        return [("", st.st_size, st.st_mtime_ns)]
    if not source.is_dir():
        return None
    return [(rel, (st := (source / rel).stat()).st_size, st.st_mtime_ns) for rel in _files_under(source)]


def copy_dir_for(data_dir: Path, name: str, digest: str) -> Path:
    """``data/<name>@<digest>``: the copy keeps the input's name inside (``<name>@<d>/<name>``)."""
    return data_dir / f"{name}@{digest[:DIGEST_CHARS]}"


def valid_copy(copy_dir: Path, name: str, digest: str) -> bool:
    """Whether ``copy_dir`` is a complete copy of that content.

    Its manifest names the digest and every file is there with its size (cheap: no byte is read).
    """
    try:
        doc = json.loads((copy_dir / COPY_MANIFEST).read_text())
        if doc.get("sha256") != digest or doc.get("name") != name:
            return False
        root = copy_dir / name
        listed = {f["path"]: f["size"] for f in doc["files"]}
        found = [""] if root.is_file() else _files_under(root)
        return sorted(listed) == found and all(
            (root / rel if rel else root).stat().st_size == size for rel, size in listed.items()
        )
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _copy_with_manifest(source: Path, scratch: Path, digest: str) -> str:
    """Copy ``source`` into ``scratch/<name>``, then write the manifest (last); the copy's digest."""
    target = scratch / source.name
    if source.is_dir():
        shutil.copytree(source, target)
    else:
        shutil.copy2(source, target)
    copied = content_digest(target)
    files = [{"path": rel, "size": size} for rel, size, _ in source_state(target) or []]
    doc = {
        "name": source.name,
        "sha256": copied,
        "source": str(source),
        "files": files,
        "copied_at": time.time(),
    }
    manifest = scratch / COPY_MANIFEST
    manifest.write_text(json.dumps(doc, indent=2, sort_keys=True))
    with open(manifest, "rb") as fh:
        os.fsync(fh.fileno())
    return copied


def copy_in(
    storage_root: Path, source: Path, before: list[tuple[str, int, int]] | None, log: Callable[[str], None]
) -> str:
    """Put ``source`` on the volume by content; return ``data/<name>@<digest>/<name>`` (root-relative).

    The copy is written in a scratch directory (``data/.incoming-<owner>-*``, removed by
    ``clean_scratch`` if this process dies) with its manifest last, then renamed into place: a
    rename never replaces a directory that exists, so a copy a running reader uses never changes.
    The same content already there (its manifest checked, ``valid_copy``) is reused. ``before``:
    the input's ``source_state`` when the preflight read it; another state afterwards means the
    input changed meanwhile, and the run is refused rather than run on bytes nobody checked.
    """
    data_dir = Path(storage_root) / names.DATA_DIR
    digest = content_digest(source)
    final = copy_dir_for(data_dir, source.name, digest)
    relative = f"{final.relative_to(storage_root).as_posix()}/{source.name}"
    if valid_copy(final, source.name, digest):
        log(f"input {source}: the same content is on the volume already, {relative} (not copied again)")
    else:
        _set_aside(final, log)
        _publish_copy(source, data_dir, final, digest)
        log(f"input {source}: copied to {relative}")
    if before is not None and source_state(source) != before:
        raise ValueError(
            f"[submit] {source}: input data changed while the run was starting (after the preflight "
            "read it); run again once it is written"
        )
    return relative


def incoming_dir(data_dir: Path) -> Path:
    """A new ``data/.incoming-<host>-<pid>-<hex>``, with the umask's modes (not mkdtemp's 0700).

    The owner in the name lets the next run remove it if this process dies (``clean_scratch``).
    """
    path = data_dir / f"{INCOMING_PREFIX}{owner_tag()}-{uuid.uuid4().hex[:12]}"
    path.mkdir()
    return path


def _publish_copy(source: Path, data_dir: Path, final: Path, digest: str) -> None:
    """Copy into scratch, check the digest, rename into place (a concurrent identical copy is kept)."""
    scratch = incoming_dir(data_dir)
    try:
        copied = _copy_with_manifest(source, scratch, digest)
        if copied != digest:
            raise ValueError(
                f"[submit] {source}: input data changed while it was being copied onto the volume; "
                "run again once it is written"
            )
        try:
            os.rename(scratch, final)
        except OSError:
            if not valid_copy(final, source.name, digest):  # not a concurrent run's identical copy
                raise
    except OSError as e:
        raise RuntimeError(
            f"[submit] {final}: cannot copy the input onto the volume: {e.strerror or e}"
        ) from e
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _set_aside(final: Path, log: Callable[[str], None]) -> None:
    """A damaged or incomplete copy under the final name: renamed aside, never written into."""
    if not os.path.lexists(final):
        return
    aside = final.with_name(f".{final.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}")
    try:
        os.rename(final, aside)
    except OSError as e:
        raise RuntimeError(f"[submit] {final}: an incomplete copy of the input is in the way: {e}") from e
    log(
        f"warning: [submit] {final}: not a complete copy of this content (manifest or sizes differ); "
        f"set aside as {aside.name}"
    )
