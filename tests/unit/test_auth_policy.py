"""Dovecot's auth policy server (images/dovecot/auth_policy.py): its decisions, its
settings file and its HTTP protocol, with the counts in memory instead of MariaDB.

The server with MariaDB and a real Dovecot is tested in tests/stack/test_login_blocks.py.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from controller.domain.blocks import normalize_client_address
from controller.domain.mail_settings import MailSettings
from controller.engine.desired import desired_releases
from controller.services import dovecot
from controller.settings import Settings

SOURCE = Path(__file__).resolve().parents[2] / "images" / "dovecot" / "auth_policy.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mailyard_auth_policy", SOURCE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


ap = _load()
T0 = datetime(2026, 12, 1, 12, 0, 0)
LIMITS = ap.Limits(
    slowdown_after_failures=5,
    slowdown_max_seconds=8,
    block_after_failures=20,
    failure_window_seconds=900,
    block_seconds=3600,
)


def _after(count: int, start: datetime = T0, step: timedelta = timedelta(seconds=1)) -> Any:
    state = None
    for index in range(count):
        state = ap.after_failure(state, start + index * step, LIMITS)
    return state


# --- decisions ------------------------------------------------------------------------------
def test_an_unknown_address_is_allowed() -> None:
    assert ap.decide(None, T0, LIMITS) == ap.ALLOW


def test_below_the_slowdown_threshold_nothing_waits() -> None:
    state = _after(4)
    assert state.failures == 4
    assert ap.decide(state, state.last_failure_at, LIMITS).status == 0


def test_the_wait_doubles_from_one_second_up_to_the_cap() -> None:
    waits = []
    for count in range(5, 11):
        state = replace(_after(count), last_failure_at=T0)
        waits.append(ap.decide(state, T0, LIMITS).status)
    assert waits == [1, 2, 4, 8, 8, 8]


def test_the_wait_counts_from_the_last_failure() -> None:
    state = replace(_after(8), last_failure_at=T0)  # 8 s after the last failure
    assert ap.decide(state, T0 + timedelta(seconds=5), LIMITS).status == 3
    assert ap.decide(state, T0 + timedelta(seconds=8), LIMITS).status == 0


def test_the_twentieth_failure_blocks_for_the_block_time() -> None:
    state = _after(19)
    assert state.blocked_until is None
    now = T0 + timedelta(minutes=1)
    state = ap.after_failure(state, now, LIMITS)
    assert state.failures == 20
    assert state.blocked_at == now
    assert state.blocked_until == now + timedelta(hours=1)
    decision = ap.decide(state, now + timedelta(minutes=59), LIMITS)
    assert decision.status == -1
    assert "try again later" in decision.message


def test_a_block_ends_by_itself_and_counting_starts_afresh() -> None:
    blocked = _after(20)
    ended = blocked.blocked_until
    assert ap.decide(blocked, ended, LIMITS) == ap.ALLOW
    fresh = ap.after_failure(blocked, ended + timedelta(seconds=1), LIMITS)
    assert fresh.failures == 1
    assert fresh.blocked_until is None
    assert fresh.window_started_at == ended + timedelta(seconds=1)


def test_failures_during_a_block_neither_extend_nor_count() -> None:
    blocked = _after(20)
    later = blocked.blocked_at + timedelta(minutes=30)
    assert ap.after_failure(blocked, later, LIMITS) == blocked


def test_failures_older_than_the_window_do_not_count() -> None:
    # 19 failures, then a long pause: the window has closed, the count restarts.
    state = _after(19)
    later = T0 + timedelta(seconds=LIMITS.failure_window_seconds)
    assert ap.decide(state, later, LIMITS) == ap.ALLOW
    state = ap.after_failure(state, later, LIMITS)
    assert state.failures == 1
    assert state.blocked_until is None


def test_the_window_is_fixed_from_the_first_failure() -> None:
    # 19 failures spread over 14 minutes, then one more inside the window: blocked.
    state = _after(19, step=timedelta(seconds=44))
    assert state.last_failure_at < T0 + timedelta(minutes=14)
    state = ap.after_failure(state, T0 + timedelta(minutes=14, seconds=59), LIMITS)
    assert state.blocked_until is not None


# --- addresses ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("remote", "key"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
        ("", None),
        ("not an address", None),
        (None, None),
        (7, None),
    ],
)
def test_addresses_are_counted_per_ipv4_address_or_ipv6_64(remote: object, key: str) -> None:
    assert ap.client_key(remote) == key
    if key is not None:
        # The controller lifts blocks under the same key.
        assert normalize_client_address(str(remote)) == key


def test_exempt_networks() -> None:
    limits = replace(
        LIMITS,
        exempt_networks=(
            ap.ipaddress.ip_network("198.51.100.0/24"),
            ap.ipaddress.ip_network("2001:db8::/32"),
        ),
    )
    assert ap.is_exempt("198.51.100.9", limits)
    assert ap.is_exempt("::ffff:198.51.100.9", limits)
    assert ap.is_exempt("2001:db8:ffff::1", limits)
    assert not ap.is_exempt("192.0.2.7", limits)
    assert not ap.is_exempt("", limits)


def test_stored_strings_are_printable_and_short() -> None:
    assert ap.printable("bob@example.org\r\n\x00", 64) == "bob@example.org"
    assert ap.printable("x" * 100, 64) == "x" * 64
    assert ap.printable(None, 64) == ""


# --- the settings file ----------------------------------------------------------------------
def _rendered(settings: Settings, **values: Any) -> dict[str, Any]:
    release = desired_releases(settings, MailSettings(**values))[dovecot.SERVICE]
    item = next(item for item in release.files if item.path == "auth-policy.json")
    loaded: dict[str, Any] = json.loads(item.content)
    return loaded


def test_the_rendered_file_is_what_the_server_accepts(settings: Settings) -> None:
    config = ap.parse_config(
        _rendered(
            settings,
            login_slowdown_after_failures=3,
            login_slowdown_max_seconds=2,
            login_block_after_failures=10,
            login_failure_window_seconds=600,
            login_block_seconds=120,
            login_block_exempt_networks=["198.51.100.0/24"],
        )
    )
    assert config.enabled is True
    assert config.listen_port == dovecot.AUTH_POLICY_PORT
    assert config.limits == ap.Limits(
        slowdown_after_failures=3,
        slowdown_max_seconds=2,
        block_after_failures=10,
        failure_window_seconds=600,
        block_seconds=120,
        exempt_networks=(ap.ipaddress.ip_network("198.51.100.0/24"),),
    )
    assert config.database.user == "mailyard_dovecot"
    assert config.database.host == settings.db_host
    assert config.database.port == settings.db_port
    # The defaults, as documented.
    assert ap.parse_config(_rendered(settings)).limits == ap.Limits()


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"enabled": "yes"}, "enabled must be true or false"),
        ({"block_after_failures": 0}, "block_after_failures must be an integer"),
        ({"block_after_failures": True}, "block_after_failures must be an integer"),
        ({"slowdown_max_seconds": 30}, "slowdown_max_seconds must be an integer from 1 to 8"),
        ({"exempt_networks": ["10.0.0.1/8"]}, "exempt_networks: '10.0.0.1/8'"),
        ({"exempt_networks": "10.0.0.0/8"}, "exempt_networks must be a list"),
        ({"database": None}, "database must be an object"),
        ({"database": {"host": "db"}}, "database.port must be"),
        ({"database": {"host": "db", "port": 3306}}, "database.name must be"),
    ],
)
def test_a_broken_file_is_refused_with_a_reason(
    settings: Settings, tmp_path: Path, change: dict[str, Any], complaint: str
) -> None:
    data = {**_rendered(settings), **change}
    path = tmp_path / "auth-policy.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ap.ConfigError) as refused:
        ap.load_config(path)
    assert complaint in str(refused.value)
    assert ap.check(path) == 1


def test_check_accepts_the_rendered_file_and_refuses_what_is_not_json(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "auth-policy.json"
    path.write_text(json.dumps(_rendered(settings)))
    assert ap.check(path) == 0
    path.write_text("{not json")
    assert ap.check(path) == 1
    assert "is not JSON" in capsys.readouterr().out
    assert ap.check(tmp_path / "missing.json") == 1


# --- the policy, with counts in memory ------------------------------------------------------
class MemoryStore:
    """The Store protocol over a dict, with a clock the test moves."""

    def __init__(self, _database: object = None) -> None:
        self.now = T0
        self.rows: dict[str, Any] = {}
        self.seen: list[tuple[str, str]] = []
        self.broken = False

    def lookup(self, key: str) -> tuple[datetime, Any]:
        if self.broken:
            raise ConnectionRefusedError("database down")
        return self.now, self.rows.get(key)

    def count_failure(self, key: str, limits: Any, username: str, protocol: str) -> Any:
        if self.broken:
            raise ConnectionRefusedError("database down")
        before = self.rows.get(key)
        self.rows[key] = ap.after_failure(before, self.now, limits)
        self.seen.append((username, protocol))
        return before, self.rows[key]

    def purge(self, limits: Any) -> int:
        return 0


@pytest.fixture
def config_file(settings: Settings, tmp_path: Path) -> Path:
    path = tmp_path / "release-1" / "auth-policy.json"
    path.parent.mkdir()
    path.write_text(json.dumps(_rendered(settings)))
    return path


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def policy(config_file: Path, store: MemoryStore) -> Any:
    return ap.Policy(config_file, make_store=lambda _database: store)


def _failure(remote: str = "192.0.2.7", **extra: Any) -> dict[str, Any]:
    return {
        "login": "alice@example.org",
        "remote": remote,
        "protocol": "imap",
        "success": False,
        "policy_reject": False,
        **extra,
    }


def test_twenty_reported_failures_block_that_address_only(policy: Any, store: MemoryStore) -> None:
    for _ in range(20):
        policy.report(_failure())
    assert policy.allow({"remote": "192.0.2.7"}).status == -1
    assert policy.allow({"remote": "192.0.2.8"}).status == 0
    assert store.seen[-1] == ("alice@example.org", "imap")


def test_successes_and_policy_refusals_are_not_counted(policy: Any, store: MemoryStore) -> None:
    for _ in range(20):
        policy.report(_failure(success=True))
        policy.report(_failure(policy_reject=True))
    assert store.rows == {}
    for _ in range(20):
        policy.report(_failure())
    # A success afterwards does not lift the block.
    policy.report(_failure(success=True))
    assert policy.allow({"remote": "192.0.2.7"}).status == -1


def test_addresses_without_a_key_or_exempt_are_never_counted(
    policy: Any, store: MemoryStore, config_file: Path
) -> None:
    data = json.loads(config_file.read_text())
    data["exempt_networks"] = ["198.51.100.0/24"]
    config_file.write_text(json.dumps(data))
    for _ in range(30):
        policy.report(_failure(remote=""))
        policy.report(_failure(remote="198.51.100.4"))
    assert store.rows == {}
    assert policy.allow({"remote": "198.51.100.4"}) == ap.ALLOW


def test_a_broken_database_fails_open(policy: Any, store: MemoryStore) -> None:
    for _ in range(20):
        policy.report(_failure())
    store.broken = True
    assert policy.allow({"remote": "192.0.2.7"}) == ap.ALLOW
    policy.report(_failure())  # logged, not raised


def test_turned_off_it_answers_allow_and_counts_nothing(
    policy: Any, store: MemoryStore, config_file: Path
) -> None:
    data = json.loads(config_file.read_text())
    data["enabled"] = False
    config_file.write_text(json.dumps(data))
    for _ in range(30):
        policy.report(_failure())
    assert store.rows == {}
    assert policy.allow({"remote": "192.0.2.7"}) == ap.ALLOW


def test_settings_follow_the_active_release(tmp_path: Path, settings: Settings) -> None:
    # /etc/mailyard/active is a link the controller moves to each new release.
    releases = tmp_path / "releases"
    for name, block_after in (("one", 20), ("two", 3)):
        (releases / name).mkdir(parents=True)
        data = {**_rendered(settings), "block_after_failures": block_after}
        data["slowdown_after_failures"] = min(block_after, 5)
        (releases / name / "auth-policy.json").write_text(json.dumps(data))
    (releases / "broken").mkdir()
    (releases / "broken" / "auth-policy.json").write_text("{")
    active = tmp_path / "active"
    active.symlink_to(releases / "one")
    store = MemoryStore()
    policy = ap.Policy(active / "auth-policy.json", make_store=lambda _database: store)
    assert policy.refresh().limits.block_after_failures == 20

    def move(to: str) -> None:
        (tmp_path / "active.new").symlink_to(releases / to)
        (tmp_path / "active.new").replace(active)

    move("two")
    for _ in range(3):
        policy.report(_failure())
    assert policy.allow({"remote": "192.0.2.7"}).status == -1
    # An unusable file keeps the last good settings.
    move("broken")
    assert policy.refresh().limits.block_after_failures == 3


# --- the HTTP protocol ----------------------------------------------------------------------
@pytest.fixture
def server(policy: Any) -> Iterator[str]:
    running = ap.make_server(policy, 0)
    thread = threading.Thread(target=running.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{running.server_address[1]}/"
    finally:
        running.shutdown()
        running.server_close()


def _post(url: str, body: bytes) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_dovecots_requests_are_answered_as_documented(server: str) -> None:
    # What Dovecot sends with auth_policy_request_attributes as dovecot.conf.j2 sets them.
    attempt = {"login": "alice@example.org", "remote": "192.0.2.7", "protocol": "imap"}
    assert _post(f"{server}?command=allow", json.dumps(attempt).encode()) == (
        200,
        {"status": 0, "msg": ""},
    )
    report = json.dumps({**attempt, "success": False, "policy_reject": False}).encode()
    for _ in range(5):
        assert _post(f"{server}?command=report", report)[0] == 200
    status, body = _post(f"{server}?command=allow", json.dumps(attempt).encode())
    assert status == 200
    assert body["status"] > 0  # slowed down
    for _ in range(15):
        _post(f"{server}?command=report", report)
    status, body = _post(f"{server}?command=allow", json.dumps(attempt).encode())
    assert (status, body["status"]) == (200, -1)
    assert body["msg"] == ap.REFUSAL


def test_anything_else_gets_an_error_that_dovecot_treats_as_allow(server: str) -> None:
    assert _post(f"{server}?command=allow", b"[1, 2]")[0] == 400
    assert _post(f"{server}?command=allow", b"{broken")[0] == 400
    assert _post(f"{server}?command=delete", b"{}")[0] == 404
    assert _post(f"{server}?command=allow", b"x" * (ap.MAX_BODY + 1))[0] == 400


def test_the_server_listens_on_loopback_only(policy: Any) -> None:
    running = ap.make_server(policy, 0)
    try:
        assert running.server_address[0] == "127.0.0.1"
    finally:
        running.server_close()
