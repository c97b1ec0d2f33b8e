r"""The reference workload as a real TFX 1.16 pipeline on LocalDagRunner: the yardstick for KubeTFX.

Setup (TFX 1.16 needs Python 3.9/3.10; our own venv is 3.11, so TFX lives in a venv of its own)::

    benchmarks/tfx_reference/setup.sh            # -> /opt/tfx116/venv (TFX_VENV=... to move it)
    /opt/tfx116/venv/bin/python benchmarks/tfx_reference/tfx_pipeline.py \
        --data ../shared/data/insurance.csv --workdir /tmp/tfx_ref

``setup.sh`` creates the venv with uv (installed from PyPI if missing) on a CPython 3.10
(``TFX_PYTHON=/path/to/python3.10`` to choose one) and installs ``tfx==1.16.0`` with the stack
pinned to what it resolves to: TensorFlow 2.16.2, Keras 3.12, tf-keras 2.16, TFT 1.16.0,
TFDV/tfx-bsl 1.16.1, TFMA 0.47.1, ml-metadata 1.16.0, apache-beam 2.74.0, keras-tuner 1.4.8,
plus pip (TFX installs the packaged module file with ``pip install --target`` in each executor
that uses it). It is idempotent: a second run only checks the pins. ``python -m
benchmarks.benchmark --tfx`` runs this script in that venv next to our pipeline.

The pipeline is the standard TFX one, with the workload's settings (../shared/WORKLOAD.md):
CsvExampleGen (default 2:1 hash split) -> StatisticsGen -> SchemaGen(infer_feature_shape=True)
-> ExampleValidator -> Transform -> Tuner (RandomSearch, 4 trials x 300 steps, batch 32) ->
Trainer (1,000 steps, batch 32, the tuner's best hyperparameters) -> Resolver
(LatestBlessedModelStrategy) -> Evaluator (ExampleCount, MSE, MAE; overall + by ``smoker``;
MAE <= 8,000 and at most 5 % worse than the baseline) -> Pusher (filesystem,
``<workdir>/serving/insurance/<version>/``). Transform, Tuner and Trainer use ``tfx_module.py``,
which delegates to OUR user module ``components.modules.insurance``, so both systems train the
identical model. Beam runs with the same options as our stages (``components.defaults.BEAM_ARGS``,
DirectRunner, one worker) and, like them (``components/lib/beam.py``), a DirectRunner request runs
as the FnApiRunner: Beam 2.74's DirectRunner first tries the Prism runner, which downloads a
binary from GitHub — with internet access TFX would then run on a different runner than ours,
without it every Beam pipeline pays a failed download. Caching is off; one run = every
component executes.

Known difference: TFX's ExampleValidator checks every split against the schema but computes
skew/drift only when the schema carries comparators (a curated schema); the inferred schema here
has none, so TFX's validate does a little less than ours.

Timing method. LocalDagRunner runs the nodes one after another in this process, each through
``Launcher.launch()`` (driver/input resolution, MLMD registration, executor, publish). We wrap
that method and record ``time.perf_counter()`` around every call: a component's ``seconds`` is
the wall time of its whole launch, the same scope as our local runner's per-task time. As a
cross-check each component also reports ``mlmd_seconds``, the MLMD execution's
``last_update_time - create_time`` (registration -> publish, millisecond resolution; it
excludes input resolution). ``pipeline_s`` is the wall time of ``LocalDagRunner().run()``
(it also includes compiling the pipeline and building the module-file wheel), ``script_s``
adds the imports, and ``peak_rss_mb`` is this process's ``ru_maxrss``.

Output: TFX's logs on stderr; the last stdout line is one JSON object with those figures, the
evaluation metrics per slice, the blessing, the push destination and the best hyperparameters.
"""

from __future__ import annotations

import time

_T0 = time.perf_counter()  # before the heavy imports: script_s includes them

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from components import defaults, names  # noqa: E402  (stdlib-only modules)

PIPELINE_NAME = "kubetfx-tfx-reference"
MODULE_FILE = Path(__file__).resolve().with_name("tfx_module.py")
RESOLVER_ID = "latest_blessed_model_resolver"

