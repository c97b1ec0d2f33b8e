"""The pods of the KFP backend emulator in the runtime image: one ``buildah run`` per task.

``exec_in_image`` is ``pod.exec_pod`` with the container a real one of the image that
``images/build.sh`` built: a fresh working container of the image per task (its own writable
layer, removed afterwards, as a pod's is), the image's ENV, WORKDIR and ``/opt/venv``, run as
uid/gid 1000 (a pipeline task pod's identity: the image's ``USER``; the manifests run every
pod of theirs as 1000 too). The emulator's directories are bind-mounted where the pod has its
volumes: ``/minio``, ``/tmp/kfp_outputs`` and ``/tmp/kfp`` (the launcher's) and the storage
folder at the ``pvcMount`` path. A task pod's root file system is writable (the manifests make
it read-only for the loader and serving containers only, and KFP sets no securityContext on
task pods), so the container layer is too. Network: none but loopback (a network namespace of
its own: ``unshare --net``, as buildah's chroot isolation cannot make one), except for the
example-gen pod, which ``manifests/extras/object-store-egress.yaml`` lets reach an object store
over HTTPS; the launcher's own traffic (ML Metadata, MinIO) stays outside the container, in the
emulator.

``buildah`` runs with ``--isolation chroot``: no Docker daemon and no registry are needed
(``podman run`` cannot set rlimits on these machines).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from pipelines.backend.metadata import BackendError
from pipelines.backend.pod import run_streaming

POD_USER = (1000, 1000)  # the image's USER; runAsUser/runAsGroup of the manifests' pods
NETWORKED_STAGES = ("example-gen",)  # manifests/extras/object-store-egress.yaml


def image_available(image: str) -> str | None:
    """None when ``image`` can be run here with buildah, else why not (one line)."""
    buildah = shutil.which("buildah")
    if not buildah:
        return "needs buildah to run tasks in an image (apt-get install -y buildah)"
    if not shutil.which("ip"):
        return "needs iproute2's ip to give a pod without network its loopback (apt-get install -y iproute2)"
    probe = subprocess.run(
        [buildah, "inspect", "--type", "image", "--format", "{{.FromImageID}}", image],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        build = "CONTAINER_ENGINE=buildah images/build.sh"
        return f"cannot run image {image}: it is not in buildah's storage (build it with: {build})"
    return None


def hand_to_pod_user(*paths: Path) -> None:
    """What the data loader's init container does to the volume: uid 1000 owns it (recursively here)."""
    uid, gid = POD_USER
    for top in paths:
        os.chown(top, uid, gid)
        for root, dirs, files in os.walk(top):
            for name in dirs + files:
                os.lchown(os.path.join(root, name), uid, gid)


def exec_in_image(
    command: list[str],
    pod: Path,
    mounts: dict[str, Path],
    image: str,
    log: Callable[[str], None],
    *,
    network: bool = False,
    hostname: str | None = None,
) -> tuple[int, int, list[str]]:
    """The task's container: ``command`` in a fresh container of ``image``; (exit code, peak KiB, log).

    ``hostname``: the container's (default: its id, which only the container itself resolves).
    """
    hand_to_pod_user(*{source for target, source in mounts.items() if source.is_relative_to(pod)})
    created = subprocess.run(
        ["buildah", "from", "--pull-never", "--quiet", image], capture_output=True, text=True
    )
    if created.returncode != 0:
        raise BackendError(f"cannot create a container of {image}: {created.stderr.strip()[-300:]}")
    container = created.stdout.strip().splitlines()[-1]
    try:
        argv = [] if network else ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "pod"]
        argv += ["buildah", "run", "--isolation", "chroot", "--user", f"{POD_USER[0]}:{POD_USER[1]}"]
        argv += ["--hostname", hostname] if hostname else []
        for target, source in mounts.items():
            argv += ["--volume", f"{source}:{target}"]
        argv += [container, "--", *command]
        return run_streaming(argv, log)
    finally:
        subprocess.run(["buildah", "rm", container], capture_output=True)
