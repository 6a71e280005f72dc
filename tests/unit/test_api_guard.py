"""The API's front door (controller/api/guard.py): body size limit, token before body,
429 for addresses that keep failing, and /healthz without internal error text.

Some tests drive the guard as a bare ASGI app with a receive channel that records
every read: TestClient reads a request's whole body before the app runs, so only
this shows that a refused body is never read.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

import controller.api.guard as guard_module
from controller.api.guard import PRINCIPAL, ApiGuard
from controller.api.throttle import AuthFailureLimiter, client_key
from controller.db.session import make_engine, make_session_factory
from controller.domain.access import Principal
from controller.engine.apply import ConfigEngine
from controller.main import create_app
from controller.settings import Settings

API = "/api/v1"
MIB = 1024 * 1024
Problem = Callable[..., dict[str, Any]]
Message = dict[str, Any]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- a bare ASGI harness ------------------------------------------------------------------
class Exchange:
    """One request through an ASGI app: what the app read and what it answered."""

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = list(chunks)
        self.reads = 0
        self.sent: list[Message] = []

    async def receive(self) -> Message:
        self.reads += 1
        if not self._chunks:
            return {"type": "http.disconnect"}
        chunk = self._chunks.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(self._chunks)}

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int:
        return int(self.sent[0]["status"])

    @property
    def headers(self) -> dict[str, str]:
        return {k.decode(): v.decode() for k, v in self.sent[0]["headers"]}

    @property
    def body(self) -> dict[str, Any]:
        return dict(json.loads(b"".join(m.get("body", b"") for m in self.sent[1:])))


class Recorder:
    """The application behind the guard: records the body and the principal it got."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.principals: list[object] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.bodies.append(body)
        self.principals.append((scope.get("state") or {}).get(PRINCIPAL))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


def _scope(
    path: str = f"{API}/domains",
    *,
    token: str | None = None,
    length: int | None = None,
    client: str = "203.0.113.5",
    extra: list[tuple[bytes, bytes]] | None = None,
) -> dict[str, Any]:
    headers = [(b"content-type", b"application/json")]
    if token is not None:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    headers += extra or []
    return {
        "type": "http",
        "method": "POST",
        "path": path,
        "headers": headers,
        "client": (client, 50000),
        "state": {},
    }


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def limiter(clock: Clock) -> AuthFailureLimiter:
    return AuthFailureLimiter(20, 600, clock=clock)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def guard(
    sessions: sessionmaker[Session], limiter: AuthFailureLimiter, recorder: Recorder
) -> ApiGuard:
    return ApiGuard(recorder, sessions=sessions, max_body_bytes=MIB, limiter=limiter)


def _run(guard: ApiGuard, scope: dict[str, Any], chunks: list[bytes]) -> Exchange:
    exchange = Exchange(chunks)
    asyncio.run(guard(scope, exchange.receive, exchange.send))
    return exchange


def _ten_mib_in_chunks() -> list[bytes]:
    return [b"[" + b"0," * (64 * 1024)] * 80 + [b"0]"]


# --- token before body ---------------------------------------------------------------------
@pytest.mark.parametrize("token", [None, "mailyard_0123456789abcdef_wrong", "garbage"])
def test_a_request_without_a_valid_token_is_401_and_its_body_is_never_read(
    guard: ApiGuard, recorder: Recorder, token: str | None
) -> None:
    exchange = _run(guard, _scope(token=token), _ten_mib_in_chunks())
    assert exchange.status == 401
    assert exchange.reads == 0
    assert exchange.headers["content-type"] == "application/problem+json"
    assert exchange.headers["www-authenticate"] == "Bearer"
    assert "Authorization: Bearer" in exchange.body["detail"] or "token" in exchange.body["detail"]
    assert recorder.bodies == []


def test_a_declared_length_over_the_limit_is_413_before_anything_is_read(
    guard: ApiGuard, admin_secret: str, recorder: Recorder
) -> None:
    for token in (admin_secret, None):
        exchange = _run(guard, _scope(token=token, length=10 * MIB), _ten_mib_in_chunks())
        assert exchange.status == 413
        assert exchange.reads == 0
        assert "1048576 bytes" in exchange.body["detail"]
        assert "MAILYARD_API_MAX_BODY_BYTES" in exchange.body["detail"]
    assert recorder.bodies == []


def test_a_streamed_body_is_cut_off_at_the_limit(
    guard: ApiGuard, admin_secret: str, recorder: Recorder
) -> None:
    chunks = _ten_mib_in_chunks()
    exchange = _run(guard, _scope(token=admin_secret), chunks)
    assert exchange.status == 413
    # Read only until the count passed 1 MiB: 8 chunks of 128 KiB, not all 81.
    assert exchange.reads == 8
    assert recorder.bodies == []


