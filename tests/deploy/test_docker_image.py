"""The Dockerfile: lint, pins, and the image's exact command run outside Docker.

No Docker engine is available to the tests, so the image is never built here.
What the image would run is read from the Dockerfile (ENTRYPOINT, CMD, ENV,
HEALTHCHECK) and started with this interpreter against the real brokers.
"""

from __future__ import annotations

import asyncio
import signal
import tomllib
from pathlib import Path

import redis.asyncio
from packaging.markers import default_environment
from packaging.requirements import Requirement
from websockets.asyncio.client import connect

from tests.deploy.support import (
    DOCKERFILE,
    REPO,
    Dockerfile,
    ImageProcess,
    clean_environment,
    local_command,
    require_tool,
    run_check_command,
    run_tool,
)
from tests.helpers import produce_to_kafka, receive, seconds, wait_for
from tools.brokers import KafkaBroker, RedisServer, free_port

MOUNT_POINT = "/etc/brokercast/settings.toml"


def test_dockerfile_passes_hadolint() -> None:
    result = run_tool([require_tool("hadolint"), str(DOCKERFILE)])
    assert result.stdout == ""


def test_dockerfile_runtime_contract() -> None:
    """The final stage runs brokercast as a numeric non-root user on 3232."""
    image = Dockerfile.parse()
    assert image.command == ["python", "-m", "service"]
    assert image.user == "10001:10001"
    assert image.expose == ["3232"]
    assert image.stopsignal == "SIGTERM"
    assert image.env["PYTHONUNBUFFERED"] == "1"
    assert image.env["BROKERCAST_CONFIG"] == MOUNT_POINT
    assert image.healthcheck[:2] == ["python", "-c"]


def test_dockerignore_keeps_what_copy_needs() -> None:
    """The build context contains exactly the files the COPY lines name."""
    lines = (REPO / ".dockerignore").read_text().splitlines()
    patterns = [line for line in lines if line and not line.startswith("#")]
    assert patterns[0] == "*"
    included = {line[1:].rstrip("/") for line in patterns if line.startswith("!")}
    assert included == {
        "docker/requirements.txt",
        "docker/settings.toml",
        "pyproject.toml",
        "README.md",
        "service",
    }
    for path in included:
        assert (REPO / path).exists(), path


def test_pinned_requirements_satisfy_pyproject() -> None:
    """docker/requirements.txt pins every dependency within pyproject's ranges."""
    pins: dict[str, str] = {}
    for line in (REPO / "docker" / "requirements.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"not pinned with ==: {line}"
            pins[_normalise(name)] = version

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    # The image is CPython 3.11 on Linux, whatever runs the tests.
    image_environment = {
        **default_environment(),
        "sys_platform": "linux",
        "platform_system": "Linux",
        "python_version": "3.11",
    }
    for text in project["dependencies"]:
        requirement = Requirement(text)
        if requirement.marker and not requirement.marker.evaluate(image_environment):
            continue
        name = _normalise(requirement.name)
        assert name in pins, f"{requirement.name} is not pinned"
        assert requirement.specifier.contains(pins[name]), (
            f"{name}=={pins[name]} is outside {requirement.specifier}"
        )


def _normalise(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


async def test_image_command_streams_and_stops_cleanly(
    tmp_path: Path, kafka_broker: KafkaBroker, redis_server: RedisServer, name: str
) -> None:
    """ENTRYPOINT with the image's ENV and settings file delivers events.

    Stand-ins for what Docker would provide: this interpreter for the image's
    python and a copy of docker/settings.toml for the file at BROKERCAST_CONFIG.
    BROKERCAST_HOST/PORT select a loopback address and a free port, set the
    way an operator passes settings with docker run -e.
    """
    image = Dockerfile.parse()
    settings_file = tmp_path / "settings.toml"
    settings_file.write_text((REPO / "docker" / "settings.toml").read_text())
    kafka_broker.create_topic(name)

    port = free_port()
    environment = clean_environment()
    environment.update({k: v for k, v in image.env.items() if k != "PATH"})
    environment.update(
        {
            "BROKERCAST_CONFIG": str(settings_file),
            "BROKERCAST_HOST": "127.0.0.1",
            "BROKERCAST_PORT": str(port),
            "BROKERCAST_SOURCES__ORDERS__TYPE": "kafka",
            "BROKERCAST_SOURCES__ORDERS__BOOTSTRAP_SERVERS": (
                kafka_broker.bootstrap_servers
            ),
            "BROKERCAST_SOURCES__ORDERS__TOPICS": f'["{name}"]',
            "BROKERCAST_SOURCES__ORDERS__START": "earliest",
            "BROKERCAST_SOURCES__CLICKS__TYPE": "redis",
            "BROKERCAST_SOURCES__CLICKS__URL": redis_server.url,
            "BROKERCAST_SOURCES__CLICKS__STREAMS": f'["{name}"]',
        }
    )

    with ImageProcess(local_command(image.command), environment, port) as bc:
        await bc.wait_ready()
        healthy = run_check_command(image.healthcheck, environment)
        assert healthy.returncode == 0, healthy.stderr

        async with connect(f"{bc.base_url}/{name}") as client:
            await wait_for(
                lambda: bc.metric("brokercast_clients_connected") == 1,
                seconds(5),
                "client registered",
            )
            await produce_to_kafka(
                kafka_broker.bootstrap_servers, name, [b"k1", b"k2", b"k3"]
            )
            kafka_frames = await receive(client, 3, seconds(20))
            assert kafka_frames == ["k1", "k2", "k3"]

            writer = redis.asyncio.Redis.from_url(redis_server.url)
            for value in (b"r1", b"r2", b"r3"):
                await writer.xadd(name, {"data": value})
            await writer.aclose()
            redis_frames = await receive(client, 3, seconds(20))
            assert redis_frames == ["r1", "r2", "r3"]

            assert bc.process is not None
            bc.process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(client.wait_closed(), seconds(15))
            assert client.close_code == 1001

        await wait_for(
            lambda: bc.returncode() is not None, seconds(15), "brokercast exited"
        )
        assert bc.returncode() == 0, bc.log()
        assert "Traceback" not in bc.log()

    unhealthy = run_check_command(image.healthcheck, environment)
    assert unhealthy.returncode != 0
