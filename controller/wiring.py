"""Builds the pieces the API and the `mailyard` command share, so both behave the same."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from controller.engine.apply import ConfigEngine
from controller.engine.mail_status import MailStatus, check_mail_status
from controller.runtime import Runtime
from controller.runtime.docker_engine import connect
from controller.services import postfix
from controller.services.dovecot import AuthCache, doveadm_api_key
from controller.services.mailman import MailmanClientBackend
from controller.settings import Settings

log = logging.getLogger(__name__)


def credentials_changed_hook(settings: Settings) -> Callable[[Sequence[str]], None]:
    """After a mailbox change: flush Dovecot's auth cache for those users on every replica."""
    cache = AuthCache(settings.doveadm_host, settings.doveadm_port, doveadm_api_key(settings))

    def flush(addresses: Sequence[str]) -> None:
        cache.flush(addresses)

    return flush


def domains_changed_hook(runtime: Runtime | None) -> Callable[[], None]:
    """After a hosted, alias or relay domain changed: make every Postfix replica forget
    how it classified recipient domains (controller.services.postfix)."""

    def forget() -> None:
        if runtime is None:
            log.warning("no Docker engine: Postfix may refuse the changed domain for a few minutes")
            return
        postfix.forget_domain_classes(runtime)

    return forget


def mail_status_check(
    settings: Settings, sessions: sessionmaker[Session], runtime: Runtime | None
) -> Callable[[], MailStatus]:
    """Whether mail flows, read now (controller.engine.mail_status)."""

    def database_error() -> str | None:
        try:
            with sessions() as session:
                session.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            # The driver's first line only: no host names or SQL beyond it.
            cause = getattr(exc, "orig", None) or exc
            return (str(cause).splitlines() or ["no answer"])[0][:200]
        return None

    return lambda: check_mail_status(settings, runtime, database_error)


def flush_queue_hook(runtime: Runtime | None) -> Callable[[], None] | None:
    """Deliver held mail at once when it can flow again (controller.services.postfix)."""
    if runtime is None:
        return None
    return lambda: postfix.flush_queue(runtime)


def configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def stack_runtime(settings: Settings) -> Runtime | None:
    """This stack's Docker engine (through the filter), None without one."""
    return connect(settings.compose_project)


def config_engine(settings: Settings, sessions: sessionmaker[Session]) -> ConfigEngine:
    """The apply pipeline, with the Docker engine when the socket is mounted."""
    return ConfigEngine(settings, sessions, connect(settings.compose_project))


MAILMAN_REST_PASSWORD_FILE = "mailman-rest-password"  # noqa: S105 - a file name


def lists_backend(settings: Settings) -> MailmanClientBackend | None:
    """The mailing list service (Mailman's REST API), or None when MAILYARD_MAILMAN_URL is
    empty (lists disabled). Nothing is contacted or read here: the REST password is read
    from Mailman's secrets volume at the first call."""
    if not settings.mailman_url:
        return None
    return MailmanClientBackend(
        settings.mailman_url,
        settings.mailman_rest_user,
        settings.mailman_secrets_dir / MAILMAN_REST_PASSWORD_FILE,
        timeout=settings.mailman_timeout,
    )
