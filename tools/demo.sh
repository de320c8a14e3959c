#!/usr/bin/env bash
# Set up a fresh Debian machine (as root) and run the demo: Redis, Apache Kafka,
# brokercast on 127.0.0.1:3232, a producer and a client printing what arrives.
# Extra arguments go to python -m tools.demo, e.g. tools/demo.sh --duration 20
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

python3 -m pip install --quiet --disable-pip-version-check -e .
bash tools/setup.sh --brokers-only
exec python3 -m tools.demo "$@"
