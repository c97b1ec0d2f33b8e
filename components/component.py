"""How every stage becomes a KFP component: one image, no pip install at pod start.

The image is named here and only here. ``compile.py --image-registry`` rewrites it on the
compiled components (see ``pipelines.kubetfx_pipeline.with_image``); nothing is read from
the environment.

Every component's body runs inside ``components.lib.run_status.recorded`` (its status record on
the volume, which the exit handler reads): ``component`` rewrites the body's source once, at
import, so the code KFP embeds in the YAML has it and no stage can leave it out.
"""

from __future__ import annotations

import ast
import functools
import inspect
import linecache
import textwrap
from collections.abc import Callable
from typing import Any

from kfp import dsl

from components.lib.code_identity import package_version

VERSION = package_version()

IMAGE_REPOSITORY = "kubetfx/runtime"
IMAGE = f"{IMAGE_REPOSITORY}:{VERSION}"

# Every stage runs in the runtime image, which has the locked stack and this project installed.
# install_kfp_package=False: kfp is in the image already, and a uv-made venv has no pip.
# dsl.component is looked up when a component is made, not at import: in a pod kfp runs in its
# runtime mode (_KFP_RUNTIME=true), whose kfp.dsl has no ``component``, and a stage may import
# this module there (its VERSION).
# The status record's opening lines; the task's name is the function's (with ``-<group>`` for a
# component that has a ``group`` parameter: the iterations of one ParallelFor task).
_RECORD = (
    "from components.lib.run_status import recorded as _kubetfx_recorded",
    "with _kubetfx_recorded(storage_root, run_id, {task}):",
)


def _recorded_source(func: Callable[..., Any]) -> str:
    """``func``'s source with its body (after the docstring) inside the status record's ``with``."""
    source = textwrap.dedent(inspect.getsource(func))
    fn = ast.parse(source).body[0]
    if not isinstance(fn, ast.FunctionDef):
        raise TypeError(f"{func.__name__}: a component must be a plain function")
    params = {a.arg for a in fn.args.args}
    if not {"storage_root", "run_id"} <= params:
        raise TypeError(f"{func.__name__}: a recorded component needs storage_root and run_id parameters")
    body = fn.body[1:] if ast.get_docstring(fn) is not None else fn.body
    lines = source.splitlines()
    task = repr(func.__name__) if "group" not in params else f"f'{func.__name__}-{{group}}'"
    pad = " " * (body[0].col_offset if body else fn.body[0].col_offset)
    opening = [pad + _RECORD[0], pad + _RECORD[1].format(task=task)]
    if not body:  # a docstring only
        return "\n".join([*lines[fn.lineno - 1 :], *opening, pad + "    pass"]) + "\n"
    start = body[0].lineno - 1
    inner = ["    " + line if line.strip() else line for line in lines[start:]]
    new = "\n".join([*lines[fn.lineno - 1 : start], *opening, *inner]) + "\n"
    wrapped = ast.parse(new).body[0].body  # type: ignore[attr-defined]
    if ast.dump(ast.Module(wrapped[-1].body, [])) != ast.dump(ast.Module(body, [])):
        raise ValueError(f"{func.__name__}: its body changes when indented (a multi-line string?)")
    return new


def _with_status_record(func: Callable[..., Any]) -> Callable[..., Any]:
    """The same function, compiled from ``_recorded_source`` (which ``inspect.getsource`` returns)."""
    source = _recorded_source(func)
    filename = f"<kubetfx component {func.__module__}.{func.__name__}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace = dict(func.__globals__)
    exec(compile(source, filename, "exec", dont_inherit=True), namespace)  # noqa: S102 (our own source)
    new = namespace[func.__name__]
    new.__module__ = func.__module__
    return new


def component(func: Callable[..., Any] | None = None, *, record_status: bool = True) -> Any:  # noqa: ANN401
    """``dsl.component`` in the runtime image; the body recorded in ``run_status`` unless told not to."""
    if func is None:
        return functools.partial(component, record_status=record_status)
    make = functools.partial(dsl.component, base_image=IMAGE, install_kfp_package=False)
    return make(_with_status_record(func) if record_status else func)
