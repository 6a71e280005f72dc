"""Starts the real stack (compose.yaml + compose.test.yaml) once per test session.

The project gets a unique name and free loopback ports, so it never collides with a
running Mailyard or an earlier run. On any failure, every container's log is written to
the terminal and to test-logs/<project>/. The project is always removed (`down -v`).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import random
import shutil
import smtplib
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from mailtools import (
    ONE_SHOT_SERVICES,
    PUBLISHED_PORTS,
    free_ports,
    imap_message_ids,
    insecure_tls,
    wait_for,
)

REPO = Path(__file__).resolve().parents[2]
HOSTNAME = "mail.mailyard.test"
PASSWORD = "correct horse battery staple"

FAILED = pytest.StashKey[bool]()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/stack" in str(item.path):
            item.add_marker(pytest.mark.stack)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.failed:
        item.config.stash[FAILED] = True
    return report


def _compose_command() -> list[str]:
    if (
        subprocess.run(
            ["docker", "compose", "version"], capture_output=True, check=False
        ).returncode
        == 0
    ):
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    pytest.fail("neither `docker compose` nor `docker-compose` is available: run scripts/test")


@dataclass
class Stack:
    project: str
    compose: list[str]
    env: dict[str, str]
    ports: dict[str, int]
    host: str = "127.0.0.1"
    admin_token: str = ""
    _containers: dict[str, str] = field(default_factory=dict)

    # --- processes ------------------------------------------------------------------
    def run_compose(
        self, *args: str, check: bool = True, timeout: float = 600, **kwargs: Any
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*self.compose, *args],
            env=self.env,
            cwd=REPO,
            check=False,
            text=True,
            capture_output=True,
            timeout=timeout,
            **kwargs,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"compose {' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result

    def container(self, service: str) -> str:
        if service not in self._containers:
            ids = self.run_compose("ps", "-q", service).stdout.split()
            assert ids, f"no container for service {service}"
            self._containers[service] = ids[0]
        return self._containers[service]

    def exec(
        self, service: str, *command: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["docker", "exec", "-i", self.container(service), *command],
            input=stdin,
            text=True,
            capture_output=True,
            check=check,
            timeout=120,
        )

    def mailyard(
        self, *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """The `mailyard` admin command inside the controller container."""
        return self.exec("controller", "mailyard", *args, stdin=stdin, check=check)

    # --- API ------------------------------------------------------------------------------
    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.ports['api']}/api/v1"

    def api(
        self, method: str, path: str, token: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token or self.admin_token}"}
        kwargs.setdefault("timeout", 30)
        return httpx.request(method, f"{self.api_url}{path}", headers=headers, **kwargs)

    def new_domain(self, prefix: str = "d") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:8]}.test"
        response = self.api("POST", "/domains", json={"name": name})
        assert response.status_code == 201, response.text
        return name

    def new_mailbox(self, domain: str, local: str = "user", quota_mb: int = 100) -> str:
        address = f"{local}@{domain}"
        response = self.api(
            "POST",
            "/mailboxes",
            json={"address": address, "password": PASSWORD, "quota_mb": quota_mb},
        )
        assert response.status_code == 201, response.text
        return address

    # --- mail clients -------------------------------------------------------------------
    def smtp(self) -> smtplib.SMTP:
        """A connection to port 25 as a stranger on the Internet would make it."""
        client = smtplib.SMTP(self.host, self.ports["smtp"], timeout=60)
        client.ehlo("client.remote.test")
        return client

    def submission(self, login: str, password: str = PASSWORD) -> smtplib.SMTP:
        """An authenticated submission session on 587 (STARTTLS, then AUTH)."""
        client = smtplib.SMTP(self.host, self.ports["submission"], timeout=60)
        client.ehlo("laptop.remote.test")
        client.starttls(context=insecure_tls())
        client.ehlo("laptop.remote.test")
        client.login(login, password)
        return client

    def wait_for_delivery(
        self,
        address: str,
        message_id: str,
        *,
        folder: str = "INBOX",
        password: str = PASSWORD,
        timeout: float = 30.0,
    ) -> None:
        wait_for(
            f"{message_id} in {address}'s {folder}",
            lambda: (
                message_id
                in imap_message_ids(self.host, self.ports["imaps"], address, password, folder)
            ),
            timeout=timeout,
        )

    def inbox(self, address: str, password: str = PASSWORD, folder: str = "INBOX") -> list[str]:
        return imap_message_ids(self.host, self.ports["imaps"], address, password, folder)

    # --- outbound sink --------------------------------------------------------------------
    def sink_contains(self, needle: str) -> bool:
        result = self.exec("sink", "grep", "-rlF", needle, "/var/sink", check=False)
        return result.returncode == 0

    # --- diagnostics ----------------------------------------------------------------------
    def dump_logs(self, write: Any) -> None:
        target = REPO / "test-logs" / self.project
        target.mkdir(parents=True, exist_ok=True)
        # Every container, stopped ones too (a service a test stopped may be the story).
        services = self.run_compose("ps", "-a", "--services", check=False).stdout.split()
        for service in services:
            logs = self.run_compose("logs", "--no-color", "--timestamps", service, check=False)
            text = logs.stdout + logs.stderr
            (target / f"{service}.log").write_text(text)
            write(f"\n===== logs of {service} ({self.project}) =====")
            for line in text.splitlines()[-400:]:
                write(line)
        write(f"\nfull logs in {target}")


def _service_count(stack: Stack) -> int:
    """One running container per service of the compose files in use (no scaling; the
    one-shot services have exited by then)."""
    services = stack.run_compose("config", "--services").stdout.split()
    return len(set(services) - ONE_SHOT_SERVICES)


def _wait_healthy(stack: Stack, timeout: float = 360, *, extra_containers: int = 0) -> None:
    """Waits until every service's container (plus `extra_containers` replicas from
    --scale) is healthy."""
    expected = _service_count(stack) + extra_containers
    deadline = time.monotonic() + timeout
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        ids = stack.run_compose("ps", "-q").stdout.split()
        if ids:
            inspected = json.loads(
                subprocess.run(
                    ["docker", "inspect", *ids], capture_output=True, text=True, check=True
                ).stdout
            )
            states = {
                item["Name"].lstrip("/"): (item["State"].get("Health") or {}).get(
                    "Status", item["State"]["Status"]
                )
                for item in inspected
                if item["Config"]["Labels"].get("com.docker.compose.service")
                not in ONE_SHOT_SERVICES
            }
            if len(states) >= expected and all(state == "healthy" for state in states.values()):
                return
        time.sleep(2)
    raise AssertionError(f"the stack did not become healthy within {timeout:.0f}s: {states}")


def _start(stack: Stack, *up_args: str, extra_containers: int = 0) -> None:
    up = stack.run_compose("up", "-d", "--no-build", *up_args, check=False)
    if up.returncode != 0:
        raise AssertionError(f"compose up failed:\n{up.stdout}\n{up.stderr}")
    _wait_healthy(stack, extra_containers=extra_containers)


def _new_stack(
    extra_compose_files: tuple[str, ...] = (), extra_env: dict[str, str] | None = None
) -> Stack:
    if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0:
        pytest.fail("the Docker daemon is not reachable: run the suite through scripts/test")
    project = f"mailyard-test-{uuid.uuid4().hex[:8]}"
    ports = dict(zip(PUBLISHED_PORTS, free_ports(len(PUBLISHED_PORTS)), strict=True))
    env = dict(os.environ)
    env.update({variable: str(ports[name]) for name, variable in PUBLISHED_PORTS.items()})
    env.update(
        {
            "COMPOSE_PROJECT_NAME": project,
            "MAILYARD_BIND_ADDRESS": "127.0.0.1",
            "MAILYARD_API_BIND_ADDRESS": "127.0.0.1",
            "MAILYARD_API_HTTPS_BIND_ADDRESS": "127.0.0.1",
            "MAILYARD_HOSTNAME": HOSTNAME,
            "MAILYARD_RELAYHOST": "[sink]:25",
            # Short, so the test of drift correction does not wait a minute.
            "MAILYARD_RECONCILE_INTERVAL": "5",
            "MAILYARD_CERTIFICATE_CHECK_INTERVAL": "5",
            # Held mail is noticed (and logged) within seconds.
            "MAILYARD_STATUS_INTERVAL": "5",
            # Offline: ClamAV has no signatures and SpamAssassin's network tests would
            # wait for timeouts. The filter chain has its own stack (test_filtering.py).
            "MAILYARD_FILTER": "off",
            "MAILYARD_SA_UPDATE": "no",
            **(extra_env or {}),
        }
    )
    compose = [*_compose_command(), "-p", project]
    for name in ("compose.yaml", "tests/stack/compose.test.yaml", *extra_compose_files):
        compose += ["-f", str(REPO / name)]
    return Stack(project=project, compose=compose, env=env, ports=ports)


@contextmanager
def running_stack(
    request: pytest.FixtureRequest,
    *up_args: str,
    extra_compose_files: tuple[str, ...] = (),
    extra_containers: int = 0,
    extra_env: dict[str, str] | None = None,
) -> Iterator[Stack]:
    """A healthy stack for the duration of the block; logs dumped if a test failed."""
    stack = _new_stack(extra_compose_files, extra_env)
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")

    def write(line: str) -> None:
        if reporter is not None:
            reporter.write_line(line)
        else:
            print(line)

    failed_before = request.config.stash.get(FAILED, False)
    request.config.stash[FAILED] = False
    try:
        started = time.monotonic()
        _start(stack, *up_args, extra_containers=extra_containers)
        write(f"\nstack {stack.project} healthy after {time.monotonic() - started:.0f}s")
        stack.admin_token = stack.mailyard("admin-token").stdout.strip()
        yield stack
    except BaseException:
        request.config.stash[FAILED] = True
        raise
    finally:
        if request.config.stash.get(FAILED, False):
            stack.dump_logs(write)
        stack.run_compose("down", "-v", "--remove-orphans", "--timeout", "5", check=False)
        request.config.stash[FAILED] = failed_before or request.config.stash.get(FAILED, False)


@pytest.fixture(scope="session")
def stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    with running_stack(request) as running:
        yield running


@pytest.fixture
def restore_settings(stack: Stack) -> Iterator[None]:
    """Whatever settings a test changes on the shared stack are put back afterwards."""
    before = stack.api("GET", "/settings").json()["settings"]
    yield
    now = stack.api("GET", "/settings").json()["settings"]
    changed = {name: before[name] for name in before if now[name] != before[name]}
    if changed:
        response = stack.api("PATCH", "/settings", json=changed, timeout=180)
        assert response.status_code == 200, response.text


# The EICAR test file: every virus scanner detects it, and it is harmless.
EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


@pytest.fixture(scope="session")
def full_stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    """Every service at once, shared by the tests that need more than `stack`: the whole
    filter chain (Amavis, SpamAssassin, ClamAV with an offline EICAR signature built
    here, postgrey), the test DNS server (DNSBL, SPF) and the web interface (profile web).
    One start for the filter, web interface and isolation tests instead of one each."""
    with tempfile.TemporaryDirectory(prefix="mailyard-clamav-") as signatures:
        # A tiny ClamAV database made here: md5:size:name of the EICAR file (the format
        # `sigtool --md5` prints), so no download is needed.
        database = Path(signatures) / "mailyard-test.hdb"
        database.write_text(f"{hashlib.md5(EICAR).hexdigest()}:{len(EICAR)}:Eicar-Test-File\n")  # noqa: S324 - ClamAV's format
        Path(signatures).chmod(0o755)
        database.chmod(0o644)
        # A subnet for the test DNS network that no other network on this host uses.
        subnet = _free_subnet()
        with running_stack(
            request,
            extra_compose_files=(
                "tests/stack/dns/compose.dns.yaml",
                "tests/stack/compose.filter.yaml",
            ),
            extra_env={
                "MAILYARD_FILTER": "full",
                "COMPOSE_PROFILES": "web",
                "MAILYARD_HYPERKITTY_URL": "http://mailman-web-archive:8000/hyperkitty/",
                "MAILYARD_TEST_DNS_SUBNET": str(subnet),
                # Docker places other containers in the lower half; the DNS server is
                # outside it, so its fixed address is never taken.
                "MAILYARD_TEST_DNS_RANGE": str(next(subnet.subnets(new_prefix=25))),
                "MAILYARD_TEST_DNS_ADDRESS": str(subnet.network_address + 200),
                "MAILYARD_TEST_CLAMAV_SIGNATURES": signatures,
            },
        ) as stack:
            response = stack.api(
                "PATCH",
                "/settings",
                json={
                    # Offline: SpamAssassin's DNSBL/Razor/Pyzor would only time out.
                    "filter_spam_network_tests": False,
                    # Deferred mail (Amavis stopped) is retried within seconds.
                    "minimal_backoff_time": "5s",
                    "maximal_backoff_time": "10s",
                    # Some filter tests send from outside as a mailbox hosted here, to
                    # read the non-delivery notice in it; that refusal has its own tests
                    # (test_sender_binding.py).
                    "reject_hosted_sender_spoofing": False,
                },
                timeout=300,
            )
            assert response.status_code == 200, response.text
            yield stack


def _free_subnet() -> ipaddress.IPv4Network:
    used = []
    names = subprocess.run(
        ["docker", "network", "ls", "-q"], capture_output=True, text=True, check=True
    ).stdout.split()
    for item in json.loads(
        subprocess.run(
            ["docker", "network", "inspect", *names], capture_output=True, text=True, check=True
        ).stdout
    ):
        for config in (item.get("IPAM") or {}).get("Config") or []:
            if config.get("Subnet") and ":" not in config["Subnet"]:
                used.append(ipaddress.ip_network(config["Subnet"]))
    for _ in range(100):
        # Outside 10.203.0.0/16, the pool scripts/test gives Docker for new networks.
        candidate = ipaddress.ip_network(
            f"10.{random.choice([*range(64, 203), *range(204, 251)])}.{random.randint(0, 255)}.0/24"
        )
        if not any(candidate.overlaps(other) for other in used):
            return candidate
    raise AssertionError("no free /24 for the test DNS network")
