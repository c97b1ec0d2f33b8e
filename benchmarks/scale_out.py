"""The data stages at scale, in process and on Beam worker processes: time and peak memory per stage.

    python -m benchmarks.scale_out --rows 10000000 --worker-pool 2 [--json out.json] [--keep DIR]

Generates the CSV (the real rows resampled with jitter, ``components.lib.datagen``), then runs
the four stages whose work grows with the data — example_gen, statistics, transform, evaluate —
each in a FRESH child process, in three modes: the pipeline's default ``beam_args`` (the
in-process fast paths, TFT on the in-process FnApiRunner); the multi-processing DirectRunner
with N worker processes (every stage's Beam path, each stage's input split over the N); and the
PortableRunner on a worker pool (``benchmarks.worker_pool``: EXTERNAL environment, workers that
share nothing with the stage's process — but Beam's embedded job service gives each stage to one
worker). Each mode reads the examples its own example_gen wrote.

Per stage: wall time, the stage process's peak RSS (``os.wait4``: the largest of it and the
processes it waited for), and off the in-process mode the largest single worker process and
the largest sum of all worker processes (sampled every 0.5 s). Memory that stays flat as rows
grow means the stage streams. The transform uses the built-in insurance module; evaluate
evaluates a SavedModel that predicts from ``age`` alone (the serving contract, no training: the
point is the data's path), with the overall and ``smoker`` slices, candidate only.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.benchmark import DEFAULT_SOURCE, REPO_ROOT, run_measured
from benchmarks.worker_pool import MULTI_PROCESSING_ARGS, PoolMemory, start_pool, stop_pool
from components import defaults, names

STAGES = (names.STAGE_EXAMPLE_GEN, names.STAGE_STATISTICS, names.STAGE_TRANSFORM, names.STAGE_EVALUATE)
STAGE_OUTPUT = {  # the folder each stage writes under a mode's work folder
    names.STAGE_EXAMPLE_GEN: "examples",
    names.STAGE_STATISTICS: "statistics",
    names.STAGE_TRANSFORM: "transform",
    names.STAGE_EVALUATE: "evaluate",
}


def age_model(export_dir: Path) -> Path:
    """A SavedModel with the serving contract (serialized tf.Examples in) predicting 330 * age."""
    import tensorflow as tf

    class AgeModel(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=names.EXAMPLES_INPUT_KEY)])
        def serve(self, examples: tf.Tensor) -> dict[str, tf.Tensor]:
            age = tf.io.parse_example(examples, {"age": tf.io.FixedLenFeature([], tf.int64, default_value=0)})
            return {names.PREDICTIONS_KEY: tf.reshape(330.0 * tf.cast(age["age"], tf.float32), [-1, 1])}

    model = AgeModel()
    tf.saved_model.save(model, str(export_dir), signatures={names.SERVING_SIGNATURE: model.serve})
    return export_dir


def run_stage(stage: str, work: Path, beam_args: str) -> dict[str, Any]:
    """One stage on ``work``'s files (in the child process); what it reports about itself."""
    if stage == names.STAGE_EXAMPLE_GEN:
        from components.lib.example_gen import run_example_gen

        r = run_example_gen(work / "input.csv", work / "examples", label=names.LABEL, beam_args=beam_args)
        return {"rows": r.rows, "method": r.method, "files_per_split": r.metadata()["files_per_split"]}
    if stage == names.STAGE_STATISTICS:
        import tensorflow_data_validation as tfdv

        from components.lib.statistics import run_statistics
        from components.lib.statistics_io import read_statistics

        s = run_statistics(work / "examples", work / "statistics", beam_args=beam_args)
        schema = tfdv.infer_schema(
            read_statistics(work / "statistics", names.TRAIN, stage), infer_feature_shape=True
        )
        (work / "schema").mkdir(exist_ok=True)
        tfdv.write_schema_text(schema, str(work / "schema" / names.SCHEMA_FILE))
        return {"rows": s.rows, "method": s.method, "runner": s.runner}
    if stage == names.STAGE_TRANSFORM:
        from components.lib.transform import run_transform

        t = run_transform(
            work / "examples",
            work / "schema",
            work / "transform",
            module_file="",
            storage_root=str(work),
            beam_args=beam_args,
            label=names.LABEL,
        )
        return {"rows": t.rows, "beam_seconds": t.beam_seconds}
    from components.lib import evaluate as ev

    model = age_model(work / "model") if not (work / "model").exists() else work / "model"
    out = work / "evaluate"
    out.mkdir(exist_ok=True)
    e = ev.evaluate_models(
        work / "examples",
        model,
        None,
        None,
        out,
        label=names.LABEL,
        slice_feature=names.SLICE_FEATURE,
        thresholds=ev.Thresholds(defaults.MAE_UPPER_BOUND, None),
        beam_args=beam_args,
        engine=ev.ENGINE_AUTO,
    )
    return {"engine": e.engine, "verdict": e.blessing.verdict}


