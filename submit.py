"""Run the KubeTFX pipeline: locally by default, on a Kubeflow Pipelines server with --host.

Locally (no cluster needed):
    python submit.py [--data CSV_OR_FOLDER] [--storage DIR] [--runner inprocess|backend]
                     [--param name=value ...]
    python submit.py --runner backend --image kubetfx/runtime:0.1.0 ...   # each task in the image
                     (built by: CONTAINER_ENGINE=buildah images/build.sh)
On a server (standalone Kubeflow Pipelines):
    python submit.py --host http://localhost:8080 [--experiment NAME] [--run-name NAME]
                     [--cron "0 0 3 * * *"] [--wait] [--param name=value ...]
On multi-user Kubeflow (profiles, Dex/Istio in front of the API):
    python submit.py --host https://KUBEFLOW/pipeline --namespace PROFILE_NAMESPACE
                     --token-file TOKEN_FILE [--ca-bundle CA.pem | --insecure-skip-tls-verify] ...
    (inside a Kubeflow notebook with pipeline access, the mounted token is used by itself)

Parameters are the pipeline's (see README); values are checked against the compiled YAML.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _params(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise SystemExit(f"[submit] --param {pair!r} must look like name=value")
        key, value = pair.split("=", 1)
        out[key.strip()] = value
    return out


class _Progress:
    """What an interrupted or crashed run has to say: its id, the stage running, what finished."""

    def __init__(self) -> None:
        self.run_id = ""
        self.stage = ""  # the stage running now ("" before the first and between stages)
        self.finished: list = []  # the TaskRecords of the stages that ended
        self.lineage: Any = None  # pipelines.lineage.store.SafeLineage, opened at the run's start

    def log(self, say: Callable[[str], None]) -> Callable[[str], None]:
        """``say``, noting the stage the runner announces (``▶ <task>``) on the way."""

        def _log(line: str) -> None:
            if line.startswith("▶ "):
                self.stage = line[2:].strip()
            say(line)

        return _log

    def pushed(self) -> str:
        """What this run did to the served model, for the interrupted line."""
        from components import names
        from pipelines.local.console import _meta

        if any(r.task == names.STAGE_PUSH and _meta(r, "pushed_model").get("pushed") for r in self.finished):
            return "the model was pushed by this run"
        if self.stage == names.STAGE_PUSH:
            return "it was pushing: check the served model's latest version"
        return "nothing was pushed by this run"


def _interrupted(progress: _Progress) -> int:
    """Ctrl-C: the run recorded INTERRUPTED, one line on stderr, exit code 130."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut this short
    if progress.lineage is not None:
        progress.lineage.finish("INTERRUPTED")
    if not progress.run_id:
        print("[submit] interrupted before the run started; nothing was pushed", file=sys.stderr)
        return 130
    last = progress.finished[-1].task if progress.finished else ""
    during = (
        f"during {progress.stage}"
        if progress.stage
        else f"after {last}"
        if last
        else "before the first stage"
    )
    print(
        f"[submit] interrupted {during}: run {progress.run_id} marked INTERRUPTED; {progress.pushed()}",
        file=sys.stderr,
    )
    return 130


def _crashed(progress: _Progress, storage: Path, error: Exception) -> int:
    """An error outside any stage (a full disk, a runner bug): run FAILED, one line, traceback logged."""
    from components import names
    from pipelines.run_result import unexpected_error_line

    if progress.lineage is not None:
        progress.lineage.finish("FAILED")
    run_dir = storage.resolve() / names.KFP_LOCAL_DIR / (progress.run_id or "no-run")
    line = unexpected_error_line(progress.stage or "submit", error, run_dir / "logs" / "submit.log")
    print(line, file=sys.stderr)
    return 1


