"""Issue 14, item 5: the `mailyard` command and the API speak to the user in its terms.

Against the running stack, as a user reaches it: the command through
`docker compose exec -T controller mailyard ...` (no terminal), the API over HTTP with
the bodies a script or a hand-written curl call really sends.
"""

from __future__ import annotations

import subprocess

import httpx
import pytest
from conftest import PASSWORD, Stack

PROBLEM_JSON = "application/problem+json"
SEND_JSON = "send JSON with Content-Type: application/json"


def _mailyard_without_terminal(
    stack: Stack, *args: str, stdin: str = "", env: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """`docker compose exec -T controller mailyard ARGS`, as the operations guide says."""
    options = [item for name in env for item in ("-e", name)]
    return stack.run_compose(
        "exec", "-T", *options, "controller", "mailyard", *args, input=stdin, check=False
    )


def _one_sentence(result: subprocess.CompletedProcess[str]) -> str:
    """A failed command: non-zero exit, one line on stderr, no traceback."""
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("mailyard: "), result.stderr
    return lines[0]


# --- 1. a single value where a list is expected ----------------------------------------------
@pytest.mark.usefixtures("restore_settings")
def test_command_takes_a_single_value_for_a_list_setting(stack: Stack) -> None:
    result = _mailyard_without_terminal(stack, "settings", "set", "mynetworks=127.0.0.0/8")
    assert result.returncode == 0, result.stderr
    assert "valid list" not in result.stderr
    assert stack.api("GET", "/settings").json()["settings"]["mynetworks"] == ["127.0.0.0/8"]


@pytest.mark.usefixtures("restore_settings")
def test_api_takes_a_single_value_for_a_list_setting(stack: Stack) -> None:
    response = stack.api(
        "PATCH", "/settings", json={"login_block_exempt_networks": "192.0.2.0/24"}, timeout=180
    )
    assert response.status_code == 200, response.text
    assert response.json()["settings"]["login_block_exempt_networks"] == ["192.0.2.0/24"]
    # Still validated as one element: not split, a newline refused.
    for value in ("192.0.2.0/24,198.51.100.0/24", "127.0.0.0/8\n0.0.0.0/0"):
        refused = stack.api("PATCH", "/settings", json={"mynetworks": value})
        assert refused.status_code == 422, refused.text
        assert "valid list" not in refused.json()["detail"]


# --- 2. no traceback reaches the user --------------------------------------------------------
def test_mailbox_add_without_a_terminal_says_to_use_password_stdin(stack: Stack) -> None:
    domain = stack.new_domain("tty")
    line = _one_sentence(_mailyard_without_terminal(stack, "mailbox", "add", f"x@{domain}"))
    assert "no terminal to ask for the password" in line
    assert f"mailyard mailbox add x@{domain} --password-stdin" in line
    assert stack.api("GET", f"/mailboxes/x@{domain}").status_code == 404
    # The way it names works.
    done = _mailyard_without_terminal(
        stack, "mailbox", "add", f"x@{domain}", "--password-stdin", stdin=f"{PASSWORD}\n"
    )
    assert done.returncode == 0, done.stderr


def test_an_unreachable_database_is_one_sentence(stack: Stack) -> None:
    result = _mailyard_without_terminal(
        stack, "domain", "list", env=("MAILYARD_DB_HOST=db-missing.invalid",)
    )
    line = _one_sentence(result)
    assert "cannot use the database" in line
    assert "docker compose ps db" in line


# --- 3. the command names commands, the API names requests ---------------------------------------
def test_command_errors_name_command_line_actions(stack: Stack) -> None:
    unhosted = f"unhosted-{stack.project[-8:]}.test"
    line = _one_sentence(
        _mailyard_without_terminal(
            stack, "mailbox", "add", f"a@{unhosted}", "--password-stdin", stdin=f"{PASSWORD}\n"
        )
    )
    assert line.endswith(f"create it first: mailyard domain add {unhosted}"), line
    assert "/api/v1" not in line
    line = _one_sentence(_mailyard_without_terminal(stack, "blocks", "lift", "192.0.2.99"))
    assert line.endswith("mailyard blocks list"), line
    line = _one_sentence(_mailyard_without_terminal(stack, "settings", "set", "smtpd_banner=x"))
    assert line.endswith("mailyard settings show"), line
    assert "/api/v1" not in line


def test_api_errors_name_requests(stack: Stack) -> None:
    unhosted = f"unhosted-{stack.project[-8:]}.test"
    response = stack.api(
        "POST", "/mailboxes", json={"address": f"a@{unhosted}", "password": PASSWORD}
    )
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail.endswith("create it first: POST /api/v1/domains"), detail
    assert "mailyard" not in detail


# --- 4. bodies that are not JSON -----------------------------------------------------------
@pytest.mark.parametrize(
    ("content", "content_type", "said"),
    [
        (b"{not json", "application/json", "the request body is not valid JSON: "),
        (b'{"name": "caf\xe9.test"}', "application/json", "is not UTF-8 text"),
        (b'{"name": "plain.test"}', "text/plain", "Content-Type 'text/plain'"),
        (b'{"name": "form.test"}', "application/x-www-form-urlencoded", "Content-Type"),
    ],
)
def test_a_body_that_is_not_json_is_a_422_saying_to_send_json(
    stack: Stack, content: bytes, content_type: str, said: str
) -> None:
    response = httpx.post(
        f"{stack.api_url}/domains",
        content=content,
        headers={"Authorization": f"Bearer {stack.admin_token}", "Content-Type": content_type},
        timeout=30,
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    detail = response.json()["detail"]
    assert said in detail, detail
    assert detail.endswith(SEND_JSON), detail
    assert "JSON decode error" not in detail
