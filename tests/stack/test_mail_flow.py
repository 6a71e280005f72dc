"""Mail in and out: what a user of a fresh stack notices first."""

from __future__ import annotations

import smtplib
import uuid

import pytest
from conftest import PASSWORD, Stack
from mailtools import (
    extract_size,
    imap_fetch,
    imap_login_works,
    insecure_tls,
    make_message,
    pop3_message_ids,
    smtp_reply_code,
    wait_for,
)


def test_mail_to_port_25_arrives_in_imaps_and_pop3s(stack: Stack) -> None:
    domain = stack.new_domain()
    alice = stack.new_mailbox(domain, "alice")
    message = make_message("bob@sender.test", [alice], "hello over port 25")

    with stack.smtp() as client:
        refused = client.send_message(message)
    assert refused == {}

    stack.wait_for_delivery(alice, message["Message-ID"])
    fetched = imap_fetch(stack.host, stack.ports["imaps"], alice, PASSWORD, message["Message-ID"])
    assert fetched is not None
    assert fetched["Subject"] == "hello over port 25"
    # Received by Postfix over ESMTP, then handed to Dovecot over LMTP; both hops name the
    # mail host (not a container ID).
    lmtp_hop, smtp_hop = fetched.get_all("Received")[:2]
    assert "by mail.mailyard.test with LMTP" in " ".join(lmtp_hop.split())
    assert "by mail.mailyard.test (Postfix) with ESMTP" in " ".join(smtp_hop.split())
    assert message["Message-ID"] in pop3_message_ids(
        stack.host, stack.ports["pop3s"], alice, PASSWORD
    )


def test_an_address_refused_before_its_domain_existed_is_live_once_created(
    stack: Stack,
) -> None:
    # Postfix's smtpd processes remember each recipient's class (foreign: "Relay access
    # denied") for their lifetime; the controller makes them forget when a domain is
    # added, so the README's "the moment the call returns" holds for this address too.
    name = f"late-{uuid.uuid4().hex[:8]}.test"
    alice = f"alice@{name}"
    message = make_message("bob@sender.test", [alice], "to a domain created just now")
    with stack.smtp() as client:
        client.mail("bob@sender.test")
        code, reply = client.rcpt(alice)
        assert (code, b"Relay access denied" in reply) == (554, True), reply

    assert stack.api("POST", "/domains", json={"name": name}).status_code == 201
    created = stack.api("POST", "/mailboxes", json={"address": alice, "password": PASSWORD})
    assert created.status_code == 201, created.text

    with stack.smtp() as client:
        assert client.send_message(message) == {}
    stack.wait_for_delivery(alice, message["Message-ID"])


def test_submission_on_587_relays_out_after_starttls_and_auth(stack: Stack) -> None:
    domain = stack.new_domain()
    alice = stack.new_mailbox(domain, "alice")
    message = make_message(alice, ["friend@remote.test"], "out through 587")

    with stack.submission(alice) as client:
        assert client.send_message(message) == {}

    # Relayed to the next hop ("the Internet" is the test sink here).
    wait_for("the message at the remote server", lambda: stack.sink_contains(message["Message-ID"]))


def test_submission_on_465_uses_implicit_tls(stack: Stack) -> None:
    domain = stack.new_domain()
    alice = stack.new_mailbox(domain, "alice")
    message = make_message(alice, ["friend@remote.test"], "out through 465")

    with smtplib.SMTP_SSL(
        stack.host, stack.ports["smtps"], context=insecure_tls(), timeout=60
    ) as client:
        client.ehlo("laptop.remote.test")
        client.login(alice, PASSWORD)
        assert client.send_message(message) == {}

    wait_for("the message at the remote server", lambda: stack.sink_contains(message["Message-ID"]))


def test_strangers_cannot_relay_through_port_25(stack: Stack) -> None:
    message = make_message("spammer@sender.test", ["victim@remote.test"], "relay me")
    with stack.smtp() as client, pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        client.send_message(message)
    code, text = smtp_reply_code(refused.value, "victim@remote.test")
    assert code == 554
    assert "Relay access denied" in text
    assert not stack.sink_contains(message["Message-ID"])


def test_submission_refuses_auth_before_starttls(stack: Stack) -> None:
    domain = stack.new_domain()
    alice = stack.new_mailbox(domain, "alice")
    with smtplib.SMTP(stack.host, stack.ports["submission"], timeout=30) as client:
        client.ehlo("laptop.remote.test")
        assert not client.has_extn("auth"), "AUTH must not be offered before STARTTLS"
        code, text = client.docmd("AUTH", "PLAIN " + "AGFsaWNlAHNlY3JldA==")
        assert code == 530
        assert b"STARTTLS" in text
        # The session is still usable once TLS is on.
        client.starttls(context=insecure_tls())
        client.ehlo("laptop.remote.test")
        client.login(alice, PASSWORD)


def test_wrong_password_is_refused_everywhere(stack: Stack) -> None:
    domain = stack.new_domain()
    alice = stack.new_mailbox(domain, "alice")
    with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
        stack.submission(alice, "not the password")
    assert refused.value.smtp_code == 535
    assert not imap_login_works(stack.host, stack.ports["imaps"], alice, "not the password")
    assert imap_login_works(stack.host, stack.ports["imaps"], alice, PASSWORD)


def test_sending_as_someone_else_is_refused(stack: Stack) -> None:
    domain = stack.new_domain()
    alice = stack.new_mailbox(domain, "alice")
    bob = stack.new_mailbox(domain, "bob")
    for forged in (bob, "ceo@bank.test"):
        message = make_message(forged, ["friend@remote.test"], "forged")
        # Postfix delays the sender check to RCPT time (smtpd_delay_reject).
        with (
            stack.submission(alice) as client,
            pytest.raises(smtplib.SMTPRecipientsRefused) as refused,
        ):
            client.send_message(message)
        code, text = smtp_reply_code(refused.value, "friend@remote.test")
        assert code == 553
        assert f"<{forged}>: Sender address rejected: not owned by user {alice}" in text
        assert not stack.sink_contains(message["Message-ID"])
    # Their own address works in the same session setup.
    own = make_message(alice, ["friend@remote.test"], "genuine")
    with stack.submission(alice) as client:
        assert client.send_message(own) == {}


def test_message_size_limit_is_announced(stack: Stack) -> None:
    with stack.smtp() as client:
        assert extract_size(client.esmtp_features) == 50 * 1024 * 1024
