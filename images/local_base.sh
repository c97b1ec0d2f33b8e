#!/usr/bin/env bash
# A local stand-in for python:3.11-slim-bookworm, for machines that reach Debian's mirror but
# no container registry. images/build.sh calls it with CONTAINER_ENGINE=buildah when the
# official base cannot be pulled, and builds with --build-arg PYTHON_IMAGE=<what this prints>.
#
#   images/local_base.sh      # prints localhost/kubetfx/python-base:3.11-bookworm
#
# What it is: Debian bookworm (debootstrap --variant=minbase) with Debian's python3.11, pip
# and venv (ensurepip's wheels). Where the official image differs, it is made to look the same
# to the Dockerfile: python3, python and pip in /usr/local/bin (symlinks to Debian's), no
# EXTERNALLY-MANAGED marker (the official image's python is not Debian-managed either).
# What it is not: the official image's own CPython build (3.11.x from python.org, in
# /usr/local) — the venv built on it links the same glibc 2.36 of bookworm.
#
# The root file system is cached as a tarball under $KUBETFX_CACHE (default
# ~/.cache/kubetfx/base): a second run only re-imports it when buildah's storage lost it.
set -euo pipefail

BASE_IMAGE="${KUBETFX_BASE_IMAGE:-localhost/kubetfx/python-base:3.11-bookworm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# python3.11-dev: the official image has the headers too (/usr/local/include/python3.11).
PACKAGES="python3.11,python3.11-dev,python3-pip,python3-venv,ca-certificates"
cache="${KUBETFX_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kubetfx/base}"
tarball="$cache/bookworm-python3.11.tar"

log() { printf 'local_base: %s\n' "$*" >&2; }

if buildah inspect --type image "$BASE_IMAGE" >/dev/null 2>&1; then
  log "$BASE_IMAGE is already in buildah's storage"
  echo "$BASE_IMAGE"
  exit 0
fi
command -v debootstrap >/dev/null 2>&1 || {
  log "debootstrap is not installed (apt-get install -y debootstrap)"; exit 1; }

if [[ ! -s "$tarball" ]]; then
  rootfs="$(mktemp -d)"
  trap 'rm -rf "$rootfs"' EXIT
  log "debootstrap bookworm into $rootfs (about a minute)"
  debootstrap --variant=minbase --include="$PACKAGES" bookworm "$rootfs" "$MIRROR" >&2
  ln -sfn /usr/bin/python3.11 "$rootfs/usr/local/bin/python3"
  ln -sfn /usr/bin/python3.11 "$rootfs/usr/local/bin/python"
  ln -sfn /usr/bin/pip3 "$rootfs/usr/local/bin/pip"
  rm -f "$rootfs"/usr/lib/python3.11/EXTERNALLY-MANAGED
  # What the official slim image also leaves out: apt lists, caches, logs.
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
    "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/log/*.log
  mkdir -p "$cache"
  tar --numeric-owner --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' \
    -C "$rootfs" -cf "$tarball.part" .
  mv "$tarball.part" "$tarball"
fi

log "importing $tarball as $BASE_IMAGE"
container="$(buildah from scratch)"
mountpoint="$(buildah mount "$container")"
tar --numeric-owner -C "$mountpoint" -xf "$tarball"
buildah umount "$container" >/dev/null
buildah config --env PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin \
  --env LANG=C.UTF-8 --cmd python3 \
  --label org.opencontainers.image.description="local stand-in for python:3.11-slim-bookworm (debootstrap)" \
  "$container"
buildah commit --quiet --rm "$container" "$BASE_IMAGE" >/dev/null
echo "$BASE_IMAGE"
