#!/usr/bin/env bash
# Install the headless browser tests/test_reports.py opens the HTML reports in: Debian's chromium.
# Used by .ci/run before the tests (which then require it: KUBETFX_REQUIRE_BROWSER=1); on a
# machine without it the browser test is skipped with the reason. A second run finds the
# browser and returns at once.
#
#   bash tests/browser_tools.sh
#   .venv/bin/python -m pytest tests/test_reports.py
set -euo pipefail

log() { printf 'browser_tools: %s\n' "$*" >&2; }

for browser in chromium chromium-browser google-chrome google-chrome-stable; do
  if command -v "$browser" >/dev/null 2>&1; then
    log "keeping $(command -v "$browser") ($("$browser" --version 2>/dev/null | head -n 1))"
    exit 0
  fi
done

if ! command -v apt-get >/dev/null 2>&1; then
  log "no chromium and no apt-get: install Chromium or Chrome yourself"
  exit 1
fi
log "installing chromium with apt-get"
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y --no-install-recommends chromium >/dev/null; then
  apt-get update >/dev/null
  apt-get install -y --no-install-recommends chromium >/dev/null
fi
log "ready: $(chromium --version 2>/dev/null | head -n 1)"
