"""Offline checks of the Kubernetes side: manifests, runtime Dockerfile, shell scripts.

No cluster and no container engine: each overlay is rendered with `kubectl kustomize`, parsed
strictly and checked structurally, then scanned by checkov; the Dockerfile goes through
hadolint and the scripts through shellcheck. `bash tests/k8s_tools.sh` installs the tools.

A missing tool skips its tests locally, with the reason; where the environment variable CI
is set (CI runs `.ci/run` with CI=true) it fails them instead, so CI cannot skip silently.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any, NoReturn

import pytest
import yaml

from components import names

pytestmark = pytest.mark.k8s

REPO = Path(__file__).resolve().parents[1]
MANIFESTS = REPO / "manifests"
OVERLAYS = ("minikube", "cloud", "kubeflow-profile")
EXTRAS = sorted((MANIFESTS / "extras").glob("*.yaml"))  # applied by hand, outside the overlays
TOOLS_DIR = Path(os.environ.get("KUBETFX_TOOLS_DIR", "/opt/kubetfx-tools"))
SHELL_SCRIPTS = [
    *sorted(REPO.glob("scripts/*.sh")),
    REPO / "images" / "build.sh",
    REPO / "images" / "local_base.sh",
    REPO / "images" / "beam_boot_none.sh",
    REPO / "tests" / "image_tools.sh",
    REPO / "tests" / "k8s_tools.sh",
    REPO / "tests" / "browser_tools.sh",
]

NAMESPACE = "kubeflow"
PROFILE_NAMESPACE = "kubeflow-user-example-com"  # overlays/kubeflow-profile: Kubeflow's example profile
OVERLAY_NAMESPACE = {"minikube": NAMESPACE, "cloud": NAMESPACE, "kubeflow-profile": PROFILE_NAMESPACE}
PVC_NAME = "kubetfx-pvc"
MOUNT_PATH = "/mnt/kubetfx"
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
RUNTIME_IMAGE = f"kubetfx/runtime:{VERSION}"
SERVING_IMAGE = "tensorflow/serving:2.16.1"
CLUSTER_SCOPED = {"PersistentVolume", "StorageClass", "Namespace", "ClusterRole", "ClusterRoleBinding"}


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _missing(reason: str) -> NoReturn:
    reason += " (install: bash tests/k8s_tools.sh)"
    if _in_ci():
        pytest.fail(f"CI is set, so a missing tool is a failure: {reason}")
    pytest.skip(reason)


def _tool(name: str) -> str:
    """Path of a tool: on PATH, or in its own venv of tests/k8s_tools.sh."""
    found = shutil.which(name)
    if found is None and (TOOLS_DIR / name / "bin" / name).exists():
        found = str(TOOLS_DIR / name / "bin" / name)
    if found is None:
        _missing(f"{name} not found")
    return found


def _run(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def kubectl() -> str:
    """kubectl whose embedded kustomize understands `labels:` and `patches:` (v4 or newer)."""
    path = _tool("kubectl")
    out = _run([path, "version", "--client", "-o", "json"]).stdout
    kustomize = json.loads(out or "{}").get("kustomizeVersion", "")
    major = re.match(r"v?(\d+)", kustomize)
    if not major or int(major.group(1)) < 4:
        _missing(f"{path} embeds kustomize {kustomize or 'unknown'}, need v4+")
    return path


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(
    request: pytest.FixtureRequest, kubectl: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """One overlay rendered once: its name, YAML file and parsed documents."""
    overlay = request.param
    result = _run([kubectl, "kustomize", str(MANIFESTS / "overlays" / overlay)])
    assert result.returncode == 0, f"kubectl kustomize {overlay} failed:\n{result.stderr}"
    path = tmp_path_factory.mktemp(f"render-{overlay}") / f"{overlay}.yaml"
    path.write_text(result.stdout)
    docs = [d for d in yaml.safe_load_all(result.stdout) if d is not None]
    return {"overlay": overlay, "path": path, "docs": docs}


def _one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def _pod_spec(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return _one(docs, kind, name)["spec"]["template"]["spec"]


def _mount_of_pvc(pod: dict[str, Any], container: dict[str, Any]) -> dict[str, Any]:
    """The container's volumeMount of the pipeline PVC (asserting there is exactly one)."""
    pvc_volumes = {
        v["name"] for v in pod["volumes"] if v.get("persistentVolumeClaim", {}).get("claimName") == PVC_NAME
    }
    mounts = [m for m in container.get("volumeMounts", []) if m["name"] in pvc_volumes]
    assert len(mounts) == 1, f"{container['name']} should mount {PVC_NAME} once, mounts: {mounts}"
    return mounts[0]


