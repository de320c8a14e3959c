#!/usr/bin/env bash
# Set up a fresh Debian machine (as root) and run every check: formatting,
# lint, types and the test suite against real Redis and Apache Kafka.
# Extra arguments go to pytest, e.g. tools/test.sh -k redis -x
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

python3 -m pip install --quiet --disable-pip-version-check -e '.[dev]'
bash tools/setup.sh

echo "test: ruff format --check"
ruff format --check service tests tools benchmarks
echo "test: ruff check"
ruff check service tests tools benchmarks
echo "test: mypy --strict service"
mypy --strict service
echo "test: pytest"
python3 -m pytest "$@"
