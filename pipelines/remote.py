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
import os
import re
import ssl
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from components.parameters import Parameter, ParameterError, coerce, for_compiled

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

HEALTHZ_PATH = "/apis/v2beta1/healthz"
# The in-cluster token kfp.Client itself falls back to (kfp.client.KF_PIPELINES_SA_TOKEN_ENV and
# KF_PIPELINES_SA_TOKEN_PATH): a projected service-account token for the audience below, which
# Kubeflow's PodDefault "access-ml-pipeline" mounts into notebook pods. Same rule as kfp: the file
# named by the environment variable, else the default path; used when it exists and no token is given.
SA_TOKEN_ENV = "KF_PIPELINES_SA_TOKEN_PATH"
SA_TOKEN_PATH = "/var/run/secrets/kubeflow/pipelines/token"
# The pod's own namespace (kfp.Client._NAMESPACE_PATH): kfp.Client's namespace on a multi-user
# server when none is given, and ours.
NAMESPACE_PATH = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
# The audience the KFP API server asks of service-account tokens it reviews (TokenReview).
TOKEN_AUDIENCE = "pipelines.kubeflow.org"

_NAMESPACE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# Anything that looks like a JWT is cut out of messages, whoever put it there.
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
# Where a redirect for an unauthenticated request goes (Dex, oauth2-proxy, OIDC providers).
_LOGIN_URL = re.compile(r"dex|oauth|oidc|login|sign_?in|/auth\b", re.IGNORECASE)
# KFP's upload handler answers a refused upload with HTTP 400 and the gRPC code name in the text.
_AUTH_CODE = re.compile(r"\b(PermissionDenied|Unauthenticated)\b")


class SubmitError(Exception):
    """A submission that did not happen (or did not finish), in one short line of text."""


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


class TokenSource:
    """Where the bearer token comes from. The token itself never appears in any message.

    A token given as a value is sent as it is. A token in a file is read again before every
    request, as kfp's own ServiceAccountTokenVolumeCredentials does, because the kubelet rotates
    projected service-account tokens: a long ``--wait`` must not outlive the token it started with.
    """

    def __init__(self, token: str | None = None, path: str | None = None, origin: str = "no token") -> None:
        self._token = token
        self.path = path
        self.origin = origin

    def __bool__(self) -> bool:
        return self._token is not None

    def current(self) -> str | None:
        """The token to send now: the file's content if it can be read, else the last one read."""
        if self.path is not None:
            with contextlib.suppress(OSError, UnicodeDecodeError, SubmitError):
                self._token = _read_token(self.path, self.origin) or self._token
        return self._token

    def redact(self, text: str) -> str:
        """``text`` without the token (or anything that looks like a JWT) in it."""
        if self._token:
            text = text.replace(self._token, "<token>")
        return _JWT.sub("<token>", text)


def resolve_token(token: str | None = None, token_file: str | None = None) -> TokenSource:
    """The token of ``--token``, else of ``--token-file``, else the in-cluster token kfp.Client uses.

    The in-cluster token is the file named by the environment variable ``SA_TOKEN_ENV``, else
    ``SA_TOKEN_PATH`` — kfp's rule — and is used only when that file exists.
    """
    if token is not None and token_file is not None:
        raise SubmitError("give --token or --token-file, not both")
    if token is not None:
        value = _clean_token(token, "--token")
        if not value:
            raise SubmitError("--token is empty")
        return TokenSource(value, origin="--token")
    if token_file is not None:
        origin = f"--token-file {token_file}"
        try:
            value = _read_token(token_file, origin)
        except FileNotFoundError:
            raise SubmitError(f"{origin}: no such file") from None
        except (OSError, UnicodeDecodeError) as e:
            raise SubmitError(f"{origin}: cannot read it ({getattr(e, 'strerror', None) or e})") from None
        if not value:
            raise SubmitError(f"{origin}: the file is empty")
        return TokenSource(value, path=token_file, origin=origin)
    path = os.environ.get(SA_TOKEN_ENV) or SA_TOKEN_PATH
    if not os.path.isfile(path):
        return TokenSource()
    origin = f"the in-cluster token {path}"
    try:
        value = _read_token(path, origin)
    except (OSError, UnicodeDecodeError) as e:
        raise SubmitError(f"{origin}: cannot read it ({getattr(e, 'strerror', None) or e})") from None
    return TokenSource(value, path=path, origin=origin) if value else TokenSource()


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


@dataclasses.dataclass(frozen=True)
class _Server:
    """The server and how to talk to it: address, token, profile namespace, TLS settings."""

    host: str
    auth: TokenSource
    namespace: str | None
    tls: ssl.SSLContext
    ca_bundle: str | None
    verify_tls: bool


