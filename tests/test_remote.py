"""Submitting a compiled pipeline to Kubeflow Pipelines, against a fake KFP API on 127.0.0.1.

The real kfp.Client (and kfp_server_api) talk HTTP to tests/fake_kfp_server.py, so the request
bodies asserted here are the ones a real server would receive.
"""

import datetime as dt
import ipaddress
import socket
import warnings
from collections.abc import Iterator
from pathlib import Path

import kfp
import pytest
import urllib3
from fake_kfp_server import API, FakeKfpServer
from kfp import compiler, dsl

import submit
from pipelines import kubetfx_pipeline
from pipelines.remote import auth as remote_auth
from pipelines.remote import submit as remote
from pipelines.remote.submit import SubmitError, normalize_cron, submit_to_server

PIPELINE = "tiny-pipeline"
# The module's own values, before the autouse fixture points them at empty places.
DEFAULT_SA_TOKEN_PATH, DEFAULT_NAMESPACE_PATH = remote_auth.SA_TOKEN_PATH, remote_auth.NAMESPACE_PATH
# No `from __future__ import annotations` here: kfp reads the component's annotations as types.


@dsl.component(base_image="python:3.11-slim")
def echo(message: str, count: int) -> str:
    return message * count


@dsl.pipeline(name=PIPELINE)
def tiny(count: int, message: str = "hi", rate: float = 0.5, verbose: bool = False):
    echo(message=message, count=count)


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The tiny pipeline compiled once: a required int, and a str, float and bool with defaults."""
    path = tmp_path_factory.mktemp("pkg") / "tiny.yaml"
    compiler.Compiler().compile(tiny, str(path))
    return str(path)


@pytest.fixture(autouse=True)
def no_ambient_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No in-cluster token, pod namespace or kfp context file of the machine running the tests."""
    nowhere = tmp_path_factory.mktemp("nowhere")
    monkeypatch.delenv(remote_auth.SA_TOKEN_ENV, raising=False)
    monkeypatch.setattr(remote_auth, "SA_TOKEN_PATH", str(nowhere / "token"))
    monkeypatch.setattr(remote_auth, "NAMESPACE_PATH", str(nowhere / "namespace"))
    monkeypatch.setattr(kfp.Client, "_LOCAL_KFP_CONTEXT", str(nowhere / "context.json"))


@pytest.fixture
def server() -> Iterator[FakeKfpServer]:
    with FakeKfpServer() as fake:
        yield fake


def _submit(server_url: str, package: str, **kwargs):
    args = dict(
        pipeline_name=PIPELINE,
        experiment="exp",
        run_name=None,
        parameters={"count": "3", "message": "hello"},
        poll_interval_s=0.01,
        timeout_s=10,
    )
    args.update(kwargs)
    return submit_to_server(server_url, package, **args)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_first_submission_creates_pipeline_experiment_and_run(server: FakeKfpServer, package: str):
    result = _submit(
        server.url, package, run_name="first", parameters={"count": "3", "rate": "0.25", "verbose": "true"}
    )

    uploads = server.calls("POST", f"{API}/pipelines/upload")
    assert len(uploads) == 1
    assert uploads[0].query["name"] == PIPELINE
    assert b"pipelineInfo" in uploads[0].body["files"]["uploadfile"]["content"]
    assert uploads[0].body["files"]["uploadfile"]["content"] == Path(package).read_bytes()
    assert not server.calls("POST", f"{API}/pipelines/upload_version")

    [exp] = server.calls("POST", f"{API}/experiments")
    assert exp.body["display_name"] == "exp"

    [run] = server.calls("POST", f"{API}/runs")
    assert run.body["display_name"] == "first"
    assert run.body["experiment_id"] == result.experiment_id
    # Strings from a command line arrive typed as the pipeline declares them.
    assert run.body["runtime_config"]["parameters"] == {"count": 3, "rate": 0.25, "verbose": True}
    assert run.body["pipeline_version_reference"] == {
        "pipeline_id": result.pipeline_id,
        "pipeline_version_id": result.version_id,
    }
    assert "pipeline_spec" not in run.body  # the run points at the uploaded version, not an inline spec

    [pipeline] = server.pipelines.values()
    assert result.pipeline_id == pipeline["pipeline_id"]
    assert server.versions[result.version_id]["pipeline_id"] == pipeline["pipeline_id"]
    assert result.run_id in server.runs
    assert result.run_url == f"{server.url}/#/runs/details/{result.run_id}"
    assert result.recurring_run_id is None and result.final_state is None
    assert not server.calls("GET", f"{API}/runs/{result.run_id}")  # no waiting unless asked


