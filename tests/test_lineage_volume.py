"""Lineage without ML Metadata: the registry and the artifacts' manifests give ML Metadata's answer.

Two real local runs on one storage root (the second judged against the first's version 1) are
recorded in ML Metadata as ``submit.py`` records them, and every stage writes its manifest on the
volume. For each pushed version, the answer from ML Metadata and the answer from the volume are
equal field by field — data and fingerprint, schema, transform, hyperparameters, evaluation,
baseline, and the code (package version, user module hash, image) — also on a root that was
moved; without the store, the command answers from the volume and says so; a damaged manifest
is one line naming the file.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
from pathlib import Path

import pytest

from components import names
from components.component import VERSION
from components.lib import artifact_metadata, code_identity

FAST = {"tuner_trials": "1", "tuner_steps": "20", "train_steps": "60", "eval_steps": "10"}


@pytest.fixture(scope="session")
def two_runs(tmp_path_factory) -> tuple[Path, list[str]]:
    """Two whole local runs on one root (generated data, lineage recorded); the root and run ids."""
    from pipelines.lineage.store import SafeLineage
    from pipelines.local.run import run_locally

    root = (tmp_path_factory.mktemp("lineage_volume") / "storage").resolve()
    warnings: list[str] = []
    run_ids: list[str] = []
    for _ in range(2):
        lineage: list[SafeLineage] = []

        def start(run_id: str, pipeline: str, arguments: dict, lineage: list = lineage) -> None:
            lineage.append(SafeLineage(root, warnings.append))
            lineage[0].start_run(run_id, pipeline, arguments)
            run_ids.append(run_id)

        def on_task_end(record, lineage: list = lineage) -> None:  # noqa: ANN001
            lineage[0].record_task(record)

        result = run_locally(root, None, dict(FAST), log=lambda _: None, start=start, on_task_end=on_task_end)
        assert result.run.succeeded, [t.error for t in result.run.tasks if t.error]
        lineage[0].end_run(result.run)
    assert not warnings, warnings
    return root, run_ids


def copy_of(root: Path, where: Path) -> Path:
    """A copy of the storage root (``cp -a``): the session's root stays as the runs left it."""
    shutil.copytree(root, where, symlinks=True)
    return where


def answers(root: Path) -> dict[str, dict]:
    """The answer for version 2 from each source."""
    from pipelines.lineage.store import trace_any
    from pipelines.lineage.volume import answer

    return {s: answer(trace_any(root, names.MODEL_NAME, 2, s)) for s in ("ml-metadata", "volume")}


def lineage_main(capsys, *argv: str) -> tuple[int, str, str]:
    from pipelines.lineage import store

    capsys.readouterr()
    code = store.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def strings(value) -> list[str]:  # noqa: ANN001
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return [value] if isinstance(value, str) else []


def module_digest(dotted: str) -> str:
    spec = importlib.util.find_spec(dotted)
    assert spec is not None and spec.origin
    return hashlib.sha256(Path(spec.origin).read_bytes()).hexdigest()


@pytest.mark.e2e
@pytest.mark.parametrize("version", [1, 2])
def test_ml_metadata_and_the_volume_give_the_same_answer(two_runs, capsys, version):
    from pipelines.lineage.volume import ANSWER_KEYS

    root, run_ids = two_runs
    given = {}
    for source in ("ml-metadata", "volume"):
        argv = ["--storage", str(root), "--version", str(version), "--json", "--source", source]
        code, out, err = lineage_main(capsys, *argv)
        assert code == 0, err
        given[source] = json.loads(out)
        assert given[source]["source"] == source
    from pipelines.lineage.volume import answer

    mlmd, volume = answer(given["ml-metadata"]), answer(given["volume"])
    for key in ANSWER_KEYS:  # field by field, so a difference names its field
        assert mlmd[key] == volume[key], key
        assert mlmd[key] not in (None, {}, []), key  # each field is answered, not absent on both sides
    entry = next(
        e
        for e in json.loads((root / names.REGISTRY_INDEX).read_text())["versions"]
        if e["version"] == version
    )
    assert volume["runs"] == [run_ids[version - 1]] == [entry["run_id"]]
    assert volume["data"][names.META_FINGERPRINT] == entry["fingerprint"]
    assert volume["code"] == {
        "package": "kubetfx",
        "package_version": VERSION,
        "module": names.DEFAULT_MODULE,
        "module_sha256": module_digest(names.DEFAULT_MODULE),
        "image": code_identity.LOCAL_IMAGE,
    }
    baseline = volume["baseline"]
    if version == 1:
        assert not baseline["found"] and baseline["reason"] == names.NO_BASELINE
    else:  # judged against version 1 of the first run, with its MAE
        assert baseline["found"] and baseline["version"] == 1 and baseline["run_id"] == run_ids[0]
        assert volume["blessing"]["baseline"] == 1 and "mae" in baseline["metrics"]


