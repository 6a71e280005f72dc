"""Issue 14, item 5: the `mailyard` command and the API speak to the user in its own terms.

- a single value is a list of one where a list is expected (API and command alike);
- the command never shows a traceback: each failure is one line saying what to do;
- the command names commands, the API names requests (MailyardError.action);
- a body that is not JSON, not UTF-8 or not sent as JSON is a 422 that says so.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from controller import cli
from controller.domain.mail_settings import MailSettings, build
from controller.domain.setting_rows import load_stored
from controller.errors import Action, InvalidInput, NotFound
from controller.settings import get_settings

API = "/api/v1"
SETTINGS = f"{API}/settings"
Run = Callable[..., tuple[int, str, str]]
Problem = Callable[..., dict[str, Any]]


def _one_sentence(err: str) -> str:
    """stderr of a failed command: one line, `mailyard: ...`, no traceback."""
    assert "Traceback" not in err
    assert err.startswith("mailyard: ")
    assert err.count("\n") == 1, err
    return err.strip()


# --- errors carry an action for each way in -------------------------------------------------
def test_an_error_names_the_action_in_the_readers_terms() -> None:
    error = NotFound(
        "192.0.2.7 is not blocked; see which addresses are",
        action=Action(api="GET /api/v1/blocks", cli="mailyard blocks list"),
    )
    assert (
        error.text("api") == "192.0.2.7 is not blocked; see which addresses are: GET /api/v1/blocks"
    )
    assert error.text("cli").endswith("see which addresses are: mailyard blocks list")
    assert str(error) == error.text("api")  # server logs speak the API's words
    plain = InvalidInput("no action here")
    assert plain.text("cli") == plain.text("api") == str(plain) == "no action here"


# --- 1. a single value for a list setting ------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "single", "listed"),
    [
        ("mynetworks", "127.0.0.0/8", ["127.0.0.0/8"]),
        ("helo_restrictions", "permit_mynetworks", ["permit_mynetworks"]),
        ("dovecot_protocols", "lmtp", ["lmtp"]),
        ("certificate_extra_names", "imap.example.org", ["imap.example.org"]),
        (
            "postscreen_access_list",
            {"network": "192.0.2.0/24", "action": "permit"},
            [{"network": "192.0.2.0/24", "action": "permit"}],
        ),
    ],
)
def test_a_single_value_is_a_list_of_one(name: str, single: Any, listed: Any) -> None:
    settings = MailSettings.model_validate({name: single})
    assert settings.model_dump(mode="json")[name] == listed


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("mynetworks", "127.0.0.0/8,10.0.0.0/8"),  # one element, not split
        ("mynetworks", "10.0.0.0/8\n0.0.0.0/0"),
        ("mynetworks", '127.0.0.0/8"'),
        ("helo_restrictions", "permit_mynetworks, reject"),
        ("recipient_restrictions", "reject\nmynetworks = 0.0.0.0/0"),
        ("certificate_extra_names", 'a.example.org"'),
        ("dovecot_protocols", "imap"),  # lmtp must stay
        ("mynetworks", 127),  # only strings (and objects) are wrapped
    ],
)
def test_a_single_value_is_validated_like_a_list_element(name: str, value: Any) -> None:
    with pytest.raises(InvalidInput) as info:
        build({name: value}, {})
    assert info.value.message.startswith(f"{name}: ")
    assert "\n" not in info.value.message


def test_api_patch_takes_a_single_value_for_a_list(
    admin: TestClient, problem: Problem, sessions: sessionmaker[Session]
) -> None:
    # The default, given as one value: valid, and nothing changes (no Docker needed).
    response = admin.patch(SETTINGS, json={"mynetworks": "127.0.0.0/8"})
    assert response.status_code == 200, response.text
    assert response.json()["apply"] is None
    assert response.json()["settings"]["mynetworks"] == ["127.0.0.0/8"]
    detail = problem(admin.patch(SETTINGS, json={"mynetworks": "127.0.0.0/8\n0/0"}), 422)["detail"]
    assert "valid list" not in detail
    with sessions() as session:
        assert load_stored(session) == {}


def test_command_takes_a_single_value_for_a_list(run: Run) -> None:
    code, out, err = run("settings", "set", "mynetworks=127.0.0.0/8")
    assert (code, out.strip(), err) == (0, "nothing changed", "")


# --- 2. no traceback from the command ---------------------------------------------------------
def test_mailbox_add_without_a_terminal_says_to_use_password_stdin(run: Run) -> None:
    assert run("domain", "add", "example.org")[0] == 0
    code, out, err = run("mailbox", "add", "alice@example.org")
    assert (code, out) == (2, "")
    line = _one_sentence(err)
    assert line.startswith("mailyard: no terminal to ask for the password")
    assert "mailyard mailbox add alice@example.org --password-stdin" in line
    code, _, err = run("mailbox", "passwd", "alice@example.org")
    assert code == 2
    assert "--password-stdin" in _one_sentence(err)


def test_end_of_input_at_the_password_prompt_is_no_traceback(
    run: Run, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    def no_input(_prompt: str = "") -> str:
        raise EOFError

    monkeypatch.setattr("getpass.getpass", no_input)
    monkeypatch.setattr("sys.stdin", Terminal(""))
    capsys.readouterr()
    assert cli.main(["mailbox", "add", "alice@example.org"]) == 2
    assert "--password-stdin" in _one_sentence(capsys.readouterr().err)


def test_empty_standard_input_is_named(run: Run) -> None:
    code, _, err = run("mailbox", "add", "alice@example.org", "--password-stdin", stdin="")
    assert code == 2
    assert "standard input is empty" in _one_sentence(err)


def test_unexpected_errors_are_one_line(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args: object) -> None:
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr("controller.domain.domains.list_domains", broken)
    code, out, err = run("domain", "list")
    assert (code, out) == (1, "")
    line = _one_sentence(err)
    assert "unexpected error (RuntimeError: boom second line)" in line
    assert "MAILYARD_DEBUG=1" in line
    monkeypatch.setenv("MAILYARD_DEBUG", "1")
    with pytest.raises(RuntimeError):
        run("domain", "list")


def test_an_unreachable_database_is_one_line(
    run: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MAILYARD_DATABASE_URL", f"sqlite:///{tmp_path}/missing/dir/db.sqlite")
    get_settings.cache_clear()
    code, _, err = run("domain", "list")
    assert code == 1
    line = _one_sentence(err)
    assert line.startswith("mailyard: cannot use the database (")
    assert "docker compose ps db" in line


def test_ctrl_c_is_one_line(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*_args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("controller.domain.domains.list_domains", interrupted)
    code, _, err = run("domain", "list")
    assert code == 130
    assert _one_sentence(err) == "mailyard: interrupted"


# --- 3. the command names commands, the API names requests -------------------------------------
@pytest.mark.parametrize(
    ("args", "action"),
    [
        (
            ("mailbox", "add", "a@nowhere.example", "--password-stdin"),
            "mailyard domain add nowhere.example",
        ),
        (
            ("token", "create", "panel", "--domain", "nowhere.example"),
            "mailyard domain add nowhere.example",
        ),
        (("blocks", "lift", "192.0.2.7"), "mailyard blocks list"),
        (("settings", "set", "smtpd_banner=hello"), "mailyard settings show"),
    ],
)
def test_command_errors_name_commands(run: Run, args: tuple[str, ...], action: str) -> None:
    code, _, err = run(*args, stdin="correct horse battery\n")
    assert code == 2
    line = _one_sentence(err)
    assert line.endswith(f": {action}")
    assert "/api/v1" not in line


def test_api_errors_name_requests(admin: TestClient, problem: Problem) -> None:
    cases = [
        (
            admin.post(
                f"{API}/mailboxes",
                json={"address": "a@nowhere.example", "password": "correct horse battery"},
            ),
            422,
            ": POST /api/v1/domains",
        ),
        (admin.delete(f"{API}/blocks/192.0.2.7"), 404, ": GET /api/v1/blocks"),
        (admin.patch(SETTINGS, json={"smtpd_banner": "x"}), 422, ": GET /api/v1/settings/schema"),
    ]
    for response, status, action in cases:
        detail = problem(response, status)["detail"]
        assert detail.endswith(action), detail
        assert "mailyard" not in detail


def test_no_domain_or_engine_message_names_an_api_path_outside_an_action() -> None:
    root = Path(cli.__file__).parent
    for folder in ("domain", "engine"):
        for path in (root / folder).glob("*.py"):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if "/api/v1" not in line or line.lstrip().startswith("#"):
                    continue
                # Allowed: Action(api=...) texts, docstrings, and Field descriptions
                # (the API's own schema documentation).
                allowed = ("api=", "Action(", "delete = f", '"""', "description=")
                context = "\n".join(path.read_text().splitlines()[max(0, number - 8) : number])
                assert any(token in context for token in allowed), f"{path}:{number}: {line}"


