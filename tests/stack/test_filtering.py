"""The filter chain with real daemons: Amavis with SpamAssassin and ClamAV (offline EICAR
signature built here), postscreen DNSBL, postgrey, SPF and DKIM, against a test DNS
server (unbound) the tests fill at run time."""

from __future__ import annotations

import ipaddress
import json
import smtplib
import subprocess
import time
import uuid
from email.message import EmailMessage
from typing import Any

import dkim
import pytest
from conftest import EICAR, GTUBE, PASSWORD, Stack
from mailtools import (
    imap_fetch,
    imap_messages,
    make_message,
    smtp_reply_code,
    wait_for,
)

DNSBL_ZONE = "dnsbl.mailyard.test"


@pytest.fixture(scope="module")
def filter_stack(full_stack: Stack) -> Stack:
    """The stack with the whole filter chain (tests/stack/conftest.py, shared)."""
    return full_stack


def _dns(stack: Stack, *records: str) -> None:
    """Adds records to the test DNS server; unbound answers them at once."""
    for record in records:
        stack.exec("dns", "unbound-control", "local_data", record)


def _client_address(stack: Stack) -> str:
    """The address Postfix sees for connections from this host to a published port."""
    network = json.loads(
        subprocess.run(
            ["docker", "network", "inspect", f"{stack.project}_edge"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )[0]
    gateway: str = network["IPAM"]["Config"][0]["Gateway"]
    return gateway


def _policy(stack: Stack, domain: str, **values: Any) -> None:
    response = stack.api("PATCH", f"/domains/{domain}/filter", json=values)
    assert response.status_code == 200, response.text


def _send(stack: Stack, message: EmailMessage, sender: str, recipients: list[str]) -> None:
    with stack.smtp() as client:
        assert client.send_message(message, from_addr=sender, to_addrs=recipients) == {}


def _with_attachment(message: EmailMessage, name: str, content: bytes) -> EmailMessage:
    message.add_attachment(content, maintype="application", subtype="octet-stream", filename=name)
    return message


def _quarantined(stack: Stack, domain: str, message_id: str) -> dict[str, Any] | None:
    response = stack.api("GET", "/quarantine", params={"domain": domain})
    assert response.status_code == 200, response.text
    for item in response.json()["items"]:
        if item.get("message_id") == message_id:
            result: dict[str, Any] = item
            return result
    return None


def _deferred_count(stack: Stack) -> int:
    queue = stack.exec("postfix", "postqueue", "-j").stdout
    return sum(1 for line in queue.splitlines() if '"queue_name": "deferred"' in line)


def test_clean_mail_arrives_with_spamassassin_headers(filter_stack: Stack) -> None:
    stack = filter_stack
    domain = stack.new_domain("clean")
    reader = stack.new_mailbox(domain, "reader")
    message = make_message("friend@remote.test", [reader], "clean", "An ordinary message.")
    _send(stack, message, "friend@remote.test", [reader])
    stack.wait_for_delivery(reader, str(message["Message-ID"]), timeout=90)
    delivered = imap_fetch(
        stack.host, stack.ports["imaps"], reader, PASSWORD, str(message["Message-ID"])
    )
    assert delivered is not None
    assert str(delivered["X-Spam-Status"]).startswith("No")
    assert delivered["X-Spam-Score"] is not None
    assert delivered["X-Virus-Scanned"] is not None


def test_gtube_is_filed_into_junk_when_the_domain_tags(filter_stack: Stack) -> None:
    stack = filter_stack
    domain = stack.new_domain("tag")
    reader = stack.new_mailbox(domain, "reader")
    _policy(stack, domain, spam_action="deliver", spam_to_junk=True)
    message = make_message("spammer@remote.test", [reader], "cheap offer", GTUBE)
    _send(stack, message, "spammer@remote.test", [reader])
    stack.wait_for_delivery(reader, str(message["Message-ID"]), folder="Junk", timeout=90)
    assert str(message["Message-ID"]) not in stack.inbox(reader)
    junk = imap_fetch(
        stack.host,
        stack.ports["imaps"],
        reader,
        PASSWORD,
        str(message["Message-ID"]),
        folder="Junk",
    )
    assert junk is not None
    assert junk["X-Spam-Flag"] == "YES"


def test_gtube_is_rejected_when_the_domain_rejects(filter_stack: Stack) -> None:
    stack = filter_stack
    domain = stack.new_domain("reject")
    reader = stack.new_mailbox(domain, "reader")
    sender_domain = stack.new_domain("sender")
    sender = stack.new_mailbox(sender_domain, "sender")
    _policy(stack, domain, spam_action="reject")
    message = make_message(sender, [reader], "cheap offer", GTUBE)
    _send(stack, message, sender, [reader])
    # The sender hears about it (a non-delivery notice); the recipient gets nothing.
    wait_for(
        "the non-delivery notice in the sender's INBOX",
        lambda: any(
            _is_notice_about(fetched, message)
            for fetched in imap_messages(stack.host, stack.ports["imaps"], sender, PASSWORD)
        ),
        timeout=90,
    )
    assert str(message["Message-ID"]) not in stack.inbox(reader)
    assert str(message["Message-ID"]) not in stack.inbox(reader, folder="Junk")


def _is_notice_about(notice: EmailMessage, original: EmailMessage) -> bool:
    """A delivery status notification (RFC 3464) that names the original message."""
    return (
        notice.get_content_type() == "multipart/report"
        and notice.get_param("report-type") == "delivery-status"
        and str(original["Message-ID"]) in notice.as_string()
    )


def test_eicar_is_quarantined_and_released_through_the_api(filter_stack: Stack) -> None:
    stack = filter_stack
    domain = stack.new_domain("virus")
    reader = stack.new_mailbox(domain, "reader")
    _policy(stack, domain, virus_action="quarantine")
    message = _with_attachment(
        make_message("infected@remote.test", [reader], "invoice"), "invoice.com", EICAR
    )
    message_id = str(message["Message-ID"])
    _send(stack, message, "infected@remote.test", [reader])
    entry = wait_for(
        "the message in the quarantine",
        lambda: _quarantined(stack, domain, message_id),
        timeout=90,
        interval=2,
    )
    assert entry["content"] == "virus"
    assert message_id not in stack.inbox(reader)

    released = stack.api("POST", f"/quarantine/{entry['mail_id']}/release", timeout=60)
    assert released.status_code == 200, released.text
    stack.wait_for_delivery(reader, message_id, timeout=90)


def test_eicar_is_rejected_when_the_domain_rejects_viruses(filter_stack: Stack) -> None:
    stack = filter_stack
    domain = stack.new_domain("novirus")
    reader = stack.new_mailbox(domain, "reader")
    _policy(stack, domain, virus_action="reject")
    message = _with_attachment(
        make_message("infected@remote.test", [reader], "invoice"), "report.bin", EICAR
    )
    message_id = str(message["Message-ID"])
    _send(stack, message, "infected@remote.test", [reader])
    # Amavis logs its verdict; the message never reaches the mailbox nor the quarantine.
    wait_for(
        "Amavis to block the message",
        lambda: (
            "Blocked INFECTED" in stack.run_compose("logs", "amavis").stdout
            and message_id.strip("<>") in stack.run_compose("logs", "amavis").stdout
        ),
        timeout=90,
        interval=2,
    )
    assert message_id not in stack.inbox(reader)
    assert _quarantined(stack, domain, message_id) is None


def test_mail_waits_while_amavis_is_down_and_nothing_bounces(filter_stack: Stack) -> None:
    stack = filter_stack
    domain = stack.new_domain("waits")
    reader = stack.new_mailbox(domain, "reader")
    sender_domain = stack.new_domain("waitsender")
    sender = stack.new_mailbox(sender_domain, "sender")
    stack.run_compose("stop", "amavis")
    try:
        message = make_message(sender, [reader], "while amavis is down")
        _send(stack, message, sender, [reader])
        wait_for("the message to be deferred", lambda: _deferred_count(stack) >= 1, timeout=60)
        time.sleep(5)
        assert str(message["Message-ID"]) not in stack.inbox(reader)
    finally:
        stack.run_compose("start", "amavis")
    stack.wait_for_delivery(reader, str(message["Message-ID"]), timeout=180)
    # Nothing bounced: the sender's mailbox has no notice, Postfix logged no bounce.
    assert stack.inbox(sender) == []
    assert "status=bounced" not in stack.run_compose("logs", "postfix").stdout


def test_dnsbl_listed_client_is_refused_and_an_allowed_one_passes(filter_stack: Stack) -> None:
    stack = filter_stack
    domain = stack.new_domain("dnsbl")
    reader = stack.new_mailbox(domain, "reader")
    client = ipaddress.IPv4Address(_client_address(stack))
    listed = ".".join(reversed(str(client).split("."))) + f".{DNSBL_ZONE}"
    _dns(stack, f"{listed}. 60 IN A 127.0.0.2", f'{listed}. 60 IN TXT "listed for the test"')
    settings = {
        "postscreen_dnsbl_sites": [f"{DNSBL_ZONE}=127.0.0.[2..11]*3"],
        "postscreen_dnsbl_threshold": 3,
        "postscreen_dnsbl_action": "enforce",
    }
    response = stack.api("PATCH", "/settings", json=settings, timeout=300)
    assert response.status_code == 200, response.text
    try:
        refused = make_message("bot@remote.test", [reader], "from a listed client")
        with stack.smtp() as smtp, pytest.raises(smtplib.SMTPRecipientsRefused) as caught:
            smtp.send_message(refused)
        code, text = smtp_reply_code(caught.value, reader)
        assert code == 550, text
        assert DNSBL_ZONE in text or "Service unavailable" in text

        allowed = stack.api(
            "PATCH",
            "/settings",
            json={"postscreen_access_list": [{"network": f"{client}/32", "action": "permit"}]},
            timeout=300,
        )
        assert allowed.status_code == 200, allowed.text
        welcome = make_message("friend@remote.test", [reader], "from an allowed client")
        _send(stack, welcome, "friend@remote.test", [reader])
        stack.wait_for_delivery(reader, str(welcome["Message-ID"]), timeout=90)
    finally:
        reset = stack.api(
            "PATCH",
            "/settings",
            json={"postscreen_dnsbl_sites": [], "postscreen_access_list": []},
            timeout=300,
        )
        assert reset.status_code == 200, reset.text


def test_greylisting_defers_the_first_attempt_and_accepts_the_retry(filter_stack: Stack) -> None:
    stack = filter_stack
    domain = stack.new_domain("grey")
    reader = stack.new_mailbox(domain, "reader")
    response = stack.api(
        "PATCH",
        "/settings",
        json={"greylisting_enabled": True, "greylisting_delay_seconds": 5},
        timeout=300,
    )
    assert response.status_code == 200, response.text
    try:
        message = make_message("newcomer@remote.test", [reader], "greylisted")
        with stack.smtp() as smtp, pytest.raises(smtplib.SMTPRecipientsRefused) as caught:
            smtp.send_message(message)
        code, text = smtp_reply_code(caught.value, reader)
        assert code == 450, text
        time.sleep(7)
        _send(stack, message, "newcomer@remote.test", [reader])
        stack.wait_for_delivery(reader, str(message["Message-ID"]), timeout=90)
    finally:
        reset = stack.api("PATCH", "/settings", json={"greylisting_enabled": False}, timeout=300)
        assert reset.status_code == 200, reset.text


def test_spf_fail_is_refused(filter_stack: Stack) -> None:
    stack = filter_stack
    domain = stack.new_domain("spf")
    reader = stack.new_mailbox(domain, "reader")
    _dns(stack, 'strict-sender.test. 60 IN TXT "v=spf1 -all"')
    message = make_message("ceo@strict-sender.test", [reader], "forged")
    with stack.smtp() as smtp, pytest.raises(smtplib.SMTPRecipientsRefused) as caught:
        smtp.send_message(message)
    code, text = smtp_reply_code(caught.value, reader)
    assert code == 550, text
    assert "SPF" in text or "spf" in text
    # A sender without an SPF record is not refused for it.
    _dns(stack, 'relaxed-sender.test. 60 IN TXT "v=spf1 ?all"')
    fine = make_message("ceo@relaxed-sender.test", [reader], "neutral")
    _send(stack, fine, "ceo@relaxed-sender.test", [reader])
    stack.wait_for_delivery(reader, str(fine["Message-ID"]), timeout=90)


def _published_dkim_records(stack: Stack, domain: str) -> dict[str, str]:
    """The DKIM TXT records the DNS endpoint tells the admin to publish, by name."""
    records = stack.api("GET", f"/domains/{domain}/dns")
    assert records.status_code == 200, records.text
    return {
        record["name"].rstrip("."): record["value"]
        for record in records.json()["records"]
        if record["type"] == "TXT" and "._domainkey." in record["name"]
    }


def _signed_at_sink(stack: Stack, author: str) -> bytes:
    """Submits a message as `author` (587) and returns it as the next hop received it."""
    message = make_message(author, ["someone@elsewhere.test"], "signed")
    with stack.submission(author) as client:
        client.send_message(message)
    message_id = str(message["Message-ID"])
    wait_for("the message at the sink", lambda: stack.sink_contains(message_id), timeout=90)
    path = stack.exec("sink", "grep", "-rlF", message_id, "/var/sink").stdout.split()[0]
    stored = stack.exec("sink", "cat", path).stdout
    # smtp-sink puts its own X-* lines (client, envelope) above the message: unsigned
    # extra headers, which a verifier ignores. DKIM canonicalization wants CRLF.
    return stored.replace("\r\n", "\n").replace("\n", "\r\n").encode()


def _verify_every_signature(raw: bytes, records: dict[str, str]) -> list[str]:
    """Verifies each DKIM-Signature against `records`; returns their selectors."""

    def dns_txt(name: bytes, timeout: int = 5) -> bytes | None:
        value = records.get(name.decode().rstrip("."))
        return value.encode() if value is not None else None

    count = raw.count(b"\r\nDKIM-Signature:") + raw.startswith(b"DKIM-Signature:")
    assert count >= 1, raw[:3000]
    selectors = []
    for index in range(count):
        verifier = dkim.DKIM(raw)
        assert verifier.verify(idx=index, dnsfunc=dns_txt), (index, raw[:3000])
        selectors.append(verifier.signature_fields[b"s"].decode())
    return selectors


def test_outbound_mail_carries_a_dkim_signature_that_verifies(filter_stack: Stack) -> None:
    stack = filter_stack
    domain = stack.new_domain("signed")
    author = stack.new_mailbox(domain, "author")
    records = _published_dkim_records(stack, domain)
    assert len(records) == 1, records
    raw = _signed_at_sink(stack, author)
    (selector,) = _verify_every_signature(raw, records)
    assert f"{selector}._domainkey.{domain}" in records


def test_a_domain_added_with_the_command_signs_at_once(filter_stack: Stack) -> None:
    # The use case makes the key, so `mailyard domain add` does what POST /domains does
    # (it used to leave the domain without a key until the controller restarted).
    stack = filter_stack
    domain = f"cli-signed-{uuid.uuid4().hex[:8]}.test"
    stack.mailyard("domain", "add", domain)
    author = stack.new_mailbox(domain, "author")
    records = _published_dkim_records(stack, domain)
    assert len(records) == 1, records
    (selector,) = _verify_every_signature(_signed_at_sink(stack, author), records)
    assert f"{selector}._domainkey.{domain}" in records
    stack.mailyard("domain", "delete", domain, "--cascade")
    assert stack.exec(
        "controller", "ls", f"/var/lib/mailyard/dkim/{domain}", check=False
    ).returncode


def test_rotation_to_a_new_selector_and_an_ed25519_key_sign_at_once(filter_stack: Stack) -> None:
    stack = filter_stack
    domain = stack.new_domain("rotated")
    author = stack.new_mailbox(domain, "author")
    (old,) = [key["selector"] for key in stack.api("GET", f"/domains/{domain}/dkim").json()["keys"]]
    # A new RSA key (new selector) and an Ed25519 key: published first, then activated.
    new_keys = []
    for algorithm in ("rsa-2048", "ed25519"):
        rotated = stack.api("POST", f"/domains/{domain}/dkim/rotate", json={"algorithm": algorithm})
        assert rotated.status_code == 201, rotated.text
        assert rotated.json()["state"] == "published"
        new_keys.append(rotated.json()["selector"])
    for selector in new_keys:
        activated = stack.api("POST", f"/domains/{domain}/dkim/{selector}/activate")
        assert activated.status_code == 200, activated.text
    records = _published_dkim_records(stack, domain)
    # The retired key stays published so that mail it signed still verifies.
    assert f"{old}._domainkey.{domain}" in records
    raw = _signed_at_sink(stack, author)
    # One signature per active key (RFC 8463: RSA and Ed25519 side by side), no reload.
    assert sorted(_verify_every_signature(raw, records)) == sorted(new_keys)
