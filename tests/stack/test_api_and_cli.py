"""The REST API and the `mailyard` command against the running stack."""

from __future__ import annotations

from conftest import PASSWORD, Stack
from mailtools import imap_login_works, make_message


def test_domain_scoped_token_cannot_see_or_change_another_domain(stack: Stack) -> None:
    mine = stack.new_domain("mine")
    theirs = stack.new_domain("theirs")
    their_mailbox = stack.new_mailbox(theirs, "victim")
    created = stack.api("POST", "/tokens", json={"name": "panel for mine", "domains": [mine]})
    assert created.status_code == 201, created.text
    token = created.json()["token"]

    listed = stack.api("GET", "/domains", token=token).json()
    assert [d["name"] for d in listed["items"]] == [mine]
    assert stack.api("GET", f"/domains/{theirs}", token=token).status_code == 404
    assert stack.api("GET", f"/mailboxes/{their_mailbox}", token=token).status_code == 404
    assert stack.api("GET", "/mailboxes", token=token, params={"domain": theirs}).status_code == 404
    assert (
        stack.api(
            "PATCH", f"/mailboxes/{their_mailbox}", token=token, json={"active": False}
        ).status_code
        == 404
    )
    assert stack.api("DELETE", f"/mailboxes/{their_mailbox}", token=token).status_code == 404
    refused = stack.api(
        "POST",
        "/mailboxes",
        token=token,
        json={"address": f"intruder@{theirs}", "password": PASSWORD},
    )
    assert refused.status_code == 403
    assert refused.headers["content-type"].startswith("application/problem+json")
    # Nothing changed for the other domain's user.
    assert imap_login_works(stack.host, stack.ports["imaps"], their_mailbox, PASSWORD)
    # Its own domain works.
    own = stack.api(
        "POST", "/mailboxes", token=token, json={"address": f"own@{mine}", "password": PASSWORD}
    )
    assert own.status_code == 201, own.text


def test_read_only_token_cannot_write(stack: Stack) -> None:
    domain = stack.new_domain()
    created = stack.api(
        "POST", "/tokens", json={"name": "monitoring", "admin": True, "read_only": True}
    )
    token = created.json()["token"]
    assert stack.api("GET", "/mailboxes", token=token).status_code == 200
    refused = stack.api(
        "POST", "/mailboxes", token=token, json={"address": f"x@{domain}", "password": PASSWORD}
    )
    assert refused.status_code == 403
    assert "read-only" in refused.json()["detail"]
    assert stack.api("GET", f"/mailboxes/x@{domain}").status_code == 404


def test_bad_input_is_refused_with_a_clear_problem_and_writes_nothing(stack: Stack) -> None:
    domain = stack.new_domain()
    for body in (
        {"address": f"evil\r\nRCPT TO:<x@y.test>@{domain}", "password": PASSWORD},
        {"address": f"o'brien@{domain}", "password": PASSWORD},
        {"address": f"{'a' * 65}@{domain}", "password": PASSWORD},
        {"address": f"ok@{domain}", "password": "short"},
    ):
        response = stack.api("POST", "/mailboxes", json=body)
        assert response.status_code == 422, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["detail"]
    listed = stack.api("GET", "/mailboxes", params={"domain": domain}).json()
    assert listed["total"] == 0
    assert stack.api("POST", "/domains", json={"name": domain}).status_code == 409


def test_mailyard_command_adds_domain_and_mailbox_that_receive_mail(stack: Stack) -> None:
    domain = f"cli-{stack.new_domain().removeprefix('d-')}"
    added = stack.mailyard("domain", "add", domain)
    assert f"added domain {domain}" in added.stdout
    stack.mailyard("mailbox", "add", f"cli@{domain}", "--password-stdin", stdin=PASSWORD + "\n")
    assert domain in stack.mailyard("domain", "list").stdout
    assert f"cli@{domain}" in stack.mailyard("mailbox", "list", "--domain", domain).stdout
    assert imap_login_works(stack.host, stack.ports["imaps"], f"cli@{domain}", PASSWORD)

    message = make_message("client@sender.test", [f"cli@{domain}"], "hello cli")
    with stack.smtp() as client:
        assert client.send_message(message) == {}
    stack.wait_for_delivery(f"cli@{domain}", message["Message-ID"])

    bad = stack.mailyard("domain", "add", "not a domain", check=False)
    assert bad.returncode == 2
    assert "not a valid domain name" in bad.stderr
