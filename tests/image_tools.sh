#!/usr/bin/env bash
# Install what tests/test_image.py (pytest marker `image`) needs: buildah, which builds
# images/Dockerfile and runs containers of it without a daemon, and debootstrap, which
# images/local_base.sh uses where python:3.11-slim-bookworm cannot be pulled. Both from the
# distribution (Debian bookworm: buildah 1.28, debootstrap 1.0.128). Needs root. A second run
# finds both and returns at once, so CI can call it unconditionally:
#
#   bash tests/image_tools.sh
#   KUBETFX_REQUIRE_IMAGE=1 .venv/bin/python -m pytest -m image tests/test_image.py
#   KUBETFX_REQUIRE_IMAGE=1 .venv/bin/python -m pytest tests/test_beam_boot.py   # Beam's boot, no image
set -euo pipefail

log() { printf 'image_tools: %s\n' "$*" >&2; }

missing=()
command -v buildah >/dev/null 2>&1 || missing+=(buildah)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)  # a task's loopback-only network namespace
# Go builds Beam's boot program for the image (scripts/beam_boot.sh) where Beam's SDK image cannot
# be pulled; Debian bookworm's Go (1.19) is too old for Beam's module (go 1.26), so it is not
# installed here: without it (and no boot cached) the image gets the BEAM_BOOT=none stand-in, and
# the boot tests skip, or fail under KUBETFX_REQUIRE_IMAGE=1.
if ! command -v go >/dev/null 2>&1; then
  log "go is not installed: images/build.sh cannot build Beam's boot program (https://go.dev/dl, >= 1.26)"
fi
if ((${#missing[@]} == 0)); then
  log "buildah $(buildah --version | awk '{print $3}'), debootstrap and ip are installed"
  exit 0
fi
command -v apt-get >/dev/null 2>&1 || { log "no apt-get here: install ${missing[*]} by hand"; exit 1; }
[[ "$(id -u)" == 0 ]] || { log "installing ${missing[*]} needs root"; exit 1; }
log "installing ${missing[*]} with apt-get"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
log "installed: $(buildah --version)"
