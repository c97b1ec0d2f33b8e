"""What the server or the network did wrong, as one line a user can act on.

The health check made before kfp.Client (:func:`_check_reachable`), and the translation of
whatever kfp, kfp_server_api and urllib3 raise (HTTP statuses, refused tokens, TLS and network
failures, login redirects) into a :class:`~pipelines.remote.submit_error.SubmitError` message with no
traceback, HTTP headers or token in it.

Only the standard library at module level: kfp_server_api and urllib3 are imported when a
request actually fails.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

from pipelines.remote.auth import TOKEN_AUDIENCE, _Server
from pipelines.remote.submit_error import SubmitError, _one_line

# Per request: how long to wait for a connection and for an answer. A server that accepts the
# connection and never answers must not hang the submission (kfp.Client sets no timeout).
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 120.0

HEALTHZ_PATH = "/apis/v2beta1/healthz"

# Where a redirect for an unauthenticated request goes (Dex, oauth2-proxy, OIDC providers).
_LOGIN_URL = re.compile(r"dex|oauth|oidc|login|sign_?in|/auth\b", re.IGNORECASE)
# KFP's upload handler answers a refused upload with HTTP 400 and the gRPC code name in the text.
_AUTH_CODE = re.compile(r"\b(PermissionDenied|Unauthenticated)\b")


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
