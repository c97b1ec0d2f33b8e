"""The ten-stage KubeTFX pipeline, built from explicit arguments.

``create_pipeline`` is the only place the stages are wired. Everything a run may change is a
pipeline parameter (defaults: the reference workload, ../shared/WORKLOAD.md); everything
about the cluster (image, volume) is an argument here, given by ``compile.py``. Nothing is
read from the environment, so the YAML does not depend on who compiled it.

No ``from __future__ import annotations`` here: KFP reads the pipeline function's
annotations as types.
"""

import dataclasses

from kfp import dsl, kubernetes

from components import defaults, names
from components.evaluate import evaluate
from components.example_gen import example_gen
from components.push import push
from components.resolve_baseline import resolve_baseline
from components.runtime import IMAGE
from components.schema import schema
from components.statistics import statistics
from components.train import train
from components.transform import transform
from components.tune import tune
from components.validate import validate

PIPELINE_NAME = "kubetfx-pipeline"


@dataclasses.dataclass(frozen=True)
class Resources:
    """Requests and limits of one stage's pod."""

    cpu_request: str
    memory_request: str
    cpu_limit: str
    memory_limit: str
    retries: int = 2  # the stage's output is written atomically, so a rerun is safe
    cache: bool = True


# Tune and train get the most CPU; the gate stages that read or write the registry never
# come from cache (the registry changes between runs) and push is not retried blindly.
STAGE_RESOURCES: dict[str, Resources] = {
    names.STAGE_EXAMPLE_GEN: Resources("1", "2Gi", "2", "4Gi"),
    names.STAGE_STATISTICS: Resources("1", "2Gi", "2", "4Gi"),
    names.STAGE_SCHEMA: Resources("500m", "1Gi", "1", "2Gi"),
    names.STAGE_VALIDATE: Resources("500m", "1Gi", "1", "2Gi"),
    names.STAGE_TRANSFORM: Resources("1", "3Gi", "2", "6Gi"),
    names.STAGE_TUNE: Resources("2", "4Gi", "4", "8Gi"),
    names.STAGE_TRAIN: Resources("2", "4Gi", "4", "8Gi"),
    names.STAGE_RESOLVE: Resources("250m", "512Mi", "500m", "1Gi", retries=2, cache=False),
    names.STAGE_EVALUATE: Resources("1", "3Gi", "2", "6Gi"),
    names.STAGE_PUSH: Resources("250m", "1Gi", "500m", "2Gi", retries=0, cache=False),
}


@dataclasses.dataclass(frozen=True)
class ClusterOptions:
    """Compile-time settings of the cluster the YAML runs on (defaults match manifests/)."""

    image: str = IMAGE
    pvc_name: str = names.DEFAULT_PVC_NAME
    mount_path: str = names.DEFAULT_MOUNT_PATH


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


