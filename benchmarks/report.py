"""Write benchmark results: JSON records, a Markdown summary and a latency plot."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

REFERENCE = "brokercast"
#: Workloads whose steps go into the capacity comparison and the plot.
FANOUT_1K = ("capacity-1k", "fanout-1k")

COLUMNS = (
    ("workload", "workload"),
    ("contender", "contender"),
    ("step", "step"),
    ("clients", "healthy_clients"),
    ("ev/s", "rate"),
    ("offered/s", "offered_per_s"),
    ("delivered/s", "delivered_per_s"),
    ("ratio", "delivered_ratio"),
    ("lost", "lost"),
    ("p50 ms", "p50_ms"),
    ("p99 ms", "p99_ms"),
    ("p99.9 ms", "p999_ms"),
    ("max ms", "max_ms"),
    ("server CPU", "server_cpu"),
    ("ms CPU/10k", "server_cpu_ms_per_10k"),
    ("server RSS MiB", "server_rss_mib"),
    ("fleet CPU", "fleet_cpu"),
    ("broker CPU", "broker_cpu"),
    ("busy", "machine_busy"),
    ("SLO", "slo_ok"),
    ("saturated", "saturated"),
)


def one_line(record: dict[str, Any]) -> str:
    """Return a short progress line for one record."""
    if record.get("kind") == "idle":
        return (
            f"{record['workload']}/{record['contender']}: "
            f"{record['rss_per_client_kib']} KiB per idle client"
        )
    return (
        f"{record['workload']}/{record['contender']} step {record.get('step')}: "
        f"{record['rate']} ev/s x {record['healthy_clients']} -> "
        f"{record['delivered_per_s']:.0f}/s ({record['delivered_ratio']:.3f}), "
        f"p99 {record['p99_ms']} ms, server CPU {record['server_cpu']:.2f}, "
        f"fleet {record['fleet_cpu']:.2f}, busy {record['machine_busy']:.2f} "
        f"{'SLO ok' if record['slo_ok'] else 'SLO missed'} {record['saturated']}"
    )


def capacity(records: Iterable[dict[str, Any]], contender: str) -> dict[str, Any]:
    """Return the best 1,000-client step within the SLO, or an empty dict."""
    best: dict[str, Any] = {}
    for record in records:
        if record.get("contender") != contender or record.get("kind") == "skipped":
            continue
        if record.get("workload") not in FANOUT_1K or not record.get("slo_ok"):
            continue
        if record["delivered_per_s"] > best.get("delivered_per_s", 0):
            best = record
    return best


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.0f}"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "-"
    return str(value)


def markdown(meta: dict[str, Any], records: list[dict[str, Any]]) -> str:
    """Return the Markdown summary of one run."""
    machine = meta["machine"]
    lines = [
        f"# Benchmark {meta['name']} ({meta['profile']} profile)",
        "",
        f"Command: `{meta['command']}`; started {meta['started']}, "
        f"{meta.get('duration_s', '?')} s.",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, Python "
        f"{machine['python']}, kernel {machine['kernel']}; load average at start "
        f"{_load(machine['load_average_at_start'])}, at end "
        f"{_load(meta.get('load_average_at_end', []))}.",
        "Steps: "
        + ", ".join(
            f"{k} {v} s" for k, v in meta["timing"].items() if k != "connect_rate"
        )
        + ". CPU is a fraction of one core (2.0 = both cores).",
        "",
        "## Capacity at SLO, 1,000 clients",
        "",
        "Highest 1,000-client step with p99 ≤ 100 ms, no loss to healthy clients "
        "and ≥ 99 % of offered deliveries received.",
        "",
        "| contender | capacity deliveries/s | p99 ms | server CPU | "
        "deliveries per CPU-s | brokercast ÷ this (capacity) | "
        "brokercast ÷ this (per CPU-s) |",
        "|---|---|---|---|---|---|---|",
    ]
    reference = capacity(records, REFERENCE)
    for contender in meta["contenders"]:
        best = capacity(records, contender)
        if not best:
            lines.append(f"| {contender} | none within SLO | | | | | |")
            continue
        ratio = _ratio(reference, best, "delivered_per_s")
        per_cpu = _ratio(reference, best, "deliveries_per_cpu_s")
        lines.append(
            f"| {contender} | {best['delivered_per_s']:,.0f} | {best['p99_ms']} | "
            f"{best['server_cpu']:.2f} | {_cell(best['deliveries_per_cpu_s'])} | "
            f"{ratio} | {per_cpu} |"
        )
    idle = [r for r in records if r.get("kind") == "idle"]
    if idle:
        lines += [
            "",
            "## Idle clients",
            "",
            "| contender | clients | KiB per client | server CPU |",
            "|---|---|---|---|",
        ]
        for record in idle:
            lines.append(
                f"| {record['contender']} | {record['connected']} | "
                f"{record['rss_per_client_kib']} | {record['server_cpu']:.3f} |"
            )
    skipped = [r for r in records if r.get("kind") == "skipped"]
    if skipped:
        lines += ["", "## Not run", ""]
        for record in skipped:
            lines.append(
                f"- {record['workload']} / {record['contender']}: {record['reason']}"
            )
    lines += ["", "## Every step", ""]
    lines.append("| " + " | ".join(title for title, _ in COLUMNS) + " |")
    lines.append("|" + "---|" * len(COLUMNS))
    for record in records:
        if record.get("kind") in ("skipped", "idle"):
            continue
        lines.append(
            "| " + " | ".join(_cell(record.get(key)) for _, key in COLUMNS) + " |"
        )
    bursts = [r for r in records if r.get("kind") == "burst"]
    if bursts:
        lines += [
            "",
            "## Bursts",
            "",
            "| contender | events | clients | drain s | "
            "max ms | lost | closed | peak RSS MiB | peak TCP buffers MiB |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in bursts:
            lines.append(
                f"| {r['contender']} | {r['events']} | {r['healthy_clients']} | "
                f"{r['drain_s']} | {_cell(r['max_ms'])} | {r['lost']} | "
                f"{r.get('healthy_closed', 0)} | {r['peak_server_rss_mib']} | "
                f"{r['peak_tcp_buffer_mib']} |"
            )
    return "\n".join(lines) + "\n"


def _load(values: Iterable[float]) -> str:
    return " / ".join(f"{v:.2f}" for v in values)


def _ratio(reference: dict[str, Any], other: dict[str, Any], key: str) -> str:
    if not reference or not other or not reference.get(key) or not other.get(key):
        return "-"
    return f"{reference[key] / other[key]:.2f}x"


def plot(meta: dict[str, Any], records: list[dict[str, Any]], path: Path) -> None:
    """Plot p99 latency against offered load, 1,000 clients, every contender."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(9, 5.5))
    for contender in meta["contenders"]:
        points = sorted(
            (r["offered_per_s"], r["p99_ms"])
            for r in records
            if r.get("contender") == contender
            and r.get("workload") in FANOUT_1K
            and r.get("p99_ms")
        )
        if points:
            axes.plot(*zip(*points, strict=True), marker="o", label=contender)
    axes.axhline(100, color="grey", linestyle="--", linewidth=1, label="SLO 100 ms")
    axes.set_yscale("log")
    axes.set_xlabel("offered deliveries/s (1,000 clients x events/s)")
    axes.set_ylabel("p99 produce-to-receive latency, ms")
    axes.set_title(f"p99 vs offered load, 1 KB events, {meta['name']}")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write(
    folder: Path, name: str, meta: dict[str, Any], records: list[dict[str, Any]]
) -> list[Path]:
    """Write ``name``.json, .md and .png into ``folder``; return the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    json_path = folder / f"{name}.json"
    json_path.write_text(json.dumps({"meta": meta, "records": records}, indent=1))
    md_path = folder / f"{name}.md"
    md_path.write_text(markdown(meta, records))
    png_path = folder / f"{name}.png"
    plot(meta, records, png_path)
    return [json_path, md_path, png_path]
