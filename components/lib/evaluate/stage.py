"""The evaluate stage as one call: check the inputs, run an engine, judge, write the summary.

``evaluate_models`` is what the component calls. It checks the eval split and the SavedModels'
serving contract before an engine starts, picks the engine, has it write TFMA's result into
``output_dir/eval_result``, judges it (``gating.judge``) into a ``Blessing`` record and writes
``summary.json``. ``baseline_of`` reads the baseline resolve-baseline passed (``Baseline``).

A baseline whose serving signature cannot parse this data (a column's type changed since it
was pushed: ``models.check_baseline``) is not compared: the candidate is judged without the
baseline gate, the first reason says why (also ``baseline_not_compared`` in ``summary.json``),
and the blessing keeps the baseline's version, so push still sees what the candidate was
judged next to.

Minimum evidence (``evidence_shortfall``): a verdict on too few examples means nothing, so a
candidate evaluated on fewer than ``min_eval_examples`` eval examples, or trained on fewer than
``min_train_rows`` rows, is NOT_BLESSED whatever its metrics, and the shortfall is the first
reason. Defaults (``components.defaults``): 30 and 100, justified there.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any

from components import names
from components.errors import StageError
from components.lib import examples, saved_model
from components.lib.baseline import Baseline
from components.lib.blessing import Blessing
from components.lib.evaluate import models as task_models
from components.lib.evaluate.engines import ENGINE_AUTO, ENGINE_NATIVE, choose_engine
from components.lib.evaluate.gating import Gates, Naive, Thresholds, gates, judge
from components.lib.evaluate.keys import BASELINE, CANDIDATE, STAGE
from components.lib.evaluate.native_engine import run_native
from components.lib.evaluate.results import EvaluateResult, overall, read_metrics, with_fit_figures
from components.lib.evaluate.tfma_engine import eval_config, run_tfma
from components.lib.label import LabelInfo

SUMMARY_FILE = "summary.json"


def check_serving_model(model_dir: Path, role: str) -> Path:
    """The SavedModel must serve train's contract (``saved_model.check_serving_signature``)."""
    return saved_model.check_serving_signature(model_dir, STAGE, role)


def eval_files(examples_dir: Path) -> list[Path]:
    """The eval split's TFRecord files."""
    return examples.split_files(examples_dir, names.EVAL, STAGE)


def check_eval_data(files: list[Path], label: str, slice_feature: str) -> None:
    """The first eval example must carry the label and the slice feature.

    TFMA would otherwise fail deep inside Beam (no label) or silently produce no slices.
    """
    import tensorflow as tf

    ds = tf.data.TFRecordDataset([str(f) for f in files], compression_type="GZIP").take(1)
    try:
        first = next(iter(ds), None)
    except tf.errors.OpError as e:
        raise StageError(STAGE, str(files[0]), f"cannot read the eval examples: {e.message}") from e
    if first is None:
        raise StageError(STAGE, str(files[0].parent), "the eval split has no examples")
    example = tf.train.Example.FromString(first.numpy())
    features = set(example.features.feature)
    if label not in features:
        raise StageError(
            STAGE, str(files[0]), f"label {label!r} is not in the eval examples: {sorted(features)}"
        )
    if slice_feature and slice_feature not in features:
        raise StageError(
            STAGE,
            str(files[0]),
            f"slice feature {slice_feature!r} is not in the eval examples: {sorted(features)}",
        )


def baseline_of(metadata: dict[str, Any], artifact_path: str) -> tuple[Path | None, int | None]:
    """The baseline SavedModel directory and registry version resolve-baseline passed, or (None, None).

    Read through the baseline contract (``baseline.Baseline.from_artifact``): the metadata, or the
    artifact file when KFP lost the metadata; neither saying is an error.
    """
    record = Baseline.from_artifact(metadata, artifact_path, STAGE)
    if not record.found:
        return None, None
    return Path(record.model_path), record.version


def evidence_shortfall(
    eval_examples: float, train_rows: int | None, min_eval_examples: int, min_train_rows: int
) -> list[str]:
    """Why there is too little evidence to bless (empty: enough). A minimum of 0 is off."""
    out = []
    if min_eval_examples > 0 and eval_examples < min_eval_examples:
        n = int(eval_examples)
        out.append(
            f"too little evidence: {n:,} eval example{'' if n == 1 else 's'}, "
            f"at least {min_eval_examples:,} needed to bless (min_eval_examples)"
        )
    if min_train_rows > 0 and train_rows is None:
        out.append("too little evidence: the number of training rows is unknown (min_train_rows)")
    elif min_train_rows > 0 and train_rows is not None and train_rows < min_train_rows:
        out.append(
            f"too little evidence: trained on {train_rows:,} row{'' if train_rows == 1 else 's'}, "
            f"at least {min_train_rows:,} needed to bless (min_train_rows)"
        )
    return out


