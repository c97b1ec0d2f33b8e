"""What the driver and launcher render: the executor input as Go's protojson writes it, the command.

Go's ``protojson`` writes an integral double without a fraction (``8000``); the launcher replaces
the ``{{$...}}`` placeholders of a container's command (``component/launcher_v2.go``); the driver
substitutes ``{{$.pipeline_job_uuid}}`` and friends in a constant (``resolveInputParameter``).
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from pipelines.backend.metadata import BackendError

MINIO_MOUNT = "/minio"


# --- Rendering, as the Go launcher does -------------------------------------------------------------


def _go_numbers(value: Any) -> Any:  # noqa: ANN401
    """Go's protojson writes an integral double without a fraction: 8000, not 8000.0."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return int(value)
    if isinstance(value, dict):
        return {k: _go_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_go_numbers(v) for v in value]
    return value


def render_executor_input(executor_input: Any) -> str:  # noqa: ANN401 (ExecutorInput)
    from google.protobuf import json_format

    return json.dumps(_go_numbers(json_format.MessageToDict(executor_input)), separators=(",", ":"))


_PLACEHOLDER = re.compile(r"\{\{\$[^}]*\}\}")


def resolve_command(args: list[str], executor_input: Any, rendered: str) -> list[str]:  # noqa: ANN401
    """The launcher's placeholder resolution for the forms a container command may use."""
    ei = executor_input

    def one(match: re.Match[str]) -> str:
        text = match.group(0)
        if text == "{{$}}":
            return rendered
        m = re.fullmatch(
            r"\{\{\$\.(inputs|outputs)\.(parameters|artifacts)\['([^']+)'\](?:\.(\w+))?\}\}", text
        )
        if not m:
            raise BackendError(f"unsupported placeholder {text}")
        side, kind, name, attr = m.groups()
        io = getattr(ei, side)
        if kind == "parameters" and side == "inputs":
            value = json.loads(render_executor_input_value(io.parameter_values[name]))
            return value if isinstance(value, str) else json.dumps(value)
        if kind == "parameters":
            return io.parameters[name].output_file
        artifact = io.artifacts[name].artifacts[0]
        return artifact.uri if attr == "uri" else MINIO_MOUNT + "/" + artifact.uri[len("minio://") :]

    return [_PLACEHOLDER.sub(one, a) for a in args]


def render_executor_input_value(value: Any) -> str:  # noqa: ANN401 (struct_pb2.Value)
    from google.protobuf import json_format

    return json.dumps(_go_numbers(json_format.MessageToDict(value)))


def to_value(python_value: Any) -> Any:  # noqa: ANN401 (struct_pb2.Value)
    from google.protobuf import json_format, struct_pb2

    return json_format.ParseDict(python_value, struct_pb2.Value())


def runtime_constant(value: Any, run_id: str, pipeline_name: str, task: str) -> Any:  # noqa: ANN401
    """The driver's substitution of ``{{$.pipeline_job_uuid}}`` and friends in a constant."""
    text = value.string_value if value.WhichOneof("kind") == "string_value" else None
    known = {
        "{{$.pipeline_job_uuid}}": run_id,
        "{{$.pipeline_job_name}}": pipeline_name,
        "{{$.pipeline_job_resource_name}}": f"{pipeline_name}-{run_id}",
        "{{$.pipeline_task_name}}": task,
        "{{$.pipeline_task_uuid}}": str(uuid.uuid4()),
    }
    if text in known:
        return to_value(known[text])
    if text and _PLACEHOLDER.search(text):
        raise BackendError(f"unsupported runtime placeholder {text}")
    return value
