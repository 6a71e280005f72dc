"""controller/engine/startup.py: what `mailyard serve` does before it answers requests."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cryptography import x509
from process_settings import changed
from pydantic import ValidationError
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from controller.db.models import ApiToken, ConfigApply, DkimKey, Domain
from controller.domain.mail_settings import MIB
from controller.domain.setting_rows import save_stored
from controller.domain.tokens import authenticate
from controller.engine.apply import ConfigEngine
from controller.engine.startup import ADMIN_TOKEN_FILE, prepare
from controller.errors import Unauthenticated
from controller.services import dovecot, postfix
from controller.settings import Settings


@pytest.fixture
def settings(tmp_path: Path, database_file: Path) -> Settings:
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    (secrets_dir / "db-postfix-password").write_text("pf-secret\n")
    (secrets_dir / "db-dovecot-password").write_text("dc-secret\n")
    (secrets_dir / "db-amavis-password").write_text("am-secret\n")
    (secrets_dir / "db-opendkim-password").write_text("od-secret\n")
    return Settings(
        hostname="mail.example.com",
        relayhost="",
        database_url=f"sqlite:///{database_file}",
        secrets_dir=secrets_dir,
        state_dir=tmp_path / "state",
        config_dir=tmp_path / "config",
        certs_dir=tmp_path / "certs",
        db_wait_seconds=5,
        dkim_dir=tmp_path / "dkim",
    )


def _start(settings: Settings, engine: Engine, sessions: sessionmaker[Session]) -> None:
    """A start of `mailyard serve` without the Docker socket (no container to reload)."""
    prepare(settings, engine, sessions, ConfigEngine(settings, sessions, runtime=None))


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
    _start(settings, engine, sessions)
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
    _start(settings, engine, sessions)
    token_file = settings.state_dir / ADMIN_TOKEN_FILE
    first_secret = token_file.read_text()
    current = os.readlink(settings.config_dir / "postfix" / "current")
    _start(settings, engine, sessions)
    assert token_file.read_text() == first_secret
    assert _token_count(sessions) == 1
    assert os.readlink(settings.config_dir / "postfix" / "current") == current


def test_revoked_first_token_does_not_come_back(
    settings: Settings, engine: Engine, sessions: sessionmaker[Session]
) -> None:
    _start(settings, engine, sessions)
    secret = (settings.state_dir / ADMIN_TOKEN_FILE).read_text().strip()
    with sessions() as session:
        for token in session.scalars(select(ApiToken)):
            session.delete(token)
        session.commit()
    _start(settings, engine, sessions)
    assert _token_count(sessions) == 0
    with sessions() as session, pytest.raises(Unauthenticated):
        authenticate(session, secret)


def test_idna_hostname_starts_and_gets_a_matching_certificate(
    settings: Settings, engine: Engine, sessions: sessionmaker[Session]
) -> None:
    # Rendering accepts an internationalised MAILYARD_HOSTNAME (as A-labels); the
    # certificate must name the same host, or the controller cannot start at all.
    settings = changed(settings, hostname="mail.münchen.de")
    _start(settings, engine, sessions)
    assert _san(settings.certs_dir) == ["mail.xn--mnchen-3ya.de"]


def test_invalid_hostname_leaves_no_certificate_behind(
    settings: Settings, engine: Engine, sessions: sessionmaker[Session]
) -> None:
    # The settings refuse the name before start-up can write anything with it.
    with pytest.raises(ValidationError):
        changed(settings, hostname="mail_server.example.com")
    assert not settings.certs_dir.exists()
    _start(settings, engine, sessions)
    assert _san(settings.certs_dir) == ["mail.example.com"]


def test_changed_hostname_replaces_our_self_signed_certificate(
    settings: Settings, engine: Engine, sessions: sessionmaker[Session]
) -> None:
    _start(settings, engine, sessions)
    assert _san(settings.certs_dir) == ["mail.example.com"]
    settings = changed(settings, hostname="mx.example.net")
    _start(settings, engine, sessions)
    assert _san(settings.certs_dir) == ["mx.example.net"]


def _applies(sessions: sessionmaker[Session]) -> list[tuple[str, str]]:
    with sessions() as session:
        return [
            (record.trigger, record.status)
            for record in session.scalars(select(ConfigApply).order_by(ConfigApply.id))
        ]


def test_first_start_records_one_apply_and_a_restart_none(
    settings: Settings, engine: Engine, sessions: sessionmaker[Session]
) -> None:
    _start(settings, engine, sessions)
    assert _applies(sessions) == [("startup", "succeeded")]
    _start(settings, engine, sessions)
    assert _applies(sessions) == [("startup", "succeeded")]


def test_stored_settings_win_over_the_environment_at_start(
    settings: Settings, engine: Engine, sessions: sessionmaker[Session]
) -> None:
    # MAILYARD_HOSTNAME is only the default: a hostname set through the API stays.
    with sessions.begin() as session:
        save_stored(session, {"hostname": "mx.example.net", "message_size_limit": 10 * MIB})
    _start(settings, engine, sessions)
    main_cf = (settings.config_dir / "postfix" / "current" / "main.cf").read_text()
    assert "\nmyhostname = mx.example.net\n" in main_cf
    assert f"\nmessage_size_limit = {10 * MIB}\n" in main_cf
    assert _san(settings.certs_dir) == ["mx.example.net"]


def test_start_replaces_a_hand_edited_release_with_a_fresh_copy(
    settings: Settings, engine: Engine, sessions: sessionmaker[Session]
) -> None:
    _start(settings, engine, sessions)
    current = settings.config_dir / "postfix" / "current"
    committed = os.readlink(current).rsplit("/", 1)[-1]
    edited = current / "main.cf"
    original = edited.read_text()
    edited.write_text(original + "mynetworks = 0.0.0.0/0\n")
    _start(settings, engine, sessions)
    repaired = os.readlink(current).rsplit("/", 1)[-1]
    assert repaired.startswith(committed + ".")
    assert (current / "main.cf").read_text() == original
    # The edited copy is left alone (a daemon may still read it), not repaired in place.
    release_dir = settings.config_dir / "postfix" / "releases" / committed
    assert "0.0.0.0/0" in (release_dir / "main.cf").read_text()
    assert _applies(sessions)[-1] == ("startup", "succeeded")


def test_domains_from_before_dkim_get_a_key_at_start(
    settings: Settings, engine: Engine, sessions: sessionmaker[Session]
) -> None:
    _start(settings, engine, sessions)
    with sessions() as session:
        session.add_all([Domain(name="old.example"), Domain(name="older.example")])
        session.commit()
    _start(settings, engine, sessions)
    with sessions() as session:
        keys = {key.domain.name: key for key in session.scalars(select(DkimKey))}
    assert sorted(keys) == ["old.example", "older.example"]
    for name, key in keys.items():
        assert (key.state, key.algorithm) == ("active", "rsa-2048")
        assert (settings.resolved_dkim_dir() / name / f"{key.selector}.key").is_file()
