"""The three reports as users open them: real stages on small data, then a real headless browser.

One module fixture runs the stages whose reports users open — statistics and validate on
examples whose eval split holds an unseen category (a served model on the volume, so drift is
computed), tune (two trials), the session's short training run, and evaluate against a baseline
— then checks what each report says. ``test_reports_lay_out_within_the_page`` opens every report
in Chromium (Debian's ``chromium``, installed by ``tests/browser_tools.sh`` in CI) at 1,000 and
1,920 px, writes a full-page screenshot of each into ``reports_screenshots/`` at the repository
root (git-ignored; ``KUBETFX_SCREENSHOTS`` moves it), and checks that nothing is wider than the
window. Without a browser the test is skipped with the reason, except where
``KUBETFX_REQUIRE_BROWSER=1`` (CI) makes that a failure.
"""

from __future__ import annotations

import csv
import html
import io
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import REPO, examples_from_csv, run_component
from kfp import dsl
from model_factory import trained_models
from test_train import trained_model
from test_transform import transform_outputs
from test_tune import run_tune
from test_validate import serve_a_model

from components import defaults, names
from components.evaluate import evaluate
from components.lib.baseline import Baseline
from components.schema import schema
from components.statistics import statistics
from components.validate import validate

RUN = "reports"
WIDTHS = (1000, 1920)
REPORTS = (names.STAGE_STATISTICS, names.STAGE_VALIDATE, names.STAGE_EVALUATE)
SCREENSHOTS = Path(os.environ.get("KUBETFX_SCREENSHOTS") or REPO / "reports_screenshots")
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
BROWSER_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


