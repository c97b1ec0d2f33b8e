"""Artifact metadata as ML Metadata hands it back, and as it must be written to reach it.

In the local runner a stage's output metadata reaches the next stage as written. On the KFP
backend it makes a round trip through ML Metadata (``pipelines/backend_mlmd.py`` emulates it):
bools come back as 1.0/0.0, ints as floats, lists as ``{"list": [...]}`` and dicts as
``{"struct": {...}}``, and a None value fails the producing task. The records that cross stages
(``baseline``, ``blessing``) write through ``without_nulls`` and read through ``plain``,
``as_bool`` and ``as_int``, so they read the same in both places.
"""

from __future__ import annotations

from typing import Any

from components.errors import StageError


def plain(value: Any) -> Any:
    """``value`` with ML Metadata's ``{"list": [...]}`` and ``{"struct": {...}}`` wrappers removed."""
    if isinstance(value, dict):
        if len(value) == 1 and isinstance(value.get("list"), list):
            return [plain(v) for v in value["list"]]
        if len(value) == 1 and isinstance(value.get("struct"), dict):
            return {k: plain(v) for k, v in value["struct"].items()}
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def as_bool(value: Any, key: str, stage: str, where: str | None) -> bool:
    """A bool written as a bool and read back as one, or as 1/0 (ML Metadata's int)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    raise StageError(stage, where, f"metadata {key!r} must be true or false, got {value!r}")


def as_int(value: Any, key: str, stage: str, where: str | None) -> int:
    """An int written as an int and read back as one, or as a whole float (ML Metadata's double)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise StageError(stage, where, f"metadata {key!r} must be a whole number, got {value!r}")


def without_nulls(metadata: dict[str, Any]) -> dict[str, Any]:
    """Metadata without None values.

    The KFP backend fails a task whose artifact metadata holds a null ("unknown/unsupported
    value type" when the launcher writes it to ML Metadata).
    """
    return {k: v for k, v in metadata.items() if v is not None}
