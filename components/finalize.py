"""Finalize (the pipeline's exit handler): the run's outcome in the registry's run log and lineage."""

from kfp.dsl import Artifact, Output

from components.component import component


@component(record_status=False)  # it reads the others' records; its own would say nothing new
def finalize(
    storage_root: str,
    run_id: str,
    outcome: Output[Artifact],
    lock_timeout: float = 600.0,  # the vocabulary's default (components.parameters)
    last_task: str = "push",  # the final stage: the run succeeded when it did and nothing failed
):
    """Record how the run ended and remove its scratch; never fails the run (warnings instead).

    Runs after the ten stages however they ended (``dsl.ExitHandler``). The outcome —
    ``succeeded``, or ``failed`` with the failing task and its one-line error (a task that
    started and never ended: killed) — goes to ``<storage_root>/registry/runs.jsonl`` and to
    the ``outcome`` artifact's metadata (ML Metadata records it in the run's context). No
    ``PipelineTaskFinalStatus``: KFP 2.5 refuses a run that asks for it; every task's status
    record on the volume says the same (``components.lib.run_status``). See
    ``components.lib.finalize``.
    """
    import json
    from pathlib import Path

    from components.lib.finalize import finalize as run_finalize

    warnings: list[str] = []

    def warn(line: str) -> None:
        warnings.append(line)
        print(line, flush=True)

    record = run_finalize(storage_root, run_id, lock_timeout, warn, last_task)
    line = record["outcome"] + (f": {record['error']}" if record.get("error") else "")
    print(f"» run {run_id} {line}", flush=True)
    try:
        Path(outcome.path).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    except OSError as e:
        warn(f"warning: [finalize] could not write the outcome artifact: {e}")
    keys = ("outcome", "failed_task", "error", "scratch_removed", "run_log")
    meta = {k: record[k] for k in keys if k in record}
    outcome.metadata.update({**meta, "warnings": warnings})
