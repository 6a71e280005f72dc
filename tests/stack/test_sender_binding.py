"""Senders bound to their addresses (issue 13): on 587/465 the header From/Sender must
belong to the login (the sender milter, before OpenDKIM), the null sender is refused,
and what is accepted carries a DKIM signature that verifies against the published key;
on port 25 a stranger may not use a hosted domain as envelope sender. List mail from
Mailman still flows, signed."""

from __future__ import annotations

import smtplib
import uuid
from email.message import EmailMessage
from typing import Any

import dkim
import pytest
from conftest import PASSWORD, Stack
from mailtools import imap_messages, insecure_tls, make_message, smtp_reply_code, wait_for

OUTSIDE = "friend@remote.test"


def _client(stack: Stack, port: str, login: str) -> smtplib.SMTP:
    """An authenticated session on 587 (STARTTLS) or 465 (implicit TLS)."""
    if port == "submission":
        return stack.submission(login)
    client = smtplib.SMTP_SSL(stack.host, stack.ports["smtps"], context=insecure_tls(), timeout=60)
    client.ehlo("laptop.remote.test")
    client.login(login, PASSWORD)
    return client


def _refused_at_data(
    stack: Stack, port: str, login: str, message: EmailMessage, envelope: str
) -> tuple[int, str]:
    with _client(stack, port, login) as client, pytest.raises(smtplib.SMTPDataError) as caught:
        client.send_message(message, from_addr=envelope, to_addrs=[OUTSIDE])
    return caught.value.smtp_code, caught.value.smtp_error.decode(errors="replace")


def _published_dkim_records(stack: Stack, domain: str) -> dict[str, str]:
    """The DKIM TXT records GET /domains/{name}/dns tells the admin to publish."""
    response = stack.api("GET", f"/domains/{domain}/dns")
    assert response.status_code == 200, response.text
    return {
        record["name"].rstrip("."): record["value"]
        for record in response.json()["records"]
        if record["type"] == "TXT" and "._domainkey." in record["name"]
    }


def _at_sink(stack: Stack, needle: str, *also: str) -> bytes:
    """The message the next hop (the sink) received that contains `needle` and every
    string in `also`, with CRLF line ends."""

    def find() -> str | None:
        paths = stack.exec("sink", "grep", "-rlF", needle, "/var/sink", check=False).stdout
        for path in paths.split():
            stored = stack.exec("sink", "cat", path).stdout
            if all(text in stored for text in also):
                return stored
        return None

    stored = wait_for(f"{needle} {also} at the sink", find, timeout=120, interval=1)
    # smtp-sink writes its own X-* lines above the message: unsigned, ignored by a
    # verifier. DKIM canonicalization wants CRLF.
    return stored.replace("\r\n", "\n").replace("\n", "\r\n").encode()


def _signed_by(raw: bytes, records: dict[str, str]) -> set[str]:
    """The d= of every DKIM signature in `raw` that verifies against `records`."""

    def dns_txt(name: bytes, timeout: int = 5) -> bytes | None:
        value = records.get(name.decode().rstrip("."))
        return value.encode() if value is not None else None

    count = raw.count(b"\r\nDKIM-Signature:") + raw.startswith(b"DKIM-Signature:")
    domains = set()
    for index in range(count):
        verifier = dkim.DKIM(raw)
        try:
            verified = verifier.verify(idx=index, dnsfunc=dns_txt)
        except dkim.DKIMException:
            # e.g. the poster's own signature, broken by the list's changes (a list post
            # at the sink carries it below the list's new one).
            continue
        if verified:
            domains.add(verifier.signature_fields[b"d"].decode())
    return domains


def _alias(stack: Stack, address: str, destinations: list[str]) -> str:
    response = stack.api(
        "POST", "/aliases", json={"address": address, "destinations": destinations}
    )
    assert response.status_code == 201, response.text
    return address


