"""No eval row reaches tune or train: the eval split is for evaluate's verdict alone.

The transformed eval split's rows are made recognisable (every float feature set to ``MARKER``,
which no z-scored train value comes near), then tune and train run with every ``keras.Model.fit``
instrumented: each batch the model is fit on, and each validation batch it is scored or stopped
on, is read back and searched for the marker. The miswired case (train's reader handed the eval
files) must be caught by the same instrument, so the test cannot pass by never looking.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import examples_from_csv
from test_train import hyperparameters_artifact, run_train_component
from test_transform import infer_schema_file, run_transform_component
from test_tune import run_tune

from components import names

MARKER = 50.0  # z-scored train features stay within a few units of 0; exp(50) still finite


def _mark_eval_split(transformed: tuple) -> int:
    """Set every float feature of every transformed eval example to MARKER; how many rows."""
    import tensorflow as tf

    from components.lib import storage
    from components.lib.transform_output import transform_paths, transformed_files

    graph, examples = transformed
    examples_dir, _ = transform_paths(
        storage.storage_path_of(examples.metadata, examples.path, "test"),
        storage.storage_path_of(graph.metadata, graph.path, "test"),
    )
    rows = 0
    for path in transformed_files(examples_dir, names.EVAL, "test"):
        records = [r.numpy() for r in tf.data.TFRecordDataset(path, compression_type="GZIP")]
        with tf.io.TFRecordWriter(path, options="GZIP") as writer:
            for record in records:
                example = tf.train.Example.FromString(record)
                for name, feature in example.features.feature.items():
                    if name != names.LABEL and feature.HasField("float_list"):
                        feature.float_list.value[:] = [MARKER] * len(feature.float_list.value)
                writer.write(example.SerializeToString())
                rows += 1
    return rows


class FitRecorder:
    """Wraps ``keras.Model.fit``: counts the rows of every fit and validation batch and the marked ones."""

    def __init__(self) -> None:
        self.fits = 0
        self.rows = {"fit": 0, "validation": 0}
        self.marked = {"fit": 0, "validation": 0}

    def _scan(self, dataset: Any, batches: int, part: str) -> None:
        for features, _ in dataset.take(batches) if hasattr(dataset, "take") else dataset:
            floats = [v.numpy().reshape(len(v), -1) for v in features.values() if v.dtype.is_floating]
            if not floats:
                continue
            hit = np.abs(np.concatenate(floats, axis=1)) >= MARKER / 10
            self.rows[part] += hit.shape[0]
            self.marked[part] += int(hit.any(axis=1).sum())

    def wrap(self, fit: Any) -> Any:
        def recording_fit(model: Any, x: Any = None, *args: Any, **kwargs: Any) -> Any:
            self.fits += 1
            steps = kwargs.get("steps_per_epoch") or 1
            self._scan(x, steps * kwargs.get("epochs", 1), "fit")
            if kwargs.get("validation_data") is not None:  # finite: read to the end (-1) unless steps given
                self._scan(kwargs["validation_data"], kwargs.get("validation_steps") or -1, "validation")
            for callback in kwargs.get("callbacks") or []:  # training.slice_validation's batches
                if hasattr(callback, "batches"):
                    self._scan(callback.batches, -1, "validation")
            return fit(model, x, *args, **kwargs)

        return recording_fit


@pytest.fixture(scope="module")
def marked(tmp_path_factory, synthetic_csv):
    """A storage root whose transformed eval split is all marker rows: (root, transformed, eval rows)."""
    root = tmp_path_factory.mktemp("isolation")
    examples = examples_from_csv(root, synthetic_csv, "iso")
    schema_dir = infer_schema_file(synthetic_csv, root / "schema")
    transformed = run_transform_component(root, examples, schema_dir, "iso")
    return root, transformed, _mark_eval_split(transformed)


@pytest.fixture
def recorder(monkeypatch):
    import keras

    rec = FitRecorder()
    monkeypatch.setattr(keras.Model, "fit", rec.wrap(keras.Model.fit))
    return rec


def test_no_eval_row_reaches_the_tuner(marked, recorder, tmp_path):
    root, transformed, eval_rows = marked
    assert eval_rows > 50
    _, summary, _ = run_tune(root, transformed, tmp_path, "iso-tune", trials=2, steps=20, batch_size=16)
    assert recorder.fits == 2  # every trial was fit, and looked at
    assert recorder.rows["fit"] > 0 and recorder.rows["validation"] > 0
    assert recorder.marked == {"fit": 0, "validation": 0}
    assert summary.metadata["trials"] == 2


def test_no_eval_row_reaches_train_and_the_slice_is_recorded(marked, recorder):
    root, transformed, eval_rows = marked
    hp = hyperparameters_artifact(root / "kfp" / "iso-train" / "best_hyperparameters", {"units": 16})
    model, metrics, _ = run_train_component(root, transformed, hp, "iso-train", train_steps=40)
    assert recorder.fits == 1
    assert recorder.rows["fit"] > 0 and recorder.rows["validation"] > 0
    assert recorder.marked == {"fit": 0, "validation": 0}
    # The held-out slice and the fit rows partition the train split, and the outputs say so.
    fit = model.metadata["fit"]
    train_rows = json.loads(
        (root / names.ARTIFACTS_DIR / "iso-train" / names.STAGE_TRAIN / "training_summary.json").read_text()
    )["label"]["stats"]["count"]
    assert fit["fit_rows"] + fit["validation_rows"] == train_rows
    # The 5 % default is raised to hold out at least 50 rows of this small split.
    assert fit["validation_fraction"] == pytest.approx(max(0.05, 50 / train_rows))
    assert 0.5 * 50 < fit["validation_rows"] < fit["fit_rows"]
    mlp = model.metadata["model_family"]["candidates"]["mlp"]  # auto may keep another family
    assert 1 <= mlp["best_epoch"] <= mlp["epochs_run"] <= fit["epochs"]
    # Evaluated only once the weights were final, on every eval row (the marked ones).
    assert metrics.metadata["eval_examples"] == eval_rows


def test_the_instrument_catches_eval_rows_wired_into_train(marked, recorder, monkeypatch):
    # The same run with train's reader handed the eval files as its train split: the recorder
    # must see marked rows, or the two tests above prove nothing.
    from components.lib import train as train_lib
    from components.lib import transform_output

    def eval_as_train(directory: Path, split: str, stage: str) -> list[str]:
        return transform_output.transformed_files(directory, names.EVAL, stage)

    monkeypatch.setattr(train_lib, "transformed_files", eval_as_train)
    root, transformed, _ = marked
    hp = hyperparameters_artifact(root / "kfp" / "iso-miswired" / "best_hyperparameters", {"units": 16})
    run_train_component(root, transformed, hp, "iso-miswired", train_steps=40)
    assert recorder.marked["fit"] > 0 and recorder.marked["validation"] > 0
