"""controller/services/rendering.py and controller/engine/desired.py: config releases."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Any

import jinja2
import pytest
from process_settings import changed
from pydantic import ValidationError

from controller.domain.mail_settings import MIB, SETTING_NAMES, MailSettings, build
from controller.engine.desired import desired_releases, secret_values
from controller.errors import InvalidInput
from controller.services import amavis, dovecot, opendkim, postfix, postgrey
from controller.services.rendering import (
    MANIFEST,
    RELEASE_NAME,
    Release,
    ReleaseStore,
    RenderedFile,
    TemplateFile,
    digest_of,
    render_release,
)
from controller.settings import Settings

# Written into the secrets volume by the conftest `settings` fixture.
POSTFIX_DB_PASSWORD = "pf-secret-0123456789"
DOVECOT_DB_PASSWORD = "dc-secret-9876543210"


def _mail(settings: Settings, **stored: Any) -> MailSettings:
    """The effective mail settings as the engine builds them: stored values over the
    first-start defaults from the environment (MAILYARD_HOSTNAME, MAILYARD_RELAYHOST)."""
    return build(stored, {"hostname": settings.hostname, "relayhost": settings.relayhost})


def _desired(settings: Settings, **stored: Any) -> dict[str, Release]:
    return desired_releases(settings, _mail(settings, **stored))


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
    # With list routing on (Mailman's table exists), every rendered map is in use.
    settings = changed(settings, mailman_routing=True)
    files = _files(_desired(settings)[postfix.SERVICE])
    sql_files = {path for path in files if path.startswith("sql/")}
    assert {"main.cf", "master.cf"} <= set(files)
    assert len(sql_files) >= 9
    assert all(path.endswith(".cf") for path in sql_files)
    # Every map main.cf points at is in the release, and every rendered map is used.
    referenced = set(re.findall(r"proxy:mysql:\S*?/(sql/[a-z_]+\.cf)", files["main.cf"]))
    assert referenced == sql_files


def test_main_cf_trusts_only_the_container_itself(settings: Settings) -> None:
    main = _postfix_settings(_files(_desired(settings)[postfix.SERVICE])["main.cf"])
    # Docker gateways (172.16.0.0/12 and friends) must not be trusted to relay.
    assert main["mynetworks"] == "127.0.0.0/8"
    assert main["myhostname"] == "mail.example.com"
    assert main["relayhost"] == ""
    assert "reject_unauth_destination" in main["smtpd_relay_restrictions"]
    assert main["smtpd_tls_chain_files"] == (
        f"{settings.certs_dir / 'privkey.pem'}, {settings.certs_dir / 'fullchain.pem'}"
    )


def test_relayhost_is_normalised_into_main_cf(settings: Settings) -> None:
    settings = changed(settings, relayhost="[SMTP.Example.net]:587")
    main = _postfix_settings(_files(_desired(settings)[postfix.SERVICE])["main.cf"])
    assert main["relayhost"] == "[smtp.example.net]:587"


def test_every_sql_map_is_complete(settings: Settings) -> None:
    release = _desired(settings)[postfix.SERVICE]
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
    for release in _desired(settings).values():
        for path, text in _files(release).items():
            assert "{{" not in text, path
            assert "{%" not in text, path


def test_dovecot_release(settings: Settings) -> None:
    files = _files(_desired(settings)[dovecot.SERVICE])
    assert set(files) == {"dovecot.conf", "dovecot-sql.conf.ext", "auth-policy.json"}
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


def test_every_mailbox_runs_the_duplicate_filter_before_the_junk_script(
    settings: Settings,
) -> None:
    files = _files(_desired(settings)[dovecot.SERVICE])
    # The duplicate filter is global; the userdb may only add the junk script after it
    # (a userdb "sieve_before" would replace the global one for that user).
    assert re.search(
        rf"^\s*sieve_before = {re.escape(dovecot.DUPLICATE_SIEVE)}$",
        files["dovecot.conf"],
        re.MULTILINE,
    )
    sql = files["dovecot-sql.conf.ext"]
    assert re.findall(r"AS (?:userdb_)?sieve_before\w*", sql) == [
        "AS userdb_sieve_before2",
        "AS sieve_before2",
    ]
    assert sql.count(dovecot.JUNK_SIEVE) == 2


def test_each_service_gets_only_its_own_secrets(settings: Settings) -> None:
    releases = _desired(settings)
    postfix_text = "".join(_files(releases[postfix.SERVICE]).values())
    dovecot_text = "".join(_files(releases[dovecot.SERVICE]).values())
    assert DOVECOT_DB_PASSWORD not in postfix_text
    assert _doveadm_key(settings) not in postfix_text
    assert POSTFIX_DB_PASSWORD not in dovecot_text


def test_secret_bearing_files_are_not_world_readable(settings: Settings) -> None:
    for release in _desired(settings).values():
        for item in release.files:
            if POSTFIX_DB_PASSWORD.encode() in item.content or (
                DOVECOT_DB_PASSWORD.encode() in item.content
            ):
                assert item.mode == 0o640, item.path
    key_file = settings.state_dir / "secrets" / "doveadm-api-key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_rendering_is_deterministic(settings: Settings) -> None:
    first = _desired(settings)
    second = _desired(settings)
    for service in (postfix.SERVICE, dovecot.SERVICE):
        assert first[service].digest == second[service].digest
        assert _files(first[service]) == _files(second[service])


def test_a_different_hostname_gives_a_different_digest(settings: Settings) -> None:
    before = _desired(settings)
    after = _desired(changed(settings, hostname="mx.example.com"))
    assert before[postfix.SERVICE].digest != after[postfix.SERVICE].digest
    assert before[dovecot.SERVICE].digest != after[dovecot.SERVICE].digest
    assert "myhostname = mx.example.com" in _files(after[postfix.SERVICE])["main.cf"]


def test_a_new_database_password_gives_a_new_digest(settings: Settings) -> None:
    before = _desired(settings)[postfix.SERVICE].digest
    (settings.secrets_dir / "db-postfix-password").write_text("rotated-password\n")
    assert _desired(settings)[postfix.SERVICE].digest != before


def test_idna_hostname_is_rendered_as_a_labels(settings: Settings) -> None:
    settings = changed(settings, hostname="Mail.München.DE")
    main = _postfix_settings(_files(_desired(settings)[postfix.SERVICE])["main.cf"])
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
        changed(settings, hostname=hostname)
    assert "MAILYARD_HOSTNAME" in str(info.value)
    assert settings.hostname == "mail.example.com"
    with pytest.raises(ValidationError):
        Settings(hostname=hostname)
    assert sorted(tmp_path.rglob("*")) == before
    assert not settings.state_dir.exists()


@pytest.mark.parametrize("relayhost", ["smtp.example.net\nmynetworks = 0.0.0.0/0", "192.0.2.1"])
def test_invalid_relayhost_is_refused(settings: Settings, relayhost: str) -> None:
    # From the environment (MAILYARD_RELAYHOST, the default until the setting is stored)
    with pytest.raises(ValidationError) as env_error:
        changed(settings, relayhost=relayhost)
    assert "MAILYARD_RELAYHOST" in str(env_error.value)
    # ... or stored through the API: nothing is rendered with it either way.
    with pytest.raises(InvalidInput) as info:
        _desired(settings, relayhost=relayhost)
    assert info.value.message.startswith("relayhost: "), info.value.message


def test_missing_database_secret_is_an_error(settings: Settings) -> None:
    (settings.secrets_dir / "db-dovecot-password").unlink()
    with pytest.raises(FileNotFoundError):
        _desired(settings)


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
    name = store.write(release)
    assert name == release.digest
    assert RELEASE_NAME.match(name)
    path = store.path_of(name)
    assert path == tmp_path / "svc" / "releases" / release.digest
    assert (path / "main.conf").read_text() == "one"
    assert stat.S_IMODE((path / "main.conf").stat().st_mode) == 0o644
    assert stat.S_IMODE((path / "sql" / "secret.cf").stat().st_mode) == 0o640
    # Services must be able to traverse the directories.
    assert stat.S_IMODE(path.stat().st_mode) == 0o755
    assert stat.S_IMODE((path / "sql").stat().st_mode) == 0o755
    # No staging directory is left behind.
    assert [p.name for p in store.releases.iterdir()] == [release.digest]


def test_write_records_a_manifest_of_every_file(tmp_path: Path) -> None:
    store = ReleaseStore(tmp_path / "svc")
    release = _release("one")
    path = store.path_of(store.write(release))
    manifest = json.loads((path / MANIFEST).read_text())
    assert manifest["digest"] == release.digest
    assert set(manifest["files"]) == {"main.conf", "sql/secret.cf"}
    assert store.damage(release.digest) == []
    # The manifest is bookkeeping, not part of the release's files.
    assert MANIFEST not in store.read(release.digest)


def test_write_is_idempotent(tmp_path: Path) -> None:
    store = ReleaseStore(tmp_path / "svc")
    release = _release("one")
    first = store.write(release)
    marker = store.path_of(first) / "main.conf"
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


@pytest.mark.parametrize(
    ("vandalise", "expected"),
    [
        (
            lambda path: (path / "main.conf").write_text("mynetworks = 0.0.0.0/0"),
            "main.conf was edited by hand",
        ),
        (lambda path: (path / "sql" / "secret.cf").unlink(), "sql/secret.cf is missing"),
        (lambda path: (path / "extra.cf").write_text("x"), "extra.cf was added by hand"),
        (lambda path: (path / MANIFEST).unlink(), "has no readable manifest"),
        (lambda path: (path / MANIFEST).write_text("{not json"), "has no readable manifest"),
    ],
    ids=["edited", "missing", "added", "no-manifest", "bad-manifest"],
)
def test_damage_reports_what_was_changed_by_hand(
    tmp_path: Path, vandalise: Any, expected: str
) -> None:
    store = ReleaseStore(tmp_path / "svc")
    name = store.write(_release("one"))
    assert store.damage(name) == []
    vandalise(store.path_of(name))
    problems = store.damage(name)
    assert len(problems) == 1
    assert expected in problems[0]


def test_a_damaged_release_is_never_repaired_in_place(tmp_path: Path) -> None:
    store = ReleaseStore(tmp_path / "svc")
    release = _release("one")
    name = store.write(release)
    edited = store.path_of(name) / "main.conf"
    edited.write_text("edited")
    # Writing the same release again leaves the edited copy alone (a daemon may be
    # reading it) and writes a fresh copy under a suffixed name.
    fresh = store.write(release)
    assert fresh != name
    assert re.fullmatch(rf"{release.digest}\.[0-9a-z]{{6}}", fresh)
    assert RELEASE_NAME.match(fresh)
    assert digest_of(fresh) == release.digest
    assert edited.read_text() == "edited"
    assert (store.path_of(fresh) / "main.conf").read_text() == "one"
    assert store.damage(fresh) == []
    # While the original stays damaged, the repair copy is reused, not piled up.
    assert store.write(release) == fresh
    # An intact release is reused as it is.
    two = _release("two")
    first_two = store.write(two)
    assert store.write(two) == first_two


def test_digest_of_a_release_name() -> None:
    assert digest_of("0123456789abcdef0123") == "0123456789abcdef0123"
    assert digest_of("0123456789abcdef0123.a1b2c3") == "0123456789abcdef0123"
    assert RELEASE_NAME.match("0123456789abcdef0123.a1b2c3")
    for bad in ("../../etc", "0123456789abcdef0123.", "0123456789abcdef012", "current"):
        assert not RELEASE_NAME.match(bad), bad


def test_activate_points_current_at_the_release(tmp_path: Path) -> None:
    store = ReleaseStore(tmp_path / "svc")
    assert store.current_name() is None
    assert store.current_name() is None
    one, two = _release("one"), _release("two")
    store.write(one)
    store.write(two)
    store.activate(one.digest)
    link = tmp_path / "svc" / "current"
    assert link.is_symlink()
    # Relative, so it resolves inside any container that mounts the volume elsewhere.
    assert os.readlink(link) == f"releases/{one.digest}"
    assert (link / "main.conf").read_text() == "one"
    assert store.current_name() == one.digest
    store.activate(two.digest)
    assert os.readlink(link) == f"releases/{two.digest}"
    assert (link / "main.conf").read_text() == "two"
    assert store.current_name() == two.digest
    # The switch goes through a temporary link renamed over `current`: none is left.
    assert sorted(p.name for p in (tmp_path / "svc").iterdir()) == ["current", "releases"]


def test_activate_a_repair_copy(tmp_path: Path) -> None:
    store = ReleaseStore(tmp_path / "svc")
    release = _release("one")
    name = store.write(release)
    (store.path_of(name) / "main.conf").write_text("edited")
    fresh = store.write(release)
    store.activate(fresh)
    assert store.current_name() == fresh
    assert digest_of(store.current_name() or "") == release.digest
    assert (tmp_path / "svc" / "current" / "main.conf").read_text() == "one"


def test_activate_unknown_or_malformed_name_raises_and_keeps_current(tmp_path: Path) -> None:
    store = ReleaseStore(tmp_path / "svc")
    one = _release("one")
    store.write(one)
    store.activate(one.digest)
    for bad in ("0" * 20, "../releases/" + one.digest, ""):
        with pytest.raises(FileNotFoundError):
            store.activate(bad)
    assert store.current_name() == one.digest
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
    release = _desired(settings)[postfix.SERVICE]
    store = ReleaseStore(settings.config_dir / postfix.SERVICE)
    path = store.path_of(store.write(release))
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


def test_remove_deletes_a_release_but_never_the_committed_one(tmp_path: Path) -> None:
    store = ReleaseStore(tmp_path / "svc")
    one, two = _release("one"), _release("two")
    store.write(one)
    store.write(two)
    store.activate(one.digest)
    store.remove(one.digest)
    assert store.path_of(one.digest).is_dir()
    store.remove(two.digest)
    assert not store.path_of(two.digest).exists()
    # Names that are not release names are ignored, never resolved as paths.
    outside = tmp_path / "svc" / "keep"
    outside.mkdir()
    store.remove("../keep")
    assert outside.is_dir()


def _written(store: ReleaseStore, count: int) -> list[Release]:
    releases = [_release(f"r{index}") for index in range(count)]
    for age, release in enumerate(releases):
        path = store.path_of(store.write(release))
        os.utime(path, (1_000_000 + age, 1_000_000 + age))
    return releases


def test_prune_keeps_current_and_the_newest(tmp_path: Path) -> None:
    store = ReleaseStore(tmp_path / "svc")
    releases = _written(store, 6)
    store.activate(releases[0].digest)  # the oldest one is in service
    store.prune(keep=2)
    kept = {path.name for path in store.releases.iterdir()}
    assert kept == {releases[0].digest, releases[5].digest, releases[4].digest}
    assert store.current_name() == releases[0].digest
    assert (tmp_path / "svc" / "current" / "main.conf").read_text() == "r0"


def test_prune_keeps_releases_in_use_by_a_replica(tmp_path: Path) -> None:
    store = ReleaseStore(tmp_path / "svc")
    releases = _written(store, 6)
    store.activate(releases[5].digest)
    # A replica still runs an old release (its own `active` link): it must survive.
    store.prune(keep=1, in_use=frozenset({releases[1].digest}))
    kept = {path.name for path in store.releases.iterdir()}
    assert kept == {releases[5].digest, releases[4].digest, releases[1].digest}


def test_prune_without_releases_does_nothing(tmp_path: Path) -> None:
    store = ReleaseStore(tmp_path / "svc")
    store.prune()
    assert not (tmp_path / "svc").exists()


# --- the yesno filter ----------------------------------------------------------------------
def test_yesno_renders_only_real_booleans(tmp_path: Path) -> None:
    service_dir = tmp_path / "svc"
    service_dir.mkdir()
    (service_dir / "x.conf.j2").write_text("flag = {{ value | yesno }}\n")
    files = [TemplateFile("x.conf.j2", "x.conf")]
    assert render_release(tmp_path, "svc", files, {"value": True}).files[0].content == (
        b"flag = yes\n"
    )
    assert render_release(tmp_path, "svc", files, {"value": False}).files[0].content == (
        b"flag = no\n"
    )
    # A string "no" is truthy: the filter refuses it instead of rendering "yes".
    for value in ("no", 0, None):
        with pytest.raises(TypeError, match="yesno expects a bool"):
            render_release(tmp_path, "svc", files, {"value": value})


# --- every mail setting reaches its file ---------------------------------------------------
EVERY_SETTING_CHANGED: dict[str, Any] = {
    "hostname": "mx.example.net",
    "origin": "example.net",
    "mynetworks": ["127.0.0.0/8", "192.0.2.0/24", "198.51.100.7/32"],
    "message_size_limit": 10 * MIB,
    "recipient_limit": 42,
    "recipient_overshoot_limit": 420,
    "helo_required": False,
    "strict_rfc821_envelopes": False,
    "disable_vrfy_command": False,
    "helo_restrictions": ["permit_mynetworks", "reject_non_fqdn_helo_hostname"],
    "sender_restrictions": ["reject_unknown_sender_domain", "permit"],
    "recipient_restrictions": ["reject_rbl_client", "zen.spamhaus.org=127.0.0.[2..11]"],
    "delay_warning_time": "2h",
    "maximal_queue_lifetime": "3d",
    "bounce_queue_lifetime": "1d",
    "minimal_backoff_time": "10m",
    "maximal_backoff_time": "2h",
    "tls_server_protocols": ">=TLSv1.3",
    "tls_server_ciphers": "high",
    "tls_server_mandatory_ciphers": "medium",
    "tls_client_protocols": ">=TLSv1.3",
    "tls_client_ciphers": "high",
    "tls_client_security_level": "encrypt",
    "relayhost": "[smtp.example.net]:587",
    "relayhost_username": "mailer@example.net",
    "relayhost_password": "pa55 word!",
    "postscreen_greet_action": "drop",
    "postscreen_blacklist_action": "enforce",
    "postscreen_pipelining_enable": True,
    "postscreen_non_smtp_command_enable": True,
    "postscreen_bare_newline_enable": True,
    "dovecot_protocols": ["imap", "lmtp"],
    "login_process_limit": 77,
    "mail_process_limit": 777,
    "max_userip_connections": 7,
    "smtp_listen_address": "192.0.2.10",
    "postscreen_dnsbl_sites": [
        "zen.spamhaus.org=127.0.0.[2..11]*3",
        "list.dnswl.org=127.0.[0..255].[1..3]*-2",
    ],
    "postscreen_dnsbl_threshold": 4,
    "postscreen_dnsbl_allowlist_threshold": -2,
    "postscreen_dnsbl_action": "drop",
    "postscreen_access_list": [
        {"network": "192.0.2.0/24", "action": "permit"},
        {"network": "198.51.100.0/24", "action": "reject"},
    ],
    "filter_spam_network_tests": False,
    "greylisting_enabled": True,
    "greylisting_delay_seconds": 120,
    "spf_action": "tag",
    "reject_hosted_sender_spoofing": False,
    "client_connection_count_limit": 7,
    "client_connection_rate_limit": 70,
    "client_message_rate_limit": 77,
    "client_auth_rate_limit": 9,
    "client_rate_time_unit": "2m",
    "outbound_messages_per_hour": 777,
    # Failed logins (auth-policy.json, and whether dovecot.conf asks the policy server)
    "login_blocking_enabled": False,
    "login_slowdown_after_failures": 3,
    "login_slowdown_max_seconds": 4,
    "login_block_after_failures": 9,
    "login_failure_window_seconds": 300,
    "login_block_seconds": 600,
    "login_block_exempt_networks": ["198.51.100.0/24"],
}
# Settings that change no file (they act in the controller itself).
# Settings the controller itself uses (mailbox defaults, the ACME client): no daemon
# config file carries them.
NOT_RENDERED = {
    "default_quota_mb",
    "acme_enabled",
    "acme_directory_url",
    "acme_contact_email",
    "acme_ca_bundle",
    "acme_key_type",
    "certificate_extra_names",
}


def _dovecot_blocks(conf: str) -> dict[str, str]:
    """The body of each top-level `service X {` / `protocol X {` block."""
    return {
        match.group(1): match.group(2)
        for match in re.finditer(r"^((?:service|protocol) [\w-]+) \{\n(.*?)^\}", conf, re.M | re.S)
    }


def test_every_setting_reaches_main_cf_master_cf_or_dovecot_conf(settings: Settings) -> None:
    # Every setting differs from its default here, so a setting the templates forget
    # (or a new one without a line below) fails this test.
    defaults = MailSettings()
    assert set(EVERY_SETTING_CHANGED) | NOT_RENDERED == set(SETTING_NAMES)
    for name, value in EVERY_SETTING_CHANGED.items():
        assert value != getattr(defaults, name), name

    releases = _desired(settings, **EVERY_SETTING_CHANGED)
    postfix_files = _files(releases[postfix.SERVICE])
    main = _postfix_settings(postfix_files["main.cf"])
    assert main["myhostname"] == "mx.example.net"
    assert main["myorigin"] == "example.net"
    assert main["mynetworks"] == "127.0.0.0/8, 192.0.2.0/24, 198.51.100.7/32"
    assert main["message_size_limit"] == str(10 * MIB)
    assert main["smtpd_recipient_limit"] == "42"
    assert main["smtpd_recipient_overshoot_limit"] == "420"
    assert main["smtpd_helo_required"] == "no"
    assert main["strict_rfc821_envelopes"] == "no"
    assert main["disable_vrfy_command"] == "no"
    assert main["smtpd_helo_restrictions"] == "permit_mynetworks, reject_non_fqdn_helo_hostname"
    assert main["smtpd_sender_restrictions"] == "reject_unknown_sender_domain, permit"
    # Mailyard's own checks stay around the configurable list.
    assert main["smtpd_recipient_restrictions"] == (
        "reject_rbl_client, zen.spamhaus.org=127.0.0.[2..11], "
        "check_policy_service unix:private/policyd-spf, "
        "check_policy_service inet:postgrey-greylist:10023, "
        "check_policy_service inet:dovecot-delivery:12340"
    )
    assert main["smtpd_relay_restrictions"] == (
        "permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination"
    )
    assert main["delay_warning_time"] == "2h"
    assert main["maximal_queue_lifetime"] == "3d"
    assert main["bounce_queue_lifetime"] == "1d"
    assert main["minimal_backoff_time"] == "10m"
    assert main["maximal_backoff_time"] == "2h"
    assert main["smtpd_tls_protocols"] == ">=TLSv1.3"
    assert main["smtpd_tls_mandatory_protocols"] == ">=TLSv1.3"
    assert main["smtpd_tls_ciphers"] == "high"
    assert main["smtpd_tls_mandatory_ciphers"] == "medium"
    assert main["smtp_tls_protocols"] == ">=TLSv1.3"
    assert main["smtp_tls_mandatory_protocols"] == ">=TLSv1.3"
    assert main["smtp_tls_ciphers"] == "high"
    assert main["smtp_tls_security_level"] == "encrypt"
    assert main["relayhost"] == "[smtp.example.net]:587"
    assert main["smtp_sasl_auth_enable"] == "yes"
    assert main["smtp_sasl_password_maps"] == "texthash:$config_directory/relay_passwords"
    assert main["postscreen_greet_action"] == "drop"
    assert main["postscreen_blacklist_action"] == "enforce"
    assert main["postscreen_pipelining_enable"] == "yes"
    assert main["postscreen_non_smtp_command_enable"] == "yes"
    assert main["postscreen_bare_newline_enable"] == "yes"
    assert main["postscreen_dnsbl_sites"] == (
        "zen.spamhaus.org=127.0.0.[2..11]*3, list.dnswl.org=127.0.[0..255].[1..3]*-2"
    )
    assert main["postscreen_dnsbl_threshold"] == "4"
    assert main["postscreen_dnsbl_allowlist_threshold"] == "-2"
    assert main["postscreen_dnsbl_action"] == "drop"
    assert main["postscreen_access_list"] == (
        "permit_mynetworks, cidr:{ { 192.0.2.0/24 permit }, { 198.51.100.0/24 reject } }"
    )
    # Per-client limits (anvil) and the per-login outbound limit (policyd-rate-limit).
    assert main["smtpd_client_connection_count_limit"] == "7"
    assert main["smtpd_client_connection_rate_limit"] == "70"
    assert main["smtpd_client_message_rate_limit"] == "77"
    assert main["smtpd_client_auth_rate_limit"] == "9"
    assert main["anvil_rate_time_unit"] == "2m"
    assert "  - [777, 3600]\n" in postfix_files["policyd-rate-limit.yaml"].replace("    -", "  -")
    assert "hosted_sender_domains" not in main["smtpd_sender_restrictions"]
    # SPF only tags; greylisting waits 120 s; SpamAssassin stays offline.
    spf = postfix_files["policyd-spf.conf"]
    assert re.search(r"^Mail_From_reject = False$", spf, re.M)
    assert "--delay=120" in _files(releases[postgrey.SERVICE])["postgrey.args"]
    amavis_conf = _files(releases[amavis.SERVICE])["amavisd.conf"]
    assert re.search(r"^\$sa_local_tests_only\s*=\s*1;", amavis_conf, re.M), amavis_conf
    # The password is only in relay_passwords, never in main.cf.
    assert "pa55 word!" not in postfix_files["main.cf"]
    assert postfix_files["relay_passwords"] == (
        "[smtp.example.net]:587 mailer@example.net:pa55 word!\n"
    )

    master = postfix_files["master.cf"]
    for service in ("smtp", "submission", "submissions"):
        assert re.search(rf"^192\.0\.2\.10:{service}\s+inet\s", master, re.M), service

    conf = _files(releases[dovecot.SERVICE])["dovecot.conf"]
    assert re.search(r"^protocols = imap lmtp$", conf, re.M)
    assert re.search(r"^hostname = mx\.example\.net$", conf, re.M)
    assert re.search(r"^ssl_min_protocol = TLSv1\.3$", conf, re.M)
    blocks = _dovecot_blocks(conf)
    for login in ("imap-login", "pop3-login", "managesieve-login"):
        assert "  process_limit = 77\n" in blocks[f"service {login}"], login
    for mail in ("imap", "pop3"):
        assert "  process_limit = 777\n" in blocks[f"service {mail}"], mail
    assert "  mail_max_userip_connections = 7\n" in blocks["protocol imap"]
    assert "  postmaster_address = postmaster@mx.example.net\n" in blocks["protocol lmtp"]
    assert "auth_policy_server_url" not in conf  # login_blocking_enabled off
    policy = json.loads(_files(releases[dovecot.SERVICE])["auth-policy.json"])
    assert {name: value for name, value in policy.items() if name != "database"} == {
        "enabled": False,
        "listen_port": dovecot.AUTH_POLICY_PORT,
        "slowdown_after_failures": 3,
        "slowdown_max_seconds": 4,
        "block_after_failures": 9,
        "failure_window_seconds": 300,
        "block_seconds": 600,
        "exempt_networks": ["198.51.100.0/24"],
    }


def test_defaults_render_as_documented(settings: Settings) -> None:
    releases = _desired(settings)
    files = _files(releases[postfix.SERVICE])
    main = _postfix_settings(files["main.cf"])
    assert main["myorigin"] == "$myhostname"
    assert main["message_size_limit"] == str(50 * MIB)
    assert main["smtpd_helo_required"] == "yes"
    assert main["disable_vrfy_command"] == "yes"
    assert main["postscreen_pipelining_enable"] == "no"
    assert main["smtpd_tls_protocols"] == ">=TLSv1.2"
    assert "smtp_sasl_auth_enable" not in main
    # Without a listen address every port binds all addresses.
    assert re.search(r"^smtp\s+inet\s", files["master.cf"], re.M)
    conf = _files(releases[dovecot.SERVICE])["dovecot.conf"]
    assert re.search(r"^protocols = imap pop3 lmtp sieve$", conf, re.M)
    assert re.search(r"^ssl_min_protocol = TLSv1\.2$", conf, re.M)


@pytest.mark.parametrize(
    "stored",
    [{}, {"relayhost": "[smtp.example.net]:587"}],
    ids=["no-relayhost", "relayhost-without-credentials"],
)
def test_relay_passwords_has_a_line_only_with_credentials(
    settings: Settings, stored: dict[str, Any]
) -> None:
    release = _desired(settings, **stored)[postfix.SERVICE]
    relay = next(item for item in release.files if item.path == "relay_passwords")
    assert relay.content.strip() == b""
    assert relay.mode == 0o640
    assert relay.gid == postfix.POSTFIX_GID
    assert "smtp_sasl_auth_enable" not in _files(release)["main.cf"]


def test_relay_passwords_is_written_0640(settings: Settings) -> None:
    credentials = {
        "relayhost": "[smtp.example.net]:587",
        "relayhost_username": "mailer",
        "relayhost_password": "s3cret pass",
    }
    release = _desired(settings, **credentials)[postfix.SERVICE]
    store = ReleaseStore(settings.config_dir / postfix.SERVICE)
    path = store.path_of(store.write(release)) / "relay_passwords"
    assert path.read_text().splitlines() == ["[smtp.example.net]:587 mailer:s3cret pass"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_filter_chain_routes_mail_through_amavis_and_back(settings: Settings) -> None:
    files = _files(_desired(settings)[postfix.SERVICE])
    main = _postfix_settings(files["main.cf"])
    master = files["master.cf"]
    # Inbound mail goes to Amavis's inbound port; mail submitted on 587 and 465, list
    # mail from Mailman (10027) and the web interface's mail (10028) to its ORIGINATING
    # port.
    assert main["content_filter"] == "smtp-amavis:[amavis-filter]:10024"
    assert master.count("-o content_filter=smtp-amavis:[amavis-filter]:10026") == 4
    # A stopped Amavis means deferred mail, never a bounce.
    transport = master.split("smtp-amavis  unix", 1)[1].split("\npostfix-filter:10025", 1)[0]
    assert "-o soft_bounce=yes" in transport
    # The re-injection port listens on the `filter` network only, trusts that network
    # only (the table the container writes at start) and filters nothing again.
    reinject = master.split("\npostfix-filter:10025 ", 1)[1]
    assert "-o mynetworks=cidr:/run/mailyard/networks/postfix-filter.cidr" in reinject
    assert "-o smtpd_recipient_restrictions=permit_mynetworks,reject" in reinject
    assert "-o content_filter=\n" in reinject
    # Both DKIM milters on both submission ports (after the sender milter) and on
    # Mailman's; nothing leaves unsigned. The web interface's mail is never signed.
    assert master.count("-o smtpd_milters=$mailyard_submission_milters") == 2
    assert main["mailyard_submission_milters"].endswith(
        "inet:opendkim-milter:8891, inet:opendkim-milter:8892"
    )
    milters = "-o smtpd_milters=inet:opendkim-milter:8891,inet:opendkim-milter:8892"
    assert master.count(milters) == 1
    assert master.count("-o milter_default_action=tempfail") == 3
    # SPF is on by default and spawned by master.
    assert "argv=/usr/bin/policyd-spf /etc/mailyard/active/policyd-spf.conf" in master


def test_without_the_filter_nothing_goes_to_amavis(settings: Settings) -> None:
    settings = changed(settings, filter_mode="off")
    releases = _desired(settings)
    assert amavis.SERVICE not in releases
    files = _files(releases[postfix.SERVICE])
    assert _postfix_settings(files["main.cf"]).get("content_filter", "") == ""
    assert "smtp-amavis" not in files["master.cf"]
    assert ":10025 " not in files["master.cf"]
    # DKIM signing does not depend on the filter.
    assert "inet:opendkim-milter:8891" in files["master.cf"]


def test_spf_off_removes_the_policy_service(settings: Settings) -> None:
    files = _files(_desired(settings, spf_action="off")[postfix.SERVICE])
    assert "policyd-spf" not in _postfix_settings(files["main.cf"])["smtpd_recipient_restrictions"]
    assert "policyd-spf  unix" not in files["master.cf"]


def test_list_routing_waits_for_mailmans_table(settings: Settings) -> None:
    # Until Postfix may read Mailman's table, the lookup is left out: a lookup that
    # fails would defer every message, not only list mail.
    main = _postfix_settings(_files(_desired(settings)[postfix.SERVICE])["main.cf"])
    assert "mailman_lists" not in main["virtual_mailbox_maps"]
    assert "mailman_lists" not in main["transport_maps"]
    settings = changed(settings, mailman_routing=True)
    files = _files(_desired(settings)[postfix.SERVICE])
    main = _postfix_settings(files["main.cf"])
    assert main["transport_maps"].endswith("proxy:mysql:$config_directory/sql/mailman_lists.cf")
    assert "lmtp:inet:mailman-lists:8024" in files["sql/mailman_lists.cf"]
    assert "FROM mailman.mailinglist" in files["sql/mailman_lists.cf"]
    # Mailman's outgoing port: on the `lists` network only, DKIM-signed, filtered.
    mailman_port = files["master.cf"].split("\npostfix-lists:10027 ", 1)[1]
    assert "-o mynetworks=cidr:/run/mailyard/networks/postfix-lists.cidr" in mailman_port
    assert "-o smtpd_milters=inet:opendkim-milter:8891,inet:opendkim-milter:8892" in mailman_port
    assert "-o content_filter=smtp-amavis:[amavis-filter]:10026" in mailman_port


def test_local_delivery_never_bounces(settings: Settings) -> None:
    # A stopped Dovecot (or Mailman) must mean deferred mail, not bounces: found by the
    # failure suite, where "host not found" while the container was gone bounced mail.
    master = _files(_desired(settings)[postfix.SERVICE])["master.cf"]
    service = master.split("\nlmtp         unix", 1)[1].split("\n", 2)
    assert service[1].strip() == "-o soft_bounce=yes"


@pytest.mark.parametrize(
    ("spf_action", "expected"), [("off", False), ("tag", True), ("reject", True)]
)
def test_spf_time_limit_is_set_only_with_the_spf_service(
    settings: Settings, spf_action: str, expected: bool
) -> None:
    files = _files(_desired(settings, spf_action=spf_action)[postfix.SERVICE])
    assert ("policyd-spf  unix" in files["master.cf"]) is expected
    assert ("policyd-spf_time_limit = 3600s" in files["main.cf"]) is expected


def test_the_web_interfaces_mail_is_trusted_from_its_network_only_and_rate_limited(
    settings: Settings,
) -> None:
    master = _files(_desired(settings)[postfix.SERVICE])["master.cf"]
    web = master.split("\npostfix-webmail:10028 ", 1)[1]
    assert "-o mynetworks=cidr:/run/mailyard/networks/postfix-webmail.cidr" in web
    # Trusted, yet counted: a taken-over web application sends a few messages a minute.
    assert "-o smtpd_client_event_limit_exceptions=\n" in web
    assert "-o smtpd_client_message_rate_limit=30\n" in web
    assert "-o smtpd_recipient_limit=5\n" in web
    # Never signed: a taken-over web application gets no domain's DKIM signature.
    assert "-o smtpd_milters=\n" in web


def test_tls_never_offers_broken_suites_and_mandatory_ports_only_aead(settings: Settings) -> None:
    files = _files(_desired(settings)[postfix.SERVICE])
    main = _postfix_settings(files["main.cf"])
    excluded = set(main["smtpd_tls_exclude_ciphers"].split(", "))
    assert {"aNULL", "eNULL", "EXPORT", "RC4", "3DES", "MD5"} <= excluded
    assert main["tls_high_cipherlist"] == "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20"
    assert main["smtpd_tls_mandatory_ciphers"] == "high"
    assert main["tls_ssl_options"] == "NO_RENEGOTIATION"
    # 465 uses the mandatory ciphers too (implicit TLS is mandatory TLS).
    submissions = files["master.cf"].split("submissions  inet", 1)[1].split("\n  -o milter", 1)[0]
    assert "-o smtpd_tls_security_level=encrypt" in submissions
    dovecot_conf = _files(_desired(settings)[dovecot.SERVICE])["dovecot.conf"]
    assert "ssl_cipher_list = ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20\n" in dovecot_conf


def test_dovecots_internal_listeners_bind_to_their_audiences_network(settings: Settings) -> None:
    conf = _files(_desired(settings)[dovecot.SERVICE])["dovecot.conf"]
    for listener in ("lmtp", "sasl", "quota-status"):
        block = conf.split(f"inet_listener {listener} {{", 1)[1].split("}", 1)[0]
        assert "address = dovecot-delivery" in block
    doveadm = conf.split("inet_listener http {", 1)[1].split("}", 1)[0]
    assert "address = dovecot-control" in doveadm


def test_abuse_limits_and_sender_binding_render_as_documented(settings: Settings) -> None:
    files = _files(_desired(settings)[postfix.SERVICE])
    main = _postfix_settings(files["main.cf"])
    # Port 25: a stranger may not use a hosted domain as envelope sender; the trusted
    # networks are let through first.
    assert main["smtpd_sender_restrictions"] == (
        "reject_non_fqdn_sender, permit_mynetworks, check_sender_access "
        "proxy:mysql:$config_directory/sql/hosted_sender_domains.cf"
    )
    hosted = files["sql/hosted_sender_domains.cf"]
    assert "'%d'" in hosted
    assert "'%s'" not in hosted  # only full addresses: %d suppresses domain-only keys
    assert "FROM alias_domains" in hosted
    # Submission: no null sender, envelope owned by the login, rate limit, and the
    # sender milter before both OpenDKIM milters.
    assert (
        main["mailyard_submission_sender_restrictions"]
        .lstrip()
        .startswith("check_sender_access inline:{ { <> = REJECT The null sender is not allowed")
    )
    assert main["mailyard_submission_sender_restrictions"].endswith(
        "reject_non_fqdn_sender, reject_sender_login_mismatch, permit_sasl_authenticated, reject"
    )
    assert main["mailyard_submission_recipient_restrictions"] == (
        "reject_non_fqdn_recipient, check_policy_service unix:ratelimit/policy, "
        "permit_sasl_authenticated, reject"
    )
    assert main["mailyard_submission_milters"] == (
        f"unix:{postfix.SENDER_MILTER_SOCKET}, inet:opendkim-milter:8891, inet:opendkim-milter:8892"
    )
    master = files["master.cf"]
    for service in ("submission", "submissions"):
        block = master.split(f"{service}  ", 1)[1].split("\n# ", 1)[0]
        assert "-o smtpd_sender_restrictions=$mailyard_submission_sender_restrictions" in block
        assert "-o smtpd_recipient_restrictions=$mailyard_submission_recipient_restrictions" in (
            block
        )
        assert "-o smtpd_milters=$mailyard_submission_milters" in block
        assert "-o milter_default_action=tempfail" in block
    # Mailman's port keeps OpenDKIM only: list mail is signed, not bound to a login.
    mailman = master.split(f"{postfix.MAILMAN_SUBMIT_PORT}  ", 1)[1]
    assert "smtpd_milters=inet:opendkim-milter:8891,inet:opendkim-milter:8892" in mailman
    assert "sender.sock" not in mailman
    # SMTP smuggling.
    assert main["smtpd_forbid_bare_newline"] == "normalize"
    assert main["smtpd_forbid_bare_newline_exclusions"] == "$mynetworks"
    assert main["smtpd_forbid_unauth_pipelining"] == "yes"
    assert main["smtpd_data_restrictions"] == "reject_unauth_pipelining"
    assert main["cleanup_replace_stray_cr_lf"] == "yes"
    # Anvil defaults; only mynetworks is exempt.
    assert main["smtpd_client_connection_count_limit"] == "20"
    assert main["smtpd_client_connection_rate_limit"] == "60"
    assert main["smtpd_client_message_rate_limit"] == "100"
    assert main["smtpd_client_auth_rate_limit"] == "30"
    assert main["anvil_rate_time_unit"] == "60s"
    assert main["smtpd_client_event_limit_exceptions"] == "$mynetworks"
    rate = files["policyd-rate-limit.yaml"]
    assert "limits:\n    - [200, 3600]\n" in rate
    assert "limit_by_sasl: true" in rate
    assert 'SOCKET: "/var/spool/postfix/ratelimit/policy"' in rate
    assert "may send to 200 recipients per hour" in rate


def test_outbound_limit_zero_takes_the_policy_service_out(settings: Settings) -> None:
    files = _files(_desired(settings, outbound_messages_per_hour=0)[postfix.SERVICE])
    main = _postfix_settings(files["main.cf"])
    assert main["mailyard_submission_recipient_restrictions"] == (
        "reject_non_fqdn_recipient, permit_sasl_authenticated, reject"
    )
    assert "limits: []" in files["policyd-rate-limit.yaml"]


@pytest.mark.parametrize(
    "values",
    [
        {"client_rate_time_unit": "5s"},
        {"client_rate_time_unit": "2h"},
        {"client_rate_time_unit": "60s\nmynetworks = 0.0.0.0/0"},
        {"client_connection_count_limit": -1},
        {"client_message_rate_limit": 100_001},
        {"outbound_messages_per_hour": -5},
        {"outbound_messages_per_hour": "200"},
        {"reject_hosted_sender_spoofing": "yes"},
    ],
)
def test_bad_abuse_limits_are_refused_before_rendering(
    settings: Settings, values: dict[str, Any]
) -> None:
    with pytest.raises(InvalidInput):
        _mail(settings, **values)


# --- failed logins: Dovecot's auth policy -------------------------------------------------
def _dovecot_settings(conf: str) -> dict[str, str]:
    """Top-level `key = value` lines of dovecot.conf."""
    return {
        key.strip(): value.strip()
        for key, value in re.findall(r"^(\w+) = (.*)$", conf, re.MULTILINE)
    }


def test_every_login_asks_the_policy_server_and_fails_open(settings: Settings) -> None:
    files = _files(_desired(settings)[dovecot.SERVICE])
    conf = _dovecot_settings(files["dovecot.conf"])
    assert conf["auth_policy_server_url"] == f"http://127.0.0.1:{dovecot.AUTH_POLICY_PORT}/"
    # A policy server that cannot answer must not lock every user out.
    assert conf["auth_policy_reject_on_fail"] == "no"
    assert int(conf["auth_policy_server_timeout_msecs"]) <= 2000
    assert conf["auth_policy_check_before_auth"] == "yes"
    # After: a block that began meanwhile refuses even the right password.
    assert conf["auth_policy_check_after_auth"] == "yes"
    assert conf["auth_policy_report_after_auth"] == "yes"
    # The client's address is what the server counts by; no password hash is sent.
    assert conf["auth_policy_request_attributes"] == (
        "login=%{requested_username} remote=%{rip} protocol=%s"
    )
    nonce = (settings.state_dir / "secrets" / "auth-policy-nonce").read_text().strip()
    assert len(nonce) >= 32
    assert conf["auth_policy_hash_nonce"] == nonce
    assert nonce in secret_values(settings, MailSettings())


def test_the_policy_file_holds_the_dovecot_database_user_and_is_not_world_readable(
    settings: Settings,
) -> None:
    release = _desired(settings)[dovecot.SERVICE]
    item = next(item for item in release.files if item.path == "auth-policy.json")
    assert (item.mode, item.gid) == (0o640, dovecot.DOVECOT_GID)
    database = json.loads(item.content)["database"]
    assert database == {
        "host": "db",
        "port": 3306,
        "name": "mailyard",
        "user": "mailyard_dovecot",
        "password": DOVECOT_DB_PASSWORD,
    }


def test_turning_login_blocking_off_stops_asking(settings: Settings) -> None:
    files = _files(_desired(settings, login_blocking_enabled=False)[dovecot.SERVICE])
    assert "auth_policy" not in "".join(
        line for line in files["dovecot.conf"].splitlines() if not line.startswith("#")
    )
    assert json.loads(files["auth-policy.json"])["enabled"] is False


def test_a_secret_with_quotes_cannot_break_the_policy_file(settings: Settings) -> None:
    (settings.secrets_dir / "db-dovecot-password").write_text('p"a\\ss}\n')
    files = _files(_desired(settings)[dovecot.SERVICE])
    assert json.loads(files["auth-policy.json"])["database"]["password"] == 'p"a\\ss}'


def test_opendkim_listens_on_the_milter_network_and_trusts_only_postfix_and_mailman(
    settings: Settings,
) -> None:
    files = _files(_desired(changed(settings, list_network="10.203.6.0/24"))[opendkim.SERVICE])
    for name, port in (("opendkim.conf", 8891), ("opendkim-ed25519.conf", 8892)):
        conf = files[name]
        assert f"\nSocket                  inet:{port}@opendkim-milter\n" in conf
        # Postfix itself, and Mailman core's network (list mail on 10027); nobody else
        # gets mail signed without a login.
        assert "\nInternalHosts           127.0.0.1,::1,10.203.6.0/24\n" in conf
    unknown = _files(_desired(settings)[opendkim.SERVICE])["opendkim.conf"]
    assert "\nInternalHosts           127.0.0.1,::1\n" in unknown


def test_process_settings_are_read_once_and_never_changed(settings: Settings) -> None:
    # What the controller learns while it runs (list routing, the lists network) is the
    # engine's state (LearnedState), not a change to the process settings (issue 15).
    with pytest.raises(ValidationError):
        settings.mailman_routing = True
    with pytest.raises(ValidationError):
        settings.list_network = "10.203.6.0/24"
