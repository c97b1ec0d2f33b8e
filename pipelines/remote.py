"""Submit the compiled pipeline to a Kubeflow Pipelines server (what ``submit.py --host`` does).

Every submission uploads the YAML it was given, so a run always executes exactly that file:
the first time as a new pipeline, afterwards as a new *version* of it (``<name>-<UTC time>``),
which keeps the server's history of what ran. The run, and an optional recurring run, point at
that version rather than at "the pipeline's default", so a later upload cannot change them.

Everything that can be checked offline (the YAML, parameter names and types, the cron
expression) is checked before the first request, and every failure — server down, request
rejected, run timing out — is raised as one :class:`SubmitError` whose message is a single
line a user can act on, not a kfp_server_api traceback with HTTP headers in it.

Only the standard library and kfp at module level: kfp.Client (and with it kfp_server_api,
urllib3 and yaml) is imported when a submission actually happens.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import io
import json
import math
import re
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Per request: how long to wait for a connection and for an answer. A server that accepts the
# connection and never answers must not hang the submission (kfp.Client sets no timeout).
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 120.0
# How often the run is polled with ``wait=True``.
POLL_INTERVAL_S = 5.0
# A run in one of these states will not change again. kfp.Client.wait_for_run_completion
# misses CANCELED (it would poll a canceled run until the timeout), hence our own loop.
FINAL_STATES = ("SUCCEEDED", "FAILED", "SKIPPED", "CANCELED", "ERROR")
# Server messages can be whole stack traces; the one line we show is cut to this length.
MAX_MESSAGE_CHARS = 300

_PARAMETER_TYPES = {
    "STRING": "string",
    "NUMBER_INTEGER": "integer",
    "NUMBER_DOUBLE": "number",
    "BOOLEAN": "boolean",
    "LIST": "list",
    "STRUCT": "struct",
}
_TRUE = ("true", "1", "yes", "y", "on")
_FALSE = ("false", "0", "no", "n", "off")


class SubmitError(Exception):
    """A submission that did not happen (or did not finish), in one short line of text."""


@dataclasses.dataclass(frozen=True)
class RemoteResult:
    """What was created on the server; ``final_state`` only when the run was waited for."""

    run_id: str
    run_url: str
    pipeline_id: str
    version_id: str
    experiment_id: str
    recurring_run_id: str | None = None
    final_state: str | None = None
    final_error: str | None = None


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
    poll_interval_s: float = POLL_INTERVAL_S,
) -> RemoteResult:
    """Upload ``package_path`` (pipeline or new version), start a run of it, optionally schedule and wait.

    ``parameters`` may hold strings (as typed on a command line) for any parameter type; they
    are converted to the type the compiled pipeline declares, so the server gets ``3`` and not
    ``"3"`` for an integer. With ``recurring_cron`` a recurring run of the same version is created
    as well (KFP's 6-field cron with seconds first; a 5-field cron gets ``0`` seconds prepended).
    ``namespace`` is for multi-user deployments; ``existing_token`` is sent as a Bearer token.
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

    _check_reachable(host, existing_token)
    client = _make_client(host, namespace, existing_token)
    stamp = _utc_stamp()

    with _server_errors(host, f"the lookup of pipeline {pipeline_name!r}"):
        pipeline_id = _find_pipeline(client, pipeline_name, namespace)
    if pipeline_id is None:
        with _server_errors(host, f"the upload of pipeline {pipeline_name!r}"):
            pipeline = client.upload_pipeline(package_path, pipeline_name=pipeline_name, namespace=namespace)
            pipeline_id = pipeline.pipeline_id
            version_id = _latest_version(client, pipeline_id, pipeline_name)
    else:
        version_name = f"{pipeline_name}-{stamp}"
        with _server_errors(host, f"the upload of version {version_name!r} of pipeline {pipeline_name!r}"):
            version = client.upload_pipeline_version(package_path, version_name, pipeline_id=pipeline_id)
            version_id = version.pipeline_version_id

    with _server_errors(host, f"experiment {experiment!r}"):
        experiment_id = client.create_experiment(experiment, namespace=namespace).experiment_id

    job_name = run_name or f"{pipeline_name}-{stamp}"
    with _server_errors(host, f"run {job_name!r}"):
        run = client.run_pipeline(
            experiment_id, job_name, params=values, pipeline_id=pipeline_id, version_id=version_id
        )
    run_id = run.run_id
    run_url = f"{host}/#/runs/details/{run_id}"
    started = f"run {run_id} was started: {run_url}"

    recurring_run_id = None
    if cron is not None:
        with _server_errors(host, f"the recurring run ({cron!r})", started):
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
        final_state, final_error = _wait_for_run(client, host, run_id, timeout_s, poll_interval_s, started)
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

    Strings are accepted for every type (a command line only has strings) and converted; other
    Python values must already have the declared type. All problems are reported at once.
    """
    declared = pipeline_parameters(spec)
    valid = ", ".join(
        f"{n} ({_PARAMETER_TYPES.get(d['type'], d['type'].lower())})" for n, d in declared.items()
    )
    valid = f"valid: {valid}" if valid else "the pipeline takes no parameters"
    problems = []
    values: dict[str, Any] = {}
    for name, value in parameters.items():
        if name not in declared:
            problems.append(f"unknown parameter {name!r}")
            continue
        kind = declared[name]["type"]
        try:
            values[name] = _convert(value, kind)
        except (TypeError, ValueError):
            problems.append(
                f"parameter {name!r} expects {_PARAMETER_TYPES.get(kind, kind.lower())}, got {value!r}"
            )
    missing = [n for n, d in declared.items() if d["required"] and n not in parameters]
    problems += [f"missing required parameter {n!r}" for n in missing]
    if problems:
        raise SubmitError(_one_line(f"{'; '.join(problems)} ({valid})", limit=2 * MAX_MESSAGE_CHARS))
    return values


def _convert(value: Any, kind: str) -> Any:
    """One value to the JSON type KFP expects for ``kind``; ValueError/TypeError when impossible."""
    text = value.strip() if isinstance(value, str) else None
    if kind == "STRING":
        if not isinstance(value, str):
            raise TypeError(kind)
        return value
    if kind == "NUMBER_INTEGER":
        if text is not None:
            return int(text)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise TypeError(kind)
    if kind == "NUMBER_DOUBLE":
        number = float(text) if text is not None else value
        if isinstance(number, bool) or not isinstance(number, int | float) or not math.isfinite(number):
            raise ValueError(kind)
        return float(number)
    if kind == "BOOLEAN":
        if isinstance(value, bool):
            return value
        if text is not None and text.lower() in _TRUE + _FALSE:
            return text.lower() in _TRUE
        raise ValueError(kind)
    if kind in ("LIST", "STRUCT"):
        parsed = json.loads(text) if text is not None else value
        if not isinstance(parsed, list if kind == "LIST" else dict):
            raise ValueError(kind)
        return parsed
    raise ValueError(f"unsupported parameter type {kind}")


# Cron fields of KFP's scheduler (robfig/cron with seconds): name, low, high, named values.
_CRON_FIELDS = (
    ("seconds", 0, 59, ()),
    ("minutes", 0, 59, ()),
    ("hours", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")),
    ("day of week", 0, 6, ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")),
)
_CRON_ITEM = re.compile(r"^(?P<range>\*|\?|(?P<lo>\w+)(?:-(?P<hi>\w+))?)(?:/(?P<step>\d+))?$")


def normalize_cron(expression: str) -> str:
    """KFP's 6-field cron (seconds first), checked field by field; 5-field cron gets ``0`` seconds.

    The server only reports a bad schedule when the recurring run is created — after the run
    itself was already started — so it is checked here, before anything is sent.
    """
    fields = expression.split()
    if len(fields) == 5:
        fields = ["0", *fields]
    if len(fields) != 6:
        raise SubmitError(
            f"cron {expression!r} must have 6 fields (seconds minutes hours day-of-month month "
            f"day-of-week, e.g. '0 0 3 * * *') or 5 (standard cron); it has {len(fields)}"
        )
    for text, (field, low, high, named) in zip(fields, _CRON_FIELDS, strict=True):
        for item in text.split(","):
            if not _cron_item_ok(item.upper(), low, high, named, field.startswith("day")):
                raise SubmitError(f"cron {expression!r}: {item!r} is not a valid {field} ({low}-{high})")
    return " ".join(fields)


def _cron_item_ok(item: str, low: int, high: int, named: tuple[str, ...], question_ok: bool) -> bool:
    m = _CRON_ITEM.match(item)
    if not m or (m["range"] == "?" and not question_ok) or (m["step"] is not None and int(m["step"]) == 0):
        return False
    for token in (m["lo"], m["hi"]):
        if token is None:
            continue
        if token in named:
            continue
        if not token.isdigit() or not low <= int(token) <= high:
            return False
    return True


# ---------------------------------------------------------------------------- talking to the server


def _normalize_host(host: str) -> str:
    host = (host or "").strip().rstrip("/")
    if not re.match(r"^https?://[^/\s]+", host):
        raise SubmitError(f"the host must be a URL like http://localhost:8080 (got {host!r})")
    return host


def _check_reachable(host: str, token: str | None) -> None:
    """One GET of the health endpoint with a timeout, before kfp.Client is made.

    kfp.Client's constructor retries an unreachable health endpoint five times, five seconds
    apart, then raises a bare TimeoutError — 25 s to learn the server is down. This answers in
    milliseconds with the reason. Proxies from the environment are not used, as kfp.Client does not.
    """
    url = f"{host}/apis/v2beta1/healthz"
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=CONNECT_TIMEOUT_S) as response:
            response.read()
    except urllib.error.HTTPError as e:
        body = e.read()
        raise SubmitError(
            f"no Kubeflow Pipelines API at {host}: GET /apis/v2beta1/healthz answered HTTP {e.code}"
            f"{_server_message(body, e.reason)}"
        ) from None
    except (urllib.error.URLError, OSError) as e:
        reason = e.reason if isinstance(e, urllib.error.URLError) else e
        raise SubmitError(f"cannot reach Kubeflow Pipelines at {host}: {_network_reason(reason)}") from None


def _make_client(host: str, namespace: str | None, token: str | None) -> Any:
    """kfp.Client with a timeout on every request, quiet (it prints links and warns about versions)."""
    import kfp

    with _server_errors(host, "the connection"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        client = kfp.Client(host=host, namespace=namespace or "kubeflow", existing_token=token)
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
    client: Any, host: str, run_id: str, timeout_s: float, poll_s: float, started: str
) -> tuple[str, str | None]:
    """Poll the run until it reaches a final state; its state and error message."""
    deadline = time.monotonic() + timeout_s
    state = "UNKNOWN"
    while True:
        with _server_errors(host, f"the status of run {run_id}", started):
            run = client.get_run(run_id)
        state = str(run.state or "RUNTIME_STATE_UNSPECIFIED").upper()
        if state in FINAL_STATES:
            error = getattr(run.error, "message", None) if run.error is not None else None
            return state, error or None
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise SubmitError(
                f"run {run_id} is still {state} after {timeout_s:g} s: {host}/#/runs/details/{run_id}"
            )
        time.sleep(min(poll_s, remaining))


@contextlib.contextmanager
def _server_errors(host: str, action: str, context: str = "") -> Iterator[None]:
    """Turn whatever kfp/kfp_server_api/urllib3 raise into one SubmitError line; silence kfp's prints."""
    import kfp_server_api
    import urllib3

    suffix = f" ({context})" if context else ""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    except SubmitError:
        raise
    except kfp_server_api.ApiException as e:
        if not e.status:  # status 0: the request never got an HTTP answer (e.g. TLS failure)
            raise SubmitError(
                f"cannot reach Kubeflow Pipelines at {host}: {_one_line(str(e.reason))}{suffix}"
            ) from None
        message = _server_message(e.body, e.reason)
        raise SubmitError(
            f"Kubeflow Pipelines at {host} rejected {action}: HTTP {e.status}{message}{suffix}"
        ) from None
    except urllib3.exceptions.HTTPError as e:
        reason = getattr(e, "reason", None) or e
        raise SubmitError(
            f"cannot reach Kubeflow Pipelines at {host} ({action}): {_network_reason(reason)}{suffix}"
        ) from None
    except (OSError, TimeoutError) as e:
        raise SubmitError(
            f"cannot reach Kubeflow Pipelines at {host} ({action}): {_network_reason(e)}{suffix}"
        ) from None
    except (ValueError, kfp_server_api.OpenApiException) as e:
        raise SubmitError(f"{action} failed: {_one_line(str(e))}{suffix}") from None


def _server_message(body: Any, reason: Any) -> str:
    """``": <message>"`` from a KFP error body (grpc-gateway or upload-handler JSON, or plain text)."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    text = ""
    if body:
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        if isinstance(doc, dict):
            details = doc.get("details") or [{}]
            first = details[0] if isinstance(details, list) and isinstance(details[0], dict) else {}
            text = str(
                doc.get("message")
                or doc.get("error_message")
                or doc.get("error")
                or first.get("error_details")
                or first.get("error_message")
                or ""
            )
        else:
            text = str(body)
    text = text or str(reason or "")
    return f": {_one_line(text)}" if text else ""


def _network_reason(reason: Any) -> str:
    text = str(reason)
    if isinstance(reason, ConnectionRefusedError) or "Connection refused" in text:
        return "connection refused"
    if isinstance(reason, TimeoutError) or "timed out" in text.lower():
        return "no answer (timed out)"
    if "Name or service not known" in text or "nodename nor servname" in text or "getaddrinfo" in text:
        return "unknown host name"
    return _one_line(text)


def _one_line(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _utc_stamp() -> str:
    """UTC time to the millisecond: two submissions in the same second still get distinct names."""
    now = dt.datetime.now(dt.UTC)
    return f"{now:%Y%m%d-%H%M%S}-{now.microsecond // 1000:03d}"
