"""A served baseline damaged on the volume is found and set aside by resolve-baseline, before any training.

Every case pushes real versions (push_model, with its manifest), damages the newest on disk, then
runs resolve-baseline twice and pushes a new candidate: the damaged version is quarantined once
(renamed aside, marked in the registry), the older intact version is the baseline with a one-line
reason, its number is never given again, and push agrees with resolve.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from conftest import run_component
from model_factory import current_baseline, fake_saved_model, push_directly, save_formula_model

from components import names
from components.errors import StageError
from components.lib import registry, resolve_baseline, saved_model, served
from components.resolve_baseline import resolve_baseline as resolve_component

MODEL = names.MODEL_NAME
DATA = "variables/variables.data-00000-of-00001"  # 4,000 bytes in fake_saved_model


@pytest.fixture(scope="module")
def real_model(tmp_path_factory) -> Path:
    """A TF SavedModel (its saved_model.pb restores variables/), for the manifest-less rules."""
    return save_formula_model(tmp_path_factory.mktemp("real") / names.MODEL_SERVING_DIR)


def push_versions(tmp_path: Path, count: int, src: Path | None = None) -> Path:
    """``count`` blessed versions of MODEL pushed from one SavedModel; the storage root."""
    storage = tmp_path / "storage"
    src = src or fake_saved_model(tmp_path / "train" / names.MODEL_SERVING_DIR)
    for i in range(1, count + 1):
        assert push_directly(src, storage, run_id=f"run-{i}").version == i
    return storage


def version_dir(storage: Path, version: int) -> Path:
    return storage / names.SERVING_DIR / MODEL / str(version)


def flip(path: Path) -> None:
    """Corrupt a file in place: every byte inverted, the size unchanged."""
    path.write_bytes(bytes(b ^ 0xFF for b in path.read_bytes()))


def truncate(path: Path, size: int = 100) -> None:
    path.write_bytes(path.read_bytes()[:size])


def without_manifest(version: Path) -> Path:
    saved_model.manifest_path(version).unlink()
    return version


DAMAGE = {  # how the newest version is damaged -> what resolve-baseline says about it
    "pb corrupted": (
        lambda v: flip(v / "saved_model.pb"),
        "saved_model.pb differs from what was pushed (sha256)",
    ),
    "data corrupted": (lambda v: flip(v / DATA), f"{DATA} differs from what was pushed (sha256)"),
    "data truncated": (lambda v: truncate(v / DATA), f"{DATA} has 100 bytes, 4,000 were pushed"),
    "pb truncated": (
        lambda v: truncate(v / "saved_model.pb", 1),
        "saved_model.pb has 1 bytes, 2 were pushed",
    ),
    "variables deleted": (lambda v: shutil.rmtree(v / "variables"), f"{DATA} is missing"),
    "no manifest, index deleted": (
        lambda v: (without_manifest(v) / "variables" / "variables.index").unlink(),
        "variables/variables.index is missing",
    ),
    "no manifest, pb emptied": (
        lambda v: (without_manifest(v) / "saved_model.pb").write_bytes(b""),
        "saved_model.pb is empty",
    ),
}


def reason_line(version: int, why: str, tail: str, start: str = "^") -> re.Pattern[str]:
    """The one line that says a version was set aside (``start=""``: anywhere in a log line)."""
    aside = re.escape(f"{names.SERVING_DIR}/{MODEL}/{registry.QUARANTINE_PREFIX}{version}-")
    what = re.escape(f"version {version} of model {MODEL!r} is damaged ({why}): set aside as ")
    return re.compile(f"{start}{what}{aside}[0-9]{{8}}-[0-9]{{6}}{re.escape(tail)}$")


def resolve(tmp_path: Path, storage: Path, capsys) -> tuple[dict, list[str]]:
    """The resolve-baseline component: its artifact's metadata (and the file's note) and its log lines."""
    out = run_component(resolve_component, tmp_path / "kfp", storage_root=str(storage), model_name=MODEL)
    said = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith(names.PROGRESS_PREFIX)]
    note = json.loads(Path(out["baseline"].path).read_text())["note"]
    return {**out["baseline"].metadata, "note": note}, said


def hidden(storage: Path) -> list[str]:
    return sorted(p.name for p in (storage / names.SERVING_DIR / MODEL).iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("case", list(DAMAGE))
def test_damaged_newest_version_is_set_aside_once_and_the_older_one_is_the_baseline(tmp_path, capsys, case):
    storage = push_versions(tmp_path, 3)
    damage, why = DAMAGE[case]
    damage(version_dir(storage, 3))
    assert saved_model.damage(version_dir(storage, 3)) == why
    assert current_baseline(storage) == 2  # every reader skips it already (ExampleGen, push's re-check)

    meta, said = resolve(tmp_path, storage, capsys)
    assert (
        meta["found"] is True and meta["version"] == 2 and meta["model_path"] == str(version_dir(storage, 2))
    )
    assert reason_line(3, why, "; baseline is version 2").match(meta["reason"]), meta["reason"]
    assert len(said) == 1 and reason_line(3, why, "", start="").search(said[0]), said  # housekeeping
    [aside] = hidden(storage)
    assert sorted(registry.numeric_dirs(storage / names.SERVING_DIR / MODEL)) == [1, 2]
    doc = registry.read_index(storage, names.STAGE_RESOLVE)
    mark = registry.versions_of(doc, MODEL)[2][registry.QUARANTINED]
    assert (
        mark["reason"] == why and mark["time"] and mark["moved_to"] == f"{names.SERVING_DIR}/{MODEL}/{aside}"
    )

    again, said = resolve(tmp_path, storage, capsys)  # a later run: the same answer, nothing done
    assert again["version"] == 2 and again["reason"] == meta["reason"] and said == []
    assert hidden(storage) == [aside] and registry.read_index(storage, names.STAGE_RESOLVE) == doc
    assert registry.next_version(doc, MODEL, storage / names.SERVING_DIR / MODEL) == 4
    assert served.served_entry(storage, MODEL, names.STAGE_EXAMPLE_GEN)["version"] == 2

    src = tmp_path / "train" / names.MODEL_SERVING_DIR
    pushed = push_directly(src, storage, run_id="run-4")  # judged against version 2: pushed
    assert pushed.pushed and pushed.version == 4 and saved_model.damage(pushed.serving_path) is None
    assert resolve_baseline.resolve(str(storage), MODEL).reason == resolve_baseline.FOUND_REASON
    assert current_baseline(storage) == 4


def test_version_without_manifest_that_is_intact_stays_the_baseline(tmp_path, real_model, capsys):
    storage = push_versions(tmp_path, 2, src=real_model)
    without_manifest(version_dir(storage, 2))  # as pushed before manifests existed
    assert saved_model.damage(version_dir(storage, 2)) is None
    meta, said = resolve(tmp_path, storage, capsys)
    assert meta["version"] == 2 and meta["reason"] == resolve_baseline.FOUND_REASON and said == []
    assert hidden(storage) == []


def test_version_without_manifest_and_variables_of_a_graph_that_needs_them_is_damaged(
    tmp_path, real_model, capsys
):
    storage = push_versions(tmp_path, 2, src=real_model)
    shutil.rmtree(without_manifest(version_dir(storage, 2)) / "variables")
    why = "variables/ is missing (saved_model.pb restores variables from it)"
    meta, _ = resolve(tmp_path, storage, capsys)
    assert meta["version"] == 1 and reason_line(2, why, "; baseline is version 1").match(meta["reason"])
    assert push_directly(real_model, storage, run_id="run-3").version == 3


def test_without_manifest_a_graph_without_a_saver_needs_no_variables(tmp_path):
    model = fake_saved_model(tmp_path / "m")  # saved_model.pb holds no RestoreV2 op
    shutil.rmtree(model / "variables")
    assert saved_model.damage(model) is None
    (model / "saved_model.pb").write_bytes(b"")  # no checkpoint to judge it by: left to TensorFlow
    assert saved_model.damage(model) is None


def test_damaged_only_version_leaves_no_baseline_and_says_why(tmp_path, capsys):
    storage = push_versions(tmp_path, 1)
    flip(version_dir(storage, 1) / DATA)
    meta, _ = resolve(tmp_path, storage, capsys)
    why = f"{DATA} differs from what was pushed (sha256)"
    assert meta["found"] is False
    assert reason_line(1, why, "; no intact blessed version remains").match(meta["reason"]), meta["reason"]
    assert meta["reason"] in meta["note"] and "judged alone" in meta["note"]
    pushed = push_directly(tmp_path / "train" / names.MODEL_SERVING_DIR, storage, run_id="run-2")
    assert pushed.version == 2 and current_baseline(storage) == 2


def test_two_damaged_versions_are_both_set_aside_newest_first(tmp_path, capsys):
    storage = push_versions(tmp_path, 3)
    flip(version_dir(storage, 3) / "saved_model.pb")
    truncate(version_dir(storage, 2) / DATA)
    meta, _ = resolve(tmp_path, storage, capsys)
    assert meta["version"] == 1 and meta["reason"].startswith("version 3 of model")
    assert "; version 2 of model" in meta["reason"] and meta["reason"].endswith("; baseline is version 1")
    assert [n.split("-")[1] for n in hidden(storage)] == ["2", "3"]


def test_a_version_that_cannot_be_renamed_is_skipped_unmarked_and_set_aside_next_time(
    tmp_path, capsys, monkeypatch
):
    storage = push_versions(tmp_path, 2)
    flip(version_dir(storage, 2) / "saved_model.pb")

    def refuse(src, dst):
        raise PermissionError(13, "Permission denied")

    with monkeypatch.context() as m:
        m.setattr(resolve_baseline.os, "rename", refuse)
        meta, said = resolve(tmp_path, storage, capsys)
    assert (
        meta["version"] == 1
        and "could not be set aside; it is skipped; baseline is version 1" in meta["reason"]
    )
    assert "could not set it aside" in said[0] and version_dir(storage, 2).is_dir()
    assert registry.QUARANTINED not in registry.versions_of(registry.read_index(storage, "x"), MODEL)[1]
    meta, said = resolve(tmp_path, storage, capsys)
    assert meta["version"] == 1 and "set aside as" in said[0] and not version_dir(storage, 2).exists()


def test_registry_accepts_entries_without_a_mark_and_refuses_a_malformed_one(tmp_path):
    storage = push_versions(tmp_path, 1)
    doc = registry.read_index(storage, names.STAGE_PUSH)
    assert registry.QUARANTINED not in doc["versions"][0]  # an entry as push writes it: valid
    for bad in ("yes", {"reason": "x"}, {"reason": 1, "time": "t"}):
        doc["versions"][0][registry.QUARANTINED] = bad
        with pytest.raises(StageError, match='has a "quarantined" without a reason and a time'):
            registry.write_index(storage, doc, names.STAGE_PUSH)
    doc["versions"][0][registry.QUARANTINED] = {"reason": "r", "time": "t"}
    registry.write_index(storage, doc, names.STAGE_PUSH)
    assert registry.latest_blessed(storage, registry.read_index(storage, names.STAGE_PUSH), MODEL) == []


def test_damage_rules_of_the_structure(tmp_path):
    model = fake_saved_model(tmp_path / "m")
    assert saved_model.damage(tmp_path / "absent") == "the version directory is missing"
    os.rename(
        model / "variables" / "variables.data-00000-of-00001",
        model / "variables" / "variables.data-00000-of-00002",
    )
    assert saved_model.damage(model) == "variables/variables.data-00001-of-00002 is missing"
    (model / "variables" / "variables.data-00000-of-00002").unlink()
    assert saved_model.damage(model) == DATA + " is missing"
    (model / "saved_model.pb").unlink()
    assert saved_model.damage(model) == "saved_model.pb is missing"
    saved_model.manifest_path(model).parent.mkdir()
    saved_model.manifest_path(model).write_text("{not json")  # unreadable: the structure decides
    assert saved_model.damage(model) == "saved_model.pb is missing"
