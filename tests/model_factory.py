"""Tiny SavedModels with the train stage's serving contract, for testing the gate stages.

The contract (what the train stage exports): a directory ``<storage_path>/Format-Serving``
holding a SavedModel whose ``serving_default`` signature takes ``examples`` (tf.string [None],
serialized raw ``tf.Example``s; a label may be present and is ignored) and returns
``{"predictions": float32 [None, 1]}`` in ``charges`` units.

Here the "model" is a fixed formula instead of a trained network: the formula of
``components.lib.datagen`` (a good model, MAE ~1,500 on the synthetic data), the same shifted
(a slightly worse one) or zero (a bad one). Evaluating them with TFMA exercises exactly the
code paths a trained Keras model does (same signature, same inputs), in a second instead of
minutes of training.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from components import names

if TYPE_CHECKING:
    from kfp import dsl

# datagen's cost formula; the gamma noise it adds has mean 1.2 * 1800 = 2160.
GAMMA_MEAN = 2160.0


def save_formula_model(export_dir: Path, *, offset: float = 0.0, zero: bool = False) -> Path:
    """Write a SavedModel at ``export_dir`` predicting datagen's formula (+ ``offset``), or 0."""
    import tensorflow as tf

    spec = {
        "age": tf.io.FixedLenFeature([], tf.int64, default_value=0),
        "bmi": tf.io.FixedLenFeature([], tf.float32, default_value=30.0),
        "children": tf.io.FixedLenFeature([], tf.int64, default_value=0),
        "smoker": tf.io.FixedLenFeature([], tf.string, default_value="no"),
    }

    class FormulaModel(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=names.EXAMPLES_INPUT_KEY)])
        def serve(self, examples: tf.Tensor) -> dict[str, tf.Tensor]:
            f = tf.io.parse_example(examples, spec)
            age = tf.cast(f["age"], tf.float32)
            children = tf.cast(f["children"], tf.float32)
            bmi = f["bmi"]
            smoker = tf.cast(tf.equal(f["smoker"], "yes"), tf.float32)
            obese = tf.cast(bmi >= 30.0, tf.float32)
            y = 260.0 * age - 4800.0 + 480.0 * children + 20.0 * (bmi - 30.0)
            y += smoker * (13500.0 + 19500.0 * obese) + GAMMA_MEAN + offset
            y = tf.maximum(y, 1100.0)
            if zero:
                y = tf.zeros_like(y)
            return {names.PREDICTIONS_KEY: tf.reshape(y, [-1, 1])}

    module = FormulaModel()
    export_dir = Path(export_dir)
    export_dir.parent.mkdir(parents=True, exist_ok=True)
    tf.saved_model.save(module, str(export_dir), signatures={names.SERVING_SIGNATURE: module.serve})
    return export_dir


def fake_saved_model(path: Path) -> Path:
    """Files shaped like a SavedModel, no TensorFlow needed: push, resolve-baseline and reconcile only
    look for saved_model.pb. Three files, so a copy can stop halfway."""
    (path / "variables").mkdir(parents=True)
    (path / "saved_model.pb").write_bytes(b"\x08\x01")
    (path / "variables" / "variables.index").write_bytes(b"index")
    (path / "variables" / "variables.data-00000-of-00001").write_bytes(b"data" * 1000)
    return path


