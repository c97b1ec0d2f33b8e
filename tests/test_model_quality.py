"""The model-quality benchmark (``benchmarks/model_quality.py``): its arithmetic, one small table end to end
in the default tier, and the issue's bar on every table in the ``quality`` tier (``pytest -m quality``).

The end-to-end test runs the real default pipeline on penguins and compares the served model with the
trivial predictor and LogisticRegression through the same paired bootstrap the README table uses: it
fails when the pipeline, the split reading or the serving call breaks, when the default model stops
beating the train class frequencies beyond the interval, or falls behind the linear model beyond it.
"""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import model_quality as mq


def test_paired_bootstrap_tells_a_tie_from_a_difference():
    rng = np.random.default_rng(1)
    base = rng.exponential(1.0, 500)
    same = mq.paired_bootstrap(base, base + rng.normal(0, 0.01, 500), resamples=500)
    assert same[1] < 0 < same[2] and mq.verdict(same[1], same[2]) == "tie"
    worse = mq.paired_bootstrap(base + 0.5, base, resamples=500)
    assert worse[0] == pytest.approx(0.5) and mq.verdict(worse[1], worse[2]) == "worse"
    better = mq.paired_bootstrap(base, base + 0.5, resamples=500)
    assert mq.verdict(better[1], better[2]) == "better"


def test_row_losses():
    y, pred = np.array([1.0, 2.0, 4.0]), np.array([1.5, 2.0, 1.0])
    assert mq.row_losses("regression", y, pred, []).tolist() == [0.5, 0.0, 3.0]
    proba = np.array([[0.9, 0.1], [0.0, 1.0]])
    loss = mq.row_losses("classification", ["a", "a"], proba, ["a", "b"])
    assert loss[0] == pytest.approx(-np.log(0.9)) and loss[1] == pytest.approx(-np.log(mq.EPS))


def test_served_scores_follow_the_benchmarks_class_order():
    outputs = {
        "classes": np.array([[b"yes", b"no"]] * 2),
        "scores": np.array([[0.8, 0.2], [0.3, 0.7]]),
    }
    assert mq.default_probabilities(outputs, ["no", "yes"]).tolist() == [[0.2, 0.8], [0.7, 0.3]]
    assert mq.label_text([2.0, 0.0, "Adelie"]) == ["2", "0", "Adelie"]


def _check_not_worse(result: dict, against: list[str]) -> None:
    assert "error" not in result, result.get("error")
    assert result["model"] == "pushed", "evaluate did not bless the default model"
    worse = {
        name: (ref["diff"], ref["low"], ref["high"])
        for name, ref in result["references"].items()
        if name in against and ref["verdict"] == "worse"
    }
    assert not worse, f"{result['table']}: the default is worse than {worse} ({result['headline']})"


@pytest.mark.e2e
def test_penguins_end_to_end_beats_the_trivial_predictor(tmp_path):
    result = mq.evaluate_table(mq.TABLES["penguins"], tmp_path, resamples=1000)
    assert result["rows"]["train"] + result["rows"]["eval"] == 344  # every penguin, in the pipeline's split
    assert result["headline"] == "log loss"
    [trivial] = [name for name in result["references"] if name.startswith("trivial")]
    # Measured: log loss 0.009 vs LogisticRegression's 0.035 (better); one training step gives 0.24, worse.
    _check_not_worse(result, [trivial, "LogisticRegression"])
    assert result["references"][trivial]["verdict"] == "better", result["references"][trivial]
    assert result["default"]["accuracy"] > 0.9, result["default"]


@pytest.mark.quality
@pytest.mark.slow
@pytest.mark.parametrize("table", [t for t in mq.DEFAULT_TABLES if t != "penguins"])
def test_default_is_not_worse_than_any_default_learner(tmp_path, table):
    """Issue 20's bar: on every table the default's headline metric is not worse than the best default
    reference beyond the bootstrap interval (fails today on cars, adult and diabetes)."""
    if table == "insurance" and not mq.INSURANCE_CSV.exists():
        pytest.skip(f"{mq.INSURANCE_CSV} is not here")
    result = mq.evaluate_table(mq.TABLES[table], tmp_path)
    _check_not_worse(result, list(result["references"]))
