"""controller/domain/mail_settings.py: typed, validated mail settings.

Every value that reaches main.cf, master.cf, relay_passwords or dovecot.conf is checked
here first, so that a setting can never add a line or a list element to a config file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from controller.domain.mail_settings import (
    DEFAULT_HOSTNAME,
    MIB,
    SECRET_SETTINGS,
    SETTING_NAMES,
    MailSettings,
    build,
    describe_validation_error,
    duration_seconds,
    public_values,
    storable,
)
from controller.errors import InvalidInput

RELAY = {"relayhost": "[smtp.example.net]:587"}


def _refused(values: dict[str, Any], defaults: dict[str, Any] | None = None) -> str:
    """The message `build` refuses `values` with (what the API answers with 422)."""
    with pytest.raises(InvalidInput) as info:
        build(values, defaults or {})
    return info.value.message


# --- defaults ------------------------------------------------------------------------------
def test_defaults_validate() -> None:
    defaults = MailSettings()
    assert build({}, {}) == defaults
    # Round trip: what the defaults serialise to is itself valid input.
    assert MailSettings.model_validate(defaults.model_dump()) == defaults
    assert defaults.hostname == DEFAULT_HOSTNAME
    assert defaults.mynetworks == ["127.0.0.0/8"]
    assert defaults.message_size_limit == 50 * MIB
    assert defaults.default_quota_mb == 1024
    assert defaults.relayhost == ""
    assert defaults.relayhost_password is None
    assert "lmtp" in defaults.dovecot_protocols
    assert duration_seconds(defaults.minimal_backoff_time) <= duration_seconds(
        defaults.maximal_backoff_time
    )


def test_every_setting_is_documented() -> None:
    schema = MailSettings.model_json_schema()
    assert set(schema["properties"]) == set(SETTING_NAMES)
    for name, field in schema["properties"].items():
        assert len(field.get("description", "")) > 20, name


def test_settings_are_frozen_and_closed() -> None:
    settings = MailSettings()
    with pytest.raises(ValidationError):
        settings.hostname = "mx.example.com"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        MailSettings.model_validate({"myhostname": "mx.example.com"})


def test_stored_values_win_over_first_start_defaults() -> None:
    defaults = {"hostname": "mx.example.net", "relayhost": "relay.example.net"}
    assert build({}, defaults).hostname == "mx.example.net"
    assert build({}, defaults).relayhost == "relay.example.net"
    settings = build({"hostname": "mail.example.org", "relayhost": ""}, defaults)
    assert settings.hostname == "mail.example.org"
    assert settings.relayhost == ""


# --- refused values ------------------------------------------------------------------------
INJECTIONS = [
    # Identity
    ("hostname", "mail.example.com\nmynetworks = 0.0.0.0/0"),
    ("hostname", "mail.example.com\r"),
    ("hostname", "mail example.com"),
    ("hostname", 'mail".example.com'),
    ("hostname", "mail.example.com,evil.example"),
    ("hostname", "$myhostname"),
    ("hostname", "mail/../example.com"),
    ("hostname", "mail_server.example.com"),
    ("hostname", "localhost"),
    ("hostname", ""),
    ("origin", "example.org\nrelayhost = evil.example"),
    ("origin", "$mydomain"),
    ("origin", "example.org, evil.example"),
    ("mynetworks", ["127.0.0.0/8\n0.0.0.0/0"]),
    ("mynetworks", ["127.0.0.0/8, 0.0.0.0/0"]),
    ("mynetworks", ["127.0.0.0/8 10.0.0.0/8"]),
    ("mynetworks", ["10.0.0.1/8"]),  # host bits set: almost always a typo
    ("mynetworks", ["10.0.0.0/33"]),
    ("mynetworks", ["not-a-network"]),
    ("mynetworks", ["hash:/etc/postfix/network_table"]),
    ("mynetworks", ["$mynetworks"]),
    ("mynetworks", []),
    # A single string is a list of one (see test_user_language.py), never split.
    ("mynetworks", "127.0.0.0/8 10.0.0.0/8"),
    ("mynetworks", "127.0.0.0/8,10.0.0.0/8"),
    # Limits
    ("message_size_limit", MIB - 1),
    ("message_size_limit", 2048 * MIB),
    ("message_size_limit", "50M"),
    ("recipient_limit", 0),
    ("recipient_limit", 10_001),
    ("recipient_limit", 5.5),
    ("recipient_overshoot_limit", 0),
    # SMTP strictness
    ("helo_required", "maybe"),
    ("disable_vrfy_command", "yes\nmynetworks = 0.0.0.0/0"),
    # Durations
    ("delay_warning_time", "5"),
    ("delay_warning_time", "0s"),
    ("delay_warning_time", "0"),
    ("delay_warning_time", "5x"),
    ("delay_warning_time", "-5s"),
    ("delay_warning_time", "5 s"),
    ("delay_warning_time", "4h\nmynetworks = 0.0.0.0/0"),
    ("delay_warning_time", "$maximal_queue_lifetime"),
    ("maximal_queue_lifetime", "5d5d"),
    ("bounce_queue_lifetime", "1000000d"),
    ("minimal_backoff_time", "300"),
    ("maximal_backoff_time", 4000),
    # TLS
    ("tls_server_protocols", "TLSv1"),
    ("tls_server_protocols", ">=TLSv1.2\nmynetworks = 0.0.0.0/0"),
    ("tls_server_ciphers", "low"),
    ("tls_server_mandatory_ciphers", "NULL"),
    ("tls_client_protocols", ">=SSLv3"),
    ("tls_client_ciphers", "export"),
    ("tls_client_security_level", "none"),
    # Outbound relay
    ("relayhost", "smtp.example.net\nmynetworks = 0.0.0.0/0"),
    ("relayhost", "192.0.2.1"),  # an IP needs brackets
    ("relayhost", "[smtp.example.net]:99999"),
    ("relayhost", "[smtp.example.net"),
    ("relayhost", "smtp.example.net, evil.example"),
    # Postscreen
    ("postscreen_greet_action", "reject"),
    ("postscreen_blacklist_action", "drop\n"),
    ("postscreen_dnsbl_sites", ["zen.spamhaus.org*3\nmynetworks = 0.0.0.0/0"]),
    ("postscreen_dnsbl_sites", ["zen.spamhaus.org*3, evil.example"]),
    ("postscreen_dnsbl_sites", ["Zen.Spamhaus.org"]),
    ("postscreen_dnsbl_sites", ["zen.spamhaus.org*x"]),
    ("postscreen_dnsbl_sites", ["zen.spamhaus.org=$x"]),
    ("postscreen_dnsbl_sites", ["localhost"]),
    ("postscreen_dnsbl_sites", "zen.spamhaus.org"),
    ("postscreen_dnsbl_threshold", 0),
    ("postscreen_dnsbl_allowlist_threshold", 1),
    ("postscreen_dnsbl_action", "reject"),
    ("postscreen_access_list", [{"network": "10.0.0.0/8", "action": "allow"}]),
    ("postscreen_access_list", [{"network": "10.0.0.1/8", "action": "permit"}]),
    ("postscreen_access_list", [{"network": "2001:db8::/32", "action": "permit"}]),
    ("postscreen_access_list", [{"network": "10.0.0.0/8 permit}, {0.0.0.0/0", "action": "permit"}]),
    ("postscreen_access_list", [{"network": "10.0.0.0/8", "action": "permit", "x": 1}]),
    # Content filter and sender authentication
    ("filter_spam_network_tests", "yes"),
    ("greylisting_enabled", 1),
    ("greylisting_delay_seconds", 0),
    ("greylisting_delay_seconds", 86_401),
    ("spf_action", "softfail"),
    # Dovecot
    ("dovecot_protocols", ["imap", "pop3"]),
    ("dovecot_protocols", []),
    ("dovecot_protocols", ["lmtp", "smtp"]),
    ("dovecot_protocols", ["lmtp", "imap\n"]),
    ("dovecot_protocols", "imap pop3 lmtp"),
    ("default_quota_mb", -1),
    ("default_quota_mb", 10_000_001),
    ("login_process_limit", 0),
    ("mail_process_limit", 100_001),
    ("max_userip_connections", 0),
    # Listeners
    ("smtp_listen_address", "::1"),
    ("smtp_listen_address", "2001:db8::1"),
    ("smtp_listen_address", "mail.example.com"),
    ("smtp_listen_address", "10.0.0.0/8"),
    ("smtp_listen_address", "10.0.0.1:25"),
]


@pytest.mark.parametrize(("name", "value"), INJECTIONS, ids=lambda v: repr(v)[:40])
def test_unsafe_or_invalid_values_are_refused(name: str, value: Any) -> None:
    message = _refused({name: value})
    assert message.startswith(f"{name}"), message


# Each element of a restriction list becomes one element of a Postfix list in main.cf.
BAD_RESTRICTION_ITEMS = [
    "reject_unknown_sender_domain\nmynetworks = 0.0.0.0/0",
    "reject_unknown_sender_domain\r",
    "\nreject",
    'reject_rbl_client "zen.spamhaus.org"',
    "permit_mynetworks,reject",
    "reject_rbl_client zen.spamhaus.org",
    "reject_rbl_client\tzen.spamhaus.org",
    "$smtpd_helo_restrictions",
    "check_client_access hash:/etc/postfix/access",
    "hash:/etc/postfix/access",
    "pcre:/etc/postfix/helo.pcre",
    "{reject}",
    "Reject_Non_FQDN_Sender",
    "",
    "a" * 256,
    "permit_mynetworks\n",  # `$` would let one trailing newline through
]


@pytest.mark.parametrize(
    "name", ["helo_restrictions", "sender_restrictions", "recipient_restrictions"]
)
@pytest.mark.parametrize("item", BAD_RESTRICTION_ITEMS, ids=lambda v: repr(v)[:40])
def test_restriction_lists_refuse_anything_but_plain_tokens(name: str, item: str) -> None:
    message = _refused({name: ["reject_non_fqdn_sender", item]})
    assert message.startswith(f"{name}: "), message
    assert "is not a restriction name or argument" in message


@pytest.mark.parametrize(
    "items",
    [
        [],
        ["reject_rbl_client", "zen.spamhaus.org=127.0.0.[2..11]"],
        ["check_policy_service", "inet:127.0.0.1:10023"],
        ["reject_unknown_helo_hostname", "permit"],
    ],
)
def test_restriction_lists_accept_names_and_their_arguments(items: list[str]) -> None:
    assert build({"recipient_restrictions": items}, {}).recipient_restrictions == items


@pytest.mark.parametrize(
    "value",
    [
        "4h\n",
        "300s\n",
    ],
)
def test_durations_refuse_a_trailing_newline(value: str) -> None:
    _refused({"delay_warning_time": value})


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("1s", 1), ("300s", 300), ("30m", 1800), ("4h", 14400), ("5d", 432000), ("1w", 604800)],
)
def test_durations_in_postfix_units(value: str, seconds: int) -> None:
    assert duration_seconds(value) == seconds
    assert build({"delay_warning_time": value}, {}).delay_warning_time == value


def test_minimal_backoff_must_not_exceed_maximal() -> None:
    message = _refused({"minimal_backoff_time": "2h", "maximal_backoff_time": "3600s"})
    assert "minimal_backoff_time must not exceed maximal_backoff_time" in message
    # Units are compared by duration, not by text.
    settings = build({"minimal_backoff_time": "60m", "maximal_backoff_time": "3600s"}, {})
    assert settings.minimal_backoff_time == "60m"


# --- networks ------------------------------------------------------------------------------
def test_networks_are_normalised() -> None:
    settings = build({"mynetworks": [" 127.0.0.0/8", "192.168.1.7", "10.0.0.0/8"]}, {})
    assert settings.mynetworks == ["127.0.0.0/8", "192.168.1.7/32", "10.0.0.0/8"]


@pytest.mark.parametrize(
    "network",
    [
        "::1/128",
        "fe80::/10",
    ],
)
def test_ipv6_networks_are_refused(network: str) -> None:
    # Postfix reads `::1/128` in mynetworks as a "type:table" lookup; IPv6 needs
    # brackets there, and this Postfix listens on IPv4 only (inet_protocols = ipv4).
    _refused({"mynetworks": ["127.0.0.0/8", network]})


def test_listen_address_is_an_ipv4_address() -> None:
    assert build({"smtp_listen_address": "192.0.2.10"}, {}).smtp_listen_address == "192.0.2.10"
    assert build({"smtp_listen_address": ""}, {}).smtp_listen_address == ""
    # Surrounding whitespace is dropped: what is stored and rendered is the bare address.
    assert build({"smtp_listen_address": " 10.0.0.1\n"}, {}).smtp_listen_address == "10.0.0.1"
    assert "IPv4 only" in _refused({"smtp_listen_address": "::1"})
    assert "not an IP address" in _refused({"smtp_listen_address": "mail.example.com"})


# --- relayhost credentials -----------------------------------------------------------------
def test_relayhost_credentials_need_a_relayhost() -> None:
    message = _refused({"relayhost_username": "user", "relayhost_password": "secret pass"})
    assert "relayhost credentials need a relayhost" in message
    message = _refused({"relayhost_password": "secret pass"})
    assert "relayhost credentials need a relayhost" in message


def test_relayhost_username_needs_a_password() -> None:
    message = _refused({**RELAY, "relayhost_username": "user"})
    assert "relayhost_username needs relayhost_password" in message


def test_relayhost_with_credentials() -> None:
    settings = build(
        {**RELAY, "relayhost_username": "user@example.net", "relayhost_password": "s3cret pw"}, {}
    )
    assert settings.relayhost == "[smtp.example.net]:587"
    assert settings.relayhost_username == "user@example.net"
    assert isinstance(settings.relayhost_password, SecretStr)
    assert settings.relayhost_password.get_secret_value() == "s3cret pw"
    assert "s3cret" not in repr(settings)


@pytest.mark.parametrize(
    "password",
    [
        "Zq9pass\nword",
        "Zq9pass\rword",
        "Zq9pass\x00word",
        "Zq9pass\tword",
        "Zq9pass\x1bword",
        "Zq9pass\u2028word",
        " Zq9pass",
        "Zq9pass ",
        "",
        "Zq9" + "x" * 1022,
    ],
    ids=lambda v: repr(v)[:20],
)
def test_relayhost_password_refuses_control_characters(password: str) -> None:
    values = {**RELAY, "relayhost_username": "user", "relayhost_password": password}
    message = _refused(values)
    assert message.startswith("relayhost_password: "), message
    # Not even part of the refused password is echoed back.
    assert "Zq9" not in message


@pytest.mark.parametrize(
    "username",
    [
        "user\nname",
        "user name",
        "user:name",  # relay_passwords separates user and password with ':'
        "user,name",
        '"user"',
        "$user",
        "user/name",
        "x" * 256,
        "user\n",
    ],
    ids=lambda v: repr(v)[:20],
)
def test_relayhost_username_refuses_separators(username: str) -> None:
    values = {**RELAY, "relayhost_username": username, "relayhost_password": "secret pass"}
    assert _refused(values).startswith("relayhost_username: ")


# --- normalisation -------------------------------------------------------------------------
def test_hostname_and_origin_are_stored_as_a_labels() -> None:
    settings = build({"hostname": "Mail.München.DE", "origin": "BÜCHER.example"}, {})
    assert settings.hostname == "mail.xn--mnchen-3ya.de"
    assert settings.origin == "xn--bcher-kva.example"
    assert build({"relayhost": "[SMTP.Example.NET]:587"}, {}).relayhost == RELAY["relayhost"]


def test_dovecot_protocols_are_deduplicated_in_a_fixed_order() -> None:
    settings = build({"dovecot_protocols": ["sieve", "lmtp", "imap", "lmtp"]}, {})
    assert settings.dovecot_protocols == ["imap", "lmtp", "sieve"]


# --- unknown names and error messages ------------------------------------------------------
def test_unknown_setting_is_named_as_not_a_mailyard_setting() -> None:
    message = _refused({"myhostname": "mx.example.com"})
    assert message.startswith("myhostname: ")
    assert "is not a Mailyard setting" in message


def test_validation_error_is_one_readable_line_naming_every_setting() -> None:
    values = {
        "message_size_limit": 1,
        "delay_warning_time": "5x",
        "helo_restrictions": ["permit_mynetworks", "reject_rbl_client zen.spamhaus.org"],
        "bogus": True,
    }
    with pytest.raises(ValidationError) as info:
        MailSettings.model_validate(values)
    line = describe_validation_error(info.value)
    assert "\n" not in line
    parts = line.split("; ")
    assert len(parts) == 4, line
    assert {part.split(":", 1)[0] for part in parts} == {
        "message_size_limit",
        "delay_warning_time",
        "helo_restrictions",
        "bogus",
    }
    assert "Value error, " not in line
    assert "is not a duration such as 300s" in line
    # `build` raises the same line as InvalidInput (422 at the API), and for an unknown
    # name says where the valid names are (in the reader's terms: SEE_SETTINGS).
    assert _refused(values) == line + "; see the valid names"


@pytest.mark.parametrize(
    "values",
    [
        {"helo_restrictions": ["reject\nmynetworks = 0.0.0.0/0"]},
        {"delay_warning_time": "4h\r\nx"},
        {"mynetworks": ["10.0.0.0/8\nx"]},
        {"hostname": "mail.example.com\nmynetworks = 0.0.0.0/0"},
        {"relayhost": "smtp.example.net\r\nx"},
    ],
    ids=["restriction", "duration", "network", "hostname", "relayhost"],
)
def test_refusing_a_value_with_a_newline_is_still_one_line(values: dict[str, Any]) -> None:
    # The message goes to logs and to `mailyard` on stderr as one line.
    message = _refused(values)
    assert "\n" not in message
    assert "\r" not in message


def test_model_level_errors_are_labelled_settings() -> None:
    message = _refused({"relayhost_password": "secret pass"})
    assert message.startswith("settings: ")


# --- what the API shows and what is stored -------------------------------------------------
def test_public_values_mask_the_secret() -> None:
    settings = build(
        {**RELAY, "relayhost_username": "user", "relayhost_password": "hunter2 secret"}, {}
    )
    values = public_values(settings)
    assert set(values) == set(SETTING_NAMES)
    assert values["relayhost_password"] == "********"
    assert "hunter2" not in json.dumps(values)
    assert values["relayhost_username"] == "user"
    assert values["mynetworks"] == ["127.0.0.0/8"]
    assert {"relayhost_password"} == SECRET_SETTINGS
    # Unset, it says so.
    assert public_values(MailSettings())["relayhost_password"] is None


def test_storable_keeps_only_values_that_differ_from_the_defaults() -> None:
    assert storable(MailSettings(), {}) == {}
    settings = build(
        {
            "message_size_limit": 10 * MIB,
            "recipient_limit": 100,  # the default: not stored
            **RELAY,
            "relayhost_username": "user",
            "relayhost_password": "hunter2 secret",
        },
        {},
    )
    stored = storable(settings, {})
    assert stored == {
        "message_size_limit": 10 * MIB,
        **RELAY,
        "relayhost_username": "user",
        # Stored in clear (the controller's database only): a rollback must restore it.
        "relayhost_password": "hunter2 secret",
    }
    # JSON-ready, and it builds the same settings again.
    assert build(json.loads(json.dumps(stored)), {}) == settings


def test_storable_compares_with_the_first_start_defaults() -> None:
    defaults = {"hostname": "mx.example.net", "relayhost": ""}
    # Equal to the environment's default: not stored, so it follows MAILYARD_HOSTNAME.
    assert storable(build({}, defaults), defaults) == {}
    # The built-in default differs from the environment's: that choice must be stored.
    settings = build({"hostname": DEFAULT_HOSTNAME}, defaults)
    assert storable(settings, defaults) == {"hostname": DEFAULT_HOSTNAME}


# --- certificates (ACME) -------------------------------------------------------------------
def test_acme_defaults_are_off_with_lets_encrypt_and_ecdsa() -> None:
    settings = MailSettings()
    assert settings.acme_enabled is False
    assert settings.acme_directory_url == "https://acme-v02.api.letsencrypt.org/directory"
    assert settings.acme_contact_email == ""
    assert settings.acme_ca_bundle == ""
    assert settings.acme_key_type == "ecdsa-p256"
    assert settings.certificate_extra_names == []


@pytest.mark.parametrize(
    "url",
    [
        "https://acme-staging-v02.api.letsencrypt.org/directory",
        "https://pebble:14000/dir",
        "https://ca.internal.example/acme/v2/directory",
        "https://10.0.0.5:8443/",
        "https://ca.example/~acme/dir%20x",
    ],
)
def test_acme_directory_url_accepts_https_urls(url: str) -> None:
    assert build({"acme_directory_url": url}, {}).acme_directory_url == url


@pytest.mark.parametrize(
    "url",
    [
        "http://acme-v02.api.letsencrypt.org/directory",
        "HTTPS://ca.example/directory",
        "ftp://ca.example/directory",
        "ca.example/directory",
        "https://",
        "https://ca.example/directory\n",
        "https://ca.example/directory\r\nHost: evil",
        "https://ca.example/dir ectory",
        'https://ca.example/"directory',
        "https://ca.example/'directory",
        "https://ca.example/directory?x=1",
        "https://user@ca.example/directory",
        "https://ca.example:123456/directory",
        "https://ca.example/" + "a" * 2048,
        "",
    ],
    ids=lambda v: repr(v)[:40],
)
def test_acme_directory_url_refuses_anything_else(url: str) -> None:
    message = _refused({"acme_directory_url": url})
    assert message.startswith("acme_directory_url: "), message
    assert "\n" not in message


def test_acme_contact_email_is_normalised_or_refused() -> None:
    assert build({"acme_contact_email": ""}, {}).acme_contact_email == ""
    settings = build({"acme_contact_email": "Hostmaster@Example.ORG"}, {})
    assert settings.acme_contact_email.lower() == "hostmaster@example.org"
    assert settings.acme_contact_email.endswith("@example.org")
    assert build({"acme_contact_email": "ops@mail.test"}, {}).acme_contact_email == "ops@mail.test"
    for bad in ("not-an-address", "a@b@example.org", "ops@example.org\n", "ops@"):
        message = _refused({"acme_contact_email": bad})
        assert message.startswith("acme_contact_email: "), message


def _ca_pem(name: str) -> str:
    from controller.services.certificates import make_self_signed  # noqa: PLC0415

    return make_self_signed(name)[1].decode()


def test_acme_ca_bundle_is_normalised_pem_certificates() -> None:
    first, second = _ca_pem("ca-one.example"), _ca_pem("ca-two.example")
    assert build({"acme_ca_bundle": "  \n"}, {}).acme_ca_bundle == ""
    messy = "Bundle from the PKI team\r\n" + first.replace("\n", "\r\n") + "\n\n\n" + second
    settings = build({"acme_ca_bundle": messy}, {})
    assert settings.acme_ca_bundle == first + second
    # Normalised values are stable.
    assert build({"acme_ca_bundle": settings.acme_ca_bundle}, {}).acme_ca_bundle == first + second


def test_acme_ca_bundle_never_keeps_a_private_key() -> None:
    from controller.services.certificates import make_self_signed  # noqa: PLC0415

    key, certificate = make_self_signed("ca.example")
    settings = build({"acme_ca_bundle": (key + certificate).decode()}, {})
    assert settings.acme_ca_bundle == certificate.decode()
    assert "PRIVATE KEY" not in json.dumps(storable(settings, {}))


@pytest.mark.parametrize(
    "bundle",
    [
        "not a certificate",
        "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
        "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49\n-----END PRIVATE KEY-----\n",
        "-----BEGIN CERTIFICATE-----\nMIIB\u00e9\n-----END CERTIFICATE-----\n",
    ],
    ids=["text", "garbage body", "key only", "non-ascii"],
)
def test_acme_ca_bundle_refuses_anything_but_certificates(bundle: str) -> None:
    message = _refused({"acme_ca_bundle": bundle})
    assert message == "acme_ca_bundle: acme_ca_bundle must be PEM certificates only"


@pytest.mark.parametrize("key_type", ["ecdsa-p256", "rsa-2048", "rsa-3072", "rsa-4096"])
def test_acme_key_types(key_type: str) -> None:
    assert build({"acme_key_type": key_type}, {}).acme_key_type == key_type


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("acme_key_type", "rsa-1024"),
        ("acme_key_type", "ecdsa-p384"),
        ("acme_key_type", "RSA-2048"),
        ("acme_enabled", "true"),
        ("acme_enabled", 1),
        ("certificate_extra_names", "a.example.org b.example.org"),  # one name, not split
        ("certificate_extra_names", ["autoconfig.example.org\nevil.example"]),
        ("certificate_extra_names", ["*.example.org"]),
        ("certificate_extra_names", ["autoconfig"]),
        ("certificate_extra_names", ["a.example.org,b.example.org"]),
        ("certificate_extra_names", ["a.example.org b.example.org"]),
        ("certificate_extra_names", ["192.0.2.1"]),
        ("certificate_extra_names", [""]),
    ],
    ids=lambda v: repr(v)[:40],
)
def test_acme_settings_refuse_bad_values(name: str, value: Any) -> None:
    message = _refused({name: value})
    assert message.startswith(name), message


def test_certificate_extra_names_are_normalised_deduplicated_and_sorted() -> None:
    names = ["Webmail.Example.org", "autoconfig.example.org", "webmail.example.org", "münchen.de"]
    settings = build({"certificate_extra_names": names}, {})
    assert settings.certificate_extra_names == [
        "autoconfig.example.org",
        "webmail.example.org",
        "xn--mnchen-3ya.de",
    ]


def test_certificate_extra_names_are_limited_to_what_a_certificate_holds() -> None:
    names = [f"n{i}.example.org" for i in range(99)]
    assert len(build({"certificate_extra_names": names}, {}).certificate_extra_names) == 99
    # Duplicates do not count twice.
    deduplicated = build({"certificate_extra_names": [*names, names[0]]}, {})
    assert len(deduplicated.certificate_extra_names) == 99
    message = _refused({"certificate_extra_names": [*names, "n99.example.org"]})
    assert "at most 100 names" in message


def test_acme_settings_round_trip_through_storage() -> None:
    values = {
        "acme_enabled": True,
        "acme_directory_url": "https://pebble:14000/dir",
        "acme_contact_email": "ops@example.org",
        "acme_ca_bundle": _ca_pem("ca.example"),
        "acme_key_type": "rsa-3072",
        "certificate_extra_names": ["autoconfig.example.org"],
    }
    settings = build(values, {})
    stored = storable(settings, {})
    assert stored == values
    assert build(json.loads(json.dumps(stored)), {}) == settings


def test_postscreen_lists_accept_what_postfix_documents() -> None:
    settings = build(
        {
            "postscreen_dnsbl_sites": [
                "zen.spamhaus.org=127.0.0.[2..11]*3",
                "list.dnswl.org=127.0.[0..255].[1..3]*-2",
                "bl.example.net=127.0.0.[2;4;10..11]",
                "bl2.example.net=127.0.0.2",
            ],
            "postscreen_access_list": [{"network": "192.0.2.0/24", "action": "reject"}],
        },
        {},
    )
    assert settings.postscreen_dnsbl_sites[1] == "list.dnswl.org=127.0.[0..255].[1..3]*-2"
    assert settings.postscreen_access_list[0].network == "192.0.2.0/24"
    assert public_values(settings)["postscreen_access_list"] == [
        {"network": "192.0.2.0/24", "action": "reject"}
    ]


# --- failed logins (Dovecot auth policy) --------------------------------------------------
def test_login_blocking_defaults_are_safe() -> None:
    defaults = MailSettings()
    assert defaults.login_blocking_enabled is True
    assert defaults.login_slowdown_after_failures == 5
    assert defaults.login_slowdown_max_seconds == 8
    assert defaults.login_block_after_failures == 20
    assert defaults.login_failure_window_seconds == 15 * 60
    assert defaults.login_block_seconds == 3600
    assert defaults.login_block_exempt_networks == []


LOGIN_BLOCK_REFUSALS = [
    ("login_blocking_enabled", "yes"),
    ("login_slowdown_after_failures", 0),
    ("login_slowdown_max_seconds", 9),  # Postfix waits 10 s for SMTP AUTH
    ("login_slowdown_max_seconds", 0),
    ("login_block_after_failures", 0),
    ("login_block_after_failures", "20"),
    ("login_failure_window_seconds", 59),
    ("login_block_seconds", 9),
    ("login_block_seconds", 30 * 86_400 + 1),
    ("login_block_exempt_networks", ["0.0.0.0/0"]),
    ("login_block_exempt_networks", ["::/0"]),
    ("login_block_exempt_networks", ["10.0.0.1/8"]),
    ("login_block_exempt_networks", ['10.0.0.0/8", "0.0.0.0/0']),
    ("login_block_exempt_networks", ["webmail.example.org"]),
    ("login_block_exempt_networks", "10.0.0.0/8 192.0.2.0/24"),
    ("login_block_exempt_networks", [f"10.0.{n}.0/24" for n in range(101)]),
]


@pytest.mark.parametrize(("name", "value"), LOGIN_BLOCK_REFUSALS, ids=lambda v: repr(v)[:40])
def test_login_block_settings_refuse_bad_values(name: str, value: Any) -> None:
    message = _refused({name: value})
    assert message.startswith(name), message


def test_login_blocking_slows_down_before_it_blocks() -> None:
    message = _refused({"login_slowdown_after_failures": 21})
    assert "login_slowdown_after_failures must not exceed login_block_after_failures" in message
    settings = build({"login_slowdown_after_failures": 3, "login_block_after_failures": 3}, {})
    assert settings.login_block_after_failures == 3


def test_exempt_networks_are_normalised_and_may_be_ipv6() -> None:
    settings = build(
        {"login_block_exempt_networks": [" 198.51.100.0/24\n", "2001:DB8::/32", "198.51.100.0/24"]},
        {},
    )
    assert settings.login_block_exempt_networks == ["198.51.100.0/24", "2001:db8::/32"]


# --- input guards against self-inflicted harm --------------------------------------------
@pytest.mark.parametrize(
    ("site", "example"),
    [
        ("zen.spamhaus.org", "'zen.spamhaus.org=127.0.0.[2..11]'"),
        ("zen.spamhaus.org*3", "'zen.spamhaus.org=127.0.0.[2..11]*3'"),
        ("bl.example.net*-2", "'bl.example.net=127.0.0.[2..11]*-2'"),
    ],
)
def test_dnsbl_sites_need_a_reply_filter(site: str, example: str) -> None:
    message = _refused({"postscreen_dnsbl_sites": ["bl.example.org=127.0.0.2", site]})
    assert message.startswith("postscreen_dnsbl_sites: "), message
    assert "needs a reply filter" in message
    assert example in message
    assert "127.255.255" in message  # why: error answers would list every client


@pytest.mark.parametrize(
    "site",
    [
        "zen.spamhaus.org=",
        "zen.spamhaus.org=127.0.0",
        "zen.spamhaus.org=127.0.0.2.5",
        "zen.spamhaus.org=127.0.0.256",
        "zen.spamhaus.org=127.0.0.[2..]",
        "zen.spamhaus.org=127.0.0.[]",
        "zen.spamhaus.org=127.0.0.[2..11",
        "zen.spamhaus.org=127.0.0.[2,4]",
        "zen.spamhaus.org=127.0.0.*",
        "zen.spamhaus.org=127.0.0.2*x",
    ],
)
def test_malformed_reply_filters_are_refused(site: str) -> None:
    message = _refused({"postscreen_dnsbl_sites": [site]})
    assert "is not a DNSBL site" in message
    assert "zen.spamhaus.org=127.0.0.[2..11]*3" in message


@pytest.mark.parametrize("network", ["0.0.0.0/0", "::/0", "0.0.0.0/1", "128.0.0.0/1", "8.0.0.0/7"])
def test_mynetworks_refuses_open_relay_networks(network: str) -> None:
    message = _refused({"mynetworks": ["127.0.0.0/8", network]})
    assert message.startswith("mynetworks: "), message
    assert "open relay" in message
    assert "192.0.2.0/24" in message  # an example of what to list instead
    if network.endswith("/0"):
        assert "every address of the Internet" in message


def test_mynetworks_accepts_a_slash_8() -> None:
    assert build({"mynetworks": ["127.0.0.0/8", "10.0.0.0/8"]}, {}).mynetworks == [
        "127.0.0.0/8",
        "10.0.0.0/8",
    ]


def test_clamd_takes_a_stream_as_large_as_the_largest_message_postfix_may_accept() -> None:
    # Amavis streams each part to clamd (INSTREAM); clamd cuts off a longer stream.
    conf = (Path(__file__).resolve().parents[2] / "images" / "clamav" / "clamd.conf").read_text()
    (value,) = [line.split()[1] for line in conf.splitlines() if line.startswith("StreamMaxLength")]
    units = {"K": 1024, "M": 1024**2, "G": 1024**3}
    limit = int(value[:-1]) * units[value[-1]] if value[-1] in units else int(value)
    largest = next(
        constraint.le
        for constraint in MailSettings.model_fields["message_size_limit"].metadata
        if hasattr(constraint, "le")
    )
    assert limit >= largest