# --- port 25 --------------------------------------------------------------------------------
def test_a_stranger_on_port_25_may_not_use_a_hosted_sender(
    stack: Stack, restore_settings: None
) -> None:
    domain = stack.new_domain("spoofed")
    alice = stack.new_mailbox(domain, "alice")
    alias_domain = f"alias-{domain}"
    response = stack.api(
        "POST", "/alias-domains", json={"name": alias_domain, "target_domain": domain}
    )
    assert response.status_code == 201, response.text

    for forged in (alice, f"ceo@{domain}", f"alice@{alias_domain}"):
        with stack.smtp() as client:
            assert client.mail(forged)[0] == 250  # decided at RCPT (smtpd_delay_reject)
            code, text = client.rcpt(alice)
        assert code == 554, (forged, code, text)
        reply = text.decode()
        assert reply.startswith("5.7.1"), reply
        assert f"<{forged}>: Sender address rejected: This domain is hosted on this server" in (
            reply
        )
    # A sender of a domain hosted elsewhere still gets through, and so does the null
    # sender (bounces from other servers).
    for sender in ("bob@remote.test", ""):
        with stack.smtp() as client:
            assert client.mail(sender)[0] == 250
            assert client.rcpt(alice)[0] == 250, sender

    # The setting goes through the pipeline; off, the forged sender is accepted again.
    response = stack.api(
        "PATCH", "/settings", json={"reject_hosted_sender_spoofing": False}, timeout=180
    )
    assert response.status_code == 200, response.text
    assert response.json()["apply"]["status"] == "succeeded"
    message = make_message(alice, [alice], "forwarded without SRS")
    with stack.smtp() as client:
        assert client.send_message(message) == {}
    stack.wait_for_delivery(alice, str(message["Message-ID"]))


# --- 587 and 465 -----------------------------------------------------------------------------
@pytest.mark.parametrize("port", ["submission", "smtps"])
def test_header_from_of_someone_else_is_refused_before_signing(stack: Stack, port: str) -> None:
    domain = stack.new_domain("bound")
    other_domain = stack.new_domain("victim")
    alice = stack.new_mailbox(domain, "alice")
    bob = stack.new_mailbox(domain, "bob")
    ceo = stack.new_mailbox(other_domain, "ceo")

    cases = {
        # another hosted domain: OpenDKIM holds its key and would sign
        "cross-domain": {"From": ceo},
        "another mailbox": {"From": bob},
        "one of two From addresses": {"From": f"{alice}, {ceo}"},
        "Sender of another": {"From": alice, "Sender": bob},
        "display-name trick": {"From": f"{ceo} <{alice}>"},
    }
    for case, headers in cases.items():
        message = make_message(alice, [OUTSIDE], f"forged {case}")
        del message["From"]
        for name, value in headers.items():
            message[name] = value
        # The envelope is alice's own address: only the header is forged.
        code, text = _refused_at_data(stack, port, alice, message, alice)
        assert code == 550, (case, code, text)
        assert text.startswith("5.7.1"), (case, text)
        if case == "display-name trick":
            assert "Cannot tell which address the From: header names" in text, text
        else:
            forged = ceo if ceo in headers.get("From", "") else bob
            assert f"<{forged}> is not yours: {alice} may not send as it" in text, (case, text)
        assert not stack.sink_contains(str(message["Message-ID"])), case

    missing = make_message(alice, [OUTSIDE], "no From at all")
    del missing["From"]
    code, text = _refused_at_data(stack, port, alice, missing, alice)
    assert code == 550, text
    assert text.startswith("5.6.0"), text
    assert "no From: header" in text, text