@pytest.mark.e2e
def test_a_moved_root_gives_the_same_answer_from_both_sources(two_runs, tmp_path):
    copy = copy_of(two_runs[0], tmp_path / "copy")
    moved = tmp_path / "restored" / "kubetfx"
    moved.parent.mkdir()
    shutil.move(copy, moved)
    both = answers(moved)
    assert both["ml-metadata"] == both["volume"]
    paths = [s for s in strings(both["volume"]) if s.startswith("/")]
    assert paths and all(p.startswith(f"{moved}/") for p in paths), paths
    assert Path(both["volume"]["model_trained"][names.META_STORAGE_PATH]).is_dir()


@pytest.mark.e2e
def test_without_the_metadata_store_the_volume_answers_and_says_so(two_runs, tmp_path, capsys):
    root = copy_of(two_runs[0], tmp_path / "root")
    before = answers(root)["ml-metadata"]
    (root / names.METADATA_DB).unlink()

    code, out, err = lineage_main(capsys, "--storage", str(root), "--version", "2")
    assert code == 0, err
    assert f"  source:          the volume: {root / names.REGISTRY_INDEX}" in out
    assert f"(no ML Metadata store at {root / names.METADATA_DB})" in out
    assert f"  code:            kubetfx {VERSION}, module {names.DEFAULT_MODULE} (sha256 " in out
    assert "image none (local run)" in out and "baseline:        version 1 (run " in out

    from pipelines.lineage.volume import answer

    code, out, err = lineage_main(capsys, "--storage", str(root), "--version", "2", "--json")
    assert code == 0 and json.loads(out)["source"] == "volume"
    assert answer(json.loads(out)) == before
    assert not (root / names.METADATA_DB).exists()  # reading made no store

    from pipelines.lineage.store import LineageRecorder

    LineageRecorder.for_storage(root)  # a new, empty store (the old one set aside): it knows no version
    code, out, err = lineage_main(capsys, "--storage", str(root), "--version", "2")
    assert code == 0 and f"({root / names.METADATA_DB} has no record of version 2)" in out

    code, _, err = lineage_main(capsys, "--storage", str(root), "--version", "9")
    assert code == 1 and err.rstrip().endswith("; pushed versions: 1, 2") and len(err.splitlines()) == 1
    (root / names.METADATA_DB).unlink()
    code, _, err = lineage_main(capsys, "--storage", str(root), "--version", "2", "--source", "ml-metadata")
    assert code == 2 and err.startswith(f"[lineage] {root / names.METADATA_DB}: no metadata store")


@pytest.mark.e2e
def test_a_damaged_manifest_is_one_line_naming_the_file(two_runs, tmp_path, capsys):
    root = copy_of(two_runs[0], tmp_path / "root")
    run_id = two_runs[1][1]
    manifest = artifact_metadata.manifest_path(root, run_id, names.STAGE_TRAIN)
    manifest.write_text(manifest.read_text()[:100])  # cut short, as a full disk leaves it

    code, out, err = lineage_main(capsys, "--storage", str(root), "--version", "2", "--source", "volume")
    assert code == 1 and not out
    assert (
        err.startswith(f"[lineage] {manifest}: artifact manifest is not valid JSON")
        and len(err.splitlines()) == 1
    )

    manifest.write_text(json.dumps({"format": 1, "code": {}, "artifacts": {"model": {"uri": 3}}}))
    code, _, err = lineage_main(capsys, "--storage", str(root), "--version", "2", "--source", "volume")
    assert code == 1 and err == f"[lineage] {manifest}: artifact 'model' has no type, uri and metadata\n"


