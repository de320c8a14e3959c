#!/usr/bin/env bash
# Install what `python -m benchmarks.run` needs beyond the dev extra: the Python
# load-generator packages, Node's `ws` package for the Node peer and the
# Centrifugo v6 binary for the Go peer. Node and Go come from the machine.
# Everything downloaded or built goes into the cache folder, never the repo.
# Safe to run again: each step is skipped when its result is already there.
# A missing node or go only skips that peer; the benchmark then reports it as
# unavailable instead of failing.
set -euo pipefail

readonly CACHE_DIR="${BROKERCAST_CACHE:-$HOME/.cache/brokercast}"
readonly BENCH_DIR="$CACHE_DIR/bench"
readonly WS_VERSION="8.23.1"
readonly CENTRIFUGO_VERSION="v6.9.1"

log() {
    printf 'setup (bench): %s\n' "$*"
}

install_python_packages() {
    if python3 -c 'import picows, hdrh, matplotlib' 2>/dev/null; then
        log "picows, hdrhistogram and matplotlib already installed"
        return
    fi
    log "installing picows, hdrhistogram and matplotlib"
    python3 -m pip install --quiet picows hdrhistogram matplotlib
}

install_node_ws() {
    local prefix="$BENCH_DIR/node"
    if ! command -v npm >/dev/null; then
        log "npm not found; the node-ws contender will be skipped"
        return
    fi
    if [[ -f "$prefix/node_modules/ws/package.json" ]]; then
        log "ws already in $prefix"
        return
    fi
    log "installing ws $WS_VERSION into $prefix"
    mkdir -p "$prefix"
    npm install --silent --no-audit --no-fund --prefix "$prefix" "ws@$WS_VERSION"
}

build_centrifugo() {
    local bin="$BENCH_DIR/bin/centrifugo"
    if ! command -v go >/dev/null; then
        log "go not found; the centrifugo contender will be skipped"
        return
    fi
    if [[ -x "$bin" ]]; then
        log "centrifugo already built at $bin"
        return
    fi
    log "building centrifugo $CENTRIFUGO_VERSION into $BENCH_DIR/bin (a few minutes)"
    mkdir -p "$BENCH_DIR/bin"
    GOPATH="$BENCH_DIR/go" GOBIN="$BENCH_DIR/bin" GOFLAGS=-modcacherw \
        go install "github.com/centrifugal/centrifugo/v6@$CENTRIFUGO_VERSION"
}

install_python_packages
install_node_ws
build_centrifugo
