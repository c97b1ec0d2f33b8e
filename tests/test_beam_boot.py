"""Beam's boot program built from Beam's Go source (scripts/beam_boot.sh), run on this machine.

The runtime image's ENTRYPOINT when Beam's SDK image cannot be pulled (images/build.sh,
``BEAM_BOOT=built``; tests/test_image.py runs it in the image). Here, without the image: the
build's module version, and boot's ``--worker_pool`` serving a real PortableRunner job — boot
starts Beam's ``worker_pool_main``, which starts each SDK worker as ``/opt/apache/beam/boot``
(a path boot fixes: an overlay on /opt in a mount namespace of the test's own puts the built
binary there, nothing on the machine changes), which fetches the job's provisioning and artifacts,
checks ``python -m pip show apache-beam`` and starts the SDK harness. Port 50000, which boot
also fixes, is in a network namespace of the test's own.

Needs Go and the Go module proxy the first time (the build is cached under
``~/.cache/kubetfx/beam-boot``; ~2 min cold), root for the namespaces; skipped with the reason
otherwise, unless ``KUBETFX_REQUIRE_IMAGE=1`` (CI, where the image needs this boot).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "beam_boot.sh"
JOB = REPO / "tests" / "beam_boot_job.py"
BEAM_MODULE = "github.com/apache/beam/sdks/v2"
JOB_TIMEOUT_S = 600


def locked_beam() -> str:
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    return next(p["version"] for p in lock["package"] if p["name"] == "apache-beam")


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def _require(reason: str) -> None:
    if os.environ.get("KUBETFX_REQUIRE_IMAGE") == "1":
        pytest.fail(f"Beam's boot program is required here (KUBETFX_REQUIRE_IMAGE=1) but {reason}")
    pytest.skip(f"Beam's boot program: {reason}")


def build_boot() -> tuple[Path, str]:
    """Run scripts/beam_boot.sh; its output folder and its stderr."""
    if not shutil.which("go") and not list((Path.home() / ".cache/kubetfx/beam-boot").glob("v*/boot")):
        _require("go is not installed and nothing is cached")
    proc = subprocess.run(["bash", str(SCRIPT)], cwd=REPO, capture_output=True, text=True, timeout=1200)
    if proc.returncode != 0:
        _require(f"scripts/beam_boot.sh failed: {proc.stderr.strip().splitlines()[-1:]}")
    return Path(proc.stdout.strip().splitlines()[-1]), proc.stderr


@pytest.fixture(scope="module")
def boot_build() -> tuple[Path, str]:
    return build_boot()


def module_version(binary: Path) -> tuple[str, dict[str, str]]:
    """``go version -m``: the main module's version and the build settings."""
    go = shutil.which("go") or pytest.skip("go is not installed: cannot read the binary's build info")
    out = subprocess.run(
        [go, "version", "-m", str(binary)], capture_output=True, text=True, check=True
    ).stdout
    rows = [line.split("\t")[1:] for line in out.splitlines() if line.startswith("\t")]
    (path,) = [r[1] for r in rows if r[0] == "path"]
    assert path == f"{BEAM_MODULE}/python/container", out
    (version,) = [r[2] for r in rows if r[0] == "mod" and r[1] == BEAM_MODULE]
    build = dict(r[1].split("=", 1) for r in rows if r[0] == "build" and "=" in r[1])
    return version, build


def check_boot_version(binary: Path, stderr: str) -> str:
    """The locked Beam's boot, or the nearest served one above it with the reason said."""
    version, build = module_version(binary)
    assert build.get("CGO_ENABLED") == "0" and build.get("-trimpath") == "true", build
    built, locked = version.removeprefix("v"), locked_beam()
    if built != locked:  # said on stderr: not served (or the proxy unreachable and this one cached)
        assert _version_key(built) > _version_key(locked), (built, locked)
        said = [
            line for line in stderr.splitlines() if f"Beam {built}" in line and f"{locked} (uv.lock" in line
        ]
        assert said or f"(uv.lock: {locked})" in stderr, stderr
    return built


