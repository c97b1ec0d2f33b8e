"""The pods of the KFP backend emulator: the object store, the image and the container.

- ``ObjectStore``: ``minio://bucket/key`` objects as files, the MinIO stand-in the launcher
  downloads inputs from and uploads outputs to.
- ``build_image_env``: a Python environment like the runtime image's ``/opt/venv``: the
  project from its built wheel over the locked dependencies, never the checkout.
- ``exec_pod``: one container: a fresh process in its own Linux mount namespace
  (``unshare``) with the given bind mounts, the image's environment and a fresh WORKDIR.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import zipfile
from collections.abc import Callable
from pathlib import Path

from pipelines.backend.metadata import BackendError

REPO = Path(__file__).resolve().parents[2]
IMAGE_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "kubetfx" / "kfp-backend"


def available() -> str | None:
    """None when this machine can run pods (mount namespaces), else why not."""
    if not sys.platform.startswith("linux") or not shutil.which("unshare"):
        return "needs Linux and util-linux's unshare"
    probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"cannot create a mount namespace here (unshare: {probe.stderr.strip()}); run as root"
    return None


# --- The object store (MinIO stand-in) ------------------------------------------------------------


class ObjectStore:
    """``minio://bucket/key`` objects as files under a folder; directories are key prefixes."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, uri: str) -> Path:
        if not uri.startswith("minio://"):
            raise BackendError(f"unsupported artifact URI {uri!r} (only minio:// is emulated)")
        return self.root / uri[len("minio://") :]

    def upload(self, local: Path, uri: str) -> None:
        target = self.path(uri)
        if target.exists():
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(local, target) if local.is_dir() else shutil.copy2(local, target)

    def download(self, uri: str, local: Path) -> None:
        source = self.path(uri)
        if not source.exists():
            raise BackendError(f"failed to download input artifact {uri}: no such object")
        local.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(source, local) if source.is_dir() else shutil.copy2(source, local)


def local_path_for_uri(pod: Path, uri: str) -> Path:
    """Where the SDK executor reads/writes an artifact (``/minio/<bucket>/<key>``), in the pod dir."""
    return pod / "minio" / uri[len("minio://") :]


# --- The image: the built wheel over the locked dependencies ---------------------------------------


def build_image_env(log: Callable[[str], None] = print) -> Path:
    """A Python environment like the runtime image's /opt/venv: the project from its wheel.

    The locked third-party packages are taken from this interpreter's site-packages, minus
    the editable install that points at the checkout; the project itself is the wheel that
    ``uv build`` makes from the source tree (its file list is the image's).
    """
    import hashlib
    import sysconfig
    import tempfile

    uv = shutil.which("uv")
    if not uv:
        raise BackendError("building the project wheel needs uv on PATH (`pip install uv`)")
    with tempfile.TemporaryDirectory() as out:
        proc = subprocess.run(
            [uv, "build", "--wheel", "--out-dir", out, str(REPO)], capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise BackendError(f"uv build --wheel failed: {proc.stderr.strip()[-800:]}")
        [wheel] = Path(out).glob("*.whl")
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()[:16]
        env = IMAGE_CACHE / f"image-{digest}"
        if (env / ".ready").exists():
            return env
        # Built aside and renamed into place: runs in parallel (loop pods, other test sessions)
        # never see, nor delete, a half-built environment.
        building = IMAGE_CACHE / f".building-{digest}-{os.getpid()}-{threading.get_ident()}"
        shutil.rmtree(building, ignore_errors=True)
        subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(building)], check=True)  # type: ignore[attr-defined]
        site = Path(sysconfig.get_path("purelib", vars={"base": str(building), "platbase": str(building)}))
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(site)
    deps = Path(sysconfig.get_path("purelib"))
    (site / "_kubetfx_image_deps.py").write_text(
        "import os, site, sys\n"
        f"DEPS = {str(deps)!r}\nCHECKOUT = {str(REPO)!r}\n"
        "sys.path.append(DEPS)\n"
        "for name in sorted(os.listdir(DEPS)):\n"
        "    if name.endswith('.pth'):\n"
        "        with open(os.path.join(DEPS, name)) as fh:\n"
        "            if CHECKOUT in fh.read():\n"
        "                continue  # the editable install of the checkout: not in the image\n"
        "        site.addpackage(DEPS, name, None)\n"
    )
    (site / "_kubetfx_image_deps.pth").write_text("import _kubetfx_image_deps\n")
    (building / ".ready").write_text(wheel.name)
    if env.exists() and not (env / ".ready").exists():  # left half-built by an older emulator
        shutil.rmtree(env, ignore_errors=True)
    try:
        building.rename(env)
    except OSError:  # another process finished the same environment first: use theirs
        shutil.rmtree(building, ignore_errors=True)
        if not (env / ".ready").exists():
            raise BackendError(f"cannot put the image environment in place at {env}") from None
    log(f"image environment: {env} (project from {wheel.name})")
    return env


# --- The container ---------------------------------------------------------------------------------


def exec_pod(
    command: list[str], pod: Path, mounts: dict[str, Path], image: Path, log: Callable[[str], None]
) -> tuple[int, int, list[str]]:
    """The container: its own mount namespace, the image's environment, a fresh WORKDIR."""
    script = ["set -e"]
    for target, source in mounts.items():
        try:
            Path(target).mkdir(parents=True, exist_ok=True)  # the mount point (empty)
        except OSError as e:
            raise BackendError(f"cannot create mount point {target}: {e}") from None
        script.append(f'mount --bind "{source}" "{target}"')
    script.append(f'cd "{pod / "home"}"')
    script.append('exec "$@"')
    env = {
        "PATH": f"{image / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "VIRTUAL_ENV": str(image),
        "HOME": str(pod / "home"),
        "TMPDIR": str(pod / "tmp"),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "1"),
    }
    argv = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        "\n".join(script),
        "pod",
        *command,
    ]
    return run_streaming(argv, log, env)


def run_streaming(
    argv: list[str], log: Callable[[str], None], env: dict[str, str] | None = None
) -> tuple[int, int, list[str]]:
    """Run a pod's process, its output logged line by line as it comes: (exit code, peak KiB, lines)."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    assert proc.stdout is not None
    lines: list[str] = []
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))
        log("    " + lines[-1])
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, int(usage.ru_maxrss), lines
