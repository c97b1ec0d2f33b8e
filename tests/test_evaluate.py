"""Evaluate: TFMA metrics and slices, thresholds as configuration, the blessing, the report.

The second-run test chains the real gate stages: evaluate (first run, no baseline) -> push ->
resolve-baseline -> evaluate a worse candidate against that baseline -> push refuses it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import examples_from_csv
from kfp import dsl
from model_factory import model_artifact, save_wrong_contract_model, trained_models

from components import defaults, names
from components.errors import StageError
from components.evaluate import evaluate
from components.lib import registry
from components.lib.evaluate import NO_THRESHOLDS, load_thresholds
from components.push import push
from components.resolve_baseline import resolve_baseline

OUTPUTS = {"evaluation": dsl.Artifact, "blessing": dsl.Artifact, "metrics": dsl.Metrics, "report": dsl.HTML}


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> dict[str, Path]:
    return trained_models(tmp_path_factory)


def run_evaluate(
    kfp_dir: Path, examples: dsl.Dataset, model: dsl.Model, baseline: dsl.Model | None = None, **params
) -> dict[str, dsl.Artifact]:
    """Call the component as the pipeline does; returns its output artifacts."""
    kfp_dir.mkdir(parents=True, exist_ok=True)
    if baseline is None:  # what resolve-baseline outputs on a first run
        baseline = dsl.Model(
            name="baseline",
            uri=str(kfp_dir / "baseline"),
            metadata={"found": False, "reason": names.NO_BASELINE},
        )
    outs = {k: cls(name=k, uri=str(kfp_dir / k), metadata={}) for k, cls in OUTPUTS.items()}
    args = dict(
        storage_root=str(kfp_dir),
        label=names.LABEL,
        slice_feature=names.SLICE_FEATURE,
        mae_threshold=defaults.MAE_UPPER_BOUND,
        thresholds_file="",
        beam_args=defaults.BEAM_ARGS,
        max_relative_degradation=defaults.MAX_RELATIVE_DEGRADATION,
    )
    args.update(params)
    evaluate.python_func(examples=examples, model=model, baseline=baseline, **args, **outs)
    return outs


def blessing_of(outs: dict[str, dsl.Artifact]) -> dict:
    return json.loads(Path(outs["blessing"].path, names.BLESSING_FILE).read_text())


def eval_result_dir(outs: dict[str, dsl.Artifact]) -> str:
    return str(Path(outs["evaluation"].path) / names.EVAL_RESULT_DIR)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("evaluate")


@pytest.fixture(scope="module")
def first_run(work, examples, trained):
    """Run 1: the good model, no baseline, the reference thresholds."""
    return run_evaluate(work / "run1", examples, model_artifact(trained["good"], work / "run1"))


def reference_mae(examples: dsl.Dataset, train_dir: Path) -> tuple[float, int]:
    """MAE computed without TFMA: the SavedModel called directly on the eval split."""
    import numpy as np
    import tensorflow as tf

    split = Path(examples.metadata[names.META_STORAGE_PATH]) / names.split_dir(names.EVAL)
    records = [r.numpy() for r in tf.data.TFRecordDataset([str(p) for p in split.glob("*.gz")], "GZIP")]
    serve = tf.saved_model.load(str(train_dir / names.MODEL_SERVING_DIR)).signatures[names.SERVING_SIGNATURE]
    pred = serve(examples=tf.constant(records))[names.PREDICTIONS_KEY].numpy().ravel()
    label = np.array(
        [tf.train.Example.FromString(r).features.feature[names.LABEL].float_list.value[0] for r in records]
    )
    return float(np.mean(np.abs(pred - label))), len(records)


def test_first_run_is_blessed_by_the_absolute_threshold_alone(first_run, examples, trained):
    b = blessing_of(first_run)
    assert b["verdict"] == names.BLESSED and b["validation_ok"] is True
    assert b["baseline"] is None and b["baseline_metrics"] is None
    assert b["reasons"][0].startswith("overall MAE") and "<= upper bound 8,000" in b["reasons"][0]
    assert any(r.startswith(names.NO_BASELINE) for r in b["reasons"])
    assert b["thresholds"] == {
        "mae_threshold": 8000.0,
        "max_relative_degradation": 0.05,
        "source": "parameters",
    }
    assert b["model_path"] == str(trained["good"] / names.MODEL_SERVING_DIR)
    assert first_run["blessing"].metadata["blessed"] == 1
    assert first_run["blessing"].metadata["verdict"] == names.BLESSED

    mae, rows = reference_mae(examples, trained["good"])
    assert rows == examples.metadata[names.META_ROWS][names.EVAL]
    assert b["metrics"]["example_count"] == rows
    assert b["metrics"]["mae"] == pytest.approx(mae, rel=1e-4)
    assert mae < 3000  # the good formula model; far under the 8,000 gate


def test_tfma_reads_back_the_result_with_slices(first_run, examples):
    import tensorflow_model_analysis as tfma

    path = eval_result_dir(first_run)
    # one model: TFMA drops model names from its keys, so the result loads without model_name
    assert first_run["evaluation"].metadata["tfma_candidate_model_name"] == ""
    result = tfma.load_eval_result(path)
    slices = {s: m[""][""] for s, m in result.slicing_metrics}
    assert set(slices) == {(), (("smoker", "no"),), (("smoker", "yes"),)}
    counts = {s: m["example_count"]["doubleValue"] for s, m in slices.items()}
    assert counts[()] == examples.metadata[names.META_ROWS][names.EVAL]
    assert counts[(("smoker", "no"),)] + counts[(("smoker", "yes"),)] == counts[()]
    for m in slices.values():
        assert {"mean_squared_error", "mean_absolute_error"} <= set(m)
    validation = tfma.load_validation_result(path)
    assert validation.validation_ok


def test_metrics_and_summary(first_run):
    logged = first_run["metrics"].metadata
    assert set(logged) == {"example_count", "mse", "mae", "rmse"}  # no baseline_mae without a baseline
    assert logged["rmse"] == pytest.approx(logged["mse"] ** 0.5)
    summary = json.loads(Path(first_run["evaluation"].path, "summary.json").read_text())
    assert set(summary["slices"]) == {"Overall", "smoker=no", "smoker=yes"}
    assert first_run["evaluation"].metadata["eval_result"] == eval_result_dir(first_run)


def test_report_is_self_contained_html(first_run):
    page = Path(first_run["report"].path).read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    for external in ("<script", "<link", "http://", "https://", "src=", "@import", "url("):
        assert external not in page
    for text in (names.BLESSED, "smoker=yes", "smoker=no", "Overall", names.NO_BASELINE, "<svg"):
        assert text in page


@pytest.fixture(scope="module")
def second_run(work, examples, trained, first_run):
    """Push run 1's model, resolve it as the baseline, evaluate a worse candidate against it."""
    storage = work / "storage"
    pushed = dsl.Model(name="pushed", uri=str(work / "run1" / "pushed"), metadata={})
    push.python_func(
        model=model_artifact(trained["good"], work / "run1"),
        blessing=first_run["blessing"],
        examples=examples,
        storage_root=str(storage),
        run_id="run-1",
        model_name=names.MODEL_NAME,
        serving_root=names.SERVING_DIR,
        pushed_model=pushed,
    )
    assert pushed.metadata["pushed"] == 1
    baseline = dsl.Model(name="baseline", uri=str(work / "run2" / "baseline"), metadata={})
    resolve_baseline.python_func(storage_root=str(storage), model_name=names.MODEL_NAME, baseline=baseline)
    assert baseline.metadata["found"] is True and baseline.metadata["version"] == 1
    candidate = model_artifact(trained["worse"], work / "run2")
    outs = run_evaluate(work / "run2", examples, candidate, baseline)
    return {"outs": outs, "storage": storage, "candidate": candidate, "baseline": baseline}


