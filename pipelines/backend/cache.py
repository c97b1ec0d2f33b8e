"""Task caching as the open-source KFP backend computes it (backend/src/v2/cacheutils, driver).

The driver (``driver.Container``; from 2.14 ``driver/cache.go``) gives a task with
``cachingOptions.enableCache`` a fingerprint: SHA-256 of the JSON of a ``CacheKey``
(``api/v2alpha1/cache_key.proto``, ``cacheutils.GenerateCacheKey``/``GenerateFingerPrint``) made of

- the input parameter values and the input artifacts' *names* (their ML Metadata ids), so a
  task fed by a producer that ran again (a new artifact) never hits;
- the output artifacts' types and the output parameters' types (URIs wiped);
- the container's image and its command + args as compiled (placeholders unresolved);
- from 2.15 the sorted, de-duplicated names of the PVCs the task mounts (kubeflow/pipelines#12220):
  before 2.15 two tasks that differ only in their volume share a fingerprint.

It asks the API server for the newest task of the same pipeline with that fingerprint
(``GetExecutionCache``), whose entry the launcher filed after the task succeeded
(``createCache``); on a hit the driver records a CACHED execution carrying the cached one's
output parameters and artifacts (``reuseCachedOutputs``, ``PublishExecution(..., CACHED)``) and
Argo skips the executor (``when: cached-decision != true``, argocompiler/container.go): no pod.

The JSON is Python's (sorted keys, no spaces) rather than Go's ``encoding/json`` byte for byte;
what goes into the key, and so which runs share a fingerprint, is the backend's.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pipelines.backend.metadata import at_least


def pvc_names(platform: dict[str, Any], executor_label: str, dag_inputs: dict[str, Any]) -> list[str]:
    """The PVCs a task mounts (``makeVolumeMountPatch``): a constant, or a parent DAG input parameter."""
    executors = (
        platform.get("platforms", {}).get("kubernetes", {}).get("deploymentSpec", {}).get("executors", {})
    )
    found = []
    for mount in executors.get(executor_label, {}).get("pvcMount", []):
        spec = mount.get("pvcNameParameter", {})
        if "runtimeValue" in spec:
            found.append(str(spec["runtimeValue"]["constant"]))
        elif "componentInputParameter" in spec:
            found.append(dag_inputs[spec["componentInputParameter"]].string_value)
        elif "constant" in mount:
            found.append(str(mount["constant"]))
    return sorted(set(found))


def cache_key(
    executor_input: Any,  # noqa: ANN401 (ExecutorInput)
    output_parameter_types: dict[str, str],
    container: dict[str, Any],
    pvcs: list[str],
    version: str,
) -> dict[str, Any]:
    """``GenerateCacheKey`` as a JSON object (protojson field names, empty fields omitted)."""
    from google.protobuf import json_format

    inputs, outputs = executor_input.inputs, executor_input.outputs
    key: dict[str, Any] = {}
    names = {n: {"artifactNames": [a.name for a in lst.artifacts]} for n, lst in inputs.artifacts.items()}
    values = {n: json_format.MessageToDict(v) for n, v in inputs.parameter_values.items()}
    wiped = {
        n: {"type": json_format.MessageToDict(lst.artifacts[0].type)}
        for n, lst in outputs.artifacts.items()
        if lst.artifacts
    }
    params = {n: output_parameter_types[n] for n in outputs.parameters}
    spec: dict[str, Any] = {"image": container.get("image", "")}
    cmd_args = list(container.get("command", [])) + list(container.get("args", []))
    if cmd_args:
        spec["cmdArgs"] = cmd_args
    if pvcs and at_least(version, "2.15"):  # cacheutils.GenerateCacheKey(..., pvcNames), #12220
        spec["pvcNames"] = pvcs
    for field, value in (
        ("inputArtifactNames", names),
        ("inputParameterValues", values),
        ("outputArtifactsSpec", wiped),
        ("outputParametersSpec", params),
    ):
        if value:
            key[field] = value
    key["containerSpec"] = spec
    return key


def fingerprint(key: dict[str, Any]) -> str:
    """``GenerateFingerPrint``: SHA-256 hex of the key's JSON."""
    text = json.dumps(key, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
