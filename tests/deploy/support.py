"""Shared helpers of the deployment tests: tools, the Dockerfile, processes.

The tools come from tools/setup.d/20-deploy.sh. A missing tool fails the test
with the command that installs it, because a check that silently skips is a
check that never runs.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import pytest

from tests.helpers import Brokercast
from tools.brokers import cache_dir

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
COMPOSE_FILE = REPO / "docker-compose.yml"
CHART = REPO / "helm" / "brokercast"
SETUP_SCRIPT = "tools/setup.d/20-deploy.sh"


def require_tool(name: str) -> str:
    """Return the path of a command-line tool, or fail naming the setup script.

    helm and the npm tools live in the cache folder; the Python checkers are
    looked up on PATH and beside the running interpreter.
    """
    cached = {
        "helm": cache_dir() / "bin" / "helm",
        "dclint": cache_dir() / "npm" / "node_modules" / ".bin" / "dclint",
    }
    if name in cached:
        path = cached[name]
        if path.is_file():
            return str(path)
    else:
        beside_python = Path(sys.executable).parent / name
        if beside_python.is_file():
            return str(beside_python)
        found = shutil.which(name)
        if found is not None:
            return found
    pytest.fail(f"{name} not found; install it with: bash {SETUP_SCRIPT}")


def npm_dir() -> Path:
    """Return the cache folder that holds the npm packages of the setup script."""
    return cache_dir() / "npm"


def run_tool(
    command: Sequence[str],
    *,
    expect_success: bool = True,
    stdin: str | None = None,
    cwd: Path = REPO,
    timeout: float = 120.0,
) -> subprocess.CompletedProcess[str]:
    """Run a tool and fail with its output when the exit code is not expected."""
    result = subprocess.run(
        list(command),
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    succeeded = result.returncode == 0
    if succeeded != expect_success:
        outcome = "failed" if expect_success else "succeeded unexpectedly"
        pytest.fail(
            f"{shlex.join(command)} {outcome} (exit {result.returncode}):\n"
            f"{result.stdout}\n{result.stderr}"
        )
    return result


@dataclass
class Dockerfile:
    """The instructions of the Dockerfile's final stage that decide how it runs."""

    env: dict[str, str] = field(default_factory=dict)
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    healthcheck: list[str] = field(default_factory=list)
    user: str = ""
    expose: list[str] = field(default_factory=list)
    stopsignal: str = ""

    @classmethod
    def parse(cls, path: Path = DOCKERFILE) -> Self:
        """Read ``path``; only exec-form (JSON) ENTRYPOINT, CMD and HEALTHCHECK."""
        result = cls()
        for instruction, arguments in _instructions(path.read_text()):
            if instruction == "FROM":
                result = cls()  # a new stage starts from scratch
            elif instruction == "ENV":
                result.env.update(_env_pairs(arguments))
            elif instruction == "ENTRYPOINT":
                result.entrypoint = _exec_form(instruction, arguments)
            elif instruction == "CMD":
                result.cmd = _exec_form(instruction, arguments)
            elif instruction == "HEALTHCHECK":
                command = arguments.split(" CMD ", 1)[1]
                result.healthcheck = _exec_form(instruction, command)
            elif instruction == "USER":
                result.user = arguments
            elif instruction == "EXPOSE":
                result.expose.extend(arguments.split())
            elif instruction == "STOPSIGNAL":
                result.stopsignal = arguments
        return result

    @property
    def command(self) -> list[str]:
        """Return what the container runs: ENTRYPOINT followed by CMD."""
        return [*self.entrypoint, *self.cmd]


def _instructions(text: str) -> list[tuple[str, str]]:
    """Split a Dockerfile into (INSTRUCTION, arguments), joining continuations."""
    result: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical = pending + stripped
        pending = ""
        instruction, _, arguments = logical.partition(" ")
        result.append((instruction.upper(), " ".join(arguments.split())))
    return result


def _env_pairs(arguments: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for word in shlex.split(arguments):
        name, _, value = word.partition("=")
        pairs[name] = value
    return pairs


def _exec_form(instruction: str, arguments: str) -> list[str]:
    try:
        words = json.loads(arguments)
    except json.JSONDecodeError:
        pytest.fail(f"{instruction} is not in exec (JSON) form: {arguments}")
    assert isinstance(words, list), f"{instruction} is not a JSON list: {arguments}"
    return [str(word) for word in words]


def local_command(command: Sequence[str]) -> list[str]:
    """Return ``command`` with the image's ``python`` replaced by this interpreter.

    The interpreter running the tests has brokercast's dependencies, and the
    working directory of the process (the repository) stands in for the
    package that the image installs into its virtual environment.
    """
    assert command, "empty command"
    assert command[0] == "python", f"expected the image's python, got {command[0]}"
    return [sys.executable, *command[1:]]


def clean_environment() -> dict[str, str]:
    """Return this process's environment without any BROKERCAST_ variable."""
    return {k: v for k, v in os.environ.items() if not k.startswith("BROKERCAST_")}


class ImageProcess(Brokercast):
    """brokercast started from an exact command line and environment.

    Unlike :class:`Brokercast`, which builds its environment from a settings
    dict, this runs what a container or pod would run; ``port`` must be the
    port that the given environment or settings file makes it listen on.
    """

    def __init__(
        self, command: Sequence[str], environment: Mapping[str, str], port: int
    ) -> None:
        super().__init__()
        self.command = list(command)
        self.environment = dict(environment)
        self.port = port

    def start(self) -> Self:
        """Start the process with the repository as working directory."""
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.command,
                env=self.environment,
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self


def run_check_command(
    command: Sequence[str], environment: Mapping[str, str]
) -> subprocess.CompletedProcess[str]:
    """Run a health check or test command (``python -c ...``) and return it."""
    return subprocess.run(
        local_command(command),
        env=dict(environment),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def decode_json_frames(frames: list[Any]) -> list[dict[str, Any]]:
    """Parse the text frames of the json codec."""
    result = []
    for frame in frames:
        assert isinstance(frame, str), f"expected a text frame, got {frame!r}"
        envelope = json.loads(frame)
        assert isinstance(envelope, dict), envelope
        result.append(envelope)
    return result