def _normalize_host(host: str) -> str:
    host = (host or "").strip().rstrip("/")
    if not re.match(r"^https?://[^/\s]+", host):
        raise SubmitError(f"the host must be a URL like http://localhost:8080 (got {host!r})")
    return host


def _clean_token(value: str, origin: str) -> str:
    """The token without surrounding whitespace or a pasted ``Bearer `` prefix."""
    value = value.strip()
    if value[:7].lower() == "bearer ":
        value = value[7:].strip()
    if any(c.isspace() for c in value):
        raise SubmitError(f"{origin}: the token contains whitespace; a bearer token is a single word")
    return value


def _read_token(path: str, origin: str) -> str:
    with open(path, encoding="utf-8") as f:
        return _clean_token(f.read(), origin)


def _check_namespace(namespace: str | None) -> str | None:
    if namespace is None or not namespace.strip():
        return None
    namespace = namespace.strip()
    if len(namespace) > 63 or not _NAMESPACE_NAME.match(namespace):
        raise SubmitError(
            f"--namespace {namespace!r} is not a Kubernetes namespace name "
            "(lower-case letters, digits and '-', at most 63 characters)"
        )
    return namespace


def _pod_namespace() -> str | None:
    """The namespace of the pod this runs in (kfp.Client's fallback on a multi-user server), if any."""
    try:
        with open(NAMESPACE_PATH, encoding="utf-8") as f:
            return _check_namespace(f.read())
    except (OSError, UnicodeDecodeError, SubmitError):
        return None


def _tls_context(ca_bundle: str | None, verify_tls: bool) -> ssl.SSLContext:
    """The TLS settings kfp.Client will use, for the health check; a bad CA bundle fails here.

    Without a CA bundle kfp_server_api verifies against certifi's CA list (not the system's),
    so the health check does the same: it must fail exactly when kfp.Client would.
    """
    if ca_bundle is not None and not verify_tls:
        raise SubmitError("give --ca-bundle or --insecure-skip-tls-verify, not both")
    if not verify_tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if ca_bundle is None:
        try:
            import certifi

            return ssl.create_default_context(cafile=certifi.where())
        except ImportError:
            return ssl.create_default_context()
    if not os.path.isfile(ca_bundle):
        raise SubmitError(f"--ca-bundle {ca_bundle}: no such file")
    try:
        return ssl.create_default_context(cafile=ca_bundle)
    except (OSError, ssl.SSLError, ValueError) as e:
        raise SubmitError(
            f"--ca-bundle {ca_bundle}: not a PEM file of CA certificates ({_one_line(str(e))})"
        ) from None


@contextlib.contextmanager
def _insecure_warnings_silenced(verify_tls: bool) -> Iterator[None]:
    """Without TLS verification urllib3 warns on every request; the caller warns once instead."""
    if verify_tls:
        yield
        return
    import urllib3

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
        yield


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is reported, not followed: behind Kubeflow's Istio it leads to a login page."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _check_reachable(server: _Server) -> dict:
    """One GET of the health endpoint with a timeout, before kfp.Client is made; its JSON answer.

    kfp.Client's constructor retries an unreachable health endpoint five times, five seconds
    apart, then raises a bare TimeoutError — 25 s to learn the server is down. This answers in
    milliseconds with the reason: down, TLS not trusted, token missing or refused, redirected to
    a login page, or not a KFP API at all. Proxies from the environment are not used, as
    kfp.Client does not. The answer says whether the server is multi-user.
    """
    host = server.host
    request = urllib.request.Request(f"{host}{HEALTHZ_PATH}", headers={"Accept": "application/json"})
    token = server.auth.current()
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), _NoRedirect(), urllib.request.HTTPSHandler(context=server.tls)
    )
    try:
        with opener.open(request, timeout=CONNECT_TIMEOUT_S) as response:
            body = response.read()
            content_type = response.headers.get_content_type()
    except urllib.error.HTTPError as e:
        body = e.read()
        if e.code in (401, 403):
            raise SubmitError(_refused(server, f"GET {HEALTHZ_PATH}", e.code, body, e.reason)) from None
        if 300 <= e.code < 400:
            raise SubmitError(_redirected(server, e.headers.get("Location") or "")) from None
        raise SubmitError(
            server.auth.redact(
                f"no Kubeflow Pipelines API at {host}: GET {HEALTHZ_PATH} answered HTTP {e.code}"
                f"{_server_message(body, e.reason)}"
            )
        ) from None
    except (urllib.error.URLError, OSError) as e:
        reason = e.reason if isinstance(e, urllib.error.URLError) else e
        raise SubmitError(f"cannot reach Kubeflow Pipelines at {host}: {_network_reason(reason)}") from None
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise SubmitError(
            f"no Kubeflow Pipelines API at {host}: GET {HEALTHZ_PATH} answered {content_type}, not the API's "
            "JSON (a login page? then pass --token or --token-file)"
        )
    return doc


