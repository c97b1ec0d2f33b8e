"""The evaluate report's classification figures, computed with numpy, against scikit-learn's own.

``components.lib.evaluate.class_predictions`` computes the confusion matrix, one-vs-rest ROC and
PR curves, their areas and the reliability bins without scikit-learn (a dev dependency only);
here every one is compared with scikit-learn on random scores with ties, and the file train
writes for a classifier is read back through train's own writer (``train.prediction_table``).
"""

from __future__ import annotations

import numpy as np
import pytest

from components.lib.evaluate import class_predictions as cp


def scores(n: int, seed: int, ties: bool) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.4
    s = np.clip(0.35 * y + rng.normal(0.35, 0.25, n), 0.0, 1.0)
    return y, (np.round(s, 1) if ties else s)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_roc_and_pr_curves_equal_scikit_learns(seed, ties):
    from sklearn import metrics

    y, s = scores(300, seed, ties)
    fpr, tpr, thresholds = cp.roc_curve(y, s)
    want = metrics.roc_curve(y, s, drop_intermediate=False)
    assert fpr == pytest.approx(want[0].tolist()) and tpr == pytest.approx(want[1].tolist())
    assert thresholds[1:] == pytest.approx(want[2][1:].tolist())
    assert cp.area(fpr, tpr) == pytest.approx(metrics.roc_auc_score(y, s), rel=1e-12)
    precision, recall, at = cp.precision_recall_curve(y, s)
    want = metrics.precision_recall_curve(y, s)
    assert precision == pytest.approx(want[0].tolist()) and recall == pytest.approx(want[1].tolist())
    assert at == pytest.approx(want[2].tolist())
    assert cp.average_precision(precision, recall) == pytest.approx(
        metrics.average_precision_score(y, s), rel=1e-12
    )


def test_calibration_bins_equal_scikit_learns():
    from sklearn.calibration import calibration_curve

    y, s = scores(500, 3, ties=True)  # scores on the bin edges too (0.1, 0.2, ...)
    bins = cp.calibration(y, s)
    observed, mean_score = calibration_curve(y, s, n_bins=10, strategy="uniform")
    assert [b[1] for b in bins] == pytest.approx(observed.tolist())
    assert [b[0] for b in bins] == pytest.approx(mean_score.tolist())
    assert sum(b[2] for b in bins) == len(y)


def test_confusion_matrix_and_never_predicted_class_equal_scikit_learns():
    from sklearn import metrics

    rng = np.random.default_rng(4)
    probs = rng.dirichlet([3, 3, 0.2], 200)  # class 2 is almost never the likeliest
    probs[:, 2] = 0.0
    actual = rng.integers(0, 3, 200).tolist()
    preds = cp.ClassPredictions(("a", "b", "c"), actual, probs.tolist())
    picked = preds.predicted()
    assert picked == probs.argmax(axis=1).tolist()
    matrix = cp.confusion_matrix(actual, picked, 3)
    assert matrix == metrics.confusion_matrix(actual, picked, labels=[0, 1, 2]).tolist()
    assert sum(row[2] for row in matrix) == 0  # never predicted: its precision is undefined, not 0


def test_an_undefined_curve_is_said_not_drawn():
    fpr, tpr, _ = cp.roc_curve([True, True], [0.2, 0.9])  # no negative row
    assert np.isnan(fpr).all() and np.isnan(cp.area(fpr, tpr))
    assert cp.precision_recall_curve([False, False], [0.2, 0.9]) == ([], [], [])


@pytest.mark.parametrize("classes", [("no", "yes"), ("0", "1", "2")])
def test_the_file_train_writes_is_read_back(tmp_path, classes):
    """Train's writer (prediction_table) for text and int classes; the report reads every row."""
    from components.lib.label import CLASSIFICATION, KIND_STRING, LabelInfo
    from components.lib.train import prediction_table
    from components.lib.train_outputs import EVAL_PREDICTIONS_FILE, read_predictions

    rng = np.random.default_rng(5)
    k = len(classes)
    probs = rng.dirichlet([1.0] * k, 40).astype(np.float32)
    labels = rng.integers(0, k, 40)
    info = LabelInfo("y", CLASSIFICATION, KIND_STRING, classes)
    table = prediction_table({"size": rng.random(40), "p_x": rng.random(40)}, labels, probs, info)
    table.to_csv(tmp_path / EVAL_PREDICTIONS_FILE, index=False)
    preds = cp.read_class_predictions(tmp_path, "y", classes)
    assert preds is not None and preds.actual == labels.tolist()
    assert np.asarray(preds.probabilities) == pytest.approx(probs, rel=1e-6)
    assert preds.predicted() == probs.argmax(axis=1).tolist()
    if not classes[0].isdigit():  # the regression reader skips every text label: the old blank section
        assert read_predictions(tmp_path, "y") == ([], [])
    assert cp.read_class_predictions(tmp_path, "other", classes) is None
