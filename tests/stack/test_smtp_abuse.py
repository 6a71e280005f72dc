"""Abuse on the SMTP ports (issue 13): SMTP smuggling on port 25 delivers exactly one
message; a login past its hourly limit gets 4xx and loses nothing that was accepted;
Postfix's per-client limits (anvil) bite a hostile client; the new settings go through
the settings pipeline and bad values are refused."""

from __future__ import annotations

import smtplib
import socket
import subprocess
import time
import uuid

import pytest
from conftest import PASSWORD, Stack
from mailtools import imap_message_ids, make_message, wait_for


def _patch(stack: Stack, **values: object) -> None:
    response = stack.api("PATCH", "/settings", json=values, timeout=180)
    assert response.status_code == 200, response.text
    assert response.json()["apply"]["status"] == "succeeded", response.text


# --- SMTP smuggling -----------------------------------------------------------------------
class RawSmtp:
    """A plain socket to port 25: smtplib would fix the line ends this test must send."""

    def __init__(self, host: str, port: int) -> None:
        self.socket = socket.create_connection((host, port), timeout=60)
        self.file = self.socket.makefile("rb")

    def reply(self) -> tuple[int, str]:
        lines = []
        while True:
            line = self.file.readline().decode(errors="replace")
            assert line, f"connection closed after {lines}"
            lines.append(line.rstrip("\r\n"))
            if len(line) < 4 or line[3] != "-":
                return int(line[:3]), "\n".join(lines)

    def command(self, line: str) -> tuple[int, str]:
        self.socket.sendall(line.encode() + b"\r\n")
        return self.reply()

    def close(self) -> None:
        self.socket.close()


def _smuggle(stack: Stack, recipient: str, end: bytes) -> tuple[str, str]:
    """One DATA with `end` as a fake end of data followed by a second complete
    transaction; returns the Message-IDs of the outer and the smuggled message."""
    outer = f"<outer-{uuid.uuid4().hex}@remote.test>"
    inner = f"<smuggled-{uuid.uuid4().hex}@remote.test>"
    client = RawSmtp(stack.host, stack.ports["smtp"])
    try:
        code, text = client.reply()  # postscreen greets after its greet wait
        assert code == 220, text
        assert client.command("EHLO client.remote.test")[0] == 250
        assert client.command("MAIL FROM:<someone@remote.test>")[0] == 250
        assert client.command(f"RCPT TO:<{recipient}>")[0] == 250
        assert client.command("DATA")[0] == 354
        payload = (
            f"From: someone@remote.test\r\nTo: {recipient}\r\nSubject: outer\r\n"
            f"Message-ID: {outer}\r\n\r\nThe outer message.\r\n".encode()
            + end
            + b"MAIL FROM:<ceo@remote.test>\r\n"
            + f"RCPT TO:<{recipient}>\r\n".encode()
            + b"DATA\r\n"
            + f"From: ceo@remote.test\r\nTo: {recipient}\r\nSubject: smuggled\r\n"
            f"Message-ID: {inner}\r\n\r\nThe smuggled message.\r\n".encode()
            + b".\r\n"
        )
        client.socket.sendall(payload)
        code, text = client.reply()
        assert code == 250, text
        # One message: the next reply answers QUIT, not a smuggled command.
        code, text = client.command("QUIT")
        assert code == 221, text
    finally:
        client.close()
    return outer, inner


@pytest.mark.parametrize(
    "end", [b"\n.\n", b"\r\n.\n", b"\n.\r\n"], ids=["LF.LF", "CRLF.LF", "LF.CRLF"]
)
def test_smuggling_on_port_25_delivers_exactly_one_message(stack: Stack, end: bytes) -> None:
    domain = stack.new_domain("smuggle")
    reader = stack.new_mailbox(domain, "reader")

    outer, inner = _smuggle(stack, reader, end)

    stack.wait_for_delivery(reader, outer, timeout=60)
    time.sleep(3)  # a second message would be queued by now
    ids = stack.inbox(reader)
    assert ids == [outer], ids
    assert inner not in ids


# --- the hourly limit per login -------------------------------------------------------------
def test_a_login_past_its_hourly_limit_gets_4xx_and_nothing_accepted_is_lost(
    stack: Stack, restore_settings: None
) -> None:
    domain = stack.new_domain("limited")
    sender = stack.new_mailbox(domain, "sender")
    reader = stack.new_mailbox(domain, "reader")
    other = stack.new_mailbox(domain, "other")
    _patch(stack, outbound_messages_per_hour=5)

    accepted: list[str] = []
    refusals: list[tuple[int, str]] = []
    with stack.submission(sender) as client:
        for number in range(8):
            message = make_message(sender, [reader], f"message {number}")
            try:
                assert client.send_message(message) == {}
                accepted.append(str(message["Message-ID"]))
            except smtplib.SMTPRecipientsRefused as error:
                code, text = error.recipients[reader]
                refusals.append((code, text.decode(errors="replace")))
                client.rset()
    assert len(accepted) == 5, (accepted, refusals)
    assert len(refusals) == 3, refusals
    for code, text in refusals:
        assert code == 450, text
        assert "Outbound limit reached: this login may send to 5 recipients per hour" in text
        assert "each recipient counts as one message" in text
    # Another login has its own count.
    fine = make_message(other, [reader], "someone else")
    with stack.submission(other) as client:
        assert client.send_message(fine) == {}
    accepted.append(str(fine["Message-ID"]))
    # Every accepted message arrives.
    wait_for(
        "every accepted message in the reader's INBOX",
        lambda: set(accepted) <= set(stack.inbox(reader)),
        timeout=90,
    )