# --- structure of the rendered manifests --------------------------------------------------------


def test_every_document_is_a_named_kubernetes_object(rendered: dict[str, Any]) -> None:
    docs = rendered["docs"]
    assert docs, f"{rendered['overlay']} rendered nothing"
    keys = set()
    for doc in docs:
        assert isinstance(doc, dict), doc
        assert doc.get("apiVersion") and doc.get("kind"), doc
        assert doc.get("metadata", {}).get("name"), doc
        key = (doc["kind"], doc["metadata"]["name"])
        assert key not in keys, f"duplicate {key}"
        keys.add(key)
        if doc["kind"] not in CLUSTER_SCOPED:
            assert doc["metadata"].get("namespace") == OVERLAY_NAMESPACE[rendered["overlay"]], key
    assert {"PersistentVolumeClaim", "Job", "Deployment", "Service", "NetworkPolicy"} <= {k for k, _ in keys}


def test_pvc_is_rwx_3gi_kubetfx_pvc(rendered: dict[str, Any]) -> None:
    pvcs = [d for d in rendered["docs"] if d["kind"] == "PersistentVolumeClaim"]
    assert [p["metadata"]["name"] for p in pvcs] == [PVC_NAME]
    spec = pvcs[0]["spec"]
    assert spec["accessModes"] == ["ReadWriteMany"]
    assert spec["resources"]["requests"]["storage"] == "3Gi"
    assert spec.get("storageClassName"), "each overlay sets the storage class"


def test_storage_matches_overlay(rendered: dict[str, Any]) -> None:
    docs = rendered["docs"]
    pvc = _one(docs, "PersistentVolumeClaim", PVC_NAME)["spec"]
    pvs = [d for d in docs if d["kind"] == "PersistentVolume"]
    if rendered["overlay"] == "minikube":
        assert len(pvs) == 1
        pv = pvs[0]["spec"]
        assert pv["hostPath"]["path"]
        assert pv["accessModes"] == ["ReadWriteMany"] and pv["capacity"]["storage"] == "3Gi"
        assert pv["storageClassName"] == pvc["storageClassName"]
        assert pvc["volumeName"] == pvs[0]["metadata"]["name"]
        assert pv["claimRef"] == {"namespace": NAMESPACE, "name": PVC_NAME}
    else:
        assert pvs == [], f"the {rendered['overlay']} overlay provisions its volume dynamically"
        assert pvc["storageClassName"] == "kubetfx-rwx"
        assert "volumeName" not in pvc


def test_overlays_differ_only_in_storage(kubectl: str) -> None:
    def without_storage(overlay: str) -> list[dict[str, Any]]:
        result = _run([kubectl, "kustomize", str(MANIFESTS / "overlays" / overlay)])
        assert result.returncode == 0, result.stderr
        docs = [d for d in yaml.safe_load_all(result.stdout) if d and d["kind"] != "PersistentVolume"]
        for d in docs:
            if d["kind"] == "PersistentVolumeClaim":
                d["spec"].pop("storageClassName", None)
                d["spec"].pop("volumeName", None)
        return sorted(docs, key=lambda d: (d["kind"], d["metadata"]["name"]))

    assert without_storage("minikube") == without_storage("cloud")