_CHILD = """
import json, sys
from pathlib import Path
from benchmarks.scale_out import run_stage
print("@@" + json.dumps(run_stage(sys.argv[1], Path(sys.argv[2]), sys.argv[3]), default=str), flush=True)
"""


def run_mode(
    work: Path, beam_args: str, pool: Any = None, stages: Sequence[str] = STAGES, *, sample: bool = False
) -> list[dict[str, Any]]:
    """The stages in order, each in a fresh child process; a figure line per stage.

    ``sample``: also sample the workers' memory (the pool's processes, or with no pool the
    multi-processing runner's ``sdk_worker_main`` processes).
    """
    figures = []
    for stage in stages:
        cmd = [sys.executable, "-c", _CHILD, stage, str(work), beam_args]
        if not sample:
            m = run_measured(cmd, work / "logs", stage)
            pool_mb: dict[str, float] = {}
        else:
            with PoolMemory(pool) as memory:
                m = run_measured(cmd, work / "logs", stage)
            pool_mb = {
                "worker_peak_mb": memory.peak_process_mb,
                "workers_total_peak_mb": memory.peak_total_mb,
            }
        report = next((json.loads(ln[2:]) for ln in m.stdout.splitlines() if ln.startswith("@@")), None)
        entry = {"stage": stage, "ok": m.returncode == 0 and report is not None, "seconds": m.wall_s}
        entry.update(stage_peak_mb=m.peak_rss_mb, **pool_mb, other_cores=m.other_cores, report=report)
        if not entry["ok"]:
            entry["error"] = m.stderr_tail(2000)
        figures.append(entry)
        print(line(entry), flush=True)
        if not entry["ok"]:
            break
    return figures


def line(e: dict[str, Any]) -> str:
    pool = (
        f"  workers: one {e['worker_peak_mb']:.0f} MB, all {e['workers_total_peak_mb']:.0f} MB"
        if "worker_peak_mb" in e
        else ""
    )
    status = "" if e["ok"] else "  FAILED"
    if e.get("other_cores") is not None:
        status += f"  (other processes used {e['other_cores']:.1f} cores)"
    head = f"  {e['stage']:<12}{e['seconds']:>8.1f} s  stage process {e['stage_peak_mb']:>6.0f} MB"
    return f"{head}{pool}  {e['report']}{status}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.scale_out",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument(
        "--worker-pool",
        type=int,
        default=2,
        metavar="N",
        help="workers of the multi-processing runner and the pool (0: in process only)",
    )
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="the real CSV to resample")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    parser.add_argument("--stages", default=",".join(STAGES), help="comma-separated, in pipeline order")
    parser.add_argument(
        "--modes",
        default="in-process,multi-processing,worker-pool",
        help="any of in-process, multi-processing, worker-pool",
    )
    args = parser.parse_args(argv)
    stages = [s for s in STAGES if s in args.stages.split(",")]
    with tempfile.TemporaryDirectory(prefix="kubetfx-scale-") as tmp:
        root = args.keep or Path(tmp)
        csv = root / "input.csv"
        if not csv.exists():
            from components.lib.datagen import generate_csv

            start = time.perf_counter()
            generate_csv(csv, rows=args.rows, seed=1, source=args.source if args.source.is_file() else None)
            print(
                f"generated {args.rows:,} rows ({csv.stat().st_size / 1e6:,.0f} MB) in "
                f"{time.perf_counter() - start:.0f} s",
                flush=True,
            )
        doc: dict[str, Any] = {"rows": args.rows, "csv_bytes": csv.stat().st_size, "modes": {}}
        workers = args.worker_pool
        modes = [("in-process", defaults.BEAM_ARGS)]
        if workers:
            modes += [
                ("multi-processing", MULTI_PROCESSING_ARGS.replace("=2", f"={workers}")),
                ("worker-pool", ""),
            ]
        for mode, beam_args in modes:
            if mode not in args.modes.split(","):
                continue
            work = root / mode
            for stage in stages:  # a kept folder: redo these stages from scratch
                shutil.rmtree(work / STAGE_OUTPUT[stage], ignore_errors=True)
            work.mkdir(parents=True, exist_ok=True)
            (work / "input.csv").unlink(missing_ok=True)
            (work / "input.csv").symlink_to(csv)
            pool = start_pool(work / "worker_pool.log") if mode == "worker-pool" else None
            try:
                beam_args = pool.beam_args(workers=workers) if pool else beam_args
                print(f"{mode}: beam_args {beam_args}", flush=True)
                doc["modes"][mode] = {
                    "beam_args": beam_args,
                    "stages": run_mode(work, beam_args, pool, stages, sample=mode != "in-process"),
                }
            finally:
                if pool is not None:
                    stop_pool(pool)
        if args.json:
            args.json.write_text(json.dumps(doc, indent=2, default=str))
    ok = all(s["ok"] for m in doc["modes"].values() for s in m["stages"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.path.insert(0, str(REPO_ROOT))
    sys.exit(main())