def _redirected(server: _Server, location: str) -> str:
    where = _one_line(location, 120) or "another address"
    if _LOGIN_URL.search(location):
        return (
            f"{server.host}: the server redirected the request to a login page ({where}): pass --token or "
            f"--token-file with a Kubeflow bearer token (a browser login does not carry over)"
        )
    return f"{server.host}: GET {HEALTHZ_PATH} was redirected to {where}: pass that address as --host"


def _refused(server: _Server, action: str, status: int, body: Any, reason: Any, context: str = "") -> str:
    """The one line for an HTTP 401 or 403: what was refused, why, and what to pass."""
    said = _server_message(body, reason)
    said = f"; the server said{said}" if said else ""
    suffix = f" ({context})" if context else ""
    if status == 401:
        why = f"{server.auth.origin} was not accepted" if server.auth else "no token was sent"
        text = (
            f"{server.host}: the server refused {action} (401 Unauthorized, {why}): authentication failed; "
            "pass --token or --token-file with a valid Kubeflow bearer token, e.g. from "
            f"`kubectl -n <profile namespace> create token default-editor --audience={TOKEN_AUDIENCE}`"
            f"{said}{suffix}"
        )
    else:
        where = (
            f"namespace {server.namespace!r}" if server.namespace else "the request (no --namespace given)"
        )
        text = (
            f"{server.host}: the server refused {action} (403 Forbidden): not authorised for {where}; "
            "pass --namespace with a Kubeflow profile namespace that the token's identity owns or is a "
            f"contributor of{said}{suffix}"
        )
    return server.auth.redact(text)


class _FileToken:
    """kfp's TokenCredentialsBase protocol: puts the file's current token on every request."""

    def __init__(self, auth: TokenSource) -> None:
        self._auth = auth

    def refresh_api_key_hook(self, config: Any) -> None:
        config.api_key["authorization"] = self._auth.current()


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


@contextlib.contextmanager
def _server_errors(server: _Server, action: str, context: str = "") -> Iterator[None]:
    """Turn whatever kfp/kfp_server_api/urllib3 raise into one SubmitError line; silence kfp's prints.

    HTTP 401 and 403 become the authentication / authorisation line of :func:`_refused`. So does
    the HTTP 400 with which KFP's upload handler answers a refused upload (its message carries
    the gRPC code name: ``PermissionDenied`` or ``Unauthenticated``).
    """
    import kfp_server_api
    import urllib3

    host = server.host
    suffix = f" ({context})" if context else ""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    except SubmitError:
        raise
    except kfp_server_api.ApiException as e:
        if not e.status:  # status 0: the request never got an HTTP answer (e.g. TLS failure)
            raise SubmitError(
                f"cannot reach Kubeflow Pipelines at {host}: {_network_reason(str(e.reason))}{suffix}"
            ) from None
        message = _server_message(e.body, e.reason)
        status = e.status
        if status == 400 and _AUTH_CODE.search(message):
            status = 401 if "Unauthenticated" in message else 403
        if status in (401, 403):
            raise SubmitError(_refused(server, action, status, e.body, e.reason, context)) from None
        raise SubmitError(
            server.auth.redact(
                f"Kubeflow Pipelines at {host} rejected {action}: HTTP {e.status}{message}{suffix}"
            )
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
        raise SubmitError(server.auth.redact(f"{action} failed: {_one_line(str(e))}{suffix}")) from None


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
    if isinstance(reason, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in text:
        detail = getattr(reason, "verify_message", None)
        if not detail:
            found = re.search(r"certificate verify failed: ([^()'\"\]]+)", text)
            detail = found.group(1).strip() if found else "untrusted certificate"
        return (
            f"TLS certificate verification failed ({detail}): pass --ca-bundle PATH (the CA that signed "
            "the server's certificate) or, for a test cluster, --insecure-skip-tls-verify"
        )
    if isinstance(reason, TimeoutError) or "timed out" in text.lower():
        return "no answer (timed out)"
    if "Name or service not known" in text or "nodename nor servname" in text or "getaddrinfo" in text:
        return "unknown host name"
    if isinstance(reason, ssl.SSLError) or "SSLError" in text or "WRONG_VERSION_NUMBER" in text:
        return f"TLS handshake failed ({_one_line(text, 160)}): does the server speak https at this address?"
    return _one_line(text)


def _one_line(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _utc_stamp() -> str:
    """UTC time to the millisecond: two submissions in the same second still get distinct names."""
    now = dt.datetime.now(dt.UTC)
    return f"{now:%Y%m%d-%H%M%S}-{now.microsecond // 1000:03d}"
