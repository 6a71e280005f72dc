"""Small real-protocol helpers for the stack tests (stdlib clients only)."""

from __future__ import annotations

import base64
import email
import imaplib
import poplib
import re
import smtplib
import socket
import ssl
import time
import uuid
from collections.abc import Callable
from email.message import EmailMessage
from typing import TypeVar

T = TypeVar("T")


# Every port compose.yaml publishes, by the name tests use for it -> its variable.
PUBLISHED_PORTS = {
    "smtp": "MAILYARD_SMTP_PORT",
    "smtps": "MAILYARD_SMTPS_PORT",
    "submission": "MAILYARD_SUBMISSION_PORT",
    "imap": "MAILYARD_IMAP_PORT",
    "imaps": "MAILYARD_IMAPS_PORT",
    "pop3": "MAILYARD_POP3_PORT",
    "pop3s": "MAILYARD_POP3S_PORT",
    "managesieve": "MAILYARD_MANAGESIEVE_PORT",
    "api": "MAILYARD_API_PORT",
    "http": "MAILYARD_HTTP_PORT",
    "https": "MAILYARD_HTTPS_PORT",
    # Postorius/HyperKitty (service mailman-web, compose profile "web").
    "web": "MAILYARD_WEB_PORT",
}


# Services that run once at `up` and exit (compose.yaml): no container stays for them.
ONE_SHOT_SERVICES = frozenset({"controller-init"})


def free_ports(count: int) -> list[int]:
    """`count` different loopback ports nobody listens on right now. The probes stay
    bound until all are chosen: probing one at a time can return the same port twice
    (then `up -d` fails with "port is already allocated")."""
    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [int(probe.getsockname()[1]) for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def insecure_tls() -> ssl.SSLContext:
    """The stack serves a self-signed certificate until ACME replaces it."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def make_message(
    sender: str, recipients: list[str], subject: str, body: str = "hello"
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Subject"] = subject
    message["Message-ID"] = f"<{uuid.uuid4().hex}@test.mailyard>"
    message.set_content(body)
    return message


def wait_for(
    what: str, probe: Callable[[], T | None], timeout: float = 30.0, interval: float = 0.5
) -> T:
    """Poll `probe` until it returns something truthy; fail with `what` on timeout."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = probe()
        except (OSError, imaplib.IMAP4.error, poplib.error_proto, smtplib.SMTPException) as exc:
            last_error = exc
            result = None
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout:.0f}s waiting for {what}; last error: {last_error}"
    )


