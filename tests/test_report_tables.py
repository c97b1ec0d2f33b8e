"""The statistics and validate reports on tables unlike insurance: the cars shape and a tiny table.

Seen on public tables (issue 24): cars' ``Cylinders`` (3, 4, 5, 6, 8) flagged "a bin's share
differs by 53.2 points" where the shares were 53.2 % and 47.5 % (each split on its own bin
edges); years printed "2,007"; 3 eval rows (linnerud) giving 6 red ERRORs that said "retrain on
recent data" beside "stops the run: no". The tables here have those shapes, their statistics
are TFDV's own (``generate_statistics_from_dataframe``) and the validation is the stage's
(``validate.validate``). The browser test renders both reports at 1,000 and 1,920 px: nothing
wider than the window, nothing cut inside a box that scrolls, no chart text under 10 px.
"""

from __future__ import annotations

import html
import json
import re

import numpy as np
import pandas as pd
import pytest

CYLINDERS = (3, 4, 5, 6, 8)
LABEL = "MPG"


def cars_frame(rows: int, share_of_4: float, seed: int, first_year: int = 1970) -> pd.DataFrame:
    """A cars-shaped table: few-valued ``Cylinders``, ``Year``, a name per car, label ``MPG``."""
    rng = np.random.default_rng(seed)
    p = [0.01, share_of_4, 0.01, 0.21, 0.77 - share_of_4]
    cylinders = rng.choice(CYLINDERS, rows, p=p)
    weight = (1600 + 450 * cylinders + rng.normal(0, 250, rows)).round().astype(int)
    return pd.DataFrame(
        {
            "Name": [f"car {seed}-{i}" for i in range(rows)],
            "Cylinders": cylinders,
            "Year": rng.integers(first_year, first_year + 13, rows),
            "Weight": weight,
            "Horsepower": (30 + 18 * cylinders + rng.normal(0, 12, rows)).round(1),
            "Origin": rng.choice(["USA", "Europe", "Japan"], rows, p=[0.62, 0.18, 0.2]),
            LABEL: (55 - 0.006 * weight + rng.normal(0, 3, rows)).round(1),
        }
    )


