"""The workloads of the full and the quick profile.

Rates are events per second; every event goes to every client, so the offered
deliveries per second are rate x healthy clients. Events are 1,000-byte JSON.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Timing:
    """Seconds per steady step: warm-up (not counted) and the measured window."""

    warm: float
    measure: float
    #: Seconds the fleet may take after the last event to receive the rest.
    settle: float
    #: Connections opened per second per fleet process.
    connect_rate: float


@dataclass(frozen=True)
class Workload:
    """One scenario, run once per contender."""

    name: str
    description: str
    clients: int
    rates: tuple[float, ...] = ()
    #: "steps" (fixed rates), "capacity" (rising rates until the SLO fails),
    #: "burst" (a backlog sent at once) or "idle" (connect, no events).
    kind: str = "steps"
    source: str = "redis"
    stalled: int = 0
    churn_rate: float = 0.0
    burst: int = 0
    #: Capacity search: first rate, factor between steps, most steps.
    start_rate: float = 0.0
    factor: float = 1.15
    max_steps: int = 0
    #: Seconds of the measured window, when the profile's would be too short.
    measure: float | None = None


FULL_TIMING = Timing(warm=5.0, measure=20.0, settle=5.0, connect_rate=500.0)
QUICK_TIMING = Timing(warm=2.0, measure=4.0, settle=3.0, connect_rate=1000.0)


def full_workloads() -> list[Workload]:
    """Return the full profile (about 15 minutes per contender)."""
    return [
        Workload(
            "consume-redis",
            "1 client, Redis stream, max rate (consume path)",
            1,
            (2_000, 10_000, 25_000, 50_000),
        ),
        Workload(
            "consume-kafka",
            "1 client, Kafka topic, max rate (consume path)",
            1,
            (2_000, 10_000, 25_000),
            source="kafka",
        ),
        Workload("fanout-100", "100 clients", 100, (100, 500, 1_000, 2_000)),
        Workload("fanout-1k", "1,000 clients", 1_000, (10, 50, 100, 200)),
        Workload("fanout-5k", "5,000 clients", 5_000, (1, 10, 20, 40)),
        Workload(
            "capacity-1k",
            "1,000 clients, rate x1.15 per step until p99 > 100 ms or loss",
            1_000,
            kind="capacity",
            start_rate=20,
            factor=1.15,
            max_steps=22,
        ),
        Workload(
            "burst-1k",
            "1,000 clients, 10,000-event backlog written at once",
            1_000,
            kind="burst",
            burst=10_000,
        ),
        # 60 s: a stalled client first fills the kernel's socket buffers (up
        # to the tcp_wmem maximum, 4 MiB by default) before the server's own
        # queue for it grows, so a shorter window never reaches the 1 MiB cap.
        Workload(
            "stall-1k",
            "1,000 clients at 100 ev/s, 1 % never read",
            1_000,
            (100,),
            stalled=10,
            measure=60.0,
        ),
        Workload(
            "churn-1k",
            "1,000 clients at 100 ev/s plus 50 connects and 50 disconnects per s",
            1_000,
            (100,),
            churn_rate=50,
        ),
        Workload("idle-5k", "5,000 idle clients: RSS per client", 5_000, kind="idle"),
    ]


def quick_workloads() -> list[Workload]:
    """Return the quick profile (about a minute per contender)."""
    return [
        Workload("consume-redis", "1 client, Redis stream", 1, (5_000,)),
        Workload("consume-kafka", "1 client, Kafka topic", 1, (5_000,), source="kafka"),
        Workload("fanout-1k", "1,000 clients", 1_000, (100,)),
        Workload("fanout-5k", "5,000 clients", 5_000, (20,)),
        Workload(
            "capacity-1k",
            "1,000 clients, rate x1.4 per step until p99 > 100 ms or loss",
            1_000,
            kind="capacity",
            start_rate=30,
            factor=1.4,
            max_steps=5,
        ),
        Workload(
            "burst-100",
            "100 clients, 10,000-event backlog written at once",
            100,
            kind="burst",
            burst=10_000,
        ),
        Workload(
            "stall-1k",
            "1,000 clients at 100 ev/s, 1 % never read",
            1_000,
            (100,),
            stalled=10,
        ),
        Workload(
            "churn-1k",
            "1,000 clients at 100 ev/s plus 50 connects and 50 disconnects per s",
            1_000,
            (100,),
            churn_rate=50,
        ),
        Workload("idle-2k", "2,000 idle clients: RSS per client", 2_000, kind="idle"),
    ]


def smoke_workloads() -> list[Workload]:
    """Return one tiny workload, for the test that proves the harness works."""
    return [Workload("smoke", "20 clients at 50 ev/s", 20, (50,))]


SMOKE_TIMING = Timing(warm=1.0, measure=2.0, settle=3.0, connect_rate=1000.0)
