"""How every stage becomes a KFP component: one image, no pip install at pod start.

The image is named here and only here. ``compile.py --image-registry`` rewrites it on the
compiled components (see ``pipelines.kubetfx_pipeline.with_image``); nothing is read from
the environment.
"""

from __future__ import annotations

import functools
from importlib import metadata

from kfp import dsl

try:
    VERSION = metadata.version("kubetfx")
except metadata.PackageNotFoundError:  # running from a source tree that was never installed
    VERSION = "0.1.0"

IMAGE_REPOSITORY = "kubetfx/runtime"
IMAGE = f"{IMAGE_REPOSITORY}:{VERSION}"

# Every stage runs in the runtime image, which has the locked stack and this project installed.
# install_kfp_package=False: kfp is in the image already, and a uv-made venv has no pip.
component = functools.partial(dsl.component, base_image=IMAGE, install_kfp_package=False)