def linnerud_frame(rows: int, seed: int) -> pd.DataFrame:
    """linnerud's shape: three exercises and three body measures, all integers, a handful of rows."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "Chins": rng.integers(1, 18, rows),
            "Situps": rng.integers(50, 251, rows),
            "Jumps": rng.integers(25, 251, rows),
            "Weight": rng.integers(138, 248, rows),
            "Waist": rng.integers(31, 47, rows),
            "Pulse": rng.integers(46, 75, rows),
        }
    )


def statistics_of(**frames: pd.DataFrame) -> dict:
    import tensorflow_data_validation as tfdv

    return {split: tfdv.generate_statistics_from_dataframe(frame) for split, frame in frames.items()}


@pytest.fixture(scope="module")
def cars() -> dict:
    # Train: 53.2 % four-cylinder cars; eval: 47.5 % and no 3-cylinder car, so its own bins differ.
    train = cars_frame(318, 0.532, seed=1)
    evaluation = cars_frame(80, 0.475, seed=2)
    evaluation = evaluation[evaluation.Cylinders != 3].reset_index(drop=True)
    return statistics_of(train=train, eval=evaluation)


@pytest.fixture(scope="module")
def tiny() -> dict:
    return statistics_of(train=linnerud_frame(17, seed=3), eval=linnerud_frame(3, seed=4))


def card_of(page: str, feature: str) -> str:
    start = page.index(f'id="s-{feature.lower()}"')
    return page[start:].split('<div class="card', 1)[0]


def test_a_few_valued_integer_is_drawn_as_categories_on_shared_values(cars):
    from components.lib.distributions import shared_bins
    from components.lib.statistics_io import feature_name

    features = {
        s: next(f for f in st.datasets[0].features if feature_name(f) == "Cylinders")
        for s, st in cars.items()
    }
    shared = shared_bins(features)
    assert shared is not None and shared.kind == "values"
    assert shared.labels == ["3", "4", "5", "6", "8"]
    truth = cars_frame(318, 0.532, seed=1).Cylinders.value_counts()
    assert shared.counts["train"] == pytest.approx(
        [truth[v] for v in CYLINDERS], abs=0.6
    )  # the sketch's rounding
    assert shared.counts["eval"][0] == pytest.approx(0, abs=0.5)  # no 3-cylinder car in eval
    assert shared.percent("train")[1] == pytest.approx(100 * truth[4] / 318, abs=0.2)


def test_statistics_report_flags_nothing_false_on_shared_bins(cars):
    from components.lib.statistics_report import render_report

    page = render_report(cars, label=LABEL)
    cylinders = card_of(page, "Cylinders")
    assert "splits differ" not in cylinders  # 53.2 % vs 47.5 %: neither 10 points nor beyond noise
    assert "<svg" in cylinders and ">4<" in cylinders  # bars per value, labelled 4
    year = card_of(page, "Year")
    assert "1,97" not in year and "2,0" not in year and "1970" in year  # years without separators
    assert "4,0" in card_of(page, "Weight") or "3,9" in card_of(page, "Weight")  # amounts keep them
    assert "identifier-like" in card_of(page, "Name")
    label_row = re.search(
        r"<tr[^>]*><td><a href=\"#s-mpg\">MPG</a> <span class=\"badge label\">label</span>", page
    )
    assert label_row, "the label is marked in the overview"
    assert 'class="sortable"' in page and 'data-filter="features"' in page
    assert "<details" in cylinders  # each feature's card opens and closes (the drill-down)


def test_statistics_report_still_flags_a_real_difference():
    from components.lib.statistics_report import render_report

    train = cars_frame(400, 0.55, seed=5)
    evaluation = cars_frame(400, 0.2, seed=6)
    page = render_report(statistics_of(train=train, eval=evaluation))
    assert re.search(r"splits differ: 4 is 5\d\.\d % of train, 2\d\.\d % of eval", card_of(page, "Cylinders"))


def test_three_eval_rows_are_noise_not_errors(tiny):
    import tensorflow_data_validation as tfdv

    from components.lib.validate import validate
    from components.lib.validate.report import render_html

    schema = tfdv.infer_schema(tiny["train"])
    result = validate(
        tiny["train"],
        tiny["eval"],
        schema,
        fail_on="any",
        skew_threshold=0.1,
        drift_threshold=0.1,
        label="Pulse",
    )
    skewed = [c for c in result.comparisons if c.kind == "skew" and c.exceeded]
    assert len(skewed) >= 4  # TFDV's figures are over the threshold: 3 rows lie far from 17 by chance
    assert {f.severity for f in result.findings} == {"INFO"}
    assert result.verdict == "ok" and result.error() is None  # even under fail_on=any: noise is no anomaly
    page = render_html(result, label="Pulse")
    assert '<span class="badge bad">ERROR</span>' not in page and "retrain" not in page
    assert "what 3 rows against 17 give by chance" in page


def validate_cars(cars: dict, served: dict | None = None):
    import tensorflow_data_validation as tfdv

    from components.lib.validate import validate
    from components.lib.validate.drift import DriftReference

    reference = (
        DriftReference(
            served, "the train split of cars v1, the served model (run r1)", version=1, run_id="r1"
        )
        if served is not None
        else None
    )
    schema = tfdv.infer_schema(cars["train"])
    return validate(
        cars["train"],
        cars["eval"],
        schema,
        fail_on="unsafe",
        skew_threshold=0.1,
        drift_threshold=0.1,
        reference=reference,
        label=LABEL,
    )


@pytest.fixture(scope="module")
def served_cars() -> dict:
    """The served model's training data: cars of five years earlier, more of them four-cylinder."""
    return statistics_of(train=cars_frame(300, 0.6, seed=7, first_year=1965))["train"]


def test_drift_is_drawn_as_two_distributions_with_drift_advice(cars, served_cars):
    from components.lib.validate.report import render_html

    result = validate_cars(cars, served_cars)
    year = next(f for f in result.findings if f.feature == "Year")
    assert year.severity == "WARNING" and year.fix.startswith("Drift: this run's training data moved")
    cylinders = next(f for f in result.findings if f.feature == "Cylinders")  # TFDV's JS of 3, 4, 5, 6, 8
    assert cylinders.severity == "INFO" and cylinders.fix.startswith("Nothing to do")
    page = render_html(result, label=LABEL)
    drift = page[page.index("Drift: this run") :]
    assert "Over the threshold, served model&#x27;s train against this run&#x27;s train:" in drift
    assert 'aria-label="Year: served model&#x27;s train and this run&#x27;s train"' in drift
    assert "1,9" not in drift  # years without separators on the axis


