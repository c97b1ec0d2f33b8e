"""Input data on an object store: ``gs://`` and ``s3://`` URLs against local servers from PyPI.

Two loopback servers, started per module: ``gcp-storage-emulator`` (the GCS JSON API; Beam's
gcsio reaches it through ``STORAGE_EMULATOR_HOST``, as the Google client libraries do) and moto's
S3 server (reached through Beam's own ``--s3_endpoint_url``/key options in ``beam_args``, which
``fs.configure`` gives the driver and Beam gives its workers). ExampleGen reads the CSV where it
is — in process, on the multi-processing DirectRunner and on a PortableRunner worker pool — and
writes the same records as from a local copy; a whole pipeline runs from an ``s3://`` URL.

The storage root stays a POSIX volume: docs/scale-out.md "Storage" says which library blocks a
bucket there (TensorFlow 2.16's own ``gs://`` has no endpoint to point at a local server and its
modular plugin crashes on write; ``s3://`` needs tensorflow-io, which aborts the process at exit).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from beam_pool import MULTI_PROCESSING_ARGS, beam_pool_fixture  # noqa: F401 (the fixture beam_pool)

from components import names
from components.errors import StageError
from components.lib import examples, fs
from components.lib.example_gen import run_example_gen

BUCKET = "kubetfx-data"
S3_KEYS = "--s3_access_key_id=testing --s3_secret_access_key=testing --s3_region_name=us-east-1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(cmd: list[str], port: int, log: Path) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{cmd[2]} exited: {log.read_text()[-2000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.2)
    proc.kill()
    pytest.fail(f"{cmd[2]} did not listen on {port}: {log.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A GCS emulator on loopback with the bucket made; yields its address."""
    port = _free_port()
    log = tmp_path_factory.mktemp("gcs") / "server.log"
    cmd = [sys.executable, "-m", "gcp_storage_emulator", "start", "--host=127.0.0.1", f"--port={port}"]
    proc = _serve(cmd + ["--in-memory"], port, log)
    host = f"http://127.0.0.1:{port}"
    old = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = host  # read by every GCS client this process makes
    try:
        from google.cloud import storage

        client = storage.Client.create_anonymous_client()
        client.project = "test"
        client.create_bucket(BUCKET)
        yield host
    finally:
        if old is None:
            os.environ.pop("STORAGE_EMULATOR_HOST", None)
        else:
            os.environ["STORAGE_EMULATOR_HOST"] = old
        proc.kill()


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's S3 server on loopback with the bucket made; yields the Beam options that reach it."""
    port = _free_port()
    log = tmp_path_factory.mktemp("s3") / "server.log"
    proc = _serve([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], port, log)
    try:
        import boto3

        endpoint = f"http://127.0.0.1:{port}"
        boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        ).create_bucket(Bucket=BUCKET)
        yield f"--s3_endpoint_url={endpoint} {S3_KEYS}"
    finally:
        proc.kill()


def upload(local: Path, url: str, beam_args: str = "") -> None:
    from apache_beam.io.filesystems import FileSystems

    fs.configure(beam_args, "test")
    with FileSystems.create(url) as out:
        out.write(local.read_bytes())


def records(out: Path) -> Counter:
    """Every split's serialized records (the files' order and count aside)."""
    from components.lib.tfrecord import read_tfrecords

    found: Counter = Counter()
    for split in names.SPLITS:
        for f in examples.split_files(out, split, "test"):
            found.update((split, r) for r in read_tfrecords(f, "test"))
    return found