def test_worse_candidate_fails_the_change_threshold(second_run, first_run):
    b = blessing_of(second_run["outs"])
    assert b["verdict"] == names.NOT_BLESSED and second_run["outs"]["blessing"].metadata["blessed"] == 0
    assert b["baseline"] == 1
    assert b["baseline_model_path"] == second_run["baseline"].metadata["model_path"]
    first = b["reasons"][0]
    assert first.startswith("mean_absolute_error is +") and "against baseline version 1" in first
    assert "at most +5.0% is allowed" in first
    assert any(r.startswith("overall MAE") for r in b["reasons"])  # the absolute gate passed
    # the baseline's MAE in this run is run 1's MAE (same model, same data)
    assert b["baseline_metrics"]["mae"] == pytest.approx(blessing_of(first_run)["metrics"]["mae"], rel=1e-6)
    assert b["metrics"]["mae"] > 1.05 * b["baseline_metrics"]["mae"]
    logged = second_run["outs"]["metrics"].metadata
    assert logged["baseline_mae"] == pytest.approx(b["baseline_metrics"]["mae"])


def test_tfma_result_holds_both_models_and_the_change_failure(second_run):
    import tensorflow_model_analysis as tfma

    path = eval_result_dir(second_run["outs"])
    assert second_run["outs"]["evaluation"].metadata["tfma_candidate_model_name"] == "candidate"
    for model in ("candidate", "baseline"):
        result = tfma.load_eval_result(path, model_name=model)
        assert len(result.slicing_metrics) == 3
    validation = tfma.load_validation_result(path)
    assert not validation.validation_ok
    [failure] = [f for s in validation.metric_validations_per_slice for f in s.failures]
    assert failure.metric_key.name == "mean_absolute_error" and failure.metric_key.is_diff
    assert failure.metric_threshold.change_threshold.relative.value == pytest.approx(0.05)


