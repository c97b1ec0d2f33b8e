"""The KServe InferenceService of a model and of each pushed version (push writes the latter).

KServe's TF Serving runtime (ClusterServingRuntime ``kserve-tensorflow-serving``) runs
``tensorflow_model_server --model_name=<InferenceService name> --model_base_path=/mnt/models``,
and an InferenceService's ``storageUri: pvc://<claim>/<path>`` is mounted at ``/mnt/models`` (the
claim's sub-path, read in place, not copied). With ``serving/<model>`` as that path TF Serving
sees every pushed version and serves the newest, loading each new push by itself, as the TF
Serving Deployment does: that is ``manifests/extras/kserve`` (``inference_service`` without a
version).

A canary needs two revisions of one InferenceService that serve two versions; unpinned, both
would load the newest. So push writes into each version, under ``assets.extra/`` (which TF
Serving ignores; published by the version's rename and listed in its file manifest, like the
model):

- ``kubetfx_tfserving.config``: a TF Serving model config (``ModelServerConfig``, text format)
  that serves exactly this version (``model_version_policy { specific { versions: N } }``) under
  the InferenceService's name from ``/mnt/models``;
- ``kubetfx_inferenceservice.yaml``: the same InferenceService plus
  ``args: [--model_config_file=/mnt/models/<N>/assets.extra/kubetfx_tfserving.config]``. KServe
  appends a predictor's args to its runtime's, and TF Serving reads the config file instead of
  ``--model_name``/``--model_base_path`` when it is given one. Applying it makes a new revision
  serving version N (Knative mode: with ``canaryTrafficPercent``, a canary; docs/kubernetes.md).

The name is the model name made a DNS-1035 label (``isvc_name``), which KServe requires. The
predictor keeps the TF Serving Deployment's image version, resources and security context
(``manifests/base/serving.yaml``; the runtime's own default image, TF Serving 2.6.2, predates the
TensorFlow 2.16 that trains the models). Its security context sits on the container alone:
Knative accepts few pod-level fields unless a feature flag allows them. No namespace: it is
applied with ``kubectl -n <namespace>``, where the volume's claim is.
"""

from __future__ import annotations

import copy
import hashlib
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from components import names

ISVC_FILE = "kubetfx_inferenceservice.yaml"  # under a pushed version's assets.extra/
CONFIG_FILE = "kubetfx_tfserving.config"  # under a pushed version's assets.extra/
EXTRA_DIR = "assets.extra"
API_VERSION = "serving.kserve.io/v1beta1"
KIND = "InferenceService"
MODEL_FORMAT = "tensorflow"
RUNTIME = "kserve-tensorflow-serving"
RUNTIME_VERSION = "2.16.1"  # the tensorflow/serving tag of manifests/base/serving.yaml
MODEL_MOUNT = "/mnt/models"  # where KServe mounts the storageUri in the predictor
NAME_MAX = 45  # <name>-predictor-00001 (a Knative revision, a label value) stays within 63
ANNOTATION_MODEL = "kubetfx.io/model-name"
ANNOTATION_VERSION = "kubetfx.io/model-version"

