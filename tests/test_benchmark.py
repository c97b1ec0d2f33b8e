"""The benchmark's pure parts: argument parsing, stage mapping, ratios and tables on canned figures.

Nothing here runs a pipeline or TFX and nothing asserts on timings: the figures are made up,
and the tests check that the harness reports exactly what it was given. The last ones check
that the benchmark stays out of the product: not in the wheel, not imported by its code.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from benchmarks import benchmark
from benchmarks.tfx_reference import tfx_pipeline
from components import names

ROOT = Path(__file__).resolve().parents[1]


def _ours(rows: int = 1338, **over: object) -> dict:
    stages = [
        {"stage": stage, "seconds": float(i + 1), "peak_rss_mb": 500.0 + i, "status": "SUCCESS", "error": ""}
        for i, stage in enumerate(benchmark.STAGES)
    ]
    result = {
        "system": "kubetfx",
        "rows": rows,
        "ok": True,
        "load_before": 0.5,
        "pipeline_s": 60.0,
        "process_wall_s": 70.0,
        "peak_rss_mb": 900.0,
        "cpu_s": 80.0,
        "stages": stages,
        "mae": 2500.0,
        "error": "",
    }
    result.update(over)
    return result


def _tfx(rows: int = 1338, **over: object) -> dict:
    stages = [
        {
            "stage": stage,
            "component": tfx_pipeline.TFX_COMPONENT_OF_STAGE[stage],
            "seconds": 2.0 * (i + 1),
            "status": "COMPLETE",
        }
        for i, stage in enumerate(benchmark.STAGES)
    ]
    result = {
        "system": "tfx",
        "rows": rows,
        "ok": True,
        "load_before": 0.5,
        "pipeline_s": 120.0,
        "process_wall_s": 140.0,
        "peak_rss_mb": 1200.0,
        "cpu_s": 100.0,
        "stages": stages,
        "mae": 3000.0,
        "blessed": True,
        "pushed": True,
        "error": "",
    }
    result.update(over)
    return result


# --- Stage mapping --------------------------------------------------------------------------


def test_every_stage_maps_to_one_distinct_tfx_component():
    mapping = tfx_pipeline.TFX_COMPONENT_OF_STAGE
    assert set(mapping) == set(benchmark.STAGES)
    assert len(set(mapping.values())) == len(mapping)
    assert mapping[names.STAGE_EXAMPLE_GEN] == "CsvExampleGen"
    assert mapping[names.STAGE_RESOLVE] == "latest_blessed_model_resolver"
    assert tfx_pipeline.STAGE_OF_TFX_COMPONENT["Pusher"] == names.STAGE_PUSH


def test_kfp_task_names_map_to_stage_names():
    assert benchmark.stage_of_task("example-gen") == names.STAGE_EXAMPLE_GEN
    assert benchmark.stage_of_task("resolve-baseline") == names.STAGE_RESOLVE
    assert benchmark.stage_of_task("train") == names.STAGE_TRAIN


def test_tfx_pipeline_module_imports_without_tensorflow_or_tfx():
    """The benchmark (Python 3.11, no TFX) imports the mapping from the TFX script: it must stay light."""
    code = (
        "import sys, benchmarks.tfx_reference.tfx_pipeline as t; "
        "print(sorted(m for m in ('tensorflow', 'tfx', 'tensorflow_model_analysis') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_tfx_runs_a_local_direct_runner_as_fnapirunner_like_our_stages():
    args = tfx_pipeline.tfx_beam_args("--runner=DirectRunner --direct_num_workers=1")
    assert args == ["--runner=FnApiRunner", "--direct_num_workers=1"]
    assert tfx_pipeline.tfx_beam_args("--direct_num_workers=2") == [
        "--runner=FnApiRunner",
        "--direct_num_workers=2",
    ]
    assert tfx_pipeline.tfx_beam_args("--runner direct") == ["--runner=FnApiRunner"]
    assert tfx_pipeline.tfx_beam_args("--runner=DataflowRunner --project p") == [
        "--runner=DataflowRunner",
        "--project",
        "p",
    ]


# --- Ratios and tables ----------------------------------------------------------------------


def test_ratio_is_ours_over_theirs_and_none_when_undefined():
    assert benchmark.ratio(1.0, 4.0) == 0.25
    assert benchmark.ratio(None, 4.0) is None
    assert benchmark.ratio(1.0, None) is None
    assert benchmark.ratio(1.0, 0.0) is None
    assert benchmark.fmt_ratio(None) == "—"
    assert benchmark.fmt_ratio(0.256) == "0.26"
    assert benchmark.fmt_seconds(12.34) == "12.3"
    assert benchmark.fmt_seconds(0.034) == "0.03"
    assert benchmark.fmt_seconds(None) == "—"


def test_comparison_gives_a_ratio_per_stage_and_for_the_totals():
    ratios = benchmark.comparison(_ours(), _tfx())
    for stage in benchmark.STAGES:
        assert ratios[stage] == pytest.approx(0.5)
    assert ratios["sum_of_stages"] == pytest.approx(0.5)
    assert ratios["pipeline_s"] == pytest.approx(0.5)
    assert ratios["process_wall_s"] == pytest.approx(0.5)
    assert ratios["peak_rss_mb"] == pytest.approx(0.75)
    assert ratios["cpu_s"] == pytest.approx(0.8)


def test_comparison_leaves_missing_stages_undefined():
    ours = _ours()
    ours["stages"] = [s for s in ours["stages"] if s["stage"] != names.STAGE_PUSH]
    ratios = benchmark.comparison(ours, _tfx())
    assert ratios[names.STAGE_PUSH] is None
    assert ratios[names.STAGE_TRAIN] == pytest.approx(0.5)


def test_comparison_table_lists_every_stage_with_its_tfx_component_and_ratio():
    text = benchmark.comparison_table(_ours(), _tfx())
    lines = text.splitlines()
    for i, stage in enumerate(benchmark.STAGES):
        line = next(ln for ln in lines if ln.split()[:1] == [stage])
        assert tfx_pipeline.TFX_COMPONENT_OF_STAGE[stage] in line
        assert f"{i + 1:.1f}" in line and f"{2 * (i + 1):.1f}" in line and "0.50" in line
    rows_line = next(ln for ln in lines if ln.split()[:1] == [names.STAGE_EXAMPLE_GEN])
    assert "1,338" in rows_line and "669" in rows_line  # 1338 rows / 1 s ours, / 2 s TFX
    assert "0.75" in next(ln for ln in lines if "peak RSS" in ln)
    assert "MAE: ours 2,500, TFX 3,000" in text
    assert "WARNING" not in text


def test_comparison_table_warns_when_other_processes_kept_the_machine_busy():
    assert "WARNING" in benchmark.comparison_table(_ours(other_cores=64.0), _tfx())
    assert "WARNING" not in benchmark.comparison_table(_ours(other_cores=0.0), _tfx(other_cores=None))
    assert "other processes used 64.0 of" in benchmark.table(_ours(other_cores=64.0))


def test_other_cores_is_the_machines_busy_time_minus_the_childs_per_second():
    assert benchmark.other_cores(30.0, 10.0, 20.0) == pytest.approx(1.0)
    assert benchmark.other_cores(5.0, 10.0, 20.0) == 0.0  # clock skew never goes negative
    assert benchmark.other_cores(None, 10.0, 20.0) is None
    busy = benchmark.cpu_busy_seconds()
    assert busy is None or busy > 0


def test_rows_per_second_only_for_data_stages():
    text = benchmark.table(_ours(rows=100_000))
    lines = {ln.split()[0]: ln for ln in text.splitlines()[2:] if ln.strip()}
    assert "100,000" in lines[names.STAGE_EXAMPLE_GEN]  # 100,000 rows in 1 s
    assert lines[names.STAGE_TUNE].split() == [names.STAGE_TUNE, "6.0", "505"]
    assert "sum of stages" in text and "55.0" in text


def test_table_of_a_failed_run_shows_the_error():
    result = benchmark._failed(
        "tfx",
        benchmark.Measured(3, "", Path("/nonexistent/err"), 1.0, 100.0, 0.5),
        1338,
        0.1,
    )
    text = benchmark.table(result)
    assert "FAILED" in text and "exit status 3" in text


# --- Child output parsing -------------------------------------------------------------------


def test_last_json_line_skips_noise_and_honours_the_prefix():
    out = 'Successfully installed x\n{"a": 1}\nnoise {"b": 2}\n@@{"c": 3}\n{"d": 4}\n'
    assert benchmark.last_json_line(out) == {"d": 4}
    assert benchmark.last_json_line(out, "@@") == {"c": 3}
    assert benchmark.last_json_line("nothing here") is None


def test_find_number_finds_mae_in_nested_metadata():
    meta = {"blessing": {"blessed": True}, "metrics": {"overall": {"mean_absolute_error": 2345.5}}}
    assert benchmark.find_number(meta, benchmark.MAE_KEYS) == 2345.5
    assert benchmark.find_number({"mae": True}, benchmark.MAE_KEYS) is None


def test_run_measured_reports_this_childs_exit_code_and_output(tmp_path):
    m = benchmark.run_measured(
        [sys.executable, "-c", "import sys; print('{\"x\": 1}'); sys.exit(3)"], tmp_path, "child"
    )
    assert m.other_cores is None or m.other_cores >= 0
    assert m.returncode == 3
    assert benchmark.last_json_line(m.stdout) == {"x": 1}
    assert m.peak_rss_mb > 0 and m.wall_s > 0


# --- Arguments ------------------------------------------------------------------------------


def test_sizes_parse_with_separators_and_scientific_notation():
    assert benchmark.parse_sizes("1338, 100_000,1e6") == [1338, 100_000, 1_000_000]
    for bad in ("", "0", "-5", "1.5", "abc"):
        with pytest.raises((argparse.ArgumentTypeError, ValueError)):
            benchmark.parse_sizes(bad)


def test_defaults_are_the_workload_sizes_without_tfx():
    args = benchmark.parse_args([])
    assert args.sizes == [1338, 100_000, 1_000_000]
    assert args.runner == "inprocess"
    assert not args.tfx and not args.only_tfx
    assert args.tfx_python == benchmark.DEFAULT_TFX_PYTHON


def test_only_tfx_implies_tfx_and_a_missing_tfx_python_is_an_error(tmp_path, capsys):
    fake = tmp_path / "python"
    fake.write_text("")
    args = benchmark.parse_args(["--only-tfx", "--tfx-python", str(fake), "--sizes", "1338"])
    assert args.tfx and args.sizes == [1338]
    with pytest.raises(SystemExit):
        benchmark.parse_args(["--tfx", "--tfx-python", str(tmp_path / "missing")])
    assert "setup.sh" in capsys.readouterr().err


def test_worker_pool_and_beam_args_exclude_each_other(capsys):
    assert benchmark.parse_args(["--worker-pool", "2"]).worker_pool == 2
    assert benchmark.parse_args(["--beam-args=--runner=DirectRunner"]).beam_args == "--runner=DirectRunner"
    with pytest.raises(SystemExit):
        benchmark.parse_args(["--worker-pool", "2", "--beam-args=--runner=DirectRunner"])
    assert "give one of" in capsys.readouterr().err


def test_the_table_names_the_beam_args_and_the_pools_memory():
    text = benchmark.table(
        _ours(
            beam_args="--runner=PortableRunner",
            pool_workers=2,
            pool_started_workers=4,
            pool_peak_process_mb=812.4,
            pool_peak_total_mb=1650.0,
        )
    )
    assert "beam_args --runner=PortableRunner" in text
    assert "worker pool: 2 workers (4 started), peak MB one process 812, all 1650" in text


def test_pool_memory_samples_the_pools_processes_and_stop_ends_them(tmp_path):
    from benchmarks.worker_pool import PoolMemory, start_pool, stop_pool

    pool = start_pool(tmp_path / "pool.log")
    try:
        with PoolMemory(pool, interval_s=0.1) as memory:
            import time

            time.sleep(0.5)
        assert 10 < memory.peak_process_mb <= memory.peak_total_mb < 4000
    finally:
        stop_pool(pool)
    assert pool.process.poll() is not None
    with pytest.raises(ProcessLookupError):
        os.killpg(pool.process.pid, 0)  # no process of its group is left


def test_prepare_csv_uses_the_real_file_at_1338_rows_and_generates_otherwise(tmp_path):
    real = tmp_path / "real.csv"
    real.write_text(",".join(names.COLUMNS) + "\n" + "30,male,25.0,1,no,southwest,4000.0\n" * 5)
    assert benchmark.prepare_csv(1338, real, tmp_path) == real.resolve()
    made = benchmark.prepare_csv(50, real, tmp_path / "gen")
    lines = made.read_text().splitlines()
    assert lines[0].split(",") == list(names.COLUMNS)
    assert len(lines) == 51


def test_json_of_canned_results_round_trips():
    entry = {"rows": 1338, "kubetfx": _ours(), "tfx": _tfx(), "ratios": benchmark.comparison(_ours(), _tfx())}
    assert json.loads(json.dumps(entry))["ratios"][names.STAGE_TRAIN] == pytest.approx(0.5)


def test_bytecode_check_tells_compiled_from_uncompiled_environments(tmp_path, capsys):
    # A stand-in "tensorflow" package in a folder, imported by this interpreter: without and
    # then with its .pyc (compiled as `uv sync --compile-bytecode` would).
    import compileall

    pkg = tmp_path / "site" / "tensorflow"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    python = tmp_path / "python"
    python.write_text(f'#!/bin/sh\nPYTHONPATH={tmp_path / "site"} exec {sys.executable} "$@"\n')
    python.chmod(0o755)
    assert benchmark.bytecode_warnings({"tfx": python}) == {"tfx": False}
    assert "WARNING: tfx's environment" in capsys.readouterr().out
    assert compileall.compile_dir(str(pkg), quiet=1)
    assert benchmark.bytecode_warnings({"tfx": python}) == {"tfx": True}
    assert capsys.readouterr().out == ""
    assert benchmark.bytecode_compiled(tmp_path / "no-such-python") is None


# --- Kept out of the product ----------------------------------------------------------------

PRODUCT_PACKAGES = ("components", "pipelines")


def _build_wheel(out: Path) -> Path:
    """The project's wheel, built from this checkout the way the image's ``uv sync`` builds it."""
    uv = shutil.which("uv")
    if uv is not None:
        subprocess.run(
            [uv, "build", "--wheel", "--out-dir", str(out), str(ROOT)],
            check=True,
            capture_output=True,
            timeout=300,
            cwd=ROOT,
            env={k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"},
        )
    else:
        builder = pytest.importorskip("hatchling.builders.wheel", reason="neither uv nor hatchling")
        builder.WheelBuilder(str(ROOT)).build(directory=str(out), versions=["standard"])
    wheels = sorted(out.glob("*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def wheel_files(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Every file name inside the product wheel (built once for this module)."""
    with zipfile.ZipFile(_build_wheel(tmp_path_factory.mktemp("wheel"))) as whl:
        return whl.namelist()


