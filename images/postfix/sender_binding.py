"""Which header addresses a SASL login may use: the envelope's rules, applied to From/Sender.

Pure logic with the standard library only (the milter glue is sender_milter.py), so the
unit tests run it without libmilter. Postfix checks the envelope sender against
smtpd_sender_login_maps (reject_sender_login_mismatch); OpenDKIM signs for the domain of
the header From. This module closes the gap between the two: every address in From (and
Sender, when present) must be one the login owns according to the same map.

A header is read by two parsers, email.utils.getaddresses (strict) and the email
package's header registry. They must agree on the list of addresses and find nothing
malformed: a header that two parsers read differently may be read a third way by
OpenDKIM or by the recipient's mail program, e.g. `ceo@victim.example <me@mine.example>`
is `ceo@victim.example` for one and `me@mine.example` for another. Such a header is
refused rather than guessed at.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email import errors
from email.headerregistry import HeaderRegistry
from email.utils import getaddresses

# Postfix's recipient_delimiter (main.cf): user+tag@domain is owned like user@domain.
DELIMITER = "+"
# Header defects that mean the parsers may not have read what a mail program shows.
_FATAL_DEFECTS = (errors.InvalidHeaderDefect, errors.NonPrintableDefect)
_REGISTRY = HeaderRegistry()


class LookupFailed(Exception):
    """The owner map could not be asked (database or proxymap down): try again later."""


@dataclass(frozen=True)
class Refusal:
    """An SMTP reply refusing the message."""

    code: str
    xcode: str
    text: str


# Looks up one key in smtpd_sender_login_maps: the logins that own it (empty: no owner).
OwnerLookup = Callable[[str], set[str]]


def unfold(value: str) -> str:
    """A header value as one line (RFC 5322 unfolding: CRLF before white space goes)."""
    return value.replace("\r\n", "").replace("\n", "")


def header_addresses(value: str) -> list[str] | None:
    """The addresses of one From/Sender header, lowercase; None when it cannot be read
    unambiguously (the two parsers disagree, or it is malformed)."""
    value = unfold(value)
    if any(ord(char) < 32 and char != "\t" for char in value):
        return None
    simple = [address for name, address in getaddresses([value]) if name or address]
    try:
        parsed = _REGISTRY("From", value)
    except (errors.HeaderParseError, IndexError, ValueError):
        return None
    if any(isinstance(defect, _FATAL_DEFECTS) for defect in parsed.defects):
        return None
    registry = [address.addr_spec for address in parsed.addresses]
    if not simple or [a.lower() for a in simple] != [a.lower() for a in registry]:
        return None
    if any(address.count("@") != 1 or address.startswith("@") for address in simple):
        return None
    return [address.lower() for address in simple]


def lookup_keys(address: str) -> list[str]:
    """The keys Postfix tries for an address in smtpd_sender_login_maps, in order: the
    full address, the address without its +extension, then @domain."""
    local, _, domain = address.rpartition("@")
    keys = [address]
    base = local.split(DELIMITER, 1)[0]
    if base and base != local:
        keys.append(f"{base}@{domain}")
    keys.append(f"@{domain}")
    return keys


def owners(address: str, lookup: OwnerLookup) -> set[str]:
    """The logins that own `address`: the first key with an answer decides, as in Postfix."""
    for key in lookup_keys(address):
        found = lookup(key)
        if found:
            return {owner.strip().lower() for owner in found if owner.strip()}
    return set()


def check(
    login: str | None,
    headers: Iterable[tuple[str, str]],
    lookup: OwnerLookup,
) -> Refusal | None:
    """None when the message may go on; otherwise the reply that refuses it.

    `headers` are the message's header fields (name, value) in order; only From and
    Sender are read. Raises LookupFailed when the owner map cannot be asked.
    """
    if not login:
        # Only reached if the milter is put on a port without mandatory AUTH.
        return Refusal("550", "5.7.0", "Authentication required to submit mail here")
    login = login.lower()
    fields: dict[str, list[str]] = {"from": [], "sender": []}
    for name, value in headers:
        if name.lower() in fields:
            fields[name.lower()].append(value)
    if not fields["from"]:
        return Refusal(
            "550",
            "5.6.0",
            "The message has no From: header. Your mail program must add one with your own address",
        )
    for name, values in (("From", fields["from"]), ("Sender", fields["sender"])):
        for value in values:
            addresses = header_addresses(value)
            if addresses is None:
                shown = unfold(value).strip()[:200]
                return Refusal(
                    "550",
                    "5.7.1",
                    f"Cannot tell which address the {name}: header names ({shown!r}); "
                    "write it as Name <address>",
                )
            for address in addresses:
                if login not in owners(address, lookup):
                    return Refusal(
                        "550",
                        "5.7.1",
                        f"{name}: address <{address}> is not yours: {login} may not send "
                        "as it (use your own address or one of your aliases)",
                    )
    return None
