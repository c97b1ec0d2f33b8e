"""Push: only blessed models, atomic version directories, the registry record, interruptions, races."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import time
from pathlib import Path

import pytest
from conftest import run_component
from kfp import dsl
from model_factory import model_artifact, push_directly, push_worker, trained_models

from components import names
from components.errors import StageError
from components.lib import kserve_manifest, registry, saved_model
from components.lib.blessing import Blessing
from components.lib.push import TEMP_PREFIX
from components.push import push

MODEL = names.MODEL_NAME


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> dict[str, Path]:
    return trained_models(tmp_path_factory)


def blessing_artifact(
    tmp_path: Path, verdict: str = names.BLESSED, name: str = "blessing", baseline: int | None = None
) -> dsl.Artifact:
    art = dsl.Artifact(name=name, uri=str(tmp_path / "kfp" / name), metadata={})
    metrics = {"example_count": 100.0, "mae": 1234.5, "mse": 3.0e6}
    Blessing(verdict, reasons=["test"], metrics=metrics, baseline=baseline).write(Path(art.path))
    return art


def examples_artifact(tmp_path: Path, fingerprint: str = "f" * 64) -> dsl.Dataset:
    art = dsl.Dataset(
        name="examples",
        uri=str(tmp_path / "kfp" / "examples"),
        metadata={names.META_FINGERPRINT: fingerprint},
    )
    return art


def run_push(
    tmp_path: Path,
    train_dir: Path,
    storage: Path,
    *,
    verdict: str = names.BLESSED,
    serving_root: str = names.SERVING_DIR,
    run_id: str = "run-1",
    tag: str = "",
    baseline: int | None = None,
) -> dsl.Model:
    return run_component(
        push,
        tmp_path / "kfp" / f"push{tag}",
        model=model_artifact(train_dir, tmp_path / "kfp", name=f"model{tag}"),
        blessing=blessing_artifact(tmp_path, verdict, name=f"blessing{tag}", baseline=baseline),
        examples=examples_artifact(tmp_path),
        storage_root=str(storage),
        run_id=run_id,
        model_name=MODEL,
        serving_root=serving_root,
    )["pushed_model"]


def visible(model_dir: Path) -> list[str]:
    """What TF Serving would consider: all-digit directories."""
    return sorted(p.name for p in model_dir.iterdir() if p.name.isdigit()) if model_dir.exists() else []


def files_of(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file())


def pushed_files(src: Path) -> list[str]:
    """The files of a version pushed from ``src``: its files, its InferenceService with the TF Serving
    config that pins it (tests/test_kserve.py), and push's manifest of them."""
    added = [saved_model.MANIFEST_FILE, kserve_manifest.ISVC_FILE, kserve_manifest.CONFIG_FILE]
    return sorted([*files_of(src), *(f"assets.extra/{name}" for name in added)])


def test_blessed_model_is_pushed_as_version_1_then_2(tmp_path, trained):
    storage = tmp_path / "storage"
    out = run_push(tmp_path, trained["good"], storage)
    model_dir = storage / names.SERVING_DIR / MODEL
    v1 = model_dir / "1"
    assert out.metadata["pushed"] == 1 and out.metadata["version"] == 1
    assert out.metadata["serving_path"] == str(v1) and out.metadata["model_path"] == str(v1)
    copied = files_of(trained["good"] / names.MODEL_SERVING_DIR)
    manifest = saved_model.manifest_path(v1)
    assert files_of(v1) == pushed_files(trained["good"] / names.MODEL_SERVING_DIR)
    listed = json.loads(manifest.read_text())  # what was published: every file but the manifest
    kserve = [f"assets.extra/{kserve_manifest.CONFIG_FILE}", f"assets.extra/{kserve_manifest.ISVC_FILE}"]
    assert listed["format"] == 1 and sorted(listed["files"]) == sorted([*copied, *kserve])
    assert all(listed["files"][f]["size"] == (v1 / f).stat().st_size for f in copied)
    assert saved_model.damage(v1) is None
    assert json.loads(Path(out.path).read_text())["version"] == 1

    [e] = registry.read_index(storage, names.STAGE_PUSH)["versions"]
    assert (
        e["version"] == 1
        and e["model_name"] == MODEL
        and e["serving_path"] == f"{names.SERVING_DIR}/{MODEL}/1"
    )
    assert registry.entry_path(storage, e) == v1  # relative to the storage root, read against it
    assert registry.entry_path(storage, e, "model_location") == trained["good"] and e["run_id"] == "run-1"
    assert e["fingerprint"] == "f" * 64 and e["metrics"]["mae"] == 1234.5
    assert e["blessing"]["verdict"] == names.BLESSED and e["time"]

    out2 = run_push(tmp_path, trained["good"], storage, run_id="run-2", tag="2", baseline=1)
    assert out2.metadata["version"] == 2
    assert visible(model_dir) == ["1", "2"] and not [p for p in model_dir.iterdir() if p.name.startswith(".")]
    runs = [e["run_id"] for e in registry.read_index(storage, names.STAGE_PUSH)["versions"]]
    assert runs == ["run-1", "run-2"]