# Our stage name -> the TFX component id that does the same work (the benchmark's mapping).
TFX_COMPONENT_OF_STAGE: dict[str, str] = {
    names.STAGE_EXAMPLE_GEN: "CsvExampleGen",
    names.STAGE_STATISTICS: "StatisticsGen",
    names.STAGE_SCHEMA: "SchemaGen",
    names.STAGE_VALIDATE: "ExampleValidator",
    names.STAGE_TRANSFORM: "Transform",
    names.STAGE_TUNE: "Tuner",
    names.STAGE_TRAIN: "Trainer",
    names.STAGE_RESOLVE: RESOLVER_ID,
    names.STAGE_EVALUATE: "Evaluator",
    names.STAGE_PUSH: "Pusher",
}
STAGE_OF_TFX_COMPONENT = {v: k for k, v in TFX_COMPONENT_OF_STAGE.items()}


def eval_config() -> Any:
    """The workload's evaluation: three metrics, two slicings, the MAE gate on the overall slice.

    The thresholds sit in ``MetricConfig.threshold``, which TFMA applies to the overall slice;
    the change threshold only counts when the Resolver found a baseline (TFX's Evaluator drops
    it otherwise: "rubber stamp").
    """
    import tensorflow_model_analysis as tfma

    mae_threshold = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(upper_bound={"value": defaults.MAE_UPPER_BOUND}),
        change_threshold=tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.LOWER_IS_BETTER,
            relative={"value": defaults.MAX_RELATIVE_DEGRADATION},
        ),
    )
    return tfma.EvalConfig(
        model_specs=[
            tfma.ModelSpec(
                signature_name=names.SERVING_SIGNATURE,
                label_key=names.LABEL,
                prediction_key=names.PREDICTIONS_KEY,
            )
        ],
        slicing_specs=[tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=[names.SLICE_FEATURE])],
        metrics_specs=[
            tfma.MetricsSpec(
                metrics=[
                    tfma.MetricConfig(class_name="ExampleCount"),
                    tfma.MetricConfig(class_name="MeanSquaredError"),
                    tfma.MetricConfig(class_name="MeanAbsoluteError", threshold=mae_threshold),
                ]
            )
        ],
    )


def tfx_beam_args(beam_args: str) -> list[str]:
    """The Beam options list for TFX: as typed, except a local DirectRunner runs as FnApiRunner.

    The same rule as our stages' ``components.lib.beam.pipeline_options`` (which returns a
    PipelineOptions object, where TFX wants the argument list), so both sides use one runner.
    """
    args = shlex.split(beam_args or "")
    out: list[str] = []
    runner_given = False
    skip_next = False
    for i, arg in enumerate(args):
        if skip_next:
            skip_next = False
            continue
        if arg == "--runner" or arg.startswith("--runner="):
            runner_given = True
            if arg == "--runner":
                value = args[i + 1] if i + 1 < len(args) else ""
                skip_next = True
            else:
                value = arg.split("=", 1)[1]
            name = value.rsplit(".", 1)[-1].lower()
            name = name[: -len("runner")] if name.endswith("runner") else name
            out.append(
                "--runner=FnApiRunner" if name in ("direct", "switchingdirect") else f"--runner={value}"
            )
            continue
        out.append(arg)
    if not runner_given:
        out.insert(0, "--runner=FnApiRunner")
    return out


def build_pipeline(data_dir: Path, workdir: Path, beam_args: str) -> Any:
    """The ten-component TFX pipeline of the reference workload, rooted at ``workdir``."""
    from tfx import v1 as tfx

    module_file = str(MODULE_FILE)
    example_gen = tfx.components.CsvExampleGen(input_base=str(data_dir))
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = tfx.components.SchemaGen(
        statistics=statistics_gen.outputs["statistics"], infer_feature_shape=True
    )
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"]
    )
    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        module_file=module_file,
    )
    tuner = tfx.components.Tuner(
        module_file=module_file,
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        train_args=tfx.proto.TrainArgs(num_steps=defaults.TUNER_STEPS),
        eval_args=tfx.proto.EvalArgs(num_steps=defaults.EVAL_STEPS),
    )
    trainer = tfx.components.Trainer(
        module_file=module_file,
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        hyperparameters=tuner.outputs["best_hyperparameters"],
        train_args=tfx.proto.TrainArgs(num_steps=defaults.TRAIN_STEPS),
        eval_args=tfx.proto.EvalArgs(num_steps=defaults.EVAL_STEPS),
    )
    resolver = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id(RESOLVER_ID)
    evaluator = tfx.components.Evaluator(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=resolver.outputs["model"],
        eval_config=eval_config(),
    )
    pusher = tfx.components.Pusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(
                base_directory=str(workdir / names.SERVING_DIR / names.MODEL_NAME)
            )
        ),
    )
    return tfx.dsl.Pipeline(
        pipeline_name=PIPELINE_NAME,
        pipeline_root=str(workdir / "pipeline_root"),
        components=[
            example_gen,
            statistics_gen,
            schema_gen,
            example_validator,
            transform,
            tuner,
            trainer,
            resolver,
            evaluator,
            pusher,
        ],
        enable_cache=False,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            str(workdir / "metadata.sqlite")
        ),
        beam_pipeline_args=tfx_beam_args(beam_args),
    )