@pytest.mark.parametrize("port", ["submission", "smtps"])
def test_the_null_sender_is_refused_on_submission(stack: Stack, port: str) -> None:
    domain = stack.new_domain("null")
    alice = stack.new_mailbox(domain, "alice")
    message = make_message(alice, [OUTSIDE], "null sender")
    with _client(stack, port, alice) as client:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as caught:
            client.send_message(message, from_addr="", to_addrs=[OUTSIDE])
        code, text = smtp_reply_code(caught.value, OUTSIDE)
    assert code == 554, text
    assert text.startswith("5.7.1"), text
    assert "The null sender is not allowed on submission" in text
    assert not stack.sink_contains(str(message["Message-ID"]))


@pytest.mark.parametrize("port", ["submission", "smtps"])
def test_own_address_and_alias_are_accepted_and_signed(stack: Stack, port: str) -> None:
    domain = stack.new_domain("signed")
    alice = stack.new_mailbox(domain, "alice")
    sales = _alias(stack, f"sales@{domain}", [alice])
    records = _published_dkim_records(stack, domain)
    assert records, "the DNS endpoint publishes no DKIM key"

    for author, envelope in ((alice, alice), (sales, sales), (sales, alice), (alice, sales)):
        message = make_message(author, [OUTSIDE], f"from {author} via {envelope}")
        message["Sender"] = alice if author != alice else author
        with _client(stack, port, alice) as client:
            assert client.send_message(message, from_addr=envelope, to_addrs=[OUTSIDE]) == {}
        raw = _at_sink(stack, str(message["Message-ID"]))
        assert _signed_by(raw, records) == {domain}, (author, envelope)
    # Another case and an address extension belong to the same owner, as in the envelope.
    local, _, host = alice.partition("@")
    message = make_message(f"Alice <{local.upper()}+news@{host}>", [OUTSIDE], "shouting")
    with _client(stack, port, alice) as client:
        assert client.send_message(message, from_addr=alice, to_addrs=[OUTSIDE]) == {}
    assert _signed_by(_at_sink(stack, str(message["Message-ID"])), records) == {domain}


# --- lists -------------------------------------------------------------------------------------
def _new_list(stack: Stack, domain: str, name: str, **settings: Any) -> str:
    response = stack.api(
        "POST", f"/domains/{domain}/lists", json={"name": name, **settings}, timeout=60
    )
    assert response.status_code == 201, response.text
    address: str = response.json()["address"]
    return address


def _add_member(stack: Stack, address: str, member: str) -> None:
    response = stack.api(
        "POST", f"/lists/{address}/members", json={"email": member, "role": "member"}, timeout=60
    )
    assert response.status_code == 201, response.text


def test_list_posts_and_mailmans_own_mail_flow_signed(stack: Stack) -> None:
    domain = stack.new_domain("listsigned")
    poster = stack.new_mailbox(domain, "poster")
    records = _published_dkim_records(stack, domain)
    address = _new_list(stack, domain, f"news-{uuid.uuid4().hex[:6]}")
    outsider = f"reader-{uuid.uuid4().hex[:6]}@remote.test"
    for member in (poster, outsider):
        _add_member(stack, address, member)

    # A member's post through 587: the poster's From is theirs, the list's copy for the
    # outside member leaves through Mailman (port 10027) and is signed there.
    subject = f"post {uuid.uuid4().hex[:8]}"
    message = make_message(poster, [address], subject, "Hello, list.")
    with stack.submission(poster) as client:
        assert client.send_message(message) == {}
    raw = _at_sink(stack, subject)
    assert b"List-Id:" in raw
    assert domain in _signed_by(raw, records)
    # The poster's own copy arrives too.
    wait_for(
        "the post in the poster's INBOX",
        lambda: any(
            subject in str(item["Subject"])
            for item in imap_messages(stack.host, stack.ports["imaps"], poster, PASSWORD)
        ),
        timeout=120,
        interval=2,
    )

    # Mailman's own mail (the welcome message to the new outside member), From the list's
    # -owner/-request address: signed for the list's domain.
    raw = _at_sink(stack, outsider, "Welcome")
    assert domain in _signed_by(raw, records), raw[:2000]
