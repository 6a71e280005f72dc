"""Aliases, catch-alls, alias domains and relay domains, all read live from MariaDB."""

from __future__ import annotations

import smtplib

import pytest
from conftest import Stack
from mailtools import make_message, smtp_reply_code, wait_for


def test_alias_with_two_destinations_delivers_to_both(stack: Stack) -> None:
    domain = stack.new_domain()
    alice = stack.new_mailbox(domain, "alice")
    bob = stack.new_mailbox(domain, "bob")
    response = stack.api(
        "POST", "/aliases", json={"address": f"team@{domain}", "destinations": [alice, bob]}
    )
    assert response.status_code == 201, response.text

    message = make_message("client@sender.test", [f"team@{domain}"], "to the team")
    with stack.smtp() as client:
        assert client.send_message(message) == {}
    stack.wait_for_delivery(alice, message["Message-ID"])
    stack.wait_for_delivery(bob, message["Message-ID"])


def test_catch_all_catches_unknown_addresses_but_not_mailboxes(stack: Stack) -> None:
    domain = stack.new_domain()
    alice = stack.new_mailbox(domain, "alice")
    catcher = stack.new_mailbox(domain, "catcher")
    unknown = f"nobody@{domain}"

    # Before the catch-all exists, unknown recipients are refused at RCPT.
    early = make_message("client@sender.test", [unknown], "too early")
    with stack.smtp() as client, pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        client.send_message(early)
    code, text = smtp_reply_code(refused.value, unknown)
    assert code == 550
    assert "User unknown" in text

    response = stack.api(
        "POST", "/aliases", json={"address": f"@{domain}", "destinations": [catcher]}
    )
    assert response.status_code == 201, response.text

    stray = make_message("client@sender.test", [unknown], "stray")
    direct = make_message("client@sender.test", [alice], "for alice only")
    with stack.smtp() as client:
        assert client.send_message(stray) == {}
        assert client.send_message(direct) == {}
    stack.wait_for_delivery(catcher, stray["Message-ID"])
    stack.wait_for_delivery(alice, direct["Message-ID"])
    # The catch-all did not swallow mail for an existing mailbox.
    assert direct["Message-ID"] not in stack.inbox(catcher)


def test_alias_domain_maps_to_its_target(stack: Stack) -> None:
    target = stack.new_domain("target")
    alice = stack.new_mailbox(target, "alice")
    alias_domain = f"alias-{target}"
    response = stack.api(
        "POST", "/alias-domains", json={"name": alias_domain, "target_domain": target}
    )
    assert response.status_code == 201, response.text

    message = make_message("client@sender.test", [f"alice@{alias_domain}"], "via alias domain")
    with stack.smtp() as client:
        assert client.send_message(message) == {}
    stack.wait_for_delivery(alice, message["Message-ID"])

    # Users that do not exist at the target are refused, not accepted and bounced later.
    with stack.smtp() as client, pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        client.send_message(make_message("client@sender.test", [f"ghost@{alias_domain}"], "ghost"))
    assert smtp_reply_code(refused.value, f"ghost@{alias_domain}")[0] == 550

    # And alice may send as her alias-domain address.
    outbound = make_message(f"alice@{alias_domain}", ["friend@remote.test"], "from alias domain")
    with stack.submission(alice) as client:
        assert client.send_message(outbound) == {}
    wait_for(
        "the message at the remote server", lambda: stack.sink_contains(outbound["Message-ID"])
    )


def test_relay_domain_is_accepted_from_strangers_and_forwarded(stack: Stack) -> None:
    """Backup MX (seed 003): accept mail for a relay domain and pass it to its next hop."""
    relayed = f"relayed-{stack.new_domain('r')}"
    stack.api("DELETE", f"/domains/{relayed.removeprefix('relayed-')}")
    response = stack.api("POST", "/relay-domains", json={"name": relayed, "nexthop": "[sink]:25"})
    assert response.status_code == 201, response.text

    message = make_message("client@sender.test", [f"anyone@{relayed}"], "backup mx")
    with stack.smtp() as client:
        assert client.send_message(message) == {}
    wait_for(
        "the relayed message at the next hop", lambda: stack.sink_contains(message["Message-ID"])
    )

    # A subdomain of a relay domain is not relayed.
    with stack.smtp() as client, pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        client.send_message(make_message("c@sender.test", [f"x@sub.{relayed}"], "sub"))
    assert smtp_reply_code(refused.value, f"x@sub.{relayed}")[0] == 554
