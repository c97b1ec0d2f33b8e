"""The user module (TFX's module_file): found by name or path, and every way it can be wrong."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_component

from components import names
from components.errors import StageError
from components.lib import user_module

GOOD = """
def preprocessing_fn(inputs):
    return dict(inputs)

def build_model(hparams, tf_transform_output):
    return None

MARK = {mark!r}
"""


def write_module(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(text)
    return path


def test_empty_string_is_the_builtin_module_with_every_function():
    module = user_module.load_user_module("", "/nonexistent-root", names.STAGE_TRAIN)
    assert module.__name__ == names.DEFAULT_MODULE
    for fn in (
        user_module.PREPROCESSING_FN,
        user_module.HYPERPARAMETER_SPACE,
        user_module.DEFAULT_HYPERPARAMETERS,
        user_module.BUILD_MODEL,
        user_module.LABEL_TRANSFORM,
        user_module.LABEL_INVERSE_TRANSFORM,
    ):
        assert callable(user_module.require(module, fn, names.STAGE_TRAIN))


def test_builtin_defaults_are_inside_the_workload_search_space():
    import keras_tuner as kt

    module = user_module.load_user_module(names.INSURANCE_MODULE, "", names.STAGE_TUNE)
    hp = kt.HyperParameters()
    values = module.hyperparameter_space(hp)
    space = {p.name: list(p.values) for p in hp.space}
    assert space == {"learning_rate": [0.01, 0.003, 0.001], "units": [16, 32, 64], "num_layers": [1, 2]}
    assert set(values) == set(space)
    for key, value in module.default_hyperparameters().items():
        assert value in space[key]


def test_file_relative_to_storage_root_and_absolute(tmp_path):
    path = write_module(tmp_path / names.DATA_DIR, "my_module.py", GOOD.format(mark="relative"))
    rel = user_module.load_user_module(f"{names.DATA_DIR}/my_module.py", str(tmp_path), names.STAGE_TRANSFORM)
    assert rel.MARK == "relative"
    assert user_module.module_location(rel) == str(path)
    absolute = user_module.load_user_module(str(path), str(tmp_path), names.STAGE_TRANSFORM)
    assert absolute.MARK == "relative"


def test_a_file_off_the_storage_root_is_refused(tmp_path):
    path = write_module(tmp_path / "outside", "my_module.py", GOOD.format(mark="x"))
    for reference in (str(path), "../outside/my_module.py"):
        with pytest.raises(StageError) as err:
            user_module.load_user_module(reference, str(tmp_path / "root"), names.STAGE_TRANSFORM)
        assert str(err.value) == (
            f"[transform] {path}: module_file {reference!r} is outside the storage root {tmp_path / 'root'}; "
            "a run reads and writes only on its volume"
        )


def test_two_files_with_the_same_name_do_not_shadow_each_other(tmp_path):
    a = write_module(tmp_path / "a", "module.py", GOOD.format(mark="a"))
    b = write_module(tmp_path / "b", "module.py", GOOD.format(mark="b"))
    assert user_module.load_user_module(str(a), str(tmp_path), names.STAGE_TRAIN).MARK == "a"
    assert user_module.load_user_module(str(b), str(tmp_path), names.STAGE_TRAIN).MARK == "b"
    b.write_text(GOOD.format(mark="b2"))  # an edited file is imported afresh
    assert user_module.load_user_module(str(b), str(tmp_path), names.STAGE_TRAIN).MARK == "b2"


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(StageError) as err:
        user_module.load_user_module("data/nope.py", str(tmp_path), names.STAGE_TRANSFORM)
    assert str(err.value) == f"[transform] {tmp_path / 'data' / 'nope.py'}: user module file does not exist"


def test_syntax_error_names_the_file_and_line(tmp_path):
    path = write_module(tmp_path, "broken.py", "def preprocessing_fn(inputs):\n    return (\n")
    with pytest.raises(StageError) as err:
        user_module.load_user_module(str(path), str(tmp_path), names.STAGE_TUNE)
    msg = str(err.value)
    assert msg.startswith(f"[tune] {path}: syntax error in user module at line")


def test_exception_at_import_names_the_file(tmp_path):
    path = write_module(tmp_path, "raises.py", "import no_such_package_kubetfx\n")
    with pytest.raises(StageError) as err:
        user_module.load_user_module(str(path), str(tmp_path), names.STAGE_TRAIN)
    assert str(err.value).startswith(f"[train] {path}: user module failed to import")
    assert "no_such_package_kubetfx" in str(err.value)


def test_unknown_dotted_name():
    with pytest.raises(StageError) as err:
        user_module.load_user_module("components.modules.no_such_module", "", names.STAGE_TRAIN)
    assert "[train] components.modules.no_such_module: user module not found" in str(err.value)


def test_missing_function_names_file_and_function(tmp_path):
    path = write_module(tmp_path, "partial.py", GOOD.format(mark="x"))
    module = user_module.load_user_module(str(path), str(tmp_path), names.STAGE_TUNE)
    with pytest.raises(StageError) as err:
        user_module.require(module, user_module.HYPERPARAMETER_SPACE, names.STAGE_TUNE)
    assert str(err.value) == f"[tune] {path}: user module defines no function 'hyperparameter_space'"
    assert user_module.optional(module, user_module.LABEL_TRANSFORM, names.STAGE_TUNE) is None


def test_non_callable_attribute_is_refused(tmp_path):
    path = write_module(tmp_path, "odd.py", "build_model = 3\n")
    module = user_module.load_user_module(str(path), str(tmp_path), names.STAGE_TRAIN)
    with pytest.raises(StageError, match="'build_model' in the user module is not a function"):
        user_module.require(module, user_module.BUILD_MODEL, names.STAGE_TRAIN)


def test_stages_report_a_missing_function_before_doing_work(tmp_path):
    """Each stage checks the functions it needs first: the error names its file and function."""
    from kfp import dsl

    from components.train import train
    from components.transform import transform
    from components.tune import tune

    path = write_module(tmp_path / names.DATA_DIR, "empty_module.py", "X = 1\n")
    rel = f"{names.DATA_DIR}/empty_module.py"
    dummy = tmp_path / "dummy"
    for split in names.SPLITS:
        (dummy / names.split_dir(split)).mkdir(parents=True)
    meta = {names.META_STORAGE_PATH: str(dummy)}
    inputs = tmp_path / "inputs"
    examples = dsl.Dataset(name="examples", uri=str(inputs / "examples"), metadata=meta)
    graph = dsl.Artifact(name="transform_graph", uri=str(inputs / "transform_graph"), metadata=meta)
    hp = dsl.Artifact(name="best_hyperparameters", uri=str(inputs / "best_hyperparameters"), metadata={})
    inputs.mkdir()
    Path(hp.path).write_text("{}")
    common = dict(storage_root=str(tmp_path), run_id="r", module_file=rel, label=names.LABEL)
    with pytest.raises(StageError) as err:
        run_component(
            transform,
            tmp_path / "kfp" / "transform",
            examples=examples,
            schema=dsl.Artifact(name="schema", uri=str(inputs / "schema"), metadata={}),
            beam_args="",
            **common,
        )
    assert str(err.value) == f"[transform] {path}: user module defines no function 'preprocessing_fn'"

    with pytest.raises(StageError) as err:
        run_component(
            tune,
            tmp_path / "kfp" / "tune",
            transformed_examples=examples,
            transform_graph=graph,
            tuner="random",
            trials=1,
            steps=1,
            batch_size=1,
            enabled=True,
            hyperparameters="",
            **common,
        )
    assert str(err.value) == f"[tune] {path}: user module defines no function 'hyperparameter_space'"

    with pytest.raises(StageError) as err:
        run_component(
            train,
            tmp_path / "kfp" / "train",
            transformed_examples=examples,
            transform_graph=graph,
            best_hyperparameters=hp,
            train_steps=1,
            eval_steps=1,
            batch_size=1,
            **common,
        )
    assert str(err.value) == f"[train] {path}: user module defines no function 'build_model'"
    # Nothing half-written is left on the volume by the failed stages.
    assert not list((tmp_path / names.ARTIFACTS_DIR / "r").iterdir())
