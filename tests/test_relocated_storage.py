"""A storage root moved or copied elsewhere (restored from a backup, another mount path) keeps its registry.

The registry records its paths relative to the storage root, and every reader resolves them against
the root it was given (``registry.entry_path``). An index written by older code holds absolute
paths: each is mapped onto the current root by its layout tail, never used as is, so a moved root
still finds its baseline and a copy never uses the original's versions. Every case pushes real
versions (push_model) of a fake SavedModel kept under ``artifacts/<run>/train`` on the root.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import run_component
from kfp import dsl
from model_factory import current_baseline, fake_saved_model, push_directly

from components import names
from components.lib import registry, registry_paths, resolve_baseline, saved_model, served
from components.lib.blessing import Blessing
from components.resolve_baseline import resolve_baseline as resolve_component

MODEL = names.MODEL_NAME
SCHEMA = 'feature { name: "age" type: INT }\nfeature { name: "region" type: BYTES }\n'
PATH_KEYS = (registry_paths.SERVING_PATH, registry_paths.MODEL_LOCATION)


def trained(storage: Path, run_id: str, schema: bool = False) -> Path:
    """A SavedModel where train leaves it: ``<root>/artifacts/<run>/train/Format-Serving``."""
    src = fake_saved_model(
        storage / names.ARTIFACTS_DIR / run_id / names.STAGE_TRAIN / names.MODEL_SERVING_DIR
    )
    saved_model.inputs_path(src).parent.mkdir(parents=True)  # the features its signature parses
    saved_model.inputs_path(src).write_text(json.dumps({"age": "int64", "bmi": "float32"}))
    if schema:
        served.schema_path(src).write_text(SCHEMA)
    return src


def push_v1(tmp_path: Path, old_index: bool, schema: bool = False) -> Path:
    """Version 1 of MODEL pushed to ``<tmp>/first/storage``; with ``old_index``, as older code recorded it."""
    storage = tmp_path / "first" / "storage"
    assert push_directly(trained(storage, "run-1", schema), storage, run_id="run-1").version == 1
    if old_index:
        as_written_by_older_code(storage)
    return storage


def as_written_by_older_code(storage: Path) -> None:
    """Rewrite the index as push wrote it before paths were relative: absolute, under this root."""
    path = registry.index_path(storage)
    doc = json.loads(path.read_text())
    for entry in doc["versions"]:
        for key in PATH_KEYS:
            if entry[key]:
                entry[key] = os.path.normpath(os.path.join(storage, entry[key]))
    path.write_text(json.dumps(doc, indent=2))
    assert os.path.isabs(raw_entries(storage)[0][registry_paths.SERVING_PATH])


def raw_entries(storage: Path) -> list[dict]:
    """The entries as the index file holds them (no reader's mapping)."""
    return json.loads(registry.index_path(storage).read_text())["versions"]


def resolve(tmp_path: Path, storage: Path) -> dict:
    """The resolve-baseline component on ``storage``: its artifact's metadata."""
    out = run_component(resolve_component, tmp_path / "kfp", storage_root=str(storage), model_name=MODEL)
    return dict(out["baseline"].metadata)


def version_dir(storage: Path, version: int, model: str = MODEL) -> Path:
    return storage / names.SERVING_DIR / model / str(version)


@pytest.mark.parametrize("old_index", [False, True], ids=["relative index", "absolute index"])
def test_a_moved_root_finds_its_baseline_and_judges_the_next_push_against_it(tmp_path, old_index):
    first = push_v1(tmp_path, old_index)
    moved = tmp_path / "restored" / "kubetfx"
    moved.parent.mkdir()
    shutil.move(first, moved)
    assert not first.exists()

    found = resolve(tmp_path, moved)
    assert found["found"] and found["version"] == 1  # not "no baseline"
    assert found["model_path"] == str(version_dir(moved, 1))
    baseline = resolve_baseline.resolve(str(moved), MODEL)
    assert baseline.model_location == str(moved / names.ARTIFACTS_DIR / "run-1" / "train" / "Format-Serving")

    assert current_baseline(moved) == 1
    second = push_directly(trained(moved, "run-2"), moved, run_id="run-2")  # blessed against v1
    assert second.pushed and second.version == 2 and second.serving_path == str(version_dir(moved, 2))
    assert second.entry is not None and second.entry["blessing"]["baseline"] == 1
    refused = push_directly(trained(moved, "run-3"), moved, run_id="run-3", blessing=Blessing(names.BLESSED))
    assert not refused.pushed and "baseline changed since evaluation: version 2" in refused.reason
    assert resolve(tmp_path, moved)["version"] == 2


@pytest.mark.parametrize("old_index", [False, True], ids=["relative index", "absolute index"])
def test_a_copy_uses_its_own_versions_never_the_originals(tmp_path, old_index):
    original = push_v1(tmp_path, old_index)
    copy = tmp_path / "copy" / "storage"
    shutil.copytree(original, copy, symlinks=True)

    found = resolve(tmp_path, copy)
    assert found["found"] and found["model_path"] == str(version_dir(copy, 1))
    assert registry.entry_path(copy, served.served_entry(copy, MODEL, "x")) == version_dir(copy, 1)

    shutil.rmtree(version_dir(copy, 1))  # the copy lost its v1; the original still has it
    gone = resolve_baseline.resolve(str(copy), MODEL)
    assert not gone.found and gone.reason == names.NO_BASELINE and gone.skipped_versions == [1]
    assert served.served_entry(copy, MODEL, "x") is None and current_baseline(copy) is None
    assert resolve(tmp_path, original)["model_path"] == str(version_dir(original, 1))

    pushed = push_directly(trained(copy, "run-2"), copy, run_id="run-2")  # judged with no baseline
    assert pushed.pushed and pushed.version == 2 and pushed.serving_path == str(version_dir(copy, 2))
    assert sorted(p.name for p in (original / names.SERVING_DIR / MODEL).iterdir()) == ["1"]
    assert [e["serving_path"] for e in raw_entries(copy)] == [f"serving/{MODEL}/1", f"serving/{MODEL}/2"]


def test_an_index_with_absolute_paths_is_migrated_by_the_next_push(tmp_path):
    first = push_v1(tmp_path, old_index=True)
    path = registry.index_path(first)
    doc = json.loads(path.read_text())
    lost = {**doc["versions"][0], "model_name": "other", "model_location": "/nowhere/train"}
    doc["versions"].append({**lost, "serving_path": "/gone/volume/serving/other/4", "version": 4})
    path.write_text(json.dumps(doc))
    moved = tmp_path / "mnt" / "kubetfx"
    shutil.move(first, moved)

    in_memory = registry.read_index(moved, names.STAGE_PUSH)["versions"]
    assert [e["serving_path"] for e in in_memory] == [f"serving/{MODEL}/1", "serving/other/4"]
    assert os.path.isabs(raw_entries(moved)[0]["serving_path"])  # a reader does not write

    assert push_directly(trained(moved, "run-2"), moved, run_id="run-2").version == 2
    written = raw_entries(moved)
    assert not [e[k] for e in written for k in PATH_KEYS if os.path.isabs(e[k])]
    assert [(e["model_name"], e["version"], e["serving_path"]) for e in written] == [
        (MODEL, 1, f"serving/{MODEL}/1"),
        ("other", 4, "serving/other/4"),  # nothing of it here: missing, as a version deleted by hand
        (MODEL, 2, f"serving/{MODEL}/2"),
    ]
    assert written[0]["model_location"] == "artifacts/run-1/train/Format-Serving"
    assert written[1]["model_location"] == "nowhere/train"
    assert served.served_entry(moved, "other", "x") is None


def test_resolve_setting_a_damaged_version_aside_writes_the_migrated_index(tmp_path):
    first = tmp_path / "first" / "storage"
    for run in ("run-1", "run-2"):
        push_directly(trained(first, run), first, run_id=run)
    as_written_by_older_code(first)
    moved = tmp_path / "restored"
    shutil.move(first, moved)
    (version_dir(moved, 2) / "saved_model.pb").write_bytes(b"\xff\xfe")  # damaged on the volume

    baseline = resolve_baseline.resolve(str(moved), MODEL)
    assert baseline.found and baseline.version == 1 and baseline.model_path == str(version_dir(moved, 1))
    written = raw_entries(moved)
    assert [e["serving_path"] for e in written] == [f"serving/{MODEL}/1", f"serving/{MODEL}/2"]
    assert written[1][registry.QUARANTINED]["moved_to"].startswith(f"serving/{MODEL}/.quarantined-2-")


@pytest.mark.parametrize("old_index", [False, True], ids=["relative index", "absolute index"])
def test_the_served_model_and_its_schema_are_found_after_a_move(tmp_path, old_index):
    first = push_v1(tmp_path, old_index, schema=True)
    moved = tmp_path / "elsewhere"
    shutil.move(first, moved)

    entry = served.served_entry(moved, MODEL, "x")
    assert entry is not None and entry["version"] == 1
    assert served.served_types(moved, MODEL, "x") == {"age": "INT", "region": "BYTES"}
    schema, same = served.served_schema(moved, MODEL, "x")
    assert [f.name for f in schema.feature] == ["age", "region"] and same["version"] == 1
    assert served.schema_file_of_entry(moved, entry) == served.schema_path(version_dir(moved, 1))


@pytest.mark.parametrize("old_index", [False, True], ids=["relative index", "absolute index"])
def test_a_version_pushed_without_a_schema_gives_its_input_types_after_a_move(tmp_path, old_index):
    first = push_v1(tmp_path, old_index, schema=False)
    assert "schema" not in raw_entries(first)[0]  # nothing to record: the types come from the version
    moved = tmp_path / "elsewhere"
    shutil.move(first, moved)
    assert served.served_types(moved, MODEL, "x") == {"age": "INT", "bmi": "FLOAT"}


def test_the_rule_for_one_recorded_path(tmp_path):
    root = tmp_path / "now"
    fake_saved_model(version_dir(root, 3))
    (root / "models" / MODEL / "5").mkdir(parents=True)

    def mapped(value: str, key: str = registry_paths.SERVING_PATH, version: int = 3, **hint) -> str:
        entry = {"model_name": MODEL, "version": version, key: value}
        return registry_paths.relocate(root, entry, key, **hint)

    assert mapped("serving/x/3") == "serving/x/3"  # relative: as it is
    assert mapped("gs://bucket/m", registry_paths.MODEL_LOCATION) == "gs://bucket/m"  # a URL as it is
    assert mapped("") == ""
    assert mapped(str(root / "serving" / MODEL / "3")) == f"serving/{MODEL}/3"  # inside: relative
    assert mapped(f"/before/serving/{MODEL}/3") == f"serving/{MODEL}/3"  # moved: its tail, found
    assert mapped(f"/a/b/serving/{MODEL}/9") == f"serving/{MODEL}/9"  # its layout, not there: missing
    hint = {"serving_dir": root / "models"}
    assert (
        mapped(f"/old/srv/{MODEL}/5", version=5, **hint) == f"models/{MODEL}/5"
    )  # the caller's serving root
    assert mapped(f"/old/srv/{MODEL}/5", version=5) == f"srv/{MODEL}/5"
    old_train = "/mnt/kubetfx/artifacts/run-7/train/Format-Serving"
    assert mapped(old_train, registry_paths.MODEL_LOCATION) == "artifacts/run-7/train/Format-Serving"

    missing = {"model_name": MODEL, "version": 9, "serving_path": f"{tmp_path}/other/serving/{MODEL}/9"}
    assert registry.entry_path(root, missing) == version_dir(root, 9)  # never the other root's
    assert registry.entry_path(root, {"model_location": ""}, "model_location") is None
    outside = registry_paths.relative_to_root(root, tmp_path / "train")  # recorded relative even outside
    assert outside == "../train" and registry.entry_path(
        root, {"model_location": outside}, "model_location"
    ) == (tmp_path / "train")


# --- Lineage: what ML Metadata records about the storage root --------------------------------------

FAST = {"tuner_trials": "1", "tuner_steps": "20", "train_steps": "60", "eval_steps": "10"}


@pytest.fixture(scope="module")
def recorded_run(tmp_path_factory) -> Path:
    """One whole local run (generated data, lineage recorded as submit.py records it); its storage root."""
    from pipelines.lineage.store import SafeLineage
    from pipelines.local.run import run_locally

    root = tmp_path_factory.mktemp("lineage") / "storage"
    warnings: list[str] = []
    lineage: list[SafeLineage] = []

    def start(run_id: str, pipeline: str, arguments: dict) -> None:
        lineage.append(SafeLineage(root.resolve(), warnings.append))
        lineage[0].start_run(run_id, pipeline, arguments)

    def on_task_end(record) -> None:  # noqa: ANN001
        lineage[0].record_task(record)

    result = run_locally(root, None, dict(FAST), log=lambda _: None, start=start, on_task_end=on_task_end)
    assert result.run.succeeded, [t.error for t in result.run.tasks if t.error]
    lineage[0].end_run(result.run)
    assert not warnings, warnings
    return root


def lineage_json(root: Path, capsys) -> dict:
    from pipelines.lineage import store as lineage

    capsys.readouterr()
    assert lineage.main(["--storage", str(root), "--version", "1", "--json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def strings(value) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return [value] if isinstance(value, str) else []


def files_of(trace: dict) -> list[Path]:
    """The files a trace names that must be on the volume: the data, each stage's output, the push."""
    named = [Path(f) for f in trace["data"]["input_files"]]
    for key in ("data", "schema", "transform_graph", "model_trained"):
        named.append(Path(trace[key][names.META_STORAGE_PATH]))
    named += [Path(trace["hyperparameters"]["uri"]), Path(trace["pushed"]["serving_path"])]
    return named


@pytest.mark.e2e
def test_a_moved_or_copied_root_keeps_a_lineage_that_points_only_into_itself(recorded_run, tmp_path, capsys):
    from pipelines.lineage.report import describe
    from pipelines.lineage.store import LineageRecorder

    recorded = LineageRecorder.for_storage(recorded_run).store
    uris = [a.uri for a in recorded.get_artifacts()]
    assert uris and not [u for u in uris if os.path.isabs(u)], uris  # recorded relative to the root

    copy = tmp_path / "copy"
    shutil.copytree(recorded_run, copy, symlinks=True)  # cp -a
    moved = tmp_path / "restored" / "kubetfx"
    moved.parent.mkdir()
    shutil.move(recorded_run, moved)  # mv
    for root in (copy, moved):
        trace = lineage_json(root, capsys)
        paths = [s for s in strings(trace) if s.startswith("/")]
        assert paths and all(p.startswith(f"{root}/") or p == str(root) for p in paths), paths
        assert trace["data"]["input_files"][0].endswith("insurance.csv")
        missing = [p for p in files_of(trace) if not p.exists()]
        assert not missing, missing
        text = "\n".join(describe(trace))
        assert "(missing)" not in text and str(root) in text


@pytest.mark.parametrize("root_recorded", [True, False], ids=["its storage_root recorded", "by layout"])
def test_lineage_recorded_with_absolute_paths_is_read_under_the_current_root(
    tmp_path, monkeypatch, root_recorded
):
    """A store written before paths were relative: each absolute path mapped onto the root it is read from.

    Mapped exactly when the tasks recorded their ``storage_root``, else by the layout's tail.
    """
    from pipelines.lineage import store as lineage
    from pipelines.lineage.store import LineageRecorder, trace_version

    monkeypatch.setattr(lineage, "relative_paths", lambda roots, value: value)  # as older code recorded

    old = tmp_path / "old" / "storage"
    kept = old / names.ARTIFACTS_DIR / "run-1" / "train" / "Format-Serving"
    kept.mkdir(parents=True)
    recorder = LineageRecorder.for_storage(old)
    model = dsl.Model(
        name="model",
        uri=str(old / "kfp_local" / "run-1" / "train" / "model"),
        metadata={names.META_STORAGE_PATH: str(kept.parent)},
    )
    pushed = dsl.Model(
        name="pushed_model",
        uri=str(old / "kfp_local" / "run-1" / "push" / "pushed_model"),
        metadata={
            "pushed": 1.0,
            "version": 1.0,
            "model_name": MODEL,
            "serving_path": str(version_dir(old, 1)),
        },
    )
    Path(pushed.uri).mkdir(parents=True)
    fake_saved_model(version_dir(old, 1))
    given = str(old) if root_recorded else ""
    recorder.start_run("run-1", "kubetfx-pipeline", {"storage_root": given})
    recorder.record_task(_finished("train", {}, {"model": model}, given))
    recorder.record_task(_finished("push", {"model": model}, {"pushed_model": pushed}, given))
    assert os.path.isabs(recorder.store.get_artifacts()[0].uri)  # absolute on disk, as older code wrote

    moved = tmp_path / "moved"
    shutil.move(old, moved)
    trace = trace_version(moved / names.METADATA_DB, MODEL, 1)
    assert trace["pushed"]["serving_path"] == str(version_dir(moved, 1))
    assert trace["model_trained"][names.META_STORAGE_PATH] == str(kept.parent).replace(str(old), str(moved))
    assert trace["model_trained"]["uri"] == str(moved / "kfp_local" / "run-1" / "train" / "model")
    assert Path(trace["pushed"]["uri"]).is_dir()
    assert not [s for s in strings(trace) if str(old) in s]


def _finished(task: str, inputs: dict, outputs: dict, storage_root: str):
    """A finished task as the local runner records it, with its storage_root parameter."""
    from test_lineage import _task

    record = _task(task, inputs, outputs)
    record.executor_input["inputs"]["parameterValues"] = (
        {"storage_root": storage_root} if storage_root else {}
    )
    return record
