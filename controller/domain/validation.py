"""Normalisation and validation of names that end up in SQL rows, maps and config files.

Every value accepted here is safe to place in a Postfix or Dovecot config file and to be
looked up by their SQL maps: no control characters, no quotes, no backslashes, no `%`
(Postfix and Dovecot expand it), no `/` (maildir paths) and nothing outside ASCII once
IDNA-encoded. RFC syntax is checked by `email-validator` and `idna`, not by regexes here.
"""

from __future__ import annotations

import ipaddress
import string
import unicodedata
from dataclasses import dataclass

import idna
from email_validator import EmailNotValidError, validate_email

from controller.errors import InvalidInput

MAX_DOMAIN_LENGTH = 253
MAX_ADDRESS_LENGTH = 254  # RFC 5321 path limit (256) minus the angle brackets
MAX_LOCAL_PART_LENGTH = 64
MAX_PASSWORD_LENGTH = 1024
MIN_PASSWORD_LENGTH = 8
MAX_QUOTA_MB = 10_000_000  # 10 TB: anything larger is a typo
MAX_TEXT_LENGTH = 255

# Local parts of addresses this server hosts. `+` is the recipient delimiter (user+tag
# reaches user), so it cannot be part of a mailbox or alias name.
_HOSTED_LOCAL_CHARS = frozenset(string.ascii_lowercase + string.digits + "._-")
# Local parts of forwarding destinations may be anyone's address, tags included.
_DESTINATION_LOCAL_CHARS = _HOSTED_LOCAL_CHARS | frozenset("+=")


def _reject_control_characters(value: str, field: str) -> None:
    for char in value:
        if unicodedata.category(char) in {"Cc", "Cf", "Zl", "Zp"}:
            raise InvalidInput(
                f"{field} contains a control character (code point U+{ord(char):04X}); "
                "remove it and try again",
                field=field,
            )


def check_text(value: str, field: str, *, max_length: int = MAX_TEXT_LENGTH) -> str:
    """Free text such as a description: printable, bounded, stripped."""
    _reject_control_characters(value, field)
    value = value.strip()
    if len(value) > max_length:
        raise InvalidInput(f"{field} is longer than {max_length} characters", field=field)
    return value


def normalize_domain(value: str, field: str = "name", *, single_label: bool = False) -> str:
    """Return the domain as lowercase IDNA A-labels, or raise InvalidInput.

    Unicode input (münchen.de) is accepted and stored as its A-label form
    (xn--mnchen-3ya.de), which is what Postfix and DNS see. Mail domains need two labels;
    `single_label` admits host names such as a compose service ("relay") for next hops.
    """
    _reject_control_characters(value, field)
    candidate = value.strip()
    if not candidate:
        raise InvalidInput(f"{field} must not be empty", field=field)
    if candidate.endswith("."):
        raise InvalidInput(f"{field} must not end with a dot: give '{candidate[:-1]}'", field=field)
    if len(candidate) > MAX_DOMAIN_LENGTH * 4:
        raise InvalidInput(f"{field} is longer than {MAX_DOMAIN_LENGTH} characters", field=field)
    try:
        ascii_name = idna.encode(candidate, uts46=True, std3_rules=True).decode("ascii").lower()
    except (idna.IDNAError, UnicodeError) as exc:
        raise InvalidInput(
            f"{field} '{candidate}' is not a valid domain name: {exc}", field=field
        ) from exc
    if len(ascii_name) > MAX_DOMAIN_LENGTH:
        raise InvalidInput(f"{field} is longer than {MAX_DOMAIN_LENGTH} characters", field=field)
    labels = ascii_name.split(".")
    if len(labels) < 2 and not single_label:
        raise InvalidInput(
            f"{field} '{candidate}' needs at least two labels, e.g. example.org", field=field
        )
    if labels[-1].isdigit():
        raise InvalidInput(
            f"{field} '{candidate}' looks like an IP address; give a domain name", field=field
        )
    return ascii_name


@dataclass(frozen=True)
class Address:
    """A normalised mail address; `local_part` is empty for a catch-all (`@domain`)."""

    local_part: str
    domain: str

    @property
    def is_catch_all(self) -> bool:
        return not self.local_part

    def __str__(self) -> str:
        return f"{self.local_part}@{self.domain}"


def _check_local_part(local_part: str, allowed: frozenset[str], field: str, raw: str) -> None:
    bad = sorted({char for char in local_part if char not in allowed})
    if bad:
        shown = " ".join(repr(char) for char in bad)
        allowed_text = "letters, digits, '.', '_', '-'" + (", '+', '='" if "+" in allowed else "")
        raise InvalidInput(
            f"{field} '{raw}' has characters not accepted in this local part: {shown}; "
            f"use {allowed_text}",
            field=field,
        )


