#!/usr/bin/env bash
# Build the KubeTFX runtime image, tagged with the project version from pyproject.toml.
#
#   images/build.sh                           # docker, else podman -> kubetfx/runtime:<version>
#   REGISTRY=ghcr.io/me images/build.sh       # -> ghcr.io/me/kubetfx/runtime:<version>
#   PUSH=1 REGISTRY=ghcr.io/me images/build.sh
#   CONTAINER_ENGINE=podman images/build.sh
#   CONTAINER_ENGINE=minikube images/build.sh # into minikube's node (MINIKUBE_PROFILE, default minikube)
#   CONTAINER_ENGINE=buildah images/build.sh  # buildah without a daemon (CI), layers cached
#
# With buildah, a base that cannot be pulled (no registry reachable) is replaced, said on stderr:
# python:3.11-slim-bookworm by images/local_base.sh (debootstrap, cached), and Beam's SDK image (the
# source of Beam's boot program) by BEAM_BOOT=built — boot built from Beam's Go source by
# scripts/beam_boot.sh (Go and the Go module proxy needed) — or, failing that, by BEAM_BOOT=none
# (images/beam_boot_none.sh, a stand-in serving only --worker_pool). PYTHON_IMAGE and BEAM_BOOT in
# the environment choose them by hand (BEAM_BOOT=sdk|built|none, with any engine).
#
# Extra arguments go to the engine's build command (for example --platform linux/amd64).
# The build context is a staged copy of just the files the Dockerfile copies, so neither
# .venv nor data is uploaded to the builder, whatever the engine.
set -euo pipefail

# What images/Dockerfile COPYs (tests/test_k8s_offline.py keeps the two lists equal).
# images/beam_boot is no file of the repository: the folder scripts/beam_boot.sh builds (boot and
# its licenses) with BEAM_BOOT=built, else empty (the stage that copies it is then not built).
CONTEXT_FILES=(pyproject.toml uv.lock README.md components pipelines images/beam_boot_none.sh images/beam_boot)

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
if [[ "$engine" != minikube && "$engine" != buildah ]] && ! "$engine" info >/dev/null 2>&1; then
  echo "build.sh: '$engine' is installed but its engine does not answer ('$engine info' failed);" >&2
  echo "start the Docker daemon / podman machine, or build inside minikube with:" >&2
  echo "  CONTAINER_ENGINE=minikube images/build.sh" >&2
  exit 1
fi

# pullable IMAGE: whether buildah has IMAGE or can pull it (a registry may be unreachable).
pullable() {
  buildah inspect --type image "$1" >/dev/null 2>&1 \
    || timeout "${PULL_TIMEOUT:-60}" buildah pull --quiet "$1" >/dev/null 2>&1
}

# choose_beam_boot: where /opt/apache/beam/boot comes from (BEAM_BOOT; empty: the Dockerfile's
# default, sdk) and, for built, the folder scripts/beam_boot.sh built (boot_dir).
beam_boot="${BEAM_BOOT:-}"
boot_dir=""
choose_beam_boot() {
  if [[ -z "$beam_boot" && "$engine" == buildah ]]; then
    beam_boot=sdk
    local beam_sdk
    beam_sdk="$(sed -n 's/^ARG BEAM_SDK_IMAGE=//p' images/Dockerfile)"
    if ! pullable "docker.io/$beam_sdk"; then
      if command -v go >/dev/null 2>&1 && boot_dir="$(scripts/beam_boot.sh | tail -n 1)"; then
        echo "build.sh: cannot pull $beam_sdk; building with BEAM_BOOT=built (boot from Beam's Go source: $boot_dir)" >&2
        beam_boot=built
      else
        echo "build.sh: cannot pull $beam_sdk and cannot build Beam's boot program (Go or the Go module proxy missing); building with BEAM_BOOT=none (a stand-in serving only --worker_pool)" >&2
        beam_boot=none
      fi
    fi
  elif [[ "$beam_boot" == built ]]; then
    boot_dir="$(scripts/beam_boot.sh | tail -n 1)" || { echo "build.sh: BEAM_BOOT=built, but scripts/beam_boot.sh failed" >&2; exit 1; }
  fi
  case "$beam_boot" in
    "" | sdk | built | none) ;;
    *) echo "build.sh: BEAM_BOOT=$beam_boot: expected sdk, built or none" >&2; exit 1 ;;
  esac
}

