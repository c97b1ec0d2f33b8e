"""Submit the compiled pipeline to a Kubeflow Pipelines server (what ``submit.py --host`` does).

Every submission uploads the YAML it was given, so a run always executes exactly that file:
the first time as a new pipeline, afterwards as a new *version* of it (``<name>-<UTC time>``),
which keeps the server's history of what ran. The run, and an optional recurring run, point at
that version rather than at "the pipeline's default", so a later upload cannot change them.

Everything that can be checked offline (the YAML, parameter names and types, the cron
expression) is checked before the first request, and every failure — server down, request
rejected, run timing out — is raised as one :class:`SubmitError` whose message is a single
line a user can act on, not a kfp_server_api traceback with HTTP headers in it.

This module holds the submission itself: the offline checks of the compiled YAML and its
parameters, kfp.Client and its requests, waiting for the run. The rest lives in
:mod:`pipelines.remote.auth` (token, TLS, namespace), :mod:`pipelines.remote.errors` (health
check, failures as one line), :mod:`pipelines.remote.cron` (the schedule check) and
:mod:`pipelines.remote.submit_error` (:class:`SubmitError`); the public names are importable from here.

The input is not copied here: ``data`` names a path on the cluster's volume as the data loader
Job or ``kubectl cp`` put it there (``docs/kubernetes.md``, section 3), in place — unlike a local
run, which copies its input by content (``pipelines.local.run.stage_data``). A table rewritten at
that path while a run reads it is the writer's doing; a new key per export avoids it.

Only the standard library and kfp at module level: kfp.Client (and with it kfp_server_api,
urllib3 and yaml) is imported when a submission actually happens.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import re
import time
import warnings
from pathlib import Path
from typing import Any

from components.parameters import Parameter, ParameterError, coerce, for_compiled
from pipelines.remote.auth import (
    TokenSource,
    _check_namespace,
    _FileToken,
    _insecure_warnings_silenced,
    _pod_namespace,
    _Server,
    _tls_context,
    resolve_token,
)
from pipelines.remote.cron import normalize_cron
from pipelines.remote.errors import CONNECT_TIMEOUT_S, READ_TIMEOUT_S, _check_reachable, _server_errors
from pipelines.remote.submit_error import MAX_MESSAGE_CHARS, SubmitError, _one_line

__all__ = [
    "RemoteResult",
    "SubmitError",
    "TokenSource",
    "load_pipeline_spec",
    "normalize_cron",
    "pipeline_parameters",
    "resolve_token",
    "submit_to_server",
    "validate_parameters",
]

# How often the run is polled with ``wait=True``.
POLL_INTERVAL_S = 5.0
# A run in one of these states will not change again. kfp.Client.wait_for_run_completion
# misses CANCELED (it would poll a canceled run until the timeout), hence our own loop.
FINAL_STATES = ("SUCCEEDED", "FAILED", "SKIPPED", "CANCELED", "ERROR")


@dataclasses.dataclass(frozen=True)
class RemoteResult:
    """What was created on the server; ``final_state`` only when the run was waited for.

    ``namespace`` is the profile namespace everything was created in (multi-user servers), or
    None on a standalone (single-user) Kubeflow Pipelines.
    """

    run_id: str
    run_url: str
    pipeline_id: str
    version_id: str
    experiment_id: str
    recurring_run_id: str | None = None
    final_state: str | None = None
    final_error: str | None = None
    namespace: str | None = None
    multi_user: bool = False


def submit_to_server(
    host: str,
    package_path: str,
    *,
    pipeline_name: str,
    experiment: str,
    run_name: str | None,
    parameters: dict,
    recurring_cron: str | None = None,
    wait: bool = False,
    timeout_s: int = 3600,
    namespace: str | None = None,
    existing_token: str | None = None,
    token_file: str | None = None,
    ca_bundle: str | None = None,
    verify_tls: bool = True,
    poll_interval_s: float = POLL_INTERVAL_S,
) -> RemoteResult:
    """Upload ``package_path`` (pipeline or new version), start a run of it, optionally schedule and wait.

    ``parameters`` may hold strings (as typed on a command line) for any parameter type; they
    are converted to the type the compiled pipeline declares, so the server gets ``3`` and not
    ``"3"`` for an integer. With ``recurring_cron`` a recurring run of the same version is created
    as well (KFP's 6-field cron with seconds first; a 5-field cron gets ``0`` seconds prepended).

    Multi-user Kubeflow: ``namespace`` is the user's profile namespace; the pipeline, experiment,
    runs and recurring run are created there. It is required when the server says it is
    multi-user, unless this runs in a pod (then the pod's namespace is used, as kfp.Client does).
    The bearer token is ``existing_token``, else the content of ``token_file``, else the
    in-cluster token (see :func:`resolve_token`). ``ca_bundle`` is a PEM file of the CA(s) that
    signed an https server's certificate; ``verify_tls=False`` skips verification altogether.
    """
    host = _normalize_host(host)
    spec = load_pipeline_spec(package_path)
    values = validate_parameters(spec, parameters)
    cron = normalize_cron(recurring_cron) if recurring_cron is not None else None
    if not pipeline_name or not pipeline_name.strip():
        raise SubmitError("the pipeline name is empty")
    if not experiment or not experiment.strip():
        raise SubmitError("the experiment name is empty")
    if wait and timeout_s <= 0:
        raise SubmitError(f"the wait timeout must be positive (got {timeout_s} s)")
    namespace = _check_namespace(namespace)
    server = _Server(
        host=host,
        auth=resolve_token(existing_token, token_file),
        namespace=namespace,
        tls=_tls_context(ca_bundle, verify_tls),
        ca_bundle=ca_bundle,
        verify_tls=verify_tls,
    )

    with _insecure_warnings_silenced(verify_tls):
        health = _check_reachable(server)
        multi_user = health.get("multi_user") is True
        if multi_user and not namespace:
            namespace = _pod_namespace()
            if not namespace:
                raise SubmitError(
                    f"{host} is a multi-user Kubeflow Pipelines (Kubeflow with profiles): pass --namespace "
                    "with your profile namespace (the namespace of your Kubeflow profile)"
                )
            server = dataclasses.replace(server, namespace=namespace)
        client = _make_client(server)
        result = _submit(
            client, server, package_path, pipeline_name, experiment, run_name, values, cron, wait,
            timeout_s, poll_interval_s,
        )  # fmt: skip
    # A single-user server ignores namespaces: nothing was created in one.
    return dataclasses.replace(result, namespace=namespace if multi_user else None, multi_user=multi_user)


def _submit(
    client: Any,
    server: _Server,
    package_path: str,
    pipeline_name: str,
    experiment: str,
    run_name: str | None,
    values: dict[str, Any],
    cron: str | None,
    wait: bool,
    timeout_s: float,
    poll_interval_s: float,
) -> RemoteResult:
    """The requests of :func:`submit_to_server`, once the server answered its health check."""
    namespace = server.namespace
    stamp = _utc_stamp()
    with _server_errors(server, f"the lookup of pipeline {pipeline_name!r}"):
        pipeline_id = _find_pipeline(client, pipeline_name, namespace)
    if pipeline_id is None:
        with _server_errors(server, f"the upload of pipeline {pipeline_name!r}"):
            pipeline = client.upload_pipeline(package_path, pipeline_name=pipeline_name, namespace=namespace)
            pipeline_id = pipeline.pipeline_id
            version_id = _latest_version(client, pipeline_id, pipeline_name)
    else:
        version_name = f"{pipeline_name}-{stamp}"
        with _server_errors(server, f"the upload of version {version_name!r} of pipeline {pipeline_name!r}"):
            version = client.upload_pipeline_version(package_path, version_name, pipeline_id=pipeline_id)
            version_id = version.pipeline_version_id

    with _server_errors(server, f"experiment {experiment!r}"):
        experiment_id = client.create_experiment(experiment, namespace=namespace).experiment_id

    job_name = run_name or f"{pipeline_name}-{stamp}"
    with _server_errors(server, f"run {job_name!r}"):
        run = client.run_pipeline(
            experiment_id, job_name, params=values, pipeline_id=pipeline_id, version_id=version_id
        )
    run_id = run.run_id
    run_url = f"{server.host}/#/runs/details/{run_id}"
    started = f"run {run_id} was started: {run_url}"

    recurring_run_id = None
    if cron is not None:
        with _server_errors(server, f"the recurring run ({cron!r})", started):
            recurring = client.create_recurring_run(
                experiment_id,
                f"{job_name}-recurring",
                description=f"{pipeline_name} on cron {cron!r}",
                cron_expression=cron,
                max_concurrency=1,
                # A schedule paused for a week should run once when resumed, not seven times.
                no_catchup=True,
                params=values,
                pipeline_id=pipeline_id,
                version_id=version_id,
            )
        recurring_run_id = recurring.recurring_run_id

    final_state = final_error = None
    if wait:
        final_state, final_error = _wait_for_run(client, server, run_id, timeout_s, poll_interval_s, started)
    return RemoteResult(
        run_id=run_id,
        run_url=run_url,
        pipeline_id=pipeline_id,
        version_id=version_id,
        experiment_id=experiment_id,
        recurring_run_id=recurring_run_id,
        final_state=final_state,
        final_error=final_error,
    )


# ---------------------------------------------------------------------------- offline checks


def load_pipeline_spec(package_path: str) -> dict:
    """The compiled PipelineSpec (the YAML's first document); SubmitError when it is not one."""
    import yaml  # type: ignore[import-untyped]

    path = Path(package_path)
    if path.suffix not in (".yaml", ".yml", ".json"):
        raise SubmitError(f"{path}: a compiled pipeline must be a .yaml file")
    try:
        with path.open(encoding="utf-8") as f:
            spec = next(iter(yaml.safe_load_all(f)), None)
    except FileNotFoundError:
        raise SubmitError(f"{path}: no such file (compile the pipeline first)") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise SubmitError(f"{path}: not readable as YAML ({_one_line(str(e))})") from None
    if not isinstance(spec, dict) or "root" not in spec or "pipelineInfo" not in spec:
        raise SubmitError(f"{path}: not a compiled Kubeflow pipeline (no pipelineInfo/root)")
    return spec


def pipeline_parameters(spec: dict) -> dict[str, dict]:
    """The root input parameters: name → {"type", "default", "required"}."""
    params = ((spec.get("root") or {}).get("inputDefinitions") or {}).get("parameters") or {}
    out = {}
    for name, decl in params.items():
        decl = decl or {}
        out[name] = {
            "type": decl.get("parameterType") or decl.get("type") or "STRING",
            "default": decl.get("defaultValue"),
            "required": "defaultValue" not in decl and not decl.get("isOptional", False),
        }
    return out


def validate_parameters(spec: dict, parameters: dict) -> dict[str, Any]:
    """Check names and types against the compiled YAML; return the values converted to their types.

    The same conversion and checks as a local run (``components.parameters.coerce``): strings
    from a command line are parsed, other values must already have the declared type; all
    problems are reported at once.
    """
    declared = pipeline_parameters(spec)
    try:
        vocabulary = vocabulary_of(declared)
        values = coerce(parameters, vocabulary)
        problems = []
    except ParameterError as e:
        values, problems = {}, [str(e)]
    missing = [n for n, d in declared.items() if d["required"] and n not in parameters]
    problems += [f"missing required parameter {n!r}" for n in missing]
    if problems:
        raise SubmitError(_one_line("; ".join(problems), limit=2 * MAX_MESSAGE_CHARS))
    return values


def vocabulary_of(declared: dict[str, dict]) -> dict[str, Parameter]:
    return for_compiled({name: d["type"] for name, d in declared.items()})


# ---------------------------------------------------------------------------- talking to the server


def _normalize_host(host: str) -> str:
    host = (host or "").strip().rstrip("/")
    if not re.match(r"^https?://[^/\s]+", host):
        raise SubmitError(f"the host must be a URL like http://localhost:8080 (got {host!r})")
    return host


def _make_client(server: _Server) -> Any:
    """kfp.Client with a timeout on every request, quiet (it prints links and warns about versions)."""
    import kfp

    options: dict[str, Any] = {"host": server.host, "namespace": server.namespace or "kubeflow"}
    if server.ca_bundle is not None:
        options["ssl_ca_cert"] = server.ca_bundle
    if not server.verify_tls:
        options["verify_ssl"] = False
    if server.auth.path is not None:
        options["credentials"] = _FileToken(server.auth)
    elif server.auth:
        options["existing_token"] = server.auth.current()
    with _server_errors(server, "the connection"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        client = kfp.Client(**options)
    # kfp.Client offers no timeout; set one on the shared urllib3 pool manager of all its APIs.
    with contextlib.suppress(AttributeError, ImportError):
        import urllib3

        pool_manager = client._run_api.api_client.rest_client.pool_manager
        pool_manager.connection_pool_kw["timeout"] = urllib3.Timeout(
            connect=CONNECT_TIMEOUT_S, read=READ_TIMEOUT_S
        )
        pool_manager.clear()
    return client


def _find_pipeline(client: Any, name: str, namespace: str | None) -> str | None:
    """The id of the pipeline with exactly this display name, or None."""
    # Operation 1 is EQUALS, spelled as kfp.Client itself sends it.
    flt = json.dumps({"predicates": [{"operation": 1, "key": "display_name", "stringValue": name}]})
    found = client.list_pipelines(filter=flt, namespace=namespace, page_size=10).pipelines or []
    found = [p for p in found if p.display_name == name]
    if len(found) > 1:
        raise SubmitError(f"{len(found)} pipelines are named {name!r} on the server; delete all but one")
    return found[0].pipeline_id if found else None


def _latest_version(client: Any, pipeline_id: str, name: str) -> str:
    """The version a fresh upload created (upload_pipeline answers with the pipeline only)."""
    versions = client.list_pipeline_versions(
        pipeline_id, page_size=1, sort_by="created_at desc"
    ).pipeline_versions
    if not versions:
        raise SubmitError(
            f"pipeline {name!r} ({pipeline_id}) was uploaded but the server lists no version of it"
        )
    return versions[0].pipeline_version_id


def _wait_for_run(
    client: Any, server: _Server, run_id: str, timeout_s: float, poll_s: float, started: str
) -> tuple[str, str | None]:
    """Poll the run until it reaches a final state; its state and error message."""
    deadline = time.monotonic() + timeout_s
    state = "UNKNOWN"
    while True:
        with _server_errors(server, f"the status of run {run_id}", started):
            run = client.get_run(run_id)
        state = str(run.state or "RUNTIME_STATE_UNSPECIFIED").upper()
        if state in FINAL_STATES:
            error = getattr(run.error, "message", None) if run.error is not None else None
            return state, error or None
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise SubmitError(
                f"run {run_id} is still {state} after {timeout_s:g} s: {server.host}/#/runs/details/{run_id}"
            )
        time.sleep(min(poll_s, remaining))


def _utc_stamp() -> str:
    """UTC time to the millisecond: two submissions in the same second still get distinct names."""
    now = dt.datetime.now(dt.UTC)
    return f"{now:%Y%m%d-%H%M%S}-{now.microsecond // 1000:03d}"
