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
