"""What evaluate produced: TFMA's metrics read back per slice and model, and the stage's result.

``read_metrics`` and ``overall`` read the metrics file either engine wrote. ``EvaluateResult``
holds the blessing (a ``blessing.Blessing``) and the numbers behind it, and derives the artifacts'
metadata from them.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

from components.lib.artifact_metadata import without_nulls
from components.lib.blessing import Blessing
from components.lib.evaluate.engines import ENGINE_TFMA
from components.lib.evaluate.keys import CANDIDATE, COUNT, MAE, MSE


def _slice_name(slice_key: Any) -> str:
    """A TFMA SliceKey proto -> ``"Overall"`` or ``"smoker=yes"``."""
    if not slice_key.single_slice_keys:
        return "Overall"
    parts = []
    for k in slice_key.single_slice_keys:
        kind = k.WhichOneof("kind")
        value = getattr(k, kind) if kind else ""
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        parts.append(f"{k.column}={value}")
    return ", ".join(parts)


def read_metrics(output_dir: Path) -> dict[str, dict[str, dict[str, float]]]:
    """``{slice: {model or model_diff: {metric: value}}}`` from TFMA's metrics file."""
    import tensorflow_model_analysis as tfma

    out: dict[str, dict[str, dict[str, float]]] = {}
    for mfs in tfma.load_metrics(str(output_dir)):
        by_model = out.setdefault(_slice_name(mfs.slice_key), {})
        for kv in mfs.metric_keys_and_values:
            key = kv.key
            if kv.value.WhichOneof("type") != "double_value":
                continue
            model = (key.model_name or CANDIDATE) + ("_diff" if key.is_diff else "")
            by_model.setdefault(model, {})[key.name] = kv.value.double_value.value
    return out


def overall(metrics: dict[str, dict[str, dict[str, float]]], model: str) -> dict[str, float]:
    """Overall example count, MSE, MAE and RMSE of one model (empty if it was not evaluated)."""
    m = metrics.get("Overall", {}).get(model, {})
    if not m:
        return {}
    out = {
        "example_count": m.get(COUNT, float("nan")),
        "mse": m.get(MSE, float("nan")),
        "mae": m.get(MAE, float("nan")),
    }
    out["rmse"] = math.sqrt(out["mse"]) if out["mse"] >= 0 else float("nan")
    return out


@dataclasses.dataclass
class EvaluateResult:
    """Everything evaluate produced: the blessing document and the numbers behind it."""

    blessing: Blessing
    metrics: dict[str, dict[str, dict[str, float]]]
    candidate: dict[str, float]
    baseline: dict[str, float]
    eval_result_dir: Path
    seconds: float
    engine: str = ENGINE_TFMA

    @property
    def blessed(self) -> bool:
        return self.blessing.blessed

    def blessing_metadata(self) -> dict[str, Any]:
        """The blessing artifact's metadata (the blessing contract's summary: what the KFP UI shows)."""
        return self.blessing.to_metadata()

    def evaluation_metadata(self) -> dict[str, Any]:
        """The evaluation artifact's metadata: where TFMA's result is and how to load it."""
        return without_nulls(
            {
                "eval_result": str(self.eval_result_dir),
                "verdict": self.blessing.verdict,
                "mae": _finite(self.candidate["mae"]),
                "rmse": _finite(self.candidate["rmse"]),
                "tfma_seconds": round(self.seconds, 3),
                "engine": self.engine,
                # tfma.load_eval_result(eval_result, model_name=this): TFMA drops model names from its
                # keys when it evaluated one model, so it is "" without a baseline, "candidate" with one.
                "tfma_candidate_model_name": CANDIDATE if self.baseline else "",
            }
        )

    def logged_metrics(self) -> dict[str, float]:
        """The scalars for the KFP Metrics artifact (finite values only: JSON has no NaN)."""
        logged = {k: self.candidate[k] for k in ("example_count", "mse", "mae", "rmse")}
        if self.baseline:
            logged.update(baseline_mae=self.baseline["mae"], baseline_mse=self.baseline["mse"])
        return {k: v for k, v in logged.items() if _finite(v) is not None}


def _finite(x: float) -> float | None:
    """``x``, or None for NaN/inf: a diverged model must not make the metadata invalid JSON."""
    return x if math.isfinite(x) else None
