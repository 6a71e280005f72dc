"""Mail settings: typed, validated, documented, each with a safe default.

They live in the `settings` table as JSON values (only those that differ from the
default are stored) and reach main.cf, master.cf and dovecot.conf through templates.
Every value is checked here so that nothing that reaches a config file can carry a
newline, a quote, a comma where a list is rendered, or anything else that could inject.
Whether Postfix and Dovecot *accept* the result is checked by the daemons themselves
before a change goes live (controller.engine.apply).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal, get_origin

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from email_validator import EmailNotValidError, validate_email
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from controller.domain.validation import normalize_domain, normalize_nexthop
from controller.errors import Action, InvalidInput

MIB = 1024 * 1024
# Patterns are used with fullmatch(): `$` would accept a trailing newline.
# A Postfix time value: a number and a unit (s, m, h, d, w).
_DURATION = re.compile(r"^([1-9][0-9]{0,5})([smhdw])$")
_SECONDS_PER_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# One element of a restriction list: a restriction name, or an argument of the one before
# (a DNSBL domain with an optional reply filter, a lookup table such as inet:host:port).
# No spaces, commas, quotes, `$` (Postfix expands it), `/` (no file paths) or braces.
_RESTRICTION_TOKEN = re.compile(r"^[a-z0-9][a-z0-9_.:=\[\]-]{0,254}$")
_SASL_USERNAME = re.compile(r"^[A-Za-z0-9@._+=-]{1,255}$")

DovecotProtocol = Literal["imap", "pop3", "lmtp", "sieve"]
TlsProtocols = Literal[">=TLSv1.2", ">=TLSv1.3"]
CipherGrade = Literal["high", "medium"]
ClientTlsLevel = Literal["may", "encrypt", "dane", "verify", "secure"]
PostscreenAction = Literal["ignore", "enforce", "drop"]
SpfAction = Literal["reject", "tag", "off"]
# A postscreen DNSBL site: zone, reply filter, optional integer weight. The filter is
# four octets, each a number or a bracketed set of numbers and ranges (127.0.0.2,
# 127.0.0.[2..11], 127.0.0.[2;4;10..11]). Lowercase; no commas, spaces or '$'.
_DNSBL_ZONE = r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,62}"
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_OCTET_RANGE = rf"{_OCTET}(?:\.\.{_OCTET})?"
_OCTET_PATTERN = rf"(?:{_OCTET}|\[{_OCTET_RANGE}(?:;{_OCTET_RANGE})*\])"
_DNSBL_WEIGHT = r"(?:\*-?[0-9]{1,3})?"
_DNSBL_SITE = re.compile(
    rf"{_DNSBL_ZONE}={_OCTET_PATTERN}(?:\.{_OCTET_PATTERN}){{3}}{_DNSBL_WEIGHT}"
)
_DNSBL_SITE_WITHOUT_FILTER = re.compile(rf"{_DNSBL_ZONE}{_DNSBL_WEIGHT}")
# mynetworks may relay anywhere without a login: a prefix shorter than this (0.0.0.0/0,
# 0.0.0.0/1 + 128.0.0.0/1, ...) makes the server an open relay for a large part of the
# Internet; no site trusts more than a /8 of clients.
MIN_MYNETWORKS_PREFIX = 8

DEFAULT_HOSTNAME = "mail.example.com"
LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
AcmeKeyType = Literal["ecdsa-p256", "rsa-2048", "rsa-3072", "rsa-4096"]
_URL = re.compile(r"https://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/%+-]*)?")


def duration_seconds(value: str) -> int:
    match = _DURATION.fullmatch(value)
    if not match:
        raise ValueError(f"{value!r} is not a duration such as 300s, 30m, 4h or 5d")
    return int(match.group(1)) * _SECONDS_PER_UNIT[match.group(2)]


def _duration(value: str) -> str:
    duration_seconds(value)
    return value


def _restriction_list(values: list[str]) -> list[str]:
    for item in values:
        if not _RESTRICTION_TOKEN.fullmatch(item):
            raise ValueError(
                f"{item!r} is not a restriction name or argument: use lowercase names such "
                "as reject_unknown_sender_domain, one per list element, without spaces, "
                "commas, quotes, '$' or file paths"
            )
    return values


class PostscreenAccessRule(BaseModel):
    """One entry of postscreen's access list: a network and what to do with it."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    network: str = Field(description="IPv4 network in CIDR form, e.g. 192.0.2.0/24.")
    action: Literal["permit", "reject"] = Field(
        description="permit: skip postscreen's tests; reject: turn the client away."
    )

    @field_validator("network")
    @classmethod
    def _network(cls, value: str) -> str:
        try:
            network = ipaddress.ip_network(value, strict=True)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a network in CIDR form ({exc})") from exc
        if network.version != 4:
            raise ValueError(f"{value!r}: Postfix here speaks IPv4 only (inet_protocols = ipv4)")
        return str(network)


