"""Benchmark: the reference workload (../shared/WORKLOAD.md) stage by stage, optionally against TFX 1.16.

    python -m benchmarks.benchmark [--sizes 1338,100000,1000000] [--runner inprocess|backend]
                                  [--source ../shared/data/insurance.csv] [--json out.json]
                                  [--tfx] [--tfx-python /opt/tfx116/venv/bin/python]
                                  [--only-tfx] [--keep DIR]
                                  [--beam-args="--runner=..."] [--worker-pool N]

Size 1338 uses the real CSV when ``--source`` exists (else generated rows); larger sizes are
the real rows resampled with small jitter (``components.lib.datagen``), as the workload says.
Each size runs in fresh folders and fresh processes, with the default parameters (which are
the workload's settings). Prints, per stage, wall time, peak resident memory and rows/s for
the data stages, then the totals; ``--json`` also writes every figure.

``--tfx`` also runs TFX 1.16's LocalDagRunner on the SAME CSV (``benchmarks/tfx_reference``,
in its own Python 3.10 venv made by ``benchmarks/tfx_reference/setup.sh``) and prints
ours/TFX ratios per stage and overall: a ratio below 1 means KubeTFX is faster (or smaller).
Stage names map one to one (``TFX_COMPONENT_OF_STAGE``): example_gen = CsvExampleGen, ...,
resolve_baseline = the ``latest_blessed_model_resolver`` Resolver node, push = Pusher.

What the figures mean:
- per stage ``seconds``: ours = the local runner's wall time of the task; TFX = the wall time
  of the node's ``Launcher.launch()`` (driver, executor, publish) — the same scope.
- ``pipeline``: ours = the whole ``run_locally`` call (compile, stage the CSV, run the tasks);
  TFX = ``LocalDagRunner().run()`` (compile the IR, build the module-file wheel, run the nodes).
- ``process wall`` / ``process peak RSS`` / ``process CPU``: of the whole child process, from
  ``os.wait4`` on it (``ru_maxrss`` is the largest resident set of the process and the children
  it waited for — in ``backend`` runner mode that is the biggest stage pod, not a sum).
- per-stage peak MB (ours only): the process's resident set while that stage ran.
- ``other processes used X of N cores``: the machine's busy CPU time during the run (``/proc/stat``)
  minus the child's own, per second of wall time. Timings taken while other work competed for
  the cores are not comparable; the comparison prints a WARNING when X exceeds a quarter of them.
- ``--worker-pool N``: the run's data stages on a local Beam worker pool (``benchmarks.worker_pool``)
  with N SDK worker processes (``beam_args`` = PortableRunner, EXTERNAL environment); the pool's
  processes are sampled every 0.5 s: ``pool peak MB`` is the largest single worker process and
  the largest sum of all of them, apart from the pipeline process's own per-stage peaks.
  ``--beam-args`` sets the ``beam_args`` run parameter itself (e.g. the multi-processing DirectRunner).
- ``bytecode_compiled`` (JSON; a WARNING when False): whether each environment's TensorFlow has
  cached bytecode. Where PYTHONDONTWRITEBYTECODE is set, one without it compiles TensorFlow & co.
  from source in every process, which adds ~9 s to a run of either system.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.tfx_reference.tfx_pipeline import TFX_COMPONENT_OF_STAGE
from components import names

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO_ROOT.parent / "shared" / "data" / "insurance.csv"
DEFAULT_TFX_PYTHON = Path("/opt/tfx116/venv/bin/python")
TFX_SCRIPT = Path(__file__).resolve().parent / "tfx_reference" / "tfx_pipeline.py"
DEFAULT_SIZES = (1338, 100_000, 1_000_000)
REAL_ROWS = 1338
STAGES = names.STAGES
# Stages whose work grows with the rows: rows/s is printed for these.
DATA_STAGES = (names.STAGE_EXAMPLE_GEN, names.STAGE_STATISTICS, names.STAGE_TRANSFORM, names.STAGE_EVALUATE)
BUSY_CORES_FRACTION = 0.25  # other processes using more than this share of the cores: warn
MAE_KEYS = ("mean_absolute_error", "mae", "overall_mae", "MeanAbsoluteError")
RESULT_PREFIX = "@@"


# --- Child processes ------------------------------------------------------------------------


def cpu_busy_seconds() -> float | None:
    """CPU seconds the whole machine has been busy since boot (Linux ``/proc/stat``), else None."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    if not fields or fields[0] != "cpu":
        return None
    # user nice system idle iowait irq softirq steal ...: everything but idle and iowait is busy.
    values = [int(v) for v in fields[1:9]]
    busy = sum(values) - values[3] - values[4]
    return busy / os.sysconf("SC_CLK_TCK")


