"""The schema: a text ``Schema`` proto, ``schema.pbtxt`` (TFX SchemaGen's file name).

The schema stage writes it; validate and transform read the schema artifact, and ExampleGen and
the schema stage read a user's own schema file — all through ``read_schema``, so every stage
accepts the same files and refuses the same ones with the same message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from components import names
from components.errors import StageError


def schema_path(artifact_dir: Path) -> Path:
    """Where the schema file lives in a schema artifact."""
    return Path(artifact_dir) / names.SCHEMA_FILE


def schema_file_of(path: Path, stage: str) -> Path:
    """The schema file of ``path``: the file itself, or ``<dir>/schema.pbtxt`` for an artifact dir."""
    path = Path(path)
    if path.is_dir():
        candidate = schema_path(path)
        if not candidate.is_file():
            raise StageError(stage, str(path), f"schema artifact has no {names.SCHEMA_FILE}")
        return candidate
    if not path.is_file():
        raise StageError(stage, str(path), "schema file does not exist")
    return path


def read_schema(path: Path, stage: str) -> Any:
    """Read a text ``Schema`` proto from a file or a schema artifact directory.

    An unreadable, unparsable or empty schema, or a feature without a name, is a StageError
    naming the file.
    """
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    path = schema_file_of(path, stage)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise StageError(stage, str(path), f"cannot read schema file: {e}") from e
    schema = schema_pb2.Schema()
    try:
        text_format.Parse(text, schema)
    except text_format.ParseError as e:
        raise StageError(stage, str(path), f"not a valid text Schema proto: {e}") from e
    if not schema.feature:
        raise StageError(stage, str(path), "schema has no features")
    unnamed = [i for i, f in enumerate(schema.feature) if not f.name]
    if unnamed:
        raise StageError(stage, str(path), f"schema feature(s) at position {unnamed} have no name")
    return schema


def write_schema(schema: Any, artifact_dir: Path) -> Path:
    """Write ``<artifact_dir>/schema.pbtxt`` as text (``tfdv.load_schema_text`` reads it)."""
    from google.protobuf import text_format

    path = schema_path(artifact_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text_format.MessageToString(schema), encoding="utf-8")
    return path
