#!/usr/bin/env bash
# Create (or check) the Python 3.10 venv that runs the TFX 1.16 reference pipeline.
#
#   benchmarks/tfx_reference/setup.sh          # -> /opt/tfx116/venv
#   TFX_VENV=/somewhere/venv TFX_PYTHON=/usr/bin/python3.10 benchmarks/tfx_reference/setup.sh
#
# Why a separate venv: TFX 1.16 supports Python 3.9-3.10 only, our project venv is 3.11, and
# TFX pins protobuf 3.x where ours uses 4.x. The pins below are what `tfx==1.16.0` resolved to
# when the reference figures were measured, so the comparison is repeatable. pip is installed
# too: TFX packages a module_file as a wheel and `pip install`s it inside each executor. dill
# is explicit: apache-beam 2.74 made it optional, but tfx-bsl's Beam helpers import it, and
# without it TFMA (the Evaluator) fails to import ("Error importing: No module named 'dill'").
# --no-config: run from inside this repository, uv would otherwise apply our pyproject.toml's
# [tool.uv] overrides (which drop the `tensorflow` wheel in favour of tensorflow-cpu) to this venv.
# Idempotent: an existing venv on Python 3.10 is kept; `uv pip install` of satisfied pins is a
# no-op; the final import check runs every time.
set -euo pipefail

TFX_VENV="${TFX_VENV:-/opt/tfx116/venv}"
UV_VERSION="${UV_VERSION:-0.13.9}"
PINS=(
  "tfx==1.16.0"
  "keras==3.12.*"
  "tf-keras==2.16.0"
  "tensorflow==2.16.2"
  "tensorflow-transform==1.16.0"
  "tensorflow-data-validation==1.16.1"
  "tensorflow-model-analysis==0.47.1"
  "tensorflow-metadata==1.16.1"
  "tfx-bsl==1.16.1"
  "ml-metadata==1.16.0"
  "ml-pipelines-sdk==1.16.0"
  "apache-beam[gcp]==2.74.0"
  "keras-tuner==1.4.8"
  "numpy==1.26.4"
  "pandas==1.5.3"
  "pyarrow==10.0.1"
  "protobuf==3.20.3"
  "dill==0.4.1"
  "pip"
  "wheel"
)

# uv: the one on PATH, else a pinned one from PyPI in a small bootstrap venv next to the target.
UV="$(command -v uv || true)"
if [[ -z "$UV" ]]; then
  BOOT="${TFX_VENV%/}-uv"
  if [[ ! -x "$BOOT/bin/uv" ]]; then
    python3 -m venv "$BOOT"
    "$BOOT/bin/python" -m pip install --quiet "uv==${UV_VERSION}"
  fi
  UV="$BOOT/bin/uv"
fi

# Python 3.10: TFX_PYTHON, else one on PATH or from pyenv, else whatever uv finds (or fetches).
PY="${TFX_PYTHON:-}"
if [[ -z "$PY" ]]; then
  for candidate in "$(command -v python3.10 || true)" "$HOME"/.pyenv/versions/3.10.*/bin/python3.10; do
    # A pyenv shim is on PATH even when it cannot run 3.10: check that it really is 3.10.
    if [[ -n "$candidate" && -x "$candidate" ]] \
      && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' 2>/dev/null; then
      PY="$candidate"; break
    fi
  done
fi
PY="${PY:-3.10}"

if [[ -x "$TFX_VENV/bin/python" ]] && "$TFX_VENV/bin/python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))'; then
  echo "setup: keeping $TFX_VENV ($("$TFX_VENV/bin/python" --version))"
else
  echo "setup: creating $TFX_VENV on Python $PY"
  mkdir -p "$(dirname "$TFX_VENV")"
  "$UV" venv --no-config --clear --python "$PY" "$TFX_VENV"
fi

"$UV" pip install --no-config --python "$TFX_VENV/bin/python" "${PINS[@]}"
# Bytecode for every installed module, as our own venv and image have it: where
# PYTHONDONTWRITEBYTECODE is set, Python would otherwise compile TFX's ~10,000 modules from
# source in every run (~15 s), and the comparison would time the compiler, not the pipeline.
# compileall skips up-to-date files, so a re-run costs under a second.
"$TFX_VENV/bin/python" -m compileall -q -j 0 \
  "$("$TFX_VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" >/dev/null

"$TFX_VENV/bin/python" - <<'EOF'
import sys
import keras, tensorflow as tf, tfx, tensorflow_model_analysis as tfma, apache_beam as beam
from tensorflow_model_analysis.api import model_eval_lib  # noqa: F401 (needs dill via tfx-bsl)
assert tfx.__version__ == "1.16.0", tfx.__version__
assert keras.__version__.startswith("3.12."), keras.__version__
print(f"setup: ok - python {sys.version.split()[0]}, tfx {tfx.__version__}, tensorflow {tf.__version__}, "
      f"keras {keras.__version__}, tfma {tfma.version.VERSION}, apache-beam {beam.__version__}")
EOF