# manifests/base/serving.yaml's TF Serving container, pod securityContext folded in.
RESOURCES = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}}
SECURITY_CONTEXT = {
    "runAsNonRoot": True,
    "runAsUser": 1000,
    "runAsGroup": 1000,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
TMP_VOLUME = {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}  # the root filesystem is read-only

Writer = Callable[[Path], Any]  # writes a version's files into push's temp copy of it

_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")  # KServe's InferenceService name rule


def isvc_name(model_name: str) -> str:
    """The InferenceService name of a model: a DNS-1035 label of at most ``NAME_MAX`` characters.

    A model name that already is one is used as it is (``insurance``). Any other is lower-cased,
    every run of characters outside ``[a-z0-9]`` becomes ``-``, ``m-`` goes in front of a leading
    digit, and ``-`` plus the first 8 hex digits of the model name's sha256 go at the end
    (shortened to fit): model names are case-sensitive directories, so ``My_Data`` and ``my-data``
    are two models and must not share one InferenceService.
    """
    if _LABEL.match(model_name) and len(model_name) <= NAME_MAX:
        return model_name
    base = re.sub(r"[^a-z0-9]+", "-", model_name.lower()).strip("-")
    if not base[:1].isalpha():
        base = f"m-{base}".rstrip("-")
    digest = hashlib.sha256(model_name.encode()).hexdigest()[:8]
    return f"{base[: NAME_MAX - len(digest) - 1].rstrip('-')}-{digest}"


def storage_uri(pvc_name: str, storage_root: str | Path, model_dir: str | Path) -> str:
    """``pvc://<claim>/<model dir relative to the storage root>``: the claim is mounted at the root."""
    relative = Path(os.path.relpath(os.path.abspath(model_dir), os.path.abspath(storage_root)))
    return f"pvc://{pvc_name}/{relative.as_posix()}"


def config_path(version: int) -> str:
    """Where the predictor finds version ``version``'s TF Serving config (under ``MODEL_MOUNT``)."""
    return f"{MODEL_MOUNT}/{version}/{EXTRA_DIR}/{CONFIG_FILE}"


def model_config(name: str, version: int) -> str:
    """TF Serving's model config that serves only ``version`` of the model under ``MODEL_MOUNT``."""
    return (
        "# Written by KubeTFX's push: TF Serving serves only this version (kubetfx_inferenceservice.yaml).\n"
        "model_config_list {\n"
        "  config {\n"
        f'    name: "{name}"\n'
        f'    base_path: "{MODEL_MOUNT}"\n'
        '    model_platform: "tensorflow"\n'
        f"    model_version_policy {{ specific {{ versions: {int(version)} }} }}\n"
        "  }\n"
        "}\n"
    )


def inference_service(model_name: str, uri: str, version: int | None = None) -> dict[str, Any]:
    """The InferenceService serving ``model_name`` from ``uri``: the newest version, or ``version`` only."""
    model: dict[str, Any] = {
        "modelFormat": {"name": MODEL_FORMAT},
        "runtime": RUNTIME,
        "runtimeVersion": RUNTIME_VERSION,
        "storageUri": uri,
    }
    if version is not None:
        model["args"] = [f"--model_config_file={config_path(version)}"]
    model.update(
        resources=RESOURCES,
        securityContext=SECURITY_CONTEXT,
        volumeMounts=[{"name": TMP_VOLUME["name"], "mountPath": "/tmp"}],
    )
    annotations = {ANNOTATION_MODEL: model_name}
    if version is not None:
        annotations[ANNOTATION_VERSION] = str(version)
    doc = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": isvc_name(model_name),
            "labels": {names.POD_LABEL_PART_OF: names.POD_LABEL_APP},
            "annotations": annotations,
        },
        "spec": {"predictor": {"model": model, "volumes": [TMP_VOLUME]}},
    }
    return copy.deepcopy(doc)  # no object twice (YAML would write an alias), none shared with callers


def header(model_name: str, version: int, file: str) -> str:
    """The YAML's opening comment: what it serves and the commands that apply it."""
    patch = '{"spec":{"predictor":{"canaryTrafficPercent":10}}}'
    return (
        f"# KServe InferenceService: version {version} of model {model_name!r}, written by KubeTFX's push.\n"
        f"# TF Serving serves only version {version} ({CONFIG_FILE} beside this file).\n"
        f"#   all traffic:   kubectl -n <namespace> apply -f {file}\n"
        "#   a 10 % canary (Knative mode only; KServe's Standard mode ignores canaryTrafficPercent):\n"
        f"#     kubectl patch --local -f {file} --type merge -p '{patch}' -o yaml \\\n"
        "#       | kubectl -n <namespace> apply -f -\n"
        "# docs/kubernetes.md, section KServe.\n"
    )


def write(version_dir: Path, model_name: str, version: int, uri: str) -> list[Path]:
    """Write the version's TF Serving config and InferenceService into ``version_dir/assets.extra``.

    Push calls it on its temp copy before the file manifest, so both are published with the model
    (a copy of an earlier version's files, from a model copied out of ``serving/``, is replaced).
    """
    import yaml  # kfp's dependency; inside the function like every non-stdlib import here

    extra = Path(version_dir) / EXTRA_DIR
    extra.mkdir(parents=True, exist_ok=True)
    config = extra / CONFIG_FILE
    config.write_text(model_config(isvc_name(model_name), version))
    manifest = extra / ISVC_FILE
    doc = inference_service(model_name, uri, version)
    body = yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)
    manifest.write_text(header(model_name, version, ISVC_FILE) + body)
    return [config, manifest]


def writer(
    storage_root: str | Path, model_dir: Path, model_name: str, version: int, pvc_name: str | None
) -> Writer | None:
    """What writes version ``version``'s files into push's temp copy (None: ``pvc_name`` is None)."""
    if pvc_name is None:
        return None
    uri = storage_uri(pvc_name, storage_root, model_dir)
    return lambda tmp: write(tmp, model_name, version, uri)
