#!/usr/bin/env bash
# Build the KubeTFX runtime image with docker or podman, tagged with the project version.
#
#   images/build.sh                      # -> kubetfx/runtime:<version from pyproject.toml>
#   REGISTRY=ghcr.io/me images/build.sh  # -> ghcr.io/me/kubetfx/runtime:<version>
#   PUSH=1 REGISTRY=... images/build.sh  # build, then push
#   CONTAINER_ENGINE=podman images/build.sh
#
# Extra arguments go to `<engine> build` (for example --platform linux/amd64).
# The build context is the repository root (see the header of images/Dockerfile).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

version="$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')"
image="kubetfx/runtime:${version}"
if [[ -n "${REGISTRY:-}" ]]; then
  image="${REGISTRY%/}/${image}"
fi

engine="${CONTAINER_ENGINE:-}"
if [[ -z "$engine" ]]; then
  for candidate in docker podman; do
    if command -v "$candidate" >/dev/null 2>&1; then
      engine="$candidate"
      break
    fi
  done
fi
if [[ -z "$engine" ]]; then
  echo "build.sh: neither docker nor podman is installed; install one of them (or build inside" >&2
  echo "minikube with: minikube image build -f images/Dockerfile -t ${image} .)" >&2
  exit 1
fi
if ! "$engine" info >/dev/null 2>&1; then
  echo "build.sh: '$engine' is installed but its engine does not answer ('$engine info' failed);" >&2
  echo "start the Docker daemon / podman machine, or build inside minikube with:" >&2
  echo "  minikube image build -f images/Dockerfile -t ${image} ." >&2
  exit 1
fi

echo "build.sh: building ${image} with ${engine}" >&2
"$engine" build -f images/Dockerfile --build-arg "VERSION=${version}" -t "$image" "$@" .

if [[ -n "${PUSH:-}" ]]; then
  "$engine" push "$image"
fi
echo "$image"
