"""controller/services/rendering.py and controller/engine/desired.py: config releases."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import jinja2
import pytest
from pydantic import ValidationError

from controller.domain.errors import InvalidInput
from controller.engine.desired import desired_releases
from controller.services import dovecot, postfix
from controller.services.rendering import (
    Release,
    ReleaseStore,
    RenderedFile,
    TemplateFile,
    render_release,
)
from controller.settings import Settings

POSTFIX_DB_PASSWORD = "pf-secret-0123456789"
DOVECOT_DB_PASSWORD = "dc-secret-9876543210"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    (secrets_dir / "db-postfix-password").write_text(POSTFIX_DB_PASSWORD + "\n")
    (secrets_dir / "db-dovecot-password").write_text(DOVECOT_DB_PASSWORD + "\n")
    return Settings(
        hostname="mail.example.com",
        relayhost="",
        db_host="db",
        db_name="mailyard",
        dovecot_host="dovecot",
        doveadm_port=8080,
        secrets_dir=secrets_dir,
        state_dir=tmp_path / "state",
        config_dir=tmp_path / "config",
        certs_dir=tmp_path / "certs",
    )


def _files(release: Release) -> dict[str, str]:
    return {item.path: item.content.decode() for item in release.files}


def _postfix_settings(text: str) -> dict[str, str]:
    """Parse main.cf-style `key = value` lines, joining indented continuation lines."""
    result: dict[str, str] = {}
    key = None
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[0].isspace() and key is not None:
            result[key] += " " + line.strip()
            continue
        key, _, value = line.partition("=")
        key = key.strip()
        result[key] = value.strip()
    return result


def _doveadm_key(settings: Settings) -> str:
    return (settings.state_dir / "secrets" / "doveadm-api-key").read_text().strip()


# --- the desired releases ------------------------------------------------------------------
def test_postfix_release_has_main_master_and_every_sql_map(settings: Settings) -> None:
    files = _files(desired_releases(settings)[postfix.SERVICE])
    sql_files = {path for path in files if path.startswith("sql/")}
    assert {"main.cf", "master.cf"} <= set(files)
    assert len(sql_files) >= 9
    assert all(path.endswith(".cf") for path in sql_files)
    # Every map main.cf points at is in the release, and every rendered map is used.
    referenced = set(re.findall(r"proxy:mysql:\S*?/(sql/[a-z_]+\.cf)", files["main.cf"]))
    assert referenced == sql_files


def test_main_cf_trusts_only_the_container_itself(settings: Settings) -> None:
    main = _postfix_settings(_files(desired_releases(settings)[postfix.SERVICE])["main.cf"])
    # Docker gateways (172.16.0.0/12 and friends) must not be trusted to relay.
    assert main["mynetworks"] == "127.0.0.0/8"
    assert main["myhostname"] == "mail.example.com"
    assert main["relayhost"] == ""
    assert "reject_unauth_destination" in main["smtpd_relay_restrictions"]
    assert main["smtpd_tls_chain_files"] == (
        f"{settings.certs_dir / 'privkey.pem'}, {settings.certs_dir / 'fullchain.pem'}"
    )


def test_relayhost_is_normalised_into_main_cf(settings: Settings) -> None:
    settings.relayhost = "[SMTP.Example.net]:587"
    main = _postfix_settings(_files(desired_releases(settings)[postfix.SERVICE])["main.cf"])
    assert main["relayhost"] == "[smtp.example.net]:587"


def test_every_sql_map_is_complete(settings: Settings) -> None:
    release = desired_releases(settings)[postfix.SERVICE]
    maps = [item for item in release.files if item.path.startswith("sql/")]
    assert maps
    for item in maps:
        text = item.content.decode()
        values = _postfix_settings(text)
        assert values["hosts"] == "db", item.path
        assert values["dbname"] == "mailyard", item.path
        assert values["user"] == "mailyard_postfix", item.path
        assert values["password"] == POSTFIX_DB_PASSWORD, item.path
        assert values["query"].startswith("SELECT "), item.path
        for leftover in ("{{", "}}", "{%", "%}", "{#"):
            assert leftover not in text, (item.path, leftover)
        # Files holding the database password are root:postfix 0640.
        assert item.mode == 0o640, item.path
        assert item.gid == postfix.POSTFIX_GID, item.path


def test_no_template_syntax_is_left_anywhere(settings: Settings) -> None:
    for release in desired_releases(settings).values():
        for path, text in _files(release).items():
            assert "{{" not in text, path
            assert "{%" not in text, path


def test_dovecot_release(settings: Settings) -> None:
    files = _files(desired_releases(settings)[dovecot.SERVICE])
    assert set(files) == {"dovecot.conf", "dovecot-sql.conf.ext"}
    conf = files["dovecot.conf"]
    # Reloads must not cut open IMAP/POP3 sessions.
    assert re.search(r"^shutdown_clients = no$", conf, re.MULTILINE)
    key = _doveadm_key(settings)
    assert len(key) >= 32
    assert re.search(rf"^doveadm_api_key = {re.escape(key)}$", conf, re.MULTILINE)
    assert "postmaster_address = postmaster@mail.example.com" in conf
    sql = files["dovecot-sql.conf.ext"]
    assert f"user=mailyard_dovecot password={DOVECOT_DB_PASSWORD}" in sql
    assert "default_pass_scheme = ARGON2ID" in sql


def test_each_service_gets_only_its_own_secrets(settings: Settings) -> None:
    releases = desired_releases(settings)
    postfix_text = "".join(_files(releases[postfix.SERVICE]).values())
    dovecot_text = "".join(_files(releases[dovecot.SERVICE]).values())
    assert DOVECOT_DB_PASSWORD not in postfix_text
    assert _doveadm_key(settings) not in postfix_text
    assert POSTFIX_DB_PASSWORD not in dovecot_text


def test_secret_bearing_files_are_not_world_readable(settings: Settings) -> None:
    for release in desired_releases(settings).values():
        for item in release.files:
            if POSTFIX_DB_PASSWORD.encode() in item.content or (
                DOVECOT_DB_PASSWORD.encode() in item.content
            ):
                assert item.mode == 0o640, item.path
    key_file = settings.state_dir / "secrets" / "doveadm-api-key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_rendering_is_deterministic(settings: Settings) -> None:
    first = desired_releases(settings)
    second = desired_releases(settings)
    for service in (postfix.SERVICE, dovecot.SERVICE):
        assert first[service].digest == second[service].digest
        assert _files(first[service]) == _files(second[service])


def test_a_different_hostname_gives_a_different_digest(settings: Settings) -> None:
    before = desired_releases(settings)
    settings.hostname = "mx.example.com"
    after = desired_releases(settings)
    assert before[postfix.SERVICE].digest != after[postfix.SERVICE].digest
    assert before[dovecot.SERVICE].digest != after[dovecot.SERVICE].digest
    assert "myhostname = mx.example.com" in _files(after[postfix.SERVICE])["main.cf"]


def test_a_new_database_password_gives_a_new_digest(settings: Settings) -> None:
    before = desired_releases(settings)[postfix.SERVICE].digest
    (settings.secrets_dir / "db-postfix-password").write_text("rotated-password\n")
    assert desired_releases(settings)[postfix.SERVICE].digest != before


def test_idna_hostname_is_rendered_as_a_labels(settings: Settings) -> None:
    settings.hostname = "Mail.München.DE"
    main = _postfix_settings(_files(desired_releases(settings)[postfix.SERVICE])["main.cf"])
    assert main["myhostname"] == "mail.xn--mnchen-3ya.de"


@pytest.mark.parametrize(
    "hostname",
    [
        "mail.example.com\nmynetworks = 0.0.0.0/0",
        "mail.example.com\r\n",
        "mail_server.example.com",
        "mail.example.com.",
        "localhost",
        "",
    ],
)
def test_invalid_hostname_is_refused_before_anything_is_written(
    settings: Settings, tmp_path: Path, hostname: str
) -> None:
    # The settings refuse the name when they are read, before any step can use it.
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(ValidationError) as info:
        settings.hostname = hostname
    assert "MAILYARD_HOSTNAME" in str(info.value)
    assert settings.hostname == "mail.example.com"
    with pytest.raises(ValidationError):
        Settings(hostname=hostname)
    assert sorted(tmp_path.rglob("*")) == before
    assert not settings.state_dir.exists()


@pytest.mark.parametrize("relayhost", ["smtp.example.net\nmynetworks = 0.0.0.0/0", "192.0.2.1"])
def test_invalid_relayhost_is_refused(settings: Settings, relayhost: str) -> None:
    settings.relayhost = relayhost
    with pytest.raises(InvalidInput) as info:
        desired_releases(settings)
    assert "MAILYARD_RELAYHOST" in info.value.message


def test_missing_database_secret_is_an_error(settings: Settings) -> None:
    (settings.secrets_dir / "db-dovecot-password").unlink()
    with pytest.raises(FileNotFoundError):
        desired_releases(settings)


# --- StrictUndefined -----------------------------------------------------------------------
def test_missing_variable_in_a_real_template_raises(settings: Settings) -> None:
    context = {"hostname": "mail.example.com"}  # far from everything main.cf needs
    with pytest.raises(jinja2.UndefinedError):
        render_release(settings.templates_dir, postfix.SERVICE, postfix.TEMPLATES, context)


def test_missing_variable_never_renders_as_empty(tmp_path: Path) -> None:
    service_dir = tmp_path / "svc"
    service_dir.mkdir()
    (service_dir / "x.conf.j2").write_text("a = {{ a }}\nb = {{ b }}\n")
    files = [TemplateFile("x.conf.j2", "x.conf")]
    with pytest.raises(jinja2.UndefinedError, match="'b'"):
        render_release(tmp_path, "svc", files, {"a": 1})
    release = render_release(tmp_path, "svc", files, {"a": 1, "b": "two"})
    assert release.files[0].content == b"a = 1\nb = two\n"


# --- ReleaseStore --------------------------------------------------------------------------
def _release(text: str, name: str = "svc") -> Release:
    return Release(
        service=name,
        files=(
            RenderedFile("main.conf", text.encode(), 0o644, 0),
            RenderedFile("sql/secret.cf", b"password = " + text.encode(), 0o640, 0),
        ),
    )


def test_write_stores_files_with_their_modes(tmp_path: Path) -> None:
    store = ReleaseStore(tmp_path / "svc")
    release = _release("one")
    path = store.write(release)
    assert path == tmp_path / "svc" / "releases" / release.digest
    assert (path / "main.conf").read_text() == "one"
    assert stat.S_IMODE((path / "main.conf").stat().st_mode) == 0o644
    assert stat.S_IMODE((path / "sql" / "secret.cf").stat().st_mode) == 0o640
    # Services must be able to traverse the directories.
    assert stat.S_IMODE(path.stat().st_mode) == 0o755
    assert stat.S_IMODE((path / "sql").stat().st_mode) == 0o755
    # No staging directory is left behind.
    assert [p.name for p in store.releases.iterdir()] == [release.digest]


def test_write_is_idempotent(tmp_path: Path) -> None:
    store = ReleaseStore(tmp_path / "svc")
    release = _release("one")
    first = store.write(release)
    marker = first / "main.conf"
    os.utime(marker, (1_000_000, 1_000_000))
    second = store.write(_release("one"))
    assert second == first
    assert marker.stat().st_mtime == 1_000_000  # not rewritten
    assert len(list(store.releases.iterdir())) == 1


def test_failed_write_leaves_no_partial_release(tmp_path: Path) -> None:
    store = ReleaseStore(tmp_path / "svc")
    broken = Release(
        service="svc",
        files=(
            RenderedFile("a", b"file", 0o644, 0),
            RenderedFile("a/b", b"cannot live under a file", 0o644, 0),
        ),
    )
    with pytest.raises(OSError, match="a"):
        store.write(broken)
    assert list(store.releases.iterdir()) == []
    assert not store.path_of(broken.digest).exists()


def test_activate_points_current_at_the_release(tmp_path: Path) -> None:
    store = ReleaseStore(tmp_path / "svc")
    assert store.current_digest() is None
    one, two = _release("one"), _release("two")
    store.write(one)
    store.write(two)
    store.activate(one.digest)
    link = tmp_path / "svc" / "current"
    assert link.is_symlink()
    # Relative, so it resolves inside any container that mounts the volume elsewhere.
    assert os.readlink(link) == f"releases/{one.digest}"
    assert (link / "main.conf").read_text() == "one"
    assert store.current_digest() == one.digest
    store.activate(two.digest)
    assert os.readlink(link) == f"releases/{two.digest}"
    assert (link / "main.conf").read_text() == "two"
    assert store.current_digest() == two.digest
    # The switch goes through a temporary link renamed over `current`: none is left.
    assert sorted(p.name for p in (tmp_path / "svc").iterdir()) == ["current", "releases"]


def test_activate_unknown_digest_raises_and_keeps_current(tmp_path: Path) -> None:
    store = ReleaseStore(tmp_path / "svc")
    one = _release("one")
    store.write(one)
    store.activate(one.digest)
    with pytest.raises(FileNotFoundError):
        store.activate("0" * 20)
    assert store.current_digest() == one.digest
    assert (tmp_path / "svc" / "current" / "main.conf").read_text() == "one"


def test_read_returns_the_release_contents(tmp_path: Path) -> None:
    store = ReleaseStore(tmp_path / "svc")
    release = _release("one")
    store.write(release)
    assert store.read(release.digest) == {
        "main.conf": b"one",
        "sql/secret.cf": b"password = one",
    }


def test_read_of_a_real_desired_release(settings: Settings) -> None:
    release = desired_releases(settings)[postfix.SERVICE]
    store = ReleaseStore(settings.config_dir / postfix.SERVICE)
    path = store.write(release)
    assert store.read(release.digest) == {item.path: item.content for item in release.files}
    for item in release.files:
        assert stat.S_IMODE((path / item.path).stat().st_mode) == item.mode


def test_digest_depends_on_content_and_mode(tmp_path: Path) -> None:
    base = _release("one")
    assert base.digest == _release("one").digest
    assert base.digest != _release("two").digest
    loose = Release(
        service="svc",
        files=(
            RenderedFile("main.conf", b"one", 0o644, 0),
            RenderedFile("sql/secret.cf", b"password = one", 0o644, 0),
        ),
    )
    assert loose.digest != base.digest


def test_prune_keeps_current_and_the_newest(tmp_path: Path) -> None:
    store = ReleaseStore(tmp_path / "svc")
    releases = [_release(f"r{index}") for index in range(6)]
    for age, release in enumerate(releases):
        path = store.write(release)
        os.utime(path, (1_000_000 + age, 1_000_000 + age))
    store.activate(releases[0].digest)  # the oldest one is in service
    store.prune(keep=2)
    kept = {path.name for path in store.releases.iterdir()}
    assert kept == {releases[0].digest, releases[5].digest, releases[4].digest}
    assert store.current_digest() == releases[0].digest
    assert (tmp_path / "svc" / "current" / "main.conf").read_text() == "r0"


def test_prune_without_releases_does_nothing(tmp_path: Path) -> None:
    store = ReleaseStore(tmp_path / "svc")
    store.prune()
    assert not (tmp_path / "svc").exists()