def test_profile_overlay_is_the_cloud_overlay_in_the_profile_namespace(kubectl: str) -> None:
    def without_namespace(overlay: str) -> list[dict[str, Any]]:
        result = _run([kubectl, "kustomize", str(MANIFESTS / "overlays" / overlay)])
        assert result.returncode == 0, result.stderr
        docs = [d for d in yaml.safe_load_all(result.stdout) if d]
        for d in docs:
            assert d["metadata"].pop("namespace") == OVERLAY_NAMESPACE[overlay], d["metadata"]["name"]
        return sorted(docs, key=lambda d: (d["kind"], d["metadata"]["name"]))

    assert without_namespace("kubeflow-profile") == without_namespace("cloud")


def test_serving_mounts_volume_read_only(rendered: dict[str, Any]) -> None:
    pod = _pod_spec(rendered["docs"], "Deployment", "kubetfx-serving")
    (container,) = pod["containers"]
    assert container["image"] == SERVING_IMAGE
    mount = _mount_of_pvc(pod, container)
    assert mount["mountPath"] == MOUNT_PATH and mount.get("readOnly") is True
    args = container["args"]
    assert f"--model_base_path={MOUNT_PATH}/serving/insurance" in args
    assert "--model_name=insurance" in args
    assert {p["containerPort"] for p in container["ports"]} == {8500, 8501}
    probe = container["readinessProbe"]["httpGet"]
    assert probe["path"] == "/v1/models/insurance"
    assert container["resources"]["limits"] and container["resources"]["requests"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    service = _one(rendered["docs"], "Service", "kubetfx-serving")["spec"]
    assert {p["port"] for p in service["ports"]} == {8500, 8501}


def test_data_loader_copies_configmap_onto_volume(rendered: dict[str, Any]) -> None:
    pod = _pod_spec(rendered["docs"], "Job", "kubetfx-data-loader")
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert any(v.get("configMap", {}).get("name") == "kubetfx-data" for v in volumes.values())
    for container in pod["initContainers"] + pod["containers"]:
        assert container["image"] == RUNTIME_IMAGE, "the image tag follows pyproject's version"
        assert _mount_of_pvc(pod, container)["mountPath"] == MOUNT_PATH
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    (copier,) = pod["containers"]
    assert copier.get("securityContext", {}).get("runAsUser") in (None, 1000)
    assert pod["securityContext"]["runAsUser"] == 1000 and pod["securityContext"]["runAsNonRoot"] is True
    script = copier["command"][-1]
    for layout_dir in ("data/modules", "artifacts", "serving/insurance", "registry", "metadata"):
        assert layout_dir in script


def test_storageclass_examples_are_rwx_classes_named_for_the_cloud_overlay() -> None:
    files = sorted((MANIFESTS / "overlays" / "cloud" / "storageclasses").glob("*.yaml"))
    assert len(files) == 3
    for path in files:
        (doc,) = list(yaml.safe_load_all(path.read_text()))
        assert doc["apiVersion"] == "storage.k8s.io/v1" and doc["kind"] == "StorageClass", path
        assert doc["metadata"]["name"] == "kubetfx-rwx", path
        assert doc["provisioner"], path


def _extra(name: str) -> list[dict[str, Any]]:
    """The documents of one manifests/extras/ file, all in the pipeline's namespace."""
    docs = [d for d in yaml.safe_load_all((MANIFESTS / "extras" / name).read_text()) if d]
    assert all(d["metadata"]["namespace"] == NAMESPACE for d in docs)
    return docs


def test_volume_shell_mounts_the_volume() -> None:
    assert [p.name for p in EXTRAS] == ["object-store-egress.yaml", "tensorboard.yaml", "volume-shell.yaml"]
    pod = _one(_extra("volume-shell.yaml"), "Pod", "kubetfx-volume-shell")["spec"]
    (container,) = pod["containers"]
    assert container["image"] == RUNTIME_IMAGE
    assert _mount_of_pvc(pod, container)["mountPath"] == MOUNT_PATH
    assert pod["activeDeadlineSeconds"] <= 3600


def test_tensorboard_reads_every_runs_logs_from_the_volume_read_only() -> None:
    docs = _extra("tensorboard.yaml")
    pod = _one(docs, "Pod", "kubetfx-tensorboard")["spec"]
    (container,) = pod["containers"]
    assert container["image"] == RUNTIME_IMAGE
    mount = _mount_of_pvc(pod, container)
    assert mount["mountPath"] == MOUNT_PATH and mount["readOnly"] is True
    claim = next(v for v in pod["volumes"] if v.get("persistentVolumeClaim"))["persistentVolumeClaim"]
    assert claim["readOnly"] is True
    command = container["command"]
    assert command[0] == "tensorboard" and command[command.index("--logdir") + 1] == f"{MOUNT_PATH}/artifacts"
    assert command[command.index("--host") + 1] == "127.0.0.1"  # reached by kubectl port-forward only
    policy = _one(docs, "NetworkPolicy", "kubetfx-tensorboard")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"] and not policy.get("ingress")


def test_object_store_egress_opens_https_for_example_gen_only() -> None:
    """data=gs://… or s3://…: example_gen's pods, and no other, may reach HTTPS outside the cluster."""
    (policy,) = _extra("object-store-egress.yaml")
    assert policy["kind"] == "NetworkPolicy"
    spec = policy["spec"]
    assert spec["podSelector"]["matchLabels"] == {
        names.POD_LABEL_PART_OF: names.POD_LABEL_APP,
        names.POD_LABEL_STAGE: names.STAGE_EXAMPLE_GEN.replace("_", "-"),  # as the pipeline labels it
    }
    assert spec["policyTypes"] == ["Egress"] and "ingress" not in spec  # adds egress, denies nothing else
    (rule,) = spec["egress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 443}]
    (to,) = rule["to"]
    assert to["ipBlock"]["cidr"] == "0.0.0.0/0" and "10.0.0.0/8" in to["ipBlock"]["except"]


# --- linters ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkov_report(rendered: dict[str, Any]) -> dict[str, Any]:
    """checkov once per overlay, on the rendered manifests plus extras/ (offline: --skip-download)."""
    checkov = _tool("checkov")
    files = [arg for path in (rendered["path"], *EXTRAS) for arg in ("--file", str(path))]
    result = _run(
        [checkov, *files, "--framework", "kubernetes", "--output", "json", "--skip-download"],
        timeout=300,
    )
    assert result.stdout.strip(), f"checkov printed no report:\n{result.stderr[-3000:]}"
    report = json.loads(result.stdout)
    return report[0] if isinstance(report, list) else report


def test_checkov_has_no_failed_checks(checkov_report: dict[str, Any]) -> None:
    summary = checkov_report["summary"]
    failed = [
        f"{c['check_id']} {c['check_name']} ({c['resource']})"
        for c in checkov_report["results"]["failed_checks"]
    ]
    assert summary["failed"] == 0, "checkov failures:\n" + "\n".join(failed)
    assert summary["passed"] > 100, "checkov checked suspiciously little"


def test_checkov_skips_are_justified(checkov_report: dict[str, Any]) -> None:
    for check in checkov_report["results"]["skipped_checks"]:
        comment = check["check_result"].get("suppress_comment", "")
        assert len(comment) > 30, f"{check['check_id']} on {check['resource']} is skipped without a reason"


def test_hadolint_dockerfile() -> None:
    hadolint = _tool("hadolint")
    result = _run([hadolint, "--failure-threshold", "warning", "images/Dockerfile"])
    assert result.returncode == 0, result.stdout + result.stderr


def test_shellcheck_scripts() -> None:
    shellcheck = _tool("shellcheck")
    assert (REPO / "scripts" / "minikube_up.sh") in SHELL_SCRIPTS
    result = _run([shellcheck, *map(str, SHELL_SCRIPTS)])
    assert result.returncode == 0, result.stdout + result.stderr


# --- conventions the image must keep (plain text, no tool needed) -------------------------------


def test_dockerfile_conventions() -> None:
    text = (REPO / "images" / "Dockerfile").read_text()
    assert "python:3.11-slim-bookworm" in text
    assert re.search(r'"uv==\$\{UV_VERSION\}"', text) and "UV_VERSION=0.13.9" in text
    assert "uv sync --frozen --no-dev --no-editable" in text
    assert re.search(r"^USER 1000:1000$", text, re.M)
    assert "PATH=/opt/venv/bin:$PATH" in text and "PYTHONDONTWRITEBYTECODE=1" in text
    assert 'org.opencontainers.image.version="${VERSION}"' in text
    assert not re.search(r"apt-get (dist-)?upgrade", text)


def test_runtime_image_is_a_beam_sdk_worker_image() -> None:
    """Beam's boot program of the locked Beam version is the ENTRYPOINT, in the venv's environment."""
    import tomllib

    text = (REPO / "images" / "Dockerfile").read_text()
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    beam = next(p["version"] for p in lock["package"] if p["name"] == "apache-beam")
    assert f"ARG BEAM_SDK_IMAGE=apache/beam_python3.11_sdk:{beam}" in text
    assert "COPY --from=beam_sdk /opt/apache/beam /opt/apache/beam" in text
    # Users' builds take boot from Beam's image; BEAM_BOOT=built/none (offline builds) is opt-in.
    assert re.search(r"^ARG BEAM_BOOT=sdk$", text, re.M)
    assert "FROM ${PYTHON_IMAGE} AS beam_boot_built" in text
    assert "COPY images/beam_boot/ /opt/apache/beam/" in text
    assert "FROM ${BEAM_SDK_IMAGE} AS beam_boot_sdk" in text
    assert "FROM beam_boot_${BEAM_BOOT} AS beam_sdk" in text
    assert re.search(r'^ENTRYPOINT \["/opt/apache/beam/boot"\]$', text, re.M)
    assert "RUN_PYTHON_SDK_IN_DEFAULT_ENVIRONMENT=1" in text  # else boot builds a venv without our stack
    assert "-m ensurepip" in text  # boot runs `python -m pip show apache-beam`
    assert not re.search(r"^CMD ", text, re.M)  # arguments would go to boot


def test_build_context_holds_what_the_dockerfile_copies() -> None:
    """images/build.sh stages a minimal context: it must hold every COPY source, and no more."""
    dockerfile = (REPO / "images" / "Dockerfile").read_text()
    copied: set[str] = set()
    for line in re.findall(r"^COPY (?!--from)(.+)$", dockerfile, re.M):
        copied.update(src.rstrip("/") for src in line.split()[:-1])
    staged = re.search(r"^CONTEXT_FILES=\((.*)\)$", (REPO / "images" / "build.sh").read_text(), re.M)
    assert staged, "CONTEXT_FILES=(...) not found in images/build.sh"
    assert (
        set(staged.group(1).split())
        == copied
        == {
            "pyproject.toml",
            "uv.lock",
            "README.md",
            "components",
            "pipelines",
            "images/beam_boot_none.sh",
            "images/beam_boot",
        }
    )


# --- network policies ---------------------------------------------------------------------------

# A pipeline task pod's labels, as pipelines/kubetfx_pipeline.py puts them on every task.
PIPELINE_PODS = [
    {names.POD_LABEL_PART_OF: names.POD_LABEL_APP, names.POD_LABEL_STAGE: stage}
    for stage in ("example-gen", "transform", "train", "push")
]


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a Kubernetes label selector (matchLabels and matchExpressions) selects ``labels``."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        present = key in labels
        ok = {
            "In": present and labels.get(key) in values,
            "NotIn": not present or labels[key] not in values,
            "Exists": present,
            "DoesNotExist": not present,
        }[operator]
        if not ok:
            return False
    return True


def _policies(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d["spec"] for d in docs if d["kind"] == "NetworkPolicy"}


def test_selector_matching() -> None:
    selector = {"matchLabels": {"a": "1"}, "matchExpressions": [{"key": "b", "operator": "Exists"}]}
    assert _selects(selector, {"a": "1", "b": "x"})
    assert not _selects(selector, {"a": "1"}) and not _selects(selector, {"a": "2", "b": "x"})
    assert _selects({"matchExpressions": [{"key": "c", "operator": "NotIn", "values": ["y"]}]}, {})
    assert not _selects({"matchExpressions": [{"key": "c", "operator": "In", "values": ["y"]}]}, {})


def test_each_policy_selects_exactly_its_pods(rendered: dict[str, Any]) -> None:
    """The pipeline policies select every task pod and nothing else: the loader and serving pods
    carry part-of=kubetfx too (kustomization labels) and must keep their own, narrower policies."""
    docs = rendered["docs"]
    pods = {
        "loader": _one(docs, "Job", "kubetfx-data-loader")["spec"]["template"]["metadata"]["labels"],
        "serving": _one(docs, "Deployment", "kubetfx-serving")["spec"]["template"]["metadata"]["labels"],
        **{f"pipeline {i}": labels for i, labels in enumerate(PIPELINE_PODS)},
    }
    pipeline = {name for name in pods if name.startswith("pipeline")}
    expected = {
        "kubetfx-data-loader": {"loader"},
        "kubetfx-serving": {"serving"},
        "kubetfx-pipeline": pipeline,
        "kubetfx-pipeline-kube-api": pipeline,
    }
    policies = _policies(docs)
    assert set(policies) == set(expected)
    for name, spec in policies.items():
        selected = {pod for pod, labels in pods.items() if _selects(spec["podSelector"], labels)}
        assert selected == expected[name], name
    # Without its stage label a pod is not a pipeline task, even with part-of=kubetfx.
    part_of_only = {names.POD_LABEL_PART_OF: names.POD_LABEL_APP}
    assert not _selects(policies["kubetfx-pipeline"]["podSelector"], part_of_only)


def _egress(spec: dict[str, Any]) -> set[tuple[str, int, str | None, tuple[tuple[str, str], ...]]]:
    """(protocol, port, namespace, pod labels) of every egress rule; None/() where any is allowed."""
    out = set()
    for rule in spec.get("egress", []):
        peers = rule.get("to") or [{}]
        for peer in peers:
            namespace = (
                (peer.get("namespaceSelector") or {})
                .get("matchLabels", {})
                .get("kubernetes.io/metadata.name")
            )
            pod = tuple(sorted(((peer.get("podSelector") or {}).get("matchLabels") or {}).items()))
            for port in rule["ports"]:
                out.add((port["protocol"], port["port"], namespace, pod))
    return out


def test_pipeline_pods_reach_only_dns_metadata_object_store_kfp_and_the_api(rendered: dict[str, Any]) -> None:
    policies = _policies(rendered["docs"])
    pipeline = policies["kubetfx-pipeline"]
    assert sorted(pipeline["policyTypes"]) == ["Egress", "Ingress"]
    assert not pipeline.get("ingress"), "nothing connects to a pipeline pod: no ingress rule"
    dns = (("k8s-app", "kube-dns"),)
    assert _egress(pipeline) == {
        ("UDP", 53, "kube-system", dns),
        ("TCP", 53, "kube-system", dns),
        ("TCP", 8080, "kubeflow", (("component", "metadata-grpc-server"),)),  # metadata-grpc-service
        ("TCP", 9000, "kubeflow", (("app", "minio"),)),  # minio-service
        ("TCP", 8333, "kubeflow", (("app", "seaweedfs"),)),  # minio-service on Kubeflow's SeaweedFS
        ("TCP", 8887, "kubeflow", (("app", "ml-pipeline"),)),  # ml-pipeline, gRPC
    }
    kube_api = policies["kubetfx-pipeline-kube-api"]
    assert kube_api["policyTypes"] == ["Egress"]
    assert _egress(kube_api) == {("TCP", port, None, ()) for port in (443, 6443, 8443)}


def test_loader_and_serving_have_no_istio_sidecar(rendered: dict[str, Any]) -> None:
    """In a Kubeflow profile namespace (Istio injection on) a sidecar would keep the Job from
    completing, and could not reach istiod through serving's NetworkPolicy."""
    for kind, name in (("Job", "kubetfx-data-loader"), ("Deployment", "kubetfx-serving")):
        annotations = _one(rendered["docs"], kind, name)["spec"]["template"]["metadata"]["annotations"]
        assert annotations["sidecar.istio.io/inject"] == "false", name
