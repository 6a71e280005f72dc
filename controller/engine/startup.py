"""What the controller does before it serves: bring the database and files up to date.

Every step is idempotent, so a controller killed half-way simply repeats it.
"""

from __future__ import annotations

import logging
import time

from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from controller.db.grants import apply_service_grants
from controller.db.migrate import upgrade_to_head
from controller.domain.tokens import bootstrap_admin_token
from controller.engine.desired import desired_releases
from controller.services.certificates import ensure_certificate
from controller.services.rendering import ReleaseStore
from controller.services.secret_files import write_secret
from controller.settings import Settings

log = logging.getLogger(__name__)

ADMIN_TOKEN_FILE = "admin-token"  # noqa: S105 - a file name


def wait_for_database(engine: Engine, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except OperationalError as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the database did not answer within {timeout:.0f}s: {exc.orig}"
                ) from exc
            log.info("waiting for the database")
            time.sleep(2)
        else:
            return


def render_and_activate(settings: Settings) -> dict[str, str]:
    """Render every service's desired release and make it current. Returns the digests."""
    activated: dict[str, str] = {}
    for service, release in desired_releases(settings).items():
        store = ReleaseStore(settings.config_dir / service)
        store.write(release)
        if store.current_digest() != release.digest:
            store.activate(release.digest)
            log.info("%s: release %s is now current", service, release.digest)
        store.prune()
        activated[service] = release.digest
    return activated


def prepare(settings: Settings, engine: Engine, sessions: sessionmaker[Session]) -> None:
    wait_for_database(engine, settings.db_wait_seconds)
    upgrade_to_head(engine)
    apply_service_grants(engine, settings.db_name)
    token_file = settings.state_dir / ADMIN_TOKEN_FILE
    with sessions() as session:
        if bootstrap_admin_token(session, keep=lambda secret: write_secret(token_file, secret)):
            log.info(
                "first start: created the first admin token; read it with "
                "`docker compose exec controller mailyard admin-token`"
            )
    if ensure_certificate(settings.certs_dir, settings.hostname):
        log.info("created a self-signed certificate for %s", settings.hostname)
    render_and_activate(settings)
