"""Lineage of local runs in ML Metadata (a SQLite store on the storage root).

On a cluster Kubeflow Pipelines records every execution and artifact in its own ML Metadata
service. A local run records the same shape here: one context per run (and one for the
pipeline), one execution per task with its parameters, status and timing, every artifact
with its KFP type, URI and metadata, and INPUT/OUTPUT events joining them. Artifacts are
identified by URI, so a task's input is the very artifact its upstream task produced.

    python -m pipelines.lineage --storage kubetfx_storage --version 1 [--model insurance]

answers, for a pushed model version, which run, data, schema, transform graph and
hyperparameters produced it, how it was evaluated and against which baseline, and with which
code (package version, user module hash, image) (``pipelines.lineage.report``); a version that
was never pushed lists the ones that were. Without a store (deleted, or a cluster's run), or
with ``--source volume``, the same answer comes from the registry and the artifacts' manifests
on the volume (``pipelines.lineage.volume``); the output says which source answered.

Paths on the storage root (artifact URIs, the paths in artifacts' metadata, path parameters, the
``storage_root`` parameter itself as ``.``) are recorded relative to the root, URLs as they are,
so a root that is moved, restored or copied keeps a readable lineage that never points into
another root. The reader resolves them against the root it was given; records written before
(absolute) are mapped onto it as the registry maps its old entries (``registry_paths``).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from components import names

RUN_CONTEXT = "system.PipelineRun"
PIPELINE_CONTEXT = "system.Pipeline"
# Recorded values that are paths on the storage root (artifacts' metadata, task parameters).
PATH_KEYS = frozenset(
    {
        "uri",
        names.META_STORAGE_PATH,
        names.META_MODEL_PATH,
        "serving_path",
        "serving_model",
        "model_location",
        "baseline_model_path",
        "input_files",
        "source",
        *(f"input:{p}" for p in ("storage_root", "data", "module_file", "schema_file", "thresholds_file")),
        "input:serving_root",
    }
)


def relative_paths(roots: list[Path], value: Any) -> Any:  # noqa: ANN401
    """``value`` with every absolute path on the storage root made relative to it (the root: ``.``).

    The one rule (``artifact_metadata.relative_paths``), also the volume's manifests': ``roots``
    are the root as this process sees it, and as the task saw it (a pod's mount path).
    """
    from components.lib import artifact_metadata

    return artifact_metadata.relative_paths(roots, value)


def resolved_paths(storage_root: str | Path, value: Any, key: str = "", old_root: str | None = None) -> Any:  # noqa: ANN401
    """Recorded paths as absolute paths under ``storage_root`` (the reader's root).

    Relative values of ``PATH_KEYS`` are joined to it; absolute ones (records older than relative
    paths) are mapped by ``registry_paths.relocate_path``, exactly when ``old_root`` (the run's
    recorded ``storage_root``) holds them; URLs and other values stay as they are.
    """
    from components.lib import registry_paths

    if isinstance(value, dict):
        inner = {k: key if k in ("list", "struct") else k for k in value}
        return {k: resolved_paths(storage_root, v, inner[k], old_root) for k, v in value.items()}
    if isinstance(value, list):
        return [resolved_paths(storage_root, v, key, old_root) for v in value]
    if not isinstance(value, str) or not value or "://" in value:
        return value
    if os.path.isabs(value):
        value = registry_paths.relocate_path(storage_root, value, recorded_root=old_root)
    elif key not in PATH_KEYS:
        return value
    return os.path.normpath(os.path.join(storage_root, value))


def root_of(db_path: Path) -> Path:
    """The storage root of a store at ``<root>/metadata/mlmd.sqlite`` (else the store's folder)."""
    db_path = Path(os.path.abspath(db_path))
    layout = Path(names.METADATA_DB).parts
    return db_path.parents[len(layout) - 1] if db_path.parts[-len(layout) :] == layout else db_path.parent


def _to_value(value: Any):  # noqa: ANN202 (metadata_store_pb2.Value)
    from ml_metadata.proto import metadata_store_pb2

    v = metadata_store_pb2.Value()
    if isinstance(value, bool):
        v.bool_value = value
    elif isinstance(value, int):
        v.int_value = value
    elif isinstance(value, float):
        v.double_value = value
    elif isinstance(value, str):
        v.string_value = value
    else:
        v.string_value = json.dumps(value, default=str, sort_keys=True)
    return v


def _from_value(v: Any) -> Any:
    """A stored property back as Python; JSON written by ``_to_value`` comes back decoded."""
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    value = getattr(v, kind)
    if kind == "string_value" and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


class LineageRecorder:
    """Writes one local run's executions, artifacts and events into an MLMD SQLite store."""

    def __init__(self, db_path: Path, storage_root: Path | None = None) -> None:
        from ml_metadata.metadata_store import metadata_store
        from ml_metadata.proto import metadata_store_pb2

        db_path.parent.mkdir(parents=True, exist_ok=True)
        config = metadata_store_pb2.ConnectionConfig()
        config.sqlite.filename_uri = str(db_path)
        config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
        self.db_path = db_path
        self.root = Path(os.path.abspath(storage_root)) if storage_root is not None else root_of(db_path)
        self.store = metadata_store.MetadataStore(config)
        self._pb = metadata_store_pb2
        self._run_context_id: int | None = None
        self._run_id = ""
        self._pipeline_context_id: int | None = None
        self._pod_roots: list[Path] = []

    @classmethod
    def for_storage(cls, storage_root: Path) -> LineageRecorder:
        return cls(Path(storage_root) / names.METADATA_DB, Path(storage_root))

    def _type_id(self, kind: str, name: str) -> int:
        pb = self._pb
        proto_cls, put, get = {
            "context": (pb.ContextType, self.store.put_context_type, self.store.get_context_type),
            "execution": (pb.ExecutionType, self.store.put_execution_type, self.store.get_execution_type),
            "artifact": (pb.ArtifactType, self.store.put_artifact_type, self.store.get_artifact_type),
        }[kind]
        try:
            return get(name).id
        except Exception:  # noqa: BLE001 (NotFoundError: first use of this type)
            return put(proto_cls(name=name))

    def _context(self, type_name: str, name: str, props: dict[str, Any]) -> int:
        existing = self.store.get_context_by_type_and_name(type_name, name)
        ctx = existing or self._pb.Context(type_id=self._type_id("context", type_name), name=name)
        for k, v in props.items():
            ctx.custom_properties[k].CopyFrom(_to_value(v))
        return self.store.put_contexts([ctx])[0]

    def start_run(self, run_id: str, pipeline_name: str, parameters: dict[str, Any]) -> None:
        self._run_id = run_id
        self._pipeline_context_id = self._context(PIPELINE_CONTEXT, pipeline_name, {})
        owner = {"pid": os.getpid(), "host": socket.gethostname()}
        self._run_context_id = self._context(
            RUN_CONTEXT,
            run_id,
            {
                "pipeline": pipeline_name,
                "parameters": relative_paths(self._roots(parameters), parameters),
                "status": "RUNNING",
                **owner,
            },
        )
        self.store.put_parent_contexts(
            [self._pb.ParentContext(child_id=self._run_context_id, parent_id=self._pipeline_context_id)]
        )

    def _roots(self, parameters: dict[str, Any]) -> list[Path]:
        """The store's root, and every other path this run's tasks were given as it (a pod's view)."""
        given = str(parameters.get("storage_root") or "")
        if os.path.isabs(given) and Path(given) not in self._pod_roots and Path(given) != self.root:
            self._pod_roots.append(Path(given))
        return [self.root, *self._pod_roots]

    def _artifact_id(
        self, uri: str, type_name: str, name: str, metadata: dict[str, Any], state: int, roots: list[Path]
    ) -> int:
        uri, metadata = relative_paths(roots, uri), relative_paths(roots, metadata or {})
        found = [a for a in self.store.get_artifacts_by_uri(uri) if a.type == type_name]
        art = found[0] if found else self._pb.Artifact(type_id=self._type_id("artifact", type_name), uri=uri)
        art.state = state
        art.custom_properties["display_name"].CopyFrom(_to_value(name))
        for k, v in (metadata or {}).items():
            art.custom_properties[k].CopyFrom(_to_value(v))
        return self.store.put_artifacts([art])[0]

    def record_task(self, record: Any) -> None:
        """Record one finished task (a ``pipelines.run_result.TaskRecord``)."""
        pb = self._pb
        execution = pb.Execution(
            type_id=self._type_id("execution", f"kubetfx.{record.component}"),
            name=f"{self._run_id}/{record.task}",  # unique per type across runs
            last_known_state=pb.Execution.COMPLETE if record.status == "SUCCESS" else pb.Execution.FAILED,
        )
        inputs = record.executor_input.get("inputs", {})
        roots = self._roots(inputs.get("parameterValues", {}))
        for k, v in inputs.get("parameterValues", {}).items():
            execution.custom_properties[f"input:{k}"].CopyFrom(_to_value(relative_paths(roots, v)))
        for k, v in {
            "task": record.task,
            "seconds": round(record.seconds, 3),
            "peak_rss_mb": round(record.peak_rss_mb, 1),
            "error": record.error,
        }.items():
            execution.custom_properties[k].CopyFrom(_to_value(v))

        pairs = []
        for key, arts in inputs.get("artifacts", {}).items():
            for a in arts.get("artifacts", []):
                aid = self._artifact_id(
                    a["uri"],
                    a["type"]["schemaTitle"],
                    a.get("name", key),
                    a.get("metadata", {}),
                    pb.Artifact.LIVE,
                    roots,
                )
                pairs.append((aid, pb.Event.INPUT, key))
        for key, art in record.outputs.items():
            if hasattr(art, "uri"):
                aid = self._artifact_id(art.uri, art.schema_title, key, art.metadata, pb.Artifact.LIVE, roots)
                pairs.append((aid, pb.Event.OUTPUT, key))
        # put_execution writes the execution and its context links in one transaction.
        ids = [c for c in (self._run_context_id, self._pipeline_context_id) if c]
        contexts = list(self.store.get_contexts_by_id(ids)) if ids else []
        exec_id, _, _ = self.store.put_execution(execution, [], contexts, reuse_context_if_already_exist=True)
        events = []
        for aid, kind, key in pairs:
            event = pb.Event(artifact_id=aid, execution_id=exec_id, type=kind)
            event.path.steps.add().key = key
            events.append(event)
        if events:
            self.store.put_events(events)
        if contexts and pairs:
            self.store.put_attributions_and_associations(
                [pb.Attribution(artifact_id=aid, context_id=c.id) for aid, _, _ in pairs for c in contexts],
                [],
            )

    def mark_interrupted(self) -> list[str]:
        """Runs still RUNNING whose process on this host is gone were killed: say so."""
        marked = []
        for ctx in self.store.get_contexts_by_type(RUN_CONTEXT):
            props = _props(ctx)
            if props.get("status") != "RUNNING" or props.get("host") != socket.gethostname():
                continue
            if _alive(int(props.get("pid") or 0)):
                continue
            ctx.custom_properties["status"].CopyFrom(_to_value("INTERRUPTED"))
            self.store.put_contexts([ctx])
            marked.append(ctx.name)
        return marked

    def end_run(self, run: Any) -> None:
        self.finish("SUCCEEDED" if run.succeeded else "FAILED", run.seconds)

    def finish(self, status: str, seconds: float | None = None) -> None:
        """Close the run with ``status`` (SUCCEEDED, FAILED or INTERRUPTED)."""
        if self._run_context_id is None:
            return
        ctx = self.store.get_contexts_by_id([self._run_context_id])[0]
        ctx.custom_properties["status"].CopyFrom(_to_value(status))
        if seconds is not None:
            ctx.custom_properties["seconds"].CopyFrom(_to_value(round(seconds, 3)))
        self.store.put_contexts([ctx])


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class SafeLineage:
    """Lineage that never decides a run.

    Opening, recording a task and closing each turn a failure into one warning line. A store
    that cannot be opened (not a database, truncated) is set aside as
    ``mlmd.sqlite.damaged-<time>`` and a new one started; runs a killed process left RUNNING
    are marked INTERRUPTED when the next run starts.
    """

    def __init__(self, storage_root: Path, warn: Callable[[str], None]) -> None:
        self.db_path = Path(storage_root) / names.METADATA_DB
        self.root = Path(storage_root)
        self._warn = warn
        self._recorder = self._open()

    def _open(self) -> LineageRecorder | None:
        for attempt in (1, 2):
            try:
                recorder = LineageRecorder(self.db_path, self.root)
                interrupted = recorder.mark_interrupted()
                if interrupted:
                    self._warn(
                        f"warning: [lineage] runs killed earlier marked INTERRUPTED: {', '.join(interrupted)}"
                    )
                return recorder
            except Exception as e:  # noqa: BLE001 (MLMD raises its own status errors)
                if attempt == 1 and self.db_path.is_file():
                    stamp = time.strftime("%Y%m%d-%H%M%S")
                    aside = self.db_path.with_name(f"{self.db_path.name}.damaged-{stamp}")
                    try:
                        os.replace(self.db_path, aside)
                    except OSError:
                        pass
                    else:
                        self._warn(
                            f"warning: [lineage] {self.db_path}: unreadable ({_first_line(e)}); "
                            f"set aside as {aside.name}, a new store started"
                        )
                        continue
                self._warn(f"warning: [lineage] {self.db_path}: {_first_line(e)}; this run is not recorded")
                return None
        return None

    def _guarded(self, what: str, call: Callable[[], None]) -> None:
        if self._recorder is None:
            return
        try:
            call()
        except Exception as e:  # noqa: BLE001 (lineage must not decide a run)
            self._warn(f"warning: [lineage] {self.db_path}: could not record {what}: {_first_line(e)}")

    def start_run(self, run_id: str, pipeline_name: str, parameters: dict[str, Any]) -> None:
        recorder = self._recorder
        if recorder is not None:  # None: the store could not be opened (said once, at the start)
            self._guarded("the run's start", lambda: recorder.start_run(run_id, pipeline_name, parameters))

    def record_task(self, record: Any) -> None:  # noqa: ANN401
        recorder = self._recorder
        if recorder is not None:
            self._guarded(record.task, lambda: recorder.record_task(record))

    def end_run(self, run: Any) -> None:  # noqa: ANN401
        recorder = self._recorder
        if recorder is not None:
            self._guarded("the run's end", lambda: recorder.end_run(run))

    def finish(self, status: str, seconds: float | None = None) -> None:
        """Close a run that did not return normally: FAILED (an error) or INTERRUPTED (Ctrl-C)."""
        recorder = self._recorder
        if recorder is not None:
            self._guarded(f"the run's end ({status})", lambda: recorder.finish(status, seconds))


WARNING_TEXT_MAX = 200  # characters of an exception's text in a lineage warning


def _first_line(error: BaseException) -> str:
    """``Type: text`` on one line, the text cut to ``WARNING_TEXT_MAX`` characters."""
    lines = str(error).strip().splitlines()
    text = " ".join(lines[0].split()) if lines else ""
    if len(text) > WARNING_TEXT_MAX:
        text = text[: WARNING_TEXT_MAX - 3] + "..."
    return f"{type(error).__name__}: {text}"


def _props(node: Any) -> dict[str, Any]:
    return {k: _from_value(v) for k, v in node.custom_properties.items()}


def trace_version(
    db_path: Path, model_name: str, version: int, storage_root: Path | None = None
) -> dict[str, Any]:
    """Everything upstream of the pushed model ``model_name`` version ``version``.

    Paths come back absolute under ``storage_root`` (default: the root holding ``db_path``), the
    root this reader was given, whatever root they were recorded under (``resolved_paths``).
    """
    rec = LineageRecorder(db_path, storage_root)
    store, pb = rec.store, rec._pb
    pushed = [
        a
        for a in store.get_artifacts()
        if _props(a).get("version") == version
        and _props(a).get("pushed") in (1, True)
        and _props(a).get("model_name", model_name) == model_name
    ]
    if not pushed:
        known = pushed_versions(store, model_name)
        listed = f"pushed versions: {', '.join(map(str, known))}" if known else "no version was pushed"
        raise LookupError(f"no version {version} of model {model_name!r} in {db_path}; {listed}")
    target = pushed[-1]
    types = {t.id: t.name for t in store.get_artifact_types()}
    seen: dict[int, dict[str, Any]] = {}
    executions: dict[int, dict[str, Any]] = {}
    frontier = [target.id]
    while frontier:
        aid = frontier.pop()
        if aid in seen:
            continue
        art = store.get_artifacts_by_id([aid])[0]
        seen[aid] = {"type": types.get(art.type_id, art.type), "uri": art.uri, **_props(art)}
        for ev in store.get_events_by_artifact_ids([aid]):
            if ev.type != pb.Event.OUTPUT:
                continue
            ex = store.get_executions_by_id([ev.execution_id])[0]
            seen[aid]["produced_by"] = names.stage_of(str(_props(ex).get("task", ex.name)))
            if ex.id in executions:
                continue
            executions[ex.id] = {"execution": ex.name, **_props(ex)}
            for inp in store.get_events_by_execution_ids([ex.id]):
                if inp.type == pb.Event.INPUT:
                    frontier.append(inp.artifact_id)
    runs = {c.name for e in executions for c in store.get_contexts_by_execution(e) if c.type == RUN_CONTEXT}
    _resolve_all(rec.root, seen, executions)
    by_name = {str(v.get("display_name")): v for v in seen.values()}
    from pipelines.lineage.volume import by_artifact

    return {
        "model": model_name,
        "version": version,
        "runs": sorted(runs),
        **by_artifact(by_name),
        "pushed": seen[target.id],
        "artifacts": list(seen.values()),
        "executions": list(executions.values()),
    }


def _resolve_all(root: Path, *records: dict[int, dict[str, Any]]) -> None:
    """Every record's paths resolved against ``root`` (``resolved_paths``), in place.

    Records written with absolute paths name the root they were written on in their tasks'
    ``input:storage_root``: the first such one maps them exactly.
    """
    old_roots = [
        str(e["input:storage_root"])
        for e in records[-1].values()
        if os.path.isabs(str(e.get("input:storage_root") or ""))
    ]
    old_root = old_roots[0] if old_roots else None
    for found in records:
        for key, record in found.items():
            found[key] = resolved_paths(root, record, old_root=old_root)


SOURCES = ("auto", "ml-metadata", "volume")


class NoMetadataStore(LookupError):
    """``--source ml-metadata`` on a root without ``metadata/mlmd.sqlite`` (exit 2, as a bad argument)."""


def trace_any(storage: Path, model: str, version: int, source: str = "auto") -> dict[str, Any]:
    """The trace from ML Metadata, or from the volume (``volume.trace_from_volume``); it says which.

    ``auto``: ML Metadata when ``metadata/mlmd.sqlite`` exists and knows the version, else the
    volume. ``trace["source"]`` is ``ml-metadata`` or ``volume``; ``trace["source_note"]`` says
    where it was read and why. LookupError: no source knows the version (the registry's list of
    pushed versions, or ML Metadata's when the registry lists none); ValueError ``<file>:
    <problem>``: a damaged index or manifest.
    """
    from pipelines.lineage.volume import UnknownVersion, trace_from_volume

    db = storage / names.METADATA_DB
    unknown: LookupError | None = None
    if source == "ml-metadata" or (source == "auto" and db.is_file()):
        if not db.is_file():
            raise NoMetadataStore(
                f"{db}: no metadata store; run the pipeline locally first, or --source volume"
            )
        try:
            trace = trace_version(db, model, version, storage)
        except LookupError as e:
            if source != "auto":
                raise
            unknown, why = e, f"{db} has no record of version {version}"
        else:
            return {**trace, "source": "ml-metadata", "source_note": f"ML Metadata ({db})"}
    else:
        why = "--source volume" if source == "volume" else f"no ML Metadata store at {db}"
    try:
        trace = trace_from_volume(storage, model, version)
    except UnknownVersion as e:
        if unknown is not None and not e.known:  # the registry knows nothing: ML Metadata's list
            raise unknown from None
        raise
    index = storage / names.REGISTRY_INDEX
    note = f"the volume: {index} and the stages' {names.MANIFEST_FILE} ({why})"
    return {**trace, "source": "volume", "source_note": note}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.lineage",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--storage", default="kubetfx_storage")
    parser.add_argument(
        "--model", default=None, help="model name (default: the only one in the registry, else insurance)"
    )
    parser.add_argument("--version", type=int, required=True)
    parser.add_argument("--json", action="store_true", help="print the whole trace as JSON")
    parser.add_argument(
        "--source",
        choices=SOURCES,
        default="auto",
        help="ml-metadata, volume (the registry and the artifacts' manifests), or auto: ML Metadata "
        "when its store has the version, else the volume",
    )
    args = parser.parse_args(argv)
    storage = Path(args.storage)
    model = args.model or _only_model(storage)
    try:
        trace = trace_any(storage, model, args.version, args.source)
    except (LookupError, ValueError) as e:
        print(f"[lineage] {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2 if isinstance(e, NoMetadataStore) else 1
    if args.json:
        print(json.dumps(trace, indent=2, default=str))
        return 0
    from pipelines.lineage.report import describe

    print("\n".join(describe(trace)))
    return 0


def _only_model(storage: Path) -> str:
    """The model a storage root holds, when it holds one (names are derived from the data now)."""
    try:
        doc = json.loads((storage / names.REGISTRY_INDEX).read_text())
        models = sorted({e["model_name"] for e in doc.get("versions", []) if isinstance(e, dict)})
    except (OSError, ValueError, KeyError, AttributeError):
        models = []
    return models[0] if len(models) == 1 else names.MODEL_NAME


def pushed_versions(store: Any, model_name: str) -> list[int]:  # noqa: ANN401 (an MLMD MetadataStore)
    """The versions of ``model_name`` a recorded push published, in order."""
    found = set()
    for a in store.get_artifacts():
        props = _props(a)
        if props.get("pushed") in (1, True) and props.get("model_name", model_name) == model_name:
            if isinstance(props.get("version"), int | float):
                found.add(int(props["version"]))
    return sorted(found)
