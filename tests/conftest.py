"""Shared fixtures: tiny real data, components run with the outputs their spec declares, ExampleGen output."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kfp import dsl

from components import names

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
INSURANCE_CSV = REPO.parent / "shared" / "data" / "insurance.csv"


@pytest.fixture
def insurance_csv() -> Path:
    """The real dataset (../shared/data/insurance.csv); the test is skipped when it is absent."""
    if not INSURANCE_CSV.exists():
        pytest.skip(f"real dataset not found at {INSURANCE_CSV}")
    return INSURANCE_CSV


@pytest.fixture(scope="session")
def synthetic_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300 seeded synthetic insurance rows, the same columns as the real CSV."""
    from components.lib.datagen import generate_csv

    return generate_csv(tmp_path_factory.mktemp("data") / "insurance.csv", rows=300, seed=7)


@pytest.fixture
def write_csv(tmp_path: Path) -> Callable[..., Path]:
    """Factory: write CSV text (or bytes) to a temp file and return its path."""

    def _write(content: str | bytes, name: str = "data.csv") -> Path:
        path = tmp_path / name
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path

    return _write


# The artifact class of each KFP schema title (what the KFP executor instantiates for an output).
ARTIFACT_CLASSES: dict[str, type[dsl.Artifact]] = {
    cls.schema_title: cls
    for cls in (
        dsl.Artifact,
        dsl.Dataset,
        dsl.Model,
        dsl.Metrics,
        dsl.ClassificationMetrics,
        dsl.SlicedClassificationMetrics,
        dsl.HTML,
        dsl.Markdown,
    )
}


def output_artifacts(component: Any, kfp_dir: Path) -> dict[str, dsl.Artifact]:
    """Every output artifact of ``component`` as the KFP executor makes it, from the component's spec.

    The class comes from the output's schema title, the name from the spec, the uri is
    ``<kfp_dir>/<output name>`` and its parent directory exists; metadata starts empty.
    """
    outputs: dict[str, dsl.Artifact] = {}
    for name, spec in component.component_spec.outputs.items():
        title = spec.type.split("@")[0]
        if title not in ARTIFACT_CLASSES:
            raise TypeError(f"{component.name} output {name!r} is a {spec.type}, not an artifact")
        artifact = ARTIFACT_CLASSES[title](name=name, uri=str(Path(kfp_dir) / name), metadata={})
        Path(artifact.path).parent.mkdir(parents=True, exist_ok=True)
        outputs[name] = artifact
    return outputs


def run_component(component: Any, kfp_dir: Path, **inputs: Any) -> dict[str, dsl.Artifact]:
    """Run ``component.python_func`` on ``inputs`` with its outputs from ``output_artifacts``; return them.

    A test that needs the outputs of a call that raises makes them with ``output_artifacts``
    and calls ``python_func`` itself.
    """
    outputs = output_artifacts(component, kfp_dir)
    component.python_func(**inputs, **outputs)
    return outputs


@pytest.fixture(scope="session")
def storage_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A storage root shared by session-scoped stage outputs."""
    return tmp_path_factory.mktemp("storage")


def examples_from_csv(
    storage_root: Path,
    data: Path,
    run_id: str,
    *,
    label: str = names.LABEL,
    split_buckets: str = "train:2,eval:1",
    schema_file: str = "",
) -> dsl.Dataset:
    """Run the ExampleGen component on ``data``; return its output artifact.

    ``data`` off the storage root is copied onto it first (``data/<run id>/``): a run reads only
    its volume.
    """
    import shutil

    from components.example_gen import example_gen
    from components.lib.storage import inside

    if not inside(storage_root, data):
        copy = Path(storage_root) / names.DATA_DIR / run_id / Path(data).name
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(data, copy) if Path(data).is_dir() else shutil.copy2(data, copy)
        data = copy

    return run_component(
        example_gen,
        storage_root / "kfp" / run_id,
        storage_root=str(storage_root),
        data=str(data),
        run_id=run_id,
        label=label,
        split_buckets=split_buckets,
        schema_file=schema_file,
    )["examples"]


@pytest.fixture(scope="session")
def examples(storage_root: Path, synthetic_csv: Path) -> dsl.Dataset:
    """ExampleGen's output artifact on the synthetic CSV, produced once per test session."""
    return examples_from_csv(storage_root, synthetic_csv, "session")


@pytest.fixture(scope="session")
def kfp_backend_ready() -> None:
    """Skip (with the reason) where the backend emulator cannot make pods; CI requires it."""
    from pipelines.backend.runner import available

    reason = available()
    if reason:
        if os.environ.get("KUBETFX_REQUIRE_BACKEND") == "1":
            pytest.fail(f"the KFP backend emulator is required here but {reason}")
        pytest.skip(f"KFP backend emulator: {reason}")