@pytest.mark.e2e
def test_with_the_runs_artifacts_gone_the_registry_still_answers_what_it_holds(two_runs, tmp_path, capsys):
    """The run's folder deleted: fingerprint, verdict, baseline and code (once push records it) remain."""
    root = copy_of(two_runs[0], tmp_path / "root")
    (root / names.METADATA_DB).unlink()
    shutil.rmtree(root / names.ARTIFACTS_DIR / two_runs[1][1])
    index = root / names.REGISTRY_INDEX
    doc = json.loads(index.read_text())
    code = {"package": "kubetfx", "package_version": VERSION, "image": "ghcr.io/acme/kubetfx/runtime:0.1.0"}
    doc["versions"][1]["code"] = code  # as push records it when it is given the model's code
    index.write_text(json.dumps(doc))

    status, out, err = lineage_main(capsys, "--storage", str(root), "--version", "2")
    assert status == 0, err
    entry = doc["versions"][1]
    gone = "(not on the volume: the registry's record)"
    assert f"  data:            {gone} fingerprint={entry['fingerprint'][:16]}" in out
    assert "  hyperparameters: not recorded" in out and "  schema:          not recorded" in out
    assert f"  evaluation:      {entry['blessing']['verdict'].replace('_', ' ')}, MAE " in out
    assert f"  baseline:        version 1 (run {two_runs[1][0]}, MAE " in out
    assert "  code:            kubetfx 0.1.0, image ghcr.io/acme/kubetfx/runtime:0.1.0" in out.replace(
        VERSION, "0.1.0"
    )
    assert f"  trained model:   {root / entry['model_location']}" in out


def test_the_module_hash_is_of_the_files_bytes_and_the_image_comes_from_the_build(tmp_path, monkeypatch):
    """A module file on the volume: its bytes' SHA-256, another after an edit; the image's reference."""
    module = tmp_path / names.DATA_DIR / "modules" / "mine.py"
    module.parent.mkdir(parents=True)
    module.write_text("def preprocessing_fn(inputs):\n    return inputs\n")
    monkeypatch.delenv(code_identity.IMAGE_ENV, raising=False)
    first = code_identity.identity(str(tmp_path), names.STAGE_TRAIN, "data/modules/mine.py")
    assert first == {
        "package": "kubetfx",
        "package_version": VERSION,
        "image": code_identity.LOCAL_IMAGE,
        "module": str(module),
        "module_sha256": hashlib.sha256(module.read_bytes()).hexdigest(),
    }
    module.write_text(module.read_text() + "# edited\n")
    monkeypatch.setenv(code_identity.IMAGE_ENV, "ghcr.io/acme/kubetfx/runtime:0.1.0")
    second = code_identity.identity(str(tmp_path), names.STAGE_TRAIN, "data/modules/mine.py")
    assert second["module_sha256"] != first["module_sha256"]
    assert second["image"] == "ghcr.io/acme/kubetfx/runtime:0.1.0"
    assert "module" not in code_identity.identity(str(tmp_path), names.STAGE_PUSH)  # runs no user module


def test_a_manifest_records_paths_relative_to_the_root_and_the_code_in_the_metadata(tmp_path):
    """What ``publish`` writes: type, uri and metadata per output, paths on the root relative to it."""
    from kfp import dsl

    model = dsl.Model(
        name="model",
        uri=str(tmp_path / names.KFP_LOCAL_DIR / "r" / "train" / "model"),
        metadata={
            names.META_STORAGE_PATH: str(tmp_path / "artifacts/r/train"),
            "logs": "gs://b/logs",
            "n": 2,
        },
    )
    path = artifact_metadata.publish(str(tmp_path), "r", names.STAGE_TRAIN, {"model": model}, module_file="")
    assert path == tmp_path / "artifacts/r/train" / names.MANIFEST_FILE
    doc = artifact_metadata.read_manifest(path)
    assert doc["artifacts"]["model"] == {
        "type": "system.Model",
        "uri": f"{names.KFP_LOCAL_DIR}/r/train/model",
        "metadata": {
            names.META_STORAGE_PATH: "artifacts/r/train",
            "logs": "gs://b/logs",
            "n": 2,
            "code": doc["code"],
        },
    }
    assert model.metadata["code"] == doc["code"] and doc["code"]["module"] == names.DEFAULT_MODULE
    assert not [p for p in path.parent.iterdir() if p.name != names.MANIFEST_FILE]  # no temp file left
    assert os.stat(path).st_size > 0
