"""The Helm chart: lint, render, Kubernetes schemas, values schema, and a run.

helm is the v4 binary that tools/setup.d/20-deploy.sh builds. Rendered
manifests are checked with kubernetes-validate against the oldest Kubernetes
version the chart supports and the newest that the package has schemas for, and the
ServiceMonitor against the Prometheus Operator CRD schema. The end-to-end
tests start brokercast with the settings file and container environment
exactly as rendered, against the local brokers.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio
import yaml
from websockets.asyncio.client import ClientConnection, connect

from service.settings import load_settings
from tests.deploy.support import (
    CHART,
    Dockerfile,
    ImageProcess,
    clean_environment,
    local_command,
    npm_dir,
    require_tool,
    run_check_command,
    run_tool,
)
from tests.helpers import http_get, produce_to_kafka, seconds, wait_for
from tools.brokers import KafkaBroker, RedisServer, free_port

VALUES_FILES = {
    "default": None,
    **{path.stem: path for path in sorted((CHART / "ci").glob("*-values.yaml"))},
}
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
#: What the secretKeyRef entries of the ci values files resolve to in tests.
#: The password looks like a number, so a missing @str prefix would show.
SECRET_STAND_INS = {
    ("kafka-credentials", "password"): "1e5",
    ("redis-credentials", "url"): "redis://:1e5@redis-master.data.svc:6379/0",
}
POD_NAME = "brokercast-5d8f7b9c4-x2x7q"


def helm(*arguments: str) -> str:
    """Run helm and return its standard output."""
    return run_tool([require_tool("helm"), *arguments]).stdout


def render(
    values_file: Path | None, *overrides: str, expect_success: bool = True
) -> str:
    """Render the chart as release "demo"; ``overrides`` are --set arguments."""
    command = [require_tool("helm"), "template", "demo", str(CHART)]
    if values_file is not None:
        command += ["--values", str(values_file)]
    for override in overrides:
        command += ["--set", override]
    result = run_tool(command, expect_success=expect_success)
    return result.stdout if expect_success else result.stderr


def manifests(rendered: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


def find(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    matches = [o for o in objects if o["kind"] == kind]
    assert len(matches) == 1, f"expected one {kind}, found {len(matches)}"
    return matches[0]


def kinds(objects: list[dict[str, Any]]) -> list[str]:
    return sorted(o["kind"] for o in objects)


@pytest.fixture(params=list(VALUES_FILES), ids=list(VALUES_FILES))
def values_file(request: pytest.FixtureRequest) -> Path | None:
    path: Path | None = VALUES_FILES[request.param]
    return path


def test_chart_lints_strict(values_file: Path | None) -> None:
    arguments = ["lint", "--strict", str(CHART)]
    if values_file is not None:
        arguments += ["--values", str(values_file)]
    output = helm(*arguments)
    assert "0 chart(s) failed" in output


def test_rendered_objects_per_values_file() -> None:
    """Optional objects appear only when their values switch them on."""
    common = ["ConfigMap", "Deployment", "Pod", "Service", "ServiceAccount"]
    assert kinds(manifests(render(VALUES_FILES["default"]))) == common
    everything = manifests(render(VALUES_FILES["all-values"]))
    optional = [
        "HorizontalPodAutoscaler",
        "Ingress",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "ServiceMonitor",
    ]
    assert kinds(everything) == sorted(common + optional)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_rendered_manifests_match_kubernetes_schemas(
    tmp_path: Path, values_file: Path | None, version: str
) -> None:
    """Every built-in object passes strict validation (unknown fields fail)."""
    path = tmp_path / "rendered.yaml"
    path.write_text(render(values_file))
    validator = require_tool("kubernetes-validate")
    result = run_tool([validator, "--strict", "-k", version, str(path)])
    unvalidated = [
        line for line in result.stdout.splitlines() if not line.startswith("INFO")
    ]
    # kubernetes-validate has no CRD schemas, so the next test checks ServiceMonitor.
    for line in unvalidated:
        assert "kind ServiceMonitor with api version monitoring.coreos.com/v1" in line


def test_service_monitor_matches_crd_schema() -> None:
    objects = manifests(render(VALUES_FILES["all-values"]))
    monitors = [o for o in objects if o["kind"] == "ServiceMonitor"]
    script = Path(__file__).with_name("validate_servicemonitor.mjs")
    module = npm_dir() / "node_modules" / "@kubernetes-models" / "prometheus-operator"
    if not module.is_dir():
        pytest.fail("prometheus-operator models missing; run the setup script")
    result = run_tool(["node", str(script), str(npm_dir())], stdin=json.dumps(monitors))
    assert result.stdout.splitlines() == ["valid: demo-brokercast"]


def test_values_files_match_schema() -> None:
    schema = CHART / "values.schema.json"
    files = [CHART / "values.yaml", *(p for p in VALUES_FILES.values() if p)]
    command = [require_tool("check-jsonschema"), "--schemafile", str(schema)]
    run_tool([*command, *map(str, files)])


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicaCount": "two"}, "'two' is not of type 'integer'"),
        ({"config": {"codex": "json"}}, "'codex' was unexpected"),
        ({"autoscaling": {"enable": True}}, "'enable' was unexpected"),
        ({"config": {"port": 4000}}, "config.port"),
        (
            {"config": {"sources": {"a": {"type": "kafka", "topic": ["x"]}}}},
            "'topic' was unexpected",
        ),
        (
            {"config": {"sources": {"a": {"type": "redis", "streams": "s", "url": 1}}}},
            "1 is not of type 'string'",
        ),
    ],
    ids=["wrong-type", "typo", "nested-typo", "chart-owned", "source-typo", "url"],
)
def test_schema_rejects_bad_values(
    tmp_path: Path, values: Mapping[str, Any], message: str
) -> None:
    """check-jsonschema and helm both reject a typo'd key or a wrong type."""
    path = tmp_path / "bad-values.yaml"
    path.write_text(yaml.safe_dump(dict(values)))
    schema = CHART / "values.schema.json"
    command = [require_tool("check-jsonschema"), "--schemafile", str(schema)]
    result = run_tool([*command, str(path)], expect_success=False)
    assert message in result.stdout
    error = render(path, expect_success=False)
    assert "values don't meet the specifications of the schema" in error


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["terminationGracePeriodSeconds=15"],
            "terminationGracePeriodSeconds=15 must be greater than "
            "config.shutdown_timeout (10) + preStopSleepSeconds (5)",
        ),
        (
            [
                "config.sources.a.type=redis",
                "config.sources.a.streams=s",
                "config.sources.a.url=redis://r:6379",
                "config.sources.a.group=g",
            ],
            "config.sources.a sets a consumer group, but with several replicas",
        ),
        (
            ["config.sources.a.type=redis", "config.sources.a.streams=s"],
            "config.sources.a has no url: set it in config, or add a "
            "secretSettings entry with setting sources.a.url",
        ),
        (
            ["metrics.serviceMonitor.enabled=true", "config.enable_metric=false"],
            "metrics.serviceMonitor.enabled needs config.enable_metric to be true",
        ),
    ],
    ids=["grace-period", "shared-group", "redis-url", "metrics-off"],
)
def test_chart_rejects_values_that_cannot_work(
    overrides: list[str], message: str
) -> None:
    error = render(None, *overrides, expect_success=False)
    assert message in error