# --- 4. bodies that are not JSON ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("content", "headers", "said"),
    [
        (
            b"{not json",
            {"content-type": "application/json"},
            "the request body is not valid JSON: ",
        ),
        (
            b'{"name": "a\xff.org"}',
            {"content-type": "application/json"},
            "not UTF-8 text (byte 0xff",
        ),
        (b'{"name": "a.org"}', {"content-type": "text/plain"}, "Content-Type 'text/plain'"),
        (b'{"name": "a.org"}', {}, "no Content-Type"),
        (b"", {"content-type": "application/json"}, "the request needs a body"),
    ],
)
def test_unreadable_bodies_are_422_saying_to_send_json(
    admin: TestClient, problem: Problem, content: bytes, headers: dict[str, str], said: str
) -> None:
    response = admin.post(f"{API}/domains", content=content, headers=headers)
    body = problem(response, 422)
    assert said in body["detail"]
    assert body["detail"].endswith("send JSON with Content-Type: application/json")
    assert "JSON decode error" not in body["detail"]
    assert admin.get(f"{API}/domains").json()["total"] == 0


def test_a_json_syntax_error_says_where(admin: TestClient, problem: Problem) -> None:
    response = admin.patch(
        SETTINGS,
        content=b'{"mynetworks": 127.0.0.0/8}',
        headers={"content-type": "application/json"},
    )
    detail = problem(response, 422)["detail"]
    assert detail.startswith("the request body is not valid JSON: expecting ")
    assert " at character " in detail


def test_json_with_a_charset_or_a_json_suffix_is_json(admin: TestClient) -> None:
    for content_type in ("application/json; charset=utf-8", "application/merge-patch+json"):
        response = admin.patch(
            SETTINGS,
            content=b'{"mynetworks": ["127.0.0.0/8"]}',
            headers={"content-type": content_type},
        )
        assert response.status_code == 200, response.text
