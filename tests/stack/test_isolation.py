"""Who may reach what (docs/security.md): every internal listener refuses everyone but
the services that use it, tried as an intruder would from a container on the public
network, from one on the web interface's network, and from inside mailman-web (the
public web application), each listener with its own protocol. The only ports published
on the host are the public ones, and the controller reaches Docker only through a filter
that refuses what it does not need."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, Stack
from mailtools import PUBLISHED_PORTS

PROBE = Path(__file__).with_name("listener_probe.py")

# (service, port, protocol, extra): every internal listener of the stack.
LISTENERS: tuple[tuple[str, int, str, dict[str, str]], ...] = (
    ("dovecot", 24, "lmtp", {}),  # LMTP: straight into any mailbox
    ("dovecot", 12345, "sasl", {}),  # SASL for Postfix
    ("dovecot", 12340, "policy", {}),  # quota status
    ("dovecot", 8080, "http", {"path": "/doveadm/v1"}),  # doveadm HTTP API
    ("amavis", 10024, "smtp", {}),  # content filter, inbound
    ("amavis", 10026, "smtp", {}),  # content filter, submitted mail
    ("amavis", 9998, "pdp", {}),  # quarantine release
    ("postfix", 10025, "smtp", {"recipient": "victim@elsewhere.invalid"}),  # re-injection
    ("postfix", 10027, "smtp", {"recipient": "victim@elsewhere.invalid"}),  # Mailman's mail
    ("postfix", 10028, "smtp", {"recipient": "victim@elsewhere.invalid"}),  # web's mail
    ("clamav", 3310, "clamd", {}),
    ("opendkim", 8891, "milter", {}),
    ("opendkim", 8892, "milter", {}),
    ("postgrey", 10023, "policy", {}),
    ("db", 3306, "mysql", {}),
    ("mailman-core", 8001, "http", {"path": "/3.1/system/versions"}),  # REST
    ("mailman-core", 8024, "lmtp", {}),
    ("mailman-web", 8000, "http", {"path": "/hyperkitty/api/mailman/urls"}),  # archiver
    ("docker-proxy", 2375, "http", {"path": "/_ping"}),
)

# What compose.yaml publishes, by service: the public ports and nothing else.
PUBLISHED = {
    "postfix": {25, 465, 587},
    "dovecot": {143, 993, 110, 995, 4190},
    "controller": {8080, 80, 443},
    "mailman-web": {8443},
}


def _inspect(stack: Stack, service: str) -> dict[str, Any]:
    return json.loads(
        subprocess.run(
            ["docker", "inspect", stack.container(service)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )[0]


def _attempts(stack: Stack, recipient: str, skip: frozenset[str] = frozenset()) -> list[dict]:
    """Every listener at every address its container has, on every network."""
    attempts = []
    for service, port, protocol, extra in LISTENERS:
        if service in skip:
            continue
        networks = _inspect(stack, service)["NetworkSettings"]["Networks"]
        for network, settings in networks.items():
            attempts.append(
                {
                    "name": f"{service}:{port} on {network.removeprefix(stack.project + '_')}",
                    "host": settings["IPAddress"],
                    "port": port,
                    "protocol": protocol,
                    "recipient": recipient,
                    **extra,
                }
            )
    return attempts


def _probe_from(command: list[str], attempts: list[dict]) -> list[dict]:
    script = PROBE.read_text()
    result = subprocess.run(
        [*command, "python3", "-c", script],
        input=json.dumps(attempts),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _throwaway(stack: Stack, network: str) -> list[str]:
    """A container of our own on one of the stack's networks, like any stranger's."""
    image = f"mailyard/controller:{stack.env.get('MAILYARD_VERSION', 'latest')}"
    return [
        "docker",
        "run",
        "--rm",
        "-i",
        "--network",
        f"{stack.project}_{network}",
        "--entrypoint",
        "",
        image,
    ]


def _reached(results: list[dict]) -> list[str]:
    return [
        f"{item['name']} ({item['host']}): {item['outcome']}: {item['detail']}"
        for item in results
        if item["outcome"] != "unreachable"
    ]


@pytest.fixture(scope="module")
def mailbox(full_stack: Stack) -> str:
    """A real mailbox: what an intruder on LMTP would deliver into."""
    return full_stack.new_mailbox(full_stack.new_domain("iso"), "victim")


@pytest.mark.parametrize("network", ["edge", "web"])
def test_no_internal_listener_answers_a_container_on_a_public_network(
    full_stack: Stack, mailbox: str, network: str
) -> None:
    results = _probe_from(_throwaway(full_stack, network), _attempts(full_stack, mailbox))

    assert len(results) > len(LISTENERS)
    assert _reached(results) == []
    assert "isolation-probe" not in "".join(full_stack.inbox(mailbox))
    assert not full_stack.sink_contains("isolation-probe")


def test_mailman_web_reaches_only_its_database_mailmans_rest_api_and_its_mail_port(
    full_stack: Stack, mailbox: str
) -> None:
    # The public web application: if it were taken over, nothing of the mail path must
    # answer it. It needs MariaDB (its own database), Mailman's REST API (Postorius is a
    # client of it, with its password) and its own mail listener (10028: account mail,
    # held to 30 messages a minute with 5 recipients each): those connect; see below
    # what its database account may do.
    needed = {"db:3306", "mailman-core:8001", "postfix:10028"}
    web = ["docker", "exec", "-i", full_stack.container("mailman-web")]
    results = _probe_from(web, _attempts(full_stack, mailbox, skip=frozenset({"mailman-web"})))

    reached = [line for line in _reached(results) if line.split(" on ", 1)[0] not in needed]
    assert reached == []
    assert "isolation-probe" not in "".join(full_stack.inbox(mailbox))
    # Its database account sees its own database only: not the mail data.
    denied = full_stack.exec(
        "mailman-web",
        "python3",
        "-c",
        "import MySQLdb\n"
        "password = open('/var/lib/mailyard-secrets/db-mailmanweb-password').read().strip()\n"
        "db = MySQLdb.connect(host='db', user='mailyard_mailmanweb', passwd=password)\n"
        "cursor = db.cursor()\n"
        "try:\n"
        "    cursor.execute('SELECT address FROM mailyard.mailboxes')\n"
        "    print('READ', cursor.fetchall())\n"
        "except MySQLdb.OperationalError as exc:\n"
        "    print('DENIED', exc)\n",
        check=False,
    )
    assert denied.stdout.startswith("DENIED"), denied.stdout + denied.stderr


def test_the_internal_listeners_still_serve_their_audience(full_stack: Stack) -> None:
    # The other side of the coin: each listener answers its own client (the stack is
    # healthy, so mail flows; these are the ones a health check does not exercise).
    reached = full_stack.exec(
        "postfix", "bash", "-c", "exec 3<>/dev/tcp/dovecot-delivery/24 && head -c 3 <&3"
    ).stdout
    assert reached == "220"
    pong = full_stack.exec(
        "amavis",
        "bash",
        "-c",
        "exec 3<>/dev/tcp/clamav-scan/3310; printf 'zPING\\0' >&3; head -c 4 <&3",
    ).stdout
    assert pong == "PONG"


def test_only_the_public_ports_are_published(full_stack: Stack) -> None:
    ids = full_stack.run_compose("ps", "-q").stdout.split()
    published: dict[str, set[int]] = {}
    for item in json.loads(
        subprocess.run(
            ["docker", "inspect", *ids], capture_output=True, text=True, check=True
        ).stdout
    ):
        service = item["Config"]["Labels"]["com.docker.compose.service"]
        ports = item["NetworkSettings"]["Ports"] or {}
        bound = {int(port.split("/")[0]) for port, hosts in ports.items() if hosts}
        if bound:
            published[service] = bound
    published.pop("pebble", None)  # test-only ACME server (not in this stack anyway)
    assert published == PUBLISHED


def test_the_https_api_is_published_on_loopback_by_default() -> None:
    # compose.yaml as a user gets it: no .env, no MAILYARD_* variables.
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("MAILYARD_", "COMPOSE_"))
    }
    config = subprocess.run(
        ["docker", "compose", "-f", str(REPO / "compose.yaml"), "config", "--format", "json"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    ports = json.loads(config.stdout)["services"]["controller"]["ports"]
    by_target = {port["target"]: port.get("host_ip", "0.0.0.0") for port in ports}  # noqa: S104
    assert by_target[443] == "127.0.0.1"
    assert by_target[8080] == "127.0.0.1"
    # Port 80 answers ACME challenges from the CA and redirects the rest: public.
    assert by_target[80] == "0.0.0.0"  # noqa: S104
    assert set(PUBLISHED_PORTS) >= {"https", "api", "http"}


def _through_the_filter(stack: Stack, method: str, path: str, body: str = "") -> int:
    """A request to the Docker filter from the controller, as the controller's user."""
    script = (
        "import sys, urllib.request, urllib.error\n"
        "request = urllib.request.Request('http://docker-proxy:2375' + sys.argv[2],"
        " data=sys.argv[3].encode() or None, method=sys.argv[1],"
        " headers={'Content-Type': 'application/json'})\n"
        "try:\n"
        "    print(urllib.request.urlopen(request, timeout=10).status)\n"
        "except urllib.error.HTTPError as exc:\n"
        "    print(exc.code)\n"
    )
    result = stack.exec("controller", "python3", "-c", script, method, path, body)
    return int(result.stdout.strip())


