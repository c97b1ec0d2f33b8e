#!/usr/bin/env bash
# Beam's Python SDK boot program (/opt/apache/beam/boot of Beam's SDK images) built from Beam's Go
# source, fetched through the Go module proxy: what images/build.sh puts into the runtime image
# (BEAM_BOOT=built) when Beam's SDK image cannot be pulled. Prints the folder it built (last line):
#
#   scripts/beam_boot.sh      # -> ~/.cache/kubetfx/beam-boot/v<version>/{boot,LICENSE,third_party_licenses/}
#
# The version is apache-beam's in uv.lock when the proxy serves that module version, else the
# nearest release above it that it serves, said on stderr (the proxy refuses some versions, e.g.
# v2.72.0: "403 This module version is not available"). The build: CGO_ENABLED=0 (a static binary:
# it runs on any glibc or none), -trimpath (no local paths: the same bytes on every machine), so
# `go version -m boot` names the module and its version. Beam's LICENSE and the license files of
# every Go module linked in (under third_party_licenses/go/) go beside it, as in Beam's images.
#
# Idempotent: a folder already built for the chosen version is reused; with the proxy unreachable,
# a cached build of the locked version (or the nearest above it) is used. Cached under
# KUBETFX_BEAM_BOOT_CACHE (default ~/.cache/kubetfx/beam-boot); Go's module and build caches under
# <that>/go unless GOMODCACHE / GOCACHE are set.
set -euo pipefail

# --- versions: the one place ---------------------------------------------------------------
BEAM_MODULE=github.com/apache/beam/sdks/v2   # Beam's Go module (the repository's sdks/ folder)
BOOT_PACKAGE=python/container                # the main package of the Python SDK's boot (boot.go)
GO_MIN=1.26                                  # Beam 2.73's go.mod: go 1.26.0
# The Beam version itself is not pinned here: it is apache-beam's in uv.lock.
# ---------------------------------------------------------------------------------------------

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${KUBETFX_BEAM_BOOT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kubetfx/beam-boot}"

say() { echo "beam_boot.sh: $*" >&2; }
die() { say "$*"; exit 1; }

locked_beam() {  # apache-beam's version in uv.lock
  awk '/^name = "apache-beam"$/ { hit = 1; next } hit && /^version = / { gsub(/"/, "", $3); print $3; exit }' \
    "$repo_root/uv.lock"
}

ready() { [[ -x "$cache/v$1/boot" && -f "$cache/v$1/LICENSE" ]]; }

