"""The runtime image, built from images/Dockerfile and run: what a cluster's pods would run.

``images/build.sh`` builds it with buildah (layers cached between runs; where no registry is
reachable, the base is the debootstrap stand-in of images/local_base.sh and Beam's boot program
is built from Beam's Go source: ``BEAM_BOOT=built``, scripts/beam_boot.sh). Then, on the built
image: the packages inside are exactly ``uv.lock``'s (no dev group), the project is a small layer
over the dependencies' (which a change of code leaves cached), it runs as uid 1000, every
component and stage library imports, no build tool or cache is left; the committed YAML runs
twice through the backend emulator with each task's container in the image; a data stage runs on
a Beam worker pool served from the image; and the image's ENTRYPOINT is Beam's boot, which with
``--worker_pool`` serves a PortableRunner job from the host.

Needs root and buildah (``bash tests/image_tools.sh``); skipped with the reason elsewhere,
unless ``KUBETFX_REQUIRE_IMAGE=1`` (CI), where a missing tool fails instead. Cold, the build
takes minutes (the locked wheels); warm, seconds.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from beam_boot_job import BOOT_POOL_PORT, stop_session
from test_backend_e2e import run_twice_and_check
from test_beam_boot import (
    JOB,
    build_boot,
    check_boot_version,
    check_pool_log,
    check_served_by_boot,
    module_version,
)

from benchmarks.worker_pool import WorkerPool, _listening
from components import names
from pipelines.backend.image import exec_in_image, hand_to_pod_user

pytestmark = pytest.mark.image

REPO = Path(__file__).resolve().parents[1]
POOL_START_S = 120.0


def _require(reason: str) -> None:
    if os.environ.get("KUBETFX_REQUIRE_IMAGE") == "1":
        pytest.fail(f"the runtime image is required here (KUBETFX_REQUIRE_IMAGE=1) but {reason}")
    pytest.skip(f"runtime image: {reason}")


@pytest.fixture(scope="module")
def image() -> str:
    """The image images/build.sh builds (its reference, printed last)."""
    if not shutil.which("buildah"):
        _require("buildah is not installed (bash tests/image_tools.sh)")
    if os.geteuid() != 0:
        _require("building and running it with buildah here needs root")
    t0 = time.perf_counter()
    proc = subprocess.run(
        ["bash", "images/build.sh"],
        cwd=REPO,
        env={**os.environ, "CONTAINER_ENGINE": "buildah"},
        capture_output=True,
        text=True,
    )
    tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
    assert proc.returncode == 0, f"images/build.sh failed (exit {proc.returncode}): {tail}"
    print(f"images/build.sh: {time.perf_counter() - t0:.0f} s")
    return proc.stdout.strip().splitlines()[-1]


def run_in(image: str, script: str, *, user: str = "1000:1000") -> subprocess.CompletedProcess:
    """``sh -c script`` in a fresh container of ``image`` (no network), removed afterwards."""
    container = subprocess.run(
        ["buildah", "from", "--pull-never", "--quiet", image], capture_output=True, text=True, check=True
    ).stdout.strip()
    try:
        argv = ["unshare", "--net", "buildah", "run", "--isolation", "chroot", "--user", user]
        return subprocess.run([*argv, container, "--", "sh", "-c", script], capture_output=True, text=True)
    finally:
        subprocess.run(["buildah", "rm", container], capture_output=True)


def _locked_versions(environment: dict[str, str]) -> dict[str, str]:
    """uv.lock's packages without the dev group, with the ``mlflow`` extra the image installs, for the
    image's interpreter (``environment``)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    uv = shutil.which("uv") or pytest.fail("uv is needed to read uv.lock (pip install uv)")
    export = "export --frozen --no-dev --extra mlflow --no-hashes --no-emit-project --format=requirements-txt"
    export = export.split()
    exported = subprocess.run([uv, *export], cwd=REPO, capture_output=True, text=True, check=True).stdout
    versions = {}
    for line in exported.splitlines():
        if not line.strip() or line.lstrip().startswith(("#", "-")):
            continue
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate(environment):
            (spec,) = req.specifier
            versions[canonicalize_name(req.name)] = spec.version
    return versions


# The image's installed distributions and its marker environment (PEP 508), as JSON.
LIST_DISTRIBUTIONS = """
import json, importlib.metadata as m
from packaging.markers import default_environment
print(json.dumps([{d.metadata["Name"]: d.version for d in m.distributions()}, default_environment()]))
"""


