"""The examples layout: ``Split-<name>/`` folders of gzipped TFRecord files, as TFX lays them out.

ExampleGen writes it for the raw examples and transform for the transformed ones; statistics,
transform, tune, train and evaluate read it. Every one of them finds a split's folder and lists
its files here, so they all agree on which files are data: regular files, in name order, that are
neither hidden (``.``) nor markers (``_``, as in ``_SUCCESS``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from components import names
from components.errors import StageError


def split_path(examples_dir: Path, split: str) -> Path:
    """The folder of one split under an examples directory (``<dir>/Split-<split>``)."""
    return Path(examples_dir) / names.split_dir(split)


def is_data_file(path: Path) -> bool:
    """A file of records, not a hidden or marker file (the one rule every reader applies)."""
    return path.is_file() and not path.name.startswith((".", "_"))


def split_files(examples_dir: Path, split: str, stage: str) -> list[Path]:
    """The data files of one split, in name order; a missing or empty split is a StageError."""
    folder = split_path(examples_dir, split)
    if not folder.is_dir():
        raise StageError(stage, str(folder), f"examples have no {split!r} split")
    files = sorted(p for p in folder.iterdir() if is_data_file(p))
    if not files:
        raise StageError(stage, str(folder), f"split {split!r} has no files")
    return files


def find_splits(examples_dir: Path, stage: str, required: tuple[str, ...] = names.SPLITS) -> dict[str, Path]:
    """``{split: folder}`` for every ``Split-<name>/`` under an examples directory, required ones first."""
    examples_dir = Path(examples_dir)
    if not examples_dir.is_dir():
        raise StageError(stage, str(examples_dir), "examples directory does not exist")
    prefix = names.split_dir("")
    found = {
        p.name[len(prefix) :]: p
        for p in sorted(examples_dir.iterdir())
        if p.is_dir() and p.name.startswith(prefix)
    }
    missing = [s for s in required if s not in found]
    if missing:
        raise StageError(
            stage,
            str(examples_dir),
            f"no {', '.join(names.split_dir(s) for s in missing)} folder; found {sorted(found)}",
        )
    return {**{s: found[s] for s in required}, **{s: p for s, p in found.items() if s not in required}}


def written_rows(metadata: dict[str, Any], artifact_path: str, split: str) -> int | None:
    """Rows ExampleGen wrote to ``split`` (the artifact's ``rows`` metadata or manifest); None: unknown.

    Readers check what they read against it, so a runner that loses or repeats records, or a
    truncated split, fails the stage instead of yielding statistics or an evaluation of other data.
    """
    from components.lib.artifact_metadata import plain

    rows = plain(metadata.get(names.META_ROWS))
    if not isinstance(rows, dict):
        try:
            rows = json.loads(Path(artifact_path).read_text()).get(names.META_ROWS)
        except (OSError, ValueError, AttributeError):
            rows = None
    value = rows.get(split) if isinstance(rows, dict) else None
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
