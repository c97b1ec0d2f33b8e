"""The model contract between train and the stages after it: where the SavedModel is, what it serves.

Train exports a SavedModel to ``<train dir>/Format-Serving`` (TFX Trainer's layout) whose
``serving_default`` signature takes ``examples`` (serialized raw ``tf.Example``s) and returns
``predictions``; push copies it to ``<serving root>/<model>/<version>/``, where TF Serving and
the next run's baseline find it. A model artifact names the exact SavedModel directory in its
``model_path`` metadata (a pushed baseline) or points at the train directory. Resolve-baseline,
evaluate and push check a directory through this module, so they agree on what a SavedModel is.

A pushed version can be damaged on the volume later (a file corrupted, truncated or deleted).
TensorFlow would only say so when evaluate loads it, after all the training, with a hint about
checkpoints; ``damage`` says it at the start of the next run, without importing TensorFlow:

- push writes a manifest into the version (``write_manifest``, ``assets.extra/kubetfx_files.json``,
  which TF Serving ignores): every file's relative path, size and sha256, the manifest excluded::

      {"format": 1, "files": {"saved_model.pb": {"size": 5678, "sha256": "<64 hex>"}, ...}}

  With it, a version is damaged when a listed file is missing, has another size or another
  sha256 (the first such file is named: sizes are compared for all files before any is hashed).
  Files added later are not damage. A SavedModel is a few MB: hashing it costs milliseconds.
- a version pushed before manifests existed (or whose manifest is unreadable) is checked for its
  structure, conservatively — setting aside a model TF Serving still serves must not happen on a
  guess: ``saved_model.pb`` (or ``.pbtxt``) present; if ``variables/`` exists (as
  ``tf.saved_model.save`` always writes it), the graph not empty, a non-empty ``variables.index``
  and every ``variables.data-NNNNN-of-MMMMM`` shard the names count; if it does not, damaged only
  when ``saved_model.pb`` holds a ``RestoreV2`` op (its saver reads ``variables/``). A graph
  without a checkpoint beside it (a TF1 export without variables, a stand-in) is not judged
  further, not even when empty; a file corrupted in place without a manifest is not detected
  either: TensorFlow finds it.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from components import names
from components.errors import StageError
from components.lib import storage

# A SavedModel directory holds one of these at its top (TF Serving and the loaders look for them).
SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
MANIFEST_FILE = "kubetfx_files.json"  # under assets.extra/: what push published (write_manifest)
MANIFEST_FORMAT = 1
VARIABLES_DIR = "variables"
_SHARD = re.compile(r"^variables\.data-([0-9]+)-of-([0-9]+)$")
_RESTORE_OP = b"RestoreV2"  # the op name a saver that reads variables/ puts into saved_model.pb


def export_dir(train_dir: Path) -> Path:
    """Where train exports the SavedModel inside its stage directory."""
    return Path(train_dir) / names.MODEL_SERVING_DIR


def label_info_path(model_dir: Path) -> Path:
    """The label contract (``label.LabelInfo``) train writes into the SavedModel, under ``assets.extra/``.

    TF Serving ignores ``assets.extra/``; a pushed version carries it, so evaluate reads the task,
    the classes and the naive predictor of a baseline as of a candidate.
    """
    return Path(model_dir) / "assets.extra" / names.LABEL_INFO_FILE


def inputs_path(model_dir: Path) -> Path:
    """The raw features the serving signature parses ({name: dtype}), beside the label contract."""
    return Path(model_dir) / "assets.extra" / names.SERVING_INPUTS_FILE


def manifest_path(model_dir: Path | str) -> Path:
    """Where a pushed version lists the files push published (``write_manifest``)."""
    return Path(model_dir) / "assets.extra" / MANIFEST_FILE


def is_saved_model(path: Path | str) -> bool:
    """Whether ``path`` is a directory holding a SavedModel."""
    return any((Path(path) / f).is_file() for f in SAVED_MODEL_FILES)


def check_saved_model(path: Path, stage: str, what: str = "model") -> Path:
    """``path`` if it is a SavedModel directory, else a StageError saying what is missing."""
    if not Path(path).is_dir():
        raise StageError(stage, str(path), f"{what} directory does not exist")
    if not is_saved_model(path):
        raise StageError(stage, str(path), f"{what} is not a SavedModel: saved_model.pb is missing")
    return Path(path)


def saved_model_dir(metadata: dict[str, Any], artifact_path: str, stage: str) -> Path:
    """The SavedModel directory of a model artifact.

    A pushed baseline names it exactly (``model_path``); a trained model keeps it in
    ``Format-Serving/`` under its storage path.
    """
    exact = metadata.get(names.META_MODEL_PATH)
    if exact:
        return Path(exact)
    return export_dir(storage.storage_path_of(metadata, artifact_path, stage))


def signature_names(model_dir: Path) -> set[str]:
    """The signatures a SavedModel declares, read from its ``saved_model.pb`` without loading it."""
    from tensorflow.python.saved_model import loader_impl

    saved = loader_impl.parse_saved_model(str(model_dir))
    return set(saved.meta_graphs[0].signature_def) if saved.meta_graphs else set()


def check_serving_signature(model_dir: Path, stage: str, role: str) -> Path:
    """The SavedModel must serve the contract above; checked from saved_model.pb, without loading."""
    from tensorflow.core.framework import types_pb2
    from tensorflow.python.saved_model import loader_impl

    check_saved_model(model_dir, stage, f"{role} model")
    try:
        saved = loader_impl.parse_saved_model(str(model_dir))
    except (OSError, ValueError) as e:
        raise StageError(stage, str(model_dir), f"{role} SavedModel is unreadable: {e}") from e
    sigs = saved.meta_graphs[0].signature_def if saved.meta_graphs else {}
    if names.SERVING_SIGNATURE not in sigs:
        raise StageError(stage, str(model_dir), f"{role} model has no {names.SERVING_SIGNATURE!r} signature")
    sig = sigs[names.SERVING_SIGNATURE]
    inp = sig.inputs.get(names.EXAMPLES_INPUT_KEY)
    if len(sig.inputs) != 1 or inp is None or inp.dtype != types_pb2.DT_STRING:
        raise StageError(
            stage,
            str(model_dir),
            f"{role} model's {names.SERVING_SIGNATURE!r} must take one string input "
            f"{names.EXAMPLES_INPUT_KEY!r} (serialized tf.Example); it takes {sorted(sig.inputs)}",
        )
    if names.PREDICTIONS_KEY not in sig.outputs:
        raise StageError(
            stage,
            str(model_dir),
            f"{role} model's {names.SERVING_SIGNATURE!r} has no output {names.PREDICTIONS_KEY!r}: "
            f"{sorted(sig.outputs)}",
        )
    return model_dir


def _files(model_dir: Path) -> list[str]:
    """Every file under ``model_dir`` as a relative posix path, sorted, the manifest excluded."""
    own = manifest_path(model_dir)
    found = []
    for dirpath, _, files in os.walk(model_dir):
        for f in files:
            path = Path(dirpath) / f
            if path != own:
                found.append(path.relative_to(model_dir).as_posix())
    return sorted(found)


def write_manifest(model_dir: Path | str) -> Path:
    """List every file of ``model_dir`` (size, sha256) in its manifest, so ``damage`` can check it.

    Push calls it on its temp copy after everything else is in it and before the fsync, so the
    manifest is published by the same rename as the files it lists. An existing manifest (a
    model copied from a pushed version) is replaced.
    """
    model_dir = Path(model_dir)
    files = {
        rel: {"size": (model_dir / rel).stat().st_size, "sha256": storage.file_digest(model_dir / rel)}
        for rel in _files(model_dir)
    }
    path = manifest_path(model_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"format": MANIFEST_FORMAT, "files": files}
    path.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    return path


def read_manifest(model_dir: Path | str) -> dict[str, tuple[int, str]] | None:
    """``{relative path: (size, sha256)}`` push recorded; None when there is none or it is unreadable."""
    try:
        doc = json.loads(manifest_path(model_dir).read_text())
        if doc.get("format") != MANIFEST_FORMAT:
            return None
        files = {str(rel): (int(v["size"]), str(v["sha256"])) for rel, v in doc["files"].items()}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None
    return files or None


def _manifest_damage(model_dir: Path, files: dict[str, tuple[int, str]]) -> str | None:
    """The first listed file that is missing or not as pushed: sizes first (cheap), then hashes."""
    for rel, (size, _) in sorted(files.items()):
        path = model_dir / rel
        if not path.is_file():
            return f"{rel} is missing"
        actual = path.stat().st_size
        if actual != size:
            return f"{rel} has {actual:,} bytes, {size:,} were pushed"
    for rel, (_, sha256) in sorted(files.items()):
        if storage.file_digest(model_dir / rel) != sha256:
            return f"{rel} differs from what was pushed (sha256)"
    return None


def _structure_damage(model_dir: Path) -> str | None:
    """What a SavedModel without a manifest visibly lacks (the module docstring's rules)."""
    graph = next((model_dir / f for f in SAVED_MODEL_FILES if (model_dir / f).is_file()), None)
    if graph is None:
        return f"{SAVED_MODEL_FILES[0]} is missing"
    variables = model_dir / VARIABLES_DIR
    if not variables.is_dir():
        if graph.suffix == ".pb" and _RESTORE_OP in graph.read_bytes():
            return f"{VARIABLES_DIR}/ is missing (saved_model.pb restores variables from it)"
        return None  # no checkpoint to judge the graph by: even an empty one is left to TensorFlow
    if graph.stat().st_size == 0:
        return f"{graph.name} is empty"
    index = variables / "variables.index"
    if not index.is_file() or index.stat().st_size == 0:
        return f"{VARIABLES_DIR}/variables.index is {'empty' if index.is_file() else 'missing'}"
    shards = [m for p in variables.iterdir() if (m := _SHARD.match(p.name))]
    if not shards:
        return f"{VARIABLES_DIR}/variables.data-00000-of-00001 is missing"
    count = max(int(m[2]) for m in shards)
    for i in range(count):
        name = f"variables.data-{i:05d}-of-{count:05d}"
        if not (variables / name).is_file():
            return f"{VARIABLES_DIR}/{name} is missing"
    return None


def damage(version_dir: Path | str) -> str | None:
    """Why a pushed version cannot be used (None: it can), without importing TensorFlow.

    Checked against the manifest push wrote, else for the structure (module docstring).
    """
    model_dir = Path(version_dir)
    if not model_dir.is_dir():
        return "the version directory is missing"
    files = read_manifest(model_dir)
    if files is not None:
        return _manifest_damage(model_dir, files)
    return _structure_damage(model_dir)
