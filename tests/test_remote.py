"""Submitting a compiled pipeline to Kubeflow Pipelines, against a fake KFP API on 127.0.0.1.

The real kfp.Client (and kfp_server_api) talk HTTP to tests/fake_kfp_server.py, so the request
bodies asserted here are the ones a real server would receive.
"""

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_kfp_server import API, FakeKfpServer
from kfp import compiler, dsl

from pipelines.remote import SubmitError, normalize_cron, submit_to_server

PIPELINE = "tiny-pipeline"
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
            r"unknown parameter 'colour' \(valid: count \(integer\), message \(string\)",
        ),
        ({"count": "three"}, r"parameter 'count' expects integer, got 'three'"),
        ({"count": 1, "rate": "fast"}, r"parameter 'rate' expects number, got 'fast'"),
        ({"count": 1, "verbose": "maybe"}, r"parameter 'verbose' expects boolean"),
        ({"count": 1, "message": 5}, r"parameter 'message' expects string, got 5"),
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
    assert "HTTP 403: User is not authorized" in str(err.value)
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
