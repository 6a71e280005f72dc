"""The README's quick start, literally, in a fresh clone, with Compose v2 and with Debian's
docker-compose 1.29.

Each run is its own project started from compose.yaml alone (no test override), with the
default filter (Amavis, SpamAssassin, ClamAV). This machine is two of the kinds of host
the README names, so the test does what the README tells them before `up`:
- behind a TLS-intercepting proxy: scripts/add-host-ca-certificates;
- without internet: scripts/build-base-image, signature files in clamav-signatures/
  (here an EICAR signature made with ClamAV's .hdb format), MAILYARD_SA_UPDATE=no in
  .env, and after the start the network tests of SpamAssassin off.
With Compose v2, `up` builds every image of the fresh clone (from the build cache that
scripts/test filled), so a clone that could not build behind the proxy fails here.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import smtplib
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest
from conftest import EICAR, REPO
from mailtools import (
    ONE_SHOT_SERVICES,
    PUBLISHED_PORTS,
    free_ports,
    imap_fetch,
    imap_message_ids,
    make_message,
    wait_for,
)

IMPLEMENTATIONS = {
    "compose-v2": ["docker", "compose"],
    "docker-compose-1.29": ["docker-compose"],
}
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def _available(command: list[str]) -> bool:
    if shutil.which(command[0]) is None:
        return False
    return subprocess.run([*command, "version"], capture_output=True, check=False).returncode == 0


def _fresh_clone(target: Path) -> Path:
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(target)], check=True, timeout=120)
    return target


def _prepare_offline_host_behind_proxy(clone: Path) -> None:
    """What README.md says to do before the first `up` on such a host."""
    if HOST_CA_BUNDLE.exists():
        subprocess.run([clone / "scripts/add-host-ca-certificates"], check=True, timeout=60)
    subprocess.run([clone / "scripts/build-base-image"], check=True, timeout=600)
    # An .hdb line is md5:size:name, what `sigtool --md5` prints for a file.
    signature = f"{hashlib.md5(EICAR).hexdigest()}:{len(EICAR)}:Eicar-Test-File\n"  # noqa: S324 - ClamAV's format
    (clone / "clamav-signatures/mailyard-test.hdb").write_text(signature)
    (clone / ".env").write_text("MAILYARD_SA_UPDATE=no\n")


@pytest.mark.parametrize("implementation", sorted(IMPLEMENTATIONS))
def test_readme_quick_start(implementation: str, tmp_path: Path) -> None:
    command = IMPLEMENTATIONS[implementation]
    if not _available(command):
        pytest.skip(f"{' '.join(command)} is not installed here (scripts/test installs both)")
    clone = _fresh_clone(tmp_path / "mailyard")
    _prepare_offline_host_behind_proxy(clone)
    suffix = uuid.uuid4().hex[:6]
    project = f"mailyard-test-qs-{suffix}"
    variables = list(PUBLISHED_PORTS.values())
    ports = dict(zip(variables, free_ports(len(variables)), strict=True))
    env = {
        **os.environ,
        "COMPOSE_PROJECT_NAME": project,
        "MAILYARD_BIND_ADDRESS": "127.0.0.1",
        "MAILYARD_API_HTTPS_BIND_ADDRESS": "127.0.0.1",
    }
    env.pop("MAILYARD_FILTER", None)
    built_tag = None
    if implementation == "compose-v2":
        # Images of a tag nobody built yet: `up` builds them from the fresh clone. (1.29
        # builds with the classic builder, which has none of BuildKit's cache: it runs
        # on the images scripts/test built.)
        built_tag = env["MAILYARD_VERSION"] = f"qs-{suffix}"
    env.update({key: str(value) for key, value in ports.items()})

    def compose(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*command, *args],
            cwd=clone,
            env=env,
            text=True,
            capture_output=True,
            check=check,
            timeout=900,
        )

    def active_services() -> list[str]:
        # Compose v2 leaves out services of profiles not chosen (mailman-web); 1.29's
        # `config --services` lists them all, so ask v2 when it is there.
        counter = (
            IMPLEMENTATIONS["compose-v2"] if _available(IMPLEMENTATIONS["compose-v2"]) else command
        )
        listed = subprocess.run(
            [*counter, "config", "--services"],
            cwd=clone,
            env=env,
            text=True,
            capture_output=True,
            check=True,
            timeout=120,
        )
        return listed.stdout.split()

    try:
        # `docker compose up -d`, exactly.
        started = time.monotonic()
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

        wait_for("every service healthy", all_healthy, timeout=420, interval=2)
        print(f"{implementation}: up and healthy after {time.monotonic() - started:.0f}s")
        # The README's last step for a host without internet.
        compose(
            "exec",
            "-T",
            "controller",
            "mailyard",
            "settings",
            "set",
            "filter_spam_network_tests=false",
        )

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
            timeout=120,
        )
        # Through the default filter: scanned by Amavis with ClamAV and SpamAssassin.
        delivered = imap_fetch(
            "127.0.0.1",
            ports["MAILYARD_IMAPS_PORT"],
            "alice@example.org",
            "a long passphrase",
            message["Message-ID"],
        )
        assert delivered is not None
        assert delivered["X-Virus-Scanned"] is not None
        assert delivered["X-Spam-Score"] is not None
    except BaseException:
        logs = compose("logs", "--no-color", "--tail", "200", check=False)
        print(logs.stdout[-20000:], logs.stderr[-2000:])
        raise
    finally:
        compose("down", "-v", "--remove-orphans", "--timeout", "5", check=False)
        if built_tag is not None:
            tags = [f"mailyard/{name}:{built_tag}" for name in _service_images(clone)]
            subprocess.run(["docker", "image", "rm", *tags], capture_output=True, check=False)


def _service_images(clone: Path) -> list[str]:
    images = clone.joinpath("images")
    return sorted(path.name for path in images.iterdir() if (path / "Dockerfile").exists())
