"""The statistics artifact: ``<dir>/Split-<split>/FeatureStats.pb``, as TFX's StatisticsGen writes it.

Each file is a binary ``DatasetFeatureStatisticsList`` of one dataset (``tfdv.load_stats_binary``
reads it). The statistics stage writes it; schema and validate read it, through this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from components import names
from components.errors import StageError


def statistics_path(stats_dir: Path, split: str) -> Path:
    """Where one split's statistics live in a statistics artifact."""
    return Path(stats_dir) / names.split_dir(split) / names.STATS_FILE


def feature_name(feature: Any) -> str:
    """The dotted path of a ``FeatureNameStatistics`` (or its legacy ``name``)."""
    return ".".join(feature.path.step) if feature.path.step else feature.name


def write_statistics(stats_dir: Path, split: str, stats: Any) -> Path:
    """Write one split's ``DatasetFeatureStatisticsList`` (binary, as TFX does); return the file."""
    path = statistics_path(stats_dir, split)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(stats.SerializeToString())
    return path


def read_statistics(stats_dir: Path, split: str, stage: str) -> Any:
    """Read one split's statistics; a missing or unreadable file is a StageError naming it."""
    from google.protobuf.message import DecodeError
    from tensorflow_metadata.proto.v0 import statistics_pb2

    path = statistics_path(stats_dir, split)
    stats = statistics_pb2.DatasetFeatureStatisticsList()
    try:
        stats.ParseFromString(path.read_bytes())
    except OSError as e:
        raise StageError(stage, str(path), f"cannot read statistics: {e.strerror or e}") from e
    except DecodeError as e:
        raise StageError(stage, str(path), f"not a DatasetFeatureStatisticsList: {e}") from e
    if len(stats.datasets) != 1:
        raise StageError(stage, str(path), f"expected statistics of one dataset, found {len(stats.datasets)}")
    return stats
