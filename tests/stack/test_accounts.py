"""Mailbox life cycle as users notice it: usable at once, gone at once, quota enforced."""

from __future__ import annotations

import imaplib
import smtplib

import pytest
from conftest import PASSWORD, Stack
from mailtools import imap_login_works, insecure_tls, make_message, smtp_reply_code


def _login(stack: Stack, address: str, password: str = PASSWORD) -> bool:
    return imap_login_works(stack.host, stack.ports["imaps"], address, password)


def test_new_mailbox_logs_in_at_once_even_after_a_failed_attempt(stack: Stack) -> None:
    domain = stack.new_domain()
    address = f"late@{domain}"
    # A failed login before the mailbox exists leaves a negative entry in Dovecot's
    # auth cache; creating the mailbox must clear it.
    assert not _login(stack, address)
    stack.new_mailbox(domain, "late")
    assert _login(stack, address)


def test_password_change_takes_effect_at_once(stack: Stack) -> None:
    domain = stack.new_domain()
    address = stack.new_mailbox(domain, "carol")
    assert _login(stack, address)  # now cached
    new_password = "a different long passphrase"
    response = stack.api("PATCH", f"/mailboxes/{address}", json={"password": new_password})
    assert response.status_code == 200, response.text
    assert not _login(stack, address)
    assert _login(stack, address, new_password)


def test_disabled_mailbox_stops_authenticating_at_once(stack: Stack) -> None:
    domain = stack.new_domain()
    address = stack.new_mailbox(domain, "dave")
    assert _login(stack, address)
    assert stack.api("PATCH", f"/mailboxes/{address}", json={"active": False}).status_code == 200
    assert not _login(stack, address)
    with pytest.raises(smtplib.SMTPAuthenticationError):
        stack.submission(address)
    assert stack.api("PATCH", f"/mailboxes/{address}", json={"active": True}).status_code == 200
    assert _login(stack, address)


def test_deleted_mailbox_stops_receiving_and_authenticating(stack: Stack) -> None:
    domain = stack.new_domain()
    address = stack.new_mailbox(domain, "erin")
    first = make_message("client@sender.test", [address], "before deletion")
    with stack.smtp() as client:
        assert client.send_message(first) == {}
    stack.wait_for_delivery(address, first["Message-ID"])
    with stack.submission(address):
        pass  # SMTP AUTH works and is cached

    assert stack.api("DELETE", f"/mailboxes/{address}").status_code == 204

    with stack.smtp() as client, pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        client.send_message(make_message("client@sender.test", [address], "after deletion"))
    code, text = smtp_reply_code(refused.value, address)
    assert code == 550
    assert "User unknown" in text
    assert not _login(stack, address)
    with pytest.raises(smtplib.SMTPAuthenticationError):
        stack.submission(address)


def test_over_quota_delivery_is_refused_with_a_reply(stack: Stack) -> None:
    domain = stack.new_domain()
    address = stack.new_mailbox(domain, "frank", quota_mb=1)
    filler = make_message("client@sender.test", [address], "fills most of it", "x" * 700_000)
    with stack.smtp() as client:
        assert client.send_message(filler) == {}
    stack.wait_for_delivery(address, filler["Message-ID"])

    # The next message would not fit: Postfix asks Dovecot's quota service at RCPT time,
    # so the sending server gets the refusal in the SMTP dialogue (no silent drop, no
    # later bounce).
    second = make_message("client@sender.test", [address], "does not fit", "y" * 700_000)
    with stack.smtp() as client, pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        client.send_message(second)
    code, text = smtp_reply_code(refused.value, address)
    assert code == 552
    assert "Mailbox is full" in text
    assert second["Message-ID"] not in stack.inbox(address)


def test_imap_on_143_requires_starttls_before_login(stack: Stack) -> None:
    domain = stack.new_domain()
    address = stack.new_mailbox(domain, "gina")
    with imaplib.IMAP4(stack.host, stack.ports["imap"], timeout=15) as client:
        assert "LOGINDISABLED" in client.capabilities
        with pytest.raises(imaplib.IMAP4.error):
            client.login(address, PASSWORD)
    with imaplib.IMAP4(stack.host, stack.ports["imap"], timeout=15) as client:
        client.starttls(ssl_context=insecure_tls())
        status, _ = client.login(address, PASSWORD)
        assert status == "OK"