def test_skew_advice_differs_from_drift_advice():
    from components.lib.validate.report import render_html

    skewed = statistics_of(train=cars_frame(400, 0.55, seed=5), eval=cars_frame(400, 0.2, seed=6))
    result = validate_cars(skewed)
    cylinders = next(f for f in result.findings if f.feature == "Cylinders")
    assert cylinders.severity == "WARNING" and cylinders.fix.startswith("Skew: this run's eval split differs")
    assert "Drift:" not in render_html(result, label=LABEL)


def test_identical_data_draws_no_all_zero_chart(cars):
    from components.lib.validate.report import render_html

    page = render_html(validate_cars(cars, cars["train"]), label=LABEL)
    drift = page[page.index("Drift: this run") :]
    assert "Every distance is 0: the distributions are identical." in drift and "<svg" not in drift


@pytest.mark.parametrize("width", (1000, 1920))
def test_the_reports_of_these_tables_lay_out_within_the_page(cars, tiny, served_cars, width, tmp_path):
    """Nothing wider than the window, nothing cut in a scrolling box, chart text >= 10 px; screenshots."""
    import tensorflow_data_validation as tfdv
    from test_reports import SCREENSHOTS, check_layout, find_browser

    from components.lib.statistics_report import render_report
    from components.lib.validate import validate
    from components.lib.validate.report import render_html

    browser = find_browser()
    if browser is None:
        pytest.skip("no headless browser on PATH; tests/browser_tools.sh installs one")
    schema = tfdv.infer_schema(tiny["train"])
    tiny_result = validate(
        tiny["train"], tiny["eval"], schema, fail_on="unsafe", skew_threshold=0.1, drift_threshold=0.1
    )
    pages = {
        "statistics_cars": render_report(cars, label=LABEL, run_id="cars"),
        "statistics_tiny": render_report(tiny, label="Pulse", run_id="tiny"),
        "validate_cars": render_html(validate_cars(cars, served_cars), label=LABEL, run_id="cars"),
        "validate_tiny": render_html(tiny_result, label="Pulse", run_id="tiny"),
    }
    for name, text in pages.items():
        page = tmp_path / f"{name}.html"
        page.write_text(text, encoding="utf-8")
        check_layout(browser, page, width, tmp_path / name, SCREENSHOTS / f"{name}_{width}.png")


# --- The evaluate report of a binary and a multiclass classifier, a cars regression, a tiny table. ---
BINARY = ("no", "yes")
IRIS = ("setosa", "versicolor", "virginica")  # the size classifier never predicts the middle class
SHARE_CHARTS = re.compile(r"accuracy|auc|precision|recall|ROC|calibration", re.IGNORECASE)
ERROR_CHARTS = re.compile(r"loss|mae|mse|error", re.IGNORECASE)


@pytest.fixture(scope="module")
def evaluate_pages(tmp_path_factory) -> dict[str, tuple[str, object]]:
    """{case: (the evaluate report's HTML, its train directory)}."""
    from report_factory import classifier_report, regression_report

    tmp = tmp_path_factory.mktemp("evaluate")
    cars_train, cars_eval = cars_frame(318, 0.532, seed=1), cars_frame(80, 0.475, seed=2)
    tiny_train, tiny_eval = linnerud_frame(17, seed=3), linnerud_frame(6, seed=4)
    return {
        "binary": classifier_report(tmp / "binary", BINARY, baseline=True),
        "multiclass": classifier_report(tmp / "multiclass", IRIS, baseline=False),
        "cars": regression_report(
            tmp / "cars",
            cars_train,
            cars_eval,
            LABEL,
            {"Weight": "int"},
            lambda f: 55.0 - 0.006 * f["Weight"],
            slice_feature="Cylinders",
            model_name="cars",
        ),
        "tiny": regression_report(
            tmp / "tiny",
            tiny_train,
            tiny_eval,
            "Pulse",
            {"Weight": "int"},
            lambda f: 60.0 + 0.02 * (f["Weight"] - 190.0),
            slice_feature="",
            model_name="linnerud",
        ),
    }


def section_of(page: str, anchor: str) -> str:
    start = page.index(f'id="{anchor}"')
    return page[start : page.index("</section>", start)]


def chart_ranges(page: str) -> list[tuple[str, list[float], list[float]]]:
    """(aria-label, x range, y range) of every chart with axes."""
    found = re.findall(r'aria-label="([^"]*)" data-x="([^"]*)" data-y="([^"]*)"', page)
    return [(label, [float(v) for v in x.split()], [float(v) for v in y.split()]) for label, x, y in found]


