"""The exported SavedModel, loaded in a fresh process the way a server would: raw tf.Examples in.

One subprocess (the venv's python, nothing of this process's state) loads
``Format-Serving``, serializes raw CSV rows as tf.Examples without the label and calls
``serving_default`` and ``transform_features``; the tests compare what it returns with the
predictions the trainer computed on the Beam-transformed eval split (no train/serve skew).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_train import RUN_ID, trained_model
from test_transform import RUN_ID as TRANSFORM_RUN_ID

from components import names

SERVE_SCRIPT = r"""
import csv, json, sys
import tensorflow as tf

model_dir, csv_path = sys.argv[1], sys.argv[2]
INTS, FLOATS = ("age", "children"), ("bmi", "charges")

def example(row, with_label=False):
    feats = {}
    for key, value in row.items():
        if value is None or value == "" or (key == "charges" and not with_label):
            continue
        if key in INTS:
            feats[key] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))
        elif key in FLOATS:
            feats[key] = tf.train.Feature(float_list=tf.train.FloatList(value=[float(value)]))
        else:
            feats[key] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
    return tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString()

loaded = tf.saved_model.load(model_dir)
serve = loaded.signatures["serving_default"]
transform = loaded.signatures["transform_features"]
rows = list(csv.DictReader(open(csv_path)))
out = serve(examples=tf.constant([example(r) for r in rows]))["predictions"]
with_label = serve(examples=tf.constant([example(r, with_label=True) for r in rows[:20]]))["predictions"]
odd = [dict(rows[0], region="atlantis"), dict(rows[1], bmi=""), {"age": "40"}]
odd_out = serve(examples=tf.constant([example(r) for r in odd]))["predictions"]
odd_features = transform(examples=tf.constant([example(r) for r in odd]))
print(json.dumps({
    "shape": out.shape.as_list(),
    "dtype": out.dtype.name,
    "predictions": out.numpy().ravel().tolist(),
    "labels": [float(r["charges"]) for r in rows],
    "with_label": with_label.numpy().ravel().tolist(),
    "odd": odd_out.numpy().ravel().tolist(),
    "odd_features": {k: v.numpy().tolist() for k, v in odd_features.items()},
}))
"""


def _env() -> dict[str, str]:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}


@pytest.fixture(scope="module")
def served(storage_root, examples, synthetic_csv, tmp_path_factory):
    """Run SERVE_SCRIPT on a copy of the SavedModel while the transform output is out of reach.

    The copy is what push does; hiding the transform stage directory proves the model carries
    its transform graph and vocabularies with it.
    """
    trained_model(storage_root, examples, synthetic_csv)
    stage = storage_root / names.ARTIFACTS_DIR / RUN_ID / names.STAGE_TRAIN
    copy = tmp_path_factory.mktemp("served") / "1"
    shutil.copytree(stage / names.MODEL_SERVING_DIR, copy)
    transform_dir = storage_root / names.ARTIFACTS_DIR / TRANSFORM_RUN_ID / names.STAGE_TRANSFORM
    hidden = transform_dir.with_name(".hidden-transform")
    transform_dir.rename(hidden)
    try:
        proc = subprocess.run(
            [sys.executable, "-c", SERVE_SCRIPT, str(copy), str(synthetic_csv)],
            capture_output=True,
            text=True,
            timeout=300,
            env=_env(),
        )
    finally:
        hidden.rename(transform_dir)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return stage, json.loads(proc.stdout.strip().splitlines()[-1])


def test_served_predictions_equal_the_trainers_eval_predictions(served):
    import pandas as pd

    from components.lib.train import EVAL_PREDICTIONS_FILE, PREDICTION_COLUMN

    stage, out = served
    assert out["shape"] == [len(out["labels"]), 1] and out["dtype"] == "float32"
    trainer = pd.read_csv(stage / EVAL_PREDICTIONS_FILE)
    # Rows are matched by their label (passed through untransformed, unique in the synthetic data).
    by_label: dict[np.float32, list[float]] = {}
    for label, pred in zip(out["labels"], out["predictions"], strict=True):
        by_label.setdefault(np.float32(label), []).append(pred)
    served_preds, expected = [], []
    for label, pred in zip(trainer[names.LABEL], trainer[PREDICTION_COLUMN], strict=True):
        candidates = by_label[np.float32(label)]
        assert len(set(candidates)) == 1, f"label {label} matches rows with different predictions"
        served_preds.append(candidates[0])
        expected.append(pred)
    assert len(served_preds) == len(trainer) > 50
    np.testing.assert_allclose(served_preds, expected, rtol=1e-4)


def test_a_label_in_the_request_is_ignored(served):
    _, out = served
    np.testing.assert_allclose(out["with_label"], out["predictions"][:20], rtol=1e-6)


def test_unseen_category_and_missing_values_give_finite_predictions(served, storage_root):
    import tensorflow_transform as tft

    _, out = served
    assert len(out["odd"]) == 3 and np.isfinite(out["odd"]).all() and min(out["odd"]) > 0
    graph = (
        storage_root
        / names.ARTIFACTS_DIR
        / TRANSFORM_RUN_ID
        / names.STAGE_TRANSFORM
        / names.TRANSFORM_GRAPH_DIR
    )
    regions = tft.TFTransformOutput(str(graph)).vocabulary_size_by_name("region")
    features = out["odd_features"]
    assert set(features) == set(names.FEATURES)  # the label output is pruned: no label was sent
    assert features["region"][0] == regions  # the OOV bucket comes right after the vocabulary
    assert features["bmi"][1] == 0.0  # missing -> the train mean, 0 after scaling
    assert features["bmi"][0] != 0.0


def test_saved_model_cli_lists_both_signatures(served):
    stage, _ = served
    cli = Path(sys.executable).parent / "saved_model_cli"
    proc = subprocess.run(
        [str(cli), "show", "--all", "--dir", str(stage / names.MODEL_SERVING_DIR)],
        capture_output=True,
        text=True,
        timeout=300,
        env=_env(),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = proc.stdout
    serving = text[text.index(f"signature_def['{names.SERVING_SIGNATURE}']") :]
    serving = serving[: serving.index("Method name is")]
    assert f"inputs['{names.EXAMPLES_INPUT_KEY}']" in serving and "DT_STRING" in serving
    assert "shape: (-1)" in serving
    assert f"outputs['{names.PREDICTIONS_KEY}']" in serving and "DT_FLOAT" in serving
    assert "shape: (-1, 1)" in serving
    assert f"signature_def['{names.TRANSFORM_SIGNATURE}']" in text