# --- anvil: per-client limits -----------------------------------------------------------------
def _from_edge(stack: Stack, script: str) -> str:
    """Runs a Python script in a throwaway container on the stack's edge network: a
    client address of its own, so its counts never touch the tests sharing the stack."""
    result = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--network",
            f"{stack.project}_edge",
            "--entrypoint",
            "python3",
            f"mailyard/postfix:{stack.env.get('MAILYARD_VERSION', 'latest')}",
            "-c",
            script,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


HOLD_CONNECTIONS = """
import socket
held = []
for number in range({count}):
    connection = socket.create_connection(("postfix", {port}), timeout=30)
    held.append(connection)  # kept open: they count as long as they are
    reader = connection.makefile("rb")
    line = b""
    while True:
        line = reader.readline()
        if not line or line[3:4] != b"-":
            break
    print(number + 1, line.decode(errors="replace").strip() or "closed", flush=True)
"""


def test_too_many_connections_from_one_client_are_refused(stack: Stack) -> None:
    # Default client_connection_count_limit: 20 at once per client and port. The 21st
    # connection to submission is turned away by smtpd (anvil) with 421.
    output = _from_edge(stack, HOLD_CONNECTIONS.format(port=587, count=21))
    lines = output.strip().splitlines()
    assert len(lines) == 21, output
    assert all(" 220 " in line for line in lines[:20]), output
    assert lines[20].startswith("21 421 4.7.0"), output
    assert "too many connections" in lines[20], output


MESSAGES = """
import smtplib
client = smtplib.SMTP("postfix", 25, local_hostname="hostile.remote.test", timeout=60)
client.ehlo()
for number in range(5):
    code, text = client.mail("bulk@remote.test")
    print(number + 1, code, text.decode(errors="replace"))
    if code != 250:
        break
    client.rset()
client.quit()
"""


def test_message_rate_limit_bites_a_hostile_client(stack: Stack, restore_settings: None) -> None:
    _patch(stack, client_message_rate_limit=3)
    output = _from_edge(stack, MESSAGES)
    lines = output.strip().splitlines()
    assert [line.split()[1] for line in lines[:3]] == ["250", "250", "250"], output
    assert lines[3].startswith("4 450 "), output
    assert "4.7.1 Error: too much mail from" in lines[3], output


# --- the settings pipeline --------------------------------------------------------------------
def test_new_settings_reach_postfix_and_bad_values_are_refused(
    stack: Stack, restore_settings: None
) -> None:
    schema = stack.api("GET", "/settings/schema").json()
    properties = schema.get("properties", schema)
    for name in (
        "reject_hosted_sender_spoofing",
        "client_connection_count_limit",
        "client_connection_rate_limit",
        "client_message_rate_limit",
        "client_auth_rate_limit",
        "client_rate_time_unit",
        "outbound_messages_per_hour",
    ):
        assert name in str(properties), name

    for bad in (
        {"client_rate_time_unit": "2h"},
        {"client_rate_time_unit": "60s\nmynetworks = 0.0.0.0/0"},
        {"outbound_messages_per_hour": -1},
        {"client_connection_count_limit": "20"},
    ):
        response = stack.api("PATCH", "/settings", json=bad, timeout=60)
        assert response.status_code == 422, (bad, response.text)

    _patch(
        stack,
        client_connection_rate_limit=500,
        client_auth_rate_limit=40,
        client_rate_time_unit="2m",
        outbound_messages_per_hour=1000,
    )
    postconf = stack.exec(
        "postfix",
        "postconf",
        "-h",
        "smtpd_client_connection_rate_limit",
        "smtpd_client_auth_rate_limit",
        "anvil_rate_time_unit",
    ).stdout.split()
    assert postconf == ["500", "40", "2m"], postconf
    # policyd-rate-limit was restarted on its new file by mailyard-postfix-reload.
    limits = stack.exec(
        "postfix",
        "policyd-rate-limit",
        "-f",
        "/run/policyd-rate-limit/started-with.yaml",
        "--get-config",
        "limits",
    ).stdout
    assert limits.strip() == "[[1000, 3600]]", limits
    assert PASSWORD  # the stack's users keep working with the new limits
    domain = stack.new_domain("afterlimits")
    alice = stack.new_mailbox(domain, "alice")
    message = make_message(alice, [alice], "after the change")
    with stack.submission(alice) as client:
        assert client.send_message(message) == {}
    stack.wait_for_delivery(alice, str(message["Message-ID"]))
    assert str(message["Message-ID"]) in imap_message_ids(
        stack.host, stack.ports["imaps"], alice, PASSWORD
    )