def imap_message_ids(
    host: str, port: int, user: str, password: str, folder: str = "INBOX"
) -> list[str]:
    """Message-IDs in `folder`, read over IMAPS."""
    with imaplib.IMAP4_SSL(host, port, ssl_context=insecure_tls(), timeout=15) as client:
        client.login(user, password)
        status, _ = client.select(f'"{folder}"', readonly=True)
        if status != "OK":
            return []
        _, data = client.search(None, "ALL")
        ids: list[str] = []
        for number in data[0].split():
            _, fetched = client.fetch(number, "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
            raw = fetched[0][1] if fetched and isinstance(fetched[0], tuple) else b""
            parsed = email.message_from_bytes(raw)
            if parsed["Message-ID"]:
                ids.append(parsed["Message-ID"].strip())
        return ids


def imap_messages(
    host: str, port: int, user: str, password: str, *, folder: str = "INBOX"
) -> list[EmailMessage]:
    """Every message in `folder`, parsed."""
    messages: list[EmailMessage] = []
    with imaplib.IMAP4_SSL(host, port, ssl_context=insecure_tls(), timeout=15) as client:
        client.login(user, password)
        client.select(folder, readonly=True)
        _, data = client.search(None, "ALL")
        for number in data[0].split():
            _, fetched = client.fetch(number, "(BODY.PEEK[])")
            parsed = email.message_from_bytes(fetched[0][1], _class=EmailMessage)
            messages.append(parsed)  # type: ignore[arg-type]
    return messages


def imap_fetch(
    host: str, port: int, user: str, password: str, message_id: str, *, folder: str = "INBOX"
) -> email.message.Message | None:
    with imaplib.IMAP4_SSL(host, port, ssl_context=insecure_tls(), timeout=15) as client:
        client.login(user, password)
        client.select(folder, readonly=True)
        _, data = client.search(None, "HEADER", "Message-ID", message_id)
        numbers = data[0].split()
        if not numbers:
            return None
        _, fetched = client.fetch(numbers[0], "(BODY.PEEK[])")
        return email.message_from_bytes(fetched[0][1])


def wait_for_delivery(
    host: str,
    port: int,
    user: str,
    password: str,
    message_id: str,
    *,
    folder: str = "INBOX",
    timeout: float = 30.0,
) -> None:
    wait_for(
        f"{message_id} in {user}'s {folder}",
        lambda: message_id in imap_message_ids(host, port, user, password, folder),
        timeout=timeout,
    )


def pop3_message_ids(host: str, port: int, user: str, password: str) -> list[str]:
    client = poplib.POP3_SSL(host, port, context=insecure_tls(), timeout=15)
    try:
        client.user(user)
        client.pass_(password)
        count, _ = client.stat()
        ids = []
        for number in range(1, count + 1):
            _, lines, _ = client.top(number, 0)
            parsed = email.message_from_bytes(b"\r\n".join(lines))
            if parsed["Message-ID"]:
                ids.append(parsed["Message-ID"].strip())
        return ids
    finally:
        client.quit()


def imap_login_works(host: str, port: int, user: str, password: str) -> bool:
    with imaplib.IMAP4_SSL(host, port, ssl_context=insecure_tls(), timeout=15) as client:
        try:
            client.login(user, password)
        except imaplib.IMAP4.error:
            return False
        return True


class ManageSieve:
    """Just enough of RFC 5804 to upload and activate a script over STARTTLS."""

    def __init__(self, host: str, port: int) -> None:
        self._socket = socket.create_connection((host, port), timeout=15)
        self._file = self._socket.makefile("rb")
        self.capabilities = self._read_response()

    def _send(self, line: str) -> None:
        self._socket.sendall(line.encode() + b"\r\n")

    def _read_response(self) -> list[str]:
        lines = []
        while True:
            raw = self._file.readline()
            if not raw:
                raise ConnectionError("ManageSieve server closed the connection")
            line = raw.decode().rstrip("\r\n")
            if line.startswith(("OK", "NO", "BYE")):
                if not line.startswith("OK"):
                    raise RuntimeError(f"ManageSieve: {line} (after {lines})")
                return lines
            lines.append(line)

    def starttls(self) -> None:
        self._send("STARTTLS")
        self._read_response()
        self._socket = insecure_tls().wrap_socket(self._socket)
        self._file = self._socket.makefile("rb")
        self.capabilities = self._read_response()

    def login(self, user: str, password: str) -> None:
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        self._send(f'AUTHENTICATE "PLAIN" "{token}"')
        self._read_response()

    def put_and_activate(self, name: str, script: str) -> None:
        data = script.encode()
        self._send(f'PUTSCRIPT "{name}" {{{len(data)}+}}')
        self._socket.sendall(data + b"\r\n")
        self._read_response()
        self._send(f'SETACTIVE "{name}"')
        self._read_response()

    def logout(self) -> None:
        self._send("LOGOUT")
        self._socket.close()


def smtp_reply_code(error: smtplib.SMTPRecipientsRefused, recipient: str) -> tuple[int, str]:
    code, text = error.recipients[recipient]
    return code, text.decode(errors="replace")


def extract_size(ehlo_features: dict[str, str]) -> int:
    match = re.match(r"\d+", ehlo_features.get("size", ""))
    return int(match.group(0)) if match else 0


class IdleSession:
    """An IMAP session in IDLE (RFC 2177), read line by line."""

    def __init__(self, host: str, port: int, user: str, password: str) -> None:
        self.imap = imaplib.IMAP4_SSL(host, port, ssl_context=insecure_tls(), timeout=90)
        self.imap.login(user, password)
        self.imap.select("INBOX")
        self.imap.send(b"idle1 IDLE\r\n")
        assert self.imap.readline().startswith(b"+"), "IDLE was not accepted"

    def wait_for_exists(self, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.imap.readline()
            if b"EXISTS" in line:
                return line
        raise AssertionError("no EXISTS while idling")

    def done(self) -> None:
        self.imap.send(b"DONE\r\n")
        while True:
            line = self.imap.readline()
            if line.startswith(b"idle1 "):
                assert line.startswith(b"idle1 OK"), line
                return
            assert line, "connection closed while ending IDLE"


def imap_message_ids_bulk(
    host: str, port: int, user: str, password: str, folder: str = "INBOX"
) -> list[str]:
    """Message-IDs of every message in `folder` (duplicates kept), in one FETCH: fast
    enough for mailboxes with thousands of messages."""
    with imaplib.IMAP4_SSL(host, port, ssl_context=insecure_tls(), timeout=60) as client:
        client.login(user, password)
        status, data = client.select(f'"{folder}"', readonly=True)
        if status != "OK" or not data or int(data[0] or 0) == 0:
            return []
        _, fetched = client.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        ids: list[str] = []
        for item in fetched:
            if isinstance(item, tuple):
                parsed = email.message_from_bytes(item[1])
                ids.append(str(parsed["Message-ID"] or "").strip())
        return ids
