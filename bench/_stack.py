"""What the benchmarks share: a stack of their own, the machine's description, and where
the figures go (docs/benchmarks.md).

Importing this module also puts tests/stack on sys.path, so a benchmark can import the
stack tests' protocol helpers (`mailtools`) next to it.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import uuid
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "stack"))
from mailtools import PUBLISHED_PORTS, free_ports, wait_for  # noqa: E402

REPORT = REPO / "docs" / "benchmarks.md"
REPORT_HEADER = (
    "# Benchmarks\n\nFigures written by the scripts in `bench/`; each section says how "
    "to rerun it. Machines are shared and noisy: compare figures from the same run. "
    "Sections are appended: a later section of the same name supersedes an earlier one, "
    "which stays as the record of the code it measured.\n\n"
)


def compose_command() -> list[str]:
    """Compose v2. Debian has only docker-compose 1.29, which counts services of inactive
    profiles and would make a bench wait for containers that never start; scripts/test
    installs v2 under .cache/docker, used here when the environment does not name it."""

    def v2_available() -> bool:
        probe = ["docker", "compose", "version"]
        return subprocess.run(probe, capture_output=True, check=False).returncode == 0

    if not v2_available() and (REPO / ".cache" / "docker" / "cli-plugins").is_dir():
        os.environ["DOCKER_CONFIG"] = str(REPO / ".cache" / "docker")
    if not v2_available():
        sys.exit("bench needs Compose v2 (`docker compose`): run scripts/test once to install it")
    return ["docker", "compose"]


def machine() -> str:
    memory_kib = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    docker = subprocess.run(
        ["docker", "version", "--format", "{{.Server.Version}}"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    compose = subprocess.run(
        [*compose_command(), "version", "--short"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return (
        f"{os.cpu_count()} CPUs, {memory_kib / 1024 / 1024:.1f} GiB RAM, "
        f"{platform.system()} {platform.release()}, Docker {docker}, Compose {compose}"
    )


def neighbours() -> str:
    """What else loads this shared machine now: the 1-minute load average and the other
    compose projects' running containers (for the report, next to the machine)."""
    load = Path("/proc/loadavg").read_text().split()[0]
    listing = subprocess.run(
        ["docker", "ps", "--format", '{{.Label "com.docker.compose.project"}}'],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    projects: dict[str, int] = {}
    for project in listing:
        if project and "<" not in project:
            projects[project] = projects.get(project, 0) + 1
    others = ", ".join(f"{name} ({count} containers)" for name, count in sorted(projects.items()))
    return f"load average {load} (1 min); other compose projects running: {others or 'none'}"


def publish(report: str) -> None:
    """Print a report and append it to docs/benchmarks.md (created if missing)."""
    print(report)
    if not REPORT.exists():
        REPORT.write_text(REPORT_HEADER)
    with REPORT.open("a") as handle:
        handle.write(report + "\n")


def finish(report: str, *, complete: bool, no_publish: bool) -> int:
    """The end of a benchmark: publish() a complete report, or only print it (with
    --no-publish, or when a step failed); the exit status (1: not complete)."""
    if complete and not no_publish:
        publish(report)
        return 0
    print(report)
    if not complete:
        print("a step did not complete: not appended to docs/benchmarks.md")
        return 1
    return 0


class Stack:
    """A stack of its own: compose project mailyard-bench-<random> (scripts/clean-test-stacks
    removes leftovers), every published port a free one on 127.0.0.1. Used as a context
    manager, leaving it removes its containers and volumes (`down -v`), errors or not."""

    def __init__(self) -> None:
        self.project = f"mailyard-bench-{uuid.uuid4().hex[:6]}"
        # By variable (MAILYARD_SMTP_PORT, ...); port() looks one up by the tests' name.
        variables = list(PUBLISHED_PORTS.values())
        self.ports = dict(zip(variables, free_ports(len(variables)), strict=True))
        self.env = {
            **os.environ,
            "COMPOSE_PROJECT_NAME": self.project,
            "MAILYARD_BIND_ADDRESS": "127.0.0.1",
            "MAILYARD_API_HTTPS_BIND_ADDRESS": "127.0.0.1",
        }
        self.env.update({key: str(value) for key, value in self.ports.items()})
        self.compose = compose_command()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.down()

    def port(self, name: str) -> int:
        """The host port published for `name` ("smtp", "submission", ... as in mailtools)."""
        return self.ports[PUBLISHED_PORTS[name]]

    def run(self, *arguments: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.compose, *arguments],
            cwd=REPO,
            env=self.env,
            text=True,
            capture_output=True,
            check=True,
            timeout=600,
        )

    def up(self) -> None:
        self.run("up", "-d", "--no-build")

    def services(self) -> list[str]:
        """The long-running services of the compose file(s) in use (one container each, no
        scaling); controller-init runs once at `up` and exits."""
        return [
            s for s in self.run("config", "--services").stdout.split() if s != "controller-init"
        ]

    def healthy(self) -> bool:
        ids = self.run("ps", "-q").stdout.split()
        if not ids:
            return False
        states = json.loads(
            subprocess.run(
                ["docker", "inspect", *ids], capture_output=True, text=True, check=True
            ).stdout
        )
        states = [
            s
            for s in states
            if s["Config"]["Labels"].get("com.docker.compose.service") in self.services()
        ]
        return len(states) == len(self.services()) and all(
            (s["State"].get("Health") or {}).get("Status") == "healthy" for s in states
        )

    def container(self, service: str) -> str:
        """The ID of `service`'s container."""
        return self.run("ps", "-q", service).stdout.split()[0]

    def exec(
        self, service: str, *command: str, stdin: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Runs `command` in `service`'s container (`docker exec -i`), checked."""
        return subprocess.run(
            ["docker", "exec", "-i", self.container(service), *command],
            input=stdin,
            text=True,
            capture_output=True,
            check=True,
            timeout=timeout,
        )

    def wait_healthy(self, timeout: float = 300) -> None:
        wait_for("all services healthy", self.healthy, timeout=timeout, interval=0.5)

    def admin_token(self) -> str:
        return self.run("exec", "-T", "controller", "mailyard", "admin-token").stdout.strip()

    def api(self, token: str, timeout: float = 5.0) -> httpx.Client:
        """An HTTP client for the API (base URL .../api/v1) authenticated with `token`."""
        return httpx.Client(
            base_url=f"http://127.0.0.1:{self.port('api')}/api/v1",
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
        )

    def down(self) -> None:
        subprocess.run(
            [*self.compose, "down", "-v", "--timeout", "5"],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            check=False,
        )


def memory_mib(text: str) -> float:
    """MiB from a `docker stats` MemUsage figure ("12.3MiB / 23.5GiB")."""
    value = text.split("/", maxsplit=1)[0].strip()
    units = {"KiB": 1 / 1024, "MiB": 1.0, "GiB": 1024.0, "B": 1 / 1024 / 1024}
    for unit, factor in units.items():
        if value.endswith(unit):
            return float(value[: -len(unit)]) * factor
    raise ValueError(f"unexpected memory figure {text!r}")
