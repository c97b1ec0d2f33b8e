"""A fake Kubeflow Pipelines API server on 127.0.0.1 for testing submissions without a cluster.

It speaks the v2beta1 REST endpoints that kfp.Client 2.13 (kfp_server_api 2.4) calls to upload a
pipeline or a version, find or create an experiment, start a run, create a recurring run and
poll a run — with the same JSON field names, status codes and error-body shape as the real
server — keeps what was created in memory, and records every request for assertions.

Failures are injected with :meth:`FakeKfpServer.fail` (any endpoint answers an HTTP error with a
message) and :attr:`FakeKfpServer.run_states` (the states successive polls of a run report).

Multi-user Kubeflow (``multi_user=True``, ``tokens={token: namespaces}``) is played as far as
kfp.Client exercises it, following the KFP 2.5 API server and Kubeflow 1.9/1.10's ingress:

- every request (the health check included, as behind Kubeflow's Istio ingress) needs
  ``Authorization: Bearer <token>``; none, or an unknown token, is HTTP 401 with a plain-text body;
- a token may use the profile namespaces it maps to; any other namespace is HTTP 403 with the API
  server's ``PermissionDenied: User '...' is not authorized`` message (HTTP 400 with that message
  from the upload handler, which answers every refused upload with 400);
- pipelines are private to a namespace or shared (no namespace: no check), experiments must have
  a namespace (HTTP 400 without), runs and recurring runs take the namespace of their experiment.

Single-user (the default) ignores namespaces, as the real server does. ``tls=(cert, key)``
serves https.

    with FakeKfpServer() as server:
        submit_to_server(server.url, ...)
        assert server.calls("POST", "/apis/v2beta1/runs")[0].body["runtime_config"]
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email.parser
import email.policy
import json
import re
import ssl
import threading
import uuid
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import yaml

API = "/apis/v2beta1"
# grpc status codes the real server puts in its error bodies, by HTTP status.
_GRPC_CODES = {400: 3, 401: 16, 403: 7, 404: 5, 409: 6, 500: 13, 503: 14}


@dataclasses.dataclass
class Request:
    """One request as the server saw it; ``body`` is parsed JSON, or for multipart uploads
    ``{"fields": {name: text}, "files": {name: {"filename": str, "content": bytes}}}``."""

    method: str
    path: str
    query: dict[str, str]
    body: Any
    headers: dict[str, str]

    @property
    def token(self) -> str | None:
        value = self.headers.get("authorization", "")
        return value[len("Bearer ") :] if value.startswith("Bearer ") else None


class _Error(Exception):
    """An error answer. ``shape``: "grpc" (the API's gRPC-gateway body), "upload" (the upload
    handler's ``{"error_message", "error_details"}``) or "text" (a proxy's plain-text body)."""

    def __init__(self, status: int, message: str, shape: str = "grpc", location: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.shape = shape
        self.location = location


class FakeKfpServer:
    """Threaded fake KFP API on an ephemeral port; start/stop or use as a context manager."""

    def __init__(
        self,
        *,
        multi_user: bool = False,
        tokens: dict[str, Iterable[str]] | None = None,
        tls: tuple[str, str] | None = None,
    ) -> None:
        self.multi_user = multi_user
        # Bearer token -> the profile namespaces its identity may use; None: no token needed.
        # Change it while the server runs to revoke or add tokens.
        self.tokens: dict[str, set[str]] | None = (
            None if tokens is None else {t: set(ns) for t, ns in tokens.items()}
        )
        # Called with each request before it is handled (e.g. to rotate a token file mid-run).
        self.on_request: Callable[[Request], None] | None = None
        self._tls = tls
        # States reported by successive GETs of a run; the last one repeats.
        self.run_states: list[str] = ["SUCCEEDED"]
        self.run_error: str | None = None  # run.error.message on a FAILED run
        self.requests: list[Request] = []
        self.pipelines: dict[str, dict] = {}
        self.versions: dict[str, dict] = {}
        self.experiments: dict[str, dict] = {}
        self.runs: dict[str, dict] = {}
        self.recurring_runs: dict[str, dict] = {}
        self._polls: dict[str, int] = {}
        self._failures: list[dict] = []
        self._clock = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakeKfpServer:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._httpd = _QuietServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        if self._tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self._tls)
            # The handshake happens in the request's thread, so a client that rejects the
            # certificate cannot stall the accept loop.
            self._httpd.socket = context.wrap_socket(
                self._httpd.socket, server_side=True, do_handshake_on_connect=False
            )
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=5)
            self._httpd = None

    def __enter__(self) -> FakeKfpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"{'https' if self._tls else 'http'}://{host}:{port}"

    # ------------------------------------------------------------------ test controls

    def fail(
        self,
        method: str,
        path: str,
        status: int,
        message: str,
        times: int | None = None,
        *,
        shape: str = "grpc",
        location: str | None = None,
    ) -> None:
        """Answer ``method path`` (exact path, without query) with HTTP ``status`` and ``message``.

        ``times`` limits how often (None: every time). The body has the real server's shape,
        ``{"error", "code", "message", "details"}``, or with ``shape="upload"`` the upload
        handler's, or with ``shape="text"`` plain text. ``location``: a Location header (redirects).
        """
        with self._lock:
            self._failures.append(
                {
                    "method": method.upper(),
                    "path": path,
                    "status": status,
                    "message": message,
                    "left": times,
                    "shape": shape,
                    "location": location,
                }
            )

    def calls(self, method: str | None = None, path: str | None = None) -> list[Request]:
        """Recorded requests, optionally only those with this method and/or exact path."""
        with self._lock:
            return [
                r
                for r in self.requests
                if (method is None or r.method == method.upper()) and (path is None or r.path == path)
            ]

    # ------------------------------------------------------------------ request handling

    def handle(self, request: Request) -> tuple[int, Any]:
        if self.on_request is not None:
            self.on_request(request)
        with self._lock:
            self.requests.append(request)
            self._authenticate(request)
            for failure in self._failures:
                if failure["method"] == request.method and failure["path"] == request.path:
                    if failure["left"] is None or failure["left"] > 0:
                        if failure["left"] is not None:
                            failure["left"] -= 1
                        raise _Error(
                            failure["status"], failure["message"], failure["shape"], failure["location"]
                        )
            for method, pattern, action in _ROUTES:
                m = re.fullmatch(API + pattern, request.path)
                if m and method == request.method:
                    return 200, action(self, request, **m.groupdict())
            raise _Error(404, f"Not Found: {request.method} {request.path}")

    def _authenticate(self, request: Request) -> None:
        """As Kubeflow's ingress does: no token, or a token it cannot verify, is a plain 401."""
        if self.tokens is None:
            return
        if "authorization" not in request.headers:
            raise _Error(401, "Unauthorized", shape="text")
        if request.token not in self.tokens:
            raise _Error(401, "Jwt verification fails", shape="text")

    def identity(self, token: str | None) -> str:
        """The user a token stands for: the default-editor service account of its first namespace."""
        namespaces = sorted((self.tokens or {}).get(token or "", ()))
        return f"system:serviceaccount:{namespaces[0] if namespaces else 'default'}:default-editor"

    def _authorize(
        self, request: Request, namespace: str, verb: str, resource: str, context: str, shape: str = "grpc"
    ) -> None:
        """The API server's SubjectAccessReview: may the request's token use ``namespace``?"""
        if not self.multi_user or self.tokens is None:
            return
        if namespace in self.tokens.get(request.token or "", set()):
            return
        status = 400 if shape == "upload" else 403  # the upload handler answers every error with 400
        raise _Error(
            status,
            f"{context}: PermissionDenied: User '{self.identity(request.token)}' is not authorized with "
            f"reason:  (request: &ResourceAttributes{{Namespace:{namespace},Verb:{verb},Group:"
            f"pipelines.kubeflow.org,Version:v1beta1,Resource:{resource},}}): Unauthorized access",
            shape=shape,
        )

    def _namespace(self, value: str | None) -> str:
        """The namespace the real server uses: as given when multi-user, none when single-user."""
        return (value or "") if self.multi_user else ""

    def _experiment_namespace(self, request: Request, namespace: str, verb: str) -> None:
        if not self.multi_user:
            return
        if not namespace:
            raise _Error(
                400,
                "Failed to authorize with API: Invalid input error: An experiment cannot have an empty "
                "namespace in multi-user mode",
            )
        self._authorize(request, namespace, verb, "experiments", "Failed to authorize with API")

    def _now(self) -> str:
        """A strictly increasing creation time, so 'created_at desc' ordering is well defined."""
        self._clock += dt.timedelta(seconds=1)
        return self._clock.strftime("%Y-%m-%dT%H:%M:%SZ")

    def _healthz(self, request: Request) -> dict:
        return {"multi_user": self.multi_user}

    def _list_pipelines(self, request: Request) -> dict:
        # A namespace lists that namespace's private pipelines; none lists the shared ones.
        namespace = self._namespace(request.query.get("namespace"))
        if namespace:
            self._authorize(
                request,
                namespace,
                "list",
                "pipelines",
                "Failed to list pipelines due to authorization error. Check if you have read permission "
                f"to namespace {namespace}",
            )
        items = _filtered(self.pipelines.values(), request.query.get("filter"))
        return _page("pipelines", [p for p in items if p.get("namespace", "") == namespace])

    def _check_pipeline(self, request: Request, pipeline_id: str, verb: str, shape: str = "grpc") -> dict:
        if pipeline_id not in self.pipelines:
            raise _Error(404, f"Pipeline {pipeline_id} not found", shape=shape)
        pipeline = self.pipelines[pipeline_id]
        if pipeline.get("namespace"):  # shared pipelines are open to everyone
            self._authorize(
                request,
                pipeline["namespace"],
                verb,
                "pipelines",
                f"Failed to access pipeline {pipeline_id}. Check if you have access to namespace "
                f"{pipeline['namespace']}",
                shape,
            )
        return pipeline

    def _get_pipeline(self, request: Request, pipeline_id: str) -> dict:
        return self._check_pipeline(request, pipeline_id, "get")

    def _upload_pipeline(self, request: Request) -> dict:
        namespace = self._namespace(request.query.get("namespace"))
        if namespace:
            self._authorize(
                request,
                namespace,
                "create",
                "pipelines",
                "Failed to create a pipeline due to authorization error: Authorization Failure",
                shape="upload",
            )
        name = request.query.get("name") or _uploaded(request)["filename"]
        spec = _parse_spec(_uploaded(request)["content"])
        if any(
            p["display_name"] == name and p.get("namespace", "") == namespace for p in self.pipelines.values()
        ):
            raise _Error(
                409,
                f"Failed to create a pipeline: pipeline with name {name!r} already exists",
                shape="upload",
            )
        pipeline = {"pipeline_id": str(uuid.uuid4()), "display_name": name, "created_at": self._now()}
        if request.query.get("description"):
            pipeline["description"] = request.query["description"]
        if namespace:
            pipeline["namespace"] = namespace
        self.pipelines[pipeline["pipeline_id"]] = pipeline
        self._add_version(pipeline["pipeline_id"], name, spec)  # the real server makes a first version
        return pipeline

    def _upload_version(self, request: Request) -> dict:
        pipeline_id = request.query.get("pipelineid", "")
        if pipeline_id not in self.pipelines:
            raise _Error(
                400,
                f"Failed to create a pipeline version: pipeline {pipeline_id!r} not found",
                shape="upload",
            )
        self._check_pipeline(request, pipeline_id, "create", shape="upload")
        name = request.query.get("name") or _uploaded(request)["filename"]
        spec = _parse_spec(_uploaded(request)["content"])
        if any(v["pipeline_id"] == pipeline_id and v["display_name"] == name for v in self.versions.values()):
            raise _Error(
                409, f"Failed to create a pipeline version: version {name!r} already exists", shape="upload"
            )
        return self._add_version(pipeline_id, name, spec, request.query.get("description"))

    def _add_version(self, pipeline_id: str, name: str, spec: dict, description: str | None = None) -> dict:
        version = {
            "pipeline_id": pipeline_id,
            "pipeline_version_id": str(uuid.uuid4()),
            "display_name": name,
            "created_at": self._now(),
            "pipeline_spec": spec,
        }
        if description:
            version["description"] = description
        self.versions[version["pipeline_version_id"]] = version
        return version

    def _list_versions(self, request: Request, pipeline_id: str) -> dict:
        self._check_pipeline(request, pipeline_id, "list")
        items = [v for v in self.versions.values() if v["pipeline_id"] == pipeline_id]
        sort_by = request.query.get("sort_by", "")
        if sort_by.startswith("created_at"):
            items.sort(key=lambda v: v["created_at"], reverse=sort_by.endswith(" desc"))
        size = int(request.query.get("page_size") or 0)
        return _page("pipeline_versions", items[:size] if size else items, total=len(items))

    def _list_experiments(self, request: Request) -> dict:
        namespace = self._namespace(request.query.get("namespace"))
        self._experiment_namespace(request, namespace, "list")
        items = _filtered(self.experiments.values(), request.query.get("filter"))
        return _page("experiments", [e for e in items if e.get("namespace", "") == namespace])

    def _get_experiment(self, request: Request, experiment_id: str) -> dict:
        if experiment_id not in self.experiments:
            raise _Error(404, f"Experiment {experiment_id} not found")
        experiment = self.experiments[experiment_id]
        self._experiment_namespace(request, experiment.get("namespace", ""), "get")
        return experiment

    def _create_experiment(self, request: Request) -> dict:
        body = request.body or {}
        if not body.get("display_name"):
            raise _Error(400, "Invalid input error: Experiment must have a non-empty name")
        namespace = self._namespace(body.get("namespace"))
        self._experiment_namespace(request, namespace, "create")
        experiment = {
            "experiment_id": str(uuid.uuid4()),
            "display_name": body["display_name"],
            "created_at": self._now(),
            "storage_state": "AVAILABLE",
        }
        if namespace:
            experiment["namespace"] = namespace
        self.experiments[experiment["experiment_id"]] = experiment
        return experiment

    def _check_job(self, request: Request, body: dict, what: str, resource: str) -> str:
        """What the real server checks before accepting a run: references, namespace, parameter names.

        The namespace is the experiment's (multi-user); a different one in the body is refused.
        """
        if body.get("experiment_id") and body["experiment_id"] not in self.experiments:
            raise _Error(404, f"Failed to create a {what}: experiment {body['experiment_id']} not found")
        namespace = ""
        if self.multi_user:
            if not body.get("experiment_id"):
                raise _Error(400, "Invalid input error: Experiment id can not be empty in multi-user mode")
            namespace = self.experiments[body["experiment_id"]].get("namespace", "")
            if body.get("namespace") and body["namespace"] != namespace:
                raise _Error(
                    400,
                    f"Failed to create a {what}: Invalid input error: Experiment {body['experiment_id']} "
                    f"belongs to namespace '{namespace}' instead of '{body['namespace']}'",
                )
            self._authorize(
                request,
                namespace,
                "create",
                resource,
                f"Failed to create a {what} due to authorization error. Check if you have write "
                f"permissions to namespace {namespace}",
            )
        ref = body.get("pipeline_version_reference") or {}
        version = self.versions.get(ref.get("pipeline_version_id", ""))
        if version is None or version["pipeline_id"] != ref.get("pipeline_id"):
            raise _Error(400, f"Failed to create a {what}: pipeline version reference {ref} not found")
        declared = version["pipeline_spec"].get("root", {}).get("inputDefinitions", {}).get("parameters", {})
        for name in (body.get("runtime_config") or {}).get("parameters") or {}:
            if name not in declared:
                raise _Error(
                    400,
                    f"Failed to create a {what}: Invalid input error: Unrecognized input parameter: {name}",
                )
        return namespace

    def _create_run(self, request: Request) -> dict:
        body = request.body or {}
        namespace = self._check_job(request, body, "new run", "runs")
        run = {
            **body,
            "namespace": namespace,
            "run_id": str(uuid.uuid4()),
            "state": "PENDING",
            "storage_state": "AVAILABLE",
            "created_at": self._now(),
        }
        self.runs[run["run_id"]] = run
        return run

    def _get_run(self, request: Request, run_id: str) -> dict:
        if run_id not in self.runs:
            raise _Error(404, f"Run {run_id} not found")
        if self.runs[run_id]["namespace"]:
            namespace = self.runs[run_id]["namespace"]
            self._authorize(
                request,
                namespace,
                "get",
                "runs",
                f"Failed to access run {run_id}. Check if you have access to namespace {namespace}",
            )
        poll = self._polls.get(run_id, 0)
        self._polls[run_id] = poll + 1
        run = self.runs[run_id]
        run["state"] = self.run_states[min(poll, len(self.run_states) - 1)]
        if run["state"] == "FAILED" and self.run_error:
            run["error"] = {"code": 2, "message": self.run_error}
        return run

    def _create_recurring_run(self, request: Request) -> dict:
        body = request.body or {}
        namespace = self._check_job(request, body, "recurring run", "jobs")
        trigger = body.get("trigger") or {}
        if not (trigger.get("cron_schedule") or {}).get("cron") and not trigger.get("periodic_schedule"):
            raise _Error(400, "Failed to create a recurring run: Invalid input error: a trigger is required")
        recurring = {
            **body,
            "namespace": namespace,
            "recurring_run_id": str(uuid.uuid4()),
            "status": "ENABLED" if body.get("mode", "ENABLE") == "ENABLE" else "DISABLED",
            "created_at": self._now(),
        }
        self.recurring_runs[recurring["recurring_run_id"]] = recurring
        return recurring

    def _get_recurring_run(self, request: Request, recurring_run_id: str) -> dict:
        if recurring_run_id not in self.recurring_runs:
            raise _Error(404, f"Recurring run {recurring_run_id} not found")
        return self.recurring_runs[recurring_run_id]