def test_report_compares_candidate_and_baseline(second_run):
    page = Path(second_run["outs"]["report"].path).read_text()
    assert names.NOT_BLESSED in page and "baseline MAE" in page and "version 1" in page


def test_not_blessed_candidate_is_not_pushed(second_run, examples, work):
    storage = second_run["storage"]
    before = registry.index_path(storage).read_bytes()
    out = dsl.Model(name="pushed2", uri=str(work / "run2" / "pushed"), metadata={})
    push.python_func(
        model=second_run["candidate"],
        blessing=second_run["outs"]["blessing"],
        examples=examples,
        storage_root=str(storage),
        run_id="run-2",
        model_name=names.MODEL_NAME,
        serving_root=names.SERVING_DIR,
        pushed_model=out,
    )
    assert out.metadata["pushed"] == 0
    assert out.metadata["reason"].startswith("not blessed: mean_absolute_error")
    assert registry.index_path(storage).read_bytes() == before
    assert sorted(p.name for p in (storage / names.SERVING_DIR / names.MODEL_NAME).iterdir()) == ["1"]


def test_no_thresholds_configured_blesses_with_an_explicit_reason(work, examples, trained):
    outs = run_evaluate(
        work / "nothr",
        examples,
        model_artifact(trained["zero"], work / "nothr"),
        mae_threshold=-1.0,
        max_relative_degradation=-1.0,
    )
    b = blessing_of(outs)
    assert b["verdict"] == names.BLESSED and NO_THRESHOLDS in b["reasons"]
    assert b["thresholds"]["mae_threshold"] is None and b["thresholds"]["max_relative_degradation"] is None
    assert b["metrics"]["mae"] > 8000  # the zero model would have failed the default gate
    assert b["validation_ok"] is False  # TFMA itself says "missing thresholds"; our rule blesses
    assert NO_THRESHOLDS in Path(outs["report"].path).read_text()


def test_bad_model_fails_the_absolute_threshold(work, examples, trained):
    model = model_artifact(trained["zero"], work / "zero")
    outs = run_evaluate(work / "zero", examples, model, slice_feature="")
    b = blessing_of(outs)
    assert b["verdict"] == names.NOT_BLESSED
    assert b["reasons"][0].startswith("overall mean_absolute_error")
    assert "above the upper bound 8,000" in b["reasons"][0]
    summary = json.loads(Path(outs["evaluation"].path, "summary.json").read_text())
    assert set(summary["slices"]) == {"Overall"}  # empty slice feature: overall only


def test_thresholds_file_overrides_the_parameters(work, examples, trained):
    storage = work / "thr"
    (storage / "config").mkdir(parents=True)
    (storage / "config" / "gates.yaml").write_text("mae_threshold: 20000\nmax_relative_degradation: null\n")
    outs = run_evaluate(
        storage, examples, model_artifact(trained["zero"], storage), thresholds_file="config/gates.yaml"
    )  # relative to the storage root
    b = blessing_of(outs)
    assert b["verdict"] == names.BLESSED and b["reasons"][0].endswith("<= upper bound 20,000")
    assert b["thresholds"] == {
        "mae_threshold": 20000.0,
        "max_relative_degradation": None,
        "source": str(storage / "config" / "gates.yaml"),
    }


def test_real_dataset_through_example_gen_and_tfma(insurance_csv, tmp_path, trained):
    """The real 1,338 rows: ~450 eval rows, the reference workload's evaluate input."""

    examples = examples_from_csv(tmp_path, insurance_csv, "real")
    outs = run_evaluate(tmp_path / "run", examples, model_artifact(trained["good"], tmp_path / "kfp"))
    b = blessing_of(outs)
    rows = examples.metadata[names.META_ROWS][names.EVAL]
    assert 400 < rows < 500 and b["metrics"]["example_count"] == rows
    assert b["verdict"] == names.BLESSED and b["metrics"]["mae"] < defaults.MAE_UPPER_BOUND
    summary = json.loads(Path(outs["evaluation"].path, "summary.json").read_text())
    assert set(summary["slices"]) == {"Overall", "smoker=no", "smoker=yes"}
    assert outs["evaluation"].metadata["tfma_seconds"] < 60


