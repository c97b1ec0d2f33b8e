"""Beam pipeline options from the ``beam_args`` pipeline parameter, shared by every Beam stage.

The string is handed to Beam as typed, so Dataflow, Flink or Spark options reach it
unchanged (their workers need a storage root they can reach). One change: a request for a
local runner (``DirectRunner``, the default) is run as the ``FnApiRunner`` that Beam 2.72's
DirectRunner falls back to anyway — it first tries the Prism runner, which downloads a
binary from GitHub with no timeout, so a pod without internet access could hang there.
``--direct_num_workers`` and ``--direct_running_mode`` apply to the FnApiRunner unchanged.

``runs_in_process`` is the one rule a stage with an in-process fast path applies: the fast path
when Beam would run in this very process anyway (the local runner in its ``in_memory`` or
``multi_threading`` mode), Beam for everything else — a remote runner (Dataflow, Flink, Spark, a
``PortableRunner`` job service) or local worker processes (``--direct_running_mode=multi_processing``).
"""

from __future__ import annotations

import shlex
from typing import Any

from components.errors import StageError

LOCAL_RUNNERS = ("direct", "switchingdirect")  # Beam's names for "pick a local runner"
IN_PROCESS_RUNNERS = ("fnapirunner", "bundlebaseddirectrunner")  # after pipeline_options' rewrite
IN_PROCESS_MODES = ("in_memory", "multi_threading")  # --direct_running_mode values with no worker process


def pipeline_options(beam_args: str, stage: str) -> Any:
    """``PipelineOptions`` for one stage; a bad options string is that stage's error."""
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

    try:
        options = PipelineOptions(shlex.split(beam_args or ""))
    except ValueError as e:
        raise StageError(stage, None, f"beam_args {beam_args!r} cannot be parsed: {e}") from e
    std = options.view_as(StandardOptions)
    name = (std.runner or "DirectRunner").rsplit(".", 1)[-1].lower()
    if name.removesuffix("runner") in LOCAL_RUNNERS:
        std.runner = "FnApiRunner"
    return options


def _args(beam_args: str, stage: str) -> list[str]:
    try:
        return shlex.split(beam_args or "")
    except ValueError as e:
        raise StageError(stage, None, f"beam_args {beam_args!r} cannot be parsed: {e}") from e


def _flag(tokens: list[str], name: str) -> str | None:
    """The last value given for ``--name`` (``--name=v`` or ``--name v``), as argparse keeps it."""
    value = None
    for i, token in enumerate(tokens):
        if token == f"--{name}" and i + 1 < len(tokens):
            value = tokens[i + 1]
        elif token.startswith(f"--{name}="):
            value = token.split("=", 1)[1]
    return value


def runner_name(beam_args: str, stage: str) -> str:
    """The runner ``beam_args`` asks for, as Beam names its class (``FnApiRunner`` for a local one).

    Read from the arguments without importing Beam (1-2 s), so a stage that then runs its
    in-process fast path never pays for it; ``pipeline_options`` applies the same rewrite.
    """
    runner = (_flag(_args(beam_args, stage), "runner") or "DirectRunner").rsplit(".", 1)[-1]
    return "FnApiRunner" if runner.lower().removesuffix("runner") in LOCAL_RUNNERS else runner


def runs_in_process(beam_args: str, stage: str) -> bool:
    """True when Beam would run in this process: the local runner with no worker processes.

    Empty ``beam_args`` count as local. ``--direct_running_mode=multi_processing`` asks for
    worker processes and so counts as out of process, as does every non-local runner.
    """
    if runner_name(beam_args, stage).lower() not in IN_PROCESS_RUNNERS:
        return False
    mode = _flag(_args(beam_args, stage), "direct_running_mode") or "in_memory"
    return mode in IN_PROCESS_MODES


def worker_stage_error(exc: BaseException) -> Any:
    """The ``StageError`` a worker raised, from the error a runner reports for it, else None.

    In process, Beam chains the stage's own error (``errors.stage_error_in`` finds it); an
    out-of-process runner (PortableRunner, Dataflow) sends back only the worker's traceback as
    text, whose last ``StageError`` line is rebuilt here, so the user still reads
    ``[stage] file: problem``.
    """
    import re

    from components.errors import StageError, stage_error_in

    found = stage_error_in(exc)
    if found is not None:
        return found
    lines = re.findall(r"StageError: \[(\w+)\] (.+)", str(exc))
    if not lines:
        return None
    stage, rest = lines[-1]
    rest = re.sub(r" \[while running '[^']*'\]$", "", rest.strip())  # Beam's note of the transform
    path, sep, problem = rest.partition(": ")
    return StageError(stage, path if sep else None, problem if sep else rest)


def run(pipeline: Any, stage: str, where: str | None, what: str) -> Any:  # noqa: ANN401
    """Run ``pipeline`` to its end and return its result; any failure is ``stage``'s one line.

    A ``StageError`` a worker raised comes back as itself (``worker_stage_error``), anything
    else as ``[stage] where: <what> pipeline failed: …``.
    """
    try:
        result = pipeline.run()
        result.wait_until_finish()
    except StageError:
        raise
    except Exception as e:
        cause = worker_stage_error(e)  # e.g. a bad cell or a damaged file, reported by a worker
        if cause is not None:
            raise StageError(cause.stage, cause.path, cause.problem) from e
        raise StageError(stage, where, f"{what} pipeline failed: {type(e).__name__}: {e}") from e
    return result


def pickle_by_value(module: Any) -> None:
    """Ship ``module``'s code inside the pipeline instead of an import by name on the workers.

    A user module given as a file is imported under a generated name (``user_module``) that no
    worker process can import: pickled by reference, every out-of-process worker (PortableRunner,
    multi-processing DirectRunner, Dataflow, Flink, Spark) would fail with ``ModuleNotFoundError``.
    Registered here, cloudpickle (Beam's default pickler) pickles its functions by value, so a
    worker needs neither the file nor the name; what the module imports (TensorFlow, TFT) is
    still imported on the worker from its own environment. ``--pickle_library=dill`` has no such
    registry: use the default pickler with a module file.
    """
    from apache_beam.internal.cloudpickle import cloudpickle as beam_cloudpickle

    beam_cloudpickle.register_pickle_by_value(module)
