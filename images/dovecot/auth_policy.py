#!/usr/bin/python3
"""Mailyard's Dovecot auth policy server: failed logins slow down, then block, an address.

Dovecot's auth process (auth_policy_* in dovecot.conf) asks it about every login (IMAP,
POP3, ManageSieve, and SMTP AUTH through Postfix's SASL) before and after checking the
password, with `POST /?command=allow`, and reports each outcome with `?command=report`.
The protocol is Dovecot's (doc.dovecot.org, "Authentication policy support"): the
request is a JSON object of the attributes named in auth_policy_request_attributes
(here login, remote, protocol; a report adds success and policy_reject), and the answer
to `allow` is {"status": S, "msg": M}: S < 0 refuses the login, 0 lets it go on, S > 0
makes it wait S seconds first (Dovecot waits only before the password check). Waits
stay at or below 8 s: Postfix gives up on Dovecot's answer to SMTP AUTH after 10 s.

Counts are kept per client address in MariaDB (table login_blocks), so every Dovecot
replica sees the same ones and the controller can list and lift blocks. An IPv4 address
counts alone; an IPv6 address counts with its whole /64, which one client usually owns.

Fail open: when the database or this server cannot answer, logins go ahead (the server
answers status 0, or Dovecot gives up after auth_policy_server_timeout_msecs with
auth_policy_reject_on_fail = no). A broken policy server must not lock every user out;
Dovecot's own failure delay still applies.

Runs as the dovecot user on 127.0.0.1 only, started (and restarted) by the container's
entrypoint. Settings come from the release this container runs, /etc/mailyard/active/
auth-policy.json (rendered by the controller), re-read whenever that link moves.

    auth_policy.py serve [CONFIG]   answer Dovecot
    auth_policy.py check CONFIG     validate a staged release's file (exit 1 with reasons)

Only Python's standard library and Debian's python3-pymysql (imported when serving).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

DEFAULT_CONFIG = Path("/etc/mailyard/active/auth-policy.json")
LISTEN_ADDRESS = "127.0.0.1"
# Dovecot's requests are a few hundred bytes; anything much larger is not Dovecot.
MAX_BODY = 64 * 1024
USERNAME_LENGTH = 64
PROTOCOL_LENGTH = 16
REFUSAL = "Too many failed logins from your address; try again later"
# Rows of addresses that are neither blocked nor inside their window are dead weight.
PURGE_INTERVAL_SECONDS = 600
IPV6_PREFIX = 64

log = logging.getLogger("auth-policy")


class ConfigError(ValueError):
    """auth-policy.json is missing, malformed or out of range; the message says what."""


@dataclass(frozen=True)
class Database:
    host: str
    port: int
    name: str
    user: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class Limits:
    """The thresholds (mail settings login_*; see controller/domain/mail_settings.py)."""

    slowdown_after_failures: int = 5
    slowdown_max_seconds: int = 8
    block_after_failures: int = 20
    failure_window_seconds: int = 900
    block_seconds: int = 3600
    exempt_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()


@dataclass(frozen=True)
class Config:
    enabled: bool
    listen_port: int
    limits: Limits
    database: Database


def _integer(data: Mapping[str, Any], name: str, low: int, high: int, prefix: str = "") -> int:
    value = data.get(name)
    # bool is an int in Python; JSON true is not a number of failures.
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ConfigError(f"{prefix}{name} must be an integer from {low} to {high}, not {value!r}")
    return value


def _text(data: Mapping[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value or any(not c.isprintable() for c in value):
        raise ConfigError(f"database.{name} must be a non-empty printable string")
    return value


def parse_config(data: object) -> Config:
    """The settings from the decoded JSON of auth-policy.json, checked like the
    controller checks the mail settings they come from."""
    if not isinstance(data, dict):
        raise ConfigError("auth-policy.json must hold a JSON object")
    enabled = data.get("enabled")
    if not isinstance(enabled, bool):
        raise ConfigError(f"enabled must be true or false, not {enabled!r}")
    networks = data.get("exempt_networks")
    if not isinstance(networks, list):
        raise ConfigError("exempt_networks must be a list of networks in CIDR form")
    exempt = []
    for item in networks:
        try:
            exempt.append(ipaddress.ip_network(str(item), strict=True))
        except ValueError as exc:
            raise ConfigError(f"exempt_networks: {item!r} is not a network ({exc})") from exc
    limits = Limits(
        slowdown_after_failures=_integer(data, "slowdown_after_failures", 1, 10_000),
        slowdown_max_seconds=_integer(data, "slowdown_max_seconds", 1, 8),
        block_after_failures=_integer(data, "block_after_failures", 1, 10_000),
        failure_window_seconds=_integer(data, "failure_window_seconds", 60, 7 * 86_400),
        block_seconds=_integer(data, "block_seconds", 10, 30 * 86_400),
        exempt_networks=tuple(exempt),
    )
    database = data.get("database")
    if not isinstance(database, dict):
        raise ConfigError("database must be an object with host, port, name, user, password")
    return Config(
        enabled=enabled,
        listen_port=_integer(data, "listen_port", 1, 65_535),
        limits=limits,
        database=Database(
            host=_text(database, "host"),
            port=_integer(database, "port", 1, 65_535, prefix="database."),
            name=_text(database, "name"),
            user=_text(database, "user"),
            password=_text(database, "password"),
        ),
    )


def load_config(path: Path) -> Config:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{path} is not JSON: {exc}") from exc
    return parse_config(data)


def client_key(remote: object) -> str | None:
    """The address failures are counted under: an IPv4 address, or the /64 network of an
    IPv6 address (an IPv4-mapped one counts as its IPv4 address). None when Dovecot
    knows no client address (a local login), which is never counted or refused.

    The controller normalizes addresses the same way (controller/domain/blocks.py)."""
    if not isinstance(remote, str) or not remote:
        return None
    try:
        address = ipaddress.ip_address(remote.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/{IPV6_PREFIX}", strict=False))
    return str(address)


def is_exempt(remote: object, limits: Limits) -> bool:
    if not isinstance(remote, str) or not limits.exempt_networks:
        return False
    try:
        address = ipaddress.ip_address(remote.strip())
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in limits.exempt_networks)


@dataclass(frozen=True)
class State:
    """One row of login_blocks (times are naive UTC, from the database's clock)."""

    failures: int
    window_started_at: datetime
    last_failure_at: datetime
    blocked_at: datetime | None = None
    blocked_until: datetime | None = None

    def blocked(self, now: datetime) -> bool:
        return self.blocked_until is not None and now < self.blocked_until

    def window_open(self, now: datetime, limits: Limits) -> bool:
        return now < self.window_started_at + timedelta(seconds=limits.failure_window_seconds)


@dataclass(frozen=True)
class Decision:
    status: int
    message: str = ""

    def as_json(self) -> dict[str, object]:
        return {"status": self.status, "msg": self.message}


ALLOW = Decision(0)


def slowdown_seconds(failures: int, limits: Limits) -> int:
    """How long after the last failure the next attempt waits: 1 s at the threshold,
    doubling with each further failure, capped."""
    if failures < limits.slowdown_after_failures:
        return 0
    exponent = min(failures - limits.slowdown_after_failures, 16)
    return int(min(2**exponent, limits.slowdown_max_seconds))


def decide(state: State | None, now: datetime, limits: Limits) -> Decision:
    """The answer to `allow` for an address in `state`."""
    if state is None:
        return ALLOW
    if state.blocked(now):
        return Decision(-1, REFUSAL)
    if state.blocked_until is not None or not state.window_open(now, limits):
        # A block that has ended, or a window that has closed: a fresh start.
        return ALLOW
    wait = slowdown_seconds(state.failures, limits)
    remaining = (state.last_failure_at + timedelta(seconds=wait) - now).total_seconds()
    if remaining > 0:
        return Decision(max(1, round(remaining)))
    return ALLOW


def after_failure(state: State | None, now: datetime, limits: Limits) -> State:
    """The state once one more failed login is counted. A block in force is left as it
    is (its attempts are refused before any password is checked, and are not counted)."""
    if state is not None and state.blocked(now):
        return state
    if state is None or state.blocked_until is not None or not state.window_open(now, limits):
        state = State(failures=0, window_started_at=now, last_failure_at=now)
    failures = state.failures + 1
    state = replace(state, failures=failures, last_failure_at=now)
    if failures >= limits.block_after_failures:
        state = replace(
            state, blocked_at=now, blocked_until=now + timedelta(seconds=limits.block_seconds)
        )
    return state


def printable(value: object, length: int) -> str:
    """A user-supplied string as it may be stored: printable characters only, truncated."""
    if not isinstance(value, str):
        return ""
    return "".join(char for char in value if char.isprintable())[:length]


class Store(Protocol):
    """Where the counts live (MariaDB in production, a dict in the unit tests)."""

    def lookup(self, key: str) -> tuple[datetime, State | None]:
        """The database's current time and the address's state."""
        ...

    def count_failure(
        self, key: str, limits: Limits, username: str, protocol: str
    ) -> tuple[State | None, State | None]:
        """Count one failure atomically; the states before and after."""
        ...

    def purge(self, limits: Limits) -> int:
        """Delete rows that no longer matter; how many."""
        ...


class SqlStore:
    """login_blocks in MariaDB through PyMySQL; parameterised queries only.

    A few connections are kept for reuse; one that fails is dropped and the next call
    connects again, so a database restart heals by itself."""

    _COLUMNS = "failures, window_started_at, last_failure_at, blocked_at, blocked_until"

    def __init__(self, database: Database, pool_size: int = 8) -> None:
        self.database = database
        self._pool: queue.LifoQueue[Any] = queue.LifoQueue(maxsize=pool_size)

    def _connect(self) -> Any:
        import pymysql  # noqa: PLC0415 - Debian's python3-pymysql, only in the image

        return pymysql.connect(
            host=self.database.host,
            port=self.database.port,
            user=self.database.user,
            password=self.database.password,
            database=self.database.name,
            charset="utf8mb4",
            autocommit=True,
            # Well inside Dovecot's own 2 s timeout: answer "allow" ourselves instead.
            connect_timeout=1,
            read_timeout=2,
            write_timeout=2,
        )

    @contextmanager
    def _connection(self) -> Iterator[Any]:
        try:
            connection = self._pool.get_nowait()
        except queue.Empty:
            connection = self._connect()
        try:
            yield connection
        except BaseException:
            connection.close()
            raise
        try:
            self._pool.put_nowait(connection)
        except queue.Full:
            connection.close()

    def close(self) -> None:
        while True:
            try:
                self._pool.get_nowait().close()
            except queue.Empty:
                return

    @staticmethod
    def _state(row: tuple[Any, ...] | None) -> State | None:
        if row is None or row[0] is None:
            return None
        return State(
            failures=int(row[0]),
            window_started_at=row[1],
            last_failure_at=row[2],
            blocked_at=row[3],
            blocked_until=row[4],
        )

    def lookup(self, key: str) -> tuple[datetime, State | None]:
        with self._connection() as connection, connection.cursor() as cursor:
            cursor.execute(
                f"SELECT UTC_TIMESTAMP(), {self._COLUMNS} FROM (SELECT 1) AS one "  # noqa: S608 - constant column list
                "LEFT JOIN login_blocks ON address = %s",
                (key,),
            )
            row = cursor.fetchone()
        return row[0], self._state(row[1:])

    def count_failure(
        self, key: str, limits: Limits, username: str, protocol: str
    ) -> tuple[State | None, State | None]:
        with self._connection() as connection, connection.cursor() as cursor:
            # The row exists first, so the locking read below takes a row lock (no gap
            # lock): concurrent failures of one address queue up instead of deadlocking.
            cursor.execute(
                "INSERT IGNORE INTO login_blocks (address, failures, window_started_at, "
                "last_failure_at, last_username, last_protocol) "
                "VALUES (%s, 0, UTC_TIMESTAMP(), UTC_TIMESTAMP(), '', '')",
                (key,),
            )
            connection.begin()
            try:
                cursor.execute(
                    f"SELECT UTC_TIMESTAMP(), {self._COLUMNS} FROM login_blocks "  # noqa: S608 - constant column list
                    "WHERE address = %s FOR UPDATE",
                    (key,),
                )
                row = cursor.fetchone()
                if row is None:
                    # Lifted (deleted) between the two statements: nothing to count.
                    connection.rollback()
                    return None, None
                now = row[0]
                before = self._state(row[1:])
                if before is not None and before.failures == 0:
                    before = None  # the row made just above
                after = after_failure(before, now, limits)
                cursor.execute(
                    "UPDATE login_blocks SET failures = %s, window_started_at = %s, "
                    "last_failure_at = %s, blocked_at = %s, blocked_until = %s, "
                    "last_username = %s, last_protocol = %s WHERE address = %s",
                    (
                        after.failures,
                        after.window_started_at,
                        after.last_failure_at,
                        after.blocked_at,
                        after.blocked_until,
                        username,
                        protocol,
                        key,
                    ),
                )
                connection.commit()
            except BaseException:
                connection.rollback()
                raise
        return before, after

    def purge(self, limits: Limits) -> int:
        with self._connection() as connection, connection.cursor() as cursor:
            return int(
                cursor.execute(
                    "DELETE FROM login_blocks "
                    "WHERE (blocked_until IS NULL OR blocked_until < UTC_TIMESTAMP()) "
                    "AND last_failure_at < UTC_TIMESTAMP() - INTERVAL %s SECOND",
                    (limits.failure_window_seconds,),
                )
            )


class Policy:
    """Answers Dovecot's requests with the settings of the release this container runs."""

    def __init__(
        self, config_path: Path, make_store: Callable[[Database], Store] = SqlStore
    ) -> None:
        self.config_path = config_path
        self._make_store = make_store
        self._lock = threading.Lock()
        self._signature: tuple[int, int, int] | None = None
        self.config: Config | None = None
        self.store: Store | None = None

    def refresh(self) -> Config | None:
        """Re-read the file when the active release changed (the link moved, or the file
        is another one); keep the last good settings if the new file is unusable."""
        try:
            info = self.config_path.stat()
        except OSError:
            return self.config
        signature = (info.st_dev, info.st_ino, info.st_mtime_ns)
        if signature == self._signature:
            return self.config
        with self._lock:
            if signature == self._signature:
                return self.config
            self._signature = signature
            try:
                config = load_config(self.config_path)
            except ConfigError as exc:
                log.warning("keeping the previous settings: %s", exc)
                return self.config
            if self.store is None or self.config is None or config.database != self.config.database:
                old = self.store
                self.store = self._make_store(config.database)
                if isinstance(old, SqlStore):
                    old.close()  # connections made with the previous credentials
            if self.config is not None and config.listen_port != self.config.listen_port:
                log.warning(
                    "listen_port changed to %s: takes effect at restart", config.listen_port
                )
            self.config = config
            log.info(
                "settings: %s; slow down after %d failures (max %d s), block after %d "
                "within %d s for %d s; %d exempt networks",
                "on" if config.enabled else "off",
                config.limits.slowdown_after_failures,
                config.limits.slowdown_max_seconds,
                config.limits.block_after_failures,
                config.limits.failure_window_seconds,
                config.limits.block_seconds,
                len(config.limits.exempt_networks),
            )
            return config

    def _target(self, request: Mapping[str, Any]) -> tuple[Config, Store, str] | None:
        config = self.refresh()
        if config is None or not config.enabled or self.store is None:
            return None
        remote = request.get("remote")
        key = client_key(remote)
        if key is None or is_exempt(remote, config.limits):
            return None
        return config, self.store, key

    def allow(self, request: Mapping[str, Any]) -> Decision:
        target = self._target(request)
        if target is None:
            return ALLOW
        config, store, key = target
        try:
            now, state = store.lookup(key)
        except Exception as exc:  # noqa: BLE001 - fail open, whatever went wrong
            log.warning("allowing a login from %s unchecked: %s", key, exc)
            return ALLOW
        return decide(state, now, config.limits)

    def report(self, request: Mapping[str, Any]) -> None:
        if request.get("success") is not False or request.get("policy_reject") is True:
            # Successes change nothing (a block stays, the count stays); attempts this
            # server refused were refused before any password check and do not count.
            return
        target = self._target(request)
        if target is None:
            return
        config, store, key = target
        username = printable(request.get("login"), USERNAME_LENGTH)
        protocol = printable(request.get("protocol"), PROTOCOL_LENGTH)
        try:
            before, after = store.count_failure(key, config.limits, username, protocol)
        except Exception as exc:  # noqa: BLE001 - a lost count must not fail the login path
            log.warning("could not count a failed login from %s: %s", key, exc)
            return
        if after is not None and after.blocked_until is not None and after != before:
            log.info(
                "blocked %s until %s UTC after %d failed logins (last: %s as %r)",
                key,
                after.blocked_until.isoformat(sep=" "),
                after.failures,
                protocol or "?",
                username,
            )

    def purge(self) -> None:
        config = self.refresh()
        if config is None or self.store is None:
            return
        try:
            removed = self.store.purge(config.limits)
        except Exception as exc:  # noqa: BLE001 - try again next time
            log.warning("could not purge old failed-login rows: %s", exc)
            return
        if removed:
            log.info("purged %d expired failed-login rows", removed)


class Handler(BaseHTTPRequestHandler):
    """POST /?command=allow|report with Dovecot's JSON; anything else is refused."""

    protocol_version = "HTTP/1.1"  # keep-alive: Dovecot reuses its connections
    server_version = "mailyard-auth-policy"
    timeout = 60  # an idle kept-alive connection frees its thread after this
    policy: Policy  # set on the subclass made by make_server()

    def log_message(self, format: str, *args: Any) -> None:
        # One line per login would flood the container log; errors are logged below.
        return

    def _reply(self, status: HTTPStatus, body: dict[str, object]) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_POST(self) -> None:
        command = parse_qs(urlsplit(self.path).query).get("command", [""])[0]
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self.close_connection = True
            self._reply(HTTPStatus.BAD_REQUEST, {"status": 0, "msg": "bad length"})
            return
        try:
            request = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            request = None
        if not isinstance(request, dict):
            self._reply(HTTPStatus.BAD_REQUEST, {"status": 0, "msg": "not a JSON object"})
            return
        if command == "allow":
            self._reply(HTTPStatus.OK, self.policy.allow(request).as_json())
        elif command == "report":
            self.policy.report(request)
            self._reply(HTTPStatus.OK, ALLOW.as_json())
        else:
            self._reply(HTTPStatus.NOT_FOUND, {"status": 0, "msg": "unknown command"})


def make_server(policy: Policy, port: int, address: str = LISTEN_ADDRESS) -> ThreadingHTTPServer:
    handler = type("BoundHandler", (Handler,), {"policy": policy})
    server = ThreadingHTTPServer((address, port), handler)
    server.daemon_threads = True
    return server


def _purge_forever(policy: Policy) -> None:
    while True:
        time.sleep(PURGE_INTERVAL_SECONDS)
        policy.purge()


def serve(config_path: Path) -> int:
    policy = Policy(config_path)
    waited = 0
    while (config := policy.refresh()) is None:
        if waited % 30 == 0:
            log.warning("waiting for a valid %s", config_path)
        time.sleep(1)
        waited += 1
    server = make_server(policy, config.listen_port)
    threading.Thread(target=_purge_forever, args=(policy,), name="purge", daemon=True).start()
    log.info("listening on %s:%d", LISTEN_ADDRESS, config.listen_port)
    server.serve_forever()
    return 0


def check(config_path: Path) -> int:
    try:
        load_config(config_path)
    except ConfigError as exc:
        print(f"auth-policy.json: {exc}")
        return 1
    return 0


def main(argv: list[str]) -> int:
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="auth-policy: %(levelname)s: %(message)s"
    )
    if len(argv) >= 1 and argv[0] == "serve" and len(argv) <= 2:
        return serve(Path(argv[1]) if len(argv) == 2 else DEFAULT_CONFIG)
    if len(argv) == 2 and argv[0] == "check":
        return check(Path(argv[1]))
    print(__doc__.strip().splitlines()[0], file=sys.stderr)
    print("usage: auth_policy.py serve [CONFIG] | auth_policy.py check CONFIG", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