def other_cores(busy_s: float | None, child_cpu_s: float, wall_s: float) -> float | None:
    """Cores kept busy by OTHER processes during a run, on average: the contention it suffered."""
    if busy_s is None or wall_s <= 0:
        return None
    return max(busy_s - child_cpu_s, 0.0) / wall_s


@dataclasses.dataclass
class Measured:
    """A finished child process: exit code, its output files, wall time and rusage figures.

    ``other_cores``: how many cores other processes used on average meanwhile (None off Linux);
    timings are only comparable when it is near zero.
    """

    returncode: int
    stdout: str
    stderr_path: Path
    wall_s: float
    peak_rss_mb: float
    cpu_s: float
    other_cores: float | None = None

    def stderr_tail(self, chars: int = 3000) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def run_measured(cmd: Sequence[str], logdir: Path, name: str, env: dict[str, str] | None = None) -> Measured:
    """Run ``cmd`` to completion; its own rusage (not every child's so far) via ``os.wait4``.

    ``resource.getrusage(RUSAGE_CHILDREN)`` would fold earlier children into the peak RSS, so
    the benchmark waits for this one pid itself. Output goes to files (no pipe to drain).
    """
    logdir.mkdir(parents=True, exist_ok=True)
    out_path, err_path = logdir / f"{name}.stdout", logdir / f"{name}.stderr"
    with out_path.open("w") as out, err_path.open("w") as err:
        busy0 = cpu_busy_seconds()
        start = time.perf_counter()
        proc = subprocess.Popen(list(cmd), stdout=out, stderr=err, env=env, cwd=REPO_ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        busy1 = cpu_busy_seconds()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Measured(
        returncode=proc.returncode,
        stdout=out_path.read_text(errors="replace"),
        stderr_path=err_path,
        wall_s=wall,
        peak_rss_mb=usage.ru_maxrss / 1024,
        cpu_s=usage.ru_utime + usage.ru_stime,
        other_cores=other_cores(
            None if busy0 is None or busy1 is None else busy1 - busy0, usage.ru_utime + usage.ru_stime, wall
        ),
    )


def last_json_line(stdout: str, prefix: str = "") -> dict[str, Any] | None:
    """The last stdout line that is a JSON object (after ``prefix``), or None."""
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if prefix:
            if not line.startswith(prefix):
                continue
            line = line[len(prefix) :]
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    return None


def find_number(obj: Any, keys: Sequence[str]) -> float | None:
    """The first numeric value under one of ``keys`` in nested dicts/lists (breadth first)."""
    queue = [obj]
    while queue:
        item = queue.pop(0)
        if isinstance(item, dict):
            for key in keys:
                value = item.get(key)
                if isinstance(value, int | float) and not isinstance(value, bool):
                    return float(value)
            queue.extend(item.values())
        elif isinstance(item, list):
            queue.extend(item)
    return None


def stage_of_task(task: str) -> str:
    """Our stage name of a KFP task name (``example-gen`` -> ``example_gen``)."""
    return task.replace("-", "_")


# The child that runs our pipeline: imports, run_locally, then one JSON line with the figures.
_OURS_CHILD = """
import json, sys, time
t0 = time.perf_counter()
from pathlib import Path
from pipelines.local.run import run_locally
t1 = time.perf_counter()
res = run_locally(Path(sys.argv[1]), Path(sys.argv[2]), json.loads(sys.argv[4]), mode=sys.argv[3],
                  log=lambda s: print(s, file=sys.stderr, flush=True))
t2 = time.perf_counter()

def meta(outputs):
    out = {}
    for key, value in outputs.items():
        m = getattr(value, "metadata", None)
        plain = value if isinstance(value, (int, float, str, bool)) else None
        out[key] = dict(m) if isinstance(m, dict) else plain
    return out

print("@@" + json.dumps({
    "ok": res.run.succeeded, "import_s": t1 - t0, "pipeline_s": t2 - t1, "run_s": res.run.seconds,
    "tasks": [dict(task=t.task, status=t.status, seconds=t.seconds, peak_rss_mb=t.peak_rss_mb,
                   error=t.error, outputs=meta(t.outputs)) for t in res.run.tasks],
}, default=str), flush=True)
"""


def run_ours(
    csv: Path, runner: str, workdir: Path, rows: int, beam_args: str | None = None, pool_workers: int = 0
) -> dict[str, Any]:
    """Our pipeline once on ``csv`` in a child process; the normalized figures.

    ``pool_workers``: run the data stages on a fresh local worker pool with that many workers.
    """
    from benchmarks.worker_pool import PoolMemory, start_pool, stop_pool

    env = dict(os.environ, PYTHONUNBUFFERED="1")
    load = os.getloadavg()[0]
    pool = start_pool(workdir / "worker_pool.log") if pool_workers else None
    if pool is not None:
        beam_args = pool.beam_args(workers=pool_workers)
    params = {} if beam_args is None else {"beam_args": beam_args}
    cmd = [sys.executable, "-c", _OURS_CHILD, str(workdir / "storage"), str(csv), runner, json.dumps(params)]
    try:
        if pool is None:
            m = run_measured(cmd, workdir, "kubetfx", env=env)
            pool_mb: dict[str, Any] = {}
        else:
            with PoolMemory(pool) as memory:
                m = run_measured(cmd, workdir, "kubetfx", env=env)
            pool_mb = {
                "pool_workers": pool_workers,
                "pool_started_workers": pool.started_workers(),
                "pool_peak_process_mb": memory.peak_process_mb,
                "pool_peak_total_mb": memory.peak_total_mb,
            }
    finally:
        if pool is not None:
            stop_pool(pool)
    raw = last_json_line(m.stdout, RESULT_PREFIX)
    if raw is None:
        return _failed("kubetfx", m, rows, load)
    stages = [
        {
            "stage": stage_of_task(t["task"]),
            "seconds": t["seconds"],
            "peak_rss_mb": t["peak_rss_mb"],
            "status": t["status"],
            "error": t["error"],
        }
        for t in raw["tasks"]
    ]
    evaluate = next((t for t in raw["tasks"] if stage_of_task(t["task"]) == names.STAGE_EVALUATE), None)
    return {
        **_figures("kubetfx", rows, raw, m, load, stages),
        "beam_args": beam_args,
        **pool_mb,
        "methods": {
            stage_of_task(t["task"]): {
                k: v
                for out in (t["outputs"] or {}).values()
                if isinstance(out, dict)
                for k, v in out.items()
                if k in ("method", "runner", "engine")
            }
            for t in raw["tasks"]
        },
        "mae": find_number(evaluate["outputs"], MAE_KEYS) if evaluate else None,
        "error": next((s["error"] for s in stages if s["error"]), ""),
        "tasks_raw": raw["tasks"],
    }


def run_tfx(csv: Path, tfx_python: Path, workdir: Path, rows: int) -> dict[str, Any]:
    """TFX 1.16's LocalDagRunner once on ``csv`` in its own venv; the normalized figures."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="1")
    env.pop("PYTHONPATH", None)  # nothing of our 3.11 venv may leak into the 3.10 one
    load = os.getloadavg()[0]
    m = run_measured(
        [str(tfx_python), str(TFX_SCRIPT), "--data", str(csv), "--workdir", str(workdir / "tfx")],
        workdir,
        "tfx",
        env=env,
    )
    raw = last_json_line(m.stdout)
    if raw is None or "components" not in raw:
        return _failed("tfx", m, rows, load)
    stages = [
        {"stage": c["stage"], "component": c["id"], "seconds": c["seconds"], "status": c["state"]}
        for c in raw["components"]
    ]
    return {
        **_figures("tfx", rows, raw, m, load, stages),
        "mae": (raw.get("metrics") or {}).get("overall", {}).get("mean_absolute_error"),
        "blessed": raw.get("blessed"),
        "pushed": raw.get("pushed"),
        "error": raw.get("error") or "",
        "tfx_raw": raw,
    }


def _figures(
    system: str, rows: int, raw: dict[str, Any], m: Measured, load: float, stages: list[dict[str, Any]]
) -> dict[str, Any]:
    """The figures both systems report: the child's own timings and what ``os.wait4`` measured."""
    return {
        "system": system,
        "rows": rows,
        "ok": bool(raw["ok"]) and m.returncode == 0,
        "load_before": load,
        "other_cores": m.other_cores,
        "import_s": raw["import_s"],
        "pipeline_s": raw["pipeline_s"],
        "process_wall_s": m.wall_s,
        "peak_rss_mb": m.peak_rss_mb,
        "cpu_s": m.cpu_s,
        "stages": stages,
    }


def _failed(system: str, m: Measured, rows: int, load: float) -> dict[str, Any]:
    return {
        "system": system,
        "rows": rows,
        "ok": False,
        "load_before": load,
        "other_cores": m.other_cores,
        "process_wall_s": m.wall_s,
        "peak_rss_mb": m.peak_rss_mb,
        "cpu_s": m.cpu_s,
        "stages": [],
        "error": f"exit status {m.returncode}; stderr tail:\n{m.stderr_tail()}",
    }


def prepare_csv(rows: int, source: Path | None, workdir: Path) -> Path:
    """The input of one size: the real CSV at 1,338 rows, else resampled (or synthetic) rows."""
    if rows == REAL_ROWS and source is not None and source.is_file():
        return source.resolve()
    from components.lib.datagen import generate_csv

    workdir.mkdir(parents=True, exist_ok=True)
    csv = workdir / f"insurance_{rows}.csv"
    generate_csv(csv, rows=rows, seed=1, source=source if source is not None and source.is_file() else None)
    return csv


# --- Formatting (pure functions on the figures; tested on canned results) ------------------------


def ratio(ours: float | None, theirs: float | None) -> float | None:
    """Ours / theirs, or None when either is missing or theirs is zero."""
    if ours is None or theirs is None or theirs <= 0:
        return None
    return ours / theirs


def fmt_ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def fmt_seconds(value: float | None) -> str:
    """One decimal; two below a second, where the stages that only move metadata sit."""
    if value is None:
        return "—"
    return f"{value:.2f}" if abs(value) < 1 else f"{value:.1f}"


def fmt_rate(rows: int, seconds: float | None) -> str:
    return "" if not seconds or seconds <= 0 else f"{rows / seconds:,.0f}"


def stage_seconds(result: dict[str, Any] | None) -> dict[str, float]:
    """Seconds per stage name (summed if a stage appears twice)."""
    out: dict[str, float] = {}
    for s in (result or {}).get("stages", []):
        out[s["stage"]] = out.get(s["stage"], 0.0) + float(s["seconds"])
    return out


def header(result: dict[str, Any]) -> str:
    others = result.get("other_cores")
    load_txt = f"  other processes used {others:.1f} of {os.cpu_count()} cores" if others is not None else ""
    status = "ok" if result["ok"] else "FAILED"
    return (
        f"{result['system']} rows={result['rows']:,} {status}:"
        f" process wall {fmt_seconds(result['process_wall_s'])} s"
        f"  pipeline {fmt_seconds(result.get('pipeline_s'))} s  peak RSS {result['peak_rss_mb']:.0f} MB"
        f"  CPU {fmt_seconds(result.get('cpu_s'))} s{load_txt}"
    )


def table(result: dict[str, Any]) -> str:
    """One system's run: per stage wall, peak MB (ours) and rows/s for the data stages."""
    rows = result["rows"]
    lines = [header(result), f"  {'stage':<18}{'wall s':>8}{'peak MB':>9}{'rows/s':>12}  component"]
    for s in result["stages"]:
        rate = fmt_rate(rows, s["seconds"]) if s["stage"] in DATA_STAGES else ""
        peak = f"{s['peak_rss_mb']:.0f}" if s.get("peak_rss_mb") is not None else ""
        stage, component = s["stage"] or "?", s.get("component", "")
        line = f"  {stage:<18}{fmt_seconds(s['seconds']):>8}{peak:>9}{rate:>12}  {component}"
        lines.append(line.rstrip())
    total = sum(stage_seconds(result).values())
    lines.append(f"  {'sum of stages':<18}{total:>8.1f}")
    if result.get("mae") is not None:
        lines.append(f"  eval MAE {result['mae']:,.0f}")
    if result.get("beam_args"):
        lines.append(f"  beam_args {result['beam_args']}")
    if result.get("pool_workers"):
        started = result.get("pool_started_workers", 0)
        one, total = result["pool_peak_process_mb"], result["pool_peak_total_mb"]
        lines.append(
            f"  worker pool: {result['pool_workers']} workers ({started} started),"
            f" peak MB one process {one:.0f}, all {total:.0f}"
        )
    if not result["ok"] and result.get("error"):
        lines.append(f"  error: {result['error']}")
    return "\n".join(lines)


def comparison(ours: dict[str, Any], tfx: dict[str, Any]) -> dict[str, float | None]:
    """ours/TFX per stage and for the totals (None where a figure is missing)."""
    mine, theirs = stage_seconds(ours), stage_seconds(tfx)
    out: dict[str, float | None] = {stage: ratio(mine.get(stage), theirs.get(stage)) for stage in STAGES}
    out["sum_of_stages"] = ratio(sum(mine.values()) or None, sum(theirs.values()) or None)
    for key in ("pipeline_s", "process_wall_s", "peak_rss_mb", "cpu_s"):
        out[key] = ratio(ours.get(key), tfx.get(key))
    return out


def comparison_table(ours: dict[str, Any], tfx: dict[str, Any]) -> str:
    """Side by side: our and TFX's seconds per stage, rows/s, and the ours/TFX ratio."""
    rows = ours["rows"]
    mine, theirs = stage_seconds(ours), stage_seconds(tfx)
    ratios = comparison(ours, tfx)
    lines = [
        f"rows={rows:,}: KubeTFX vs TFX 1.16 LocalDagRunner (ratio = ours / TFX; below 1 = KubeTFX faster)",
        f"  {'stage':<18}{'TFX component':<30}{'ours s':>8}{'TFX s':>8}{'ratio':>7}"
        f"{'ours rows/s':>13}{'TFX rows/s':>12}",
    ]
    for stage in STAGES:
        rate_ours = fmt_rate(rows, mine.get(stage)) if stage in DATA_STAGES else ""
        rate_tfx = fmt_rate(rows, theirs.get(stage)) if stage in DATA_STAGES else ""
        line = (
            f"  {stage:<18}{TFX_COMPONENT_OF_STAGE[stage]:<30}{fmt_seconds(mine.get(stage)):>8}"
            f"{fmt_seconds(theirs.get(stage)):>8}{fmt_ratio(ratios[stage]):>7}{rate_ours:>13}{rate_tfx:>12}"
        )
        lines.append(line.rstrip())
    totals = [
        ("sum of stages", sum(mine.values()), sum(theirs.values()), "sum_of_stages", "s"),
        ("pipeline wall", ours.get("pipeline_s"), tfx.get("pipeline_s"), "pipeline_s", "s"),
        ("process wall", ours.get("process_wall_s"), tfx.get("process_wall_s"), "process_wall_s", "s"),
        ("process CPU", ours.get("cpu_s"), tfx.get("cpu_s"), "cpu_s", "s"),
        ("process peak RSS", ours.get("peak_rss_mb"), tfx.get("peak_rss_mb"), "peak_rss_mb", "MB"),
    ]
    for label, a, b, key, unit in totals:
        r = ratios[key]
        fmt = (lambda v: "—" if v is None else f"{v:.0f}") if unit == "MB" else fmt_seconds
        lines.append(f"  {label + ' (' + unit + ')':<48}{fmt(a):>8}{fmt(b):>8}{fmt_ratio(r):>7}")
    mae_ours, mae_tfx = ours.get("mae"), tfx.get("mae")
    lines.append(
        "  eval MAE: ours "
        + ("—" if mae_ours is None else f"{mae_ours:,.0f}")
        + ", TFX "
        + ("—" if mae_tfx is None else f"{mae_tfx:,.0f}")
        + (f" (TFX blessed={tfx.get('blessed')}, pushed={tfx.get('pushed')})" if "blessed" in tfx else "")
    )
    busy = [r.get("other_cores") for r in (ours, tfx)]
    if any(b is not None and b > BUSY_CORES_FRACTION * (os.cpu_count() or 1) for b in busy):
        lines.append(
            "  WARNING: other processes kept the machine busy during a run (see 'other processes used'):"
            " timings are not comparable"
        )
    return "\n".join(lines)


# --- Command line ---------------------------------------------------------------------------


def parse_sizes(text: str) -> list[int]:
    """``"1338,100000,1e6"`` -> ``[1338, 100000, 1000000]`` (positive row counts)."""
    sizes = []
    for part in text.split(","):
        part = part.strip().replace("_", "")
        if not part:
            continue
        value = float(part) if any(c in part for c in ".eE") else int(part)
        if value != int(value) or int(value) <= 0:
            raise argparse.ArgumentTypeError(f"not a positive row count: {part!r}")
        sizes.append(int(value))
    if not sizes:
        raise argparse.ArgumentTypeError("no sizes given")
    return sizes


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.benchmark",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--sizes", type=parse_sizes, default=list(DEFAULT_SIZES), help="comma-separated rows")
    parser.add_argument("--runner", choices=("inprocess", "backend"), default="inprocess")
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="the real CSV")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--tfx", action="store_true", help="also run TFX 1.16 on the same CSV; print ratios")
    parser.add_argument("--tfx-python", type=Path, default=DEFAULT_TFX_PYTHON, help="the TFX venv's python")
    parser.add_argument("--only-tfx", action="store_true", help="run TFX alone (implies --tfx)")
    parser.add_argument("--keep", type=Path, help="keep every run's files under this folder")
    parser.add_argument("--beam-args", help="the beam_args run parameter (default: the pipeline's)")
    parser.add_argument(
        "--worker-pool", type=int, default=0, metavar="N", help="run on a local Beam worker pool of N workers"
    )
    args = parser.parse_args(argv)
    if args.only_tfx:
        args.tfx = True
    if args.worker_pool and args.beam_args:
        parser.error("--worker-pool sets beam_args itself: give one of --worker-pool and --beam-args")
    if args.tfx and not args.tfx_python.exists():
        parser.error(f"--tfx-python {args.tfx_python} does not exist: run benchmarks/tfx_reference/setup.sh")
    return args