def test_pushed_copy_is_a_loadable_saved_model(tmp_path, trained):
    import tensorflow as tf

    storage = tmp_path / "storage"
    out = run_push(tmp_path, trained["good"], storage)
    loaded = tf.saved_model.load(out.metadata["model_path"])
    assert names.SERVING_SIGNATURE in loaded.signatures


def test_not_blessed_pushes_nothing_and_succeeds(tmp_path, trained):
    storage = tmp_path / "storage"
    out = run_push(tmp_path, trained["zero"], storage, verdict=names.NOT_BLESSED)
    assert out.metadata["pushed"] == 0 and out.metadata["version"] == -1
    assert out.metadata["reason"] == "not blessed: test"
    assert not (storage / names.SERVING_DIR).exists() and not (storage / names.REGISTRY_DIR).exists()
    assert json.loads(Path(out.path).read_text())["pushed"] == 0


def test_absolute_serving_root_on_the_volume(tmp_path, trained):
    storage = tmp_path / "storage"
    serving = storage / "elsewhere" / "models"
    out = run_push(tmp_path, trained["good"], storage, serving_root=str(serving))
    assert out.metadata["serving_path"] == str(serving / MODEL / "1")
    [entry] = registry.read_index(storage, names.STAGE_PUSH)["versions"]
    assert entry["serving_path"] == f"elsewhere/models/{MODEL}/1"
    assert registry.entry_path(storage, entry) == serving / MODEL / "1"


@pytest.mark.parametrize("serving_root", ["../outside/serving", "/elsewhere/models", "serving/../.."])
def test_serving_root_off_the_volume_is_refused_before_anything_is_written(tmp_path, trained, serving_root):
    storage = tmp_path / "storage"
    with pytest.raises(StageError) as err:
        run_push(tmp_path, trained["good"], storage, serving_root=serving_root)
    assert str(err.value).startswith(f"[{names.STAGE_PUSH}] ")
    assert f"serving_root {serving_root!r} is outside the storage root {storage}" in str(err.value)
    assert not (tmp_path / "outside").exists() and not storage.exists()


def test_unwritable_serving_root_is_a_stage_error_and_registry_is_unchanged(tmp_path, trained):
    storage = tmp_path / "storage"
    run_push(tmp_path, trained["good"], storage)
    index = registry.index_path(storage)
    before = index.read_bytes()
    blocker = storage / "a_file"
    blocker.write_text("not a directory")  # works as root too, unlike chmod
    with pytest.raises(StageError) as err:
        run_push(tmp_path, trained["good"], storage, serving_root=str(blocker / "x"), tag="2")
    assert str(err.value).startswith(f"[{names.STAGE_PUSH}]") and "not writable" in str(err.value)
    assert str(blocker / "x" / MODEL) in str(err.value)
    assert index.read_bytes() == before


