"""Beam options: typed options reach Beam unchanged, a local runner skips Prism's download."""

import pytest

from components.errors import StageError
from components.lib.beam import pipeline_options


@pytest.mark.parametrize(
    "args, runner",
    [
        ("--runner=DirectRunner --direct_num_workers=1", "FnApiRunner"),
        ("", "FnApiRunner"),
        ("--runner=direct", "FnApiRunner"),
        ("--runner=DataflowRunner --project=p --region=europe-west1", "DataflowRunner"),
        ("--runner=FlinkRunner --flink_master=host:8081", "FlinkRunner"),
        ("--runner=PrismRunner", "PrismRunner"),
    ],
)
def test_runner_choice(args, runner):
    from apache_beam.options.pipeline_options import DirectOptions, StandardOptions

    options = pipeline_options(args, "transform")
    assert options.view_as(StandardOptions).runner == runner
    if "direct_num_workers" in args:
        assert options.view_as(DirectOptions).direct_num_workers == 1
    if "europe-west1" in args:
        assert options.get_all_options()["region"] == "europe-west1"


@pytest.mark.parametrize(
    "args",
    [
        "",
        "--runner=DirectRunner --direct_num_workers=1",
        "--runner direct --direct_running_mode multi_processing",
        "--runner=apache_beam.runners.portability.portable_runner.PortableRunner --job_endpoint=embed",
        "--runner=DataflowRunner --runner=DirectRunner",
        "--runner=FlinkRunner --flink_master=host:8081",
    ],
)
def test_the_fast_path_rule_reads_the_runner_as_beam_does(args):
    """runner_name parses beam_args without Beam; it must agree with PipelineOptions' reading."""
    from apache_beam.options.pipeline_options import StandardOptions

    from components.lib.beam import runner_name

    beams = str(pipeline_options(args, "statistics").view_as(StandardOptions).runner).rsplit(".", 1)[-1]
    assert runner_name(args, "statistics") == beams


def test_choosing_the_fast_path_does_not_import_beam():
    """A stage that runs in process never pays Beam's 1-2 s import to find that out."""
    import subprocess
    import sys

    code = (
        "import sys; from components.lib.beam import runs_in_process; "
        "assert runs_in_process('--runner=DirectRunner --direct_num_workers=1', 'example_gen'); "
        "assert not runs_in_process('--runner=DataflowRunner', 'example_gen'); "
        "print('apache_beam' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_unparsable_options_name_the_stage():
    with pytest.raises(StageError, match=r"^\[evaluate\] beam_args .* cannot be parsed"):
        pipeline_options("--runner='unterminated", "evaluate")
    from components.lib.beam import runs_in_process

    with pytest.raises(StageError, match=r"^\[example_gen\] beam_args .* cannot be parsed"):
        runs_in_process("--runner='unterminated", "example_gen")


def test_worker_requirements_are_the_lock_pinned_for_pip(tmp_path):
    """scripts/beam_worker_deps.sh: the lock without dev tools, all pinned, and the project's wheel."""
    import shutil
    import subprocess
    import tomllib
    import zipfile
    from pathlib import Path

    if not shutil.which("uv"):
        pytest.skip("uv is not on PATH (make setup installs it)")
    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        ["bash", str(repo / "scripts" / "beam_worker_deps.sh"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    lines = [ln for ln in (tmp_path / "requirements.txt").read_text().splitlines() if ln and ln[0] != "#"]
    pins = dict(ln.split(" ;")[0].split("==", 1) for ln in lines)
    assert all("==" in ln for ln in lines)
    lock = {p["name"]: p.get("version") for p in tomllib.loads((repo / "uv.lock").read_text())["package"]}
    assert pins["apache-beam"] == lock["apache-beam"] == "2.72.0"
    assert pins["tensorflow"] == pins["tensorflow-cpu"] == lock["tensorflow-cpu"]
    assert pins["tensorflow-data-validation"] == lock["tensorflow-data-validation"]
    assert not {"pytest", "ruff", "mypy", "kubetfx"} & set(pins)  # no dev group, not the project itself
    (wheel,) = tmp_path.glob("kubetfx-*-py3-none-any.whl")
    assert "components/lib/statistics.py" in zipfile.ZipFile(wheel).namelist()
