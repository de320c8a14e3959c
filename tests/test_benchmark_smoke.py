"""The benchmark command runs end to end on one tiny workload.

The full benchmark takes too long for CI; this proves that its processes
(brokers, server, producer, client fleet) start, talk and report.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_benchmark_smoke_run(tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "benchmarks.run",
        "--smoke",
        "--contenders",
        "brokercast,naive",
        "--name",
        "smoke",
        "--results",
        str(tmp_path),
        "--workdir",
        str(tmp_path / "work"),
    ]
    done = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr

    results = json.loads((tmp_path / "smoke.json").read_text())
    records = {r["contender"]: r for r in results["records"]}
    assert sorted(records) == ["brokercast", "naive"]
    for name, record in records.items():
        assert record["kind"] == "steps", (name, record)
        assert record["healthy_clients"] == 20, name
        assert record["events"] == 100, name
        assert record["delivered"] == 2_000, name
        assert record["gaps"] == 0, name
        assert record["duplicates"] == 0, name
        assert record["reordered"] == 0, name
        assert record["latency_samples"] == 2_000, name
        assert record["server_cpu"] > 0, name
    assert (tmp_path / "smoke.md").read_text().startswith("# Benchmark smoke")
    assert (tmp_path / "smoke.png").stat().st_size > 0