class MailSettings(BaseModel):
    """Every mail setting Mailyard manages. Field names are the API's setting names."""

    # strict: `true` is not a number and "42" is not an integer (JSON types are exact).
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    # --- Identity -------------------------------------------------------------------
    hostname: str = Field(
        default=DEFAULT_HOSTNAME,
        description="Fully qualified name of this mail host: SMTP banner and HELO, "
        "Dovecot's hostname, the certificate's name (Postfix myhostname). Until set "
        "here, it follows MAILYARD_HOSTNAME.",
    )
    origin: str = Field(
        default="",
        description="Domain appended to bare sender names of locally submitted mail "
        "(Postfix myorigin); empty means the hostname.",
    )
    mynetworks: list[str] = Field(
        default=["127.0.0.0/8"],
        description="Networks trusted to relay without authentication (Postfix "
        "mynetworks), as CIDR. Keep it small: every address listed here may send mail "
        "anywhere through this server. Networks wider than a /8 (0.0.0.0/0, ...) are "
        "refused: they would make it an open relay.",
    )

    # --- Limits ------------------------------------------------------------------------
    message_size_limit: int = Field(
        default=50 * MIB,
        ge=1 * MIB,
        le=2047 * MIB,
        description="Largest message accepted, in bytes, headers included (Postfix "
        "message_size_limit; advertised as SIZE in EHLO).",
    )
    recipient_limit: int = Field(
        default=100,
        ge=1,
        le=10_000,
        description="Most recipients accepted for one message (smtpd_recipient_limit).",
    )
    recipient_overshoot_limit: int = Field(
        default=1000,
        ge=1,
        le=100_000,
        description="Recipients a client may try per session before being disconnected "
        "(smtpd_recipient_overshoot_limit).",
    )

    # --- SMTP strictness ------------------------------------------------------------------
    helo_required: bool = Field(
        default=True, description="Clients must send HELO/EHLO first (smtpd_helo_required)."
    )
    strict_rfc821_envelopes: bool = Field(
        default=True,
        description="Refuse MAIL FROM/RCPT TO addresses without angle brackets or with "
        "comments (strict_rfc821_envelopes).",
    )
    disable_vrfy_command: bool = Field(
        default=True,
        description="Refuse VRFY so strangers cannot probe for addresses.",
    )
    helo_restrictions: list[str] = Field(
        default=["permit_mynetworks", "reject_invalid_helo_hostname"],
        description="Port 25 smtpd_helo_restrictions, one restriction or argument per element.",
    )
    sender_restrictions: list[str] = Field(
        default=["reject_non_fqdn_sender"],
        description="Port 25 smtpd_sender_restrictions. Relay protection does not "
        "depend on this list.",
    )
    recipient_restrictions: list[str] = Field(
        default=["reject_non_fqdn_recipient", "reject_unlisted_recipient"],
        description="Port 25 smtpd_recipient_restrictions, evaluated after the fixed "
        "relay restrictions (permit_mynetworks, permit_sasl_authenticated, "
        "reject_unauth_destination) and before the mailbox quota check.",
    )

    # --- Queue -----------------------------------------------------------------------------
    delay_warning_time: str = Field(
        default="4h",
        description="Tell the sender that a message is still queued after this long; "
        "0 is not allowed here (use a long time to effectively disable).",
    )
    maximal_queue_lifetime: str = Field(
        default="5d", description="Give up on a deferred message and bounce it after this."
    )
    bounce_queue_lifetime: str = Field(
        default="5d", description="Give up on an undeliverable bounce after this."
    )
    minimal_backoff_time: str = Field(
        default="300s", description="Shortest wait before retrying a deferred message."
    )
    maximal_backoff_time: str = Field(
        default="4000s", description="Longest wait between retries of a deferred message."
    )

    # --- TLS -------------------------------------------------------------------------------
    tls_server_protocols: TlsProtocols = Field(
        default=">=TLSv1.2",
        description="TLS versions Postfix and Dovecot accept from clients. SSLv2/3 and "
        "TLS 1.0/1.1 are never offered.",
    )
    tls_server_ciphers: CipherGrade = Field(
        default="medium",
        description="OpenSSL cipher grade for opportunistic STARTTLS on port 25 "
        "(smtpd_tls_ciphers); 'medium' keeps older MTAs on TLS instead of plain text.",
    )
    tls_server_mandatory_ciphers: CipherGrade = Field(
        default="high",
        description="Cipher grade where TLS is required: submission on 587 and 465 "
        "(smtpd_tls_mandatory_ciphers).",
    )
    tls_client_protocols: TlsProtocols = Field(
        default=">=TLSv1.2", description="TLS versions Postfix offers to other servers."
    )
    tls_client_ciphers: CipherGrade = Field(
        default="medium", description="Cipher grade Postfix offers to other servers."
    )
    tls_client_security_level: ClientTlsLevel = Field(
        default="may",
        description="Outbound TLS policy (smtp_tls_security_level): may (opportunistic), "
        "encrypt, dane (needs a DNSSEC-validating resolver), verify or secure.",
    )

    # --- Outbound relay ----------------------------------------------------------------------
    relayhost: str = Field(
        default="",
        description="Smarthost for all outbound mail, e.g. [smtp.example.net]:587; "
        "empty sends directly to each recipient's MX. Until set here, it follows "
        "MAILYARD_RELAYHOST.",
    )
    relayhost_username: str = Field(
        default="", description="SASL user name for the relayhost; empty means no AUTH."
    )
    relayhost_password: SecretStr | None = Field(
        default=None,
        description="SASL password for the relayhost. Write-only: never returned. Sent "
        "only over TLS.",
    )

    # --- Postscreen (port 25) -----------------------------------------------------------------
    postscreen_greet_action: PostscreenAction = Field(
        default="enforce",
        description="What postscreen does with clients that talk before the greeting.",
    )
    postscreen_blacklist_action: PostscreenAction = Field(
        default="drop", description="What postscreen does with denied clients."
    )
    postscreen_pipelining_enable: bool = Field(
        default=False,
        description="Deep protocol test: catch clients that pipeline without "
        "PIPELINING. A client that fails or passes must reconnect (first mail is "
        "delayed by a retry).",
    )
    postscreen_non_smtp_command_enable: bool = Field(
        default=False, description="Deep protocol test: catch non-SMTP commands."
    )
    postscreen_bare_newline_enable: bool = Field(
        default=False, description="Deep protocol test: catch bare newlines."
    )

    postscreen_dnsbl_sites: list[str] = Field(
        default=[],
        description="DNS blocklists postscreen asks about each new client on port 25, "
        "each as zone=reply filter*weight, e.g. zen.spamhaus.org=127.0.0.[2..11]*3 or "
        "bl.example.net=127.0.0.2*2. The reply filter is required: lists answer errors "
        "(e.g. 127.255.255.254 to a refused resolver) with addresses too, which would "
        "otherwise count every client as listed. Empty: no DNSBL test. Public lists need a "
        "resolver of your own (they refuse queries from big public resolvers).",
    )
    postscreen_dnsbl_threshold: int = Field(
        default=3,
        ge=1,
        le=100,
        description="Combined DNSBL weight at which a client is treated as listed.",
    )
    postscreen_dnsbl_allowlist_threshold: int = Field(
        default=0,
        ge=-100,
        le=0,
        description="A client whose combined weight is at or below this (negative) value "
        "skips the greeting and deep protocol tests; 0 turns this off. Use it with "
        "allow lists given negative weights, e.g. list.dnswl.org=127.0.[0..255].[1..3]*-2.",
    )
    postscreen_dnsbl_action: PostscreenAction = Field(
        default="enforce",
        description="What postscreen does with a listed client: enforce (reject each "
        "RCPT with 550 and log the sender and recipients), drop (550 and hang up) or "
        "ignore (log only).",
    )
    postscreen_access_list: list[PostscreenAccessRule] = Field(
        default=[],
        description="Networks postscreen lets through at once (permit: no DNSBL or "
        "protocol tests) or turns away (reject), first match wins; checked after the "
        "trusted networks (mynetworks).",
    )

    # --- Content filter and sender authentication (port 25) ---------------------------
    filter_spam_network_tests: bool = Field(
        default=True,
        description="SpamAssassin network tests: DNS blocklists and URI blocklists, Razor "
        "and Pyzor. Turn off on hosts without internet access (each lookup would wait "
        "for its timeout).",
    )
    greylisting_enabled: bool = Field(
        default=False,
        description="Greylisting with postgrey: the first message from an unknown "
        "(client, sender, recipient) triple gets 450 and is accepted when the sender "
        "retries after the delay. Real MTAs retry; most spam bots do not.",
    )
    greylisting_delay_seconds: int = Field(
        default=300,
        ge=1,
        le=86_400,
        description="How long a first-time triple must wait before a retry is accepted.",
    )
    spf_action: SpfAction = Field(
        default="reject",
        description="SPF check of inbound mail (postfix-policyd-spf-python): reject "
        "refuses mail whose HELO or MAIL FROM domain publishes an SPF record that "
        "excludes the client (result Fail) with 550; tag only adds a Received-SPF "
        "header; off skips the check.",
    )

    # --- Dovecot -----------------------------------------------------------------------------
    dovecot_protocols: list[DovecotProtocol] = Field(
        default=["imap", "pop3", "lmtp", "sieve"],
        description="Protocols Dovecot serves; lmtp is required (Postfix delivers "
        "through it), sieve is ManageSieve on port 4190.",
    )
    default_quota_mb: int = Field(
        default=1024,
        ge=0,
        le=10_000_000,
        description="Quota of new mailboxes created without one, in MiB; 0 is unlimited. "
        "Changing it does not change existing mailboxes.",
    )
    login_process_limit: int = Field(
        default=100,
        ge=1,
        le=10_000,
        description="Concurrent connections still logging in, per protocol (one login "
        "process each).",
    )
    mail_process_limit: int = Field(
        default=1024,
        ge=1,
        le=100_000,
        description="Logged-in IMAP sessions (and, separately, POP3 sessions) at once.",
    )
    max_userip_connections: int = Field(
        default=20,
        ge=1,
        le=1000,
        description="IMAP connections one user may open from one IP address.",
    )

    # --- Certificates (ACME) ----------------------------------------------------------------
    acme_enabled: bool = Field(
        default=False,
        description="Get and renew the certificate from an ACME CA (HTTP-01 on port 80). "
        "Off: a self-signed certificate (or one uploaded as custom).",
    )
    acme_directory_url: str = Field(
        default=LETS_ENCRYPT,
        description="ACME directory: Let's Encrypt production by default; staging is "
        "https://acme-staging-v02.api.letsencrypt.org/directory; any RFC 8555 CA works.",
    )
    acme_contact_email: str = Field(
        default="", description="Contact address given to the CA for expiry notices."
    )
    acme_ca_bundle: str = Field(
        default="",
        description="Extra CA certificates (PEM) to trust for the directory's HTTPS, for a "
        "private CA; the system CAs stay trusted.",
    )
    acme_key_type: AcmeKeyType = Field(
        default="ecdsa-p256", description="Key of the certificate: ECDSA P-256 or RSA."
    )
    certificate_extra_names: list[str] = Field(
        default=[],
        description="Names the certificate covers besides the hostname, e.g. "
        "autoconfig.example.org; each must reach this host on port 80.",
    )

    # --- Listeners (inside the container) -----------------------------------------------
    smtp_listen_address: str = Field(
        default="",
        description="Address inside the Postfix container that ports 25, 465 and 587 "
        "bind to; empty binds all. Only useful with host networking or several networks.",
    )

    # --- Sender binding and abuse limits (Postfix) ----------------------------------------
    reject_hosted_sender_spoofing: bool = Field(
        default=True,
        description="On port 25, refuse a client outside mynetworks that gives an address "
        "of a domain (or alias domain) hosted here as its envelope sender, whether or not "
        "the domain publishes SPF: our own users send through 587/465 with a login. Turn "
        "it off only if another server forwards mail to you keeping your own users' "
        "addresses as sender (forwarding without SRS).",
    )
    client_connection_count_limit: int = Field(
        default=20,
        ge=0,
        le=1000,
        description="Connections one client address may hold open at once, per port "
        "(25, 465, 587; postscreen and smtpd_client_connection_count_limit); 0 is no "
        "limit. The trusted networks (mynetworks) are exempt from every client limit.",
    )
    client_connection_rate_limit: int = Field(
        default=60,
        ge=0,
        le=100_000,
        description="New connections one client address may open per "
        "client_rate_time_unit, per port (smtpd_client_connection_rate_limit); 0 is no "
        "limit. Over it: 421, the client tries again later.",
    )
    client_message_rate_limit: int = Field(
        default=100,
        ge=0,
        le=100_000,
        description="Messages (MAIL FROM) one client address may start per "
        "client_rate_time_unit, per port (smtpd_client_message_rate_limit); 0 is no "
        "limit. Over it: 450, the client tries again later.",
    )
    client_auth_rate_limit: int = Field(
        default=30,
        ge=0,
        le=100_000,
        description="AUTH commands one client address may send per client_rate_time_unit "
        "on 465 and 587 (smtpd_client_auth_rate_limit): slows password guessing; 0 is no "
        "limit. Raise it for many users behind one NAT address.",
    )
    client_rate_time_unit: str = Field(
        default="60s",
        description="The window of the client rate limits above (anvil_rate_time_unit), "
        "from 10s to 1h.",
    )
    outbound_messages_per_hour: int = Field(
        default=200,
        ge=0,
        le=1_000_000,
        description="Recipients one login may send to per hour on 587/465 (each recipient "
        "counts as one message), so a stolen account cannot spray; policyd-rate-limit. "
        "Over it: 450, the mail program keeps the message and tries again later. 0 is no "
        "limit. With several Postfix replicas each one counts on its own.",
    )

    # --- Failed logins: slowed, then blocked (Dovecot auth policy) ------------------------
    # Every login goes through Dovecot's auth process: IMAP, POP3, ManageSieve, and SMTP
    # AUTH (Postfix's SASL is Dovecot's). Its auth policy server counts failures per client
    # address (images/dovecot/auth_policy.py; docs/operations.md, "Failed logins").
    login_blocking_enabled: bool = Field(
        default=True,
        description="Slow down and then block client addresses that fail to log in (IMAP, "
        "POP3, ManageSieve, SMTP AUTH). Off leaves only Dovecot's fixed delay after each "
        "failure. GET /api/v1/blocks lists blocked addresses; DELETE lifts a block.",
    )
    login_slowdown_after_failures: int = Field(
        default=5,
        ge=1,
        le=10_000,
        description="Failed logins from one address, within login_failure_window_seconds, "
        "after which its next attempts wait first: 1 s after the last failure, doubling "
        "with each further failure up to login_slowdown_max_seconds. The right password "
        "waits too, so keep it above what a user mistyping makes.",
    )
    login_slowdown_max_seconds: int = Field(
        default=8,
        ge=1,
        le=8,
        description="Longest wait imposed on an address that keeps failing, in seconds. "
        "At most 8: Postfix gives up on Dovecot's answer to SMTP AUTH after 10 s and "
        "reports a temporary failure, even for the right password.",
    )
    login_block_after_failures: int = Field(
        default=20,
        ge=1,
        le=10_000,
        description="Failed logins from one address, within login_failure_window_seconds, "
        "after which the address is blocked: every login from it is refused, even with "
        "the right password, for login_block_seconds. Other addresses are not affected, "
        "so the owner of a mailbox under attack can still log in from elsewhere.",
    )
    login_failure_window_seconds: int = Field(
        default=900,
        ge=60,
        le=7 * 86_400,
        description="How long failures count: the window starts at an address's first "
        "failure; failures after it ends start a new count. A successful login does not "
        "reset the count (an attacker who owns one account could otherwise hide behind it).",
    )
    login_block_seconds: int = Field(
        default=3600,
        ge=10,
        le=30 * 86_400,
        description="How long a block lasts, in seconds. It ends early only when lifted "
        "(DELETE /api/v1/blocks/{address} or `mailyard blocks lift`); a successful "
        "login does not end it.",
    )
    login_block_exempt_networks: list[str] = Field(
        default=[],
        description="Client networks in CIDR form (IPv4 or IPv6) that are never slowed "
        "down or blocked, e.g. a webmail server that logs in for many users from one "
        "address. Each address listed here can guess passwords without limit.",
    )

    @model_validator(mode="before")
    @classmethod
    def _single_values_as_lists(cls, data: Any) -> Any:
        """A single value where a list is expected is a list of one: mynetworks given as
        "127.0.0.0/8" means ["127.0.0.0/8"] (API and command alike). Only the wrapping
        is lenient: each element is then validated as if it had come in a list, so a
        value with a comma, newline or quote is refused as before, not split."""
        if not isinstance(data, Mapping):
            return data
        return {
            name: [value] if name in _LIST_SETTINGS and isinstance(value, str | Mapping) else value
            for name, value in data.items()
        }

    @field_validator("hostname")
    @classmethod
    def _hostname(cls, value: str) -> str:
        return _as_value_error(normalize_domain, value, "hostname")

    @field_validator("postscreen_dnsbl_sites")
    @classmethod
    def _dnsbl_sites(cls, values: list[str]) -> list[str]:
        for value in values:
            if _DNSBL_SITE.fullmatch(value):
                continue
            if _DNSBL_SITE_WITHOUT_FILTER.fullmatch(value):
                zone, _, weight = value.partition("*")
                example = f"{zone}=127.0.0.[2..11]" + (f"*{weight}" if weight else "")
                raise ValueError(
                    f"{value!r} needs a reply filter, e.g. {example!r} (the answers the "
                    "list documents for 'listed'): without one, the list's error answers "
                    "(127.255.255.x, e.g. when it refuses your resolver) would count every "
                    "client as listed and turn away all mail"
                )
            raise ValueError(
                f"{value!r} is not a DNSBL site: use zone=reply filter*weight, e.g. "
                "zen.spamhaus.org=127.0.0.[2..11]*3 or bl.example.net=127.0.0.2 (lowercase)"
            )
        return values

    @field_validator("origin")
    @classmethod
    def _origin(cls, value: str) -> str:
        return _as_value_error(normalize_domain, value, "origin") if value else ""

    @field_validator("mynetworks")
    @classmethod
    def _networks(cls, values: list[str]) -> list[str]:
        networks = []
        for value in values:
            try:
                network = ipaddress.ip_network(value.strip(), strict=True)
            except ValueError as exc:
                raise ValueError(f"{value!r} is not a network in CIDR form ({exc})") from exc
            if network.prefixlen < MIN_MYNETWORKS_PREFIX:
                everything = "every address" if network.prefixlen == 0 else "a large part"
                raise ValueError(
                    f"{value!r} would let {everything} of the Internet send mail anywhere "
                    "through this server without a login (an open relay); list only the "
                    "networks of hosts you trust, e.g. 192.0.2.0/24, at most a "
                    f"/{MIN_MYNETWORKS_PREFIX}, and let everyone else authenticate on 587 "
                    "or 465"
                )
            if network.version != 4:
                raise ValueError(
                    f"{value!r}: Postfix here speaks IPv4 only (inet_protocols = ipv4)"
                )
            networks.append(str(network))
        if not networks:
            raise ValueError("keep at least 127.0.0.0/8: Postfix's own programs submit from it")
        return networks

    @field_validator("helo_restrictions", "sender_restrictions", "recipient_restrictions")
    @classmethod
    def _restrictions(cls, values: list[str]) -> list[str]:
        return _restriction_list(values)

    @field_validator(
        "delay_warning_time",
        "maximal_queue_lifetime",
        "bounce_queue_lifetime",
        "minimal_backoff_time",
        "maximal_backoff_time",
    )
    @classmethod
    def _durations(cls, value: str) -> str:
        return _duration(value)

    @field_validator("relayhost")
    @classmethod
    def _relayhost(cls, value: str) -> str:
        return _as_value_error(normalize_nexthop, value, "relayhost") if value else ""

    @field_validator("relayhost_username")
    @classmethod
    def _username(cls, value: str) -> str:
        if value and not _SASL_USERNAME.fullmatch(value):
            raise ValueError("use only letters, digits and @ . _ + = - in the relayhost user name")
        return value

    @field_validator("relayhost_password")
    @classmethod
    def _password(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        secret = value.get_secret_value()
        if not secret or len(secret) > 1024:
            raise ValueError("the relayhost password must have 1 to 1024 characters")
        if any(not char.isprintable() for char in secret) or secret != secret.strip():
            raise ValueError(
                "the relayhost password must not contain control characters or leading "
                "or trailing spaces"
            )
        return value

    @field_validator("dovecot_protocols")
    @classmethod
    def _protocols(cls, values: list[DovecotProtocol]) -> list[DovecotProtocol]:
        if "lmtp" not in values:
            raise ValueError("lmtp must stay enabled: Postfix delivers mail to Dovecot by LMTP")
        return sorted(set(values), key=["imap", "pop3", "lmtp", "sieve"].index)

    @field_validator("acme_directory_url")
    @classmethod
    def _directory(cls, value: str) -> str:
        if len(value) > 2048 or not _URL.fullmatch(value):
            raise ValueError(
                f"{value!r} is not an https:// URL of an ACME directory (letters, digits "
                "and . _ ~ / % + - only)"
            )
        return value

    @field_validator("acme_contact_email")
    @classmethod
    def _contact(cls, value: str) -> str:
        if not value:
            return ""
        try:
            # test_environment: like every address here, .test names are allowed.
            return validate_email(
                value, check_deliverability=False, test_environment=True
            ).normalized
        except EmailNotValidError as exc:
            raise ValueError(f"{value!r} is not an e-mail address: {exc}") from exc

    @field_validator("acme_ca_bundle")
    @classmethod
    def _bundle(cls, value: str) -> str:
        if not value.strip():
            return ""
        try:
            certificates = x509.load_pem_x509_certificates(value.encode("ascii"))
        except (ValueError, UnicodeError) as exc:
            raise ValueError("acme_ca_bundle must be PEM certificates only") from exc
        return "".join(
            item.public_bytes(serialization.Encoding.PEM).decode("ascii") for item in certificates
        )

    @field_validator("certificate_extra_names")
    @classmethod
    def _extra_names(cls, values: list[str]) -> list[str]:
        names = [
            _as_value_error(normalize_domain, value, "certificate_extra_names") for value in values
        ]
        if len(set(names)) > 99:
            raise ValueError("a certificate covers at most 100 names")
        return sorted(set(names))

    @field_validator("smtp_listen_address")
    @classmethod
    def _listen_address(cls, value: str) -> str:
        if not value:
            return ""
        try:
            address = ipaddress.ip_address(value.strip())
        except ValueError as exc:
            raise ValueError(f"{value!r} is not an IP address") from exc
        if address.version != 4:
            raise ValueError("Postfix here listens on IPv4 only (inet_protocols = ipv4)")
        return str(address)

    @field_validator("client_rate_time_unit")
    @classmethod
    def _rate_time_unit(cls, value: str) -> str:
        if not 10 <= duration_seconds(value) <= 3600:
            raise ValueError(f"{value!r}: use a window from 10s to 1h, e.g. 60s or 5m")
        return value

    @field_validator("login_block_exempt_networks")
    @classmethod
    def _exempt_networks(cls, values: list[str]) -> list[str]:
        networks: list[str] = []
        for value in values:
            try:
                network = ipaddress.ip_network(value.strip(), strict=True)
            except ValueError as exc:
                raise ValueError(f"{value!r} is not a network in CIDR form ({exc})") from exc
            if network.prefixlen == 0:
                raise ValueError(
                    f"{value!r} covers every address; set login_blocking_enabled to false instead"
                )
            networks.append(str(network))
        if len(networks) > 100:
            raise ValueError("list at most 100 networks in login_block_exempt_networks")
        return sorted(set(networks))

    @model_validator(mode="after")
    def _consistent(self) -> MailSettings:
        if duration_seconds(self.minimal_backoff_time) > duration_seconds(
            self.maximal_backoff_time
        ):
            raise ValueError("minimal_backoff_time must not exceed maximal_backoff_time")
        if (self.relayhost_username or self.relayhost_password) and not self.relayhost:
            raise ValueError("relayhost credentials need a relayhost")
        if self.relayhost_username and self.relayhost_password is None:
            raise ValueError("relayhost_username needs relayhost_password as well")
        if self.relayhost_password is not None and not self.relayhost_username:
            raise ValueError("relayhost_password needs relayhost_username as well")
        if self.login_slowdown_after_failures > self.login_block_after_failures:
            raise ValueError(
                "login_slowdown_after_failures must not exceed login_block_after_failures "
                "(an address is slowed down before it is blocked)"
            )
        return self


# The settings whose value is a list (mynetworks, helo_restrictions, ...).
_LIST_SETTINGS = frozenset(
    name
    for name, field in MailSettings.model_fields.items()
    if get_origin(field.annotation) is list
)


def refuse_trusting_stack_networks(
    mynetworks: Sequence[str], attached: Sequence[tuple[str, ipaddress.IPv4Network]]
) -> None:
    """Refuse trusted networks that cover a network Postfix is on (InvalidInput).

    `attached` holds each compose network Postfix's containers are on, with its subnet
    (the network's gateway is in it). Trusting one would trust every container there, and
    on the public one the gateway, i.e. every client Docker forwards from the host: an
    open relay.
    """
    for value in mynetworks:
        trusted = ipaddress.ip_network(value)
        for name, network in attached:
            if trusted.overlaps(network):
                raise InvalidInput(
                    f"mynetworks: {value} covers the compose network {name} ({network}), "
                    "whose containers and gateway (all clients of the published ports) "
                    "would then relay without logging in; trust only your own hosts' "
                    "addresses outside it",
                    field="mynetworks",
                )


SECRET_SETTINGS = frozenset({"relayhost_password"})
# Where a person finds the settings' names, for a message about a name that is not one.
SEE_SETTINGS = Action(api="GET /api/v1/settings/schema", cli="mailyard settings show")
SETTING_NAMES = tuple(MailSettings.model_fields)


def _as_value_error(check: Any, value: str, field: str) -> str:
    try:
        return str(check(value, field))
    except InvalidInput as exc:
        raise ValueError(exc.message) from exc


def describe_validation_error(error: ValidationError) -> str:
    """One line a person can act on, naming every offending setting."""
    parts = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"]) or "settings"
        message = str(item["msg"]).removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "is not a Mailyard setting"
        parts.append(f"{location}: {message}")
    # Refused values are quoted in the messages; keep control characters from them out
    # of the one line a person (or a log) gets.
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in "; ".join(parts))


