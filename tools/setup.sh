#!/usr/bin/env bash
# Prepare a Debian machine to run the brokers of tools/brokers.py: install
# redis-server, a Java runtime and Maven when missing, then copy the Apache Kafka
# jars into the cache folder. Run as root. Safe to run again: each step is
# skipped when its result is already there. Python packages are installed
# elsewhere. Without --brokers-only it then runs every tools/setup.d script
# (chart tools, the browser, benchmark peers), which need Node.js and Go.
set -euo pipefail

readonly KAFKA_VERSION="4.4.0"
TOOLS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly TOOLS_DIR
readonly CACHE_DIR="${BROKERCAST_CACHE:-$HOME/.cache/brokercast}"
readonly KAFKA_HOME="$CACHE_DIR/kafka-$KAFKA_VERSION"
# tools/brokers.py reads the same marker name to decide whether the jars are complete.
readonly LIBS_MARKER="$KAFKA_HOME/.libs-complete"

log() {
    printf 'setup: %s\n' "$*"
}

# Print the Debian packages whose command is missing from PATH.
missing_packages() {
    command -v redis-server >/dev/null || echo redis-server
    command -v java >/dev/null || echo openjdk-17-jre-headless
    command -v mvn >/dev/null || echo maven
}

install_packages() {
    local packages
    mapfile -t packages < <(missing_packages)
    if ((${#packages[@]} == 0)); then
        log "redis-server, java and mvn already installed"
        return
    fi
    log "installing ${packages[*]}"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${packages[@]}"
}

# Copy the jars into a scratch folder first and move it into place only after
# Maven succeeds, so an interrupted run never leaves a partial libs/ behind.
copy_kafka_libs() {
    if [[ -f "$LIBS_MARKER" ]]; then
        log "Kafka $KAFKA_VERSION jars already in $KAFKA_HOME/libs"
        return
    fi
    log "copying Kafka $KAFKA_VERSION jars into $KAFKA_HOME/libs"
    mkdir -p "$KAFKA_HOME"
    scratch="$(mktemp -d "$KAFKA_HOME/libs.XXXXXX")"
    trap 'rm -rf "$scratch"' EXIT
    mvn -B -q -f "$TOOLS_DIR/kafka/pom.xml" dependency:copy-dependencies \
        -DoutputDirectory="$scratch"
    # The class archive that tools/brokers.py writes matches only the old jars.
    rm -rf "$KAFKA_HOME/libs" "$KAFKA_HOME/kafka-classes.jsa"
    mv "$scratch" "$KAFKA_HOME/libs"
    trap - EXIT
    touch "$LIBS_MARKER"
    log "copied $(find "$KAFKA_HOME/libs" -name '*.jar' | wc -l) jars"
}

# Optional parts (browser, chart tools, benchmark peers) add a script each to
# tools/setup.d; they run in name order after the brokers are in place.
run_extra_setup() {
    local script
    for script in "$TOOLS_DIR"/setup.d/*.sh; do
        [[ -e "$script" ]] || continue
        log "running ${script#"$TOOLS_DIR"/}"
        bash "$script"
    done
}

install_packages
copy_kafka_libs
# The demo needs only the brokers; tests and benchmarks need the rest.
if [[ "${1:-}" != "--brokers-only" ]]; then
    run_extra_setup
fi
log "done"