def parse_address(
    value: str,
    field: str = "address",
    *,
    allow_catch_all: bool = False,
    destination: bool = False,
) -> Address:
    """Validate an address (RFC 5321 syntax) and return it lowercased, domain in A-labels.

    `allow_catch_all` accepts `@domain`. `destination` accepts the wider character set
    of addresses elsewhere (tags such as `user+news@`), for forwarding targets.
    """
    _reject_control_characters(value, field)
    raw = value.strip()
    if len(raw) > MAX_ADDRESS_LENGTH * 4:
        raise InvalidInput(f"{field} is longer than {MAX_ADDRESS_LENGTH} characters", field=field)
    local_part, at, domain_part = raw.rpartition("@")
    if not at:
        raise InvalidInput(f"{field} '{raw}' is not an address: it has no '@'", field=field)
    domain = normalize_domain(domain_part, field)
    local_part = local_part.lower()
    if not local_part:
        if allow_catch_all:
            return Address("", domain)
        raise InvalidInput(
            f"{field} '{raw}' has nothing before the '@'"
            + ("" if not allow_catch_all else "; use '@domain' for a catch-all"),
            field=field,
        )
    if len(local_part) > MAX_LOCAL_PART_LENGTH:
        raise InvalidInput(
            f"{field}: the part before the '@' is longer than {MAX_LOCAL_PART_LENGTH} "
            "characters (RFC 5321 limit)",
            field=field,
        )
    if not local_part.isascii():
        raise InvalidInput(
            f"{field} '{raw}': non-ASCII local parts need SMTPUTF8 end to end and are not "
            "accepted; use an ASCII local part (the domain may be internationalised)",
            field=field,
        )
    _check_local_part(
        local_part,
        _DESTINATION_LOCAL_CHARS if destination else _HOSTED_LOCAL_CHARS,
        field,
        raw,
    )
    try:
        validate_email(
            f"{local_part}@{domain}",
            allow_smtputf8=False,
            allow_quoted_local=False,
            allow_domain_literal=False,
            check_deliverability=False,
            globally_deliverable=False,
            # Admits `.test` (RFC 6761, for test setups such as our own suite); other
            # special-use names (.invalid, .localhost, .onion, ...) stay refused.
            test_environment=True,
        )
    except EmailNotValidError as exc:
        raise InvalidInput(f"{field} '{raw}' is not a valid address: {exc}", field=field) from exc
    address = Address(local_part, domain)
    if len(str(address)) > MAX_ADDRESS_LENGTH:
        raise InvalidInput(f"{field} is longer than {MAX_ADDRESS_LENGTH} characters", field=field)
    return address


def check_password(value: str, field: str = "password") -> str:
    """Passwords: any printable characters, 8 to 1024 of them, no control characters.

    Control characters (NUL, CR, LF) would break SASL and IMAP literal handling.
    """
    _reject_control_characters(value, field)
    if len(value) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(
            f"{field} is too short: use at least {MIN_PASSWORD_LENGTH} characters", field=field
        )
    if len(value) > MAX_PASSWORD_LENGTH:
        raise InvalidInput(f"{field} is longer than {MAX_PASSWORD_LENGTH} characters", field=field)
    return value


def check_quota_mb(value: int, field: str = "quota_mb") -> int:
    """Quota in MiB; 0 means unlimited."""
    if isinstance(value, bool) or value < 0 or value > MAX_QUOTA_MB:
        raise InvalidInput(
            f"{field} must be a whole number of MiB from 0 (unlimited) to {MAX_QUOTA_MB}",
            field=field,
        )
    return value


def normalize_nexthop(value: str, field: str = "nexthop") -> str:
    """A Postfix relay next hop: `host`, `host:port`, `[host]`, `[host]:port` or `[ip]:port`.

    Brackets mean "connect to this host, no MX lookup", as in Postfix itself. Returned in
    Postfix syntax with the host normalised.
    """
    _reject_control_characters(value, field)
    raw = value.strip()
    rest = raw
    port: int | None = None
    bracketed = rest.startswith("[")
    if bracketed:
        host, close, after = rest[1:].partition("]")
        if not close:
            raise InvalidInput(f"{field} '{raw}' opens '[' without closing it", field=field)
        rest_port = after
    else:
        host, _, port_text = rest.partition(":")
        rest_port = f":{port_text}" if port_text else ""
    if rest_port or rest.endswith(":"):
        digits = rest_port[1:]
        if not rest_port.startswith(":") or not (digits.isascii() and digits.isdigit()):
            raise InvalidInput(f"{field} '{raw}': the port must be a number after ':'", field=field)
        port = int(digits)
        if not 1 <= port <= 65535:
            raise InvalidInput(f"{field} '{raw}': the port must be 1 to 65535", field=field)
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        normalized_host = normalize_domain(host, field, single_label=True)
    else:
        if not bracketed:
            raise InvalidInput(
                f"{field} '{raw}': put an IP address in brackets, e.g. [{ip}]:25", field=field
            )
        if ip.version == 6:
            raise InvalidInput(f"{field} '{raw}': IPv6 next hops are not supported", field=field)
        normalized_host = str(ip)
    text = f"[{normalized_host}]" if bracketed else normalized_host
    return f"{text}:{port}" if port is not None else text
