"""controller/domain/validation.py: what may reach SQL rows, Postfix maps and config files."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from controller.domain.validation import (
    MAX_QUOTA_MB,
    Address,
    check_password,
    check_quota_mb,
    check_text,
    normalize_domain,
    normalize_nexthop,
    parse_address,
)
from controller.errors import InvalidInput

# A 253-character name (the DNS maximum) built from labels of at most 63 characters.
DOMAIN_253 = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])
# 64 + 1 + 189 = 254 characters: the longest address RFC 5321 allows.
DOMAIN_189 = ".".join(["b" * 63, "c" * 63, "d" * 61])
ADDRESS_254 = "x" * 64 + "@" + DOMAIN_189

# Strings that would break out of a Postfix map, an SQL string, a config line or a path.
INJECTIONS = [
    pytest.param("\r\nRCPT TO:<x@y>", id="crlf-smtp"),
    pytest.param("\r", id="cr"),
    pytest.param("\n", id="lf"),
    pytest.param("\x00", id="nul"),
    pytest.param("\t", id="tab"),
    pytest.param("'", id="single-quote"),
    pytest.param('"', id="double-quote"),
    pytest.param("\\", id="backslash"),
    pytest.param("`", id="backtick"),
    pytest.param("%", id="percent"),
    pytest.param("/", id="slash"),
    pytest.param(";", id="semicolon"),
    pytest.param("\u2028", id="line-separator"),
    pytest.param("\u200b", id="zero-width-space"),
]


def _rejects(func: Callable[..., object], *args: object, field: str, **kwargs: Any) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        func(*args, **kwargs)
    assert info.value.field == field
    assert len(info.value.message) > 10
    return info.value


# --- domains -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("München.DE", "xn--mnchen-3ya.de"),
        ("münchen.de", "xn--mnchen-3ya.de"),
        ("xn--mnchen-3ya.de", "xn--mnchen-3ya.de"),
        ("Example.ORG", "example.org"),
        ("  example.org  ", "example.org"),
        ("mail-1.sub.example.co.uk", "mail-1.sub.example.co.uk"),
        ("bücher.example", "xn--bcher-kva.example"),
        (DOMAIN_253, DOMAIN_253),
    ],
)
def test_domain_is_stored_as_lowercase_a_labels(raw: str, stored: str) -> None:
    assert normalize_domain(raw) == stored


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("", id="empty"),
        pytest.param("   ", id="blank"),
        pytest.param("example.org.", id="trailing-dot"),
        pytest.param("localhost", id="single-label"),
        pytest.param("example.123", id="numeric-tld"),
        pytest.param("192.0.2.1", id="ip-address"),
        pytest.param("under_score.example.org", id="underscore"),
        pytest.param("ex ample.org", id="space"),
        pytest.param("-lead.example.org", id="leading-hyphen"),
        pytest.param("a..example.org", id="empty-label"),
        pytest.param(".example.org", id="leading-dot"),
        pytest.param("*.example.org", id="wildcard"),
        pytest.param("a" * 64 + ".example.org", id="label-64"),
        pytest.param(DOMAIN_253 + "x", id="name-254"),
        pytest.param("a" * 10_000 + ".org", id="10000-chars"),
        pytest.param("exa\u00admple.org", id="soft-hyphen"),
        pytest.param("[192.0.2.1]", id="literal"),
    ],
)
def test_domain_rejects_invalid_names(raw: str) -> None:
    _rejects(normalize_domain, raw, field="name")


@pytest.mark.parametrize("injection", INJECTIONS)
def test_domain_rejects_injection(injection: str) -> None:
    _rejects(normalize_domain, f"a.com{injection}RCPT.example", field="name")
    _rejects(normalize_domain, f"example.org{injection}", field="name")


def test_domain_rejects_the_classic_smtp_injection_with_a_clear_message() -> None:
    error = _rejects(normalize_domain, "a.com\r\nRCPT TO:<x@y>", field="name")
    assert "control character" in error.message
    # The message names the code point instead of echoing the raw line break.
    assert "\r" not in error.message
    assert "\n" not in error.message


def test_domain_error_names_the_given_field() -> None:
    _rejects(normalize_domain, "bad_name.org", "target_domain", field="target_domain")


# --- addresses -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "local_part", "domain"),
    [
        ("Alice@Example.ORG", "alice", "example.org"),
        ("  bob@example.org ", "bob", "example.org"),
        ("first.last@example.org", "first.last", "example.org"),
        ("a_b-c.9@example.org", "a_b-c.9", "example.org"),
        ("alice@München.de", "alice", "xn--mnchen-3ya.de"),
        ("x" * 64 + "@example.org", "x" * 64, "example.org"),
        (ADDRESS_254, "x" * 64, DOMAIN_189),
    ],
)
def test_address_is_normalised(raw: str, local_part: str, domain: str) -> None:
    parsed = parse_address(raw)
    assert parsed == Address(local_part, domain)
    assert str(parsed) == f"{local_part}@{domain}"
    assert not parsed.is_catch_all


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("", id="empty"),
        pytest.param("alice", id="no-at"),
        pytest.param("alice@", id="no-domain"),
        pytest.param("@example.org", id="catch-all-not-allowed"),
        pytest.param("alice@example", id="single-label-domain"),
        pytest.param("alice@example.org.", id="trailing-dot"),
        pytest.param("alice@exa_mple.org", id="underscore-domain"),
        pytest.param("alice@[192.0.2.1]", id="domain-literal"),
        pytest.param("a b@example.org", id="space"),
        pytest.param("a@b@example.org", id="two-ats"),
        pytest.param('"a"@example.org', id="quoted-local"),
        pytest.param("user+tag@example.org", id="plus-in-hosted"),
        pytest.param("a=b@example.org", id="equals-in-hosted"),
        pytest.param(".a@example.org", id="leading-dot"),
        pytest.param("a.@example.org", id="trailing-dot-local"),
        pytest.param("a..b@example.org", id="double-dot"),
        pytest.param("jürgen@example.org", id="non-ascii-local"),
        pytest.param("\u0430lice@example.org", id="cyrillic-a"),
        pytest.param(ADDRESS_254 + "x", id="address-255"),
        pytest.param("a" * 10_000 + "@example.org", id="10000-chars"),
        pytest.param("a@" + "b" * 10_000 + ".org", id="10000-char-domain"),
    ],
)
def test_address_rejects_invalid_input(raw: str) -> None:
    _rejects(parse_address, raw, field="address")


def test_address_rejects_a_65_character_local_part() -> None:
    # RFC 5321 4.5.3.1.1: a local part has at most 64 octets, and mailboxes.local_part is
    # VARCHAR(64). validation.py declares MAX_LOCAL_PART_LENGTH = 64 for this.
    _rejects(parse_address, "x" * 65 + "@example.org", field="address")


@pytest.mark.parametrize("injection", INJECTIONS)
@pytest.mark.parametrize("destination", [False, True], ids=["hosted", "destination"])
def test_address_rejects_injection(injection: str, destination: bool) -> None:
    _rejects(parse_address, f"a{injection}b@example.org", field="address", destination=destination)
    _rejects(parse_address, f"ab@example.org{injection}", field="address", destination=destination)


def test_address_rejects_the_classic_smtp_injection() -> None:
    error = _rejects(parse_address, "a@a.com\r\nRCPT TO:<x@y>", field="address")
    assert "control character" in error.message


def test_catch_all_only_where_allowed() -> None:
    parsed = parse_address("@Example.ORG", allow_catch_all=True)
    assert parsed.is_catch_all
    assert str(parsed) == "@example.org"
    assert parse_address("team@example.org", allow_catch_all=True) == Address("team", "example.org")
    _rejects(parse_address, "@example.org", field="address")
    _rejects(parse_address, "@example.org", field="address", destination=True)
    _rejects(parse_address, "@exa mple.org", field="address", allow_catch_all=True)


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("User+Tag@Elsewhere.example", "user+tag@elsewhere.example"),
        ("bounce=x@lists.example", "bounce=x@lists.example"),
    ],
)
def test_destinations_accept_tags_that_hosted_addresses_refuse(raw: str, stored: str) -> None:
    assert str(parse_address(raw, "destinations[0]", destination=True)) == stored
    _rejects(parse_address, raw, "address", field="address")


# --- free text -----------------------------------------------------------------------------
def test_description_keeps_printable_text_and_strips_whitespace() -> None:
    text = 'Ops team\'s "main" domain; 100% / `ok` \\o/'
    assert check_text(f"  {text}  ", "description") == text


@pytest.mark.parametrize("injection", ["\r\n", "\n", "\r", "\x00", "\t", "\x1b[31m", "\u2029"])
def test_description_rejects_control_characters(injection: str) -> None:
    _rejects(check_text, f"line one{injection}line two", "description", field="description")


def test_description_length_is_bounded() -> None:
    assert check_text("d" * 255, "description") == "d" * 255
    _rejects(check_text, "d" * 256, "description", field="description")
    _rejects(check_text, "d" * 10_000, "description", field="description")


# --- passwords -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "password",
    [
        "12345678",
        "p" * 1024,
        "pässwörd ünïcode",
        "spaces and 'quotes' \"double\" \\ % ; / `tick`",
        "emoji 🔑🔑🔑",
    ],
)
def test_password_accepts_printable_text(password: str) -> None:
    assert check_password(password) == password


@pytest.mark.parametrize(
    "password",
    [
        pytest.param("", id="empty"),
        pytest.param("1234567", id="7-chars"),
        pytest.param("p" * 1025, id="1025-chars"),
        pytest.param("p" * 10_000, id="10000-chars"),
        pytest.param("password\x00tail", id="nul"),
        pytest.param("password\r\n", id="crlf"),
        pytest.param("pass\nword", id="lf"),
        pytest.param("pass\tword", id="tab"),
        pytest.param("pass\x7fword", id="del"),
    ],
)
def test_password_rejects(password: str) -> None:
    _rejects(check_password, password, field="password")


# --- quota ---------------------------------------------------------------------------------
@pytest.mark.parametrize("quota", [0, 1, 1024, MAX_QUOTA_MB])
def test_quota_accepts_0_to_max(quota: int) -> None:
    assert check_quota_mb(quota) == quota


@pytest.mark.parametrize("quota", [-1, -1024, MAX_QUOTA_MB + 1, 10**15, True, False])
def test_quota_rejects(quota: int) -> None:
    _rejects(check_quota_mb, quota, field="quota_mb")


# --- relay next hops -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("mx.example.net", "mx.example.net"),
        ("MX.Example.NET", "mx.example.net"),
        ("mx.example.net:2525", "mx.example.net:2525"),
        ("[mx.example.net]", "[mx.example.net]"),
        ("[mx.example.net]:25", "[mx.example.net]:25"),
        ("[MX.Example.net]:0025", "[mx.example.net]:25"),
        ("[192.0.2.1]:25", "[192.0.2.1]:25"),
        ("[192.0.2.1]", "[192.0.2.1]"),
        ("mx.münchen.de:25", "mx.xn--mnchen-3ya.de:25"),
        ("  [mx.example.net]:587 ", "[mx.example.net]:587"),
        ("mx.example.net:65535", "mx.example.net:65535"),
        # A single label is a host on the local network, e.g. a compose service.
        ("Relay:2525", "relay:2525"),
        ("[relay]:25", "[relay]:25"),
    ],
)
def test_nexthop_accepted_forms(raw: str, stored: str) -> None:
    assert normalize_nexthop(raw) == stored


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("192.0.2.1", id="bare-ip"),
        pytest.param("192.0.2.1:25", id="bare-ip-port"),
        pytest.param("mx.example.net:0", id="port-0"),
        pytest.param("mx.example.net:70000", id="port-70000"),
        pytest.param("[mx.example.net]:65536", id="port-65536"),
        pytest.param("mx.example.net:-1", id="negative-port"),
        pytest.param("mx.example.net:smtp", id="named-port"),
        pytest.param("mx.example.net:25:25", id="two-ports"),
        pytest.param("[x", id="unclosed-bracket"),
        pytest.param("[mx.example.net:25", id="unclosed-bracket-port"),
        pytest.param("[mx.example.net]x", id="junk-after-bracket"),
        pytest.param("[]:25", id="empty-brackets"),
        pytest.param("[2001:db8::1]:25", id="ipv6-bracketed"),
        pytest.param("2001:db8::1", id="ipv6-bare"),
        pytest.param("mx.example.net\n", id="newline"),
        pytest.param("mx.example.net:25\r\nmynetworks = 0.0.0.0/0", id="config-injection"),
        pytest.param("mx_1.example.net", id="underscore"),
        pytest.param("25", id="number-only"),
        pytest.param("", id="empty"),
        pytest.param("mx.example.net;rm", id="semicolon"),
    ],
)
def test_nexthop_rejections(raw: str) -> None:
    _rejects(normalize_nexthop, raw, field="nexthop")


def test_nexthop_rejects_a_non_ascii_digit_port_as_invalid_input() -> None:
    # "²" is a Unicode digit (str.isdigit() is True) that int() cannot parse: it must be
    # reported as invalid input (HTTP 422), not escape as a ValueError (HTTP 500).
    _rejects(normalize_nexthop, "mx.example.net:²", field="nexthop")
