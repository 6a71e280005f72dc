"""A client for Amavis's policy delegation protocol (AM.PDP), used to release quarantine.

The protocol (amavisd-new README.protocol): the client sends `name=value` lines ending in
CR LF and an empty line; the server answers the same way. Values are %XX-encoded where
they hold anything but printable ASCII. A release answers with `setreply=<SMTP reply>`,
e.g. `setreply=250 2.0.0 Ok,%20id=rel-...`; 2xx is success, 4xx/5xx a failure.

Every name and value is checked before it goes on the wire: names are lowercase words,
values must not contain CR, LF or NUL (the caller's values are validated ids and
addresses, so one that does is a bug or an injection attempt), and `%`, `=`, space and
anything outside printable ASCII are %XX-encoded.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass

from controller.errors import Unavailable

_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
_FORBIDDEN_IN_VALUE = frozenset("\r\n\x00")
MAX_REPLY_BYTES = 64 * 1024
DEFAULT_TIMEOUT = 30.0  # a release re-sends the message through Postfix before answering


class ProtocolError(ValueError):
    """A request that must not be sent, or a reply that cannot be understood."""


def encode_value(value: str) -> str:
    """%XX-encode a value; refuse CR, LF and NUL outright."""
    bad = sorted({repr(char) for char in value if char in _FORBIDDEN_IN_VALUE})
    if bad:
        raise ProtocolError(f"value contains {', '.join(bad)}, which AM.PDP cannot carry")
    out: list[str] = []
    for byte in value.encode("utf-8"):
        if 0x21 <= byte <= 0x7E and byte not in (0x25, 0x3D):  # printable, not '%' or '='
            out.append(chr(byte))
        else:
            out.append(f"%{byte:02X}")
    return "".join(out)


def decode_value(value: str) -> str:
    """Undo %XX encoding (invalid escapes are kept literally, as Amavis does)."""
    raw = value.encode("latin-1", errors="replace")
    decoded = re.sub(rb"%([0-9A-Fa-f]{2})", lambda match: bytes([int(match[1], 16)]), raw)
    return decoded.decode("utf-8", errors="replace")


def encode_request(attributes: Sequence[tuple[str, str]]) -> bytes:
    """The request bytes: one `name=value` CR LF per attribute, then an empty line."""
    lines: list[str] = []
    for name, value in attributes:
        if not _NAME.fullmatch(name):
            raise ProtocolError(f"attribute name {name!r} is not a plain lowercase word")
        lines.append(f"{name}={encode_value(value)}\r\n")
    return ("".join(lines) + "\r\n").encode("ascii")


def parse_reply(data: bytes) -> list[tuple[str, str]]:
    """`name=value` lines (decoded) up to the empty line that ends the reply."""
    attributes: list[tuple[str, str]] = []
    text = data.decode("latin-1")
    for raw_line in text.split("\n"):
        line = raw_line.removesuffix("\r")
        if not line:
            break
        name, equals, value = line.partition("=")
        if not equals:
            raise ProtocolError(f"reply line without '=': {line[:200]!r}")
        attributes.append((name.strip(), decode_value(value)))
    return attributes


@dataclass(frozen=True)
class ReleaseResult:
    """What Amavis answered to a release: its SMTP-style reply text(s)."""

    replies: tuple[str, ...]
    log_id: str | None = None


class AmavisPdpClient:
    """Talks AM.PDP to amavis:9998 (host and port from the process settings)."""

    def __init__(self, host: str, port: int, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout

    def request(self, attributes: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
        """Send one request, return the reply's attributes; Unavailable on network errors."""
        payload = encode_request(attributes)
        where = f"{self.host}:{self.port}"
        try:
            with socket.create_connection((self.host, self.port), timeout=self.timeout) as sock:
                sock.sendall(payload)
                data = _read_reply(sock)
        except OSError as exc:
            raise Unavailable(
                f"Amavis (AM.PDP at {where}) cannot be reached: {exc}; check that the "
                "amavis container runs and MAILYARD_FILTER is not 'off', then retry"
            ) from exc
        try:
            return parse_reply(data)
        except ProtocolError as exc:
            raise Unavailable(f"Amavis (AM.PDP at {where}) answered unexpectedly: {exc}") from exc

    def release(
        self,
        mail_id: str,
        secret_id: str,
        *,
        partition_tag: int | None = None,
        recipients: Sequence[str] = (),
        requested_by: str = "",
    ) -> ReleaseResult:
        """Release a message from the SQL quarantine (quar_type Q) to its recipients, or
        only to `recipients` when given. Unavailable unless every reply is 2xx."""
        attributes: list[tuple[str, str]] = [
            ("request", "release"),
            ("mail_id", mail_id),
            ("secret_id", secret_id),
            ("quar_type", "Q"),
        ]
        if partition_tag is not None:
            attributes.append(("partition_tag", str(partition_tag)))
        if requested_by:
            attributes.append(("requested_by", requested_by))
        attributes.extend(("recipient", f"<{recipient}>") for recipient in recipients)
        reply = self.request(attributes)
        replies = tuple(value for name, value in reply if name == "setreply")
        log_id = next((value for name, value in reply if name == "log_id"), None)
        if not replies:
            raise Unavailable(
                f"Amavis (AM.PDP at {self.host}:{self.port}) gave no answer to the release "
                f"of {mail_id}; nothing was released"
            )
        failed = [text for text in replies if text[:1] != "2"]
        if failed:
            raise Unavailable(
                f"Amavis refused to release {mail_id}: {'; '.join(failed)}",
                extra={"amavis_reply": list(replies)},
            )
        return ReleaseResult(replies=replies, log_id=log_id)


def _read_reply(sock: socket.socket) -> bytes:
    """Read until the empty line that ends a reply (or the server closes)."""
    data = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            return data
        data += chunk
        if data.startswith((b"\r\n", b"\n")) or b"\n\r\n" in data or b"\n\n" in data:
            return data
        if len(data) > MAX_REPLY_BYTES:
            raise OSError(f"reply longer than {MAX_REPLY_BYTES} bytes")