def test_packages_in_the_image_are_the_lock(image):
    from packaging.utils import canonicalize_name

    listed = run_in(image, f"python - <<'EOF'\n{LIST_DISTRIBUTIONS}EOF")
    assert listed.returncode == 0, listed.stderr
    distributions, environment = json.loads(listed.stdout)
    inside = {canonicalize_name(k): v for k, v in distributions.items()}
    locked = _locked_versions(environment)  # the lock forks on python_full_version
    assert inside.pop("kubetfx", None), "the project itself is not installed in the image"
    inside.pop("pip")  # ensurepip's, for Beam's boot (`python -m pip show apache-beam`)
    if "setuptools" not in locked:
        inside.pop("setuptools", None)  # ensurepip installs one only where the lock has none
    differ = {n: (inside.get(n), v) for n, v in locked.items() if inside.get(n) != v}
    assert not differ, f"image vs uv.lock (image, lock): {differ}"
    assert not set(inside) - set(locked), f"in the image, not in uv.lock: {sorted(set(inside) - set(locked))}"


def test_runs_as_1000_and_every_stage_imports(image):
    script = (
        "import importlib, pkgutil, components, components.lib\n"
        "mods = [m.name for p in (components, components.lib) "
        "for m in pkgutil.walk_packages(p.__path__, p.__name__ + '.')]\n"
        "mods += ['tensorflow', 'tensorflow_data_validation', 'tensorflow_transform', "
        "'tensorflow_model_analysis', 'apache_beam', 'kfp.dsl.executor_main']\n"
        "[importlib.import_module(m) for m in mods]\n"
        "print(len(mods), components.__file__)\n"
    )
    proc = run_in(image, f'id -u; id -g; python - <<"EOF"\n{script}EOF')
    assert proc.returncode == 0, proc.stderr[-2000:]
    uid, gid, imported = proc.stdout.strip().splitlines()[-3:]
    assert (uid, gid) == ("1000", "1000")
    count, where = imported.split()
    assert int(count) > 40 and where.startswith("/opt/venv/lib/python3.11/site-packages/components/")


def test_no_build_tools_or_caches_are_left(image):
    proc = run_in(
        image,
        "for tool in uv gcc g++ cc make; do command -v $tool && echo LEFT $tool; done; "
        "for d in /root/.cache /home/kubetfx/.cache /src /tmp/uv-cache; do [ -e $d ] && echo LEFT $d; done; "
        "ls /var/lib/apt/lists | grep -v -x -e lock -e partial | sed 's/^/LEFT apt list /'; "
        "find /opt/venv /home/kubetfx -name '*.whl' | sed 's/^/LEFT /'; true",
        user="0:0",
    )
    assert proc.returncode == 0, proc.stderr
    assert "LEFT" not in proc.stdout, proc.stdout


