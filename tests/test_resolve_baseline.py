"""Resolve-baseline: the latest blessed pushed version from the registry, or an explicit "no baseline"."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import run_component
from kfp import dsl
from model_factory import current_baseline, fake_saved_model

from components import names
from components.errors import StageError
from components.lib import registry
from components.lib.blessing import Blessing
from components.lib.push import push_model
from components.resolve_baseline import resolve_baseline

MODEL = names.MODEL_NAME


def push(storage: Path, src: Path, run_id: str, model: str = MODEL, mae: float = 1000.0) -> int:
    """Push as a run that was judged against the baseline resolve-baseline finds now."""
    result = push_model(
        src,
        storage_root=str(storage),
        serving_root=names.SERVING_DIR,
        model_name=model,
        run_id=run_id,
        model_location=str(src.parent),
        fingerprint=f"fp-{run_id}",
        blessing=Blessing(
            names.BLESSED, reasons=["ok"], metrics={"mae": mae}, baseline=current_baseline(storage, model)
        ),
    )
    assert result.version is not None
    return result.version


def resolve(tmp_path: Path, storage: Path, model: str = MODEL) -> dsl.Model:
    return run_component(resolve_baseline, tmp_path / "kfp", storage_root=str(storage), model_name=model)[
        "baseline"
    ]


def test_first_run_has_no_baseline(tmp_path: Path):
    out = resolve(tmp_path, tmp_path / "storage")
    assert out.metadata["found"] is False and out.metadata["reason"] == names.NO_BASELINE
    assert "version" not in out.metadata and "model_path" not in out.metadata
    doc = json.loads(Path(out.path).read_text())
    assert doc["found"] is False and "No baseline" in doc["note"] and "judged alone" in doc["note"]
    assert not (tmp_path / "storage" / names.REGISTRY_DIR).exists()  # reading creates nothing


def test_latest_blessed_version_of_the_model_is_found(tmp_path: Path):
    storage = tmp_path / "storage"
    src = fake_saved_model(tmp_path / "train" / names.MODEL_SERVING_DIR)
    push(storage, src, "run-1", mae=1100.0)
    push(storage, src, "run-2", mae=1050.0)
    push(storage, src, "other-run", model="other")
    out = resolve(tmp_path, storage)
    m = out.metadata
    v2 = storage / names.SERVING_DIR / MODEL / "2"
    assert m["found"] is True and m["version"] == 2 and m["run_id"] == "run-2"
    assert m["model_path"] == str(v2) and m[names.META_STORAGE_PATH] == str(v2)
    assert (Path(m["model_path"]) / "saved_model.pb").is_file()  # the SavedModel dir itself
    assert m["metrics"] == {"mae": 1050.0} and m[names.META_FINGERPRINT] == "fp-run-2"
    assert m["model_location"] == str(src.parent)
    doc = json.loads(Path(out.path).read_text())
    assert doc["version"] == 2 and "version 2" in doc["note"]


def test_not_blessed_entries_are_never_a_baseline(tmp_path: Path):
    storage = tmp_path / "storage"
    src = fake_saved_model(tmp_path / "train" / names.MODEL_SERVING_DIR)
    push(storage, src, "run-1")
    v2 = storage / names.SERVING_DIR / MODEL / "2"
    with registry.locked(storage, names.STAGE_PUSH) as doc:  # e.g. a version registered by another tool
        shutil.copytree(src, v2)
        doc["versions"].append(
            registry.make_entry(
                version=2,
                model_name=MODEL,
                model_location="",
                serving_path=str(v2),
                blessing={"verdict": names.NOT_BLESSED},
                metrics={},
                fingerprint="",
                run_id="run-2",
            )
        )
        registry.write_index(storage, doc, names.STAGE_PUSH)
    assert resolve(tmp_path, storage).metadata["version"] == 1


def test_version_deleted_by_hand_is_skipped(tmp_path: Path):
    storage = tmp_path / "storage"
    src = fake_saved_model(tmp_path / "train" / names.MODEL_SERVING_DIR)
    push(storage, src, "run-1")
    push(storage, src, "run-2")
    shutil.rmtree(storage / names.SERVING_DIR / MODEL / "2")
    m = resolve(tmp_path, storage).metadata
    assert m["version"] == 1 and m["skipped_versions"] == [2]
    shutil.rmtree(storage / names.SERVING_DIR / MODEL / "1")
    m = resolve(tmp_path, storage).metadata
    assert m["found"] is False and m["reason"] == names.NO_BASELINE and m["skipped_versions"] == [2, 1]


def test_other_model_names_do_not_count(tmp_path: Path):
    storage = tmp_path / "storage"
    push(storage, fake_saved_model(tmp_path / "train" / names.MODEL_SERVING_DIR), "run-1", model="other")
    assert resolve(tmp_path, storage).metadata["found"] is False


def test_damaged_index_is_a_stage_error(tmp_path: Path):
    storage = tmp_path / "storage"
    index = storage / names.REGISTRY_INDEX
    index.parent.mkdir(parents=True)
    index.write_text('{"versions": "oops"}')
    with pytest.raises(StageError) as err:
        resolve(tmp_path, storage)
    assert str(err.value).startswith(f"[{names.STAGE_RESOLVE}] {index}:") and "damaged" in str(err.value)
    assert index.read_text() == '{"versions": "oops"}'