def test_retried_push_of_the_same_run_reports_the_same_version(tmp_path, trained):
    storage = tmp_path / "storage"
    first = run_push(tmp_path, trained["good"], storage, run_id="run-1")
    again = run_push(tmp_path, trained["good"], storage, run_id="run-1", tag="again")
    assert again.metadata["pushed"] == 1 and again.metadata["version"] == first.metadata["version"] == 1
    assert again.metadata["reason"] == "already pushed by this run"
    assert visible(storage / names.SERVING_DIR / MODEL) == ["1"]
    assert len(registry.read_index(storage, names.STAGE_PUSH)["versions"]) == 1


def test_version_follows_existing_numeric_dirs(tmp_path, trained):
    storage = tmp_path / "storage"
    (storage / names.SERVING_DIR / MODEL / "7").mkdir(parents=True)  # copied by hand, not registered
    out = run_push(tmp_path, trained["good"], storage)
    assert out.metadata["version"] == 8


def test_damaged_registry_stops_push_before_anything_is_visible(tmp_path, trained):
    storage = tmp_path / "storage"
    index = registry.index_path(storage)
    index.parent.mkdir(parents=True)
    index.write_text('{"format": 1, "versions": [')
    with pytest.raises(StageError, match="damaged"):
        run_push(tmp_path, trained["good"], storage)
    assert index.read_text() == '{"format": 1, "versions": ['
    model_dir = storage / names.SERVING_DIR / MODEL
    assert visible(model_dir) == [] and list(model_dir.iterdir()) == []


def test_blessing_of_another_model_is_refused(tmp_path, trained):
    storage = tmp_path / "storage"
    with pytest.raises(StageError, match="another model"):
        push_directly(
            trained["good"] / names.MODEL_SERVING_DIR,
            storage,
            serving_root="serving",
            blessing=Blessing(names.BLESSED, model_path=str(trained["worse"] / names.MODEL_SERVING_DIR)),
        )


@pytest.mark.parametrize("bad", ["", "..", "a/b", ".hidden", "../evil"])
def test_bad_model_name_is_refused(tmp_path, trained, bad):
    with pytest.raises(StageError, match="parameter 'model_name' must be a plain name"):
        push_directly(trained["good"] / names.MODEL_SERVING_DIR, tmp_path, serving_root="s", model_name=bad)


def test_missing_blessing_or_model_is_a_stage_error(tmp_path, trained):
    empty_blessing = dsl.Artifact(name="b", uri=str(tmp_path / "kfp" / "b"), metadata={})
    os.makedirs(empty_blessing.path)
    with pytest.raises(StageError, match="blessing file is missing"):
        run_component(
            push,
            tmp_path / "kfp" / "push",
            model=model_artifact(trained["good"], tmp_path / "kfp"),
            blessing=empty_blessing,
            examples=examples_artifact(tmp_path),
            storage_root=str(tmp_path),
            run_id="r",
            model_name=MODEL,
            serving_root="serving",
        )
    not_a_model = tmp_path / "train"
    (not_a_model / names.MODEL_SERVING_DIR).mkdir(parents=True)
    with pytest.raises(StageError, match="saved_model.pb is missing"):
        run_push(tmp_path, not_a_model, tmp_path / "storage")


class Interrupted(Exception):
    pass


def copy_half_then_fail(src: Path, dst: Path) -> None:
    """A copy that dies midway: some files are there, then the 'pod' goes away."""
    dst.mkdir()
    shutil.copy2(src / "saved_model.pb", dst / "saved_model.pb")
    raise Interrupted("killed during copy")


def test_interrupted_copy_leaves_nothing_visible_and_next_push_is_consistent(tmp_path, trained):
    storage = tmp_path / "storage"
    src = trained["good"] / names.MODEL_SERVING_DIR
    with pytest.raises(Interrupted):
        push_directly(src, storage, copy_tree=copy_half_then_fail)
    model_dir = storage / names.SERVING_DIR / MODEL
    assert list(model_dir.iterdir()) == []  # neither a version nor the temp dir
    assert registry.read_index(storage, names.STAGE_PUSH)["versions"] == []
    result = push_directly(src, storage)
    assert result.version == 1 and visible(model_dir) == ["1"]
    assert files_of(model_dir / "1") == pushed_files(src)


