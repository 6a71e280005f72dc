"""The README's quick start, literally, with Compose v2 and with Debian's docker-compose 1.29.

Each run is its own project started from compose.yaml alone (no test override): the
stack must come up healthy with nothing but published-port choices in the environment.
"""

from __future__ import annotations

import os
import shutil
import smtplib
import subprocess
import time
import uuid

import httpx
import pytest
from conftest import REPO
from mailtools import (
    ONE_SHOT_SERVICES,
    PUBLISHED_PORTS,
    free_ports,
    imap_message_ids,
    make_message,
    wait_for,
)

IMPLEMENTATIONS = {
    "compose-v2": ["docker", "compose"],
    "docker-compose-1.29": ["docker-compose"],
}


def _available(command: list[str]) -> bool:
    if shutil.which(command[0]) is None:
        return False
    return subprocess.run([*command, "version"], capture_output=True, check=False).returncode == 0


@pytest.mark.parametrize("implementation", sorted(IMPLEMENTATIONS))
def test_readme_quick_start(implementation: str) -> None:
    command = IMPLEMENTATIONS[implementation]
    if not _available(command):
        pytest.skip(f"{' '.join(command)} is not installed here (scripts/test installs both)")
    project = f"mailyard-test-qs-{uuid.uuid4().hex[:6]}"
    variables = list(PUBLISHED_PORTS.values())
    ports = dict(zip(variables, free_ports(len(variables)), strict=True))
    env = {
        **os.environ,
        "COMPOSE_PROJECT_NAME": project,
        "MAILYARD_BIND_ADDRESS": "127.0.0.1",
        "MAILYARD_API_HTTPS_BIND_ADDRESS": "127.0.0.1",
        # This machine is offline: ClamAV could never download signatures (mail would
        # wait for them, as it should) and SpamAssassin's network tests would time out.
        # The filter chain is proven by test_filtering.py with offline signatures.
        "MAILYARD_FILTER": "off",
    }
    env.update({key: str(value) for key, value in ports.items()})

    def compose(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*command, *args],
            cwd=REPO,
            env=env,
            text=True,
            capture_output=True,
            check=check,
            timeout=600,
        )

    def active_services() -> list[str]:
        # Compose v2 leaves out services of profiles not chosen (mailman-web); 1.29's
        # `config --services` lists them all, so ask v2 when it is there.
        counter = (
            IMPLEMENTATIONS["compose-v2"] if _available(IMPLEMENTATIONS["compose-v2"]) else command
        )
        listed = subprocess.run(
            [*counter, "config", "--services"],
            cwd=REPO,
            env=env,
            text=True,
            capture_output=True,
            check=True,
            timeout=120,
        )
        return listed.stdout.split()

    try:
        # `docker compose up -d`, exactly (images are already built by scripts/test).
        up = compose("up", "-d", check=False)
        assert up.returncode == 0, up.stdout + up.stderr

        def all_healthy() -> bool:
            ids = compose("ps", "-q").stdout.split()
            service_and_health = [
                subprocess.run(
                    [
                        "docker",
                        "inspect",
                        "-f",
                        '{{index .Config.Labels "com.docker.compose.service"}} '
                        "{{if .State.Health}}{{.State.Health.Status}}{{end}}",
                        cid,
                    ],
                    capture_output=True,
                    text=True,
                    check=False,
                ).stdout.split()
                for cid in ids
            ]
            # 1.29 lists the one-shot controller-init (exited) too; v2 does not.
            states = [
                health[0] if health else ""
                for service, *health in filter(None, service_and_health)
                if service not in ONE_SHOT_SERVICES
            ]
            services = set(active_services()) - ONE_SHOT_SERVICES
            return len(states) == len(services) and all(state == "healthy" for state in states)

        started = time.monotonic()
        wait_for("every service healthy", all_healthy, timeout=300, interval=2)
        print(f"{implementation}: healthy after {time.monotonic() - started:.0f}s")

        # `docker compose exec -T controller mailyard admin-token`
        token = compose("exec", "-T", "controller", "mailyard", "admin-token").stdout.strip()
        api = f"http://127.0.0.1:{ports['MAILYARD_API_PORT']}/api/v1"
        headers = {"Authorization": f"Bearer {token}"}
        created = httpx.post(f"{api}/domains", headers=headers, json={"name": "example.org"})
        assert created.status_code == 201, created.text
        mailbox = {
            "address": "alice@example.org",
            "password": "a long passphrase",
            "quota_mb": 2048,
        }
        created = httpx.post(f"{api}/mailboxes", headers=headers, json=mailbox)
        assert created.status_code == 201, created.text

        message = make_message("bob@sender.test", ["alice@example.org"], "quick start")
        with smtplib.SMTP("127.0.0.1", ports["MAILYARD_SMTP_PORT"], timeout=60) as client:
            assert client.send_message(message) == {}
        wait_for(
            "the message in alice's INBOX",
            lambda: (
                message["Message-ID"]
                in imap_message_ids(
                    "127.0.0.1",
                    ports["MAILYARD_IMAPS_PORT"],
                    "alice@example.org",
                    "a long passphrase",
                )
            ),
        )
    except BaseException:
        logs = compose("logs", "--no-color", "--tail", "200", check=False)
        print(logs.stdout[-20000:], logs.stderr[-2000:])
        raise
    finally:
        compose("down", "-v", "--remove-orphans", "--timeout", "5", check=False)
