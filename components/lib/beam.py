"""Beam pipeline options from the ``beam_args`` pipeline parameter, shared by every Beam stage.

The string is handed to Beam as typed, so Dataflow, Flink or Spark options reach it
unchanged (their workers need a storage root they can reach). One change: a request for a
local runner (``DirectRunner``, the default) is run as the ``FnApiRunner`` that Beam 2.72's
DirectRunner falls back to anyway — it first tries the Prism runner, which downloads a
binary from GitHub with no timeout, so a pod without internet access could hang there.
``--direct_num_workers`` and ``--direct_running_mode`` apply to the FnApiRunner unchanged.
"""

from __future__ import annotations

import shlex
from typing import Any

from components.errors import StageError

LOCAL_RUNNERS = ("direct", "switchingdirect")  # Beam's names for "pick a local runner"


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