def test_a_body_within_the_limit_reaches_the_app_whole_with_the_principal(
    guard: ApiGuard, admin_secret: str, recorder: Recorder
) -> None:
    chunks = [b"a" * 300_000, b"b" * 300_000, b"c" * (MIB - 600_000)]
    exchange = _run(guard, _scope(token=admin_secret), chunks)
    assert exchange.status == 200
    assert recorder.bodies == [b"".join(chunks)]
    principal = recorder.principals[0]
    assert isinstance(principal, Principal)
    assert principal.name == "first admin"
    assert principal.is_admin


def test_public_paths_need_no_token_but_keep_the_size_limit(
    guard: ApiGuard, recorder: Recorder
) -> None:
    assert _run(guard, _scope("/healthz"), [b""]).status == 200
    assert recorder.principals == [None]
    assert _run(guard, _scope("/openapi.json"), [b""]).status == 200
    assert _run(guard, _scope("/healthz", length=2 * MIB), [b""]).status == 413
    # Anything else, API or not, needs a token: a route added later is closed by default.
    assert _run(guard, _scope("/anything/else"), [b""]).status == 401
    assert _run(guard, _scope("/api/v1/../../healthz"), [b""]).status == 401


@pytest.mark.parametrize(
    "extra",
    [
        [(b"content-length", b"-1")],
        [(b"content-length", b"1e3")],
        [(b"content-length", b"10"), (b"content-length", b"20")],
    ],
)
def test_a_malformed_content_length_is_400(
    guard: ApiGuard, admin_secret: str, extra: list[tuple[bytes, bytes]]
) -> None:
    exchange = _run(guard, _scope(token=admin_secret, extra=extra), [b"{}"])
    assert exchange.status == 400
    assert exchange.reads == 0


def test_the_token_is_looked_up_once_per_request(
    client_for: Callable[[str], TestClient], admin_secret: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str | None] = []
    real = guard_module.authenticate

    def counting(session: Session, bearer: str, client_host: str | None = None) -> Principal:
        calls.append(client_host)
        return real(session, bearer, client_host)

    monkeypatch.setattr(guard_module, "authenticate", counting)
    admin = client_for(admin_secret)
    assert admin.post(f"{API}/domains", json={"name": "example.org"}).status_code == 201
    assert admin.get(f"{API}/domains/example.org").status_code == 200
    assert calls == ["testclient", "testclient"]


def test_a_database_failure_while_checking_a_token_is_503_and_not_a_failure(
    tmp_path: Path, limiter: AuthFailureLimiter, recorder: Recorder
) -> None:
    broken = make_session_factory(make_engine(f"sqlite:///{tmp_path}/missing/dir/db.sqlite"))
    guard = ApiGuard(recorder, sessions=broken, max_body_bytes=MIB, limiter=limiter)
    exchange = _run(guard, _scope(token="mailyard_0123456789abcdef_secret"), [b"{}"])
    assert exchange.status == 503
    assert "database" in exchange.body["detail"]
    assert "sqlite" not in json.dumps(exchange.body).lower()
    assert len(limiter) == 0


