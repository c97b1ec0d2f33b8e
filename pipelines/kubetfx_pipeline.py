"""The ten-stage KubeTFX pipeline, built from explicit arguments.

``_wire`` is the only place the stages are wired: the ten inside ``dsl.ExitHandler`` whose exit
task, ``finalize``, records the run's outcome however they ended (``components.lib.finalize``).
Tune is one task, or — ``ClusterOptions.tune_parallelism`` N > 1 — N trial-group tasks and a
fan-in (``_tune``). Everything a run may change is a pipeline parameter, declared once in
``components.parameters`` (defaults: the reference workload, ../shared/WORKLOAD.md); everything
about the cluster (image, volume, tune's trial groups) is an argument here, given by
``compile.py``. Nothing is read from the environment, so the YAML does not depend on who
compiled it.
"""

import dataclasses
import inspect
import types

from kfp import dsl, kubernetes

from components import names, parameters
from components.component import IMAGE
from components.evaluate import evaluate
from components.example_gen import example_gen
from components.finalize import finalize
from components.push import push
from components.resolve_baseline import resolve_baseline
from components.schema import schema
from components.statistics import statistics
from components.train import train
from components.transform import transform
from components.tune import tune, tune_best, tune_trials
from components.validate import validate

PIPELINE_NAME = "kubetfx-pipeline"
DESCRIPTION = "TFX's ten stages as KFP v2 lightweight components."


@dataclasses.dataclass(frozen=True)
class Resources:
    """Requests and limits of one stage's pod."""

    cpu_request: str
    memory_request: str
    cpu_limit: str
    memory_limit: str
    retries: int = 2  # the stage's output is written atomically, so a rerun is safe
    cache: bool = True


# Tune and train get the most CPU; the stages that read what changes between runs with the same
# parameters never come from cache: example_gen (a new export at the same path, and the served
# version's column types), validate (the served version's schema and statistics), and the gate
# stages that read or write the registry. Push is not retried blindly.
STAGE_RESOURCES: dict[str, Resources] = {
    names.STAGE_EXAMPLE_GEN: Resources("1", "2Gi", "2", "4Gi", cache=False),
    names.STAGE_STATISTICS: Resources("1", "2Gi", "2", "4Gi"),
    names.STAGE_SCHEMA: Resources("500m", "1Gi", "1", "2Gi"),
    names.STAGE_VALIDATE: Resources("500m", "1Gi", "1", "2Gi", cache=False),
    names.STAGE_TRANSFORM: Resources("1", "3Gi", "2", "6Gi"),
    names.STAGE_TUNE: Resources("2", "4Gi", "4", "8Gi"),
    names.STAGE_TRAIN: Resources("2", "4Gi", "4", "8Gi"),
    names.STAGE_RESOLVE: Resources("250m", "512Mi", "500m", "1Gi", retries=2, cache=False),
    names.STAGE_EVALUATE: Resources("1", "3Gi", "2", "6Gi", cache=False),  # reads the served baseline
    names.STAGE_PUSH: Resources("250m", "1Gi", "500m", "2Gi", retries=0, cache=False),
    names.STAGE_TUNE_TRIALS: Resources("2", "4Gi", "4", "8Gi"),  # each trial group: tune's pod
    names.STAGE_TUNE_BEST: Resources("250m", "512Mi", "500m", "1Gi"),
    # The exit task reads the run's status records: never from cache; it never fails, no retry.
    names.STAGE_FINALIZE: Resources("250m", "512Mi", "500m", "1Gi", retries=0, cache=False),
}
TUNE_FANINS = ("collected", "unrolled")
MAX_TUNE_PARALLELISM = 32  # a trial group per task; bounds.MAX_TRIALS caps the trials anyway


@dataclasses.dataclass(frozen=True)
class ClusterOptions:
    """Compile-time settings of the cluster the YAML runs on (defaults match manifests/)."""

    image: str = IMAGE
    pvc_name: str = names.DEFAULT_PVC_NAME
    mount_path: str = names.DEFAULT_MOUNT_PATH
    # Tune as N parallel trial-group tasks (1: one tune task). The fan-in: ``collected``
    # (ParallelFor + dsl.Collected, KFP 2.14+) or ``unrolled`` (N tasks, the fan-in after them
    # reads their results from the volume: KFP 2.5's driver fails a Collected consumer).
    tune_parallelism: int = 1
    tune_fanin: str = "collected"

    def __post_init__(self) -> None:
        if not 1 <= self.tune_parallelism <= MAX_TUNE_PARALLELISM:
            raise ValueError(
                f"--tune-parallelism must be 1 to {MAX_TUNE_PARALLELISM}, got {self.tune_parallelism}"
            )
        if self.tune_fanin not in TUNE_FANINS:
            raise ValueError(f"--tune-fanin must be one of {TUNE_FANINS}, got {self.tune_fanin!r}")