class LaunchTimer:
    """Wall time of every ``Launcher.launch()`` LocalDagRunner makes, by node id, in run order."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self._original: Any = None

    def __enter__(self) -> LaunchTimer:
        from tfx.orchestration.portable import launcher

        self._original = original = launcher.Launcher.launch
        records = self.records

        def timed_launch(launcher_self: Any, *args: Any, **kwargs: Any) -> Any:
            node_id = launcher_self._pipeline_node.node_info.id  # noqa: SLF001
            record = {"id": node_id, "start_unix": time.time(), "ok": False}
            records.append(record)
            start = time.perf_counter()
            try:
                result = original(launcher_self, *args, **kwargs)
                record["ok"] = True
                return result
            finally:
                record["seconds"] = time.perf_counter() - start

        launcher.Launcher.launch = timed_launch
        return self

    def __exit__(self, *exc: Any) -> None:
        from tfx.orchestration.portable import launcher

        launcher.Launcher.launch = self._original


def _mlmd_store(workdir: Path) -> Any:
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2 as pb2

    metadata_store_pb2: Any = pb2  # generated protos: no type information
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(workdir / "metadata.sqlite")
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(config)


def mlmd_executions(workdir: Path) -> dict[str, dict[str, Any]]:
    """The latest pipeline run's executions, by node id: state, MLMD times, output artifacts."""
    from ml_metadata.proto import metadata_store_pb2 as pb2

    metadata_store_pb2: Any = pb2
    store = _mlmd_store(workdir)
    runs = store.get_contexts_by_type("pipeline_run")
    if not runs:
        return {}
    run = max(runs, key=lambda c: c.create_time_since_epoch)
    state_name = metadata_store_pb2.Execution.State.Name
    out: dict[str, dict[str, Any]] = {}
    for execution in store.get_executions_by_context(run.id):
        node_ids = [
            c.name.split(".", 1)[-1]
            for c in store.get_contexts_by_execution(execution.id)
            if c.type == "node" or c.name.startswith(PIPELINE_NAME + ".")
        ]
        node_id = node_ids[0] if node_ids else execution.type
        events = store.get_events_by_execution_ids([execution.id])
        # A Resolver records what it found as INTERNAL_OUTPUT; components as OUTPUT.
        kinds = (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.INTERNAL_OUTPUT)
        output_ids = [e.artifact_id for e in events if e.type in kinds]
        artifacts = {}
        for artifact in store.get_artifacts_by_id(output_ids):
            props = {k: v.string_value or v.int_value for k, v in artifact.custom_properties.items()}
            artifacts[artifact.type or str(artifact.type_id)] = {"uri": artifact.uri, "properties": props}
        out[node_id] = {
            "state": state_name(execution.last_known_state),
            "mlmd_seconds": (execution.last_update_time_since_epoch - execution.create_time_since_epoch)
            / 1000,
            "outputs": artifacts,
        }
    return out


def eval_metrics(evaluation_uri: str) -> dict[str, dict[str, float]]:
    """Metrics per slice ("overall", "smoker:yes", ...) from the Evaluator's output."""
    import tensorflow_model_analysis as tfma

    result = tfma.load_eval_result(evaluation_uri)
    out: dict[str, dict[str, float]] = {}
    for slice_key, by_output in result.slicing_metrics:
        parts = [f"{k}:{v.decode() if isinstance(v, bytes) else v}" for k, v in slice_key]
        label = ",".join(parts) or "overall"
        values: dict[str, float] = {}
        for by_sub_key in by_output.values():
            for metrics in by_sub_key.values():
                for name, value in metrics.items():
                    if isinstance(value, dict) and "doubleValue" in value:
                        values[name] = float(value["doubleValue"])
        out[label] = values
    return out


