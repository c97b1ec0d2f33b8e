"""The model being served: the one contract every stage uses to find it and the schema it was trained with.

"The served model" of ``model_name`` is the registry's newest blessed version whose SavedModel is
still on the volume (``registry.baseline_entry``: the baseline rule, which is also what TF
Serving loads once older versions are gone). ExampleGen reads its column types (``served_types``)
to keep them when the new data fits them, validate compares this run's schema and statistics
with it (schema continuity) and measures drift against its training statistics.

The schema a version was trained with travels with the version: push copies it into
``<version dir>/assets.extra/schema.pbtxt`` (``schema_path``; TF Serving ignores
``assets.extra/``) in the same atomic rename as the model, and the registry entry names it
(``"schema"``, relative to the storage root; the version dir is ``registry.entry_path``, resolved
against the storage root the caller gives, so all of this holds after the root moved). Versions
pushed before that carry no such file; for them ``served_schema`` falls back to the raw schema
their run's transform kept on the volume
(``artifacts/<run id>/transform/transform_graph/metadata/schema.pbtxt``), then to the feature
types the serving signature parses (``assets.extra/kubetfx_inputs.json``: types only, no label,
no domains). Nothing found: no schema, and the callers say so.

Absence is never an error here (nothing served, no schema: None / {}); a damaged registry or an
unreadable schema file is a StageError naming the file, as for every other reader of them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from components import names
from components.lib import registry, saved_model, storage
from components.lib.schema_io import read_schema

ASSETS_EXTRA = "assets.extra"
REGISTRY_SCHEMA_KEY = "schema"  # the registry entry's key: the schema file, relative to the storage root
RAW_METADATA_DIR = "metadata"  # tft.TFTransformOutput.RAW_METADATA_DIR: the raw schema TFT read with
TYPE_NAMES = ("INT", "FLOAT", "BYTES")  # schema_pb2.FeatureType names a tabular column can have
_DTYPE_TYPES = {"int64": "INT", "float32": "FLOAT", "string": "BYTES"}  # tf dtype name -> schema type


def schema_path(version_dir: str | Path) -> Path:
    """Where a pushed version (or a SavedModel) carries the schema it was trained with."""
    return Path(version_dir) / ASSETS_EXTRA / names.SCHEMA_FILE


def transform_schema_path(transform_dir: str | Path) -> Path:
    """The raw schema TFT read with, in transform's stage directory (``artifacts/<run id>/transform``)."""
    return Path(transform_dir) / names.TRANSFORM_GRAPH_DIR / RAW_METADATA_DIR / names.SCHEMA_FILE


def served_entry(storage_root: str | Path, model_name: str, stage: str) -> dict[str, Any] | None:
    """The registry entry of the served version of ``model_name``, or None when none is served.

    A damaged registry is ``stage``'s StageError (``registry.read_index``).
    """
    if not model_name or not str(storage_root):
        return None
    doc = registry.read_index(storage_root, stage)
    entry, _ = registry.baseline_entry(storage_root, doc, model_name)
    return entry


def schema_file_of_entry(storage_root: str | Path, entry: dict[str, Any]) -> Path | None:
    """The schema file a registry entry's version was trained with, if one is on the volume.

    In order: the entry's ``"schema"`` (relative to the root), the version's own
    ``assets.extra/schema.pbtxt``, the raw schema its run's transform kept.
    """
    candidates: list[Path] = []
    recorded = entry.get(REGISTRY_SCHEMA_KEY)
    if isinstance(recorded, str) and recorded:
        candidates.append(Path(storage_root) / recorded)
    version_dir = registry.entry_path(storage_root, entry)
    if version_dir is not None:
        candidates.append(schema_path(version_dir))
    run_id = str(entry.get("run_id") or "")
    if run_id:
        candidates.append(
            transform_schema_path(storage.stage_dir(str(storage_root), run_id, names.STAGE_TRANSFORM))
        )
    return next((c for c in candidates if c.is_file()), None)


def _schema_from_inputs(version_dir: str | Path) -> Any:
    """A types-only schema from the features the serving signature parses (None: no such file)."""
    from tensorflow_metadata.proto.v0 import schema_pb2

    try:
        parsed = json.loads(saved_model.inputs_path(Path(version_dir)).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(parsed, dict) or not parsed:
        return None
    schema = schema_pb2.Schema()
    for name, dtype in sorted(parsed.items()):
        kind = _DTYPE_TYPES.get(str(dtype))
        if kind is not None:
            schema.feature.add(name=str(name), type=schema_pb2.FeatureType.Value(kind))
    return schema if schema.feature else None


def served_schema(storage_root: str | Path, model_name: str, stage: str) -> tuple[Any, dict[str, Any] | None]:
    """(the served version's training schema or None, its registry entry or None).

    The schema is a ``schema_pb2.Schema``; see the module docstring for where it is looked for.
    An unreadable schema file is ``stage``'s StageError naming it.
    """
    entry = served_entry(storage_root, model_name, stage)
    if entry is None:
        return None, None
    path = schema_file_of_entry(storage_root, entry)
    if path is not None:
        return read_schema(path, stage), entry
    version_dir = registry.entry_path(storage_root, entry)
    return (_schema_from_inputs(version_dir) if version_dir is not None else None), entry


def type_name(feature: Any) -> str:
    """A schema feature's type as a name ("INT", "FLOAT", "BYTES", "STRUCT", "TYPE_UNKNOWN")."""
    from tensorflow_metadata.proto.v0 import schema_pb2

    return schema_pb2.FeatureType.Name(feature.type)


def served_types(storage_root: str | Path, model_name: str, stage: str) -> dict[str, str]:
    """``{feature: "INT" | "FLOAT" | "BYTES"}`` of the served version's schema.

    {} when nothing is served or it has no schema. ExampleGen prefers these types where the new
    data fits them, so a re-saved export does not change a column's type.
    """
    schema, _ = served_schema(storage_root, model_name, stage)
    if schema is None:
        return {}
    return {f.name: type_name(f) for f in schema.feature if type_name(f) in TYPE_NAMES}