DEFAULT_OPTIONS = ClusterOptions()


def _place(task: dsl.PipelineTask, stage: str, opts: ClusterOptions) -> dsl.PipelineTask:
    """Give a task its image, volume, labels, resources, retries and caching policy.

    No display name is set: the KFP 2.5 backend records a task in ML Metadata under
    ``taskInfo.name`` and finds producers by DAG task key (kubeflow/pipelines#11173), so the two
    must be the same string — the compiler's default (``example-gen``, hyphens).
    """
    r = STAGE_RESOURCES[stage]
    kubernetes.add_pod_label(task, names.POD_LABEL_PART_OF, names.POD_LABEL_APP)
    kubernetes.add_pod_label(task, names.POD_LABEL_STAGE, stage.replace("_", "-"))
    task.set_container_image(opts.image)
    task.set_cpu_request(r.cpu_request).set_cpu_limit(r.cpu_limit)
    task.set_memory_request(r.memory_request).set_memory_limit(r.memory_limit)
    if r.retries:
        task.set_retry(num_retries=r.retries, backoff_duration="30s", backoff_factor=2.0)
    task.set_caching_options(enable_caching=r.cache)
    kubernetes.mount_pvc(task, pvc_name=opts.pvc_name, mount_path=opts.mount_path)
    return task


def _wire(p: types.SimpleNamespace, opts: ClusterOptions) -> None:
    """The ten stages inside the exit handler; ``p`` holds the run parameters.

    ``finalize`` takes no ``PipelineTaskFinalStatus``: KFP 2.5 refuses a run that asks for it
    at creation; it reads the status record every task leaves on the volume instead.
    """
    run_id = dsl.PIPELINE_JOB_ID_PLACEHOLDER
    exit_task = finalize(storage_root=p.storage_root, run_id=run_id, lock_timeout=p.lock_timeout)
    _place(exit_task, names.STAGE_FINALIZE, opts)
    with dsl.ExitHandler(exit_task):
        _stages(p, opts, run_id)


def _tune(p: types.SimpleNamespace, opts: ClusterOptions, run_id: str, transform_task) -> dsl.PipelineTask:  # noqa: ANN001
    """The task whose ``best_hyperparameters`` train reads: tune, or N trial groups' fan-in.

    N > 1 (``tune_parallelism``): N ``tune_trials`` tasks, each its round-robin share of the
    trial set (``components.lib.tune_groups``), and ``tune_best``, which picks as one tune
    task would. ``collected``: a ParallelFor (``parallelism`` N) and ``dsl.Collected`` of the
    groups' JSON strings (parameters: kfp 2.13's executor cannot build a list of artifacts);
    ``unrolled``: N named tasks, the fan-in ``.after`` them reading their results on the volume.
    """
    common = dict(
        transformed_examples=transform_task.outputs["transformed_examples"],
        transform_graph=transform_task.outputs["transform_graph"],
        storage_root=p.storage_root,
        run_id=run_id,
        module_file=p.module_file,
        tuner=p.tuner,
        trials=p.tuner_trials,
        steps=p.tuner_steps,
        batch_size=p.batch_size,
        validation_fraction=p.validation_fraction,
        max_epochs=p.max_epochs,
        enabled=p.tune_enabled,
        hyperparameters=p.hyperparameters,
        label=p.label,
    )
    n = opts.tune_parallelism
    if n == 1:
        return _place(tune(**common), names.STAGE_TUNE, opts)
    fan_in = dict(storage_root=p.storage_root, run_id=run_id, groups=n, module_file=p.module_file)
    if opts.tune_fanin == "collected":
        with dsl.ParallelFor(items=list(range(n)), parallelism=n) as group:
            group_task = _place(tune_trials(**common, group=group, groups=n), names.STAGE_TUNE_TRIALS, opts)
        best = tune_best(group_results=dsl.Collected(group_task.output), **fan_in)
    else:
        groups = [
            _place(tune_trials(**common, group=g, groups=n), names.STAGE_TUNE_TRIALS, opts) for g in range(n)
        ]
        best = tune_best(group_results=[], **fan_in).after(*groups)
    return _place(best, names.STAGE_TUNE_BEST, opts)