def test_the_project_is_a_small_layer_over_the_dependencies(image):
    """A change of code adds only a small layer: the locked venv is a layer of its own, below it.

    images/Dockerfile copies the dependencies' venv (stage deps, cached while pyproject.toml and
    uv.lock stay) and then the project's files into its site-packages (stage project).
    """
    proc = subprocess.run(["buildah", "inspect", "--type", "image", image], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    sizes = [layer["size"] for layer in json.loads(data["Manifest"])["layers"]]
    steps = [h.get("created_by", "") for h in data["OCIv1"]["history"] if not h.get("empty_layer")]
    assert len(sizes) == len(steps), (sizes, steps)
    assert steps[-1].rstrip().endswith(" in /opt/venv/lib/python3.11/site-packages/"), steps[-1]
    assert sizes[-1] < 50e6, f"the project's layer is {sizes[-1] / 1e6:.0f} MB"
    venv = [size for size, step in zip(sizes, steps, strict=True) if step.rstrip().endswith(" in /opt/venv")]
    assert len(venv) == 1 and venv[0] > 1e9, list(zip(sizes, steps, strict=True))


def test_tasks_have_no_network_but_example_gen(image, tmp_path):
    probe = [
        "python",
        "-c",
        "import socket\ntry:\n    socket.create_connection(('1.1.1.1', 53), timeout=3)\n"
        "    print('NET UP')\nexcept OSError as e:\n    print('NET DOWN', e)",
    ]
    code, _, lines = exec_in_image(probe, tmp_path, {}, image, lambda s: None, network=False)
    assert code == 0 and lines[-1].startswith("NET DOWN"), lines


def test_committed_yaml_runs_twice_in_the_image(image, kfp_backend_ready, tmp_path):
    runs = run_twice_and_check(tmp_path, image=image)
    assert [len(r.tasks) for r in runs] == [11, 11]  # the ten stages and finalize, the exit handler
    storage = tmp_path / "volume"
    tops = [storage / names.ARTIFACTS_DIR, storage / names.SERVING_DIR]
    written = [p for top in tops if top.exists() for p in top.rglob("*")]
    assert written, "the runs wrote nothing on the volume"
    foreign = [str(p) for p in written if p.lstat().st_uid != 1000]
    assert not foreign, f"on the volume, not owned by uid 1000: {foreign[:5]}"


@pytest.fixture(scope="module")
def image_pool(image, storage_root, tmp_path_factory) -> Iterator[WorkerPool]:
    """The image's ENTRYPOINT (Beam's boot) with ``--worker_pool``: uid 1000, host network, storage mounted.

    Boot serves port 50000 (it fixes the port), so that port must be free on this machine.
    """
    log = tmp_path_factory.mktemp("image_pool") / "pool.log"
    assert not _listening(BOOT_POOL_PORT), f"port {BOOT_POOL_PORT} (boot's worker pool) is taken here"
    hand_to_pod_user(storage_root)
    container = subprocess.run(
        ["buildah", "from", "--pull-never", "--quiet", image], capture_output=True, text=True, check=True
    ).stdout.strip()
    argv = ["buildah", "run", "--isolation", "chroot", "--user", "1000:1000"]  # the host's network
    argv += ["--volume", f"{storage_root}:{storage_root}", container, "--"]
    argv += [*image_entrypoint(image), "--worker_pool"]
    with open(log, "wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    pool = WorkerPool(port=BOOT_POOL_PORT, process=process, log=log)
    deadline = time.monotonic() + POOL_START_S
    try:
        while not _listening(BOOT_POOL_PORT):
            assert process.poll() is None and time.monotonic() < deadline, pool.log_tail()
            time.sleep(0.5)
        yield pool
    finally:
        stop_session(process)  # boot starts SDK workers in process groups of their own
        subprocess.run(["buildah", "rm", container], capture_output=True)


def test_statistics_on_a_worker_pool_in_the_image(image, image_pool, examples, storage_root, tmp_path):
    """The statistics stage in a container of the image, its Beam work on the pool's workers."""
    out = storage_root / "stats_in_image_pool"
    out.mkdir()
    hand_to_pod_user(out)
    script = (
        "import json, sys\nfrom pathlib import Path\nfrom components.lib.statistics import run_statistics\n"
        "r = run_statistics(Path(sys.argv[1]), Path(sys.argv[2]), beam_args=sys.argv[3])\n"
        "print(json.dumps({'method': r.method, 'rows': r.rows, 'runner': r.metadata().get('runner')}))\n"
    )
    examples_dir = examples.metadata[names.META_STORAGE_PATH]
    beam_args = image_pool.beam_args(workers=1)
    command = ["timeout", "600", "python", "-c", script, examples_dir, str(out), beam_args]
    mounts = {str(storage_root): storage_root}
    # Beam's job service (in this container) tells the workers its host name: one they resolve.
    run = {"network": True, "hostname": "localhost"}
    code, _, lines = exec_in_image(command, tmp_path, mounts, image, lambda s: None, **run)
    assert code == 0, "\n".join(lines[-20:])
    result = json.loads(lines[-1])
    assert result["method"] == "beam" and result["runner"] == "PortableRunner", result
    assert sum(result["rows"].values()) > 0, result
    assert image_pool.started_workers() >= 1, image_pool.log_tail()
    check_pool_log(image_pool.log.read_text(errors="replace"))  # the workers were boot's
    written = [p for p in out.rglob("*") if p.is_file()]
    assert written and all(p.stat().st_uid == 1000 for p in written), "statistics not written as uid 1000"


def image_entrypoint(image: str) -> list[str]:
    proc = subprocess.run(["buildah", "inspect", "--type", "image", image], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["OCIv1"]["config"]["Entrypoint"]


def copy_beam_folder(image: str, to: Path) -> None:
    """The image's /opt/apache/beam, copied to ``to`` (a container of the image, mounted)."""
    argv = ["buildah", "from", "--pull-never", "--quiet", image]
    container = subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()
    try:
        mounted = subprocess.run(["buildah", "mount", container], capture_output=True, text=True, check=True)
        shutil.copytree(Path(mounted.stdout.strip()) / "opt/apache/beam", to, symlinks=True)
    finally:
        subprocess.run(["buildah", "rm", container], capture_output=True)


def sdk_image_was_there() -> bool:
    """Whether buildah holds Beam's SDK image: images/build.sh then took boot from it (BEAM_BOOT=sdk)."""
    sdk = re.search(r"^ARG BEAM_SDK_IMAGE=(\S+)$", (REPO / "images/Dockerfile").read_text(), re.M)
    assert sdk, "no ARG BEAM_SDK_IMAGE in images/Dockerfile"
    argv = ["buildah", "inspect", "--type", "image", f"docker.io/{sdk[1]}"]
    return subprocess.run(argv, capture_output=True).returncode == 0


def test_the_entrypoint_is_beams_boot_built_from_source(image, tmp_path):
    """The ENTRYPOINT /opt/apache/beam/boot is what scripts/beam_boot.sh builds, its licenses beside it."""
    assert image_entrypoint(image) == ["/opt/apache/beam/boot"]
    beam = tmp_path / "beam"
    copy_beam_folder(image, beam)
    if (beam / "boot").read_bytes().startswith(b"#!"):
        _require("it was built with BEAM_BOOT=none (the stand-in), not Beam's boot program")
    version, _ = module_version(beam / "boot")  # checks the package: Beam's Python SDK boot
    if sdk_image_was_there():
        return  # Beam's own image's boot (BEAM_BOOT=sdk)
    assert (beam / "LICENSE").is_file(), sorted(p.name for p in beam.iterdir())
    assert (beam / "third_party_licenses/go/google.golang.org/grpc/LICENSE").is_file()
    folder, stderr = build_boot()  # what images/build.sh staged (cached: no build)
    assert (folder / "boot").read_bytes() == (beam / "boot").read_bytes(), "not the boot beam_boot.sh built"
    assert check_boot_version(beam / "boot", stderr) == version.removeprefix("v")


def test_the_entrypoint_with_worker_pool_serves_a_portable_runner_job(image, tmp_path):
    """``ENTRYPOINT --worker_pool`` in a container (uid 1000), a PortableRunner job from the host.

    Boot's pool listens on port 50000 (boot fixes it): the container and the job's process share
    a network namespace of the test's own (buildah's chroot isolation has none of its own).
    """
    out = tmp_path / "job"
    out.mkdir()
    hand_to_pod_user(out)
    container = subprocess.run(
        ["buildah", "from", "--pull-never", "--quiet", image], capture_output=True, text=True, check=True
    ).stdout.strip()
    pool = ["buildah", "run", "--isolation", "chroot", "--user", "1000:1000", "--volume", f"{out}:{out}"]
    pool += [container, "--", *image_entrypoint(image), "--worker_pool"]
    argv = ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "pool-ns"]
    argv += [sys.executable, str(JOB)]
    try:
        proc = subprocess.run([*argv, str(out), "--", *pool], capture_output=True, text=True, timeout=900)
    finally:
        subprocess.run(["buildah", "rm", container], capture_output=True)
    log = (out / "pool.log").read_text(errors="replace") if (out / "pool.log").exists() else ""
    assert proc.returncode == 0, proc.stderr[-3000:] + log[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    check_served_by_boot(result, python="/opt/venv/bin/python", uid=1000)
    check_pool_log(log)
    print(f"job on the image's worker pool: {result['seconds']} s")


def test_without_go_the_build_falls_back_to_the_stand_in(image, tmp_path):
    """No Beam SDK image and no Go: images/build.sh says so and builds with BEAM_BOOT=none.

    Built under another name (the layers are shared with ``image``'s: ~1 min), then removed.
    """
    path = [d for d in os.environ["PATH"].split(os.pathsep) if not (Path(d) / "go").exists()]
    env = {**os.environ, "CONTAINER_ENGINE": "buildah", "REGISTRY": "localhost/kubetfx-boot-none"}
    env["PATH"] = os.pathsep.join(path)
    if sdk_image_was_there():
        pytest.skip("Beam's SDK image is here: images/build.sh takes boot from it")
    proc = subprocess.run(["bash", "images/build.sh"], cwd=REPO, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    fallback = proc.stdout.strip().splitlines()[-1]
    try:
        said = [line for line in proc.stderr.splitlines() if "BEAM_BOOT=none" in line]
        assert said and "cannot build Beam's boot program" in said[0], proc.stderr[-2000:]
        copy_beam_folder(fallback, tmp_path / "beam")
        assert (tmp_path / "beam/boot").read_bytes() == (REPO / "images/beam_boot_none.sh").read_bytes()
    finally:
        subprocess.run(["buildah", "rmi", fallback], capture_output=True)
