#!/usr/bin/env bash
# Install what the browser tests of tests/edge need: Debian's Chromium, which
# Playwright drives as the system browser. Playwright's own browser download
# is never used. Run as root; safe to run again.
set -euo pipefail

log() {
    printf 'setup browser: %s\n' "$*"
}

if command -v chromium >/dev/null; then
    log "chromium already installed"
else
    log "installing chromium"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
fi

# The Python side (playwright, hypothesis, trustme) comes with the dev extra.
if ! python3 -c "import playwright" 2>/dev/null; then
    log "python package playwright missing; install the dev extra: pip install -e '.[dev]'"
fi