def test_push_killed_midway_leaves_no_version_and_the_next_push_cleans_up(tmp_path, trained):
    storage = tmp_path / "storage"
    src = str(trained["good"] / names.MODEL_SERVING_DIR)
    ctx = multiprocessing.get_context("spawn")
    copying = ctx.Event()
    proc = ctx.Process(target=push_worker, args=(src, str(storage), "killed", copying, "hang"))
    proc.start()
    try:
        assert copying.wait(60), "the push never started copying"
        model_dir = storage / names.SERVING_DIR / MODEL
        [leftover] = [p for p in model_dir.iterdir()]
        assert leftover.name.startswith(TEMP_PREFIX) and not leftover.name.isdigit()
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # no cleanup code runs: like a node dying
        proc.join(30)
    assert visible(model_dir) == [] and leftover.exists()
    result = push_directly(src, storage, run_id="next")
    assert result.version == 1  # the dead push's lock was released by the kernel
    assert sorted(p.name for p in model_dir.iterdir()) == ["1"]  # leftover removed
    assert [e["run_id"] for e in registry.read_index(storage, names.STAGE_PUSH)["versions"]] == ["next"]


def test_concurrent_pushes_judged_with_no_baseline_push_once(tmp_path, trained):
    """Four runs resolved "no baseline" and then pushed at the same moment: the first to take the
    lock pushes version 1; the others were never compared with it, so they are not pushed."""
    storage = tmp_path / "storage"
    src = trained["good"] / names.MODEL_SERVING_DIR
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    procs = [
        ctx.Process(target=push_worker, args=(str(src), str(storage), f"run-{i}", start)) for i in range(4)
    ]
    for p in procs:
        p.start()
    time.sleep(0.5)  # let every process import and wait at the start line
    start.set()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    model_dir = storage / names.SERVING_DIR / MODEL
    assert sorted(p.name for p in model_dir.iterdir()) == ["1"]  # nothing half-made either
    assert files_of(model_dir / "1") == pushed_files(src)
    [entry] = registry.read_index(storage, names.STAGE_PUSH)["versions"]
    assert entry["version"] == 1 and registry.entry_path(storage, entry) == model_dir / "1"


def test_push_rechecks_the_baseline_under_the_lock(tmp_path, trained):
    storage = tmp_path / "storage"
    src = trained["good"] / names.MODEL_SERVING_DIR
    first = push_directly(src, storage, run_id="run-a", blessing=Blessing(names.BLESSED))
    assert first.pushed and first.version == 1
    # Run B resolved "no baseline" before run A pushed: its candidate never met version 1.
    late = push_directly(src, storage, run_id="run-b", blessing=Blessing(names.BLESSED))
    assert not late.pushed and late.version is None
    assert late.reason.startswith("baseline changed since evaluation: version 1 was pushed by run run-a")
    assert "judged with no baseline" in late.reason
    # Judged against version 1 (what resolve-baseline now finds): pushed as version 2.
    ok = push_directly(src, storage, run_id="run-c", blessing=Blessing(names.BLESSED, baseline=1))
    assert ok.pushed and ok.version == 2
    stale = push_directly(src, storage, run_id="run-d", blessing=Blessing(names.BLESSED, baseline=1))
    assert not stale.pushed and "version 2" in stale.reason and "against version 1" in stale.reason
    runs = [e["run_id"] for e in registry.read_index(storage, names.STAGE_PUSH)["versions"]]
    assert runs == ["run-a", "run-c"]


def test_the_refused_push_is_reported_by_the_component(tmp_path, trained):
    storage = tmp_path / "storage"
    run_push(tmp_path, trained["good"], storage, run_id="run-a")
    out = run_push(tmp_path, trained["good"], storage, run_id="run-b", tag="b")  # judged with no baseline
    assert out.metadata["pushed"] == 0 and out.metadata["version"] == -1
    assert out.metadata["reason"].startswith("baseline changed since evaluation: version 1")