def test_second_submission_uploads_a_new_version_and_reuses_the_experiment(
    server: FakeKfpServer, package: str
):
    first = _submit(server.url, package)
    second = _submit(server.url, package)

    assert len(server.calls("POST", f"{API}/pipelines/upload")) == 1
    [version_upload] = server.calls("POST", f"{API}/pipelines/upload_version")
    assert version_upload.query["pipelineid"] == first.pipeline_id
    assert version_upload.query["name"].startswith(f"{PIPELINE}-")
    assert len(server.calls("POST", f"{API}/experiments")) == 1

    assert second.pipeline_id == first.pipeline_id
    assert second.experiment_id == first.experiment_id
    assert second.version_id != first.version_id
    assert server.versions[second.version_id]["display_name"] == version_upload.query["name"]
    runs = server.calls("POST", f"{API}/runs")
    assert [r.body["pipeline_version_reference"]["pipeline_version_id"] for r in runs] == [
        first.version_id,
        second.version_id,
    ]
    assert runs[0].body["display_name"] != runs[1].body["display_name"]  # default names carry the time


def test_recurring_run_on_a_cron_schedule(server: FakeKfpServer, package: str):
    result = _submit(server.url, package, recurring_cron="0 3 * * *")

    [rec] = server.calls("POST", f"{API}/recurringruns")
    assert rec.body["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * *"  # 5-field cron got seconds
    assert rec.body["experiment_id"] == result.experiment_id
    assert rec.body["pipeline_version_reference"]["pipeline_version_id"] == result.version_id
    assert rec.body["runtime_config"]["parameters"] == {"count": 3, "message": "hello"}
    assert rec.body["mode"] == "ENABLE" and int(rec.body["max_concurrency"]) == 1
    assert rec.body["no_catchup"] is True
    assert result.recurring_run_id in server.recurring_runs
    assert len(server.calls("POST", f"{API}/runs")) == 1  # and a run right now as well


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        (["PENDING", "RUNNING", "SUCCEEDED"], "SUCCEEDED"),
        (["RUNNING", "FAILED"], "FAILED"),
        (["CANCELED"], "CANCELED"),
    ],
)
def test_wait_reports_the_final_state(server: FakeKfpServer, package: str, states: list[str], expected: str):
    server.run_states = states
    server.run_error = "task echo failed" if expected == "FAILED" else None
    result = _submit(server.url, package, wait=True)

    assert result.final_state == expected
    assert len(server.calls("GET", f"{API}/runs/{result.run_id}")) == len(states)
    assert result.final_error == ("task echo failed" if expected == "FAILED" else None)


def test_wait_gives_up_after_the_timeout(server: FakeKfpServer, package: str):
    server.run_states = ["RUNNING"]
    with pytest.raises(
        SubmitError, match=r"still RUNNING after 0.2 s: http://127\.0\.0\.1:\d+/#/runs/details/"
    ):
        _submit(server.url, package, wait=True, timeout_s=0.2, poll_interval_s=0.05)


def test_server_down_is_one_short_line(package: str):
    port = _closed_port()
    with pytest.raises(SubmitError) as err:
        _submit(f"http://127.0.0.1:{port}", package)
    message = str(err.value)
    assert message == f"cannot reach Kubeflow Pipelines at http://127.0.0.1:{port}: connection refused"
    assert err.value.__cause__ is None and err.value.__suppress_context__


