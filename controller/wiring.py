"""Builds the pieces the API and the `mailyard` command share, so both behave the same."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from controller.engine.desired import doveadm_api_key
from controller.services.dovecot import AuthCache
from controller.settings import Settings

log = logging.getLogger(__name__)


def credentials_changed_hook(settings: Settings) -> Callable[[Sequence[str]], None]:
    """After a mailbox change: flush Dovecot's auth cache for those users on every replica."""
    cache = AuthCache(settings.dovecot_host, settings.doveadm_port, doveadm_api_key(settings))

    def flush(addresses: Sequence[str]) -> None:
        cache.flush(addresses)

    return flush


def configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
