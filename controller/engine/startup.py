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
from controller.domain import dkim
from controller.domain.tokens import bootstrap_admin_token
from controller.engine.apply import ConfigEngine
from controller.errors import MailyardError
from controller.services.dkim_keys import KeyStore
from controller.services.mailman_routing import MAILMAN_CORE_SERVICE, wait_for_list_table
from controller.services.registry import database_accounts
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


def prepare(
    settings: Settings,
    engine: Engine,
    sessions: sessionmaker[Session],
    config: ConfigEngine,
) -> None:
    wait_for_database(engine, settings.db_wait_seconds)
    upgrade_to_head(engine)
    apply_service_grants(engine, settings.db_name, database_accounts())
    token_file = settings.state_dir / ADMIN_TOKEN_FILE
    # Domains created before DKIM existed get a key.
    with sessions() as session:
        signed = dkim.ensure_all_domains(session, KeyStore(settings.resolved_dkim_dir()))
        session.commit()
    if signed:
        log.info("created DKIM keys for %d domain(s) that had none", len(signed))
    with sessions() as session:
        if bootstrap_admin_token(session, keep=lambda secret: write_secret(token_file, secret)):
            log.info(
                "first start: created the first admin token; read it with "
                "`docker compose exec controller mailyard admin-token`"
            )
    # Only when Mailman runs in this deployment (`--scale mailman-core=0` runs without
    # lists; then nothing is worth waiting for).
    if config.runtime is not None and config.runtime.replicas(MAILMAN_CORE_SERVICE):
        wait_for_list_table(engine, settings.mailman_wait_seconds)
    # Renders every service; on a first start just commits the releases (no container
    # runs yet), otherwise rolls out whatever differs (new image, edited files) and
    # finishes or undoes an apply that a killed controller left in progress.
    # A failure here must not keep the API down (it is how settings get fixed): the
    # services keep their committed releases, and the periodic reconcile retries.
    try:
        outcome = config.reconcile(trigger="startup")
    except MailyardError as exc:
        log.warning("start-up reconcile failed, services stay on their releases: %s", exc)
        return
    if outcome is not None:
        log.info("start-up apply %s: %s", outcome["id"], outcome["status"])