def assert_in_domain(label: str, x: list[float], y: list[float]) -> None:
    """Axes inside the metric's domain: shares in [0, 1], losses and errors from 0 up."""
    if label in ("ROC curve", "precision-recall curve", "calibration"):
        assert 0 <= x[0] < x[1] <= 1 and 0 <= y[0] < y[1] <= 1, (label, x, y)
    elif SHARE_CHARTS.search(label):
        axis = x if label.endswith("per slice") else y
        assert 0 <= axis[0] < axis[1] <= 1, (label, axis)
    elif ERROR_CHARTS.search(label) and "residual" not in label:
        axis = x if label.endswith("per slice") else y
        assert axis[0] >= 0, (label, axis)


@pytest.mark.parametrize("case", ["binary", "multiclass"])
def test_a_classifier_report_draws_its_eval_predictions(evaluate_pages, case):
    import numpy as np
    import pandas as pd
    from sklearn import metrics

    page, train_dir = evaluate_pages[case]
    classes = BINARY if case == "binary" else IRIS
    predictions = section_of(page, "predictions")
    assert "No eval predictions found" not in page
    for chart in ("confusion matrix", "ROC curve", "precision-recall curve", "calibration"):
        assert f'aria-label="{chart}"' in predictions
    # Each curve's area is scikit-learn's on the file train wrote (one against the rest).
    table = pd.read_csv(train_dir / "eval_predictions.csv")
    drawn = classes[1:] if case == "binary" else classes
    for c in drawn:
        auc = metrics.roc_auc_score(table["y"] == c, table[f"p_{c}"])
        ap = metrics.average_precision_score(table["y"] == c, table[f"p_{c}"])
        assert f"{html.escape(c)} (ROC AUC {auc:.3f})" in predictions
        assert f"{html.escape(c)} (AP {ap:.3f})" in predictions
    # The reliability diagram's mean gap: |observed share - mean probability| per bin of 0.1, by rows.
    right = table["y"] == classes[1] if case == "binary" else table["y"] == table["prediction"]
    score = table[f"p_{classes[1]}"] if case == "binary" else table[[f"p_{c}" for c in classes]].max(axis=1)
    bins = np.searchsorted(np.linspace(0, 1, 11)[1:-1], score)
    gap = sum(abs(right[bins == b].mean() - score[bins == b].mean()) * (bins == b).sum() for b in set(bins))
    assert f"Mean gap, weighted by rows: {gap / len(table):.3f}." in predictions
    roc = predictions[predictions.index('aria-label="ROC curve"') :].split("</svg>", 1)[0]
    assert roc.count("<polyline") == len(drawn)
    # The confusion matrix: counts and row shares, the same as scikit-learn's.
    matrix = metrics.confusion_matrix(table["y"], table["prediction"], labels=list(classes))
    for row in matrix:
        for n in row:
            share = f"{100 * n / row.sum():.1f} %"
            assert f">{n:,}</text>" in predictions and f">{share}</text>" in predictions


def test_no_table_cell_is_blank_and_a_class_never_predicted_says_so(evaluate_pages):
    for case, (page, _) in evaluate_pages.items():
        assert not re.search(r"<td[^>]*></td>", page), case
    page, _ = evaluate_pages["multiclass"]
    row = re.search(r"<tr><td>versicolor</td>(.*?)</tr>", section_of(page, "predictions"))
    assert row and '<td class="num">0</td><td class="num">— (never predicted)</td>' in row[1]
    tfma = re.search(r"<tr><td>versicolor</td>(.*?)</tr>", section_of(page, "metrics"))  # TFMA's NaN
    assert tfma and "— (never predicted)" in tfma[1]


def test_the_gates_shown_are_the_tasks(evaluate_pages):
    for case in ("binary", "multiclass"):
        verdict = section_of(evaluate_pages[case][0], "verdict")
        assert "<td>minimum accuracy (min_accuracy)</td><td>0.6</td>" in verdict
        assert "error rate (1 − accuracy) at least 10.0 % below the naive predictor&#x27;s" in verdict
        assert "MAE" not in verdict
    verdict = section_of(evaluate_pages["cars"][0], "verdict")
    assert "<td>MAE upper bound (mae_threshold)</td><td>not configured</td>" in verdict
    assert "accuracy" not in verdict


def test_training_curves_name_the_best_epoch_and_stay_in_their_domain(evaluate_pages):
    for page, train_dir in evaluate_pages.values():
        summary = json.loads((train_dir / "training_summary.json").read_text())
        best = summary["fit"]["best_epoch"]
        training = section_of(page, "training")
        assert f"Best epoch {best} by validation loss" in training and "lowest" not in training
        assert "best epoch</span>" in training and training.count("stroke-dasharray") >= 2  # marked
        ranges = chart_ranges(page)
        assert {label for label, _, _ in ranges} >= {"loss per epoch"}
        for label, x, y in ranges:
            assert_in_domain(label, x, y)


