"""Routing list addresses to Mailman core.

Postfix looks list addresses up in Mailman's own table (`mailinglist`, in Mailman's
database) and delivers them to Mailman's LMTP. Mailman makes that table at its first
start, after the controller's; until Postfix's account may read it, a lookup would fail
and defer all mail, so routing is turned on only once the grant succeeded. The
controller then keeps that fact (LearnedState.mailman_routing) and re-renders Postfix.
"""

from __future__ import annotations

import logging
import time

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from controller.db.grants import grant_mailman_routing
from controller.services import postfix
from controller.services.managed import LearnedState

log = logging.getLogger(__name__)

# The compose service that runs Mailman core (`--scale mailman-core=0` runs without lists).
MAILMAN_CORE_SERVICE = "mailman-core"


def wait_for_list_table(engine: Engine, timeout: float) -> None:
    """Give Mailman (started with the database) a moment to create its tables, so that
    Postfix starts with list routing on. Bounded: lists must never hold mail up; if
    Mailman is late, the periodic reconcile turns routing on when it is there."""
    if engine.dialect.name != "mysql":
        return
    deadline = time.monotonic() + timeout
    while True:
        with engine.begin() as connection:
            if grant_mailman_routing(connection, postfix.DATABASE.user):
                return
        if time.monotonic() > deadline:
            log.warning("Mailman has not created its tables yet; list routing follows later")
            return
        time.sleep(2)


def enable_list_routing(sessions: sessionmaker[Session], learned: LearnedState) -> None:
    """Turns `learned.mailman_routing` on once Postfix may read Mailman's list table;
    checked at every reconcile until it is."""
    if learned.mailman_routing:
        return
    try:
        with sessions.begin() as session:
            ready = grant_mailman_routing(session.connection(), postfix.DATABASE.user)
    except SQLAlchemyError as exc:
        log.warning("cannot enable list routing yet: %s", exc)
        return
    if ready:
        log.info("Mailman's list table is there: Postfix routes list addresses to Mailman")
        learned.mailman_routing = True