_ROUTES = (
    ("GET", "/healthz", FakeKfpServer._healthz),
    ("GET", "/pipelines", FakeKfpServer._list_pipelines),
    ("POST", "/pipelines/upload", FakeKfpServer._upload_pipeline),
    ("POST", "/pipelines/upload_version", FakeKfpServer._upload_version),
    ("GET", "/pipelines/(?P<pipeline_id>[^/]+)/versions", FakeKfpServer._list_versions),
    ("GET", "/pipelines/(?P<pipeline_id>[^/]+)", FakeKfpServer._get_pipeline),
    ("GET", "/experiments", FakeKfpServer._list_experiments),
    ("POST", "/experiments", FakeKfpServer._create_experiment),
    ("GET", "/experiments/(?P<experiment_id>[^/]+)", FakeKfpServer._get_experiment),
    ("POST", "/runs", FakeKfpServer._create_run),
    ("GET", "/runs/(?P<run_id>[^/]+)", FakeKfpServer._get_run),
    ("POST", "/recurringruns", FakeKfpServer._create_recurring_run),
    ("GET", "/recurringruns/(?P<recurring_run_id>[^/]+)", FakeKfpServer._get_recurring_run),
)


def _error_body(error: _Error) -> Any:
    if error.shape == "text":
        return error.message
    if error.shape == "upload":
        return {"error_message": error.message, "error_details": error.message}
    return {
        "error": error.message,
        "code": _GRPC_CODES.get(error.status, 2),
        "message": error.message,
        "details": [{"@type": "type.googleapis.com/google.rpc.Status", "error_message": error.message}],
    }


