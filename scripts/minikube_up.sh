#!/usr/bin/env bash
# From nothing to a KubeTFX-ready minikube: a cluster, standalone Kubeflow Pipelines, the
# runtime image, the pipeline volume with the input data on it, TF Serving, and the KFP UI
# on http://localhost:8080.
#
#   scripts/minikube_up.sh [CSV] [MODULE.py ...]
#
#   CSV         input data, copied to data/insurance.csv on the volume. Default:
#               ../shared/data/insurance.csv beside the repository if it exists, otherwise
#               1,338 generated rows (python -m components.lib.datagen).
#   MODULE.py   user module files, copied to data/modules/ on the volume.
#
# Settings (environment):
#   PIPELINE_VERSION  Kubeflow Pipelines release to install (2.5.0: the backend released
#                     with the kfp 2.13.0 SDK this project pins)
#   MINIKUBE_PROFILE (minikube), MINIKUBE_CPUS (4), MINIKUBE_MEMORY (8g),
#   MINIKUBE_DRIVER (docker), UI_PORT (8080), NO_PORT_FORWARD=1 to stop before the
#   port-forward, SKIP_IMAGE_BUILD=1 to reuse an image already in minikube.
#   MINIKUBE_CNI: network plugin for a new cluster (minikube start --cni); `calico` enforces
#   the NetworkPolicies of manifests/, minikube's default plugin ignores them.
#
# Every step is safe to repeat: a second run updates what changed.
set -euo pipefail

PIPELINE_VERSION="${PIPELINE_VERSION:-2.5.0}"
MINIKUBE_PROFILE="${MINIKUBE_PROFILE:-minikube}"
MINIKUBE_CPUS="${MINIKUBE_CPUS:-4}"
MINIKUBE_MEMORY="${MINIKUBE_MEMORY:-8g}"
MINIKUBE_DRIVER="${MINIKUBE_DRIVER:-docker}"
MINIKUBE_CNI="${MINIKUBE_CNI:-}"
UI_PORT="${UI_PORT:-8080}"
NAMESPACE=kubeflow
KFP_MANIFESTS="github.com/kubeflow/pipelines/manifests/kustomize"
CONFIGMAP_LIMIT_BYTES=1000000 # a ConfigMap holds at most 1 MiB, keys and metadata included

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

say() { printf '\n==> %s\n' "$*" >&2; }
die() {
  printf 'minikube_up.sh: %s\n' "$*" >&2
  exit 1
}
# kubectl, always against the minikube profile: never a cloud cluster by accident.
k() { kubectl --context "$MINIKUBE_PROFILE" "$@"; }

for tool in minikube kubectl; do
  command -v "$tool" >/dev/null 2>&1 || die "'$tool' is not installed (docs/kubernetes.md, step 0)"
done
if [[ "$MINIKUBE_DRIVER" == docker ]] && ! docker info >/dev/null 2>&1; then
  die "the docker driver needs a running Docker engine ('docker info' failed)"
fi

python=python3
[[ -x .venv/bin/python ]] && python=.venv/bin/python
version="$("$python" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')"
image="kubetfx/runtime:${version}"

# --- input files -----------------------------------------------------------------------------
workdir="$(mktemp -d)"
trap 'rm -rf "$workdir"' EXIT
csv="${1:-}"
if [[ -z "$csv" && -f ../shared/data/insurance.csv ]]; then
  csv=../shared/data/insurance.csv
fi
if [[ -z "$csv" ]]; then
  say "no CSV given: generating 1,338 rows"
  csv="$workdir/insurance.csv"
  "$python" -m components.lib.datagen --rows 1338 --out "$csv"
fi
[[ -f "$csv" ]] || die "CSV not found: $csv"
modules=("${@:2}")
# ${modules[@]+...}: an empty array under `set -u` on the bash 3.2 that macOS ships.
from_files=(--from-file="insurance.csv=$csv")
for module in ${modules[@]+"${modules[@]}"}; do
  [[ -f "$module" && "$module" == *.py ]] || die "not a .py file: $module"
  from_files+=(--from-file="$(basename "$module")=$module")
