"""Run the fan-out benchmark: every contender, every workload, one command.

    python -m benchmarks.run [--quick] [--contenders a,b] [--workloads x,y]

Each (workload, contender) pair gets a fresh stream or topic, a fresh server
process, a fresh producer and a fresh client fleet. Contenders take turns
within each workload, so slow drift of a shared machine spreads over all of
them. Everything listens on 127.0.0.1 and every step is bounded in time.
Results go to ``benchmarks/results/<name>.json``, ``.md`` and ``.png``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram

from benchmarks import report
from benchmarks.common import (
    machine_cpu,
    raise_fd_limit,
    sample_process,
    tcp_memory_pages,
)
from benchmarks.contenders.registry import CONTENDERS, REPO, Brokers, Contender
from benchmarks.workloads import (
    FULL_TIMING,
    QUICK_TIMING,
    SMOKE_TIMING,
    Timing,
    Workload,
    full_workloads,
    quick_workloads,
    smoke_workloads,
)

RESULTS = Path(__file__).resolve().parent / "results"
SLO_P99_MS = 100.0
#: A step this bad ends the workload for that contender: higher rates only
#: pile up more backlog.
OVERLOAD_P99_MS = 2_000.0
OVERLOAD_RATIO = 0.9


#: brokercast counters copied into every record of its steps.
COUNTER_PREFIXES = (
    "brokercast_events_dropped_total",
    "brokercast_clients_disconnected_total",
    "brokercast_invalid_utf8_total",
)


def log(message: str) -> None:
    """Print progress to stderr."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Child:
    """A child process whose stdout carries JSON lines, read by a thread."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        log_path: Path,
        env: dict[str, str] | None = None,
        json_lines: bool = True,
    ) -> None:
        self.name = name
        self.log_path = log_path
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        environment = {**os.environ, **(env or {})}
        with log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                argv,
                cwd=REPO,
                env=environment,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE if json_lines else log_file,
                stderr=log_file,
                start_new_session=True,
            )
        if json_lines:
            threading.Thread(target=self._read, daemon=True).start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            with contextlib.suppress(ValueError):
                self.lines.put(json.loads(raw))

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        self.process.stdin.flush()

    def expect(self, key: str, timeout: float) -> dict[str, Any]:
        """Return the next JSON line that has ``key``; raise after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (
                self.process.poll() is not None and self.lines.empty()
            ):
                raise RuntimeError(
                    f"{self.name}: no '{key}' within {timeout:.0f} s; "
                    f"log {self.log_path}:\n{self.tail()}"
                )
            try:
                line = self.lines.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            if key in line:
                return line

    def tail(self, lines: int = 15) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        """Ask politely with SIGTERM, then kill the process group."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


class CpuWatch:
    """CPU seconds and RSS of a set of processes, between two samples."""

    def __init__(self, pids: dict[str, list[int]]) -> None:
        self.pids = pids
        self.before = self._sample()
        self.machine_before = machine_cpu()
        self.started = time.monotonic()

    def _sample(self) -> dict[int, tuple[float, int]]:
        result = {}
        for group in self.pids.values():
            for pid in group:
                sample = sample_process(pid)
                if sample is not None:
                    result[pid] = (sample.cpu_seconds, sample.rss_bytes)
        return result

    def finish(self) -> dict[str, Any]:
        """Return CPU fractions (1.0 = one core busy) per role and the machine's."""
        after = self._sample()
        seconds = max(1e-6, time.monotonic() - self.started)
        busy0, steal0, total0 = self.machine_before
        busy1, steal1, total1 = machine_cpu()
        result: dict[str, Any] = {"seconds": seconds}
        for role, group in self.pids.items():
            fractions = [
                (after[p][0] - self.before[p][0]) / seconds
                for p in group
                if p in after and p in self.before
            ]
            result[f"{role}_cpu"] = round(sum(fractions), 3)
            result[f"{role}_cpu_max_process"] = round(max(fractions, default=0.0), 3)
            result[f"{role}_rss_mib"] = round(
                sum(after[p][1] for p in group if p in after) / 2**20, 1
            )
        span = max(1e-6, total1 - total0)
        result["machine_busy"] = round((busy1 - busy0) / span, 3)
        result["machine_steal"] = round((steal1 - steal0) / span, 3)
        return result