def _local(args: argparse.Namespace, params: dict[str, str]) -> int:
    from components import names
    from pipelines.kubetfx_pipeline import ClusterOptions
    from pipelines.lineage.store import SafeLineage
    from pipelines.local import console
    from pipelines.local.run import run_locally

    storage = Path(args.storage)
    progress = _Progress()  # lineage opened at the run's start: a rejected command makes no store

    def warn(line: str) -> None:
        print(line, file=sys.stderr)

    def on_task_end(record):  # noqa: ANN001, ANN202
        progress.finished.append(record)
        progress.stage = ""
        if progress.lineage is not None:
            progress.lineage.record_task(record)
        print(console.stage_line(record))
        if args.verbose:
            print("\n".join(console.describe_outputs(record)))

    def start(run_id: str, pipeline: str, arguments: dict) -> None:
        progress.run_id = run_id
        print(f"run {run_id} ({args.runner}): storage {storage.resolve()}")
        if not args.verbose:
            logs = storage.resolve() / names.KFP_LOCAL_DIR / run_id / "logs"
            print(f"  each stage's own output: {logs} (or --verbose)")
        progress.lineage = SafeLineage(storage.resolve(), warn)
        progress.lineage.start_run(run_id, pipeline, arguments)

    try:  # pipelines.local.preflight checks everything before anything is written
        result = run_locally(
            storage,
            Path(args.data) if args.data else None,
            params,
            mode=args.runner,
            backend_version=args.backend_version,
            image=args.image or None,  # --runner backend: each task in this image
            options=ClusterOptions(tune_parallelism=args.tune_parallelism, tune_fanin=args.tune_fanin),
            log=progress.log(print if args.verbose else _quiet),
            on_task_end=on_task_end,
            start=start,
            quiet=None if args.verbose else console.TaskOutput(),
        )
    except KeyboardInterrupt:
        return _interrupted(progress)
    except (ValueError, FileNotFoundError, RuntimeError) as e:  # RuntimeError: no backend emulator here
        if progress.lineage is not None:  # a run that started and then failed is FAILED, not left RUNNING
            progress.lineage.finish("FAILED")
        message = str(e)
        print(message if message.startswith("[") else f"[submit] {message}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 (a full disk or a bug outside the stages: one line, run FAILED)
        return _crashed(progress, storage, e)
    if progress.lineage is not None:
        progress.lineage.end_run(result.run)
    return _verdict(result)


def _verdict(result) -> int:  # noqa: ANN001 (pipelines.local.run.LocalResult)
    from components import names
    from pipelines.local import console

    model_name = result.arguments.get("model_name", names.MODEL_NAME)
    word, closing = console.outcome(result.run, result.storage, model_name)
    print()
    print(console.summary_table(result.run, word))
    print()
    for line in closing:
        print(line, file=sys.stderr if word == "FAILED" else sys.stdout)
    return 1 if word == "FAILED" else 0


def _quiet(line: str) -> None:
    """Without --verbose: errors and the progress lines a stage marks for the console."""
    from components import names

    if line.startswith("✗"):
        print(line)
    elif line.strip().startswith(names.PROGRESS_PREFIX):
        print("  " + line.strip())


def _remote(args: argparse.Namespace, params: dict[str, str]) -> int:
    from pipelines.kubetfx_pipeline import (
        PIPELINE_NAME,
        cluster_options,
        compile_pipeline,
        tune_split_refusal,
    )
    from pipelines.remote.submit import SubmitError, submit_to_server

    # Compiled with the same cluster options compile.py takes, so the run uses the right image
    # (and --tune-parallelism's trial groups: refused here for a tuner that cannot split).
    try:
        options = cluster_options(args)
    except ValueError as e:  # --tune-parallelism out of range
        print(f"[submit] {e}", file=sys.stderr)
        return 2
    refusal = tune_split_refusal(options, params)
    if refusal:
        print(f"[submit] {refusal}", file=sys.stderr)
        return 2
    package = compile_pipeline(args.package, options)
    if args.insecure_skip_tls_verify:
        print("[submit] warning: the server's TLS certificate is not verified", file=sys.stderr)
    try:
        result = submit_to_server(
            args.host,
            package,
            pipeline_name=PIPELINE_NAME,
            experiment=args.experiment,
            run_name=args.run_name,
            parameters=params,
            recurring_cron=args.cron,
            wait=args.wait,
            timeout_s=args.timeout,
            namespace=args.namespace,
            existing_token=args.token,
            token_file=args.token_file,
            ca_bundle=args.ca_bundle,
            verify_tls=not args.insecure_skip_tls_verify,
        )
    except SubmitError as e:
        print(f"[submit] {e}", file=sys.stderr)
        return 2
    if result.namespace:
        print(f"namespace {result.namespace}")
    print(f"run {result.run_id}: {result.run_url}")
    if result.recurring_run_id:
        print(f"recurring run {result.recurring_run_id} ({args.cron})")
    if result.final_state:
        print(f"final state: {result.final_state}")
        return 0 if result.final_state == "SUCCEEDED" else 1
    return 0


def main(argv: list[str] | None = None) -> int:
    from components import names
    from components.parameters import help_table
    from pipelines.backend.metadata import BACKEND_VERSIONS, DEFAULT_VERSION
    from pipelines.kubetfx_pipeline import DEFAULT_PACKAGE, add_cluster_arguments
    from pipelines.local.run import DEFAULT_STORAGE

    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="pipeline parameters (--param NAME=VALUE; type, default, what it does):\n"
        + help_table(names.DEFAULT_MOUNT_PATH + " on a cluster, --storage locally"),
    )
    parser.add_argument("--host", help="Kubeflow Pipelines address; without it the run is local")
    parser.add_argument(
        "--param", action="append", default=[], metavar="NAME=VALUE", help="pipeline parameter"
    )
    local = parser.add_argument_group("local run")
    local.add_argument(
        "--data",
        help="CSV file or folder, copied onto the storage root; a gs:// or s3:// URL is read in place "
        "(default: generated insurance-like rows)",
    )
    local.add_argument("--storage", default=DEFAULT_STORAGE, help="local storage root (plays the volume)")
    local.add_argument(
        "--runner",
        choices=("inprocess", "backend"),
        default="inprocess",
        help="inprocess: one warm process (fast); backend: the compiled YAML as the open-source "
        "KFP backend runs it (a pod per task, ML Metadata, object store, the built wheel)",
    )
    local.add_argument(
        "--backend-version",
        choices=BACKEND_VERSIONS,
        default=DEFAULT_VERSION,
        help="with --runner backend: which KFP backend's rules to follow (task lookup, ParallelFor/"
        "Collected, exit handlers, caching; 2.5 records taskInfo.name and has no Collected)",
    )
    local.add_argument("-v", "--verbose", action="store_true", help="show every stage's log")
    remote = parser.add_argument_group("server run")
    remote.add_argument("--package", default=DEFAULT_PACKAGE, help="where the compiled YAML is written")
    remote.add_argument("--experiment", default="kubetfx")
    remote.add_argument("--run-name")
    remote.add_argument("--cron", help="also create a recurring run on this cron schedule")
    remote.add_argument("--wait", action="store_true", help="wait for the run and report its final state")
    remote.add_argument("--timeout", type=int, default=3600, help="seconds to wait with --wait")
    remote.add_argument(
        "--namespace",
        help="your Kubeflow profile namespace (multi-user Kubeflow; standalone KFP needs none)",
    )
    token = remote.add_mutually_exclusive_group()
    token.add_argument(
        "--token", help="bearer token for the API (visible in the process list: prefer --token-file)"
    )
    token.add_argument(
        "--token-file",
        metavar="PATH",
        help="file holding the bearer token, re-read before each request; without --token or "
        "--token-file the in-cluster token kfp uses is taken when it exists "
        "($KF_PIPELINES_SA_TOKEN_PATH, else /var/run/secrets/kubeflow/pipelines/token)",
    )
    tls = remote.add_mutually_exclusive_group()
    tls.add_argument(
        "--ca-bundle", metavar="PATH", help="PEM file of the CA that signed the server's certificate"
    )
    tls.add_argument(
        "--insecure-skip-tls-verify",
        action="store_true",
        help="do not verify the server's TLS certificate (test clusters only)",
    )
    add_cluster_arguments(remote)
    args = parser.parse_args(argv)
    params = _params(args.param)
    if not args.verbose:
        # Library chatter (TensorFlow's C++ start-up lines, google-api-core's Python 3.11
        # end-of-life notice) would bury the stage lines; --verbose shows it all.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        warnings.filterwarnings("ignore", category=FutureWarning)
    if args.host:
        return _remote(args, params)
    if "storage_root" in params:
        raise SystemExit("[submit] set the storage root with --storage, not --param storage_root")
    if args.data and args.data.split("://", 1)[0].lower() in ("gs", "s3") and "://" in args.data:
        if "data" in params:
            raise SystemExit("[submit] give the input once: --data or --param data, not both")
        params["data"] = args.data  # read where it is, not copied onto the volume
        args.data = None
    return _local(args, params)


if __name__ == "__main__":
    try:
        code = main()
    except KeyboardInterrupt:  # before a local run started (imports, compiling) or a server call
        print("[submit] interrupted", file=sys.stderr)
        code = 130
    # Skip interpreter teardown: TensorFlow's function objects raise noisy, harmless errors in
    # __del__ when the interpreter shuts down. Everything is written and flushed by now.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
