"""Loading the user module (TFX's ``module_file``) that transform, tune and train call into.

The pipeline parameter ``module_file`` is either empty (the built-in module,
``names.DEFAULT_MODULE``), a dotted module name importable in the image, or a path to a ``.py``
file — absolute, or relative to the storage root, where users put their modules next to the
data. Every way it can go wrong (no such file, a syntax error or an exception at import, a
missing function) is a ``StageError`` naming the file and the function, because the user
sees only the stage's log and has to know which of their files to fix.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import inspect
import sys
from types import ModuleType
from typing import Any

from components import names
from components.errors import StageError
from components.lib import identifiers, storage

# The functions a user module defines, and which stage needs which.
PREPROCESSING_FN = "preprocessing_fn"
HYPERPARAMETER_SPACE = "hyperparameter_space"
DEFAULT_HYPERPARAMETERS = "default_hyperparameters"
BUILD_MODEL = "build_model"
LABEL_TRANSFORM = "label_transform"  # optional: what the model learns instead of the raw label
LABEL_INVERSE_TRANSFORM = "label_inverse_transform"  # optional: back to label units
RAW_FEATURES = "raw_features"  # optional: {feature: "numeric" | "string"} the module reads
NUMERIC, STRING = "numeric", "string"  # the kinds raw_features names
# The schema stage tags a feature the model should not read (an id, a name, a date as text, or one
# the run's features/exclude_features parameters leave out) with EXCLUDED_TAG + ":" + a kind, and
# writes why into the feature's annotation comment (EXCLUDED_COMMENT + the reason). The feature
# stays in the schema, so ExampleGen, validation and the serving signature still accept it.
EXCLUDED_TAG = "kubetfx:excluded"
EXCLUDED_COMMENT = "kubetfx:excluded: "


def excluded_reason(feature: Any) -> str | None:
    """Why the schema excludes ``feature`` (a ``schema_pb2.Feature``) from the model, or None.

    Any tag ``kubetfx:excluded`` or ``kubetfx:excluded:<kind>`` counts, so a hand-written schema
    can exclude a column with the tag alone.
    """
    tags = [t for t in feature.annotation.tag if t == EXCLUDED_TAG or t.startswith(EXCLUDED_TAG + ":")]
    if not tags:
        return None
    for comment in feature.annotation.comment:
        if comment.startswith(EXCLUDED_COMMENT):
            return comment[len(EXCLUDED_COMMENT) :]
    return f"schema tag {tags[0]}"


@dataclasses.dataclass(frozen=True)
class ModuleContext:
    """What the pipeline knows that a module function may want: TFX's ``custom_config``, typed.

    A module function receives it when it declares one more parameter than the pipeline's
    minimum (``preprocessing_fn(inputs, context)``, ``build_model(hparams, tft_output, context)``,
    ``hyperparameter_space(hp, context)``, ``default_hyperparameters(context)``,
    ``label_transform(label, context)``, ``raw_features(context)``); a module that declares
    none (the insurance example) is called as before.

    ``label``: the column to predict; ``task``: "regression" or "classification"; ``classes``:
    the class names (class id = position; empty for regression); ``schema``: the raw schema
    (``schema_pb2.Schema``); ``label_stats``: figures of the training labels (``label.LabelInfo``:
    empty while transform runs, filled for tune and train); ``train_rows``: the rows the model is
    fit on — the train split minus the validation slice (None while transform runs); ``steps``:
    the most training steps of the fit the model is built for (a tune trial's, or train's; early
    stopping may end it sooner; None while transform runs); ``validation_rows``: the train
    split's rows held out for early stopping and the tuner's objective; ``epochs``: the most
    epochs of the fit (both None while transform runs). The eval split is never among these rows.
    """

    label: str
    task: str
    classes: tuple[str, ...] = ()
    schema: Any = None
    label_stats: dict[str, Any] = dataclasses.field(default_factory=dict)
    train_rows: int | None = None
    steps: int | None = None
    validation_rows: int | None = None
    epochs: int | None = None

    @property
    def is_classification(self) -> bool:
        return self.task == "classification"

    def features(self) -> list[str]:
        """The raw features other than the label, in the schema's order (excluded ones too)."""
        return [f.name for f in getattr(self.schema, "feature", ()) if f.name != self.label]

    def excluded_features(self) -> dict[str, str]:
        """{feature: reason} of the features the schema stage excluded from the model (``EXCLUDED_TAG``).

        A module that follows the schema's advice (the default one does) leaves them out; the
        serving signature parses them anyway, so requests that send them are still accepted.
        """
        out = {}
        for feature in getattr(self.schema, "feature", ()):
            reason = excluded_reason(feature)
            if reason is not None and feature.name != self.label:
                out[feature.name] = reason
        return out


