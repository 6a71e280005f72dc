"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from fastapi import APIRouter, FastAPI
from sqlalchemy.orm import Session, sessionmaker

from controller import __doc__ as package_doc
from controller.api import problems
from controller.api.guard import ApiGuard
from controller.api.routes import (
    alias_domains,
    aliases,
    blocks,
    certificates,
    dkim,
    domains,
    filter_policies,
    health,
    lists,
    mailboxes,
    quarantine,
    relay_domains,
    settings,
    status,
    tokens,
)
from controller.api.throttle import AuthFailureLimiter
from controller.domain.access import Effects
from controller.domain.list_service import ListsBackend
from controller.engine.apply import ConfigEngine
from controller.engine.certificates import CertificateManager
from controller.engine.mail_status import MailStatusWatch
from controller.services.dkim_keys import KeyStore
from controller.wiring import domains_changed_hook, mail_status_check

API_PREFIX = "/api/v1"


def create_app(
    sessions: sessionmaker[Session],
    credentials_changed: Callable[[Sequence[str]], None],
    config: ConfigEngine,
    certificate_manager: CertificateManager | None = None,
    lists_backend: ListsBackend | None = None,
    *,
    mail_status: MailStatusWatch | None = None,
) -> FastAPI:
    """Build the app around a session factory and the credentials-changed hook.

    Start-up work (migrations, rendering) happens before this, in `mailyard serve`, so
    the app itself starts instantly and tests can build it on SQLite. `lists_backend`
    is the mailing list service (controller.wiring.lists_backend); without one, the list
    routes answer 503 and deleting a domain does not look for lists.
    """
    app = FastAPI(
        title="Mailyard",
        version="1",
        description=(package_doc or "")
        + "\n\nAuthenticate with `Authorization: Bearer <token>`. Errors are "
        "`application/problem+json`.",
    )
    app.state.sessions = sessions
    app.state.config = config
    app.state.lists = lists_backend
    # What the use cases reach beyond the database; `mailyard` builds the same.
    app.state.effects = Effects(
        credentials_changed=credentials_changed,
        domains_changed=domains_changed_hook(config.runtime),
        list_created=config.ensure_list_routing,
        dkim_keys=KeyStore(config.settings.resolved_dkim_dir()),
        lists=lists_backend,
    )
    # Started by `mailyard serve` (a thread); here it is read on demand.
    app.state.mail_status = mail_status or MailStatusWatch(
        mail_status_check(config.settings, sessions, config.runtime),
        config.settings.status_interval,
    )
    app.state.certificates = certificate_manager or CertificateManager(
        config.settings, config, config.runtime
    )
    problems.install(app)
    process = config.settings
    app.state.auth_failures = AuthFailureLimiter(
        process.api_auth_failure_limit, process.api_auth_failure_window
    )
    # In front of routing: the token is checked and the body size bounded before
    # FastAPI reads a byte of the body (controller/api/guard.py).
    app.add_middleware(
        ApiGuard,
        sessions=sessions,
        max_body_bytes=process.api_max_body_bytes,
        limiter=app.state.auth_failures,
    )
    api = APIRouter(prefix=API_PREFIX, responses=problems.ERROR_RESPONSES)
    for module in (
        domains,
        mailboxes,
        aliases,
        alias_domains,
        relay_domains,
        tokens,
        settings,
        certificates,
        dkim,
        filter_policies,
        quarantine,
        lists,
        blocks,
        status,
    ):
        api.include_router(module.router)
    app.include_router(api)
    app.include_router(health.router)
    return app
