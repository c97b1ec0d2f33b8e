"""Transform's output, the contract between transform and tune/train: its layout and how to open it.

Transform writes, under its stage directory, ``transform_graph/`` (what ``tft.TFTransformOutput``
opens: ``transform_fn/``, ``transformed_metadata/`` and the raw schema TFT read with) and
``transformed_examples/`` (the examples layout, ``examples``, of transformed ``tf.Example``s). Both
artifacts point at the stage directory; tune and train find the two parts here. Beside the graph,
``kubetfx_label.json`` is the label contract (``label.LabelInfo``: task, classes, figures of the
training labels) that tune and train build the model with.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from components import names
from components.errors import StageError
from components.lib import examples


def graph_dir(stage_dir: Path) -> Path:
    """The transform graph under transform's stage directory."""
    return Path(stage_dir) / names.TRANSFORM_GRAPH_DIR


def label_info_path(graph: Path) -> Path:
    """The label contract transform writes beside (inside) the transform graph directory."""
    return Path(graph) / names.LABEL_INFO_FILE


def read_label_info(graph: Path, label: str, stage: str) -> Any:
    """The ``label.LabelInfo`` transform wrote; it must be about ``label``."""
    from components.lib.label import LabelInfo

    info = LabelInfo.read(label_info_path(graph), stage)
    if info.name != label:
        raise StageError(
            stage,
            str(label_info_path(graph)),
            f"the transform graph was made for label {info.name!r}, not {label!r}: run transform again",
        )
    return info


def transformed_examples_dir(stage_dir: Path) -> Path:
    """The transformed examples (``Split-<split>/``) under transform's stage directory."""
    return Path(stage_dir) / names.TRANSFORMED_EXAMPLES_DIR


def transform_paths(transformed_root: Path, graph_root: Path) -> tuple[Path, Path]:
    """``transformed_examples/`` and ``transform_graph/`` under the transform stage's directories.

    Both artifacts point at the transform stage directory; a path that already is the
    subdirectory is accepted too.
    """
    examples_dir = transformed_root
    if transformed_examples_dir(transformed_root).is_dir():
        examples_dir = transformed_examples_dir(transformed_root)
    graph = graph_root
    if graph_dir(graph_root).is_dir():
        graph = graph_dir(graph_root)
    return examples_dir, graph


def open_transform_output(graph: Path, stage: str) -> Any:
    """``tft.TFTransformOutput`` of a transform graph directory, or a StageError naming it."""
    import tensorflow_transform as tft

    if not (graph / "transform_fn").is_dir() or not (graph / "transformed_metadata").is_dir():
        raise StageError(
            stage, str(graph), "not a TFT transform graph (no transform_fn/ or transformed_metadata/)"
        )
    return tft.TFTransformOutput(str(graph))


def transformed_files(transformed_dir: Path, split: str, stage: str) -> list[str]:
    """The gzipped TFRecord files of one split of the transformed examples, as tf.data takes them."""
    return [str(p) for p in examples.split_files(transformed_dir, split, stage)]