def _mixed_examples(tmp: Path, examples: dsl.Dataset, synthetic_csv: Path) -> Path:
    """The session's train split, and an eval split in which every 20th row is from region 'atlantis'."""
    rows = list(csv.DictReader(io.StringIO(synthetic_csv.read_text())))
    rows = [dict(r, region="atlantis") if i % 20 == 0 else r for i, r in enumerate(rows)]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, list(names.COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    (tmp / "data").mkdir()
    source = tmp / "data" / "eval_source.csv"
    source.write_text(buf.getvalue())
    gen = examples_from_csv(tmp, source, "eval-source")
    mixed = tmp / "mixed_examples"
    for split, origin in ((names.TRAIN, examples), (names.EVAL, gen)):
        src = Path(origin.metadata[names.META_STORAGE_PATH]) / names.split_dir(split)
        shutil.copytree(src, mixed / names.split_dir(split))
    return mixed


@pytest.fixture(scope="module")
def reports(tmp_path_factory, storage_root, examples, synthetic_csv) -> dict[str, dict[str, dsl.Artifact]]:
    """Each stage's outputs on one volume, run ``reports``; the keys are the stage names."""
    vol = tmp_path_factory.mktemp("volume")
    kfp = vol / "kfp"
    mixed = _mixed_examples(tmp_path_factory.mktemp("mixed"), examples, synthetic_csv)
    ex = dsl.Dataset(
        name="examples", uri=str(kfp / "examples"), metadata={names.META_STORAGE_PATH: str(mixed)}
    )
    out: dict[str, dict[str, dsl.Artifact]] = {}
    out[names.STAGE_STATISTICS] = run_component(
        statistics, kfp / "statistics", examples=ex, storage_root=str(vol), run_id=RUN
    )
    stats = out[names.STAGE_STATISTICS]["statistics"]
    sch = run_component(
        schema, kfp / "schema", statistics=stats, label=names.LABEL, schema_file="", storage_root=str(vol)
    )["schema"]
    # Version 1 is served, trained on the session's (clean) train split: drift is computed.
    serve_a_model(vol, Path(stats.path) / names.split_dir(names.TRAIN) / names.STATS_FILE)
    out[names.STAGE_VALIDATE] = run_component(
        validate,
        kfp / "validate",
        statistics=stats,
        schema=sch,
        label=names.LABEL,
        fail_on=defaults.FAIL_ON,
        skew_threshold=defaults.SKEW_THRESHOLD,
        drift_threshold=defaults.DRIFT_THRESHOLD,
        storage_root=str(vol),
        run_id=RUN,
        model_name=names.MODEL_NAME,
    )
    transformed = transform_outputs(storage_root, examples, synthetic_csv)
    run_tune(vol, transformed, tmp_path_factory.mktemp("tune"), RUN, trials=2)
    model, _, _ = trained_model(storage_root, examples, synthetic_csv)
    good = trained_models(tmp_path_factory)["good"] / names.MODEL_SERVING_DIR
    served = Baseline(
        True, "latest blessed pushed version", names.MODEL_NAME, 1, str(good), run_id="served-run"
    )
    baseline = dsl.Model(name="baseline", uri=str(kfp / "baseline"), metadata=served.to_metadata())
    out[names.STAGE_EVALUATE] = run_component(
        evaluate,
        kfp / "evaluate",
        examples=examples,
        model=model,
        baseline=baseline,
        storage_root=str(vol),
        run_id=RUN,
        label=names.LABEL,
        slice_feature=names.SLICE_FEATURE,
        mae_threshold=defaults.MAE_UPPER_BOUND,
        max_relative_degradation=defaults.MAX_RELATIVE_DEGRADATION,
        thresholds_file="",
        beam_args=defaults.BEAM_ARGS,
        engine=defaults.EVALUATE_ENGINE,
    )
    return out


def page_of(reports: dict, stage: str) -> str:
    return Path(reports[stage]["report"].path).read_text(encoding="utf-8")


@pytest.mark.parametrize("stage", REPORTS)
def test_each_report_is_one_self_contained_html_file_on_the_volume(reports, stage):
    report = reports[stage]["report"]
    assert report.schema_title == dsl.HTML.schema_title  # what the KFP UI renders
    on_volume = Path(report.metadata[names.META_STORAGE_PATH])
    assert on_volume.name == names.REPORT_HTML_FILE
    assert on_volume.parent.parts[-3:] == (names.ARTIFACTS_DIR, RUN, stage)
    page = on_volume.read_text(encoding="utf-8")
    assert page == page_of(reports, stage)
    assert page.startswith("<!DOCTYPE html>") and 'name="viewport"' in page
    lowered = page.lower()
    for external in ("<script src", "<link", "http://", "https://", "src=", "@import", "url(", "<img"):
        assert external not in lowered, external
    assert lowered.count("<script") <= 1  # at most the one inline script (sorting, filtering)
    assert not re.search(r"\d\.\d+e[+-]\d", page), "numbers for people: no 6.377e+04"


def test_statistics_report_puts_the_splits_on_one_axis_and_flags_what_stands_out(reports):
    page = page_of(reports, names.STAGE_STATISTICS)
    card = page[page.index('id="s-bmi"') :].split('<div class="card', 1)[0]
    assert card.count("<svg") == 1  # train and eval overlaid in one chart: one x axis
    assert "<polyline" in card and "% of rows" in card  # eval's outline over train's bars
    for q in ("p10", "p25", "median", "p75", "p90"):
        assert f"<td>{q}</td>" in card
    assert "missing" in card and "zeros" in card
    # The eval split's new region is highlighted: a badge, an amber row, the list at the top.
    assert "values only in eval: atlantis" in page
    assert re.search(r'<tr class="warn"><td><a href="#s-region">region</a>', page)
    highlights = page[page.index('id="highlights"') : page.index('id="overview"')]
    assert "region" in highlights
    region = page[page.index('id="s-region"') :]
    assert "<code>atlantis</code>" in region.split('<div class="card', 1)[0]


def test_statistics_report_flags_what_stands_out_in_each_feature():
    import pandas as pd
    import tensorflow_data_validation as tfdv

    from components.lib.statistics_report import render_report

    n = 200
    train = pd.DataFrame(
        {
            "amount": [float(i) for i in range(n)],
            "constant": [1.0] * n,
            "colour": ["red"] * 150 + ["blue"] * 50,
            "gone": ["x", "y"] * (n // 2),
        }
    )
    evaluation = pd.DataFrame(
        {
            "amount": [float(i) if i % 10 else None for i in range(n)],  # 10 % missing
            "constant": [1.0] * n,
            "colour": ["red"] * 80 + ["blue"] * 100 + ["green"] * 20,  # shares moved, a new value
        }
    )
    stats = {
        names.TRAIN: tfdv.generate_statistics_from_dataframe(train),
        names.EVAL: tfdv.generate_statistics_from_dataframe(evaluation),
    }
    page = render_report(stats)

    def card(feature: str) -> str:
        return page[page.index(f'id="s-{feature}"') :].split('<div class="card', 1)[0]

    assert "missing train 0.0 %, eval 10.0 %" in card("amount")
    assert "one value only (1)" in card("constant")
    assert "values only in eval: green" in card("colour")
    assert "splits differ: red is 75.0 % of train, 40.0 % of eval" in card("colour")  # the same values
    assert '<span class="badge bad">absent from eval</span>' in card("gone")
    assert re.search(r'<tr class="bad"><td><a href="#s-gone">', page)


def test_validate_report_tables_anomalies_with_what_to_do_and_compares_different_things(reports):
    page = page_of(reports, names.STAGE_VALIDATE)
    meta = reports[names.STAGE_VALIDATE]["anomalies"].metadata
    assert meta["verdict"] == "anomalies" and meta["unseen_categories"] == {"region": ["atlantis"]}
    assert '<span class="badge warn">ANOMALIES</span>' in page
    row = re.search(r'<tr class="warn"><td><code>region</code></td>(.*?)</tr>', page)
    assert row and ("WARNING" in row[1] or "ERROR" in row[1])
    assert "out-of-vocabulary bucket" in row[1]  # what to do
    skew = page.index("Skew: eval split vs train split of this run")
    drift = page.index("Drift: this run&#x27;s training data vs the served model&#x27;s")
    assert skew < drift and "the train split of insurance v1, the served model (run served-run" in page
    assert meta["drift"] != meta["skew"]
    assert "stroke-dasharray" in page[skew:drift]  # skew's chart draws its threshold
    # The served model was trained on this very train split: drift is 0 everywhere, said, not drawn.
    assert set(meta["drift"].values()) == {0.0}
    assert "Every distance is 0: the distributions are identical." in page[drift:]
    assert "<svg" not in page[drift:]


def test_evaluate_report_says_the_verdict_first_then_metrics_slices_predictions_training_trials(reports):
    page = page_of(reports, names.STAGE_EVALUATE)
    blessing = reports[names.STAGE_EVALUATE]["blessing"].metadata
    assert f"<title>Model evaluation: insurance candidate, run {RUN}</title>" in page
    assert "compared with baseline insurance v1 (run served-run)" in page
    order = [
        page.index(f'id="{a}"') for a in ("verdict", "metrics", "slices", "predictions", "training", "tuning")
    ]
    assert order == sorted(order)
    verdict = page[order[0] : order[1]]
    assert blessing["verdict"].replace("_", " ") in verdict
    assert all(html.escape(str(r)) in verdict for r in blessing["reasons"])
    metrics = page[order[1] : order[2]]
    assert '<th class="num">change</th>' in metrics and re.search(
        r'class="num (better|worse)">[+-]\d', metrics
    )
    slices = page[order[2] : order[3]]
    assert "candidate</span>" in slices and "baseline</span>" in slices  # the legend
    assert "MAE upper bound 8,000" in slices and "stroke-dasharray" in slices  # the threshold drawn
    predictions = page[order[3] : order[4]]
    assert (
        predictions.count("<svg") == 3 and "perfect prediction" in predictions and "residual" in predictions
    )
    training = page[order[4] : order[5]]
    assert "loss per epoch" in training and "validation" in training and "epoch" in training
    tuning = page[order[5] :]
    assert "Tuner trials (2)" in tuning and "val_loss" in tuning and ">best<" in tuning


def find_browser() -> str | None:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


# Injected into a copy of the page (after the report's own script): after layout, what is wider
# than the window outside a box that scrolls on its own; what is cut inside such a box (content
# wider than the box: a notes column behind a scroll bar); the smallest chart text as drawn
# (an SVG scaled down with its viewBox shrinks its 11-px text with it); the table cells showing
# nothing; and each chart's axis ranges as drawn (``data-x``/``data-y``, ``charts.Frame.svg``).
LAYOUT_PROBE = """<script>
window.addEventListener('load', () => {
  const width = window.innerWidth, wide = [], cut = [];
  let smallestText = 99;
  for (const el of document.querySelectorAll('body *')) {
    const box = el.getBoundingClientRect();
    if (!box.width) continue;
    let scrolls = false;
    for (let p = el.parentElement; p; p = p.parentElement) {
      if (['auto', 'scroll', 'hidden'].includes(getComputedStyle(p).overflowX)) { scrolls = true; break; }
    }
    if (!scrolls && box.right > width + 0.5) wide.push(el.tagName + ' ' + Math.round(box.right));
    const own = getComputedStyle(el).overflowX;
    if (['auto', 'scroll', 'hidden'].includes(own) && el.scrollWidth > el.clientWidth + 1) {
      cut.push(el.tagName + '.' + el.className + ' ' + el.scrollWidth + '>' + el.clientWidth + ': '
        + el.textContent.slice(0, 60));
    }
  }
  for (const svg of document.querySelectorAll('svg[viewBox]')) {
    const scale = svg.getBoundingClientRect().width / svg.viewBox.baseVal.width;
    for (const t of svg.querySelectorAll('text')) {
      smallestText = Math.min(smallestText, parseFloat(getComputedStyle(t).fontSize) * scale);
    }
  }
  const blank = [...document.querySelectorAll('td')].filter(td => !td.textContent.trim())
    .map(td => td.closest('table').textContent.slice(0, 60));
  const charts = [...document.querySelectorAll('svg[data-x]')].map(svg => ({
    label: svg.getAttribute('aria-label'),
    x: svg.dataset.x.split(' ').map(Number), y: svg.dataset.y.split(' ').map(Number)}));
  const out = document.createElement('pre');
  out.id = 'layout-probe';
  out.textContent = JSON.stringify({width, scrollWidth: document.documentElement.scrollWidth,
    height: document.documentElement.scrollHeight, wide: wide.slice(0, 10), cut: cut.slice(0, 10),
    smallestText, blank: blank.slice(0, 10), charts});
  document.body.appendChild(out);
});
</script>"""
MIN_TEXT_PX = 10  # chart text as drawn at 1,000 and 1,920 px (charts draw it at 11 px)


def _browse(browser: str, profile: Path, width: int, height: int, *args: str) -> str:
    shutil.rmtree(profile, ignore_errors=True)
    cmd = [browser, *BROWSER_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("stage", REPORTS)
def test_reports_lay_out_within_the_page(reports, stage, width, tmp_path):
    browser = find_browser()
    if browser is None:
        if os.environ.get("KUBETFX_REQUIRE_BROWSER") == "1":
            pytest.fail("no headless browser found: run tests/browser_tools.sh")
        pytest.skip(
            f"no headless browser ({', '.join(BROWSERS)}) on PATH; tests/browser_tools.sh installs one"
        )
    page = Path(reports[stage]["report"].metadata[names.META_STORAGE_PATH])
    check_layout(browser, page, width, tmp_path, SCREENSHOTS / f"{stage}_{width}.png")


def check_layout(browser: str, page: Path, width: int, tmp_path: Path, shot: Path) -> dict:
    """Open ``page`` at ``width`` px with the probe: nothing too wide, nothing cut, chart text readable.

    Then a full-page screenshot to ``shot``. Returns the probe's findings.
    """
    tmp_path.mkdir(parents=True, exist_ok=True)
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", LAYOUT_PROBE + "</body>"))
    dom = _browse(browser, tmp_path / "profile", width, 1000, "--dump-dom", probe.as_uri())
    found = re.search(r'<pre id="layout-probe">(.*?)</pre>', dom)
    assert found, dom[-2000:]
    layout = json.loads(html.unescape(found[1]))
    assert layout["width"] == width
    assert layout["scrollWidth"] <= width and not layout["wide"], layout
    assert not layout["cut"], f"content cut inside a scrolling box at {width} px: {layout['cut']}"
    assert layout["smallestText"] >= MIN_TEXT_PX, f"chart text drawn at {layout['smallestText']:.1f} px"
    shot.parent.mkdir(parents=True, exist_ok=True)
    shot.unlink(missing_ok=True)
    _browse(browser, tmp_path / "profile", width, layout["height"], f"--screenshot={shot}", page.as_uri())
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(shot.read_bytes()[16:20], "big") == width  # the PNG's width: the whole page
    return layout