def build(stored: Mapping[str, Any], defaults: Mapping[str, Any]) -> MailSettings:
    """The effective settings: stored values over first-start defaults over built-ins."""
    try:
        return MailSettings.model_validate({**defaults, **stored})
    except ValidationError as exc:
        unknown = any(item["type"] == "extra_forbidden" for item in exc.errors())
        raise InvalidInput(
            describe_validation_error(exc) + ("; see the valid names" if unknown else ""),
            action=SEE_SETTINGS if unknown else None,
        ) from exc


def public_values(settings: MailSettings) -> dict[str, Any]:
    """Values as the API shows them: secrets only say whether they are set."""
    values = settings.model_dump(mode="json")
    for name in SECRET_SETTINGS:
        values[name] = None if getattr(settings, name) is None else "********"
    return values


def storable(settings: MailSettings, defaults: Mapping[str, Any]) -> dict[str, Any]:
    """Values that differ from the defaults, as JSON (secrets in clear: stored, not shown)."""
    baseline = MailSettings.model_validate(dict(defaults))
    stored: dict[str, Any] = {}
    for name in SETTING_NAMES:
        value = getattr(settings, name)
        if value == getattr(baseline, name):
            continue
        if isinstance(value, SecretStr):
            stored[name] = value.get_secret_value()
        else:
            # JSON types only (nested models such as postscreen_access_list as dicts).
            stored[name] = settings.model_dump(mode="json", include={name})[name]
    return stored
