"""The shape of components/: stages meet only through shared contract modules, and modules stay small.

A stage library (``components/lib/<stage>.py`` or the package ``components/lib/<stage>/``) never
imports another stage's library: what two stages share — the examples layout, statistics and
schema files, the SavedModel, the baseline, the blessing, transform's output, the hyperparameters
— is one module in ``components/lib/`` that both call. A component (``components/<stage>.py``)
imports its own stage library and shared modules only. Imports are read with ``ast``, including
the ones inside functions (component bodies import there).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from components import names

REPO = Path(__file__).resolve().parents[1]
COMPONENTS = REPO / "components"
LIB = COMPONENTS / "lib"
MAX_LINES = 400


def module_name(path: Path, root: Path = REPO) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, root: Path = REPO) -> set[str]:
    """Every module ``path`` imports, absolute; ``from a import b`` counts as ``a`` and ``a.b``."""
    package = module_name(path, root).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def stage_library_of(module: str) -> str | None:
    """The stage whose library ``module`` is (``components.lib.<stage>[.*]``), else None."""
    parts = module.split(".")
    if parts[:2] == ["components", "lib"] and len(parts) > 2 and parts[2] in names.STAGES:
        return parts[2]
    return None


def component_of(module: str) -> str | None:
    """The stage whose component module ``module`` is (``components.<stage>``), else None."""
    parts = module.split(".")
    if parts[0] == "components" and len(parts) > 1 and parts[1] in names.STAGES:
        return parts[1]
    return None


def python_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


LIB_FILES = python_files(LIB)
STAGE_LIB_FILES = [p for p in LIB_FILES if stage_library_of(module_name(p))]
SHARED_FILES = [p for p in LIB_FILES if not stage_library_of(module_name(p))]
COMPONENT_FILES = [COMPONENTS / f"{stage}.py" for stage in names.STAGES]


def ids(paths: list[Path]) -> list[str]:
    return [p.relative_to(REPO).as_posix() for p in paths]


def test_every_stage_has_a_component_and_a_library():
    assert all(p.is_file() for p in COMPONENT_FILES), ids(COMPONENT_FILES)
    assert {stage_library_of(module_name(p)) for p in STAGE_LIB_FILES} == set(names.STAGES)
    assert len(SHARED_FILES) >= 10  # the contracts below are really there to check against


@pytest.mark.parametrize("path", STAGE_LIB_FILES, ids=ids(STAGE_LIB_FILES))
def test_a_stage_library_imports_no_other_stage(path):
    own = stage_library_of(module_name(path))
    foreign = sorted(
        m for m in imports_of(path) if stage_library_of(m) not in (None, own) or component_of(m) is not None
    )
    assert not foreign, f"{path.relative_to(REPO)} imports another stage: {foreign}"


@pytest.mark.parametrize("path", SHARED_FILES, ids=ids(SHARED_FILES))
def test_a_shared_module_imports_no_stage(path):
    staged = sorted(m for m in imports_of(path) if stage_library_of(m) or component_of(m))
    assert not staged, f"{path.relative_to(REPO)} (shared) imports a stage: {staged}"


@pytest.mark.parametrize("path", COMPONENT_FILES, ids=ids(COMPONENT_FILES))
def test_a_component_imports_its_own_library_and_shared_modules_only(path):
    own = path.stem
    foreign = sorted(
        m
        for m in imports_of(path)
        if stage_library_of(m) not in (None, own) or component_of(m) not in (None, own)
    )
    assert not foreign, f"{path.relative_to(REPO)} imports another stage: {foreign}"


@pytest.mark.parametrize("path", python_files(COMPONENTS), ids=ids(python_files(COMPONENTS)))
def test_no_module_in_components_is_over_400_lines(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(REPO)} has {lines} lines; split it along a real seam"


def test_the_import_reader_sees_what_the_rules_forbid(tmp_path):
    """The rules would catch each way a sibling import can be written, inside functions too."""
    lib = tmp_path / "components" / "lib"
    lib.mkdir(parents=True)
    sample = lib / "tune.py"
    sample.write_text(
        "from components.lib import train as train_lib\n"
        "def f():\n"
        "    from components.lib.train import transform_paths\n"
        "    import components.lib.evaluate.stage\n"
        "    from . import push\n"
    )
    stages = {stage_library_of(m) for m in imports_of(sample, root=tmp_path)} - {None}
    assert stages == {"train", "evaluate", "push"}


# pipelines/: one subpackage per concern. What each may import of the others (module level or in a
# function): a run on this machine dispatches to the backend emulator; nothing else crosses.
PIPELINES = REPO / "pipelines"
RUNNER_PACKAGES = ("local", "backend", "remote", "lineage")
MAY_IMPORT = {
    "local": {"backend"},  # run.py picks the runner; preflight asks whether pods can run
    "backend": set(),
    "remote": set(),
    "lineage": set(),
}


def runner_package_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "pipelines" and len(parts) > 1 and parts[1] in RUNNER_PACKAGES else None


@pytest.mark.parametrize("path", python_files(PIPELINES), ids=ids(python_files(PIPELINES)))
def test_a_pipelines_subpackage_imports_only_the_ones_it_may(path):
    own = runner_package_of(module_name(path))
    if own is None:  # kubetfx_pipeline.py, run_result.py, tracking.py: shared by all
        assert not {runner_package_of(m) for m in imports_of(path)} - {None}, path
        return
    crossing = {runner_package_of(m) for m in imports_of(path)} - {None, own}
    forbidden = sorted(crossing - MAY_IMPORT[own])
    assert not forbidden, f"{module_name(path)} imports pipelines.{forbidden}"


def test_no_runner_module_sits_loose_in_pipelines():
    loose = sorted(p.name for p in PIPELINES.glob("*.py"))
    assert loose == ["__init__.py", "kubetfx_pipeline.py", "run_result.py", "tracking.py"], loose
