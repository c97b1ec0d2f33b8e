"""KServe: the InferenceService of manifests/extras/kserve and the one push writes into each version.

Offline, as tests/test_k8s_offline.py: ``kubectl kustomize`` renders the folder; every
InferenceService is validated against KServe's own CRD schema (v1beta1, vendored in
``tests/schemas/``) made strict, read by KServe's Python SDK into its model classes
(``V1beta1InferenceService``; the SDK lives in its own venv, ``tests/k8s_tools.sh``, since it
needs protobuf 6 and pandas 2), and the canary command in the pushed file's header is run with
``kubectl patch --local``. The TF Serving config that pins a version is parsed with TF Serving's
own proto (``tensorflow-serving-api``), and a V1 protocol body — ``{"instances": [{"b64": …}]}``
of serialized raw ``tf.Example``s, what KServe's TF runtime hands to TF Serving's REST API — is
decoded as TF Serving decodes it and sent through the pushed SavedModel's ``serving_default``.

Why a jsonschema check and not kubeconform or checkov: kubeconform is a Go binary that neither
PyPI nor Debian ships here; checkov's Kubernetes checks are policies on built-in kinds and skip an
InferenceService; kubernetes-validate bundles only built-in kinds' schemas. The CRD's
openAPIV3Schema with ``jsonschema`` (Draft 4: OpenAPI 3.0's dialect) works offline and, with
``additionalProperties: false`` wherever the CRD does not preserve unknown fields (what
``kubectl --validate=strict`` does), rejects a misspelled field as the API server would warn.
"""

from __future__ import annotations

import base64
import copy
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from model_factory import push_directly, trained_models
from test_k8s_offline import TOOLS_DIR, _missing, _run, _tool

from components import names
from components.lib import kserve_manifest, registry, saved_model

REPO = Path(__file__).resolve().parents[1]
FOLDER = REPO / "manifests" / "extras" / "kserve"
SCHEMA_FILE = Path(__file__).parent / "schemas" / "kserve_inferenceservice_v1beta1.json"
MODEL = names.MODEL_NAME
PVC_URI = f"pvc://{names.DEFAULT_PVC_NAME}/{names.SERVING_DIR}/{MODEL}"


# --- the InferenceService push writes --------------------------------------------------------


