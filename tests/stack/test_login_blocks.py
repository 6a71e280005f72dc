"""Failed logins block their client address, and only that address.

The attackers are throwaway containers on the stack's public network (docker network
`<project>_edge`) that talk to Dovecot's and Postfix's addresses on that network, so
each has an address of its own and the test host's address (the Docker gateway, which
every other test logs in from) is never blocked. The logins run concurrently: Dovecot
delays every failure by 2 s.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
from conftest import PASSWORD, Stack
from mailtools import imap_login_works, wait_for

# Short, so the test can watch a block end; restored afterwards.
BLOCK_SECONDS = 60
BLOCK_AFTER = 20  # the default of login_block_after_failures

# Runs inside a client container: COUNT logins at once, one line of JSON with each
# outcome ("ok", "refused: ..." or "error: ..."). One AUTH PLAIN per SMTP login:
# smtplib's login() would try LOGIN after PLAIN, two failures for one attempt.
CLIENT = r"""
import imaplib, json, smtplib, ssl, sys
from concurrent.futures import ThreadPoolExecutor

protocol, host, port, user, password, count = sys.argv[1:7]
tls = ssl.create_default_context()
tls.check_hostname = False
tls.verify_mode = ssl.CERT_NONE


def imap(_):
    try:
        with imaplib.IMAP4_SSL(host, int(port), ssl_context=tls, timeout=90) as client:
            client.login(user, password)
            return "ok"
    except imaplib.IMAP4.error as exc:
        return f"refused: {exc}"
    except Exception as exc:
        return f"error: {type(exc).__name__}: {exc}"


def smtp(_):
    try:
        with smtplib.SMTP(host, int(port), timeout=90) as client:
            client.ehlo("attacker.remote.test")
            client.starttls(context=tls)
            client.ehlo("attacker.remote.test")
            client.user, client.password = user, password
            code, reply = client.auth("PLAIN", client.auth_plain)
            return "ok" if code == 235 else f"refused: {code} {reply!r}"
    except smtplib.SMTPAuthenticationError as exc:
        return f"refused: {exc.smtp_code} {exc.smtp_error!r}"
    except Exception as exc:
        return f"error: {type(exc).__name__}: {exc}"


with ThreadPoolExecutor(max_workers=int(count)) as pool:
    print(json.dumps(list(pool.map(imap if protocol == "imap" else smtp, range(int(count))))))