at_least() { [[ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n 1)" == "$2" ]]; }  # at_least V MIN

# copy_licenses BINARY DEST: each linked module's LICENSE/NOTICE/COPYING files, from the module cache.
copy_licenses() {
  local modcache path version dir f
  modcache="$(go env GOMODCACHE)"
  go version -m "$1" | awk '$1 == "dep" || $1 == "=>" { print $2, $3 }' | while read -r path version; do
    dir="$modcache/$(printf '%s' "$path" | sed 's/[A-Z]/!\L&/g')@$version"
    for f in "$dir"/LICENSE* "$dir"/LICENCE* "$dir"/NOTICE* "$dir"/COPYING*; do
      [[ -f "$f" ]] || continue
      mkdir -p "$2/third_party_licenses/go/$path"
      cp "$f" "$2/third_party_licenses/go/$path/"
    done
  done
}

build() {  # build VERSION: boot + licenses into $cache/vVERSION, whole or not at all
  local version="$1" tmp
  mkdir -p "$cache"
  tmp="$(mktemp -d "$cache/.build-XXXXXX")"
  say "building $BEAM_MODULE/$BOOT_PACKAGE@v$version with $(go env GOVERSION)"
  if ! GOBIN="$tmp/bin" CGO_ENABLED=0 go install -trimpath -ldflags='-s -w' \
    "$BEAM_MODULE/$BOOT_PACKAGE@v$version" >&2; then
    rm -rf "$tmp"
    die "go install $BEAM_MODULE/$BOOT_PACKAGE@v$version failed (see above)"
  fi
  mkdir "$tmp/out"
  mv "$tmp/bin/container" "$tmp/out/boot"
  cp "$(go env GOMODCACHE)/$BEAM_MODULE@v$version/LICENSE" "$tmp/out/LICENSE"
  copy_licenses "$tmp/out/boot" "$tmp/out"
  chmod -R u=rwX,go=rX "$tmp/out"
  rm -rf "$cache/v$version"
  mv "$tmp/out" "$cache/v$version"
  rm -rf "$tmp"
}

# The cached build nearest at or above $1, for a machine that cannot reach the proxy.
cached_at_least() {
  local v
  for v in $(find "$cache" -mindepth 1 -maxdepth 1 -name 'v*' -printf '%f\n' 2>/dev/null | sed 's/^v//' | sort -V); do
    if at_least "$v" "$1" && ready "$v"; then echo "$v"; return 0; fi
  done
  return 1
}

go_env() {  # Go's caches beside the output, the proxy only (no clone of Beam's repository), this Go
  export GOMODCACHE="${GOMODCACHE:-$cache/go/mod}" GOCACHE="${GOCACHE:-$cache/go/build}"
  export GOFLAGS="${GOFLAGS:+$GOFLAGS }-modcacherw" GOTOOLCHAIN=local
  local configured
  configured="$(go env GOPROXY)"
  GOPROXY="$(printf '%s' "$configured" | sed 's/[,|]/\n/g' | grep -v -x -e direct -e off | paste -sd, - || true)"
  [[ -n "$GOPROXY" ]] || die "GOPROXY=$configured names no Go module proxy; Beam's source comes from one"
  export GOPROXY
}

main() {
  local locked listed why chosen="" v
  locked="$(locked_beam)"
  [[ -n "$locked" ]] || die "uv.lock: no apache-beam package (cannot tell which Beam to build boot for)"
  if ready "$locked"; then echo "$cache/v$locked"; return 0; fi
  command -v go >/dev/null 2>&1 || die "go is not installed (Go >= $GO_MIN builds Beam's boot program: https://go.dev/dl)"
  go_env
  if ! listed="$(go list -m -versions "$BEAM_MODULE" 2>&1)"; then
    why="$(printf '%s\n' "$listed" | grep -v '^\s*$' | tail -n 1)"
    if v="$(cached_at_least "$locked")"; then
      say "the Go module proxy is not reachable ($why); using the cached boot of Beam $v (uv.lock: $locked)"
      echo "$cache/v$v"
      return 0
    fi
    die "the Go module proxy ($GOPROXY) is not reachable: $why"
  fi
  if why="$(go mod download "$BEAM_MODULE@v$locked" 2>&1)"; then
    chosen="$locked"
  else
    # "...@v2.72.0: reading https://…/v2.72.0.info: 403 Forbidden\n\tserver response: …" -> "403 Forbidden: …"
    why="$(printf '%s\n' "$why" | sed 's/^[[:space:]]*//; s/^server response: //; s/^.*\.\(info\|mod\|zip\): //' | paste -sd: - \
      | sed 's/:/: /')"
    for v in $(printf '%s\n' "$listed" | tr ' ' '\n' | sed -n 's/^v\([0-9]*\.[0-9]*\.[0-9]*\)$/\1/p' | sort -V); do
      at_least "$v" "$locked" || continue
      if ready "$v" || go mod download "$BEAM_MODULE@v$v" 2>/dev/null; then chosen="$v"; break; fi
    done
    [[ -n "$chosen" ]] || die "the Go module proxy serves no $BEAM_MODULE release at or above v$locked ($why)"
    say "Beam $locked (uv.lock) is not on the Go module proxy ($why): the boot program of Beam $chosen instead, the nearest release above it"
  fi
  ready "$chosen" || build "$chosen"
  echo "$cache/v$chosen"
}

main "$@"
