"""The runtime image, built from images/Dockerfile and run: what a cluster's pods would run.

``images/build.sh`` builds it with buildah (layers cached between runs; where no registry is
reachable, the base is the debootstrap stand-in of images/local_base.sh and Beam's boot program
is left out: ``BEAM_BOOT=none``). Then, on the built image: the packages inside are exactly
``uv.lock``'s (no dev group), the project is a small layer over the dependencies' (which a
change of code leaves cached), it runs as uid 1000, every component and stage library imports,
no build tool or cache is left; the committed YAML runs twice through the backend emulator
with each task's container in the image; and a data stage runs on a Beam worker pool served
from the image.

Needs root and buildah (``bash tests/image_tools.sh``); skipped with the reason elsewhere,
unless ``KUBETFX_REQUIRE_IMAGE=1`` (CI), where a missing tool fails instead. Cold, the build
takes minutes (the locked wheels); warm, seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_backend_e2e import run_twice_and_check

from benchmarks.worker_pool import WorkerPool, _listening, free_port, stop_pool
from components import names
from pipelines.backend_image import exec_in_image, hand_to_pod_user

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
    """uv.lock's packages without the dev group, for the image's interpreter (``environment``)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    uv = shutil.which("uv") or pytest.fail("uv is needed to read uv.lock (pip install uv)")
    export = "export --frozen --no-dev --no-hashes --no-emit-project --format=requirements-txt".split()
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
    assert [len(r.tasks) for r in runs] == [10, 10]
    storage = tmp_path / "volume"
    tops = [storage / names.ARTIFACTS_DIR, storage / names.SERVING_DIR]
    written = [p for top in tops if top.exists() for p in top.rglob("*")]
    assert written, "the runs wrote nothing on the volume"
    foreign = [str(p) for p in written if p.lstat().st_uid != 1000]
    assert not foreign, f"on the volume, not owned by uid 1000: {foreign[:5]}"


@pytest.fixture(scope="module")
def image_pool(image, storage_root, tmp_path_factory) -> Iterator[WorkerPool]:
    """Beam's worker pool served from the image (uid 1000, host network), the storage mounted."""
    port, log = free_port(), tmp_path_factory.mktemp("image_pool") / "pool.log"
    hand_to_pod_user(storage_root)
    container = subprocess.run(
        ["buildah", "from", "--pull-never", "--quiet", image], capture_output=True, text=True, check=True
    ).stdout.strip()
    argv = ["buildah", "run", "--isolation", "chroot", "--user", "1000:1000"]  # the host's network
    argv += ["--volume", f"{storage_root}:{storage_root}", container, "--"]
    argv += ["python", "-m", "apache_beam.runners.worker.worker_pool_main", f"--service_port={port}"]
    with open(log, "wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    pool = WorkerPool(port=port, process=process, log=log)
    deadline = time.monotonic() + POOL_START_S
    try:
        while not _listening(port):
            assert process.poll() is None and time.monotonic() < deadline, pool.log_tail()
            time.sleep(0.5)
        yield pool
    finally:
        stop_pool(pool)
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
    written = [p for p in out.rglob("*") if p.is_file()]
    assert written and all(p.stat().st_uid == 1000 for p in written), "statistics not written as uid 1000"