# buildah_args: the --build-arg flags choosing the bases (stand-ins where a pull fails).
base_args=()
buildah_args() {
  local python_image="${PYTHON_IMAGE:-}"
  if [[ -z "$python_image" ]]; then
    python_image="docker.io/library/python:3.11-slim-bookworm"
    if ! pullable "$python_image"; then
      echo "build.sh: cannot pull $python_image; using the local debootstrap stand-in" >&2
      python_image="$(images/local_base.sh)"
    fi
  fi
  base_args=(--build-arg "PYTHON_IMAGE=$python_image" --build-arg "BEAM_BOOT=$beam_boot")
  # Behind a TLS-intercepting proxy (SSL_CERT_FILE names its CA bundle), the build's RUN steps
  # see that bundle in place of the base's: mounted for the build only, never in a layer.
  local bundle="${BUILD_CA_BUNDLE:-${SSL_CERT_FILE:-}}"
  if [[ -n "$bundle" && -s "$bundle" ]]; then
    base_args+=(-v "$(readlink -f "$bundle"):/etc/ssl/certs/ca-certificates.crt:ro"
      --build-arg SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt)
  fi
}

choose_beam_boot
context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
mkdir "$context/images"
for file in "${CONTEXT_FILES[@]}"; do
  if [[ "$file" == images/beam_boot ]]; then
    mkdir "$context/$file"
    [[ -z "$boot_dir" ]] || cp -R "$boot_dir/." "$context/$file/"
    continue
  fi
  cp -R "$file" "$context/$file"
done
cp images/Dockerfile "$context/images/Dockerfile"
find "$context" -name __pycache__ -type d -prune -exec rm -rf {} +

echo "build.sh: building ${image} with ${engine}" >&2
if [[ "$engine" == minikube ]]; then
  profile="${MINIKUBE_PROFILE:-minikube}"
  boot_args=()
  [[ -z "$beam_boot" ]] || boot_args=(--build-opt "build-arg=BEAM_BOOT=$beam_boot")
  minikube image build --profile "$profile" -t "$image" -f images/Dockerfile \
    --build-opt "build-arg=VERSION=${version}" --build-opt "build-arg=IMAGE_REF=${image}" "${boot_args[@]}" "$@" "$context"
  # `minikube image build` can exit 0 after a failed build: check that the image is there.
  if ! minikube image ls --profile "$profile" | grep -qF "$image"; then
    echo "build.sh: $image is not in minikube after the build (see the build output above)" >&2
    exit 1
  fi
elif [[ "$engine" == buildah ]]; then
  buildah_args
  before="$(buildah containers --quiet --notruncate | sort)"
  buildah build --isolation chroot --layers -f "$context/images/Dockerfile" \
    --build-arg "VERSION=${version}" --build-arg "IMAGE_REF=${image}" "${base_args[@]}" -t "$image" "$@" "$context"
  # buildah 1.28 leaves the working container of a FROM-only stage (beam_sdk) behind.
  comm -13 <(echo "$before") <(buildah containers --quiet --notruncate | sort) \
    | xargs --no-run-if-empty buildah rm >/dev/null
else
  boot_args=()
  [[ -z "$beam_boot" ]] || boot_args=(--build-arg "BEAM_BOOT=$beam_boot")
  "$engine" build -f "$context/images/Dockerfile" --build-arg "VERSION=${version}" \
    --build-arg "IMAGE_REF=${image}" "${boot_args[@]}" \
    -t "$image" "$@" "$context"
fi

if [[ -n "${PUSH:-}" ]]; then
  [[ "$engine" != minikube ]] || { echo "build.sh: PUSH needs docker or podman" >&2; exit 1; }
  "$engine" push "$image"
fi
echo "$image"