done
total_bytes=$(cat "$csv" ${modules[@]+"${modules[@]}"} | wc -c)
if ((total_bytes > CONFIGMAP_LIMIT_BYTES)); then
  die "$csv and the modules are ${total_bytes} bytes, too large for a ConfigMap; copy them onto the volume instead (docs/kubernetes.md, 'Your own data')"
fi

# --- cluster ---------------------------------------------------------------------------------
if minikube status --profile "$MINIKUBE_PROFILE" >/dev/null 2>&1; then
  say "minikube profile '$MINIKUBE_PROFILE' is running"
else
  say "starting minikube ($MINIKUBE_CPUS CPUs, $MINIKUBE_MEMORY, driver $MINIKUBE_DRIVER${MINIKUBE_CNI:+, CNI $MINIKUBE_CNI})"
  minikube start --profile "$MINIKUBE_PROFILE" --cpus "$MINIKUBE_CPUS" \
    --memory "$MINIKUBE_MEMORY" --driver "$MINIKUBE_DRIVER" ${MINIKUBE_CNI:+--cni "$MINIKUBE_CNI"}
fi

# --- Kubeflow Pipelines (standalone) ---------------------------------------------------------
say "installing Kubeflow Pipelines $PIPELINE_VERSION (standalone, namespace $NAMESPACE)"
k apply -k "${KFP_MANIFESTS}/cluster-scoped-resources?ref=${PIPELINE_VERSION}"
k wait --for condition=established --timeout=120s crd/applications.app.k8s.io
k apply -k "${KFP_MANIFESTS}/env/platform-agnostic?ref=${PIPELINE_VERSION}"

# --- runtime image, built inside minikube (no registry needed) -------------------------------
if [[ -n "${SKIP_IMAGE_BUILD:-}" ]]; then
  say "SKIP_IMAGE_BUILD set: using $image as it is in minikube"
else
  say "building $image inside minikube (the first build downloads ~1 GB of wheels)"
  CONTAINER_ENGINE=minikube MINIKUBE_PROFILE="$MINIKUBE_PROFILE" images/build.sh >/dev/null
fi

say "waiting for Kubeflow Pipelines to be ready (first start pulls its images: up to 30 min)"
k -n "$NAMESPACE" wait pods -l application-crd-id=kubeflow-pipelines \
  --for condition=Ready --timeout=1800s

# --- data, volume, loader, serving -----------------------------------------------------------
say "ConfigMap kubetfx-data from $csv${modules[*]:+ and ${modules[*]}}"
k -n "$NAMESPACE" create configmap kubetfx-data "${from_files[@]}" \
  --dry-run=client -o yaml | k apply -f -

say "applying manifests/overlays/minikube"
# A Job's pod template is immutable: replace the loader so it copies the new ConfigMap.
k -n "$NAMESPACE" delete job kubetfx-data-loader --ignore-not-found --wait=true
k apply -k manifests/overlays/minikube

say "waiting for the data loader"
if ! k -n "$NAMESPACE" wait --for=condition=complete job/kubetfx-data-loader --timeout=600s; then
  k -n "$NAMESPACE" logs job/kubetfx-data-loader --all-containers || true
  die "the data loader did not complete (logs above)"
fi
k -n "$NAMESPACE" logs job/kubetfx-data-loader -c copy-data

cat >&2 <<EOF

KubeTFX is ready on minikube.
  Compile:  python compile.py            -> pl_yaml_output/kubetfx_pipeline.yaml
  Submit:   python submit.py --host http://localhost:${UI_PORT}
            (or upload the YAML in the UI: Pipelines > Upload pipeline)
  Serving:  kubectl -n ${NAMESPACE} port-forward svc/kubetfx-serving 8501:8501
EOF

if [[ -n "${NO_PORT_FORWARD:-}" ]]; then
  echo "UI: kubectl -n ${NAMESPACE} port-forward svc/ml-pipeline-ui ${UI_PORT}:80" >&2
  exit 0
fi
say "KFP UI on http://localhost:${UI_PORT} (Ctrl-C stops the port-forward, not the cluster)"
exec kubectl --context "$MINIKUBE_PROFILE" -n "$NAMESPACE" port-forward svc/ml-pipeline-ui "${UI_PORT}:80"