# --- through the app: the limit fits the largest legitimate bodies -------------------------
def test_the_largest_certificate_upload_fits_under_the_default_limit(
    admin: TestClient, problem: Problem
) -> None:
    # The schema's maxima, in PEM's shape: 64-character lines, each newline escaped in JSON.
    line = "A" * 64 + "\n"
    chain = (line * (100_000 // len(line)))[:100_000]
    key = (line * (20_000 // len(line)))[:20_000]
    body = json.dumps({"certificate_chain": chain, "private_key": key})
    assert len(body) > 120_000
    response = admin.put(
        f"{API}/certificates/custom", content=body, headers={"content-type": "application/json"}
    )
    # Refused for what it is (not a certificate), not for its size.
    problem(response, 422)


def test_a_settings_change_with_a_large_ca_bundle_fits_under_the_default_limit(
    admin: TestClient,
) -> None:
    response = admin.patch(f"{API}/settings", json={"acme_ca_bundle": "x" * 600_000})
    assert response.status_code == 422
    assert "PEM" in response.json()["detail"]


def test_a_body_over_the_limit_is_413_through_the_app(admin: TestClient, problem: Problem) -> None:
    response = admin.patch(f"{API}/settings", json={"acme_ca_bundle": "x" * (MIB + 1)})
    problem(response, 413, detail_contains="MAILYARD_API_MAX_BODY_BYTES")


def test_the_limit_is_a_process_setting(
    settings: Settings,
    sessions: sessionmaker[Session],
    admin_secret: str,
    problem: Problem,
) -> None:
    small = settings.model_copy(update={"api_max_body_bytes": 256 * 1024})
    app = create_app(sessions, lambda _: None, ConfigEngine(small, sessions, runtime=None))
    client = TestClient(app, headers={"Authorization": f"Bearer {admin_secret}"})
    problem(client.patch(f"{API}/settings", json={"acme_ca_bundle": "x" * 300_000}), 413)
    assert client.patch(f"{API}/settings", json={"acme_ca_bundle": "x" * 200_000}).status_code == (
        422
    )


def test_the_limit_setting_keeps_room_for_a_certificate() -> None:
    with pytest.raises(ValueError, match="api_max_body_bytes"):
        Settings(api_max_body_bytes=100_000)
    assert Settings().api_max_body_bytes == MIB


# --- 429 after repeated failures -----------------------------------------------------------
def _client(app: FastAPI, address: str, token: str | None = None) -> TestClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return TestClient(app, client=(address, 40000), headers=headers)


def test_more_than_20_failures_from_one_address_get_429_until_the_window_passed(
    app: FastAPI, admin_secret: str, problem: Problem
) -> None:
    clock = Clock()
    app.state.auth_failures.clock = clock
    bad = _client(app, "198.51.100.7", "mailyard_0123456789abcdef_wrong")
    for _ in range(20):
        problem(bad.get(f"{API}/domains"), 401)
    clock.now += 30
    refused = bad.get(f"{API}/domains")
    body = problem(refused, 429, detail_contains="more than 20 failed authentications")
    assert "198.51.100.7" in body["detail"]
    assert refused.headers["retry-after"] == "570"
    # Without any token too; and failures while blocked do not extend the block.
    anonymous = _client(app, "198.51.100.7")
    for _ in range(5):
        problem(anonymous.get(f"{API}/domains"), 429)
    # A valid token from the same address still works (a panel behind the same NAT).
    assert _client(app, "198.51.100.7", admin_secret).get(f"{API}/domains").status_code == 200
    # Other addresses are not affected.
    problem(_client(app, "198.51.100.8", "mailyard_0123456789abcdef_x").get(f"{API}/domains"), 401)
    # The window passes: 401 again, and counting starts afresh.
    clock.now += 570
    problem(bad.get(f"{API}/domains"), 401)
    for _ in range(19):
        problem(bad.get(f"{API}/domains"), 401)
    problem(bad.get(f"{API}/domains"), 429)


def test_expired_and_misplaced_tokens_count_as_failures(
    app: FastAPI, admin: TestClient, problem: Problem
) -> None:
    created = admin.post(
        f"{API}/tokens", json={"name": "office", "admin": True, "networks": ["192.0.2.0/24"]}
    ).json()
    elsewhere = _client(app, "198.51.100.9", created["token"])
    for _ in range(20):
        problem(elsewhere.get(f"{API}/domains"), 401, detail_contains="198.51.100.9")
    problem(elsewhere.get(f"{API}/domains"), 429)
    assert _client(app, "192.0.2.1", created["token"]).get(f"{API}/domains").status_code == 200


def test_the_failure_limit_is_a_process_setting(
    settings: Settings, sessions: sessionmaker[Session], problem: Problem
) -> None:
    strict = settings.model_copy(
        update={"api_auth_failure_limit": 2, "api_auth_failure_window": 60}
    )
    app = create_app(sessions, lambda _: None, ConfigEngine(strict, sessions, runtime=None))
    client = _client(app, "198.51.100.7")
    problem(client.get(f"{API}/domains"), 401)
    problem(client.get(f"{API}/domains"), 401)
    problem(client.get(f"{API}/domains"), 429, detail_contains="within 1 minute")


def test_the_limiter_forgets_the_least_recent_client_first() -> None:
    clock = Clock()
    limiter = AuthFailureLimiter(1, 600, max_clients=3, clock=clock)
    for address in ("a", "b", "c"):
        limiter.record_failure(address)
    limiter.record_failure("a")  # now the most recent
    limiter.record_failure("d")
    assert len(limiter) == 3
    assert limiter.retry_after("b") is None  # forgotten
    assert limiter.retry_after("a") == 600
    assert limiter.retry_after("d") == 600


def test_an_attacker_with_many_addresses_cannot_grow_the_table() -> None:
    limiter = AuthFailureLimiter(20, 600)
    for number in range(50_000):
        limiter.record_failure(client_key(str(ipaddress.IPv4Address(0x0A000000 + number))))
    assert len(limiter) == 10_000


def test_an_expired_window_is_dropped_when_looked_at() -> None:
    clock = Clock()
    limiter = AuthFailureLimiter(1, 10, clock=clock)
    limiter.record_failure("a")
    assert limiter.retry_after("a") == 10
    clock.now += 10
    assert limiter.retry_after("a") is None
    assert len(limiter) == 0


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("192.0.2.1", "192.0.2.1"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("testclient", "testclient"),
        (None, "unknown"),
    ],
)
def test_failures_are_counted_per_ipv4_address_and_ipv6_64(host: str | None, key: str) -> None:
    assert client_key(host) == key


# --- /healthz ------------------------------------------------------------------------------
def test_healthz_reports_unhealthy_without_internal_error_text(
    tmp_path: Path, config_engine: ConfigEngine, caplog: pytest.LogCaptureFixture
) -> None:
    broken = make_session_factory(make_engine(f"sqlite:///{tmp_path}/missing/dir/db.sqlite"))
    client = TestClient(create_app(broken, lambda _: None, config_engine))
    with caplog.at_level(logging.WARNING):
        response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"status": "unhealthy", "database": "unreachable"}
    # The reason is in the log, for the operator.
    assert "unable to open database file" in caplog.text