@pytest.fixture(scope="module")
def local_result(synthetic_csv: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("local") / "examples"
    return run_example_gen(synthetic_csv, out, label=names.LABEL), records(out)


@pytest.mark.parametrize("scheme", ["gs", "s3"])
def test_example_gen_reads_a_url_in_process(scheme, request, synthetic_csv, local_result, tmp_path):
    """The CSV read where it is: same records, rows and fingerprint as from the local file."""
    beam_args = request.getfixturevalue("s3") if scheme == "s3" else (request.getfixturevalue("gcs") and "")
    url = f"{scheme}://{BUCKET}/in-process/insurance.csv"
    upload(synthetic_csv, url, beam_args)
    out = tmp_path / "examples"
    result = run_example_gen(url, out, label=names.LABEL, beam_args=beam_args)
    expected, expected_records = local_result
    assert result.method == "in-process"
    assert result.rows == expected.rows
    assert result.fingerprint == expected.fingerprint
    assert result.column_types == expected.column_types
    assert result.files == [url]
    assert records(out) == expected_records


def test_a_url_folder_is_its_csv_files(gcs, synthetic_csv, local_result, tmp_path):
    """A prefix is a folder: its direct *.csv children in name order; the rest is ignored."""
    lines = synthetic_csv.read_bytes().splitlines(keepends=True)
    header, body = lines[0], lines[1:]
    half = len(body) // 2
    for name, part in (("part-a.csv", body[:half]), ("part-b.csv", body[half:])):
        (tmp_path / name).write_bytes(header + b"".join(part))
        upload(tmp_path / name, f"gs://{BUCKET}/folder/{name}")
    upload(tmp_path / "part-a.csv", f"gs://{BUCKET}/folder/notes.txt")
    upload(tmp_path / "part-a.csv", f"gs://{BUCKET}/folder/old/part-c.csv")
    result = run_example_gen(f"gs://{BUCKET}/folder", tmp_path / "examples", label=names.LABEL)
    assert result.files == [f"gs://{BUCKET}/folder/part-a.csv", f"gs://{BUCKET}/folder/part-b.csv"]
    assert result.rows == local_result[0].rows
    assert records(tmp_path / "examples") == local_result[1]


def test_example_gen_on_worker_processes_reads_gs(gcs, synthetic_csv, local_result, tmp_path):
    """The multi-processing DirectRunner's workers read their byte ranges from the bucket."""
    url = f"gs://{BUCKET}/workers/insurance.csv"
    upload(synthetic_csv, url)
    out = tmp_path / "examples"
    result = run_example_gen(url, out, label=names.LABEL, beam_args=MULTI_PROCESSING_ARGS)
    assert result.method == "beam"
    assert result.rows == local_result[0].rows
    assert records(out) == local_result[1]


def test_example_gen_on_a_worker_pool_reads_s3(s3, beam_pool, synthetic_csv, local_result, tmp_path):
    """PortableRunner workers that share nothing with this process reach S3 through beam_args."""
    url = f"s3://{BUCKET}/pool/insurance.csv"
    upload(synthetic_csv, url, s3)
    out = tmp_path / "examples"
    result = run_example_gen(url, out, label=names.LABEL, beam_args=f"{beam_pool.beam_args()} {s3}")
    assert result.method == "beam"
    assert result.rows == local_result[0].rows
    assert records(out) == local_result[1]


def test_missing_objects_are_one_line_errors(gcs, s3, tmp_path):
    with pytest.raises(
        StageError, match=rf"^\[example_gen\] gs://{BUCKET}/nowhere.csv: input file does not exist$"
    ):
        run_example_gen(f"gs://{BUCKET}/nowhere.csv", tmp_path / "a", label=names.LABEL)
    with pytest.raises(
        StageError, match=rf"^\[example_gen\] s3://{BUCKET}/empty/: input file does not exist$"
    ):
        run_example_gen(f"s3://{BUCKET}/empty/", tmp_path / "b", label=names.LABEL, beam_args=s3)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@pytest.mark.e2e
def test_a_pipeline_runs_from_an_s3_url(s3, synthetic_csv, tmp_path):
    """submit's path: preflight lists the URL and reads its header; every stage runs; data stays put."""
    from pipelines.local.run import run_locally

    url = f"s3://{BUCKET}/pipeline/insurance.csv"
    upload(synthetic_csv, url, s3)
    storage = tmp_path / "storage"
    params = {
        "data": url,
        "beam_args": f"--runner=DirectRunner --direct_num_workers=1 {s3}",
        "tune_enabled": "false",
        "train_steps": "200",
        "eval_steps": "5",
    }
    result = run_locally(storage, None, params, mode="inprocess", log=lambda _: None)
    failed = result.run.failed_task
    assert result.run.succeeded, failed.error if failed else "run failed"
    assert not (storage / names.DATA_DIR).exists()  # read in place, not copied
    [manifest] = [p for p in storage.rglob("examples") if p.is_file()]  # example_gen's KFP artifact
    assert json.loads(manifest.read_text())["input_files"] == [url]  # lineage names the URL


def test_preflight_names_a_missing_url_before_anything_is_written(s3, tmp_path):
    from pipelines.local.preflight import PreflightError
    from pipelines.local.run import run_locally

    storage = tmp_path / "storage"
    params = {"data": f"s3://{BUCKET}/typo.csv", "beam_args": f"--runner=DirectRunner {s3}"}
    with pytest.raises(
        PreflightError, match=rf"^\[example_gen\] s3://{BUCKET}/typo.csv: input file does not exist$"
    ):
        run_locally(storage, None, params, mode="inprocess", log=lambda _: None)
    assert not storage.exists()


def test_submit_data_url_is_read_in_place_not_copied(s3, capsys, tmp_path):
    """``submit.py --data s3://…`` hands the URL to the run as ``data``: the preflight lists it."""
    import submit

    storage = tmp_path / "storage"
    url = f"s3://{BUCKET}/submitted/typo.csv"
    argv = ["--storage", str(storage), "--data", url, "--param", f"beam_args=--runner=DirectRunner {s3}"]
    assert submit.main(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err == [f"[example_gen] {url}: input file does not exist"]
    assert not storage.exists()  # nothing written, nothing copied
    both = argv + ["--param", "data=data/other.csv"]
    with pytest.raises(SystemExit, match="give the input once"):
        submit.main(both)
