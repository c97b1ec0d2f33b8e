"""Evaluate for any task: classification metrics in both engines, the gate that fits the task, the
naive predictor, and a baseline of another dataset refused by name.

The classifiers are fixed formulas with the train stage's classification contract
(``classifier_factory``), evaluated on eval rows the tests write, so both engines run in seconds.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from classifier_factory import KIND_INT, KIND_STRING, classification_rows, save_size_classifier
from test_evaluate import assert_same_evaluation, evaluate_both, tricky_rows, write_eval_split

from components import defaults, names
from components.errors import StageError
from components.lib import evaluate as ev


def thresholds(**kw) -> ev.Thresholds:
    values = dict(mae_threshold=None, max_relative_degradation=0.05, naive_margin=0.1, min_accuracy=None)
    values.update(kw)
    return ev.Thresholds(**values)


BINARY = ("no", "yes")
THREE = ("0", "1", "2")


@pytest.mark.parametrize(
    "classes, kind, slice_feature",
    [(BINARY, KIND_STRING, "color"), (THREE, KIND_INT, "color"), (THREE, KIND_INT, "")],
    ids=["binary-text", "multiclass-int", "multiclass-unsliced"],
)
def test_native_engine_writes_what_tfma_writes_for_classification(tmp_path, classes, kind, slice_feature):
    """Accuracy, log loss, per-class AUC/precision/recall, the confusion-matrix and ROC plots, the
    baseline diffs and the validation: the same files from both engines."""
    rows = classification_rows(classes, ints=kind == KIND_INT)
    examples = write_eval_split(tmp_path / "examples", rows)
    candidate = save_size_classifier(
        tmp_path / "candidate", classes, kind=kind, counts=[50, 60, 40][: len(classes)]
    )
    baseline = save_size_classifier(tmp_path / "baseline", classes, kind=kind, sharpness=0.02)
    results = evaluate_both(
        tmp_path / "run",
        examples,
        candidate,
        baseline,
        label="y",
        slice_feature=slice_feature,
        thresholds=thresholds(),
    )
    assert_same_evaluation(results)
    native = results["native"]
    assert native.classification and native.label_info.classes == classes
    cand = native.candidate
    assert cand["example_count"] == len(rows) and 0.5 < cand["accuracy"] <= 1.0 and cand["log_loss"] > 0
    for cls in classes:
        assert 0.5 < cand[f"auc/{cls}"] <= 1.0
    if len(classes) == 2:
        assert cand["auc"] == cand["auc/yes"]  # the second class is the positive one
    if slice_feature:
        assert set(native.metrics) == {"Overall", "color=red", "color=blue", "color=grün"}
    # The gate uses accuracy: its value bound and the change against the baseline, in TFMA's result.
    config = json.loads((native.eval_result_dir / "eval_config.json").read_text())
    gated = [
        m
        for spec in config["evalConfig"]["metricsSpecs"]
        for m in spec["metrics"]
        if m.get("perSliceThresholds")
    ]
    assert [m["className"] for m in gated] == ["SparseCategoricalAccuracy"]


def test_classification_plots_give_the_confusion_matrix_and_roc(tmp_path):
    rows = classification_rows(BINARY, ints=False)
    examples = write_eval_split(tmp_path / "examples", rows)
    model = save_size_classifier(tmp_path / "m", BINARY, counts=[80, 60])
    out = tmp_path / "out"
    out.mkdir()
    result = ev.evaluate_models(
        examples,
        model,
        None,
        None,
        out,
        label="y",
        slice_feature="",
        thresholds=thresholds(),
        beam_args=defaults.BEAM_ARGS,
    )
    from components.lib.evaluate.results import classification_plots

    curves = classification_plots(result.eval_result_dir, ev.CANDIDATE, 2)
    matrix = curves["confusion_matrix"]
    assert sum(map(sum, matrix)) == len(rows)
    assert (matrix[0][0] + matrix[1][1]) / len(rows) == pytest.approx(result.candidate["accuracy"], rel=1e-6)
    (tn, fp), (fn, tp) = matrix  # macro-F1: the mean of both classes' F1, from the same matrix
    f1 = (2 * tp / (2 * tp + fp + fn) + 2 * tn / (2 * tn + fn + fp)) / 2
    assert 0 < result.candidate["macro_f1"] == pytest.approx(f1, rel=1e-9)
    assert result.evaluation_metadata()["macro_f1"] == pytest.approx(f1, rel=1e-9)
    assert result.logged_metrics()["macro_f1"] == pytest.approx(f1, rel=1e-3)
    fpr, tpr, thresholds_ = curves["roc"]
    assert len(fpr) == len(tpr) == len(thresholds_) > 100 and thresholds_ == sorted(thresholds_)
    assert max(tpr) == 1.0 and min(fpr) == 0.0
    # The naive predictor is the majority class of the TRAINING labels ("no": 80 of 140).
    reasons = result.blessing.reasons
    assert result.blessing.verdict == names.BLESSED
    assert (
        "below the naive predictor's" in reasons[0]
        and "(always 'no', the majority class in 57% of" in reasons[0]
    )
    page = ev.render_report(result, label="y", slice_feature="")  # the report speaks of the task's metrics
    assert "accuracy per slice" in page and "one against the rest" in page and "log loss" in page
    assert "macro-F1" in page and "R²" not in page
    assert "mean absolute error" not in page


def test_the_default_gate_refuses_a_model_no_better_than_the_naive_predictor(tmp_path):
    rows = classification_rows(BINARY, ints=False)
    examples = write_eval_split(tmp_path / "examples", rows)
    flat = save_size_classifier(tmp_path / "flat", BINARY, sharpness=0.0, counts=[80, 60])  # 50/50 for all
    out = tmp_path / "out"
    out.mkdir()
    result = ev.evaluate_models(
        examples,
        flat,
        None,
        None,
        out,
        label="y",
        slice_feature="",
        thresholds=thresholds(),
        beam_args=defaults.BEAM_ARGS,
    )
    assert result.blessing.verdict == names.NOT_BLESSED
    # Error rates on both sides, the accuracy beside (not an accuracy next to an error rate).
    assert result.blessing.reasons[0].startswith("overall error rate 43.8% (accuracy 0.562) is ")
    assert "below the naive predictor's 43.8%" in result.blessing.reasons[0]


def test_a_regression_baseline_for_a_classifier_is_refused_naming_the_model(tmp_path, trained):
    """Two datasets under one model name: the clash is one line with the name and the fix."""
    import shutil

    rows = classification_rows(BINARY, ints=False)
    examples = write_eval_split(tmp_path / "examples", rows)
    candidate = save_size_classifier(tmp_path / "candidate", BINARY)
    baseline = tmp_path / names.SERVING_DIR / "insurance" / "3"
    shutil.copytree(trained["good"] / names.MODEL_SERVING_DIR, baseline)
    (tmp_path / "out").mkdir()
    with pytest.raises(StageError) as err:
        ev.evaluate_models(
            examples, candidate, baseline, 3, tmp_path / "out", label="y", slice_feature="",
            thresholds=thresholds(), beam_args=defaults.BEAM_ARGS,
        )  # fmt: skip
    message = str(err.value)
    assert message.startswith(
        f"[evaluate] {baseline}: the baseline, version 3 of model 'insurance', is not a version of this model"
    )
    assert message.endswith(
        "Two datasets share the model name 'insurance': give this pipeline its own "
        "(--param model_name=<name>), or move serving/insurance/ away"
    )


def test_regression_naive_gate_with_the_absolute_one(tmp_path):
    """The MAE bound is the tighter of mae_threshold and (1 - margin) x the naive predictor's MAE."""
    from test_evaluate import save_age_model

    from components.lib import saved_model
    from components.lib.label import KIND_FLOAT, REGRESSION, LabelInfo

    rows = [r for r in tricky_rows() if isinstance(r.get("smoker"), str)]
    examples = write_eval_split(tmp_path / "examples", rows)
    model = save_age_model(tmp_path / "m", 330.0)
    info = LabelInfo("charges", REGRESSION, KIND_FLOAT, (), {"count": 100, "median": 20000.0})
    info.write(saved_model.label_info_path(model))
    results = evaluate_both(
        tmp_path / "run", examples, model, None, thresholds=thresholds(mae_threshold=20000.0)
    )
    assert_same_evaluation(results)
    r = results["native"]
    naive = json.loads((r.eval_result_dir.parent / ev.SUMMARY_FILE).read_text())["naive"]
    assert naive["description"] == "the training median 20,000 for every row"
    mae = r.candidate["mae"]
    bound = min(20000.0, 0.9 * naive["error"])
    verdict = names.BLESSED if mae <= bound else names.NOT_BLESSED
    assert r.blessing.verdict == verdict
    assert r.blessing.reasons[0].startswith("overall ")