def call(fn: Any, *args: Any, context: ModuleContext | None, stage: str | None = None) -> Any:
    """``fn(*args)``, or ``fn(*args, context)`` when ``fn`` declares a parameter for the context.

    An exception the function raises becomes one StageError naming the module file, the
    function and the line of that file it was raised at (``user_error``). ``stage``: the stage
    to name; by default the stage that last loaded the function's module.
    """
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # a builtin or C function: no context
        return fn(*args)
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    takes_more = any(p.kind is p.VAR_POSITIONAL for p in params) or len(positional) > len(args)
    try:
        return fn(*args, context) if takes_more and context is not None else fn(*args)
    except StageError:
        raise
    except Exception as e:
        raise user_error(fn, e, stage) from e


_LOADED_BY: dict[str, str] = {}  # module name -> the stage that last loaded it (one stage at a time)


def user_error(fn: Any, error: BaseException, stage: str | None = None) -> StageError:
    """``[stage] <module file>: <function> raised <Type>: <message> at line <n>``.

    The line is that of the last traceback frame in the module's own file, so an error raised
    deep inside TensorFlow still points at the user's line that called it.
    """
    module = sys.modules.get(getattr(fn, "__module__", "") or "")
    code = getattr(fn, "__code__", None)
    filename = getattr(module, "__file__", None) or (code.co_filename if code else None)
    where = module_location(module) if module is not None else (filename or "user module")
    line = None
    tb = error.__traceback__
    while tb is not None:
        if filename and tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    name = getattr(fn, "__name__", repr(fn))
    text = " ".join(str(error).split())
    text = text if len(text) <= 300 else text[:297] + "..."
    at = f" at line {line}" if line is not None else ""
    stage = stage or _LOADED_BY.get(getattr(module, "__name__", ""), "user module")
    hint = identifiers.hint_for(error)
    return StageError(stage, where, f"{name} raised {type(error).__name__}: {text}{at}{hint}")


_FILE_MODULE_PREFIX = "kubetfx_user_module_"


def _is_file_reference(module_file: str) -> bool:
    """A path (``x.py`` or anything with a slash) rather than a dotted module name."""
    return module_file.endswith(".py") or "/" in module_file or "\\" in module_file


def module_location(module: ModuleType) -> str:
    """What to name in an error about ``module``: its file, else its dotted name."""
    return getattr(module, "__file__", None) or module.__name__


def module_reference(module: ModuleType) -> str:
    """How lineage names the module a stage ran.

    A file on the volume by its path, an importable module (the built-in one) by its dotted
    name — never a path inside the image, which no reader of the lineage can open.
    """
    if module.__name__.startswith(_FILE_MODULE_PREFIX):
        return str(module.__file__)
    return module.__name__


def load_user_module(module_file: str, storage_root: str, stage: str) -> ModuleType:
    """Import the user module that ``module_file`` names (empty: the built-in one).

    A file is imported under a name derived from its absolute path and content hash, so two
    different files never shadow each other in one process (the local runner runs every
    stage in one interpreter) and an edited file is imported afresh.
    """
    if not module_file.strip():
        module_file = names.DEFAULT_MODULE
    module_file = module_file.strip()
    if not _is_file_reference(module_file):
        try:
            module = importlib.import_module(module_file)
            _LOADED_BY[module.__name__] = stage
            return module
        except ModuleNotFoundError as e:
            if e.name and module_file.startswith(e.name):
                raise StageError(stage, module_file, f"user module not found: {e}") from e
            raise StageError(stage, module_file, f"user module failed to import: {e!r}") from e
        except Exception as e:  # the user's code raised at import time
            raise StageError(stage, module_file, f"user module failed to import: {e!r}") from e

    path = storage.resolve(storage_root, module_file, stage, "module_file")  # on the volume only
    if not path.is_file():
        raise StageError(stage, str(path), "user module file does not exist")
    try:
        source = path.read_bytes()
    except OSError as e:
        raise StageError(stage, str(path), f"cannot read user module file: {e}") from e
    digest = hashlib.sha256(str(path.resolve()).encode() + b"\0" + source).hexdigest()[:16]
    mod_name = f"{_FILE_MODULE_PREFIX}{digest}"
    _LOADED_BY[mod_name] = stage
    if mod_name in sys.modules:
        return sys.modules[mod_name]
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise StageError(stage, str(path), "not an importable Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module  # dataclasses and pickling look the module up by name
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        del sys.modules[mod_name]
        raise StageError(stage, str(path), f"syntax error in user module at line {e.lineno}: {e.msg}") from e
    except BaseException as e:
        del sys.modules[mod_name]
        raise StageError(stage, str(path), f"user module failed to import: {e!r}") from e
    return module


def require(module: ModuleType, function: str, stage: str) -> Any:
    """The callable ``function`` of the user module, or a StageError naming file and function."""
    fn = getattr(module, function, None)
    if fn is None:
        raise StageError(stage, module_location(module), f"user module defines no function {function!r}")
    if not callable(fn):
        raise StageError(stage, module_location(module), f"{function!r} in the user module is not a function")
    return fn


def optional(module: ModuleType, function: str, stage: str) -> Any | None:
    """The callable ``function`` if the module defines it, else None (an optional hook)."""
    if getattr(module, function, None) is None:
        return None
    return require(module, function, stage)
