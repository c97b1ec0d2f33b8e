"""The model contract between train and the stages after it: where the SavedModel is, what it serves.

Train exports a SavedModel to ``<train dir>/Format-Serving`` (TFX Trainer's layout) whose
``serving_default`` signature takes ``examples`` (serialized raw ``tf.Example``s) and returns
``predictions``; push copies it to ``<serving root>/<model>/<version>/``, where TF Serving and
the next run's baseline find it. A model artifact names the exact SavedModel directory in its
``model_path`` metadata (a pushed baseline) or points at the train directory. Resolve-baseline,
evaluate and push check a directory through this module, so they agree on what a SavedModel is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from components import names
from components.errors import StageError
from components.lib import storage

# A SavedModel directory holds one of these at its top (TF Serving and the loaders look for them).
SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")


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