def test_thresholds_file_knows_the_new_gates(tmp_path):
    f = tmp_path / "t.json"
    f.write_text('{"naive_margin": 0.2, "min_accuracy": 0.9}')
    t = ev.load_thresholds(-1.0, 0.05, str(f), str(tmp_path), 0.1, -1.0)
    assert (t.naive_margin, t.min_accuracy, t.mae_threshold) == (0.2, 0.9, None)
    f.write_text('{"naive_margin": null}')
    assert ev.load_thresholds(-1.0, 0.05, str(f), str(tmp_path), 0.1, -1.0).naive_margin is None


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> dict[str, Path]:
    from model_factory import trained_models

    return trained_models(tmp_path_factory)


def test_macro_f1_and_r_squared_by_hand():
    from components.lib.evaluate.results import macro_f1, r_squared

    # 3 classes; class 2 never occurs nor is predicted, so it is left out (as scikit-learn does).
    matrix = [[3, 1, 0], [2, 4, 0], [0, 0, 0]]
    f1_0 = 2 * 3 / (2 * 3 + 2 + 1)  # TP 3, FP 2 (actual 1 predicted 0), FN 1
    f1_1 = 2 * 4 / (2 * 4 + 1 + 2)
    assert macro_f1(matrix) == pytest.approx((f1_0 + f1_1) / 2)
    assert macro_f1([[0, 5], [0, 5]]) == pytest.approx((0 + 2 * 5 / (10 + 5)) / 2)  # a class never hit
    assert math.isnan(macro_f1([]))
    labels = [1.0, 2.0, 3.0, 4.0, float("nan")]  # variance 1.25 over the finite labels
    assert r_squared(0.25, labels) == pytest.approx(0.8)
    assert r_squared(1.25, labels) == pytest.approx(0.0)  # no better than the mean
    assert math.isnan(r_squared(0.1, [2.0, 2.0]))  # no spread: undefined