@pytest.fixture(scope="module")
def pushed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The formula model pushed twice (versions 1 and 2) onto a fresh storage root."""
    good = trained_models(tmp_path_factory)["good"] / names.MODEL_SERVING_DIR
    storage = tmp_path_factory.mktemp("kserve-storage")
    first = push_directly(good, storage, run_id="run-1")
    second = push_directly(good, storage, run_id="run-2")
    assert (first.version, second.version) == (1, 2)
    model_dir = storage / names.SERVING_DIR / MODEL
    return {"storage": storage, "model_dir": model_dir, "good": good}


def _pushed_isvc(model_dir: Path, version: int) -> tuple[str, dict[str, Any]]:
    text = (model_dir / str(version) / "assets.extra" / kserve_manifest.ISVC_FILE).read_text()
    (doc,) = [d for d in yaml.safe_load_all(text) if d]
    return text, doc


def test_each_version_carries_the_inference_service_that_serves_it_alone(pushed):
    model_dir = pushed["model_dir"]
    for version in (1, 2):
        text, doc = _pushed_isvc(model_dir, version)
        assert doc == kserve_manifest.inference_service(MODEL, PVC_URI, version)
        assert doc["metadata"]["name"] == MODEL and "namespace" not in doc["metadata"]
        assert doc["metadata"]["annotations"][kserve_manifest.ANNOTATION_VERSION] == str(version)
        model = doc["spec"]["predictor"]["model"]
        assert model["storageUri"] == PVC_URI  # the model base: every version, the config picks one
        (arg,) = model["args"]
        flag, path = arg.split("=", 1)
        assert flag == "--model_config_file"
        # KServe mounts the storageUri's sub-path of the claim at /mnt/models: on the storage
        # root the config is here, inside the version it pins, next to its SavedModel.
        local = model_dir / Path(path).relative_to(kserve_manifest.MODEL_MOUNT)
        assert local.is_file() and local.parent.parent == model_dir / str(version)
        assert (model_dir / str(version) / "saved_model.pb").is_file()
        assert f"version {version} of model 'insurance'" in text.splitlines()[0]


def test_the_pinning_config_is_a_tf_serving_model_server_config(pushed):
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    for version in (1, 2):
        path = pushed["model_dir"] / str(version) / "assets.extra" / kserve_manifest.CONFIG_FILE
        config = text_format.Parse(path.read_text(), model_server_config_pb2.ModelServerConfig())
        (model,) = config.model_config_list.config
        assert model.name == MODEL  # the InferenceService's name: KServe's URL /v1/models/<name>
        assert model.base_path == kserve_manifest.MODEL_MOUNT and model.model_platform == "tensorflow"
        assert list(model.model_version_policy.specific.versions) == [version]


def test_the_inference_service_is_part_of_the_pushed_version(pushed):
    """Published by the version's rename and listed in its file manifest, like the model: a file
    changed on the volume afterwards makes the version damaged (saved_model.damage)."""
    v2 = pushed["model_dir"] / "2"
    listed = saved_model.read_manifest(v2) or {}
    for name in (kserve_manifest.ISVC_FILE, kserve_manifest.CONFIG_FILE):
        assert f"assets.extra/{name}" in listed
    assert saved_model.damage(v2) is None
    assert not [p for p in pushed["model_dir"].iterdir() if p.name.startswith(".")]


def test_a_model_copied_out_of_serving_gets_its_own_version_pinned(pushed, tmp_path):
    """A model whose files come from a pushed version (its old InferenceService inside) is pushed
    with an InferenceService of its new version, and the manifest matches it."""
    storage = tmp_path / "storage"
    push_directly(pushed["good"], storage, run_id="a")
    copied = tmp_path / "copied"
    shutil.copytree(storage / names.SERVING_DIR / MODEL / "1", copied)
    assert push_directly(copied, storage, run_id="b").version == 2
    model_dir = storage / names.SERVING_DIR / MODEL
    _, doc = _pushed_isvc(model_dir, 2)
    assert doc["spec"]["predictor"]["model"]["args"] == [
        f"--model_config_file={kserve_manifest.config_path(2)}"
    ]
    assert "versions: 2" in (model_dir / "2" / "assets.extra" / kserve_manifest.CONFIG_FILE).read_text()
    assert saved_model.damage(model_dir / "2") is None


def test_no_inference_service_when_push_is_told_so(pushed, tmp_path):
    from components.lib.blessing import Blessing
    from components.lib.push import push_model

    storage = tmp_path / "storage"
    result = push_model(
        pushed["good"],
        storage_root=str(storage),
        serving_root=names.SERVING_DIR,
        model_name=MODEL,
        run_id="r",
        model_location=str(pushed["good"]),
        blessing=Blessing(names.BLESSED),
        fingerprint="",
        kserve_pvc=None,
    )
    extra = Path(result.serving_path) / "assets.extra"
    assert result.version == 1 and not (extra / kserve_manifest.ISVC_FILE).exists()
    assert not (extra / kserve_manifest.CONFIG_FILE).exists()


def test_storage_uri_names_the_model_dir_relative_to_the_claims_root(tmp_path):
    model_dir = tmp_path / "root" / "models" / "tf" / "claims"
    uri = kserve_manifest.storage_uri("my-pvc", tmp_path / "root", model_dir)
    assert uri == "pvc://my-pvc/models/tf/claims"


@pytest.mark.parametrize(
    ("model_name", "expected"),
    [
        ("insurance", "insurance"),  # already a DNS-1035 label: unchanged
        ("claims-2024", "claims-2024"),
        ("My_Data", "my-data-"),  # changed: a hash of the model name follows
        ("my_data", "my-data-"),
        ("2024.sales", "m-2024-sales-"),  # must start with a letter
        ("a" * 63, "a" * 36 + "-"),  # at most 45 characters
    ],
)
def test_isvc_name_is_a_dns_1035_label_derived_deterministically(model_name, expected):
    import re

    name = kserve_manifest.isvc_name(model_name)
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= kserve_manifest.NAME_MAX
    assert name == kserve_manifest.isvc_name(model_name)  # deterministic
    if expected.endswith("-"):
        assert name.startswith(expected) and len(name) == len(expected) + 8
    else:
        assert name == expected


def test_model_names_that_differ_only_in_case_or_punctuation_get_different_names():
    names_ = {kserve_manifest.isvc_name(m) for m in ("my_data", "My_Data", "my.data", "my-data", "MY-DATA")}
    assert len(names_) == 5


# --- the folder manifests/extras/kserve --------------------------------------------------------


def _serving_container() -> tuple[dict[str, Any], dict[str, Any]]:
    """The TF Serving Deployment's pod spec and container (manifests/base/serving.yaml)."""
    docs = yaml.safe_load_all((REPO / "manifests" / "base" / "serving.yaml").read_text())
    deployment = next(d for d in docs if d and d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    return pod, pod["containers"][0]


def test_the_folders_inference_service_is_the_one_the_code_builds():
    (doc,) = [d for d in yaml.safe_load_all((FOLDER / "inferenceservice.yaml").read_text()) if d]
    assert doc == kserve_manifest.inference_service(MODEL, PVC_URI)  # no version: serves the newest
    assert "args" not in doc["spec"]["predictor"]["model"]


def test_the_predictor_keeps_the_tf_serving_deployments_image_resources_and_security():
    pod, container = _serving_container()
    assert container["image"] == f"tensorflow/serving:{kserve_manifest.RUNTIME_VERSION}"
    model = kserve_manifest.inference_service(MODEL, PVC_URI)["spec"]["predictor"]["model"]
    assert model["resources"] == container["resources"]
    security = model["securityContext"]
    assert container["securityContext"].items() <= security.items()
    pod_level = {k: v for k, v in pod["securityContext"].items() if k != "fsGroup"}
    assert pod_level.items() <= security.items()  # folded into the container's
    assert model["volumeMounts"] == [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]


# --- schema, SDK and kubectl (tools of tests/k8s_tools.sh) -------------------------------------


def _strict(schema: Any) -> Any:
    """The CRD schema with unknown fields refused wherever the CRD does not keep them."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items()}
    if "properties" in out and "additionalProperties" not in out:
        if not out.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    return out


@pytest.fixture(scope="module")
def validator() -> Any:
    import jsonschema

    vendored = json.loads(SCHEMA_FILE.read_text())
    assert vendored["licence"].startswith("Apache-2.0") and vendored["source"].startswith("https://")
    schema = _strict(vendored["openAPIV3Schema"])
    jsonschema.Draft4Validator.check_schema(schema)
    return jsonschema.Draft4Validator(schema)


def _problems(validator: Any, doc: dict[str, Any]) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    kubectl = _tool("kubectl")
    result = _run([kubectl, "kustomize", str(FOLDER)])
    assert result.returncode == 0, f"kubectl kustomize {FOLDER} failed:\n{result.stderr}"
    return [d for d in yaml.safe_load_all(result.stdout) if d]


@pytest.mark.k8s
def test_kustomize_renders_one_inference_service_in_the_pipelines_namespace(rendered, validator):
    (doc,) = rendered
    assert _problems(validator, doc) == []
    assert (doc["apiVersion"], doc["kind"]) == (kserve_manifest.API_VERSION, kserve_manifest.KIND)
    assert doc["metadata"]["namespace"] == "kubeflow"  # where the claim kubetfx-pvc is
    assert doc["metadata"]["labels"][names.POD_LABEL_PART_OF] == names.POD_LABEL_APP
    assert doc["spec"]["predictor"]["model"]["storageUri"] == PVC_URI


def test_every_inference_service_fits_kserves_crd_schema(validator, pushed):
    (folder,) = [d for d in yaml.safe_load_all((FOLDER / "inferenceservice.yaml").read_text()) if d]
    docs = {"extras/kserve": folder}
    docs.update({f"pushed v{v}": _pushed_isvc(pushed["model_dir"], v)[1] for v in (1, 2)})
    for where, doc in docs.items():
        assert _problems(validator, doc) == [], where


def test_the_strict_schema_check_can_fail(validator, pushed):
    _, doc = _pushed_isvc(pushed["model_dir"], 1)
    typo = copy.deepcopy(doc)
    model = typo["spec"]["predictor"]["model"]
    model["storageURI"] = model.pop("storageUri")
    assert any("storageURI" in p for p in _problems(validator, typo))
    wrong_type = copy.deepcopy(doc)
    wrong_type["spec"]["predictor"]["canaryTrafficPercent"] = "10"
    assert any("canaryTrafficPercent" in p for p in _problems(validator, wrong_type))
    wrong_user = copy.deepcopy(doc)
    wrong_user["spec"]["predictor"]["model"]["securityContext"]["runAsUser"] = "1000"
    assert any("runAsUser" in p for p in _problems(validator, wrong_user))


SDK_SCRIPT = r"""
import json, re, sys
from importlib.metadata import version
import kserve
import kubernetes.client.models as k8s

NATIVE = {"str", "int", "float", "bool", "object", "datetime", "date"}

def build(data, kind, path, unknown):
    # the SDK's ApiClient.deserialize drops keys its classes do not know; this notes them
    if data is None:
        return None
    # kserve's classes say list[T] and dict(str, T); kubernetes 37's say List[T] and Dict[str, T]
    if kind.lower().startswith("list["):
        return [build(x, kind[5:-1], f"{path}[{i}]", unknown) for i, x in enumerate(data)]
    if kind.lower().startswith(("dict(", "dict[")):
        inner = re.match(r"[dD]ict[(\[][^,]*, (.*)[)\]]$", kind).group(1)
        return {k: build(v, inner, f"{path}.{k}", unknown) for k, v in data.items()}
    if kind in NATIVE:
        return data
    cls = getattr(kserve.models, kind, None) or getattr(k8s, kind)
    known = {cls.attribute_map[a]: a for a in cls.openapi_types}
    unknown.extend(f"{path}.{k}" for k in data if k not in known)
    return cls(**{known[k]: build(v, cls.openapi_types[known[k]], f"{path}.{k}", unknown)
                  for k, v in data.items() if k in known})

def without_filled_in(back, doc):
    # what the SDK wrote that the document did not have: empty defaults (V1beta1ModelSpec.name = "")
    if isinstance(back, dict):
        kept = {k: v for k, v in back.items() if k in doc or v not in ("", None)}
        return {k: without_filled_in(v, doc.get(k)) for k, v in kept.items()}
    if isinstance(back, list):
        return [without_filled_in(b, d) for b, d in zip(back, doc)]
    return back

out = []
for doc in json.load(sys.stdin):
    unknown = []
    isvc = build(doc, "V1beta1InferenceService", "", unknown)
    assert isinstance(isvc, kserve.V1beta1InferenceService)
    model = isvc.spec.predictor.model
    out.append({
        "sdk": version("kserve"),
        "unknown": unknown,
        "round_trip": without_filled_in(kserve.ApiClient().sanitize_for_serialization(isvc), doc) == doc,
        "name": isvc.metadata.name,
        "format": model.model_format.name,
        "runtime": model.runtime,
        "runtime_version": model.runtime_version,
        "storage_uri": model.storage_uri,
        "args": model.args,
        "run_as_user": model.security_context.run_as_user,
        "read_only_root": model.security_context.read_only_root_filesystem,
        "memory_limit": model.resources.limits["memory"],
        "canary": isvc.spec.predictor.canary_traffic_percent,
    })
print(json.dumps(out))
"""


def _sdk(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    python = TOOLS_DIR / "kserve" / "bin" / "python"
    if not python.exists():
        _missing(f"KServe's SDK venv not found at {python.parent.parent}")
    proc = subprocess.run(
        [str(python), "-c", SDK_SCRIPT],
        input=json.dumps(docs),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.k8s
def test_kserves_sdk_reads_every_inference_service_into_its_model_classes(rendered, pushed):
    docs = [rendered[0], *(_pushed_isvc(pushed["model_dir"], v)[1] for v in (1, 2))]
    read = _sdk(docs)
    assert len(read) == len(docs)
    for got in read:
        assert got["sdk"] == "0.21.0"
        assert got["unknown"] == [] and got["round_trip"] is True, got
        assert (got["name"], got["format"], got["runtime"]) == (MODEL, "tensorflow", kserve_manifest.RUNTIME)
        assert got["runtime_version"] == kserve_manifest.RUNTIME_VERSION
        assert got["storage_uri"] == PVC_URI and got["run_as_user"] == 1000 and got["read_only_root"]
        assert got["memory_limit"] == "1Gi" and got["canary"] is None
    assert [got["args"] for got in read] == [
        None,
        *([f"--model_config_file={kserve_manifest.config_path(v)}"] for v in (1, 2)),
    ]


@pytest.mark.k8s
def test_the_canary_command_in_the_pushed_header_sets_the_traffic_split(validator, pushed):
    """The header's `kubectl patch --local … -o yaml` (no cluster needed), run as written."""
    kubectl = _tool("kubectl")
    model_dir = pushed["model_dir"]
    text, doc = _pushed_isvc(model_dir, 2)
    line = next(li for li in text.splitlines() if "kubectl patch --local" in li)
    patch = line.split("-p '", 1)[1].split("'", 1)[0]
    result = _run(
        [kubectl, "patch", "--local", "-f", str(model_dir / "2" / "assets.extra" / kserve_manifest.ISVC_FILE)]
        + ["--type", "merge", "-p", patch, "-o", "yaml"]
    )
    assert result.returncode == 0, result.stderr
    canary = yaml.safe_load(result.stdout)
    assert canary["spec"]["predictor"]["canaryTrafficPercent"] == 10
    canary["spec"]["predictor"].pop("canaryTrafficPercent")
    assert canary == doc  # nothing else changed
    assert _problems(validator, yaml.safe_load(result.stdout)) == []
    assert _sdk([yaml.safe_load(result.stdout)])[0]["canary"] == 10


# --- the V1 prediction protocol against the pushed SavedModel ----------------------------------


def v1_body(serialized: list[bytes]) -> str:
    """A V1 (TF Serving REST) predict body of raw examples, as a client sends it through KServe."""
    return json.dumps({"instances": [{"b64": base64.b64encode(s).decode("ascii")} for s in serialized]})


def _value(value: Any) -> Any:
    """One JSON value of a request, as TF Serving's json_tensor reads it: ``{"b64": …}`` is bytes."""
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"], validate=True)
    if isinstance(value, list):
        return [_value(v) for v in value]
    return value.encode() if isinstance(value, str) else value


def tf_serving_predict(body: str, signature: Any) -> dict[str, Any]:
    """TF Serving's REST predict in row format ("instances"), on a loaded signature.

    Each instance is the value of the signature's one input, or an object naming its inputs; the
    rows are stacked into one batch per input; one output answers with its rows, several with an
    object per row (TF Serving's ``FillPredictRequestFromJson`` / ``MakeJsonFromTensors``).
    """
    import tensorflow as tf

    request = json.loads(body)
    inputs = signature.structured_input_signature[1]
    columns: dict[str, list[Any]] = {name: [] for name in inputs}
    for instance in request["instances"]:
        named = isinstance(instance, dict) and set(instance) != {"b64"}
        if not named and len(inputs) != 1:
            raise ValueError("an unnamed instance needs a signature with one input")
        row = instance if named else {next(iter(inputs)): instance}
        for name in inputs:
            columns[name].append(_value(row[name]))
    tensors = {name: tf.constant(values, dtype=inputs[name].dtype) for name, values in columns.items()}
    outputs = {k: v.numpy() for k, v in signature(**tensors).items()}
    if len(outputs) == 1:
        (only,) = outputs.values()
        return {"predictions": only.tolist()}
    n = len(next(iter(outputs.values())))
    return {"predictions": [{k: v[i].tolist() for k, v in outputs.items()} for i in range(n)]}


def _examples(rows: list[dict[str, Any]]) -> list[bytes]:
    import tensorflow as tf

    out = []
    for row in rows:
        feature = {}
        for key, value in row.items():
            if isinstance(value, int):
                feature[key] = tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
            elif isinstance(value, float):
                feature[key] = tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
            else:
                feature[key] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
        out.append(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return out


def test_a_v1_body_of_raw_examples_predicts_through_the_pushed_signature(pushed):
    import tensorflow as tf

    rows = [
        {"age": 19, "sex": "female", "bmi": 27.9, "children": 0, "smoker": "yes", "region": "southwest"},
        {"age": 33, "sex": "male", "bmi": 22.7, "children": 0, "smoker": "no", "region": "northwest"},
        {"age": 46, "bmi": 33.4, "children": 1, "smoker": "no"},  # missing features: the defaults
    ]
    serialized = _examples(rows)
    body = v1_body(serialized)
    assert json.loads(body)["instances"][0].keys() == {"b64"}
    # What the pinned InferenceService of version 2 serves: that version's SavedModel.
    version = pushed["model_dir"] / "2"
    signature = tf.saved_model.load(str(version)).signatures[names.SERVING_SIGNATURE]
    response = tf_serving_predict(body, signature)
    direct = signature(**{names.EXAMPLES_INPUT_KEY: tf.constant(serialized)})[names.PREDICTIONS_KEY]
    assert np.shape(response["predictions"]) == (3, 1)
    np.testing.assert_allclose(response["predictions"], direct.numpy(), rtol=1e-6)
    # datagen's formula (tests/model_factory.py): a smoker under 30 bmi, then two non-smokers.
    expected = [
        260 * 19 - 4800 + 20 * (27.9 - 30) + 13500 + 2160,
        260 * 33 - 4800 + 20 * (22.7 - 30) + 2160,
        260 * 46 - 4800 + 480 + 20 * (33.4 - 30) + 2160,
    ]
    np.testing.assert_allclose(np.ravel(response["predictions"]), expected, rtol=1e-5)
    # The same rows named by the signature's input (TF Serving's other row form) agree.
    named = json.dumps({"instances": [{names.EXAMPLES_INPUT_KEY: i} for i in json.loads(body)["instances"]]})
    assert tf_serving_predict(named, signature) == response


def test_the_v1_decoder_refuses_a_body_that_is_not_base64(pushed):
    import tensorflow as tf

    signature = tf.saved_model.load(str(pushed["model_dir"] / "1")).signatures[names.SERVING_SIGNATURE]
    with pytest.raises(ValueError):
        tf_serving_predict(json.dumps({"instances": [{"b64": "not base64!"}]}), signature)


def test_registry_lists_the_versions_the_inference_services_pin(pushed):
    versions = registry.read_index(pushed["storage"], names.STAGE_PUSH)["versions"]
    assert [e["version"] for e in versions] == [1, 2]
    for e in versions:
        _, doc = _pushed_isvc(pushed["model_dir"], e["version"])
        assert doc["metadata"]["annotations"][kserve_manifest.ANNOTATION_MODEL] == e["model_name"]