def _stages(p: types.SimpleNamespace, opts: ClusterOptions, run_id: str) -> None:
    """The ten stages and what flows between them."""
    example_gen_task = example_gen(
        storage_root=p.storage_root,
        data=p.data,
        run_id=run_id,
        label=p.label,
        split_buckets=p.split_buckets,
        schema_file=p.schema_file,
        column_types=p.column_types,
        beam_args=p.beam_args,
        encoding=p.encoding,
        na_values=p.na_values,
        drop_unlabeled=p.drop_unlabeled,
        model_name=p.model_name,  # the served version's column types are kept where the data fits
    )
    _place(example_gen_task, names.STAGE_EXAMPLE_GEN, opts)
    examples = example_gen_task.outputs["examples"]

    statistics_task = statistics(
        examples=examples, storage_root=p.storage_root, run_id=run_id, beam_args=p.beam_args, label=p.label
    )
    _place(statistics_task, names.STAGE_STATISTICS, opts)

    schema_task = schema(
        statistics=statistics_task.outputs["statistics"],
        label=p.label,
        schema_file=p.schema_file,
        storage_root=p.storage_root,
        task=p.task,
        features=p.features,
        exclude_features=p.exclude_features,
        run_id=run_id,  # the schema kept on the volume, under the run's artifacts
    )
    _place(schema_task, names.STAGE_SCHEMA, opts)

    validate_task = validate(
        statistics=statistics_task.outputs["statistics"],
        schema=schema_task.outputs["schema"],
        label=p.label,
        fail_on=p.fail_on,
        skew_threshold=p.skew_threshold,
        drift_threshold=p.drift_threshold,
        storage_root=p.storage_root,
        run_id=run_id,
        model_name=p.model_name,  # drift and schema continuity: against the served version
        data=p.data,  # an empty model_name is derived from it
    )
    _place(validate_task, names.STAGE_VALIDATE, opts)

    transform_task = transform(
        examples=examples,
        schema=schema_task.outputs["schema"],
        storage_root=p.storage_root,
        run_id=run_id,
        module_file=p.module_file,
        beam_args=p.beam_args,
        label=p.label,
    ).after(validate_task)  # never transform data that failed validation
    _place(transform_task, names.STAGE_TRANSFORM, opts)

    tune_task = _tune(p, opts, run_id, transform_task)

    train_task = train(
        transformed_examples=transform_task.outputs["transformed_examples"],
        transform_graph=transform_task.outputs["transform_graph"],
        best_hyperparameters=tune_task.outputs["best_hyperparameters"],
        storage_root=p.storage_root,
        run_id=run_id,
        module_file=p.module_file,
        train_steps=p.train_steps,
        eval_steps=p.eval_steps,
        batch_size=p.batch_size,
        validation_fraction=p.validation_fraction,
        max_epochs=p.max_epochs,
        label=p.label,
        model_family=p.model_family,
    )
    _place(train_task, names.STAGE_TRAIN, opts)

    baseline_task = resolve_baseline(
        storage_root=p.storage_root,
        model_name=p.model_name,
        serving_root=p.serving_root,
        data=p.data,
        run_id=run_id,
        lock_timeout=p.lock_timeout,
    )
    _place(baseline_task, names.STAGE_RESOLVE, opts)

    evaluate_task = evaluate(
        examples=examples,
        model=train_task.outputs["model"],
        baseline=baseline_task.outputs["baseline"],
        storage_root=p.storage_root,
        run_id=run_id,
        label=p.label,
        slice_feature=p.slice_feature,
        mae_threshold=p.mae_threshold,
        naive_margin=p.naive_margin,
        min_accuracy=p.min_accuracy,
        max_relative_degradation=p.max_relative_degradation,
        thresholds_file=p.thresholds_file,
        beam_args=p.beam_args,
        engine=p.evaluate_engine,
        min_eval_examples=p.min_eval_examples,
        min_train_rows=p.min_train_rows,
    )
    _place(evaluate_task, names.STAGE_EVALUATE, opts)

    push_task = push(
        model=train_task.outputs["model"],
        blessing=evaluate_task.outputs["blessing"],
        examples=examples,
        storage_root=p.storage_root,
        run_id=run_id,
        model_name=p.model_name,
        serving_root=p.serving_root,
        data=p.data,
        lock_timeout=p.lock_timeout,
        mlflow_register_model=p.mlflow_register_model,
        kserve_pvc=opts.pvc_name,  # the claim the InferenceService beside each version mounts
    )
    _place(push_task, names.STAGE_PUSH, opts)


