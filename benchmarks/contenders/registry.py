"""How the runner starts each contender: command, environment, URL and client mode."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.common import CHANNEL

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def bench_cache() -> Path:
    """Return where tools/setup.d/40-bench.sh puts the Node and Go peers."""
    base = os.environ.get("BROKERCAST_CACHE") or str(Path.home() / ".cache/brokercast")
    return Path(base) / "bench"


@dataclass(frozen=True)
class Launch:
    """One started contender's command line and how clients reach it."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    path: str = "/"
    #: Whether the fleet must offer permessage-deflate (so the server uses it).
    deflate: bool = False
    #: Whether clients speak Centrifugo's JSON protocol.
    centrifugo: bool = False
    #: Whether the server uses more than one thread for fan-out.
    multicore: bool = False


@dataclass(frozen=True)
class Brokers:
    """Where the brokers of this run listen."""

    redis_url: str
    redis_port: int
    kafka: str | None
    workdir: Path
    #: Redis stream key or Kafka topic of this run; fresh for every run.
    stream: str = CHANNEL


@dataclass(frozen=True)
class Contender:
    """A server under test: its name, what it reads and how to start it."""

    name: str
    description: str
    launch: Callable[[int, Brokers, str], Launch]
    #: Sources it can read: "redis" always, "kafka" for the consume-path runs.
    sources: tuple[str, ...] = ("redis",)
    #: Returns why it cannot run here, or None when it can.
    missing: Callable[[], str | None] = lambda: None


def _brokercast(port: int, brokers: Brokers, source: str) -> Launch:
    env = {
        "BROKERCAST_HOST": "127.0.0.1",
        "BROKERCAST_PORT": str(port),
        "BROKERCAST_LOG_LEVEL": "WARNING",
        "BROKERCAST_SHUTDOWN_TIMEOUT": "5",
        "BROKERCAST_SOURCES__BENCH__TYPE": source,
    }
    if source == "kafka":
        assert brokers.kafka is not None
        env["BROKERCAST_SOURCES__BENCH__BOOTSTRAP_SERVERS"] = brokers.kafka
        env["BROKERCAST_SOURCES__BENCH__TOPICS"] = json.dumps([brokers.stream])
    else:
        env["BROKERCAST_SOURCES__BENCH__URL"] = brokers.redis_url
        env["BROKERCAST_SOURCES__BENCH__STREAMS"] = json.dumps([brokers.stream])
        env["BROKERCAST_SOURCES__BENCH__FIELD"] = "data"
    return Launch([sys.executable, "-m", "service"], env)


def _python_baseline(
    module: str, *options: str
) -> Callable[[int, Brokers, str], Launch]:
    def launch(port: int, brokers: Brokers, source: str) -> Launch:
        argv = [sys.executable, "-m", f"benchmarks.contenders.{module}"]
        argv += ["--port", str(port), "--redis", brokers.redis_url]
        argv += ["--stream", brokers.stream, *options]
        return Launch(argv, deflate="deflate" in options)

    return launch


def _node(port: int, brokers: Brokers, source: str) -> Launch:
    modules = bench_cache() / "node" / "node_modules"
    argv = ["node", str(HERE / "node_ws.cjs"), str(port), str(brokers.redis_port)]
    return Launch([*argv, brokers.stream], {"NODE_PATH": str(modules)})


def _node_missing() -> str | None:
    if shutil.which("node") is None:
        return "node not found"
    if not (bench_cache() / "node/node_modules/ws/package.json").is_file():
        return "ws not installed; run tools/setup.d/40-bench.sh"
    return None


def centrifugo_binary() -> Path:
    """Return where tools/setup.d/40-bench.sh builds Centrifugo."""
    return bench_cache() / "bin" / "centrifugo"


def _centrifugo(port: int, brokers: Brokers, source: str) -> Launch:
    from benchmarks.contenders.centrifugo import write_config

    config = write_config(brokers, port, source)
    argv = [str(centrifugo_binary()), "--config", str(config)]
    return Launch(argv, path="/connection/websocket", centrifugo=True, multicore=True)


def _centrifugo_missing() -> str | None:
    if not centrifugo_binary().is_file():
        return f"{centrifugo_binary()} not built; run tools/setup.d/40-bench.sh"
    return None


CONTENDERS: dict[str, Contender] = {
    c.name: c
    for c in (
        Contender(
            "brokercast",
            "brokercast (this repository), Redis or Kafka source, defaults",
            _brokercast,
            sources=("redis", "kafka"),
        ),
        Contender(
            "naive-deflate",
            "naive await-send loop, websockets defaults, deflate negotiated, "
            "stock asyncio loop",
            _python_baseline("naive", "--compression", "deflate"),
        ),
        Contender(
            "naive",
            "naive await-send loop, compression off, stock asyncio loop",
            _python_baseline("naive", "--compression", "none"),
        ),
        Contender(
            "broadcast",
            "websockets broadcast() per event, compression off, uvloop",
            _python_baseline("broadcast"),
        ),
        Contender(
            "bare",
            "bare fan-out: picows handshake, prebuilt frames, transport.write, "
            "uvloop, no policy",
            _python_baseline("bare"),
        ),
        Contender(
            "node-ws",
            "Node + ws, minimal RESP reader, per-client send",
            _node,
            missing=_node_missing,
        ),
        Contender(
            "centrifugo",
            "Centrifugo v6 with its own Redis stream / Kafka consumer",
            _centrifugo,
            sources=("redis", "kafka"),
            missing=_centrifugo_missing,
        ),
    )
}
