"""images/postfix/sender_binding.py: which header From/Sender addresses a login may use.

The milter around it (sender_milter.py) needs libmilter and Postfix, so it is tested on
the stack (tests/stack/test_sender_binding.py); the decision is tested here.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

MODULE = Path(__file__).resolve().parents[2] / "images" / "postfix" / "sender_binding.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sender_binding", MODULE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["sender_binding"] = module
    spec.loader.exec_module(module)
    return module


binding = _load()

ALICE = "alice@example.test"
# smtpd_sender_login_maps as the SQL query answers it: the mailbox, an alias that
# forwards to it, an alias-domain address; every other key has no owner.
OWNERS = {
    "alice@example.test": {"alice@example.test"},
    "bob@example.test": {"bob@example.test"},
    "sales@example.test": {"alice@example.test", "bob@example.test"},
    "alice@alias.test": {"alice@example.test"},
    "ceo@victim.test": {"ceo@victim.test"},
}


class Lookups:
    """A fake owner map that records the keys asked, like `postmap -q KEY MAP`."""

    def __init__(self, fail: bool = False) -> None:
        self.keys: list[str] = []
        self.fail = fail

    def __call__(self, key: str) -> set[str]:
        self.keys.append(key)
        if self.fail:
            raise binding.LookupFailed("database down")
        return set(OWNERS.get(key, set()))


def _check(headers: list[tuple[str, str]], login: str | None = ALICE) -> object:
    return binding.check(login, headers, Lookups())


@pytest.mark.parametrize(
    "value",
    [
        ALICE,
        f"Alice <{ALICE}>",
        "Alice Example <ALICE@Example.TEST>",
        "alice+news@example.test",
        "Sales <sales@example.test>",
        "alice@alias.test",
        f'"ceo@victim.test" <{ALICE}>',  # the display name is not the address
        f"{ALICE} (ceo@victim.test)",  # nor is a comment
        f"Alice <{ALICE}>, Sales <sales@example.test>",
        f"Team: {ALICE}, sales@example.test;",
        f"Alice\r\n <{ALICE}>",  # folded
    ],
)
def test_addresses_the_login_owns_are_allowed(value: str) -> None:
    assert _check([("From", value), ("Subject", "x")]) is None


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ("ceo@victim.test", "ceo@victim.test"),
        ("Bob <bob@example.test>", "bob@example.test"),
        (f"{ALICE}, ceo@victim.test", "ceo@victim.test"),
        ("nobody@example.test", "nobody@example.test"),  # no owner at all
        ("alice@elsewhere.test", "alice@elsewhere.test"),
    ],
)
def test_an_address_of_someone_else_is_refused_by_name(value: str, named: str) -> None:
    refusal = _check([("From", value)])
    assert refusal == binding.Refusal(
        "550",
        "5.7.1",
        f"From: address <{named}> is not yours: {ALICE} may not send as it "
        "(use your own address or one of your aliases)",
    )


def test_every_from_header_and_the_sender_header_are_checked() -> None:
    assert _check([("From", ALICE), ("from", "ceo@victim.test")]) is not None
    refusal = _check([("From", ALICE), ("Sender", "bob@example.test")])
    assert refusal is not None
    assert "Sender: address <bob@example.test> is not yours" in refusal.text
    assert _check([("From", "sales@example.test"), ("Sender", ALICE)]) is None


@pytest.mark.parametrize(
    "value",
    [
        "ceo@victim.test <alice@example.test>",  # parsers disagree: refused, not guessed
        "a@b.test <c@d.test> <e@f.test>",
        "undisclosed",
        "group:;",
        "",
        "alice@example.test@victim.test",
        "alice@example.test\x00ceo@victim.test",
    ],
)
def test_a_from_that_cannot_be_read_unambiguously_is_refused(value: str) -> None:
    refusal = _check([("From", value)])
    assert refusal is not None
    assert refusal.code == "550"
    assert refusal.xcode == "5.7.1"
    assert "Cannot tell which address the From: header names" in refusal.text


def test_a_message_without_from_is_refused() -> None:
    refusal = _check([("Subject", "hello"), ("Sender", ALICE)])
    assert refusal == binding.Refusal(
        "550",
        "5.6.0",
        "The message has no From: header. Your mail program must add one with your own address",
    )


def test_without_a_login_nothing_passes() -> None:
    refusal = _check([("From", ALICE)], login=None)
    assert refusal is not None
    assert refusal.xcode == "5.7.0"


def test_keys_are_asked_in_postfix_order_and_stop_at_the_first_answer() -> None:
    lookups = Lookups()
    assert binding.check(ALICE, [("From", "alice+news@example.test")], lookups) is None
    assert lookups.keys == ["alice+news@example.test", "alice@example.test"]
    lookups = Lookups()
    binding.check(ALICE, [("From", "Nobody+x@Example.test")], lookups)
    assert lookups.keys == ["nobody+x@example.test", "nobody@example.test", "@example.test"]


def test_a_failed_lookup_is_not_a_refusal() -> None:
    # The milter turns it into 451 (try again later), never into 5xx or a pass.
    with pytest.raises(binding.LookupFailed):
        binding.check(ALICE, [("From", ALICE)], Lookups(fail=True))


def test_percent_signs_and_long_headers_stay_in_one_line_of_reply() -> None:
    refusal = _check([("From", "x" * 500 + " <ceo@victim.test> <a@b>")])
    assert refusal is not None
    assert len(refusal.text) < 400
    assert "\n" not in refusal.text
