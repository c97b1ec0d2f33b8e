"""The blessing: evaluate's verdict on a candidate model, which push acts on, as one typed record.

Evaluate writes a :class:`Blessing` (``write``: ``<dir>/blessing.json``, on the volume and in the
blessing artifact; ``to_metadata``: the artifact's metadata, a summary the KFP UI shows); push reads
the file back with ``Blessing.read`` and pushes only a BLESSED model, and only the one that was
judged (``model_path``). The file is the whole record; the metadata carries ``blessed``,
``verdict``, ``reasons``, ``baseline`` and ``mae``, which ``from_metadata`` reads back.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from components import names
from components.errors import StageError
from components.lib.artifact_metadata import as_bool, as_int, plain, without_nulls

VERDICTS = (names.BLESSED, names.NOT_BLESSED)
NO_BASELINE_VERSION = -1  # the metadata's "baseline" without one (metadata cannot hold a null)


@dataclasses.dataclass(frozen=True)
class Blessing:
    """The verdict, why, and what it was about: the judged model, the baseline, metrics, thresholds."""

    verdict: str
    reasons: list[str] = dataclasses.field(default_factory=list)
    baseline: int | None = None  # the baseline's registry version
    model_path: str = ""  # the SavedModel directory judged
    baseline_model_path: str | None = None
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    baseline_metrics: dict[str, float] | None = None
    thresholds: dict[str, Any] | None = None
    validation_ok: bool | None = None  # TFMA's validation_ok as TFMA wrote it
    eval_result: str = ""
    time: str = ""

    @property
    def blessed(self) -> bool:
        return self.verdict == names.BLESSED

    def to_document(self) -> dict[str, Any]:
        """The ``blessing.json`` document (nulls allowed: it is a file, not metadata)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_document(cls, doc: Any, stage: str, where: str | None = None) -> Blessing:
        """The record from a ``blessing.json`` document; a document without a verdict is a StageError."""
        if not isinstance(doc, dict) or doc.get("verdict") not in VERDICTS:
            raise StageError(stage, where, f'blessing has no "verdict" {names.BLESSED}/{names.NOT_BLESSED}')
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in doc.items() if k in known}
        values["reasons"] = [str(r) for r in values.get("reasons") or []]
        values["metrics"] = dict(values.get("metrics") or {})
        values["model_path"] = str(values.get("model_path") or "")
        values["eval_result"] = str(values.get("eval_result") or "")
        values["time"] = str(values.get("time") or "")
        return cls(**values)

    def to_metadata(self) -> dict[str, Any]:
        """The blessing artifact's metadata (what the KFP UI shows): no nulls, no NaN."""
        mae = self.metrics.get("mae")
        return without_nulls(
            {
                "blessed": int(self.blessed),
                "verdict": self.verdict,
                "reasons": list(self.reasons),
                "baseline": self.baseline if self.baseline is not None else NO_BASELINE_VERSION,
                "mae": mae if mae is not None and math.isfinite(mae) else None,
            }
        )

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any], stage: str, where: str | None = None) -> Blessing:
        """The summary ``to_metadata`` carries, as written or after ML Metadata's round trip."""
        meta = plain(dict(metadata))
        verdict = meta.get("verdict")
        if verdict is None and "blessed" in meta:
            verdict = (
                names.BLESSED if as_bool(meta["blessed"], "blessed", stage, where) else names.NOT_BLESSED
            )
        if verdict not in VERDICTS:
            raise StageError(
                stage, where, f'blessing metadata has no "verdict" {names.BLESSED}/{names.NOT_BLESSED}'
            )
        baseline = as_int(meta.get("baseline", NO_BASELINE_VERSION), "baseline", stage, where)
        return cls(
            verdict=verdict,
            reasons=[str(r) for r in meta.get("reasons") or []],
            baseline=None if baseline == NO_BASELINE_VERSION else baseline,
            metrics={"mae": float(meta["mae"])} if meta.get("mae") is not None else {},
        )

    def write(self, directory: Path) -> Path:
        """Write ``<directory>/blessing.json``; return its path."""
        path = Path(directory) / names.BLESSING_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_document(), indent=2, sort_keys=True))
        return path

    @classmethod
    def read(cls, directory: Path, stage: str) -> Blessing:
        """The record in ``<directory>/blessing.json``; missing or unreadable -> StageError."""
        path = Path(directory) / names.BLESSING_FILE
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError as e:
            raise StageError(stage, str(path), "blessing file is missing: was the evaluate stage run?") from e
        except (OSError, ValueError) as e:
            raise StageError(stage, str(path), f"blessing file is unreadable: {e}") from e
        return cls.from_document(doc, stage, str(path))