def save_wrong_contract_model(export_dir: Path) -> Path:
    """A SavedModel whose serving signature takes a float tensor ``x``: not the train contract."""
    import tensorflow as tf

    class Wrong(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
        def serve(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
            return {names.PREDICTIONS_KEY: tf.reduce_sum(x, axis=1, keepdims=True)}

    module = Wrong()
    tf.saved_model.save(module, str(export_dir), signatures={names.SERVING_SIGNATURE: module.serve})
    return export_dir


KINDS: dict[str, dict[str, float | bool]] = {
    "good": {},  # datagen's formula: MAE ~1,500 on the synthetic data
    "worse": {"offset": 1500.0},  # MAE ~2,100: under 8,000 but >5 % worse than "good"
    "zero": {"zero": True},  # predicts 0: MAE = mean charges, far over 8,000
}


def train_output(storage_root: Path, run_id: str, kind: str) -> Path:
    """Write what the train stage writes: ``<root>/artifacts/<run>/train/Format-Serving``."""
    out = Path(storage_root) / names.ARTIFACTS_DIR / run_id / names.STAGE_TRAIN
    if not (out / names.MODEL_SERVING_DIR / "saved_model.pb").exists():
        save_formula_model(out / names.MODEL_SERVING_DIR, **KINDS[kind])
    return out


def model_artifact(train_dir: Path, kfp_dir: Path, name: str = "model") -> dsl.Model:
    """A train-stage Model artifact pointing at ``train_dir`` (metadata and manifest)."""
    from kfp import dsl

    meta = {names.META_STORAGE_PATH: str(train_dir)}
    art = dsl.Model(name=name, uri=str(Path(kfp_dir) / name), metadata=meta)
    Path(art.path).parent.mkdir(parents=True, exist_ok=True)
    Path(art.path).write_text(json.dumps({names.META_STORAGE_PATH: str(train_dir)}))
    return art


_TRAINED: dict[str, Path] = {}


def trained_models(tmp_path_factory: Any) -> dict[str, Path]:
    """One train output directory per kind in KINDS, built once per test session (~2 s each).

    Test modules wrap this in their own session fixture; the cache makes them share one set.
    """
    if not _TRAINED:
        root = tmp_path_factory.mktemp("models")
        _TRAINED.update({kind: train_output(root, f"run-{kind}", kind) for kind in KINDS})
    return dict(_TRAINED)


def current_baseline(storage: str | Path, model_name: str = names.MODEL_NAME) -> int | None:
    """The version resolve-baseline would hand evaluate now (None: no baseline)."""
    from components.lib import registry

    entry, _ = registry.baseline_entry(storage, registry.read_index(storage, names.STAGE_RESOLVE), model_name)
    return None if entry is None else entry["version"]


def push_directly(
    src: str | Path,
    storage: str | Path,
    *,
    run_id: str = "r",
    model_name: str = names.MODEL_NAME,
    serving_root: str = names.SERVING_DIR,
    fingerprint: str = "",
    blessing: Any = None,
    copy_tree: Any = None,
) -> Any:
    """``push_model`` on a SavedModel directory.

    Blessed against the current baseline (as a run that resolved it just now) unless ``blessing``
    (a Blessing) says otherwise.
    """
    from components.lib.blessing import Blessing
    from components.lib.push import push_model

    extra = {} if copy_tree is None else {"copy_tree": copy_tree}
    if blessing is None:
        blessing = Blessing(names.BLESSED, baseline=current_baseline(storage, model_name))
    return push_model(
        Path(src),
        storage_root=str(storage),
        serving_root=serving_root,
        model_name=model_name,
        run_id=run_id,
        model_location=str(src),
        fingerprint=fingerprint,
        blessing=blessing,
        **extra,
    )


def push_worker(src: str, storage: str, run_id: str, start: Any, mode: str = "") -> None:
    """One push in a separate process (a second pod). Lives here, not in a test module, so a
    spawned process imports only this module and the push logic (no kfp: ~1 s less per process).

    mode "hang": copy part of the model, signal ``start``, then hang until killed.
    Otherwise wait for ``start`` so several processes push at the same moment. Every worker's
    candidate was judged with no baseline, as by runs that all resolved before any pushed.
    """
    from components.lib.blessing import Blessing

    copy_tree: Any = shutil.copytree
    if mode == "hang":

        def copy_tree(s: Path, d: Path) -> None:
            d.mkdir()
            shutil.copy2(s / "saved_model.pb", d / "saved_model.pb")
            start.set()
            time.sleep(600)
    else:
        start.wait(60)
    push_directly(
        src,
        storage,
        run_id=run_id,
        fingerprint=run_id,
        blessing=Blessing(names.BLESSED),
        copy_tree=copy_tree,
    )
