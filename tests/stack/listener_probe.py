"""Tries internal listeners the way an intruder would, each with its own protocol.

Run inside a container (stdlib only): reads a JSON list of attempts from stdin, each
{"name", "host", "port", "protocol"}, tries them all at once and prints a JSON list of
results, each the attempt plus "outcome" and "detail":
  unreachable   no TCP connection (refused, filtered, no route, timeout)
  rejected      connected, but the service refused the transaction
  accepted      the service did what was asked (an SMTP/LMTP message taken, a policy
                answered, clamd's PONG, an HTTP 2xx/401, ...)
Used by tests/stack/test_isolation.py.
"""

from __future__ import annotations

import json
import socket
import struct
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

TIMEOUT = 4.0
PROBE_ID = "isolation-probe"


class Refused(Exception):
    """The service answered, and said no."""


def _lines(sock: socket.socket) -> Callable[[], str]:
    reader = sock.makefile("rb")

    def read() -> str:
        line = reader.readline(4096)
        if not line:
            raise Refused("connection closed")
        return line.decode("utf-8", "replace").rstrip("\r\n")

    return read


def _reply(read: Callable[[], str]) -> str:
    line = read()
    while len(line) > 3 and line[3] == "-":
        line = read()
    return line


def _smtp(sock: socket.socket, greeting: str, attempt: dict[str, Any]) -> str:
    """A whole transaction: EHLO/LHLO, MAIL, RCPT, DATA. Accepted only if the message is."""
    read = _lines(sock)
    banner = _reply(read)
    if not banner.startswith("220"):
        raise Refused(f"banner: {banner}")
    recipient = attempt.get("recipient", "postmaster@mailyard.invalid")
    steps = [
        (f"{greeting} intruder.invalid", "250"),
        ("MAIL FROM:<intruder@intruder.invalid>", "250"),
        (f"RCPT TO:<{recipient}>", "250"),
        ("DATA", "354"),
        (
            f"From: <intruder@intruder.invalid>\r\nTo: <{recipient}>\r\n"
            f"Subject: {PROBE_ID}\r\nMessage-ID: <{PROBE_ID}@intruder.invalid>\r\n\r\n"
            f"{PROBE_ID}\r\n.",
            "250",
        ),
    ]
    for command, expected in steps:
        sock.sendall(command.encode() + b"\r\n")
        answer = _reply(read)
        if not answer.startswith(expected):
            raise Refused(f"{command.split(' ', 1)[0][:10]}: {answer}")
    return "message accepted"


def _http(sock: socket.socket, attempt: dict[str, Any]) -> str:
    path = attempt.get("path", "/")
    sock.sendall(
        f"GET {path} HTTP/1.0\r\nHost: {attempt['host']}\r\nUser-Agent: {PROBE_ID}\r\n\r\n".encode()
    )
    status = _lines(sock)()
    parts = status.split()
    if len(parts) < 2 or not parts[1].isdigit():
        raise Refused(f"not HTTP: {status}")
    return status


def _policy(sock: socket.socket, _attempt: dict[str, Any]) -> str:
    request = (
        "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n"
        "client_address=192.0.2.7\nclient_name=intruder.invalid\nhelo_name=intruder.invalid\n"
        "sender=intruder@intruder.invalid\nrecipient=postmaster@mailyard.invalid\n\n"
    )
    sock.sendall(request.encode())
    answer = _lines(sock)()
    if not answer.startswith("action="):
        raise Refused(answer)
    return answer


def _clamd(sock: socket.socket, _attempt: dict[str, Any]) -> str:
    sock.sendall(b"zPING\0")
    answer = sock.recv(64).rstrip(b"\0\n").decode("utf-8", "replace")
    if answer != "PONG":
        raise Refused(answer or "no answer")
    return answer


def _milter(sock: socket.socket, _attempt: dict[str, Any]) -> str:
    body = b"O" + struct.pack("!III", 6, 0x1FF, 0)
    sock.sendall(struct.pack("!I", len(body)) + body)
    header = sock.recv(4)
    if len(header) < 4:
        raise Refused("no option negotiation")
    return "milter negotiated"


def _sasl(sock: socket.socket, _attempt: dict[str, Any]) -> str:
    sock.sendall(b"VERSION\t1\t2\nCPID\t4242\n")
    answer = _lines(sock)()
    if not answer.startswith("VERSION"):
        raise Refused(answer)
    return answer


def _pdp(sock: socket.socket, _attempt: dict[str, Any]) -> str:
    sock.sendall(b"request=AM.PDP\r\nmail_id=intruder\r\n\r\n")
    answer = _lines(sock)()
    return answer


def _mysql(sock: socket.socket, _attempt: dict[str, Any]) -> str:
    header = sock.recv(4)
    if len(header) < 4:
        raise Refused("no handshake")
    payload = sock.recv(struct.unpack("<I", header[:3] + b"\0")[0])
    if payload[:1] == b"\xff":
        raise Refused("refused the client: " + payload[3:].decode("utf-8", "replace"))
    return "server handshake"


PROTOCOLS: dict[str, Callable[[socket.socket, dict[str, Any]], str]] = {
    "smtp": lambda sock, attempt: _smtp(sock, "EHLO", attempt),
    "lmtp": lambda sock, attempt: _smtp(sock, "LHLO", attempt),
    "http": _http,
    "policy": _policy,
    "clamd": _clamd,
    "milter": _milter,
    "sasl": _sasl,
    "pdp": _pdp,
    "mysql": _mysql,
}


def attempt(item: dict[str, Any]) -> dict[str, Any]:
    try:
        sock = socket.create_connection((item["host"], item["port"]), timeout=TIMEOUT)
    except OSError as exc:
        return {**item, "outcome": "unreachable", "detail": str(exc)}
    with sock:
        sock.settimeout(TIMEOUT)
        try:
            detail = PROTOCOLS[item["protocol"]](sock, item)
        except Refused as exc:
            return {**item, "outcome": "rejected", "detail": str(exc)}
        except OSError as exc:
            return {**item, "outcome": "rejected", "detail": f"connection ended: {exc}"}
    return {**item, "outcome": "accepted", "detail": detail}


def main() -> None:
    attempts = json.load(sys.stdin)
    with ThreadPoolExecutor(max_workers=64) as pool:
        results = list(pool.map(attempt, attempts))
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