def _filtered(items: Any, filter_json: str | None) -> list[dict]:
    """Apply a v2beta1 Filter's EQUALS predicates (operation 1 or "EQUALS") on string fields."""
    items = list(items)
    if not filter_json:
        return items
    for predicate in json.loads(filter_json).get("predicates", []):
        if predicate.get("operation") not in (1, "EQUALS"):
            raise _Error(400, f"fake server: unsupported filter operation {predicate.get('operation')!r}")
        key, value = predicate["key"], predicate.get("stringValue", predicate.get("string_value"))
        items = [i for i in items if i.get(key) == value]
    return items


def _page(key: str, items: list[dict], total: int | None = None) -> dict:
    """A list response; like the real server, the list key is absent when it is empty."""
    out: dict[str, Any] = {"total_size": len(items) if total is None else total}
    if items:
        out[key] = items
    return out


def _uploaded(request: Request) -> dict:
    files = (request.body or {}).get("files") if isinstance(request.body, dict) else None
    if not files or "uploadfile" not in files:
        raise _Error(400, "Failed to create a pipeline: failed to read the uploaded file 'uploadfile'")
    return files["uploadfile"]


def _parse_spec(content: bytes) -> dict:
    try:
        spec = next(iter(yaml.safe_load_all(content)), None)
    except yaml.YAMLError as e:
        raise _Error(400, f"Failed to create a pipeline: invalid pipeline spec: {e}") from None
    if not isinstance(spec, dict) or "pipelineInfo" not in spec:
        raise _Error(400, "Failed to create a pipeline: invalid pipeline spec: no pipelineInfo")
    return spec