def create_pipeline(opts: ClusterOptions = DEFAULT_OPTIONS):  # noqa: ANN201 (a kfp GraphComponent)
    """Build the pipeline for one cluster setup; returns the compiled-ready pipeline function."""

    @dsl.pipeline(name=PIPELINE_NAME, description="TFX's ten stages as KFP v2 lightweight components.")
    def kubetfx_pipeline(
        storage_root: str = opts.mount_path,
        data: str = names.DEFAULT_DATA_FILE,
        label: str = names.LABEL,
        split_buckets: str = defaults.SPLIT_BUCKETS,
        schema_file: str = "",
        fail_on: str = defaults.FAIL_ON,
        skew_threshold: float = defaults.SKEW_THRESHOLD,
        drift_threshold: float = defaults.DRIFT_THRESHOLD,
        module_file: str = "",
        beam_args: str = defaults.BEAM_ARGS,
        tuner: str = defaults.TUNER,
        tune_enabled: bool = True,
        tuner_trials: int = defaults.TUNER_TRIALS,
        tuner_steps: int = defaults.TUNER_STEPS,
        hyperparameters: str = "",
        batch_size: int = defaults.BATCH_SIZE,
        train_steps: int = defaults.TRAIN_STEPS,
        eval_steps: int = defaults.EVAL_STEPS,
        model_name: str = names.MODEL_NAME,
        slice_feature: str = names.SLICE_FEATURE,
        mae_threshold: float = defaults.MAE_UPPER_BOUND,
        max_relative_degradation: float = defaults.MAX_RELATIVE_DEGRADATION,
        thresholds_file: str = "",
        evaluate_engine: str = defaults.EVALUATE_ENGINE,
        serving_root: str = names.SERVING_DIR,
    ):
        run_id = dsl.PIPELINE_JOB_ID_PLACEHOLDER

        gen = example_gen(
            storage_root=storage_root,
            data=data,
            run_id=run_id,
            label=label,
            split_buckets=split_buckets,
            schema_file=schema_file,
        )
        _place(gen, names.STAGE_EXAMPLE_GEN, opts)

        stats = statistics(examples=gen.outputs["examples"])
        _place(stats, names.STAGE_STATISTICS, opts)

        sch = schema(
            statistics=stats.outputs["statistics"],
            label=label,
            schema_file=schema_file,
            storage_root=storage_root,
        )
        _place(sch, names.STAGE_SCHEMA, opts)

        val = validate(
            statistics=stats.outputs["statistics"],
            schema=sch.outputs["schema"],
            label=label,
            fail_on=fail_on,
            skew_threshold=skew_threshold,
            drift_threshold=drift_threshold,
            storage_root=storage_root,
            run_id=run_id,
        )
        _place(val, names.STAGE_VALIDATE, opts)

        tf_ = transform(
            examples=gen.outputs["examples"],
            schema=sch.outputs["schema"],
            storage_root=storage_root,
            run_id=run_id,
            module_file=module_file,
            beam_args=beam_args,
        ).after(val)  # never transform data that failed validation
        _place(tf_, names.STAGE_TRANSFORM, opts)

        tun = tune(
            transformed_examples=tf_.outputs["transformed_examples"],
            transform_graph=tf_.outputs["transform_graph"],
            storage_root=storage_root,
            run_id=run_id,
            module_file=module_file,
            tuner=tuner,
            trials=tuner_trials,
            steps=tuner_steps,
            batch_size=batch_size,
            enabled=tune_enabled,
            hyperparameters=hyperparameters,
        )
        _place(tun, names.STAGE_TUNE, opts)

        trn = train(
            transformed_examples=tf_.outputs["transformed_examples"],
            transform_graph=tf_.outputs["transform_graph"],
            best_hyperparameters=tun.outputs["best_hyperparameters"],
            storage_root=storage_root,
            run_id=run_id,
            module_file=module_file,
            train_steps=train_steps,
            eval_steps=eval_steps,
            batch_size=batch_size,
        )
        _place(trn, names.STAGE_TRAIN, opts)

        base = resolve_baseline(storage_root=storage_root, model_name=model_name)
        _place(base, names.STAGE_RESOLVE, opts)

        ev = evaluate(
            examples=gen.outputs["examples"],
            model=trn.outputs["model"],
            baseline=base.outputs["baseline"],
            storage_root=storage_root,
            run_id=run_id,
            label=label,
            slice_feature=slice_feature,
            mae_threshold=mae_threshold,
            max_relative_degradation=max_relative_degradation,
            thresholds_file=thresholds_file,
            beam_args=beam_args,
            engine=evaluate_engine,
        )
        _place(ev, names.STAGE_EVALUATE, opts)

        psh = push(
            model=trn.outputs["model"],
            blessing=ev.outputs["blessing"],
            examples=gen.outputs["examples"],
            storage_root=storage_root,
            run_id=run_id,
            model_name=model_name,
            serving_root=serving_root,
        )
        _place(psh, names.STAGE_PUSH, opts)

    return kubetfx_pipeline


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
        "--image", default="", help="the whole runtime image reference (overrides the prefix)"
    )
    parser.add_argument(
        "--pvc-name", default=names.DEFAULT_PVC_NAME, help="PersistentVolumeClaim every task mounts"
    )
    parser.add_argument("--mount-path", default=names.DEFAULT_MOUNT_PATH, help="where the volume is mounted")


def cluster_options(args) -> ClusterOptions:  # noqa: ANN001 (argparse namespace)
    """ClusterOptions from the arguments ``add_cluster_arguments`` declared."""
    return ClusterOptions(
        image=image_for(args.image_registry, args.image), pvc_name=args.pvc_name, mount_path=args.mount_path
    )
