"""The registry index: atomic writes, the lock, version allocation, and refusing a damaged index."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

import pytest

from components import names
from components.errors import StageError
from components.lib import registry

STAGE = names.STAGE_PUSH


def entry(version: int, model: str = "insurance", verdict: str = names.BLESSED) -> dict:
    return registry.make_entry(
        version=version,
        model_name=model,
        model_location=f"artifacts/run-{version}/train",
        serving_path=f"serving/{model}/{version}",
        blessing={"verdict": verdict, "reasons": []},
        metrics={"mae": 1000.0 + version},
        fingerprint="abc",
        run_id=f"run-{version}",
    )


def test_missing_index_reads_as_empty_and_is_not_created(tmp_path: Path):
    assert registry.read_index(tmp_path, STAGE) == {"format": registry.FORMAT, "versions": []}
    assert not registry.index_path(tmp_path).exists()


def test_write_then_read_round_trips_and_leaves_no_temp_files(tmp_path: Path):
    with registry.locked(tmp_path, STAGE) as doc:
        doc["versions"] += [entry(1), entry(2)]
        registry.write_index(tmp_path, doc, STAGE)
    path = registry.index_path(tmp_path)
    assert path == tmp_path / names.REGISTRY_INDEX
    back = registry.read_index(tmp_path, STAGE)
    assert [e["version"] for e in back["versions"]] == [1, 2]
    assert set(back["versions"][0]) == set(registry.ENTRY_KEYS)  # "schema" only when given
    with_schema = registry.make_entry(
        **{
            **{k: back["versions"][0][k] for k in registry.ENTRY_KEYS if k != "time"},
            "schema": "s/m/1/assets.extra/schema.pbtxt",
        }
    )
    assert set(with_schema) == set(registry.ENTRY_KEYS) | set(registry.OPTIONAL_ENTRY_KEYS)
    # only the index and its lock file: the temp file was renamed into place
    assert sorted(p.name for p in path.parent.iterdir()) == ["index.json", "index.json.lock"]


@pytest.mark.parametrize(
    "content, problem",
    [
        ("{not json", "not valid JSON"),
        ("", "not valid JSON"),
        ("[]", '"versions" list'),
        ('{"format": 1, "versions": {}}', '"versions" list'),
        ('{"format": 99, "versions": []}', "unknown format"),
        ('{"format": 1, "versions": [{"model_name": "m", "serving_path": "/x"}]}', "no integer version"),
        (
            '{"format": 1, "versions": [{"version": "1", "model_name": "m", "serving_path": "/x"}]}',
            "no integer version",
        ),
        ('{"format": 1, "versions": [{"version": 1, "serving_path": "/x"}]}', "model_name"),
        (
            '{"format": 1, "versions": [{"version": 1, "model_name": "m", "serving_path": "/x"},'
            ' {"version": 1, "model_name": "m", "serving_path": "/y"}]}',
            "listed twice",
        ),
        (
            '{"format": 1, "versions": [{"version": 1, "model_name": "m", "serving_path": "/x",'
            ' "schema": 3}]}',
            '"schema" that is not a path',
        ),
    ],
)
def test_damaged_index_is_a_stage_error_and_is_never_replaced(tmp_path: Path, content: str, problem: str):
    path = registry.index_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text(content)
    before = path.stat().st_mtime_ns
    with pytest.raises(StageError) as err:
        registry.read_index(tmp_path, STAGE)
    assert str(path) in str(err.value) and problem in str(err.value)
    assert "damaged" in str(err.value) and str(err.value).startswith(f"[{STAGE}]")
    with pytest.raises(StageError), registry.locked(tmp_path, STAGE):
        pass  # a writer stops before it could write anything
    assert path.read_text() == content and path.stat().st_mtime_ns == before


def test_write_index_refuses_a_malformed_document(tmp_path: Path):
    with pytest.raises(StageError, match="listed twice"):
        registry.write_index(tmp_path, {"format": 1, "versions": [entry(1), entry(1)]}, STAGE)


def test_lock_is_exclusive_while_held_and_released_after(tmp_path: Path):
    lock_file = str(registry.index_path(tmp_path)) + registry.LOCK_SUFFIX

    def try_lock() -> bool:
        fd = os.open(lock_file, os.O_RDWR)  # a separate open file description conflicts with flock
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
        finally:
            os.close(fd)

    with registry.locked(tmp_path, STAGE):
        assert not try_lock()
    assert try_lock()
    with pytest.raises(RuntimeError), registry.locked(tmp_path, STAGE):
        raise RuntimeError("a failing push releases the lock too")
    assert try_lock()


def test_next_version_counts_registry_and_numeric_dirs_only(tmp_path: Path):
    model_dir = tmp_path / "serving" / "insurance"
    doc = {"format": 1, "versions": [entry(3), entry(9, model="other")]}
    assert registry.next_version(doc, "insurance", model_dir) == 4  # dir missing: registry only
    for d in ("5", ".push-abc.partial", "7x", "tmp"):
        (model_dir / d).mkdir(parents=True)
    assert registry.numeric_dirs(model_dir) == [5]
    assert registry.next_version(doc, "insurance", model_dir) == 6
    assert registry.next_version({"format": 1, "versions": []}, "new", tmp_path / "none") == 1


def test_latest_blessed_is_newest_first_per_model(tmp_path: Path):
    versions = [entry(2), entry(1), entry(3, verdict=names.NOT_BLESSED), entry(5, "other")]
    doc = {"format": 1, "versions": versions}
    assert [e["version"] for e in registry.latest_blessed(tmp_path, doc, "insurance")] == [2, 1]
    assert registry.latest_blessed(tmp_path, doc, "absent") == []


def test_index_is_plain_json_for_humans(tmp_path: Path):
    with registry.locked(tmp_path, STAGE) as doc:
        doc["versions"].append(entry(1))
        registry.write_index(tmp_path, doc, STAGE)
    text = registry.index_path(tmp_path).read_text()
    assert json.loads(text)["versions"][0]["run_id"] == "run-1"
    assert text.count("\n") > 5  # indented, diff-able


def test_files_are_written_with_the_umasks_modes(tmp_path: Path):
    old = os.umask(0o022)
    try:
        with registry.locked(tmp_path, STAGE) as doc:
            doc["versions"].append(entry(1))
            registry.write_index(tmp_path, doc, STAGE)
    finally:
        os.umask(old)
    path = registry.index_path(tmp_path)
    assert path.stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600: others on the volume read it
    assert Path(str(path) + registry.LOCK_SUFFIX).stat().st_mode & 0o777 == 0o644


def test_pending_entries_are_checked_counted_and_seen_once_their_directory_is_in_place(tmp_path: Path):
    model_dir = tmp_path / "serving" / "insurance"
    pending = registry.make_entry(
        version=2,
        model_name="insurance",
        model_location="/m",
        serving_path=str(model_dir / "2"),
        blessing={"verdict": names.BLESSED},
        metrics={},
        fingerprint="",
        run_id="run-2",
    )
    doc = {"format": 1, "versions": [entry(1)]}
    registry.add_pending(doc, pending)
    assert registry.next_version(doc, "insurance", model_dir) == 3  # a pending number is taken
    assert [e["version"] for e in registry.pushed_of(tmp_path, doc, "insurance")] == [1]  # not visible yet
    (model_dir / "2").mkdir(parents=True)
    (model_dir / "2" / "saved_model.pb").write_bytes(b"")
    assert [e["version"] for e in registry.pushed_of(tmp_path, doc, "insurance")] == [1, 2]  # renamed: pushed
    with registry.locked(tmp_path, STAGE):
        registry.write_index(tmp_path, doc, STAGE)
    assert registry.read_index(tmp_path, STAGE)[registry.PENDING][0]["run_id"] == "run-2"
    registry.commit_pending(doc, pending)
    assert registry.PENDING not in doc and [e["version"] for e in doc["versions"]] == [1, 2]
    doc[registry.PENDING] = [dict(pending)]
    with pytest.raises(StageError, match="version 2 of 'insurance' is listed twice"):
        registry.write_index(tmp_path, doc, STAGE)


def test_quarantined_numbers_are_never_given_again(tmp_path: Path):
    model_dir = tmp_path / "serving" / "insurance"
    (model_dir / f"{registry.QUARANTINE_PREFIX}7-20260101-000000").mkdir(parents=True)
    assert registry.quarantined(model_dir) == [7]
    assert registry.next_version({"format": 1, "versions": []}, "insurance", model_dir) == 8


@pytest.mark.parametrize("serving_root", ["", ".", "serving/..", "../x", "/elsewhere"])
def test_the_serving_root_is_a_folder_on_the_volume(tmp_path: Path, serving_root: str):
    with pytest.raises(StageError) as err:
        registry.model_dir(tmp_path, serving_root, "insurance", STAGE)
    assert str(err.value).startswith(f"[{STAGE}] ")
    inside = registry.model_dir(tmp_path, str(tmp_path / "s"), "insurance", STAGE)
    assert inside == tmp_path / "s" / "insurance"