def test_the_train_stages_model_gets_the_trainers_own_eval_mae(
    tmp_path, storage_root, examples, synthetic_csv
):
    """The real contract: the train stage's Keras SavedModel (transform inside), evaluated by TFMA,
    has the MAE the trainer measured on the same eval split. The training run is shared with
    test_train and test_serving (~20 s when this test runs alone)."""
    from test_train import trained_model  # the session's one short training run, shared with test_train

    model, train_metrics, _ = trained_model(storage_root, examples, synthetic_csv)
    outs = run_evaluate(tmp_path, examples, model, mae_threshold=-1.0)
    b = blessing_of(outs)
    assert b["metrics"]["example_count"] == train_metrics.metadata["eval_examples"]
    assert b["metrics"]["mae"] == pytest.approx(train_metrics.metadata["eval_mae"], rel=1e-5)
    assert b["verdict"] == names.BLESSED  # only the change threshold is set, and there is no baseline
    assert f"{NO_THRESHOLDS} that apply: the change threshold needs a baseline" in b["reasons"]


# --- Configuration and bad input: no TFMA run needed -------------------------------------------


def test_thresholds_from_parameters_and_files(tmp_path):
    t = load_thresholds(8000.0, 0.05, "", str(tmp_path))
    assert (t.mae_threshold, t.max_relative_degradation, t.source) == (8000.0, 0.05, "parameters")
    t = load_thresholds(-1.0, -0.5, "", str(tmp_path))
    assert (t.mae_threshold, t.max_relative_degradation) == (None, None)
    f = tmp_path / "t.json"
    f.write_text('{"max_relative_degradation": 0.1}')  # keys absent from the file keep the parameter value
    t = load_thresholds(8000.0, 0.05, str(f), "/elsewhere")
    assert (t.mae_threshold, t.max_relative_degradation, t.source) == (8000.0, 0.1, str(f))
    f.write_text('{"mae_threshold": -1}')
    assert load_thresholds(8000.0, 0.05, str(f), "").mae_threshold is None


@pytest.mark.parametrize(
    "name, content, problem",
    [
        ("t.json", '{"mae_treshold": 5000}', "unknown threshold key(s) ['mae_treshold']"),
        ("t.json", "{oops", "not valid JSON/YAML"),
        ("t.yaml", "a: [1,", "not valid JSON/YAML"),
        ("t.yaml", "- 1\n- 2\n", "must be a mapping"),
        ("t.yaml", "mae_threshold: lots\n", "must be a number or null"),
        ("t.yaml", "mae_threshold: .nan\n", "NaN"),
    ],
)
def test_bad_thresholds_file_is_a_stage_error(tmp_path, name, content, problem):
    f = tmp_path / name
    f.write_text(content)
    with pytest.raises(StageError) as err:
        load_thresholds(8000.0, 0.05, name, str(tmp_path))
    assert str(err.value).startswith(f"[{names.STAGE_EVALUATE}] {f}:") and problem in str(err.value)


def test_missing_thresholds_file_is_a_stage_error(tmp_path):
    with pytest.raises(StageError, match="cannot read the thresholds file"):
        load_thresholds(8000.0, 0.05, "absent.yaml", str(tmp_path))


@pytest.mark.parametrize(
    "params, problem",
    [
        ({"label": "price"}, "label 'price' is not in the eval examples"),
        ({"slice_feature": "country"}, "slice feature 'country' is not in the eval examples"),
    ],
)
def test_label_or_slice_feature_missing_from_data(tmp_path, examples, trained, params, problem):
    with pytest.raises(StageError, match=problem):
        run_evaluate(tmp_path, examples, model_artifact(trained["good"], tmp_path), **params)


def test_baseline_marked_found_without_a_path_is_a_stage_error(tmp_path, examples, trained):
    baseline = dsl.Model(name="baseline", uri=str(tmp_path / "baseline"), metadata={"found": True})
    with pytest.raises(StageError, match="baseline is marked found but has no model_path"):
        run_evaluate(tmp_path, examples, model_artifact(trained["good"], tmp_path), baseline)


def test_candidate_without_the_serving_contract_is_a_stage_error(tmp_path, examples):
    train_dir = tmp_path / "train"
    (train_dir / names.MODEL_SERVING_DIR).mkdir(parents=True)
    with pytest.raises(StageError, match="saved_model.pb is missing"):
        run_evaluate(tmp_path / "a", examples, model_artifact(train_dir, tmp_path))
    save_wrong_contract_model(train_dir / names.MODEL_SERVING_DIR)
    with pytest.raises(StageError, match="must take one string input 'examples'"):
        run_evaluate(tmp_path / "b", examples, model_artifact(train_dir, tmp_path, name="m2"))