def evaluate_models(
    examples_dir: Path,
    candidate_dir: Path,
    baseline_dir: Path | None,
    baseline_version: int | None,
    output_dir: Path,
    *,
    label: str,
    slice_feature: str,
    thresholds: Thresholds,
    beam_args: str,
    engine: str = ENGINE_AUTO,
    published_dir: Path | None = None,
    train_rows: int | None = None,
    min_eval_examples: int = 0,
    min_train_rows: int = 0,
    eval_rows: int | None = None,
) -> EvaluateResult:
    """Write TFMA's result into ``output_dir/eval_result`` (native or Beam engine) and judge.

    ``published_dir``: where ``output_dir`` will be once published (it is usually a scratch
    directory renamed into place); the blessing and the result cite paths under it.
    ``train_rows``, ``min_eval_examples``, ``min_train_rows``: the minimum evidence to bless
    (``evidence_shortfall``; 0 = no minimum). ``eval_rows``: the eval examples ExampleGen
    wrote; an evaluation of any other number is the stage's error (a runner lost records).
    """
    import tensorflow_model_analysis as tfma

    files, info, not_compared = _check_inputs(examples_dir, candidate_dir, baseline_dir, label, slice_feature)
    compared_dir = baseline_dir if not_compared is None else None  # None: judged without the baseline gate
    chosen = choose_engine(engine, beam_args, [d for d in (candidate_dir, compared_dir) if d is not None])
    naive = task_models.naive_on_eval(files, label, info) if thresholds.naive_margin is not None else None
    gate = gates(thresholds, info, naive)
    config = eval_config(label, slice_feature, thresholds, compared_dir is not None, info, gate)
    result_dir, seconds = _run_engine(
        chosen, files, candidate_dir, compared_dir, config, output_dir, beam_args, label, slice_feature, info
    )
    metrics, cand, base = _read_results(
        result_dir, info, compared_dir is not None, chosen, files, eval_rows, label
    )
    validation = tfma.load_validation_result(str(result_dir))
    evidence = _evidence(cand["example_count"], train_rows, min_eval_examples, min_train_rows)
    against = baseline_version if not_compared is None else None  # the version judge compares with
    verdict, reasons = _verdict(validation, thresholds, gate, cand, base, against, not_compared, evidence)
    cited_result_dir = (published_dir or output_dir) / names.EVAL_RESULT_DIR
    blessing = Blessing(
        verdict=verdict,
        reasons=reasons,
        baseline=baseline_version,  # resolved, compared or not: push re-checks against it
        model_path=str(candidate_dir),
        baseline_model_path=str(baseline_dir) if baseline_dir is not None else None,
        metrics=cand,
        baseline_metrics=base or None,
        thresholds=thresholds.as_dict(),
        validation_ok=bool(validation.validation_ok),
        eval_result=str(cited_result_dir),
        time=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    )
    result = EvaluateResult(blessing, metrics, cand, base, cited_result_dir, seconds, chosen, info)
    _write_summary(output_dir, result, label, slice_feature, naive, not_compared, evidence)
    return result


def _check_inputs(
    examples_dir: Path, candidate_dir: Path, baseline_dir: Path | None, label: str, slice_feature: str
) -> tuple[list[Path], LabelInfo | None, str | None]:
    """Every check before an engine starts; the eval files, the label info, why the baseline is not compared.

    The eval split, both models' serving contract, the eval data's label and slice feature, then
    whether the baseline can parse this data (``models.check_baseline``; None: it is compared).
    """
    files = eval_files(examples_dir)
    check_serving_model(candidate_dir, CANDIDATE)
    if baseline_dir is not None:
        check_serving_model(baseline_dir, BASELINE)
    check_eval_data(files, label, slice_feature)
    info = task_models.label_info(candidate_dir, label)  # task, classes, training-label figures
    not_compared = None
    if baseline_dir is not None:
        not_compared = task_models.check_baseline(candidate_dir, baseline_dir, info)
    return files, info, not_compared