def test_pod_spec_is_restricted_by_default() -> None:
    objects = manifests(render(None))
    pod = find(objects, "Deployment")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    context = container["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["capabilities"] == {"drop": ["ALL"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/etc/brokercast"]["readOnly"] is True
    assert "/tmp" in mounts
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["lifecycle"]["preStop"] == {"sleep": {"seconds": 5}}
    assert pod["terminationGracePeriodSeconds"] == 30
    identity = next(e for e in container["env"] if e["name"] == "BROKERCAST_ID")
    assert identity["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert find(objects, "Pod")["metadata"]["labels"]["app.kubernetes.io/name"] == (
        "brokercast-test"
    )


def test_config_change_rolls_pods() -> None:
    def checksum(*overrides: str) -> str:
        deployment = find(manifests(render(None, *overrides)), "Deployment")
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        value = annotations["checksum/config"]
        assert isinstance(value, str)
        return value

    assert checksum() == checksum()
    assert checksum() != checksum("config.codec=json")


def test_autoscaler_scales_on_cpu_and_clients() -> None:
    objects = manifests(render(VALUES_FILES["all-values"]))
    assert "replicas" not in find(objects, "Deployment")["spec"]
    metrics = find(objects, "HorizontalPodAutoscaler")["spec"]["metrics"]
    assert metrics == [
        {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 60},
            },
        },
        {
            "type": "Pods",
            "pods": {
                "metric": {"name": "brokercast_clients_connected"},
                "target": {"type": "AverageValue", "averageValue": "2000"},
            },
        },
    ]
    ingress = find(objects, "Ingress")["metadata"]["annotations"]
    assert ingress["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "3600"
    assert ingress["nginx.ingress.kubernetes.io/proxy-send-timeout"] == "3600"


class RenderedPod:
    """The brokercast container of a rendered chart, made runnable locally.

    Stand-ins for what Kubernetes would provide: ``POD_NAME`` for the pod name
    of the downward API, :data:`SECRET_STAND_INS` (plus the local Redis URL)
    for Secrets, and a folder under ``tmp_path`` for the ConfigMap mount. In
    the settings file, host becomes 127.0.0.1 and broker addresses become
    the local brokers; nothing else is changed.
    """

    def __init__(
        self,
        rendered: str,
        tmp_path: Path,
        kafka: KafkaBroker | None = None,
        redis_server: RedisServer | None = None,
    ) -> None:
        objects = manifests(rendered)
        self.deployment = find(objects, "Deployment")
        self.test_pod = find(objects, "Pod")
        pod = self.deployment["spec"]["template"]["spec"]
        self.container = pod["containers"][0]
        self.grace_period = pod["terminationGracePeriodSeconds"]
        self.pre_stop = self.container["lifecycle"]["preStop"]["sleep"]["seconds"]
        self.port = self.container["ports"][0]["containerPort"]

        data = find(objects, "ConfigMap")["data"]
        self.settings = yaml.safe_load(data["settings.yaml"])
        self.settings["host"] = "127.0.0.1"
        for source in self.settings.get("sources", {}).values():
            if source["type"] == "kafka" and kafka is not None:
                source["bootstrap_servers"] = [kafka.bootstrap_servers]
            if source["type"] == "redis" and redis_server is not None:
                source["url"] = redis_server.url
        config_dir = tmp_path / "etc-brokercast"
        config_dir.mkdir()
        (config_dir / "settings.yaml").write_text(yaml.safe_dump(self.settings))
        self.mounts = {"/etc/brokercast": str(config_dir)}

        self.secrets = dict(SECRET_STAND_INS)
        if redis_server is not None:
            self.secrets["redis-credentials", "url"] = redis_server.url
        self.environment = self._resolve(self.container["env"])

    def _resolve(self, entries: list[dict[str, Any]]) -> dict[str, str]:
        """Resolve the env list the way the kubelet does, including $(VAR)."""
        resolved: dict[str, str] = {}
        for entry in entries:
            if "value" in entry:
                value = _expand(str(entry["value"]), resolved)
                for mount, local in self.mounts.items():
                    value = value.replace(mount, local)
            elif "fieldRef" in entry["valueFrom"]:
                assert entry["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
                value = POD_NAME
            else:
                reference = entry["valueFrom"]["secretKeyRef"]
                value = self.secrets[reference["name"], reference["key"]]
            resolved[entry["name"]] = value
        return resolved

    def process(self) -> ImageProcess:
        """Return brokercast as the image runs it, with this pod's environment."""
        environment = clean_environment()
        environment.update(self.environment)
        command = local_command(Dockerfile.parse().command)
        return ImageProcess(command, environment, self.port)


def _expand(value: str, defined: Mapping[str, str]) -> str:
    """Expand $(NAME) references to earlier variables; $$ is a literal $."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return defined.get(match.group(1), match.group(0))

    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)", replace, value)


def test_rendered_settings_load(
    tmp_path: Path, values_file: Path | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """brokercast accepts the rendered file and env, secrets included.

    The settings file is used as rendered, broker addresses too; only the
    secretKeyRef and downward-API values are stand-ins.
    """
    pod = RenderedPod(render(values_file), tmp_path)
    for key in os.environ:
        if key.startswith("BROKERCAST_"):
            monkeypatch.delenv(key)
    for key, value in pod.environment.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()

    assert settings.id == POD_NAME
    assert settings.host == "127.0.0.1"
    assert settings.port == 3232
    options = {source.name: source.options for source in settings.sources}
    assert set(options) == set(pod.settings["sources"])
    secret_url = SECRET_STAND_INS["redis-credentials", "url"]
    for source_name in ("clicks", "telemetry"):
        if source_name in options:
            assert options[source_name].url == secret_url
    if "payments" in options:
        assert options["payments"].sasl_plain_username == "brokercast"
        assert options["payments"].sasl_plain_password == "1e5"
        assert options["payments"].security_protocol == "SASL_SSL"
        assert options["payments"].ssl_cafile == "/etc/brokercast-ca/ca.crt"


async def wait_for_payloads(
    client: ClientConnection, expected: set[str], timeout: float
) -> list[str]:
    """Collect payloads until every expected one arrived; ignore the rest.

    Other tests of the session write to the same broker, so frames of theirs
    may arrive too; only the order of ours is compared.
    """
    seen: list[str] = []

    async def collect() -> None:
        while not expected.issubset(seen):
            frame = await client.recv()
            assert isinstance(frame, str)
            envelope = json.loads(frame) if frame.startswith("{") else None
            payload = envelope["payload"] if envelope else frame
            if payload in expected:
                seen.append(payload)

    try:
        await asyncio.wait_for(collect(), timeout)
    except TimeoutError:
        raise AssertionError(f"received {seen} of {sorted(expected)}") from None
    return seen


async def write_events(
    pod: RenderedPod,
    kafka: KafkaBroker,
    redis_server: RedisServer,
    tag: str,
) -> dict[str, list[str]]:
    """Write three events to every channel of every source; return them."""
    written: dict[str, list[str]] = {}
    writer = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        for source_name, source in pod.settings["sources"].items():
            channels = source.get("topics") or source.get("streams")
            for channel in channels:
                values = [f"{tag}-{source_name}-{channel}-{i}" for i in range(3)]
                written[f"{source_name}/{channel}"] = values
                if source["type"] == "kafka":
                    encoded = [v.encode() for v in values]
                    await produce_to_kafka(kafka.bootstrap_servers, channel, encoded)
                else:
                    field = source.get("field", "data")
                    for value in values:
                        await writer.xadd(channel, {field: value})
    finally:
        await writer.aclose()
    return written


@pytest.mark.parametrize(
    "values_name",
    [
        "all-values",
        "redis-only-values",
    ],
)
async def test_rendered_pod_delivers_events(
    tmp_path: Path,
    kafka_broker: KafkaBroker,
    redis_server: RedisServer,
    name: str,
    values_name: str,
) -> None:
    """brokercast configured exactly as the chart renders it streams events."""
    values_file = VALUES_FILES[values_name]
    rendered = render(values_file, f"containerPort={free_port()}")
    pod = RenderedPod(rendered, tmp_path, kafka_broker, redis_server)
    for source in pod.settings["sources"].values():
        if source["type"] == "kafka":
            for topic in source["topics"]:
                kafka_broker.create_topic(topic)

    with pod.process() as bc:
        await bc.wait_ready()
        for probe in ("livenessProbe", "readinessProbe"):
            path = pod.container[probe]["httpGet"]["path"]
            status, body = bc.http(path)
            assert status == 200, (probe, body)
        await check_helm_test_pod(pod)

        async with connect(bc.base_url + "/") as client:
            await wait_for(
                lambda: bc.metric("brokercast_clients_connected") == 1,
                seconds(5),
                "client registered",
            )
            written = await write_events(pod, kafka_broker, redis_server, name)
            expected = {value for values in written.values() for value in values}
            received = await wait_for_payloads(client, expected, seconds(30))
            for values in written.values():
                assert [v for v in received if v in values] == values

            assert bc.process is not None
            bc.process.send_signal(signal.SIGTERM)
            shutdown_budget = pod.grace_period - pod.pre_stop
            await asyncio.wait_for(client.wait_closed(), seconds(shutdown_budget))
            assert client.close_code == 1001

        await wait_for(
            lambda: bc.returncode() is not None, seconds(shutdown_budget), "exited"
        )
        assert bc.returncode() == 0, bc.log()
        assert POD_NAME in bc.log()


async def check_helm_test_pod(pod: RenderedPod) -> None:
    """Run the helm test hook's command against the local process."""
    container = pod.test_pod["spec"]["containers"][0]
    url = f"http://127.0.0.1:{pod.port}/readyz"
    environment = {**clean_environment(), "READYZ_URL": url}
    rendered_url = container["env"][0]["value"]
    assert rendered_url == "http://demo-brokercast:3232/readyz"
    result = await asyncio.to_thread(
        run_check_command, container["command"], environment
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert http_get(url)[0] == 200


def test_helm_binary_is_v4() -> None:
    version = subprocess.run(
        [require_tool("helm"), "version", "--template", "{{.Version}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert version.startswith("v4."), version