def test_the_controller_runs_without_root_and_reaches_docker_only_through_the_filter(
    stack: Stack,
) -> None:
    users = subprocess.run(
        # docker top needs the pid column to tell the container's processes apart.
        ["docker", "top", stack.container("controller"), "-eo", "pid,uid,comm"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()[1:]
    assert users
    assert all(line.split()[1] == "990" for line in users), users
    # No Docker socket in the controller: only the filter's address.
    assert stack.exec("controller", "test", "-e", "/var/run/docker.sock", check=False).returncode

    postfix = stack.container("postfix")
    name = json.loads(
        subprocess.run(
            ["docker", "inspect", postfix], capture_output=True, text=True, check=True
        ).stdout
    )[0]["Name"].lstrip("/")
    create = '{"Image": "mailyard/postfix", "HostConfig": {"Privileged": true}}'
    assert _through_the_filter(stack, "GET", "/_ping") == 200
    assert _through_the_filter(stack, "GET", f"/containers/{name}/json") == 200
    assert _through_the_filter(stack, "POST", "/containers/create", create) == 403
    assert _through_the_filter(stack, "POST", "/v1.41/containers/create", create) == 403
    assert _through_the_filter(stack, "GET", "/images/json") == 403
    assert _through_the_filter(stack, "GET", "/volumes") == 403
    assert _through_the_filter(stack, "POST", f"/containers/{name}/kill") == 403
    assert _through_the_filter(stack, "DELETE", f"/containers/{name}") == 403
    # Not by id, not the database, not another project's container.
    assert _through_the_filter(stack, "GET", f"/containers/{postfix}/json") == 403
    assert _through_the_filter(stack, "GET", f"/containers/{stack.project}-db-1/json") == 403
    assert _through_the_filter(stack, "GET", "/containers/other-project-postfix-1/json") == 403
    # An exec that asks for privileges, in any spelling, is refused; a plain one is not.
    exec_path = f"/containers/{name}/exec"
    plain = '{"Cmd": ["true"], "Privileged": false}'
    assert _through_the_filter(stack, "POST", exec_path, plain) == 201
    for body in (
        '{"Cmd": ["true"], "Privileged": true}',
        '{"Cmd": ["true"], "privileged":true}',
        '{"Cmd": ["true"], "Privileged": false, "PRIVILEGED" : true}',
        '{"Cmd": ["true"], "Privil\\u0065ged": true}',
    ):
        assert _through_the_filter(stack, "POST", exec_path, body) == 403, body