def _parse_multipart(content_type: str, data: bytes) -> dict:
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + data
    )
    fields, files = {}, {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True) or b""
        if part.get_filename() is not None:
            files[name] = {"filename": part.get_filename(), "content": payload}
        else:
            fields[name] = payload.decode("utf-8", "replace")
    return {"fields": fields, "files": files}


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet: a client that drops the connection (e.g. rejecting the TLS certificate) is no error."""


class _Handler(BaseHTTPRequestHandler):
    fake: FakeKfpServer
    server_version = "fake-kfp/2.4"

    def do_GET(self) -> None:  # noqa: N802
        self._serve()

    def do_POST(self) -> None:  # noqa: N802
        self._serve()

    def do_DELETE(self) -> None:  # noqa: N802
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Quiet: the recorded requests are the log."""

    def _serve(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        content_type = self.headers.get("Content-Type", "")
        if content_type.startswith("multipart/form-data"):
            body: Any = _parse_multipart(content_type, raw)
        elif raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
        else:
            body = None
        request = Request(
            method=self.command,
            path=url.path,
            query=dict(parse_qsl(url.query, keep_blank_values=True)),
            body=body,
            headers={k.lower(): v for k, v in self.headers.items()},
        )
        location = None
        try:
            status, payload = self.fake.handle(request)
        except _Error as e:
            status, location = e.status, e.location
            payload = _error_body(e)
        if isinstance(payload, str):
            data, content_type = payload.encode(), "text/plain"
        else:
            data, content_type = json.dumps(payload).encode(), "application/json"
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if location:
            self.send_header("Location", location)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
