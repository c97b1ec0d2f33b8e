"""What ``python -m pipelines.lineage`` prints: a pushed version's inputs, evaluation, baseline and code.

The first lines say which source answered (ML Metadata, or the volume: ``lineage.volume``); both
give the same trace, so everything below reads the same.

Paths are those of the storage root the command was given (``lineage.resolved_paths``), with
``(missing)`` after one that is not there (deleted, or never copied with the root). Values are
shown as users wrote them: ML Metadata (and KFP's metadata on the way to it) keeps
every number as a float, so hyperparameters are read back from the artifact's own
``best_hyperparameters.txt`` when it is still there, and whole floats otherwise print as ints
(``num_layers 2``, not ``2.0``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from components import names
from components.lib.tuner_progress import format_value, format_values


def plain(value: Any) -> Any:  # noqa: ANN401
    """ML Metadata's shapes back to plain ones: ``{"list": [...]}`` -> list, ``{"struct": {...}}`` -> dict."""
    if isinstance(value, dict) and set(value) == {"list"}:
        return [plain(v) for v in value["list"]]
    if isinstance(value, dict) and set(value) == {"struct"}:
        return plain(value["struct"])
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def hyperparameters_of(art: dict[str, Any]) -> dict[str, Any]:
    """The hyperparameters as tune wrote them: the artifact's file if readable, else its metadata."""
    uri = str(art.get("uri") or "")
    for candidate in (Path(uri) / names.HYPERPARAMETERS_FILE, Path(uri)):
        try:
            values = json.loads(candidate.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(values, dict):
            return values
    values = plain(art.get("hyperparameters"))
    return values if isinstance(values, dict) else {}


def shown_path(value: Any) -> str:  # noqa: ANN401
    """A recorded path as the trace resolved it, ``(missing)`` after it when it is not on the volume."""
    text = str(value)
    if text.startswith("/") and not Path(text).exists():
        return f"{text} (missing)"
    return text


def _number(value: Any) -> str:  # noqa: ANN401
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:,.0f}" if abs(value) >= 100 else format_value(value)
    return str(value)


def evaluation_line(blessing: dict[str, Any]) -> str:
    """``BLESSED, MAE 1,806: overall MAE 1,806 <= upper bound 8,000; ...``."""
    if not blessing:
        return "not recorded"
    reasons = plain(blessing.get("reasons")) or []
    reasons = reasons if isinstance(reasons, list) else [reasons]
    head = str(blessing.get(names.META_VERDICT, "?")).replace("_", " ")
    if blessing.get("mae") is not None:
        head += f", MAE {_number(blessing['mae'])}"
    return head + (": " + "; ".join(str(r) for r in reasons) if reasons else "")


def baseline_line(baseline: dict[str, Any]) -> str:
    """``version 1 (run ..., MAE 1,806)`` or why there was none."""
    if not baseline:
        return "not recorded"
    if not plain(baseline.get("found")):
        return str(baseline.get("reason") or names.NO_BASELINE)
    metrics = plain(baseline.get("metrics")) or {}
    mae = f", MAE {_number(metrics['mae'])}" if isinstance(metrics, dict) and "mae" in metrics else ""
    return f"version {format_value(baseline.get('version'))} (run {baseline.get('run_id', '?')}{mae})"


GONE = "(not on the volume: the registry's record)"  # a run's artifacts deleted, or never described


def describe(trace: dict[str, Any]) -> list[str]:
    """The human-readable lines of one trace (``lineage.trace_version``)."""
    lines = [
        f"model {trace['model']} version {trace['version']}",
        f"  {'source:':<17}{trace.get('source_note') or trace.get('source') or 'ML Metadata'}",
        f"  {'run(s):':<17}{', '.join(trace['runs'])}",
    ]
    for label, key in (
        ("data", "data"),
        ("schema", "schema"),
        ("transform graph", "transform_graph"),
        ("hyperparameters", "hyperparameters"),
        ("trained model", "model_trained"),
    ):
        art = trace.get(key) or {}
        if not art:
            lines.append(f"  {label + ':':<17}not recorded")
            continue
        recorded = art.get(names.META_STORAGE_PATH) or art.get("uri")
        where = shown_path(recorded) if recorded else GONE
        extra = ""
        if key == "data":
            listed = plain(art.get("input_files")) or []
            files = [shown_path(f) for f in ([listed] if isinstance(listed, str) else listed)]
            extra = f"  files={files}" if files else ""
            extra += f" fingerprint={str(art.get(names.META_FINGERPRINT))[:16]}"
        elif key == "hyperparameters":
            values = hyperparameters_of(art)
            searched = plain(art.get("searched"))
            trials = format_value(art.get("trials"))
            how = (
                f"searched: {trials} trial{'' if trials == '1' else 's'}, best val_loss "
                f"{float(art['best_val_loss']):.4g}"
                if searched and art.get("trials") is not None
                else "module defaults, no search"
            )
            lines.append(f"  {label + ':':<17}{format_values(values) or '(none)'}  ({how})")
            lines.append(f"  {'':<17}{where}")
            continue
        lines.append(f"  {label + ':':<17}{where}{extra}")
    lines.append(f"  {'evaluation:':<17}{evaluation_line(trace.get('blessing') or {})}")
    lines.append(f"  {'baseline:':<17}{baseline_line(trace.get('baseline') or {})}")
    lines.append(f"  {'code:':<17}{code_line(trace.get('code') or {})}")
    return lines


def code_line(code: dict[str, Any]) -> str:
    """``kubetfx 0.1.0, module components.modules.tabular (sha256 1a2b3c4d5e6f7a8b), image ...``."""
    if not code:
        return "not recorded (a run before code identity was recorded)"
    module = ""
    if code.get("module"):
        module = f", module {shown_path(code['module'])} (sha256 {str(code.get('module_sha256', '?'))[:16]})"
    package = f"{code.get('package', 'kubetfx')} {code.get('package_version', '?')}"
    return f"{package}{module}, image {code.get('image', '?')}"
