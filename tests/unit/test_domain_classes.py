"""Changing the set of domains makes Postfix forget how it classified recipient domains.

Postfix's smtpd processes cache each recipient address's class (virtual, relay, foreign)
for their lifetime; without this, an address refused as foreign before its domain was
created stays refused for minutes (tests/stack/test_mail_flow.py proves it on Postfix).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fake_runtime import FakeRuntime
from sqlalchemy.orm import Session, sessionmaker

from controller.domain import alias_domains, domains, relay_domains
from controller.domain.access import SYSTEM, Context
from controller.domain.domains import DomainChanges
from controller.services import postfix


@pytest.fixture
def calls() -> list[str]:
    return []


@pytest.fixture
def context(sessions: sessionmaker[Session], calls: list[str]) -> Callable[[], Context]:
    def make() -> Context:
        return Context(sessions(), SYSTEM, domains_changed=lambda: calls.append("forget"))

    return make


def test_every_change_to_the_domain_set_calls_the_hook(
    context: Callable[[], Context], calls: list[str]
) -> None:
    steps: list[tuple[str, Callable[[Context], object]]] = [
        ("create domain", lambda ctx: domains.create_domain(ctx, "example.org")),
        (
            "deactivate",
            lambda ctx: domains.update_domain(ctx, "example.org", DomainChanges(active=False)),
        ),
        (
            "activate",
            lambda ctx: domains.update_domain(ctx, "example.org", DomainChanges(active=True)),
        ),
        (
            "alias domain",
            lambda ctx: alias_domains.create_alias_domain(ctx, "example.net", "example.org"),
        ),
        ("alias off", lambda ctx: alias_domains.update_alias_domain(ctx, "example.net", False)),
        ("alias gone", lambda ctx: alias_domains.delete_alias_domain(ctx, "example.net")),
        ("relay domain", lambda ctx: relay_domains.create_relay_domain(ctx, "relay.example")),
        (
            "relay off",
            lambda ctx: relay_domains.update_relay_domain(ctx, "relay.example", active=False),
        ),
        ("relay gone", lambda ctx: relay_domains.delete_relay_domain(ctx, "relay.example")),
        ("delete domain", lambda ctx: domains.delete_domain(ctx, "example.org")),
    ]
    for name, step in steps:
        before = len(calls)
        step(context())
        assert len(calls) == before + 1, name


def test_changes_that_keep_the_domain_set_do_not_reload_postfix(
    context: Callable[[], Context], calls: list[str]
) -> None:
    domains.create_domain(context(), "example.org")
    calls.clear()
    domains.update_domain(context(), "example.org", DomainChanges(description="ours"))
    domains.update_domain(context(), "example.org", DomainChanges(active=True))  # already
    relay_domains.create_relay_domain(context(), "relay.example")
    calls.clear()
    relay_domains.update_relay_domain(context(), "relay.example", nexthop="[mx.example.net]")
    assert calls == []


def test_a_refused_creation_does_not_call_the_hook(
    context: Callable[[], Context], calls: list[str]
) -> None:
    domains.create_domain(context(), "example.org")
    calls.clear()
    with pytest.raises(Exception, match="already"):
        domains.create_domain(context(), "example.org")
    assert calls == []


def test_postfix_reloads_every_running_replica(tmp_path: Path) -> None:
    runtime = FakeRuntime(tmp_path, {"postfix": 3, "dovecot": 1})
    runtime.container("postfix", 2).running = False
    postfix.forget_domain_classes(runtime)
    assert runtime.calls == [
        ("mailyard-postfix-1", ("postfix", "reload")),
        ("mailyard-postfix-3", ("postfix", "reload")),
    ]