_BYTECODE_PROBE = """
import importlib.util, os
spec = importlib.util.find_spec("tensorflow")
if spec is None or not spec.origin:
    print("absent")
else:
    print("yes" if os.path.exists(importlib.util.cache_from_source(spec.origin)) else "no")
"""


def bytecode_compiled(python: Path | str) -> bool | None:
    """Whether ``python``'s TensorFlow has its bytecode cached (None if that cannot be told).

    Where PYTHONDONTWRITEBYTECODE is set, an environment installed without compiling bytecode
    compiles TensorFlow & co. from source in every process (~7-14 s): figures from such a run
    time the compiler. ``make setup`` and ``tfx_reference/setup.sh`` compile it.
    """
    try:
        out = subprocess.run(
            [str(python), "-c", _BYTECODE_PROBE], capture_output=True, text=True, timeout=60, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    answer = out.stdout.strip()
    return None if answer == "absent" else answer == "yes"


def bytecode_warnings(pythons: dict[str, Path | str]) -> dict[str, bool | None]:
    """Check every interpreter the benchmark runs; print a WARNING for one without bytecode."""
    found = {system: bytecode_compiled(python) for system, python in pythons.items()}
    for system, compiled in found.items():
        if compiled is False:
            print(
                f"WARNING: {system}'s environment ({pythons[system]}) has no compiled bytecode: "
                "its imports will be timed as compilation (run make setup / tfx_reference/setup.sh)",
                flush=True,
            )
    return found


def run_size(rows: int, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """One size: the CSV, our run and/or TFX's, and the ratios when both ran."""
    workdir.mkdir(parents=True, exist_ok=True)
    for old in ("kubetfx", "tfx"):  # a kept folder from an earlier run: start fresh (no baseline)
        shutil.rmtree(workdir / old, ignore_errors=True)
    csv = prepare_csv(rows, args.source, workdir)
    entry: dict[str, Any] = {"rows": rows, "csv": str(csv), "kubetfx": None, "tfx": None, "ratios": None}
    if not args.only_tfx:
        entry["kubetfx"] = run_ours(
            csv, args.runner, workdir / "kubetfx", rows, args.beam_args, args.worker_pool
        )
        print(table(entry["kubetfx"]), flush=True)
    if args.tfx:
        entry["tfx"] = run_tfx(csv, args.tfx_python, workdir, rows)
        print(table(entry["tfx"]), flush=True)
    if entry["kubetfx"] and entry["tfx"]:
        entry["ratios"] = comparison(entry["kubetfx"], entry["tfx"])
        print(comparison_table(entry["kubetfx"], entry["tfx"]), flush=True)
    return entry


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    pythons: dict[str, Path | str] = {} if args.only_tfx else {"kubetfx": sys.executable}
    if args.tfx:
        pythons["tfx"] = args.tfx_python
    bytecode = bytecode_warnings(pythons)
    results = []
    for rows in args.sizes:
        if args.keep:
            results.append(run_size(rows, args, args.keep / f"rows-{rows}"))
        else:
            with tempfile.TemporaryDirectory(prefix=f"kubetfx-bench-{rows}-") as tmp:
                results.append(run_size(rows, args, Path(tmp)))
    document = {
        "runner": args.runner,
        "cpu_count": os.cpu_count(),
        "label": names.LABEL,
        "bytecode_compiled": bytecode,
        "results": results,
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(document, indent=2, default=str))
    ok = all(r[s]["ok"] for r in results for s in ("kubetfx", "tfx") if r[s] is not None)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
