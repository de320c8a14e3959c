"""Pieces shared by the benchmark processes: the event layout and process stats.

Every benchmark event is a JSON object whose first bytes are fixed-width, so a
client reads the sequence number and the intended send time from a fixed
prefix without parsing JSON::

    {"seq":"00000000000000000042","t0":"00000001234567890123","pad":"xxx..."}

The numbers are strings because JSON forbids leading zeros and Centrifugo checks
that what it publishes is valid JSON.

``t0`` is ``time.monotonic_ns()`` of the moment the producer was due to send
the event. CLOCK_MONOTONIC is one clock for every process of a Linux host, so
``receive time - t0`` is the produce-to-receive latency, including any time the
producer itself fell behind its schedule.
"""

from __future__ import annotations

import json
import os
import resource
import sys
from dataclasses import dataclass
from typing import Any

SEQ_SLICE = slice(8, 28)
T0_SLICE = slice(36, 56)
PREFIX_BYTES = 56
_HEAD = b'{"seq":"%020d","t0":"%020d","pad":"'
_TAIL = b'"}'

#: Stream, topic and channel name every contender reads and serves.
CHANNEL = "bench"


def make_event(seq: int, t0: int, size: int) -> bytes:
    """Return one event of ``size`` bytes (at least 60) with ``seq`` and ``t0``."""
    head = _HEAD % (seq, t0)
    return head + b"x" * (size - len(head) - len(_TAIL)) + _TAIL


def raise_fd_limit() -> int:
    """Raise this process's open-file limit to its hard limit; return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def emit(record: dict[str, Any]) -> None:
    """Write one JSON line to stdout for the benchmark runner."""
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


@dataclass(frozen=True)
class CpuSample:
    """CPU seconds (user + system) a process had used at a moment."""

    cpu_seconds: float
    rss_bytes: int


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def sample_process(pid: int) -> CpuSample | None:
    """Read CPU time and RSS of ``pid`` (threads included) from /proc.

    Returns ``None`` when the process is gone.
    """
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        with open(f"/proc/{pid}/statm") as statm:
            resident = int(statm.read().split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    # Fields after the command name: utime and stime are the 12th and 13th.
    ticks = int(fields[11]) + int(fields[12])
    return CpuSample(ticks / CLOCK_TICKS, resident * PAGE_BYTES)


def machine_cpu() -> tuple[float, float, float]:
    """Return machine-wide (busy, steal, total) CPU seconds from /proc/stat."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    idle = values[3] + values[4]
    steal = values[7] if len(values) > 7 else 0
    total = sum(values[:8])
    return (total - idle) / CLOCK_TICKS, steal / CLOCK_TICKS, total / CLOCK_TICKS


def tcp_memory_pages() -> int:
    """Return the pages the kernel holds for TCP buffers (/proc/net/sockstat)."""
    with open("/proc/net/sockstat") as sockstat:
        for line in sockstat:
            if line.startswith("TCP:"):
                parts = line.split()
                return int(parts[parts.index("mem") + 1])
    return 0
