"""docker-compose.yml: schema, lint, and its brokercast and producer run locally.

No Docker engine is available, so the stack is never started as a whole.
The end-to-end test runs the brokercast service (the image's command, the
service's environment and its mounted settings file) and the demo producer
(its entrypoint and environment) against the local brokers. The compose host
names kafka and redis are pointed at those brokers.
"""

from __future__ import annotations

import asyncio
import re
import signal
from pathlib import Path
from typing import Any

import yaml
from websockets.asyncio.client import connect

from tests.deploy.support import (
    COMPOSE_FILE,
    REPO,
    Dockerfile,
    ImageProcess,
    clean_environment,
    decode_json_frames,
    local_command,
    require_tool,
    run_check_command,
    run_tool,
)
from tests.helpers import receive, seconds, wait_for
from tools.brokers import KafkaBroker, RedisServer, free_port

YAMLLINT_CONFIG = Path(__file__).with_name("yamllint.yaml")


def compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(document, dict)
    return document


def test_compose_matches_specification() -> None:
    command = [require_tool("check-jsonschema"), "--builtin-schema"]
    run_tool([*command, "vendor.compose-spec", str(COMPOSE_FILE)])


def test_compose_passes_dclint() -> None:
    """dclint reports neither errors nor warnings."""
    dclint = require_tool("dclint")
    run_tool([dclint, "--max-warnings", "0", str(COMPOSE_FILE)])


def test_deployment_yaml_passes_yamllint() -> None:
    chart = REPO / "helm" / "brokercast"
    files = [
        COMPOSE_FILE,
        chart / "Chart.yaml",
        chart / "values.yaml",
        *sorted((chart / "ci").glob("*.yaml")),
        YAMLLINT_CONFIG,
    ]
    yamllint = require_tool("yamllint")
    run_tool([yamllint, "--strict", "-c", str(YAMLLINT_CONFIG), *map(str, files)])


def test_compose_images_pinned_and_dependencies_healthy() -> None:
    """Every image has a fixed tag; every awaited service has a healthcheck."""
    document = compose()
    assert document["name"] == "brokercast"
    services = document["services"]
    for service_name, service in services.items():
        if "image" in service:
            assert re.fullmatch(r"[\w./-]+:\d[\w.-]*", service["image"]), service_name
        else:
            assert service["build"]["dockerfile"] == "Dockerfile", service_name
        for dependency, rule in service.get("depends_on", {}).items():
            if rule["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], dependency
    assert services["brokercast"]["ports"] == ["127.0.0.1:3232:3232"]
    assert services["brokercast"]["stop_grace_period"] == "20s"


def compose_volume(service: dict[str, Any], target: str) -> Path:
    """Return the host file that ``service`` mounts at ``target``."""
    for volume in service["volumes"]:
        source, mounted, *_ = volume.split(":")
        if mounted == target:
            return REPO / source
    raise AssertionError(f"nothing mounted at {target}")


def point_at_local_brokers(
    text: str, kafka: KafkaBroker, redis_server: RedisServer
) -> str:
    """Replace the compose host names of Kafka and Redis with the local ones."""
    text = text.replace("redis://redis:6379/0", redis_server.url)
    return text.replace("kafka:9092", kafka.bootstrap_servers)


async def test_compose_services_deliver_demo_events(
    tmp_path: Path, kafka_broker: KafkaBroker, redis_server: RedisServer
) -> None:
    """The demo producer's events reach a client of the brokercast service.

    Stand-ins: the local brokers for the kafka and redis services, a loopback
    address and free port (BROKERCAST_HOST/PORT) for 0.0.0.0:3232, and the
    demo topic created here as the kafka-init service would.
    """
    services = compose()["services"]
    image = Dockerfile.parse()
    brokercast = services["brokercast"]
    producer = services["producer"]
    kafka_broker.create_topic("orders")

    settings = compose_volume(brokercast, image.env["BROKERCAST_CONFIG"])
    settings_file = tmp_path / "settings.toml"
    settings_file.write_text(
        point_at_local_brokers(settings.read_text(), kafka_broker, redis_server)
    )
    port = free_port()
    environment = clean_environment()
    environment.update({k: v for k, v in image.env.items() if k != "PATH"})
    environment.update({k: str(v) for k, v in brokercast["environment"].items()})
    environment.update(
        {
            "BROKERCAST_CONFIG": str(settings_file),
            "BROKERCAST_HOST": "127.0.0.1",
            "BROKERCAST_PORT": str(port),
        }
    )

    producer_environment = clean_environment()
    for key, value in producer["environment"].items():
        local = point_at_local_brokers(str(value), kafka_broker, redis_server)
        producer_environment[key] = local
    producer_environment.update({"DEMO_COUNT": "3", "DEMO_INTERVAL_SECONDS": "0.1"})
    script = compose_volume(producer, producer["entrypoint"][1])
    producer_command = local_command([producer["entrypoint"][0], str(script)])

    with ImageProcess(local_command(image.command), environment, port) as bc:
        await bc.wait_ready()
        healthcheck = [
            part.replace(":3232/", f":{port}/")
            for part in brokercast["healthcheck"]["test"][1:]
        ]
        healthy = run_check_command(healthcheck, environment)
        assert healthy.returncode == 0, healthy.stderr

        async with connect(bc.base_url + "/") as client:
            await wait_for(
                lambda: bc.metric("brokercast_clients_connected") == 1,
                seconds(5),
                "client registered",
            )
            process = await asyncio.create_subprocess_exec(
                *producer_command,
                env=producer_environment,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            output, _ = await asyncio.wait_for(process.communicate(), seconds(60))
            assert process.returncode == 0, output.decode()
            envelopes = decode_json_frames(await receive(client, 6, seconds(20)))

        assert bc.process is not None
        bc.process.send_signal(signal.SIGTERM)
        await wait_for(lambda: bc.returncode() is not None, seconds(15), "exited")
        assert bc.returncode() == 0, bc.log()

    by_source: dict[str, list[int]] = {}
    for envelope in envelopes:
        by_source.setdefault(envelope["source"], []).append(
            envelope["payload"]["sequence"]
        )
    assert by_source == {"orders": [1, 2, 3], "clicks": [1, 2, 3]}
    channels = {envelope["source"]: envelope["channel"] for envelope in envelopes}
    assert channels == {"orders": "orders", "clicks": "clicks"}