def test_a_regression_shows_residuals_binned_by_predicted_value(evaluate_pages):
    import numpy as np
    import pandas as pd

    from components.lib.evaluate.regression_views import residual_bins

    page, train_dir = evaluate_pages["cars"]
    assert 'aria-label="mean residual by predicted value"' in section_of(page, "predictions")
    table = pd.read_csv(train_dir / "eval_predictions.csv")
    predicted, residuals = table["prediction"].tolist(), (table["prediction"] - table[LABEL]).tolist()
    bins = residual_bins(predicted, residuals)
    assert len(bins) == 10 and sum(b[4] for b in bins) == len(table)
    order = np.argsort(predicted, kind="stable")
    start = 0
    for x, mean, low, high, n in bins:  # each bin: numpy's mean and percentiles of its rows
        rows = order[start : start + n]
        r = np.asarray(residuals)[rows]
        assert mean == pytest.approx(r.mean()) and x == pytest.approx(np.asarray(predicted)[rows].mean())
        assert (low, high) == pytest.approx((np.percentile(r, 10), np.percentile(r, 90)))
        start += n
    assert "Cylinders=4" in section_of(page, "slices")
    assert "NOT BLESSED" in section_of(evaluate_pages["tiny"][0], "verdict")
    assert "too little evidence: 6 eval examples" in evaluate_pages["tiny"][0]
    tiny = section_of(evaluate_pages["tiny"][0], "predictions")
    assert "all 6 eval rows shown" in tiny and "mean residual by predicted value" not in tiny
    assert "6 eval rows: too few to bin the residuals by predicted value (at least 10 needed)." in tiny


def test_years_and_ids_print_without_thousands_separators():
    from components.lib.evaluate.regression_views import label_format

    assert label_format("Year", [1970.0, 1982.0])(1975.0) == "1975"
    assert label_format("customer_id", [10234.0, 99021.0])(45000.0) == "45000"
    assert label_format("built", [1950.0, 1999.0])(1975.0) == "1975"  # whole numbers in 1000 .. 2999
    assert label_format("MPG", [10.5, 41.0])(1975.0) == "1,975"
    assert label_format("charges", [1121.0, 63770.0])(4000.0) == "4,000"


def test_the_evaluate_reports_lay_out_within_the_page(evaluate_pages, tmp_path):
    """At 1,000 px: nothing wider than the window or cut in a scrolling box, chart text >= 10 px, no
    blank cell, every chart's axes inside its metric's domain; screenshots into KUBETFX_SCREENSHOTS."""
    from test_reports import SCREENSHOTS, check_layout, find_browser

    browser = find_browser()
    if browser is None:
        pytest.skip("no headless browser on PATH; tests/browser_tools.sh installs one")
    for case, (text, _) in evaluate_pages.items():
        page = tmp_path / f"evaluate_{case}.html"
        page.write_text(text, encoding="utf-8")
        layout = check_layout(browser, page, 1000, tmp_path / case, SCREENSHOTS / f"evaluate_{case}_1000.png")
        assert not layout["blank"], f"{case}: blank table cells {layout['blank']}"
        assert layout["charts"], case
        for chart in layout["charts"]:
            assert_in_domain(chart["label"], chart["x"], chart["y"])


def test_an_axis_is_kept_inside_its_metrics_domain_and_the_check_sees_one_that_is_not():
    from components.lib import plots
    from components.lib.evaluate.training_views import metric_domain

    accuracy = [("validation", "#000", [(1.0, 0.93), (2.0, 0.99), (3.0, 1.0)])]
    loss = [("train", "#000", [(1.0, 0.02), (2.0, 0.001), (3.0, 0.0)])]
    for label, series in (("accuracy per epoch", accuracy), ("loss per epoch", loss)):
        free = chart_ranges(plots.line_chart(series, label=label))
        with pytest.raises(AssertionError):  # padded past the domain: accuracy > 1, loss < 0
            assert_in_domain(*free[0])
        key = label.split()[0]
        kept = chart_ranges(plots.line_chart(series, label=label, y_domain=metric_domain(key)))
        assert_in_domain(*kept[0])
    assert metric_domain("val_sparse_categorical_accuracy") == (0.0, 1.0)
    assert metric_domain("r2") == (float("-inf"), float("inf"))