"""


def _inspect(container: str) -> dict[str, Any]:
    output = subprocess.run(
        ["docker", "inspect", container], capture_output=True, text=True, check=True
    ).stdout
    inspected: dict[str, Any] = json.loads(output)[0]
    return inspected


def _address_on(container: str, network: str) -> str:
    address: str = _inspect(container)["NetworkSettings"]["Networks"][network]["IPAddress"]
    assert address, f"{container} has no address on {network}"
    return address


@dataclass
class Client:
    """A container on the public network with an address of its own."""

    container: str
    address: str

    def logins(
        self, protocol: str, host: str, port: int, user: str, password: str, *, count: int = 1
    ) -> list[str]:
        arguments = [protocol, host, str(port), user, password, str(count)]
        result = subprocess.run(
            ["docker", "exec", self.container, "python3", "-c", CLIENT, *arguments],
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        )
        outcomes: list[str] = json.loads(result.stdout)
        assert not [item for item in outcomes if item.startswith("error")], outcomes
        return outcomes


@dataclass
class Edge:
    """The stack's public network: Dovecot's and Postfix's addresses on it, and a way to
    start client containers there."""

    stack: Stack
    network: str
    dovecot: str
    postfix: str
    containers: list[str]

    def client(self) -> Client:
        image = f"mailyard/controller:{self.stack.env.get('MAILYARD_VERSION', 'latest')}"
        # Labelled like a test project, so scripts/clean-test-stacks removes leftovers.
        label = f"com.docker.compose.project={self.stack.project}-clients"
        options = ["--network", self.network, "--label", label, "--entrypoint", "sleep"]
        container = subprocess.run(
            ["docker", "run", "-d", "--rm", *options, image, "infinity"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        self.containers.append(container)
        return Client(container, _address_on(container, self.network))


@pytest.fixture(scope="module")
def edge(stack: Stack) -> Iterator[Edge]:
    network = f"{stack.project}_edge"
    found = Edge(
        stack=stack,
        network=network,
        dovecot=_address_on(stack.container("dovecot"), network),
        postfix=_address_on(stack.container("postfix"), network),
        containers=[],
    )
    try:
        yield found
    finally:
        if found.containers:
            subprocess.run(
                ["docker", "rm", "-f", *found.containers], capture_output=True, check=False
            )


@pytest.fixture(scope="module")
def short_blocks(stack: Stack) -> Iterator[None]:
    """Blocks of BLOCK_SECONDS, set through the settings API (validated by doveconf and the
    policy server, applied behind the health gate) and restored afterwards."""
    before = stack.api("GET", "/settings").json()["settings"]
    assert before["login_block_after_failures"] == BLOCK_AFTER
    response = stack.api(
        "PATCH", "/settings", json={"login_block_seconds": BLOCK_SECONDS}, timeout=180
    )
    assert response.status_code == 200, response.text
    assert response.json()["apply"]["status"] == "succeeded", response.text
    yield
    response = stack.api(
        "PATCH",
        "/settings",
        json={"login_block_seconds": before["login_block_seconds"]},
        timeout=180,
    )
    assert response.status_code == 200, response.text


def _blocks(stack: Stack) -> dict[str, dict[str, Any]]:
    response = stack.api("GET", "/blocks")
    assert response.status_code == 200, response.text
    return {item["address"]: item for item in response.json()["items"]}


def _right_password_works_from_the_test_host(stack: Stack, address: str) -> bool:
    return imap_login_works(stack.host, stack.ports["imaps"], address, PASSWORD)


def test_failed_imap_logins_block_that_address_only_until_it_expires(
    stack: Stack, edge: Edge, short_blocks: None
) -> None:
    domain = stack.new_domain("blk")
    victim = stack.new_mailbox(domain, "victim")
    attacker = edge.client()

    outcomes = attacker.logins("imap", edge.dovecot, 993, victim, "guess", count=30)
    assert all(item.startswith("refused") for item in outcomes), outcomes

    # Blocked: from there, even the right password is refused.
    assert attacker.logins("imap", edge.dovecot, 993, victim, PASSWORD) != ["ok"]
    blocks = _blocks(stack)
    assert attacker.address in blocks, blocks
    block = blocks[attacker.address]
    assert block["failures"] >= BLOCK_AFTER
    assert block["last_protocol"] == "imap"
    assert block["last_username"] == victim
    length = datetime.fromisoformat(block["blocked_until"]) - datetime.fromisoformat(
        block["blocked_at"]
    )
    assert length.total_seconds() == BLOCK_SECONDS

    # The owner, from another address, is not locked out.
    assert _right_password_works_from_the_test_host(stack, victim)

    # The block ends by itself.
    wait_for(
        "the block to expire",
        lambda: attacker.logins("imap", edge.dovecot, 993, victim, PASSWORD) == ["ok"],
        timeout=BLOCK_SECONDS + 90,
        interval=2,
    )
    assert attacker.address not in _blocks(stack)


def test_a_block_is_lifted_through_the_api(stack: Stack, edge: Edge, short_blocks: None) -> None:
    domain = stack.new_domain("blk")
    victim = stack.new_mailbox(domain, "victim")
    attacker = edge.client()
    attacker.logins("imap", edge.dovecot, 993, victim, "guess", count=30)
    assert attacker.logins("imap", edge.dovecot, 993, victim, PASSWORD) != ["ok"]

    listed = json.loads(stack.mailyard("blocks", "list", "--json").stdout)
    assert attacker.address in {row["address"] for row in listed}, listed

    assert stack.api("DELETE", f"/blocks/{attacker.address}").status_code == 204
    assert attacker.logins("imap", edge.dovecot, 993, victim, PASSWORD) == ["ok"]
    assert attacker.address not in _blocks(stack)

    # Lifting what is not blocked, or what is no address, says so.
    gone = stack.api("DELETE", f"/blocks/{attacker.address}")
    assert gone.status_code == 404, gone.text
    assert "is not blocked" in gone.json()["detail"]
    invalid = stack.api("DELETE", "/blocks/not-an-address")
    assert invalid.status_code == 422, invalid.text
    refused = stack.mailyard("blocks", "lift", attacker.address, check=False)
    assert refused.returncode == 2
    assert "is not blocked" in refused.stderr


def test_smtp_auth_failures_count_towards_the_same_block(
    stack: Stack, edge: Edge, short_blocks: None
) -> None:
    domain = stack.new_domain("blk")
    victim = stack.new_mailbox(domain, "victim")
    attacker = edge.client()

    # 5 SMTP AUTH failures and 14 IMAP failures: one short of a block.
    smtp = attacker.logins("smtp", edge.postfix, 587, victim, "guess", count=5)
    assert all(item.startswith("refused: 535") for item in smtp), smtp
    imap = attacker.logins("imap", edge.dovecot, 993, victim, "guess", count=BLOCK_AFTER - 6)
    assert all(item.startswith("refused") for item in imap), imap
    assert attacker.address not in _blocks(stack)

    # The 20th failure, over SMTP AUTH, blocks: SMTP AUTH counted all along. (The slowed
    # down attempt plus Dovecot's 2 s failure delay may outlast Postfix's 10 s wait for
    # Dovecot: then the client gets 454 instead of 535, and the failure still counts.)
    outcome = attacker.logins("smtp", edge.postfix, 587, victim, "guess")
    assert outcome[0].startswith(("refused: 535", "refused: 454")), outcome
    block = wait_for("the block", lambda: _blocks(stack).get(attacker.address), timeout=30)
    assert block["failures"] == BLOCK_AFTER
    assert block["last_protocol"] == "smtp"
    # Blocked for SMTP AUTH and for IMAP, the right password included.
    outcome = attacker.logins("smtp", edge.postfix, 587, victim, PASSWORD)
    assert outcome[0].startswith("refused"), outcome
    assert attacker.logins("imap", edge.dovecot, 993, victim, PASSWORD) != ["ok"]
    assert _right_password_works_from_the_test_host(stack, victim)
    assert stack.api("DELETE", f"/blocks/{attacker.address}").status_code == 204


def _policy_server_pids(stack: Stack) -> list[str]:
    # No procps in the image: read /proc.
    script = (
        "for p in /proc/[0-9]*; do "
        "tr '\\0' ' ' < $p/cmdline 2>/dev/null | grep -q '^/usr/bin/python3 "
        "/usr/local/bin/mailyard-auth-policy serve' && echo ${p#/proc/}; done; true"
    )
    return stack.exec("dovecot", "bash", "-c", script).stdout.split()


def _signal(stack: Stack, signal: str, pid: str) -> None:
    stack.exec("dovecot", "bash", "-c", f"kill -{signal} {pid}")  # bash's own kill


def test_logins_go_ahead_while_the_policy_server_cannot_answer(stack: Stack) -> None:
    domain = stack.new_domain("blk")
    owner = stack.new_mailbox(domain, "owner")
    [pid] = _policy_server_pids(stack)
    # Hung: Dovecot gives up after auth_policy_server_timeout_msecs and lets the login
    # go ahead (fail open), rather than locking every user out.
    _signal(stack, "STOP", pid)
    try:
        assert _right_password_works_from_the_test_host(stack, owner)
    finally:
        _signal(stack, "CONT", pid)
    # Dead: the entrypoint starts it again.
    _signal(stack, "KILL", pid)
    restarted = wait_for(
        "the policy server to be restarted",
        lambda: [other for other in _policy_server_pids(stack) if other != pid],
        timeout=30,
    )
    assert len(restarted) == 1
    assert _right_password_works_from_the_test_host(stack, owner)
    logs = stack.run_compose("logs", "--no-color", "dovecot").stdout
    assert "auth policy server exited; restarting it" in logs
    assert logs.count("auth-policy: INFO: listening on 127.0.0.1:") >= 2
