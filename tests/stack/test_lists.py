"""Mailing lists with the real Mailman 3 core behind the controller's API: posts reach
every member over IMAP, members-only holds strangers for the moderator, -leave asks for
confirmation, and a deleted list's address is refused."""

from __future__ import annotations

import email
import smtplib
from email.message import EmailMessage
from typing import Any

import pytest
from conftest import PASSWORD, Stack
from mailtools import imap_messages, make_message, smtp_reply_code, wait_for


def _new_list(stack: Stack, domain: str, name: str, **settings: Any) -> str:
    response = stack.api(
        "POST", f"/domains/{domain}/lists", json={"name": name, **settings}, timeout=60
    )
    assert response.status_code == 201, response.text
    address: str = response.json()["address"]
    return address


def _add_member(stack: Stack, address: str, member: str, role: str = "member") -> None:
    response = stack.api(
        "POST", f"/lists/{address}/members", json={"email": member, "role": role}, timeout=60
    )
    assert response.status_code == 201, response.text


def _messages(stack: Stack, address: str) -> list[EmailMessage]:
    return imap_messages(stack.host, stack.ports["imaps"], address, PASSWORD)


def _with_subject(stack: Stack, address: str, text: str) -> EmailMessage | None:
    for message in _messages(stack, address):
        if text in str(message["Subject"] or ""):
            return message
    return None


def _post(stack: Stack, sender: str, to: str, subject: str) -> None:
    """A post as the sender's own mail client makes it: submission on 587."""
    message = make_message(sender, [to], subject, "Hello, list.")
    with stack.submission(sender) as client:
        client.send_message(message)


def test_a_members_post_reaches_every_member_with_the_subject_prefix(stack: Stack) -> None:
    domain = stack.new_domain("lists")
    members = [stack.new_mailbox(domain, name) for name in ("ann", "ben", "cat")]
    address = _new_list(stack, domain, "team", subject_prefix="[team] ")
    for member in members:
        _add_member(stack, address, member)

    _post(stack, members[0], address, "first post")

    for member in members:
        received = wait_for(
            f"the post in {member}'s INBOX",
            lambda member=member: _with_subject(stack, member, "first post"),
            timeout=120,
            interval=2,
        )
        assert str(received["Subject"]).startswith("[team] ")
        assert received["List-Id"] is not None


def test_members_only_holds_a_strangers_post_until_the_moderator_approves(stack: Stack) -> None:
    domain = stack.new_domain("held")
    member = stack.new_mailbox(domain, "member")
    moderator = stack.new_mailbox(domain, "mod")
    stranger_domain = stack.new_domain("outside")
    stranger = stack.new_mailbox(stranger_domain, "stranger")
    address = _new_list(stack, domain, "club", posting="members")
    _add_member(stack, address, member)
    _add_member(stack, address, moderator, role="moderator")

    _post(stack, stranger, address, "let me in")
    held = wait_for(
        "the post to be held for moderation",
        lambda: stack.api("GET", f"/lists/{address}/held").json()["items"],
        timeout=120,
        interval=2,
    )
    assert _with_subject(stack, member, "let me in") is None

    approved = stack.api(
        "POST", f"/lists/{address}/held/{held[0]['id']}", json={"action": "accept"}, timeout=60
    )
    assert approved.status_code == 200, approved.text
    wait_for(
        "the approved post in the member's INBOX",
        lambda: _with_subject(stack, member, "let me in"),
        timeout=120,
        interval=2,
    )


def test_mail_to_leave_unsubscribes_after_confirmation(stack: Stack) -> None:
    domain = stack.new_domain("leave")
    member = stack.new_mailbox(domain, "member")
    address = _new_list(stack, domain, "news")
    _add_member(stack, address, member)
    local, _, host = address.partition("@")

    _post(stack, member, f"{local}-leave@{host}", "leave")
    confirmation = wait_for(
        "Mailman's confirmation request",
        lambda: next(
            (m for m in _messages(stack, member) if f"{local}-confirm+" in str(m["From"] or "")),
            None,
        ),
        timeout=120,
        interval=2,
    )
    # Still a member until the confirmation comes back.
    members = stack.api("GET", f"/lists/{address}/members").json()["items"]
    assert member in [item["email"] for item in members]

    # Replying to the confirmation (its From address carries the token) confirms.
    confirm_address = email.utils.parseaddr(str(confirmation["From"]))[1]
    subject = " ".join(str(confirmation["Subject"]).split())  # unfolded
    reply = make_message(member, [confirm_address], f"Re: {subject}")
    with stack.submission(member) as client:
        client.send_message(reply)
    wait_for(
        "the member to be unsubscribed",
        lambda: (
            member
            not in [
                item["email"]
                for item in stack.api("GET", f"/lists/{address}/members").json()["items"]
            ]
        ),
        timeout=120,
        interval=2,
    )


def test_a_deleted_list_is_gone_from_mailman_and_its_address_bounces(stack: Stack) -> None:
    domain = stack.new_domain("gone")
    member = stack.new_mailbox(domain, "member")
    address = _new_list(stack, domain, "old")
    _add_member(stack, address, member)
    # The address takes mail while the list exists...
    with stack.smtp() as smtp:
        assert smtp.mail("someone@remote.test")[0] == 250
        assert smtp.rcpt(address)[0] == 250
        smtp.rset()

    deleted = stack.api("DELETE", f"/lists/{address}", timeout=60)
    assert deleted.status_code == 204, deleted.text

    assert stack.api("GET", f"/lists/{address}").status_code == 404
    listed = stack.api("GET", f"/domains/{domain}/lists").json()["items"]
    assert address not in [item["address"] for item in listed]
    # ...and is refused with 5xx once it is gone (no reload: the lookup is live).
    message = make_message("someone@remote.test", [address], "to a deleted list")
    with stack.smtp() as smtp, pytest.raises(smtplib.SMTPRecipientsRefused) as caught:
        smtp.send_message(message)
    code, text = smtp_reply_code(caught.value, address)
    assert 500 <= code < 600, text


def test_a_catch_all_alias_does_not_swallow_list_mail(stack: Stack) -> None:
    domain = stack.new_domain("catchall")
    member = stack.new_mailbox(domain, "member")
    catcher = stack.new_mailbox(domain, "catcher")
    caught = stack.api(
        "POST", "/aliases", json={"address": f"@{domain}", "destinations": [catcher]}
    )
    assert caught.status_code == 201, caught.text
    address = _new_list(stack, domain, "all", posting="anyone")
    _add_member(stack, address, member)

    message = make_message("friend@remote.test", [address], "to the list, not the catch-all")
    with stack.smtp() as smtp:
        smtp.send_message(message)
    wait_for(
        "the post in the member's INBOX",
        lambda: _with_subject(stack, member, "not the catch-all"),
        timeout=120,
        interval=2,
    )
    assert _with_subject(stack, catcher, "not the catch-all") is None


def test_the_mailyard_command_creates_a_list_and_adds_members(stack: Stack) -> None:
    domain = stack.new_domain("cli")
    member = stack.new_mailbox(domain, "member")
    address = f"crew@{domain}"
    created = stack.mailyard("list", "create", address, "--posting", "anyone")
    assert address in created.stdout
    stack.mailyard("list", "add-member", address, member, "--role", "owner")

    shown = stack.api("GET", f"/lists/{address}")
    assert shown.status_code == 200, shown.text
    assert shown.json()["posting"] == "anyone"
    members = stack.api("GET", f"/lists/{address}/members").json()["items"]
    assert [(item["email"], item["role"]) for item in members] == [(member, "owner")]