@pytest.mark.parametrize(
    ("parameters", "expected"),
    [
        (
            {"count": 1, "colour": "red"},
            r"unknown parameter 'colour' \(valid: count \(an integer\), message \(text\)",
        ),
        ({"count": 1, "mesage": "x"}, r"unknown parameter 'mesage'; did you mean 'message'\?"),
        ({"count": "three"}, r"parameter 'count' must be an integer, got 'three'"),
        ({"count": 1, "rate": "fast"}, r"parameter 'rate' must be a number, got 'fast'"),
        ({"count": 1, "rate": "nan"}, r"parameter 'rate' must be a finite number"),
        ({"count": 1, "verbose": "maybe"}, r"parameter 'verbose' must be true or false"),
        ({"count": 1, "message": 5}, r"parameter 'message' must be text, got 5"),
        ({"message": "x"}, r"missing required parameter 'count'"),
    ],
)
def test_bad_parameters_fail_before_any_request(server: FakeKfpServer, package: str, parameters, expected):
    with pytest.raises(SubmitError, match=expected) as err:
        _submit(server.url, package, parameters=parameters)
    assert "\n" not in str(err.value)
    assert server.requests == []


def test_bad_cron_fails_before_any_request(server: FakeKfpServer, package: str):
    with pytest.raises(SubmitError, match="must have 6 fields"):
        _submit(server.url, package, recurring_cron="0 3 * *")
    with pytest.raises(SubmitError, match=r"'25' is not a valid hours \(0-23\)"):
        _submit(server.url, package, recurring_cron="0 0 25 * * *")
    assert server.requests == []


def test_cron_forms():
    assert normalize_cron("0 0 * * * *") == "0 0 * * * *"
    assert normalize_cron("*/15 * * * *") == "0 */15 * * * *"
    assert normalize_cron("0 30 2 ? * MON-FRI") == "0 30 2 ? * MON-FRI"
    assert normalize_cron("0 0 0 1,15 jan *") == "0 0 0 1,15 jan *"
    for bad in ("0 60 * * * *", "0 0 0 0 * *", "0 0 0 * 13 *", "0 0 0 * * 7", "0 */0 * * * *", "? * * * * *"):
        with pytest.raises(SubmitError):
            normalize_cron(bad)


def test_rejected_upload_carries_the_servers_message(server: FakeKfpServer, package: str):
    server.fail(
        "POST", f"{API}/pipelines/upload", 400, "Failed to create a pipeline: spec is not valid: bad dag"
    )
    with pytest.raises(SubmitError) as err:
        _submit(server.url, package)
    message = str(err.value)
    assert message == (
        f"Kubeflow Pipelines at {server.url} rejected the upload of pipeline '{PIPELINE}': "
        "HTTP 400: Failed to create a pipeline: spec is not valid: bad dag"
    )
    assert not server.calls("POST", f"{API}/runs")


def test_rejected_run_after_upload_carries_the_servers_message(server: FakeKfpServer, package: str):
    server.fail("POST", f"{API}/runs", 500, "Failed to create a new run: InternalServerError: db is down")
    with pytest.raises(
        SubmitError, match=r"rejected run .*: HTTP 500: Failed to create a new run: .*db is down$"
    ):
        _submit(server.url, package)


def test_rejected_recurring_run_still_names_the_started_run(server: FakeKfpServer, package: str):
    server.fail("POST", f"{API}/recurringruns", 403, "User is not authorized")
    with pytest.raises(SubmitError) as err:
        _submit(server.url, package, recurring_cron="0 0 * * * *")
    [run_id] = server.runs
    assert "(403 Forbidden)" in str(err.value) and "the server said: User is not authorized" in str(err.value)
    assert f"run {run_id} was started: {server.url}/#/runs/details/{run_id}" in str(err.value)


def test_not_a_kfp_server(server: FakeKfpServer, package: str):
    server.fail("GET", f"{API}/healthz", 404, "no such page")
    with pytest.raises(
        SubmitError, match=r"^no Kubeflow Pipelines API at .*: .* answered HTTP 404: no such page$"
    ):
        _submit(server.url, package)


def test_bad_host_and_package(tmp_path: Path, package: str):
    with pytest.raises(SubmitError, match="must be a URL"):
        _submit("localhost:8080", package)
    with pytest.raises(SubmitError, match="no such file"):
        _submit("http://127.0.0.1:1", str(tmp_path / "missing.yaml"))
    not_a_pipeline = tmp_path / "x.yaml"
    not_a_pipeline.write_text("a: 1\n")
    with pytest.raises(SubmitError, match="not a compiled Kubeflow pipeline"):
        _submit("http://127.0.0.1:1", str(not_a_pipeline))