def collect(workdir: Path, timer: LaunchTimer) -> dict[str, Any]:
    """Per-component figures (launch wall + MLMD) and the run's outcome, from MLMD and the files."""
    executions = mlmd_executions(workdir)
    components = []
    for record in timer.records:
        execution = executions.get(record["id"], {})
        components.append(
            {
                "id": record["id"],
                "stage": STAGE_OF_TFX_COMPONENT.get(record["id"], ""),
                "seconds": round(record["seconds"], 3),
                "mlmd_seconds": execution.get("mlmd_seconds"),
                "state": execution.get("state", "UNKNOWN" if record["ok"] else "FAILED"),
                "start_unix": round(record["start_unix"], 3),
            }
        )
    outcome: dict[str, Any] = {"components": components}
    evaluator = executions.get("Evaluator", {}).get("outputs", {})
    if "ModelEvaluation" in evaluator:
        outcome["metrics"] = eval_metrics(evaluator["ModelEvaluation"]["uri"])
    if "ModelBlessing" in evaluator:
        outcome["blessed"] = bool(evaluator["ModelBlessing"]["properties"].get("blessed"))
    pushed = executions.get("Pusher", {}).get("outputs", {}).get("PushedModel")
    if pushed:
        outcome["pushed"] = bool(pushed["properties"].get("pushed"))
        outcome["pushed_to"] = pushed["properties"].get("pushed_destination") or None
    tuned = executions.get("Tuner", {}).get("outputs", {}).get("HyperParameters")
    if tuned:
        hp_file = Path(tuned["uri"]) / names.HYPERPARAMETERS_FILE
        if hp_file.is_file():
            outcome["best_hyperparameters"] = json.loads(hp_file.read_text()).get("values")
    baseline = executions.get(RESOLVER_ID, {}).get("outputs", {}).get("Model")
    outcome["baseline"] = baseline["uri"] if baseline else None
    return outcome


def count_rows(csv: Path) -> int:
    with csv.open("rb") as f:
        return max(sum(1 for _ in f) - 1, 0)


def stage_input(data: Path, workdir: Path) -> Path:
    """CsvExampleGen reads every file of a folder: give it a folder holding only ``data``."""
    data_dir = workdir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    link = data_dir / data.name
    if not link.exists():
        link.symlink_to(data.resolve())
    return data_dir


def run(data: Path, workdir: Path, beam_args: str) -> dict[str, Any]:
    """Run the pipeline once; return the JSON-able figures (``ok`` False on a failed component)."""
    os.environ.setdefault("KUBETFX_REPO_ROOT", str(REPO_ROOT))  # tfx_module.py finds our code
    from tfx import v1 as tfx

    workdir.mkdir(parents=True, exist_ok=True)
    data_dir = stage_input(data, workdir)
    import_s = time.perf_counter() - _T0
    pipeline = build_pipeline(data_dir, workdir, beam_args)
    error = None
    with LaunchTimer() as timer:
        start = time.perf_counter()
        try:
            tfx.orchestration.LocalDagRunner().run(pipeline)
        except Exception as e:  # a failed component: still report what ran
            error = f"{type(e).__name__}: {e}"
        pipeline_s = time.perf_counter() - start
    result: dict[str, Any] = {
        "system": "tfx",
        "tfx_version": tfx.__version__,
        "python": sys.version.split()[0],
        "data": str(data),
        "rows": count_rows(data),
        "beam_args": " ".join(tfx_beam_args(beam_args)),
        "ok": error is None,
        "error": error,
        "import_s": round(import_s, 3),
        "pipeline_s": round(pipeline_s, 3),
    }
    result.update(collect(workdir, timer))
    result["component_sum_s"] = round(sum(c["seconds"] for c in result["components"]), 3)
    result["script_s"] = round(time.perf_counter() - _T0, 3)
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True, help="the input CSV")
    parser.add_argument("--workdir", type=Path, required=True, help="pipeline root, MLMD, serving dir")
    parser.add_argument("--beam-args", default=defaults.BEAM_ARGS, help="Beam pipeline options")
    args = parser.parse_args(argv)
    if not args.data.is_file():
        parser.error(f"{args.data}: no such CSV file")
    result = run(args.data, args.workdir.resolve(), args.beam_args)
    print(json.dumps(result), flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
