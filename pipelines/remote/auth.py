"""Who a submission is and how it talks to the server: bearer token, TLS, profile namespace.

The token comes from ``--token``, ``--token-file`` or the in-cluster service-account token that
kfp.Client itself falls back to; a token file is read again before every request. The token
never appears in a message: :meth:`TokenSource.redact` cuts it (and anything like a JWT) out.
The TLS settings are those kfp.Client will use; the namespace is checked offline, or taken from
the pod on a multi-user server.

Only the standard library at module level (urllib3 and certifi are imported when needed).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import ssl
import warnings
from collections.abc import Iterator
from typing import Any

from pipelines.remote.submit_error import SubmitError, _one_line

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


@dataclasses.dataclass(frozen=True)
class _Server:
    """The server and how to talk to it: address, token, profile namespace, TLS settings."""

    host: str
    auth: TokenSource
    namespace: str | None
    tls: ssl.SSLContext
    ca_bundle: str | None
    verify_tls: bool


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


class _FileToken:
    """kfp's TokenCredentialsBase protocol: puts the file's current token on every request."""

    def __init__(self, auth: TokenSource) -> None:
        self._auth = auth

    def refresh_api_key_hook(self, config: Any) -> None:
        config.api_key["authorization"] = self._auth.current()
