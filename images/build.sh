#!/usr/bin/env bash
# Build the KubeTFX runtime image, tagged with the project version from pyproject.toml.
#
#   images/build.sh                           # docker, else podman -> kubetfx/runtime:<version>
#   REGISTRY=ghcr.io/me images/build.sh       # -> ghcr.io/me/kubetfx/runtime:<version>
#   PUSH=1 REGISTRY=ghcr.io/me images/build.sh
#   CONTAINER_ENGINE=podman images/build.sh
#   CONTAINER_ENGINE=minikube images/build.sh # into minikube's node (MINIKUBE_PROFILE, default minikube)
#
# Extra arguments go to the engine's build command (for example --platform linux/amd64).
# The build context is a staged copy of just the files the Dockerfile copies, so neither
# .venv nor data is uploaded to the builder, whatever the engine.
set -euo pipefail

# What images/Dockerfile COPYs (tests/test_k8s_offline.py keeps the two lists equal).
CONTEXT_FILES=(pyproject.toml uv.lock README.md components pipelines)

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

# tomllib needs Python 3.11+: the project's venv has it where the system python3 may not.
python=python3
[[ -x .venv/bin/python ]] && python=.venv/bin/python
version="$("$python" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')"
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
  echo "build.sh: neither docker nor podman is installed; install one of them, or build inside" >&2
  echo "minikube with: CONTAINER_ENGINE=minikube images/build.sh" >&2
  exit 1
fi
if ! command -v "$engine" >/dev/null 2>&1; then
  echo "build.sh: CONTAINER_ENGINE=$engine is not installed" >&2
  exit 1
fi
if [[ "$engine" != minikube ]] && ! "$engine" info >/dev/null 2>&1; then
  echo "build.sh: '$engine' is installed but its engine does not answer ('$engine info' failed);" >&2
  echo "start the Docker daemon / podman machine, or build inside minikube with:" >&2
  echo "  CONTAINER_ENGINE=minikube images/build.sh" >&2
  exit 1
fi

context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
cp -R "${CONTEXT_FILES[@]}" "$context/"
mkdir "$context/images"
cp images/Dockerfile "$context/images/Dockerfile"
find "$context" -name __pycache__ -type d -prune -exec rm -rf {} +

echo "build.sh: building ${image} with ${engine}" >&2
if [[ "$engine" == minikube ]]; then
  profile="${MINIKUBE_PROFILE:-minikube}"
  minikube image build --profile "$profile" -t "$image" -f images/Dockerfile \
    --build-opt "build-arg=VERSION=${version}" "$@" "$context"
  # `minikube image build` can exit 0 after a failed build: check that the image is there.
  if ! minikube image ls --profile "$profile" | grep -qF "$image"; then
    echo "build.sh: $image is not in minikube after the build (see the build output above)" >&2
    exit 1
  fi
else
  "$engine" build -f "$context/images/Dockerfile" --build-arg "VERSION=${version}" -t "$image" "$@" "$context"
fi

if [[ -n "${PUSH:-}" ]]; then
  [[ "$engine" != minikube ]] || { echo "build.sh: PUSH needs docker or podman" >&2; exit 1; }
  "$engine" push "$image"
fi
echo "$image"
