"""Push stage: a blessed model to ``<serving root>/<model name>/<version>/`` (TF Serving), registered."""

from kfp.dsl import Artifact, Dataset, Input, Model, Output

from components.component import component


@component
def push(
    model: Input[Model],
    blessing: Input[Artifact],
    examples: Input[Dataset],
    storage_root: str,
    run_id: str,
    model_name: str,
    serving_root: str,
    pushed_model: Output[Model],
    data: str = "data/insurance.csv",  # the vocabulary's default: an empty model_name derives from it
    lock_timeout: float = 600.0,  # the vocabulary's default (components.parameters)
    mlflow_register_model: bool = False,  # the vocabulary's default: a BLESSED push -> MLflow model version
    kserve_pvc: str = "kubetfx-pvc",  # names.DEFAULT_PVC_NAME; the compiled YAML passes --pvc-name's
):
    """Push ``model`` only if ``blessing`` says BLESSED (checked here: kfp.local has no dsl.If).

    The blessing is evaluate's ``blessing.json``, read through the blessing contract
    (``components.lib.blessing``); a blessing of another model than ``model`` is refused.
    Not blessed, or judged against an older baseline than the registry now holds (a concurrent
    run pushed since) -> success with ``pushed=0`` and the reason. Blessed -> the next integer
    version, made visible atomically and recorded in the registry with the data fingerprint of
    ``examples`` and the blessing's metrics; what killed pushes left is settled first
    (``components.lib.reconcile``). ``serving_root`` is relative to ``storage_root`` or absolute
    inside it. Output metadata: ``pushed``, ``version``, ``serving_path``, ``reason``. Beside each
    version, the KServe InferenceService that serves it from the claim ``kserve_pvc`` (empty: none;
    ``components.lib.kserve_manifest``).

    A registry lock another run holds is waited for at most ``lock_timeout`` seconds (0: no
    limit); the log names the holder (host, pid, run id, stage, since when) while it waits and
    the failure does too (``components.lib.registry_lock``).

    With ``MLFLOW_TRACKING_URI`` set the task is logged to MLflow (``components.lib.tracking``):
    the version pushed as the ``registry_version`` tag and, with ``mlflow_register_model``, the
    pushed SavedModel as a version of the MLflow registered model of the same name.
    """
    import json
    from pathlib import Path

    from components import names
    from components.lib import storage
    from components.lib.artifact_metadata import publish
    from components.lib.blessing import Blessing
    from components.lib.push import STAGE, push_model
    from components.lib.saved_model import saved_model_dir
    from components.parameters import model_name_for

    model_name = model_name_for(model_name, data)  # empty: derived from the data, as every stage does
    verdict = Blessing.read(Path(blessing.path), STAGE)
    model_location = storage.storage_path_of(model.metadata, model.path, STAGE)
    model_dir = saved_model_dir(model.metadata, model.path, STAGE)
    fingerprint = examples.metadata.get(names.META_FINGERPRINT)
    if fingerprint is None:
        try:
            fingerprint = json.loads(Path(examples.path).read_text()).get(names.META_FINGERPRINT, "")
        except (OSError, ValueError):
            fingerprint = ""
    result = push_model(
        model_dir,
        storage_root=storage_root,
        serving_root=serving_root,
        model_name=model_name,
        run_id=run_id,
        model_location=str(model_location),
        blessing=verdict,
        fingerprint=str(fingerprint),
        lock_timeout=lock_timeout,
        kserve_pvc=kserve_pvc or None,
    )
    meta = result.metadata()
    pushed_model.metadata.update(meta)
    publish(storage_root, run_id, STAGE, {"pushed_model": pushed_model})  # lineage on the volume
    Path(pushed_model.path).parent.mkdir(parents=True, exist_ok=True)
    Path(pushed_model.path).write_text(json.dumps(meta, indent=2, sort_keys=True))
    for line in result.settled:  # what killed pushes had left, settled first: on the console too
        print(f"{names.PROGRESS_PREFIX}[{STAGE}] registry: {line}", flush=True)
    if result.pushed:
        note = "" if result.reason == "blessed" else f" ({result.reason})"  # a retry, or a pending record
        print(f"[{STAGE}] pushed {model_name} version {result.version} to {result.serving_path}{note}")
    else:
        print(f"[{STAGE}] nothing pushed: {result.reason}")
    from components.lib.tracking import log_task

    log_task(names.STAGE_PUSH)  # MLflow, when MLFLOW_TRACKING_URI is set; never fails the stage