def create_pipeline(opts: ClusterOptions = DEFAULT_OPTIONS):  # noqa: ANN201 (a kfp GraphComponent)
    """Build the pipeline for one cluster setup; returns the compiled-ready pipeline function.

    Its parameters — names, types, defaults and the descriptions the KFP UI's run form shows —
    come from the one vocabulary, ``components.parameters``.
    """
    vocabulary = parameters.PARAMETERS

    def kubetfx_pipeline(*values):  # noqa: ANN002, ANN202 (KFP passes one channel per parameter)
        _wire(types.SimpleNamespace(**{q.name: v for q, v in zip(vocabulary, values, strict=True)}), opts)

    kubetfx_pipeline.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter(
                q.name,
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                default=opts.mount_path if q.default is None else q.default,
                annotation=q.type,
            )
            for q in vocabulary
        ]
    )
    kubetfx_pipeline.__doc__ = parameters.docstring(DESCRIPTION)
    return dsl.pipeline(name=PIPELINE_NAME, description=DESCRIPTION)(kubetfx_pipeline)


DEFAULT_PACKAGE = "pl_yaml_output/kubetfx_pipeline.yaml"


def compile_pipeline(output: str = DEFAULT_PACKAGE, opts: ClusterOptions = DEFAULT_OPTIONS) -> str:
    """Write the pipeline YAML (IR + Kubernetes platform spec) that the KFP UI accepts."""
    import os

    from kfp import compiler

    os.makedirs(os.path.dirname(output) or ".", exist_ok=True)
    compiler.Compiler().compile(create_pipeline(opts), package_path=output)
    return output


def image_for(registry: str = "", image: str = "") -> str:
    """The runtime image: given whole, or the default one under a registry prefix."""
    if image:
        return image
    return f"{registry.rstrip('/')}/{IMAGE}" if registry else IMAGE


def add_cluster_arguments(parser) -> None:  # noqa: ANN001 (argparse parser or group)
    """The compile options, shared by compile.py and ``submit.py --host``."""
    parser.add_argument("--image-registry", default="", help="registry prefix for the runtime image")
    parser.add_argument(
        "--image",
        default="",
        help="the whole runtime image reference (overrides the prefix); with submit.py --runner backend, "
        "each task also runs in that image (buildah)",
    )
    parser.add_argument(
        "--pvc-name", default=names.DEFAULT_PVC_NAME, help="PersistentVolumeClaim every task mounts"
    )
    parser.add_argument("--mount-path", default=names.DEFAULT_MOUNT_PATH, help="where the volume is mounted")
    parser.add_argument(
        "--tune-parallelism",
        type=int,
        default=1,
        metavar="N",
        help="tune as N parallel trial-group tasks and a fan-in (1: one tune task; tuner 'random' only)",
    )
    parser.add_argument(
        "--tune-fanin",
        choices=TUNE_FANINS,
        default="collected",
        help="with --tune-parallelism > 1: collected (ParallelFor + dsl.Collected, KFP 2.14+) or "
        "unrolled (N named tasks, results on the volume: KFP 2.5)",
    )


def tune_split_refusal(opts: ClusterOptions, arguments: dict) -> str:
    """The one line refusing a run whose tuner cannot be split into the compiled trial groups, or "".

    ``arguments``: the run's parameters as given (strings or values; absent: the vocabulary's
    default). Only the random tuner splits (``components.lib.tune_groups``); the trial-group
    task refuses the rest too, this says it before a run is created.
    """
    from components.lib.tune_groups import split_refusal

    enabled = str(arguments.get("tune_enabled", parameters.BY_NAME["tune_enabled"].default)).lower()
    if enabled in ("false", "0", "no"):
        return ""
    return split_refusal(
        str(arguments.get("tuner", parameters.BY_NAME["tuner"].default)), opts.tune_parallelism
    )


def cluster_options(args) -> ClusterOptions:  # noqa: ANN001 (argparse namespace)
    """ClusterOptions from the arguments ``add_cluster_arguments`` declared."""
    return ClusterOptions(
        image=image_for(args.image_registry, args.image),
        pvc_name=args.pvc_name,
        mount_path=args.mount_path,
        tune_parallelism=getattr(args, "tune_parallelism", 1),
        tune_fanin=getattr(args, "tune_fanin", "collected"),
    )