def _run_engine(
    chosen: str,
    files: list[Path],
    candidate_dir: Path,
    baseline_dir: Path | None,
    config: Any,
    output_dir: Path,
    beam_args: str,
    label: str,
    slice_feature: str,
    info: LabelInfo | None,
) -> tuple[Path, float]:
    """Have the chosen engine write TFMA's result into ``output_dir/eval_result``; where, and in how long."""
    import time

    result_dir = output_dir / names.EVAL_RESULT_DIR
    result_dir.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    if chosen == ENGINE_NATIVE:
        run_native(
            files,
            candidate_dir,
            baseline_dir,
            config,
            result_dir,
            label=label,
            slice_feature=slice_feature,
            info=info,
        )
    else:
        run_tfma(files, candidate_dir, baseline_dir, config, result_dir, beam_args)
    return result_dir, time.monotonic() - start


def _read_results(
    result_dir: Path,
    info: LabelInfo | None,
    compared: bool,
    chosen: str,
    files: list[Path],
    eval_rows: int | None,
    label: str,
) -> tuple[dict[str, dict[str, dict[str, float]]], dict[str, float], dict[str, float]]:
    """The engine's metrics with the candidate's and baseline's overall figures, checked before judging.

    The overall figures include R² (regression) or macro-F1 (classification): ``with_fit_figures``.

    Nothing is judged on metrics of fewer or more eval examples than ExampleGen wrote (a runner
    lost or repeated records).
    """
    metrics = read_metrics(result_dir)
    classify = info is not None and info.is_classification
    labels = None if classify else task_models.eval_labels(files, label)
    cand = with_fit_figures(overall(metrics, CANDIDATE, info), CANDIDATE, result_dir, labels, info)
    base = overall(metrics, BASELINE, info) if compared else {}
    base = with_fit_figures(base, BASELINE, result_dir, labels, info) if base else {}
    if not cand or not cand.get("example_count"):
        raise StageError(STAGE, str(result_dir), "TFMA computed no metrics: are there eval examples?")
    if eval_rows is not None and round(cand["example_count"]) != eval_rows:
        raise StageError(
            STAGE,
            str(files[0].parent),
            f"{chosen} evaluated {round(cand['example_count']):,} eval examples but ExampleGen wrote "
            f"{eval_rows:,}: the runner lost or repeated records; nothing was judged",
        )
    return metrics, cand, base


def _evidence(
    eval_examples: float, train_rows: int | None, min_eval_examples: int, min_train_rows: int
) -> dict[str, Any]:
    """What the minimum-evidence rule reads (``evidence_shortfall``'s arguments), as the summary shows it."""
    return {
        "eval_examples": eval_examples,
        "train_rows": train_rows,
        "min_eval_examples": min_eval_examples,
        "min_train_rows": min_train_rows,
    }


def _verdict(
    validation: Any,
    thresholds: Thresholds,
    gate: Gates,
    cand: dict[str, float],
    base: dict[str, float],
    judged_against: int | None,
    not_compared: str | None,
    evidence: dict[str, Any],
) -> tuple[str, list[str]]:
    """``judge``'s verdict with this stage's reasons first: baseline not compared, too little evidence."""
    verdict, reasons = judge(validation, thresholds, cand, base, judged_against, gate)
    if not_compared is not None:  # the reason replaces judge's "no baseline"
        reasons = [not_compared if r.startswith(names.NO_BASELINE) else r for r in reasons]
    shortfall = evidence_shortfall(**evidence)
    if shortfall:
        verdict, reasons = names.NOT_BLESSED, shortfall + reasons
    return verdict, reasons


def _write_summary(
    output_dir: Path,
    result: EvaluateResult,
    label: str,
    slice_feature: str,
    naive: Naive | None,
    not_compared: str | None,
    evidence: dict[str, Any],
) -> None:
    """Write ``summary.json``: the blessing and what it rests on, for the report and the next stages."""
    info = result.label_info
    summary = {
        "blessing": result.blessing.to_document(),
        "slices": result.metrics,
        "engine": result.engine,
        "tfma_seconds": round(result.seconds, 3),
        "label": label,
        "task": info.task if info is not None else "regression",
        "classes": list(info.classes) if info is not None else [],
        "naive": {"description": naive.description, "error": naive.error} if naive else None,
        "slice_feature": slice_feature,
        "baseline_not_compared": not_compared,
        "evidence": evidence,
    }
    (output_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, sort_keys=True, default=str))
