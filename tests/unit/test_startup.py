"""controller/engine/startup.py: what `mailyard serve` does before it answers requests."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cryptography import x509
from pydantic import ValidationError
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from controller.db.models import ApiToken
from controller.domain.errors import Unauthenticated
from controller.domain.tokens import authenticate
from controller.engine.startup import ADMIN_TOKEN_FILE, prepare
from controller.services import dovecot, postfix
from controller.settings import Settings


@pytest.fixture
def settings(tmp_path: Path, database_file: Path) -> Settings:
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    (secrets_dir / "db-postfix-password").write_text("pf-secret\n")
    (secrets_dir / "db-dovecot-password").write_text("dc-secret\n")
    return Settings(
        hostname="mail.example.com",
        relayhost="",
        database_url=f"sqlite:///{database_file}",
        secrets_dir=secrets_dir,
        state_dir=tmp_path / "state",
        config_dir=tmp_path / "config",
        certs_dir=tmp_path / "certs",
        db_wait_seconds=5,
    )


def _token_count(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(ApiToken)) or 0)


def _san(certs_dir: Path) -> list[str]:
    certificate = x509.load_pem_x509_certificate((certs_dir / "fullchain.pem").read_bytes())
    extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return list(extension.value.get_values_for_type(x509.DNSName))


def test_first_start_prepares_everything(
    settings: Settings, engine: Engine, sessions: sessionmaker[Session]
) -> None:
    prepare(settings, engine, sessions)
    token_file = settings.state_dir / ADMIN_TOKEN_FILE
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    with sessions() as session:
        principal = authenticate(session, token_file.read_text().strip())
    assert principal.is_admin
    assert not principal.read_only
    assert _san(settings.certs_dir) == ["mail.example.com"]
    for service in (postfix.SERVICE, dovecot.SERVICE):
        current = settings.config_dir / service / "current"
        assert current.is_symlink()
        assert os.readlink(current).startswith("releases/")
    assert (settings.config_dir / "postfix" / "current" / "main.cf").is_file()
    assert (settings.config_dir / "dovecot" / "current" / "dovecot.conf").is_file()


def test_second_start_issues_no_new_token(
    settings: Settings, engine: Engine, sessions: sessionmaker[Session]
) -> None:
    prepare(settings, engine, sessions)
    token_file = settings.state_dir / ADMIN_TOKEN_FILE
    first_secret = token_file.read_text()
    current = os.readlink(settings.config_dir / "postfix" / "current")
    prepare(settings, engine, sessions)
    assert token_file.read_text() == first_secret
    assert _token_count(sessions) == 1
    assert os.readlink(settings.config_dir / "postfix" / "current") == current


def test_revoked_first_token_does_not_come_back(
    settings: Settings, engine: Engine, sessions: sessionmaker[Session]
) -> None:
    prepare(settings, engine, sessions)
    secret = (settings.state_dir / ADMIN_TOKEN_FILE).read_text().strip()
    with sessions() as session:
        for token in session.scalars(select(ApiToken)):
            session.delete(token)
        session.commit()
    prepare(settings, engine, sessions)
    assert _token_count(sessions) == 0
    with sessions() as session, pytest.raises(Unauthenticated):
        authenticate(session, secret)


def test_idna_hostname_starts_and_gets_a_matching_certificate(
    settings: Settings, engine: Engine, sessions: sessionmaker[Session]
) -> None:
    # Rendering accepts an internationalised MAILYARD_HOSTNAME (as A-labels); the
    # certificate must name the same host, or the controller cannot start at all.
    settings.hostname = "mail.münchen.de"
    prepare(settings, engine, sessions)
    assert _san(settings.certs_dir) == ["mail.xn--mnchen-3ya.de"]


def test_invalid_hostname_leaves_no_certificate_behind(
    settings: Settings, engine: Engine, sessions: sessionmaker[Session]
) -> None:
    # The settings refuse the name before start-up can write anything with it.
    with pytest.raises(ValidationError):
        settings.hostname = "mail_server.example.com"
    assert not settings.certs_dir.exists()
    prepare(settings, engine, sessions)
    assert _san(settings.certs_dir) == ["mail.example.com"]


def test_changed_hostname_replaces_our_self_signed_certificate(
    settings: Settings, engine: Engine, sessions: sessionmaker[Session]
) -> None:
    prepare(settings, engine, sessions)
    assert _san(settings.certs_dir) == ["mail.example.com"]
    settings.hostname = "mx.example.net"
    prepare(settings, engine, sessions)
    assert _san(settings.certs_dir) == ["mx.example.net"]