def test_the_wheel_holds_no_benchmark_code(wheel_files):
    assert wheel_files
    assert not [f for f in wheel_files if f.startswith("benchmarks/")]
    assert not [f for f in wheel_files if "benchmark" in f or "tfx_reference" in f]


def test_the_wheel_holds_every_product_module(wheel_files):
    for package in PRODUCT_PACKAGES:
        on_disk = {
            p.relative_to(ROOT).as_posix()
            for p in (ROOT / package).rglob("*.py")
            if "__pycache__" not in p.parts
        }
        assert on_disk, package
        assert on_disk <= set(wheel_files), sorted(on_disk - set(wheel_files))
    for module in ("components/names.py", "components/lib/train.py", "pipelines/kubetfx_pipeline.py"):
        assert module in wheel_files


def _imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


def test_product_code_never_imports_the_benchmarks():
    sources = [p for package in PRODUCT_PACKAGES for p in (ROOT / package).rglob("*.py")]
    sources += [ROOT / "compile.py", ROOT / "submit.py"]
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            m for m in _imported_modules(path) if m.split(".")[0] == "benchmarks"
        )
        for path in sources
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert {path: mods for path, mods in offenders.items() if mods} == {}


def test_the_benchmark_runs_as_a_module_from_the_repository_root():
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.benchmark", "--help"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        timeout=120,
    )
    assert "python -m benchmarks.benchmark" in out.stdout
    assert "--tfx" in out.stdout
    assert benchmark.TFX_SCRIPT.is_file()