def test_boot_is_built_from_beams_source_at_the_locked_version_or_the_nearest_above(boot_build):
    folder, stderr = boot_build
    binary = folder / "boot"
    built = check_boot_version(binary, stderr)
    assert folder.name == f"v{built}"
    assert "Apache License" in (folder / "LICENSE").read_text()
    go_licenses = folder / "third_party_licenses" / "go"
    licensed = {p.parent.relative_to(go_licenses).as_posix() for p in go_licenses.rglob("LICENSE*")}
    assert {"google.golang.org/grpc", "google.golang.org/protobuf"} <= licensed, sorted(licensed)
    assert "statically linked" in subprocess.run(["file", str(binary)], capture_output=True, text=True).stdout
    again = subprocess.run(["bash", str(SCRIPT)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and again.stdout.strip() == str(folder), again.stderr
    assert "building" not in again.stderr, "a second run built again"


@pytest.mark.parametrize(
    "env, message",
    [
        ({"PATH": "/usr/bin:/bin"}, "beam_boot.sh: go is not installed"),
        ({"GOPROXY": "direct"}, "beam_boot.sh: GOPROXY=direct names no Go module proxy"),
        (
            {"GOPROXY": "http://127.0.0.1:9"},
            "beam_boot.sh: the Go module proxy (http://127.0.0.1:9) is not reachable",
        ),
    ],
)
def test_no_go_or_no_proxy_is_one_line(env, message, tmp_path):
    if "PATH" not in env and not shutil.which("go"):
        pytest.skip("go is not installed")
    proc = subprocess.run(
        ["bash", str(SCRIPT)],
        cwd=REPO,
        env={**os.environ, "KUBETFX_BEAM_BOOT_CACHE": str(tmp_path / "cache"), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith(message), proc.stderr


def worker_venv(root: Path) -> Path:
    """A venv with pip (boot's ``python -m pip show apache-beam``) seeing this venv's packages."""
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=300)
    (site,) = venv.glob("lib/python3*/site-packages")
    here = sysconfig.get_paths()["purelib"]
    (site / "kubetfx_venv.pth").write_text(f"import site; site.addsitedir({here!r})\n")
    return venv


def check_served_by_boot(result: dict, *, python: str, uid: int) -> None:
    """Every element ran in an SDK worker that boot started, as boot starts it."""
    rows = result["elements"]
    assert sorted(r["x"] for r in rows) == list(range(12)) and all(r["square"] == r["x"] ** 2 for r in rows)
    for row in rows:
        assert row["parent_exe"] == "/opt/apache/beam/boot", row
        assert row["WORKER_ID"] and row["PIPELINE_OPTIONS_FILE"] == "pipeline_options.json", row
        assert (
            row["SEMI_PERSISTENT_DIRECTORY"] == "/tmp" and row["RUN_PYTHON_SDK_IN_DEFAULT_ENVIRONMENT"] == "1"
        ), row
        assert row["python"] == python and row["uid"] == uid and row["beam"] == locked_beam(), row
        assert row["main"].endswith("apache_beam/runners/worker/sdk_worker_main.py"), row


def check_pool_log(log: str) -> None:
    assert "--service_port=50000 --container_executable=/opt/apache/beam/boot" in log, log[-2000:]
    assert "Starting worker with command ['/opt/apache/beam/boot', '--id=" in log, log[-2000:]


def test_boot_worker_pool_serves_a_portable_runner_job(boot_build, tmp_path):
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        _require("the namespaces of this test need root, unshare and ip (bash tests/image_tools.sh)")
    folder, _ = boot_build
    upper, work, out = tmp_path / "opt", tmp_path / "opt-work", tmp_path / "job"
    (upper / "apache/beam").mkdir(parents=True)
    work.mkdir()
    out.mkdir()
    shutil.copy2(folder / "boot", upper / "apache/beam/boot")
    venv = worker_venv(tmp_path)
    setup = (
        'ip link set lo up && mount -t overlay overlay -o "lowerdir=/opt,upperdir=$1,workdir=$2" /opt '
        '&& shift 2 && exec "$@"'
    )
    argv = ["unshare", "--net", "--mount", "--propagation", "private", "sh", "-c", setup, "boot-ns"]
    argv += [
        str(upper),
        str(work),
        sys.executable,
        str(JOB),
        str(out),
        "--",
        "/opt/apache/beam/boot",
        "--worker_pool",
    ]
    env = {
        **os.environ,
        "PATH": f"{venv / 'bin'}:{os.environ['PATH']}",
        "RUN_PYTHON_SDK_IN_DEFAULT_ENVIRONMENT": "1",
    }
    env.pop("VIRTUAL_ENV", None)
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=JOB_TIMEOUT_S)
    log = (out / "pool.log").read_text(errors="replace") if (out / "pool.log").exists() else ""
    assert proc.returncode == 0, proc.stderr[-3000:] + log[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    check_served_by_boot(result, python=str(venv / "bin/python"), uid=0)
    check_pool_log(log)
    print(f"job on boot's worker pool: {result['seconds']} s")
