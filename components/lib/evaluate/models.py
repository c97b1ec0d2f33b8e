"""What evaluate knows of the models it judges: their label contract, the baseline's fit, the naive predictor.

- ``label_info``: the candidate's task, classes and training-label figures, from the label
  contract train wrote into the SavedModel (``saved_model.label_info_path``). A model without
  one (made by hand, or by an older version) is read as regression without figures.
- ``check_baseline``: the baseline must be a version of the same model, and its serving
  signature must parse the eval examples. The rule, from the label contracts and the raw
  features each serving signature parses (``assets.extra/``):

  | candidate vs baseline                                            | outcome                        |
  |------------------------------------------------------------------|--------------------------------|
  | other label, task or classes                                     | another dataset: StageError    |
  | features added AND features removed (a different set)            | another dataset: StageError    |
  | other serving outputs (nothing else differs)                     | another dataset: StageError    |
  | features added only (tf.Example parsing ignores unknown keys)    | compared as usual              |
  | features removed only (train's signature reads them as optional) | compared as usual              |
  | a shared feature parsed as another type (INT -> FLOAT, ...)      | not compared, and why          |

  Another dataset (the same ``model_name`` used for two datasets on one volume) would otherwise
  fail deep inside TensorFlow with a type error that never says "baseline"; here it is one line
  naming the model name and the fix. A type that changed is the same dataset moved on (validate
  reports it as a change since the served version): the baseline's signature cannot parse the
  examples (``tf.io.parse_example`` refuses an int64 list for a float feature), so evaluate
  judges the candidate without the baseline gate and says so in the blessing's reasons.
- ``naive_on_eval``: the naive predictor the default gate compares with — the training median
  for every row, or always the majority class — and its error on this eval split.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from components.errors import StageError
from components.lib import saved_model
from components.lib.evaluate.gating import Naive
from components.lib.evaluate.keys import STAGE
from components.lib.label import LabelInfo, class_ids


def label_info(model_dir: Path, label: str) -> LabelInfo | None:
    """The label contract a SavedModel carries (None: it has none); it must be about ``label``."""
    path = saved_model.label_info_path(model_dir)
    if not path.is_file():
        return None
    info = LabelInfo.read(path, STAGE)
    if info.name != label:
        raise StageError(
            STAGE,
            str(model_dir),
            f"the model predicts {info.name!r}, but evaluate was asked about label {label!r}",
        )
    return info


def _inputs(model_dir: Path) -> dict[str, str] | None:
    path = saved_model.inputs_path(model_dir)
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _outputs(model_dir: Path) -> dict[str, int]:
    """{output key: dtype enum} of the serving signature, read from saved_model.pb."""
    from tensorflow.python.saved_model import loader_impl

    from components import names

    saved = loader_impl.parse_saved_model(str(model_dir))
    sig = saved.meta_graphs[0].signature_def[names.SERVING_SIGNATURE]
    return {k: v.dtype for k, v in sig.outputs.items()}


def _describe(info: LabelInfo | None, inputs: dict[str, str] | None) -> str:
    reads = ", ".join(f"{k} ({v})" for k, v in sorted((inputs or {}).items())) or "unknown features"
    if info is None:
        return f"reads {reads}"
    what = f"{info.task} of {info.name!r}" + (f" into {list(info.classes)}" if info.classes else "")
    return f"reads {reads} for {what}"


_TYPES = {"int64": "INT", "float32": "FLOAT", "string": "BYTES"}  # tf dtype name -> schema type name


def _type(dtype: str) -> str:
    return _TYPES.get(dtype, dtype)


def _not_parsable(cand: dict[str, str], base: dict[str, str], version: str) -> str | None:
    """Why the baseline's signature cannot parse the candidate's data (None: it can)."""
    for name in sorted(set(cand) & set(base)):
        was, now = _type(base[name]), _type(cand[name])
        if was == now:
            continue
        how = "widened" if (was, now) == ("INT", "FLOAT") else "changed"
        return (
            f"baseline v{version} not compared: its serving signature reads {name!r} as {was}, this "
            f"data has {now} — the type {how} since v{version}; the candidate is judged without the "
            "change threshold"
        )
    return None


def check_baseline(candidate_dir: Path, baseline_dir: Path, candidate: LabelInfo | None) -> str | None:
    """Whether the baseline can be compared: None, or why not (see the module docstring's rule).

    A baseline of another dataset is a StageError naming the model name and the fix.
    """
    base_info = label_info_or_none(baseline_dir)
    cand_inputs, base_inputs = _inputs(candidate_dir), _inputs(baseline_dir)
    problems = []
    if candidate is not None and base_info is not None:
        for field in ("name", "task", "classes"):
            if getattr(candidate, field) != getattr(base_info, field):
                problems.append(field if field != "name" else "label")
    added = set(cand_inputs or ()) - set(base_inputs or ())
    removed = set(base_inputs or ()) - set(cand_inputs or ())
    if cand_inputs is not None and base_inputs is not None and added and removed:
        problems.append("input features")
    if not problems and _outputs(candidate_dir) != _outputs(baseline_dir):
        problems.append("serving outputs")
    model, version = baseline_dir.parent.name, baseline_dir.name
    if not problems:
        if cand_inputs is None or base_inputs is None:
            return None
        return _not_parsable(cand_inputs, base_inputs, version)
    raise StageError(
        STAGE,
        str(baseline_dir),
        f"the baseline, version {version} of model {model!r}, is not a version of this model "
        f"(different {', '.join(problems)}): it {_describe(base_info, base_inputs)}; the candidate "
        f"{_describe(candidate, cand_inputs)}. Two datasets share the model name {model!r}: give this "
        f"pipeline its own (--param model_name=<name>), or move serving/{model}/ away",
    )


def label_info_or_none(model_dir: Path) -> LabelInfo | None:
    """The label contract of a SavedModel, whatever label it is about (None: it has none)."""
    path = saved_model.label_info_path(model_dir)
    return LabelInfo.read(path, STAGE) if path.is_file() else None


def eval_labels(files: list[Path], label: str) -> Any:
    """Every eval example's label (numpy; NaN/"" where an example has none)."""
    import numpy as np
    import tensorflow as tf

    first = tf.train.Example.FromString(
        next(iter(tf.data.TFRecordDataset([str(files[0])], compression_type="GZIP").take(1))).numpy()
    )
    kind = first.features.feature[label].WhichOneof("kind")
    dtype = {"float_list": tf.float32, "int64_list": tf.int64}.get(kind, tf.string)
    default = {tf.float32: float("nan"), tf.int64: -1}.get(dtype, "")
    spec = {label: tf.io.FixedLenFeature([], dtype, default_value=default)}
    ds = tf.data.TFRecordDataset([str(f) for f in files], compression_type="GZIP").batch(8192)
    parts = [tf.io.parse_example(batch, spec)[label].numpy() for batch in ds]
    return np.concatenate(parts) if parts else np.zeros(0)


def _fmt(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.4g}"


def naive_on_eval(files: list[Path], label: str, info: LabelInfo | None) -> Naive | None:
    """The naive predictor and its error on the eval split (None: the model carries no figures)."""
    import numpy as np

    naive = info.naive() if info is not None else {}
    if not naive:
        return None
    values = eval_labels(files, label)
    if info is not None and info.is_classification:
        ids = class_ids(info, values)
        accuracy = float((ids == naive["class_id"]).mean()) if len(ids) else float("nan")
        share = naive["share"]
        return Naive(
            f"always {naive['class']!r}, the majority class in {share:.0%} of training rows", 1.0 - accuracy
        )
    y = np.asarray(values, dtype=np.float64)
    y = y[np.isfinite(y)]
    if not len(y):
        return None
    median = naive["prediction"]
    return Naive(f"the training median {_fmt(median)} for every row", float(np.abs(y - median).mean()))