class Runner:
    """Runs the selected workloads against the selected contenders."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.timing: Timing = args.timing
        self.workdir = Path(args.workdir)
        #: brokercast's /metrics while it is the server under test, else "".
        self.metrics_url = ""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.records: list[dict[str, Any]] = []
        self.unavailable: dict[str, str] = {}
        self.redis: Any = None
        self.kafka: Any = None

    # -- brokers -----------------------------------------------------------

    @contextlib.contextmanager
    def brokers(self, need_kafka: bool) -> Iterator[None]:
        from tools.brokers import KafkaBroker, RedisServer

        with contextlib.ExitStack() as stack:
            self.redis = stack.enter_context(RedisServer())
            log(f"redis on {self.redis.url}")
            if need_kafka:
                try:
                    self.kafka = stack.enter_context(KafkaBroker(num_partitions=1))
                    log(f"kafka on {self.kafka.bootstrap_servers}")
                except Exception as error:
                    self.unavailable["kafka"] = str(error).splitlines()[0]
                    log(f"kafka unavailable: {error}")
            yield

    def run_brokers(self, stream: str) -> Brokers:
        return Brokers(
            redis_url=self.redis.url,
            redis_port=self.redis.port,
            kafka=self.kafka.bootstrap_servers if self.kafka else None,
            workdir=self.workdir,
            stream=stream,
        )

    # -- one (workload, contender) pair ------------------------------------

    def run_pair(self, workload: Workload, contender: Contender) -> None:
        stream = f"bench-{uuid.uuid4().hex[:8]}"
        if workload.source == "kafka":
            if self.kafka is None:
                self._skip(workload, contender, "kafka broker unavailable")
                return
            self.kafka.create_topic(stream, partitions=1)
        brokers = self.run_brokers(stream)
        port = free_port()
        launch = contender.launch(port, brokers, workload.source)
        tag = f"{workload.name}-{contender.name}"
        server = Child(
            contender.name,
            launch.argv,
            self.workdir / f"{tag}-server.log",
            launch.env,
            json_lines=False,
        )
        children: list[Child] = [server]
        self.metrics_url = (
            f"http://127.0.0.1:{port}/metrics" if contender.name == "brokercast" else ""
        )
        try:
            self._pin(server.pid, 0)
            self._wait_serving(server, port, contender.name == "brokercast")
            time.sleep(1.0)
            base_rss = self._rss(server.pid)
            fleets = self._start_fleets(workload, launch, port, tag)
            children += fleets
            ready = [f.expect("ready", self._connect_timeout(workload)) for f in fleets]
            connected = sum(r["ready"] for r in ready)
            errors = sum(r["connect_errors"] for r in ready)
            log(f"{tag}: {connected} clients connected, {errors} failed")
            context = {
                "contender": contender.name,
                "workload": workload.name,
                "source": workload.source,
                "clients": workload.clients,
                "connected": connected,
                "connect_errors": errors,
                "multicore_server": launch.multicore,
            }
            if workload.kind == "idle":
                self._idle(server, fleets, base_rss, context)
                return
            producer = self._start_producer(workload, brokers, tag)
            children.append(producer)
            roles = self._roles(server, fleets, producer)
            if workload.kind == "burst":
                self._burst(workload, server, fleets, producer, roles, context)
            else:
                self._steps(workload, server, fleets, producer, roles, context)
        except RuntimeError as error:
            log(f"{tag}: failed: {error}")
            self._skip(workload, contender, str(error).splitlines()[0])
        finally:
            for child in reversed(children):
                if child is not server:
                    with contextlib.suppress(BrokenPipeError, OSError):
                        child.send("quit")
            for child in reversed(children):
                child.stop()

    def _pin(self, pid: int, cpu: int) -> None:
        if self.args.pin:
            os.sched_setaffinity(pid, {cpu})

    def _rss(self, pid: int) -> int:
        sample = sample_process(pid)
        return sample.rss_bytes if sample else 0

    def _wait_serving(self, server: Child, port: int, readyz: bool) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise RuntimeError(f"server exited:\n{server.tail()}")
            if readyz:
                with contextlib.suppress(OSError):
                    url = f"http://127.0.0.1:{port}/readyz"
                    with urllib.request.urlopen(url, timeout=2) as response:
                        if response.status == 200:
                            return
            else:
                with contextlib.suppress(OSError):
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    return
            time.sleep(0.1)
        raise RuntimeError(f"server not serving after 60 s:\n{server.tail()}")

    def _fleet_count(self, workload: Workload) -> int:
        return 1 if workload.clients < 1_000 else self.args.fleet_processes

    def _start_fleets(
        self, workload: Workload, launch: Any, port: int, tag: str
    ) -> list[Child]:
        count = self._fleet_count(workload)
        clients = workload.clients
        # Every latency sample costs fleet CPU, so large fleets sample a subset.
        sample_every = 1
        if clients > 100:
            sample_every = 10
        if clients > 1_000:
            sample_every = 50
        fleets = []
        for index in range(count):
            share = clients // count + (1 if index < clients % count else 0)
            argv = [
                sys.executable,
                "-m",
                "benchmarks.fleet",
                "--url",
                f"ws://127.0.0.1:{port}{launch.path}",
                "--clients",
                str(share),
                "--connect-rate",
                str(self.timing.connect_rate),
                "--sample-every",
                str(sample_every),
                "--stalled",
                str(workload.stalled // count + (index < workload.stalled % count)),
                "--seed",
                str(index),
            ]
            if workload.churn_rate:
                argv += ["--churn-rate", str(workload.churn_rate / count)]
            if launch.deflate:
                argv.append("--deflate")
            if launch.centrifugo:
                argv.append("--centrifugo")
            fleet = Child(f"fleet{index}", argv, self.workdir / f"{tag}-fleet.log")
            self._pin(fleet.pid, 1)
            fleets.append(fleet)
        return fleets

    def _connect_timeout(self, workload: Workload) -> float:
        share = workload.clients / self._fleet_count(workload)
        return 60 + 3 * share / self.timing.connect_rate

    def _start_producer(self, workload: Workload, brokers: Brokers, tag: str) -> Child:
        argv = [sys.executable, "-m", "benchmarks.producer", "--stream", brokers.stream]
        if workload.source == "kafka":
            argv += ["--kafka", str(brokers.kafka)]
        else:
            argv += ["--redis", brokers.redis_url]
        producer = Child("producer", argv, self.workdir / f"{tag}-producer.log")
        self._pin(producer.pid, 1)
        producer.expect("ready", 60)
        return producer

    def _roles(
        self, server: Child, fleets: list[Child], producer: Child
    ) -> dict[str, list[int]]:
        roles = {
            "server": [server.pid],
            "fleet": [f.pid for f in fleets],
            "producer": [producer.pid],
        }
        roles["broker"] = [self.redis.pid]
        if self.kafka is not None:
            roles["broker"].append(self.kafka.pid)
        return roles

    # -- workload kinds ------------------------------------------------------

    def _idle(
        self,
        server: Child,
        fleets: list[Child],
        base_rss: int,
        context: dict[str, Any],
    ) -> None:
        time.sleep(2.0)
        watch = CpuWatch({"server": [server.pid], "fleet": [f.pid for f in fleets]})
        time.sleep(max(3.0, self.timing.measure / 2))
        usage = watch.finish()
        rss = self._rss(server.pid)
        connected = max(1, context["connected"])
        record = {
            **context,
            "step": 0,
            "kind": "idle",
            "server_rss_base_mib": round(base_rss / 2**20, 1),
            "rss_per_client_kib": round((rss - base_rss) / connected / 1024, 2),
            **usage,
        }
        self._add(record)

    def _steps(
        self,
        workload: Workload,
        server: Child,
        fleets: list[Child],
        producer: Child,
        roles: dict[str, list[int]],
        context: dict[str, Any],
    ) -> None:
        rates = list(workload.rates)
        if workload.kind == "capacity":
            rates = [
                workload.start_rate * workload.factor**k
                for k in range(workload.max_steps)
            ]
        for step, rate in enumerate(rates):
            record = self._steady_step(
                round(rate, 1),
                workload.measure or self.timing.measure,
                server,
                fleets,
                producer,
                roles,
                context,
            )
            record["step"] = step
            record["kind"] = workload.kind
            self._add(record)
            if workload.kind == "capacity" and not record["slo_ok"]:
                break
            if workload.stalled and step == len(rates) - 1:
                record.update(self._release(fleets, server))
                if self.metrics_url:
                    record["server_counters_after_release"] = self._counters()
            if (
                record["delivered_ratio"] < OVERLOAD_RATIO
                or (record["p99_ms"] or 0) > OVERLOAD_P99_MS
            ):
                log(f"{context['workload']}/{context['contender']}: overloaded")
                break

    def _release(self, fleets: list[Child], server: Child) -> dict[str, Any]:
        """Record server RSS, then let the stalled clients read again."""
        rss = round(self._rss(server.pid) / 2**20, 1)
        for fleet in fleets:
            fleet.send(f"release {self.timing.settle * 4}")
        results = [f.expect("released", self.timing.settle * 4 + 60) for f in fleets]
        return {
            "server_rss_with_stalled_mib": rss,
            "stalled": sum(r["released"] for r in results),
            "stalled_closed": sum(r["stalled_closed"] for r in results),
            "stalled_caught_up": sum(r["stalled_caught_up"] for r in results),
            "stalled_close_codes": sorted(
                {c for r in results for c in r["stalled_close_codes"]}
            ),
        }

    def _steady_step(
        self,
        rate: float,
        measure: float,
        server: Child,
        fleets: list[Child],
        producer: Child,
        roles: dict[str, list[int]],
        context: dict[str, Any],
    ) -> dict[str, Any]:
        timing = self.timing
        producer.send(f"run {rate} {timing.warm} {measure}")
        lo, hi = producer.expect("window", 30)["window"]
        for fleet in fleets:
            fleet.send(f"window {lo} {hi}")
        time.sleep(timing.warm)
        watch = CpuWatch(roles)
        profiler = self._profile(server, context, rate)
        time.sleep(measure)
        usage = watch.finish()
        if profiler is not None:
            profiler.wait(30)
        done = producer.expect("done", timing.warm + measure + 120)
        stats = self._collect(fleets, timing.settle)
        context = {**context, "measure_s": measure}
        return self._record(context, rate, hi - lo + 1, usage, stats, done, server)

    def _profile(
        self, server: Child, context: dict[str, Any], rate: float
    ) -> subprocess.Popen[bytes] | None:
        """Sample the server with py-spy during the window, when asked to."""
        if context["contender"] not in self.args.py_spy.split(","):
            return None
        name = f"{context['workload']}-{context['contender']}-{rate:g}.txt"
        command = ["py-spy", "record", "--pid", str(server.pid), "--format", "raw"]
        command += ["--duration", str(int(self.timing.measure)), "--nonblocking"]
        command += ["--output", str(self.workdir / name)]
        return subprocess.Popen(command, stdout=subprocess.DEVNULL)

    def _burst(
        self,
        workload: Workload,
        server: Child,
        fleets: list[Child],
        producer: Child,
        roles: dict[str, list[int]],
        context: dict[str, Any],
    ) -> None:
        time.sleep(1.0)
        watch = CpuWatch(roles)
        peak_rss = 0
        peak_tcp_pages = 0
        producer.send(f"burst {workload.burst}")
        lo, hi = producer.expect("window", 30)["window"]
        for fleet in fleets:
            fleet.send(f"window {lo} {hi}")
        for fleet in fleets:
            fleet.send(f"collect {self.args.burst_timeout}")
        done = producer.expect("done", 120)
        results = []
        deadline = time.monotonic() + self.args.burst_timeout + 30
        for fleet in fleets:
            while True:
                peak_rss = max(peak_rss, self._rss(server.pid))
                peak_tcp_pages = max(peak_tcp_pages, tcp_memory_pages())
                with contextlib.suppress(queue.Empty):
                    line = fleet.lines.get(timeout=0.25)
                    if "delivered" in line:
                        results.append(line)
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{fleet.name}: no burst result")
        usage = watch.finish()
        stats = self._merge(results)
        record = self._record(context, 0.0, hi - lo + 1, usage, stats, done, server)
        record.update(
            step=0,
            kind="burst",
            drain_s=round(usage["seconds"], 2),
            peak_server_rss_mib=round(peak_rss / 2**20, 1),
            peak_tcp_buffer_mib=round(peak_tcp_pages * 4096 / 2**20, 1),
        )
        self._add(record)

    # -- results -------------------------------------------------------------

    def _collect(self, fleets: list[Child], settle: float) -> dict[str, Any]:
        for fleet in fleets:
            fleet.send(f"collect {settle}")
        return self._merge([f.expect("delivered", settle + 60) for f in fleets])

    @staticmethod
    def _merge(results: list[dict[str, Any]]) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        histogram = HdrHistogram(1, 600_000_000, 3)
        for result in results:
            histogram.decode_and_add(result["histogram"])
            for key, value in result.items():
                if isinstance(value, int):
                    merged[key] = merged.get(key, 0) + value
                elif key == "close_codes":
                    merged[key] = sorted(set(merged.get(key, [])) | set(value))
                elif key == "error_sample" and value:
                    merged[key] = value
        count = histogram.get_total_count()

        def at(percentile: float) -> float | None:
            if not count:
                return None
            return round(histogram.get_value_at_percentile(percentile) / 1000, 2)

        merged.update(
            latency_samples=count,
            p50_ms=at(50),
            p99_ms=at(99),
            p999_ms=at(99.9),
            max_ms=round(histogram.get_max_value() / 1000, 2) if count else None,
        )
        return merged

    def _record(
        self,
        context: dict[str, Any],
        rate: float,
        events: int,
        usage: dict[str, Any],
        stats: dict[str, Any],
        done: dict[str, Any],
        server: Child,
    ) -> dict[str, Any]:
        measure = context.get("measure_s", self.timing.measure)
        healthy = stats.get("healthy", 0)
        expected = stats.get("expected", 0)
        delivered = stats.get("delivered", 0)
        ratio = delivered / expected if expected else 0.0
        server_cpu = usage["server_cpu"]
        per_s = delivered / measure if rate else delivered / usage["seconds"]
        lost = max(0, expected - delivered)
        p99 = stats.get("p99_ms")
        record = {
            **context,
            "rate": rate,
            "events": events,
            "healthy_clients": healthy,
            "offered_per_s": round(rate * healthy, 1),
            "delivered_per_s": round(per_s, 1),
            "delivered_ratio": round(ratio, 5),
            "lost": lost,
            **{k: v for k, v in stats.items() if k not in ("expected", "histogram")},
            "server_cpu_ms_per_10k": (
                round(server_cpu * measure * 1000 / delivered * 10_000, 2)
                if delivered and rate
                else None
            ),
            "deliveries_per_cpu_s": round(per_s / server_cpu) if server_cpu else None,
            "producer_behind_ms": done.get("behind_ms"),
            **usage,
        }
        record["saturated"] = self._saturation(record)
        record["slo_ok"] = bool(
            p99 is not None
            and p99 <= SLO_P99_MS
            and lost == 0
            and stats.get("gaps", 0) == 0
            and ratio >= 0.99
        )
        if server.process.poll() is not None:
            record["server_exited"] = server.process.returncode
        elif self.metrics_url:
            record["server_counters"] = self._counters()
        return record

    def _counters(self) -> dict[str, float]:
        """Read brokercast's drop and disconnect counters (totals since start)."""
        try:
            with urllib.request.urlopen(self.metrics_url, timeout=5) as response:
                text = response.read().decode()
        except OSError as error:
            log(f"metrics unreadable: {error}")
            return {}
        counters = {}
        for line in text.splitlines():
            if line.startswith(COUNTER_PREFIXES):
                series, _, value = line.rpartition(" ")
                counters[series.removeprefix("brokercast_")] = float(value)
        return counters

    def _saturation(self, record: dict[str, Any]) -> list[str]:
        flags = []
        server_cores = 2.0 if record.get("multicore_server") else 1.0
        if record["server_cpu"] >= 0.95 * server_cores:
            flags.append("server")
        for role in ("fleet", "producer", "broker"):
            if record.get(f"{role}_cpu_max_process", 0) >= 0.9:
                flags.append(role)
        if record["machine_busy"] >= 0.95:
            flags.append("machine")
        return flags

    def _add(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        log(report.one_line(record))

    def _skip(self, workload: Workload, contender: Contender, reason: str) -> None:
        self.records.append(
            {
                "contender": contender.name,
                "workload": workload.name,
                "step": 0,
                "kind": "skipped",
                "reason": reason,
            }
        )

    # -- the whole run -------------------------------------------------------

    def run(self, workloads: list[Workload], contenders: list[Contender]) -> None:
        need_kafka = any(w.source == "kafka" for w in workloads)
        with self.brokers(need_kafka):
            for repeat in range(self.args.repeat):
                for workload in workloads:
                    order = contenders if repeat % 2 == 0 else contenders[::-1]
                    for contender in order:
                        reason = contender.missing()
                        if workload.source not in contender.sources:
                            continue
                        if reason is not None:
                            self._skip(workload, contender, reason)
                            continue
                        log(f"== {workload.name} / {contender.name}")
                        self.run_pair(workload, contender)


def machine_description() -> dict[str, Any]:
    """Return what the results depend on: CPU, cores, load, versions."""
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = {}
    for module in ("websockets", "uvloop", "picows", "redis", "aiokafka", "orjson"):
        with contextlib.suppress(Exception):
            versions[module] = __import__(module).__version__
    with contextlib.suppress(Exception):
        node = subprocess.run(["node", "--version"], capture_output=True, text=True)
        versions["node"] = node.stdout.strip()
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "versions": versions,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="the short profile")
    parser.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--contenders",
        default=",".join(CONTENDERS),
        help="comma-separated; default: %(default)s",
    )
    parser.add_argument(
        "--workloads", default="", help="comma-separated names; default: all"
    )
    parser.add_argument("--name", default="", help="results file name")
    parser.add_argument("--repeat", type=int, default=1, help="rounds (A B, B A …)")
    parser.add_argument(
        "--fleet-processes", type=int, default=2, help="client processes for ≥1k"
    )
    parser.add_argument(
        "--pin", action="store_true", help="server on CPU 0, the rest on CPU 1"
    )
    parser.add_argument(
        "--py-spy",
        default="",
        help="comma-separated contenders to sample with py-spy during each step; "
        "collapsed stacks go to the work folder",
    )
    parser.add_argument("--warm", type=float, help="override warm-up seconds")
    parser.add_argument("--measure", type=float, help="override window seconds")
    parser.add_argument("--burst-timeout", type=float, default=120.0, help="seconds")
    parser.add_argument("--workdir", default="", help="logs and configs go here")
    parser.add_argument("--results", default=str(RESULTS), help="output folder")
    args = parser.parse_args(argv)
    if args.smoke:
        args.timing, profile = SMOKE_TIMING, "smoke"
    elif args.quick:
        args.timing, profile = QUICK_TIMING, "quick"
    else:
        args.timing, profile = FULL_TIMING, "full"
    if args.warm is not None:
        args.timing = replace(args.timing, warm=args.warm)
    if args.measure is not None:
        args.timing = replace(args.timing, measure=args.measure)
    args.profile = profile
    args.name = args.name or f"{profile}-{time.strftime('%Y%m%d-%H%M%S')}"
    args.workdir = args.workdir or f"/tmp/brokercast-bench-{args.name}"
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write the results; return the exit code."""
    args = parse_args(argv)
    raise_fd_limit()
    if args.smoke:
        workloads = smoke_workloads()
    elif args.quick:
        workloads = quick_workloads()
    else:
        workloads = full_workloads()
    if args.workloads:
        wanted = args.workloads.split(",")
        unknown = set(wanted) - {w.name for w in workloads}
        if unknown:
            print(f"unknown workloads: {', '.join(sorted(unknown))}", file=sys.stderr)
            return 2
        workloads = [w for w in workloads if w.name in wanted]
    names = args.contenders.split(",")
    unknown = set(names) - set(CONTENDERS)
    if unknown:
        print(f"unknown contenders: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    contenders = [CONTENDERS[n] for n in names]
    meta = {
        "name": args.name,
        "profile": args.profile,
        "command": " ".join(["python -m benchmarks.run", *(argv or sys.argv[1:])]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "timing": asdict(args.timing),
        "machine": machine_description(),
        "contenders": {c.name: c.description for c in contenders},
        "workloads": {w.name: w.description for w in workloads},
        "slo": {"p99_ms": SLO_P99_MS, "min_delivered_ratio": 0.99, "loss": 0},
    }
    runner = Runner(args)
    began = time.monotonic()
    try:
        runner.run(workloads, contenders)
    finally:
        meta["duration_s"] = round(time.monotonic() - began)
        meta["load_average_at_end"] = os.getloadavg()
        paths = report.write(Path(args.results), args.name, meta, runner.records)
        log("results: " + ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
