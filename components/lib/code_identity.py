"""Which code made an artifact: the package version, the user module's hash, the image.

Lineage must say what code produced a model as well as what data: a model retrained from the
same data by an edited module, or by a newer image, is another model. KFP's ML Metadata records
the image only on the cluster (and is being removed, KFP proposal 12147), so every stage that
runs user code records its own identity in its artifacts' metadata and in their manifest on the
volume (``artifact_metadata.publish``); both lineage readers read it from there.

- ``package_version``: this project's version (``package_version()``, the installed wheel's;
  ``components.component.VERSION`` is the same), the code of every stage;
- ``module`` and ``module_sha256``: the user module as lineage names it (a file on the volume
  by its path, the built-in module by its dotted name, as ``user_module.module_reference``)
  and the SHA-256 of its source file's bytes — an edited module, or another file under the same
  name, gives another hash;
- ``image``: the runtime image the pod runs, from the ``KUBETFX_IMAGE`` environment variable
  the image sets at build time; a process without it (a local run, the backend emulator without
  ``--image``) records ``none (local run)``.
"""

from __future__ import annotations

import importlib.util
import os
from importlib import metadata
from pathlib import Path
from typing import Any

from components import names
from components.errors import StageError

IMAGE_ENV = "KUBETFX_IMAGE"  # set by images/Dockerfile to the reference the image was built as
LOCAL_IMAGE = "none (local run)"
PACKAGE = "kubetfx"
SOURCE_TREE_VERSION = "0.1.0"  # a checkout that was never installed (pyproject.toml's version)


def package_version() -> str:
    """The installed project's version (``components.component.VERSION`` is this value).

    Read here, with the standard library only, so a stage in a pod needs nothing of kfp's.
    """
    try:
        return metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        return SOURCE_TREE_VERSION


def image_reference() -> str:
    """The image this process runs in, as its build named it; ``none (local run)`` outside one."""
    return os.environ.get(IMAGE_ENV, "").strip() or LOCAL_IMAGE


def _is_file(module_file: str) -> bool:
    """A path (``x.py`` or anything with a slash), as ``user_module`` tells them from dotted names."""
    return module_file.endswith(".py") or "/" in module_file or "\\" in module_file


def module_identity(module_file: str, storage_root: str, stage: str) -> dict[str, str]:
    """``{"module": reference, "module_sha256": digest}`` of the module ``module_file`` names.

    Empty: the built-in module (``names.DEFAULT_MODULE``). A file is resolved on the volume as
    the stage loaded it; a dotted name is found without importing it (its source file hashed).
    """
    from components.lib import storage

    reference = module_file.strip() or names.DEFAULT_MODULE
    if _is_file(reference):
        path = str(storage.resolve(storage_root, reference, stage, "module_file"))
        reference = path
    else:
        try:
            spec = importlib.util.find_spec(reference)
        except (ImportError, ValueError) as e:
            raise StageError(stage, reference, f"user module not found for its hash: {e}") from e
        path = spec.origin if spec is not None and spec.origin else ""
    try:
        digest = storage.file_digest(Path(path)) if path and os.path.isfile(path) else ""
    except OSError as e:
        raise StageError(stage, path, f"cannot read the user module for its hash: {e}") from e
    return {"module": reference, "module_sha256": digest or "unknown (no source file)"}


def identity(storage_root: str, stage: str, module_file: str | None = None) -> dict[str, Any]:
    """A stage's code: package version, image, and the user module when it runs one."""
    code: dict[str, Any] = {"package": PACKAGE, "package_version": package_version()}
    code["image"] = image_reference()
    if module_file is not None:
        code.update(module_identity(module_file, storage_root, stage))
    return code
