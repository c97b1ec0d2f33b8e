"""Benchmark: the reference workload (../shared/WORKLOAD.md) run locally, stage by stage.

    python -m pipelines.benchmark [--sizes 1338,100000,1000000] [--runner inprocess]
                                  [--source ../shared/data/insurance.csv] [--json out.json]

Size 1338 uses the real CSV when ``--source`` exists (else generated rows); larger sizes are
the real rows resampled with small jitter (``components.lib.datagen``), as the workload says.
Each size runs in a fresh storage folder and a fresh process, with the default parameters
(which are the workload's settings). Prints, per stage, wall time, peak resident memory and
rows/s for the data stages, then the total; ``--json`` also writes the figures.

Peak memory in ``inprocess`` mode is the whole process's resident set while that stage ran
(it includes what earlier stages left imported); ``subprocess`` mode measures each stage's
own process tree.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from components import names

DATA_STAGES = ("example-gen", "statistics", "transform", "evaluate")
DEFAULT_SOURCE = Path(__file__).resolve().parents[2] / "shared" / "data" / "insurance.csv"


def _one_size(rows: int, source: Path | None, runner: str, workdir: Path) -> dict:
    """Run the pipeline once at ``rows`` rows in a child process; return its figures."""
    from components.lib.datagen import generate_csv

    csv = workdir / "data.csv"
    if rows == 1338 and source and source.exists():
        csv = source
    else:
        generate_csv(csv, rows=rows, seed=1, source=source if source and source.exists() else None)
    storage = workdir / "storage"
    code = (
        "import json, sys, time; from pathlib import Path; t0 = time.perf_counter()\n"
        "from pipelines.local import run_locally\n"
        f"res = run_locally(Path({str(storage)!r}), Path({str(csv)!r}), {{}},"
        f" mode={runner!r}, log=lambda s: None)\n"
        "print('@@' + json.dumps({'ok': res.run.succeeded, 'pipeline_s': res.run.seconds,"
        " 'process_s': time.perf_counter() - t0,"
        " 'tasks': [dict(task=t.task, status=t.status, seconds=t.seconds, peak_rss_mb=t.peak_rss_mb,"
        " error=t.error) for t in res.run.tasks]}))\n"
    )
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ))
    wall = time.perf_counter() - start
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("@@")), None)
    if line is None:
        raise RuntimeError(
            f"benchmark run at {rows} rows failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    out = json.loads(line[2:])
    out.update(rows=rows, process_wall_s=wall)
    return out


def table(result: dict) -> str:
    rows = result["rows"]
    lines = [
        f"rows={rows:,}  process wall {result['process_wall_s']:.1f} s"
        f"  pipeline {result['pipeline_s']:.1f} s",
        f"  {'stage':<18}{'wall s':>8}{'peak MB':>9}{'rows/s':>12}",
    ]
    for t in result["tasks"]:
        rate = f"{rows / t['seconds']:,.0f}" if t["task"] in DATA_STAGES and t["seconds"] > 0 else ""
        lines.append(f"  {t['task']:<18}{t['seconds']:>8.1f}{t['peak_rss_mb']:>9.0f}{rate:>12}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1338,100000,1000000")
    parser.add_argument("--runner", choices=("inprocess", "subprocess"), default="inprocess")
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="the real CSV")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    results = []
    for size in [int(s) for s in args.sizes.split(",")]:
        with tempfile.TemporaryDirectory(prefix=f"kubetfx-bench-{size}-") as tmp:
            res = _one_size(size, args.source, args.runner, Path(tmp))
        results.append(res)
        print(table(res), flush=True)
        if not res["ok"]:
            print(f"  FAILED: {[t['error'] for t in res['tasks'] if t['error']]}", flush=True)
    if args.json:
        args.json.write_text(
            json.dumps({"runner": args.runner, "label": names.LABEL, "results": results}, indent=2)
        )
    print(json.dumps(results))
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