def test_token_is_sent_as_bearer(server: FakeKfpServer, package: str):
    _submit(server.url, package, existing_token="s3cret")
    assert server.requests
    assert all(r.headers.get("authorization") == "Bearer s3cret" for r in server.requests)


# ---------------------------------------------------------------------------- multi-user Kubeflow

ALICE = "alice-token.eyJhbGciOiJSUzI1NiJ9"  # what a bearer token may look like
BOB = "bob-token"


@pytest.fixture
def kubeflow() -> Iterator[FakeKfpServer]:
    """Multi-user: Alice's token may use profile namespace "alice", Bob's "bob"."""
    with FakeKfpServer(multi_user=True, tokens={ALICE: ["alice"], BOB: ["bob"]}) as fake:
        yield fake


def _cli(server_url: str, package: str, monkeypatch: pytest.MonkeyPatch, capsys, *args: str):
    """``submit.py --host`` in-process, compiling the tiny pipeline: (exit code, stdout, stderr)."""
    monkeypatch.setattr(kubetfx_pipeline, "compile_pipeline", lambda path, opts: package)
    monkeypatch.setattr(kubetfx_pipeline, "PIPELINE_NAME", PIPELINE)
    code = submit.main(["--host", server_url, "--param", "count=3", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_in_cluster_token_rule_is_kfps():
    """The in-cluster token and pod namespace are looked for where kfp.Client itself looks."""
    assert remote_auth.SA_TOKEN_ENV == kfp.client.KF_PIPELINES_SA_TOKEN_ENV
    assert DEFAULT_SA_TOKEN_PATH == kfp.client.KF_PIPELINES_SA_TOKEN_PATH
    assert DEFAULT_NAMESPACE_PATH == kfp.Client._NAMESPACE_PATH


def test_multi_user_submission_with_a_token_creates_everything_in_the_namespace(
    kubeflow: FakeKfpServer, package: str
):
    first = _submit(
        kubeflow.url, package, existing_token=ALICE, namespace="alice", recurring_cron="0 3 * * *"
    )
    second = _submit(kubeflow.url, package, existing_token=ALICE, namespace="alice", wait=True)

    assert first.namespace == second.namespace == "alice" and first.multi_user
    assert all(r.headers.get("authorization") == f"Bearer {ALICE}" for r in kubeflow.requests)
    assert kubeflow.pipelines[first.pipeline_id]["namespace"] == "alice"  # private to the profile
    assert second.pipeline_id == first.pipeline_id and second.version_id != first.version_id
    assert {e["namespace"] for e in kubeflow.experiments.values()} == {"alice"}
    assert {r["namespace"] for r in kubeflow.runs.values()} == {"alice"}
    assert {r["namespace"] for r in kubeflow.recurring_runs.values()} == {"alice"}
    for path in (f"{API}/pipelines", f"{API}/experiments"):
        assert {r.query.get("namespace") for r in kubeflow.calls("GET", path)} == {"alice"}
    [upload] = kubeflow.calls("POST", f"{API}/pipelines/upload")
    assert upload.query["namespace"] == "alice"
    assert second.final_state == "SUCCEEDED"


def test_token_file(kubeflow: FakeKfpServer, package: str, tmp_path: Path):
    token_file = tmp_path / "token"
    token_file.write_text(f"Bearer {ALICE}\n")  # a pasted "Bearer " and the newline are dropped
    result = _submit(kubeflow.url, package, token_file=str(token_file), namespace="alice")
    assert result.namespace == "alice"
    assert {r.headers.get("authorization") for r in kubeflow.requests} == {f"Bearer {ALICE}"}


def test_token_file_is_read_again_before_each_request(kubeflow: FakeKfpServer, package: str, tmp_path: Path):
    """Projected tokens are rotated by the kubelet: a long --wait must pick up the new one."""
    token_file = tmp_path / "token"
    token_file.write_text(ALICE)
    rotated = "alice-rotated-token"

    def rotate(request):
        if request.method == "POST" and request.path == f"{API}/runs":  # the kubelet rotates the file
            token_file.write_text(rotated)
            kubeflow.tokens[rotated] = {"alice"}
        elif request.path.startswith(f"{API}/runs/"):  # and the old token expires
            kubeflow.tokens.pop(ALICE, None)

    kubeflow.on_request = rotate
    kubeflow.run_states = ["RUNNING", "RUNNING", "SUCCEEDED"]
    result = _submit(kubeflow.url, package, token_file=str(token_file), namespace="alice", wait=True)

    assert result.final_state == "SUCCEEDED"
    polls = kubeflow.calls("GET", f"{API}/runs/{result.run_id}")
    assert len(polls) == 3 and {p.headers["authorization"] for p in polls} == {f"Bearer {rotated}"}


def test_in_cluster_token_is_used_when_no_token_is_given(
    kubeflow: FakeKfpServer, package: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    default = tmp_path / "default-token"
    default.write_text(ALICE + "\n")
    monkeypatch.setattr(remote_auth, "SA_TOKEN_PATH", str(default))
    _submit(kubeflow.url, package, namespace="alice")
    assert {r.headers.get("authorization") for r in kubeflow.requests} == {f"Bearer {ALICE}"}

    # The environment variable kfp reads names another file; it wins over the default path.
    other = tmp_path / "env-token"
    other.write_text(BOB)
    monkeypatch.setenv(remote_auth.SA_TOKEN_ENV, str(other))
    kubeflow.requests.clear()
    _submit(kubeflow.url, package, namespace="bob")
    assert {r.headers.get("authorization") for r in kubeflow.requests} == {f"Bearer {BOB}"}

    # A token given explicitly wins over the in-cluster one.
    kubeflow.requests.clear()
    _submit(kubeflow.url, package, namespace="alice", existing_token=ALICE)
    assert {r.headers.get("authorization") for r in kubeflow.requests} == {f"Bearer {ALICE}"}


def test_no_in_cluster_token_file_means_no_token(server: FakeKfpServer, package: str):
    _submit(server.url, package)
    assert server.requests and not any("authorization" in r.headers for r in server.requests)


def test_pod_namespace_is_used_on_a_multi_user_server(
    kubeflow: FakeKfpServer, package: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    namespace_file = tmp_path / "namespace"
    namespace_file.write_text("alice")
    monkeypatch.setattr(remote_auth, "NAMESPACE_PATH", str(namespace_file))
    result = _submit(kubeflow.url, package, existing_token=ALICE)
    assert result.namespace == "alice"
    assert {e["namespace"] for e in kubeflow.experiments.values()} == {"alice"}


def test_multi_user_server_without_namespace_says_so(kubeflow: FakeKfpServer, package: str):
    with pytest.raises(SubmitError, match=r"is a multi-user Kubeflow Pipelines .*: pass --namespace"):
        _submit(kubeflow.url, package, existing_token=ALICE)
    assert [r.path for r in kubeflow.requests] == [f"{API}/healthz"]


def test_single_user_server_ignores_the_namespace(server: FakeKfpServer, package: str):
    result = _submit(server.url, package, namespace="alice")
    assert result.namespace is None and not result.multi_user
    assert "namespace" not in next(iter(server.experiments.values()))


def test_cli_wrong_token_is_one_line_401_and_exit_2(
    kubeflow: FakeKfpServer, package: str, monkeypatch: pytest.MonkeyPatch, capsys
):
    secret = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJtYWxsb3J5In0.c2lnbmF0dXJl"
    code, out, err = _cli(
        kubeflow.url, package, monkeypatch, capsys, "--token", secret, "--namespace", "alice"
    )

    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(
        f"[submit] {kubeflow.url}: the server refused GET /apis/v2beta1/healthz "
        "(401 Unauthorized, --token was not accepted): authentication failed; pass --token or --token-file"
    )
    assert "create token default-editor --audience=pipelines.kubeflow.org" in err
    assert "the server said: Jwt verification fails" in err
    assert secret not in err
    assert not kubeflow.pipelines and not kubeflow.runs


def test_cli_no_token_is_one_line_401(
    kubeflow: FakeKfpServer, package: str, monkeypatch: pytest.MonkeyPatch, capsys
):
    code, _, err = _cli(kubeflow.url, package, monkeypatch, capsys, "--namespace", "alice")
    assert code == 2 and err.count("\n") == 1
    assert "(401 Unauthorized, no token was sent)" in err and "pass --token or --token-file" in err


def test_cli_wrong_namespace_is_one_line_403_and_exit_2(
    kubeflow: FakeKfpServer, package: str, monkeypatch: pytest.MonkeyPatch, capsys, tmp_path: Path
):
    token_file = tmp_path / "token"
    token_file.write_text(ALICE)
    code, out, err = _cli(
        kubeflow.url, package, monkeypatch, capsys, "--token-file", str(token_file), "--namespace", "bob"
    )

    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(
        f"[submit] {kubeflow.url}: the server refused the lookup of pipeline '{PIPELINE}' (403 Forbidden): "
        "not authorised for namespace 'bob'; pass --namespace with a Kubeflow profile namespace"
    )
    assert "User 'system:serviceaccount:alice:default-editor' is not authorized" in err
    assert ALICE not in err  # the JWT-looking part of the token is cut out as well
    assert "eyJ" not in err
    assert not kubeflow.pipelines and not kubeflow.experiments and not kubeflow.runs


def test_cli_submits_with_token_and_namespace(
    kubeflow: FakeKfpServer, package: str, monkeypatch: pytest.MonkeyPatch, capsys
):
    code, out, err = _cli(kubeflow.url, package, monkeypatch, capsys, "--token", BOB, "--namespace", "bob")
    assert code == 0, err
    [run_id] = kubeflow.runs
    assert out.splitlines() == ["namespace bob", f"run {run_id}: {kubeflow.url}/#/runs/details/{run_id}"]
    assert kubeflow.runs[run_id]["namespace"] == "bob"
    assert BOB not in out + err


def test_cli_token_and_token_file_exclude_each_other(package: str, monkeypatch: pytest.MonkeyPatch, capsys):
    with pytest.raises(SystemExit) as exit_:
        _cli("http://127.0.0.1:1", package, monkeypatch, capsys, "--token", "a", "--token-file", "b")
    assert exit_.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_refused_upload_with_http_400_is_reported_as_authorisation(kubeflow: FakeKfpServer, package: str):
    """KFP's upload handler answers a refused upload with 400 and PermissionDenied in the text."""
    kubeflow.fail(
        "POST",
        f"{API}/pipelines/upload",
        400,
        "Failed to create a pipeline due to authorization error: Authorization Failure: PermissionDenied: "
        f"User 'x' is not authorized (token {ALICE}): Unauthorized access",
        shape="upload",
    )
    with pytest.raises(SubmitError) as err:
        _submit(kubeflow.url, package, existing_token=ALICE, namespace="alice")
    message = str(err.value)
    assert (
        f"refused the upload of pipeline '{PIPELINE}' (403 Forbidden): not authorised for namespace 'alice'"
        in (message)
    )
    assert ALICE not in message and "(token <token>)" in message


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        ({"namespace": "Alice_NS"}, r"--namespace 'Alice_NS' is not a Kubernetes namespace name"),
        ({"existing_token": "  "}, r"--token is empty"),
        ({"existing_token": "two words"}, r"--token: the token contains whitespace"),
        ({"token_file": "/nonexistent/token"}, r"--token-file /nonexistent/token: no such file"),
        ({"existing_token": "a", "token_file": "b"}, r"give --token or --token-file, not both"),
        ({"ca_bundle": "/nonexistent/ca.pem"}, r"--ca-bundle /nonexistent/ca.pem: no such file"),
        ({"ca_bundle": "x", "verify_tls": False}, r"--ca-bundle or --insecure-skip-tls-verify, not both"),
    ],
)
def test_bad_auth_options_fail_before_any_request(kubeflow: FakeKfpServer, package: str, bad, expected):
    with pytest.raises(SubmitError, match=expected):
        _submit(kubeflow.url, package, **bad)
    assert kubeflow.requests == []


def test_empty_token_file(kubeflow: FakeKfpServer, package: str, tmp_path: Path):
    empty = tmp_path / "token"
    empty.write_text("\n")
    with pytest.raises(SubmitError, match=r"--token-file .*token: the file is empty"):
        _submit(kubeflow.url, package, token_file=str(empty))


def test_redirect_to_a_login_page(server: FakeKfpServer, package: str):
    """Behind an OIDC proxy that redirects API calls, the health check reports the login page."""
    server.fail("GET", f"{API}/healthz", 302, "", shape="text", location="/dex/auth?client_id=kubeflow-oidc")
    with pytest.raises(
        SubmitError, match=r"redirected the request to a login page \(/dex/auth.*pass --token"
    ):
        _submit(server.url, package)
    assert len(server.requests) == 1  # not followed


# ---------------------------------------------------------------------------- TLS


def _write_ca_and_server_cert(directory: Path) -> tuple[Path, Path, Path]:
    """A private CA and a certificate it signed for 127.0.0.1: (ca.pem, server.pem, server.key)."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubetfx test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return paths


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    return _write_ca_and_server_cert(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def https_kubeflow(certificates) -> Iterator[FakeKfpServer]:
    _, cert, key = certificates
    with FakeKfpServer(multi_user=True, tokens={ALICE: ["alice"]}, tls=(str(cert), str(key))) as fake:
        assert fake.url.startswith("https://")
        yield fake


def test_https_with_the_ca_bundle(https_kubeflow: FakeKfpServer, package: str, certificates):
    """Every request — the health check and all of kfp.Client's — trusts the private CA given."""
    ca, _, _ = certificates
    result = _submit(
        https_kubeflow.url, package, existing_token=ALICE, namespace="alice", ca_bundle=str(ca), wait=True
    )
    assert result.final_state == "SUCCEEDED"
    assert https_kubeflow.calls("POST", f"{API}/runs") and https_kubeflow.calls(
        "GET", f"{API}/runs/{result.run_id}"
    )


def test_https_with_an_untrusted_certificate_is_one_line(https_kubeflow: FakeKfpServer, package: str):
    with pytest.raises(SubmitError) as err:
        _submit(https_kubeflow.url, package, existing_token=ALICE, namespace="alice")
    assert str(err.value).startswith(
        f"cannot reach Kubeflow Pipelines at {https_kubeflow.url}: TLS certificate verification failed ("
    )
    assert "pass --ca-bundle PATH" in str(err.value) and "--insecure-skip-tls-verify" in str(err.value)
    assert https_kubeflow.requests == []  # the handshake failed, nothing was sent


def test_https_without_verification(https_kubeflow: FakeKfpServer, package: str):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = _submit(
            https_kubeflow.url, package, existing_token=ALICE, namespace="alice", verify_tls=False
        )
    assert result.run_id in https_kubeflow.runs
    assert not [w for w in caught if issubclass(w.category, urllib3.exceptions.InsecureRequestWarning)]


def test_tls_options_reach_kfp_client(certificates):
    """kfp.Client gets ssl_ca_cert / verify_ssl, and its API client's configuration carries them."""
    ca, _, _ = certificates
    auth = remote_auth.TokenSource(ALICE, origin="--token")
    for ca_bundle, verify in ((str(ca), True), (None, False)):
        server = remote_auth._Server(
            host="https://127.0.0.1:1",
            auth=auth,
            namespace="alice",
            tls=remote_auth._tls_context(ca_bundle, verify),
            ca_bundle=ca_bundle,
            verify_tls=verify,
        )
        config = remote._make_client(server)._run_api.api_client.configuration
        assert config.ssl_ca_cert == ca_bundle and config.verify_ssl is verify
        assert config.get_api_key_with_prefix("authorization") == f"Bearer {ALICE}"


def test_cli_insecure_skip_tls_verify_warns_once(
    https_kubeflow: FakeKfpServer, package: str, monkeypatch: pytest.MonkeyPatch, capsys
):
    code, out, err = _cli(
        https_kubeflow.url, package, monkeypatch, capsys,
        "--token", ALICE, "--namespace", "alice", "--insecure-skip-tls-verify",
    )  # fmt: skip
    assert code == 0, err
    assert err == "[submit] warning: the server's TLS certificate is not verified\n"


def test_a_jwt_in_a_server_message_is_cut_out(server: FakeKfpServer, package: str):
    jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    server.fail("POST", f"{API}/runs", 500, f"cannot use header Authorization: Bearer {jwt}")
    with pytest.raises(SubmitError) as err:
        _submit(server.url, package)
    assert jwt not in str(err.value) and "Authorization: Bearer <token>" in str(err.value)
